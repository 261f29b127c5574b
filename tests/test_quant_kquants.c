/* K-quant weight formats Q4_K, Q5_K, Q6_K: blocks built by hand from the GGUF layout decode to
 * the values the format defines (this pins bit-compatibility with files other tools write);
 * quantize -> dequantize error stays within bounds derived from each format's step size on
 * random, outlier, zero, constant and negative-only data; every kernel (scalar, AVX2, four-row)
 * against the reference dot product and each other; the AVX2 Q8_K activation quantizer gives the
 * reference bytes; matmul against a naive float loop for several thread counts. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant/blocks.h"
#include "quant/kquants.h"
#include "quant/quant.h"
#include "test_util.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float frand(void) { return test_rand_uniform(&rng); }
static float grand(void) /* roughly normal (sum of uniforms) */
{
    return (frand() + frand() + frand() + frand()) * 0.8660254f;
}

static const ellm_type ktypes[] = {ELLM_TYPE_Q4_K, ELLM_TYPE_Q5_K, ELLM_TYPE_Q6_K};
#define N_KTYPES 3

/* ---- bit layout ---- */

/* Scales {1,2,33,63,17,40,5,60} and mins {0,3,62,31,48,7,33,16} packed by hand: sub-blocks 0-3
 * in the low 6 bits of bytes 0-3 (scales) and 4-7 (mins); sub-blocks 4-7 have their low nibbles
 * in bytes 8-11 (scale low, min high) and their top two bits in bits 6-7 of bytes 0-3 (scales)
 * and 4-7 (mins). E.g. scale 17 = 0b01'0001 puts 1 in byte 8's low nibble and 01 in byte 0's top
 * bits: byte 0 = 0b01'000001 = 0x41. */
static const uint8_t packed_scales[12] = {0x41, 0x82, 0x21, 0xFF, 0xC0, 0x03,
                                          0xBE, 0x5F, 0x01, 0x78, 0x15, 0x0C};
static const uint8_t want_sc[8] = {1, 2, 33, 63, 17, 40, 5, 60};
static const uint8_t want_m[8] = {0, 3, 62, 31, 48, 7, 33, 16};

static void test_q4_K_layout(void)
{
    uint8_t got[12];
    ellm_kq_pack_scale_min(want_sc, want_m, got);
    CHECK_MSG(!memcmp(got, packed_scales, 12), "6-bit scale/min packing differs from the layout");
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        ellm_kq_scale_min(j, packed_scales, &sc, &m);
        CHECK_MSG(sc == want_sc[j] && m == want_m[j], "sub-block %d: scale %d min %d", j, sc, m);
    }

    /* Value v is in chunk c = v / 64: low nibble of qs[32c + l] for v = 64c + l, high nibble for
     * v = 64c + 32 + l. Give every value its own q. */
    block_q4_K b;
    b.d = ellm_f32_to_f16(0.5f);
    b.dmin = ellm_f32_to_f16(0.25f);
    memcpy(b.scales, packed_scales, 12);
    int q[QK_K];
    for (int v = 0; v < QK_K; v++)
        q[v] = (v * 7 + v / 32) % 16;
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++)
            b.qs[32 * c + l] = (uint8_t)(q[64 * c + l] | q[64 * c + 32 + l] << 4);
    float out[QK_K];
    ellm_dequantize_row(ELLM_TYPE_Q4_K, &b, out, QK_K);
    int bad = 0;
    for (int v = 0; v < QK_K; v++) {
        int j = v / 32;
        float want = 0.5f * (float)want_sc[j] * (float)q[v] - 0.25f * (float)want_m[j];
        bad += out[v] != want;
    }
    CHECK_MSG(bad == 0, "Q4_K: %d values decode differently from the layout", bad);
    /* Literal spot checks: value 0 (sub-block 0: q 0, scale 1, min 0) and value 255 (sub-block 7:
     * scale 60, min 16; stored in the high nibble of qs[127]). */
    CHECK(out[0] == 0.0f);
    CHECK(out[255] == 0.5f * 60 * (float)(b.qs[127] >> 4) - 0.25f * 16);
}

