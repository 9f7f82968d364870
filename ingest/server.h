/* server — calllog-ingest's HTTP front: civetweb, routes, answers, logs and metrics.
 *
 * Routes: POST /twilio/log-call (webhook.c decides, enqueue.c makes it durable),
 * GET /healthz (process up), GET /readyz (Redis reachable or spool writable), and with
 * RECORDING_LINK_SECRET set GET /recordings/<CallSid>?t=<token> (recordings.h, its own
 * log lines and counters). Every webhook answer is logged with the request id and counted
 * by code; refusals by reason. */
#ifndef CALLLOG_INGEST_SERVER_H
#define CALLLOG_INGEST_SERVER_H

#include <stddef.h>

#include "common/error.h"
#include "ingest/enqueue.h"
#include "ingest/settings.h"

typedef struct ingest_server ingest_server;

/* Registers the ingest metrics and starts listening. `s` and `q` must outlive the
 * server. Returns the server (caller owns; ingest_server_stop), or NULL with `err`. */
ingest_server *ingest_server_start(const ingest_settings *s, enqueuer *q, calllog_error *err);

/* Takes the spool-depth collect hook off the metrics registry (no scrape reads the server
 * afterwards), then drains: it requests the process-wide stop (shutdown_request), so
 * /readyz turns 503 (load balancers stop sending) and keep-alive is refused, and once no
 * webhook request is inside its handler the listener stops. Frees the server; `q` may be
 * closed after this returns. */
void ingest_server_stop(ingest_server *srv);

#endif
