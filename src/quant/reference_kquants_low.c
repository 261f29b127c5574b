/* Reference quantizers and dequantizers of Q2_K, Q3_K and IQ4_XS.
 *
 * Quantizing is two-level, as the formats are: first each sub-block gets the float scale (and,
 * for Q2_K, offset) that minimises its squared error, found by trying a spread of candidate
 * scales and refining each by least squares for the levels it picks. Then the sub-block scales
 * are themselves quantized against one half-precision super-block scale; for each sub-block the
 * two nearest codes are both tried with the values re-quantized, and the one with less squared
 * error is kept. The values are finally quantized with the scales as they decode. */
#include <math.h>
#include <string.h>

#include "quant/blocks.h"
#include "quant/quant.h"
#include "quant/reference_kquants_low.h"

const int8_t ellm_kvalues_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                       1,    13,   25,  38,  53,  69,  89,  113};

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }
/* Round to nearest (ties to even) for |v| < 2^22, by adding 1.5 * 2^23 so the integer lands in the
 * low mantissa bits: nearbyintf is a library call on CPUs without SSE4.1, and the search loops
 * round millions of values. Larger or NaN inputs give some value in +-2^22, which callers clamp. */
static int round_int(float v)
{
    float t = v + 12582912.0f;
    int32_t bits;
    memcpy(&bits, &t, sizeof bits);
    return (bits & 0x007FFFFF) - 0x00400000;
}

/* A sub-block scale over the super-block scale, limited so that converting it to int is defined
 * even for NaN or infinite inputs (fmaxf returns the number when one argument is NaN). */
static float code_ratio(float f) { return fminf(fmaxf(f, -64.0f), 64.0f); }

/* ---------------------------------------------------------------- dequantization */

void ellm_dequantize_q2_K(const block_q2_K *b, float *y, int64_t n)
{
    for (int64_t i = 0; i < n / QK_K; i++, y += QK_K) {
        float d = ellm_f16_to_f32(b[i].d), dmin = ellm_f16_to_f32(b[i].dmin);
        for (int v = 0; v < QK_K; v++) {
            int h = v / 128, j = (v % 128) / 32, l = v % 32;
            int q = (b[i].qs[32 * h + l] >> (2 * j)) & 3;
            int sc = b[i].scales[v / 16];
            y[v] = d * (float)(sc & 15) * (float)q - dmin * (float)(sc >> 4);
        }
    }
}

void ellm_dequantize_q3_K(const block_q3_K *b, float *y, int64_t n)
{
    for (int64_t i = 0; i < n / QK_K; i++, y += QK_K) {
        float d = ellm_f16_to_f32(b[i].d);
        for (int v = 0; v < QK_K; v++) {
            int h = v / 128, j = (v % 128) / 32, l = v % 32;
            int low = (b[i].qs[32 * h + l] >> (2 * j)) & 3;
            int high = (b[i].hmask[l] >> (4 * h + j)) & 1;
            int q = low - (high ? 0 : 4);
            y[v] = d * (float)(ellm_q3_K_scale(b[i].scales, v / 16) - 32) * (float)q;
        }
    }
}

void ellm_dequantize_iq4_xs(const block_iq4_xs *b, float *y, int64_t n)
{
    for (int64_t i = 0; i < n / QK_K; i++, y += QK_K) {
        float d = ellm_f16_to_f32(b[i].d);
        for (int s = 0; s < QK_K / 32; s++) {
            float dl = d * (float)(ellm_iq4_xs_scale(&b[i], s) - 32);
            for (int j = 0; j < 16; j++) {
                uint8_t byte = b[i].qs[16 * s + j];
                y[32 * s + j] = dl * (float)ellm_kvalues_iq4nl[byte & 15];
                y[32 * s + j + 16] = dl * (float)ellm_kvalues_iq4nl[byte >> 4];
            }
        }
    }
}

/* ---------------------------------------------------------------- Q2_K */

