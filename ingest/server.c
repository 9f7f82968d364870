/* server — civetweb set-up and the request handlers of calllog-ingest (see server.h).
 *
 * Draining is the process-wide stop flag (shutdown.h): once it is set, /readyz answers
 * 503 and webhook answers refuse keep-alive. The spool-depth collect hook reads the
 * server and its enqueuer, so stopping takes it off the registry before anything goes. */
#include "server.h"
#include "timing.h"

#include <civetweb.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "event.h"
#include "log.h"
#include "metrics.h"
#include "shutdown.h"
#include "webhook.h"

#define LOG_CALL_PATH "/twilio/log-call"
#define STACK_BODY 16384 /* Twilio's callbacks are ~1.5 KB: most bodies never hit malloc */

typedef struct ingest_metrics {
    metric *requests;     /* by answer code */
    metric *refusals;     /* by reason */
    metric *sig_failures; /* by signature result */
    metric *events;       /* accepted events by call status */
    metric *enqueue_secs; /* by target: stream or spool */
    metric *request_secs; /* whole webhook request */
    metric *spool_depth;
} ingest_metrics;

struct ingest_server {
    const ingest_settings *settings;
    enqueuer *queue;
    struct mg_context *ctx;
    ingest_metrics m;
    atomic_int in_flight; /* webhook requests inside the handler */
};

/* A random 16-hex-digit request id. */
static void make_request_id(char out[17])
{
    unsigned char raw[8];
    if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        memcpy(raw, &ts.tv_nsec, sizeof raw < sizeof ts.tv_nsec ? sizeof raw : sizeof ts.tv_nsec);
    }
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
}

/* Sends a complete answer with an optional plain-text body. */
static void respond(struct mg_connection *conn, int status, const char *body,
                    const char *content_type)
{
    char len[24];
    snprintf(len, sizeof len, "%zu", body ? strlen(body) : 0);
    mg_response_header_start(conn, status);
    if (body && content_type)
        mg_response_header_add(conn, "Content-Type", content_type, -1);
    if (status == 405)
        mg_response_header_add(conn, "Allow", "POST", -1);
    if (status != 204)
        mg_response_header_add(conn, "Content-Length", len, -1);
    mg_response_header_send(conn);
    if (body)
        mg_write(conn, body, strlen(body));
}

/* A metrics label string `name="value"`. */
static void label(char *out, size_t outlen, const char *name, const char *value)
{
    snprintf(out, outlen, "%s=\"%s\"", name, value);
}

/* Counts and logs one answered webhook request. */
static void record_answer(ingest_server *srv, int status, const char *reason,
                          const char *request_id, const char *call_sid, double t0)
{
    char lbl[64];
    char code[8];
    snprintf(code, sizeof code, "%d", status);
    label(lbl, sizeof lbl, "code", code);
    metric_add(srv->m.requests, lbl, 1);
    double secs = timing_mono_s() - t0;
    metric_observe(srv->m.request_secs, NULL, secs);
    log_field fields[] = {LF_S("request_id", request_id),
                          LF_S("call_sid", call_sid),
                          LF_I("status", status),
                          LF_S("outcome", reason),
                          LF_I("latency_us", (long long)(secs * 1e6)),
                          LF_END};
    if (status >= 400) {
        label(lbl, sizeof lbl, "reason", reason);
        metric_add(srv->m.refusals, lbl, 1);
    }
    log_emit(status >= 500   ? LOG_ERROR
             : status >= 400 ? LOG_WARN
                             : LOG_INFO,
             "webhook answered", fields);
}

/* Reads the whole body into `stack` or a malloc'ed buffer (*heap, caller frees).
 * Returns the length, or -1 when it exceeds `max` (or cannot be read/allocated). */
static long read_body(struct mg_connection *conn, long long declared, long max, char *stack,
                      char **heap, const char **body)
{
    size_t cap = declared >= 0 && declared + 1 > STACK_BODY ? (size_t)declared + 1
                 : declared >= 0                            ? STACK_BODY
                                                            : (size_t)max + 1;
    char *buf = cap <= STACK_BODY ? stack : (*heap = malloc(cap));
    if (!buf)
        return -1;
    size_t len = 0;
    int n;
    while (len < cap && (n = mg_read(conn, buf + len, cap - len)) > 0)
        len += (size_t)n;
    *body = buf;
    return len > (size_t)max ? -1 : (long)len;
}

/* Builds the signed URL: PUBLIC_BASE_URL + raw path + "?" + raw query. */
static char *signed_url(const ingest_server *srv, const struct mg_request_info *ri)
{
    const char *path = ri->local_uri_raw ? ri->local_uri_raw : LOG_CALL_PATH;
    const char *query = ri->query_string;
    size_t n =
        strlen(srv->settings->public_base_url) + strlen(path) + (query ? strlen(query) + 1 : 0) + 1;
    char *url = malloc(n);
    if (url)
        snprintf(url, n, "%s%s%s%s", srv->settings->public_base_url, path, query ? "?" : "",
                 query ? query : "");
    return url;
}

