/* test_timing — common/timing's text forms: RFC 3339 written and read back, RFC 2822 read
 * with its zone offset honoured (the bug of the strptime copy it replaced: "-0300" was
 * ignored, shifting every non-UTC timestamp), weekday optional, English months whatever
 * the locale, and refusals. Expected values were computed with Python's datetime. */
#include <criterion/criterion.h>
#include <locale.h>
#include <string.h>

#include "timing.h"

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
