/* http_client — a small libcurl wrapper for the third-party APIs (Twilio, RD Station).
 *
 * Why a wrapper: both API clients need the same things from libcurl — one easy handle per
 * thread whose connections are kept alive between requests, bounded timeouts, no
 * redirects, no signals (the worker is multi-threaded), a capped in-memory body, the
 * Retry-After header turned into milliseconds, and error descriptions that are safe to
 * log and to store on the dead stream. The last point matters: RD Station v1 carries its
 * token in the query string, so nothing here ever copies a URL's query into a message.
 *
 * The handle is reset (curl_easy_reset keeps live connections and the DNS cache) and
 * fully reconfigured before every request, so no option leaks from one request into the
 * next. curl_global_init is the caller's job (see the header). */
#include "http_client.h"

#include <ctype.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define HTTP_USER_AGENT "calllog/" CALLLOG_VERSION
/* Longest Retry-After kept (1 day), as worker/retry_policy's parser does. */
#define HTTP_RETRY_AFTER_MAX_MS 86400000L

struct http_client {
    CURL *easy;
    long timeout_ms;
    long connect_timeout_ms;
    char errbuf[CURL_ERROR_SIZE];
};

/* The body being received and the headers we care about, for one request. */
typedef struct http_sink {
    char *buf;
    size_t len;
    size_t cap;
    int overflow;
    long retry_after_ms;
} http_sink;

/* Creates a client; the easy handle is created here and reused for every request. */
http_client *http_client_new(long timeout_ms, long connect_timeout_ms)
{
    http_client *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->easy = curl_easy_init();
    if (c->easy == NULL) {
        free(c);
        return NULL;
    }
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : 10000;
    c->connect_timeout_ms = connect_timeout_ms > 0 ? connect_timeout_ms : c->timeout_ms;
    return c;
}

/* Frees the client and closes its connections. */
void http_client_free(http_client *c)
{
    if (c == NULL)
        return;
    curl_easy_cleanup(c->easy);
    free(c);
}

/* Releases the body of a response and empties it. */
void http_response_free(http_response *r)
{
    if (r == NULL)
        return;
    free(r->body);
    r->body = NULL;
    r->body_len = 0;
}

/* libcurl write callback: appends to the sink, refusing to grow past the cap. */
static size_t sink_write(char *data, size_t size, size_t nmemb, void *arg)
{
    http_sink *s = arg;
    size_t n = size * nmemb;
    if (n > (size_t)HTTP_CLIENT_MAX_BODY - s->len) {
        s->overflow = 1;
        return 0; /* makes curl stop with CURLE_WRITE_ERROR */
    }
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->len + n + 1)
            cap *= 2;
        char *nb = realloc(s->buf, cap);
        if (nb == NULL)
            return 0;
        s->buf = nb;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, data, n);
    s->len += n;
    s->buf[s->len] = '\0';
    return n;
}

/* Parses a Retry-After value — delta-seconds or any HTTP-date (curl_getdate reads all
 * three forms) — into milliseconds from `now`: 0 for a past date, at most a day, -1 when
 * malformed. (common/ cannot use worker/retry_policy, whose parser has the same rules.) */
static long http_parse_retry_after(const char *v, time_t now)
{
    if (*v == '\0')
        return -1;
    if (strspn(v, "0123456789") == strlen(v)) {
        if (strlen(v) > 9)
            return HTTP_RETRY_AFTER_MAX_MS;
        long secs = strtol(v, NULL, 10);
        return secs * 1000 > HTTP_RETRY_AFTER_MAX_MS ? HTTP_RETRY_AFTER_MAX_MS : secs * 1000;
    }
    time_t when = curl_getdate(v, NULL);
    if (when == (time_t)-1)
        return -1;
    if (when <= now)
        return 0;
    if ((double)(when - now) * 1000.0 > (double)HTTP_RETRY_AFTER_MAX_MS)
        return HTTP_RETRY_AFTER_MAX_MS;
    return (long)(when - now) * 1000;
}

/* libcurl header callback: remembers Retry-After of the final response. A new status
 * line (e.g. after "100 Continue") forgets what an earlier response said. */
static size_t sink_header(char *data, size_t size, size_t nitems, void *arg)
{
    http_sink *s = arg;
    size_t n = size * nitems;
    static const char name[] = "retry-after:";
    if (n >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        s->retry_after_ms = -1;
        return n;
    }
    if (n > sizeof name - 1 && strncasecmp(data, name, sizeof name - 1) == 0) {
        char value[128];
        size_t start = sizeof name - 1, end = n;
        while (start < end && isspace((unsigned char)data[start]))
            start++;
        while (end > start && isspace((unsigned char)data[end - 1]))
            end--;
        if (end - start < sizeof value) {
            memcpy(value, data + start, end - start);
            value[end - start] = '\0';
            s->retry_after_ms = http_parse_retry_after(value, time(NULL));
        }
    }
    return n;
}