/* Counts a signature failure by kind. */
static void count_signature_failure(ingest_server *srv, sig_result r)
{
    char lbl[64];
    label(lbl, sizeof lbl, "reason",
          r == SIG_MISSING    ? "missing"
          : r == SIG_MISMATCH ? "mismatch"
                              : "body_hash");
    metric_add(srv->m.sig_failures, lbl, 1);
}

/* Makes an accepted event durable; returns the HTTP answer (204 or 503). */
static int enqueue_event(ingest_server *srv, json_t *ev, const char *request_id,
                         const char **reason)
{
    char *text = json_dumps(ev, JSON_COMPACT);
    if (!text) {
        *reason = "out_of_memory";
        return 503;
    }
    stream_entry e = {event_get(ev, "call_sid"), event_get(ev, "status"), request_id,
                      event_get(ev, "received_at"), text};
    double t0 = timing_mono_s();
    enqueue_result r = enqueue_put(srv->queue, &e);
    free(text);
    if (r == ENQUEUE_FAILED) {
        *reason = "not_durable";
        return 503;
    }
    metric_observe(srv->m.enqueue_secs,
                   r == ENQUEUE_STREAM ? "target=\"stream\"" : "target=\"spool\"",
                   timing_mono_s() - t0);
    char lbl[64];
    const char *status = event_get(ev, "status");
    label(lbl, sizeof lbl, "status", event_status_is_known(status) ? status : "other");
    metric_add(srv->m.events, lbl, 1);
    *reason = r == ENQUEUE_STREAM ? "enqueued" : "spooled";
    return 204;
}

/* Verifies, normalizes and enqueues one callback whose body is in memory. */
static int accept_callback(ingest_server *srv, struct mg_connection *conn, const char *body,
                           size_t len, const char *request_id, const char **reason, char *call_sid,
                           size_t sidlen)
{
    char *url = signed_url(srv, mg_get_request_info(conn));
    if (!url) {
        *reason = "out_of_memory";
        return 503;
    }
    webhook_limits lim = {srv->settings->tokens, srv->settings->ntokens,
                          (size_t)srv->settings->max_params};
    webhook_request req = {url,
                           mg_get_header(conn, "Content-Type"),
                           mg_get_header(conn, "X-Twilio-Signature"),
                           mg_get_header(conn, "I-Twilio-Idempotency-Token"),
                           request_id,
                           timing_epoch_ms(),
                           body,
                           len};
    webhook_result res;
    int status = 204;
    if (webhook_process(&lim, &req, &res) != 0) {
        if (res.http_status == 403)
            count_signature_failure(srv, res.sig);
        status = res.http_status;
        *reason = res.reason;
    } else {
        snprintf(call_sid, sidlen, "%s", event_get(res.event, "call_sid"));
        status = enqueue_event(srv, res.event, request_id, reason);
        json_decref(res.event);
    }
    free(url);
    return status;
}

/* POST /twilio/log-call */
static int handle_log_call(struct mg_connection *conn, void *cbdata)
{
    ingest_server *srv = cbdata;
    atomic_fetch_add(&srv->in_flight, 1);
    if (shutdown_requested())
        mg_disable_connection_keep_alive(conn);
    const struct mg_request_info *ri = mg_get_request_info(conn);
    double t0 = timing_mono_s();
    char request_id[17], call_sid[64] = "";
    make_request_id(request_id);
    const char *reason = "enqueued";
    int status;
    char stack[STACK_BODY], *heap = NULL;
    const char *body = NULL;
    long len;
    if (strcmp(ri->request_method, "POST") != 0) {
        status = 405;
        reason = "method_not_allowed";
    } else if (ri->content_length > srv->settings->max_body_bytes ||
               (len = read_body(conn, ri->content_length, srv->settings->max_body_bytes, stack,
                                &heap, &body)) < 0) {
        status = 413;
        reason = "body_too_large";
        mg_disable_connection_keep_alive(conn);
    } else {
        status = accept_callback(srv, conn, body, (size_t)len, request_id, &reason, call_sid,
                                 sizeof call_sid);
    }
    free(heap);
    respond(conn, status, status == 204 ? NULL : reason, "text/plain; charset=utf-8");
    record_answer(srv, status, reason, request_id, call_sid, t0);
    atomic_fetch_sub(&srv->in_flight, 1);
    return status;
}

/* GET /healthz: the process is up. */
static int handle_healthz(struct mg_connection *conn, void *cbdata)
{
    (void)cbdata;
    respond(conn, 200, "ok\n", "text/plain; charset=utf-8");
    return 200;
}

