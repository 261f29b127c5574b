/* The F16-cache attention head of attention_f16.inc with SIMD128 half conversions, four values
 * at a time: the same operations in the same order (no fused multiply-add, the K.Q dot summed in
 * double one product at a time), so it is bit-identical to ellm_attend_f16_portable, which it
 * leaves head sizes that are not a multiple of 4 (or over MAX_LANE_HEAD) to. The portable head
 * converts every cached value through out-of-line scalar functions, four conversions per value
 * and position, which took about a third of the web build's prefill; it also stores its running
 * output as halves at every position, which this head replaces by rounding to F16 values in
 * float lanes (the same bits, no conversion back). */
#include "quant/attention_kernels.h"

#if defined(__wasm_simd128__)
#include <math.h>
#include <stdbool.h>
#include <wasm_simd128.h>

#include "quant/lanes_wasm_simd.h"

static inline v128_t load_half4(const uint16_t *p)
{
    return halves_to_f32x4(wasm_u32x4_load16x4(p));
}

/* f rounded to the nearest half, to even, and widened back, as ellm_f16_to_f32(ellm_f32_to_f16(f))
 * gives it, without leaving float lanes: a half normal keeps 10 mantissa bits, a subnormal is a
 * multiple of 2^-24 (one float addition of 0.5, whose last mantissa bit is worth 2^-24, rounds
 * it), what rounds to 65520 or more is Inf, NaN keeps its top 9 payload bits and is made quiet. */
static inline v128_t round_to_half(v128_t f)
{
    v128_t abs = wasm_v128_and(f, wasm_i32x4_splat(0x7FFFFFFF));
    v128_t sign = wasm_v128_xor(f, abs);
    v128_t odd = wasm_v128_and(wasm_u32x4_shr(abs, 13), wasm_i32x4_splat(1));
    v128_t normal = wasm_v128_and(wasm_i32x4_add(abs, wasm_i32x4_add(wasm_i32x4_splat(0xFFF), odd)),
                                  wasm_i32x4_splat(~0x1FFF));
    v128_t sub = wasm_f32x4_sub(wasm_f32x4_add(abs, wasm_f32x4_splat(0.5f)),
                                wasm_f32x4_splat(0.5f));
    v128_t nan = wasm_v128_or(wasm_i32x4_splat(0x7FC00000),
                              wasm_v128_and(abs, wasm_i32x4_splat(0x007FE000)));
    v128_t r = wasm_v128_bitselect(sub, normal, wasm_i32x4_lt(abs, wasm_i32x4_splat(0x38800000)));
    r = wasm_v128_bitselect(wasm_i32x4_splat(0x7F800000), r,
                            wasm_i32x4_ge(abs, wasm_i32x4_splat(0x477FF000)));
    r = wasm_v128_bitselect(nan, r, wasm_i32x4_gt(abs, wasm_i32x4_splat(0x7F800000)));
    return wasm_v128_or(r, sign);
}

/* round_to_half of f limited to +-65504 first, as ellm_f16_saturate limits the portable head's
 * running output, in 9 operations where round_to_half takes 18 (this runs for every value of
 * every position and head): adding c = 2^13 times f's power of two (2^-14 at least, where halves
 * turn subnormal) leaves a sum whose last mantissa bit is worth f's last half bit, so the
 * addition rounds f to a half, to even, and subtracting c again is exact; the sign goes back on
 * after, as |f| + c - c is +0 for -0. pmin keeps a NaN a NaN, but its payload is not cut to a
 * half's as the portable head's is (and wasm leaves arithmetic's NaN bits to the engine), so a
 * head whose output has a NaN is redone by the portable head. */
