/* queue — events stream, retry set and dead stream operations (see queue.h). */
#include "worker/queue.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/redis_client.h"
#include "common/timing.h"

/* Short names for the entry's fields (stream_entry.h), which the scripts below spell. */
#define SE_CALL_SID STREAM_ENTRY_CALL_SID
#define SE_STATUS STREAM_ENTRY_STATUS
#define SE_ATTEMPT STREAM_ENTRY_ATTEMPT
#define SE_REQUEST_ID STREAM_ENTRY_REQUEST_ID
#define SE_RECEIVED_AT STREAM_ENTRY_RECEIVED_AT
#define SE_EVENT STREAM_ENTRY_EVENT

/* KEYS: events. ARGV: group, id. */
static const char lua_done[] = "redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])\n"
                               "redis.call('XDEL', KEYS[1], ARGV[2])\n"
                               "return 1\n";

/* KEYS: events. ARGV: group, id, consumer. Acknowledges like lua_done, then reads the next
 * new entry for `consumer` (XREADGROUP without BLOCK, which scripts may not use). Returns
 * the XREADGROUP reply, or 1 when the stream has no new entry. */
static const char lua_done_next[] =
    "redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])\n"
    "redis.call('XDEL', KEYS[1], ARGV[2])\n"
    "local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[3], 'COUNT', '1',\n"
    "                     'STREAMS', KEYS[1], '>')\n"
    "if r then return r end\n"
    "return 1\n";

/* KEYS: events, retry. ARGV: group, id, delay_ms, member. Returns the due time. */
static const char lua_reschedule[] =
    "local t = redis.call('TIME')\n"
    "local due = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[3])\n"
    "redis.call('ZADD', KEYS[2], due, ARGV[4])\n"
    "redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])\n"
    "redis.call('XDEL', KEYS[1], ARGV[2])\n"
    "return due\n";

/* KEYS: events. ARGV: group, consumer, id, ... Resets the idle time of each entry that is
 * still pending on `consumer` (XCLAIM to itself, JUSTID: the delivery count stays), so
 * that no other worker takes over an entry whose holder is alive. Returns how many. */
static const char lua_touch[] =
    "local n = 0\n"
    "for i = 3, #ARGV do\n"
    "  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)\n"
    "  if #p == 1 and p[1][2] == ARGV[2] then\n"
    "    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')\n"
    "    n = n + 1\n"
    "  end\n"
    "end\n"
    "return n\n";

/* KEYS: events, dead. ARGV: group, id, field, value, ... Returns the dead entry id. */
static const char lua_bury[] = "local args = {'XADD', KEYS[2], '*'}\n"
                               "for i = 3, #ARGV do args[#args + 1] = ARGV[i] end\n"
                               "local id = redis.call(unpack(args))\n"
                               "redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])\n"
                               "redis.call('XDEL', KEYS[1], ARGV[2])\n"
                               "return id\n";

/* KEYS: retry, events, dead. ARGV: limit, now as RFC 3339 (for failed_at). Returns {moved, ms until
 * the next is due or -1}. A member that does not decode is moved to the dead stream rather than
 * left to block the set. */
