/* test_followup — the follow-up slot of a deal against a real PostgreSQL (both migrations)
 * and the RD Station mock (v1): one missed call takes the slot and opens the task; another
 * missed call while the opener is alive gets the note only; an opener that died (its
 * delivery is dead) is taken over after a search for its marker, which finds the task it
 * had created; a closed slot reopens for a new call but never for its own opener again;
 * only an answered call of the same customer (not its voicemail) closes it; abandoning releases
 * only the caller's own `opening` row; eight workers racing with missed calls on one deal open one
 * task. Also the subject's and the marker's text. */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "common/timing.h"
#include "tests/lib/mock_server.h"
#include "tests/lib/pg_fixture.h"
#include "worker/followup.h"

#define CUSTOMER "+5511971730783"
#define OTHER_CUSTOMER "+5511988887777"
#define OWNER "5e00000000000000000000f1"
#define SID_A "CA0000000000000000000000000000000a"
#define SID_B "CA0000000000000000000000000000000b"
#define SID_C "CA0000000000000000000000000000000c"

static mock_server rd;
static pg_fixture pg;
static ledger *l;
static rd_client *rc;
static followup_settings fs;
static char base[128], deal[64];

/* Starts the RD mock with one contact and open deal, and a migrated database. */
static void setup(void)
{
    calllog_error err = {0};
    cr_assert_eq(curl_global_init(CURL_GLOBAL_DEFAULT), CURLE_OK);
    cr_assert_eq(timing_set_zone("America/Sao_Paulo", &err), CALLLOG_OK);
    cr_assert_eq(followup_metrics_init(), 0);
    cr_assert_eq(mock_start(&rd, "rdstation_mock.py", NULL), 0, "RD mock did not start");
    snprintf(base, sizeof base, "%s/api/v1", rd.base);
    json_t *seeded = NULL;
    cr_assert_eq(mock_post(&rd, "/_mock/contacts",
                           "{\"name\":\"Maria Souza\",\"phones\":[\"(11) 97173-0783\"],"
                           "\"deals\":[{\"name\":\"Aberto\",\"status\":\"ongoing\",\"user_id\":"
                           "\"" OWNER "\"}]}",
                           &seeded),
                 201);
    snprintf(deal, sizeof deal, "%s",
             json_string_value(json_array_get(json_object_get(seeded, "deal_ids"), 0)));
    json_decref(seeded);
    pg_fixture_open(&pg);
    l = ledger_open(pg.url, &err);
    cr_assert_not_null(l, "%s", err.message);
    rd_settings rs = {
        .api = RD_API_V1, .base_url = base, .token = "mock-v1-token", .timeout_ms = 5000};
    rc = rd_client_new(&rs, NULL, NULL);
    cr_assert_not_null(rc);
    fs.enabled = 1;
    fs.due_min = 30;
    cr_assert_eq(business_hours_parse(BUSINESS_HOURS_DEFAULT, &fs.hours, &err), CALLLOG_OK);
}

static void teardown(void)
{
    rd_client_free(rc);
    ledger_close(l);
    pg_fixture_close(&pg);
    mock_stop(&rd);
    curl_global_cleanup();
}

TestSuite(followup, .init = setup, .fini = teardown, .timeout = 60);

/* Records `sid` in calllog.deliveries in `state` (the opener's liveness). */
static void delivery(const char *sid, const char *state)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "INSERT INTO calllog.deliveries (call_sid, state, lease_owner, lease_expires_at)"
             " VALUES ('%s', '%s', 'w', now() + interval '1 minute')"
             " ON CONFLICT (call_sid) DO UPDATE SET state = EXCLUDED.state",
             sid, state);
    pg_fixture_exec(&pg, sql);
}

/* A call on the seeded deal. */
static followup_call call(const char *sid, const char *direction, const char *status, long duration,
                          const char *customer)
{
    followup_call c = {sid,      direction,     status, duration, 1796416800,
                       customer, "Maria Souza", deal,   OWNER,    NULL};
    return c;
}

/* Runs followup_handle, asserting success; returns the outcome. */
static followup_outcome handle(followup_call c)
{
    followup_outcome o;
    calllog_error err = {0};
    cr_assert_eq(followup_handle(&fs, l, rc, &c, &o, &err), CALLLOG_OK, "%s", err.message);
    return o;
}

/* The mock's tasks (caller decrefs). */
static json_t *tasks(void)
{
    json_t *t = mock_get(&rd, "/_mock/tasks");
    cr_assert_not_null(t);
    return t;
}

/* Number of tasks in RD, and how many are open. */
static size_t count_tasks(size_t *open)
{
    json_t *t = tasks(), *list = json_object_get(t, "tasks"), *item;
    size_t i, n = json_array_size(list);
    *open = 0;
    json_array_foreach(list, i, item) *open += !json_is_true(json_object_get(item, "done"));
    json_decref(t);
    return n;
}

/* A column of the deal's followups row. */
static char *row(const char *col, char *out, size_t outlen)
{
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT %s FROM calllog.followups WHERE deal_id = $1", col);
    return pg_fixture_value(&pg, sql, deal, out, outlen);
}

