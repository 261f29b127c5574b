/* Tensor formats and kernels: half/bfloat conversions, block layouts built by hand from the format
 * definition, quantization error bounds, every SIMD kernel against the scalar reference, and
 * matmul against a naive loop for several thread counts (results must be identical). */
#if defined(__wasm__)
#define _DEFAULT_SOURCE /* sbrk */
#endif
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__wasm__)
#include <unistd.h>
#endif

#include "core/exp.h"
#include "quant/blocks.h"
#include "quant/kernels.h"
#include "quant/quant.h"
#include "test_util.h"
#include "test_weight.h"

static uint64_t rng = 0x12345678abcdefull;
static float frand(void) { return test_rand_uniform(&rng); }

static void test_half_conversions(void)
{
    int mismatches = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = ellm_f16_to_f32((uint16_t)h);
        uint16_t back = ellm_f32_to_f16(f);
        bool nan = ((h >> 10) & 0x1F) == 0x1F && (h & 0x3FF);
        if (nan ? !isnan(f) || ((back >> 10) & 0x1F) != 0x1F || !(back & 0x3FF) : back != h)
            mismatches++;
    }
    CHECK_MSG(mismatches == 0, "%d halves do not round-trip", mismatches);
    CHECK(ellm_f16_to_f32(0x3C00) == 1.0f && ellm_f16_to_f32(0xC000) == -2.0f);
    CHECK(ellm_f16_to_f32(0x0001) == 5.9604644775390625e-8f); /* smallest subnormal */
    CHECK(ellm_f32_to_f16(65520.0f) == 0x7C00);               /* rounds to infinity */
    CHECK(ellm_f32_to_f16(65519.0f) == 0x7BFF);
    CHECK(ellm_f32_to_f16(1.0f + 0x1.0p-11f) == 0x3C00); /* tie to even */
    CHECK(ellm_f32_to_f16(1.0f + 0x1.8p-11f) == 0x3C01); /* 0.75 ulp rounds up */
    CHECK(ellm_f32_to_f16(2.98e-8f) == 0x0000 && ellm_f32_to_f16(2.99e-8f) == 0x0001);
    CHECK(ellm_bf16_to_f32(ellm_f32_to_bf16(1.5f)) == 1.5f);
    CHECK(ellm_f32_to_bf16(1.0f + 0x1.0p-8f) == 0x3F80); /* tie to even */
    CHECK(isnan(ellm_bf16_to_f32(ellm_f32_to_bf16(NAN))));
}

/* Blocks written by hand from the format definitions decode to the expected values. */
static void test_block_layouts(void)
{
    block_q8_0 q8 = {.d = ellm_f32_to_f16(0.5f)};
    for (int j = 0; j < 32; j++)
        q8.qs[j] = (int8_t)(j - 16);
    float out[32];
    ellm_dequantize_row(ELLM_TYPE_Q8_0, &q8, out, 32);
    for (int j = 0; j < 32; j++)
        CHECK(out[j] == 0.5f * (float)(j - 16));

    block_q4_0 q4 = {.d = ellm_f32_to_f16(2.0f)};
    for (int j = 0; j < 16; j++)
        q4.qs[j] = (uint8_t)(j | (15 - j) << 4); /* value j = j - 8, value j+16 = 7 - j */
    ellm_dequantize_row(ELLM_TYPE_Q4_0, &q4, out, 32);
    for (int j = 0; j < 16; j++) {
        CHECK(out[j] == 2.0f * (float)(j - 8));
        CHECK(out[j + 16] == 2.0f * (float)(7 - j));
    }
    /* The Q4_0 quantizer maps the largest-magnitude value to -8 exactly. */
    float x[32];
    for (int j = 0; j < 32; j++)
        x[j] = (float)j / 4.0f;
    block_q4_0 qq;
    ellm_quantize_row(ELLM_TYPE_Q4_0, x, &qq, 32);
    CHECK(ellm_f16_to_f32(qq.d) == 7.75f / -8.0f);
    CHECK((qq.qs[15] >> 4) == 0); /* x[31] = 7.75 -> -8 -> nibble 0 */
    CHECK((qq.qs[0] & 15) == 8);  /* x[0] = 0 -> nibble 8 */
}

static void test_quantization_error(void)
{
    enum { N = 4096 };
    static float x[N], y[N];
    static uint8_t buf[N * 4];
    for (int i = 0; i < N; i++)
        x[i] = frand() * (i % 64 == 0 ? 10.0f : 1.0f);
    ellm_type types[] = {ELLM_TYPE_F16, ELLM_TYPE_BF16, ELLM_TYPE_Q8_0, ELLM_TYPE_Q4_0};
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        ellm_quantize_row(types[t], x, buf, N);
        ellm_dequantize_row(types[t], buf, y, N);
        double worst = 0;
        for (int b = 0; b < N / 32; b++) {
            float amax = 0;
            for (int j = 0; j < 32; j++)
                amax = fmaxf(amax, fabsf(x[b * 32 + j]));
            /* Per-block bound: half a quantization step, plus the F16 rounding of the scale. */
            /* Q4_0 maps the extreme to -8, so the opposite extreme (+8) clamps to +7: a full step. */
            double step = types[t] == ELLM_TYPE_Q8_0   ? amax / 127.0 * 0.5
                          : types[t] == ELLM_TYPE_Q4_0 ? amax / 8.0
                                                       : 0;
            for (int j = 0; j < 32; j++) {
                double err = fabs((double)x[b * 32 + j] - y[b * 32 + j]);
                /* F16 below 2^-14 is subnormal: absolute spacing 2^-24. */
                double bound = types[t] == ELLM_TYPE_F16
                                   ? fmax(fabs(x[b * 32 + j]) * 0x1.0p-11, 0x1.0p-25)
                               : types[t] == ELLM_TYPE_BF16 ? fabs(x[b * 32 + j]) * 0x1.0p-8
                                                            : step + amax * 0x1.0p-10;
                if (err > bound + 1e-30)
                    worst = fmax(worst, err / bound);
            }
        }
        CHECK_MSG(worst == 0, "%s: error exceeds its bound (x%.3g)", ellm_type_name(types[t]),
                  worst);
    }
}

/* Q8_K: the extreme of each 256-block maps to -128 exactly, every value lands within half a step,
 * and bsums are the sums of the stored values. */
static void test_q8_K_activations(void)
{
    enum { N = 1024 };
    static float x[N], y[N];
    static block_q8_K q[N / QK_K];
    for (int i = 0; i < N; i++)
        x[i] = frand() * (i % 97 == 0 ? 8.0f : 1.0f);
    for (int i = 0; i < QK_K; i++)
        x[2 * QK_K + i] = 0; /* an all-zero block */
    CHECK(ellm_quantize_row(ELLM_TYPE_Q8_K, x, q, N) == sizeof q);
    ellm_dequantize_row(ELLM_TYPE_Q8_K, q, y, N);
    for (int b = 0; b < N / QK_K; b++) {
        float amax = 0;
        int extreme = 0;
        for (int j = 0; j < QK_K; j++)
            if (fabsf(x[b * QK_K + j]) > amax) {
                amax = fabsf(x[b * QK_K + j]);
                extreme = j;
            }
        if (amax > 0)
            CHECK_MSG(q[b].qs[extreme] == -128, "block %d: extreme stored as %d", b,
                      q[b].qs[extreme]);
        for (int j = 0; j < QK_K; j++)
            CHECK_MSG(fabs((double)x[b * QK_K + j] - y[b * QK_K + j]) <=
                          amax / 128.0 * 0.5 * 1.0001,
                      "block %d value %d: %g vs %g", b, j, x[b * QK_K + j], y[b * QK_K + j]);
        for (int g = 0; g < QK_K / 16; g++) {
            int sum = 0;
            for (int j = 0; j < 16; j++)
                sum += q[b].qs[g * 16 + j];
            CHECK(q[b].bsums[g] == sum);
        }
    }
}

/* Every kernel of the active set against the reference dot product. */
static void test_kernels_match_reference(void)
{
    int sizes[] = {32, 64, 96, 128, 160, 256, 1024, 4096};
    ellm_type types[] = {ELLM_TYPE_F32, ELLM_TYPE_F16, ELLM_TYPE_BF16, ELLM_TYPE_Q8_0,
                         ELLM_TYPE_Q4_0};
    static float w[4096], x[4096];
    static uint8_t wq[4096 * 4], xq[4096 * 4];
    for (int pass = 0; pass < 2; pass++) {
        ellm_quant_force_scalar(pass == 1);
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            int n = sizes[s];
            for (int edge = 0; edge < 3; edge++) {
                for (int i = 0; i < n; i++) {
                    w[i] = edge == 1 ? 0.0f : frand() * (edge == 2 && i % 7 == 0 ? 1e4f : 1.0f);
                    x[i] = edge == 2 ? frand() * 1e-4f : frand();
                }
                for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
                    const ellm_type_kernels *k = ellm_kernels_for(types[t]);
                    CHECK(k != NULL);
                    if (!k)
                        continue;
                    ellm_quantize_row(types[t], w, wq, n);
                    const void *xin = x;
                    float ref;
                    if (k->vec_dot_type == ELLM_TYPE_F32) {
                        ref = ellm_dot_reference(types[t], wq, x, n);
                    } else {
                        /* The reference sees the same quantized activations the kernel does. */
                        ellm_quantize_row(k->vec_dot_type, x, xq, n);
                        static float xd[4096];
                        ellm_dequantize_row(k->vec_dot_type, xq, xd, n);
                        ref = ellm_dot_reference(types[t], wq, xd, n);
                        xin = xq;
                    }
                    float got;
                    k->vec_dot(n, &got, wq, xin);
                    double mag = 0;
                    static float wd[4096];
                    ellm_dequantize_row(types[t], wq, wd, n);
                    for (int i = 0; i < n; i++)
                        mag += fabs((double)wd[i] * x[i]);
                    double tol = 1e-5 * mag + 1e-30;
                    CHECK_MSG(fabs((double)got - ref) <= tol,
                              "%s %s n=%d edge=%d: kernel %.9g vs reference %.9g", k->isa,
                              ellm_type_name(types[t]), n, edge, got, ref);
                }
            }
        }
    }
    ellm_quant_force_scalar(false);
    fprintf(stderr, "kernel set on this CPU: %s\n", ellm_kernel_set_name());

    /* Four-row kernels give exactly what four single-row calls give. */
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        const ellm_type_kernels *k = ellm_kernels_for(types[t]);
        if (!k || !k->vec_dot_x4)
            continue;
        int n = 4096 - 64;
        for (int i = 0; i < n; i++)
            w[i] = frand();
        ellm_quantize_row(types[t], w, wq, n);
        static uint8_t xs4[4][4096 * 2];
        const void *ptrs[4];
        float single[4], multi[4];
        for (int r = 0; r < 4; r++) {
            for (int i = 0; i < n; i++)
                x[i] = frand() * (float)(r + 1);
            ellm_quantize_row(k->vec_dot_type, x, xs4[r], n);
            ptrs[r] = xs4[r];
            k->vec_dot(n, &single[r], wq, xs4[r]);
        }
        k->vec_dot_x4(n, multi, wq, ptrs);
        CHECK_MSG(!memcmp(single, multi, sizeof single), "%s x4 kernel differs from single rows",
                  ellm_type_name(types[t]));
    }

    /* The fast activation quantizer gives exactly the reference blocks. */
    for (int i = 0; i < 4096; i++)
        x[i] = frand() * 3.0f;
    static uint8_t a[4096 * 2], b[4096 * 2];
    ellm_quantize_row(ELLM_TYPE_Q8_0, x, a, 4096);
    ellm_quantize_activations(ELLM_TYPE_Q8_0, x, b, 4096);
    CHECK(memcmp(a, b, 4096 / 32 * sizeof(block_q8_0)) == 0);
}

/* Gemm tiles against the scalar reference, and bit for bit against the single-row kernel for
 * every tile shape: a token's result must not depend on its batch. The 32-value formats: tiles
 * against extended Q8_0 rows, or plain Q8_1 rows for the "_1" formats. */
