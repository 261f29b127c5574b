/* Reference quantizers and dequantizers of the K-quant weight formats Q4_K, Q5_K and Q6_K.
 *
 * Quantization works in two levels, as the formats do: each sub-block first gets the float
 * scale (and, for Q4_K/Q5_K, min) that minimises its squared error, found by trying a few steps
 * around range / levels and refining each by least squares; then the sub-block scales and mins
 * are themselves quantized (6 bits against the super-block's d/dmin, or 8 bits for Q6_K), and
 * the values are quantized against those stored, rounded scales, so the file decodes to exactly
 * what the quantizer measured. */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "quant/blocks.h"
#include "quant/kquants.h"
#include "quant/quant.h"

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* clampi((int)nearbyintf(v), lo, hi) without the library call (the weighted searches round
 * millions of values per matrix): v is first clamped to lo - 1..hi + 1, where adding and
 * subtracting 1.5 * 2^23 rounds to the nearest integer, ties to even, as nearbyintf does in the
 * default mode. Comparisons, not fminf/fmaxf, which are calls without -ffinite-math-only; NaN
 * passes them and converts to INT_MIN, giving lo as before. The two differ only for
 * |v| >= 2^31, which the callers' steps, set from the values' own range, never produce. */
static int nearest_in(float v, int lo, int hi)
{
    float below = (float)lo - 1.0f, above = (float)hi + 1.0f;
    v = v < below ? below : v;
    v = v > above ? above : v;
    return clampi((int)((v + 12582912.0f) - 12582912.0f), lo, hi);
}

/* The half nearest v (>= 0) from above, so the largest sub-block scale divided by the stored
 * super-block scale never exceeds the level count: matters for tiny weights, whose scales are
 * half subnormals with only a few bits. */
static uint16_t half_at_least(float v)
{
    uint16_t h = ellm_f32_to_f16(v);
    if (ellm_f16_to_f32(h) < v && h < 0x7BFF)
        h++;
    return h;
}

void ellm_kq_pack_scale_min(const uint8_t sc[8], const uint8_t m[8], uint8_t out[12])
{
    memset(out, 0, 12);
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            out[j] |= sc[j] & 63;
            out[j + 4] |= m[j] & 63;
        } else {
            out[j + 4] = (uint8_t)((sc[j] & 15) | (m[j] & 15) << 4);
            out[j - 4] |= (uint8_t)((sc[j] >> 4) << 6);
            out[j] |= (uint8_t)((m[j] >> 4) << 6);
        }
    }
}

/* ---- dequantization ---- */

void ellm_dequantize_q4_K(const void *src, float *dst, int64_t n)
{
    const block_q4_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        float d = ellm_f16_to_f32(b[i].d), dmin = ellm_f16_to_f32(b[i].dmin);
        for (int c = 0; c < 4; c++) {
            const uint8_t *q = b[i].qs + 32 * c;
            uint8_t sc0, m0, sc1, m1;
            ellm_kq_scale_min(2 * c, b[i].scales, &sc0, &m0);
            ellm_kq_scale_min(2 * c + 1, b[i].scales, &sc1, &m1);
            for (int l = 0; l < 32; l++) {
                dst[64 * c + l] = d * sc0 * (float)(q[l] & 15) - dmin * m0;
                dst[64 * c + 32 + l] = d * sc1 * (float)(q[l] >> 4) - dmin * m1;
            }
        }
    }
}

void ellm_dequantize_q5_K(const void *src, float *dst, int64_t n)
{
    const block_q5_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        float d = ellm_f16_to_f32(b[i].d), dmin = ellm_f16_to_f32(b[i].dmin);
        for (int c = 0; c < 4; c++) {
            const uint8_t *q = b[i].qs + 32 * c;
            uint8_t sc0, m0, sc1, m1;
            ellm_kq_scale_min(2 * c, b[i].scales, &sc0, &m0);
            ellm_kq_scale_min(2 * c + 1, b[i].scales, &sc1, &m1);
            for (int l = 0; l < 32; l++) {
                int lo = (q[l] & 15) | ((b[i].qh[l] >> (2 * c)) & 1) << 4;
                int hi = (q[l] >> 4) | ((b[i].qh[l] >> (2 * c + 1)) & 1) << 4;
                dst[64 * c + l] = d * sc0 * (float)lo - dmin * m0;
                dst[64 * c + 32 + l] = d * sc1 * (float)hi - dmin * m1;
            }
        }
    }
}

