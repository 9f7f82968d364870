/* test_twilio_rest — unit tests for worker/twilio_rest against the Twilio mock
 * (tests/mocks/twilio_mock.py): the call's fields (RFC 2822 times in any zone, duration,
 * price possibly null), the recording's media URL, 404 and bad credentials failing at
 * once, 429/5xx retried up to max_tries, transport failures, and the request counter. */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/metrics.h"
#include "tests/lib/mock_server.h"
#include "worker/twilio_rest.h"

#define ACCOUNT "AC00000000000000000000000000000001"
#define API_KEY "SK00000000000000000000000000000001"
#define CALL "CA0123456789abcdef0123456789abcdef"

static mock_server tw;
static twilio_settings settings;
static twilio_client *cl;

/* Starts the mock and a client authenticating with the API key. */
static void setup(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    cr_assert_eq(mock_start(&tw, "twilio_mock.py", NULL), 0, "Twilio mock did not start");
    settings = (twilio_settings){tw.base, ACCOUNT, API_KEY, "mock-api-key-secret", 5000, 3};
    cl = twilio_client_new(&settings);
    cr_assert_not_null(cl);
}

/* Stops everything. */
static void teardown(void)
{
    twilio_client_free(cl);
    mock_stop(&tw);
    curl_global_cleanup();
}

TestSuite(twilio, .init = setup, .fini = teardown);

/* Seeds a call (JSON object) on the mock. */
static void seed_call(const char *call)
{
    cr_assert_eq(mock_post(&tw, "/_mock/calls", call, NULL), 201, "seed %s", call);
}

/* Requests to the call resource itself (not its recordings). */
static size_t call_requests(void)
{
    return mock_count_requests(&tw, "/2010-04-01/Accounts/" ACCOUNT "/Calls/" CALL ".json");
}

/* Epoch seconds of a UTC date-time. */
static time_t utc(int y, int mo, int d, int h, int mi, int s)
{
    struct tm tm = {0};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = s;
    return timegm(&tm);
}

Test(twilio, fetches_fields_and_recording_url)
{
    twilio_call c;
    calllog_error err;
    seed_call("{\"sid\":\"" CALL "\",\"start_time\":\"Tue, 24 Nov 2026 19:00:00 +0000\","
              "\"end_time\":\"Tue, 24 Nov 2026 16:01:05 -0300\",\"duration\":\"65\","
              "\"price\":\"-0.0130\",\"price_unit\":\"USD\",\"answered_by\":\"human\","
              "\"caller_name\":\"MARIA SILVA\"}");
    cr_assert_eq(
        mock_post(&tw, "/_mock/recordings", "{\"call_sid\":\"" CALL "\",\"sid\":\"RE0001\"}", NULL),
        201);
    cr_assert_eq(twilio_fetch_call(cl, CALL, &c, &err), 0, "%s", err.message);
    cr_expect_eq(c.start_time, utc(2026, 11, 24, 19, 0, 0));
    cr_expect_eq(c.end_time, utc(2026, 11, 24, 19, 1, 5));
    cr_expect_eq(c.duration_s, 65);
    cr_expect_str_eq(c.price, "-0.0130");
    cr_expect_str_eq(c.price_unit, "USD");
    cr_expect_str_eq(c.answered_by, "human");
    cr_expect_str_eq(c.caller_name, "MARIA SILVA");
    char want[256];
    snprintf(want, sizeof want, "%s/2010-04-01/Accounts/%s/Recordings/RE0001", tw.base, ACCOUNT);
    cr_expect_str_eq(c.recording_url, want);
}

Test(twilio, recording_url_is_the_media_url_of_the_first_completed_recording)
{
    twilio_call c;
    calllog_error err;
    seed_call("{\"sid\":\"" CALL "\",\"duration\":\"65\"}");
    cr_assert_eq(mock_post(&tw, "/_mock/recordings",
                           "{\"recordings\":[{\"call_sid\":\"" CALL
                           "\",\"sid\":\"RE0001\",\"status\":\"processing\"},"
                           "{\"call_sid\":\"" CALL
                           "\",\"sid\":\"RE0002\",\"status\":\"completed\"}]}",
                           NULL),
                 201);
    cr_assert_eq(twilio_fetch_call(cl, CALL, &c, &err), 0, "%s", err.message);
    char want[256];
    snprintf(want, sizeof want, "%s/2010-04-01/Accounts/%s/Recordings/RE0002", tw.base, ACCOUNT);
    cr_expect_str_eq(c.recording_url, want, "not the call-scoped uri, not the processing one");
    cr_expect_eq(c.recording_pending, 0, "a completed one is there");
}

