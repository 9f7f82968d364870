/* settings — calllog-worker's configuration, read and validated once at start-up.
 *
 * Everything the worker needs from the environment (design §2 and
 * docs/configuration.md) lands here; a missing or malformed setting refuses the start
 * with one line naming it. Strings point into the environment, or into config's copies of
 * *_FILE secrets (process lifetime). */
#ifndef CALLLOG_WORKER_SETTINGS_H
#define CALLLOG_WORKER_SETTINGS_H

#include <stddef.h>

#include "common/config.h"
#include "common/keys.h"
#include "common/redis_client.h"
#include "worker/followup.h"
#include "worker/rdstation.h"
#include "worker/retry_policy.h"
#include "worker/twilio_rest.h"

typedef enum { WORKER_MODE_NOTE = 0, WORKER_MODE_TASK, WORKER_MODE_BOTH } worker_delivery_mode;
typedef enum { UNKNOWN_SKIP = 0, UNKNOWN_DEAD, UNKNOWN_CREATE } unknown_policy;

#define USER_MAP_MAX 64
#define RECONCILE_NUMBERS_MAX 64

/* One Twilio number → the RD user who owns that line, given in RDSTATION_USER_MAP by id
 * or by e-mail; an e-mail's id is filled in at start (worker_settings_resolve_users). */
typedef struct user_route {
    char number[32];
    char user_id[64]; /* "" until an e-mail is resolved */
    char email[128];  /* "" when the map gave an id */
} user_route;

typedef struct worker_settings {
    redis_target redis;
    calllog_keys keys;
    const char *database_url;
    char metrics_host[256];
    int metrics_port;
    char consumer[128]; /* unique per process */
    long concurrency, block_ms, claim_idle_ms, lease_ms, max_deliveries, drain_timeout_ms;
    long redis_timeout_ms;
    int enrich;
    twilio_settings twilio;
    rd_settings rd;
    const char *rd_user_id; /* default author of notes; NULL: the deal's owner */
    user_route user_map[USER_MAP_MAX];
    size_t user_map_len;
    long rate_per_minute, rate_burst;
    long sync_max_share; /* percent of the limit the phone index's sync may use */
    int phone_index;     /* keep the phone index (phone_index.h), refreshed every cache_ttl_s */
    long unknown_outcome_delay_ms; /* wait before the marker search after a lost answer */
    worker_delivery_mode mode;
    unknown_policy unknown;
    const char *create_stage_id;
    const char *note_template; /* NULL: the built-in pt-BR template */
    const char *timezone;
    followup_settings followup; /* CALLLOG_MISSED_CALL_TASK, _DUE_MIN, CALLLOG_BUSINESS_HOURS */
    retry_settings retry;
    long cache_ttl_s, negative_cache_ttl_s;
    const char *alert_webhook_url;
    long alert_window_s, alert_min_events, alert_failure_percent;
    /* Reconciliation against Twilio's Calls list (reconcile.h); interval 0 = off. */
    long reconcile_interval_ms, reconcile_grace_ms, reconcile_lookback_ms;
    long reconcile_overlap_ms, reconcile_max_call_ms, reconcile_lease_ms;
    char reconcile_numbers[RECONCILE_NUMBERS_MAX][32]; /* empty list: every call */
    size_t reconcile_numbers_len;
    /* Recording links in notes (common/recording_link.h); secret NULL = Twilio's URL. */
    const char *recording_link_secret; /* RECORDING_LINK_SECRET */
    char public_base_url[1025];        /* PUBLIC_BASE_URL (needed with the secret), no '/' */
    long recording_link_ttl_days;      /* RECORDING_LINK_TTL_DAYS, 0 = links never expire */
} worker_settings;

/* Loads and validates every setting. Returns 0, or -1 with `err` filled. */
int worker_settings_load(worker_settings *s, calllog_error *err);

/* Logs one warning for each setting whose transport is plain text outside this host:
 * an http:// RDSTATION_API_BASE_URL, RDSTATION_OAUTH_URL (v2), TWILIO_API_BASE_URL (when
 * used) or ALERT_WEBHOOK_URL to a host that is not loopback (127.0.0.0/8, ::1,
 * localhost), and a DATABASE_URL to a host that is not local (loopback or a Unix socket)
 * without sslmode=require, verify-ca or verify-full. Each names the setting and host,
 * never the URL's path, query or user info. Call once at start-up, after the load. */
void worker_settings_warn_plaintext(const worker_settings *s);

/* Resolves the e-mails in RDSTATION_USER_MAP to RD user ids through GET /users
 * (rd_list_users, matched case-insensitively), once, before the worker's threads start;
 * does nothing when the map holds ids only. Opens its own Redis connection (v2 tokens)
 * and RD client; the request skips the shared rate limiter (one or a few at start).
 * Returns 0; -1 with `err` naming RDSTATION_USER_MAP and the e-mail no RD user has; or
 * -2 with `err` saying why the users could not be listed (Redis or RD unreachable). */
int worker_settings_resolve_users(worker_settings *s, calllog_error *err);

/* The salesperson RDSTATION_USER_MAP maps Twilio number `our_number` to, or NULL. */
const char *worker_settings_mapped_user(const worker_settings *s, const char *our_number);

/* The RD user for a call handled by Twilio number `our_number` (the mapped salesperson,
 * else RDSTATION_USER_ID; NULL without a default: the caller writes as the deal's owner). */
const char *worker_settings_user_for(const worker_settings *s, const char *our_number);

#endif
