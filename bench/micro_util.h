/* The clock and the data generator the single-thread microbenchmarks in bench/ share (their
 * sources define _POSIX_C_SOURCE 200809L before any include, for clock_gettime). */
#ifndef EDGELLM_BENCH_MICRO_UTIL_H
#define EDGELLM_BENCH_MICRO_UTIL_H

#include <stdint.h>
#include <time.h>

#if defined(__EMSCRIPTEN__)
#include <emscripten.h>
/* Emscripten's CPU-time clocks read the wall clock; under Node the process's CPU time is the
 * closest to a thread clock (the benchmarks run one thread). */
EM_JS(double, bench_node_cpu_seconds, (void), {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1e6;
});
#endif

/* Thread CPU time: on a shared machine the time this thread waits for a core does not count, so
 * other processes move the figures less than wall-clock time would. */
static inline double bench_thread_seconds(void)
{
#if defined(__EMSCRIPTEN__)
    return bench_node_cpu_seconds();
#else
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
#endif
}

/* Reproducible data in [-1, 1) from a caller-owned state (an LCG's top 53 bits): each benchmark
 * keeps its own seed, so its inputs do not depend on what else ran. */
static inline float bench_uniform(uint64_t *state)
{
    *state = *state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(*state >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

#endif
