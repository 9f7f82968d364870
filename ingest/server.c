/* server — civetweb set-up and the request handlers of calllog-ingest (see server.h).
 *
 * The endpoint faces the internet, so nothing an outsider sends may starve webhooks,
 * crash the process or fill the disk:
 *  - civetweb holds a thread per connection: there are many (INGEST_THREADS), headers
 *    must arrive within INGEST_REQUEST_TIMEOUT_MS and the whole body within the same
 *    time again (408 past it), and one remote address may have at most
 *    INGEST_MAX_PER_ADDRESS requests inside the handler (429 past it). civetweb's own
 *    timeout is per read, and a read waits for all the bytes asked for, so a body
 *    trickled a byte a second would never time out: a reaper thread shuts the reading
 *    side of a connection whose body deadline passed, which ends the read at once.
 *    A buffering proxy in front is still advised (docs/operations.md).
 *  - bodies live on the heap, never on the small thread stack; conflicting
 *    Content-Length headers, or Content-Length with Transfer-Encoding, are refused (400).
 *  - every refusal is counted in full; refusals and civetweb's own errors are logged
 *    through a rate limiter that reports how many lines it dropped.
 * Draining is the process-wide stop flag (shutdown.h): once it is set the listening
 * sockets stop taking connections, /readyz answers 503 and answers refuse keep-alive.
 * The spool-depth collect hook reads the server and its enqueuer, so stopping takes it
 * off the registry before anything goes. */
#include "ingest/server.h"

#include <arpa/inet.h>
#include <civetweb.h>
#include <dirent.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>

#include "common/event.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/shutdown.h"
#include "common/timing.h"
#include "ingest/http_answer.h"
#include "ingest/recordings.h"
#include "ingest/webhook.h"

#define LOG_CALL_PATH "/twilio/log-call"
/* Slots of the per-address request counters (addresses hash into them). */
#define ADDRESS_SLOTS 4096
/* How often the reaper looks for bodies past their deadline. */
#define REAP_EVERY_MS 100

/* Refusals and civetweb's errors: 20 lines a second, 200 at once. */
static log_limiter refusal_log = LOG_LIMITER_INIT(20, 200);
/* 1 on a request thread while one of our handlers answers (else civetweb answered). */
static __thread int answered_by_us;
/* Requests answered on the connection this thread serves (civetweb: one thread each). */
static __thread long answered_on_connection;
/* This request thread's slot among the body reads, -1 until it first reads one. */
static __thread int read_slot = -1;

/* A body being read, as the reaper sees it: the peer, and the deadline (0: none). */
typedef struct body_read {
    char addr[48];
    int port;
    atomic_llong deadline;
} body_read;

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
    atomic_int per_address[ADDRESS_SLOTS];
    body_read *reads; /* one per request thread */
    atomic_int nreads;
    pthread_t reaper;
    atomic_int reaper_stop;
    recordings *rec; /* GET /recordings/...; NULL when RECORDING_LINK_SECRET is unset */
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
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof raw; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[2 * sizeof raw] = '\0';
}

/* Sends a complete answer with an optional body, in one write (http_answer.h). */
static void respond(struct mg_connection *conn, int status, const char *body,
                    const char *content_type)
{
    if (http_answer_send(conn, status, status == 405 ? "Allow: POST\r\n" : NULL,
                         body ? content_type : NULL, body) != 0)
        http_answer_close_after(conn); /* a short write: the peer cannot trust the stream */
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
                          LF_END,
                          LF_END};
    long dropped = 0;
    if (status >= 400) {
        label(lbl, sizeof lbl, "reason", reason);
        metric_add(srv->m.refusals, lbl, 1);
        if (!log_limiter_allow(&refusal_log, &dropped))
            return;
    }
    log_field more[] = {LF_I("log_lines_suppressed", dropped), LF_END};
    if (dropped > 0)
        fields[5] = more[0];
    log_emit(status >= 500   ? LOG_ERROR
             : status >= 400 ? LOG_WARN
                             : LOG_INFO,
             "webhook answered", fields);
}

/* Reads the whole body into a malloc'ed buffer (*body, caller frees), within `deadline`
 * (monotonic ms). Returns the length, BODY_TOO_LARGE past `max`, BODY_TOO_SLOW past the
 * deadline, or BODY_FAILED (out of memory, connection gone). */
