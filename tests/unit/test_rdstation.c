/* test_rdstation — unit tests for worker/rdstation (and worker/rd_oauth) against the RD
 * Station mock (tests/mocks/rdstation_mock.py), API v1 and v2.
 *
 * Most behaviours are checked on both versions with the same test body: finding a contact
 * through the forms accounts hold (hand-typed national, pre-2016 8-digit mobile), refusing
 * a contact whose phones do not confirm the match, choosing the open deal updated last,
 * posting notes and completed call tasks (checked in the mock's store), the marker search,
 * error answers (422, 429, 404, 500, transport) as calllog_error, and the rate limiter being
 * called exactly once per request. v2 adds OAuth: refresh on first use, after the API
 * refuses an expired token, before a stored token runs out, refresh-token rotation kept in
 * Redis (shared by clients with a different configured token), a rejected refresh token,
 * a second 401, and concurrent workers refreshing once.
 *
 * v2 tests need a real Redis: CALLLOG_TEST_REDIS_URL (tests/run.sh provides one). Each
 * test uses its own key prefix and deletes its keys. */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/http_client.h"
#include "common/keys.h"
#include "common/metrics.h"
#include "common/redis_client.h"
#include "tests/lib/mock_server.h"
#include "worker/rd_oauth.h"
#include "worker/rdstation.h"
#include "worker/retry_policy.h"

#define V1_TOKEN "mock-v1-token"
#define USER_ID "5e0000000000000000000001"
#define CUSTOMER "+5511971730783"

static mock_server rd;
static rd_api api;
static rd_client *cl;
static int acquired;
static ratelimit_lane last_lane; /* the lane of the last request */
static int stopping;
static redisContext *redis;
static calllog_keys keys;
static char prefix[96];
static char base_url[128];
static char oauth_url[128];

/* The rate limiter stand-in: counts calls; refuses when the test says the worker stops. */
static int count_acquire(void *arg, ratelimit_lane lane)
{
    (void)arg;
    last_lane = lane;
    acquired++;
    return stopping ? -1 : 0;
}

/* A client of the current API version with the given configured refresh token. */
static rd_client *client_with(const char *refresh_token)
{
    rd_settings s = {0};
    s.api = api;
    s.base_url = base_url;
    s.token = api == RD_API_V1 ? V1_TOKEN : NULL;
    s.client_id = "mock-client-id";
    s.client_secret = "mock-client-secret";
    s.refresh_token = refresh_token;
    s.oauth_url = oauth_url;
    s.timeout_ms = 10000;
    s.acquire = count_acquire;
    s.acquire_arg = NULL;
    return rd_client_new(&s, redis, &keys);
}

/* Connects to the test Redis (v2 only); fails the test clearly when there is none. */
static void connect_redis(void)
{
    const char *url = getenv("CALLLOG_TEST_REDIS_URL");
    redis_target t;
    calllog_error err;
    cr_assert(url != NULL && url[0] != '\0',
              "CALLLOG_TEST_REDIS_URL is not set: v2 tests need a real Redis "
              "(bash tests/run.sh starts one)");
    cr_assert_eq(redis_url_parse(url, &t, &err), 0, "%s", err.message);
    redis = redis_open(&t, 5000, &err);
    cr_assert_not_null(redis, "redis: %s", err.message);
}

/* Connects to Redis (v2), starts the mock and makes the client. */
static void start(rd_api version)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    api = version;
    acquired = 0;
    stopping = 0;
    snprintf(prefix, sizeof prefix, "rdtest:%d:%lld", (int)getpid(), (long long)time(NULL));
    cr_assert_eq(keys_build(prefix, &keys), 0);
    if (version == RD_API_V2)
        connect_redis();
    cr_assert_eq(mock_start(&rd, "rdstation_mock.py", NULL), 0, "RD mock did not start");
    snprintf(base_url, sizeof base_url, "%s%s", rd.base,
             version == RD_API_V1 ? "/api/v1" : "/crm/v2");
    snprintf(oauth_url, sizeof oauth_url, "%s/oauth2/token", rd.base);
    cl = client_with("mock-refresh-token");
    cr_assert_not_null(cl);
}

/* Deletes this test's Redis keys. */
static void drop_keys(void)
{
    redisReply *r;
    if (redis == NULL)
        return;
    r = redisCommand(redis, "DEL %s %s:lock %s", keys.oauth, keys.oauth, keys.rdstation_plan);
    if (r != NULL)
        freeReplyObject(r);
}

/* Stops everything start() began. */
static void stop(void)
{
    rd_client_free(cl);
    cl = NULL;
    drop_keys();
    if (redis != NULL)
        redisFree(redis);
    redis = NULL;
    mock_stop(&rd);
    curl_global_cleanup();
}

static void start_v1(void)
{
    start(RD_API_V1);
}

static void start_v2(void)
{
    start(RD_API_V2);
}

TestSuite(v1, .init = start_v1, .fini = stop);
TestSuite(v2, .init = start_v2, .fini = stop);

/* ---- helpers -------------------------------------------------------------------------- */

/* Seeds one contact (JSON seed spec); returns {contact_id, deal_ids} (caller decrefs). */
static json_t *seed(const char *spec)
{
    json_t *out = NULL;
    cr_assert_eq(mock_post(&rd, "/_mock/contacts", spec, &out), 201, "seed %s", spec);
    return out;
}

/* The seeded contact's id. */
static const char *seed_id(json_t *s)
{
    return json_string_value(json_object_get(s, "contact_id"));
}

/* The seeded contact's i-th deal id. */
static const char *seed_deal(json_t *s, size_t i)
{
    return json_string_value(json_array_get(json_object_get(s, "deal_ids"), i));
}

/* Arms a fault on the mock. */
static void arm(const char *fault)
{
    cr_assert_eq(mock_post(&rd, "/_mock/faults", fault, NULL), 201, "fault %s", fault);
}

/* The path prefix of the current version's API requests. */
static const char *api_path(void)
{
    return api == RD_API_V1 ? "/api/v1/" : "/crm/v2/";
}

/* The version label the mock stores on notes and tasks. */
static const char *api_name(void)
{
    return api == RD_API_V1 ? "v1" : "v2";
}

/* The limiter must have been asked exactly once per API request the mock saw. */
static void expect_one_acquire_per_request(void)
{
    size_t n = mock_count_requests(&rd, api_path());
    cr_expect_eq((size_t)acquired, n, "acquire called %d times for %zu requests", acquired, n);
}

/* An integer field of GET /_mock/oauth. */
static long long oauth_state(const char *field)
{
    json_t *o = mock_get(&rd, "/_mock/oauth");
    long long v = json_integer_value(json_object_get(o, field));
    json_decref(o);
    return v;
}

/* A field of the Redis token hash ("" when absent); caller frees. */
static char *hash_field(const char *field)
{
    redisReply *r = redisCommand(redis, "HGET %s %s", keys.oauth, field);
    char *v = strdup(r != NULL && r->type == REDIS_REPLY_STRING ? r->str : "");
    if (r != NULL)
        freeReplyObject(r);
    return v;
}

/* The mock's note list (caller decrefs). */
static json_t *mock_list(const char *what)
{
    char path[64];
    snprintf(path, sizeof path, "/_mock/%s", what);
    json_t *all = mock_get(&rd, path);
    json_t *list = json_incref(json_object_get(all, what));
    json_decref(all);
    return list;
}

/* The message must not hold any credential. */
static void expect_no_secret(const calllog_error *err)
{
    char *access = api == RD_API_V2 ? hash_field("access_token") : strdup("");
    cr_expect_null(strstr(err->message, V1_TOKEN), "%s", err->message);
    cr_expect_null(strstr(err->message, "token="), "%s", err->message);
    cr_expect_null(strstr(err->message, "mock-refresh-token"), "%s", err->message);
    cr_expect_null(strstr(err->message, "mock-client-secret"), "%s", err->message);
    if (access[0] != '\0')
        cr_expect_null(strstr(err->message, access), "%s", err->message);
    free(access);
}

/* ---- contacts ------------------------------------------------------------------------- */

/* The contact is stored hand-typed in the national form; Twilio gives E.164. */
static void contact_by_national_form(void)
{
    json_t *s = seed("{\"name\":\"Maria\",\"phones\":[\"(11) 97173-0783\"]}");
    rd_contact c;
    calllog_error err;
    cr_assert_eq(rd_find_contact(cl, CUSTOMER, &c, &err), CALLLOG_OK, "%s", err.message);
    cr_expect_str_eq(c.id, seed_id(s));
    cr_expect_str_eq(c.name, "Maria");
    expect_one_acquire_per_request();
    json_decref(s);
}
Test(v1, contact_by_national_form)
{
    contact_by_national_form();
}
Test(v2, contact_by_national_form)
{
    contact_by_national_form();
}

/* The form that found the last contact is searched first: in an account that holds
 * national forms, the second new caller costs one search, not three. */
static void second_caller_starts_with_the_form_that_matched(void)
{
    json_t *a = seed("{\"name\":\"Maria\",\"phones\":[\"(11) 97173-0783\"]}");
    json_t *b = seed("{\"name\":\"Ana\",\"phones\":[\"(21) 98888-1234\"]}");
    rd_contact c;
    calllog_error err;
    cr_assert_eq(rd_find_contact(cl, CUSTOMER, &c, &err), CALLLOG_OK, "%s", err.message);
    size_t first = mock_count_requests(&rd, api_path());
    cr_assert_gt(first, 1, "the national form is not the first one tried");
    cr_assert_eq(rd_find_contact(cl, "+5521988881234", &c, &err), CALLLOG_OK, "%s", err.message);
    cr_expect_str_eq(c.id, seed_id(b));
    cr_expect_eq(mock_count_requests(&rd, api_path()) - first, 1);
    cr_assert_eq(rd_find_contact(cl, CUSTOMER, &c, &err), CALLLOG_OK, "%s", err.message);
    cr_expect_str_eq(c.id, seed_id(a));
    expect_one_acquire_per_request();
    json_decref(a);
    json_decref(b);
}
Test(v1, second_caller_starts_with_the_form_that_matched)
{
    second_caller_starts_with_the_form_that_matched();
}
Test(v2, second_caller_starts_with_the_form_that_matched)
{
    second_caller_starts_with_the_form_that_matched();
}

