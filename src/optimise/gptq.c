#define _POSIX_C_SOURCE 200809L
/* GPTQ rounding with error feedback, and per-layer H = X^T X from calibration passes (gptq.h). */
#include <math.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "gguf/gguf.h"
#include "model/model.h"
#include "optimise/awq.h"
#include "optimise/calib.h"
#include "optimise/gptq.h"
#include "quant/blocks.h"
#include "quant/kquants.h"
#include "quant/quant.h"
#include "quant/reference_kquants_low.h"

/* ---------------------------------------------------------------- inverse Cholesky factor */

/* The factor works on panels of FACTOR_PANEL columns so that each row of the matrix is read once
 * per panel instead of once per column (the n x n doubles of a 5632-wide input do not fit any
 * cache), and the triangular inverse on FACTOR_PANEL columns at once, which makes its inner loop
 * a short vector operation instead of a reduction. */
#define FACTOR_PANEL 16

/* sum x[k] y[k] over k < n in four interleaved partial sums (vectorisable; the order is fixed by
 * the source, not by the thread count or the instruction set). */
static double dot_double(const double *x, const double *y, int64_t n)
{
    double s[4] = {0, 0, 0, 0};
    int64_t k = 0;
    for (; k + 4 <= n; k += 4)
        for (int l = 0; l < 4; l++)
            s[l] += x[k + l] * y[k + l];
    for (; k < n; k++)
        s[0] += x[k] * y[k];
    return (s[0] + s[1]) + (s[2] + s[3]);
}

typedef struct chol_panel {
    double *a;
    int64_t n, j0, j1; /* the panel's columns; the rows from j1 on are updated and solved */
} chol_panel;

/* Row i's panel columns: the contributions of the columns before the panel, then the triangular
 * solve against the panel's diagonal block (already factored). */
static void chol_panel_row(const chol_panel *c, int64_t i)
{
    double *li = c->a + i * c->n;
    for (int64_t j = c->j0; j < c->j1; j++) {
        const double *lj = c->a + j * c->n;
        li[j] = (li[j] - dot_double(li, lj, j)) / lj[j];
    }
}

static void chol_panel_rows(void *arg, int ith, int nth)
{
    const chol_panel *c = arg;
    for (int64_t i = c->j1 + ith; i < c->n; i += nth)
        chol_panel_row(c, i);
}

typedef struct tri_inverse {
    const double *l;
    int64_t n;
    double *x; /* per thread: n x FACTOR_PANEL */
    float *u;
} tri_inverse;

/* Columns c0..c0+FACTOR_PANEL of L^-1 by forward substitution, all of them at once (row k of x
 * holds the panel's values at row k), written reversed into U. */
static void tri_inverse_panels(void *arg, int ith, int nth)
{
    const tri_inverse *t = arg;
    int64_t n = t->n;
    double *x = t->x + (size_t)ith * (size_t)n * FACTOR_PANEL;
    for (int64_t c0 = (int64_t)ith * FACTOR_PANEL; c0 < n; c0 += (int64_t)nth * FACTOR_PANEL) {
        int64_t width = n - c0 < FACTOR_PANEL ? n - c0 : FACTOR_PANEL;
        for (int64_t i = c0; i < n; i++) {
            const double *li = t->l + i * n;
            double s[FACTOR_PANEL] = {0};
            for (int64_t k = c0; k < i; k++) {
                const double *xk = x + (k - c0) * FACTOR_PANEL;
                for (int g = 0; g < FACTOR_PANEL; g++)
                    s[g] += li[k] * xk[g];
            }
            double *xi = x + (i - c0) * FACTOR_PANEL;
            for (int g = 0; g < FACTOR_PANEL; g++)
                xi[g] = (g < width && c0 + g == i ? 1.0 : 0.0) - s[g];
            for (int g = 0; g < FACTOR_PANEL; g++)
                xi[g] /= li[i];
            for (int64_t g = 0; g < width && c0 + g <= i; g++)
                t->u[(n - 1 - i) * n + (n - 1 - (c0 + g))] = (float)xi[g];
        }
    }
}

/* U upper with U^T U = (H + damp I)^-1. With P the order reversal and P H P = L L^T,
 * H^-1 = P L^-T L^-1 P = U^T U for U = P L^-1 P: one Cholesky and one triangular inverse.
 * False when H + damp I is not positive definite in double precision. */
static bool inverse_cholesky_upper(ellm_threadpool *pool, const float *h, int64_t n, double damp,
                                   double *a, double *x, float *u)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j <= i; j++)
            a[i * n + j] = h[(n - 1 - i) * n + (n - 1 - j)] + (i == j ? damp : 0);
    for (int64_t j0 = 0; j0 < n; j0 += FACTOR_PANEL) {
        int64_t j1 = j0 + FACTOR_PANEL < n ? j0 + FACTOR_PANEL : n;
        /* The panel's diagonal block, then every row below it. */
        for (int64_t j = j0; j < j1; j++) {
            double *lj = a + j * n;
            for (int64_t k = j0; k < j; k++)
                lj[k] = (lj[k] - dot_double(lj, a + k * n, k)) / a[k * n + k];
            double s = lj[j] - dot_double(lj, lj, j);
            if (!(s > 0))
                return false;
            lj[j] = sqrt(s);
        }
        chol_panel c = {a, n, j0, j1};
        if (n - j1 > 64)
            ellm_threadpool_run(pool, chol_panel_rows, &c);
        else
            chol_panel_rows(&c, 0, 1);
    }
    memset(u, 0, (size_t)n * (size_t)n * sizeof *u);
    tri_inverse t = {a, n, x, u};
    ellm_threadpool_run(pool, tri_inverse_panels, &t);
    return true;
}

/* ---------------------------------------------------------------- rounding on a block's grid */

static int clamp_int(long v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : (int)v; }

/* Value p of a 32-value block in 4-bit nibbles: the low nibble of qs[p], or the high of qs[p-16]. */
static void set_nibble(uint8_t *qs, int p, int k)
{
    if (p < 16)
        qs[p] = (uint8_t)((qs[p] & 0xF0) | (k & 15));
    else
        qs[p - 16] = (uint8_t)((qs[p - 16] & 0x0F) | ((k & 15) << 4));
}

/* The fifth bit of value p (bit p of qh read as a little-endian 32-bit word). */
static void set_fifth_bit(uint8_t *qh, int p, int k)
{
    uint8_t bit = (uint8_t)(1u << (p % 8));
    qh[p / 8] = (uint8_t)((k & 16) ? (qh[p / 8] | bit) : (qh[p / 8] & ~bit));
}

/* The index of the IQ4_NL table value nearest to x under scale d. */
static int nearest_iq4nl(float x, float d)
{
    float best = INFINITY;
    int k_best = 0;
    for (int k = 0; k < 16; k++) {
        float e = fabsf(x - d * (float)ellm_kvalues_iq4nl[k]);
        if (e < best) {
            best = e;
            k_best = k;
        }
    }
    return k_best;
}

/* Rounds x to the nearest level of value p of the block under the scale (and minimum) it holds,
 * stores the code and returns the level in *q. False for types without a grid here, whose codes
 * stay as the block's quantizer chose them. */
static bool round_on_grid(ellm_type type, void *block, int p, float x, float *q)
{
    switch (type) {
    case ELLM_TYPE_Q4_0: {
        block_q4_0 *b = block;
        float d = ellm_f16_to_f32(b->d);
        int k = d != 0 ? clamp_int(lrintf(x / d) + 8, 0, 15) : 8;
        set_nibble(b->qs, p, k);
        *q = d * (float)(k - 8);
        return true;
    }
    case ELLM_TYPE_Q4_1: {
        block_q4_1 *b = block;
        float d = ellm_f16_to_f32(b->d), m = ellm_f16_to_f32(b->m);
        int k = d != 0 ? clamp_int(lrintf((x - m) / d), 0, 15) : 0;
        set_nibble(b->qs, p, k);
        *q = d * (float)k + m;
        return true;
    }
    case ELLM_TYPE_Q5_0: {
        block_q5_0 *b = block;
        float d = ellm_f16_to_f32(b->d);
        int k = d != 0 ? clamp_int(lrintf(x / d) + 16, 0, 31) : 16;
        set_nibble(b->qs, p, k);
        set_fifth_bit(b->qh, p, k);
        *q = d * (float)(k - 16);
        return true;
    }
    case ELLM_TYPE_Q5_1: {
        block_q5_1 *b = block;
        float d = ellm_f16_to_f32(b->d), m = ellm_f16_to_f32(b->m);
        int k = d != 0 ? clamp_int(lrintf((x - m) / d), 0, 31) : 0;
        set_nibble(b->qs, p, k);
        set_fifth_bit(b->qh, p, k);
        *q = d * (float)k + m;
        return true;
    }
    case ELLM_TYPE_Q8_0: {
        block_q8_0 *b = block;
        float d = ellm_f16_to_f32(b->d);
        int k = d != 0 ? clamp_int(lrintf(x / d), -128, 127) : 0;
        b->qs[p] = (int8_t)k;
        *q = d * (float)k;
        return true;
    }
    case ELLM_TYPE_IQ4_NL: {
        block_iq4_nl *b = block;
        float d = ellm_f16_to_f32(b->d);
        int k = nearest_iq4nl(x, d);
        set_nibble(b->qs, p, k);
        *q = d * (float)ellm_kvalues_iq4nl[k];
        return true;
    }
    case ELLM_TYPE_IQ4_XS: {
        /* Sub-block p / 32 holds its 32 values as IQ4_NL's block does, under its 6-bit scale. */
        block_iq4_xs *b = block;
        float d = ellm_f16_to_f32(b->d) * (float)(ellm_iq4_xs_scale(b, p / 32) - 32);
        int k = nearest_iq4nl(x, d);
        set_nibble(b->qs + 16 * (p / 32), p % 32, k);
        *q = d * (float)ellm_kvalues_iq4nl[k];
        return true;
    }
    case ELLM_TYPE_Q2_K: {
        /* Level k in 0..3, two bits of qs, under the sub-block's 4-bit scale and min codes. */
        block_q2_K *b = block;
        uint8_t codes = b->scales[p / 16];
        float step = ellm_f16_to_f32(b->d) * (float)(codes & 15);
        float offset = ellm_f16_to_f32(b->dmin) * (float)(codes >> 4);
        int k = step != 0 ? clamp_int(lrintf((x + offset) / step), 0, 3) : 0;
        int h = p / 128, j = (p % 128) / 32, l = p % 32;
        uint8_t *byte = &b->qs[32 * h + l];
        *byte = (uint8_t)((*byte & ~(3u << (2 * j))) | ((unsigned)k << (2 * j)));
        *q = step * (float)k - offset;
        return true;
    }
    case ELLM_TYPE_Q4_K:
    case ELLM_TYPE_Q5_K: {
        /* Same leading layout; value p sits in chunk p / 64, nibble (p / 32) % 2, sub-block p / 32. */
        bool five = type == ELLM_TYPE_Q5_K;
        const uint16_t *dd = block;
        const uint8_t *scales = (const uint8_t *)block + 4;
        uint8_t *qs = five ? ((block_q5_K *)block)->qs : ((block_q4_K *)block)->qs;
        uint8_t sc, m;
        ellm_kq_scale_min(p / 32, scales, &sc, &m);
        float step = ellm_f16_to_f32(dd[0]) * (float)sc, offset = ellm_f16_to_f32(dd[1]) * (float)m;
        int top = five ? 31 : 15;
        int k = step != 0 ? clamp_int(lrintf((x + offset) / step), 0, top) : 0;
        int c = p / 64, high = (p / 32) % 2, l = p % 32;
        uint8_t *byte = &qs[32 * c + l];
        *byte = (uint8_t)(high ? ((*byte & 0x0F) | (k & 15) << 4) : ((*byte & 0xF0) | (k & 15)));
        if (five) {
            uint8_t *qh = &((block_q5_K *)block)->qh[l], bit = (uint8_t)(1u << (2 * c + high));
            *qh = (uint8_t)((k & 16) ? (*qh | bit) : (*qh & ~bit));
        }
        *q = step * (float)k - offset;
        return true;
    }
    case ELLM_TYPE_Q3_K: {
        /* Level k in -4..3 stored as k + 4: two bits in qs, the third in hmask. */
        block_q3_K *b = block;
        float step = ellm_f16_to_f32(b->d) * (float)(ellm_q3_K_scale(b->scales, p / 16) - 32);
        int k = step != 0 ? clamp_int(lrintf(x / step), -4, 3) : 0, u = k + 4;
        int h = p / 128, j = (p % 128) / 32, l = p % 32;
        uint8_t *low = &b->qs[32 * h + l], bit = (uint8_t)(1u << (4 * h + j));
        *low = (uint8_t)((*low & ~(3u << (2 * j))) | ((unsigned)(u & 3) << (2 * j)));
        b->hmask[l] = (uint8_t)((u & 4) ? (b->hmask[l] | bit) : (b->hmask[l] & ~bit));
        *q = step * (float)k;
        return true;
    }
    case ELLM_TYPE_Q6_K: {
        block_q6_K *b = block;
        float step = ellm_f16_to_f32(b->d) * (float)b->scales[p / 16];
        int k = step != 0 ? clamp_int(lrintf(x / step) + 32, 0, 63) : 32;
        int h = p / 128, r = p % 128, l = r % 32, quarter = r / 32;
        uint8_t *low = &b->ql[64 * h + l + (quarter & 1 ? 32 : 0)];
        *low = (uint8_t)(quarter < 2 ? ((*low & 0xF0) | (k & 15))
                                     : ((*low & 0x0F) | (k & 15) << 4));
        uint8_t *qh = &b->qh[32 * h + l];
        *qh = (uint8_t)((*qh & ~(3u << (2 * quarter))) | ((unsigned)(k >> 4) << (2 * quarter)));
        *q = step * (float)(k - 32);
        return true;
    }
    default: return false;
    }
}