#define BODY_TOO_LARGE (-1)
#define BODY_TOO_SLOW (-2)
#define BODY_FAILED (-3)
static long read_body(struct mg_connection *conn, long long declared, long max, long long deadline,
                      char **body)
{
    size_t cap = declared >= 0 ? (size_t)declared + 1 : (size_t)max + 1;
    char *buf = *body = malloc(cap);
    if (!buf)
        return BODY_FAILED;
    size_t len = 0;
    int n = 1, late = 0;
    while (len < cap && n > 0 && !(late = timing_mono_ms() >= deadline))
        if ((n = mg_read(conn, buf + len, cap - len)) > 0)
            len += (size_t)n;
    if (len > (size_t)max)
        return BODY_TOO_LARGE;
    if (n == 0 && (declared < 0 || len == (size_t)declared))
        return (long)len; /* all of it (civetweb's reads end at Content-Length) */
    return late || timing_mono_ms() >= deadline ? BODY_TOO_SLOW : BODY_FAILED;
}

/* Tells the reaper this thread reads the body of `ri`'s connection until `deadline`. */
static void reads_begin(ingest_server *srv, const struct mg_request_info *ri, long long deadline)
{
    if (read_slot < 0)
        read_slot = atomic_fetch_add(&srv->nreads, 1);
    if (read_slot >= srv->settings->threads)
        return; /* cannot happen: civetweb runs INGEST_THREADS threads */
    body_read *r = &srv->reads[read_slot];
    snprintf(r->addr, sizeof r->addr, "%s", ri->remote_addr);
    r->port = ri->remote_port;
    atomic_store(&r->deadline, deadline);
}

/* The body read is over. */
static void reads_end(ingest_server *srv)
{
    if (read_slot >= 0 && read_slot < srv->settings->threads)
        atomic_store(&srv->reads[read_slot].deadline, 0);
}

/* 1 when socket `fd` is connected to addr:port. */
static int peer_is(int fd, const char *addr, int port)
{
    struct sockaddr_storage a;
    socklen_t alen = sizeof a;
    char text[64];
    if (getpeername(fd, (struct sockaddr *)&a, &alen) != 0)
        return 0;
    if (a.ss_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&a;
        return ntohs(in->sin_port) == port &&
               inet_ntop(AF_INET, &in->sin_addr, text, sizeof text) && strcmp(text, addr) == 0;
    }
    if (a.ss_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a;
        return ntohs(in6->sin6_port) == port &&
               inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text) && strcmp(text, addr) == 0;
    }
    return 0;
}

/* Calls `fn(fd, arg)` for every open descriptor of the process. */
static void each_fd(void (*fn)(int fd, void *arg), void *arg)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL)
        if (e->d_name[0] >= '0' && e->d_name[0] <= '9')
            fn(atoi(e->d_name), arg);
    if (d)
        closedir(d);
}

/* Shuts the reading side of the socket connected to the peer in `arg` (a body_read). */
static void cut_if_peer(int fd, void *arg)
{
    const body_read *r = arg;
    if (peer_is(fd, r->addr, r->port))
        shutdown(fd, SHUT_RD);
}

/* The reaper thread: cuts short every body read past its deadline (its read returns at
 * once, the handler answers 408). */
static void *reaper_main(void *arg)
{
    ingest_server *srv = arg;
    while (!atomic_load(&srv->reaper_stop)) {
        long long now = timing_mono_ms();
        int n = atomic_load(&srv->nreads);
        for (int i = 0; i < n && i < srv->settings->threads; i++) {
            long long d = atomic_load(&srv->reads[i].deadline);
            if (d > 0 && now > d && atomic_compare_exchange_strong(&srv->reads[i].deadline, &d, -1))
                each_fd(cut_if_peer, &srv->reads[i]);
        }
        timing_sleep_ms(REAP_EVERY_MS);
    }
    return NULL;
}

/* 1 when the request's framing is ambiguous: Content-Length given twice with different
 * values, or together with Transfer-Encoding (a proxy that reads it the other way could
 * be smuggled past). */
static int ambiguous_length(const struct mg_request_info *ri)
{
    const char *length = NULL;
    int chunked = 0;
    for (int i = 0; i < ri->num_headers; i++) {
        const char *name = ri->http_headers[i].name, *value = ri->http_headers[i].value;
        if (strcasecmp(name, "Transfer-Encoding") == 0)
            chunked = 1;
        else if (strcasecmp(name, "Content-Length") != 0)
            continue;
        else if (length && strcmp(length, value) != 0)
            return 1;
        else
            length = value;
    }
    return length && chunked;
}

