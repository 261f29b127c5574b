/* Scalar reference implementations: dequantization, quantization and the obviously-correct dot
 * product every fast kernel is tested against. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant/blocks.h"
#include "quant/kquants.h"
#include "quant/quant.h"
#include "quant/reference_kquants_low.h"
#include "quant/reference_legacy.h"

bool ellm_type_supported(ellm_type type)
{
    switch (type) {
    case ELLM_TYPE_F32:
    case ELLM_TYPE_F16:
    case ELLM_TYPE_BF16:
    case ELLM_TYPE_Q8_0:
    case ELLM_TYPE_Q4_0:
    case ELLM_TYPE_Q4_1:
    case ELLM_TYPE_Q5_0:
    case ELLM_TYPE_Q5_1:
    case ELLM_TYPE_IQ4_NL:
    case ELLM_TYPE_Q4_K:
    case ELLM_TYPE_Q5_K:
    case ELLM_TYPE_Q6_K:
    case ELLM_TYPE_Q2_K:
    case ELLM_TYPE_Q3_K:
    case ELLM_TYPE_IQ4_XS: return true;
    default: return false;
    }
}

void ellm_dequantize_row(ellm_type type, const void *src, float *dst, int64_t n)
{
    switch (type) {
    case ELLM_TYPE_F32: memcpy(dst, src, (size_t)n * sizeof(float)); break;
    case ELLM_TYPE_F16: {
        const uint8_t *p = src;
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = ellm_f16_to_f32(h);
        }
        break;
    }
    case ELLM_TYPE_BF16: {
        const uint8_t *p = src;
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = ellm_bf16_to_f32(h);
        }
        break;
    }
    case ELLM_TYPE_Q8_0: {
        const block_q8_0 *b = src;
        for (int64_t i = 0; i < n / QK8_0; i++) {
            float d = ellm_f16_to_f32(b[i].d);
            for (int j = 0; j < QK8_0; j++)
                dst[i * QK8_0 + j] = d * (float)b[i].qs[j];
        }
        break;
    }
    case ELLM_TYPE_Q4_0: {
        const block_q4_0 *b = src;
        for (int64_t i = 0; i < n / QK4_0; i++) {
            float d = ellm_f16_to_f32(b[i].d);
            for (int j = 0; j < QK4_0 / 2; j++) {
                dst[i * QK4_0 + j] = d * (float)((b[i].qs[j] & 0x0F) - 8);
                dst[i * QK4_0 + j + QK4_0 / 2] = d * (float)((b[i].qs[j] >> 4) - 8);
            }
        }
        break;
    }
    case ELLM_TYPE_Q8_K: {
        const block_q8_K *b = src;
        for (int64_t i = 0; i < n / QK_K; i++)
            for (int j = 0; j < QK_K; j++)
                dst[i * QK_K + j] = b[i].d * (float)b[i].qs[j];
        break;
    }
    case ELLM_TYPE_Q4_K: ellm_dequantize_q4_K(src, dst, n); break;
    case ELLM_TYPE_Q5_K: ellm_dequantize_q5_K(src, dst, n); break;
    case ELLM_TYPE_Q6_K: ellm_dequantize_q6_K(src, dst, n); break;
    case ELLM_TYPE_Q2_K: ellm_dequantize_q2_K(src, dst, n); break;
    case ELLM_TYPE_Q3_K: ellm_dequantize_q3_K(src, dst, n); break;
    case ELLM_TYPE_IQ4_XS: ellm_dequantize_iq4_xs(src, dst, n); break;
    case ELLM_TYPE_Q4_1: ellm_dequantize_q4_1(src, dst, n); break;
    case ELLM_TYPE_Q5_0: ellm_dequantize_q5_0(src, dst, n); break;
    case ELLM_TYPE_Q5_1: ellm_dequantize_q5_1(src, dst, n); break;
    case ELLM_TYPE_IQ4_NL: ellm_dequantize_iq4_nl(src, dst, n); break;
    case ELLM_TYPE_Q8_1: ellm_dequantize_q8_1(src, dst, n); break;
    default: memset(dst, 0, (size_t)n * sizeof(float)); break;
    }
}

static void quantize_q8_0(const float *x, block_q8_0 *b, int64_t n)
{
    for (int64_t i = 0; i < n / QK8_0; i++) {
        float amax = 0;
        for (int j = 0; j < QK8_0; j++)
            amax = fmaxf(amax, fabsf(x[i * QK8_0 + j]));
        float d = amax / 127.0f;
        float id = d != 0 ? 1.0f / d : 0.0f;
        b[i].d = ellm_f32_to_f16(d);
        for (int j = 0; j < QK8_0; j++)
            b[i].qs[j] = (int8_t)roundf(x[i * QK8_0 + j] * id);
    }
}

static void quantize_q4_0(const float *x, block_q4_0 *b, int64_t n)
{
    for (int64_t i = 0; i < n / QK4_0; i++) {
        const float *xb = x + i * QK4_0;
        float amax = 0, max = 0;
        for (int j = 0; j < QK4_0; j++) {
            if (fabsf(xb[j]) > amax) {
                amax = fabsf(xb[j]);
                max = xb[j];
            }
        }
        /* The extreme value maps to -8 exactly, using the full 16-level range. */
        float d = max / -8.0f;
        float id = d != 0 ? 1.0f / d : 0.0f;
        b[i].d = ellm_f32_to_f16(d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            int lo = (int)(xb[j] * id + 8.5f);
            int hi = (int)(xb[j + QK4_0 / 2] * id + 8.5f);
            lo = lo > 15 ? 15 : lo;
            hi = hi > 15 ? 15 : hi;
            b[i].qs[j] = (uint8_t)(lo | hi << 4);
        }
    }
}

