/* test_timing — common/timing's text forms: RFC 3339 written and read back, RFC 2822 read
 * with its zone offset honoured (the bug of the strptime copy it replaced: "-0300" was
 * ignored, shifting every non-UTC timestamp), weekday optional, English months whatever
 * the locale, and refusals; the process time zone (timing_set_zone). Expected values were
 * computed with Python's datetime. */
#include <criterion/criterion.h>
#include <locale.h>
#include <string.h>

#include "common/timing.h"

#define T_MS 1795550400123LL /* 2026-11-24T20:00:00.123Z */

Test(timing_rfc3339, utc_with_milliseconds)
{
    char out[TIMING_RFC3339_LEN];
    timing_format_rfc3339(T_MS, out, sizeof out);
    cr_assert_str_eq(out, "2026-11-24T20:00:00.123Z");
    timing_format_rfc3339(0, out, sizeof out);
    cr_assert_str_eq(out, "1970-01-01T00:00:00.000Z");
    timing_format_rfc3339(951868799007LL, out, sizeof out); /* leap day, zero-padded ms */
    cr_assert_str_eq(out, "2000-02-29T23:59:59.007Z");
}

Test(timing_rfc3339, fits_25_bytes_and_never_writes_past)
{
    char out[25 + 8];
    memset(out, '#', sizeof out);
    timing_format_rfc3339(T_MS, out, 25);
    cr_assert_str_eq(out, "2026-11-24T20:00:00.123Z");
    for (size_t i = 25; i < sizeof out; i++)
        cr_assert_eq(out[i], '#', "wrote past the 25 bytes it was given");
}

Test(timing_rfc3339, reads_back_what_it_writes_and_offsets)
{
    char out[TIMING_RFC3339_LEN];
    timing_format_rfc3339(T_MS, out, sizeof out);
    cr_expect_eq(timing_parse_rfc3339_ms(out), T_MS);
    cr_expect_eq(timing_parse_rfc3339_ms("2026-11-24T20:00:00Z"), T_MS - 123);
    cr_expect_eq(timing_parse_rfc3339_ms("2026-11-24T17:00:00.123-03:00"), T_MS);
    cr_expect_eq(timing_parse_rfc3339_ms("2026-11-24T20:00:00.123456Z"), T_MS, "micros cut");
    cr_expect_eq(timing_parse_rfc3339_ms("2026-11-24 20:00:00Z"), 0);
    cr_expect_eq(timing_parse_rfc3339_ms("2026-11-24T20:00:00"), 0, "no zone: unreadable");
    cr_expect_eq(timing_parse_rfc3339_ms(NULL), 0);
}

Test(timing_rfc2822, honours_the_zone_offset)
{
    time_t utc = 1795550400; /* 2026-11-24T20:00:00Z */
    cr_expect_eq(timing_parse_rfc2822("Tue, 24 Nov 2026 20:00:00 +0000"), utc);
    cr_expect_eq(timing_parse_rfc2822("Tue, 24 Nov 2026 17:00:00 -0300"), utc);
    cr_expect_eq(timing_parse_rfc2822("Wed, 25 Nov 2026 01:30:00 +0530"), utc);
    cr_expect_eq(timing_parse_rfc2822("24 Nov 2026 20:00:00 GMT"), utc, "weekday optional");
    cr_expect_eq(timing_parse_rfc2822("Tue, 24 Nov 2026 20:00:00 UTC"), utc);
}

Test(timing_rfc2822, english_months_whatever_the_locale)
{
    const char *was = setlocale(LC_TIME, NULL);
    setlocale(LC_TIME, "pt_BR.UTF-8"); /* may be absent: then the C locale stays */
    cr_expect_eq(timing_parse_rfc2822("Tue, 24 Nov 2026 20:00:00 +0000"), 1795550400);
    setlocale(LC_TIME, was ? was : "C");
}

Test(timing_rfc2822, refusals)
{
    cr_expect_eq(timing_parse_rfc2822(NULL), 0);
    cr_expect_eq(timing_parse_rfc2822(""), 0);
    cr_expect_eq(timing_parse_rfc2822("Tue, 24 Foo 2026 20:00:00 +0000"), 0);
    cr_expect_eq(timing_parse_rfc2822("Tue, 24 Nov 2026 20:00:00 PST"), 0);
    cr_expect_eq(timing_parse_rfc2822("2026-11-24T20:00:00Z"), 0);
}