static inline v128_t round_to_half_saturated(v128_t f)
{
    v128_t abs = wasm_v128_and(f, wasm_i32x4_splat(0x7FFFFFFF));
    v128_t sat = wasm_f32x4_pmin(abs, wasm_f32x4_splat(ELLM_F16_MAX));
    v128_t power = wasm_i32x4_max(wasm_v128_and(sat, wasm_i32x4_splat(0x7F800000)),
                                  wasm_i32x4_splat(0x38800000));
    v128_t c = wasm_i32x4_add(power, wasm_i32x4_splat(13 << 23));
    return wasm_v128_or(wasm_f32x4_sub(wasm_f32x4_add(sat, c), c), wasm_v128_xor(f, abs));
}

/* Positions whose K.Q dots are summed side by side, two per f64x2 vector: each lane still adds
 * its own position's products one at a time in order, so every dot is the portable head's, but
 * the chains of dependent double additions (one per position) overlap. */
enum { DOT_POSITIONS = 4 };

/* Head sizes whose running output is kept in float lanes (on the stack); larger ones, like head
 * sizes that are not a multiple of 4, take the portable head. */
enum { MAX_LANE_HEAD = 512 };

/* Four values of a cached row from d on, as floats: halves converted, or already converted. */
static inline __attribute__((always_inline)) v128_t load4(const void *row, bool halves, int32_t d)
{
    return halves ? load_half4((const uint16_t *)row + d) : wasm_v128_load((const float *)row + d);
}

/* dots[i] = Σ_d (double)(k_i[d] * qr[d]) for the DOT_POSITIONS rows k (halves, or floats). */
static inline __attribute__((always_inline)) void dots4(const float *qr,
                                                        const void *const k[DOT_POSITIONS],
                                                        bool halves, int32_t hd,
                                                        double dots[DOT_POSITIONS])
{
    v128_t acc01 = wasm_f64x2_splat(0.0), acc23 = wasm_f64x2_splat(0.0);
    for (int32_t d = 0; d < hd; d += 4) {
        v128_t qv = wasm_v128_load(qr + d);
        v128_t p0 = wasm_f32x4_mul(load4(k[0], halves, d), qv);
        v128_t p1 = wasm_f32x4_mul(load4(k[1], halves, d), qv);
        v128_t p2 = wasm_f32x4_mul(load4(k[2], halves, d), qv);
        v128_t p3 = wasm_f32x4_mul(load4(k[3], halves, d), qv);
        /* Lanes (position 0 or 2, position 1 or 3) for d, d + 1, d + 2, d + 3 in turn. */
        v128_t lo01 = wasm_i32x4_shuffle(p0, p1, 0, 4, 1, 5),
               hi01 = wasm_i32x4_shuffle(p0, p1, 2, 6, 3, 7);
        v128_t lo23 = wasm_i32x4_shuffle(p2, p3, 0, 4, 1, 5),
               hi23 = wasm_i32x4_shuffle(p2, p3, 2, 6, 3, 7);
        acc01 = wasm_f64x2_add(acc01, wasm_f64x2_promote_low_f32x4(lo01));
        acc23 = wasm_f64x2_add(acc23, wasm_f64x2_promote_low_f32x4(lo23));
        acc01 = wasm_f64x2_add(acc01,
                               wasm_f64x2_promote_low_f32x4(wasm_i64x2_shuffle(lo01, lo01, 1, 1)));
        acc23 = wasm_f64x2_add(acc23,
                               wasm_f64x2_promote_low_f32x4(wasm_i64x2_shuffle(lo23, lo23, 1, 1)));
        acc01 = wasm_f64x2_add(acc01, wasm_f64x2_promote_low_f32x4(hi01));
        acc23 = wasm_f64x2_add(acc23, wasm_f64x2_promote_low_f32x4(hi23));
        acc01 = wasm_f64x2_add(acc01,
                               wasm_f64x2_promote_low_f32x4(wasm_i64x2_shuffle(hi01, hi01, 1, 1)));
        acc23 = wasm_f64x2_add(acc23,
                               wasm_f64x2_promote_low_f32x4(wasm_i64x2_shuffle(hi23, hi23, 1, 1)));
    }
    dots[0] = wasm_f64x2_extract_lane(acc01, 0);
    dots[1] = wasm_f64x2_extract_lane(acc01, 1);
    dots[2] = wasm_f64x2_extract_lane(acc23, 0);
    dots[3] = wasm_f64x2_extract_lane(acc23, 1);
}

