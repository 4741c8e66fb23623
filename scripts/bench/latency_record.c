/* latency_record: what tracfront's always-on latency accounting costs per
 * request, for scripts/bench-profiler. Times prof_latency_record() (the one
 * call the server makes per request, profiler/latency.c) on hello-like
 * samples: route "/", backend wsgi, status 200, varying durations, with the
 * default caps; first on one thread, then on THREADS threads at once (the
 * network threads share its lock).
 *
 *   latency_record [THREADS] [SECONDS]      defaults: 2 threads, 1 s per part
 *
 * Prints "one thread: N ns per request" and "T threads: N ns per request"
 * (wall time per call on each thread). Built by scripts/bench-profiler against
 * build/libtf_profiler.a. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "profiler/latency.h"

static double seconds = 1.0;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ns per call of prof_latency_record over about `seconds` */
static void *record_loop(void *arg)
{
    double *ns_per_call = arg;
    uint64_t start = now_ns(), end = start + (uint64_t)(seconds * 1e9), calls = 0, t;
    do {
        for (unsigned i = 0; i < 1000; i++, calls++) {
            uint64_t us = 1000 + (calls * 7919) % 500; /* varied, so buckets vary */
            struct prof_sample s = {
                .id = calls, .method = "GET", .target = "/", .backend = PROF_BACKEND_WSGI,
                .status = 200, .t_received = us, .t_dispatched = us + 3,
                .t_first_byte = us + 40 + calls % 17, .t_done = us + 45 + calls % 23,
            };
            prof_latency_record(&s);
        }
    } while ((t = now_ns()) < end);
    *ns_per_call = (double)(t - start) / (double)calls;
    return NULL;
}

int main(int argc, char **argv)
{
    unsigned threads = argc > 1 ? (unsigned)atoi(argv[1]) : 2;
    if (argc > 2)
        seconds = atof(argv[2]);
    if (threads < 1 || threads > 64 || seconds <= 0 || prof_latency_init(500, 20) < 0) {
        fprintf(stderr, "usage: latency_record [THREADS 1-64] [SECONDS]\n");
        return 2;
    }
    double one;
    record_loop(&one);
    printf("one thread: %.0f ns per request\n", one);
    pthread_t tids[64];
    double each[64], sum = 0;
    for (unsigned i = 0; i < threads; i++)
        pthread_create(&tids[i], NULL, record_loop, &each[i]);
    for (unsigned i = 0; i < threads; i++) {
        pthread_join(tids[i], NULL);
        sum += each[i];
    }
    printf("%u threads: %.0f ns per request\n", threads, sum / threads);
    return 0;
}
