/* test_processor — worker/processor (processor_handle) from stream entry to outcome, against
 * the real Redis and PostgreSQL and the RD Station v1 and Twilio REST mocks.
 *
 * Each test gets its own Redis key prefix, its own migrated database (pg_fixture) and its
 * own mocks, so criterion may run them in parallel. An entry is added to the events stream
 * the way the ingest adds it, read through the consumer group, and handed to
 * processor_handle with one worker thread's links; what the test asserts is what happened
 * outside: the requests the mocks recorded and the notes they store, the ledger row, and
 * the events stream, retry set and dead stream.
 *
 * Covered: one test per outcome of processor.h (delivered with enrichment, recovered by
 * marker, skipped, duplicate, ignored, retry, dead, deferred, waiting); the lease lost just
 * before posting (no post); Postgres cut (pg_proxy) between the post and its record, then a
 * retry that recovers by marker without a second note; an RD 404 on the deal, which forgets
 * the lookup cache and the deal remembered in the ledger, and the retry that looks the deal
 * up again and posts to the open one; a post whose answer timed out, whose retry waits
 * RDSTATION_UNKNOWN_OUTCOME_DELAY_MS and finds the marker instead of posting again. Time only
 * passes by decree: a retry is made due by rewriting its score, a lease runs out by SQL. */
#include <criterion/criterion.h>

#include <curl/curl.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/keys.h"
#include "tests/lib/mock_server.h"
#include "tests/lib/pg_fixture.h"
#include "tests/lib/pg_proxy.h"
#include "tests/lib/redis_fixture.h"
#include "worker/lookup_cache.h"
#include "worker/processor.h"
#include "worker/queue.h"

#define SID "CA11111111111111111111111111111111"
#define CUSTOMER "+5511971730783"
#define OUR_NUMBER "+551130001000"
#define USER_ID "5e0000000000000000000001"
#define ACCOUNT "AC00000000000000000000000000000001"
#define API_KEY "SK00000000000000000000000000000001"
#define OWNER "test-worker/0"
#define OTHER "other-worker/0"
#define LEASE_MS 30000L
#define UNKNOWN_OUTCOME_MS 20000L
#define NOTES_PATH "^/api/v1/activities$"
#define TEMPLATE "Ligação {status} de {from} ({price})\n{marker}"

static mock_server rd, tw;
static pg_fixture pg;
static pg_proxy *proxy; /* NULL unless the test cuts Postgres */
static redisContext *redis;
static worker_settings settings;
static char prefix[96]; /* every key of this test starts with it */
static note_template *tpl;
static worker_links w;
static char rd_base[128];
static int cut_on_post;              /* cut Postgres when the RD client sends the post */
static void (*before_posting)(void); /* runs just before the lease is renewed to post */

/* ---- fixture ------------------------------------------------------------------------- */

static int prepaid; /* the processor paid ahead for the next RD request (the post) */

/* The RD client's limiter stand-in. The processor pays for the post just before renewing
 * the lease (rd_budget.prepay); like the worker's limiter this takes that as the post. */
static int rd_acquire(void *arg, ratelimit_lane lane)
{
    (void)arg;
    (void)lane;
    if (prepaid && cut_on_post)
        pg_proxy_cut(proxy); /* the post still goes out; its record will not */
    prepaid = 0;
    return 0;
}

/* rd_budget.prepay: the processor's budget call before the lease renewal; runs the
 * test's hook. */
static int budget_prepay(void *arg)
{
    (void)arg;
    prepaid = 1;
    if (before_posting)
        before_posting();
    return 0;
}

/* rd_budget.forfeit: the prepaid request went unused. */
static void budget_forfeit(void *arg)
{
    (void)arg;
    prepaid = 0;
}

/* An RD v1 client on the mock whose requests time out after `timeout_ms`. */
static rd_client *rd_client_with(long timeout_ms)
{
    rd_settings rs = {0};
    rs.api = RD_API_V1;
    rs.base_url = rd_base;
    rs.token = "mock-v1-token";
    rs.timeout_ms = timeout_ms;
    rs.acquire = rd_acquire;
    rd_client *c = rd_client_new(&rs, redis, &settings.keys);
    cr_assert_not_null(c, "rd_client_new");
    return c;
}

/* Opens the worker's ledger on the test database, through the proxy when there is one. */
static void open_ledger(void)
{
    char ci[1024];
    calllog_error err = {0};
    ledger_close(w.ledger);
    pg_fixture_conninfo(&pg, proxy ? pg_proxy_port(proxy) : 0, ci, sizeof ci);
    w.ledger = ledger_open(ci, &err);
    cr_assert_not_null(w.ledger, "ledger_open: %s", err.message);
}