/* The contact was saved before the 9th digit existed. */
static void contact_by_old_8_digit_mobile(void)
{
    json_t *s = seed("{\"name\":\"Jo\\u00e3o\",\"phones\":[{\"phone\":\"(11) 7173-0783\","
                     "\"type\":\"work\"}]}");
    rd_contact c;
    calllog_error err;
    cr_assert_eq(rd_find_contact(cl, CUSTOMER, &c, &err), CALLLOG_OK, "%s", err.message);
    cr_expect_str_eq(c.id, seed_id(s));
    cr_expect_str_eq(c.name, "Jo\xc3\xa3o");
    expect_one_acquire_per_request();
    json_decref(s);
}
Test(v1, contact_by_old_8_digit_mobile)
{
    contact_by_old_8_digit_mobile();
}
Test(v2, contact_by_old_8_digit_mobile)
{
    contact_by_old_8_digit_mobile();
}

/* Nobody holds the number: every form is tried, then CALLLOG_NOT_FOUND. */
static void contact_not_found(void)
{
    json_t *s = seed("{\"name\":\"Other\",\"phones\":[\"+55 21 99999-0000\"]}");
    rd_contact c;
    calllog_error err;
    cr_expect_eq(rd_find_contact(cl, CUSTOMER, &c, &err), CALLLOG_NOT_FOUND);
    cr_expect_str_eq(c.id, "");
    cr_expect(mock_count_requests(&rd, api_path()) >= 5, "not every form was tried");
    expect_one_acquire_per_request();
    json_decref(s);
}
Test(v1, contact_not_found)
{
    contact_not_found();
}
Test(v2, contact_not_found)
{
    contact_not_found();
}

/* The server returns a contact whose phones are another line: it must not be taken. */
static void unconfirmed_contact_is_ignored(void)
{
    const char *fault =
        api == RD_API_V1
            ? "{\"method\":\"GET\",\"path\":\"^/api/v1/contacts$\",\"status\":200,\"count\":-1,"
              "\"body\":{\"contacts\":[{\"_id\":\"x1\",\"id\":\"x1\",\"name\":\"Wrong\","
              "\"phones\":[{\"phone\":\"+55 21 97173-0783\"}],\"deals\":[]}],\"total\":1}}"
            : "{\"method\":\"GET\",\"path\":\"^/crm/v2/contacts$\",\"status\":200,\"count\":-1,"
              "\"body\":{\"data\":[{\"id\":\"x1\",\"name\":\"Wrong\",\"phones\":[{\"phone\":"
              "\"+55 21 97173-0783\"}]}],\"links\":{}}}";
    rd_contact c;
    calllog_error err;
    arm(fault);
    cr_expect_eq(rd_find_contact(cl, CUSTOMER, &c, &err), CALLLOG_NOT_FOUND, "%s", err.message);
}
Test(v1, unconfirmed_contact_is_ignored)
{
    unconfirmed_contact_is_ignored();
}
Test(v2, unconfirmed_contact_is_ignored)
{
    unconfirmed_contact_is_ignored();
}

/* "anonymous" or a SIP client is not a phone: no request at all. */
static void not_a_phone(void)
{
    rd_contact c;
    calllog_error err;
    cr_expect_eq(rd_find_contact(cl, "anonymous", &c, &err), CALLLOG_NOT_FOUND);
    cr_expect_eq(acquired, 0);
    cr_expect_eq(mock_count_requests(&rd, NULL), 0);
}
Test(v1, not_a_phone)
{
    not_a_phone();
}
Test(v2, not_a_phone)
{
    not_a_phone();
}

/* ---- deals ---------------------------------------------------------------------------- */

/* Seeds a contact with won, lost, two open and a paused deal; returns the seed. */
static json_t *seed_deals(void)
{
    return seed("{\"name\":\"Ana\",\"phones\":[\"+5511971730783\"],\"deals\":["
                "{\"name\":\"won\",\"win\":true,\"updated_at\":\"2026-06-01T00:00:00Z\"},"
                "{\"name\":\"old open\",\"updated_at\":\"2026-01-01T00:00:00Z\"},"
                "{\"name\":\"new open\",\"updated_at\":\"2026-03-01T12:00:00Z\"},"
                "{\"name\":\"lost\",\"win\":false,\"updated_at\":\"2026-05-01T00:00:00Z\"},"
                "{\"name\":\"paused\",\"status\":\"paused\",\"updated_at\":"
                "\"2026-04-01T00:00:00Z\"}]}");
}

/* Won, lost and paused deals are ignored; the open deal updated last wins. */
static void open_deal_latest_wins(void)
{
    json_t *s = seed_deals();
    rd_contact c;
    rd_deal d;
    calllog_error err;
    cr_assert_eq(rd_find_contact(cl, CUSTOMER, &c, &err), CALLLOG_OK, "%s", err.message);
    cr_assert_eq(rd_find_open_deal(cl, c.id, &d, &err), CALLLOG_OK, "%s", err.message);
    cr_expect_str_eq(d.id, seed_deal(s, 2));
    cr_expect_str_eq(d.name, "new open");
    /* Again without the contact look-up before it (the worker's cache case). */
    memset(&d, 0, sizeof d);
    cr_assert_eq(rd_find_open_deal(cl, c.id, &d, &err), CALLLOG_OK, "%s", err.message);
    cr_expect_str_eq(d.id, seed_deal(s, 2));
    cr_expect_str_eq(d.user_id, USER_ID);
    expect_one_acquire_per_request();
    json_decref(s);
}
Test(v1, open_deal_latest_wins)
{
    /* The mock's embedded v1 summaries do not say `hold`: drop the paused deal here. */
    json_t *s = seed("{\"name\":\"Ana\",\"phones\":[\"+5511971730783\"],\"deals\":["
                     "{\"name\":\"won\",\"win\":true,\"updated_at\":\"2026-06-01T00:00:00Z\"},"
                     "{\"name\":\"old open\",\"updated_at\":\"2026-01-01T00:00:00Z\"},"
                     "{\"name\":\"new open\",\"updated_at\":\"2026-03-01T12:00:00Z\"},"
                     "{\"name\":\"lost\",\"win\":false,\"updated_at\":\"2026-05-01T00:00:00Z\"}]}");
    rd_contact c;
    rd_deal d;
    calllog_error err;
    cr_assert_eq(rd_find_contact(cl, CUSTOMER, &c, &err), CALLLOG_OK, "%s", err.message);
    size_t before = mock_count_requests(&rd, "/api/v1/");
    cr_assert_eq(rd_find_open_deal(cl, c.id, &d, &err), CALLLOG_OK, "%s", err.message);
    cr_expect_str_eq(d.id, seed_deal(s, 2));
    cr_expect_eq(mock_count_requests(&rd, "/api/v1/"), before, "embedded deals cost no request");
    expect_one_acquire_per_request();
    json_decref(s);
}
Test(v1, open_deal_without_contact_lookup_skips_paused)
{
    json_t *s = seed_deals();
    rd_deal d;
    calllog_error err;
    cr_assert_eq(rd_find_open_deal(cl, seed_id(s), &d, &err), CALLLOG_OK, "%s", err.message);
    cr_expect_str_eq(d.id, seed_deal(s, 2));
    cr_expect_str_eq(d.user_id, USER_ID);
    expect_one_acquire_per_request();
    json_decref(s);
}
Test(v2, open_deal_latest_wins)
{
    open_deal_latest_wins();
}

/* Only won and lost deals: CALLLOG_NOT_FOUND. */
static void no_open_deal(void)
{
    json_t *s = seed("{\"name\":\"Bia\",\"phones\":[\"+5511971730783\"],\"deals\":["
                     "{\"name\":\"won\",\"win\":true},{\"name\":\"lost\",\"win\":false}]}");
    rd_deal d;
    calllog_error err;
    cr_expect_eq(rd_find_open_deal(cl, seed_id(s), &d, &err), CALLLOG_NOT_FOUND, "%s", err.message);
    json_decref(s);
}
Test(v1, no_open_deal)
{
    no_open_deal();
}
Test(v2, no_open_deal)
{
    no_open_deal();
}

Test(v1, unknown_contact_has_no_deal)
{
    rd_deal d;
    calllog_error err;
    cr_expect_eq(rd_find_open_deal(cl, "000000000000000000000000", &d, &err), CALLLOG_NOT_FOUND);
}

/* v1 summaries without updated_at: the candidates are fetched to compare them. */
Test(v1, summaries_without_updated_at_are_fetched)
{
    json_t *s = seed("{\"name\":\"Ana\",\"phones\":[\"+5511971730783\"],\"deals\":["
                     "{\"name\":\"old open\",\"updated_at\":\"2026-01-01T00:00:00Z\"},"
                     "{\"name\":\"new open\",\"updated_at\":\"2026-03-01T00:00:00Z\"},"
                     "{\"name\":\"won\",\"win\":true}]}");
    char fault[1024];
    rd_contact c;
    rd_deal d;
    calllog_error err;
    snprintf(fault, sizeof fault,
             "{\"method\":\"GET\",\"path\":\"^/api/v1/contacts$\",\"status\":200,\"body\":"
             "{\"contacts\":[{\"_id\":\"%s\",\"name\":\"Ana\",\"phones\":[{\"phone\":"
             "\"+5511971730783\"}],\"deals\":[{\"_id\":\"%s\",\"win\":null},{\"id\":\"%s\","
             "\"win\":null,\"closed_at\":null},{\"_id\":\"%s\",\"win\":true}]}]}}",
             seed_id(s), seed_deal(s, 0), seed_deal(s, 1), seed_deal(s, 2));
    arm(fault);
    cr_assert_eq(rd_find_contact(cl, CUSTOMER, &c, &err), CALLLOG_OK, "%s", err.message);
    cr_assert_eq(rd_find_open_deal(cl, c.id, &d, &err), CALLLOG_OK, "%s", err.message);
    cr_expect_str_eq(d.id, seed_deal(s, 1));
    json_t *log = mock_get(&rd, "/_mock/requests?path=%5E/api/v1/deals/");
    cr_expect_eq(json_array_size(json_object_get(log, "requests")), 2, "two candidates fetched");
    json_decref(log);
    expect_one_acquire_per_request();
    json_decref(s);
}

/* v2: RD refuses filter=contact_id → the client retries with contact_ids. */
Test(v2, deal_filter_falls_back_to_contact_ids)
{
    json_t *s = seed_deals();
    rd_deal d;
    calllog_error err;
    arm("{\"method\":\"GET\",\"path\":\"^/crm/v2/deals$\",\"query\":\"contact_id%3A\","
        "\"status\":400}");
    cr_assert_eq(rd_find_open_deal(cl, seed_id(s), &d, &err), CALLLOG_OK, "%s", err.message);
    cr_expect_str_eq(d.id, seed_deal(s, 2));
    json_t *log = mock_get(&rd, "/_mock/requests?path=%5E/crm/v2/deals");
    json_t *reqs = json_object_get(log, "requests");
    cr_assert_eq(json_array_size(reqs), 2);
    const char *q = json_string_value(json_object_get(json_array_get(reqs, 1), "query"));
    cr_expect_not_null(strstr(q, "contact_ids%3A"), "%s", q);
    json_decref(log);
    expect_one_acquire_per_request();
    json_decref(s);
}

