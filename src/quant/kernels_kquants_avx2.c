/* AVX2 + FMA K-quant kernels against Q8_K activations, and the AVX2 Q8_K activation quantizer.
 *
 * Per super-block the integer part is exact (unsigned quants times signed activations with
 * maddubs, sub-block scales applied with madd, mins and Q6_K's -32 offset from the activation
 * bsums) and reduced to one integer, which is scaled to float and accumulated with the scalar
 * kernel's expression in its order: results are bit-identical to kernels_kquants_scalar.c, and
 * the tiles (gemm_kquants_avx2.c) need only the same integers, in any order. The x4 kernels
 * repeat exactly the single-row operations per activation row, sharing only the weight decoding. */
#include "quant/kernels.h"

#if defined(ELLM_HAVE_AVX2_KERNELS)
#include <immintrin.h>
#include <string.h>

#include "quant/blocks.h"
#include "quant/kquants.h"
#include "quant/lanes_avx2.h"
#include "quant/prefetch.h"
#include "quant/quant.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* The scales and mins of a Q4_K/Q5_K block, decoded once and shared by every activation row. */
typedef struct kq_meta {
    __m256i sc_twice[2]; /* s0 s0 s1 s1 s2 s2 s3 s3 and s4 s4 .. s7 s7 as int16, in both lanes */
    __m128i mins;        /* the 8 mins as int16 */
    __m256i mins_twice;  /* m0 m0 m1 m1 .. m7 m7 as int16, one per bsum */
} kq_meta;

/* The words byte i0, i0, i0 + 1, i0 + 1, .., i0 + 3, i0 + 3 of a 128-bit lane zero-extended to
 * int16: a shuffle picks each byte with a zero (index 0x80) in the high byte. */
static inline __m128i kq_word_pick(int i0)
{
    return _mm_setr_epi8((char)i0, -128, (char)i0, -128, (char)(i0 + 1), -128, (char)(i0 + 1), -128,
                         (char)(i0 + 2), -128, (char)(i0 + 2), -128, (char)(i0 + 3), -128,
                         (char)(i0 + 3), -128);
}

static inline void kq_decode_meta(const uint8_t *packed, kq_meta *m)
{
    /* The 12-byte layout as dwords u0, u1, u2: u0 holds scales 0-3 (+ top bits of scales 4-7), u1
     * mins 0-3 (+ top bits of mins 4-7), u2 the low nibbles of 4-7. Formed as [u0 & 0x3F..,
     * u2 & 0x0F.. | (u0 >> 2) & 0x30.., u1 & 0x3F.., (u2 >> 4) & 0x0F.. | (u1 >> 2) & 0x30..]:
     * scales 0-3, 4-7, mins 0-3, 4-7, in both 128-bit lanes, so that one in-lane shuffle each
     * picks the multiplier words (three lane-crossing zero-extensions did it 2-10 % slower in
     * cache). The broadcast load is a plain load; the packed bytes are followed by the quants,
     * so its 16 bytes stay inside the block. */
    __m256i u = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)packed));
    __m256i low = _mm256_srlv_epi32(_mm256_shuffle_epi32(u, _MM_SHUFFLE(2, 1, 2, 0)),
                                    _mm256_setr_epi32(0, 0, 0, 4, 0, 0, 0, 4));
    low = _mm256_and_si256(low, _mm256_setr_epi32(0x3F3F3F3F, 0x0F0F0F0F, 0x3F3F3F3F, 0x0F0F0F0F,
                                                  0x3F3F3F3F, 0x0F0F0F0F, 0x3F3F3F3F, 0x0F0F0F0F));
    __m256i top = _mm256_srli_epi32(_mm256_shuffle_epi32(u, _MM_SHUFFLE(1, 1, 0, 0)), 2);
    top = _mm256_and_si256(
        top, _mm256_setr_epi32(0, 0x30303030, 0, 0x30303030, 0, 0x30303030, 0, 0x30303030));
    __m256i v = _mm256_or_si256(low, top);
    m->sc_twice[0] = _mm256_shuffle_epi8(v, _mm256_set_m128i(kq_word_pick(0), kq_word_pick(0)));
    m->sc_twice[1] = _mm256_shuffle_epi8(v, _mm256_set_m128i(kq_word_pick(4), kq_word_pick(4)));
    m->mins = _mm_cvtepu8_epi16(_mm_srli_si128(_mm256_castsi256_si128(v), 8));
    m->mins_twice = _mm256_shuffle_epi8(v, _mm256_set_m128i(kq_word_pick(12), kq_word_pick(8)));
}