/* The worker's settings: v1, notes, skip unknown callers, five attempts. */
static void settings_init(void)
{
    memset(&settings, 0, sizeof settings);
    redis_fixture_name(prefix, sizeof prefix, "processor");
    cr_assert_eq(keys_build(prefix, &settings.keys), 0);
    settings.lease_ms = LEASE_MS;
    settings.max_deliveries = 10;
    settings.enrich = 1;
    settings.twilio = (twilio_settings){tw.base, ACCOUNT, API_KEY, "mock-api-key-secret", 5000, 1};
    settings.rd_user_id = USER_ID;
    settings.unknown_outcome_delay_ms = UNKNOWN_OUTCOME_MS;
    settings.mode = WORKER_MODE_NOTE;
    settings.unknown = UNKNOWN_SKIP;
    settings.retry = (retry_settings){5, 1000, 60000};
    settings.cache_ttl_s = 3600;
    settings.negative_cache_ttl_s = 600;
}

/* Starts the mocks, connects Redis and a fresh database, builds one worker's links. */
static void setup(void)
{
    calllog_error err = {0};
    cr_assert_eq(curl_global_init(CURL_GLOBAL_DEFAULT), CURLE_OK);
    cr_assert_eq(processor_metrics_init(), 0);
    cr_assert_eq(mock_start(&rd, "rdstation_mock.py", NULL), 0, "RD mock did not start");
    cr_assert_eq(mock_start(&tw, "twilio_mock.py", NULL), 0, "Twilio mock did not start");
    snprintf(rd_base, sizeof rd_base, "%s/api/v1", rd.base);
    settings_init();
    redis = redis_fixture_connect();
    cr_assert_eq(queue_ensure_group(redis, &settings.keys, &err), 0, "%s", err.message);
    pg_fixture_open(&pg);
    tpl = note_template_compile(TEMPLATE, &err);
    cr_assert_not_null(tpl, "%s", err.message);

    memset(&w, 0, sizeof w);
    w.settings = &settings;
    w.tpl = tpl;
    w.redis = redis;
    w.rd = rd_client_with(5000);
    w.twilio = twilio_client_new(&settings.twilio);
    cr_assert_not_null(w.twilio);
    snprintf(w.owner, sizeof w.owner, OWNER);
    w.budget = (rd_budget){budget_prepay, budget_forfeit, NULL};
    prepaid = 0;
    open_ledger();
}

/* Deletes every key under this test's prefix. */
static void drop_keys(void)
{
    redisReply *r = redisCommand(redis, "KEYS %s*", prefix);
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++)
        freeReplyObject(redisCommand(redis, "DEL %s", r->element[i]->str));
    if (r)
        freeReplyObject(r);
}

/* Stops everything setup began. */
static void teardown(void)
{
    ledger_close(w.ledger);
    rd_client_free(w.rd);
    twilio_client_free(w.twilio);
    note_template_free(tpl);
    pg_proxy_stop(proxy);
    proxy = NULL;
    pg_fixture_close(&pg);
    if (redis) {
        drop_keys();
        redisFree(redis);
    }
    mock_stop(&rd);
    mock_stop(&tw);
    curl_global_cleanup();
}

TestSuite(processor, .init = setup, .fini = teardown, .timeout = 120);

/* Puts the worker's ledger behind a pg_proxy, so the test can cut Postgres. */
static void use_proxy(void)
{
    proxy = pg_proxy_start(pg.host, pg.port);
    cr_assert_not_null(proxy, "pg_proxy_start");
    open_ledger();
}

/* ---- the stream ------------------------------------------------------------------------ */

/* XADDs an event for `sid` with `status` the way the ingest does; `extra` (may be "") is
 * more JSON members, e.g. ",\"parent_call_sid\":\"CA…\"". */
