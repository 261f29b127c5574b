/* Reference quantizers and dequantizers of Q4_1, Q5_0, Q5_1, IQ4_NL and the Q8_1 activations.
 *
 * Scales and minimums are rounded to half precision first and the values are then quantized
 * against them as they will decode, so each value gets its nearest level under the stored
 * scale rather than under the unrounded one. */
#include <math.h>
#include <string.h>

#include "quant/quant.h"
#include "quant/reference_kquants_low.h"
#include "quant/reference_legacy.h"

/* ---------------------------------------------------------------- dequantization */

void ellm_dequantize_q4_1(const block_q4_1 *b, float *y, int64_t n)
{
    for (int64_t i = 0; i < n / QK4_1; i++, y += QK4_1) {
        float d = ellm_f16_to_f32(b[i].d), m = ellm_f16_to_f32(b[i].m);
        for (int j = 0; j < QK4_1 / 2; j++) {
            y[j] = d * (float)(b[i].qs[j] & 15) + m;
            y[j + QK4_1 / 2] = d * (float)(b[i].qs[j] >> 4) + m;
        }
    }
}

void ellm_dequantize_q5_0(const block_q5_0 *b, float *y, int64_t n)
{
    for (int64_t i = 0; i < n / QK5_0; i++, y += QK5_0) {
        float d = ellm_f16_to_f32(b[i].d);
        uint32_t high = ellm_q5_high_bits(b[i].qh);
        for (int j = 0; j < QK5_0; j++)
            y[j] = d * (float)(ellm_q5_value(b[i].qs, high, j) - 16);
    }
}

void ellm_dequantize_q5_1(const block_q5_1 *b, float *y, int64_t n)
{
    for (int64_t i = 0; i < n / QK5_1; i++, y += QK5_1) {
        float d = ellm_f16_to_f32(b[i].d), m = ellm_f16_to_f32(b[i].m);
        uint32_t high = ellm_q5_high_bits(b[i].qh);
        for (int j = 0; j < QK5_1; j++)
            y[j] = d * (float)ellm_q5_value(b[i].qs, high, j) + m;
    }
}

void ellm_dequantize_iq4_nl(const block_iq4_nl *b, float *y, int64_t n)
{
    for (int64_t i = 0; i < n / QK4_NL; i++, y += QK4_NL) {
        float d = ellm_f16_to_f32(b[i].d);
        for (int j = 0; j < QK4_NL / 2; j++) {
            y[j] = d * (float)ellm_kvalues_iq4nl[b[i].qs[j] & 15];
            y[j + QK4_NL / 2] = d * (float)ellm_kvalues_iq4nl[b[i].qs[j] >> 4];
        }
    }
}

void ellm_dequantize_q8_1(const block_q8_1 *b, float *y, int64_t n)
{
    for (int64_t i = 0; i < n / QK8_1; i++, y += QK8_1) {
        float d = ellm_f16_to_f32(b[i].d);
        for (int j = 0; j < QK8_1; j++)
            y[j] = d * (float)b[i].qs[j];
    }
}

/* ---------------------------------------------------------------- quantization */

/* Nearest integer level of v in 0..top (halves round up). Clamping in float first keeps the
 * conversion defined for NaN and huge inputs (fmaxf returns the number for a NaN argument). */
static int level(float v, int top) { return (int)fminf(fmaxf(floorf(v + 0.5f), 0.0f), (float)top); }

void ellm_pack_q5(const uint8_t *q, uint8_t qs[16], uint8_t qh[4])
{
    uint32_t high = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((q[j] & 15) | (q[j + 16] & 15) << 4);
        high |= (uint32_t)(q[j] >> 4) << j | (uint32_t)(q[j + 16] >> 4) << (j + 16);
    }
    for (int k = 0; k < 4; k++)
        qh[k] = (uint8_t)(high >> (8 * k));
}

/* Min/max fit of a "_1" block: value = d * q + m with q in 0..top, m the block minimum and d
 * spreading the levels over the range. Returns the levels in q. */