/* The 4-bit quants of a Q4_K block as 8 vectors of 32 unsigned bytes (chunk c: lo, hi). */
static inline void q4_K_unpack(const block_q4_K *b, __m256i q[8])
{
    const __m256i mask = _mm256_set1_epi8(0x0F);
    for (int c = 0; c < 4; c++) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(b->qs + 32 * c));
        q[2 * c] = _mm256_and_si256(v, mask);
        q[2 * c + 1] = _mm256_and_si256(_mm256_srli_epi16(v, 4), mask);
    }
}

/* Bit b of every byte of v moved to bit 4 (16 where it is set, 0 elsewhere). A 16-bit shift
 * carries bits over from the neighbouring byte, but only into positions the mask clears. */
static inline __m256i bit_to_sixteen(__m256i v, int b)
{
    __m256i moved = b >= 4 ? _mm256_srli_epi16(v, b - 4) : _mm256_slli_epi16(v, 4 - b);
    return _mm256_and_si256(moved, _mm256_set1_epi8(0x10));
}

static inline void q5_K_unpack(const block_q5_K *b, __m256i q[8])
{
    const __m256i mask = _mm256_set1_epi8(0x0F);
    __m256i qh = _mm256_loadu_si256((const __m256i *)b->qh);
    for (int c = 0; c < 4; c++) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(b->qs + 32 * c));
        q[2 * c] = _mm256_or_si256(_mm256_and_si256(v, mask), bit_to_sixteen(qh, 2 * c));
        q[2 * c + 1] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), mask),
                                       bit_to_sixteen(qh, 2 * c + 1));
    }
}

/* The scaled quants' integer sum of a Q4_K/Q5_K block, in eight lanes. A maddubs of a 32-value
 * sub-block is at most 2 * 15 * 128 = 3840 per int16 slot, so two rounds of pair sums (four
 * sub-blocks per vector, two slots each, |sum| <= 15360) fit int16 and one madd scales them. */
static inline __m256i kq_block_isum(const __m256i q[8], const kq_meta *m, const block_q8_K *a)
{
    __m256i isum = _mm256_setzero_si256();
    for (int half = 0; half < 2; half++) {
        __m256i p[4];
        for (int k = 0; k < 4; k++) {
            int j = 4 * half + k; /* sub-block: chunk j / 2, low nibbles if even */
            p[k] = _mm256_maddubs_epi16(q[j],
                                        _mm256_loadu_si256((const __m256i *)(a->qs + 32 * j)));
        }
        __m256i sums = _mm256_hadd_epi16(_mm256_hadd_epi16(p[0], p[1]),
                                         _mm256_hadd_epi16(p[2], p[3]));
        isum = _mm256_add_epi32(isum, _mm256_madd_epi16(sums, m->sc_twice[half]));
    }
    return isum;
}

static inline kquant_part kq_block_part(const __m256i q[8], const kq_meta *m, const block_q8_K *a)
{
    __m256i isum = kq_block_isum(q, m, a);
    /* Pairs of bsums -> the 8 sub-block sums (int16 is enough: |sum| <= 32 * 128). */
    __m256i b = _mm256_loadu_si256((const __m256i *)a->bsums);
    __m128i pair = _mm_hadd_epi16(_mm256_castsi256_si128(b), _mm256_extracti128_si256(b, 1));
    return (kquant_part){
        _mm_add_epi32(_mm256_castsi256_si128(isum), _mm256_extracti128_si256(isum, 1)),
        _mm_madd_epi16(m->mins, pair)};
}