static void add_event(const char *sid, const char *status, const char *extra)
{
    char event[1024], num[16];
    snprintf(event, sizeof event,
             "{\"v\":1,\"call_sid\":\"%s\",\"account_sid\":\"" ACCOUNT "\",\"from\":\"" CUSTOMER
             "\",\"to\":\"" OUR_NUMBER "\",\"direction\":\"inbound\",\"status\":\"%s\","
             "\"duration\":\"42\",\"timestamp\":\"Tue, 24 Nov 2026 20:00:00 +0000\","
             "\"received_at\":\"2026-11-24T20:00:00.123Z\",\"request_id\":\"req-1\"%s}",
             sid, status, extra);
    stream_entry e = {.call_sid = sid,
                      .status = status,
                      .request_id = "req-1",
                      .received_at = "2026-11-24T20:00:00.123Z",
                      .event = event};
    const char *argv[3 + STREAM_ENTRY_ARGC] = {"XADD", settings.keys.events, "*"};
    size_t lens[3 + STREAM_ENTRY_ARGC];
    int n = 3 + stream_entry_to_argv(&e, argv + 3, num, sizeof num);
    for (int i = 0; i < n; i++)
        lens[i] = strlen(argv[i]);
    redisReply *r = redisCommandArgv(redis, n, argv, lens);
    cr_assert(r && r->type == REDIS_REPLY_STRING, "XADD: %s", r ? r->str : redis->errstr);
    freeReplyObject(r);
}

/* Reads the next entry through the group and handles it; returns the outcome. */
static processor_outcome handle_next(void)
{
    stream_entry e;
    calllog_error err = {0};
    cr_assert_eq(queue_read(redis, &settings.keys, "test-consumer", 100, &e, &err), CALLLOG_OK,
                 "no entry to handle: %s", err.message);
    processor_outcome o = processor_handle(&w, &e);
    stream_entry_free(&e);
    return o;
}

/* Adds an event for SID with `status` and handles it. */
static processor_outcome handle_new(const char *status)
{
    add_event(SID, status, "");
    return handle_next();
}

/* An integer reply of a one-key command ("XLEN %s", "ZCARD %s"). */
static long long key_int(const char *fmt, const char *key)
{
    redisReply *r = redisCommand(redis, fmt, key);
    cr_assert(r && r->type == REDIS_REPLY_INTEGER, "%s %s", fmt, key);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

/* Entries the group has delivered and nobody acknowledged. */
static long long pending(void)
{
    redisReply *r = redisCommand(redis, "XPENDING %s %s", settings.keys.events, KEYS_GROUP);
    cr_assert(r && r->type == REDIS_REPLY_ARRAY && r->elements >= 1);
    long long n = r->element[0]->integer;
    freeReplyObject(r);
    return n;
}

/* Asserts the events stream holds nothing, acknowledged or not, and the retry set and
 * dead stream hold `retry` and `dead` entries. */
static void expect_queues(long long retry, long long dead)
{
    cr_expect_eq(key_int("XLEN %s", settings.keys.events), 0, "events stream not empty");
    cr_expect_eq(pending(), 0, "entry left pending");
    cr_expect_eq(key_int("ZCARD %s", settings.keys.retry), retry, "retry set");
    cr_expect_eq(key_int("XLEN %s", settings.keys.dead), dead, "dead stream");
}

/* Redis's clock in epoch ms (the retry set's scores are on it). */
static long long redis_now_ms(void)
{
    redisReply *r = redisCommand(redis, "TIME");
    cr_assert(r && r->type == REDIS_REPLY_ARRAY && r->elements == 2);
    long long ms = atoll(r->element[0]->str) * 1000 + atoll(r->element[1]->str) / 1000;
    freeReplyObject(r);
    return ms;
}

/* The one member of the retry set: its attempt number and due time (epoch ms). */
static int retry_member(long long *due_ms)
{
    redisReply *r = redisCommand(redis, "ZRANGE %s 0 -1 WITHSCORES", settings.keys.retry);
    cr_assert(r && r->type == REDIS_REPLY_ARRAY && r->elements == 2, "one retry member expected");
    stream_entry e;
    cr_assert_eq(stream_entry_from_json(r->element[0]->str, r->element[0]->len, &e), 0);
    int attempt = e.attempt;
    stream_entry_free(&e);
    *due_ms = atoll(r->element[1]->str);
    freeReplyObject(r);
    return attempt;
}

/* Makes every retry due now (time passing, by decree) and promotes it to the stream. */
static void retries_due_now(void)
{
    redisReply *r = redisCommand(redis, "ZRANGE %s 0 -1", settings.keys.retry);
    cr_assert(r && r->type == REDIS_REPLY_ARRAY);
    for (size_t i = 0; i < r->elements; i++)
        freeReplyObject(redisCommand(redis, "ZADD %s XX 0 %b", settings.keys.retry,
                                     r->element[i]->str, r->element[i]->len));
    long moved = 0;
    long long next = 0;
    calllog_error err = {0};
    cr_assert_eq(queue_promote(redis, &settings.keys, 10, &moved, &next, &err), 0, "%s",
                 err.message);
    cr_assert_eq(moved, (long)r->elements);
    freeReplyObject(r);
}

/* Field `name` of the only dead letter. Returns `out`. */
static char *dead_field(const char *name, char *out, size_t outlen)
{
    redisReply *r = redisCommand(redis, "XRANGE %s - +", settings.keys.dead);
    cr_assert(r && r->type == REDIS_REPLY_ARRAY && r->elements == 1, "one dead letter expected");
    const redisReply *f = r->element[0]->element[1];
    snprintf(out, outlen, "(none)");
    for (size_t i = 0; i + 1 < f->elements; i += 2)
        if (strcmp(f->element[i]->str, name) == 0)
            snprintf(out, outlen, "%s", f->element[i + 1]->str);
    freeReplyObject(r);
    return out;
}

/* ---- the ledger -------------------------------------------------------------------------- */

/* Column expression `col` of SID's ledger row as text ("(none)" without a row). */
static char *row(const char *col, char *out, size_t outlen)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT (%s)::text FROM calllog.deliveries WHERE call_sid = $1", col);
    return pg_fixture_value(&pg, sql, SID, out, outlen);
}

