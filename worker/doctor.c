/* doctor — checks a deployment against the services its settings name (see doctor.h).
 *
 * Every check is one function that adds one result line to the report; a check whose
 * prerequisite failed (no Redis, no Postgres) is left out rather than reported twice.
 * Read-only: Redis is asked with INFO (falling back to CONFIG GET, which managed Redis
 * often disables), the limiter is peeked, never charged for the check itself, and the
 * v2 OAuth check uses the access token the workers stored in Redis — a refresh would
 * rotate the refresh token, so it happens only with --oauth-refresh (through rd_oauth,
 * which stores the new tokens for the workers). The RD and Twilio requests doctor makes
 * do go through the shared limiter, like a worker's. API behaviour that the reference marks
 * unverified (v1 /token/check's answer, Twilio's answer to a key of another account) is
 * accepted either way, and the line says what was seen. */
#include "doctor.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "config.h"
#include "event.h"
#include "http_client.h"
#include "ledger.h"
#include "ratelimit.h"
#include "rd_oauth.h"
#include "rdstation.h"
#include "redis_client.h"
#include "settings.h"
#include "signature.h"
#include "timing.h"

#define LOG_CALL_PATH "/twilio/log-call"
#define RECOMMENDED_FRAGMENT "#rc=3&rp=all&ct=3000&rt=10000"
#define HTTP_TIMEOUT_MS 10000L
#define MAX_NUMBER_PAGES 50
#define LISTED_MAX 10

/* ---- the report ------------------------------------------------------------------- */

struct doctor_report {
    doctor_result *items;
    size_t n, cap;
};

doctor_report *doctor_report_new(void)
{
    return calloc(1, sizeof(doctor_report));
}

void doctor_report_free(doctor_report *r)
{
    if (r)
        free(r->items);
    free(r);
}

int doctor_report_add(doctor_report *r, const char *check, doctor_level level, const char *fix,
                      const char *fmt, ...)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 16;
        doctor_result *items = realloc(r->items, cap * sizeof *items);
        if (!items)
            return -1;
        r->items = items;
        r->cap = cap;
    }
    doctor_result *d = &r->items[r->n++];
    snprintf(d->check, sizeof d->check, "%s", check);
    d->level = level;
    snprintf(d->fix, sizeof d->fix, "%s", fix && level != DOCTOR_OK ? fix : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->reason, sizeof d->reason, fmt, ap);
    va_end(ap);
    return 0;
}

size_t doctor_report_count(const doctor_report *r)
{
    return r->n;
}

const doctor_result *doctor_report_item(const doctor_report *r, size_t i)
{
    return i < r->n ? &r->items[i] : NULL;
}

int doctor_report_failed(const doctor_report *r)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->items[i].level == DOCTOR_FAIL)
            return 1;
    return 0;
}

static const char *const LEVEL_NAMES[] = {"ok", "warn", "FAIL"};

void doctor_report_print(const doctor_report *r, int json, FILE *out)
{
    if (!json) {
        for (size_t i = 0; i < r->n; i++) {
            const doctor_result *d = &r->items[i];
            fprintf(out, "%-5s %-20s %s%s%s\n", LEVEL_NAMES[d->level], d->check, d->reason,
                    d->fix[0] ? " — fix: " : "", d->fix);
        }
        return;
    }
    json_t *checks = json_array();
    for (size_t i = 0; i < r->n; i++) {
        const doctor_result *d = &r->items[i];
        json_array_append_new(checks, json_pack("{s:s, s:s, s:s, s:s}", "check", d->check, "status",
                                                d->level == DOCTOR_FAIL   ? "fail"
                                                : d->level == DOCTOR_WARN ? "warn"
                                                                          : "ok",
                                                "reason", d->reason, "fix", d->fix));
    }
    json_t *doc = json_pack("{s:b, s:o}", "ok", !doctor_report_failed(r), "checks", checks);
    char *text = doc ? json_dumps(doc, JSON_INDENT(2)) : NULL;
    fprintf(out, "%s\n", text ? text : "{\"ok\": false, \"checks\": []}");
    free(text);
    json_decref(doc);
}

/* ---- shared state of one run ------------------------------------------------------ */

typedef struct doctor {
    const doctor_options *opt;
    worker_settings s;
    doctor_report *report;
    redisContext *redis; /* NULL when unreachable */
    ratelimit_policy limit;
    http_client *http;
} doctor;

/* Appends `word` to the list in `out` ("a, b"), up to LISTED_MAX words then "…". */
static void list_add(char *out, size_t outlen, size_t *count, const char *word)
{
    size_t used = strlen(out);
    if (*count < LISTED_MAX && used < outlen)
        snprintf(out + used, outlen - used, "%s%s", *count ? ", " : "", word);
    else if (*count == LISTED_MAX && used < outlen)
        snprintf(out + used, outlen - used, ", …");
    (*count)++;
}

/* ---- Redis ------------------------------------------------------------------------ */

/* Copies the value of `field` from `INFO section` into `out`. Returns 1 found, 0 absent,
 * -1 when INFO was refused. */
static int info_field(redisContext *c, const char *section, const char *field, char *out,
                      size_t outlen)
{
    redisReply *r = redisCommand(c, "INFO %s", section);
    if (redis_reply_failed(c, r, NULL) || r->type != REDIS_REPLY_STRING) {
        if (r)
            freeReplyObject(r);
        return -1;
    }
    size_t flen = strlen(field);
    int found = 0;
    for (const char *line = r->str; line && *line; line = strchr(line, '\n'), line += !!line) {
        if (strncmp(line, field, flen) == 0 && line[flen] == ':') {
            const char *v = line + flen + 1;
            snprintf(out, outlen, "%.*s", (int)strcspn(v, "\r\n"), v);
            found = 1;
            break;
        }
    }
    freeReplyObject(r);
    return found;
}

/* Copies `CONFIG GET name`'s value into `out`. Returns 1, 0 absent, -1 refused. */
static int config_field(redisContext *c, const char *name, char *out, size_t outlen,
                        calllog_error *why)
{
    redisReply *r = redisCommand(c, "CONFIG GET %s", name);
    if (redis_reply_failed(c, r, why) || r->type != REDIS_REPLY_ARRAY) {
        if (r)
            freeReplyObject(r);
        return -1;
    }
    int found = r->elements == 2 && r->element[1]->str != NULL;
    if (found)
        snprintf(out, outlen, "%s", r->element[1]->str);
    freeReplyObject(r);
    return found;
}

/* A Redis setting through INFO (managed Redis usually allows it), else CONFIG GET.
 * Returns 1 (`from_info` says which answered), or 0 with `why` filled. */
