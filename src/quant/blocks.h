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

/* K-quant weight formats: super-blocks of QK_K values. In Q4_K and Q5_K each of the 8 sub-blocks
 * of 32 values has a 6-bit scale sc and a 6-bit min m, packed into 12 bytes: for sub-block j < 4,
 * sc = scales[j] & 63 and m = scales[j + 4] & 63; for j >= 4, sc = (scales[j + 4] & 15) |
 * (scales[j - 4] >> 6) << 4 and m = (scales[j + 4] >> 4) | (scales[j] >> 6) << 4. A value is
 * d * sc * q - dmin * m. The quants run in chunks of 64 values: qs[32 * c + l] holds value
 * 64 * c + l in its low nibble and value 64 * c + 32 + l in its high nibble. */
#define K_SCALE_SIZE 12

typedef struct block_q4_K {
    uint16_t d;                    /* super-block scale of the sub-block scales, IEEE half */
    uint16_t dmin;                 /* super-block scale of the sub-block mins, IEEE half */
    uint8_t scales[K_SCALE_SIZE];  /* 8 scales and 8 mins, 6 bits each */
    uint8_t qs[QK_K / 2];          /* 4-bit quants */
} block_q4_K;

/* Q5_K: Q4_K's layout plus a fifth bit per value: bit 2c of qh[l] is the high bit of value
 * 64 * c + l, bit 2c + 1 that of value 64 * c + 32 + l. */
typedef struct block_q5_K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qh[QK_K / 8];          /* high bits */
    uint8_t qs[QK_K / 2];          /* low 4 bits */
} block_q5_K;

/* Q6_K: 16 sub-blocks of 16 values, value = d * scales[sub-block] * (q - 32) with q in 0..63.
 * Each half of 128 values (h = 0, 1) uses ql[64 h ..], qh[32 h ..]; for l < 32, ql[l] holds
 * values l (low nibble) and l + 64 (high nibble), ql[l + 32] holds values l + 32 and l + 96, and
 * qh[l] holds the top two bits of values l, l + 32, l + 64, l + 96 at bits 0, 2, 4, 6. */
typedef struct block_q6_K {
    uint8_t ql[QK_K / 2];          /* low 4 bits */
    uint8_t qh[QK_K / 4];          /* high 2 bits */
    int8_t scales[QK_K / 16];      /* sub-block scales */
    uint16_t d;                    /* super-block scale, IEEE half */
} block_q6_K;

_Static_assert(sizeof(block_q4_0) == 18, "Q4_0 block is 18 bytes");
_Static_assert(sizeof(block_q8_0) == 34, "Q8_0 block is 34 bytes");
_Static_assert(sizeof(block_q8_K) == 292, "Q8_K block is 292 bytes");
_Static_assert(sizeof(block_q4_K) == 144, "Q4_K block is 144 bytes");
_Static_assert(sizeof(block_q5_K) == 176, "Q5_K block is 176 bytes");
_Static_assert(sizeof(block_q6_K) == 210, "Q6_K block is 210 bytes");

#endif
