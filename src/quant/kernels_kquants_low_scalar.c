/* Portable dot kernels of Q2_K, Q3_K and IQ4_XS weights with Q8_K activations. Each super-block's
 * products are summed exactly in integers (sub-block scales included), then scaled once in float;
 * the AVX2 kernels compute the same integers and the same float expression, so they agree bit for
 * bit. */
#include "quant/blocks.h"
#include "quant/kernels.h"
#include "quant/quant.h"
#include "quant/reference_kquants_low.h"

void ellm_vec_dot_q2_K_scalar(int64_t n, float *out, const void *row, const void *x)
{
    const block_q2_K *w = row;
    const block_q8_K *a = x;
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int32_t isum = 0, msum = 0;
        for (int s = 0; s < 16; s++) {
            int h = s / 8, j = (s % 8) / 2, l0 = 16 * (s % 2);
            int32_t sub = 0;
            for (int l = l0; l < l0 + 16; l++)
                sub += ((w[i].qs[32 * h + l] >> (2 * j)) & 3) * a[i].qs[16 * s + l - l0];
            isum += (w[i].scales[s] & 15) * sub;
            msum += (w[i].scales[s] >> 4) * a[i].bsums[s];
        }
        float dall = ellm_f16_to_f32(w[i].d) * a[i].d;
        float dmin = ellm_f16_to_f32(w[i].dmin) * a[i].d;
        sum += dall * (float)isum - dmin * (float)msum;
    }
    *out = sum;
}

void ellm_vec_dot_q3_K_scalar(int64_t n, float *out, const void *row, const void *x)
{
    const block_q3_K *w = row;
    const block_q8_K *a = x;
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int32_t isum = 0;
        for (int s = 0; s < 16; s++) {
            int h = s / 8, j = (s % 8) / 2, l0 = 16 * (s % 2);
            int32_t sub = 0;
            for (int l = l0; l < l0 + 16; l++) {
                int low = (w[i].qs[32 * h + l] >> (2 * j)) & 3;
                int high = (w[i].hmask[l] >> (4 * h + j)) & 1;
                sub += (low - (high ? 0 : 4)) * a[i].qs[16 * s + l - l0];
            }
            isum += (ellm_q3_K_scale(w[i].scales, s) - 32) * sub;
        }
        sum += ellm_f16_to_f32(w[i].d) * a[i].d * (float)isum;
    }
    *out = sum;
}

void ellm_vec_dot_iq4_xs_scalar(int64_t n, float *out, const void *row, const void *x)
{
    const block_iq4_xs *w = row;
    const block_q8_K *a = x;
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int32_t isum = 0;
        for (int s = 0; s < 8; s++) {
            int32_t sub = 0;
            for (int j = 0; j < 16; j++) {
                uint8_t byte = w[i].qs[16 * s + j];
                sub += ellm_kvalues_iq4nl[byte & 15] * a[i].qs[32 * s + j];
                sub += ellm_kvalues_iq4nl[byte >> 4] * a[i].qs[32 * s + j + 16];
            }
            isum += (ellm_iq4_xs_scale(&w[i], s) - 32) * sub;
        }
        sum += ellm_f16_to_f32(w[i].d) * a[i].d * (float)isum;
    }
    *out = sum;
}
