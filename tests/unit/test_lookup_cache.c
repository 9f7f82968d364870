/* test_lookup_cache — worker/lookup_cache (phone → RD contact/deal) on a real Redis.
 *
 * The server is the one at CALLLOG_TEST_REDIS_URL (tests/run.sh starts it through
 * tests/lib/services.sh); without it every test fails, saying so. Each test uses its own
 * key prefix and deletes what it wrote.
 *
 * Covered: found / no_contact / no_deal round trips, the key name (prefix + "phone:" +
 * digits, so every spelling of a number shares one entry), the TTL, forget, a phone with no
 * digits (never stored, always a miss), a zero TTL, an entry without a deal id, and entries
 * that are not the cache's JSON. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/keys.h"
#include "common/redis_client.h"
#include "tests/lib/redis_fixture.h"
#include "worker/lookup_cache.h"

#define PHONE "+55 (11) 97173-0783"
#define DIGITS "5511971730783"

static redisContext *rc;
static calllog_keys keys;

/* A unique prefix for this test. */
static void setup(void)
{
    char prefix[96];
    redis_fixture_name(prefix, sizeof prefix, "cache");
    cr_assert_eq(keys_build(prefix, &keys), 0);
    rc = redis_fixture_connect();
}

/* Deletes every key under this test's prefix. */
static void teardown(void)
{
    if (!rc)
        return;
    char pattern[256];
    snprintf(pattern, sizeof pattern, "%s*", keys.cache);
    redisReply *r = redisCommand(rc, "KEYS %s", pattern);
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        redisReply *d = redisCommand(rc, "DEL %s", r->element[i]->str);
        if (d)
            freeReplyObject(d);
    }
    if (r)
        freeReplyObject(r);
    redisFree(rc);
    rc = NULL;
}

TestSuite(lookup_cache, .init = setup, .fini = teardown, .timeout = 30);

/* The cache key the module should use for DIGITS. */
static void digits_key(char *out, size_t outlen)
{
    snprintf(out, outlen, "%sphone:%s", keys.cache, DIGITS);
}

