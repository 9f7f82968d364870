/* timing — the clocks, the sleep and the time formats every module uses, in one place.
 *
 * Monotonic time measures latencies and deadlines (it never jumps); wall-clock time is
 * for timestamps shared with other hosts (token expiries, received_at). The two text
 * forms the project meets are read and written here only, by hand, so that neither the
 * locale nor strptime's ignoring of zone offsets can change a result: RFC 3339 in UTC
 * (logs, events, dead letters), RFC 2822 (Twilio's timestamps, any numeric zone) and the
 * HTTP-dates of Retry-After.
 *
 * Local time exists for one purpose, the note's {start}/{end} (and RD v1's task date and
 * hour): the process's zone is set once, at start-up, by timing_set_zone, before any thread
 * exists (setenv is not thread-safe; localtime_r is, as long as nobody changes TZ). Logs,
 * events and dead letters stay UTC whatever the zone. */
#ifndef CALLLOG_TIMING_H
#define CALLLOG_TIMING_H

#include <stddef.h>
#include <time.h>

#include "common/error.h"

/* Milliseconds on the monotonic clock. */
long long timing_mono_ms(void);

/* Seconds on the monotonic clock, with sub-microsecond resolution. */
double timing_mono_s(void);

/* Milliseconds since the epoch (wall clock). */
long long timing_epoch_ms(void);

/* Writes epoch milliseconds as RFC 3339 UTC with milliseconds ("2026-11-24T20:00:00.123Z")
 * into `out` (at least TIMING_RFC3339_LEN bytes). */
#define TIMING_RFC3339_LEN 32
void timing_format_rfc3339(long long epoch_ms, char *out, size_t outlen);

/* Reads "YYYY-MM-DDTHH:MM:SS[.fff]Z" (what timing_format_rfc3339 writes, any number of
 * fraction digits, or a ±hh:mm offset) into epoch ms; 0 when unreadable. */
long long timing_parse_rfc3339_ms(const char *s);

/* Reads an RFC 2822 date ("Tue, 24 Nov 2026 19:00:00 +0000"; the weekday is optional,
 * the zone ±hhmm, GMT, UT, UTC or Z) into epoch seconds, honouring the offset; 0 when
 * unreadable. English month names whatever the locale. */
time_t timing_parse_rfc2822(const char *s);

/* Largest value timing_parse_retry_after returns (1 day); longer waits are clamped. */
#define TIMING_RETRY_AFTER_MAX_MS 86400000L

/* Parses a Retry-After header value: delta-seconds ("120") or an HTTP-date (IMF-fixdate
 * "Sun, 06 Nov 1994 08:49:37 GMT", RFC 850 "Sunday, 06-Nov-94 08:49:37 GMT", or asctime
 * "Sun Nov  6 08:49:37 1994"; RFC 9110 §5.6.7, strictly), relative to `now`. Returns
 * milliseconds (0 for a date in the past, at most TIMING_RETRY_AFTER_MAX_MS), or -1 when
 * absent, empty or malformed. */
long timing_parse_retry_after(const char *header_value, time_t now);

/* The zone timing_set_zone uses for NULL or "": the one RD Station's Brazilian accounts show. */
#define TIMING_DEFAULT_ZONE "America/Sao_Paulo"

/* Sets the process's local time zone to the IANA zone `tz` ("America/Sao_Paulo", "UTC";
 * NULL or "" means TIMING_DEFAULT_ZONE): checks the name (relative, no "..", only
 * [A-Za-z0-9_+-/]) and that the zone database ($TZDIR, else /usr/share/zoneinfo) has it,
 * then sets TZ and calls tzset(). "UTC" and "Etc/UTC" need no database. Call once at
 * start-up, before threads start. Returns CALLLOG_OK, CALLLOG_INVALID with `err` (may be
 * NULL) naming the problem, or CALLLOG_NOMEM. */
calllog_code timing_set_zone(const char *tz, calllog_error *err);

/* Sleeps `ms` milliseconds, resuming after signals. */
void timing_sleep_ms(long ms);

#endif
