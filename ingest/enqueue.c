/* enqueue — XADD to the events stream with a durable spool fallback (see enqueue.h). */
#include "enqueue.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "spool.h"

#define REPLAY_INTERVAL_MS 250

struct enqueuer {
    const ingest_settings *settings;
    spool *spool;
    pthread_mutex_t lock; /* guards the pool and `stopping` */
    pthread_cond_t wake;
    redisContext **free_conns; /* idle connections, NULL slots mean "not connected" */
    size_t nfree, cap;
    int stopping;
    int redis_down; /* logged once per outage, not once per attempt */
    pthread_t replayer;
};

/* Takes an idle connection (possibly NULL: connect first) from the pool. */
static redisContext *pool_take(enqueuer *q)
{
    pthread_mutex_lock(&q->lock);
    redisContext *c = q->nfree > 0 ? q->free_conns[--q->nfree] : NULL;
    pthread_mutex_unlock(&q->lock);
    return c;
}

/* Returns a connection to the pool; a broken or surplus one is freed. */
static void pool_give(enqueuer *q, redisContext *c)
{
    if (!c)
        return;
    if (c->err) {
        redisFree(c);
        return;
    }
    pthread_mutex_lock(&q->lock);
    if (q->nfree < q->cap) {
        q->free_conns[q->nfree++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&q->lock);
    if (c)
        redisFree(c);
}

/* A pooled connection, connecting when the pool has none idle. NULL when Redis is down. */
static redisContext *pool_get(enqueuer *q)
{
    redisContext *c = pool_take(q);
    if (c)
        return c;
    calllog_error err;
    c = redis_open(&q->settings->redis, (int)q->settings->redis_timeout_ms, &err);
    pthread_mutex_lock(&q->lock);
    int was_down = q->redis_down;
    q->redis_down = c == NULL;
    pthread_mutex_unlock(&q->lock);
    if (!c && !was_down)
        log_warn("redis unreachable, events go to the spool", LF_S("error", err.message));
    else if (c && was_down)
        log_info("redis reachable again", LF_END);
    return c;
}

/* Queues one XADD of `e` on `c` (pipelined; read the reply with redisGetReply). */
static int append_xadd(enqueuer *q, redisContext *c, const stream_entry *e)
{
    char attempt[16];
    const char *argv[3 + STREAM_ENTRY_ARGC] = {"XADD", q->settings->keys.events, "*"};
    int argc = 3 + stream_entry_to_argv(e, argv + 3, attempt, sizeof attempt);
    return redisAppendCommandArgv(c, argc, argv, NULL) == REDIS_OK ? 0 : -1;
}

/* Reads one pipelined XADD reply. Returns 0 when the entry was added. */
static int read_xadd_reply(redisContext *c)
{
    redisReply *r = NULL;
    calllog_error err;
    if (redisGetReply(c, (void **)&r) != REDIS_OK || redis_reply_failed(c, r, &err)) {
        log_warn("xadd failed", LF_S("error", c->err ? c->errstr : err.message));
        if (r)
            freeReplyObject(r);
        return -1;
    }
    freeReplyObject(r);
    return 0;
}

/* XADDs one entry on a pooled connection. Returns 0 on success. */
static int stream_add(enqueuer *q, const stream_entry *e)
{
    redisContext *c = pool_get(q);
    if (!c)
        return -1;
    int rc = append_xadd(q, c, e) == 0 ? read_xadd_reply(c) : -1;
    pool_give(q, c);
    return rc;
}

/* Appends an entry to the spool. Returns 0 when it is durable. */
static int spool_put(enqueuer *q, const stream_entry *e)
{
    char *rec = stream_entry_to_json(e); /* compact JSON: one line */
    int rc = rec ? spool_append(q->spool, rec, strlen(rec)) : -1;
    if (rc != 0)
        log_error("spool append failed", LF_S("call_sid", e->call_sid),
                  LF_S("error", strerror(errno)));
    free(rec);
    return rc;
}

enqueue_result enqueue_put(enqueuer *q, const stream_entry *e)
{
    if (spool_depth(q->spool) == 0 && stream_add(q, e) == 0)
        return ENQUEUE_STREAM;
    return spool_put(q, e) == 0 ? ENQUEUE_SPOOL : ENQUEUE_FAILED;
}

/* spool_sink: pipelines XADDs for a batch of records; returns how many were added. */
static size_t replay_batch(void *arg, char *const *records, size_t n)
{
    enqueuer *q = arg;
    redisContext *c = pool_get(q);
    if (!c)
        return 0;
    size_t sent = 0, added = 0;
    for (; sent < n; sent++) {
        stream_entry e;
        int ok = stream_entry_from_json(records[sent], strlen(records[sent]), &e) == 0 &&
                 append_xadd(q, c, &e) == 0;
        if (!ok) /* unreadable records cannot exist: spool lines are written whole */
            log_error("spool record unreadable, kept", LF_S("record", records[sent]));
        stream_entry_free(&e);
        if (!ok)
            break;
    }
    while (added < sent && read_xadd_reply(c) == 0)
        added++;
    pool_give(q, c);
    return added;
}

/* Replays the spool into the stream every REPLAY_INTERVAL_MS while it is not empty. */
static void *replay_loop(void *arg)
{
    enqueuer *q = arg;
    pthread_mutex_lock(&q->lock);
    while (!q->stopping) {
        pthread_mutex_unlock(&q->lock);
        if (spool_depth(q->spool) > 0) {
            long n = spool_drain(q->spool, replay_batch, q);
            if (n > 0)
                log_info("spool replayed into the stream", LF_I("events", n),
                         LF_I("left", (long long)spool_depth(q->spool)));
        }
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += REPLAY_INTERVAL_MS * 1000000L;
        until.tv_sec += until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        pthread_mutex_lock(&q->lock);
        if (!q->stopping)
            pthread_cond_timedwait(&q->wake, &q->lock, &until);
    }
    pthread_mutex_unlock(&q->lock);
    return NULL;
}

enqueuer *enqueue_open(const ingest_settings *s, calllog_error *err)
{
    enqueuer *q = calloc(1, sizeof *q);
    if (!q) {
        error_set(err, CALLLOG_TRANSIENT, "out of memory");
        return NULL;
    }
    q->settings = s;
    q->cap = (size_t)s->threads + 1;
    q->free_conns = calloc(q->cap, sizeof *q->free_conns);
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->wake, NULL);
    q->spool = q->free_conns ? spool_open(s->spool_dir, s->spool_max_bytes, err) : NULL;
    if (!q->spool || pthread_create(&q->replayer, NULL, replay_loop, q) != 0) {
        if (q->spool)
            error_set(err, CALLLOG_TRANSIENT, "cannot start the spool replay thread");
        spool_close(q->spool);
        free(q->free_conns);
        free(q);
        return NULL;
    }
    return q;
}

