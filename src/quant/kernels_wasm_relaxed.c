/* The "wasm-relaxed" set's kernels: the wasm-simd ones with the 8-bit products done by relaxed
 * SIMD's i16x8.relaxed_dot_i8x16_i7x16_s (pmaddubsw on x86), which multiplies signed bytes by
 * bytes below 128 and adds adjacent pairs into 16-bit lanes. clang 14 has no intrinsic for it, so
 * these kernels call i16x8.q15mulr_sat_s (same operands, same encoded length) in its place and the
 * web build rewrites those opcodes in the linked module (web/relaxed_patch.py); the set is chosen
 * only when ellm_wasm_relaxed_patched says the rewrite happened.
 *
 * The second operand is always a weight level below 64 (Q4_0's nibbles, Q5_0's, Q4_K's and Q5_K's
 * levels, Q6_K's stored values, all before their offsets) and the first an activation, so a pair
 * sum is at most 2 · 63 · 128 in magnitude, exact in 16 bits on every engine, and the integer sums,
 * hence the results, are those of the scalar kernels bit for bit. Q8_0 is the exception: its signed
 * weights are the first operand and the activations' two halves (0..127) the second. */
#if defined(__wasm_simd128__)
#include <stdbool.h>
#include <string.h>
#include <wasm_simd128.h>

#include "quant/blocks.h"
#include "quant/kernels.h"
#include "quant/kquants.h"
#include "quant/lanes_wasm_simd.h"

bool ellm_wasm_relaxed_patched(void)
{
    /* Read through volatile so that clang cannot fold the placeholder with values it knows. The
     * dot of each pair differs from the Q15 product of the same lanes read as int16. */
    static const volatile int8_t a[16] = {7, 0, -7, 3,  -128, 127, 1,  2,
                                          0, 0, 5,  -5, 100,  0,   -1, -1};
    static const volatile int8_t b[16] = {9, 0, 9, 5, 127, 127, 3, 4, 0, 0, 2, 3, 100, 0, 1, 1};
    static const int16_t want[8] = {63, -48, -127, 11, 0, -5, 10000, -2};
    int8_t av[16], bv[16];
    for (int i = 0; i < 16; i++) {
        av[i] = a[i];
        bv[i] = b[i];
    }
    int16_t got[8];
    wasm_v128_store(got, relaxed_dot_i8_i7(load(av), load(bv)));
    return memcmp(got, want, sizeof want) == 0;
}

/* acc + s[0] · (lanes of lo) + s[1] · (lanes of hi), lo and hi two sub-blocks' 16-bit pair sums. */
static inline v128_t add_scaled16_pair(v128_t acc, v128_t lo, v128_t hi, const int16_t s[2])
{
    return wasm_i32x4_add(acc,
                          wasm_i32x4_add(wasm_i32x4_dot_i16x8(lo, wasm_v128_load16_splat(s)),
                                         wasm_i32x4_dot_i16x8(hi, wasm_v128_load16_splat(s + 1))));
}

/* Super-block w's sumi against a's in four partial lanes, its summ in *mins. Chunk c holds
 * sub-blocks 2c (low nibbles, lo) and 2c + 1 (high nibbles, hi), 32 values each: two dots of 16
 * add up to at most 2 · 2 · 15 · 128 per 16-bit lane. */
static inline v128_t q4_K_relaxed_sums(const block_q4_K *w, const block_q8_K *a, v128_t *mins)
{
    const v128_t low4 = wasm_i8x16_splat(0x0F);
    int16_t sc[8];
    v128_t sm = kq_scales16(w->scales, sc);
    v128_t acc = wasm_i32x4_splat(0);
    /* Rolled: unrolled, TurboFan issues all the activation loads first and spills them. */
#pragma clang loop unroll(disable)
    for (int c = 0; c < 4; c++) {
        v128_t q0 = load(w->qs + 32 * c), q1 = load(w->qs + 32 * c + 16);
        const int8_t *y = a->qs + 64 * c;
        /* A 16-bit shift and the mask: V8 emulates i8x16.shr_u with more instructions. */
        v128_t lo = wasm_i16x8_add(relaxed_dot_i8_i7(load(y), wasm_v128_and(q0, low4)),
                                   relaxed_dot_i8_i7(load(y + 16), wasm_v128_and(q1, low4)));
        v128_t hi = wasm_i16x8_add(
            relaxed_dot_i8_i7(load(y + 32), wasm_v128_and(wasm_u16x8_shr(q0, 4), low4)),
            relaxed_dot_i8_i7(load(y + 48), wasm_v128_and(wasm_u16x8_shr(q1, 4), low4)));
        acc = add_scaled16_pair(acc, lo, hi, sc + 2 * c);
    }
    *mins = kq_min_lanes(sm, a->bsums);
    return acc;
}

