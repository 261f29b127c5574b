/* Portable K-quant dot kernels against Q8_K activations. Each super-block's integer products are
 * summed exactly (sub-block scales applied as integers; the mins and Q6_K's -32 offset come from
 * the activation block's bsums), then scaled once in float. */
#include "quant/blocks.h"
#include "quant/kernels.h"
#include "quant/kquants.h"
#include "quant/quant.h"

/* Sum over sub-blocks of m_j times the activation sum of sub-block j (two bsums of 16 each). */
static int q8_K_min_term(const uint8_t *mins, const int16_t *bsums)
{
    int summ = 0;
    for (int j = 0; j < 8; j++)
        summ += mins[j] * (bsums[2 * j] + bsums[2 * j + 1]);
    return summ;
}

void ellm_vec_dot_q4_K_scalar(int64_t n, float *out, const void *row, const void *x)
{
    const block_q4_K *w = row;
    const block_q8_K *a = x;
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        uint8_t sc[8], mn[8];
        for (int j = 0; j < 8; j++)
            ellm_kq_scale_min(j, w[i].scales, &sc[j], &mn[j]);
        int sumi = 0;
        for (int c = 0; c < 4; c++) {
            const uint8_t *q = w[i].qs + 32 * c;
            const int8_t *y = a[i].qs + 64 * c;
            int s0 = 0, s1 = 0;
            for (int l = 0; l < 32; l++) {
                s0 += (q[l] & 15) * y[l];
                s1 += (q[l] >> 4) * y[l + 32];
            }
            sumi += sc[2 * c] * s0 + sc[2 * c + 1] * s1;
        }
        int summ = q8_K_min_term(mn, a[i].bsums);
        sum += a[i].d * ellm_f16_to_f32(w[i].d) * (float)sumi -
               a[i].d * ellm_f16_to_f32(w[i].dmin) * (float)summ;
    }
    *out = sum;
}

void ellm_vec_dot_q5_K_scalar(int64_t n, float *out, const void *row, const void *x)
{
    const block_q5_K *w = row;
    const block_q8_K *a = x;
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        uint8_t sc[8], mn[8];
        for (int j = 0; j < 8; j++)
            ellm_kq_scale_min(j, w[i].scales, &sc[j], &mn[j]);
        int sumi = 0;
        for (int c = 0; c < 4; c++) {
            const uint8_t *q = w[i].qs + 32 * c;
            const int8_t *y = a[i].qs + 64 * c;
            int s0 = 0, s1 = 0;
            for (int l = 0; l < 32; l++) {
                int lo = (q[l] & 15) | ((w[i].qh[l] >> (2 * c)) & 1) << 4;
                int hi = (q[l] >> 4) | ((w[i].qh[l] >> (2 * c + 1)) & 1) << 4;
                s0 += lo * y[l];
                s1 += hi * y[l + 32];
            }
            sumi += sc[2 * c] * s0 + sc[2 * c + 1] * s1;
        }
        int summ = q8_K_min_term(mn, a[i].bsums);
        sum += a[i].d * ellm_f16_to_f32(w[i].d) * (float)sumi -
               a[i].d * ellm_f16_to_f32(w[i].dmin) * (float)summ;
    }
    *out = sum;
}

void ellm_vec_dot_q6_K_scalar(int64_t n, float *out, const void *row, const void *x)
{
    const block_q6_K *w = row;
    const block_q8_K *a = x;
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int sumi = 0;
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = w[i].ql + 64 * h, *qh = w[i].qh + 32 * h;
            const int8_t *y = a[i].qs + 128 * h;
            const int8_t *sc = w[i].scales + 8 * h;
            for (int quarter = 0; quarter < 4; quarter++) {
                /* Quarter k covers values 32k..32k+31 of this half: sub-blocks 2k and 2k+1. */
                int part[2] = {0, 0};
                for (int l = 0; l < 32; l++) {
                    int low = quarter & 1 ? ql[l + 32] : ql[l];
                    low = quarter < 2 ? low & 15 : low >> 4;
                    int q = low | ((qh[l] >> (2 * quarter)) & 3) << 4;
                    part[l / 16] += q * y[32 * quarter + l];
                }
                sumi += sc[2 * quarter] * part[0] + sc[2 * quarter + 1] * part[1];
            }
        }
        /* The stored q is value + 32: remove 32 * scale * (activation sum) per sub-block. */
        int offset = 0;
        for (int j = 0; j < 16; j++)
            offset += w[i].scales[j] * a[i].bsums[j];
        sumi -= 32 * offset;
        sum += a[i].d * ellm_f16_to_f32(w[i].d) * (float)sumi;
    }
    *out = sum;
}