static void test_gemm_tiles(void)
{
    /* Rows past one 16-row vector group and a short last group; tokens past one 64- and one
     * 128-token step. */
    enum { N = 4096 - 32 * 3, ROWS = 37, TOK = 133 };
    ellm_type types[] = {ELLM_TYPE_Q8_0,   ELLM_TYPE_Q4_0, ELLM_TYPE_Q5_0,
                         ELLM_TYPE_IQ4_NL, ELLM_TYPE_Q4_1, ELLM_TYPE_Q5_1};
    ellm_q8_0_ext_layout L = ellm_q8_0_ext_layout_for(N);
    static float w[ROWS * N], x[TOK * N], xd[N], wd[N];
    static uint8_t wq[ROWS * N * 2];
    uint8_t *xe = malloc(L.row_bytes * TOK);
    CHECK(xe != NULL);
    if (!xe)
        return;
    for (int i = 0; i < ROWS * N; i++)
        w[i] = frand() * (i % 97 == 0 ? 20.0f : 1.0f);
    for (int i = 0; i < TOK * N; i++)
        x[i] = frand() * (float)(1 + i / N);
    /* Plain Q8_0 and Q8_1 rows of the same tokens, for the single-row kernels and the
     * reference. */
    static uint8_t plain[TOK][N / 32 * sizeof(block_q8_0)];
    static uint8_t plain_q8_1[TOK][N / 32 * sizeof(block_q8_1)];
    static float single[TOK][ROWS];
    for (int t = 0; t < TOK; t++) {
        uint8_t *row = xe + (size_t)t * L.row_bytes;
        ellm_quantize_q8_0_ext(x + t * N, row, N);
        ellm_quantize_row(ELLM_TYPE_Q8_0, x + t * N, plain[t], N);
        ellm_quantize_row(ELLM_TYPE_Q8_1, x + t * N, plain_q8_1[t], N);
        /* The extended row holds exactly the reference blocks' values, scales and sums. */
        const block_q8_0 *b = (const block_q8_0 *)plain[t];
        const float *d = (const float *)(row + L.scales_offset);
        const int32_t *bsum = (const int32_t *)(row + L.block_sums_offset);
        for (int i = 0; i < N / 32; i++) {
            CHECK(!memcmp(row + 32 * i, b[i].qs, 32));
            CHECK(d[i] == ellm_f16_to_f32(b[i].d));
            int32_t total = 0;
            for (int j = 0; j < 32; j++)
                total += b[i].qs[j];
            CHECK(bsum[i] == total);
        }
    }
    /* Every kernel set this CPU runs that has tiles (avx512 and avx2 on a recent x86). */
    const char *sets[8];
    int n_sets = ellm_kernel_sets_available(sets, 8);
    int tiled_sets = 0;
    for (int set = 0; set < n_sets && set < 8; set++)
        for (size_t ty = 0; ty < sizeof types / sizeof types[0]; ty++) {
            CHECK(ellm_quant_use_kernel_set("scalar"));
            ellm_vec_dot_fn scalar_dot = ellm_kernels_for(types[ty])->vec_dot;
            CHECK(ellm_quant_use_kernel_set(sets[set]));
            ellm_gemm_fn gemm = ellm_gemm_for(types[ty]);
            const ellm_type_kernels *k = ellm_kernels_for(types[ty]);
            if (!gemm)
                continue;
            tiled_sets += ty == 0;
            bool q8_1 = k->vec_dot_type == ELLM_TYPE_Q8_1;
            /* The rows the tile reads and their stride. */
            const uint8_t *tile_x = q8_1 ? plain_q8_1[0] : xe;
            size_t tile_stride = q8_1 ? sizeof plain_q8_1[0] : L.row_bytes;
            /* Sets whose quantized kernels sum exact integers in the scalar order equal it. */
            bool exact = !strcmp(k->isa, "avx512") || !strncmp(k->isa, "neon", 4) ||
                         !strncmp(k->isa, "wasm-", 5);
            uint64_t rb = 0;
            ellm_row_bytes(types[ty], N, &rb);
            for (int r = 0; r < ROWS; r++)
                ellm_quantize_row(types[ty], w + r * N, wq + r * rb, N);
            for (int t = 0; t < TOK; t++)
                for (int r = 0; r < ROWS; r++) {
                    const uint8_t *row = q8_1 ? plain_q8_1[t] : plain[t];
                    k->vec_dot(N, &single[t][r], wq + r * rb, row);
                    ellm_dequantize_row(k->vec_dot_type, row, xd, N);
                    ellm_dequantize_row(types[ty], wq + r * rb, wd, N);
                    double mag = 0;
                    for (int i = 0; i < N; i++)
                        mag += fabs((double)wd[i] * xd[i]);
                    float ref = ellm_dot_reference(types[ty], wq + r * rb, xd, N);
                    /* (The "_1" formats' m * s terms round s to half precision: test_quant_legacy
                 * holds their single rows to the reference with that tolerance.) */
                    CHECK_MSG(q8_1 || fabs((double)single[t][r] - ref) <= 1e-5 * mag,
                              "%s row %d token %d: %.9g vs reference %.9g",
                              ellm_type_name(types[ty]), r, t, single[t][r], ref);
                    if (exact) {
                        float scalar;
                        scalar_dot(N, &scalar, wq + r * rb, row);
                        CHECK_MSG(!memcmp(&scalar, &single[t][r], sizeof scalar),
                                  "%s %s row %d token %d: %.9g vs scalar %.9g", sets[set],
                                  ellm_type_name(types[ty]), r, t, single[t][r], scalar);
                    }
                }
            /* Batches of 1..9 tokens from several starts and the whole batch, tiles of 1..ROWS rows
         * (every row count for small batches). */
            for (int n_tok = 1; n_tok <= TOK; n_tok = n_tok < 9         ? n_tok + 1
                                                      : n_tok < TOK - 1 ? TOK - 1
                                                                        : TOK + 1)
                for (int t0 = 0; t0 + n_tok <= TOK; t0 += n_tok < 9 ? 7 : 1)
                    for (int n_rows = 1; n_rows <= ROWS; n_rows += n_tok < 9 ? 1 : 12) {
                        static float y[TOK][ROWS];
                        gemm(N, wq, rb, n_rows, tile_x + (size_t)t0 * tile_stride, tile_stride,
                             n_tok, &y[0][0], ROWS);
                        for (int t = 0; t < n_tok; t++)
                            for (int r = 0; r < n_rows; r++)
                                CHECK_MSG(!memcmp(&y[t][r], &single[t0 + t][r], sizeof(float)),
                                          "%s %s gemm %d tokens x %d rows: token %d row %d %.9g vs "
                                          "single-row %.9g",
                                          sets[set], ellm_type_name(types[ty]), n_tok, n_rows,
                                          t0 + t, r, y[t][r], single[t0 + t][r]);
                    }
        }
    ellm_quant_use_kernel_set(NULL);
    fprintf(stderr, "gemm tiles checked in %d kernel sets\n", tiled_sets);
#if defined(__x86_64__) || defined(__wasm__)
    CHECK(tiled_sets >= 1);
#endif
    free(xe);
}

/* Every set's decode kernels on their extended activation rows (vec_dot_ext, in the layout the
 * set declares: extended Q8_0, the 16-bit wide Q8_0 and Q8_K rows of the wasm-simd set, or the
 * magnitude Q8_K rows of the avx2 IQ4_XS kernel) give
 * exactly what vec_dot gives on plain rows, for every weight type, several row lengths and edge
 * values; and every layout holds exactly the reference quantizer's values, scales and sums in
 * its documented order. */
static void test_extended_activation_rows(void)
{
    enum { MAXN = 4096 };
    static float w[MAXN], x[MAXN];
    static uint8_t wq[MAXN * 4], plain[MAXN * 4], ext[MAXN * 4];
    /* The layouts' contents against the reference blocks. */
    for (int i = 0; i < MAXN; i++)
        x[i] = frand() * (float)(1 + i % 5);
    ellm_quantize_row(ELLM_TYPE_Q8_0, x, plain, MAXN);
    const block_q8_0 *b0 = (const block_q8_0 *)plain;
    ellm_q8_0_ext_layout L = ellm_q8_0_wide_layout_for(MAXN);
    CHECK(ellm_act_row_bytes(ELLM_ACT_Q8_0_WIDE, ELLM_TYPE_Q8_0, MAXN) == L.row_bytes);
    ellm_quantize_act(ELLM_ACT_Q8_0_WIDE, ELLM_TYPE_Q8_0, x, ext, MAXN);
    const int16_t *wide = (const int16_t *)ext;
    int wrong = 0;
    for (int i = 0; i < MAXN / 32; i++) {
        int32_t total = 0;
        for (int j = 0; j < 32; j++) {
            wrong += wide[32 * i + ellm_act_wide_index(j)] != b0[i].qs[j];
            total += b0[i].qs[j];
        }
        wrong += ((const float *)(ext + L.scales_offset))[i] != ellm_f16_to_f32(b0[i].d);
        wrong += ((const int32_t *)(ext + L.block_sums_offset))[i] != total;
    }
    CHECK_MSG(wrong == 0, "%d wrong values in the wide Q8_0 row", wrong);
    CHECK(ellm_act_row_bytes(ELLM_ACT_Q8_0_SPLIT, ELLM_TYPE_Q8_0, MAXN) ==
          ellm_q8_0_split_layout_for(MAXN).row_bytes);
    ellm_quantize_act(ELLM_ACT_Q8_0_SPLIT, ELLM_TYPE_Q8_0, x, ext, MAXN);
    for (int i = 0; i < MAXN / 32; i++) {
        int32_t total = 0;
        for (int j = 0; j < 32; j++) {
            int q = b0[i].qs[j];
            wrong += ext[64 * i + j] != (q > 0 ? q : 0) || ext[64 * i + 32 + j] != (q < 0 ? -q : 0);
            total += q;
        }
        wrong += ((const float *)(ext + L.scales_offset))[i] != ellm_f16_to_f32(b0[i].d);
        wrong += ((const int32_t *)(ext + L.block_sums_offset))[i] != total;
    }
    CHECK_MSG(wrong == 0, "%d wrong values in the split Q8_0 row", wrong);
    /* The paired row: the extended row's offsets; in whole groups of eight blocks, bits 4 and 5
     * of a value's index in the group swapped and the blocks' scales and sums in the order 0, 2,
     * 4, 6, 1, 3, 5, 7; the blocks after them (three here) as in the extended row. */
    const int paired_n = MAXN - 3 * 32;
    ellm_q8_0_ext_layout LP = ellm_q8_0_ext_layout_for(paired_n);
    CHECK(ellm_act_row_bytes(ELLM_ACT_Q8_0_PAIRED, ELLM_TYPE_Q8_0, paired_n) == LP.row_bytes);
    ellm_quantize_act(ELLM_ACT_Q8_0_PAIRED, ELLM_TYPE_Q8_0, x, ext, paired_n);
    for (int i = 0; i < paired_n / 32; i++) {
        int group = i / 8 * 8, whole = group + 8 <= paired_n / 32;
        int at = whole ? group + ellm_q8_0_paired_slot(i - group) : i;
        int32_t total = 0;
        for (int j = 0; j < 32; j++) {
            int in_group = 32 * (i - group) + j;
            int value_at = whole ? 32 * group + ellm_act_mag_index(in_group) : 32 * i + j;
            wrong += (int8_t)ext[value_at] != b0[i].qs[j];
            total += b0[i].qs[j];
        }
        wrong += ((const float *)(ext + LP.scales_offset))[at] != ellm_f16_to_f32(b0[i].d);
        wrong += ((const int32_t *)(ext + LP.block_sums_offset))[at] != total;
    }
    CHECK_MSG(wrong == 0, "%d wrong values in the paired Q8_0 row", wrong);
    CHECK(ellm_q8_0_paired_slot(0) == 0 && ellm_q8_0_paired_slot(1) == 4 &&
          ellm_q8_0_paired_slot(2) == 1 && ellm_q8_0_paired_slot(7) == 7);
    ellm_quantize_row(ELLM_TYPE_Q8_K, x, plain, MAXN);
    ellm_quantize_act(ELLM_ACT_Q8_K_WIDE, ELLM_TYPE_Q8_K, x, ext, MAXN);
    CHECK(ellm_act_row_bytes(ELLM_ACT_Q8_K_WIDE, ELLM_TYPE_Q8_K, MAXN) ==
          MAXN / QK_K * sizeof(block_q8_K_wide));
    const block_q8_K *bk = (const block_q8_K *)plain;
    const block_q8_K_wide *bw = (const block_q8_K_wide *)ext;
    for (int i = 0; i < MAXN / QK_K; i++) {
        for (int j = 0; j < QK_K; j++)
            wrong += bw[i].qs[ellm_act_wide_index(j)] != bk[i].qs[j];
        wrong += bw[i].d != bk[i].d || memcmp(bw[i].bsums, bk[i].bsums, sizeof bk[i].bsums);
    }
    CHECK_MSG(wrong == 0, "%d wrong values in the wide Q8_K row", wrong);
    /* The AVX-512 IQ4_XS order: 64-byte group 2h + k holds values 16k .. 16k + 15 of sub-blocks
     * 4h .. 4h + 3; each half's starting sums hold -128 x each sub-block's sum per 128-bit lane. */
    ellm_quantize_act(ELLM_ACT_Q8_K_HALVES, ELLM_TYPE_Q8_K, x, ext, MAXN);
    CHECK(ellm_act_row_bytes(ELLM_ACT_Q8_K_HALVES, ELLM_TYPE_Q8_K, MAXN) ==
          MAXN / QK_K * sizeof(block_q8_K_halves));
    const block_q8_K_halves *bh = (const block_q8_K_halves *)ext;
    for (int i = 0; i < MAXN / QK_K; i++) {
        wrong += bh[i].d != bk[i].d;
        for (int s = 0; s < QK_K / 32; s++) {
            int32_t total = 0, lane = 0;
            for (int j = 0; j < 32; j++) {
                wrong += bh[i].qs[128 * (s / 4) + 64 * (j / 16) + 16 * (s % 4) + j % 16] !=
                         bk[i].qs[32 * s + j];
                total += bk[i].qs[32 * s + j];
            }
            for (int k = 0; k < 4; k++)
                lane += bh[i].offset[s / 4][4 * (s % 4) + k];
            wrong += lane != -128 * total;
        }
    }
    CHECK_MSG(wrong == 0, "%d wrong values in the Q8_K halves row", wrong);
    /* The AVX-512 Q2_K pairs: block b's values in 64-byte groups of fields (values 32f .. 32f
     * + 31, then 128 + 32f .. 128 + 32f + 31), its bsums, the scales d0, d0, d1, d1; an odd
     * number of blocks repeats the last one. */
    for (int nb = MAXN / QK_K - 1; nb <= MAXN / QK_K; nb++) {
        ellm_quantize_act(ELLM_ACT_Q8_K_PAIRS, ELLM_TYPE_Q8_K, x, ext, nb * QK_K);
        CHECK(ellm_act_row_bytes(ELLM_ACT_Q8_K_PAIRS, ELLM_TYPE_Q8_K, nb * QK_K) ==
              (size_t)(nb + 1) / 2 * sizeof(block_q8_K_pair));
        const block_q8_K_pair *bp = (const block_q8_K_pair *)ext;
        for (int i = 0; i < (nb + 1) / 2 * 2; i++) {
            const block_q8_K *src = &bk[i < nb ? i : nb - 1];
            const block_q8_K_pair *p = &bp[i / 2];
            for (int v = 0; v < QK_K; v++)
                wrong += p->qs[i % 2][64 * (v % 128 / 32) + 32 * (v / 128) + v % 32] != src->qs[v];
            wrong += memcmp(p->bsums[i % 2], src->bsums, sizeof src->bsums) != 0;
            wrong += p->d[2 * (i % 2)] != src->d || p->d[2 * (i % 2) + 1] != src->d;
        }
    }
    CHECK_MSG(wrong == 0, "%d wrong values in the Q8_K pairs row", wrong);
    ellm_quantize_act(ELLM_ACT_Q8_K_MAG, ELLM_TYPE_Q8_K, x, ext, MAXN);
    CHECK(ellm_act_row_bytes(ELLM_ACT_Q8_K_MAG, ELLM_TYPE_Q8_K, MAXN) ==
          MAXN / QK_K * sizeof(block_q8_K_mag));
    const block_q8_K_mag *bm = (const block_q8_K_mag *)ext;
    for (int i = 0; i < MAXN / QK_K; i++) {
        for (int j = 0; j < QK_K; j++) {
            int q = bk[i].qs[j], at = ellm_act_mag_index(j);
            wrong += bm[i].qs[at] != q || bm[i].mag[at] != (q < 0 ? -q : q);
        }
        wrong += bm[i].d != bk[i].d;
    }
    CHECK_MSG(wrong == 0, "%d wrong values in the magnitude Q8_K row", wrong);
    CHECK(ellm_act_mag_index(15) == 15 && ellm_act_mag_index(16) == 32 &&
          ellm_act_mag_index(47) == 31 && ellm_act_mag_index(48) == 48 &&
          ellm_act_mag_index(80) == 96);
    /* The index maps each 16 values onto themselves, evens first. */
    CHECK(ellm_act_wide_index(0) == 0 && ellm_act_wide_index(1) == 8 &&
          ellm_act_wide_index(14) == 7 && ellm_act_wide_index(15) == 15 &&
          ellm_act_wide_index(17) == 24 && ellm_act_wide_index(30) == 23);

    const char *sets[8];
    int n_sets = ellm_kernel_sets_available(sets, 8);
    int sizes[] = {256, 768, 960, 2816, MAXN};
    int checked = 0;
    for (int set = 0; set < n_sets && set < 8; set++) {
        CHECK(ellm_quant_use_kernel_set(sets[set]));
        for (int type = 0; type < ELLM_TYPE_COUNT; type++) {
            const ellm_type_kernels *k = ellm_kernels_for((ellm_type)type);
            if (!k || !k->vec_dot_ext)
                continue;
            uint32_t bs = ellm_type_traits_of((uint32_t)type)->block_size;
            for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
                int n = sizes[si];
                if (n % (int)bs)
                    continue;
                for (int edge = 0; edge < 3; edge++) {
                    for (int i = 0; i < n; i++) {
                        w[i] = edge == 1 ? 0.0f : frand() * (edge == 2 && i % 7 == 0 ? 1e3f : 1.0f);
                        x[i] = frand() * (edge == 2 ? (i % 11 == 0 ? 50.0f : 1e-4f) : 2.0f);
                    }
                    ellm_quantize_row((ellm_type)type, w, wq, n);
                    ellm_quantize_act(ELLM_ACT_PLAIN, k->vec_dot_type, x, plain, n);
                    ellm_quantize_act(k->ext_layout, k->vec_dot_type, x, ext, n);
                    float want, got;
                    k->vec_dot(n, &want, wq, plain);
                    k->vec_dot_ext(n, &got, wq, ext);
                    CHECK_MSG(!memcmp(&want, &got, sizeof got),
                              "%s %s n=%d edge %d: extended-row kernel %.9g vs vec_dot %.9g",
                              sets[set], ellm_type_name((uint32_t)type), n, edge, got, want);
                    checked++;
                }
            }
        }
    }
    ellm_quant_use_kernel_set(NULL);
    fprintf(stderr, "extended-row kernels checked: %d rows\n", checked);
