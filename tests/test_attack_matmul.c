/* Hostile shapes for ellm_matmul, ellm_matmul_multi and ellm_matmul_gated on every kernel set this
 * CPU runs: 1..40 output rows (mostly not multiples of the 8-row decode groups or the 16-row
 * chunks), inputs of one or a few blocks, more threads than rows, a second weight whose rows start
 * mid-group in a shared dispatch. Each value must be what the contract says: independent of the
 * thread count and of the batch (decode and prefill agree), bit-identical to the scalar set where
 * docs/performance.md says so and within the float reassociation bound elsewhere, and the gated
 * dispatch exactly the two matmuls followed by the activation. Scratch is allocated at exactly
 * ellm_matmul_scratch_bytes so the sanitizer build sees any overrun. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/threadpool.h"
#include "quant/kernels.h"
#include "quant/quant.h"
#include "test_util.h"
#include "test_weight.h"

enum { MAX_ROWS = 40, MAX_IN = 512, MAX_T = 5, MAX_SETS = 8 };

/* One thread is the reference (no pool); 8 is more threads than many of the row counts. */
static const int thread_counts[] = {2, 8};
enum { N_POOLS = sizeof thread_counts / sizeof thread_counts[0] };
static ellm_threadpool *pools[N_POOLS];

static float w[2 * MAX_ROWS * MAX_IN], x[MAX_T * MAX_IN];
static uint8_t wq[2 * MAX_ROWS * MAX_IN * 4];

/* The documented exactness against the scalar set: integer kernels of the AVX-512, NEON and
 * SIMD128 sets, and the K-quant/IQ4_XS kernels of every set (the AVX2 ones included), tiles and
 * single rows alike. */
static bool exact_vs_scalar(ellm_type type, const ellm_type_kernels *k)
{
    if (k->vec_dot_type == ELLM_TYPE_F32)
        return false;
    if (type == ELLM_TYPE_Q2_K || type == ELLM_TYPE_Q3_K || type == ELLM_TYPE_Q4_K ||
        type == ELLM_TYPE_Q5_K || type == ELLM_TYPE_Q6_K || type == ELLM_TYPE_IQ4_XS)
        return true;
    const char *isas[2] = {k->isa, k->gemm && k->gemm_isa ? k->gemm_isa : k->isa};
    for (int i = 0; i < 2; i++)
        if (strcmp(isas[i], "avx512") && strncmp(isas[i], "neon", 4) &&
            strcmp(isas[i], "wasm-simd") && strcmp(isas[i], "scalar"))
            return false;
    return true;
}

/* sum |w_i x_i| over a row: the scale of the float reassociation bound. */
static double row_magnitude(const ellm_tensor *t, int64_t r, const float *xt)
{
    static float wd[MAX_IN];
    ellm_dequantize_row(t->type, (const uint8_t *)t->data + r * t->row_bytes, wd, t->ne[0]);
    double mag = 0;
    for (int64_t i = 0; i < t->ne[0]; i++)
        mag += fabs((double)wd[i] * xt[i]);
    return mag;
}

static void gated_combine(float *a, const float *b, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        a[i] = a[i] / (1.0f + expf(-a[i])) * b[i];
}

static int compared_exact, compared_bound;

/* One weight (type, n_in, rows) on the active set: every thread count and batch against the
 * set's own single-thread single-token values, and those against the scalar set's. */