/* The 6-bit value at position v (0..255) of a Q6_K block, 0..63 (the stored q, before -32). */
static int q6_K_value(const block_q6_K *b, int v)
{
    int h = v / 128, r = v % 128, l = r % 32, quarter = r / 32;
    const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
    int low = quarter & 1 ? ql[l + 32] : ql[l];
    low = quarter < 2 ? low & 15 : low >> 4;
    return low | ((qh[l] >> (2 * quarter)) & 3) << 4;
}

void ellm_dequantize_q6_K(const void *src, float *dst, int64_t n)
{
    const block_q6_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        float d = ellm_f16_to_f32(b[i].d);
        for (int v = 0; v < QK_K; v++)
            dst[v] = d * (float)b[i].scales[v / 16] * (float)(q6_K_value(&b[i], v) - 32);
    }
}

/* ---- quantization ---- */

/* Squared error of x ~ s * q - m with q = round((x + m) / s) clamped to 0..nmax, each value's
 * weighted by w (NULL: all 1); stores q. */
static double affine_error(const float *x, const float *w, int n, int nmax, float s, float m,
                           uint8_t *q)
{
    double err = 0;
    float is = s > 0 ? 1.0f / s : 0.0f;
    for (int i = 0; i < n; i++) {
        int v = s > 0 ? nearest_in((x[i] + m) * is, 0, nmax) : 0;
        q[i] = (uint8_t)v;
        double e = (double)x[i] - ((double)s * v - m);
        err += (w ? w[i] : 1.0) * e * e;
    }
    return err;
}

/* The levels of affine_error alone, without its error. */
static void affine_levels(const float *x, int n, int nmax, float s, float m, uint8_t *q)
{
    float is = s > 0 ? 1.0f / s : 0.0f;
    for (int i = 0; i < n; i++)
        q[i] = (uint8_t)(s > 0 ? nearest_in((x[i] + m) * is, 0, nmax) : 0);
}

/* Weighted least squares (s, m >= 0) for x ~ s * q - m given the levels q; false when the
 * levels do not determine a positive step. */
static bool refit_affine(const float *x, const float *w, int n, const uint8_t *q, float *s,
                         float *m)
{
    double sw = 0, sq = 0, sqq = 0, sx = 0, sxq = 0;
    for (int i = 0; i < n; i++) {
        double wi = w ? w[i] : 1.0;
        sw += wi;
        sq += wi * q[i];
        sqq += wi * q[i] * q[i];
        sx += wi * x[i];
        sxq += wi * x[i] * q[i];
    }
    double det = sw * sqq - sq * sq;
    if (det <= 0)
        return false;
    double fs = (sw * sxq - sx * sq) / det, fb = (sx - fs * sq) / sw;
    if (fb > 0) { /* b = -m must stay <= 0 */
        fb = 0;
        fs = sxq / sqq;
    }
    if (!(fs > 0))
        return false;
    *s = (float)fs;
    *m = (float)-fb;
    return true;
}

/* Best step s >= 0 and min m >= 0 for x ~ s * q - m, q in 0..nmax: candidate steps around
 * range / nmax, each followed by a least-squares refit of (s, m) to the levels it chose. The
 * min is kept non-negative (the format stores -m * dmin with unsigned m), so a sub-block that is
 * all positive starts from 0. */
