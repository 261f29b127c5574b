/* The F16-cache attention head of each instruction set. The ISA copies of attention_f16.inc
 * (F16C on x86, NEON on ARM) must equal the portable one bit for bit; the wide vector paths
 * (head sizes in 32s) must equal a scalar model of their rounding steps written here (eight-lane
 * fused multiply-add accumulators reduced (0+2)+(1+3), halves, pairs; the running output in F32
 * updated by fused multiply-adds), which is also what makes x86 and ARM agree, and the grouped
 * kernels must give each head exactly the wide path's result. All are checked against an exact
 * softmax attention in double within the F16 rounding. */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "quant/attention_kernels.h"
#include "quant/blocks.h"
#include "quant/quant.h"
#include "test_util.h"

enum { MAX_HD = 128, MAX_POS = 40, GROUP_POS = 100, PAD = 8 };

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float frand(void) { return test_rand_uniform(&rng); }

static float h2f(uint16_t h) { return ellm_f16_to_f32(h); }
static uint16_t f2h(float f) { return ellm_f32_to_f16(f); }

#if defined(ELLM_HAVE_F16C_ATTENTION)
/* Whether this CPU runs the named kernel set, as the dispatcher decides it (the "avx2" set needs
 * AVX2, FMA and F16C, as the F16C attention does). Asked there rather than through
 * __builtin_cpu_supports, which clang 14 refuses for "f16c". */
static bool cpu_runs_set(const char *name)
{
    const char *sets[16];
    int n = ellm_kernel_sets_available(sets, 16);
    for (int i = 0; i < n && i < 16; i++)
        if (strcmp(sets[i], name) == 0)
            return true;
    return false;
}
#endif

/* The wide paths' computation, one lane at a time. */
static void attend_wide_model(const float *q, const uint8_t *kc, const uint8_t *vc, size_t stride,
                              int32_t n_pos, int32_t hd, float scale, float *out)
{
    float qr[MAX_HD], acc[MAX_HD];
    for (int32_t d = 0; d < hd; d++) {
        qr[d] = h2f(f2h(q[d]));
        acc[d] = 0;
    }
    float max = -INFINITY, sum = 0;
    for (int32_t p = 0; p < n_pos; p++) {
        const uint16_t *k = (const uint16_t *)(kc + (size_t)p * stride);
        const uint16_t *v = (const uint16_t *)(vc + (size_t)p * stride);
        float a[4][8] = {{0}};
        for (int32_t d = 0; d < hd; d += 32)
            for (int u = 0; u < 4; u++)
                for (int l = 0; l < 8; l++)
                    a[u][l] = fmaf(h2f(k[d + 8 * u + l]), qr[d + 8 * u + l], a[u][l]);
        float s8[8], s4[4];
        for (int l = 0; l < 8; l++)
            s8[l] = (a[0][l] + a[2][l]) + (a[1][l] + a[3][l]);
        for (int l = 0; l < 4; l++)
            s4[l] = s8[l] + s8[l + 4];
        float score = ((s4[0] + s4[1]) + (s4[2] + s4[3])) * scale;
        float old_scale = 1.0f, weight = 1.0f;
        if (score > max) {
            old_scale = ellm_exp(max - score);
            max = score;
            for (int32_t d = 0; d < hd; d++)
                acc[d] *= old_scale;
        } else {
            weight = ellm_exp(score - max);
        }
        for (int32_t d = 0; d < hd; d++)
            acc[d] = fmaf(h2f(v[d]), weight, acc[d]);
        sum = sum * old_scale + weight;
    }
    float inv = 1.0f / sum;
    for (int32_t d = 0; d < hd; d++)
        out[d] = acc[d] * inv;
}