/* The value of largest magnitude maps to -128 exactly, so the scale keeps its sign and the
 * whole int8 range is used; 127 clamps the opposite extreme. */
static void quantize_q8_K(const float *x, block_q8_K *b, int64_t n)
{
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float *xb = x + i * QK_K;
        float amax = 0, max = 0;
        for (int j = 0; j < QK_K; j++) {
            if (fabsf(xb[j]) > amax) {
                amax = fabsf(xb[j]);
                max = xb[j];
            }
        }
        if (amax == 0) {
            memset(&b[i], 0, sizeof b[i]);
            continue;
        }
        float iscale = -128.0f / max;
        for (int j = 0; j < QK_K; j++) {
            int v = (int)nearbyintf(iscale * xb[j]);
            b[i].qs[j] = (int8_t)(v > 127 ? 127 : v);
        }
        for (int g = 0; g < QK_K / 16; g++) {
            int sum = 0;
            for (int j = 0; j < 16; j++)
                sum += b[i].qs[g * 16 + j];
            b[i].bsums[g] = (int16_t)sum;
        }
        b[i].d = 1.0f / iscale;
    }
}

size_t ellm_quantize_row(ellm_type type, const float *src, void *dst, int64_t n)
{
    switch (type) {
    case ELLM_TYPE_F32: memcpy(dst, src, (size_t)n * 4); return (size_t)n * 4;
    case ELLM_TYPE_F16: {
        uint8_t *p = dst;
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = ellm_f32_to_f16(src[i]);
            memcpy(p + 2 * i, &h, 2);
        }
        return (size_t)n * 2;
    }
    case ELLM_TYPE_BF16: {
        uint8_t *p = dst;
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = ellm_f32_to_bf16(src[i]);
            memcpy(p + 2 * i, &h, 2);
        }
        return (size_t)n * 2;
    }
    case ELLM_TYPE_Q8_0:
        quantize_q8_0(src, dst, n);
        return (size_t)(n / QK8_0) * sizeof(block_q8_0);
    case ELLM_TYPE_Q4_0:
        quantize_q4_0(src, dst, n);
        return (size_t)(n / QK4_0) * sizeof(block_q4_0);
    case ELLM_TYPE_Q8_K: quantize_q8_K(src, dst, n); return (size_t)(n / QK_K) * sizeof(block_q8_K);
    case ELLM_TYPE_Q4_K:
        ellm_quantize_q4_K(src, dst, n);
        return (size_t)(n / QK_K) * sizeof(block_q4_K);
    case ELLM_TYPE_Q5_K:
        ellm_quantize_q5_K(src, dst, n);
        return (size_t)(n / QK_K) * sizeof(block_q5_K);
    case ELLM_TYPE_Q6_K:
        ellm_quantize_q6_K(src, dst, n);
        return (size_t)(n / QK_K) * sizeof(block_q6_K);
    case ELLM_TYPE_Q2_K:
        ellm_quantize_q2_K(src, dst, n);
        return (size_t)(n / QK_K) * sizeof(block_q2_K);
    case ELLM_TYPE_Q3_K:
        ellm_quantize_q3_K(src, dst, n);
        return (size_t)(n / QK_K) * sizeof(block_q3_K);
    case ELLM_TYPE_IQ4_XS:
        ellm_quantize_iq4_xs(src, dst, n);
        return (size_t)(n / QK_K) * sizeof(block_iq4_xs);
    case ELLM_TYPE_Q4_1:
        ellm_quantize_q4_1(src, dst, n);
        return (size_t)(n / QK4_1) * sizeof(block_q4_1);
    case ELLM_TYPE_Q5_0:
        ellm_quantize_q5_0(src, dst, n);
        return (size_t)(n / QK5_0) * sizeof(block_q5_0);
    case ELLM_TYPE_Q5_1:
        ellm_quantize_q5_1(src, dst, n);
        return (size_t)(n / QK5_1) * sizeof(block_q5_1);
    case ELLM_TYPE_IQ4_NL:
        ellm_quantize_iq4_nl(src, dst, n);
        return (size_t)(n / QK4_NL) * sizeof(block_iq4_nl);
    case ELLM_TYPE_Q8_1:
        ellm_quantize_q8_1(src, dst, n);
        return (size_t)(n / QK8_1) * sizeof(block_q8_1);
    default: return 0;
    }
}

float ellm_dot_reference(ellm_type type, const void *row, const float *x, int64_t n)
{
    float *w = malloc((size_t)n * sizeof *w);
    if (!w)
        return NAN;
    ellm_dequantize_row(type, row, w, n);
    double sum = 0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)w[i] * (double)x[i];
    free(w);
    return (float)sum;
}
