/* doctor_signature — `calllog-admin doctor signature`: tells which variant of a URL
 * (scheme, host, port, trailing slash, query) an X-Twilio-Signature was computed for, and
 * what PUBLIC_BASE_URL should be so that the ingest accepts it. */
#ifndef CALLLOG_DOCTOR_SIGNATURE_H
#define CALLLOG_DOCTOR_SIGNATURE_H

#include <stdio.h>

#include "common/form.h"

/* What doctor_signature_diagnose found. */
typedef struct doctor_sig_diagnosis {
    int verified;            /* the ingest, as configured, accepts this signature */
    int matched;             /* some variant of the URL produced it */
    int token;               /* which token matched: 0 primary, 1 secondary */
    char expected_url[4096]; /* what the ingest signs: PUBLIC_BASE_URL + /twilio/log-call + query */
    char signed_url[4096];   /* the variant the signature was computed for */
    char base_url[1024];     /* the PUBLIC_BASE_URL that would verify it */
    char differences[512];   /* "scheme http, not https; ..." ("" when verified) */
} doctor_sig_diagnosis;

/* Finds which variant of `url` (Twilio's request URL; a path alone borrows
 * PUBLIC_BASE_URL's origin) signed with one of `tokens[0..ntokens)` gives `signature`
 * over `params` (NULL for none, as for JSON bodies). Variants: the URL's and
 * `public_base_url`'s schemes, hosts and ports, https/http, with and without the port
 * (and the scheme's default one), the path as given, with its trailing slash toggled and
 * as /twilio/log-call, the query kept or dropped. Pure: no I/O. Returns 0 with `out`
 * filled, or -1 when `url` or `public_base_url` cannot be read (or out of memory). */
int doctor_signature_diagnose(const char *const *tokens, size_t ntokens,
                              const char *public_base_url, const char *url, const form *params,
                              const char *signature, doctor_sig_diagnosis *out);

/* `doctor signature`: reads the body in `params_file` (form-encoded, exactly as Twilio sent
 * it; a JSON body counts as no parameters), diagnoses it with TWILIO_AUTH_TOKEN (and
 * TWILIO_AUTH_TOKEN_SECONDARY) and PUBLIC_BASE_URL, prints the report. Returns 0 when the
 * ingest would accept the signature, 1 otherwise, 2 on a usage error. */
int doctor_signature_run(const char *url, const char *params_file, const char *signature, int json,
                         FILE *out);

#endif
