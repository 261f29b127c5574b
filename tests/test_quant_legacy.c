/* Q4_1, Q5_0, Q5_1 and IQ4_NL (and the Q8_1 activations): block layouts pinned by raw bytes written
 * by hand from the GGUF format definitions, quantization error within each format's bound on
 * random data and edge cases, every AVX2 kernel against the scalar one and both against the
 * reference dot product, the four-row kernels against single rows, the fast Q8_1 quantizer byte
 * for byte against the reference, and matmul against a naive float loop for several thread
 * counts. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant/blocks.h"
#include "quant/quant.h"
#include "test_util.h"

static uint64_t rng = 0x243f6a8885a308d3ull;
static float frand(void) { return test_rand_uniform(&rng); }
static float gauss(void) { return test_rand_gauss(&rng); }

static const ellm_type legacy_types[] = {ELLM_TYPE_Q4_1, ELLM_TYPE_Q5_0, ELLM_TYPE_Q5_1,
                                         ELLM_TYPE_IQ4_NL};
#define N_TYPES 4

/* The IQ4_NL levels as the format defines them, written out independently of the library. */
static const int iq4nl_levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                     1,    13,   25,  38,  53,  69,  89,  113};

static bool has_min(ellm_type t) { return t == ELLM_TYPE_Q4_1 || t == ELLM_TYPE_Q5_1; }

/* ------------------------------------------------------------------ layouts */

static void put_half(uint8_t *p, float v)
{
    uint16_t h = ellm_f32_to_f16(v);
    p[0] = (uint8_t)(h & 0xFF); /* little-endian, as in the file */
    p[1] = (uint8_t)(h >> 8);
}