#if defined(__wasm__)
    /* Every wasm-simd decode kernel the web build relies on reads a wide row (the wasm-relaxed
     * set's K-quant rows read plain ones). */
    CHECK(ellm_quant_use_kernel_set("wasm-simd"));
    ellm_type wide_types[] = {ELLM_TYPE_Q4_0, ELLM_TYPE_Q5_0,  ELLM_TYPE_Q8_0, ELLM_TYPE_IQ4_NL,
                              ELLM_TYPE_Q4_K, ELLM_TYPE_Q5_K,  ELLM_TYPE_Q6_K, ELLM_TYPE_Q2_K,
                              ELLM_TYPE_Q3_K, ELLM_TYPE_IQ4_XS};
    for (size_t t = 0; t < sizeof wide_types / sizeof wide_types[0]; t++) {
        const ellm_type_kernels *k = ellm_kernels_for(wide_types[t]);
        CHECK_MSG(k && k->vec_dot_ext && k->ext_layout != ELLM_ACT_Q8_0_EXT,
                  "%s has no wasm-simd decode kernel on wide activations",
                  ellm_type_name(wide_types[t]));
    }
    ellm_quant_use_kernel_set(NULL);
    /* A module patched for relaxed SIMD (web/relaxed_patch.py) offers the wasm-relaxed set, whose
     * K-quant rows are its own; tests/web_kernels.sh requires these lines there. */
    if (ellm_quant_use_kernel_set("wasm-relaxed")) {
        ellm_type relaxed_types[] = {ELLM_TYPE_Q4_0, ELLM_TYPE_Q5_0, ELLM_TYPE_Q8_0,
                                     ELLM_TYPE_Q4_K, ELLM_TYPE_Q5_K, ELLM_TYPE_Q6_K};
        for (size_t t = 0; t < sizeof relaxed_types / sizeof relaxed_types[0]; t++) {
            const ellm_type_kernels *k = ellm_kernels_for(relaxed_types[t]);
            /* K-quants: single and multi-row kernels on plain Q8_K rows; Q4_0 and Q5_0: on
             * extended Q8_0 ones; Q8_0: on split ones. */
            bool q8_0 = relaxed_types[t] == ELLM_TYPE_Q8_0;
            bool on_q8_0 = relaxed_types[t] == ELLM_TYPE_Q4_0 ||
                           relaxed_types[t] == ELLM_TYPE_Q5_0 || q8_0;
            ellm_act_layout layout = q8_0 ? ELLM_ACT_Q8_0_SPLIT : ELLM_ACT_Q8_0_EXT;
            CHECK(k && !strcmp(k->isa, "wasm-relaxed") && k->vec_dot_rows &&
                  (on_q8_0 ? k->vec_dot_ext && k->ext_layout == layout : !k->vec_dot_ext));
            fprintf(stderr, "relaxed %s decode kernel: %s\n", ellm_type_name(relaxed_types[t]),
                    k ? k->isa : "none");
            /* Their prefill tiles are relaxed too (Q5_0's and Q8_0's are still the wasm-simd
             * ones), and the tile tests compared them with the scalar kernels when they ran every
             * set. */
            const char *tile_isa = relaxed_types[t] == ELLM_TYPE_Q5_0 || q8_0 ? "wasm-simd"
                                                                              : "wasm-relaxed";
            CHECK(k && k->gemm && !strcmp(k->gemm_isa, tile_isa));
            fprintf(stderr, "relaxed %s tile: %s\n", ellm_type_name(relaxed_types[t]),
                    k && k->gemm ? k->gemm_isa : "none");
        }
        ellm_quant_use_kernel_set(NULL);
    }
#endif
}

/* Q4_0 and Q8_0 tiles at their integer extremes: levels at the ends of their range (Q4_0 all
 * nibbles 15 or 0, Q8_0 -128 and 127) against activations of +-127, with every scale 1, so each
 * (row, token) value is an integer below 2^24 that every kernel must give exactly, whatever its
 * order. The Q4_0 tiles sum a block's pair products in 16 bits and Q8_0's widen each pair; a
 * shortcut that lets either saturate fails here. Tokens run past one 64- and one 128-token step.
 * The decode kernels too (single rows on their own layout, and the multi-row kernels): the relaxed
 * Q8_0 ones take the -128 weights through 16-bit pair sums. */
static void test_gemm_tiles_extremes(void)
{
    enum { N = 512, NB = N / 32, ROWS = 9, TOK = 130 };
    ellm_q8_0_ext_layout L = ellm_q8_0_ext_layout_for(N);
    static float x[TOK][N], y[TOK][ROWS];
    static int level[ROWS][N];
    static uint8_t plain[TOK][NB * sizeof(block_q8_0)], decode_row[3 * N];
    static block_q4_0 w4[ROWS][NB];
    static block_q8_0 w8[ROWS][NB];
    uint8_t *xe = malloc(L.row_bytes * TOK);
    CHECK(xe != NULL);
    if (!xe)
        return;
    for (int t = 0; t < TOK; t++) {
        for (int i = 0; i < N; i++) {
            int sign = t % 3 == 0 ? 1 : t % 3 == 1 ? -1 : (frand() < 0 ? -1 : 1);
            x[t][i] = 127.0f * (float)sign;
        }
        ellm_quantize_q8_0_ext(x[t], xe + (size_t)t * L.row_bytes, N);
        ellm_quantize_row(ELLM_TYPE_Q8_0, x[t], plain[t], N);
    }
    const ellm_type types[] = {ELLM_TYPE_Q4_0, ELLM_TYPE_Q8_0};
    const char *sets[8];
    int n_sets = ellm_kernel_sets_available(sets, 8);
    for (size_t ty = 0; ty < 2; ty++) {
        bool q4 = types[ty] == ELLM_TYPE_Q4_0;
        /* Rows: the top level everywhere, the bottom one, the two alternating, random levels. */
        for (int r = 0; r < ROWS; r++)
            for (int i = 0; i < N; i++) {
                int lo = q4 ? -8 : -128, hi = q4 ? 7 : 127;
                int pick = r % 4 == 0 ? hi : r % 4 == 1 ? lo : r % 4 == 2 ? (i % 2 ? hi : lo) : -1;
                level[r][i] = pick != -1 ? pick : lo + (int)((frand() + 1.0f) * 0.5f * (hi - lo));
                if (level[r][i] > hi)
                    level[r][i] = hi;
            }
        for (int r = 0; r < ROWS; r++)
            for (int b = 0; b < NB; b++) {
                w4[r][b].d = w8[r][b].d = ellm_f32_to_f16(1.0f);
                for (int j = 0; j < 32; j++)
                    w8[r][b].qs[j] = (int8_t)level[r][32 * b + j];
                for (int j = 0; j < 16 && q4; j++)
                    w4[r][b].qs[j] = (uint8_t)((unsigned)(level[r][32 * b + j] + 8) |
                                               (unsigned)(level[r][32 * b + 16 + j] + 8) << 4);
            }
        const uint8_t *wq = q4 ? (const uint8_t *)w4 : (const uint8_t *)w8;
        size_t rb = q4 ? sizeof w4[0] : sizeof w8[0];
        for (int set = 0; set < n_sets && set < 8; set++) {
            CHECK(ellm_quant_use_kernel_set(sets[set]));
            ellm_gemm_fn gemm = ellm_gemm_for(types[ty]);
            const ellm_type_kernels *k = ellm_kernels_for(types[ty]);
            if (gemm)
                gemm(N, wq, rb, ROWS, xe, L.row_bytes, TOK, &y[0][0], ROWS);
            for (int t = 0; t < TOK; t++)
                for (int r = 0; r < ROWS; r++) {
                    int64_t exact = 0;
                    for (int i = 0; i < N; i++)
                        exact += (int64_t)level[r][i] * (x[t][i] > 0 ? 127 : -127);
                    float single;
                    k->vec_dot(N, &single, wq + r * rb, plain[t]);
                    CHECK_MSG(single == (float)exact, "%s %s row %d token %d: %.9g, exact %lld",
                              sets[set], ellm_type_name(types[ty]), r, t, single, (long long)exact);
                    if (k->vec_dot_ext) {
                        CHECK(ellm_act_row_bytes(k->ext_layout, ELLM_TYPE_Q8_0, N) <=
                              sizeof decode_row);
                        ellm_quantize_act(k->ext_layout, ELLM_TYPE_Q8_0, x[t], decode_row, N);
                        k->vec_dot_ext(N, &single, wq + r * rb, decode_row);
                        CHECK_MSG(single == (float)exact,
                                  "%s %s decode row %d token %d: %.9g, exact %lld", sets[set],
                                  ellm_type_name(types[ty]), r, t, single, (long long)exact);
                    }
                    if (k->vec_dot_rows && r == 0) {
                        float rows[ELLM_DOT_ROWS];
                        k->vec_dot_rows(N, rows, wq, rb, k->vec_dot_ext ? decode_row : plain[t]);
                        for (int i = 0; i < ELLM_DOT_ROWS; i++) {
                            int64_t row_exact = 0;
                            for (int j = 0; j < N; j++)
                                row_exact += (int64_t)level[i][j] * (x[t][j] > 0 ? 127 : -127);
                            CHECK_MSG(rows[i] == (float)row_exact,
                                      "%s %s multi-row %d token %d: %.9g, exact %lld", sets[set],
                                      ellm_type_name(types[ty]), i, t, rows[i],
                                      (long long)row_exact);
                        }
                    }
                    CHECK_MSG(!gemm || y[t][r] == (float)exact,
                              "%s %s gemm row %d token %d: %.9g, exact %lld", sets[set],
                              ellm_type_name(types[ty]), r, t, y[t][r], (long long)exact);
                }
        }
    }
    ellm_quant_use_kernel_set(NULL);
    free(xe);
}