/* ---------------------------------------------------------------- the rounding loop */

#define TILE_ROWS 8      /* rows sharing each pass over U's trailing rows */
#define LAZY_COLUMNS 128 /* columns whose errors are applied to the rest at once */
#define UPDATE_CHUNK 256 /* columns of the rest updated per pass over the lazy rows of U */
#define GPTQ_SCALE_STEPS 10
#define GPTQ_SCALE_STRIDE 0.02f /* their spacing, relative to it */

typedef struct gptq_job {
    ellm_type type;
    float *w;
    int64_t n_rows, n;
    const float *u;
    const float *h;          /* H in file order (scaled as w), for the scale refit; NULL: none */
    const float *importance; /* diag H, the block scale search's column weights (file order) */
    const int32_t *order;    /* act-order: the file column rounded at each step; NULL: in order */
    const int32_t *position; /* act-order: the step at which each file column is rounded */
    const int32_t *members;  /* act-order: each block's file columns in the order of their steps */
    bool feedback;
    uint8_t *dst;
    uint64_t row_bytes;
    int64_t block, block_bytes, lazy;
    float *scratch; /* per thread: TILE_ROWS * lazy errors, block values, a row in file order */
    /* per thread, for the refit: the tile's rows as given, and refit_scratch_size(n) doubles */
    float *originals;
    double *refit_scratch;
    uint8_t *first_pass; /* per thread: TILE_ROWS rows of blocks; NULL: one pass */
} gptq_job;

/* ---------------------------------------------------------------- scale refit under H */

/* GPTQ fixes each block's scale before the block's columns are rounded and corrected, so the
 * scale fits values that later change. Once the codes are final, the scales (and minimums) that
 * minimise the layer's output error (w - q)^T H (w - q) for those codes are the solution of a
 * small least-squares problem: q = sum_p theta_p b_p, with one basis vector per scale (the block's
 * codes) and per minimum (ones on the block). The K-quants and IQ4_XS refit their super-block
 * scales (d, and dmin for the affine ones) the same way, their sub-block codes kept. */

/* Where the scale and minimum of a block are stored; false for types not refit here. */
static bool scale_fields(ellm_type type, void *block, uint16_t **d, uint16_t **m)
{
    *d = NULL;
    *m = NULL;
    switch (type) {
    case ELLM_TYPE_Q4_0: *d = &((block_q4_0 *)block)->d; return true;
    case ELLM_TYPE_Q5_0: *d = &((block_q5_0 *)block)->d; return true;
    case ELLM_TYPE_Q8_0: *d = &((block_q8_0 *)block)->d; return true;
    case ELLM_TYPE_IQ4_NL: *d = &((block_iq4_nl *)block)->d; return true;
    case ELLM_TYPE_Q4_1:
        *d = &((block_q4_1 *)block)->d;
        *m = &((block_q4_1 *)block)->m;
        return true;
    case ELLM_TYPE_Q5_1:
        *d = &((block_q5_1 *)block)->d;
        *m = &((block_q5_1 *)block)->m;
        return true;
    /* The super-block scales of the K-quants and IQ4_XS: their sub-block codes stay. */
    case ELLM_TYPE_Q3_K: *d = &((block_q3_K *)block)->d; return true;
    case ELLM_TYPE_Q6_K: *d = &((block_q6_K *)block)->d; return true;
    case ELLM_TYPE_IQ4_XS: *d = &((block_iq4_xs *)block)->d; return true;
    case ELLM_TYPE_Q2_K:
        *d = &((block_q2_K *)block)->d;
        *m = &((block_q2_K *)block)->dmin;
        return true;
    case ELLM_TYPE_Q4_K:
        *d = &((block_q4_K *)block)->d;
        *m = &((block_q4_K *)block)->dmin;
        return true;
    case ELLM_TYPE_Q5_K:
        *d = &((block_q5_K *)block)->d;
        *m = &((block_q5_K *)block)->dmin;
        return true;
    default: return false;
    }
}

/* Doubles the refit of a tile needs per thread for n-wide rows of blocks of 32 or more values:
 * per row the codes, the min basis, the original values and H b (4 n floats), B^T H B and
 * B^T H w; and one solve. */
static size_t refit_scratch_size(int64_t n)
{
    size_t p = 2 * (size_t)(n / 32);
    return TILE_ROWS * (2 * (size_t)n + p * p + p) + p * p + 2 * p;
}

/* Solves the symmetric positive definite a x = b (p x p; a is overwritten by its factor, b by x).
 * False when a is not positive definite. */
static bool solve_spd(double *a, double *b, int64_t p)
{
    double trace = 0;
    for (int64_t i = 0; i < p; i++)
        trace += a[i * p + i];
    for (int64_t i = 0; i < p; i++)
        a[i * p + i] += 1e-9 * trace / (double)p;
    for (int64_t j = 0; j < p; j++) {
        double s = a[j * p + j];
        for (int64_t k = 0; k < j; k++)
            s -= a[j * p + k] * a[j * p + k];
        if (!(s > 0))
            return false;
        a[j * p + j] = sqrt(s);
        for (int64_t i = j + 1; i < p; i++) {
            double t = a[i * p + j];
            for (int64_t k = 0; k < j; k++)
                t -= a[i * p + k] * a[j * p + k];
            a[i * p + j] = t / a[j * p + j];
        }
    }
    for (int64_t i = 0; i < p; i++) {
        double t = b[i];
        for (int64_t k = 0; k < i; k++)
            t -= a[i * p + k] * b[k];
        b[i] = t / a[i * p + i];
    }
    for (int64_t i = p - 1; i >= 0; i--) {
        double t = b[i];
        for (int64_t k = i + 1; k < p; k++)
            t -= a[k * p + i] * b[k];
        b[i] = t / a[i * p + i];
    }
    for (int64_t i = 0; i < p; i++)
        if (!isfinite(b[i]))
            return false;
    return true;
}

/* The block scales (and minimums) as stored, in theta's order. */
static void stored_scales(const gptq_job *j, uint8_t *row, int per_block, double *theta)
{
    uint16_t *d, *m;
    for (int64_t b = 0; b < j->n / j->block; b++) {
        scale_fields(j->type, row + b * j->block_bytes, &d, &m);
        theta[per_block * b] = ellm_f16_to_f32(*d);
        if (m)
            theta[per_block * b + 1] = ellm_f16_to_f32(*m);
    }
}

/* theta^T a theta - 2 theta^T rhs: the output error (w - q)^T H (w - q) of q = B theta, less the
 * constant w^T H w. */
static double quadratic_error(const double *a, const double *rhs, const double *theta, int64_t p)
{
    double e = 0;
    for (int64_t i = 0; i < p; i++) {
        double s = 0;
        for (int64_t k = 0; k < p; k++)
            s += a[i * p + k] * theta[k];
        e += theta[i] * (s - 2 * rhs[i]);
    }
    return e;
}

/* The basis of a row's blocks: codes, each block decoded with scale 1 and minimum 0, and for
 * types with a minimum mins, decoded with scale 0 and minimum 1 (ones on a 32-value block; the
 * negated min codes on the K-quants' sub-blocks). */
static void row_codes(const gptq_job *j, uint8_t *row, float *codes, float *mins)
{
    uint16_t *d, *m;
    for (int64_t b = 0; b < j->n / j->block; b++) {
        uint8_t *block = row + b * j->block_bytes;
        scale_fields(j->type, block, &d, &m);
        uint16_t keep_d = *d, keep_m = m ? *m : 0;
        *d = ellm_f32_to_f16(1.0f);
        if (m)
            *m = 0;
        ellm_dequantize_row(j->type, block, codes + b * j->block, j->block);
        if (m) {
            *d = 0;
            *m = ellm_f32_to_f16(1.0f);
            ellm_dequantize_row(j->type, block, mins + b * j->block, j->block);
            *m = keep_m;
        }
        *d = keep_d;
    }
}

/* a = B^T H B and rhs = B^T H w for nr rows (row k: codes[k], mins[k], w[k], y[k] n floats each,
 * a[k] p x p and rhs[k] p doubles), one basis vector (column of B) at a time. y = H b is a sum of
 * a block's rows of H with small integer (or table) weights, which float holds to a few ulps
 * (the products and the solve are double); the rows share each pass over those rows of H, in
 * chunks that keep the rows' y in L1. */
static void normal_equations(const gptq_job *j, int64_t nr, float *const *codes, float *const *mins,
                             float *const *w, float *const *y, double *const *a, double *const *rhs,
                             int per_block)
{
    int64_t n = j->n, bs = j->block, p = per_block * (n / bs);
    for (int64_t pi = 0; pi < p; pi++) {
        int64_t b = pi / per_block;
        bool is_min = pi % per_block == 1;
        for (int64_t k = 0; k < nr; k++)
            memset(y[k], 0, (size_t)n * sizeof *y[k]);
        for (int64_t i0 = 0; i0 < n; i0 += UPDATE_CHUNK) {
            int64_t i1 = i0 + UPDATE_CHUNK < n ? i0 + UPDATE_CHUNK : n;
            /* Four rows of H per pass over y, each value still taking them in order: the
             * pass is bound by loading and storing y, not by the arithmetic. A zero code adds
             * a zero, which leaves y as it was (y starts at +0 and a sum of finite values is
             * never -0; H is finite, or its factor would have failed). */
            for (int64_t c = b * bs; c < (b + 1) * bs; c += 4) {
                const float *h0 = j->h + c * n, *h1 = h0 + n, *h2 = h1 + n, *h3 = h2 + n;
                for (int64_t k = 0; k < nr; k++) {
                    const float *ck = (is_min ? mins[k] : codes[k]) + c;
                    float v0 = ck[0], v1 = ck[1], v2 = ck[2], v3 = ck[3];
                    float *restrict yk = y[k];
                    for (int64_t i = i0; i < i1; i++) {
                        float t = yk[i];
                        t += v0 * h0[i];
                        t += v1 * h1[i];
                        t += v2 * h2[i];
                        t += v3 * h3[i];
                        yk[i] = t;
                    }
                }
            }
        }
        for (int64_t k = 0; k < nr; k++) {
            double t = 0;
            for (int64_t i = 0; i < n; i++)
                t += (double)y[k][i] * w[k][i];
            rhs[k][pi] = t;
            for (int64_t pk = 0; pk < p; pk++) {
                int64_t bk = pk / per_block;
                bool k_min = pk % per_block == 1;
                double s = 0;
                for (int64_t c = bk * bs; c < (bk + 1) * bs; c++)
                    s += (double)(k_min ? mins[k][c] : codes[k][c]) * (double)y[k][c];
                a[k][pi * p + pk] = s;
            }
        }
    }
}

/* Refits the scales (and minimums) of a row's blocks to minimise its output error under H for the
 * codes they hold (a, rhs from normal_equations), and keeps them where that lowers the error as
 * stored (half precision). Returns the row's output error less w^T H w (comparable between calls
 * for the same w). scratch: p * p + 2 p doubles. */
static double refit_row(const gptq_job *j, uint8_t *row, const double *a, const double *rhs,
                        double *scratch)
{
    int64_t n_blocks = j->n / j->block;
    uint16_t *d, *m;
    scale_fields(j->type, row, &d, &m);
    int per_block = m ? 2 : 1;
    int64_t p = per_block * n_blocks;
    double *factor = scratch, *sol = factor + p * p, *theta = sol + p;
    stored_scales(j, row, per_block, theta);
    double before = quadratic_error(a, rhs, theta, p);
    memcpy(factor, a, (size_t)(p * p) * sizeof *a);
    memcpy(sol, rhs, (size_t)p * sizeof *rhs);
    if (!solve_spd(factor, sol, p))
        return before;
    for (int64_t b = 0; b < n_blocks; b++)
        theta[per_block * b] = ellm_f16_to_f32(ellm_f32_to_f16((float)sol[per_block * b]));
    if (per_block == 2) {
        /* The minimums again for the scales as rounded: the pair's optimum is often a long narrow
         * valley, where rounding both independently costs more than half precision must. */
        int64_t nb = n_blocks;
        for (int64_t b = 0; b < nb; b++) {
            double t = rhs[2 * b + 1];
            for (int64_t k = 0; k < nb; k++) {
                t -= a[(2 * b + 1) * p + 2 * k] * theta[2 * k];
                factor[b * nb + k] = a[(2 * b + 1) * p + 2 * k + 1];
            }
            sol[b] = t;
        }
        if (!solve_spd(factor, sol, nb))
            return before;
        for (int64_t b = 0; b < nb; b++)
            theta[2 * b + 1] = ellm_f16_to_f32(ellm_f32_to_f16((float)sol[b]));
    }
    double after = quadratic_error(a, rhs, theta, p);
    if (!(after < before))
        return before;
    for (int64_t b = 0; b < n_blocks; b++) {
        scale_fields(j->type, row + b * j->block_bytes, &d, &m);
        *d = ellm_f32_to_f16((float)theta[per_block * b]);
        if (m)
            *m = ellm_f32_to_f16((float)theta[per_block * b + 1]);
    }
    return after;
}

/* The output error rounding count values of a block adds, given the block's scales: with
 * feedback among those values, the value at step i adds e_i^2 = ((w_i - q_i) / U_ii)^2 to
 * (w - q)^T H (w - q) whatever the later columns do. In order (cols NULL) the values are vals[k]
 * = value first + k of the block at step step0 + k; under act-order, vals[k] is the block's
 * column cols[k], rounded at step position[cols[k]]. block's codes there are overwritten (tmp:
 * count values). */
