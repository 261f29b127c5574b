/* WebAssembly SIMD128 kernels (the "wasm-simd" set, built with -msimd128 by Emscripten). Every
 * quantized kernel sums each block's integer products exactly in 32-bit lanes (8-bit values
 * widened to 16 bits, multiplied and pair-summed by i32x4.dot_i16x8) and then applies the scalar
 * kernel's float operations in its order, so it is bit-identical to the scalar kernel. The float
 * dots keep the scalar kernels' accumulation order too (F32: four lanes, F16: one running sum). */
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

void ellm_vec_dot_f32_wasm_simd(int64_t n, float *out, const void *row, const void *x)
{
    const float *a = row, *b = x;
    v128_t acc = wasm_f32x4_splat(0.0f);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        acc = wasm_f32x4_add(acc, wasm_f32x4_mul(load(a + i), load(b + i)));
    float sum = (wasm_f32x4_extract_lane(acc, 0) + wasm_f32x4_extract_lane(acc, 1)) +
                (wasm_f32x4_extract_lane(acc, 2) + wasm_f32x4_extract_lane(acc, 3));
    for (; i < n; i++)
        sum += a[i] * b[i];
    *out = sum;
}

void ellm_vec_dot_f16_wasm_simd(int64_t n, float *out, const void *row, const void *x)
{
    const uint8_t *a = row;
    const float *b = x;
    float sum = 0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        v128_t p = wasm_f32x4_mul(halves_to_f32x4(wasm_u32x4_load16x4(a + 2 * i)), load(b + i));
        sum += wasm_f32x4_extract_lane(p, 0);
        sum += wasm_f32x4_extract_lane(p, 1);
        sum += wasm_f32x4_extract_lane(p, 2);
        sum += wasm_f32x4_extract_lane(p, 3);
    }
    for (; i < n; i++) {
        uint16_t h;
        memcpy(&h, a + 2 * i, 2);
        sum += ellm_f16_to_f32(h) * b[i];
    }
    *out = sum;
}

/* The 32-value formats against Q8_0 activations: block i's integer sum as four partial sums. */
static inline v128_t ints_q8_0(const block_q8_0 *w, const int8_t *a)
{
    return wasm_i32x4_add(dot_i8x16(load(w->qs), load(a)),
                          dot_i8x16(load(w->qs + 16), load(a + 16)));
}

static inline v128_t ints_q4_0(const block_q4_0 *w, const int8_t *a)
{
    const v128_t low4 = wasm_i8x16_splat(0x0F), eight = wasm_i8x16_splat(8);
    v128_t q = load(w->qs);
    v128_t lo = wasm_i8x16_sub(wasm_v128_and(q, low4), eight);
    v128_t hi = wasm_i8x16_sub(wasm_u8x16_shr(q, 4), eight);
    return wasm_i32x4_add(dot_i8x16(lo, load(a)), dot_i8x16(hi, load(a + 16)));
}

static inline v128_t ints_iq4_nl(const block_iq4_nl *w, const int8_t *a)
{
    const v128_t levels = load(ellm_kvalues_iq4nl), low4 = wasm_i8x16_splat(0x0F);
    v128_t q = load(w->qs);
    v128_t lo = wasm_i8x16_swizzle(levels, wasm_v128_and(q, low4));
    v128_t hi = wasm_i8x16_swizzle(levels, wasm_u8x16_shr(q, 4));
    return wasm_i32x4_add(dot_i8x16(lo, load(a)), dot_i8x16(hi, load(a + 16)));
}

static inline v128_t ints_q5_0(const block_q5_0 *w, const int8_t *a)
{
    const v128_t sixteen = wasm_i8x16_splat(16);
    v128_t lo, hi;
    q5_values(w->qs, w->qh, &lo, &hi);
    return wasm_i32x4_add(dot_i8x16(wasm_i8x16_sub(lo, sixteen), load(a)),
                          dot_i8x16(wasm_i8x16_sub(hi, sixteen), load(a + 16)));
}

/* A block's unsigned 4- or 5-bit values (0..15 or 0..31) against its 32 activations: the "_1"
 * formats' products. */
static inline v128_t unsigned_nibbles_dot(const uint8_t *qs, const int8_t *a)
{
    v128_t q = load(qs);
    v128_t lo = wasm_v128_and(q, wasm_i8x16_splat(0x0F)), hi = wasm_u8x16_shr(q, 4);
    return wasm_i32x4_add(dot_i8x16(lo, load(a)), dot_i8x16(hi, load(a + 16)));
}

static inline v128_t unsigned_fives_dot(const uint8_t *qs, const uint8_t qh[4], const int8_t *a)
{
    v128_t lo, hi;
    q5_values(qs, qh, &lo, &hi);
    return wasm_i32x4_add(dot_i8x16(lo, load(a)), dot_i8x16(hi, load(a + 16)));
}

static inline v128_t ints_q4_1(const block_q4_1 *w, const int8_t *a)
{
    return unsigned_nibbles_dot(w->qs, a);
}

