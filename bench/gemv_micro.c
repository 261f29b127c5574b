/* Decode gemv kernels against a plain streaming read of the same bytes, one thread, in one
 * process: for each weight type, a matrix larger than the last-level cache is multiplied by one
 * activation row with the kernel set's decode kernels (what ellm_matmul calls for one token:
 * vec_dot_rows for groups of rows where the set has it, vec_dot_ext where the set has one, else
 * vec_dot; where there is a multi-row kernel, the single-row kernel is timed too), and
 * the same number of bytes is read by a simple vector loop; the two are interleaved and the best
 * of N of each (thread CPU time) is kept, so that a busy shared machine slows both alike. The ratio kernel ÷ read
 * is how close a kernel comes to being memory-bound on one core.
 *
 *   build/gemv_micro [--kernels SET] [--mib 256] [--reps 7] [--cols 2048] [TYPE...]
 *
 * Not a test: it asserts nothing and its numbers depend on the machine. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "micro_util.h"
#include "quant/quant.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

/* Reads every byte once with four independent 32-byte streams of XORs: no arithmetic to speak
 * of, so it runs at the rate one core can pull bytes from memory. */
#if defined(__x86_64__)
__attribute__((target("avx2"))) static uint64_t stream_read(const uint8_t *p, size_t bytes)
{
    __m256i acc[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                      _mm256_setzero_si256()};
    size_t i = 0;
    for (; i + 128 <= bytes; i += 128)
        for (int k = 0; k < 4; k++)
            acc[k] = _mm256_xor_si256(acc[k], _mm256_load_si256((const __m256i *)(p + i + 32 * k)));
    __m256i all = _mm256_xor_si256(_mm256_xor_si256(acc[0], acc[1]),
                                   _mm256_xor_si256(acc[2], acc[3]));
    uint64_t lanes[4];
    _mm256_storeu_si256((__m256i *)lanes, all);
    return lanes[0] ^ lanes[1] ^ lanes[2] ^ lanes[3];
}
#else
static uint64_t stream_read(const uint8_t *p, size_t bytes)
{
    uint64_t acc[4] = {0, 0, 0, 0};
    for (size_t i = 0; i + 32 <= bytes; i += 32)
        for (int k = 0; k < 4; k++) {
            uint64_t v;
            memcpy(&v, p + i + 8 * k, 8);
            acc[k] ^= v;
        }
    return acc[0] ^ acc[1] ^ acc[2] ^ acc[3];
}
#endif

typedef struct bench_result {
    double kernel_gbs, read_gbs, single_gbs; /* single_gbs: 0 without a multi-row kernel */
    float checksum;
} bench_result;

/* A rows × cols matrix of the type made of a few distinct quantized rows repeated (the values do
 * not change the work; quantizing hundreds of MB would take minutes). */
static bool bench_type(ellm_type type, size_t target_bytes, int64_t cols, int reps,
                       bench_result *res)
{
    const ellm_type_kernels *k = ellm_kernels_for(type);
    uint64_t row_bytes = 0;
    if (!k || !ellm_row_bytes(type, (uint64_t)cols, &row_bytes))
        return false;
    int64_t rows = (int64_t)(target_bytes / row_bytes);
    size_t bytes = (size_t)rows * row_bytes;
    uint8_t *w = aligned_alloc(64, (bytes + 63) / 64 * 64);
    uint8_t *plain = aligned_alloc(64, (bytes + 63) / 64 * 64);
    float *x = malloc((size_t)cols * sizeof(float));
    float *y = malloc((size_t)rows * sizeof(float));
    enum { DISTINCT = 61 };
    uint64_t seed = 12345;
    for (int64_t c = 0; c < cols; c++)
        x[c] = bench_uniform(&seed);
    for (int64_t r = 0; r < DISTINCT && r < rows; r++) {
        for (int64_t c = 0; c < cols; c++)
            x[c] = bench_uniform(&seed) * (1.0f + (float)(c % 7));
        ellm_quantize_row(type, x, w + (size_t)r * row_bytes, cols);
    }
    for (int64_t r = DISTINCT; r < rows; r++)
        memcpy(w + (size_t)r * row_bytes, w + (size_t)(r % DISTINCT) * row_bytes, row_bytes);
    memset(plain, 1, bytes);
    for (int64_t c = 0; c < cols; c++)
        x[c] = bench_uniform(&seed);
    /* The activation row in the layout the decode path gives the kernel. */
    ellm_act_layout layout = k->vec_dot_ext ? k->ext_layout : ELLM_ACT_PLAIN;
    ellm_vec_dot_fn dot = k->vec_dot_ext ? k->vec_dot_ext : k->vec_dot;
    size_t xq_bytes = ellm_act_row_bytes(layout, k->vec_dot_type, cols);
    void *xq = aligned_alloc(64, (xq_bytes + 63) / 64 * 64);
    ellm_quantize_act(layout, k->vec_dot_type, x, xq, cols);

    double best_kernel = 1e30, best_read = 1e30, best_single = 1e30;
    uint64_t sink = 0;
    for (int rep = 0; rep < reps; rep++) {
        double t0 = bench_thread_seconds();
        sink ^= stream_read(plain, bytes);
        double t1 = bench_thread_seconds();
        int64_t r = 0;
        if (k->vec_dot_rows)
            for (; r + ELLM_DOT_ROWS <= rows; r += ELLM_DOT_ROWS)
                k->vec_dot_rows(cols, &y[r], w + (size_t)r * row_bytes, row_bytes, xq);
        for (; r < rows; r++)
            dot(cols, &y[r], w + (size_t)r * row_bytes, xq);
        double t2 = bench_thread_seconds();
        for (r = 0; k->vec_dot_rows && r < rows; r++)
            dot(cols, &y[r], w + (size_t)r * row_bytes, xq);
        double t3 = bench_thread_seconds();
        best_read = t1 - t0 < best_read ? t1 - t0 : best_read;
        best_kernel = t2 - t1 < best_kernel ? t2 - t1 : best_kernel;
        best_single = t3 - t2 < best_single ? t3 - t2 : best_single;
    }
    res->kernel_gbs = (double)bytes / best_kernel * 1e-9;
    res->read_gbs = (double)bytes / best_read * 1e-9;
    res->single_gbs = k->vec_dot_rows ? (double)bytes / best_single * 1e-9 : 0;
    res->checksum = y[0] + y[rows / 2] + (float)(sink & 1);
    free(w), free(plain), free(x), free(y), free(xq);
    return true;
}

