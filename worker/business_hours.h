/* business_hours — the hours a salesperson works, and moving a due time into them.
 *
 * A missed call's follow-up task is due CALLLOG_MISSED_CALL_DUE_MIN minutes after the call
 * (followup.h); a task that would fall due at 03:00 or on a Sunday is due when the office
 * opens instead. CALLLOG_BUSINESS_HOURS says when that is, in the process's local zone
 * (CALLLOG_TIMEZONE, set by timing_set_zone before this is used):
 *
 *     mon-fri 08:00-18:00                 (the default)
 *     mon-fri 08:00-12:00,13:00-18:00; sat 09:00-13:00
 *
 * Clauses are separated by ';'. A clause is a day list, one space, and a window list. Days
 * are sun mon tue wed thu fri sat (a range like mon-fri may not wrap past sat), joined by
 * ','; windows are HH:MM-HH:MM with the end after the start (24:00 allowed as an end),
 * joined by ','. A window holds its start and not its end: with 08:00-18:00, 18:00 itself
 * is closed. Anything else is refused with a message saying where. */
#ifndef CALLLOG_BUSINESS_HOURS_H
#define CALLLOG_BUSINESS_HOURS_H

#include <time.h>

#include "common/error.h"

/* The default of CALLLOG_BUSINESS_HOURS. */
#define BUSINESS_HOURS_DEFAULT "mon-fri 08:00-18:00"
/* Most windows a day may have. */
#define BUSINESS_HOURS_MAX_WINDOWS 8

/* One day's open windows, in minutes after local midnight, sorted, not overlapping. */
typedef struct business_day {
    int n;
    short open[BUSINESS_HOURS_MAX_WINDOWS];
    short close[BUSINESS_HOURS_MAX_WINDOWS];
} business_day;

/* The week: day[0] is Sunday, as in struct tm's tm_wday. */
typedef struct business_hours {
    business_day day[7];
} business_hours;

/* Reads `spec` (syntax above) into `out`. Returns CALLLOG_OK, or CALLLOG_INVALID with `err`
 * saying what is wrong and where ("bad end time (HH:MM, at most 24:00) in clause 2 …"); overlapping
 * windows on a day and a week without any open window are refused too. */
calllog_code business_hours_parse(const char *spec, business_hours *out, calllog_error *err);

/* The first instant at or after `t` that is inside business hours, in the process's local
 * zone: `t` itself when open, else the start of the next window. Looks at most eight days
 * ahead, which a week with any window always satisfies. */
time_t business_hours_next_open(const business_hours *bh, time_t t);

/* When a follow-up of a call at `now` is due: now + `delay_min` minutes, moved forward to
 * the next opening when that falls outside business hours. */
time_t business_hours_due(const business_hours *bh, time_t now, long delay_min);

#endif
