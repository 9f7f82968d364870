/* twilio_rest — enrichment from Twilio's REST API: the call resource and its recordings.
 *
 * The webhook already says who called and how it ended; REST adds what the note wants
 * beyond that (start/end time, price, answered_by, caller name, the recording's media
 * URL). This runs inline in the worker, so retries are few and short: up to max_tries
 * attempts on 429, 5xx and transport errors, with full-jitter backoff from a 200 ms base
 * capped at 2 s (a Retry-After counts, clamped to the same 2 s). Anything else fails at
 * once, and the caller carries on with the webhook's data.
 *
 * Twilio dates are RFC 2822 ("Tue, 24 Nov 2026 19:00:00 +0000"), read by
 * timing_parse_rfc2822 (common/timing.h). Every request is counted in
 * calllog_twilio_requests_total{status}. */
#include "worker/twilio_rest.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/metrics.h"
#include "common/timing.h"
#include "worker/retry_policy.h"

#define TWILIO_CONNECT_TIMEOUT_MS 3000L
#define TWILIO_DEFAULT_TIMEOUT_MS 5000L
#define TWILIO_RETRY_BASE_MS 200L
#define TWILIO_RETRY_MAX_MS 2000L

struct twilio_client {
    const twilio_settings *s;
    char *base_url;
    char *auth;
    http_client *http;
    metric *requests;
};

/* Creates a client; see the header. */
twilio_client *twilio_client_new(const twilio_settings *s)
{
    if (s == NULL || s->base_url == NULL || s->account_sid == NULL || s->username == NULL ||
        s->password == NULL)
        return NULL;
    twilio_client *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    long timeout = s->timeout_ms > 0 ? s->timeout_ms : TWILIO_DEFAULT_TIMEOUT_MS;
    c->s = s;
    c->base_url = strdup(s->base_url);
    c->auth = twilio_basic_auth(s);
    c->http = http_client_new(
        timeout, timeout < TWILIO_CONNECT_TIMEOUT_MS ? timeout : TWILIO_CONNECT_TIMEOUT_MS);
    c->requests = metrics_register(METRIC_COUNTER, "calllog_twilio_requests_total",
                                   "Twilio REST requests by HTTP status", NULL, 0);
    if (c->base_url == NULL || c->auth == NULL || c->http == NULL) {
        twilio_client_free(c);
        return NULL;
    }
    for (size_t len = strlen(c->base_url); len > 0 && c->base_url[len - 1] == '/'; len--)
        c->base_url[len - 1] = '\0';
    return c;
}

/* Frees the client, wiping the credentials it copied. */
void twilio_client_free(twilio_client *c)
{
    if (c == NULL)
        return;
    if (c->auth != NULL)
        memset(c->auth, 0, strlen(c->auth));
    free(c->auth);
    free(c->base_url);
    http_client_free(c->http);
    free(c);
}

/* Copies `src` into `out`, clipped to fit (always NUL-terminated). */
static void copy_clipped(char *out, size_t outlen, const char *src)
{
    size_t n = strlen(src);
    if (n >= outlen)
        n = outlen - 1;
    memcpy(out, src, n);
    out[n] = '\0';
}

/* Copies the string (or number) member `key` of `obj` into `out` ("" when absent/null). */
static void get_str(const json_t *obj, const char *key, char *out, size_t outlen)
{
    json_t *v = json_object_get(obj, key);
    char num[32];
    if (json_is_string(v)) {
        copy_clipped(out, outlen, json_string_value(v));
    } else if (json_is_number(v)) {
        snprintf(num, sizeof num, "%g", json_number_value(v));
        copy_clipped(out, outlen, num);
    } else {
        out[0] = '\0';
    }
}

/* Fills `out` from a call resource. */
static void read_call(const json_t *call, twilio_call *out)
{
    char dur[32];
    json_t *start = json_object_get(call, "start_time"), *end = json_object_get(call, "end_time");
    out->start_time = json_is_string(start) ? timing_parse_rfc2822(json_string_value(start)) : 0;
    out->end_time = json_is_string(end) ? timing_parse_rfc2822(json_string_value(end)) : 0;
    get_str(call, "duration", dur, sizeof dur);
    char *stop = NULL;
    long d = dur[0] ? strtol(dur, &stop, 10) : -1;
    out->duration_s = dur[0] && stop && *stop == '\0' && d >= 0 ? d : -1;
    get_str(call, "price", out->price, sizeof out->price);
    get_str(call, "price_unit", out->price_unit, sizeof out->price_unit);
    get_str(call, "answered_by", out->answered_by, sizeof out->answered_by);
    get_str(call, "caller_name", out->caller_name, sizeof out->caller_name);
}

