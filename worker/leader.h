/* leader — one holder at a time of a named lease in Redis.
 *
 * Work that one worker of many should do (the reconciler's pass over Twilio's Calls list,
 * the phone index's sync) goes to whoever holds a lease: a string key holding the holder's
 * name with an expiry (SET NX PX), renewed by its holder while it works and taken over by
 * another worker within the lease time of the holder dying. Both scripts are single
 * round trips; the holder's name must be unique per process (the consumer name). */
#ifndef CALLLOG_LEADER_H
#define CALLLOG_LEADER_H

#include <hiredis/hiredis.h>

#include "common/error.h"

/* Takes the lease `key` for `me`, or renews it when `me` holds it, for `ttl_ms`.
 * Returns 2 when taken now, 1 when renewed, 0 when another holds it, -1 on a Redis error
 * (`err` filled). */
int leader_hold(redisContext *c, const char *key, const char *me, long ttl_ms, calllog_error *err);

/* Reads, in one round trip, the state hash `state_key` the lease holder keeps (HGETALL,
 * into `*state`: the caller frees it with freeReplyObject), the lease's holder ("" when
 * none) and its time left in ms. Returns 0, or -1 on a Redis error (`*state` NULL). */
int leader_state_read(redisContext *c, const char *key, const char *state_key, redisReply **state,
                      char *holder, size_t holderlen, long long *ttl_ms);

/* Gives the lease up when `me` holds it (errors are ignored: it expires anyway). */
void leader_release(redisContext *c, const char *key, const char *me);

#endif