static void test_layouts(void)
{
    float y[32];
    /* Q4_1, 20 bytes: d, m, 16 bytes of nibbles (value j low nibble of byte 4 + j, value j + 16
     * its high nibble); value = d * q + m. */
    uint8_t q41[20];
    put_half(q41, 0.5f);
    put_half(q41 + 2, -2.0f);
    for (int j = 0; j < 16; j++)
        q41[4 + j] = (uint8_t)(j | (15 - j) << 4);
    ellm_dequantize_row(ELLM_TYPE_Q4_1, q41, y, 32);
    int bad = 0;
    for (int j = 0; j < 16; j++) {
        bad += y[j] != 0.5f * (float)j - 2.0f;
        bad += y[j + 16] != 0.5f * (float)(15 - j) - 2.0f;
    }
    CHECK_MSG(bad == 0, "Q4_1: %d values decode wrongly from a hand-built block", bad);

    /* Q5_0, 22 bytes: d, qh (4 bytes, bit j of the little-endian word is value j's fifth bit),
     * 16 bytes of nibbles; value = d * (q - 16). Fifth bits set for values 0, 9, 16, 23, 31. */
    uint8_t q50[22];
    memset(q50, 0, sizeof q50);
    put_half(q50, 0.25f);
    q50[2] = 0x01; /* bit 0: value 0 */
    q50[3] = 0x02; /* bit 9: value 9 */
    q50[4] = 0x81; /* bits 16 and 23: values 16 and 23 */
    q50[5] = 0x80; /* bit 31: value 31 */
    for (int j = 0; j < 16; j++)
        q50[6 + j] = (uint8_t)(j | (15 - j) << 4);
    ellm_dequantize_row(ELLM_TYPE_Q5_0, q50, y, 32);
    bad = 0;
    for (int v = 0; v < 32; v++) {
        int low = v < 16 ? v : 15 - (v - 16);
        int high = v == 0 || v == 9 || v == 16 || v == 23 || v == 31;
        bad += y[v] != 0.25f * (float)(low + 16 * high - 16);
    }
    CHECK_MSG(bad == 0, "Q5_0: %d values decode wrongly from a hand-built block", bad);
    CHECK(y[0] == 0.0f && y[1] == 0.25f * -15 && y[31] == 0.25f * 0 && y[16] == 0.25f * 15);

    /* Each of the 32 qh bits moves exactly one value: with nibbles 0 and only bit b set, value b
     * decodes to 0 and every other to -16 d. */
    int misplaced = 0;
    for (int bit = 0; bit < 32; bit++) {
        memset(q50 + 2, 0, 20);
        q50[2 + bit / 8] = (uint8_t)(1 << (bit % 8));
        ellm_dequantize_row(ELLM_TYPE_Q5_0, q50, y, 32);
        for (int v = 0; v < 32; v++)
            misplaced += y[v] != (v == bit ? 0.0f : 0.25f * -16);
    }
    CHECK_MSG(misplaced == 0, "Q5_0: %d values take the wrong fifth bit", misplaced);

    /* Q5_1, 24 bytes: d, m, qh, 16 bytes of nibbles; value = d * q + m. */
    uint8_t q51[24];
    memset(q51, 0, sizeof q51);
    put_half(q51, 2.0f);
    put_half(q51 + 2, 1.0f);
    q51[4] = 0x04; /* value 2 */
    q51[7] = 0x40; /* bit 30: value 30 */
    for (int j = 0; j < 16; j++)
        q51[8 + j] = (uint8_t)((j % 4) | (j % 3) << 4);
    ellm_dequantize_row(ELLM_TYPE_Q5_1, q51, y, 32);
    bad = 0;
    for (int v = 0; v < 32; v++) {
        int low = v < 16 ? v % 4 : (v - 16) % 3;
        int high = v == 2 || v == 30;
        bad += y[v] != 2.0f * (float)(low + 16 * high) + 1.0f;
    }
    CHECK_MSG(bad == 0, "Q5_1: %d values decode wrongly from a hand-built block", bad);
    CHECK(y[2] == 2.0f * 18 + 1.0f && y[30] == 2.0f * 18 + 1.0f && y[0] == 1.0f);

    /* IQ4_NL, 18 bytes: d, 16 bytes of level indices (value j low nibble, j + 16 high). */
    uint8_t nl[18];
    put_half(nl, -0.5f);
    for (int j = 0; j < 16; j++)
        nl[2 + j] = (uint8_t)(j | (15 - j) << 4);
    ellm_dequantize_row(ELLM_TYPE_IQ4_NL, nl, y, 32);
    bad = 0;
    for (int j = 0; j < 16; j++) {
        bad += y[j] != -0.5f * (float)iq4nl_levels[j];
        bad += y[j + 16] != -0.5f * (float)iq4nl_levels[15 - j];
    }
    CHECK_MSG(bad == 0, "IQ4_NL: %d values decode wrongly from a hand-built block", bad);

    /* Q8_1, 36 bytes: d, s, 32 int8. */
    uint8_t q81[36];
    put_half(q81, 0.125f);
    put_half(q81 + 2, 99.0f); /* s does not take part in decoding */
    for (int j = 0; j < 32; j++)
        q81[4 + j] = (uint8_t)(int8_t)(j * 8 - 128);
    ellm_dequantize_row(ELLM_TYPE_Q8_1, q81, y, 32);
    bad = 0;
    for (int j = 0; j < 32; j++)
        bad += y[j] != 0.125f * (float)(j * 8 - 128);
    CHECK_MSG(bad == 0, "Q8_1: %d values decode wrongly", bad);

    /* The sizes the type table records, the structs, and what the quantizers return agree. */
    float x[64];
    for (int i = 0; i < 64; i++)
        x[i] = frand();
    static uint8_t buf[256];
    ellm_type all[] = {ELLM_TYPE_Q4_1, ELLM_TYPE_Q5_0, ELLM_TYPE_Q5_1, ELLM_TYPE_IQ4_NL,
                       ELLM_TYPE_Q8_1};
    size_t sizes[] = {sizeof(block_q4_1), sizeof(block_q5_0), sizeof(block_q5_1),
                      sizeof(block_iq4_nl), sizeof(block_q8_1)};
    for (int t = 0; t < 5; t++) {
        const ellm_type_traits *tr = ellm_type_traits_of(all[t]);
        CHECK(tr && tr->block_size == 32 && tr->block_bytes == sizes[t]);
        CHECK(ellm_quantize_row(all[t], x, buf, 64) == 2 * sizes[t]);
    }
}

