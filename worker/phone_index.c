/* phone_index — the account's phones in Redis, and the thread that keeps them fresh
 * (see phone_index.h). */
#include "worker/phone_index.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/metrics.h"
#include "common/redis_client.h"
#include "common/shutdown.h"
#include "common/timing.h"
#include "worker/leader.h"
#include "worker/phone.h"
#include "worker/ratelimit.h"

/* Fields per HSET while writing a new index (one pipelined round trip for all of them). */
#define WRITE_BATCH 500
/* The sync's lease: renewed between pages, so a page may take this long at most. */
#define LEASE_MS 60000L
/* A refresh's temporary key outlives a crashed builder by at most this. */
#define TEMP_TTL_MS 900000L
/* First wait after a failed refresh; it doubles up to the refresh interval. */
#define FAILURE_BACKOFF_MS 5000L
/* How often the thread looks at the lease, the schedule and the index's age: an idle
 * worker's thread costs two Redis commands per tick (the lease is 12 ticks long). */
#define TICK_MS 5000
/* Pages read at most per list: RD lists stop at 10 000 records (reference). */
#define MAX_PAGES 200

/* ---- reading ------------------------------------------------------------------------- */

/* Copies string member `name` of `o` into `out` ("" when absent). */
static void copy_member(const json_t *o, const char *name, char *out, size_t outlen)
{
    const char *v = json_string_value(json_object_get(o, name));
    snprintf(out, outlen, "%s", v ? v : "");
}

/* Reads one index value into `out`. Returns PHONE_INDEX_FOUND, _NO_DEAL, or _UNKNOWN when
 * it cannot be read. */
static phone_index_status read_value(const redisReply *v, phone_index_hit *out)
{
    if (!v || v->type != REDIS_REPLY_STRING)
        return PHONE_INDEX_UNKNOWN;
    json_t *o = json_loadb(v->str, v->len, 0, NULL);
    phone_index_status st = PHONE_INDEX_UNKNOWN;
    if (json_is_object(o) && json_string_length(json_object_get(o, "c")) > 0) {
        copy_member(o, "c", out->contact_id, sizeof out->contact_id);
        copy_member(o, "n", out->contact_name, sizeof out->contact_name);
        copy_member(o, "d", out->deal_id, sizeof out->deal_id);
        copy_member(o, "u", out->deal_user_id, sizeof out->deal_user_id);
        st = out->deal_id[0] ? PHONE_INDEX_FOUND : PHONE_INDEX_NO_DEAL;
    }
    json_decref(o);
    return st;
}

/* How good an answer is: a deal beats a contact alone, which beats nothing. */
static int rank(phone_index_status st)
{
    return st == PHONE_INDEX_FOUND ? 2 : st == PHONE_INDEX_NO_DEAL ? 1 : 0;
}

/* Picks the best of the values HMGET returned: one with a deal first. */
static phone_index_status pick_value(const redisReply *r, phone_index_hit *out)
{
    phone_index_status best = PHONE_INDEX_UNKNOWN;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        phone_index_hit h;
        memset(&h, 0, sizeof h);
        phone_index_status st = read_value(r->element[i], &h);
        if (rank(st) > rank(best)) {
            best = st;
            *out = h;
        }
    }
    return best;
}

phone_index_status phone_index_find(redisContext *c, const calllog_keys *k, const char *phone_e164,
                                    long long max_age_ms, phone_index_hit *out)
{
    phone_key_list keys;
    const char *argv[2 + PHONE_KEYS_MAX] = {"HMGET", k->phone_index};
    redisReply *meta = NULL, *vals = NULL;
    memset(out, 0, sizeof *out);
    if (phone_lookup_keys(phone_e164, &keys) < 1)
        return PHONE_INDEX_UNKNOWN;
    for (size_t i = 0; i < keys.count; i++)
        argv[2 + i] = keys.k[i];
    redisAppendCommand(c, "HGET %s refreshed_ms", k->phone_index_meta);
    redisAppendCommandArgv(c, (int)(2 + keys.count), argv, NULL);
    int ok = redisGetReply(c, (void **)&meta) == REDIS_OK &&
             redisGetReply(c, (void **)&vals) == REDIS_OK && meta && vals;
    phone_index_status st = PHONE_INDEX_UNKNOWN;
    if (ok && meta->type == REDIS_REPLY_STRING && timing_epoch_ms() - atoll(meta->str) < max_age_ms)
        st = pick_value(vals, out);
    if (meta)
        freeReplyObject(meta);
    if (vals)
        freeReplyObject(vals);
    if (st == PHONE_INDEX_UNKNOWN)
        memset(out, 0, sizeof *out);
    return st;
}

