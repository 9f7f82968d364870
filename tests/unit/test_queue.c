/* test_queue — worker/queue against a real Redis (the events stream, retry set, dead stream).
 *
 * The server is the one at CALLLOG_TEST_REDIS_URL (tests/run.sh starts it through
 * tests/lib/services.sh); without it every test fails, saying so. Each test uses its own
 * key prefix (pid + clock), so tests and parallel runs never share keys, and deletes its
 * keys afterwards. Entries are added the way the ingest adds them (flat fields call_sid,
 * status, attempt, request_id, received_at, event).
 *
 * Covered: ensure_group twice; read → done leaves nothing behind (XLEN 0, XPENDING 0);
 * reschedule puts exactly one member with attempt + 1 in the retry set, due on Redis's
 * clock, and removes the entry from the stream and the PEL; promote moves only due members,
 * reports the next due time, and sends malformed members to the dead stream; bury writes
 * the flat dead-letter fields and acks; replay_dead puts a dead entry back with attempt 0
 * and returns 1 for an unknown id; reclaim takes over another consumer's entry with its
 * delivery count; done_next acks and reads the next entry for the same consumer in one
 * script, acks even when none follows, reads nothing without a consumer, and changes
 * nothing when the script fails; depths. */
#include <criterion/criterion.h>

#include <jansson.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/keys.h"
#include "common/redis_client.h"
#include "tests/lib/redis_fixture.h"
#include "worker/queue.h"

#define EVENT_JSON "{\"v\":1,\"call_sid\":\"CA1\",\"status\":\"completed\"}"

static redisContext *rc;
static calllog_keys keys;

/* ---- fixture -------------------------------------------------------------------------------- */

