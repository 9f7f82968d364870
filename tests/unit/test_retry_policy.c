/* test_retry_policy — unit tests for worker/retry_policy: the classification table, the
 * full-jitter backoff (bounds, the cap, no overflow for huge attempts, Retry-After as a
 * floor clamped at an hour), Retry-After parsing in delta-seconds and all three HTTP-date
 * forms, and the attempt budget. Random values are passed in, so nothing here is timed. */
#include <criterion/criterion.h>
#include <limits.h>
#include <stdint.h>

#include "retry_policy.h"

/* Sun, 06 Nov 1994 08:49:37 GMT — RFC 9110's example date. */
#define NOW_1994 ((time_t)784111777)

Test(retry_classify, table)
{
    static const struct {
        int curl;
        long status;
        retry_class want;
    } cases[] = {
        {6, 0, RETRY_TRANSIENT},    /* could not resolve host */
        {7, 0, RETRY_TRANSIENT},    /* could not connect */
        {28, 0, RETRY_TRANSIENT},   /* timeout */
        {35, 0, RETRY_TRANSIENT},   /* TLS handshake */
        {56, 0, RETRY_TRANSIENT},   /* connection reset while receiving */
        {28, 200, RETRY_TRANSIENT}, /* a curl error wins over a partial status */
        {0, 200, RETRY_OK},         {0, 201, RETRY_OK},        {0, 204, RETRY_OK},
        {0, 299, RETRY_OK},         {0, 401, RETRY_AUTH},      {0, 408, RETRY_TRANSIENT},
        {0, 429, RETRY_TRANSIENT},  {0, 500, RETRY_TRANSIENT}, {0, 502, RETRY_TRANSIENT},
        {0, 503, RETRY_TRANSIENT},  {0, 504, RETRY_TRANSIENT}, {0, 599, RETRY_TRANSIENT},
        {0, 0, RETRY_TRANSIENT},    {0, 400, RETRY_PERMANENT}, {0, 403, RETRY_PERMANENT},
        {0, 404, RETRY_PERMANENT},  {0, 409, RETRY_PERMANENT}, {0, 422, RETRY_PERMANENT},
        {0, 499, RETRY_PERMANENT},  {0, 100, RETRY_PERMANENT}, {0, 301, RETRY_PERMANENT},
        {0, 302, RETRY_PERMANENT},  {0, 600, RETRY_PERMANENT},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        cr_expect_eq(retry_classify(cases[i].curl, cases[i].status), cases[i].want,
                     "curl %d status %ld", cases[i].curl, cases[i].status);
}

Test(retry_classify, names)
{
    cr_expect_str_eq(retry_class_name(RETRY_OK), "ok");
    cr_expect_str_eq(retry_class_name(RETRY_TRANSIENT), "transient");
    cr_expect_str_eq(retry_class_name(RETRY_AUTH), "auth");
    cr_expect_str_eq(retry_class_name(RETRY_PERMANENT), "permanent");
}

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

Test(retry_after, delta_seconds)
{
    cr_expect_eq(retry_parse_retry_after("120", 0), 120000);
    cr_expect_eq(retry_parse_retry_after("0", 0), 0);
    cr_expect_eq(retry_parse_retry_after("  3 \t", 0), 3000);
    cr_expect_eq(retry_parse_retry_after("86400", 0), 86400000);
    cr_expect_eq(retry_parse_retry_after("86401", 0), RETRY_AFTER_PARSE_MAX_MS);
    cr_expect_eq(retry_parse_retry_after("99999999999999999999999", 0), RETRY_AFTER_PARSE_MAX_MS);
}

Test(retry_after, absent_or_malformed)
{
    const char *bad[] = {"",
                         "   ",
                         "-5",
                         "1.5",
                         "12abc",
                         "abc",
                         "+3",
                         "1 2",
                         "Sun, 06 Nov 1994 08:49:37 PST",   /* not GMT */
                         "Sun, 6 Nov 1994 08:49:37 GMT",    /* one-digit day */
                         "Sun, 06 Foo 1994 08:49:37 GMT",   /* month */
                         "Sun, 06 Nov 1994 25:00:00 GMT",   /* hour */
                         "Sun, 06 Nov 1994 08:61:00 GMT",   /* minute */
                         "Sun, 00 Nov 1994 08:49:37 GMT",   /* day 0 */
                         "Sun, 06 Nov 1994 08:49:37 GMT x", /* trailing garbage */
                         "Sun, 06 Nov 94 08:49:37 GMT",     /* two-digit year, IMF form */
                         "Sunday 06-Nov-94 08:49:37 GMT",   /* missing comma */
                         "Sun Nov 6 08:49:37 1994",         /* asctime needs 2-wide day */
                         "Sunday Nov  6 08:49:37 1994"};    /* asctime day name is 3 letters */

    cr_expect_eq(retry_parse_retry_after(NULL, NOW_1994), -1);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect_eq(retry_parse_retry_after(bad[i], NOW_1994), -1, "'%s'", bad[i]);
}

Test(retry_after, http_dates_in_three_forms)
{
    cr_expect_eq(retry_parse_retry_after("Sun, 06 Nov 1994 08:50:37 GMT", NOW_1994), 60000);
    cr_expect_eq(retry_parse_retry_after("Sunday, 06-Nov-94 08:50:37 GMT", NOW_1994), 60000);
    cr_expect_eq(retry_parse_retry_after("Sun Nov  6 08:50:37 1994", NOW_1994), 60000);
    cr_expect_eq(retry_parse_retry_after("Mon, 07 Nov 1994 08:49:37 GMT", NOW_1994), 86400000);
    cr_expect_eq(retry_parse_retry_after(" Sun, 06 Nov 1994 08:49:47 GMT ", NOW_1994), 10000);
}

Test(retry_after, past_and_far_dates)
{
    cr_expect_eq(retry_parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", NOW_1994), 0);
    cr_expect_eq(retry_parse_retry_after("Sat, 05 Nov 1994 08:49:37 GMT", NOW_1994), 0);
    cr_expect_eq(retry_parse_retry_after("Fri, 01 Jan 2100 00:00:00 GMT", NOW_1994),
                 RETRY_AFTER_PARSE_MAX_MS);
}

Test(retry_after, rfc850_two_digit_years)
{
    const time_t end_2025 = 1767225540; /* 2025-12-31 23:59:00 UTC */

    /* 26 → 2026, a minute ahead; 94 → 1994 (2094 is more than 50 years ahead), past. */
    cr_expect_eq(retry_parse_retry_after("Thursday, 01-Jan-26 00:00:00 GMT", end_2025), 60000);
    cr_expect_eq(retry_parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", end_2025), 0);
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
