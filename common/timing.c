/* timing — monotonic and wall clocks, sleeping and the time formats (see timing.h). */
#include "timing.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

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