/* Q4_K, Q5_K and Q6_K decode kernels at their integer extremes: every level at the top of its
 * range (15, 31, 63) or alternating with the bottom, the largest scales and mins (Q6_K's -128),
 * against activations that quantize to -128 everywhere or to -128 and 127 alternating. The wasm
 * kernels pack two sub-blocks' partial sums into the 16-bit halves of a lane; a partial sum that
 * did not fit would change the result, so every set must give the scalar kernel's bits here. */
static void test_kquant_decode_extremes(void)
{
    enum { N = 2 * QK_K, NB = N / QK_K };
    static float x[N];
    static uint8_t plain[N * 4], ext[N * 4];
    static union {
        block_q4_K q4[NB];
        block_q5_K q5[NB];
        block_q6_K q6[NB];
    } w;
    const ellm_type types[] = {ELLM_TYPE_Q4_K, ELLM_TYPE_Q5_K, ELLM_TYPE_Q6_K};
    const char *sets[8];
    int n_sets = ellm_kernel_sets_available(sets, 8);
    int checked = 0;
    for (size_t ty = 0; ty < sizeof types / sizeof types[0]; ty++)
        for (int pattern = 0; pattern < 2; pattern++)
            for (int act = 0; act < 2; act++) {
                /* pattern 0: every byte of the quants all ones; 1: alternating with zero. */
                memset(&w, 0, sizeof w);
                for (int b = 0; b < NB; b++) {
                    uint8_t *q, *hi;
                    size_t nq, nhi;
                    if (types[ty] == ELLM_TYPE_Q6_K) {
                        block_q6_K *k6 = &w.q6[b];
                        k6->d = ellm_f32_to_f16(1.0f);
                        memset(k6->scales, 0x80, sizeof k6->scales);
                        q = k6->ql, nq = sizeof k6->ql, hi = k6->qh, nhi = sizeof k6->qh;
                    } else if (types[ty] == ELLM_TYPE_Q5_K) {
                        block_q5_K *k5 = &w.q5[b];
                        k5->d = k5->dmin = ellm_f32_to_f16(1.0f);
                        memset(k5->scales, 0xFF, sizeof k5->scales);
                        q = k5->qs, nq = sizeof k5->qs, hi = k5->qh, nhi = sizeof k5->qh;
                    } else {
                        block_q4_K *k4 = &w.q4[b];
                        k4->d = k4->dmin = ellm_f32_to_f16(1.0f);
                        memset(k4->scales, 0xFF, sizeof k4->scales);
                        q = k4->qs, nq = sizeof k4->qs, hi = NULL, nhi = 0;
                    }
                    for (size_t j = 0; j < nq; j++)
                        q[j] = pattern && j % 2 ? 0 : 0xFF;
                    for (size_t j = 0; j < nhi; j++)
                        hi[j] = pattern && j % 2 ? 0 : 0xFF;
                }
                for (int i = 0; i < N; i++)
                    x[i] = act && i % 2 ? -1.0f : 1.0f;
                CHECK(ellm_quant_use_kernel_set("scalar"));
                const ellm_type_kernels *ref = ellm_kernels_for(types[ty]);
                float want;
                ellm_quantize_act(ELLM_ACT_PLAIN, ref->vec_dot_type, x, plain, N);
                ref->vec_dot(N, &want, &w, plain);
                for (int set = 0; set < n_sets && set < 8; set++) {
                    CHECK(ellm_quant_use_kernel_set(sets[set]));
                    const ellm_type_kernels *k = ellm_kernels_for(types[ty]);
                    float got;
                    ellm_quantize_act(ELLM_ACT_PLAIN, k->vec_dot_type, x, plain, N);
                    k->vec_dot(N, &got, &w, plain);
                    CHECK_MSG(!memcmp(&want, &got, sizeof got),
                              "%s %s pattern %d act %d: %.9g vs %.9g", sets[set],
                              ellm_type_name(types[ty]), pattern, act, got, want);
                    if (k->vec_dot_ext) {
                        ellm_quantize_act(k->ext_layout, k->vec_dot_type, x, ext, N);
                        k->vec_dot_ext(N, &got, &w, ext);
                        CHECK_MSG(!memcmp(&want, &got, sizeof got),
                                  "%s %s pattern %d act %d: extended-row kernel %.9g vs %.9g",
                                  sets[set], ellm_type_name(types[ty]), pattern, act, got, want);
                    }
                    checked++;
                }
            }
    ellm_quant_use_kernel_set(NULL);
    fprintf(stderr, "K-quant decode kernels at their extremes: %d checks\n", checked);
}

/* Every set's converters to the extended, wide and split activation layouts give the bytes of
 * the portable conversion (the reference blocks rearranged): random rows, rows of exact .5 ties
 * (scale 1: an extreme of 127 in Q8_0, of -128 in Q8_K), zero blocks, and a row whose blocks mix
 * the three with a lone large value; the SIMD128 set writes these layouts directly (a decode
 * step converts each matmul's input on one thread while the others wait). */
static void test_wide_row_quantizers(void)
{
    enum { MAXN = 4096, LAYOUTS = 4 };
    static float x[MAXN];
    static uint8_t want[MAXN * 4], got[MAXN * 4];
    const ellm_act_layout layouts[LAYOUTS] = {ELLM_ACT_Q8_0_WIDE, ELLM_ACT_Q8_K_WIDE,
                                              ELLM_ACT_Q8_0_EXT, ELLM_ACT_Q8_0_SPLIT};
    const ellm_type act_types[LAYOUTS] = {ELLM_TYPE_Q8_0, ELLM_TYPE_Q8_K, ELLM_TYPE_Q8_0,
                                          ELLM_TYPE_Q8_0};
    const char *sets[8];
    int n_sets = ellm_kernel_sets_available(sets, 8);
    int own = 0;
    for (int set = 0; set < n_sets && set < 8; set++) {
        for (int l = 0; l < LAYOUTS; l++) {
            CHECK(ellm_quant_use_kernel_set(sets[set]));
            own += ellm_act_layout_quantizer(layouts[l]) != NULL;
            for (int kind = 0; kind < 4; kind++) {
                for (int i = 0; i < MAXN; i++)
                    x[i] = kind == 0   ? frand() * 3.0f
                           : kind == 1 ? (float)(i % 200 - 100) + 0.5f
                           : kind == 2 ? 0.0f
                                       : (i / 256 % 3 == 0 ? 0.0f : frand() * 1e-3f);
                if (kind == 1)
                    for (int i = 0; i < MAXN; i += 32)
                        x[i] = act_types[l] == ELLM_TYPE_Q8_K ? -128.0f : 127.0f;
                if (kind == 3)
                    for (int i = 300; i < MAXN; i += 997)
                        x[i] = 40.0f;
                size_t bytes = ellm_act_row_bytes(layouts[l], act_types[l], MAXN);
                CHECK(ellm_quant_use_kernel_set("scalar"));
                memset(want, 0xAA, bytes);
                ellm_quantize_act(layouts[l], act_types[l], x, want, MAXN);
                CHECK(ellm_quant_use_kernel_set(sets[set]));
                memset(got, 0xAA, bytes);
                ellm_quantize_act(layouts[l], act_types[l], x, got, MAXN);
                CHECK_MSG(!memcmp(want, got, bytes),
                          "%s: the %s row of layout %d differs (kind %d)", sets[set],
                          ellm_type_name(act_types[l]), (int)layouts[l], kind);
            }
        }
    }
    ellm_quant_use_kernel_set(NULL);
    fprintf(stderr, "layout converters of their own: %d\n", own);
#if defined(__wasm__)
    /* All four in each wasm set (wasm-relaxed, where the module was patched, copies wasm-simd's). */
    int wasm_sets = 0;
    for (int set = 0; set < n_sets && set < 8; set++)
        wasm_sets += !strncmp(sets[set], "wasm-", 5);
    CHECK_MSG(own == LAYOUTS * wasm_sets, "the %d wasm sets have %d layout converters of their own",
              wasm_sets, own);
#endif
}

/* F16 tiles bit for bit against their set's single-row F16 kernel (a float dot, so the set's own
 * order, not the scalar one) for every tile shape, and close to a double-precision dot: a row
 * length with 16-value steps and a tail, and one of whole steps; rows and tokens past the
 * register tiles' groups (4 x 6 for avx512, 2 x 3 for avx2) with short last groups. */
static void test_gemm_f16_tiles(void)
{
    enum { NMAX = 2048 + 16 * 3 + 5, ROWS = 11, TOK = 15 };
    static float wf[ROWS * NMAX], x[TOK * NMAX], single[TOK][ROWS], y[TOK][ROWS];
    static uint16_t wh[ROWS * NMAX];
    for (int i = 0; i < ROWS * NMAX; i++) {
        wh[i] = ellm_f32_to_f16(frand() * (i % 89 == 0 ? 30.0f : 1.0f));
        wf[i] = ellm_f16_to_f32(wh[i]);
    }
    for (int i = 0; i < TOK * NMAX; i++)
        x[i] = frand() * (float)(1 + i % 7);
    const char *sets[8];
    int n_sets = ellm_kernel_sets_available(sets, 8);
    int tiled_sets = 0;
    const int lengths[] = {NMAX, 64};
    for (int set = 0; set < n_sets && set < 8; set++) {
        CHECK(ellm_quant_use_kernel_set(sets[set]));
        const ellm_type_kernels *k = ellm_kernels_for(ELLM_TYPE_F16);
        ellm_gemm_fn gemm = ellm_gemm_for(ELLM_TYPE_F16);
        if (!gemm)
            continue;
        tiled_sets++;
        CHECK(k->vec_dot_type == ELLM_TYPE_F32);
        for (size_t l = 0; l < sizeof lengths / sizeof lengths[0]; l++) {
            int n = lengths[l];
            size_t w_stride = (size_t)n * 2, x_stride = (size_t)n * sizeof(float);
            /* The rows packed at this length (the tile reads n halves per row). */
            static uint16_t wp[ROWS * NMAX];
            for (int r = 0; r < ROWS; r++)
                memcpy(wp + r * n, wh + r * NMAX, w_stride);
            for (int t = 0; t < TOK; t++)
                for (int r = 0; r < ROWS; r++) {
                    k->vec_dot(n, &single[t][r], wp + r * n, x + t * NMAX);
                    double ref = 0, mag = 0;
                    for (int i = 0; i < n; i++) {
                        ref += (double)wf[r * NMAX + i] * x[t * NMAX + i];
                        mag += fabs((double)wf[r * NMAX + i] * x[t * NMAX + i]);
                    }
                    CHECK_MSG(fabs(single[t][r] - ref) <= 1e-5 * mag,
                              "%s F16 row %d token %d: %.9g vs %.9g", sets[set], r, t, single[t][r],
                              ref);
                }
            /* The tile reads tokens at x_stride: repack them at this length. */
            static float xp[TOK * NMAX];
            for (int t = 0; t < TOK; t++)
                memcpy(xp + t * n, x + t * NMAX, x_stride);
            for (int n_tok = 1; n_tok <= TOK; n_tok++)
                for (int t0 = 0; t0 + n_tok <= TOK; t0 += 5)
                    for (int n_rows = 1; n_rows <= ROWS; n_rows++) {
                        memset(y, 0xff, sizeof y);
                        gemm(n, (const uint8_t *)wp, w_stride, n_rows,
                             (const uint8_t *)(xp + t0 * n), x_stride, n_tok, &y[0][0], ROWS);
                        for (int t = 0; t < n_tok; t++)
                            for (int r = 0; r < n_rows; r++)
                                CHECK_MSG(!memcmp(&y[t][r], &single[t0 + t][r], sizeof(float)),
                                          "%s F16 gemm n %d, %d tokens x %d rows: token %d row "
                                          "%d %.9g vs single-row %.9g",
                                          sets[set], n, n_tok, n_rows, t0 + t, r, y[t][r],
                                          single[t0 + t][r]);
                    }
        }
    }
    ellm_quant_use_kernel_set(NULL);
    fprintf(stderr, "F16 gemm tiles checked in %d kernel sets\n", tiled_sets);
#if defined(__x86_64__)
    CHECK(tiled_sets >= 1);
#endif
}

/* Every kernel set this CPU can run (e.g. neon-dotprod, neon and scalar on an ARMv8.2 CPU; avx2
 * and scalar on x86) against the scalar set, for every weight type with a kernel. The NEON
 * quantized dots and the AVX-512 ones sum exact integers and combine them in the scalar kernel's
 * float order, so they must be bit-identical; float dots (F32/F16/BF16) reassociate, so they get a relative bound, as
 * do the AVX2 kernels (some accumulate blocks in vector floats). Four-row kernels must equal
 * single rows, and each set's activation quantizer the reference bytes. */
