/* metrics_server — the small civetweb listener that serves GET /metrics.
 *
 * Each program exposes its registry on METRICS_LISTEN, apart from the public webhook
 * port, so scrapes never share a listener (or its thread pool) with Twilio traffic and
 * the metrics are not reachable from the internet by accident. Two worker threads are
 * plenty for a scraper; every path other than /metrics answers 404, and /metrics answers
 * 405 to anything but GET (and HEAD, which HTTP requires alongside GET). */
#include "common/metrics_server.h"

#include "common/metrics.h"

#include <civetweb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct metrics_server {
    struct mg_context *ctx; /* civetweb server; owned */
    pthread_mutex_t lock;   /* guards first_error (civetweb may log from any thread) */
    char first_error[200];  /* civetweb's first log message, the cause of a failed start */
};

static pthread_once_t library_once = PTHREAD_ONCE_INIT;

/* Initialises civetweb once per process (the library asks for it before mg_start). */
static void library_init(void)
{
    mg_init_library(0);
}

/* civetweb log callback: keeps the first message (during a failed start it says why,
 * e.g. "cannot bind to 127.0.0.1:9101: 98 (Address already in use)"). Returns 0 so
 * civetweb's own logging is unchanged. */
static int capture_log(const struct mg_connection *conn, const char *message)
{
    const struct mg_context *ctx = mg_get_context(conn);
    metrics_server *s = ctx != NULL ? mg_get_user_data(ctx) : NULL;
    if (s == NULL || message == NULL)
        return 0;
    pthread_mutex_lock(&s->lock);
    if (s->first_error[0] == '\0')
        snprintf(s->first_error, sizeof s->first_error, "%s", message);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

/* Writes a short plain-text reply with the given status. Returns the status. */
static int reply_text(struct mg_connection *conn, int status, const char *reason,
                      const char *extra_header, const char *body)
{
    mg_printf(conn,
              "HTTP/1.1 %d %s\r\n"
              "Content-Type: text/plain; charset=utf-8\r\n"
              "Content-Length: %zu\r\n"
              "%s"
              "Connection: close\r\n\r\n",
              status, reason, strlen(body), extra_header);
    mg_write(conn, body, strlen(body));
    return status;
}

/* Answers GET/HEAD /metrics with the rendered registry. Returns the HTTP status. */
static int reply_metrics(struct mg_connection *conn, int with_body)
{
    char *text = metrics_render();
    if (text == NULL)
        return reply_text(conn, 500, "Internal Server Error", "", "cannot render metrics\n");
    size_t len = strlen(text);
    mg_printf(conn,
              "HTTP/1.1 200 OK\r\n"
              "Content-Type: " METRICS_CONTENT_TYPE "\r\n"
              "Content-Length: %zu\r\n"
              "Cache-Control: no-store\r\n"
              "Connection: close\r\n\r\n",
              len);
    if (with_body)
        mg_write(conn, text, len);
    free(text);
    return 200;
}

/* civetweb request handler for every path: routes /metrics, 404s the rest. */
static int handle_request(struct mg_connection *conn, void *cbdata)
{
    (void)cbdata;
    const struct mg_request_info *ri = mg_get_request_info(conn);
    if (ri == NULL || ri->local_uri == NULL || strcmp(ri->local_uri, "/metrics") != 0)
        return reply_text(conn, 404, "Not Found", "", "not found\n");
    if (strcmp(ri->request_method, "GET") == 0)
        return reply_metrics(conn, 1);
    if (strcmp(ri->request_method, "HEAD") == 0)
        return reply_metrics(conn, 0);
    return reply_text(conn, 405, "Method Not Allowed", "Allow: GET, HEAD\r\n",
                      "method not allowed\n");
}

/* Writes civetweb's listening_ports value for host:port into `out` ("" host = just the
 * port; an IPv6 literal gets brackets). Returns 0, or -1 when it does not fit. */
static int format_listen(char *out, size_t outlen, const char *host, int port)
{
    int n;
    if (host == NULL || *host == '\0')
        n = snprintf(out, outlen, "%d", port);
    else if (strchr(host, ':') != NULL && host[0] != '[')
        n = snprintf(out, outlen, "[%s]:%d", host, port);
    else
        n = snprintf(out, outlen, "%s:%d", host, port);
    return (n < 0 || (size_t)n >= outlen) ? -1 : 0;
}

/* Starts the listener on host:port. Returns the server (caller owns; release with
 * metrics_server_stop), or NULL with a message in `err`. */
metrics_server *metrics_server_start(const char *host, int port, calllog_error *err)
{
    char ports[300], civet_err[256] = "";
    const char *shown = host != NULL ? host : "";
    if (port < 1 || port > 65535 || format_listen(ports, sizeof ports, host, port) != 0) {
        error_set(err, CALLLOG_INVALID, "cannot listen on %s:%d: bad address", shown, port);
        return NULL;
    }
    metrics_server *s = calloc(1, sizeof *s);
    if (s == NULL) {
        error_set(err, CALLLOG_NOMEM, "cannot listen on %s:%d: out of memory", shown, port);
        return NULL;
    }
    if (pthread_mutex_init(&s->lock, NULL) != 0) {
        error_set(err, CALLLOG_TRANSIENT, "cannot listen on %s:%d: cannot create a mutex", shown,
                  port);
        free(s);
        return NULL;
    }
    pthread_once(&library_once, library_init);
    const char *options[] = {"listening_ports",    ports,   "num_threads", "2",
                             "request_timeout_ms", "10000", NULL};
    struct mg_callbacks callbacks;
    memset(&callbacks, 0, sizeof callbacks);
    callbacks.log_message = capture_log;
    struct mg_init_data init = {&callbacks, s, options};
    struct mg_error_data error = {NULL, civet_err, sizeof civet_err};
    s->ctx = mg_start2(&init, &error);
    if (s->ctx == NULL) {
        const char *why = s->first_error[0] ? s->first_error
                          : civet_err[0]    ? civet_err
                                            : "civetweb failed to start";
        error_set(err, CALLLOG_TRANSIENT, "cannot listen on %s:%d: %s", shown, port, why);
        pthread_mutex_destroy(&s->lock);
        free(s);
        return NULL;
    }
    mg_set_request_handler(s->ctx, "/", handle_request, NULL);
    return s;
}

/* Stops the listener (waiting for in-flight scrapes) and frees the server. */
void metrics_server_stop(metrics_server *s)
{
    if (s == NULL)
        return;
    mg_stop(s->ctx);
    pthread_mutex_destroy(&s->lock);
    free(s);
}
