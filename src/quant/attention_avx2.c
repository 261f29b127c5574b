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
/* Head sizes that are a multiple of 32 take the reference runtime's vector path for the K.Q dot:
 * four 8-lane FMA accumulators reduced (0+2)+(1+3), then the halves, then pairs. The running
 * output is kept in F32 (no rounding per position) and updated with fused multiply-adds. */
static inline __m256 load_half8(const uint16_t *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

static inline __m256 round_to_half8(__m256 v)
{
    return _mm256_cvtph_ps(_mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}

/* The reduction above for eight positions at once, given per position s = (a0+a2)+(a1+a3): the
 * same additions in the same order, transposed as it goes; the scores come out in position
 * order, times scale. */
static inline __m256 reduce8_like_wide(const __m256 *s, float scale)
{
    __m256 u[4];
    for (int j = 0; j < 4; j++) /* lane l < 4 of each half: position 2j, 2j + 1's s[l] + s[l + 4] */
        u[j] = _mm256_add_ps(_mm256_permute2f128_ps(s[2 * j], s[2 * j + 1], 0x20),
                             _mm256_permute2f128_ps(s[2 * j], s[2 * j + 1], 0x31));
    __m256 pairs0 = _mm256_hadd_ps(u[0], u[1]), pairs1 = _mm256_hadd_ps(u[2], u[3]);
    __m256 sums = _mm256_hadd_ps(pairs0, pairs1); /* positions 0 2 4 6 1 3 5 7 */
    sums = _mm256_permutevar8x32_ps(sums, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    return _mm256_mul_ps(sums, _mm256_set1_ps(scale));
}

/* ellm_exp in 8 lanes: the same operations in the same order. */
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

/* vcvtps2ph rounds to nearest even into F16's subnormals as ellm_f32_to_f16 does, and keeps a
 * NaN's sign and top payload bits with the quiet bit set, as it does; max_ps and min_ps return
 * their second operand when either is NaN, so NaN passes the clamp as in ellm_f16_saturate. */
void ellm_f16_store_f16c(const float *src, uint8_t *dst, int64_t n)
{
    const __m256 top = _mm256_set1_ps(ELLM_F16_MAX), bottom = _mm256_set1_ps(-ELLM_F16_MAX);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_min_ps(top, _mm256_max_ps(bottom, _mm256_loadu_ps(src + i)));
        _mm_storeu_si128((__m128i *)(dst + 2 * i), _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT));
    }
    ellm_f16_store_portable(src + i, dst + 2 * i, n - i);
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

/* The online softmax factors of a block's scores: the exponents (attention_softmax_exponents),
 * then their exponentials eight at a time. Per position, rescale is the factor the output so
 * far takes (1 unless the maximum moved) and weight the position's own. The running sum,
 * sum * rescale + weight position after position, is left to the callers' output loops: as a
 * loop of its own it is a chain of dependent steps that stalls the core for a block. */
static inline void softmax_factors(const float *score, int np, float *max, float *rescale,
                                   float *weight)
{
    attention_softmax_exponents(score, np, max, rescale, weight);
    for (int p = np; p < (np + 7) / 8 * 8; p++)
        rescale[p] = weight[p] = 0.0f;
    /* Of a position's two exponents one is +0, whose factor exp8 makes exactly 1, and the other
     * is their sum, exactly: one exponential a position gives both factors' bits. A rescale
     * exponent is negative or -inf where it is not 0, so "not 0" says which one it is. */
    const __m256 one = _mm256_set1_ps(1.0f);
    for (int p = 0; p < np; p += 8) {
        __m256 rescale_exponent = _mm256_loadu_ps(&rescale[p]);
        __m256 factor = exp8(_mm256_add_ps(rescale_exponent, _mm256_loadu_ps(&weight[p])));
        __m256 new_max = _mm256_cmp_ps(rescale_exponent, _mm256_setzero_ps(), _CMP_NEQ_UQ);
        _mm256_storeu_ps(&rescale[p], _mm256_blendv_ps(one, factor, new_max));
        _mm256_storeu_ps(&weight[p], _mm256_blendv_ps(factor, one, new_max));
    }
}

void ellm_attend_f16_f16c_wide(const float *q, const uint8_t *kc, const uint8_t *vc, size_t stride,
                               int32_t n_pos, int32_t hd, float scale, float *acc, float *qr,
                               float *out)
{
    for (int32_t d = 0; d < hd; d += 8) {
        _mm256_storeu_ps(qr + d, round_to_half8(_mm256_loadu_ps(q + d)));
        _mm256_storeu_ps(acc + d, _mm256_setzero_ps());
    }
    float max = -INFINITY, sum = 0;
    float score[POS_BLOCK], rescale[POS_BLOCK], weight[POS_BLOCK];
    __m256 s[8];
    for (int32_t p0 = 0; p0 < n_pos; p0 += POS_BLOCK) {
        int np = n_pos - p0 < POS_BLOCK ? (int)(n_pos - p0) : POS_BLOCK;
        for (int p = 0; p < np; p += 8) {
            for (int j = 0; j < 8; j++) {
                s[j] = _mm256_setzero_ps();
                if (p + j >= np)
                    continue;
                const uint16_t *krow = (const uint16_t *)(kc + (size_t)(p0 + p + j) * stride);
                __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
                for (int32_t d = 0; d < hd; d += 32) {
                    a0 = _mm256_fmadd_ps(load_half8(krow + d), _mm256_loadu_ps(qr + d), a0);
                    a1 = _mm256_fmadd_ps(load_half8(krow + d + 8), _mm256_loadu_ps(qr + d + 8), a1);
                    a2 = _mm256_fmadd_ps(load_half8(krow + d + 16), _mm256_loadu_ps(qr + d + 16),
                                         a2);
                    a3 = _mm256_fmadd_ps(load_half8(krow + d + 24), _mm256_loadu_ps(qr + d + 24),
                                         a3);
                }
                s[j] = _mm256_add_ps(_mm256_add_ps(a0, a2), _mm256_add_ps(a1, a3));
            }
            _mm256_storeu_ps(&score[p], reduce8_like_wide(s, scale));
        }
        softmax_factors(score, np, &max, rescale, weight);
        for (int p = 0; p < np; p++) {
            sum = rescale[p] != 1.0f ? sum * rescale[p] + weight[p] : sum + weight[p];
            const uint16_t *vrow = (const uint16_t *)(vc + (size_t)(p0 + p) * stride);
            if (rescale[p] != 1.0f) { /* a new maximum (a factor of exactly 1 changes nothing) */
                __m256 ms = _mm256_set1_ps(rescale[p]);
                for (int32_t d = 0; d < hd; d += 8)
                    _mm256_storeu_ps(acc + d, _mm256_mul_ps(_mm256_loadu_ps(acc + d), ms));
            }
            __m256 ws = _mm256_set1_ps(weight[p]);
            for (int32_t d = 0; d < hd; d += 8)
                _mm256_storeu_ps(
                    acc + d, _mm256_fmadd_ps(load_half8(vrow + d), ws, _mm256_loadu_ps(acc + d)));
        }
    }
    __m256 inv = _mm256_set1_ps(1.0f / sum);
    for (int32_t d = 0; d < hd; d += 8)
        _mm256_storeu_ps(out + d, _mm256_mul_ps(_mm256_loadu_ps(acc + d), inv));
}

/* The heads of a grouped-query group read the same key and value rows, and so do the consecutive
 * tokens of a prefill (token t over the first n_pos + t positions). Per block of positions, the
 * rows are converted to F32 once, then each token's heads in turn take their scores (the query
 * in registers), their softmax factors and their output update (64 values of the output in
 * registers at a time) from them, every step as the wide path takes it; a token whose positions
 * end inside the block stops there, as its own call would. HD is 64 or 128. */
enum { GROUP_HEADS = 8 };  /* heads whose queries and outputs one call keeps */
enum { GROUP_TOKENS = 4 }; /* tokens whose heads one call keeps */

static inline void attend_group(const float *q, size_t q_stride, const uint8_t *kc,
                                const uint8_t *vc, size_t stride, int32_t n_pos, int n_tokens,
                                float scale, int n_heads, float *out, size_t out_stride,
                                const int HD)
{
    enum { MAX_HD = 128, MAX_CHUNKS = MAX_HD / 8, OUT_CHUNKS = 8 };
    float kf[POS_BLOCK * MAX_HD] __attribute__((aligned(32)));
    float vf[POS_BLOCK * MAX_HD] __attribute__((aligned(32)));
    float qr[GROUP_TOKENS][GROUP_HEADS][MAX_HD] __attribute__((aligned(32)));
    float acc[GROUP_TOKENS][GROUP_HEADS][MAX_HD] __attribute__((aligned(32)));
    float max[GROUP_TOKENS][GROUP_HEADS], sum[GROUP_TOKENS][GROUP_HEADS];
    float score[POS_BLOCK], rescale[POS_BLOCK], weight[POS_BLOCK];
    const int chunks = HD / 8;
    for (int t = 0; t < n_tokens; t++)
        for (int i = 0; i < n_heads; i++) {
            const float *qh = q + (size_t)t * q_stride + (size_t)i * HD;
            for (int c = 0; c < chunks; c++) {
                _mm256_store_ps(&qr[t][i][8 * c], round_to_half8(_mm256_loadu_ps(qh + 8 * c)));
                _mm256_store_ps(&acc[t][i][8 * c], _mm256_setzero_ps());
            }
            max[t][i] = -INFINITY;
            sum[t][i] = 0;
        }
    int32_t last_n_pos = n_pos + n_tokens - 1;
    for (int32_t p0 = 0; p0 < last_n_pos; p0 += POS_BLOCK) {
        int np_rows = last_n_pos - p0 < POS_BLOCK ? (int)(last_n_pos - p0) : POS_BLOCK;
        for (int p = 0; p < np_rows; p++) {
            const uint16_t *krow = (const uint16_t *)(kc + (size_t)(p0 + p) * stride);
            const uint16_t *vrow = (const uint16_t *)(vc + (size_t)(p0 + p) * stride);
            ellm_attention_prefetch((const uint8_t *)krow, POS_BLOCK * stride, 2 * HD);
            ellm_attention_prefetch((const uint8_t *)vrow, POS_BLOCK * stride, 2 * HD);
            for (int c = 0; c < chunks; c++) {
                _mm256_store_ps(&kf[p * HD + 8 * c], load_half8(krow + 8 * c));
                _mm256_store_ps(&vf[p * HD + 8 * c], load_half8(vrow + 8 * c));
            }
        }
        for (int t = 0; t < n_tokens; t++) {
            int32_t token_n_pos = n_pos + t;
            if (token_n_pos <= p0)
                continue;
            int np = token_n_pos - p0 < POS_BLOCK ? (int)(token_n_pos - p0) : POS_BLOCK;
            for (int i = 0; i < n_heads; i++) {
                __m256 qv[MAX_CHUNKS], s[8];
                for (int c = 0; c < chunks; c++)
                    qv[c] = _mm256_load_ps(&qr[t][i][8 * c]);
                for (int p = 0; p < np; p += 8) {
                    for (int j = 0; j < 8; j++) {
                        s[j] = _mm256_setzero_ps();
                        if (p + j >= np)
                            continue;
                        const float *k = &kf[(p + j) * HD];
                        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
                        for (int c = 0; c < chunks; c += 4) {
                            a0 = _mm256_fmadd_ps(_mm256_load_ps(k + 8 * c), qv[c], a0);
                            a1 = _mm256_fmadd_ps(_mm256_load_ps(k + 8 * c + 8), qv[c + 1], a1);
                            a2 = _mm256_fmadd_ps(_mm256_load_ps(k + 8 * c + 16), qv[c + 2], a2);
                            a3 = _mm256_fmadd_ps(_mm256_load_ps(k + 8 * c + 24), qv[c + 3], a3);
                        }
                        s[j] = _mm256_add_ps(_mm256_add_ps(a0, a2), _mm256_add_ps(a1, a3));
                    }
                    _mm256_storeu_ps(&score[p], reduce8_like_wide(s, scale));
                }
                softmax_factors(score, np, &max[t][i], rescale, weight);
                for (int c0 = 0; c0 < chunks; c0 += OUT_CHUNKS) {
                    __m256 o[OUT_CHUNKS];
                    for (int c = 0; c < OUT_CHUNKS; c++)
                        o[c] = _mm256_load_ps(&acc[t][i][8 * (c0 + c)]);
                    for (int p = 0; p < np; p++) {
                        const float *v = &vf[p * HD + 8 * c0];
                        if (rescale[p] != 1.0f) { /* a new maximum */
                            if (c0 == 0)
                                sum[t][i] = sum[t][i] * rescale[p] + weight[p];
                            __m256 ms = _mm256_set1_ps(rescale[p]);
                            for (int c = 0; c < OUT_CHUNKS; c++)
                                o[c] = _mm256_mul_ps(o[c], ms);
                        } else if (c0 == 0) {
                            /* sum * 1 is sum: the chain's multiply left out, its latency too */
                            sum[t][i] = sum[t][i] + weight[p];
                        }
                        __m256 ws = _mm256_set1_ps(weight[p]);
                        for (int c = 0; c < OUT_CHUNKS; c++)
                            o[c] = _mm256_fmadd_ps(_mm256_load_ps(v + 8 * c), ws, o[c]);
                    }
                    for (int c = 0; c < OUT_CHUNKS; c++)
                        _mm256_store_ps(&acc[t][i][8 * (c0 + c)], o[c]);
                }
            }
        }
    }
    for (int t = 0; t < n_tokens; t++)
        for (int i = 0; i < n_heads; i++) {
            __m256 inv = _mm256_set1_ps(1.0f / sum[t][i]);
            float *oh = out + (size_t)t * out_stride + (size_t)i * HD;
            for (int c = 0; c < chunks; c++)
                _mm256_storeu_ps(oh + 8 * c, _mm256_mul_ps(_mm256_load_ps(&acc[t][i][8 * c]), inv));
        }
}

void ellm_attend_f16_group_tokens_avx2(const float *q, size_t q_stride, const uint8_t *kc,
                                       const uint8_t *vc, size_t stride, int32_t n_pos,
                                       int32_t n_tokens, int32_t hd, float scale, int32_t n_heads,
                                       float *out, size_t out_stride)
{
    for (int32_t t = 0; t < n_tokens; t += GROUP_TOKENS) {
        int nt = n_tokens - t < GROUP_TOKENS ? (int)(n_tokens - t) : GROUP_TOKENS;
        for (int32_t h = 0; h < n_heads; h += GROUP_HEADS) {
            int n = n_heads - h < GROUP_HEADS ? (int)(n_heads - h) : GROUP_HEADS;
            const float *qt = q + (size_t)t * q_stride + (size_t)h * hd;
            float *ot = out + (size_t)t * out_stride + (size_t)h * hd;
            if (hd == 64)
                attend_group(qt, q_stride, kc, vc, stride, n_pos + t, nt, scale, n, ot, out_stride,
                             64);
            else
                attend_group(qt, q_stride, kc, vc, stride, n_pos + t, nt, scale, n, ot, out_stride,
                             128);
        }
    }
}

void ellm_attend_f16_group_avx2(const float *q, const uint8_t *kc, const uint8_t *vc, size_t stride,
                                int32_t n_pos, int32_t hd, float scale, int32_t n_heads, float *out)
{
    ellm_attend_f16_group_tokens_avx2(q, 0, kc, vc, stride, n_pos, 1, hd, scale, n_heads, out, 0);
}

/* The exact integer sums of one Q8_0 key block against eight heads' query blocks (lane h: head h,
 * zero past n_heads): |k| times q with k's sign (vpmaddubsw: a pair is at most 2 x 128 x 127,
 * below the int16 limit), pairs to int32 (vpmaddwd), then an add tree that transposes as it
 * goes. Integer sums are exact in any order, so these equal the scalar kernel's. */
static inline __m256i q8_0_block_isums8(const int8_t *k, const block_q8_0 *q, int32_t q_step,
                                        int n_heads)
{
    const __m256i kv = _mm256_loadu_si256((const __m256i *)k), ones = _mm256_set1_epi16(1);
    const __m256i k_abs = _mm256_sign_epi8(kv, kv);
    __m256i s[8];
    for (int h = 0; h < 8; h++) {
        if (h >= n_heads) {
            s[h] = _mm256_setzero_si256();
            continue;
        }
        __m256i qv = _mm256_loadu_si256((const __m256i *)q[(size_t)h * q_step].qs);
        s[h] = _mm256_madd_epi16(_mm256_maddubs_epi16(k_abs, _mm256_sign_epi8(qv, kv)), ones);
    }
    __m256i u0 = _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3]));
    __m256i u1 = _mm256_hadd_epi32(_mm256_hadd_epi32(s[4], s[5]), _mm256_hadd_epi32(s[6], s[7]));
    /* each 128-bit half of u0 holds heads 0-3 over half the block, u1 heads 4-7 */
    return _mm256_add_epi32(_mm256_permute2x128_si256(u0, u1, 0x20),
                            _mm256_permute2x128_si256(u0, u1, 0x31));
}

