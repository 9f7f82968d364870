/* ledger — the delivery state of every call in Postgres (Supabase), keyed by CallSid.
 *
 * The table is created by deploy/supabase/migrations/20261124000000_calllog_deliveries.sql.
 * Every statement here is one self-contained, auto-committed PQexecParams call: no named
 * prepared statement (Supabase's transaction pooler on port 6543 hands each transaction to
 * any server connection, so a name prepared on one is unknown on the next), no SET, no
 * explicit transaction. For the same reason nothing relies on session state:
 *
 *  - application_name is a connection parameter (fallback_application_name, so one given
 *    in DATABASE_URL wins); poolers pass it on.
 *  - The statement timeout is enforced here, not with SET (lost in transaction mode) nor
 *    with the `options` startup parameter (PgBouncer-style poolers refuse connections that
 *    carry it). A statement that has no answer after STATEMENT_TIMEOUT_MS is cancelled;
 *    if even the cancel gets no answer within CANCEL_GRACE_MS, the connection is dropped
 *    and counts as lost. Operators on a direct connection may still add
 *    `options=-c statement_timeout=...` to DATABASE_URL.
 *
 * A lost connection (server restart, pooler failover, network cut) is reset once and the
 * statement run once more. Every statement is safe to repeat:
 *  - the claim: if the first run committed but its answer was lost, the second finds the
 *    row `processing` under a valid lease held by this very owner, which is reported as
 *    WON (only on the repeat: the owner string is this thread's identity);
 *  - the marks: an owner's mark also matches a row already in the target state under the
 *    same owner (lease_owner is kept after the lease ends, as "who held it last"), so a
 *    repeat records the same outcome again and reports 0;
 *  - reset and the read-only queries are idempotent anyway.
 *
 * Errors never carry the connection string; the password (as given and URL-decoded) is
 * scrubbed from every message libpq produces. */
#include "worker/ledger.h"

#include <libpq-fe.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/redact.h"
#include "common/timing.h"

/* The calllog.schema_version this code needs (ledger_check_schema). */
#define LEDGER_SCHEMA_VERSION 1
/* How long one statement may take before it is cancelled. */
#define STATEMENT_TIMEOUT_MS 10000
/* How long a cancelled statement may take to answer before the connection is dropped. */
#define CANCEL_GRACE_MS 2000
/* Every parameter is sent as `text` (pg_type oid 25) and cast in SQL where needed. */
#define TEXT_OID 25
#define MAX_PARAMS 8

#define MIGRATION_HINT                                                                             \
    "run deploy/supabase/migrations/*.sql (psql \"$DATABASE_URL\" -v ON_ERROR_STOP=1 -f "          \
    "<file>) or `supabase db push`"

struct ledger {
    PGconn *conn;
    calllog_error err; /* the last failure (ledger_error) */
    char *secret[2];   /* the password as written in the URL and decoded; scrubbed from errors */
    long round_trips;  /* statements sent (ledger_round_trips) */
};

/* ---- errors ---------------------------------------------------------------------- */

/* Records the failure `code` with a formatted message as the ledger's last error (none
 * without a ledger). Returns `code`. */
__attribute__((format(printf, 3, 4))) static calllog_code ledger_fail(ledger *l, calllog_code code,
                                                                      const char *fmt, ...)
{
    va_list ap;
    if (l == NULL)
        return code;
    error_clear(&l->err);
    l->err.code = code;
    va_start(ap, fmt);
    vsnprintf(l->err.message, sizeof l->err.message, fmt, ap);
    va_end(ap);
    return code;
}

/* Fills `err` with "<what>: <libpq message>", scrubbed. */
static void conn_err(ledger *l, const char *what, const char *msg)
{
    char clean[512];
    redact_copy(clean, sizeof clean, msg, (const char *const *)l->secret, 2, REDACT_ONE_LINE);
    ledger_fail(l, CALLLOG_TRANSIENT, "%s: %s", what, clean[0] ? clean : "unknown libpq error");
}

/* Fills `err` from a failed statement result: SQLSTATE and primary message, plus the
 * migration hint when the schema or table is missing. */
static void result_err(ledger *l, const char *what, const PGresult *r)
{
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    char clean[384];
    if (!msg) {
        conn_err(l, what, PQresultErrorMessage(r));
        return;
    }
    redact_copy(clean, sizeof clean, msg, (const char *const *)l->secret, 2, REDACT_ONE_LINE);
    int missing = state && (strcmp(state, "42P01") == 0 || strcmp(state, "3F000") == 0);
    ledger_fail(l, CALLLOG_TRANSIENT, "%s: %s (SQLSTATE %s)%s%s", what, clean, state ? state : "?",
                missing ? ": " : "", missing ? MIGRATION_HINT : "");
}

/* ---- connection ------------------------------------------------------------------ */

/* Remembers the password of `url` in both forms it can take in an error message: as
 * libpq decoded it and as typed between "user:" and "@" in a URI. */