/* A Q4_K or Q5_K block's scales and mins (*m) and quants (q); both formats begin with d, dmin
 * and the packed scales. */
ALWAYS_INLINE void kq_unpack_block(bool q5, const uint8_t *blk, kq_meta *m, __m256i q[8])
{
    kq_decode_meta(((const block_q4_K *)blk)->scales, m);
    if (q5)
        q5_K_unpack((const block_q5_K *)blk, q);
    else
        q4_K_unpack((const block_q4_K *)blk, q);
}

/* Q4_K or Q5_K rows against n_x activation rows, super-blocks in pairs. Both formats begin with
 * d, dmin and the packed scales. */
ALWAYS_INLINE void kq_dot(bool q5, int64_t n, float *out, const void *row,
                          const block_q8_K *const *x, int n_x)
{
    size_t block_bytes = q5 ? sizeof(block_q5_K) : sizeof(block_q4_K);
    int64_t nb = n / QK_K;
    __m128 sum[4];
    for (int t = 0; t < n_x; t++)
        sum[t] = _mm_setzero_ps();
    for (int64_t i = 0; i < nb; i += 2) {
        int n_blocks = i + 1 < nb ? 2 : 1;
        kquant_part part[2][4];
        uint32_t d_dmin[2];
        for (int k = 0; k < n_blocks; k++) {
            const uint8_t *blk = (const uint8_t *)row + (size_t)(i + k) * block_bytes;
            if (n_x == 1)
                ellm_prefetch_ahead(blk, (int)block_bytes);
            kq_meta m;
            __m256i q[8];
            kq_unpack_block(q5, blk, &m, q);
            memcpy(&d_dmin[k], blk, 4);
            for (int t = 0; t < n_x; t++)
                part[k][t] = kq_block_part(q, &m, x[t] + i + k);
        }
        __m128 dd = _mm_cvtph_ps(_mm_setr_epi32((int)d_dmin[0], (int)d_dmin[n_blocks - 1], 0, 0));
        for (int t = 0; t < n_x; t++)
            sum[t] = kquant_add_blocks_min(sum[t], part[0][t], part[n_blocks - 1][t], dd, x[t][i].d,
                                           x[t][i + n_blocks - 1].d, n_blocks == 2);
    }
    for (int t = 0; t < n_x; t++)
        out[t] = _mm_cvtss_f32(sum[t]);
}

/* The pair reductions of super-blocks 2p and 2p + 1 of a group of count blocks (see
 * lane_totals_of_pairs): the scaled quants' sums in isum_pairs[p], the min terms' in
 * msum_pairs[p]; a block at or past count is +0 and is not read. The pair's bytes are prefetched
 * together (Q4_K: five requests for 288 bytes, where each block's 144 took three). */