enum { Q8_GROUP_MAX_BLOCKS = 16 }; /* head sizes up to 512 */

/* Up to eight heads' scores over every position: per key block the heads' integer sums in one
 * vector, then per lane the scalar kernel's float steps (sum += (d_k * d_q) * isum, block by
 * block, no fused multiply-add), times scale. */
static void q8_0_scores8(const block_q8_0 *q8, int32_t nb, const uint8_t *kc, size_t stride,
                         int32_t n_pos, float scale, float cap, int n_heads, float *scores)
{
    __m256 dq[Q8_GROUP_MAX_BLOCKS];
    for (int32_t b = 0; b < nb; b++) {
        float d[8] = {0};
        for (int h = 0; h < n_heads; h++)
            d[h] = _cvtsh_ss(q8[(size_t)h * nb + b].d);
        dq[b] = _mm256_loadu_ps(d);
    }
    for (int32_t p = 0; p < n_pos; p++) {
        const block_q8_0 *krow = (const block_q8_0 *)(kc + (size_t)p * stride);
        __m256 sum = _mm256_setzero_ps();
        for (int32_t b = 0; b < nb; b++) {
            __m256i isum = q8_0_block_isums8(krow[b].qs, q8 + b, nb, n_heads);
            __m256 dkq = _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(krow[b].d)), dq[b]);
            sum = _mm256_add_ps(sum, _mm256_mul_ps(dkq, _mm256_cvtepi32_ps(isum)));
        }
        float sc[8];
        _mm256_storeu_ps(sc, _mm256_mul_ps(sum, _mm256_set1_ps(scale)));
        for (int h = 0; h < n_heads; h++)
            scores[(size_t)h * n_pos + p] = cap > 0 ? cap * tanhf(sc[h] / cap) : sc[h];
    }
}

