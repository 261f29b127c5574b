/* Portable dot kernels of the 32-value weight formats Q4_1 and Q5_1 (with Q8_1 activations) and
 * Q5_0 and IQ4_NL (with Q8_0 activations). Each block's products are summed exactly in integers,
 * then scaled once; a "_1" block adds its minimum times the activations' sum, m * s. */
#include "quant/blocks.h"
#include "quant/kernels.h"
#include "quant/quant.h"
#include "quant/reference_legacy.h"

void ellm_vec_dot_q4_1_scalar(int64_t n, float *out, const void *row, const void *x)
{
    const block_q4_1 *w = row;
    const block_q8_1 *a = x;
    float sum = 0;
    for (int64_t i = 0; i < n / QK4_1; i++) {
        int32_t isum = 0;
        for (int j = 0; j < QK4_1 / 2; j++) {
            isum += (w[i].qs[j] & 15) * a[i].qs[j];
            isum += (w[i].qs[j] >> 4) * a[i].qs[j + QK4_1 / 2];
        }
        sum += ellm_f16_to_f32(w[i].d) * ellm_f16_to_f32(a[i].d) * (float)isum +
               ellm_f16_to_f32(w[i].m) * ellm_f16_to_f32(a[i].s);
    }
    *out = sum;
}

void ellm_vec_dot_q5_1_scalar(int64_t n, float *out, const void *row, const void *x)
{
    const block_q5_1 *w = row;
    const block_q8_1 *a = x;
    float sum = 0;
    for (int64_t i = 0; i < n / QK5_1; i++) {
        uint32_t high = ellm_q5_high_bits(w[i].qh);
        int32_t isum = 0;
        for (int j = 0; j < QK5_1; j++)
            isum += ellm_q5_value(w[i].qs, high, j) * a[i].qs[j];
        sum += ellm_f16_to_f32(w[i].d) * ellm_f16_to_f32(a[i].d) * (float)isum +
               ellm_f16_to_f32(w[i].m) * ellm_f16_to_f32(a[i].s);
    }
    *out = sum;
}

void ellm_vec_dot_q5_0_scalar(int64_t n, float *out, const void *row, const void *x)
{
    const block_q5_0 *w = row;
    const block_q8_0 *a = x;
    float sum = 0;
    for (int64_t i = 0; i < n / QK5_0; i++) {
        uint32_t high = ellm_q5_high_bits(w[i].qh);
        int32_t isum = 0;
        for (int j = 0; j < QK5_0; j++)
            isum += (ellm_q5_value(w[i].qs, high, j) - 16) * a[i].qs[j];
        sum += ellm_f16_to_f32(w[i].d) * ellm_f16_to_f32(a[i].d) * (float)isum;
    }
    *out = sum;
}

void ellm_vec_dot_iq4_nl_scalar(int64_t n, float *out, const void *row, const void *x)
{
    const block_iq4_nl *w = row;
    const block_q8_0 *a = x;
    float sum = 0;
    for (int64_t i = 0; i < n / QK4_NL; i++) {
        int32_t isum = 0;
        for (int j = 0; j < QK4_NL / 2; j++) {
            isum += ellm_kvalues_iq4nl[w[i].qs[j] & 15] * a[i].qs[j];
            isum += ellm_kvalues_iq4nl[w[i].qs[j] >> 4] * a[i].qs[j + QK4_NL / 2];
        }
        sum += ellm_f16_to_f32(w[i].d) * ellm_f16_to_f32(a[i].d) * (float)isum;
    }
    *out = sum;
}