long long phone_index_max_age_ms(const worker_settings *s)
{
    long long two = 2LL * s->cache_ttl_s * 1000;
    return two > 3600000LL ? two : 3600000LL;
}

long long phone_index_refreshed_ms(redisContext *c, const calllog_keys *k)
{
    redisReply *r = redisCommand(c, "HGET %s refreshed_ms", k->phone_index_meta);
    long long v = -1;
    if (r && r->type == REDIS_REPLY_STRING)
        v = atoll(r->str);
    else if (r && r->type == REDIS_REPLY_NIL)
        v = 0;
    if (r)
        freeReplyObject(r);
    return v;
}

int phone_index_state_read(redisContext *c, const calllog_keys *k, phone_index_state *out)
{
    redisReply *h = NULL;
    memset(out, 0, sizeof *out);
    int rc = leader_state_read(c, k->phone_index_leader, k->phone_index_meta, &h, out->holder,
                               sizeof out->holder, &out->holder_ttl_ms);
    if (rc == 0) {
        out->refreshed_ms = redis_hash_ll(h, "refreshed_ms");
        out->contacts = redis_hash_ll(h, "contacts");
        out->phones = redis_hash_ll(h, "phones");
        out->pages = redis_hash_ll(h, "pages");
        out->duration_ms = redis_hash_ll(h, "duration_ms");
        freeReplyObject(h);
    }
    return rc;
}

/* ---- building ------------------------------------------------------------------------ */

/* The index being built, in memory: key -> value object, and (v2) contact -> open deal. */
typedef struct build {
    json_t *entries;
    json_t *deals;
    phone_index_stats *stats;
    redisContext *redis;
    const calllog_keys *keys;
    const char *me;
    long lease_ms;
} build;

/* The value of a contact's phones: {"c", "n", "d", "u"}. NULL out of memory. */
static json_t *entry_value(const char *contact_id, const char *name, const rd_deal *deal)
{
    return json_pack("{s:s, s:s, s:s, s:s}", "c", contact_id, "n", name ? name : "", "d",
                     deal && deal->id[0] ? deal->id : "", "u", deal ? deal->user_id : "");
}

/* Files `value` under `key` unless a contact with an open deal is there already. Steals
 * `value`. Returns 0, or -1 out of memory. */
static int file_entry(build *b, const char *key, json_t *value)
{
    json_t *cur = json_object_get(b->entries, key);
    if (cur && (json_string_length(json_object_get(cur, "d")) > 0 ||
                json_string_length(json_object_get(value, "d")) == 0)) {
        json_decref(value);
        return 0;
    }
    return json_object_set_new(b->entries, key, value);
}

/* The open deal of a listed contact: v1 from its summaries, v2 from the deals listed. */
static void contact_deal(build *b, const rd_listed_contact *lc, rd_deal *out)
{
    memset(out, 0, sizeof *out);
    if (lc->deals_listed) {
        *out = lc->deal;
        return;
    }
    json_t *d = json_object_get(b->deals, lc->id);
    if (d) {
        copy_member(d, "d", out->id, sizeof out->id);
        copy_member(d, "u", out->user_id, sizeof out->user_id);
    }
}

/* rd_contact_fn: files every key of every phone of one contact. */
static int on_contact(void *arg, const rd_listed_contact *lc)
{
    build *b = arg;
    rd_deal deal;
    contact_deal(b, lc, &deal);
    b->stats->contacts++;
    b->stats->deals += deal.id[0] != '\0';
    for (size_t i = 0; i < lc->nphones; i++) {
        phone_key_list keys;
        phone_index_keys(lc->phones[i], &keys);
        b->stats->phones += keys.count > 0;
        for (size_t j = 0; j < keys.count; j++) {
            json_t *v = entry_value(lc->id, lc->name, &deal);
            if (!v || file_entry(b, keys.k[j], v) != 0)
                return -1;
        }
    }
    return 0;
}

/* rd_deal_fn (v2): remembers each contact's open deal updated last. */
static int on_deal(void *arg, const rd_listed_deal *ld)
{
    build *b = arg;
    for (size_t i = 0; i < ld->ncontacts; i++) {
        json_t *cur = json_object_get(b->deals, ld->contact_ids[i]);
        if (cur && json_integer_value(json_object_get(cur, "t")) >= ld->updated_ms)
            continue;
        json_t *v = json_pack("{s:s, s:s, s:I}", "d", ld->deal.id, "u", ld->deal.user_id, "t",
                              (json_int_t)ld->updated_ms);
        if (!v || json_object_set_new(b->deals, ld->contact_ids[i], v) != 0)
            return -1;
    }
    return 0;
}