/* ellm_attention_softmax_q8_0 eight positions at a time: lane l holds partial sum l. */
static void softmax_q8_0_avx2(float *scores, int32_t n)
{
    __m256 vmax = _mm256_set1_ps(-INFINITY);
    int32_t p = 0;
    for (; p + 8 <= n; p += 8)
        vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(scores + p));
    float lanes[8], max = -INFINITY;
    _mm256_storeu_ps(lanes, vmax);
    for (int l = 0; l < 8; l++)
        max = lanes[l] > max ? lanes[l] : max;
    for (; p < n; p++)
        max = scores[p] > max ? scores[p] : max;
    const __m256 m = _mm256_set1_ps(max);
    __m256 part = _mm256_setzero_ps();
    for (p = 0; p + 8 <= n; p += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(scores + p), m));
        _mm256_storeu_ps(scores + p, e);
        part = _mm256_add_ps(part, e);
    }
    if (p < n) { /* the last positions; the lanes past them give exp(-inf) = 0 */
        float x[8];
        for (int l = 0; l < 8; l++)
            x[l] = p + l < n ? scores[p + l] : -INFINITY;
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x), m));
        _mm256_storeu_ps(x, e);
        part = _mm256_add_ps(part, e);
        for (int l = 0; p + l < n; l++)
            scores[p + l] = x[l];
    }
    _mm256_storeu_ps(lanes, part);
    float sum = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) +
                ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
    const __m256 inv = _mm256_set1_ps(1.0f / sum);
    for (p = 0; p + 8 <= n; p += 8)
        _mm256_storeu_ps(scores + p, _mm256_mul_ps(_mm256_loadu_ps(scores + p), inv));
    for (; p < n; p++)
        scores[p] *= 1.0f / sum;
}

