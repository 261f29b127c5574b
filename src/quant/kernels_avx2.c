/* AVX2 + FMA + F16C kernels (compiled with those flags; called only on CPUs that have them).
 *
 * The AVX2 decode kernels (here, kernels_legacy_avx2.c, kernels_kquants*_avx2.c) issue no software
 * prefetch: their loads come slowly enough for the hardware prefetchers to keep up, and
 * ellm_prefetch_stream's requests cost more than they saved (one thread, same run: Q8_0 66 -> 87 %
 * of a streaming read, Q4_K 57 -> 68 %, Q6_K 61 -> 67 %, the compute-bound types unchanged;
 * a streaming-read microbenchmark, now build/gemv_micro --kernels avx2). */
#include "quant/kernels.h"

#if defined(ELLM_HAVE_AVX2_KERNELS)
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "quant/blocks.h"
#include "quant/lanes_avx2.h"
#include "quant/quant.h"

static inline float half_to_float(uint16_t h) { return _cvtsh_ss(h); }

void ellm_vec_dot_f32_avx2(int64_t n, float *out, const void *row, const void *x)
{
    const float *a = row, *b = x;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
        acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), acc2);
        acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), acc3);
    }
    /* Reduction order (0+2)+(1+3) then pairwise within the register, like the most widely used
     * runtime, so F32 models agree with its published logits as closely as possible. */
    __m256 sum8 = _mm256_add_ps(_mm256_add_ps(acc0, acc2), _mm256_add_ps(acc1, acc3));
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(sum8), _mm256_extractf128_ps(sum8, 1));
    s4 = _mm_hadd_ps(s4, s4);
    float sum = _mm_cvtss_f32(_mm_hadd_ps(s4, s4));
    for (; i < n; i++)
        sum += a[i] * b[i];
    *out = sum;
}

void ellm_vec_dot_f16_avx2(int64_t n, float *out, const void *row, const void *x)
{
    const uint16_t *a = row;
    const float *b = x;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 w0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(a + i)));
        __m256 w1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(a + i + 8)));
        acc0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(b + i + 8), acc1);
    }
    float sum = hsum256(_mm256_add_ps(acc0, acc1));
    for (; i < n; i++) {
        uint16_t h;
        memcpy(&h, a + i, 2);
        sum += half_to_float(h) * b[i];
    }
    *out = sum;
}

/* Sum of signed 8-bit products of 32 pairs, as 8 int32 lanes. */
static inline __m256i dot_i8_32(__m256i a, __m256i b)
{
    __m256i abs_a = _mm256_sign_epi8(a, a);
    __m256i sb = _mm256_sign_epi8(b, a);
    __m256i pairs = _mm256_maddubs_epi16(abs_a, sb);
    return _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
}

void ellm_vec_dot_q8_0_avx2(int64_t n, float *out, const void *row, const void *x)
{
    const block_q8_0 *w = row, *a = x;
    int64_t nb = n / QK8_0, i = 0;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (; i + 2 <= nb; i += 2) {
        __m256 d0 = _mm256_set1_ps(half_to_float(w[i].d) * half_to_float(a[i].d));
        __m256 d1 = _mm256_set1_ps(half_to_float(w[i + 1].d) * half_to_float(a[i + 1].d));
        __m256i p0 = dot_i8_32(_mm256_loadu_si256((const __m256i *)w[i].qs),
                               _mm256_loadu_si256((const __m256i *)a[i].qs));
        __m256i p1 = dot_i8_32(_mm256_loadu_si256((const __m256i *)w[i + 1].qs),
                               _mm256_loadu_si256((const __m256i *)a[i + 1].qs));
        acc0 = _mm256_fmadd_ps(d0, _mm256_cvtepi32_ps(p0), acc0);
        acc1 = _mm256_fmadd_ps(d1, _mm256_cvtepi32_ps(p1), acc1);
    }
    for (; i < nb; i++) {
        __m256 d = _mm256_set1_ps(half_to_float(w[i].d) * half_to_float(a[i].d));
        __m256i p = dot_i8_32(_mm256_loadu_si256((const __m256i *)w[i].qs),
                              _mm256_loadu_si256((const __m256i *)a[i].qs));
        acc0 = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc0);
    }
    *out = hsum256(_mm256_add_ps(acc0, acc1));
}

