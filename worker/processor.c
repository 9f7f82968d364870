/* processor — one entry from claim to acknowledgement (see processor.h). */
#include "worker/processor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/event.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/shutdown.h"
#include "common/timing.h"
#include "worker/alert.h"
#include "worker/followup.h"
#include "worker/lookup_cache.h"
#include "worker/phone_index.h"
#include "worker/phone.h"
#include "worker/retry_policy.h"

/* How long after another worker's lease runs out its call is looked at again. */
#define LEASE_MARGIN_MS 250
#define DEFER_DELAY_MS 5000

static struct {
    metric *processed;      /* by outcome */
    metric *dead_letters;   /* by reason */
    metric *retries;        /* reschedules */
    metric *hangup_to_note; /* seconds from the ingest receiving the call to the note */
    metric *handle_secs;    /* time to handle one entry */
    metric *lookups;        /* by source: index, cache, rdstation */
} pm;

static const char *const outcome_names[] = {"delivered", "recovered", "skipped",
                                            "duplicate", "ignored",   "retry",
                                            "dead",      "deferred",  "waiting"};

const char *processor_outcome_name(processor_outcome o)
{
    return outcome_names[o];
}

int processor_metrics_init(void)
{
    static const double note_buckets[] = {0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600};
    pm.processed = metrics_register(METRIC_COUNTER, "calllog_worker_processed_total",
                                    "Stream entries handled, by outcome.", NULL, 0);
    pm.dead_letters = metrics_register(METRIC_COUNTER, "calllog_worker_dead_letters_total",
                                       "Entries moved to the dead stream, by reason.", NULL, 0);
    pm.retries = metrics_register(METRIC_COUNTER, "calllog_worker_retries_total",
                                  "Entries rescheduled on the retry set.", NULL, 0);
    pm.hangup_to_note = metrics_register(
        METRIC_HISTOGRAM, "calllog_worker_hangup_to_note_seconds",
        "From the ingest receiving the final callback to the RD entry being recorded.",
        note_buckets, sizeof note_buckets / sizeof *note_buckets);
    pm.handle_secs = metrics_register(METRIC_HISTOGRAM, "calllog_worker_handle_seconds",
                                      "Time to handle one stream entry.", NULL, 0);
    pm.lookups = metrics_register(METRIC_COUNTER, "calllog_worker_lookups_total",
                                  "How a call's contact and deal were found, by source.", NULL, 0);
    if (!pm.processed || !pm.dead_letters || !pm.retries || !pm.hangup_to_note || !pm.handle_secs ||
        !pm.lookups || followup_metrics_init() != 0)
        return -1;
    static const char *const sources[] = {"index", "cache", "rdstation"};
    for (size_t i = 0; i < sizeof sources / sizeof *sources; i++) {
        char lbl[64];
        snprintf(lbl, sizeof lbl, "source=\"%s\"", sources[i]);
        metric_add(pm.lookups, lbl, 0);
    }
    static const char *const reasons[] = {"permanent_error", "attempts_exhausted", "poison",
                                          "malformed_event"};
    for (size_t i = 0; i < sizeof reasons / sizeof *reasons; i++) {
        char lbl[64]; /* series exist from start-up, so increase() sees the first one */
        snprintf(lbl, sizeof lbl, "reason=\"%s\"", reasons[i]);
        metric_add(pm.dead_letters, lbl, 0);
    }
    metric_add(pm.retries, NULL, 0);
    return 0;
}

/* Everything one entry's handling carries along. */
typedef struct job {
    worker_links *w;
    const stream_entry *e;
    json_t *ev;
    ledger_claim_result claim;
    int claimed;            /* this worker holds the lease */
    const char *customer;   /* the caller's phone (E.164) */
    const char *our_number; /* our Twilio number on this call */
    lookup_cache_hit deal;  /* contact + deal chosen */
    char contact_name[256]; /* the RD contact's name, when looked up this time */
    twilio_call rest;       /* enrichment, when any */
    int enriched;
} job;

/* ---- outcomes ---------------------------------------------------------------- */

/* Acknowledges the entry: it is finished (and the next one is read, when asked). */
static processor_outcome finish(job *j, processor_outcome o)
{
    calllog_error err;
    worker_links *w = j->w;
    if (queue_done_next(w->redis, &w->settings->keys, j->e, w->read_next, &w->next, &err) < 0) {
        log_error("xack failed, entry stays pending", LF_S("call_sid", j->e->call_sid),
                  LF_S("error", err.message));
        return PROCESSOR_DEFERRED;
    }
    return o;
}

