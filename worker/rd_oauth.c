/* rd_oauth — RD Station v2 OAuth2 access tokens shared by every worker through Redis.
 *
 * See rd_oauth.h for the protocol. The one invariant everything here protects: RD
 * invalidates a refresh token the moment it is used, so the new one must reach Redis
 * before anyone else may refresh. Hence the lock, the single HSET of both tokens before
 * the lock is released, a lock lifetime longer than the HTTP timeout (a slow refresh can
 * never outlive its lock), and a copy kept in memory when Redis fails right after a
 * refresh, written back at the next opportunity. */
#include "worker/rd_oauth.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/timing.h"
#include "worker/retry_policy.h"

#define RD_OAUTH_POLL_MS 100L
#define RD_OAUTH_MIN_LOCK_MS 15000L
#define RD_OAUTH_DEFAULT_EXPIRES_S 7200LL

/* Deletes the lock only when it still holds our value. */
static const char LOCK_RELEASE_LUA[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end "
    "return 0";
/* Forgets the access token only when it is still the one that failed. */
static const char INVALIDATE_LUA[] =
    "if redis.call('HGET', KEYS[1], 'access_token') == ARGV[1] then "
    "redis.call('HDEL', KEYS[1], 'access_token', 'access_expires_at_ms') return 1 end "
    "return 0";

struct rd_oauth {
    char *url;
    char *client_id;
    char *client_secret;
    char *refresh_token;
    char *hash_key;
    char *lock_key;
    long lock_ttl_ms;
    http_client *http;
    redisContext *redis;
    metric *requests;
    metric *seconds;
    /* Tokens a refresh returned that Redis has not stored yet (it failed meanwhile). */
    int unsaved;
    char mem_access[RD_OAUTH_TOKEN_MAX];
    char mem_refresh[RD_OAUTH_TOKEN_MAX];
    long long mem_expires_ms;
};

/* What the hash holds; empty strings and 0 for absent fields. */
typedef struct rd_tokens {
    char access[RD_OAUTH_TOKEN_MAX];
    long long expires_ms;
    char refresh[RD_OAUTH_TOKEN_MAX];
} rd_tokens;

/* strdup that accepts NULL (giving ""). */
static char *dup_or_empty(const char *s)
{
    return strdup(s ? s : "");
}

/* Creates the token keeper; see the header. */
rd_oauth *rd_oauth_new(const rd_oauth_settings *s, http_client *http, redisContext *redis,
                       metric *requests, metric *seconds)
{
    if (s == NULL || s->oauth_url == NULL || s->hash_key == NULL || s->hash_key[0] == '\0' ||
        http == NULL)
        return NULL;
    rd_oauth *o = calloc(1, sizeof *o);
    if (o == NULL)
        return NULL;
    o->url = dup_or_empty(s->oauth_url);
    o->client_id = dup_or_empty(s->client_id);
    o->client_secret = dup_or_empty(s->client_secret);
    o->refresh_token = dup_or_empty(s->refresh_token);
    o->hash_key = dup_or_empty(s->hash_key);
    o->lock_key = malloc(strlen(s->hash_key) + sizeof ":lock");
    if (!o->url || !o->client_id || !o->client_secret || !o->refresh_token || !o->hash_key ||
        !o->lock_key) {
        rd_oauth_free(o);
        return NULL;
    }
    sprintf(o->lock_key, "%s:lock", s->hash_key);
    o->lock_ttl_ms = s->http_timeout_ms + 5000 > RD_OAUTH_MIN_LOCK_MS ? s->http_timeout_ms + 5000
                                                                      : RD_OAUTH_MIN_LOCK_MS;
    o->http = http;
    o->redis = redis;
    o->requests = requests;
    o->seconds = seconds;
    return o;
}

/* Replaces the Redis connection. */
void rd_oauth_set_redis(rd_oauth *o, redisContext *redis)
{
    if (o != NULL)
        o->redis = redis;
}

/* Frees the keeper, wiping the secrets it holds. */
void rd_oauth_free(rd_oauth *o)
{
    if (o == NULL)
        return;
    free(o->url);
    free(o->client_id);
    if (o->client_secret)
        memset(o->client_secret, 0, strlen(o->client_secret));
    free(o->client_secret);
    if (o->refresh_token)
        memset(o->refresh_token, 0, strlen(o->refresh_token));
    free(o->refresh_token);
    free(o->hash_key);
    free(o->lock_key);
    memset(o, 0, sizeof *o);
    free(o);
}

/* Fills `err` for a failure that is worth retrying later (Redis, a wait that ran out). */
static int transient(calllog_error *err, const char *what, const char *why)
{
    error_set(err, CALLLOG_TRANSIENT, "oauth: %s: %s", what, why ? why : "failed");
    return -1;
}

/* Fills `err` from a failed Redis command (reply NULL or an error reply). */
static int redis_error(rd_oauth *o, redisReply *r, const char *what, calllog_error *err)
{
    const char *why = "no connection";
    if (r != NULL && r->type == REDIS_REPLY_ERROR)
        why = r->str;
    else if (o->redis != NULL && o->redis->err)
        why = o->redis->errstr;
    transient(err, what, why);
    if (r != NULL)
        freeReplyObject(r);
    return -1;
}

/* Copies a bulk string element (or "" for nil) into `out`. */
static void copy_element(const redisReply *e, char *out, size_t outlen)
{
    out[0] = '\0';
    if (e != NULL && e->type == REDIS_REPLY_STRING && (size_t)e->len < outlen) {
        memcpy(out, e->str, (size_t)e->len);
        out[e->len] = '\0';
    }
}

/* Reads the hash. Returns 0 or -1 with `err` filled. */
static int tokens_read(rd_oauth *o, rd_tokens *t, calllog_error *err)
{
    memset(t, 0, sizeof *t);
    if (o->redis == NULL)
        return redis_error(o, NULL, "HMGET", err);
    redisReply *r = redisCommand(o->redis,
                                 "HMGET %s access_token access_expires_at_ms "
                                 "refresh_token",
                                 o->hash_key);
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 3)
        return redis_error(o, r, "HMGET", err);
    char num[32];
    copy_element(r->element[0], t->access, sizeof t->access);
    copy_element(r->element[1], num, sizeof num);
    copy_element(r->element[2], t->refresh, sizeof t->refresh);
    t->expires_ms = strtoll(num, NULL, 10);
    freeReplyObject(r);
    return 0;
}

