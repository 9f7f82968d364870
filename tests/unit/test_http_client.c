/* test_http_client — unit tests for common/http_client against the RD Station and Twilio
 * mocks (tests/mocks/): methods, bodies and headers as the server saw them, Retry-After in
 * both forms, redirects not followed, Basic auth, transport failures (refused, dropped,
 * timed out, body over the cap) described by the URL's origin only (never its path, query
 * or user info), the answer's Content-Type, the error message built from an answer (one
 * line, clipped, never the query string), relabelling a transport failure, and the URL
 * helpers (origin, loopback hosts, plain text outside loopback). */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/http_client.h"
#include "tests/lib/free_port.h"
#include "tests/lib/mock_server.h"

static mock_server rd;
static http_client *hc;

/* Starts the RD mock (used here as a programmable HTTP server) and a client. */
static void setup(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    cr_assert_eq(mock_start(&rd, "rdstation_mock.py", NULL), 0, "mock did not start");
    hc = http_client_new(5000, 2000);
    cr_assert_not_null(hc);
}

/* Stops everything. */
static void teardown(void)
{
    http_client_free(hc);
    mock_stop(&rd);
    curl_global_cleanup();
}

TestSuite(http_client, .init = setup, .fini = teardown);

/* Arms one fault on the mock. */
static void arm(const char *fault_json)
{
    cr_assert_eq(mock_post(&rd, "/_mock/faults", fault_json, NULL), 201, "fault %s", fault_json);
}

/* The last logged API request. */
static json_t *last_request(void)
{
    json_t *log = mock_get(&rd, "/_mock/requests");
    json_t *reqs = json_object_get(log, "requests");
    cr_assert(json_array_size(reqs) > 0, "no request logged");
    json_t *e = json_incref(json_array_get(reqs, json_array_size(reqs) - 1));
    json_decref(log);
    return e;
}

/* GET to a URL of the mock; the answer must arrive. */
static void get_ok(const char *path, http_response *r)
{
    char url[256];
    calllog_error err;
    snprintf(url, sizeof url, "%s%s", rd.base, path);
    cr_assert_eq(http_request(hc, "GET", url, NULL, NULL, NULL, 0, r, &err), 0, "%s", err.message);
}

Test(http_client, get_returns_status_and_body_and_sends_user_agent)
{
    http_response r;
    get_ok("/api/v1/users?token=mock-v1-token", &r);
    cr_expect_eq(r.status, 200);
    cr_expect_not_null(strstr(r.body, "\"users\""));
    cr_expect_eq(r.body_len, strlen(r.body));
    cr_expect_eq(r.retry_after_ms, -1);
    http_response_free(&r);
    cr_expect_null(r.body);

    json_t *e = last_request();
    cr_expect_str_eq(json_string_value(json_object_get(e, "user_agent")),
                     "calllog/" CALLLOG_VERSION);
    cr_expect_str_eq(json_string_value(json_object_get(e, "method")), "GET");
    json_decref(e);
}

Test(http_client, post_and_put_send_body_and_headers)
{
    static const char *const hdrs[] = {"Content-Type: application/json", NULL};
    const char *body = "{\"task\":{\"done\":true}}";
    char url[256];
    http_response r;
    calllog_error err;

    snprintf(url, sizeof url, "%s/api/v1/activities?token=mock-v1-token", rd.base);
    cr_assert_eq(http_request(hc, "POST", url, hdrs, NULL, "{}", 2, &r, &err), 0);
    cr_expect_eq(r.status, 422); /* no activity fields: RD's validation answer */
    http_response_free(&r);
    json_t *e = last_request();
    cr_expect_str_eq(json_string_value(json_object_get(e, "method")), "POST");
    cr_expect_str_eq(json_string_value(json_object_get(e, "content_type")), "application/json");
    json_decref(e);

    snprintf(url, sizeof url, "%s/api/v1/tasks/nope?token=mock-v1-token", rd.base);
    cr_assert_eq(http_request(hc, "PUT", url, hdrs, NULL, body, strlen(body), &r, &err), 0);
    cr_expect_eq(r.status, 404);
    http_response_free(&r);
    e = last_request();
    cr_expect_str_eq(json_string_value(json_object_get(e, "method")), "PUT");
    json_t *done = json_object_get(json_object_get(json_object_get(e, "body"), "task"), "done");
    cr_expect(json_is_true(done), "PUT body did not arrive");
    json_decref(e);
}

