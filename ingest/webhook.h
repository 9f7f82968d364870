/* webhook — turns one Twilio status callback into a normalized event, or a refusal.
 *
 * HTTP-agnostic: the server hands over the signed URL, headers and raw body; this module
 * picks the body format, parses it, verifies X-Twilio-Signature, checks the required
 * fields and builds the event (common/event.h). Keeping it free of civetweb lets the unit
 * tests and the fuzzer drive the whole decision directly. */
#ifndef CALLLOG_WEBHOOK_H
#define CALLLOG_WEBHOOK_H

#include <stddef.h>

#include "common/buffer.h"
#include "common/signature.h"

typedef struct webhook_request {
    const char *url;               /* PUBLIC_BASE_URL + raw path + raw query */
    const char *content_type;      /* may be NULL */
    const char *signature;         /* X-Twilio-Signature, may be NULL */
    const char *idempotency_token; /* I-Twilio-Idempotency-Token, may be NULL */
    const char *request_id;
    long long received_at_ms;
    const char *body;
    size_t body_len;
} webhook_request;

typedef struct webhook_limits {
    const char *const *tokens; /* auth tokens: primary, then secondary */
    size_t ntokens;
    size_t max_params;
} webhook_limits;

typedef struct webhook_result {
    int http_status;    /* 0 when accepted, else 400, 403, 413 or 415 */
    const char *reason; /* static text for the log and metrics label, e.g. "bad_signature" */
    sig_result sig;     /* the signature check's outcome when it ran */
    /* When accepted (webhook_result_free releases them): */
    buffer event;   /* the normalized event's JSON text (common/event.h) */
    char *call_sid; /* its CallSid and CallStatus as the event holds them (UTF-8 repaired) */
    char *status;
    char received_at[40]; /* when the ingest received it, RFC 3339 */
} webhook_result;

/* Decides on one request. Always fills `out` (release it with webhook_result_free);
 * returns 0 when accepted, -1 otherwise. */
int webhook_process(const webhook_limits *lim, const webhook_request *req, webhook_result *out);

/* Frees what an accepted result holds; harmless on a refused one. */
void webhook_result_free(webhook_result *r);

#endif
