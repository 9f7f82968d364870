/* shutdown — how the long-running programs stop: SIGTERM or SIGINT, then a bounded drain.
 *
 * Call shutdown_block_signals before any thread starts (threads inherit the mask, so only
 * the main thread ever sees the signals), then shutdown_wait from the main thread once
 * everything runs. It returns at the first SIGTERM/SIGINT, having armed a watchdog that
 * ends the process with status 1 if draining takes longer than allowed (design §3).
 *
 * One process-wide stop flag tells every thread that draining has begun: shutdown_wait
 * sets it when the signal arrives, and any thread polls it with shutdown_requested
 * instead of keeping a private flag of its own. */
#ifndef CALLLOG_SHUTDOWN_H
#define CALLLOG_SHUTDOWN_H

/* Blocks SIGTERM and SIGINT for this and future threads; ignores SIGPIPE. */
void shutdown_block_signals(void);

/* Waits for SIGTERM or SIGINT, sets the stop flag, logs the signal, and arms the
 * `drain_timeout_ms` watchdog. */
void shutdown_wait(long drain_timeout_ms);

/* Non-zero once a stop was requested (by shutdown_wait or shutdown_request); from any
 * thread. A release/acquire pair: what the requester wrote before is visible after. */
int shutdown_requested(void);

/* Requests a stop: sets the flag (it stays set). Async-signal-safe and thread-safe. */
void shutdown_request(void);

/* Clears the flag again; for tests that stop and start within one process. */
void shutdown_reset(void);

#endif
