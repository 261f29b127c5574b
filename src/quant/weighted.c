/* Importance-weighted quantization (the 32-value block formats here; the K-quants' weighted
 * searches sit with their plain ones in reference_kquants*.c): each block's scale (and
 * minimum) is searched to minimise sum_j w_j (x_j - q_j)^2, where w_j says how much an error in
 * column j costs the layer's output (the mean square of the activations it multiplies). The
 * blocks are the standard ones; only the choice of scale and levels differs.
 *
 * Every search also scores the plain quantizer's own block, so a weighted block is never worse
 * than plain rounding under the weighted error. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant/kquants.h"
#include "quant/quant.h"
#include "quant/reference_kquants_low.h"
#include "quant/reference_legacy.h"

#define BLOCK 32
#define DESCENT_SWEEPS 4

static float largest_magnitude(const float *x)
{
    float amax = 0, max = 0;
    for (int j = 0; j < BLOCK; j++)
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    return max;
}

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Nearest integer of v, halves up as the plain quantizers round, for |v| up to 64 (larger values
 * are clamped first, NaN to -64): truncating a positive number is floor. The clamps are
 * comparisons, not fminf/fmaxf: on baseline x86-64 those are libm calls (NaN rules), and they
 * took 12 % of an --awq alpha search; these give the same value for every v, NaN included. */
static int nearest(float v)
{
    v = v > -64.0f ? v : -64.0f;
    v = v < 64.0f ? v : 64.0f;
    return (int)(v + 64.5f) - 64;
}

/* ---------------------------------------------------------------- symmetric: Q4_0, Q5_0 */

/* Levels lo..hi (stored as level - lo); the block value is d * level. Returns the weighted
 * error of scale d (rounded to half first) with nearest levels, which go to q. */
static float symmetric_levels(const float *x, const float *w, float d, int lo, int hi,
                              uint16_t *d_half, int8_t *q)
{
    *d_half = ellm_f32_to_f16(d);
    float ds = ellm_f16_to_f32(*d_half), inv = ds != 0 ? 1.0f / ds : 0, e = 0;
    for (int j = 0; j < BLOCK; j++) {
        q[j] = (int8_t)clampi(nearest(x[j] * inv), lo, hi);
        float r = x[j] - ds * (float)q[j];
        e += w[j] * r * r;
    }
    return e;
}

/* The values whose error costs most (largest w_j x_j^2), up to N_HEAVY of them: besides scales
 * set by the extreme value, the search tries scales that put one of these exactly on a level,
 * which is what keeps a small weight that multiplies a large activation from rounding to 0. */
#define N_HEAVY 3

static int heaviest(const float *x, const float *w, int *which)
{
    int n = 0;
    for (int j = 0; j < BLOCK; j++) {
        float c = w[j] * x[j] * x[j];
        if (c <= 0)
            continue;
        int k = n < N_HEAVY ? n++ : N_HEAVY;
        if (k == N_HEAVY &&
            c <= w[which[N_HEAVY - 1]] * x[which[N_HEAVY - 1]] * x[which[N_HEAVY - 1]])
            continue;
        if (k == N_HEAVY)
            k = N_HEAVY - 1;
        while (k > 0 && w[which[k - 1]] * x[which[k - 1]] * x[which[k - 1]] < c) {
            which[k] = which[k - 1];
            k--;
        }
        which[k] = j;
    }
    return n;
}

/* One value's level moving one step away from 0 as 1/d grows past t. */
typedef struct level_step {
    float t;
    int j;
} level_step;

/* Every value's steps in order of t, ties in value order: an LSD radix sort on the bits of t
 * (positive floats order as their bit patterns), which is stable and branch-free; a general
 * sort with a comparison callback was most of the --imatrix rounding's time. Returns the count. */
static int ordered_steps(const float *x, const float *w, int lo, int hi, int sign,
                         level_step *steps)
{
    level_step buf[BLOCK * 16];
    uint32_t key[BLOCK * 16], key_buf[BLOCK * 16];
    int n = 0;
    for (int j = 0; j < BLOCK; j++) {
        if (!(fabsf(x[j]) > 0) || !(w[j] > 0)) /* NaN too: its level never moves */
            continue;
        /* Levels grow toward hi for values of the sign of t, toward lo otherwise. */
        int top = (x[j] > 0) == (sign > 0) ? hi : -lo;
        for (int k = 0; k < top; k++) {
            steps[n] = (level_step){((float)k + 0.5f) / fabsf(x[j]), j};
            memcpy(&key[n], &steps[n].t, sizeof key[n]);
            n++;
        }
    }
    level_step *src = steps, *dst = buf;
    uint32_t *ksrc = key, *kdst = key_buf;
    for (int shift = 0; shift < 32; shift += 8) {
        int count[257] = {0};
        for (int i = 0; i < n; i++)
            count[(ksrc[i] >> shift & 255) + 1]++;
        for (int d = 0; d < 256; d++)
            count[d + 1] += count[d];
        for (int i = 0; i < n; i++) {
            int at = count[ksrc[i] >> shift & 255]++;
            dst[at] = src[i];
            kdst[at] = ksrc[i];
        }
        level_step *ts = src;
        src = dst;
        dst = ts;
        uint32_t *tk = ksrc;
        ksrc = kdst;
        kdst = tk;
    }
    /* Four passes: the sorted steps are back in the caller's array. */
    return n;
}

