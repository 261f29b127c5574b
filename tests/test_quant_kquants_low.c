/* Q2_K, Q3_K and IQ4_XS: block layouts pinned by hand-built blocks written from the GGUF format
 * definitions, quantization error within bounds on random data and edge cases, the AVX2 kernels
 * bit-identical to the scalar ones and both equal to the reference dot product, and matmul against
 * a naive float loop for several thread counts. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant/blocks.h"
#include "quant/quant.h"
#include "test_util.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float frand(void) { return test_rand_uniform(&rng); }
static float gauss(void) { return test_rand_gauss(&rng); }

static const ellm_type low_types[] = {ELLM_TYPE_Q2_K, ELLM_TYPE_Q3_K, ELLM_TYPE_IQ4_XS};
#define N_LOW_TYPES 3
/* An error never exceeds this fraction of its super-block's largest magnitude: half the widest
 * level spacing (range / 3, / 7 and about / 15 for 4, 8 and 16 levels) plus the extremes that a
 * least-squares scale may clip by up to about half a spacing more. */
static const double value_bound[N_LOW_TYPES] = {0.5, 0.3, 0.15};

/* ------------------------------------------------------------------ layouts */

static void test_q2_K_layout(void)
{
    block_q2_K b;
    memset(&b, 0, sizeof b);
    b.d = ellm_f32_to_f16(0.5f);
    b.dmin = ellm_f32_to_f16(0.25f);
    b.scales[0] = 0x32;  /* sub-block 0 (values 0..15): scale 2, min 3 */
    b.scales[2] = 0x0F;  /* sub-block 2 (values 32..47): scale 15, min 0 */
    b.scales[15] = 0xF1; /* sub-block 15 (values 240..255): scale 1, min 15 */
    b.qs[0] = 0x07;      /* value 0: q=3; value 32 (bits 2-3): q=1 */
    b.qs[63] = 0xC0;     /* value 255 = 128 + 96 + 31: bits 6-7 of qs[32 + 31], q=3 */
    float y[QK_K];
    ellm_dequantize_row(ELLM_TYPE_Q2_K, &b, y, QK_K);
    CHECK(y[0] == 0.5f * 2 * 3 - 0.25f * 3);
    CHECK(y[1] == -0.25f * 3); /* q=0: only the min */
    CHECK(y[32] == 0.5f * 15 * 1);
    CHECK(y[33] == 0.0f);
    CHECK(y[255] == 0.5f * 1 * 3 - 0.25f * 15);
    CHECK(y[254] == -0.25f * 15);
    /* Each 2-bit field moves exactly one value: set field (h, j, l) to 1 with every scale 1. */
    for (int i = 0; i < 16; i++)
        b.scales[i] = 1;
    b.dmin = 0;
    int misplaced = 0;
    for (int byte = 0; byte < 64; byte++) {
        for (int j = 0; j < 4; j++) {
            memset(b.qs, 0, sizeof b.qs);
            b.qs[byte] = (uint8_t)(1 << (2 * j));
            ellm_dequantize_row(ELLM_TYPE_Q2_K, &b, y, QK_K);
            int want = 128 * (byte / 32) + 32 * j + byte % 32;
            for (int v = 0; v < QK_K; v++)
                misplaced += (y[v] != 0) != (v == want);
        }
    }
    CHECK_MSG(misplaced == 0, "Q2_K: %d values decoded from the wrong 2-bit field", misplaced);
}