static inline v128_t ints_q5_1(const block_q5_1 *w, const int8_t *a)
{
    return unsigned_fives_dot(w->qs, w->qh, a);
}

/* The scalar kernels' block terms: d_w * d_a * (float)isum, plus m_w * s_a for the "_1"
 * formats; four blocks' in lanes (the same roundings) or one block's. */
#define TERMS4_0(w, a, isum) wasm_f32x4_mul(wasm_f32x4_mul(HALVES4(w, d), HALVES4(a, d)), isum)
#define TERMS4_1(w, a, isum)                                                                       \
    wasm_f32x4_add(TERMS4_0(w, a, isum), wasm_f32x4_mul(HALVES4(w, m), HALVES4(a, s)))
#define TERM_0(w, a, isum) (ellm_f16_to_f32((w)->d) * ellm_f16_to_f32((a)->d) * (float)(isum))
#define TERM_1(w, a, isum) (TERM_0(w, a, isum) + ellm_f16_to_f32((w)->m) * ellm_f16_to_f32((a)->s))

/* A 32-value format against plain Q8_0 or Q8_1 activations: the block terms in block order, four
 * blocks at a time (the products in lanes, the additions one by one). */
#define ACTIVATION_DOT_KERNEL(type, act, block_fn, terms4, term)                                   \
    void ellm_vec_dot_##type##_wasm_simd(int64_t n, float *out, const void *row, const void *x)    \
    {                                                                                              \
        const block_##type *w = row;                                                               \
        const block_##act *a = x;                                                                  \
        int64_t nb = n / 32, i = 0;                                                                \
        float sum = 0;                                                                             \
        for (; i + 4 <= nb; i += 4) {                                                              \
            v128_t part[4];                                                                        \
            for (int k = 0; k < 4; k++)                                                            \
                part[k] = block_fn(&w[i + k], a[i + k].qs);                                        \
            sum = add_lanes_in_order(                                                              \
                sum, terms4(w + i, a + i, wasm_f32x4_convert_i32x4(transpose_sum4(part))));        \
        }                                                                                          \
        for (; i < nb; i++)                                                                        \
            sum += term(&w[i], &a[i], hsum_i32x4(block_fn(&w[i], a[i].qs)));                       \
        *out = sum;                                                                                \
    }

ACTIVATION_DOT_KERNEL(q8_0, q8_0, ints_q8_0, TERMS4_0, TERM_0)
ACTIVATION_DOT_KERNEL(q4_0, q8_0, ints_q4_0, TERMS4_0, TERM_0)
ACTIVATION_DOT_KERNEL(q5_0, q8_0, ints_q5_0, TERMS4_0, TERM_0)
ACTIVATION_DOT_KERNEL(iq4_nl, q8_0, ints_iq4_nl, TERMS4_0, TERM_0)
ACTIVATION_DOT_KERNEL(q4_1, q8_1, ints_q4_1, TERMS4_1, TERM_1)
ACTIVATION_DOT_KERNEL(q5_1, q8_1, ints_q5_1, TERMS4_1, TERM_1)

/* The 32-value formats against the wide Q8_0 row (the decode path): activations already int16 in
 * the order a 16-bit lane split gives the weights (ellm_act_wide_index), so only the weights are
 * widened; the activation scales are floats, and a format's offset (Q4_0's 8, Q5_0's 16) comes
 * off the block sum through the row's per-block activation sums instead of off every value. Same
 * integers and float steps as the scalar kernels. */
static inline v128_t wide_q4_0(const block_q4_0 *w, const int16_t *a)
{
    const v128_t low4 = wasm_i16x8_splat(0x0F);
    v128_t q = load(w->qs);
    /* Lane j holds bytes 2j and 2j + 1: values 2j, 2j + 1 (low nibbles), 16 + 2j, 17 + 2j. */
    v128_t p0 = dot_wide16(wasm_v128_and(q, low4), wasm_v128_and(wasm_u16x8_shr(q, 8), low4), a);
    v128_t p1 = dot_wide16(wasm_v128_and(wasm_u16x8_shr(q, 4), low4), wasm_u16x8_shr(q, 12),
                           a + 16);
    return wasm_i32x4_add(p0, p1);
}

static inline v128_t wide_q5_0(const block_q5_0 *w, const int16_t *a)
{
    v128_t lo, hi;
    q5_values(w->qs, w->qh, &lo, &hi);
    return wasm_i32x4_add(dot_wide16(even_u8_to_i16(lo), odd_u8_to_i16(lo), a),
                          dot_wide16(even_u8_to_i16(hi), odd_u8_to_i16(hi), a + 16));
}

static inline v128_t wide_q8_0(const block_q8_0 *w, const int16_t *a)
{
    v128_t lo = load(w->qs), hi = load(w->qs + 16);
    return wasm_i32x4_add(dot_wide16(even_i8_to_i16(lo), odd_i8_to_i16(lo), a),
                          dot_wide16(even_i8_to_i16(hi), odd_i8_to_i16(hi), a + 16));
}

/* 32 IQ4_NL-coded values (index of value j in the low nibble of qs[j], of value j + 16 in the high
 * nibble) against 32 wide activations. */
