/* demo — `calllog-admin demo call` against the sandbox (see demo.h). */
#include "worker/demo.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/event.h"
#include "common/http_client.h"
#include "common/timing.h"

#define POLL_MS 250

/* The value after option `name` at argv[*i], advancing *i; NULL when it is missing. */
static const char *option_value(int argc, char **argv, int *i)
{
    return *i + 1 < argc ? argv[++*i] : NULL;
}

/* Reads a whole number of seconds from `v` into `*out`. Returns 0 or -1. */
static int parse_seconds(const char *v, long max, long *out)
{
    char *end;
    long n = v ? strtol(v, &end, 10) : -1;
    if (!v || *end || n < 0 || n > max)
        return -1;
    *out = n;
    return 0;
}

int demo_parse_args(int argc, char **argv, demo_call_options *o, calllog_error *err)
{
    o->duration_s = -1;
    o->wait_s = 30;
    for (int i = 0; i < argc; i++) {
        const char *name = argv[i], *v = NULL;
        int bad = 0;
        if (strcmp(name, "--from") == 0)
            bad = !(o->from = option_value(argc, argv, &i));
        else if (strcmp(name, "--to") == 0)
            bad = !(o->to = option_value(argc, argv, &i));
        else if (strcmp(name, "--direction") == 0)
            bad = !(o->direction = option_value(argc, argv, &i)) ||
                  (strcmp(o->direction, "inbound") != 0 && strcmp(o->direction, "outbound") != 0);
        else if (strcmp(name, "--status") == 0)
            bad =
                !(o->status = option_value(argc, argv, &i)) || !event_status_is_terminal(o->status);
        else if (strcmp(name, "--duration") == 0)
            bad = parse_seconds(v = option_value(argc, argv, &i), 14400, &o->duration_s);
        else if (strcmp(name, "--wait") == 0)
            bad = parse_seconds(v = option_value(argc, argv, &i), 3600, &o->wait_s);
        else {
            error_set(err, CALLLOG_INVALID, "demo call: unknown option %s (try --help)", name);
            return -1;
        }
        if (bad) {
            error_set(err, CALLLOG_INVALID,
                      "demo call: %s needs a valid value (--direction inbound|outbound, --status "
                      "completed|no-answer|busy|failed|canceled, --duration/--wait seconds)",
                      name);
            return -1;
        }
    }
    return 0;
}

/* The JSON body of POST /_sandbox/calls. Returns a malloc'ed string or NULL. */
static char *call_body(const demo_call_options *o)
{
    json_t *b = json_object();
    if (o->from)
        json_object_set_new(b, "from", json_string(o->from));
    if (o->to)
        json_object_set_new(b, "to", json_string(o->to));
    if (o->direction)
        json_object_set_new(
            b, "direction",
            json_string(strcmp(o->direction, "outbound") == 0 ? "outbound-api" : "inbound"));
    if (o->status)
        json_object_set_new(b, "status", json_string(o->status));
    if (o->duration_s >= 0)
        json_object_set_new(b, "duration", json_integer(o->duration_s));
    char *text = b ? json_dumps(b, JSON_COMPACT) : NULL;
    json_decref(b);
    return text;
}

/* One request to the sandbox; returns its JSON answer (caller decrefs) when the status is
 * `want`, else NULL with the reason printed to stderr. */
static json_t *sandbox_request(http_client *c, const char *method, const char *url,
                               const char *body, long want)
{
    static const char *const headers[] = {"Content-Type: application/json",
                                          "Accept: application/json", NULL};
    http_response r;
    calllog_error err;
    if (http_request(c, method, url, headers, NULL, body, body ? strlen(body) : 0, &r, &err) != 0) {
        fprintf(stderr,
                "calllog-admin: the sandbox at %s does not answer (%s). Is the demo "
                "running? Start it with deploy/run-local.sh demo.\n",
                url, err.message);
        return NULL;
    }
    json_t *doc = r.status == want ? json_loadb(r.body, r.body_len, 0, NULL) : NULL;
    if (!doc)
        fprintf(stderr, "calllog-admin: %s %s answered %ld: %.300s\n", method, url, r.status,
                r.body ? r.body : "");
    http_response_free(&r);
    return doc;
}

/* The string member `key` of `o`, or "". */
static const char *str(const json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v ? v : "";
}

