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

int leader_state_read(redisContext *c, const char *key, const char *state_key, redisReply **state,
                      char *holder, size_t holderlen, long long *ttl_ms)
{
    redisReply *r[3] = {NULL, NULL, NULL};
    int rc = 0;
    redisAppendCommand(c, "HGETALL %s", state_key);
    redisAppendCommand(c, "GET %s", key);
    redisAppendCommand(c, "PTTL %s", key);
    for (int i = 0; i < 3; i++)
        if (redisGetReply(c, (void **)&r[i]) != REDIS_OK || !r[i] ||
            r[i]->type == REDIS_REPLY_ERROR)
            rc = -1;
    holder[0] = '\0';
    *ttl_ms = 0;
    if (rc == 0) {
        if (r[1]->type == REDIS_REPLY_STRING)
            snprintf(holder, holderlen, "%s", r[1]->str);
        *ttl_ms = r[2]->type == REDIS_REPLY_INTEGER ? r[2]->integer : 0;
    }
    *state = rc == 0 ? r[0] : NULL;
    for (int i = rc == 0 ? 1 : 0; i < 3; i++)
        if (r[i])
            freeReplyObject(r[i]);
    return rc;
}

void leader_release(redisContext *c, const char *key, const char *me)
{
    calllog_error err;
    const char *args[] = {key, me};
    redisReply *r = redis_eval(c, lua_release, 1, 2, args, &err);
    if (r)
        freeReplyObject(r);
}
