/* enqueue — makes a normalized event durable: XADD to the events stream, else the spool.
 *
 * Owns a small pool of Redis connections (one per server thread, made lazily) and the
 * spool. While the spool holds records, new events are appended to it too, so that
 * events reach the stream in acknowledgement order; a background thread replays the
 * spool into the stream as soon as Redis answers again. */
#ifndef CALLLOG_ENQUEUE_H
#define CALLLOG_ENQUEUE_H

#include "common/error.h"
#include "common/stream_entry.h"
#include "ingest/settings.h"

typedef struct enqueuer enqueuer;

typedef enum {
    ENQUEUE_STREAM, /* added to the Redis stream */
    ENQUEUE_SPOOL,  /* fsync'ed to the local spool */
    ENQUEUE_FAILED  /* neither: the caller answers 503 */
} enqueue_result;

/* Opens the spool and starts the replay thread; Redis may be down. Returns the enqueuer
 * (caller owns; enqueue_close), or NULL with `err` filled. */
enqueuer *enqueue_open(const ingest_settings *s, calllog_error *err);

/* Makes one entry durable (its id is ignored: Redis assigns it). Thread-safe. */
enqueue_result enqueue_put(enqueuer *q, const stream_entry *e);

/* 1 when Redis (connected and authenticated) answers PING or the spool can take records
 * (a probe write succeeds). `redis_why` and `spool_why` get "ok" or the real cause. */
int enqueue_ready(enqueuer *q, char *redis_why, char *spool_why, size_t whylen);

/* Records waiting in the spool. */
size_t enqueue_spool_depth(enqueuer *q);

/* Stops the replay thread (after one last replay attempt), closes connections. */
void enqueue_close(enqueuer *q);

#endif