/* Copies the path of `url` (no scheme, host, user info, query or fragment) into `out`. */
static void url_path(const char *url, char *out, size_t outlen)
{
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    p += strcspn(p, "/?#");
    size_t n = *p == '/' ? strcspn(p, "?#") : 0;
    if (n == 0) {
        snprintf(out, outlen, "/");
        return;
    }
    if (n >= outlen)
        n = outlen - 1;
    memcpy(out, p, n);
    out[n] = '\0';
}

/* Fills `err` for a transport failure: "<METHOD> <path>: <curl's reason>". curl's own
 * detail text is used only when it does not repeat the URL's query. */
static void transport_error(http_client *c, const char *method, const char *url, CURLcode rc,
                            const http_sink *sink, api_error *err)
{
    char path[256];
    const char *query = strchr(url, '?');
    const char *why = c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc);
    if (query != NULL && query[1] != '\0' && strstr(why, query + 1) != NULL)
        why = curl_easy_strerror(rc);
    if (sink->overflow)
        why = "response body over the size limit";
    url_path(url, path, sizeof path);
    err->http_status = 0;
    err->curl_code = (int)rc;
    err->retry_after_ms = -1;
    snprintf(err->message, sizeof err->message, "%.16s %.200s: %.280s", method, path, why);
}

/* Sets every option of one request on the (freshly reset) handle. Returns CURLE_OK or
 * the first option that failed. */
