/* rd_oauth — RD Station v2 OAuth2 access tokens shared by every worker through Redis.
 *
 * The tokens live in one Redis hash (keys.h: `oauth`) with the fields `access_token`,
 * `access_expires_at_ms` (epoch ms) and `refresh_token`, so every worker process and the
 * next restart use the same tokens. RD rotates the refresh token on every refresh and
 * invalidates the old one, so two workers must never refresh at the same time: a refresh
 * happens under the lock `<oauth>:lock` (SET NX PX with a random value, released by a
 * compare-and-delete script), and the new refresh and access tokens are written with one
 * HSET before the lock is released. Workers that find the lock taken poll the hash every
 * 100 ms (for at most about 15 s) until the holder has stored a fresh token.
 *
 * The refresh token sent is the stored one, else the configured RDSTATION_REFRESH_TOKEN
 * (used only to start the chain: once Redis holds one, a different configured value is
 * ignored). A refresh answered 400 or 401 is permanent: the operator must put a new
 * refresh token in RDSTATION_REFRESH_TOKEN and delete the hash, and the error message says
 * so. Secrets never appear in messages. One rd_oauth per thread (it shares its owner's
 * http_client and Redis connection). */
#ifndef CALLLOG_RD_OAUTH_H
#define CALLLOG_RD_OAUTH_H

#include <hiredis/hiredis.h>
#include <stddef.h>

#include "common/error.h"
#include "common/http_client.h"
#include "common/metrics.h"

/* An access token is used only while it has more than this left. */
#define RD_OAUTH_MIN_TTL_MS 60000L
/* Room for a token, terminator included. */
#define RD_OAUTH_TOKEN_MAX 512

typedef struct rd_oauth rd_oauth;

typedef struct rd_oauth_settings {
    const char *oauth_url;     /* RDSTATION_OAUTH_URL */
    const char *client_id;     /* RDSTATION_CLIENT_ID */
    const char *client_secret; /* RDSTATION_CLIENT_SECRET */
    const char *refresh_token; /* RDSTATION_REFRESH_TOKEN: the first of the chain */
    const char *hash_key;      /* keys->oauth */
    long http_timeout_ms;      /* the HTTP client's total timeout (sizes the lock's lifetime) */
} rd_oauth_settings;

/* Creates the token keeper. The strings are copied; `http` (used for the token endpoint)
 * and `redis` are borrowed and must outlive it; `requests`/`seconds` (may be NULL) count
 * token requests as endpoint "POST /oauth2/token". Returns NULL on a missing setting or
 * out of memory. */
rd_oauth *rd_oauth_new(const rd_oauth_settings *s, http_client *http, redisContext *redis,
                       metric *requests, metric *seconds);

/* Replaces the Redis connection after the owner reconnected. */
void rd_oauth_set_redis(rd_oauth *o, redisContext *redis);

/* Frees it; NULL is accepted. */
void rd_oauth_free(rd_oauth *o);

/* Copies a usable access token into `out`, refreshing it first when the stored one is
 * missing or expires within RD_OAUTH_MIN_TTL_MS. Returns 0, or -1 with `err` filled:
 * http_status 400/401 when RD rejected the refresh token (permanent), the token
 * endpoint's status or a curl code for other refresh failures, and status 0 with curl
 * code 0 (transient) when Redis failed or another worker's refresh took too long. */
int rd_oauth_token(rd_oauth *o, char *out, size_t outlen, calllog_error *err);

/* After the API answered 401 to `failed`: forgets the stored access token if it is still
 * `failed` (another worker may already have replaced it), so that the next
 * rd_oauth_token refreshes. Returns 0, or -1 with `err` filled when Redis failed. */
int rd_oauth_invalidate(rd_oauth *o, const char *failed, calllog_error *err);

#endif