/* Prints how each status callback was answered. */
static void print_callbacks(const json_t *answer, FILE *out)
{
    size_t i;
    json_t *cb;
    fprintf(out, "call %s placed; Twilio's status callbacks to the ingest:", str(answer, "sid"));
    json_array_foreach(json_object_get(answer, "callbacks"), i, cb)
    {
        fprintf(out, " %s→%lld", str(cb, "status"),
                (long long)json_integer_value(json_object_get(cb, "http_status")));
    }
    fprintf(out, "\n");
}

/* Polls the sandbox's CRM for the call's note until `wait_s`; prints it. Returns 0 when
 * it arrived. */
static int await_note(http_client *c, const demo_call_options *o, const char *sid, FILE *out)
{
    char url[1024];
    snprintf(url, sizeof url, "%s/_sandbox/notes?call_sid=%s", o->sandbox_url, sid);
    long long t0 = timing_mono_ms(), deadline = t0 + o->wait_s * 1000;
    do {
        json_t *doc = sandbox_request(c, "GET", url, NULL, 200);
        json_t *note = doc ? json_array_get(json_object_get(doc, "notes"), 0) : NULL;
        if (note) {
            fprintf(out, "note on deal \"%s\" (%s) of %s, %.1f s after the call ended:\n\n%s\n\n",
                    str(note, "deal_name"), str(note, "deal_id"), str(note, "contact_name"),
                    (double)(timing_mono_ms() - t0) / 1000.0, str(note, "text"));
            json_decref(doc);
            return 0;
        }
        json_decref(doc);
        if (!doc)
            return 1;
        timing_sleep_ms(POLL_MS);
    } while (timing_mono_ms() < deadline);
    fprintf(out,
            "no note for %s within %ld s: see `calllog-admin status` and the workers' "
            "logs (a caller without a contact is skipped, see CALLLOG_UNKNOWN_CALLER).\n",
            sid, o->wait_s);
    return 1;
}

/* 1 for a call the workers open a follow-up task for: inbound (the default) and missed. */
static int missed_inbound(const demo_call_options *o)
{
    int inbound = !o->direction || strcmp(o->direction, "inbound") == 0;
    return inbound && o->status &&
           (strcmp(o->status, "no-answer") == 0 || strcmp(o->status, "busy") == 0 ||
            strcmp(o->status, "canceled") == 0);
}

/* The call's follow-up task in `doc`, or NULL. */
static json_t *followup_of(json_t *doc)
{
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(doc, "tasks"), i, t)
    {
        if (json_is_true(json_object_get(t, "followup")))
            return t;
    }
    return NULL;
}

/* Polls the sandbox's CRM for the missed call's follow-up task (created just after its
 * note) until `wait_s`, and prints it, or why there is none. */
static void await_followup(http_client *c, const demo_call_options *o, const char *sid, FILE *out)
{
    char url[1024];
    snprintf(url, sizeof url, "%s/_sandbox/notes?call_sid=%s", o->sandbox_url, sid);
    long long deadline = timing_mono_ms() + o->wait_s * 1000;
    do {
        json_t *doc = sandbox_request(c, "GET", url, NULL, 200), *t = followup_of(doc);
        if (t) {
            fprintf(out,
                    "follow-up task on the same deal, for its owner, due %s: \"%s\". The next "
                    "answered call with this customer marks it done.\n",
                    str(t, "due_local"), str(t, "subject"));
            json_decref(doc);
            return;
        }
        json_decref(doc);
        if (!doc)
            return;
        timing_sleep_ms(POLL_MS);
    } while (timing_mono_ms() < deadline);
    fprintf(out, "no follow-up task for %s (CALLLOG_MISSED_CALL_TASK=0?): see the workers' logs.\n",
            sid);
}

int demo_call(const demo_call_options *o, FILE *out)
{
    if (!o->sandbox_url || !o->sandbox_url[0]) {
        fprintf(stderr, "calllog-admin: demo call needs CALLLOG_SANDBOX_URL, the demo's sandbox "
                        "(it never calls a real account). Start the demo with "
                        "deploy/run-local.sh demo.\n");
        return 1;
    }
    char url[1024], *body = call_body(o);
    http_client *c = http_client_new(10000, 3000);
    int rc = 1;
    snprintf(url, sizeof url, "%s/_sandbox/calls", o->sandbox_url);
    json_t *answer = body && c ? sandbox_request(c, "POST", url, body, 201) : NULL;
    const char *sid = answer ? str(answer, "sid") : "";
    if (sid[0]) {
        print_callbacks(answer, out);
        rc = await_note(c, o, sid, out);
        if (rc == 0 && missed_inbound(o))
            await_followup(c, o, sid, out);
    }
    json_decref(answer);
    http_client_free(c);
    free(body);
    return rc;
}
