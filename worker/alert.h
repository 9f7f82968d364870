/* alert — Slack-compatible webhook alerts: every dead letter, and sustained failure.
 *
 * ALERT_WEBHOOK_URL receives `{"text": "..."}` (Slack incoming webhooks, Mattermost,
 * Google Chat and most chat tools accept it). A failure-rate alert fires when, within
 * ALERT_WINDOW_S, at least ALERT_MIN_EVENTS outcomes were recorded and at least
 * ALERT_FAILURE_PERCENT of them were failures (retries or dead letters); it fires at
 * most once per window.
 *
 * Posting happens off the callers' threads: alert_start starts one sender thread, and
 * alert_dead_letter, alert_reconcile_stale and alert_record only format the message and
 * queue it, so a slow or unreachable webhook never holds up a call's delivery. They may
 * be called from any thread, and never block on the network. At most ALERT_QUEUE_SIZE
 * messages wait; when one more arrives the oldest waiting one is dropped, logged
 * ("alert dropped") and counted in calllog_worker_alerts_dropped_total{kind}. Sending is
 * best effort with a short timeout and no retry: an alert that cannot be sent is logged
 * ("alert not sent", naming the webhook by scheme and host only: its path and query are
 * its credentials) and counted in calllog_worker_alerts_total{kind,result="failed"}.
 *
 * Lifetime: alert_start once at start-up (after signals are blocked: the sender inherits
 * the mask), alert_stop once at the end, after the threads that raise alerts have been
 * joined. Without ALERT_WEBHOOK_URL no thread starts and the calls only log what they
 * log anyway. Calls before alert_start or after alert_stop send nothing. */
#ifndef CALLLOG_ALERT_H
#define CALLLOG_ALERT_H

#include "common/error.h"
#include "worker/settings.h"

/* How many messages may wait for the sender; one more drops the oldest. */
#define ALERT_QUEUE_SIZE 32

/* Reads the alert settings (`s` must outlive the module), registers the alert metrics
 * and, when ALERT_WEBHOOK_URL is set, starts the sender thread. Returns CALLLOG_OK, or a
 * negative code with `err` filled (metrics or thread could not be created). */
calllog_code alert_start(const worker_settings *s, calllog_error *err);

/* Stops the sender: what is queued is still sent until `timeout_ms` from now (each post
 * started meanwhile gets only what remains of it; one already under way keeps its own
 * timeout of a few seconds); what is left then is dropped and counted. Returns once the
 * thread is joined. Harmless without alert_start, and when called twice. */
void alert_stop(long timeout_ms);

/* Queues the announcement of a dead letter. */
void alert_dead_letter(const char *call_sid, const char *reason, const char *error);

/* Queues the announcement that reconciliation has not succeeded since `since` (epoch s)
 * because of `error`, and logs it. The caller decides when (reconcile.c: after three
 * intervals, once each). */
void alert_reconcile_stale(long long since, const char *error);

/* Records one outcome (failed = retry or dead) and, on a sustained failure rate, logs it
 * and queues the alert. Thread-safe: every consumer thread calls it. */
void alert_record(int failed);

#endif