/* Builds this test's unique keys and opens the connection. */
static void setup(void)
{
    char prefix[96];
    redis_fixture_name(prefix, sizeof prefix, "queue");
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

TestSuite(queue, .init = setup, .fini = teardown, .timeout = 30);

/* ---- helpers -------------------------------------------------------------------------------- */

/* Runs a command (printf-style, string arguments only) and returns its reply; asserts one came
 * and it is not an error. */
static redisReply *cmd(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(rc, fmt, ap);
    va_end(ap);
    cr_assert_not_null(r, "%s: %s", fmt, rc->errstr);
    cr_assert_neq(r->type, REDIS_REPLY_ERROR, "%s: %s", fmt, r->str);
    return r;
}

/* An integer reply of `fmt`. */
static long long cmd_int(const char *fmt, const char *a, const char *b)
{
    redisReply *r = cmd(fmt, a, b);
    cr_assert_eq(r->type, REDIS_REPLY_INTEGER, "%s", fmt);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

static long long xlen(const char *key)
{
    return cmd_int("XLEN %s", key, NULL);
}

static long long zcard(const char *key)
{
    return cmd_int("ZCARD %s", key, NULL);
}

/* Entries pending in the group (XPENDING summary count). */
static long long pending(void)
{
    redisReply *r = cmd("XPENDING %s %s", keys.events, KEYS_GROUP);
    cr_assert(r->type == REDIS_REPLY_ARRAY && r->elements >= 1);
    long long n = r->element[0]->integer;
    freeReplyObject(r);
    return n;
}

/* Redis's clock in epoch ms. */
static long long redis_now_ms(void)
{
    redisReply *r = cmd("TIME");
    long long ms = atoll(r->element[0]->str) * 1000 + atoll(r->element[1]->str) / 1000;
    freeReplyObject(r);
    return ms;
}

/* XADDs an entry as the ingest does; copies its id into `id` (64 bytes) when non-NULL. */
static void add_entry(const char *sid, const char *status, const char *attempt, char *id)
{
    redisReply *r = cmd("XADD %s * call_sid %s status %s attempt %s request_id req-%s "
                        "received_at 2026-11-24T20:00:00.123Z event %s",
                        keys.events, sid, status, attempt, sid, EVENT_JSON);
    cr_assert_eq(r->type, REDIS_REPLY_STRING);
    if (id)
        snprintf(id, 64, "%s", r->str);
    freeReplyObject(r);
}

/* Ensures the group and reads one entry for `consumer`; asserts CALLLOG_OK. */
static void read_one(const char *consumer, stream_entry *e)
{
    calllog_error err = {0};
    cr_assert_eq(queue_ensure_group(rc, &keys, &err), 0, "%s", err.message);
    cr_assert_eq(queue_read(rc, &keys, consumer, 100, e, &err), CALLLOG_OK, "%s", err.message);
}

/* The value of field `name` in a [field, value, ...] array, or NULL. */
static const char *field(const redisReply *fields, const char *name)
{
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        if (strcmp(fields->element[i]->str, name) == 0)
            return fields->element[i + 1]->str;
    }
    return NULL;
}

/* Asserts field `name` of `fields` is `want`. */
static void assert_field(const redisReply *fields, const char *name, const char *want)
{
    const char *v = field(fields, name);
    cr_assert_not_null(v, "field %s missing", name);
    cr_assert_str_eq(v, want, "field %s", name);
}

/* XRANGE of the whole stream `key` (caller frees); asserts it has `n` entries. */
static redisReply *stream_entries(const char *key, size_t n)
{
    redisReply *r = cmd("XRANGE %s - +", key);
    cr_assert_eq(r->type, REDIS_REPLY_ARRAY);
    cr_assert_eq(r->elements, n, "%s has %zu entries, want %zu", key, r->elements, n);
    return r;
}

/* ---- tests ---------------------------------------------------------------------------------- */

Test(queue, ensure_group_twice)
{
    calllog_error err = {0};
    cr_assert_eq(queue_ensure_group(rc, &keys, &err), 0, "%s", err.message);
    cr_assert_eq(queue_ensure_group(rc, &keys, &err), 0, "second call: %s", err.message);
    redisReply *r = cmd("XINFO GROUPS %s", keys.events);
    cr_assert_eq(r->elements, 1, "exactly one group");
    cr_assert_str_eq(field(r->element[0], "name"), KEYS_GROUP);
    freeReplyObject(r);
    cr_assert_eq(xlen(keys.events), 0, "MKSTREAM created an empty stream");
}

Test(queue, group_reads_entries_added_before_it_existed)
{
    add_entry("CA0", "completed", "0", NULL);
    stream_entry e;
    read_one("w1", &e);
    cr_assert_str_eq(e.call_sid, "CA0");
    stream_entry_free(&e);
}

Test(queue, read_fills_the_entry)
{
    char id[64];
    add_entry("CA1", "completed", "2", id);
    stream_entry e;
    read_one("w1", &e);
    cr_assert_str_eq(e.id, id);
    cr_assert_str_eq(e.call_sid, "CA1");
    cr_assert_str_eq(e.status, "completed");
    cr_assert_str_eq(e.request_id, "req-CA1");
    cr_assert_str_eq(e.received_at, "2026-11-24T20:00:00.123Z");
    cr_assert_str_eq(e.event, EVENT_JSON);
    cr_assert_eq(e.attempt, 2);
    cr_assert_eq(e.deliveries, 1);
    stream_entry_free(&e);
    cr_assert_null(e.call_sid, "stream_entry_free clears the entry");
}

Test(queue, read_on_empty_stream)
{
    calllog_error err = {0};
    cr_assert_eq(queue_ensure_group(rc, &keys, &err), 0, "%s", err.message);
    stream_entry e;
    cr_assert_eq(queue_read(rc, &keys, "w1", 10, &e, &err), CALLLOG_NOT_FOUND, "%s", err.message);
}

Test(queue, read_without_group_is_an_error)
{
    add_entry("CA1", "completed", "0", NULL);
    calllog_error err = {0};
    stream_entry e;
    cr_assert_lt(queue_read(rc, &keys, "w1", 10, &e, &err), 0);
    cr_assert(strstr(err.message, "NOGROUP") != NULL, "%s", err.message);
}

Test(queue, done_removes_the_entry)
{
    add_entry("CA1", "completed", "0", NULL);
    add_entry("CA2", "completed", "0", NULL);
    stream_entry e;
    read_one("w1", &e);
    cr_assert_eq(pending(), 1);
    calllog_error err = {0};
    cr_assert_eq(queue_done(rc, &keys, &e, &err), 0, "%s", err.message);
    cr_assert_eq(pending(), 0);
    cr_assert_eq(xlen(keys.events), 1, "only the finished entry is deleted");
    stream_entry_free(&e);

    read_one("w1", &e);
    cr_assert_str_eq(e.call_sid, "CA2");
    cr_assert_eq(queue_done(rc, &keys, &e, &err), 0, "%s", err.message);
    cr_assert_eq(xlen(keys.events), 0);
    cr_assert_eq(pending(), 0);
    stream_entry_free(&e);
}

/* The consumer that entry `id` is pending on (XPENDING detail), or "" when none; into `out`. */
static void pending_owner(const char *id, char *out, size_t outlen)
{
    redisReply *r = cmd("XPENDING %s %s %s %s 1", keys.events, KEYS_GROUP, id, id);
    snprintf(out, outlen, "%s", r->elements == 1 ? r->element[0]->element[1]->str : "");
    freeReplyObject(r);
}

Test(queue, done_next_acks_and_reads_the_next_entry_in_one_call)
{
    char id2[64], owner[64];
    add_entry("CA1", "completed", "0", NULL);
    add_entry("CA2", "busy", "1", id2);
    stream_entry e, next;
    read_one("w1", &e);
    calllog_error err = {0};
    cr_assert_eq(queue_done_next(rc, &keys, &e, "w1", &next, &err), CALLLOG_OK, "%s", err.message);
    cr_assert_eq(xlen(keys.events), 1, "the finished entry is deleted");
    cr_assert_eq(pending(), 1, "only the next entry is pending");
    cr_assert_str_eq(next.id, id2);
    cr_assert_str_eq(next.call_sid, "CA2");
    cr_assert_str_eq(next.status, "busy");
    cr_assert_str_eq(next.event, EVENT_JSON);
    cr_assert_eq(next.attempt, 1);
    cr_assert_eq(next.deliveries, 1);
    pending_owner(id2, owner, sizeof owner);
    cr_assert_str_eq(owner, "w1", "the next entry is delivered to the consumer that asked");
    stream_entry_free(&e);

    cr_assert_eq(queue_done_next(rc, &keys, &next, "w1", &e, &err), CALLLOG_NOT_FOUND, "%s",
                 err.message);
    cr_assert_eq(xlen(keys.events), 0, "acknowledged although no entry followed");
    cr_assert_eq(pending(), 0);
    cr_assert_str_eq(e.id, "", "no next entry: `next` is empty");
    cr_assert_null(e.call_sid);
    stream_entry_free(&next);
}

Test(queue, done_next_without_consumer_reads_nothing)
{
    add_entry("CA1", "completed", "0", NULL);
    add_entry("CA2", "completed", "0", NULL);
    stream_entry e, next;
    read_one("w1", &e);
    calllog_error err = {0};
    cr_assert_eq(queue_done_next(rc, &keys, &e, NULL, &next, &err), CALLLOG_NOT_FOUND, "%s",
                 err.message);
    cr_assert_eq(pending(), 0, "the entry is acknowledged and none is read");
    cr_assert_eq(xlen(keys.events), 1, "the second entry is still new on the stream");
    cr_assert_str_eq(next.id, "");
    stream_entry_free(&e);
    read_one("w2", &e);
    cr_assert_str_eq(e.call_sid, "CA2", "another consumer reads it");
    stream_entry_free(&e);
}

Test(queue, done_next_without_group_fails_and_changes_nothing)
{
    add_entry("CA1", "completed", "0", NULL);
    stream_entry e = {.call_sid = "CA1"}, next;
    snprintf(e.id, sizeof e.id, "0-1");
    calllog_error err = {0};
    cr_assert_lt(queue_done_next(rc, &keys, &e, "w1", &next, &err), 0);
    cr_assert(strstr(err.message, "NOGROUP") != NULL, "%s", err.message);
    cr_assert_str_eq(next.id, "");
    cr_assert_eq(xlen(keys.events), 1);
}

Test(queue, reschedule_moves_to_retry_set_with_attempt_plus_one)
{
    add_entry("CA1", "busy", "1", NULL);
    stream_entry e;
    read_one("w1", &e);
    calllog_error err = {0};
    long long before = redis_now_ms();
    cr_assert_eq(queue_reschedule(rc, &keys, &e, 60000, &err), 0, "%s", err.message);
    long long after = redis_now_ms();
    cr_assert_eq(xlen(keys.events), 0, "entry deleted from the stream");
    cr_assert_eq(pending(), 0, "entry acknowledged");
    cr_assert_eq(zcard(keys.retry), 1, "exactly one retry member");

    redisReply *r = cmd("ZRANGE %s 0 -1 WITHSCORES", keys.retry);
    cr_assert_eq(r->elements, 2);
    long long due = atoll(r->element[1]->str);
    cr_assert(due >= before + 60000 && due <= after + 60000,
              "due %lld not in [%lld, %lld] (Redis clock + delay)", due, before + 60000,
              after + 60000);
    json_t *m = json_loads(r->element[0]->str, 0, NULL);
    cr_assert_not_null(m, "member is JSON: %s", r->element[0]->str);
    cr_assert_str_eq(json_string_value(json_object_get(m, "call_sid")), "CA1");
    cr_assert_str_eq(json_string_value(json_object_get(m, "status")), "busy");
    cr_assert_eq(json_integer_value(json_object_get(m, "attempt")), 2);
    cr_assert_str_eq(json_string_value(json_object_get(m, "request_id")), "req-CA1");
    cr_assert_str_eq(json_string_value(json_object_get(m, "received_at")),
                     "2026-11-24T20:00:00.123Z");
    cr_assert_str_eq(json_string_value(json_object_get(m, "event")), EVENT_JSON);
    json_decref(m);
    freeReplyObject(r);
    stream_entry_free(&e);
}

Test(queue, park_moves_to_retry_set_keeping_the_attempt)
{
    add_entry("CA1", "busy", "3", NULL);
    stream_entry e;
    read_one("w1", &e);
    calllog_error err = {0};
    cr_assert_eq(queue_park(rc, &keys, &e, 1000, &err), 0, "%s", err.message);
    cr_assert_eq(xlen(keys.events), 0);
    cr_assert_eq(pending(), 0);
    redisReply *r = cmd("ZRANGE %s 0 -1", keys.retry);
    cr_assert_eq(r->elements, 1);
    json_t *m = json_loads(r->element[0]->str, 0, NULL);
    cr_assert_eq(json_integer_value(json_object_get(m, "attempt")), 3, "a wait is no attempt");
    json_decref(m);
    freeReplyObject(r);
    stream_entry_free(&e);
}

/* Idle time (ms) of pending entry `id`, and its consumer into `who` (64 bytes). */
static long long idle_of(const char *id, char *who)
{
    redisReply *r = cmd("XPENDING %s %s %s %s 1", keys.events, KEYS_GROUP, id, id);
    cr_assert_eq(r->elements, 1);
    snprintf(who, 64, "%s", r->element[0]->element[1]->str);
    long long idle = r->element[0]->element[2]->integer;
    freeReplyObject(r);
    return idle;
}

Test(queue, touch_keeps_a_live_holders_entries_without_stealing)
{
    char mine[64], theirs[64], done[64], who[64];
    calllog_error err = {0};
    add_entry("CAm", "completed", "0", mine);
    add_entry("CAt", "completed", "0", theirs);
    add_entry("CAd", "completed", "0", done);
    stream_entry a, b, c;
    read_one("w1", &a);
    read_one("w2", &b);
    read_one("w1", &c);
    cr_assert_eq(queue_done(rc, &keys, &c, &err), 0, "%s", err.message);
    usleep(300 * 1000);
    const char *ids[] = {mine, theirs, done};
    cr_expect_eq(queue_touch(rc, &keys, "w1", ids, 3, &err), 1, "%s", err.message);
    cr_expect(idle_of(mine, who) < 200, "touched entry is fresh");
    cr_expect_str_eq(who, "w1");
    cr_expect(idle_of(theirs, who) >= 300, "another consumer's entry is left alone");
    cr_expect_str_eq(who, "w2", "never stolen");
    /* The delivery count does not grow: a touch is not a delivery. */
    char cursor[64] = "0-0";
    stream_entry again;
    cr_assert_eq(queue_reclaim(rc, &keys, "w3", 0, cursor, &again, &err), CALLLOG_OK);
    cr_expect_eq(again.deliveries, 2);
    cr_expect_eq(queue_touch(rc, &keys, "w1", ids, 0, &err), 0);
    stream_entry_free(&again);
    stream_entry_free(&a);
    stream_entry_free(&b);
    stream_entry_free(&c);
}

Test(queue, promote_moves_only_due_members)
{
    add_entry("CA-now", "completed", "0", NULL);
    add_entry("CA-later", "completed", "3", NULL);
    stream_entry a, b;
    calllog_error err = {0};
    read_one("w1", &a);
    read_one("w1", &b);
    cr_assert_str_eq(a.call_sid, "CA-now");
    cr_assert_eq(queue_reschedule(rc, &keys, &a, 0, &err), 0, "%s", err.message);
    cr_assert_eq(queue_reschedule(rc, &keys, &b, 3600000, &err), 0, "%s", err.message);
    cr_assert_eq(zcard(keys.retry), 2);
    cr_assert_eq(xlen(keys.events), 0);

    redisReply *r = cmd("ZRANGE %s 1 1 WITHSCORES", keys.retry);
    long long later_due = atoll(r->element[1]->str);
    freeReplyObject(r);

    long moved = -1;
    long long next = -2;
    long long before = redis_now_ms();
    cr_assert_eq(queue_promote(rc, &keys, 100, &moved, &next, &err), 0, "%s", err.message);
    long long after = redis_now_ms();
    cr_assert_eq(moved, 1);
    cr_assert(next >= later_due - after && next <= later_due - before,
              "next due in %lld ms, want within [%lld, %lld]", next, later_due - after,
              later_due - before);
    cr_assert_eq(zcard(keys.retry), 1, "the later one stays");
    cr_assert_eq(xlen(keys.events), 1);
    cr_assert_eq(xlen(keys.dead), 0);

    /* the promoted entry reads back with its incremented attempt */
    stream_entry p;
    read_one("w2", &p);
    cr_assert_str_eq(p.call_sid, "CA-now");
    cr_assert_eq(p.attempt, 1);
    cr_assert_str_eq(p.event, EVENT_JSON);
    cr_assert_str_eq(p.request_id, "req-CA-now");
    cr_assert_str_eq(p.received_at, "2026-11-24T20:00:00.123Z");
    cr_assert_str_eq(p.status, "completed");

    /* nothing more is due */
    cr_assert_eq(queue_promote(rc, &keys, 100, &moved, &next, &err), 0, "%s", err.message);
    cr_assert_eq(moved, 0);
    cr_assert(next > 0);
    stream_entry_free(&a);
    stream_entry_free(&b);
    stream_entry_free(&p);
}

Test(queue, promote_respects_limit_and_empty_set)
{
    long moved = -1;
    long long next = 0;
    calllog_error err = {0};
    cr_assert_eq(queue_promote(rc, &keys, 10, &moved, &next, &err), 0, "%s", err.message);
    cr_assert_eq(moved, 0);
    cr_assert_eq(next, -1, "empty retry set");

    for (int i = 0; i < 3; i++) {
        char member[256];
        snprintf(member, sizeof member,
                 "{\"call_sid\":\"CA%d\",\"status\":\"completed\",\"attempt\":1,\"event\":\"e\"}",
                 i);
        redisReply *r = cmd("ZADD %s 0 %s", keys.retry, member);
        freeReplyObject(r);
    }
    cr_assert_eq(queue_promote(rc, &keys, 2, &moved, &next, &err), 0, "%s", err.message);
    cr_assert_eq(moved, 2);
    cr_assert_eq(next, 0, "one more is already due");
    cr_assert_eq(queue_promote(rc, &keys, 2, &moved, &next, &err), 0, "%s", err.message);
    cr_assert_eq(moved, 1);
    cr_assert_eq(next, -1);
    cr_assert_eq(xlen(keys.events), 3);
}

Test(queue, promote_sends_malformed_members_to_dead)
{
    redisReply *r = cmd("ZADD %s 0 %s", keys.retry, "not json at all");
    freeReplyObject(r);
    r = cmd("ZADD %s 0 %s", keys.retry, "{\"call_sid\":\"CA7\"}"); /* no event */
    freeReplyObject(r);
    long moved = -1;
    long long next = 0;
    calllog_error err = {0};
    cr_assert_eq(queue_promote(rc, &keys, 10, &moved, &next, &err), 0, "%s", err.message);
    cr_assert_eq(moved, 2);
    cr_assert_eq(next, -1);
    cr_assert_eq(zcard(keys.retry), 0, "malformed members do not block the set");
    cr_assert_eq(xlen(keys.events), 0, "nothing malformed reaches the events stream");
    r = stream_entries(keys.dead, 2);
    int saw_text = 0;
    for (size_t i = 0; i < 2; i++) {
        const redisReply *f = r->element[i]->element[1];
        assert_field(f, "reason", "malformed_retry_member");
        assert_field(f, "http_status", "0");
        cr_assert_not_null(field(f, "error"));
        cr_assert_not_null(field(f, "failed_at"));
        saw_text |= strcmp(field(f, "event"), "not json at all") == 0;
    }
    cr_assert(saw_text, "the member's text is kept in the dead entry");
    freeReplyObject(r);
}

Test(queue, bury_writes_flat_fields_and_acks)
{
    char id[64];
    add_entry("CA9", "completed", "4", id);
    stream_entry e;
    read_one("w1", &e);
    dead_letter d = {"permanent_error", "RD Station answered 422: deal not found", 422, 5};
    calllog_error err = {0};
    cr_assert_eq(queue_bury(rc, &keys, &e, &d, &err), 0, "%s", err.message);
    cr_assert_eq(xlen(keys.events), 0);
    cr_assert_eq(pending(), 0);

    redisReply *r = stream_entries(keys.dead, 1);
    const redisReply *f = r->element[0]->element[1];
    assert_field(f, "call_sid", "CA9");
    assert_field(f, "status", "completed");
    assert_field(f, "reason", "permanent_error");
    assert_field(f, "error", "RD Station answered 422: deal not found");
    assert_field(f, "http_status", "422");
    assert_field(f, "attempts", "5");
    assert_field(f, "attempt", "4");
    assert_field(f, "request_id", "req-CA9");
    assert_field(f, "received_at", "2026-11-24T20:00:00.123Z");
    assert_field(f, "source_id", id);
    assert_field(f, "event", EVENT_JSON);
    const char *failed_at = field(f, "failed_at");
    cr_assert_not_null(failed_at);
    regex_t re;
    cr_assert_eq(regcomp(&re, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$",
                         REG_EXTENDED | REG_NOSUB),
                 0);
    cr_assert_eq(regexec(&re, failed_at, 0, NULL, 0), 0, "failed_at %s", failed_at);
    regfree(&re);
    freeReplyObject(r);
    stream_entry_free(&e);
}

Test(queue, bury_without_error_text)
{
    add_entry("CA9", "completed", "0", NULL);
    stream_entry e;
    read_one("w1", &e);
    dead_letter d = {"poison", NULL, 0, 1};
    calllog_error err = {0};
    cr_assert_eq(queue_bury(rc, &keys, &e, &d, &err), 0, "%s", err.message);
    redisReply *r = stream_entries(keys.dead, 1);
    assert_field(r->element[0]->element[1], "error", "");
    assert_field(r->element[0]->element[1], "http_status", "0");
    freeReplyObject(r);
    stream_entry_free(&e);
}

Test(queue, replay_dead_puts_the_entry_back_with_attempt_zero)
{
    add_entry("CA5", "no-answer", "3", NULL);
    stream_entry e;
    read_one("w1", &e);
    dead_letter d = {"attempts_exhausted", "HTTP 503", 503, 4};
    calllog_error err = {0};
    cr_assert_eq(queue_bury(rc, &keys, &e, &d, &err), 0, "%s", err.message);
    redisReply *r = stream_entries(keys.dead, 1);
    char dead_id[64];
    snprintf(dead_id, sizeof dead_id, "%s", r->element[0]->element[0]->str);
    freeReplyObject(r);

    cr_assert_eq(queue_replay_dead(rc, &keys, dead_id, &err), 0, "%s", err.message);
    cr_assert_eq(xlen(keys.dead), 0, "deleted from the dead stream");
    r = stream_entries(keys.events, 1);
    const redisReply *f = r->element[0]->element[1];
    assert_field(f, "call_sid", "CA5");
    assert_field(f, "status", "no-answer");
    assert_field(f, "attempt", "0");
    assert_field(f, "request_id", "req-CA5");
    assert_field(f, "received_at", "2026-11-24T20:00:00.123Z");
    assert_field(f, "event", EVENT_JSON);
    assert_field(f, "replayed_from", dead_id);
    freeReplyObject(r);

    stream_entry p;
    cr_assert_eq(queue_read(rc, &keys, "w1", 100, &p, &err), CALLLOG_OK, "%s", err.message);
    cr_assert_eq(p.attempt, 0);
    cr_assert_str_eq(p.call_sid, "CA5");
    stream_entry_free(&p);
    stream_entry_free(&e);
}

Test(queue, replay_dead_unknown_id)
{
    calllog_error err = {0};
    cr_assert_eq(queue_replay_dead(rc, &keys, "1-1", &err), 1);
    cr_assert_eq(xlen(keys.events), 0);
    cr_assert_eq(queue_replay_dead(rc, &keys, "not-an-id", &err), -1, "an invalid id is an error");
    cr_assert(err.message[0] != '\0');
}

Test(queue, replay_dead_twice_is_unknown_the_second_time)
{
    redisReply *r =
        cmd("XADD %s * call_sid CA3 status busy reason poison event %s", keys.dead, EVENT_JSON);
    char id[64];
    snprintf(id, sizeof id, "%s", r->str);
    freeReplyObject(r);
    calllog_error err = {0};
    cr_assert_eq(queue_replay_dead(rc, &keys, id, &err), 0, "%s", err.message);
    cr_assert_eq(queue_replay_dead(rc, &keys, id, &err), 1);
    cr_assert_eq(xlen(keys.events), 1, "replayed exactly once");
}

Test(queue, reclaim_takes_over_another_consumers_entry)
{
    char id[64];
    add_entry("CA8", "completed", "0", id);
    stream_entry a;
    read_one("dead-worker", &a);

    char cursor[64] = "0-0";

    calllog_error err = {0};
    stream_entry b;
    cr_assert_eq(queue_reclaim(rc, &keys, "live-worker", 0, cursor, &b, &err), CALLLOG_OK, "%s",
                 err.message);
    cr_assert_str_eq(b.id, id);
    cr_assert_str_eq(b.call_sid, "CA8");
    cr_assert_str_eq(b.event, EVENT_JSON);
    cr_assert_eq(b.deliveries, 2);

    redisReply *r = cmd("XPENDING %s %s - + 10", keys.events, KEYS_GROUP);
    cr_assert_eq(r->elements, 1);
    cr_assert_str_eq(r->element[0]->element[1]->str, "live-worker", "ownership moved");
    freeReplyObject(r);

    cr_assert_eq(queue_done(rc, &keys, &b, &err), 0, "%s", err.message);
    cr_assert_eq(pending(), 0);
    cr_assert_eq(xlen(keys.events), 0);
    stream_entry_free(&a);
    stream_entry_free(&b);
}

Test(queue, reclaim_respects_idle_time_and_empty_pel)
{
    char cursor[64] = "0-0";
    calllog_error err = {0};
    stream_entry e;
    cr_assert_eq(queue_ensure_group(rc, &keys, &err), 0, "%s", err.message);
    cr_assert_eq(queue_reclaim(rc, &keys, "w2", 0, cursor, &e, &err), CALLLOG_NOT_FOUND, "%s", err);
    add_entry("CA8", "completed", "0", NULL);
    read_one("w1", &e);
    stream_entry other;
    snprintf(cursor, sizeof cursor, "0-0");
    cr_assert_eq(queue_reclaim(rc, &keys, "w2", 3600000, cursor, &other, &err), CALLLOG_NOT_FOUND,
                 "an entry idle for less than the visibility timeout is not taken: %s", err);
    stream_entry_free(&e);
}

Test(queue, depths)
{
    queue_depths d = {-1, -1, -1, -1};
    cr_assert_eq(queue_depths_read(rc, &keys, &d), 0, "no keys at all");
    cr_assert_eq(d.events, 0);
    cr_assert_eq(d.pending, 0);
    cr_assert_eq(d.retry, 0);
    cr_assert_eq(d.dead, 0);

    for (int i = 0; i < 4; i++)
        add_entry("CA", "completed", "0", NULL);
    stream_entry a, b;
    read_one("w1", &a);
    read_one("w1", &b);
    calllog_error err = {0};
    cr_assert_eq(queue_reschedule(rc, &keys, &b, 60000, &err), 0, "%s", err.message);
    redisReply *r = cmd("XADD %s * call_sid CA reason poison", keys.dead);
    freeReplyObject(r);
    r = cmd("XADD %s * call_sid CB reason poison", keys.dead);
    freeReplyObject(r);

    cr_assert_eq(queue_depths_read(rc, &keys, &d), 0);
    cr_assert_eq(d.events, 3, "4 added, 1 rescheduled");
    cr_assert_eq(d.pending, 1);
    cr_assert_eq(d.retry, 1);
    cr_assert_eq(d.dead, 2);
    stream_entry_free(&a);
    stream_entry_free(&b);
}