static int usage(void)
{
    fprintf(stderr,
            "usage: gemv_micro [--kernels SET] [--mib N] [--reps N] [--cols N] [TYPE...]\n");
    return 2;
}

int main(int argc, char **argv)
{
    size_t mib = 256;
    int reps = 7;
    int64_t cols = 2048;
    const char *default_types[] = {"q4_0", "q8_0", "q2_K", "q3_K",
                                   "q4_K", "q5_K", "q6_K", "iq4_xs"};
    const char **types = default_types;
    int n_types = (int)(sizeof default_types / sizeof default_types[0]);
    int a = 1;
    for (; a < argc && argv[a][0] == '-'; a += 2) {
        if (a + 1 >= argc)
            return usage();
        if (!strcmp(argv[a], "--kernels")) {
            if (!ellm_quant_use_kernel_set(argv[a + 1])) {
                fprintf(stderr, "gemv_micro: kernel set '%s' is not available on this CPU\n",
                        argv[a + 1]);
                return 2;
            }
        } else if (!strcmp(argv[a], "--mib") && atoi(argv[a + 1]) > 0) {
            mib = (size_t)atoi(argv[a + 1]);
        } else if (!strcmp(argv[a], "--reps") && atoi(argv[a + 1]) > 0) {
            reps = atoi(argv[a + 1]);
        } else if (!strcmp(argv[a], "--cols") && atoi(argv[a + 1]) > 0) {
            cols = atoi(argv[a + 1]);
        } else {
            return usage();
        }
    }
    if (a < argc) {
        types = (const char **)(argv + a);
        n_types = argc - a;
    }
    printf("kernel set %s, one thread, %zu MiB matrices of %lld columns, best of %d\n",
           ellm_kernel_set_name(), mib, (long long)cols, reps);
    printf("| type | isa | kernel GB/s | read GB/s | kernel / read | single-row / read |\n"
           "|---|---|---|---|---|---|\n");
    for (int i = 0; i < n_types; i++) {
        ellm_type type;
        bench_result r;
        if (!ellm_type_from_name(types[i], &type)) {
            fprintf(stderr, "gemv_micro: unknown type '%s'\n", types[i]);
            return 2;
        }
        if (!bench_type(type, mib << 20, cols, reps, &r)) {
            printf("| %s | no kernel or %lld columns do not split into its blocks |\n", types[i],
                   (long long)cols);
            continue;
        }
        printf("| %s | %s | %.1f | %.1f | %.2f |", types[i], ellm_kernels_for(type)->isa,
               r.kernel_gbs, r.read_gbs, r.kernel_gbs / r.read_gbs);
        if (r.single_gbs > 0)
            printf(" %.2f |\n", r.single_gbs / r.read_gbs);
        else
            printf(" - |\n");
        fflush(stdout);
        if (r.checksum != r.checksum)
            fprintf(stderr, "gemv_micro: %s produced NaN\n", types[i]);
    }
    return 0;
}