/* Records a dead letter in Postgres and moves the entry to the dead stream. */
static processor_outcome bury(job *j, const char *reason, const char *error, long http_status)
{
    calllog_error err;
    worker_links *w = j->w;
    if (ledger_mark_dead(w->ledger, j->e->call_sid, j->claimed ? w->owner : NULL, reason, error,
                         http_status) < 0) {
        log_error("cannot record dead letter, entry stays pending",
                  LF_S("call_sid", j->e->call_sid),
                  LF_S("error", ledger_error(w->ledger)->message));
        return PROCESSOR_DEFERRED;
    }
    dead_letter d = {reason, error, http_status, j->claim.attempts};
    if (queue_bury(w->redis, &w->settings->keys, j->e, &d, &err) != 0) {
        log_error("cannot move to dead stream, entry stays pending",
                  LF_S("call_sid", j->e->call_sid), LF_S("error", err.message));
        return PROCESSOR_DEFERRED;
    }
    char lbl[96];
    snprintf(lbl, sizeof lbl, "reason=\"%s\"", reason);
    metric_add(pm.dead_letters, lbl, 1);
    log_error("dead letter", LF_S("call_sid", j->e->call_sid), LF_S("reason", reason),
              LF_S("error", error), LF_I("http_status", http_status),
              LF_I("attempts", j->claim.attempts));
    alert_dead_letter(j->e->call_sid, reason, error);
    return PROCESSOR_DEAD;
}

/* Records retry_wait and moves the entry to the retry set, due in `delay` ms. When either
 * step fails, `why` is the failing step's message and the entry stays pending. */
static processor_outcome reschedule(job *j, long delay, const calllog_error *ae)
{
    worker_links *w = j->w;
    calllog_error err;
    const char *why = NULL;
    if (ledger_mark_retry(w->ledger, j->e->call_sid, w->owner, delay, ae->message,
                          ae->http_status) < 0)
        why = ledger_error(w->ledger)->message;
    else if (queue_reschedule(w->redis, &w->settings->keys, j->e, delay, &err) != 0)
        why = err.message;
    if (why) {
        log_error("cannot reschedule, entry stays pending", LF_S("call_sid", j->e->call_sid),
                  LF_S("error", why));
        return PROCESSOR_DEFERRED;
    }
    metric_add(pm.retries, NULL, 1);
    log_warn("rescheduled", LF_S("call_sid", j->e->call_sid), LF_S("error", ae->message),
             LF_I("http_status", ae->http_status), LF_I("attempt", j->claim.attempts),
             LF_I("delay_ms", delay));
    return PROCESSOR_RETRY;
}

/* Reschedules after a transient failure (at least `min_delay` ms away), or buries when
 * attempts are used up. */
static processor_outcome retry_later(job *j, const calllog_error *ae, long min_delay)
{
    const retry_settings *rs = &j->w->settings->retry;
    if (retry_exhausted(rs, j->claim.attempts))
        return bury(j, "attempts_exhausted", ae->message, ae->http_status);
    long delay = retry_delay_ms(rs, j->claim.attempts, ae->retry_after_ms, retry_random());
    return reschedule(j, delay > min_delay ? delay : min_delay, ae);
}

/* Decides between retry and dead letter for a failed RD/Twilio exchange. A worker that
 * is stopping hands the call back at once: no backoff, never a dead letter. */
static processor_outcome api_failed(job *j, const calllog_error *ae)
{
    if (shutdown_requested() && ae->curl_code == -1) {
        calllog_error handback = *ae;
        snprintf(handback.message, sizeof handback.message, "worker stopping: handed back");
        return reschedule(j, 0, &handback);
    }
    if (error_is_transient(ae->code))
        return retry_later(j, ae, 0);
    return bury(j, "permanent_error", ae->message, ae->http_status);
}

/* Applies CALLLOG_UNKNOWN_CALLER to a caller without contact or open deal. */
static processor_outcome unknown_caller(job *j, const char *reason)
{
    if (j->w->settings->unknown == UNKNOWN_DEAD)
        return bury(j, reason, "caller has no RD contact or open deal", 0);
    if (ledger_mark_skipped(j->w->ledger, j->e->call_sid, j->w->owner, reason) < 0)
        return PROCESSOR_DEFERRED;
    log_info("skipped", LF_S("call_sid", j->e->call_sid), LF_S("reason", reason),
             LF_S("customer", j->customer));
    return finish(j, PROCESSOR_SKIPPED);
}

