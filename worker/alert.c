/* alert — webhook alerts for dead letters and sustained failure rates (see alert.h).
 *
 * The callers are the consumer threads (a dead letter, every outcome) and the reconciler:
 * posting from them would let a slow chat service hold a call, so they only append the
 * formatted message to a small ring (`outbox`, a mutex and a condition variable) and
 * one sender thread posts what it finds there, oldest first. The ring is bounded:
 * a flood of dead letters must not grow memory, and the newest news is worth more than
 * the oldest, so a full ring drops its oldest message (counted and logged). At shutdown
 * the sender drains the ring until a deadline, then gives up on the rest (counted too).
 *
 * A webhook URL is a credential: Slack's secret is its path, Google Chat's its query. An
 * alert that fails is logged with the URL's scheme, host and port only, the HTTP status
 * and the transport error (which http_client writes without the path); never the answer's
 * body, which may echo the path ("The requested URL /services/... was not found").
 *
 * The outbox and the failure window are process-wide state, each guarded by its mutex:
 * they are part of the metrics-like bookkeeping the design allows, and the only state this
 * module keeps. The sender's two flags are C11 atomics. */
#include "worker/alert.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/event.h"
#include "common/http_client.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/timing.h"

#define ALERT_TEXT_MAX 1024
#define POST_TIMEOUT_MS 3000
#define CONNECT_TIMEOUT_MS 2000

static const char *const alert_kinds[] = {"dead_letter", "reconcile_stale", "failure_rate"};

static const worker_settings *alert_settings;
static metric *alerts_sent, *alerts_dropped;

/* One message waiting for the sender. */
typedef struct queued_alert {
    const char *kind; /* one of alert_kinds */
    char text[ALERT_TEXT_MAX];
} queued_alert;

/* The messages waiting for the sender, oldest at ring[head]. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake; /* a message was queued, or a stop was requested */
    queued_alert ring[ALERT_QUEUE_SIZE];
    size_t head, count;
    long long deadline_ms; /* set with `stopping`: nothing is posted after it (mono ms) */
    pthread_t thread;
    atomic_bool running;  /* the sender was started and is not joined yet */
    atomic_bool stopping; /* alert_stop was called: drain until the deadline, then end */
} outbox = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

/* The failure-rate window shared by the consumer threads. */
static struct {
    pthread_mutex_t lock;
    time_t window_start;
    long total, failed;
    int fired; /* already alerted in this window */
} window = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, 0};

/* Counts and logs `n` messages of `kind` that will never be sent, and why. */
static void count_dropped(const char *kind, long n, const char *why)
{
    char lbl[64];
    snprintf(lbl, sizeof lbl, "kind=\"%s\"", kind);
    metric_add(alerts_dropped, lbl, (double)n);
    log_warn("alert dropped", LF_S("kind", kind), LF_I("count", n), LF_S("reason", why));
}

/* POSTs {"text": text} to the webhook, giving up after `timeout_ms`; counts the result. */
static void post_alert(const char *kind, const char *text, long timeout_ms)
{
    json_t *o = json_pack("{s:s}", "text", text);
    char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    http_client *c = http_client_new(
        timeout_ms, timeout_ms < CONNECT_TIMEOUT_MS ? timeout_ms : CONNECT_TIMEOUT_MS);
    const char *headers[] = {"Content-Type: application/json", NULL};
    http_response r = {0};
    calllog_error err = {0};
    int ok = body && c &&
             http_request(c, "POST", alert_settings->alert_webhook_url, headers, NULL, body,
                          strlen(body), &r, &err) == 0 &&
             r.status >= 200 && r.status < 300;
    char lbl[96];
    snprintf(lbl, sizeof lbl, "kind=\"%s\",result=\"%s\"", kind, ok ? "sent" : "failed");
    metric_add(alerts_sent, lbl, 1);
    if (!ok) {
        char origin[160];
        http_url_origin(alert_settings->alert_webhook_url, origin, sizeof origin);
        log_warn("alert not sent", LF_S("kind", kind), LF_S("webhook", origin),
                 LF_I("http_status", r.status),
                 LF_S("error", err.message[0] ? err.message : "the webhook did not answer 2xx"));
    }
    http_response_free(&r);
    http_client_free(c);
    free(body);
}

/* Takes the oldest message off the ring into `out`; the caller holds the lock. */
static void outbox_pop(queued_alert *out)
{
    *out = outbox.ring[outbox.head];
    outbox.head = (outbox.head + 1) % ALERT_QUEUE_SIZE;
    outbox.count--;
}

/* Drops what the sender could not post before the deadline; the caller holds the lock. */
static void outbox_abandon(void)
{
    long left[sizeof alert_kinds / sizeof *alert_kinds] = {0};
    queued_alert a;
    while (outbox.count > 0) {
        outbox_pop(&a);
        for (size_t k = 0; k < sizeof alert_kinds / sizeof *alert_kinds; k++)
            left[k] += strcmp(a.kind, alert_kinds[k]) == 0;
    }
    for (size_t k = 0; k < sizeof alert_kinds / sizeof *alert_kinds; k++)
        if (left[k] > 0)
            count_dropped(alert_kinds[k], left[k], "shutdown: not sent before the deadline");
}