/* Renews the lease between pages. Returns 0, or -1 with `err` filled when it is lost. */
static int keep_lease(build *b, calllog_error *err)
{
    int role = leader_hold(b->redis, b->keys->phone_index_leader, b->me, b->lease_ms, err);
    if (role == 0)
        error_set(err, CALLLOG_TRANSIENT, "the phone index lease was lost");
    return role > 0 ? 0 : -1;
}

/* Pages one list to its end with `page_fn`. Returns CALLLOG_OK or a negative code. */
static calllog_code read_all(build *b, rd_client *rd, int deals, calllog_error *err)
{
    int more = 1;
    for (int page = 1; more && page <= MAX_PAGES; page++) {
        if (shutdown_requested())
            return error_set(err, CALLLOG_TRANSIENT, "stopping");
        if (keep_lease(b, err) != 0)
            return err->code;
        calllog_code st = deals ? rd_list_open_deals(rd, page, on_deal, b, &more, err)
                                : rd_list_contacts(rd, page, on_contact, b, &more, err);
        if (st != CALLLOG_OK)
            return st;
        b->stats->pages++;
    }
    return CALLLOG_OK;
}

/* Reads every reply of `n` pipelined commands. Returns 0, or -1 with `err` filled. */
static int read_replies(redisContext *c, int n, calllog_error *err)
{
    int rc = 0;
    for (int i = 0; i < n; i++) {
        redisReply *r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK || redis_reply_failed(c, r, err))
            rc = -1;
        if (r)
            freeReplyObject(r);
        if (c->err)
            return -1;
    }
    return rc;
}

/* Writes the entries to `temp` in pipelined HSETs of WRITE_BATCH fields, the key expiring
 * TEMP_TTL_MS after each. Returns 0 or -1. */
static int write_entries(build *b, const char *temp, calllog_error *err)
{
    const char *argv[2 + 2 * WRITE_BATCH];
    char *texts[WRITE_BATCH];
    const char *key;
    json_t *value;
    int argc = 2, commands = 0, n = 0, rc = 0;
    argv[0] = "HSET";
    argv[1] = temp;
    redisAppendCommand(b->redis, "DEL %s", temp);
    commands++;
    void *iter = json_object_iter(b->entries);
    while (iter && rc == 0) {
        key = json_object_iter_key(iter);
        value = json_object_iter_value(iter);
        iter = json_object_iter_next(b->entries, iter);
        if ((texts[n] = json_dumps(value, JSON_COMPACT)) == NULL) {
            error_set(err, CALLLOG_NOMEM, "out of memory");
            rc = -1;
            break;
        }
        argv[argc++] = key;
        argv[argc++] = texts[n++];
        if (n == WRITE_BATCH || !iter) { /* each batch sets the expiry: a crash leaves none */
            redisAppendCommandArgv(b->redis, argc, argv, NULL);
            redisAppendCommand(b->redis, "PEXPIRE %s %ld", temp, TEMP_TTL_MS);
            commands += 2;
            for (int i = 0; i < n; i++)
                free(texts[i]);
            argc = 2;
            n = 0;
        }
    }
    for (int i = 0; i < n; i++)
        free(texts[i]);
    return read_replies(b->redis, commands, err) || rc ? -1 : 0;
}

/* KEYS: lease, temp, index, meta. ARGV: me, refreshed_ms, contacts, phones, pages,
 * duration_ms, entries. Swaps the new index in while `me` holds the lease. */
static const char lua_swap[] =
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then\n"
    "  redis.call('DEL', KEYS[2])\n"
    "  return redis.error_reply('the phone index lease was lost')\n"
    "end\n"
    "if tonumber(ARGV[7]) > 0 then\n"
    "  redis.call('RENAME', KEYS[2], KEYS[3])\n"
    "  redis.call('PERSIST', KEYS[3])\n"
    "else\n"
    "  redis.call('DEL', KEYS[2], KEYS[3])\n"
    "end\n"
    "redis.call('HSET', KEYS[4], 'refreshed_ms', ARGV[2], 'contacts', ARGV[3], 'phones',\n"
    "  ARGV[4], 'pages', ARGV[5], 'duration_ms', ARGV[6], 'entries', ARGV[7], 'holder', ARGV[1])\n"
    "return 1\n";