static void remember_secrets(ledger *l, const char *url)
{
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(url, &perr);
    if (perr)
        PQfreemem(perr);
    for (PQconninfoOption *o = opts; o && o->keyword; o++)
        if (strcmp(o->keyword, "password") == 0 && o->val && o->val[0])
            l->secret[0] = strdup(o->val);
    if (opts)
        PQconninfoFree(opts);

    const char *pw;
    size_t n = redact_url_password(url, &pw);
    if (n > 0)
        l->secret[1] = strndup(pw, n);
}

/* Connects; see the header. */
ledger *ledger_open(const char *database_url, calllog_error *err)
{
    if (!database_url || !database_url[0]) {
        error_set(err, CALLLOG_INVALID, "DATABASE_URL is empty");
        return NULL;
    }
    ledger *l = calloc(1, sizeof *l);
    if (!l) {
        error_set(err, CALLLOG_NOMEM, "out of memory");
        return NULL;
    }
    remember_secrets(l, database_url);
    /* Defaults come before `dbname` (the expanded URL), so the URL can override them. */
    const char *const keys[] = {
        "fallback_application_name", "connect_timeout",  "keepalives", "keepalives_idle",
        "keepalives_interval",       "keepalives_count", "dbname",     NULL};
    const char *const vals[] = {"calllog-worker", "10", "1", "30", "10", "3", database_url, NULL};
    l->conn = PQconnectdbParams(keys, vals, 1);
    if (!l->conn || PQstatus(l->conn) != CONNECTION_OK) {
        conn_err(l, "cannot connect to Postgres",
                 l->conn ? PQerrorMessage(l->conn) : "out of memory");
        error_copy(err, &l->err);
        ledger_close(l);
        return NULL;
    }
    return l;
}

/* Statements sent so far; see the header. */
long ledger_round_trips(const ledger *l)
{
    return l ? l->round_trips : 0;
}

/* The last failure; see the header. */
const calllog_error *ledger_error(const ledger *l)
{
    static const calllog_error none = {CALLLOG_INVALID, 0, 0, -1, "no ledger"};
    return l ? &l->err : &none;
}

/* Closes the connection and forgets the secrets. */
void ledger_close(ledger *l)
{
    if (!l)
        return;
    if (l->conn)
        PQfinish(l->conn);
    for (int i = 0; i < 2; i++) {
        if (l->secret[i]) {
            explicit_bzero(l->secret[i], strlen(l->secret[i]));
            free(l->secret[i]);
        }
    }
    free(l);
}

/* Reconnects when the connection is known to be gone. Returns 0 when usable. */
static int ensure_connected(ledger *l)
{
    if (PQstatus(l->conn) == CONNECTION_OK)
        return 0;
    PQreset(l->conn);
    if (PQstatus(l->conn) == CONNECTION_OK)
        return 0;
    conn_err(l, "cannot reconnect to Postgres", PQerrorMessage(l->conn));
    return -1;
}

/* Reads from the server until a result can be taken without blocking. Returns 0 then,
 * 1 when `deadline` passed first, -1 when the connection failed. */
static int await_result(PGconn *c, long long deadline)
{
    while (PQisBusy(c)) {
        long long left = deadline - timing_mono_ms();
        if (left <= 0)
            return 1;
        struct pollfd pfd = {.fd = PQsocket(c), .events = POLLIN};
        if (pfd.fd < 0)
            return -1;
        int n = poll(&pfd, 1, (int)left);
        if (n < 0)
            continue; /* EINTR: the loop re-checks the deadline */
        if (n > 0 && !PQconsumeInput(c))
            return -1;
    }
    return 0;
}

/* Asks the server to cancel the statement running on `c` (best effort). */
static void cancel_statement(PGconn *c)
{
    char buf[256];
    PGcancel *cancel = PQgetCancel(c);
    if (cancel) {
        (void)PQcancel(cancel, buf, sizeof buf);
        PQfreeCancel(cancel);
    }
}

/* Sends one unnamed statement and waits for its outcome within the statement timeout.
 * Returns the result (caller owns; the first error result wins over later ones), or NULL
 * when the connection failed; `*abandoned` is 1 when the server never answered. */
static PGresult *exec_once(ledger *l, const char *sql, int nparams, const char *const *params,
                           int *abandoned)
{
    static const Oid types[MAX_PARAMS] = {TEXT_OID, TEXT_OID, TEXT_OID, TEXT_OID,
                                          TEXT_OID, TEXT_OID, TEXT_OID, TEXT_OID};
    PGresult *kept = NULL;
    int cancelled = 0;
    *abandoned = 0;
    if (!PQsendQueryParams(l->conn, sql, nparams, types, params, NULL, NULL, 0))
        return NULL;
    l->round_trips++;
    long long deadline = timing_mono_ms() + STATEMENT_TIMEOUT_MS;
    for (;;) {
        int rc = await_result(l->conn, deadline);
        if (rc > 0 && !cancelled) {
            cancel_statement(l->conn);
            cancelled = 1;
            deadline = timing_mono_ms() + CANCEL_GRACE_MS;
            continue;
        }
        if (rc != 0) {
            PQclear(kept);
            *abandoned = rc > 0;
            return NULL;
        }
        PGresult *r = PQgetResult(l->conn);
        if (!r)
            return kept;
        int r_failed = PQresultStatus(r) == PGRES_FATAL_ERROR;
        if (!kept || (r_failed && PQresultStatus(kept) != PGRES_FATAL_ERROR)) {
            PQclear(kept);
            kept = r;
        } else {
            PQclear(r);
        }
    }
}