static void test_q5_K_layout(void)
{
    block_q5_K b;
    b.d = ellm_f32_to_f16(0.25f);
    b.dmin = ellm_f32_to_f16(1.0f);
    memcpy(b.scales, packed_scales, 12);
    int q[QK_K];
    for (int v = 0; v < QK_K; v++)
        q[v] = (v * 13 + 5) % 32;
    /* Low 4 bits as Q4_K; the fifth bit of value 64c + l is bit 2c of qh[l], of 64c + 32 + l
     * bit 2c + 1. */
    memset(b.qh, 0, sizeof b.qh);
    for (int c = 0; c < 4; c++) {
        for (int l = 0; l < 32; l++) {
            int lo = q[64 * c + l], hi = q[64 * c + 32 + l];
            b.qs[32 * c + l] = (uint8_t)((lo & 15) | (hi & 15) << 4);
            b.qh[l] |= (uint8_t)((lo >> 4) << (2 * c) | (hi >> 4) << (2 * c + 1));
        }
    }
    float out[QK_K];
    ellm_dequantize_row(ELLM_TYPE_Q5_K, &b, out, QK_K);
    int bad = 0;
    for (int v = 0; v < QK_K; v++) {
        int j = v / 32;
        bad += out[v] != 0.25f * (float)want_sc[j] * (float)q[v] - (float)want_m[j];
    }
    CHECK_MSG(bad == 0, "Q5_K: %d values decode differently from the layout", bad);
    /* Literal: qh[0] bit 0 is value 0's fifth bit, bit 7 is value 224's. */
    block_q5_K z;
    memset(&z, 0, sizeof z);
    z.d = ellm_f32_to_f16(1.0f);
    z.scales[0] = 1;     /* sub-block 0: scale 1 */
    z.scales[3] = 0x40;  /* top bits of sub-block 7's scale: 1 -> scale 16 */
    z.scales[11] = 0x01; /* low nibble of sub-block 7's scale: 16 | 1 = 17 */
    z.qh[0] = 0x81;
    ellm_dequantize_row(ELLM_TYPE_Q5_K, &z, out, QK_K);
    CHECK_MSG(out[0] == 16.0f && out[224] == 17.0f * 16.0f && out[1] == 0.0f && out[32] == 0.0f,
              "Q5_K literal block: %g %g %g %g", out[0], out[224], out[1], out[32]);
}

static void test_q6_K_layout(void)
{
    block_q6_K b;
    b.d = ellm_f32_to_f16(0.125f);
    for (int j = 0; j < 16; j++)
        b.scales[j] = (int8_t)(j * 17 - 128); /* -128 .. 127 */
    int q[QK_K];
    for (int v = 0; v < QK_K; v++)
        q[v] = (v * 29 + v / 16) % 64;
    /* Half h = v / 128 uses ql[64h..], qh[32h..]. For l < 32: ql[l] = values l (low nibble) and
     * l + 64 (high); ql[l + 32] = values l + 32 and l + 96; qh[l] bits 0-1, 2-3, 4-5, 6-7 = top
     * bits of values l, l + 32, l + 64, l + 96. */
    for (int h = 0; h < 2; h++) {
        const int *Q = q + 128 * h;
        for (int l = 0; l < 32; l++) {
            b.ql[64 * h + l] = (uint8_t)((Q[l] & 15) | (Q[l + 64] & 15) << 4);
            b.ql[64 * h + l + 32] = (uint8_t)((Q[l + 32] & 15) | (Q[l + 96] & 15) << 4);
            b.qh[32 * h + l] = (uint8_t)(Q[l] >> 4 | (Q[l + 32] >> 4) << 2 | (Q[l + 64] >> 4) << 4 |
                                         (Q[l + 96] >> 4) << 6);
        }
    }
    float out[QK_K];
    ellm_dequantize_row(ELLM_TYPE_Q6_K, &b, out, QK_K);
    int bad = 0;
    for (int v = 0; v < QK_K; v++)
        bad += out[v] != 0.125f * (float)b.scales[v / 16] * (float)(q[v] - 32);
    CHECK_MSG(bad == 0, "Q6_K: %d values decode differently from the layout", bad);
    /* The scale d is the last two bytes of the 210-byte block. */
    uint8_t raw[210];
    memcpy(raw, &b, sizeof raw);
    uint16_t d;
    memcpy(&d, raw + 208, 2);
    CHECK(d == ellm_f32_to_f16(0.125f));
    CHECK((int8_t)raw[192] == -128 && (int8_t)raw[207] == 127);
}

/* ---- quantization error ---- */

enum { NB = 64, N = NB * QK_K };