/* v2: a deal listed for another contact (RD ignoring the filter) is not taken. */
Test(v2, deals_of_other_contacts_are_ignored)
{
    json_t *s = seed("{\"name\":\"Ana\",\"phones\":[\"+5511971730783\"]}");
    rd_deal d;
    calllog_error err;
    arm("{\"method\":\"GET\",\"path\":\"^/crm/v2/deals$\",\"status\":200,\"body\":{\"data\":"
        "[{\"id\":\"d9\",\"name\":\"someone else\",\"status\":\"ongoing\",\"contact_ids\":"
        "[\"c9\"],\"updated_at\":\"2026-01-01T00:00:00Z\"}],\"links\":{}}}");
    cr_expect_eq(rd_find_open_deal(cl, seed_id(s), &d, &err), CALLLOG_NOT_FOUND, "%s", err.message);
    json_decref(s);
}

/* ---- notes ---------------------------------------------------------------------------- */

/* The note lands on the deal with its text and user. */
static void note_posted(void)
{
    json_t *s = seed_deals();
    char id[64];
    calllog_error err;
    const char *text = "Liga\xc3\xa7\xc3\xa3o recebida\n[calllog:CA0001]";
    cr_assert_eq(rd_post_note(cl, seed_deal(s, 2), USER_ID, text, id, sizeof id, &err), CALLLOG_OK,
                 "%s", err.message);
    json_t *notes = mock_list("notes");
    cr_assert_eq(json_array_size(notes), 1);
    json_t *n = json_array_get(notes, 0);
    cr_expect_str_eq(json_string_value(json_object_get(n, "text")), text);
    cr_expect_str_eq(json_string_value(json_object_get(n, "deal_id")), seed_deal(s, 2));
    cr_expect_str_eq(json_string_value(json_object_get(n, "user_id")), USER_ID);
    cr_expect_str_eq(json_string_value(json_object_get(n, "version")), api_name());
    cr_expect_str_eq(id, json_string_value(json_object_get(n, "id")));
    expect_one_acquire_per_request();
    json_decref(notes);
    json_decref(s);
}
Test(v1, note_posted)
{
    note_posted();
}
Test(v2, note_posted)
{
    note_posted();
}

/* The metrics count each request by endpoint and status. */
Test(v1, requests_are_counted_in_metrics)
{
    json_t *s = seed_deals();
    metric *m = metrics_register(METRIC_COUNTER, "calllog_crm_requests_total", "x", NULL, 0);
    const char *series = "endpoint=\"POST /activities\",status=\"200\"";
    double before = metric_value(m, series);
    char id[64];
    calllog_error err;
    cr_assert_eq(rd_post_note(cl, seed_deal(s, 2), USER_ID, "hello", id, sizeof id, &err),
                 CALLLOG_OK);
    cr_expect_eq(metric_value(m, series) - before, 1.0);
    cr_expect_lt(rd_post_note(cl, seed_deal(s, 2), USER_ID, "", id, sizeof id, &err), 0);
    cr_expect_eq(metric_value(m, "endpoint=\"POST /activities\",status=\"422\""), 1.0);
    json_decref(s);
}

/* A note on a deal that vanished: a failure with 404, so the caller drops its cache. */
static void note_on_missing_deal(void)
{
    char id[64];
    calllog_error err;
    cr_expect_lt(rd_post_note(cl, "0000000000000000000000ff", USER_ID, "x", id, sizeof id, &err),
                 0);
    cr_expect_eq(err.http_status, 404);
    cr_expect_str_eq(id, "");
    expect_no_secret(&err);
}
Test(v1, note_on_missing_deal)
{
    note_on_missing_deal();
}
Test(v2, note_on_missing_deal)
{
    note_on_missing_deal();
}

/* A validation error: a failure, 422, a readable message without credentials. */
static void note_rejected_422(void)
{
    json_t *s = seed_deals();
    char id[64];
    calllog_error err;
    const char *prefix_msg = api == RD_API_V1 ? "POST /activities: 422 " : "POST /deals/";
    cr_expect_lt(rd_post_note(cl, seed_deal(s, 2), USER_ID, "", id, sizeof id, &err), 0);
    cr_expect_eq(err.http_status, 422);
    cr_expect_eq(err.curl_code, 0);
    cr_expect(strncmp(err.message, prefix_msg, strlen(prefix_msg)) == 0, "%s", err.message);
    cr_expect_not_null(strstr(err.message, "422 {\"errors\":"), "%s", err.message);
    cr_expect_null(strchr(err.message, '\n'));
    expect_no_secret(&err);
    json_decref(s);
}
Test(v1, note_rejected_422)
{
    note_rejected_422();
}
Test(v2, note_rejected_422)
{
    note_rejected_422();
}

/* Over RD's rate limit: 429 (v2 with the Retry-After it sent). */
Test(v1, rate_limited_429)
{
    json_t *s = seed_deals();
    char id[64];
    calllog_error err;
    cr_assert_eq(mock_post(&rd, "/_mock/ratelimit", "{\"limit\":1,\"clear\":true}", NULL), 200);
    cr_assert_eq(rd_post_note(cl, seed_deal(s, 2), USER_ID, "a", id, sizeof id, &err), CALLLOG_OK);
    cr_expect_lt(rd_post_note(cl, seed_deal(s, 2), USER_ID, "b", id, sizeof id, &err), 0);
    cr_expect_eq(err.http_status, 429);
    cr_expect_eq(err.retry_after_ms, -1, "v1 sends no Retry-After");
    cr_expect_not_null(strstr(err.message, "RATE_LIMIT_EXCEDDED"), "%s", err.message);
    expect_no_secret(&err);
    expect_one_acquire_per_request();
    json_decref(s);
}
Test(v2, rate_limited_429)
{
    json_t *s = seed_deals();
    char id[64];
    calllog_error err;
    cr_assert_eq(rd_post_note(cl, seed_deal(s, 2), USER_ID, "a", id, sizeof id, &err), CALLLOG_OK);
    cr_assert_eq(mock_post(&rd, "/_mock/ratelimit", "{\"limit\":1,\"clear\":true}", NULL), 200);
    cr_assert_eq(rd_post_note(cl, seed_deal(s, 2), USER_ID, "b", id, sizeof id, &err), CALLLOG_OK);
    cr_expect_lt(rd_post_note(cl, seed_deal(s, 2), USER_ID, "c", id, sizeof id, &err), 0);
    cr_expect_eq(err.http_status, 429);
    cr_expect(err.retry_after_ms >= 1000 && err.retry_after_ms <= 60000, "retry_after_ms %ld",
              err.retry_after_ms);
    expect_no_secret(&err);
    expect_one_acquire_per_request();
    json_decref(s);
}

/* An HTML 500 page becomes a one-line message. */
Test(v1, server_error_html)
{
    json_t *s = seed_deals();
    char id[64];
    calllog_error err;
    arm("{\"path\":\"^/api/v1/activities$\",\"status\":500}");
    cr_expect_lt(rd_post_note(cl, seed_deal(s, 2), USER_ID, "a", id, sizeof id, &err), 0);
    cr_expect_eq(err.http_status, 500);
    cr_expect_null(strchr(err.message, '\n'), "%s", err.message);
    cr_expect_not_null(strstr(err.message, "<title>500"), "%s", err.message);
    expect_no_secret(&err);
    json_decref(s);
}

/* Nobody listens: a transport error, no token in the message. */
static void transport_error(void)
{
    mock_server gone;
    rd_contact c;
    calllog_error err;
    cr_assert_eq(mock_start(&gone, "rdstation_mock.py", NULL), 0);
    mock_stop(&gone);
    snprintf(base_url, sizeof base_url, "%s%s", gone.base,
             api == RD_API_V1 ? "/api/v1" : "/crm/v2");
    rd_client *dead = client_with("mock-refresh-token");
    if (api == RD_API_V2) /* a stored token, so the API request itself is attempted */
        freeReplyObject(redisCommand(redis, "HSET %s access_token tok access_expires_at_ms %lld",
                                     keys.oauth, (long long)time(NULL) * 1000 + 3600000));
    cr_expect_lt(rd_find_contact(dead, CUSTOMER, &c, &err), 0);
    cr_expect_eq(err.curl_code, CURLE_COULDNT_CONNECT);
    cr_expect_eq(err.http_status, 0);
    expect_no_secret(&err);
    rd_client_free(dead);
}
Test(v1, transport_error)
{
    transport_error();
}
Test(v2, transport_error)
{
    transport_error();
}

/* A stopping worker: the limiter refuses, nothing is sent. */
static void acquire_refused(void)
{
    rd_contact c;
    calllog_error err;
    stopping = 1;
    if (api == RD_API_V2)
        freeReplyObject(redisCommand(redis, "HSET %s access_token tok access_expires_at_ms %lld",
                                     keys.oauth, (long long)time(NULL) * 1000 + 3600000));
    cr_expect_lt(rd_find_contact(cl, CUSTOMER, &c, &err), 0);
    cr_expect_eq(err.curl_code, -1);
    cr_expect_str_eq(err.message, "stopping");
    cr_expect_eq(mock_count_requests(&rd, api_path()), 0);
}
Test(v1, acquire_refused)
{
    acquire_refused();
}
Test(v2, acquire_refused)
{
    acquire_refused();
}

/* ---- tasks ---------------------------------------------------------------------------- */

