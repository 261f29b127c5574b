/* WebAssembly SIMD128 tiles of weight rows × tokens (see ellm_gemm_fn) for Q4_0, Q8_0, Q5_0 and
 * IQ4_NL against extended Q8_0 activations, Q4_1 and Q5_1 against plain Q8_1 rows, and Q4_K,
 * Q5_K, Q6_K, IQ4_XS, Q2_K and Q3_K against Q8_K rows.
 *
 * Four weight rows share a vector: their widened values are interleaved by pairs (pair_group), so
 * i32x4.dot_i16x8 against one activation pair in every lane adds into each row's own lane, and
 * lane r ends with row r's exact block sum. The float work then runs on four rows at once with
 * the scalar kernel's operations in its order (scale product, times the block sum, added to the
 * row's running sum in block order; WebAssembly has no fused multiply-add to round differently),
 * so every value is bit-identical to the scalar kernel and to the single-row wasm-simd kernels,
 * whatever the tile.
 *
 * What is shared: a block of up to 16 rows is widened to 16-bit values once (for K-quants with
 * each sub-block's scale already multiplied in, which keeps the sum exact: at most 63 × 31 or
 * 127 × 32 in 16 bits) and reused by every token of the step; a token's block of activations is
 * widened once and reused by every row; each weight vector loaded meets 4 tokens and each
 * activation pair 2 row groups.
 *
 * The wasm-relaxed set's Q4_0, Q4_K, Q5_K and Q6_K tiles (the ellm_gemm_*_wasm_relaxed entry
 * points at the end) share the driver: their weight levels stay bytes before any offset or scale
 * (below 64), four of a row in its 32-bit lane, and relaxed SIMD's dot multiplies them by 4 bytes
 * of a token splat across the lanes, 16 products per instruction instead of 8; the dots of a run
 * of a sub-block add up in 16 bits (exact: see the entry points), i32x4.dot_i16x8 multiplies them
 * by the sub-block's scale into 32 bits, and the formats' offsets come off through the
 * activations' block sums, so the integer sums, and with the same float steps every value, are
 * the scalar kernels'. */
#if defined(__wasm_simd128__)
#include <stdbool.h>
#include <string.h>
#include <wasm_simd128.h>

#include "quant/blocks.h"
#include "quant/kernels.h"
#include "quant/kquants.h"
#include "quant/lanes_wasm_simd.h"
#include "quant/quant.h"
#include "quant/reference_kquants_low.h"

enum {
    GROUP = 4,        /* rows in the four lanes */
    MAX_GROUPS = 4,   /* groups whose block is widened at once: 16 rows */
    TOKEN_STEP = 128, /* tokens whose running sums are kept while a block is reused */
    TILE_GROUPS = 2,  /* groups and tokens whose sums one pass over a block keeps in registers */
    TILE_TOKENS = 4,  /* (8 accumulators, 2 weight vectors and an activation pair: 11 of V8's 16) */
    LEGACY_VECS = 4,  /* 16-bit vectors per 32-value block */
    KQUANT_VECS = 32, /* 16-bit vectors per 256-value super-block */
    KQUANT_PAIRS = 128 /* pairs of values per super-block */
};

/* How a format's block meets the tile. wasm-simd: vecs 16-bit vectors per row, in pair order.
 * wasm-relaxed (vecs 0): the levels stay bytes, four of a row in its 32-bit lane, and a block is
 * subs sub-blocks of spans runs of span byte vectors; a run's relaxed dots add up in 16 bits, and
 * each run's sums meet the sub-block's scale in i32x4.dot_i16x8. */
typedef struct tile_shape {
    int vecs;
    int subs, spans, span;
    bool mins;
} tile_shape;

#define PAIR_SHAPE(vecs_, mins_) ((tile_shape){.vecs = (vecs_), .mins = (mins_)})

/* One block of GROUP rows, widened: w[r] holds row r's values (for K-quants times their
 * sub-block scales), mins[r] Q4_K/Q5_K's mins each twice (to meet the 16 bsums), d and dmin the
 * rows' scales as floats in lanes (dmin holds the "_1" formats' minimum m). */
typedef struct row_group {
    v128_t w[GROUP][KQUANT_VECS]; /* relaxed: the first 16 hold the block's levels as bytes */
    v128_t sub_scales[GROUP][4];  /* relaxed: each sub-block's scale twice, as 16-bit lanes */
    v128_t bytes[GROUP][2];       /* the 32-value formats: values 0-15 and 16-31 as signed bytes */
    v128_t mins[GROUP][2];
    v128_t d, dmin;
} row_group;

/* The same block as the tile reads it: vector k holds values 2k and 2k + 1 of row r in 32-bit
 * lane r, so i32x4.dot_i16x8 against a pair of activations in every lane adds to each row's own
 * lane, and a group's block sums come out in lanes with no transposition per token. */
typedef struct pair_group {
    v128_t w[KQUANT_PAIRS];
    v128_t sub_scales[16]; /* relaxed: vector s holds sub-block s's scale of row r in lane r */
    v128_t mins[8];
    v128_t d, dmin;
} pair_group;

/* One token's block of activations widened to 16 bits, in value order (a pair of them is one
 * 32-bit load splat across the lanes), Q8_K's 16 sums, and its scale in every lane. */
typedef struct act_row {
    int16_t a[QK_K];
    int8_t q[QK_K]; /* relaxed: the values as they are */
    int16_t bsums[QK_K / 16];
    v128_t d, s;      /* s: Q8_1's d times the sum of the values */
    v128_t block_sum; /* relaxed Q4_0: the extended row's block sum in every lane */
} act_row;

static inline void widen_i8(v128_t v, v128_t *out)
{
    out[0] = wasm_i16x8_extend_low_i8x16(v);
    out[1] = wasm_i16x8_extend_high_i8x16(v);
}

static inline void widen_i8_to(v128_t v, int16_t *out)
{
    wasm_v128_store(out, wasm_i16x8_extend_low_i8x16(v));
    wasm_v128_store(out + 8, wasm_i16x8_extend_high_i8x16(v));
}