static float fit_affine(const float *x, int n, int nmax, float *out_m)
{
    float lo = 0, hi = x[0];
    for (int i = 0; i < n; i++) {
        lo = fminf(lo, x[i]);
        hi = fmaxf(hi, x[i]);
    }
    *out_m = -lo;
    if (!(hi > lo))
        return 0; /* constant block: the min alone represents it */
    uint8_t q[32];
    float best_s = (hi - lo) / (float)nmax, best_m = -lo;
    double best = affine_error(x, NULL, n, nmax, best_s, best_m, q);
    for (int k = -2; k <= 4; k++) {
        float s = (hi - lo) / ((float)nmax + 0.25f * (float)k), fs, fm;
        affine_error(x, NULL, n, nmax, s, -lo, q);
        if (!refit_affine(x, NULL, n, q, &fs, &fm))
            continue;
        double err = affine_error(x, NULL, n, nmax, fs, fm, q);
        if (err < best) {
            best = err;
            best_s = fs;
            best_m = fm;
        }
    }
    *out_m = best_m;
    return best_s;
}

/* The importance-weighted fit: a fine sweep of steps (range / (nmax + t), t from -1 to 1 by
 * 0.05, and a coarse one out to t = -2..+4, as the weights can favour a range other than the
 * whole); the min moves with every candidate: the levels are rounded, (s, m) refitted by
 * weighted least squares, the levels rounded again under the new (s, m), and refitted once more,
 * so a heavy value near the bottom can pull the minimum off the sub-block's lowest value. */
static float fit_affine_weighted(const float *x, const float *w, int n, int nmax, float *out_m)
{
    float lo = 0, hi = x[0];
    for (int i = 0; i < n; i++) {
        lo = fminf(lo, x[i]);
        hi = fmaxf(hi, x[i]);
    }
    *out_m = -lo;
    if (!(hi > lo))
        return 0;
    uint8_t q[32], previous[32];
    float best_s = (hi - lo) / (float)nmax, best_m = -lo;
    double best = affine_error(x, w, n, nmax, best_s, best_m, q);
    for (int k = -40; k <= 80; k += k < -20 || k >= 20 ? 5 : 1) {
        float s = (hi - lo) / ((float)nmax + 0.05f * (float)k), m = -lo;
        affine_levels(x, n, nmax, s, m, q);
        /* Neighbouring steps of the fine sweep often pick the same levels; the refits that
         * follow depend on the levels alone, so they would repeat the previous candidate's. */
        if (k > -40 && memcmp(q, previous, (size_t)n) == 0)
            continue;
        memcpy(previous, q, (size_t)n);
        for (int pass = 0; pass < 2; pass++) {
            float fs, fm;
            if (!refit_affine(x, w, n, q, &fs, &fm))
                break;
            double err = affine_error(x, w, n, nmax, fs, fm, q);
            if (err < best) {
                best = err;
                best_s = fs;
                best_m = fm;
            }
            /* Levels that did not move under the refit would refit to the same (s, m). */
            if (memcmp(q, previous, (size_t)n) == 0)
                break;
        }
    }
    *out_m = best_m;
    return best_s;
}

/* Levels of sub-block j under its stored scale and min codes; returns the weighted error. */
static double encode_sub_affine(const float *x, const float *w, int nmax, float d, float dmin,
                                int sc, int mq, uint8_t *L)
{
    return affine_error(x, w, 32, nmax, d * (float)sc, dmin * (float)mq, L);
}

/* Codes of the 8 sub-blocks against d and dmin: the two nearest codes of each scale and min are
 * tried and the pair with the least weighted error kept. Returns the block's weighted error. */