static void attack_one(const char *set, ellm_type type, int64_t n_in, int64_t rows,
                       const float *scalar_y)
{
    static float y[MAX_T * MAX_ROWS], ref[MAX_T * MAX_ROWS];
    ellm_tensor t = test_quantized_weight(type, n_in, rows, w, wq);
    const ellm_type_kernels *k = ellm_kernels_for(type);
    void *scratch = malloc(ellm_matmul_scratch_bytes(&t, MAX_T));
    CHECK(scratch != NULL || ellm_matmul_scratch_bytes(&t, MAX_T) == 0);
    /* Decode, token by token, one thread: the values everything else must reproduce. */
    for (int tok = 0; tok < MAX_T; tok++)
        ellm_matmul(NULL, &t, x + tok * n_in, 1, ref + tok * rows, scratch);
    bool exact = exact_vs_scalar(type, k);
    for (int tok = 0; tok < MAX_T; tok++)
        for (int64_t r = 0; r < rows; r++) {
            float got = ref[tok * rows + r], want = scalar_y[tok * rows + r];
            if (exact) {
                CHECK_MSG(!memcmp(&got, &want, sizeof got),
                          "%s %s in=%lld rows=%lld row %lld token %d: %.9g, scalar %.9g", set,
                          ellm_type_name(type), (long long)n_in, (long long)rows, (long long)r, tok,
                          got, want);
                compared_exact++;
            } else {
                double bound = 2e-5 * row_magnitude(&t, r, x + tok * n_in) + 1e-30;
                CHECK_MSG(fabs((double)got - want) <= bound,
                          "%s %s in=%lld rows=%lld row %lld token %d: %.9g, scalar %.9g (bound "
                          "%g)",
                          set, ellm_type_name(type), (long long)n_in, (long long)rows, (long long)r,
                          tok, got, want, bound);
                compared_bound++;
            }
        }
    for (int p = 0; p < N_POOLS; p++)
        for (int64_t nt = 1; nt <= MAX_T; nt += nt == 2 ? 3 : 1) {
            memset(y, 0xff, sizeof y);
            ellm_matmul(pools[p], &t, x, nt, y, scratch);
            CHECK_MSG(!memcmp(y, ref, (size_t)(nt * rows) * sizeof(float)),
                      "%s %s in=%lld rows=%lld: %lld tokens on %d threads differ from each "
                      "token alone",
                      set, ellm_type_name(type), (long long)n_in, (long long)rows, (long long)nt,
                      thread_counts[p]);
        }
    /* A decode call must not write past its rows. */
    float guard[MAX_ROWS + 1];
    guard[rows] = 1234.5f;
    ellm_matmul(pools[N_POOLS - 1], &t, x, 1, guard, scratch);
    CHECK(guard[rows] == 1234.5f);
    free(scratch);
}

/* Two weights in one dispatch, the second's rows starting wherever the first's end (mid-group),
 * and the same pair gated: exactly the separate matmuls (and the activation over whole rows). */
static void attack_pair(const char *set, ellm_type type, int64_t n_in, int64_t rows_a,
                        int64_t rows_b)
{
    static float ya[MAX_T * MAX_ROWS], yb[MAX_T * MAX_ROWS], ra[MAX_T * MAX_ROWS],
        rb_[MAX_T * MAX_ROWS];
    uint64_t rbytes = 0;
    ellm_row_bytes(type, (uint64_t)n_in, &rbytes);
    ellm_tensor a = test_quantized_weight(type, n_in, rows_a, w, wq);
    ellm_tensor b = test_quantized_weight(type, n_in, rows_b, w + MAX_ROWS * MAX_IN,
                                          wq + rbytes * (uint64_t)rows_a);
    void *scratch = malloc(ellm_matmul_scratch_bytes(&a, MAX_T));
    for (int p = 0; p < N_POOLS; p++)
        for (int64_t nt = 1; nt <= MAX_T; nt += nt == 2 ? 3 : 1) {
            ellm_matmul(NULL, &a, x, nt, ra, scratch);
            ellm_matmul(NULL, &b, x, nt, rb_, scratch);
            const ellm_tensor *ws[2] = {&a, &b};
            float *ys[2] = {ya, yb};
            ellm_matmul_multi(pools[p], ws, 2, x, nt, ys, scratch);
            CHECK_MSG(!memcmp(ya, ra, (size_t)(nt * rows_a) * sizeof(float)) &&
                          !memcmp(yb, rb_, (size_t)(nt * rows_b) * sizeof(float)),
                      "%s %s in=%lld: %lld + %lld rows in one dispatch (%lld tokens, %d "
                      "threads) differ from each alone",
                      set, ellm_type_name(type), (long long)n_in, (long long)rows_a,
                      (long long)rows_b, (long long)nt, thread_counts[p]);
            if (rows_a != rows_b)
                continue;
            gated_combine(ra, rb_, nt * rows_a);
            ellm_matmul_gated(pools[p], &a, &b, x, nt, ya, yb, gated_combine, scratch);
            CHECK_MSG(!memcmp(ya, ra, (size_t)(nt * rows_a) * sizeof(float)) &&
                          !memcmp(yb, rb_, (size_t)(nt * rows_a) * sizeof(float)),
                      "%s %s in=%lld rows=%lld: gated (%lld tokens, %d threads) differs from "
                      "the matmuls and the activation",
                      set, ellm_type_name(type), (long long)n_in, (long long)rows_a, (long long)nt,
                      thread_counts[p]);
        }
    free(scratch);
}

