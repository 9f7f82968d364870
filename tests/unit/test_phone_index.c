/* test_phone_index — worker/phone_index on a real Redis and the RD Station mock.
 *
 * Redis is the one at CALLLOG_TEST_REDIS_URL; RD Station is tests/mocks/rdstation_mock.py
 * (started per test by tests/lib/mock_server). Each test uses its own key prefix and
 * deletes its keys. Checks the reading side (one key per phone form; a contact with an
 * open deal preferred; an old or missing index and unreadable entries mean "look it up
 * live") and the building side (a refresh files every phone of every contact with its open
 * deal, swaps the index in whole, and refuses to swap once its lease is someone else's). */
#include <criterion/criterion.h>

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/keys.h"
#include "common/timing.h"
#include "tests/lib/mock_server.h"
#include "tests/lib/redis_fixture.h"
#include "worker/phone_index.h"

#define ME "test-worker"

static redisContext *rc;
static calllog_keys keys;
static char prefix[128];
static mock_server rd;
static rd_client *cl;
static char base_url[160];

/* Unique keys and a Redis connection. */
static void setup(void)
{
    redis_fixture_name(prefix, sizeof prefix, "phoneidx");
    cr_assert_eq(keys_build(prefix, &keys), 0);
    rc = redis_fixture_connect();
}

/* Deletes this test's keys and stops the mock when one was started. */
static void teardown(void)
{
    if (cl)
        rd_client_free(cl);
    cl = NULL;
    if (rd.pid > 0) {
        mock_stop(&rd);
        curl_global_cleanup();
    }
    if (!rc)
        return;
    redis_fixture_do(rc, "DEL %s %s %s %s:next:%s", keys.phone_index, keys.phone_index_meta,
                     keys.phone_index_leader, keys.phone_index, ME);
    redisFree(rc);
    rc = NULL;
}

TestSuite(phone_index, .init = setup, .fini = teardown, .timeout = 60);

/* Marks the index as refreshed `age_ms` ago. */
static void refreshed_ago(long long age_ms)
{
    redis_fixture_do(rc, "HSET %s refreshed_ms %lld", keys.phone_index_meta,
                     timing_epoch_ms() - age_ms);
}

Test(phone_index, finds_a_phone_under_its_key_and_prefers_a_contact_with_a_deal)
{
    refreshed_ago(1000);
    redis_fixture_do(rc, "HSET %s b11971730783 %s s971730783 %s", keys.phone_index,
                     "{\"c\":\"c1\",\"n\":\"Maria\",\"d\":\"\",\"u\":\"\"}",
                     "{\"c\":\"c2\",\"n\":\"Ana\",\"d\":\"d2\",\"u\":\"u2\"}");
    phone_index_hit hit;
    cr_assert_eq(phone_index_find(rc, &keys, "+5511971730783", 60000, &hit), PHONE_INDEX_FOUND);
    cr_expect_str_eq(hit.contact_id, "c2");
    cr_expect_str_eq(hit.deal_id, "d2");
    cr_expect_str_eq(hit.deal_user_id, "u2");
    /* the old 8-digit form of the same mobile has the same keys */
    cr_assert_eq(phone_index_find(rc, &keys, "+551171730783", 60000, &hit), PHONE_INDEX_FOUND);
    redis_fixture_do(rc, "HDEL %s s971730783", keys.phone_index);
    cr_assert_eq(phone_index_find(rc, &keys, "+5511971730783", 60000, &hit), PHONE_INDEX_NO_DEAL);
    cr_expect_str_eq(hit.contact_id, "c1");
    cr_expect_str_eq(hit.contact_name, "Maria");
    cr_expect_eq(phone_index_find(rc, &keys, "+5511988887777", 60000, &hit), PHONE_INDEX_UNKNOWN);
}

Test(phone_index, an_old_missing_or_unreadable_index_is_not_used)
{
    phone_index_hit hit;
    redis_fixture_do(rc, "HSET %s b11971730783 %s", keys.phone_index,
                     "{\"c\":\"c1\",\"n\":\"\",\"d\":\"d1\",\"u\":\"\"}");
    cr_expect_eq(phone_index_find(rc, &keys, "+5511971730783", 60000, &hit), PHONE_INDEX_UNKNOWN,
                 "an index never refreshed");
    refreshed_ago(120000);
    cr_expect_eq(phone_index_find(rc, &keys, "+5511971730783", 60000, &hit), PHONE_INDEX_UNKNOWN,
                 "an index older than the maximum age");
    refreshed_ago(0);
    cr_expect_eq(phone_index_find(rc, &keys, "+5511971730783", 60000, &hit), PHONE_INDEX_FOUND);
    redis_fixture_do(rc, "HSET %s b11971730783 not-json", keys.phone_index);
    cr_expect_eq(phone_index_find(rc, &keys, "+5511971730783", 60000, &hit), PHONE_INDEX_UNKNOWN);
    cr_expect_eq(phone_index_find(rc, &keys, "anonymous", 60000, &hit), PHONE_INDEX_UNKNOWN);
}