static const char lua_promote[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, "
    "tonumber(ARGV[1]))\n"
    "for _, m in ipairs(due) do\n"
    "  local ok, e = pcall(cjson.decode, m)\n"
    "  if ok and type(e) == 'table' and e." SE_CALL_SID " and e." SE_EVENT " then\n"
    "    redis.call('XADD', KEYS[2], '*', '" SE_CALL_SID "', e." SE_CALL_SID ",\n"
    "      '" SE_STATUS "', e." SE_STATUS " or '', '" SE_ATTEMPT "', tostring(e." SE_ATTEMPT
    " or 0),\n"
    "      '" SE_REQUEST_ID "', e." SE_REQUEST_ID " or '', '" SE_RECEIVED_AT "',\n"
    "      e." SE_RECEIVED_AT " or '', '" SE_EVENT "', e." SE_EVENT ")\n"
    "  else\n"
    "    redis.call('XADD', KEYS[3], '*', '" SE_CALL_SID
    "', '', 'reason', 'malformed_retry_member',\n"
    "      'error', 'retry set member is not a calllog entry', 'http_status', '0',\n"
    "      'attempts', '0', 'failed_at', ARGV[2], '" SE_EVENT "', m)\n"
    "  end\n"
    "  redis.call('ZREM', KEYS[1], m)\n"
    "end\n"
    "local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')\n"
    "local n = '-1'\n"
    "if #nxt == 2 then n = tostring(math.max(0, tonumber(nxt[2]) - now)) end\n"
    "return {#due, n}\n";

/* KEYS: dead, events. ARGV: id. Returns 1 when replayed, 0 when absent. */
static const char lua_replay[] =
    "local r = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])\n"
    "if #r == 0 then return 0 end\n"
    "local f, m = r[1][2], {}\n"
    "for i = 1, #f, 2 do m[f[i]] = f[i + 1] end\n"
    "if not m." SE_EVENT " or m." SE_EVENT " == '' then\n"
    "  return redis.error_reply('dead entry has no event')\n"
    "end\n"
    "redis.call('XADD', KEYS[2], '*', '" SE_CALL_SID "', m." SE_CALL_SID " or '',\n"
    "  '" SE_STATUS "', m." SE_STATUS " or '', '" SE_ATTEMPT "', '0',\n"
    "  '" SE_REQUEST_ID "', m." SE_REQUEST_ID " or '', '" SE_RECEIVED_AT "',\n"
    "  m." SE_RECEIVED_AT " or '', '" SE_EVENT "', m." SE_EVENT ",\n"
    "  '" STREAM_ENTRY_REPLAYED_FROM "', ARGV[1])\n"
    "redis.call('XDEL', KEYS[1], ARGV[1])\n"
    "return 1\n";

/* Runs a command given as argv; returns the reply (caller frees) or NULL with `err`. */
static redisReply *run(redisContext *c, int argc, const char **argv, calllog_error *err)
{
    redisReply *r = redisCommandArgv(c, argc, argv, NULL);
    if (redis_reply_failed(c, r, err)) {
        if (r)
            freeReplyObject(r);
        return NULL;
    }
    return r;
}

int queue_ensure_group(redisContext *c, const calllog_keys *k, calllog_error *err)
{
    const char *argv[] = {"XGROUP", "CREATE", k->events, KEYS_GROUP, "0", "MKSTREAM"};
    redisReply *r = redisCommandArgv(c, 6, argv, NULL);
    int rc = 0;
    if (!r || (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BUSYGROUP", 9) != 0))
        rc = redis_reply_failed(c, r, err) ? -1 : 0;
    if (r)
        freeReplyObject(r);
    return rc;
}

/* Decodes an XREADGROUP reply `r` of one stream into `out`. Returns CALLLOG_OK,
 * CALLLOG_NOT_FOUND when it holds no entry, or CALLLOG_TRANSIENT (with `err`) when the
 * entry does not decode. */
static calllog_code read_reply_entry(const redisReply *r, stream_entry *out, calllog_error *err)
{
    calllog_code st = CALLLOG_NOT_FOUND;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
        r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements == 2) {
        const redisReply *entries = r->element[0]->element[1];
        if (entries->type == REDIS_REPLY_ARRAY && entries->elements > 0)
            st = stream_entry_from_reply(entries->element[0], out) == 0 ? CALLLOG_OK
                                                                        : CALLLOG_TRANSIENT;
        if (st < 0)
            error_set(err, CALLLOG_TRANSIENT, "unreadable stream entry");
    }
    return st;
}

calllog_code queue_read(redisContext *c, const calllog_keys *k, const char *consumer, long block_ms,
                        stream_entry *out, calllog_error *err)
{
    char block[24];
    snprintf(block, sizeof block, "%ld", block_ms);
    const char *argv[] = {"XREADGROUP", "GROUP", KEYS_GROUP, consumer,  "COUNT", "1",
                          "BLOCK",      block,   "STREAMS",  k->events, ">"};
    redisReply *r = run(c, 11, argv, err);
    if (!r)
        return CALLLOG_TRANSIENT;
    calllog_code st = read_reply_entry(r, out, err);
    freeReplyObject(r);
    return st;
}

/* Times the group delivered entry `id` (XPENDING), or 1 when it cannot be read. */
static long delivery_count(redisContext *c, const calllog_keys *k, const char *id)
{
    const char *argv[] = {"XPENDING", k->events, KEYS_GROUP, id, id, "1"};
    redisReply *r = redisCommandArgv(c, 6, argv, NULL);
    long n = 1;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 1 && r->element[0]->elements == 4 &&
        r->element[0]->element[3]->type == REDIS_REPLY_INTEGER)
        n = (long)r->element[0]->element[3]->integer;
    if (r)
        freeReplyObject(r);
    return n;
}

calllog_code queue_reclaim(redisContext *c, const calllog_keys *k, const char *consumer,
                           long idle_ms, char *cursor, stream_entry *out, calllog_error *err)
{
    char idle[24];
    snprintf(idle, sizeof idle, "%ld", idle_ms);
    const char *argv[] = {"XAUTOCLAIM", k->events, KEYS_GROUP, consumer,
                          idle,         cursor,    "COUNT",    "1"};
    redisReply *r = run(c, 8, argv, err);
    if (!r)
        return CALLLOG_TRANSIENT;
    calllog_code st = CALLLOG_NOT_FOUND;
    if (r->type == REDIS_REPLY_ARRAY && r->elements >= 2) {
        if (r->element[0]->type == REDIS_REPLY_STRING)
            snprintf(cursor, 64, "%s", r->element[0]->str);
        const redisReply *entries = r->element[1];
        if (entries->elements > 0 && entries->element[0]->type == REDIS_REPLY_ARRAY)
            st = stream_entry_from_reply(entries->element[0], out) == 0 ? CALLLOG_OK
                                                                        : CALLLOG_TRANSIENT;
    }
    freeReplyObject(r);
    if (st == CALLLOG_OK)
        out->deliveries = delivery_count(c, k, out->id);
    else if (st < 0)
        error_set(err, CALLLOG_TRANSIENT, "unreadable stream entry");
    return st;
}

int queue_done(redisContext *c, const calllog_keys *k, const stream_entry *e, calllog_error *err)
{
    const char *args[] = {k->events, KEYS_GROUP, e->id};
    redisReply *r = redis_eval(c, lua_done, 1, 3, args, err);
    if (r)
        freeReplyObject(r);
    return r ? 0 : -1;
}

calllog_code queue_done_next(redisContext *c, const calllog_keys *k, const stream_entry *e,
                             const char *consumer, stream_entry *next, calllog_error *err)
{
    memset(next, 0, sizeof *next);
    if (!consumer)
        return queue_done(c, k, e, err) == 0 ? CALLLOG_NOT_FOUND : CALLLOG_TRANSIENT;
    const char *args[] = {k->events, KEYS_GROUP, e->id, consumer};
    redisReply *r = redis_eval(c, lua_done_next, 1, 4, args, err);
    if (!r)
        return CALLLOG_TRANSIENT;
    calllog_error ignored;
    calllog_code st = read_reply_entry(r, next, &ignored);
    freeReplyObject(r);
    /* An entry that does not decode stays pending on `consumer`: the reclaim takes it
     * (and buries it as poison), as it would after a plain read. */
    return st == CALLLOG_OK ? CALLLOG_OK : CALLLOG_NOT_FOUND;
}

/* The retry-set member for `e`: its JSON form (from_id its stream id), with attempt
 * `attempt`. */
static char *retry_member(const stream_entry *e, int attempt)
{
    stream_entry m = *e;
    m.attempt = attempt;
    return stream_entry_to_json(&m);
}

/* Moves `e` to the retry set due in `delay_ms`, carrying attempt number `attempt`. */
static int move_to_retry(redisContext *c, const calllog_keys *k, const stream_entry *e,
                         long delay_ms, int attempt, calllog_error *err)
{
    char *member = retry_member(e, attempt);
    char delay[24];
    snprintf(delay, sizeof delay, "%ld", delay_ms < 0 ? 0 : delay_ms);
    const char *args[] = {k->events, k->retry, KEYS_GROUP, e->id, delay, member};
    redisReply *r = member ? redis_eval(c, lua_reschedule, 2, 6, args, err) : NULL;
    if (!member)
        error_set(err, CALLLOG_TRANSIENT, "out of memory");
    free(member);
    if (r)
        freeReplyObject(r);
    return r ? 0 : -1;
}

int queue_reschedule(redisContext *c, const calllog_keys *k, const stream_entry *e, long delay_ms,
                     calllog_error *err)
{
    return move_to_retry(c, k, e, delay_ms, e->attempt + 1, err);
}

int queue_park(redisContext *c, const calllog_keys *k, const stream_entry *e, long delay_ms,
               calllog_error *err)
{
    return move_to_retry(c, k, e, delay_ms, e->attempt, err);
}

long queue_touch(redisContext *c, const calllog_keys *k, const char *consumer,
                 const char *const *ids, size_t n, calllog_error *err)
{
    if (n == 0)
        return 0;
    const char **args = calloc(n + 3, sizeof *args);
    if (!args) {
        error_set(err, CALLLOG_TRANSIENT, "out of memory");
        return -1;
    }
    args[0] = k->events;
    args[1] = KEYS_GROUP;
    args[2] = consumer;
    memcpy(args + 3, ids, n * sizeof *ids);
    redisReply *r = redis_eval(c, lua_touch, 1, (int)n + 3, args, err);
    free(args);
    if (!r)
        return -1;
    long touched = r->type == REDIS_REPLY_INTEGER ? (long)r->integer : 0;
    freeReplyObject(r);
    return touched;
}

int queue_bury(redisContext *c, const calllog_keys *k, const stream_entry *e, const dead_letter *d,
               calllog_error *err)
{
    char http[24], attempts[24], failed_at[40], attempt[16];
    snprintf(http, sizeof http, "%ld", d->http_status);
    snprintf(attempts, sizeof attempts, "%d", d->attempts);
    timing_format_rfc3339(timing_epoch_ms(), failed_at, sizeof failed_at);
    const char *args[4 + STREAM_ENTRY_ARGC + 12] = {k->events, k->dead, KEYS_GROUP, e->id};
    int n = 4 + stream_entry_to_argv(e, args + 4, attempt, sizeof attempt);
    const char *dead[] = {"reason",      d->reason, "error",     d->error ? d->error : "",
                          "http_status", http,      "attempts",  attempts,
                          "failed_at",   failed_at, "source_id", e->id};
    memcpy(args + n, dead, sizeof dead);
    n += (int)(sizeof dead / sizeof *dead);
    redisReply *r = redis_eval(c, lua_bury, 2, n, args, err);
    if (r)
        freeReplyObject(r);
    return r ? 0 : -1;
}

int queue_promote(redisContext *c, const calllog_keys *k, long limit, long *moved,
                  long long *next_due_in_ms, calllog_error *err)
{
    char lim[24], now[40];
    snprintf(lim, sizeof lim, "%ld", limit);
    timing_format_rfc3339(timing_epoch_ms(), now, sizeof now);
    const char *args[] = {k->retry, k->events, k->dead, lim, now};
    redisReply *r = redis_eval(c, lua_promote, 3, 5, args, err);
    if (!r)
        return -1;
    int ok = r->type == REDIS_REPLY_ARRAY && r->elements == 2;
    if (ok) {
        *moved = (long)r->element[0]->integer;
        *next_due_in_ms = r->element[1]->str ? atoll(r->element[1]->str) : -1;
    } else {
        error_set(err, CALLLOG_TRANSIENT, "unexpected promote reply");
    }
    freeReplyObject(r);
    return ok ? 0 : -1;
}

int queue_replay_dead(redisContext *c, const calllog_keys *k, const char *id, calllog_error *err)
{
    const char *args[] = {k->dead, k->events, id};
    redisReply *r = redis_eval(c, lua_replay, 2, 3, args, err);
    if (!r)
        return -1;
    int rc = r->type == REDIS_REPLY_INTEGER && r->integer == 1 ? 0 : 1;
    freeReplyObject(r);
    return rc;
}

int queue_depths_read(redisContext *c, const calllog_keys *k, queue_depths *out)
{
    redisAppendCommand(c, "XLEN %s", k->events);
    redisAppendCommand(c, "XPENDING %s %s", k->events, KEYS_GROUP);
    redisAppendCommand(c, "ZCARD %s", k->retry);
    redisAppendCommand(c, "XLEN %s", k->dead);
    long long *slots[] = {&out->events, &out->pending, &out->retry, &out->dead};
    int rc = 0;
    for (int i = 0; i < 4; i++) {
        redisReply *r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK || !r) {
            return -1; /* the connection is broken: the caller reconnects */
        }
        if (r->type == REDIS_REPLY_INTEGER)
            *slots[i] = r->integer;
        else if (r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
                 r->element[0]->type == REDIS_REPLY_INTEGER)
            *slots[i] = r->element[0]->integer; /* XPENDING summary: count first */
        else if (r->type == REDIS_REPLY_ERROR && i == 1)
            *slots[i] = 0; /* no group yet */
        else
            rc = -1;
        freeReplyObject(r);
    }
    return rc;
}