/* Session 9: each thread owns a contiguous range of rows (at most 32 ranges, threads beyond share
 * them) and then helps the others. Spans shorter than ROW_TILE x threads leave ranges empty or
 * shorter than a tile; 33+ threads share ranges; a q/k/v dispatch numbers the rows of three weights
 * one after another, so range and chunk edges fall inside a weight, mid-group. Whatever the split,
 * every value must be the one thread's. */
enum { BIG_ROWS = 16 * 64 + 17, BIG_IN = 256 };
static float bw[3][BIG_ROWS * BIG_IN];
static uint8_t bq[3][BIG_ROWS * BIG_IN * 2];
static float by[3][MAX_T * BIG_ROWS], bref[3][MAX_T * BIG_ROWS];

static int range_checks;

static void attack_ranges(ellm_threadpool *pool, int threads, const char *set, ellm_type type,
                          int64_t n_in, int64_t rows)
{
    int64_t kv = rows / 4 + 3 < BIG_ROWS ? rows / 4 + 3 : BIG_ROWS;
    int64_t n_rows[3] = {rows, kv, kv};
    ellm_tensor t[3];
    for (int i = 0; i < 3; i++)
        t[i] = test_quantized_weight(type, n_in, n_rows[i], bw[i], bq[i]);
    void *scratch = malloc(ellm_matmul_scratch_bytes(&t[0], MAX_T) + 1);
    const ellm_tensor *ws[3] = {&t[0], &t[1], &t[2]};
    float *ys[3] = {by[0], by[1], by[2]};
    for (int64_t nt = 1; nt <= MAX_T; nt += nt == 3 ? 2 : 1) {
        for (int i = 0; i < 3; i++)
            ellm_matmul(NULL, &t[i], x, nt, bref[i], scratch);
        for (int n_w = 1; n_w <= 3; n_w++) {
            for (int i = 0; i < 3; i++)
                memset(by[i], 0xff, sizeof by[i]);
            ellm_matmul_multi(pool, ws, n_w, x, nt, ys, scratch);
            for (int i = 0; i < n_w; i++)
                CHECK_MSG(!memcmp(by[i], bref[i], (size_t)(nt * n_rows[i]) * sizeof(float)) &&
                              by[i][nt * n_rows[i]] != by[i][nt * n_rows[i]],
                          "%s %s in=%lld: weight %d of %d (%lld rows, %lld tokens) on %d threads "
                          "differs from one thread or writes past its rows",
                          set, ellm_type_name(type), (long long)n_in, i, n_w, (long long)n_rows[i],
                          (long long)nt, threads);
            range_checks++;
        }
        /* gate/up: the pair's span is one weight's rows. */
        ellm_tensor up = test_quantized_weight(type, n_in, rows, bw[1], bq[1]);
        ellm_matmul(NULL, &up, x, nt, bref[1], scratch);
        gated_combine(bref[0], bref[1], nt * rows);
        memset(by[0], 0xff, sizeof by[0]);
        memset(by[1], 0xff, sizeof by[1]);
        ellm_matmul_gated(pool, &t[0], &up, x, nt, by[0], by[1], gated_combine, scratch);
        CHECK_MSG(!memcmp(by[0], bref[0], (size_t)(nt * rows) * sizeof(float)) &&
                      !memcmp(by[1], bref[1], (size_t)(nt * rows) * sizeof(float)) &&
                      by[0][nt * rows] != by[0][nt * rows],
                  "%s %s in=%lld: gated %lld rows, %lld tokens on %d threads differs from one "
                  "thread",
                  set, ellm_type_name(type), (long long)n_in, (long long)rows, (long long)nt,
                  threads);
        range_checks++;
    }
    free(scratch);
}

