/* followup — the follow-up task of a missed call, opened once per deal and closed by the
 * callback (see the header). The SQL lives here and runs on the ledger's connection; RD
 * requests go through rdstation.c, which pays the shared rate limit for each. */
#include "worker/followup.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "common/metrics.h"

static metric *followups_total; /* calllog_worker_followups_total{outcome} */

static const char *const outcome_names[] = {"nothing", "opened", "already_open", "closed"};

const char *followup_outcome_name(followup_outcome o)
{
    return outcome_names[o];
}

int followup_metrics_init(void)
{
    followups_total = metrics_register(METRIC_COUNTER, "calllog_worker_followups_total",
                                       "Missed-call follow-up tasks, by outcome (opened, "
                                       "already_open, closed, failed).",
                                       NULL, 0);
    if (!followups_total)
        return -1;
    static const char *const shown[] = {"opened", "already_open", "closed", "failed"};
    for (size_t i = 0; i < sizeof shown / sizeof *shown; i++) {
        char lbl[48];
        snprintf(lbl, sizeof lbl, "outcome=\"%s\"", shown[i]);
        metric_add(followups_total, lbl, 0);
    }
    return 0;
}

/* Counts one outcome by name. */
static void count(const char *outcome)
{
    char lbl[48];
    snprintf(lbl, sizeof lbl, "outcome=\"%s\"", outcome);
    metric_add(followups_total, lbl, 1);
}

/* ---- SQL ------------------------------------------------------------------------------ */

static const char SCHEMA_SQL[] = "SELECT pg_catalog.to_regclass('calllog.followups') IS NOT NULL";

/* Takes the deal's slot for this call (see the header for when it is free). Returns the
 * row, with recover_from (the CallSid whose marker to search first) when an `opening`
 * row was taken over; no row when the slot is not free. */
static const char TAKE_SQL[] =
    "INSERT INTO calllog.followups AS f (deal_id, state, call_sid, customer)"
    " VALUES ($1, 'opening', $2, $3)"
    " ON CONFLICT (deal_id) DO UPDATE"
    " SET state = 'opening', call_sid = EXCLUDED.call_sid, customer = EXCLUDED.customer,"
    "     recover_from = CASE WHEN f.state = 'opening' THEN f.call_sid END,"
    "     task_id = NULL, owner_id = NULL, due_at = NULL, closed_by = NULL, closed_at = NULL,"
    "     opened_at = now()"
    " WHERE (f.state = 'closed' AND f.call_sid <> EXCLUDED.call_sid)"
    "    OR (f.state = 'opening' AND (f.call_sid = EXCLUDED.call_sid OR NOT EXISTS ("
    "        SELECT 1 FROM calllog.deliveries d WHERE d.call_sid = f.call_sid"
    "           AND d.state IN ('pending', 'processing', 'retry_wait'))))"
    " RETURNING COALESCE(f.recover_from, '')";

/* Records the task of the slot this call holds `opening`. */
static const char RECORD_SQL[] =
    "UPDATE calllog.followups SET state = 'open', task_id = $3, owner_id = NULLIF($4, ''),"
    " due_at = to_timestamp($5::double precision), recover_from = NULL"
    " WHERE deal_id = $1 AND call_sid = $2 AND state = 'opening'";

/* The deal's open follow-up for this customer, if any. */
static const char OPEN_TASK_SQL[] = "SELECT task_id FROM calllog.followups"
                                    " WHERE deal_id = $1 AND state = 'open' AND customer = $2";

static const char CLOSE_SQL[] =
    "UPDATE calllog.followups SET state = 'closed', closed_by = $3, closed_at = now()"
    " WHERE deal_id = $1 AND state = 'open' AND task_id = $2";

static const char ABANDON_SQL[] = "DELETE FROM calllog.followups"
                                  " WHERE deal_id = $1 AND call_sid = $2 AND state = 'opening'";

/* Copies the ledger's last error into `err`. Returns its (negative) code. */
static calllog_code db_failed(ledger *l, calllog_error *err)
{
    error_copy(err, ledger_error(l));
    if (err->code >= 0)
        err->code = CALLLOG_TRANSIENT;
    return err->code;
}