/* Runs one statement expecting `want` (PGRES_TUPLES_OK or PGRES_COMMAND_OK). When the
 * connection is lost on the way it is reset and the statement run once more, and
 * `*repeated` says so. Returns the result (caller owns; PQclear) or NULL with `err`
 * filled as "<what>: <reason>". */
static PGresult *run(ledger *l, const char *what, const char *sql, int nparams,
                     const char *const *params, ExecStatusType want, int *repeated)
{
    *repeated = 0;
    if (ensure_connected(l) != 0)
        return NULL;
    for (int round = 0;; round++) {
        int abandoned = 0;
        PGresult *r = exec_once(l, sql, nparams, params, &abandoned);
        if (r && PQresultStatus(r) == want)
            return r;
        int lost = abandoned || PQstatus(l->conn) != CONNECTION_OK;
        if (!lost || round == 1) {
            if (abandoned)
                ledger_fail(l, CALLLOG_TRANSIENT, "%s: no answer from Postgres within %d ms", what,
                            STATEMENT_TIMEOUT_MS + CANCEL_GRACE_MS);
            else if (r)
                result_err(l, what, r);
            else
                conn_err(l, what, PQerrorMessage(l->conn));
            PQclear(r);
            return NULL;
        }
        PQclear(r);
        PQreset(l->conn);
        if (PQstatus(l->conn) != CONNECTION_OK) {
            conn_err(l, "connection to Postgres lost and reconnecting failed",
                     PQerrorMessage(l->conn));
            return NULL;
        }
        *repeated = 1;
    }
}

/* Copies column `col` of row 0 of `r` into `out` (empty for NULL), truncating. */
static void copy_field(const PGresult *r, int col, char *out, size_t outlen)
{
    const char *v = PQgetisnull(r, 0, col) ? "" : PQgetvalue(r, 0, col);
    snprintf(out, outlen, "%s", v);
}

/* 1 when column `col` of row 0 of `r` is boolean true. */
static int field_true(const PGresult *r, int col)
{
    return !PQgetisnull(r, 0, col) && PQgetvalue(r, 0, col)[0] == 't';
}

/* 1 when a statement that returns no rows changed none (PQcmdTuples "0"). */
static int changed_none(PGresult *r)
{
    const char *n = PQcmdTuples(r);
    return n[0] == '\0' || strcmp(n, "0") == 0;
}

/* ---- schema check ---------------------------------------------------------------- */

/* The columns the statements below use. */
static const char REQUIRED_COLUMNS[] =
    "{call_sid,state,call_status,attempts,lease_owner,lease_expires_at,next_attempt_at,"
    "rd_post_started_at,rd_contact_id,rd_deal_id,rd_note_id,rd_task_id,recovered,reason,"
    "last_error,last_http_status,event,created_at,updated_at,finished_at}";

static const char SCHEMA_SQL[] =
    "SELECT pg_catalog.to_regclass('calllog.deliveries') IS NOT NULL,"
    " pg_catalog.to_regclass('calllog.schema_version') IS NOT NULL,"
    " (SELECT pg_catalog.string_agg(w.c, ', ' ORDER BY w.o)"
    "    FROM pg_catalog.unnest($1::text[]) WITH ORDINALITY AS w(c, o)"
    "   WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a"
    "                      WHERE a.attrelid = pg_catalog.to_regclass('calllog.deliveries')"
    "                        AND a.attname = w.c AND a.attnum > 0 AND NOT a.attisdropped)),"
    " EXISTS (SELECT 1 FROM pg_catalog.pg_index i"
    "           JOIN pg_catalog.pg_attribute a"
    "             ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]"
    "          WHERE i.indrelid = pg_catalog.to_regclass('calllog.deliveries')"
    "            AND i.indisunique AND i.indnatts = 1 AND a.attname = 'call_sid')";

static const char VERSION_SQL[] = "SELECT COALESCE(max(version), 0) FROM calllog.schema_version";

/* Checks the schema version table. Returns 0, or a negative code (ledger_error). */
static int check_version(ledger *l)
{
    int repeated;
    PGresult *r =
        run(l, "reading calllog.schema_version", VERSION_SQL, 0, NULL, PGRES_TUPLES_OK, &repeated);
    if (!r)
        return -1;
    int version = PQntuples(r) == 1 ? atoi(PQgetvalue(r, 0, 0)) : 0;
    PQclear(r);
    if (version < LEDGER_SCHEMA_VERSION) {
        return ledger_fail(l, CALLLOG_PERMANENT, "calllog schema version %d is older than %d: %s",
                           version, LEDGER_SCHEMA_VERSION, MIGRATION_HINT);
    }
    return 0;
}