/* Swaps the index written to `temp` in and records the refresh. Returns 0 or -1. */
static int swap_in(build *b, const char *temp, long long started_ms, calllog_error *err)
{
    char now[24], contacts[24], phones[24], pages[24], took[24], entries[24];
    long long t = timing_epoch_ms();
    snprintf(now, sizeof now, "%lld", t);
    snprintf(contacts, sizeof contacts, "%ld", b->stats->contacts);
    snprintf(phones, sizeof phones, "%ld", b->stats->phones);
    snprintf(pages, sizeof pages, "%ld", b->stats->pages);
    snprintf(took, sizeof took, "%lld", t - started_ms);
    snprintf(entries, sizeof entries, "%zu", json_object_size(b->entries));
    const char *args[] = {b->keys->phone_index_leader,
                          temp,
                          b->keys->phone_index,
                          b->keys->phone_index_meta,
                          b->me,
                          now,
                          contacts,
                          phones,
                          pages,
                          took,
                          entries};
    redisReply *r = redis_eval(b->redis, lua_swap, 4, 11, args, err);
    if (r)
        freeReplyObject(r);
    return r ? 0 : -1;
}

calllog_code phone_index_refresh(redisContext *c, const calllog_keys *k, rd_client *rd,
                                 const char *me, long lease_ms, phone_index_stats *stats,
                                 calllog_error *err)
{
    build b = {json_object(), json_object(), stats, c, k, me, lease_ms};
    char temp[KEYS_MAX + 160];
    long long started = timing_epoch_ms();
    calllog_code st = CALLLOG_OK;
    memset(stats, 0, sizeof *stats);
    error_clear(err);
    snprintf(temp, sizeof temp, "%s:next:%s", k->phone_index, me);
    if (!b.entries || !b.deals)
        st = error_set(err, CALLLOG_NOMEM, "out of memory");
    if (st == CALLLOG_OK && rd_client_api(rd) == RD_API_V2)
        st = read_all(&b, rd, 1, err);
    if (st == CALLLOG_OK)
        st = read_all(&b, rd, 0, err);
    if (st == CALLLOG_OK && (write_entries(&b, temp, err) != 0 || swap_in(&b, temp, started, err)))
        st = err->code < 0 ? err->code : CALLLOG_TRANSIENT;
    json_decref(b.entries);
    json_decref(b.deals);
    return st;
}

/* ---- the thread ---------------------------------------------------------------------- */

static struct {
    metric *refreshes, *phones, *age;
} im;

struct phone_index_sync {
    const worker_settings *s;
    pthread_t tid;
    redisContext *redis;
    rd_client *rd;
    ratelimit_policy limit;
    char who[160];
    int leader;
    long long next_ms; /* epoch ms of the next refresh, when leader */
    long backoff_ms;   /* after a failed refresh */
};

/* rd_acquire_fn: the shared limiter, in the lane the client asks for (the sync lane).
 * The sync may wait long (every note goes first), so the lease is renewed while it waits;
 * a lost lease or a stop gives the request up. */
static int sync_acquire(void *arg, ratelimit_lane lane)
{
    phone_index_sync *p = arg;
    calllog_error err;
    for (;;) {
        long wait_ms = 0;
        if (ratelimit_try(p->redis, &p->limit, lane, p->who, &wait_ms) != 0)
            return -1;
        if (wait_ms == 0)
            return 0;
        if (shutdown_requested() || leader_hold(p->redis, p->s->keys.phone_index_leader,
                                                p->s->consumer, LEASE_MS, &err) <= 0)
            return -1;
        timing_sleep_ms(wait_ms > 1000 ? 1000 : wait_ms);
    }
}

/* The refresh interval in ms. */
static long long interval_ms(const phone_index_sync *p)
{
    return (long long)p->s->cache_ttl_s * 1000;
}

/* One refresh, logged and counted; schedules the next. */
static void run_refresh(phone_index_sync *p)
{
    phone_index_stats st;
    calllog_error err;
    long long started = timing_mono_ms();
    calllog_code rc =
        phone_index_refresh(p->redis, &p->s->keys, p->rd, p->s->consumer, LEASE_MS, &st, &err);
    long long ms = timing_mono_ms() - started;
    metric_add(im.refreshes, rc == CALLLOG_OK ? "result=\"ok\"" : "result=\"error\"", 1);
    if (rc == CALLLOG_OK) {
        p->backoff_ms = 0;
        p->next_ms = timing_epoch_ms() + interval_ms(p);
        metric_set(im.phones, NULL, (double)st.phones);
        log_info("phone index refreshed", LF_I("contacts", st.contacts), LF_I("phones", st.phones),
                 LF_I("open_deals", st.deals), LF_I("pages", st.pages), LF_I("duration_ms", ms));
        return;
    }
    p->backoff_ms = p->backoff_ms ? p->backoff_ms * 2 : FAILURE_BACKOFF_MS;
    if (p->backoff_ms > interval_ms(p))
        p->backoff_ms = (long)interval_ms(p);
    p->next_ms = timing_epoch_ms() + p->backoff_ms;
    log_warn("phone index refresh failed; notes fall back to live look-ups meanwhile",
             LF_S("error", err.message), LF_I("pages", st.pages),
             LF_I("retry_in_ms", p->backoff_ms), LF_I("duration_ms", ms));
}