static void fill_case(float *x, int kind)
{
    for (int i = 0; i < N; i++) {
        int blk = i / QK_K;
        switch (kind) {
        case 0: x[i] = frand(); break;                                /* uniform */
        case 1: x[i] = grand() * (i % 61 == 0 ? 12.0f : 1.0f); break; /* outliers */
        case 2:                                                       /* mixed blocks */
            x[i] = blk % 4 == 0   ? 0.0f                              /* all zero */
                   : blk % 4 == 1 ? (blk % 8 == 1 ? 0.37f : -2.5f)    /* constant */
                   : blk % 4 == 2 ? -fabsf(grand()) - 0.5f            /* negative only */
                                  : fabsf(grand()) + 3.0f;            /* positive, offset */
            break;
        case 3: x[i] = grand() * (blk % 2 ? 1e-3f : 300.0f); break; /* scale range */
        }
    }
}

/* Largest error each format may make on a super-block, from its step. Q4_K/Q5_K cover
 * [min(0, lo), hi] with nmax steps per sub-block; the least-squares refit may trade the extreme
 * values' error for the others', so allow a full step there. The 6-bit sub-block scales are
 * multiples of d = (largest step) / 63, so a sub-block's step is off by at most d/2 and its min
 * by dmin/2, which over nmax levels adds up to (nmax / 2 + 1) d + dmin. Q6_K likewise with
 * steps of about amax / 32 and 8-bit scales (d = largest step / 127). */
static double error_bound(ellm_type t, const float *x)
{
    float lo = 0, hi = -INFINITY, amax = 0;
    for (int i = 0; i < QK_K; i++) {
        lo = fminf(lo, x[i]);
        hi = fmaxf(hi, x[i]);
        amax = fmaxf(amax, fabsf(x[i]));
    }
    if (t == ELLM_TYPE_Q6_K) {
        double step = amax / 30.0, d = step / 127;
        return step + (32 * 0.5 + 1) * d + amax * 0x1.0p-10;
    }
    double nmax = t == ELLM_TYPE_Q4_K ? 15 : 31;
    double step = (hi - lo) / nmax, d = step / 63, dmin = -lo / 63;
    return step + (nmax / 2 + 1) * d + dmin + (hi - lo) * 0x1.0p-10;
}

static void test_quantization_error(void)
{
    static float x[N], y[N], y0[N];
    static uint8_t buf[N * 2];
    double rms_by_type[N_KTYPES + 1] = {0};
    for (int kind = 0; kind < 4; kind++) {
        fill_case(x, kind);
        for (int t = 0; t < N_KTYPES; t++) {
            size_t bytes = ellm_quantize_row(ktypes[t], x, buf, N);
            uint64_t want = 0;
            ellm_row_bytes(ktypes[t], N, &want);
            CHECK(bytes == want);
            ellm_dequantize_row(ktypes[t], buf, y, N);
            double worst = 0, se = 0, ratio = 0;
            for (int b = 0; b < NB; b++) {
                double bound = error_bound(ktypes[t], x + b * QK_K);
                for (int i = 0; i < QK_K; i++) {
                    double e = fabs((double)x[b * QK_K + i] - y[b * QK_K + i]);
                    se += e * e;
                    if (e > bound + 1e-30)
                        worst = fmax(worst, e / bound);
                    ratio = fmax(ratio, e / (bound + 1e-30));
                }
            }
            CHECK_MSG(worst == 0, "%s case %d: error exceeds its bound (x%.3g)",
                      ellm_type_name(ktypes[t]), kind, worst);
            if (kind == 2) {
                /* Zero and constant blocks come back exactly (up to the half scale). */
                for (int b = 0; b < NB; b += 4)
                    for (int i = 0; i < QK_K; i++)
                        CHECK_MSG(y[b * QK_K + i] == 0.0f, "%s: zero block %d value %d = %g",
                                  ellm_type_name(ktypes[t]), b, i, y[b * QK_K + i]);
                for (int b = 1; b < NB; b += 4)
                    for (int i = 0; i < QK_K; i++)
                        CHECK_MSG(fabsf(y[b * QK_K + i] - x[b * QK_K + i]) <=
                                      fabsf(x[b * QK_K + i]) * 0x1.0p-9,
                                  "%s: constant block %d: %g vs %g", ellm_type_name(ktypes[t]), b,
                                  y[b * QK_K + i], x[b * QK_K + i]);
            }
            if (kind == 1)
                rms_by_type[t] = sqrt(se / N);
            fprintf(stderr, "%s case %d: rms error %.4g, worst error %.2f of its bound\n",
                    ellm_type_name(ktypes[t]), kind, sqrt(se / N), ratio);
        }
        if (kind == 1) {
            ellm_quantize_row(ELLM_TYPE_Q4_0, x, buf, N);
            ellm_dequantize_row(ELLM_TYPE_Q4_0, buf, y0, N);
            double se = 0;
            for (int i = 0; i < N; i++)
                se += ((double)x[i] - y0[i]) * ((double)x[i] - y0[i]);
            rms_by_type[N_KTYPES] = sqrt(se / N);
        }
    }
    /* More bits, less error; and Q4_K (same 4 bits plus sub-block mins) beats Q4_0. */
    CHECK_MSG(rms_by_type[2] < rms_by_type[1] && rms_by_type[1] < rms_by_type[0] &&
                  rms_by_type[0] < rms_by_type[3],
              "rms error Q6_K %.4g, Q5_K %.4g, Q4_K %.4g, Q4_0 %.4g", rms_by_type[2],
              rms_by_type[1], rms_by_type[0], rms_by_type[3]);
    /* Each doubling of levels roughly halves the error: Q5_K well under 0.7x Q4_K. */
    CHECK(rms_by_type[1] < 0.7 * rms_by_type[0] && rms_by_type[2] < 0.7 * rms_by_type[1]);
}