/* The exact optimum of the weighted error over the scale. Under an inverse scale t each value
 * takes the nearest level, so the levels change only where some x_j t crosses a half level; on
 * each piece between those points the best scale is the least-squares one for its levels, with
 * error sum w x^2 - (sum w q x)^2 / sum w q^2. The points of either sign of t are walked in order
 * with those two sums kept up to date, and the best piece's scale is scored as stored (half
 * precision, nearest levels again); kept when it beats *best. */
static void exact_symmetric(const float *x, const float *w, int lo, int hi, float *best,
                            uint16_t *d_out, int8_t *q_out)
{
    level_step steps[BLOCK * 16];
    for (int sign = -1; sign <= 1; sign += 2) {
        int n = ordered_steps(x, w, lo, hi, sign, steps);
        double sqx = 0, sqq = 0, best_gain = 0;
        float best_d = 0;
        int magnitude[BLOCK] = {0};
        for (int i = 0; i < n; i++) {
            int j = steps[i].j;
            /* |level| goes from m to m + 1, its sign that of x_j * sign. */
            double m = magnitude[j]++;
            double dir = (x[j] > 0) == (sign > 0) ? 1 : -1;
            sqx += w[j] * dir * x[j];
            sqq += w[j] * ((m + 1) * (m + 1) - m * m);
            if (i + 1 < n && steps[i + 1].t == steps[i].t)
                continue;
            if (sqq > 0 && sqx * sqx / sqq > best_gain) {
                best_gain = sqx * sqx / sqq;
                best_d = (float)(sqx / sqq);
            }
        }
        if (best_gain > 0) {
            int8_t q[BLOCK];
            uint16_t dh;
            float e = symmetric_levels(x, w, best_d, lo, hi, &dh, q);
            if (e < *best) {
                *best = e;
                *d_out = dh;
                memcpy(q_out, q, sizeof q);
            }
        }
    }
}

/* Candidate scales put the extreme value at levels around either end of the range, or one of the
 * heaviest values on a level; each is refined by weighted least squares for its levels. */
static void search_symmetric(const float *x, const float *w, int lo, int hi, float plain_d,
                             uint16_t *d_out, int8_t *q_out)
{
    int8_t q[BLOCK];
    uint16_t dh;
    float best = symmetric_levels(x, w, plain_d, lo, hi, d_out, q_out);
    float max = largest_magnitude(x);
    if (max == 0)
        return;
    float cand[64];
    int n_cand = 0, heavy[N_HEAVY];
    for (int side = 0; side < 2; side++)
        for (int step = -8; step <= 8; step++)
            cand[n_cand++] = max /
                             ((side == 0 ? (float)lo : (float)hi) * (1.0f + 0.02f * (float)step));
    int n_heavy = heaviest(x, w, heavy);
    for (int h = 0; h < n_heavy; h++)
        for (int level = 1; level <= 8 && n_cand < 64; level++)
            cand[n_cand++] = x[heavy[h]] / (float)(x[heavy[h]] > 0 ? level : -level);
    for (int ci = 0; ci < n_cand; ci++) {
        float d = cand[ci];
        symmetric_levels(x, w, d, lo, hi, &dh, q);
        float sqx = 0, sqq = 0;
        for (int j = 0; j < BLOCK; j++) {
            sqx += w[j] * (float)q[j] * x[j];
            sqq += w[j] * (float)q[j] * (float)q[j];
        }
        float cands[2] = {d, sqq > 0 ? sqx / sqq : d};
        for (int c = 0; c < 2; c++) {
            float e = symmetric_levels(x, w, cands[c], lo, hi, &dh, q);
            if (e < best) {
                best = e;
                *d_out = dh;
                memcpy(q_out, q, sizeof q);
            }
        }
    }
    exact_symmetric(x, w, lo, hi, &best, d_out, q_out);
}

static void weighted_q4_0(const float *x, block_q4_0 *b, int64_t n, const float *w)
{
    for (int64_t i = 0; i < n / BLOCK; i++, x += BLOCK, w += BLOCK) {
        int8_t q[BLOCK];
        search_symmetric(x, w, -8, 7, largest_magnitude(x) / -8.0f, &b[i].d, q);
        for (int j = 0; j < BLOCK / 2; j++)
            b[i].qs[j] = (uint8_t)((q[j] + 8) | (q[j + BLOCK / 2] + 8) << 4);
    }
}

static void weighted_q5_0(const float *x, block_q5_0 *b, int64_t n, const float *w)
{
    for (int64_t i = 0; i < n / BLOCK; i++, x += BLOCK, w += BLOCK) {
        int8_t q[BLOCK];
        search_symmetric(x, w, -16, 15, largest_magnitude(x) / -16.0f, &b[i].d, q);
        uint8_t u[BLOCK];
        for (int j = 0; j < BLOCK; j++)
            u[j] = (uint8_t)(q[j] + 16);
        ellm_pack_q5(u, b[i].qs, b[i].qh);
    }
}

/* ---------------------------------------------------------------- with minimum: Q4_1, Q5_1 */

/* Block value d * q + m, q in 0..top, both rounded to half first; nearest levels into q. */
static float affine_levels(const float *x, const float *w, float d, float m, int top,
                           uint16_t *d_half, uint16_t *m_half, uint8_t *q)
{
    *d_half = ellm_f32_to_f16(d);
    *m_half = ellm_f32_to_f16(m);
    float ds = ellm_f16_to_f32(*d_half), ms = ellm_f16_to_f32(*m_half), e = 0;
    float inv = ds != 0 ? 1.0f / ds : 0;
    for (int j = 0; j < BLOCK; j++) {
        q[j] = (uint8_t)clampi(nearest((x[j] - ms) * inv), 0, top);
        float r = x[j] - ds * (float)q[j] - ms;
        e += w[j] * r * r;
    }
    return e;
}