int ledger_check_schema(ledger *l)
{
    const char *params[1] = {REQUIRED_COLUMNS};
    int repeated;
    PGresult *r =
        run(l, "checking the calllog schema", SCHEMA_SQL, 1, params, PGRES_TUPLES_OK, &repeated);
    if (!r)
        return -1;
    int rc = -1;
    if (PQntuples(r) != 1)
        ledger_fail(l, CALLLOG_PERMANENT, "checking the calllog schema: unexpected answer");
    else if (!field_true(r, 0))
        ledger_fail(l, CALLLOG_PERMANENT, "table calllog.deliveries is missing: %s",
                    MIGRATION_HINT);
    else if (!PQgetisnull(r, 0, 2))
        ledger_fail(l, CALLLOG_PERMANENT, "table calllog.deliveries lacks column(s) %s: %s",
                    PQgetvalue(r, 0, 2), MIGRATION_HINT);
    else if (!field_true(r, 3))
        ledger_fail(l, CALLLOG_PERMANENT,
                    "table calllog.deliveries has no unique key on call_sid: %s", MIGRATION_HINT);
    else if (!field_true(r, 1))
        ledger_fail(l, CALLLOG_PERMANENT, "table calllog.schema_version is missing: %s",
                    MIGRATION_HINT);
    else
        rc = 0;
    PQclear(r);
    return rc == 0 ? check_version(l) : l->err.code;
}

/* ---- claim ----------------------------------------------------------------------- */

/* Inserts the row as `processing`, or takes it over when it is claimable: pending,
 * retry_wait, or processing under an expired lease. No row comes back otherwise. */
static const char CLAIM_SQL[] =
    "INSERT INTO calllog.deliveries AS d"
    " (call_sid, state, call_status, attempts, lease_owner, lease_expires_at, event)"
    " VALUES ($1, 'processing', $2, 1, $3,"
    "         now() + $4::bigint * interval '1 millisecond', $5::jsonb)"
    " ON CONFLICT (call_sid) DO UPDATE SET"
    " state = 'processing',"
    " call_status = COALESCE(EXCLUDED.call_status, d.call_status),"
    " attempts = d.attempts + 1,"
    " lease_owner = EXCLUDED.lease_owner,"
    " lease_expires_at = EXCLUDED.lease_expires_at,"
    " next_attempt_at = NULL,"
    " event = COALESCE(EXCLUDED.event, d.event)"
    " WHERE d.state IN ('pending', 'retry_wait')"
    "    OR (d.state = 'processing' AND d.lease_expires_at < now())"
    " RETURNING d.state, d.attempts, d.rd_post_started_at IS NOT NULL, d.rd_deal_id,"
    " d.reason, d.lease_owner, true, 0";

/* Why a claim did not win: the row as it is now (same columns as CLAIM_SQL's answer,
 * then whether a lease is running and for how many more milliseconds). */
static const char CLAIM_STATE_SQL[] =
    "SELECT state, attempts, rd_post_started_at IS NOT NULL, rd_deal_id, reason,"
    " lease_owner, state = 'processing' AND lease_expires_at >= now(),"
    " CASE WHEN state = 'processing' AND lease_expires_at >= now()"
    "  THEN ceil(EXTRACT(EPOCH FROM lease_expires_at - now()) * 1000)::bigint ELSE 0 END"
    " FROM calllog.deliveries WHERE call_sid = $1";

/* How often a claim is tried again when the row became claimable between the claim and
 * the look at why it failed (its holder gave it up in that instant). */
#define CLAIM_ROUNDS 3

/* Fills `out` from a row of CLAIM_SQL / CLAIM_STATE_SQL with status `status`. */
static void fill_claim(const PGresult *r, ledger_claim_status status, ledger_claim_result *out)
{
    memset(out, 0, sizeof *out);
    out->status = status;
    copy_field(r, 0, out->state, sizeof out->state);
    out->attempts = atoi(PQgetvalue(r, 0, 1));
    out->post_started = field_true(r, 2);
    copy_field(r, 3, out->rd_deal_id, sizeof out->rd_deal_id);
    copy_field(r, 4, out->reason, sizeof out->reason);
    out->lease_left_ms = atol(PQgetvalue(r, 0, 7));
}

/* Classifies the row read by CLAIM_STATE_SQL. Returns 1 with `out` filled, or 0 when
 * the row is claimable (or gone) and the claim should run again. A running lease held
 * by `owner` itself counts as won only when `repeated` (our own claim whose answer was
 * lost with the connection). */
