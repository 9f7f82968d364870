/* redis_client — REDIS_URL parsing and authenticated hiredis connections, found through
 * Redis Sentinel when REDIS_SENTINELS is set (redis_sentinel.c does the asking). */
#include "common/redis_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config.h"

/* Copies at most `n` bytes of `s` into `out` (size `outlen`); -1 when it does not fit. */
static int copy_part(char *out, size_t outlen, const char *s, size_t n)
{
    if (n >= outlen)
        return -1;
    memcpy(out, s, n);
    out[n] = '\0';
    return 0;
}

/* Parses the `[user]:password@` part that ends at `at`. */
static int parse_userinfo(const char *s, const char *at, redis_target *out)
{
    const char *colon = memchr(s, ':', (size_t)(at - s));
    if (!colon) /* redis://password@host is accepted too */
        return copy_part(out->password, sizeof out->password, s, (size_t)(at - s));
    if (copy_part(out->user, sizeof out->user, s, (size_t)(colon - s)) != 0)
        return -1;
    return copy_part(out->password, sizeof out->password, colon + 1, (size_t)(at - colon - 1));
}

int redis_hostport_parse(const char *s, const char *end, char *host, size_t hostlen, int *port)
{
    const char *pstr = NULL, *hend = end;
    if (*s == '[') {
        const char *close = memchr(s, ']', (size_t)(end - s));
        if (!close)
            return -1;
        if (close + 1 < end && close[1] == ':')
            pstr = close + 2;
        else if (close + 1 != end)
            return -1;
        s++;
        hend = close;
    } else {
        const char *colon = memchr(s, ':', (size_t)(end - s));
        if (colon) {
            pstr = colon + 1;
            hend = colon;
        }
    }
    if (hend == s || copy_part(host, hostlen, s, (size_t)(hend - s)) != 0)
        return -1;
    if (pstr) {
        char *pe;
        long p = strtol(pstr, &pe, 10);
        if (pe == pstr || pe != end || p < 1 || p > 65535)
            return -1;
        *port = (int)p;
    }
    return 0;
}

int redis_url_parse(const char *url, redis_target *out, calllog_error *err)
{
    memset(out, 0, sizeof *out);
    out->port = 6379;
    if (!url || strncmp(url, "redis://", 8) != 0) {
        error_set(err, CALLLOG_INVALID, "expected redis://[:password@]host[:port][/db]");
        return -1;
    }
    const char *s = url + 8;
    const char *slash = strchr(s, '/');
    const char *end = slash ? slash : s + strlen(s);
    const char *at = NULL; /* the last '@': a password may contain '@' */
    for (const char *p = s; p < end; p++)
        at = *p == '@' ? p : at;
    if (at) {
        if (parse_userinfo(s, at, out) != 0) {
            error_set(err, CALLLOG_INVALID, "user or password too long");
            return -1;
        }
        s = at + 1;
    }
    if (redis_hostport_parse(s, end, out->host, sizeof out->host, &out->port) != 0) {
        error_set(err, CALLLOG_INVALID, "bad host or port");
        return -1;
    }
    if (slash && slash[1]) {
        char *de;
        long db = strtol(slash + 1, &de, 10);
        if (*de != '\0' || db < 0 || db > 15) {
            error_set(err, CALLLOG_INVALID, "bad database number");
            return -1;
        }
        out->db = (int)db;
    }
    return 0;
}

/* Makes `c` unusable after a reply that says it no longer leads to the master:
 * READONLY (a replica, e.g. a demoted master) or MASTERDOWN (a replica cut from its
 * master). Every caller reconnects when c->err is set, and the reconnection asks the
 * sentinels again. */
static void redis_mark_demoted(redisContext *c, const char *msg)
{
    if (c && (strncmp(msg, "READONLY", 8) == 0 || strncmp(msg, "MASTERDOWN", 10) == 0)) {
        c->err = REDIS_ERR_OTHER;
        snprintf(c->errstr, sizeof c->errstr, "%s", msg);
    }
}

int redis_reply_failed(redisContext *c, const redisReply *r, calllog_error *err)
{
    if (!r) {
        if (err)
            error_set(err, CALLLOG_TRANSIENT, "%s", c && c->err ? c->errstr : "no reply");
        return 1;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        if (err)
            error_set(err, CALLLOG_TRANSIENT, "%s", r->str);
        redis_mark_demoted(c, r->str);
        return 1;
    }
    return 0;
}

redisReply *redis_eval(redisContext *c, const char *script, int nkeys, int argc,
                       const char *const *args, calllog_error *err)
{
    const char **argv = calloc((size_t)argc + 3, sizeof *argv);
    char nk[16];
    if (!argv) {
        if (err)
            error_set(err, CALLLOG_TRANSIENT, "out of memory");
        return NULL;
    }
    snprintf(nk, sizeof nk, "%d", nkeys);
    argv[0] = "EVAL";
    argv[1] = script;
    argv[2] = nk;
    memcpy(argv + 3, args, (size_t)argc * sizeof *args);
    redisReply *r = redisCommandArgv(c, argc + 3, argv, NULL);
    free(argv);
    if (redis_reply_failed(c, r, err)) {
        if (r)
            freeReplyObject(r);
        return NULL;
    }
    return r;
}

