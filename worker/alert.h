/* alert — Slack-compatible webhook alerts: every dead letter, and sustained failure.
 *
 * ALERT_WEBHOOK_URL receives `{"text": "..."}` (Slack incoming webhooks, Mattermost,
 * Google Chat and most chat tools accept it). A failure-rate alert fires when, within
 * ALERT_WINDOW_S, at least ALERT_MIN_EVENTS outcomes were recorded and at least
 * ALERT_FAILURE_PERCENT of them were failures (retries or dead letters); it fires at
 * most once per window. Sending is best effort with a short timeout: an alert that
 * cannot be sent is logged (naming the webhook by scheme and host only: its path and
 * query are its credentials), never retried at the expense of call delivery. */
#ifndef CALLLOG_ALERT_H
#define CALLLOG_ALERT_H

#include "settings.h"

/* Reads the alert settings (kept for the process lifetime). Call once at start-up. */
void alert_init(const worker_settings *s);

/* Announces a dead letter. */
void alert_dead_letter(const char *call_sid, const char *reason, const char *error);

/* Announces that reconciliation has not succeeded since `since` (epoch s) because of
 * `error`. The caller decides when (reconcile.c: after three intervals, once each). */
void alert_reconcile_stale(long long since, const char *error);

/* Records one outcome (failed = retry or dead) and alerts on a sustained failure rate. */
void alert_record(int failed);

#endif