int followup_check_schema(ledger *l, calllog_error *err)
{
    PGresult *r = ledger_exec(l, "checking table calllog.followups", SCHEMA_SQL, 0, NULL, 1);
    if (!r)
        return db_failed(l, err);
    int ok = PQntuples(r) == 1 && PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    if (ok)
        return 0;
    return error_set(err, CALLLOG_PERMANENT,
                     "table calllog.followups is missing (CALLLOG_MISSED_CALL_TASK=1 needs it): "
                     "run deploy/supabase/migrations/20261204000000_calllog_followups.sql (psql "
                     "-v ON_ERROR_STOP=1 -f <file>) or `supabase db push`");
}

/* ---- text ----------------------------------------------------------------------------- */

int followup_marker(const char *call_sid, char *out, size_t outlen)
{
    size_t n = call_sid ? strlen(call_sid) : 0;
    if (n == 0 || n > 64)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char ch = call_sid[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')))
            return -1;
    }
    int w = snprintf(out, outlen, "%s%s]", FOLLOWUP_MARKER_PREFIX, call_sid);
    return w > 0 && (size_t)w < outlen ? w : -1;
}

/* Writes a Brazilian E.164 number as "(11) 97173-0783"; any other as given. */
static void format_phone(const char *e164, char *out, size_t outlen)
{
    size_t n = strlen(e164);
    if (strncmp(e164, "+55", 3) == 0 && (n == 13 || n == 14)) {
        const char *ddd = e164 + 3, *sub = e164 + 5;
        size_t head = strlen(sub) - 4;
        snprintf(out, outlen, "(%.2s) %.*s-%s", ddd, (int)head, sub, sub + head);
        return;
    }
    snprintf(out, outlen, "%s", e164);
}

/* Copies a contact name, control characters as spaces and brackets as parentheses. */
static void clean_name(const char *in, char *out, size_t outlen)
{
    size_t k = 0;
    for (; in && *in && k + 1 < outlen; in++) {
        unsigned char ch = (unsigned char)*in;
        out[k++] = ch < 0x20 || ch == 0x7f ? ' ' : ch == '[' ? '(' : ch == ']' ? ')' : (char)ch;
    }
    out[k] = '\0';
}

void followup_subject(const followup_call *call, char *out, size_t outlen)
{
    char phone[48], name[160];
    format_phone(call->customer, phone, sizeof phone);
    clean_name(call->contact_name, name, sizeof name);
    if (name[0])
        snprintf(out, outlen, "Retornar ligação — %s %s", name, phone);
    else
        snprintf(out, outlen, "Retornar ligação — %s", phone);
}

/* The status in the words of the built-in pt-BR note. */
static const char *status_words(const char *status)
{
    return strcmp(status, "busy") == 0       ? "ocupado"
           : strcmp(status, "canceled") == 0 ? "cancelada"
                                             : "não atendida";
}

/* The task's notes: what happened, when, and the marker on a line of its own. */
static void task_notes(const followup_call *call, const char *marker, char *out, size_t outlen)
{
    char phone[48], when[32] = "";
    struct tm tm;
    time_t at = call->ended_at ? call->ended_at : time(NULL);
    format_phone(call->customer, phone, sizeof phone);
    localtime_r(&at, &tm);
    strftime(when, sizeof when, "%d/%m/%Y %H:%M", &tm);
    snprintf(out, outlen, "Ligação recebida de %s em %s (%s). Retorne a ligação.\n%s", phone, when,
             status_words(call->status), marker);
}

/* ---- opening -------------------------------------------------------------------------- */

int followup_opens(const followup_settings *s, const char *direction, const char *status)
{
    return s->enabled && direction && strcmp(direction, "inbound") == 0 && status &&
           (strcmp(status, "no-answer") == 0 || strcmp(status, "busy") == 0 ||
            strcmp(status, "canceled") == 0);
}