static int redis_setting(redisContext *c, const char *section, const char *info_name,
                         const char *config_name, char *out, size_t outlen, int *from_info,
                         calllog_error *why)
{
    error_set(why, CALLLOG_NOT_FOUND, "not reported");
    *from_info = info_field(c, section, info_name, out, outlen) == 1;
    return *from_info || config_field(c, config_name, out, outlen, why) == 1;
}

static const char AOF_FIX[] = "CONFIG SET appendonly yes, and `appendonly yes` in redis.conf "
                              "(on a managed Redis: enable AOF persistence in its settings)";

static void check_redis_aof(doctor *d)
{
    char v[64];
    calllog_error why;
    int from_info;
    if (!redis_setting(d->redis, "persistence", "aof_enabled", "appendonly", v, sizeof v,
                       &from_info, &why)) {
        doctor_report_add(d->report, "redis.aof", DOCTOR_WARN,
                          "check the provider's persistence settings: AOF must be on",
                          "cannot check: neither INFO persistence nor CONFIG GET appendonly "
                          "answered (%s)",
                          why.message);
        return;
    }
    int on = strcmp(v, "1") == 0 || strcasecmp(v, "yes") == 0;
    if (on)
        doctor_report_add(d->report, "redis.aof", DOCTOR_OK, NULL, "appendonly yes (%s)",
                          from_info ? "INFO persistence" : "CONFIG GET");
    else
        doctor_report_add(d->report, "redis.aof", DOCTOR_FAIL, AOF_FIX,
                          "appendonly is off: a Redis restart loses calls the ingest already "
                          "acknowledged to Twilio");
}

static void check_redis_eviction(doctor *d)
{
    char v[64];
    calllog_error why;
    int from_info;
    static const char fix[] = "CONFIG SET maxmemory-policy noeviction, and `maxmemory-policy "
                              "noeviction` in redis.conf (managed Redis: its parameter group)";
    if (!redis_setting(d->redis, "memory", "maxmemory_policy", "maxmemory-policy", v, sizeof v,
                       &from_info, &why)) {
        doctor_report_add(d->report, "redis.eviction", DOCTOR_WARN, fix,
                          "cannot check: neither INFO memory nor CONFIG GET maxmemory-policy "
                          "answered (%s)",
                          why.message);
        return;
    }
    if (strcmp(v, "noeviction") == 0)
        doctor_report_add(d->report, "redis.eviction", DOCTOR_OK, NULL, "maxmemory-policy %s", v);
    else if (strncmp(v, "volatile-", 9) == 0)
        doctor_report_add(d->report, "redis.eviction", DOCTOR_WARN, fix,
                          "maxmemory-policy is %s: only keys with a TTL are evicted (the "
                          "look-up cache, the limiter), but noeviction is what the queues need",
                          v);
    else
        doctor_report_add(d->report, "redis.eviction", DOCTOR_FAIL, fix,
                          "maxmemory-policy is %s: when memory fills, Redis silently deletes "
                          "keys — the events stream, the retry set, the dead letters",
                          v);
}

static void check_redis_group(doctor *d)
{
    const char *events = d->s.keys.events;
    redisReply *r = redisCommand(d->redis, "XINFO GROUPS %s", events);
    calllog_error why = {0};
    if (redis_reply_failed(d->redis, r, &why) || r->type != REDIS_REPLY_ARRAY) {
        if (r)
            freeReplyObject(r);
        doctor_report_add(d->report, "redis.group", DOCTOR_WARN,
                          "start a worker once: it creates the stream and the group",
                          "stream %s does not exist yet (%s)", events, why.message);
        return;
    }
    long long consumers = -1, pending = 0;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *g = r->element[i];
        int ours = 0;
        for (size_t j = 0; g->type == REDIS_REPLY_ARRAY && j + 1 < g->elements; j += 2) {
            const char *k = g->element[j]->str, *sv = g->element[j + 1]->str;
            long long iv = g->element[j + 1]->integer;
            if (k && strcmp(k, "name") == 0)
                ours = sv && strcmp(sv, KEYS_GROUP) == 0;
            else if (k && ours && strcmp(k, "consumers") == 0)
                consumers = iv;
            else if (k && ours && strcmp(k, "pending") == 0)
                pending = iv;
        }
        if (ours && consumers < 0)
            consumers = 0;
    }
    freeReplyObject(r);
    if (consumers >= 0) {
        doctor_report_add(d->report, "redis.group", DOCTOR_OK, NULL,
                          "group %s on %s (%lld consumer(s), %lld pending)", KEYS_GROUP, events,
                          consumers, pending);
        return;
    }
    redisReply *n = redisCommand(d->redis, "XLEN %s", events);
    long long len = n && n->type == REDIS_REPLY_INTEGER ? n->integer : 0;
    if (n)
        freeReplyObject(n);
    doctor_report_add(d->report, "redis.group", len > 0 ? DOCTOR_FAIL : DOCTOR_WARN,
                      "start a worker (it creates the group from the stream's start), or "
                      "XGROUP CREATE <events> " KEYS_GROUP " 0 MKSTREAM",
                      "group %s missing on %s (%lld event(s) waiting with nobody to read them)",
                      KEYS_GROUP, events, len);
}

/* With Sentinel: where the sentinels said the master is, and how many replicas it has
 * (a failover needs one; REDIS_MIN_REPLICAS_ACK on the ingest needs as many). */
static void report_sentinel_master(doctor *d)
{
    calllog_error err;
    int replicas = redis_sentinel_master_replicas(d->redis, &err);
    doctor_report_add(d->report, "redis.reachable", DOCTOR_OK, NULL,
                      "master '%s' at %s:%d (from the sentinels) db %d",
                      d->s.redis.sentinels.master, d->redis->tcp.host ? d->redis->tcp.host : "?",
                      d->redis->tcp.port, d->s.redis.db);
    doctor_report_add(d->report, "redis.replicas", replicas > 0 ? DOCTOR_OK : DOCTOR_WARN,
                      replicas > 0 ? NULL
                                   : "attach a replica (replicaof): Sentinel has nothing to "
                                     "promote, and the ingest's REDIS_MIN_REPLICAS_ACK spools",
                      "%d replica(s) attached to the master", replicas < 0 ? 0 : replicas);
}

/* Connects and runs the Redis checks; d->redis stays NULL when Redis is unreachable. */
static void check_redis(doctor *d)
{
    calllog_error err;
    d->redis = redis_open(&d->s.redis, (int)d->s.redis_timeout_ms, &err);
    if (!d->redis) {
        doctor_report_add(d->report, "redis.reachable", DOCTOR_FAIL,
                          "check REDIS_URL (host, port, password) and that Redis runs", "%s",
                          err.message);
        return;
    }
    if (d->s.redis.sentinels.n > 0)
        report_sentinel_master(d);
    else
        doctor_report_add(d->report, "redis.reachable", DOCTOR_OK, NULL, "%s:%d db %d",
                          d->s.redis.host, d->s.redis.port, d->s.redis.db);
    check_redis_aof(d);
    check_redis_eviction(d);
    check_redis_group(d);
}

