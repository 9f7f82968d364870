/* redis_sentinel — finding the current Redis master through Redis Sentinel (issue 13).
 *
 * With REDIS_SENTINELS=host:port,… and REDIS_SENTINEL_MASTER=name the programs do not
 * connect to a fixed address: before each connection they ask the sentinels, one after
 * the other, `SENTINEL get-master-addr-by-name <name>`, and redis_client connects to the
 * answer and checks with `ROLE` that the server really is a master (a sentinel with a
 * stale view, or a demoted master still up, must never be written to). Reconnecting
 * after a failover is therefore the same code path as connecting the first time.
 *
 * This module only talks to sentinels and reads ROLE replies; it knows nothing of the
 * master's credentials (redis_client does). Nothing here keeps state between calls. */
#ifndef CALLLOG_REDIS_SENTINEL_H
#define CALLLOG_REDIS_SENTINEL_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include "common/error.h"

#define REDIS_SENTINELS_MAX 8

typedef struct redis_sentinel_addr {
    char host[256];
    int port;
} redis_sentinel_addr;

/* The sentinels to ask and the master's name; n == 0 means "Sentinel is not used". */
typedef struct redis_sentinels {
    int n;
    redis_sentinel_addr addr[REDIS_SENTINELS_MAX];
    char master[128];
    char password[256]; /* AUTH to the sentinels (their requirepass), "" for none */
} redis_sentinels;

/* Parses `list` ("host:port,host:port", [v6]:port accepted, spaces around commas
 * ignored, port 26379 when left out) into `out->addr` / `out->n`. Returns 0, or -1 with
 * the reason in `err`. */
int redis_sentinel_parse(const char *list, redis_sentinels *out, calllog_error *err);

/* Asks sentinel `i` of `s` where the master is. Writes its address into `host`
 * (`hostlen` bytes) and `port`. Returns 0, or -1 with `err` filled (sentinel unreachable,
 * refused AUTH, or does not know the master). `timeout_ms` bounds connect and reply. */
int redis_sentinel_ask(const redis_sentinels *s, int i, int timeout_ms, char *host, size_t hostlen,
                       int *port, calllog_error *err);

/* Sends ROLE on `c`. Returns the number of replicas attached when the server is a
 * master, or -1 with `err` filled when it is not (a replica: "not a master (role
 * slave)") or did not answer. */
int redis_sentinel_master_replicas(redisContext *c, calllog_error *err);

#endif