/* The per-address counter slot of the request's remote address. */
static atomic_int *address_slot(ingest_server *srv, const struct mg_request_info *ri)
{
    unsigned long h = 5381;
    for (const char *p = ri->remote_addr; *p; p++)
        h = h * 33 + (unsigned char)*p;
    return &srv->per_address[h % ADDRESS_SLOTS];
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
static int enqueue_event(ingest_server *srv, const webhook_result *ev, const char *request_id,
                         const char **reason)
{
    stream_entry e = {.call_sid = ev->call_sid,
                      .status = ev->status,
                      .request_id = request_id,
                      .received_at = ev->received_at,
                      .event = buffer_ptr(&ev->event)};
    double t0 = timing_mono_s();
    enqueue_result r = enqueue_put(srv->queue, &e);
    if (r == ENQUEUE_FAILED) {
        *reason = "not_durable";
        return 503;
    }
    metric_observe(srv->m.enqueue_secs,
                   r == ENQUEUE_STREAM ? "target=\"stream\"" : "target=\"spool\"",
                   timing_mono_s() - t0);
    char lbl[64];
    label(lbl, sizeof lbl, "status", event_status_is_known(ev->status) ? ev->status : "other");
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
        snprintf(call_sid, sidlen, "%s", res.call_sid);
        status = enqueue_event(srv, &res, request_id, reason);
    }
    webhook_result_free(&res);
    free(url);
    return status;
}

/* Reads and decides one POST whose framing is sound. */
static int handle_post(ingest_server *srv, struct mg_connection *conn, long long deadline,
                       const char *request_id, const char **reason, char *call_sid, size_t sidlen)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    char *body = NULL;
    long len = BODY_TOO_LARGE;
    if (ri->content_length <= srv->settings->max_body_bytes) {
        reads_begin(srv, ri, deadline);
        len = read_body(conn, ri->content_length, srv->settings->max_body_bytes, deadline, &body);
        reads_end(srv);
    }
    int status;
    if (len == BODY_TOO_LARGE) {
        status = 413;
        *reason = "body_too_large";
    } else if (len == BODY_TOO_SLOW) {
        status = 408;
        *reason = "body_too_slow";
    } else if (len < 0) {
        status = 400;
        *reason = "body_incomplete";
    } else {
        status =
            accept_callback(srv, conn, body, (size_t)len, request_id, reason, call_sid, sidlen);
    }
    if (len < 0)
        http_answer_close_after(conn);
    free(body);
    return status;
}

/* POST /twilio/log-call */
static int handle_log_call(struct mg_connection *conn, void *cbdata)
{
    ingest_server *srv = cbdata;
    answered_by_us = 1;
    http_answer_begin();
    atomic_fetch_add(&srv->in_flight, 1);
    if (shutdown_requested())
        http_answer_close_after(conn);
    const struct mg_request_info *ri = mg_get_request_info(conn);
    double t0 = timing_mono_s();
    long long deadline = timing_mono_ms() + srv->settings->request_timeout_ms;
    char request_id[17], call_sid[64] = "";
    make_request_id(request_id);
    const char *reason = "enqueued";
    atomic_int *from = address_slot(srv, ri);
    long cap = srv->settings->max_per_address;
    int status, crowd = atomic_fetch_add(from, 1);
    if (strcmp(ri->request_method, "POST") != 0) {
        status = 405;
        reason = "method_not_allowed";
    } else if (ambiguous_length(ri)) {
        status = 400;
        reason = "ambiguous_length";
        http_answer_close_after(conn);
    } else if (cap > 0 && crowd >= cap) {
        status = 429;
        reason = "too_many_from_address";
        http_answer_close_after(conn);
    } else {
        status = handle_post(srv, conn, deadline, request_id, &reason, call_sid, sizeof call_sid);
    }
    respond(conn, status, status == 204 ? NULL : reason, "text/plain; charset=utf-8");
    atomic_fetch_sub(from, 1);
    record_answer(srv, status, reason, request_id, call_sid, t0);
    atomic_fetch_sub(&srv->in_flight, 1);
    return status;
}

/* GET /recordings/<CallSid>?t=<token>: a note's recording link (recordings.c, which
 * bounds how many threads media may hold). */
static int handle_recording(struct mg_connection *conn, void *cbdata)
{
    ingest_server *srv = cbdata;
    char request_id[17];
    answered_by_us = 1;
    http_answer_begin();
    if (shutdown_requested())
        http_answer_close_after(conn);
    make_request_id(request_id);
    return recordings_answer(srv->rec, conn, request_id);
}

/* GET /healthz: the process is up. */
static int handle_healthz(struct mg_connection *conn, void *cbdata)
{
    (void)cbdata;
    answered_by_us = 1;
    http_answer_begin();
    if (shutdown_requested())
        http_answer_close_after(conn);
    respond(conn, 200, "ok\n", "text/plain; charset=utf-8");
    return 200;
}

