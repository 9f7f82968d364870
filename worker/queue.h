/* queue — the worker's side of Redis: the events stream, the retry set, the dead stream.
 *
 * Reads go through consumer group `calllog-workers` (XREADGROUP, XAUTOCLAIM). Every move
 * that touches two keys is one Lua script, so an event is never in neither or both
 * places (design §3 Durability):
 *   done       XACK + XDEL on the events stream (optionally + XREADGROUP of the next entry)
 *   reschedule ZADD retry <due-ms> <entry> + XACK + XDEL
 *   bury       XADD dead <fields> + XACK + XDEL
 *   promote    due members of retry → XADD events + ZREM (any worker runs it)
 * Retry scores are due times in epoch ms on Redis's own clock (TIME), so workers with
 * skewed clocks agree.
 *   replay     (admin) dead entry → XADD events (attempt 0) + XDEL dead
 * Entries are stream_entry (common/stream_entry.h), whose field names the scripts share.
 * Acknowledged entries are deleted from the stream, so its length is the backlog and
 * nothing trims an entry that has not been acknowledged. */
#ifndef CALLLOG_QUEUE_H
#define CALLLOG_QUEUE_H

#include <hiredis/hiredis.h>
#include <stddef.h>

#include "common/error.h"
#include "common/keys.h"
#include "common/stream_entry.h"

/* Why an event goes to the dead stream, and what happened. */
typedef struct dead_letter {
    const char *reason; /* permanent_error, attempts_exhausted, poison, malformed_event, ... */
    const char *error;  /* secret-free description */
    long http_status;   /* 0 when none */
    int attempts;
} dead_letter;

/* Creates the consumer group (from the stream's start, MKSTREAM); exists already is fine. */
int queue_ensure_group(redisContext *c, const calllog_keys *k, calllog_error *err);

/* Blocks up to `block_ms` for one new entry for `consumer`. */
calllog_code queue_read(redisContext *c, const calllog_keys *k, const char *consumer, long block_ms,
                        stream_entry *out, calllog_error *err);

/* Takes over one entry idle for at least `idle_ms` on any consumer (XAUTOCLAIM), with
 * its delivery count. `cursor` (initially "0-0", 64 bytes) carries the scan position. */
calllog_code queue_reclaim(redisContext *c, const calllog_keys *k, const char *consumer,
                           long idle_ms, char *cursor, stream_entry *out, calllog_error *err);

/* The entry is finished (delivered, skipped, duplicate, ignored): XACK + XDEL. */
int queue_done(redisContext *c, const calllog_keys *k, const stream_entry *e, calllog_error *err);

/* Like queue_done, and in the same round trip (one script) reads the next new entry for
 * `consumer` without blocking, so a worker with a backlog pays one round trip per entry
 * for both. Returns CALLLOG_OK with `next` filled (caller frees: stream_entry_free),
 * CALLLOG_NOT_FOUND when there was no new entry (`next` is empty; the entry is
 * acknowledged all the same), or CALLLOG_TRANSIENT with `err` when the acknowledgement
 * failed (nothing changed). `consumer` NULL reads nothing (a plain queue_done). */
calllog_code queue_done_next(redisContext *c, const calllog_keys *k, const stream_entry *e,
                             const char *consumer, stream_entry *next, calllog_error *err);

/* Moves the entry to the retry set, due `delay_ms` from now (Redis's clock) with
 * attempt + 1, atomically. */
int queue_reschedule(redisContext *c, const calllog_keys *k, const stream_entry *e, long delay_ms,
                     calllog_error *err);

/* Like queue_reschedule, but the attempt number stays: for waits that are not attempts
 * (another worker holds the lease, the database is down). */
int queue_park(redisContext *c, const calllog_keys *k, const stream_entry *e, long delay_ms,
               calllog_error *err);

/* Resets the idle time of those entries `ids[0..n)` that are still pending on `consumer`
 * (entries finished or taken over meanwhile are left alone), so a live holder keeps
 * them: XAUTOCLAIM by another worker only takes entries idle for WORKER_CLAIM_IDLE_MS.
 * The delivery count does not change. Returns how many were touched, or -1. */
long queue_touch(redisContext *c, const calllog_keys *k, const char *consumer,
                 const char *const *ids, size_t n, calllog_error *err);

/* Moves the entry to the dead stream with the reason, atomically. */
int queue_bury(redisContext *c, const calllog_keys *k, const stream_entry *e, const dead_letter *d,
               calllog_error *err);

/* Moves up to `limit` due retries back to the stream. Writes how many moved and how
 * long until the next one is due (ms, -1 when the set is empty). Returns 0 or -1. */
int queue_promote(redisContext *c, const calllog_keys *k, long limit, long *moved,
                  long long *next_due_in_ms, calllog_error *err);

/* Admin: puts dead entry `id` back on the events stream (attempt 0) and removes it from
 * the dead stream. Returns 0, 1 when there is no such entry, -1 on error. */
int queue_replay_dead(redisContext *c, const calllog_keys *k, const char *id, calllog_error *err);

/* Depths for metrics and the admin: events backlog, pending in the group, retry, dead. */
typedef struct queue_depths {
    long long events, pending, retry, dead;
} queue_depths;
int queue_depths_read(redisContext *c, const calllog_keys *k, queue_depths *out);

#endif