/* Candidates shrink the min..max range from either end; each is refined by the weighted
 * least-squares (d, m) for its levels. */
static void search_affine(const float *x, const float *w, int top, uint16_t *d_out, uint16_t *m_out,
                          uint8_t *q_out)
{
    float lo = x[0], hi = x[0];
    for (int j = 1; j < BLOCK; j++) {
        lo = fminf(lo, x[j]);
        hi = fmaxf(hi, x[j]);
    }
    uint8_t q[BLOCK];
    uint16_t dh, mh;
    float best = affine_levels(x, w, (hi - lo) / (float)top, lo, top, d_out, m_out, q_out);
    if (hi == lo)
        return;
    float range = hi - lo;
    for (int a = 0; a <= 4; a++) {
        for (int c = 0; c <= 4; c++) {
            float l = lo + range * 0.03f * (float)a, h = hi - range * 0.03f * (float)c;
            affine_levels(x, w, (h - l) / (float)top, l, top, &dh, &mh, q);
            double sw = 0, sq = 0, sqq = 0, sx = 0, sqx = 0;
            for (int j = 0; j < BLOCK; j++) {
                sw += w[j];
                sq += w[j] * q[j];
                sqq += (double)w[j] * q[j] * q[j];
                sx += w[j] * x[j];
                sqx += (double)w[j] * q[j] * x[j];
            }
            double det = sw * sqq - sq * sq;
            float cd[2] = {(h - l) / (float)top, det > 0 ? (float)((sw * sqx - sq * sx) / det) : 0};
            float cm[2] = {l, det > 0 ? (float)((sqq * sx - sq * sqx) / det) : l};
            for (int k = 0; k < (det > 0 && cd[1] > 0 ? 2 : 1); k++) {
                float e = affine_levels(x, w, cd[k], cm[k], top, &dh, &mh, q);
                if (e < best) {
                    best = e;
                    *d_out = dh;
                    *m_out = mh;
                    memcpy(q_out, q, sizeof q);
                }
            }
        }
    }
}

static void weighted_q4_1(const float *x, block_q4_1 *b, int64_t n, const float *w)
{
    for (int64_t i = 0; i < n / BLOCK; i++, x += BLOCK, w += BLOCK) {
        uint8_t q[BLOCK];
        search_affine(x, w, 15, &b[i].d, &b[i].m, q);
        for (int j = 0; j < BLOCK / 2; j++)
            b[i].qs[j] = (uint8_t)(q[j] | q[j + BLOCK / 2] << 4);
    }
}

static void weighted_q5_1(const float *x, block_q5_1 *b, int64_t n, const float *w)
{
    for (int64_t i = 0; i < n / BLOCK; i++, x += BLOCK, w += BLOCK) {
        uint8_t q[BLOCK];
        search_affine(x, w, 31, &b[i].d, &b[i].m, q);
        ellm_pack_q5(q, b[i].qs, b[i].qh);
    }
}

/* ---------------------------------------------------------------- IQ4_NL */

static float iq4nl_error(const float *x, const float *w, float s, uint16_t *s_half, uint8_t *idx)
{
    *s_half = ellm_f32_to_f16(s);
    float sh = ellm_f16_to_f32(*s_half), e = 0;
    ellm_iq4nl_levels(x, BLOCK, sh, idx);
    for (int j = 0; j < BLOCK; j++) {
        float r = x[j] - sh * (float)ellm_kvalues_iq4nl[idx[j]];
        e += w[j] * r * r;
    }
    return e;
}

static void weighted_iq4_nl(const float *x, block_iq4_nl *b, int64_t n, const float *w)
{
    for (int64_t i = 0; i < n / BLOCK; i++, x += BLOCK, w += BLOCK) {
        uint8_t idx[BLOCK], keep[BLOCK];
        uint16_t sh;
        float best = iq4nl_error(x, w, ellm_iq4nl_fit_scale(x), &b[i].d, keep);
        float max = largest_magnitude(x), cand[64];
        int n_cand = 0, heavy[N_HEAVY];
        for (int side = 0; max != 0 && side < 2; side++)
            for (int step = -8; step <= 8; step++)
                cand[n_cand++] = max /
                                 ((side == 0 ? -127.0f : 113.0f) * (1.0f + 0.02f * (float)step));
        /* The heaviest values on the smaller levels of either sign. */
        static const int small_levels[7] = {-35, -22, -10, 13, 25, 38, 53};
        int n_heavy = heaviest(x, w, heavy);
        for (int h = 0; max != 0 && h < n_heavy; h++)
            for (int k = 0; k < 7; k++)
                cand[n_cand++] = x[heavy[h]] / (float)small_levels[k];
        for (int ci = 0; ci < n_cand; ci++) {
            float s = cand[ci];
            iq4nl_error(x, w, s, &sh, idx);
            float skx = 0, skk = 0;
            for (int j = 0; j < BLOCK; j++) {
                float k = (float)ellm_kvalues_iq4nl[idx[j]];
                skx += w[j] * k * x[j];
                skk += w[j] * k * k;
            }
            float cands[2] = {s, skk > 0 ? skx / skk : s};
            for (int c = 0; c < 2; c++) {
                float e = iq4nl_error(x, w, cands[c], &sh, idx);
                if (e < best) {
                    best = e;
                    b[i].d = sh;
                    memcpy(keep, idx, sizeof idx);
                }
            }
        }
        for (int j = 0; j < BLOCK / 2; j++)
            b[i].qs[j] = (uint8_t)(keep[j] | keep[j + BLOCK / 2] << 4);
    }
}