/* The n (<= DOT_POSITIONS) positions from kc; a short group repeats its last position. */
static void position_dots(const float *qr, const uint8_t *kc, size_t stride, int32_t n, int32_t hd,
                          double dots[DOT_POSITIONS])
{
    const void *k[DOT_POSITIONS];
    for (int i = 0; i < DOT_POSITIONS; i++)
        k[i] = kc + (size_t)(i < n ? i : n - 1) * stride;
    dots4(qr, k, true, hd, dots);
}

/* One position of one head in the portable head's order: the softmax's running maximum and sum,
 * and the running output (rescaled when the maximum moves) plus the position's values (halves,
 * or floats) times their weight, rounded to F16 values. */
static inline __attribute__((always_inline)) void add_position(float score, const void *vrow,
                                                               bool halves, int32_t hd, float *run,
                                                               float *max, float *sum)
{
    float old_scale = 1.0f, weight = 1.0f;
    if (score > *max) {
        old_scale = expf(*max - score);
        *max = score;
        /* The rescaled output stays within F16's range: saturating it changes nothing. */
        v128_t s = wasm_f32x4_splat(old_scale);
        for (int32_t d = 0; d < hd; d += 4)
            wasm_v128_store(run + d,
                            round_to_half_saturated(wasm_f32x4_mul(wasm_v128_load(run + d), s)));
    } else {
        weight = expf(score - *max);
    }
    v128_t w = wasm_f32x4_splat(weight);
    for (int32_t d = 0; d < hd; d += 4)
        wasm_v128_store(run + d,
                        round_to_half_saturated(wasm_f32x4_add(
                            wasm_v128_load(run + d), wasm_f32x4_mul(load4(vrow, halves, d), w))));
    *sum = *sum * old_scale + weight;
}

/* out = run times 1 / sum, as the portable head ends; false when a lane is NaN, whose bits
 * round_to_half_saturated does not give as the portable head does (a NaN, once in the running
 * output or the sum, stays there to the end). */
static bool finish_head(const float *run, float sum, int32_t hd, float *out)
{
    v128_t inv = wasm_f32x4_splat(1.0f / sum), nan = wasm_i32x4_splat(0);
    for (int32_t d = 0; d < hd; d += 4) {
        v128_t o = wasm_f32x4_mul(wasm_v128_load(run + d), inv);
        wasm_v128_store(out + d, o);
        nan = wasm_v128_or(nan, wasm_f32x4_ne(o, o));
    }
    return !wasm_v128_any_true(nan);
}

void ellm_attend_f16_wasm_simd(const float *q, const uint8_t *kc, const uint8_t *vc, size_t stride,
                               int32_t n_pos, int32_t hd, float scale, uint16_t *acc, float *qr,
                               float *out)
{
    /* The running output stays in float lanes, rounded to F16 values where the portable head
     * stores halves; its acc (hd halves) has no room for floats, hence the stack copy. */
    float run[MAX_LANE_HEAD];
    if (hd % 4 != 0 || hd > MAX_LANE_HEAD) {
        ellm_attend_f16_portable(q, kc, vc, stride, n_pos, hd, scale, acc, qr, out);
        return;
    }
    for (int32_t d = 0; d < hd; d += 4) {
        wasm_v128_store(qr + d, round_to_half(wasm_v128_load(q + d)));
        wasm_v128_store(run + d, wasm_f32x4_splat(0.0f));
    }
    float max = -INFINITY, sum = 0;
    double dots[DOT_POSITIONS];
    for (int32_t p = 0; p < n_pos; p++) {
        if (p % DOT_POSITIONS == 0)
            position_dots(qr, kc + (size_t)p * stride, stride,
                          n_pos - p < DOT_POSITIONS ? n_pos - p : DOT_POSITIONS, hd, dots);
        add_position((float)dots[p % DOT_POSITIONS] * scale, vc + (size_t)p * stride, true, hd, run,
                     &max, &sum);
    }
    if (!finish_head(run, sum, hd, out))
        ellm_attend_f16_portable(q, kc, vc, stride, n_pos, hd, scale, acc, qr, out);
}

