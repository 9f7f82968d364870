/* reconcile — the reconciler thread and its pass over Twilio's Calls list (see reconcile.h). */
#include "worker/reconcile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/stream_entry.h"

#include <pthread.h>

#include "common/event.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/redis_client.h"
#include "common/shutdown.h"
#include "common/timing.h"
#include "worker/alert.h"
#include "worker/leader.h"
#include "worker/ledger.h"
#include "worker/phone.h"

/* Calls asked for per page (Twilio allows up to 1000; smaller pages renew the lease more
 * often and keep each answer well under the HTTP client's body limit). */
#define PAGE_SIZE 500
/* Most calls appended by one script. */
#define ENQUEUE_BATCH 50
/* How often the shared state is read back into the gauges. */
#define GAUGE_EVERY_MS 5000
/* First wait after a failed pass; it doubles up to the interval. */
#define FAILURE_BACKOFF_MS 5000L

/* KEYS: leader, enqueued, events. ARGV: me, now_ms, keep_ms, then per call its CallSid
 * and the STREAM_ENTRY_ARGC field/value pairs of its entry (stream_entry_to_argv: the
 * script names no field). Appends the calls not enqueued before, records them, forgets
 * records older than keep_ms. Returns the CallSids appended; an error when the lease is
 * not ours. */
#define ENQUEUE_STRIDE (1 + STREAM_ENTRY_ARGC)
#define LUA_STR2(x) #x
#define LUA_STR(x) LUA_STR2(x)
static const char lua_enqueue[] =
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then\n"
    "  return redis.error_reply('the reconciler lease was lost')\n"
    "end\n"
    "local added = {}\n"
    "for i = 4, #ARGV, " LUA_STR(
        ENQUEUE_STRIDE) " do\n"
                        "  if not redis.call('ZSCORE', KEYS[2], ARGV[i]) then\n"
                        "    redis.call('ZADD', KEYS[2], ARGV[2], ARGV[i])\n"
                        "    redis.call('XADD', KEYS[3], '*', unpack(ARGV, i + 1, i + " LUA_STR(
                            STREAM_ENTRY_ARGC) "))\n"
                                               "    added[#added + 1] = ARGV[i]\n"
                                               "  end\n"
                                               "end\n"
                                               "redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', "
                                               "tonumber(ARGV[2]) - tonumber(ARGV[3]))\n"
                                               "return added\n";

/* KEYS: leader, state. ARGV: me, field, value, ... Writes the fields while the lease is
 * ours. Returns 1, or 0 when it is not. */
static const char lua_record[] = "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end\n"
                                 "for i = 2, #ARGV, 2 do\n"
                                 "  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])\n"
                                 "end\n"
                                 "return 1\n";

static struct {
    metric *runs, *examined, *backfilled, *last_success, *lag, *leader;
} rm;

struct reconciler {
    const worker_settings *s;
    pthread_t tid;
    redisContext *redis;
    ledger *ledger;
    twilio_client *twilio;
    int leader;            /* this process holds the lease */
    long long next_run_ms; /* epoch ms of the next pass, when leader */
    long backoff_ms;       /* after a failed pass */
    long long started_ms;  /* when this thread started (for the stale alert) */
    long long alerted_ms;  /* last stale alert sent by this process */
    long long gauges_ms;   /* last refresh of the gauges */
    calllog_error error;   /* last failure, for the log and the alert */
};

/* The figures of one pass. */
typedef struct pass_stats {
    long pages, examined, candidates, backfilled, child_legs;
} pass_stats;

/* ---- pure parts -------------------------------------------------------------------- */

reconcile_window reconcile_window_for(const worker_settings *s, long long now_ms,
                                      long long checkpoint_ms)
{
    reconcile_window w;
    long long from = checkpoint_ms > 0 ? checkpoint_ms : now_ms - s->reconcile_lookback_ms;
    w.upper_ms = now_ms - s->reconcile_grace_ms;
    w.lower_ms = from - (checkpoint_ms > 0 ? s->reconcile_overlap_ms : 0);
    w.stop_before_ms = w.lower_ms - s->reconcile_max_call_ms;
    return w;
}

