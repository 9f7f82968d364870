/* timing — monotonic and wall clocks, and sleeping (see timing.h). */
#include "timing.h"

#include <errno.h>
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