/* The weight of value k: its column's importance, or 1 without importances. */
#define WEIGHT(w, k) ((w) ? (w)[k] : 1.0f)

/* Levels 0..3 of x under value = a * q - m; the error weighted by w (NULL: unweighted). */
static float q2_levels(const float *x, const float *w, int n, float a, float m, uint8_t *q)
{
    float err = 0, inv = a > 0 ? 1.0f / a : 0;
    for (int k = 0; k < n; k++) {
        int l = a > 0 ? clampi(round_int((x[k] + m) * inv), 0, 3) : 0;
        q[k] = (uint8_t)l;
        float e = a * (float)l - m - x[k];
        err += WEIGHT(w, k) * e * e;
    }
    return err;
}

/* Best (a >= 0, m >= 0) with x ~ a * q - m for one 16-value sub-block. m >= 0 because the format
 * subtracts a non-negative multiple of dmin: the lowest level is never above zero. */
static void q2_fit_sub(const float *x, const float *w, float *a_out, float *m_out)
{
    float lo = 0, hi = 0;
    for (int k = 0; k < 16; k++) {
        lo = fminf(lo, x[k]);
        hi = fmaxf(hi, x[k]);
    }
    *a_out = 0;
    *m_out = -lo;
    if (hi == lo)
        return;
    float best = INFINITY;
    uint8_t q[16];
    for (int step = -6; step <= 10; step++) {
        float a = (hi - lo) / (3.0f + 0.1f * (float)step), m = -lo;
        q2_levels(x, w, 16, a, m, q);
        /* Weighted least squares for (a, m) given the levels. */
        float sw = 0, sq = 0, sqq = 0, sx = 0, sqx = 0;
        for (int k = 0; k < 16; k++) {
            float wk = WEIGHT(w, k);
            sw += wk;
            sq += wk * q[k];
            sqq += wk * (float)(q[k] * q[k]);
            sx += wk * x[k];
            sqx += wk * (float)q[k] * x[k];
        }
        float det = sw * sqq - sq * sq;
        if (det > 0) {
            float a2 = (sw * sqx - sq * sx) / det;
            float m2 = (a2 * sq - sx) / sw;
            if (m2 < 0) {
                m2 = 0;
                a2 = sqq > 0 ? sqx / sqq : 0;
            }
            if (a2 > 0) {
                a = a2;
                m = m2;
            }
        }
        float err = q2_levels(x, w, 16, a, m, q);
        if (err < best) {
            best = err;
            *a_out = a;
            *m_out = m;
        }
    }
}

/* Encodes a block given its sub-block fits, with the largest scale and min at code `top` (15 uses
 * the whole 4-bit range); returns the squared error. */
static float encode_q2_K(const float *x, const float *w, const float *a, const float *m,
                         float d_want, float dmin_want, block_q2_K *b)
{
    memset(b, 0, sizeof *b);
    b->d = ellm_f32_to_f16(d_want);
    b->dmin = ellm_f32_to_f16(dmin_want);
    float d = ellm_f16_to_f32(b->d), dmin = ellm_f16_to_f32(b->dmin), total = 0;
    uint8_t levels[QK_K];
    for (int s = 0; s < 16; s++) {
        const float *xs = x + 16 * s;
        float fa = code_ratio(d > 0 ? a[s] / d : 0), fm = code_ratio(dmin > 0 ? m[s] / dmin : 0);
        float best = INFINITY;
        for (int ca = 0; ca < 2; ca++) {
            for (int cm = 0; cm < 2; cm++) {
                int sc = clampi((int)floorf(fa) + ca, 0, 15);
                int mn = clampi((int)floorf(fm) + cm, 0, 15);
                uint8_t q[16];
                float err = q2_levels(xs, w ? w + 16 * s : NULL, 16, d * (float)sc,
                                      dmin * (float)mn, q);
                if ((ca == 0 && cm == 0) || err < best) { /* the first always, even if NaN */
                    best = err;
                    b->scales[s] = (uint8_t)(sc | mn << 4);
                    memcpy(levels + 16 * s, q, 16);
                }
            }
        }
        total += best;
    }
    for (int v = 0; v < QK_K; v++) {
        int h = v / 128, j = (v % 128) / 32, l = v % 32;
        b->qs[32 * h + l] |= (uint8_t)(levels[v] << (2 * j));
    }
    return total;
}