static double feedback_cost(const gptq_job *j, const float *vals, int64_t count, int64_t step0,
                            const int32_t *cols, int64_t first, void *block, float *tmp)
{
    memcpy(tmp, vals, (size_t)count * sizeof *tmp);
    double total = 0;
    for (int64_t i = 0; i < count; i++) {
        int64_t step = cols ? j->position[cols[i]] : step0 + i;
        float q = tmp[i];
        round_on_grid(j->type, block, cols ? cols[i] % (int)j->block : (int)(first + i), tmp[i],
                      &q);
        const float *ui = j->u + step * j->n;
        float e = (tmp[i] - q) / ui[step];
        total += (double)e * e;
        for (int64_t k = i + 1; k < count; k++)
            tmp[k] -= e * ui[cols ? j->position[cols[k]] : step0 + k];
    }
    return total;
}

/* feedback_cost of values first..first+count of the block at column g, in order. */
static double block_feedback_error(const gptq_job *j, const float *w, int64_t g, int64_t first,
                                   int64_t count, void *block, float *tmp)
{
    return feedback_cost(j, w + g + first, count, g + first, NULL, first, block, tmp);
}

/* ---------------------------------------------------------------- K-quant sub-block codes */

/* The K-quants and IQ4_XS choose every sub-block's scale code (and min code) when the columns
 * reach the super-block, from values that the feedback of the super-block's earlier sub-blocks
 * then moves. Each sub-block's codes are chosen again when its first column is reached, on what
 * rounding it with feedback adds to the output error, as the 32-value types' scales are. */

/* Values per sub-block whose codes are chosen as the columns reach it; 0: none. */
static int64_t sub_block_size(ellm_type type)
{
    switch (type) {
    case ELLM_TYPE_Q2_K:
    case ELLM_TYPE_Q3_K:
    case ELLM_TYPE_Q6_K: return 16;
    case ELLM_TYPE_Q4_K:
    case ELLM_TYPE_Q5_K:
    case ELLM_TYPE_IQ4_XS: return 32;
    default: return 0;
    }
}

/* Sub-block s's scale code (code[0]) and min code (code[1], types with a minimum) and their
 * ranges; returns how many codes it has. */
static int sub_block_codes(ellm_type type, const void *block, int s, int code[2], int lo[2],
                           int hi[2])
{
    lo[0] = lo[1] = 0;
    hi[0] = hi[1] = 63;
    switch (type) {
    case ELLM_TYPE_Q2_K: {
        uint8_t c = ((const block_q2_K *)block)->scales[s];
        code[0] = c & 15;
        code[1] = c >> 4;
        hi[0] = hi[1] = 15;
        return 2;
    }
    case ELLM_TYPE_Q3_K:
        code[0] = ellm_q3_K_scale(((const block_q3_K *)block)->scales, s);
        return 1;
    case ELLM_TYPE_Q6_K:
        code[0] = ((const block_q6_K *)block)->scales[s];
        lo[0] = -128;
        hi[0] = 127;
        return 1;
    case ELLM_TYPE_Q4_K:
    case ELLM_TYPE_Q5_K: {
        uint8_t sc, m;
        ellm_kq_scale_min(s, (const uint8_t *)block + 4, &sc, &m);
        code[0] = sc;
        code[1] = m;
        return 2;
    }
    case ELLM_TYPE_IQ4_XS: code[0] = ellm_iq4_xs_scale(block, s); return 1;
    default: return 0;
    }
}

static void set_sub_block_codes(ellm_type type, void *block, int s, const int code[2])
{
    switch (type) {
    case ELLM_TYPE_Q2_K:
        ((block_q2_K *)block)->scales[s] = (uint8_t)(code[0] | code[1] << 4);
        return;
    case ELLM_TYPE_Q3_K: {
        uint8_t *sc = ((block_q3_K *)block)->scales;
        int shift = s < 8 ? 0 : 4, lo = s % 8, hi = 8 + s % 4, hshift = 2 * (s / 4);
        sc[lo] = (uint8_t)((sc[lo] & ~(15u << shift)) | (unsigned)(code[0] & 15) << shift);
        sc[hi] = (uint8_t)((sc[hi] & ~(3u << hshift)) | (unsigned)(code[0] >> 4) << hshift);
        return;
    }
    case ELLM_TYPE_Q6_K: ((block_q6_K *)block)->scales[s] = (int8_t)code[0]; return;
    case ELLM_TYPE_Q4_K:
    case ELLM_TYPE_Q5_K: {
        uint8_t *packed = (uint8_t *)block + 4, sc[8], m[8];
        for (int k = 0; k < 8; k++)
            ellm_kq_scale_min(k, packed, &sc[k], &m[k]);
        sc[s] = (uint8_t)code[0];
        m[s] = (uint8_t)code[1];
        ellm_kq_pack_scale_min(sc, m, packed);
        return;
    }
    case ELLM_TYPE_IQ4_XS: {
        block_iq4_xs *b = block;
        int nib = 4 * (s % 2);
        b->scales_l[s / 2] = (uint8_t)((b->scales_l[s / 2] & ~(15u << nib)) |
                                       (unsigned)(code[0] & 15) << nib);
        b->scales_h = (uint16_t)((b->scales_h & ~(3u << (2 * s))) | (unsigned)(code[0] >> 4)
                                                                        << (2 * s));
        return;
    }
    default: return;
    }
}

#define SUB_BLOCK_REACH 4     /* scale codes tried either side of the chosen one */
#define SUB_BLOCK_MIN_REACH 2 /* with a min code: both codes this far either side */

/* Chooses the codes of the sub-block starting at value first of the super-block at column g on
 * the feedback cost of its values as corrected so far: the codes it holds and their neighbours
 * (the super-block scales kept). tmp: the sub-block's values. */
static void choose_sub_block_codes(const gptq_job *j, const float *w, int64_t g, int64_t first,
                                   uint8_t *block, float *tmp)
{
    uint8_t trial[sizeof(block_q6_K)];
    int64_t size = sub_block_size(j->type);
    int s = (int)(first / size), code[2] = {0, 0}, lo[2], hi[2];
    int n_codes = sub_block_codes(j->type, block, s, code, lo, hi);
    if (j->block_bytes > (int64_t)sizeof trial || n_codes == 0)
        return;
    memcpy(trial, block, (size_t)j->block_bytes);
    double best = block_feedback_error(j, w, g, first, size, trial, tmp);
    int best_code[2] = {code[0], code[1]};
    int reach = n_codes == 2 ? SUB_BLOCK_MIN_REACH : SUB_BLOCK_REACH;
    int min_reach = n_codes == 2 ? SUB_BLOCK_MIN_REACH : 0;
    for (int a = code[0] - reach; a <= code[0] + reach; a++)
        for (int b = code[1] - min_reach; b <= code[1] + min_reach; b++) {
            int cand[2] = {a, b};
            if (a < lo[0] || a > hi[0] || (n_codes == 2 && (b < lo[1] || b > hi[1])) ||
                (a == code[0] && b == code[1]))
                continue;
            set_sub_block_codes(j->type, trial, s, cand);
            double e = block_feedback_error(j, w, g, first, size, trial, tmp);
            if (e < best) {
                best = e;
                best_code[0] = a;
                best_code[1] = b;
            }
        }
    set_sub_block_codes(j->type, block, s, best_code);
}

/* The block's scale among the one it holds and multiples of it (x0.80 to x1.20), on the
 * feedback cost of its values (feedback_cost's arguments); the minimum, if any, kept. */
static void pick_scale_multiple(const gptq_job *j, uint8_t *block, const float *vals, int64_t step0,
                                const int32_t *cols, float *tmp)
{
    uint16_t *d, *m;
    uint8_t trial[64];
    if (!j->feedback || j->block_bytes > (int64_t)sizeof trial || sub_block_size(j->type) ||
        !scale_fields(j->type, block, &d, &m))
        return;
    memcpy(trial, block, (size_t)j->block_bytes);
    float d0 = ellm_f16_to_f32(*d);
    double best = feedback_cost(j, vals, j->block, step0, cols, 0, trial, tmp);
    uint16_t best_d = *d;
    for (int step = -GPTQ_SCALE_STEPS; step <= GPTQ_SCALE_STEPS; step++) {
        uint16_t *td, *tm;
        scale_fields(j->type, trial, &td, &tm);
        *td = ellm_f32_to_f16(d0 * (1.0f + GPTQ_SCALE_STRIDE * (float)step));
        if (step == 0 || *td == best_d)
            continue;
        double e = feedback_cost(j, vals, j->block, step0, cols, 0, trial, tmp);
        if (e < best) {
            best = e;
            best_d = *td;
        }
    }
    *d = best_d;
}

/* The block's scale for GPTQ: the importance-weighted search scores each scale on the values as
 * they are, but GPTQ will move the block's later values by the feedback of its earlier ones. So
 * the searched scale and multiples of it are scored on what the rounding with feedback adds to
 * the output error, and the best is kept. (The K-quants' super-block scales stay; their
 * sub-blocks' codes are chosen as they come.) */
static void choose_block_scale(const gptq_job *j, const float *w, int64_t g, uint8_t *block,
                               float *tmp)
{
    ellm_quantize_row_weighted(j->type, w + g, block, j->block, j->importance + g);
    pick_scale_multiple(j, block, w + g, g, NULL, tmp);
}

/* Block b's scale under act-order from its values (vals, in step order): the weighted search's,
 * then, for the types without a minimum, multiples of it on their feedback cost counting the
 * feedback among the block's own columns only (the columns rounded between them push errors
 * into them too, which are not known yet). With the `_1` types that search left Q4_1 7 % worse
 * on the outlier model (docs/optimise.md). tmp: 2 * bs floats. */
static void choose_static_scale(const gptq_job *j, int64_t b, const float *vals, uint8_t *block,
                                float *tmp)
{
    int64_t bs = j->block;
    const int32_t *cols = j->members + b * bs;
    float *file_vals = tmp + bs;
    uint16_t *d, *m;
    for (int64_t k = 0; k < bs; k++)
        file_vals[cols[k] % bs] = vals[k];
    ellm_quantize_row_weighted(j->type, file_vals, block, bs, j->importance + b * bs);
    if (scale_fields(j->type, block, &d, &m) && !m)
        pick_scale_multiple(j, block, vals, 0, cols, tmp);
}

/* Act-order (static groups): a block's scale is chosen at the step that reaches its first
 * column, from its values as the feedback of every column rounded so far has left them (the
 * more important columns come first, so by then much of the row's error has moved into the
 * block), by choose_static_scale. Then the columns are rounded on that grid in the order given,
 * largest diag H first. Columns past the lazy window c1 do not hold this window's updates yet;
 * they are added to the copy here. vals: 3 * bs floats. */
static void round_in_order(const gptq_job *j, float *w, float *e, int64_t c0, int64_t c1,
                           uint8_t *row_dst, bool fixed_scales, float *vals)
{
    int64_t n = j->n, bs = j->block;
    for (int64_t i = c0; i < c1; i++) {
        int32_t c = j->order[i];
        int64_t b = c / bs;
        uint8_t *block = row_dst + b * j->block_bytes;
        if (!fixed_scales && j->members[b * bs] == c) {
            for (int64_t k = 0; k < bs; k++) {
                int64_t p = j->position[j->members[b * bs + k]];
                float v = w[p];
                for (int64_t t = c0; j->feedback && p >= c1 && t < i; t++)
                    v -= e[t - c0] * j->u[t * n + p];
                vals[k] = v;
            }
            choose_static_scale(j, b, vals, block, vals + bs);
        }
        float q = w[i];
        round_on_grid(j->type, block, (int)(c % bs), w[i], &q);
        const float *ui = j->u + i * n;
        float ei = (w[i] - q) / ui[i];
        e[i - c0] = ei;
        w[i] = q;
        for (int64_t k = i + 1; k < c1; k++)
            w[k] -= ei * ui[k];
    }
}

/* W[r0:r1, c1:] -= E U[c0:c1, c1:] for the tile's errors E of columns c0..c1, in chunks of
 * UPDATE_CHUNK columns so that the tile's part of W stays in L1 while the lazy rows of U stream
 * past once. Every value still takes its updates in column order, so the result is bit for bit
 * that of applying each column's error to the whole row as it is rounded (test_gptq checks it). */
static void lazy_update(const gptq_job *j, int64_t r0, int64_t r1, int64_t c0, int64_t c1,
                        const float *err)
{
    int64_t n = j->n;
    for (int64_t k0 = c1; k0 < n; k0 += UPDATE_CHUNK) {
        int64_t k1 = k0 + UPDATE_CHUNK < n ? k0 + UPDATE_CHUNK : n;
        /* Four columns' errors per pass over the tile's part of W (which the pass's loads and
         * stores bound), each value taking them in column order. */
        int64_t i = c0;
        for (; i + 4 <= c1; i += 4) {
            const float *u0 = j->u + i * n, *u1 = u0 + n, *u2 = u1 + n, *u3 = u2 + n;
            for (int64_t r = r0; r < r1; r++) {
                const float *e = err + (r - r0) * j->lazy + (i - c0);
                float e0 = e[0], e1 = e[1], e2 = e[2], e3 = e[3];
                float *restrict w = j->w + r * n;
                for (int64_t k = k0; k < k1; k++) {
                    float t = w[k];
                    t -= e0 * u0[k];
                    t -= e1 * u1[k];
                    t -= e2 * u2[k];
                    t -= e3 * u3[k];
                    w[k] = t;
                }
            }
        }
        for (; i < c1; i++) {
            const float *ui = j->u + i * n;
            for (int64_t r = r0; r < r1; r++) {
                float ei = err[(r - r0) * j->lazy + (i - c0)];
                float *w = j->w + r * n;
                for (int64_t k = k0; k < k1; k++)
                    w[k] -= ei * ui[k];
            }
        }
    }
}