static inline v128_t wide_iq4(const uint8_t *qs, const int16_t *a)
{
    const v128_t levels = load(ellm_kvalues_iq4nl), low4 = wasm_i8x16_splat(0x0F);
    v128_t q = load(qs);
    v128_t lo = wasm_i8x16_swizzle(levels, wasm_v128_and(q, low4));
    v128_t hi = wasm_i8x16_swizzle(levels, wasm_u8x16_shr(q, 4));
    return wasm_i32x4_add(dot_wide16(even_i8_to_i16(lo), odd_i8_to_i16(lo), a),
                          dot_wide16(even_i8_to_i16(hi), odd_i8_to_i16(hi), a + 16));
}

static inline v128_t wide_iq4_nl(const block_iq4_nl *w, const int16_t *a)
{
    return wide_iq4(w->qs, a);
}

/* A 32-value format's single-row and multi-row decode kernels on the wide Q8_0 row. */
#define WIDE_KERNELS(type, offset)                                                                 \
    EXT_ACTIVATION_KERNELS(type, wide, wasm_simd, ellm_q8_0_wide_layout_for, int16_t, wide_##type, \
                           transpose_sum4, offset, 0)

WIDE_KERNELS(q4_0, 8)
WIDE_KERNELS(q5_0, 16)
WIDE_KERNELS(q8_0, 0)
WIDE_KERNELS(iq4_nl, 0)

/* Σ v[l] * y[l] over l < 32, with v as two vectors of 16 values in -128..127, as four partial
 * sums. */
static inline v128_t dot32(const v128_t v[2], const int8_t *y)
{
    return wasm_i32x4_add(dot_i8x16(v[0], load(y)), dot_i8x16(v[1], load(y + 16)));
}

/* acc + scale * part in every lane: a sub-block's partial sums weighted by its scale, so that a
 * super-block's products meet in one accumulator and need one horizontal sum (the integers are
 * exact, so the order of the additions does not matter). */
static inline v128_t add_scaled(v128_t acc, v128_t part, int32_t scale)
{
    return wasm_i32x4_add(acc, wasm_i32x4_mul(part, wasm_i32x4_splat(scale)));
}

/* acc + s[0] · lo + s[1] · hi in lanes, for two sub-blocks' partial sums whose every lane fits in
 * 16 bits (at most eight products of a weight below 32, or four below 64, and an activation of at
 * most 128 in magnitude): each lane of hi moved into the top half of lo's lane, then one
 * i32x4.dot_i16x8 against the two 16-bit scales splatted from memory. It replaces two splats of
 * a scalar scale and two i32x4.mul (two x86 instructions each). */
static inline v128_t add_scaled_pair(v128_t acc, v128_t lo, v128_t hi, const int16_t s[2])
{
    v128_t packed = wasm_i16x8_shuffle(lo, wasm_i32x4_shl(hi, 16), 0, 9, 2, 11, 4, 13, 6, 15);
    return wasm_i32x4_add(acc, wasm_i32x4_dot_i16x8(packed, wasm_v128_load32_splat(s)));
}

void ellm_vec_dot_q4_K_wasm_simd(int64_t n, float *out, const void *row, const void *x)
{
    const block_q4_K *w = row;
    const block_q8_K *a = x;
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        v128_t sm = kq_scales_mins(w[i].scales);
        uint8_t sc[16];
        wasm_v128_store(sc, sm);
        v128_t acc = wasm_i32x4_splat(0);
        for (int c = 0; c < 4; c++) {
            nibbles32 q = split_nibbles(w[i].qs + 32 * c);
            const int8_t *y = a[i].qs + 64 * c;
            acc = add_scaled(acc, dot32(q.lo, y), sc[2 * c]);
            acc = add_scaled(acc, dot32(q.hi, y + 32), sc[2 * c + 1]);
        }
        sum += kq_super_block_value(&w[i].d, a[i].d, hsum_i32x4(acc), kq_min_term(sm, a[i].bsums));
    }
    *out = sum;
}

void ellm_vec_dot_q5_K_wasm_simd(int64_t n, float *out, const void *row, const void *x)
{
    const block_q5_K *w = row;
    const block_q8_K *a = x;
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        v128_t sm = kq_scales_mins(w[i].scales);
        uint8_t sc[16];
        wasm_v128_store(sc, sm);
        v128_t qh[2] = {load(w[i].qh), load(w[i].qh + 16)};
        v128_t acc = wasm_i32x4_splat(0);
        for (int c = 0; c < 4; c++) {
            v128_t lo[2], hi[2];
            for (int k = 0; k < 2; k++) {
                q5_K_values(load(w[i].qs + 32 * c + 16 * k), qh[k], &lo[k], &hi[k]);
                qh[k] = wasm_u16x8_shr(qh[k], 2);
            }
            const int8_t *y = a[i].qs + 64 * c;
            acc = add_scaled(acc, dot32(lo, y), sc[2 * c]);
            acc = add_scaled(acc, dot32(hi, y + 32), sc[2 * c + 1]);
        }
        sum += kq_super_block_value(&w[i].d, a[i].d, hsum_i32x4(acc), kq_min_term(sm, a[i].bsums));
    }
    *out = sum;
}

