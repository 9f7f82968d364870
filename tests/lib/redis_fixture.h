/* redis_fixture — the real Redis that the Redis-backed unit suites share.
 *
 * The test command (tests/run.sh) starts a throwaway Redis and exports its URL as
 * CALLLOG_TEST_REDIS_URL. Without it these suites fail with a message saying how to get
 * one: they never pass by skipping. Each test works under a unique key name. Part of
 * calllog_testlib (tests/lib/); the functions fail the running criterion test on error. */
#ifndef CALLLOG_TEST_REDIS_FIXTURE_H
#define CALLLOG_TEST_REDIS_FIXTURE_H

#include <stddef.h>

#include "common/redis_client.h"

#define REDIS_FIXTURE_URL_ENV "CALLLOG_TEST_REDIS_URL"

/* Connects to the test Redis (failing the test when the variable is not set or the
 * server does not answer). The caller owns the context (redisFree). */
redisContext *redis_fixture_connect(void);

/* Runs a command (hiredis printf-style) whose reply the test does not need, e.g. to set
 * up a key; fails the test when there is no reply (connection lost, out of memory) or it
 * is an error. */
void redis_fixture_do(redisContext *c, const char *fmt, ...);

/* A key name (or prefix) no other test, run or process uses: calllog-unit:<suite>:<pid>:<ns>. */
void redis_fixture_name(char *out, size_t outlen, const char *suite);

#endif
