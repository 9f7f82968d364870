/* test_ratelimit — worker/ratelimit (GCRA pacing + a sliding-window count, shared through
 * Redis) on a real Redis.
 *
 * The server is the one at CALLLOG_TEST_REDIS_URL (tests/run.sh starts it through
 * tests/lib/services.sh); without it every test fails, saying so. Each test uses its own
 * limiter key and deletes it afterwards.
 *
 * The expectations come from the formula in ratelimit.h, not from wall-clock timing: with
 * L requests per minute and burst B the emission interval is T = 60000 / L ms and the
 * tolerance is (B - 1) T, so B requests pass at once and the next one must wait
 * T - elapsed, where elapsed is the time since the first request (measured on Redis's
 * clock, whose bounds enter the checked range). For L = 60, B = 5: T = 1000 ms. The
 * window rule (at most L admissions in the last 61 s) is tested by writing admissions
 * into the window ZSET directly, at chosen scores, instead of waiting for them. These
 * checks assume the handful of commands in one test take well under T (about a second).
 * The lanes are tested the same way: a waiter is registered by a refused request, and
 * the lower lane's answer is read while it is there. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/redis_client.h"
#include "common/shutdown.h"
#include "tests/lib/redis_fixture.h"
#include "worker/ratelimit.h"

static redisContext *rc;
static char key[128];

/* A unique limiter key for this test. */
static void setup(void)
{
    redis_fixture_name(key, sizeof key, "ratelimit");
    rc = redis_fixture_connect();
}

/* Deletes the key(s) this test used. */
static void teardown(void)
{
    if (!rc)
        return;
    redisReply *r = redisCommand(rc,
                                 "DEL %s %s:window %s:other %s:other:window %s:waiting:note "
                                 "%s:waiting:lookup %s:sync",
                                 key, key, key, key, key, key, key);
    if (r)
        freeReplyObject(r);
    redisFree(rc);
    rc = NULL;
}

TestSuite(ratelimit, .init = setup, .fini = teardown, .timeout = 30);

/* Ceiling and floor of a double (the tests link no libm). */
static long ceil_l(double x)
{
    long n = (long)x;
    return (double)n < x ? n + 1 : n;
}

static long floor_l(double x)
{
    long n = (long)x;
    return (double)n > x ? n - 1 : n;
}

/* Redis's clock in epoch ms (with microseconds as the fraction). */
static double redis_now_ms(redisContext *c)
{
    redisReply *r = redisCommand(c, "TIME");
    cr_assert(r && r->type == REDIS_REPLY_ARRAY && r->elements == 2);
    double ms = atof(r->element[0]->str) * 1000.0 + atof(r->element[1]->str) / 1000.0;
    freeReplyObject(r);
    return ms;
}

/* One ratelimit_try; asserts it worked and returns the wait. */
static long try_once(redisContext *c, const ratelimit_policy *p)
{
    long wait = -1;
    cr_assert_eq(ratelimit_try(c, p, RATELIMIT_NOTE, NULL, &wait), 0, "ratelimit_try failed");
    cr_assert(wait >= 0);
    return wait;
}

Test(ratelimit, burst_then_wait_of_one_interval)
{
    ratelimit_policy p = {key, 60, 5, 0};
    double interval = 60000.0 / 60; /* the full rate: not 60000 / (60 - 5) */
    double t0 = redis_now_ms(rc);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(try_once(rc, &p), 0, "request %d of the burst was refused", i + 1);
    long wait = try_once(rc, &p);
    double t1 = redis_now_ms(rc);
    /* wait = ceil(T - elapsed) with 0 <= elapsed <= t1 - t0 */
    long hi = ceil_l(interval);
    long lo = floor_l(interval - (t1 - t0));
    cr_assert(wait > 0, "the 6th immediate request must wait");
    cr_assert(wait >= lo && wait <= hi,
              "wait %ld ms outside [%ld, %ld] (T = %.1f, elapsed <= %.1f)", wait, lo, hi, interval,
              t1 - t0);
    /* a refused request does not consume budget: asking again gives (about) the same wait */
    long again = try_once(rc, &p);
    double t2 = redis_now_ms(rc);
    cr_assert(again > 0 && again <= wait && again >= wait - ceil_l(t2 - t1) - 1,
              "second refusal waits %ld after %ld", again, wait);
}