void ellm_vec_dot_q6_K_wasm_simd(int64_t n, float *out, const void *row, const void *x)
{
    const block_q6_K *w = row;
    const block_q8_K *a = x;
    const v128_t low4 = wasm_i8x16_splat(0x0F), three = wasm_i8x16_splat(3);
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        v128_t acc = wasm_i32x4_splat(0);
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = w[i].ql + 64 * h, *qh = w[i].qh + 32 * h;
            const int8_t *y = a[i].qs + 128 * h;
            const int8_t *sc = w[i].scales + 8 * h;
            for (int quarter = 0; quarter < 4; quarter++) {
                /* Quarter k covers values 32k..32k+31 of this half: sub-blocks 2k and 2k+1. */
                for (int k = 0; k < 2; k++) {
                    v128_t low = load(ql + 16 * k + (quarter & 1 ? 32 : 0));
                    low = quarter < 2 ? wasm_v128_and(low, low4) : wasm_u8x16_shr(low, 4);
                    v128_t high = wasm_v128_and(wasm_u8x16_shr(load(qh + 16 * k), 2 * quarter),
                                                three);
                    v128_t q = wasm_v128_or(low, wasm_i8x16_shl(high, 4));
                    acc = add_scaled(acc, dot_i8x16(q, load(y + 32 * quarter + 16 * k)),
                                     sc[2 * quarter + k]);
                }
            }
        }
        sum += q6_K_super_block_value(&w[i], a[i].bsums, a[i].d, acc);
    }
    *out = sum;
}

void ellm_vec_dot_iq4_xs_wasm_simd(int64_t n, float *out, const void *row, const void *x)
{
    const block_iq4_xs *w = row;
    const block_q8_K *a = x;
    const v128_t levels = load(ellm_kvalues_iq4nl), low4 = wasm_i8x16_splat(0x0F);
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        v128_t acc = wasm_i32x4_splat(0);
        for (int s = 0; s < 8; s++) {
            v128_t q = load(w[i].qs + 16 * s);
            v128_t v[2] = {wasm_i8x16_swizzle(levels, wasm_v128_and(q, low4)),
                           wasm_i8x16_swizzle(levels, wasm_u8x16_shr(q, 4))};
            acc = add_scaled(acc, dot32(v, a[i].qs + 32 * s), ellm_iq4_xs_scale(&w[i], s) - 32);
        }
        int32_t isum = hsum_i32x4(acc);
        sum += ellm_f16_to_f32(w[i].d) * a[i].d * (float)isum;
    }
    *out = sum;
}

/* Q2_K and Q3_K: the 2-bit field j of qs[32h + l] (l < 32) is value 128h + 32j + l, in sub-block
 * 8h + 2j (l < 16) or 8h + 2j + 1. */
/* Σ scale[s] * bsums[s] over the 16 sub-blocks, the scales as 16-bit values. */
static inline int32_t scales_times_bsums(const int16_t scale[16], const int16_t *bsums)
{
    return hsum_i32x4(wasm_i32x4_add(wasm_i32x4_dot_i16x8(load(scale), load(bsums)),
                                     wasm_i32x4_dot_i16x8(load(scale + 8), load(bsums + 8))));
}

/* Q2_K's 16 sub-block scales (low nibbles) and mins (high nibbles) as 16-bit values. */
static inline void q2_K_scales_mins(const uint8_t *scales, int16_t scale[16], int16_t min[16])
{
    for (int s = 0; s < 16; s++) {
        scale[s] = scales[s] & 15;
        min[s] = scales[s] >> 4;
    }
}

/* Q3_K's 16 sub-block scales, their stored offset of 32 removed. */
static inline void q3_K_scales(const uint8_t *scales, int16_t scale[16])
{
    for (int s = 0; s < 16; s++)
        scale[s] = (int16_t)(ellm_q3_K_scale(scales, s) - 32);
}

void ellm_vec_dot_q2_K_wasm_simd(int64_t n, float *out, const void *row, const void *x)
{
    const block_q2_K *w = row;
    const block_q8_K *a = x;
    const v128_t three = wasm_i8x16_splat(3);
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int16_t scale[16], min[16];
        q2_K_scales_mins(w[i].scales, scale, min);
        v128_t acc = wasm_i32x4_splat(0);
        for (int h = 0; h < 2; h++) {
            v128_t q[2] = {load(w[i].qs + 32 * h), load(w[i].qs + 32 * h + 16)};
            for (int j = 0; j < 4; j++)
                for (int k = 0; k < 2; k++) {
                    int s = 8 * h + 2 * j + k;
                    v128_t v = wasm_v128_and(wasm_u8x16_shr(q[k], 2 * j), three);
                    acc = add_scaled(acc, dot_i8x16(v, load(a[i].qs + 16 * s)), scale[s]);
                }
        }
        int32_t isum = hsum_i32x4(acc);
        int32_t msum = scales_times_bsums(min, a[i].bsums);
        sum += kq_super_block_value(&w[i].d, a[i].d, isum, msum);
    }
    *out = sum;
}

