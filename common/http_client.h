/* http_client — a small libcurl wrapper for the third-party APIs (Twilio, RD Station).
 *
 * One client per thread (it wraps a curl easy handle and reuses its connections).
 * A request either gets an HTTP answer (any status) or fails in transport; both are
 * described by `api_error`, which the retry policy classifies.
 *
 * libcurl's global state must be set up once, before any thread starts: each program's
 * main() calls curl_global_init(CURL_GLOBAL_DEFAULT) at start-up (and unit tests in a
 * setup function); this module never does. Requests never follow redirects, carry the
 * User-Agent "calllog/<version>", and keep at most HTTP_CLIENT_MAX_BODY bytes of a body. */
#ifndef CALLLOG_HTTP_CLIENT_H
#define CALLLOG_HTTP_CLIENT_H

#include <stddef.h>

/* Largest response body kept; a longer one fails the request (curl_code set). */
#define HTTP_CLIENT_MAX_BODY (4L * 1024 * 1024)

typedef struct http_client http_client;

/* What went wrong with one API call, for classification, logs and the dead stream. */
typedef struct api_error {
    long http_status;    /* 0 when no answer arrived */
    int curl_code;       /* CURLcode, 0 when the transport worked */
    long retry_after_ms; /* from Retry-After, -1 when absent */
    char message[512];   /* short, secret-free: "POST /activities: 422 {...}" */
} api_error;

typedef struct http_response {
    long status;
    char *body; /* NUL-terminated, malloc'ed (http_response_free) */
    size_t body_len;
    long retry_after_ms; /* -1 when absent */
} http_response;

/* Creates a client with total and connect timeouts. Returns NULL out of memory. */
http_client *http_client_new(long timeout_ms, long connect_timeout_ms);

/* Frees the client. NULL is accepted. */
void http_client_free(http_client *c);

/* Performs one request. `headers` is a NULL-terminated list of "Name: value" (or NULL);
 * `body` may be NULL. `basic_auth` ("user:password") may be NULL. Returns 0 when an
 * answer arrived (whatever its status; `out` then owns a body), or -1 with `err` filled
 * (curl_code set) on a transport failure. */
int http_request(http_client *c, const char *method, const char *url, const char *const *headers,
                 const char *basic_auth, const char *body, size_t body_len, http_response *out,
                 api_error *err);

/* Releases the body of a response. */
void http_response_free(http_response *r);

/* Percent-encodes `s` for a query value. Returns a malloc'ed string or NULL. */
char *http_escape(const char *s);

/* Fills `err` from an answer that was not a success: status, Retry-After and a clipped,
 * single-line copy of the body after `what` (e.g. "POST /activities"). */
void http_error_from_response(const http_response *r, const char *what, api_error *err);

#endif