static double encode_k_affine_weighted(const float *x, const float *w, int nmax, const float *s,
                                       const float *m, float d, float dmin, uint8_t sc[8],
                                       uint8_t mq[8], uint8_t L[QK_K])
{
    double total = 0;
    for (int j = 0; j < 8; j++) {
        float fs = d > 0 ? fminf(s[j] / d, 64.0f) : 0,
              fm = dmin > 0 ? fminf(m[j] / dmin, 64.0f) : 0;
        double best = INFINITY;
        uint8_t q[32];
        for (int cs = 0; cs < 2; cs++) {
            for (int cm = 0; cm < 2; cm++) {
                int a = clampi((int)floorf(fs) + cs, 0, 63),
                    b = clampi((int)floorf(fm) + cm, 0, 63);
                double e = encode_sub_affine(x + 32 * j, w + 32 * j, nmax, d, dmin, a, b, q);
                if ((cs == 0 && cm == 0) || e < best) {
                    best = e;
                    sc[j] = (uint8_t)a;
                    mq[j] = (uint8_t)b;
                    memcpy(L + 32 * j, q, 32);
                }
            }
        }
        total += best;
    }
    return total;
}

/* The weighted path. The sub-block fits weigh each value by its importance times
 * sqrt(sigma2 + x^2) (sigma2 twice the block's mean square): with the importance alone the fit
 * spends the 4 or 5 bits on the many small values, while the few large ones carry most of the
 * output; measured on the planted-outlier model (docs/optimise.md), Q4_K_M KL 0.00753 with the
 * importance alone, 0.00710 with the magnitude factor. The codes of the sub-block scales and
 * mins are then chosen on the importance-weighted error alone, from the largest scale and min
 * at code 63 and again after a weighted least-squares refit of (d, dmin) for the codes and
 * levels chosen (x ~ d * sc * q - dmin * mq), keeping the better. */
static void quantize_k_affine_weighted(const float *x, const float *w, int nmax, uint16_t *d_out,
                                       uint16_t *dmin_out, uint8_t scales[12], uint8_t L[QK_K])
{
    float s[8], m[8], smax = 0, mmax = 0, ws[QK_K];
    double sum_x2 = 0;
    for (int i = 0; i < QK_K; i++)
        sum_x2 += (double)x[i] * x[i];
    float sigma2 = (float)(2 * sum_x2 / QK_K);
    for (int i = 0; i < QK_K; i++)
        ws[i] = w[i] * sqrtf(sigma2 + x[i] * x[i]);
    for (int j = 0; j < 8; j++) {
        s[j] = fit_affine_weighted(x + 32 * j, ws + 32 * j, 32, nmax, &m[j]);
        smax = fmaxf(smax, s[j]);
        mmax = fmaxf(mmax, m[j]);
    }
    uint8_t sc[8], mq[8], sc2[8], mq2[8], L2[QK_K];
    *d_out = half_at_least(smax / 63.0f);
    *dmin_out = half_at_least(mmax / 63.0f);
    double err = encode_k_affine_weighted(x, w, nmax, s, m, ellm_f16_to_f32(*d_out),
                                          ellm_f16_to_f32(*dmin_out), sc, mq, L);
    for (int pass = 0; pass < 2; pass++) {
        double uu = 0, uv = 0, vv = 0, xu = 0, xv = 0;
        for (int i = 0; i < QK_K; i++) {
            double u = (double)sc[i / 32] * L[i], v = -(double)mq[i / 32], wi = w[i];
            uu += wi * u * u;
            uv += wi * u * v;
            vv += wi * v * v;
            xu += wi * x[i] * u;
            xv += wi * x[i] * v;
        }
        double det = uu * vv - uv * uv;
        if (!(det > 0))
            break;
        float d2 = (float)((xu * vv - xv * uv) / det), dmin2 = (float)((xv * uu - xu * uv) / det);
        if (!(d2 > 0) || !(dmin2 >= 0))
            break;
        uint16_t dh = ellm_f32_to_f16(d2), mh = ellm_f32_to_f16(dmin2);
        double e = encode_k_affine_weighted(x, w, nmax, s, m, ellm_f16_to_f32(dh),
                                            ellm_f16_to_f32(mh), sc2, mq2, L2);
        if (!(e < err))
            break;
        err = e;
        *d_out = dh;
        *dmin_out = mh;
        memcpy(sc, sc2, sizeof sc);
        memcpy(mq, mq2, sizeof mq);
        memcpy(L, L2, QK_K);
    }
    ellm_kq_pack_scale_min(sc, mq, scales);
}

