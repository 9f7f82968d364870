/* settings — loads calllog-worker's settings from the environment (see settings.h). */
#include "worker/settings.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/http_client.h"
#include "common/log.h"
#include "common/recording_link.h"
#include "worker/phone.h"

/* Redis (the shared loader) and this program's Redis timeout. */
static int load_redis(worker_settings *s, calllog_error *err)
{
    if (redis_settings_load(&s->redis, &s->keys, err) != 0)
        return -1;
    return config_long("WORKER_REDIS_TIMEOUT_MS", 5000, 100, 60000, &s->redis_timeout_ms, err);
}

/* The consumer name: WORKER_CONSUMER_NAME, else hostname-pid (unique per process). */
static void make_consumer_name(worker_settings *s)
{
    const char *name = config_str("WORKER_CONSUMER_NAME", NULL);
    char host[64] = "worker";
    gethostname(host, sizeof host - 1);
    if (name)
        snprintf(s->consumer, sizeof s->consumer, "%s", name);
    else
        snprintf(s->consumer, sizeof s->consumer, "%s-%ld", host, (long)getpid());
}

static int load_consumer(worker_settings *s, calllog_error *err)
{
    make_consumer_name(s);
    return config_long("WORKER_CONCURRENCY", 4, 1, 64, &s->concurrency, err) ||
                   config_long("WORKER_BLOCK_MS", 2000, 10, 60000, &s->block_ms, err) ||
                   config_long("WORKER_CLAIM_IDLE_MS", 10000, 100, 86400000, &s->claim_idle_ms,
                               err) ||
                   config_long("WORKER_LEASE_MS", 15000, 100, 86400000, &s->lease_ms, err) ||
                   config_long("WORKER_MAX_DELIVERIES", 10, 1, 1000, &s->max_deliveries, err) ||
                   config_long("WORKER_DRAIN_TIMEOUT_MS", 30000, 100, 600000, &s->drain_timeout_ms,
                               err)
               ? -1
               : 0;
}

/* TWILIO_RECONCILE_NUMBERS: "+551130001000,+551130001001" (E.164). */
static int load_reconcile_numbers(worker_settings *s, calllog_error *err)
{
    const char *v = config_str("TWILIO_RECONCILE_NUMBERS", NULL);
    while (v && *v) {
        size_t n = strcspn(v, ",");
        char *number = s->reconcile_numbers[s->reconcile_numbers_len];
        phone_variant_list pv;
        if (n == 0 || n >= sizeof s->reconcile_numbers[0] ||
            s->reconcile_numbers_len == RECONCILE_NUMBERS_MAX)
            return config_fail(err, "TWILIO_RECONCILE_NUMBERS",
                               "expected E.164 numbers (+5511...) separated by commas");
        memcpy(number, v, n);
        number[n] = '\0';
        if (number[0] != '+' || phone_variants(number, &pv) < 1)
            return config_fail(err, "TWILIO_RECONCILE_NUMBERS",
                               "expected E.164 numbers (+5511...) separated by commas");
        s->reconcile_numbers_len++;
        v += n + (v[n] == ',');
    }
    return 0;
}

/* The reconciler: on by default whenever Twilio REST credentials are set. */
static int load_reconcile(worker_settings *s, int have_credentials, calllog_error *err)
{
    if (config_long("TWILIO_RECONCILE_INTERVAL_MS", have_credentials ? 120000 : 0, 0, 86400000,
                    &s->reconcile_interval_ms, err) ||
        config_long("TWILIO_RECONCILE_GRACE_MS", 60000, 0, 86400000, &s->reconcile_grace_ms, err) ||
        config_long("TWILIO_RECONCILE_LOOKBACK_MS", 86400000, 1000, 30L * 86400000,
                    &s->reconcile_lookback_ms, err) ||
        config_long("TWILIO_RECONCILE_OVERLAP_MS", 600000, 0, 86400000, &s->reconcile_overlap_ms,
                    err) ||
        config_long("TWILIO_RECONCILE_MAX_CALL_MS", 14400000, 60000, 86400000,
                    &s->reconcile_max_call_ms, err) ||
        config_long("TWILIO_RECONCILE_LEASE_MS", 30000, 1000, 600000, &s->reconcile_lease_ms, err))
        return -1;
    if (s->reconcile_interval_ms > 0 && s->reconcile_interval_ms < 100)
        return config_fail(err, "TWILIO_RECONCILE_INTERVAL_MS", "expected 0 (off) or at least 100");
    if (s->reconcile_interval_ms > 0 && !have_credentials)
        return config_fail(err, "TWILIO_RECONCILE_INTERVAL_MS",
                           "reconciliation needs TWILIO_ACCOUNT_SID and TWILIO_API_KEY_SID/"
                           "TWILIO_API_KEY_SECRET (or TWILIO_AUTH_TOKEN)");
    return load_reconcile_numbers(s, err);
}