/* What the quantizers choose on blocks whose right answer is known. */
static void test_quantizer_choices(void)
{
    float x[32], y[32];
    /* Q5_0: the value of largest magnitude maps to level 0 (-16) exactly. */
    for (int j = 0; j < 32; j++)
        x[j] = (float)j / 4.0f; /* 0 .. 7.75 */
    block_q5_0 q5;
    ellm_quantize_row(ELLM_TYPE_Q5_0, x, &q5, 32);
    CHECK(ellm_f16_to_f32(q5.d) == 7.75f / -16.0f);
    CHECK((q5.qs[15] >> 4) == 0 && !(q5.qh[3] & 0x80)); /* x[31] -> q = 0 */
    CHECK((q5.qs[0] & 15) == 0 && (q5.qh[0] & 1));      /* x[0] = 0 -> q = 16 */
    /* Q4_1 / Q5_1: the minimum is level 0 and the maximum the top level. */
    for (int j = 0; j < 32; j++)
        x[j] = -1.0f + (float)j / 31.0f * 3.0f; /* -1 .. 2 */
    block_q4_1 q41;
    ellm_quantize_row(ELLM_TYPE_Q4_1, x, &q41, 32);
    CHECK(ellm_f16_to_f32(q41.m) == -1.0f &&
          ellm_f16_to_f32(q41.d) == ellm_f16_to_f32(ellm_f32_to_f16(0.2f)));
    CHECK((q41.qs[0] & 15) == 0 && (q41.qs[15] >> 4) == 15);
    block_q5_1 q51;
    ellm_quantize_row(ELLM_TYPE_Q5_1, x, &q51, 32);
    ellm_dequantize_row(ELLM_TYPE_Q5_1, &q51, y, 32);
    /* 32 evenly spaced values on 32 levels: each is reproduced up to the half rounding of d. */
    for (int j = 0; j < 32; j++)
        CHECK_MSG(fabsf(y[j] - x[j]) < 3.0f * 1e-3f, "Q5_1 even ramp value %d: %g vs %g", j, y[j],
                  x[j]);
    /* IQ4_NL: values that are exactly the levels times a scale come back exactly. */
    for (int j = 0; j < 32; j++)
        x[j] = 0.5f * (float)iq4nl_levels[(j * 7) % 16];
    block_iq4_nl nl;
    ellm_quantize_row(ELLM_TYPE_IQ4_NL, x, &nl, 32);
    ellm_dequantize_row(ELLM_TYPE_IQ4_NL, &nl, y, 32);
    int bad = 0;
    for (int j = 0; j < 32; j++)
        bad += y[j] != x[j];
    CHECK_MSG(bad == 0, "IQ4_NL: %d values of an exactly representable block are not reproduced",
              bad);
    /* Q8_1: the quants are Q8_0's, and s is the stored scale times their sum. */
    for (int j = 0; j < 32; j++)
        x[j] = frand() * 3.0f;
    block_q8_1 a;
    block_q8_0 a0;
    ellm_quantize_row(ELLM_TYPE_Q8_1, x, &a, 32);
    ellm_quantize_row(ELLM_TYPE_Q8_0, x, &a0, 32);
    int sum = 0;
    for (int j = 0; j < 32; j++)
        sum += a.qs[j];
    CHECK(a.d == a0.d && memcmp(a.qs, a0.qs, 32) == 0);
    CHECK(a.s == ellm_f32_to_f16(ellm_f16_to_f32(a.d) * (float)sum));
}

/* ------------------------------------------------------------------ quantization error */

/* The largest error a value of a block may have: half a level step for the uniform formats
 * (a full step at the clamped end of Q5_0, whose extreme maps to -16 so +16 clamps to +15), the
 * half-precision rounding of the scale and minimum, and for IQ4_NL half the widest gap between
 * levels (24 of 127) plus slack for a least-squares scale that clips the extreme a little. */
static double value_bound(ellm_type t, const float *x)
{
    float lo = x[0], hi = x[0], amax = 0;
    for (int j = 0; j < 32; j++) {
        lo = fminf(lo, x[j]);
        hi = fmaxf(hi, x[j]);
        amax = fmaxf(amax, fabsf(x[j]));
    }
    double half_rounding = (fabs(lo) + (double)(hi - lo)) * 0x1.0p-10 + 1e-7 * amax;
    switch (t) {
    case ELLM_TYPE_Q4_1: return (hi - lo) / 15.0 * 0.5 * 1.001 + half_rounding;
    case ELLM_TYPE_Q5_1: return (hi - lo) / 31.0 * 0.5 * 1.001 + half_rounding;
    case ELLM_TYPE_Q5_0: return amax / 16.0 * 1.001 + amax * 0x1.0p-10;
    default: return amax * 0.15;
    }
}

