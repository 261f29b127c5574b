/* Single-thread tile micro-benchmark: each weight type's GEMM tile of the kernel set in use,
 * against the integer-dot peak of the arithmetic its kernels use (machine.c's loop), in the same
 * process, interleaved round by round, best of the rounds, both timed by the thread's CPU time so
 * that other processes on a shared machine move neither figure.
 *
 *   build/gemm_micro [--kernels SET] [--rows R] [--cols N] [--tokens T] [--rounds K]
 *                    [--row-tile M] [TYPE...]
 *
 * The matrix is R rows of N columns (default 256 × 2048, tinyllama's width), multiplied by T
 * tokens (default 64) per call, the activations converted once beforehand (the tiles' share of
 * a prefill). With --row-tile the tile is called on M rows at a time, as ellm_matmul calls it (16
 * rows), so that what a tile amortizes over the rows of one call is measured as a prefill gets
 * it. A multiply-add counts two operations, as in `edgellm bench`. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "edgellm.h"
#include "machine.h"
#include "micro_util.h"
#include "quant/quant.h"

static int usage(void)
{
    fprintf(stderr, "usage: gemm_micro [--kernels SET] [--rows R] [--cols N] [--tokens T] "
                    "[--rounds K] [--row-tile M] [TYPE...]\n");
    return 2;
}

static bool parse_count(const char *s, long lo, long hi, long *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

int main(int argc, char **argv)
{
    long rows = 256, cols = 2048, tokens = 64, rounds = 5, row_tile = 0;
    const char *set = NULL;
    const char *types[32];
    int n_types = 0;
    for (int i = 1; i < argc; i++) {
        long *count = !strcmp(argv[i], "--rows")       ? &rows
                      : !strcmp(argv[i], "--cols")     ? &cols
                      : !strcmp(argv[i], "--tokens")   ? &tokens
                      : !strcmp(argv[i], "--rounds")   ? &rounds
                      : !strcmp(argv[i], "--row-tile") ? &row_tile
                                                       : NULL;
        if (count || !strcmp(argv[i], "--kernels")) {
            if (i + 1 >= argc)
                return usage();
            if (!count)
                set = argv[++i];
            else if (!parse_count(argv[++i], 1, 1 << 16, count)) {
                fprintf(stderr, "gemm_micro: %s needs a count from 1 to 65536\n", argv[i - 1]);
                return 2;
            }
        } else if (argv[i][0] == '-' || n_types == 32) {
            return usage();
        } else {
            types[n_types++] = argv[i];
        }
    }
    if (cols % 256) {
        fprintf(stderr, "gemm_micro: --cols must be a multiple of 256 (a K-quant super-block)\n");
        return 2;
    }
    if (set && edgellm_use_kernel_set(set) != EDGELLM_OK) {
        fprintf(stderr, "gemm_micro: %s\n", edgellm_last_error());
        return 2;
    }
    static const char *const all[] = {"q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "iq4_nl",
                                      "q2_K", "q3_K", "q4_K", "q5_K", "q6_K", "iq4_xs"};
    if (n_types == 0)
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            types[n_types++] = all[i];

    float *w = malloc(sizeof(float) * (size_t)(rows * cols));
    float *x = malloc(sizeof(float) * (size_t)(tokens * cols));
    float *y = malloc(sizeof(float) * (size_t)(tokens * rows));
    if (!w || !x || !y) {
        fprintf(stderr, "gemm_micro: out of memory\n");
        return 1;
    }
    uint64_t seed = 1;
    for (long i = 0; i < rows * cols; i++)
        w[i] = 0.5f * bench_uniform(&seed);
    for (long i = 0; i < tokens * cols; i++)
        x[i] = 0.5f * bench_uniform(&seed);

    if (row_tile == 0 || row_tile > rows)
        row_tile = rows;
    printf("kernel set %s, %ld rows x %ld columns x %ld tokens, %ld rows a call, one thread, best "
           "of %ld\n",
           ellm_kernel_set_name(), rows, cols, tokens, row_tile, rounds);
    printf("%-8s %-14s %10s %10s %7s\n", "type", "arithmetic", "tile GOP/s", "peak GOP/s", "ratio");
    int status = 0;
    for (int ti = 0; ti < n_types; ti++) {
        ellm_type type;
        ellm_gemm_fn gemm = NULL;
        const ellm_type_kernels *k = NULL;
        if (ellm_type_from_name(types[ti], &type)) {
            gemm = ellm_gemm_for(type);
            k = ellm_kernels_for(type);
        }
        if (!gemm || !k) {
            fprintf(stderr, "gemm_micro: no tile for '%s' in the %s set\n", types[ti],
                    ellm_kernel_set_name());
            status = 1;
            continue;
        }
        uint64_t w_row = 0;
        ellm_row_bytes(type, (uint64_t)cols, &w_row);
        /* The activation rows as ellm_matmul makes them for the tile. */
        ellm_act_layout layout = ellm_gemm_act_layout(type);
        size_t x_row = ellm_act_row_bytes(layout, k->vec_dot_type, cols);
        uint8_t *wq = malloc(w_row * (size_t)rows);
        uint8_t *xq = aligned_alloc(64, (x_row * (size_t)tokens + 63) / 64 * 64);
        if (!wq || !xq) {
            fprintf(stderr, "gemm_micro: out of memory\n");
            return 1;
        }
        for (long r = 0; r < rows; r++)
            ellm_quantize_row(type, w + r * cols, wq + (size_t)r * w_row, cols);
        for (long t = 0; t < tokens; t++)
            if (layout == ELLM_ACT_Q8_K_TILED)
                ellm_quantize_q8_K_tiled(x + t * cols, cols, xq, t, tokens);
            else
                ellm_quantize_act(layout, k->vec_dot_type, x + t * cols, xq + (size_t)t * x_row,
                                  cols);
        const char *arith = edgellm_kernel_arithmetic(types[ti]);
        double ops = 2.0 * (double)rows * (double)cols * (double)tokens;
        double best_tile = 0, best_peak = 0;
        for (long round = 0; round < rounds; round++) {
            /* About 0.1 s of tiles per round, then the peak loop. */
            int reps = 0;
            double t0 = bench_thread_seconds(), t;
            do {
                for (long r0 = 0; r0 < rows; r0 += row_tile)
                    gemm(cols, wq + (size_t)r0 * w_row, w_row,
                         rows - r0 < row_tile ? rows - r0 : row_tile, xq, x_row, tokens, y + r0,
                         rows);
                reps++;
                t = bench_thread_seconds() - t0;
            } while (t < 0.1);
            double rate = ops * reps / t / 1e9;
            best_tile = rate > best_tile ? rate : best_tile;
            double peak = machine_arith_peak_gops(arith, 1);
            best_peak = peak > best_peak ? peak : best_peak;
        }
        printf("%-8s %-14s %10.1f %10.1f %6.1f%%\n", types[ti], arith, best_tile, best_peak,
               best_peak > 0 ? 100.0 * best_tile / best_peak : 0.0);
        free(wq);
        free(xq);
    }
    free(w);
    free(x);
    free(y);
    return status;
}
