/* The portable F16-cache attention head (half conversions in C): the scalar set's, and the one
 * every ISA copy of attention_f16.inc must equal bit for bit; the portable Q8_0 value sum. */
#include <math.h>

#include "quant/attention_kernels.h"
#include "quant/blocks.h"
#include "quant/quant.h"

void ellm_axpy_q8_0_portable(int32_t n_blocks, float w, const void *blocks, float *out)
{
    const block_q8_0 *b = blocks;
    for (int32_t i = 0; i < n_blocks; i++, out += QK8_0) {
        float wd = w * ellm_f16_to_f32(b[i].d);
        for (int k = 0; k < QK8_0; k++)
            out[k] += wd * (float)b[i].qs[k];
    }
}

#define ATTEND_F16 ellm_attend_f16_portable
#define ATTEND_F16_ATTRIBUTES
#define HALF_TO_FLOAT(h) ellm_f16_to_f32(h)
#define FLOAT_TO_HALF(f) ellm_f32_to_f16(f)
#include "quant/attention_f16.inc"
