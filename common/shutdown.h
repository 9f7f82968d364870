/* shutdown — how the long-running programs stop: SIGTERM or SIGINT, then a bounded drain.
 *
 * Call shutdown_block_signals before any thread starts (threads inherit the mask, so only
 * the main thread ever sees the signals), then shutdown_wait from the main thread once
 * everything runs. It returns at the first SIGTERM/SIGINT, having armed a watchdog that
 * ends the process with status 1 if draining takes longer than allowed (design §3). */
#ifndef CALLLOG_SHUTDOWN_H
#define CALLLOG_SHUTDOWN_H

/* Blocks SIGTERM and SIGINT for this and future threads; ignores SIGPIPE. */
void shutdown_block_signals(void);

/* Waits for SIGTERM or SIGINT, logs it, and arms the `drain_timeout_ms` watchdog. */
void shutdown_wait(long drain_timeout_ms);

#endif