static int classify(const PGresult *r, const char *owner, int repeated, ledger_claim_result *out)
{
    if (PQntuples(r) != 1)
        return 0;
    const char *state = PQgetvalue(r, 0, 0);
    if (strcmp(state, "delivered") == 0 || strcmp(state, "skipped") == 0)
        fill_claim(r, LEDGER_CLAIM_FINISHED, out);
    else if (strcmp(state, "dead") == 0)
        fill_claim(r, LEDGER_CLAIM_DEAD, out);
    else if (field_true(r, 6))
        fill_claim(r,
                   repeated && strcmp(PQgetvalue(r, 0, 5), owner) == 0 ? LEDGER_CLAIM_WON
                                                                       : LEDGER_CLAIM_BUSY,
                   out);
    else
        return 0;
    return 1;
}

/* One round of the claim: the upsert, then (when it took nothing) a look at the row.
 * Returns 1 when decided, 0 to go round again, -1 on error. */
static int claim_round(ledger *l, const char *const *params, const char *owner, int *repeated,
                       ledger_claim_result *out)
{
    int again = 0;
    PGresult *r = run(l, "claiming the call", CLAIM_SQL, 5, params, PGRES_TUPLES_OK, &again);
    if (!r)
        return -1;
    *repeated |= again;
    if (PQntuples(r) == 1) {
        fill_claim(r, LEDGER_CLAIM_WON, out);
        PQclear(r);
        return 1;
    }
    PQclear(r);
    r = run(l, "reading the call's state", CLAIM_STATE_SQL, 1, params, PGRES_TUPLES_OK, &again);
    if (!r)
        return -1;
    int decided = classify(r, owner, *repeated, out);
    PQclear(r);
    return decided;
}

int ledger_claim(ledger *l, const char *call_sid, const char *call_status, const char *owner,
                 long lease_ms, const char *event_json, ledger_claim_result *out)
{
    if (!l || !call_sid || !call_sid[0] || !owner || !owner[0] || lease_ms <= 0 || !out)
        return ledger_fail(l, CALLLOG_INVALID,
                           "claiming the call: call_sid, owner and a positive lease needed");
    char lease[32];
    snprintf(lease, sizeof lease, "%ld", lease_ms);
    const char *params[5] = {call_sid, call_status, owner, lease, event_json};
    int repeated = 0;
    for (int round = 0; round < CLAIM_ROUNDS; round++) {
        int rc = claim_round(l, params, owner, &repeated, out);
        if (rc != 0)
            return rc > 0 ? 0 : -1;
    }
    /* Claimable each time we looked, taken each time we tried: someone else is on it. */
    memset(out, 0, sizeof *out);
    out->status = LEDGER_CLAIM_BUSY;
    snprintf(out->state, sizeof out->state, "processing");
    return 0;
}

/* ---- outcomes -------------------------------------------------------------------- */

/* One way out of `processing`: the state written, the assignments that go with it
 * ($1 call_sid, $2 owner, $3.. the outcome's values; `d` is the row), and the columns and
 * values an owner-less mark inserts when the call has no row yet. */
typedef struct transition {
    const char *what;
    const char *state;
    const char *set;
    const char *cols;
    const char *vals;
} transition;

static const transition TO_DELIVERED = {
    "recording the delivery", "delivered",
    "rd_contact_id = COALESCE($3, d.rd_contact_id), rd_deal_id = COALESCE($4, d.rd_deal_id),"
    " rd_note_id = $5, rd_task_id = $6, recovered = $7::boolean, reason = NULL,"
    " next_attempt_at = NULL, finished_at = now()",
    "rd_contact_id, rd_deal_id, rd_note_id, rd_task_id, recovered, finished_at",
    "$3, $4, $5, $6, $7::boolean, now()"};

static const transition TO_SKIPPED = {"recording the skip", "skipped",
                                      "reason = $3, next_attempt_at = NULL, finished_at = now()",
                                      "reason, finished_at", "$3, now()"};

static const transition TO_DEAD = {
    "recording the dead letter", "dead",
    "reason = $3, last_error = $4, last_http_status = $5::integer, next_attempt_at = NULL,"
    " finished_at = now()",
    "reason, last_error, last_http_status, finished_at", "$3, $4, $5::integer, now()"};

static const transition TO_RETRY = {
    "recording the retry", "retry_wait",
    "next_attempt_at = now() + $3::bigint * interval '1 millisecond', last_error = $4,"
    " last_http_status = $5::integer, finished_at = NULL",
    "next_attempt_at, last_error, last_http_status",
    "now() + $3::bigint * interval '1 millisecond', $4, $5::integer"};

/* Builds the statement of `t`: with an owner, an UPDATE of the row that owner holds (or
 * already moved to the same state); without one, an upsert that leaves finished rows of
 * another state alone. */