/* ---- Postgres --------------------------------------------------------------------- */

static void check_postgres(doctor *d)
{
    char roles[128], readers[128];
    calllog_error err;
    ledger *l = ledger_open(d->s.database_url, &err);
    if (!l) {
        doctor_report_add(d->report, "postgres.reachable", DOCTOR_FAIL,
                          "check DATABASE_URL (Supabase: the pooler or direct connection "
                          "string with sslmode=require)",
                          "%s", err.message);
        return;
    }
    doctor_report_add(d->report, "postgres.reachable", DOCTOR_OK, NULL, "connected");
    if (ledger_check_schema(l) == 0)
        doctor_report_add(d->report, "postgres.schema", DOCTOR_OK, NULL,
                          "calllog.deliveries and schema version present");
    else
        doctor_report_add(d->report, "postgres.schema", DOCTOR_FAIL,
                          "apply deploy/supabase/migrations/*.sql in order (psql -v "
                          "ON_ERROR_STOP=1 -f FILE, or supabase db push)",
                          "migration missing: %s", ledger_error(l)->message);
    int n = ledger_check_roles(l, roles, sizeof roles, readers, sizeof readers);
    if (n < 0)
        doctor_report_add(d->report, "postgres.roles", DOCTOR_WARN, NULL, "cannot check: %s",
                          ledger_error(l)->message);
    else if (n > 0)
        doctor_report_add(d->report, "postgres.roles", DOCTOR_FAIL,
                          "REVOKE ALL ON ALL TABLES IN SCHEMA calllog FROM anon, authenticated; "
                          "keep row level security on with no policy (the migration does both)",
                          "role(s) %s can read calllog.deliveries: Supabase's API hands call "
                          "data to anyone with the anon key",
                          readers);
    else
        doctor_report_add(d->report, "postgres.roles", DOCTOR_OK, NULL, "%s%s",
                          roles[0] ? roles : "no anon/authenticated roles (not Supabase)",
                          roles[0] ? " cannot read calllog.deliveries" : "");
    ledger_close(l);
}

/* ---- RD Station ------------------------------------------------------------------- */

/* Waits for the shared limiter, like a worker's request (rd_acquire_fn). */
static int doctor_acquire(void *arg)
{
    doctor *d = arg;
    return d->redis ? ratelimit_acquire(d->redis, &d->limit) : 0;
}

/* GET `path` on the RD API (v1 with ?token=, v2 with `bearer`). Returns 0 with `res`
 * filled (any status), or -1 with `err` filled. */
static int rd_get(doctor *d, const char *path, const char *bearer, http_response *res,
                  calllog_error *err)
{
    char url[2048], auth[RD_OAUTH_TOKEN_MAX + 32];
    const char *headers[] = {"Accept: application/json", NULL, NULL};
    char *tok = d->s.rd.api == RD_API_V1 ? http_escape(d->s.rd.token) : NULL;
    if (d->s.rd.api == RD_API_V1 && !tok)
        return -1;
    if (tok)
        snprintf(url, sizeof url, "%s%s?token=%s", d->s.rd.base_url, path, tok);
    else
        snprintf(url, sizeof url, "%s%s", d->s.rd.base_url, path);
    free(tok);
    if (bearer) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", bearer);
        headers[1] = auth;
    }
    doctor_acquire(d);
    int rc = http_request(d->http, "GET", url, headers, NULL, NULL, 0, res, err);
    if (rc != 0)
        http_error_relabel(err, path);
    return rc;
}

/* A JSON object's id as text: `_id`, else `id` (string or integer); "" when neither. */
static void object_id(const json_t *o, char *out, size_t outlen)
{
    const json_t *v = json_object_get(o, "_id");
    if (!v || json_is_null(v))
        v = json_object_get(o, "id");
    if (json_is_string(v))
        snprintf(out, outlen, "%s", json_string_value(v));
    else if (json_is_integer(v))
        snprintf(out, outlen, "%lld", (long long)json_integer_value(v));
    else
        out[0] = '\0';
}

/* The user array of a /users answer: v1 {"users":[…]}, v2 {"data":[…]}, or a bare array. */
static const json_t *users_array(const json_t *doc)
{
    if (json_is_array(doc))
        return doc;
    const json_t *a = json_object_get(doc, "users");
    return json_is_array(a)                              ? a
           : json_is_array(json_object_get(doc, "data")) ? json_object_get(doc, "data")
                                                         : NULL;
}

/* 1 when `who` (an id or an e-mail) is among `users`. */
static int user_known(const json_t *users, const char *who)
{
    size_t i;
    const json_t *u;
    json_array_foreach(users, i, u)
    {
        char id[128];
        object_id(u, id, sizeof id);
        const char *email = json_string_value(json_object_get(u, "email"));
        if (strcmp(id, who) == 0 || (email && strcasecmp(email, who) == 0))
            return 1;
    }
    return 0;
}

/* The rd.users line from a parsed GET /users answer. */
static void check_rd_users(doctor *d, const json_t *doc)
{
    const json_t *users = users_array(doc);
    if (!users) {
        doctor_report_add(d->report, "rd.users", DOCTOR_WARN, NULL,
                          "cannot check: GET /users answered 2xx without a list of users");
        return;
    }
    char missing[512] = "", known[512] = "";
    size_t nmissing = 0, nknown = 0, i;
    const json_t *u;
    if (d->s.rd_user_id && !user_known(users, d->s.rd_user_id)) {
        char w[128];
        snprintf(w, sizeof w, "RDSTATION_USER_ID=%s", d->s.rd_user_id);
        list_add(missing, sizeof missing, &nmissing, w);
    }
    for (size_t k = 0; k < d->s.user_map_len; k++) {
        if (!user_known(users, d->s.user_map[k].user_id)) {
            char w[128];
            snprintf(w, sizeof w, "RDSTATION_USER_MAP %s=%s", d->s.user_map[k].number,
                     d->s.user_map[k].user_id);
            list_add(missing, sizeof missing, &nmissing, w);
        }
    }
    json_array_foreach(users, i, u)
    {
        char id[128], w[256];
        const char *email = json_string_value(json_object_get(u, "email"));
        object_id(u, id, sizeof id);
        snprintf(w, sizeof w, "%s (%s)", id, email ? email : "no e-mail");
        list_add(known, sizeof known, &nknown, w);
    }
    if (nmissing == 0) {
        doctor_report_add(d->report, "rd.users", DOCTOR_OK, NULL,
                          "%zu configured user id(s) found among the account's %zu user(s)",
                          (d->s.rd_user_id ? 1 : 0) + d->s.user_map_len, json_array_size(users));
        return;
    }
    char fix[600];
    snprintf(fix, sizeof fix, "use ids the account has: %s", known[0] ? known : "(none listed)");
    doctor_report_add(d->report, "rd.users", DOCTOR_FAIL, fix,
                      "not users of this RD Station account: %s", missing);
}