ALWAYS_INLINE void kq_pair_sums(bool q5, const uint8_t *blocks, const block_q8_K *a, int p,
                                int count, __m256i isum_pairs[4], __m256i msum_pairs[4])
{
    size_t block_bytes = q5 ? sizeof(block_q5_K) : sizeof(block_q4_K);
    __m256i isum[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
    __m256i msum[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
    if (2 * p < count)
        ellm_prefetch_ahead(blocks + (size_t)(2 * p) * block_bytes, 2 * (int)block_bytes);
    for (int k = 0; k < 2; k++) {
        if (2 * p + k >= count)
            break;
        const uint8_t *blk = blocks + (size_t)(2 * p + k) * block_bytes;
        kq_meta m;
        __m256i q[8];
        kq_unpack_block(q5, blk, &m, q);
        isum[k] = kq_block_isum(q, &m, &a[2 * p + k]);
        msum[k] = _mm256_madd_epi16(m.mins_twice,
                                    _mm256_loadu_si256((const __m256i *)a[2 * p + k].bsums));
    }
    isum_pairs[p] = _mm256_hadd_epi32(isum[0], isum[1]);
    msum_pairs[p] = _mm256_hadd_epi32(msum[0], msum[1]);
}

/* The terms of count (at most 8) Q4_K or Q5_K super-blocks against one activation row (lane b:
 * block b, +0 past count), given the activation blocks' scales. The four pairs are written out,
 * as q2_K_group_terms's are: as a loop over the blocks GCC kept it rolled, with a parity test
 * and the loop's bookkeeping in every block. */
ALWAYS_INLINE __m256 kq_group_terms(bool q5, const uint8_t *blocks, const block_q8_K *a,
                                    __m256 act_scales, int count)
{
    size_t block_bytes = q5 ? sizeof(block_q5_K) : sizeof(block_q4_K);
    __m256i isum_pairs[4], msum_pairs[4];
    kq_pair_sums(q5, blocks, a, 0, count, isum_pairs, msum_pairs);
    kq_pair_sums(q5, blocks, a, 1, count, isum_pairs, msum_pairs);
    kq_pair_sums(q5, blocks, a, 2, count, isum_pairs, msum_pairs);
    kq_pair_sums(q5, blocks, a, 3, count, isum_pairs, msum_pairs);
    return kquant_terms_min(lane_totals_of_pairs(isum_pairs), lane_totals_of_pairs(msum_pairs),
                            kquant_block_words(blocks, block_bytes, count), act_scales);
}

/* One row a group at a time, a last partial group (22 blocks: tinyllama's FFN down rows) as a
 * group of fewer blocks. Until session 24 such rows took kq_dot's pairs, with a float tail every
 * pair: 45 % more instructions a block than whole groups (a partial group had run at 0.6 of the
 * pairs from memory when groups were read group after group over the rows; read row after row
 * it does not, docs/performance.md, session 24). */
ALWAYS_INLINE void kq_dot_row(bool q5, int64_t n, float *out, const void *row, const block_q8_K *a)
{
    size_t block_bytes = q5 ? sizeof(block_q5_K) : sizeof(block_q4_K);
    int64_t nb = n / QK_K, i = 0;
    float sum = 0;
    for (; i + 8 <= nb; i += 8)
        sum = add_lanes_in_order(sum,
                                 kq_group_terms(q5, (const uint8_t *)row + (size_t)i * block_bytes,
                                                a + i, kquant_act_scales(a + i, 8), 8));
    if (i < nb) {
        int count = (int)(nb - i);
        sum = add_lanes_in_order(sum,
                                 kq_group_terms(q5, (const uint8_t *)row + (size_t)i * block_bytes,
                                                a + i, kquant_act_scales(a + i, count), count));
    }
    *out = sum;
}

/* ELLM_DOT_ROWS rows a group at a time, as q6_K's and q2_K's rows go (the attention and FFN
 * gate/up rows of 2048 columns are one group): each row's terms by kq_dot_row's code, the group's
 * activation scales gathered once for the rows, and the rows' terms added eight rows an
 * addition. */
ALWAYS_INLINE void kq_rows(bool q5, int64_t n, float *out, const void *rows, size_t row_bytes,
                           const block_q8_K *a)
{
    int64_t nb = n / QK_K;
    if (q5)
        ELLM_ADD_ROWS_BY_GROUPS(block_q5_K, nb, out, rows, row_bytes, a,
                                kq_group_terms(true, (const uint8_t *)w, at, scales, count));
    else
        ELLM_ADD_ROWS_BY_GROUPS(block_q4_K, nb, out, rows, row_bytes, a,
                                kq_group_terms(false, (const uint8_t *)w, at, scales, count));
}

void ellm_vec_dot_q4_K_avx2(int64_t n, float *out, const void *row, const void *x)
{
    kq_dot_row(false, n, out, row, x);
}

void ellm_vec_dot_q4_K_rows_avx2(int64_t n, float *out, const void *rows, size_t row_bytes,
                                 const void *x)
{
    kq_rows(false, n, out, rows, row_bytes, x);
}

void ellm_vec_dot_q4_K_x4_avx2(int64_t n, float *out, const void *row, const void *const *x)
{
    kq_dot(false, n, out, row, (const block_q8_K *const *)x, 4);
}

void ellm_vec_dot_q5_K_avx2(int64_t n, float *out, const void *row, const void *x)
{
    kq_dot_row(true, n, out, row, x);
}

void ellm_vec_dot_q5_K_rows_avx2(int64_t n, float *out, const void *rows, size_t row_bytes,
                                 const void *x)
{
    kq_rows(true, n, out, rows, row_bytes, x);
}

void ellm_vec_dot_q5_K_x4_avx2(int64_t n, float *out, const void *row, const void *const *x)
{
    kq_dot(true, n, out, row, (const block_q8_K *const *)x, 4);
}

/* Word picks for a Q6_K step pair (see q6_K_unpack): words w, w + 2 four times each in the low
 * lane, w + 1, w + 3 in the high one. */
static inline __m256i q6_K_pair_pick(int w)
{
    __m128i lo = _mm_setr_epi8((char)(2 * w), (char)(2 * w + 1), (char)(2 * w), (char)(2 * w + 1),
                               (char)(2 * w), (char)(2 * w + 1), (char)(2 * w), (char)(2 * w + 1),
                               (char)(2 * w + 4), (char)(2 * w + 5), (char)(2 * w + 4),
                               (char)(2 * w + 5), (char)(2 * w + 4), (char)(2 * w + 5),
                               (char)(2 * w + 4), (char)(2 * w + 5));
    return _mm256_set_m128i(_mm_add_epi8(lo, _mm_set1_epi8(2)), lo);
}

/* The 6-bit quants (0..63) of half h of a Q6_K block as 4 vectors of 32 bytes, in value order
 * (vector k covers sub-blocks 8h + 2k in its low 128 bits and 8h + 2k + 1 in its high ones). */
ALWAYS_INLINE void q6_K_unpack_half(const block_q6_K *b, int h, __m256i q[4])
{
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    __m256i l0 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h));
    __m256i l1 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h + 32));
    __m256i hb = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * h));
    __m256i low[4] = {_mm256_and_si256(l0, m4), _mm256_and_si256(l1, m4),
                      _mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                      _mm256_and_si256(_mm256_srli_epi16(l1, 4), m4)};
    /* Bits 2k, 2k + 1 of hb moved to bits 4, 5 (16-bit shifts: what crosses from the
     * neighbouring byte lands where the mask clears). */
    __m256i top[4] = {_mm256_slli_epi16(hb, 4), _mm256_slli_epi16(hb, 2), hb,
                      _mm256_srli_epi16(hb, 2)};
    for (int k = 0; k < 4; k++)
        q[k] = _mm256_or_si256(low[k], _mm256_and_si256(top[k], m30));
}