/* ---------------------------------------------------------------- dispatch */

bool ellm_type_has_weighted_search(ellm_type type)
{
    return type == ELLM_TYPE_Q4_0 || type == ELLM_TYPE_Q4_1 || type == ELLM_TYPE_Q5_0 ||
           type == ELLM_TYPE_Q5_1 || type == ELLM_TYPE_IQ4_NL || type == ELLM_TYPE_Q4_K ||
           type == ELLM_TYPE_Q5_K || type == ELLM_TYPE_Q6_K || type == ELLM_TYPE_Q2_K ||
           type == ELLM_TYPE_Q3_K || type == ELLM_TYPE_IQ4_XS;
}

size_t ellm_quantize_row_weighted(ellm_type type, const float *x, void *dst, int64_t n,
                                  const float *w)
{
    if (!w || !ellm_type_has_weighted_search(type))
        return ellm_quantize_row(type, x, dst, n);
    switch (type) {
    case ELLM_TYPE_Q4_0:
        weighted_q4_0(x, dst, n, w);
        return (size_t)(n / BLOCK) * sizeof(block_q4_0);
    case ELLM_TYPE_Q4_1:
        weighted_q4_1(x, dst, n, w);
        return (size_t)(n / BLOCK) * sizeof(block_q4_1);
    case ELLM_TYPE_Q5_0:
        weighted_q5_0(x, dst, n, w);
        return (size_t)(n / BLOCK) * sizeof(block_q5_0);
    case ELLM_TYPE_Q5_1:
        weighted_q5_1(x, dst, n, w);
        return (size_t)(n / BLOCK) * sizeof(block_q5_1);
    case ELLM_TYPE_Q2_K:
        ellm_quantize_q2_K_weighted(x, dst, n, w);
        return (size_t)(n / QK_K) * sizeof(block_q2_K);
    case ELLM_TYPE_Q3_K:
        ellm_quantize_q3_K_weighted(x, dst, n, w);
        return (size_t)(n / QK_K) * sizeof(block_q3_K);
    case ELLM_TYPE_Q4_K:
        ellm_quantize_q4_K_weighted(x, dst, n, w);
        return (size_t)(n / QK_K) * sizeof(block_q4_K);
    case ELLM_TYPE_Q5_K:
        ellm_quantize_q5_K_weighted(x, dst, n, w);
        return (size_t)(n / QK_K) * sizeof(block_q5_K);
    case ELLM_TYPE_Q6_K:
        ellm_quantize_q6_K_weighted(x, dst, n, w);
        return (size_t)(n / QK_K) * sizeof(block_q6_K);
    case ELLM_TYPE_IQ4_XS:
        ellm_quantize_iq4_xs_weighted(x, dst, n, w);
        return (size_t)(n / QK_K) * sizeof(block_iq4_xs);
    default: weighted_iq4_nl(x, dst, n, w); return (size_t)(n / BLOCK) * sizeof(block_iq4_nl);
    }
}

/* The levels a 32-value block can take under its stored scale (and minimum): n_grid values. */
static int block_grid(ellm_type type, const void *block, float *grid)
{
    switch (type) {
    case ELLM_TYPE_Q4_0:
    case ELLM_TYPE_Q5_0: {
        float ds = ellm_f16_to_f32(type == ELLM_TYPE_Q4_0 ? ((const block_q4_0 *)block)->d
                                                          : ((const block_q5_0 *)block)->d);
        int n = type == ELLM_TYPE_Q4_0 ? 16 : 32;
        for (int i = 0; i < n; i++)
            grid[i] = ds * (float)(i - n / 2);
        return n;
    }
    case ELLM_TYPE_Q4_1:
    case ELLM_TYPE_Q5_1: {
        uint16_t dh = type == ELLM_TYPE_Q4_1 ? ((const block_q4_1 *)block)->d
                                             : ((const block_q5_1 *)block)->d;
        uint16_t mh = type == ELLM_TYPE_Q4_1 ? ((const block_q4_1 *)block)->m
                                             : ((const block_q5_1 *)block)->m;
        float ds = ellm_f16_to_f32(dh), ms = ellm_f16_to_f32(mh);
        int n = type == ELLM_TYPE_Q4_1 ? 16 : 32;
        for (int i = 0; i < n; i++)
            grid[i] = ds * (float)i + ms;
        return n;
    }
    default: {
        float ds = ellm_f16_to_f32(((const block_iq4_nl *)block)->d);
        for (int i = 0; i < 16; i++)
            grid[i] = ds * (float)ellm_kvalues_iq4nl[i];
        return 16;
    }
    }
}

/* Stores level indices (0..n_grid-1, as block_grid numbers them) into the block. */
static void pack_levels(ellm_type type, void *block, const uint8_t *level)
{
    uint8_t *qs = NULL;
    switch (type) {
    case ELLM_TYPE_Q5_0:
        ellm_pack_q5(level, ((block_q5_0 *)block)->qs, ((block_q5_0 *)block)->qh);
        return;
    case ELLM_TYPE_Q5_1:
        ellm_pack_q5(level, ((block_q5_1 *)block)->qs, ((block_q5_1 *)block)->qh);
        return;
    case ELLM_TYPE_Q4_0: qs = ((block_q4_0 *)block)->qs; break;
    case ELLM_TYPE_Q4_1: qs = ((block_q4_1 *)block)->qs; break;
    default: qs = ((block_iq4_nl *)block)->qs; break;
    }
    for (int j = 0; j < BLOCK / 2; j++)
        qs[j] = (uint8_t)(level[j] | level[j + BLOCK / 2] << 4);
}