/* GET /users with the credentials; adds rd.credentials (when `judge`) and rd.users. */
static void rd_users_and_credentials(doctor *d, const char *bearer, int judge, const char *seen)
{
    http_response res = {0};
    calllog_error err;
    const char *what = d->s.rd.api == RD_API_V1 ? "RDSTATION_TOKEN" : "the OAuth access token";
    if (rd_get(d, "/users", bearer, &res, &err) != 0) {
        doctor_report_add(d->report, judge ? "rd.credentials" : "rd.users", DOCTOR_FAIL,
                          "check RDSTATION_API_BASE_URL and the network", "%s", err.message);
        return;
    }
    json_t *doc = res.status / 100 == 2 ? json_loads(res.body, 0, NULL) : NULL;
    if (res.status == 401 || res.status == 403) {
        doctor_report_add(d->report, "rd.credentials", DOCTOR_FAIL,
                          d->s.rd.api == RD_API_V1
                              ? "copy the instance token again from RD Station CRM (docs/"
                                "rdstation-setup.md) into RDSTATION_TOKEN"
                              : "authorize the app again and put the new refresh token in "
                                "RDSTATION_REFRESH_TOKEN (docs/rdstation-setup.md)",
                          "RD Station refused %s: GET /users answered %ld%s%s", what, res.status,
                          seen ? "; " : "", seen ? seen : "");
    } else if (res.status / 100 != 2) {
        doctor_report_add(d->report, "rd.users", DOCTOR_FAIL, "check RDSTATION_API_BASE_URL",
                          "GET /users answered %ld", res.status);
    } else {
        if (judge)
            doctor_report_add(d->report, "rd.credentials", DOCTOR_OK, NULL,
                              "%s accepted by GET /users%s%s", what, seen ? "; " : "",
                              seen ? seen : "");
        check_rd_users(d, doc);
    }
    json_decref(doc);
    http_response_free(&res);
}

/* v1: GET /token/check, then GET /users. A 404 on /token/check (its answer is not
 * verified on real accounts) leaves the verdict to GET /users. */
static void check_rd_v1(doctor *d)
{
    http_response res = {0};
    calllog_error err;
    char seen[160];
    if (rd_get(d, "/token/check", NULL, &res, &err) != 0) {
        doctor_report_add(d->report, "rd.credentials", DOCTOR_FAIL,
                          "check RDSTATION_API_BASE_URL and the network", "%s", err.message);
        return;
    }
    long status = res.status;
    http_response_free(&res);
    if (status == 401 || status == 403) {
        doctor_report_add(d->report, "rd.credentials", DOCTOR_FAIL,
                          "copy the instance token again from RD Station CRM (docs/"
                          "rdstation-setup.md) into RDSTATION_TOKEN",
                          "RD Station refused RDSTATION_TOKEN: GET /token/check answered %ld",
                          status);
        return;
    }
    if (status / 100 == 2) {
        doctor_report_add(d->report, "rd.credentials", DOCTOR_OK, NULL,
                          "RDSTATION_TOKEN accepted: GET /token/check answered %ld", status);
        rd_users_and_credentials(d, NULL, 0, NULL);
        return;
    }
    snprintf(seen, sizeof seen, "GET /token/check answered %ld, so GET /users decided", status);
    rd_users_and_credentials(d, NULL, 1, seen);
}

/* v2: the access token the workers stored, else (only with --oauth-refresh) a refresh
 * through rd_oauth, which stores the rotated tokens for the workers. */
static void check_rd_v2(doctor *d)
{
    char access[RD_OAUTH_TOKEN_MAX] = "";
    long long expires = 0;
    redisReply *r = d->redis ? redisCommand(d->redis, "HMGET %s access_token access_expires_at_ms",
                                            d->s.keys.oauth)
                             : NULL;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[0]->str &&
        r->element[1]->str) {
        snprintf(access, sizeof access, "%s", r->element[0]->str);
        expires = atoll(r->element[1]->str);
    }
    if (r)
        freeReplyObject(r);
    if (access[0] && expires > timing_epoch_ms() + RD_OAUTH_MIN_TTL_MS) {
        rd_users_and_credentials(d, access, 1, "stored access token from Redis");
        return;
    }
    if (!d->opt->oauth_refresh || !d->redis) {
        doctor_report_add(
            d->report, "rd.credentials", DOCTOR_WARN,
            "start a worker (it refreshes and stores the token) and run doctor again, or run "
            "`calllog-admin doctor --oauth-refresh` (the rotated token is stored for the workers)",
            "cannot check v2 credentials: no valid access token in %s, and a refresh would "
            "spend (rotate) the refresh token",
            d->s.keys.oauth);
        return;
    }
    rd_oauth_settings os = {d->s.rd.oauth_url,     d->s.rd.client_id, d->s.rd.client_secret,
                            d->s.rd.refresh_token, d->s.keys.oauth,   HTTP_TIMEOUT_MS};
    rd_oauth *o = rd_oauth_new(&os, d->http, d->redis, NULL, NULL);
    calllog_error err;
    if (!o || rd_oauth_token(o, access, sizeof access, &err) != 0) {
        doctor_report_add(d->report, "rd.credentials", DOCTOR_FAIL,
                          "authorize the app again, put the new refresh token in "
                          "RDSTATION_REFRESH_TOKEN and DEL the oauth hash (docs/"
                          "rdstation-setup.md)",
                          "OAuth refresh failed: %s", o ? err.message : "out of memory");
        rd_oauth_free(o);
        return;
    }
    rd_oauth_free(o);
    rd_users_and_credentials(d, access, 1, "access token just refreshed (and stored)");
}

/* The limiter's budget, read without taking from it. */
static void check_rd_ratelimit(doctor *d)
{
    long available = 0, wait_ms = 0;
    if (!d->redis || ratelimit_peek(d->redis, &d->limit, &available, &wait_ms) != 0) {
        doctor_report_add(d->report, "rd.ratelimit", DOCTOR_WARN, NULL,
                          "cannot read the limiter %s", d->s.keys.ratelimit);
        return;
    }
    doctor_report_add(d->report, "rd.ratelimit", DOCTOR_OK, NULL,
                      "%ld of %ld requests available now%s%.0ld%s (limit %ld/min for all "
                      "workers, key %s)",
                      available, d->s.rate_burst, wait_ms ? ", next in " : "", wait_ms,
                      wait_ms ? " ms" : "", d->s.rate_per_minute, d->s.keys.ratelimit);
}

