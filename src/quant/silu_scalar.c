/* SiLU times the up projection, the reference every set's copy must equal bit for bit. It takes
 * the project's exp rounded from double (core/exp.h), not libm's expf, whose bits differ between
 * C libraries and which no vector copy could reproduce; its result is libm's but for rare
 * last-bit cases. */
#include "core/exp.h"
#include "quant/kernels.h"

void ellm_silu_mul_scalar(float *gate, const float *up, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        float g = gate[i];
        gate[i] = g / (1.0f + ellm_exp_rounded(-g)) * up[i];
    }
}