/* The scale multipliers of a Q6_K block's step pairs: the pair sums of steps 2m and 2m + 1
 * (hadd) hold sub-blocks 4m and 4m + 2 in the low lane, 4m + 1 and 4m + 3 in the high one, four
 * int16 slots each. */
ALWAYS_INLINE void q6_K_pair_scales(const block_q6_K *b, __m256i sc[4])
{
    __m256i s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)b->scales));
    __m256i first = _mm256_permute2x128_si256(s16, s16, 0x00);  /* s0..7 | s0..7 */
    __m256i second = _mm256_permute2x128_si256(s16, s16, 0x11); /* s8..15 | s8..15 */
    for (int m = 0; m < 4; m++)
        sc[m] = _mm256_shuffle_epi8(m < 2 ? first : second, q6_K_pair_pick(4 * m % 8));
}

/* The whole block's quants (q6_K_unpack_half's vectors of both halves) and step-pair scales. */
static inline void q6_K_unpack(const block_q6_K *b, __m256i q[8], __m256i sc[4])
{
    q6_K_unpack_half(b, 0, q);
    q6_K_unpack_half(b, 1, q + 4);
    q6_K_pair_scales(b, sc);
}

/* The scaled integer sum of steps 2h and 2h + 1 (half h's quants q) against activation block a. */
ALWAYS_INLINE __m256i q6_K_half_isum(const __m256i q[4], const __m256i sc[4], int h,
                                     const block_q8_K *a)
{
    __m256i isum = _mm256_setzero_si256();
    for (int m = 2 * h; m < 2 * h + 2; m++) {
        __m256i p[2];
        for (int k = 0; k < 2; k++)
            p[k] = _mm256_maddubs_epi16(
                q[2 * (m - 2 * h) + k],
                _mm256_loadu_si256((const __m256i *)(a->qs + 64 * m + 32 * k)));
        /* |maddubs| <= 2 * 63 * 128 = 16128: one round of pair sums fits int16. */
        isum = _mm256_add_epi32(isum, _mm256_madd_epi16(_mm256_hadd_epi16(p[0], p[1]), sc[m]));
    }
    return isum;
}

