/* SIMD128 helpers shared by the wasm-simd kernels and tiles (included only by *_wasm_simd.c
 * files, which are built with -msimd128). Every one is exact: integer sums and half-to-float
 * conversions, so the kernels built on them can match the scalar kernels bit for bit. */
#ifndef EDGELLM_QUANT_LANES_WASM_SIMD_H
#define EDGELLM_QUANT_LANES_WASM_SIMD_H

#include <stddef.h>
#include <stdint.h>
#include <wasm_simd128.h>

#include "quant/blocks.h"
#include "quant/quant.h"

static inline v128_t load(const void *p) { return wasm_v128_load(p); }

/* Relaxed SIMD's i16x8.relaxed_dot_i8x16_i7x16_s once web/relaxed_patch.py has rewritten the
 * module (lane i: a[2i] · b[2i] + a[2i + 1] · b[2i + 1], a signed, b in 0..127); before that the
 * q15mulr placeholder, so only code the wasm-relaxed set selects may call it, and nothing else of
 * ours may use q15mulr (see kernels_wasm_relaxed.c). */
static inline v128_t relaxed_dot_i8_i7(v128_t a, v128_t b) { return wasm_i16x8_q15mulr_sat(a, b); }

/* Sum of a[i] * b[i] over 16 signed bytes, in four 32-bit partial sums. */
static inline v128_t dot_i8x16(v128_t a, v128_t b)
{
    v128_t lo = wasm_i32x4_dot_i16x8(wasm_i16x8_extend_low_i8x16(a),
                                     wasm_i16x8_extend_low_i8x16(b));
    v128_t hi = wasm_i32x4_dot_i16x8(wasm_i16x8_extend_high_i8x16(a),
                                     wasm_i16x8_extend_high_i8x16(b));
    return wasm_i32x4_add(lo, hi);
}

/* A byte vector as 16-bit lanes: the bytes of even index (lanes' low bytes) and of odd index
 * (high bytes), sign-extended or zero-extended. With activations stored in that order (the
 * "wide" layouts, ellm_act_wide_index) this is all the widening a product needs. */
static inline v128_t even_i8_to_i16(v128_t v) { return wasm_i16x8_shr(wasm_i16x8_shl(v, 8), 8); }
static inline v128_t odd_i8_to_i16(v128_t v) { return wasm_i16x8_shr(v, 8); }
static inline v128_t even_u8_to_i16(v128_t v) { return wasm_v128_and(v, wasm_i16x8_splat(0xFF)); }
static inline v128_t odd_u8_to_i16(v128_t v) { return wasm_u16x8_shr(v, 8); }

/* Σ over 16 values of weight · activation, four partial sums: the weights as their even- and
 * odd-index 16-bit halves, the activations 16 int16 in the wide order. */
static inline v128_t dot_wide16(v128_t even, v128_t odd, const int16_t *a)
{
    return wasm_i32x4_add(wasm_i32x4_dot_i16x8(even, load(a)),
                          wasm_i32x4_dot_i16x8(odd, load(a + 8)));
}

/* WebAssembly has no prefetch, so the decode kernels read one byte of each cache line
 * TOUCH_AHEAD bytes ahead of the weights they multiply: the load's miss (and, every 4 KiB, its TLB
 * miss: wasm memory gets no 2 MiB pages) is served while the kernel works on the bytes already in
 * L1, and the hardware prefetcher, which stops at page boundaries, starts on the next page
 * early. The byte is read through a volatile pointer so that neither clang nor V8 drops the
 * unused load. A span that would reach past the end of memory (which would trap) is moved back
 * to end there: one clamp a span rather than one a line, which cost four of the six instructions
 * of each touch (docs/web.md, session 12). */
enum { TOUCH_AHEAD = 2048 };

static inline __attribute__((always_inline)) void touch_line(uint64_t at)
{
    (void)*(const volatile uint8_t *)(uintptr_t)at;
}

/* The start of the `bytes` bytes from `at`, moved back to end at the end of memory where they
 * would pass it. */
static inline __attribute__((always_inline)) uint64_t touch_span_start(uint64_t at, uint64_t bytes)
{
    uint64_t last_start = (uint64_t)__builtin_wasm_memory_size(0) * 65536u - bytes;
    return at < last_start ? at : last_start;
}

/* One touch a cache line for the `bytes` weight bytes at `at`, TOUCH_AHEAD bytes ahead. */
static inline __attribute__((always_inline)) void touch_ahead(const void *at, int bytes)
{
    uint64_t start = touch_span_start((uint64_t)(uintptr_t)at + TOUCH_AHEAD, (unsigned)bytes);
    for (int k = 0; k < bytes; k += 64)
        touch_line(start + (unsigned)k);
}

