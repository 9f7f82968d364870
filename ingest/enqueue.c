/* enqueue — XADD to the events stream with a durable spool fallback (see enqueue.h).
 *
 * With REDIS_MIN_REPLICAS_ACK=n an XADD counts only once `WAIT n` says n replicas have
 * it (issue 13): Redis replicates asynchronously, so a failover can lose writes the old
 * master acknowledged. An event the replicas did not confirm goes to the spool as well;
 * if the XADD did survive, the stream holds it twice and the worker's claim absorbs
 * the second copy.
 *
 * Group commit (issue 11): request threads do not each pay a Redis round trip. Each
 * queues its entry; whichever thread finds no batch in flight takes the lead: it takes
 * everything queued (up to BATCH_MAX), pipelines the XADDs (and one WAIT) on one
 * connection and reads the replies. Before it wakes anyone, it sends the requests that
 * queued meanwhile as the next batch on the same connection, so Redis works (and fsyncs)
 * on it while threads wake; then it wakes exactly the threads of its own batch and hands
 * the lead to the next batch's first entry, which reads that batch's replies and goes
 * on the same way. The batch grows with the load, an idle ingest still answers after one
 * round trip, and every request still waits for its own entry's reply before it is
 * answered. Each waiter sleeps on its own semaphore, outside the lock, and is posted
 * once (its batch is done, or the lead is its own): a broadcast to all waiters under the
 * lock cost ~5 futex calls per webhook, and the hand-off without the pipelined next batch
 * left Redis idle for ~0.2 ms of every ~0.75 ms cycle (docs/performance.md §2e). */
#include "ingest/enqueue.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/metrics.h"
#include "ingest/spool.h"

#define REPLAY_INTERVAL_MS 250
#define BATCH_MAX 64 /* entries per pipelined round trip */

/* One request's entry waiting for, or inside, a batch. */
typedef struct pending_add {
    const stream_entry *e;
    int rc;     /* written by the leader: 0 when on the stream (and replicas) */
    int done;   /* set by the leader once rc is, before `wake` is posted */
    int leads;  /* set before `wake` is posted: this entry's thread sends the next batch */
    sem_t wake; /* posted once, when `done` or `leads` is set (never both) */
    struct pending_add *next;
} pending_add;

