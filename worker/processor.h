/* processor — what happens to one events-stream entry, from claim to acknowledgement.
 *
 *   parse → terminal status? → claim in Postgres → enrich from Twilio → find the RD
 *   contact and open deal (cached) → if an earlier attempt may have posted, look for the
 *   CallSid marker → record the intent → post note/task → record delivered → XACK
 *
 * Every way out records its outcome before the entry leaves the stream (design §3):
 * delivered/skipped/duplicate/ignored are acknowledged; transient failures are
 * rescheduled on the retry set with backoff; permanent ones and exhausted attempts go
 * to the dead stream. When Postgres or Redis itself fails the entry is left pending
 * for the same or another worker to take again. */
#ifndef CALLLOG_PROCESSOR_H
#define CALLLOG_PROCESSOR_H

#include <hiredis/hiredis.h>

#include "worker/ledger.h"
#include "worker/note_template.h"
#include "worker/queue.h"
#include "worker/rdstation.h"
#include "worker/settings.h"
#include "worker/twilio_rest.h"

/* One consumer thread's share of the RD rate limit, which the consumer keeps. The RD
 * client pays for each of its requests through the rd_acquire_fn the consumer gave it.
 * The processor pays ahead for its POST, before renewing the lease, so that no wait for
 * budget stretches between the renewal and the POST: `prepay` waits for one request's
 * budget and keeps it for the RD client's next request, which then does not wait (returns
 * 0, or -1 when stopping or the limiter is unavailable: nothing kept); `forfeit` drops a
 * kept budget that no request used (the lease was lost, or the entry is done). */
typedef struct rd_budget {
    int (*prepay)(void *arg);
    void (*forfeit)(void *arg);
    void *arg;
} rd_budget;

/* One worker thread's connections and identity. */
typedef struct worker_links {
    const worker_settings *settings;
    const note_template *tpl;
    redisContext *redis;
    ledger *ledger;
    rd_client *rd;
    twilio_client *twilio; /* NULL when enrichment is off */
    char owner[192];       /* lease owner: consumer name + thread number */
    rd_budget budget;      /* the shared RD limiter, paid ahead by post_once */
    const char *read_next; /* consumer name: acknowledging an entry also reads the next new
                              one into `next` (queue_done_next); NULL: it does not */
    stream_entry next;     /* that entry (id "" when none); the consumer handles it next */
} worker_links;

typedef enum {
    PROCESSOR_DELIVERED,
    PROCESSOR_RECOVERED, /* an earlier attempt had posted: found by marker */
    PROCESSOR_SKIPPED,   /* unknown caller under the skip policy, or no phone */
    PROCESSOR_DUPLICATE, /* already delivered/skipped/dead, or held by another worker */
    PROCESSOR_IGNORED,   /* not a terminal call status */
    PROCESSOR_RETRY,
    PROCESSOR_DEAD,
    PROCESSOR_DEFERRED, /* Postgres or Redis failed: parked for a few seconds */
    PROCESSOR_WAITING   /* another worker holds the lease: looked at again when it runs out */
} processor_outcome;

/* Registers the worker's metrics (once, before threads start). Returns 0 or -1. */
int processor_metrics_init(void);

/* The outcome's name ("delivered", ...). */
const char *processor_outcome_name(processor_outcome o);

/* Handles one entry completely. Never frees `e`. */
processor_outcome processor_handle(worker_links *w, const stream_entry *e);

#endif
