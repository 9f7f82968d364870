/* http_client — a small libcurl wrapper for the third-party APIs (Twilio, RD Station).
 *
 * One client per thread (it wraps a curl easy handle and reuses its connections).
 * A request either gets an HTTP answer (any status) or fails in transport; both are
 * described by a calllog_error (error.h) whose code error_classify sets: transient or
 * permanent. API clients use http_status 0 with curl_code 0 for a 2xx they could not read
 * (transient).
 *
 * libcurl's global state must be set up once, before any thread starts: each program's
 * main() calls curl_global_init(CURL_GLOBAL_DEFAULT) at start-up (and unit tests in a
 * setup function); this module never does. Requests never follow redirects, carry the
 * User-Agent "calllog/<version>", and keep at most HTTP_CLIENT_MAX_BODY bytes of a body.
 * No message this module writes holds a URL's user info, path or query (credentials live
 * there: RD v1's ?token=, a Slack webhook's path). */
#ifndef CALLLOG_HTTP_CLIENT_H
#define CALLLOG_HTTP_CLIENT_H

#include <stddef.h>

#include "common/error.h"

/* Largest response body kept; a longer one fails the request (curl_code set). */
#define HTTP_CLIENT_MAX_BODY (4L * 1024 * 1024)

typedef struct http_client http_client;

typedef struct http_response {
    long status;
    char *body; /* NUL-terminated, malloc'ed (http_response_free) */
    size_t body_len;
    long retry_after_ms;   /* -1 when absent */
    char content_type[96]; /* the Content-Type header, "" when absent (clipped, one line) */
} http_response;

/* Creates a client with total and connect timeouts. Returns NULL out of memory. */
http_client *http_client_new(long timeout_ms, long connect_timeout_ms);

/* Frees the client. NULL is accepted. */
void http_client_free(http_client *c);

/* Performs one request. `headers` is a NULL-terminated list of "Name: value" (or NULL);
 * `body` may be NULL. `basic_auth` ("user:password") may be NULL. Returns CALLLOG_OK when
 * an answer arrived (whatever its status; `out` then owns a body), or a negative code with
 * `err` filled on a transport failure (CALLLOG_TRANSIENT, curl_code set), bad arguments
 * (CALLLOG_INVALID) or no memory (CALLLOG_NOMEM). */
int http_request(http_client *c, const char *method, const char *url, const char *const *headers,
                 const char *basic_auth, const char *body, size_t body_len, http_response *out,
                 calllog_error *err);

/* The head of a streamed answer: what a proxy needs before the body. */
typedef struct http_head {
    long status;
    long long content_length; /* -1 when not given */
    char content_type[96];    /* "" when absent or too long */
    char location[2048];      /* "" when absent or too long */
    char content_range[96];   /* "" when absent or too long */
    int accept_ranges;        /* 1 when the answer said Accept-Ranges: bytes */
} http_head;

/* The receiver of a streamed answer. `on_head` is called once, when the final answer's
 * headers are in and before any byte of its body; `on_body` for each piece of the body
 * as it arrives (pieces are at most CURL_MAX_WRITE_SIZE, 16 KiB); `on_tick` (may be NULL)
 * about once a second whatever arrives, also while waiting for the server. Each returns 0
 * to go on, or -1 to stop the transfer. */
typedef struct http_stream {
    int (*on_head)(void *arg, const http_head *head);
    int (*on_body)(void *arg, const char *data, size_t n);
    void *arg;
    int (*on_tick)(void *arg);
} http_stream;

/* GETs `url` (redirects are not followed: a 3xx is handed over with its Location) and
 * passes the answer to `s` as it arrives, so a body of any size goes through a fixed
 * amount of memory. `headers` and `basic_auth` as for http_request. Returns CALLLOG_OK
 * when the whole answer arrived (whatever its status); CALLLOG_PERMANENT when the
 * receiver stopped it; CALLLOG_TRANSIENT on a transport failure (curl_code set; a failure
 * after on_head leaves http_status set to the answer's status); CALLLOG_INVALID or
 * CALLLOG_NOMEM. Messages never hold the URL's path, query or user info. */
int http_get_stream(http_client *c, const char *url, const char *const *headers,
                    const char *basic_auth, const http_stream *s, calllog_error *err);

/* Releases the body of a response. */
void http_response_free(http_response *r);

/* Percent-encodes `s` for a query value. Returns a malloc'ed string or NULL. */
char *http_escape(const char *s);

/* Names a transport failure (curl_code != 0) after the caller's endpoint: the
 * "<METHOD> <origin>" that http_request put before the reason becomes `what` (whatever
 * follows a '?' in it is dropped), e.g. "POST /activities: Timeout was reached". Other
 * errors are left alone. */
void http_error_relabel(calllog_error *err, const char *what);

/* Writes "scheme://host[:port]" of `url` into `out`, followed by "/..." when the URL has a
 * path or query beyond "/": never the user info, path, query or fragment, which may be
 * credentials (a Slack webhook's path is its secret). For messages and warnings. */
void http_url_origin(const char *url, char *out, size_t outlen);

/* 1 when `host` (a name, or an IP literal; IPv6 with or without brackets) is loopback:
 * "localhost", 127.0.0.0/8, ::1 (or ::ffff:127.x.y.z). */
int http_host_is_loopback(const char *host);

/* 1 when `url` is plain http:// to a host that is not loopback: what it carries,
 * credentials included, crosses a network unencrypted. */
int http_url_is_plaintext_remote(const char *url);

/* Fills `err` from an answer that was not a success: status, Retry-After, the code
 * error_classify gives the status (a 2xx the caller could not use is permanent) and a
 * clipped, single-line copy of the body after `what` (e.g. "POST /activities"). */
void http_error_from_response(const http_response *r, const char *what, calllog_error *err);

#endif