static void test_q3_K_layout(void)
{
    block_q3_K b;
    memset(&b, 0, sizeof b);
    b.d = ellm_f32_to_f16(0.5f);
    /* Scale codes: low nibbles of scales[0..7] are sub-blocks 0..7, high nibbles 8..15; the top
     * two bits of sub-block s sit in scales[8 + s % 4] at bit 2 * (s / 4). */
    b.scales[0] = 0x21;      /* sub-block 0 low = 1, sub-block 8 low = 2 */
    b.scales[8] = 0xE4;      /* 0b11'10'01'00: top bits of sub-blocks 0, 4, 8, 12 = 0, 1, 2, 3 */
    b.scales[4] = 0x0F;      /* sub-block 4 low = 15 -> code 15 | 1 << 4 = 31 */
    b.scales[4 + 0] |= 0xA0; /* sub-block 12 low = 10 -> code 10 | 3 << 4 = 58 */
    /* Value 0 (sub-block 0, code 1 -> scale -31): high bit clear, low 0 -> q = -4. */
    /* Value 128 (h=1, j=0, l=0 -> sub-block 8, code 34 -> scale 2): high bit set (bit 4 of
     * hmask[0]), low bits 3 -> q = 3. */
    b.qs[32] = 0x03;
    b.hmask[0] = 0x10;
    /* Value 64 (h=0, j=2, l=0 -> sub-block 4, code 31 -> scale -1): bit 2 of hmask[0], low 2. */
    b.hmask[0] |= 0x04;
    b.qs[0] = 0x20;
    /* Value 192 (h=1, j=2, l=0 -> sub-block 12, code 58 -> scale 26): high clear, low 1 -> -3. */
    b.qs[32] |= 0x10;
    float y[QK_K];
    ellm_dequantize_row(ELLM_TYPE_Q3_K, &b, y, QK_K);
    CHECK_MSG(y[0] == 0.5f * -31 * -4, "y[0] = %g", y[0]);
    CHECK_MSG(y[128] == 0.5f * 2 * 3, "y[128] = %g", y[128]);
    CHECK_MSG(y[64] == 0.5f * -1 * 2, "y[64] = %g", y[64]);
    CHECK_MSG(y[192] == 0.5f * 26 * -3, "y[192] = %g", y[192]);
    CHECK_MSG(y[1] == 0.5f * -31 * -4, "y[1] = %g (high bit clear, low 0 is -4)", y[1]);
    /* Each hmask bit lifts exactly one value by 4 (scale code 33 -> 1 everywhere). */
    memset(b.scales, 0, sizeof b.scales);
    for (int s = 0; s < 8; s++)
        b.scales[s] = 0x11;                                         /* low nibbles 1 */
    b.scales[8] = b.scales[9] = b.scales[10] = b.scales[11] = 0xAA; /* top bits 2 -> code 33 */
    b.d = ellm_f32_to_f16(1.0f);
    memset(b.qs, 0, sizeof b.qs);
    int misplaced = 0;
    for (int l = 0; l < 32; l++) {
        for (int bit = 0; bit < 8; bit++) {
            memset(b.hmask, 0, sizeof b.hmask);
            b.hmask[l] = (uint8_t)(1 << bit);
            ellm_dequantize_row(ELLM_TYPE_Q3_K, &b, y, QK_K);
            int want = 128 * (bit / 4) + 32 * (bit % 4) + l;
            for (int v = 0; v < QK_K; v++)
                misplaced += y[v] != (v == want ? 0.0f : -4.0f);
        }
    }
    CHECK_MSG(misplaced == 0, "Q3_K: %d values took the wrong hmask bit", misplaced);
}

static void test_iq4_xs_layout(void)
{
    static const int table[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                  1,    13,   25,  38,  53,  69,  89,  113};
    block_iq4_xs b;
    memset(&b, 0, sizeof b);
    b.d = ellm_f32_to_f16(0.25f);
    b.scales_l[0] = 0x5A; /* sub-block 0 low = 10, sub-block 1 low = 5 */
    b.scales_l[3] = 0xF0; /* sub-block 7 low = 15, sub-block 6 low = 0 */
    b.scales_h = 0x8006; /* bits 0-1: 2 (sub-block 0), bits 2-3: 1 (sub 1), bits 14-15: 2 (sub 7) */
    b.qs[0] = 0xF0;      /* value 0 -> index 0, value 16 -> index 15 */
    b.qs[16 + 3] = 0x78; /* value 35 -> index 8, value 51 -> index 7 */
    b.qs[127] = 0x9C;    /* value 239 -> index 12, value 255 -> index 9 */
    float y[QK_K];
    ellm_dequantize_row(ELLM_TYPE_IQ4_XS, &b, y, QK_K);
    /* sub-block 0: code 10 | 2 << 4 = 42 -> 10; sub 1: 5 | 1 << 4 = 21 -> -11; sub 7: 47 -> 15 */
    CHECK_MSG(y[0] == 0.25f * 10 * table[0], "y[0] = %g", y[0]);
    CHECK(y[16] == 0.25f * 10 * table[15]);
    CHECK(y[1] == 0.25f * 10 * table[0]); /* qs[1] = 0 -> index 0 */
    CHECK(y[35] == 0.25f * -11 * table[8]);
    CHECK(y[51] == 0.25f * -11 * table[7]);
    CHECK(y[239] == 0.25f * 15 * table[12]);
    CHECK(y[255] == 0.25f * 15 * table[9]);
    /* sub-block 6: code 0 | 0 << 4 = 0 -> scale -32 */
    CHECK(y[192] == 0.25f * -32 * table[0]);
}

/* ------------------------------------------------------------------ quantization error */

typedef struct err_stats {
    double sq_err, sq_ref, worst_ratio;
} err_stats;

/* Quantizes n values; accumulates the squared error and the worst error relative to the value's
 * super-block magnitude. */
