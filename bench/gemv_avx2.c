/* Decode (one token) matrix-vector speed of one kernel set's single-row kernels, one thread, against
 * a streaming read of the same bytes timed in the same process. The matrix (larger than L3, as a
 * model's weights are) is cut into slices; each pass runs the kernel over slice s and the stream
 * over slice s + half, so both always read bytes that are out of cache, and every slice keeps its
 * best time of the passes. Times are the thread's CPU time: on a machine shared with other jobs
 * the time spent descheduled is not counted, and the kernel/stream ratio is what to compare.
 *
 *   cc -O2 -std=c11 -Isrc -Iinclude -Ibuild/include bench/gemv_avx2.c build/libedgellm_quant.a \
 *      build/libedgellm_core.a -lm -lpthread -o /tmp/gemv_avx2
 *   /tmp/gemv_avx2 [SET] [MIB] [PASSES] [TYPES]     (defaults: avx2 96 7, every quantized type)
 *
 * Prints, per weight type: the kernel's weight GB/s, the stream's GB/s and their ratio. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "quant/quant.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

enum { N_IN = 2048, DISTINCT_ROWS = 64, SLICE_BYTES = 2 << 20 };

/* Where the results go, so the compiler cannot drop the work that makes them. */
volatile uint64_t kept;

static const struct {
    const char *name;
    ellm_type type;
} types[] = {
    {"q4_0", ELLM_TYPE_Q4_0}, {"q8_0", ELLM_TYPE_Q8_0}, {"q4_1", ELLM_TYPE_Q4_1},
    {"q5_0", ELLM_TYPE_Q5_0}, {"q5_1", ELLM_TYPE_Q5_1}, {"iq4_nl", ELLM_TYPE_IQ4_NL},
    {"q2_k", ELLM_TYPE_Q2_K}, {"q3_k", ELLM_TYPE_Q3_K}, {"q4_k", ELLM_TYPE_Q4_K},
    {"q5_k", ELLM_TYPE_Q5_K}, {"q6_k", ELLM_TYPE_Q6_K}, {"iq4_xs", ELLM_TYPE_IQ4_XS},
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng = 0x2545f4914f6cdd1dull;
static float frand(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((double)(rng >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

/* Reads every byte once with the widest loads the build has, so the time is the memory's. */
#if defined(__x86_64__)
__attribute__((target("avx2"))) static uint64_t stream_read(const uint8_t *p, size_t bytes)
{
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i + 128 <= bytes; i += 128) {
        a0 = _mm256_xor_si256(a0, _mm256_loadu_si256((const __m256i *)(p + i)));
        a1 = _mm256_xor_si256(a1, _mm256_loadu_si256((const __m256i *)(p + i + 32)));
        a2 = _mm256_xor_si256(a2, _mm256_loadu_si256((const __m256i *)(p + i + 64)));
        a3 = _mm256_xor_si256(a3, _mm256_loadu_si256((const __m256i *)(p + i + 96)));
    }
    __m256i a = _mm256_xor_si256(_mm256_xor_si256(a0, a1), _mm256_xor_si256(a2, a3));
    return (uint64_t)_mm256_extract_epi64(a, 0) ^ (uint64_t)_mm256_extract_epi64(a, 3);
}
#else
static uint64_t stream_read(const uint8_t *p, size_t bytes)
{
    uint64_t a = 0, v;
    for (size_t i = 0; i + 8 <= bytes; i += 8) {
        memcpy(&v, p + i, 8);
        a ^= v;
    }
    return a;
}
#endif

int main(int argc, char **argv)
{
    const char *set = argc > 1 ? argv[1] : "avx2";
    size_t mib = argc > 2 ? (size_t)atol(argv[2]) : 96;
    int passes = argc > 3 ? atoi(argv[3]) : 7;
    const char *only = argc > 4 ? argv[4] : NULL;
    if (mib < 1 || passes < 1) {
        fprintf(stderr, "gemv_avx2: MIB and PASSES must be positive\n");
        return 2;
    }
    if (!ellm_quant_use_kernel_set(set)) {
        fprintf(stderr, "gemv_avx2: kernel set '%s' is not in this build or not on this CPU\n",
                set);
        return 2;
    }
    float *src = malloc(sizeof(float) * N_IN * DISTINCT_ROWS), *x = malloc(sizeof(float) * N_IN);
    for (int i = 0; i < N_IN * DISTINCT_ROWS; i++)
        src[i] = frand();
    for (int i = 0; i < N_IN; i++)
        x[i] = frand();
    printf("| type | kernel GB/s | stream GB/s | kernel / stream |\n|---|---|---|---|\n");
    uint64_t sink = 0;
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        if (only && !strstr(only, types[t].name))
            continue;
        const ellm_type_kernels *k = ellm_kernels_for(types[t].type);
        uint64_t row_bytes = 0;
        ellm_row_bytes(types[t].type, N_IN, &row_bytes);
        size_t rows = (mib << 20) / row_bytes, bytes = rows * row_bytes;
        uint8_t *w = aligned_alloc(64, (bytes + 63) / 64 * 64);
        for (int r = 0; r < DISTINCT_ROWS; r++)
            ellm_quantize_row(types[t].type, src + (size_t)r * N_IN, w + r * row_bytes, N_IN);
        for (size_t r = DISTINCT_ROWS; r < rows; r++)
            memcpy(w + r * row_bytes, w + (r % DISTINCT_ROWS) * row_bytes, row_bytes);
        /* The activation row as the decode path gives it to this kernel set. */
        ellm_vec_dot_fn dot = k->vec_dot_ext ? k->vec_dot_ext : k->vec_dot;
        uint64_t act_bytes = 0;
        if (k->vec_dot_ext)
            act_bytes = ellm_q8_0_ext_layout_for(N_IN).row_bytes;
        else if (k->vec_dot_type == ELLM_TYPE_F32)
            act_bytes = N_IN * sizeof(float);
        else
            ellm_row_bytes(k->vec_dot_type, N_IN, &act_bytes);
        void *xq = aligned_alloc(64, (act_bytes + 63) / 64 * 64);
        if (k->vec_dot_ext)
            ellm_quantize_q8_0_ext(x, xq, N_IN);
        else
            ellm_quantize_activations(k->vec_dot_type, x, xq, N_IN);
        float *y = malloc(sizeof(float) * rows);
        size_t slice_rows = SLICE_BYTES / row_bytes, n_slices = rows / slice_rows;
        double *best_kernel = malloc(sizeof(double) * n_slices);
        double *best_stream = malloc(sizeof(double) * n_slices);
        for (size_t s = 0; s < n_slices; s++)
            best_kernel[s] = best_stream[s] = 1e30;
        for (int p = 0; p < passes; p++) {
            for (size_t s = 0; s < n_slices; s++) {
                size_t r0 = s * slice_rows, other = (s + n_slices / 2) % n_slices;
                double t0 = now_s();
                for (size_t r = r0; r < r0 + slice_rows; r++)
                    dot(N_IN, &y[r], w + r * row_bytes, xq);
                double t1 = now_s();
                sink ^= stream_read(w + other * slice_rows * row_bytes, slice_rows * row_bytes);
                double t2 = now_s();
                best_kernel[s] = t1 - t0 < best_kernel[s] ? t1 - t0 : best_kernel[s];
                best_stream[other] = t2 - t1 < best_stream[other] ? t2 - t1 : best_stream[other];
            }
            sink ^= (uint64_t)(y[rows / 2] != 0);
        }
        double kernel_s = 0, stream_s = 0;
        for (size_t s = 0; s < n_slices; s++)
            kernel_s += best_kernel[s], stream_s += best_stream[s];
        bytes = n_slices * slice_rows * row_bytes;
        free(best_kernel);
        free(best_stream);
        printf("| %s | %.2f | %.2f | %.1f %% |\n", types[t].name, 1e-9 * (double)bytes / kernel_s,
               1e-9 * (double)bytes / stream_s, 100.0 * stream_s / kernel_s);
        fflush(stdout);
        free(y);
        free(xq);
        free(w);
    }
    free(src);
    free(x);
    kept = sink;
    return 0;
}