/* Writes both tokens and the expiry with one HSET. Returns 0 or -1 with `err` filled. */
static int tokens_write(rd_oauth *o, const char *access, long long expires_ms, const char *refresh,
                        calllog_error *err)
{
    char num[32];
    snprintf(num, sizeof num, "%lld", expires_ms);
    if (o->redis == NULL)
        return redis_error(o, NULL, "HSET", err);
    redisReply *r =
        redisCommand(o->redis, "HSET %s access_token %s access_expires_at_ms %s refresh_token %s",
                     o->hash_key, access, num, refresh);
    if (r == NULL || r->type == REDIS_REPLY_ERROR)
        return redis_error(o, r, "HSET", err);
    freeReplyObject(r);
    return 0;
}

/* Writes back tokens a refresh returned while Redis was failing. Returns 0 or -1. */
static int flush_unsaved(rd_oauth *o, calllog_error *err)
{
    if (!o->unsaved)
        return 0;
    if (tokens_write(o, o->mem_access, o->mem_expires_ms, o->mem_refresh, err) < 0)
        return -1;
    o->unsaved = 0;
    log_info("rdstation oauth tokens stored after a redis failure", LF_S("key", o->hash_key));
    return 0;
}

/* 1 when `t` holds an access token with more than RD_OAUTH_MIN_TTL_MS left. */
static int usable(const rd_tokens *t)
{
    return t->access[0] != '\0' && t->expires_ms - timing_epoch_ms() > RD_OAUTH_MIN_TTL_MS;
}

/* Copies a token out. Returns 0, or -1 when it does not fit. */
static int copy_out(const char *token, char *out, size_t outlen, calllog_error *err)
{
    if (strlen(token) >= outlen)
        return transient(err, "token", "access token longer than the buffer");
    strcpy(out, token);
    return 0;
}

/* Tries to take the refresh lock with value `val`. Returns 1 taken, 0 busy, -1 error. */
static int lock_take(rd_oauth *o, const char *val, calllog_error *err)
{
    if (o->redis == NULL)
        return redis_error(o, NULL, "SET lock", err);
    redisReply *r = redisCommand(o->redis, "SET %s %s NX PX %ld", o->lock_key, val, o->lock_ttl_ms);
    if (r == NULL || r->type == REDIS_REPLY_ERROR)
        return redis_error(o, r, "SET lock", err);
    int taken = r->type == REDIS_REPLY_STATUS;
    freeReplyObject(r);
    return taken;
}

/* Releases the lock if it is still ours (a failure only delays others until it expires). */
static void lock_release(rd_oauth *o, const char *val)
{
    if (o->redis == NULL)
        return;
    redisReply *r = redisCommand(o->redis, "EVAL %s 1 %s %s", LOCK_RELEASE_LUA, o->lock_key, val);
    if (r == NULL || r->type == REDIS_REPLY_ERROR)
        log_warn("rdstation oauth lock release failed; it expires by itself",
                 LF_S("key", o->lock_key));
    if (r != NULL)
        freeReplyObject(r);
}