typedef struct err_stats {
    double max_abs, sum_abs, sq_err, sq_ref, worst_excess;
    long count;
} err_stats;

static void measure(ellm_type t, const float *x, int n, err_stats *st)
{
    static uint8_t buf[1 << 17];
    static float y[1 << 16];
    CHECK(ellm_quantize_row(t, x, buf, n) ==
          (size_t)(n / 32) * ellm_type_traits_of(t)->block_bytes);
    ellm_dequantize_row(t, buf, y, n);
    for (int b = 0; b < n / 32; b++) {
        double bound = value_bound(t, x + 32 * b);
        for (int j = 0; j < 32; j++) {
            int i = 32 * b + j;
            double e = fabs((double)x[i] - y[i]);
            st->max_abs = fmax(st->max_abs, e);
            st->sum_abs += e;
            st->sq_err += e * e;
            st->sq_ref += (double)x[i] * x[i];
            st->count++;
            if (e > bound)
                st->worst_excess = fmax(st->worst_excess, e / bound);
        }
    }
}

static void test_quantization_error(void)
{
    enum { N = 1 << 16 };
    static float x[N];
    /* Relative RMS error bounds for Gaussian data (about 20% above what the formats reach:
     * 4-bit uniform levels over a block's range give about 0.1, 5-bit about half that). */
    const double rms_bound[N_TYPES] = {0.12, 0.07, 0.06, 0.11};
    for (int t = 0; t < N_TYPES; t++) {
        ellm_type ty = legacy_types[t];
        for (int dist = 0; dist < 3; dist++) {
            for (int i = 0; i < N; i++)
                x[i] = dist == 0   ? gauss()
                       : dist == 1 ? frand()
                                   : gauss() * 1e-3f * (float)(1 + i % 7);
            err_stats st = {0};
            measure(ty, x, N, &st);
            double rel = sqrt(st.sq_err / st.sq_ref);
            fprintf(stderr, "%-6s %s: max |error| %.4f, mean |error| %.5f, relative RMS %.4f\n",
                    ellm_type_name(ty),
                    dist == 0   ? "N(0,1)   "
                    : dist == 1 ? "U(-1,1)  "
                                : "small    ",
                    st.max_abs, st.sum_abs / (double)st.count, rel);
            CHECK_MSG(st.worst_excess == 0, "%s dist %d: an error exceeds its bound %.3f times",
                      ellm_type_name(ty), dist, st.worst_excess);
            CHECK_MSG(rel < rms_bound[t], "%s dist %d: relative RMS error %.4f >= %.2f",
                      ellm_type_name(ty), dist, rel, rms_bound[t]);
        }
    }
}

/* Zero, constant, negative-only and positive-only blocks, and one huge outlier. */
static void test_edge_cases(void)
{
    enum { NB = 6 };
    static float x[NB * 32], y[NB * 32];
    static uint8_t buf[NB * 32];
    for (int t = 0; t < N_TYPES; t++) {
        ellm_type ty = legacy_types[t];
        const char *name = ellm_type_name(ty);
        for (int j = 0; j < 32; j++) {
            x[j] = 0;                                  /* all zero */
            x[32 + j] = 0.7f;                          /* all equal */
            x[64 + j] = -3.0f;                         /* all equal, negative */
            x[96 + j] = -0.5f - 0.5f * fabsf(frand()); /* negative only */
            x[128 + j] = 2.0f + fabsf(frand());        /* positive only, away from zero */
            x[160 + j] = frand() * 0.1f;               /* small values and one huge outlier */
        }
        x[160 + 11] = 1000.0f;
        ellm_quantize_row(ty, x, buf, NB * 32);
        ellm_dequantize_row(ty, buf, y, NB * 32);
        int bad = 0;
        for (int j = 0; j < 32; j++) {
            bad += y[j] != 0;
            bad += fabsf(y[32 + j] - 0.7f) > 0.7f * 2e-3f;
            bad += fabsf(y[64 + j] + 3.0f) > 3.0f * 2e-3f;
        }
        CHECK_MSG(bad == 0, "%s: zero or constant blocks are not reproduced (%d values)", name,
                  bad);
        for (int b = 3; b < NB; b++) {
            double bound = value_bound(ty, x + 32 * b);
            for (int j = 0; j < 32; j++) {
                int i = 32 * b + j;
                CHECK_MSG(fabs((double)x[i] - y[i]) <= bound,
                          "%s block %d value %d: %g decodes to %g (bound %g)", name, b, j, x[i],
                          y[i], bound);
            }
        }
        for (int j = 0; j < 32; j++)
            CHECK_MSG(y[96 + j] < 0, "%s: a negative-only value decodes to %g", name, y[96 + j]);
        CHECK_MSG(fabsf(y[160 + 11] - 1000.0f) < 1000.0f * 0.01f, "%s: outlier 1000 decodes to %g",
                  name, y[160 + 11]);
    }
}