static int transition_sql(const transition *t, int with_owner, char *sql, size_t sqllen)
{
    int n;
    if (with_owner)
        n = snprintf(sql, sqllen,
                     "UPDATE calllog.deliveries AS d SET state = '%s', lease_expires_at = NULL,"
                     " %s WHERE d.call_sid = $1 AND d.lease_owner = $2"
                     " AND d.state IN ('processing', '%s')",
                     t->state, t->set, t->state);
    else
        n = snprintf(sql, sqllen,
                     "INSERT INTO calllog.deliveries AS d (call_sid, state, %s)"
                     " VALUES ($1, '%s', %s) ON CONFLICT (call_sid) DO UPDATE SET"
                     " state = '%s', lease_expires_at = NULL, %s"
                     " WHERE d.state NOT IN ('delivered', 'skipped') OR d.state = '%s'",
                     t->cols, t->state, t->vals, t->state, t->set, t->state);
    return n > 0 && (size_t)n < sqllen ? 0 : -1;
}

/* Runs transition `t` with `params` ($1 call_sid, $2 owner or NULL, ...). Returns 0 when
 * recorded, 1 when the row is not (or no longer) this owner's or there is no CallSid to
 * record (a malformed entry on its way to the dead stream), -1 on error. */
static int apply_transition(ledger *l, const transition *t, int nparams, const char *const *params)
{
    char sql[1024];
    int repeated;
    if (!l)
        return CALLLOG_INVALID;
    if (!params[0] || !params[0][0])
        return CALLLOG_LEASE_LOST; /* an entry without CallSid (malformed): no row is its */
    if (transition_sql(t, params[1] != NULL, sql, sizeof sql) != 0) {
        ledger_fail(l, CALLLOG_INVALID, "%s: statement too long", t->what);
        return -1;
    }
    PGresult *r = run(l, t->what, sql, nparams, params, PGRES_COMMAND_OK, &repeated);
    if (!r)
        return -1;
    int lost = changed_none(r);
    PQclear(r);
    return lost ? CALLLOG_LEASE_LOST : CALLLOG_OK;
}

/* Formats an HTTP status for a parameter: NULL (no status) when 0 or less. */
static const char *http_param(long http_status, char *buf, size_t buflen)
{
    if (http_status <= 0)
        return NULL;
    snprintf(buf, buflen, "%ld", http_status);
    return buf;
}

/* Runs an UPDATE of a row the caller holds. Returns 0 when a row changed,
 * CALLLOG_LEASE_LOST when none did, -1 on error (ledger_error). */
static int update_held(ledger *l, const char *what, const char *sql, int nparams,
                       const char *const *params)
{
    int repeated;
    PGresult *r = run(l, what, sql, nparams, params, PGRES_COMMAND_OK, &repeated);
    if (!r)
        return -1;
    int lost = changed_none(r);
    PQclear(r);
    return lost ? CALLLOG_LEASE_LOST : CALLLOG_OK;
}

static const char POSTING_SQL[] =
    "UPDATE calllog.deliveries AS d"
    " SET rd_post_started_at = now(), rd_deal_id = COALESCE($3, d.rd_deal_id),"
    " lease_expires_at = now() + $4::bigint * interval '1 millisecond'"
    " WHERE d.call_sid = $1 AND d.state = 'processing'"
    " AND ($2::text IS NULL OR (d.lease_owner = $2 AND d.lease_expires_at > now()))";

int ledger_mark_posting(ledger *l, const char *call_sid, const char *owner, const char *deal_id,
                        long lease_ms)
{
    if (!l)
        return CALLLOG_INVALID;
    if (!call_sid || !call_sid[0])
        return CALLLOG_LEASE_LOST;
    char lease[24];
    snprintf(lease, sizeof lease, "%ld", lease_ms);
    const char *params[4] = {call_sid, owner, deal_id, lease};
    return update_held(l, "recording the post", POSTING_SQL, 4, params);
}

static const char FORGET_DEAL_SQL[] =
    "UPDATE calllog.deliveries AS d SET rd_deal_id = NULL"
    " WHERE d.call_sid = $1 AND d.state = 'processing' AND d.lease_owner = $2";

int ledger_forget_deal(ledger *l, const char *call_sid, const char *owner)
{
    if (!l)
        return CALLLOG_INVALID;
    if (!call_sid || !call_sid[0] || !owner)
        return CALLLOG_LEASE_LOST;
    const char *params[2] = {call_sid, owner};
    return update_held(l, "forgetting the deal", FORGET_DEAL_SQL, 2, params);
}

int ledger_mark_delivered(ledger *l, const char *call_sid, const char *owner,
                          const ledger_delivery *d)
{
    if (!d) {
        return ledger_fail(l, CALLLOG_INVALID, "recording the delivery: no delivery given");
    }
    const char *params[7] = {call_sid,
                             owner,
                             d->rd_contact_id,
                             d->rd_deal_id,
                             d->rd_note_id,
                             d->rd_task_id,
                             d->recovered ? "true" : "false"};
    return apply_transition(l, &TO_DELIVERED, 7, params);
}

int ledger_mark_skipped(ledger *l, const char *call_sid, const char *owner, const char *reason)
{
    const char *params[3] = {call_sid, owner, reason};
    return apply_transition(l, &TO_SKIPPED, 3, params);
}