/* Half precision spaces its subnormals 2^-24 apart: a super-block scale below 2^-18 is off by up
 * to 1/128 of itself. For such tiny blocks, fewer scale codes under a larger and so relatively
 * more exact super-block scale may do better; these are the largest codes tried instead. */
#define HALF_COARSE 0x1.0p-18f
static const int coarse_tops[] = {28, 24, 20, 16, 12, 10, 8, 6, 5, 4, 3, 2, 1};
#define N_COARSE_TOPS ((int)(sizeof coarse_tops / sizeof coarse_tops[0]))

/* The one-parameter least-squares fit of x ~ d * u: the super-block scale that best fits the
 * chosen codes and levels (u = the block decoded with d = 1). 0 if u is all zero. */
static float refit_scale(const float *x, const float *w, const float *u)
{
    double xu = 0, uu = 0;
    for (int i = 0; i < QK_K; i++) {
        xu += (double)WEIGHT(w, i) * x[i] * u[i];
        uu += (double)WEIGHT(w, i) * u[i] * u[i];
    }
    return uu > 0 ? (float)(xu / uu) : 0;
}

static void quantize_q2_K_block(const float *x, const float *w, block_q2_K *b)
{
    float a[16], m[16], amax = 0, mmax = 0;
    for (int s = 0; s < 16; s++) {
        q2_fit_sub(x + 16 * s, w ? w + 16 * s : NULL, &a[s], &m[s]);
        amax = fmaxf(amax, a[s]);
        mmax = fmaxf(mmax, m[s]);
    }
    float err = encode_q2_K(x, w, a, m, amax / 15, mmax / 15, b);
    /* Refit (d, dmin) by least squares for the chosen codes, x ~ d * u - dmin * v with u the
     * block decoded at d = 1, dmin = 0 and v at d = 0, dmin = -1, then re-encode with them. */
    block_q2_K probe = *b;
    float u[QK_K], v[QK_K];
    probe.d = ellm_f32_to_f16(1.0f);
    probe.dmin = 0;
    ellm_dequantize_q2_K(&probe, u, QK_K);
    probe.d = 0;
    probe.dmin = ellm_f32_to_f16(-1.0f);
    ellm_dequantize_q2_K(&probe, v, QK_K);
    double uu = 0, uv = 0, vv = 0, xu = 0, xv = 0;
    for (int i = 0; i < QK_K; i++) {
        double wi = WEIGHT(w, i);
        uu += wi * u[i] * u[i];
        uv += wi * u[i] * v[i];
        vv += wi * v[i] * v[i];
        xu += wi * x[i] * u[i];
        xv += wi * x[i] * v[i];
    }
    double det = uu * vv - uv * uv;
    if (det > 0) {
        float d2 = (float)((xu * vv - xv * uv) / det), dmin2 = -(float)((xv * uu - xu * uv) / det);
        block_q2_K alt;
        if (d2 > 0 && dmin2 >= 0) {
            float e = encode_q2_K(x, w, a, m, d2, dmin2, &alt);
            if (e < err) {
                err = e;
                *b = alt;
            }
        }
    }
    if (amax / 15 < HALF_COARSE && mmax / 15 < HALF_COARSE) {
        block_q2_K alt;
        for (int c = 0; c < N_COARSE_TOPS; c++) {
            if (coarse_tops[c] >= 15)
                continue;
            float e = encode_q2_K(x, w, a, m, amax / (float)coarse_tops[c],
                                  mmax / (float)coarse_tops[c], &alt);
            if (e < err) {
                err = e;
                *b = alt;
            }
        }
    }
}