static void measure(ellm_type t, const float *x, int n, err_stats *st)
{
    static uint8_t buf[16 * QK_K * 2];
    static float y[16 * QK_K];
    CHECK(ellm_quantize_row(t, x, buf, n) ==
          (size_t)(n / QK_K) * ellm_type_traits_of(t)->block_bytes);
    ellm_dequantize_row(t, buf, y, n);
    for (int b = 0; b < n / QK_K; b++) {
        float amax = 0;
        for (int j = 0; j < QK_K; j++)
            amax = fmaxf(amax, fabsf(x[b * QK_K + j]));
        for (int j = 0; j < QK_K; j++) {
            double e = fabs((double)x[b * QK_K + j] - y[b * QK_K + j]);
            st->sq_err += e * e;
            st->sq_ref += (double)x[b * QK_K + j] * x[b * QK_K + j];
            if (amax > 0)
                st->worst_ratio = fmax(st->worst_ratio, e / amax);
            else
                CHECK_MSG(y[b * QK_K + j] == 0, "%s: an all-zero block decodes to %g",
                          ellm_type_name(t), y[b * QK_K + j]);
        }
    }
}

static void test_quantization_error(void)
{
    enum { N = 16 * QK_K };
    static float x[N];
    /* Relative RMS bounds for Gaussian data, from the level counts: 4 levels (Q2_K) give about
     * 0.3, 8 levels about 0.17, 16 non-uniform levels about 0.09; the bounds leave ~20% margin.
     * Per-value bounds: an error never exceeds this fraction of the super-block's magnitude. */
    const double rms_bound[N_LOW_TYPES] = {0.36, 0.20, 0.11};
    for (int t = 0; t < N_LOW_TYPES; t++) {
        for (int dist = 0; dist < 3; dist++) {
            err_stats st = {0};
            for (int i = 0; i < N; i++)
                x[i] = dist == 0   ? gauss()
                       : dist == 1 ? frand()
                                   : gauss() * 0.01f * (1 + (i / 256));
            measure(low_types[t], x, N, &st);
            double rel = sqrt(st.sq_err / st.sq_ref);
            fprintf(stderr,
                    "%-6s dist %d: relative RMS error %.4f, worst value error %.3f of block max\n",
                    ellm_type_name(low_types[t]), dist, rel, st.worst_ratio);
            CHECK_MSG(rel < rms_bound[t], "%s dist %d: relative RMS error %.4f >= %.2f",
                      ellm_type_name(low_types[t]), dist, rel, rms_bound[t]);
            CHECK_MSG(st.worst_ratio < value_bound[t],
                      "%s dist %d: a value is off by %.3f of its block max",
                      ellm_type_name(low_types[t]), dist, st.worst_ratio);
        }
    }
}

/* Zeros, constants, negative-only blocks and outliers. */
static void test_edge_cases(void)
{
    static float x[4 * QK_K], y[4 * QK_K];
    static uint8_t buf[4 * QK_K];
    for (int t = 0; t < N_LOW_TYPES; t++) {
        ellm_type ty = low_types[t];
        const char *name = ellm_type_name(ty);
        /* block 0 all zero, block 1 constant 0.7, block 2 constant -3, block 3 all negative */
        for (int i = 0; i < QK_K; i++) {
            x[i] = 0;
            x[QK_K + i] = 0.7f;
            x[2 * QK_K + i] = -3.0f;
            x[3 * QK_K + i] = -0.5f - 0.5f * fabsf(frand());
        }
        ellm_quantize_row(ty, x, buf, 4 * QK_K);
        ellm_dequantize_row(ty, buf, y, 4 * QK_K);
        int bad = 0;
        for (int i = 0; i < QK_K; i++) {
            bad += y[i] != 0;
            /* Constants land on one level, off only by the half-precision rounding of scales. */
            bad += fabsf(y[QK_K + i] - 0.7f) > 0.7f * 2e-3f;
            bad += fabsf(y[2 * QK_K + i] + 3.0f) > 3.0f * 2e-3f;
        }
        CHECK_MSG(bad == 0, "%s: zero or constant blocks are not reproduced (%d values)", name,
                  bad);
        double se = 0, sr = 0;
        for (int i = 3 * QK_K; i < 4 * QK_K; i++) {
            CHECK_MSG(y[i] < 0, "%s: a negative-only block decodes value %d to %g", name, i, y[i]);
            se += (x[i] - y[i]) * (x[i] - y[i]);
            sr += (x[i] + 0.75) * (x[i] + 0.75); /* spread around the mean */
        }
        /* Negative-only: the offset (Q2_K) or a negative scale keeps the error below the spread. */
        CHECK_MSG(se < sr * 0.5, "%s: negative-only block error %.4g vs spread %.4g", name, se, sr);

        /* One outlier per block: it keeps close to its value and the rest stay bounded. */
        for (int i = 0; i < 4 * QK_K; i++)
            x[i] = frand() * 0.1f;
        x[5] = 40.0f;
        x[QK_K + 200] = -55.0f;
        x[2 * QK_K + 17] = 1e-3f; /* a tiny block with no outlier */
        for (int i = 2 * QK_K; i < 3 * QK_K; i++)
            x[i] *= 1e-3f;
        ellm_quantize_row(ty, x, buf, 4 * QK_K);
        ellm_dequantize_row(ty, buf, y, 4 * QK_K);
        CHECK_MSG(fabsf(y[5] - 40.0f) < 40.0f * 0.05f, "%s: outlier 40 decodes to %g", name, y[5]);
        CHECK_MSG(fabsf(y[QK_K + 200] + 55.0f) < 55.0f * 0.05f, "%s: outlier -55 decodes to %g",
                  name, y[QK_K + 200]);
        double worst_small = 0;
        for (int i = 2 * QK_K; i < 3 * QK_K; i++)
            worst_small = fmax(worst_small, fabs(x[i] - y[i]));
        CHECK_MSG(worst_small < 1e-4 * value_bound[t], "%s: tiny block error %g", name,
                  worst_small);
        /* Other values in the outlier blocks: off by at most the coarse step of those blocks. */
        for (int i = 0; i < 2 * QK_K; i++) {
            if (i == 5 || i == QK_K + 200)
                continue;
            if (fabsf(x[i] - y[i]) > 55.0f * value_bound[t]) {
                CHECK_MSG(0, "%s: value %d next to an outlier: %g vs %g", name, i, x[i], y[i]);
                break;
            }
        }
    }
}