/* ---- kernels ---- */

static void test_kernels(void)
{
    enum { MAXN = 22 * QK_K };
    /* The AVX2 single-row kernels take rows of whole groups eight super-blocks at a time (8) and
     * others in pairs (11, 17 with the last block alone, 22: tinyllama's FFN down rows). */
    int sizes[] = {QK_K, 2 * QK_K, 3 * QK_K, 8 * QK_K, 11 * QK_K, 17 * QK_K, 22 * QK_K};
    static float w[MAXN], x[MAXN], xd[MAXN];
    static uint8_t wq[MAXN * 2];
    static block_q8_K xq[MAXN / QK_K], xq4[4][MAXN / QK_K];
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        int n = sizes[s];
        for (int edge = 0; edge < 4; edge++) {
            for (int i = 0; i < n; i++) {
                w[i] = edge == 1 ? 0.0f : grand() * (edge == 2 && i % 7 == 0 ? 1e3f : 1.0f);
                x[i] = edge == 3 ? grand() * 1e-4f : frand() * (i % 97 == 0 ? 20.0f : 1.0f);
            }
            ellm_quantize_row(ELLM_TYPE_Q8_K, x, xq, n);
            ellm_dequantize_row(ELLM_TYPE_Q8_K, xq, xd, n);
            for (int t = 0; t < N_KTYPES; t++) {
                ellm_quantize_row(ktypes[t], w, wq, n);
                /* The reference sees the same quantized activations the kernels do. */
                float ref = ellm_dot_reference(ktypes[t], wq, xd, n);
                static float wd[MAXN];
                ellm_dequantize_row(ktypes[t], wq, wd, n);
                double mag = 0;
                for (int i = 0; i < n; i++)
                    mag += fabs((double)wd[i] * xd[i]);
                double tol = 1e-5 * mag + 1e-30;
                float got[2];
                for (int pass = 0; pass < 2; pass++) {
                    ellm_quant_force_scalar(pass == 0);
                    const ellm_type_kernels *k = ellm_kernels_for(ktypes[t]);
                    CHECK(k && k->vec_dot_type == ELLM_TYPE_Q8_K);
                    if (!k)
                        continue;
                    k->vec_dot(n, &got[pass], wq, xq);
                    CHECK_MSG(fabs((double)got[pass] - ref) <= tol,
                              "%s %s n=%d edge=%d: kernel %.9g vs reference %.9g", k->isa,
                              ellm_type_name(ktypes[t]), n, edge, got[pass], ref);
                }
                ellm_quant_force_scalar(false);
                CHECK_MSG(fabs((double)got[0] - got[1]) <= tol,
                          "%s n=%d edge=%d: scalar %.9g vs %s %.9g", ellm_type_name(ktypes[t]), n,
                          edge, got[0], ellm_kernel_set_name(), got[1]);
                /* Every x86 set on this CPU (not only the default one) sums exact integers in
                 * the scalar order, so it equals the scalar kernel bit for bit. */
                const char *sets[8];
                int n_sets = ellm_kernel_sets_available(sets, 8);
                for (int set = 0; set < n_sets && set < 8; set++) {
                    CHECK(ellm_quant_use_kernel_set(sets[set]));
                    const ellm_type_kernels *k = ellm_kernels_for(ktypes[t]);
                    if (strcmp(k->isa, "avx2") && strcmp(k->isa, "avx2vnni") &&
                        strcmp(k->isa, "avx512"))
                        continue;
                    float own;
                    k->vec_dot(n, &own, wq, xq);
                    CHECK_MSG(!memcmp(&own, &got[0], sizeof own),
                              "%s n=%d edge=%d: %s kernel %.9g vs scalar %.9g (not bit-identical)",
                              ellm_type_name(ktypes[t]), n, edge, k->isa, own, got[0]);
                }
                ellm_quant_use_kernel_set(NULL);
            }
        }
    }
    fprintf(stderr, "kernel set on this CPU: %s\n", ellm_kernel_set_name());

    /* Four-row kernels give exactly what four single-row calls give. */
    int n = MAXN;
    for (int t = 0; t < N_KTYPES; t++) {
        const ellm_type_kernels *k = ellm_kernels_for(ktypes[t]);
        if (!k || !k->vec_dot_x4)
            continue;
        for (int i = 0; i < n; i++)
            w[i] = grand();
        ellm_quantize_row(ktypes[t], w, wq, n);
        const void *ptrs[4];
        float single[4], multi[4];
        for (int r = 0; r < 4; r++) {
            for (int i = 0; i < n; i++)
                x[i] = frand() * (float)(r + 1);
            ellm_quantize_row(ELLM_TYPE_Q8_K, x, xq4[r], n);
            ptrs[r] = xq4[r];
            k->vec_dot(n, &single[r], wq, xq4[r]);
        }
        k->vec_dot_x4(n, multi, wq, ptrs);
        CHECK_MSG(!memcmp(single, multi, sizeof single), "%s x4 kernel differs from single rows",
                  ellm_type_name(ktypes[t]));
    }
}