static void test_every_kernel_set(void)
{
    enum { MAXN = 4096 };
    const char *sets[8];
    int n_sets = ellm_kernel_sets_available(sets, 8);
    CHECK(n_sets >= 1 && n_sets <= 8 && !strcmp(sets[n_sets - 1], "scalar"));
    if (n_sets < 1 || n_sets > 8)
        return;
    fprintf(stderr, "kernel sets on this CPU:");
    for (int i = 0; i < n_sets; i++)
        fprintf(stderr, " %s", sets[i]);
    fprintf(stderr, "\n");
    int sizes[] = {7, 33, 96, 160, 256, 1056, 2816, MAXN};
    static float w[MAXN], x[MAXN], wd[MAXN];
    static uint8_t wq[MAXN * 4], xq[4][MAXN * 4];
    int compared = 0;
    for (int type = 0; type < ELLM_TYPE_COUNT; type++) {
        if (!ellm_type_supported((ellm_type)type) || type == ELLM_TYPE_Q8_K)
            continue;
        ellm_quant_use_kernel_set("scalar");
        const ellm_type_kernels *ref_k = ellm_kernels_for((ellm_type)type);
        if (!ref_k)
            continue;
        const char *name = ellm_type_name((uint32_t)type);
        uint32_t bs = ellm_type_traits_of((uint32_t)type)->block_size;
        bool quantized = ref_k->vec_dot_type != ELLM_TYPE_F32;
        for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
            int n = sizes[si];
            if (n % (int)bs)
                continue;
            for (int edge = 0; edge < 3; edge++) {
                for (int i = 0; i < n; i++)
                    w[i] = edge == 1 ? 0.0f : frand() * (edge == 2 && i % 7 == 0 ? 1e3f : 1.0f);
                ellm_quantize_row((ellm_type)type, w, wq, n);
                ellm_dequantize_row((ellm_type)type, wq, wd, n);
                const void *rows[4];
                for (int r = 0; r < 4; r++) {
                    for (int i = 0; i < n; i++)
                        x[i] = frand() * (edge == 2 ? 1e-4f : (float)(r + 1));
                    if (quantized)
                        ellm_quantize_row(ref_k->vec_dot_type, x, xq[r], n);
                    else
                        memcpy(xq[r], x, (size_t)n * sizeof(float));
                    rows[r] = xq[r];
                }
                float want[4];
                for (int r = 0; r < 4; r++)
                    ref_k->vec_dot(n, &want[r], wq, rows[r]);
                for (int set = 0; set < n_sets - 1; set++) {
                    CHECK(ellm_quant_use_kernel_set(sets[set]));
                    const ellm_type_kernels *k = ellm_kernels_for((ellm_type)type);
                    CHECK(k && k->vec_dot_type == ref_k->vec_dot_type);
                    if (!k || k->vec_dot_type != ref_k->vec_dot_type)
                        continue;
                    bool exact = (quantized &&
                                  (!strncmp(k->isa, "neon", 4) || !strcmp(k->isa, "avx512"))) ||
                                 !strncmp(k->isa, "wasm-", 5);
                    for (int r = 0; r < 4; r++) {
                        float got;
                        k->vec_dot(n, &got, wq, rows[r]);
                        double mag = 0;
                        static float xr[MAXN];
                        if (quantized)
                            ellm_dequantize_row(k->vec_dot_type, rows[r], xr, n);
                        else
                            memcpy(xr, rows[r], (size_t)n * sizeof(float));
                        for (int i = 0; !exact && i < n; i++)
                            mag += fabs((double)wd[i] * xr[i]);
                        bool ok = exact ? !memcmp(&got, &want[r], sizeof got)
                                        : fabs((double)got - want[r]) <= 1e-5 * mag + 1e-30;
                        CHECK_MSG(ok, "%s %s n=%d edge=%d row=%d: %.9g, scalar %.9g", sets[set],
                                  name, n, edge, r, got, want[r]);
                        compared++;
                        if (r == 0 && k->vec_dot_x4) {
                            float single[4], multi[4];
                            for (int t = 0; t < 4; t++)
                                k->vec_dot(n, &single[t], wq, rows[t]);
                            k->vec_dot_x4(n, multi, wq, rows);
                            CHECK_MSG(!memcmp(single, multi, sizeof single),
                                      "%s %s n=%d: x4 kernel differs from single rows", sets[set],
                                      name, n);
                            if (exact)
                                CHECK_MSG(!memcmp(multi, want, sizeof want),
                                          "%s %s n=%d: x4 kernel differs from scalar", sets[set],
                                          name, n);
                        }
                    }
                }
                ellm_quant_use_kernel_set("scalar");
            }
        }
    }
    fprintf(stderr, "%d dot products compared against the scalar set\n", compared);

    /* Activation quantizers: random rows, rows with exact .5 ties (a block whose extreme is
     * 127 has scale 1 in Q8_0 and Q8_1; one whose extreme is -128 has scale 1 in Q8_K), zero
     * blocks. */
    ellm_type act_types[] = {ELLM_TYPE_Q8_0, ELLM_TYPE_Q8_K, ELLM_TYPE_Q8_1};
    for (int set = 0; set < n_sets; set++) {
        for (size_t t = 0; t < sizeof act_types / sizeof act_types[0]; t++) {
            for (int kind = 0; kind < 3; kind++) {
                for (int i = 0; i < MAXN; i++)
                    x[i] = kind == 0   ? frand() * 3.0f
                           : kind == 1 ? (float)(i % 200 - 100) + 0.5f
                                       : 0.0f;
                if (kind == 1)
                    for (int i = 0; i < MAXN; i += 32)
                        x[i] = act_types[t] == ELLM_TYPE_Q8_K ? -128.0f : 127.0f;
                static uint8_t a[MAXN * 2], b[MAXN * 2];
                size_t bytes = ellm_quantize_row(act_types[t], x, a, MAXN);
                CHECK(ellm_quant_use_kernel_set(sets[set]));
                memset(b, 0xAA, bytes);
                ellm_quantize_activations(act_types[t], x, b, MAXN);
                CHECK_MSG(!memcmp(a, b, bytes),
                          "%s: %s activation quantizer differs from the "
                          "reference (kind %d)",
                          sets[set], ellm_type_name(act_types[t]), kind);
            }
        }
    }
    CHECK(ellm_quant_use_kernel_set(NULL));
    CHECK(!ellm_quant_use_kernel_set("no-such-set"));
    CHECK(!strcmp(ellm_kernel_set_name(), sets[0]));
}

/* The Q4_0 multi-row decode kernels at the extremes of their 16-bit sums: every nibble 15 against
 * activations all 127 or all -127 (the AVX2 rows add 16 products of a nibble and an activation in
 * a 16-bit lane, at most 30 480), and nibbles 0 and 15 alternating. Integer products times scales
 * of 1, so every order of addition gives the scalar kernel's exact sum. */
static void test_q4_0_rows_extremes(void)
{
    enum { N = 512, ROWS = ELLM_DOT_ROWS };
    static block_q4_0 w[ROWS][N / QK4_0];
    static float x[N];
    static uint8_t plain[N * 2], act[N * 3];
    const char *sets[8];
    int n_sets = ellm_kernel_sets_available(sets, 8), checked = 0;
    for (int r = 0; r < ROWS; r++)
        for (int b = 0; b < N / QK4_0; b++) {
            w[r][b].d = 0x3C00; /* 1.0 */
            memset(w[r][b].qs, r % 2 ? 0xFF : (b % 2 ? 0xF0 : 0x0F), sizeof w[r][b].qs);
        }
    for (int sign = -1; sign <= 1; sign += 2) {
        for (int i = 0; i < N; i++)
            x[i] = 127.0f * (float)sign;
        for (int set = 0; set < n_sets; set++) {
            CHECK(ellm_quant_use_kernel_set("scalar"));
            ellm_vec_dot_fn scalar = ellm_kernels_for(ELLM_TYPE_Q4_0)->vec_dot;
            CHECK(ellm_quant_use_kernel_set(sets[set]));
            const ellm_type_kernels *k = ellm_kernels_for(ELLM_TYPE_Q4_0);
            if (!k->vec_dot_rows)
                continue;
            ellm_act_layout layout = k->vec_dot_ext ? k->ext_layout : ELLM_ACT_PLAIN;
            ellm_quantize_act(ELLM_ACT_PLAIN, ELLM_TYPE_Q8_0, x, plain, N);
            ellm_quantize_act(layout, ELLM_TYPE_Q8_0, x, act, N);
            float got[ROWS];
            k->vec_dot_rows(N, got, w, sizeof w[0], act);
            for (int r = 0; r < ROWS; r++) {
                float want;
                scalar(N, &want, w[r], plain);
                CHECK_MSG(got[r] == want,
                          "%s Q4_0 rows at the extremes, sign %d row %d: %.9g, "
                          "scalar %.9g",
                          sets[set], sign, r, got[r], want);
                checked++;
            }
        }
    }
    ellm_quant_use_kernel_set(NULL);
#if defined(ELLM_HAVE_AVX2_KERNELS)
    CHECK_MSG(checked > 0, "no kernel set of this x86 build has Q4_0 multi-row kernels");
#endif
}

/* Q4_0 matrices laid out in ELLM_ROWS_BY_FOUR order multiply to exactly what the same matrices
 * give in plain order, in every set: those with kernels for the order (wasm-relaxed) what they
 * give themselves, the others (through the portable kernel) what the scalar set gives: one token (the decode kernels) and 1-3, 6 and 9 tokens
 * (the tiles), alone and two weights in one dispatch (the second after a weight of rows that are
 * not a multiple of 4, or after one that is), on one thread and three; rows of 1 block and of many,
 * row counts that are not a multiple of 4 or 8 (the rows after the last group stay plain), block
 * scales that are Inf, NaN, subnormal or the largest half (the four-row kernels convert the
 * finite ones with lane arithmetic and redo a group with an Inf or NaN exactly), and the rows
 * read back (ellm_q4_0_row_of_four) equal the plain ones byte for byte. */
