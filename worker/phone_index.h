/* phone_index — the RD account's phones in Redis, so that a note costs one RD request.
 *
 * RD Station allows 120 requests a minute per account (reference/rdstation.md), and
 * finding a caller live costs one contact search per phone form tried plus a deal look-up:
 * a first-time caller cost two to four requests besides the note (issue 11). The index
 * answers those look-ups from Redis: the hash <prefix>:phoneidx maps every phone of every
 * contact, under the keys phone_index_keys() gives (phone.h: one key per form the live
 * look-up's confirmation would accept), to a small JSON value {"c": contact id, "n": name,
 * "d": open deal id or "", "u": the deal's owner or ""}, readable with redis-cli. When two
 * contacts share a phone, the one with an open deal wins (then the first listed).
 *
 * Building it: one worker at a time (the holder of the lease <prefix>:phoneidx:leader,
 * leader.h) pages the account's contact list — v1 GET /contacts, whose items embed their
 * deals' summaries; v2 the open deals (GET /deals?filter=status:ongoing) then the
 * contacts — in the rate limiter's sync lane (ratelimit.h: after every note and live
 * look-up, and never more than RDSTATION_SYNC_MAX_SHARE of the limit). Neither API
 * documents a "changed since" filter, so every refresh is full: the new index is built in
 * memory, written to a key of its own and swapped in with RENAME in one script that also
 * records when (<prefix>:phoneidx:meta: refreshed_ms, contacts, phones, pages,
 * duration_ms), so readers see the old index or the new one, never half of one. A
 * refresh runs every CACHE_TTL_S, the time a cached look-up may be stale; a failed one is
 * retried with a backoff. RD lists stop at 10 000 records: contacts past that are found
 * live.
 *
 * Reading it (phone_index_find) is one pipelined round trip. An index older than two
 * refresh intervals and an hour (the sync failing for that long, not merely held back by
 * a backlog of notes, which it must yield to) is not used. A phone the index does not hold is
 * not taken for "no such contact": the caller falls back to the live look-up, so a
 * contact added after the last refresh is still found. A contact without an open deal
 * (or with several and no updated_at to choose by) comes back as PHONE_INDEX_NO_DEAL
 * with its id, for a live deal look-up. A deal closed before the last refresh is not in
 * the index, so it receives no note. */
#ifndef CALLLOG_PHONE_INDEX_H
#define CALLLOG_PHONE_INDEX_H

#include <hiredis/hiredis.h>

#include "common/error.h"
#include "common/keys.h"
#include "worker/rdstation.h"
#include "worker/settings.h"

typedef enum {
    PHONE_INDEX_UNKNOWN = 0, /* not in the index, or no usable index: look it up live */
    PHONE_INDEX_FOUND,       /* contact and open deal */
    PHONE_INDEX_NO_DEAL      /* contact only: find its deal live */
} phone_index_status;

typedef struct phone_index_hit {
    char contact_id[64];
    char contact_name[256];
    char deal_id[64];
    char deal_user_id[64];
} phone_index_hit;

/* Looks `phone_e164` up in an index built less than `max_age_ms` ago. Redis errors and
 * unreadable entries are PHONE_INDEX_UNKNOWN (the live look-up then answers). */
phone_index_status phone_index_find(redisContext *c, const calllog_keys *k, const char *phone_e164,
                                    long long max_age_ms, phone_index_hit *out);

/* How old an index phone_index_find may use: two refresh intervals, and at least an hour. */
long long phone_index_max_age_ms(const worker_settings *s);

/* The figures of one refresh. */
typedef struct phone_index_stats {
    long pages, contacts, phones, deals;
} phone_index_stats;

/* Builds the index anew from `rd` (a client whose requests take the sync lane) while `me`
 * holds the lease (renewed between pages for `lease_ms`), and swaps it in. Returns
 * CALLLOG_OK, or a negative code with `err` filled (the old index stays). */
calllog_code phone_index_refresh(redisContext *c, const calllog_keys *k, rd_client *rd,
                                 const char *me, long lease_ms, phone_index_stats *stats,
                                 calllog_error *err);

/* When the index was last refreshed (epoch ms, 0 when never; -1 on a Redis error). */
long long phone_index_refreshed_ms(redisContext *c, const calllog_keys *k);

/* What `calllog-admin status` shows of the index: its last refresh and who keeps it. */
typedef struct phone_index_state {
    long long refreshed_ms, contacts, phones, pages, duration_ms;
    char holder[160]; /* "" when no worker holds the lease */
    long long holder_ttl_ms;
} phone_index_state;

/* Reads the index's state (one pipelined round trip). Returns 0, or -1 on a Redis error. */
int phone_index_state_read(redisContext *c, const calllog_keys *k, phone_index_state *out);

/* The sync thread: takes the lease and refreshes every `s->cache_ttl_s`. NULL with
 * *failed 0 when RDSTATION_PHONE_INDEX=0 or CACHE_TTL_S=0; *failed 1 when it could not
 * start. */
typedef struct phone_index_sync phone_index_sync;
phone_index_sync *phone_index_sync_start(const worker_settings *s, int *failed);

/* Joins the thread (after shutdown_request()) and frees it. NULL is fine. */
void phone_index_sync_stop(phone_index_sync *p);

#endif