/* 1 when `number` is one of TWILIO_RECONCILE_NUMBERS. */
static int number_wanted(const worker_settings *s, const char *number)
{
    for (size_t i = 0; number && i < s->reconcile_numbers_len; i++)
        if (phone_same_number(number, s->reconcile_numbers[i]))
            return 1;
    return 0;
}

reconcile_verdict reconcile_classify(const worker_settings *s, const reconcile_window *w,
                                     const twilio_call_summary *call)
{
    if (!call->sid || !call->status)
        return RECONCILE_UNUSABLE;
    if (call->parent_call_sid)
        return RECONCILE_CHILD_LEG;
    if (!event_status_is_terminal(call->status) || !call->ended)
        return RECONCILE_NOT_TERMINAL;
    long long ended_ms = (long long)call->ended * 1000;
    if (ended_ms <= w->lower_ms || ended_ms > w->upper_ms)
        return RECONCILE_OUTSIDE;
    if (s->reconcile_numbers_len > 0 && !number_wanted(s, call->from) &&
        !number_wanted(s, call->to))
        return RECONCILE_OTHER_NUMBER;
    return RECONCILE_CANDIDATE;
}

char *reconcile_event(const twilio_call_summary *call, const char *received_at,
                      const char *request_id)
{
    /* The Call resource's fields under the names of the webhook's parameters, so the
     * event is built (and repaired) by the same code as a webhook's. */
    const char *keys[12], *values[12];
    size_t n = 0;
    const char *const pairs[][2] = {{"CallSid", call->sid},
                                    {"AccountSid", call->account_sid},
                                    {"From", call->from},
                                    {"To", call->to},
                                    {"Direction", call->direction},
                                    {"CallStatus", call->status},
                                    {"CallDuration", call->duration},
                                    {"Timestamp", call->end_time},
                                    {"CallerName", call->caller_name},
                                    {"ForwardedFrom", call->forwarded_from},
                                    {"AnsweredBy", call->answered_by},
                                    {"ApiVersion", call->api_version}};
    for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i++) {
        if (pairs[i][1]) {
            keys[n] = pairs[i][0];
            values[n++] = pairs[i][1];
        }
    }
    event_meta meta = {request_id, NULL, received_at, "reconcile"};
    buffer b;
    buffer_init(&b, EVENT_MAX_BYTES);
    event_encode(keys, values, n, &meta, &b);
    return buffer_take(&b);
}

/* ---- Redis ------------------------------------------------------------------------- */

/* Runs a script whose answer is an integer. Returns it, or -2 on error. */
static long long eval_int(redisContext *c, const char *script, int nkeys, int argc,
                          const char *const *args, calllog_error *err)
{
    redisReply *r = redis_eval(c, script, nkeys, argc, args, err);
    if (!r)
        return -2;
    long long v = r->type == REDIS_REPLY_INTEGER ? r->integer : -2;
    if (v == -2)
        error_set(err, CALLLOG_TRANSIENT, "unexpected script answer");
    freeReplyObject(r);
    return v;
}

/* Takes or renews the lease. Returns 2 taken, 1 renewed, 0 held by another, -1 error. */
static long long lease_take(reconciler *r, calllog_error *err)
{
    return leader_hold(r->redis, r->s->keys.reconcile_leader, r->s->consumer,
                       r->s->reconcile_lease_ms, err);
}

/* Writes fields `kv[0..n)` (name, value, ...) to the state hash while leader. */
static int record(reconciler *r, const char *const *kv, int n, calllog_error *err)
{
    const char *args[24];
    if (n > 20)
        return -1;
    args[0] = r->s->keys.reconcile_leader;
    args[1] = r->s->keys.reconcile;
    args[2] = r->s->consumer;
    memcpy(args + 3, kv, (size_t)n * sizeof *kv);
    long long v = eval_int(r->redis, lua_record, 2, n + 3, args, err);
    if (v == 0)
        error_set(err, CALLLOG_TRANSIENT, "the reconciler lease was lost");
    return v == 1 ? 0 : -1;
}