/* ------------------------------------------------------------------ kernels */

static const ellm_type_kernels *kernels(ellm_type t, bool scalar)
{
    ellm_quant_force_scalar(scalar);
    const ellm_type_kernels *k = ellm_kernels_for(t);
    ellm_quant_force_scalar(false);
    return k;
}

/* How far the kernels may be from the reference dot of the weights with the dequantized
 * activations: float rounding (1e-5 of the magnitude), and for the "_1" formats the
 * half-precision rounding of each activation block's s in the m * s term. */
static double kernel_tolerance(ellm_type t, const void *wq, const void *xq, const float *wd,
                               const float *xd, int n)
{
    double mag = 0, min_terms = 0;
    for (int i = 0; i < n; i++)
        mag += fabs((double)wd[i] * xd[i]);
    for (int b = 0; has_min(t) && b < n / 32; b++) {
        uint16_t m = t == ELLM_TYPE_Q4_1 ? ((const block_q4_1 *)wq)[b].m
                                         : ((const block_q5_1 *)wq)[b].m;
        double s = fabs(ellm_f16_to_f32(((const block_q8_1 *)xq)[b].s));
        min_terms += fabs(ellm_f16_to_f32(m)) * s;
    }
    return 1e-5 * (mag + min_terms) + min_terms * 0x1.0p-11 * 1.01 + 1e-30;
}