static CURLcode configure(http_client *c, const char *method, const char *url,
                          struct curl_slist *hdrs, const char *basic_auth, const char *body,
                          size_t body_len, http_sink *sink)
{
    CURL *h = c->easy;
    CURLcode rc = CURLE_OK;
#define SETOPT(opt, val)                                                                           \
    do {                                                                                           \
        if (rc == CURLE_OK)                                                                        \
            rc = curl_easy_setopt(h, opt, val);                                                    \
    } while (0)
    SETOPT(CURLOPT_URL, url);
    SETOPT(CURLOPT_NOSIGNAL, 1L);
    SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
    SETOPT(CURLOPT_TIMEOUT_MS, c->timeout_ms);
    SETOPT(CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
    SETOPT(CURLOPT_USERAGENT, HTTP_USER_AGENT);
    SETOPT(CURLOPT_ERRORBUFFER, c->errbuf);
    SETOPT(CURLOPT_WRITEFUNCTION, sink_write);
    SETOPT(CURLOPT_WRITEDATA, sink);
    SETOPT(CURLOPT_HEADERFUNCTION, sink_header);
    SETOPT(CURLOPT_HEADERDATA, sink);
    SETOPT(CURLOPT_TCP_KEEPALIVE, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
    SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
#else
    SETOPT(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    if (hdrs != NULL)
        SETOPT(CURLOPT_HTTPHEADER, hdrs);
    if (basic_auth != NULL) {
        SETOPT(CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        SETOPT(CURLOPT_USERPWD, basic_auth);
    }
    /* A POST is not idempotent: never send it on a reused connection, which curl would
     * silently re-send on a fresh one if the old one turned out dead (the first may have
     * been processed). */
    SETOPT(CURLOPT_FRESH_CONNECT, strcmp(method, "POST") == 0 ? 1L : 0L);
    if (strcmp(method, "GET") == 0 && body == NULL) {
        SETOPT(CURLOPT_HTTPGET, 1L);
    } else if (strcmp(method, "HEAD") == 0) {
        SETOPT(CURLOPT_NOBODY, 1L);
    } else {
        if (strcmp(method, "POST") != 0)
            SETOPT(CURLOPT_CUSTOMREQUEST, method);
        if (body != NULL || strcmp(method, "GET") != 0) {
            SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(body ? body_len : 0));
            SETOPT(CURLOPT_POSTFIELDS, body ? body : "");
        }
    }
#undef SETOPT
    return rc;
}

/* Builds the header list: the caller's headers plus "Expect:" (no 100-continue round
 * trip). Returns NULL out of memory. */
static struct curl_slist *build_headers(const char *const *headers)
{
    struct curl_slist *list = curl_slist_append(NULL, "Expect:");
    for (size_t i = 0; list != NULL && headers != NULL && headers[i] != NULL; i++) {
        struct curl_slist *next = curl_slist_append(list, headers[i]);
        if (next == NULL) {
            curl_slist_free_all(list);
            return NULL;
        }
        list = next;
    }
    return list;
}

/* Performs one request; see the header. */
int http_request(http_client *c, const char *method, const char *url, const char *const *headers,
                 const char *basic_auth, const char *body, size_t body_len, http_response *out,
                 api_error *err)
{
    http_sink sink = {NULL, 0, 0, 0, -1};
    struct curl_slist *hdrs;
    CURLcode rc;

    memset(out, 0, sizeof *out);
    out->retry_after_ms = -1;
    memset(err, 0, sizeof *err);
    err->retry_after_ms = -1;
    if (c == NULL || method == NULL || url == NULL) {
        err->curl_code = CURLE_BAD_FUNCTION_ARGUMENT;
        snprintf(err->message, sizeof err->message, "http_request: bad arguments");
        return -1;
    }
    hdrs = build_headers(headers);
    if (hdrs == NULL) {
        err->curl_code = CURLE_OUT_OF_MEMORY;
        snprintf(err->message, sizeof err->message, "%s: out of memory", method);
        return -1;
    }
    curl_easy_reset(c->easy);
    c->errbuf[0] = '\0';
    rc = configure(c, method, url, hdrs, basic_auth, body, body_len, &sink);
    if (rc == CURLE_OK)
        rc = curl_easy_perform(c->easy);
    if (rc != CURLE_OK) {
        transport_error(c, method, url, rc, &sink, err);
        curl_slist_free_all(hdrs);
        free(sink.buf);
        return -1;
    }
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &out->status);
    curl_slist_free_all(hdrs);
    if (sink.buf == NULL && (sink.buf = calloc(1, 1)) == NULL) {
        err->curl_code = CURLE_OUT_OF_MEMORY;
        snprintf(err->message, sizeof err->message, "%s: out of memory", method);
        return -1;
    }
    out->body = sink.buf;
    out->body_len = sink.len;
    out->retry_after_ms = sink.retry_after_ms;
    return 0;
}

/* Percent-encodes everything but RFC 3986's unreserved characters. */
char *http_escape(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    if (s == NULL)
        return NULL;
    size_t n = strlen(s);
    char *out = malloc(n * 3 + 1), *o = out;
    if (out == NULL)
        return NULL;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (isalnum(*p) || *p == '-' || *p == '.' || *p == '_' || *p == '~') {
            *o++ = (char)*p;
        } else {
            *o++ = '%';
            *o++ = hex[*p >> 4];
            *o++ = hex[*p & 15];
        }
    }
    *o = '\0';
    return out;
}

/* Appends `src` (at most `n` bytes) to `dst` as one line: control characters become
 * spaces and runs of blanks collapse into one. Stops when `dst` is full. */
static void append_one_line(char *dst, size_t dstlen, const char *src, size_t n)
{
    size_t len = strlen(dst);
    int last_blank = len > 0 && dst[len - 1] == ' ';
    for (size_t i = 0; i < n && src[i] != '\0' && len + 1 < dstlen; i++) {
        unsigned char ch = (unsigned char)src[i];
        int blank = ch < 0x20 || ch == 0x7f || ch == ' ';
        if (blank && last_blank)
            continue;
        dst[len++] = blank ? ' ' : (char)ch;
        last_blank = blank;
    }
    while (len > 0 && dst[len - 1] == ' ')
        len--;
    dst[len] = '\0';
}

/* Fills `err` from a non-success answer; the message never includes a query string
 * (whatever follows '?' in `what` is dropped). */
void http_error_from_response(const http_response *r, const char *what, api_error *err)
{
    size_t wlen = what ? strcspn(what, "?") : 0;
    memset(err, 0, sizeof *err);
    err->http_status = r ? r->status : 0;
    err->retry_after_ms = r ? r->retry_after_ms : -1;
    snprintf(err->message, sizeof err->message, "%.*s: %ld", (int)(wlen > 200 ? 200 : wlen),
             what ? what : "", err->http_status);
    if (r != NULL && r->body != NULL && r->body_len > 0) {
        size_t len = strlen(err->message);
        if (len + 2 < sizeof err->message) {
            err->message[len] = ' ';
            err->message[len + 1] = '\0';
            append_one_line(err->message, sizeof err->message, r->body, r->body_len);
        }
    }
    size_t len = strlen(err->message);
    if (len == sizeof err->message - 1) /* clipped: say so */
        memcpy(err->message + len - 3, "...", 3);
}