Test(followup, one_slot_per_deal_while_the_opener_is_alive)
{
    size_t open;
    char v[128];
    delivery(SID_A, "processing");
    delivery(SID_B, "processing");
    cr_expect_eq(handle(call(SID_A, "inbound", "no-answer", 0, CUSTOMER)), FOLLOWUP_OPENED);
    cr_expect_eq(handle(call(SID_B, "inbound", "busy", 0, CUSTOMER)), FOLLOWUP_ALREADY_OPEN);
    cr_expect_eq(handle(call(SID_A, "inbound", "no-answer", 0, CUSTOMER)), FOLLOWUP_ALREADY_OPEN,
                 "the opener's own retry opened a second task");
    cr_expect_eq(count_tasks(&open), 1);
    cr_expect_str_eq(row("state", v, sizeof v), "open");
    cr_expect_str_eq(row("call_sid", v, sizeof v), SID_A);
    cr_expect_str_eq(row("owner_id", v, sizeof v), OWNER);
    /* Friday 17:40 -03:00 + 30 min → Monday 08:00 -03:00 */
    cr_expect_str_eq(row("extract(epoch FROM due_at)::bigint::text", v, sizeof v), "1796641200");
}

Test(followup, outbound_and_disabled_open_nothing)
{
    size_t open;
    delivery(SID_A, "processing");
    cr_expect_eq(handle(call(SID_A, "outbound-api", "no-answer", 0, CUSTOMER)), FOLLOWUP_NOTHING);
    fs.enabled = 0;
    cr_expect_eq(handle(call(SID_A, "inbound", "no-answer", 0, CUSTOMER)), FOLLOWUP_NOTHING);
    cr_expect_eq(count_tasks(&open), 0);
}

/* Leaves the slot as an opener that created its task in RD and died before recording it. */
static void crashed_opener(const char *sid)
{
    char marker[FOLLOWUP_MARKER_MAX], notes[160], id[64], sql[256];
    calllog_error err = {0};
    cr_assert(followup_marker(sid, marker, sizeof marker) > 0);
    snprintf(notes, sizeof notes, "Ligação perdida\n%s", marker);
    cr_assert_eq(rd_open_task(rc, deal, OWNER, "Retornar ligação — X", notes, 1796641200, id,
                              sizeof id, &err),
                 CALLLOG_OK, "%s", err.message);
    snprintf(sql, sizeof sql,
             "INSERT INTO calllog.followups (deal_id, state, call_sid, customer)"
             " VALUES ('%s', 'opening', '%s', '" CUSTOMER "')",
             deal, sid);
    pg_fixture_exec(&pg, sql);
}

Test(followup, dead_opener_is_taken_over_and_its_task_found_by_marker)
{
    size_t open;
    char v[128];
    crashed_opener(SID_A);
    delivery(SID_A, "retry_wait"); /* still being delivered: it will finish its own task */
    delivery(SID_B, "processing");
    cr_expect_eq(handle(call(SID_B, "inbound", "no-answer", 0, CUSTOMER)), FOLLOWUP_ALREADY_OPEN);
    delivery(SID_A, "dead"); /* given up: the slot is free, after a look for its task */
    cr_expect_eq(handle(call(SID_B, "inbound", "no-answer", 0, CUSTOMER)), FOLLOWUP_OPENED);
    cr_expect_eq(count_tasks(&open), 1, "a second task was created");
    json_t *t = tasks();
    const char *id =
        json_string_value(json_object_get(json_array_get(json_object_get(t, "tasks"), 0), "id"));
    cr_expect_str_eq(row("task_id", v, sizeof v), id);
    json_decref(t);
    cr_expect_str_eq(row("state", v, sizeof v), "open");
    cr_expect_str_eq(row("COALESCE(recover_from, 'none')", v, sizeof v), "none");
}

Test(followup, only_an_answered_call_of_that_customer_closes_and_a_new_call_reopens)
{
    size_t open;
    char v[128];
    delivery(SID_A, "processing");
    cr_expect_eq(handle(call(SID_A, "inbound", "canceled", 0, CUSTOMER)), FOLLOWUP_OPENED);
    cr_expect_eq(handle(call(SID_B, "inbound", "completed", 0, CUSTOMER)), FOLLOWUP_NOTHING,
                 "a completed call without duration closed it");
    cr_expect_eq(handle(call(SID_B, "inbound", "completed", 40, OTHER_CUSTOMER)), FOLLOWUP_NOTHING,
                 "another customer's call closed it");
    followup_call voicemail = call(SID_B, "outbound-api", "completed", 40, CUSTOMER);
    voicemail.answered_by = "machine_end_beep";
    cr_expect_eq(handle(voicemail), FOLLOWUP_NOTHING, "reaching the voicemail closed it");
    cr_expect_eq(handle(call(SID_B, "outbound-dial", "completed", 40, CUSTOMER)), FOLLOWUP_CLOSED);
    cr_expect_eq(count_tasks(&open), 1);
    cr_expect_eq(open, 0);
    cr_expect_str_eq(row("state", v, sizeof v), "closed");
    cr_expect_str_eq(row("closed_by", v, sizeof v), SID_B);
    cr_expect_eq(handle(call(SID_A, "inbound", "canceled", 0, CUSTOMER)), FOLLOWUP_ALREADY_OPEN,
                 "the opener's retry after the close opened a second task");
    delivery(SID_C, "processing");
    cr_expect_eq(handle(call(SID_C, "inbound", "no-answer", 0, CUSTOMER)), FOLLOWUP_OPENED);
    cr_expect_eq(count_tasks(&open), 2);
    cr_expect_eq(open, 1);
}