void ellm_quantize_q2_K_weighted(const float *x, block_q2_K *b, int64_t n, const float *w)
{
    for (int64_t i = 0; i < n / QK_K; i++)
        quantize_q2_K_block(x + i * QK_K, w ? w + i * QK_K : NULL, &b[i]);
}

void ellm_quantize_q2_K(const float *x, block_q2_K *b, int64_t n)
{
    ellm_quantize_q2_K_weighted(x, b, n, NULL);
}

/* ---------------------------------------------------------------- Q3_K */

/* Levels -4..3 of x under value = s * q. */
static float q3_levels(const float *x, const float *w, int n, float s, int8_t *q)
{
    float err = 0, inv = s != 0 ? 1.0f / s : 0;
    for (int k = 0; k < n; k++) {
        int l = s != 0 ? clampi(round_int(x[k] * inv), -4, 3) : 0;
        q[k] = (int8_t)l;
        float e = s * (float)l - x[k];
        err += WEIGHT(w, k) * e * e;
    }
    return err;
}

/* Best signed scale for one 16-value sub-block: the extreme value is tried near level -4 (the
 * wider side) and near +3, each candidate refined by least squares. */
static float q3_fit_sub(const float *x, const float *w)
{
    float amax = 0, max = 0;
    for (int k = 0; k < 16; k++) {
        if (fabsf(x[k]) > amax) {
            amax = fabsf(x[k]);
            max = x[k];
        }
    }
    if (amax == 0)
        return 0;
    float best = INFINITY, best_s = 0, sxx = 0;
    for (int k = 0; k < 16; k++)
        sxx += WEIGHT(w, k) * x[k] * x[k];
    int8_t q[16];
    for (int side = 0; side < 2; side++) {
        for (int step = -6; step <= 6; step++) {
            float level = side == 0 ? -4.0f + 0.1f * (float)step : 3.0f + 0.1f * (float)step;
            float s = max / level;
            q3_levels(x, w, 16, s, q);
            float sqx = 0, sqq = 0;
            for (int k = 0; k < 16; k++) {
                sqx += WEIGHT(w, k) * (float)q[k] * x[k];
                sqq += WEIGHT(w, k) * (float)(q[k] * q[k]);
            }
            if (sqq <= 0)
                continue;
            /* The least-squares scale for these levels, and its error: sum x^2 - sqx^2 / sqq. */
            s = sqx / sqq;
            float err = sxx - sqx * sqx / sqq;
            if (err < best) {
                best = err;
                best_s = s;
            }
        }
    }
    return best_s;
}

/* Encodes a block given its sub-block scales, the largest (smax) at code -top; returns the
 * squared error. */
static float encode_q3_K(const float *x, const float *w, const float *sub, float d_want,
                         block_q3_K *b)
{
    memset(b, 0, sizeof *b);
    b->d = ellm_f32_to_f16(d_want);
    float d = ellm_f16_to_f32(b->d), total = 0;
    int8_t levels[QK_K];
    for (int s = 0; s < 16; s++) {
        const float *xs = x + 16 * s;
        float f = code_ratio(d != 0 ? sub[s] / d : 0);
        float best = INFINITY;
        int code = 0;
        for (int c = 0; c < 2; c++) {
            int sc = clampi((int)floorf(f) + c, -32, 31);
            int8_t q[16];
            float err = q3_levels(xs, w ? w + 16 * s : NULL, 16, d * (float)sc, q);
            if (c == 0 || err < best) {
                best = err;
                code = sc;
                memcpy(levels + 16 * s, q, 16);
            }
        }
        total += best;
        int u = code + 32; /* 0..63 */
        if (s < 8)
            b->scales[s] |= (uint8_t)(u & 15);
        else
            b->scales[s - 8] |= (uint8_t)((u & 15) << 4);
        b->scales[8 + s % 4] |= (uint8_t)((u >> 4) << (2 * (s / 4)));
    }
    for (int v = 0; v < QK_K; v++) {
        int h = v / 128, j = (v % 128) / 32, l = v % 32;
        int u = levels[v] + 4; /* 0..7 */
        b->qs[32 * h + l] |= (uint8_t)((u & 3) << (2 * j));
        if (u & 4)
            b->hmask[l] |= (uint8_t)(1u << (4 * h + j));
    }
    return total;
}