/* 1 for a call that was answered and talked (either direction): a voicemail or fax that
 * Twilio's machine detection recognised (AnsweredBy machine_*, fax) reached nobody. */
static int is_answered(const followup_call *c)
{
    int machine = c->answered_by && (strncmp(c->answered_by, "machine", 7) == 0 ||
                                     strcmp(c->answered_by, "fax") == 0);
    return c->status && strcmp(c->status, "completed") == 0 && c->duration_s > 0 && !machine;
}

/* Takes the slot. Returns 1 when taken (`recover_from` filled, "" when nothing to search),
 * 0 when the deal's follow-up is someone else's, or a negative code. */
static int take_slot(ledger *l, const followup_call *call, char *recover_from, size_t len,
                     calllog_error *err)
{
    const char *params[3] = {call->deal_id, call->call_sid, call->customer};
    PGresult *r = ledger_exec(l, "taking the deal's follow-up slot", TAKE_SQL, 3, params, 1);
    if (!r)
        return db_failed(l, err);
    int taken = PQntuples(r) == 1;
    snprintf(recover_from, len, "%s", taken ? PQgetvalue(r, 0, 0) : "");
    PQclear(r);
    return taken;
}

/* After a takeover, looks for the opener's task, then this call's own, by marker. Returns
 * CALLLOG_OK with `task_id` set, CALLLOG_NOT_FOUND, or a negative code. */
static calllog_code recover_task(rd_client *rd, const followup_call *call, const char *opener,
                                 char *task_id, size_t idlen, calllog_error *err)
{
    const char *sids[2] = {opener, call->call_sid};
    for (int i = 0; i < 2; i++) {
        char marker[FOLLOWUP_MARKER_MAX];
        if (i == 1 && strcmp(opener, call->call_sid) == 0)
            break;
        if (followup_marker(sids[i], marker, sizeof marker) < 0)
            continue;
        calllog_code st =
            rd_find_marker(rd, call->deal_id, RD_MARKER_TASKS, marker, task_id, idlen, err);
        if (st != CALLLOG_NOT_FOUND)
            return st;
    }
    return CALLLOG_NOT_FOUND;
}

/* Creates the task, due in business hours. */
static calllog_code create_task(rd_client *rd, const followup_call *call, time_t due, char *task_id,
                                size_t idlen, calllog_error *err)
{
    char marker[FOLLOWUP_MARKER_MAX], subject[256], notes[512];
    if (followup_marker(call->call_sid, marker, sizeof marker) < 0)
        return error_set(err, CALLLOG_PERMANENT, "follow-up: CallSid unusable in a marker");
    followup_subject(call, subject, sizeof subject);
    task_notes(call, marker, notes, sizeof notes);
    return rd_open_task(rd, call->deal_id, call->assignee, subject, notes, due, task_id, idlen,
                        err);
}

/* Records the task as the deal's open follow-up. */
static calllog_code record_open(ledger *l, const followup_call *call, const char *task_id,
                                time_t due, calllog_error *err)
{
    char due_s[32];
    snprintf(due_s, sizeof due_s, "%lld", (long long)due);
    const char *params[5] = {call->deal_id, call->call_sid, task_id,
                             call->assignee ? call->assignee : "", due_s};
    PGresult *r = ledger_exec(l, "recording the follow-up task", RECORD_SQL, 5, params, 0);
    if (!r)
        return db_failed(l, err);
    int none = strcmp(PQcmdTuples(r), "0") == 0;
    PQclear(r);
    if (none) /* taken over meanwhile: this call's lease ran out and another worker has it */
        log_warn("follow-up slot taken over before its task was recorded",
                 LF_S("call_sid", call->call_sid), LF_S("deal_id", call->deal_id),
                 LF_S("task_id", task_id));
    return CALLLOG_OK;
}

