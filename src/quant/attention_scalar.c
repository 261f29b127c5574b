/* The portable F16-cache attention head (half conversions in C): the scalar set's, and the one
 * every ISA copy of attention_f16.inc must equal bit for bit. */
#include <math.h>

#include "quant/attention_kernels.h"
#include "quant/quant.h"

#define ATTEND_F16 ellm_attend_f16_portable
#define ATTEND_F16_ATTRIBUTES
#define HALF_TO_FLOAT(h) ellm_f16_to_f32(h)
#define FLOAT_TO_HALF(f) ellm_f32_to_f16(f)
#include "quant/attention_f16.inc"