/* The fast Q8_K activation quantizer writes exactly the reference bytes, including ties that
 * round to even, blocks whose extreme is negative or positive, and all-zero blocks. */
static void test_q8_K_fast_quantizer(void)
{
    enum { M = 8 * QK_K };
    static float x[M];
    static block_q8_K a[M / QK_K], b[M / QK_K];
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < M; i++)
            x[i] = frand() * (round + 1);
        for (int i = 0; i < QK_K; i++)
            x[i] = 0;         /* block 0 all zero */
        x[QK_K + 5] = -64.0f; /* block 1: negative extreme, iscale 2 -> x.5 values are ties */
        for (int i = 0; i < QK_K; i++)
            if (i != 5)
                x[QK_K + i] = (float)((i % 64) - 32) * 0.25f;
        x[2 * QK_K + 7] = 9.0f; /* block 2: the same magnitude with both signs, first wins */
        x[2 * QK_K + 9] = -9.0f;
        x[3 * QK_K + 17] = -9.5f; /* block 3: both signs within eight values, first wins */
        x[3 * QK_K + 19] = 9.5f;
        ellm_quantize_row(ELLM_TYPE_Q8_K, x, a, M);
        ellm_quantize_activations(ELLM_TYPE_Q8_K, x, b, M);
        CHECK_MSG(!memcmp(a, b, sizeof a), "round %d: fast Q8_K differs from the reference", round);
    }
    CHECK(a[1].qs[5] == -128 && a[2].qs[7] == -128 && a[2].qs[9] == 127);
    CHECK(a[3].qs[17] == -128 && a[3].qs[19] == 127);
}

/* ---- matmul ---- */