/* Softmax attention in double over the cached (F16) keys and values and the F16-rounded query. */
static void attend_exact(const float *q, const uint8_t *kc, const uint8_t *vc, size_t stride,
                         int32_t n_pos, int32_t hd, float scale, double *out)
{
    double scores[MAX_POS], max = -INFINITY, sum = 0;
    for (int32_t p = 0; p < n_pos; p++) {
        const uint16_t *k = (const uint16_t *)(kc + (size_t)p * stride);
        double dot = 0;
        for (int32_t d = 0; d < hd; d++)
            dot += (double)h2f(k[d]) * h2f(f2h(q[d]));
        scores[p] = dot * scale;
        max = fmax(max, scores[p]);
    }
    for (int32_t d = 0; d < hd; d++)
        out[d] = 0;
    for (int32_t p = 0; p < n_pos; p++) {
        const uint16_t *v = (const uint16_t *)(vc + (size_t)p * stride);
        double w = exp(scores[p] - max);
        sum += w;
        for (int32_t d = 0; d < hd; d++)
            out[d] += w * h2f(v[d]);
    }
    for (int32_t d = 0; d < hd; d++)
        out[d] /= sum;
}

static void run(ellm_attend_f16_fn fn, const float *q, const uint8_t *kc, const uint8_t *vc,
                size_t stride, int32_t n_pos, int32_t hd, float scale, float *out)
{
    uint16_t acc[MAX_HD];
    float qr[MAX_HD];
    fn(q, kc, vc, stride, n_pos, hd, scale, acc, qr, out);
}

static void run_wide(ellm_attend_f16_wide_fn fn, const float *q, const uint8_t *kc,
                     const uint8_t *vc, size_t stride, int32_t n_pos, int32_t hd, float scale,
                     float *out)
{
    float acc[MAX_HD], qr[MAX_HD];
    fn(q, kc, vc, stride, n_pos, hd, scale, acc, qr, out);
}

/* One head over a Q8_0 cache, the grouped kernels' contract for each head: the scalar Q8_0 dot,
 * scale, soft cap, the Q8_0 cache's softmax, portable value sums. */
static void attend_q8_0_model(const block_q8_0 *q8, const uint8_t *kc, const uint8_t *vc,
                              size_t stride, int32_t n_pos, int32_t hd, float scale, float cap,
                              float *scores, float *out)
{
    int32_t nb = hd / QK8_0;
    for (int32_t p = 0; p < n_pos; p++) {
        const block_q8_0 *k = (const block_q8_0 *)(kc + (size_t)p * stride);
        float sum = 0;
        for (int32_t b = 0; b < nb; b++) {
            int isum = 0;
            for (int i = 0; i < QK8_0; i++)
                isum += k[b].qs[i] * q8[b].qs[i];
            sum += h2f(k[b].d) * h2f(q8[b].d) * (float)isum;
        }
        float sc = sum * scale;
        scores[p] = cap > 0 ? cap * tanhf(sc / cap) : sc;
    }
    ellm_attention_softmax_q8_0(scores, n_pos);
    memset(out, 0, (size_t)hd * sizeof(float));
    for (int32_t p = 0; p < n_pos; p++)
        ellm_axpy_q8_0_portable(nb, scores[p], vc + (size_t)p * stride, out);
}

static void random_q8_0_blocks(block_q8_0 *b, int n, float d_scale)
{
    for (int i = 0; i < n; i++) {
        b[i].d = f2h((0.25f + fabsf(frand())) * d_scale);
        bool extreme = i % 7 == 3; /* all at the range's ends: the integer sums' largest pairs */
        for (int k = 0; k < QK8_0; k++)
            b[i].qs[k] = extreme ? (int8_t)(k % 3 ? 127 : -127) : (int8_t)(frand() * 127.0f);
    }
}

/* The grouped Q8_0-cache kernels of each set: every head bit for bit the one-head model, and
 * that model within rounding error of attention in double over the dequantized values. */