int reconcile_state_read(redisContext *c, const calllog_keys *k, reconcile_state *out)
{
    memset(out, 0, sizeof *out);
    redisReply *h = NULL;
    int rc = leader_state_read(c, k->reconcile_leader, k->reconcile, &h, out->holder,
                               sizeof out->holder, &out->holder_ttl_ms);
    if (rc == 0) {
        out->checkpoint_ms = redis_hash_ll(h, "checkpoint_ms");
        out->last_run_ms = redis_hash_ll(h, "last_run_ms");
        out->last_success_ms = redis_hash_ll(h, "last_success_ms");
        out->next_run_ms = redis_hash_ll(h, "next_run_ms");
        out->last_examined = redis_hash_ll(h, "last_examined");
        out->last_backfilled = redis_hash_ll(h, "last_backfilled");
        redis_hash_str(h, "last_result", out->last_result, sizeof out->last_result);
        redis_hash_str(h, "last_error", out->last_error, sizeof out->last_error);
        freeReplyObject(h);
    }
    return rc;
}

/* ---- one pass ---------------------------------------------------------------------- */

/* Appends the calls `calls[idx[0..n)]` to the events stream, logging each (the others
 * were appended by an earlier pass). Returns how many, or -1 with `err` filled. */
static long enqueue(reconciler *r, const twilio_call_summary *calls, const size_t *idx, size_t n,
                    const char *request_id, calllog_error *err)
{
    long long now = timing_epoch_ms();
    char now_s[24], keep[24], received[40];
    snprintf(now_s, sizeof now_s, "%lld", now);
    snprintf(keep, sizeof keep, "%ld",
             r->s->reconcile_lookback_ms + r->s->reconcile_overlap_ms +
                 r->s->reconcile_max_call_ms);
    timing_format_rfc3339(now, received, sizeof received);
    const char *args[6 + ENQUEUE_STRIDE * ENQUEUE_BATCH];
    char attempt[16];
    char *texts[ENQUEUE_BATCH] = {0};
    int argc = 6, failed = 0;
    args[0] = r->s->keys.reconcile_leader;
    args[1] = r->s->keys.reconcile_enqueued;
    args[2] = r->s->keys.events;
    args[3] = r->s->consumer;
    args[4] = now_s;
    args[5] = keep;
    for (size_t i = 0; i < n && !failed; i++) {
        const twilio_call_summary *c = &calls[idx[i]];
        texts[i] = reconcile_event(c, received, request_id);
        failed = texts[i] == NULL;
        stream_entry e = {.call_sid = c->sid,
                          .status = c->status,
                          .request_id = request_id,
                          .received_at = received,
                          .event = texts[i]};
        args[argc++] = c->sid;
        argc += stream_entry_to_argv(&e, args + argc, attempt, sizeof attempt);
    }
    redisReply *reply = NULL;
    if (failed)
        error_set(err, CALLLOG_TRANSIENT, "out of memory building events");
    else
        reply = redis_eval(r->redis, lua_enqueue, 3, argc, args, err);
    for (size_t i = 0; i < n; i++)
        free(texts[i]);
    if (!reply)
        return -1;
    long added = 0;
    for (size_t i = 0; reply->type == REDIS_REPLY_ARRAY && i < reply->elements; i++, added++)
        log_info("backfilled a call the webhook did not bring",
                 LF_S("call_sid", reply->element[i]->str), LF_S("request_id", request_id));
    freeReplyObject(reply);
    return added;
}

