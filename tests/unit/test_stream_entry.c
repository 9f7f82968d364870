/* test_stream_entry — common/stream_entry, the one events-stream entry, and every writer
 * of it against a real Redis.
 *
 * The codec: XADD arguments, a stream reply, the JSON form (spool lines, retry members)
 * round-trip; an entry missing a field is refused, not half-read. The writers: an entry
 * XADDed from stream_entry_to_argv (the ingest), moved through the retry set and promoted
 * back (queue_reschedule + the promote script), and buried then replayed (the bury and
 * replay scripts) has exactly stream_entry_fields, in order (replay adds replayed_from),
 * and reads back equal. The reconciler's append script names no field at all: it XADDs
 * the pairs stream_entry_to_argv makes, so its field set is the codec's by construction.
 * A rename on one side therefore fails here, instead of dead-lettering calls as
 * `malformed_event`. */
#include <criterion/criterion.h>

#include <string.h>

#include "common/keys.h"
#include "common/stream_entry.h"
#include "tests/lib/redis_fixture.h"
#include "worker/queue.h"

static redisContext *rc;
static calllog_keys keys;

/* This test's keys and connection. */
static void setup(void)
{
    char prefix[96];
    redis_fixture_name(prefix, sizeof prefix, "stream_entry");
    cr_assert_eq(keys_build(prefix, &keys), 0);
    rc = redis_fixture_connect();
}

/* Deletes this test's keys. */
static void teardown(void)
{
    if (!rc)
        return;
    redisReply *r = redisCommand(rc, "DEL %s %s %s", keys.events, keys.retry, keys.dead);
    if (r)
        freeReplyObject(r);
    redisFree(rc);
    rc = NULL;
}

TestSuite(stream_entry, .init = setup, .fini = teardown, .timeout = 30);

/* A filled entry as the ingest makes one. */
static stream_entry sample(void)
{
    stream_entry e = {.call_sid = "CAentry",
                      .status = "no-answer",
                      .request_id = "req-1",
                      .received_at = "2026-12-02T10:00:00.000Z",
                      .event =
                          "{\"v\":1,\"call_sid\":\"CAentry\",\"note\":\"liguei, não atendeu\"}",
                      .attempt = 0};
    return e;
}

/* Asserts that two entries carry the same fields (ids and ownership aside). */
static void expect_same(const stream_entry *a, const stream_entry *b, int attempt)
{
    cr_expect_str_eq(a->call_sid, b->call_sid);
    cr_expect_str_eq(a->status, b->status);
    cr_expect_str_eq(a->request_id, b->request_id);
    cr_expect_str_eq(a->received_at, b->received_at);
    cr_expect_str_eq(a->event, b->event);
    cr_expect_eq(b->attempt, attempt);
}

/* The only entry of `key`, as a reply element (caller frees the returned reply). */
static redisReply *only_entry(const char *key, const redisReply **item)
{
    redisReply *r = redisCommand(rc, "XRANGE %s - +", key);
    cr_assert(r && r->type == REDIS_REPLY_ARRAY && r->elements == 1, "one entry in %s", key);
    *item = r->element[0];
    return r;
}

/* Asserts the field names of a stream entry: stream_entry_fields, then `extra` (or none). */
static void expect_fields(const redisReply *item, const char *extra)
{
    const redisReply *f = item->element[1];
    size_t want = 2 * STREAM_ENTRY_NFIELDS + (extra ? 2 : 0);
    cr_assert_eq(f->elements, want, "%zu values, want %zu", f->elements, want);
    for (int i = 0; i < STREAM_ENTRY_NFIELDS; i++)
        cr_expect_str_eq(f->element[2 * i]->str, stream_entry_fields[i], "field %d", i);
    if (extra)
        cr_expect_str_eq(f->element[2 * STREAM_ENTRY_NFIELDS]->str, extra);
}

/* XADDs `e` the way the ingest does. */
static void xadd(const stream_entry *e)
{
    const char *argv[3 + STREAM_ENTRY_ARGC] = {"XADD", keys.events, "*"};
    char num[16];
    int argc = 3 + stream_entry_to_argv(e, argv + 3, num, sizeof num);
    redisReply *r = redisCommandArgv(rc, argc, argv, NULL);
    cr_assert(r && r->type == REDIS_REPLY_STRING);
    freeReplyObject(r);
}

/* Reads the one entry of the events stream through the group. */
static void read_back(stream_entry *out)
{
    calllog_error err = {0};
    cr_assert_eq(queue_ensure_group(rc, &keys, &err), 0, "%s", err.message);
    cr_assert_eq(queue_read(rc, &keys, "w", 100, out, &err), CALLLOG_OK, "%s", err.message);
}

Test(stream_entry, json_round_trip_keeps_every_field)
{
    stream_entry e = sample(), back;
    e.attempt = 3;
    snprintf(e.id, sizeof e.id, "1700000000000-7");
    char *text = stream_entry_to_json(&e);
    cr_assert_not_null(text);
    cr_expect_null(strchr(text, '\n'), "one line, as the spool needs");
    cr_assert_eq(stream_entry_from_json(text, strlen(text), &back), 0);
    expect_same(&e, &back, 3);
    cr_expect_str_eq(back.id, "1700000000000-7", "from_id comes back as the id");
    stream_entry_free(&back);
    cr_expect_null(back.call_sid, "free clears the entry");
    free(text);
}

