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
 * sleeps and asks again; it does not burn a retry attempt.
 *
 * Priority lanes (issue 11): posting notes and tasks first, live contact/deal look-ups
 * second, the phone index's sync (phone_index.h) last. A note or look-up that has to wait
 * registers as a waiter of its lane (`key:waiting:note`, `key:waiting:lookup`: ZSETs of
 * waiter names scored by when the registration lapses, 1.5 s after the waiter's next ask,
 * so a killed worker blocks nobody); a request of a lower lane is refused while a higher
 * lane has a waiter, so the slot that opens goes to the note. The sync lane is also held
 * to `sync_max_share` percent of the limit per window (`key:sync`, a ZSET like the
 * window), so a burst of calls after a sync still finds at least the rest of the minute's
 * budget: no note waits for a sync request beyond that share, and while notes wait, the
 * sync gets nothing. */
#ifndef CALLLOG_RATELIMIT_H
#define CALLLOG_RATELIMIT_H

#include <hiredis/hiredis.h>

typedef struct ratelimit_policy {
    const char *key;     /* keys.ratelimit (and key + ":window") */
    long per_minute;     /* RDSTATION_RATE_LIMIT_PER_MINUTE */
    long burst;          /* RDSTATION_RATE_BURST, < per_minute */
    long sync_max_share; /* RDSTATION_SYNC_MAX_SHARE: percent of per_minute the sync lane may use */
} ratelimit_policy;

/* Who a request is for, most urgent first. */
typedef enum {
    RATELIMIT_NOTE = 0,   /* posting a note or task, marking a task done */
    RATELIMIT_LOOKUP = 1, /* a live contact/deal look-up or marker search for a call */
    RATELIMIT_SYNC = 2    /* the phone index's background sync */
} ratelimit_lane;

/* Asks for one request of `lane` on behalf of `who` (a name unique among the workers'
 * threads, e.g. "host-123/2"; NULL or "" for a caller that never waits, which then does
 * not register). Returns 0 and sets *wait_ms to 0 when allowed, or to how long to wait
 * before asking again; -1 on a Redis error. */
int ratelimit_try(redisContext *c, const ratelimit_policy *p, ratelimit_lane lane, const char *who,
                  long *wait_ms);

/* Waits until one request of `lane` is allowed, asking again at least every second (which
 * keeps the waiter registered). shutdown_requested() (shutdown.h) is polled between waits:
 * returns -1 once a stop is requested or on a Redis error, 0 when allowed. */
int ratelimit_acquire(redisContext *c, const ratelimit_policy *p, ratelimit_lane lane,
                      const char *who);

/* Reads the limiter's state without taking a request (one read-only script). Writes how
 * many requests the budget allows right now (0 .. burst) and, when none, how long until
 * the next one (*wait_ms, else 0). Returns 0, or -1 on a Redis error. */
int ratelimit_peek(redisContext *c, const ratelimit_policy *p, long *available, long *wait_ms);

#endif
