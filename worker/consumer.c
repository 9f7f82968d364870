/* consumer — consumer and promoter threads of calllog-worker (see consumer.h). */
#include "worker/consumer.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/shutdown.h"
#include "common/timing.h"
#include "worker/lease_keeper.h"
#include "worker/processor.h"
#include "worker/queue.h"
#include "worker/ratelimit.h"

#define RECLAIM_EVERY_MS 1000
#define PROMOTE_BATCH 100
#define BACKOFF_MAX_MS 5000

typedef struct consumer_thread {
    consumers *group;
    int index;
    pthread_t tid;
    worker_links links;
    ratelimit_policy limit;
    int prepaid; /* 1: the RD client's next request is paid for (prepay_rd_budget) */
} consumer_thread;

struct consumers {
    const worker_settings *settings;
    const note_template *tpl;
    consumer_thread *threads;
    int nthreads;
    pthread_t promoter;
    int promoter_started;
    lease_keeper *keeper; /* renews what the threads hold */
};

/* Sleeps `*backoff` ms in short steps (so a stop is noticed) and doubles it. */
static void backoff_sleep(long *backoff)
{
    for (long slept = 0; slept < *backoff && !shutdown_requested(); slept += 100)
        timing_sleep_ms(100);
    *backoff = *backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : *backoff * 2;
}

/* rd_acquire_fn: the shared RD Station limiter, on this thread's Redis connection; a
 * request the processor paid for ahead (prepay_rd_budget) uses that instead. */
static int acquire_rd_budget(void *arg, ratelimit_lane lane)
{
    consumer_thread *t = arg;
    if (t->prepaid) {
        t->prepaid = 0;
        return 0;
    }
    return ratelimit_acquire(t->links.redis, &t->limit, lane, t->links.owner);
}

/* rd_budget.prepay: waits for one request's budget now and keeps it for the next one. */
static int prepay_rd_budget(void *arg)
{
    consumer_thread *t = arg;
    if (!t->prepaid &&
        ratelimit_acquire(t->links.redis, &t->limit, RATELIMIT_NOTE, t->links.owner) != 0)
        return -1;
    t->prepaid = 1;
    return 0;
}

/* rd_budget.forfeit: drops a budget paid ahead that no request used. */
static void forfeit_rd_budget(void *arg)
{
    consumer_thread *t = arg;
    t->prepaid = 0;
}

/* (Re)connects Redis; the RD client follows the new connection. */
static int connect_redis(consumer_thread *t)
{
    const worker_settings *s = t->group->settings;
    calllog_error err;
    if (t->links.redis)
        redisFree(t->links.redis);
    t->links.redis = redis_open(&s->redis, (int)s->redis_timeout_ms, &err);
    if (!t->links.redis) {
        log_error("redis unreachable", LF_I("thread", t->index), LF_S("error", err.message));
        return -1;
    }
    if (t->links.rd)
        rd_client_set_redis(t->links.rd, t->links.redis);
    return 0;
}

/* Makes the thread's connections, retrying with backoff until they work or a stop. */
static int open_links(consumer_thread *t)
{
    const worker_settings *s = t->group->settings;
    long backoff = 200;
    calllog_error err;
    while (!shutdown_requested()) {
        if (!t->links.redis || t->links.redis->err)
            connect_redis(t);
        if (!t->links.ledger && !(t->links.ledger = ledger_open(s->database_url, &err)))
            log_error("postgres unreachable", LF_I("thread", t->index), LF_S("error", err.message));
        if (t->links.redis && !t->links.redis->err && t->links.ledger)
            break;
        backoff_sleep(&backoff);
    }
    if (shutdown_requested())
        return -1;
    if (!t->links.rd) {
        rd_settings rs = s->rd;
        rs.acquire = acquire_rd_budget;
        rs.acquire_arg = t;
        t->links.rd = rd_client_new(&rs, t->links.redis, &s->keys);
    }
    if (s->enrich && !t->links.twilio)
        t->links.twilio = twilio_client_new(&s->twilio);
    return t->links.rd && (!s->enrich || t->links.twilio) ? 0 : -1;
}

static void close_links(worker_links *l)
{
    rd_client_free(l->rd);
    twilio_client_free(l->twilio);
    ledger_close(l->ledger);
    if (l->redis)
        redisFree(l->redis);
}

/* 1 when the look for entries idle on other consumers (XAUTOCLAIM) is due. */
static int reclaim_due(long long last_reclaim)
{
    return timing_mono_ms() - last_reclaim >= RECLAIM_EVERY_MS;
}

/* Takes the next entry: the one read with the last acknowledgement, if any; else a
 * reclaimed one when due for a check; else a new one. */
static calllog_code next_entry(consumer_thread *t, char *cursor, long long *last_reclaim,
                               stream_entry *e, calllog_error *err)
{
    const worker_settings *s = t->group->settings;
    calllog_code st = CALLLOG_NOT_FOUND;
    if (t->links.next.id[0]) {
        *e = t->links.next;
        memset(&t->links.next, 0, sizeof t->links.next);
        return CALLLOG_OK;
    }
    if (reclaim_due(*last_reclaim)) {
        st = queue_reclaim(t->links.redis, &s->keys, s->consumer, s->claim_idle_ms, cursor, e, err);
        if (st == CALLLOG_OK)
            log_warn("reclaimed an entry idle on another consumer", LF_S("id", e->id),
                     LF_S("call_sid", e->call_sid), LF_I("deliveries", e->deliveries));
        if (st != CALLLOG_OK && strcmp(cursor, "0-0") == 0)
            *last_reclaim = timing_mono_ms(); /* scanned the whole PEL: rest a while */
    }
    if (st == CALLLOG_NOT_FOUND)
        st = queue_read(t->links.redis, &s->keys, s->consumer, s->block_ms, e, err);
    return st;
}

