/* http_client — a small libcurl wrapper for the third-party APIs (Twilio, RD Station).
 *
 * Why a wrapper: both API clients need the same things from libcurl — one easy handle per
 * thread whose connections are kept alive between requests, bounded timeouts, no
 * redirects, no signals (the worker is multi-threaded), a capped in-memory body, the
 * Retry-After header turned into milliseconds, and error descriptions that are safe to
 * log and to store on the dead stream. The last point matters: RD Station v1 carries its
 * token in the query string and a Slack webhook's path is its secret, so a transport
 * error names only the URL's scheme, host and port ("POST https://hooks.slack.com/...:
 * Timeout was reached"), never its user info, path or query; API clients that know a
 * harmless name for the endpoint put it back with http_error_relabel.
 *
 * The handle is reset (curl_easy_reset keeps live connections and the DNS cache) and
 * fully reconfigured before every request, so no option leaks from one request into the
 * next. curl_global_init is the caller's job (see the header). */
#include "common/http_client.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/buffer.h"
#include "common/timing.h"

#define HTTP_USER_AGENT "calllog/" CALLLOG_VERSION

struct http_client {
    CURL *easy;
    long timeout_ms;
    long connect_timeout_ms;
    char errbuf[CURL_ERROR_SIZE];
};

/* The body being received and the headers we care about, for one request. */
typedef struct http_sink {
    buffer body; /* at most HTTP_CLIENT_MAX_BODY bytes */
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

/* libcurl write callback: appends to the sink's body, refusing to grow past the cap. */
static size_t sink_write(char *data, size_t size, size_t nmemb, void *arg)
{
    http_sink *s = arg;
    size_t n = size * nmemb;
    if (buffer_add(&s->body, data, n) != CALLLOG_OK)
        return 0; /* makes curl stop with CURLE_WRITE_ERROR */
    return n;
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
            s->retry_after_ms = timing_parse_retry_after(value, time(NULL));
        }
    }
    return n;
}

/* The pieces of a URL that messages and warnings need. Pointers into the URL. */
typedef struct url_parts {
    const char *scheme; /* NULL when the URL has no "scheme://" */
    size_t scheme_len;
    const char *userinfo; /* NULL when none */
    size_t userinfo_len;
    const char *hostport; /* host[:port], IPv6 in brackets */
    size_t hostport_len;
    const char *rest; /* path, query and fragment (from the first '/', '?' or '#') */
} url_parts;

/* Splits `url` into its parts. */
static void url_split(const char *url, url_parts *u)
{
    const char *sep = strstr(url, "://");
    const char *auth = sep ? sep + 3 : url;
    const char *end = auth + strcspn(auth, "/?#");
    const char *at = NULL;
    for (const char *q = auth; q < end; q++)
        if (*q == '@')
            at = q;
    u->scheme = sep ? url : NULL;
    u->scheme_len = sep ? (size_t)(sep - url) : 0;
    u->userinfo = at ? auth : NULL;
    u->userinfo_len = at ? (size_t)(at - auth) : 0;
    u->hostport = at ? at + 1 : auth;
    u->hostport_len = (size_t)(end - u->hostport);
    u->rest = end;
}

/* Writes "scheme://host[:port]" of `url` — never its user info, path, query or fragment,
 * which may be credentials (a Slack webhook's path is its secret) — followed by "/..."
 * when the URL has more than a bare "/" after the host. */
void http_url_origin(const char *url, char *out, size_t outlen)
{
    url_parts u;
    if (url == NULL) {
        snprintf(out, outlen, "(no URL)");
        return;
    }
    url_split(url, &u);
    const char *more = u.rest[0] != '\0' && strcmp(u.rest, "/") != 0 ? "/..." : "";
    if (u.scheme != NULL)
        snprintf(out, outlen, "%.*s://%.*s%s", (int)u.scheme_len, u.scheme, (int)u.hostport_len,
                 u.hostport, more);
    else
        snprintf(out, outlen, "%.*s%s", (int)u.hostport_len, u.hostport, more);
}

/* 1 when `text` holds the `n` bytes at `part` (n > 1: a lone "/" says nothing). */
static int mentions(const char *text, const char *part, size_t n)
{
    if (part == NULL || n < 2)
        return 0;
    for (const char *t = strchr(text, part[0]); t != NULL; t = strchr(t + 1, part[0]))
        if (strncmp(t, part, n) == 0)
            return 1;
    return 0;
}