/* Shared by Q4_K (nmax 15) and Q5_K (nmax 31): the 8 sub-block fits, their 6-bit scales and
 * mins against the half-precision d and dmin, then every value against the stored scales. */
static void quantize_k_affine(const float *x, const float *w, int nmax, uint16_t *d_out,
                              uint16_t *dmin_out, uint8_t scales[12], uint8_t L[QK_K])
{
    if (w) {
        quantize_k_affine_weighted(x, w, nmax, d_out, dmin_out, scales, L);
        return;
    }
    float s[8], m[8], smax = 0, mmax = 0;
    for (int j = 0; j < 8; j++) {
        s[j] = fit_affine(x + 32 * j, 32, nmax, &m[j]);
        smax = fmaxf(smax, s[j]);
        mmax = fmaxf(mmax, m[j]);
    }
    *d_out = half_at_least(smax / 63.0f);
    *dmin_out = half_at_least(mmax / 63.0f);
    float d = ellm_f16_to_f32(*d_out), dmin = ellm_f16_to_f32(*dmin_out);
    uint8_t sc[8], mq[8];
    for (int j = 0; j < 8; j++) {
        sc[j] = (uint8_t)(d > 0 ? clampi((int)nearbyintf(s[j] / d), 0, 63) : 0);
        mq[j] = (uint8_t)(dmin > 0 ? clampi((int)nearbyintf(m[j] / dmin), 0, 63) : 0);
    }
    ellm_kq_pack_scale_min(sc, mq, scales);
    for (int j = 0; j < 8; j++) {
        float step = d * sc[j], off = dmin * mq[j];
        float is = step > 0 ? 1.0f / step : 0.0f;
        for (int i = 0; i < 32; i++) {
            float v = x[32 * j + i];
            L[32 * j + i] = (uint8_t)(step > 0 ? clampi((int)nearbyintf((v + off) * is), 0, nmax)
                                               : 0);
        }
    }
}

void ellm_quantize_q4_K_weighted(const float *src, void *dst, int64_t n, const float *w)
{
    block_q4_K *b = dst;
    uint8_t L[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++) {
        quantize_k_affine(src + i * QK_K, w ? w + i * QK_K : NULL, 15, &b[i].d, &b[i].dmin,
                          b[i].scales, L);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++)
                b[i].qs[32 * c + l] = (uint8_t)(L[64 * c + l] | L[64 * c + 32 + l] << 4);
    }
}

void ellm_quantize_q4_K(const float *src, void *dst, int64_t n)
{
    ellm_quantize_q4_K_weighted(src, dst, n, NULL);
}

void ellm_quantize_q5_K_weighted(const float *src, void *dst, int64_t n, const float *w)
{
    block_q5_K *b = dst;
    uint8_t L[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++) {
        quantize_k_affine(src + i * QK_K, w ? w + i * QK_K : NULL, 31, &b[i].d, &b[i].dmin,
                          b[i].scales, L);
        memset(b[i].qh, 0, sizeof b[i].qh);
        for (int c = 0; c < 4; c++) {
            for (int l = 0; l < 32; l++) {
                int lo = L[64 * c + l], hi = L[64 * c + 32 + l];
                b[i].qs[32 * c + l] = (uint8_t)((lo & 15) | (hi & 15) << 4);
                b[i].qh[l] |= (uint8_t)((lo >> 4) << (2 * c) | (hi >> 4) << (2 * c + 1));
            }
        }
    }
}

void ellm_quantize_q5_K(const float *src, void *dst, int64_t n)
{
    ellm_quantize_q5_K_weighted(src, dst, n, NULL);
}

/* Squared error of x ~ s * q with q = round(x / s) clamped to -32..31, weighted by w (NULL: all
 * 1); stores q. */