/* The same for Q5_K, whose levels reach 31: two dots of 16 stay below 2 · 2 · 31 · 128. */
static inline v128_t q5_K_relaxed_sums(const block_q5_K *w, const block_q8_K *a, v128_t *mins)
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
            const int8_t *y = a->qs + 64 * c + 16 * k;
            lo = wasm_i16x8_add(lo, relaxed_dot_i8_i7(load(y), v_lo));
            hi = wasm_i16x8_add(hi, relaxed_dot_i8_i7(load(y + 32), v_hi));
        }
        acc = add_scaled16_pair(acc, lo, hi, sc + 2 * c);
    }
    *mins = kq_min_lanes(sm, a->bsums);
    return acc;
}

KQ_PAIRED_KERNEL(ellm_vec_dot_q4_K_wasm_relaxed, block_q4_K, block_q8_K, q4_K_relaxed_sums)
KQ_PAIRED_KERNEL(ellm_vec_dot_q5_K_wasm_relaxed, block_q5_K, block_q8_K, q5_K_relaxed_sums)

/* acc + s0 · (lanes of lo) + s1 · (lanes of hi), the scales read from s0 and s1. */
static inline v128_t add_scaled16_two(v128_t acc, v128_t lo, v128_t hi, const int16_t *s0,
                                      const int16_t *s1)
{
    return wasm_i32x4_add(acc,
                          wasm_i32x4_add(wasm_i32x4_dot_i16x8(lo, wasm_v128_load16_splat(s0)),
                                         wasm_i32x4_dot_i16x8(hi, wasm_v128_load16_splat(s1))));
}

/* Super-block w's integer sum against a's (stored values 0..63, before the offset) in four
 * partial lanes: one dot of 16 per sub-block, at most 2 · 63 · 128 per 16-bit lane, scaled by the
 * sub-block's signed scale in 32 bits. Step (h, k) meets sub-blocks 8h + k, + 2, + 4, + 6, whose
 * scales are read from the 16 widened in their own order: no byte shuffle to pair them. Each
 * half's two steps are a loop of their own with pointers stepped by a constant, which V8 unrolls:
 * one rolled loop of four steps cost TurboFan about 20 scalar instructions a step to split the
 * step number into h and k, and spilled more (docs/web.md, session 19). */
static inline v128_t q6_K_relaxed_sums(const block_q6_K *w, const block_q8_K *a)
{
    int16_t sc[16];
    v128_t s = load(w->scales);
    wasm_v128_store(sc, wasm_i16x8_extend_low_i8x16(s));
    wasm_v128_store(sc + 8, wasm_i16x8_extend_high_i8x16(s));
    v128_t acc = wasm_i32x4_splat(0);
    for (int h = 0; h < 2; h++) {
        const int8_t *y = a->qs + 128 * h;
        const int16_t *sm = sc + 8 * h;
#pragma clang loop unroll(disable)
        for (int k = 0; k < 2; k++) {
            v128_t v[4];
            q6_K_values16(w, h, k, v);
            acc = add_scaled16_two(acc, relaxed_dot_i8_i7(load(y), v[0]),
                                   relaxed_dot_i8_i7(load(y + 32), v[1]), sm, sm + 2);
            acc = add_scaled16_two(acc, relaxed_dot_i8_i7(load(y + 64), v[2]),
                                   relaxed_dot_i8_i7(load(y + 96), v[3]), sm + 4, sm + 6);
            y += 16;
            sm += 1;
        }
    }
    return acc;
}

Q6_K_PAIRED_KERNEL(ellm_vec_dot_q6_K_wasm_relaxed, block_q8_K, q6_K_relaxed_sums)

/* ELLM_DOT_ROWS rows against one plain Q8_K row, four at a time: terms(w, i, a) gives super-block
 * i's value of the four rows w[0..3] in lanes, with the scalar kernel's float operations, so
 * each lane's running sum takes its row's values in order, as the single rows do; the activations
 * stay in L1 for the four rows and the next group's weights are touched ahead. Long rows too:
 * session 12 sent rows of more than 8 super-blocks (tinyllama's FFN down, 22) to the single-row
 * kernels, which made whole-model decode in Node 8-14 % slower (docs/web.md, session 13). */
