/* bare_civetweb — the HTTP floor the ingest is measured against (tests/bench/bench_ingest.sh).
 *
 * A civetweb server with the ingest's options (threads, keep-alive, timeouts, tcp_nodelay)
 * and a do-nothing handler on POST /twilio/log-call that reads the whole body and answers
 * 204, the way the ingest answers an accepted webhook; GET /healthz answers "ok". Whatever
 * the ingest costs beyond this program is ours: parsing, the signature, the event, Redis.
 *
 * It answers the two ways a civetweb handler can: with civetweb's header API (one send(2),
 * so one TCP segment, per header line), or with `one-write`, the whole answer formatted
 * first and written at once, as the ingest does (ingest/http_answer.c).
 *
 *   bare_civetweb PORT THREADS [one-write]     (runs until SIGTERM or SIGINT) */
#include <civetweb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Reads and discards the request body. */
static void drain_body(struct mg_connection *conn)
{
    char buf[8192];
    while (mg_read(conn, buf, sizeof buf) > 0)
        ;
}

/* POST /twilio/log-call: read the body, answer 204 with civetweb's header API. */
static int handle_post(struct mg_connection *conn, void *arg)
{
    (void)arg;
    drain_body(conn);
    mg_response_header_start(conn, 204);
    mg_response_header_send(conn);
    return 204;
}

/* The same, the answer written in one piece (what civetweb's API sends, in one write). */
static int handle_post_one_write(struct mg_connection *conn, void *arg)
{
    (void)arg;
    drain_body(conn);
    char answer[160];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    size_t n = strftime(answer, sizeof answer,
                        "HTTP/1.1 204 No Content\r\nDate: %a, %d %b %Y %H:%M:%S GMT\r\n"
                        "Connection: keep-alive\r\n\r\n",
                        &tm);
    mg_write(conn, answer, n);
    return 204;
}

/* GET /healthz: "ok". */
static int handle_healthz(struct mg_connection *conn, void *arg)
{
    (void)arg;
    mg_response_header_start(conn, 200);
    mg_response_header_add(conn, "Content-Type", "text/plain; charset=utf-8", -1);
    mg_response_header_add(conn, "Content-Length", "3", -1);
    mg_response_header_send(conn);
    mg_write(conn, "ok\n", 3);
    return 200;
}

int main(int argc, char **argv)
{
    int one_write = argc == 4 && strcmp(argv[3], "one-write") == 0;
    if (argc != 3 && !one_write) {
        fprintf(stderr, "usage: bare_civetweb PORT THREADS [one-write]\n");
        return 2;
    }
    char ports[64];
    snprintf(ports, sizeof ports, "127.0.0.1:%s", argv[1]);
    const char *options[] = {"listening_ports",
                             ports,
                             "num_threads",
                             argv[2],
                             "enable_keep_alive",
                             "yes",
                             "keep_alive_timeout_ms",
                             "5000",
                             "request_timeout_ms",
                             "10000",
                             "tcp_nodelay",
                             "1",
                             NULL};
    struct mg_callbacks callbacks;
    memset(&callbacks, 0, sizeof callbacks);
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL); /* civetweb's threads inherit the mask */
    mg_init_library(0);
    struct mg_context *ctx = mg_start(&callbacks, NULL, options);
    if (!ctx) {
        fprintf(stderr, "bare_civetweb: cannot listen on %s\n", ports);
        return 1;
    }
    mg_set_request_handler(ctx, "/twilio/log-call$",
                           one_write ? handle_post_one_write : handle_post, NULL);
    mg_set_request_handler(ctx, "/healthz$", handle_healthz, NULL);
    int sig;
    sigwait(&stop, &sig);
    mg_stop(ctx);
    mg_exit_library();
    return 0;
}
