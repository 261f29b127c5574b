/* WebAssembly SIMD128 kernels (the "wasm-simd" set, built with -msimd128 by Emscripten). Every
 * quantized kernel sums each block's integer products exactly in 32-bit lanes (8-bit values
 * widened to 16 bits, multiplied and pair-summed by i32x4.dot_i16x8) and then applies the scalar
 * kernel's float operations in its order, so it is bit-identical to the scalar kernel. The float
 * dots keep the scalar kernels' accumulation order too (F32: four lanes, F16: one running sum). */
#if defined(__wasm_simd128__)
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
static inline v128_t ints_q8_0(const block_q8_0 *w, const block_q8_0 *a)
{
    return wasm_i32x4_add(dot_i8x16(load(w->qs), load(a->qs)),
                          dot_i8x16(load(w->qs + 16), load(a->qs + 16)));
}

static inline v128_t ints_q4_0(const block_q4_0 *w, const block_q8_0 *a)
{
    const v128_t low4 = wasm_i8x16_splat(0x0F), eight = wasm_i8x16_splat(8);
    v128_t q = load(w->qs);
    v128_t lo = wasm_i8x16_sub(wasm_v128_and(q, low4), eight);
    v128_t hi = wasm_i8x16_sub(wasm_u8x16_shr(q, 4), eight);
    return wasm_i32x4_add(dot_i8x16(lo, load(a->qs)), dot_i8x16(hi, load(a->qs + 16)));
}

static inline v128_t ints_iq4_nl(const block_iq4_nl *w, const block_q8_0 *a)
{
    const v128_t levels = load(ellm_kvalues_iq4nl), low4 = wasm_i8x16_splat(0x0F);
    v128_t q = load(w->qs);
    v128_t lo = wasm_i8x16_swizzle(levels, wasm_v128_and(q, low4));
    v128_t hi = wasm_i8x16_swizzle(levels, wasm_u8x16_shr(q, 4));
    return wasm_i32x4_add(dot_i8x16(lo, load(a->qs)), dot_i8x16(hi, load(a->qs + 16)));
}

static inline v128_t ints_q5_0(const block_q5_0 *w, const block_q8_0 *a)
{
    const v128_t sixteen = wasm_i8x16_splat(16);
    v128_t lo, hi;
    q5_values(w->qs, w->qh, &lo, &hi);
    return wasm_i32x4_add(dot_i8x16(wasm_i8x16_sub(lo, sixteen), load(a->qs)),
                          dot_i8x16(wasm_i8x16_sub(hi, sixteen), load(a->qs + 16)));
}

/* The "_1" formats' unsigned values (0..15 or 0..31) against Q8_1 activations. */
static inline v128_t ints_q4_1(const block_q4_1 *w, const block_q8_1 *a)
{
    v128_t q = load(w->qs);
    v128_t lo = wasm_v128_and(q, wasm_i8x16_splat(0x0F)), hi = wasm_u8x16_shr(q, 4);
    return wasm_i32x4_add(dot_i8x16(lo, load(a->qs)), dot_i8x16(hi, load(a->qs + 16)));
}

static inline v128_t ints_q5_1(const block_q5_1 *w, const block_q8_1 *a)
{
    v128_t lo, hi;
    q5_values(w->qs, w->qh, &lo, &hi);
    return wasm_i32x4_add(dot_i8x16(lo, load(a->qs)), dot_i8x16(hi, load(a->qs + 16)));
}

/* The scalar kernels' float steps, sum += d_w * d_a * (float)isum per block in block order, four
 * blocks at a time: the products in lanes (the same roundings), the additions one by one. */