Test(twilio, no_completed_recording_means_no_link)
{
    twilio_call c;
    calllog_error err;
    seed_call("{\"sid\":\"" CALL "\"}");
    cr_assert_eq(
        mock_post(&tw, "/_mock/recordings",
                  "{\"call_sid\":\"" CALL "\",\"sid\":\"RE0003\",\"status\":\"processing\"}", NULL),
        201);
    cr_assert_eq(twilio_fetch_call(cl, CALL, &c, &err), 0, "%s", err.message);
    cr_expect_str_eq(c.recording_url, "");
    cr_expect_eq(c.recording_pending, 1, "one is on its way (recording links use it)");
}

Test(twilio, unanswered_call_without_price_or_recording)
{
    twilio_call c;
    calllog_error err;
    seed_call("{\"sid\":\"" CALL "\",\"status\":\"busy\",\"price\":null,"
              "\"start_time\":\"2026-11-24T19:00:00Z\"}");
    cr_assert_eq(twilio_fetch_call(cl, CALL, &c, &err), 0, "%s", err.message);
    cr_expect_eq(c.duration_s, -1, "empty duration means unknown");
    cr_expect_str_eq(c.price, "");
    cr_expect_str_eq(c.recording_url, "");
    cr_expect_eq(c.recording_pending, 0);
    cr_expect_eq(c.start_time, utc(2026, 11, 24, 19, 0, 0));
}

Test(twilio, account_token_auth_works_too)
{
    twilio_settings s = settings;
    s.username = ACCOUNT;
    s.password = "mock-auth-token";
    twilio_client *c2 = twilio_client_new(&s);
    twilio_call c;
    calllog_error err;
    seed_call("{\"sid\":\"" CALL "\",\"duration\":\"3\"}");
    cr_assert_eq(twilio_fetch_call(c2, CALL, &c, &err), 0, "%s", err.message);
    cr_expect_eq(c.duration_s, 3);
    twilio_client_free(c2);
}

Test(twilio, unknown_call_is_404_without_retry)
{
    twilio_call c;
    calllog_error err;
    cr_expect_eq(twilio_fetch_call(cl, CALL, &c, &err), -1);
    cr_expect_eq(err.http_status, 404);
    cr_expect_not_null(strstr(err.message, "20404"), "%s", err.message);
    cr_expect_eq(call_requests(), 1);
    cr_expect_eq(c.duration_s, -1);
}

Test(twilio, bad_credentials_fail_at_once)
{
    twilio_settings s = settings;
    s.password = "wrong-secret";
    twilio_client *bad = twilio_client_new(&s);
    twilio_call c;
    calllog_error err;
    seed_call("{\"sid\":\"" CALL "\"}");
    cr_expect_eq(twilio_fetch_call(bad, CALL, &c, &err), -1);
    cr_expect_eq(err.http_status, 401);
    cr_expect_null(strstr(err.message, "wrong-secret"), "%s", err.message);
    cr_expect_eq(call_requests(), 1);
    twilio_client_free(bad);
}

Test(twilio, rate_limited_twice_then_success)
{
    twilio_call c;
    calllog_error err;
    seed_call("{\"sid\":\"" CALL "\",\"duration\":\"7\"}");
    cr_assert_eq(mock_post(&tw, "/_mock/faults",
                           "{\"path\":\"/Calls/CA[0-9a-f]+\\\\.json$\",\"status\":429,\"count\":2}",
                           NULL),
                 201);
    cr_assert_eq(twilio_fetch_call(cl, CALL, &c, &err), 0, "%s", err.message);
    cr_expect_eq(c.duration_s, 7);
    cr_expect_eq(call_requests(), 3);
}

Test(twilio, server_errors_exhaust_max_tries)
{
    twilio_call c;
    calllog_error err;
    metric *m = metrics_register(METRIC_COUNTER, "calllog_twilio_requests_total", "x", NULL, 0);
    seed_call("{\"sid\":\"" CALL "\"}");
    cr_assert_eq(mock_post(&tw, "/_mock/faults",
                           "{\"path\":\"/Calls/CA[0-9a-f]+\\\\.json$\",\"status\":503,\"count\":5}",
                           NULL),
                 201);
    cr_expect_eq(twilio_fetch_call(cl, CALL, &c, &err), -1);
    cr_expect_eq(err.http_status, 503);
    cr_expect_eq(call_requests(), 3, "max_tries is 3");
    cr_expect_eq(metric_value(m, "status=\"503\""), 3.0);
}

