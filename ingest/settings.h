/* settings — calllog-ingest's configuration, read once at start-up (design §2).
 *
 * Every field is validated here so that the program refuses to start with one line
 * naming the missing or malformed setting, and nothing later has to re-check. */
#ifndef CALLLOG_INGEST_SETTINGS_H
#define CALLLOG_INGEST_SETTINGS_H

#include "common/config.h"
#include "common/keys.h"
#include "common/redis_client.h"
#include "common/twilio_api.h"

typedef struct ingest_settings {
    redis_target redis;
    calllog_keys keys;
    char listen_host[256];
    int listen_port;
    char metrics_host[256];
    int metrics_port;
    const char *public_base_url; /* without a trailing slash */
    const char *tokens[2];       /* primary, then secondary when set */
    size_t ntokens;
    const char *spool_dir;
    long spool_max_bytes;
    long max_body_bytes;
    long max_params;
    long threads;
    long request_timeout_ms; /* a whole request: headers, then the body */
    long max_per_address;    /* requests at once from one remote address; 0 = no cap */
    long redis_timeout_ms;
    long min_replicas_ack; /* REDIS_MIN_REPLICAS_ACK: WAIT for this many replicas, 0 = no WAIT */
    long wait_timeout_ms;  /* REDIS_WAIT_TIMEOUT_MS: how long WAIT may block */
    long drain_timeout_ms;
    /* Recording links (GET /recordings/<CallSid>, ingest/recordings.h); off without a secret. */
    const char *recording_link_secret; /* RECORDING_LINK_SECRET, NULL = off */
    twilio_settings twilio;            /* REST credentials the recordings are fetched with */
    long recordings_max_concurrent;    /* RECORDINGS_MAX_CONCURRENT: media requests at once */
    long recordings_timeout_ms;        /* RECORDINGS_TIMEOUT_MS: one whole media transfer */
} ingest_settings;

/* Loads and validates every setting from the environment. Strings point into the
 * environment (valid for the process lifetime). Returns 0, or -1 with `err` filled. */
int ingest_settings_load(ingest_settings *s, calllog_error *err);

#endif
