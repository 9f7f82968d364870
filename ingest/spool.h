/* spool — the ingest's local durable queue while Redis is unreachable.
 *
 * Records are single lines appended to `<dir>/events.spool` and fdatasync'ed before
 * spool_append returns, so an acknowledged event survives a crash of the process or the
 * machine. spool_drain hands records, oldest first, to a sink (the Redis stream) in
 * batches and remembers how far it got in `<dir>/events.offset`; when everything is
 * delivered both files are truncated. A crash between a delivered batch and the offset
 * update replays that batch once more: delivery is at least once, and the worker's
 * CallSid claim absorbs the duplicate. One process owns a spool directory (flock). */
#ifndef CALLLOG_SPOOL_H
#define CALLLOG_SPOOL_H

#include <stddef.h>
#include "common/error.h"

typedef struct spool spool;

/* Delivers `n` records (NUL-terminated lines without the newline), oldest first.
 * Returns how many leading records were delivered (0..n). */
typedef size_t (*spool_sink)(void *arg, char *const *records, size_t n);

/* Opens (creating the directory if needed) and locks the spool, dropping a torn last
 * record left by a crash. Returns the spool (caller owns; spool_close), or NULL with
 * `err` filled: CALLLOG_INVALID for a missing or unusable path (empty, too long, under a
 * regular file) or a size limit <= 0, CALLLOG_TRANSIENT when the disk or the lock refuses,
 * CALLLOG_NOMEM. */
spool *spool_open(const char *dir, long max_bytes, calllog_error *err);

/* Appends one record (no newline inside) and makes it durable. Returns 0, or -1 when
 * the write or sync failed or the spool is full. */
int spool_append(spool *s, const char *record, size_t len);

/* Records not yet delivered. */
size_t spool_depth(spool *s);

/* 1 when the spool could take a record now: not full, and a probe write to the
 * directory's disk (written, synced, truncated) succeeds. Otherwise 0, with the real
 * cause in `why` when given ("spool full", "No space left on device", ...). */
int spool_writable(spool *s, char *why, size_t whylen);

/* Delivers pending records through `sink` until it stops taking them or none are left.
 * Returns the number delivered, or -1 on an I/O error. */
long spool_drain(spool *s, spool_sink sink, void *arg);

/* Unlocks and frees the spool. NULL is accepted. */
void spool_close(spool *s);

#endif
