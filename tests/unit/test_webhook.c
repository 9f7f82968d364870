/* test_webhook — unit tests for ingest/webhook (one Twilio status callback → event or refusal).
 *
 * Requests are signed with auth token 12345 (67890 as the secondary). Every expected
 * signature below was computed independently of this code with Python's hmac module:
 *
 *   import hmac, hashlib, base64, urllib.parse
 *   BASE = "https://calllog.example.com/twilio/log-call"
 *   def sig(url, pairs, tok=b"12345"):       # pairs: [(key, value)], decoded
 *       params = {}
 *       for k, v in pairs: params.setdefault(k, []).append(v)
 *       s = url
 *       for k in sorted(params):
 *           for v in sorted(set(params[k])): s += k + v
 *       return base64.b64encode(hmac.new(tok, s.encode(), hashlib.sha1).digest()).decode()
 *   body = urllib.parse.urlencode(pairs)
 *   # JSON: url = BASE + "?bodySHA256=" + hashlib.sha256(body).hexdigest(); sig(url, [])
 *
 * Covered: content-type matching (parameters, case, whitespace; 415 for others and for a
 * missing header), 400 for bad escapes, missing/empty CallSid or CallStatus and bad JSON,
 * 403 for a bad, missing or wrong-token signature and for tampered bodies, 413 for too many
 * parameters (form and JSON), token rotation, JSON bodies with bodySHA256, and the
 * normalized event's fields. */
#include <criterion/criterion.h>
#include <openssl/sha.h>
#include <stdio.h>

#include <string.h>

#include "common/event.h"
#include "ingest/webhook.h"

#define BASE "https://calllog.example.com/twilio/log-call"
#define FORM_CT "application/x-www-form-urlencoded"
#define JSON_CT "application/json"
#define T_MS 1795550400123LL /* 2026-11-24T20:00:00.123Z */

/* A full completed-call callback (ParentCallSid empty, Caller unmapped). */
#define FULL_BODY                                                                                  \
    "CallSid=CA0123456789abcdef0123456789abcdef&AccountSid=AC0123456789abcdef0123456789abcdef&"    \
    "From=%2B5511971730783&To=%2B551130000000&Direction=inbound&CallStatus=completed&"             \
    "CallDuration=42&Timestamp=Tue%2C+24+Nov+2026+20%3A00%3A00+%2B0000&SequenceNumber=3&"          \
    "ParentCallSid=&FromCity=SAO+PAULO&FromState=SP&FromCountry=BR&ToCountry=BR&"                  \
    "Caller=%2B5511971730783&ApiVersion=2010-04-01"
#define FULL_SIG "zoYXPU9lD7S5G/7uzejiBSUZSIw="
#define FULL_SECONDARY_SIG "HJj6zOGJasDQTYx1lFpPNTJYfc0=" /* same body, token 67890 */

#define NO_SID_BODY "CallStatus=completed&From=%2B5511971730783"
#define NO_SID_SIG "fPm/Z8Q3Hcx4h+Ir3ND/4CTRC4U="
#define NO_STATUS_BODY "CallSid=CA1&From=%2B5511971730783"
#define NO_STATUS_SIG "I4RzDveFMa8T19eODsLp+flaHiM="
#define EMPTY_SID_BODY "CallSid=&CallStatus=completed"
#define EMPTY_SID_SIG "X5aT2+mQIKgI92x9AV4eY//LGHY="
#define REPEATED_BODY "CallSid=CA1&CallStatus=ringing&CallStatus=completed"
#define REPEATED_SIG "q2XzRRkOdNOXnpn5s41fMkMEFYU="
#define FOUR_BODY "CallSid=CA1&CallStatus=completed&A=1&B=2"
#define FOUR_SIG "Qz7xE+E+2ObuTD6A9UW1QQ3JcCA="
#define QUERY_URL BASE "?x=1&y=a%20b"
#define QUERY_BODY "CallSid=CA1&CallStatus=completed"
#define QUERY_SIG "K9vngYtH9VzTawJDKgo/V3EVXMA="
/* CallerName is the single byte 0xE9 (Latin-1 é): not UTF-8. */
#define LATIN1_BODY "CallSid=CA1&CallStatus=completed&CallerName=Jos%E9"
#define LATIN1_SIG "kWYPBEveJ5RdhwaWROKgcmX1GTw="

