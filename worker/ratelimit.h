/* ratelimit — one RD Station request budget shared by every worker, kept in Redis.
 *
 * GCRA in a Lua script: requests are spaced 60000 / (limit - burst) ms apart on
 * average, with up to `burst` of them allowed at once after a quiet spell, so that no
 * 60-second window ever holds more than `limit` requests from all workers together
 * (design §3 Rate limit). Redis's clock is used, so workers' clocks do not matter. A
 * worker out of budget sleeps and asks again; it does not burn a retry attempt. */
#ifndef CALLLOG_RATELIMIT_H
#define CALLLOG_RATELIMIT_H

#include <hiredis/hiredis.h>

typedef struct ratelimit_policy {
    const char *key; /* keys.ratelimit */
    long per_minute; /* RDSTATION_RATE_LIMIT_PER_MINUTE */
    long burst;      /* RDSTATION_RATE_BURST, < per_minute */
} ratelimit_policy;

/* Asks for one request. Returns 0 and sets *wait_ms to 0 when allowed, or to how long
 * to wait before asking again; -1 on a Redis error. */
int ratelimit_try(redisContext *c, const ratelimit_policy *p, long *wait_ms);

/* Waits until one request is allowed. shutdown_requested() (shutdown.h) is polled
 * between waits: returns -1 once a stop is requested or on a Redis error, 0 when allowed. */
int ratelimit_acquire(redisContext *c, const ratelimit_policy *p);

/* Reads the limiter's state without taking a request (TIME, then GET: two commands, so
 * the answer may be a request or two stale while workers run). Writes how many requests
 * the budget allows right now (0 .. burst) and, when none, how long until the next one
 * (*wait_ms, else 0). Returns 0, or -1 on a Redis error. */
int ratelimit_peek(redisContext *c, const ratelimit_policy *p, long *available, long *wait_ms);

#endif
