/* Reference (de)quantizers of the 32-value formats Q4_1, Q5_0, Q5_1 and IQ4_NL and of the Q8_1
 * activation format, called from reference.c's per-type switches. n is a multiple of 32. */
#ifndef EDGELLM_QUANT_REFERENCE_LEGACY_H
#define EDGELLM_QUANT_REFERENCE_LEGACY_H

#include <stdint.h>

#include "quant/blocks.h"

void ellm_dequantize_q4_1(const block_q4_1 *b, float *y, int64_t n);
void ellm_dequantize_q5_0(const block_q5_0 *b, float *y, int64_t n);
void ellm_dequantize_q5_1(const block_q5_1 *b, float *y, int64_t n);
void ellm_dequantize_iq4_nl(const block_iq4_nl *b, float *y, int64_t n);
void ellm_dequantize_q8_1(const block_q8_1 *b, float *y, int64_t n);

void ellm_quantize_q4_1(const float *x, block_q4_1 *b, int64_t n);
void ellm_quantize_q5_0(const float *x, block_q5_0 *b, int64_t n);
void ellm_quantize_q5_1(const float *x, block_q5_1 *b, int64_t n);
void ellm_quantize_iq4_nl(const float *x, block_iq4_nl *b, int64_t n);
void ellm_quantize_q8_1(const float *x, block_q8_1 *b, int64_t n);

/* Packs 32 levels of 0..31 as the Q5 formats store them: low nibbles as in Q4_0, fifth bits in
 * qh bit j for value j. */
void ellm_pack_q5(const uint8_t *q, uint8_t qs[16], uint8_t qh[4]);

/* The fifth bits of a Q5_0/Q5_1 block: bit j belongs to value j. qh is a little-endian word
 * whatever the host's byte order. */
static inline uint32_t ellm_q5_high_bits(const uint8_t qh[4])
{
    return (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
}

/* The 5-bit q (0..31) of value j of a Q5_0/Q5_1 block. */
static inline int ellm_q5_value(const uint8_t *qs, uint32_t high_bits, int j)
{
    int low = j < 16 ? qs[j] & 15 : qs[j - 16] >> 4;
    return low | (int)((high_bits >> j) & 1) << 4;
}

#endif
