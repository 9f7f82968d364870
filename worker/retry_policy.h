/* retry_policy — how long to wait before the next try, and when to stop trying.
 *
 * Design §3 "Retries": which failures are transient is decided once, by error_classify
 * (common/error.h: network error, timeout, 5xx, 429, 408, no usable answer; a v2 401 first
 * gets one OAuth refresh inside the RD client); this module turns a transient failure into
 * a delay: exponential backoff with full jitter, capped, Retry-After honoured; exhausted
 * attempts go to the dead stream.
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

/* Milliseconds to wait before the try after failed attempt `attempt` (1-based; values
 * below 1 count as 1). `retry_after_ms` > 0 is the server's Retry-After (see
 * timing_parse_retry_after), <= 0 when none. `random` is any 64-bit random value
 * (retry_random() in production, fixed values in tests). `s` NULL means the defaults;
 * negative base/max count as 0. Never negative. */
long retry_delay_ms(const retry_settings *s, int attempt, long retry_after_ms, uint64_t random);

/* A 64-bit random value from getrandom(2) (non-blocking); falls back to mixing the clocks
 * and a stack address when the kernel pool is not ready yet. Thread-safe, no state. */
uint64_t retry_random(void);

/* 1 when `attempt` tries (1-based count of tries made) have used up the budget of `s`
 * (NULL: defaults; max_attempts < 1 counts as 1), 0 when another try is allowed. */
int retry_exhausted(const retry_settings *s, int attempt);

#endif