/* --write-test DEAL: one marked note through the normal client. */
static void check_rd_write(doctor *d)
{
    rd_settings rs = d->s.rd;
    rs.acquire = doctor_acquire;
    rs.acquire_arg = d;
    rd_client *c = d->redis ? rd_client_new(&rs, d->redis, &d->s.keys) : NULL;
    char note_id[128] = "", when[40], text[512];
    calllog_error err = {0};
    timing_format_rfc3339(timing_epoch_ms(), when, sizeof when);
    snprintf(text, sizeof text,
             "[calllog doctor] Nota de teste escrita por calllog-admin doctor --write-test em %s; "
             "pode ser ignorada. (Test note, safe to ignore.)",
             when);
    calllog_code st = c ? rd_post_note(c, d->opt->write_test_deal, d->s.rd_user_id, text, note_id,
                                       sizeof note_id, &err)
                        : error_set(&err, CALLLOG_NOMEM, "cannot create the RD client");
    if (st == CALLLOG_OK)
        doctor_report_add(d->report, "rd.write_test", DOCTOR_OK, NULL,
                          "test note %s posted on deal %s", note_id, d->opt->write_test_deal);
    else
        doctor_report_add(d->report, "rd.write_test", DOCTOR_FAIL,
                          "check the deal id and that RDSTATION_USER_ID's user may see it",
                          "posting the test note on deal %s failed: %s", d->opt->write_test_deal,
                          c ? err.message : "no client (Redis unreachable?)");
    rd_client_free(c);
}

static void check_rd(doctor *d)
{
    check_rd_ratelimit(d);
    if (d->s.rd.api == RD_API_V1)
        check_rd_v1(d);
    else
        check_rd_v2(d);
    if (d->opt->write_test_deal)
        check_rd_write(d);
}

/* ---- Twilio ----------------------------------------------------------------------- */

/* GET `path` on Twilio's API with Basic `user:pass`. Returns the parsed 2xx answer
 * (caller frees), or NULL with `*status` (0: transport) and `why` filled. */
static json_t *twilio_get(doctor *d, const char *path, const char *user, const char *pass,
                          long *status, char *why, size_t whylen)
{
    char url[2048], auth[512];
    http_response res = {0};
    calllog_error err;
    snprintf(url, sizeof url, "%s%s", d->s.twilio.base_url, path);
    snprintf(auth, sizeof auth, "%s:%s", user, pass);
    const char *headers[] = {"Accept: application/json", NULL};
    int rc = http_request(d->http, "GET", url, headers, auth, NULL, 0, &res, &err);
    memset(auth, 0, sizeof auth);
    *status = rc == 0 ? res.status : 0;
    if (rc != 0) {
        snprintf(why, whylen, "%s", err.message);
        return NULL;
    }
    json_t *doc = res.status / 100 == 2 ? json_loads(res.body, 0, NULL) : NULL;
    if (!doc) {
        json_t *e = json_loads(res.body, 0, NULL);
        const char *m = json_string_value(json_object_get(e, "message"));
        snprintf(why, whylen, "answered %ld%s%s", res.status, m ? ": " : "", m ? m : "");
        json_decref(e);
    }
    http_response_free(&res);
    return doc;
}

/* Checks one credential pair against the Account resource. Returns 1 when accepted. */
static int check_twilio_account(doctor *d, const char *check, const char *user, const char *pass,
                                const char *what, const char *fix)
{
    char path[256], why[512];
    long status;
    snprintf(path, sizeof path, "/2010-04-01/Accounts/%s.json", d->s.twilio.account_sid);
    json_t *doc = twilio_get(d, path, user, pass, &status, why, sizeof why);
    if (!doc) {
        doctor_report_add(d->report, check, DOCTOR_FAIL, fix, "%s: GET Accounts/%s.json %s%s", what,
                          d->s.twilio.account_sid, why,
                          status == 404 ? " (Twilio answers 404 or 401 when the credentials "
                                          "belong to another account)"
                                        : "");
        return 0;
    }
    const char *sid = json_string_value(json_object_get(doc, "sid"));
    const char *st = json_string_value(json_object_get(doc, "status"));
    const char *name = json_string_value(json_object_get(doc, "friendly_name"));
    int ok = sid && strcmp(sid, d->s.twilio.account_sid) == 0 && (!st || strcmp(st, "active") == 0);
    doctor_report_add(d->report, check, ok ? DOCTOR_OK : DOCTOR_FAIL, fix,
                      "%s: account %s (%s), status %s", what, sid ? sid : "?", name ? name : "",
                      st ? st : "not reported");
    json_decref(doc);
    return ok;
}

/* One number's status callback against the expected URL; adds it to the lists. */
static void classify_number(const json_t *n, const char *expected, char *bad, size_t badlen,
                            size_t *nbad, char *nofrag, size_t nofraglen, size_t *nnofrag)
{
    const char *number = json_string_value(json_object_get(n, "phone_number"));
    const char *cb = json_string_value(json_object_get(n, "status_callback"));
    const char *method = json_string_value(json_object_get(n, "status_callback_method"));
    char w[700];
    number = number ? number : "?";
    size_t len = cb ? strcspn(cb, "#") : 0;
    if (!cb || len != strlen(expected) || strncmp(cb, expected, len) != 0) {
        snprintf(w, sizeof w, "%s → %.*s", number, cb && *cb ? (int)len : 6,
                 cb && *cb ? cb : "(none)");
        list_add(bad, badlen, nbad, w);
    } else if (method && strcasecmp(method, "POST") != 0) {
        snprintf(w, sizeof w, "%s → %.300s with %.16s (the ingest takes POST only)", number,
                 expected, method);
        list_add(bad, badlen, nbad, w);
    } else if (cb[len] != '#') {
        list_add(nofrag, nofraglen, nnofrag, number);
    }
}