/* The level of value p on the other side of x from q (the nearest level, whose code the block
 * holds): its code in *code and the level in *q2; false where q is the grid's end. */
static bool other_level(ellm_type type, const void *block, float x, float q, int *code, float *q2)
{
    switch (type) {
    case ELLM_TYPE_IQ4_NL: {
        float d = ellm_f16_to_f32(((const block_iq4_nl *)block)->d);
        int k = nearest_iq4nl(x, d) + ((x > q) == (d > 0) ? 1 : -1);
        if (d == 0 || k < 0 || k > 15)
            return false;
        *code = k;
        *q2 = d * (float)ellm_kvalues_iq4nl[k];
        return true;
    }
    case ELLM_TYPE_Q4_0: {
        float d = ellm_f16_to_f32(((const block_q4_0 *)block)->d);
        int k = (d != 0 ? clamp_int(lrintf(x / d) + 8, 0, 15) : 8) + ((x > q) == (d > 0) ? 1 : -1);
        if (d == 0 || k < 0 || k > 15)
            return false;
        *code = k;
        *q2 = d * (float)(k - 8);
        return true;
    }
    default: return false;
    }
}

#define LOOK_AHEAD 4 /* later values of the block look_ahead counts */

/* Rounding value i of the block at column g to its nearest level is the cheapest for that value
 * alone, but its error moves the block's later values, which then round on a coarse grid. So the
 * level on the other side is tried too, each scored on its own cost plus what rounding the next
 * LOOK_AHEAD values of the block with feedback then adds (feedback_cost), and the cheaper kept
 * (the whole rest of the block instead: aidreams IQ4_NL KL 0.01038 against 0.01035, 25 % dearer
 * rows). q: the nearest
 * level, whose code the block holds; returns the level chosen. tmp: 2 * bs floats. */
static float look_ahead(const gptq_job *j, const float *w, int64_t g, int64_t i, uint8_t *block,
                        float q, float *tmp)
{
    int code;
    float q2;
    int64_t bs = j->block, rest = g + bs - i - 1;
    if (rest > LOOK_AHEAD)
        rest = LOOK_AHEAD;
    if (rest == 0 || !other_level(j->type, block, w[i], q, &code, &q2))
        return q;
    const float *ui = j->u + i * j->n;
    double cost[2];
    float level[2] = {q, q2};
    for (int c = 0; c < 2; c++) {
        float e = (w[i] - level[c]) / ui[i];
        for (int64_t k = 0; k < rest; k++)
            tmp[k] = w[i + 1 + k] - e * ui[i + 1 + k];
        cost[c] = (double)e * e +
                  feedback_cost(j, tmp, rest, i + 1, NULL, i - g + 1, block, tmp + bs);
    }
    if (!(cost[1] < cost[0]))
        return q;
    switch (j->type) {
    case ELLM_TYPE_IQ4_NL: set_nibble(((block_iq4_nl *)block)->qs, (int)(i - g), code); break;
    case ELLM_TYPE_Q4_0: set_nibble(((block_q4_0 *)block)->qs, (int)(i - g), code); break;
    default: break;
    }
    return q2;
}

/* GPTQ over rows r0..r1 of a tile. fixed_scales: the blocks keep the scales they hold (a second
 * pass after a refit), else each block's scale is chosen as its columns are reached. */
static void round_tile(const gptq_job *j, int64_t r0, int64_t r1, float *err, float *levels,
                       float *file_row, bool fixed_scales)
{
    int64_t n = j->n, bs = j->block;
    for (int64_t c0 = 0; c0 < n; c0 += j->lazy) {
        int64_t c1 = c0 + j->lazy < n ? c0 + j->lazy : n;
        for (int64_t r = r0; r < r1; r++) {
            float *w = j->w + r * n, *e = err + (r - r0) * j->lazy;
            if (j->order) {
                round_in_order(j, w, e, c0, c1, j->dst + (uint64_t)r * j->row_bytes, fixed_scales,
                               levels);
                continue;
            }
            for (int64_t g = c0; g < c1; g += bs) {
                /* The block's scale from the values as corrected so far. */
                uint8_t *block = j->dst + (uint64_t)r * j->row_bytes +
                                 (uint64_t)(g / bs) * (uint64_t)j->block_bytes;
                if (!fixed_scales)
                    choose_block_scale(j, w, g, block, levels);
                ellm_dequantize_row(j->type, block, levels, bs);
                int64_t sub = j->feedback && !fixed_scales ? sub_block_size(j->type) : 0;
                for (int64_t i = g; i < g + bs; i++) {
                    if (sub && (i - g) % sub == 0)
                        choose_sub_block_codes(j, w, g, i - g, block, file_row);
                    float q = levels[i - g];
                    round_on_grid(j->type, block, (int)(i - g), w[i], &q);
                    if (j->feedback)
                        q = look_ahead(j, w, g, i, block, q, file_row);
                    const float *ui = j->u + i * n;
                    float ei = (w[i] - q) / ui[i];
                    e[i - c0] = ei;
                    w[i] = q;
                    if (j->feedback)
                        for (int64_t k = i + 1; k < c1; k++)
                            w[k] -= ei * ui[k];
                }
            }
        }
        if (j->feedback)
            lazy_update(j, r0, r1, c0, c1, err);
    }
}

/* The refit of rows r0..r1 (their original values in orig, in w's column order), w then set to
 * the values the blocks decode to. The rows' output errors go to errors. */
static void refit_and_settle(const gptq_job *j, int64_t r0, int64_t r1, const float *orig,
                             double *scratch, float *tmp, double *errors)
{
    int64_t n = j->n, nr = r1 - r0;
    uint16_t *d, *m;
    scale_fields(j->type, j->dst, &d, &m);
    int per_block = m ? 2 : 1;
    int64_t p = per_block * (n / j->block);
    float *codes[TILE_ROWS] = {0}, *mins[TILE_ROWS] = {0}, *w0[TILE_ROWS] = {0},
          *y[TILE_ROWS] = {0};
    double *a[TILE_ROWS] = {0}, *rhs[TILE_ROWS] = {0};
    for (int64_t k = 0; k < nr; k++) {
        double *base = scratch + (size_t)k * (2 * (size_t)n + (size_t)(p * p + p));
        codes[k] = (float *)base;
        w0[k] = codes[k] + n;
        y[k] = w0[k] + n;
        mins[k] = y[k] + n;
        a[k] = base + 2 * n;
        rhs[k] = a[k] + p * p;
        const float *o = orig + k * n;
        for (int64_t i = 0; i < n; i++)
            w0[k][j->order ? j->order[i] : i] = o[i];
        row_codes(j, j->dst + (uint64_t)(r0 + k) * j->row_bytes, codes[k], mins[k]);
    }
    normal_equations(j, nr, codes, mins, w0, y, a, rhs, per_block);
    double *solve = scratch + TILE_ROWS * (2 * (size_t)n + (size_t)(p * p + p));
    for (int64_t k = 0; k < nr; k++) {
        uint8_t *row = j->dst + (uint64_t)(r0 + k) * j->row_bytes;
        errors[k] = refit_row(j, row, a[k], rhs[k], solve);
        ellm_dequantize_row(j->type, row, tmp, n);
        float *w = j->w + (r0 + k) * n;
        for (int64_t i = 0; i < n; i++)
            w[i] = tmp[j->order ? j->order[i] : i];
    }
}

/* The level next to q (a level value p of the block decodes to) in direction dir (-1, +1) on
 * the grid of value p; false at the grid's end and for the types descend_codes does not move. */
static bool neighbour_level(ellm_type type, const void *block, int p, float q, int dir,
                            float *level)
{
    int k;
    switch (type) {
    case ELLM_TYPE_Q4_0: {
        float d = ellm_f16_to_f32(((const block_q4_0 *)block)->d);
        k = d != 0 ? (int)lrintf(q / d) + dir : 99;
        *level = d * (float)k;
        return k >= -8 && k <= 7;
    }
    case ELLM_TYPE_IQ4_NL: {
        float d = ellm_f16_to_f32(((const block_iq4_nl *)block)->d);
        k = d != 0 ? nearest_iq4nl(q, d) + dir : 99;
        *level = k >= 0 && k <= 15 ? d * (float)ellm_kvalues_iq4nl[k] : 0;
        return k >= 0 && k <= 15;
    }
    case ELLM_TYPE_Q3_K: {
        const block_q3_K *b = block;
        float step = ellm_f16_to_f32(b->d) * (float)(ellm_q3_K_scale(b->scales, p / 16) - 32);
        k = step != 0 ? (int)lrintf(q / step) + dir : 99;
        *level = step * (float)k;
        return k >= -4 && k <= 3;
    }
    default: return false;
    }
}

/* The types whose single values descend_codes moves (one scale per 32 values, or Q3_K's 16). */
static bool descends(ellm_type type)
{
    return type == ELLM_TYPE_Q4_0 || type == ELLM_TYPE_IQ4_NL || type == ELLM_TYPE_Q3_K;
}

/* GPTQ rounds each value once, given the values before it; afterwards a value's neighbouring
 * level can lower the row's error under the damped H with every other value known. Sweeps over
 * the row move single values one level where that lowers (w - q)^T (H + lambda I) (w - q),
 * keeping res = (H + lambda I) (w - q) up to date (n per move). orig: the row as given; q: n
 * floats; res: 2 n floats. Returns the moves made. */
static int64_t descend_codes(const gptq_job *j, int64_t r, const float *orig, float *q, float *res)
{
    int64_t n = j->n, bs = j->block, moves = 0;
    uint8_t *row = j->dst + (uint64_t)r * j->row_bytes;
    float lambda = 0, *diff = res + n;
    for (int64_t i = 0; i < n; i++)
        lambda += j->h[i * n + i];
    lambda *= ELLM_GPTQ_DAMP / (float)n;
    ellm_dequantize_row(j->type, row, q, n);
    for (int64_t i = 0; i < n; i++) {
        diff[i] = orig[i] - q[i];
        res[i] = lambda * diff[i];
    }
    /* H is symmetric: res = sum over k of diff_k times row k of H, a vector update per k. */
    for (int64_t k = 0; k < n; k++) {
        const float *hk = j->h + k * n;
        float dk = diff[k];
        for (int64_t i = 0; dk != 0 && i < n; i++)
            res[i] += dk * hk[i];
    }
    for (int sweep = 0; sweep < 4; sweep++) {
        int64_t moved = 0;
        for (int64_t i = 0; i < n; i++) {
            uint8_t *block = row + (i / bs) * j->block_bytes;
            int p = (int)(i % bs);
            float hii = j->h[i * n + i] + lambda, best = 0, best_level = q[i];
            for (int dir = -1; dir <= 1; dir += 2) {
                float level;
                if (!neighbour_level(j->type, block, p, q[i], dir, &level))
                    continue;
                float delta = level - q[i], gain = delta * (delta * hii - 2 * res[i]);
                if (gain < best) {
                    best = gain;
                    best_level = level;
                }
            }
            if (best_level == q[i])
                continue;
            /* The level itself is its own nearest: rounding it stores its code. */
            float level = best_level;
            round_on_grid(j->type, block, p, best_level, &level);
            float delta = level - q[i];
            const float *hi = j->h + i * n;
            for (int64_t m = 0; m < n; m++)
                res[m] -= delta * hi[m];
            res[i] -= delta * lambda;
            q[i] = level;
            moved++;
        }
        moves += moved;
        if (!moved)
            break;
    }
    return moves;
}

/* Rows r0..r1 go back to the blocks saved in `earlier` (and w to their values) where the newer
 * rounding's error is not lower than the earlier one's. */
static void keep_earlier(const gptq_job *j, int64_t r0, int64_t r1, const uint8_t *earlier,
                         const double *newer_error, const double *earlier_error, float *tmp)
{
    for (int64_t r = r0; r < r1; r++) {
        if (newer_error[r - r0] < earlier_error[r - r0])
            continue;
        uint8_t *row = j->dst + (uint64_t)r * j->row_bytes;
        memcpy(row, earlier + (uint64_t)(r - r0) * j->row_bytes, j->row_bytes);
        ellm_dequantize_row(j->type, row, tmp, j->n);
        for (int64_t i = 0; i < j->n; i++)
            j->w[r * j->n + i] = tmp[j->order ? j->order[i] : i];
    }
}

