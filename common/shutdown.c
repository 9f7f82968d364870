/* shutdown — signal handling and the drain watchdog (see shutdown.h). */
#include "shutdown.h"

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <unistd.h>

#include "log.h"
#include "timing.h"

static sigset_t termination_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    return set;
}

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

void shutdown_wait(long drain_timeout_ms)
{
    sigset_t set = termination_signals();
    int sig = 0;
    sigwait(&set, &sig);
    log_info("draining", LF_S("signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"),
             LF_I("timeout_ms", drain_timeout_ms));
    pthread_t watchdog;
    if (pthread_create(&watchdog, NULL, drain_watchdog, (void *)(intptr_t)drain_timeout_ms) == 0)
        pthread_detach(watchdog);
}