/* Fills `err` for a transport failure: "<METHOD> <origin>: <curl's reason>". The URL's
 * path, query and user info never appear: curl's own detail text is used only when it
 * repeats none of them (otherwise its generic text for the code is). */
static void transport_error(http_client *c, const char *method, const char *url, CURLcode rc,
                            const http_sink *sink, calllog_error *err)
{
    char origin[160];
    url_parts u;
    const char *why = c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc);
    url_split(url, &u);
    const char *query = strchr(u.rest, '?');
    if (mentions(why, u.rest, strcspn(u.rest, "?#")) ||
        (query != NULL && mentions(why, query + 1, strcspn(query + 1, "#"))) ||
        mentions(why, u.userinfo, u.userinfo_len))
        why = curl_easy_strerror(rc);
    if (sink != NULL && buffer_error(&sink->body) == CALLLOG_INVALID)
        why = "response body over the size limit";
    http_url_origin(url, origin, sizeof origin);
    error_set(err, CALLLOG_TRANSIENT, "%.16s %.160s: %.300s", method, origin, why);
    err->curl_code = (int)rc;
}

/* 1 when `host` is loopback; see the header. */
int http_host_is_loopback(const char *host)
{
    char buf[128];
    struct in_addr v4;
    struct in6_addr v6;
    size_t n = host ? strlen(host) : 0;
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
        host++;
        n -= 2;
    }
    if (n == 0 || n >= sizeof buf)
        return 0;
    memcpy(buf, host, n);
    buf[n] = '\0';
    if (strcasecmp(buf, "localhost") == 0 || strcasecmp(buf, "localhost.") == 0)
        return 1;
    if (inet_pton(AF_INET, buf, &v4) == 1)
        return (ntohl(v4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, buf, &v6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&v6) || (IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127);
    return 0;
}

/* 1 when `url` is plain http:// to a host outside loopback; see the header. */
int http_url_is_plaintext_remote(const char *url)
{
    url_parts u;
    char host[128];
    if (url == NULL)
        return 0;
    url_split(url, &u);
    if (u.scheme == NULL || u.scheme_len != 4 || strncasecmp(u.scheme, "http", 4) != 0)
        return 0;
    size_t n = u.hostport_len;
    if (n > 0 && u.hostport[0] == '[') { /* [v6]:port */
        const char *close = memchr(u.hostport, ']', n);
        n = close ? (size_t)(close - u.hostport) + 1 : n;
    } else {
        const char *colon = memchr(u.hostport, ':', n);
        n = colon ? (size_t)(colon - u.hostport) : n;
    }
    if (n >= sizeof host)
        return 1;
    memcpy(host, u.hostport, n);
    host[n] = '\0';
    return !http_host_is_loopback(host);
}

/* Sets every option of one request on the (freshly reset) handle. Returns CURLE_OK or
 * the first option that failed. */
static CURLcode configure(http_client *c, const char *method, const char *url,
                          struct curl_slist *hdrs, const char *basic_auth, const char *body,
                          size_t body_len, curl_write_callback on_write,
                          curl_write_callback on_header, void *sink)
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
    SETOPT(CURLOPT_WRITEFUNCTION, on_write);
    SETOPT(CURLOPT_WRITEDATA, sink);
    SETOPT(CURLOPT_HEADERFUNCTION, on_header);
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
                 calllog_error *err)
{
    http_sink sink;
    struct curl_slist *hdrs;
    CURLcode rc;

    memset(out, 0, sizeof *out);
    out->retry_after_ms = -1;
    error_clear(err);
    buffer_init(&sink.body, (size_t)HTTP_CLIENT_MAX_BODY);
    sink.retry_after_ms = -1;
    if (c == NULL || method == NULL || url == NULL) {
        error_set(err, CALLLOG_INVALID, "http_request: bad arguments");
        err->curl_code = CURLE_BAD_FUNCTION_ARGUMENT;
        return CALLLOG_INVALID;
    }
    hdrs = build_headers(headers);
    if (hdrs == NULL) {
        error_set(err, CALLLOG_NOMEM, "%s: out of memory", method);
        err->curl_code = CURLE_OUT_OF_MEMORY;
        return CALLLOG_NOMEM;
    }
    curl_easy_reset(c->easy);
    c->errbuf[0] = '\0';
    rc =
        configure(c, method, url, hdrs, basic_auth, body, body_len, sink_write, sink_header, &sink);
    if (rc == CURLE_OK)
        rc = curl_easy_perform(c->easy);
    if (rc != CURLE_OK) {
        transport_error(c, method, url, rc, &sink, err);
        curl_slist_free_all(hdrs);
        buffer_free(&sink.body);
        return err->code;
    }
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &out->status);
    const char *ctype = NULL;
    if (curl_easy_getinfo(c->easy, CURLINFO_CONTENT_TYPE, &ctype) == CURLE_OK && ctype != NULL)
        append_one_line(out->content_type, sizeof out->content_type, ctype, strlen(ctype));
    curl_slist_free_all(hdrs);
    out->body_len = buffer_len(&sink.body);
    out->body = buffer_take(&sink.body);
    if (out->body == NULL) {
        out->body_len = 0;
        error_set(err, CALLLOG_NOMEM, "%s: out of memory", method);
        err->curl_code = CURLE_OUT_OF_MEMORY;
        return CALLLOG_NOMEM;
    }
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