/* Pages the account's incoming numbers and compares their status callbacks. */
static void check_twilio_numbers(doctor *d)
{
    const char *base = config_str("PUBLIC_BASE_URL", NULL);
    char expected[1200], path[2048], why[512], bad[1024] = "", nofrag[512] = "", prefix[256];
    size_t nbad = 0, nnofrag = 0, total = 0, blen = base ? strlen(base) : 0;
    while (blen > 0 && base[blen - 1] == '/')
        blen--;
    snprintf(expected, sizeof expected, "%.*s%s", (int)blen, base ? base : "", LOG_CALL_PATH);
    snprintf(prefix, sizeof prefix, "/2010-04-01/Accounts/%s/IncomingPhoneNumbers.json",
             d->s.twilio.account_sid);
    snprintf(path, sizeof path, "%s?PageSize=100", prefix);
    for (int page = 0; page < MAX_NUMBER_PAGES; page++) {
        long status;
        json_t *doc = twilio_get(d, path, d->s.twilio.username, d->s.twilio.password, &status, why,
                                 sizeof why);
        const json_t *list = json_object_get(doc, "incoming_phone_numbers");
        if (!json_is_array(list)) {
            doctor_report_add(d->report, "twilio.numbers", DOCTOR_FAIL, NULL,
                              "cannot list the incoming numbers: GET IncomingPhoneNumbers.json %s",
                              doc ? "answered without incoming_phone_numbers" : why);
            json_decref(doc);
            return;
        }
        size_t i;
        const json_t *n;
        json_array_foreach(list, i, n)
        {
            classify_number(n, expected, bad, sizeof bad, &nbad, nofrag, sizeof nofrag, &nnofrag);
            total++;
        }
        const char *next = json_string_value(json_object_get(doc, "next_page_uri"));
        int more = next && strncmp(next, prefix, strlen(prefix)) == 0;
        if (more)
            snprintf(path, sizeof path, "%s", next);
        json_decref(doc);
        if (!more)
            break;
    }
    char fix[1400];
    snprintf(fix, sizeof fix,
             "set each number's status callback (POST) to %s" RECOMMENDED_FRAGMENT
             " (docs/twilio-setup.md)",
             expected);
    if (!base)
        doctor_report_add(d->report, "twilio.numbers", DOCTOR_WARN,
                          "set PUBLIC_BASE_URL (the ingest's setting) where doctor runs",
                          "PUBLIC_BASE_URL not set: cannot tell where %zu number(s) should "
                          "point",
                          total);
    else if (nbad > 0)
        doctor_report_add(d->report, "twilio.numbers", DOCTOR_FAIL, fix,
                          "%zu of %zu number(s) do not send status callbacks to %s: %s", nbad,
                          total, expected, bad);
    else if (total == 0)
        doctor_report_add(d->report, "twilio.numbers", DOCTOR_WARN, "buy or port a number",
                          "the account has no incoming phone numbers");
    else if (nnofrag > 0)
        doctor_report_add(d->report, "twilio.numbers", DOCTOR_WARN, fix,
                          "%zu number(s) point at %s, but without the connection-override "
                          "fragment Twilio does not retry a 5xx or a timeout: %s",
                          total, expected, nofrag);
    else
        doctor_report_add(d->report, "twilio.numbers", DOCTOR_OK, NULL,
                          "%zu number(s) send status callbacks to %s with retries", total,
                          expected);
}

static void check_twilio(doctor *d)
{
    const twilio_settings *t = &d->s.twilio;
    const char *auth_token = config_str("TWILIO_AUTH_TOKEN", NULL);
    if (!t->account_sid || !t->username || !t->password) {
        doctor_report_add(d->report, "twilio.credentials", DOCTOR_WARN,
                          "set TWILIO_ACCOUNT_SID and TWILIO_API_KEY_SID/TWILIO_API_KEY_SECRET",
                          "Twilio REST credentials not set: no enrichment, and no reconciler to "
                          "read back calls whose webhook never arrived");
        return;
    }
    int api_key = strcmp(t->username, t->account_sid) != 0;
    if (!check_twilio_account(d, "twilio.credentials", t->username, t->password,
                              api_key ? "TWILIO_API_KEY_SID/SECRET" : "TWILIO_AUTH_TOKEN",
                              "create an API key in the account of TWILIO_ACCOUNT_SID and set "
                              "TWILIO_API_KEY_SID/TWILIO_API_KEY_SECRET"))
        return;
    if (api_key && auth_token)
        check_twilio_account(d, "twilio.auth_token", t->account_sid, auth_token,
                             "TWILIO_AUTH_TOKEN (signs webhooks)",
                             "copy the auth token of TWILIO_ACCOUNT_SID from the Twilio console: "
                             "with another one every webhook gets 403");
    else if (!auth_token)
        doctor_report_add(d->report, "twilio.auth_token", DOCTOR_WARN,
                          "run doctor with the ingest's TWILIO_AUTH_TOKEN too",
                          "TWILIO_AUTH_TOKEN not set here: cannot check the token the ingest "
                          "verifies signatures with");
    check_twilio_numbers(d);
}

/* ---- the run ---------------------------------------------------------------------- */

int doctor_run(const doctor_options *o, FILE *out)
{
    doctor d = {.opt = o};
    calllog_error cerr;
    if (!(d.report = doctor_report_new()))
        return 1;
    if (worker_settings_load(&d.s, &cerr) != 0) {
        doctor_report_add(d.report, "settings", DOCTOR_FAIL,
                          "see docs/configuration.md; doctor reads the worker's settings", "%s",
                          cerr.message);
    } else {
        doctor_report_add(d.report, "settings", DOCTOR_OK, NULL, "worker settings load (RD %s)",
                          d.s.rd.api == RD_API_V1 ? "v1" : "v2");
        d.limit = (ratelimit_policy){d.s.keys.ratelimit, d.s.rate_per_minute, d.s.rate_burst};
        d.http = http_client_new(HTTP_TIMEOUT_MS, 5000);
        check_redis(&d);
        check_postgres(&d);
        check_rd(&d);
        check_twilio(&d);
    }
    doctor_report_print(d.report, o->json, out);
    int rc = doctor_report_failed(d.report) ? 1 : 0;
    if (d.redis)
        redisFree(d.redis);
    http_client_free(d.http);
    doctor_report_free(d.report);
    return rc;
}

/* ---- signature diagnosis ---------------------------------------------------------- */

typedef struct url_parts {
    char scheme[16], host[256], port[8], path[1024], query[1024];
    int has_query;
} url_parts;

/* Splits `url` ("scheme://[user@]host[:port][/path][?query][#fragment]", or a path
 * alone) into its parts, the scheme lower-cased. Returns 0, or -1 when unreadable. */
