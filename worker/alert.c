/* alert — webhook alerts for dead letters and sustained failure rates (see alert.h).
 *
 * A webhook URL is a credential: Slack's secret is its path, Google Chat's its query. An
 * alert that fails is logged with the URL's scheme, host and port only, the HTTP status
 * and the transport error (which http_client writes without the path); never the answer's
 * body, which may echo the path ("The requested URL /services/... was not found").
 *
 * The failure window is process-wide state guarded by a mutex: it is part of the
 * metrics-like bookkeeping the design allows, and the only state this module keeps. */
#include "alert.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "event.h"
#include "http_client.h"
#include "log.h"
#include "metrics.h"
#include "timing.h"

static const worker_settings *alert_settings;
static metric *alerts_sent;

static struct {
    pthread_mutex_t lock;
    time_t window_start;
    long total, failed;
    int fired; /* already alerted in this window */
} window = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, 0};

void alert_init(const worker_settings *s)
{
    alert_settings = s;
    alerts_sent =
        metrics_register(METRIC_COUNTER, "calllog_worker_alerts_total",
                         "Alerts sent to ALERT_WEBHOOK_URL, by kind and result.", NULL, 0);
}

/* POSTs {"text": text} to the webhook. */
static void send_alert(const char *kind, const char *text)
{
    if (!alert_settings || !alert_settings->alert_webhook_url)
        return;
    json_t *o = json_pack("{s:s}", "text", text);
    char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    http_client *c = http_client_new(3000, 2000);
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

void alert_dead_letter(const char *call_sid, const char *reason, const char *error)
{
    char text[1024];
    snprintf(text, sizeof text,
             ":rotating_light: calllog: call %s went to the dead stream (%s): %s\n"
             "Inspect with `calllog-admin dead list`, replay with `calllog-admin dead replay`.",
             call_sid, reason, error ? error : "");
    send_alert("dead_letter", text);
}

void alert_reconcile_stale(long long since, const char *error)
{
    char text[1024], when[40];
    timing_format_rfc3339(since * 1000, when, sizeof when);
    snprintf(text, sizeof text,
             ":warning: calllog: reconciliation with Twilio's Calls list has not succeeded since "
             "%s (%s). Calls whose webhook was lost are not being backfilled. Check Twilio "
             "credentials and `calllog-admin status`.",
             when, error && error[0] ? error : "no run");
    log_error("reconciliation stale", LF_S("alert", text));
    send_alert("reconcile_stale", text);
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
        send_alert("failure_rate", text);
    }
}