static void check_q8_0_group(void)
{
    enum { G_HEADS = 11, G_MAX_HD = 128, G_POS = 75, G_PAD = 1 };
    struct {
        const char *name;
        ellm_attend_q8_0_group_fn fn;
        bool usable;
    } sets[] = {
        {"portable", ellm_attend_q8_0_group_portable, true},
#if defined(ELLM_HAVE_F16C_ATTENTION)
        {"avx2", ellm_attend_q8_0_group_avx2, cpu_runs_set("avx2")},
#endif
    };
    static block_q8_0 q8[G_HEADS * G_MAX_HD / QK8_0];
    static block_q8_0 kc[G_POS * (G_MAX_HD / QK8_0 + G_PAD)],
        vc[G_POS * (G_MAX_HD / QK8_0 + G_PAD)];
    static float scores[G_HEADS * G_POS], want_scores[G_POS], out[G_HEADS * G_MAX_HD],
        want[G_MAX_HD];
    int32_t positions[] = {1, 2, 31, G_POS};
    int cases = 0;
    double worst = 0;
    for (int32_t hd = 32; hd <= G_MAX_HD; hd *= 2) {
        int32_t nb = hd / QK8_0;
        size_t stride = (size_t)(nb + G_PAD) * sizeof(block_q8_0); /* other heads' blocks follow */
        for (int32_t n_heads = 1; n_heads <= G_HEADS; n_heads += 3) {
            for (size_t np = 0; np < sizeof positions / sizeof positions[0]; np++) {
                int32_t n_pos = positions[np];
                random_q8_0_blocks(q8, n_heads * nb, 0.02f);
                random_q8_0_blocks(kc, n_pos * (nb + G_PAD), 0.02f);
                random_q8_0_blocks(vc, n_pos * (nb + G_PAD), 0.05f);
                float scale = 1.0f / sqrtf((float)hd), cap = np % 2 ? 0.5f : 0.0f;
                for (size_t si = 0; si < sizeof sets / sizeof sets[0]; si++) {
                    if (!sets[si].usable)
                        continue;
                    sets[si].fn(q8, (const uint8_t *)kc, (const uint8_t *)vc, stride, n_pos, hd,
                                scale, cap, n_heads, scores, out);
                    for (int32_t h = 0; h < n_heads; h++) {
                        attend_q8_0_model(q8 + h * nb, (const uint8_t *)kc, (const uint8_t *)vc,
                                          stride, n_pos, hd, scale, cap, want_scores, want);
                        CHECK_MSG(!memcmp(out + h * hd, want, (size_t)hd * sizeof(float)),
                                  "%s grouped Q8_0 hd=%d heads=%d n_pos=%d cap=%g: head %d "
                                  "differs from the one-head model",
                                  sets[si].name, hd, n_heads, n_pos, (double)cap, h);
                        cases++;
                    }
                }
                /* The one-head model itself against attention in double. */
                for (int32_t h = 0; h < n_heads; h++) {
                    attend_q8_0_model(q8 + h * nb, (const uint8_t *)kc, (const uint8_t *)vc, stride,
                                      n_pos, hd, scale, cap, want_scores, want);
                    double sc[G_POS], max = -INFINITY, sum = 0;
                    for (int32_t p = 0; p < n_pos; p++) {
                        const block_q8_0 *k = kc + (size_t)p * (nb + G_PAD);
                        double dot = 0;
                        for (int32_t d = 0; d < hd; d++)
                            dot += (double)h2f(k[d / QK8_0].d) * k[d / QK8_0].qs[d % QK8_0] *
                                   h2f(q8[h * nb + d / QK8_0].d) *
                                   q8[h * nb + d / QK8_0].qs[d % QK8_0];
                        sc[p] = dot * scale;
                        if (cap > 0)
                            sc[p] = cap * tanh(sc[p] / cap);
                        max = sc[p] > max ? sc[p] : max;
                    }
                    for (int32_t p = 0; p < n_pos; p++)
                        sum += (sc[p] = exp(sc[p] - max));
                    for (int32_t d = 0; d < hd; d++) {
                        double exact = 0;
                        for (int32_t p = 0; p < n_pos; p++) {
                            const block_q8_0 *v = vc + (size_t)p * (nb + G_PAD);
                            exact += sc[p] / sum * h2f(v[d / QK8_0].d) * v[d / QK8_0].qs[d % QK8_0];
                        }
                        double err = fabs(exact - want[d]);
                        worst = err > worst ? err : worst;
                    }
                }
            }
        }
    }
    CHECK_MSG(worst < 1e-3, "the Q8_0 one-head model is %g off attention in double", worst);
    fprintf(stderr, "%d grouped Q8_0 heads checked; one-head model within %.2g of double\n", cases,
            worst);
}

/* Running outputs at F16's edges, where rounding to a half has its special cases: values in the
 * subnormal range and around 2^-14, sums that round to 65504 or would overflow (saturated at
 * 65504, so the output stays finite even where cached values are Inf), and ties. The ISA copy
 * must still equal the portable head bit for bit (no NaN: its bits are not portable). */