static void fit_min_max(const float *x, int top, uint16_t *d_out, uint16_t *m_out, uint8_t *q)
{
    float lo = x[0], hi = x[0];
    for (int j = 1; j < 32; j++) {
        lo = fminf(lo, x[j]);
        hi = fmaxf(hi, x[j]);
    }
    *d_out = ellm_f32_to_f16((hi - lo) / (float)top);
    *m_out = ellm_f32_to_f16(lo);
    float d = ellm_f16_to_f32(*d_out), m = ellm_f16_to_f32(*m_out);
    float inv = d != 0 ? 1.0f / d : 0.0f;
    for (int j = 0; j < 32; j++)
        q[j] = (uint8_t)level((x[j] - m) * inv, top);
}

void ellm_quantize_q4_1(const float *x, block_q4_1 *b, int64_t n)
{
    for (int64_t i = 0; i < n / QK4_1; i++, x += QK4_1) {
        uint8_t q[QK4_1];
        fit_min_max(x, 15, &b[i].d, &b[i].m, q);
        for (int j = 0; j < QK4_1 / 2; j++)
            b[i].qs[j] = (uint8_t)(q[j] | q[j + QK4_1 / 2] << 4);
    }
}

void ellm_quantize_q5_1(const float *x, block_q5_1 *b, int64_t n)
{
    for (int64_t i = 0; i < n / QK5_1; i++, x += QK5_1) {
        uint8_t q[QK5_1];
        fit_min_max(x, 31, &b[i].d, &b[i].m, q);
        ellm_pack_q5(q, b[i].qs, b[i].qh);
    }
}

/* As Q4_0: the value of largest magnitude maps to -16 exactly, using all 32 levels; the opposite
 * extreme may clamp at +15. */
void ellm_quantize_q5_0(const float *x, block_q5_0 *b, int64_t n)
{
    for (int64_t i = 0; i < n / QK5_0; i++, x += QK5_0) {
        float amax = 0, max = 0;
        for (int j = 0; j < QK5_0; j++) {
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        }
        b[i].d = ellm_f32_to_f16(max / -16.0f);
        float d = ellm_f16_to_f32(b[i].d);
        float inv = d != 0 ? 1.0f / d : 0.0f;
        uint8_t q[QK5_0];
        for (int j = 0; j < QK5_0; j++)
            q[j] = (uint8_t)level(x[j] * inv + 16.0f, 31);
        ellm_pack_q5(q, b[i].qs, b[i].qh);
    }
}

/* The scale is IQ4_XS's sub-block search (candidates with the extreme near either end of the
 * table, each refined by least squares); the levels are then picked under the stored scale. */
void ellm_quantize_iq4_nl(const float *x, block_iq4_nl *b, int64_t n)
{
    for (int64_t i = 0; i < n / QK4_NL; i++, x += QK4_NL) {
        b[i].d = ellm_f32_to_f16(ellm_iq4nl_fit_scale(x));
        uint8_t idx[QK4_NL];
        ellm_iq4nl_levels(x, QK4_NL, ellm_f16_to_f32(b[i].d), idx);
        for (int j = 0; j < QK4_NL / 2; j++)
            b[i].qs[j] = (uint8_t)(idx[j] | idx[j + QK4_NL / 2] << 4);
    }
}

/* The values exactly as Q8_0 quantizes them, plus s from the stored scale, so that s equals the
 * sum of the activations as they decode (up to the half-precision rounding of s). */
void ellm_quantize_q8_1(const float *x, block_q8_1 *b, int64_t n)
{
    for (int64_t i = 0; i < n / QK8_1; i++, x += QK8_1) {
        float amax = 0;
        for (int j = 0; j < QK8_1; j++)
            amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127.0f;
        float id = d != 0 ? 1.0f / d : 0.0f;
        int sum = 0;
        for (int j = 0; j < QK8_1; j++) {
            b[i].qs[j] = (int8_t)roundf(x[j] * id);
            sum += b[i].qs[j];
        }
        b[i].d = ellm_f32_to_f16(d);
        b[i].s = ellm_f32_to_f16(ellm_f16_to_f32(b[i].d) * (float)sum);
    }
}
