/* metrics_server — serves GET /metrics (Prometheus text) on its own listener.
 *
 * Both programs expose their registry on METRICS_LISTEN, separate from the public
 * webhook port so that metrics are never reachable from the internet by accident. */
#ifndef CALLLOG_METRICS_SERVER_H
#define CALLLOG_METRICS_SERVER_H

#include <stddef.h>
#include "common/error.h"

typedef struct metrics_server metrics_server;

/* Starts listening on host:port ("" host = all addresses). Returns the server (owned by
 * the caller, released with metrics_server_stop), or NULL with `err` filled. */
metrics_server *metrics_server_start(const char *host, int port, calllog_error *err);

/* Stops the listener and frees the server. NULL is accepted. */
void metrics_server_stop(metrics_server *s);

#endif