/* Query heads of one KV head at a time, up to GROUP_HEADS of them: each position's keys and values
 * are converted to floats once for all of them (the single head converts them once per head),
 * and every head then runs the single head's operations in its order, so each is bit-identical
 * to it and to the portable head. */
enum { GROUP_HEADS = 8, GROUP_MAX_HEAD = 128 };

void ellm_attend_f16_group_wasm_simd(const float *q, const uint8_t *kc, const uint8_t *vc,
                                     size_t stride, int32_t n_pos, int32_t hd, float scale,
                                     int32_t n_heads, float *out)
{
    float qr[GROUP_HEADS][GROUP_MAX_HEAD], run[GROUP_HEADS][GROUP_MAX_HEAD];
    float keys[DOT_POSITIONS][GROUP_MAX_HEAD], values[GROUP_MAX_HEAD];
    float max[GROUP_HEADS], sum[GROUP_HEADS];
    uint16_t acc[GROUP_MAX_HEAD];
    double dots[GROUP_HEADS][DOT_POSITIONS];
    const void *k[DOT_POSITIONS] = {keys[0], keys[1], keys[2], keys[3]};
    for (int32_t h0 = 0; h0 < n_heads; h0 += GROUP_HEADS) {
        int nh = n_heads - h0 < GROUP_HEADS ? (int)(n_heads - h0) : GROUP_HEADS;
        for (int h = 0; h < nh; h++) {
            for (int32_t d = 0; d < hd; d += 4) {
                v128_t qv = wasm_v128_load(q + (size_t)(h0 + h) * (size_t)hd + d);
                wasm_v128_store(qr[h] + d, round_to_half(qv));
                wasm_v128_store(run[h] + d, wasm_f32x4_splat(0.0f));
            }
            max[h] = -INFINITY;
            sum[h] = 0;
        }
        for (int32_t p0 = 0; p0 < n_pos; p0 += DOT_POSITIONS) {
            int np = n_pos - p0 < DOT_POSITIONS ? (int)(n_pos - p0) : DOT_POSITIONS;
            for (int i = 0; i < DOT_POSITIONS; i++) {
                const uint16_t *krow =
                    (const uint16_t *)(kc + (size_t)(p0 + (i < np ? i : np - 1)) * stride);
                for (int32_t d = 0; d < hd; d += 4)
                    wasm_v128_store(keys[i] + d, load_half4(krow + d));
            }
            for (int h = 0; h < nh; h++)
                dots4(qr[h], k, false, hd, dots[h]);
            for (int i = 0; i < np; i++) {
                const uint16_t *vrow = (const uint16_t *)(vc + (size_t)(p0 + i) * stride);
                for (int32_t d = 0; d < hd; d += 4)
                    wasm_v128_store(values + d, load_half4(vrow + d));
                for (int h = 0; h < nh; h++)
                    add_position((float)dots[h][i] * scale, values, false, hd, run[h], &max[h],
                                 &sum[h]);
            }
        }
        for (int h = 0; h < nh; h++) {
            size_t head = (size_t)(h0 + h) * (size_t)hd;
            if (!finish_head(run[h], sum[h], hd, out + head))
                ellm_attend_f16_portable(q + head, kc, vc, stride, n_pos, hd, scale, acc, qr[h],
                                         out + head);
        }
    }
}
#endif