/* Opens the deal's follow-up for a missed call, unless one is open already. */
static calllog_code open_followup(const followup_settings *s, ledger *l, rd_client *rd,
                                  const followup_call *call, followup_outcome *out,
                                  calllog_error *err)
{
    char opener[80], task_id[64] = "";
    int taken = take_slot(l, call, opener, sizeof opener, err);
    if (taken <= 0) {
        *out = FOLLOWUP_ALREADY_OPEN;
        return taken == 0 ? CALLLOG_OK : taken;
    }
    time_t due =
        business_hours_due(&s->hours, call->ended_at ? call->ended_at : time(NULL), s->due_min);
    calllog_code st = opener[0] ? recover_task(rd, call, opener, task_id, sizeof task_id, err)
                                : CALLLOG_NOT_FOUND;
    if (st == CALLLOG_NOT_FOUND)
        st = create_task(rd, call, due, task_id, sizeof task_id, err);
    if (st != CALLLOG_OK)
        return st;
    if ((st = record_open(l, call, task_id, due, err)) != CALLLOG_OK)
        return st;
    *out = FOLLOWUP_OPENED;
    log_info(opener[0] ? "follow-up task recovered or created after a takeover"
                       : "follow-up task opened",
             LF_S("call_sid", call->call_sid), LF_S("deal_id", call->deal_id),
             LF_S("task_id", task_id), LF_S("assignee", call->assignee),
             LF_I("due_at", (long long)due));
    return CALLLOG_OK;
}

/* ---- closing -------------------------------------------------------------------------- */

/* Marks the deal's open follow-up of this customer done, if there is one. */
static calllog_code close_followup(ledger *l, rd_client *rd, const followup_call *call,
                                   followup_outcome *out, calllog_error *err)
{
    const char *params[2] = {call->deal_id, call->customer};
    char task_id[64];
    PGresult *r = ledger_exec(l, "reading the deal's open follow-up", OPEN_TASK_SQL, 2, params, 1);
    if (!r)
        return db_failed(l, err);
    int open = PQntuples(r) == 1;
    snprintf(task_id, sizeof task_id, "%s", open ? PQgetvalue(r, 0, 0) : "");
    PQclear(r);
    if (!open)
        return CALLLOG_OK;
    calllog_code st = rd_complete_task(rd, task_id, err);
    if (st != CALLLOG_OK && err->http_status != 404)
        return st;
    if (st != CALLLOG_OK) /* the task (or its deal) is gone in RD: nothing left to close */
        log_warn("follow-up task not found in RD, closed here only", LF_S("task_id", task_id),
                 LF_S("deal_id", call->deal_id));
    const char *close_params[3] = {call->deal_id, task_id, call->call_sid};
    if (!(r = ledger_exec(l, "closing the follow-up", CLOSE_SQL, 3, close_params, 0)))
        return db_failed(l, err);
    PQclear(r);
    *out = FOLLOWUP_CLOSED;
    log_info("follow-up task done: the customer was reached", LF_S("call_sid", call->call_sid),
             LF_S("deal_id", call->deal_id), LF_S("task_id", task_id));
    return CALLLOG_OK;
}

/* ---- entry points --------------------------------------------------------------------- */

calllog_code followup_handle(const followup_settings *s, ledger *l, rd_client *rd,
                             const followup_call *call, followup_outcome *out, calllog_error *err)
{
    calllog_code st = CALLLOG_OK;
    *out = FOLLOWUP_NOTHING;
    if (!s->enabled || !call->deal_id || !call->deal_id[0] || !call->customer)
        return CALLLOG_OK;
    if (followup_opens(s, call->direction, call->status))
        st = open_followup(s, l, rd, call, out, err);
    else if (is_answered(call))
        st = close_followup(l, rd, call, out, err);
    if (st != CALLLOG_OK)
        count("failed");
    else if (*out != FOLLOWUP_NOTHING)
        count(outcome_names[*out]);
    return st;
}

int followup_abandon(ledger *l, const followup_call *call)
{
    const char *params[2] = {call->deal_id, call->call_sid};
    if (!call->deal_id || !call->call_sid)
        return 0;
    PGresult *r = ledger_exec(l, "giving up the follow-up slot", ABANDON_SQL, 2, params, 0);
    if (!r)
        return -1;
    PQclear(r);
    return 0;
}