#define JSON_OK_BODY                                                                               \
    "{\"CallSid\":\"CA1\",\"CallStatus\":\"completed\",\"CallDuration\":42,\"From\":"              \
    "\"+5511971730783\",\"Extra\":{\"a\":1},\"Flag\":true,\"ParentCallSid\":\"\"}"
#define JSON_OK_URL                                                                                \
    BASE "?bodySHA256=1d1ad3b83402dd1330b4525c84ea8c583988ada3899a6f600fbe773fb3b899de"
#define JSON_OK_SIG "3akI/QMgMIbLjpjZO5HLhJp8vOU="
#define JSON_NOHASH_BODY "{\"CallSid\":\"CA1\",\"CallStatus\":\"completed\"}"
#define JSON_NOHASH_URL BASE
#define JSON_NOHASH_SIG "tYTTZBQVBgCk5cSzeL+z5rtooi0="
/* the URL carries the hash of a different body (CA2) */
#define JSON_WRONGHASH_BODY "{\"CallSid\":\"CA1\",\"CallStatus\":\"completed\"}"
#define JSON_WRONGHASH_URL                                                                         \
    BASE "?bodySHA256=018a449abfb8cc3d63f20f7b6e70ff408d667c63e0a7c63fed451b362ce9fdb9"
#define JSON_WRONGHASH_SIG "3GmyfcAchANBE5ramVXxS5ybjQ8="
#define JSON_BAD_BODY "{\"CallSid\":\"CA1\","
#define JSON_BAD_URL                                                                               \
    BASE "?bodySHA256=872eab63c1a2bec2a3f1963f264b6fdad57bcb9c1fee2583942ee46e4650171a"
#define JSON_BAD_SIG "B4wg9UKQ7Z/EQTKtu6BDNTxetR8="
#define JSON_ARRAY_BODY "[\"CallSid\",\"CA1\"]"
#define JSON_ARRAY_URL                                                                             \
    BASE "?bodySHA256=8f722e6cd2dead5a82c85ab569b450726b92f32ac93bbe6222d66221476f58d6"
#define JSON_ARRAY_SIG "fuOj5og//0kX2lgbvjCTMJsGX9U="
#define JSON_DUP_BODY "{\"CallSid\":\"CA1\",\"CallSid\":\"CA2\",\"CallStatus\":\"completed\"}"
#define JSON_DUP_URL                                                                               \
    BASE "?bodySHA256=61c57d3526ca96f763bde08a492149303803679ed8a928f571fce4e8f489cdb0"
#define JSON_DUP_SIG "UOBXoIU5lUlEsMd70rb9U+v/Vbg="
#define JSON_NOSTATUS_BODY "{\"CallSid\":\"CA1\"}"
#define JSON_NOSTATUS_URL                                                                          \
    BASE "?bodySHA256=85264246de8d570722726062407cde49dc5bb2c2569c179765b178e3ffe30825"
#define JSON_NOSTATUS_SIG "mKsWzKc9YPMeLv0358WAcrHMfI4="

static const char *const primary_only[] = {"12345"};
static const char *const rotation[] = {"12345", "67890"};

/* Runs webhook_process on one request with `max_params` and the given tokens. */
static int run_with(const char *const *tokens, size_t ntokens, size_t max_params, const char *url,
                    const char *ct, const char *sig, const char *body, webhook_result *out)
{
    webhook_limits lim = {tokens, ntokens, max_params};
    webhook_request req = {url, ct, sig, "idem-9", "req-9", T_MS, body, strlen(body)};
    return webhook_process(&lim, &req, out);
}

/* Runs one request against token 12345 with a 100-parameter limit. */
static int run(const char *url, const char *ct, const char *sig, const char *body,
               webhook_result *out)
{
    return run_with(primary_only, 1, 100, url, ct, sig, body, out);
}