/* Vectors j of the four rows (four pairs each) become pair vectors 4j..4j+3. */
static inline void interleave4(const v128_t *r0, const v128_t *r1, const v128_t *r2,
                               const v128_t *r3, int n, v128_t *out)
{
    for (int j = 0; j < n; j++) {
        v128_t ab_lo = wasm_i32x4_shuffle(r0[j], r1[j], 0, 4, 1, 5);
        v128_t ab_hi = wasm_i32x4_shuffle(r0[j], r1[j], 2, 6, 3, 7);
        v128_t cd_lo = wasm_i32x4_shuffle(r2[j], r3[j], 0, 4, 1, 5);
        v128_t cd_hi = wasm_i32x4_shuffle(r2[j], r3[j], 2, 6, 3, 7);
        out[4 * j] = wasm_i32x4_shuffle(ab_lo, cd_lo, 0, 1, 4, 5);
        out[4 * j + 1] = wasm_i32x4_shuffle(ab_lo, cd_lo, 2, 3, 6, 7);
        out[4 * j + 2] = wasm_i32x4_shuffle(ab_hi, cd_hi, 0, 1, 4, 5);
        out[4 * j + 3] = wasm_i32x4_shuffle(ab_hi, cd_hi, 2, 3, 6, 7);
    }
}

/* The 32-value formats' bytes straight into pair order: the four rows' byte pairs interleaved
 * (16-bit, then 32-bit units) put each row's pair k in 32-bit lane r of 8 bytes, which
 * i16x8.extend widens in place: half the shuffles of widening first, and no round trip. */
static inline void bytes_to_pairs(const row_group *g, v128_t *out)
{
    for (int h = 0; h < 2; h++)
        for (int half = 0; half < 2; half++) {
            v128_t ab = half ? wasm_i16x8_shuffle(g->bytes[0][h], g->bytes[1][h], 4, 12, 5, 13, 6,
                                                  14, 7, 15)
                             : wasm_i16x8_shuffle(g->bytes[0][h], g->bytes[1][h], 0, 8, 1, 9, 2, 10,
                                                  3, 11);
            v128_t cd = half ? wasm_i16x8_shuffle(g->bytes[2][h], g->bytes[3][h], 4, 12, 5, 13, 6,
                                                  14, 7, 15)
                             : wasm_i16x8_shuffle(g->bytes[2][h], g->bytes[3][h], 0, 8, 1, 9, 2, 10,
                                                  3, 11);
            v128_t *o = out + 8 * h + 4 * half;
            widen_i8(wasm_i32x4_shuffle(ab, cd, 0, 4, 1, 5), o);
            widen_i8(wasm_i32x4_shuffle(ab, cd, 2, 6, 3, 7), o + 2);
        }
}

static void to_pairs(const row_group *g, tile_shape shape, pair_group *p)
{
    if (!shape.vecs) {
        interleave4(g->w[0], g->w[1], g->w[2], g->w[3], shape.subs * shape.spans * shape.span / 4,
                    p->w);
        interleave4(g->sub_scales[0], g->sub_scales[1], g->sub_scales[2], g->sub_scales[3],
                    (shape.subs + 3) / 4, p->sub_scales);
    } else if (shape.vecs == LEGACY_VECS) {
        bytes_to_pairs(g, p->w);
    } else {
        interleave4(g->w[0], g->w[1], g->w[2], g->w[3], shape.vecs, p->w);
    }
    if (shape.mins)
        interleave4(g->mins[0], g->mins[1], g->mins[2], g->mins[3], 2, p->mins);
    p->d = g->d;
    p->dmin = g->dmin;
}

/* sums[g][t], lane r: the exact integer sum over n pairs of row r of group g (at w + g * w_stride)
 * times token t's pairs (at a + t * a_stride). Called with constant counts and strides, so that
 * the accumulators stay in registers and every load is one pointer plus a constant: Emscripten
 * builds without loop strength reduction, and V8 recomputed each indexed address from k. */
static inline __attribute__((always_inline)) void pair_sums(const v128_t *w, ptrdiff_t w_stride,
                                                            int ng, const int16_t *a,
                                                            ptrdiff_t a_stride, int nt, int n,
                                                            v128_t sums[TILE_GROUPS][TILE_TOKENS])
{
    v128_t acc[TILE_GROUPS][TILE_TOKENS];
    for (int g = 0; g < ng; g++)
        for (int t = 0; t < nt; t++)
            acc[g][t] = wasm_i32x4_splat(0);
    for (const v128_t *end = w + n; w < end; w++, a += 2) {
        v128_t wk[TILE_GROUPS];
        for (int g = 0; g < ng; g++)
            wk[g] = load(w + g * w_stride);
        for (int t = 0; t < nt; t++) {
            v128_t ak = wasm_v128_load32_splat(a + t * a_stride);
            for (int g = 0; g < ng; g++)
                acc[g][t] = wasm_i32x4_add(acc[g][t], wasm_i32x4_dot_i16x8(wk[g], ak));
        }
    }
    for (int g = 0; g < ng; g++)
        for (int t = 0; t < nt; t++)
            sums[g][t] = acc[g][t];
}

/* The relaxed tiles' pair_sums: sums[g][t], lane r, the exact integer sum of row r of group
 * g's block (levels as bytes at w, sub-block scales at scales, both g * w_stride further per
 * group) times token t's bytes (at a + t * a_stride). A run's dots of at most 16 products of a
 * level below 32 (or 8 of one below 64) and an activation stay within 16 bits (shape's bounds,
 * see the entry points), then i32x4.dot_i16x8 multiplies them by the scale into 32 bits. */
static inline __attribute__((always_inline)) void
byte_sums(const v128_t *w, const v128_t *scales, ptrdiff_t w_stride, int ng, const int8_t *a,
          ptrdiff_t a_stride, int nt, tile_shape shape, v128_t sums[TILE_GROUPS][TILE_TOKENS])
{
    /* 2 groups x 4 tokens: 8 accumulators and 8 16-bit sums, more than V8's 16 registers hold
     * with the operands, measured faster than 2 x 2 all the same (docs/web.md, session 15). */
    v128_t acc[TILE_GROUPS][TILE_TOKENS];
    for (int g = 0; g < ng; g++)
        for (int t = 0; t < nt; t++)
            acc[g][t] = wasm_i32x4_splat(0);
    for (const v128_t *end = scales + shape.subs; scales < end; scales++)
        for (int run = 0; run < shape.spans; run++) {
            v128_t part[TILE_GROUPS][TILE_TOKENS];
            for (int v = 0; v < shape.span; v++, w++, a += 4) {
                v128_t wk[TILE_GROUPS];
                for (int g = 0; g < ng; g++)
                    wk[g] = load(w + g * w_stride);
                for (int t = 0; t < nt; t++) {
                    v128_t ak = wasm_v128_load32_splat(a + t * a_stride);
                    for (int g = 0; g < ng; g++) {
                        v128_t p = relaxed_dot_i8_i7(ak, wk[g]);
                        part[g][t] = v ? wasm_i16x8_add(part[g][t], p) : p;
                    }
                }
            }
            for (int g = 0; g < ng; g++) {
                v128_t sc = load(scales + g * w_stride);
                for (int t = 0; t < nt; t++)
                    acc[g][t] = wasm_i32x4_add(acc[g][t], wasm_i32x4_dot_i16x8(part[g][t], sc));
            }
        }
    for (int g = 0; g < ng; g++)
        for (int t = 0; t < nt; t++)
            sums[g][t] = acc[g][t];
}