static inline __m256i unpack_q4_0(const block_q4_0 *b)
{
    const __m128i low_mask = _mm_set1_epi8(0x0F);
    __m128i packed = _mm_loadu_si128((const __m128i *)b->qs);
    __m128i lo = _mm_and_si128(packed, low_mask);
    __m128i hi = _mm_and_si128(_mm_srli_epi16(packed, 4), low_mask);
    return _mm256_sub_epi8(_mm256_set_m128i(hi, lo), _mm256_set1_epi8(8));
}

/* Two blocks per step into two accumulators, so consecutive FMAs do not wait on each other. */
void ellm_vec_dot_q4_0_avx2(int64_t n, float *out, const void *row, const void *x)
{
    const block_q4_0 *w = row;
    const block_q8_0 *a = x;
    int64_t nb = n / QK4_0, i = 0;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (; i + 2 <= nb; i += 2) {
        __m256 d0 = _mm256_set1_ps(half_to_float(w[i].d) * half_to_float(a[i].d));
        __m256 d1 = _mm256_set1_ps(half_to_float(w[i + 1].d) * half_to_float(a[i + 1].d));
        __m256i p0 = dot_i8_32(unpack_q4_0(&w[i]), _mm256_loadu_si256((const __m256i *)a[i].qs));
        __m256i p1 = dot_i8_32(unpack_q4_0(&w[i + 1]),
                               _mm256_loadu_si256((const __m256i *)a[i + 1].qs));
        acc0 = _mm256_fmadd_ps(d0, _mm256_cvtepi32_ps(p0), acc0);
        acc1 = _mm256_fmadd_ps(d1, _mm256_cvtepi32_ps(p1), acc1);
    }
    for (; i < nb; i++) {
        __m256 d = _mm256_set1_ps(half_to_float(w[i].d) * half_to_float(a[i].d));
        __m256i p = dot_i8_32(unpack_q4_0(&w[i]), _mm256_loadu_si256((const __m256i *)a[i].qs));
        acc0 = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc0);
    }
    *out = hsum256(_mm256_add_ps(acc0, acc1));
}

/* The same computation as ellm_vec_dot_q4_0_avx2 for four activation rows at once: each weight
 * block is unpacked once and used four times (prefill). Per row, the operations and their order
 * are exactly those of the single-row kernel, so results are bit-identical to it. */
void ellm_vec_dot_q4_0_x4_avx2(int64_t n, float *out, const void *row, const void *const *x)
{
    const block_q4_0 *w = row;
    const block_q8_0 *a[4] = {x[0], x[1], x[2], x[3]};
    int64_t nb = n / QK4_0, i = 0;
    __m256 acc0[4], acc1[4];
    for (int t = 0; t < 4; t++)
        acc0[t] = acc1[t] = _mm256_setzero_ps();
    for (; i + 2 <= nb; i += 2) {
        __m256i q0 = unpack_q4_0(&w[i]), q1 = unpack_q4_0(&w[i + 1]);
        float dw0 = half_to_float(w[i].d), dw1 = half_to_float(w[i + 1].d);
        for (int t = 0; t < 4; t++) {
            __m256 d0 = _mm256_set1_ps(dw0 * half_to_float(a[t][i].d));
            __m256 d1 = _mm256_set1_ps(dw1 * half_to_float(a[t][i + 1].d));
            __m256i p0 = dot_i8_32(q0, _mm256_loadu_si256((const __m256i *)a[t][i].qs));
            __m256i p1 = dot_i8_32(q1, _mm256_loadu_si256((const __m256i *)a[t][i + 1].qs));
            acc0[t] = _mm256_fmadd_ps(d0, _mm256_cvtepi32_ps(p0), acc0[t]);
            acc1[t] = _mm256_fmadd_ps(d1, _mm256_cvtepi32_ps(p1), acc1[t]);
        }
    }
    for (; i < nb; i++) {
        __m256i q = unpack_q4_0(&w[i]);
        float dw = half_to_float(w[i].d);
        for (int t = 0; t < 4; t++) {
            __m256 d = _mm256_set1_ps(dw * half_to_float(a[t][i].d));
            __m256i p = dot_i8_32(q, _mm256_loadu_si256((const __m256i *)a[t][i].qs));
            acc0[t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc0[t]);
        }
    }
    for (int t = 0; t < 4; t++)
        out[t] = hsum256(_mm256_add_ps(acc0[t], acc1[t]));
}

