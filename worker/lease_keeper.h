/* lease_keeper — keeps the calls a worker holds while it works on them.
 *
 * Leases are short (WORKER_LEASE_MS, default 15 s), so that the calls of a worker killed
 * with SIGKILL are taken over by the others within seconds (design §3, Crash recovery).
 * A live worker never loses a call however long its RD request or its wait for rate
 * budget takes, because one thread per process renews, every third of the lease (and of
 * WORKER_CLAIM_IDLE_MS):
 *   - in Postgres, the leases of every call the process holds, in one statement;
 *   - in Redis, the idle time of their stream entries (queue_touch), so that XAUTOCLAIM
 *     by another worker takes only the entries of a consumer that stopped renewing.
 * It never revives a lease that has already run out: a holder that lost its lease finds
 * out at its next step, exactly as without the keeper. A call held for longer than
 * LEASE_KEEPER_MAX_HOLD_MS (a thread that hangs) is no longer renewed, so it is taken
 * over instead of being stuck for ever. */
#ifndef CALLLOG_LEASE_KEEPER_H
#define CALLLOG_LEASE_KEEPER_H

#include "worker/settings.h"

/* Longest time one call is kept alive by the keeper. */
#define LEASE_KEEPER_MAX_HOLD_MS (15L * 60 * 1000)

typedef struct lease_keeper lease_keeper;

/* Starts the keeper thread with `slots` slots (one per consumer thread, 1–64). `s` must outlive
 * it. Returns the keeper (lease_keeper_stop frees it) or NULL. */
lease_keeper *lease_keeper_start(const worker_settings *s, int slots);

/* Slot `index` now holds stream entry `entry_id` of `call_sid`, leased to `owner` (the
 * lease itself is taken by the claim; renewing one that is not there changes nothing). */
void lease_keeper_hold(lease_keeper *k, int index, const char *call_sid, const char *owner,
                       const char *entry_id);

/* Slot `index` holds nothing any more. */
void lease_keeper_release(lease_keeper *k, int index);

/* How often the keeper renews, in ms, for these settings. */
long lease_keeper_period_ms(const worker_settings *s);

/* Stops the thread (after the consumers it serves have stopped) and frees the keeper.
 * NULL is accepted. */
void lease_keeper_stop(lease_keeper *k);

#endif