/* ---- facts -------------------------------------------------------------------- */

static long parse_long(const char *s, long def)
{
    char *end;
    long v = s && *s ? strtol(s, &end, 10) : def;
    return s && *s && *end == '\0' ? v : def;
}

/* Fills the template's facts from the webhook event and, where it lacks them, REST. */
static void build_facts(const job *j, call_facts *f)
{
    const json_t *ev = j->ev;
    memset(f, 0, sizeof *f);
    f->call_sid = j->e->call_sid;
    f->direction = event_get(ev, "direction");
    f->status = event_get(ev, "status");
    f->from = event_get(ev, "from");
    f->to = event_get(ev, "to");
    f->customer = j->customer;
    f->recording_url = event_get(ev, "recording_url");
    f->caller_name = event_get(ev, "caller_name");
    f->answered_by = event_get(ev, "answered_by");
    f->duration_seconds = parse_long(event_get(ev, "duration"), -1);
    f->end = timing_parse_rfc2822(event_get(ev, "timestamp"));
    if (j->enriched) {
        const twilio_call *r = &j->rest;
        if (!f->recording_url && r->recording_url[0])
            f->recording_url = r->recording_url;
        f->recording_pending = !f->recording_url && r->recording_pending;
        if (!f->caller_name && r->caller_name[0])
            f->caller_name = r->caller_name;
        if (!f->answered_by && r->answered_by[0])
            f->answered_by = r->answered_by;
        if (r->price[0]) {
            f->price = r->price;
            f->price_unit = r->price_unit;
        }
        if (f->duration_seconds < 0)
            f->duration_seconds = r->duration_s;
        f->start = r->start_time;
        if (r->end_time)
            f->end = r->end_time;
    }
    if (!f->start && f->end && f->duration_seconds > 0)
        f->start = f->end - f->duration_seconds;
}

/* Fetches the call from Twilio's REST API; failure only loses the extra fields. */
static void enrich(job *j)
{
    if (!j->w->twilio)
        return;
    calllog_error ae = {0};
    j->enriched = 1; /* on failure `rest` still holds whatever was learnt */
    if (twilio_fetch_call(j->w->twilio, j->e->call_sid, &j->rest, &ae) != 0)
        log_warn("twilio enrichment failed, using the webhook's fields",
                 LF_S("call_sid", j->e->call_sid), LF_S("error", ae.message),
                 LF_I("http_status", ae.http_status));
}

/* ---- RD Station ------------------------------------------------------------------ */

typedef enum { FIND_OK, FIND_NO_CONTACT, FIND_NO_DEAL, FIND_FAILED } find_result;

/* Counts where a look-up was answered: calllog_worker_lookups_total{source}. */
static void count_lookup(const char *source)
{
    char lbl[48];
    snprintf(lbl, sizeof lbl, "source=\"%s\"", source);
    metric_add(pm.lookups, lbl, 1);
}

/* Asks the phone index (phone_index.h), when it is kept: FIND_OK with the deal, or
 * FIND_NO_DEAL with the contact when it knows the contact only; -1 when it does not know
 * the phone. */
static int find_in_index(job *j)
{
    const worker_settings *s = j->w->settings;
    phone_index_hit hit;
    if (!s->phone_index || s->cache_ttl_s <= 0)
        return -1;
    phone_index_status st =
        phone_index_find(j->w->redis, &s->keys, j->customer, phone_index_max_age_ms(s), &hit);
    if (st == PHONE_INDEX_UNKNOWN)
        return -1;
    snprintf(j->deal.contact_id, sizeof j->deal.contact_id, "%s", hit.contact_id);
    snprintf(j->contact_name, sizeof j->contact_name, "%s", hit.contact_name);
    if (st == PHONE_INDEX_NO_DEAL)
        return FIND_NO_DEAL;
    snprintf(j->deal.deal_id, sizeof j->deal.deal_id, "%s", hit.deal_id);
    snprintf(j->deal.deal_user_id, sizeof j->deal.deal_user_id, "%s", hit.deal_user_id);
    count_lookup("index");
    return FIND_OK;
}

/* Asks the look-up cache (lookup_cache.h). Returns a find_result, or -1 on a miss. A
 * contact the index knows is not taken for unknown by an older cached miss. */
