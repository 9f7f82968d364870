/* test_event — unit tests for common/event (the normalized call event).
 *
 * Covered: every Twilio parameter the event keeps (top-level and the "geo" object) and
 * that others are dropped, empty values dropped (and no empty "geo"), the first of a
 * repeated key winning, the ingest's meta fields (v, received_at, request_id,
 * idempotency_token, source), JSON escapes and the buffer's limit, event_parse's refusals with
 * their reasons and a round trip, the status helpers. Expected timestamps were computed with
 * Python's datetime, independently of this code. */
#include <criterion/criterion.h>

#include <string.h>

#include "common/event.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

#define T_TEXT "2026-11-24T20:00:00.123Z"

static const event_meta META = {"req-1", "idem-1", T_TEXT, NULL};

/* Builds an event from parallel key/value arrays; asserts success. */
static json_t *build(const char *const *keys, const char *const *values, size_t n,
                     const event_meta *meta)
{
    buffer b;
    buffer_init(&b, EVENT_MAX_BYTES);
    cr_assert_eq(event_encode(keys, values, n, meta, &b), CALLLOG_OK);
    json_error_t jerr;
    json_t *ev = json_loadb(buffer_ptr(&b), buffer_len(&b), JSON_REJECT_DUPLICATES, &jerr);
    cr_assert_not_null(ev, "not JSON (%s): %s", jerr.text, buffer_ptr(&b));
    buffer_free(&b);
    cr_assert(json_is_object(ev));
    return ev;
}

/* Asserts that string field `key` of `obj` is `want`. */
static void assert_field(const json_t *obj, const char *key, const char *want)
{
    const char *v = json_string_value(json_object_get(obj, key));
    cr_assert(v != NULL, "field %s missing or not a string", key);
    cr_assert_str_eq(v, want, "field %s", key);
}

/* ---- event_encode ---------------------------------------------------------------------- */

Test(event_encode, maps_every_top_level_field)
{
    const char *keys[] = {"CallSid",           "AccountSid",    "From",          "To",
                          "Direction",         "CallStatus",    "CallDuration",  "Timestamp",
                          "SequenceNumber",    "ParentCallSid", "RecordingUrl",  "RecordingSid",
                          "RecordingDuration", "CallerName",    "ForwardedFrom", "CallbackSource",
                          "SipResponseCode",   "AnsweredBy",    "ApiVersion"};
    const char *fields[] = {
        "call_sid",           "account_sid",     "from",           "to",
        "direction",          "status",          "duration",       "timestamp",
        "sequence_number",    "parent_call_sid", "recording_url",  "recording_sid",
        "recording_duration", "caller_name",     "forwarded_from", "callback_source",
        "sip_response_code",  "answered_by",     "api_version"};
    const char *values[N(keys)];
    char buf[N(keys)][32];
    for (size_t i = 0; i < N(keys); i++) {
        snprintf(buf[i], sizeof buf[i], "value-%zu", i);
        values[i] = buf[i];
    }
    json_t *ev = build(keys, values, N(keys), &META);
    for (size_t i = 0; i < N(keys); i++)
        assert_field(ev, fields[i], values[i]);
    cr_assert_null(json_object_get(ev, "geo"), "no geo parameters, no geo object");
    /* 19 mapped fields + v + received_at + request_id + idempotency_token */
    cr_assert_eq(json_object_size(ev), N(keys) + 4);
    json_decref(ev);
}