/* Counts one request by status ("error" for a transport failure). */
static void count_request(twilio_client *c, long status)
{
    char labels[32];
    if (status > 0)
        snprintf(labels, sizeof labels, "status=\"%ld\"", status);
    else
        snprintf(labels, sizeof labels, "status=\"error\"");
    metric_add(c->requests, labels, 1);
}

/* GETs `path` (relative to the base URL), retrying transient failures. Returns 0 with the
 * parsed JSON in `*out` (caller decrefs), or -1 with `err` filled. `what` names the
 * request in messages. */
static int get_json(twilio_client *c, const char *path, const char *what, json_t **out,
                    calllog_error *err)
{
    static const char *const headers[] = {"Accept: application/json", NULL};
    const retry_settings rs = {c->s->max_tries > 0 ? c->s->max_tries : 1, TWILIO_RETRY_BASE_MS,
                               TWILIO_RETRY_MAX_MS};
    size_t n = strlen(c->base_url) + strlen(path) + 1;
    char *url = malloc(n);
    *out = NULL;
    if (url == NULL) {
        error_set(err, CALLLOG_NOMEM, "%s: out of memory", what);
        return -1;
    }
    snprintf(url, n, "%s%s", c->base_url, path);
    for (int attempt = 1;; attempt++) {
        http_response r;
        int rc = http_request(c->http, "GET", url, headers, c->auth, NULL, 0, &r, err);
        count_request(c, rc == 0 ? r.status : 0);
        if (rc == 0 && r.status >= 200 && r.status <= 299) {
            *out = json_loadb(r.body, r.body_len, 0, NULL);
            http_response_free(&r);
            if (*out == NULL) {
                error_set(err, CALLLOG_TRANSIENT, "%s: answer is not JSON", what);
            }
            break;
        }
        if (rc == 0) {
            http_error_from_response(&r, what, err);
            http_response_free(&r);
        }
        if (err->code != CALLLOG_TRANSIENT || retry_exhausted(&rs, attempt))
            break;
        long ra =
            err->retry_after_ms > TWILIO_RETRY_MAX_MS ? TWILIO_RETRY_MAX_MS : err->retry_after_ms;
        timing_sleep_ms(retry_delay_ms(&rs, attempt, ra, retry_random()));
    }
    free(url);
    return *out != NULL ? 0 : -1;
}

/* Writes the media URL of the call's first *completed* recording, built from its SID as
 * Twilio documents it (base URL + /2010-04-01/Accounts/{AC}/Recordings/{RE}; the call-scoped
 * `uri` of the list is not a media URL). Recordings still `processing` (or `absent`,
 * `failed`) are skipped; with none completed the URL stays empty, and recording_pending
 * says whether one is still processing. */
static void read_recording(twilio_client *c, const json_t *list, twilio_call *out)
{
    char sid[64];
    twilio_recording_state st = twilio_pick_recording(list, sid, sizeof sid);
    out->recording_pending = st == TWILIO_RECORDING_PROCESSING;
    if (st == TWILIO_RECORDING_COMPLETED &&
        twilio_recording_media_url(c->base_url, c->s->account_sid, sid, "", out->recording_url,
                                   sizeof out->recording_url) < 0)
        out->recording_url[0] = '\0';
}

/* Fetches the call and its first recording; see the header. */
int twilio_fetch_call(twilio_client *c, const char *call_sid, twilio_call *out, calllog_error *err)
{
    char path[256];
    json_t *j = NULL;
    memset(out, 0, sizeof *out);
    out->duration_s = -1;
    error_clear(err);
    if (c == NULL || !twilio_sid_ok(call_sid) || !twilio_sid_ok(c->s->account_sid)) {
        error_set(err, CALLLOG_INVALID, "twilio: unusable call or account SID");
        return -1;
    }
    snprintf(path, sizeof path, "/2010-04-01/Accounts/%s/Calls/%s.json", c->s->account_sid,
             call_sid);
    if (get_json(c, path, "GET Calls/{sid}.json", &j, err) < 0)
        return -1;
    read_call(j, out);
    json_decref(j);
    snprintf(path, sizeof path, "/2010-04-01/Accounts/%s/Calls/%s/Recordings.json",
             c->s->account_sid, call_sid);
    if (get_json(c, path, "GET Calls/{sid}/Recordings.json", &j, err) < 0)
        return -1;
    read_recording(c, j, out);
    json_decref(j);
    return 0;
}