/* rd_acquire_fn that admits everything. */
static int admit(void *arg, ratelimit_lane lane)
{
    (void)arg;
    (void)lane;
    return 0;
}

/* Starts the RD mock (v1) and a client for it. */
static void start_rd(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    cr_assert_eq(mock_start(&rd, "rdstation_mock.py", NULL), 0, "RD mock did not start");
    snprintf(base_url, sizeof base_url, "%s/api/v1", rd.base);
    rd_settings s = {.api = RD_API_V1,
                     .base_url = base_url,
                     .token = "mock-v1-token",
                     .timeout_ms = 10000,
                     .acquire = admit,
                     .background = 1};
    cl = rd_client_new(&s, rc, &keys);
    cr_assert_not_null(cl);
}

/* Seeds one contact with the given phones (a JSON list) and deals (a JSON list). */
static void seed(const char *name, const char *phones, const char *deals)
{
    char spec[1024];
    snprintf(spec, sizeof spec, "{\"name\":\"%s\",\"phones\":%s,\"deals\":%s}", name, phones,
             deals);
    cr_assert_eq(mock_post(&rd, "/_mock/contacts", spec, NULL), 201, "seed %s", spec);
}

Test(phone_index, a_refresh_files_every_phone_with_its_open_deal_and_swaps_in_whole)
{
    start_rd();
    seed("Maria", "[\"(11) 97173-0783\",\"+55 21 3333-4444\"]",
         "[{\"name\":\"lost\",\"status\":\"lost\"},{\"name\":\"open\",\"status\":\"ongoing\"}]");
    seed("Sem negócio", "[\"+14155551212\"]", "[]");
    phone_index_stats st;
    calllog_error err;
    cr_assert_eq(phone_index_refresh(rc, &keys, cl, ME, 10000, &st, &err), CALLLOG_OK, "%s",
                 err.message);
    cr_expect_eq(st.contacts, 2);
    cr_expect_eq(st.phones, 3);
    cr_expect_eq(st.deals, 1);
    phone_index_hit hit;
    cr_assert_eq(phone_index_find(rc, &keys, "+5511971730783", 60000, &hit), PHONE_INDEX_FOUND);
    cr_expect_str_eq(hit.contact_name, "Maria");
    cr_assert_eq(phone_index_find(rc, &keys, "+552133334444", 60000, &hit), PHONE_INDEX_FOUND);
    cr_assert_eq(phone_index_find(rc, &keys, "+14155551212", 60000, &hit), PHONE_INDEX_NO_DEAL);
    phone_index_state state;
    cr_assert_eq(phone_index_state_read(rc, &keys, &state), 0);
    cr_expect_eq(state.contacts, 2);
    cr_expect_str_eq(state.holder, ME);
    redisReply *r = redisCommand(rc, "TTL %s", keys.phone_index);
    cr_assert(r && r->type == REDIS_REPLY_INTEGER);
    cr_expect_eq(r->integer, -1, "the swapped-in index must not keep the build key's expiry");
    freeReplyObject(r);
}

Test(phone_index, a_refresh_whose_lease_was_taken_swaps_nothing)
{
    start_rd();
    seed("Maria", "[\"(11) 97173-0783\"]", "[{\"name\":\"open\",\"status\":\"ongoing\"}]");
    redis_fixture_do(rc, "SET %s someone-else PX 10000", keys.phone_index_leader);
    phone_index_stats st;
    calllog_error err;
    cr_assert_neq(phone_index_refresh(rc, &keys, cl, ME, 10000, &st, &err), CALLLOG_OK);
    cr_expect_neq(strstr(err.message, "lease"), NULL, "%s", err.message);
    redisReply *r = redisCommand(rc, "EXISTS %s", keys.phone_index);
    cr_assert(r && r->type == REDIS_REPLY_INTEGER);
    cr_expect_eq(r->integer, 0);
    freeReplyObject(r);
}