void ellm_vec_dot_q3_K_wasm_simd(int64_t n, float *out, const void *row, const void *x)
{
    const block_q3_K *w = row;
    const block_q8_K *a = x;
    const v128_t three = wasm_i8x16_splat(3), one = wasm_i8x16_splat(1);
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int16_t scale[16];
        q3_K_scales(w[i].scales, scale);
        v128_t hmask[2] = {load(w[i].hmask), load(w[i].hmask + 16)};
        v128_t acc = wasm_i32x4_splat(0);
        for (int h = 0; h < 2; h++) {
            v128_t q[2] = {load(w[i].qs + 32 * h), load(w[i].qs + 32 * h + 16)};
            for (int j = 0; j < 4; j++)
                for (int k = 0; k < 2; k++) {
                    int s = 8 * h + 2 * j + k;
                    /* The stored value is q + 4 (the hmask bit is worth 4); the 4s are removed
                     * below through the activation sums. */
                    v128_t low = wasm_v128_and(wasm_u8x16_shr(q[k], 2 * j), three);
                    v128_t high = wasm_v128_and(wasm_u8x16_shr(hmask[k], 4 * h + j), one);
                    v128_t v = wasm_v128_or(low, wasm_i8x16_shl(high, 2));
                    acc = add_scaled(acc, dot_i8x16(v, load(a[i].qs + 16 * s)), scale[s]);
                }
        }
        int32_t isum = hsum_i32x4(acc) - 4 * scales_times_bsums(scale, a[i].bsums);
        sum += ellm_f16_to_f32(w[i].d) * a[i].d * (float)isum;
    }
    *out = sum;
}

/* The K-quants and IQ4_XS against wide Q8_K rows (block_q8_K_wide, the decode path): the
 * activations are already int16 in the order a 16-bit lane split gives the weights, so only the
 * weights are widened. The integers and float steps are those of the kernels above. */
/* Super-block w's integer sums against a's: sumi's four partial sums, and summ's in *mins. */
static inline v128_t q4_K_wide_sums(const block_q4_K *w, const block_q8_K_wide *a, v128_t *mins)
{
    const v128_t low4 = wasm_i16x8_splat(0x0F);
    int16_t sc[8];
    v128_t sm = kq_scales16(w->scales, sc);
    v128_t acc = wasm_i32x4_splat(0);
    /* Rolled: unrolled, TurboFan issues all 32 activation loads first and spills them. */
#pragma clang loop unroll(disable)
    for (int c = 0; c < 4; c++) {
        v128_t lo = wasm_i32x4_splat(0), hi = wasm_i32x4_splat(0);
        for (int k = 0; k < 2; k++) {
            /* Lane j: the bytes of values 64c + 16k + 2j and + 1 (low nibbles), the same + 32
             * (high nibbles). */
            v128_t q = load(w->qs + 32 * c + 16 * k);
            const int16_t *y = a->qs + 64 * c + 16 * k;
            lo = wasm_i32x4_add(lo, dot_wide16(wasm_v128_and(q, low4),
                                               wasm_v128_and(wasm_u16x8_shr(q, 8), low4), y));
            hi = wasm_i32x4_add(hi, dot_wide16(wasm_v128_and(wasm_u16x8_shr(q, 4), low4),
                                               wasm_u16x8_shr(q, 12), y + 32));
        }
        acc = add_scaled_pair(acc, lo, hi, sc + 2 * c);
    }
    *mins = kq_min_lanes(sm, a->bsums);
    return acc;
}

static inline v128_t q5_K_wide_sums(const block_q5_K *w, const block_q8_K_wide *a, v128_t *mins)
{
    int16_t sc[8];
    v128_t sm = kq_scales16(w->scales, sc);
    v128_t qh[2] = {load(w->qh), load(w->qh + 16)};
    v128_t acc = wasm_i32x4_splat(0);
#pragma clang loop unroll(disable)
    for (int c = 0; c < 4; c++) {
        v128_t lo = wasm_i32x4_splat(0), hi = wasm_i32x4_splat(0);
        for (int k = 0; k < 2; k++) {
            v128_t v_lo, v_hi;
            q5_K_values(load(w->qs + 32 * c + 16 * k), qh[k], &v_lo, &v_hi);
            qh[k] = wasm_u16x8_shr(qh[k], 2);
            const int16_t *y = a->qs + 64 * c + 16 * k;
            lo = wasm_i32x4_add(lo, dot_wide16(even_u8_to_i16(v_lo), odd_u8_to_i16(v_lo), y));
            hi = wasm_i32x4_add(hi, dot_wide16(even_u8_to_i16(v_hi), odd_u8_to_i16(v_hi), y + 32));
        }
        acc = add_scaled_pair(acc, lo, hi, sc + 2 * c);
    }
    *mins = kq_min_lanes(sm, a->bsums);
    return acc;
}

