/* redis_client — REDIS_URL parsing and authenticated connections (hiredis).
 *
 * A URL is `redis://[[user]:password@]host[:port][/db]`. `redis_open` connects with
 * connect and command timeouts, sends AUTH and SELECT when needed, and hands back a
 * plain hiredis context the caller owns and frees with redisFree(). */
#ifndef CALLLOG_REDIS_CLIENT_H
#define CALLLOG_REDIS_CLIENT_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include "error.h"
#include "keys.h"

typedef struct redis_target {
    char host[256];
    int port;
    char user[128];
    char password[256];
    int db;
} redis_target;

/* Parses `url` into `out`. Returns 0, or -1 with a reason in `err` (never the password). */
int redis_url_parse(const char *url, redis_target *out, calllog_error *err);

/* Reads the Redis settings every program shares: REDIS_URL (default
 * redis://127.0.0.1:6379/0) into `t` and CALLLOG_KEY_PREFIX (default calllog) into
 * `keys`. Returns 0, or -1 with `err` naming the malformed setting (config_fail). */
int redis_settings_load(redis_target *t, calllog_keys *keys, calllog_error *err);

/* Connects, authenticates and selects the database. `timeout_ms` bounds the connect and
 * every later command. Returns a context the caller owns, or NULL with `err` filled. */
redisContext *redis_open(const redis_target *t, int timeout_ms, calllog_error *err);

/* 1 when a reply is an error or missing; copies the reason into `err` when given. */
int redis_reply_failed(const redisContext *c, const redisReply *r, calllog_error *err);

/* Runs `script` (EVAL) with `nkeys` keys and `argc` arguments `args` (the keys first).
 * Returns the reply (caller frees with freeReplyObject), or NULL with `err` filled when
 * there was none or it was an error. */
redisReply *redis_eval(redisContext *c, const char *script, int nkeys, int argc,
                       const char *const *args, calllog_error *err);

#endif