static int url_split(const char *url, url_parts *u)
{
    memset(u, 0, sizeof *u);
    const char *p = url, *sep = strstr(url, "://");
    if (sep && sep < url + strcspn(url, "/?#")) {
        size_t n = (size_t)(sep - url);
        if (n == 0 || n >= sizeof u->scheme)
            return -1;
        for (size_t i = 0; i < n; i++)
            u->scheme[i] = (char)(url[i] >= 'A' && url[i] <= 'Z' ? url[i] - 'A' + 'a' : url[i]);
        p = sep + 3;
        size_t alen = strcspn(p, "/?#");
        const char *at = memchr(p, '@', alen), *host = at ? at + 1 : p, *end = p + alen;
        const char *colon = NULL;
        if (*host == '[') {
            const char *rb = memchr(host, ']', (size_t)(end - host));
            if (!rb)
                return -1;
            colon = rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
        } else {
            colon = memchr(host, ':', (size_t)(end - host));
        }
        const char *hend = colon ? colon : end;
        if (hend == host || (size_t)(hend - host) >= sizeof u->host ||
            (colon && (size_t)(end - colon - 1) >= sizeof u->port))
            return -1;
        snprintf(u->host, sizeof u->host, "%.*s", (int)(hend - host), host);
        if (colon)
            snprintf(u->port, sizeof u->port, "%.*s", (int)(end - colon - 1), colon + 1);
        p = end;
    } else if (*url != '/') {
        return -1;
    }
    size_t plen = strcspn(p, "?#");
    if (plen >= sizeof u->path)
        return -1;
    snprintf(u->path, sizeof u->path, "%.*s", (int)plen, p);
    p += plen;
    if (*p == '?') {
        size_t qlen = strcspn(p + 1, "#");
        if (qlen >= sizeof u->query)
            return -1;
        u->has_query = 1;
        snprintf(u->query, sizeof u->query, "%.*s", (int)qlen, p + 1);
    }
    return 0;
}

/* The scheme's default port ("443", "80") or "". */
static const char *default_port(const char *scheme)
{
    return strcmp(scheme, "https") == 0 ? "443" : strcmp(scheme, "http") == 0 ? "80" : "";
}

/* 1 when two ports are the same for `scheme` (none = the default). */
static int same_port(const char *scheme, const char *a, const char *b)
{
    const char *da = a[0] ? a : default_port(scheme), *db = b[0] ? b : default_port(scheme);
    return strcmp(da, db) == 0;
}

/* Adds `v` to the set `set[0..*n)` of at most `max` strings unless present or empty. */
static void set_add(const char **set, size_t *n, size_t max, const char *v, int allow_empty)
{
    if ((!allow_empty && !v[0]) || *n == max)
        return;
    for (size_t i = 0; i < *n; i++)
        if (strcmp(set[i], v) == 0)
            return;
    set[(*n)++] = v;
}

/* Writes "scheme://host[:port]" into `out`. */
static void origin(char *out, size_t outlen, const char *scheme, const char *host, const char *port)
{
    snprintf(out, outlen, "%s://%s%s%s", scheme, host, port[0] ? ":" : "", port);
}

/* Describes how the matched variant `m` differs from what the ingest signs, `e`. */
static void describe_differences(const url_parts *m, const url_parts *e, char *out, size_t outlen)
{
    size_t used = 0;
    out[0] = '\0';
#define DIFF(...)                                                                                  \
    do {                                                                                           \
        if (used < outlen)                                                                         \
            used += (size_t)snprintf(out + used, outlen - used, "%s", used ? "; " : "");           \
        if (used < outlen)                                                                         \
            used += (size_t)snprintf(out + used, outlen - used, __VA_ARGS__);                      \
    } while (0)
    if (strcmp(m->scheme, e->scheme) != 0)
        DIFF("scheme %s, not %s", m->scheme, e->scheme);
    if (strcasecmp(m->host, e->host) != 0)
        DIFF("host %s, not %s", m->host, e->host);
    if (strcmp(m->scheme, e->scheme) == 0 && !same_port(m->scheme, m->port, e->port))
        DIFF("port %s, not %s", m->port[0] ? m->port : "(none)", e->port[0] ? e->port : "(none)");
    else if (strcmp(m->scheme, e->scheme) != 0 && m->port[0])
        DIFF("port %s", m->port);
    if (strcmp(m->path, e->path) != 0)
        DIFF("path %s, not %s", m->path[0] ? m->path : "(empty)", e->path);
    if (m->has_query != e->has_query)
        DIFF("%s", m->has_query ? "query kept" : "query dropped");
#undef DIFF
}

int doctor_signature_diagnose(const char *const *tokens, size_t ntokens,
                              const char *public_base_url, const char *url, const form *params,
                              const char *signature, doctor_sig_diagnosis *out)
{
    url_parts u, b, e, m;
    memset(out, 0, sizeof *out);
    if (!url || !public_base_url || !signature || url_split(url, &u) != 0 ||
        url_split(public_base_url, &b) != 0 || !b.scheme[0])
        return -1;
    if (!u.scheme[0]) { /* a path alone: Twilio's request went to PUBLIC_BASE_URL's origin */
        memcpy(u.scheme, b.scheme, sizeof u.scheme);
        memcpy(u.host, b.host, sizeof u.host);
        memcpy(u.port, b.port, sizeof u.port);
    }
    size_t blen = strlen(b.path);
    while (blen > 0 && b.path[blen - 1] == '/')
        b.path[--blen] = '\0';
    /* What the ingest signs: PUBLIC_BASE_URL + its only route + the raw query. */
    e = b;
    snprintf(e.path, sizeof e.path, "%.990s%s", b.path, LOG_CALL_PATH);
    e.has_query = u.has_query;
    memcpy(e.query, u.query, sizeof e.query);
    char eorigin[600];
    origin(eorigin, sizeof eorigin, e.scheme, e.host, e.port);
    snprintf(out->expected_url, sizeof out->expected_url, "%s%s%s%s", eorigin, e.path,
             e.has_query ? "?" : "", e.query);
    for (size_t t = 0; t < ntokens; t++) {
        if (tokens[t] && tokens[t][0] &&
            signature_check_form(&tokens[t], 1, out->expected_url, params, signature) == SIG_OK) {
            out->verified = out->matched = 1;
            out->token = (int)t;
            snprintf(out->signed_url, sizeof out->signed_url, "%s", out->expected_url);
            snprintf(out->base_url, sizeof out->base_url, "%.400s%.600s", eorigin, b.path);
            return 0;
        }
    }
    const char *schemes[4], *hosts[2], *ports[5], *paths[3];
    size_t ns = 0, nh = 0, np = 0, npath = 0;
    char toggled[1024], route[1100];
    set_add(schemes, &ns, 4, u.scheme, 0);
    set_add(schemes, &ns, 4, b.scheme, 0);
    set_add(schemes, &ns, 4, "https", 0);
    set_add(schemes, &ns, 4, "http", 0);
    set_add(hosts, &nh, 2, u.host, 0);
    set_add(hosts, &nh, 2, b.host, 0);
    set_add(ports, &np, 5, "", 1);
    set_add(ports, &np, 5, u.port, 0);
    set_add(ports, &np, 5, b.port, 0);
    set_add(ports, &np, 5, "443", 0);
    set_add(ports, &np, 5, "80", 0);
    size_t plen = strlen(u.path);
    if (plen > 0 && u.path[plen - 1] == '/')
        snprintf(toggled, sizeof toggled, "%.*s", (int)(plen - 1), u.path);
    else
        snprintf(toggled, sizeof toggled, "%.1022s/", u.path);
    snprintf(route, sizeof route, "%s", e.path);
    set_add(paths, &npath, 3, u.path, 1);
    set_add(paths, &npath, 3, toggled, 0);
    set_add(paths, &npath, 3, route, 0);
    char cand[2600], sig[SIGNATURE_LEN + 1];
    for (size_t t = 0; t < ntokens; t++) {
        for (size_t q = 0; q < (u.has_query ? 2u : 1u); q++) {
            for (size_t pa = 0; pa < npath; pa++) {
                for (size_t s = 0; s < ns; s++) {
                    for (size_t h = 0; h < nh; h++) {
                        for (size_t po = 0; po < np; po++) {
                            if (!tokens[t] || !tokens[t][0])
                                continue;
                            char o[600];
                            origin(o, sizeof o, schemes[s], hosts[h], ports[po]);
                            snprintf(cand, sizeof cand, "%s%s%s%s", o, paths[pa],
                                     q == 0 && u.has_query ? "?" : "", q == 0 ? u.query : "");
                            if (signature_compute(tokens[t], cand, params, sig) != 0)
                                return -1;
                            if (strcmp(sig, signature) != 0)
                                continue;
                            out->matched = 1;
                            out->token = (int)t;
                            snprintf(out->signed_url, sizeof out->signed_url, "%s", cand);
                            memset(&m, 0, sizeof m);
                            snprintf(m.scheme, sizeof m.scheme, "%s", schemes[s]);
                            snprintf(m.host, sizeof m.host, "%s", hosts[h]);
                            snprintf(m.port, sizeof m.port, "%s", ports[po]);
                            snprintf(m.path, sizeof m.path, "%s", paths[pa]);
                            m.has_query = q == 0 && u.has_query;
                            describe_differences(&m, &e, out->differences, sizeof out->differences);
                            size_t mp = strlen(m.path), rl = strlen(LOG_CALL_PATH);
                            int routed = mp >= rl && strcmp(m.path + mp - rl, LOG_CALL_PATH) == 0;
                            snprintf(out->base_url, sizeof out->base_url, "%s%.*s", o,
                                     routed ? (int)(mp - rl) : 0, m.path);
                            return 0;
                        }
                    }
                }
            }
        }
    }
    return 0;
}

