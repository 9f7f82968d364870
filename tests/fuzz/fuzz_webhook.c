/* fuzz_webhook — libFuzzer target for the whole webhook decision (ingest/webhook.c) with
 * signatures the harness makes valid, so that the fuzzer reaches the parsers behind the
 * signature check: the JSON path (jansson, after the nesting bound) and the form path
 * through normalization into an event.
 *
 * The first byte picks the body format (even: JSON, odd: form); the rest is the body.
 * The harness signs it as Twilio would (bodySHA256 in the URL for JSON; the parsed
 * parameters for a form) with the first token. Oracles besides "no crash, no leak, no
 * stack overflow": an accepted body yields an event that event_parse reads back; a
 * refusal is 400, 413 or 415 with a reason, never 403 (the signature is valid). */
#include <openssl/sha.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/event.h"
#include "common/form.h"
#include "common/signature.h"
#include "ingest/webhook.h"

#define BASE "https://calllog.example.com/twilio/log-call"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const tokens[] = {"12345"};

/* The URL with bodySHA256 of `body` (for JSON), in `url` (256 bytes). */
static void json_url(const char *body, size_t len, char *url)
{
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)body, len, digest);
    int n = snprintf(url, 256, "%s?bodySHA256=", BASE);
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
        n += snprintf(url + n, 256 - (size_t)n, "%02x", digest[i]);
}

/* Signs the request; returns 0, or -1 when the body cannot be signed as a form. */
static int sign(int json, const char *body, size_t len, char *url, char *sig)
{
    if (json) {
        json_url(body, len, url);
        return signature_compute(tokens[0], url, NULL, sig);
    }
    snprintf(url, 256, "%s", BASE);
    form f;
    if (form_parse(body, len, 100, &f) != FORM_OK)
        return -1;
    int rc = signature_compute(tokens[0], url, &f, sig);
    form_free(&f);
    return rc;
}

/* Checks what webhook_process decided, then frees the result. */
static void check(webhook_result *res, int rc)
{
    if (rc == 0) {
        calllog_error err;
        json_t *back = event_parse(buffer_ptr(&res->event), buffer_len(&res->event), &err);
        if (!back || strcmp(event_get(back, "call_sid"), res->call_sid) != 0)
            abort(); /* an accepted event must read back, with the entry's CallSid */
        json_decref(back);
    } else if (!res->reason || buffer_ptr(&res->event) || res->http_status == 403) {
        abort();
    }
    webhook_result_free(res);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int json = data[0] % 2 == 0;
    size_t len = size - 1;
    char *body = malloc(len + 1), url[256], sig[SIGNATURE_LEN + 1];
    if (!body)
        return 0;
    memcpy(body, data + 1, len);
    body[len] = '\0';
    if (sign(json, body, len, url, sig) == 0) {
        webhook_limits lim = {tokens, 1, 100};
        webhook_request req = {
            url,   json ? "application/json" : "application/x-www-form-urlencoded",
            sig,   "idem",
            "req", 1795550400123LL,
            body,  len};
        webhook_result res;
        check(&res, webhook_process(&lim, &req, &res));
    }
    free(body);
    return 0;
}