static void quantize_q3_K_block(const float *x, const float *w, block_q3_K *b)
{
    float sub[16], smax = 0, samax = 0;
    for (int s = 0; s < 16; s++) {
        sub[s] = q3_fit_sub(x + 16 * s, w ? w + 16 * s : NULL);
        if (fabsf(sub[s]) > samax) {
            samax = fabsf(sub[s]);
            smax = sub[s];
        }
    }
    /* The largest sub-block scale maps to code -32, the wider side of the 6-bit signed range. */
    float err = encode_q3_K(x, w, sub, smax / -32, b);
    /* Refit the super-block scale by least squares for the chosen codes and levels. */
    block_q3_K alt = *b;
    float u[QK_K];
    alt.d = ellm_f32_to_f16(1.0f);
    ellm_dequantize_q3_K(&alt, u, QK_K);
    float d2 = refit_scale(x, w, u);
    if (d2 != 0) {
        float e = encode_q3_K(x, w, sub, d2, &alt);
        if (e < err) {
            err = e;
            *b = alt;
        }
    }
    if (samax / 32 < HALF_COARSE) {
        for (int c = 0; c < N_COARSE_TOPS; c++) {
            float e = encode_q3_K(x, w, sub, smax / (float)-coarse_tops[c], &alt);
            if (e < err) {
                err = e;
                *b = alt;
            }
        }
    }
}

void ellm_quantize_q3_K_weighted(const float *x, block_q3_K *b, int64_t n, const float *w)
{
    for (int64_t i = 0; i < n / QK_K; i++)
        quantize_q3_K_block(x + i * QK_K, w ? w + i * QK_K : NULL, &b[i]);
}

void ellm_quantize_q3_K(const float *x, block_q3_K *b, int64_t n)
{
    ellm_quantize_q3_K_weighted(x, b, n, NULL);
}

/* ---------------------------------------------------------------- IQ4_XS */

/* Midpoints between neighbouring table levels: the nearest level's index is the number of
 * midpoints below v (ties go to the lower level). Branch-free, so the search loops stay fast. */
static const float iq4_midpoints[15] = {-115.5f, -93.5f, -74.0f, -57.0f, -42.0f,
                                        -28.5f,  -16.0f, -4.5f,  7.0f,   19.0f,
                                        31.5f,   45.5f,  61.0f,  79.0f,  101.0f};

static int iq4_nearest(float v)
{
    int idx = 0;
    for (int k = 0; k < 15; k++)
        idx += v > iq4_midpoints[k];
    return idx;
}

/* Nearest level indices of x under scale s; returns the squared error, each value's weighted by
 * w (NULL: unweighted). */
static float iq4_levels(const float *x, const float *w, int n, float s, uint8_t *idx)
{
    float err = 0, inv = s != 0 ? 1.0f / s : 0;
    for (int k = 0; k < n; k++) {
        int l = s != 0 ? iq4_nearest(x[k] * inv) : 8;
        idx[k] = (uint8_t)l;
        float e = s * (float)ellm_kvalues_iq4nl[l] - x[k];
        err += WEIGHT(w, k) * e * e;
    }
    return err;
}

/* Best signed scale for one 32-value sub-block: the extreme value is tried near either end of
 * the table (-127 and 113), each candidate refined by least squares. */
