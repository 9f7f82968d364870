/* settings — loads calllog-ingest's settings from the environment (see settings.h). */
#include "ingest/settings.h"

#include <stdio.h>
#include <string.h>

/* PUBLIC_BASE_URL: http(s)://host[:port][/prefix], no query, no fragment. The trailing
 * slash is dropped so that base + "/twilio/log-call" is the URL Twilio signs. */
static int load_public_base_url(ingest_settings *s, calllog_error *err)
{
    static char base[1024];
    const char *v;
    if (config_require("PUBLIC_BASE_URL", &v, err) != 0)
        return -1;
    if (strncmp(v, "https://", 8) != 0 && strncmp(v, "http://", 7) != 0)
        return config_fail(err, "PUBLIC_BASE_URL", "expected http(s)://host[:port]");
    if (strpbrk(v, "?# ") || strlen(v) >= sizeof base)
        return config_fail(err, "PUBLIC_BASE_URL",
                           "must be scheme://host[:port] without query or fragment");
    snprintf(base, sizeof base, "%s", v);
    size_t n = strlen(base);
    while (n > 0 && base[n - 1] == '/')
        base[--n] = '\0';
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

int ingest_settings_load(ingest_settings *s, calllog_error *err)
{
    static const char *const required[] = {"PUBLIC_BASE_URL", "TWILIO_AUTH_TOKEN", NULL};
    memset(s, 0, sizeof *s);
    if (config_require_all(required, err) || load_redis(s, err) || load_public_base_url(s, err) ||
        load_tokens(s, err) || load_limits(s, err))
        return -1;
    if (config_listen("INGEST_LISTEN", "0.0.0.0:8080", s->listen_host, sizeof s->listen_host,
                      &s->listen_port, err) != 0)
        return -1;
    if (config_listen("METRICS_LISTEN", "127.0.0.1:9101", s->metrics_host, sizeof s->metrics_host,
                      &s->metrics_port, err) != 0)
        return -1;
    return config_check(err); /* a *_FILE behind an optional setting, e.g. REDIS_URL */
}