static void attack_thread_counts(const char *const *sets, int n_sets)
{
    uint64_t seed = 0xa77ac4ull;
    for (int i = 0; i < 3; i++)
        for (size_t j = 0; j < sizeof bw[i] / sizeof bw[i][0]; j++)
            bw[i][j] = test_rand_gauss(&seed);
#ifdef ATTACK_FEW_THREAD_COUNTS
    /* Under emulation (the ARM64 run under qemu-user) dozens of spinning threads on two cores
     * take minutes; the split is portable C, swept in full by the native run. */
    const int counts[] = {1, 3, 33};
#else
    const int counts[] = {1, 2, 3, 5, 9, 16, 17, 32, 33, 34, 64};
#endif
    const ellm_type types[] = {ELLM_TYPE_F16, ELLM_TYPE_Q8_0, ELLM_TYPE_Q4_K, ELLM_TYPE_Q6_K,
                               ELLM_TYPE_IQ4_XS};
    for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
        int n = counts[c];
        ellm_threadpool *pool = NULL;
        CHECK(ellm_threadpool_create(n, &pool) == EDGELLM_OK);
        /* Fewer rows than threads, a tile short of and past ROW_TILE x threads, and past the 32
         * ranges' tiles. */
        const int64_t rows[] = {1, 15, 17, 16 * (int64_t)n - 1, 16 * (int64_t)n + 1, 33 * 16 + 5};
        for (int s = 0; s < n_sets; s++) {
            CHECK(ellm_quant_use_kernel_set(sets[s]));
            for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
                uint32_t bs = ellm_type_traits_of((uint32_t)types[ti])->block_size;
                int64_t n_in = bs == 1 ? 40 : bs == 32 ? 64 : BIG_IN;
                for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++)
                    if (rows[r] >= 1 && rows[r] <= BIG_ROWS - 1)
                        attack_ranges(pool, n, sets[s], types[ti], n_in, rows[r]);
            }
        }
        ellm_threadpool_free(pool);
    }
    fprintf(stderr, "thread counts 1..64: %d dispatches bit-identical to one thread\n",
            range_checks);
    CHECK(range_checks > 0);
}