struct enqueuer {
    const ingest_settings *settings;
    spool *spool;
    pthread_mutex_t lock; /* guards the pool, `stopping` and the group-commit queue */
    pthread_cond_t wake;
    redisContext **free_conns; /* idle connections, NULL slots mean "not connected" */
    size_t nfree, cap;
    int stopping;
    int redis_down; /* logged once per outage, not once per attempt */
    pthread_t replayer;
    pending_add *queued, **queued_tail; /* under `lock`: waiting for the next batch */
    int leading;                        /* under `lock`: a batch is in flight or handed on */
    pending_add *sent;       /* lead holder's: the batch sent and not yet read, or NULL */
    redisContext *sent_conn; /* ... and the connection it was sent on */
    metric *ack_missing;     /* WAITs that came back short, by path */
    metric *batch_size;      /* entries per round trip */
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

/* Queues `WAIT n timeout` behind pipelined XADDs (only when REDIS_MIN_REPLICAS_ACK > 0). */
static int append_wait(enqueuer *q, redisContext *c)
{
    return redisAppendCommand(c, "WAIT %ld %ld", q->settings->min_replicas_ack,
                              q->settings->wait_timeout_ms) == REDIS_OK
               ? 0
               : -1;
}

/* Reads the WAIT reply. Returns 0 when enough replicas acknowledged. A shortfall is
 * logged and counted under `path`; a NULL `path` only consumes the reply (the XADDs
 * before it failed already, and said so). */
static int read_wait_reply(enqueuer *q, redisContext *c, const char *path)
{
    redisReply *r = NULL;
    calllog_error err = {0};
    long long acked = -1;
    if (redisGetReply(c, (void **)&r) == REDIS_OK && !redis_reply_failed(c, r, &err) &&
        r->type == REDIS_REPLY_INTEGER)
        acked = r->integer;
    if (r)
        freeReplyObject(r);
    if (acked >= q->settings->min_replicas_ack)
        return 0;
    if (path) {
        metric_add(q->ack_missing, path, 1);
        log_warn("too few replicas acknowledged the write, not counted as durable",
                 LF_I("acked", acked), LF_I("wanted", q->settings->min_replicas_ack),
                 LF_S("error", c->err ? c->errstr : err.message));
    }
    return -1;
}

/* Sends the XADDs of `batch` (then one WAIT, when asked) on `c` without reading the
 * replies, and counts the batch. Returns 0, or -1 when `c` broke (the caller frees it). */
static int batch_send(enqueuer *q, redisContext *c, pending_add *batch)
{
    size_t n = 0;
    int appended = 1, written = 0;
    for (pending_add *p = batch; p; p = p->next, n++)
        appended = appended && append_xadd(q, c, p->e) == 0;
    metric_observe(q->batch_size, NULL, (double)n);
    if (!appended || (q->settings->min_replicas_ack > 0 && append_wait(q, c) != 0))
        return -1; /* a half-queued pipeline: never reuse it */
    while (!written)
        if (redisBufferWrite(c, &written) != REDIS_OK)
            return -1;
    return 0;
}

/* Reads the replies of the batch batch_send sent on `c` and sets each entry's rc: 0 when
 * on the stream and, with REDIS_MIN_REPLICAS_ACK, on enough replicas. */
static void batch_read(enqueuer *q, redisContext *c, pending_add *batch)
{
    size_t added = 0;
    for (pending_add *p = batch; p; p = p->next)
        added += (p->rc = c->err ? -1 : read_xadd_reply(c)) == 0;
    if (q->settings->min_replicas_ack > 0 &&
        read_wait_reply(q, c, added > 0 ? "path=\"webhook\"" : NULL) != 0) {
        for (pending_add *p = batch; p; p = p->next)
            p->rc = -1;
    }
}

/* Takes up to BATCH_MAX queued entries (under the lock). */
static pending_add *take_batch(enqueuer *q)
{
    pending_add *batch = q->queued, **end = &q->queued;
    for (size_t n = 0; *end && n < BATCH_MAX; n++)
        end = &(*end)->next;
    q->queued = *end;
    if (!q->queued)
        q->queued_tail = &q->queued;
    *end = NULL;
    return batch;
}

/* Marks every entry of `batch` done and wakes its thread, except `self` (the caller's
 * own entry). A woken thread returns at once and its entry is gone: nothing of an entry
 * is touched after its semaphore is posted. */
static void batch_wake(pending_add *batch, const pending_add *self)
{
    for (pending_add *p = batch, *next; p; p = next) {
        next = p->next;
        p->done = 1;
        if (p != self)
            sem_post(&p->wake);
    }
}

/* Gives the lead to `next`'s thread (woken once, with `leads` set). */
static void lead_hand_to(pending_add *next)
{
    next->leads = 1;
    sem_post(&next->wake);
}

/* Under the lock: the oldest queued entry, which will lead; or NULL, and the group
 * commit's turn ends (the next request to arrive leads at once). */
static pending_add *lead_successor(enqueuer *q)
{
    if (!q->queued)
        q->leading = 0;
    return q->queued;
}

/* What the thread holding the lead does (see the top comment): reads the replies of the
 * batch in flight (sending it first when none is), sends the next batch on the same
 * connection before it wakes anyone, so Redis has work while threads wake, then wakes its
 * batch and hands the lead to the next batch's first entry, which reads its replies. */
static void lead(enqueuer *q, pending_add *self)
{
    pending_add *batch = q->sent, *next = NULL, *failed = NULL, *successor = NULL;
    redisContext *c = q->sent_conn;
    q->sent = NULL;
    q->sent_conn = NULL;
    if (!batch) {
        pthread_mutex_lock(&q->lock);
        batch = take_batch(q); /* starts with `self`: the queue's head leads */
        pthread_mutex_unlock(&q->lock);
        if ((c = pool_get(q)) && batch_send(q, c, batch) != 0) {
            redisFree(c);
            c = NULL;
        }
    }
    if (c)
        batch_read(q, c, batch); /* else every rc stays -1: the spool takes them */
    if (c && c->err) {
        redisFree(c); /* broken: the next leader connects afresh */
        c = NULL;
    }
    pthread_mutex_lock(&q->lock);
    if ((next = c ? take_batch(q) : NULL) == NULL)
        successor = lead_successor(q);
    pthread_mutex_unlock(&q->lock);
    if (next && batch_send(q, c, next) == 0) {
        q->sent = next; /* the successor reads its replies */
        q->sent_conn = c;
        successor = next;
    } else if (next) {
        failed = next;
        redisFree(c);
        pthread_mutex_lock(&q->lock);
        successor = lead_successor(q);
        pthread_mutex_unlock(&q->lock);
    } else {
        pool_give(q, c);
    }
    batch_wake(batch, self);
    batch_wake(failed, self);
    if (successor)
        lead_hand_to(successor);
}

/* Makes `e` durable on the stream through the group commit; see the top comment.
 * Returns 0 when it is on the stream (and replicas), -1 otherwise. */
static int stream_add(enqueuer *q, const stream_entry *e)
{
    pending_add me = {.e = e, .rc = -1};
    if (sem_init(&me.wake, 0, 0) != 0)
        return -1;
    pthread_mutex_lock(&q->lock);
    *q->queued_tail = &me;
    q->queued_tail = &me.next;
    if (!q->leading)
        q->leading = me.leads = 1; /* nothing in flight: this request goes at once */
    pthread_mutex_unlock(&q->lock);
    while (!me.leads && !me.done)
        sem_wait(&me.wake); /* posted once: the batch is done, or the lead is ours */
    if (!me.done)
        lead(q, &me);
    sem_destroy(&me.wake);
    return me.rc;
}

/* 0 when a replay may start on `c`: no WAIT is asked for, or the master has at least
 * REDIS_MIN_REPLICAS_ACK replicas attached (else every pass would XADD the batch, wait
 * in vain and send it again next time). A ROLE that cannot be read does not stop it. */
static int replay_may_start(enqueuer *q, redisContext *c)
{
    if (q->settings->min_replicas_ack <= 0)
        return 0;
    calllog_error err;
    int n = redis_sentinel_master_replicas(c, &err);
    return n >= 0 && n < q->settings->min_replicas_ack ? -1 : 0;
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

/* Reads the replies of `sent` pipelined XADDs; returns how many in a row succeeded. All
 * are read while the connection lasts, so none is left for the connection's next user. */
static size_t read_xadd_replies(redisContext *c, size_t sent)
{
    size_t added = 0;
    for (size_t i = 0; i < sent && !c->err; i++)
        if (read_xadd_reply(c) == 0 && added == i)
            added++;
    return added;
}

/* spool_sink: pipelines XADDs (and a WAIT) for a batch of records; returns how many
 * were added (none when the replicas did not acknowledge them). */
static size_t replay_batch(void *arg, char *const *records, size_t n)
{
    enqueuer *q = arg;
    redisContext *c = pool_get(q);
    if (!c)
        return 0;
    if (replay_may_start(q, c) != 0) {
        pool_give(q, c);
        return 0;
    }
    size_t sent = 0;
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
    int waits = q->settings->min_replicas_ack > 0 && sent > 0;
    int wait_queued = waits && append_wait(q, c) == 0;
    size_t added = read_xadd_replies(c, sent);
    if (waits && (!wait_queued || read_wait_reply(q, c, added > 0 ? "path=\"replay\"" : NULL)))
        added = 0; /* sent again later: the claim absorbs copies that did survive */
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
    static const double batch_buckets[] = {1, 2, 4, 8, 16, 32, 64};
    enqueuer *q = calloc(1, sizeof *q);
    if (!q) {
        error_set(err, CALLLOG_TRANSIENT, "out of memory");
        return NULL;
    }
    q->settings = s;
    q->ack_missing =
        metrics_register(METRIC_COUNTER, "calllog_ingest_replica_ack_missing_total",
                         "XADDs that fewer than REDIS_MIN_REPLICAS_ACK replicas acknowledged "
                         "(the event went to the spool), by path.",
                         NULL, 0);
    q->batch_size = metrics_register(METRIC_HISTOGRAM, "calllog_ingest_enqueue_batch_entries",
                                     "Events per pipelined XADD round trip (group commit).",
                                     batch_buckets, sizeof batch_buckets / sizeof *batch_buckets);
    q->queued_tail = &q->queued;
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
