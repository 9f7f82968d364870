/* rdstation — RD Station CRM client, API v1 (token) and v2 (OAuth2), behind one face.
 *
 * Every operation is a handful of HTTP calls through rd_call(), which is the only place
 * that talks to the network: it waits for the shared rate limiter, authenticates (v1:
 * `?token=` appended to the URL; v2: a Bearer token from rd_oauth, refreshed once and the
 * request retried once after a 401), counts the request in the CRM metrics, and turns a
 * non-2xx answer into an calllog_error whose message never holds a token or a query string.
 *
 * Choices the reference leaves open (reference/rdstation.md), and what this file does:
 * - Phones: RD does not say which forms `phone=` matches, so every form phone_variants()
 *   yields is queried, most likely first, and a returned contact counts only when one of
 *   its phones is the same line (phone_same_number). v2 filter values other than digits
 *   and '+' are double-quoted for RDQL; a form RD refuses (400/422) is skipped.
 * - Open deal: v1 `win` null and `closed_at` null (and `hold` not true when RD says);
 *   v2 `status` "ongoing" only — a paused deal is not where a new call belongs. Among open
 *   deals the latest `updated_at` wins. v1 contact lists embed deal summaries; the ones
 *   rd_find_contact just saw are remembered briefly so the deal look-up right after
 *   costs no request. Summaries without `updated_at` are completed with GET /deals/{id}
 *   (at most RD_V1_DEAL_FETCH_MAX). v2 deals are listed with filter=contact_id:<id>
 *   (contact_ids:<id> when RD refuses that field), and a deal whose contact_ids do not
 *   name the contact is ignored in case RD ignored the filter.
 * - v1 task date/hour are written in the process's local time zone, which
 *   timing_set_zone() sets at start-up (default America/Sao_Paulo, the zone RD
 *   accounts show); v2 due_date is ISO 8601 in UTC.
 * - A task is created open and then marked done; if that second request fails, the task
 *   exists (its id is returned with a negative code) and retrying would create another, so the
 *   caller should look for the marker first.
 * - Marker search reads at most RD_MARKER_MAX_PAGES pages of notes and of tasks.
 * - Answers are checked before they are believed (see the header): a 2xx must be a JSON
 *   object of the expected shape or the call fails as unreadable, which is transient. A
 *   listed contact whose phones cannot be read is never passed over as someone else's,
 *   and a marker search never says "not found" past an entry it could not read (that
 *   would post a second note). Integer ids are accepted: they are unambiguous.
 *
 * One client per thread: it owns one http_client (kept-alive connections). */
#include "worker/rdstation.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/metrics.h"
#include "common/redact.h"
#include "common/timing.h"
#include "worker/phone.h"
#include "worker/rd_oauth.h"

#define RD_CONNECT_TIMEOUT_MS 5000L
#define RD_DEFAULT_TIMEOUT_MS 15000L
/* How long deals embedded in a found contact are trusted for the next deal look-up. */
#define RD_MEMO_TTL_S 30.0
/* Bounds on extra requests: deal details fetched, deal/marker list pages read. */
#define RD_V1_DEAL_FETCH_MAX 5
#define RD_V1_DEAL_IDS_MAX 10
#define RD_DEAL_MAX_PAGES 5
#define RD_MARKER_MAX_PAGES 10
#define RD_V1_PAGE_SIZE 200
#define RD_V2_PAGE_SIZE 100
/* How long the plan flag read from Redis is trusted before it is read again. */
#define RD_PLAN_RECHECK_S 60.0
#define RD_USERS_MAX_PAGES 20

struct rd_client {
    rd_api api;
    char *base_url;
    char *token;
    rd_acquire_fn acquire;
    void *acquire_arg;
    int background;
    http_client *http;
    rd_oauth *oauth;
    metric *requests;
    metric *seconds;
    char access[RD_OAUTH_TOKEN_MAX]; /* v2: the token of the last request (for redaction) */
    /* Which of phone_variants()'s forms found the last contact: an account's phones are
     * mostly typed one way, so that form is searched first (issue 11: a national-form
     * account cost three searches per new caller). */
    size_t contact_form_hint;
    /* v1: deals embedded in the contact rd_find_contact confirmed last. */
    char memo_contact[64];
    json_t *memo_deals;
    double memo_at;
    /* The plan flag (rd_plan_read): Redis and its key, the last value and when it was read. */
    redisContext *redis;
    const calllog_keys *keys;
    int task_only;       /* 1: create tasks of type "task" (free plan) */
    double plan_read_at; /* 0: never read */
};

/* One API request. */
typedef struct rd_req {
    const char *method;
    const char *endpoint; /* metric label: method and path template, e.g. "GET /deals/{id}" */
    const char *path;     /* relative to the base URL, query included (never credentials) */
    json_t *body;         /* borrowed; NULL for none */
} rd_req;

