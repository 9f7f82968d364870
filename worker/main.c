/* calllog-worker — turns finished calls on the events stream into RD Station notes.
 *
 * Start-up checks everything it depends on and refuses with one clear line: settings,
 * the note template and time zone, Redis (and the consumer group), Postgres (and the
 * migrated schema). Then it runs the consumer and promoter threads (consumer.h) and
 * serves /metrics until SIGTERM/SIGINT, when it drains within WORKER_DRAIN_TIMEOUT_MS:
 * consumers and reconciler first, then the alerts still queued (alert.h). */
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cli.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/metrics_server.h"
#include "common/shutdown.h"
#include "common/timing.h"
#include "worker/alert.h"
#include "worker/consumer.h"
#include "worker/followup.h"
#include "worker/ledger.h"
#include "worker/processor.h"
#include "worker/queue.h"
#include "worker/phone_index.h"
#include "worker/reconcile.h"
#include "worker/settings.h"

/* At shutdown, queued alerts get what is left of WORKER_DRAIN_TIMEOUT_MS, at most this
 * long, and less a margin so the watchdog does not fire while they are posted. */
#define ALERT_DRAIN_MAX_MS 5000
#define ALERT_DRAIN_MARGIN_MS 500

static const char usage[] =
    "calllog-worker [--env-file FILE]\n"
    "Reads <CALLLOG_KEY_PREFIX>:events through consumer group calllog-workers, claims each\n"
    "CallSid in Postgres and posts one note per finished call to RD Station CRM. Run any\n"
    "number of copies. Settings come from the environment; see docs/configuration.md.\n"
    "Required: DATABASE_URL, RDSTATION_API and its credentials.";

/* Depth gauges, refreshed at scrape time on a connection of their own. */
static struct {
    pthread_mutex_t lock;
    redisContext *redis;
    const worker_settings *settings;
    metric *events, *pending, *retry, *dead;
} depths = {PTHREAD_MUTEX_INITIALIZER, NULL, NULL, NULL, NULL, NULL, NULL};

static void collect_depths(void *arg)
{
    (void)arg;
    calllog_error err;
    queue_depths d;
    pthread_mutex_lock(&depths.lock);
    if (!depths.redis || depths.redis->err) {
        if (depths.redis)
            redisFree(depths.redis);
        depths.redis = redis_open(&depths.settings->redis, 2000, &err);
    }
    if (depths.redis && queue_depths_read(depths.redis, &depths.settings->keys, &d) == 0) {
        metric_set(depths.events, NULL, (double)d.events);
        metric_set(depths.pending, NULL, (double)d.pending);
        metric_set(depths.retry, NULL, (double)d.retry);
        metric_set(depths.dead, NULL, (double)d.dead);
    }
    pthread_mutex_unlock(&depths.lock);
}

static int register_depth_gauges(const worker_settings *s)
{
    depths.settings = s;
    depths.events = metrics_register(METRIC_GAUGE, "calllog_stream_depth",
                                     "Entries on the events stream not yet finished.", NULL, 0);
    depths.pending =
        metrics_register(METRIC_GAUGE, "calllog_stream_pending",
                         "Entries delivered to a consumer, not acknowledged.", NULL, 0);
    depths.retry = metrics_register(METRIC_GAUGE, "calllog_retry_depth",
                                    "Entries waiting on the retry set.", NULL, 0);
    depths.dead = metrics_register(METRIC_GAUGE, "calllog_dead_depth",
                                   "Entries on the dead stream.", NULL, 0);
    if (!depths.events || !depths.pending || !depths.retry || !depths.dead)
        return -1;
    return metrics_add_collect_hook(collect_depths, NULL);
}

/* Unescapes "\n" and "\t" in a template given through the environment. */
static char *unescape_template(const char *in)
{
    char *out = malloc(strlen(in) + 1), *o = out;
    for (const char *p = in; out && *p; p++) {
        if (p[0] == '\\' && (p[1] == 'n' || p[1] == 't')) {
            *o++ = p[1] == 'n' ? '\n' : '\t';
            p++;
        } else {
            *o++ = *p;
        }
    }
    if (out)
        *o = '\0';
    return out;
}

/* Time zone and template (with recording links when RECORDING_LINK_SECRET is set): all
 * validated before anything else starts. */
static note_template *load_template(const worker_settings *s, calllog_error *err)
{
    if (timing_set_zone(s->timezone, err) != CALLLOG_OK)
        return NULL;
    char *text = s->note_template ? unescape_template(s->note_template) : NULL;
    note_template *t = note_template_compile(text, err);
    free(text);
    if (t && s->recording_link_secret &&
        note_template_set_recording_links(t, s->public_base_url, s->recording_link_secret,
                                          s->recording_link_ttl_days) != CALLLOG_OK) {
        error_set(err, CALLLOG_INVALID, "setting PUBLIC_BASE_URL is malformed: too long");
        note_template_free(t);
        return NULL;
    }
    return t;
}

