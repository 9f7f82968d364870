/* error — calllog's one error type and code space, after SQLite's result codes.
 *
 * Every fallible function returns a calllog_code: CALLLOG_OK (0); a positive code for an
 * answer that is normal but not success (not found, lease lost); a negative one for a
 * failure. So `rc < 0` always means "failed", and existing 0 / 1 / -1 call sites keep
 * their meaning. The details (message, HTTP status, curl code, Retry-After) live in a
 * calllog_error: a handle keeps its last one (ledger_error, spool_error, …) the way
 * hiredis keeps `errstr`; functions without a handle fill one the caller passes.
 *
 * Which failures are worth retrying is decided here, once (error_classify): transient =
 * transport error, timeout, 408, 429, 5xx, or an answer that could not be read; every
 * other non-2xx status is permanent. Messages never hold secrets: writers put in names
 * of endpoints, never URLs with credentials (http_client.h). */
#ifndef CALLLOG_ERROR_H
#define CALLLOG_ERROR_H

typedef enum calllog_code {
    CALLLOG_OK = 0,
    CALLLOG_NOT_FOUND = 1,  /* no such thing: a normal answer */
    CALLLOG_LEASE_LOST = 2, /* another worker holds (or took over) the call */
    CALLLOG_TRANSIENT = -1, /* try again later: network, timeout, 5xx, 429, database down */
    CALLLOG_PERMANENT = -2, /* retrying cannot help: a refusal, a rule broken */
    CALLLOG_NOMEM = -3,     /* out of memory */
    CALLLOG_INVALID = -4    /* a bad argument or bad input */
} calllog_code;

typedef struct calllog_error {
    calllog_code code;
    long http_status;    /* 0 when no usable answer arrived */
    int curl_code;       /* CURLcode, 0 when the transport worked */
    long retry_after_ms; /* from Retry-After, -1 when absent */
    char message[512];   /* short, secret-free: "POST /activities: 422 {...}" */
} calllog_error;

/* An error that says "nothing went wrong": CALLLOG_OK, no status, no Retry-After. */
void error_clear(calllog_error *e);

/* Sets `e` (when not NULL) to `code` with a printf-style message, the transport fields
 * cleared. Returns `code`, so `return error_set(e, CALLLOG_INVALID, "...")` reads well. */
calllog_code error_set(calllog_error *e, calllog_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Copies `src` into `dst` (either may be NULL: nothing happens). */
void error_copy(calllog_error *dst, const calllog_error *src);

/* The code of one HTTP exchange: CALLLOG_OK for 2xx; CALLLOG_TRANSIENT for a transport
 * failure (`curl_code` != 0), no answer at all (status 0), 408, 429 and 5xx;
 * CALLLOG_PERMANENT for any other status (1xx, 3xx — redirects are not followed —, other
 * 4xx, ≥ 600). A 401 is permanent here: RD v2's client refreshes its token itself. */
calllog_code error_classify(int curl_code, long http_status);

/* The code of an exchange the caller has judged a failure: error_classify's, except that
 * a 2xx (the API answered, but not as asked: no id, unreadable JSON) is
 * CALLLOG_PERMANENT. Never CALLLOG_OK. */
calllog_code error_classify_failure(int curl_code, long http_status);

/* 1 when retrying may help: the code is CALLLOG_TRANSIENT or CALLLOG_NOMEM. */
int error_is_transient(calllog_code code);

/* The code's name ("ok", "not_found", "lease_lost", "transient", …), for logs. */
const char *error_code_name(calllog_code code);

#endif