/* ------------------------------------------------------------------ kernels */

static float dot_with(ellm_type t, bool scalar, int n, const void *wq, const void *xq)
{
    ellm_quant_force_scalar(scalar);
    const ellm_type_kernels *k = ellm_kernels_for(t);
    float out = NAN;
    CHECK(k != NULL && k->vec_dot_type == ELLM_TYPE_Q8_K);
    if (k)
        k->vec_dot(n, &out, wq, xq);
    ellm_quant_force_scalar(false);
    return out;
}

/* Every x86 set on this CPU, not only the default one, equals the scalar kernel bit for bit (the
 * AVX2 set's kernels run on AVX-512 machines only when forced); a set's decode kernel on its own
 * activation layout (vec_dot_ext) too, on the layout made from x, whose Q8_K row is xq. */
static void check_x86_sets(ellm_type ty, int n, int edge, const void *wq, const void *xq,
                           const float *x, float scalar)
{
    /* Room for any set's Q8_K layout: no layout takes more per super-block than a pair does. */
    static uint8_t ext[23 * sizeof(block_q8_K_pair)], plain[23 * sizeof(block_q8_K)];
    ellm_quantize_row(ELLM_TYPE_Q8_K, x, plain, n);
    CHECK_MSG(!memcmp(plain, xq, (size_t)n / QK_K * sizeof(block_q8_K)),
              "%s n=%d edge=%d: x does not quantize to xq", ellm_type_name(ty), n, edge);
    const char *sets[8];
    int n_sets = ellm_kernel_sets_available(sets, 8);
    for (int set = 0; set < n_sets && set < 8; set++) {
        CHECK(ellm_quant_use_kernel_set(sets[set]));
        const ellm_type_kernels *k = ellm_kernels_for(ty);
        if (!k ||
            (strcmp(k->isa, "avx2") && strcmp(k->isa, "avx2vnni") && strcmp(k->isa, "avx512")))
            continue;
        float own = NAN;
        k->vec_dot(n, &own, wq, xq);
        CHECK_MSG(!memcmp(&own, &scalar, sizeof own),
                  "%s n=%d edge=%d: set %s (%s kernel) %.9g vs scalar %.9g", ellm_type_name(ty), n,
                  edge, sets[set], k->isa, own, scalar);
        if (!k->vec_dot_ext)
            continue;
        CHECK(ellm_act_row_bytes(k->ext_layout, ELLM_TYPE_Q8_K, n) <= sizeof ext);
        ellm_quantize_act(k->ext_layout, ELLM_TYPE_Q8_K, x, ext, n);
        own = NAN;
        k->vec_dot_ext(n, &own, wq, ext);
        CHECK_MSG(!memcmp(&own, &scalar, sizeof own),
                  "%s n=%d edge=%d: set %s, kernel on its activation layout %.9g vs scalar %.9g",
                  ellm_type_name(ty), n, edge, sets[set], own, scalar);
    }
    ellm_quant_use_kernel_set(NULL);
}