static inline v128_t scales_of(const uint8_t *const rows[GROUP], size_t at)
{
    uint16_t h[GROUP];
    for (int r = 0; r < GROUP; r++)
        memcpy(&h[r], rows[r] + at, sizeof h[r]);
    return halves_to_f32x4(wasm_i32x4_make(h[0], h[1], h[2], h[3]));
}

/* ---- Q4_0 and Q8_0 against extended Q8_0 rows ---- */

/* Q4_0's values (nibbles - 8) as signed bytes, or for the relaxed tile its nibbles, whose offset
 * comes off through the activations' block sums, with a sub-block scale of 1. */
static inline __attribute__((always_inline)) void q4_0_rows(const uint8_t *const rows[GROUP],
                                                            int64_t b, bool relaxed, row_group *g)
{
    const v128_t low4 = wasm_i8x16_splat(0x0F), eight = wasm_i8x16_splat(relaxed ? 0 : 8);
    size_t at = (size_t)b * sizeof(block_q4_0);
    for (int r = 0; r < GROUP; r++) {
        v128_t q = load(rows[r] + at + offsetof(block_q4_0, qs));
        v128_t *out = relaxed ? g->w[r] : g->bytes[r];
        out[0] = wasm_i8x16_sub(wasm_v128_and(q, low4), eight);
        out[1] = wasm_i8x16_sub(wasm_u8x16_shr(q, 4), eight);
        if (relaxed)
            g->sub_scales[r][0] = wasm_i16x8_splat(1);
    }
    g->d = scales_of(rows, at + offsetof(block_q4_0, d));
}

static void q4_0_group(const uint8_t *const rows[GROUP], int64_t b, row_group *g)
{
    q4_0_rows(rows, b, false, g);
}

static void q4_0_relaxed_group(const uint8_t *const rows[GROUP], int64_t b, row_group *g)
{
    q4_0_rows(rows, b, true, g);
}

/* The relaxed tile's block b of a Q4_0 group in ELLM_ROWS_BY_FOUR order (rows[0] at the group):
 * the levels and scales q4_0_rows reads from four rows, from the group's one stream. */
static void q4_0_by_four_relaxed_group(const uint8_t *const rows[GROUP], int64_t b, row_group *g)
{
    const v128_t low4 = wasm_i8x16_splat(0x0F);
    const uint8_t *blocks = rows[0] + (size_t)b * GROUP * sizeof(block_q4_0);
    for (int r = 0; r < GROUP; r++) {
        v128_t q = load(blocks + GROUP * sizeof(uint16_t) + QK4_0 / 2 * r);
        g->w[r][0] = wasm_v128_and(q, low4);
        g->w[r][1] = wasm_u8x16_shr(q, 4);
        g->sub_scales[r][0] = wasm_i16x8_splat(1);
    }
    g->d = halves_to_f32x4(wasm_u32x4_load16x4(blocks));
}

static void q8_0_group(const uint8_t *const rows[GROUP], int64_t b, row_group *g)
{
    size_t at = (size_t)b * sizeof(block_q8_0);
    for (int r = 0; r < GROUP; r++) {
        const uint8_t *qs = rows[r] + at + offsetof(block_q8_0, qs);
        g->bytes[r][0] = load(qs);
        g->bytes[r][1] = load(qs + 16);
    }
    g->d = scales_of(rows, at + offsetof(block_q8_0, d));
}

static void q5_0_group(const uint8_t *const rows[GROUP], int64_t b, row_group *g)
{
    const v128_t sixteen = wasm_i8x16_splat(16);
    size_t at = (size_t)b * sizeof(block_q5_0);
    for (int r = 0; r < GROUP; r++) {
        const block_q5_0 *blk = (const block_q5_0 *)(rows[r] + at);
        v128_t lo, hi;
        q5_values(blk->qs, blk->qh, &lo, &hi);
        g->bytes[r][0] = wasm_i8x16_sub(lo, sixteen);
        g->bytes[r][1] = wasm_i8x16_sub(hi, sixteen);
    }
    g->d = scales_of(rows, at + offsetof(block_q5_0, d));
}

static void iq4_nl_group(const uint8_t *const rows[GROUP], int64_t b, row_group *g)
{
    const v128_t levels = load(ellm_kvalues_iq4nl), low4 = wasm_i8x16_splat(0x0F);
    size_t at = (size_t)b * sizeof(block_iq4_nl);
    for (int r = 0; r < GROUP; r++) {
        v128_t q = load(rows[r] + at + offsetof(block_iq4_nl, qs));
        g->bytes[r][0] = wasm_i8x16_swizzle(levels, wasm_v128_and(q, low4));
        g->bytes[r][1] = wasm_i8x16_swizzle(levels, wasm_u8x16_shr(q, 4));
    }
    g->d = scales_of(rows, at + offsetof(block_iq4_nl, d));
}

/* The "_1" formats: unsigned values, and the minimum m (in dmin) beside the scale. */
static void q4_1_group(const uint8_t *const rows[GROUP], int64_t b, row_group *g)
{
    const v128_t low4 = wasm_i8x16_splat(0x0F);
    size_t at = (size_t)b * sizeof(block_q4_1);
    for (int r = 0; r < GROUP; r++) {
        v128_t q = load(rows[r] + at + offsetof(block_q4_1, qs));
        g->bytes[r][0] = wasm_v128_and(q, low4);
        g->bytes[r][1] = wasm_u8x16_shr(q, 4);
    }
    g->d = scales_of(rows, at + offsetof(block_q4_1, d));
    g->dmin = scales_of(rows, at + offsetof(block_q4_1, m));
}