#define KQ_RELAXED_ROWS(name, wblock, terms)                                                       \
    void name(int64_t n, float *out, const void *rows, size_t row_bytes, const void *x)            \
    {                                                                                              \
        const block_q8_K *a = x;                                                                   \
        int64_t nb = n / QK_K;                                                                     \
        for (int g = 0; g < ELLM_DOT_ROWS; g += 4) {                                               \
            const wblock *w[4];                                                                    \
            for (int k = 0; k < 4; k++)                                                            \
                w[k] = (const wblock *)((const uint8_t *)rows + (size_t)(g + k) * row_bytes);      \
            v128_t sum = wasm_f32x4_splat(0.0f);                                                   \
            uint64_t touches = next_group_touches(w[0], 4 * row_bytes, 4 * sizeof(wblock), nb);    \
            for (int64_t i = 0; i < nb; i++) {                                                     \
                touch_next_group(touches, 4 * sizeof(wblock), i);                                  \
                sum = wasm_f32x4_add(sum, terms(w, i, &a[i]));                                     \
            }                                                                                      \
            wasm_v128_store(out + g, sum);                                                         \
        }                                                                                          \
    }

/* The half field f of super-block i of the four rows w[0..3], as floats in lanes. */
#define HALVES4_OF(w, i, f)                                                                        \
    halves_to_f32x4(halves4_load(&(w)[0][i].f, &(w)[1][i].f, &(w)[2][i].f, &(w)[3][i].f))

/* Q4_K and Q5_K: d_a · d · sumi − d_a · dmin · summ in each row's lane. */
#define KQ_MIN_TERMS(type)                                                                         \
    static inline v128_t type##_rows_terms(const block_##type *const w[4], int64_t i,              \
                                           const block_q8_K *a)                                    \
    {                                                                                              \
        v128_t sumi[4], summ[4];                                                                   \
        for (int k = 0; k < 4; k++)                                                                \
            sumi[k] = type##_relaxed_sums(&w[k][i], a, &summ[k]);                                  \
        v128_t da = wasm_f32x4_splat(a->d);                                                        \
        v128_t d = HALVES4_OF(w, i, d), dmin = HALVES4_OF(w, i, dmin);                             \
        return wasm_f32x4_sub(                                                                     \
            wasm_f32x4_mul(wasm_f32x4_mul(da, d), wasm_f32x4_convert_i32x4(transpose_sum4(sumi))), \
            wasm_f32x4_mul(wasm_f32x4_mul(da, dmin),                                               \
                           wasm_f32x4_convert_i32x4(transpose_sum4(summ))));                       \
    }

KQ_MIN_TERMS(q4_K)
KQ_MIN_TERMS(q5_K)

/* Q6_K: d_a · d · sumi, sumi with the offset off, in each row's lane. */
static inline v128_t q6_K_rows_terms(const block_q6_K *const w[4], int64_t i, const block_q8_K *a)
{
    v128_t sumi[4];
    for (int k = 0; k < 4; k++)
        sumi[k] = q6_K_sumi_lanes(&w[k][i], a->bsums, q6_K_relaxed_sums(&w[k][i], a));
    return wasm_f32x4_mul(wasm_f32x4_mul(wasm_f32x4_splat(a->d), HALVES4_OF(w, i, d)),
                          wasm_f32x4_convert_i32x4(transpose_sum4(sumi)));
}

KQ_RELAXED_ROWS(ellm_vec_dot_q4_K_rows_wasm_relaxed, block_q4_K, q4_K_rows_terms)
KQ_RELAXED_ROWS(ellm_vec_dot_q5_K_rows_wasm_relaxed, block_q5_K, q5_K_rows_terms)
KQ_RELAXED_ROWS(ellm_vec_dot_q6_K_rows_wasm_relaxed, block_q6_K, q6_K_rows_terms)

/* The 32-value formats against the extended Q8_0 row (ELLM_ACT_Q8_0_EXT: int8 values, float
 * scales, int32 block sums, the decode path): the products of a block's unsigned levels (lo: values
 * 0..15, hi: 16..31) in eight 16-bit lanes, each the sum of four products, at most 4 · 15 · 128
 * for Q4_0's levels and 4 · 31 · 128 for Q5_0's; the format's offset comes off afterwards through
 * the block sums, as in the wide-row kernels. */
static inline v128_t relaxed_levels32(v128_t lo, v128_t hi, const int8_t *a)
{
    return wasm_i16x8_add(relaxed_dot_i8_i7(load(a), lo), relaxed_dot_i8_i7(load(a + 16), hi));
}