KQ_PAIRED_KERNEL(ellm_vec_dot_q4_K_wide_wasm_simd, block_q4_K, block_q8_K_wide, q4_K_wide_sums)
KQ_PAIRED_KERNEL(ellm_vec_dot_q5_K_wide_wasm_simd, block_q5_K, block_q8_K_wide, q5_K_wide_sums)

/* Super-block w's integer sum against a's (stored q, before the offset), in four partial lanes. */
static inline v128_t q6_K_wide_sums(const block_q6_K *w, const block_q8_K_wide *a)
{
    int16_t sc[16];
    q6_K_paired_scales(w, sc);
    v128_t acc = wasm_i32x4_splat(0);
    /* Rolled: unrolled, TurboFan issues every load of the super-block first and spills. */
#pragma clang loop unroll(disable)
    for (int m = 0; m < 4; m++) {
        int h = m >> 1, k = m & 1;
        v128_t v[4];
        q6_K_values16(w, h, k, v);
        v128_t part[4];
        for (int quarter = 0; quarter < 4; quarter++)
            part[quarter] = dot_wide16(even_u8_to_i16(v[quarter]), odd_u8_to_i16(v[quarter]),
                                       a->qs + 128 * h + 32 * quarter + 16 * k);
        acc = add_scaled_pair(acc, part[0], part[1], sc + 8 * h + 4 * k);
        acc = add_scaled_pair(acc, part[2], part[3], sc + 8 * h + 4 * k + 2);
    }
    return acc;
}

Q6_K_PAIRED_KERNEL(ellm_vec_dot_q6_K_wide_wasm_simd, block_q8_K_wide, q6_K_wide_sums)

void ellm_vec_dot_iq4_xs_wide_wasm_simd(int64_t n, float *out, const void *row, const void *x)
{
    const block_iq4_xs *w = row;
    const block_q8_K_wide *a = x;
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        v128_t acc = wasm_i32x4_splat(0);
        for (int s = 0; s < 8; s++)
            acc = add_scaled(acc, wide_iq4(w[i].qs + 16 * s, a[i].qs + 32 * s),
                             ellm_iq4_xs_scale(&w[i], s) - 32);
        int32_t isum = hsum_i32x4(acc);
        sum += ellm_f16_to_f32(w[i].d) * a[i].d * (float)isum;
    }
    *out = sum;
}

void ellm_vec_dot_q2_K_wide_wasm_simd(int64_t n, float *out, const void *row, const void *x)
{
    const block_q2_K *w = row;
    const block_q8_K_wide *a = x;
    const v128_t three = wasm_i16x8_splat(3);
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int16_t scale[16], min[16];
        q2_K_scales_mins(w[i].scales, scale, min);
        v128_t acc = wasm_i32x4_splat(0);
        for (int h = 0; h < 2; h++)
            for (int k = 0; k < 2; k++) {
                v128_t q = load(w[i].qs + 32 * h + 16 * k);
                for (int j = 0; j < 4; j++) {
                    int s = 8 * h + 2 * j + k;
                    v128_t even = wasm_v128_and(wasm_u16x8_shr(q, 2 * j), three);
                    v128_t odd = wasm_v128_and(wasm_u16x8_shr(q, 8 + 2 * j), three);
                    acc = add_scaled(acc, dot_wide16(even, odd, a[i].qs + 16 * s), scale[s]);
                }
            }
        int32_t isum = hsum_i32x4(acc);
        int32_t msum = scales_times_bsums(min, a[i].bsums);
        sum += kq_super_block_value(&w[i].d, a[i].d, isum, msum);
    }
    *out = sum;
}

void ellm_vec_dot_q3_K_wide_wasm_simd(int64_t n, float *out, const void *row, const void *x)
{
    const block_q3_K *w = row;
    const block_q8_K_wide *a = x;
    const v128_t three = wasm_i16x8_splat(3), four = wasm_i16x8_splat(4);
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int16_t scale[16];
        q3_K_scales(w[i].scales, scale);
        v128_t acc = wasm_i32x4_splat(0);
        for (int k = 0; k < 2; k++) {
            /* hmask shifted right by 4h + j: the third bits of this step's values at bit 0 of
             * each byte. */
            v128_t hmask = load(w[i].hmask + 16 * k);
            for (int h = 0; h < 2; h++) {
                v128_t q = load(w[i].qs + 32 * h + 16 * k);
                for (int j = 0; j < 4; j++) {
                    int s = 8 * h + 2 * j + k;
                    /* The stored value is q + 4 (the hmask bit, moved to bit 2, is worth 4); the
                     * 4s are removed below through the activation sums. */
                    v128_t even = wasm_v128_or(wasm_v128_and(wasm_u16x8_shr(q, 2 * j), three),
                                               wasm_v128_and(wasm_i16x8_shl(hmask, 2), four));
                    v128_t odd = wasm_v128_or(wasm_v128_and(wasm_u16x8_shr(q, 8 + 2 * j), three),
                                              wasm_v128_and(wasm_u16x8_shr(hmask, 6), four));
                    hmask = wasm_u16x8_shr(hmask, 1);
                    acc = add_scaled(acc, dot_wide16(even, odd, a[i].qs + 16 * s), scale[s]);
                }
            }
        }
        int32_t isum = hsum_i32x4(acc) - 4 * scales_times_bsums(scale, a[i].bsums);
        sum += ellm_f16_to_f32(w[i].d) * a[i].d * (float)isum;
    }
    *out = sum;
}
/* Activation quantizers: the reference quantizers' bytes (quantize_q8_0, quantize_q8_K in
 * reference.c) with the products, roundings and maxima in lanes, written plain or in the wide
 * layouts (act_ext.c) directly, without a plain block in between. */

