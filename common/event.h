/* event — the normalized call event (JSON, versioned) that travels through Redis.
 *
 * The ingest builds it from Twilio's form parameters; the worker parses it back. Field
 * names are snake_case versions of Twilio's (`CallSid` → `call_sid`); only what matters
 * downstream is kept (design §3, issue "ingest"). Version 1 layout:
 *
 *   {"v":1, "call_sid":"CA…", "account_sid":"AC…", "from":"+55…", "to":"+55…",
 *    "direction":"inbound", "status":"completed", "duration":"42", "timestamp":"…",
 *    "sequence_number":"3", "parent_call_sid":…, "recording_url":…, "recording_sid":…,
 *    "recording_duration":…, "caller_name":…, "forwarded_from":…, "callback_source":…,
 *    "sip_response_code":…, "api_version":…,
 *    "geo":{"from_city":…,"from_state":…,"from_zip":…,"from_country":…,"to_city":…, …},
 *    "received_at":"2026-11-24T20:00:00.123Z", "request_id":"…", "idempotency_token":…,
 *    "source":"reconcile" (backfilled calls only)}
 *
 * Absent Twilio fields are absent in the JSON. Values stay strings, as Twilio sent them. */
#ifndef CALLLOG_EVENT_H
#define CALLLOG_EVENT_H

#include <jansson.h>
#include <stddef.h>
#include "common/buffer.h"
#include "common/error.h"

#define EVENT_VERSION 1

/* The most bytes an encoded event may take (a webhook body is far smaller). */
#define EVENT_MAX_BYTES (1024 * 1024)

/* What the ingest knows besides the parameters. */
typedef struct event_meta {
    const char *request_id;
    const char *idempotency_token; /* I-Twilio-Idempotency-Token, or NULL */
    const char *received_at;       /* RFC 3339, milliseconds, UTC (timing_format_rfc3339) */
    const char *source;            /* "reconcile" for backfilled calls, else NULL (absent) */
} event_meta;

/* Appends the event built from decoded Twilio parameters (`n` key/value pairs) to `out`
 * as compact JSON: each field from the first parameter that gives it a non-empty value,
 * unknown parameters dropped, bytes that are not UTF-8 replaced by U+FFFD (never refused).
 * The caller checks CallSid and CallStatus first. Written straight into the buffer, no
 * JSON tree: this runs once per webhook. Returns CALLLOG_OK, or the buffer's error
 * (CALLLOG_NOMEM; CALLLOG_INVALID past its maximum). */
calllog_code event_encode(const char *const *keys, const char *const *values, size_t n,
                          const event_meta *meta, buffer *out);

/* Parses and checks an event: a JSON object of a known version with non-empty
 * `call_sid` and `status`. Returns the object (caller owns) or NULL with `err` filled. */
json_t *event_parse(const char *text, size_t len, calllog_error *err);

/* The string field `key` of `ev`, or NULL when absent or not a string. */
const char *event_get(const json_t *ev, const char *key);

/* 1 for Twilio's terminal statuses: completed, busy, no-answer, failed, canceled. */
int event_status_is_terminal(const char *status);

/* 1 for any status Twilio documents (initiated, ringing, in-progress and terminal). */
int event_status_is_known(const char *status);

#endif