static void test_kernels(void)
{
    enum { MAX_BLOCKS = 23, MAXN = MAX_BLOCKS * QK_K };
    static float w[MAXN], x[MAXN], xd[MAXN];
    static uint8_t wq[MAXN], xq[MAXN / QK_K * sizeof(block_q8_K)];
    /* The same rows starting off every SIMD boundary (by the blocks' own alignment: 2 bytes for
     * the weights' F16 scales, 4 for Q8_K's float). */
    static _Alignas(64) uint8_t wq_shifted[MAXN + 2], xq_shifted[sizeof xq + 4];
    /* The AVX2 kernels take rows of whole groups of eight super-blocks eight at a time and others
     * in pairs, the last alone when odd (5632: 22 blocks, tinyllama's FFN down rows): every count
     * from 1 to 23 blocks covers each mix of groups, pairs and a lone block. */
    int sizes[MAX_BLOCKS];
    for (int b = 0; b < MAX_BLOCKS; b++)
        sizes[b] = (b + 1) * QK_K;
    bool simd = strcmp(ellm_kernel_set_name(), "scalar") != 0;
    if (!simd)
        fprintf(stderr, "no SIMD kernel set on this CPU: only the scalar kernels are checked\n");
    for (int t = 0; t < N_LOW_TYPES; t++) {
        ellm_type ty = low_types[t];
        /* Which kernel was compared (web_kernels checks that none fell back to scalar). */
        fprintf(stderr, "%s decode kernel: %s\n", ellm_type_name(ty), ellm_kernels_for(ty)->isa);
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            int n = sizes[s];
            for (int edge = 0; edge < 4; edge++) {
                for (int i = 0; i < n; i++) {
                    w[i] = edge == 1 ? 0.0f : gauss() * (edge == 2 && i % 37 == 0 ? 50.0f : 1.0f);
                    /* edge 3: activations whose extremes are negative, so Q8_K stores -128 */
                    x[i] = edge == 3 ? -fabsf(frand()) : frand() * (edge == 2 ? 1e-3f : 1.0f);
                }
                ellm_quantize_row(ty, w, wq, n);
                ellm_quantize_row(ELLM_TYPE_Q8_K, x, xq, n);
                ellm_dequantize_row(ELLM_TYPE_Q8_K, xq, xd, n);
                float ref = ellm_dot_reference(ty, wq, xd, n);
                static float wd[MAXN];
                ellm_dequantize_row(ty, wq, wd, n);
                double mag = 0;
                for (int i = 0; i < n; i++)
                    mag += fabs((double)wd[i] * xd[i]);
                float sc = dot_with(ty, true, n, wq, xq);
                CHECK_MSG(fabs((double)sc - ref) <= 1e-5 * mag + 1e-30,
                          "%s n=%d edge=%d: scalar %.9g vs reference %.9g", ellm_type_name(ty), n,
                          edge, sc, ref);
                if (simd) {
                    float fast = dot_with(ty, false, n, wq, xq);
                    CHECK_MSG(memcmp(&fast, &sc, sizeof sc) == 0,
                              "%s n=%d edge=%d: %s %.9g vs scalar %.9g", ellm_type_name(ty), n,
                              edge, ellm_kernel_set_name(), fast, sc);
                }
                check_x86_sets(ty, n, edge, wq, xq, x, sc);
                uint64_t rb = 0;
                CHECK(ellm_row_bytes(ty, (uint64_t)n, &rb));
                memcpy(wq_shifted + 2, wq, rb);
                memcpy(xq_shifted + 4, xq, (size_t)n / QK_K * sizeof(block_q8_K));
                check_x86_sets(ty, n, edge + 100 /* shifted */, wq_shifted + 2, xq_shifted + 4, x,
                               sc);
            }
        }
        /* Every activation -128 (the value whose negation does not fit int8). */
        static block_q8_K a[4];
        for (int b = 0; b < 4; b++) {
            a[b].d = 0.01f;
            memset(a[b].qs, 0x80, sizeof a[b].qs);
            for (int g = 0; g < QK_K / 16; g++)
                a[b].bsums[g] = -128 * 16;
        }
        for (int i = 0; i < 4 * QK_K; i++) {
            w[i] = gauss();
            xd[i] = -1.28f;
        }
        ellm_quantize_row(ty, w, wq, 4 * QK_K);
        float ref = ellm_dot_reference(ty, wq, xd, 4 * QK_K);
        float sc = dot_with(ty, true, 4 * QK_K, wq, a);
        CHECK_MSG(fabsf(sc - ref) <= 1e-4f * fabsf(ref) + 1e-6f, "%s all -128: scalar %g vs %g",
                  ellm_type_name(ty), sc, ref);
        if (simd) {
            float fast = dot_with(ty, false, 4 * QK_K, wq, a);
            CHECK_MSG(memcmp(&fast, &sc, sizeof sc) == 0, "%s all -128: %s %.9g vs scalar %.9g",
                      ellm_type_name(ty), ellm_kernel_set_name(), fast, sc);
        }
        check_x86_sets(ty, 4 * QK_K, 4 /* every activation -128 */, wq, a, xd, sc);
    }
    /* IQ4_XS at its integer extremes: every level -127 or 113, every sub-block scale -32 or 31,
     * against activations all -128 or all 127 (but the first, -128): the largest exact sums a
     * super-block can reach, which every set and layout must still give bit for bit. */
    static block_iq4_xs xs[2];
    static float xe[2 * QK_K];
    static block_q8_K ae[2];
    for (int kind = 0; kind < 8; kind++) {
        for (int b = 0; b < 2; b++) {
            xs[b].d = 0x3C00; /* 1.0 */
            xs[b].scales_h = kind & 1 ? 0xFFFF : 0;
            memset(xs[b].scales_l, kind & 1 ? 0xFF : 0, sizeof xs[b].scales_l);
            memset(xs[b].qs, kind & 2 ? 0xFF : 0, sizeof xs[b].qs);
        }
        for (int i = 0; i < 2 * QK_K; i++)
            xe[i] = kind & 4 && i % QK_K ? 1.27f : -1.28f;
        ellm_quantize_row(ELLM_TYPE_Q8_K, xe, ae, 2 * QK_K);
        CHECK(ae[1].qs[0] == -128 && ae[1].qs[1] == (kind & 4 ? 127 : -128));
        float sc = dot_with(ELLM_TYPE_IQ4_XS, true, 2 * QK_K, xs, ae);
        check_x86_sets(ELLM_TYPE_IQ4_XS, 2 * QK_K, 10 + kind, xs, ae, xe, sc);
    }
}

