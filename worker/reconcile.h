/* reconcile — Twilio is the source of truth: calls whose webhook never arrived still
 * get their note.
 *
 * The webhook is an accelerator. Twilio retries a callback for at most 15 s, so an
 * ingest that is down for a minute, or a Redis crash right after acknowledging, would
 * lose calls for good. Every worker runs a reconciler thread; exactly one of them, the
 * holder of the lease <prefix>:reconcile:leader (SET NX PX, renewed every tick and
 * between pages, taken over by another worker within TWILIO_RECONCILE_LEASE_MS of its
 * holder dying), does the work. Every TWILIO_RECONCILE_INTERVAL_MS it pages
 * GET /Accounts/{AC}/Calls.json, newest first, and examines the calls that ended in the
 * window (checkpoint - TWILIO_RECONCILE_OVERLAP_MS, now - TWILIO_RECONCILE_GRACE_MS]
 * (Twilio's EndTime filter has day granularity; the window is applied here). Paging
 * stops at the first call that started before the window's lower edge minus
 * TWILIO_RECONCILE_MAX_CALL_MS, the longest a call can last, or at the last page.
 *
 * A terminal parent call (no parent_call_sid; child legs of a <Dial> are part of their
 * parent's conversation), to or from one of TWILIO_RECONCILE_NUMBERS when that is set,
 * that the ledger has never seen (one Postgres round trip per page) is appended to the
 * events stream like a webhook event built from the Call resource, with
 * "source":"reconcile". From then on it is an ordinary event: claim, enrichment, note,
 * retries, dead letters; the ledger claim keeps it effectively once against a late
 * webhook. The append is a Lua script that also records the CallSid in
 * <prefix>:reconcile:enqueued, so that a backlog not yet claimed is not appended again
 * by the next pass, and that refuses when the caller no longer holds the lease.
 *
 * After a complete pass the checkpoint (the window's upper edge) and the run's figures
 * go to the hash <prefix>:reconcile; a failed pass (Twilio 429 after its retries, any
 * error) leaves the checkpoint alone and is tried again after a backoff, capped at the
 * interval. The first pass looks back TWILIO_RECONCILE_LOOKBACK_MS. The leader alerts
 * when no pass has succeeded for three intervals. Reconciliation never blocks delivery:
 * it has its own thread and connections. */
#ifndef CALLLOG_RECONCILE_H
#define CALLLOG_RECONCILE_H

#include <hiredis/hiredis.h>

#include "worker/settings.h"
#include "worker/twilio_rest.h"

/* Which ended calls one pass examines (epoch ms). */
typedef struct reconcile_window {
    long long lower_ms;       /* exclusive: checkpoint minus the overlap */
    long long upper_ms;       /* inclusive: now minus the grace period */
    long long stop_before_ms; /* paging stops at a call started before this */
} reconcile_window;

/* What a listed call is to the reconciler. */
typedef enum {
    RECONCILE_CANDIDATE,    /* a call to look up in the ledger */
    RECONCILE_CHILD_LEG,    /* parent_call_sid set: its parent gets the note */
    RECONCILE_NOT_TERMINAL, /* still queued, ringing or in progress */
    RECONCILE_OUTSIDE,      /* ended outside the window */
    RECONCILE_OTHER_NUMBER, /* neither side is one of TWILIO_RECONCILE_NUMBERS */
    RECONCILE_UNUSABLE      /* no SID or status */
} reconcile_verdict;

/* The reconciler's shared state, as kept in Redis (0 / "" when unknown). */
typedef struct reconcile_state {
    long long checkpoint_ms, last_run_ms, last_success_ms, next_run_ms;
    long long last_examined, last_backfilled;
    char last_result[16]; /* "ok" or "error" */
    char last_error[256];
    char holder[192]; /* the consumer holding the lease, "" when none */
    long long holder_ttl_ms;
} reconcile_state;

typedef struct reconciler reconciler;

/* Starts the reconciler thread (when s->reconcile_interval_ms > 0). `s` must outlive it.
 * Returns it, or NULL when reconciliation is off or the thread cannot start (`*failed`
 * then says which: 0 off, 1 failure). */
reconciler *reconciler_start(const worker_settings *s, int *failed);

/* Joins the thread (after shutdown_request), giving up the lease when held, and frees
 * it. NULL is accepted. */
void reconciler_stop(reconciler *r);

/* The window of a pass at `now_ms` after `checkpoint_ms` (0: never ran). */
reconcile_window reconcile_window_for(const worker_settings *s, long long now_ms,
                                      long long checkpoint_ms);

/* Classifies one listed call. */
reconcile_verdict reconcile_classify(const worker_settings *s, const reconcile_window *w,
                                     const twilio_call_summary *call);

/* The normalized event's JSON (event.h) for a listed call, "source":"reconcile", received
 * at `received_at` (RFC 3339). Returns a new string (caller frees) or NULL out of memory. */
char *reconcile_event(const twilio_call_summary *call, const char *received_at,
                      const char *request_id);

/* Reads the shared state. Returns 0, or -1 on a Redis error. */
int reconcile_state_read(redisContext *c, const calllog_keys *k, reconcile_state *out);

#endif