int main(void)
{
    uint64_t seed = 0x5eed8a77ull;
    for (size_t i = 0; i < sizeof w / sizeof w[0]; i++)
        w[i] = test_rand_gauss(&seed) * (i % 97 == 0 ? 30.0f : 1.0f);
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++)
        x[i] = test_rand_gauss(&seed);
    for (int64_t r = 0; r < MAX_IN; r++) /* a zero row among them */
        w[5 * MAX_IN + r] = 0.0f;
    for (int p = 0; p < N_POOLS; p++)
        CHECK(ellm_threadpool_create(thread_counts[p], &pools[p]) == EDGELLM_OK);

    const char *sets[MAX_SETS];
    int n_sets = ellm_kernel_sets_available(sets, MAX_SETS);
    CHECK(n_sets >= 1 && n_sets <= MAX_SETS);
    const ellm_type types[] = {ELLM_TYPE_F32,  ELLM_TYPE_F16,    ELLM_TYPE_BF16,  ELLM_TYPE_Q8_0,
                               ELLM_TYPE_Q4_0, ELLM_TYPE_Q4_1,   ELLM_TYPE_Q5_0,  ELLM_TYPE_Q5_1,
                               ELLM_TYPE_Q2_K, ELLM_TYPE_Q3_K,   ELLM_TYPE_Q4_K,  ELLM_TYPE_Q5_K,
                               ELLM_TYPE_Q6_K, ELLM_TYPE_IQ4_NL, ELLM_TYPE_IQ4_XS};
    static float scalar_y[MAX_T * MAX_ROWS];
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        ellm_type type = types[ti];
        uint32_t bs = ellm_type_traits_of((uint32_t)type)->block_size;
        /* One block, and a few (an odd count for the 32-value types). */
        int64_t ins[2] = {bs == 1 ? 7 : bs, bs == 1 ? 33 : bs == 32 ? 9 * 32 : 2 * bs};
        for (int ii = 0; ii < 2; ii++) {
            int64_t n_in = ins[ii];
            for (int64_t rows = 1; rows <= MAX_ROWS; rows++) {
                /* Every count at one block; around the 8- and 16-row boundaries at several. */
                if (ii == 1 && rows % 8 != 0 && rows % 8 != 1 && rows % 8 != 7)
                    continue;
                CHECK(ellm_quant_use_kernel_set("scalar"));
                ellm_tensor t = test_quantized_weight(type, n_in, rows, w, wq);
                void *scratch = malloc(ellm_matmul_scratch_bytes(&t, 1) + 1);
                for (int tok = 0; tok < MAX_T; tok++)
                    ellm_matmul(NULL, &t, x + tok * n_in, 1, scalar_y + tok * rows, scratch);
                free(scratch);
                /* The scalar set itself against the dequantized weights and activations:
                 * only the float sum's rounding differs, and for Q4_1/Q5_1 the activation
                 * block sums, which Q8_1 stores in half precision. */
                bool half_sums = type == ELLM_TYPE_Q4_1 || type == ELLM_TYPE_Q5_1;
                const ellm_type_kernels *sk = ellm_kernels_for(type);
                static float xd[MAX_IN];
                static uint8_t xq[MAX_IN * 4];
                if (sk->vec_dot_type == ELLM_TYPE_F32) {
                    memcpy(xd, x, sizeof(float) * (size_t)n_in);
                } else {
                    ellm_quantize_row(sk->vec_dot_type, x, xq, n_in);
                    ellm_dequantize_row(sk->vec_dot_type, xq, xd, n_in);
                }
                for (int64_t r = 0; r < rows; r++) {
                    static float wd[MAX_IN];
                    ellm_dequantize_row(type, wq + r * t.row_bytes, wd, n_in);
                    double s = 0, mag = 0;
                    for (int64_t i = 0; i < n_in; i++) {
                        s += (double)wd[i] * xd[i];
                        mag += fabs((double)wd[i] * xd[i]);
                    }
                    CHECK_MSG(fabs(s - scalar_y[r]) <= (half_sums ? 2e-3 : 1e-5) * mag + 1e-30,
                              "scalar %s in=%lld row %lld: %.9g, naive %.9g", ellm_type_name(type),
                              (long long)n_in, (long long)r, scalar_y[r], s);
                }
                for (int set = 0; set < n_sets; set++) {
                    CHECK(ellm_quant_use_kernel_set(sets[set]));
                    attack_one(sets[set], type, n_in, rows, scalar_y);
                }
            }
            for (int set = 0; set < n_sets; set++) {
                CHECK(ellm_quant_use_kernel_set(sets[set]));
                const int64_t pairs[][2] = {{1, 1},   {3, 5},   {7, 7},   {9, 9},   {13, 21},
                                            {17, 17}, {23, 23}, {33, 33}, {40, 40}, {39, 1}};
                for (size_t p = 0; p < sizeof pairs / sizeof pairs[0]; p++)
                    attack_pair(sets[set], type, n_in, pairs[p][0], pairs[p][1]);
            }
        }
    }
    attack_thread_counts(sets, n_sets);
    ellm_quant_use_kernel_set(NULL);
    for (int p = 0; p < N_POOLS; p++)
        ellm_threadpool_free(pools[p]);
    fprintf(stderr, "%d sets; %d values exact against scalar, %d within the float bound\n", n_sets,
            compared_exact, compared_bound);
    CHECK(compared_exact > 0);
    return test_finish("test_attack_matmul");
}