/* Makes the lease on SID run out, as if its holder died (or paused) long ago. */
static void expire_lease(void)
{
    char v[16];
    pg_fixture_value(&pg,
                     "UPDATE calllog.deliveries SET lease_expires_at = now() - interval '1 second'"
                     " WHERE call_sid = $1 RETURNING 1",
                     SID, v, sizeof v);
    cr_assert_str_eq(v, "1");
}

/* A second worker's ledger connection (caller closes). */
static ledger *other_ledger(void)
{
    calllog_error err = {0};
    ledger *l = ledger_open(pg.url, &err);
    cr_assert_not_null(l, "%s", err.message);
    return l;
}

/* Claims SID for OTHER on its own connection; asserts the claim is won. */
static void other_claims(void)
{
    ledger *l = other_ledger();
    ledger_claim_result c;
    cr_assert_eq(ledger_claim(l, SID, "completed", OTHER, LEASE_MS, NULL, &c), 0);
    cr_assert_eq(c.status, LEDGER_CLAIM_WON);
    ledger_close(l);
}

/* ---- RD Station and Twilio --------------------------------------------------------------- */

/* Seeds the customer as a contact with the deals in `deals` (a JSON array); returns the
 * i-th deal's id into `id` (64 bytes) for each non-NULL pointer given. */
static void seed_contact(const char *deals, char *first, char *second)
{
    char spec[1024];
    json_t *out = NULL;
    snprintf(spec, sizeof spec, "{\"name\":\"Maria\",\"phones\":[\"" CUSTOMER "\"],\"deals\":%s}",
             deals);
    cr_assert_eq(mock_post(&rd, "/_mock/contacts", spec, &out), 201, "seed %s", spec);
    json_t *ids = json_object_get(out, "deal_ids");
    if (first)
        snprintf(first, 64, "%s", json_string_value(json_array_get(ids, 0)));
    if (second)
        snprintf(second, 64, "%s", json_string_value(json_array_get(ids, 1)));
    json_decref(out);
}

/* Seeds the customer with one open deal; returns its id into `deal` (64 bytes). */
static void seed_customer(char *deal)
{
    seed_contact("[{\"name\":\"Venda\",\"status\":\"ongoing\"}]", deal, NULL);
}

/* Arms one fault rule on the RD mock. */
static void rd_fault(const char *rule)
{
    cr_assert_eq(mock_post(&rd, "/_mock/faults", rule, NULL), 201, "fault %s", rule);
}

/* How many API requests the RD mock logged with `method` and a path matching `re`. */
static size_t rd_requests(const char *method, const char *re)
{
    char path[256];
    snprintf(path, sizeof path, "/_mock/requests?method=%s&path=%s", method, re);
    json_t *log = mock_get(&rd, path);
    cr_assert_not_null(log, "GET %s", path);
    size_t n = json_array_size(json_object_get(log, "requests"));
    json_decref(log);
    return n;
}

/* The notes RD stores (on `deal`, or on every deal for NULL); caller decrefs. */
static json_t *notes(const char *deal)
{
    char path[128];
    snprintf(path, sizeof path, "/_mock/notes%s%s", deal ? "?deal_id=" : "", deal ? deal : "");
    json_t *all = mock_get(&rd, path);
    cr_assert_not_null(all, "GET %s", path);
    json_t *list = json_incref(json_object_get(all, "notes"));
    json_decref(all);
    return list;
}

/* Number of notes RD stores on `deal` (NULL: on any deal). */
static size_t note_count(const char *deal)
{
    json_t *n = notes(deal);
    size_t count = json_array_size(n);
    json_decref(n);
    return count;
}

