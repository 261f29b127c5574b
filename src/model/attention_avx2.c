/* The F16 attention head with hardware half conversions (built with -mavx2 -mfma -mf16c; the
 * caller checks the CPU first). */
#include "model/attention.h"

#if defined(ELLM_HAVE_F16C_ATTENTION)
#include <immintrin.h>
#include <math.h>

#define ATTEND_F16 ellm_attend_f16_f16c
#define ATTEND_F16_ATTRIBUTES
#define HALF_TO_FLOAT(h) _cvtsh_ss(h)
#define FLOAT_TO_HALF(f) _cvtss_sh((f), _MM_FROUND_TO_NEAREST_INT)
#include "model/attention_f16.inc"
#endif
