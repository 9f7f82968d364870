/* doctor — `calllog-admin doctor`: checks a deployment against the real services its
 * settings name, before the first call is lost to a mistake in them.
 *
 * Each check produces one result: ok, warn (it could not be checked, or works but is not
 * what the docs recommend) or FAIL, with the reason and the fix. Checks: Redis (reachable,
 * AOF on, maxmemory-policy noeviction, the consumer group), Postgres (reachable,
 * migrations applied, Supabase's API roles unable to read the ledger), RD Station (the
 * token or OAuth access token works, the configured user ids exist, the rate limiter's
 * budget left), Twilio (the REST credentials and the auth token belong to the account,
 * every incoming number's status callback points at PUBLIC_BASE_URL/twilio/log-call).
 * Read-only unless `write_test_deal` is given (one clearly marked note on that deal).
 *
 * `doctor signature` tells which variant of a URL (scheme, host, port, trailing slash,
 * query) an X-Twilio-Signature was computed for, and what PUBLIC_BASE_URL should be. */
#ifndef CALLLOG_DOCTOR_H
#define CALLLOG_DOCTOR_H

#include <stddef.h>
#include <stdio.h>

#include "form.h"

typedef enum { DOCTOR_OK = 0, DOCTOR_WARN, DOCTOR_FAIL } doctor_level;

/* One line of the report. */
typedef struct doctor_result {
    char check[48]; /* "redis.aof", "twilio.numbers", ... */
    doctor_level level;
    char reason[2048];
    char fix[1024]; /* "" when ok */
} doctor_result;

typedef struct doctor_report doctor_report;

/* An empty report (caller owns; doctor_report_free), or NULL out of memory. */
doctor_report *doctor_report_new(void);
void doctor_report_free(doctor_report *r);

/* Appends a result; `fix` may be NULL. Returns 0, or -1 out of memory. */
__attribute__((format(printf, 5, 6))) int doctor_report_add(doctor_report *r, const char *check,
                                                            doctor_level level, const char *fix,
                                                            const char *fmt, ...);

size_t doctor_report_count(const doctor_report *r);
/* The i-th result (borrowed from the report), or NULL past the end. */
const doctor_result *doctor_report_item(const doctor_report *r, size_t i);

/* 1 when some result is FAIL. */
int doctor_report_failed(const doctor_report *r);

/* Prints one line per result ("ok    check  reason" / "FAIL  check  reason — fix: …"),
 * or with `json` one object {"ok":bool,"checks":[{check,status,reason,fix}]}. */
void doctor_report_print(const doctor_report *r, int json, FILE *out);

typedef struct doctor_options {
    int json;
    const char *write_test_deal; /* NULL: read-only */
    int oauth_refresh;           /* v2 without a stored access token: refresh (rotates) */
} doctor_options;

/* Runs every check with the worker's settings and prints the report. Returns the exit
 * status: 0 when no check failed, 1 otherwise. libcurl must be initialised. */
int doctor_run(const doctor_options *o, FILE *out);

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