Test(event_encode, maps_geo_fields_into_geo_object)
{
    const char *keys[] = {
        "CallSid",   "CallStatus",    "FromCity",   "FromState",   "FromZip",    "FromCountry",
        "ToCity",    "ToState",       "ToZip",      "ToCountry",   "CallerCity", "CallerState",
        "CallerZip", "CallerCountry", "CalledCity", "CalledState", "CalledZip",  "CalledCountry"};
    const char *geo[] = {"from_city",   "from_state",   "from_zip",   "from_country",
                         "to_city",     "to_state",     "to_zip",     "to_country",
                         "caller_city", "caller_state", "caller_zip", "caller_country",
                         "called_city", "called_state", "called_zip", "called_country"};
    const char *values[N(keys)];
    char buf[N(keys)][32];
    for (size_t i = 0; i < N(keys); i++) {
        snprintf(buf[i], sizeof buf[i], "g%zu", i);
        values[i] = buf[i];
    }
    json_t *ev = build(keys, values, N(keys), &META);
    json_t *g = json_object_get(ev, "geo");
    cr_assert(json_is_object(g));
    cr_assert_eq(json_object_size(g), N(geo));
    for (size_t i = 0; i < N(geo); i++)
        assert_field(g, geo[i], values[i + 2]);
    cr_assert_null(json_object_get(ev, "from_city"), "geo fields stay out of the top level");
    json_decref(ev);
}

Test(event_encode, unknown_parameters_are_dropped)
{
    const char *keys[] = {"CallSid", "CallStatus", "Caller", "Called", "Digits", "callsid", ""};
    const char *values[] = {"CA1", "completed", "+1", "+2", "123", "lower", "x"};
    json_t *ev = build(keys, values, N(keys), &META);
    cr_assert_eq(json_object_size(ev), 2 + 4, "%s", json_dumps(ev, JSON_COMPACT));
    assert_field(ev, "call_sid", "CA1");
    json_decref(ev);
}

Test(event_encode, empty_values_are_dropped)
{
    const char *keys[] = {"CallSid",       "CallStatus", "ParentCallSid",
                          "ForwardedFrom", "FromCity",   "ToCity"};
    const char *values[] = {"CA1", "busy", "", "", "", ""};
    json_t *ev = build(keys, values, N(keys), &META);
    cr_assert_null(json_object_get(ev, "parent_call_sid"));
    cr_assert_null(json_object_get(ev, "forwarded_from"));
    cr_assert_null(json_object_get(ev, "geo"), "only empty geo values: no geo object");
    assert_field(ev, "status", "busy");
    json_decref(ev);
}

Test(event_encode, empty_first_value_lets_a_later_one_through)
{
    const char *keys[] = {"CallSid", "CallStatus", "From", "From"};
    const char *values[] = {"CA1", "completed", "", "+5511"};
    json_t *ev = build(keys, values, N(keys), &META);
    assert_field(ev, "from", "+5511");
    json_decref(ev);
}

Test(event_encode, first_of_repeated_keys_wins)
{
    const char *keys[] = {"CallSid", "CallStatus", "CallStatus", "CallSid", "FromCity", "FromCity"};
    const char *values[] = {"CA1", "ringing", "completed", "CA2", "RIO", "SAO PAULO"};
    json_t *ev = build(keys, values, N(keys), &META);
    assert_field(ev, "call_sid", "CA1");
    assert_field(ev, "status", "ringing");
    assert_field(json_object_get(ev, "geo"), "from_city", "RIO");
    json_decref(ev);
}

Test(event_encode, meta_fields)
{
    const char *keys[] = {"CallSid", "CallStatus"};
    const char *values[] = {"CA1", "completed"};
    json_t *ev = build(keys, values, N(keys), &META);
    cr_assert(json_is_integer(json_object_get(ev, "v")));
    cr_assert_eq(json_integer_value(json_object_get(ev, "v")), EVENT_VERSION);
    cr_assert_eq(EVENT_VERSION, 1);
    assert_field(ev, "received_at", "2026-11-24T20:00:00.123Z");
    assert_field(ev, "request_id", "req-1");
    assert_field(ev, "idempotency_token", "idem-1");
    json_decref(ev);
}

Test(event_encode, meta_fields_from_headers_are_repaired_not_refused)
{
    const char *keys[] = {"CallSid", "CallStatus"};
    const char *values[] = {"CA1", "completed"};
    const event_meta meta = {"req-1", "caf\xe9-\xff", T_TEXT, NULL}; /* Latin-1, a stray byte */
    json_t *ev = build(keys, values, N(keys), &meta);
    assert_field(ev, "idempotency_token", "caf\xef\xbf\xbd-\xef\xbf\xbd");
    json_decref(ev);
}

