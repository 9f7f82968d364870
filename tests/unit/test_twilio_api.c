/* test_twilio_api — common/twilio_api (the settings, SIDs, Basic-auth pair, which
 * recording of a call to play and its media URL) and http_client's streamed GET against
 * the Twilio mock's media endpoint (tests/mocks/twilio_mock.py): every byte arrives in
 * pieces, the head comes first with Content-Length and Content-Type, a redirect is handed
 * over with its Location instead of being followed, 401 without credentials, a receiver
 * that stops ends the transfer, and a refused connection is a transport error. */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/http_client.h"
#include "common/twilio_api.h"
#include "tests/lib/free_port.h"
#include "tests/lib/mock_server.h"

#define ACCOUNT "AC00000000000000000000000000000001"
#define CALL "CA0123456789abcdef0123456789abcdef"
#define REC "RE0123456789abcdef0123456789abcdef"
#define AUTH "SK00000000000000000000000000000001:mock-api-key-secret"

/* Parses `text` (must be JSON). */
static json_t *parse(const char *text)
{
    json_t *j = json_loads(text, 0, NULL);
    cr_assert_not_null(j, "bad JSON in test: %s", text);
    return j;
}

/* twilio_pick_recording on a Recordings.json body `text`; `sid` receives the choice. */
static twilio_recording_state pick(const char *text, char *sid, size_t sidlen)
{
    json_t *j = parse(text);
    twilio_recording_state st = twilio_pick_recording(j, sid, sidlen);
    json_decref(j);
    return st;
}

Test(twilio_api, picks_the_first_completed_recording)
{
    char sid[64];
    cr_expect_eq(pick("{\"recordings\":[{\"sid\":\"RE1\",\"status\":\"processing\"},"
                      "{\"sid\":\"RE2\",\"status\":\"completed\"},"
                      "{\"sid\":\"RE3\",\"status\":\"completed\"}]}",
                      sid, sizeof sid),
                 TWILIO_RECORDING_COMPLETED);
    cr_expect_str_eq(sid, "RE2");
    cr_expect_eq(
        pick("{\"recordings\":[{\"sid\":\"RE/../x\",\"status\":\"completed\"}]}", sid, sizeof sid),
        TWILIO_RECORDING_NONE, "a SID unusable in a path is skipped");
    cr_expect_str_eq(sid, "");
}

Test(twilio_api, processing_absent_failed_and_none)
{
    char sid[64];
    cr_expect_eq(pick("{\"recordings\":[{\"sid\":\"RE1\",\"status\":\"failed\"},"
                      "{\"sid\":\"RE2\",\"status\":\"processing\"}]}",
                      sid, sizeof sid),
                 TWILIO_RECORDING_PROCESSING);
    cr_expect_eq(
        pick("{\"recordings\":[{\"sid\":\"RE1\",\"status\":\"in-progress\"}]}", sid, sizeof sid),
        TWILIO_RECORDING_PROCESSING, "a recording of a call still going on");
    cr_expect_eq(pick("{\"recordings\":[{\"sid\":\"RE1\",\"status\":\"absent\"},"
                      "{\"sid\":\"RE2\",\"status\":\"failed\"}]}",
                      sid, sizeof sid),
                 TWILIO_RECORDING_NONE);
    cr_expect_eq(pick("{\"recordings\":[]}", sid, sizeof sid), TWILIO_RECORDING_NONE);
    cr_expect_eq(pick("{}", sid, sizeof sid), TWILIO_RECORDING_NONE);
}

Test(twilio_api, media_url_is_built_from_the_sid)
{
    char url[256];
    cr_assert_gt(
        twilio_recording_media_url("https://api.twilio.com", ACCOUNT, REC, ".mp3", url, sizeof url),
        0);
    cr_expect_str_eq(url, "https://api.twilio.com/2010-04-01/Accounts/" ACCOUNT "/Recordings/" REC
                          ".mp3");
    cr_expect_eq(twilio_recording_media_url("https://x", ACCOUNT, "RE?x=1", "", url, sizeof url),
                 -1);
    cr_expect_eq(twilio_recording_media_url("https://x", ACCOUNT, REC, "", url, 20), -1);
}