/* Asserts the request was refused with `status` and `reason`, and left no event. */
static void assert_refused(int rc, const webhook_result *res, int status, const char *reason)
{
    cr_assert_eq(rc, -1);
    cr_assert_eq(res->http_status, status, "status %d, want %d (reason %s)", res->http_status,
                 status, res->reason ? res->reason : "NULL");
    cr_assert_not_null(res->reason);
    cr_assert_str_eq(res->reason, reason);
    cr_assert_null(buffer_ptr(&res->event));
    cr_assert_null(res->call_sid);
}

/* Asserts acceptance and returns the event read back from its JSON text, which must be a
 * valid event whose call_sid, status and received_at are the result's (caller
 * json_decrefs); frees the result. */
static json_t *assert_accepted(int rc, webhook_result *res)
{
    cr_assert_eq(rc, 0, "refused: %d %s", res->http_status, res->reason ? res->reason : "NULL");
    cr_assert_eq(res->http_status, 0);
    cr_assert_eq(res->sig, SIG_OK);
    cr_assert_not_null(buffer_ptr(&res->event));
    calllog_error err = {0};
    json_t *ev = event_parse(buffer_ptr(&res->event), buffer_len(&res->event), &err);
    cr_assert_not_null(ev, "%s: %s", err.message, buffer_ptr(&res->event));
    cr_assert_str_eq(event_get(ev, "call_sid"), res->call_sid);
    cr_assert_str_eq(event_get(ev, "status"), res->status);
    cr_assert_str_eq(event_get(ev, "received_at"), res->received_at);
    webhook_result_free(res);
    return ev;
}

/* Asserts that string field `key` of `obj` is `want`. */
static void assert_field(const json_t *obj, const char *key, const char *want)
{
    const char *v = json_string_value(json_object_get(obj, key));
    cr_assert(v != NULL, "field %s missing", key);
    cr_assert_str_eq(v, want, "field %s", key);
}

/* ---- accepted form requests ----------------------------------------------------------------- */

Test(webhook_form, accepted_and_normalized)
{
    webhook_result res;
    json_t *ev = assert_accepted(run(BASE, FORM_CT, FULL_SIG, FULL_BODY, &res), &res);
    assert_field(ev, "call_sid", "CA0123456789abcdef0123456789abcdef");
    assert_field(ev, "account_sid", "AC0123456789abcdef0123456789abcdef");
    assert_field(ev, "from", "+5511971730783");
    assert_field(ev, "to", "+551130000000");
    assert_field(ev, "direction", "inbound");
    assert_field(ev, "status", "completed");
    assert_field(ev, "duration", "42");
    assert_field(ev, "timestamp", "Tue, 24 Nov 2026 20:00:00 +0000");
    assert_field(ev, "sequence_number", "3");
    assert_field(ev, "api_version", "2010-04-01");
    assert_field(ev, "received_at", "2026-11-24T20:00:00.123Z");
    assert_field(ev, "request_id", "req-9");
    assert_field(ev, "idempotency_token", "idem-9");
    cr_assert_eq(json_integer_value(json_object_get(ev, "v")), 1);
    cr_assert_null(json_object_get(ev, "parent_call_sid"), "empty value dropped");
    json_t *geo = json_object_get(ev, "geo");
    cr_assert(json_is_object(geo));
    assert_field(geo, "from_city", "SAO PAULO");
    assert_field(geo, "from_state", "SP");
    assert_field(geo, "from_country", "BR");
    assert_field(geo, "to_country", "BR");
    cr_assert_eq(json_object_size(geo), 4);
    /* 10 mapped top-level fields + v, received_at, request_id, idempotency_token + geo */
    cr_assert_eq(json_object_size(ev), 15, "%s", json_dumps(ev, JSON_COMPACT));

    /* what travels through Redis parses back as a valid event */
    char *text = json_dumps(ev, JSON_COMPACT);
    calllog_error err = {0};
    json_t *back = event_parse(text, strlen(text), &err);
    cr_assert_not_null(back, "%s", err.message);
    cr_assert(json_equal(ev, back));
    json_decref(back);
    free(text);
    json_decref(ev);
}