static int find_in_cache(job *j, int contact_known)
{
    const worker_settings *s = j->w->settings;
    lookup_cache_hit hit;
    lookup_cache_status st = lookup_cache_get(j->w->redis, &s->keys, j->customer, &hit);
    if (st == LOOKUP_CACHE_MISS || (contact_known && st == LOOKUP_CACHE_NO_CONTACT))
        return -1;
    if (!contact_known || st == LOOKUP_CACHE_FOUND)
        j->deal = hit;
    count_lookup("cache");
    return st == LOOKUP_CACHE_FOUND     ? FIND_OK
           : st == LOOKUP_CACHE_NO_DEAL ? FIND_NO_DEAL
                                        : FIND_NO_CONTACT;
}

/* Finds the contact live (unless the index named it) and its open deal, caching what it
 * learns. */
static find_result find_live(job *j, calllog_error *ae)
{
    worker_links *w = j->w;
    const worker_settings *s = w->settings;
    rd_deal deal;
    calllog_code st;
    count_lookup("rdstation");
    if (!j->deal.contact_id[0]) {
        rd_contact contact;
        st = rd_find_contact(w->rd, j->customer, &contact, ae);
        if (st == CALLLOG_NOT_FOUND) {
            lookup_cache_put_missing(w->redis, &s->keys, j->customer, LOOKUP_CACHE_NO_CONTACT, NULL,
                                     s->negative_cache_ttl_s);
            return FIND_NO_CONTACT;
        }
        if (st != CALLLOG_OK)
            return FIND_FAILED;
        snprintf(j->deal.contact_id, sizeof j->deal.contact_id, "%s", contact.id);
        snprintf(j->contact_name, sizeof j->contact_name, "%s", contact.name);
    }
    st = rd_find_open_deal(w->rd, j->deal.contact_id, &deal, ae);
    if (st == CALLLOG_NOT_FOUND) {
        lookup_cache_put_missing(w->redis, &s->keys, j->customer, LOOKUP_CACHE_NO_DEAL,
                                 j->deal.contact_id, s->negative_cache_ttl_s);
        return FIND_NO_DEAL;
    }
    if (st != CALLLOG_OK)
        return FIND_FAILED;
    snprintf(j->deal.deal_id, sizeof j->deal.deal_id, "%s", deal.id);
    snprintf(j->deal.deal_user_id, sizeof j->deal.deal_user_id, "%s", deal.user_id);
    lookup_cache_put_found(w->redis, &s->keys, j->customer, &j->deal, s->cache_ttl_s);
    return FIND_OK;
}

/* Finds (or recalls) the contact and open deal for the customer: the deal an earlier
 * attempt chose, else the phone index, the look-up cache, then RD Station live. */
static find_result find_deal(job *j, calllog_error *ae)
{
    if (j->claim.rd_deal_id[0]) { /* an earlier attempt chose it: keep it for the marker */
        lookup_cache_hit hit;     /* and its owner, when the cache still holds that deal */
        if (lookup_cache_get(j->w->redis, &j->w->settings->keys, j->customer, &hit) ==
                LOOKUP_CACHE_FOUND &&
            strcmp(hit.deal_id, j->claim.rd_deal_id) == 0)
            j->deal = hit;
        snprintf(j->deal.deal_id, sizeof j->deal.deal_id, "%s", j->claim.rd_deal_id);
        return FIND_OK;
    }
    int found = find_in_index(j);
    if (found == FIND_OK)
        return FIND_OK;
    int contact_known = found == FIND_NO_DEAL;
    if ((found = find_in_cache(j, contact_known)) >= 0)
        return (find_result)found;
    return find_live(j, ae);
}

/* Creates a contact and deal for an unknown caller (CALLLOG_UNKNOWN_CALLER=create). */
static find_result create_deal(job *j, calllog_error *ae)
{
    const worker_settings *s = j->w->settings;
    rd_contact contact = {0};
    rd_deal deal;
    const char *name = event_get(j->ev, "caller_name");
    snprintf(contact.id, sizeof contact.id, "%s", j->deal.contact_id); /* "" if none */
    if (rd_create_contact_and_deal(j->w->rd, name ? name : j->customer, j->customer,
                                   s->create_stage_id, worker_settings_user_for(s, j->our_number),
                                   &contact, &deal, ae) != CALLLOG_OK)
        return FIND_FAILED;
    snprintf(j->deal.contact_id, sizeof j->deal.contact_id, "%s", contact.id);
    snprintf(j->deal.deal_id, sizeof j->deal.deal_id, "%s", deal.id);
    lookup_cache_put_found(j->w->redis, &s->keys, j->customer, &j->deal, s->cache_ttl_s);
    log_info("created deal for unknown caller", LF_S("call_sid", j->e->call_sid),
             LF_S("contact_id", contact.id), LF_S("deal_id", deal.id));
    return FIND_OK;
}