/* The -32 offset of every quant of a block (scales sc16) against activation block a. */
ALWAYS_INLINE __m256i q6_K_offset(__m256i sc16, const block_q8_K *a)
{
    __m256i off = _mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)a->bsums));
    return _mm256_slli_epi32(off, 5);
}

/* Exact integer sum of one Q6_K block against one activation block (the -32 offset included). */
static inline __m256i q6_K_block_isum(const __m256i q[8], const __m256i sc[4], __m256i sc16,
                                      const block_q8_K *a)
{
    __m256i isum = _mm256_add_epi32(q6_K_half_isum(q, sc, 0, a), q6_K_half_isum(q + 4, sc, 1, a));
    return _mm256_sub_epi32(isum, q6_K_offset(sc16, a));
}

ALWAYS_INLINE void q6_K_dot(int64_t n, float *out, const void *row, const block_q8_K *const *x,
                            int n_x)
{
    const block_q6_K *w = row;
    int64_t nb = n / QK_K;
    __m128 sum[4];
    for (int t = 0; t < n_x; t++)
        sum[t] = _mm_setzero_ps();
    for (int64_t i = 0; i < nb; i += 2) {
        int n_blocks = i + 1 < nb ? 2 : 1;
        __m256i isum[2][4];
        for (int k = 0; k < n_blocks; k++) {
            __m256i q[8], sc[4];
            if (n_x == 1)
                ellm_prefetch_ahead(&w[i + k], (int)sizeof *w);
            q6_K_unpack(&w[i + k], q, sc);
            __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)w[i + k].scales));
            for (int t = 0; t < n_x; t++)
                isum[k][t] = q6_K_block_isum(q, sc, sc16, x[t] + i + k);
        }
        __m128 d = kquant_halves(w[i].d, w[i + n_blocks - 1].d);
        for (int t = 0; t < n_x; t++)
            sum[t] = kquant_add_blocks(sum[t], isum[0][t], isum[n_blocks - 1][t], d, x[t][i].d,
                                       x[t][i + n_blocks - 1].d, n_blocks == 2);
    }
    for (int t = 0; t < n_x; t++)
        out[t] = _mm_cvtss_f32(sum[t]);
}

/* q6_K_block_isum's sum with each half's quants unpacked just before their products: four
 * vectors of quants live instead of eight, so the rows kernel spills half as many vectors as
 * with the whole block unpacked first (docs/performance.md, session 24: 4 % fewer instructions). */
ALWAYS_INLINE __m256i q6_K_isum_by_halves(const block_q6_K *b, const block_q8_K *a)
{
    __m256i q[4], sc[4];
    q6_K_pair_scales(b, sc);
    q6_K_unpack_half(b, 0, q);
    __m256i isum = q6_K_half_isum(q, sc, 0, a);
    q6_K_unpack_half(b, 1, q);
    isum = _mm256_add_epi32(isum, q6_K_half_isum(q, sc, 1, a));
    __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)b->scales));
    return _mm256_sub_epi32(isum, q6_K_offset(sc16, a));
}