static float iq4_fit_sub(const float *x)
{
    float amax = 0, max = 0;
    for (int k = 0; k < 32; k++) {
        if (fabsf(x[k]) > amax) {
            amax = fabsf(x[k]);
            max = x[k];
        }
    }
    if (amax == 0)
        return 0;
    float best = INFINITY, best_s = 0, sxx = 0;
    for (int k = 0; k < 32; k++)
        sxx += x[k] * x[k];
    uint8_t idx[32];
    for (int side = 0; side < 2; side++) {
        for (int step = -5; step <= 5; step++) {
            float level = (side == 0 ? -127.0f : 113.0f) * (1.0f + 0.03f * (float)step);
            float s = max / level;
            iq4_levels(x, NULL, 32, s, idx);
            float skx = 0, skk = 0;
            for (int k = 0; k < 32; k++) {
                float kv = (float)ellm_kvalues_iq4nl[idx[k]];
                skx += kv * x[k];
                skk += kv * kv;
            }
            if (skk <= 0)
                continue;
            /* The least-squares scale for these levels, and its error: sum x^2 - skx^2 / skk. */
            s = skx / skk;
            float err = sxx - skx * skx / skk;
            if (err < best) {
                best = err;
                best_s = s;
            }
        }
    }
    return best_s;
}

/* The importance-weighted sub-block fit: a finer and wider sweep of the extreme value near
 * either end of the table, plus scales that put one of the three costliest values (largest
 * w x^2) exactly on one of the smaller levels (a small weight multiplying a large activation
 * must not round to zero); every candidate refined by the weighted least-squares scale for its
 * levels and scored on the weighted error with levels re-picked under that scale. */
static float iq4_fit_sub_weighted(const float *x, const float *w)
{
    float amax = 0, max = 0;
    int heavy[3] = {-1, -1, -1};
    for (int k = 0; k < 32; k++) {
        if (fabsf(x[k]) > amax) {
            amax = fabsf(x[k]);
            max = x[k];
        }
        float c = w[k] * x[k] * x[k];
        for (int h = 0; h < 3; h++) {
            if (c > 0 && (heavy[h] < 0 || c > w[heavy[h]] * x[heavy[h]] * x[heavy[h]])) {
                for (int g = 2; g > h; g--)
                    heavy[g] = heavy[g - 1];
                heavy[h] = k;
                break;
            }
        }
    }
    if (amax == 0)
        return 0;
    static const float small_levels[7] = {-35, -22, -10, 13, 25, 38, 53};
    float cand[34 + 21], best_s = iq4_fit_sub(x);
    int n_cand = 0;
    for (int side = 0; side < 2; side++)
        for (int step = -8; step <= 8; step++)
            cand[n_cand++] = max / ((side == 0 ? -127.0f : 113.0f) * (1.0f + 0.02f * (float)step));
    for (int h = 0; h < 3 && heavy[h] >= 0; h++)
        for (int k = 0; k < 7; k++)
            cand[n_cand++] = x[heavy[h]] / small_levels[k];
    uint8_t idx[32], previous[32];
    float best = iq4_levels(x, w, 32, best_s, idx);
    for (int c = 0; c < n_cand; c++) {
        float err = iq4_levels(x, w, 32, cand[c], idx);
        if (err < best) {
            best = err;
            best_s = cand[c];
        }
        /* The refined scale depends on the levels alone: neighbouring candidates that pick the
         * same levels as the one before would repeat its refinement. */
        if (c > 0 && memcmp(idx, previous, sizeof idx) == 0)
            continue;
        memcpy(previous, idx, sizeof idx);
        float skx = 0, skk = 0;
        for (int k = 0; k < 32; k++) {
            float kv = (float)ellm_kvalues_iq4nl[idx[k]];
            skx += w[k] * kv * x[k];
            skk += w[k] * kv * kv;
        }
        float refined = skk > 0 ? skx / skk : cand[c];
        err = iq4_levels(x, w, 32, refined, idx);
        if (err < best) {
            best = err;
            best_s = refined;
        }
    }
    return best_s;
}