static void q5_1_group(const uint8_t *const rows[GROUP], int64_t b, row_group *g)
{
    size_t at = (size_t)b * sizeof(block_q5_1);
    for (int r = 0; r < GROUP; r++) {
        const block_q5_1 *blk = (const block_q5_1 *)(rows[r] + at);
        v128_t lo, hi;
        q5_values(blk->qs, blk->qh, &lo, &hi);
        g->bytes[r][0] = lo;
        g->bytes[r][1] = hi;
    }
    g->d = scales_of(rows, at + offsetof(block_q5_1, d));
    g->dmin = scales_of(rows, at + offsetof(block_q5_1, m));
}

static void ext_act(const uint8_t *x, int64_t b, const void *layout, act_row *a)
{
    const ellm_q8_0_ext_layout *L = layout;
    const uint8_t *qs = x + (size_t)b * QK8_0;
    widen_i8_to(load(qs), a->a);
    widen_i8_to(load(qs + 16), a->a + 16);
    a->d = wasm_v128_load32_splat(x + L->scales_offset + (size_t)b * sizeof(float));
}

static void ext_act_bytes(const uint8_t *x, int64_t b, const void *layout, act_row *a)
{
    const ellm_q8_0_ext_layout *L = layout;
    memcpy(a->q, x + (size_t)b * QK8_0, QK8_0);
    a->d = wasm_v128_load32_splat(x + L->scales_offset + (size_t)b * sizeof(float));
    a->block_sum = wasm_v128_load32_splat(x + L->block_sums_offset + (size_t)b * sizeof(int32_t));
}

/* sum += (dw * da) * (float)isum, the scalar kernel's order. */
static v128_t legacy_step(const pair_group *g, const act_row *a, v128_t isum, v128_t summ,
                          v128_t sum)
{
    (void)summ;
    v128_t scale = wasm_f32x4_mul(g->d, a->d);
    return wasm_f32x4_add(sum, wasm_f32x4_mul(scale, wasm_f32x4_convert_i32x4(isum)));
}

/* The relaxed Q4_0 tile's sums are of the nibbles: 8 times the block sum comes off first. */
static v128_t q4_0_relaxed_step(const pair_group *g, const act_row *a, v128_t isum, v128_t summ,
                                v128_t sum)
{
    return legacy_step(g, a, wasm_i32x4_sub(isum, wasm_i32x4_shl(a->block_sum, 3)), summ, sum);
}

/* Plain Q8_1 rows: the scale d and s (d times the sum of the values) as floats in every lane. */
static void q8_1_act(const uint8_t *x, int64_t b, const void *unused, act_row *a)
{
    (void)unused;
    const block_q8_1 *blk = (const block_q8_1 *)x + b;
    widen_i8_to(load(blk->qs), a->a);
    widen_i8_to(load(blk->qs + 16), a->a + 16);
    a->d = wasm_f32x4_splat(ellm_f16_to_f32(blk->d));
    a->s = wasm_f32x4_splat(ellm_f16_to_f32(blk->s));
}

/* sum += (dw * da) * (float)isum + m * s, the scalar kernel's order. */
static v128_t legacy_1_step(const pair_group *g, const act_row *a, v128_t isum, v128_t summ,
                            v128_t sum)
{
    (void)summ;
    v128_t scaled = wasm_f32x4_mul(wasm_f32x4_mul(g->d, a->d), wasm_f32x4_convert_i32x4(isum));
    return wasm_f32x4_add(sum, wasm_f32x4_add(scaled, wasm_f32x4_mul(g->dmin, a->s)));
}

/* ---- K-quants against Q8_K rows ---- */

/* Sixteen unsigned 4- or 5-bit values times one scale, as two 16-bit vectors. */
static inline void widen_scaled_u8(v128_t v, int scale, v128_t *out)
{
    v128_t s = wasm_i16x8_splat((int16_t)scale);
    out[0] = wasm_i16x8_mul(wasm_u16x8_extend_low_u8x16(v), s);
    out[1] = wasm_i16x8_mul(wasm_u16x8_extend_high_u8x16(v), s);
}

/* Four 8-bit values each twice, as 16-bit lanes: lane pair k meets 16-bit pair k of the other
 * operand in i32x4.dot_i16x8. */
static inline v128_t twice16(const uint8_t v[4])
{
    return wasm_i16x8_make(v[0], v[0], v[1], v[1], v[2], v[2], v[3], v[3]);
}

/* Q4_K (no qh) and Q5_K levels (0..15, 0..31) in value order: the 64-value chunk c holds
 * sub-blocks 2c (low nibbles, plus bit 2c of qh for Q5_K; byte vectors 4c, 4c + 1) and 2c + 1
 * (high nibbles, bit 2c + 1; 4c + 2, 4c + 3). */
static inline void q45_K_levels(const uint8_t *qs, const uint8_t *qh, v128_t levels[16])
{
    for (int c = 0; c < 4; c++) {
        nibbles32 q = split_nibbles(qs + 32 * c);
        for (int k = 0; k < 2; k++) {
            if (qh)
                q5_K_values(load(qs + 32 * c + 16 * k), wasm_u16x8_shr(load(qh + 16 * k), 2 * c),
                            &q.lo[k], &q.hi[k]);
            levels[4 * c + k] = q.lo[k];
            levels[4 * c + 2 + k] = q.hi[k];
        }
    }
}

/* Row r of a Q4_K or Q5_K group: wasm-simd's levels times their sub-block scales in 16 bits, or
 * (relaxed) the levels as bytes and the scales apart; the mins each twice, to meet the 16 bsums. */
static inline __attribute__((always_inline)) void q45_K_row(const uint8_t *scales,
                                                            const uint8_t *qs, const uint8_t *qh,
                                                            bool relaxed, row_group *g, int r)
{
    uint8_t sc[8], mn[8];
    for (int j = 0; j < 8; j++)
        ellm_kq_scale_min(j, scales, &sc[j], &mn[j]);
    v128_t levels[16];
    q45_K_levels(qs, qh, relaxed ? g->w[r] : levels);
    if (relaxed) {
        g->sub_scales[r][0] = twice16(sc);
        g->sub_scales[r][1] = twice16(sc + 4);
    } else {
        for (int j = 0; j < 16; j++)
            widen_scaled_u8(levels[j], sc[j / 2], &g->w[r][2 * j]);
    }
    g->mins[r][0] = twice16(mn);
    g->mins[r][1] = twice16(mn + 4);
}

