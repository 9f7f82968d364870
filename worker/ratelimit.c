/* ratelimit — GCRA limiter shared through Redis (see ratelimit.h). */
#include "worker/ratelimit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/log.h"
#include "common/redis_client.h"
#include "common/shutdown.h"
#include "common/timing.h"

/* KEYS: the limiter key. ARGV: interval ms (emission interval T), tolerance ms (tau).
 * The key holds the theoretical arrival time (TAT) in ms. Returns 0 when allowed,
 * else the ms to wait. */
static const char lua_gcra[] = "local t = redis.call('TIME')\n"
                               "local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000\n"
                               "local T, tau = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
                               "local tat = tonumber(redis.call('GET', KEYS[1]) or now)\n"
                               "if tat < now then tat = now end\n"
                               "if tat - now > tau then return math.ceil(tat - now - tau) end\n"
                               "local new_tat = tat + T\n"
                               "redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX',\n"
                               "  math.ceil(new_tat - now) + 1000)\n"
                               "return 0\n";

/* GCRA's emission interval T and tolerance tau (ms) for a policy. */
static void gcra_params(const ratelimit_policy *p, double *interval, double *tolerance)
{
    *interval = 60000.0 / (double)(p->per_minute - p->burst);
    *tolerance = *interval * (double)p->burst - *interval;
}

int ratelimit_try(redisContext *c, const ratelimit_policy *p, long *wait_ms)
{
    double interval, tolerance;
    char t[32], tau[32];
    gcra_params(p, &interval, &tolerance);
    snprintf(t, sizeof t, "%.3f", interval);
    snprintf(tau, sizeof tau, "%.3f", tolerance);
    const char *argv[] = {"EVAL", lua_gcra, "1", p->key, t, tau};
    redisReply *r = redisCommandArgv(c, 6, argv, NULL);
    calllog_error err;
    if (redis_reply_failed(c, r, &err) || r->type != REDIS_REPLY_INTEGER) {
        log_error("rate limiter unavailable", LF_S("error", err.message));
        if (r)
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

/* Reads the limiter's state; see the header. The same arithmetic as lua_gcra. */
int ratelimit_peek(redisContext *c, const ratelimit_policy *p, long *available, long *wait_ms)
{
    redisReply *t = redisCommand(c, "TIME");
    if (redis_reply_failed(c, t, NULL) || t->type != REDIS_REPLY_ARRAY || t->elements != 2) {
        if (t)
            freeReplyObject(t);
        return -1;
    }
    double now = atof(t->element[0]->str) * 1000.0 + atof(t->element[1]->str) / 1000.0;
    freeReplyObject(t);
    redisReply *g = redisCommand(c, "GET %s", p->key);
    if (redis_reply_failed(c, g, NULL) ||
        (g->type != REDIS_REPLY_STRING && g->type != REDIS_REPLY_NIL)) {
        if (g)
            freeReplyObject(g);
        return -1;
    }
    double tat = g->type == REDIS_REPLY_STRING ? atof(g->str) : now, interval, tolerance;
    freeReplyObject(g);
    gcra_params(p, &interval, &tolerance);
    double ahead = tat > now ? tat - now : 0.0;
    *available = ahead > tolerance ? 0 : (long)((tolerance - ahead) / interval) + 1;
    *wait_ms = ahead > tolerance ? (long)ceil(ahead - tolerance) : 0;
    return 0;
}
