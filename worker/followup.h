/* followup — a missed call becomes one follow-up task on the deal; the callback closes it.
 *
 * Design §3 "Missed calls": an inbound call from a known contact that ends no-answer,
 * busy or canceled gets, besides its note, one open RD task (type call; task on plans that
 * refuse call) on the deal, assigned to the line's mapped salesperson, else the deal's
 * owner, else RDSTATION_USER_ID, due CALLLOG_MISSED_CALL_DUE_MIN minutes after the call
 * ended, moved into CALLLOG_BUSINESS_HOURS (business_hours.h). The next answered call
 * (completed, duration > 0, and not answered by a machine or fax as Twilio's AnsweredBy
 * says) with that customer on that deal, either direction, marks it done. At most one
 * follow-up per deal is open: a second missed call adds its note only.
 *
 * State: table calllog.followups (one row per deal: opening → open → closed), on the
 * ledger's connection (ledger_exec). Effectively once, for tasks too:
 *   - the slot is taken by one INSERT … ON CONFLICT (deal_id) DO UPDATE … WHERE <free>
 *     statement, written `opening` with the CallSid before POST /tasks; two workers racing
 *     on one deal cannot both win. A free slot is a missing or closed row, or an `opening`
 *     row of this same call (its own retry) or of a call that is no longer being delivered
 *     (its calllog.deliveries row finished: the opener died or gave up);
 *   - taking over an `opening` row first searches the deal's tasks for the opener's
 *     follow-up marker "[calllog-followup:<CallSid>]" (rd_find_marker), and records a task
 *     found there instead of creating one;
 *   - the marker differs from the note marker "[calllog:<CallSid>]", so a delivery's own
 *     marker search (which may read tasks) never takes the follow-up for the call's entry.
 *
 * The processor runs this after the note is posted and before it records the delivery
 * (processor.c, delivered): a transient failure sends the call back to the retry set like
 * any failed RD request; the next attempt finds the note by its marker (it never posts a
 * second) and runs this again, which is idempotent. When attempts run out, or the failure
 * is permanent, the delivery is recorded anyway and the follow-up given up
 * (followup_abandon): the note is never lost for the sake of its task.
 *
 * Errors (error.h): CALLLOG_OK, or a negative code with `err` filled — transient when RD or
 * Postgres failed and a retry may succeed, permanent otherwise. */
#ifndef CALLLOG_FOLLOWUP_H
#define CALLLOG_FOLLOWUP_H

#include <time.h>

#include "common/error.h"
#include "worker/business_hours.h"
#include "worker/ledger.h"
#include "worker/rdstation.h"

/* Marker shape: "[calllog-followup:" + CallSid + "]". */
#define FOLLOWUP_MARKER_PREFIX "[calllog-followup:"
#define FOLLOWUP_MARKER_MAX 96

/* The settings (worker/settings.c reads them). */
typedef struct followup_settings {
    int enabled;          /* CALLLOG_MISSED_CALL_TASK, default 1 */
    long due_min;         /* CALLLOG_MISSED_CALL_DUE_MIN, default 30 */
    business_hours hours; /* CALLLOG_BUSINESS_HOURS, default BUSINESS_HOURS_DEFAULT */
} followup_settings;

/* The call, as the processor knows it once the note is posted. Strings are borrowed. */
typedef struct followup_call {
    const char *call_sid;
    const char *direction;    /* Twilio's: "inbound", "outbound-api", "outbound-dial", ... */
    const char *status;       /* terminal call status */
    long duration_s;          /* -1 when unknown */
    time_t ended_at;          /* 0 when unknown: now */
    const char *customer;     /* E.164 */
    const char *contact_name; /* NULL or "" when unknown */
    const char *deal_id;
    const char *assignee;    /* RD user of the task; NULL: RD's default (the token's user) */
    const char *answered_by; /* Twilio AnsweredBy (machine detection), NULL when unknown */
} followup_call;

typedef enum {
    FOLLOWUP_NOTHING,      /* not a missed inbound call, nor an answered one with a task to close */
    FOLLOWUP_OPENED,       /* a task was created (or found by its marker) and recorded open */
    FOLLOWUP_ALREADY_OPEN, /* the deal has an open (or opening) follow-up: the note is enough */
    FOLLOWUP_CLOSED        /* the deal's open follow-up was marked done */
} followup_outcome;

/* Registers calllog_worker_followups_total{outcome} (once, before threads start). Returns 0
 * or -1. */
int followup_metrics_init(void);

/* The outcome's name ("opened", ...). */
const char *followup_outcome_name(followup_outcome o);

/* Checks that table calllog.followups exists (the 20261204000000 migration). Returns 0, or
 * CALLLOG_PERMANENT with `err` saying what to run, or another negative code (Postgres). */
int followup_check_schema(ledger *l, calllog_error *err);

/* Writes the follow-up marker of `call_sid` (ASCII letters and digits, at most 64) into
 * `out`. Returns its length, or -1 when the CallSid is unusable or `out` too small. */
int followup_marker(const char *call_sid, char *out, size_t outlen);

/* The task's subject, "Retornar ligação — {nome} {telefone}" (the name left out when
 * unknown; brackets and control characters of the name written as spaces or parentheses
 * so it can never forge a marker), into `out`. */
void followup_subject(const followup_call *call, char *out, size_t outlen);

/* 1 when a call of `direction` ending `status` opens a follow-up (a missed inbound call)
 * under `s`: the caller then wants the deal's owner, who gets the task. */
int followup_opens(const followup_settings *s, const char *direction, const char *status);

/* Opens or closes the call's follow-up as described above; `*out` says what happened.
 * Does nothing (FOLLOWUP_NOTHING) when `s->enabled` is 0. */
calllog_code followup_handle(const followup_settings *s, ledger *l, rd_client *rd,
                             const followup_call *call, followup_outcome *out, calllog_error *err);

/* Gives up the follow-up this call was opening (after a permanent error, or when its
 * attempts are used up): releases the deal's slot if the call still holds it `opening`, so
 * the next missed call opens a task without searching. Returns 0, or -1 (ledger_error). */
int followup_abandon(ledger *l, const followup_call *call);

#endif