/* For kernels that read a group of rows side by side (streams the hardware prefetcher follows
 * poorly) in `steps` equal steps of `step_bytes` (the bytes of one block of every row): where
 * touch_next_group's touches of the next group (the next rows, contiguous with these) start,
 * the whole span moved back where it would pass the end of memory, so that one clamp serves the
 * group's steps: a clamp at every step was 6 of the 11 instructions a touch took V8 (docs/web.md,
 * session 24). */
static inline __attribute__((always_inline)) uint64_t
next_group_touches(const void *group, size_t group_bytes, size_t step_bytes, int64_t steps)
{
    return touch_span_start((uint64_t)(uintptr_t)group + group_bytes, (uint64_t)steps * step_bytes);
}

/* At step `step`, that step's share of the span from `touches`, every cache line it meets; no
 * division, which wasm does in a long instruction. */
static inline __attribute__((always_inline)) void touch_next_group(uint64_t touches,
                                                                   size_t step_bytes, int64_t step)
{
    uint64_t start = touches + (uint64_t)step * step_bytes;
    for (size_t k = 0; k < step_bytes; k += 64)
        touch_line(start + k);
    touch_line(start + step_bytes - 1);
}

/* The Q4_0 four-row kernel's touches, for groups of four rows of at most PAGE_TOUCH_MAX_GROUP
 * bytes (smollm2's 960-column rows), instead of touch_next_group's: one byte every 4 KiB of the
 * `span` bytes PAGE_TOUCH_AHEAD bytes past `end`, all at the start of a group. Each first read of a
 * 4 KiB page (a TLB miss, and where the hardware prefetcher starts on that page) then happens well
 * ahead, and the loop over the group's blocks carries no touch: Q4_0 spends the most instructions
 * per weight byte of the 32-value formats, so the touches' share of its loop was the largest (3
 * loads and their addresses of 96 instructions a block in V8): 6-8 % faster in cache, level from
 * memory. Groups spanning more than a page read 12 % slower from memory that way (2048 columns):
 * there the line touches are what the hardware prefetcher needs, as they are for Q5_0, Q8_0 and
 * the K-quants at any width (docs/web.md, session 25). */
enum { PAGE_TOUCH_AHEAD = 8192, PAGE_TOUCH_MAX_GROUP = 4096 };

static inline __attribute__((always_inline)) void touch_pages_ahead(const void *end, size_t span)
{
    uint64_t start = touch_span_start((uint64_t)(uintptr_t)end + PAGE_TOUCH_AHEAD, span);
    for (size_t k = 0; k < span; k += 4096)
        touch_line(start + k);
}

static inline int32_t hsum_i32x4(v128_t v)
{
    return wasm_i32x4_extract_lane(v, 0) + wasm_i32x4_extract_lane(v, 1) +
           wasm_i32x4_extract_lane(v, 2) + wasm_i32x4_extract_lane(v, 3);
}

/* Lane i: the sum of the four lanes of v[i]. */
static inline v128_t transpose_sum4(const v128_t v[4])
{
    v128_t ab = wasm_i32x4_add(wasm_i32x4_shuffle(v[0], v[1], 0, 4, 1, 5),
                               wasm_i32x4_shuffle(v[0], v[1], 2, 6, 3, 7));
    v128_t cd = wasm_i32x4_add(wasm_i32x4_shuffle(v[2], v[3], 0, 4, 1, 5),
                               wasm_i32x4_shuffle(v[2], v[3], 2, 6, 3, 7));
    return wasm_i32x4_add(wasm_i32x4_shuffle(ab, cd, 0, 1, 4, 5),
                          wasm_i32x4_shuffle(ab, cd, 2, 3, 6, 7));
}

/* IEEE halves held in the low 16 bits of 32-bit lanes to floats, exactly: the exponent and
 * mantissa moved into float position and rescaled by 2^112 (which also makes half subnormals float
 * normals). An Inf/NaN half comes out of that as 2^16 · (1 + mantissa), and every finite half as at
 * most 65504, so a float compare finds them, and or-ing in the all-ones exponent leaves the float
 * Inf/NaN with the half's mantissa. A float compare rather than an integer one: clang makes an
 * integer compare of these non-negative lanes unsigned, which V8 emits as four instructions on x64
 * (docs/web.md, session 16). */
static inline v128_t halves_to_f32x4(v128_t h)
{
    v128_t sign = wasm_i32x4_shl(wasm_v128_and(h, wasm_i32x4_splat(0x8000)), 16);
    v128_t em = wasm_v128_and(h, wasm_i32x4_splat(0x7FFF));
    v128_t f = wasm_f32x4_mul(wasm_i32x4_shl(em, 13), wasm_i32x4_splat(0x77800000));
    v128_t special = wasm_f32x4_ge(f, wasm_f32x4_splat(65536.0f));
    f = wasm_v128_or(f, wasm_v128_and(special, wasm_i32x4_splat(0x7F800000)));
    return wasm_v128_or(f, sign);
}

