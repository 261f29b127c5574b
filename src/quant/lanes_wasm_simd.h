/* SIMD128 helpers shared by the wasm-simd kernels and tiles (included only by *_wasm_simd.c
 * files, which are built with -msimd128). Every one is exact: integer sums and half-to-float
 * conversions, so the kernels built on them can match the scalar kernels bit for bit. */
#ifndef EDGELLM_QUANT_LANES_WASM_SIMD_H
#define EDGELLM_QUANT_LANES_WASM_SIMD_H

#include <stddef.h>
#include <stdint.h>
#include <wasm_simd128.h>

static inline v128_t load(const void *p) { return wasm_v128_load(p); }

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
 * unused load; an address past the end of memory (which would trap) is moved to its last line. */
enum { TOUCH_AHEAD = 2048 };

static inline __attribute__((always_inline)) void touch_line(uint64_t at)
{
    uint64_t last = (uint64_t)__builtin_wasm_memory_size(0) * 65536u - 64u;
    (void)*(const volatile uint8_t *)(uintptr_t)(at < last ? at : last);
}

/* One touch a cache line for the `bytes` weight bytes at `at`, TOUCH_AHEAD bytes ahead. */
static inline __attribute__((always_inline)) void touch_ahead(const void *at, int bytes)
{
    for (int k = 0; k < bytes; k += 64)
        touch_line((uint64_t)(uintptr_t)at + TOUCH_AHEAD + (unsigned)k);
}

/* For kernels that read a group of rows side by side (streams the hardware prefetcher follows
 * poorly) in equal steps of `step_bytes` (the bytes of one block of every row): at step `step`,
 * that share of the next group (the next rows, contiguous with these), every cache line it meets;
 * no division, which wasm does in a long instruction. */
static inline __attribute__((always_inline)) void
touch_next_group(const void *group, size_t group_bytes, size_t step_bytes, int64_t step)
{
    uint64_t at = (uint64_t)(uintptr_t)group + group_bytes + (uint64_t)step * step_bytes;
    for (size_t k = 0; k < step_bytes; k += 64)
        touch_line(at + k);
    touch_line(at + step_bytes - 1);
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
 * normals); Inf/NaN get the float's all-ones exponent. */
static inline v128_t halves_to_f32x4(v128_t h)
{
    v128_t sign = wasm_i32x4_shl(wasm_v128_and(h, wasm_i32x4_splat(0x8000)), 16);
    v128_t em = wasm_v128_and(h, wasm_i32x4_splat(0x7FFF));
    v128_t f = wasm_f32x4_mul(wasm_i32x4_shl(em, 13), wasm_i32x4_splat(0x77800000));
    v128_t special = wasm_i32x4_ge(em, wasm_i32x4_splat(0x7C00));
    f = wasm_v128_bitselect(wasm_v128_or(wasm_i32x4_shl(em, 13), wasm_i32x4_splat(0x7F800000)), f,
                            special);
    return wasm_v128_or(f, sign);
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
 * bytes that are 0x10 where the bit is set and 0 elsewhere: lo for values 0..15, hi for 16..31. */
static inline void q5_fifth_bits(const uint8_t qh[4], v128_t *lo, v128_t *hi)
{
    const v128_t bit = wasm_u8x16_make(1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128);
    const v128_t sixteen = wasm_i8x16_splat(0x10);
    v128_t h = wasm_v128_load32_splat(qh);
    v128_t l = wasm_i8x16_shuffle(h, h, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    v128_t u = wasm_i8x16_shuffle(h, h, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    *lo = wasm_v128_and(wasm_i8x16_eq(wasm_v128_and(l, bit), bit), sixteen);
    *hi = wasm_v128_and(wasm_i8x16_eq(wasm_v128_and(u, bit), bit), sixteen);
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

#endif
