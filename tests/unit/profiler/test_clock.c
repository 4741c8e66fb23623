/* Unit tests for profiler/clock.c: the calibrated clock runs at the rate of
 * CLOCK_MONOTONIC (within 2% over 50 ms, far looser than any calibration
 * error) and never goes backwards on one thread. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

#include "profiler/clock.h"

static void test_rate_matches_monotonic(void **state)
{
    (void)state;
    prof_clock_init();
    uint64_t m0 = prof_monotonic_ns(), c0 = prof_clock_ns();
    struct timespec pause = { 0, 50000000 };
    nanosleep(&pause, NULL);
    uint64_t c1 = prof_clock_ns(), m1 = prof_monotonic_ns();
    double ratio = (double)(c1 - c0) / (double)(m1 - m0);
    assert_true(ratio > 0.98 && ratio < 1.02);
}

static void test_never_goes_backwards(void **state)
{
    (void)state;
    prof_clock_init();
    uint64_t prev = prof_clock_ns();
    for (int i = 0; i < 100000; i++) {
        uint64_t now = prof_clock_ns();
        assert_true(now >= prev);
        prev = now;
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rate_matches_monotonic),
        cmocka_unit_test(test_never_goes_backwards),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