static void gptq_rows(void *arg, int ith, int nth)
{
    const gptq_job *j = arg;
    int64_t n = j->n, bs = j->block;
    float *err = j->scratch + (size_t)ith * (size_t)(TILE_ROWS * j->lazy + bs + 2 * n);
    float *levels = err + TILE_ROWS * j->lazy, *file_row = levels + bs, *tmp = file_row + n;
    float *orig = j->originals ? j->originals + (size_t)ith * TILE_ROWS * (size_t)n : NULL;
    double *refit = j->refit_scratch ? j->refit_scratch + (size_t)ith * refit_scratch_size(n)
                                     : NULL;
    uint8_t *first_pass = j->first_pass ? j->first_pass + (size_t)ith * TILE_ROWS * j->row_bytes
                                        : NULL;
    int64_t n_tiles = (j->n_rows + TILE_ROWS - 1) / TILE_ROWS;
    for (int64_t tile = ith; tile < n_tiles; tile += nth) {
        int64_t r0 = tile * TILE_ROWS;
        int64_t r1 = r0 + TILE_ROWS < j->n_rows ? r0 + TILE_ROWS : j->n_rows;
        size_t tile_values = (size_t)(r1 - r0) * (size_t)n;
        if (orig)
            memcpy(orig, j->w + r0 * n, tile_values * sizeof *orig);
        round_tile(j, r0, r1, err, levels, file_row, false);
        if (!orig)
            continue;
        double first[TILE_ROWS], second[TILE_ROWS];
        refit_and_settle(j, r0, r1, orig, refit, tmp, first);
        if (!first_pass)
            continue;
        /* Once more on the refit scales, the codes free to follow them; kept row by row where
         * the output error is lower. */
        uint8_t *tile_dst = j->dst + (uint64_t)r0 * j->row_bytes;
        memcpy(first_pass, tile_dst, (size_t)(r1 - r0) * j->row_bytes);
        memcpy(j->w + r0 * n, orig, tile_values * sizeof *orig);
        round_tile(j, r0, r1, err, levels, file_row, true);
        refit_and_settle(j, r0, r1, orig, refit, tmp, second);
        keep_earlier(j, r0, r1, first_pass, second, first, tmp);
        if (j->order || !descends(j->type))
            continue;
        /* Single values moved a level under the whole row's error, then the scales refit
         * to the moved codes; kept row by row where the error under H is lower. */
        double best[TILE_ROWS], third[TILE_ROWS];
        int64_t moves = 0;
        for (int64_t r = r0; r < r1; r++)
            best[r - r0] = first[r - r0] < second[r - r0] ? first[r - r0] : second[r - r0];
        memcpy(first_pass, tile_dst, (size_t)(r1 - r0) * j->row_bytes);
        for (int64_t r = r0; r < r1; r++)
            moves += descend_codes(j, r, orig + (r - r0) * n, tmp, (float *)refit);
        if (!moves)
            continue;
        refit_and_settle(j, r0, r1, orig, refit, tmp, third);
        keep_earlier(j, r0, r1, first_pass, third, best, tmp);
    }
}

bool ellm_gptq_supports(ellm_type type, int64_t n_cols)
{
    if (!ellm_type_supported(type) || type == ELLM_TYPE_Q8_K || type == ELLM_TYPE_Q8_1)
        return false;
    const ellm_type_traits *tr = ellm_type_traits_of(type);
    return tr && tr->block_size > 1 && n_cols > 0 && n_cols % tr->block_size == 0;
}

/* GPTQ given U (the inverse Hessian's upper Cholesky factor) and the columns' importances; with
 * h (file order, as w is scaled) and feedback, the block scales are refit under it afterwards. */
static edgellm_status quantize_with_factor(ellm_threadpool *pool, ellm_type type, float *w,
                                           int64_t n_rows, int64_t n, const float *u,
                                           const float *h, const float *importance,
                                           const int32_t *order, bool feedback,
                                           int64_t lazy_columns, void *dst)
{
    const ellm_type_traits *tr = ellm_type_traits_of(type);
    int64_t bs = tr->block_size;
    if (lazy_columns <= 0)
        lazy_columns = LAZY_COLUMNS;
    gptq_job j = {.type = type,
                  .w = w,
                  .n_rows = n_rows,
                  .n = n,
                  .u = u,
                  .importance = importance,
                  .order = order,
                  .feedback = feedback,
                  .dst = dst,
                  .block = bs,
                  .block_bytes = tr->block_bytes,
                  .lazy = ((lazy_columns + bs - 1) / bs) * bs};
    uint16_t *d, *m;
    uint8_t probe[sizeof(block_q6_K)] = {0};
    bool refit = h && feedback && scale_fields(type, probe, &d, &m);
    j.h = refit ? h : NULL;
    ellm_row_bytes(type, (uint64_t)n, &j.row_bytes);
    int nth = pool ? ellm_threadpool_size(pool) : 1;
    j.scratch = malloc((size_t)nth * (size_t)(TILE_ROWS * j.lazy + bs + 2 * n) * sizeof *j.scratch);
    if (refit) {
        j.originals = malloc((size_t)nth * TILE_ROWS * (size_t)n * sizeof *j.originals);
        j.refit_scratch = malloc((size_t)nth * refit_scratch_size(n) * sizeof *j.refit_scratch);
        j.first_pass = malloc((size_t)nth * TILE_ROWS * j.row_bytes);
    }
    int32_t *position = NULL, *members = NULL;
    if (order) {
        position = malloc((size_t)n * sizeof *position);
        members = malloc((size_t)n * sizeof *members);
        int64_t *filled = calloc((size_t)(n / bs), sizeof *filled);
        for (int64_t i = 0; position && members && filled && i < n; i++) {
            int64_t b = order[i] / bs;
            position[order[i]] = (int32_t)i;
            members[b * bs + filled[b]++] = order[i];
        }
        if (!filled) {
            free(members);
            members = NULL;
        }
        free(filled);
        j.position = position;
        j.members = members;
    }
    edgellm_status st = EDGELLM_OK;
    if (!j.scratch || (refit && (!j.originals || !j.refit_scratch || !j.first_pass)) ||
        (order && (!position || !members)))
        st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the GPTQ rows");
    else
        ellm_threadpool_run(pool, gptq_rows, &j);
    free(position);
    free(members);
    free(j.scratch);
    free(j.originals);
    free(j.refit_scratch);
    free(j.first_pass);
    return st;
}

edgellm_status ellm_gptq_inverse_factor(ellm_threadpool *pool, const float *h, int64_t n,
                                        float damp, float *u)
{
    double mean = 0;
    for (int64_t i = 0; i < n; i++)
        mean += h[i * n + i];
    mean /= (double)n;
    if (!(mean > 0))
        mean = 1; /* an input never active: every column is as good as any other */
    int nth = pool ? ellm_threadpool_size(pool) : 1;
    double *a = malloc((size_t)n * (size_t)n * sizeof *a);
    double *x = malloc((size_t)nth * (size_t)n * FACTOR_PANEL * sizeof *x);
    edgellm_status st = EDGELLM_OK;
    if (!a || !x)
        st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the %lld x %lld inverse Hessian",
                       (long long)n, (long long)n);
    double lambda = (double)damp * mean;
    for (int tries = 0; st == EDGELLM_OK; tries++) {
        if (inverse_cholesky_upper(pool, h, n, lambda, a, x, u))
            break;
        if (tries == 6)
            st = ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                           "the calibration statistics (X^T X) are not positive definite even "
                           "with strong damping: the activations hold NaN or infinite values");
        lambda = lambda > 0 ? lambda * 10 : 1e-6 * mean;
    }
    free(a);
    free(x);
    return st;
}

/* Act-order: the columns by descending importance (diag H), ties in file order. */
static const float *sort_key;

static int by_key_descending(const void *a, const void *b)
{
    float x = sort_key[*(const int32_t *)a], y = sort_key[*(const int32_t *)b];
    return x > y   ? -1
           : x < y ? 1
                   : (*(const int32_t *)a > *(const int32_t *)b) -
                         (*(const int32_t *)a < *(const int32_t *)b);
}

static void act_order_of(const float *importance, int64_t n, int32_t *order)
{
    for (int64_t i = 0; i < n; i++)
        order[i] = (int32_t)i;
    sort_key = importance;
    qsort(order, (size_t)n, sizeof *order, by_key_descending);
}

edgellm_status ellm_gptq_quantize(ellm_threadpool *pool, ellm_type type, float *w, int64_t n_rows,
                                  int64_t n_cols, const float *h, float damp, bool feedback,
                                  void *dst)
{
    return ellm_gptq_quantize_lazy(pool, type, w, n_rows, n_cols, h, damp, feedback, 0, dst);
}

/* GPTQ of a matrix given its H, in file order or (act_order) in descending order of diag H; w
 * ends in file order. */
static edgellm_status quantize_matrix(ellm_threadpool *pool, ellm_type type, float *w,
                                      int64_t n_rows, int64_t n, const float *h, float damp,
                                      bool feedback, bool act_order, int64_t lazy_columns,
                                      void *dst)
{
    if (!ellm_gptq_supports(type, n))
        return ellm_fail(EDGELLM_ERR_UNSUPPORTED,
                         "GPTQ needs a block type whose blocks split the %lld-value rows; %s does "
                         "not",
                         (long long)n, ellm_type_name(type));
    float *u = malloc((size_t)n * (size_t)n * sizeof *u);
    float *imp = malloc((size_t)n * sizeof *imp);
    float *hp = act_order ? malloc((size_t)n * (size_t)n * sizeof *hp) : NULL;
    float *row = act_order ? malloc((size_t)n * sizeof *row) : NULL;
    int32_t *order = act_order ? malloc((size_t)n * sizeof *order) : NULL;
    edgellm_status st = EDGELLM_OK;
    if (!u || !imp || (act_order && (!hp || !row || !order)))
        st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for GPTQ");
    for (int64_t i = 0; st == EDGELLM_OK && i < n; i++)
        imp[i] = h[i * n + i] + 1e-30f;
    if (st == EDGELLM_OK && order) {
        act_order_of(imp, n, order);
        for (int64_t i = 0; i < n; i++)
            for (int64_t k = 0; k < n; k++)
                hp[i * n + k] = h[(int64_t)order[i] * n + order[k]];
        for (int64_t r = 0; r < n_rows; r++) {
            for (int64_t i = 0; i < n; i++)
                row[i] = w[r * n + order[i]];
            memcpy(w + r * n, row, (size_t)n * sizeof *row);
        }
    }
    if (st == EDGELLM_OK)
        st = ellm_gptq_inverse_factor(pool, order ? hp : h, n, damp, u);
    if (st == EDGELLM_OK)
        st = quantize_with_factor(pool, type, w, n_rows, n, u, h, imp, order, feedback,
                                  lazy_columns, dst);
    for (int64_t r = 0; order && r < n_rows; r++) {
        for (int64_t i = 0; i < n; i++)
            row[order[i]] = w[r * n + i];
        memcpy(w + r * n, row, (size_t)n * sizeof *row);
    }
    free(u);
    free(imp);
    free(hp);
    free(row);
    free(order);
    return st;
}

edgellm_status ellm_gptq_quantize_lazy(ellm_threadpool *pool, ellm_type type, float *w,
                                       int64_t n_rows, int64_t n_cols, const float *h, float damp,
                                       bool feedback, int64_t lazy_columns, void *dst)
{
    return quantize_matrix(pool, type, w, n_rows, n_cols, h, damp, feedback, false, lazy_columns,
                           dst);
}

edgellm_status ellm_gptq_quantize_act_order(ellm_threadpool *pool, ellm_type type, float *w,
                                            int64_t n_rows, int64_t n_cols, const float *h,
                                            float damp, int64_t lazy_columns, void *dst)
{
    return quantize_matrix(pool, type, w, n_rows, n_cols, h, damp, true, true, lazy_columns, dst);
}

/* ---------------------------------------------------------------- per-layer statistics */

#define N_INPUTS 5    /* ELLM_INPUT_ATTN .. ELLM_INPUT_HEAD */
#define HEAD_LAYER -1 /* the layer the observer gives the output head's input */
#define NO_LAYER -2   /* statistics of no layer held */
/* Per-row Hessians of ffn_gate/ffn_up: at most this many FFN input values kept, and this many
 * multiply-adds to build them (tokens x rows x n^2 / 2) */
#define ROW_HESSIAN_MAX_X (1 << 22)
#define ROW_HESSIAN_MAX_WORK 1.5e11
/* ... and at least this many calibration tokens per input column: each row's weights leave
 * fewer tokens that count than X^T X has, and with fewer H_r fits the calibration text (the
 * 256-wide model, 6 tokens a column: Q3_K_M KL 0.01025 to 0.01051) */
#define ROW_HESSIAN_MIN_TOKENS 16

typedef struct layer_input {
    int64_t n;        /* columns; 0 until observed */
    float *h;         /* n x n, X^T X over the calibration rows */
    float *u;         /* the inverse factor for col_scale, computed on first use */
    float *h_scaled;  /* diag(1/s) H diag(1/s) for col_scale s, file order; NULL: none */
    float *imp;       /* diag of the (scaled) H */
    float *col_scale; /* the scale u was computed for (NULL: none) */
    int32_t *order;   /* act-order: the file column at each step of u's order; NULL: in order */
} layer_input;

#define EMBEDDING_LAYER -3 /* an installed copy of the token embedding */

/* A quantized matrix the calibration model computes with in place of the file's. */
typedef struct installed_copy {
    ellm_tensor *slot; /* the model's tensor it replaced */
    ellm_tensor given; /* the tensor as it was */
    int32_t layer;     /* its layer, or EMBEDDING_LAYER */
    uint8_t *data;
    uint64_t bytes;
} installed_copy;

struct ellm_gptq {
    ellm_calib_run run;
    installed_copy *installed;
    int n_installed;
    uint64_t installed_bytes;
    bool released;    /* copies of passed layers were released: the carry cannot start again */
    bool state_stale; /* the model's matrices changed since the state was made */
    int32_t layer;    /* whose statistics `in` holds (HEAD_LAYER: the head's); NO_LAYER: none */
    layer_input in[N_INPUTS];
    /* The layer's FFN input rows, kept while small enough for per-row Hessians (ffn_rows < 0:
     * too many) */
    float *ffn_x;
    int64_t ffn_rows;
    bool failed;
    ellm_gptq_params params;
};