/* Twilio REST credentials: an API key (preferred) or the account's auth token. */
static int load_twilio(worker_settings *s, calllog_error *err)
{
    twilio_settings *t = &s->twilio;
    int have = twilio_settings_load(t);
    t->timeout_ms = 5000;
    t->max_tries = 3;
    if (config_bool("TWILIO_ENRICH", have, &s->enrich, err) != 0)
        return -1;
    if (s->enrich && !have)
        return config_fail(err, "TWILIO_ENRICH",
                           "enrichment needs TWILIO_ACCOUNT_SID and TWILIO_API_KEY_SID/"
                           "TWILIO_API_KEY_SECRET (or TWILIO_AUTH_TOKEN)");
    return load_reconcile(s, have, err);
}

static int load_rd_v1(worker_settings *s, calllog_error *err)
{
    s->rd.base_url = config_str("RDSTATION_API_BASE_URL", "https://crm.rdstation.com/api/v1");
    /* RDSTATION_USER_ID is optional: without it notes and tasks are the deal owner's. */
    s->rd_user_id = config_str("RDSTATION_USER_ID", NULL);
    return config_require("RDSTATION_TOKEN", &s->rd.token, err);
}

static int load_rd_v2(worker_settings *s, calllog_error *err)
{
    s->rd.base_url = config_str("RDSTATION_API_BASE_URL", "https://api.rd.services/crm/v2");
    s->rd.oauth_url = config_str("RDSTATION_OAUTH_URL", "https://api.rd.services/oauth2/token");
    s->rd_user_id = config_str("RDSTATION_USER_ID", NULL);
    return config_require("RDSTATION_CLIENT_ID", &s->rd.client_id, err) ||
                   config_require("RDSTATION_CLIENT_SECRET", &s->rd.client_secret, err) ||
                   config_require("RDSTATION_REFRESH_TOKEN", &s->rd.refresh_token, err)
               ? -1
               : 0;
}

/* RDSTATION_USER_MAP: "+551130001000=userA,+551130001001=userB". */
static int load_user_map(worker_settings *s, calllog_error *err)
{
    const char *v = config_str("RDSTATION_USER_MAP", NULL);
    while (v && *v) {
        const char *comma = strchr(v, ',');
        size_t n = comma ? (size_t)(comma - v) : strlen(v);
        const char *eq = memchr(v, '=', n);
        user_route *r = &s->user_map[s->user_map_len];
        size_t nl = eq ? (size_t)(eq - v) : 0, ul = eq ? n - nl - 1 : 0;
        int email = eq && memchr(eq + 1, '@', ul) != NULL;
        if (!eq || nl == 0 || ul == 0 || nl >= sizeof r->number ||
            ul >= (email ? sizeof r->email : sizeof r->user_id) || s->user_map_len == USER_MAP_MAX)
            return config_fail(
                err, "RDSTATION_USER_MAP",
                "expected +5511...=<RD user id or e-mail> pairs separated by commas");
        memcpy(r->number, v, nl);
        memcpy(email ? r->email : r->user_id, eq + 1, ul);
        s->user_map_len++;
        v = comma ? comma + 1 : NULL;
    }
    return 0;
}