Test(twilio_api, settings_prefer_the_api_key_and_fall_back_to_the_auth_token)
{
    twilio_settings t;
    char *auth;
    setenv("TWILIO_API_BASE_URL", "http://127.0.0.1:1//", 1);
    setenv("TWILIO_ACCOUNT_SID", ACCOUNT, 1);
    setenv("TWILIO_AUTH_TOKEN", "the-auth-token", 1);
    unsetenv("TWILIO_API_KEY_SID");
    unsetenv("TWILIO_API_KEY_SECRET");
    cr_assert_eq(twilio_settings_load(&t), 1);
    cr_expect_str_eq(t.base_url, "http://127.0.0.1:1", "trailing slashes dropped");
    cr_assert_not_null(auth = twilio_basic_auth(&t));
    cr_expect_str_eq(auth, ACCOUNT ":the-auth-token");
    free(auth);
    setenv("TWILIO_API_KEY_SID", "SK1", 1);
    setenv("TWILIO_API_KEY_SECRET", "key-secret", 1);
    cr_assert_eq(twilio_settings_load(&t), 1);
    cr_assert_not_null(auth = twilio_basic_auth(&t));
    cr_expect_str_eq(auth, "SK1:key-secret");
    free(auth);
    unsetenv("TWILIO_ACCOUNT_SID");
    cr_expect_eq(twilio_settings_load(&t), 0, "no account, nothing to ask");
}

/* ---- streamed GET against the mock's media ---------------------------------------- */

static mock_server tw;
static http_client *hc;

/* What a receiver saw. */
typedef struct seen {
    http_head head;
    int heads;
    size_t bytes, pieces, stop_after;
    unsigned char *data;
    size_t cap;
} seen;

/* Records the head. */
static int on_head(void *arg, const http_head *h)
{
    seen *s = arg;
    s->head = *h;
    s->heads++;
    return 0;
}

/* Appends a piece; stops once stop_after bytes arrived (0: never). */
static int on_body(void *arg, const char *data, size_t n)
{
    seen *s = arg;
    cr_assert_eq(s->heads, 1, "the head comes before the body");
    if (s->bytes + n > s->cap) {
        s->cap = (s->bytes + n) * 2;
        s->data = realloc(s->data, s->cap);
        cr_assert_not_null(s->data);
    }
    memcpy(s->data + s->bytes, data, n);
    s->bytes += n;
    s->pieces++;
    return s->stop_after && s->bytes >= s->stop_after ? -1 : 0;
}

/* Starts the mock with one completed recording of `size` bytes in `mode`. */
static void seed(const char *mode, long size)
{
    char body[256];
    curl_global_init(CURL_GLOBAL_DEFAULT);
    cr_assert_eq(mock_start(&tw, "twilio_mock.py", NULL), 0, "Twilio mock did not start");
    cr_assert_eq(mock_post(&tw, "/_mock/calls", "{\"sid\":\"" CALL "\"}", NULL), 201);
    snprintf(body, sizeof body,
             "{\"call_sid\":\"" CALL "\",\"sid\":\"" REC "\",\"media_mode\":\"%s\","
             "\"media_size\":%ld}",
             mode, size);
    cr_assert_eq(mock_post(&tw, "/_mock/recordings", body, NULL), 201);
    hc = http_client_new(10000, 2000);
    cr_assert_not_null(hc);
}

/* Stops everything. */
static void teardown(void)
{
    http_client_free(hc);
    mock_stop(&tw);
    curl_global_cleanup();
}

/* Streams the recording's .mp3 with `auth` into `s`; returns http_get_stream's code. */
static int stream(const char *auth, seen *s, calllog_error *err)
{
    char url[256];
    const http_stream st = {on_head, on_body, s, NULL};
    cr_assert_gt(twilio_recording_media_url(tw.base, ACCOUNT, REC, ".mp3", url, sizeof url), 0);
    return http_get_stream(hc, url, NULL, auth, &st, err);
}