Test(event_encode, absent_meta_fields_are_absent)
{
    const char *keys[] = {"CallSid", "CallStatus"};
    const char *values[] = {"CA1", "completed"};
    event_meta none = {NULL, NULL, NULL, NULL};
    json_t *ev = build(keys, values, N(keys), &none);
    cr_assert_null(json_object_get(ev, "request_id"));
    cr_assert_null(json_object_get(ev, "idempotency_token"));
    cr_assert_null(json_object_get(ev, "received_at"));
    cr_assert_null(json_object_get(ev, "source"));
    json_decref(ev);

    event_meta empty_token = {"r", "", T_TEXT, NULL};
    ev = build(keys, values, N(keys), &empty_token);
    cr_assert_null(json_object_get(ev, "idempotency_token"), "empty token is dropped");
    json_decref(ev);
}

Test(event_encode, values_are_kept_verbatim)
{
    const char *keys[] = {"CallSid", "CallStatus", "CallerName", "CallDuration"};
    const char *values[] = {"CA1", "completed", "Jo\xc3\xa3o \"Zé\" <x>", "007"};
    json_t *ev = build(keys, values, N(keys), &META);
    assert_field(ev, "caller_name", "Jo\xc3\xa3o \"Zé\" <x>");
    assert_field(ev, "duration", "007");
    json_decref(ev);
}

Test(event_encode, invalid_utf8_value_is_repaired)
{
    /* A value that is not UTF-8 (a Latin-1 caller name) must not cost the call: each bad
     * byte becomes U+FFFD and the rest of the event is intact. */
    const char *keys[] = {"CallSid", "CallStatus", "CallerName"};
    const char *values[] = {"CA1", "completed", "Jos\xe9 \xff!"};
    json_t *ev = build(keys, values, N(keys), &META);
    cr_assert_str_eq(event_get(ev, "caller_name"), "Jos\xef\xbf\xbd \xef\xbf\xbd!");
    cr_assert_str_eq(event_get(ev, "call_sid"), "CA1");
    json_decref(ev);
}

Test(event_encode, control_characters_and_quotes_are_escaped)
{
    const char *keys[] = {"CallSid", "CallStatus", "CallerName"};
    const char *values[] = {"CA1", "completed", "a\"b\\c\n\t\r\b\f\x01\x1f/\x7f"};
    json_t *ev = build(keys, values, N(keys), &META);
    assert_field(ev, "caller_name", values[2]);
    json_decref(ev);
}

Test(event_encode, source_is_written_when_given)
{
    const char *keys[] = {"CallSid", "CallStatus"};
    const char *values[] = {"CA1", "completed"};
    event_meta meta = {"r", NULL, T_TEXT, "reconcile"};
    json_t *ev = build(keys, values, N(keys), &meta);
    assert_field(ev, "source", "reconcile");
    json_decref(ev);
}

Test(event_encode, an_event_past_the_buffer_maximum_is_refused)
{
    const char *keys[] = {"CallSid", "CallStatus", "CallerName"};
    const char *values[] = {"CA1", "completed", "a long caller name that does not fit"};
    buffer b;
    buffer_init(&b, 40);
    cr_assert_eq(event_encode(keys, values, N(keys), &META, &b), CALLLOG_INVALID);
    cr_assert_null(buffer_take(&b));
    buffer_free(&b);
}

/* ---- event_parse ---------------------------------------------------------------------------- */

/* Parses `text`; asserts refusal with a reason containing `why`. */
static void assert_refused(const char *text, const char *why)
{
    calllog_error err = {0};
    json_t *ev = event_parse(text, strlen(text), &err);
    cr_assert_null(ev, "accepted %s", text);
    cr_assert(strstr(err.message, why) != NULL, "for %s: got '%s', want '%s'", text, err, why);
}