/* The id of the only note RD stores (asserts there is exactly one). */
static void only_note_id(char *out, size_t outlen)
{
    json_t *n = notes(NULL);
    cr_assert_eq(json_array_size(n), 1, "one note expected, RD has %zu", json_array_size(n));
    snprintf(out, outlen, "%s", json_string_value(json_object_get(json_array_get(n, 0), "id")));
    json_decref(n);
}

/* Makes RD answer the next note post with `status`. */
static void post_answers(int status)
{
    char rule[160];
    snprintf(rule, sizeof rule, "{\"method\":\"POST\",\"path\":\"%s\",\"status\":%d,\"count\":1}",
             NOTES_PATH, status);
    rd_fault(rule);
}

/* Seeds the customer (its deal's id into `deal`), makes RD answer the post with `status`
 * and handles a completed call; returns the outcome. */
static processor_outcome handle_with_post_answer(int status, char *deal)
{
    seed_customer(deal);
    post_answers(status);
    return handle_new("completed");
}

/* Asserts no note exists and SID's row is in `state` after an RD answer `http_status`. */
static void expect_failed(const char *state, const char *http_status)
{
    char v[128];
    cr_expect_eq(note_count(NULL), 0);
    cr_expect_str_eq(row("state", v, sizeof v), state);
    cr_expect_str_eq(row("last_http_status", v, sizeof v), http_status);
}

/* Puts `deal` in the lookup cache as the customer's open deal. */
static void cache_deal(const char *deal)
{
    lookup_cache_hit hit = {0};
    snprintf(hit.deal_id, sizeof hit.deal_id, "%s", deal);
    lookup_cache_put_found(redis, &settings.keys, CUSTOMER, &hit, 3600);
}

/* ---- one test per outcome ------------------------------------------------------------------ */

Test(processor, delivered_posts_one_enriched_note_and_records_it)
{
    char deal[64], v[128], note_id[64];
    seed_customer(deal);
    cr_assert_eq(mock_post(&tw, "/_mock/calls",
                           "{\"sid\":\"" SID "\",\"from\":\"" CUSTOMER "\",\"to\":\"" OUR_NUMBER
                           "\",\"status\":\"completed\",\"duration\":\"42\","
                           "\"price\":\"-0.0130\",\"price_unit\":\"USD\"}",
                           NULL),
                 201);

    cr_assert_eq(handle_new("completed"), PROCESSOR_DELIVERED);

    json_t *n = notes(deal);
    cr_assert_eq(json_array_size(n), 1);
    const char *text = json_string_value(json_object_get(json_array_get(n, 0), "text"));
    cr_expect(strstr(text, "[calllog:" SID "]"), "no marker in %s", text);
    cr_expect(strstr(text, "-0.0130 USD"), "Twilio's price missing: %s", text);
    json_decref(n);
    only_note_id(note_id, sizeof note_id);
    cr_expect_eq(mock_count_requests(&tw, "/2010-04-01/Accounts/" ACCOUNT "/Calls/" SID ".json"),
                 1);
    cr_expect_eq(rd_requests("POST", NOTES_PATH), 1);
    cr_expect_str_eq(row("state", v, sizeof v), "delivered");
    cr_expect_str_eq(row("rd_deal_id", v, sizeof v), deal);
    cr_expect_str_eq(row("rd_note_id", v, sizeof v), note_id);
    cr_expect_str_eq(row("recovered", v, sizeof v), "false");
    lookup_cache_hit hit;
    cr_expect_eq(lookup_cache_get(redis, &settings.keys, CUSTOMER, &hit), LOOKUP_CACHE_FOUND);
    cr_expect_str_eq(hit.deal_id, deal);
    expect_queues(0, 0);
}

/* A worker posted the note and died before recording it: its lease ran out. */
Test(processor, recovered_finds_the_earlier_note_by_marker_and_does_not_post)
{
    char deal[64], v[128], note_id[64];
    calllog_error err = {0};
    seed_customer(deal);
    ledger *dead = other_ledger();
    ledger_claim_result c;
    cr_assert_eq(ledger_claim(dead, SID, "completed", OTHER, LEASE_MS, NULL, &c), 0);
    cr_assert_eq(ledger_mark_posting(dead, SID, OTHER, deal, LEASE_MS), 0);
    ledger_close(dead);
    cr_assert_eq(rd_post_note(w.rd, deal, USER_ID, "Ligação anterior\n[calllog:" SID "]", note_id,
                              sizeof note_id, &err),
                 CALLLOG_OK, "%s", err.message);
    expire_lease();

    cr_assert_eq(handle_new("completed"), PROCESSOR_RECOVERED);

    cr_expect_eq(rd_requests("POST", NOTES_PATH), 1, "posted again");
    cr_expect_eq(note_count(NULL), 1);
    cr_expect_geq(rd_requests("GET", "^/api/v1/activities$"), 1, "no marker search");
    cr_expect_str_eq(row("state", v, sizeof v), "delivered");
    cr_expect_str_eq(row("recovered", v, sizeof v), "true");
    cr_expect_str_eq(row("rd_note_id", v, sizeof v), note_id);
    cr_expect_str_eq(row("attempts", v, sizeof v), "2");
    expect_queues(0, 0);
}