/* Sun, 06 Nov 1994 08:49:37 GMT — RFC 9110's example date. */
#define NOW_1994 ((time_t)784111777)

Test(retry_after, delta_seconds)
{
    cr_expect_eq(timing_parse_retry_after("120", 0), 120000);
    cr_expect_eq(timing_parse_retry_after("0", 0), 0);
    cr_expect_eq(timing_parse_retry_after("  3 \t", 0), 3000);
    cr_expect_eq(timing_parse_retry_after("86400", 0), 86400000);
    cr_expect_eq(timing_parse_retry_after("86401", 0), TIMING_RETRY_AFTER_MAX_MS);
    cr_expect_eq(timing_parse_retry_after("99999999999999999999999", 0), TIMING_RETRY_AFTER_MAX_MS);
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

    cr_expect_eq(timing_parse_retry_after(NULL, NOW_1994), -1);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect_eq(timing_parse_retry_after(bad[i], NOW_1994), -1, "'%s'", bad[i]);
}

Test(retry_after, http_dates_in_three_forms)
{
    cr_expect_eq(timing_parse_retry_after("Sun, 06 Nov 1994 08:50:37 GMT", NOW_1994), 60000);
    cr_expect_eq(timing_parse_retry_after("Sunday, 06-Nov-94 08:50:37 GMT", NOW_1994), 60000);
    cr_expect_eq(timing_parse_retry_after("Sun Nov  6 08:50:37 1994", NOW_1994), 60000);
    cr_expect_eq(timing_parse_retry_after("Mon, 07 Nov 1994 08:49:37 GMT", NOW_1994), 86400000);
    cr_expect_eq(timing_parse_retry_after(" Sun, 06 Nov 1994 08:49:47 GMT ", NOW_1994), 10000);
}

Test(retry_after, past_and_far_dates)
{
    cr_expect_eq(timing_parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", NOW_1994), 0);
    cr_expect_eq(timing_parse_retry_after("Sat, 05 Nov 1994 08:49:37 GMT", NOW_1994), 0);
    cr_expect_eq(timing_parse_retry_after("Fri, 01 Jan 2100 00:00:00 GMT", NOW_1994),
                 TIMING_RETRY_AFTER_MAX_MS);
}

Test(retry_after, rfc850_two_digit_years)
{
    const time_t end_2025 = 1767225540; /* 2025-12-31 23:59:00 UTC */

    /* 26 → 2026, a minute ahead; 94 → 1994 (2094 is more than 50 years ahead), past. */
    cr_expect_eq(timing_parse_retry_after("Thursday, 01-Jan-26 00:00:00 GMT", end_2025), 60000);
    cr_expect_eq(timing_parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", end_2025), 0);
}

Test(timing_zone, sets_local_time)
{
    struct tm tm;
    time_t t = 1710083040; /* 2024-03-10 15:04:00 UTC */

    cr_assert_eq(timing_set_zone("America/Sao_Paulo", NULL), CALLLOG_OK);
    localtime_r(&t, &tm);
    cr_expect_eq(tm.tm_hour, 12);
    cr_assert_eq(timing_set_zone("Etc/UTC", NULL), CALLLOG_OK); /* no zone database needed */
    localtime_r(&t, &tm);
    cr_expect_eq(tm.tm_hour, 15);
    cr_assert_eq(timing_set_zone("", NULL), CALLLOG_OK); /* TIMING_DEFAULT_ZONE */
    localtime_r(&t, &tm);
    cr_expect_eq(tm.tm_hour, 12);
}

Test(timing_zone, unknown_or_unsafe_zone_is_refused)
{
    calllog_error err = {0};

    cr_expect_eq(timing_set_zone("America/Atlantis", &err), CALLLOG_INVALID);
    cr_expect_not_null(strstr(err.message, "America/Atlantis"), "%s", err.message);
    cr_expect_eq(timing_set_zone("../../etc/passwd", &err), CALLLOG_INVALID);
    cr_expect_eq(timing_set_zone("/etc/localtime", &err), CALLLOG_INVALID);
    cr_expect_eq(timing_set_zone("America/Sao Paulo", NULL), CALLLOG_INVALID);
}
