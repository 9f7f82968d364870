/* redis_sentinel — asking Redis Sentinel where the master is, checking ROLE (see the
 * header). A sentinel is reached with redis_open on a target of its own (its address
 * and REDIS_SENTINEL_PASSWORD, no sentinels), so timeouts and AUTH work as for Redis. */
#include "common/redis_sentinel.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/redis_client.h"

#define SENTINEL_DEFAULT_PORT 26379

/* Parses one "host[:port]" item between `s` and `end` (spaces trimmed) into `a`. */
static int parse_item(const char *s, const char *end, redis_sentinel_addr *a)
{
    while (s < end && *s == ' ')
        s++;
    while (end > s && end[-1] == ' ')
        end--;
    a->port = SENTINEL_DEFAULT_PORT;
    return s < end ? redis_hostport_parse(s, end, a->host, sizeof a->host, &a->port) : -1;
}

int redis_sentinel_parse(const char *list, redis_sentinels *out, calllog_error *err)
{
    out->n = 0;
    if (!list || !list[0]) {
        error_set(err, CALLLOG_INVALID, "expected host:port[,host:port…]");
        return -1;
    }
    for (const char *s = list;;) {
        const char *comma = strchr(s, ',');
        const char *end = comma ? comma : s + strlen(s);
        if (out->n == REDIS_SENTINELS_MAX) {
            error_set(err, CALLLOG_INVALID, "at most %d sentinels", REDIS_SENTINELS_MAX);
            return -1;
        }
        if (parse_item(s, end, &out->addr[out->n]) != 0) {
            error_set(err, CALLLOG_INVALID, "bad sentinel address '%.*s' (expected host:port)",
                      (int)(end - s > 64 ? 64 : end - s), s);
            return -1;
        }
        out->n++;
        if (!comma)
            return 0;
        s = comma + 1;
    }
}

/* Reads a get-master-addr-by-name reply: [host, port]. Returns 0, or -1 with `err`. */
static int read_master_addr(const redisReply *r, const char *master, char *host, size_t hostlen,
                            int *port, calllog_error *err)
{
    if (r->type == REDIS_REPLY_NIL) {
        error_set(err, CALLLOG_TRANSIENT, "does not know master '%s'", master);
        return -1;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING) {
        error_set(err, CALLLOG_TRANSIENT, "unexpected reply to get-master-addr-by-name");
        return -1;
    }
    char *pe;
    long p = strtol(r->element[1]->str, &pe, 10);
    if (*pe || p < 1 || p > 65535 || r->element[0]->len >= hostlen || !r->element[0]->len) {
        error_set(err, CALLLOG_TRANSIENT, "bad master address in the sentinel's reply");
        return -1;
    }
    memcpy(host, r->element[0]->str, r->element[0]->len + 1);
    *port = (int)p;
    return 0;
}

/* Copies `err`'s message behind "sentinel host:port: " (so the log says which one). */
static int sentinel_fail(const redis_sentinel_addr *a, calllog_error *err)
{
    char why[sizeof err->message];
    snprintf(why, sizeof why, "%s", err->message);
    error_set(err, CALLLOG_TRANSIENT, "sentinel %s:%d: %s", a->host, a->port, why);
    return -1;
}

int redis_sentinel_ask(const redis_sentinels *s, int i, int timeout_ms, char *host, size_t hostlen,
                       int *port, calllog_error *err)
{
    const redis_sentinel_addr *a = &s->addr[i];
    redis_target t;
    memset(&t, 0, sizeof t);
    snprintf(t.host, sizeof t.host, "%s", a->host);
    t.port = a->port;
    snprintf(t.password, sizeof t.password, "%s", s->password);
    redisContext *c = redis_open(&t, timeout_ms, err);
    if (!c)
        return sentinel_fail(a, err);
    redisReply *r = redisCommand(c, "SENTINEL get-master-addr-by-name %s", s->master);
    int rc = redis_reply_failed(c, r, err)
                 ? -1
                 : read_master_addr(r, s->master, host, hostlen, port, err);
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return rc == 0 ? 0 : sentinel_fail(a, err);
}

int redis_sentinel_master_replicas(redisContext *c, calllog_error *err)
{
    redisReply *r = redisCommand(c, "ROLE");
    int n = -1;
    if (redis_reply_failed(c, r, err))
        ; /* err says why */
    else if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
             r->element[0]->type != REDIS_REPLY_STRING)
        error_set(err, CALLLOG_TRANSIENT, "unexpected reply to ROLE");
    else if (strcmp(r->element[0]->str, "master") != 0)
        error_set(err, CALLLOG_TRANSIENT, "not a master (role %s)", r->element[0]->str);
    else if (r->elements < 3 || r->element[2]->type != REDIS_REPLY_ARRAY)
        error_set(err, CALLLOG_TRANSIENT, "unexpected reply to ROLE");
    else
        n = (int)r->element[2]->elements;
    if (r)
        freeReplyObject(r);
    return n;
}