/* ------------------------------------------------------------------ matmul */

static void test_matmul(void)
{
    enum { IN = 768, OUT = 37, T = 5 };
    static float w[OUT * IN], x[T * IN], ref[T * OUT], bound[T * OUT], y[T * OUT], y1[T * OUT];
    static uint8_t wq[OUT * IN];
    for (int i = 0; i < OUT * IN; i++)
        w[i] = gauss() * 0.05f;
    for (int i = 0; i < T * IN; i++)
        x[i] = frand();
    for (int t = 0; t < N_LOW_TYPES; t++) {
        ellm_type ty = low_types[t];
        uint64_t row_bytes = 0;
        CHECK(ellm_row_bytes(ty, IN, &row_bytes));
        for (int r = 0; r < OUT; r++)
            ellm_quantize_row(ty, w + r * IN, wq + r * row_bytes, IN);
        ellm_tensor tw = {.type = ty,
                          .ne = {IN, OUT, 1, 1},
                          .n_dims = 2,
                          .row_bytes = row_bytes,
                          .n_bytes = row_bytes * OUT,
                          .data = wq};
        /* Naive float reference on the dequantized weights; the kernels see activations rounded to
         * 8 bits per 256-block (error <= max|x| / 256 each), which bounds the difference. */
        static float wd[IN];
        for (int r = 0; r < OUT; r++) {
            ellm_dequantize_row(ty, wq + r * row_bytes, wd, IN);
            for (int tok = 0; tok < T; tok++) {
                double s = 0, b = 0;
                for (int blk = 0; blk < IN / QK_K; blk++) {
                    float amax = 0;
                    for (int i = 0; i < QK_K; i++)
                        amax = fmaxf(amax, fabsf(x[tok * IN + blk * QK_K + i]));
                    for (int i = blk * QK_K; i < (blk + 1) * QK_K; i++) {
                        s += (double)wd[i] * x[tok * IN + i];
                        b += fabs((double)wd[i]) * amax / 256.0;
                    }
                }
                ref[tok * OUT + r] = (float)s;
                bound[tok * OUT + r] = (float)(b * 1.01 + 1e-6);
            }
        }
        void *scratch = malloc(ellm_matmul_scratch_bytes(&tw, T) + 1);
        for (int threads = 1; threads <= 3; threads++) {
            ellm_threadpool *pool = NULL;
            CHECK(ellm_threadpool_create(threads, &pool) == EDGELLM_OK);
            ellm_matmul(pool, &tw, x, T, y, scratch);
            ellm_threadpool_free(pool);
            int off = 0;
            for (int i = 0; i < T * OUT; i++)
                off += !(fabsf(y[i] - ref[i]) <= bound[i]);
            CHECK_MSG(off == 0, "%s matmul: %d outputs off the naive result beyond the bound",
                      ellm_type_name(ty), off);
            if (threads == 1)
                memcpy(y1, y, sizeof y);
            else
                CHECK_MSG(!memcmp(y, y1, sizeof y), "%s: %d threads change the result",
                          ellm_type_name(ty), threads);
        }
        free(scratch);
    }
}

