/* ratelimit — one RD Station request budget shared by every worker, kept in Redis.
 *
 * Two rules in one Lua script, both on Redis's clock (workers' clocks do not matter):
 * GCRA paces requests 60000 / limit ms apart on average, with up to `burst` of them at
 * once after a quiet spell; and a sliding window (a ZSET of the admissions of the last
 * 61 s: RD's minute plus a margin for the trip to RD) admits a request only while it holds
 * fewer than `limit`. So no 60-second window ever holds more than `limit` requests from
 * all workers together (design §3 Rate limit), and a backlog still gets the whole limit:
 * GCRA alone had to space requests 60000 / (limit - burst) apart to stay under it, which
 * left `burst / limit` of the budget unused (8 % at 120/min and burst 10; issue 11,
 * docs/performance.md "RD Station quota"). State: `key` (GCRA's theoretical arrival
 * time) and `key:window` (the ZSET), both expiring when idle. A worker out of budget
 * sleeps and asks again; it does not burn a retry attempt. */
#ifndef CALLLOG_RATELIMIT_H
#define CALLLOG_RATELIMIT_H

#include <hiredis/hiredis.h>

typedef struct ratelimit_policy {
    const char *key; /* keys.ratelimit (and key + ":window") */
    long per_minute; /* RDSTATION_RATE_LIMIT_PER_MINUTE */
    long burst;      /* RDSTATION_RATE_BURST, < per_minute */
} ratelimit_policy;

/* Asks for one request. Returns 0 and sets *wait_ms to 0 when allowed, or to how long
 * to wait before asking again; -1 on a Redis error. */
int ratelimit_try(redisContext *c, const ratelimit_policy *p, long *wait_ms);

/* Waits until one request is allowed. shutdown_requested() (shutdown.h) is polled
 * between waits: returns -1 once a stop is requested or on a Redis error, 0 when allowed. */
int ratelimit_acquire(redisContext *c, const ratelimit_policy *p);

/* Reads the limiter's state without taking a request (one read-only script). Writes how
 * many requests the budget allows right now (0 .. burst) and, when none, how long until
 * the next one (*wait_ms, else 0). Returns 0, or -1 on a Redis error. */
int ratelimit_peek(redisContext *c, const ratelimit_policy *p, long *available, long *wait_ms);

#endif