static int load_rdstation(worker_settings *s, calllog_error *err)
{
    static const char *const apis[] = {"v1", "v2", NULL};
    int api;
    if (config_choice("RDSTATION_API", "v1", apis, &api, err) != 0)
        return -1;
    s->rd.api = api == 0 ? RD_API_V1 : RD_API_V2;
    if ((api == 0 ? load_rd_v1(s, err) : load_rd_v2(s, err)) != 0)
        return -1;
    if (config_long("RDSTATION_TIMEOUT_MS", 10000, 100, 120000, &s->rd.timeout_ms, err) ||
        config_long("RDSTATION_RATE_LIMIT_PER_MINUTE", 120, 1, 100000, &s->rate_per_minute, err) ||
        config_long("RDSTATION_RATE_BURST", 10, 1, 1000, &s->rate_burst, err) ||
        config_long("RDSTATION_SYNC_MAX_SHARE", 50, 1, 100, &s->sync_max_share, err) ||
        config_bool("RDSTATION_PHONE_INDEX", 1, &s->phone_index, err) ||
        config_long("RDSTATION_UNKNOWN_OUTCOME_DELAY_MS", 60000, 0, 86400000,
                    &s->unknown_outcome_delay_ms, err))
        return -1;
    if (s->rate_burst >= s->rate_per_minute)
        return config_fail(err, "RDSTATION_RATE_BURST",
                           "must be smaller than RDSTATION_RATE_LIMIT_PER_MINUTE");
    return load_user_map(s, err);
}

/* The missed-call follow-up (followup.h): on/off, delay, business hours. */
static int load_followup(followup_settings *f, calllog_error *err)
{
    if (config_bool("CALLLOG_MISSED_CALL_TASK", 1, &f->enabled, err) ||
        config_long("CALLLOG_MISSED_CALL_DUE_MIN", 30, 0, 7L * 24 * 60, &f->due_min, err))
        return -1;
    const char *hours = config_str("CALLLOG_BUSINESS_HOURS", BUSINESS_HOURS_DEFAULT);
    calllog_error why;
    if (business_hours_parse(hours, &f->hours, &why) != CALLLOG_OK)
        return config_fail(err, "CALLLOG_BUSINESS_HOURS", why.message);
    return 0;
}

static int load_delivery(worker_settings *s, calllog_error *err)
{
    static const char *const modes[] = {"note", "task", "both", NULL};
    static const char *const policies[] = {"skip", "dead", "create", NULL};
    int mode, policy;
    if (config_choice("CALLLOG_MODE", "note", modes, &mode, err) ||
        config_choice("CALLLOG_UNKNOWN_CALLER", "skip", policies, &policy, err))
        return -1;
    s->mode = (worker_delivery_mode)mode;
    s->unknown = (unknown_policy)policy;
    s->create_stage_id = config_str("CALLLOG_CREATE_DEAL_STAGE_ID", NULL);
    if (s->unknown == UNKNOWN_CREATE && !s->create_stage_id)
        return config_fail(err, "CALLLOG_CREATE_DEAL_STAGE_ID",
                           "required when CALLLOG_UNKNOWN_CALLER=create");
    s->note_template = config_str("CALLLOG_NOTE_TEMPLATE", NULL);
    s->timezone = config_str("CALLLOG_TIMEZONE", "America/Sao_Paulo");
    return load_followup(&s->followup, err);
}

static int load_retry_and_cache(worker_settings *s, calllog_error *err)
{
    long attempts;
    if (config_long("RETRY_MAX_ATTEMPTS", RETRY_DEFAULT_MAX_ATTEMPTS, 1, 1000, &attempts, err) ||
        config_long("RETRY_BASE_MS", RETRY_DEFAULT_BASE_MS, 0, 3600000, &s->retry.base_ms, err) ||
        config_long("RETRY_MAX_DELAY_MS", RETRY_DEFAULT_MAX_DELAY_MS, 0, 86400000,
                    &s->retry.max_delay_ms, err) ||
        config_long("CACHE_TTL_S", 600, 0, 86400 * 30, &s->cache_ttl_s, err) ||
        config_long("CACHE_NEGATIVE_TTL_S", 120, 0, 86400, &s->negative_cache_ttl_s, err))
        return -1;
    s->retry.max_attempts = (int)attempts;
    return 0;
}

static int load_alerts(worker_settings *s, calllog_error *err)
{
    s->alert_webhook_url = config_str("ALERT_WEBHOOK_URL", NULL);
    return config_long("ALERT_WINDOW_S", 300, 10, 86400, &s->alert_window_s, err) ||
                   config_long("ALERT_MIN_EVENTS", 10, 1, 1000000, &s->alert_min_events, err) ||
                   config_long("ALERT_FAILURE_PERCENT", 50, 1, 100, &s->alert_failure_percent, err)
               ? -1
               : 0;
}