int ledger_mark_retry(ledger *l, const char *call_sid, const char *owner, long delay_ms,
                      const char *error, long http_status)
{
    char delay[32], status[32];
    snprintf(delay, sizeof delay, "%ld", delay_ms > 0 ? delay_ms : 0);
    const char *params[5] = {call_sid, owner, delay, error,
                             http_param(http_status, status, sizeof status)};
    return apply_transition(l, &TO_RETRY, 5, params);
}

int ledger_mark_dead(ledger *l, const char *call_sid, const char *owner, const char *reason,
                     const char *error, long http_status)
{
    char status[32];
    const char *params[5] = {call_sid, owner, reason, error,
                             http_param(http_status, status, sizeof status)};
    return apply_transition(l, &TO_DEAD, 5, params);
}

/* ---- many calls at once ---------------------------------------------------------- */

/* Writes `items[0..n)` as a Postgres text[] literal ({"a","b"}, with " and \\ escaped).
 * Returns a malloc'ed string or NULL out of memory. */
static char *text_array(const char *const *items, size_t n)
{
    size_t len = 3;
    for (size_t i = 0; i < n; i++)
        len += 2 * strlen(items[i]) + 3;
    char *out = malloc(len), *o = out;
    if (!out)
        return NULL;
    *o++ = '{';
    for (size_t i = 0; i < n; i++) {
        if (i)
            *o++ = ',';
        *o++ = '"';
        for (const char *p = items[i]; *p; p++) {
            if (*p == '"' || *p == '\\')
                *o++ = '\\';
            *o++ = *p;
        }
        *o++ = '"';
    }
    *o++ = '}';
    *o = '\0';
    return out;
}

/* Renews, in one statement, every lease still running under its owner. */
static const char RENEW_SQL[] =
    "UPDATE calllog.deliveries AS d"
    " SET lease_expires_at = now() + $3::bigint * interval '1 millisecond'"
    " FROM unnest($1::text[], $2::text[]) AS h(call_sid, owner)"
    " WHERE d.call_sid = h.call_sid AND d.lease_owner = h.owner AND d.state = 'processing'"
    " AND d.lease_expires_at > now()";

long ledger_renew_leases(ledger *l, const char *const *call_sids, const char *const *owners,
                         size_t n, long lease_ms)
{
    if (!l || (n > 0 && (!call_sids || !owners)) || lease_ms <= 0)
        return ledger_fail(l, CALLLOG_INVALID,
                           "renewing leases: ledger, calls and a positive lease needed");
    if (n == 0)
        return 0;
    char lease[24];
    snprintf(lease, sizeof lease, "%ld", lease_ms);
    char *sids = text_array(call_sids, n), *who = text_array(owners, n);
    long renewed = -1;
    if (!sids || !who) {
        ledger_fail(l, CALLLOG_NOMEM, "renewing leases: out of memory");
    } else {
        const char *params[3] = {sids, who, lease};
        int repeated;
        PGresult *r = run(l, "renewing leases", RENEW_SQL, 3, params, PGRES_COMMAND_OK, &repeated);
        if (r) {
            renewed = atol(PQcmdTuples(r));
            PQclear(r);
        }
    }
    free(sids);
    free(who);
    return renewed;
}

/* The 1-based positions of the CallSids that have no row. */
static const char UNSEEN_SQL[] =
    "SELECT s.o FROM unnest($1::text[]) WITH ORDINALITY AS s(call_sid, o)"
    " WHERE NOT EXISTS (SELECT 1 FROM calllog.deliveries d WHERE d.call_sid = s.call_sid)";

long ledger_unseen(ledger *l, const char *const *call_sids, size_t n, unsigned char *unseen)
{
    if (!l || (n > 0 && (!call_sids || !unseen)))
        return ledger_fail(l, CALLLOG_INVALID, "looking up calls: ledger and calls needed");
    memset(unseen, 0, n);
    if (n == 0)
        return 0;
    char *sids = text_array(call_sids, n);
    if (!sids) {
        ledger_fail(l, CALLLOG_NOMEM, "looking up calls: out of memory");
        return -1;
    }
    const char *params[1] = {sids};
    int repeated;
    PGresult *r = run(l, "looking up calls", UNSEEN_SQL, 1, params, PGRES_TUPLES_OK, &repeated);
    free(sids);
    if (!r)
        return -1;
    long count = 0;
    for (int i = 0; i < PQntuples(r); i++) {
        long pos = atol(PQgetvalue(r, i, 0));
        if (pos >= 1 && (size_t)pos <= n && !unseen[pos - 1]) {
            unseen[pos - 1] = 1;
            count++;
        }
    }
    PQclear(r);
    return count;
}

/* ---- admin ----------------------------------------------------------------------- */

/* A dead, stuck or waiting row goes back to `pending` with a fresh attempt budget.
 * rd_post_started_at and rd_deal_id stay: the next claim must still look for the marker
 * when an earlier attempt may have posted. Delivered and skipped rows are left alone. */
