/* twilio_rest — Twilio's REST API: a call and its recordings (enrichment), and the
 * account's Calls list (reconciliation, reconcile.h).
 *
 * GET /2010-04-01/Accounts/{AC}/Calls/{CA}.json, …/Recordings.json and …/Calls.json with
 * HTTP Basic (API key SID:secret, or AccountSid:AuthToken). 429 and 5xx are retried a few times
 * with backoff inside the call; any failure leaves the fields empty, and the caller goes
 * on with the webhook's own data — enrichment never blocks a note. */
#ifndef CALLLOG_TWILIO_REST_H
#define CALLLOG_TWILIO_REST_H

#include <stddef.h>
#include <time.h>

#include "common/error.h"
#include "common/http_client.h"
#include "common/twilio_api.h"

typedef struct twilio_call {
    time_t start_time; /* 0 when unknown */
    time_t end_time;
    long duration_s; /* -1 when unknown */
    char price[32];  /* "" when unknown, e.g. "-0.0130" */
    char price_unit[8];
    char answered_by[32];
    char caller_name[128];
    char recording_url[512]; /* media URL of the first completed recording, from its SID */
    int recording_pending;   /* 1: no completed recording yet, but one is processing */
} twilio_call;

typedef struct twilio_client twilio_client;

/* `s` must outlive the client. Returns NULL out of memory. */
twilio_client *twilio_client_new(const twilio_settings *s);
void twilio_client_free(twilio_client *c);

/* Fetches the call and its first completed recording. Returns 0 with `out` filled, or -1 with
 * `err` filled (`out` then holds whatever was learnt, possibly nothing). */
int twilio_fetch_call(twilio_client *c, const char *call_sid, twilio_call *out, calllog_error *err);

/* One call of a Calls list page. Strings point into the page (NULL when absent or null). */
typedef struct twilio_call_summary {
    const char *sid, *parent_call_sid, *account_sid, *status, *direction, *from, *to;
    const char *duration, *end_time, *caller_name, *forwarded_from, *answered_by, *api_version;
    time_t started; /* start_time, else date_created; 0 when unknown */
    time_t ended;   /* end_time; 0 when the call has not ended */
} twilio_call_summary;

typedef struct twilio_calls_page {
    twilio_call_summary *calls;
    size_t n;
    const char *next_page_uri; /* NULL on the last page */
    void *doc;                 /* the parsed answer the strings point into */
} twilio_calls_page;

/* Fetches one page of the account's calls, newest first. The first page (`page_uri`
 * NULL) asks for calls that ended on or after the UTC day of `ended_since` (Twilio's
 * filters have day granularity: the caller filters finer), `page_size` (1–1000) at a
 * time; the next ones are `next_page_uri` of the page before, which must be a path of
 * this account's Calls list. Returns 0 with `out` filled (twilio_calls_page_free), or -1
 * with `err` filled. */
int twilio_list_calls(twilio_client *c, const char *page_uri, time_t ended_since, int page_size,
                      twilio_calls_page *out, calllog_error *err);

/* Frees a page's contents (not the struct). */
void twilio_calls_page_free(twilio_calls_page *p);

#endif
