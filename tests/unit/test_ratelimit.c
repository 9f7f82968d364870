/* test_ratelimit — worker/ratelimit (the GCRA limiter shared through Redis) on a real Redis.
 *
 * The server is the one at CALLLOG_TEST_REDIS_URL (tests/run.sh starts it through
 * tests/lib/services.sh); without it every test fails, saying so. Each test uses its own
 * limiter key and deletes it afterwards.
 *
 * The expectations come from the formula in ratelimit.h, not from wall-clock timing: with
 * L requests per minute and burst B the emission interval is T = 60000 / (L - B) ms and
 * the tolerance is (B - 1) T, so B requests pass at once and the next one must wait
 * T - elapsed, where elapsed is the time since the first request (measured on Redis's
 * clock, whose bounds enter the checked range). For L = 60, B = 5: T = 1090.9 ms. These
 * checks assume the handful of commands in one test take well under T (about a second). */
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
    redisReply *r = redisCommand(rc, "DEL %s %s:other", key, key);
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
    cr_assert_eq(ratelimit_try(c, p, &wait), 0, "ratelimit_try failed");
    cr_assert(wait >= 0);
    return wait;
}

Test(ratelimit, burst_then_wait_of_one_interval)
{
    ratelimit_policy p = {key, 60, 5};
    double interval = 60000.0 / (60 - 5); /* 1090.9 ms */
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

Test(ratelimit, state_is_one_key_with_an_expiry)
{
    ratelimit_policy p = {key, 60, 5};
    cr_assert_eq(try_once(rc, &p), 0);
    redisReply *r = redisCommand(rc, "PTTL %s", key);
    cr_assert(r && r->type == REDIS_REPLY_INTEGER);
    /* PX = ceil(new_tat - now) + 1000, i.e. about T + 1000 ms: it never outlives its use */
    cr_assert(r->integer > 0 && r->integer <= ceil_l(60000.0 / 55) + 1000, "PTTL %lld", r->integer);
    freeReplyObject(r);
}

Test(ratelimit, two_connections_share_one_budget)
{
    redisContext *other = redis_fixture_connect();
    ratelimit_policy p = {key, 60, 5};
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
    ratelimit_policy a = {key, 60, 2};
    ratelimit_policy b = {other_key, 60, 2};
    cr_assert_eq(try_once(rc, &a), 0);
    cr_assert_eq(try_once(rc, &a), 0);
    cr_assert(try_once(rc, &a) > 0);
    cr_assert_eq(try_once(rc, &b), 0, "another key is not affected");
    cr_assert_eq(try_once(rc, &b), 0);
}

Test(ratelimit, burst_of_one)
{
    ratelimit_policy p = {key, 120, 1};
    double interval = 60000.0 / 119;
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
    ratelimit_policy p = {key, 60, 3};
    shutdown_reset();
    cr_assert_eq(ratelimit_acquire(rc, &p), 0);
    cr_assert_eq(ratelimit_acquire(rc, &p), 0);
    cr_assert_eq(ratelimit_acquire(rc, &p), 0);
    shutdown_request(); /* out of budget and stopping: gives up instead of sleeping */
    cr_assert_eq(ratelimit_acquire(rc, &p), -1);
    shutdown_reset();
}

Test(ratelimit, redis_error_is_reported)
{
    redis_fixture_do(rc, "SET %s not-a-number", key);
    ratelimit_policy p = {key, 60, 5};
    long wait = 12345;
    cr_assert_eq(ratelimit_try(rc, &p, &wait), -1, "a corrupt limiter key is an error");
    redis_fixture_do(rc, "DEL %s", key);
    redis_fixture_do(rc, "HSET %s a b", key); /* wrong type */
    cr_assert_eq(ratelimit_try(rc, &p, &wait), -1);
}
