/* ellm_silu_mul_scalar four values at a time with SIMD128 (built with -msimd128): the same
 * operations in the same order (SIMD128 has no fused multiply-add), the exponentials in two
 * vectors of two doubles, the division an IEEE division, so the same bits. */
#include "quant/kernels.h"

#if defined(__wasm_simd128__)
#include <wasm_simd128.h>

#include "core/exp.h"

/* ellm_exp_rounded of the two low floats of limited (already limited to its range), as floats in
 * the two low lanes. */
static inline v128_t exp_rounded_lanes(v128_t limited)
{
    v128_t x = wasm_f64x2_promote_low_f32x4(limited);
    v128_t shifter = wasm_f64x2_splat(ELLM_EXP_ROUNDED_SHIFTER);
    v128_t shifted = wasm_f64x2_add(wasm_f64x2_mul(x, wasm_f64x2_splat(ELLM_EXP_ROUNDED_LOG2E)),
                                    shifter);
    v128_t n = wasm_f64x2_sub(shifted, shifter);
    v128_t r = wasm_f64x2_sub(x, wasm_f64x2_mul(n, wasm_f64x2_splat(ELLM_EXP_ROUNDED_LN2)));
    v128_t p = wasm_f64x2_splat(ellm_exp_rounded_taylor[0]);
    for (int k = 1; k <= ELLM_EXP_ROUNDED_DEGREE; k++)
        p = wasm_f64x2_add(wasm_f64x2_mul(p, r), wasm_f64x2_splat(ellm_exp_rounded_taylor[k]));
    v128_t two_n = wasm_i64x2_shl(wasm_i64x2_add(shifted, wasm_i64x2_splat(1023)), 52);
    return wasm_f32x4_demote_f64x2_zero(wasm_f64x2_mul(p, two_n));
}

void ellm_silu_mul_wasm_simd(float *gate, const float *up, int64_t n)
{
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        v128_t g = wasm_v128_load(gate + i);
        /* f32x4.max/min return NaN when either operand is NaN: a NaN stays. */
        v128_t x = wasm_f32x4_min(
            wasm_f32x4_splat(ELLM_EXP_ROUNDED_HIGH),
            wasm_f32x4_max(wasm_f32x4_splat(ELLM_EXP_ROUNDED_LOW), wasm_f32x4_neg(g)));
        v128_t e = wasm_i32x4_shuffle(exp_rounded_lanes(x),
                                      exp_rounded_lanes(wasm_i32x4_shuffle(x, x, 2, 3, 2, 3)), 0, 1,
                                      4, 5);
        v128_t s = wasm_f32x4_div(g, wasm_f32x4_add(wasm_f32x4_splat(1.0f), e));
        wasm_v128_store(gate + i, wasm_f32x4_mul(s, wasm_v128_load(up + i)));
    }
    ellm_silu_mul_scalar(gate + i, up + i, n - i);
}
#endif
