/* http_answer — one-write HTTP answers for the ingest's handlers (see http_answer.h).
 *
 * The Connection header follows civetweb's own rule (should_keep_alive in civetweb.c),
 * so that what the answer says is what civetweb does next: close when a handler asked
 * for it (http_answer_close_after, which also tells civetweb), else obey the request's
 * Connection header, else keep HTTP/1.1 connections and close HTTP/1.0 ones. The Date
 * header is formatted once a second per thread. */
#include "ingest/http_answer.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* The most bytes of an answer sent in one write; a longer one goes in two. */
#define ANSWER_ONE_WRITE 2048

/* 1 once this thread's current request must close its connection. */
static __thread int closing;
/* This thread's Date header value and the second it was formatted for. */
static __thread time_t date_second = -1;
static __thread char date_text[40];

void http_answer_begin(void)
{
    closing = 0;
}

void http_answer_close_after(struct mg_connection *conn)
{
    closing = 1;
    mg_disable_connection_keep_alive(conn);
}

/* 1 when the comma-separated header value `list` holds the token `want` (any case). */
static int has_token(const char *list, const char *want)
{
    size_t n = strlen(want);
    for (const char *p = list; *p;) {
        p += strspn(p, " \t,");
        size_t len = strcspn(p, ",");
        while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        if (len == n && strncasecmp(p, want, n) == 0)
            return 1;
        p += strcspn(p, ",");
    }
    return 0;
}

/* 1 when civetweb will read another request on this connection after the answer. */
static int keeps_alive(const struct mg_connection *conn)
{
    if (closing)
        return 0;
    const char *connection = mg_get_header(conn, "Connection");
    if (connection)
        return has_token(connection, "keep-alive");
    const struct mg_request_info *ri = mg_get_request_info(conn);
    return ri && ri->http_version && strcmp(ri->http_version, "1.1") == 0;
}

/* The Date header's value for now (RFC 9110 IMF-fixdate), cached for the second. */
static const char *date_now(void)
{
    time_t now = time(NULL);
    if (now != date_second) {
        struct tm tm;
        static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
        static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                             "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
        gmtime_r(&now, &tm);
        snprintf(date_text, sizeof date_text, "%s, %02d %s %04d %02d:%02d:%02d GMT",
                 days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour,
                 tm.tm_min, tm.tm_sec);
        date_second = now;
    }
    return date_text;
}

int http_answer_send(struct mg_connection *conn, int status, const char *headers,
                     const char *content_type, const char *body)
{
    char out[ANSWER_ONE_WRITE], length[48] = "";
    size_t blen = body ? strlen(body) : 0;
    if (status != 204)
        snprintf(length, sizeof length, "Content-Length: %zu\r\n", blen);
    int hlen = snprintf(
        out, sizeof out, "HTTP/1.1 %d %s\r\nDate: %s\r\n%s%s%s%s%sConnection: %s\r\n\r\n", status,
        mg_get_response_code_text(conn, status), date_now(), headers ? headers : "",
        content_type ? "Content-Type: " : "", content_type ? content_type : "",
        content_type ? "\r\n" : "", length, keeps_alive(conn) ? "keep-alive" : "close");
    if (hlen < 0 || (size_t)hlen >= sizeof out)
        return -1;
    if ((size_t)hlen + blen <= sizeof out) {
        if (blen > 0)
            memcpy(out + hlen, body, blen);
        return mg_write(conn, out, (size_t)hlen + blen) == (int)((size_t)hlen + blen) ? 0 : -1;
    }
    if (mg_write(conn, out, (size_t)hlen) != hlen)
        return -1;
    return mg_write(conn, body, blen) == (int)blen ? 0 : -1;
}
