/* redis_fixture — the real Redis that the Redis-backed unit suites share.
 *
 * The test command (tests/run.sh) starts a throwaway Redis and exports its URL as
 * CALLLOG_TEST_REDIS_URL. Without it these suites fail with a message saying how to get
 * one: they never pass by skipping. Each test works under a unique key name. */
#ifndef CALLLOG_TEST_REDIS_FIXTURE_H
#define CALLLOG_TEST_REDIS_FIXTURE_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "redis_client.h"

#define REDIS_FIXTURE_URL_ENV "CALLLOG_TEST_REDIS_URL"

/* Connects to the test Redis (failing the test when the variable is not set). */
static inline redisContext *redis_fixture_connect(void)
{
    const char *u = getenv(REDIS_FIXTURE_URL_ENV);
    cr_assert(u && u[0], REDIS_FIXTURE_URL_ENV
              " is not set: these tests need a real Redis. Run `bash tests/run.sh`, or "
              "`. tests/lib/services.sh && services_start` and run them again.");
    redis_target t;
    calllog_error err = {0};
    cr_assert_eq(redis_url_parse(u, &t, &err), 0, "%s: %s", REDIS_FIXTURE_URL_ENV, err.message);
    redisContext *c = redis_open(&t, 5000, &err);
    cr_assert_not_null(c, "cannot connect to the test Redis: %s", err.message);
    return c;
}

/* A key name (or prefix) no other test, run or process uses: calllog-unit:<suite>:<pid>:<ns>. */
static inline void redis_fixture_name(char *out, size_t outlen, const char *suite)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(out, outlen, "calllog-unit:%s:%d:%lld%09ld", suite, (int)getpid(),
             (long long)ts.tv_sec, ts.tv_nsec);
}

#endif