static void free_inputs(ellm_gptq *g)
{
    for (int k = 0; k < N_INPUTS; k++) {
        free(g->in[k].h);
        free(g->in[k].u);
        free(g->in[k].h_scaled);
        free(g->in[k].imp);
        free(g->in[k].col_scale);
        free(g->in[k].order);
        memset(&g->in[k], 0, sizeof g->in[k]);
    }
    free(g->ffn_x);
    g->ffn_x = NULL;
    g->ffn_rows = 0;
    g->layer = NO_LAYER;
}

typedef struct accumulate {
    float *h;
    const float *x;
    int32_t n_rows;
    int64_t n;
} accumulate;

/* Lower triangle of H += x^T x; rows of H split across threads. */
static void accumulate_rows(void *arg, int ith, int nth)
{
    const accumulate *a = arg;
    for (int64_t i = ith; i < a->n; i += nth) {
        float *hi = a->h + i * a->n;
        for (int32_t r = 0; r < a->n_rows; r++) {
            const float *xr = a->x + (size_t)r * (size_t)a->n;
            float xi = xr[i];
            if (xi == 0)
                continue;
            for (int64_t j = 0; j <= i; j++)
                hi[j] += xi * xr[j];
        }
    }
}

static void observe_layer(void *user, int32_t layer, ellm_matrix_input which, const float *x,
                          int32_t n_rows, int64_t n_cols)
{
    ellm_gptq *g = user;
    if (layer != g->layer || (int)which >= N_INPUTS || g->failed)
        return;
    layer_input *in = &g->in[which];
    if (!in->h) {
        in->h = calloc((size_t)n_cols * (size_t)n_cols, sizeof *in->h);
        in->n = n_cols;
        if (!in->h) {
            g->failed = true;
            return;
        }
    }
    if (in->n != n_cols) {
        g->failed = true;
        return;
    }
    accumulate a = {in->h, x, n_rows, n_cols};
    ellm_threadpool_run(g->run.pool, accumulate_rows, &a);
    if (which != ELLM_INPUT_FFN || g->ffn_rows < 0)
        return;
    int64_t rows = g->ffn_rows + n_rows;
    float *kept = rows * n_cols <= ROW_HESSIAN_MAX_X
                      ? realloc(g->ffn_x, (size_t)(rows * n_cols) * sizeof *kept)
                      : NULL;
    if (!kept) {
        free(g->ffn_x);
        g->ffn_x = NULL;
        g->ffn_rows = -1;
        return;
    }
    memcpy(kept + g->ffn_rows * n_cols, x, (size_t)n_rows * (size_t)n_cols * sizeof *x);
    g->ffn_x = kept;
    g->ffn_rows = rows;
}

/* The layers before `before` are passed for good: their quantized copies go back to the file's
 * matrices, so memory holds one layer's copies at a time. */
static void release_layers_before(ellm_gptq *g, int32_t before)
{
    int kept = 0;
    for (int i = 0; i < g->n_installed; i++) {
        installed_copy *c = &g->installed[i];
        if (c->layer == EMBEDDING_LAYER || c->layer >= before) {
            g->installed[kept++] = *c;
            continue;
        }
        *c->slot = c->given;
        g->installed_bytes -= c->bytes;
        free(c->data);
        g->released = true;
        g->state_stale = true;
    }
    g->n_installed = kept;
}

/* Brings the carried calibration states to layer `target`'s input (n_layer: the final norm's),
 * through the earlier layers as they are now, quantized where they were. */
static edgellm_status carry_to(ellm_gptq *g, int32_t target)
{
    ellm_calib_run *r = &g->run;
    if (r->carried_layer < 0 || r->carried_layer > target) {
        if (g->released)
            return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                             "GPTQ needs the model's tensors in layer order: layer %d's "
                             "statistics were asked for after the earlier layers' quantized "
                             "copies were released",
                             (int)target);
        ellm_calib_carry_start(r);
    }
    edgellm_status st = EDGELLM_OK;
    if (r->carried_layer < target)
        st = ellm_calib_carry_pass(r, r->carried_layer, target, true, NULL, NULL, NULL, "");
    if (st == EDGELLM_OK)
        release_layers_before(g, target);
    return st;
}

/* Keeps the statistics of `layer` only, from that layer alone over the calibration states
 * carried to its input (the head: the final norm of the states after the last layer). */
static edgellm_status collect_layer(ellm_gptq *g, int32_t layer)
{
    free_inputs(g);
    g->layer = layer;
    g->failed = false;
    double t0 = ellm_calib_seconds();
    int32_t n_layer = ellm_model_hparams(g->run.model)->n_layer;
    int32_t first = layer == HEAD_LAYER ? n_layer : layer;
    edgellm_status st = EDGELLM_OK;
    if (g->state_stale && (st = ellm_calib_renew_state(&g->run)) == EDGELLM_OK)
        g->state_stale = false;
    if (st == EDGELLM_OK)
        st = carry_to(g, first);
    char message[64];
    snprintf(message, sizeof message, "no memory for layer %d's GPTQ statistics", (int)layer);
    if (st == EDGELLM_OK)
        st = ellm_calib_carry_pass(&g->run, first, layer == HEAD_LAYER ? n_layer : layer + 1, false,
                                   observe_layer, g, &g->failed, message);
    for (int k = 0; st == EDGELLM_OK && k < N_INPUTS; k++) {
        layer_input *in = &g->in[k];
        for (int64_t i = 0; i < in->n; i++)
            for (int64_t j = 0; j < i; j++)
                in->h[j * in->n + i] = in->h[i * in->n + j];
    }
    if (st != EDGELLM_OK)
        free_inputs(g);
    else if (g->params.on_layer)
        g->params.on_layer(g->params.user, layer, ellm_model_hparams(g->run.model)->n_layer,
                           ellm_calib_seconds() - t0);
    return st;
}

edgellm_status ellm_gptq_create(const char *model_path, const edgellm_token *ids, int32_t n_ids,
                                const ellm_gptq_params *p, ellm_gptq **out)
{
    *out = NULL;
    ellm_gptq *g = calloc(1, sizeof *g);
    if (!g)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory");
    g->params = *p;
    g->layer = NO_LAYER;
    edgellm_status st = ellm_calib_open(model_path, ids, n_ids, p->n_ctx, p->n_chunks, p->n_threads,
                                        &g->run);
    if (st == EDGELLM_OK && (st = ellm_calib_carry_open(&g->run)) != EDGELLM_OK)
        ellm_calib_close(&g->run);
    if (st != EDGELLM_OK) {
        free(g);
        return st;
    }
    *out = g;
    return EDGELLM_OK;
}

const gguf_file *ellm_gptq_input(const ellm_gptq *g) { return g->run.file; }

uint64_t ellm_gptq_installed_bytes(const ellm_gptq *g) { return g->installed_bytes; }

/* The layer, input and ellm_layer field of "blk.N.<matrix>.weight", or HEAD_LAYER and
 * ELLM_INPUT_HEAD for "output.weight"; false for other tensors. */
static bool input_of(const char *tensor, int32_t *layer, int *which, size_t *field)
{
    static const struct {
        const char *name;
        int input;
        size_t field;
    } matrices[] = {
        {"attn_q", ELLM_INPUT_ATTN, offsetof(ellm_layer, wq)},
        {"attn_k", ELLM_INPUT_ATTN, offsetof(ellm_layer, wk)},
        {"attn_v", ELLM_INPUT_ATTN, offsetof(ellm_layer, wv)},
        {"attn_qkv", ELLM_INPUT_ATTN, offsetof(ellm_layer, wqkv)},
        {"attn_output", ELLM_INPUT_ATTN_OUT, offsetof(ellm_layer, wo)},
        {"ffn_gate", ELLM_INPUT_FFN, offsetof(ellm_layer, ffn_gate)},
        {"ffn_up", ELLM_INPUT_FFN, offsetof(ellm_layer, ffn_up)},
        {"ffn_down", ELLM_INPUT_FFN_DOWN, offsetof(ellm_layer, ffn_down)},
    };
    if (!strcmp(tensor, "output.weight")) {
        *layer = HEAD_LAYER;
        *which = ELLM_INPUT_HEAD;
        *field = 0;
        return true;
    }
    int il = -1, end = 0;
    char matrix[32];
    if (sscanf(tensor, "blk.%d.%31[a-z_].weight%n", &il, matrix, &end) != 2 || il < 0 ||
        tensor[end] != '\0')
        return false;
    for (size_t i = 0; i < sizeof matrices / sizeof matrices[0]; i++)
        if (!strcmp(matrix, matrices[i].name)) {
            *layer = il;
            *which = matrices[i].input;
            *field = matrices[i].field;
            return true;
        }
    return false;
}

/* Whether `tensor` is an untied token embedding of n_cols-wide rows (tied, it is the output head,
 * whose inputs are not observed here). */
static bool is_untied_embedding(const ellm_gptq *g, const char *tensor, int64_t n_cols)
{
    return !strcmp(tensor, "token_embd.weight") &&
           ellm_gguf_find_tensor(g->run.file, "output.weight") &&
           n_cols == ellm_model_hparams(g->run.model)->n_embd;
}

bool ellm_gptq_covers(const ellm_gptq *g, const char *tensor, ellm_type type, int64_t n_cols)
{
    int32_t layer;
    int which;
    size_t field;
    return ((input_of(tensor, &layer, &which, &field) &&
             layer < ellm_model_hparams(g->run.model)->n_layer) ||
            is_untied_embedding(g, tensor, n_cols)) &&
           ellm_gptq_supports(type, n_cols);
}

/* The inverse factor and importances of an input under the given column scale, with the columns
 * in act-order (descending diag H) when asked. */
static edgellm_status prepare_input(ellm_gptq *g, layer_input *in, const float *col_scale,
                                    bool act_order)
{
    int64_t n = in->n;
    bool same = in->u && (in->order != NULL) == act_order &&
                ((!col_scale && !in->col_scale) ||
                 (col_scale && in->col_scale &&
                  !memcmp(col_scale, in->col_scale, (size_t)n * sizeof *col_scale)));
    if (same)
        return EDGELLM_OK;
    free(in->col_scale);
    free(in->order);
    in->col_scale = NULL;
    in->order = NULL;
    if (!in->u)
        in->u = malloc((size_t)n * (size_t)n * sizeof *in->u);
    if (!in->imp)
        in->imp = malloc((size_t)n * sizeof *in->imp);
    if (col_scale && (in->col_scale = malloc((size_t)n * sizeof *col_scale)))
        memcpy(in->col_scale, col_scale, (size_t)n * sizeof *col_scale);
    float *h = malloc((size_t)n * (size_t)n * sizeof *h);
    if (act_order)
        in->order = malloc((size_t)n * sizeof *in->order);
    edgellm_status st = EDGELLM_OK;
    if (!in->u || !in->imp || !h || (col_scale && !in->col_scale) || (act_order && !in->order))
        st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the inverse Hessian");
    for (int64_t j = 0; st == EDGELLM_OK && j < n; j++) {
        float s = col_scale ? col_scale[j] : 1;
        in->imp[j] = in->h[j * n + j] / (s * s) + 1e-30f;
    }
    if (in->order && st == EDGELLM_OK)
        act_order_of(in->imp, n, in->order);
    for (int64_t i = 0; st == EDGELLM_OK && i < n; i++) {
        int64_t fi = in->order ? in->order[i] : i;
        for (int64_t k = 0; k < n; k++) {
            int64_t fk = in->order ? in->order[k] : k;
            h[i * n + k] = in->h[fi * n + fk] / (col_scale ? col_scale[fi] * col_scale[fk] : 1.0f);
        }
    }
    if (st == EDGELLM_OK)
        st = ellm_gptq_inverse_factor(g->run.pool, h, n, ELLM_GPTQ_DAMP, in->u);
    free(in->h_scaled);
    in->h_scaled = NULL;
    if (st == EDGELLM_OK && col_scale) {
        /* The refit's objective in file order, for the scaled columns. */
        if (in->order && (in->h_scaled = malloc((size_t)n * (size_t)n * sizeof *h)))
            for (int64_t i = 0; i < n; i++)
                for (int64_t k = 0; k < n; k++)
                    in->h_scaled[i * n + k] = in->h[i * n + k] / (col_scale[i] * col_scale[k]);
        else if (!in->order) {
            in->h_scaled = h;
            h = NULL;
        }
        if (!in->h_scaled)
            st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the scaled Hessian");
    }
    free(h);
    if (st != EDGELLM_OK) {
        free(in->u);
        in->u = NULL;
        free(in->order);
        in->order = NULL;
    }
    return st;
}

/* Whether act-order can round the type column by column on block grids chosen up front. */
static bool has_grid(ellm_type type)
{
    switch (type) {
    case ELLM_TYPE_Q4_0:
    case ELLM_TYPE_Q4_1:
    case ELLM_TYPE_Q5_0:
    case ELLM_TYPE_Q5_1:
    case ELLM_TYPE_Q8_0:
    case ELLM_TYPE_IQ4_NL:
    case ELLM_TYPE_Q4_K:
    case ELLM_TYPE_Q5_K:
    case ELLM_TYPE_Q3_K:
    case ELLM_TYPE_Q2_K:
    case ELLM_TYPE_IQ4_XS:
    case ELLM_TYPE_Q6_K: return true;
    default: return false;
    }
}

/* Sequential GPTQ: from now on the calibration model computes with the matrix as quantized, so
 * the later layers' statistics see the earlier layers' rounding errors (the inputs the quantized
 * model will really give them). A folded matrix goes in unfolded, as float; others as their
 * blocks. */