/* Fetches the deal's owner when it is needed and unknown (v1 deal listings do not name it):
 * to write as, without a mapped or default user, and to assign a missed call's follow-up to.
 * Kept in the lookup cache, which is asked first. Returns CALLLOG_OK (also when the deal answered
 * 404: the POST then finds out), or a negative code. */
static calllog_code learn_owner(job *j, calllog_error *ae)
{
    const worker_settings *s = j->w->settings;
    int author = worker_settings_user_for(s, j->our_number) != NULL;
    if (j->deal.deal_user_id[0] || worker_settings_mapped_user(s, j->our_number) ||
        (author && !followup_opens(&s->followup, event_get(j->ev, "direction"), j->e->status)))
        return CALLLOG_OK;
    lookup_cache_hit cached; /* the phone index lists no v1 owners: one learnt before? */
    if (lookup_cache_get(j->w->redis, &s->keys, j->customer, &cached) == LOOKUP_CACHE_FOUND &&
        strcmp(cached.deal_id, j->deal.deal_id) == 0 && cached.deal_user_id[0]) {
        snprintf(j->deal.deal_user_id, sizeof j->deal.deal_user_id, "%s", cached.deal_user_id);
        return CALLLOG_OK;
    }
    calllog_code st = rd_deal_owner(j->w->rd, j->deal.deal_id, j->deal.deal_user_id,
                                    sizeof j->deal.deal_user_id, ae);
    if (st == CALLLOG_OK && j->deal.deal_user_id[0] && j->deal.contact_id[0])
        lookup_cache_put_found(j->w->redis, &s->keys, j->customer, &j->deal, s->cache_ttl_s);
    return st == CALLLOG_NOT_FOUND ? CALLLOG_OK : st;
}

/* The RD user the entry is written as: the line's salesperson, the default, the owner. */
static const char *author(const job *j)
{
    const char *u = worker_settings_user_for(j->w->settings, j->our_number);
    return u ? u : (j->deal.deal_user_id[0] ? j->deal.deal_user_id : NULL);
}

/* Posts the note and/or the completed call task. Fills the new ids. */
static calllog_code post(job *j, const char *text, const call_facts *f, char *note_id,
                         char *task_id, calllog_error *ae)
{
    worker_links *w = j->w;
    worker_delivery_mode mode = w->settings->mode;
    if (mode != WORKER_MODE_TASK &&
        rd_post_note(w->rd, j->deal.deal_id, author(j), text, note_id, 64, ae) != CALLLOG_OK)
        return ae->code;
    if (mode == WORKER_MODE_NOTE)
        return CALLLOG_OK;
    char subject[128];
    size_t n = strcspn(text, "\n");
    snprintf(subject, sizeof subject, "%.*s", (int)(n < 120 ? n : 120), text);
    time_t when = f->start ? f->start : (f->end ? f->end : time(NULL));
    return rd_post_call_task(w->rd, j->deal.deal_id, author(j), subject, text, when, task_id, 64,
                             ae);
}

/* 1 when a failed POST may nonetheless have been processed by RD (no answer, or a
 * gateway error): looking for the marker must then wait until RD is done with it. */
static int outcome_unknown(const calllog_error *ae)
{
    return ae->curl_code > 0 || ae->http_status == 500 || ae->http_status == 502 ||
           ae->http_status == 504;
}

/* Opens or closes the call's missed-call follow-up (followup.h) once its note exists. A
 * transient failure sends the call back (`*o`, returns 1): the next attempt finds the note by
 * its marker and comes here again. Otherwise, or when attempts are used up, returns 0 and
 * the delivery is recorded, the follow-up given up if it failed. */