/* A matmul of 1 to 9 output rows (a whole multi-row step, less, and a step plus a tail) at row
 * lengths of 3 blocks and of 22 (5632, a partial group of eight), one token and three: every set's
 * output is, value for value, the scalar kernel's dot of that row and token. */
static void test_matmul_rows_exact(void)
{
    enum { MAX_IN = 5632, MAX_OUT = 9, T = 3 };
    static float w[MAX_OUT * MAX_IN], x[T * MAX_IN], y[T * MAX_OUT];
    static uint8_t wq[MAX_OUT * MAX_IN], xq[T][MAX_IN / QK_K * sizeof(block_q8_K)];
    for (int i = 0; i < MAX_OUT * MAX_IN; i++)
        w[i] = gauss() * (i % 97 == 0 ? 20.0f : 1.0f);
    for (int i = 0; i < T * MAX_IN; i++)
        x[i] = frand();
    const int lengths[] = {3 * QK_K, MAX_IN};
    const char *sets[8];
    int n_sets = ellm_kernel_sets_available(sets, 8), checked = 0;
    for (int t = 0; t < N_LOW_TYPES; t++) {
        ellm_type ty = low_types[t];
        for (size_t li = 0; li < sizeof lengths / sizeof lengths[0]; li++) {
            int in = lengths[li];
            uint64_t rb = 0;
            CHECK(ellm_row_bytes(ty, (uint64_t)in, &rb));
            for (int r = 0; r < MAX_OUT; r++)
                ellm_quantize_row(ty, w + r * in, wq + r * rb, in);
            float want[T][MAX_OUT];
            for (int tok = 0; tok < T; tok++) {
                ellm_quantize_row(ELLM_TYPE_Q8_K, x + tok * in, xq[tok], in);
                for (int r = 0; r < MAX_OUT; r++)
                    want[tok][r] = dot_with(ty, true, in, wq + r * rb, xq[tok]);
            }
            for (int out = 1; out <= MAX_OUT; out++) {
                ellm_tensor tw = {.type = ty,
                                  .ne = {in, out, 1, 1},
                                  .n_dims = 2,
                                  .row_bytes = rb,
                                  .n_bytes = rb * (uint64_t)out,
                                  .data = wq};
                for (int n_tok = 1; n_tok <= T; n_tok += T - 1) {
                    for (int set = 0; set < n_sets && set < 8; set++) {
                        CHECK(ellm_quant_use_kernel_set(sets[set]));
                        /* Each set's activation layout needs its own scratch. */
                        void *scratch = malloc(ellm_matmul_scratch_bytes(&tw, n_tok) + 1);
                        memset(y, 0xff, sizeof y);
                        ellm_matmul(NULL, &tw, x, n_tok, y, scratch);
                        free(scratch);
                        for (int tok = 0; tok < n_tok; tok++)
                            for (int r = 0; r < out; r++) {
                                CHECK_MSG(!memcmp(&y[tok * out + r], &want[tok][r], sizeof(float)),
                                          "%s set %s: %d columns, %d rows, %d tokens: row %d "
                                          "token %d %.9g vs scalar %.9g",
                                          ellm_type_name(ty), sets[set], in, out, n_tok, r, tok,
                                          y[tok * out + r], want[tok][r]);
                                checked++;
                            }
                    }
                }
            }
        }
    }
    ellm_quant_use_kernel_set(NULL);
    fprintf(stderr, "matmul rows checked against the scalar kernel: %d\n", checked);
}

/* IQ4_XS tiles at the ends of their integer range: levels -127 and 113 under sub-block scales
 * -32 and 31 (the AVX2 tile's int16 weights, |scale x level| up to 4064) against activations of
 * -128 and 127, with every super-block scale 1, so each (row, token) value is an exact integer
 * sum per super-block, rounded once by its conversion and once by the addition of the two
 * super-blocks. A tile that lets a 16-bit product or pair sum overflow, or carries one super-block's
 * integer into the next, fails here. Tokens run past one 128-token step (the AVX2 tile's), rows
 * past two groups of eight. */
