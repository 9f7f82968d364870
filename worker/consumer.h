/* consumer — the worker's threads: N consumers of the events stream and one promoter.
 *
 * Each consumer thread owns its connections (Redis, Postgres, RD Station, Twilio) and
 * loops: take over an entry idle too long on a dead consumer (XAUTOCLAIM, at most once
 * a second), else block on XREADGROUP for a new one, and hand it to the processor.
 * Connections lost are re-made with backoff. The promoter moves due retries back to
 * the stream, sleeping until the earliest is due (at most a second, so entries added
 * by other workers are not late). A lease keeper (lease_keeper.h) renews what the
 * consumers hold. All threads stop once shutdown_requested() (shutdown.h): consumers
 * finish or hand back the entry they hold. */
#ifndef CALLLOG_CONSUMER_H
#define CALLLOG_CONSUMER_H

#include "worker/note_template.h"
#include "worker/settings.h"

typedef struct consumers consumers;

/* Starts `s->concurrency` consumer threads, the promoter and the lease keeper. `s` and
 * `tpl` must outlive them. Returns the group (consumers_join frees it), or NULL when a
 * thread could not be started (then none is left running: the stop was requested). */
consumers *consumers_start(const worker_settings *s, const note_template *tpl);

/* Waits for every thread to finish (after shutdown_request) and frees the group. */
void consumers_join(consumers *g);

#endif
