/* The F16 attention head with hardware half conversions (built with -mavx2 -mfma -mf16c; the
 * caller checks the CPU first). */
#include "quant/attention_kernels.h"

#if defined(ELLM_HAVE_F16C_ATTENTION)
#include <immintrin.h>
#include <math.h>
#include <stdbool.h>

#include "quant/blocks.h"

#define ATTEND_F16 ellm_attend_f16_f16c
#define ATTEND_F16_ATTRIBUTES
#define HALF_TO_FLOAT(h) _cvtsh_ss(h)
#define FLOAT_TO_HALF(f) _cvtss_sh((f), _MM_FROUND_TO_NEAREST_INT)
#include "quant/attention_f16.inc"
#endif

#if defined(ELLM_HAVE_F16C_ATTENTION)
/* Head sizes that are a multiple of 32 take the reference runtime's vector path: the K.Q dot in
 * four 8-lane FMA accumulators reduced (0+2)+(1+3), and the F16 accumulator updated with fused
 * multiply-adds. Same rounding steps as that runtime, eight lanes at a time. */
static inline float reduce4(__m256 a0, __m256 a1, __m256 a2, __m256 a3)
{
    __m256 s = _mm256_add_ps(_mm256_add_ps(a0, a2), _mm256_add_ps(a1, a3));
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    h = _mm_hadd_ps(h, h);
    return _mm_cvtss_f32(_mm_hadd_ps(h, h));
}

static inline __m256 load_half8(const uint16_t *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

static inline void store_half8(uint16_t *p, __m256 v)
{
    _mm_storeu_si128((__m128i *)p, _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}

/* ellm_attention_exp in 8 lanes: the same operations in the same order. */
static inline __m256 exp8(__m256 x)
{
    __m256 n = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(x, _mm256_set1_ps(ELLM_EXP_LOG2E)),
                                           _mm256_set1_ps(ELLM_EXP_ROUNDER)),
                             _mm256_set1_ps(ELLM_EXP_ROUNDER));
    __m256 r = _mm256_sub_ps(x, _mm256_mul_ps(n, _mm256_set1_ps(ELLM_EXP_LN2_HI)));
    r = _mm256_sub_ps(r, _mm256_mul_ps(n, _mm256_set1_ps(ELLM_EXP_LN2_LO)));
    __m256 p = _mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(ELLM_EXP_P0), r),
                             _mm256_set1_ps(ELLM_EXP_P1));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(ELLM_EXP_P2));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(ELLM_EXP_P3));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(ELLM_EXP_P4));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(ELLM_EXP_P5));
    __m256 e = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(p, _mm256_mul_ps(r, r)), r),
                             _mm256_set1_ps(1.0f));
    /* Lanes below the floor give 0 (their n may be out of the exponent's range). */
    __m256 live = _mm256_cmp_ps(x, _mm256_set1_ps(ELLM_EXP_FLOOR), _CMP_NLT_UQ);
    __m256i two_n = _mm256_slli_epi32(
        _mm256_add_epi32(_mm256_cvttps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_and_ps(live, _mm256_mul_ps(e, _mm256_castsi256_ps(two_n)));
}

void ellm_axpy_q8_0_avx2(int32_t n_blocks, float w, const void *blocks, float *out)
{
    const block_q8_0 *b = blocks;
    for (int32_t i = 0; i < n_blocks; i++, out += QK8_0) {
        __m256 wd = _mm256_set1_ps(w * _cvtsh_ss(b[i].d));
        for (int k = 0; k < QK8_0; k += 8) {
            __m256 q = _mm256_cvtepi32_ps(
                _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(b[i].qs + k))));
            _mm256_storeu_ps(out + k,
                             _mm256_add_ps(_mm256_loadu_ps(out + k), _mm256_mul_ps(wd, q)));
        }
    }
}

enum { POS_BLOCK = 32 }; /* positions whose scores and softmax factors are found together */

/* Positions go in blocks: the block's scores, then the running maximum (a scalar chain) with
 * the exponents of its differences, their exponentials eight at a time, then the accumulator
 * updates. */
void ellm_attend_f16_f16c_wide(const float *q, const uint8_t *kc, const uint8_t *vc, size_t stride,
                               int32_t n_pos, int32_t hd, float scale, uint16_t *acc, float *qr,
                               float *out)
{
    for (int32_t d = 0; d < hd; d += 8) {
        __m256 v = _mm256_loadu_ps(q + d);
        store_half8(acc + d, v); /* borrow acc to round the query through F16 */
        _mm256_storeu_ps(qr + d, load_half8(acc + d));
    }
    for (int32_t d = 0; d < hd; d += 8)
        store_half8(acc + d, _mm256_setzero_ps());
    float max = -INFINITY, sum = 0;
    float rescale[POS_BLOCK], weight[POS_BLOCK];
    for (int32_t p0 = 0; p0 < n_pos; p0 += POS_BLOCK) {
        int np = n_pos - p0 < POS_BLOCK ? (int)(n_pos - p0) : POS_BLOCK;
        for (int p = 0; p < np; p++) {
            const uint16_t *krow = (const uint16_t *)(kc + (size_t)(p0 + p) * stride);
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (int32_t d = 0; d < hd; d += 32) {
                a0 = _mm256_fmadd_ps(load_half8(krow + d), _mm256_loadu_ps(qr + d), a0);
                a1 = _mm256_fmadd_ps(load_half8(krow + d + 8), _mm256_loadu_ps(qr + d + 8), a1);
                a2 = _mm256_fmadd_ps(load_half8(krow + d + 16), _mm256_loadu_ps(qr + d + 16), a2);
                a3 = _mm256_fmadd_ps(load_half8(krow + d + 24), _mm256_loadu_ps(qr + d + 24), a3);
            }
            float score = reduce4(a0, a1, a2, a3) * scale;
            bool new_max = score > max;
            float x = new_max ? max - score : score - max;
            max = new_max ? score : max;
            rescale[p] = new_max ? x : 0.0f; /* the exponents for now, 1 where 0 */
            weight[p] = new_max ? 0.0f : x;
        }
        for (int p = np; p < (np + 7) / 8 * 8; p++)
            rescale[p] = weight[p] = 0.0f;
        for (int p = 0; p < np; p += 8) {
            _mm256_storeu_ps(&rescale[p], exp8(_mm256_loadu_ps(&rescale[p])));
            _mm256_storeu_ps(&weight[p], exp8(_mm256_loadu_ps(&weight[p])));
        }
        for (int p = 0; p < np; p++) {
            const uint16_t *vrow = (const uint16_t *)(vc + (size_t)(p0 + p) * stride);
            float old_scale = rescale[p];
            if (old_scale != 1.0f) { /* a new maximum (a factor of exactly 1 changes nothing) */
                __m256 ms = _mm256_set1_ps(old_scale);
                for (int32_t d = 0; d < hd; d += 8)
                    store_half8(acc + d, _mm256_mul_ps(load_half8(acc + d), ms));
            }
            __m256 vs = _mm256_set1_ps(weight[p]);
            for (int32_t d = 0; d < hd; d += 8)
                store_half8(acc + d,
                            _mm256_fmadd_ps(load_half8(vrow + d), vs, load_half8(acc + d)));
            sum = sum * old_scale + weight[p];
        }
    }
    float inv = 1.0f / sum;
    for (int32_t d = 0; d < hd; d++)
        out[d] = _cvtsh_ss(acc[d]) * inv;
}
#endif