/* The call task is created on the deal and then completed. */
static void call_task(void)
{
    json_t *s = seed_deals();
    char id[64];
    calllog_error err;
    struct tm tm = {0};
    tm.tm_year = 2026 - 1900;
    tm.tm_mon = 10;
    tm.tm_mday = 24;
    tm.tm_hour = 19;
    time_t when = timegm(&tm);
    setenv("TZ", "UTC", 1); /* v1 date/hour are local time: make local = UTC here */
    tzset();
    cr_assert_eq(rd_post_call_task(cl, seed_deal(s, 2), USER_ID, "Liga\xc3\xa7\xc3\xa3o",
                                   "notes [calllog:CA0002]", when, id, sizeof id, &err),
                 CALLLOG_OK, "%s", err.message);
    json_t *tasks = mock_list("tasks");
    cr_assert_eq(json_array_size(tasks), 1);
    json_t *t = json_array_get(tasks, 0);
    cr_expect_str_eq(json_string_value(json_object_get(t, "id")), id);
    cr_expect_str_eq(json_string_value(json_object_get(t, "deal_id")), seed_deal(s, 2));
    cr_expect_str_eq(json_string_value(json_object_get(t, "type")), "call");
    cr_expect_str_eq(json_string_value(json_object_get(t, "subject")), "Liga\xc3\xa7\xc3\xa3o");
    cr_expect_str_eq(json_string_value(json_object_get(t, "notes")), "notes [calllog:CA0002]");
    cr_expect(json_is_true(json_object_get(t, "done")), "task not completed");
    cr_expect_str_eq(json_string_value(json_object_get(t, "status")), "completed");
    cr_expect_str_eq(json_string_value(json_array_get(json_object_get(t, "user_ids"), 0)), USER_ID);
    if (api == RD_API_V1) {
        cr_expect_str_eq(json_string_value(json_object_get(t, "date")), "2026-11-24");
        cr_expect_str_eq(json_string_value(json_object_get(t, "hour")), "19:00");
    } else {
        cr_expect_str_eq(json_string_value(json_object_get(t, "due_date")),
                         "2026-11-24T19:00:00.000Z");
    }
    expect_one_acquire_per_request();
    json_decref(tasks);
    json_decref(s);
}
Test(v1, call_task)
{
    call_task();
}
Test(v2, call_task)
{
    call_task();
}

/* A follow-up task is created open, assigned and due as asked, then completed by id. */
static void open_task_then_complete(void)
{
    json_t *s = seed_deals();
    char id[64];
    calllog_error err;
    setenv("TZ", "America/Sao_Paulo", 1); /* v1 sends 08:00 local, which the mock reads as -03:00 */
    tzset();
    cr_assert_eq(rd_open_task(cl, seed_deal(s, 2), USER_ID, "Retornar liga\xc3\xa7\xc3\xa3o",
                              "[calllog-followup:CA1]", 1796641200, id, sizeof id, &err),
                 CALLLOG_OK, "%s", err.message);
    json_t *tasks = mock_list("tasks"), *t = json_array_get(tasks, 0);
    cr_assert_eq(json_array_size(tasks), 1);
    cr_expect_str_eq(json_string_value(json_object_get(t, "id")), id);
    cr_expect_str_eq(json_string_value(json_object_get(t, "type")), "call");
    cr_expect(!json_is_true(json_object_get(t, "done")), "created done");
    cr_expect_str_eq(json_string_value(json_object_get(t, "due_date")), "2026-12-07T11:00:00.000Z");
    cr_expect_str_eq(json_string_value(json_array_get(json_object_get(t, "user_ids"), 0)), USER_ID);
    json_decref(tasks);
    cr_assert_eq(rd_complete_task(cl, id, &err), CALLLOG_OK, "%s", err.message);
    cr_assert_eq(rd_complete_task(cl, id, &err), CALLLOG_OK, "completing twice failed");
    tasks = mock_list("tasks");
    cr_expect(json_is_true(json_object_get(json_array_get(tasks, 0), "done")), "not done");
    json_decref(tasks);
    cr_expect_lt(rd_complete_task(cl, "000000000000000000000000", &err), 0);
    cr_expect_eq(err.http_status, 404);
    expect_one_acquire_per_request();
    json_decref(s);
}
Test(v1, open_task_then_complete)
{
    open_task_then_complete();
}
Test(v2, open_task_then_complete)
{
    open_task_then_complete();
}

/* A deal's owner is read from the deal itself (v1 contact listings do not name it). */
static void deal_owner(void)
{
    json_t *s = seed("{\"name\":\"Dono\",\"phones\":[\"+5511900001111\"],\"deals\":[{\"name\":"
                     "\"D\",\"status\":\"ongoing\",\"user_id\":\"5e00000000000000000000f1\"}]}");
    char owner[64];
    calllog_error err;
    cr_assert_eq(rd_deal_owner(cl, seed_deal(s, 0), owner, sizeof owner, &err), CALLLOG_OK, "%s",
                 err.message);
    cr_expect_str_eq(owner, "5e00000000000000000000f1");
    cr_expect_eq(rd_deal_owner(cl, "000000000000000000000000", owner, sizeof owner, &err),
                 CALLLOG_NOT_FOUND);
    cr_expect_str_eq(owner, "");
    json_decref(s);
}
Test(v1, deal_owner)
{
    deal_owner();
}
Test(v2, deal_owner)
{
    deal_owner();
}

/* ---- marker --------------------------------------------------------------------------- */

/* The marker is found in a note, in a task, and not found when absent. */
static void marker_search(void)
{
    json_t *s = seed_deals();
    const char *deal = seed_deal(s, 2), *other = seed_deal(s, 1);
    char note[64], task[64], found[64];
    calllog_error err;
    cr_assert_eq(rd_post_note(cl, deal, USER_ID, "x\n[calllog:CANOTE]", note, sizeof note, &err),
                 CALLLOG_OK, "%s", err.message);
    cr_assert_eq(rd_post_call_task(cl, deal, USER_ID, "Call", "y [calllog:CATASK]", time(NULL),
                                   task, sizeof task, &err),
                 CALLLOG_OK, "%s", err.message);
    cr_assert_eq(rd_post_note(cl, other, USER_ID, "[calllog:CAOTHER]", found, sizeof found, &err),
                 CALLLOG_OK);

    cr_expect_eq(
        rd_find_marker(cl, deal, RD_MARKER_BOTH, "[calllog:CANOTE]", found, sizeof found, &err),
        CALLLOG_OK, "%s", err.message);
    cr_expect_str_eq(found, note);
    cr_expect_eq(
        rd_find_marker(cl, deal, RD_MARKER_BOTH, "[calllog:CATASK]", found, sizeof found, &err),
        CALLLOG_OK, "%s", err.message);
    cr_expect_str_eq(found, task);
    cr_expect_eq(
        rd_find_marker(cl, deal, RD_MARKER_BOTH, "[calllog:CAOTHER]", found, sizeof found, &err),
        CALLLOG_NOT_FOUND, "a marker on another deal counts");
    cr_expect_eq(
        rd_find_marker(cl, deal, RD_MARKER_BOTH, "[calllog:CANONE]", found, sizeof found, &err),
        CALLLOG_NOT_FOUND);
    cr_expect_str_eq(found, "");
    expect_one_acquire_per_request();
    json_decref(s);
}
Test(v1, marker_search)
{
    marker_search();
}
Test(v2, marker_search)
{
    marker_search();
}

/* The marker search reads further pages of notes. */
Test(v1, marker_on_a_later_page)
{
    json_t *s = seed_deals();
    const char *deal = seed_deal(s, 2);
    char id[64], found[64];
    calllog_error err;
    cr_assert_eq(mock_post(&rd, "/_mock/ratelimit", "{\"limit\":0}", NULL), 200);
    cr_assert_eq(rd_post_note(cl, deal, USER_ID, "[calllog:CAFIRST]", id, sizeof id, &err),
                 CALLLOG_OK);
    for (int i = 0; i < 200; i++) /* newest first: CAFIRST ends up on page 2 */
        cr_assert_eq(rd_post_note(cl, deal, USER_ID, "filler", found, sizeof found, &err),
                     CALLLOG_OK);
    cr_expect_eq(
        rd_find_marker(cl, deal, RD_MARKER_BOTH, "[calllog:CAFIRST]", found, sizeof found, &err),
        CALLLOG_OK, "%s", err.message);
    cr_expect_str_eq(found, id);
    json_decref(s);
}

/* ---- answers that cannot be read ------------------------------------------------------ */

/* The error of an answer that cannot be read: transient, no status, a message naming the
 * endpoint and `why`, no credentials. */
static void expect_unreadable(const calllog_error *err, const char *endpoint, const char *why)
{
    char prefix_msg[128];
    snprintf(prefix_msg, sizeof prefix_msg, "%s: answer unreadable: ", endpoint);
    cr_expect_eq(err->http_status, 0);
    cr_expect_eq(err->curl_code, 0);
    cr_expect_eq(err->code, CALLLOG_TRANSIENT);
    cr_expect(strncmp(err->message, prefix_msg, strlen(prefix_msg)) == 0, "%s", err->message);
    cr_expect_not_null(strstr(err->message, why), "%s", err->message);
    cr_expect_null(strchr(err->message, '\n'), "%s", err->message);
    expect_no_secret(err);
}

/* Arms a 200 on the contact search with `items` (a JSON list) as its contact list. */
static void arm_contacts_200(const char *items)
{
    char fault[1024];
    snprintf(fault, sizeof fault,
             "{\"method\":\"GET\",\"path\":\"^%scontacts$\",\"status\":200,\"count\":-1,"
             "\"body\":{\"%s\":%s}}",
             api_path(), api == RD_API_V1 ? "contacts" : "data", items);
    arm(fault);
}

/* A contact whose phones are numbers might be the caller's: never "no contact". */
static void contact_with_numeric_phones(void)
{
    rd_contact c;
    calllog_error err;
    arm_contacts_200("[{\"_id\":\"c1\",\"id\":\"c1\",\"name\":\"X\",\"phones\":[5511971730783]}]");
    cr_expect_lt(rd_find_contact(cl, CUSTOMER, &c, &err), 0, "%s", err.message);
    expect_unreadable(&err, "GET /contacts", "phones");
    cr_expect_str_eq(c.id, "");
}
Test(v1, contact_with_numeric_phones)
{
    contact_with_numeric_phones();
}
Test(v2, contact_with_numeric_phones)
{
    contact_with_numeric_phones();
}

/* Phones as an object, a contact that is a string, a phone entry whose `phone` is a
 * number: each unreadable. */
static void contact_list_of_wrong_types(void)
{
    static const char *const lists[] = {
        "[{\"id\":\"c1\",\"phones\":{\"phone\":\"+5511971730783\"}}]",
        "[\"c1\"]",
        "[{\"id\":\"c1\",\"phones\":[{\"phone\":5511971730783,\"type\":\"cellphone\"}]}]",
        "[{\"id\":\"c1\"}]",
    };
    for (size_t i = 0; i < sizeof lists / sizeof *lists; i++) {
        rd_contact c;
        calllog_error err;
        cr_assert_eq(mock_call(&rd, "DELETE", "/_mock/faults", NULL, NULL), 200);
        arm_contacts_200(lists[i]);
        cr_expect_lt(rd_find_contact(cl, CUSTOMER, &c, &err), 0, "%s: %s", lists[i], err.message);
        expect_unreadable(&err, "GET /contacts", "contact 0");
    }
}
Test(v1, contact_list_of_wrong_types)
{
    contact_list_of_wrong_types();
}
Test(v2, contact_list_of_wrong_types)
{
    contact_list_of_wrong_types();
}

