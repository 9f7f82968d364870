/* timing — monotonic and wall clocks, sleeping and the time formats (see timing.h). */
#include "common/timing.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static struct timespec read_clock(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts;
}

long long timing_mono_ms(void)
{
    struct timespec ts = read_clock(CLOCK_MONOTONIC);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double timing_mono_s(void)
{
    struct timespec ts = read_clock(CLOCK_MONOTONIC);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

long long timing_epoch_ms(void)
{
    struct timespec ts = read_clock(CLOCK_REALTIME);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void timing_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

void timing_format_rfc3339(long long epoch_ms, char *out, size_t outlen)
{
    time_t secs = (time_t)(epoch_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(out, outlen, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, outlen - n, ".%03lldZ", epoch_ms % 1000);
}

long long timing_parse_rfc3339_ms(const char *s)
{
    struct tm tm;
    int y, mo, d, h, mi, sec, used = 0;
    if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &used) != 6)
        return 0;
    const char *p = s + used;
    long ms = 0, scale = 100;
    if (*p == '.')
        for (p++; *p >= '0' && *p <= '9'; p++, scale /= 10)
            ms += scale > 0 ? (*p - '0') * scale : 0;
    long offset = 0;
    if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':')
        offset =
            (strtol(p + 1, NULL, 10) * 3600 + strtol(p + 4, NULL, 10) * 60) * (*p == '-' ? -1 : 1);
    else if (strcmp(p, "Z") != 0)
        return 0;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    return t == (time_t)-1 ? 0 : ((long long)t - offset) * 1000 + ms;
}

/* Parses an RFC 2822 date (see timing.h) ("Tue, 24 Nov 2026 19:00:00 +0000"; the weekday is
 * optional, the zone may be ±hhmm, GMT, UT or UTC) into epoch seconds. Returns 0 when unreadable.
 */
time_t timing_parse_rfc2822(const char *s)
{
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    struct tm tm;
    char mon[4], zone[8] = "";
    int day, year, h, mi, sec = 0;
    const char *comma;
    if (s == NULL)
        return 0;
    comma = strchr(s, ',');
    if (comma != NULL)
        s = comma + 1;
    if (sscanf(s, " %2d %3s %4d %2d:%2d:%2d %7s", &day, mon, &year, &h, &mi, &sec, zone) < 6)
        return 0;
    const char *m = strstr(months, mon);
    if (strlen(mon) != 3 || m == NULL || (m - months) % 3 != 0)
        return 0;
    long offset = 0;
    if ((zone[0] == '+' || zone[0] == '-') && strlen(zone) == 5) {
        long v = strtol(zone + 1, NULL, 10);
        offset = (v / 100 * 3600 + v % 100 * 60) * (zone[0] == '-' ? -1 : 1);
    } else if (zone[0] != '\0' && strcasecmp(zone, "GMT") != 0 && strcasecmp(zone, "UT") != 0 &&
               strcasecmp(zone, "UTC") != 0 && strcasecmp(zone, "Z") != 0) {
        return 0;
    }
    memset(&tm, 0, sizeof tm);
    tm.tm_mday = day;
    tm.tm_mon = (int)((m - months) / 3);
    tm.tm_year = year - 1900;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    return t == (time_t)-1 ? 0 : t - offset;
}

/* ---- HTTP dates (Retry-After) ------------------------------------------------- */

/* Skips optional whitespace (spaces and tabs). */
static const char *http_ows_skip(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* Reads exactly `n` digits at `*p` into `*out`. Returns 0, or -1. */
static int http_digits(const char **p, int n, int *out)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return -1;
        v = v * 10 + (c - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

/* Matches literal `lit` at `*p` and advances. Returns 0, or -1. */
static int http_expect(const char **p, const char *lit)
{
    size_t n = strlen(lit);

    if (strncmp(*p, lit, n) != 0)
        return -1;
    *p += n;
    return 0;
}

/* Reads a three-letter English month name. Returns 0 with `*mon` in 0–11, or -1. */
static int http_month(const char **p, int *mon)
{
    static const char names[] = "JanFebMarAprMayJunJulAugSepOctNovDec";

    for (int i = 0; i < 12; i++) {
        if (strncmp(*p, names + 3 * i, 3) == 0) {
            *mon = i;
            *p += 3;
            return 0;
        }
    }
    return -1;
}

/* Reads "HH:MM:SS" into `tm`. Returns 0, or -1. */
static int http_clock(const char **p, struct tm *tm)
{
    if (http_digits(p, 2, &tm->tm_hour) != 0 || http_expect(p, ":") != 0 ||
        http_digits(p, 2, &tm->tm_min) != 0 || http_expect(p, ":") != 0 ||
        http_digits(p, 2, &tm->tm_sec) != 0)
        return -1;
    return tm->tm_hour <= 23 && tm->tm_min <= 59 && tm->tm_sec <= 60 ? 0 : -1;
}

/* Full year of a two-digit RFC 850 year: the most recent one not more than 50 years in
 * the future (RFC 9110 §5.6.7). */
static int http_year2(int yy, time_t now)
{
    struct tm n;
    int year;

    if (gmtime_r(&now, &n) == NULL)
        return 1900 + yy;
    year = (n.tm_year + 1900) / 100 * 100 + yy;
    if (year > n.tm_year + 1900 + 50)
        year -= 100;
    return year;
}

/* Parses the part after "Day, ": IMF-fixdate "06 Nov 1994 08:49:37 GMT" or RFC 850
 * "06-Nov-94 08:49:37 GMT". Returns 0, or -1. */
static int http_parse_after_comma(const char *p, struct tm *tm, time_t now)
{
    int yy;

    if (http_digits(&p, 2, &tm->tm_mday) != 0)
        return -1;
    if (*p == ' ') {
        p++;
        if (http_month(&p, &tm->tm_mon) != 0 || http_expect(&p, " ") != 0 ||
            http_digits(&p, 4, &tm->tm_year) != 0)
            return -1;
        tm->tm_year -= 1900;
    } else {
        if (http_expect(&p, "-") != 0 || http_month(&p, &tm->tm_mon) != 0 ||
            http_expect(&p, "-") != 0 || http_digits(&p, 2, &yy) != 0)
            return -1;
        tm->tm_year = http_year2(yy, now) - 1900;
    }
    if (http_expect(&p, " ") != 0 || http_clock(&p, tm) != 0 || http_expect(&p, " GMT") != 0)
        return -1;
    return *http_ows_skip(p) == '\0' ? 0 : -1;
}

/* Parses the part after "Day ": asctime "Nov  6 08:49:37 1994". Returns 0, or -1. */
static int http_parse_asctime(const char *p, struct tm *tm)
{
    if (http_month(&p, &tm->tm_mon) != 0 || http_expect(&p, " ") != 0)
        return -1;
    if (*p == ' ') {
        p++;
        if (http_digits(&p, 1, &tm->tm_mday) != 0)
            return -1;
    } else if (http_digits(&p, 2, &tm->tm_mday) != 0) {
        return -1;
    }
    if (http_expect(&p, " ") != 0 || http_clock(&p, tm) != 0 || http_expect(&p, " ") != 0 ||
        http_digits(&p, 4, &tm->tm_year) != 0)
        return -1;
    tm->tm_year -= 1900;
    return *http_ows_skip(p) == '\0' ? 0 : -1;
}

/* Parses an HTTP-date into epoch seconds. Returns 0, or -1 when malformed. */
static int http_parse_date(const char *p, time_t now, time_t *out)
{
    struct tm tm;
    const char *q = p;
    int rc;

    memset(&tm, 0, sizeof tm);
    while ((*q >= 'A' && *q <= 'Z') || (*q >= 'a' && *q <= 'z'))
        q++;
    if (q - p < 3)
        return -1;
    if (q[0] == ',' && q[1] == ' ')
        rc = http_parse_after_comma(q + 2, &tm, now);
    else if (q[0] == ' ' && q - p == 3)
        rc = http_parse_asctime(q + 1, &tm);
    else
        return -1;
    if (rc != 0 || tm.tm_mday < 1 || tm.tm_mday > 31)
        return -1;
    *out = timegm(&tm);
    return *out == (time_t)-1 ? -1 : 0;
}

/* Parses delta-seconds, clamped to TIMING_RETRY_AFTER_MAX_MS. Returns ms, or -1. */
static long http_parse_delta(const char *p)
{
    const long max_s = TIMING_RETRY_AFTER_MAX_MS / 1000;
    long secs = 0;

    if (*p < '0' || *p > '9')
        return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (secs <= max_s)
            secs = secs * 10 + (*p - '0');
    }
    if (*http_ows_skip(p) != '\0')
        return -1;
    return secs > max_s ? TIMING_RETRY_AFTER_MAX_MS : secs * 1000;
}

/* Parses a Retry-After header value; see timing.h. */
long timing_parse_retry_after(const char *header_value, time_t now)
{
    const char *p;
    time_t when;

    if (header_value == NULL)
        return -1;
    p = http_ows_skip(header_value);
    if (*p == '\0')
        return -1;
    if (*p >= '0' && *p <= '9')
        return http_parse_delta(p);
    if (http_parse_date(p, now, &when) != 0)
        return -1;
    if (when <= now)
        return 0;
    if (when - now > TIMING_RETRY_AFTER_MAX_MS / 1000)
        return TIMING_RETRY_AFTER_MAX_MS;
    return (long)(when - now) * 1000;
}

/* 1 when `tz` is a plausible zone name: relative, no "..", only [A-Za-z0-9_+-/]. */
static int zone_name_ok(const char *tz)
{
    if (tz[0] == '/' || strstr(tz, "..") != NULL || strlen(tz) > 200)
        return 0;
    for (const char *p = tz; *p != '\0'; p++) {
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '+' || *p == '-' || *p == '/'))
            return 0;
    }
    return 1;
}

/* Sets the process's time zone once at start-up; see timing.h. */
calllog_code timing_set_zone(const char *tz, calllog_error *err)
{
    char path[512];
    const char *dir = getenv("TZDIR");

    if (tz == NULL || tz[0] == '\0')
        tz = TIMING_DEFAULT_ZONE;
    if (strcmp(tz, "UTC") == 0 || strcmp(tz, "Etc/UTC") == 0) {
        tz = "UTC0"; /* POSIX form: works even without the zone database */
    } else {
        if (!zone_name_ok(tz))
            return error_set(err, CALLLOG_INVALID, "invalid time zone name '%s'", tz);
        if (dir == NULL || dir[0] == '\0')
            dir = "/usr/share/zoneinfo";
        snprintf(path, sizeof path, "%s/%s", dir, tz);
        if (access(path, R_OK) != 0)
            return error_set(err, CALLLOG_INVALID,
                             "unknown time zone '%s' (not found in %s; is tzdata installed?)", tz,
                             dir);
    }
    if (setenv("TZ", tz, 1) != 0)
        return error_set(err, CALLLOG_NOMEM, "cannot set TZ");
    tzset();
    return CALLLOG_OK;
}