/* The output error of a row is sum_j e_j x_j over the activations x; its expected square is
 * e^T E[x x^T] e, whose diagonal the importances are. The objective here keeps more of that
 * matrix: E[x x^T] ~ D + U U^T, U holding a few directions (the mean activation, whose errors add
 * up into an output bias, and the covariance's leading eigenvectors scaled by the root of their
 * eigenvalues) and D the per-column second moments U leaves (floored at a thousandth of them).
 * The row is rounded in order with GPTQ's error feedback for that Hessian, which needs no n x n
 * matrix: with b = U_C^T e_C the projection of the errors of the values C rounded so far, the
 * least-squares move of the values R still to round is -D_R^-1 U_R (I + M_R)^-1 b, M_R =
 * U_R^T D_R^-1 U_R (Woodbury). M_R depends on the matrix's statistics only, so prepare_gains
 * computes once per matrix, for every value j, gain_j = (I + M_Rj)^-1 u_j / d_j (R_j the values
 * from j on) and at every 32-value block start the r x r matrix (I + M_R)^-1; a row then costs
 * O(n r). Each block's scale (and minimum) is the weighted search's on its values moved by the
 * feedback of the block start (weighted by search_w: the mean squares, the Hessian's diagonal,
 * as GPTQ weighs its block searches; D alone would stop protecting a column whose variance U
 * explains, which on planted outlier channels is exactly the costly one); then, for the 32-value types, its values take one at a time the
 * level nearest their own moved value (a level that is not the nearest to the weight itself,
 * which a diagonal objective never picks). With the directions, the searched scale and multiples
 * of it are scored on the whole objective first (pick_block_scale), and the row ends with
 * single-value moves to neighbouring levels (descend_levels). The 256-value K-quant and IQ4_XS
 * super-blocks keep their searches' levels: the feedback moves whole super-blocks. */

/* Backwards over the values, (I + M)^-1 grows by Sherman-Morrison one value at a time. */
static void prepare_gains(int64_t n, int r, const float *u, const float *d, float *gain,
                          float *block)
{
    double q[ELLM_OBJECTIVE_MAX_RANK * ELLM_OBJECTIVE_MAX_RANK] = {0};
    for (int i = 0; i < r; i++)
        q[i * r + i] = 1;
    for (int64_t j = n - 1; j >= 0; j--) {
        const float *uj = u + j * r;
        double t[ELLM_OBJECTIVE_MAX_RANK], s = 0;
        for (int i = 0; i < r; i++) {
            t[i] = 0;
            for (int k = 0; k < r; k++)
                t[i] += q[i * r + k] * uj[k];
            s += t[i] * uj[i];
        }
        double den = d[j] + s;
        for (int i = 0; i < r; i++) {
            for (int k = 0; k < r; k++)
                q[i * r + k] -= t[i] * t[k] / den;
            gain[j * r + i] = (float)(t[i] / den);
        }
        if (j % BLOCK == 0)
            for (int i = 0; i < r * r; i++)
                block[(j / BLOCK) * r * r + i] = (float)q[i];
    }
}

static int feedback_span(ellm_type type)
{
    switch (type) {
    case ELLM_TYPE_Q4_0:
    case ELLM_TYPE_Q4_1:
    case ELLM_TYPE_Q5_0:
    case ELLM_TYPE_Q5_1:
    case ELLM_TYPE_IQ4_NL: return BLOCK;
    default: return ellm_type_has_weighted_search(type) ? QK_K : 0;
    }
}

/* The 32 values of a block (x, and d, u, gain from the same column) in order, each to the level
 * of the block's grid nearest its value moved by the feedback of b, the projection U^T e of the
 * errors so far, which is updated. Returns sum d_j e_j^2 over the block. */
static double levels_in_order(ellm_type type, const float *x, uint8_t *out, int r, const float *d,
                              const float *u, const float *gain, double *b, bool bisect)
{
    float grid[32];
    int n_grid = block_grid(type, out, grid);
    uint8_t level[BLOCK];
    double cost = 0;
    bool up = grid[n_grid - 1] > grid[0];
    for (int j = 0; j < BLOCK; j++) {
        double move = 0;
        for (int i = 0; i < r; i++)
            move += (double)gain[j * r + i] * b[i];
        float y = x[j] - (float)move;
        int best = 0;
        if (bisect && grid[n_grid - 1] != grid[0]) {
            /* The grid is monotone: the nearest level is one of the two around y. */
            int lo = 0, hi = n_grid - 1;
            while (hi - lo > 1) {
                int mid = (lo + hi) / 2;
                if ((grid[mid] <= y) == up)
                    lo = mid;
                else
                    hi = mid;
            }
            best = fabsf(grid[hi] - y) < fabsf(grid[lo] - y) ? hi : lo;
        } else {
            for (int i = 1; i < n_grid; i++)
                if (fabsf(grid[i] - y) < fabsf(grid[best] - y))
                    best = i;
        }
        level[j] = (uint8_t)best;
        double e = (double)grid[best] - x[j];
        cost += d[j] * e * e;
        for (int i = 0; i < r; i++)
            b[i] += (double)u[j * r + i] * e;
    }
    pack_levels(type, out, level);
    return cost;
}

#define SCALE_STEPS 10     /* multiples of the searched scale pick_block_scale tries either side */
#define SCALE_STRIDE 0.02f /* their spacing, relative to it */