/* GET /readyz: Redis reachable or spool writable; reports the spool depth. */
static int handle_readyz(struct mg_connection *conn, void *cbdata)
{
    ingest_server *srv = cbdata;
    answered_by_us = 1;
    http_answer_begin();
    if (shutdown_requested())
        http_answer_close_after(conn);
    char redis_why[256], spool_why[256];
    int can_take = enqueue_ready(srv->queue, redis_why, spool_why, sizeof redis_why);
    int ready = !shutdown_requested() && can_take;
    json_t *o = json_pack("{s:b,s:I,s:s,s:s,s:b}", "ready", ready, "spool_depth",
                          (json_int_t)enqueue_spool_depth(srv->queue), "redis", redis_why, "spool",
                          spool_why, "draining", shutdown_requested());
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    char body[1024];
    snprintf(body, sizeof body, "%s\n", text ? text : "{\"ready\":false}");
    free(text);
    json_decref(o);
    respond(conn, ready ? 200 : 503, body, "application/json");
    return ready ? 200 : 503;
}

/* Authorization handler for every path: the ingest authenticates webhooks by their
 * signature and recordings by their token. Installing it spares civetweb's default check,
 * which stats a .htpasswd file on every request. */
static int allow_request(struct mg_connection *conn, void *cbdata)
{
    (void)conn;
    (void)cbdata;
    return 1;
}

/* Collect hook: refreshes the spool depth gauge before each scrape. */
static void collect_spool_depth(void *arg)
{
    ingest_server *srv = arg;
    metric_set(srv->m.spool_depth, NULL, (double)enqueue_spool_depth(srv->queue));
}

/* civetweb's own error lines (bad requests it refuses before any handler): to our log,
 * rate-limited. Returns 1: civetweb must not print them itself. */
static int log_http_server(const struct mg_connection *conn, const char *message)
{
    (void)conn;
    long dropped = 0;
    if (log_limiter_allow(&refusal_log, &dropped))
        log_warn("http server", LF_S("error", message), LF_I("log_lines_suppressed", dropped));
    return 1;
}

/* The status of an access-log line: the number after the quoted request line. */
static int access_status(const char *line)
{
    const char *q = strrchr(line, '"');
    return q ? atoi(q + 1) : 0;
}

/* civetweb's access-log line, written for every request it answered, ours included:
 * what it answered without our handlers (404, 411, 431, a malformed request, ...) is
 * counted and logged like our refusals. Returns 1: no access log file is written. */
static int log_access(const struct mg_connection *conn, const char *line)
{
    answered_on_connection++;
    if (answered_by_us) {
        answered_by_us = 0;
        return 1;
    }
    ingest_server *srv = mg_get_user_data(mg_get_context(conn));
    int status = access_status(line);
    char lbl[64], code[24];
    snprintf(code, sizeof code, "%d", status);
    label(lbl, sizeof lbl, "code", code);
    metric_add(srv->m.requests, lbl, 1);
    snprintf(code, sizeof code, "http_%d", status);
    label(lbl, sizeof lbl, "reason", code);
    metric_add(srv->m.refusals, lbl, 1);
    long dropped = 0;
    const struct mg_request_info *ri = mg_get_request_info(conn);
    if (log_limiter_allow(&refusal_log, &dropped))
        log_warn("refused by the http server", LF_I("status", status),
                 LF_S("uri", ri && ri->local_uri ? ri->local_uri : ""),
                 LF_I("log_lines_suppressed", dropped));
    return 1;
}

/* A new connection reaches a request thread. */
static int init_connection(const struct mg_connection *conn, void **conn_data)
{
    (void)conn;
    (void)conn_data;
    answered_on_connection = 0;
    return 0;
}

/* A connection closed without a single request civetweb could read (oversized or
 * malformed headers, an absolute URI, nothing sent in time): counted and logged too. */