static int follow_up(job *j, processor_outcome *o)
{
    const worker_settings *s = j->w->settings;
    const char *mapped = worker_settings_mapped_user(s, j->our_number);
    const char *name = j->contact_name[0] ? j->contact_name : event_get(j->ev, "caller_name");
    const char *answered_by = event_get(j->ev, "answered_by");
    if (!answered_by && j->enriched && j->rest.answered_by[0])
        answered_by = j->rest.answered_by;
    followup_call c = {
        j->e->call_sid,
        event_get(j->ev, "direction"),
        j->e->status,
        parse_long(event_get(j->ev, "duration"), j->enriched ? j->rest.duration_s : -1),
        timing_parse_rfc2822(event_get(j->ev, "timestamp")),
        j->customer,
        name,
        j->deal.deal_id,
        mapped ? mapped : (j->deal.deal_user_id[0] ? j->deal.deal_user_id : s->rd_user_id),
        answered_by};
    followup_outcome fo;
    calllog_error fe = {0};
    if (followup_handle(&s->followup, j->w->ledger, j->w->rd, &c, &fo, &fe) == CALLLOG_OK)
        return 0;
    if (error_is_transient(fe.code) && !retry_exhausted(&s->retry, j->claim.attempts)) {
        *o = retry_later(j, &fe, outcome_unknown(&fe) ? s->unknown_outcome_delay_ms : 0);
        return 1;
    }
    log_error("follow-up task given up, the note is recorded", LF_S("call_sid", j->e->call_sid),
              LF_S("deal_id", j->deal.deal_id), LF_S("error", fe.message),
              LF_I("http_status", fe.http_status));
    if (followup_abandon(j->w->ledger, &c) != 0)
        log_warn("cannot release the follow-up slot; the next missed call takes it over",
                 LF_S("call_sid", j->e->call_sid),
                 LF_S("error", ledger_error(j->w->ledger)->message));
    return 0;
}

/* Records a delivery and acknowledges; observes hangup-to-note latency. */
static processor_outcome delivered(job *j, const char *note_id, const char *task_id, int recovered)
{
    processor_outcome sent_back;
    if (follow_up(j, &sent_back))
        return sent_back;
    ledger_delivery d = {j->deal.contact_id[0] ? j->deal.contact_id : NULL, j->deal.deal_id,
                         note_id && note_id[0] ? note_id : NULL,
                         task_id && task_id[0] ? task_id : NULL, recovered};
    int rc = ledger_mark_delivered(j->w->ledger, j->e->call_sid, j->w->owner, &d);
    if (rc > 0)
        log_warn("lease lost before the delivery was recorded; the next holder finds the marker",
                 LF_S("call_sid", j->e->call_sid));
    if (rc < 0) {
        /* The note exists; leaving the entry pending makes the next claim find the marker. */
        log_error("delivered but not recorded, recovery will find the marker",
                  LF_S("call_sid", j->e->call_sid),
                  LF_S("error", ledger_error(j->w->ledger)->message));
        return PROCESSOR_DEFERRED;
    }
    long long received = timing_parse_rfc3339_ms(j->e->received_at);
    if (received > 0)
        metric_observe(pm.hangup_to_note, NULL, (double)(timing_epoch_ms() - received) / 1000.0);
    log_info(recovered ? "recovered delivery by marker" : "delivered",
             LF_S("call_sid", j->e->call_sid), LF_S("deal_id", j->deal.deal_id),
             LF_S("note_id", note_id), LF_S("task_id", task_id),
             LF_I("attempt", j->claim.attempts));
    return finish(j, recovered ? PROCESSOR_RECOVERED : PROCESSOR_DELIVERED);
}

/* The deal answered 404 (deleted, merged, hidden): forgets it in the lookup cache and in
 * the ledger row (which the next claim would otherwise hand back as the deal to keep), so
 * the next attempt looks the deal up again. Returns 0, or -1 when the ledger failed. */
static int forget_deal(job *j)
{
    worker_links *w = j->w;
    lookup_cache_forget(w->redis, &w->settings->keys, j->customer);
    if (ledger_forget_deal(w->ledger, j->e->call_sid, w->owner) < 0) {
        log_error("cannot forget the vanished deal, entry stays pending",
                  LF_S("call_sid", j->e->call_sid), LF_S("deal_id", j->deal.deal_id),
                  LF_S("error", ledger_error(w->ledger)->message));
        return -1;
    }
    return 0;
}

/* Pays for the request, renews the lease while recording the intent, then posts at once,
 * so that no wait (for rate budget) can stretch between the renewal and the POST. */