/* ellm_vec_dot_q8_0_avx2 for four activation rows sharing each weight load; bit-identical. */
void ellm_vec_dot_q8_0_x4_avx2(int64_t n, float *out, const void *row, const void *const *x)
{
    const block_q8_0 *w = row;
    const block_q8_0 *a[4] = {x[0], x[1], x[2], x[3]};
    int64_t nb = n / QK8_0, i = 0;
    __m256 acc0[4], acc1[4];
    for (int t = 0; t < 4; t++)
        acc0[t] = acc1[t] = _mm256_setzero_ps();
    for (; i + 2 <= nb; i += 2) {
        __m256i q0 = _mm256_loadu_si256((const __m256i *)w[i].qs);
        __m256i q1 = _mm256_loadu_si256((const __m256i *)w[i + 1].qs);
        float dw0 = half_to_float(w[i].d), dw1 = half_to_float(w[i + 1].d);
        for (int t = 0; t < 4; t++) {
            __m256 d0 = _mm256_set1_ps(dw0 * half_to_float(a[t][i].d));
            __m256 d1 = _mm256_set1_ps(dw1 * half_to_float(a[t][i + 1].d));
            __m256i p0 = dot_i8_32(q0, _mm256_loadu_si256((const __m256i *)a[t][i].qs));
            __m256i p1 = dot_i8_32(q1, _mm256_loadu_si256((const __m256i *)a[t][i + 1].qs));
            acc0[t] = _mm256_fmadd_ps(d0, _mm256_cvtepi32_ps(p0), acc0[t]);
            acc1[t] = _mm256_fmadd_ps(d1, _mm256_cvtepi32_ps(p1), acc1[t]);
        }
    }
    for (; i < nb; i++) {
        __m256i q = _mm256_loadu_si256((const __m256i *)w[i].qs);
        float dw = half_to_float(w[i].d);
        for (int t = 0; t < 4; t++) {
            __m256 d = _mm256_set1_ps(dw * half_to_float(a[t][i].d));
            __m256i p = dot_i8_32(q, _mm256_loadu_si256((const __m256i *)a[t][i].qs));
            acc0[t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc0[t]);
        }
    }
    for (int t = 0; t < 4; t++)
        out[t] = hsum256(_mm256_add_ps(acc0[t], acc1[t]));
}

/* The decode path: the activation row in the extended Q8_0 layout carries the scales as floats
 * and, per block, 8 x the sum of each four activations, so Q4_0 multiplies its unsigned nibbles
 * (no sign moves) and subtracts that sum for the offset of 8, and neither kernel converts an
 * activation scale. The scale products d_w * d_a of eight blocks are formed at once and broadcast
 * from memory. Every lane's integer, scale product and fused multiply-add (even blocks into acc0,
 * odd into acc1) are the plain kernel's, so the results are bit-identical to it. */
enum { EXT_STEP = 8 };

/* d_w * d_a of blocks i..i+7 of a row whose blocks are `stride` bytes apart (scale first). */
static inline void ext_scale_products(const uint8_t *w, size_t stride, const float *da, float *out)
{
    uint16_t h[EXT_STEP];
    for (int k = 0; k < EXT_STEP; k++)
        memcpy(&h[k], w + (size_t)k * stride, 2);
    __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)h));
    _mm256_storeu_ps(out, _mm256_mul_ps(dw, _mm256_loadu_ps(da)));
}

/* Sum of q * a of a block's 32 unsigned nibbles q and activations a, less 8 x the sums of a, as
 * the plain kernel's 8 int32 lanes (four values each). */
static inline __m256i q4_0_ext_block(const block_q4_0 *b, const int8_t *a, const int32_t *sums8)
{
    const __m128i m15 = _mm_set1_epi8(15);
    __m128i packed = _mm_loadu_si128((const __m128i *)b->qs);
    __m256i q = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(packed, 4), m15),
                                 _mm_and_si128(packed, m15));
    __m256i p = _mm256_maddubs_epi16(q, _mm256_loadu_si256((const __m256i *)a));
    return _mm256_sub_epi32(_mm256_madd_epi16(p, _mm256_set1_epi16(1)),
                            _mm256_loadu_si256((const __m256i *)sums8));
}