/* Recording links: RECORDING_LINK_SECRET turns them on and then needs PUBLIC_BASE_URL,
 * where the ingest serves GET /recordings/<CallSid>; RECORDING_LINK_TTL_DAYS (default 0,
 * never) makes them expire. */
static int load_recording_links(worker_settings *s, calllog_error *err)
{
    s->recording_link_secret = config_str("RECORDING_LINK_SECRET", NULL);
    if (config_long("RECORDING_LINK_TTL_DAYS", 0, 0, 36500, &s->recording_link_ttl_days, err))
        return -1;
    if (!s->recording_link_secret)
        return 0;
    if (strlen(s->recording_link_secret) < RECORDING_LINK_SECRET_MIN)
        return config_fail(err, "RECORDING_LINK_SECRET",
                           "at least 16 characters (e.g. openssl rand -hex 32)");
    if (!config_str("PUBLIC_BASE_URL", NULL))
        return config_fail(err, "PUBLIC_BASE_URL",
                           "required with RECORDING_LINK_SECRET: the ingest's public "
                           "scheme://host[:port] the links point to");
    return config_base_url("PUBLIC_BASE_URL", s->public_base_url, sizeof s->public_base_url, err);
}

/* Names every required setting that is missing at once (which ones depends on
 * RDSTATION_API; a malformed RDSTATION_API is reported by load_rdstation). */
static int check_required(calllog_error *err)
{
    static const char *const v1[] = {"DATABASE_URL", "RDSTATION_TOKEN", NULL};
    static const char *const v2[] = {"DATABASE_URL", "RDSTATION_CLIENT_ID",
                                     "RDSTATION_CLIENT_SECRET", "RDSTATION_REFRESH_TOKEN", NULL};
    const char *api = config_str("RDSTATION_API", "v1");
    return config_require_all(strcmp(api, "v2") == 0 ? v2 : v1, err);
}

int worker_settings_load(worker_settings *s, calllog_error *err)
{
    memset(s, 0, sizeof *s);
    if (check_required(err) || load_redis(s, err) ||
        config_require("DATABASE_URL", &s->database_url, err) || load_consumer(s, err) ||
        load_twilio(s, err) || load_rdstation(s, err) || load_delivery(s, err) ||
        load_retry_and_cache(s, err) || load_alerts(s, err) || load_recording_links(s, err))
        return -1;
    if (config_listen("METRICS_LISTEN", "127.0.0.1:9102", s->metrics_host, sizeof s->metrics_host,
                      &s->metrics_port, err))
        return -1;
    return config_check(err); /* a *_FILE behind a setting with a default, e.g. REDIS_URL */
}

/* Fills the ids of the map's e-mails from `users`. Returns 0, or -1 naming the first
 * e-mail no user has. */
static int resolve_from(worker_settings *s, const rd_user *users, size_t n, calllog_error *err)
{
    for (size_t i = 0; i < s->user_map_len; i++) {
        user_route *r = &s->user_map[i];
        size_t k = 0;
        if (r->email[0] == '\0')
            continue;
        while (k < n && strcasecmp(users[k].email, r->email) != 0)
            k++;
        if (k == n) {
            char msg[384];
            snprintf(msg, sizeof msg,
                     "no RD Station user has the e-mail %.128s (GET /users lists %zu)", r->email,
                     n);
            return config_fail(err, "RDSTATION_USER_MAP", msg);
        }
        snprintf(r->user_id, sizeof r->user_id, "%s", users[k].id);
        log_info("RDSTATION_USER_MAP e-mail resolved", LF_S("number", r->number),
                 LF_S("email", r->email), LF_S("user_id", r->user_id));
    }
    return 0;
}

/* Resolves the map's e-mails; see the header. */
int worker_settings_resolve_users(worker_settings *s, calllog_error *err)
{
    calllog_error why;
    size_t i = 0, n = 0;
    rd_user *users = NULL;
    calllog_error ae;
    while (i < s->user_map_len && s->user_map[i].email[0] == '\0')
        i++;
    if (i == s->user_map_len)
        return 0;
    redisContext *redis = redis_open(&s->redis, (int)s->redis_timeout_ms, &why);
    rd_client *c = redis ? rd_client_new(&s->rd, redis, &s->keys) : NULL;
    calllog_code st = c ? rd_list_users(c, &users, &n, &ae) : CALLLOG_TRANSIENT;
    int rc;
    if (st == CALLLOG_OK) {
        rc = resolve_from(s, users, n, err);
    } else {
        error_set(err, CALLLOG_INVALID,
                  "RDSTATION_USER_MAP: its e-mails cannot be resolved to RD user ids: %.400s",
                  !redis ? why.message
                  : !c   ? "cannot create the RD Station client"
                         : ae.message);
        rc = -2;
    }
    free(users);
    rd_client_free(c);
    if (redis)
        redisFree(redis);
    return rc;
}

