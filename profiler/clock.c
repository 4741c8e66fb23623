/* clock.c — see clock.h. */
#include "profiler/clock.h"

#include <pthread.h>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

uint64_t prof_clock_mult;
uint64_t prof_clock_tick_base;
bool prof_clock_cpu;

void prof_clock_use_cpu(bool cpu)
{
    prof_clock_cpu = cpu;
}

#if defined(__x86_64__)
/* CPUID leaf 0x80000007, EDX bit 8: the TSC runs at a constant rate in every
 * power state (Linux's constant_tsc + nonstop_tsc). */
static bool tsc_invariant(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(0x80000000u, &a, &b, &c, &d) || a < 0x80000007u)
        return false;
    if (!__get_cpuid(0x80000007u, &a, &b, &c, &d))
        return false;
    return (d >> 8) & 1u;
}

/* Ticks and nanoseconds over the same ~5 ms, each end taken between two
 * clock readings so a preemption cannot stretch one side only. */
static void calibrate(void)
{
    if (!tsc_invariant())
        return;
    uint64_t ns0 = prof_monotonic_ns(), t0 = __rdtsc(), ns1;
    while ((ns1 = prof_monotonic_ns()) - ns0 < 5000000u) {
    }
    uint64_t t1 = __rdtsc();
    if (t1 <= t0)
        return;
    prof_clock_tick_base = t0;
    prof_clock_mult = (uint64_t)((double)(ns1 - ns0) / (double)(t1 - t0) * 4294967296.0 + 0.5);
}
#else
static void calibrate(void)
{
}
#endif

/* pthread_once orders the calibration before every caller's later reads;
 * threads started after prof_clock_init() returned see it too. */
void prof_clock_init(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, calibrate);
}