static void test_kernels(void)
{
    enum { MAXN = 4096 };
    static float w[MAXN], x[MAXN], wd[MAXN], xd[MAXN];
    static uint8_t wq[MAXN], xq[MAXN / 32 * sizeof(block_q8_1)];
    int sizes[] = {32, 64, 96, 160, 256, 1024, 4096};
    if (strcmp(ellm_kernel_set_name(), "scalar") == 0)
        fprintf(stderr, "no SIMD kernel set on this CPU: only the scalar kernels are checked\n");
    for (int t = 0; t < N_TYPES; t++) {
        ellm_type ty = legacy_types[t];
        CHECK(ellm_type_supported(ty));
        const ellm_type_kernels *ks = kernels(ty, true), *kf = kernels(ty, false);
        CHECK(ks && kf);
        if (!ks || !kf)
            continue;
        ellm_type act = has_min(ty) ? ELLM_TYPE_Q8_1 : ELLM_TYPE_Q8_0;
        CHECK(ks->vec_dot_type == act && kf->vec_dot_type == act);
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            int n = sizes[s];
            for (int edge = 0; edge < 5; edge++) {
                for (int i = 0; i < n; i++) {
                    /* 0: Gaussian; 1: zero weights; 2: outliers with tiny activations;
                     * 3: weights all positive and far from zero (large minimums);
                     * 4: constant weights, activations with halves to round */
                    w[i] = edge == 1   ? 0.0f
                           : edge == 2 ? gauss() * (i % 37 == 0 ? 100.0f : 1.0f)
                           : edge == 3 ? 5.0f + fabsf(gauss())
                           : edge == 4 ? -1.25f
                                       : gauss();
                    x[i] = edge == 2   ? frand() * 1e-3f
                           : edge == 4 ? (float)(i % 64 - 32) + 0.5f
                                       : frand();
                }
                ellm_quantize_row(ty, w, wq, n);
                ellm_quantize_row(act, x, xq, n);
                ellm_dequantize_row(act, xq, xd, n);
                ellm_dequantize_row(ty, wq, wd, n);
                float ref = ellm_dot_reference(ty, wq, xd, n);
                double tol = kernel_tolerance(ty, wq, xq, wd, xd, n);
                float sc, fast;
                ks->vec_dot(n, &sc, wq, xq);
                kf->vec_dot(n, &fast, wq, xq);
                CHECK_MSG(fabs((double)sc - ref) <= tol,
                          "%s n=%d edge=%d: scalar %.9g vs reference %.9g (tol %g)",
                          ellm_type_name(ty), n, edge, sc, ref, tol);
                CHECK_MSG(fabs((double)fast - ref) <= tol,
                          "%s n=%d edge=%d: %s %.9g vs reference %.9g (tol %g)", ellm_type_name(ty),
                          n, edge, kf->isa, fast, ref, tol);
                /* The kernels sum the same exact block integers, only in another float order. */
                double mag = 0;
                for (int i = 0; i < n; i++)
                    mag += fabs((double)wd[i] * xd[i]);
                CHECK_MSG(fabs((double)fast - sc) <= 1e-5 * (mag + tol) + 1e-30,
                          "%s n=%d edge=%d: %s %.9g vs scalar %.9g", ellm_type_name(ty), n, edge,
                          kf->isa, fast, sc);
            }
        }
        /* The AVX2 set has its own kernels for these types (the ARM sets use the portable ones
         * for now, which the checks above then compare with themselves). */
        if (strcmp(ellm_kernel_set_name(), "avx2") == 0)
            CHECK_MSG(strcmp(kf->isa, "avx2") == 0, "%s has no AVX2 kernel", ellm_type_name(ty));

        /* Four-row kernels give exactly what four single-row calls give, at block counts with
         * and without an odd last block. */
        if (!kf->vec_dot_x4)
            continue;
        int ns[] = {32, 96, 4096 - 64};
        for (int s = 0; s < 3; s++) {
            int n = ns[s];
            for (int i = 0; i < n; i++)
                w[i] = gauss() + (t % 2 ? 0.0f : 0.5f);
            ellm_quantize_row(ty, w, wq, n);
            static uint8_t xs4[4][MAXN / 32 * sizeof(block_q8_1)];
            const void *ptrs[4];
            float single[4], multi[4];
            for (int r = 0; r < 4; r++) {
                for (int i = 0; i < n; i++)
                    x[i] = frand() * (float)(r + 1);
                ellm_quantize_row(act, x, xs4[r], n);
                ptrs[r] = xs4[r];
                kf->vec_dot(n, &single[r], wq, xs4[r]);
            }
            kf->vec_dot_x4(n, multi, wq, ptrs);
            CHECK_MSG(!memcmp(single, multi, sizeof single),
                      "%s n=%d: x4 kernel differs from single rows", ellm_type_name(ty), n);
        }
    }
}

/* The fast Q8_1 activation quantizer writes exactly the reference bytes, including values that
 * land on halves (rounded away from zero) and zero blocks. */
static void test_q8_1_activations(void)
{
    enum { N = 4096 };
    static float x[N];
    static block_q8_1 a[N / 32], b[N / 32];
    for (int i = 0; i < N; i++)
        x[i] = frand() * (i % 97 == 0 ? 30.0f : 2.0f);
    for (int j = 0; j < 32; j++) {
        x[j] = 0;                                            /* block 0: all zero */
        x[32 + j] = (float)(j - 16) + 0.5f;                  /* block 1: amax 15.5 */
        x[64 + j] = j == 0 ? 127.0f : (float)(j % 9) - 4.5f; /* block 2: scale 1, exact halves */
        x[96 + j] = -1e-30f * (float)(j + 1);                /* block 3: tiny */
    }
    ellm_quantize_row(ELLM_TYPE_Q8_1, x, a, N);
    ellm_quantize_activations(ELLM_TYPE_Q8_1, x, b, N);
    CHECK_MSG(memcmp(a, b, sizeof a) == 0, "the %s Q8_1 quantizer differs from the reference",
              ellm_kernel_set_name());
    /* Halves at scale 1 round away from zero: -4.5 -> -5, 3.5 -> 4. */
    CHECK(ellm_f16_to_f32(a[2].d) == 1.0f && a[2].qs[1] == -4 && a[2].qs[9] == -5 &&
          a[2].qs[8] == 4);
    for (int blk = 0; blk < N / 32; blk++) {
        int sum = 0;
        for (int j = 0; j < 32; j++)
            sum += a[blk].qs[j];
        CHECK(a[blk].s == ellm_f32_to_f16(ellm_f16_to_f32(a[blk].d) * (float)sum));
    }
}