/* The four halves at p0..p3 in the low 16 bits of 32-bit lanes (the high bits zero), for
 * halves_to_f32x4: each read straight into its lane (v128.load16_lane, one vpinsrw from memory in
 * V8). An i32x4 made of four scalar loads cost V8 nine instructions and four general registers,
 * whose spills and reloads the four-row decode loops paid at every block (docs/web.md, session
 * 24). */
static inline v128_t halves4_load(const uint16_t *p0, const uint16_t *p1, const uint16_t *p2,
                                  const uint16_t *p3)
{
    v128_t h = wasm_i32x4_splat(0);
    h = wasm_v128_load16_lane(p0, h, 0);
    h = wasm_v128_load16_lane(p1, h, 2);
    h = wasm_v128_load16_lane(p2, h, 4);
    return wasm_v128_load16_lane(p3, h, 6);
}

/* The four halves at p0..p3 in the high 16 bits of 32-bit lanes, the low 16 bits those of `any`
 * (whatever vector is at hand: finite_high_halves_to_f32x4 and inf_nan_marks ignore them). No zero
 * vector to hold in a register, and no shift to move the halves up: the four-row decode loops
 * spilled vectors at every block (docs/web.md, session 25). */
static inline v128_t halves4_load_high(v128_t any, const uint16_t *p0, const uint16_t *p1,
                                       const uint16_t *p2, const uint16_t *p3)
{
    v128_t h = wasm_v128_load16_lane(p0, any, 1);
    h = wasm_v128_load16_lane(p1, h, 3);
    h = wasm_v128_load16_lane(p2, h, 5);
    return wasm_v128_load16_lane(p3, h, 7);
}

/* halves_to_f32x4 for halves (in the high 16 bits of the lanes) that are not Inf or NaN, in three
 * operations where it takes about ten: an arithmetic shift puts the half's exponent and mantissa
 * in bits 13..27 with its sign in bit 31 and copies of it in bits 28..30, which the mask clears
 * with the low bits, and the rescale by 2^112 keeps the sign. The multi-row decode kernels use it
 * with inf_nan_marks to know whether a group of rows needs halves_to_f32x4 after all (docs/web.md,
 * session 24). */
static inline v128_t finite_high_halves_to_f32x4(v128_t h)
{
    v128_t bits = wasm_v128_and(wasm_i32x4_shr(h, 3), wasm_i32x4_splat((int32_t)0x8FFFE000));
    return wasm_f32x4_mul(bits, wasm_f32x4_splat(0x1p112f));
}

/* The halves' (high 16 bits) exponents and mantissas at the top of the lanes, the sign shifted
 * out: 0x7C00 << 17 or more (unsigned) exactly where a half is Inf or NaN, whatever the low bits,
 * so the unsigned maximum of these over a row's blocks says whether any was. */
static inline v128_t inf_nan_marks(v128_t h) { return wasm_i32x4_shl(h, 1); }

static inline int any_inf_nan_mark(v128_t most)
{
    return wasm_v128_any_true(wasm_u32x4_ge(most, wasm_u32x4_splat(0x7C00u << 17)));
}

/* The low (lo) and high (hi) 4-bit values of 32 bytes, each as two vectors of 16 bytes. */
typedef struct nibbles32 {
    v128_t lo[2], hi[2];
} nibbles32;

static inline nibbles32 split_nibbles(const uint8_t *q)
{
    const v128_t low4 = wasm_i8x16_splat(0x0F);
    nibbles32 r;
    for (int k = 0; k < 2; k++) {
        v128_t v = load(q + 16 * k);
        r.lo[k] = wasm_v128_and(v, low4);
        r.hi[k] = wasm_u8x16_shr(v, 4);
    }
    return r;
}

/* The fifth bits of a Q5_0/Q5_1 block (bit j of its little-endian qh belongs to value j) as
 * bytes that are 0x10 where the bit is set and 0 elsewhere: lo for values 0..15, hi for 16..31.
 * The qh bytes are spread by swizzles, whose indices V8 keeps in a register where a shuffle's
 * mask is rebuilt at every use, and "bit clear" is a compare with zero that the and-not inverts:
 * clang makes "bit set" a "not equal to zero", three instructions in V8 (docs/web.md, session
 * 24). */
static inline void q5_fifth_bits(const uint8_t qh[4], v128_t *lo, v128_t *hi)
{
    const v128_t bit = wasm_u8x16_make(1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128);
    const v128_t fifth = wasm_i8x16_splat(0x10), zero = wasm_i32x4_splat(0);
    const v128_t spread[2] = {wasm_u8x16_make(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1),
                              wasm_u8x16_make(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3)};
    v128_t h = wasm_v128_load32_splat(qh), bytes[2];
    for (int k = 0; k < 2; k++) {
        v128_t clear = wasm_i8x16_eq(wasm_v128_and(wasm_i8x16_swizzle(h, spread[k]), bit), zero);
        bytes[k] = wasm_v128_andnot(fifth, clear);
    }
    *lo = bytes[0];
    *hi = bytes[1];
}