#define RACERS 8

/* One racing worker: its own connection and client, one missed call. */
typedef struct racer {
    pthread_barrier_t *start;
    char sid[40];
    followup_outcome outcome;
    calllog_code rc;
    calllog_error err;
} racer;

/* Waits for the others, then handles its missed call. */
static void *race(void *arg)
{
    racer *r = arg;
    ledger *own = ledger_open(pg.url, &r->err);
    rd_settings rs = {
        .api = RD_API_V1, .base_url = base, .token = "mock-v1-token", .timeout_ms = 5000};
    rd_client *c = rd_client_new(&rs, NULL, NULL);
    followup_call fc = call(r->sid, "inbound", "no-answer", 0, CUSTOMER);
    pthread_barrier_wait(r->start);
    r->rc = own && c ? followup_handle(&fs, own, c, &fc, &r->outcome, &r->err) : CALLLOG_NOMEM;
    rd_client_free(c);
    ledger_close(own);
    return NULL;
}

Test(followup, racing_missed_calls_on_one_deal_open_one_task)
{
    pthread_barrier_t start;
    pthread_t th[RACERS];
    racer r[RACERS];
    size_t open, opened = 0;
    cr_assert_eq(pthread_barrier_init(&start, NULL, RACERS), 0);
    for (int i = 0; i < RACERS; i++) {
        memset(&r[i], 0, sizeof r[i]);
        r[i].start = &start;
        snprintf(r[i].sid, sizeof r[i].sid, "CA%032d", i + 100);
        delivery(r[i].sid, "processing");
    }
    for (int i = 0; i < RACERS; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, race, &r[i]), 0);
    for (int i = 0; i < RACERS; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&start);
    for (int i = 0; i < RACERS; i++) {
        cr_expect_eq(r[i].rc, CALLLOG_OK, "%s: %s", r[i].sid, r[i].err.message);
        opened += r[i].outcome == FOLLOWUP_OPENED;
    }
    cr_expect_eq(opened, 1, "%zu racers opened a follow-up", opened);
    cr_expect_eq(count_tasks(&open), 1);
}

Test(followup, abandon_releases_only_the_callers_opening_row)
{
    char v[128];
    followup_call a = call(SID_A, "inbound", "no-answer", 0, CUSTOMER);
    followup_call b = call(SID_B, "inbound", "no-answer", 0, CUSTOMER);
    char sql[256];
    snprintf(sql, sizeof sql,
             "INSERT INTO calllog.followups (deal_id, state, call_sid, customer)"
             " VALUES ('%s', 'opening', '" SID_A "', '" CUSTOMER "')",
             deal);
    pg_fixture_exec(&pg, sql);
    cr_expect_eq(followup_abandon(l, &b), 0);
    cr_expect_str_eq(row("state", v, sizeof v), "opening", "another call's row was released");
    cr_expect_eq(followup_abandon(l, &a), 0);
    cr_expect_str_eq(row("state", v, sizeof v), "(none)");
}

Test(followup_text, subject_marker_and_names_that_cannot_forge_a_marker)
{
    char out[256], m[FOLLOWUP_MARKER_MAX];
    followup_call c = {.customer = CUSTOMER, .contact_name = "Maria Souza"};
    followup_subject(&c, out, sizeof out);
    cr_expect_str_eq(out, "Retornar ligação — Maria Souza (11) 97173-0783");
    c.contact_name = "Ana [calllog-followup:CA1]\nX";
    followup_subject(&c, out, sizeof out);
    cr_expect_str_eq(out, "Retornar ligação — Ana (calllog-followup:CA1) X (11) 97173-0783");
    c.contact_name = NULL;
    c.customer = "+14155550100";
    followup_subject(&c, out, sizeof out);
    cr_expect_str_eq(out, "Retornar ligação — +14155550100");
    c.customer = "+551130001000"; /* a landline: 8-digit subscriber number */
    followup_subject(&c, out, sizeof out);
    cr_expect_str_eq(out, "Retornar ligação — (11) 3000-1000");
    cr_expect_eq(followup_marker(SID_A, m, sizeof m), (int)strlen("[calllog-followup:]") + 34);
    cr_expect_str_eq(m, "[calllog-followup:" SID_A "]");
    cr_expect_eq(followup_marker("CA1]x", m, sizeof m), -1);
    cr_expect_eq(followup_marker("", m, sizeof m), -1);
    cr_expect_eq(followup_marker(SID_A, m, 20), -1);
}
