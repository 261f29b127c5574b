/* ellm_silu_mul_scalar four values at a time with NEON (baseline on AArch64): the same
 * operations in the same order (separate multiplies and adds, never vfma/vmla), the exponentials
 * in two vectors of two doubles, the division an IEEE division, so the same bits. */
#include "quant/kernels.h"

#if defined(ELLM_HAVE_NEON_KERNELS)
#include <arm_neon.h>

#include "core/exp.h"

/* ellm_exp_rounded of two values already limited to its range, in double. */
static inline float64x2_t exp_rounded_lanes(float64x2_t x)
{
    float64x2_t shifter = vdupq_n_f64(ELLM_EXP_ROUNDED_SHIFTER);
    float64x2_t shifted = vaddq_f64(vmulq_f64(x, vdupq_n_f64(ELLM_EXP_ROUNDED_LOG2E)), shifter);
    float64x2_t n = vsubq_f64(shifted, shifter);
    float64x2_t r = vsubq_f64(x, vmulq_f64(n, vdupq_n_f64(ELLM_EXP_ROUNDED_LN2)));
    float64x2_t p = vdupq_n_f64(ellm_exp_rounded_taylor[0]);
    for (int k = 1; k <= ELLM_EXP_ROUNDED_DEGREE; k++)
        p = vaddq_f64(vmulq_f64(p, r), vdupq_n_f64(ellm_exp_rounded_taylor[k]));
    uint64x2_t two_n = vshlq_n_u64(vaddq_u64(vreinterpretq_u64_f64(shifted), vdupq_n_u64(1023)),
                                   52);
    return vmulq_f64(p, vreinterpretq_f64_u64(two_n));
}

void ellm_silu_mul_neon(float *gate, const float *up, int64_t n)
{
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t g = vld1q_f32(gate + i);
        /* vmaxq/vminq return NaN when either operand is NaN: a NaN stays. */
        float32x4_t x = vminq_f32(vdupq_n_f32(ELLM_EXP_ROUNDED_HIGH),
                                  vmaxq_f32(vdupq_n_f32(ELLM_EXP_ROUNDED_LOW), vnegq_f32(g)));
        float32x4_t e = vcvt_high_f32_f64(
            vcvt_f32_f64(exp_rounded_lanes(vcvt_f64_f32(vget_low_f32(x)))),
            exp_rounded_lanes(vcvt_high_f64_f32(x)));
        float32x4_t s = vdivq_f32(g, vaddq_f32(vdupq_n_f32(1.0f), e));
        vst1q_f32(gate + i, vmulq_f32(s, vld1q_f32(up + i)));
    }
    ellm_silu_mul_scalar(gate + i, up + i, n - i);
}
#endif
