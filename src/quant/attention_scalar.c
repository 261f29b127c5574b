/* The portable F16-cache attention head (half conversions in C): the scalar set's, and the one
 * every ISA copy of attention_f16.inc must equal bit for bit; the portable Q8_0 value sum and
 * F16 cache store. */
#include <math.h>
#include <string.h>

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

void ellm_f16_store_portable(const float *src, uint8_t *dst, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        uint16_t h = ellm_f32_to_f16(ellm_f16_saturate(src[i]));
        memcpy(dst + 2 * i, &h, 2);
    }
}

void ellm_attend_q8_0_group_portable(const void *q8, const uint8_t *kc, const uint8_t *vc,
                                     size_t stride, int32_t n_pos, int32_t hd, float scale,
                                     float cap, int32_t n_heads, float *scores, float *out)
{
    int32_t nb = hd / QK8_0;
    const block_q8_0 *qb = q8;
    for (int32_t p = 0; p < n_pos; p++) {
        const block_q8_0 *krow = (const block_q8_0 *)(kc + (size_t)p * stride);
        for (int32_t h = 0; h < n_heads; h++) {
            float sum = 0;
            for (int32_t b = 0; b < nb; b++) {
                const block_q8_0 *qh = &qb[h * nb + b];
                int isum = 0;
                for (int k = 0; k < QK8_0; k++)
                    isum += krow[b].qs[k] * qh->qs[k];
                sum += ellm_f16_to_f32(krow[b].d) * ellm_f16_to_f32(qh->d) * (float)isum;
            }
            float sc = sum * scale;
            scores[(size_t)h * n_pos + p] = cap > 0 ? cap * tanhf(sc / cap) : sc;
        }
    }
    for (int32_t h = 0; h < n_heads; h++) {
        ellm_attention_softmax_q8_0(scores + (size_t)h * n_pos, n_pos);
        for (int32_t d = 0; d < hd; d++)
            out[(size_t)h * hd + d] = 0;
    }
    for (int32_t p = 0; p < n_pos; p++) {
        const block_q8_0 *vrow = (const block_q8_0 *)(vc + (size_t)p * stride);
        for (int32_t h = 0; h < n_heads; h++)
            ellm_axpy_q8_0_portable(nb, scores[(size_t)h * n_pos + p], vrow, out + (size_t)h * hd);
    }
}

#define ATTEND_F16 ellm_attend_f16_portable
#define ATTEND_F16_ATTRIBUTES
#define HALF_TO_FLOAT(h) ellm_f16_to_f32(h)
#define FLOAT_TO_HALF(f) ellm_f32_to_f16(f)
#include "quant/attention_f16.inc"
