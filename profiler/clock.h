/* clock.h — the function profiler's clock: nanoseconds from the CPU's
 * time-stamp counter where it is invariant (x86-64 with constant, non-stop
 * TSC), calibrated once against CLOCK_MONOTONIC; clock_gettime elsewhere.
 * A profiled request reads the clock twice per call, and in a virtual machine
 * clock_gettime costs as much as the interpreter's own work per call, so this
 * is the profiler's largest single saving. Readings are only ever subtracted
 * from one another (durations); they are not comparable with other clocks.
 *
 * --profile-clock cpu reads the calling thread's CPU time instead
 * (CLOCK_THREAD_CPUTIME_ID, yappi's cpu clock): a call's time then leaves out
 * what its thread spent waiting — for I/O, in sleep, or for the GIL while
 * other requests' threads ran — which the wall clock bills to the call that
 * released the GIL. Such readings are only subtracted on one thread: a
 * profiled request's calls are all timed on its app thread. */
#ifndef PROF_CLOCK_H
#define PROF_CLOCK_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

/* Calibrate (about 5 ms, once; later calls return at once). Any thread;
 * call it before the first prof_clock_ns() reading that matters. */
void prof_clock_init(void);
/* Nanoseconds per tick in 32.32 fixed point: one integer multiply per
 * reading (a double's conversions cost a quarter of the frame hook). 0: no
 * usable TSC, or not calibrated. */
extern uint64_t prof_clock_mult;
extern uint64_t prof_clock_tick_base;
/* prof_clock_ns() reads the thread's CPU time: set by prof_clock_use_cpu()
 * before any profiled request, read-only afterwards. */
extern bool prof_clock_cpu;

/* Before any profiled request (main thread): the thread CPU-time clock
 * (true) or the wall clock (false, the default, as cProfile's). */
void prof_clock_use_cpu(bool cpu);

static inline uint64_t prof_monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t prof_clock_ns(void)
{
    if (prof_clock_cpu) {
        struct timespec ts;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    }
#if defined(__x86_64__)
    if (prof_clock_mult)
        return (uint64_t)(((unsigned __int128)(__rdtsc() - prof_clock_tick_base) *
                           prof_clock_mult) >> 32);
#endif
    return prof_monotonic_ns();
}

#endif
