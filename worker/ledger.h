/* ledger — the delivery state of every call, in Postgres (Supabase), keyed by CallSid.
 *
 * This is the primary guard against a second RD Station entry (design §3). States:
 * pending → processing (lease owner + expiry) → delivered | skipped | dead, with
 * retry_wait between attempts. A claim is one INSERT … ON CONFLICT … DO UPDATE … WHERE
 * <claimable> RETURNING statement, so two workers racing on one CallSid cannot both win.
 * `rd_post_started_at` is set just before posting to RD Station: a later claim that
 * finds it set must look for the CallSid marker among the deal's notes before posting.
 * Only unnamed statements (PQexecParams) are used, so Supabase's transaction pooler
 * works. One ledger is one connection, used by one thread; it reconnects after a loss.
 *
 * Errors (error.h): calls return CALLLOG_OK, a positive code for a normal "no", or a
 * negative one — CALLLOG_TRANSIENT when Postgres failed (retry later), CALLLOG_PERMANENT
 * when the schema is wrong, CALLLOG_INVALID for bad arguments — and ledger_error says
 * why. Counting calls return a count, or -1. */
#ifndef CALLLOG_LEDGER_H
#define CALLLOG_LEDGER_H

#include <stddef.h>

#include "common/error.h"

typedef struct ledger ledger;

typedef enum {
    LEDGER_CLAIM_WON,      /* this worker now holds the lease */
    LEDGER_CLAIM_FINISHED, /* delivered or skipped already: a duplicate, acknowledge it */
    LEDGER_CLAIM_DEAD,     /* dead already: it belongs on the dead stream */
    LEDGER_CLAIM_BUSY      /* another worker holds a valid lease */
} ledger_claim_status;

typedef struct ledger_claim_result {
    ledger_claim_status status;
    int attempts;        /* claims so far, this one included when WON */
    int post_started;    /* 1 when an earlier attempt may have posted to RD */
    char state[16];      /* the row's state after the statement */
    char rd_deal_id[64]; /* the deal chosen by an earlier attempt, if any */
    char reason[256];    /* skipped/dead: the recorded reason */
    long lease_left_ms;  /* BUSY: how long the other worker's lease still runs */
} ledger_claim_result;

typedef struct ledger_delivery {
    const char *rd_contact_id;
    const char *rd_deal_id;
    const char *rd_note_id; /* may be NULL (task-only mode) */
    const char *rd_task_id; /* may be NULL (note-only mode) */
    int recovered;          /* 1 when found by marker instead of posted now */
} ledger_delivery;

/* Connects to `database_url` (libpq URI or key=value string). Returns the ledger
 * (caller owns; ledger_close) or NULL with `err` filled (no password in it). */
ledger *ledger_open(const char *database_url, calllog_error *err);

/* The last failure of any call below: its code and a message without the password,
 * like libpq's PQerrorMessage. Valid until the next call on `l`; for NULL, "no ledger". */
const calllog_error *ledger_error(const ledger *l);

/* How many statements `l` has sent to Postgres so far, each one round trip (a statement
 * sent again after a reconnection counts again). For tests and benchmarks; 0 for NULL. */
long ledger_round_trips(const ledger *l);

/* Checks that the migrations ran (schema, table, columns). Returns 0, or
 * CALLLOG_PERMANENT with a ledger_error that says what to run. */
int ledger_check_schema(ledger *l);

/* Claims `call_sid` for `owner` for `lease_ms`. Returns 0 with `out` filled, or a
 * negative code on a database error (the caller retries later). */
int ledger_claim(ledger *l, const char *call_sid, const char *call_status, const char *owner,
                 long lease_ms, const char *event_json, ledger_claim_result *out);

/* The outcomes below apply only while `owner` holds the lease (owner NULL: whatever
 * the lease, for poison entries that were never claimed). They return 0 when
 * recorded, CALLLOG_LEASE_LOST when the lease was lost (another worker took over), a
 * negative code on error. */

/* Records the intent to post on `deal_id`, just before the RD request, and renews the
 * lease for `lease_ms`. Returns CALLLOG_LEASE_LOST when the lease has already expired: the caller
 * must not post, another worker may be taking over. */
int ledger_mark_posting(ledger *l, const char *call_sid, const char *owner, const char *deal_id,
                        long lease_ms);
/* Forgets the deal an earlier attempt chose (rd_deal_id, set by ledger_mark_posting) while
 * `owner` holds the call: that deal answered 404 (deleted, merged, no longer visible), so the
 * next claim reports no rd_deal_id and the next attempt looks the deal up again instead of
 * posting to the vanished one. rd_post_started_at stays: the marker is still looked for.
 * Returns 0, CALLLOG_LEASE_LOST when the row is not (or no longer) `owner`'s, or a negative
 * code on error. */
int ledger_forget_deal(ledger *l, const char *call_sid, const char *owner);

int ledger_mark_delivered(ledger *l, const char *call_sid, const char *owner,
                          const ledger_delivery *d);
int ledger_mark_skipped(ledger *l, const char *call_sid, const char *owner, const char *reason);
int ledger_mark_retry(ledger *l, const char *call_sid, const char *owner, long delay_ms,
                      const char *error, long http_status);
int ledger_mark_dead(ledger *l, const char *call_sid, const char *owner, const char *reason,
                     const char *error, long http_status);

/* Renews, in one statement, the leases that each owners[i] still holds on call_sids[i]
 * (running leases only: one that has expired, or was taken over, stays as it is) to
 * `lease_ms` from now. Returns how many were renewed, or -1 (ledger_error). */
long ledger_renew_leases(ledger *l, const char *const *call_sids, const char *const *owners,
                         size_t n, long lease_ms);

/* Looks up `call_sids[0..n)` in one round trip and sets unseen[i] to 1 for each that the
 * ledger has no row for (never claimed by any worker), 0 otherwise. Returns how many
 * are unseen, or -1 (ledger_error). */
long ledger_unseen(ledger *l, const char *const *call_sids, size_t n, unsigned char *unseen);

/* Admin: makes a dead (or stuck) call claimable again. Returns 0, CALLLOG_NOT_FOUND when no such
 * row, or a negative code. */
int ledger_reset(ledger *l, const char *call_sid);

/* Admin: number of rows per state, written as "state=count" pairs into `out`. */
int ledger_state_counts(ledger *l, char *out, size_t outlen);

/* Doctor: which of Supabase's API roles (`anon`, `authenticated`) exist, written
 * space-separated into `roles` ("" on plain PostgreSQL), and which of them could read
 * calllog.deliveries into `readers`: USAGE on the schema and SELECT on the table, with row
 * level security off, or on with a policy (or the role bypasses it). Read-only. Returns
 * how many can read (0 is the safe answer), or -1 (ledger_error). */
int ledger_check_roles(ledger *l, char *roles, size_t roleslen, char *readers, size_t readerslen);

/* Closes the connection. NULL is accepted. */
void ledger_close(ledger *l);

/* Runs one unnamed statement (at most 8 text parameters) on the ledger's connection, for a
 * module that keeps its own table in schema calllog on the same connection (followup.c),
 * with the ledger's statement timeout, scrubbed errors and reconnect: after a lost
 * connection the statement runs once more, so it must be safe to run twice. `what` names
 * it in errors. `rows` 1 expects rows back (PGRES_TUPLES_OK), 0 a command. Returns the
 * result (caller owns; PQclear), or NULL with ledger_error filled. */
struct pg_result;
struct pg_result *ledger_exec(ledger *l, const char *what, const char *sql, int nparams,
                              const char *const *params, int rows);

#endif
