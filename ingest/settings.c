/* settings — loads calllog-ingest's settings from the environment (see settings.h). */
#include "ingest/settings.h"

#include <stdio.h>
#include <string.h>

#include "common/recording_link.h"

/* PUBLIC_BASE_URL: http(s)://host[:port][/prefix], no query, no fragment. The trailing
 * slash is dropped so that base + "/twilio/log-call" is the URL Twilio signs. */
static int load_public_base_url(ingest_settings *s, calllog_error *err)
{
    static char base[1024];
    if (config_base_url("PUBLIC_BASE_URL", base, sizeof base, err) != 0)
        return -1;
    s->public_base_url = base;
    return 0;
}

/* Redis (the shared loader), this program's Redis timeout and the replica WAIT. The
 * WAIT must end before the command timeout, or hiredis would drop the connection. */
static int load_redis(ingest_settings *s, calllog_error *err)
{
    if (redis_settings_load(&s->redis, &s->keys, err) != 0 ||
        config_long("INGEST_REDIS_TIMEOUT_MS", 1000, 10, 60000, &s->redis_timeout_ms, err) ||
        config_long("REDIS_MIN_REPLICAS_ACK", 0, 0, 16, &s->min_replicas_ack, err) ||
        config_long("REDIS_WAIT_TIMEOUT_MS", 500, 1, 60000, &s->wait_timeout_ms, err))
        return -1;
    if (s->min_replicas_ack > 0 && s->wait_timeout_ms >= s->redis_timeout_ms)
        return config_fail(err, "REDIS_WAIT_TIMEOUT_MS", "must be below INGEST_REDIS_TIMEOUT_MS");
    return 0;
}

static int load_tokens(ingest_settings *s, calllog_error *err)
{
    if (config_require("TWILIO_AUTH_TOKEN", &s->tokens[0], err) != 0)
        return -1;
    s->ntokens = 1;
    const char *secondary = config_str("TWILIO_AUTH_TOKEN_SECONDARY", NULL);
    if (secondary)
        s->tokens[s->ntokens++] = secondary;
    return 0;
}

static int load_limits(ingest_settings *s, calllog_error *err)
{
    if (config_long("INGEST_MAX_BODY_BYTES", 65536, 1024, 16 << 20, &s->max_body_bytes, err) ||
        config_long("INGEST_MAX_PARAMS", 512, 16, 100000, &s->max_params, err) ||
        config_long("INGEST_THREADS", 512, 1, 4096, &s->threads, err) ||
        config_long("INGEST_REQUEST_TIMEOUT_MS", 5000, 100, 60000, &s->request_timeout_ms, err) ||
        config_long("INGEST_MAX_PER_ADDRESS", 32, 0, 100000, &s->max_per_address, err) ||
        config_long("INGEST_DRAIN_TIMEOUT_MS", 10000, 100, 600000, &s->drain_timeout_ms, err))
        return -1;
    s->spool_dir = config_str("INGEST_SPOOL_DIR", "spool");
    return config_long("INGEST_SPOOL_MAX_BYTES", 1L << 30, 1 << 20, 1L << 40, &s->spool_max_bytes,
                       err);
}

/* Recording links: with RECORDING_LINK_SECRET set the ingest serves GET /recordings/...
 * and needs Twilio REST credentials (an API key, or the account SID with the
 * TWILIO_AUTH_TOKEN the webhooks are already signed with). */
static int load_recordings(ingest_settings *s, calllog_error *err)
{
    int have = twilio_settings_load(&s->twilio);
    s->twilio.timeout_ms = 5000;
    s->twilio.max_tries = 1;
    if (config_long("RECORDINGS_MAX_CONCURRENT", 4, 1, 1024, &s->recordings_max_concurrent, err) ||
        config_long("RECORDINGS_TIMEOUT_MS", 600000, 1000, 3600000, &s->recordings_timeout_ms, err))
        return -1;
    s->recording_link_secret = config_str("RECORDING_LINK_SECRET", NULL);
    if (!s->recording_link_secret)
        return 0;
    if (strlen(s->recording_link_secret) < RECORDING_LINK_SECRET_MIN)
        return config_fail(err, "RECORDING_LINK_SECRET",
                           "at least 16 characters (e.g. openssl rand -hex 32)");
    if (!have)
        return config_fail(err, "TWILIO_ACCOUNT_SID",
                           "required with RECORDING_LINK_SECRET (the recordings are fetched "
                           "from Twilio's REST API)");
    if (s->recordings_max_concurrent >= s->threads)
        return config_fail(err, "RECORDINGS_MAX_CONCURRENT",
                           "must be below INGEST_THREADS, or media could take every thread");
    return 0;
}

int ingest_settings_load(ingest_settings *s, calllog_error *err)
{
    static const char *const required[] = {"PUBLIC_BASE_URL", "TWILIO_AUTH_TOKEN", NULL};
    memset(s, 0, sizeof *s);
    if (config_require_all(required, err) || load_redis(s, err) || load_public_base_url(s, err) ||
        load_tokens(s, err) || load_limits(s, err) || load_recordings(s, err))
        return -1;
    if (config_listen("INGEST_LISTEN", "0.0.0.0:8080", s->listen_host, sizeof s->listen_host,
                      &s->listen_port, err) != 0)
        return -1;
    if (config_listen("METRICS_LISTEN", "127.0.0.1:9101", s->metrics_host, sizeof s->metrics_host,
                      &s->metrics_port, err) != 0)
        return -1;
    return config_check(err); /* a *_FILE behind an optional setting, e.g. REDIS_URL */
}