/* The pair reduction of super-blocks 2p and 2p + 1 of a group of count blocks (their bytes
 * prefetched together); a block at or past count is +0, unread. */
ALWAYS_INLINE __m256i q6_K_pair_sums(const block_q6_K *w, const block_q8_K *a, int p, int count)
{
    __m256i isum[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
    for (int k = 0; k < 2 && 2 * p + k < count; k++) {
        if (k == 0)
            ellm_prefetch_ahead(&w[2 * p], 2 * (int)sizeof *w);
        isum[k] = q6_K_isum_by_halves(&w[2 * p + k], &a[2 * p + k]);
    }
    return _mm256_hadd_epi32(isum[0], isum[1]);
}

/* The terms of count (at most 8) Q6_K super-blocks against one activation row (lane b: block b,
 * +0 past count), given the activation blocks' scales. The four pairs are written out: as a loop
 * over the blocks with a parity test GCC kept it rolled, its index arithmetic and the pair sums
 * through memory about 8 instructions a block (docs/performance.md, session 24). */
ALWAYS_INLINE __m256 q6_K_group_terms(const block_q6_K *w, const block_q8_K *a, __m256 act_scales,
                                      int count)
{
    __m256i pairs[4] = {q6_K_pair_sums(w, a, 0, count), q6_K_pair_sums(w, a, 1, count),
                        q6_K_pair_sums(w, a, 2, count), q6_K_pair_sums(w, a, 3, count)};
    __m128i d = kquant_block_halves((const uint8_t *)&w[0].d, sizeof *w, count);
    return kquant_terms(lane_totals_of_pairs(pairs), d, act_scales);
}

/* One row a group at a time, a last partial group (the FFN down rows of 5632 columns) as a group
 * of fewer blocks, as kq_dot_row takes Q4_K's. */
ALWAYS_INLINE void q6_K_row(int64_t n, float *out, const void *row, const void *x)
{
    const block_q6_K *w = row;
    const block_q8_K *a = x;
    int64_t nb = n / QK_K, i = 0;
    float sum = 0;
    for (; i + 8 <= nb; i += 8)
        sum = add_lanes_in_order(sum,
                                 q6_K_group_terms(w + i, a + i, kquant_act_scales(a + i, 8), 8));
    if (i < nb) {
        int count = (int)(nb - i);
        sum = add_lanes_in_order(
            sum, q6_K_group_terms(w + i, a + i, kquant_act_scales(a + i, count), count));
    }
    *out = sum;
}

void ellm_vec_dot_q6_K_avx2(int64_t n, float *out, const void *row, const void *x)
{
    q6_K_row(n, out, row, x);
}

/* ELLM_DOT_ROWS rows a group at a time, as q2_K_rows takes them (the output head's rows,
 * 2048-4096 columns, are one to two groups): each row's terms by q6_K_row's code, the group's
 * activation scales gathered once for the rows, and the rows' terms added eight rows an addition
 * (add_rows_lanes_in_order). */
void ellm_vec_dot_q6_K_rows_avx2(int64_t n, float *out, const void *rows, size_t row_bytes,
                                 const void *x)
{
    const block_q8_K *a = x;
    int64_t nb = n / QK_K;
    ELLM_ADD_ROWS_BY_GROUPS(block_q6_K, nb, out, rows, row_bytes, a,
                            q6_K_group_terms(w, at, scales, count));
}

void ellm_vec_dot_q6_K_x4_avx2(int64_t n, float *out, const void *row, const void *const *x)
{
    q6_K_dot(n, out, row, (const block_q8_K *const *)x, 4);
}

/* The first of the block's 256 values whose magnitude is am (the block has one): eight values a
 * compare. The scalar search took about a third of the quantizer's instructions, and a decode
 * step quantizes on the dispatching thread alone, while the other threads wait. */
static inline float first_of_magnitude(const float *xb, __m256 sign_mask, __m256 am)
{
    for (int k = 0; k < QK_K; k += 8) {
        __m256 magnitude = _mm256_andnot_ps(sign_mask, _mm256_loadu_ps(xb + k));
        int equal = _mm256_movemask_ps(_mm256_cmp_ps(magnitude, am, _CMP_EQ_OQ));
        if (equal)
            return xb[k + __builtin_ctz((unsigned)equal)];
    }
    return 0;
}

/* Q8_K with the reference quantizer's exact arithmetic: the first value of largest magnitude
 * maps to -128 (scale -128 / max), values are rounded half to even like nearbyintf in the
 * default rounding mode, 127 clamps the other side, and bsums are the sums of the stored bytes. */
void ellm_quantize_row_q8_K_avx2(const float *x, void *dst, int64_t n)
{
    block_q8_K *b = dst;
    const __m256 sign_mask = _mm256_set1_ps(-0.0f);
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float *xb = x + i * QK_K;
        __m256 amax = _mm256_setzero_ps();
        for (int k = 0; k < QK_K; k += 8)
            amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign_mask, _mm256_loadu_ps(xb + k)));
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        float am = _mm_cvtss_f32(m);
        if (!(am > 0)) {
            memset(&b[i], 0, sizeof b[i]);
            continue;
        }
        float max = first_of_magnitude(xb, sign_mask, _mm256_set1_ps(am));
        float iscale = -128.0f / max;
        const __m256 vs = _mm256_set1_ps(iscale);
        for (int k = 0; k < QK_K; k += 64) {
            __m256i pair_sums[4];
            for (int half = 0; half < 2; half++) {
                const float *xk = xb + k + 32 * half;
                __m256i v[4];
                /* cvtps rounds in the MXCSR mode, as nearbyintf does; only +128 exceeds 127 (the
                 * largest magnitude maps to -128), so the clamp waits for 16-bit lanes, after
                 * packs_epi32, which cannot saturate values of magnitude 128 or less. */
                for (int u = 0; u < 4; u++)
                    v[u] = _mm256_cvtps_epi32(_mm256_mul_ps(vs, _mm256_loadu_ps(xk + 8 * u)));
                /* packs interleave 128-bit lanes; the permutes restore value order. */
                const __m256i top = _mm256_set1_epi16(127);
                __m256i a16 = _mm256_min_epi16(
                    _mm256_permute4x64_epi64(_mm256_packs_epi32(v[0], v[1]), 0xD8), top);
                __m256i b16 = _mm256_min_epi16(
                    _mm256_permute4x64_epi64(_mm256_packs_epi32(v[2], v[3]), 0xD8), top);
                __m256i q8 = _mm256_permute4x64_epi64(_mm256_packs_epi16(a16, b16), 0xD8);
                _mm256_storeu_si256((__m256i *)(b[i].qs + k + 32 * half), q8);
                pair_sums[2 * half] = _mm256_madd_epi16(a16, _mm256_set1_epi16(1));
                pair_sums[2 * half + 1] = _mm256_madd_epi16(b16, _mm256_set1_epi16(1));
            }
            /* Four groups of 16 values: each 128-bit half of quads holds the groups' sums of
             * values 0-7 (low half) and 8-15 (high half) of each group, in group order. */
            __m256i quads = _mm256_hadd_epi32(_mm256_hadd_epi32(pair_sums[0], pair_sums[1]),
                                              _mm256_hadd_epi32(pair_sums[2], pair_sums[3]));
            __m128i sums = _mm_add_epi32(_mm256_castsi256_si128(quads),
                                         _mm256_extracti128_si256(quads, 1));
            _mm_storel_epi64((__m128i *)(b[i].bsums + k / 16), _mm_packs_epi32(sums, sums));
        }
        b[i].d = 1.0f / iscale;
    }
}
#endif
