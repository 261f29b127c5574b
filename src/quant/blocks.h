/* Block layouts of the quantized formats, as the GGUF format defines them. */
#ifndef EDGELLM_QUANT_BLOCKS_H
#define EDGELLM_QUANT_BLOCKS_H

#include <stdint.h>

#define QK4_0 32
#define QK8_0 32

typedef struct block_q4_0 {
    uint16_t d;              /* scale, IEEE half */
    uint8_t qs[QK4_0 / 2];   /* value j in low nibble of qs[j], value j+16 in the high nibble */
} block_q4_0;

typedef struct block_q8_0 {
    uint16_t d;              /* scale, IEEE half */
    int8_t qs[QK8_0];
} block_q8_0;

/* Activation format the K-quant weight kernels consume (never stored in files): one float scale,
 * 256 int8 values, and the sums of each 16 values so kernels can apply block minimums cheaply. */
#define QK_K 256

typedef struct block_q8_K {
    float d;
    int8_t qs[QK_K];
    int16_t bsums[QK_K / 16];
} block_q8_K;

_Static_assert(sizeof(block_q4_0) == 18, "Q4_0 block is 18 bytes");
_Static_assert(sizeof(block_q8_0) == 34, "Q8_0 block is 34 bytes");
_Static_assert(sizeof(block_q8_K) == 292, "Q8_K block is 292 bytes");

#endif