Test(webhook_form, content_type_parameters_case_and_spaces)
{
    const char *cts[] = {
        FORM_CT "; charset=utf-8",           FORM_CT ";charset=UTF-8",
        FORM_CT " ; charset=utf-8",          FORM_CT "\t;charset=utf-8",
        "Application/X-WWW-Form-URLEncoded", "APPLICATION/X-WWW-FORM-URLENCODED; CHARSET=UTF-8",
    };
    for (size_t i = 0; i < sizeof cts / sizeof *cts; i++) {
        webhook_result res;
        int rc = run(BASE, cts[i], FULL_SIG, FULL_BODY, &res);
        cr_assert_eq(rc, 0, "'%s' refused: %d %s", cts[i], res.http_status,
                     res.reason ? res.reason : "");
        webhook_result_free(&res);
    }
}

Test(webhook_form, secondary_token_during_rotation)
{
    webhook_result res;
    json_t *ev = assert_accepted(
        run_with(rotation, 2, 100, BASE, FORM_CT, FULL_SECONDARY_SIG, FULL_BODY, &res), &res);
    json_decref(ev);
    /* without the secondary configured the same request is refused */
    assert_refused(run(BASE, FORM_CT, FULL_SECONDARY_SIG, FULL_BODY, &res), &res, 403,
                   "bad_signature");
    cr_assert_eq(res.sig, SIG_MISMATCH);
}

Test(webhook_form, url_with_query_is_signed_as_given)
{
    webhook_result res;
    json_t *ev = assert_accepted(run(QUERY_URL, FORM_CT, QUERY_SIG, QUERY_BODY, &res), &res);
    json_decref(ev);
    assert_refused(run(BASE, FORM_CT, QUERY_SIG, QUERY_BODY, &res), &res, 403, "bad_signature");
}

Test(webhook_form, first_of_repeated_keys_wins)
{
    webhook_result res;
    json_t *ev = assert_accepted(run(BASE, FORM_CT, REPEATED_SIG, REPEATED_BODY, &res), &res);
    assert_field(ev, "status", "ringing");
    json_decref(ev);
}

Test(webhook_form, exactly_max_params_is_accepted)
{
    webhook_result res;
    json_t *ev = assert_accepted(
        run_with(primary_only, 1, 4, BASE, FORM_CT, FOUR_SIG, FOUR_BODY, &res), &res);
    json_decref(ev);
}

/* ---- refused form requests ------------------------------------------------------------------ */

Test(webhook_form, unsupported_content_types_415)
{
    const char *cts[] = {"text/plain",
                         "text/plain; charset=utf-8",
                         "",
                         "multipart/form-data; boundary=x",
                         "application/x-www-form-urlencodedX",
                         "application/x-www-form",
                         "xapplication/x-www-form-urlencoded",
                         "application/jsonp"};
    for (size_t i = 0; i < sizeof cts / sizeof *cts; i++) {
        webhook_result res;
        int rc = run(BASE, cts[i], FULL_SIG, FULL_BODY, &res);
        cr_assert_eq(rc, -1, "'%s' accepted", cts[i]);
        cr_assert_eq(res.http_status, 415, "'%s': %d", cts[i], res.http_status);
        cr_assert_str_eq(res.reason, "unsupported_content_type");
        cr_assert_null(buffer_ptr(&res.event));
    }
}

Test(webhook_form, missing_content_type_415)
{
    webhook_result res;
    assert_refused(run(BASE, NULL, FULL_SIG, FULL_BODY, &res), &res, 415,
                   "unsupported_content_type");
}

Test(webhook_form, bad_escapes_400)
{
    const char *bodies[] = {"CallSid=CA%ZZ&CallStatus=completed", "CallSid=CA1&CallStatus=%",
                            "CallSid=CA1%2&CallStatus=completed", "CallSid=CA%001&CallStatus=x",
                            "=orphan&CallSid=CA1&CallStatus=completed"};
    for (size_t i = 0; i < sizeof bodies / sizeof *bodies; i++) {
        webhook_result res;
        int rc = run(BASE, FORM_CT, FULL_SIG, bodies[i], &res);
        cr_assert_eq(rc, -1, "%s", bodies[i]);
        cr_assert_eq(res.http_status, 400, "%s: %d %s", bodies[i], res.http_status, res.reason);
        cr_assert_str_eq(res.reason, "malformed_form_body");
    }
}