int enqueue_ready(enqueuer *q, char *redis_why, char *spool_why, size_t whylen)
{
    calllog_error err = {0};
    redisContext *c = pool_take(q);
    if (!c)
        c = redis_open(&q->settings->redis, (int)q->settings->redis_timeout_ms, &err);
    redisReply *r = c ? redisCommand(c, "PING") : NULL;
    int redis_up = c && !redis_reply_failed(c, r, &err);
    if (r)
        freeReplyObject(r);
    pool_give(q, c);
    snprintf(redis_why, whylen, "%s", redis_up ? "ok" : err.message);
    int spool_ok = spool_writable(q->spool, spool_why, whylen);
    if (spool_ok)
        snprintf(spool_why, whylen, "ok");
    return redis_up || spool_ok;
}

size_t enqueue_spool_depth(enqueuer *q)
{
    return spool_depth(q->spool);
}

void enqueue_close(enqueuer *q)
{
    if (!q)
        return;
    pthread_mutex_lock(&q->lock);
    q->stopping = 1;
    pthread_cond_signal(&q->wake);
    pthread_mutex_unlock(&q->lock);
    pthread_join(q->replayer, NULL);
    if (spool_depth(q->spool) > 0)
        spool_drain(q->spool, replay_batch, q);
    for (size_t i = 0; i < q->nfree; i++)
        redisFree(q->free_conns[i]);
    spool_close(q->spool);
    pthread_cond_destroy(&q->wake);
    pthread_mutex_destroy(&q->lock);
    free(q->free_conns);
    free(q);
}