/* Runs AUTH and SELECT as the URL asks. */
static int redis_handshake(redisContext *c, const redis_target *t, calllog_error *err)
{
    redisReply *r = NULL;
    if (t->password[0]) {
        r = t->user[0] ? redisCommand(c, "AUTH %s %s", t->user, t->password)
                       : redisCommand(c, "AUTH %s", t->password);
        int failed = redis_reply_failed(c, r, err);
        if (r)
            freeReplyObject(r);
        if (failed)
            return -1;
    }
    if (t->db != 0) {
        r = redisCommand(c, "SELECT %d", t->db);
        int failed = redis_reply_failed(c, r, err);
        if (r)
            freeReplyObject(r);
        if (failed)
            return -1;
    }
    return 0;
}

/* Connects to `host`:`port` and authenticates and selects as `t` says. */
static redisContext *redis_connect_to(const redis_target *t, const char *host, int port,
                                      int timeout_ms, calllog_error *err)
{
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout(host, port, tv);
    if (!c) {
        error_set(err, CALLLOG_NOMEM, "out of memory");
        return NULL;
    }
    if (c->err) {
        error_set(err, CALLLOG_TRANSIENT, "cannot connect to %s:%d: %s", host, port, c->errstr);
        redisFree(c);
        return NULL;
    }
    if (redisSetTimeout(c, tv) != REDIS_OK || redis_handshake(c, t, err) != 0) {
        if (c->err)
            error_set(err, CALLLOG_TRANSIENT, "%s", c->errstr);
        redisFree(c);
        return NULL;
    }
    return c;
}

/* Asks the sentinels in turn and returns a connection to the first address they give
 * that ROLE confirms as a master; NULL with the last reason in `err`. */
static redisContext *redis_open_via_sentinels(const redis_target *t, int timeout_ms,
                                              calllog_error *err)
{
    for (int i = 0; i < t->sentinels.n; i++) {
        char host[256];
        int port;
        if (redis_sentinel_ask(&t->sentinels, i, timeout_ms, host, sizeof host, &port, err) != 0)
            continue;
        redisContext *c = redis_connect_to(t, host, port, timeout_ms, err);
        if (c && redis_sentinel_master_replicas(c, err) >= 0)
            return c;
        if (c) {
            char why[sizeof err->message];
            snprintf(why, sizeof why, "%s", err->message);
            error_set(err, CALLLOG_TRANSIENT, "%s:%d (from sentinel %s:%d): %s", host, port,
                      t->sentinels.addr[i].host, t->sentinels.addr[i].port, why);
            redisFree(c);
        }
    }
    return NULL;
}

redisContext *redis_open(const redis_target *t, int timeout_ms, calllog_error *err)
{
    if (t->sentinels.n > 0)
        return redis_open_via_sentinels(t, timeout_ms, err);
    return redis_connect_to(t, t->host, t->port, timeout_ms, err);
}

/* Reads REDIS_SENTINELS, REDIS_SENTINEL_MASTER and REDIS_SENTINEL_PASSWORD. */
static int redis_sentinel_settings_load(redis_sentinels *s, calllog_error *err)
{
    calllog_error why;
    const char *list = config_str("REDIS_SENTINELS", NULL);
    memset(s, 0, sizeof *s);
    if (!list)
        return 0;
    if (redis_sentinel_parse(list, s, &why) != 0)
        return config_fail(err, "REDIS_SENTINELS", why.message);
    const char *master = config_str("REDIS_SENTINEL_MASTER", NULL);
    if (!master)
        return config_fail(err, "REDIS_SENTINEL_MASTER",
                           "required when REDIS_SENTINELS is set (the name in sentinel.conf)");
    const char *password = config_str("REDIS_SENTINEL_PASSWORD", "");
    if (strlen(master) >= sizeof s->master || strpbrk(master, " \t\r\n"))
        return config_fail(err, "REDIS_SENTINEL_MASTER", "expected a short name without spaces");
    if (strlen(password) >= sizeof s->password)
        return config_fail(err, "REDIS_SENTINEL_PASSWORD", "too long");
    snprintf(s->master, sizeof s->master, "%s", master);
    snprintf(s->password, sizeof s->password, "%s", password);
    return 0;
}

/* Reads REDIS_URL, CALLLOG_KEY_PREFIX and the Sentinel settings; see the header. */
int redis_settings_load(redis_target *t, calllog_keys *keys, calllog_error *err)
{
    calllog_error why;
    if (redis_url_parse(config_str("REDIS_URL", "redis://127.0.0.1:6379/0"), t, &why) != 0)
        return config_fail(err, "REDIS_URL", why.message);
    if (keys_build(config_str("CALLLOG_KEY_PREFIX", "calllog"), keys) != 0)
        return config_fail(err, "CALLLOG_KEY_PREFIX", "expected a short name without spaces");
    return redis_sentinel_settings_load(&t->sentinels, err);
}

long long redis_hash_ll(const redisReply *h, const char *name)
{
    for (size_t i = 0; h && i + 1 < h->elements; i += 2)
        if (h->element[i]->str && strcmp(h->element[i]->str, name) == 0 && h->element[i + 1]->str)
            return atoll(h->element[i + 1]->str);
    return 0;
}

void redis_hash_str(const redisReply *h, const char *name, char *out, size_t outlen)
{
    out[0] = '\0';
    for (size_t i = 0; h && i + 1 < h->elements; i += 2)
        if (h->element[i]->str && strcmp(h->element[i]->str, name) == 0 && h->element[i + 1]->str)
            snprintf(out, outlen, "%s", h->element[i + 1]->str);
}