Test(webhook_form, missing_call_sid_400)
{
    webhook_result res;
    assert_refused(run(BASE, FORM_CT, NO_SID_SIG, NO_SID_BODY, &res), &res, 400,
                   "missing_call_sid");
    cr_assert_eq(res.sig, SIG_OK, "the signature was checked first");
    assert_refused(run(BASE, FORM_CT, EMPTY_SID_SIG, EMPTY_SID_BODY, &res), &res, 400,
                   "missing_call_sid");
}

Test(webhook_form, missing_call_status_400)
{
    webhook_result res;
    assert_refused(run(BASE, FORM_CT, NO_STATUS_SIG, NO_STATUS_BODY, &res), &res, 400,
                   "missing_call_status");
}

Test(webhook_form, unsigned_request_is_403_before_field_checks)
{
    webhook_result res;
    assert_refused(run(BASE, FORM_CT, "AAAAAAAAAAAAAAAAAAAAAAAAAAA=", NO_SID_BODY, &res), &res, 403,
                   "bad_signature");
}

Test(webhook_form, bad_or_missing_signature_403)
{
    webhook_result res;
    assert_refused(run(BASE, FORM_CT, NULL, FULL_BODY, &res), &res, 403, "bad_signature");
    cr_assert_eq(res.sig, SIG_MISSING);
    assert_refused(run(BASE, FORM_CT, "", FULL_BODY, &res), &res, 403, "bad_signature");
    cr_assert_eq(res.sig, SIG_MISSING);
    assert_refused(run(BASE, FORM_CT, "zoYXPU9lD7S5G/7uzejiBSUZSIx=", FULL_BODY, &res), &res, 403,
                   "bad_signature");
    cr_assert_eq(res.sig, SIG_MISMATCH);
    assert_refused(run(BASE, FORM_CT, "garbage", FULL_BODY, &res), &res, 403, "bad_signature");
    /* the right signature for a different URL */
    assert_refused(run(BASE "2", FORM_CT, FULL_SIG, FULL_BODY, &res), &res, 403, "bad_signature");
}

Test(webhook_form, tampered_body_403)
{
    /* same signature, CallStatus changed from completed to busy */
    const char *tampered =
        "CallSid=CA0123456789abcdef0123456789abcdef&AccountSid=AC0123456789abcdef0123456789abcdef&"
        "From=%2B5511971730783&To=%2B551130000000&Direction=inbound&CallStatus=busy&"
        "CallDuration=42&Timestamp=Tue%2C+24+Nov+2026+20%3A00%3A00+%2B0000&SequenceNumber=3&"
        "ParentCallSid=&FromCity=SAO+PAULO&FromState=SP&FromCountry=BR&ToCountry=BR&"
        "Caller=%2B5511971730783&ApiVersion=2010-04-01";
    webhook_result res;
    assert_refused(run(BASE, FORM_CT, FULL_SIG, tampered, &res), &res, 403, "bad_signature");
    /* and with a parameter added */
    assert_refused(run(BASE, FORM_CT, FULL_SIG, FULL_BODY "&Extra=1", &res), &res, 403,
                   "bad_signature");
}

Test(webhook_form, too_many_params_413)
{
    webhook_result res;
    assert_refused(run_with(primary_only, 1, 3, BASE, FORM_CT, FOUR_SIG, FOUR_BODY, &res), &res,
                   413, "too_many_parameters");
}

/* Regression: a signed value that is not UTF-8 (CallerName=%E9, Latin-1 "é") made the
 * event builder fail and the webhook answer 503 "out_of_memory"; it is now repaired
 * (U+FFFD) and the call accepted. */