/* Runs a command that answers an integer and returns it. */
static long long int_reply(redisReply *r)
{
    cr_assert(r && r->type == REDIS_REPLY_INTEGER);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

/* Writes `n` admissions into the window ZSET of `k`, `age_ms` before Redis's `now`. */
static void fill_window(const char *k, double now, double age_ms, int n)
{
    for (int i = 0; i < n; i++) {
        redisReply *r = redisCommand(rc, "ZADD %s:window %.3f fill-%d", k, now - age_ms, i);
        cr_assert(r && r->type == REDIS_REPLY_INTEGER);
        freeReplyObject(r);
    }
}

Test(ratelimit, state_is_two_keys_with_expiries)
{
    ratelimit_policy p = {key, 60, 5, 0};
    cr_assert_eq(try_once(rc, &p), 0);
    /* TAT: PX = ceil(new_tat - now) + 1000, i.e. about T + 1000 ms */
    long long pttl = int_reply(redisCommand(rc, "PTTL %s", key));
    cr_assert(pttl > 0 && pttl <= ceil_l(60000.0 / 60) + 1000, "PTTL %lld", pttl);
    /* window: one admission, kept for the 61 s window + 1 s: it never outlives its use */
    cr_assert_eq(int_reply(redisCommand(rc, "ZCARD %s:window", key)), 1);
    pttl = int_reply(redisCommand(rc, "PTTL %s:window", key));
    cr_assert(pttl > 0 && pttl <= 62000, "window PTTL %lld", pttl);
}

Test(ratelimit, a_full_window_refuses_what_gcra_would_allow)
{
    /* L = 6, B = 3: GCRA alone would let 3 through now. Five admissions 1 s ago (other
     * workers, say) leave room for one; the next waits until the oldest is 61 s old. */
    ratelimit_policy p = {key, 6, 3, 0};
    double t0 = redis_now_ms(rc);
    fill_window(key, t0, 1000, 5);
    cr_assert_eq(try_once(rc, &p), 0, "the window holds 5 of 6: one more fits");
    long wait = try_once(rc, &p);
    double t1 = redis_now_ms(rc);
    /* wait = ceil(oldest + 61000 - now), oldest = t0 - 1000, t0 <= now <= t1 */
    cr_assert(wait >= floor_l(60000 - (t1 - t0)) && wait <= 60001,
              "wait %ld ms, expected about 60000 (elapsed <= %.1f)", wait, t1 - t0);
}

Test(ratelimit, admissions_older_than_the_window_leave_it)
{
    ratelimit_policy p = {key, 6, 3, 0};
    fill_window(key, redis_now_ms(rc), 61001, 6); /* a full window, just expired */
    cr_assert_eq(try_once(rc, &p), 0);
    cr_assert_eq(int_reply(redisCommand(rc, "ZCARD %s:window", key)), 1,
                 "the expired admissions are removed, the new one is kept");
}

Test(ratelimit, a_backlog_gets_the_whole_limit)
{
    /* L = 6, B = 3 over one window: 3 at once, then one every T = 10 s, until the window
     * holds 6. After the burst a request waits at most T, never 60000 / (L - B) = 20 s:
     * GCRA alone had to pace at L - B a minute to keep the window under L. */
    ratelimit_policy p = {key, 6, 3, 0};
    int admitted = 0;
    for (int i = 0; i < 3; i++)
        admitted += try_once(rc, &p) == 0;
    cr_assert_eq(admitted, 3);
    long wait = try_once(rc, &p);
    cr_assert(wait > 0 && wait <= 10000, "after the burst the next request waits %ld ms", wait);
    /* Three more requests, each as if T had passed (GCRA's state dropped instead of
     * sleeping): all six stay inside the 61 s window, which then refuses the seventh. */
    for (int i = 0; i < 3; i++) {
        freeReplyObject(redisCommand(rc, "DEL %s", key));
        cr_assert_eq(try_once(rc, &p), 0, "request %d of the minute was refused", 4 + i);
    }
    freeReplyObject(redisCommand(rc, "DEL %s", key));
    cr_assert_eq(int_reply(redisCommand(rc, "ZCARD %s:window", key)), 6);
    cr_assert(try_once(rc, &p) > 0, "the 7th request of the window waits");
}

Test(ratelimit, peek_counts_gcra_and_window)
{
    ratelimit_policy p = {key, 60, 5, 0};
    long available = -1, wait = -1;
    cr_assert_eq(ratelimit_peek(rc, &p, &available, &wait), 0);
    cr_assert(available == 5 && wait == 0, "idle: %ld available, wait %ld", available, wait);
    cr_assert_eq(try_once(rc, &p), 0);
    cr_assert_eq(try_once(rc, &p), 0);
    cr_assert_eq(ratelimit_peek(rc, &p, &available, &wait), 0);
    cr_assert(available == 3 && wait == 0, "after 2: %ld available, wait %ld", available, wait);
    fill_window(key, redis_now_ms(rc), 1000, 58); /* 60 in the window: full */
    cr_assert_eq(ratelimit_peek(rc, &p, &available, &wait), 0);
    cr_assert(available == 0 && wait > 59000 && wait <= 60001, "full: %ld available, wait %ld",
              available, wait);
    cr_assert_eq(int_reply(redisCommand(rc, "ZCARD %s:window", key)), 60, "peek takes nothing");
}

Test(ratelimit, two_connections_share_one_budget)
{
    redisContext *other = redis_fixture_connect();
    ratelimit_policy p = {key, 60, 5, 0};
    cr_assert_eq(try_once(rc, &p), 0);
    cr_assert_eq(try_once(other, &p), 0);
    cr_assert_eq(try_once(rc, &p), 0);
    cr_assert_eq(try_once(other, &p), 0);
    cr_assert_eq(try_once(other, &p), 0);
    cr_assert(try_once(rc, &p) > 0, "5 allowed across both connections: the 6th waits");
    cr_assert(try_once(other, &p) > 0);
    redisFree(other);
}

Test(ratelimit, separate_keys_have_separate_budgets)
{
    char other_key[160];
    snprintf(other_key, sizeof other_key, "%s:other", key);
    ratelimit_policy a = {key, 60, 2, 0};
    ratelimit_policy b = {other_key, 60, 2, 0};
    cr_assert_eq(try_once(rc, &a), 0);
    cr_assert_eq(try_once(rc, &a), 0);
    cr_assert(try_once(rc, &a) > 0);
    cr_assert_eq(try_once(rc, &b), 0, "another key is not affected");
    cr_assert_eq(try_once(rc, &b), 0);
}

Test(ratelimit, burst_of_one)
{
    ratelimit_policy p = {key, 120, 1, 0};
    double interval = 60000.0 / 120;
    double t0 = redis_now_ms(rc);
    cr_assert_eq(try_once(rc, &p), 0);
    long wait = try_once(rc, &p);
    double t1 = redis_now_ms(rc);
    cr_assert(wait > 0);
    cr_assert(wait >= floor_l(interval - (t1 - t0)) && wait <= ceil_l(interval),
              "wait %ld, T = %.1f", wait, interval);
}

Test(ratelimit, acquire_returns_at_once_with_budget_and_stops_when_asked)
{
    ratelimit_policy p = {key, 60, 3, 0};
    shutdown_reset();
    cr_assert_eq(ratelimit_acquire(rc, &p, RATELIMIT_NOTE, NULL), 0);
    cr_assert_eq(ratelimit_acquire(rc, &p, RATELIMIT_NOTE, NULL), 0);
    cr_assert_eq(ratelimit_acquire(rc, &p, RATELIMIT_NOTE, NULL), 0);
    shutdown_request(); /* out of budget and stopping: gives up instead of sleeping */
    cr_assert_eq(ratelimit_acquire(rc, &p, RATELIMIT_NOTE, NULL), -1);
    shutdown_reset();
}

Test(ratelimit, redis_error_is_reported)
{
    redis_fixture_do(rc, "SET %s not-a-number", key);
    ratelimit_policy p = {key, 60, 5, 0};
    long wait = 12345;
    cr_assert_eq(ratelimit_try(rc, &p, RATELIMIT_NOTE, NULL, &wait), -1,
                 "a corrupt limiter key is an error");
    redis_fixture_do(rc, "DEL %s", key);
    redis_fixture_do(rc, "HSET %s a b", key); /* wrong type */
    cr_assert_eq(ratelimit_try(rc, &p, RATELIMIT_NOTE, NULL, &wait), -1);
}

/* One ratelimit_try of `lane` for `who`; asserts it worked and returns the wait. */
static long try_lane(const ratelimit_policy *p, ratelimit_lane lane, const char *who)
{
    long wait = -1;
    cr_assert_eq(ratelimit_try(rc, p, lane, who, &wait), 0, "ratelimit_try failed");
    cr_assert(wait >= 0);
    return wait;
}

Test(ratelimit, a_waiting_note_keeps_the_next_slot_from_lookups_and_sync)
{
    ratelimit_policy p = {key, 60, 2, 50};
    cr_assert_eq(try_lane(&p, RATELIMIT_NOTE, "w/0"), 0);
    cr_assert_eq(try_lane(&p, RATELIMIT_NOTE, "w/0"), 0);
    long note_wait = try_lane(&p, RATELIMIT_NOTE, "w/1"); /* out of budget: w/1 now waits */
    cr_assert(note_wait > 0);
    cr_assert_eq(int_reply(redisCommand(rc, "ZCARD %s:waiting:note", key)), 1);
    /* while w/1 waits, lower lanes are refused even once GCRA has room again */
    redis_fixture_do(rc, "DEL %s", key); /* GCRA empty: only the waiter stands in the way */
    cr_assert(try_lane(&p, RATELIMIT_LOOKUP, "w/2") > 0, "a look-up took a waiting note's slot");
    cr_assert(try_lane(&p, RATELIMIT_SYNC, "sync") > 0, "the sync took a waiting note's slot");
    cr_assert_eq(int_reply(redisCommand(rc, "ZCARD %s:window", key)), 2,
                 "a refused lower lane consumed budget");
    /* the note asks again and is admitted; it leaves the waiters; the look-up goes next */
    cr_assert_eq(try_lane(&p, RATELIMIT_NOTE, "w/1"), 0);
    cr_assert_eq(int_reply(redisCommand(rc, "ZCARD %s:waiting:note", key)), 0);
    cr_assert_eq(try_lane(&p, RATELIMIT_LOOKUP, "w/2"), 0);
}

Test(ratelimit, a_waiting_lookup_keeps_the_slot_from_the_sync_but_not_from_a_note)
{
    ratelimit_policy p = {key, 60, 1, 50};
    cr_assert_eq(try_lane(&p, RATELIMIT_LOOKUP, "w/0"), 0);
    cr_assert(try_lane(&p, RATELIMIT_LOOKUP, "w/1") > 0);
    redis_fixture_do(rc, "DEL %s", key);
    cr_assert(try_lane(&p, RATELIMIT_SYNC, "sync") > 0, "the sync took a waiting look-up's slot");
    cr_assert_eq(try_lane(&p, RATELIMIT_NOTE, "w/2"), 0, "a note must not wait for a look-up");
}

Test(ratelimit, a_dead_waiter_blocks_nobody_once_its_registration_lapses)
{
    ratelimit_policy p = {key, 60, 5, 50};
    double now = redis_now_ms(rc);
    /* a waiter that stopped asking: its registration lapsed 10 ms ago */
    redis_fixture_do(rc, "ZADD %s:waiting:note %.3f dead/0", key, now - 10);
    cr_assert_eq(try_lane(&p, RATELIMIT_LOOKUP, "w/0"), 0);
    cr_assert_eq(int_reply(redisCommand(rc, "ZCARD %s:waiting:note", key)), 0);
}

Test(ratelimit, the_sync_lane_is_held_to_its_share_of_the_window)
{
    ratelimit_policy p = {key, 60, 60, 10}; /* 10 % of 60: 6 sync requests per window */
    for (int i = 0; i < 6; i++)
        cr_assert_eq(try_lane(&p, RATELIMIT_SYNC, "sync"), 0, "sync request %d refused", i + 1);
    long wait = try_lane(&p, RATELIMIT_SYNC, "sync");
    cr_assert(wait > 55000, "the 7th sync request must wait for the window, waited %ld", wait);
    cr_assert_eq(try_lane(&p, RATELIMIT_NOTE, "w/0"), 0, "notes keep the rest of the limit");
    cr_assert_eq(int_reply(redisCommand(rc, "ZCARD %s:sync", key)), 6);
    cr_assert_eq(int_reply(redisCommand(rc, "ZCARD %s:window", key)), 7);
}
