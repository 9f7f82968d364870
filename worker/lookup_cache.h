/* lookup_cache — phone → RD contact and open deal, cached in Redis with TTLs.
 *
 * A repeat caller then costs one RD request (the note) instead of three or more
 * (design §3). Misses are cached too, for a shorter time, so a flood of unknown callers
 * does not drain the rate limit. Entries are small JSON strings under
 * `<prefix>:cache:phone:<digits>`, readable with redis-cli. A cache failure is never
 * fatal: the worker just asks RD Station. */
#ifndef CALLLOG_LOOKUP_CACHE_H
#define CALLLOG_LOOKUP_CACHE_H

#include <hiredis/hiredis.h>

#include "common/keys.h"

typedef enum {
    LOOKUP_CACHE_MISS = 0,
    LOOKUP_CACHE_FOUND,
    LOOKUP_CACHE_NO_CONTACT,
    LOOKUP_CACHE_NO_DEAL
} lookup_cache_status;

typedef struct lookup_cache_hit {
    char contact_id[64];
    char deal_id[64];
    char deal_user_id[64];
} lookup_cache_hit;

/* Looks `phone` up. LOOKUP_CACHE_MISS also covers Redis errors. */
lookup_cache_status lookup_cache_get(redisContext *c, const calllog_keys *k, const char *phone,
                                     lookup_cache_hit *out);

/* Stores a found contact + deal for `ttl_s` seconds. */
void lookup_cache_put_found(redisContext *c, const calllog_keys *k, const char *phone,
                            const lookup_cache_hit *hit, long ttl_s);

/* Stores a miss (LOOKUP_CACHE_NO_CONTACT or LOOKUP_CACHE_NO_DEAL, with the contact id if any). */
void lookup_cache_put_missing(redisContext *c, const calllog_keys *k, const char *phone,
                              lookup_cache_status why, const char *contact_id, long ttl_s);

/* Forgets `phone` (e.g. the cached deal answered 404). */
void lookup_cache_forget(redisContext *c, const calllog_keys *k, const char *phone);

#endif