static edgellm_status install_quantized(ellm_gptq *g, const char *tensor, ellm_tensor *t,
                                        ellm_type type, const void *dst, int64_t n_rows,
                                        int64_t n_cols, const ellm_awq *awq)
{
    uint64_t row_bytes = 0;
    ellm_row_bytes(type, (uint64_t)n_cols, &row_bytes);
    int32_t layer = EMBEDDING_LAYER;
    int which;
    size_t field;
    if (strcmp(tensor, "token_embd.weight") != 0)
        input_of(tensor, &layer, &which, &field);
    float *row = malloc((size_t)n_cols * sizeof *row);
    installed_copy *list = realloc(g->installed, (size_t)(g->n_installed + 1) * sizeof *list);
    if (list)
        g->installed = list;
    if (!row || !list) {
        free(row);
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the quantized '%s'", tensor);
    }
    ellm_dequantize_row(type, dst, row, n_cols);
    bool folded = ellm_awq_restore_row(awq, tensor, 0, row, n_cols);
    uint64_t out_row_bytes = folded ? (uint64_t)n_cols * sizeof(float) : row_bytes;
    uint8_t *data = malloc((size_t)(out_row_bytes * (uint64_t)n_rows));
    if (!data) {
        free(row);
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the quantized '%s'", tensor);
    }
    if (!folded)
        memcpy(data, dst, (size_t)(row_bytes * (uint64_t)n_rows));
    for (int64_t r = 0; folded && r < n_rows; r++) {
        float *out = (float *)(data + (uint64_t)r * out_row_bytes);
        ellm_dequantize_row(type, (const uint8_t *)dst + (uint64_t)r * row_bytes, out, n_cols);
        ellm_awq_restore_row(awq, tensor, (uint64_t)r, out, n_cols);
    }
    free(row);
    uint64_t bytes = out_row_bytes * (uint64_t)n_rows;
    g->installed[g->n_installed++] = (installed_copy){t, *t, layer, data, bytes};
    g->installed_bytes += bytes;
    g->state_stale = true;
    /* States carried past the matrix's layer were computed without it. */
    if (layer < g->run.carried_layer)
        g->run.carried_layer = -1;
    t->type = folded ? ELLM_TYPE_F32 : type;
    t->row_bytes = out_row_bytes;
    t->n_bytes = out_row_bytes * (uint64_t)n_rows;
    t->data = data;
    return EDGELLM_OK;
}

/* ---------------------------------------------------------------- the token embedding */

/* The embedding has no input activations, but its rows have consumers: a row r stays in the
 * residual stream, and every layer reads it through RMSNorms, x = r * g / rms, into its attention
 * and FFN matrices W. An error e in the row moves their outputs by W (g * e) / rms, whose square
 * is e^T H e / rms^2 with H = sum over those matrices of diag(g) W^T W diag(g) (every layer counted
 * alike); rms is one number per row, so H serves as the Hessian of every row's rounding. Its
 * diagonal is imatrix.c's importance of the embedding. */
static edgellm_status embedding_hessian(ellm_gptq *g, int64_t n, float *h)
{
    static const char *const readers[2][5] = {
        {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_qkv"},
        {"ffn_norm", "ffn_gate", "ffn_up", NULL, NULL},
    };
    enum { CHUNK = 64 };
    float *gain = malloc((size_t)n * sizeof *gain);
    float *rows = malloc((size_t)CHUNK * (size_t)n * sizeof *rows);
    edgellm_status st = gain && rows ? EDGELLM_OK
                                     : ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory");
    memset(h, 0, (size_t)n * (size_t)n * sizeof *h);
    bool any = false;
    int32_t n_layer = ellm_model_hparams(g->run.model)->n_layer;
    for (int kk = 0; st == EDGELLM_OK && kk < 2 * n_layer; kk++) {
        int k = kk % 2, layer = kk / 2;
        char nm[64];
        snprintf(nm, sizeof nm, "blk.%d.%s.weight", layer, readers[k][0]);
        const gguf_tensor_info *norm = ellm_gguf_find_tensor(g->run.file, nm);
        if (!norm || (int64_t)norm->n_elements != n)
            continue;
        ellm_dequantize_row((ellm_type)norm->type, norm->data, gain, n);
        for (int m = 1; m < 5 && readers[k][m]; m++) {
            snprintf(nm, sizeof nm, "blk.%d.%s.weight", layer, readers[k][m]);
            const gguf_tensor_info *t = ellm_gguf_find_tensor(g->run.file, nm);
            uint64_t row_bytes = 0;
            if (!t || t->n_dims != 2 || (int64_t)t->ne[0] != n ||
                !ellm_row_bytes(t->type, t->ne[0], &row_bytes))
                continue;
            any = true;
            for (uint64_t r0 = 0; r0 < t->ne[1]; r0 += CHUNK) {
                int32_t nr = (int32_t)(t->ne[1] - r0 < CHUNK ? t->ne[1] - r0 : CHUNK);
                for (int32_t r = 0; r < nr; r++) {
                    float *x = rows + (size_t)r * (size_t)n;
                    ellm_dequantize_row((ellm_type)t->type,
                                        (const uint8_t *)t->data + (r0 + (uint64_t)r) * row_bytes,
                                        x, n);
                    for (int64_t j = 0; j < n; j++)
                        x[j] *= gain[j];
                }
                accumulate a = {h, rows, nr, n};
                ellm_threadpool_run(g->run.pool, accumulate_rows, &a);
            }
        }
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < i; j++)
            h[j * n + i] = h[i * n + j];
    if (st == EDGELLM_OK && !any)
        st = ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                       "GPTQ: the model has no attention or FFN input matrices of %lld columns "
                       "to weigh the token embedding by",
                       (long long)n);
    free(gain);
    free(rows);
    return st;
}

static edgellm_status quantize_embedding(ellm_gptq *g, ellm_type type, float *w, int64_t n_rows,
                                         int64_t n, void *dst)
{
    float *h = malloc((size_t)n * (size_t)n * sizeof *h);
    float *u = malloc((size_t)n * (size_t)n * sizeof *u);
    float *imp = malloc((size_t)n * sizeof *imp);
    edgellm_status st = h && u && imp ? embedding_hessian(g, n, h)
                                      : ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY,
                                                  "no memory for the embedding's GPTQ");
    if (st == EDGELLM_OK)
        st = ellm_gptq_inverse_factor(g->run.pool, h, n, ELLM_GPTQ_DAMP, u);
    for (int64_t j = 0; st == EDGELLM_OK && j < n; j++)
        imp[j] = h[j * n + j] + 1e-30f;
    if (st == EDGELLM_OK)
        st = quantize_with_factor(g->run.pool, type, w, n_rows, n, u, h, imp, NULL, true, 0, dst);
    if (st == EDGELLM_OK)
        st = install_quantized(g, "token_embd.weight",
                               (ellm_tensor *)&ellm_model_weights(g->run.model)->tok_embd, type,
                               dst, n_rows, n, NULL);
    free(h);
    free(u);
    free(imp);
    return st;
}

/* ---------------------------------------------------------------- the logits' view */

typedef struct plain_rows {
    const gguf_tensor_info *t;
    ellm_type type;
    uint8_t *dst;
    uint64_t src_rb, dst_rb;
    bool no_memory;
} plain_rows;

static void round_rows_plainly(void *arg, int ith, int nth)
{
    plain_rows *j = arg;
    int64_t n = (int64_t)j->t->ne[0];
    float *row = malloc((size_t)n * sizeof *row);
    if (!row) {
        j->no_memory = true;
        return;
    }
    for (uint64_t r = (uint64_t)ith; r < j->t->n_elements / j->t->ne[0]; r += (uint64_t)nth) {
        ellm_dequantize_row((ellm_type)j->t->type, (const uint8_t *)j->t->data + r * j->src_rb, row,
                            n);
        ellm_quantize_row(j->type, row, j->dst + r * j->dst_rb, n);
    }
    free(row);
}

/* KL(p || q) of one position's logits, in nats. */
static double logits_kl(const float *p, const float *q, int32_t n_vocab)
{
    float mp = p[0], mq = q[0];
    for (int32_t v = 1; v < n_vocab; v++) {
        mp = p[v] > mp ? p[v] : mp;
        mq = q[v] > mq ? q[v] : mq;
    }
    double zp = 0, zq = 0, cross = 0;
    for (int32_t v = 0; v < n_vocab; v++) {
        double ep = exp((double)(p[v] - mp));
        zp += ep;
        zq += exp((double)(q[v] - mq));
        cross += ep * ((double)(p[v] - mp) - (double)(q[v] - mq));
    }
    return cross / zp - log(zp) + log(zq);
}

edgellm_status ellm_gptq_logit_kl(ellm_gptq *g, const char *const *tensors, int n,
                                  const ellm_type *types, int n_plans, double *kl)
{
    enum { MAX_SWAPPED = 4, MAX_PLANS = 4 };
    for (int p = 0; p < n_plans && p < MAX_PLANS; p++)
        kl[p] = 0;
    if (n < 0 || n > MAX_SWAPPED || n_plans < 1 || n_plans > MAX_PLANS)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "GPTQ: at most %d weights and %d plans per KL measure", MAX_SWAPPED,
                         MAX_PLANS);
    const ellm_weights *weights = ellm_model_weights(g->run.model);
    ellm_tensor *slot[MAX_SWAPPED], given[MAX_SWAPPED], rounded[MAX_PLANS][MAX_SWAPPED];
    uint8_t *data[MAX_PLANS][MAX_SWAPPED] = {{NULL}};
    int found = 0;
    edgellm_status st = EDGELLM_OK;
    for (int k = 0; st == EDGELLM_OK && k < n; k++) {
        /* Only the ends of the model: a layer matrix swapped here would leave GPTQ's statistics
         * of later layers computed with it. */
        slot[k] = !strcmp(tensors[k], "token_embd.weight") ? (ellm_tensor *)&weights->tok_embd
                  : !strcmp(tensors[k], "output.weight") &&
                          weights->output.data != weights->tok_embd.data
                      ? (ellm_tensor *)&weights->output
                      : NULL;
        if (!slot[k])
            st = ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                           "GPTQ: '%s' is not the token embedding or an untied output head",
                           tensors[k]);
        else
            given[found++] = *slot[k];
    }
    for (int pk = 0; st == EDGELLM_OK && pk < n_plans * n; pk++) {
        int p = pk / n, k = pk % n;
        ellm_type type = types[pk];
        const gguf_tensor_info *t = ellm_gguf_find_tensor(g->run.file, tensors[k]);
        plain_rows j = {t, type, NULL, 0, 0, false};
        if (!t || t->n_dims != 2 || t->ne[0] % ellm_type_traits_of(type)->block_size ||
            !ellm_row_bytes(t->type, t->ne[0], &j.src_rb) ||
            !ellm_row_bytes(type, t->ne[0], &j.dst_rb)) {
            st = ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                           "GPTQ: cannot measure '%s' as %s at the logits", tensors[k],
                           ellm_type_name(type));
            break;
        }
        data[p][k] = j.dst = malloc((size_t)(j.dst_rb * (t->n_elements / t->ne[0])));
        if (j.dst)
            ellm_threadpool_run(g->run.pool, round_rows_plainly, &j);
        if (!j.dst || j.no_memory) {
            st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for '%s' as %s", tensors[k],
                           ellm_type_name(type));
            break;
        }
        rounded[p][k] = given[k];
        rounded[p][k].type = type;
        rounded[p][k].row_bytes = j.dst_rb;
        rounded[p][k].n_bytes = j.dst_rb * (t->n_elements / t->ne[0]);
        rounded[p][k].data = j.dst;
    }
    /* One state per plan and one for the model as given, each sized for the weights it computes
     * with, advance through the same chunks batch by batch, the weights swapped between them. */
    const ellm_calib_run *r = &g->run;
    int32_t n_vocab = ellm_model_hparams(r->model)->n_vocab;
    ellm_state_params sp = {.n_ctx = r->n_ctx,
                            .n_batch = r->n_batch,
                            .kv_type = EDGELLM_KV_F32,
                            .n_threads = ellm_threadpool_size(r->pool)};
    ellm_state *ref = NULL, *test[MAX_PLANS] = {NULL};
    float *ref_logits = malloc((size_t)r->n_batch * (size_t)n_vocab * sizeof *ref_logits);
    if (st == EDGELLM_OK && !ref_logits)
        st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the calibration logits");
    if (st == EDGELLM_OK)
        st = ellm_state_create(r->model, &sp, &ref);
    for (int p = 0; st == EDGELLM_OK && p < n_plans; p++) {
        for (int k = 0; k < n; k++)
            *slot[k] = rounded[p][k];
        st = ellm_state_create(r->model, &sp, &test[p]);
    }
    double sum[MAX_PLANS] = {0};
    int64_t positions = 0;
    for (int32_t chunk = 0; st == EDGELLM_OK && chunk < r->n_chunks; chunk++) {
        ellm_state_truncate(ref, 0);
        for (int p = 0; p < n_plans; p++)
            ellm_state_truncate(test[p], 0);
        const edgellm_token *tok = r->ids + (size_t)chunk * (size_t)r->n_ctx;
        for (int32_t done = 0; st == EDGELLM_OK && done < r->n_ctx; done += r->n_batch) {
            int32_t nb = r->n_ctx - done < r->n_batch ? r->n_ctx - done : r->n_batch;
            for (int k = 0; k < n; k++)
                *slot[k] = given[k];
            st = ellm_forward(r->model, ref, r->pool, tok + done, nb, true, ref_logits);
            for (int p = 0; st == EDGELLM_OK && p < n_plans; p++) {
                for (int k = 0; k < n; k++)
                    *slot[k] = rounded[p][k];
                st = ellm_forward(r->model, test[p], r->pool, tok + done, nb, true, r->logits);
                for (int32_t i = 0; st == EDGELLM_OK && i < nb; i++)
                    sum[p] += logits_kl(ref_logits + (size_t)i * (size_t)n_vocab,
                                        r->logits + (size_t)i * (size_t)n_vocab, n_vocab);
            }
            positions += nb;
        }
    }
    for (int k = 0; k < found; k++)
        *slot[k] = given[k];
    ellm_state_free(ref);
    for (int p = 0; p < n_plans; p++) {
        ellm_state_free(test[p]);
        for (int k = 0; k < n; k++)
            free(data[p][k]);
    }
    free(ref_logits);
    for (int p = 0; p < n_plans; p++)
        kl[p] = st == EDGELLM_OK && positions ? sum[p] / (double)positions : 0;
    return st;
}