/* The contact holding the phone has an object for an id: unreadable, not "not found". */
static void contact_with_object_id(void)
{
    rd_contact c;
    calllog_error err;
    arm_contacts_200("[{\"_id\":{\"$oid\":\"c1\"},\"id\":{\"$oid\":\"c1\"},"
                     "\"phones\":[{\"phone\":\"+5511971730783\",\"type\":\"cellphone\"}]}]");
    cr_expect_lt(rd_find_contact(cl, CUSTOMER, &c, &err), 0, "%s", err.message);
    expect_unreadable(&err, "GET /contacts", "no id");
}
Test(v1, contact_with_object_id)
{
    contact_with_object_id();
}
Test(v2, contact_with_object_id)
{
    contact_with_object_id();
}

/* The contact list is not a list. */
static void contacts_not_a_list(void)
{
    rd_contact c;
    calllog_error err;
    arm_contacts_200("{\"c1\":{}}");
    cr_expect_lt(rd_find_contact(cl, CUSTOMER, &c, &err), 0, "%s", err.message);
    expect_unreadable(&err, "GET /contacts", api == RD_API_V1 ? "\"contacts\"" : "\"data\"");
}
Test(v1, contacts_not_a_list)
{
    contacts_not_a_list();
}
Test(v2, contacts_not_a_list)
{
    contacts_not_a_list();
}

/* A proxy's HTML page with a 200 on the contact search: unreadable, with the type. */
static void contacts_html_200(void)
{
    char fault[256];
    rd_contact c;
    calllog_error err;
    json_decref(seed("{\"name\":\"Ana\",\"phones\":[\"+5511971730783\"]}"));
    snprintf(fault, sizeof fault,
             "{\"method\":\"GET\",\"path\":\"^%scontacts$\",\"status\":200,"
             "\"body\":\"<html><body>Please log in</body></html>\"}",
             api_path());
    arm(fault);
    cr_expect_lt(rd_find_contact(cl, CUSTOMER, &c, &err), 0, "%s", err.message);
    expect_unreadable(&err, "GET /contacts", "not JSON (HTTP 200, text/html");
    /* Once RD answers properly the contact is found. */
    cr_expect_eq(rd_find_contact(cl, CUSTOMER, &c, &err), CALLLOG_OK, "%s", err.message);
}
Test(v1, contacts_html_200)
{
    contacts_html_200();
}
Test(v2, contacts_html_200)
{
    contacts_html_200();
}

/* An empty 200 on POST note — whether RD created the note (replace) or not — is an
 * error without a note id, never CALLLOG_OK. */
static void note_empty_200(void)
{
    json_t *s = seed_deals();
    char id[64], fault[256];
    calllog_error err;
    const char *path = api == RD_API_V1 ? "^/api/v1/activities$" : "^/crm/v2/deals/[^/]+/notes$";
    for (int replace = 0; replace < 2; replace++) {
        snprintf(fault, sizeof fault,
                 "{\"method\":\"POST\",\"path\":\"%s\",\"status\":200,\"body\":\"\","
                 "\"replace\":%s}",
                 path, replace ? "true" : "false");
        arm(fault);
        cr_expect_lt(rd_post_note(cl, seed_deal(s, 2), USER_ID, "a", id, sizeof id, &err), 0, "%s",
                     err.message);
        expect_unreadable(&err, api == RD_API_V1 ? "POST /activities" : "POST /deals/{id}/notes",
                          "empty body (HTTP 200");
        cr_expect_str_eq(id, "");
    }
    json_t *notes = mock_list("notes");
    cr_expect_eq(json_array_size(notes), 1, "the replace fault lets RD create the note");
    json_decref(notes);
    json_decref(s);
}
Test(v1, note_empty_200)
{
    note_empty_200();
}
Test(v2, note_empty_200)
{
    note_empty_200();
}

/* A 200 whose JSON has no id for the created note. */
static void note_created_without_id(void)
{
    json_t *s = seed_deals();
    char id[64], fault[256];
    calllog_error err;
    const char *path = api == RD_API_V1 ? "^/api/v1/activities$" : "^/crm/v2/deals/[^/]+/notes$";
    snprintf(fault, sizeof fault,
             "{\"method\":\"POST\",\"path\":\"%s\",\"status\":200,\"body\":{\"data\":[],\"ok\":1},"
             "\"replace\":true}",
             path);
    arm(fault);
    cr_expect_lt(rd_post_note(cl, seed_deal(s, 2), USER_ID, "a", id, sizeof id, &err), 0);
    expect_unreadable(&err, api == RD_API_V1 ? "POST /activities" : "POST /deals/{id}/notes",
                      "no id for the created note");
    cr_expect_str_eq(id, "");
    json_decref(s);
}
Test(v1, note_created_without_id)
{
    note_created_without_id();
}
Test(v2, note_created_without_id)
{
    note_created_without_id();
}

/* v1: the contact's deals (GET /contacts/{id}) are not a list: not "no open deal". */
Test(v1, deals_not_a_list)
{
    json_t *s = seed_deals();
    rd_deal d;
    calllog_error err;
    arm("{\"method\":\"GET\",\"path\":\"^/api/v1/contacts/[^/]+$\",\"status\":200,"
        "\"replace\":true,\"body\":{\"_id\":\"c1\",\"name\":\"Ana\",\"deals\":\"none\"}}");
    cr_expect_lt(rd_find_open_deal(cl, seed_id(s), &d, &err), 0, "%s", err.message);
    expect_unreadable(&err, "GET /contacts/{id}", "\"deals\"");
    arm("{\"method\":\"GET\",\"path\":\"^/api/v1/contacts/[^/]+$\",\"status\":200,"
        "\"replace\":true,\"body\":{\"_id\":\"c1\",\"name\":\"Ana\",\"deal_ids\":[{\"a\":1}]}}");
    cr_expect_lt(rd_find_open_deal(cl, seed_id(s), &d, &err), 0, "%s", err.message);
    expect_unreadable(&err, "GET /contacts/{id}", "deal_ids[0]");
    arm("{\"method\":\"GET\",\"path\":\"^/api/v1/deals/[^/]+$\",\"status\":200,"
        "\"replace\":true,\"body\":{\"_id\":\"d1\",\"win\":\"no\"}}");
    cr_expect_lt(rd_find_open_deal(cl, seed_id(s), &d, &err), 0, "%s", err.message);
    expect_unreadable(&err, "GET /deals/{id}", "win/hold/closed_at");
    /* RD behaves again: the deal is found. */
    cr_expect_eq(rd_find_open_deal(cl, seed_id(s), &d, &err), CALLLOG_OK, "%s", err.message);
    cr_expect_str_eq(d.id, seed_deal(s, 2));
    json_decref(s);
}

/* v2: the deal list is not a list, or a deal's status is not a string. */
Test(v2, deals_not_a_list)
{
    json_t *s = seed_deals();
    rd_deal d;
    calllog_error err;
    arm("{\"method\":\"GET\",\"path\":\"^/crm/v2/deals$\",\"status\":200,"
        "\"body\":{\"data\":{\"id\":\"d1\"},\"links\":{}}}");
    cr_expect_lt(rd_find_open_deal(cl, seed_id(s), &d, &err), 0, "%s", err.message);
    expect_unreadable(&err, "GET /deals", "\"data\"");
    arm("{\"method\":\"GET\",\"path\":\"^/crm/v2/deals$\",\"status\":200,"
        "\"body\":{\"data\":[{\"id\":\"d1\",\"status\":1}],\"links\":{}}}");
    cr_expect_lt(rd_find_open_deal(cl, seed_id(s), &d, &err), 0, "%s", err.message);
    expect_unreadable(&err, "GET /deals", "deal 0");
    cr_expect_eq(rd_find_open_deal(cl, seed_id(s), &d, &err), CALLLOG_OK, "%s", err.message);
    json_decref(s);
}

/* A marker search past an entry it cannot read would post a second note: unreadable. */
static void marker_search_unreadable(void)
{
    json_t *s = seed_deals();
    char found[64], fault[256];
    calllog_error err;
    snprintf(fault, sizeof fault,
             "{\"method\":\"GET\",\"path\":\"^%s\",\"status\":200,\"body\":{\"%s\":"
             "[{\"id\":\"n1\",\"%s\":{\"x\":\"[calllog:CAX]\"}}]}}",
             api == RD_API_V1 ? "/api/v1/activities$" : "/crm/v2/deals/[^/]+/notes$",
             api == RD_API_V1 ? "activities" : "data", api == RD_API_V1 ? "text" : "description");
    arm(fault);
    cr_expect_lt(rd_find_marker(cl, seed_deal(s, 2), RD_MARKER_BOTH, "[calllog:CAX]", found,
                                sizeof found, &err),
                 0, "%s", err.message);
    expect_unreadable(&err, api == RD_API_V1 ? "GET /activities" : "GET /deals/{id}/notes",
                      "entry");
    json_decref(s);
}
Test(v1, marker_search_unreadable)
{
    marker_search_unreadable();
}
Test(v2, marker_search_unreadable)
{
    marker_search_unreadable();
}

/* The task is created, then completing it gets an HTML 200: a failure with the id set
 * (the task exists: look for the marker before trying again). */
static void task_completion_html_200(void)
{
    json_t *s = seed_deals();
    char id[64];
    calllog_error err;
    arm("{\"method\":\"PUT\",\"path\":\"/tasks/\",\"status\":200,\"body\":\"<html>ok</html>\"}");
    cr_expect_lt(rd_post_call_task(cl, seed_deal(s, 2), USER_ID, "Call", "n", time(NULL), id,
                                   sizeof id, &err),
                 0, "%s", err.message);
    expect_unreadable(&err, "PUT /tasks/{id}", "text/html");
    cr_expect_neq(id[0], '\0');
    json_decref(s);
}
Test(v1, task_completion_html_200)
{
    task_completion_html_200();
}
Test(v2, task_completion_html_200)
{
    task_completion_html_200();
}