/* Redis reachable and the consumer group present; Postgres reachable and migrated. */
static int check_dependencies(const worker_settings *s, calllog_error *err)
{
    redisContext *c = redis_open(&s->redis, (int)s->redis_timeout_ms, err);
    int rc = c ? queue_ensure_group(c, &s->keys, err) : -1;
    if (c)
        redisFree(c);
    if (rc != 0)
        return -1;
    ledger *l = ledger_open(s->database_url, err);
    rc = l ? ledger_check_schema(l) : -1;
    if (rc != 0 && l)
        error_copy(err, ledger_error(l));
    if (rc == 0 && s->followup.enabled)
        rc = followup_check_schema(l, err);
    ledger_close(l);
    return rc;
}

/* What is left of the drain budget for the alerts still queued, once the consumers and the
 * reconciler are joined: the shutdown watchdog ends the process when the budget runs out. */
static long alert_drain_budget(const worker_settings *s, long long stop_started_ms)
{
    long long left =
        s->drain_timeout_ms - (timing_mono_ms() - stop_started_ms) - ALERT_DRAIN_MARGIN_MS;
    if (left > ALERT_DRAIN_MAX_MS)
        return ALERT_DRAIN_MAX_MS;
    return left > 0 ? (long)left : 0;
}

static int run(const worker_settings *s, note_template *tpl)
{
    shutdown_block_signals();
    calllog_error err;
    if (alert_start(s, &err) != CALLLOG_OK) {
        log_error("cannot start", LF_S("error", err.message));
        return 1;
    }
    metrics_server *ms = metrics_server_start(s->metrics_host, s->metrics_port, &err);
    if (!ms) {
        log_error("cannot start", LF_S("error", err.message));
        alert_stop(0);
        return 1;
    }
    consumers *g = consumers_start(s, tpl);
    int reconcile_failed = 0, index_failed = 0;
    reconciler *rec = g ? reconciler_start(s, &reconcile_failed) : NULL;
    phone_index_sync *idx = g ? phone_index_sync_start(s, &index_failed) : NULL;
    if (!g || reconcile_failed || index_failed) {
        log_error("cannot start",
                  LF_S("error", !g                 ? "consumer threads did not start"
                                : reconcile_failed ? "reconciler thread did not start"
                                                   : "phone index thread did not start"));
        shutdown_request();
        phone_index_sync_stop(idx);
        reconciler_stop(rec);
        consumers_join(g);
        alert_stop(0);
        metrics_server_stop(ms);
        return 1;
    }
    if (s->lease_ms <= s->rd.timeout_ms)
        log_warn("WORKER_LEASE_MS is not above RDSTATION_TIMEOUT_MS: a POST could outlast the "
                 "lease if Postgres is unreachable meanwhile (docs/reliability.md)",
                 LF_I("lease_ms", s->lease_ms), LF_I("rd_timeout_ms", s->rd.timeout_ms));
    log_info("started", LF_S("consumer", s->consumer), LF_I("concurrency", s->concurrency),
             LF_S("stream", s->keys.events),
             LF_S("rdstation_api", s->rd.api == RD_API_V1 ? "v1" : "v2"), LF_I("enrich", s->enrich),
             LF_I("rate_per_minute", s->rate_per_minute), LF_I("lease_ms", s->lease_ms),
             LF_I("reconcile_interval_ms", s->reconcile_interval_ms),
             LF_I("phone_index", idx != NULL),
             LF_I("recording_links", s->recording_link_secret != NULL));
    shutdown_wait(s->drain_timeout_ms);
    long long stop_started = timing_mono_ms();
    phone_index_sync_stop(idx);
    reconciler_stop(rec);
    consumers_join(g);
    alert_stop(alert_drain_budget(s, stop_started)); /* after every thread that alerts */
    metrics_server_stop(ms);
    log_info("stopped", LF_END);
    return 0;
}

int main(int argc, char **argv)
{
    int status = cli_start(argc, argv, "calllog-worker", usage, NULL, NULL);
    if (status != CLI_RUN)
        return status;
    static worker_settings s;
    calllog_error cerr;
    calllog_error err;
    if (worker_settings_load(&s, &cerr) != 0) {
        cli_fail("calllog-worker", cerr.message);
        return 2;
    }
    worker_settings_warn_plaintext(&s);
    note_template *tpl = load_template(&s, &err);
    if (!tpl) {
        cli_fail("calllog-worker", err.message);
        return 2;
    }
    int rc = 1;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || processor_metrics_init() != 0 ||
        register_depth_gauges(&s) != 0) {
        cli_fail("calllog-worker", "cannot initialise libcurl or metrics");
    } else if (check_dependencies(&s, &err) != 0) {
        cli_fail("calllog-worker", err.message);
    } else if ((status = worker_settings_resolve_users(&s, &cerr)) != 0) {
        cli_fail("calllog-worker", cerr.message);
        rc = status == -1 ? 2 : 1;
    } else {
        rc = run(&s, tpl);
    }
    note_template_free(tpl);
    curl_global_cleanup();
    metrics_reset();
    return rc;
}