/* Builds the form body of a refresh request. Returns a malloc'ed string or NULL. */
static char *refresh_form(const rd_oauth *o, const char *refresh)
{
    char *id = http_escape(o->client_id), *secret = http_escape(o->client_secret);
    char *rt = http_escape(refresh), *body = NULL;
    if (id && secret && rt) {
        size_t n = strlen(id) + strlen(secret) + strlen(rt) + 96;
        body = malloc(n);
        if (body)
            snprintf(body, n,
                     "client_id=%s&client_secret=%s&grant_type=refresh_token&refresh_token=%s", id,
                     secret, rt);
    }
    if (secret)
        memset(secret, 0, strlen(secret));
    if (rt)
        memset(rt, 0, strlen(rt));
    free(id);
    free(secret);
    free(rt);
    return body;
}

/* Counts one token request in the CRM metrics. */
static void count_request(rd_oauth *o, long status, double started)
{
    char labels[96];
    if (status > 0)
        snprintf(labels, sizeof labels, "endpoint=\"POST /oauth2/token\",status=\"%ld\"", status);
    else
        snprintf(labels, sizeof labels, "endpoint=\"POST /oauth2/token\",status=\"error\"");
    metric_add(o->requests, labels, 1);
    metric_observe(o->seconds, "endpoint=\"POST /oauth2/token\"", timing_mono_s() - started);
}

/* Fills `err` for a refresh RD refused with 400/401: permanent, says what to do. */
static int refresh_rejected(rd_oauth *o, const http_response *r, calllog_error *err)
{
    const char *code = NULL;
    json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
    json_t *e = j ? json_object_get(j, "error") : NULL;
    if (json_is_string(e))
        code = json_string_value(e);
    error_set(err, CALLLOG_PERMANENT, "POST /oauth2/token: %ld", r->status);
    err->http_status = r->status;
    if (code != NULL && strcmp(code, "invalid_client") == 0)
        snprintf(err->message, sizeof err->message,
                 "POST /oauth2/token: %ld invalid_client: RD Station rejected the OAuth client; "
                 "check RDSTATION_CLIENT_ID and RDSTATION_CLIENT_SECRET",
                 r->status);
    else
        snprintf(err->message, sizeof err->message,
                 "POST /oauth2/token: %ld %.40s: RD Station rejected the refresh token; set a new "
                 "RDSTATION_REFRESH_TOKEN and clear the stored tokens with "
                 "`redis-cli -u \"$REDIS_URL\" DEL %.150s`, then restart the workers",
                 r->status, code ? code : "refused", o->hash_key);
    log_error("rdstation oauth refresh rejected", LF_I("http_status", r->status),
              LF_S("error", code ? code : ""), LF_S("key", o->hash_key));
    json_decref(j); /* `code` points into it */
    return -1;
}

/* Reads a successful token answer. Returns 0 or -1 (malformed) with `err` filled. */
static int parse_grant(const http_response *r, rd_tokens *t, const char *sent_refresh,
                       calllog_error *err)
{
    json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
    json_t *a = j ? json_object_get(j, "access_token") : NULL;
    json_t *rt = j ? json_object_get(j, "refresh_token") : NULL;
    json_t *ex = j ? json_object_get(j, "expires_in") : NULL;
    int rc = -1;
    memset(t, 0, sizeof *t);
    if (json_is_string(a) && json_string_length(a) > 0 &&
        json_string_length(a) < sizeof t->access) {
        long long secs = json_is_integer(ex)  ? (long long)json_integer_value(ex)
                         : json_is_number(ex) ? (long long)json_number_value(ex)
                                              : RD_OAUTH_DEFAULT_EXPIRES_S;
        strcpy(t->access, json_string_value(a));
        t->expires_ms = timing_epoch_ms() + (secs > 0 ? secs : RD_OAUTH_DEFAULT_EXPIRES_S) * 1000;
        /* RD always rotates; should a reply lack the new one, the old one still stands. */
        const char *nr = json_is_string(rt) ? json_string_value(rt) : sent_refresh;
        if (strlen(nr) < sizeof t->refresh) {
            strcpy(t->refresh, nr);
            rc = 0;
        }
    }
    json_decref(j);
    if (rc < 0)
        transient(err, "POST /oauth2/token", "answer without a usable access_token");
    return rc;
}