static void test_f16_edges(ellm_attend_f16_fn narrow, const char *isa)
{
    enum { HD = 64, NP = 9 };
    const float magnitudes[] = {3e-8f, 6.1e-5f, 1e-3f, 1.0f, 3.3e4f, 6.55e4f, 2049.0f};
    static uint8_t kc[NP * HD * 2], vc[NP * HD * 2];
    float q[HD], want[HD], got[HD];
    for (int32_t d = 0; d < HD; d++)
        q[d] = frand() * 0.05f;
    for (int32_t p = 0; p < NP; p++)
        for (int32_t d = 0; d < HD; d++) {
            float sign = d % 2 ? -1.0f : 1.0f;
            float mag = magnitudes[d % (sizeof magnitudes / sizeof magnitudes[0])];
            uint16_t k = f2h(frand()), v = f2h(sign * mag * (1.0f + 0.25f * (float)(p % 3)));
            memcpy(kc + (size_t)p * HD * 2 + 2 * d, &k, 2);
            memcpy(vc + (size_t)p * HD * 2 + 2 * d, &v, 2);
        }
    run(ellm_attend_f16_portable, q, kc, vc, HD * 2, NP, HD, 0.125f, want);
    int nonfinite = 0, tiny = 0, large = 0;
    for (int32_t d = 0; d < HD; d++) {
        nonfinite += !isfinite(want[d]);
        tiny += want[d] != 0 && fabsf(want[d]) < 6.1e-5f;
        large += fabsf(want[d]) > 4096.0f;
    }
    CHECK_MSG(nonfinite == 0, "%d outputs not finite: the running output overflowed", nonfinite);
    CHECK_MSG(large > 0 && tiny > 0, "the edge case lacks large outputs (%d) or subnormals (%d)",
              large, tiny);
    if (narrow) {
        run(narrow, q, kc, vc, HD * 2, NP, HD, 0.125f, got);
        CHECK_MSG(!memcmp(got, want, sizeof got),
                  "%s: differs from the portable copy at F16's edges", isa);
    }
#if defined(__wasm__)
    /* The grouped kernel rounds its running outputs as the single head does. */
    float gq[2 * HD], gout[2 * HD];
    for (int32_t d = 0; d < HD; d++) {
        gq[d] = q[d];
        gq[HD + d] = -q[d];
    }
    run(ellm_attend_f16_portable, gq + HD, kc, vc, HD * 2, NP, HD, 0.125f, got);
    ellm_attend_f16_group_wasm_simd(gq, kc, vc, HD * 2, NP, HD, 0.125f, 2, gout);
    CHECK_MSG(!memcmp(gout, want, sizeof want) && !memcmp(gout + HD, got, sizeof got),
              "wasm-simd grouped: differs from the portable copy at F16's edges");
#endif
}

#if defined(__wasm__)
/* A NaN among the cached values: the wasm heads' rounding keeps it a NaN but not with the
 * portable head's payload, so they redo a head whose output has one with the portable head, and
 * within one engine the bits must then be the same. The other head of the group stays finite. */
static void test_f16_nan(void)
{
    enum { HD = 64, NP = 11 };
    static uint8_t kc[NP * HD * 2], vc[NP * HD * 2];
    float q[2 * HD], want[2 * HD], got[2 * HD];
    for (int32_t d = 0; d < 2 * HD; d++)
        q[d] = frand();
    for (int32_t p = 0; p < NP; p++)
        for (int32_t d = 0; d < HD; d++) {
            uint16_t k = f2h(frand()), v = f2h(frand() * 4.0f);
            memcpy(kc + (size_t)p * HD * 2 + 2 * d, &k, 2);
            memcpy(vc + (size_t)p * HD * 2 + 2 * d, &v, 2);
        }
    /* A signalling NaN half (payload 0x155) at position 5, lane 7 of the values. */
    uint16_t nan = 0x7D55;
    memcpy(vc + (size_t)5 * HD * 2 + 2 * 7, &nan, 2);
    run(ellm_attend_f16_portable, q, kc, vc, HD * 2, NP, HD, 0.125f, want);
    q[HD] = NAN; /* the second head's query: every score NaN */
    run(ellm_attend_f16_portable, q + HD, kc, vc, HD * 2, NP, HD, 0.125f, want + HD);
    CHECK_MSG(isnan(want[7]) && !isnan(want[8]) && isnan(want[HD]),
              "the NaN case lacks NaN outputs, or has them everywhere");
    run(ellm_attend_f16_wasm_simd, q, kc, vc, HD * 2, NP, HD, 0.125f, got);
    run(ellm_attend_f16_wasm_simd, q + HD, kc, vc, HD * 2, NP, HD, 0.125f, got + HD);
    CHECK_MSG(!memcmp(got, want, sizeof got), "wasm-simd: NaN outputs differ from the portable's");
    memset(got, 0, sizeof got);
    ellm_attend_f16_group_wasm_simd(q, kc, vc, HD * 2, NP, HD, 0.125f, 2, got);
    CHECK_MSG(!memcmp(got, want, sizeof got),
              "wasm-simd grouped: NaN outputs differ from the portable's");
}
#endif