void ellm_vec_dot_q4_0_ext_avx2(int64_t n, float *out, const void *row, const void *x)
{
    const ellm_q8_0_ext_layout L = ellm_q8_0_ext_layout_for(n);
    const block_q4_0 *w = row;
    const int8_t *a = x;
    const float *da = (const float *)((const uint8_t *)x + L.scales_offset);
    const int32_t *sums = (const int32_t *)((const uint8_t *)x + L.sums_offset);
    int64_t nb = n / QK4_0, i = 0;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    float d[EXT_STEP];
    for (; i + EXT_STEP <= nb; i += EXT_STEP) {
        ext_scale_products((const uint8_t *)&w[i], sizeof w[i], da + i, d);
        for (int k = 0; k < EXT_STEP; k += 2) {
            __m256i p0 = q4_0_ext_block(&w[i + k], a + (i + k) * QK8_0, sums + 8 * (i + k));
            __m256i p1 = q4_0_ext_block(&w[i + k + 1], a + (i + k + 1) * QK8_0,
                                        sums + 8 * (i + k + 1));
            acc0 = _mm256_fmadd_ps(_mm256_broadcast_ss(&d[k]), _mm256_cvtepi32_ps(p0), acc0);
            acc1 = _mm256_fmadd_ps(_mm256_broadcast_ss(&d[k + 1]), _mm256_cvtepi32_ps(p1), acc1);
        }
    }
    for (; i < nb; i++) {
        __m256 di = _mm256_set1_ps(half_to_float(w[i].d) * da[i]);
        __m256i p = q4_0_ext_block(&w[i], a + i * QK8_0, sums + 8 * i);
        /* block i's parity decides its accumulator, as in the plain kernel */
        if (i % 2 == 0)
            acc0 = _mm256_fmadd_ps(di, _mm256_cvtepi32_ps(p), acc0);
        else
            acc1 = _mm256_fmadd_ps(di, _mm256_cvtepi32_ps(p), acc1);
    }
    *out = hsum256(_mm256_add_ps(acc0, acc1));
}

void ellm_vec_dot_q8_0_ext_avx2(int64_t n, float *out, const void *row, const void *x)
{
    const ellm_q8_0_ext_layout L = ellm_q8_0_ext_layout_for(n);
    const block_q8_0 *w = row;
    const int8_t *a = x;
    const float *da = (const float *)((const uint8_t *)x + L.scales_offset);
    int64_t nb = n / QK8_0, i = 0;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    float d[EXT_STEP];
    for (; i + EXT_STEP <= nb; i += EXT_STEP) {
        ext_scale_products((const uint8_t *)&w[i], sizeof w[i], da + i, d);
        for (int k = 0; k < EXT_STEP; k += 2) {
            __m256i p0 = dot_i8_32(_mm256_loadu_si256((const __m256i *)w[i + k].qs),
                                   _mm256_loadu_si256((const __m256i *)(a + (i + k) * QK8_0)));
            __m256i p1 = dot_i8_32(_mm256_loadu_si256((const __m256i *)w[i + k + 1].qs),
                                   _mm256_loadu_si256((const __m256i *)(a + (i + k + 1) * QK8_0)));
            acc0 = _mm256_fmadd_ps(_mm256_broadcast_ss(&d[k]), _mm256_cvtepi32_ps(p0), acc0);
            acc1 = _mm256_fmadd_ps(_mm256_broadcast_ss(&d[k + 1]), _mm256_cvtepi32_ps(p1), acc1);
        }
    }
    for (; i < nb; i++) {
        __m256 di = _mm256_set1_ps(half_to_float(w[i].d) * da[i]);
        __m256i p = dot_i8_32(_mm256_loadu_si256((const __m256i *)w[i].qs),
                              _mm256_loadu_si256((const __m256i *)(a + i * QK8_0)));
        if (i % 2 == 0)
            acc0 = _mm256_fmadd_ps(di, _mm256_cvtepi32_ps(p), acc0);
        else
            acc1 = _mm256_fmadd_ps(di, _mm256_cvtepi32_ps(p), acc1);
    }
    *out = hsum256(_mm256_add_ps(acc0, acc1));
}

void ellm_quantize_row_q8_0_avx2(const float *x, void *dst, int64_t n)
{
    block_q8_0 *b = dst;
    const __m256 sign_mask = _mm256_set1_ps(-0.0f);
    for (int64_t i = 0; i < n / QK8_0; i++) {
        const float *xb = x + i * QK8_0;
        __m256 v[4];
        __m256 amax = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) {
            v[k] = _mm256_loadu_ps(xb + 8 * k);
            amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign_mask, v[k]));
        }
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        float d = _mm_cvtss_f32(m) / 127.0f;
        float id = d != 0 ? 1.0f / d : 0.0f;
        b[i].d = ellm_f32_to_f16(d);
        /* roundf semantics (half away from zero), matching the reference quantizer. */
        for (int j = 0; j < QK8_0; j++)
            b[i].qs[j] = (int8_t)roundf(xb[j] * id);
    }
}
#endif