/* A transport failure is named after the endpoint, never the URL (v1's token is in it). */
Test(v1, transport_error_names_the_endpoint)
{
    rd_contact c;
    calllog_error err;
    arm("{\"method\":\"GET\",\"path\":\"^/api/v1/contacts$\",\"drop\":true}");
    cr_expect_lt(rd_find_contact(cl, CUSTOMER, &c, &err), 0);
    cr_expect_neq(err.curl_code, 0);
    cr_expect(strncmp(err.message, "GET /contacts: ", 15) == 0, "%s", err.message);
    cr_expect_null(strstr(err.message, "127.0.0.1"), "%s", err.message);
    expect_no_secret(&err);
}

/* ---- creating ------------------------------------------------------------------------- */

/* A new contact and deal, then found through the ordinary look-ups. */
static void create_contact_and_deal(void)
{
    rd_contact c = {0}, found; /* empty id: create the contact too */
    rd_deal d, open;
    calllog_error err;
    const char *stage = "5e00000000000000000000a2";
    cr_assert_eq(
        rd_create_contact_and_deal(cl, "Novo Cliente", CUSTOMER, stage, USER_ID, &c, &d, &err),
        CALLLOG_OK, "%s", err.message);
    cr_expect_neq(c.id[0], '\0');
    cr_expect_neq(d.id[0], '\0');
    cr_expect_str_eq(c.name, "Novo Cliente");
    cr_assert_eq(rd_find_contact(cl, CUSTOMER, &found, &err), CALLLOG_OK, "%s", err.message);
    cr_expect_str_eq(found.id, c.id);
    cr_assert_eq(rd_find_open_deal(cl, c.id, &open, &err), CALLLOG_OK, "%s", err.message);
    cr_expect_str_eq(open.id, d.id);
    json_t *deals = mock_list("deals");
    cr_assert_eq(json_array_size(deals), 1);
    json_t *deal = json_array_get(deals, 0);
    cr_expect_str_eq(json_string_value(json_object_get(deal, "stage_id")), stage);
    cr_expect_str_eq(json_string_value(json_object_get(deal, "owner_id")), USER_ID);
    expect_one_acquire_per_request();
    json_decref(deals);
    /* A known contact without an open deal: only a deal is created, for that contact. */
    json_t *before = mock_list("contacts");
    rd_deal d2;
    cr_assert_eq(
        rd_create_contact_and_deal(cl, "Novo Cliente", CUSTOMER, stage, USER_ID, &c, &d2, &err),
        CALLLOG_OK, "%s", err.message);
    json_t *after = mock_list("contacts");
    cr_expect_eq(json_array_size(after), json_array_size(before), "a second contact was created");
    cr_expect_str_neq(d2.id, d.id);
    json_decref(before);
    json_decref(after);
}
Test(v1, create_contact_and_deal)
{
    create_contact_and_deal();
}
Test(v2, create_contact_and_deal)
{
    create_contact_and_deal();
}

/* ---- checked against the reference again (issue 9) ----------------------------------- */

/* The body of the last logged request `method` whose path holds `part` (NULL when none;
 * caller decrefs). */
static json_t *last_body(const char *method, const char *part)
{
    json_t *log = mock_get(&rd, "/_mock/requests"), *e, *found = NULL;
    size_t i;
    json_array_foreach(json_object_get(log, "requests"), i, e)
    {
        const char *p = json_string_value(json_object_get(e, "path"));
        const char *m = json_string_value(json_object_get(e, "method"));
        if (m && p && strcmp(m, method) == 0 && strstr(p, part) != NULL) {
            json_decref(found);
            found = json_incref(json_object_get(e, "body"));
        }
    }
    json_decref(log);
    return found;
}

/* Number of logged requests `method` whose path holds `part`. */
static size_t count_method(const char *method, const char *part)
{
    json_t *log = mock_get(&rd, "/_mock/requests"), *e;
    size_t i, n = 0;
    json_array_foreach(json_object_get(log, "requests"), i, e)
    {
        const char *p = json_string_value(json_object_get(e, "path"));
        const char *m = json_string_value(json_object_get(e, "method"));
        if (m && p && strcmp(m, method) == 0 && strstr(p, part) != NULL)
            n++;
    }
    json_decref(log);
    return n;
}

/* The contact is created with the type each version documents for a mobile: v1
 * cellphone, v2 mobile (the v2 mock refuses cellphone with 422, as RD does). */
static void created_contact_phone_type(void)
{
    rd_contact c = {0};
    rd_deal d;
    calllog_error err;
    cr_assert_eq(rd_create_contact_and_deal(cl, "Novo", CUSTOMER, "5e00000000000000000000a2",
                                            USER_ID, &c, &d, &err),
                 CALLLOG_OK, "%s", err.message);
    json_t *body = last_body("POST", "/contacts");
    json_t *root = json_object_get(body, api == RD_API_V1 ? "contact" : "data");
    json_t *phone = json_array_get(json_object_get(root, "phones"), 0);
    cr_expect_str_eq(json_string_value(json_object_get(phone, "type")),
                     api == RD_API_V1 ? "cellphone" : "mobile");
    json_decref(body);
}
Test(v1, created_contact_phone_type)
{
    created_contact_phone_type();
}
Test(v2, created_contact_phone_type)
{
    created_contact_phone_type();
}

/* v1: the deal is created without `contacts`, linked with PUT /contacts/{id} (existing
 * deal_ids kept) and verified by reading the contact back. */
Test(v1, created_deal_is_linked_and_verified)
{
    json_t *s = seed("{\"name\":\"Ana\",\"phones\":[\"+5511971730783\"],\"deals\":[{\"name\":"
                     "\"won\",\"win\":true}]}");
    rd_contact c = {0};
    rd_deal d;
    calllog_error err;
    snprintf(c.id, sizeof c.id, "%s", seed_id(s));
    cr_assert_eq(rd_create_contact_and_deal(cl, "Ana", CUSTOMER, "5e00000000000000000000a2",
                                            USER_ID, &c, &d, &err),
                 CALLLOG_OK, "%s", err.message);
    json_t *post = last_body("POST", "/deals");
    cr_expect_null(json_object_get(post, "contacts"), "POST /deals still sends contacts");
    json_decref(post);
    json_t *put = last_body("PUT", "/contacts/");
    json_t *ids = json_object_get(json_object_get(put, "contact"), "deal_ids");
    cr_assert_eq(json_array_size(ids), 2, "deal_ids must carry the old deal and the new one");
    cr_expect_str_eq(json_string_value(json_array_get(ids, 0)), seed_deal(s, 0));
    cr_expect_str_eq(json_string_value(json_array_get(ids, 1)), d.id);
    json_decref(put);
    cr_expect_eq(count_method("GET", "/contacts/"), 2, "no read-back after the PUT");
    json_t *deals = mock_list("deals");
    size_t i;
    json_t *deal;
    int linked = 0;
    json_array_foreach(deals, i, deal)
    {
        if (strcmp(json_string_value(json_object_get(deal, "id")), d.id) == 0)
            linked =
                json_array_size(json_object_get(deal, "contact_ids")) == 1 &&
                strcmp(json_string_value(json_array_get(json_object_get(deal, "contact_ids"), 0)),
                       c.id) == 0;
    }
    cr_expect(linked, "the new deal is not linked to the contact in the mock");
    expect_one_acquire_per_request();
    json_decref(deals);
    json_decref(s);
}

/* v1: RD answers the PUT but the read-back does not list the deal: a permanent error
 * naming both ids (a retry would create another unlinked deal). */
Test(v1, link_not_taken_is_permanent)
{
    rd_contact c = {0};
    rd_deal d;
    calllog_error err;
    arm("{\"method\":\"PUT\",\"path\":\"^/api/v1/contacts/\",\"status\":200,\"body\":{}}");
    cr_assert_lt(rd_create_contact_and_deal(cl, "Novo", CUSTOMER, "5e00000000000000000000a2",
                                            USER_ID, &c, &d, &err),
                 0);
    cr_expect_neq(d.id[0], '\0', "the created deal's id must be reported");
    cr_expect_eq(err.http_status, 200);
    cr_expect_neq(err.code, CALLLOG_TRANSIENT);
    cr_expect_not_null(strstr(err.message, "unlinked"), "%s", err.message);
    cr_expect_not_null(strstr(err.message, d.id), "%s", err.message);
    cr_expect_not_null(strstr(err.message, c.id), "%s", err.message);
}

/* Note mode reads notes only; task mode tasks only. */
static void marker_scope_reads_only_its_lists(void)
{
    json_t *s = seed_deals();
    char found[64];
    calllog_error err;
    cr_expect_eq(rd_find_marker(cl, seed_deal(s, 2), RD_MARKER_NOTES, "[calllog:CAN]", found,
                                sizeof found, &err),
                 CALLLOG_NOT_FOUND, "%s", err.message);
    cr_expect_eq(count_method("GET", "/tasks"), 0, "note mode listed tasks");
    cr_expect_eq(rd_find_marker(cl, seed_deal(s, 2), RD_MARKER_TASKS, "[calllog:CAN]", found,
                                sizeof found, &err),
                 CALLLOG_NOT_FOUND, "%s", err.message);
    cr_expect_eq(count_method("GET", "/tasks"), 1);
    cr_expect_eq(count_method("GET", api == RD_API_V1 ? "/activities" : "/notes"), 1,
                 "task mode listed notes");
    json_decref(s);
}
Test(v1, marker_scope_reads_only_its_lists)
{
    marker_scope_reads_only_its_lists();
}
Test(v2, marker_scope_reads_only_its_lists)
{
    marker_scope_reads_only_its_lists();
}

/* v2: a 400/422 on the task list is "cannot search" (transient), never "not found"; in
 * note mode the task list is not asked at all. */
Test(v2, task_search_refused_is_transient_not_found_never)
{
    json_t *s = seed_deals();
    char found[64];
    calllog_error err;
    const long codes[] = {400, 422};
    for (size_t i = 0; i < 2; i++) {
        char fault[160];
        snprintf(fault, sizeof fault,
                 "{\"method\":\"GET\",\"path\":\"^/crm/v2/tasks$\",\"status\":%ld,\"count\":-1}",
                 codes[i]);
        arm(fault);
        cr_expect_lt(rd_find_marker(cl, seed_deal(s, 2), RD_MARKER_BOTH, "[calllog:CAX]", found,
                                    sizeof found, &err),
                     0, "%ld taken for not found", codes[i]);
        cr_expect_eq(err.code, CALLLOG_TRANSIENT, "%s", err.message);
        cr_expect_not_null(strstr(err.message, "cannot search tasks"), "%s", err.message);
        cr_expect_eq(rd_find_marker(cl, seed_deal(s, 2), RD_MARKER_NOTES, "[calllog:CAX]", found,
                                    sizeof found, &err),
                     CALLLOG_NOT_FOUND, "%s", err.message);
        cr_assert_eq(mock_call(&rd, "DELETE", "/_mock/faults", NULL, NULL), 200);
    }
    json_decref(s);
}