/* The F16 cache's store: each set's own f16_store against the portable one, byte for byte, on
 * F16's edges (subnormal ties, ties between normals, 65504 and the values that saturate to it, the
 * infinities, quiet and signalling NaNs of both signs with payloads) and random values of every
 * scale, over a length whose last values are not a whole vector. */
static void test_f16_store(void)
{
    enum { N = 203 };
    static const uint32_t edge_bits[] = {
        0x00000000, 0x80000000, 0x00000001, 0x33000000, 0x33000001, 0x33400000, 0x33800000,
        0x33C00000, 0x38800000, 0x387FE000, 0x387FF000, 0x3F801000, 0x3F803000, 0x3F800FFF,
        0x477FE000, 0x477FEFFF, 0x477FF000, 0x477FFFFF, 0x47800000, 0x7F7FFFFF, 0xC77FF000,
        0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC12345, 0x7F800001, 0x7FA00000, 0xFF812345};
    enum { N_EDGES = sizeof edge_bits / sizeof edge_bits[0] };
    static float src[N];
    static uint8_t want[2 * N], got[2 * N + 2]; /* and a guard after the longest */
    for (int i = 0; i < N; i++) {
        if (i < N_EDGES)
            memcpy(&src[i], &edge_bits[i], sizeof src[i]);
        else
            src[i] = frand() * ldexpf(1.0f, i % 48 - 30);
    }
    ellm_f16_store_portable(src, want, N);
    uint16_t saturated, signalling;
    memcpy(&saturated, want + 2 * 18, 2);
    memcpy(&signalling, want + 2 * 25, 2);
    /* A NaN's sign and payload are not portable (wasm may change them), only its NaN-ness. */
    CHECK_MSG(saturated == 0x7BFF && (signalling & 0x7FFF) > 0x7C00,
              "the portable store saturates 2^16 to %04x and makes a NaN %04x", saturated,
              signalling);
    const char *sets[16];
    int n_sets = ellm_kernel_sets_available(sets, 16), checked = 0;
    for (int s = 0; s < n_sets && s < 16; s++) {
        CHECK(ellm_quant_use_kernel_set(sets[s]));
        ellm_f16_store_fn store = ellm_attention_kernels_active()->f16_store;
        if (!store || store == ellm_f16_store_portable)
            continue;
        for (int n = N - 8; n <= N; n++) { /* every tail length */
            memset(got, 0xA5, sizeof got);
            store(src, got, n);
            CHECK_MSG(!memcmp(got, want, 2 * (size_t)n) && got[2 * n] == 0xA5,
                      "%s: the F16 store of %d values differs from the portable one", sets[s], n);
        }
        checked++;
    }
    ellm_quant_use_kernel_set(NULL);
#if defined(ELLM_HAVE_F16C_ATTENTION)
    CHECK_MSG(!cpu_runs_set("avx2") || checked > 0, "no set with an F16C store was checked");
#endif
    fprintf(stderr, "F16 store checked in %d kernel sets\n", checked);
}