/* Largest |x| over 4k values, NaNs skipped as fmaxf skips them (pmax keeps its first operand
 * when the comparison is false). */
static inline float abs_max(const float *x, int k4)
{
    const v128_t magnitude = wasm_i32x4_splat(0x7FFFFFFF);
    v128_t m = wasm_f32x4_splat(0.0f);
    for (int k = 0; k < k4; k++)
        m = wasm_f32x4_pmax(m, wasm_v128_and(load(x + 4 * k), magnitude));
    m = wasm_f32x4_pmax(m, wasm_i32x4_shuffle(m, m, 2, 3, 0, 1));
    m = wasm_f32x4_pmax(m, wasm_i32x4_shuffle(m, m, 1, 0, 3, 2));
    return wasm_f32x4_extract_lane(m, 0);
}

/* roundf in lanes (halves away from zero) for |v| < 2^31, as int32: v minus its truncation is
 * exact, so comparing it with 0.5 decides the rounding as roundf does. */
static inline v128_t round_half_away(v128_t v)
{
    v128_t t = wasm_f32x4_trunc(v);
    v128_t up = wasm_f32x4_ge(wasm_f32x4_abs(wasm_f32x4_sub(v, t)), wasm_f32x4_splat(0.5f));
    v128_t one = wasm_v128_or(wasm_v128_and(v, wasm_i32x4_splat((int32_t)0x80000000)),
                              wasm_f32x4_splat(1.0f));
    return wasm_i32x4_trunc_sat_f32x4(wasm_f32x4_add(t, wasm_v128_and(up, one)));
}

/* 16 int32 values (four vectors in order) stored as int16 in the wide order: the 8 of even
 * index, then the 8 of odd index (ellm_act_wide_index). */
static inline void store_wide16(int16_t *dst, const v128_t v[4])
{
    v128_t a = wasm_i16x8_narrow_i32x4(v[0], v[1]), b = wasm_i16x8_narrow_i32x4(v[2], v[3]);
    wasm_v128_store(dst, wasm_i16x8_shuffle(a, b, 0, 2, 4, 6, 8, 10, 12, 14));
    wasm_v128_store(dst + 8, wasm_i16x8_shuffle(a, b, 1, 3, 5, 7, 9, 11, 13, 15));
}

/* A Q8_0 block of x: its 32 values as int32 in q (eight vectors), its half scale returned. */
static inline uint16_t q8_0_block(const float *x, v128_t q[8])
{
    float d = abs_max(x, 8) / 127.0f;
    v128_t id = wasm_f32x4_splat(d != 0 ? 1.0f / d : 0.0f);
    for (int k = 0; k < 8; k++)
        q[k] = round_half_away(wasm_f32x4_mul(load(x + 4 * k), id));
    return ellm_f32_to_f16(d);
}

/* A block's 32 values (eight vectors of int32 in order) stored as bytes. */
static inline void store_bytes32(void *dst, const v128_t q[8])
{
    for (int k = 0; k < 8; k += 4) {
        v128_t lo = wasm_i16x8_narrow_i32x4(q[k], q[k + 1]);
        v128_t hi = wasm_i16x8_narrow_i32x4(q[k + 2], q[k + 3]);
        wasm_v128_store((int8_t *)dst + 4 * k, wasm_i8x16_narrow_i16x8(lo, hi));
    }
}

void ellm_quantize_row_q8_0_wasm_simd(const float *x, void *dst, int64_t n)
{
    block_q8_0 *b = dst;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        v128_t q[8];
        b[i].d = q8_0_block(x + i * QK8_0, q);
        store_bytes32(b[i].qs, q);
    }
}

/* The Q8_0 rows with float scales and int32 block sums after the values (act_ext.c's extended,
 * wide and split layouts): place(q, values) writes block i's values where the layout keeps them.
 * A decode step converts each matmul's input alone, while the other threads wait, so this runs
 * in lanes rather than through a plain block per 32 values. */
static inline void quantize_q8_0_with_sums(const float *x, void *dst, int64_t n,
                                           ellm_q8_0_ext_layout L, size_t block_bytes,
                                           void (*place)(const v128_t q[8], uint8_t *values))
{
    float *scales = (float *)((uint8_t *)dst + L.scales_offset);
    int32_t *block_sums = (int32_t *)((uint8_t *)dst + L.block_sums_offset);
    for (int64_t i = 0; i < n / QK8_0; i++) {
        v128_t q[8];
        scales[i] = ellm_f16_to_f32(q8_0_block(x + i * QK8_0, q));
        place(q, (uint8_t *)dst + i * block_bytes);
        v128_t total = q[0];
        for (int k = 1; k < 8; k++)
            total = wasm_i32x4_add(total, q[k]);
        block_sums[i] = hsum_i32x4(total);
    }
}