static void test_q4_0_rows_by_four(void)
{
    enum { MAX_IN = 5632, MAX_ROWS = 13, T = 9 };
    static const struct {
        int64_t n_in, rows_a, rows_b;
    } shapes[] = {{32, 5, 4}, {96, 9, 13}, {960, 13, 8}, {2048, 12, 7}, {5632, 4, 6}};
    static const uint16_t specials[] = {0x7C00, 0xFC00, 0x7E00, 0x0001, 0x7BFF, 0x8400};
    static float want[2][T * MAX_ROWS], got[2][T * MAX_ROWS];
    /* On the heap: the wasm module's static data must fit its initial memory. */
    float *w = malloc(2 * MAX_ROWS * MAX_IN * sizeof *w), *x = malloc(T * MAX_IN * sizeof *x);
    uint8_t *plain = malloc(2 * MAX_ROWS * MAX_IN), *four = malloc(2 * MAX_ROWS * MAX_IN),
            *row = malloc(MAX_IN);
    CHECK(w && x && plain && four && row);
    if (!w || !x || !plain || !four || !row) {
        free(w);
        free(x);
        free(plain);
        free(four);
        free(row);
        return;
    }
    uint64_t seed = 2026;
    for (int i = 0; i < 2 * MAX_ROWS * MAX_IN; i++)
        w[i] = test_rand_gauss(&seed);
    for (int i = 0; i < T * MAX_IN; i++)
        x[i] = test_rand_gauss(&seed);
    const char *sets[8];
    int n_sets = ellm_kernel_sets_available(sets, 8), compared = 0, with_kernels = 0;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int64_t n_in = shapes[si].n_in, rows[2] = {shapes[si].rows_a, shapes[si].rows_b};
        ellm_tensor t[2], f[2];
        t[0] = test_quantized_weight(ELLM_TYPE_Q4_0, n_in, rows[0], w, plain);
        t[1] = test_quantized_weight(ELLM_TYPE_Q4_0, n_in, rows[1], w + MAX_ROWS * MAX_IN,
                                     plain + t[0].n_bytes);
        /* Special scales in the second and sixth rows' blocks, in some shapes only, so that
         * groups without them take the lane conversion alone. */
        for (int k = 0; k < 2 && si % 2 == 0; k++)
            for (int64_t r = 1; r < rows[k]; r += 4) {
                block_q4_0 *b = (block_q4_0 *)((uint8_t *)t[k].data + r * t[k].row_bytes);
                b[(r / 4) % (n_in / QK4_0)].d = specials[(si + (size_t)r) % 6];
            }
        memcpy(four, plain, t[0].n_bytes + t[1].n_bytes);
        uint8_t *scratch_rows = malloc(ELLM_BY_FOUR * t[0].row_bytes);
        for (int k = 0; k < 2; k++) {
            f[k] = t[k];
            f[k].data = four + (k ? t[0].n_bytes : 0);
            f[k].row_order = ELLM_ROWS_BY_FOUR;
            ellm_q4_0_rows_by_four((void *)(uintptr_t)f[k].data, rows[k], f[k].row_bytes,
                                   scratch_rows);
            for (int64_t r = 0; r < rows[k] / ELLM_BY_FOUR * ELLM_BY_FOUR; r++) {
                const uint8_t *group = (const uint8_t *)f[k].data +
                                       (r - r % ELLM_BY_FOUR) * (int64_t)f[k].row_bytes;
                ellm_q4_0_row_of_four(group, f[k].row_bytes, (int)(r % ELLM_BY_FOUR), row);
                CHECK_MSG(
                    !memcmp(row, (const uint8_t *)t[k].data + r * t[k].row_bytes, t[k].row_bytes),
                    "Q4_0 row %lld of %lld x %lld read back from its group differs", (long long)r,
                    (long long)rows[k], (long long)n_in);
            }
        }
        free(scratch_rows);
        size_t sb = ellm_matmul_scratch_bytes(&t[0], T);
        void *scratch = malloc(sb);
        for (int set = 0; set < n_sets; set++) {
            CHECK(ellm_quant_use_kernel_set(sets[set]));
            /* A set without kernels for the order takes the portable one, which gives the scalar
             * set's bits, and its own kernels for the rows after the last group: checked where
             * those are the scalar set's too (the wasm sets; the native ones round Q4_0
             * differently, and none of them reads the order). */
            bool own = ellm_rows_by_four_wanted(ELLM_TYPE_Q4_0);
            if (!own && strcmp(sets[set], "scalar") && strncmp(sets[set], "wasm", 4))
                continue;
            const char *reference = own ? sets[set] : "scalar";
            with_kernels += own;
            for (int threads = 1; threads <= 3; threads += 2) {
                ellm_threadpool *pool = NULL;
                CHECK(ellm_threadpool_create(threads, &pool) == EDGELLM_OK);
                for (int64_t nt = 1; nt <= T; nt += nt < 3 ? 1 : 3) {
                    for (int order = 0; order < 2; order++) {
                        int a = order, b = 1 - order;
                        const ellm_tensor *pw[2] = {&t[a], &t[b]}, *fw[2] = {&f[a], &f[b]};
                        float *py[2] = {want[a], want[b]}, *fy[2] = {got[a], got[b]};
                        CHECK(ellm_quant_use_kernel_set(reference));
                        ellm_matmul_multi(pool, pw, 2, x, nt, py, scratch);
                        CHECK(ellm_quant_use_kernel_set(sets[set]));
                        ellm_matmul_multi(pool, fw, 2, x, nt, fy, scratch);
                        for (int k = 0; k < 2; k++)
                            for (int64_t i = 0; i < nt * rows[k]; i++) {
                                CHECK_MSG(!memcmp(&got[k][i], &want[k][i], sizeof(float)),
                                          "%s Q4_0 by four, %lld x %lld, %lld tokens, %d "
                                          "threads, order %d: row %lld token %lld %.9g, plain "
                                          "%.9g",
                                          sets[set], (long long)rows[k], (long long)n_in,
                                          (long long)nt, threads, order, (long long)(i % rows[k]),
                                          (long long)(i / rows[k]), got[k][i], want[k][i]);
                                compared++;
                            }
                    }
                    ellm_matmul(pool, &f[1], x, nt, got[1], scratch);
                    CHECK(ellm_quant_use_kernel_set(reference));
                    ellm_matmul(pool, &t[1], x, nt, want[1], scratch);
                    CHECK(ellm_quant_use_kernel_set(sets[set]));
                    CHECK_MSG(!memcmp(got[1], want[1], (size_t)(nt * rows[1]) * sizeof(float)),
                              "%s Q4_0 by four alone, %lld x %lld, %lld tokens: differs from "
                              "plain",
                              sets[set], (long long)rows[1], (long long)n_in, (long long)nt);
                }
                ellm_threadpool_free(pool);
            }
        }
        free(scratch);
    }
    ellm_quant_use_kernel_set(NULL);
    free(w);
    free(x);
    free(plain);
    free(four);
    free(row);
    fprintf(stderr, "Q4_0 by four: %d values compared, %d (set, shape) pairs with kernels\n",
            compared, with_kernels);
    CHECK(compared > 0);
    /* In a module patched for relaxed SIMD that set reads the order itself. */
    for (int set = 0; set < n_sets; set++)
        if (!strcmp(sets[set], "wasm-relaxed"))
            CHECK_MSG(with_kernels > 0, "the wasm-relaxed set has no kernels for Q4_0 by four");
}

/* Every set's multi-row decode kernels (vec_dot_rows) give, for each of their rows, exactly what
 * the set's single-row decode kernel gives and exactly what the scalar kernel gives: rows of
 * fewer blocks than one step of eight, of whole steps and of steps plus a tail, short rows and long
 * ones up to tinyllama's FFN down rows (5632 columns: the wasm-relaxed K-quant kernels once sent
 * rows past 2048 columns to single rows) and past 16 384 columns with a partial group of eight
 * super-blocks (the AVX2 Q3_K rows take eight groups a pass), with edge values (zero rows, outliers, tiny activations,
 * and for the 32-value formats block scales that are half subnormals, the largest half,
 * infinities and NaNs, which the wasm kernels convert with lane arithmetic of their own), and rows
 * of different contents so that a row mixed up with another shows. */
static void test_multi_row_kernels(void)
{
    /* One a row, in block r of row r; every 32-value format keeps its half scale d first. */
    static const uint16_t special_scales[ELLM_DOT_ROWS] = {0x0001, 0x03FF, 0x7BFF, 0x8001,
                                                           0x7C00, 0xFC00, 0x7E00, 0x7C01};
    enum { MAXN = 18944, ROWS = ELLM_DOT_ROWS };
    static float w[ROWS * MAXN], x[MAXN];
    /* act: the decode layouts take up to 544 bytes a 256 values (ELLM_ACT_Q8_K_MAG) */
    static uint8_t wq[ROWS * MAXN * 2], plain[MAXN * 2], act[MAXN * 3];
    /* K-quant rows of 1-7 blocks after their whole groups (256-5632: every partial count); 17 152:
     * a second pass (ELLM_ADD_ROWS_BY_GROUPS) of a partial group alone, 18 432 of whole groups,
     * MAXN of a whole group and a partial one. */
    int sizes[] = {160,  256,  416,  512,  1024,  1792,  2048, 2816,
                   3328, 3840, 4096, 5632, 17152, 18432, MAXN};
    const char *sets[8];
    int n_sets = ellm_kernel_sets_available(sets, 8);
    int checked = 0, sets_with_rows = 0;
    for (int set = 0; set < n_sets && set < 8; set++) {
        bool any = false;
        for (int type = 0; type < ELLM_TYPE_COUNT; type++) {
            CHECK(ellm_quant_use_kernel_set("scalar"));
            const ellm_type_kernels *scalar_k = ellm_kernels_for((ellm_type)type);
            CHECK(ellm_quant_use_kernel_set(sets[set]));
            const ellm_type_kernels *k = ellm_kernels_for((ellm_type)type);
            if (!k || !k->vec_dot_rows)
                continue;
            any = true;
            uint32_t bs = ellm_type_traits_of((uint32_t)type)->block_size;
            uint64_t rb = 0;
            for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
                int n = sizes[si];
                if (n % (int)bs || !ellm_row_bytes((ellm_type)type, (uint64_t)n, &rb))
                    continue;
                for (int edge = 0; edge < 4; edge++) {
                    if (edge == 3 && bs != 32)
                        continue;
                    for (int r = 0; r < ROWS; r++)
                        for (int i = 0; i < n; i++)
                            w[r * n + i] = edge == 1 && r % 3 == 1
                                               ? 0.0f
                                               : frand() * (float)(r + 1) *
                                                     (edge == 2 && i % 7 == 0 ? 1e3f : 1.0f);
                    for (int i = 0; i < n; i++)
                        x[i] = frand() * (edge == 2 ? (i % 11 == 0 ? 50.0f : 1e-4f) : 2.0f);
                    for (int r = 0; r < ROWS; r++)
                        ellm_quantize_row((ellm_type)type, w + r * n, wq + r * rb, n);
                    uint64_t block_bytes = rb / (uint64_t)(n / 32);
                    for (int r = 0; edge == 3 && r < ROWS; r++)
                        memcpy(wq + r * rb + (uint64_t)(r % (n / 32)) * block_bytes,
                               &special_scales[r], sizeof special_scales[r]);
                    ellm_act_layout layout = k->vec_dot_ext ? k->ext_layout : ELLM_ACT_PLAIN;
                    ellm_vec_dot_fn single = k->vec_dot_ext ? k->vec_dot_ext : k->vec_dot;
                    CHECK(ellm_act_row_bytes(layout, k->vec_dot_type, n) <= sizeof act);
                    ellm_quantize_act(ELLM_ACT_PLAIN, k->vec_dot_type, x, plain, n);
                    ellm_quantize_act(layout, k->vec_dot_type, x, act, n);
                    float got[ROWS];
                    k->vec_dot_rows(n, got, wq, (size_t)rb, act);
                    /* The AVX2 Q4_0 and Q8_0 kernels add their blocks in eight lanes
                     * (kernels_avx2.c), not in the scalar kernel's order: their reference is the
                     * set's own kernel on plain rows, which their tiles equal too. */
                    bool eight_lanes = !strncmp(sets[set], "avx2", 4) &&
                                       (type == ELLM_TYPE_Q4_0 || type == ELLM_TYPE_Q8_0);
                    for (int r = 0; r < ROWS; r++) {
                        float one, own, scalar;
                        single(n, &one, wq + r * rb, act);
                        k->vec_dot(n, &own, wq + r * rb, plain);
                        scalar_k->vec_dot(n, &scalar, wq + r * rb, plain);
                        /* A NaN's payload may differ (wasm leaves it to the engine). */
                        bool nans = isnan(got[r]) && isnan(one) && isnan(own) && isnan(scalar);
                        CHECK_MSG(nans ||
                                      (!memcmp(&got[r], &one, sizeof one) &&
                                       !memcmp(&got[r], &own, sizeof own) &&
                                       (eight_lanes || !memcmp(&got[r], &scalar, sizeof scalar))),
                                  "%s %s n=%d edge %d row %d: multi-row %.9g, single-row %.9g, "
                                  "plain-row %.9g, scalar %.9g",
                                  sets[set], ellm_type_name((uint32_t)type), n, edge, r, got[r],
                                  one, own, scalar);
                        checked++;
                    }
                }
            }
        }
        sets_with_rows += any;
    }
    ellm_quant_use_kernel_set(NULL);
    fprintf(stderr, "multi-row kernels checked: %d rows in %d sets\n", checked, sets_with_rows);
    /* The AVX2 set has them for every K-quant and IQ4_XS, for Q4_0 on the paired row and Q8_0 on
     * the extended row; the avx2vnni set for its own Q2_K and Q3_K rows, and the AVX2 set's IQ4_XS
     * rows on the magnitude row (faster than VNNI ones where measured). */
    ellm_vec_dot_rows_fn iq4_xs_avx2_rows = NULL;
    if (ellm_quant_use_kernel_set("avx2")) {
        iq4_xs_avx2_rows = ellm_kernels_for(ELLM_TYPE_IQ4_XS)->vec_dot_rows;
        const ellm_type plain_rows[] = {ELLM_TYPE_Q2_K, ELLM_TYPE_Q3_K, ELLM_TYPE_Q4_K,
                                        ELLM_TYPE_Q5_K, ELLM_TYPE_Q6_K, ELLM_TYPE_IQ4_XS};
        for (size_t i = 0; i < sizeof plain_rows / sizeof plain_rows[0]; i++)
            CHECK(ellm_kernels_for(plain_rows[i])->vec_dot_rows != NULL);
        CHECK(ellm_kernels_for(ELLM_TYPE_Q4_0)->vec_dot_rows != NULL);
        CHECK(ellm_kernels_for(ELLM_TYPE_Q8_0)->vec_dot_rows != NULL);
        ellm_quant_use_kernel_set(NULL);
    }
    if (ellm_quant_use_kernel_set("avx2vnni")) {
        CHECK(ellm_kernels_for(ELLM_TYPE_Q2_K)->vec_dot_rows != NULL);
        CHECK(ellm_kernels_for(ELLM_TYPE_Q3_K)->vec_dot_rows != NULL);
        CHECK(ellm_kernels_for(ELLM_TYPE_IQ4_XS)->vec_dot_rows == iq4_xs_avx2_rows);
        CHECK(ellm_kernels_for(ELLM_TYPE_IQ4_XS)->ext_layout == ELLM_ACT_Q8_K_MAG);
        ellm_quant_use_kernel_set(NULL);
    }
    /* The wasm-simd set has them for the 32-value formats of the wide Q8_0 row. */
    if (ellm_quant_use_kernel_set("wasm-simd")) {
        const ellm_type wide[] = {ELLM_TYPE_Q4_0, ELLM_TYPE_Q5_0, ELLM_TYPE_Q8_0, ELLM_TYPE_IQ4_NL};
        for (size_t i = 0; i < sizeof wide / sizeof wide[0]; i++)
            CHECK(ellm_kernels_for(wide[i])->vec_dot_rows != NULL);
        ellm_quant_use_kernel_set(NULL);
    }
}

#if defined(__wasm__)
/* The wasm decode kernels read ahead of the weights they multiply (lanes_wasm_simd.h: touches of
 * the next rows), moved back where they would pass the end of memory, where a read traps: every
 * wasm set's decode kernels on rows that end at the last byte of wasm memory, with the results they
 * give on the same rows elsewhere. */