int main(void)
{
    test_f16_store();
    check_q8_0_group();
    ellm_attend_f16_fn narrow = NULL;
    ellm_attend_f16_wide_fn wide = NULL;
    const char *isa = "none";
#if defined(ELLM_HAVE_F16C_ATTENTION)
    if (cpu_runs_set("avx2")) {
        narrow = ellm_attend_f16_f16c;
        wide = ellm_attend_f16_f16c_wide;
        isa = "f16c";
    }
#endif
#if defined(ELLM_HAVE_NEON_ATTENTION)
    narrow = ellm_attend_f16_neon;
    wide = ellm_attend_f16_neon_wide;
    isa = "neon";
#endif
#if defined(__wasm__)
    narrow = ellm_attend_f16_wasm_simd;
    isa = "wasm-simd";
#endif
    fprintf(stderr, "attention copies on this CPU: portable, %s\n", isa);

    static uint8_t kc[MAX_POS * (MAX_HD + PAD) * 2], vc[MAX_POS * (MAX_HD + PAD) * 2];
    float q[MAX_HD], got[MAX_HD], want[MAX_HD], isa_out[MAX_HD];
    double exact[MAX_HD];
    int32_t head_dims[] = {16, 48, 64, 100, 128};
    int32_t positions[] = {1, 2, 7, 33, MAX_POS};
    int cases = 0;
    double wide_worst = 0;
    for (size_t h = 0; h < sizeof head_dims / sizeof head_dims[0]; h++) {
        int32_t hd = head_dims[h];
        size_t stride = (size_t)(hd + PAD) * 2;
        for (size_t np = 0; np < sizeof positions / sizeof positions[0]; np++) {
            int32_t n_pos = positions[np];
            for (int spread = 0; spread < 3; spread++) {
                /* spread 2: large scores, so the running maximum changes and rescales often */
                float qs = spread == 0 ? 0.1f : spread == 1 ? 1.0f : 6.0f;
                for (int32_t d = 0; d < hd; d++)
                    q[d] = frand() * qs;
                for (int32_t p = 0; p < n_pos; p++)
                    for (int32_t d = 0; d < hd + PAD; d++) {
                        uint16_t k = f2h(frand() * (float)(1 + p % 3)), v = f2h(frand() * 2.0f);
                        memcpy(kc + (size_t)p * stride + 2 * d, &k, 2);
                        memcpy(vc + (size_t)p * stride + 2 * d, &v, 2);
                    }
                float scale = 1.0f / sqrtf((float)hd);
                run(ellm_attend_f16_portable, q, kc, vc, stride, n_pos, hd, scale, got);
                attend_exact(q, kc, vc, stride, n_pos, hd, scale, exact);
                double worst = 0;
                for (int32_t d = 0; d < hd; d++)
                    worst = fmax(worst, fabs(got[d] - exact[d]));
                /* The running output is rounded to F16 (relative 2^-11) at every position. */
                CHECK_MSG(worst < 2e-3 * (n_pos + 1), "hd=%d n_pos=%d: portable off exact by %g",
                          hd, n_pos, worst);
                if (narrow) {
                    run(narrow, q, kc, vc, stride, n_pos, hd, scale, isa_out);
                    CHECK_MSG(!memcmp(isa_out, got, (size_t)hd * sizeof(float)),
                              "%s hd=%d n_pos=%d spread=%d: differs from the portable copy", isa,
                              hd, n_pos, spread);
                }
                if (wide && hd % 32 == 0) {
                    attend_wide_model(q, kc, vc, stride, n_pos, hd, scale, want);
                    run_wide(wide, q, kc, vc, stride, n_pos, hd, scale, isa_out);
                    CHECK_MSG(!memcmp(isa_out, want, (size_t)hd * sizeof(float)),
                              "%s wide hd=%d n_pos=%d spread=%d: differs from its scalar model",
                              isa, hd, n_pos, spread);
                    double wworst = 0;
                    for (int32_t d = 0; d < hd; d++)
                        wworst = fmax(wworst, fabs(isa_out[d] - exact[d]));
                    /* Only float rounding (no F16 step after the inputs): far closer than the
                     * portable path's. */
                    CHECK_MSG(wworst < 1e-5, "%s wide hd=%d n_pos=%d: off exact by %g", isa, hd,
                              n_pos, wworst);
                    wide_worst = fmax(wide_worst, wworst);
                }
                cases++;
            }
        }
    }
    fprintf(stderr, "%d attention cases; wide paths at most %.2g off exact\n", cases, wide_worst);
    test_f16_edges(narrow, isa);
#if defined(__wasm__)
    test_f16_nan();
#endif

#if defined(ELLM_HAVE_F16C_ATTENTION) || defined(__wasm__)
    /* The grouped kernels: every head of a group bit for bit the wide path's (x86) or the
     * portable head's (wasm, which has no wide path), over enough positions for several position
     * blocks and a partial last one. */
    struct {
        const char *name;
        ellm_attend_f16_group_fn fn;
        bool usable;
    } groups[] = {
#if defined(ELLM_HAVE_F16C_ATTENTION)
        {"avx2", ellm_attend_f16_group_avx2, wide != NULL},
        {"avx512", ellm_attend_f16_group_avx512, wide && cpu_runs_set("avx512")},
#endif
#if defined(__wasm__)
        {"wasm-simd", ellm_attend_f16_group_wasm_simd, true},
#endif
    };
    for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++) {
        if (!groups[g].usable)
            continue;
        enum { MAX_GROUP = 9 };
        static float gq[MAX_GROUP * MAX_HD], gout[MAX_GROUP * MAX_HD];
        static uint8_t gkc[GROUP_POS * (MAX_HD + PAD) * 2], gvc[GROUP_POS * (MAX_HD + PAD) * 2];
        int32_t group_positions[] = {1, 7, 33, 71, GROUP_POS};
        int grouped = 0;
        for (int32_t hd = 64; hd <= 128; hd += 64) {
            size_t stride = (size_t)(hd + PAD) * 2;
            for (int32_t n_heads = 1; n_heads <= MAX_GROUP; n_heads += 2) {
                for (size_t np = 0; np < sizeof group_positions / sizeof group_positions[0]; np++) {
                    int32_t n_pos = group_positions[np];
                    for (int32_t i = 0; i < n_heads * hd; i++)
                        gq[i] = frand() * (float)(1 + i % 5);
                    for (int32_t p = 0; p < n_pos; p++)
                        for (int32_t d = 0; d < hd + PAD; d++) {
                            uint16_t k = f2h(frand() * (float)(1 + p % 4)), v = f2h(frand() * 3.0f);
                            memcpy(gkc + (size_t)p * stride + 2 * d, &k, 2);
                            memcpy(gvc + (size_t)p * stride + 2 * d, &v, 2);
                        }
                    float scale = 1.0f / sqrtf((float)hd);
                    groups[g].fn(gq, gkc, gvc, stride, n_pos, hd, scale, n_heads, gout);
                    for (int32_t h = 0; h < n_heads; h++) {
                        if (wide)
                            run_wide(wide, gq + h * hd, gkc, gvc, stride, n_pos, hd, scale, want);
                        else
                            run(ellm_attend_f16_portable, gq + h * hd, gkc, gvc, stride, n_pos, hd,
                                scale, want);
                        CHECK_MSG(!memcmp(gout + h * hd, want, (size_t)hd * sizeof(float)),
                                  "%s grouped hd=%d heads=%d n_pos=%d: head %d differs from the "
                                  "wide or portable path",
                                  groups[g].name, hd, n_heads, n_pos, h);
                    }
                    grouped++;
                }
            }
        }
        fprintf(stderr, "%d grouped attention cases (%s)\n", grouped, groups[g].name);
    }