/* Refreshes while holding the lock: re-reads the hash (another worker may have been
 * faster), sends the refresh token, stores the answer. Returns 0 with the token in `out`,
 * or -1 with `err` filled. */
static int refresh_locked(rd_oauth *o, char *out, size_t outlen, calllog_error *err)
{
    rd_tokens st, fresh;
    http_response r;
    if (tokens_read(o, &st, err) < 0)
        return -1;
    if (usable(&st))
        return copy_out(st.access, out, outlen, err);
    const char *sent = st.refresh[0] ? st.refresh : o->refresh_token;
    if (sent[0] == '\0')
        return transient(err, "refresh", "no refresh token: set RDSTATION_REFRESH_TOKEN");
    char *form = refresh_form(o, sent);
    if (form == NULL)
        return transient(err, "refresh", "out of memory");
    static const char *const headers[] = {"Content-Type: application/x-www-form-urlencoded",
                                          "Accept: application/json", NULL};
    double started = timing_mono_s();
    int hrc = http_request(o->http, "POST", o->url, headers, NULL, form, strlen(form), &r, err);
    memset(form, 0, strlen(form));
    free(form);
    count_request(o, hrc == 0 ? r.status : 0, started);
    if (hrc < 0)
        return -1;
    int rc;
    if (r.status == 400 || r.status == 401) {
        rc = refresh_rejected(o, &r, err);
    } else if (r.status < 200 || r.status > 299) {
        http_error_from_response(&r, "POST /oauth2/token", err);
        rc = -1;
    } else if ((rc = parse_grant(&r, &fresh, sent, err)) == 0) {
        if (tokens_write(o, fresh.access, fresh.expires_ms, fresh.refresh, err) < 0) {
            /* RD already rotated: keep the new tokens here and store them later. */
            strcpy(o->mem_access, fresh.access);
            strcpy(o->mem_refresh, fresh.refresh);
            o->mem_expires_ms = fresh.expires_ms;
            o->unsaved = 1;
            log_error("rdstation oauth tokens could not be stored; kept in memory",
                      LF_S("error", err->message));
        }
        log_info("rdstation oauth token refreshed", LF_S("key", o->hash_key),
                 LF_I("expires_in_s", (fresh.expires_ms - timing_epoch_ms()) / 1000));
        rc = copy_out(fresh.access, out, outlen, err);
    }
    http_response_free(&r);
    return rc;
}

/* Returns a usable access token, refreshing under the lock when needed; see the header. */
int rd_oauth_token(rd_oauth *o, char *out, size_t outlen, calllog_error *err)
{
    rd_tokens st;
    char val[40];
    if (o == NULL || out == NULL || outlen == 0)
        return transient(err, "token", "bad arguments");
    if (o->unsaved && flush_unsaved(o, err) < 0) {
        rd_tokens mem = {{0}, o->mem_expires_ms, {0}};
        strcpy(mem.access, o->mem_access);
        return usable(&mem) ? copy_out(mem.access, out, outlen, err) : -1;
    }
    if (tokens_read(o, &st, err) < 0)
        return -1;
    if (usable(&st))
        return copy_out(st.access, out, outlen, err);
    snprintf(val, sizeof val, "%016" PRIx64 "%016" PRIx64, retry_random(), retry_random());
    double deadline = timing_mono_s() + (double)(o->lock_ttl_ms + 1000) / 1000.0;
    for (;;) {
        int taken = lock_take(o, val, err);
        if (taken < 0)
            return -1;
        if (taken) {
            int rc = refresh_locked(o, out, outlen, err);
            lock_release(o, val);
            return rc;
        }
        timing_sleep_ms(RD_OAUTH_POLL_MS);
        if (tokens_read(o, &st, err) < 0)
            return -1;
        if (usable(&st))
            return copy_out(st.access, out, outlen, err);
        if (timing_mono_s() > deadline)
            return transient(err, "token", "another worker's refresh did not finish in time");
    }
}

/* Forgets the stored access token if it is still the one that failed. */
int rd_oauth_invalidate(rd_oauth *o, const char *failed, calllog_error *err)
{
    if (o == NULL || failed == NULL)
        return transient(err, "invalidate", "bad arguments");
    if (o->unsaved && strcmp(o->mem_access, failed) == 0)
        o->mem_expires_ms = 0;
    if (o->redis == NULL)
        return redis_error(o, NULL, "EVAL invalidate", err);
    redisReply *r = redisCommand(o->redis, "EVAL %s 1 %s %s", INVALIDATE_LUA, o->hash_key, failed);
    if (r == NULL || r->type == REDIS_REPLY_ERROR)
        return redis_error(o, r, "EVAL invalidate", err);
    freeReplyObject(r);
    return 0;
}
