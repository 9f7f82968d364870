/* timing — the clocks and the sleep every module uses, in one place.
 *
 * Monotonic time measures latencies and deadlines (it never jumps); wall-clock time is
 * for timestamps shared with other hosts (token expiries, received_at). */
#ifndef CALLLOG_TIMING_H
#define CALLLOG_TIMING_H

/* Milliseconds on the monotonic clock. */
long long timing_mono_ms(void);

/* Seconds on the monotonic clock, with sub-microsecond resolution. */
double timing_mono_s(void);

/* Milliseconds since the epoch (wall clock). */
long long timing_epoch_ms(void);

/* Sleeps `ms` milliseconds, resuming after signals. */
void timing_sleep_ms(long ms);

#endif