static double symmetric_error(const float *x, const float *w, int n, float s, int8_t *q)
{
    double err = 0;
    float is = s != 0 ? 1.0f / s : 0.0f;
    for (int i = 0; i < n; i++) {
        int v = nearest_in(x[i] * is, -32, 31);
        q[i] = (int8_t)v;
        double e = (double)x[i] - (double)s * v;
        err += (w ? w[i] : 1.0) * e * e;
    }
    return err;
}

/* Best signed step for x ~ s * q, q in -32..31: the value of largest magnitude maps near -32
 * or near +31 (whichever leaves the other side less clipped), trying a few steps around each
 * and refitting each by least squares. */
static float fit_symmetric(const float *x, const float *w, int n)
{
    float amax = 0, vmax = 0;
    for (int i = 0; i < n; i++) {
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            vmax = x[i];
        }
    }
    if (amax == 0)
        return 0;
    int8_t q[16];
    float best_s = vmax / -32.0f;
    double best = symmetric_error(x, w, n, best_s, q);
    /* Weighted: more steps, down to the extreme value at three quarters of either end. */
    int n_steps = w ? 16 : 4;
    for (int k = 0; k < 2 * n_steps; k++) {
        float level = k < n_steps ? -32.0f + 0.5f * (float)k : 31.0f - 0.5f * (float)(k - n_steps);
        float s = vmax / level;
        symmetric_error(x, w, n, s, q);
        double sxq = 0, sqq = 0;
        for (int i = 0; i < n; i++) {
            double wi = w ? w[i] : 1.0;
            sxq += wi * x[i] * q[i];
            sqq += wi * q[i] * q[i];
        }
        if (sqq <= 0)
            continue;
        float fs = (float)(sxq / sqq);
        double err = symmetric_error(x, w, n, fs, q);
        if (err < best) {
            best = err;
            best_s = fs;
        }
    }
    return best_s;
}

void ellm_quantize_q6_K_weighted(const float *src, void *dst, int64_t n, const float *w)
{
    block_q6_K *b = dst;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float *x = src + i * QK_K;
        const float *wb = w ? w + i * QK_K : NULL;
        float s[16], smax = 0;
        for (int j = 0; j < 16; j++) {
            s[j] = fit_symmetric(x + 16 * j, wb ? wb + 16 * j : NULL, 16);
            smax = fmaxf(smax, fabsf(s[j]));
        }
        b[i].d = half_at_least(smax / 127.0f);
        float d = ellm_f16_to_f32(b[i].d);
        uint8_t L[QK_K];
        for (int j = 0; j < 16; j++) {
            int sc = d > 0 ? clampi((int)nearbyintf(s[j] / d), -127, 127) : 0;
            b[i].scales[j] = (int8_t)sc;
            float step = d * (float)sc, is = step != 0 ? 1.0f / step : 0.0f;
            for (int l = 0; l < 16; l++)
                L[16 * j + l] = (uint8_t)(clampi((int)nearbyintf(x[16 * j + l] * is), -32, 31) +
                                          32);
        }
        for (int h = 0; h < 2; h++) {
            const uint8_t *Lh = L + 128 * h;
            uint8_t *ql = b[i].ql + 64 * h, *qh = b[i].qh + 32 * h;
            for (int l = 0; l < 32; l++) {
                ql[l] = (uint8_t)((Lh[l] & 15) | (Lh[l + 64] & 15) << 4);
                ql[l + 32] = (uint8_t)((Lh[l + 32] & 15) | (Lh[l + 96] & 15) << 4);
                qh[l] = (uint8_t)(Lh[l] >> 4 | (Lh[l + 32] >> 4) << 2 | (Lh[l + 64] >> 4) << 4 |
                                  (Lh[l + 96] >> 4) << 6);
            }
        }
    }
}

void ellm_quantize_q6_K(const float *src, void *dst, int64_t n)
{
    ellm_quantize_q6_K_weighted(src, dst, n, NULL);
}
