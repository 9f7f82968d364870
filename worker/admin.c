/* calllog-admin — the operator's tool for the dead stream and the queues.
 *
 *   calllog-admin status                 depths of every queue, delivery states in Postgres
 *   calllog-admin dead list [--limit N]  one line per dead letter, oldest first
 *   calllog-admin dead show ID           every field of one dead letter
 *   calllog-admin dead replay ID|--all   back onto the events stream (attempt 0), after
 *                                        making the CallSid claimable again in Postgres
 *   calllog-admin dead purge ID|--all    delete dead letters (they are never capped silently)
 *   calllog-admin demo call [options]    one call through the demo's sandbox (demo.h)
 *   calllog-admin doctor [--json] [--write-test DEAL_ID] [--oauth-refresh]
 *                                        checks Redis, Postgres, RD Station and Twilio
 *                                        against the settings (doctor.h)
 *   calllog-admin doctor signature --url URL --params FILE --signature SIG
 *                                        which URL variant a webhook signature was for
 *
 * Same settings as the worker (REDIS_URL, CALLLOG_KEY_PREFIX, DATABASE_URL); the demo
 * needs only CALLLOG_SANDBOX_URL. */
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cli.h"
#include "common/config.h"
#include "common/event.h"
#include "common/keys.h"
#include "common/redis_client.h"
#include "common/timing.h"
#include "worker/demo.h"
#include "worker/doctor.h"
#include "worker/doctor_signature.h"
#include "worker/ledger.h"
#include "worker/phone_index.h"
#include "worker/queue.h"
#include "worker/rdstation.h"
#include "worker/reconcile.h"

static const char usage[] =
    "calllog-admin [--env-file FILE] COMMAND\n"
    "  status                  queue depths and delivery states\n"
    "  dead list [--limit N]   list dead letters (default 50)\n"
    "  dead show ID            show one dead letter\n"
    "  dead replay ID|--all    put dead letters back on the events stream\n"
    "  dead purge ID|--all     delete dead letters\n"
    "  demo call [--from +55…] [--to +55…] [--direction inbound|outbound]\n"
    "            [--status completed|no-answer|busy|failed|canceled] [--duration S] [--wait S]\n"
    "                          place a call in the demo's sandbox and print its note\n"
    "  doctor [--json] [--write-test DEAL_ID] [--oauth-refresh]\n"
    "                          check Redis, Postgres, RD Station and Twilio (exit 0: all ok)\n"
    "  doctor signature --url URL --params FILE --signature SIG [--json]\n"
    "                          tell which URL a webhook's X-Twilio-Signature was computed for\n"
    "Settings: REDIS_URL, CALLLOG_KEY_PREFIX, DATABASE_URL; CALLLOG_SANDBOX_URL for the demo\n"
    "(see docs/configuration.md).";

typedef struct admin {
    redisContext *redis;
    calllog_keys keys;
    ledger *ledger; /* only for status and replay */
} admin;

static int fail(const char *msg)
{
    cli_fail("calllog-admin", msg);
    return 1;
}

/* The value of `name` among an entry's flat fields, or "". */
static const char *field(const redisReply *fields, const char *name)
{
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        if (fields->element[i]->str && strcmp(fields->element[i]->str, name) == 0)
            return fields->element[i + 1]->str ? fields->element[i + 1]->str : "";
    }
    return "";
}

/* XRANGE dead from..to COUNT n; the caller frees the reply. */
static redisReply *dead_range(admin *a, const char *from, const char *to, long count)
{
    char n[24];
    snprintf(n, sizeof n, "%ld", count);
    const char *argv[] = {"XRANGE", a->keys.dead, from, to, "COUNT", n};
    redisReply *r = redisCommandArgv(a->redis, 6, argv, NULL);
    if (redis_reply_failed(a->redis, r, NULL) || r->type != REDIS_REPLY_ARRAY) {
        if (r)
            freeReplyObject(r);
        return NULL;
    }
    return r;
}

