/* leader — a lease in Redis held by one worker at a time (see leader.h). */
#include "worker/leader.h"

#include <stdio.h>

#include "common/redis_client.h"

/* KEYS: lease. ARGV: me, ttl_ms. Returns 2 when taken now, 1 when renewed, 0 when held
 * by another. */
static const char lua_hold[] = "local v = redis.call('GET', KEYS[1])\n"
                               "if v == ARGV[1] then\n"
                               "  redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1\n"
                               "end\n"
                               "if not v then\n"
                               "  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 2\n"
                               "end\n"
                               "return 0\n";

/* KEYS: lease. ARGV: me. Gives the lease up when held. */
static const char lua_release[] = "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
                                  "  redis.call('DEL', KEYS[1])\n"
                                  "end\n"
                                  "return 1\n";

int leader_hold(redisContext *c, const char *key, const char *me, long ttl_ms, calllog_error *err)
{
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%ld", ttl_ms);
    const char *args[] = {key, me, ttl};
    redisReply *r = redis_eval(c, lua_hold, 1, 3, args, err);
    if (!r)
        return -1;
    int role = r->type == REDIS_REPLY_INTEGER ? (int)r->integer : -1;
    if (role < 0)
        error_set(err, CALLLOG_TRANSIENT, "unexpected lease script answer");
    freeReplyObject(r);
    return role;
}

void leader_release(redisContext *c, const char *key, const char *me)
{
    calllog_error err;
    const char *args[] = {key, me};
    redisReply *r = redis_eval(c, lua_release, 1, 2, args, &err);
    if (r)
        freeReplyObject(r);
}