Test(processor, skipped_caller_without_contact_is_recorded_and_acknowledged)
{
    char v[128];
    cr_assert_eq(handle_new("completed"), PROCESSOR_SKIPPED);

    cr_expect_eq(note_count(NULL), 0);
    cr_expect_eq(rd_requests("POST", ".*"), 0);
    cr_expect_geq(rd_requests("GET", "^/api/v1/contacts$"), 1, "no contact look-up");
    cr_expect_str_eq(row("state", v, sizeof v), "skipped");
    cr_expect_str_eq(row("reason", v, sizeof v), "no_contact");
    lookup_cache_hit hit;
    cr_expect_eq(lookup_cache_get(redis, &settings.keys, CUSTOMER, &hit), LOOKUP_CACHE_NO_CONTACT);
    expect_queues(0, 0);
}

/* Twilio retried the webhook after the note was delivered. */
Test(processor, duplicate_of_a_delivered_call_costs_no_rd_request)
{
    char deal[64], v[128];
    seed_customer(deal);
    cr_assert_eq(handle_new("completed"), PROCESSOR_DELIVERED);
    size_t before = mock_count_requests(&rd, "/api/v1/");

    cr_assert_eq(handle_new("completed"), PROCESSOR_DUPLICATE);

    cr_expect_eq(mock_count_requests(&rd, "/api/v1/"), before, "the duplicate asked RD");
    cr_expect_eq(note_count(deal), 1);
    cr_expect_str_eq(row("state", v, sizeof v), "delivered");
    cr_expect_str_eq(row("attempts", v, sizeof v), "1");
    expect_queues(0, 0);
}

/* Not terminal, or a child leg of a <Dial>: acknowledged, never claimed. */
Test(processor, ignored_ringing_and_child_legs_claim_nothing)
{
    char v[128];
    cr_assert_eq(handle_new("ringing"), PROCESSOR_IGNORED);
    add_event(SID, "completed", ",\"parent_call_sid\":\"CA22222222222222222222222222222222\"");
    cr_assert_eq(handle_next(), PROCESSOR_IGNORED);

    cr_expect_str_eq(row("state", v, sizeof v), "(none)");
    cr_expect_eq(mock_count_requests(&rd, NULL), 0);
    cr_expect_eq(mock_count_requests(&tw, NULL), 0);
    expect_queues(0, 0);
}

Test(processor, retry_after_rd_503_reschedules_the_next_attempt)
{
    char deal[64], v[128];
    long long due;
    cr_assert_eq(handle_with_post_answer(503, deal), PROCESSOR_RETRY);

    expect_failed("retry_wait", "503");
    cr_expect_str_eq(row("rd_post_started_at IS NOT NULL", v, sizeof v), "true");
    expect_queues(1, 0);
    cr_expect_eq(retry_member(&due), 1, "the retry is attempt 1");

    retries_due_now();
    cr_assert_eq(handle_next(), PROCESSOR_DELIVERED);
    cr_expect_eq(note_count(deal), 1);
    cr_expect_str_eq(row("attempts", v, sizeof v), "2");
    expect_queues(0, 0);
}

Test(processor, dead_after_rd_422_goes_to_the_dead_stream)
{
    char deal[64], v[128];
    cr_assert_eq(handle_with_post_answer(422, deal), PROCESSOR_DEAD);

    expect_failed("dead", "422");
    cr_expect_str_eq(row("reason", v, sizeof v), "permanent_error");
    expect_queues(0, 1);
    cr_expect_str_eq(dead_field("call_sid", v, sizeof v), SID);
    cr_expect_str_eq(dead_field("reason", v, sizeof v), "permanent_error");
    cr_expect_str_eq(dead_field("http_status", v, sizeof v), "422");
}

/* Postgres is down before the claim: nothing is asked of RD, the entry is parked (no
 * attempt spent) and goes through once Postgres is back. */
