/* lookup_cache — Redis cache of phone → contact/deal look-ups (see lookup_cache.h). */
#include "worker/lookup_cache.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/phone.h"

/* The cache key for a phone: prefix + "phone:" + its digits. */
static int cache_key(const calllog_keys *k, const char *phone, char *out, size_t outlen)
{
    char digits[40];
    if (phone_digits(phone, digits, sizeof digits) <= 0)
        return -1;
    snprintf(out, outlen, "%sphone:%s", k->cache, digits);
    return 0;
}

/* Copies a string member of `o` into `out` ("" when absent). */
static void copy_member(json_t *o, const char *name, char *out, size_t outlen)
{
    const char *v = json_string_value(json_object_get(o, name));
    snprintf(out, outlen, "%s", v ? v : "");
}

lookup_cache_status lookup_cache_get(redisContext *c, const calllog_keys *k, const char *phone,
                                     lookup_cache_hit *out)
{
    char key[256];
    memset(out, 0, sizeof *out);
    if (cache_key(k, phone, key, sizeof key) != 0)
        return LOOKUP_CACHE_MISS;
    redisReply *r = redisCommand(c, "GET %s", key);
    json_t *o = r && r->type == REDIS_REPLY_STRING ? json_loads(r->str, 0, NULL) : NULL;
    if (r)
        freeReplyObject(r);
    if (!o)
        return LOOKUP_CACHE_MISS;
    copy_member(o, "contact_id", out->contact_id, sizeof out->contact_id);
    copy_member(o, "deal_id", out->deal_id, sizeof out->deal_id);
    copy_member(o, "deal_user_id", out->deal_user_id, sizeof out->deal_user_id);
    const char *miss = json_string_value(json_object_get(o, "miss"));
    lookup_cache_status st =
        miss ? (strcmp(miss, "no_deal") == 0 ? LOOKUP_CACHE_NO_DEAL : LOOKUP_CACHE_NO_CONTACT)
        : out->deal_id[0] ? LOOKUP_CACHE_FOUND
                          : LOOKUP_CACHE_MISS;
    json_decref(o);
    return st;
}

/* SET key value EX ttl, ignoring failures (the cache is an optimisation). */
static void store(redisContext *c, const calllog_keys *k, const char *phone, json_t *o, long ttl_s)
{
    char key[256];
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    if (text && ttl_s > 0 && cache_key(k, phone, key, sizeof key) == 0) {
        redisReply *r = redisCommand(c, "SET %s %s EX %ld", key, text, ttl_s);
        if (r)
            freeReplyObject(r);
    }
    free(text);
    json_decref(o);
}

void lookup_cache_put_found(redisContext *c, const calllog_keys *k, const char *phone,
                            const lookup_cache_hit *hit, long ttl_s)
{
    store(c, k, phone,
          json_pack("{s:s,s:s,s:s}", "contact_id", hit->contact_id, "deal_id", hit->deal_id,
                    "deal_user_id", hit->deal_user_id),
          ttl_s);
}

void lookup_cache_put_missing(redisContext *c, const calllog_keys *k, const char *phone,
                              lookup_cache_status why, const char *contact_id, long ttl_s)
{
    store(c, k, phone,
          json_pack("{s:s,s:s}", "miss", why == LOOKUP_CACHE_NO_DEAL ? "no_deal" : "no_contact",
                    "contact_id", contact_id ? contact_id : ""),
          ttl_s);
}

void lookup_cache_forget(redisContext *c, const calllog_keys *k, const char *phone)
{
    char key[256];
    if (cache_key(k, phone, key, sizeof key) != 0)
        return;
    redisReply *r = redisCommand(c, "DEL %s", key);
    if (r)
        freeReplyObject(r);
}