#endif
#if defined(ELLM_HAVE_F16C_ATTENTION)
    /* The multi-token grouped kernels: each (token, head) bit for bit what the set's grouped
     * kernel gives that token alone (token t over the first n_pos + t positions), for token counts
     * past the kernel's four a pass, causal ends inside and at the edge of a 32-position block,
     * 1-9 heads and strided queries and outputs. */
    struct {
        const char *name;
        ellm_attend_f16_group_tokens_fn tokens;
        ellm_attend_f16_group_fn one_token;
        bool usable;
    } token_groups[] = {
        {"avx2", ellm_attend_f16_group_tokens_avx2, ellm_attend_f16_group_avx2, wide != NULL},
    };
    for (size_t g = 0; g < sizeof token_groups / sizeof token_groups[0]; g++) {
        if (!token_groups[g].usable)
            continue;
        enum { MAX_TOKENS = 9, MAX_HEADS = 9, ROW = MAX_HEADS * MAX_HD + 3 };
        static float tq[MAX_TOKENS * ROW], tout[MAX_TOKENS * ROW], one[MAX_HEADS * MAX_HD];
        static uint8_t tkc[GROUP_POS * MAX_HD * 2], tvc[GROUP_POS * MAX_HD * 2];
        const int32_t first_n_pos[] = {1, 7, 30, 32, 71}, token_counts[] = {1, 2, 3, 5, 9},
                      head_counts[] = {1, 4, 8, 9};
        int token_cases = 0;
        for (int32_t hd = 64; hd <= 128; hd += 64) {
            size_t stride = (size_t)hd * 2, q_stride = (size_t)ROW, out_stride = (size_t)ROW - 1;
            for (int32_t p = 0; p < GROUP_POS; p++)
                for (int32_t d = 0; d < hd; d++) {
                    uint16_t k = f2h(frand() * (float)(1 + p % 4)), v = f2h(frand() * 3.0f);
                    memcpy(tkc + (size_t)p * stride + 2 * d, &k, 2);
                    memcpy(tvc + (size_t)p * stride + 2 * d, &v, 2);
                }
            for (size_t a = 0; a < sizeof first_n_pos / sizeof first_n_pos[0]; a++)
                for (size_t b = 0; b < sizeof token_counts / sizeof token_counts[0]; b++)
                    for (size_t c = 0; c < sizeof head_counts / sizeof head_counts[0]; c++) {
                        int32_t n_pos = first_n_pos[a], n_tokens = token_counts[b];
                        int32_t n_heads = head_counts[c];
                        for (size_t i = 0; i < sizeof tq / sizeof tq[0]; i++)
                            tq[i] = frand() * (float)(1 + i % 5);
                        float scale = 1.0f / sqrtf((float)hd);
                        token_groups[g].tokens(tq, q_stride, tkc, tvc, stride, n_pos, n_tokens, hd,
                                               scale, n_heads, tout, out_stride);
                        for (int32_t t = 0; t < n_tokens; t++) {
                            token_groups[g].one_token(tq + (size_t)t * q_stride, tkc, tvc, stride,
                                                      n_pos + t, hd, scale, n_heads, one);
                            for (int32_t h = 0; h < n_heads; h++)
                                CHECK_MSG(!memcmp(tout + (size_t)t * out_stride + (size_t)h * hd,
                                                  one + (size_t)h * hd, (size_t)hd * sizeof(float)),
                                          "%s %d tokens from n_pos=%d hd=%d heads=%d: token %d "
                                          "head %d differs from the one-token kernel",
                                          token_groups[g].name, n_tokens, n_pos, hd, n_heads, t, h);
                        }
                        token_cases++;
                    }
        }
        fprintf(stderr, "%d multi-token grouped attention cases (%s)\n", token_cases,
                token_groups[g].name);
    }