static void test_kernels_at_end_of_memory(void)
{
    enum { N = 2048, ROWS = ELLM_DOT_ROWS };
    static float w[ROWS * N], x[N];
    static uint8_t wq[ROWS * N * 4], act[N * 8];
    for (int i = 0; i < ROWS * N; i++)
        w[i] = frand();
    for (int i = 0; i < N; i++)
        x[i] = frand();
    const char *sets[8];
    int n_sets = ellm_kernel_sets_available(sets, 8), checked = 0;
    for (int set = 0; set < n_sets && set < 8; set++) {
        if (strncmp(sets[set], "wasm", 4) != 0)
            continue;
        CHECK(ellm_quant_use_kernel_set(sets[set]));
        for (int type = 0; type < ELLM_TYPE_COUNT; type++) {
            const ellm_type_kernels *k = ellm_kernels_for((ellm_type)type);
            uint64_t rb = 0;
            if (!k || !k->vec_dot || !ellm_row_bytes((ellm_type)type, N, &rb) ||
                ROWS * rb > sizeof wq || ellm_quantize_row((ellm_type)type, w, wq, N) != rb)
                continue;
            for (int r = 1; r < ROWS; r++)
                ellm_quantize_row((ellm_type)type, w + r * N, wq + r * rb, N);
            ellm_act_layout layout = k->vec_dot_ext ? k->ext_layout : ELLM_ACT_PLAIN;
            ellm_vec_dot_fn single = k->vec_dot_ext ? k->vec_dot_ext : k->vec_dot;
            ellm_quantize_act(layout, k->vec_dot_type, x, act, N);
            float want[ROWS], got[ROWS];
            for (int r = 0; r < ROWS; r++)
                single(N, &want[r], wq + r * rb, act);
            /* Room at the top of the heap, taken from the allocator for good: the copy lies in
             * it or past the break, and nothing allocates until the kernels are done with it. */
            size_t bytes = ROWS * (size_t)rb;
            void *room = sbrk((intptr_t)bytes);
            CHECK(room != (void *)-1);
            if (room == (void *)-1)
                break;
            uint8_t *end = (uint8_t *)((uintptr_t)__builtin_wasm_memory_size(0) * 65536u);
            uint8_t *rows = memcpy(end - bytes, wq, bytes);
            if (k->vec_dot_rows)
                k->vec_dot_rows(N, got, rows, (size_t)rb, act);
            else
                for (int r = 0; r < ROWS; r++)
                    single(N, &got[r], rows + r * rb, act);
            CHECK_MSG(!memcmp(got, want, sizeof want), "%s %s: rows at the end of memory",
                      sets[set], ellm_type_name((uint32_t)type));
            single(N, &got[0], rows + (ROWS - 1) * rb, act);
            CHECK_MSG(!memcmp(&got[0], &want[ROWS - 1], sizeof got[0]), "%s %s: the last row alone",
                      sets[set], ellm_type_name((uint32_t)type));
            checked++;
        }
    }
    ellm_quant_use_kernel_set(NULL);
    CHECK(checked > 0);
    fprintf(stderr, "kernels on rows at the end of wasm memory: %d types and sets\n", checked);
}
#endif

static void test_matmul(void)
{
    enum { IN = 256, OUT = 67, T = 5 };
    static float w[OUT * IN], x[T * IN], ref[T * OUT], y[T * OUT], y1[T * OUT];
    static uint8_t wq[OUT * IN * 4];
    for (int i = 0; i < OUT * IN; i++)
        w[i] = frand();
    for (int i = 0; i < T * IN; i++)
        x[i] = frand();
    ellm_type types[] = {ELLM_TYPE_F32,  ELLM_TYPE_F16,  ELLM_TYPE_Q8_0,
                         ELLM_TYPE_Q4_0, ELLM_TYPE_Q4_K, ELLM_TYPE_Q6_K};
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        ellm_tensor tw = test_quantized_weight(types[t], IN, OUT, w, wq);
        uint64_t row_bytes = tw.row_bytes;
        /* Naive reference on dequantized weights. */
        static float wd[IN];
        for (int r = 0; r < OUT; r++) {
            ellm_dequantize_row(types[t], wq + r * row_bytes, wd, IN);
            for (int tok = 0; tok < T; tok++) {
                double s = 0;
                for (int i = 0; i < IN; i++)
                    s += (double)wd[i] * x[tok * IN + i];
                ref[tok * OUT + r] = (float)s;
            }
        }
        void *scratch = malloc(ellm_matmul_scratch_bytes(&tw, T) + 1);
        for (int threads = 1; threads <= 3; threads++) {
            ellm_threadpool *pool = NULL;
            CHECK(ellm_threadpool_create(threads, &pool) == EDGELLM_OK);
            ellm_matmul(pool, &tw, x, T, y, scratch);
            ellm_threadpool_free(pool);
            double worst = 0;
            for (int i = 0; i < T * OUT; i++)
                worst = fmax(worst, fabs((double)y[i] - ref[i]));
            /* Quantized weights take 8-bit activations: allow their rounding. */
            bool act8 = types[t] != ELLM_TYPE_F32 && types[t] != ELLM_TYPE_F16;
            double tol = act8 ? 0.15 : 1e-3;
            CHECK_MSG(worst < tol, "%s matmul off the naive result by %g", ellm_type_name(types[t]),
                      worst);
            if (threads == 1)
                memcpy(y1, y, sizeof y);
            else
                CHECK_MSG(!memcmp(y, y1, sizeof y), "%s: %d threads change the result",
                          ellm_type_name(types[t]), threads);
        }
        /* Decode (one token: single-row kernels) and prefill (the batch: tiles where the set
         * has them) must give every token the same bytes. */
        for (int tok = 0; tok < T; tok++) {
            float one[OUT];
            ellm_matmul(NULL, &tw, x + tok * IN, 1, one, scratch);
            CHECK_MSG(!memcmp(one, y1 + tok * OUT, sizeof one),
                      "%s: token %d alone differs from the batch", ellm_type_name(types[t]), tok);
        }
        free(scratch);
    }
}

/* A token's matmul output is the same alone or in any batch (including batches longer than one
 * cache chunk of the tiled path: 130 tokens are three chunks of the 16-bit tiled rows, whose
 * layout depends on the chunk), and fused weights give exactly the separate products, in every
 * kernel set. */
static void test_matmul_batch_independence(void)
{
    enum { IN = 4096, OUT = 7, OUT2 = 5, T = 130 };
    static float w[OUT * IN], x[T * IN], y[T * OUT], y2[T * OUT2], one[OUT],
        fused[T * (OUT + OUT2)];
    static uint8_t wq[OUT * IN * 2];
    for (int i = 0; i < OUT * IN; i++)
        w[i] = frand();
    for (int i = 0; i < T * IN; i++)
        x[i] = frand();
    ellm_type types[] = {ELLM_TYPE_Q8_0, ELLM_TYPE_Q4_0, ELLM_TYPE_Q5_0,  ELLM_TYPE_IQ4_NL,
                         ELLM_TYPE_Q4_1, ELLM_TYPE_Q5_1, ELLM_TYPE_IQ4_XS};
    const char *sets[8];
    int n_sets = ellm_kernel_sets_available(sets, 8);
    for (int set = 0; set < n_sets && set < 8; set++)
        for (size_t ty = 0; ty < sizeof types / sizeof types[0]; ty++) {
            CHECK(ellm_quant_use_kernel_set(sets[set]));
            ellm_tensor a = test_quantized_weight(types[ty], IN, OUT, w, wq);
            ellm_tensor b = a;
            b.ne[1] = OUT2;
            b.data = wq + a.row_bytes; /* rows 1..5 of a */
            void *scratch = malloc(ellm_matmul_scratch_bytes(&a, T));
            ellm_threadpool *pool = NULL;
            CHECK(ellm_threadpool_create(2, &pool) == EDGELLM_OK);
            ellm_matmul(pool, &a, x, T, y, scratch);
            for (int t = 0; t < T; t += 3) {
                ellm_matmul(pool, &a, x + t * IN, 1, one, scratch);
                CHECK_MSG(!memcmp(one, y + t * OUT, sizeof one),
                          "%s %s: token %d alone differs from its batch of %d", sets[set],
                          ellm_type_name(types[ty]), t, T);
            }
            const ellm_tensor *ws[2] = {&a, &b};
            float *ys[2] = {fused, fused + T * OUT};
            ellm_matmul_multi(pool, ws, 2, x, T, ys, scratch);
            ellm_matmul(NULL, &b, x, T, y2, scratch);
            CHECK(!memcmp(fused, y, sizeof y));
            CHECK(!memcmp(fused + T * OUT, y2, sizeof y2));
            ellm_threadpool_free(pool);
            free(scratch);
        }
    ellm_quant_use_kernel_set(NULL);
}

/* Weights of different types whose kernels take the same activations (Q4_K and Q6_K: Q8_K rows)
 * share one ellm_matmul_multi dispatch; each output must be exactly what ellm_matmul gives, at
 * one token (single-row kernels) and at several (tiles), for 1 and 3 threads. */
static void test_matmul_multi_mixed_types(void)
{
    enum { IN = 512, OUT_A = 48, OUT_B = 32, T = 5 };
    static float w[OUT_A * IN], x[T * IN], y[T * OUT_A], y2[T * OUT_B], ya[T * OUT_A],
        yb[T * OUT_B];
    static uint8_t wa[OUT_A * IN], wb[OUT_B * IN];
    uint64_t seed = 77;
    for (int i = 0; i < OUT_A * IN; i++)
        w[i] = test_rand_gauss(&seed);
    for (int i = 0; i < T * IN; i++)
        x[i] = test_rand_gauss(&seed);
    const ellm_type types[2] = {ELLM_TYPE_Q4_K, ELLM_TYPE_Q6_K};
    uint8_t *data[2] = {wa, wb};
    const int64_t outs[2] = {OUT_A, OUT_B};
    ellm_tensor t[2];
    for (int k = 0; k < 2; k++)
        t[k] = test_quantized_weight(types[k], IN, outs[k], w, data[k]);
    size_t sa = ellm_matmul_scratch_bytes(&t[0], T), sb = ellm_matmul_scratch_bytes(&t[1], T);
    void *scratch = malloc(sa > sb ? sa : sb);
    for (int threads = 1; threads <= 3; threads += 2) {
        ellm_threadpool *pool = NULL;
        CHECK(ellm_threadpool_create(threads, &pool) == EDGELLM_OK);
        for (int64_t n_tokens = 1; n_tokens <= T; n_tokens += T - 1) {
            const ellm_tensor *ws[2] = {&t[0], &t[1]};
            float *ys[2] = {ya, yb};
            ellm_matmul_multi(pool, ws, 2, x, n_tokens, ys, scratch);
            ellm_matmul(NULL, &t[0], x, n_tokens, y, scratch);
            ellm_matmul(NULL, &t[1], x, n_tokens, y2, scratch);
            CHECK_MSG(!memcmp(ya, y, (size_t)(n_tokens * OUT_A) * sizeof(float)) &&
                          !memcmp(yb, y2, (size_t)(n_tokens * OUT_B) * sizeof(float)),
                      "Q4_K + Q6_K in one dispatch differ from each alone (%lld tokens, %d "
                      "threads)",
                      (long long)n_tokens, threads);
        }
        ellm_threadpool_free(pool);
    }
    free(scratch);
}

/* Weights whose kernels read different layouts of the same activation type go a dispatch per
 * layout; the tiled (IQ4_XS) and plain (Q5_K) Q8_K rows come out of one quantization into one
 * scratch (the largest weight's). Q/K/V-shaped (each order of the types, so the layouts
 * alternate) and gated, in every set, at one token and at several with the tiled layout's chunks
 * evened out (130 tokens at 4096 columns: 44 + 44 + 42): each output exactly what ellm_matmul alone
 * gives. */
static void mixed_layouts_gated(float *a, const float *b, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        a[i] = a[i] - 0.25f * b[i];
}

static void test_matmul_mixed_layouts(void)
{
    enum { IN = 4096, ROWS = 24, T = 130 };
    static float y[3][T * ROWS], ref[3][T * ROWS];
    /* On the heap: the wasm build's static memory is too small for them. */
    float *w = malloc(sizeof(float) * ROWS * IN), *x = malloc(sizeof(float) * T * IN);
    uint8_t(*data)[ROWS * IN] = malloc(2 * ROWS * IN);
    CHECK(w && x && data);
    uint64_t seed = 123;
    for (int i = 0; i < ROWS * IN; i++)
        w[i] = test_rand_gauss(&seed);
    for (int i = 0; i < T * IN; i++)
        x[i] = test_rand_gauss(&seed);
    ellm_tensor iq4 = test_quantized_weight(ELLM_TYPE_IQ4_XS, IN, ROWS, w, data[0]);
    ellm_tensor q5 = test_quantized_weight(ELLM_TYPE_Q5_K, IN, ROWS, w, data[1]);
    ellm_tensor iq4_short = iq4;
    iq4_short.ne[1] = ROWS - 7;
    const ellm_tensor *orders[3][3] = {
        {&iq4, &iq4_short, &q5}, {&q5, &iq4, &iq4_short}, {&iq4, &q5, &iq4_short}};
    const char *sets[8];
    int n_sets = ellm_kernel_sets_available(sets, 8);
    int tiled_beside_plain = 0;
    for (int set = 0; set < n_sets && set < 8; set++) {
        CHECK(ellm_quant_use_kernel_set(sets[set]));
        tiled_beside_plain += ellm_gemm_act_layout(ELLM_TYPE_IQ4_XS) == ELLM_ACT_Q8_K_TILED &&
                              ellm_gemm_act_layout(ELLM_TYPE_Q5_K) == ELLM_ACT_PLAIN;
        size_t sa = ellm_matmul_scratch_bytes(&iq4, T), sb = ellm_matmul_scratch_bytes(&q5, T);
        uint8_t *scratch = malloc(sa > sb ? sa : sb);
        ellm_threadpool *pool = NULL;
        CHECK(ellm_threadpool_create(2, &pool) == EDGELLM_OK);
        for (int64_t nt = 1; nt <= T; nt = nt == 1 ? 5 : nt == 5 ? T : T + 1) {
            for (int o = 0; o < 3; o++) {
                float *ys[3] = {y[0], y[1], y[2]};
                for (int i = 0; i < 3; i++) {
                    ellm_matmul(NULL, orders[o][i], x, nt, ref[i], scratch);
                    memset(y[i], 0xff, sizeof y[i]);
                }
                ellm_matmul_multi(pool, orders[o], 3, x, nt, ys, scratch);
                for (int i = 0; i < 3; i++)
                    CHECK_MSG(
                        !memcmp(y[i], ref[i], (size_t)(nt * orders[o][i]->ne[1]) * sizeof(float)),
                        "%s: %s as weight %d of order %d in one multi dispatch differs "
                        "from it alone (%lld tokens)",
                        sets[set], ellm_type_name(orders[o][i]->type), i, o, (long long)nt);
            }
            ellm_matmul(NULL, &iq4, x, nt, ref[0], scratch);
            ellm_matmul(NULL, &q5, x, nt, ref[1], scratch);
            mixed_layouts_gated(ref[0], ref[1], nt * ROWS);
            ellm_matmul_gated(pool, &iq4, &q5, x, nt, y[0], y[1], mixed_layouts_gated, scratch);
            size_t bytes = (size_t)(nt * ROWS) * sizeof(float);
            CHECK_MSG(!memcmp(y[0], ref[0], bytes) && !memcmp(y[1], ref[1], bytes),
                      "%s: gated IQ4_XS + Q5_K differs from the matmuls alone (%lld tokens)",
                      sets[set], (long long)nt);
        }
        ellm_threadpool_free(pool);
        free(scratch);
    }
    ellm_quant_use_kernel_set(NULL);
    /* The AVX2 set tiles IQ4_XS and reads plain rows for Q5_K: the case this test is for. */
    if (ellm_quant_use_kernel_set("avx2")) {
        CHECK(tiled_beside_plain > 0);
        ellm_quant_use_kernel_set(NULL);
    }
    free(w);
    free(x);
    free(data);
}