static processor_outcome post_once(job *j, const char *text, const call_facts *f)
{
    worker_links *w = j->w;
    const worker_settings *s = w->settings;
    calllog_error ae;
    char note_id[64] = "", task_id[64] = "";
    if (w->budget.prepay(w->budget.arg) != 0) {
        error_set(&ae, CALLLOG_TRANSIENT, "rate limiter: stopping or unavailable");
        ae.curl_code = -1;
        return api_failed(j, &ae);
    }
    int rc = ledger_mark_posting(w->ledger, j->e->call_sid, w->owner, j->deal.deal_id, s->lease_ms);
    if (rc != 0) { /* lease lost (another worker owns the call now) or database down */
        w->budget.forfeit(w->budget.arg);
        return rc > 0 ? finish(j, PROCESSOR_DUPLICATE) : PROCESSOR_DEFERRED;
    }
    if (post(j, text, f, note_id, task_id, &ae) == CALLLOG_OK)
        return delivered(j, note_id, task_id, 0);
    if (ae.http_status == 404) /* the deal vanished: look it up again next time */
        return forget_deal(j) == 0 ? retry_later(j, &ae, 0) : PROCESSOR_DEFERRED;
    if (outcome_unknown(&ae) && error_is_transient(ae.code))
        return retry_later(j, &ae, s->unknown_outcome_delay_ms);
    return api_failed(j, &ae);
}

/* The lists the marker search reads: those the delivery mode writes to. */
static rd_marker_scope marker_scope(worker_delivery_mode mode)
{
    return mode == WORKER_MODE_NOTE   ? RD_MARKER_NOTES
           : mode == WORKER_MODE_TASK ? RD_MARKER_TASKS
                                      : RD_MARKER_BOTH;
}

/* Steps after a won claim: enrich, find the deal, recover or post, record. */
static processor_outcome deliver(job *j)
{
    worker_links *w = j->w;
    calllog_error ae = {0};
    if (!j->customer)
        return unknown_caller(j, "no_customer_phone");
    enrich(j);
    find_result fr = find_deal(j, &ae);
    if (fr == FIND_NO_CONTACT || fr == FIND_NO_DEAL) {
        if (w->settings->unknown != UNKNOWN_CREATE)
            return unknown_caller(j, fr == FIND_NO_CONTACT ? "no_contact" : "no_open_deal");
        fr = create_deal(j, &ae);
    }
    if (fr == FIND_FAILED || learn_owner(j, &ae) != CALLLOG_OK)
        return api_failed(j, &ae);
    call_facts facts;
    build_facts(j, &facts);
    char *text = NULL;
    if (note_render(w->tpl, &facts, &text) != CALLLOG_OK)
        return bury(j, "render_failed", "note template could not be rendered", 0);
    processor_outcome o;
    char marker[NOTE_MARKER_MAX], found[64] = "";
    note_marker(j->e->call_sid, marker, sizeof marker);
    calllog_code seen = CALLLOG_NOT_FOUND;
    if (j->claim.post_started)
        seen = rd_find_marker(w->rd, j->deal.deal_id, marker_scope(w->settings->mode), marker,
                              found, sizeof found, &ae);
    if (seen == CALLLOG_OK) {
        o = delivered(j, found, NULL, 1);
    } else if (seen < 0) {
        o = api_failed(j, &ae);
    } else {
        o = post_once(j, text, &facts);
    }
    free(text);
    return o;
}

/* Another worker holds a valid lease. It may be alive (renewing it: this copy will turn
 * out a duplicate) or dead (its stream entry was handed to us before its lease ran out):
 * look again just after the lease runs out, rather than acknowledging and losing the
 * call. The wait is parked, not rescheduled: it costs no attempt and never a dead letter. */
static processor_outcome wait_for_lease(job *j)
{
    calllog_error err;
    worker_links *w = j->w;
    long left = j->claim.lease_left_ms;
    long delay =
        (left > 0 && left < w->settings->lease_ms ? left : w->settings->lease_ms) + LEASE_MARGIN_MS;
    if (queue_park(w->redis, &w->settings->keys, j->e, delay, &err) != 0) {
        log_error("cannot park, entry stays pending", LF_S("call_sid", j->e->call_sid),
                  LF_S("error", err.message));
        return PROCESSOR_DEFERRED;
    }
    log_info("held by another worker, looking again after its lease",
             LF_S("call_sid", j->e->call_sid), LF_I("delay_ms", delay));
    return PROCESSOR_WAITING;
}