/* The string member `key` of `obj`, or NULL when absent, null or not a string. */
static const char *str_or_null(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    return json_is_string(v) && json_string_length(v) > 0 ? json_string_value(v) : NULL;
}

/* Fills `out` from one item of a Calls list. */
static void read_summary(const json_t *call, twilio_call_summary *out)
{
    out->sid = str_or_null(call, "sid");
    out->parent_call_sid = str_or_null(call, "parent_call_sid");
    out->account_sid = str_or_null(call, "account_sid");
    out->status = str_or_null(call, "status");
    out->direction = str_or_null(call, "direction");
    out->from = str_or_null(call, "from");
    out->to = str_or_null(call, "to");
    out->duration = str_or_null(call, "duration");
    out->end_time = str_or_null(call, "end_time");
    out->caller_name = str_or_null(call, "caller_name");
    out->forwarded_from = str_or_null(call, "forwarded_from");
    out->answered_by = str_or_null(call, "answered_by");
    out->api_version = str_or_null(call, "api_version");
    out->started = timing_parse_rfc2822(str_or_null(call, "start_time"));
    if (!out->started)
        out->started = timing_parse_rfc2822(str_or_null(call, "date_created"));
    out->ended = timing_parse_rfc2822(out->end_time);
}

/* Fills `out` from a parsed Calls list answer `doc` (which `out` then owns). */
static int read_page(json_t *doc, twilio_calls_page *out, calllog_error *err)
{
    json_t *calls = json_object_get(doc, "calls");
    if (!json_is_array(calls)) {
        json_decref(doc);
        error_set(err, CALLLOG_TRANSIENT, "GET Calls.json: answer has no calls list");
        return -1;
    }
    out->doc = doc;
    out->n = json_array_size(calls);
    out->calls = calloc(out->n ? out->n : 1, sizeof *out->calls);
    if (!out->calls) {
        twilio_calls_page_free(out);
        error_set(err, CALLLOG_NOMEM, "GET Calls.json: out of memory");
        return -1;
    }
    for (size_t i = 0; i < out->n; i++)
        read_summary(json_array_get(calls, i), &out->calls[i]);
    out->next_page_uri = str_or_null(doc, "next_page_uri");
    return 0;
}

int twilio_list_calls(twilio_client *c, const char *page_uri, time_t ended_since, int page_size,
                      twilio_calls_page *out, calllog_error *err)
{
    char path[1024], prefix[128], day[16];
    json_t *doc = NULL;
    memset(out, 0, sizeof *out);
    error_clear(err);
    if (c == NULL || !twilio_sid_ok(c->s->account_sid) || page_size < 1 || page_size > 1000) {
        error_set(err, CALLLOG_INVALID, "twilio: unusable account SID or page size");
        return -1;
    }
    snprintf(prefix, sizeof prefix, "/2010-04-01/Accounts/%s/Calls.json", c->s->account_sid);
    if (page_uri == NULL) {
        struct tm tm;
        gmtime_r(&ended_since, &tm);
        strftime(day, sizeof day, "%Y-%m-%d", &tm);
        /* "EndTime>=" is sent as the key "EndTime>" (Twilio's SDKs encode it so). */
        snprintf(path, sizeof path, "%s?EndTime%%3E=%s&PageSize=%d", prefix, day, page_size);
    } else if (strncmp(page_uri, prefix, strlen(prefix)) != 0 ||
               (page_uri[strlen(prefix)] != '?' && page_uri[strlen(prefix)] != '\0') ||
               strlen(page_uri) >= sizeof path) {
        error_set(err, CALLLOG_PERMANENT,
                  "GET Calls.json: next_page_uri is not this account's Calls list");
        return -1;
    } else {
        snprintf(path, sizeof path, "%s", page_uri);
    }
    if (get_json(c, path, "GET Calls.json", &doc, err) < 0)
        return -1;
    return read_page(doc, out, err);
}

void twilio_calls_page_free(twilio_calls_page *p)
{
    if (p == NULL)
        return;
    free(p->calls);
    json_decref(p->doc);
    memset(p, 0, sizeof *p);
}