/* One consumer thread: read, handle, repeat until stopping. */
static void *consumer_main(void *arg)
{
    consumer_thread *t = arg;
    char cursor[64] = "0-0";
    calllog_error err;
    long long last_reclaim = 0;
    long backoff = 200;
    /* An entry read with the last acknowledgement is handled even when stopping: the
     * processor then hands it back at once. */
    while (!shutdown_requested() || t->links.next.id[0]) {
        if ((!t->links.redis || t->links.redis->err || !t->links.rd) && open_links(t) != 0)
            break;
        stream_entry e;
        calllog_code st = next_entry(t, cursor, &last_reclaim, &e, &err);
        if (st < 0) {
            log_error("stream read failed", LF_I("thread", t->index), LF_S("error", err.message));
            backoff_sleep(&backoff);
            continue;
        }
        if (st == CALLLOG_NOT_FOUND)
            continue;
        lease_keeper_hold(t->group->keeper, t->index, e.call_sid, t->links.owner, e.id);
        /* Read the next entry with this one's acknowledgement, unless a reclaim check or a
         * stop comes first. */
        t->links.read_next =
            shutdown_requested() || reclaim_due(last_reclaim) ? NULL : t->group->settings->consumer;
        processor_outcome o = processor_handle(&t->links, &e);
        lease_keeper_release(t->group->keeper, t->index);
        stream_entry_free(&e);
        if (o == PROCESSOR_DEFERRED)
            backoff_sleep(&backoff);
        else
            backoff = 200;
    }
    stream_entry_free(&t->links.next); /* left pending: the reclaim hands it on */
    close_links(&t->links);
    return NULL;
}

/* The promoter: due retries back to the stream, sleeping until the next is due. */
static void *promoter_main(void *arg)
{
    consumers *g = arg;
    const worker_settings *s = g->settings;
    redisContext *c = NULL;
    calllog_error err;
    long backoff = 200;
    while (!shutdown_requested()) {
        if (!c || c->err) {
            if (c)
                redisFree(c);
            if (!(c = redis_open(&s->redis, (int)s->redis_timeout_ms, &err))) {
                backoff_sleep(&backoff);
                continue;
            }
        }
        long moved = 0;
        long long next_in = -1;
        if (queue_promote(c, &s->keys, PROMOTE_BATCH, &moved, &next_in, &err) != 0) {
            log_error("promoter failed", LF_S("error", err.message));
            backoff_sleep(&backoff);
            continue;
        }
        backoff = 200;
        if (moved > 0)
            log_info("retries due, back on the stream", LF_I("moved", moved));
        if (moved < PROMOTE_BATCH)
            timing_sleep_ms(next_in < 0 || next_in > 1000 ? 1000
                                                          : (next_in < 5 ? 5 : (long)next_in));
    }
    if (c)
        redisFree(c);
    return NULL;
}

consumers *consumers_start(const worker_settings *s, const note_template *tpl)
{
    consumers *g = calloc(1, sizeof *g);
    if (!g || !(g->threads = calloc((size_t)s->concurrency, sizeof *g->threads))) {
        free(g);
        return NULL;
    }
    g->settings = s;
    g->tpl = tpl;
    if (!(g->keeper = lease_keeper_start(s, (int)s->concurrency))) {
        log_error("cannot start the lease keeper", LF_END);
        free(g->threads);
        free(g);
        return NULL;
    }
    for (int i = 0; i < (int)s->concurrency; i++) {
        consumer_thread *t = &g->threads[i];
        t->group = g;
        t->index = i;
        t->links.settings = s;
        t->links.tpl = tpl;
        snprintf(t->links.owner, sizeof t->links.owner, "%s/%d", s->consumer, i);
        t->links.budget = (rd_budget){prepay_rd_budget, forfeit_rd_budget, t};
        t->limit = (ratelimit_policy){s->keys.ratelimit, s->rate_per_minute, s->rate_burst,
                                      s->sync_max_share};
        if (pthread_create(&t->tid, NULL, consumer_main, t) != 0)
            break;
        g->nthreads++;
    }
    g->promoter_started = pthread_create(&g->promoter, NULL, promoter_main, g) == 0;
    if (g->nthreads < (int)s->concurrency || !g->promoter_started) {
        log_error("could not start every thread", LF_I("consumers", g->nthreads),
                  LF_I("promoter", g->promoter_started));
        shutdown_request(); /* ends the threads that did start */
        consumers_join(g);
        return NULL;
    }
    return g;
}

void consumers_join(consumers *g)
{
    if (!g)
        return;
    for (int i = 0; i < g->nthreads; i++)
        pthread_join(g->threads[i].tid, NULL);
    if (g->promoter_started)
        pthread_join(g->promoter, NULL);
    lease_keeper_stop(g->keeper);
    free(g->threads);
    free(g);
}