#endif
    /* The Q8_0 cache's value sums: each set's kernel the portable one bit for bit. */
    ellm_axpy_q8_0_fn axpy = ellm_axpy_q8_0_portable;
#if defined(ELLM_HAVE_F16C_ATTENTION)
    if (cpu_runs_set("avx2"))
        axpy = ellm_axpy_q8_0_avx2;
#endif
    enum { AXPY_BLOCKS = 4 };
    block_q8_0 blocks[AXPY_BLOCKS];
    float sum_portable[AXPY_BLOCKS * QK8_0], sum_set[AXPY_BLOCKS * QK8_0];
    for (int i = 0; i < AXPY_BLOCKS * QK8_0; i++)
        sum_portable[i] = sum_set[i] = frand() * 4.0f;
    for (int round = 0; round < 8; round++) {
        for (int b = 0; b < AXPY_BLOCKS; b++) {
            blocks[b].d = f2h(frand() * 0.05f);
            for (int k = 0; k < QK8_0; k++)
                blocks[b].qs[k] = (int8_t)(frand() * 127.0f);
        }
        float w = frand();
        ellm_axpy_q8_0_portable(AXPY_BLOCKS, w, blocks, sum_portable);
        axpy(AXPY_BLOCKS, w, blocks, sum_set);
    }
    CHECK_MSG(!memcmp(sum_portable, sum_set, sizeof sum_set),
              "the kernel set's Q8_0 value sum differs from the portable one");
    CHECK(fabsf(sum_portable[5] - sum_portable[6]) > 0); /* the sums are not all one value */
    return test_finish("test_attention");
}
