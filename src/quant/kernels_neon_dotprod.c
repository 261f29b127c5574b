/* The integer dot kernels of kernels_neon_int.inc with the ARMv8.2 dot-product extension (SDOT:
 * four int8 products summed into each int32 lane in one instruction). Compiled with
 * -march=armv8.2-a+dotprod; dispatch.c calls these only when the CPU reports the extension. */
#include "quant/kernels.h"

#if defined(ELLM_HAVE_NEON_KERNELS)
#include <arm_neon.h>

static inline int32x4_t dot_i8(int32x4_t acc, int8x16_t a, int8x16_t b)
{
    return vdotq_s32(acc, a, b);
}

#define NEON_FN(name) name##_neon_dotprod
#include "quant/kernels_neon_int.inc"
#endif