Test(stream_entry, json_without_attempt_is_attempt_zero)
{
    const char old[] = "{\"call_sid\":\"CA1\",\"status\":\"busy\",\"request_id\":\"r\","
                       "\"received_at\":\"t\",\"event\":\"{}\"}";
    stream_entry e;
    cr_assert_eq(stream_entry_from_json(old, strlen(old), &e), 0, "spool lines before attempt");
    cr_expect_eq(e.attempt, 0);
    cr_expect_str_eq(e.id, "");
    stream_entry_free(&e);
}

Test(stream_entry, json_missing_or_mistyped_fields_are_refused)
{
    const char *bad[] = {"",
                         "[]",
                         "not json",
                         "{\"call_sid\":\"CA1\"}",
                         "{\"call_sid\":\"CA1\",\"status\":\"busy\",\"request_id\":\"r\","
                         "\"received_at\":\"t\",\"event\":7}",
                         "{\"call_sid\":\"CA1\",\"status\":\"busy\",\"request_id\":\"r\","
                         "\"received_at\":\"t\",\"event\":\"{}\",\"attempt\":\"2\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        stream_entry e;
        cr_expect_eq(stream_entry_from_json(bad[i], strlen(bad[i]), &e), -1, "'%s'", bad[i]);
        cr_expect_null(e.call_sid, "nothing half-read");
        stream_entry_free(&e);
    }
}

Test(stream_entry, argv_names_every_field_in_order)
{
    stream_entry e = sample();
    e.attempt = 12;
    const char *argv[STREAM_ENTRY_ARGC];
    char num[16];
    cr_assert_eq(stream_entry_to_argv(&e, argv, num, sizeof num), STREAM_ENTRY_ARGC);
    for (int i = 0; i < STREAM_ENTRY_NFIELDS; i++)
        cr_expect_str_eq(argv[2 * i], stream_entry_fields[i]);
    cr_expect_str_eq(argv[5], "12", "attempt as text");
    cr_expect_str_eq(argv[11], e.event);
}

Test(stream_entry, ingest_xadd_reads_back_equal)
{
    stream_entry e = sample(), back;
    xadd(&e);
    const redisReply *item;
    redisReply *r = only_entry(keys.events, &item);
    expect_fields(item, NULL);
    freeReplyObject(r);
    read_back(&back);
    expect_same(&e, &back, 0);
    cr_expect_eq(back.deliveries, 1);
    stream_entry_free(&back);
}

Test(stream_entry, a_reply_missing_a_field_is_refused)
{
    redisReply *r = redisCommand(rc,
                                 "XADD %s * call_sid CA1 status busy attempt 0 "
                                 "request_id r received_at t evnt {}",
                                 keys.events);
    cr_assert(r && r->type == REDIS_REPLY_STRING);
    freeReplyObject(r);
    const redisReply *item;
    r = only_entry(keys.events, &item);
    stream_entry e;
    cr_expect_eq(stream_entry_from_reply(item, &e), -1, "a renamed field is not an entry");
    cr_expect_null(e.call_sid);
    freeReplyObject(r);
}

Test(stream_entry, retry_and_promote_write_the_field_set)
{
    stream_entry e = sample(), got, back;
    calllog_error err = {0};
    xadd(&e);
    read_back(&got);
    cr_assert_eq(queue_reschedule(rc, &keys, &got, 0, &err), 0, "%s", err.message);
    long moved = 0;
    long long next = 0;
    cr_assert_eq(queue_promote(rc, &keys, 10, &moved, &next, &err), 0, "%s", err.message);
    cr_assert_eq(moved, 1);
    const redisReply *item;
    redisReply *r = only_entry(keys.events, &item);
    expect_fields(item, NULL);
    freeReplyObject(r);
    cr_assert_eq(queue_read(rc, &keys, "w", 100, &back, &err), CALLLOG_OK, "%s", err.message);
    expect_same(&e, &back, 1);
    stream_entry_free(&got);
    stream_entry_free(&back);
}

Test(stream_entry, bury_and_replay_write_the_field_set)
{
    stream_entry e = sample(), got, back;
    calllog_error err = {0};
    e.attempt = 4;
    xadd(&e);
    read_back(&got);
    dead_letter d = {"permanent_error", "POST /activities: 422", 422, 5};
    cr_assert_eq(queue_bury(rc, &keys, &got, &d, &err), 0, "%s", err.message);
    const redisReply *item;
    redisReply *r = only_entry(keys.dead, &item);
    stream_entry dead;
    cr_expect_eq(stream_entry_from_reply(item, &dead), 0, "a dead letter holds a whole entry");
    expect_same(&e, &dead, 4);
    stream_entry_free(&dead);
    char dead_id[64];
    snprintf(dead_id, sizeof dead_id, "%s", item->element[0]->str);
    freeReplyObject(r);
    cr_assert_eq(queue_replay_dead(rc, &keys, dead_id, &err), 0, "%s", err.message);
    r = only_entry(keys.events, &item);
    expect_fields(item, STREAM_ENTRY_REPLAYED_FROM);
    freeReplyObject(r);
    cr_assert_eq(queue_read(rc, &keys, "w", 100, &back, &err), CALLLOG_OK, "%s", err.message);
    expect_same(&e, &back, 0);
    stream_entry_free(&got);
    stream_entry_free(&back);
}