#define Q8_0_ACTIVATION_DOT(w, a, n, block_fn, out)                                                \
    do {                                                                                           \
        int64_t nb_ = (n) / 32, i_ = 0;                                                            \
        float sum_ = 0;                                                                            \
        for (; i_ + 4 <= nb_; i_ += 4) {                                                           \
            v128_t part_[4];                                                                       \
            for (int k_ = 0; k_ < 4; k_++)                                                         \
                part_[k_] = block_fn(&(w)[i_ + k_], &(a)[i_ + k_]);                                \
            v128_t isum_ = wasm_f32x4_convert_i32x4(transpose_sum4(part_));                        \
            v128_t dw_ = halves_to_f32x4(                                                          \
                wasm_i32x4_make((w)[i_].d, (w)[i_ + 1].d, (w)[i_ + 2].d, (w)[i_ + 3].d));          \
            v128_t da_ = halves_to_f32x4(                                                          \
                wasm_i32x4_make((a)[i_].d, (a)[i_ + 1].d, (a)[i_ + 2].d, (a)[i_ + 3].d));          \
            v128_t p_ = wasm_f32x4_mul(wasm_f32x4_mul(dw_, da_), isum_);                           \
            sum_ += wasm_f32x4_extract_lane(p_, 0);                                                \
            sum_ += wasm_f32x4_extract_lane(p_, 1);                                                \
            sum_ += wasm_f32x4_extract_lane(p_, 2);                                                \
            sum_ += wasm_f32x4_extract_lane(p_, 3);                                                \
        }                                                                                          \
        for (; i_ < nb_; i_++) {                                                                   \
            int isum1_ = hsum_i32x4(block_fn(&(w)[i_], &(a)[i_]));                                 \
            sum_ += ellm_f16_to_f32((w)[i_].d) * ellm_f16_to_f32((a)[i_].d) * (float)isum1_;       \
        }                                                                                          \
        *(out) = sum_;                                                                             \
    } while (0)

/* The same for the "_1" formats: sum += (d_w * d_a * (float)isum + m_w * s_a) per block. */
#define Q8_1_ACTIVATION_DOT(w, a, n, block_fn, out)                                                \
    do {                                                                                           \
        int64_t nb_ = (n) / 32, i_ = 0;                                                            \
        float sum_ = 0;                                                                            \
        for (; i_ + 4 <= nb_; i_ += 4) {                                                           \
            v128_t part_[4];                                                                       \
            for (int k_ = 0; k_ < 4; k_++)                                                         \
                part_[k_] = block_fn(&(w)[i_ + k_], &(a)[i_ + k_]);                                \
            v128_t isum_ = wasm_f32x4_convert_i32x4(transpose_sum4(part_));                        \
            v128_t dw_ = halves_to_f32x4(                                                          \
                wasm_i32x4_make((w)[i_].d, (w)[i_ + 1].d, (w)[i_ + 2].d, (w)[i_ + 3].d));          \
            v128_t da_ = halves_to_f32x4(                                                          \
                wasm_i32x4_make((a)[i_].d, (a)[i_ + 1].d, (a)[i_ + 2].d, (a)[i_ + 3].d));          \
            v128_t mw_ = halves_to_f32x4(                                                          \
                wasm_i32x4_make((w)[i_].m, (w)[i_ + 1].m, (w)[i_ + 2].m, (w)[i_ + 3].m));          \
            v128_t sa_ = halves_to_f32x4(                                                          \
                wasm_i32x4_make((a)[i_].s, (a)[i_ + 1].s, (a)[i_ + 2].s, (a)[i_ + 3].s));          \
            v128_t p_ = wasm_f32x4_add(wasm_f32x4_mul(wasm_f32x4_mul(dw_, da_), isum_),            \
                                       wasm_f32x4_mul(mw_, sa_));                                  \
            sum_ += wasm_f32x4_extract_lane(p_, 0);                                                \
            sum_ += wasm_f32x4_extract_lane(p_, 1);                                                \
            sum_ += wasm_f32x4_extract_lane(p_, 2);                                                \
            sum_ += wasm_f32x4_extract_lane(p_, 3);                                                \
        }                                                                                          \
        for (; i_ < nb_; i_++) {                                                                   \
            int isum1_ = hsum_i32x4(block_fn(&(w)[i_], &(a)[i_]));                                 \
            sum_ += ellm_f16_to_f32((w)[i_].d) * ellm_f16_to_f32((a)[i_].d) * (float)isum1_ +      \
                    ellm_f16_to_f32((w)[i_].m) * ellm_f16_to_f32((a)[i_].s);                       \
        }                                                                                          \
        *(out) = sum_;                                                                             \
    } while (0)

