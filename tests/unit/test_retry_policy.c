/* test_retry_policy — unit tests for worker/retry_policy: the full-jitter backoff (bounds,
 * the cap, no overflow for huge attempts, Retry-After as a floor clamped at an hour) and
 * the attempt budget. Random values are passed in, so nothing here is timed. (Which
 * failures are transient: test_error; Retry-After parsing: test_timing.) */
#include <criterion/criterion.h>
#include <limits.h>
#include <stdint.h>

#include "worker/retry_policy.h"

Test(retry_delay, full_jitter_bounds_per_attempt)
{
    const retry_settings s = RETRY_SETTINGS_DEFAULT;
    const long caps[] = {1000,  2000,   4000,   8000,   16000, 32000,
                         64000, 128000, 256000, 300000, 300000};

    for (int a = 1; a <= 11; a++) {
        long cap = caps[a - 1];
        /* random == cap reaches the cap, cap + 1 wraps to 0, 0 gives 0. */
        cr_expect_eq(retry_delay_ms(&s, a, 0, (uint64_t)cap), cap, "attempt %d", a);
        cr_expect_eq(retry_delay_ms(&s, a, 0, (uint64_t)cap + 1), 0, "attempt %d", a);
        cr_expect_eq(retry_delay_ms(&s, a, 0, 0), 0, "attempt %d", a);
        cr_expect_eq(retry_delay_ms(&s, a, 0, (uint64_t)cap / 2), cap / 2, "attempt %d", a);
    }
}

Test(retry_delay, stays_within_cap_for_any_random)
{
    const retry_settings s = RETRY_SETTINGS_DEFAULT;
    uint64_t x = 0x243F6A8885A308D3ULL;

    for (int i = 0; i < 10000; i++) {
        long d;
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        d = retry_delay_ms(&s, 1 + i % 20, 0, x);
        cr_assert(d >= 0 && d <= RETRY_DEFAULT_MAX_DELAY_MS, "delay %ld", d);
        if (i % 20 == 0)
            cr_assert(d <= RETRY_DEFAULT_BASE_MS, "first retry delay %ld", d);
    }
    cr_expect_eq(retry_delay_ms(&s, 1, 0, UINT64_MAX), (long)(UINT64_MAX % 1001));
}

Test(retry_delay, huge_attempts_do_not_overflow)
{
    const retry_settings s = RETRY_SETTINGS_DEFAULT;
    const retry_settings big = {8, LONG_MAX / 4, LONG_MAX};

    cr_expect_eq(retry_delay_ms(&s, 64, 0, 300000), 300000);
    cr_expect_eq(retry_delay_ms(&s, 1000, 0, 300000), 300000);
    cr_expect_eq(retry_delay_ms(&s, INT_MAX, 0, 300000), 300000);
    cr_expect_eq(retry_delay_ms(&s, INT_MAX, 0, 300001), 0);
    /* base * 2^(n-1) beyond LONG_MAX saturates at max_delay. */
    cr_expect_eq(retry_delay_ms(&big, 2, 0, (uint64_t)LONG_MAX / 2 - 1), LONG_MAX / 2 - 1);
    cr_expect_eq(retry_delay_ms(&big, 2, 0, (uint64_t)LONG_MAX / 2), 0);
    cr_expect_eq(retry_delay_ms(&big, 4, 0, (uint64_t)LONG_MAX), LONG_MAX);
    cr_expect_eq(retry_delay_ms(&big, INT_MAX, 0, (uint64_t)LONG_MAX), LONG_MAX);
}

Test(retry_delay, retry_after_is_a_floor_clamped_at_an_hour)
{
    const retry_settings s = {8, 1000, 5000};

    cr_expect_eq(retry_delay_ms(&s, 1, 30000, 0), 30000); /* above max_delay: honoured */
    cr_expect_eq(retry_delay_ms(&s, 1, 30000, 999), 30000);
    cr_expect_eq(retry_delay_ms(&s, 3, 100, 3000), 3000); /* jitter above Retry-After */
    cr_expect_eq(retry_delay_ms(&s, 3, 100, 0), 100);
    cr_expect_eq(retry_delay_ms(&s, 1, 7200000, 0), RETRY_AFTER_MAX_MS);
    cr_expect_eq(retry_delay_ms(&s, 1, 0, 1000), 1000); /* 0: no Retry-After */
    cr_expect_eq(retry_delay_ms(&s, 1, -1, 1000), 1000);
}

Test(retry_delay, odd_settings_and_attempts)
{
    const retry_settings zero = {8, 0, 300000};
    const retry_settings neg = {8, -5, -5};
    const retry_settings low_max = {8, 1000, 300};
    const retry_settings s = RETRY_SETTINGS_DEFAULT;

    cr_expect_eq(retry_delay_ms(&zero, 5, 0, 12345), 0);
    cr_expect_eq(retry_delay_ms(&zero, 5, 2000, 12345), 2000);
    cr_expect_eq(retry_delay_ms(&neg, 5, 0, 12345), 0);
    cr_expect_eq(retry_delay_ms(&low_max, 1, 0, 300), 300);
    cr_expect_eq(retry_delay_ms(&low_max, 1, 0, 301), 0);
    /* attempts below 1 count as the first */
    cr_expect_eq(retry_delay_ms(&s, 0, 0, 1000), 1000);
    cr_expect_eq(retry_delay_ms(&s, -3, 0, 1001), 0);
    /* NULL: defaults */
    cr_expect_eq(retry_delay_ms(NULL, 10, 0, 300000), 300000);
    cr_expect_eq(retry_delay_ms(NULL, 1, 0, 1001), 0);
}

Test(retry_random, values_vary)
{
    uint64_t a = retry_random(), b = retry_random(), c = retry_random();

    /* Equal 64-bit draws have probability 2^-64: a failure means a broken source. */
    cr_expect(a != b || b != c);
}

Test(retry_exhausted, budget)
{
    const retry_settings s = RETRY_SETTINGS_DEFAULT;
    const retry_settings one = {1, 1000, 300000};
    const retry_settings none = {0, 1000, 300000};

    cr_expect_eq(s.max_attempts, 8);
    cr_expect_eq(s.base_ms, 1000);
    cr_expect_eq(s.max_delay_ms, 300000);
    for (int a = 1; a < 8; a++)
        cr_expect_eq(retry_exhausted(&s, a), 0, "attempt %d", a);
    cr_expect_eq(retry_exhausted(&s, 8), 1);
    cr_expect_eq(retry_exhausted(&s, 9), 1);
    cr_expect_eq(retry_exhausted(&one, 1), 1);
    cr_expect_eq(retry_exhausted(&none, 1), 1);
    cr_expect_eq(retry_exhausted(NULL, 7), 0);
    cr_expect_eq(retry_exhausted(NULL, 8), 1);
}
