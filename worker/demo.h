/* demo — `calllog-admin demo call`: one call through the whole pipeline, in the sandbox.
 *
 * The demo (deploy/run-local.sh demo, docker compose --profile demo) runs the real
 * ingest and workers against deploy/sandbox/sandbox.py, which stands in for Twilio's
 * REST API and RD Station CRM. This asks the sandbox to place a call — it does what
 * Twilio does: lists the call and sends its signed status callbacks to the ingest — then
 * waits for the note to appear in the sandbox's CRM and prints it with its deal (and, for a
 * missed inbound call, the follow-up task the workers open). It
 * talks only to the sandbox (CALLLOG_SANDBOX_URL): it never touches a real account. */
#ifndef CALLLOG_DEMO_H
#define CALLLOG_DEMO_H

#include <stdio.h>
#include "common/error.h"

/* What the call looks like (NULL / 0: the sandbox's defaults). */
typedef struct demo_call_options {
    const char *sandbox_url; /* CALLLOG_SANDBOX_URL, e.g. http://127.0.0.1:8091 */
    const char *from, *to;
    const char *direction; /* "inbound" or "outbound" */
    const char *status;    /* completed, no-answer, busy, failed, canceled */
    long duration_s;       /* -1: default */
    long wait_s;           /* how long to wait for the note */
} demo_call_options;

/* Parses `demo call` options argv[0..argc) into `o` (whose sandbox_url the caller sets).
 * Returns 0, or -1 with a message in `err`. */
int demo_parse_args(int argc, char **argv, demo_call_options *o, calllog_error *err);

/* Places the call and prints the note to `out` (why there is none to stderr). Returns the exit
 * status: 0 when the note arrived, 1 otherwise. */
int demo_call(const demo_call_options *o, FILE *out);

#endif