#define Q45_K_GROUP(name, type, qh_of, relaxed)                                                    \
    static void name(const uint8_t *const rows[GROUP], int64_t b, row_group *g)                    \
    {                                                                                              \
        size_t at = (size_t)b * sizeof(block_##type);                                              \
        for (int r = 0; r < GROUP; r++) {                                                          \
            const block_##type *blk = (const block_##type *)(rows[r] + at);                        \
            q45_K_row(blk->scales, blk->qs, qh_of(blk), relaxed, g, r);                            \
        }                                                                                          \
        g->d = scales_of(rows, at + offsetof(block_##type, d));                                    \
        g->dmin = scales_of(rows, at + offsetof(block_##type, dmin));                              \
    }
#define NO_QH(blk) ((const uint8_t *)NULL)
#define QH_OF(blk) ((blk)->qh)
Q45_K_GROUP(q4_K_group, q4_K, NO_QH, false)
Q45_K_GROUP(q5_K_group, q5_K, QH_OF, false)
Q45_K_GROUP(q4_K_relaxed_group, q4_K, NO_QH, true)
Q45_K_GROUP(q5_K_relaxed_group, q5_K, QH_OF, true)

/* Q6_K: value 128h + 32·quarter + 16k + l is (low | high << 4) - 32, in sub-block
 * 8h + 2·quarter + k, with low from ql's nibbles and high two bits of qh (blocks.h). */
static void q6_K_group(const uint8_t *const rows[GROUP], int64_t b, row_group *g)
{
    const v128_t low4 = wasm_i8x16_splat(0x0F), three = wasm_i8x16_splat(3);
    const v128_t offset = wasm_i16x8_splat(32);
    size_t at = (size_t)b * sizeof(block_q6_K);
    for (int r = 0; r < GROUP; r++) {
        const block_q6_K *blk = (const block_q6_K *)(rows[r] + at);
        for (int h = 0; h < 2; h++)
            for (int quarter = 0; quarter < 4; quarter++)
                for (int k = 0; k < 2; k++) {
                    v128_t low = load(blk->ql + 64 * h + 16 * k + (quarter & 1 ? 32 : 0));
                    low = quarter < 2 ? wasm_v128_and(low, low4) : wasm_u8x16_shr(low, 4);
                    v128_t high = wasm_v128_and(
                        wasm_u8x16_shr(load(blk->qh + 32 * h + 16 * k), 2 * quarter), three);
                    v128_t q = wasm_v128_or(low, wasm_i8x16_shl(high, 4));
                    v128_t s = wasm_i16x8_splat(blk->scales[8 * h + 2 * quarter + k]);
                    v128_t *out = &g->w[r][16 * h + 4 * quarter + 2 * k];
                    out[0] = wasm_i16x8_mul(wasm_i16x8_sub(wasm_u16x8_extend_low_u8x16(q), offset),
                                            s);
                    out[1] = wasm_i16x8_mul(wasm_i16x8_sub(wasm_u16x8_extend_high_u8x16(q), offset),
                                            s);
                }
    }
    g->d = scales_of(rows, at + offsetof(block_q6_K, d));
}

/* Q6_K for the relaxed tile: the stored values (0..63) as bytes in value order (half h's step k
 * gives byte vectors 8h + 2 quarter + k), the 16 signed scales twice each for the runs, and
 * 32 times each scale as the "mins" that meet the bsums: the offset of 32 comes off there. */
static void q6_K_relaxed_group(const uint8_t *const rows[GROUP], int64_t b, row_group *g)
{
    size_t at = (size_t)b * sizeof(block_q6_K);
    for (int r = 0; r < GROUP; r++) {
        const block_q6_K *blk = (const block_q6_K *)(rows[r] + at);
        for (int h = 0; h < 2; h++)
            for (int k = 0; k < 2; k++) {
                v128_t v[4];
                q6_K_values16(blk, h, k, v);
                for (int quarter = 0; quarter < 4; quarter++)
                    g->w[r][8 * h + 2 * quarter + k] = v[quarter];
            }
        v128_t s = load(blk->scales);
        v128_t lo = wasm_i16x8_extend_low_i8x16(s), hi = wasm_i16x8_extend_high_i8x16(s);
        g->sub_scales[r][0] = wasm_i16x8_shuffle(lo, lo, 0, 0, 1, 1, 2, 2, 3, 3);
        g->sub_scales[r][1] = wasm_i16x8_shuffle(lo, lo, 4, 4, 5, 5, 6, 6, 7, 7);
        g->sub_scales[r][2] = wasm_i16x8_shuffle(hi, hi, 0, 0, 1, 1, 2, 2, 3, 3);
        g->sub_scales[r][3] = wasm_i16x8_shuffle(hi, hi, 4, 4, 5, 5, 6, 6, 7, 7);
        g->mins[r][0] = wasm_i16x8_shl(lo, 5);
        g->mins[r][1] = wasm_i16x8_shl(hi, 5);
    }
    g->d = scales_of(rows, at + offsetof(block_q6_K, d));
}

/* IQ4_XS: sub-block s is the levels of qs[16s..16s+15]'s low nibbles (values 32s..32s+15) and
 * high nibbles (32s+16..32s+31), times ls[s] - 32 (at most 127 × 32 in 16 bits). */
static void iq4_xs_group(const uint8_t *const rows[GROUP], int64_t b, row_group *g)
{
    const v128_t levels = load(ellm_kvalues_iq4nl), low4 = wasm_i8x16_splat(0x0F);
    size_t at = (size_t)b * sizeof(block_iq4_xs);
    for (int r = 0; r < GROUP; r++) {
        const block_iq4_xs *blk = (const block_iq4_xs *)(rows[r] + at);
        for (int sb = 0; sb < 8; sb++) {
            v128_t q = load(blk->qs + 16 * sb);
            v128_t scale = wasm_i16x8_splat((int16_t)(ellm_iq4_xs_scale(blk, sb) - 32));
            v128_t *out = &g->w[r][4 * sb];
            widen_i8(wasm_i8x16_swizzle(levels, wasm_v128_and(q, low4)), out);
            widen_i8(wasm_i8x16_swizzle(levels, wasm_u8x16_shr(q, 4)), out + 2);
            for (int k = 0; k < 4; k++)
                out[k] = wasm_i16x8_mul(out[k], scale);
        }
    }
    g->d = scales_of(rows, at + offsetof(block_iq4_xs, d));
}

/* Q2_K and Q3_K: value 128h + 32j + 16k + l (l < 16) is the 2-bit field j of qs[32h + 16k + l],
 * in sub-block 8h + 2j + k; Q3_K's value is that field minus 4 where bit 4h + j of
 * hmask[16k + l] is clear. Each sub-block's scale is multiplied in (at most 3 × 15 or 4 × 32 in
 * 16 bits); Q2_K's mins meet the 16 bsums directly. */
static void q2_K_group(const uint8_t *const rows[GROUP], int64_t b, row_group *g)
{
    const v128_t three = wasm_i8x16_splat(3);
    size_t at = (size_t)b * sizeof(block_q2_K);
    for (int r = 0; r < GROUP; r++) {
        const block_q2_K *blk = (const block_q2_K *)(rows[r] + at);
        int16_t min[16];
        for (int h = 0; h < 2; h++)
            for (int k = 0; k < 2; k++) {
                v128_t q = load(blk->qs + 32 * h + 16 * k);
                for (int j = 0; j < 4; j++) {
                    int s = 8 * h + 2 * j + k;
                    widen_scaled_u8(wasm_v128_and(wasm_u8x16_shr(q, 2 * j), three),
                                    blk->scales[s] & 15, &g->w[r][2 * s]);
                }
            }
        for (int s = 0; s < 16; s++)
            min[s] = blk->scales[s] >> 4;
        g->mins[r][0] = load(min);
        g->mins[r][1] = load(min + 8);
    }
    g->d = scales_of(rows, at + offsetof(block_q2_K, d));
    g->dmin = scales_of(rows, at + offsetof(block_q2_K, dmin));
}

static void q3_K_group(const uint8_t *const rows[GROUP], int64_t b, row_group *g)
{
    const v128_t three = wasm_i8x16_splat(3), one = wasm_i8x16_splat(1);
    const v128_t four = wasm_i8x16_splat(4);
    size_t at = (size_t)b * sizeof(block_q3_K);
    for (int r = 0; r < GROUP; r++) {
        const block_q3_K *blk = (const block_q3_K *)(rows[r] + at);
        for (int k = 0; k < 2; k++) {
            v128_t hmask = load(blk->hmask + 16 * k);
            for (int h = 0; h < 2; h++) {
                v128_t q = load(blk->qs + 32 * h + 16 * k);
                for (int j = 0; j < 4; j++) {
                    int s = 8 * h + 2 * j + k;
                    v128_t low = wasm_v128_and(wasm_u8x16_shr(q, 2 * j), three);
                    v128_t high = wasm_v128_and(wasm_u8x16_shr(hmask, 4 * h + j), one);
                    v128_t v = wasm_i8x16_sub(wasm_v128_or(low, wasm_i8x16_shl(high, 2)), four);
                    v128_t scale = wasm_i16x8_splat(
                        (int16_t)(ellm_q3_K_scale(blk->scales, s) - 32));
                    v128_t *out = &g->w[r][2 * s];
                    widen_i8(v, out);
                    out[0] = wasm_i16x8_mul(out[0], scale);
                    out[1] = wasm_i16x8_mul(out[1], scale);
                }
            }
        }
    }
    g->d = scales_of(rows, at + offsetof(block_q3_K, d));
}

static inline __attribute__((always_inline)) void q8_K_row_act(const uint8_t *x, int64_t b,
                                                               bool relaxed, act_row *a)
{
    const block_q8_K *blk = (const block_q8_K *)x + b;
    if (relaxed)
        memcpy(a->q, blk->qs, sizeof a->q);
    else
        for (int k = 0; k < QK_K / 16; k++)
            widen_i8_to(load(blk->qs + 16 * k), a->a + 16 * k);
    memcpy(a->bsums, blk->bsums, sizeof a->bsums);
    a->d = wasm_f32x4_splat(blk->d);
}

static void q8_K_act(const uint8_t *x, int64_t b, const void *unused, act_row *a)
{
    (void)unused;
    q8_K_row_act(x, b, false, a);
}

static void q8_K_act_bytes(const uint8_t *x, int64_t b, const void *unused, act_row *a)
{
    (void)unused;
    q8_K_row_act(x, b, true, a);
}

/* sum += ad * dw * (float)sumi - ad * dmin * (float)summ, the scalar kernel's order (Q2_K's
 * scalar kernel forms dw * ad, the same float product). */
static v128_t q45_K_step(const pair_group *g, const act_row *a, v128_t sumi, v128_t summ,
                         v128_t sum)
{
    v128_t scaled = wasm_f32x4_mul(wasm_f32x4_mul(a->d, g->d), wasm_f32x4_convert_i32x4(sumi));
    v128_t mins = wasm_f32x4_mul(wasm_f32x4_mul(a->d, g->dmin), wasm_f32x4_convert_i32x4(summ));
    return wasm_f32x4_add(sum, wasm_f32x4_sub(scaled, mins));
}

/* sum += ad * dw * (float)sumi (Q6_K, IQ4_XS and Q3_K). */
static v128_t q6_K_step(const pair_group *g, const act_row *a, v128_t sumi, v128_t summ, v128_t sum)
{
    (void)summ;
    return wasm_f32x4_add(
        sum, wasm_f32x4_mul(wasm_f32x4_mul(a->d, g->d), wasm_f32x4_convert_i32x4(sumi)));
}

/* The relaxed Q6_K tile's sums are of the stored values: 32 · scale · bsum (summ) comes off. */
static v128_t q6_K_relaxed_step(const pair_group *g, const act_row *a, v128_t sumi, v128_t summ,
                                v128_t sum)
{
    return q6_K_step(g, a, wasm_i32x4_sub(sumi, summ), summ, sum);
}

/* ---- the tile driver ---- */

typedef void (*group_fn)(const uint8_t *const rows[GROUP], int64_t b, row_group *g);
typedef void (*act_fn)(const uint8_t *x, int64_t b, const void *ctx, act_row *a);
typedef v128_t (*step_fn)(const pair_group *g, const act_row *a, v128_t sumi, v128_t summ,
                          v128_t sum);

/* One block of ng groups (from column g0 of sums) against nt tokens: their integer sums
 * together, then each (group, token)'s float step, one block after another as the scalar kernel
 * takes them. */
static inline __attribute__((always_inline)) void tile_block(const pair_group *groups, int g0,
                                                             int ng, const act_row *acts, int nt,
                                                             tile_shape shape, step_fn step,
                                                             v128_t (*sums)[MAX_GROUPS])
{
    const ptrdiff_t w_stride = sizeof(pair_group) / sizeof(v128_t);
    const ptrdiff_t a_stride = sizeof(act_row) / sizeof(int16_t);
    v128_t sumi[TILE_GROUPS][TILE_TOKENS], summ[TILE_GROUPS][TILE_TOKENS];
    if (shape.vecs)
        pair_sums(groups[g0].w, w_stride, ng, acts[0].a, a_stride, nt, GROUP * shape.vecs, sumi);
    else
        byte_sums(groups[g0].w, groups[g0].sub_scales, w_stride, ng, acts[0].q, sizeof(act_row), nt,
                  shape, sumi);
    bool mins = shape.mins;
    if (mins)
        pair_sums(groups[g0].mins, w_stride, ng, acts[0].bsums, a_stride, nt, 8, summ);
    for (int g = 0; g < ng; g++)
        for (int t = 0; t < nt; t++)
            sums[t][g0 + g] = step(&groups[g0 + g], &acts[t], sumi[g][t],
                                   mins ? summ[g][t] : sumi[g][t], sums[t][g0 + g]);
}

/* Rows in passes of up to 16 and tokens in steps of TOKEN_STEP: each block of the pass's rows
 * is widened once and put in pair order, then every token of the step meets it, TILE_TOKENS
 * tokens and TILE_GROUPS groups at a time; a short last group repeats its last row, whose extra
 * lanes are not stored. Inlined into each entry point so that the block functions are direct
 * calls. */
static inline __attribute__((always_inline)) void
gemm_row_groups(int64_t nb, const uint8_t *w, size_t w_stride, int64_t n_rows, const uint8_t *x,
                size_t x_stride, int64_t n_tok, float *y, int64_t y_stride, group_fn widen_rows,
                tile_shape shape, act_fn widen_act, const void *ctx, step_fn step)
{
    row_group rows_wide;
    pair_group groups[MAX_GROUPS];
    act_row acts[TILE_TOKENS];
    v128_t sums[TOKEN_STEP][MAX_GROUPS];
    for (int64_t r0 = 0; r0 < n_rows; r0 += GROUP * MAX_GROUPS) {
        int64_t left = n_rows - r0;
        int ng = left >= GROUP * MAX_GROUPS ? MAX_GROUPS : (int)((left + GROUP - 1) / GROUP);
        const uint8_t *rows[MAX_GROUPS][GROUP];
        for (int gi = 0; gi < ng; gi++)
            for (int r = 0; r < GROUP; r++) {
                int64_t row = r0 + gi * GROUP + r < n_rows ? r0 + gi * GROUP + r : n_rows - 1;
                rows[gi][r] = w + (size_t)row * w_stride;
            }
        for (int64_t t0 = 0; t0 < n_tok; t0 += TOKEN_STEP) {
            int nt = n_tok - t0 < TOKEN_STEP ? (int)(n_tok - t0) : TOKEN_STEP;
            for (int t = 0; t < nt; t++)
                for (int gi = 0; gi < ng; gi++)
                    sums[t][gi] = wasm_f32x4_splat(0.0f);
            for (int64_t b = 0; b < nb; b++) {
                for (int gi = 0; gi < ng; gi++) {
                    widen_rows(rows[gi], b, &rows_wide);
                    to_pairs(&rows_wide, shape, &groups[gi]);
                }
                for (int tq = 0; tq < nt; tq += TILE_TOKENS) {
                    int ntq = nt - tq < TILE_TOKENS ? nt - tq : TILE_TOKENS;
                    for (int t = 0; t < ntq; t++)
                        widen_act(x + (size_t)(t0 + tq + t) * x_stride, b, ctx, &acts[t]);
                    int g0 = 0;
                    /* The token counts as constants: a prompt's last 1-3 tokens keep two
                     * groups' weight loads shared. */
                    for (; g0 + TILE_GROUPS <= ng; g0 += TILE_GROUPS) {
                        if (ntq == 4)
                            tile_block(groups, g0, TILE_GROUPS, acts, 4, shape, step, sums + tq);
                        else if (ntq == 3)
                            tile_block(groups, g0, TILE_GROUPS, acts, 3, shape, step, sums + tq);
                        else if (ntq == 2)
                            tile_block(groups, g0, TILE_GROUPS, acts, 2, shape, step, sums + tq);
                        else
                            tile_block(groups, g0, TILE_GROUPS, acts, 1, shape, step, sums + tq);
                    }
                    for (; g0 < ng; g0++)
                        for (int t = 0; t < ntq; t++)
                            tile_block(groups, g0, 1, acts + t, 1, shape, step, sums + tq + t);
                }
            }
            for (int t = 0; t < nt; t++)
                for (int gi = 0; gi < ng; gi++) {
                    float lanes[GROUP];
                    wasm_v128_store(lanes, sums[t][gi]);
                    for (int r = 0; r < GROUP && r0 + gi * GROUP + r < n_rows; r++)
                        y[(t0 + t) * y_stride + r0 + gi * GROUP + r] = lanes[r];
                }
        }
    }
}

void ellm_gemm_q4_0_wasm_simd(int64_t n, const uint8_t *w, size_t w_stride, int64_t n_rows,
                              const uint8_t *x, size_t x_stride, int64_t n_tok, float *y,
                              int64_t y_stride)
{
    ellm_q8_0_ext_layout L = ellm_q8_0_ext_layout_for(n);
    gemm_row_groups(n / QK4_0, w, w_stride, n_rows, x, x_stride, n_tok, y, y_stride, q4_0_group,
                    PAIR_SHAPE(LEGACY_VECS, false), ext_act, &L, legacy_step);
}

void ellm_gemm_q8_0_wasm_simd(int64_t n, const uint8_t *w, size_t w_stride, int64_t n_rows,
                              const uint8_t *x, size_t x_stride, int64_t n_tok, float *y,
                              int64_t y_stride)
{
    ellm_q8_0_ext_layout L = ellm_q8_0_ext_layout_for(n);
    gemm_row_groups(n / QK8_0, w, w_stride, n_rows, x, x_stride, n_tok, y, y_stride, q8_0_group,
                    PAIR_SHAPE(LEGACY_VECS, false), ext_act, &L, legacy_step);
}

void ellm_gemm_q4_K_wasm_simd(int64_t n, const uint8_t *w, size_t w_stride, int64_t n_rows,
                              const uint8_t *x, size_t x_stride, int64_t n_tok, float *y,
                              int64_t y_stride)
{
    gemm_row_groups(n / QK_K, w, w_stride, n_rows, x, x_stride, n_tok, y, y_stride, q4_K_group,
                    PAIR_SHAPE(KQUANT_VECS, true), q8_K_act, NULL, q45_K_step);
}

void ellm_gemm_q5_K_wasm_simd(int64_t n, const uint8_t *w, size_t w_stride, int64_t n_rows,
                              const uint8_t *x, size_t x_stride, int64_t n_tok, float *y,
                              int64_t y_stride)
{
    gemm_row_groups(n / QK_K, w, w_stride, n_rows, x, x_stride, n_tok, y, y_stride, q5_K_group,
                    PAIR_SHAPE(KQUANT_VECS, true), q8_K_act, NULL, q45_K_step);
}

void ellm_gemm_q6_K_wasm_simd(int64_t n, const uint8_t *w, size_t w_stride, int64_t n_rows,
                              const uint8_t *x, size_t x_stride, int64_t n_tok, float *y,
                              int64_t y_stride)
{
    gemm_row_groups(n / QK_K, w, w_stride, n_rows, x, x_stride, n_tok, y, y_stride, q6_K_group,
                    PAIR_SHAPE(KQUANT_VECS, false), q8_K_act, NULL, q6_K_step);
}

void ellm_gemm_q2_K_wasm_simd(int64_t n, const uint8_t *w, size_t w_stride, int64_t n_rows,
                              const uint8_t *x, size_t x_stride, int64_t n_tok, float *y,
                              int64_t y_stride)
{
    gemm_row_groups(n / QK_K, w, w_stride, n_rows, x, x_stride, n_tok, y, y_stride, q2_K_group,
                    PAIR_SHAPE(KQUANT_VECS, true), q8_K_act, NULL, q45_K_step);
}

void ellm_gemm_q3_K_wasm_simd(int64_t n, const uint8_t *w, size_t w_stride, int64_t n_rows,
                              const uint8_t *x, size_t x_stride, int64_t n_tok, float *y,
                              int64_t y_stride)
{
    gemm_row_groups(n / QK_K, w, w_stride, n_rows, x, x_stride, n_tok, y, y_stride, q3_K_group,
                    PAIR_SHAPE(KQUANT_VECS, false), q8_K_act, NULL, q6_K_step);
}

void ellm_gemm_iq4_xs_wasm_simd(int64_t n, const uint8_t *w, size_t w_stride, int64_t n_rows,
                                const uint8_t *x, size_t x_stride, int64_t n_tok, float *y,
                                int64_t y_stride)
{
    gemm_row_groups(n / QK_K, w, w_stride, n_rows, x, x_stride, n_tok, y, y_stride, iq4_xs_group,
                    PAIR_SHAPE(KQUANT_VECS, false), q8_K_act, NULL, q6_K_step);
}

#define LEGACY_GEMM(type, block_size, group, act, step)                                            \
    void ellm_gemm_##type##_wasm_simd(int64_t n, const uint8_t *w, size_t w_stride,                \
                                      int64_t n_rows, const uint8_t *x, size_t x_stride,           \
                                      int64_t n_tok, float *y, int64_t y_stride)                   \
    {                                                                                              \
        ellm_q8_0_ext_layout L = ellm_q8_0_ext_layout_for(n);                                      \
        gemm_row_groups(n / (block_size), w, w_stride, n_rows, x, x_stride, n_tok, y, y_stride,    \
                        group, PAIR_SHAPE(LEGACY_VECS, false), act, &L, step);                     \
    }
LEGACY_GEMM(q5_0, QK5_0, q5_0_group, ext_act, legacy_step)
LEGACY_GEMM(iq4_nl, QK4_NL, iq4_nl_group, ext_act, legacy_step)
LEGACY_GEMM(q4_1, QK4_1, q4_1_group, q8_1_act, legacy_1_step)
LEGACY_GEMM(q5_1, QK5_1, q5_1_group, q8_1_act, legacy_1_step)

/* The relaxed tiles. Per 16-bit lane a run adds 2 · span products of a level and an activation
 * (|a| <= 128): Q4_0 and Q4_K 16 of at most 15 (30720), Q5_K 8 of at most 31 (31744), Q6_K 4 of
 * at most 63 (32256), so every run's sum is exact and the integer sums are the scalar kernels'. */
void ellm_gemm_q4_0_wasm_relaxed(int64_t n, const uint8_t *w, size_t w_stride, int64_t n_rows,
                                 const uint8_t *x, size_t x_stride, int64_t n_tok, float *y,
                                 int64_t y_stride)
{
    ellm_q8_0_ext_layout L = ellm_q8_0_ext_layout_for(n);
    gemm_row_groups(n / QK4_0, w, w_stride, n_rows, x, x_stride, n_tok, y, y_stride,
                    q4_0_relaxed_group, (tile_shape){.subs = 1, .spans = 1, .span = 8},
                    ext_act_bytes, &L, q4_0_relaxed_step);
}

/* Whole groups of a Q4_0 matrix in ELLM_ROWS_BY_FOUR order (n_rows a multiple of 4). */
void ellm_gemm_q4_0_by_four_wasm_relaxed(int64_t n, const uint8_t *w, size_t w_stride,
                                         int64_t n_rows, const uint8_t *x, size_t x_stride,
                                         int64_t n_tok, float *y, int64_t y_stride)
{
    ellm_q8_0_ext_layout L = ellm_q8_0_ext_layout_for(n);
    gemm_row_groups(n / QK4_0, w, w_stride, n_rows, x, x_stride, n_tok, y, y_stride,
                    q4_0_by_four_relaxed_group, (tile_shape){.subs = 1, .spans = 1, .span = 8},
                    ext_act_bytes, &L, q4_0_relaxed_step);
}

#define RELAXED_KQ_GEMM(type, group, shape, step)                                                  \
    void ellm_gemm_##type##_wasm_relaxed(int64_t n, const uint8_t *w, size_t w_stride,             \
                                         int64_t n_rows, const uint8_t *x, size_t x_stride,        \
                                         int64_t n_tok, float *y, int64_t y_stride)                \
    {                                                                                              \
        gemm_row_groups(n / QK_K, w, w_stride, n_rows, x, x_stride, n_tok, y, y_stride, group,     \
                        shape, q8_K_act_bytes, NULL, step);                                        \
    }
RELAXED_KQ_GEMM(q4_K, q4_K_relaxed_group,
                ((tile_shape){.subs = 8, .spans = 1, .span = 8, .mins = true}), q45_K_step)
RELAXED_KQ_GEMM(q5_K, q5_K_relaxed_group,
                ((tile_shape){.subs = 8, .spans = 2, .span = 4, .mins = true}), q45_K_step)
RELAXED_KQ_GEMM(q6_K, q6_K_relaxed_group,
                ((tile_shape){.subs = 16, .spans = 2, .span = 2, .mins = true}), q6_K_relaxed_step)
#endif
