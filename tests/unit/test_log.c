/* test_log — common/log's rate limiter for lines outsiders can trigger: a burst is
 * allowed, then lines are dropped and counted, and the next allowed line reports how
 * many were; the budget refills at the rate. */
#include <criterion/criterion.h>
#include <unistd.h>

#include "common/log.h"

Test(log_limiter, allows_a_burst_then_drops_and_counts)
{
    log_limiter l = LOG_LIMITER_INIT(1, 3);
    long dropped = -1;
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(log_limiter_allow(&l, &dropped), 1, "line %d of the burst", i);
        cr_expect_eq(dropped, 0);
    }
    for (int i = 0; i < 50; i++)
        cr_expect_eq(log_limiter_allow(&l, &dropped), 0);
    usleep(1100 * 1000); /* one line's worth of budget at 1/s */
    cr_assert_eq(log_limiter_allow(&l, &dropped), 1);
    cr_expect_eq(dropped, 50, "the allowed line says how many were dropped");
    cr_expect_eq(log_limiter_allow(&l, &dropped), 0);
}

Test(log_limiter, a_slow_rate_allows_only_the_burst)
{
    static log_limiter l = LOG_LIMITER_INIT(0.001, 10);
    long dropped;
    int allowed = 0;
    for (int i = 0; i < 1000; i++)
        allowed += log_limiter_allow(&l, &dropped);
    cr_expect_eq(allowed, 10);
}
