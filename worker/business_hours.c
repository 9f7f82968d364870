/* business_hours — CALLLOG_BUSINESS_HOURS read once, and due times moved into it (see the
 * header). Parsing is by hand over a cursor, so every refusal can say where it happened;
 * local time goes through localtime_r/mktime, the zone being the process's (timing.h). */
#include "worker/business_hours.h"

#include <stdio.h>
#include <string.h>

static const char *const day_names[7] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

/* A parse in progress: the cursor and the clause number for messages. */
typedef struct cursor {
    const char *p;
    int clause;
    calllog_error *err;
} cursor;

/* Fills `err` with "<what> in clause N (expected e.g. …)". Returns CALLLOG_INVALID. */
static calllog_code bad(cursor *c, const char *what)
{
    return error_set(c->err, CALLLOG_INVALID, "%s in clause %d (expected e.g. '%s')", what,
                     c->clause, BUSINESS_HOURS_DEFAULT);
}

/* Reads a three-letter day name. Returns its tm_wday, or -1. */
static int read_day(cursor *c)
{
    for (int d = 0; d < 7; d++) {
        if (strncmp(c->p, day_names[d], 3) == 0) {
            c->p += 3;
            return d;
        }
    }
    return -1;
}

/* Reads "ddd" or "ddd-ddd" into the `days` mask. Returns 0, or -1 with `err` set. */
static int read_day_range(cursor *c, unsigned *days)
{
    int first = read_day(c), last;
    if (first < 0)
        return bad(c, "bad or missing day (sun mon tue wed thu fri sat)"), -1;
    last = first;
    if (*c->p == '-') {
        c->p++;
        if ((last = read_day(c)) < 0)
            return bad(c, "bad day after '-'"), -1;
        if (last < first)
            return bad(c, "a day range may not wrap past sat"), -1;
    }
    for (int d = first; d <= last; d++)
        *days |= 1u << d;
    return 0;
}

/* Reads "HH:MM" (00:00 to 24:00) into minutes after midnight. Returns them, or -1. */
static int read_clock(cursor *c)
{
    const char *p = c->p;
    for (int i = 0; i < 5; i++)
        if (i == 2 ? p[i] != ':' : (p[i] < '0' || p[i] > '9'))
            return -1;
    int h = (p[0] - '0') * 10 + (p[1] - '0'), m = (p[3] - '0') * 10 + (p[4] - '0');
    if (m > 59 || h > 24 || (h == 24 && m != 0))
        return -1;
    c->p += 5;
    return h * 60 + m;
}

/* Adds the window [open, close) to each day of `days`, keeping each day sorted and refusing
 * overlaps. Returns 0, or -1 with `err` set. */
static int add_window(cursor *c, business_hours *bh, unsigned days, int open, int close)
{
    for (int d = 0; d < 7; d++) {
        business_day *day = &bh->day[d];
        if (!(days & (1u << d)))
            continue;
        if (day->n == BUSINESS_HOURS_MAX_WINDOWS)
            return bad(c, "too many windows on one day"), -1;
        int at = day->n;
        while (at > 0 && day->open[at - 1] > open)
            at--;
        if ((at > 0 && day->close[at - 1] > open) || (at < day->n && day->open[at] < close))
            return bad(c, "windows overlap"), -1;
        memmove(&day->open[at + 1], &day->open[at], (size_t)(day->n - at) * sizeof day->open[0]);
        memmove(&day->close[at + 1], &day->close[at], (size_t)(day->n - at) * sizeof day->close[0]);
        day->open[at] = (short)open;
        day->close[at] = (short)close;
        day->n++;
    }
    return 0;
}

/* Reads one clause: days, a space, windows. Returns 0, or -1 with `err` set. */
static int read_clause(cursor *c, business_hours *bh)
{
    unsigned days = 0;
    while (*c->p == ' ')
        c->p++;
    do {
        if (read_day_range(c, &days) != 0)
            return -1;
    } while (*c->p == ',' && c->p++);
    if (*c->p != ' ')
        return bad(c, "a space expected between the days and the hours"), -1;
    while (*c->p == ' ')
        c->p++;
    do {
        int open = read_clock(c);
        if (open < 0)
            return bad(c, "bad start time (HH:MM)"), -1;
        if (*c->p++ != '-')
            return bad(c, "'-' expected between the start and end times"), -1;
        int close = read_clock(c);
        if (close < 0)
            return bad(c, "bad end time (HH:MM, at most 24:00)"), -1;
        if (close <= open)
            return bad(c, "a window must end after it starts (no overnight windows)"), -1;
        if (add_window(c, bh, days, open, close) != 0)
            return -1;
    } while (*c->p == ',' && c->p++);
    while (*c->p == ' ')
        c->p++;
    return 0;
}

calllog_code business_hours_parse(const char *spec, business_hours *out, calllog_error *err)
{
    cursor c = {spec ? spec : "", 1, err};
    memset(out, 0, sizeof *out);
    for (;;) {
        if (read_clause(&c, out) != 0)
            return CALLLOG_INVALID;
        if (*c.p == '\0')
            break;
        if (*c.p != ';')
            return bad(&c, "unexpected text after the hours (';' separates clauses)");
        c.p++;
        c.clause++;
    }
    for (int d = 0; d < 7; d++)
        if (out->day[d].n > 0)
            return CALLLOG_OK;
    return bad(&c, "no open window");
}

/* The instant `minute` minutes after local midnight, `days` days after `base`'s date. */
static time_t local_at(const struct tm *base, int days, int minute)
{
    struct tm t = *base;
    t.tm_mday += days;
    t.tm_hour = minute / 60;
    t.tm_min = minute % 60;
    t.tm_sec = 0;
    t.tm_isdst = -1;
    return mktime(&t);
}

time_t business_hours_next_open(const business_hours *bh, time_t t)
{
    struct tm now;
    localtime_r(&t, &now);
    long secs = now.tm_hour * 3600L + now.tm_min * 60L + now.tm_sec;
    for (int d = 0; d <= 8; d++) {
        const business_day *day = &bh->day[(now.tm_wday + d) % 7];
        for (int i = 0; i < day->n; i++) {
            if (d == 0 && secs >= day->close[i] * 60L)
                continue;
            if (d == 0 && secs >= day->open[i] * 60L)
                return t;
            return local_at(&now, d, day->open[i]);
        }
    }
    return t; /* no window at all: business_hours_parse refuses that */
}

time_t business_hours_due(const business_hours *bh, time_t now, long delay_min)
{
    return business_hours_next_open(bh, now + (time_t)delay_min * 60);
}
