/* signature — X-Twilio-Signature verification exactly as Twilio's SDKs do it.
 *
 * String to sign: the URL Twilio requested (PUBLIC_BASE_URL + raw path + raw query, never
 * re-encoded), then every POST parameter sorted by key (strcmp order), key followed by
 * value; a repeated key contributes each distinct value once, values sorted. HMAC-SHA1
 * keyed with the auth token, base64. A request passes when any token (primary, secondary
 * during a rotation) matches the URL as given, without its port, or with the scheme's
 * default port (:443/:80) — as every SDK accepts. JSON bodies are signed over the URL only
 * and carry `bodySHA256` (hex SHA-256 of the raw body) in the query, which must match.
 * Comparisons are constant-time. See ../shared/reference/twilio.md. */
#ifndef CALLLOG_SIGNATURE_H
#define CALLLOG_SIGNATURE_H

#include <stddef.h>

#include "common/form.h"

#define SIGNATURE_LEN 28 /* base64 of a 20-byte HMAC-SHA1, with padding */

typedef enum {
    SIG_OK = 0,
    SIG_MISSING,            /* no or empty X-Twilio-Signature header */
    SIG_MISMATCH,           /* no token and URL form produced the header's value */
    SIG_BODY_HASH_MISSING,  /* JSON body without bodySHA256 in the query */
    SIG_BODY_HASH_MISMATCH, /* bodySHA256 differs from the body's SHA-256 */
    SIG_ERROR               /* out of memory or a crypto failure */
} sig_result;

/* Computes the signature of `url` + `params` (NULL or empty for none) with `token`
 * into `out` (SIGNATURE_LEN + 1 bytes). Returns 0 or -1. */
int signature_compute(const char *token, const char *url, const form *params, char *out);

/* Checks a form-encoded request. `tokens` holds `ntokens` non-empty auth tokens. */
sig_result signature_check_form(const char *const *tokens, size_t ntokens, const char *url,
                                const form *params, const char *header);

/* Checks a JSON request: the URL's signature with no params, and its bodySHA256. */
sig_result signature_check_json(const char *const *tokens, size_t ntokens, const char *url,
                                const char *body, size_t len, const char *header);

/* A short English reason for a result. */
const char *signature_strerror(sig_result r);

#endif