/* vsnprintf into a new string. Returns it (caller frees) or NULL out of memory. */
__attribute__((format(printf, 1, 2))) static char *fmt_alloc(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (s == NULL)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* Copies at most outlen-1 bytes of `src` into `out` (NUL-terminated). */
static void copy_str(char *out, size_t outlen, const char *src)
{
    if (out == NULL || outlen == 0)
        return;
    snprintf(out, outlen, "%s", src ? src : "");
}

/* The code of a failure `err` already describes: its own when set, else the one its
 * status and curl code give; a 2xx that is still a failure (RD answered, but not as
 * asked) is permanent. */
static calllog_code rd_failed(calllog_error *err)
{
    if (err->code >= 0)
        err->code = error_classify_failure(err->curl_code, err->http_status);
    return err->code;
}

/* Fills `err` with a message and no HTTP status: transient. Returns CALLLOG_TRANSIENT. */
static calllog_code fail(calllog_error *err, int curl_code, const char *msg)
{
    error_set(err, CALLLOG_TRANSIENT, "%s", msg ? msg : "");
    err->curl_code = curl_code;
    return CALLLOG_TRANSIENT;
}

/* Removes every credential this client knows from an error message: the v1 token (also
 * as the query string carries it, percent-encoded) and the OAuth access token. */
static void redact_all(rd_client *c, calllog_error *err)
{
    char *esc = c->token ? http_escape(c->token) : NULL;
    const char *secrets[] = {c->token, c->access, esc};
    redact_error(err, secrets, sizeof secrets / sizeof *secrets, REDACT_SKIP_SHORT);
    free(esc);
}

/* ---- JSON helpers --------------------------------------------------------------------- */

/* Reads an id that is a JSON value: a non-empty string that fits `out`, or an integer.
 * Returns 0, or -1 (with `out` empty) when it is neither. */
static int json_id_value(const json_t *v, char *out, size_t outlen)
{
    out[0] = '\0';
    if (json_is_string(v) && json_string_length(v) > 0 && json_string_length(v) < outlen) {
        copy_str(out, outlen, json_string_value(v));
        return 0;
    }
    if (json_is_integer(v)) {
        snprintf(out, outlen, "%lld", (long long)json_integer_value(v));
        return 0;
    }
    return -1;
}

/* Writes an object's id — `_id`, else `id` (see json_id_value) — into `out`.
 * Returns 0, or -1 when it has none that can be read. */
static int json_id(const json_t *obj, char *out, size_t outlen)
{
    static const char *const keys[] = {"_id", "id"};
    for (size_t i = 0; i < 2; i++)
        if (json_id_value(json_object_get(obj, keys[i]), out, outlen) == 0)
            return 0;
    return -1;
}

/* 1 when member `key` of `obj` is absent or null. */
static int json_absent(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return v == NULL || json_is_null(v);
}

/* The string member `key` of `obj`, or NULL. */
static const char *json_str(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* The array member `key` of `root`, or NULL. */
static json_t *json_list(json_t *root, const char *key)
{
    json_t *v = json_object_get(root, key);
    return json_is_array(v) ? v : NULL;
}

/* The object a v2 answer wraps in "data", or the answer itself (v1). */
static json_t *json_payload(rd_client *c, json_t *root)
{
    if (c->api == RD_API_V2) {
        json_t *d = json_object_get(root, "data");
        return json_is_object(d) ? d : NULL;
    }
    return json_is_object(root) ? root : NULL;
}

/* Days from 1970-01-01 to the civil date y-m-d (proleptic Gregorian). */
static long long days_from_civil(long long y, unsigned m, unsigned d)
{
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (long long)doe - 719468;
}

/* Parses ISO 8601 "YYYY-MM-DDTHH:MM:SS[.fff][Z|±HH:MM]" into epoch ms (no zone = UTC).
 * Returns -1 when `s` is NULL or not in that shape. */
static long long iso_ms(const char *s)
{
    int y, mo, d, h, mi, sec, used = 0;
    if (s == NULL ||
        sscanf(s, "%4d-%2d-%2d%*1[T ]%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &used) != 6 ||
        used == 0)
        return -1;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return -1;
    const char *p = s + used;
    long long ms = 0;
    if (*p == '.') {
        int digits = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, digits++)
            if (digits < 3)
                ms = ms * 10 + (*p - '0');
        for (; digits < 3; digits++)
            ms *= 10;
    }
    long long offset_s = 0;
    if (*p == '+' || *p == '-') {
        int oh = 0, om = 0;
        if (sscanf(p + 1, "%2d:%2d", &oh, &om) < 1 && sscanf(p + 1, "%2d%2d", &oh, &om) < 1)
            return -1;
        offset_s = (long long)(oh * 3600 + om * 60) * (*p == '-' ? -1 : 1);
    }
    long long t =
        days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + sec - offset_s;
    return t * 1000 + ms;
}

/* ---- the request path ----------------------------------------------------------------- */

/* Counts one request: calllog_crm_requests_total and calllog_crm_request_seconds. */
static void count_request(rd_client *c, const char *endpoint, long status, double started)
{
    char labels[192];
    if (status > 0)
        snprintf(labels, sizeof labels, "endpoint=\"%s\",status=\"%ld\"", endpoint, status);
    else
        snprintf(labels, sizeof labels, "endpoint=\"%s\",status=\"error\"", endpoint);
    metric_add(c->requests, labels, 1);
    snprintf(labels, sizeof labels, "endpoint=\"%s\"", endpoint);
    metric_observe(c->seconds, labels, timing_mono_s() - started);
}

/* The full URL of a request: base + path, plus the v1 token. Caller frees. */
static char *request_url(rd_client *c, const char *path)
{
    if (c->api != RD_API_V1)
        return fmt_alloc("%s%s", c->base_url, path);
    char *tok = http_escape(c->token);
    char *url =
        tok ? fmt_alloc("%s%s%ctoken=%s", c->base_url, path, strchr(path, '?') ? '&' : '?', tok)
            : NULL;
    free(tok);
    return url;
}

/* The limiter lane of a request: see rd_acquire_fn. */
static ratelimit_lane request_lane(const rd_client *c, const rd_req *q)
{
    if (c->background)
        return RATELIMIT_SYNC;
    return strcmp(q->method, "GET") == 0 ? RATELIMIT_LOOKUP : RATELIMIT_NOTE;
}

/* Sends one request once (after the rate limiter). Returns 0 with `r` holding the answer,
 * or -1 with `err` filled (a transport failure named after `what`, not the URL). */
static int send_once(rd_client *c, const rd_req *q, const char *url, const char *what,
                     const char *body, http_response *r, calllog_error *err)
{
    char auth[RD_OAUTH_TOKEN_MAX + 32];
    const char *headers[4] = {"Accept: application/json", NULL, NULL, NULL};
    size_t nh = 1;
    if (body != NULL)
        headers[nh++] = "Content-Type: application/json";
    if (c->api == RD_API_V2) {
        if (rd_oauth_token(c->oauth, c->access, sizeof c->access, err) < 0)
            return -1;
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", c->access);
        headers[nh++] = auth;
    }
    if (c->acquire != NULL && c->acquire(c->acquire_arg, request_lane(c, q)) < 0) {
        fail(err, -1, "stopping");
        return -1;
    }
    double started = timing_mono_s();
    int rc =
        http_request(c->http, q->method, url, headers, NULL, body, body ? strlen(body) : 0, r, err);
    count_request(c, q->endpoint, rc == 0 ? r->status : 0, started);
    if (rc != 0)
        http_error_relabel(err, what);
    memset(auth, 0, sizeof auth);
    return rc;
}

/* Fills `err` for a 2xx answer that cannot be read: "<endpoint>: answer unreadable:
 * <why>", http_status and curl_code 0 (transient: see the header). Returns a negative code. */
__attribute__((format(printf, 3, 4))) static calllog_code
unreadable(calllog_error *err, const char *endpoint, const char *why, ...)
{
    char detail[300];
    va_list ap;
    va_start(ap, why);
    vsnprintf(detail, sizeof detail, why, ap);
    va_end(ap);
    return error_set(err, CALLLOG_TRANSIENT, "%.100s: answer unreadable: %s", endpoint, detail);
}

/* Parses a 2xx answer into `*out`: it must be a JSON object. Returns CALLLOG_OK, or a negative code
 * with `err` saying why it cannot be read (empty, not JSON, not an object). */
static calllog_code parse_answer(const rd_req *q, const http_response *r, json_t **out,
                                 calllog_error *err)
{
    json_error_t jerr;
    const char *ctype = r->content_type[0] ? r->content_type : "no Content-Type";
    if (r->body_len == 0 || strspn(r->body, " \t\r\n") == r->body_len)
        return unreadable(err, q->endpoint, "empty body (HTTP %ld, %s)", r->status, ctype);
    *out = json_loadb(r->body, r->body_len, 0, &jerr);
    if (*out == NULL)
        return unreadable(err, q->endpoint, "not JSON (HTTP %ld, %s): %.120s", r->status, ctype,
                          jerr.text);
    if (!json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return unreadable(err, q->endpoint, "JSON but not an object (HTTP %ld)", r->status);
    }
    return CALLLOG_OK;
}

/* Performs one API call; see the file comment. On CALLLOG_OK, `*out` (when `out` is given)
 * holds the answer, a JSON object (the caller decrefs it); a 2xx answer that is not one
 * is a negative code (unreadable). */
static calllog_code rd_call(rd_client *c, const rd_req *q, json_t **out, calllog_error *err)
{
    char what[160];
    http_response r;
    calllog_code st = CALLLOG_TRANSIENT;
    char *url = request_url(c, q->path);
    char *body = q->body ? json_dumps(q->body, JSON_COMPACT) : NULL;
    if (out != NULL)
        *out = NULL;
    error_clear(err);
    snprintf(what, sizeof what, "%s %s", q->method, q->path);
    if (url == NULL || (q->body != NULL && body == NULL)) {
        free(url);
        free(body);
        return fail(err, 0, "out of memory");
    }
    for (int attempt = 0;; attempt++) {
        if (send_once(c, q, url, what, body, &r, err) < 0)
            break;
        if (c->api == RD_API_V2 && r.status == 401 && attempt == 0) {
            http_response_free(&r);
            log_info("rdstation access token refused; refreshing", LF_S("endpoint", q->endpoint));
            if (rd_oauth_invalidate(c->oauth, c->access, err) < 0)
                break;
            continue;
        }
        if (r.status >= 200 && r.status <= 299) {
            st = out != NULL ? parse_answer(q, &r, out, err) : CALLLOG_OK;
        } else {
            http_error_from_response(&r, what, err);
        }
        http_response_free(&r);
        break;
    }
    redact_all(c, err);
    free(url);
    free(body);
    return st;
}

/* ---- client life cycle ---------------------------------------------------------------- */

/* Copies the base URL without trailing slashes. */
static char *base_dup(const char *url)
{
    char *s = strdup(url);
    if (s != NULL) {
        size_t n = strlen(s);
        while (n > 0 && s[n - 1] == '/')
            s[--n] = '\0';
    }
    return s;
}

/* Creates the client; see the header. NULL also for missing settings. */
rd_client *rd_client_new(const rd_settings *s, redisContext *redis, const calllog_keys *keys)
{
    if (s == NULL || s->base_url == NULL || (s->api != RD_API_V1 && s->api != RD_API_V2) ||
        (s->api == RD_API_V1 && (s->token == NULL || s->token[0] == '\0')) ||
        (s->api == RD_API_V2 && (keys == NULL || s->oauth_url == NULL)))
        return NULL;
    rd_client *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    long timeout = s->timeout_ms > 0 ? s->timeout_ms : RD_DEFAULT_TIMEOUT_MS;
    c->api = s->api;
    c->redis = redis;
    c->keys = keys;
    c->acquire = s->acquire;
    c->acquire_arg = s->acquire_arg;
    c->background = s->background;
    c->base_url = base_dup(s->base_url);
    c->token = s->token ? strdup(s->token) : NULL;
    c->http =
        http_client_new(timeout, timeout < RD_CONNECT_TIMEOUT_MS ? timeout : RD_CONNECT_TIMEOUT_MS);
    c->requests = metrics_register(METRIC_COUNTER, "calllog_crm_requests_total",
                                   "RD Station CRM requests by endpoint and HTTP status", NULL, 0);
    c->seconds = metrics_register(METRIC_HISTOGRAM, "calllog_crm_request_seconds",
                                  "RD Station CRM request latency in seconds", NULL, 0);
    if (c->base_url == NULL || c->http == NULL || (s->token != NULL && c->token == NULL)) {
        rd_client_free(c);
        return NULL;
    }
    if (s->api == RD_API_V2) {
        rd_oauth_settings os = {s->oauth_url,     s->client_id, s->client_secret,
                                s->refresh_token, keys->oauth,  timeout};
        c->oauth = rd_oauth_new(&os, c->http, redis, c->requests, c->seconds);
        if (c->oauth == NULL) {
            rd_client_free(c);
            return NULL;
        }
    }
    return c;
}

/* Replaces the Redis connection (v2 tokens). */
void rd_client_set_redis(rd_client *c, redisContext *redis)
{
    if (c == NULL)
        return;
    c->redis = redis;
    rd_oauth_set_redis(c->oauth, redis);
}

/* Frees the client, wiping its credentials. */
rd_api rd_client_api(const rd_client *c)
{
    return c->api;
}

void rd_client_free(rd_client *c)
{
    if (c == NULL)
        return;
    rd_oauth_free(c->oauth);
    http_client_free(c->http);
    if (c->token != NULL)
        memset(c->token, 0, strlen(c->token));
    free(c->token);
    free(c->base_url);
    json_decref(c->memo_deals);
    memset(c, 0, sizeof *c);
    free(c);
}

/* ---- contacts ------------------------------------------------------------------------- */

/* Compares a contact's phones with the line `e164`: 1 when one of them is that line, 0
 * when none is, -1 when they cannot be read (no list; an entry neither a string nor an
 * object whose `phone` is a string or null). */
static int contact_confirms(const json_t *contact, const char *e164)
{
    json_t *phones = json_object_get(contact, "phones"), *p;
    size_t i;
    int same = 0;
    if (!json_is_array(phones))
        return -1;
    json_array_foreach(phones, i, p)
    {
        const char *num = json_is_string(p) ? json_string_value(p) : json_str(p, "phone");
        if (!json_is_string(p) && (!json_is_object(p) || (num == NULL && !json_absent(p, "phone"))))
            return -1;
        if (num != NULL && phone_same_number(e164, num))
            same = 1;
    }
    return same;
}

/* The search path for one phone form: v1 ?phone=, v2 ?filter=phone:<form> (quoted when
 * it holds more than digits and '+'). Caller frees. */
static char *contact_search_path(rd_client *c, const char *form)
{
    char *esc, *path;
    if (c->api == RD_API_V1) {
        esc = http_escape(form);
        path = esc ? fmt_alloc("/contacts?phone=%s", esc) : NULL;
    } else {
        int plain = strspn(form, "+0123456789") == strlen(form);
        char *filter = fmt_alloc(plain ? "phone:%s" : "phone:\"%s\"", form);
        esc = filter ? http_escape(filter) : NULL;
        free(filter);
        path = esc ? fmt_alloc("/contacts?filter=%s", esc) : NULL;
    }
    free(esc);
    return path;
}

/* Remembers the deals a v1 contact list embedded for the confirmed contact. */
static void memo_keep(rd_client *c, const char *contact_id, json_t *contact)
{
    json_t *deals = json_list(contact, "deals");
    json_decref(c->memo_deals);
    c->memo_deals = deals ? json_incref(deals) : NULL;
    copy_str(c->memo_contact, sizeof c->memo_contact, deals ? contact_id : "");
    c->memo_at = timing_mono_s();
}

/* The contact of a search answer's list whose phones confirm `e164`: CALLLOG_OK with `out`
 * filled, CALLLOG_NOT_FOUND when none does, a negative code when an entry cannot be read (one that
 * cannot be told apart from the caller's contact is never passed over). */
static calllog_code pick_contact(rd_client *c, json_t *list, const char *e164, rd_contact *out,
                                 calllog_error *err)
{
    json_t *item;
    size_t k;
    json_array_foreach(list, k, item)
    {
        if (!json_is_object(item))
            return unreadable(err, "GET /contacts", "contact %zu is not an object", k);
        int same = contact_confirms(item, e164);
        if (same < 0)
            return unreadable(err, "GET /contacts",
                              "contact %zu: \"phones\" is not a list of phone strings or "
                              "{\"phone\"} objects",
                              k);
        if (same == 0)
            continue;
        if (json_id(item, out->id, sizeof out->id) < 0)
            return unreadable(err, "GET /contacts", "contact %zu holds the phone but has no id", k);
        copy_str(out->name, sizeof out->name, json_str(item, "name"));
        if (c->api == RD_API_V1)
            memo_keep(c, out->id, item);
        return CALLLOG_OK;
    }
    return CALLLOG_NOT_FOUND;
}

/* Finds the contact of a phone; see the header. */
/* The k-th form to search: the hinted one first, then the others in their order. */
static size_t search_order(size_t k, size_t hint)
{
    if (k == 0)
        return hint;
    return k <= hint ? k - 1 : k;
}

calllog_code rd_find_contact(rd_client *c, const char *phone_e164, rd_contact *out,
                             calllog_error *err)
{
    phone_variant_list vl;
    const char *key = c->api == RD_API_V1 ? "contacts" : "data";
    memset(out, 0, sizeof *out);
    error_clear(err);
    if (phone_variants(phone_e164, &vl) < 0) {
        copy_str(err->message, sizeof err->message, "not a phone number: no contact to look up");
        return CALLLOG_NOT_FOUND;
    }
    size_t hint = c->contact_form_hint < vl.count ? c->contact_form_hint : 0;
    for (size_t k = 0; k < vl.count; k++) {
        size_t i = search_order(k, hint);
        json_t *root = NULL, *list;
        char *path = contact_search_path(c, vl.v[i]);
        if (path == NULL)
            return fail(err, 0, "out of memory");
        rd_req q = {"GET", "GET /contacts", path, NULL};
        calllog_code st = rd_call(c, &q, &root, err);
        free(path);
        if (st != CALLLOG_OK) {
            if (c->api == RD_API_V2 && (err->http_status == 400 || err->http_status == 422))
                continue; /* RDQL refused this form; others may work */
            return st;
        }
        if ((list = json_list(root, key)) == NULL)
            st = unreadable(err, "GET /contacts", "no \"%s\" list", key);
        else
            st = pick_contact(c, list, phone_e164, out, err);
        json_decref(root);
        if (st < 0) {
            memset(out, 0, sizeof *out);
            return st;
        }
        if (st == CALLLOG_OK) {
            c->contact_form_hint = i;
            error_clear(err);
            return CALLLOG_OK;
        }
    }
    error_clear(err);
    snprintf(err->message, sizeof err->message,
             "no RD Station contact holds this phone (%zu forms tried)", vl.count);
    return CALLLOG_NOT_FOUND;
}

/* ---- deals ---------------------------------------------------------------------------- */

/* The best open deal seen so far. */
typedef struct deal_pick {
    int found;
    long long updated_ms;
    rd_deal deal;
} deal_pick;

/* Whether a v1 deal (summary or full) is open: 1 when not won/lost, not closed and not on
 * hold; 0 when it is one of those; -1 when it cannot be told (`win` or `hold` neither
 * null nor a boolean, `closed_at` neither null nor a string). */
static int v1_deal_open(const json_t *d)
{
    json_t *win = json_object_get(d, "win"), *closed = json_object_get(d, "closed_at");
    json_t *hold = json_object_get(d, "hold");
    if ((!json_absent(d, "win") && !json_is_boolean(win)) ||
        (!json_absent(d, "hold") && !json_is_boolean(hold)) ||
        (!json_absent(d, "closed_at") && !json_is_string(closed)))
        return -1;
    return json_absent(d, "win") && json_absent(d, "closed_at") && !json_is_true(hold);
}

/* Writes a deal's owner id: v1 `user` object or `user_id`, v2 `owner_id`. */
static void deal_owner(const json_t *d, char *out, size_t outlen)
{
    json_t *user = json_object_get(d, "user");
    const char *id;
    out[0] = '\0';
    if (json_is_object(user) && json_id(user, out, outlen) == 0)
        return;
    if ((id = json_str(d, "user_id")) != NULL || (id = json_str(d, "owner_id")) != NULL)
        copy_str(out, outlen, id);
}

/* Considers one open deal: keeps it when it was updated later than the current pick
 * (a deal without a readable updated_at only wins when nothing else is known). Returns
 * CALLLOG_OK, or a negative code (unreadable, named after `endpoint`) when the deal has no id. */
static calllog_code pick_consider(deal_pick *p, const json_t *d, const char *endpoint,
                                  calllog_error *err)
{
    long long ts = iso_ms(json_str(d, "updated_at"));
    char id[64];
    if (json_id(d, id, sizeof id) < 0)
        return unreadable(err, endpoint, "an open deal has no id");
    if (p->found && ts <= p->updated_ms)
        return CALLLOG_OK;
    p->found = 1;
    p->updated_ms = ts;
    copy_str(p->deal.id, sizeof p->deal.id, id);
    copy_str(p->deal.name, sizeof p->deal.name, json_str(d, "name"));
    deal_owner(d, p->deal.user_id, sizeof p->deal.user_id);
    return CALLLOG_OK;
}

/* `method` <collection>/{id} (e.g. "GET", "/deals") with an optional body (borrowed),
 * counted as "<method> <collection>/{id}". On CALLLOG_OK `*out` holds the answer (caller
 * decrefs). */
static calllog_code by_id(rd_client *c, const char *method, const char *collection, const char *id,
                          json_t *body, json_t **out, calllog_error *err)
{
    char endpoint[64];
    char *esc = http_escape(id), *path = esc ? fmt_alloc("%s/%s", collection, esc) : NULL;
    free(esc);
    *out = NULL;
    if (path == NULL)
        return fail(err, 0, "out of memory");
    snprintf(endpoint, sizeof endpoint, "%s %s/{id}", method, collection);
    rd_req q = {method, endpoint, path, body};
    calllog_code st = rd_call(c, &q, out, err);
    free(path);
    return st;
}

/* v1: GET /deals/{id}. CALLLOG_OK with the deal in `*out`, CALLLOG_NOT_FOUND on 404 (deleted, or
 * not visible to the token's user), a negative code otherwise. */
static calllog_code v1_deal_get(rd_client *c, const char *deal_id, json_t **out, calllog_error *err)
{
    calllog_code st = by_id(c, "GET", "/deals", deal_id, NULL, out, err);
    if (st < 0 && err->http_status == 404)
        return CALLLOG_NOT_FOUND;
    return st;
}

/* v1: fetches deal `id` and considers it when it is open. */
static calllog_code v1_consider_fetched(rd_client *c, const char *id, deal_pick *p,
                                        calllog_error *err)
{
    json_t *full = NULL;
    calllog_code st = v1_deal_get(c, id, &full, err);
    if (st == CALLLOG_NOT_FOUND)
        return CALLLOG_OK;
    if (st == CALLLOG_OK) {
        int open = v1_deal_open(full);
        if (open < 0)
            st = unreadable(err, "GET /deals/{id}", "win/hold/closed_at of unexpected types");
        else if (open)
            st = pick_consider(p, full, "GET /deals/{id}", err);
    }
    json_decref(full);
    return st;
}

/* v1: picks from deal summaries; open ones without updated_at are fetched (bounded). */
static calllog_code v1_pick_from_summaries(rd_client *c, json_t *deals, deal_pick *p,
                                           const char *endpoint, calllog_error *err)
{
    json_t *d;
    size_t i;
    int fetched = 0;
    json_array_foreach(deals, i, d)
    {
        char id[64];
        int open = json_is_object(d) ? v1_deal_open(d) : -1;
        calllog_code st = CALLLOG_OK;
        if (open < 0)
            return unreadable(err, endpoint,
                              "deal %zu is not an object with null or boolean win/hold and a "
                              "null or string closed_at",
                              i);
        if (!open)
            continue;
        if (json_id(d, id, sizeof id) < 0)
            return unreadable(err, endpoint, "open deal %zu has no id", i);
        if (iso_ms(json_str(d, "updated_at")) >= 0 || fetched >= RD_V1_DEAL_FETCH_MAX) {
            st = pick_consider(p, d, endpoint, err);
        } else {
            fetched++;
            st = v1_consider_fetched(c, id, p, err);
        }
        if (st != CALLLOG_OK)
            return st;
    }
    return CALLLOG_OK;
}

/* v1: picks from a contact's deal_ids, fetching the last RD_V1_DEAL_IDS_MAX of them. */
static calllog_code v1_pick_from_ids(rd_client *c, json_t *ids, deal_pick *p, calllog_error *err)
{
    size_t n = json_array_size(ids);
    size_t first = n > RD_V1_DEAL_IDS_MAX ? n - RD_V1_DEAL_IDS_MAX : 0;
    for (size_t i = first; i < n; i++) {
        char id[64];
        if (json_id_value(json_array_get(ids, i), id, sizeof id) < 0)
            return unreadable(err, "GET /contacts/{id}", "deal_ids[%zu] is not an id", i);
        calllog_code st = v1_consider_fetched(c, id, p, err);
        if (st != CALLLOG_OK)
            return st;
    }
    return CALLLOG_OK;
}

/* v1: the open deal of a contact, from the memo or GET /contacts/{id} (whose `deals` or
 * `deal_ids` must be a list: a contact that says neither cannot be read). */
static calllog_code v1_find_open_deal(rd_client *c, const char *contact_id, deal_pick *p,
                                      calllog_error *err)
{
    calllog_code st;
    if (c->memo_deals != NULL && strcmp(c->memo_contact, contact_id) == 0 &&
        timing_mono_s() - c->memo_at < RD_MEMO_TTL_S) {
        json_t *deals = c->memo_deals;
        c->memo_deals = NULL;
        c->memo_contact[0] = '\0';
        st = v1_pick_from_summaries(c, deals, p, "GET /contacts", err);
        json_decref(deals);
        return st;
    }
    json_t *contact = NULL, *list;
    st = by_id(c, "GET", "/contacts", contact_id, NULL, &contact, err);
    if (st < 0 && err->http_status == 404)
        return CALLLOG_NOT_FOUND;
    if (st != CALLLOG_OK)
        return st;
    if (!json_absent(contact, "deals") && (list = json_list(contact, "deals")) != NULL)
        st = v1_pick_from_summaries(c, list, p, "GET /contacts/{id}", err);
    else if (json_absent(contact, "deals") && (list = json_list(contact, "deal_ids")) != NULL)
        st = v1_pick_from_ids(c, list, p, err);
    else
        st = unreadable(err, "GET /contacts/{id}", "neither \"deals\" nor \"deal_ids\" is a list");
    json_decref(contact);
    return st;
}

/* Whether a v2 deal belongs to the contact: 1 when its contact_ids name it (or it does
 * not say which contacts it has), 0 when they do not, -1 when contact_ids is not a list
 * of ids. */
static int v2_deal_of(const json_t *d, const char *contact_id)
{
    json_t *ids = json_object_get(d, "contact_ids"), *v;
    size_t i;
    int mine = 0;
    if (json_absent(d, "contact_ids"))
        return 1;
    if (!json_is_array(ids))
        return -1;
    json_array_foreach(ids, i, v)
    {
        char id[64];
        if (json_id_value(v, id, sizeof id) < 0)
            return -1;
        if (strcmp(id, contact_id) == 0)
            mine = 1;
    }
    return mine;
}

/* v2: considers the open deals ("ongoing") of one page that belong to the contact. */
static calllog_code v2_pick_from_page(json_t *list, const char *contact_id, deal_pick *p,
                                      calllog_error *err)
{
    json_t *d;
    size_t i;
    json_array_foreach(list, i, d)
    {
        const char *status = json_str(d, "status");
        int mine = json_is_object(d) ? v2_deal_of(d, contact_id) : -1;
        if (mine < 0 || status == NULL)
            return unreadable(err, "GET /deals",
                              "deal %zu is not an object with a status string and a list of "
                              "contact_ids",
                              i);
        if (mine && strcmp(status, "ongoing") == 0) {
            calllog_code st = pick_consider(p, d, "GET /deals", err);
            if (st != CALLLOG_OK)
                return st;
        }
    }
    return CALLLOG_OK;
}

/* v2: one page of GET /deals?filter=<field>:<contact>. Sets `*more` when a next page may
 * exist. */
static calllog_code v2_deals_page(rd_client *c, const char *field, const char *contact_id, int page,
                                  deal_pick *p, int *more, calllog_error *err)
{
    json_t *root = NULL, *list;
    char *filter = fmt_alloc("%s:%s", field, contact_id);
    char *esc = filter ? http_escape(filter) : NULL;
    char *path = esc ? fmt_alloc("/deals?filter=%s&page%%5Bnumber%%5D=%d&page%%5Bsize%%5D=%d", esc,
                                 page, RD_V2_PAGE_SIZE)
                     : NULL;
    free(filter);
    free(esc);
    *more = 0;
    if (path == NULL)
        return fail(err, 0, "out of memory");
    rd_req q = {"GET", "GET /deals", path, NULL};
    calllog_code st = rd_call(c, &q, &root, err);
    free(path);
    if (st != CALLLOG_OK)
        return st;
    if ((list = json_list(root, "data")) == NULL)
        st = unreadable(err, "GET /deals", "no \"data\" list");
    else
        st = v2_pick_from_page(list, contact_id, p, err);
    if (st == CALLLOG_OK) {
        json_t *links = json_object_get(root, "links");
        *more = json_array_size(list) >= RD_V2_PAGE_SIZE &&
                (!json_is_object(links) || json_str(links, "next") != NULL);
    }
    json_decref(root);
    return st;
}

/* v2: the open deal of a contact, filtering by contact_id (contact_ids if refused). */
static calllog_code v2_find_open_deal(rd_client *c, const char *contact_id, deal_pick *p,
                                      calllog_error *err)
{
    static const char *const fields[] = {"contact_id", "contact_ids"};
    for (size_t f = 0; f < 2; f++) {
        int more = 1;
        calllog_code st = CALLLOG_OK;
        for (int page = 1; more && page <= RD_DEAL_MAX_PAGES; page++) {
            st = v2_deals_page(c, fields[f], contact_id, page, p, &more, err);
            if (st != CALLLOG_OK)
                break;
        }
        if (st == CALLLOG_OK)
            return CALLLOG_OK;
        if (f == 1 || (err->http_status != 400 && err->http_status != 422))
            return st;
    }
    return CALLLOG_OK;
}

/* The contact's open deal updated most recently; see the header. */
calllog_code rd_find_open_deal(rd_client *c, const char *contact_id, rd_deal *out,
                               calllog_error *err)
{
    deal_pick p;
    memset(&p, 0, sizeof p);
    memset(out, 0, sizeof *out);
    error_clear(err);
    if (contact_id == NULL || contact_id[0] == '\0')
        return fail(err, 0, "no contact id");
    calllog_code st = c->api == RD_API_V1 ? v1_find_open_deal(c, contact_id, &p, err)
                                          : v2_find_open_deal(c, contact_id, &p, err);
    if (st != CALLLOG_OK)
        return st;
    error_clear(err);
    if (!p.found) {
        copy_str(err->message, sizeof err->message, "the contact has no open deal");
        return CALLLOG_NOT_FOUND;
    }
    *out = p.deal;
    return CALLLOG_OK;
}

/* ---- listing the account -------------------------------------------------------------- */

/* Reads a contact's phones into `out`. Returns 0, or -1 when they cannot be read. */
static int listed_phones(const json_t *contact, rd_listed_contact *out)
{
    json_t *phones = json_object_get(contact, "phones"), *p;
    size_t i;
    if (json_absent(contact, "phones"))
        return 0;
    if (!json_is_array(phones))
        return -1;
    json_array_foreach(phones, i, p)
    {
        const char *num = json_is_string(p) ? json_string_value(p) : json_str(p, "phone");
        if (!json_is_string(p) && (!json_is_object(p) || (num == NULL && !json_absent(p, "phone"))))
            return -1;
        if (num != NULL && out->nphones < RD_LISTED_PHONES_MAX)
            out->phones[out->nphones++] = num;
    }
    return 0;
}

/* v1: the open deal of a listed contact's summaries, without fetching anything. Returns 0,
 * or -1 when a summary cannot be read. */
static int listed_v1_deal(const json_t *deals, rd_listed_contact *out, calllog_error *err)
{
    deal_pick p;
    json_t *d;
    size_t i, open = 0, dated = 0;
    memset(&p, 0, sizeof p);
    json_array_foreach(deals, i, d)
    {
        int is_open = json_is_object(d) ? v1_deal_open(d) : -1;
        if (is_open < 0)
            return -1;
        if (!is_open)
            continue;
        open++;
        dated += iso_ms(json_str(d, "updated_at")) >= 0;
        if (pick_consider(&p, d, "GET /contacts", err) != CALLLOG_OK)
            return -1;
    }
    out->deals_listed = 1;
    out->deal_ambiguous = open > 1 && dated < open;
    if (p.found && !out->deal_ambiguous)
        out->deal = p.deal;
    return 0;
}

/* Turns one list item into `out`. Returns 0, or a negative code (unreadable). */
static calllog_code listed_contact(rd_client *c, json_t *item, size_t k, rd_listed_contact *out,
                                   char *id, size_t idlen, calllog_error *err)
{
    json_t *deals;
    memset(out, 0, sizeof *out);
    if (!json_is_object(item) || json_id(item, id, idlen) < 0)
        return unreadable(err, "GET /contacts", "listed contact %zu has no id", k);
    out->id = id;
    out->name = json_str(item, "name");
    if (listed_phones(item, out) < 0)
        return unreadable(err, "GET /contacts", "listed contact %zu: unreadable phones", k);
    if (c->api == RD_API_V1 && (deals = json_list(item, "deals")) != NULL &&
        listed_v1_deal(deals, out, err) < 0)
        return unreadable(err, "GET /contacts", "listed contact %zu: unreadable deals", k);
    return CALLLOG_OK;
}

/* GETs one page of a list (`what` names it for metrics and errors) and returns its items
 * in `*list` (borrowed from `*root`, which the caller decrefs) and whether more follow. */
static calllog_code list_page(rd_client *c, const char *what, const char *path, json_t **root,
                              json_t **list, int *more, calllog_error *err)
{
    const char *key = c->api == RD_API_V1 ? strchr(what, '/') + 1 : "data";
    rd_req q = {"GET", what, path, NULL};
    *more = 0;
    *list = NULL;
    calllog_code st = rd_call(c, &q, root, err);
    if (st != CALLLOG_OK)
        return st;
    if ((*list = json_list(*root, key)) == NULL)
        return unreadable(err, what, "no \"%s\" list", key);
    if (c->api == RD_API_V1) {
        *more = json_is_true(json_object_get(*root, "has_more"));
    } else {
        json_t *links = json_object_get(*root, "links");
        *more = json_array_size(*list) >= RD_V2_PAGE_SIZE &&
                (!json_is_object(links) || json_str(links, "next") != NULL);
    }
    return CALLLOG_OK;
}

/* One listing's page being read: the client, and the caller's reader and its argument. */
typedef struct list_reader {
    rd_client *c;
    rd_contact_fn contact; /* the contact listing's reader, or NULL */
    rd_deal_fn deal;       /* the deal listing's reader, or NULL */
    void *arg;
} list_reader;

/* Reads one item of a listing into the caller's reader. Returns CALLLOG_OK or an error. */
typedef calllog_code (*list_item_fn)(list_reader *r, json_t *item, size_t k, calllog_error *err);

/* GETs the page at `path` and hands each of its items to `each`; stops at the first
 * error. Sets *more when another page follows. */
static calllog_code list_each(list_reader *r, const char *what, char *path, list_item_fn each,
                              int *more, calllog_error *err)
{
    json_t *root = NULL, *list, *item;
    size_t k;
    if (path == NULL)
        return fail(err, 0, "out of memory");
    calllog_code st = list_page(r->c, what, path, &root, &list, more, err);
    free(path);
    if (st == CALLLOG_OK) {
        json_array_foreach(list, k, item)
        {
            if ((st = each(r, item, k, err)) != CALLLOG_OK)
                break;
        }
    }
    json_decref(root);
    return st;
}

/* list_item_fn of the contact listing. */
static calllog_code each_contact(list_reader *r, json_t *item, size_t k, calllog_error *err)
{
    rd_listed_contact lc;
    char id[64];
    calllog_code st = listed_contact(r->c, item, k, &lc, id, sizeof id, err);
    if (st == CALLLOG_OK && r->contact(r->arg, &lc) != 0)
        st = error_set(err, CALLLOG_INVALID, "contact listing stopped by its reader");
    return st;
}

/* Lists the account's contacts, one page; see the header. */
calllog_code rd_list_contacts(rd_client *c, int page, rd_contact_fn fn, void *arg, int *more,
                              calllog_error *err)
{
    list_reader r = {.c = c, .contact = fn, .arg = arg};
    error_clear(err);
    char *path = c->api == RD_API_V1
                     ? fmt_alloc("/contacts?page=%d&limit=%d", page, RD_V1_PAGE_SIZE)
                     : fmt_alloc("/contacts?page%%5Bnumber%%5D=%d&page%%5Bsize%%5D=%d", page,
                                 RD_V2_PAGE_SIZE);
    return list_each(&r, "GET /contacts", path, each_contact, more, err);
}

/* Turns one listed v2 deal into `out`. Returns 1 when it is open, 0 when not, -1 when it
 * cannot be read (`err` says why). */
static int listed_deal(json_t *d, size_t k, rd_listed_deal *out, calllog_error *err)
{
    deal_pick p;
    json_t *ids = json_object_get(d, "contact_ids"), *v;
    size_t i;
    const char *status = json_str(d, "status");
    memset(out, 0, sizeof *out);
    memset(&p, 0, sizeof p);
    if (!json_is_object(d) || status == NULL || !json_is_array(ids)) {
        unreadable(err, "GET /deals", "deal %zu has no status or contact_ids", k);
        return -1;
    }
    if (strcmp(status, "ongoing") != 0)
        return 0;
    if (pick_consider(&p, d, "GET /deals", err) != CALLLOG_OK)
        return -1;
    out->deal = p.deal;
    out->updated_ms = p.updated_ms;
    json_array_foreach(ids, i, v)
    {
        if (out->ncontacts >= RD_LISTED_PHONES_MAX)
            break;
        if (json_id_value(v, out->contact_ids[out->ncontacts++], sizeof out->contact_ids[0]) < 0) {
            unreadable(err, "GET /deals", "deal %zu: contact_ids[%zu] is not an id", k, i);
            return -1;
        }
    }
    return 1;
}

/* list_item_fn of the open-deal listing: closed deals are skipped. */
static calllog_code each_deal(list_reader *r, json_t *item, size_t k, calllog_error *err)
{
    rd_listed_deal ld;
    int open = listed_deal(item, k, &ld, err);
    if (open < 0)
        return err->code;
    if (open && r->deal(r->arg, &ld) != 0)
        return error_set(err, CALLLOG_INVALID, "deal listing stopped by its reader");
    return CALLLOG_OK;
}

/* Lists the account's open deals (v2), one page; see the header. */
calllog_code rd_list_open_deals(rd_client *c, int page, rd_deal_fn fn, void *arg, int *more,
                                calllog_error *err)
{
    list_reader r = {.c = c, .deal = fn, .arg = arg};
    error_clear(err);
    *more = 0;
    if (c->api != RD_API_V2)
        return error_set(err, CALLLOG_INVALID, "v1 lists deals inside contacts");
    return list_each(&r, "GET /deals",
                     fmt_alloc("/deals?filter=status%%3Aongoing&page%%5Bnumber%%5D=%d"
                               "&page%%5Bsize%%5D=%d",
                               page, RD_V2_PAGE_SIZE),
                     each_deal, more, err);
}

/* ---- notes and tasks ------------------------------------------------------------------ */

/* Writes the id of the object a create returned (v2: inside "data"); "" when unknown. */
static void created_id(rd_client *c, json_t *root, char *out, size_t outlen)
{
    json_t *obj = root ? json_payload(c, root) : NULL;
    if (out == NULL || outlen == 0)
        return;
    out[0] = '\0';
    if (obj != NULL)
        json_id(obj, out, outlen);
}

/* Posts a note; see the header. */
calllog_code rd_post_note(rd_client *c, const char *deal_id, const char *user_id, const char *text,
                          char *note_id, size_t idlen, calllog_error *err)
{
    json_t *body, *root = NULL;
    char *path = NULL;
    rd_req q;
    copy_str(note_id, idlen, "");
    if (deal_id == NULL || text == NULL)
        return fail(err, 0, "rd_post_note: no deal or text");
    if (c->api == RD_API_V1) {
        body = json_pack("{s:{s:s,s:s,s:s}}", "activity", "deal_id", deal_id, "user_id",
                         user_id ? user_id : "", "text", text);
        q = (rd_req){"POST", "POST /activities", "/activities", body};
    } else {
        json_t *data = json_pack("{s:s}", "description", text);
        if (data != NULL && user_id != NULL && user_id[0] != '\0')
            json_object_set_new(data, "user_id", json_string(user_id));
        body = data ? json_pack("{s:o}", "data", data) : NULL;
        char *esc = http_escape(deal_id);
        path = esc ? fmt_alloc("/deals/%s/notes", esc) : NULL;
        free(esc);
        q = (rd_req){"POST", "POST /deals/{id}/notes", path, body};
    }
    if (body == NULL || q.path == NULL) {
        json_decref(body);
        free(path);
        return fail(err, 0, "out of memory (or text is not UTF-8)");
    }
    calllog_code st = rd_call(c, &q, &root, err);
    if (st == CALLLOG_OK) {
        created_id(c, root, note_id, idlen);
        if (note_id == NULL || idlen == 0 || note_id[0] == '\0')
            st = unreadable(err, q.endpoint, "no id for the created note");
    }
    json_decref(root);
    json_decref(body);
    free(path);
    return st;
}

/* The body of a new task of `type` ("call", or "task" on free plans). Returns NULL out of
 * memory (or invalid UTF-8). */
static json_t *task_body(rd_client *c, const char *type, const char *deal_id, const char *user_id,
                         const char *subject, const char *notes, time_t when)
{
    struct tm tm;
    char date[16], hour[8], due[32];
    int has_user = user_id != NULL && user_id[0] != '\0';
    json_t *owners = json_array();
    if (owners != NULL && has_user)
        json_array_append_new(owners, json_string(user_id));
    if (c->api == RD_API_V1) {
        localtime_r(&when, &tm);
        strftime(date, sizeof date, "%Y-%m-%d", &tm);
        strftime(hour, sizeof hour, "%H:%M", &tm);
        return json_pack("{s:{s:s,s:s,s:s,s:s,s:s,s:o,s:s}}", "task", "deal_id", deal_id, "subject",
                         subject, "type", type, "date", date, "hour", hour, "user_ids", owners,
                         "notes", notes ? notes : "");
    }
    gmtime_r(&when, &tm);
    strftime(due, sizeof due, "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_t *data = json_pack("{s:s,s:s,s:s,s:s,s:s}", "name", subject, "type", type, "description",
                             notes ? notes : "", "due_date", due, "deal_id", deal_id);
    if (data != NULL && has_user)
        json_object_set(data, "owner_ids", owners);
    json_decref(owners);
    return data ? json_pack("{s:o}", "data", data) : NULL;
}

/* Marks a created task done: PUT /tasks/{id}. */
static calllog_code task_complete(rd_client *c, const char *task_id, calllog_error *err)
{
    json_t *body = c->api == RD_API_V1 ? json_pack("{s:{s:b}}", "task", "done", 1)
                                       : json_pack("{s:{s:s}}", "data", "status", "completed");
    json_t *answer = NULL; /* read only to know it is RD's: a proxy's page is not */
    calllog_code st = body ? by_id(c, "PUT", "/tasks", task_id, body, &answer, err)
                           : fail(err, 0, "out of memory");
    json_decref(answer);
    json_decref(body);
    return st;
}

/* ---- the free-plan fallback ------------------------------------------------------------ */

/* Reads the plan hash; see the header. */
int rd_plan_read(redisContext *c, const calllog_keys *k, rd_plan *out)
{
    memset(out, 0, sizeof *out);
    if (c == NULL || k == NULL)
        return -1;
    redisReply *r = redisCommand(c, "HMGET %s call_task call_task_at", k->rdstation_plan);
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
        if (r != NULL)
            freeReplyObject(r);
        return -1;
    }
    redisReply *flag = r->element[0], *at = r->element[1];
    out->call_task_refused = flag->type == REDIS_REPLY_STRING && strcmp(flag->str, "refused") == 0;
    if (out->call_task_refused && at->type == REDIS_REPLY_STRING)
        out->refused_at_ms = strtoll(at->str, NULL, 10);
    freeReplyObject(r);
    return 0;
}

/* Whether tasks must be created as type "task": the flag some worker recorded, read again
 * every RD_PLAN_RECHECK_S (so a deleted hash lets "call" be tried again). When Redis
 * cannot be read the last known value stands. */
static int plan_task_only(rd_client *c)
{
    double now = timing_mono_s();
    rd_plan p;
    if (c->redis == NULL || c->keys == NULL ||
        (c->plan_read_at > 0 && now - c->plan_read_at < RD_PLAN_RECHECK_S))
        return c->task_only;
    if (rd_plan_read(c->redis, c->keys, &p) == 0) {
        c->task_only = p.call_task_refused;
        c->plan_read_at = now;
    }
    return c->task_only;
}

/* Records that the plan refuses call tasks. The worker whose HSETNX wins logs the one
 * warning; without Redis, this client logs it (once: it then remembers locally). */
static void plan_remember(rd_client *c)
{
    int first = 1;
    c->task_only = 1;
    c->plan_read_at = timing_mono_s();
    if (c->redis != NULL && c->keys != NULL) {
        redisReply *r =
            redisCommand(c->redis, "HSETNX %s call_task refused", c->keys->rdstation_plan);
        first = r == NULL || (r->type == REDIS_REPLY_INTEGER && r->integer == 1);
        if (r != NULL)
            freeReplyObject(r);
        if (first) {
            r = redisCommand(c->redis, "HSET %s call_task_at %lld call_task_reason %s",
                             c->keys->rdstation_plan, (long long)timing_epoch_ms(),
                             "POST /tasks type call refused with 403, type task accepted");
            if (r != NULL)
                freeReplyObject(r);
        }
    }
    if (first)
        log_warn("RD Station refused a task of type call with 403 and accepted type task: the "
                 "account's plan (free) allows only type task; every worker now creates tasks "
                 "of type task (calllog-admin status shows it; delete the Redis hash after a "
                 "plan upgrade)",
                 LF_S("key", c->keys ? c->keys->rdstation_plan : ""));
}

/* Whether a failed task create is the documented free-plan refusal's shape: 403 on
 * POST /tasks for a type other than "task". Only a candidate: the caller confirms it by
 * creating the same task as type "task". */
static int plan_refusal_candidate(const calllog_error *err)
{
    return err->http_status == 403 && err->curl_code == 0;
}

/* POST /tasks of one type; `*root` holds the answer on CALLLOG_OK. */
static calllog_code task_create(rd_client *c, const char *type, const char *deal_id,
                                const char *user_id, const char *subject, const char *notes,
                                time_t when, json_t **root, calllog_error *err)
{
    json_t *body = task_body(c, type, deal_id, user_id, subject, notes, when);
    if (body == NULL)
        return fail(err, 0, "out of memory (or text is not UTF-8)");
    rd_req q = {"POST", "POST /tasks", "/tasks", body};
    calllog_code st = rd_call(c, &q, root, err);
    json_decref(body);
    return st;
}

/* Creates the task as type "call", or "task" when the plan refuses "call"; see the
 * header for how the refusal is told from a token that may not create tasks at all. */
static calllog_code task_create_for_plan(rd_client *c, const char *deal_id, const char *user_id,
                                         const char *subject, const char *notes, time_t when,
                                         json_t **root, calllog_error *err)
{
    if (plan_task_only(c))
        return task_create(c, "task", deal_id, user_id, subject, notes, when, root, err);
    calllog_code st = task_create(c, "call", deal_id, user_id, subject, notes, when, root, err);
    if (st >= 0 || !plan_refusal_candidate(err))
        return st;
    char first[sizeof err->message];
    copy_str(first, sizeof first, err->message);
    st = task_create(c, "task", deal_id, user_id, subject, notes, when, root, err);
    if (st == CALLLOG_OK) {
        plan_remember(c);
    } else if (err->http_status == 403) {
        char msg[sizeof err->message];
        snprintf(msg, sizeof msg,
                 "POST /tasks: 403 for type task as well as call, so not the free-plan limit: "
                 "the token's user may not create tasks (%.300s)",
                 first);
        copy_str(err->message, sizeof err->message, msg);
    }
    return st;
}

/* Creates an open task; see the header. */
calllog_code rd_open_task(rd_client *c, const char *deal_id, const char *user_id,
                          const char *subject, const char *notes, time_t due, char *task_id,
                          size_t idlen, calllog_error *err)
{
    json_t *root = NULL;
    copy_str(task_id, idlen, "");
    if (deal_id == NULL || subject == NULL)
        return fail(err, 0, "rd_open_task: no deal or subject");
    calllog_code st = task_create_for_plan(c, deal_id, user_id, subject, notes, due, &root, err);
    if (st != CALLLOG_OK)
        return st;
    created_id(c, root, task_id, idlen);
    json_decref(root);
    if (task_id == NULL || idlen == 0 || task_id[0] == '\0')
        return unreadable(err, "POST /tasks", "no id for the created task");
    return CALLLOG_OK;
}

/* Marks a task done; see the header. */
calllog_code rd_complete_task(rd_client *c, const char *task_id, calllog_error *err)
{
    if (task_id == NULL || task_id[0] == '\0')
        return fail(err, 0, "rd_complete_task: no task id");
    return task_complete(c, task_id, err);
}

/* Reads a deal's owner; see the header. */
calllog_code rd_deal_owner(rd_client *c, const char *deal_id, char *user_id, size_t idlen,
                           calllog_error *err)
{
    json_t *root = NULL;
    copy_str(user_id, idlen, "");
    if (deal_id == NULL || deal_id[0] == '\0')
        return fail(err, 0, "rd_deal_owner: no deal");
    calllog_code st = by_id(c, "GET", "/deals", deal_id, NULL, &root, err);
    if (st < 0 && err->http_status == 404)
        st = CALLLOG_NOT_FOUND;
    json_t *deal = st == CALLLOG_OK ? json_payload(c, root) : NULL;
    if (st == CALLLOG_OK && !json_is_object(deal))
        st = unreadable(err, "GET /deals/{id}", "the deal is not an object");
    if (st == CALLLOG_OK)
        deal_owner(deal, user_id, idlen);
    json_decref(root);
    return st;
}

/* Creates a call task and marks it done; see the header. */
calllog_code rd_post_call_task(rd_client *c, const char *deal_id, const char *user_id,
                               const char *subject, const char *notes, time_t when, char *task_id,
                               size_t idlen, calllog_error *err)
{
    char id[64];
    copy_str(task_id, idlen, "");
    calllog_code st = rd_open_task(c, deal_id, user_id, subject, notes, when, id, sizeof id, err);
    if (st != CALLLOG_OK)
        return st;
    copy_str(task_id, idlen, id);
    st = task_complete(c, id, err);
    if (st != CALLLOG_OK)
        log_warn("rdstation call task created but not marked done", LF_S("task_id", id),
                 LF_S("error", err->message));
    return st;
}

/* ---- marker search -------------------------------------------------------------------- */

/* Looks for `marker` in the given text fields of each item; copies the id of the first
 * match. Returns 1 when found, 0 when not, -1 when an item is not an object or one of its
 * text fields is neither a string nor null (the marker could hide there: never "not
 * found", which would post a second entry). */
static int list_has_marker(json_t *list, const char *const *fields, const char *marker,
                           char *found_id, size_t idlen)
{
    json_t *item;
    size_t i;
    json_array_foreach(list, i, item)
    {
        if (!json_is_object(item))
            return -1;
        for (size_t f = 0; fields[f] != NULL; f++) {
            const char *text = json_str(item, fields[f]);
            if (text == NULL && !json_absent(item, fields[f]))
                return -1;
            if (text != NULL && strstr(text, marker) != NULL) {
                char id[64];
                if (json_id(item, id, sizeof id) < 0)
                    log_warn("rdstation entry with the marker has no id", LF_S("marker", marker));
                copy_str(found_id, idlen, id);
                return 1;
            }
        }
    }
    return 0;
}

/* Pages through one list (`base` plus the page parameters) looking for the marker.
 * Returns CALLLOG_OK when found, CALLLOG_NOT_FOUND when not, a negative code on failure. */
static calllog_code search_pages(rd_client *c, const char *endpoint, const char *base,
                                 const char *list_key, const char *const *fields,
                                 const char *marker, char *found_id, size_t idlen,
                                 calllog_error *err)
{
    int v1 = c->api == RD_API_V1, size = v1 ? RD_V1_PAGE_SIZE : RD_V2_PAGE_SIZE;
    char sep = strchr(base, '?') ? '&' : '?';
    for (int page = 1; page <= RD_MARKER_MAX_PAGES; page++) {
        json_t *root = NULL, *list;
        char *path =
            v1 ? fmt_alloc("%s%climit=%d&page=%d", base, sep, size, page)
               : fmt_alloc("%s%cpage%%5Bnumber%%5D=%d&page%%5Bsize%%5D=%d", base, sep, page, size);
        if (path == NULL)
            return fail(err, 0, "out of memory");
        rd_req q = {"GET", endpoint, path, NULL};
        calllog_code st = rd_call(c, &q, &root, err);
        free(path);
        if (st != CALLLOG_OK)
            return st;
        if ((list = json_list(root, list_key)) == NULL) {
            json_decref(root);
            return unreadable(err, endpoint, "no \"%s\" list", list_key);
        }
        int found = list_has_marker(list, fields, marker, found_id, idlen);
        size_t n = json_array_size(list);
        json_decref(root);
        if (found < 0)
            return unreadable(err, endpoint, "an entry is not an object with text fields");
        if (found)
            return CALLLOG_OK;
        if (n < (size_t)size)
            break;
    }
    return CALLLOG_NOT_FOUND;
}

/* Builds the list paths (without paging) of a deal's notes and tasks. v1 lists every type
 * (a free plan's tasks are type "task"; the marker alone identifies the call). Returns 0,
 * or -1 out of memory; the caller frees both. */
static int marker_paths(rd_client *c, const char *deal_id, char **notes, char **tasks)
{
    char *esc = http_escape(deal_id), *filter = NULL, *fesc = NULL;
    *notes = *tasks = NULL;
    if (esc != NULL && c->api == RD_API_V1) {
        *notes = fmt_alloc("/activities?deal_id=%s", esc);
        *tasks = fmt_alloc("/tasks?deal_id=%s", esc);
    } else if (esc != NULL) {
        filter = fmt_alloc("deal_id:%s", deal_id);
        fesc = filter ? http_escape(filter) : NULL;
        *notes = fmt_alloc("/deals/%s/notes", esc);
        *tasks = fesc ? fmt_alloc("/tasks?filter=%s", fesc) : NULL;
    }
    free(esc);
    free(filter);
    free(fesc);
    if (*notes != NULL && *tasks != NULL)
        return 0;
    free(*notes);
    free(*tasks);
    *notes = *tasks = NULL;
    return -1;
}

/* v2: a 400/422 on the task list (filter=deal_id is unverified) means the tasks cannot
 * be searched: rewrites `err` as a transient error saying so. Returns a negative code. */
static calllog_code tasks_unsearchable(calllog_error *err)
{
    char msg[sizeof err->message];
    snprintf(msg, sizeof msg,
             "GET /tasks: cannot search tasks for the marker (RD refused filter=deal_id with "
             "HTTP %ld); retried later rather than risk a second entry: %.300s",
             err->http_status, err->message);
    error_clear(err);
    copy_str(err->message, sizeof err->message, msg);
    return rd_failed(err);
}

/* Looks for the CallSid marker among a deal's notes and/or tasks; see the header. */
calllog_code rd_find_marker(rd_client *c, const char *deal_id, rd_marker_scope scope,
                            const char *marker, char *found_id, size_t idlen, calllog_error *err)
{
    static const char *const v1_note_fields[] = {"text", NULL};
    static const char *const v1_task_fields[] = {"notes", "subject", NULL};
    static const char *const v2_note_fields[] = {"description", NULL};
    static const char *const v2_task_fields[] = {"description", "name", NULL};
    char *notes, *tasks;
    int v1 = c->api == RD_API_V1;
    copy_str(found_id, idlen, "");
    if (deal_id == NULL || marker == NULL || marker[0] == '\0')
        return fail(err, 0, "rd_find_marker: no deal or marker");
    if (marker_paths(c, deal_id, &notes, &tasks) < 0)
        return fail(err, 0, "out of memory");
    calllog_code st = CALLLOG_NOT_FOUND;
    if (scope & RD_MARKER_NOTES)
        st = search_pages(c, v1 ? "GET /activities" : "GET /deals/{id}/notes", notes,
                          v1 ? "activities" : "data", v1 ? v1_note_fields : v2_note_fields, marker,
                          found_id, idlen, err);
    if (st == CALLLOG_NOT_FOUND && (scope & RD_MARKER_TASKS)) {
        st = search_pages(c, "GET /tasks", tasks, v1 ? "tasks" : "data",
                          v1 ? v1_task_fields : v2_task_fields, marker, found_id, idlen, err);
        if (st < 0 && !v1 && (err->http_status == 400 || err->http_status == 422))
            st = tasks_unsearchable(err);
    }
    if (st == CALLLOG_NOT_FOUND) {
        error_clear(err);
        copy_str(err->message, sizeof err->message, "marker not found on the deal");
    }
    free(notes);
    free(tasks);
    return st;
}

/* ---- creating a contact and a deal ---------------------------------------------------- */

/* The body creating a contact named `name` with one mobile phone: v1's type for it is
 * "cellphone", v2 accepts only work, fax, home and mobile (and refuses "cellphone"). */
static json_t *contact_body(rd_client *c, const char *name, const char *phone)
{
    json_t *phones = json_pack("[{s:s,s:s}]", "phone", phone, "type",
                               c->api == RD_API_V1 ? "cellphone" : "mobile");
    if (phones == NULL)
        return NULL;
    return json_pack("{s:{s:s,s:o}}", c->api == RD_API_V1 ? "contact" : "data", "name", name,
                     "phones", phones);
}

/* The body creating a deal for contact `cid`. v1 names no contact: whether POST /deals'
 * `contacts` links or creates contacts is not settled (reference, "Checked again"), so
 * v1_link_deal links it afterwards. */
static json_t *deal_body(rd_client *c, const char *name, const char *cid, const char *stage_id,
                         const char *user_id)
{
    int has_user = user_id != NULL && user_id[0] != '\0';
    json_t *d;
    if (c->api == RD_API_V1) {
        d = json_pack("{s:s,s:s}", "name", name, "deal_stage_id", stage_id);
        if (d != NULL && has_user)
            json_object_set_new(d, "user_id", json_string(user_id));
        (void)cid;
        return d ? json_pack("{s:o}", "deal", d) : NULL;
    }
    d = json_pack("{s:s,s:[s],s:s}", "name", name, "contact_ids", cid, "stage_id", stage_id);
    if (d != NULL && has_user)
        json_object_set_new(d, "owner_id", json_string(user_id));
    return d ? json_pack("{s:o}", "data", d) : NULL;
}

/* POSTs a body and reads the created object's id. */
static calllog_code create_one(rd_client *c, const char *endpoint, const char *path, json_t *body,
                               char *id, size_t idlen, calllog_error *err)
{
    json_t *root = NULL;
    if (body == NULL)
        return fail(err, 0, "out of memory (or text is not UTF-8)");
    rd_req q = {"POST", endpoint, path, body};
    calllog_code st = rd_call(c, &q, &root, err);
    json_decref(body);
    if (st == CALLLOG_OK) {
        created_id(c, root, id, idlen);
        if (id[0] == '\0')
            st = unreadable(err, endpoint, "no id for the created object");
    }
    json_decref(root);
    return st;
}

/* v1: the ids of the deals contact `cid` lists (GET /contacts/{id}: `deal_ids`, or the ids
 * of `deals`). On CALLLOG_OK `*ids` is a new JSON array of id strings (caller decrefs). */
static calllog_code v1_contact_deal_ids(rd_client *c, const char *cid, json_t **ids,
                                        calllog_error *err)
{
    json_t *contact = NULL, *list, *v;
    size_t i;
    *ids = NULL;
    calllog_code st = by_id(c, "GET", "/contacts", cid, NULL, &contact, err);
    if (st != CALLLOG_OK)
        return st;
    int objects = json_absent(contact, "deal_ids");
    list = json_list(contact, objects ? "deals" : "deal_ids");
    *ids = json_array();
    if (list == NULL || *ids == NULL) {
        json_decref(contact);
        json_decref(*ids);
        *ids = NULL;
        return unreadable(err, "GET /contacts/{id}",
                          "neither \"deal_ids\" nor \"deals\" is a list");
    }
    json_array_foreach(list, i, v)
    {
        char id[64];
        if ((objects ? json_id(v, id, sizeof id) : json_id_value(v, id, sizeof id)) < 0) {
            json_decref(contact);
            json_decref(*ids);
            *ids = NULL;
            return unreadable(err, "GET /contacts/{id}", "deal %zu has no id", i);
        }
        json_array_append_new(*ids, json_string(id));
    }
    json_decref(contact);
    return CALLLOG_OK;
}

/* 1 when the JSON array of id strings holds `id`. */
static int ids_hold(const json_t *ids, const char *id)
{
    json_t *v;
    size_t i;
    json_array_foreach(ids, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), id) == 0)
            return 1;
    }
    return 0;
}