static inline v128_t relaxed_q4_0(const block_q4_0 *w, const int8_t *a)
{
    const v128_t low4 = wasm_i8x16_splat(0x0F);
    v128_t q = load(w->qs);
    return relaxed_levels32(wasm_v128_and(q, low4), wasm_v128_and(wasm_u16x8_shr(q, 4), low4), a);
}

static inline v128_t relaxed_q5_0(const block_q5_0 *w, const int8_t *a)
{
    v128_t lo, hi;
    q5_values(w->qs, w->qh, &lo, &hi);
    return wasm_i32x4_extadd_pairwise_i16x8(relaxed_levels32(lo, hi, a));
}

/* Four blocks' (or rows') totals in lanes from their eight 16-bit partial sums each, added in 16
 * bits up to the last step: transpose_sum4's shuffles on pairs of lanes, then one widening where
 * transpose_sum4 would need one per vector. Exact for Q4_0's partial sums: four of them add up to at
 * most 16 · 15 · 128 = 30720. */
static inline v128_t transpose_sum4_q4_0(const v128_t v[4])
{
    v128_t ab = wasm_i16x8_add(wasm_i32x4_shuffle(v[0], v[1], 0, 4, 1, 5),
                               wasm_i32x4_shuffle(v[0], v[1], 2, 6, 3, 7));
    v128_t cd = wasm_i16x8_add(wasm_i32x4_shuffle(v[2], v[3], 0, 4, 1, 5),
                               wasm_i32x4_shuffle(v[2], v[3], 2, 6, 3, 7));
    return wasm_i32x4_extadd_pairwise_i16x8(wasm_i16x8_add(wasm_i32x4_shuffle(ab, cd, 0, 1, 4, 5),
                                                           wasm_i32x4_shuffle(ab, cd, 2, 3, 6, 7)));
}