Test(webhook_form, non_utf8_value_is_not_a_503)
{
    webhook_result res;
    int rc = run(BASE, FORM_CT, LATIN1_SIG, LATIN1_BODY, &res);
    cr_assert_eq(res.sig, SIG_OK, "the Python-computed signature must match");
    cr_assert(res.http_status == 400 || (rc == 0 && res.http_status == 0),
              "got %d %s, want 400 or acceptance", res.http_status, res.reason ? res.reason : "");
    webhook_result_free(&res);
}

/* A CallSid that is not UTF-8 is repaired in the event; the result's call_sid (what the
 * stream entry carries and the worker claims) must be the same repaired string
 * (assert_accepted compares them). The fuzzer found the two differing. */
Test(webhook_form, non_utf8_call_sid_is_the_same_in_the_event_and_the_entry)
{
    const char *body = "CallSid=CA%FF1&CallStatus=completed&From=%2B5511971730783";
    char sig[SIGNATURE_LEN + 1];
    form f;
    cr_assert_eq(form_parse(body, strlen(body), 100, &f), FORM_OK);
    cr_assert_eq(signature_compute(primary_only[0], BASE, &f, sig), 0);
    form_free(&f);
    webhook_result res;
    json_t *ev = assert_accepted(run(BASE, FORM_CT, sig, body, &res), &res);
    assert_field(ev, "call_sid",
                 "CA\xef\xbf\xbd"
                 "1");
    json_decref(ev);
}

/* ---- JSON bodies ---------------------------------------------------------------------------- */

Test(webhook_json, accepted_with_body_hash)
{
    webhook_result res;
    json_t *ev = assert_accepted(run(JSON_OK_URL, JSON_CT, JSON_OK_SIG, JSON_OK_BODY, &res), &res);
    assert_field(ev, "call_sid", "CA1");
    assert_field(ev, "status", "completed");
    assert_field(ev, "duration", "42"); /* integer normalized to Twilio's string form */
    assert_field(ev, "from", "+5511971730783");
    assert_field(ev, "request_id", "req-9");
    assert_field(ev, "received_at", "2026-11-24T20:00:00.123Z");
    cr_assert_null(json_object_get(ev, "parent_call_sid"), "empty value dropped");
    cr_assert_null(json_object_get(ev, "Extra"));
    cr_assert_null(json_object_get(ev, "Flag"));
    cr_assert_null(json_object_get(ev, "geo"));
    /* call_sid, status, duration, from + v, received_at, request_id, idempotency_token */
    cr_assert_eq(json_object_size(ev), 8, "%s", json_dumps(ev, JSON_COMPACT));
    json_decref(ev);
}

Test(webhook_json, content_type_with_charset)
{
    webhook_result res;
    json_t *ev = assert_accepted(
        run(JSON_OK_URL, "Application/JSON; charset=utf-8", JSON_OK_SIG, JSON_OK_BODY, &res), &res);
    json_decref(ev);
}

Test(webhook_json, missing_body_hash_403)
{
    webhook_result res;
    assert_refused(run(JSON_NOHASH_URL, JSON_CT, JSON_NOHASH_SIG, JSON_NOHASH_BODY, &res), &res,
                   403, "bad_signature");
    cr_assert_eq(res.sig, SIG_BODY_HASH_MISSING);
}

Test(webhook_json, wrong_body_hash_403)
{
    webhook_result res;
    assert_refused(run(JSON_WRONGHASH_URL, JSON_CT, JSON_WRONGHASH_SIG, JSON_WRONGHASH_BODY, &res),
                   &res, 403, "bad_signature");
    cr_assert_eq(res.sig, SIG_BODY_HASH_MISMATCH);
}

Test(webhook_json, bad_signature_403)
{
    webhook_result res;
    assert_refused(run(JSON_OK_URL, JSON_CT, JSON_NOHASH_SIG, JSON_OK_BODY, &res), &res, 403,
                   "bad_signature");
    cr_assert_eq(res.sig, SIG_MISMATCH);
    assert_refused(run(JSON_OK_URL, JSON_CT, NULL, JSON_OK_BODY, &res), &res, 403, "bad_signature");
    cr_assert_eq(res.sig, SIG_MISSING);
}