/* The weighted search scores a block's scale on its values as the feedback has moved them so
 * far, but rounding the block moves its later values again and leaves errors to the rest of the
 * row. So the scale it found and multiples of it are scored on the whole objective: the block's
 * own sum d_j e_j^2 with its levels rounded in order, plus the least the rest of the row can
 * then make of b' = b + U_B^T e_B, b'^T (I + M_R)^-1 b' (next: that matrix at the next block,
 * NULL for a row's last block, where it is I). The best scale stays in out. */
static void pick_block_scale(ellm_type type, const float *x, uint8_t *out, int r, const float *d,
                             const float *u, const float *gain, const double *b, const float *next)
{
    const size_t bb = ellm_type_traits_of(type)->block_bytes;
    uint8_t trial[sizeof(block_q5_1)];
    uint16_t d0, best_d;
    memcpy(&d0, out, sizeof d0);
    best_d = d0;
    double best = INFINITY;
    float s0 = ellm_f16_to_f32(d0);
    for (int step = -SCALE_STEPS; step <= SCALE_STEPS; step++) {
        uint16_t dh = ellm_f32_to_f16(s0 * (1.0f + SCALE_STRIDE * (float)step));
        if (step != 0 && dh == d0)
            continue;
        memcpy(trial, out, bb);
        memcpy(trial, &dh, sizeof dh);
        double bt[ELLM_OBJECTIVE_MAX_RANK];
        memcpy(bt, b, (size_t)r * sizeof *bt);
        double cost = levels_in_order(type, x, trial, r, d, u, gain, bt, true);
        for (int i = 0; i < r; i++) {
            double qb = bt[i];
            if (next) {
                qb = 0;
                for (int k = 0; k < r; k++)
                    qb += next[i * r + k] * bt[k];
            }
            cost += bt[i] * qb;
        }
        if (cost < best) {
            best = cost;
            best_d = dh;
        }
    }
    memcpy(out, &best_d, sizeof best_d);
}

/* Rounds x in order under the prepared objective (see above); target holds n floats. With
 * keep_scales the 32-value blocks keep the scales out holds and only their levels are chosen. */
static void round_in_order(ellm_type type, const float *x, uint8_t *out, int64_t n, int r,
                           const float *search_w, const float *d, const float *u, const float *gain,
                           const float *block, float *target, bool keep_scales, bool pick_scales)
{
    const int span = feedback_span(type);
    const ellm_type_traits *tr = ellm_type_traits_of(type);
    const size_t span_bytes = tr->block_bytes * (size_t)span / tr->block_size;
    double b[ELLM_OBJECTIVE_MAX_RANK] = {0};
    for (int64_t o = 0; o + span <= n; o += span, out += span_bytes) {
        const float *p = block + (o / BLOCK) * r * r;
        if (keep_scales && span == BLOCK)
            goto levels;
        double c[ELLM_OBJECTIVE_MAX_RANK];
        for (int i = 0; i < r; i++) {
            c[i] = 0;
            for (int k = 0; k < r; k++)
                c[i] += p[i * r + k] * b[k];
        }
        for (int64_t j = o; j < o + span; j++) {
            double move = 0;
            for (int i = 0; i < r; i++)
                move += u[j * r + i] * c[i];
            target[j] = x[j] - (float)(move / d[j]);
        }
        ellm_quantize_row_weighted(type, target + o, out, span, search_w + o);
        if (span == BLOCK && pick_scales)
            pick_block_scale(type, x + o, out, r, d + o, u + o * r, gain + o * r, b,
                             o + span < n ? p + r * r : NULL);
        if (span == QK_K) {
            /* The super-block as stored: its errors feed the rest of the row. */
            ellm_dequantize_row(type, out, target + o, span);
            for (int64_t j = o; j < o + span; j++)
                for (int i = 0; i < r; i++)
                    b[i] += (double)u[j * r + i] * (target[j] - x[j]);
            continue;
        }
    levels:
        levels_in_order(type, x + o, out, r, d + o, u + o * r, gain + o * r, b, false);
    }
}

/* D: what of the mean squares w the directions u leave, floored at a thousandth of w (and
 * above 0 for columns never active). */
static void leftover_diagonal(int64_t n, int r, const float *w, const float *u, float *d)
{
    double mean = 0;
    for (int64_t j = 0; j < n; j++)
        mean += w[j];
    float tiny = mean > 0 ? (float)(1e-6 * mean / (double)n) : 1.0f;
    for (int64_t j = 0; j < n; j++) {
        float rest = w[j];
        for (int i = 0; i < r; i++)
            rest -= u[j * r + i] * u[j * r + i];
        d[j] = fmaxf(fmaxf(rest, 1e-3f * w[j]), tiny);
    }
}

size_t ellm_quantize_row_weighted_mean(ellm_type type, const float *x, void *dst, int64_t n,
                                       const float *w, const float *mu, float *scratch)
{
    if (!w || !mu || feedback_span(type) != BLOCK)
        return ellm_quantize_row_weighted(type, x, dst, n, w);
    float *d = scratch, *target = scratch + n, *gain = scratch + 2 * n, *block = scratch + 3 * n;
    leftover_diagonal(n, 1, w, mu, d);
    prepare_gains(n, 1, mu, d, gain, block);
    round_in_order(type, x, dst, n, 1, d, d, mu, gain, block, target, false, false);
    return (size_t)(n / BLOCK) * ellm_type_traits_of(type)->block_bytes;
}