/* The 32 five-bit values (0..31) of a Q5_0/Q5_1 block: values 0..15 in lo, 16..31 in hi. */
static inline void q5_values(const uint8_t *qs, const uint8_t qh[4], v128_t *lo, v128_t *hi)
{
    v128_t q = load(qs), fifth_lo, fifth_hi;
    q5_fifth_bits(qh, &fifth_lo, &fifth_hi);
    const v128_t low4 = wasm_i8x16_splat(0x0F);
    /* A 16-bit shift and the mask instead of i8x16.shr_u, which V8 emulates with a shift and a
     * mask it builds anew at every use. */
    *lo = wasm_v128_or(wasm_v128_and(q, low4), fifth_lo);
    *hi = wasm_v128_or(wasm_v128_and(wasm_u16x8_shr(q, 4), low4), fifth_hi);
}

/* Q4_K and Q5_K: the eight 6-bit scales (bytes 0..7) and mins (bytes 8..15) of a super-block as
 * ellm_kq_scale_min unpacks them, from the 12 packed bytes at s (the 16 bytes read stay inside the
 * block: its quants follow). Scales and mins 0..3 are the low six bits of bytes 0..3 and 4..7;
 * scales 4..7 the low nibbles of bytes 8..11 and mins 4..7 their high nibbles, each under the top
 * two bits of bytes 0..3 (scales) or 4..7 (mins). Done in 32-bit lanes, four bytes at a time:
 * whole words moved by i32x4 shuffles and shifted by 32-bit shifts, with no byte shuffle and no
 * 8-bit shift (which x86 lacks: V8 emulates it with a 16-bit shift and a mask it builds at every
 * use); Q4_K's rows ran 4-10 % faster for it (docs/web.md, session 13). */
static inline v128_t kq_scales_mins(const uint8_t *s)
{
    v128_t raw = load(s);
    /* Bytes 0..3, 8..11, 4..7 and the high nibbles of 8..11 moved to the low ones, masked. */
    v128_t low = wasm_i32x4_shuffle(raw, wasm_u32x4_shr(raw, 4), 0, 2, 1, 6);
    low = wasm_v128_and(low, wasm_i32x4_make(0x3F3F3F3F, 0x0F0F0F0F, 0x3F3F3F3F, 0x0F0F0F0F));
    /* The top two bits of bytes 0..3 (lane 1) and 4..7 (lane 3) at bits 4, 5. */
    v128_t top = wasm_u32x4_shr(wasm_i32x4_shuffle(raw, raw, 0, 0, 1, 1), 2);
    return wasm_v128_or(low, wasm_v128_and(top, wasm_i32x4_make(0, 0x30303030, 0, 0x30303030)));
}

/* kq_scales_mins, with the eight scales also stored as int16 in sc (for 16-bit splats). */
static inline v128_t kq_scales16(const uint8_t *s, int16_t sc[8])
{
    v128_t sm = kq_scales_mins(s);
    wasm_v128_store(sc, wasm_u16x8_extend_low_u8x16(sm));
    return sm;
}

/* Σ_j min[j] · (bsums[2j] + bsums[2j + 1]), the mins being bytes 8..15 of kq_scales_mins: each
 * spread to two 16-bit lanes, so one i32x4.dot_i16x8 per eight bsums. */
static inline int32_t kq_min_term(v128_t scales_mins, const int16_t *bsums)
{
    const v128_t z = wasm_i32x4_splat(0);
    v128_t lo = wasm_i8x16_shuffle(scales_mins, z, 8, 16, 8, 16, 9, 16, 9, 16, 10, 16, 10, 16, 11,
                                   16, 11, 16);
    v128_t hi = wasm_i8x16_shuffle(scales_mins, z, 12, 16, 12, 16, 13, 16, 13, 16, 14, 16, 14, 16,
                                   15, 16, 15, 16);
    return hsum_i32x4(wasm_i32x4_add(wasm_i32x4_dot_i16x8(lo, load(bsums)),
                                     wasm_i32x4_dot_i16x8(hi, load(bsums + 8))));
}

/* The scalar kernels' float steps for two super-blocks, each with two halves d, dmin side by side
 * (at d_dmin0, d_dmin1; Q4_K, Q5_K, Q2_K): lanes 0, 1 are d_a · d · sumi and d_a · dmin · summ of
 * the first (sumi, summ in lanes 0, 1 of sums), lanes 2, 3 those of the second; the halves
 * converted in lanes. */
