/* shutdown — signal handling, the process-wide stop flag and the drain watchdog (see
 * shutdown.h). The flag is a lock-free atomic_int, so setting it from a signal handler
 * is safe. */
#include "common/shutdown.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <unistd.h>

#include "common/log.h"
#include "common/timing.h"

_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "the stop flag must be lock-free to be signal-safe");

/* The stop flag: 0 while running, 1 once a stop was requested. */
static atomic_int stop_requested;

/* Non-zero once a stop was requested. */
int shutdown_requested(void)
{
    return atomic_load_explicit(&stop_requested, memory_order_acquire);
}

/* Sets the stop flag. */
void shutdown_request(void)
{
    atomic_store_explicit(&stop_requested, 1, memory_order_release);
}

/* Clears the stop flag (tests only). */
void shutdown_reset(void)
{
    atomic_store_explicit(&stop_requested, 0, memory_order_release);
}

/* The signals that start a drain. */
static sigset_t termination_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    return set;
}

/* Blocks the termination signals in this thread (and those it starts); ignores SIGPIPE. */
void shutdown_block_signals(void)
{
    sigset_t set = termination_signals();
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* Ends the process when draining outlasts its budget. */
static void *drain_watchdog(void *arg)
{
    long ms = (long)(intptr_t)arg;
    timing_sleep_ms(ms);
    log_error("drain timed out; exiting with work unfinished (it stays queued)",
              LF_I("timeout_ms", ms));
    _exit(1);
    return NULL;
}

/* Waits for a termination signal, sets the stop flag, then arms the watchdog. */
void shutdown_wait(long drain_timeout_ms)
{
    sigset_t set = termination_signals();
    int sig = 0;
    sigwait(&set, &sig);
    shutdown_request();
    log_info("draining", LF_S("signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"),
             LF_I("timeout_ms", drain_timeout_ms));
    pthread_t watchdog;
    if (pthread_create(&watchdog, NULL, drain_watchdog, (void *)(intptr_t)drain_timeout_ms) == 0)
        pthread_detach(watchdog);
}