/* GET /readyz: Redis reachable or spool writable; reports the spool depth. */
static int handle_readyz(struct mg_connection *conn, void *cbdata)
{
    ingest_server *srv = cbdata;
    int ready = !shutdown_requested() && enqueue_ready(srv->queue);
    char body[128];
    snprintf(body, sizeof body, "{\"ready\":%s,\"spool_depth\":%zu}\n", ready ? "true" : "false",
             enqueue_spool_depth(srv->queue));
    respond(conn, ready ? 200 : 503, body, "application/json");
    return ready ? 200 : 503;
}

/* Collect hook: refreshes the spool depth gauge before each scrape. */
static void collect_spool_depth(void *arg)
{
    ingest_server *srv = arg;
    metric_set(srv->m.spool_depth, NULL, (double)enqueue_spool_depth(srv->queue));
}

/* Registers the ingest metrics and the spool-depth hook on `srv`. Returns 0 or -1. */
static int register_metrics(ingest_server *srv)
{
    ingest_metrics *m = &srv->m;
    m->requests = metrics_register(METRIC_COUNTER, "calllog_ingest_requests_total",
                                   "Webhook requests answered, by HTTP code.", NULL, 0);
    m->refusals = metrics_register(METRIC_COUNTER, "calllog_ingest_refusals_total",
                                   "Webhook requests refused, by reason.", NULL, 0);
    m->sig_failures =
        metrics_register(METRIC_COUNTER, "calllog_ingest_signature_failures_total",
                         "X-Twilio-Signature verification failures, by kind.", NULL, 0);
    m->events = metrics_register(METRIC_COUNTER, "calllog_ingest_events_total",
                                 "Events made durable, by call status.", NULL, 0);
    m->enqueue_secs = metrics_register(METRIC_HISTOGRAM, "calllog_ingest_enqueue_seconds",
                                       "Time to make an event durable, by target.", NULL, 0);
    m->request_secs = metrics_register(METRIC_HISTOGRAM, "calllog_ingest_request_seconds",
                                       "Webhook request handling time.", NULL, 0);
    m->spool_depth = metrics_register(METRIC_GAUGE, "calllog_ingest_spool_depth",
                                      "Events waiting in the local spool for Redis.", NULL, 0);
    if (!m->requests || !m->refusals || !m->sig_failures || !m->events || !m->enqueue_secs ||
        !m->request_secs || !m->spool_depth)
        return -1;
    return metrics_add_collect_hook(collect_spool_depth, srv);
}

/* Registers the metrics, then starts civetweb with the three routes. */
ingest_server *ingest_server_start(const ingest_settings *s, enqueuer *q, char *err, size_t errlen)
{
    ingest_server *srv = calloc(1, sizeof *srv);
    if (srv) {
        srv->settings = s; /* before the hook: a scrape may run it at once */
        srv->queue = q;
    }
    if (!srv || register_metrics(srv) != 0) {
        snprintf(err, errlen, "out of memory registering metrics");
        free(srv);
        return NULL;
    }
    char ports[300], threads[16];
    if (s->listen_host[0])
        snprintf(ports, sizeof ports, "%s:%d", s->listen_host, s->listen_port);
    else
        snprintf(ports, sizeof ports, "%d", s->listen_port);
    snprintf(threads, sizeof threads, "%ld", s->threads);
    /* tcp_nodelay: civetweb writes headers and body separately, and Nagle would hold each
     * keep-alive answer ~40 ms. Short keep-alive and request timeouts give threads back
     * from idle or slow clients (civetweb holds one thread per connection). */
    const char *options[] = {"listening_ports",
                             ports,
                             "num_threads",
                             threads,
                             "enable_keep_alive",
                             "yes",
                             "keep_alive_timeout_ms",
                             "5000",
                             "request_timeout_ms",
                             "10000",
                             "tcp_nodelay",
                             "1",
                             NULL};
    mg_init_library(0);
    srv->ctx = mg_start(NULL, NULL, options);
    if (!srv->ctx) {
        snprintf(err, errlen, "cannot listen on %s (INGEST_LISTEN)", ports);
        metrics_remove_collect_hook(collect_spool_depth, srv);
        free(srv);
        return NULL;
    }
    mg_set_request_handler(srv->ctx, LOG_CALL_PATH "$", handle_log_call, srv);
    mg_set_request_handler(srv->ctx, "/healthz$", handle_healthz, srv);
    mg_set_request_handler(srv->ctx, "/readyz$", handle_readyz, srv);
    return srv;
}

/* Takes the collect hook off (no scrape reads `srv` after this), drains, stops civetweb
 * and frees the server. */
void ingest_server_stop(ingest_server *srv)
{
    if (!srv)
        return;
    metrics_remove_collect_hook(collect_spool_depth, srv);
    /* mg_stop cuts body reads short, so first let running handlers finish: the caller's
     * watchdog bounds this by INGEST_DRAIN_TIMEOUT_MS. Requesting the stop here as well
     * makes a stop without a signal drain the same way. */
    shutdown_request();
    while (atomic_load(&srv->in_flight) > 0)
        timing_sleep_ms(5);
    mg_stop(srv->ctx);
    free(srv);
}
