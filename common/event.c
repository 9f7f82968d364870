/* event — builds and parses the normalized call event (see event.h for the layout). */
#include "common/event.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/json_text.h"
#include "common/timing.h"

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

/* The index in `table` of the event field for Twilio parameter `key`, or -1. */
static int field_index(const char *const (*table)[2], size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++) {
        if (table[i][0][0] == key[0] && strcmp(table[i][0], key) == 0)
            return (int)i;
    }
    return -1;
}

/* Appends `,"name":"value"` (the comma unless `*first`). */
static void put_member(buffer *b, int *first, const char *name, const char *value)
{
    json_text_key(b, first, name);
    json_text_string(b, value);
}

/* For each field of `table`, the index of the first of the `n` parameters that names it
 * with a non-empty value (Twilio sends empty ParentCallSid, ForwardedFrom, ...), or -1. */
static void pick_values(const char *const (*table)[2], size_t nfields, const char *const *keys,
                        const char *const *values, size_t n, int *chosen)
{
    for (size_t f = 0; f < nfields; f++)
        chosen[f] = -1;
    for (size_t i = 0; i < n; i++) {
        int f = values[i][0] ? field_index(table, nfields, keys[i]) : -1;
        if (f >= 0 && chosen[f] < 0)
            chosen[f] = (int)i;
    }
}

/* Appends the members of `table` that `chosen` found; returns how many. */
static size_t put_fields(buffer *b, int *first, const char *const (*table)[2], size_t nfields,
                         const char *const *values, const int *chosen)
{
    size_t count = 0;
    for (size_t f = 0; f < nfields; f++) {
        if (chosen[f] >= 0) {
            put_member(b, first, table[f][1], values[chosen[f]]);
            count++;
        }
    }
    return count;
}

/* Writes the event's JSON; see the header. */
calllog_code event_encode(const char *const *keys, const char *const *values, size_t n,
                          const event_meta *meta, buffer *out)
{
    int top[COUNT(top_fields)], geo[COUNT(geo_fields)], first = 0;
    pick_values(top_fields, COUNT(top_fields), keys, values, n, top);
    pick_values(geo_fields, COUNT(geo_fields), keys, values, n, geo);
    buffer_printf(out, "{\"v\":%d", EVENT_VERSION);
    put_fields(out, &first, top_fields, COUNT(top_fields), values, top);
    for (size_t f = 0; f < COUNT(geo_fields); f++) {
        if (geo[f] >= 0) {
            int geo_first = 1;
            buffer_add_str(out, ",\"geo\":{");
            put_fields(out, &geo_first, geo_fields, COUNT(geo_fields), values, geo);
            buffer_add(out, "}", 1);
            break;
        }
    }
    if (meta->received_at)
        put_member(out, &first, "received_at", meta->received_at);
    if (meta->request_id)
        put_member(out, &first, "request_id", meta->request_id);
    if (meta->idempotency_token && *meta->idempotency_token) /* a header: any bytes */
        put_member(out, &first, "idempotency_token", meta->idempotency_token);
    if (meta->source)
        put_member(out, &first, "source", meta->source);
    buffer_add(out, "}", 1);
    return buffer_error(out);
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