Test(processor, deferred_while_postgres_is_down_then_delivered)
{
    char deal[64], v[128];
    long long due;
    seed_customer(deal);
    use_proxy();
    pg_proxy_cut(proxy);

    cr_assert_eq(handle_new("completed"), PROCESSOR_DEFERRED);

    cr_expect_eq(mock_count_requests(&rd, NULL), 0);
    cr_expect_str_eq(row("state", v, sizeof v), "(none)");
    expect_queues(1, 0);
    cr_expect_eq(retry_member(&due), 0, "a parked entry spends no attempt");

    pg_proxy_restore(proxy);
    retries_due_now();
    cr_assert_eq(handle_next(), PROCESSOR_DELIVERED);
    cr_expect_eq(note_count(deal), 1);
    expect_queues(0, 0);
}

/* Another worker holds a running lease: looked at again once it runs out. */
Test(processor, waiting_while_another_worker_holds_the_lease)
{
    char deal[64], v[128];
    long long due;
    seed_customer(deal);
    other_claims();
    long long before = redis_now_ms();

    cr_assert_eq(handle_new("completed"), PROCESSOR_WAITING);

    cr_expect_eq(mock_count_requests(&rd, NULL), 0);
    cr_expect_str_eq(row("lease_owner", v, sizeof v), OTHER);
    cr_expect_str_eq(row("attempts", v, sizeof v), "1");
    expect_queues(1, 0);
    cr_expect_eq(retry_member(&due), 0, "waiting spends no attempt");
    cr_expect_gt(due, before, "looked at again before the lease runs out");
    cr_expect_leq(due, redis_now_ms() + LEASE_MS + 1000, "parked past the lease");
}

/* ---- around the post ------------------------------------------------------------------------ */

/* The lease runs out while the worker waits for rate budget, and another worker claims
 * the call: the renewal fails, and this worker must not post. */
static void steal_the_lease(void)
{
    expire_lease();
    other_claims();
}

Test(processor, lease_lost_before_posting_posts_nothing)
{
    char deal[64], v[128];
    seed_customer(deal);
    before_posting = steal_the_lease;

    cr_assert_eq(handle_new("completed"), PROCESSOR_DUPLICATE);

    cr_expect_eq(rd_requests("POST", ".*"), 0, "posted without a lease");
    cr_expect_eq(note_count(NULL), 0);
    cr_expect_str_eq(row("lease_owner", v, sizeof v), OTHER);
    cr_expect_str_eq(row("state", v, sizeof v), "processing");
    cr_expect_str_eq(row("rd_post_started_at IS NULL", v, sizeof v), "true");
    expect_queues(0, 0);
}

/* Postgres goes away between the post and its record: the note exists, the mark fails.
 * Once Postgres is back and the lease has run out, the retry finds the marker. */
Test(processor, postgres_down_after_the_post_recovers_by_marker_without_a_second_note)
{
    char deal[64], v[128], note_id[64];
    seed_customer(deal);
    cache_deal(deal); /* so the post is the first RD request */
    use_proxy();
    cut_on_post = 1;

    cr_assert_eq(handle_new("completed"), PROCESSOR_DEFERRED);

    only_note_id(note_id, sizeof note_id);
    cr_expect_str_eq(row("state", v, sizeof v), "processing");
    cr_expect_str_eq(row("rd_post_started_at IS NOT NULL", v, sizeof v), "true");
    expect_queues(1, 0);

    cut_on_post = 0;
    pg_proxy_restore(proxy);
    expire_lease();
    retries_due_now();
    cr_assert_eq(handle_next(), PROCESSOR_RECOVERED);

    cr_expect_eq(rd_requests("POST", NOTES_PATH), 1, "posted twice");
    cr_expect_eq(note_count(NULL), 1);
    cr_expect_str_eq(row("state", v, sizeof v), "delivered");
    cr_expect_str_eq(row("recovered", v, sizeof v), "true");
    cr_expect_str_eq(row("rd_note_id", v, sizeof v), note_id);
    cr_expect_geq(pg_proxy_connections(proxy), 2, "the ledger did not reconnect");
    expect_queues(0, 0);
}

/* The cached deal answers 404: it was deleted, merged, or hidden from the token's user,
 * and the contact's other deal is the open one now. */