Test(twilio, recording_failure_keeps_call_fields)
{
    twilio_call c;
    calllog_error err;
    seed_call("{\"sid\":\"" CALL "\",\"duration\":\"9\"}");
    cr_assert_eq(mock_post(&tw, "/_mock/faults",
                           "{\"path\":\"/Recordings\\\\.json$\",\"status\":403,\"count\":1}", NULL),
                 201);
    cr_expect_eq(twilio_fetch_call(cl, CALL, &c, &err), -1);
    cr_expect_eq(err.http_status, 403);
    cr_expect_eq(c.duration_s, 9, "what was learnt stays in out");
}

Test(twilio, transport_error)
{
    mock_server gone;
    twilio_settings s = settings;
    twilio_call c;
    calllog_error err;
    cr_assert_eq(mock_start(&gone, "twilio_mock.py", NULL), 0);
    mock_stop(&gone);
    s.base_url = gone.base;
    s.max_tries = 2;
    twilio_client *dead = twilio_client_new(&s);
    cr_expect_eq(twilio_fetch_call(dead, CALL, &c, &err), -1);
    cr_expect_eq(err.curl_code, CURLE_COULDNT_CONNECT);
    cr_expect_eq(err.http_status, 0);
    twilio_client_free(dead);
}

Test(twilio, unusable_sid_is_refused)
{
    twilio_call c;
    calllog_error err;
    cr_expect_eq(twilio_fetch_call(cl, "../../etc", &c, &err), -1);
    cr_expect_eq(mock_count_requests(&tw, NULL), 0);
}

/* Seeds `n` parent calls ending one minute apart, the newest at `newest`, and a child leg. */
static void seed_list(int n, time_t newest)
{
    char buf[512], when[64];
    for (int i = 0; i < n; i++) {
        time_t t = newest - 60 * i;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(when, sizeof when, "%a, %d %b %Y %H:%M:%S +0000", &tm);
        snprintf(buf, sizeof buf,
                 "{\"sid\":\"CA%032d\",\"status\":\"completed\",\"start_time\":\"%s\","
                 "\"end_time\":\"%s\",\"duration\":\"0\",\"from\":\"+5511971730783\"}",
                 i, when, when);
        seed_call(buf);
    }
    snprintf(buf, sizeof buf,
             "{\"sid\":\"CAchild\",\"status\":\"completed\",\"parent_call_sid\":\"CA%032d\"}", 0);
    seed_call(buf);
}

Test(twilio, lists_calls_newest_first_following_next_page_uri)
{
    time_t newest = time(NULL) - 3600;
    seed_list(7, newest);
    twilio_calls_page page;
    calllog_error err;
    cr_assert_eq(twilio_list_calls(cl, NULL, newest - 86400, 3, &page, &err), 0, "%s", err.message);
    cr_assert_eq(page.n, 3);
    cr_assert_not_null(page.next_page_uri);
    size_t seen = 0, children = 0;
    time_t last = newest + 1;
    char *next = NULL;
    for (;;) {
        for (size_t i = 0; i < page.n; i++, seen++) {
            const twilio_call_summary *c = &page.calls[i];
            if (c->parent_call_sid) {
                children++;
                continue;
            }
            cr_expect(c->ended <= last, "newest first");
            cr_expect_eq(c->started, c->ended);
            cr_expect_str_eq(c->status, "completed");
            cr_expect_str_eq(c->from, "+5511971730783");
            cr_expect_null(c->caller_name, "null fields are NULL");
            last = c->ended;
        }
        free(next);
        next = page.next_page_uri ? strdup(page.next_page_uri) : NULL;
        twilio_calls_page_free(&page);
        if (!next)
            break;
        cr_assert_eq(twilio_list_calls(cl, next, 0, 3, &page, &err), 0, "%s", err.message);
    }
    cr_expect_eq(seen, 8);
    cr_expect_eq(children, 1);
    /* The first request asked for calls ended since that day (EndTime>=, day granularity). */
    cr_expect_eq(mock_count_requests(&tw, "/2010-04-01/Accounts/" ACCOUNT "/Calls.json"), 3);
}

Test(twilio, list_refuses_a_next_page_uri_of_another_resource)
{
    twilio_calls_page page;
    calllog_error err;
    cr_expect_eq(
        twilio_list_calls(cl, "/2010-04-01/Accounts/ACother/Calls.json?Page=1", 0, 50, &page, &err),
        -1);
    cr_expect_not_null(strstr(err.message, "next_page_uri"), "%s", err.message);
    cr_expect_eq(twilio_list_calls(cl, "http://elsewhere/x", 0, 50, &page, &err), -1);
    cr_expect_eq(twilio_list_calls(cl, NULL, 0, 0, &page, &err), -1, "page size 1-1000");
    cr_expect_eq(mock_count_requests(&tw, "/2010-04-01/Accounts/"), 0);
}
