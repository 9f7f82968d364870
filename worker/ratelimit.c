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
/* A waiter asks again at least this often (to notice a stop, and to stay registered). */
#define RATELIMIT_POLL_MAX_MS 1000
/* How long a lower lane waits when a higher one has a waiter and GCRA has room. */
#define RATELIMIT_YIELD_MS 20
#define RATELIMIT_STR2(x) #x
#define RATELIMIT_STR(x) RATELIMIT_STR2(x)

/* KEYS: the TAT key, the window key, the note and look-up waiter sets, the sync window.
 * ARGV: interval ms (T), tolerance ms (tau), limit, window ms, lane, who, sync maximum.
 * The TAT key holds GCRA's theoretical arrival time in ms; the window key is a ZSET of the
 * admissions of the last window (score = admission time, member = the new TAT, unique
 * because it only grows); the sync window the same for the sync lane's admissions. A
 * request is admitted when no higher lane has a waiter, GCRA allows it (no more than
 * `burst` at once), the window holds fewer than `limit` and, for the sync lane, the sync
 * window fewer than the sync maximum. A refused note or look-up registers `who` as a
 * waiter of its lane until just after it will ask again (so a dead waiter blocks nobody
 * for long); an admitted one leaves. Returns 0 when allowed, else the ms to wait. */
