/* webhook — body format, parsing, signature, required fields, normalization. */
#include "ingest/webhook.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/event.h"
#include "common/form.h"
#include "common/json_text.h"
#include "common/timing.h"

typedef enum { BODY_FORM, BODY_JSON, BODY_UNSUPPORTED } body_format;

/* The media type of a Content-Type header, parameters (`; charset=…`) ignored. */
static body_format body_format_of(const char *content_type)
{
    if (!content_type)
        return BODY_UNSUPPORTED;
    size_t n = strcspn(content_type, ";");
    while (n > 0 && (content_type[n - 1] == ' ' || content_type[n - 1] == '\t'))
        n--;
    if (n == 33 && strncasecmp(content_type, "application/x-www-form-urlencoded", n) == 0)
        return BODY_FORM;
    if (n == 16 && strncasecmp(content_type, "application/json", n) == 0)
        return BODY_JSON;
    return BODY_UNSUPPORTED;
}

/* Fills `out` with a refusal; always returns -1. */
static int refuse(webhook_result *out, int status, const char *reason)
{
    out->http_status = status;
    out->reason = reason;
    return -1;
}

/* The first value of `key` among `n` pairs, or NULL. */
static const char *param_get(const char *const *keys, const char *const *values, size_t n,
                             const char *key)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(keys[i], key) == 0)
            return values[i];
    }
    return NULL;
}

/* Builds the event from `n` decoded pairs, after checking CallSid and CallStatus. */
static int normalize(const char *const *keys, const char *const *values, size_t n,
                     const webhook_request *req, webhook_result *out)
{
    const char *sid = param_get(keys, values, n, "CallSid");
    const char *status = param_get(keys, values, n, "CallStatus");
    if (!sid || !*sid)
        return refuse(out, 400, "missing_call_sid");
    if (!status || !*status)
        return refuse(out, 400, "missing_call_status");
    timing_format_rfc3339(req->received_at_ms, out->received_at, sizeof out->received_at);
    event_meta meta = {req->request_id, req->idempotency_token, out->received_at, NULL};
    if (event_encode(keys, values, n, &meta, &out->event) != CALLLOG_OK ||
        !(out->call_sid = json_text_utf8_copy(sid)) ||
        !(out->status = json_text_utf8_copy(status))) {
        webhook_result_free(out);
        return refuse(out, 503, "out_of_memory");
    }
    return 0;
}

/* Pairs of key/value pointers for normalize(), into memory owned elsewhere. */
typedef struct param_view {
    const char **keys;
    const char **values;
    size_t n;
} param_view;

static int view_alloc(param_view *v, size_t cap)
{
    v->n = 0;
    v->keys = malloc((cap + 1) * sizeof *v->keys);
    v->values = malloc((cap + 1) * sizeof *v->values);
    return v->keys && v->values ? 0 : -1;
}

static void view_free(param_view *v)
{
    free(v->keys);
    free(v->values);
}

/* Form body: parse, then verify the signature over the URL and the parameters. */
static int process_form(const webhook_limits *lim, const webhook_request *req, webhook_result *out)
{
    form params;
    form_status fs = form_parse(req->body, req->body_len, lim->max_params, &params);
    if (fs == FORM_ERR_TOO_MANY)
        return refuse(out, 413, "too_many_parameters");
    if (fs == FORM_ERR_NOMEM)
        return refuse(out, 503, "out_of_memory");
    if (fs != FORM_OK)
        return refuse(out, 400, "malformed_form_body");
    out->sig = signature_check_form(lim->tokens, lim->ntokens, req->url, &params, req->signature);
    param_view v = {0};
    int rc;
    if (out->sig != SIG_OK) {
        rc = refuse(out, 403, "bad_signature");
    } else if (view_alloc(&v, params.count) != 0) {
        rc = refuse(out, 503, "out_of_memory");
    } else {
        for (size_t i = 0; i < params.count; i++) {
            v.keys[i] = params.params[i].key;
            v.values[i] = params.params[i].value;
        }
        rc = normalize(v.keys, v.values, params.count, req, out);
    }
    view_free(&v);
    form_free(&params);
    return rc;
}

/* Points `v` at every string or integer member of a JSON object; integers are printed
 * into `nums` (32 bytes each). Nested values carry nothing the event keeps. */
static void json_to_view(json_t *obj, param_view *v, char (*nums)[32])
{
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val)
    {
        const char *s = json_string_value(val);
        if (json_is_integer(val)) {
            snprintf(nums[v->n], 32, "%" JSON_INTEGER_FORMAT, json_integer_value(val));
            s = nums[v->n];
        }
        if (!s)
            continue;
        v->keys[v->n] = key;
        v->values[v->n] = s;
        v->n++;
    }
}

/* Deepest nesting of arrays and objects a JSON body may have. Twilio's bodies are flat;
 * jansson's parser recurses once per level, and a request thread's stack is small, so
 * a deep body is refused before jansson sees it. */
#define JSON_MAX_DEPTH 32

/* 1 when the JSON text nests arrays/objects deeper than JSON_MAX_DEPTH (brackets inside
 * strings do not count). A scan, not a parse: malformed text is jansson's to refuse. */
static int json_too_deep(const char *text, size_t len)
{
    int depth = 0, in_string = 0;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = 0;
        } else if (c == '"') {
            in_string = 1;
        } else if (c == '{' || c == '[') {
            if (++depth > JSON_MAX_DEPTH)
                return 1;
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    return 0;
}

/* JSON body: verify URL signature and bodySHA256 first, then read the object. */
static int process_json(const webhook_limits *lim, const webhook_request *req, webhook_result *out)
{
    out->sig = signature_check_json(lim->tokens, lim->ntokens, req->url, req->body, req->body_len,
                                    req->signature);
    if (out->sig != SIG_OK)
        return refuse(out, 403, "bad_signature");
    if (json_too_deep(req->body, req->body_len))
        return refuse(out, 400, "json_too_deep");
    json_t *obj = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(obj)) {
        json_decref(obj);
        return refuse(out, 400, "malformed_json_body");
    }
    if (json_object_size(obj) > lim->max_params) {
        json_decref(obj);
        return refuse(out, 413, "too_many_parameters");
    }
    param_view v = {0};
    char(*nums)[32] = malloc((json_object_size(obj) + 1) * sizeof *nums);
    int rc;
    if (!nums || view_alloc(&v, json_object_size(obj)) != 0) {
        rc = refuse(out, 503, "out_of_memory");
    } else {
        json_to_view(obj, &v, nums);
        rc = normalize(v.keys, v.values, v.n, req, out);
    }
    view_free(&v);
    free(nums);
    json_decref(obj);
    return rc;
}

int webhook_process(const webhook_limits *lim, const webhook_request *req, webhook_result *out)
{
    memset(out, 0, sizeof *out);
    buffer_init(&out->event, EVENT_MAX_BYTES);
    out->sig = SIG_ERROR;
    switch (body_format_of(req->content_type)) {
    case BODY_FORM:
        return process_form(lim, req, out);
    case BODY_JSON:
        return process_json(lim, req, out);
    default:
        return refuse(out, 415, "unsupported_content_type");
    }
}

/* Frees the event text and the copied fields; see the header. */
void webhook_result_free(webhook_result *r)
{
    buffer_free(&r->event);
    free(r->call_sid);
    free(r->status);
    r->call_sid = r->status = NULL;
}