/* ------------------------------------------------------------------ matmul */

static void test_matmul(void)
{
    enum { IN = 320, OUT = 37, T = 5 };
    static float w[OUT * IN], x[T * IN], ref[T * OUT], tol[T * OUT], y[T * OUT], y1[T * OUT];
    static float wd[OUT * IN];
    static uint8_t wq[OUT * IN * 2];
    for (int i = 0; i < OUT * IN; i++)
        w[i] = gauss() * 0.5f + (i / IN % 3 == 0 ? 1.0f : 0.0f); /* some rows with an offset */
    for (int i = 0; i < T * IN; i++)
        x[i] = frand();
    for (int t = 0; t < N_TYPES; t++) {
        ellm_type ty = legacy_types[t];
        uint64_t row_bytes = 0;
        CHECK(ellm_row_bytes(ty, IN, &row_bytes));
        for (int r = 0; r < OUT; r++) {
            ellm_quantize_row(ty, w + r * IN, wq + r * row_bytes, IN);
            ellm_dequantize_row(ty, wq + r * row_bytes, wd + r * IN, IN);
        }
        /* Naive float reference on the dequantized weights; the tolerance is what quantizing each
         * activation block to 8 bits may change (half a step times the weights' magnitudes), the
         * half-precision s of the "_1" formats, and float rounding. */
        for (int r = 0; r < OUT; r++) {
            for (int tok = 0; tok < T; tok++) {
                double s = 0, bound = 0;
                for (int b = 0; b < IN / 32; b++) {
                    float amax = 0;
                    double wsum = 0, xsum = 0;
                    for (int j = 0; j < 32; j++) {
                        int i = 32 * b + j;
                        s += (double)wd[r * IN + i] * x[tok * IN + i];
                        amax = fmaxf(amax, fabsf(x[tok * IN + i]));
                        wsum += fabs(wd[r * IN + i]);
                        xsum += fabs(x[tok * IN + i]);
                    }
                    bound += wsum * amax / 127.0 * 0.5 * 1.01 + wsum * amax * 1e-3;
                    bound += xsum * 2.0 * 0x1.0p-10; /* |m| <= |w| of about 2 times |s| rounding */
                }
                ref[tok * OUT + r] = (float)s;
                tol[tok * OUT + r] = (float)(bound + 1e-4);
            }
        }
        ellm_tensor tw = {.type = ty,
                          .ne = {IN, OUT, 1, 1},
                          .n_dims = 2,
                          .row_bytes = row_bytes,
                          .n_bytes = row_bytes * OUT,
                          .data = wq};
        void *scratch = malloc(ellm_matmul_scratch_bytes(&tw, T) + 1);
        for (int pass = 0; pass < 2; pass++) {
            ellm_quant_force_scalar(pass == 1);
            for (int threads = 1; threads <= 3; threads++) {
                ellm_threadpool *pool = NULL;
                CHECK(ellm_threadpool_create(threads, &pool) == EDGELLM_OK);
                ellm_matmul(pool, &tw, x, T, y, scratch);
                ellm_threadpool_free(pool);
                int off = 0;
                double worst = 0;
                for (int i = 0; i < T * OUT; i++) {
                    double e = fabs((double)y[i] - ref[i]);
                    off += e > tol[i];
                    worst = fmax(worst, e);
                }
                CHECK_MSG(off == 0, "%s %s matmul: %d outputs off the naive result (worst %g)",
                          ellm_type_name(ty), ellm_kernel_set_name(), off, worst);
                if (threads == 1)
                    memcpy(y1, y, sizeof y);
                else
                    CHECK_MSG(!memcmp(y, y1, sizeof y), "%s: %d threads change the result",
                              ellm_type_name(ty), threads);
            }
        }
        ellm_quant_force_scalar(false);
        free(scratch);
    }
}

int main(void)
{
    test_layouts();
    test_quantizer_choices();
    test_quantization_error();
    test_edge_cases();
    test_kernels();
    test_q8_1_activations();
    test_matmul();
    return test_finish("test_quant_legacy");
}