static void test_matmul(void)
{
    enum { IN = 512, OUT = 37, T = 6 };
    static float w[OUT * IN], x[T * IN], xd[T * IN], ref_q[T * OUT], ref_f[T * OUT], y[T * OUT],
        y1[T * OUT], wd[IN];
    static uint8_t wq[OUT * IN];
    static block_q8_K xq[IN / QK_K];
    for (int i = 0; i < OUT * IN; i++)
        w[i] = grand();
    for (int i = 0; i < T * IN; i++)
        x[i] = frand();
    for (int t = 0; t < T; t++) {
        ellm_quantize_row(ELLM_TYPE_Q8_K, x + t * IN, xq, IN);
        ellm_dequantize_row(ELLM_TYPE_Q8_K, xq, xd + t * IN, IN);
    }
    for (int ti = 0; ti < N_KTYPES; ti++) {
        ellm_type type = ktypes[ti];
        uint64_t row_bytes = 0;
        ellm_row_bytes(type, IN, &row_bytes);
        for (int r = 0; r < OUT; r++)
            ellm_quantize_row(type, w + r * IN, wq + r * row_bytes, IN);
        ellm_tensor tw = {.type = type,
                          .ne = {IN, OUT, 1, 1},
                          .n_dims = 2,
                          .row_bytes = row_bytes,
                          .n_bytes = row_bytes * OUT,
                          .data = wq};
        /* Naive references on dequantized weights: with the Q8_K-rounded activations (tight) and
         * with the float activations (loose: the activations' 8-bit rounding). */
        for (int r = 0; r < OUT; r++) {
            ellm_dequantize_row(type, wq + r * row_bytes, wd, IN);
            for (int tok = 0; tok < T; tok++) {
                double sq = 0, sf = 0;
                for (int i = 0; i < IN; i++) {
                    sq += (double)wd[i] * xd[tok * IN + i];
                    sf += (double)wd[i] * x[tok * IN + i];
                }
                ref_q[tok * OUT + r] = (float)sq;
                ref_f[tok * OUT + r] = (float)sf;
            }
        }
        void *scratch = malloc(ellm_matmul_scratch_bytes(&tw, T) + 1);
        for (int threads = 1; threads <= 3; threads++) {
            ellm_threadpool *pool = NULL;
            CHECK(ellm_threadpool_create(threads, &pool) == EDGELLM_OK);
            ellm_matmul(pool, &tw, x, T, y, scratch);
            ellm_threadpool_free(pool);
            double worst_q = 0, worst_f = 0;
            for (int i = 0; i < T * OUT; i++) {
                worst_q = fmax(worst_q, fabs((double)y[i] - ref_q[i]));
                worst_f = fmax(worst_f, fabs((double)y[i] - ref_f[i]));
            }
            CHECK_MSG(worst_q < 1e-3 && worst_f < 0.2, "%s matmul off the naive result by %g / %g",
                      ellm_type_name(type), worst_q, worst_f);
            if (threads == 1)
                memcpy(y1, y, sizeof y);
            else
                CHECK_MSG(!memcmp(y, y1, sizeof y), "%s: %d threads change the result",
                          ellm_type_name(type), threads);
        }
        free(scratch);
    }
}

/* A set's tile for one type against its single-row kernel k and the scalar kernel ref. */
typedef struct tile_case {
    const char *set;
    ellm_type type;
    const ellm_type_kernels *k, *ref;
    ellm_gemm_fn gemm;
    bool exact; /* the set's kernels sum exact integers in the scalar order: equal to ref too */
} tile_case;

/* The tile of c on n_tok tokens (Q8_K rows of xrb bytes at xq; tiled at xw, wrb bytes a token,
 * where the set's tile reads them so) and n_rows rows of rb bytes at wq, n values long: every
 * (row, token) bit for bit equal to the single-row kernel and, where exact, to the scalar one. */
static void check_tile(const tile_case *c, int64_t n, const uint8_t *wq, uint64_t rb, int n_rows,
                       const uint8_t *xq, uint64_t xrb, uint8_t *xw, size_t wrb, int n_tok,
                       float *y, int y_stride)
{
    if (ellm_gemm_act_layout(c->type) == ELLM_ACT_Q8_K_TILED) {
        for (int t = 0; t < n_tok; t++)
            ellm_q8_K_tiled_place(xq + t * xrb, n, xw, t, n_tok);
        c->gemm(n, wq, rb, n_rows, xw, wrb, n_tok, y, y_stride);
    } else
        c->gemm(n, wq, rb, n_rows, xq, xrb, n_tok, y, y_stride);
    for (int t = 0; t < n_tok; t++)
        for (int r = 0; r < n_rows; r++) {
            float own, scalar;
            c->k->vec_dot(n, &own, wq + r * rb, xq + t * xrb);
            c->ref->vec_dot(n, &scalar, wq + r * rb, xq + t * xrb);
            float got = y[t * y_stride + r];
            CHECK_MSG(!memcmp(&got, &own, 4) && (!c->exact || !memcmp(&got, &scalar, 4)),
                      "%s %s tile %d tokens x %d rows: token %d row %d: %.9g, single row %.9g, "
                      "scalar %.9g",
                      c->set, ellm_type_name(c->type), n_tok, n_rows, t, r, got, own, scalar);
        }
}