/* v1: links deal `did` to contact `cid` with PUT /contacts/{id} carrying the contact's
 * deal_ids plus the new one (deal_ids replaces the list), then reads the contact back.
 * See the header for why a read-back without the deal is permanent. */
static calllog_code v1_link_deal(rd_client *c, const char *cid, const char *did, calllog_error *err)
{
    json_t *ids = NULL, *answer = NULL;
    calllog_code st = v1_contact_deal_ids(c, cid, &ids, err);
    if (st != CALLLOG_OK || ids_hold(ids, did)) {
        json_decref(ids);
        return st;
    }
    json_array_append_new(ids, json_string(did));
    json_t *body = json_pack("{s:{s:o}}", "contact", "deal_ids", ids);
    st = body ? by_id(c, "PUT", "/contacts", cid, body, &answer, err)
              : fail(err, 0, "out of memory");
    json_decref(answer);
    json_decref(body);
    if (st != CALLLOG_OK)
        return st;
    st = v1_contact_deal_ids(c, cid, &ids, err);
    if (st == CALLLOG_OK && !ids_hold(ids, did)) {
        error_set(err, CALLLOG_PERMANENT,
                  "PUT /contacts/{id}: RD answered 2xx but reading contact %.64s back does not "
                  "list the new deal %.64s: the deal exists unlinked; link it to the contact in "
                  "RD, then replay this dead letter",
                  cid, did);
        err->http_status = 200;
        st = CALLLOG_PERMANENT;
    }
    json_decref(ids);
    return st;
}

