/* retry_policy — which failures are worth retrying, and how long to wait before the next try.
 *
 * Design §3 "Retries": transient = network error, timeout, 5xx, 429, 408; permanent =
 * other 4xx (a v2 401 first gets one OAuth refresh); exponential backoff with full jitter,
 * capped; Retry-After honoured; exhausted attempts go to the dead stream.
 *
 * Classification table (retry_classify):
 *   curl code != 0 (DNS, connect, TLS, timeout, reset, …)  RETRY_TRANSIENT
 *   HTTP 2xx                                               RETRY_OK
 *   HTTP 401                                               RETRY_AUTH
 *   HTTP 408, 429, 5xx                                     RETRY_TRANSIENT
 *   HTTP 0 with curl code 0 (no answer at all)             RETRY_TRANSIENT
 *   other 4xx, 1xx, 3xx (redirects are not followed), ≥600 RETRY_PERMANENT
 *
 * Backoff (retry_delay_ms), attempt n = 1 for the first failed try:
 *   cap   = min(max_delay_ms, base_ms * 2^(n-1))        (no overflow for any n)
 *   delay = random % (cap + 1)                           ("full jitter")
 *   with a Retry-After of r ms: delay = max(delay, min(r, RETRY_AFTER_MAX_MS)),
 *   which may exceed max_delay_ms: the server said when it will take us back.
 *
 * Defaults, overridden by the environment variables of the same names
 * (docs/configuration.md): RETRY_MAX_ATTEMPTS 8, RETRY_BASE_MS 1000,
 * RETRY_MAX_DELAY_MS 300000 (5 minutes).
 *
 * Pure functions apart from retry_random(), which reads the kernel's random source;
 * no global state; safe from any thread. */
#ifndef CALLLOG_RETRY_POLICY_H
#define CALLLOG_RETRY_POLICY_H

#include <stdint.h>
#include <time.h>

#define RETRY_DEFAULT_MAX_ATTEMPTS 8
#define RETRY_DEFAULT_BASE_MS 1000L
#define RETRY_DEFAULT_MAX_DELAY_MS 300000L
/* Longest wait a Retry-After can impose (1 hour). */
#define RETRY_AFTER_MAX_MS 3600000L
/* Largest value retry_parse_retry_after returns (1 day); longer ones are clamped. */
#define RETRY_AFTER_PARSE_MAX_MS 86400000L

/* What to do after one HTTP exchange. */
typedef enum retry_class {
    RETRY_OK,        /* success */
    RETRY_TRANSIENT, /* try again later */
    RETRY_AUTH,      /* 401: refresh the OAuth token once (RD v2), then retry */
    RETRY_PERMANENT  /* retrying cannot help: dead stream */
} retry_class;

/* The backoff policy. */
typedef struct retry_settings {
    int max_attempts;  /* total tries, the first one included; >= 1 */
    long base_ms;      /* cap of the first retry's delay; 0 retries at once */
    long max_delay_ms; /* cap of any computed delay */
} retry_settings;

/* Initializer with the defaults. */
#define RETRY_SETTINGS_DEFAULT                                                                     \
    {                                                                                              \
        RETRY_DEFAULT_MAX_ATTEMPTS, RETRY_DEFAULT_BASE_MS, RETRY_DEFAULT_MAX_DELAY_MS              \
    }

/* Classifies an outcome: `curl_code` is the CURLcode (0 = the exchange completed) and
 * `http_status` the response code. See the table above. */
retry_class retry_classify(int curl_code, long http_status);

/* The name of a class ("ok", "transient", "auth", "permanent"), for logs and metrics. */
const char *retry_class_name(retry_class c);

/* Milliseconds to wait before the try after failed attempt `attempt` (1-based; values
 * below 1 count as 1). `retry_after_ms` > 0 is the server's Retry-After (see
 * retry_parse_retry_after), <= 0 when none. `random` is any 64-bit random value
 * (retry_random() in production, fixed values in tests). `s` NULL means the defaults;
 * negative base/max count as 0. Never negative. */
long retry_delay_ms(const retry_settings *s, int attempt, long retry_after_ms, uint64_t random);

/* A 64-bit random value from getrandom(2) (non-blocking); falls back to mixing the clocks
 * and a stack address when the kernel pool is not ready yet. Thread-safe, no state. */
uint64_t retry_random(void);

/* Parses a Retry-After header value: delta-seconds ("120") or an HTTP-date (IMF-fixdate
 * "Sun, 06 Nov 1994 08:49:37 GMT", RFC 850 "Sunday, 06-Nov-94 08:49:37 GMT", or asctime
 * "Sun Nov  6 08:49:37 1994"), relative to `now`. Returns milliseconds (0 for a date in
 * the past, at most RETRY_AFTER_PARSE_MAX_MS), or -1 when absent, empty or malformed. */
long retry_parse_retry_after(const char *header_value, time_t now);

/* 1 when `attempt` tries (1-based count of tries made) have used up the budget of `s`
 * (NULL: defaults; max_attempts < 1 counts as 1), 0 when another try is allowed. */
int retry_exhausted(const retry_settings *s, int attempt);

#endif