/* Reads all of `path` into a malloc'ed, NUL-terminated buffer, one trailing newline
 * dropped. Returns NULL when unreadable. */
static char *read_body(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n - 1, f)) > 0;) {
        n += got;
        if (n + 1 == cap) {
            char *bigger = cap < (1u << 24) ? realloc(buf, cap * 2) : NULL;
            if (!bigger) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
    }
    fclose(f);
    if (!buf)
        return NULL;
    if (n > 0 && buf[n - 1] == '\n')
        n--;
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* The report line for a diagnosis. */
static void report_diagnosis(doctor_report *r, const doctor_sig_diagnosis *g, const char *base,
                             const char *const *names)
{
    char fix[3000];
    if (g->verified) {
        doctor_report_add(r, "signature", DOCTOR_OK, NULL,
                          "the ingest accepts it: signed with %s for %s", names[g->token],
                          g->signed_url);
    } else if (g->matched) {
        snprintf(fix, sizeof fix,
                 "make the URL configured in Twilio and PUBLIC_BASE_URL agree: set "
                 "PUBLIC_BASE_URL=%.400s, or (better when it is http://) set the number's "
                 "status callback to %.600s" RECOMMENDED_FRAGMENT,
                 g->base_url, g->expected_url);
        doctor_report_add(r, "signature", DOCTOR_FAIL, fix,
                          "signed with %s for %s, but the ingest (PUBLIC_BASE_URL=%s) checks %s: "
                          "%s",
                          names[g->token], g->signed_url, base, g->expected_url, g->differences);
    } else {
        doctor_report_add(r, "signature", DOCTOR_FAIL,
                          "use the auth token of the account that sent the request, and paste "
                          "the body exactly as Twilio sent it",
                          "no variant of the URL (scheme, host, port, trailing slash, query) "
                          "matches with the configured token(s): the token is another "
                          "account's, or the parameters differ from what Twilio signed");
    }
}

int doctor_signature_run(const char *url, const char *params_file, const char *signature, int json,
                         FILE *out)
{
    const char *tokens[2] = {config_str("TWILIO_AUTH_TOKEN", NULL),
                             config_str("TWILIO_AUTH_TOKEN_SECONDARY", NULL)};
    static const char *const names[2] = {"TWILIO_AUTH_TOKEN", "TWILIO_AUTH_TOKEN_SECONDARY"};
    const char *base = config_str("PUBLIC_BASE_URL", NULL);
    doctor_report *r = doctor_report_new();
    size_t len = 0;
    char *body = read_body(params_file, &len);
    form params = {0};
    form_status fs = body && body[0] != '{' ? form_parse(body, len, 10000, &params) : FORM_OK;
    doctor_sig_diagnosis g;
    int rc = 1;
    if (!r) {
        free(body);
        return 1;
    }
    if (!tokens[0] && !tokens[1])
        doctor_report_add(r, "signature", DOCTOR_FAIL, "set TWILIO_AUTH_TOKEN (the ingest's)",
                          "TWILIO_AUTH_TOKEN not set: nothing to check the signature with");
    else if (!base)
        doctor_report_add(r, "signature", DOCTOR_FAIL, "set PUBLIC_BASE_URL (the ingest's)",
                          "PUBLIC_BASE_URL not set: cannot tell what the ingest signs");
    else if (!body)
        doctor_report_add(r, "signature", DOCTOR_FAIL, NULL, "cannot read %s", params_file);
    else if (fs != FORM_OK)
        doctor_report_add(r, "signature", DOCTOR_FAIL, "paste the raw form-encoded body (a=1&b=2)",
                          "%s is not a form body: %s", params_file, form_strerror(fs));
    else if (doctor_signature_diagnose(tokens[0] ? tokens : tokens + 1, tokens[0] ? 2 : 1, base,
                                       url, &params, signature, &g) != 0)
        doctor_report_add(r, "signature", DOCTOR_FAIL,
                          "give --url as Twilio shows it (https://host/twilio/log-call?...)",
                          "cannot read --url %s or PUBLIC_BASE_URL", url);
    else {
        if (!tokens[0])
            g.token = 1; /* only the secondary was given */
        report_diagnosis(r, &g, base, names);
        rc = g.verified ? 0 : 1;
    }
    doctor_report_print(r, json, out);
    doctor_report_free(r);
    form_free(&params);
    free(body);
    return rc;
}