/* Claims the CallSid; anything but a win or a held lease is a duplicate: acknowledge. */
static processor_outcome claim_and_deliver(job *j)
{
    worker_links *w = j->w;
    if (ledger_claim(w->ledger, j->e->call_sid, j->e->status, w->owner, w->settings->lease_ms,
                     j->e->event, &j->claim) != 0) {
        log_error("claim failed, entry stays pending", LF_S("call_sid", j->e->call_sid),
                  LF_S("error", ledger_error(w->ledger)->message));
        return PROCESSOR_DEFERRED;
    }
    j->claimed = j->claim.status == LEDGER_CLAIM_WON;
    if (j->claim.status == LEDGER_CLAIM_BUSY)
        return wait_for_lease(j);
    if (!j->claimed) {
        log_info("duplicate", LF_S("call_sid", j->e->call_sid), LF_S("state", j->claim.state));
        return finish(j, PROCESSOR_DUPLICATE);
    }
    const char *direction = event_get(j->ev, "direction");
    const char *from = event_get(j->ev, "from"), *to = event_get(j->ev, "to");
    j->customer = phone_customer(direction, from, to);
    j->our_number = j->customer == from ? to : from;
    phone_variant_list v;
    if (j->customer && phone_variants(j->customer, &v) < 1)
        j->customer = NULL; /* "client:alice", "anonymous": no phone to look up */
    return deliver(j);
}

/* A child leg of a <Dial> (parent_call_sid set) is part of its parent's conversation,
 * which gets the one note: acknowledge it without claiming anything. */
static processor_outcome child_leg(job *j)
{
    log_info("child leg, the parent call gets the note", LF_S("call_sid", j->e->call_sid),
             LF_S("parent_call_sid", event_get(j->ev, "parent_call_sid")));
    return finish(j, PROCESSOR_IGNORED);
}

/* Postgres (or Redis) failed before an outcome was recorded: park the entry on the retry
 * set for a few seconds. Leaving it pending would work too, but every takeover counts
 * as a delivery, and a long database outage would end in `poison` dead letters. When
 * Redis is the one failing this fails too, and the entry simply stays pending. */
static void defer(job *j)
{
    calllog_error err;
    if (queue_park(j->w->redis, &j->w->settings->keys, j->e, DEFER_DELAY_MS, &err) != 0)
        log_warn("entry stays pending", LF_S("call_sid", j->e->call_sid),
                 LF_S("error", err.message));
}

/* Counts an outcome, logs the entry's one summary line, feeds the failure-rate alert. */
static void count(const stream_entry *e, processor_outcome o, double t0)
{
    char lbl[64];
    snprintf(lbl, sizeof lbl, "outcome=\"%s\"", outcome_names[o]);
    metric_add(pm.processed, lbl, 1);
    double secs = timing_mono_s() - t0;
    metric_observe(pm.handle_secs, NULL, secs);
    log_info("handled", LF_S("request_id", e->request_id), LF_S("call_sid", e->call_sid),
             LF_S("status", e->status), LF_S("outcome", outcome_names[o]),
             LF_I("attempt", e->attempt), LF_I("latency_us", (long long)(secs * 1e6)));
    if (o != PROCESSOR_IGNORED && o != PROCESSOR_DUPLICATE && o != PROCESSOR_DEFERRED &&
        o != PROCESSOR_WAITING)
        alert_record(o == PROCESSOR_RETRY || o == PROCESSOR_DEAD);
}

processor_outcome processor_handle(worker_links *w, const stream_entry *e)
{
    double t0 = timing_mono_s();
    job j;
    memset(&j, 0, sizeof j);
    j.w = w;
    j.e = e;
    j.claim.attempts = e->attempt + 1;
    calllog_error err;
    processor_outcome o;
    j.ev = event_parse(e->event, strlen(e->event), &err);
    if (!j.ev)
        o = bury(&j, "malformed_event", err.message, 0);
    else if (e->deliveries > w->settings->max_deliveries)
        o = bury(&j, "poison", "delivered too many times without an outcome", 0);
    else if (!event_status_is_terminal(e->status))
        o = finish(&j, PROCESSOR_IGNORED);
    else if (event_get(j.ev, "parent_call_sid"))
        o = child_leg(&j);
    else
        o = claim_and_deliver(&j);
    if (o == PROCESSOR_DEFERRED)
        defer(&j);
    w->budget.forfeit(w->budget.arg); /* a POST that failed before its request leaves it */
    json_decref(j.ev);
    count(e, o, t0);
    return o;
}