void ellm_vec_dot_q8_0_wasm_simd(int64_t n, float *out, const void *row, const void *x)
{
    const block_q8_0 *w = row, *a = x;
    Q8_0_ACTIVATION_DOT(w, a, n, ints_q8_0, out);
}

void ellm_vec_dot_q4_0_wasm_simd(int64_t n, float *out, const void *row, const void *x)
{
    const block_q4_0 *w = row;
    const block_q8_0 *a = x;
    Q8_0_ACTIVATION_DOT(w, a, n, ints_q4_0, out);
}

void ellm_vec_dot_q5_0_wasm_simd(int64_t n, float *out, const void *row, const void *x)
{
    const block_q5_0 *w = row;
    const block_q8_0 *a = x;
    Q8_0_ACTIVATION_DOT(w, a, n, ints_q5_0, out);
}

void ellm_vec_dot_q4_1_wasm_simd(int64_t n, float *out, const void *row, const void *x)
{
    const block_q4_1 *w = row;
    const block_q8_1 *a = x;
    Q8_1_ACTIVATION_DOT(w, a, n, ints_q4_1, out);
}

void ellm_vec_dot_q5_1_wasm_simd(int64_t n, float *out, const void *row, const void *x)
{
    const block_q5_1 *w = row;
    const block_q8_1 *a = x;
    Q8_1_ACTIVATION_DOT(w, a, n, ints_q5_1, out);
}

void ellm_vec_dot_iq4_nl_wasm_simd(int64_t n, float *out, const void *row, const void *x)
{
    const block_iq4_nl *w = row;
    const block_q8_0 *a = x;
    Q8_0_ACTIVATION_DOT(w, a, n, ints_iq4_nl, out);
}

/* Sum over the 8 sub-blocks of min[j] times the activations' sum over sub-block j (two bsums). */
static inline int32_t q8_K_min_term(const uint8_t *mins, const int16_t *bsums)
{
    v128_t pairs_lo = wasm_i32x4_extadd_pairwise_i16x8(load(bsums));
    v128_t pairs_hi = wasm_i32x4_extadd_pairwise_i16x8(load(bsums + 8));
    v128_t m = wasm_u16x8_load8x8(mins);
    v128_t prod = wasm_i32x4_add(wasm_i32x4_mul(pairs_lo, wasm_u32x4_extend_low_u16x8(m)),
                                 wasm_i32x4_mul(pairs_hi, wasm_u32x4_extend_high_u16x8(m)));
    return hsum_i32x4(prod);
}

/* Σ v[l] * y[l] over l < 32, with v as two vectors of 16 values in -128..127. */
static inline int32_t dot32(const v128_t v[2], const int8_t *y)
{
    return hsum_i32x4(wasm_i32x4_add(dot_i8x16(v[0], load(y)), dot_i8x16(v[1], load(y + 16))));
}

void ellm_vec_dot_q4_K_wasm_simd(int64_t n, float *out, const void *row, const void *x)
{
    const block_q4_K *w = row;
    const block_q8_K *a = x;
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        uint8_t sc[8], mn[8];
        for (int j = 0; j < 8; j++)
            ellm_kq_scale_min(j, w[i].scales, &sc[j], &mn[j]);
        int sumi = 0;
        for (int c = 0; c < 4; c++) {
            nibbles32 q = split_nibbles(w[i].qs + 32 * c);
            const int8_t *y = a[i].qs + 64 * c;
            sumi += sc[2 * c] * dot32(q.lo, y) + sc[2 * c + 1] * dot32(q.hi, y + 32);
        }
        int summ = q8_K_min_term(mn, a[i].bsums);
        sum += a[i].d * ellm_f16_to_f32(w[i].d) * (float)sumi -
               a[i].d * ellm_f16_to_f32(w[i].dmin) * (float)summ;
    }
    *out = sum;
}