Test(event_parse, refusals)
{
    assert_refused("", "not JSON");
    assert_refused("{", "not JSON");
    assert_refused("not json", "not JSON");
    assert_refused("[1,2]", "not a JSON object");
    assert_refused("\"str\"", "not JSON"); /* jansson decodes objects and arrays only */
    assert_refused("{\"call_sid\":\"CA1\",\"status\":\"completed\"}", "unknown version");
    assert_refused("{\"v\":2,\"call_sid\":\"CA1\",\"status\":\"completed\"}", "unknown version");
    assert_refused("{\"v\":\"1\",\"call_sid\":\"CA1\",\"status\":\"completed\"}",
                   "unknown version");
    assert_refused("{\"v\":1,\"status\":\"completed\"}", "no call_sid");
    assert_refused("{\"v\":1,\"call_sid\":\"\",\"status\":\"completed\"}", "no call_sid");
    assert_refused("{\"v\":1,\"call_sid\":5,\"status\":\"completed\"}", "no call_sid");
    assert_refused("{\"v\":1,\"call_sid\":\"CA1\"}", "no status");
    assert_refused("{\"v\":1,\"call_sid\":\"CA1\",\"status\":\"\"}", "no status");
    assert_refused("{\"v\":1,\"call_sid\":\"CA1\",\"status\":null}", "no status");
}

Test(event_parse, length_is_respected)
{
    const char *text = "{\"v\":1,\"call_sid\":\"CA1\",\"status\":\"busy\"}GARBAGE";
    calllog_error err = {0};
    json_t *ev = event_parse(text, strlen(text) - 7, &err);
    cr_assert_not_null(ev, "%s", err.message);
    json_decref(ev);
    ev = event_parse(text, strlen(text), &err);
    cr_assert_null(ev, "trailing garbage must be refused");
}

Test(event_parse, round_trip_of_a_built_event)
{
    const char *keys[] = {"CallSid", "CallStatus", "From", "FromCity"};
    const char *values[] = {"CA9", "no-answer", "+5511971730783", "SAO PAULO"};
    json_t *ev = build(keys, values, N(keys), &META);
    buffer b;
    buffer_init(&b, EVENT_MAX_BYTES);
    cr_assert_eq(event_encode(keys, values, N(keys), &META, &b), CALLLOG_OK);
    char *text = buffer_take(&b);
    cr_assert_not_null(text, "buffer_take: out of memory");
    calllog_error err = {0};
    json_t *back = event_parse(text, strlen(text), &err);
    cr_assert_not_null(back, "%s", err.message);
    cr_assert(json_equal(ev, back));
    cr_assert_str_eq(event_get(back, "call_sid"), "CA9");
    cr_assert_str_eq(event_get(back, "status"), "no-answer");
    cr_assert_null(event_get(back, "v"), "event_get returns strings only");
    cr_assert_null(event_get(back, "geo"));
    cr_assert_null(event_get(back, "absent"));
    free(text);
    json_decref(back);
    json_decref(ev);
}

/* ---- status helpers ------------------------------------------------------------------------- */

Test(event_status, terminal)
{
    const char *terminal[] = {"completed", "busy", "no-answer", "failed", "canceled"};
    for (size_t i = 0; i < N(terminal); i++) {
        cr_assert_eq(event_status_is_terminal(terminal[i]), 1, "%s", terminal[i]);
        cr_assert_eq(event_status_is_known(terminal[i]), 1, "%s", terminal[i]);
    }
}

Test(event_status, progress_is_known_not_terminal)
{
    const char *progress[] = {"queued", "initiated", "ringing", "in-progress"};
    for (size_t i = 0; i < N(progress); i++) {
        cr_assert_eq(event_status_is_terminal(progress[i]), 0, "%s", progress[i]);
        cr_assert_eq(event_status_is_known(progress[i]), 1, "%s", progress[i]);
    }
}

Test(event_status, unknown)
{
    const char *unknown[] = {"Completed", "cancelled", "no_answer", "", "completed ", "answered"};
    for (size_t i = 0; i < N(unknown); i++) {
        cr_assert_eq(event_status_is_terminal(unknown[i]), 0, "'%s'", unknown[i]);
        cr_assert_eq(event_status_is_known(unknown[i]), 0, "'%s'", unknown[i]);
    }
    cr_assert_eq(event_status_is_terminal(NULL), 0);
    cr_assert_eq(event_status_is_known(NULL), 0);
}
