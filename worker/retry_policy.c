/* retry_policy — which failures are worth retrying, and how long to wait before the next try.
 *
 * Full jitter (delay uniformly drawn in [0, cap]) spreads the retries of many workers that
 * failed together, e.g. during an RD Station outage, instead of having them return in
 * lock-step. The random value is a parameter so the arithmetic is testable; the HTTP-date
 * parser is hand-written because strptime depends on the locale. See retry_policy.h. */
#include "retry_policy.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>

/* Classifies an HTTP outcome; see the table in retry_policy.h. */
retry_class retry_classify(int curl_code, long http_status)
{
    if (curl_code != 0)
        return RETRY_TRANSIENT;
    if (http_status >= 200 && http_status <= 299)
        return RETRY_OK;
    if (http_status == 401)
        return RETRY_AUTH;
    if (http_status == 0 || http_status == 408 || http_status == 429 ||
        (http_status >= 500 && http_status <= 599))
        return RETRY_TRANSIENT;
    return RETRY_PERMANENT;
}

/* Names a class for logs and metrics. */
const char *retry_class_name(retry_class c)
{
    switch (c) {
    case RETRY_OK:
        return "ok";
    case RETRY_TRANSIENT:
        return "transient";
    case RETRY_AUTH:
        return "auth";
    case RETRY_PERMANENT:
        return "permanent";
    }
    return "unknown";
}

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

/* Skips optional whitespace (spaces and tabs). */
static const char *retry_skip_ows(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* Reads exactly `n` digits at `*p` into `*out`. Returns 0, or -1. */
static int retry_digits(const char **p, int n, int *out)
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
static int retry_expect(const char **p, const char *lit)
{
    size_t n = strlen(lit);

    if (strncmp(*p, lit, n) != 0)
        return -1;
    *p += n;
    return 0;
}

/* Reads a three-letter English month name. Returns 0 with `*mon` in 0–11, or -1. */
static int retry_month(const char **p, int *mon)
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
static int retry_clock(const char **p, struct tm *tm)
{
    if (retry_digits(p, 2, &tm->tm_hour) != 0 || retry_expect(p, ":") != 0 ||
        retry_digits(p, 2, &tm->tm_min) != 0 || retry_expect(p, ":") != 0 ||
        retry_digits(p, 2, &tm->tm_sec) != 0)
        return -1;
    return tm->tm_hour <= 23 && tm->tm_min <= 59 && tm->tm_sec <= 60 ? 0 : -1;
}

/* Full year of a two-digit RFC 850 year: the most recent one not more than 50 years in
 * the future (RFC 9110 §5.6.7). */
static int retry_year2(int yy, time_t now)
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
static int retry_parse_after_comma(const char *p, struct tm *tm, time_t now)
{
    int yy;

    if (retry_digits(&p, 2, &tm->tm_mday) != 0)
        return -1;
    if (*p == ' ') {
        p++;
        if (retry_month(&p, &tm->tm_mon) != 0 || retry_expect(&p, " ") != 0 ||
            retry_digits(&p, 4, &tm->tm_year) != 0)
            return -1;
        tm->tm_year -= 1900;
    } else {
        if (retry_expect(&p, "-") != 0 || retry_month(&p, &tm->tm_mon) != 0 ||
            retry_expect(&p, "-") != 0 || retry_digits(&p, 2, &yy) != 0)
            return -1;
        tm->tm_year = retry_year2(yy, now) - 1900;
    }
    if (retry_expect(&p, " ") != 0 || retry_clock(&p, tm) != 0 || retry_expect(&p, " GMT") != 0)
        return -1;
    return *retry_skip_ows(p) == '\0' ? 0 : -1;
}

/* Parses the part after "Day ": asctime "Nov  6 08:49:37 1994". Returns 0, or -1. */
static int retry_parse_asctime(const char *p, struct tm *tm)
{
    if (retry_month(&p, &tm->tm_mon) != 0 || retry_expect(&p, " ") != 0)
        return -1;
    if (*p == ' ') {
        p++;
        if (retry_digits(&p, 1, &tm->tm_mday) != 0)
            return -1;
    } else if (retry_digits(&p, 2, &tm->tm_mday) != 0) {
        return -1;
    }
    if (retry_expect(&p, " ") != 0 || retry_clock(&p, tm) != 0 || retry_expect(&p, " ") != 0 ||
        retry_digits(&p, 4, &tm->tm_year) != 0)
        return -1;
    tm->tm_year -= 1900;
    return *retry_skip_ows(p) == '\0' ? 0 : -1;
}

/* Parses an HTTP-date into epoch seconds. Returns 0, or -1 when malformed. */
static int retry_parse_http_date(const char *p, time_t now, time_t *out)
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
        rc = retry_parse_after_comma(q + 2, &tm, now);
    else if (q[0] == ' ' && q - p == 3)
        rc = retry_parse_asctime(q + 1, &tm);
    else
        return -1;
    if (rc != 0 || tm.tm_mday < 1 || tm.tm_mday > 31)
        return -1;
    *out = timegm(&tm);
    return *out == (time_t)-1 ? -1 : 0;
}

/* Parses delta-seconds, clamped to RETRY_AFTER_PARSE_MAX_MS. Returns ms, or -1. */
static long retry_parse_delta(const char *p)
{
    const long max_s = RETRY_AFTER_PARSE_MAX_MS / 1000;
    long secs = 0;

    if (*p < '0' || *p > '9')
        return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (secs <= max_s)
            secs = secs * 10 + (*p - '0');
    }
    if (*retry_skip_ows(p) != '\0')
        return -1;
    return secs > max_s ? RETRY_AFTER_PARSE_MAX_MS : secs * 1000;
}

/* Parses a Retry-After header value; see retry_policy.h. */
long retry_parse_retry_after(const char *header_value, time_t now)
{
    const char *p;
    time_t when;

    if (header_value == NULL)
        return -1;
    p = retry_skip_ows(header_value);
    if (*p == '\0')
        return -1;
    if (*p >= '0' && *p <= '9')
        return retry_parse_delta(p);
    if (retry_parse_http_date(p, now, &when) != 0)
        return -1;
    if (when <= now)
        return 0;
    if (when - now > RETRY_AFTER_PARSE_MAX_MS / 1000)
        return RETRY_AFTER_PARSE_MAX_MS;
    return (long)(when - now) * 1000;
}

/* Says whether the attempt budget is used up; see retry_policy.h. */
int retry_exhausted(const retry_settings *s, int attempt)
{
    int max = s != NULL ? s->max_attempts : RETRY_DEFAULT_MAX_ATTEMPTS;

    if (max < 1)
        max = 1;
    return attempt >= max;
}
