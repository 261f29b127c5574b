/* Portable kernels: the fallback on CPUs without a SIMD kernel set. Quantized dots sum each
 * block's integer products exactly, then scale. */
#include <string.h>

#include "quant/blocks.h"
#include "quant/kernels.h"
#include "quant/quant.h"

void ellm_vec_dot_f32_scalar(int64_t n, float *out, const void *row, const void *x)
{
    const float *a = row, *b = x;
    float acc[4] = {0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (int k = 0; k < 4; k++)
            acc[k] += a[i + k] * b[i + k];
    float sum = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for (; i < n; i++)
        sum += a[i] * b[i];
    *out = sum;
}

static float load_half(const uint8_t *p, int64_t i)
{
    uint16_t h;
    memcpy(&h, p + 2 * i, 2);
    return ellm_f16_to_f32(h);
}

void ellm_vec_dot_f16_scalar(int64_t n, float *out, const void *row, const void *x)
{
    const uint8_t *a = row;
    const float *b = x;
    float sum = 0;
    for (int64_t i = 0; i < n; i++)
        sum += load_half(a, i) * b[i];
    *out = sum;
}

void ellm_vec_dot_bf16_scalar(int64_t n, float *out, const void *row, const void *x)
{
    const uint8_t *a = row;
    const float *b = x;
    float sum = 0;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, a + 2 * i, 2);
        sum += ellm_bf16_to_f32(h) * b[i];
    }
    *out = sum;
}

void ellm_vec_dot_q8_0_scalar(int64_t n, float *out, const void *row, const void *x)
{
    const block_q8_0 *w = row, *a = x;
    float sum = 0;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        int isum = 0;
        for (int j = 0; j < QK8_0; j++)
            isum += w[i].qs[j] * a[i].qs[j];
        sum += ellm_f16_to_f32(w[i].d) * ellm_f16_to_f32(a[i].d) * (float)isum;
    }
    *out = sum;
}

/* A Q4_0 block's quants (levels minus 8) against an activation block, exactly. */
static int q4_0_block_isum(const uint8_t qs[QK4_0 / 2], const block_q8_0 *a)
{
    int isum = 0;
    for (int j = 0; j < QK4_0 / 2; j++) {
        isum += ((qs[j] & 0x0F) - 8) * a->qs[j];
        isum += ((qs[j] >> 4) - 8) * a->qs[j + QK4_0 / 2];
    }
    return isum;
}

void ellm_vec_dot_q4_0_scalar(int64_t n, float *out, const void *row, const void *x)
{
    const block_q4_0 *w = row;
    const block_q8_0 *a = x;
    float sum = 0;
    for (int64_t i = 0; i < n / QK4_0; i++)
        sum += ellm_f16_to_f32(w[i].d) * ellm_f16_to_f32(a[i].d) *
               (float)q4_0_block_isum(w[i].qs, &a[i]);
    *out = sum;
}

void ellm_vec_dot_q4_0_by_four_scalar(int64_t n, float *out, const void *rows, size_t row_bytes,
                                      const void *x)
{
    (void)row_bytes;
    const block_q8_0 *a = x;
    for (int k = 0; k < ELLM_BY_FOUR; k++) {
        const uint8_t *blocks = rows;
        float sum = 0;
        for (int64_t i = 0; i < n / QK4_0; i++, blocks += ELLM_BY_FOUR * sizeof(block_q4_0)) {
            uint16_t d;
            memcpy(&d, blocks + sizeof d * k, sizeof d);
            const uint8_t *qs = blocks + ELLM_BY_FOUR * sizeof d + QK4_0 / 2 * k;
            sum += ellm_f16_to_f32(d) * ellm_f16_to_f32(a[i].d) * (float)q4_0_block_isum(qs, &a[i]);
        }
        out[k] = sum;
    }
}