/* A client with Redis on either version (v1 tests start without). */
static void plan_client(void)
{
    if (redis == NULL)
        connect_redis();
    rd_client_free(cl);
    cl = client_with("mock-refresh-token");
    cr_assert_not_null(cl);
}

/* The type of every task the mock holds, in creation order, joined by ','. */
static void task_types(char *out, size_t outlen)
{
    json_t *tasks = mock_list("tasks"), *t;
    size_t i;
    out[0] = '\0';
    json_array_foreach(tasks, i, t)
    {
        size_t n = strlen(out);
        snprintf(out + n, outlen - n, "%s%s", n ? "," : "",
                 json_string_value(json_object_get(t, "type")));
    }
    json_decref(tasks);
}

/* Free plan: the 403 for type call is confirmed by type task being accepted, remembered
 * in Redis, and later tasks (this client's and another worker's) go straight to task. */
static void free_plan_falls_back_to_task(void)
{
    json_t *s = seed_deals();
    char id[64], types[128];
    calllog_error err;
    rd_plan plan;
    plan_client();
    cr_assert_eq(mock_post(&rd, "/_mock/plan", "{\"call_tasks\":false}", NULL), 200);
    cr_assert_eq(rd_plan_read(redis, &keys, &plan), 0);
    cr_expect_eq(plan.call_task_refused, 0);
    cr_assert_eq(rd_post_call_task(cl, seed_deal(s, 2), USER_ID, "Call", "[calllog:CA1]",
                                   time(NULL), id, sizeof id, &err),
                 CALLLOG_OK, "%s", err.message);
    cr_assert_eq(rd_plan_read(redis, &keys, &plan), 0);
    cr_expect_eq(plan.call_task_refused, 1);
    cr_expect_gt(plan.refused_at_ms, 0);
    cr_assert_eq(rd_post_call_task(cl, seed_deal(s, 2), USER_ID, "Call", "[calllog:CA2]",
                                   time(NULL), id, sizeof id, &err),
                 CALLLOG_OK, "%s", err.message);
    rd_client *other = client_with("mock-refresh-token"); /* another worker */
    cr_assert_eq(rd_post_call_task(other, seed_deal(s, 2), USER_ID, "Call", "[calllog:CA3]",
                                   time(NULL), id, sizeof id, &err),
                 CALLLOG_OK, "%s", err.message);
    rd_client_free(other);
    cr_expect_eq(count_method("POST", "/tasks"), 4, "one refused call, then three tasks");
    task_types(types, sizeof types);
    cr_expect_str_eq(types, "task,task,task");
    char marker_id[64];
    cr_expect_eq(rd_find_marker(cl, seed_deal(s, 2), RD_MARKER_TASKS, "[calllog:CA2]", marker_id,
                                sizeof marker_id, &err),
                 CALLLOG_OK, "a type task entry must be found by the marker search: %s",
                 err.message);
    json_decref(s);
}
Test(v1, free_plan_falls_back_to_task)
{
    free_plan_falls_back_to_task();
}
Test(v2, free_plan_falls_back_to_task)
{
    free_plan_falls_back_to_task();
}

/* A 403 that type task gets too is not the plan: permanent, named, nothing remembered. */
static void other_403_is_not_the_plan(void)
{
    json_t *s = seed_deals();
    char id[64];
    calllog_error err;
    rd_plan plan;
    plan_client();
    arm(api == RD_API_V1
            ? "{\"method\":\"POST\",\"path\":\"^/api/v1/tasks$\",\"status\":403,\"count\":-1}"
            : "{\"method\":\"POST\",\"path\":\"^/crm/v2/tasks$\",\"status\":403,\"count\":-1}");
    cr_expect_lt(rd_post_call_task(cl, seed_deal(s, 2), USER_ID, "Call", "n", time(NULL), id,
                                   sizeof id, &err),
                 0);
    cr_expect_eq(err.http_status, 403);
    cr_expect_eq(err.code, CALLLOG_PERMANENT);
    cr_expect_not_null(strstr(err.message, "not the free-plan limit"), "%s", err.message);
    cr_assert_eq(rd_plan_read(redis, &keys, &plan), 0);
    cr_expect_eq(plan.call_task_refused, 0);
    cr_expect_eq(count_method("POST", "/tasks"), 2);
    json_decref(s);
}
Test(v1, other_403_is_not_the_plan)
{
    other_403_is_not_the_plan();
}
Test(v2, other_403_is_not_the_plan)
{
    other_403_is_not_the_plan();
}

/* GET /users lists ids and e-mails (v2 pages through them). */
static void list_users(void)
{
    rd_user *users;
    size_t n;
    calllog_error err;
    cr_assert_eq(mock_post(&rd, "/_mock/users",
                           "{\"id\":\"5e00000000000000000000u2\",\"email\":\"Vendas@Example.com\"}",
                           NULL),
                 201);
    cr_assert_eq(rd_list_users(cl, &users, &n, &err), CALLLOG_OK, "%s", err.message);
    cr_assert_eq(n, 2);
    cr_expect_str_eq(users[0].id, USER_ID);
    cr_expect_str_eq(users[0].email, "user1@example.com");
    cr_expect_str_eq(users[1].id, "5e00000000000000000000u2");
    cr_expect_str_eq(users[1].email, "Vendas@Example.com");
    free(users);
    expect_one_acquire_per_request();
}
Test(v1, list_users)
{
    list_users();
}
Test(v2, list_users)
{
    list_users();
}

/* ---- v2 OAuth ------------------------------------------------------------------------- */

/* Any request (a contact look-up that finds the seeded contact). */
static void one_lookup(rd_client *c)
{
    rd_contact ct;
    calllog_error err;
    cr_assert_eq(rd_find_contact(c, CUSTOMER, &ct, &err), CALLLOG_OK, "%s", err.message);
}

Test(v2, refresh_on_first_use_is_stored_in_redis)
{
    json_t *s = seed("{\"name\":\"A\",\"phones\":[\"+5511971730783\"]}");
    one_lookup(cl);
    cr_expect_eq(oauth_state("refresh_count"), 1);
    json_t *o = mock_get(&rd, "/_mock/oauth");
    char *rt = hash_field("refresh_token"), *at = hash_field("access_token");
    char *exp = hash_field("access_expires_at_ms");
    cr_expect_str_eq(rt, json_string_value(json_object_get(o, "refresh_token")),
                     "the rotated refresh token must be stored");
    cr_expect(strncmp(at, "mock-at-", 8) == 0, "access token %s", at);
    cr_expect(atoll(exp) > (long long)time(NULL) * 1000 + 3600000, "expiry %s", exp);
    redisReply *r = redisCommand(redis, "EXISTS %s:lock", keys.oauth);
    cr_expect_eq(r->integer, 0, "the lock was not released");
    freeReplyObject(r);
    /* The next request uses the stored token. */
    one_lookup(cl);
    cr_expect_eq(oauth_state("refresh_count"), 1);
    expect_one_acquire_per_request();
    free(rt);
    free(at);
    free(exp);
    json_decref(o);
    json_decref(s);
}

Test(v2, expired_token_is_refreshed_after_401)
{
    json_t *s = seed("{\"name\":\"A\",\"phones\":[\"+5511971730783\"]}");
    one_lookup(cl);
    char *before = hash_field("access_token");
    cr_assert_eq(mock_post(&rd, "/_mock/oauth/expire", "{}", NULL), 200);
    one_lookup(cl);
    char *after = hash_field("access_token");
    cr_expect_eq(oauth_state("refresh_count"), 2);
    cr_expect_str_neq(before, after);
    json_t *log = mock_get(&rd, "/_mock/requests");
    json_t *e;
    size_t i, unauthorized = 0;
    json_array_foreach(json_object_get(log, "requests"), i, e)
    {
        if (json_integer_value(json_object_get(e, "status")) == 401)
            unauthorized++;
    }
    cr_expect_eq(unauthorized, 1);
    expect_one_acquire_per_request();
    json_decref(log);
    free(before);
    free(after);
    json_decref(s);
}

Test(v2, token_about_to_expire_is_refreshed_first)
{
    json_t *s = seed("{\"name\":\"A\",\"phones\":[\"+5511971730783\"]}");
    one_lookup(cl);
    redisReply *r = redisCommand(redis, "HSET %s access_expires_at_ms %lld", keys.oauth,
                                 (long long)time(NULL) * 1000 + 30000);
    freeReplyObject(r);
    one_lookup(cl);
    cr_expect_eq(oauth_state("refresh_count"), 2);
    cr_expect_eq(mock_count_requests(&rd, "/crm/v2/"), 2, "no request was refused");
    json_decref(s);
}

Test(v2, rotation_is_shared_through_redis)
{
    json_t *s = seed("{\"name\":\"A\",\"phones\":[\"+5511971730783\"]}");
    one_lookup(cl);
    /* Another worker configured with an outdated refresh token uses the stored tokens. */
    rd_client *other = client_with("an-outdated-refresh-token");
    cr_assert_not_null(other);
    one_lookup(other);
    cr_expect_eq(oauth_state("refresh_count"), 1);
    /* Its refresh sends the stored (rotated) refresh token, which RD accepts. */
    cr_assert_eq(mock_post(&rd, "/_mock/oauth/expire", "{}", NULL), 200);
    one_lookup(other);
    cr_expect_eq(oauth_state("refresh_count"), 2);
    cr_expect_eq(oauth_state("rejected_count"), 0);
    json_t *o = mock_get(&rd, "/_mock/oauth");
    char *rt = hash_field("refresh_token");
    cr_expect_str_eq(rt, json_string_value(json_object_get(o, "refresh_token")));
    /* And the first client picks up the new access token without refreshing. */
    one_lookup(cl);
    cr_expect_eq(oauth_state("refresh_count"), 2);
    expect_one_acquire_per_request();
    free(rt);
    json_decref(o);
    rd_client_free(other);
    json_decref(s);
}