/* A 32-value format's single-row and multi-row decode kernels on the extended Q8_0 row. */
#define RELAXED_EXT_KERNELS(type, sum4, offset, page_touches)                                      \
    EXT_ACTIVATION_KERNELS(type, ext, wasm_relaxed, ellm_q8_0_ext_layout_for, int8_t,              \
                           relaxed_##type, sum4, offset, page_touches)

RELAXED_EXT_KERNELS(q4_0, transpose_sum4_q4_0, 8, 1)

/* Row k of a Q4_0 group in ELLM_ROWS_BY_FOUR order against the extended row, block by block with
 * the scalar kernel's operations and every half converted exactly: the four-row kernel's way for
 * a group with an Inf or NaN scale, the same bits as ellm_vec_dot_q4_0_ext_wasm_relaxed on the
 * row in plain order. */
static float q4_0_row_of_four_dot(int64_t n, const uint8_t *group, int k, const int8_t *a,
                                  const float *da, const int32_t *bsums)
{
    float sum = 0;
    for (int64_t i = 0; i < n / QK4_0; i++, group += ELLM_BY_FOUR * sizeof(block_q4_0)) {
        uint16_t d;
        memcpy(&d, group + sizeof d * k, sizeof d);
        const uint8_t *qs = group + ELLM_BY_FOUR * sizeof d + QK4_0 / 2 * k;
        int isum = -8 * bsums[i];
        for (int j = 0; j < QK4_0 / 2; j++)
            isum += (qs[j] & 0x0F) * a[QK4_0 * i + j] + (qs[j] >> 4) * a[QK4_0 * i + j + 16];
        sum += ellm_f16_to_f32(d) * da[i] * (float)isum;
    }
    return sum;
}

/* The four rows of a Q4_0 group in ELLM_ROWS_BY_FOUR order against the extended Q8_0 row: the
 * four-row loop of EXT_ACTIVATION_ROWS on one stream. Each block step reads the four scales in
 * one 8-byte load (widened into the lanes' low halves and moved up for
 * finite_high_halves_to_f32x4) and the four rows' quants from consecutive addresses, with no row
 * pointers to keep; the activations are loaded once for the four rows. No touches ahead: the
 * hardware prefetcher follows one stream, and touching a line a block ahead measured level in
 * cache, at 48 MiB and from memory (docs/web.md, session 26). */
void ellm_vec_dot_q4_0_by_four_wasm_relaxed(int64_t n, float *out, const void *rows,
                                            size_t row_bytes, const void *x)
{
    (void)row_bytes;
    const ellm_q8_0_ext_layout L = ellm_q8_0_ext_layout_for(n);
    const int8_t *a = x;
    const float *da = (const float *)((const uint8_t *)x + L.scales_offset);
    const int32_t *bsums = (const int32_t *)((const uint8_t *)x + L.block_sums_offset);
    const v128_t low4 = wasm_i8x16_splat(0x0F);
    const size_t step = ELLM_BY_FOUR * sizeof(block_q4_0);
    int64_t nb = n / QK4_0;
    const uint8_t *blk = rows;
    v128_t sum = wasm_f32x4_splat(0.0f), marks = wasm_i32x4_splat(0);
    for (int64_t i = 0; i < nb; i++, blk += step) {
        v128_t a0 = load(a + QK4_0 * i), a1 = load(a + QK4_0 * i + 16);
        v128_t part[4];
        for (int k = 0; k < 4; k++) {
            v128_t q = load(blk + ELLM_BY_FOUR * sizeof(uint16_t) + QK4_0 / 2 * k);
            part[k] = wasm_i16x8_add(
                relaxed_dot_i8_i7(a0, wasm_v128_and(q, low4)),
                relaxed_dot_i8_i7(a1, wasm_v128_and(wasm_u16x8_shr(q, 4), low4)));
        }
        v128_t h = wasm_i32x4_shl(wasm_u32x4_load16x4(blk), 16);
        marks = wasm_u32x4_max(marks, inf_nan_marks(h));
        sum = wasm_f32x4_add(sum,
                             wide_terms(transpose_sum4_q4_0(part), wasm_i32x4_splat(bsums[i]), 8,
                                        finite_high_halves_to_f32x4(h), wasm_f32x4_splat(da[i])));
    }
    wasm_v128_store(out, sum);
    if (any_inf_nan_mark(marks))
        for (int k = 0; k < 4; k++)
            out[k] = q4_0_row_of_four_dot(n, rows, k, a, da, bsums);
}
RELAXED_EXT_KERNELS(q5_0, transpose_sum4, 16, 0)

/* Pairs of 16-bit lanes added into 32 bits. A dot against ones rather than
 * i32x4.extadd_pairwise_i16x8_s, which V8 emits as a multiply by a constant in memory whose
 * address it reloads at every use; this constant clang keeps in a local, V8 in a register. */
static inline v128_t widen_pairs(v128_t v)
{
    const v128_t ones = wasm_i16x8_splat(1);
    return wasm_i32x4_dot_i16x8(v, ones);
}

/* v, stored to and read back from a volatile local. The store is an effect, and V8 keeps effects
 * in program order, so TurboFan computes v before the loads that follow it. Without it, it issues
 * the loads of all four rows of a Q8_0 group first (two weight vectors a row, on top of the four
 * activation vectors) and spills the products they feed: the four-row loop went from 120 to 108
 * instructions a block, its only vector spill left the Inf/NaN marks (docs/web.md, session 25). */
static inline v128_t finished_before_later_loads(v128_t v)
{
    volatile v128_t kept = v;
    return kept;
}

/* Q8_0's signed weights against the split row (ELLM_ACT_Q8_0_SPLIT): the weights are the signed
 * operand and the activations' positive and negative parts (0..127) the 7-bit one, so each dot's
 * pair sums are at most 2 · 128 · 127 in magnitude, and so is their difference, the true pair sum
 * of weight times activation: exact in 16 bits for every weight, -128 included, then widened
 * (two such differences would not fit). A block's 64 bytes step as 32 int16 in the macros. */
static inline v128_t relaxed_q8_0(const block_q8_0 *w, const int16_t *split)
{
    const int8_t *pos = (const int8_t *)split, *neg = pos + QK8_0;
    v128_t w0 = load(w->qs), w1 = load(w->qs + 16);
    v128_t lo = wasm_i16x8_sub(relaxed_dot_i8_i7(w0, load(pos)), relaxed_dot_i8_i7(w0, load(neg)));
    v128_t hi = wasm_i16x8_sub(relaxed_dot_i8_i7(w1, load(pos + 16)),
                               relaxed_dot_i8_i7(w1, load(neg + 16)));
    return finished_before_later_loads(wasm_i32x4_add(widen_pairs(lo), widen_pairs(hi)));
}

EXT_ACTIVATION_KERNELS(q8_0, split, wasm_relaxed, ellm_q8_0_split_layout_for, int16_t, relaxed_q8_0,
                       transpose_sum4, 0, 0)
#endif
