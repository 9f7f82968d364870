/* doctor — checks a deployment against the services its settings name (see doctor.h).
 *
 * Every check is one function that adds one result line to the report (doctor_report.h);
 * a check whose prerequisite failed (no Redis, no Postgres) is left out rather than
 * reported twice. This file runs them and holds the Redis and Postgres checks; the RD
 * Station and Twilio ones are in doctor_rd.c and doctor_twilio.c (doctor_check.h is what
 * they share). Read-only: Redis is asked with INFO (falling back to CONFIG GET, which
 * managed Redis often disables), the limiter is peeked, never charged for the check
 * itself. */
#include "worker/doctor.h"

#include <stdlib.h>
#include <string.h>

#include "common/keys.h"
#include "common/redis_client.h"
#include "worker/doctor_check.h"
#include "worker/followup.h"
#include "worker/ledger.h"

#define DOCTOR_LISTED_MAX 10

/* Appends `word` to the list in `out` ("a, b"), up to ten words then "…". */
void doctor_list_add(char *out, size_t outlen, size_t *count, const char *word)
{
    size_t used = strlen(out);
    if (*count < DOCTOR_LISTED_MAX && used < outlen)
        snprintf(out + used, outlen - used, "%s%s", *count ? ", " : "", word);
    else if (*count == DOCTOR_LISTED_MAX && used < outlen)
        snprintf(out + used, outlen - used, ", …");
    (*count)++;
}

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
    int schema = ledger_check_schema(l);
    if (schema == 0 && d->s.followup.enabled && followup_check_schema(l, &err) != 0)
        doctor_report_add(d->report, "postgres.schema", DOCTOR_FAIL,
                          "apply deploy/supabase/migrations/*.sql in order, or set "
                          "CALLLOG_MISSED_CALL_TASK=0",
                          "migration missing: %s", err.message);
    else if (schema == 0)
        doctor_report_add(d->report, "postgres.schema", DOCTOR_OK, NULL,
                          "calllog.deliveries%s and schema version present",
                          d->s.followup.enabled ? ", calllog.followups" : "");
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
        d.limit = (ratelimit_policy){d.s.keys.ratelimit, d.s.rate_per_minute, d.s.rate_burst,
                                     d.s.sync_max_share};
        d.http = http_client_new(DOCTOR_HTTP_TIMEOUT_MS, 5000);
        check_redis(&d);
        check_postgres(&d);
        doctor_check_rd(&d);
        doctor_check_twilio(&d);
    }
    doctor_report_print(d.report, o->json, out);
    int rc = doctor_report_failed(d.report) ? 1 : 0;
    if (d.redis)
        redisFree(d.redis);
    http_client_free(d.http);
    doctor_report_free(d.report);
    return rc;
}