static inline v128_t kq_super_block_products(const uint16_t *d_dmin0, const uint16_t *d_dmin1,
                                             float da0, float da1, v128_t sums)
{
    v128_t h = wasm_i32x4_shuffle(wasm_v128_load32_zero(d_dmin0), wasm_v128_load32_zero(d_dmin1), 0,
                                  4, 1, 5);
    v128_t d = halves_to_f32x4(wasm_u32x4_extend_low_u16x8(h));
    return wasm_f32x4_mul(wasm_f32x4_mul(wasm_f32x4_make(da0, da0, da1, da1), d),
                          wasm_f32x4_convert_i32x4(sums));
}

/* One super-block's value, d_a · d · sumi − d_a · dmin · summ. */
static inline float kq_super_block_lanes(const uint16_t *d_dmin, float da, v128_t sumi_summ)
{
    v128_t p = kq_super_block_products(d_dmin, d_dmin, da, da, sumi_summ);
    return wasm_f32x4_extract_lane(p, 0) - wasm_f32x4_extract_lane(p, 1);
}

static inline float kq_super_block_value(const uint16_t *d_dmin, float da, int32_t sumi,
                                         int32_t summ)
{
    return kq_super_block_lanes(d_dmin, da, wasm_i32x4_make(sumi, summ, 0, 0));
}

/* Lane 0: the sum of a's four lanes, lane 1: of b's (lanes 2, 3 repeat them), with no lane
 * extractions. */
static inline v128_t hsum_pair_i32x4(v128_t a, v128_t b)
{
    v128_t s = wasm_i32x4_add(wasm_i32x4_shuffle(a, b, 0, 4, 1, 5),
                              wasm_i32x4_shuffle(a, b, 2, 6, 3, 7));
    return wasm_i32x4_add(s, wasm_i32x4_shuffle(s, s, 2, 3, 0, 1));
}

/* kq_min_term in four partial lanes, for the wide rows: each sub-block's two bsums summed by one
 * i32x4.dot_i16x8 against ones (at most 32 · 128 in magnitude, so the narrowing to 16 bits is
 * exact) and multiplied by the mins (bytes 8..15 of kq_scales_mins) widened to 16 bits. */
static inline v128_t kq_min_lanes(v128_t scales_mins, const int16_t *bsums)
{
    const v128_t ones = wasm_i16x8_splat(1);
    v128_t pairs = wasm_i16x8_narrow_i32x4(wasm_i32x4_dot_i16x8(load(bsums), ones),
                                           wasm_i32x4_dot_i16x8(load(bsums + 8), ones));
    return wasm_i32x4_dot_i16x8(wasm_u16x8_extend_high_u8x16(scales_mins), pairs);
}

/* Q5_K's values of chunk c from 16 bytes of qs and their qh bytes shifted right by 2c (bit 0: the
 * fifth bit of the low value, bit 1: of the high one), moved to bit 4 of both bytes of each lane
 * at once. */
static inline void q5_K_values(v128_t q, v128_t qh, v128_t *lo, v128_t *hi)
{
    const v128_t low4 = wasm_i8x16_splat(0x0F), fifth = wasm_i8x16_splat(0x10);
    *lo = wasm_v128_or(wasm_v128_and(q, low4), wasm_v128_and(wasm_i16x8_shl(qh, 4), fifth));
    *hi = wasm_v128_or(wasm_v128_and(wasm_u16x8_shr(q, 4), low4),
                       wasm_v128_and(wasm_i16x8_shl(qh, 3), fifth));
}

/* Q6_K's sumi in four partial lanes from its integer sum acc: the stored q is value + 32, so
 * 32 · scale · (activation sum) comes off per sub-block. */
static inline v128_t q6_K_sumi_lanes(const block_q6_K *w, const int16_t *bsums, v128_t acc)
{
    v128_t s = load(w->scales);
    v128_t off = wasm_i32x4_add(
        wasm_i32x4_dot_i16x8(wasm_i16x8_extend_low_i8x16(s), load(bsums)),
        wasm_i32x4_dot_i16x8(wasm_i16x8_extend_high_i8x16(s), load(bsums + 8)));
    return wasm_i32x4_sub(acc, wasm_i32x4_shl(off, 5));
}

/* Then d_a · d · sumi as the scalar kernel orders it. */
static inline float q6_K_super_block_value(const block_q6_K *w, const int16_t *bsums, float da,
                                           v128_t acc)
{
    int32_t sumi = hsum_i32x4(q6_K_sumi_lanes(w, bsums, acc));
    float d = wasm_f32x4_extract_lane(halves_to_f32x4(wasm_i32x4_splat(w->d)), 0);
    return da * d * (float)sumi;
}

/* Q4_K and Q5_K single rows (named name) of weight blocks wblock against activation blocks ablock,
 * sums(w, a, &mins) giving a super-block's sumi and summ in partial lanes. Two super-blocks per
 * step share one horizontal sum and one half conversion; their values still join the running sum
 * one by one, in order, as in the scalar kernel. */