void ellm_attend_q8_0_group_avx2(const void *q8, const uint8_t *kc, const uint8_t *vc,
                                 size_t stride, int32_t n_pos, int32_t hd, float scale, float cap,
                                 int32_t n_heads, float *scores, float *out)
{
    int32_t nb = hd / QK8_0;
    if (nb > Q8_GROUP_MAX_BLOCKS) {
        ellm_attend_q8_0_group_portable(q8, kc, vc, stride, n_pos, hd, scale, cap, n_heads, scores,
                                        out);
        return;
    }
    const block_q8_0 *qb = q8;
    for (int32_t h0 = 0; h0 < n_heads; h0 += 8)
        q8_0_scores8(qb + (size_t)h0 * nb, nb, kc, stride, n_pos, scale, cap,
                     n_heads - h0 < 8 ? (int)(n_heads - h0) : 8, scores + (size_t)h0 * n_pos);
    for (int32_t h = 0; h < n_heads; h++) {
        softmax_q8_0_avx2(scores + (size_t)h * n_pos, n_pos);
        for (int32_t d = 0; d < hd; d++)
            out[(size_t)h * hd + d] = 0;
    }
    /* Each value block is widened to floats once for all the heads; per head and value the
     * portable sum's steps: out += (w * d_v) * q. */
    for (int32_t p = 0; p < n_pos; p++) {
        const block_q8_0 *vrow = (const block_q8_0 *)(vc + (size_t)p * stride);
        for (int32_t b = 0; b < nb; b++) {
            float dv = _cvtsh_ss(vrow[b].d);
            __m256 v[4];
            for (int c = 0; c < 4; c++)
                v[c] = _mm256_cvtepi32_ps(
                    _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(vrow[b].qs + 8 * c))));
            for (int32_t h = 0; h < n_heads; h++) {
                __m256 wd = _mm256_set1_ps(scores[(size_t)h * n_pos + p] * dv);
                float *o = out + (size_t)h * hd + (size_t)b * QK8_0;
                for (int c = 0; c < 4; c++)
                    _mm256_storeu_ps(o + 8 * c, _mm256_add_ps(_mm256_loadu_ps(o + 8 * c),
                                                              _mm256_mul_ps(wd, v[c])));
            }
        }
    }
}
#endif