void ellm_vec_dot_q5_K_wasm_simd(int64_t n, float *out, const void *row, const void *x)
{
    const block_q5_K *w = row;
    const block_q8_K *a = x;
    const v128_t one = wasm_i8x16_splat(1);
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        uint8_t sc[8], mn[8];
        for (int j = 0; j < 8; j++)
            ellm_kq_scale_min(j, w[i].scales, &sc[j], &mn[j]);
        v128_t qh[2] = {load(w[i].qh), load(w[i].qh + 16)};
        int sumi = 0;
        for (int c = 0; c < 4; c++) {
            nibbles32 q = split_nibbles(w[i].qs + 32 * c);
            for (int k = 0; k < 2; k++) {
                /* Bit 2c of qh is the fifth bit of the low value, bit 2c + 1 of the high one. */
                v128_t b_lo = wasm_v128_and(wasm_u8x16_shr(qh[k], 2 * c), one);
                v128_t b_hi = wasm_v128_and(wasm_u8x16_shr(qh[k], 2 * c + 1), one);
                q.lo[k] = wasm_v128_or(q.lo[k], wasm_i8x16_shl(b_lo, 4));
                q.hi[k] = wasm_v128_or(q.hi[k], wasm_i8x16_shl(b_hi, 4));
            }
            const int8_t *y = a[i].qs + 64 * c;
            sumi += sc[2 * c] * dot32(q.lo, y) + sc[2 * c + 1] * dot32(q.hi, y + 32);
        }
        int summ = q8_K_min_term(mn, a[i].bsums);
        sum += a[i].d * ellm_f16_to_f32(w[i].d) * (float)sumi -
               a[i].d * ellm_f16_to_f32(w[i].dmin) * (float)summ;
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
        int sumi = 0;
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = w[i].ql + 64 * h, *qh = w[i].qh + 32 * h;
            const int8_t *y = a[i].qs + 128 * h;
            const int8_t *sc = w[i].scales + 8 * h;
            for (int quarter = 0; quarter < 4; quarter++) {
                /* Quarter k covers values 32k..32k+31 of this half: sub-blocks 2k and 2k+1. */
                int part[2];
                for (int k = 0; k < 2; k++) {
                    v128_t low = load(ql + 16 * k + (quarter & 1 ? 32 : 0));
                    low = quarter < 2 ? wasm_v128_and(low, low4) : wasm_u8x16_shr(low, 4);
                    v128_t high = wasm_v128_and(wasm_u8x16_shr(load(qh + 16 * k), 2 * quarter),
                                                three);
                    v128_t q = wasm_v128_or(low, wasm_i8x16_shl(high, 4));
                    part[k] = hsum_i32x4(dot_i8x16(q, load(y + 32 * quarter + 16 * k)));
                }
                sumi += sc[2 * quarter] * part[0] + sc[2 * quarter + 1] * part[1];
            }
        }
        /* The stored q is value + 32: remove 32 * scale * (activation sum) per sub-block. */
        v128_t s = load(w[i].scales);
        v128_t off = wasm_i32x4_add(
            wasm_i32x4_dot_i16x8(wasm_i16x8_extend_low_i8x16(s), load(a[i].bsums)),
            wasm_i32x4_dot_i16x8(wasm_i16x8_extend_high_i8x16(s), load(a[i].bsums + 8)));
        sumi -= 32 * hsum_i32x4(off);
        sum += a[i].d * ellm_f16_to_f32(w[i].d) * (float)sumi;
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
        int32_t isum = 0;
        for (int s = 0; s < 8; s++) {
            v128_t q = load(w[i].qs + 16 * s);
            v128_t lo = wasm_i8x16_swizzle(levels, wasm_v128_and(q, low4));
            v128_t hi = wasm_i8x16_swizzle(levels, wasm_u8x16_shr(q, 4));
            const int8_t *y = a[i].qs + 32 * s;
            int32_t sub = hsum_i32x4(
                wasm_i32x4_add(dot_i8x16(lo, load(y)), dot_i8x16(hi, load(y + 16))));
            isum += (ellm_iq4_xs_scale(&w[i], s) - 32) * sub;
        }
        sum += ellm_f16_to_f32(w[i].d) * a[i].d * (float)isum;
    }
    *out = sum;
}
#endif