#define KQ_PAIRED_KERNEL(name, wblock, ablock, sums)                                               \
    void name(int64_t n, float *out, const void *row, const void *x)                               \
    {                                                                                              \
        const wblock *w = row;                                                                     \
        const ablock *a = x;                                                                       \
        int64_t nb = n / QK_K, i = 0;                                                              \
        float sum = 0;                                                                             \
        for (; i + 2 <= nb; i += 2) {                                                              \
            touch_ahead(&w[i], 2 * (int)sizeof *w);                                                \
            v128_t part[4];                                                                        \
            part[0] = sums(&w[i], &a[i], &part[1]);                                                \
            part[2] = sums(&w[i + 1], &a[i + 1], &part[3]);                                        \
            v128_t p = kq_super_block_products(&w[i].d, &w[i + 1].d, a[i].d, a[i + 1].d,           \
                                               transpose_sum4(part));                              \
            sum += wasm_f32x4_extract_lane(p, 0) - wasm_f32x4_extract_lane(p, 1);                  \
            sum += wasm_f32x4_extract_lane(p, 2) - wasm_f32x4_extract_lane(p, 3);                  \
        }                                                                                          \
        for (; i < nb; i++) {                                                                      \
            v128_t mins, acc = sums(&w[i], &a[i], &mins);                                          \
            sum += kq_super_block_lanes(&w[i].d, a[i].d, hsum_pair_i32x4(acc, mins));              \
        }                                                                                          \
        *out = sum;                                                                                \
    }

/* Bytes 16k..16k + 15 of half h's two ql runs and of its qh as Q6_K's stored values (0..63):
 * values 32 quarter + 16k + l of the half, sub-block 2 quarter + k, in v[quarter]; they take the
 * low nibbles of the first run (quarter 0), of the second (1), their high nibbles (2, 3), and
 * bits 2 quarter, + 1 of qh, moved to bits 4, 5 of both bytes of a lane by one 16-bit shift. */
static inline void q6_K_values16(const block_q6_K *w, int h, int k, v128_t v[4])
{
    const v128_t low4 = wasm_i8x16_splat(0x0F), high2 = wasm_i8x16_splat(0x30);
    v128_t l0 = load(w->ql + 64 * h + 16 * k), l1 = load(w->ql + 64 * h + 32 + 16 * k);
    v128_t hb = load(w->qh + 32 * h + 16 * k);
    v[0] = wasm_v128_or(wasm_v128_and(l0, low4), wasm_v128_and(wasm_i16x8_shl(hb, 4), high2));
    v[1] = wasm_v128_or(wasm_v128_and(l1, low4), wasm_v128_and(wasm_i16x8_shl(hb, 2), high2));
    v[2] = wasm_v128_or(wasm_v128_and(wasm_u16x8_shr(l0, 4), low4), wasm_v128_and(hb, high2));
    v[3] = wasm_v128_or(wasm_v128_and(wasm_u16x8_shr(l1, 4), low4),
                        wasm_v128_and(wasm_u16x8_shr(hb, 2), high2));
}

/* Q6_K's 16 scales as int16 in the order its kernels meet them: step (h, k) meets sub-blocks
 * 8h + k, + 2, + 4, + 6, whose scales are the pairs sc[8h + 4k], [+ 1] and [+ 2], [+ 3]. */
static inline void q6_K_paired_scales(const block_q6_K *w, int16_t sc[16])
{
    v128_t s = wasm_i8x16_shuffle(load(w->scales), wasm_i32x4_splat(0), 0, 2, 4, 6, 1, 3, 5, 7, 8,
                                  10, 12, 14, 9, 11, 13, 15);
    wasm_v128_store(sc, wasm_i16x8_extend_low_i8x16(s));
    wasm_v128_store(sc + 8, wasm_i16x8_extend_high_i8x16(s));
}

/* Q6_K single rows (named name) against activation blocks ablock, sums(w, a) giving a
 * super-block's integer sum before the offset in partial lanes. Two super-blocks per step share
 * one horizontal sum and one half conversion; their values still join the running sum one by
 * one, in order. */
