/* The wide F16-cache attention path (attention_avx2.c) for the query heads that share one KV head,
 * with 512-bit vectors (built with the AVX-512 flags; the caller checks the CPU first).
 *
 * One head's online softmax is a chain of dependent steps per position (the running maximum,
 * the running output), so a single head runs at the latency of that chain. The heads of a
 * grouped-query group read the same key and value rows: taking them together converts each row
 * once and gives the core several independent chains. Per head, every rounding step is the wide
 * path's (eight-lane FMA accumulators reduced (0+2)+(1+3), then halves and pairs; the running
 * output in F32 updated by fused multiply-adds; the same exponential, ellm_exp, here
 * 16 lanes at a time), so the results are bit-identical to ellm_attend_f16_f16c_wide. */
#include "quant/attention_kernels.h"

#if defined(ELLM_HAVE_F16C_ATTENTION)
#include <immintrin.h>
#include <math.h>
#include <stdbool.h>

#include "quant/attention_f16.inc" /* the softmax helper only (no ATTEND_F16 here) */

static inline __m512 round_to_half(__m512 v)
{
    return _mm512_cvtph_ps(_mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}

static inline __m512 load_half16(const uint16_t *p)
{
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}

/* The wide path reduces each position's four 8-lane accumulators as (0 + 2) + (1 + 3), then adds
 * the two 4-lane halves, then pairs (hadd twice). Given, per position, s = acc(0,1) + acc(2,3) as
 * one 16-lane vector, this does the same additions for 16 positions at once by transposing as it
 * goes, and returns the scores times scale in position order. */
static inline __m512 reduce16_like_wide(const __m512 *s, float scale)
{
    __m512 u[8], v[4], w[2];
    for (int j = 0; j < 8; j++) /* 256-bit halves: lanes 0-7 of position 2j, then of 2j + 1 */
        u[j] = _mm512_add_ps(_mm512_shuffle_f32x4(s[2 * j], s[2 * j + 1], 0x44),
                             _mm512_shuffle_f32x4(s[2 * j], s[2 * j + 1], 0xEE));
    for (int k = 0; k < 4; k++) /* 128-bit halves: 128-bit lane m is position 4k + m */
        v[k] = _mm512_add_ps(_mm512_shuffle_f32x4(u[2 * k], u[2 * k + 1], 0x88),
                             _mm512_shuffle_f32x4(u[2 * k], u[2 * k + 1], 0xDD));
    for (int m = 0; m < 2; m++) /* pairs (0 + 1), (2 + 3) of positions 8m + L and 8m + 4 + L */
        w[m] = _mm512_add_ps(_mm512_shuffle_ps(v[2 * m], v[2 * m + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_ps(v[2 * m], v[2 * m + 1], _MM_SHUFFLE(3, 1, 3, 1)));
    /* (0 + 1) + (2 + 3): lane 4L + k is position 4k + L */
    __m512 sums = _mm512_add_ps(_mm512_shuffle_ps(w[0], w[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                _mm512_shuffle_ps(w[0], w[1], _MM_SHUFFLE(3, 1, 3, 1)));
    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    return _mm512_mul_ps(_mm512_permutexvar_ps(order, sums), _mm512_set1_ps(scale));
}

/* The same reduction for one position. */
static inline float reduce_like_wide(__m512 s)
{
    __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(s),
                              _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(s), 1)));
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    h = _mm_hadd_ps(h, h);
    return _mm_cvtss_f32(_mm_hadd_ps(h, h));
}

/* ellm_exp in 16 lanes: the same operations in the same order. */
static inline __m512 exp16(__m512 x)
{
    __m512 n = _mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(x, _mm512_set1_ps(ELLM_EXP_LOG2E)),
                                           _mm512_set1_ps(ELLM_EXP_ROUNDER)),
                             _mm512_set1_ps(ELLM_EXP_ROUNDER));
    __m512 r = _mm512_sub_ps(x, _mm512_mul_ps(n, _mm512_set1_ps(ELLM_EXP_LN2_HI)));
    r = _mm512_sub_ps(r, _mm512_mul_ps(n, _mm512_set1_ps(ELLM_EXP_LN2_LO)));
    __m512 p = _mm512_add_ps(_mm512_mul_ps(_mm512_set1_ps(ELLM_EXP_P0), r),
                             _mm512_set1_ps(ELLM_EXP_P1));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(ELLM_EXP_P2));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(ELLM_EXP_P3));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(ELLM_EXP_P4));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(ELLM_EXP_P5));
    __m512 e = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(p, _mm512_mul_ps(r, r)), r),
                             _mm512_set1_ps(1.0f));
    /* Lanes below the floor give 0 (their n may be out of the exponent's range). */
    __mmask16 live = _mm512_cmp_ps_mask(x, _mm512_set1_ps(ELLM_EXP_FLOOR), _CMP_NLT_UQ);
    __m512i two_n = _mm512_slli_epi32(
        _mm512_add_epi32(_mm512_cvttps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_maskz_mul_ps(live, e, _mm512_castsi512_ps(two_n));
}

enum { POS_BLOCK = 32 }; /* positions whose scores and softmax weights are found together */
enum { REDUCE = 16 };    /* positions whose dot products are reduced together */

/* The running state of up to HEADS heads of head size HD (HEADS * HD at most 256 values): the
 * F16-rounded queries, the F32 running outputs, maxima and sums. */
typedef struct heads_state {
    float qr[256] __attribute__((aligned(64)));
    float acc[256] __attribute__((aligned(64)));
    float max[4], sum[4];
} heads_state;

static inline void heads_start(heads_state *st, const float *q, int n_heads, const int HD,
                               const int HEADS)
{
    for (int i = 0; i < HEADS; i++) {
        for (int c = 0; c < HD / 16; c++) {
            __m512 qr = i < n_heads ? round_to_half(_mm512_loadu_ps(q + i * HD + 16 * c))
                                    : _mm512_setzero_ps();
            _mm512_store_ps(&st->qr[i * HD + 16 * c], qr);
            _mm512_store_ps(&st->acc[i * HD + 16 * c], _mm512_setzero_ps());
        }
        st->max[i] = -INFINITY;
        st->sum[i] = 0;
    }
}

static inline void heads_finish(const heads_state *st, int n_heads, float *out, const int HD,
                                const int HEADS)
{
    for (int i = 0; i < n_heads && i < HEADS; i++) {
        __m512 inv = _mm512_set1_ps(1.0f / st->sum[i]);
        for (int c = 0; c < HD / 16; c++)
            _mm512_storeu_ps(out + i * HD + 16 * c,
                             _mm512_mul_ps(_mm512_load_ps(&st->acc[i * HD + 16 * c]), inv));
    }
}

/* n_heads (at most HEADS) heads over the np positions of one block (rows kc, vc on), their
 * queries and outputs in registers for the block: first every head's scores (vector dots, the
 * key row converted once), then the running maxima in a scalar pass and the exponential factors
 * in a vector one (they depend only on the scores), then the accumulator updates. The first
 * slice of heads over a block asks for the next block's rows (the others find them in L1). */
static inline void attend_block(heads_state *st, const uint8_t *kc, const uint8_t *vc,
                                size_t stride, int np, float scale, int n_heads, bool prefetch,
                                const int HD, const int HEADS)
{
    enum { MAX_CHUNKS = 8, MAX_HEADS = 4 }; /* HD / 16 and HEADS at most (HD 128, 4 heads) */
    const int chunks = HD / 16;
    __m512 qr[MAX_HEADS][MAX_CHUNKS], acc[MAX_HEADS][MAX_CHUNKS];
    float score[MAX_HEADS][POS_BLOCK], rescale[MAX_HEADS][POS_BLOCK], weight[MAX_HEADS][POS_BLOCK];
    __m512 dots[MAX_HEADS][POS_BLOCK];
    for (int i = 0; i < HEADS; i++)
        for (int c = 0; c < chunks; c++) {
            qr[i][c] = _mm512_load_ps(&st->qr[i * HD + 16 * c]);
            acc[i][c] = _mm512_load_ps(&st->acc[i * HD + 16 * c]);
        }
    for (int p = 0; p < np; p++) {
        const uint16_t *krow = (const uint16_t *)(kc + (size_t)p * stride);
        if (prefetch)
            ellm_attention_prefetch((const uint8_t *)krow, POS_BLOCK * stride, 2 * HD);
        __m512 k[MAX_CHUNKS];
        for (int c = 0; c < chunks; c++)
            k[c] = load_half16(krow + 16 * c);
        for (int i = 0; i < HEADS && i < n_heads; i++) {
            /* Chunks 2c and 2c + 1 are values 32c..32c+15 and 32c+16..32c+31: the wide
             * path's accumulators (0, 1) and (2, 3) for its step at 32c. */
            __m512 lo = _mm512_setzero_ps(), hi = _mm512_setzero_ps();
            for (int c = 0; c < chunks; c += 2) {
                lo = _mm512_fmadd_ps(k[c], qr[i][c], lo);
                hi = _mm512_fmadd_ps(k[c + 1], qr[i][c + 1], hi);
            }
            dots[i][p] = _mm512_add_ps(lo, hi);
        }
    }
    for (int i = 0; i < HEADS && i < n_heads; i++) {
        int p = 0;
        for (; p + REDUCE <= np; p += REDUCE)
            _mm512_storeu_ps(&score[i][p], reduce16_like_wide(&dots[i][p], scale));
        for (; p < np; p++)
            score[i][p] = reduce_like_wide(dots[i][p]) * scale;
    }
    /* The running maximum is a scalar chain; the exponentials of its differences are
     * independent, so they are taken 16 at a time after it. */
    for (int i = 0; i < HEADS && i < n_heads; i++) {
        attention_softmax_exponents(score[i], np, &st->max[i], rescale[i], weight[i]);
        for (int p = 0; p < np; p += 16) {
            __mmask16 m = np - p >= 16 ? 0xFFFF : (__mmask16)((1u << (np - p)) - 1);
            _mm512_mask_storeu_ps(&rescale[i][p], m,
                                  exp16(_mm512_maskz_loadu_ps(m, &rescale[i][p])));
            _mm512_mask_storeu_ps(&weight[i][p], m, exp16(_mm512_maskz_loadu_ps(m, &weight[i][p])));
        }
    }
    for (int p = 0; p < np; p++) {
        const uint16_t *vrow = (const uint16_t *)(vc + (size_t)p * stride);
        if (prefetch)
            ellm_attention_prefetch((const uint8_t *)vrow, POS_BLOCK * stride, 2 * HD);
        __m512 v[MAX_CHUNKS];
        for (int c = 0; c < chunks; c++)
            v[c] = load_half16(vrow + 16 * c);
        for (int i = 0; i < HEADS && i < n_heads; i++) {
            float old_scale = rescale[i][p], w = weight[i][p];
            if (old_scale != 1.0f) { /* a new maximum (a factor of exactly 1 changes nothing) */
                __m512 ms = _mm512_set1_ps(old_scale);
                for (int c = 0; c < chunks; c++)
                    acc[i][c] = _mm512_mul_ps(acc[i][c], ms);
            }
            __m512 ws = _mm512_set1_ps(w);
            for (int c = 0; c < chunks; c++)
                acc[i][c] = _mm512_fmadd_ps(v[c], ws, acc[i][c]);
            st->sum[i] = st->sum[i] * old_scale + w;
        }
    }
    for (int i = 0; i < HEADS; i++)
        for (int c = 0; c < chunks; c++)
            _mm512_store_ps(&st->acc[i * HD + 16 * c], acc[i][c]);
}

/* A group's heads in slices of HEADS (as many as keep their queries and outputs in the 32
 * registers), all slices over one block of rows before the next block: the rows are read from
 * memory once for the group, not once per slice. */
enum { SLICES = 4 }; /* slices one pass over the rows carries (16 heads of 64, 8 of 128) */

static inline void attend_group(const float *q, const uint8_t *kc, const uint8_t *vc, size_t stride,
                                int32_t n_pos, float scale, int32_t n_heads, float *out,
                                const int HD, const int HEADS)
{
    heads_state st[SLICES];
    for (int32_t h0 = 0; h0 < n_heads; h0 += SLICES * HEADS) {
        int32_t left = n_heads - h0;
        int n_slices = left < SLICES * HEADS ? (int)((left + HEADS - 1) / HEADS) : SLICES;
        for (int s = 0; s < n_slices; s++)
            heads_start(&st[s], q + (size_t)(h0 + s * HEADS) * HD,
                        (int)(left - s * HEADS < HEADS ? left - s * HEADS : HEADS), HD, HEADS);
        for (int32_t p0 = 0; p0 < n_pos; p0 += POS_BLOCK) {
            int np = n_pos - p0 < POS_BLOCK ? (int)(n_pos - p0) : POS_BLOCK;
            for (int s = 0; s < n_slices; s++)
                attend_block(&st[s], kc + (size_t)p0 * stride, vc + (size_t)p0 * stride, stride, np,
                             scale, (int)(left - s * HEADS < HEADS ? left - s * HEADS : HEADS),
                             s == 0, HD, HEADS);
        }
        for (int s = 0; s < n_slices; s++)
            heads_finish(&st[s], (int)(left - s * HEADS < HEADS ? left - s * HEADS : HEADS),
                         out + (size_t)(h0 + s * HEADS) * HD, HD, HEADS);
    }
}

void ellm_attend_f16_group_avx512(const float *q, const uint8_t *kc, const uint8_t *vc,
                                  size_t stride, int32_t n_pos, int32_t hd, float scale,
                                  int32_t n_heads, float *out)
{
    if (hd == 64)
        attend_group(q, kc, vc, stride, n_pos, scale, n_heads, out, 64, 4);
    else
        attend_group(q, kc, vc, stride, n_pos, scale, n_heads, out, 128, 2);
}
#endif