bool ellm_row_objective_init(ellm_row_objective *o, int64_t n, const float *w, const float *mu,
                             const float *dirs, int k)
{
    memset(o, 0, sizeof *o);
    int r = (mu ? 1 : 0) + k;
    if (r < 1 || r > ELLM_OBJECTIVE_MAX_RANK || n % BLOCK != 0)
        return false;
    o->n = n;
    o->rank = r;
    o->w = malloc((size_t)n * sizeof *o->w);
    o->d = malloc((size_t)n * sizeof *o->d);
    o->u = malloc((size_t)n * (size_t)r * sizeof *o->u);
    o->gain = malloc((size_t)n * (size_t)r * sizeof *o->gain);
    o->block = malloc((size_t)(n / BLOCK) * (size_t)(r * r) * sizeof *o->block);
    if (!o->w || !o->d || !o->u || !o->gain || !o->block) {
        ellm_row_objective_free(o);
        return false;
    }
    memcpy(o->w, w, (size_t)n * sizeof *o->w);
    for (int64_t j = 0; j < n; j++) {
        int i = 0;
        if (mu)
            o->u[j * r + i++] = mu[j];
        for (int c = 0; c < k; c++)
            o->u[j * r + i++] = dirs[(int64_t)c * n + j];
    }
    leftover_diagonal(n, r, w, o->u, o->d);
    prepare_gains(n, r, o->u, o->d, o->gain, o->block);
    return true;
}

void ellm_row_objective_free(ellm_row_objective *o)
{
    free(o->w);
    free(o->d);
    free(o->u);
    free(o->gain);
    free(o->block);
    memset(o, 0, sizeof *o);
}

/* e^T (D + U U^T) e for the row's errors as quantized; tmp holds n floats. */
static double objective_error(ellm_type type, const float *x, const void *q, int64_t n,
                              const ellm_row_objective *o, float *tmp)
{
    ellm_dequantize_row(type, q, tmp, n);
    double e2 = 0, proj[ELLM_OBJECTIVE_MAX_RANK] = {0};
    for (int64_t j = 0; j < n; j++) {
        double e = (double)tmp[j] - x[j];
        e2 += o->d[j] * e * e;
        for (int i = 0; i < o->rank; i++)
            proj[i] += o->u[j * o->rank + i] * e;
    }
    for (int i = 0; i < o->rank; i++)
        e2 += proj[i] * proj[i];
    return e2;
}

/* The block scales s minimising the objective for the levels g stored (the row is G s):
 * (G^T D G + V V^T) s = G^T D x + V (U^T x) with V = G^T U, solved by Gauss-Seidel sweeps over
 * the blocks keeping V^T s up to date (the matrix is positive definite, so they converge);
 * written back as stored scales (half precision). tmp holds n floats. Q4_0, Q5_0, IQ4_NL. */
static void refit_scales(ellm_type type, const float *x, uint8_t *q, int64_t n,
                         const ellm_row_objective *o, float *tmp)
{
    const int r = o->rank;
    const size_t bb = ellm_type_traits_of(type)->block_bytes;
    ellm_dequantize_row(type, q, tmp, n);
    double ux[ELLM_OBJECTIVE_MAX_RANK] = {0}, vs[ELLM_OBJECTIVE_MAX_RANK] = {0};
    for (int64_t j = 0; j < n; j++)
        for (int i = 0; i < r; i++) {
            ux[i] += o->u[j * r + i] * x[j];
            vs[i] += o->u[j * r + i] * tmp[j];
        }
    for (int sweep = 0; sweep < 6; sweep++)
        for (int64_t blk = 0; blk < n / BLOCK; blk++) {
            uint16_t dh; /* every one of these blocks starts with its scale */
            memcpy(&dh, q + blk * bb, sizeof dh);
            float s = ellm_f16_to_f32(dh);
            if (s == 0)
                continue;
            double beta = 0, rhs = 0, v[ELLM_OBJECTIVE_MAX_RANK] = {0};
            for (int64_t j = blk * BLOCK; j < (blk + 1) * BLOCK; j++) {
                double g = tmp[j] / s;
                beta += o->d[j] * g * g;
                rhs += o->d[j] * g * x[j];
                for (int i = 0; i < r; i++)
                    v[i] += g * o->u[j * r + i];
            }
            double vv = 0, cross = 0;
            for (int i = 0; i < r; i++) {
                vv += v[i] * v[i];
                rhs += v[i] * ux[i];
                cross += v[i] * (vs[i] - v[i] * s);
            }
            if (!(beta + vv > 0))
                continue;
            float fresh = ellm_f16_to_f32(ellm_f32_to_f16((float)((rhs - cross) / (beta + vv))));
            if (!isfinite(fresh) || fresh == 0)
                continue;
            for (int i = 0; i < r; i++)
                vs[i] += v[i] * ((double)fresh - s);
            for (int64_t j = blk * BLOCK; j < (blk + 1) * BLOCK; j++)
                tmp[j] = tmp[j] / s * fresh;
            dh = ellm_f32_to_f16(fresh);
            memcpy(q + blk * bb, &dh, sizeof dh);
        }
}