/* Makes the thread's Redis connection and RD client when missing. Returns 0 or -1. */
static int connect_links(phone_index_sync *p)
{
    calllog_error err;
    if (p->redis && p->redis->err) {
        redisFree(p->redis);
        p->redis = NULL;
    }
    if (!p->redis && !(p->redis = redis_open(&p->s->redis, (int)p->s->redis_timeout_ms, &err)))
        return -1;
    if (!p->rd) {
        rd_settings rs = p->s->rd;
        rs.acquire = sync_acquire;
        rs.acquire_arg = p;
        rs.background = 1;
        p->rd = rd_client_new(&rs, p->redis, &p->s->keys);
    } else {
        rd_client_set_redis(p->rd, p->redis);
    }
    return p->rd ? 0 : -1;
}

/* Reads the index's age into the gauge (every worker, every tick). */
static void watch(phone_index_sync *p)
{
    long long now = timing_epoch_ms();
    long long at = phone_index_refreshed_ms(p->redis, &p->s->keys);
    if (at > 0)
        metric_set(im.age, NULL, (double)(now - at) / 1000.0);
}

/* One tick: connections, the lease, the refresh when due, the gauge. */
static void tick(phone_index_sync *p)
{
    calllog_error err;
    if (connect_links(p) != 0) {
        p->leader = 0;
        return;
    }
    int role = leader_hold(p->redis, p->s->keys.phone_index_leader, p->s->consumer, LEASE_MS, &err);
    if (role == 2) {
        long long at = phone_index_refreshed_ms(p->redis, &p->s->keys);
        p->next_ms = at > 0 ? at + interval_ms(p) : 0; /* the previous holder's schedule */
        log_info("phone index lease taken: this worker keeps the index",
                 LF_S("consumer", p->s->consumer));
    }
    p->leader = role > 0;
    if (p->leader && timing_epoch_ms() >= p->next_ms)
        run_refresh(p);
    watch(p);
}

/* The sync thread: a tick every TICK_MS. */
static void *sync_main(void *arg)
{
    phone_index_sync *p = arg;
    while (!shutdown_requested()) {
        tick(p);
        for (int slept = 0; slept < TICK_MS && !shutdown_requested(); slept += 50)
            timing_sleep_ms(50);
    }
    if (p->redis && !p->redis->err && p->leader)
        leader_release(p->redis, p->s->keys.phone_index_leader, p->s->consumer);
    return NULL;
}

/* Registers the index's metrics. Returns 0 or -1. */
static int register_metrics(void)
{
    im.refreshes = metrics_register(METRIC_COUNTER, "calllog_phone_index_refreshes_total",
                                    "Full refreshes of the phone index, by result.", NULL, 0);
    im.phones = metrics_register(METRIC_GAUGE, "calllog_phone_index_phones",
                                 "Phones in the index after this worker's last refresh.", NULL, 0);
    im.age = metrics_register(METRIC_GAUGE, "calllog_phone_index_age_seconds",
                              "How long ago the phone index was last refreshed.", NULL, 0);
    if (!im.refreshes || !im.phones || !im.age)
        return -1;
    metric_add(im.refreshes, "result=\"ok\"", 0);
    metric_add(im.refreshes, "result=\"error\"", 0);
    return 0;
}

phone_index_sync *phone_index_sync_start(const worker_settings *s, int *failed)
{
    *failed = 0;
    if (!s->phone_index || s->cache_ttl_s <= 0)
        return NULL;
    *failed = 1;
    phone_index_sync *p = calloc(1, sizeof *p);
    if (!p || register_metrics() != 0) {
        free(p);
        return NULL;
    }
    p->s = s;
    p->limit =
        (ratelimit_policy){s->keys.ratelimit, s->rate_per_minute, s->rate_burst, s->sync_max_share};
    snprintf(p->who, sizeof p->who, "%s/index", s->consumer);
    if (pthread_create(&p->tid, NULL, sync_main, p) != 0) {
        free(p);
        return NULL;
    }
    *failed = 0;
    return p;
}

void phone_index_sync_stop(phone_index_sync *p)
{
    if (!p)
        return;
    pthread_join(p->tid, NULL);
    rd_client_free(p->rd);
    if (p->redis)
        redisFree(p->redis);
    free(p);
}
