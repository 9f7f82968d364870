/* retry_policy — which failures are worth retrying, and how long to wait before the next try.
 *
 * Full jitter (delay uniformly drawn in [0, cap]) spreads the retries of many workers that
 * failed together, e.g. during an RD Station outage, instead of having them return in
 * lock-step. The random value is a parameter so the arithmetic is testable. Retry-After
 * itself is read by common/timing (timing_parse_retry_after). See retry_policy.h. */
#include "worker/retry_policy.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>

/* The backoff cap for `attempt`: min(max, base * 2^(attempt-1)) without overflow. */
static long retry_cap_ms(long base, long max, int attempt)
{
    long cap = base;

    if (base <= 0 || max <= 0)
        return 0;
    for (int i = 1; i < attempt && cap < max; i++) {
        if (cap > max / 2) {
            cap = max;
            break;
        }
        cap *= 2;
    }
    return cap < max ? cap : max;
}

/* Computes the delay before the next try; see retry_policy.h. */
long retry_delay_ms(const retry_settings *s, int attempt, long retry_after_ms, uint64_t random)
{
    const retry_settings def = RETRY_SETTINGS_DEFAULT;
    long cap, delay;

    if (s == NULL)
        s = &def;
    if (attempt < 1)
        attempt = 1;
    cap = retry_cap_ms(s->base_ms, s->max_delay_ms, attempt);
    delay = (long)(random % ((uint64_t)cap + 1));
    if (retry_after_ms > 0) {
        long ra = retry_after_ms < RETRY_AFTER_MAX_MS ? retry_after_ms : RETRY_AFTER_MAX_MS;
        if (delay < ra)
            delay = ra;
    }
    return delay;
}

/* splitmix64's finalizer: spreads the bits of a weak seed. */
static uint64_t retry_mix(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Returns a random 64-bit value; see retry_policy.h. */
uint64_t retry_random(void)
{
    uint64_t v = 0;
    struct timespec a = {0}, b = {0};
    ssize_t n;

    do {
        n = getrandom(&v, sizeof v, GRND_NONBLOCK);
    } while (n < 0 && errno == EINTR);
    if (n == (ssize_t)sizeof v)
        return v;
    clock_gettime(CLOCK_REALTIME, &a);
    clock_gettime(CLOCK_MONOTONIC, &b);
    v = (uint64_t)a.tv_nsec ^ ((uint64_t)a.tv_sec << 30) ^ (uint64_t)(uintptr_t)&v;
    return retry_mix(v ^ retry_mix((uint64_t)b.tv_nsec + (uint64_t)b.tv_sec));
}

/* Says whether the attempt budget is used up; see retry_policy.h. */
int retry_exhausted(const retry_settings *s, int attempt)
{
    int max = s != NULL ? s->max_attempts : RETRY_DEFAULT_MAX_ATTEMPTS;

    if (max < 1)
        max = 1;
    return attempt >= max;
}
