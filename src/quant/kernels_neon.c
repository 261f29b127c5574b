/* ARMv8 NEON kernels (Advanced SIMD is part of every AArch64 CPU, so no extra flags): float and
 * half dots, the activation quantizers, and the integer dot kernels of kernels_neon_int.inc built
 * with widening multiplies, for CPUs without the dot-product extension. */
#include "quant/kernels.h"

#if defined(ELLM_HAVE_NEON_KERNELS)
#include <arm_neon.h>
#include <string.h>

#include "quant/blocks.h"
#include "quant/quant.h"

/* Eight float lanes as two NEON registers: the float kernels mirror the AVX2 ones lane for lane
 * (same fused multiply-adds, same reduction tree), so an ARM machine computes F32/F16 dots with
 * exactly the rounding of an x86 one and both agree with the reference runtime's logits. */
typedef struct f32x8 {
    float32x4_t lo, hi;
} f32x8;

static inline f32x8 f32x8_zero(void) { return (f32x8){vdupq_n_f32(0), vdupq_n_f32(0)}; }

static inline f32x8 f32x8_load(const float *p) { return (f32x8){vld1q_f32(p), vld1q_f32(p + 4)}; }

static inline f32x8 f32x8_load_half(const uint16_t *p)
{
    float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(p));
    return (f32x8){vcvt_f32_f16(vget_low_f16(h)), vcvt_high_f32_f16(h)};
}

/* acc + a * b, fused. */
static inline f32x8 f32x8_fma(f32x8 acc, f32x8 a, f32x8 b)
{
    return (f32x8){vfmaq_f32(acc.lo, a.lo, b.lo), vfmaq_f32(acc.hi, a.hi, b.hi)};
}

static inline f32x8 f32x8_add(f32x8 a, f32x8 b)
{
    return (f32x8){vaddq_f32(a.lo, b.lo), vaddq_f32(a.hi, b.hi)};
}

void ellm_vec_dot_f32_neon(int64_t n, float *out, const void *row, const void *x)
{
    const float *a = row, *b = x;
    f32x8 acc0 = f32x8_zero(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        acc0 = f32x8_fma(acc0, f32x8_load(a + i), f32x8_load(b + i));
        acc1 = f32x8_fma(acc1, f32x8_load(a + i + 8), f32x8_load(b + i + 8));
        acc2 = f32x8_fma(acc2, f32x8_load(a + i + 16), f32x8_load(b + i + 16));
        acc3 = f32x8_fma(acc3, f32x8_load(a + i + 24), f32x8_load(b + i + 24));
    }
    /* (0+2)+(1+3), the two halves, then pairwise: ((s0+s1)+(s2+s3)). */
    f32x8 s8 = f32x8_add(f32x8_add(acc0, acc2), f32x8_add(acc1, acc3));
    float32x4_t s4 = vaddq_f32(s8.lo, s8.hi);
    float32x4_t p = vpaddq_f32(s4, s4);
    float sum = vgetq_lane_f32(vpaddq_f32(p, p), 0);
    for (; i < n; i++)
        sum += a[i] * b[i];
    *out = sum;
}

void ellm_vec_dot_f16_neon(int64_t n, float *out, const void *row, const void *x)
{
    const uint16_t *a = row;
    const float *b = x;
    f32x8 acc0 = f32x8_zero(), acc1 = acc0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        acc0 = f32x8_fma(acc0, f32x8_load_half(a + i), f32x8_load(b + i));
        acc1 = f32x8_fma(acc1, f32x8_load_half(a + i + 8), f32x8_load(b + i + 8));
    }
    /* The halves, then (s0+s2)+(s1+s3), as the AVX2 kernel reduces. */
    f32x8 s8 = f32x8_add(acc0, acc1);
    float32x4_t s4 = vaddq_f32(s8.lo, s8.hi);
    float32x2_t s2 = vadd_f32(vget_low_f32(s4), vget_high_f32(s4));
    float sum = vget_lane_f32(s2, 0) + vget_lane_f32(s2, 1);
    for (; i < n; i++) {
        uint16_t h;
        memcpy(&h, a + i, 2);
        sum += ellm_f16_to_f32(h) * b[i];
    }
    *out = sum;
}

/* Same bytes as the reference quantizer: the same amax, scale and x * (1/d) products, and
 * FCVTAS rounds half away from zero like roundf. */
void ellm_quantize_row_q8_0_neon(const float *x, void *dst, int64_t n)
{
    block_q8_0 *b = dst;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        const float *xb = x + i * QK8_0;
        float32x4_t v[8];
        float32x4_t amax = vdupq_n_f32(0);
        for (int k = 0; k < 8; k++) {
            v[k] = vld1q_f32(xb + 4 * k);
            amax = vmaxq_f32(amax, vabsq_f32(v[k]));
        }
        float d = vmaxvq_f32(amax) / 127.0f;
        float id = d != 0 ? 1.0f / d : 0.0f;
        b[i].d = ellm_f32_to_f16(d);
        for (int k = 0; k < 8; k += 2) {
            int32x4_t q0 = vcvtaq_s32_f32(vmulq_n_f32(v[k], id));
            int32x4_t q1 = vcvtaq_s32_f32(vmulq_n_f32(v[k + 1], id));
            int16x8_t q16 = vcombine_s16(vqmovn_s32(q0), vqmovn_s32(q1));
            vst1_s8(b[i].qs + 4 * k, vqmovn_s16(q16));
        }
    }
}

/* Same bytes as the reference: the first value of largest magnitude maps to -128, FCVTNS rounds
 * half to even like nearbyintf, 127 clamps the opposite extreme. */
void ellm_quantize_row_q8_K_neon(const float *x, void *dst, int64_t n)
{
    block_q8_K *b = dst;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float *xb = x + i * QK_K;
        float32x4_t amax = vdupq_n_f32(0);
        for (int k = 0; k < QK_K; k += 4)
            amax = vmaxq_f32(amax, vabsq_f32(vld1q_f32(xb + k)));
        float am = vmaxvq_f32(amax);
        if (!(am > 0)) {
            memset(&b[i], 0, sizeof b[i]);
            continue;
        }
        float max = 0;
        for (int j = 0; j < QK_K; j++) {
            if (xb[j] == am || xb[j] == -am) {
                max = xb[j];
                break;
            }
        }
        float iscale = -128.0f / max;
        const int32x4_t top = vdupq_n_s32(127);
        for (int k = 0; k < QK_K; k += 16) {
            int32x4_t q[4];
            for (int u = 0; u < 4; u++)
                q[u] = vminq_s32(vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(xb + k + 4 * u), iscale)),
                                 top);
            int16x8_t lo = vcombine_s16(vqmovn_s32(q[0]), vqmovn_s32(q[1]));
            int16x8_t hi = vcombine_s16(vqmovn_s32(q[2]), vqmovn_s32(q[3]));
            int8x16_t q8 = vcombine_s8(vqmovn_s16(lo), vqmovn_s16(hi));
            vst1q_s8(b[i].qs + k, q8);
            b[i].bsums[k / 16] = vaddlvq_s8(q8);
        }
        b[i].d = 1.0f / iscale;
    }
}

/* Plain NEON: widen the int8 products to int16, then pairwise-accumulate into int32. */
static inline int32x4_t dot_i8(int32x4_t acc, int8x16_t a, int8x16_t b)
{
    int16x8_t lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
    int16x8_t hi = vmull_high_s8(a, b);
    return vpadalq_s16(vpadalq_s16(acc, lo), hi);
}

#define NEON_FN(name) name##_neon
#include "quant/kernels_neon_int.inc"
#endif