/* Looks the page's candidates up in the ledger and appends those never seen. */
static int backfill(reconciler *r, const twilio_call_summary *calls, const size_t *cand, size_t n,
                    const char *request_id, pass_stats *st, calllog_error *err)
{
    const char **sids = calloc(n, sizeof *sids);
    unsigned char *unseen = calloc(n, 1);
    size_t todo[ENQUEUE_BATCH], m = 0;
    int rc = -1;
    if (!sids || !unseen) {
        error_set(err, CALLLOG_TRANSIENT, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        sids[i] = calls[cand[i]].sid;
    if (ledger_unseen(r->ledger, sids, n, unseen) < 0) {
        error_copy(err, ledger_error(r->ledger));
        goto out;
    }
    for (size_t i = 0; i <= n; i++) {
        if (m == ENQUEUE_BATCH || (i == n && m > 0)) {
            long added = enqueue(r, calls, todo, m, request_id, err);
            if (added < 0)
                goto out;
            st->backfilled += added;
            metric_add(rm.backfilled, NULL, (double)added);
            m = 0;
        }
        if (i < n && unseen[i])
            todo[m++] = cand[i];
    }
    rc = 0;
out:
    free(sids);
    free(unseen);
    return rc;
}

/* Examines one page. Sets `*done` when paging can stop. Returns 0 or -1. */
static int examine_page(reconciler *r, const reconcile_window *w, const twilio_calls_page *page,
                        const char *request_id, pass_stats *st, int *done, calllog_error *err)
{
    size_t *cand = calloc(page->n ? page->n : 1, sizeof *cand), n = 0;
    if (!cand) {
        error_set(err, CALLLOG_TRANSIENT, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < page->n; i++) {
        const twilio_call_summary *c = &page->calls[i];
        st->examined++;
        if (c->started && (long long)c->started * 1000 < w->stop_before_ms)
            *done = 1; /* newest first: every later call started earlier still */
        reconcile_verdict v = reconcile_classify(r->s, w, c);
        if (v == RECONCILE_CHILD_LEG)
            st->child_legs++;
        if (v == RECONCILE_CANDIDATE)
            cand[n++] = i;
    }
    st->candidates += (long)n;
    metric_add(rm.examined, NULL, (double)page->n);
    int rc = n > 0 ? backfill(r, page->calls, cand, n, request_id, st, err) : 0;
    free(cand);
    return rc;
}

/* Pages through the window. Returns 0 when every page was examined, -1 otherwise. */
static int walk(reconciler *r, const reconcile_window *w, const char *request_id, pass_stats *st,
                calllog_error *err)
{
    char *next = NULL;
    int done = 0, rc = 0;
    long long role;
    do {
        twilio_calls_page page;
        calllog_error ae;
        if (twilio_list_calls(r->twilio, next, (time_t)(w->lower_ms / 1000), PAGE_SIZE, &page,
                              &ae) != 0) {
            error_set(err, CALLLOG_TRANSIENT, "%.200s", ae.message);
            rc = -1;
            break;
        }
        st->pages++;
        rc = examine_page(r, w, &page, request_id, st, &done, err);
        free(next);
        next = page.next_page_uri ? strdup(page.next_page_uri) : NULL;
        twilio_calls_page_free(&page);
        if (rc == 0 && next && !done && (role = lease_take(r, err)) != 1) {
            if (role == 0)
                error_set(err, CALLLOG_TRANSIENT, "the reconciler lease was lost");
            rc = -1;
        }
    } while (rc == 0 && next && !done);
    free(next);
    return rc;
}

/* Opens what a pass needs beyond Redis. Returns 0 when ready. */
static int open_pass_links(reconciler *r, calllog_error *err)
{
    if (!r->twilio && !(r->twilio = twilio_client_new(&r->s->twilio))) {
        error_set(err, CALLLOG_TRANSIENT, "cannot create the Twilio client");
        return -1;
    }
    if (!r->ledger && !(r->ledger = ledger_open(r->s->database_url, err)))
        return -1;
    return 0;
}

/* Records a finished pass (checkpoint only after success) and schedules the next. */
static void finish_pass(reconciler *r, int ok, const reconcile_window *w, long long started,
                        const pass_stats *st)
{
    long long now = timing_epoch_ms();
    r->backoff_ms = ok ? 0 : r->backoff_ms == 0 ? FAILURE_BACKOFF_MS : r->backoff_ms * 2;
    if (r->backoff_ms > r->s->reconcile_interval_ms)
        r->backoff_ms = r->s->reconcile_interval_ms;
    r->next_run_ms = now + (ok ? r->s->reconcile_interval_ms : r->backoff_ms);
    char ck[24], run[24], next[24], ex[24], bf[24];
    calllog_error err;
    snprintf(ck, sizeof ck, "%lld", w->upper_ms);
    snprintf(run, sizeof run, "%lld", started);
    snprintf(next, sizeof next, "%lld", r->next_run_ms);
    snprintf(ex, sizeof ex, "%ld", st->examined);
    snprintf(bf, sizeof bf, "%ld", st->backfilled);
    const char *common[] = {"last_run_ms", run,
                            "next_run_ms", next,
                            "last_result", ok ? "ok" : "error",
                            "last_error",  ok ? "" : r->error.message};
    const char *success[] = {"checkpoint_ms", ck, "last_success_ms", run,
                             "last_examined", ex, "last_backfilled", bf};
    if (record(r, common, 8, &err) != 0 || (ok && record(r, success, 8, &err)))
        log_warn("reconciler: cannot record the pass", LF_S("error", err.message));
    metric_add(rm.runs, ok ? "result=\"ok\"" : "result=\"error\"", 1);
}

/* One pass over the window after the checkpoint. */
static void run_pass(reconciler *r)
{
    reconcile_state state;
    pass_stats st = {0};
    char request_id[48];
    long long started = timing_epoch_ms();
    double t0 = timing_mono_s();
    snprintf(request_id, sizeof request_id, "reconcile-%lld", started);
    error_clear(&r->error);
    int ok = reconcile_state_read(r->redis, &r->s->keys, &state) == 0;
    if (!ok)
        error_set(&r->error, CALLLOG_TRANSIENT, "cannot read the checkpoint from Redis");
    reconcile_window w = reconcile_window_for(r->s, started, state.checkpoint_ms);
    if (ok && w.upper_ms > w.lower_ms)
        ok = open_pass_links(r, &r->error) == 0 && walk(r, &w, request_id, &st, &r->error) == 0;
    if (ok && w.upper_ms <= state.checkpoint_ms)
        w.upper_ms = state.checkpoint_ms; /* the clock went back: never move it back */
    finish_pass(r, ok, &w, started, &st);
    long long ms = (long long)((timing_mono_s() - t0) * 1000);
    if (ok) {
        char ck[40];
        timing_format_rfc3339(w.upper_ms, ck, sizeof ck);
        log_info("reconciled", LF_S("request_id", request_id), LF_I("pages", st.pages),
                 LF_I("examined", st.examined), LF_I("candidates", st.candidates),
                 LF_I("backfilled", st.backfilled), LF_I("child_legs", st.child_legs),
                 LF_S("checkpoint", ck), LF_I("duration_ms", ms));
    } else {
        log_warn("reconciliation failed, retrying later", LF_S("request_id", request_id),
                 LF_S("error", r->error.message), LF_I("pages", st.pages),
                 LF_I("backfilled", st.backfilled), LF_I("retry_in_ms", r->backoff_ms),
                 LF_I("duration_ms", ms));
    }
}

/* ---- the thread -------------------------------------------------------------------- */

/* Refreshes the gauges from the shared state, and alerts when passes have failed for
 * three intervals (the leader only, once per three intervals). */
static void watch(reconciler *r)
{
    long long now = timing_epoch_ms();
    reconcile_state state;
    if (now - r->gauges_ms < GAUGE_EVERY_MS || reconcile_state_read(r->redis, &r->s->keys, &state))
        return;
    r->gauges_ms = now;
    metric_set(rm.leader, NULL, r->leader);
    if (state.last_success_ms)
        metric_set(rm.last_success, NULL, (double)state.last_success_ms / 1000.0);
    if (state.checkpoint_ms)
        metric_set(rm.lag, NULL, (double)(now - state.checkpoint_ms) / 1000.0);
    long long since = state.last_success_ms ? state.last_success_ms : r->started_ms;
    long long stale = 3 * r->s->reconcile_interval_ms;
    if (r->leader && now - since > stale && now - r->alerted_ms > stale) {
        r->alerted_ms = now;
        alert_reconcile_stale(since / 1000,
                              state.last_error[0] ? state.last_error : r->error.message);
    }
}

/* One tick: connection, lease, the pass when due, the gauges. */
static void tick(reconciler *r)
{
    calllog_error err = {0};
    if (r->redis && r->redis->err) {
        redisFree(r->redis);
        r->redis = NULL;
    }
    if (!r->redis && !(r->redis = redis_open(&r->s->redis, (int)r->s->redis_timeout_ms, &err))) {
        r->leader = 0;
        return;
    }
    long long role = lease_take(r, &err);
    if (role == 2) {
        reconcile_state state;
        log_info("reconciler lease taken: this worker reconciles",
                 LF_S("consumer", r->s->consumer));
        r->next_run_ms = reconcile_state_read(r->redis, &r->s->keys, &state) == 0
                             ? state.next_run_ms
                             : 0; /* the previous holder's schedule */
    }
    if (role < 0)
        log_warn("reconciler: cannot take the lease", LF_S("error", err.message));
    r->leader = role > 0;
    if (r->leader && timing_epoch_ms() >= r->next_run_ms)
        run_pass(r);
    watch(r);
}

/* The reconciler thread: a tick a second (or a quarter interval, when shorter). */
static void *reconciler_main(void *arg)
{
    reconciler *r = arg;
    long period = r->s->reconcile_interval_ms / 4;
    period = period > 1000 ? 1000 : (period < 50 ? 50 : period);
    while (!shutdown_requested()) {
        tick(r);
        for (long slept = 0; slept < period && !shutdown_requested(); slept += 50)
            timing_sleep_ms(50);
    }
    if (r->redis && !r->redis->err && r->leader)
        leader_release(r->redis, r->s->keys.reconcile_leader, r->s->consumer);
    return NULL;
}

/* Registers the reconciler's metrics. Returns 0 or -1. */
static int register_metrics(void)
{
    rm.runs =
        metrics_register(METRIC_COUNTER, "calllog_reconcile_runs_total",
                         "Reconciliation passes over Twilio's Calls list, by result.", NULL, 0);
    rm.examined = metrics_register(METRIC_COUNTER, "calllog_reconcile_calls_examined_total",
                                   "Calls read from Twilio's Calls list.", NULL, 0);
    rm.backfilled =
        metrics_register(METRIC_COUNTER, "calllog_reconcile_backfilled_total",
                         "Calls the ledger had never seen, appended to the stream.", NULL, 0);
    rm.last_success = metrics_register(METRIC_GAUGE, "calllog_reconcile_last_success_seconds",
                                       "When a pass last succeeded (epoch seconds).", NULL, 0);
    rm.lag = metrics_register(METRIC_GAUGE, "calllog_reconcile_lag_seconds",
                              "How far the checkpoint is behind now.", NULL, 0);
    rm.leader = metrics_register(METRIC_GAUGE, "calllog_reconcile_leader",
                                 "1 when this worker holds the reconciler lease.", NULL, 0);
    if (!rm.runs || !rm.examined || !rm.backfilled || !rm.last_success || !rm.lag || !rm.leader)
        return -1;
    metric_add(rm.runs, "result=\"ok\"", 0);
    metric_add(rm.runs, "result=\"error\"", 0);
    metric_add(rm.backfilled, NULL, 0);
    return 0;
}

reconciler *reconciler_start(const worker_settings *s, int *failed)
{
    *failed = 0;
    if (s->reconcile_interval_ms <= 0)
        return NULL;
    reconciler *r = calloc(1, sizeof *r);
    *failed = 1;
    if (!r || register_metrics() != 0) {
        free(r);
        return NULL;
    }
    r->s = s;
    r->started_ms = timing_epoch_ms();
    if (pthread_create(&r->tid, NULL, reconciler_main, r) != 0) {
        free(r);
        return NULL;
    }
    *failed = 0;
    return r;
}

void reconciler_stop(reconciler *r)
{
    if (!r)
        return;
    pthread_join(r->tid, NULL);
    if (r->redis)
        redisFree(r->redis);
    ledger_close(r->ledger);
    twilio_client_free(r->twilio);
    free(r);
}
