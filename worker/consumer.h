/* consumer — the worker's threads: N consumers of the events stream and one promoter.
 *
 * Each consumer thread owns its connections (Redis, Postgres, RD Station, Twilio) and
 * loops: take over an entry idle too long on a dead consumer (XAUTOCLAIM, at most once
 * a second), else block on XREADGROUP for a new one, and hand it to the processor.
 * Connections lost are re-made with backoff. The promoter moves due retries back to
 * the stream, sleeping until the earliest is due (at most a second, so entries added
 * by other workers are not late). All threads stop when `stopping` becomes non-zero:
 * consumers finish or hand back the entry they hold. */
#ifndef CALLLOG_CONSUMER_H
#define CALLLOG_CONSUMER_H

#include "note_template.h"
#include "settings.h"

typedef struct consumers consumers;

/* Starts `s->concurrency` consumer threads and the promoter. `s`, `tpl` and `stopping`
 * must outlive them. Returns the group (consumers_join frees it) or NULL. */
consumers *consumers_start(const worker_settings *s, const note_template *tpl,
                           const volatile int *stopping);

/* Waits for every thread to finish (after `*stopping` was set) and frees the group. */
void consumers_join(consumers *g);

#endif
