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
 * The report is doctor_report.h; `doctor signature` is doctor_signature.h. */
#ifndef CALLLOG_DOCTOR_H
#define CALLLOG_DOCTOR_H

#include <stdio.h>

typedef struct doctor_options {
    int json;
    const char *write_test_deal; /* NULL: read-only */
    int oauth_refresh;           /* v2 without a stored access token: refresh (rotates) */
} doctor_options;

/* Runs every check with the worker's settings and prints the report. Returns the exit
 * status: 0 when no check failed, 1 otherwise. libcurl must be initialised. */
int doctor_run(const doctor_options *o, FILE *out);

#endif