/* An integer reply of a one-key command. */
static long long key_int(const char *command, const char *key)
{
    redisReply *r = redisCommand(rc, "%s %s", command, key);
    cr_assert(r && r->type == REDIS_REPLY_INTEGER, "%s %s", command, key);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

/* Number of keys under this test's cache prefix. */
static size_t cache_keys(void)
{
    char pattern[256];
    snprintf(pattern, sizeof pattern, "%s*", keys.cache);
    redisReply *r = redisCommand(rc, "KEYS %s", pattern);
    cr_assert(r && r->type == REDIS_REPLY_ARRAY);
    size_t n = r->elements;
    freeReplyObject(r);
    return n;
}

Test(lookup_cache, empty_cache_is_a_miss)
{
    lookup_cache_hit h;
    memset(&h, 'x', sizeof h);
    cr_assert_eq(lookup_cache_get(rc, &keys, PHONE, &h), LOOKUP_CACHE_MISS);
    cr_assert_str_eq(h.contact_id, "", "out is cleared on a miss");
    cr_assert_str_eq(h.deal_id, "");
}

Test(lookup_cache, found_round_trip)
{
    lookup_cache_hit in = {"contact-1", "deal-2", "user-3"}, out;
    lookup_cache_put_found(rc, &keys, PHONE, &in, 3600);
    cr_assert_eq(lookup_cache_get(rc, &keys, PHONE, &out), LOOKUP_CACHE_FOUND);
    cr_assert_str_eq(out.contact_id, "contact-1");
    cr_assert_str_eq(out.deal_id, "deal-2");
    cr_assert_str_eq(out.deal_user_id, "user-3");
}

Test(lookup_cache, key_is_prefix_phone_digits_with_ttl)
{
    lookup_cache_hit in = {"c", "d", ""};
    lookup_cache_put_found(rc, &keys, PHONE, &in, 3600);
    char key[300];
    digits_key(key, sizeof key);
    cr_assert_eq(key_int("EXISTS", key), 1, "expected key %s", key);
    long long ttl = key_int("TTL", key);
    cr_assert(ttl > 0 && ttl <= 3600, "TTL %lld", ttl);
    cr_assert_eq(cache_keys(), 1, "exactly one key written");
    redisReply *r = redisCommand(rc, "GET %s", key);
    cr_assert(r && r->type == REDIS_REPLY_STRING);
    cr_assert(strstr(r->str, "\"deal_id\":\"d\"") != NULL, "readable JSON: %s", r->str);
    freeReplyObject(r);
}

Test(lookup_cache, every_spelling_of_a_number_shares_the_entry)
{
    lookup_cache_hit in = {"c9", "d9", "u9"}, out;
    lookup_cache_put_found(rc, &keys, "+5511971730783", &in, 600);
    const char *spellings[] = {PHONE, DIGITS, "55-11-97173-0783", "tel:+55 11 971730783"};
    for (size_t i = 0; i < sizeof spellings / sizeof *spellings; i++) {
        cr_assert_eq(lookup_cache_get(rc, &keys, spellings[i], &out), LOOKUP_CACHE_FOUND, "%s",
                     spellings[i]);
        cr_assert_str_eq(out.deal_id, "d9");
    }
    cr_assert_eq(lookup_cache_get(rc, &keys, "11971730783", &out), LOOKUP_CACHE_MISS,
                 "different digits, different entry");
}

Test(lookup_cache, no_contact_round_trip)
{
    lookup_cache_put_missing(rc, &keys, PHONE, LOOKUP_CACHE_NO_CONTACT, NULL, 300);
    lookup_cache_hit out;
    cr_assert_eq(lookup_cache_get(rc, &keys, PHONE, &out), LOOKUP_CACHE_NO_CONTACT);
    cr_assert_str_eq(out.contact_id, "");
    cr_assert_str_eq(out.deal_id, "");
    char key[300];
    digits_key(key, sizeof key);
    long long ttl = key_int("TTL", key);
    cr_assert(ttl > 0 && ttl <= 300, "TTL %lld", ttl);
}

Test(lookup_cache, no_deal_round_trip_keeps_contact)
{
    lookup_cache_put_missing(rc, &keys, PHONE, LOOKUP_CACHE_NO_DEAL, "contact-7", 120);
    lookup_cache_hit out;
    cr_assert_eq(lookup_cache_get(rc, &keys, PHONE, &out), LOOKUP_CACHE_NO_DEAL);
    cr_assert_str_eq(out.contact_id, "contact-7");
    cr_assert_str_eq(out.deal_id, "");
    char key[300];
    digits_key(key, sizeof key);
    long long ttl = key_int("TTL", key);
    cr_assert(ttl > 0 && ttl <= 120, "TTL %lld", ttl);
}

Test(lookup_cache, later_put_replaces_earlier)
{
    lookup_cache_hit in = {"c1", "d1", "u1"}, out;
    lookup_cache_put_missing(rc, &keys, PHONE, LOOKUP_CACHE_NO_DEAL, "c1", 120);
    lookup_cache_put_found(rc, &keys, PHONE, &in, 3600);
    cr_assert_eq(lookup_cache_get(rc, &keys, PHONE, &out), LOOKUP_CACHE_FOUND);
    char key[300];
    digits_key(key, sizeof key);
    cr_assert(key_int("TTL", key) > 120, "the new TTL applies");
}

Test(lookup_cache, forget)
{
    lookup_cache_hit in = {"c", "d", "u"}, out;
    lookup_cache_put_found(rc, &keys, PHONE, &in, 3600);
    lookup_cache_forget(rc, &keys, DIGITS); /* any spelling */
    cr_assert_eq(lookup_cache_get(rc, &keys, PHONE, &out), LOOKUP_CACHE_MISS);
    cr_assert_eq(cache_keys(), 0);
    lookup_cache_forget(rc, &keys, DIGITS); /* forgetting twice is harmless */
    lookup_cache_forget(rc, &keys, "anonymous");
}

Test(lookup_cache, phone_without_digits_is_never_stored)
{
    lookup_cache_hit in = {"c", "d", "u"}, out;
    const char *phones[] = {"", "anonymous", "+", "Restricted"};
    for (size_t i = 0; i < sizeof phones / sizeof *phones; i++) {
        lookup_cache_put_found(rc, &keys, phones[i], &in, 3600);
        lookup_cache_put_missing(rc, &keys, phones[i], LOOKUP_CACHE_NO_CONTACT, NULL, 3600);
        cr_assert_eq(lookup_cache_get(rc, &keys, phones[i], &out), LOOKUP_CACHE_MISS, "'%s'",
                     phones[i]);
    }
    cr_assert_eq(cache_keys(), 0, "nothing written for digit-less phones");
}

Test(lookup_cache, zero_ttl_is_not_stored)
{
    lookup_cache_hit in = {"c", "d", "u"}, out;
    lookup_cache_put_found(rc, &keys, PHONE, &in, 0);
    cr_assert_eq(lookup_cache_get(rc, &keys, PHONE, &out), LOOKUP_CACHE_MISS);
    cr_assert_eq(cache_keys(), 0);
}

Test(lookup_cache, found_without_deal_id_is_a_miss)
{
    lookup_cache_hit in = {"c", "", "u"}, out;
    lookup_cache_put_found(rc, &keys, PHONE, &in, 3600);
    cr_assert_eq(lookup_cache_get(rc, &keys, PHONE, &out), LOOKUP_CACHE_MISS);
}

Test(lookup_cache, foreign_values_are_misses)
{
    char key[300];
    digits_key(key, sizeof key);
    lookup_cache_hit out;
    redis_fixture_do(rc, "SET %s %s", key, "not json");
    cr_assert_eq(lookup_cache_get(rc, &keys, PHONE, &out), LOOKUP_CACHE_MISS);
    redis_fixture_do(rc, "DEL %s", key);
    redis_fixture_do(rc, "HSET %s a b", key); /* wrong type: GET answers an error */
    cr_assert_eq(lookup_cache_get(rc, &keys, PHONE, &out), LOOKUP_CACHE_MISS);
}