/* The sender thread: posts queued messages until a stop, then drains until the deadline. */
static void *sender_main(void *arg)
{
    (void)arg;
    queued_alert a;
    pthread_mutex_lock(&outbox.lock);
    for (;;) {
        while (outbox.count == 0 && !atomic_load(&outbox.stopping))
            pthread_cond_wait(&outbox.wake, &outbox.lock);
        long timeout = POST_TIMEOUT_MS;
        if (atomic_load(&outbox.stopping)) {
            long long left = outbox.deadline_ms - timing_mono_ms();
            if (outbox.count == 0 || left <= 0)
                break;
            timeout = left < timeout ? (long)left : timeout;
        }
        outbox_pop(&a);
        pthread_mutex_unlock(&outbox.lock);
        post_alert(a.kind, a.text, timeout);
        pthread_mutex_lock(&outbox.lock);
    }
    outbox_abandon();
    pthread_mutex_unlock(&outbox.lock);
    return NULL;
}

/* Queues one message for the sender, dropping the oldest waiting one when the ring is
 * full. Without a running sender (no webhook, or stopped) the message goes nowhere. */
static void enqueue(const char *kind, const char *text)
{
    const char *dropped = NULL;
    pthread_mutex_lock(&outbox.lock);
    if (atomic_load(&outbox.running) && !atomic_load(&outbox.stopping)) {
        if (outbox.count == ALERT_QUEUE_SIZE) {
            dropped = outbox.ring[outbox.head].kind;
            outbox.head = (outbox.head + 1) % ALERT_QUEUE_SIZE;
            outbox.count--;
        }
        queued_alert *q = &outbox.ring[(outbox.head + outbox.count) % ALERT_QUEUE_SIZE];
        q->kind = kind;
        snprintf(q->text, sizeof q->text, "%s", text);
        outbox.count++;
        pthread_cond_signal(&outbox.wake);
    }
    pthread_mutex_unlock(&outbox.lock);
    if (dropped)
        count_dropped(dropped, 1, "queue full: the oldest waiting alert made room");
}

calllog_code alert_start(const worker_settings *s, calllog_error *err)
{
    alert_settings = s;
    alerts_sent =
        metrics_register(METRIC_COUNTER, "calllog_worker_alerts_total",
                         "Alerts sent to ALERT_WEBHOOK_URL, by kind and result.", NULL, 0);
    alerts_dropped = metrics_register(
        METRIC_COUNTER, "calllog_worker_alerts_dropped_total",
        "Alerts never sent: the queue was full, or shutdown came first; by kind.", NULL, 0);
    if (!alerts_sent || !alerts_dropped)
        return error_set(err, CALLLOG_NOMEM, "cannot register the alert metrics");
    for (size_t k = 0; k < sizeof alert_kinds / sizeof *alert_kinds; k++) {
        char lbl[64]; /* series exist from start-up, so increase() sees the first drop */
        snprintf(lbl, sizeof lbl, "kind=\"%s\"", alert_kinds[k]);
        metric_add(alerts_dropped, lbl, 0);
    }
    if (!s->alert_webhook_url || atomic_load(&outbox.running))
        return CALLLOG_OK;
    outbox.head = outbox.count = 0;
    atomic_store(&outbox.stopping, false);
    atomic_store(&outbox.running, true);
    if (pthread_create(&outbox.thread, NULL, sender_main, NULL) != 0) {
        atomic_store(&outbox.running, false);
        return error_set(err, CALLLOG_NOMEM, "cannot start the alert sender thread");
    }
    return CALLLOG_OK;
}

void alert_stop(long timeout_ms)
{
    if (!atomic_load(&outbox.running))
        return;
    pthread_mutex_lock(&outbox.lock);
    outbox.deadline_ms = timing_mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    atomic_store(&outbox.stopping, true);
    pthread_cond_signal(&outbox.wake);
    pthread_mutex_unlock(&outbox.lock);
    pthread_join(outbox.thread, NULL);
    atomic_store(&outbox.running, false);
}

void alert_dead_letter(const char *call_sid, const char *reason, const char *error)
{
    char text[ALERT_TEXT_MAX];
    snprintf(text, sizeof text,
             ":rotating_light: calllog: call %s went to the dead stream (%s): %s\n"
             "Inspect with `calllog-admin dead list`, replay with `calllog-admin dead replay`.",
             call_sid, reason, error ? error : "");
    enqueue("dead_letter", text);
}

void alert_reconcile_stale(long long since, const char *error)
{
    char text[ALERT_TEXT_MAX], when[40];
    timing_format_rfc3339(since * 1000, when, sizeof when);
    snprintf(text, sizeof text,
             ":warning: calllog: reconciliation with Twilio's Calls list has not succeeded since "
             "%s (%s). Calls whose webhook was lost are not being backfilled. Check Twilio "
             "credentials and `calllog-admin status`.",
             when, error && error[0] ? error : "no run");
    log_error("reconciliation stale", LF_S("alert", text));
    enqueue("reconcile_stale", text);
}

void alert_record(int failed)
{
    time_t now = time(NULL);
    char text[512] = "";
    pthread_mutex_lock(&window.lock);
    if (!alert_settings || now - window.window_start >= alert_settings->alert_window_s) {
        window.window_start = now;
        window.total = window.failed = 0;
        window.fired = 0;
    }
    window.total++;
    window.failed += failed != 0;
    if (alert_settings && !window.fired && window.total >= alert_settings->alert_min_events &&
        window.failed * 100 >= window.total * alert_settings->alert_failure_percent) {
        window.fired = 1;
        snprintf(text, sizeof text,
                 ":warning: calllog: %ld of the last %ld calls failed within %lds "
                 "(retries or dead letters). Check RD Station, Twilio and the worker logs.",
                 window.failed, window.total, alert_settings->alert_window_s);
    }
    pthread_mutex_unlock(&window.lock);
    if (text[0]) {
        log_error("sustained failure rate", LF_S("alert", text));
        enqueue("failure_rate", text);
    }
}