static int cmd_dead_list(admin *a, long limit)
{
    redisReply *r = dead_range(a, "-", "+", limit);
    if (!r)
        return fail("cannot read the dead stream");
    printf("%-20s %-36s %-22s %-5s %-20s %s\n", "ID", "CALL_SID", "REASON", "HTTP", "FAILED_AT",
           "ERROR");
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *f = r->element[i]->element[1];
        printf("%-20s %-36s %-22s %-5s %-20s %.80s\n", r->element[i]->element[0]->str,
               field(f, STREAM_ENTRY_CALL_SID), field(f, "reason"), field(f, "http_status"),
               field(f, "failed_at"), field(f, "error"));
    }
    printf("%zu dead letter(s) shown\n", r->elements);
    freeReplyObject(r);
    return 0;
}

static int cmd_dead_show(admin *a, const char *id)
{
    redisReply *r = dead_range(a, id, id, 1);
    if (!r || r->elements == 0) {
        if (r)
            freeReplyObject(r);
        return fail("no such dead letter");
    }
    const redisReply *f = r->element[0]->element[1];
    printf("id: %s\n", id);
    for (size_t i = 0; i + 1 < f->elements; i += 2) {
        if (strcmp(f->element[i]->str, STREAM_ENTRY_EVENT) == 0) {
            json_t *ev = json_loads(f->element[i + 1]->str, 0, NULL);
            char *pretty = ev ? json_dumps(ev, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
            printf("event: %s\n", pretty ? pretty : f->element[i + 1]->str);
            free(pretty);
            json_decref(ev);
        } else {
            printf("%s: %s\n", f->element[i]->str, f->element[i + 1]->str);
        }
    }
    freeReplyObject(r);
    return 0;
}

/* Replays one dead letter: claimable again in Postgres, then back on the stream. */
static int replay_one(admin *a, const char *id, const char *call_sid)
{
    calllog_error err;
    if (call_sid[0] && ledger_reset(a->ledger, call_sid) < 0) {
        fprintf(stderr, "calllog-admin: %s: cannot reset %s in Postgres: %s\n", id, call_sid,
                ledger_error(a->ledger)->message);
        return -1;
    }
    int rc = queue_replay_dead(a->redis, &a->keys, id, &err);
    if (rc != 0) {
        fprintf(stderr, "calllog-admin: %s: %s\n", id,
                rc > 0 ? "no such dead letter" : err.message);
        return -1;
    }
    printf("replayed %s (%s)\n", id, call_sid);
    return 0;
}

/* Applies replay or purge to one id or, with --all, to every dead letter. */
static int for_dead(admin *a, const char *target, int replay)
{
    int all = strcmp(target, "--all") == 0, failures = 0;
    redisReply *r = dead_range(a, all ? "-" : target, all ? "+" : target, all ? 100000 : 1);
    if (!r || r->elements == 0) {
        if (r)
            freeReplyObject(r);
        return all ? (printf("no dead letters\n"), 0) : fail("no such dead letter");
    }
    for (size_t i = 0; i < r->elements; i++) {
        const char *id = r->element[i]->element[0]->str;
        if (replay) {
            failures +=
                replay_one(a, id, field(r->element[i]->element[1], STREAM_ENTRY_CALL_SID)) != 0;
        } else {
            redisReply *d = redisCommand(a->redis, "XDEL %s %s", a->keys.dead, id);
            failures += redis_reply_failed(a->redis, d, NULL);
            if (d)
                freeReplyObject(d);
            printf("purged %s\n", id);
        }
    }
    freeReplyObject(r);
    return failures ? 1 : 0;
}

/* Prints epoch ms `ms` as RFC 3339, or "never" for 0. */
static void print_time(const char *label, long long ms)
{
    char when[40] = "never";
    if (ms > 0)
        timing_format_rfc3339(ms, when, sizeof when);
    printf("%s%s", label, when);
}

/* The reconciler's lines of `status`: checkpoint, holder, last run. */
static void print_reconcile(admin *a)
{
    reconcile_state st;
    if (reconcile_state_read(a->redis, &a->keys, &st) != 0) {
        printf("reconciler    unavailable: cannot read %s\n", a->keys.reconcile);
        return;
    }
    print_time("reconciler    checkpoint ", st.checkpoint_ms);
    if (st.holder[0])
        printf(", held by %s (lease %lld ms left)\n", st.holder, st.holder_ttl_ms);
    else
        printf(", no holder (reconciliation off, or no worker running)\n");
    print_time("              last success ", st.last_success_ms);
    printf(" (%lld examined, %lld backfilled)", st.last_examined, st.last_backfilled);
    if (strcmp(st.last_result, "error") == 0) {
        print_time("; last run failed ", st.last_run_ms);
        printf(": %s", st.last_error);
    }
    printf("\n");
}

/* The phone index's lines of `status`: last refresh, its figures, who keeps it. */
static void print_phone_index(admin *a)
{
    phone_index_state st;
    if (phone_index_state_read(a->redis, &a->keys, &st) != 0) {
        printf("phone index   unavailable: cannot read %s\n", a->keys.phone_index_meta);
        return;
    }
    if (!st.refreshed_ms) {
        printf(
            "phone index   never built (RDSTATION_PHONE_INDEX=0, or no worker has refreshed it)");
    } else {
        print_time("phone index   refreshed ", st.refreshed_ms);
        printf(": %lld contacts, %lld phones, %lld pages in %lld ms", st.contacts, st.phones,
               st.pages, st.duration_ms);
    }
    if (st.holder[0])
        printf("; kept by %s (lease %lld ms left)\n", st.holder, st.holder_ttl_ms);
    else
        printf("; no holder\n");
}

/* The RD plan line of `status`: whether call tasks fell back to type `task`. */
static void print_plan(admin *a)
{
    rd_plan plan;
    if (rd_plan_read(a->redis, &a->keys, &plan) != 0) {
        printf("rd plan       unavailable: cannot read %s\n", a->keys.rdstation_plan);
        return;
    }
    if (!plan.call_task_refused) {
        printf("rd plan       call tasks accepted (or not tried yet)\n");
        return;
    }
    print_time("rd plan       call tasks refused (free plan) since ", plan.refused_at_ms);
    printf(": tasks are created as type `task`; DEL %s after an upgrade\n", a->keys.rdstation_plan);
}

static int cmd_status(admin *a)
{
    queue_depths d;
    if (queue_depths_read(a->redis, &a->keys, &d) != 0)
        return fail("cannot read queue depths from Redis");
    printf("events stream %-24s %lld entries (%lld pending on consumers)\n", a->keys.events,
           d.events, d.pending);
    printf("retry set     %-24s %lld entries\n", a->keys.retry, d.retry);
    printf("dead stream   %-24s %lld entries\n", a->keys.dead, d.dead);
    print_reconcile(a);
    print_phone_index(a);
    print_plan(a);
    char counts[512];
    if (a->ledger && ledger_state_counts(a->ledger, counts, sizeof counts) == 0)
        printf("deliveries    %s\n", counts);
    else if (a->ledger)
        printf("deliveries    unavailable: %s\n", ledger_error(a->ledger)->message);
    return 0;
}

/* Connects to Redis and, when `need_db`, to Postgres. */
static int admin_open(admin *a, int need_db)
{
    calllog_error err;
    redis_target t;
    if (redis_settings_load(&t, &a->keys, &err) != 0)
        return fail(err.message);
    if (!(a->redis = redis_open(&t, 5000, &err)))
        return fail(err.message);
    const char *db = config_str("DATABASE_URL", NULL);
    calllog_error cerr;
    if (config_check(&cerr) != 0) /* a broken *_FILE is not "not set" */
        return fail(cerr.message);
    if (need_db && !db)
        return fail("setting DATABASE_URL is required but not set");
    if (db && !(a->ledger = ledger_open(db, &err)) && need_db)
        return fail(err.message);
    return 0;
}

/* Runs the command in argv[0..argc). */
static int dispatch(admin *a, int argc, char **argv)
{
    if (argc == 1 && strcmp(argv[0], "status") == 0)
        return cmd_status(a);
    if (argc >= 2 && strcmp(argv[0], "dead") == 0) {
        if (strcmp(argv[1], "list") == 0) {
            long limit = argc == 4 && strcmp(argv[2], "--limit") == 0 ? atol(argv[3]) : 50;
            return cmd_dead_list(a, limit > 0 ? limit : 50);
        }
        if (argc == 3 && strcmp(argv[1], "show") == 0)
            return cmd_dead_show(a, argv[2]);
        if (argc == 3 && strcmp(argv[1], "replay") == 0)
            return for_dead(a, argv[2], 1);
        if (argc == 3 && strcmp(argv[1], "purge") == 0)
            return for_dead(a, argv[2], 0);
    }
    fprintf(stderr, "calllog-admin: unknown command (try --help)\n");
    return 2;
}

/* `demo call`: needs the sandbox only, not Redis or Postgres. */
static int run_demo(int argc, char **argv)
{
    demo_call_options o = {0};
    calllog_error err;
    if (demo_parse_args(argc, argv, &o, &err) != 0) {
        fprintf(stderr, "calllog-admin: %s\n", err.message);
        return 2;
    }
    o.sandbox_url = config_str("CALLLOG_SANDBOX_URL", NULL);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 1;
    int rc = demo_call(&o, stdout);
    curl_global_cleanup();
    return rc;
}

/* `doctor …`: parses its options and runs it (doctor.h). */
static int run_doctor(int argc, char **argv)
{
    doctor_options o = {0};
    const char *url = NULL, *params = NULL, *sig = NULL;
    int signature = argc > 0 && strcmp(argv[0], "signature") == 0;
    for (int i = signature; i < argc; i++) {
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--json") == 0)
            o.json = 1;
        else if (!signature && strcmp(argv[i], "--oauth-refresh") == 0)
            o.oauth_refresh = 1;
        else if (!signature && next && strcmp(argv[i], "--write-test") == 0)
            o.write_test_deal = argv[++i];
        else if (signature && next && strcmp(argv[i], "--url") == 0)
            url = argv[++i];
        else if (signature && next && strcmp(argv[i], "--params") == 0)
            params = argv[++i];
        else if (signature && next && strcmp(argv[i], "--signature") == 0)
            sig = argv[++i];
        else
            return fprintf(stderr, "calllog-admin: doctor: unexpected '%s' (try --help)\n",
                           argv[i]),
                   2;
    }
    if (signature && (!url || !params || !sig)) {
        fprintf(stderr, "calllog-admin: doctor signature needs --url, --params and --signature\n");
        return 2;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 1;
    int rc =
        signature ? doctor_signature_run(url, params, sig, o.json, stdout) : doctor_run(&o, stdout);
    curl_global_cleanup();
    return rc;
}

int main(int argc, char **argv)
{
    int rest_argc;
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    int status = rest ? cli_start(argc, argv, "calllog-admin", usage, &rest_argc, rest) : 1;
    if (status != CLI_RUN) {
        free(rest);
        return status;
    }
    if (rest_argc >= 2 && strcmp(rest[0], "demo") == 0 && strcmp(rest[1], "call") == 0) {
        int rc = run_demo(rest_argc - 2, rest + 2);
        free(rest);
        return rc;
    }
    if (rest_argc >= 1 && strcmp(rest[0], "doctor") == 0) {
        int rc = run_doctor(rest_argc - 1, rest + 1);
        free(rest);
        return rc;
    }
    admin a = {0};
    int need_db = rest_argc >= 2 && strcmp(rest[1], "replay") == 0;
    int rc = rest_argc == 0                 ? (fprintf(stderr, "usage: %s\n", usage), 2)
             : admin_open(&a, need_db) != 0 ? 1
                                            : dispatch(&a, rest_argc, rest);
    if (a.redis)
        redisFree(a.redis);
    ledger_close(a.ledger);
    free(rest);
    return rc;
}