static const char RESET_SQL[] =
    "UPDATE calllog.deliveries SET state = 'pending', attempts = 0, lease_owner = NULL,"
    " lease_expires_at = NULL, next_attempt_at = NULL, reason = NULL, finished_at = NULL"
    " WHERE call_sid = $1 AND state IN ('dead', 'processing', 'retry_wait', 'pending')";

int ledger_reset(ledger *l, const char *call_sid)
{
    if (!l || !call_sid || !call_sid[0])
        return ledger_fail(l, CALLLOG_INVALID, "resetting the call: call_sid needed");
    const char *params[1] = {call_sid};
    int repeated;
    PGresult *r = run(l, "resetting the call", RESET_SQL, 1, params, PGRES_COMMAND_OK, &repeated);
    if (!r)
        return -1;
    int none = changed_none(r);
    PQclear(r);
    return none ? CALLLOG_NOT_FOUND : CALLLOG_OK;
}

static const char COUNTS_SQL[] =
    "SELECT s.state, count(d.call_sid)"
    " FROM unnest(ARRAY['pending', 'processing', 'retry_wait', 'delivered', 'skipped',"
    "                   'dead']) WITH ORDINALITY AS s(state, o)"
    " LEFT JOIN calllog.deliveries d ON d.state = s.state"
    " GROUP BY s.state, s.o ORDER BY s.o";

int ledger_state_counts(ledger *l, char *out, size_t outlen)
{
    if (!l || !out || outlen == 0)
        return ledger_fail(l, CALLLOG_INVALID, "counting states: no output buffer");
    int repeated;
    PGresult *r = run(l, "counting states", COUNTS_SQL, 0, NULL, PGRES_TUPLES_OK, &repeated);
    if (!r)
        return -1;
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < PQntuples(r); i++) {
        int n = snprintf(out + used, outlen - used, "%s%s=%s", i ? " " : "", PQgetvalue(r, i, 0),
                         PQgetvalue(r, i, 1));
        if (n < 0 || (size_t)n >= outlen - used) {
            PQclear(r);
            ledger_fail(l, CALLLOG_INVALID, "counting states: output buffer too small");
            return -1;
        }
        used += (size_t)n;
    }
    PQclear(r);
    return 0;
}

/* ---- doctor: API roles ------------------------------------------------------------ */

static const char ROLES_SQL[] =
    "SELECT r.rolname, CASE WHEN c.oid IS NULL THEN false ELSE"
    " pg_catalog.has_schema_privilege(r.oid, c.relnamespace, 'USAGE')"
    " AND pg_catalog.has_table_privilege(r.oid, c.oid, 'SELECT')"
    " AND (NOT c.relrowsecurity OR r.rolbypassrls OR r.rolsuper"
    "      OR EXISTS (SELECT 1 FROM pg_catalog.pg_policy p WHERE p.polrelid = c.oid)) END"
    " FROM pg_catalog.pg_roles r"
    " LEFT JOIN pg_catalog.pg_class c ON c.oid = pg_catalog.to_regclass('calllog.deliveries')"
    " WHERE r.rolname IN ('anon', 'authenticated') ORDER BY r.rolname";

/* Appends " name" (or "name" first) to `out`, clipped. */
static void append_word(char *out, size_t outlen, const char *name)
{
    size_t used = strlen(out);
    if (used < outlen)
        snprintf(out + used, outlen - used, "%s%s", used ? " " : "", name);
}

int ledger_check_roles(ledger *l, char *roles, size_t roleslen, char *readers, size_t readerslen)
{
    int repeated;
    if (!l || !roles || roleslen == 0 || !readers || readerslen == 0)
        return ledger_fail(l, CALLLOG_INVALID, "checking the API roles: no output buffer");
    roles[0] = readers[0] = '\0';
    PGresult *r = run(l, "checking the API roles", ROLES_SQL, 0, NULL, PGRES_TUPLES_OK, &repeated);
    if (!r)
        return -1;
    int n = 0;
    for (int i = 0; i < PQntuples(r); i++) {
        append_word(roles, roleslen, PQgetvalue(r, i, 0));
        if (PQgetvalue(r, i, 1)[0] == 't') {
            append_word(readers, readerslen, PQgetvalue(r, i, 0));
            n++;
        }
    }
    PQclear(r);
    return n;
}

/* ---- statements of other modules --------------------------------------------------- */

/* Runs another module's statement; see the header. */
struct pg_result *ledger_exec(ledger *l, const char *what, const char *sql, int nparams,
                              const char *const *params, int rows)
{
    int repeated;
    if (!l || !sql || nparams < 0 || nparams > MAX_PARAMS) {
        ledger_fail(l, CALLLOG_INVALID, "%s: bad statement arguments", what ? what : "?");
        return NULL;
    }
    return run(l, what, sql, nparams, params, rows ? PGRES_TUPLES_OK : PGRES_COMMAND_OK, &repeated);
}