/* The tile case of set for type, false where the set has no tile for it. */
static bool tile_case_for(const char *set, ellm_type type, tile_case *c)
{
    CHECK(ellm_quant_use_kernel_set("scalar"));
    c->ref = ellm_kernels_for(type);
    CHECK(ellm_quant_use_kernel_set(set));
    c->gemm = ellm_gemm_for(type);
    c->k = ellm_kernels_for(type);
    c->set = set;
    c->type = type;
    if (!c->gemm || !c->k || !c->ref)
        return false;
    c->exact = !strcmp(c->k->isa, "avx512") || !strcmp(c->k->isa, "avx2") ||
               !strcmp(c->k->isa, "avx2vnni") || !strncmp(c->k->isa, "neon", 4) ||
               !strncmp(c->k->isa, "wasm-", 5);
    return true;
}

/* Tiles (where a kernel set has them): every (row, token) bit for bit equal to the set's own
 * single-row kernel and, where that is exact, to the scalar kernel, for short row groups,
 * batches of 1..9 tokens and past the 32-, 64- and 128-token steps, and rows with outliers. */
static void test_tiles(void)
{
    enum { TN = 3 * QK_K, ROWS = 37, TOK = 133 };
    static float w[ROWS * TN], x[TN];
    static uint8_t wq[ROWS * TN], xq[TOK * TN * 2], xw[TOK * TN * 3];
    static float y[TOK * ROWS];
    uint64_t xrb = 0;
    ellm_row_bytes(ELLM_TYPE_Q8_K, TN, &xrb);
    /* The tokens of each call tiled in 16 bits, for the tiles that read them
     * (ellm_gemm_act_layout). */
    size_t wrb = ellm_act_row_bytes(ELLM_ACT_Q8_K_TILED, ELLM_TYPE_Q8_K, TN);
    CHECK(wrb * TOK <= sizeof xw);
    for (int i = 0; i < ROWS * TN; i++)
        w[i] = grand() * (i % 61 == 0 ? 30.0f : 1.0f);
    for (int t = 0; t < TOK; t++) {
        for (int i = 0; i < TN; i++)
            x[i] = grand() * (float)(1 + t % 5) * (t == 3 ? 1e-3f : 1.0f);
        ellm_quantize_row(ELLM_TYPE_Q8_K, x, xq + t * xrb, TN);
    }
    /* The low-bit K-quants and IQ4_XS (test_quant_kquants_low) take the same Q8_K rows. */
    const ellm_type tile_types[] = {ELLM_TYPE_Q4_K, ELLM_TYPE_Q5_K, ELLM_TYPE_Q6_K,
                                    ELLM_TYPE_Q2_K, ELLM_TYPE_Q3_K, ELLM_TYPE_IQ4_XS};
    const char *sets[8];
    int n_sets = ellm_kernel_sets_available(sets, 8), tiled = 0;
    for (int set = 0; set < n_sets && set < 8; set++) {
        for (size_t ti = 0; ti < sizeof tile_types / sizeof tile_types[0]; ti++) {
            tile_case c;
            if (!tile_case_for(sets[set], tile_types[ti], &c))
                continue;
            tiled++;
            uint64_t rb = 0;
            ellm_row_bytes(c.type, TN, &rb);
            for (int r = 0; r < ROWS; r++)
                ellm_quantize_row(c.type, w + r * TN, wq + r * rb, TN);
            for (int n_tok = 1; n_tok <= TOK; n_tok = n_tok < 9 ? n_tok + 1 : TOK + (n_tok == TOK))
                for (int n_rows = 1; n_rows <= ROWS; n_rows += n_tok < 9 ? 5 : 18) {
                    check_tile(&c, TN, wq, rb, n_rows, xq, xrb, xw, wrb, n_tok, y, ROWS);
                    if (n_tok == TOK)
                        break;
                }
        }
    }
    ellm_quant_use_kernel_set(NULL);
    fprintf(stderr, "K-quant tiles checked for %d (set, type) pairs\n", tiled);
    /* The AVX-512 set has Q4_K and Q6_K tiles of its own and the AVX2 ones of Q2_K, Q3_K and
     * IQ4_XS, the AVX2 set all six: where they run, they must have been checked. */
    bool has_avx512 = false, has_avx2 = false;
    for (int set = 0; set < n_sets && set < 8; set++) {
        has_avx512 |= !strcmp(sets[set], "avx512");
        has_avx2 |= !strcmp(sets[set], "avx2");
    }
    CHECK(tiled >= (has_avx512 ? 5 : 0) + (has_avx2 ? 6 : 0));
#if defined(__wasm__)
    /* The wasm-simd set has tiles of all six. */
    CHECK(tiled >= 6);
#endif
}