Test(webhook_json, malformed_json_400)
{
    webhook_result res;
    assert_refused(run(JSON_BAD_URL, JSON_CT, JSON_BAD_SIG, JSON_BAD_BODY, &res), &res, 400,
                   "malformed_json_body");
    assert_refused(run(JSON_ARRAY_URL, JSON_CT, JSON_ARRAY_SIG, JSON_ARRAY_BODY, &res), &res, 400,
                   "malformed_json_body");
    assert_refused(run(JSON_DUP_URL, JSON_CT, JSON_DUP_SIG, JSON_DUP_BODY, &res), &res, 400,
                   "malformed_json_body");
}

Test(webhook_json, missing_call_status_400)
{
    webhook_result res;
    assert_refused(run(JSON_NOSTATUS_URL, JSON_CT, JSON_NOSTATUS_SIG, JSON_NOSTATUS_BODY, &res),
                   &res, 400, "missing_call_status");
}

Test(webhook_json, too_many_params_413)
{
    /* JSON_OK has 7 members */
    webhook_result res;
    assert_refused(
        run_with(primary_only, 1, 6, JSON_OK_URL, JSON_CT, JSON_OK_SIG, JSON_OK_BODY, &res), &res,
        413, "too_many_parameters");
    json_t *ev = assert_accepted(
        run_with(primary_only, 1, 7, JSON_OK_URL, JSON_CT, JSON_OK_SIG, JSON_OK_BODY, &res), &res);
    json_decref(ev);
}

Test(webhook_json, form_body_sent_as_json_is_refused)
{
    webhook_result res;
    int rc = run(BASE, JSON_CT, FULL_SIG, FULL_BODY, &res);
    cr_assert_eq(rc, -1);
    cr_assert_eq(res.http_status, 403, "no bodySHA256: %d %s", res.http_status, res.reason);
    cr_assert_null(buffer_ptr(&res.event));
}

/* Signs JSON `body` as Twilio does (token 12345): writes the URL with bodySHA256 into
 * `url` (256 bytes) and the signature into `sig` (SIGNATURE_LEN + 1 bytes). */
static void sign_json_body(const char *body, char *url, char *sig)
{
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)body, strlen(body), digest);
    int n = snprintf(url, 256, "%s?bodySHA256=", BASE);
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
        n += snprintf(url + n, 256 - (size_t)n, "%02x", digest[i]);
    cr_assert_eq(signature_compute("12345", url, NULL, sig), 0);
}

/* A JSON callback whose member "x" nests `depth` arrays. Caller frees. */
static char *nested_body(int depth)
{
    const char *head = "{\"CallSid\":\"CA1\",\"CallStatus\":\"completed\",\"x\":";
    size_t n = strlen(head);
    char *b = malloc(n + 2 * (size_t)depth + 2);
    cr_assert_not_null(b, "out of memory");
    memcpy(b, head, n);
    memset(b + n, '[', (size_t)depth);
    memset(b + n + depth, ']', (size_t)depth);
    snprintf(b + n + 2 * (size_t)depth, 2, "}");
    return b;
}

Test(webhook, deeply_nested_json_is_refused_before_parsing)
{
    char url[256], sig[64];
    webhook_result res;
    char *deep = nested_body(100000); /* would overflow a request thread's stack */
    sign_json_body(deep, url, sig);
    assert_refused(run(url, JSON_CT, sig, deep, &res), &res, 400, "json_too_deep");
    free(deep);
    char *fine = nested_body(30);
    sign_json_body(fine, url, sig);
    json_decref(assert_accepted(run(url, JSON_CT, sig, fine, &res), &res));
    free(fine);
}

Test(webhook, brackets_inside_strings_do_not_count_as_nesting)
{
    char url[256], sig[64];
    webhook_result res;
    char body[512];
    char brackets[200];
    memset(brackets, '[', sizeof brackets - 1);
    brackets[sizeof brackets - 1] = '\0';
    snprintf(body, sizeof body,
             "{\"CallSid\":\"CA1\",\"CallStatus\":\"completed\",\"CallerName\":\"\\\"%s\"}",
             brackets);
    sign_json_body(body, url, sig);
    json_decref(assert_accepted(run(url, JSON_CT, sig, body, &res), &res));
}