#define Q6_K_PAIRED_KERNEL(name, ablock, sums)                                                     \
    void name(int64_t n, float *out, const void *row, const void *x)                               \
    {                                                                                              \
        const block_q6_K *w = row;                                                                 \
        const ablock *a = x;                                                                       \
        int64_t nb = n / QK_K, i = 0;                                                              \
        float sum = 0;                                                                             \
        for (; i + 2 <= nb; i += 2) {                                                              \
            touch_ahead(&w[i], 2 * (int)sizeof *w);                                                \
            v128_t part[2];                                                                        \
            /* Rolled: unrolled, TurboFan loads both super-blocks first and spills them. */        \
            _Pragma("clang loop unroll(disable)") for (int j = 0; j < 2; j++)                      \
                part[j] = q6_K_sumi_lanes(&w[i + j], a[i + j].bsums, sums(&w[i + j], &a[i + j]));  \
            v128_t sumi = hsum_pair_i32x4(part[0], part[1]);                                       \
            v128_t d = halves_to_f32x4(wasm_i32x4_make(w[i].d, w[i + 1].d, 0, 0));                 \
            v128_t p = wasm_f32x4_mul(                                                             \
                wasm_f32x4_mul(wasm_f32x4_make(a[i].d, a[i + 1].d, 0, 0), d),                      \
                wasm_f32x4_convert_i32x4(sumi));                                                   \
            sum += wasm_f32x4_extract_lane(p, 0);                                                  \
            sum += wasm_f32x4_extract_lane(p, 1);                                                  \
        }                                                                                          \
        for (; i < nb; i++)                                                                        \
            sum += q6_K_super_block_value(&w[i], a[i].bsums, a[i].d, sums(&w[i], &a[i]));          \
        *out = sum;                                                                                \
    }

/* The scalar kernel adds the block terms to one float in block order. */
static inline float add_lanes_in_order(float sum, v128_t p)
{
    sum += wasm_f32x4_extract_lane(p, 0);
    sum += wasm_f32x4_extract_lane(p, 1);
    sum += wasm_f32x4_extract_lane(p, 2);
    sum += wasm_f32x4_extract_lane(p, 3);
    return sum;
}

/* The half-precision field f of blocks p[0..3], as floats in lanes. */
#define HALVES4(p, f) halves_to_f32x4(halves4_load(&(p)[0].f, &(p)[1].f, &(p)[2].f, &(p)[3].f))

/* Four blocks' (or four rows') float terms d_w · d_a · isum in lanes, from their integer sums
 * before the offset (sums): the format's offset comes off each as offset times the activation
 * block sum, and the products round as the scalar kernel's do. */
static inline v128_t wide_terms(v128_t sums, v128_t bsums, int offset, v128_t dw, v128_t da)
{
    v128_t isum = wasm_i32x4_sub(sums, wasm_i32x4_mul(bsums, wasm_i32x4_splat(offset)));
    return wasm_f32x4_mul(wasm_f32x4_mul(dw, da), wasm_f32x4_convert_i32x4(isum));
}

/* A 32-value format's single row against an activation row of ellm_q8_0_ext_layout's shape
 * (layout_for: the extended or the wide layout, values of type act_t), four blocks' terms at a
 * time. block_fn gives a block's partial sums in a vector and sum4 four such vectors' totals in
 * lanes (transpose_sum4 for four 32-bit partial sums). */
#define EXT_ACTIVATION_DOT(layout_for, act_t, block_type, block_fn, sum4, offset)                  \
    do {                                                                                           \
        const ellm_q8_0_ext_layout L_ = layout_for(n);                                             \
        const block_type *w_ = row;                                                                \
        const act_t *a_ = x;                                                                       \
        const float *da_ = (const float *)((const uint8_t *)x + L_.scales_offset);                 \
        const int32_t *bsums_ = (const int32_t *)((const uint8_t *)x + L_.block_sums_offset);      \
        int64_t nb_ = n / QK8_0, i_ = 0;                                                           \
        float sum_ = 0;                                                                            \
        for (; i_ + 4 <= nb_; i_ += 4) {                                                           \
            v128_t part_[4];                                                                       \
            for (int k_ = 0; k_ < 4; k_++)                                                         \
                part_[k_] = block_fn(&w_[i_ + k_], a_ + (i_ + k_) * QK8_0);                        \
            sum_ = add_lanes_in_order(sum_, wide_terms(sum4(part_), load(bsums_ + i_), offset,     \
                                                       HALVES4(w_ + i_, d), load(da_ + i_)));      \
        }                                                                                          \
        for (; i_ < nb_; i_++) {                                                                   \
            /* The block's partial sums alone in lane 0 of sum4's totals. */                       \
            v128_t part_[4] = {block_fn(&w_[i_], a_ + i_ * QK8_0), wasm_i32x4_splat(0),            \
                               wasm_i32x4_splat(0), wasm_i32x4_splat(0)};                          \
            int isum1_ = wasm_i32x4_extract_lane(sum4(part_), 0) - (offset)*bsums_[i_];            \
            sum_ += ellm_f16_to_f32(w_[i_].d) * da_[i_] * (float)isum1_;                           \
        }                                                                                          \
        *out = sum_;                                                                               \
    } while (0)

/* The block loop of EXT_ACTIVATION_ROWS over the group of four rows w_, line_touches (a constant)
 * saying whether it touches the next group a line at a time at every block. */