static const char lua_take[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000\n"
    "local T, tau = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
    "local limit, window = tonumber(ARGV[3]), tonumber(ARGV[4])\n"
    "local lane, who, sync_max = tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7])\n"
    "local waiters = {KEYS[3], KEYS[4]}\n"
    "local function defer(ms)\n"
    "  ms = math.max(1, math.ceil(ms))\n"
    "  if who ~= '' and lane < 2 then\n"
    "    local until_ms = now + math.min(ms, " RATELIMIT_STR(
        RATELIMIT_POLL_MAX_MS) ") + 500\n"
                               "    redis.call('ZADD', waiters[lane + 1], until_ms, who)\n"
                               "    redis.call('PEXPIRE', waiters[lane + 1], math.ceil(until_ms - "
                               "now) + 1000)\n"
                               "  end\n"
                               "  return ms\n"
                               "end\n"
                               "local tat = tonumber(redis.call('GET', KEYS[1]) or now)\n"
                               "if tat < now then tat = now end\n"
                               "for l = 1, lane do\n"
                               "  redis.call('ZREMRANGEBYSCORE', waiters[l], '-inf', now)\n"
                               "  if redis.call('ZCARD', waiters[l]) > 0 then\n"
                               "    return defer(math.max(" RATELIMIT_STR(
                                   RATELIMIT_YIELD_MS) ", tat - now - tau))\n"
                                                       "  end\n"
                                                       "end\n"
                                                       "if tat - now > tau then return defer(tat - "
                                                       "now - tau) end\n"
                                                       "redis.call('ZREMRANGEBYSCORE', KEYS[2], "
                                                       "'-inf', now - window)\n"
                                                       "if redis.call('ZCARD', KEYS[2]) >= limit "
                                                       "then\n"
                                                       "  local oldest = "
                                                       "tonumber(redis.call('ZRANGE', KEYS[2], 0, "
                                                       "0, 'WITHSCORES')[2])\n"
                                                       "  return defer(oldest + window - now)\n"
                                                       "end\n"
                                                       "local new_tat = tat + T\n"
                                                       "local member = string.format('%.3f', "
                                                       "new_tat)\n"
                                                       "if lane == 2 then\n"
                                                       "  redis.call('ZREMRANGEBYSCORE', KEYS[5], "
                                                       "'-inf', now - window)\n"
                                                       "  if redis.call('ZCARD', KEYS[5]) >= "
                                                       "sync_max then\n"
                                                       "    local first = redis.call('ZRANGE', "
                                                       "KEYS[5], 0, 0, 'WITHSCORES')[2]\n"
                                                       "    return math.max(1, "
                                                       "math.ceil((tonumber(first) or now) + "
                                                       "window - now))\n"
                                                       "  end\n"
                                                       "  redis.call('ZADD', KEYS[5], now, "
                                                       "member)\n"
                                                       "  redis.call('PEXPIRE', KEYS[5], "
                                                       "math.ceil(window) + 1000)\n"
                                                       "elseif who ~= '' then\n"
                                                       "  redis.call('ZREM', waiters[lane + 1], "
                                                       "who)\n"
                                                       "end\n"
                                                       "redis.call('SET', KEYS[1], member, 'PX', "
                                                       "math.ceil(new_tat - now) + 1000)\n"
                                                       "redis.call('ZADD', KEYS[2], now, member)\n"
                                                       "redis.call('PEXPIRE', KEYS[2], "
                                                       "math.ceil(window) + 1000)\n"
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

/* The most sync admissions a window may hold: RDSTATION_SYNC_MAX_SHARE of the limit. */
static long sync_max(const ratelimit_policy *p)
{
    long share = p->sync_max_share < 0 ? 0 : p->sync_max_share > 100 ? 100 : p->sync_max_share;
    return p->per_minute * share / 100;
}

/* Runs `script` for policy `p` with the keys and arguments every script reads, then
 * `lane` and `who` (lua_take only; lane < 0 for the others). Returns the reply (caller
 * frees) or NULL, logged. */
static redisReply *run_script(redisContext *c, const ratelimit_policy *p, const char *script,
                              int lane, const char *who)
{
    double interval, tolerance;
    char t[32], tau[32], limit[32], window[32], ln[8], smax[32];
    char wkey[256], note_key[256], lookup_key[256], sync_key[256];
    gcra_params(p, &interval, &tolerance);
    snprintf(t, sizeof t, "%.3f", interval);
    snprintf(tau, sizeof tau, "%.3f", tolerance);
    snprintf(limit, sizeof limit, "%ld", p->per_minute);
    snprintf(window, sizeof window, "%.0f", RATELIMIT_WINDOW_MS);
    snprintf(ln, sizeof ln, "%d", lane);
    snprintf(smax, sizeof smax, "%ld", sync_max(p));
    snprintf(wkey, sizeof wkey, "%s:window", p->key);
    snprintf(note_key, sizeof note_key, "%s:waiting:note", p->key);
    snprintf(lookup_key, sizeof lookup_key, "%s:waiting:lookup", p->key);
    snprintf(sync_key, sizeof sync_key, "%s:sync", p->key);
    const char *argv[] = {"EVAL", script, "5",   p->key, wkey, note_key,       lookup_key, sync_key,
                          t,      tau,    limit, window, ln,   who ? who : "", smax};
    const char *peek_argv[] = {"EVAL", script, "2", p->key, wkey, t, tau, limit, window};
    redisReply *r =
        lane < 0 ? redisCommandArgv(c, 9, peek_argv, NULL) : redisCommandArgv(c, 15, argv, NULL);
    calllog_error err;
    if (redis_reply_failed(c, r, &err)) {
        log_error("rate limiter unavailable", LF_S("error", err.message));
        if (r)
            freeReplyObject(r);
        return NULL;
    }
    return r;
}

int ratelimit_try(redisContext *c, const ratelimit_policy *p, ratelimit_lane lane, const char *who,
                  long *wait_ms)
{
    redisReply *r = run_script(c, p, lua_take, (int)lane, who);
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

int ratelimit_acquire(redisContext *c, const ratelimit_policy *p, ratelimit_lane lane,
                      const char *who)
{
    for (;;) {
        long wait_ms = 0;
        if (ratelimit_try(c, p, lane, who, &wait_ms) != 0)
            return -1;
        if (wait_ms == 0)
            return 0;
        if (shutdown_requested())
            return -1;
        if (wait_ms > RATELIMIT_POLL_MAX_MS)
            wait_ms = RATELIMIT_POLL_MAX_MS; /* notice a stop; stay registered as a waiter */
        timing_sleep_ms(wait_ms);
    }
}

/* Reads the limiter's state; see the header. */
int ratelimit_peek(redisContext *c, const ratelimit_policy *p, long *available, long *wait_ms)
{
    redisReply *r = run_script(c, p, lua_peek, -1, NULL);
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