/* Creates a contact and a deal for it; see the header. */
calllog_code rd_create_contact_and_deal(rd_client *c, const char *name, const char *phone_e164,
                                        const char *stage_id, const char *user_id,
                                        rd_contact *contact, rd_deal *deal, calllog_error *err)
{
    const char *nm = name != NULL && name[0] != '\0' ? name : phone_e164;
    int have_contact = contact->id[0] != '\0';
    if (!have_contact)
        memset(contact, 0, sizeof *contact);
    memset(deal, 0, sizeof *deal);
    if (phone_e164 == NULL || stage_id == NULL || stage_id[0] == '\0')
        return fail(err, 0, "rd_create_contact_and_deal: no phone or stage");
    calllog_code st = CALLLOG_OK;
    if (!have_contact) {
        st = create_one(c, "POST /contacts", "/contacts", contact_body(c, nm, phone_e164),
                        contact->id, sizeof contact->id, err);
        if (st != CALLLOG_OK)
            return st;
        copy_str(contact->name, sizeof contact->name, nm);
    }
    st = create_one(c, "POST /deals", "/deals", deal_body(c, nm, contact->id, stage_id, user_id),
                    deal->id, sizeof deal->id, err);
    if (st == CALLLOG_OK && c->api == RD_API_V1)
        st = v1_link_deal(c, contact->id, deal->id, err);
    if (st != CALLLOG_OK)
        return st;
    copy_str(deal->name, sizeof deal->name, nm);
    copy_str(deal->user_id, sizeof deal->user_id, user_id);
    return CALLLOG_OK;
}