Test(v2, rejected_refresh_token_is_permanent_and_explained)
{
    rd_client *bad = client_with("a-revoked-refresh-token");
    rd_contact c;
    calllog_error err;
    cr_assert_lt(rd_find_contact(bad, CUSTOMER, &c, &err), 0);
    cr_expect_eq(err.http_status, 401);
    cr_expect_not_null(strstr(err.message, "refresh token"), "%s", err.message);
    cr_expect_not_null(strstr(err.message, "RDSTATION_REFRESH_TOKEN"), "%s", err.message);
    cr_expect_not_null(strstr(err.message, "redis-cli"), "%s", err.message);
    cr_expect_not_null(strstr(err.message, keys.oauth), "%s", err.message);
    cr_expect_null(strstr(err.message, "a-revoked-refresh-token"), "%s", err.message);
    expect_no_secret(&err);
    cr_expect_eq(acquired, 0, "no API request without a token");
    cr_expect_eq(mock_count_requests(&rd, "/crm/v2/"), 0);
    rd_client_free(bad);
}

Test(v2, second_401_is_final)
{
    json_t *s = seed("{\"name\":\"A\",\"phones\":[\"+5511971730783\"]}");
    rd_contact c;
    calllog_error err;
    arm("{\"path\":\"^/crm/v2/contacts$\",\"status\":401,\"count\":2}");
    cr_expect_lt(rd_find_contact(cl, CUSTOMER, &c, &err), 0);
    cr_expect_eq(err.http_status, 401);
    cr_expect_eq(oauth_state("refresh_count"), 2, "one refresh at start, one after the 401");
    cr_expect_eq(mock_count_requests(&rd, "/crm/v2/"), 2, "one retry only");
    expect_no_secret(&err);
    expect_one_acquire_per_request();
    json_decref(s);
}

Test(v2, concurrent_workers_refresh_once)
{
    enum { WORKERS = 4 };
    json_t *s = seed("{\"name\":\"A\",\"phones\":[\"+5511971730783\"]}");
    pid_t pids[WORKERS];
    const char *url = getenv("CALLLOG_TEST_REDIS_URL");
    /* A slow token endpoint, so that unguarded refreshes would overlap. */
    arm("{\"path\":\"^/oauth2/token$\",\"delay_ms\":500,\"count\":-1}");
    for (int i = 0; i < WORKERS; i++) {
        pids[i] = fork();
        cr_assert(pids[i] >= 0);
        if (pids[i] == 0) {
            redis_target t;
            rd_contact c;
            calllog_error err;
            redis_url_parse(url, &t, &err);
            redis = redis_open(&t, 5000, &err); /* each worker its own connection */
            rd_client *w = client_with("mock-refresh-token");
            int ok =
                redis != NULL && w != NULL && rd_find_contact(w, CUSTOMER, &c, &err) == CALLLOG_OK;
            _exit(ok ? 0 : 1);
        }
    }
    for (int i = 0; i < WORKERS; i++) {
        int status = 0;
        waitpid(pids[i], &status, 0);
        cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "worker %d failed", i);
    }
    cr_expect_eq(oauth_state("refresh_count"), 1);
    cr_expect_eq(oauth_state("rejected_count"), 0);
    json_decref(s);
}

/* rd_oauth_invalidate removes the stored token only when it is the one that failed. */
Test(v2, invalidate_compares_the_token)
{
    http_client *h = http_client_new(5000, 2000);
    rd_oauth_settings os = {
        oauth_url, "mock-client-id", "mock-client-secret", "mock-refresh-token", keys.oauth, 5000};
    rd_oauth *o = rd_oauth_new(&os, h, redis, NULL, NULL);
    calllog_error err;
    char tok[RD_OAUTH_TOKEN_MAX], *v;
    cr_assert_not_null(o);
    freeReplyObject(redisCommand(redis, "HSET %s access_token newer access_expires_at_ms %lld",
                                 keys.oauth, (long long)time(NULL) * 1000 + 3600000));
    cr_assert_eq(rd_oauth_invalidate(o, "older", &err), 0, "%s", err.message);
    v = hash_field("access_token");
    cr_expect_str_eq(v, "newer", "another worker's fresh token was dropped");
    free(v);
    cr_assert_eq(rd_oauth_token(o, tok, sizeof tok, &err), 0, "%s", err.message);
    cr_expect_str_eq(tok, "newer");
    cr_assert_eq(rd_oauth_invalidate(o, "newer", &err), 0, "%s", err.message);
    v = hash_field("access_token");
    cr_expect_str_eq(v, "");
    free(v);
    cr_expect_eq(oauth_state("refresh_count"), 0);
    rd_oauth_free(o);
    http_client_free(h);
}

/* ---- listing the account, and the limiter's lanes ------------------------------------- */

/* What a listing saw. */
typedef struct listing {
    int contacts, with_deal, ambiguous;
    char last_id[64], last_deal[64], phones[256];
} listing;

/* rd_contact_fn: records the contact. */
static int on_listed(void *arg, const rd_listed_contact *c)
{
    listing *l = arg;
    l->contacts++;
    l->with_deal += c->deal.id[0] != '\0';
    l->ambiguous += c->deal_ambiguous;
    snprintf(l->last_id, sizeof l->last_id, "%s", c->id);
    snprintf(l->last_deal, sizeof l->last_deal, "%s", c->deal.id);
    l->phones[0] = '\0';
    for (size_t i = 0; i < c->nphones; i++)
        snprintf(l->phones + strlen(l->phones), sizeof l->phones - strlen(l->phones), "%s;",
                 c->phones[i]);
    return 0;
}

/* Seeds contacts 0..n-1, each with an open deal updated later than a won one. */
static void seed_many(int n)
{
    for (int i = 0; i < n; i++) {
        char spec[512];
        snprintf(
            spec, sizeof spec,
            "{\"name\":\"C%d\",\"phones\":[\"(11) 97%07d\"],\"deals\":["
            "{\"name\":\"won\",\"status\":\"won\",\"updated_at\":\"2026-11-23T00:00:00Z\"},"
            "{\"name\":\"open\",\"status\":\"ongoing\",\"updated_at\":\"2026-11-20T00:00:00Z\"}]}",
            i, i);
        json_decref(seed(spec));
    }
}

Test(v1, lists_contacts_by_page_with_their_open_deal_in_the_sync_lane)
{
    seed_many(201); /* one more than a v1 page */
    listing l = {0};
    int more = 0;
    calllog_error err;
    cr_assert_eq(rd_list_contacts(cl, 1, on_listed, &l, &more, &err), CALLLOG_OK, "%s",
                 err.message);
    cr_expect_eq(l.contacts, 200);
    cr_expect_eq(more, 1);
    cr_expect_eq(l.with_deal, 200, "every contact's open deal is read from its summaries");
    cr_assert_eq(rd_list_contacts(cl, 2, on_listed, &l, &more, &err), CALLLOG_OK);
    cr_expect_eq(l.contacts, 201);
    cr_expect_eq(more, 0);
    cr_expect_str_eq(l.phones, "(11) 970000200;");
    cr_expect_eq(last_lane, RATELIMIT_LOOKUP, "a worker's GET is a look-up");
    expect_one_acquire_per_request();

    rd_settings s = {.api = RD_API_V1,
                     .base_url = base_url,
                     .token = V1_TOKEN,
                     .timeout_ms = 10000,
                     .acquire = count_acquire,
                     .background = 1};
    rd_client *sync = rd_client_new(&s, NULL, &keys);
    cr_assert_not_null(sync);
    cr_assert_eq(rd_list_contacts(sync, 1, on_listed, &l, &more, &err), CALLLOG_OK);
    cr_expect_eq(last_lane, RATELIMIT_SYNC, "the index's client asks in the sync lane");
    rd_client_free(sync);
    cr_expect_eq(rd_list_open_deals(cl, 1, NULL, NULL, &more, &err), CALLLOG_INVALID,
                 "v1 has no open-deal listing of its own");
}

Test(v1, a_contact_with_two_undated_open_deals_is_ambiguous)
{
    json_decref(
        seed("{\"name\":\"A\",\"phones\":[\"+5511971730783\"],\"deals\":["
             "{\"name\":\"x\",\"status\":\"ongoing\"},{\"name\":\"y\",\"status\":\"ongoing\"}]}"));
    arm("{\"method\":\"GET\",\"path\":\"^/api/v1/contacts$\",\"status\":200,\"body\":"
        "{\"contacts\":[{\"_id\":\"c1\",\"name\":\"A\",\"phones\":[{\"phone\":\"+5511971730783\"}],"
        "\"deals\":[{\"_id\":\"d1\",\"win\":null,\"closed_at\":null},"
        "{\"_id\":\"d2\",\"win\":null,\"closed_at\":null}]}],\"has_more\":false}}");
    listing l = {0};
    int more = 1;
    calllog_error err;
    cr_assert_eq(rd_list_contacts(cl, 1, on_listed, &l, &more, &err), CALLLOG_OK, "%s",
                 err.message);
    cr_expect_eq(l.ambiguous, 1);
    cr_expect_str_eq(l.last_deal, "", "no deal is guessed between two undated open ones");
}

/* rd_deal_fn: counts the deals and remembers the last one's first contact. */
static int on_deal(void *arg, const rd_listed_deal *d)
{
    listing *l = arg;
    l->with_deal++;
    snprintf(l->last_id, sizeof l->last_id, "%s", d->ncontacts ? d->contact_ids[0] : "");
    snprintf(l->last_deal, sizeof l->last_deal, "%s", d->deal.id);
    return 0;
}

Test(v2, lists_contacts_and_open_deals_by_page)
{
    seed_many(3);
    listing l = {0};
    int more = 1;
    calllog_error err;
    cr_assert_eq(rd_list_contacts(cl, 1, on_listed, &l, &more, &err), CALLLOG_OK, "%s",
                 err.message);
    cr_expect_eq(l.contacts, 3);
    cr_expect_eq(l.with_deal, 0, "v2 contacts carry no deals");
    cr_expect_eq(more, 0);
    listing d = {0};
    cr_assert_eq(rd_list_open_deals(cl, 1, on_deal, &d, &more, &err), CALLLOG_OK, "%s",
                 err.message);
    cr_expect_eq(d.with_deal, 3, "only the open deals are listed");
    cr_expect_str_eq(d.last_id, l.last_id);
    cr_expect_neq(d.last_deal[0], '\0');
}

Test(v1, writes_take_the_note_lane)
{
    json_t *s =
        seed("{\"name\":\"A\",\"phones\":[\"+5511971730783\"],\"deals\":[{\"name\":\"x\"}]}");
    char id[64];
    calllog_error err;
    cr_assert_eq(rd_post_note(cl, seed_deal(s, 0), USER_ID, "texto", id, sizeof id, &err),
                 CALLLOG_OK, "%s", err.message);
    cr_expect_eq(last_lane, RATELIMIT_NOTE);
    json_decref(s);
}