Test(http_stream, streams_every_byte_in_pieces_after_the_head, .fini = teardown)
{
    seen s = {0};
    calllog_error err;
    seed("bytes", 200000);
    cr_assert_eq(stream(AUTH, &s, &err), CALLLOG_OK, "%s", err.message);
    cr_expect_eq(s.heads, 1);
    cr_expect_eq(s.head.status, 200);
    cr_expect_eq(s.head.content_length, 200000);
    cr_expect_str_eq(s.head.content_type, "audio/mpeg");
    cr_expect_eq(s.bytes, 200000);
    cr_expect_gt(s.pieces, 1, "a large body arrives in pieces, never held whole");
    cr_expect_eq(memcmp(s.data, "ID3", 3), 0);
    free(s.data);
}

Test(http_stream, redirect_is_handed_over_not_followed, .fini = teardown)
{
    seen s = {0};
    calllog_error err;
    seed("redirect", 1000);
    cr_assert_eq(stream(AUTH, &s, &err), CALLLOG_OK, "%s", err.message);
    cr_expect_eq(s.head.status, 302);
    cr_expect(strstr(s.head.location, "/_media/" REC ".mp3?Expires=") != NULL, "%s",
              s.head.location);
    cr_expect_eq(s.bytes, 0);
    cr_expect_eq(mock_count_requests(&tw, "/_media/"), 0, "the location was not fetched");
}

Test(http_stream, without_credentials_the_media_is_401, .fini = teardown)
{
    seen s = {0};
    calllog_error err;
    seed("bytes", 1000);
    cr_assert_eq(stream(NULL, &s, &err), CALLLOG_OK, "%s", err.message);
    cr_expect_eq(s.head.status, 401);
    free(s.data);
}

Test(http_stream, a_receiver_that_stops_ends_the_transfer, .fini = teardown)
{
    seen s = {.stop_after = 1};
    calllog_error err;
    seed("bytes", 500000);
    cr_expect_eq(stream(AUTH, &s, &err), CALLLOG_PERMANENT);
    cr_expect_eq(err.http_status, 200);
    cr_expect_lt(s.bytes, 500000);
    cr_expect_eq(s.pieces, 1, "nothing is delivered after the stop");
    free(s.data);
}

Test(http_stream, refused_connection_is_a_transport_error_without_the_path)
{
    seen s = {0};
    calllog_error err;
    char url[128];
    const http_stream st = {on_head, on_body, &s, NULL};
    curl_global_init(CURL_GLOBAL_DEFAULT);
    http_client *c = http_client_new(2000, 1000);
    cr_assert_not_null(c);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/2010-04-01/secret-path", free_port());
    cr_expect_eq(http_get_stream(c, url, NULL, AUTH, &st, &err), CALLLOG_TRANSIENT);
    cr_expect_neq(err.curl_code, 0);
    cr_expect_eq(s.heads, 0);
    cr_expect(strstr(err.message, "secret-path") == NULL, "%s", err.message);
    http_client_free(c);
    curl_global_cleanup();
}

/* A tick that asks to stop at once. */
static int stop_tick(void *arg)
{
    seen *s = arg;
    s->pieces += 1000; /* marks that a tick came */
    return -1;
}

Test(http_stream, a_tick_stops_a_transfer_stalled_on_the_server, .fini = teardown)
{
    seen s = {0};
    calllog_error err;
    char url[256];
    seed("bytes", 1000);
    cr_assert_eq(mock_post(&tw, "/_mock/faults",
                           "{\"path\":\"\\\\.mp3$\",\"status\":0,\"delay_ms\":8000,\"count\":1}",
                           NULL),
                 201);
    const http_stream st = {on_head, on_body, &s, stop_tick};
    cr_assert_gt(twilio_recording_media_url(tw.base, ACCOUNT, REC, ".mp3", url, sizeof url), 0);
    cr_expect_eq(http_get_stream(hc, url, NULL, AUTH, &st, &err), CALLLOG_PERMANENT);
    cr_expect_geq(s.pieces, 1000, "the tick was asked");
    cr_expect_eq(s.heads, 0, "stopped while the server still held the answer");
}