/* A gate/up pair in one dispatch with the activation applied per chunk (ellm_matmul_gated) must
 * give exactly each matmul alone followed by the activation over whole rows: same types, types
 * sharing activation rows (Q4_K + Q6_K), and types that do not (Q4_0 + Q4_K, done one by one),
 * at one token and several, 1 and 3 threads, with a row count that leaves a short last chunk. */
static void gated_test_combine(float *a, const float *b, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        a[i] = a[i] * 0.5f - b[i] * b[i];
}

static void test_matmul_gated(void)
{
    enum { IN = 256, OUT = 1000, T = 5 };
    static float w[OUT * IN], x[T * IN], g[T * OUT], u[T * OUT], g_ref[T * OUT], u_ref[T * OUT];
    static uint8_t data[2][OUT * IN];
    uint64_t seed = 91;
    for (int i = 0; i < OUT * IN; i++)
        w[i] = test_rand_gauss(&seed);
    for (int i = 0; i < T * IN; i++)
        x[i] = test_rand_gauss(&seed);
    const ellm_type pairs[3][2] = {{ELLM_TYPE_Q4_0, ELLM_TYPE_Q4_0},
                                   {ELLM_TYPE_Q4_K, ELLM_TYPE_Q6_K},
                                   {ELLM_TYPE_Q4_0, ELLM_TYPE_Q4_K}};
    for (int p = 0; p < 3; p++) {
        ellm_tensor t[2];
        size_t scratch_bytes = 0;
        for (int k = 0; k < 2; k++) {
            uint64_t rb = 0;
            ellm_row_bytes(pairs[p][k], IN, &rb);
            /* the up weight is the gate's rows in reverse, so the two differ */
            for (int64_t r = 0; r < OUT; r++)
                ellm_quantize_row(pairs[p][k], w + (k ? OUT - 1 - r : r) * IN, data[k] + r * rb,
                                  IN);
            t[k] = (ellm_tensor){.type = pairs[p][k],
                                 .ne = {IN, OUT, 1, 1},
                                 .n_dims = 2,
                                 .row_bytes = rb,
                                 .n_bytes = rb * (uint64_t)OUT,
                                 .data = data[k]};
            size_t sb = ellm_matmul_scratch_bytes(&t[k], T);
            scratch_bytes = sb > scratch_bytes ? sb : scratch_bytes;
        }
        void *scratch = malloc(scratch_bytes);
        for (int threads = 1; threads <= 3; threads += 2) {
            ellm_threadpool *pool = NULL;
            CHECK(ellm_threadpool_create(threads, &pool) == EDGELLM_OK);
            for (int64_t n_tokens = 1; n_tokens <= T; n_tokens += T - 1) {
                ellm_matmul(NULL, &t[0], x, n_tokens, g_ref, scratch);
                ellm_matmul(NULL, &t[1], x, n_tokens, u_ref, scratch);
                gated_test_combine(g_ref, u_ref, n_tokens * OUT);
                ellm_matmul_gated(pool, &t[0], &t[1], x, n_tokens, g, u, gated_test_combine,
                                  scratch);
                size_t bytes = (size_t)(n_tokens * OUT) * sizeof(float);
                CHECK_MSG(!memcmp(g, g_ref, bytes) && !memcmp(u, u_ref, bytes),
                          "gated %s + %s differs from the matmuls and the activation alone "
                          "(%lld tokens, %d threads)",
                          ellm_type_name(pairs[p][0]), ellm_type_name(pairs[p][1]),
                          (long long)n_tokens, threads);
            }
            ellm_threadpool_free(pool);
        }
        free(scratch);
    }
}

static uint32_t float_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float float_of_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* The attention kernels' exp within 1 ulp of e^x (double precision) over floats of [-87, 0]
 * taken every 4099th bit pattern (the exhaustive figure is in docs/performance.md), and its
 * edges: 1 at zero, 0 below the floor, NaN kept. */
static void test_exp_accuracy(void)
{
    double worst = 0;
    float worst_x = 0;
    for (uint32_t u = 0; u <= float_bits(87.0f); u += 4099) {
        float x = -float_of_bits(u);
        double want = exp((double)x);
        float got = ellm_exp(x);
        double ulp = nextafterf((float)want, INFINITY) - (float)want;
        double err = fabs((double)got - want) / ulp;
        if (err > worst) {
            worst = err;
            worst_x = x;
        }
    }
    fprintf(stderr, "ellm_exp: worst sampled error %.3f ulp at %.9g\n", worst, (double)worst_x);
    CHECK_MSG(worst <= 1.0, "%.3f ulp at %.9g", worst, (double)worst_x);
    CHECK(ellm_exp(0.0f) == 1.0f && ellm_exp(-0.0f) == 1.0f);
    CHECK(ellm_exp(-87.5f) == 0.0f && ellm_exp(-1e30f) == 0.0f && ellm_exp(-INFINITY) == 0.0f);
    CHECK(isnan(ellm_exp(NAN)));
}

/* SiLU's exp, rounded from double: the correctly rounded float (that of e^x in double) for all
 * but a few of the floats of [-104, 89] taken every 4099th bit pattern, never more than 0.51 ulp
 * off; 0 and +inf beyond, NaN kept. */
static void test_exp_rounded(void)
{
    int64_t count = 0, misrounded = 0;
    double worst = 0;
    const uint32_t top[2] = {float_bits(89.0f), float_bits(104.0f)};
    for (int sign = 0; sign < 2; sign++) {
        for (uint32_t u = 0; u <= top[sign]; u += 4099) {
            float x = float_of_bits(u | (uint32_t)sign << 31);
            double want = exp((double)x);
            float got = ellm_exp_rounded(x), rounded = (float)want;
            double ulp = isinf(rounded) ? INFINITY : nextafterf(rounded, INFINITY) - rounded;
            double err = isinf(rounded) ? 0 : fabs((double)got - want) / ulp;
            worst = err > worst ? err : worst;
            misrounded += float_bits(got) != float_bits(rounded);
            count++;
        }
    }
    fprintf(stderr,
            "ellm_exp_rounded: %lld of %lld sampled floats not correctly rounded, worst %.4f ulp\n",
            (long long)misrounded, (long long)count, worst);
    CHECK_MSG(worst <= 0.51 && misrounded * 10000 < count, "%lld misrounded, %.4f ulp",
              (long long)misrounded, worst);
    CHECK(ellm_exp_rounded(0.0f) == 1.0f && ellm_exp_rounded(-0.0f) == 1.0f);
    CHECK(ellm_exp_rounded(-104.5f) == 0.0f && ellm_exp_rounded(-INFINITY) == 0.0f);
    CHECK(ellm_exp_rounded(-100.0f) > 0.0f && ellm_exp_rounded(-100.0f) < FLT_MIN);
    CHECK(ellm_exp_rounded(88.72f) < INFINITY && ellm_exp_rounded(88.73f) == INFINITY);
    CHECK(ellm_exp_rounded(INFINITY) == INFINITY && isnan(ellm_exp_rounded(NAN)));
}

/* Every set's SiLU kernel against the scalar one, bit for bit (NaN against NaN: WebAssembly
 * leaves a NaN's sign and payload open), on the edges (zeros, denormals, the exp's floor and
 * ceiling, infinities, NaN) and a dense random sweep, at lengths and offsets that leave every
 * tail length; the scalar one itself within a few ulp of SiLU in double precision. */
static void test_silu_every_set(void)
{
    enum { N = 4099 };
    static float gate[N], up[N], want[N], got[N];
    const float edges[] = {0.0f,    -0.0f,    1e-40f,   -1e-40f,   FLT_TRUE_MIN, -FLT_TRUE_MIN,
                           FLT_MIN, -FLT_MIN, 1e-20f,   -1e-20f,   1.0f,         -1.0f,
                           86.9f,   -86.9f,   87.0f,    -87.0f,    87.5f,        -87.5f,
                           88.0f,   -88.0f,   88.72f,   -88.72f,   88.73f,       -88.73f,
                           88.75f,  -88.75f,  88.76f,   -88.76f,   89.0f,        -89.0f,
                           100.0f,  -100.0f,  104.0f,   -104.0f,   1e30f,        -1e30f,
                           FLT_MAX, -FLT_MAX, INFINITY, -INFINITY, NAN,          -NAN};
    const int n_edges = (int)(sizeof edges / sizeof edges[0]);
    uint64_t seed = 0x5111a7e57ull;
    for (int i = 0; i < N; i++) {
        float g = i < n_edges ? edges[i]
                  : i % 3     ? test_rand_gauss(&seed) * 6.0f
                              : test_rand_uniform(&seed) * 110.0f;
        gate[i] = g;
        up[i] = i < 2 * n_edges ? 1.0f : test_rand_gauss(&seed);
    }
    memcpy(want, gate, sizeof want);
    ellm_silu_mul_scalar(want, up, N);
    double worst = 0;
    for (int i = 0; i < N; i++) {
        double g = gate[i];
        if (!isfinite(g) || fabs(g) > 80)
            continue;
        double silu = g / (1.0 + exp(-g)) * up[i];
        double ulp = nextafterf((float)silu, INFINITY) - (float)silu;
        double err = fabs((double)want[i] - silu) / (ulp > 0 ? ulp : FLT_TRUE_MIN);
        worst = err > worst ? err : worst;
    }
    CHECK_MSG(worst <= 4.0, "scalar SiLU %.2f ulp from double precision", worst);

    const char *sets[8];
    int n_sets = ellm_kernel_sets_available(sets, 8);
    fprintf(stderr, "SiLU kernels compared with the scalar one:");
    for (int set = 0; set < n_sets && set < 8; set++) {
        CHECK(ellm_quant_use_kernel_set(sets[set]));
        fprintf(stderr, " %s", sets[set]);
        for (int start = 0; start < 9; start++) {
            for (int len = N - start - 8; len <= N - start; len++) {
                memcpy(got, gate, sizeof got);
                ellm_silu_mul(got + start, up + start, len);
                int diffs = 0, first = -1;
                for (int i = 0; i < N; i++) {
                    float expect = i >= start && i < start + len ? want[i] : gate[i];
                    bool same = isnan(expect) ? isnan(got[i])
                                              : float_bits(expect) == float_bits(got[i]);
                    if (!same && diffs++ == 0)
                        first = i;
                }
                CHECK_MSG(!diffs,
                          "%s: %d values differ, the first SiLU(%.9g) * %.9g: %.9g, not %.9g",
                          sets[set], diffs, (double)gate[first], (double)up[first],
                          (double)got[first], (double)want[first]);
            }
        }
    }
    fprintf(stderr, "\n");
    ellm_quant_use_kernel_set(NULL);
}

int main(void)
{
    test_half_conversions();
    test_block_layouts();
    test_quantization_error();
    test_q8_K_activations();
    test_kernels_match_reference();
    test_gemm_tiles();
    test_gemm_tiles_extremes();
    test_extended_activation_rows();
    test_kquant_decode_extremes();
    test_wide_row_quantizers();
    test_gemm_f16_tiles();
    test_every_kernel_set();
    test_multi_row_kernels();
    test_q4_0_rows_extremes();
    test_q4_0_rows_by_four();
#if defined(__wasm__)
    test_kernels_at_end_of_memory();
#endif
    test_matmul();
    test_matmul_batch_independence();
    test_matmul_multi_mixed_types();
    test_matmul_mixed_layouts();
    test_matmul_gated();
    test_exp_accuracy();
    test_exp_rounded();
    test_silu_every_set();
    return test_finish("test_quant");
}