#define EXT_ACTIVATION_STEPS(block_type, block_fn, sum4, offset, line_touches)                     \
    for (int64_t i_ = 0; i_ < nb_; i_++) {                                                         \
        if (line_touches)                                                                          \
            touch_next_group(touches_, 4 * sizeof(block_type), i_);                                \
        v128_t part_[4];                                                                           \
        for (int k_ = 0; k_ < 4; k_++)                                                             \
            part_[k_] = block_fn(&w_[k_][i_], a_ + i_ * QK8_0);                                    \
        v128_t h_ = halves4_load_high(load(a_ + i_ * QK8_0), &w_[0][i_].d, &w_[1][i_].d,           \
                                      &w_[2][i_].d, &w_[3][i_].d);                                 \
        marks_ = wasm_u32x4_max(marks_, inf_nan_marks(h_));                                        \
        sum_ = wasm_f32x4_add(sum_, wide_terms(sum4(part_), wasm_i32x4_splat(bsums_[i_]), offset,  \
                                               finite_high_halves_to_f32x4(h_),                    \
                                               wasm_f32x4_splat(da_[i_])));                        \
    }

/* ELLM_DOT_ROWS rows against one such row, four at a time: block i of the four rows gives one
 * vector of terms whose lane r is row r's, so each lane's running sum takes its row's terms in
 * block order, as the scalar kernel's single float does, with no horizontal sums or lane
 * extractions, and the four rows' addition chains overlap. The scales are converted as finite
 * halves; a group with an Inf or NaN scale is done again by the single-row kernel (single_row),
 * which converts every half exactly and gives the same bits otherwise. With page_touches, a group
 * of at most PAGE_TOUCH_MAX_GROUP bytes touches the next weights a page at a time before its
 * blocks (touch_pages_ahead); other groups touch them a line at a time at every block. */
#define EXT_ACTIVATION_ROWS(layout_for, act_t, block_type, block_fn, sum4, offset, page_touches,   \
                            single_row)                                                            \
    do {                                                                                           \
        const ellm_q8_0_ext_layout L_ = layout_for(n);                                             \
        const act_t *a_ = x;                                                                       \
        const float *da_ = (const float *)((const uint8_t *)x + L_.scales_offset);                 \
        const int32_t *bsums_ = (const int32_t *)((const uint8_t *)x + L_.block_sums_offset);      \
        int64_t nb_ = n / QK8_0;                                                                   \
        for (int g_ = 0; g_ < ELLM_DOT_ROWS; g_ += 4) {                                            \
            const block_type *w_[4];                                                               \
            for (int k_ = 0; k_ < 4; k_++)                                                         \
                w_[k_] = (const block_type *)((const uint8_t *)rows +                              \
                                              (size_t)(g_ + k_) * row_bytes);                      \
            v128_t sum_ = wasm_f32x4_splat(0.0f), marks_ = wasm_i32x4_splat(0);                    \
            uint64_t touches_ = next_group_touches(w_[0], 4 * row_bytes, 4 * sizeof(block_type),   \
                                                   nb_);                                           \
            if ((page_touches) && 4 * row_bytes <= PAGE_TOUCH_MAX_GROUP) {                         \
                touch_pages_ahead((const uint8_t *)w_[0] + 4 * row_bytes, 4 * row_bytes);          \
                EXT_ACTIVATION_STEPS(block_type, block_fn, sum4, offset, 0)                        \
            } else {                                                                               \
                EXT_ACTIVATION_STEPS(block_type, block_fn, sum4, offset, 1)                        \
            }                                                                                      \
            wasm_v128_store(out + g_, sum_);                                                       \
            if (any_inf_nan_mark(marks_))                                                          \
                for (int k_ = 0; k_ < 4; k_++)                                                     \
                    single_row(n, out + g_ + k_, w_[k_], x);                                       \
        }                                                                                          \
    } while (0)

/* A 32-value format's single-row and multi-row decode kernels on such a row, named
 * ellm_vec_dot_<type>_<kind>_<set> and ellm_vec_dot_<type>_<kind>_rows_<set>. */
#define EXT_ACTIVATION_KERNELS(type, kind, set, layout_for, act_t, block_fn, sum4, offset,         \
                               page_touches)                                                       \
    void ellm_vec_dot_##type##_##kind##_##set(int64_t n, float *out, const void *row,              \
                                              const void *x)                                       \
    {                                                                                              \
        EXT_ACTIVATION_DOT(layout_for, act_t, block_##type, block_fn, sum4, offset);               \
    }                                                                                              \
    void ellm_vec_dot_##type##_##kind##_rows_##set(int64_t n, float *out, const void *rows,        \
                                                   size_t row_bytes, const void *x)                \
    {                                                                                              \
        EXT_ACTIVATION_ROWS(layout_for, act_t, block_##type, block_fn, sum4, offset, page_touches, \
                            ellm_vec_dot_##type##_##kind##_##set);                                 \
    }

#endif
