/* keys — the Redis key names every process agrees on (design §2).
 *
 * With the default prefix `calllog` the keys are `calllog:events`, `calllog:retry`,
 * `calllog:dead`, ...; on Redis Cluster set the prefix to `{calllog}` so that all keys
 * hash to one slot and the Lua scripts may touch several of them. */
#ifndef CALLLOG_KEYS_H
#define CALLLOG_KEYS_H

#define KEYS_GROUP "calllog-workers"
#define KEYS_MAX 200

typedef struct calllog_keys {
    char events[KEYS_MAX];             /* stream of normalized events */
    char retry[KEYS_MAX];              /* ZSET: member = event entry, score = due time (epoch ms) */
    char dead[KEYS_MAX];               /* stream of dead letters */
    char ratelimit[KEYS_MAX];          /* RD Station limiter state */
    char cache[KEYS_MAX];              /* prefix for contact/deal look-up cache entries */
    char oauth[KEYS_MAX];              /* hash holding the RD Station v2 tokens */
    char reconcile[KEYS_MAX];          /* hash: the reconciler's checkpoint and last run */
    char reconcile_leader[KEYS_MAX];   /* string: the reconciler lease (holder, expiry) */
    char reconcile_enqueued[KEYS_MAX]; /* ZSET: CallSids it enqueued, score = when (ms) */
    char rdstation_plan[KEYS_MAX];     /* hash: what the RD account's plan refused (rdstation.h) */
    char phone_index[KEYS_MAX];      /* hash: phone key -> contact and open deal (phone_index.h) */
    char phone_index_meta[KEYS_MAX]; /* hash: when the index was built, and its figures */
    char phone_index_leader[KEYS_MAX]; /* string: the index sync's lease */
} calllog_keys;

/* Builds the key names from `prefix`. Returns 0, or -1 when the prefix is empty, too long
 * or contains whitespace. */
int keys_build(const char *prefix, calllog_keys *out);

#endif
