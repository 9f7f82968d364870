/* stream_entry — the one events-stream entry: its fields and their encodings.
 *
 * The entry is written in four places — the ingest (XADD, or a spool line first), the
 * reconciler's Lua append, the retry promoter (Lua, from a retry-set member) and the
 * dead-letter replay (Lua) — and read by the worker and the admin. Its field names exist
 * here only, as string macros: the C code uses stream_entry_fields and the codec below,
 * and the Lua scripts are assembled from the same macros at compile time, so a rename
 * changes every writer and reader at once (tests/unit/test_stream_entry.c runs every
 * script and checks that it writes exactly this field set).
 *
 * Flat stream fields, in order (design §2 Redis keys):
 *   call_sid, status, attempt (retries so far, "0" from the ingest), request_id,
 *   received_at (RFC 3339), event (the normalized JSON, common/event.h)
 * and, only on an entry put back by `calllog-admin dead replay`, replayed_from (the dead
 * entry's id). The JSON form (spool lines, retry-set members) is an object with the same
 * names, attempt a number, plus from_id (the stream id it came from) when known. */
#ifndef CALLLOG_STREAM_ENTRY_H
#define CALLLOG_STREAM_ENTRY_H

#include <hiredis/hiredis.h>
#include <stddef.h>

#define STREAM_ENTRY_CALL_SID "call_sid"
#define STREAM_ENTRY_STATUS "status"
#define STREAM_ENTRY_ATTEMPT "attempt"
#define STREAM_ENTRY_REQUEST_ID "request_id"
#define STREAM_ENTRY_RECEIVED_AT "received_at"
#define STREAM_ENTRY_EVENT "event"
#define STREAM_ENTRY_REPLAYED_FROM "replayed_from" /* optional, see above */
#define STREAM_ENTRY_FROM_ID "from_id"             /* JSON form only */

/* How many fields every entry has, and how many XADD arguments they make. */
#define STREAM_ENTRY_NFIELDS 6
#define STREAM_ENTRY_ARGC (2 * STREAM_ENTRY_NFIELDS)

/* The field names in the order they are written. */
extern const char *const stream_entry_fields[STREAM_ENTRY_NFIELDS];

/* One entry. Decoded entries own their strings (stream_entry_free); an entry the caller
 * fills may point at anything that outlives its use. */
typedef struct stream_entry {
    char id[64]; /* the stream id ("" when not read from a stream) */
    const char *call_sid;
    const char *status;
    const char *request_id;
    const char *received_at;
    const char *event; /* the normalized JSON */
    int attempt;       /* retries so far (0 for an event straight from the ingest) */
    long deliveries;   /* times the group delivered it (1 = first time) */
    char *storage;     /* the decoded strings, owned (NULL for a caller-filled entry) */
} stream_entry;

/* Writes the field/value pairs for XADD into `argv` (STREAM_ENTRY_ARGC slots); the
 * attempt is formatted into `num` (at least 16 bytes). Returns STREAM_ENTRY_ARGC. */
int stream_entry_to_argv(const stream_entry *e, const char **argv, char *num, size_t numlen);

/* Decodes an [id, [field, value, ...]] stream reply element into `out` (deliveries 1).
 * Returns 0, or -1 when it is not one or a field is missing (`out` is then empty). */
int stream_entry_from_reply(const redisReply *item, stream_entry *out);

/* The JSON form of `e` (from_id included when `e->id` is set), compact, on one line.
 * Returns a malloc'ed string, or NULL out of memory. */
char *stream_entry_to_json(const stream_entry *e);

/* Decodes the JSON form (attempt and from_id optional) into `out`, id set from from_id.
 * Returns 0, or -1 when it is not an object with every string field. */
int stream_entry_from_json(const char *text, size_t len, stream_entry *out);

/* Frees what a decoded entry owns and clears it. NULL is accepted. */
void stream_entry_free(stream_entry *e);

#endif