/* Encodes a block given its sub-block scales, the largest (smax) at code -top; returns the
 * squared error (weighted by w unless NULL). */
static float encode_iq4_xs(const float *x, const float *w, const float *sub, float d_want,
                           block_iq4_xs *b)
{
    memset(b, 0, sizeof *b);
    b->d = ellm_f32_to_f16(d_want);
    float d = ellm_f16_to_f32(b->d), total = 0;
    /* Weighted: the codes on either side of the two nearest too, as a heavy value's level can
     * sit better under a code one further off. */
    int lo = w ? -1 : 0, hi = w ? 2 : 1;
    for (int s = 0; s < 8; s++) {
        const float *xs = x + 32 * s;
        float f = code_ratio(d != 0 ? sub[s] / d : 0);
        float best = INFINITY;
        int code = 0;
        uint8_t idx[32], keep[32] = {0};
        for (int c = lo; c <= hi; c++) {
            int ls = clampi((int)floorf(f) + c, -32, 31);
            float err = iq4_levels(xs, w ? w + 32 * s : NULL, 32, d * (float)ls, idx);
            if (c == lo || err < best) {
                best = err;
                code = ls;
                memcpy(keep, idx, 32);
            }
        }
        total += best;
        int u = code + 32;
        b->scales_l[s / 2] |= (uint8_t)((u & 15) << (4 * (s % 2)));
        b->scales_h |= (uint16_t)((u >> 4) << (2 * s));
        for (int j = 0; j < 16; j++)
            b->qs[16 * s + j] = (uint8_t)(keep[j] | keep[j + 16] << 4);
    }
    return total;
}

static void quantize_iq4_xs_block(const float *x, const float *w, block_iq4_xs *b)
{
    float sub[8], smax = 0, samax = 0;
    for (int s = 0; s < 8; s++) {
        sub[s] = w ? iq4_fit_sub_weighted(x + 32 * s, w + 32 * s) : iq4_fit_sub(x + 32 * s);
        if (fabsf(sub[s]) > samax) {
            samax = fabsf(sub[s]);
            smax = sub[s];
        }
    }
    float err = encode_iq4_xs(x, w, sub, smax / -32, b);
    /* Refit the super-block scale by least squares for the chosen codes and levels. */
    block_iq4_xs alt = *b;
    float u[QK_K];
    alt.d = ellm_f32_to_f16(1.0f);
    ellm_dequantize_iq4_xs(&alt, u, QK_K);
    float d2 = refit_scale(x, w, u);
    if (d2 != 0) {
        float e = encode_iq4_xs(x, w, sub, d2, &alt);
        if (e < err) {
            err = e;
            *b = alt;
        }
    }
    if (samax / 32 < HALF_COARSE) {
        for (int c = 0; c < N_COARSE_TOPS; c++) {
            float e = encode_iq4_xs(x, w, sub, smax / (float)-coarse_tops[c], &alt);
            if (e < err) {
                err = e;
                *b = alt;
            }
        }
    }
}

void ellm_quantize_iq4_xs_weighted(const float *x, block_iq4_xs *b, int64_t n, const float *w)
{
    for (int64_t i = 0; i < n / QK_K; i++)
        quantize_iq4_xs_block(x + i * QK_K, w ? w + i * QK_K : NULL, &b[i]);
}

void ellm_quantize_iq4_xs(const float *x, block_iq4_xs *b, int64_t n)
{
    ellm_quantize_iq4_xs_weighted(x, b, n, NULL);
}

/* The IQ4_XS sub-block search, shared with IQ4_NL (reference_legacy.c), whose 32-value blocks
 * have the same levels with one half-precision scale each. */
float ellm_iq4nl_fit_scale(const float *x) { return iq4_fit_sub(x); }

float ellm_iq4nl_levels(const float *x, int n, float s, uint8_t *idx)
{
    return iq4_levels(x, NULL, n, s, idx);
}
