/* Software prefetch for the single-row kernels, which stream a weight matrix row after row (rows
 * are contiguous, so this runs on into the next rows). One core reaches well short of its read
 * bandwidth from the hardware prefetchers alone; asking for the bytes 4 KB ahead into L2 and 1 KB
 * ahead into L1 closes most of the gap (farther ahead into L1 is worse: each outstanding miss
 * holds one of the few L1 fill buffers). x86 only (SSE's prefetch, in every x86-64 CPU). */
#ifndef EDGELLM_QUANT_PREFETCH_H
#define EDGELLM_QUANT_PREFETCH_H

#include <stdint.h>
#include <xmmintrin.h>

enum {
    ELLM_PREFETCH_L2 = 4096, /* bytes of weights fetched ahead into L2 */
    ELLM_PREFETCH_L1 = 1024, /* and, nearer, into L1 */
};

/* Prefetches for the `bytes` weight bytes starting at `at` (a multiple of 64 is best: one
 * request a cache line). Prefetches never fault, so running past the end of the matrix is
 * harmless; the address is formed as an integer so no out-of-object pointer is made. */
static inline void ellm_prefetch_stream(const void *at, int bytes)
{
    for (int k = 0; k < bytes; k += 64) {
        _mm_prefetch((const char *)((uintptr_t)at + ELLM_PREFETCH_L2 + (unsigned)k), _MM_HINT_T1);
        _mm_prefetch((const char *)((uintptr_t)at + ELLM_PREFETCH_L1 + (unsigned)k), _MM_HINT_T0);
    }
}

/* The AVX2 single-row decode kernels' prefetch: into L1 only, ELLM_PREFETCH_AHEAD bytes ahead of
 * the `bytes` weight bytes at `at` (one request per 64 bytes). On the Xeon of session 9 (2 MiB
 * pages, one core) this took the AVX2 Q4_0 kernel from 0.55 to 0.9 of a streaming read and
 * Q8_0 from 0.87 to 1.0; 1024 and 3072-4096 bytes ahead, into L2 (T1) or non-temporally did less
 * or harm (docs/performance.md, "Session 9: AVX2 decode kernels"). */
enum { ELLM_PREFETCH_AHEAD = 2048 };

/* Forced inline: GCC 12 left a call to it out of line in kernels_avx2.c and then deleted the
 * call, the function having no effect it counts (no prefetch was emitted at all). */
static inline __attribute__((always_inline)) void ellm_prefetch_ahead(const void *at, int bytes)
{
    for (int k = 0; k < bytes; k += 64)
        _mm_prefetch((const char *)((uintptr_t)at + ELLM_PREFETCH_AHEAD + (unsigned)k),
                     _MM_HINT_T0);
}

#endif