static void connection_closed(const struct mg_connection *conn)
{
    if (answered_on_connection > 0)
        return;
    ingest_server *srv = mg_get_user_data(mg_get_context(conn));
    metric_add(srv->m.refusals, "reason=\"no_valid_request\"", 1);
    long dropped = 0;
    const struct mg_request_info *ri = mg_get_request_info(conn);
    if (log_limiter_allow(&refusal_log, &dropped))
        log_warn("connection closed without a valid request",
                 LF_S("remote_addr", ri ? ri->remote_addr : ""),
                 LF_I("log_lines_suppressed", dropped));
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
ingest_server *ingest_server_start(const ingest_settings *s, enqueuer *q, calllog_error *err)
{
    ingest_server *srv = calloc(1, sizeof *srv);
    if (srv) {
        srv->settings = s; /* before the hook: a scrape may run it at once */
        srv->queue = q;
    }
    if (!srv || !(srv->reads = calloc((size_t)s->threads, sizeof *srv->reads)) ||
        register_metrics(srv) != 0 ||
        (s->recording_link_secret && !(srv->rec = recordings_new(s)))) {
        error_set(err, CALLLOG_TRANSIENT, "out of memory registering metrics");
        if (srv) {
            metrics_remove_collect_hook(collect_spool_depth, srv);
            free(srv->reads);
        }
        free(srv);
        return NULL;
    }
    char ports[300], threads[16];
    if (s->listen_host[0])
        snprintf(ports, sizeof ports, "%s:%d", s->listen_host, s->listen_port);
    else
        snprintf(ports, sizeof ports, "%d", s->listen_port);
    snprintf(threads, sizeof threads, "%ld", s->threads);
    char timeout[24];
    snprintf(timeout, sizeof timeout, "%ld", s->request_timeout_ms);
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
                             timeout,
                             "tcp_nodelay",
                             "1",
                             NULL};
    static const struct mg_callbacks callbacks = {.log_message = log_http_server,
                                                  .log_access = log_access,
                                                  .init_connection = init_connection,
                                                  .connection_closed = connection_closed};
    mg_init_library(0);
    srv->ctx = mg_start(&callbacks, srv, options);
    if (!srv->ctx) {
        error_set(err, CALLLOG_TRANSIENT, "cannot listen on %s (INGEST_LISTEN)", ports);
        metrics_remove_collect_hook(collect_spool_depth, srv);
        recordings_free(srv->rec);
        free(srv->reads);
        free(srv);
        return NULL;
    }
    if (pthread_create(&srv->reaper, NULL, reaper_main, srv) != 0) {
        error_set(err, CALLLOG_TRANSIENT, "cannot start the body-deadline thread");
        mg_stop(srv->ctx);
        metrics_remove_collect_hook(collect_spool_depth, srv);
        recordings_free(srv->rec);
        free(srv->reads);
        free(srv);
        return NULL;
    }
    mg_set_auth_handler(srv->ctx, "/", allow_request, NULL);
    mg_set_request_handler(srv->ctx, LOG_CALL_PATH "$", handle_log_call, srv);
    mg_set_request_handler(srv->ctx, "/healthz$", handle_healthz, srv);
    mg_set_request_handler(srv->ctx, "/readyz$", handle_readyz, srv);
    if (srv->rec)
        mg_set_request_handler(srv->ctx, "/recordings", handle_recording, srv);
    return srv;
}

/* each_fd callback of the drain: shuts `fd` down when it is one of our listening sockets
 * (found by its port), so new connections are refused at once (Twilio retries a refused
 * connection) while the requests already in flight finish. */
static void shut_if_listening(int fd, void *arg)
{
    const ingest_server *srv = arg;
    int listening = 0;
    socklen_t n = sizeof listening;
    struct sockaddr_storage a;
    socklen_t alen = sizeof a;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &n) != 0 || !listening ||
        getsockname(fd, (struct sockaddr *)&a, &alen) != 0)
        return;
    int port = a.ss_family == AF_INET    ? ntohs(((struct sockaddr_in *)&a)->sin_port)
               : a.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&a)->sin6_port)
                                         : -1;
    if (port == srv->settings->listen_port)
        shutdown(fd, SHUT_RDWR);
}

/* Takes the collect hook off (no scrape reads `srv` after this), stops listening,
 * drains, stops civetweb and frees the server. */
void ingest_server_stop(ingest_server *srv)
{
    if (!srv)
        return;
    metrics_remove_collect_hook(collect_spool_depth, srv);
    /* mg_stop cuts body reads short, so first let running handlers finish: the caller's
     * watchdog bounds this by INGEST_DRAIN_TIMEOUT_MS. Requesting the stop here as well
     * makes a stop without a signal drain the same way. */
    shutdown_request();
    each_fd(shut_if_listening, srv);
    while (atomic_load(&srv->in_flight) > 0)
        timing_sleep_ms(5);
    atomic_store(&srv->reaper_stop, 1);
    pthread_join(srv->reaper, NULL);
    mg_stop(srv->ctx); /* media transfers end once they see the stop (recordings.c) */
    recordings_free(srv->rec);
    free(srv->reads);
    free(srv);
}
