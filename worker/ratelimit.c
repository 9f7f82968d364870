/* ratelimit — GCRA pacing plus a sliding-window count, shared through Redis (see ratelimit.h). */
#include "worker/ratelimit.h"

#include <stdio.h>

#include "common/log.h"
#include "common/redis_client.h"
#include "common/shutdown.h"
#include "common/timing.h"

/* The window the limit is counted over: RD's minute plus a margin for the spread between
 * a request being admitted here and reaching RD (connect, TLS; a lost SYN alone costs
 * 1 s), so that RD's own window never sees more than the limit. */
#define RATELIMIT_WINDOW_MS 61000.0

/* KEYS: the TAT key, the window key. ARGV: interval ms (T), tolerance ms (tau), limit,
 * window ms. The TAT key holds GCRA's theoretical arrival time in ms; the window key is a
 * ZSET of the admissions of the last window (score = admission time, member = the new
 * TAT, unique because it only grows). A request is admitted when GCRA allows it (no more
 * than `burst` at once) and the window holds fewer than `limit`. Returns 0 when allowed,
 * else the ms to wait. */
static const char lua_take[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000\n"
    "local T, tau = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
    "local limit, window = tonumber(ARGV[3]), tonumber(ARGV[4])\n"
    "local tat = tonumber(redis.call('GET', KEYS[1]) or now)\n"
    "if tat < now then tat = now end\n"
    "if tat - now > tau then return math.ceil(tat - now - tau) end\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)\n"
    "if redis.call('ZCARD', KEYS[2]) >= limit then\n"
    "  local oldest = tonumber(redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')[2])\n"
    "  return math.max(1, math.ceil(oldest + window - now))\n"
    "end\n"
    "local new_tat = tat + T\n"
    "redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX',\n"
    "  math.ceil(new_tat - now) + 1000)\n"
    "redis.call('ZADD', KEYS[2], now, string.format('%.3f', new_tat))\n"
    "redis.call('PEXPIRE', KEYS[2], math.ceil(window) + 1000)\n"
    "return 0\n";

/* The same state read without taking anything. Returns {available, wait ms}. */
static const char lua_peek[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000\n"
    "local T, tau = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
    "local limit, window = tonumber(ARGV[3]), tonumber(ARGV[4])\n"
    "local tat = tonumber(redis.call('GET', KEYS[1]) or now)\n"
    "local ahead = math.max(0, tat - now)\n"
    "if ahead > tau then return {0, math.ceil(ahead - tau)} end\n"
    "local avail = math.floor((tau - ahead) / T) + 1\n"
    "local used = redis.call('ZCOUNT', KEYS[2], '(' .. (now - window), '+inf')\n"
    "if used >= limit then\n"
    "  local first = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. (now - window), '+inf',\n"
    "    'WITHSCORES', 'LIMIT', 0, 1)\n"
    "  return {0, math.max(1, math.ceil(tonumber(first[2]) + window - now))}\n"
    "end\n"
    "return {math.min(avail, limit - used), 0}\n";

/* GCRA's emission interval T and tolerance tau (ms) for a policy: the full rate, with
 * `burst` requests at once; the window count keeps any minute under the limit. */
static void gcra_params(const ratelimit_policy *p, double *interval, double *tolerance)
{
    *interval = 60000.0 / (double)p->per_minute;
    *tolerance = *interval * (double)(p->burst - 1);
}

/* Runs `script` for policy `p`. Returns the reply (caller frees) or NULL, logged. */
static redisReply *run_script(redisContext *c, const ratelimit_policy *p, const char *script)
{
    double interval, tolerance;
    char t[32], tau[32], limit[32], window[32], wkey[256];
    gcra_params(p, &interval, &tolerance);
    snprintf(t, sizeof t, "%.3f", interval);
    snprintf(tau, sizeof tau, "%.3f", tolerance);
    snprintf(limit, sizeof limit, "%ld", p->per_minute);
    snprintf(window, sizeof window, "%.0f", RATELIMIT_WINDOW_MS);
    snprintf(wkey, sizeof wkey, "%s:window", p->key);
    const char *argv[] = {"EVAL", script, "2", p->key, wkey, t, tau, limit, window};
    redisReply *r = redisCommandArgv(c, 9, argv, NULL);
    calllog_error err;
    if (redis_reply_failed(c, r, &err)) {
        log_error("rate limiter unavailable", LF_S("error", err.message));
        if (r)
            freeReplyObject(r);
        return NULL;
    }
    return r;
}

int ratelimit_try(redisContext *c, const ratelimit_policy *p, long *wait_ms)
{
    redisReply *r = run_script(c, p, lua_take);
    if (!r)
        return -1;
    if (r->type != REDIS_REPLY_INTEGER) {
        log_error("rate limiter unavailable", LF_S("error", "unexpected reply"));
        freeReplyObject(r);
        return -1;
    }
    *wait_ms = (long)r->integer;
    freeReplyObject(r);
    return 0;
}

int ratelimit_acquire(redisContext *c, const ratelimit_policy *p)
{
    for (;;) {
        long wait_ms = 0;
        if (ratelimit_try(c, p, &wait_ms) != 0)
            return -1;
        if (wait_ms == 0)
            return 0;
        if (shutdown_requested())
            return -1;
        if (wait_ms > 1000)
            wait_ms = 1000; /* ask again at least every second to notice a stop */
        timing_sleep_ms(wait_ms);
    }
}

/* Reads the limiter's state; see the header. */
int ratelimit_peek(redisContext *c, const ratelimit_policy *p, long *available, long *wait_ms)
{
    redisReply *r = run_script(c, p, lua_peek);
    if (!r)
        return -1;
    int ok = r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
             r->element[0]->type == REDIS_REPLY_INTEGER &&
             r->element[1]->type == REDIS_REPLY_INTEGER;
    if (ok) {
        *available = (long)r->element[0]->integer;
        *wait_ms = (long)r->element[1]->integer;
    }
    freeReplyObject(r);
    return ok ? 0 : -1;
}
