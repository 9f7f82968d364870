/* redis_client — REDIS_URL parsing and authenticated connections (hiredis).
 *
 * A URL is `redis://[[user]:password@]host[:port][/db]`. `redis_open` connects with
 * connect and command timeouts, sends AUTH and SELECT when needed, and hands back a
 * plain hiredis context the caller owns and frees with redisFree().
 *
 * High availability (issue 13): when the target lists sentinels (REDIS_SENTINELS),
 * `redis_open` ignores the URL's host and port, asks the sentinels for the current
 * master and connects only to a server whose ROLE is master (redis_sentinel.h). A
 * connection that later answers READONLY or MASTERDOWN (its server was demoted in a
 * failover) gets `c->err` set by redis_reply_failed, so the callers' usual "reconnect
 * when c->err" finds the new master. */
#ifndef CALLLOG_REDIS_CLIENT_H
#define CALLLOG_REDIS_CLIENT_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include "common/error.h"
#include "common/keys.h"
#include "common/redis_sentinel.h"

typedef struct redis_target {
    char host[256];
    int port;
    char user[128];
    char password[256];
    int db;
    redis_sentinels sentinels; /* n == 0: connect to host:port directly */
} redis_target;

/* Parses `host[:port]` between `s` and `end` (host may be a [v6] literal) into `host`
 * (`hostlen` bytes) and, when a port is given, `*port`. Returns 0, or -1 when malformed. */
int redis_hostport_parse(const char *s, const char *end, char *host, size_t hostlen, int *port);

/* Parses `url` into `out`. Returns 0, or -1 with a reason in `err` (never the password). */
int redis_url_parse(const char *url, redis_target *out, calllog_error *err);

/* Reads the Redis settings every program shares: REDIS_URL (default
 * redis://127.0.0.1:6379/0) and REDIS_SENTINELS / REDIS_SENTINEL_MASTER /
 * REDIS_SENTINEL_PASSWORD into `t`, and CALLLOG_KEY_PREFIX (default calllog) into
 * `keys`. Returns 0, or -1 with `err` naming the malformed setting (config_fail). */
int redis_settings_load(redis_target *t, calllog_keys *keys, calllog_error *err);

/* Connects, authenticates and selects the database. `timeout_ms` bounds the connect and
 * every later command. Returns a context the caller owns, or NULL with `err` filled. */
redisContext *redis_open(const redis_target *t, int timeout_ms, calllog_error *err);

/* 1 when a reply is an error or missing; copies the reason into `err` when given. A
 * READONLY or MASTERDOWN error also sets c->err (the connection is to be replaced). */
int redis_reply_failed(redisContext *c, const redisReply *r, calllog_error *err);

/* Runs `script` (EVAL) with `nkeys` keys and `argc` arguments `args` (the keys first).
 * Returns the reply (caller frees with freeReplyObject), or NULL with `err` filled when
 * there was none or it was an error. */
redisReply *redis_eval(redisContext *c, const char *script, int nkeys, int argc,
                       const char *const *args, calllog_error *err);

/* Integer field `name` of an HGETALL reply `h` (0 when absent or `h` is NULL). */
long long redis_hash_ll(const redisReply *h, const char *name);

/* Copies string field `name` of an HGETALL reply `h` into `out` ("" when absent). */
void redis_hash_str(const redisReply *h, const char *name, char *out, size_t outlen);

#endif
