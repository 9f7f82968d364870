/* test_business_hours — CALLLOG_BUSINESS_HOURS read and refused, and follow-up due times moved
 * into business hours across evenings, nights, weekends and a day's lunch break, in
 * America/Sao_Paulo (UTC-3 all year since 2019: no DST). The anchor instant was computed
 * with Python's datetime (2026-12-04 17:40 -03:00 = 1796416800). */
#include <criterion/criterion.h>
#include <string.h>
#include <time.h>

#include "common/timing.h"
#include "worker/business_hours.h"

/* Epoch seconds of a wall-clock time in São Paulo (fixed UTC-3). */
static time_t sp(int y, int mo, int d, int h, int mi)
{
    struct tm t = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi};
    return timegm(&t) + 3 * 3600;
}

static business_hours bh;

static void setup_default(void)
{
    calllog_error err;
    cr_assert_eq(timing_set_zone("America/Sao_Paulo", &err), CALLLOG_OK, "%s", err.message);
    cr_assert_eq(business_hours_parse(BUSINESS_HOURS_DEFAULT, &bh, &err), CALLLOG_OK, "%s",
                 err.message);
}

TestSuite(business_hours_due, .init = setup_default);

Test(business_hours_due, anchor_is_right)
{
    cr_assert_eq(sp(2026, 12, 4, 17, 40), 1796416800);
}

Test(business_hours_due, inside_hours_is_now_plus_delay)
{
    /* Friday 10:00 + 30 min */
    cr_expect_eq(business_hours_due(&bh, sp(2026, 12, 4, 10, 0), 30), sp(2026, 12, 4, 10, 30));
    /* Friday 17:29 + 30 = 17:59, still open */
    cr_expect_eq(business_hours_due(&bh, sp(2026, 12, 4, 17, 29), 30), sp(2026, 12, 4, 17, 59));
}

Test(business_hours_due, closing_time_itself_is_closed)
{
    /* Thursday 17:30 + 30 = 18:00: closed, so Friday 08:00 */
    cr_expect_eq(business_hours_due(&bh, sp(2026, 12, 3, 17, 30), 30), sp(2026, 12, 4, 8, 0));
}

Test(business_hours_due, evening_moves_to_next_morning)
{
    /* Tuesday 22:00 → Wednesday 08:00 */
    cr_expect_eq(business_hours_due(&bh, sp(2026, 12, 1, 22, 0), 30), sp(2026, 12, 2, 8, 0));
    /* Wednesday 03:00 + 30 = 03:30 → the same day's 08:00 */
    cr_expect_eq(business_hours_due(&bh, sp(2026, 12, 2, 3, 0), 30), sp(2026, 12, 2, 8, 0));
    /* 07:31 + 30 = 08:01: open */
    cr_expect_eq(business_hours_due(&bh, sp(2026, 12, 2, 7, 31), 30), sp(2026, 12, 2, 8, 1));
}

Test(business_hours_due, weekend_moves_to_monday)
{
    /* Friday 17:40 + 30 = 18:10 → Monday 08:00 */
    cr_expect_eq(business_hours_due(&bh, sp(2026, 12, 4, 17, 40), 30), sp(2026, 12, 7, 8, 0));
    /* Saturday 10:00 and Sunday 23:59 → Monday 08:00 */
    cr_expect_eq(business_hours_due(&bh, sp(2026, 12, 5, 10, 0), 30), sp(2026, 12, 7, 8, 0));
    cr_expect_eq(business_hours_due(&bh, sp(2026, 12, 6, 23, 59), 30), sp(2026, 12, 7, 8, 0));
}

Test(business_hours_due, year_end_and_long_delays)
{
    /* Thursday 2026-12-31 19:00 → Friday 2027-01-01 08:00 (the parser knows no holidays) */
    cr_expect_eq(business_hours_due(&bh, sp(2026, 12, 31, 19, 0), 30), sp(2027, 1, 1, 8, 0));
    /* Friday 09:00 + one day = Saturday 09:00 → Monday 08:00 */
    cr_expect_eq(business_hours_due(&bh, sp(2026, 12, 4, 9, 0), 24 * 60), sp(2026, 12, 7, 8, 0));
    /* no delay: a call inside hours is due at once */
    cr_expect_eq(business_hours_due(&bh, sp(2026, 12, 4, 9, 0), 0), sp(2026, 12, 4, 9, 0));
}

Test(business_hours_due, lunch_break_and_saturday_clause)
{
    calllog_error err;
    business_hours h;
    cr_assert_eq(business_hours_parse("mon-fri 08:00-12:00,13:00-18:00; sat 09:00-13:00", &h, &err),
                 CALLLOG_OK, "%s", err.message);
    /* Friday 11:45 + 30 = 12:15 → 13:00 */
    cr_expect_eq(business_hours_due(&h, sp(2026, 12, 4, 11, 45), 30), sp(2026, 12, 4, 13, 0));
    /* Friday 17:40 + 30 → Saturday 09:00 */
    cr_expect_eq(business_hours_due(&h, sp(2026, 12, 4, 17, 40), 30), sp(2026, 12, 5, 9, 0));
    /* Saturday 12:40 + 30 → Monday 08:00 */
    cr_expect_eq(business_hours_due(&h, sp(2026, 12, 5, 12, 40), 30), sp(2026, 12, 7, 8, 0));
}

Test(business_hours_parse, reads_lists_ranges_and_midnight_end)
{
    calllog_error err;
    business_hours h;
    cr_assert_eq(business_hours_parse("mon,wed,fri 00:00-24:00;sun 10:00-11:00", &h, &err),
                 CALLLOG_OK, "%s", err.message);
    cr_expect_eq(h.day[1].n, 1);
    cr_expect_eq(h.day[1].open[0], 0);
    cr_expect_eq(h.day[1].close[0], 24 * 60);
    cr_expect_eq(h.day[2].n, 0);
    cr_expect_eq(h.day[0].open[0], 600);
    /* windows given out of order are kept sorted */
    cr_assert_eq(business_hours_parse("tue 14:00-15:00,09:00-10:00", &h, &err), CALLLOG_OK);
    cr_expect_eq(h.day[2].open[0], 540);
    cr_expect_eq(h.day[2].open[1], 840);
}

/* Asserts that `spec` is refused with a message containing `why`. */
static void refused(const char *spec, const char *why)
{
    calllog_error err;
    business_hours h;
    cr_expect_eq(business_hours_parse(spec, &h, &err), CALLLOG_INVALID, "'%s' accepted", spec);
    cr_expect(strstr(err.message, why) != NULL, "'%s': %s", spec, err.message);
    cr_expect(strstr(err.message, "(expected e.g. 'mon-fri 08:00-18:00')") != NULL, "%s",
              err.message);
}

Test(business_hours_parse, refuses_bad_values_saying_why)
{
    refused("", "bad or missing day");
    refused("mun-fri 08:00-18:00", "bad or missing day");
    refused("fri-mon 08:00-18:00", "wrap");
    refused("mon-fri", "space expected");
    refused("mon-fri 8:00-18:00", "bad start time");
    refused("mon-fri 08:00-18:60", "bad end time");
    refused("mon-fri 08:00-24:30", "bad end time");
    refused("mon-fri 18:00-08:00", "end after it starts");
    refused("mon-fri 08:00-12:00,11:00-13:00", "overlap");
    refused("mon 08:00-12:00; mon 11:00-13:00", "overlap");
    refused("mon-fri 08:00-18:00 x", "unexpected text");
    refused("mon-fri 08:00 18:00", "'-' expected");
    refused("mon-fri 08:00-18:00; tue 8-9", "clause 2");
}