/* Fills `err` from a non-success answer; the message never includes a query string
 * (whatever follows '?' in `what` is dropped). */
void http_error_from_response(const http_response *r, const char *what, calllog_error *err)
{
    size_t wlen = what ? strcspn(what, "?") : 0;
    error_clear(err);
    err->http_status = r ? r->status : 0;
    err->retry_after_ms = r ? r->retry_after_ms : -1;
    err->code = error_classify_failure(0, err->http_status);
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

/* Names a transport failure after the caller's endpoint; see the header. */
void http_error_relabel(calllog_error *err, const char *what)
{
    char reason[sizeof err->message];
    const char *sep = err->curl_code != 0 ? strstr(err->message, ": ") : NULL;
    size_t wlen = what ? strcspn(what, "?") : 0;
    if (sep == NULL || wlen == 0)
        return;
    snprintf(reason, sizeof reason, "%s", sep + 2);
    snprintf(err->message, sizeof err->message, "%.*s: %.300s", (int)(wlen > 200 ? 200 : wlen),
             what, reason);
}

/* ---- streamed GET ------------------------------------------------------------------ */

/* One streamed request: the receiver, the head being gathered, and whether it stopped. */
typedef struct stream_sink {
    const http_stream *s;
    http_head head;
    int head_sent;
    int stopped; /* the receiver asked to stop */
} stream_sink;

/* Copies the value of header line `data` (`n` bytes, name of `name_len` included) into
 * `out` without surrounding blanks; "" when it does not fit. */
static void header_value(const char *data, size_t n, size_t name_len, char *out, size_t outlen)
{
    size_t start = name_len, end = n;
    while (start < end && isspace((unsigned char)data[start]))
        start++;
    while (end > start && isspace((unsigned char)data[end - 1]))
        end--;
    if (end - start >= outlen) {
        out[0] = '\0';
        return;
    }
    memcpy(out, data + start, end - start);
    out[end - start] = '\0';
}

/* Hands the gathered head to the receiver once. Returns 0 to go on, -1 to stop. */
static int stream_send_head(stream_sink *k)
{
    if (k->head_sent)
        return 0;
    k->head_sent = 1;
    if (k->s->on_head(k->s->arg, &k->head) != 0) {
        k->stopped = 1;
        return -1;
    }
    return 0;
}

/* libcurl header callback of a streamed GET: gathers the status, Content-Length,
 * Content-Type, Location, Content-Range and Accept-Ranges of the final answer, and hands them over
 * at its blank line (an interim 1xx answer is forgotten). */
static size_t stream_header(char *data, size_t size, size_t nitems, void *arg)
{
    stream_sink *k = arg;
    size_t n = size * nitems;
    char value[32];
    if (n >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        const char *sp = memchr(data, ' ', n);
        memset(&k->head, 0, sizeof k->head);
        k->head.content_length = -1;
        k->head.status = sp ? strtol(sp + 1, NULL, 10) : 0;
    } else if (n > 15 && strncasecmp(data, "content-length:", 15) == 0) {
        header_value(data, n, 15, value, sizeof value);
        char *end = NULL;
        long long len = value[0] ? strtoll(value, &end, 10) : -1;
        k->head.content_length = value[0] && end && *end == '\0' && len >= 0 ? len : -1;
    } else if (n > 13 && strncasecmp(data, "content-type:", 13) == 0) {
        header_value(data, n, 13, k->head.content_type, sizeof k->head.content_type);
    } else if (n > 9 && strncasecmp(data, "location:", 9) == 0) {
        header_value(data, n, 9, k->head.location, sizeof k->head.location);
    } else if (n > 14 && strncasecmp(data, "content-range:", 14) == 0) {
        header_value(data, n, 14, k->head.content_range, sizeof k->head.content_range);
    } else if (n > 14 && strncasecmp(data, "accept-ranges:", 14) == 0) {
        header_value(data, n, 14, value, sizeof value);
        k->head.accept_ranges = strcasecmp(value, "bytes") == 0;
    } else if ((n == 2 && data[0] == '\r') || (n == 1 && data[0] == '\n')) {
        if (k->head.status >= 200 && stream_send_head(k) != 0)
            return 0; /* curl stops with CURLE_WRITE_ERROR */
    }
    return n;
}

/* libcurl write callback of a streamed GET: passes each piece of body on. */
static size_t stream_write(char *data, size_t size, size_t nmemb, void *arg)
{
    stream_sink *k = arg;
    size_t n = size * nmemb;
    if (stream_send_head(k) != 0)
        return 0;
    if (k->s->on_body(k->s->arg, data, n) != 0) {
        k->stopped = 1;
        return 0;
    }
    return n;
}

/* libcurl progress callback of a streamed GET: asks the receiver's on_tick whether to go
 * on (curl calls it about once a second, and on every piece of data). */
static int stream_tick(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    stream_sink *k = arg;
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    if (k->s->on_tick(k->s->arg) != 0) {
        k->stopped = 1;
        return 1; /* curl stops with CURLE_ABORTED_BY_CALLBACK */
    }
    return 0;
}

/* Performs one streamed GET; see the header. */
int http_get_stream(http_client *c, const char *url, const char *const *headers,
                    const char *basic_auth, const http_stream *s, calllog_error *err)
{
    stream_sink k = {.s = s};
    error_clear(err);
    k.head.content_length = -1;
    if (c == NULL || url == NULL || s == NULL || s->on_head == NULL || s->on_body == NULL) {
        error_set(err, CALLLOG_INVALID, "http_get_stream: bad arguments");
        err->curl_code = CURLE_BAD_FUNCTION_ARGUMENT;
        return CALLLOG_INVALID;
    }
    struct curl_slist *hdrs = build_headers(headers);
    if (hdrs == NULL) {
        error_set(err, CALLLOG_NOMEM, "GET: out of memory");
        err->curl_code = CURLE_OUT_OF_MEMORY;
        return CALLLOG_NOMEM;
    }
    curl_easy_reset(c->easy);
    c->errbuf[0] = '\0';
    CURLcode rc =
        configure(c, "GET", url, hdrs, basic_auth, NULL, 0, stream_write, stream_header, &k);
    if (rc == CURLE_OK && s->on_tick != NULL) {
        rc = curl_easy_setopt(c->easy, CURLOPT_XFERINFOFUNCTION, stream_tick);
        if (rc == CURLE_OK)
            rc = curl_easy_setopt(c->easy, CURLOPT_XFERINFODATA, &k);
        if (rc == CURLE_OK)
            rc = curl_easy_setopt(c->easy, CURLOPT_NOPROGRESS, 0L);
    }
    if (rc == CURLE_OK)
        rc = curl_easy_perform(c->easy);
    curl_slist_free_all(hdrs);
    if (rc == CURLE_OK && !k.head_sent && stream_send_head(&k) != 0)
        rc = CURLE_WRITE_ERROR; /* an answer without a blank line or body: hand it over now */
    if (rc == CURLE_OK)
        return CALLLOG_OK;
    transport_error(c, "GET", url, rc, NULL, err);
    if (k.stopped) {
        error_set(err, CALLLOG_PERMANENT, "GET: stopped by the receiver");
        err->curl_code = (int)rc;
    }
    err->http_status = k.head_sent ? k.head.status : 0;
    return err->code;
}
