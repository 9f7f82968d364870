/* event — builds and parses the normalized call event (see event.h for the layout). */
#include "event.h"
#include "timing.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Twilio parameter → top-level event field. */
static const char *const top_fields[][2] = {
    {"CallSid", "call_sid"},
    {"AccountSid", "account_sid"},
    {"From", "from"},
    {"To", "to"},
    {"Direction", "direction"},
    {"CallStatus", "status"},
    {"CallDuration", "duration"},
    {"Timestamp", "timestamp"},
    {"SequenceNumber", "sequence_number"},
    {"ParentCallSid", "parent_call_sid"},
    {"RecordingUrl", "recording_url"},
    {"RecordingSid", "recording_sid"},
    {"RecordingDuration", "recording_duration"},
    {"CallerName", "caller_name"},
    {"ForwardedFrom", "forwarded_from"},
    {"CallbackSource", "callback_source"},
    {"SipResponseCode", "sip_response_code"},
    {"AnsweredBy", "answered_by"},
    {"ApiVersion", "api_version"},
};

/* Twilio geo parameter → field of the "geo" object. */
static const char *const geo_fields[][2] = {
    {"FromCity", "from_city"},     {"FromState", "from_state"},
    {"FromZip", "from_zip"},       {"FromCountry", "from_country"},
    {"ToCity", "to_city"},         {"ToState", "to_state"},
    {"ToZip", "to_zip"},           {"ToCountry", "to_country"},
    {"CallerCity", "caller_city"}, {"CallerState", "caller_state"},
    {"CallerZip", "caller_zip"},   {"CallerCountry", "caller_country"},
    {"CalledCity", "called_city"}, {"CalledState", "called_state"},
    {"CalledZip", "called_zip"},   {"CalledCountry", "called_country"},
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* The event field for Twilio parameter `key` in `table`, or NULL. */
static const char *lookup(const char *const (*table)[2], size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(table[i][0], key) == 0)
            return table[i][1];
    }
    return NULL;
}

/* Length of the valid UTF-8 sequence at `p` (1–4), or 0 when it is not valid. */
static size_t utf8_sequence(const unsigned char *p)
{
    size_t n = p[0] < 0x80             ? 1
               : (p[0] & 0xE0) == 0xC0 ? 2
               : (p[0] & 0xF0) == 0xE0 ? 3
               : (p[0] & 0xF8) == 0xF0 ? 4
                                       : 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    }
    if ((n == 2 && p[0] < 0xC2) || (n == 3 && p[0] == 0xE0 && p[1] < 0xA0) ||
        (n == 3 && p[0] == 0xED && p[1] >= 0xA0) || (n == 4 && p[0] == 0xF0 && p[1] < 0x90) ||
        (n == 4 && p[0] > 0xF4) || (n == 4 && p[0] == 0xF4 && p[1] >= 0x90))
        return 0; /* overlong forms, surrogates, beyond U+10FFFF */
    return n;
}

/* A JSON string of `value`, with bytes that are not UTF-8 replaced by U+FFFD: a caller
 * name in Latin-1 must not cost the call. */
static json_t *json_string_repaired(const char *value)
{
    json_t *s = json_string(value);
    if (s)
        return s;
    size_t len = strlen(value);
    char *fixed = malloc(len * 3 + 1), *o = fixed;
    if (!fixed)
        return NULL;
    for (const unsigned char *p = (const unsigned char *)value; *p;) {
        size_t n = utf8_sequence(p);
        if (n == 0) {
            memcpy(o, "\xEF\xBF\xBD", 3);
            o += 3;
            p++;
        } else {
            memcpy(o, p, n);
            o += n;
            p += n;
        }
    }
    *o = '\0';
    s = json_string(fixed);
    free(fixed);
    return s;
}

/* Sets obj[key] = value unless already set (the first of repeated keys wins). */
static int set_once(json_t *obj, const char *key, const char *value)
{
    if (json_object_get(obj, key))
        return 0;
    json_t *s = json_string_repaired(value);
    return s ? json_object_set_new(obj, key, s) : -1;
}

/* Adds the ingest's own fields: version, received_at, request id, idempotency token. */
static int add_meta(json_t *ev, const event_meta *meta)
{
    char ts[40];
    timing_format_rfc3339(meta->received_at_ms, ts, sizeof ts);
    int rc = json_object_set_new(ev, "v", json_integer(EVENT_VERSION));
    rc |= json_object_set_new(ev, "received_at", json_string(ts));
    if (meta->request_id)
        rc |= json_object_set_new(ev, "request_id", json_string_repaired(meta->request_id));
    if (meta->idempotency_token && *meta->idempotency_token) /* a header: any bytes */
        rc |= json_object_set_new(ev, "idempotency_token",
                                  json_string_repaired(meta->idempotency_token));
    return rc ? -1 : 0;
}

json_t *event_from_params(const char *const *keys, const char *const *values, size_t n,
                          const event_meta *meta)
{
    json_t *ev = json_object();
    json_t *geo = json_object();
    int rc = (ev && geo) ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (values[i][0] == '\0')
            continue; /* Twilio sends empty ParentCallSid, ForwardedFrom, ... */
        const char *field = lookup(top_fields, COUNT(top_fields), keys[i]);
        if (field) {
            rc = set_once(ev, field, values[i]);
        } else if ((field = lookup(geo_fields, COUNT(geo_fields), keys[i]))) {
            rc = set_once(geo, field, values[i]);
        }
    }
    if (rc == 0 && json_object_size(geo) > 0)
        rc = json_object_set(ev, "geo", geo);
    if (rc == 0)
        rc = add_meta(ev, meta);
    json_decref(geo);
    if (rc != 0) {
        json_decref(ev);
        return NULL;
    }
    return ev;
}

const char *event_get(const json_t *ev, const char *key)
{
    return json_string_value(json_object_get(ev, key));
}

json_t *event_parse(const char *text, size_t len, calllog_error *err)
{
    json_error_t jerr;
    json_t *ev = json_loadb(text, len, 0, &jerr);
    if (!ev) {
        error_set(err, CALLLOG_INVALID, "event is not JSON: %s", jerr.text);
        return NULL;
    }
    const char *why = NULL;
    if (!json_is_object(ev))
        why = "event is not a JSON object";
    else if (json_integer_value(json_object_get(ev, "v")) != EVENT_VERSION)
        why = "event has an unknown version";
    else if (!event_get(ev, "call_sid") || !*event_get(ev, "call_sid"))
        why = "event has no call_sid";
    else if (!event_get(ev, "status") || !*event_get(ev, "status"))
        why = "event has no status";
    if (why) {
        error_set(err, CALLLOG_INVALID, "%s", why);
        json_decref(ev);
        return NULL;
    }
    return ev;
}

static const char *const terminal_statuses[] = {"completed", "busy", "no-answer", "failed",
                                                "canceled"};
static const char *const progress_statuses[] = {"queued", "initiated", "ringing", "in-progress"};

int event_status_is_terminal(const char *status)
{
    for (size_t i = 0; status && i < COUNT(terminal_statuses); i++) {
        if (strcmp(status, terminal_statuses[i]) == 0)
            return 1;
    }
    return 0;
}

int event_status_is_known(const char *status)
{
    for (size_t i = 0; status && i < COUNT(progress_statuses); i++) {
        if (strcmp(status, progress_statuses[i]) == 0)
            return 1;
    }
    return event_status_is_terminal(status);
}