/* ---- users ---------------------------------------------------------------------------- */

/* Appends the users of one list answer to `*out`. Returns CALLLOG_OK, or a negative code
 * (unreadable) when an entry is not an object with an id. */
static calllog_code users_append(json_t *list, rd_user **out, size_t *n, calllog_error *err)
{
    json_t *u;
    size_t i;
    rd_user *grown = realloc(*out, (*n + json_array_size(list) + 1) * sizeof **out);
    if (grown == NULL)
        return fail(err, 0, "out of memory");
    *out = grown;
    json_array_foreach(list, i, u)
    {
        rd_user *r = &(*out)[*n];
        memset(r, 0, sizeof *r);
        if (!json_is_object(u) || json_id(u, r->id, sizeof r->id) < 0)
            return unreadable(err, "GET /users", "user %zu is not an object with an id", i);
        copy_str(r->email, sizeof r->email, json_str(u, "email"));
        copy_str(r->name, sizeof r->name, json_str(u, "name"));
        (*n)++;
    }
    return CALLLOG_OK;
}

/* Lists the account's users; see the header. */
calllog_code rd_list_users(rd_client *c, rd_user **out, size_t *n, calllog_error *err)
{
    int v1 = c->api == RD_API_V1;
    calllog_code st = CALLLOG_OK;
    *out = NULL;
    *n = 0;
    for (int page = 1; page <= (v1 ? 1 : RD_USERS_MAX_PAGES); page++) {
        json_t *root = NULL, *list;
        char *path = v1 ? fmt_alloc("/users")
                        : fmt_alloc("/users?page%%5Bnumber%%5D=%d&page%%5Bsize%%5D=%d", page,
                                    RD_V2_PAGE_SIZE);
        if (path == NULL) {
            st = fail(err, 0, "out of memory");
            break;
        }
        rd_req q = {"GET", "GET /users", path, NULL};
        st = rd_call(c, &q, &root, err);
        free(path);
        if (st != CALLLOG_OK)
            break;
        list = json_list(root, v1 ? "users" : "data");
        st = list ? users_append(list, out, n, err)
                  : unreadable(err, "GET /users", "no \"%s\" list", v1 ? "users" : "data");
        json_t *links = json_object_get(root, "links");
        int more = list && json_array_size(list) >= RD_V2_PAGE_SIZE &&
                   (!json_is_object(links) || json_str(links, "next") != NULL);
        json_decref(root);
        if (st != CALLLOG_OK || !more)
            break;
    }
    if (st != CALLLOG_OK) {
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return st;
}