/* Q4_K, Q5_K and Q6_K tiles at their integer extremes: every level at its top (15, 31, stored
 * 63, which is 31 after Q6_K's offset) with the largest scales, against tokens of all -128, all
 * 127 and alternating signs, so that any 16-bit partial sum a tile forms is as large as it can
 * be: a tile that adds one product too many in 16 bits (the relaxed tiles' runs) wraps here. */
static void test_tiles_at_extremes(void)
{
    enum { COLS = 2 * QK_K, ROW_COUNT = 6, TOKENS = 5 };
    static uint8_t wq[ROW_COUNT * COLS], xw[TOKENS * COLS * 3];
    static block_q8_K xq[TOKENS][COLS / QK_K];
    static float y[TOKENS * ROW_COUNT];
    size_t wrb = ellm_act_row_bytes(ELLM_ACT_Q8_K_TILED, ELLM_TYPE_Q8_K, COLS);
    CHECK(wrb * TOKENS <= sizeof xw);
    for (int t = 0; t < TOKENS; t++)
        for (int b = 0; b < COLS / QK_K; b++) {
            block_q8_K *blk = &xq[t][b];
            blk->d = 1.0f;
            for (int i = 0; i < QK_K; i++)
                blk->qs[i] = (int8_t)(t == 0 ? -128 : t == 1 ? 127 : (i + t) % 2 ? -128 : 127);
            for (int j = 0; j < QK_K / 16; j++) {
                int sum = 0;
                for (int i = 0; i < 16; i++)
                    sum += blk->qs[16 * j + i];
                blk->bsums[j] = (int16_t)sum;
            }
        }
    const ellm_type types[] = {ELLM_TYPE_Q4_K, ELLM_TYPE_Q5_K, ELLM_TYPE_Q6_K};
    const char *sets[8];
    int n_sets = ellm_kernel_sets_available(sets, 8), checked = 0;
    for (int set = 0; set < n_sets && set < 8; set++)
        for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
            tile_case c;
            if (!tile_case_for(sets[set], types[ti], &c))
                continue;
            uint64_t rb = 0;
            ellm_row_bytes(c.type, COLS, &rb);
            /* All bits set: the top levels, Q4_K/Q5_K scales and mins of 63; then d (and dmin)
             * of 1 and Q6_K's scales at 127 with alternating signs by row. */
            memset(wq, 0xFF, sizeof wq);
            for (int r = 0; r < ROW_COUNT; r++)
                for (int b = 0; b < COLS / QK_K; b++) {
                    uint8_t *blk = wq + r * rb + b * rb / (COLS / QK_K);
                    if (c.type == ELLM_TYPE_Q4_K) {
                        ((block_q4_K *)blk)->d = ellm_f32_to_f16(1.0f);
                        ((block_q4_K *)blk)->dmin = ellm_f32_to_f16(1.0f);
                    } else if (c.type == ELLM_TYPE_Q5_K) {
                        ((block_q5_K *)blk)->d = ellm_f32_to_f16(1.0f);
                        ((block_q5_K *)blk)->dmin = ellm_f32_to_f16(1.0f);
                    } else {
                        block_q6_K *q6 = (block_q6_K *)blk;
                        q6->d = ellm_f32_to_f16(1.0f);
                        memset(q6->scales, r % 2 ? 0x80 : 0x7F, sizeof q6->scales);
                    }
                }
            for (int n_tok = 1; n_tok <= TOKENS; n_tok += 2)
                check_tile(&c, COLS, wq, rb, ROW_COUNT, (const uint8_t *)xq, sizeof xq[0], xw, wrb,
                           n_tok, y, ROW_COUNT);
            checked++;
        }
    ellm_quant_use_kernel_set(NULL);
    fprintf(stderr, "K-quant tiles checked at their extremes for %d (set, type) pairs\n", checked);
#if defined(__wasm__)
    CHECK(checked >= 3);
#endif
}

int main(void)
{
    test_q4_K_layout();
    test_q5_K_layout();
    test_q6_K_layout();
    test_quantization_error();
    test_kernels();
    test_q8_K_fast_quantizer();
    test_matmul();
    test_tiles();
    test_tiles_at_extremes();
    return test_finish("test_quant_kquants");
}
