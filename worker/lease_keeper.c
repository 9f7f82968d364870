/* lease_keeper — renews the leases and stream entries a worker holds (see lease_keeper.h). */
#include "worker/lease_keeper.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/timing.h"
#include "worker/ledger.h"
#include "worker/queue.h"

typedef struct held_call {
    int held;
    long long since_ms; /* monotonic: when the slot took the call */
    char call_sid[64];
    char owner[192];
    char entry_id[64];
} held_call;

struct lease_keeper {
    const worker_settings *settings;
    pthread_mutex_t lock; /* guards slots */
    held_call *slots;
    int nslots;
    atomic_int stop;
    pthread_t tid;
    redisContext *redis; /* the keeper thread's own connections */
    ledger *ledger;
};

long lease_keeper_period_ms(const worker_settings *s)
{
    long shortest = s->lease_ms < s->claim_idle_ms ? s->lease_ms : s->claim_idle_ms;
    return shortest / 3 > 50 ? shortest / 3 : 50;
}

/* Copies the held slots that still deserve renewal into `out`. Returns how many. */
static int snapshot(lease_keeper *k, held_call *out)
{
    int n = 0;
    long long now = timing_mono_ms();
    pthread_mutex_lock(&k->lock);
    for (int i = 0; i < k->nslots; i++) {
        held_call *s = &k->slots[i];
        if (!s->held)
            continue;
        if (now - s->since_ms > LEASE_KEEPER_MAX_HOLD_MS) {
            if (s->held == 1)
                log_warn("call held too long, no longer renewing its lease",
                         LF_S("call_sid", s->call_sid), LF_S("owner", s->owner));
            s->held = 2; /* warned once; still held, not renewed */
            continue;
        }
        out[n++] = *s;
    }
    pthread_mutex_unlock(&k->lock);
    return n;
}

/* Makes the keeper's connections when they are missing or broken. Returns 0 when usable. */
static int connect_links(lease_keeper *k)
{
    const worker_settings *s = k->settings;
    calllog_error err;
    if (k->redis && k->redis->err) {
        redisFree(k->redis);
        k->redis = NULL;
    }
    if (!k->redis && !(k->redis = redis_open(&s->redis, (int)s->redis_timeout_ms, &err)))
        log_warn("lease keeper: redis unreachable", LF_S("error", err.message));
    if (!k->ledger && !(k->ledger = ledger_open(s->database_url, &err)))
        log_warn("lease keeper: postgres unreachable", LF_S("error", err.message));
    return k->redis && k->ledger ? 0 : -1;
}

/* Renews the leases and touches the stream entries of `n` held calls. */
static void renew(lease_keeper *k, const held_call *held, int n)
{
    const worker_settings *s = k->settings;
    const char *sids[64] = {0}, *owners[64] = {0}, *ids[64] = {0};
    calllog_error err;
    for (int i = 0; i < n; i++) {
        sids[i] = held[i].call_sid;
        owners[i] = held[i].owner;
        ids[i] = held[i].entry_id;
    }
    if (ledger_renew_leases(k->ledger, sids, owners, (size_t)n, s->lease_ms) < 0)
        log_warn("lease keeper: cannot renew leases",
                 LF_S("error", ledger_error(k->ledger)->message), LF_I("calls", n));
    if (queue_touch(k->redis, &s->keys, s->consumer, ids, (size_t)n, &err) < 0)
        log_warn("lease keeper: cannot touch stream entries", LF_S("error", err.message));
}

/* The keeper thread: renew, sleep a period (in short steps, so a stop is quick), repeat. */
static void *keeper_main(void *arg)
{
    lease_keeper *k = arg;
    held_call *held = calloc((size_t)k->nslots, sizeof *held);
    long period = lease_keeper_period_ms(k->settings);
    while (held && !atomic_load(&k->stop)) {
        int n = snapshot(k, held);
        if (n > 0 && connect_links(k) == 0)
            renew(k, held, n);
        for (long slept = 0; slept < period && !atomic_load(&k->stop); slept += 50)
            timing_sleep_ms(period - slept < 50 ? period - slept : 50);
    }
    free(held);
    return NULL;
}

lease_keeper *lease_keeper_start(const worker_settings *s, int slots)
{
    if (slots < 1 || slots > 64)
        return NULL;
    lease_keeper *k = calloc(1, sizeof *k);
    if (!k || !(k->slots = calloc((size_t)slots, sizeof *k->slots))) {
        free(k);
        return NULL;
    }
    k->settings = s;
    k->nslots = slots;
    pthread_mutex_init(&k->lock, NULL);
    atomic_init(&k->stop, 0);
    if (pthread_create(&k->tid, NULL, keeper_main, k) != 0) {
        pthread_mutex_destroy(&k->lock);
        free(k->slots);
        free(k);
        return NULL;
    }
    return k;
}

void lease_keeper_hold(lease_keeper *k, int index, const char *call_sid, const char *owner,
                       const char *entry_id)
{
    if (!k || index < 0 || index >= k->nslots || !call_sid || !owner || !entry_id)
        return;
    pthread_mutex_lock(&k->lock);
    held_call *s = &k->slots[index];
    snprintf(s->call_sid, sizeof s->call_sid, "%s", call_sid);
    snprintf(s->owner, sizeof s->owner, "%s", owner);
    snprintf(s->entry_id, sizeof s->entry_id, "%s", entry_id);
    s->since_ms = timing_mono_ms();
    s->held = 1;
    pthread_mutex_unlock(&k->lock);
}

void lease_keeper_release(lease_keeper *k, int index)
{
    if (!k || index < 0 || index >= k->nslots)
        return;
    pthread_mutex_lock(&k->lock);
    k->slots[index].held = 0;
    pthread_mutex_unlock(&k->lock);
}

void lease_keeper_stop(lease_keeper *k)
{
    if (!k)
        return;
    atomic_store(&k->stop, 1);
    pthread_join(k->tid, NULL);
    ledger_close(k->ledger);
    if (k->redis)
        redisFree(k->redis);
    pthread_mutex_destroy(&k->lock);
    free(k->slots);
    free(k);
}