static inline void place_bytes(const v128_t q[8], uint8_t *values) { store_bytes32(values, q); }

static inline void place_wide(const v128_t q[8], uint8_t *values)
{
    store_wide16((int16_t *)values, q);
    store_wide16((int16_t *)values + 16, q + 4);
}

/* max(a, 0), then max(-a, 0) (ellm_q8_0_split_layout_for). */
static inline void place_split(const v128_t q[8], uint8_t *values)
{
    const v128_t zero = wasm_i32x4_splat(0);
    v128_t positive[8], negative[8];
    for (int k = 0; k < 8; k++) {
        positive[k] = wasm_i32x4_max(q[k], zero);
        negative[k] = wasm_i32x4_max(wasm_i32x4_neg(q[k]), zero);
    }
    store_bytes32(values, positive);
    store_bytes32(values + QK8_0, negative);
}

void ellm_quantize_q8_0_ext_wasm_simd(const float *x, void *dst, int64_t n)
{
    quantize_q8_0_with_sums(x, dst, n, ellm_q8_0_ext_layout_for(n), QK8_0, place_bytes);
}

void ellm_quantize_q8_0_wide_wasm_simd(const float *x, void *dst, int64_t n)
{
    quantize_q8_0_with_sums(x, dst, n, ellm_q8_0_wide_layout_for(n), 2 * QK8_0, place_wide);
}

void ellm_quantize_q8_0_split_wasm_simd(const float *x, void *dst, int64_t n)
{
    quantize_q8_0_with_sums(x, dst, n, ellm_q8_0_split_layout_for(n), 2 * QK8_0, place_split);
}

/* A Q8_K super-block of x: false for a block of zeros (stored as zeros); else its 256 values as
 * int32, 16 at a time, passed to put(group, four vectors, ctx), and its scale in *d. The first
 * value of largest magnitude maps to -128; nearest rounds half to even as nearbyintf does; 127
 * clamps the opposite extreme. */
static inline bool q8_K_block(const float *x, float *d, void (*put)(int, const v128_t *, void *),
                              void *ctx)
{
    float am = abs_max(x, QK_K / 4);
    if (!(am > 0))
        return false;
    float max = 0;
    for (int j = 0; j < QK_K; j++)
        if (x[j] == am || x[j] == -am) {
            max = x[j];
            break;
        }
    float iscale = -128.0f / max;
    const v128_t s = wasm_f32x4_splat(iscale), top = wasm_i32x4_splat(127);
    for (int g = 0; g < QK_K / 16; g++) {
        v128_t v[4];
        for (int k = 0; k < 4; k++)
            v[k] = wasm_i32x4_min(wasm_i32x4_trunc_sat_f32x4(wasm_f32x4_nearest(
                                      wasm_f32x4_mul(s, load(x + 16 * g + 4 * k)))),
                                  top);
        put(g, v, ctx);
    }
    *d = 1.0f / iscale;
    return true;
}

static inline int16_t sum16(const v128_t v[4])
{
    return (int16_t)hsum_i32x4(
        wasm_i32x4_add(wasm_i32x4_add(v[0], v[1]), wasm_i32x4_add(v[2], v[3])));
}

static inline void put_q8_K(int g, const v128_t *v, void *ctx)
{
    block_q8_K *b = ctx;
    v128_t lo = wasm_i16x8_narrow_i32x4(v[0], v[1]), hi = wasm_i16x8_narrow_i32x4(v[2], v[3]);
    wasm_v128_store(b->qs + 16 * g, wasm_i8x16_narrow_i16x8(lo, hi));
    b->bsums[g] = sum16(v);
}

static inline void put_q8_K_wide(int g, const v128_t *v, void *ctx)
{
    block_q8_K_wide *b = ctx;
    store_wide16(b->qs + 16 * g, v);
    b->bsums[g] = sum16(v);
}

void ellm_quantize_row_q8_K_wasm_simd(const float *x, void *dst, int64_t n)
{
    block_q8_K *b = dst;
    for (int64_t i = 0; i < n / QK_K; i++)
        if (!q8_K_block(x + i * QK_K, &b[i].d, put_q8_K, &b[i]))
            memset(&b[i], 0, sizeof b[i]);
}

void ellm_quantize_q8_K_wide_wasm_simd(const float *x, void *dst, int64_t n)
{
    block_q8_K_wide *b = dst;
    for (int64_t i = 0; i < n / QK_K; i++) {
        if (!q8_K_block(x + i * QK_K, &b[i].d, put_q8_K_wide, &b[i]))
            memset(&b[i], 0, sizeof b[i]);
        memset(b[i].unused, 0, sizeof b[i].unused);
    }
}
#endif