Test(http_client, retry_after_seconds_and_date)
{
    http_response r;
    char fault[256], date[64];
    time_t later = time(NULL) + 3600;
    struct tm tm;

    arm("{\"path\":\"^/a$\",\"status\":429,\"retry_after\":120}");
    get_ok("/a", &r);
    cr_expect_eq(r.status, 429);
    cr_expect_eq(r.retry_after_ms, 120000);
    http_response_free(&r);

    gmtime_r(&later, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    snprintf(fault, sizeof fault, "{\"path\":\"^/b$\",\"status\":503,\"retry_after\":\"%s\"}",
             date);
    arm(fault);
    get_ok("/b", &r);
    cr_expect_eq(r.status, 503);
    /* An hour ahead, give or take the seconds this test takes. */
    cr_expect(r.retry_after_ms > 3500000 && r.retry_after_ms <= 3600000, "got %ld",
              r.retry_after_ms);
    http_response_free(&r);

    arm("{\"path\":\"^/c$\",\"status\":503,\"retry_after\":\"soon\"}");
    get_ok("/c", &r);
    cr_expect_eq(r.retry_after_ms, -1);
    http_response_free(&r);
}

Test(http_client, redirects_are_not_followed)
{
    http_response r;
    arm("{\"path\":\"^/moved$\",\"status\":302,\"body\":\"\",\"headers\":{\"Location\":\"/api/v1/"
        "users?token=mock-v1-token\"}}");
    get_ok("/moved", &r);
    cr_expect_eq(r.status, 302);
    http_response_free(&r);
    cr_expect_eq(mock_count_requests(&rd, NULL), 1, "the redirect was followed");
}

Test(http_client, refused_connection_is_a_transport_error_without_query)
{
    char url[256], base[64];
    http_response r;
    calllog_error err;
    snprintf(base, sizeof base, "http://127.0.0.1:%d", free_port()); /* nobody listens */
    snprintf(url, sizeof url, "%s/api/v1/contacts?token=SECRET-TOKEN-123", base);
    cr_assert_eq(http_request(hc, "GET", url, NULL, NULL, NULL, 0, &r, &err), -1);
    cr_expect_eq(err.curl_code, CURLE_COULDNT_CONNECT);
    cr_expect_eq(err.http_status, 0);
    cr_expect_eq(err.retry_after_ms, -1);
    cr_expect_null(strstr(err.message, "SECRET"), "%s", err.message);
    cr_expect_null(strstr(err.message, "token="), "%s", err.message);
    cr_expect_null(strstr(err.message, "/api/v1/contacts"), "%s", err.message);
    char want[128];
    snprintf(want, sizeof want, "GET %s/...: ", base);
    cr_expect(strncmp(err.message, want, strlen(want)) == 0, "%s", err.message);
    cr_expect_null(r.body);
}

Test(http_client, dropped_connection_is_a_transport_error)
{
    http_response r;
    calllog_error err;
    char url[256];
    arm("{\"path\":\"^/drop$\",\"drop\":true}");
    snprintf(url, sizeof url, "%s/drop", rd.base);
    cr_assert_eq(http_request(hc, "GET", url, NULL, NULL, NULL, 0, &r, &err), -1);
    cr_expect_eq(err.curl_code, CURLE_GOT_NOTHING);
    cr_expect_eq(err.http_status, 0);
}

Test(http_client, timeout_is_a_transport_error)
{
    http_client *quick = http_client_new(300, 300);
    http_response r;
    calllog_error err;
    char url[256];
    arm("{\"path\":\"^/slow$\",\"delay_ms\":3000,\"status\":200}");
    snprintf(url, sizeof url, "%s/slow", rd.base);
    cr_assert_eq(http_request(quick, "GET", url, NULL, NULL, NULL, 0, &r, &err), -1);
    cr_expect_eq(err.curl_code, CURLE_OPERATION_TIMEDOUT);
    http_client_free(quick);
}

Test(http_client, body_over_the_cap_fails)
{
    size_t n = (size_t)HTTP_CLIENT_MAX_BODY + 1000;
    char *fault = malloc(n + 100), url[256];
    http_response r;
    calllog_error err;
    int len = sprintf(fault, "{\"path\":\"^/big$\",\"status\":200,\"body\":\"");
    memset(fault + len, 'x', n);
    strcpy(fault + len + n, "\"}");
    arm(fault);
    free(fault);
    snprintf(url, sizeof url, "%s/big", rd.base);
    cr_assert_eq(http_request(hc, "GET", url, NULL, NULL, NULL, 0, &r, &err), -1);
    cr_expect_neq(err.curl_code, 0);
    cr_expect_not_null(strstr(err.message, "size limit"), "%s", err.message);
    cr_expect_null(r.body);

    /* The handle is still usable afterwards. */
    get_ok("/api/v1/users?token=mock-v1-token", &r);
    cr_expect_eq(r.status, 200);
    http_response_free(&r);
}

Test(http_client, basic_auth_is_sent)
{
    mock_server tw;
    char url[256];
    http_response r;
    calllog_error err;
    cr_assert_eq(mock_start(&tw, "twilio_mock.py", NULL), 0);
    snprintf(url, sizeof url, "%s/2010-04-01/Accounts/AC%s1/Calls/CA1.json", tw.base,
             "0000000000000000000000000000000");
    cr_assert_eq(http_request(hc, "GET", url, NULL,
                              "AC00000000000000000000000000000001:mock-auth-token", NULL, 0, &r,
                              &err),
                 0);
    cr_expect_eq(r.status, 404, "right credentials reach the route (unknown call)");
    http_response_free(&r);
    cr_assert_eq(http_request(hc, "GET", url, NULL, "AC00000000000000000000000000000001:wrong",
                              NULL, 0, &r, &err),
                 0);
    cr_expect_eq(r.status, 401);
    http_response_free(&r);
    cr_assert_eq(http_request(hc, "GET", url, NULL, NULL, NULL, 0, &r, &err), 0);
    cr_expect_eq(r.status, 401, "basic auth must not leak into the next request");
    http_response_free(&r);
    mock_stop(&tw);
}

Test(http_escape, encodes_all_but_unreserved)
{
    char *s = http_escape("+55 (11) 9\xc3\xa1/&=?%:");
    cr_assert_not_null(s);
    cr_expect_str_eq(s, "%2B55%20%2811%29%209%C3%A1%2F%26%3D%3F%25%3A");
    free(s);
    s = http_escape("AZaz09-._~");
    cr_expect_str_eq(s, "AZaz09-._~");
    free(s);
    s = http_escape("");
    cr_expect_str_eq(s, "");
    free(s);
    cr_expect_null(http_escape(NULL));
}

TestSuite(http_error);

Test(http_error, one_line_status_and_body_without_query)
{
    char body[] = "{\"errors\":\n  {\"text\": [\"n\xc3\xa3o pode\"]}\r\n}";
    http_response r = {422, body, sizeof body - 1, -1, ""};
    calllog_error err;
    http_error_from_response(&r, "POST /activities?token=abc123", &err);
    cr_expect_eq(err.http_status, 422);
    cr_expect_eq(err.curl_code, 0);
    cr_expect_eq(err.retry_after_ms, -1);
    cr_expect_str_eq(err.message,
                     "POST /activities: 422 {\"errors\": {\"text\": [\"n\xc3\xa3o pode\"]} }");
}

Test(http_error, long_bodies_are_clipped_and_retry_after_kept)
{
    char *body = malloc(5000);
    cr_assert_not_null(body, "out of memory");
    memset(body, 'y', 4999);
    body[4999] = '\0';
    http_response r = {429, body, 4999, 30000, ""};
    calllog_error err;
    http_error_from_response(&r, "GET /contacts", &err);
    cr_expect_eq(err.http_status, 429);
    cr_expect_eq(err.retry_after_ms, 30000);
    cr_expect_eq(strlen(err.message), sizeof err.message - 1);
    cr_expect(strncmp(err.message, "GET /contacts: 429 yyy", 22) == 0, "%s", err.message);
    cr_expect_str_eq(err.message + strlen(err.message) - 3, "...");
    free(body);
}

Test(http_error, empty_body)
{
    http_response r = {500, NULL, 0, -1, ""};
    calllog_error err;
    http_error_from_response(&r, "GET /deals/1", &err);
    cr_expect_str_eq(err.message, "GET /deals/1: 500");
}

/* A secret path (a Slack webhook's) and user info never reach a transport error. */
Test(http_client, transport_error_hides_path_and_user_info)
{
    char url[256];
    http_response r;
    calllog_error err;
    int port = free_port(); /* nobody listens */
    snprintf(url, sizeof url, "http://bob:PASSWORD-42@127.0.0.1:%d/services/T0/B0/SECRETPATH",
             port);
    cr_assert_eq(http_request(hc, "POST", url, NULL, NULL, "{}", 2, &r, &err), -1);
    cr_expect_eq(err.curl_code, CURLE_COULDNT_CONNECT);
    cr_expect_null(strstr(err.message, "SECRETPATH"), "%s", err.message);
    cr_expect_null(strstr(err.message, "/services"), "%s", err.message);
    cr_expect_null(strstr(err.message, "PASSWORD"), "%s", err.message);
    cr_expect_null(strstr(err.message, "bob"), "%s", err.message);
    char want[128];
    snprintf(want, sizeof want, "POST http://127.0.0.1:%d/...: ", port);
    cr_expect(strncmp(err.message, want, strlen(want)) == 0, "%s", err.message);
}

/* The answer's Content-Type is kept, clipped to one line. */
Test(http_client, content_type_is_kept)
{
    http_response r;
    arm("{\"path\":\"^/page$\",\"status\":200,\"body\":\"<html></html>\"}");
    get_ok("/page", &r);
    cr_expect_str_eq(r.content_type, "text/html; charset=utf-8");
    http_response_free(&r);
    arm("{\"path\":\"^/bare$\",\"status\":200,\"body\":\"x\",\"content_type\":\"\"}");
    get_ok("/bare", &r);
    cr_expect_eq(r.status, 200);
    http_response_free(&r);
}

Test(http_error, relabel_names_the_endpoint_of_a_transport_failure)
{
    calllog_error err = {.code = CALLLOG_TRANSIENT,
                         .curl_code = 7,
                         .retry_after_ms = -1,
                         .message = "GET http://127.0.0.1:9/...: Couldn't connect to server"};
    http_error_relabel(&err, "GET /contacts?phone=%2B5511");
    cr_expect_str_eq(err.message, "GET /contacts: Couldn't connect to server");
    calllog_error answered = {.code = CALLLOG_PERMANENT,
                              .http_status = 422,
                              .retry_after_ms = -1,
                              .message = "POST /activities: 422 {}"};
    http_error_relabel(&answered, "POST /x");
    cr_expect_str_eq(answered.message, "POST /activities: 422 {}", "only transport failures");
}

TestSuite(http_url);

Test(http_url, origin_keeps_scheme_host_and_port_only)
{
    char out[128];
    http_url_origin("https://hooks.slack.com/services/T000/B000/XXXX", out, sizeof out);
    cr_expect_str_eq(out, "https://hooks.slack.com/...");
    http_url_origin("https://u:p@example.com:8443/a?token=t", out, sizeof out);
    cr_expect_str_eq(out, "https://example.com:8443/...");
    http_url_origin("http://127.0.0.1:80/", out, sizeof out);
    cr_expect_str_eq(out, "http://127.0.0.1:80");
    http_url_origin("http://[::1]:81?key=k", out, sizeof out);
    cr_expect_str_eq(out, "http://[::1]:81/...");
    http_url_origin("example.com/x", out, sizeof out);
    cr_expect_str_eq(out, "example.com/...");
}

Test(http_url, loopback_hosts)
{
    static const char *const yes[] = {"localhost", "LOCALHOST", "127.0.0.1",       "127.1.2.3",
                                      "::1",       "[::1]",     "::ffff:127.0.0.1"};
    static const char *const no[] = {"",    "example.com",           "128.0.0.1",       "10.0.0.1",
                                     "::2", "localhost.example.com", "127.0.0.1.nip.io"};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++)
        cr_expect(http_host_is_loopback(yes[i]), "%s", yes[i]);
    for (size_t i = 0; i < sizeof no / sizeof *no; i++)
        cr_expect(!http_host_is_loopback(no[i]), "%s", no[i]);
    cr_expect(!http_host_is_loopback(NULL));
}

Test(http_url, plaintext_outside_loopback)
{
    cr_expect(http_url_is_plaintext_remote("http://crm.example.com/api/v1"));
    cr_expect(http_url_is_plaintext_remote("HTTP://10.0.0.5:8080"));
    cr_expect(http_url_is_plaintext_remote("http://u:p@192.0.2.1/x"));
    cr_expect(http_url_is_plaintext_remote("http://[2001:db8::1]:80/x"));
    cr_expect(!http_url_is_plaintext_remote("https://crm.example.com/api/v1"));
    cr_expect(!http_url_is_plaintext_remote("http://127.0.0.1:5000/api/v1"));
    cr_expect(!http_url_is_plaintext_remote("http://localhost/x"));
    cr_expect(!http_url_is_plaintext_remote("http://[::1]:9/x"));
    cr_expect(!http_url_is_plaintext_remote("http://u:p@127.0.0.1/x"));
    cr_expect(!http_url_is_plaintext_remote(NULL));
}