static void test_iq4_xs_tile_extremes(void)
{
    enum { NSB = 2, N = NSB * QK_K, ROWS = 17, TOK = 130 };
    static block_iq4_xs w[ROWS][NSB];
    static block_q8_K x[TOK][NSB];
    static uint8_t xw[TOK][NSB * sizeof(block_q8_K_wide)];
    static float deq[ROWS][N], y[TOK][ROWS];
    memset(w, 0, sizeof w);
    for (int r = 0; r < ROWS; r++)
        for (int b = 0; b < NSB; b++) {
            block_iq4_xs *blk = &w[r][b];
            blk->d = ellm_f32_to_f16(1.0f);
            for (int s = 0; s < QK_K / 32; s++) {
                /* Scale codes 0 and 63 are the scales -32 and 31. */
                int code = r % 4 == 0   ? 0
                           : r % 4 == 1 ? 63
                           : r % 4 == 2 ? 63 * (s % 2)
                                        : (int)(frand() * 64) & 63;
                blk->scales_l[s / 2] |= (uint8_t)((code & 15) << (4 * (s % 2)));
                blk->scales_h |= (uint16_t)((code >> 4) << (2 * s));
            }
            for (int j = 0; j < QK_K / 2; j++) {
                /* Nibble 0 is the level -127, nibble 15 the level 113. */
                int lo = r % 4 == 0 ? 0 : r % 4 == 1 ? 15 : r % 4 == 2 ? 15 * (j % 2) : j * 7 % 16;
                int hi = r % 4 == 3 ? j * 5 % 16 : lo;
                blk->qs[j] = (uint8_t)(lo | hi << 4);
            }
        }
    for (int r = 0; r < ROWS; r++)
        ellm_dequantize_row(ELLM_TYPE_IQ4_XS, w[r], deq[r], N);
    for (int t = 0; t < TOK; t++)
        for (int b = 0; b < NSB; b++) {
            block_q8_K *a = &x[t][b];
            a->d = 1.0f;
            for (int i = 0; i < QK_K; i++) {
                bool neg = t % 3 == 0 ? true : t % 3 == 1 ? false : frand() < 0.5f;
                a->qs[i] = (int8_t)(neg ? -128 : 127);
            }
            for (int k = 0; k < QK_K / 16; k++) {
                int sum = 0;
                for (int i = 0; i < 16; i++)
                    sum += a->qs[16 * k + i];
                a->bsums[k] = (int16_t)sum;
            }
        }
    /* The same values for the tiles that read them tiled in 16 bits (ELLM_ACT_Q8_K_TILED). */
    size_t wrb = ellm_act_row_bytes(ELLM_ACT_Q8_K_TILED, ELLM_TYPE_Q8_K, N);
    CHECK(wrb <= sizeof xw[0]);
    for (int t = 0; t < TOK; t++)
        ellm_q8_K_tiled_place(x[t], N, xw, t, TOK);
    const char *sets[8];
    int n_sets = ellm_kernel_sets_available(sets, 8), tiled = 0;
    for (int set = 0; set < n_sets && set < 8; set++) {
        CHECK(ellm_quant_use_kernel_set(sets[set]));
        ellm_gemm_fn gemm = ellm_gemm_for(ELLM_TYPE_IQ4_XS);
        if (!gemm)
            continue;
        tiled++;
        memset(y, 0, sizeof y);
        if (ellm_gemm_act_layout(ELLM_TYPE_IQ4_XS) == ELLM_ACT_Q8_K_TILED)
            gemm(N, (const uint8_t *)w, sizeof w[0], ROWS, &xw[0][0], wrb, TOK, &y[0][0], ROWS);
        else
            gemm(N, (const uint8_t *)w, sizeof w[0], ROWS, (const uint8_t *)x, sizeof x[0], TOK,
                 &y[0][0], ROWS);
        for (int t = 0; t < TOK; t++)
            for (int r = 0; r < ROWS; r++) {
                float want = 0;
                for (int b = 0; b < NSB; b++) {
                    int64_t exact = 0;
                    for (int i = 0; i < QK_K; i++)
                        exact += (int64_t)deq[r][b * QK_K + i] * x[t][b].qs[i];
                    want += (float)exact;
                }
                CHECK_MSG(y[t][r] == want, "%s IQ4_XS tile row %d token %d: %.9g, exact %.9g",
                          sets[set], r, t, y[t][r], want);
            }
    }
    ellm_quant_use_kernel_set(NULL);
#if defined(__x86_64__) || defined(__wasm__)
    /* Where the AVX2 set runs (and in wasm) an IQ4_XS tile exists and must have been checked. */
    int has_avx2 = 0;
    for (int set = 0; set < n_sets && set < 8; set++)
        has_avx2 |= !strcmp(sets[set], "avx2") || !strcmp(sets[set], "wasm-simd");
    CHECK(tiled >= has_avx2);
#else
    (void)tiled;
#endif
}

int main(void)
{
    for (int t = 0; t < N_LOW_TYPES; t++) {
        CHECK(ellm_type_supported(low_types[t]));
        CHECK(ellm_kernels_for(low_types[t]) != NULL);
    }
    test_q2_K_layout();
    test_q3_K_layout();
    test_iq4_xs_layout();
    test_quantization_error();
    test_edge_cases();
    test_kernels();
    test_iq4_xs_tile_extremes();
    test_matmul();
    test_matmul_rows_exact();
    fprintf(stderr, "kernel set on this CPU: %s\n", ellm_kernel_set_name());
    return test_finish("test_quant_kquants_low");
}