/* ---------------------------------------------------------------- gated FFN rows */

/* X^T X weighs every calibration token alike, but an error in output r of ffn_gate or ffn_up
 * reaches the FFN through the SwiGLU product silu(g_r) u_r: scaled by silu(g_r) for up and by
 * silu'(g_r) u_r for gate, factors that differ by token and by row. So each row gets its own
 * Hessian, H_r = sum over tokens of a_t x_t x_t^T, a_t that factor squared. */
typedef struct gated_job {
    const float *x;
    int64_t n_tok, n, n_rows;
    const float *gate, *gate0, *up;
    bool is_gate;
    ellm_type type;
    float damp;
    float *w;
    uint8_t *dst;
    uint64_t row_bytes;
    float *scratch; /* per thread: 2 n^2 + 3 n + n_tok floats */
    /* Set by the worker whose row failed, read by all of them to stop early: atomic, or it is a
     * data race (ThreadSanitizer on test_attack_s9_gptq's NaN activations). */
    atomic_bool failed;
} gated_job;

static float silu(float z) { return z / (1.0f + expf(-z)); }

/* For up, once the gate is rounded: the row that makes silu(g') u' closest to silu(g) u under
 * the same weights, w + (H + lambda I)^-1 sum_t x_t silu(g'_t) u_t (silu(g_t) - silu(g'_t)), with
 * U^T U = (H + lambda I)^-1 (c: n floats, overwritten; uc: n floats). */
static void retarget_up(const gated_job *f, int64_t r, const float *u, float *c, float *uc)
{
    int64_t n = f->n;
    const float *g1 = f->gate + r * n, *g0 = f->gate0 + r * n, *up = f->up + r * n;
    memset(c, 0, (size_t)n * sizeof *c);
    for (int64_t t = 0; t < f->n_tok; t++) {
        const float *xt = f->x + t * n;
        float z1 = 0, z0 = 0, zu = 0;
        for (int64_t i = 0; i < n; i++) {
            z1 += g1[i] * xt[i];
            z0 += g0[i] * xt[i];
            zu += up[i] * xt[i];
        }
        float s1 = silu(z1), k = s1 * zu * (silu(z0) - s1);
        for (int64_t i = 0; k != 0 && i < n; i++)
            c[i] += k * xt[i];
    }
    for (int64_t i = 0; i < n; i++) {
        float t = 0;
        for (int64_t j = i; j < n; j++)
            t += u[i * n + j] * c[j];
        uc[i] = t;
    }
    float *wr = f->w + r * n;
    for (int64_t j = 0; j < n; j++) {
        float t = 0;
        for (int64_t i = 0; i <= j; i++)
            t += u[i * n + j] * uc[i];
        wr[j] += t;
    }
}

static void gated_rows(void *arg, int ith, int nth)
{
    gated_job *f = arg;
    int64_t n = f->n;
    float *h = f->scratch + (size_t)ith * (size_t)(2 * n * n + 3 * n + f->n_tok);
    float *u = h + n * n, *imp = u + n * n, *c = imp + n, *uc = c + n, *a = uc + n;
    for (int64_t r = ith; r < f->n_rows && !atomic_load(&f->failed); r += nth) {
        const float *gr = f->gate + r * n, *ur = f->up + r * n;
        for (int64_t t = 0; t < f->n_tok; t++) {
            const float *xt = f->x + t * n;
            float zg = 0, zu = 0;
            for (int64_t i = 0; i < n; i++) {
                zg += gr[i] * xt[i];
                zu += ur[i] * xt[i];
            }
            float sg = 1.0f / (1.0f + expf(-zg));
            float k = f->is_gate ? sg * (1.0f + zg * (1.0f - sg)) * zu : zg * sg;
            a[t] = k * k;
        }
        memset(h, 0, (size_t)(n * n) * sizeof *h);
        for (int64_t t = 0; t < f->n_tok; t++) {
            const float *xt = f->x + t * n;
            for (int64_t i = 0; a[t] != 0 && i < n; i++) {
                float v = a[t] * xt[i];
                for (int64_t j = 0; j <= i; j++)
                    h[i * n + j] += v * xt[j];
            }
        }
        for (int64_t i = 0; i < n; i++) {
            for (int64_t j = 0; j < i; j++)
                h[j * n + i] = h[i * n + j];
            imp[i] = h[i * n + i] + 1e-30f;
        }
        if (ellm_gptq_inverse_factor(NULL, h, n, f->damp, u) != EDGELLM_OK) {
            atomic_store(&f->failed, true);
            break;
        }
        if (f->gate0 && !f->is_gate)
            retarget_up(f, r, u, c, uc);
        if (quantize_with_factor(NULL, f->type, f->w + r * n, 1, n, u, h, imp, NULL, true, 0,
                                 f->dst + (uint64_t)r * f->row_bytes) != EDGELLM_OK)
            atomic_store(&f->failed, true);
    }
}

edgellm_status ellm_gptq_quantize_gated(ellm_threadpool *pool, ellm_type type, float *w,
                                        int64_t n_rows, int64_t n, const float *x, int64_t n_tok,
                                        const float *gate, const float *gate0, const float *up,
                                        bool is_gate, float damp, void *dst)
{
    if (!ellm_gptq_supports(type, n))
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "GPTQ cannot round %lld-wide rows to %s",
                         (long long)n, ellm_type_name(type));
    int nth = pool ? ellm_threadpool_size(pool) : 1;
    gated_job f = {.x = x,
                   .n_tok = n_tok,
                   .n = n,
                   .n_rows = n_rows,
                   .gate = gate,
                   .gate0 = gate0,
                   .up = up,
                   .is_gate = is_gate,
                   .type = type,
                   .damp = damp,
                   .w = w,
                   .dst = dst};
    atomic_init(&f.failed, false);
    ellm_row_bytes(type, (uint64_t)n, &f.row_bytes);
    f.scratch = malloc((size_t)nth * (size_t)(2 * n * n + 3 * n + n_tok) * sizeof *f.scratch);
    if (!f.scratch)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for GPTQ's per-row Hessians");
    ellm_threadpool_run(pool, gated_rows, &f);
    free(f.scratch);
    if (atomic_load(&f.failed))
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "GPTQ: a per-row Hessian could not be factored (NaN or infinite "
                         "activations)");
    return EDGELLM_OK;
}

/* Whether tensor (ffn_gate or ffn_up of the layer held) gets per-row Hessians: a SwiGLU FFN whose
 * inputs were kept and whose rows are cheap enough (tokens x rows x n^2 / 2 multiply-adds). */
static bool gated_rows_apply(const ellm_gptq *g, const char *tensor, int32_t layer, int which,
                             int64_t n_rows, int64_t n_cols)
{
    if (which != ELLM_INPUT_FFN || layer < 0 || !g->ffn_x ||
        g->ffn_rows < ROW_HESSIAN_MIN_TOKENS * n_cols || g->params.act_order ||
        ellm_model_hparams(g->run.model)->gelu_ffn ||
        (double)g->ffn_rows * (double)n_rows * (double)n_cols * (double)n_cols / 2 >
            ROW_HESSIAN_MAX_WORK ||
        (!strstr(tensor, ".ffn_gate.") && !strstr(tensor, ".ffn_up.")))
        return false;
    const ellm_layer *l = &ellm_model_weights(g->run.model)->layers[layer];
    return l->ffn_gate.data && l->ffn_up.data && l->ffn_gate.ne[0] == n_cols &&
           l->ffn_up.ne[0] == n_cols && l->ffn_gate.ne[1] == n_rows && l->ffn_up.ne[1] == n_rows;
}

static float *dequantized(ellm_type type, const void *data, int64_t n_rows, int64_t n)
{
    uint64_t rb = 0;
    float *out = malloc((size_t)(n_rows * n) * sizeof *out);
    if (!out || !ellm_row_bytes(type, (uint64_t)n, &rb)) {
        free(out);
        return NULL;
    }
    for (int64_t r = 0; r < n_rows; r++)
        ellm_dequantize_row(type, (const uint8_t *)data + (uint64_t)r * rb, out + r * n, n);
    return out;
}

/* The gate and up the model computes with now (the gate rounded when it came first), and the
 * gate as given where it differs. */
static edgellm_status quantize_gated_tensor(ellm_gptq *g, const char *tensor, int32_t layer,
                                            ellm_type type, float *w, int64_t n_rows, int64_t n,
                                            void *dst)
{
    const ellm_layer *l = &ellm_model_weights(g->run.model)->layers[layer];
    char nm[64];
    snprintf(nm, sizeof nm, "blk.%d.ffn_gate.weight", (int)layer);
    const gguf_tensor_info *g0 = ellm_gguf_find_tensor(g->run.file, nm);
    bool retarget = g0 && g0->n_dims == 2 && (int64_t)g0->ne[0] == n &&
                    (int64_t)g0->ne[1] == n_rows && g0->data != l->ffn_gate.data;
    float *gate = dequantized(l->ffn_gate.type, l->ffn_gate.data, n_rows, n);
    float *up = dequantized(l->ffn_up.type, l->ffn_up.data, n_rows, n);
    float *gate0 = retarget ? dequantized((ellm_type)g0->type, g0->data, n_rows, n) : NULL;
    edgellm_status st = gate && up && (gate0 || !retarget)
                            ? ellm_gptq_quantize_gated(g->run.pool, type, w, n_rows, n, g->ffn_x,
                                                       g->ffn_rows, gate, gate0, up,
                                                       strstr(tensor, ".ffn_gate.") != NULL,
                                                       ELLM_GPTQ_DAMP, dst)
                            : ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY,
                                        "no memory for '%s''s per-row Hessians", tensor);
    free(gate);
    free(up);
    free(gate0);
    return st;
}

edgellm_status ellm_gptq_quantize_tensor(ellm_gptq *g, const char *tensor, ellm_type type, float *w,
                                         int64_t n_rows, int64_t n_cols, const ellm_awq *awq,
                                         void *dst)
{
    int32_t layer;
    int which;
    size_t field;
    if (ellm_gptq_covers(g, tensor, type, n_cols) && is_untied_embedding(g, tensor, n_cols))
        return quantize_embedding(g, type, w, n_rows, n_cols, dst);
    if (!ellm_gptq_covers(g, tensor, type, n_cols) || !input_of(tensor, &layer, &which, &field))
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "GPTQ does not cover '%s' as %s", tensor,
                         ellm_type_name(type));
    edgellm_status st = layer == g->layer ? EDGELLM_OK : collect_layer(g, layer);
    if (st != EDGELLM_OK)
        return st;
    layer_input *in = &g->in[which];
    const ellm_weights *weights = ellm_model_weights(g->run.model);
    ellm_tensor *t = layer == HEAD_LAYER ? (ellm_tensor *)&weights->output
                                         : (ellm_tensor *)((char *)&weights->layers[layer] + field);
    if (!in->h || in->n != n_cols || t->ne[0] != n_cols || t->ne[1] != n_rows)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "'%s' has %lld input columns but the model's forward pass gives it %lld",
                         tensor, (long long)n_cols, (long long)in->n);
    if (!ellm_awq_column_scales(awq, tensor, n_cols) &&
        gated_rows_apply(g, tensor, layer, which, n_rows, n_cols)) {
        st = quantize_gated_tensor(g, tensor, layer, type, w, n_rows, n_cols, dst);
        if (st == EDGELLM_OK)
            st = install_quantized(g, tensor, t, type, dst, n_rows, n_cols, awq);
        return st;
    }
    bool act_order = g->params.act_order && has_grid(type);
    st = prepare_input(g, in, ellm_awq_column_scales(awq, tensor, n_cols), act_order);
    float *permuted = in->order ? malloc((size_t)n_cols * sizeof *permuted) : NULL;
    if (st == EDGELLM_OK && in->order && !permuted)
        st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for GPTQ's column order");
    for (int64_t r = 0; st == EDGELLM_OK && permuted && r < n_rows; r++) {
        for (int64_t i = 0; i < n_cols; i++)
            permuted[i] = w[r * n_cols + in->order[i]];
        memcpy(w + r * n_cols, permuted, (size_t)n_cols * sizeof *permuted);
    }
    free(permuted);
    if (st == EDGELLM_OK)
        st = quantize_with_factor(g->run.pool, type, w, n_rows, n_cols, in->u,
                                  in->h_scaled ? in->h_scaled : in->h, in->imp, in->order, true, 0,
                                  dst);
    /* Nothing computes with the head before the logits: no later statistics depend on it. */
    if (st == EDGELLM_OK && layer != HEAD_LAYER)
        st = install_quantized(g, tensor, t, type, dst, n_rows, n_cols, awq);
    return st;
}

void ellm_gptq_free(ellm_gptq *g)
{
    if (!g)
        return;
    free_inputs(g);
    ellm_calib_close(&g->run);
    for (int i = 0; i < g->n_installed; i++)
        free(g->installed[i].data);
    free(g->installed);
    free(g);
}