/* Level indices of a 32-value block, as pack_levels stores them. */
static void unpack_levels(ellm_type type, const void *block, uint8_t *level)
{
    const uint8_t *qs, *qh = NULL;
    switch (type) {
    case ELLM_TYPE_Q5_0:
        qs = ((const block_q5_0 *)block)->qs;
        qh = ((const block_q5_0 *)block)->qh;
        break;
    case ELLM_TYPE_Q5_1:
        qs = ((const block_q5_1 *)block)->qs;
        qh = ((const block_q5_1 *)block)->qh;
        break;
    case ELLM_TYPE_Q4_0: qs = ((const block_q4_0 *)block)->qs; break;
    case ELLM_TYPE_Q4_1: qs = ((const block_q4_1 *)block)->qs; break;
    default: qs = ((const block_iq4_nl *)block)->qs; break;
    }
    for (int j = 0; j < BLOCK; j++) {
        level[j] = (uint8_t)(qs[j % (BLOCK / 2)] >> (j < BLOCK / 2 ? 0 : 4) & 15);
        if (qh)
            level[j] |= (uint8_t)((qh[j / 8] >> (j % 8) & 1) << 4);
    }
}

/* Rounding in order picks each level given only the values before it; with the whole row known,
 * moving one value to a neighbouring level of its block's grid can still lower the objective.
 * Sweeps over the row make every such move that lowers e^T (D + U U^T) e, keeping p = U^T e up
 * to date, so a move costs O(rank) and a sweep O(n rank). tmp holds n floats. */
static void descend_levels(ellm_type type, const float *x, uint8_t *q, int64_t n,
                           const ellm_row_objective *o, float *tmp)
{
    const int r = o->rank;
    const size_t bb = ellm_type_traits_of(type)->block_bytes;
    ellm_dequantize_row(type, q, tmp, n);
    double p[ELLM_OBJECTIVE_MAX_RANK] = {0};
    for (int64_t j = 0; j < n; j++)
        for (int i = 0; i < r; i++)
            p[i] += (double)o->u[j * r + i] * ((double)tmp[j] - x[j]);
    for (int sweep = 0; sweep < DESCENT_SWEEPS; sweep++) {
        int64_t moved = 0;
        for (int64_t blk = 0; blk < n / BLOCK; blk++) {
            uint8_t *block = q + blk * bb, level[BLOCK];
            float grid[32];
            int n_grid = block_grid(type, block, grid), changed = 0;
            unpack_levels(type, block, level);
            for (int64_t j = blk * BLOCK; j < (blk + 1) * BLOCK; j++) {
                const float *uj = o->u + j * r;
                double e = (double)grid[level[j - blk * BLOCK]] - x[j], up = 0, uu = 0;
                for (int i = 0; i < r; i++) {
                    up += uj[i] * p[i];
                    uu += (double)uj[i] * uj[i];
                }
                double slope = o->d[j] * e + up, curve = o->d[j] + uu, best = 0;
                int at = level[j - blk * BLOCK], to = at;
                for (int step = -1; step <= 1; step += 2) {
                    if (at + step < 0 || at + step >= n_grid)
                        continue;
                    double delta = (double)grid[at + step] - grid[at];
                    double gain = delta * (delta * curve + 2 * slope);
                    if (gain < best) {
                        best = gain;
                        to = at + step;
                    }
                }
                if (to == at)
                    continue;
                double delta = (double)grid[to] - grid[at];
                for (int i = 0; i < r; i++)
                    p[i] += delta * uj[i];
                level[j - blk * BLOCK] = (uint8_t)to;
                changed = 1;
                moved++;
            }
            if (changed)
                pack_levels(type, block, level);
        }
        if (!moved)
            break;
    }
}

size_t ellm_quantize_row_objective(ellm_type type, const float *x, void *dst, int64_t n,
                                   const ellm_row_objective *o, float *scratch)
{
    int span = feedback_span(type);
    if (!o || o->n != n || span == 0 || n % span != 0)
        return ellm_quantize_row_weighted(type, x, dst, n, o && o->n == n ? o->w : NULL);
    const ellm_type_traits *tr = ellm_type_traits_of(type);
    const size_t bytes = (size_t)(n / tr->block_size) * tr->block_bytes;
    round_in_order(type, x, dst, n, o->rank, o->w, o->d, o->u, o->gain, o->block, scratch, false,
                   true);
    float *tmp = scratch + n;
    if (span != BLOCK)
        return bytes;
    if (!(type == ELLM_TYPE_Q4_0 || type == ELLM_TYPE_Q5_0 || type == ELLM_TYPE_IQ4_NL)) {
        descend_levels(type, x, dst, n, o, tmp);
        return bytes;
    }
    /* The scales refit under the whole objective for the levels chosen, then the levels chosen
     * again under the refit scales: the best of the three. */
    uint8_t *first = (uint8_t *)(scratch + 2 * n), *refit = first + bytes;
    memcpy(first, dst, bytes);
    double e_first = objective_error(type, x, dst, n, o, tmp);
    refit_scales(type, x, dst, n, o, tmp);
    memcpy(refit, dst, bytes);
    double e_refit = objective_error(type, x, dst, n, o, tmp);
    round_in_order(type, x, dst, n, o->rank, o->w, o->d, o->u, o->gain, o->block, scratch, true,
                   false);
    double e_again = objective_error(type, x, dst, n, o, tmp);
    if (!(e_again <= e_refit && e_again <= e_first))
        memcpy(dst, e_refit <= e_first ? refit : first, bytes);
    descend_levels(type, x, dst, n, o, tmp);
    return bytes;
}

float ellm_weighted_row_error(ellm_type type, const float *x, const void *q, int64_t n,
                              const float *w, float *scratch)
{
    ellm_dequantize_row(type, q, scratch, n);
    double e = 0;
    for (int64_t i = 0; i < n; i++)
        e += (double)(w ? w[i] : 1.0f) * (x[i] - scratch[i]) * (x[i] - scratch[i]);
    return (float)e;
}
