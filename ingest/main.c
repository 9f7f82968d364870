/* calllog-ingest — receives Twilio call-status webhooks, verifies and normalizes them,
 * and makes each one durable in the Redis events stream (or the local spool) before
 * answering Twilio. SIGTERM/SIGINT drain in-flight requests, bounded by
 * INGEST_DRAIN_TIMEOUT_MS. */
#include <stdio.h>
#include <stdlib.h>

#include "common/cli.h"
#include "common/log.h"
#include "common/metrics_server.h"
#include "common/shutdown.h"
#include "ingest/enqueue.h"
#include "ingest/server.h"
#include "ingest/settings.h"

static const char usage[] =
    "calllog-ingest [--env-file FILE]\n"
    "Receives Twilio status callbacks on POST /twilio/log-call and appends them to the\n"
    "Redis stream <CALLLOG_KEY_PREFIX>:events; with RECORDING_LINK_SECRET set, serves\n"
    "GET /recordings/<CallSid>?t=<token> (the recording links of notes). Settings come\n"
    "from the environment; see docs/configuration.md. Required: PUBLIC_BASE_URL,\n"
    "TWILIO_AUTH_TOKEN.";

/* Waits for SIGTERM/SIGINT, then drains and stops everything. */
static int run_until_signal(const ingest_settings *s, metrics_server *ms, enqueuer *q,
                            ingest_server *srv)
{
    shutdown_wait(s->drain_timeout_ms);
    ingest_server_stop(srv);
    metrics_server_stop(ms);
    enqueue_close(q);
    log_info("stopped", LF_END);
    return 0;
}

int main(int argc, char **argv)
{
    int status = cli_start(argc, argv, "calllog-ingest", usage, NULL, NULL);
    if (status != CLI_RUN)
        return status;
    /* civetweb stamps every access-log line with localtime(), and without TZ glibc stats
     * /etc/localtime on each call: naming the same zone reads it once (before any thread
     * starts, as setenv requires). */
    if (!getenv("TZ"))
        setenv("TZ", ":/etc/localtime", 0);
    static ingest_settings s;
    calllog_error cerr;
    if (ingest_settings_load(&s, &cerr) != 0) {
        cli_fail("calllog-ingest", cerr.message);
        return 2;
    }
    shutdown_block_signals();
    calllog_error err;
    metrics_server *ms = metrics_server_start(s.metrics_host, s.metrics_port, &err);
    enqueuer *q = ms ? enqueue_open(&s, &err) : NULL;
    ingest_server *srv = q ? ingest_server_start(&s, q, &err) : NULL;
    if (!srv) {
        log_error("cannot start", LF_S("error", err.message));
        enqueue_close(q);
        metrics_server_stop(ms);
        return 1;
    }
    log_info("listening", LF_S("listen", s.listen_host), LF_I("port", s.listen_port),
             LF_S("public_base_url", s.public_base_url), LF_S("stream", s.keys.events),
             LF_I("tokens", (long long)s.ntokens), LF_S("spool_dir", s.spool_dir),
             LF_I("recording_links", s.recording_link_secret != NULL));
    return run_until_signal(&s, ms, q, srv);
}