const char *worker_settings_mapped_user(const worker_settings *s, const char *our_number)
{
    for (size_t i = 0; our_number && i < s->user_map_len; i++) {
        if (phone_same_number(our_number, s->user_map[i].number))
            return s->user_map[i].user_id;
    }
    return NULL;
}

const char *worker_settings_user_for(const worker_settings *s, const char *our_number)
{
    const char *mapped = worker_settings_mapped_user(s, our_number);
    return mapped ? mapped : s->rd_user_id;
}

/* Warns about one URL setting when it is plain http:// outside loopback. */
static void warn_plaintext_url(const char *name, const char *url)
{
    char origin[160];
    if (url == NULL || !http_url_is_plaintext_remote(url))
        return;
    http_url_origin(url, origin, sizeof origin);
    log_warn("plain-text transport: this setting's http:// URL leaves the host unencrypted "
             "(credentials and call data included); use https://",
             LF_S("setting", name), LF_S("url", origin));
}

/* The value of libpq option `key` in `opts`, else environment variable `env`, else NULL. */
static const char *pq_option(const PQconninfoOption *opts, const char *key, const char *env)
{
    for (const PQconninfoOption *o = opts; o && o->keyword; o++)
        if (strcmp(o->keyword, key) == 0 && o->val != NULL && o->val[0] != '\0')
            return o->val;
    const char *v = getenv(env);
    return v != NULL && v[0] != '\0' ? v : NULL;
}

/* The first host of a comma-separated libpq host list that is neither a Unix socket
 * directory nor loopback, copied into `out`; 0 when every host is local. */
static int remote_pq_host(const char *hosts, char *out, size_t outlen)
{
    while (hosts != NULL && *hosts != '\0') {
        size_t n = strcspn(hosts, ",");
        snprintf(out, outlen, "%.*s", (int)n, hosts);
        if (out[0] != '\0' && out[0] != '/' && out[0] != '@' && !http_host_is_loopback(out))
            return 1;
        hosts += n + (hosts[n] == ',');
    }
    out[0] = '\0';
    return 0;
}

/* Warns when DATABASE_URL reaches a host outside this one without demanding TLS. */
static void warn_plaintext_database(const char *url)
{
    char *why = NULL, host[256];
    PQconninfoOption *opts = url ? PQconninfoParse(url, &why) : NULL;
    if (opts == NULL) { /* malformed: the connection at start-up says so */
        PQfreemem(why);
        return;
    }
    const char *addr = pq_option(opts, "hostaddr", "PGHOSTADDR");
    const char *mode = pq_option(opts, "sslmode", "PGSSLMODE");
    int remote = remote_pq_host(addr ? addr : pq_option(opts, "host", "PGHOST"), host, sizeof host);
    int tls = mode != NULL && (strcmp(mode, "require") == 0 || strcmp(mode, "verify-ca") == 0 ||
                               strcmp(mode, "verify-full") == 0);
    if (remote && !tls)
        log_warn("plain-text transport: DATABASE_URL reaches a remote host without "
                 "sslmode=require (or verify-ca/verify-full), so the database password and "
                 "call data may cross the network unencrypted",
                 LF_S("setting", "DATABASE_URL"), LF_S("host", host),
                 LF_S("sslmode", mode ? mode : "prefer (default)"));
    PQconninfoFree(opts);
}

void worker_settings_warn_plaintext(const worker_settings *s)
{
    warn_plaintext_url("RDSTATION_API_BASE_URL", s->rd.base_url);
    if (s->rd.api == RD_API_V2)
        warn_plaintext_url("RDSTATION_OAUTH_URL", s->rd.oauth_url);
    if (s->enrich || s->reconcile_interval_ms > 0)
        warn_plaintext_url("TWILIO_API_BASE_URL", s->twilio.base_url);
    warn_plaintext_url("ALERT_WEBHOOK_URL", s->alert_webhook_url);
    warn_plaintext_database(s->database_url);
}