static void vanish_cached_deal(char *gone, char *open)
{
    seed_contact(
        "[{\"name\":\"Antiga\",\"status\":\"ongoing\",\"updated_at\":\"2026-11-20T10:00:00Z\"},"
        "{\"name\":\"Nova\",\"status\":\"ongoing\",\"updated_at\":\"2026-11-10T10:00:00Z\"}]",
        gone, open);
    cache_deal(gone);
    char path[128];
    snprintf(path, sizeof path, "/_mock/deals/%s", gone);
    cr_assert_eq(mock_post(&rd, path, "{\"visible\":false,\"status\":\"lost\"}", NULL), 200);
}

Test(processor, rd_404_forgets_the_lookup_cache_and_the_remembered_deal)
{
    char gone[64], open[64], v[128];
    long long due;
    vanish_cached_deal(gone, open);

    cr_assert_eq(handle_new("completed"), PROCESSOR_RETRY);

    cr_expect_eq(rd_requests("POST", NOTES_PATH), 1);
    expect_failed("retry_wait", "404");
    lookup_cache_hit hit;
    cr_expect_eq(lookup_cache_get(redis, &settings.keys, CUSTOMER, &hit), LOOKUP_CACHE_MISS,
                 "the vanished deal is still cached");
    cr_expect_str_eq(row("rd_deal_id", v, sizeof v), "(null)", "the ledger still remembers it");
    expect_queues(1, 0);
    cr_expect_eq(retry_member(&due), 1);
}

/* The bug this guards against: the retry's claim handed back the vanished deal, so every
 * attempt went to it again. */
Test(processor, retry_after_rd_404_looks_the_deal_up_again_and_posts_to_the_open_one)
{
    char gone[64], open[64], v[128];
    vanish_cached_deal(gone, open);
    cr_assert_eq(handle_new("completed"), PROCESSOR_RETRY);
    size_t lookups = rd_requests("GET", "^/api/v1/contacts$");

    retries_due_now();
    cr_assert_eq(handle_next(), PROCESSOR_DELIVERED);

    cr_expect_gt(rd_requests("GET", "^/api/v1/contacts$"), lookups, "the deal was not looked up");
    cr_expect_eq(note_count(open), 1);
    cr_expect_eq(note_count(NULL), 1);
    cr_expect_eq(rd_requests("POST", NOTES_PATH), 2);
    cr_expect_str_eq(row("state", v, sizeof v), "delivered");
    cr_expect_str_eq(row("rd_deal_id", v, sizeof v), open);
    lookup_cache_hit hit;
    cr_expect_eq(lookup_cache_get(redis, &settings.keys, CUSTOMER, &hit), LOOKUP_CACHE_FOUND);
    cr_expect_str_eq(hit.deal_id, open);
    expect_queues(0, 0);
}

/* Waits (bounded) until RD stores `n` notes: a hung request is processed after its client
 * gave up. Polls state; the bound is only a safety net. */
static void wait_for_notes(size_t n)
{
    for (int i = 0; i < 300 && note_count(NULL) < n; i++)
        usleep(50 * 1000);
    cr_assert_eq(note_count(NULL), n, "RD never processed the post");
}

/* The post times out, yet RD may have taken it: the retry waits the unknown-outcome delay
 * and looks for the marker before posting. */
Test(processor, timeout_on_post_waits_then_finds_the_marker_instead_of_posting_again)
{
    char deal[64], v[128], note_id[64];
    long long due;
    seed_customer(deal);
    rd_client_free(w.rd);
    w.rd = rd_client_with(1000);
    rd_fault("{\"method\":\"POST\",\"path\":\"" NOTES_PATH
             "\",\"status\":0,\"delay_ms\":2500,\"count\":1}");
    long long before = redis_now_ms();

    cr_assert_eq(handle_new("completed"), PROCESSOR_RETRY);

    expect_queues(1, 0);
    cr_expect_eq(retry_member(&due), 1);
    cr_expect_geq(due, before + UNKNOWN_OUTCOME_MS, "retried before RD could be done with it");
    cr_expect_str_eq(row("state", v, sizeof v), "retry_wait");
    wait_for_notes(1);
    only_note_id(note_id, sizeof note_id);
    size_t searches = rd_requests("GET", "^/api/v1/activities$");

    retries_due_now();
    cr_assert_eq(handle_next(), PROCESSOR_RECOVERED);

    cr_expect_gt(rd_requests("GET", "^/api/v1/activities$"), searches, "no marker search");
    cr_expect_eq(rd_requests("POST", NOTES_PATH), 1, "posted again");
    cr_expect_eq(note_count(NULL), 1);
    cr_expect_str_eq(row("state", v, sizeof v), "delivered");
    cr_expect_str_eq(row("rd_note_id", v, sizeof v), note_id);
    cr_expect_str_eq(row("recovered", v, sizeof v), "true");
    expect_queues(0, 0);
}
