/* The F16 attention head with AArch64's half-precision conversion instructions (FCVT, FCVTL,
 * FCVTN: baseline ARMv8, round to nearest even like the portable routines). */
#include "quant/attention_kernels.h"

#if defined(ELLM_HAVE_NEON_ATTENTION)
#include <arm_neon.h>
#include <math.h>
#include <string.h>

static inline float half_to_float(uint16_t h)
{
    __fp16 f;
    memcpy(&f, &h, 2);
    return (float)f;
}

static inline uint16_t float_to_half(float f)
{
    __fp16 h = (__fp16)f;
    uint16_t u;
    memcpy(&u, &h, 2);
    return u;
}

/* Bit-identical to the portable copy (attention_scalar.c): only the conversions differ, and
 * both are exact round-to-nearest-even. */
#define ATTEND_F16 ellm_attend_f16_neon
#define ATTEND_F16_ATTRIBUTES
#define HALF_TO_FLOAT(h) half_to_float(h)
#define FLOAT_TO_HALF(f) float_to_half(f)
#include "quant/attention_f16.inc"

/* Head sizes that are a multiple of 32: the F16C wide path of attention_avx2.c lane for lane
 * (eight lanes as two registers, the same fused multiply-adds, reduction tree, F16 rounding of
 * the query and F32 running output), so ARM and x86 machines give the same logits. */
typedef struct f32x8 {
    float32x4_t lo, hi;
} f32x8;

static inline f32x8 load_f32x8(const float *p) { return (f32x8){vld1q_f32(p), vld1q_f32(p + 4)}; }

static inline void store_f32x8(float *p, f32x8 v)
{
    vst1q_f32(p, v.lo);
    vst1q_f32(p + 4, v.hi);
}

static inline f32x8 load_half8(const uint16_t *p)
{
    float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(p));
    return (f32x8){vcvt_f32_f16(vget_low_f16(h)), vcvt_high_f32_f16(h)};
}

static inline void store_half8(uint16_t *p, f32x8 v)
{
    float16x8_t h = vcvt_high_f16_f32(vcvt_f16_f32(v.lo), v.hi);
    vst1q_u16(p, vreinterpretq_u16_f16(h));
}

static inline f32x8 fma8(f32x8 acc, f32x8 a, f32x8 b)
{
    return (f32x8){vfmaq_f32(acc.lo, a.lo, b.lo), vfmaq_f32(acc.hi, a.hi, b.hi)};
}

static inline f32x8 add8(f32x8 a, f32x8 b)
{
    return (f32x8){vaddq_f32(a.lo, b.lo), vaddq_f32(a.hi, b.hi)};
}

static inline f32x8 scale8(f32x8 a, float s)
{
    return (f32x8){vmulq_n_f32(a.lo, s), vmulq_n_f32(a.hi, s)};
}

/* (a0+a2)+(a1+a3), the two halves, then ((s0+s1)+(s2+s3)). */
static inline float reduce4(f32x8 a0, f32x8 a1, f32x8 a2, f32x8 a3)
{
    f32x8 s = add8(add8(a0, a2), add8(a1, a3));
    float32x4_t h = vaddq_f32(s.lo, s.hi);
    h = vpaddq_f32(h, h);
    return vgetq_lane_f32(vpaddq_f32(h, h), 0);
}

void ellm_attend_f16_neon_wide(const float *q, const uint8_t *kc, const uint8_t *vc, size_t stride,
                               int32_t n_pos, int32_t hd, float scale, float *acc, float *qr,
                               float *out)
{
    const f32x8 zero = {vdupq_n_f32(0), vdupq_n_f32(0)};
    uint16_t half[8];
    for (int32_t d = 0; d < hd; d += 8) {
        store_half8(half, load_f32x8(q + d));
        store_f32x8(qr + d, load_half8(half));
        store_f32x8(acc + d, zero);
    }
    float max = -INFINITY, sum = 0;
    for (int32_t p = 0; p < n_pos; p++) {
        const uint16_t *krow = (const uint16_t *)(kc + (size_t)p * stride);
        const uint16_t *vrow = (const uint16_t *)(vc + (size_t)p * stride);
        f32x8 a0 = zero, a1 = zero, a2 = zero, a3 = zero;
        for (int32_t d = 0; d < hd; d += 32) {
            a0 = fma8(a0, load_half8(krow + d), load_f32x8(qr + d));
            a1 = fma8(a1, load_half8(krow + d + 8), load_f32x8(qr + d + 8));
            a2 = fma8(a2, load_half8(krow + d + 16), load_f32x8(qr + d + 16));
            a3 = fma8(a3, load_half8(krow + d + 24), load_f32x8(qr + d + 24));
        }
        float score = reduce4(a0, a1, a2, a3) * scale;
        float old_scale = 1.0f, weight = 1.0f;
        if (score > max) {
            old_scale = ellm_exp(max - score);
            max = score;
            for (int32_t d = 0; d < hd; d += 8)
                store_f32x8(acc + d, scale8(load_f32x8(acc + d), old_scale));
        } else {
            weight = ellm_exp(score - max);
        }
        const f32x8 ws = {vdupq_n_f32(weight), vdupq_n_f32(weight)};
        for (int32_t d = 0; d < hd; d += 8)
            store_f32x8(acc + d, fma8(load_f32x8(acc + d), load_half8(vrow + d), ws));
        sum = sum * old_scale + weight;
    }
    float inv = 1.0f / sum;
    for (int32_t d = 0; d < hd; d++)
        out[d] = acc[d] * inv;
}
#endif
