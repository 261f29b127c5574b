/* AVX-512 (F/BW/VL/DQ) + VNNI K-quant kernels against Q8_K activations, bit-identical to the
 * scalar kernels.
 *
 * Integer part, exact: dpbusd multiplies the unsigned quants by the signed activations four at a
 * time into int32 lanes whose values stay within int16 (at most 4 * 63 * 128), so two chunks'
 * lanes pack losslessly into int16 pairs and one madd/dpwssd applies both chunks' sub-block
 * scales. The mins and Q6_K's -32 offset come from the activation bsums as in the scalar kernels.
 * Integer addition is exact in any order, so only the float tail decides bit-identity: per
 * super-block it is the scalar kernel's (a.d * d) * (float)sumi [- (a.d * dmin) * (float)summ],
 * evaluated lane-wise (the same IEEE operations on the same operands), and the terms are added
 * to one running sum in super-block order. That needs the multiplies and subtractions to stay
 * separate: the project's -std=c11 turns GCC's FP contraction off; a GNU-mode build with
 * -ffp-contract=fast could fuse them into FMAs and break the equality.
 *
 * Throughput is bound by the two vector ports left when 512-bit code runs, so the kernels work
 * on pairs of super-blocks: the horizontal reductions and the float tail of both run once in
 * shared vectors. The x4 kernels decode each pair of weight super-blocks once and run the same
 * per-row code for each activation row, so they equal four single calls exactly.
 *
 * The single-row decode steps ask for their weights ellm_prefetch_ahead's 2 KB ahead into L1, as
 * the AVX2 rows do: the hardware prefetchers alone left one core at 0.64-0.82 of a streaming read
 * from 2 MiB pages, with the requests 0.85-0.96 (session 10, docs/performance.md). Session 6 had
 * measured ellm_prefetch_stream (L2 4 KB and L1 1 KB ahead) in the steps 20-35 % slower on its
 * machine; the x4 kernels keep that one. */
#include "quant/kernels.h"

#if defined(ELLM_HAVE_AVX2_KERNELS)
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "quant/blocks.h"
#include "quant/kquants.h"
#include "quant/lanes_avx2.h"
#include "quant/lanes_avx512.h"
#include "quant/prefetch.h"
#include "quant/quant.h"

/* ---- Shared integer machinery --------------------------------------------------------------- */

/* One 64-value chunk of quants against the matching 64 activations: 16 int32 lanes, each the
 * exact sum of four products. */
static inline __m512i dot_u8_s8(__m512i q, const int8_t *y)
{
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), q, _mm512_loadu_si512(y));
}

/* The scaled integer sum of one super-block in 16 int32 lanes. packs puts 128-bit lane L of two
 * chunks side by side: dwords 0-1 hold lane L of the first chunk, dwords 2-3 lane L of the
 * second, so the scale vectors carry, per 128-bit lane, the first chunk's sub-block scale twice
 * and then the second's twice, as [s, s] int16 pairs. */
static inline __m512i scaled_sum(const __m512i q[4], __m512i scale01, __m512i scale23,
                                 const int8_t *y)
{
    __m512i p01 = _mm512_packs_epi32(dot_u8_s8(q[0], y), dot_u8_s8(q[1], y + 64));
    __m512i p23 = _mm512_packs_epi32(dot_u8_s8(q[2], y + 128), dot_u8_s8(q[3], y + 192));
    return _mm512_dpwssd_epi32(_mm512_madd_epi16(p01, scale01), p23, scale23);
}

/* Two super-blocks' 16-lane sums folded to 8 lanes each: the first block in lanes 0-7, the
 * second in lanes 8-15. */
static inline __m512i fold_pair(__m512i first, __m512i second)
{
    return _mm512_add_epi32(_mm512_mask_blend_epi64(0xF0, first, second),
                            _mm512_shuffle_i64x2(first, second, _MM_SHUFFLE(1, 0, 3, 2)));
}

/* What a decode step needs besides the weight row: the activation row and its length in
 * super-blocks. */
typedef struct q8_K_row {
    const block_q8_K *a;
    int64_t nb;
} q8_K_row;

/* A type's single-row kernel from type##_step, which adds super-blocks i .. i + per - 1 (those
 * that exist) to the running sum. */
#define Q8_K_ROW_KERNEL(type, per)                                                                 \
    void ellm_vec_dot_##type##_avx512(int64_t n, float *out, const void *row, const void *x)       \
    {                                                                                              \
        const q8_K_row act = {x, n / QK_K};                                                        \
        float sum = 0;                                                                             \
        for (int64_t i = 0; i < act.nb; i += (per))                                                \
            sum = type##_step(&act, row, i, sum);                                                  \
        *out = sum;                                                                                \
    }

/* A single-row kernel on a type's own activation layout (act_t) from type##_pair_step, which
 * adds super-blocks i and j = i + 1 (j = i when i is the last) to the running sum. */
#define PAIR_ROW_KERNEL(type, block_t, act_t)                                                      \
    void ellm_vec_dot_##type##_avx512(int64_t n, float *out, const void *row, const void *x)       \
    {                                                                                              \
        const int64_t nb = n / QK_K;                                                               \
        float sum = 0;                                                                             \
        /* whole pairs, then an odd last block alone: j = i + 1 known in the loop drops the      \
         * clamp and the test in the float tail from every step */ \
        int64_t i = 0;                                                                             \
        for (; i + 1 < nb; i += 2)                                                                 \
            sum = type##_pair_step((const block_t *)row, (const act_t *)x, i, i + 1, sum);         \
        if (i < nb)                                                                                \
            sum = type##_pair_step((const block_t *)row, (const act_t *)x, i, i, sum);             \
        *out = sum;                                                                                \
    }

/* ---- Q4_K and Q5_K ------------------------------------------------------------------------- */

/* Two consecutive Q4_K/Q5_K super-blocks decoded for any number of activation rows. Quant chunk
 * c of a block holds values 64c .. 64c+63 in order: sub-block 2c in its low 256 bits, 2c+1 in
 * the high 256. */
typedef struct kq45_pair {
    __m512i q[2][4];
    __m512i scale[2][2]; /* per block: the scales of chunks 0-1 and 2-3 in scaled_sum's layout */
    __m512i min_pairs;   /* int16 lanes 2j, 2j+1 = min j; block 0 in the low 256 bits */
    __m128 d;            /* d, dmin of block 0, d, dmin of block 1 */
} kq45_pair;

/* The 12-byte scale/min fields of two blocks unpacked to 16 bytes each (scales 0-7, mins 0-7),
 * block 0 in the low 128 bits. With the 12 bytes as dwords u0, u1, u2: scales 0-3 = u0 & 0x3F..,
 * scales 4-7 = (u2 & 0x0F..) | ((u0 >> 2) & 0x30..), mins 0-3 = u1 & 0x3F.., mins 4-7 =
 * ((u2 >> 4) & 0x0F..) | ((u1 >> 2) & 0x30..). The 16-byte loads stay inside the blocks. */
static inline __m256i kq45_unpack_scales(const uint8_t *first, const uint8_t *second)
{
    __m256i raw = _mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)first)),
        _mm_loadu_si128((const __m128i *)second), 1);
    __m256i low = _mm256_srlv_epi32(_mm256_shuffle_epi32(raw, _MM_SHUFFLE(2, 1, 2, 0)),
                                    _mm256_setr_epi32(0, 0, 0, 4, 0, 0, 0, 4));
    __m256i top = _mm256_and_si256(
        _mm256_srli_epi32(_mm256_shuffle_epi32(raw, _MM_SHUFFLE(1, 1, 0, 0)), 2),
        _mm256_setr_epi32(0, 0x30303030, 0, 0x30303030, 0, 0x30303030, 0, 0x30303030));
    const __m256i low_mask = _mm256_setr_epi32(0x3F3F3F3F, 0x0F0F0F0F, 0x3F3F3F3F, 0x0F0F0F0F,
                                               0x3F3F3F3F, 0x0F0F0F0F, 0x3F3F3F3F, 0x0F0F0F0F);
    return _mm256_ternarylogic_epi32(low, top, low_mask, 0xEC); /* (low & mask) | top */
}

static inline void kq45_decode_meta(const uint8_t *scales0, const uint8_t *scales1,
                                    const uint16_t *d0, const uint16_t *d1, kq45_pair *p)
{
    /* Word 16b + j is block b's scale j, word 16b + 8 + j its min j. */
    __m512i words = _mm512_cvtepu8_epi16(kq45_unpack_scales(scales0, scales1));
    /* Chunks 0-1 packed: 128-bit lane L takes sub-block L / 2, then 2 + L / 2 (see scaled_sum),
     * as [s, s] pairs; chunks 2-3 the same four sub-blocks later. */
    const __m512i pick01 = _mm512_setr_epi32(
        0, 0, 2 * 0x10001, 2 * 0x10001, 0, 0, 2 * 0x10001, 2 * 0x10001, 0x10001, 0x10001,
        3 * 0x10001, 3 * 0x10001, 0x10001, 0x10001, 3 * 0x10001, 3 * 0x10001);
    p->scale[0][0] = _mm512_permutexvar_epi16(pick01, words);
    p->scale[0][1] = _mm512_permutexvar_epi16(_mm512_add_epi16(pick01, _mm512_set1_epi16(4)),
                                              words);
    p->scale[1][0] = _mm512_permutexvar_epi16(_mm512_add_epi16(pick01, _mm512_set1_epi16(16)),
                                              words);
    p->scale[1][1] = _mm512_permutexvar_epi16(_mm512_add_epi16(pick01, _mm512_set1_epi16(20)),
                                              words);
    /* Int16 lanes 2j and 2j+1 of each block's half meet bsums 2j and 2j+1: min j twice. */
    const __m512i pick_mins = _mm512_setr_epi32(
        8 * 0x10001, 9 * 0x10001, 10 * 0x10001, 11 * 0x10001, 12 * 0x10001, 13 * 0x10001,
        14 * 0x10001, 15 * 0x10001, 24 * 0x10001, 25 * 0x10001, 26 * 0x10001, 27 * 0x10001,
        28 * 0x10001, 29 * 0x10001, 30 * 0x10001, 31 * 0x10001);
    p->min_pairs = _mm512_permutexvar_epi16(pick_mins, words);
    uint32_t h0, h1; /* d and dmin are adjacent halves */
    memcpy(&h0, d0, 4);
    memcpy(&h1, d1, 4);
    p->d = _mm_cvtph_ps(_mm_insert_epi32(_mm_cvtsi32_si128((int)h0), (int)h1, 1));
}

/* The 32 quant bytes of a chunk broadcast to both halves, low nibbles kept in the low half and
 * high nibbles in the high half: values 64c .. 64c+63 in order. */
static inline __m512i nibble_chunk(const uint8_t *qs)
{
    __m512i v = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)qs));
    v = _mm512_mask_srli_epi16(v, 0xFFFF0000u, v, 4);
    return _mm512_and_si512(v, _mm512_set1_epi8(0x0F));
}

/* (The four chunks are written out: GCC at -O2 does not unroll loops over vector arrays and
 * would keep them in memory.) */
static inline void q4_K_quants(const block_q4_K *b, __m512i q[4])
{
    q[0] = nibble_chunk(b->qs);
    q[1] = nibble_chunk(b->qs + 32);
    q[2] = nibble_chunk(b->qs + 64);
    q[3] = nibble_chunk(b->qs + 96);
}

/* Q5_K chunk c: the nibbles plus 16 where the value's qh bit (2c in the low half, 2c+1 in the
 * high half) is set; qh is the 32 qh bytes broadcast to both halves. */
static inline __m512i q5_K_chunk(const uint8_t *qs, __m512i qh, int c)
{
    __m512i bit = _mm512_mask_blend_epi64(0xF0, _mm512_set1_epi8((char)(1 << (2 * c))),
                                          _mm512_set1_epi8((char)(1 << (2 * c + 1))));
    __m512i v = nibble_chunk(qs + 32 * c);
    return _mm512_mask_add_epi8(v, _mm512_test_epi8_mask(qh, bit), v, _mm512_set1_epi8(16));
}

static inline void q5_K_quants(const block_q5_K *b, __m512i q[4])
{
    const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)b->qh));
    q[0] = q5_K_chunk(b->qs, qh, 0);
    q[1] = q5_K_chunk(b->qs, qh, 1);
    q[2] = q5_K_chunk(b->qs, qh, 2);
    q[3] = q5_K_chunk(b->qs, qh, 3);
}

/* The exact totals of a pair of super-blocks: sums holds block 0's scaled quant sums in lanes 0-7
 * and block 1's in lanes 8-15 (fold_pair), mins their min (or offset) products likewise. The
 * result is sumi 0, summ 0, sumi 1, summ 1. */
static inline __m128i pair_totals(__m512i sums, __m512i mins)
{
    /* 128-bit lanes: sumi 0, summ 0, sumi 1, summ 1, each over 4 int32 lanes. */
    __m512i quads = _mm512_add_epi32(
        _mm512_mask_blend_epi64(0xCC, sums, mins),
        _mm512_permutex2var_epi64(sums, _mm512_setr_epi64(2, 3, 8, 9, 6, 7, 12, 13), mins));
    quads = _mm512_add_epi32(quads, _mm512_shuffle_epi32(quads, _MM_PERM_BADC));
    quads = _mm512_add_epi32(quads, _mm512_shuffle_epi32(quads, _MM_PERM_CDAB));
    return _mm512_castsi512_si128(_mm512_permutexvar_epi32(
        _mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), quads));
}

/* The scalar kernels' float expression of a pair, (a.d * d) * sumi - (a.d * dmin) * summ, in
 * lane 0 for block 0 and lane 2 for block 1; d holds d, dmin of block 0, d, dmin of block 1, and
 * ad the activation blocks' d likewise (a0.d twice, a1.d twice). */
static inline __m128 pair_terms_ad(__m128i totals, __m128 d, __m128 ad)
{
    __m128 scaled = _mm_mul_ps(_mm_mul_ps(ad, d), _mm_cvtepi32_ps(totals));
    return _mm_sub_ps(scaled, _mm_movehdup_ps(scaled));
}

static inline __m128 pair_terms(__m128i totals, __m128 d, const block_q8_K *a0,
                                const block_q8_K *a1)
{
    return pair_terms_ad(totals, d, _mm_blend_ps(_mm_set1_ps(a0->d), _mm_set1_ps(a1->d), 0xC));
}

/* A pair step's terms added to the running sum in super-block order; the second only when the
 * pair is two blocks (j != i). */
static inline float add_pair_terms(float sum, __m128 t, int64_t i, int64_t j)
{
    sum += _mm_cvtss_f32(t);
    if (j != i)
        sum += _mm_cvtss_f32(_mm_movehl_ps(t, t));
    return sum;
}

/* The float terms of the pair against activation blocks a0, a1 (pair_terms' lanes). */
static inline __m128 kq45_terms(const kq45_pair *p, const block_q8_K *a0, const block_q8_K *a1)
{
    __m512i sum0 = scaled_sum(p->q[0], p->scale[0][0], p->scale[0][1], a0->qs);
    __m512i sum1 = scaled_sum(p->q[1], p->scale[1][0], p->scale[1][1], a1->qs);
    __m512i bsums = _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)a0->bsums)),
        _mm256_loadu_si256((const __m256i *)a1->bsums), 1);
    __m512i mins = _mm512_madd_epi16(bsums, p->min_pairs);
    return pair_terms(pair_totals(fold_pair(sum0, sum1), mins), p->d, a0, a1);
}

/* Kernels for one weight type; DECODE_QUANTS is q4_K_quants or q5_K_quants. An odd last block
 * is decoded as a pair with itself and only its first term is used. */
#define KQ45_KERNELS(type, block_t, DECODE_QUANTS)                                                 \
    static inline void type##_decode_pair(const block_t *w0, const block_t *w1, kq45_pair *p)      \
    {                                                                                              \
        kq45_decode_meta(w0->scales, w1->scales, &w0->d, &w1->d, p);                               \
        DECODE_QUANTS(w0, p->q[0]);                                                                \
        DECODE_QUANTS(w1, p->q[1]);                                                                \
    }                                                                                              \
    /* Super-blocks i and i + 1 (i alone when it is the last) added to sum. */                     \
    KERNEL_STEP float type##_step(const q8_K_row *x, const uint8_t *row, int64_t i, float sum)     \
    {                                                                                              \
        const block_t *w = (const block_t *)row;                                                   \
        const int64_t j = i + 1 < x->nb ? i + 1 : i;                                               \
        kq45_pair p;                                                                               \
        ellm_prefetch_ahead(&w[i], 2 * (int)sizeof(block_t));                                      \
        type##_decode_pair(&w[i], &w[j], &p);                                                      \
        return add_pair_terms(sum, kq45_terms(&p, &x->a[i], &x->a[j]), i, j);                      \
    }                                                                                              \
    Q8_K_ROW_KERNEL(type, 2)                                                                       \
    void ellm_vec_dot_##type##_x4_avx512(int64_t n, float *out, const void *row,                   \
                                         const void *const *x)                                     \
    {                                                                                              \
        const block_t *w = row;                                                                    \
        const block_q8_K *a[4] = {x[0], x[1], x[2], x[3]};                                         \
        const int64_t nb = n / QK_K;                                                               \
        float sum[4] = {0, 0, 0, 0};                                                               \
        for (int64_t i = 0; i < nb; i += 2) {                                                      \
            const int64_t j = i + 1 < nb ? i + 1 : i;                                              \
            kq45_pair p;                                                                           \
            ellm_prefetch_stream(&w[i], 2 * (int)sizeof(block_t));                                 \
            type##_decode_pair(&w[i], &w[j], &p);                                                  \
            for (int r = 0; r < 4; r++) {                                                          \
                sum[r] = add_pair_terms(sum[r], kq45_terms(&p, &a[r][i], &a[r][j]), i, j);         \
            }                                                                                      \
        }                                                                                          \
        for (int r = 0; r < 4; r++)                                                                \
            out[r] = sum[r];                                                                       \
    }

KQ45_KERNELS(q4_K, block_q4_K, q4_K_quants)
KQ45_KERNELS(q5_K, block_q5_K, q5_K_quants)

/* ---- Formats of 16 sub-blocks of 16 values (Q6_K, Q2_K, Q3_K) ------------------------------ */

/* scaled_sum's two scale vectors from the 16 sub-block scales as int16 at word `first` of words:
 * lane holds, per 128-bit lane, the sub-blocks of the first two quant vectors as [s, s] pairs
 * of word indices; the last two vectors' sub-blocks are step further on. */
static inline void scale_pairs_at(__m512i words, int first, __m512i lane, int step, __m512i out[2])
{
    __m512i at = _mm512_add_epi16(lane, _mm512_set1_epi16((short)first));
    out[0] = _mm512_permutexvar_epi16(at, words);
    out[1] = _mm512_permutexvar_epi16(_mm512_add_epi16(at, _mm512_set1_epi16((short)step)), words);
}

/* Quant vector v (values 64v .. 64v+63) has sub-block 4v + L in 128-bit lane L: vectors v and
 * v + 1 packed, 128-bit lane L takes sub-block 4v + L, then 4v + 4 + L. */
static inline void sixteen_scale_pairs(__m512i words, int first, __m512i out[2])
{
    const __m512i lane = _mm512_setr_epi32(
        0, 0, 4 * 0x10001, 4 * 0x10001, 0x10001, 0x10001, 5 * 0x10001, 5 * 0x10001, 2 * 0x10001,
        2 * 0x10001, 6 * 0x10001, 6 * 0x10001, 3 * 0x10001, 3 * 0x10001, 7 * 0x10001, 7 * 0x10001);
    scale_pairs_at(words, first, lane, 8, out);
}

/* The same for quant vectors in the field order of block_q8_K_pair: vector f, 128-bit lane L
 * holds sub-block 8 (L / 2) + 2f + L % 2, so fields 0 and 1 take sub-blocks 0, 2 (lane 0),
 * 1, 3, 8, 10 and 9, 11, and fields 2 and 3 four sub-blocks later. */
static inline void field_scale_pairs(__m512i words, int first, __m512i out[2])
{
    const __m512i lane = _mm512_setr_epi32(0, 0, 2 * 0x10001, 2 * 0x10001, 0x10001, 0x10001,
                                           3 * 0x10001, 3 * 0x10001, 8 * 0x10001, 8 * 0x10001,
                                           10 * 0x10001, 10 * 0x10001, 9 * 0x10001, 9 * 0x10001,
                                           11 * 0x10001, 11 * 0x10001);
    scale_pairs_at(words, first, lane, 4, out);
}

/* ---- Q6_K ---------------------------------------------------------------------------------- */

/* Two consecutive Q6_K super-blocks decoded: quants in value order as four 64-value vectors per
 * block (vector v, 128-bit lane L is sub-block 4v + L). */
typedef struct q6_K_pair {
    __m512i q[2][4];
    __m512i scale[2][2]; /* per block: vectors 0-1 and 2-3 in scaled_sum's layout */
    __m512i scale16;     /* the 16 scales of each block as int16, block 0 first */
    __m128 d;            /* d of block 0, d of block 1 */
} q6_K_pair;

/* Half h of a Q6_K block as two 64-value vectors. The 64 ql bytes hold values 0-63 of the half
 * in their low nibbles (ql[l], then ql[l + 32]) and values 64-127 in their high nibbles; qh[l]
 * (broadcast to both 256-bit halves) has the top two bits of values l, l + 32, l + 64, l + 96 at
 * bits 0-1, 2-3, 4-5, 6-7. The variable shifts bring the wanted pair to bits 4-5 of each byte. */
static inline void q6_K_half(const uint8_t *ql_bytes, const uint8_t *qh_bytes, __m512i *first,
                             __m512i *second)
{
    const __m512i low4 = _mm512_set1_epi8(0x0F), low6 = _mm512_set1_epi8(0x3F);
    const __m512i shift_first = _mm512_mask_blend_epi64(0xF0, _mm512_set1_epi16(4),
                                                        _mm512_set1_epi16(2));
    const __m512i shift_second = _mm512_mask_blend_epi64(0xF0, _mm512_setzero_si512(),
                                                         _mm512_set1_epi16(2));
    __m512i ql = _mm512_loadu_si512(ql_bytes);
    __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)qh_bytes));
    /* 0xE4 = (A & C) | (B & ~C) with C the low-nibble mask; the AND with 0x3F then drops the
     * bits above the top pair that the shifts carried in. */
    __m512i lo = _mm512_ternarylogic_epi32(ql, _mm512_sllv_epi16(qh, shift_first), low4, 0xE4);
    __m512i hi = _mm512_ternarylogic_epi32(_mm512_srli_epi16(ql, 4),
                                           _mm512_srlv_epi16(qh, shift_second), low4, 0xE4);
    *first = _mm512_and_si512(lo, low6);
    *second = _mm512_and_si512(hi, low6);
}

static inline void q6_K_quants(const block_q6_K *b, __m512i q[4])
{
    q6_K_half(b->ql, b->qh, &q[0], &q[1]);
    q6_K_half(b->ql + 64, b->qh + 32, &q[2], &q[3]);
}

static inline void q6_K_decode_pair(const block_q6_K *w0, const block_q6_K *w1, q6_K_pair *p)
{
    q6_K_quants(w0, p->q[0]);
    q6_K_quants(w1, p->q[1]);
    p->scale16 = _mm512_cvtepi8_epi16(_mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)w0->scales)),
        _mm_loadu_si128((const __m128i *)w1->scales), 1));
    sixteen_scale_pairs(p->scale16, 0, p->scale[0]);
    sixteen_scale_pairs(p->scale16, 16, p->scale[1]);
    p->d = _mm_cvtph_ps(_mm_insert_epi16(_mm_cvtsi32_si128(w0->d), w1->d, 1));
}

/* The scalar kernels' (a.d * d) * (float)sumi of a pair of super-blocks whose exact sums are in
 * lanes 0-7 (block 0) and 8-15 (block 1) of sums (fold_pair): lane 0 block 0's, lane 1 block
 * 1's; d holds the blocks' d, ad0 and ad1 their activation blocks' d. */
static inline __m128 pair_scaled(__m512i sums, __m128 d, float ad0, float ad1)
{
    sums = _mm512_add_epi32(sums, _mm512_shuffle_i64x2(sums, sums, _MM_SHUFFLE(2, 3, 0, 1)));
    sums = _mm512_add_epi32(sums, _mm512_shuffle_epi32(sums, _MM_PERM_BADC));
    sums = _mm512_add_epi32(sums, _mm512_shuffle_epi32(sums, _MM_PERM_CDAB));
    __m128i totals = _mm512_castsi512_si128(_mm512_permutexvar_epi32(
        _mm512_setr_epi32(0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), sums));
    __m128 ad = _mm_unpacklo_ps(_mm_set_ss(ad0), _mm_set_ss(ad1));
    return _mm_mul_ps(_mm_mul_ps(ad, d), _mm_cvtepi32_ps(totals));
}

/* pair_scaled's terms added to sum in super-block order, the second only when the pair is two
 * blocks (j != i); d0 and d1 are the blocks' d (IEEE half). */
static inline float add_pair_scaled(float sum, __m512i sums, uint16_t d0, uint16_t d1, float ad0,
                                    float ad1, int64_t i, int64_t j)
{
    __m128 t = pair_scaled(sums, _mm_cvtph_ps(_mm_insert_epi16(_mm_cvtsi32_si128(d0), d1, 1)), ad0,
                           ad1);
    sum += _mm_cvtss_f32(t);
    if (j != i)
        sum += _mm_cvtss_f32(_mm_movehdup_ps(t));
    return sum;
}

/* The float terms of the pair against activation blocks a0, a1: lane 0 is block 0's
 * (a.d * d) * sumi, lane 1 block 1's. */
static inline __m128 q6_K_terms(const q6_K_pair *p, const block_q8_K *a0, const block_q8_K *a1)
{
    __m512i sum0 = scaled_sum(p->q[0], p->scale[0][0], p->scale[0][1], a0->qs);
    __m512i sum1 = scaled_sum(p->q[1], p->scale[1][0], p->scale[1][1], a1->qs);
    __m512i bsums = _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)a0->bsums)),
        _mm256_loadu_si256((const __m256i *)a1->bsums), 1);
    /* The stored q is value + 32: take out 32 * scale * (activation sum) per sub-block. */
    __m512i offset = _mm512_madd_epi16(p->scale16, bsums);
    __m512i sums = _mm512_sub_epi32(fold_pair(sum0, sum1), _mm512_slli_epi32(offset, 5));
    return pair_scaled(sums, p->d, a0->d, a1->d);
}

KERNEL_STEP float q6_K_step(const q8_K_row *x, const uint8_t *row, int64_t i, float sum)
{
    const block_q6_K *w = (const block_q6_K *)row;
    const int64_t j = i + 1 < x->nb ? i + 1 : i;
    q6_K_pair p;
    ellm_prefetch_ahead(&w[i], 2 * (int)sizeof *w);
    q6_K_decode_pair(&w[i], &w[j], &p);
    __m128 t = q6_K_terms(&p, &x->a[i], &x->a[j]);
    sum += _mm_cvtss_f32(t);
    if (j != i)
        sum += _mm_cvtss_f32(_mm_movehdup_ps(t));
    return sum;
}

Q8_K_ROW_KERNEL(q6_K, 2)

void ellm_vec_dot_q6_K_x4_avx512(int64_t n, float *out, const void *row, const void *const *x)
{
    const block_q6_K *w = row;
    const block_q8_K *a[4] = {x[0], x[1], x[2], x[3]};
    const int64_t nb = n / QK_K;
    float sum[4] = {0, 0, 0, 0};
    for (int64_t i = 0; i < nb; i += 2) {
        const int64_t j = i + 1 < nb ? i + 1 : i;
        q6_K_pair p;
        ellm_prefetch_stream(&w[i], 2 * (int)sizeof(block_q6_K));
        q6_K_decode_pair(&w[i], &w[j], &p);
        for (int r = 0; r < 4; r++) {
            __m128 t = q6_K_terms(&p, &a[r][i], &a[r][j]);
            sum[r] += _mm_cvtss_f32(t);
            if (j != i)
                sum[r] += _mm_cvtss_f32(_mm_movehdup_ps(t));
        }
    }
    for (int r = 0; r < 4; r++)
        out[r] = sum[r];
}

/* ---- Q2_K, Q3_K, IQ4_XS -------------------------------------------------------------------
 * The scalar kernels' shape: each super-block's exact integer sums, then its float expression,
 * added to the running sum in super-block order. */

static inline __m512i broadcast32(const uint8_t *p)
{
    return _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)p));
}

/* Quant vector c (values 64c .. 64c+63) of a Q2_K/Q3_K block from its 32 bytes of half c / 2,
 * broadcast to both 256-bit halves: the 2-bit fields at bits 2j (low half) and 2j + 2 (high
 * half), j = 2 (c % 2). One 64-bit variable shift moves both; the mask drops what the
 * neighbouring byte shifted in. */
static inline __m512i two_bit_chunk(__m512i half, int c)
{
    const int j = 2 * (c % 2);
    __m512i shift = _mm512_mask_blend_epi64(0xF0, _mm512_set1_epi64(2 * j),
                                            _mm512_set1_epi64(2 * j + 2));
    return _mm512_and_si512(_mm512_srlv_epi64(half, shift), _mm512_set1_epi8(3));
}

static inline void two_bit_quants(const uint8_t *qs, __m512i q[4])
{
    __m512i first = broadcast32(qs), second = broadcast32(qs + 32);
    q[0] = two_bit_chunk(first, 0);
    q[1] = two_bit_chunk(first, 1);
    q[2] = two_bit_chunk(second, 2);
    q[3] = two_bit_chunk(second, 3);
}

static inline __m256i load_bsums(const block_q8_K *a)
{
    return _mm256_loadu_si256((const __m256i *)a->bsums);
}

/* The scale and min nibbles of two Q2_K blocks as int16: words 0-15 block 0's, 16-31 block 1's. */
static inline void q2_K_pair_scales(const block_q2_K *w0, const block_q2_K *w1, __m512i *scales,
                                    __m512i *mins)
{
    const __m256i m15 = _mm256_set1_epi8(15);
    __m256i packed = _mm256_loadu2_m128i((const __m128i *)w1->scales, (const __m128i *)w0->scales);
    *scales = _mm512_cvtepu8_epi16(_mm256_and_si256(packed, m15));
    *mins = _mm512_cvtepu8_epi16(_mm256_and_si256(_mm256_srli_epi16(packed, 4), m15));
}

/* Super-blocks i and i + 1 (i alone when it is the last), reduced and scaled together as the
 * Q4_K/Q5_K pairs are: one block per step, each with its own horizontal sums and float tail, ran
 * at 16 GB/s on one core against 20.5 GB/s this way (gemv_micro, 128 MiB). Tried the same for
 * Q3_K and IQ4_XS: no faster (their single-block steps keep fewer vectors live); four blocks a
 * step with one transposing reduction and a vector float tail were slower still. The two
 * blocks' scales and mins are unpacked in one pass and their min products come from one
 * vpmaddwd (5 instructions fewer a pair). */
KERNEL_STEP float q2_K_step(const q8_K_row *x, const uint8_t *row, int64_t i, float sum)
{
    const block_q2_K *w = (const block_q2_K *)row;
    const int64_t j = i + 1 < x->nb ? i + 1 : i;
    __m512i scales, min_words, q[4], pairs[2];
    q2_K_pair_scales(&w[i], &w[j], &scales, &min_words);
    two_bit_quants(w[i].qs, q);
    sixteen_scale_pairs(scales, 0, pairs);
    __m512i sums0 = scaled_sum(q, pairs[0], pairs[1], x->a[i].qs);
    two_bit_quants(w[j].qs, q);
    sixteen_scale_pairs(scales, 16, pairs);
    __m512i sums1 = scaled_sum(q, pairs[0], pairs[1], x->a[j].qs);
    __m512i mins = _mm512_madd_epi16(
        min_words,
        _mm512_inserti64x4(_mm512_castsi256_si512(load_bsums(&x->a[i])), load_bsums(&x->a[j]), 1));
    /* d and dmin are adjacent halves in each block */
    uint32_t h0, h1;
    memcpy(&h0, &w[i].d, 4);
    memcpy(&h1, &w[j].d, 4);
    __m128 d = _mm_cvtph_ps(_mm_insert_epi32(_mm_cvtsi32_si128((int)h0), (int)h1, 1));
    __m128i totals = pair_totals(fold_pair(sums0, sums1), mins);
    return add_pair_terms(sum, pair_terms(totals, d, &x->a[i], &x->a[j]), i, j);
}

Q8_K_ROW_KERNEL(q2_K, 2)

/* The same against activation pairs in the field order (block_q8_K_pair), made once per token:
 * the 64 quant bytes are one load, field f (a shift and a mask) a quant vector whose 128-bit lane
 * L holds sub-block 8 (L / 2) + 2f + L % 2; the activations are 64-byte aligned, the pair's
 * bsums one load and its scales one. The scale and min words come from the 16 scale bytes
 * broadcast to every 128-bit lane by vpshufb, which widens them as well (an index with the top
 * bit set writes 0), instead of a widening and four vpermw. The same exact integers and
 * float operations as the plain kernel, so the same bits. */

/* vpshufb controls: the sub-block scales of fields 2k and 2k + 1 in scaled_sum's layout (k =
 * 0, 1), and the mins of sub-blocks 8 (L % 2) .. 8 (L % 2) + 7 in 128-bit lane L. */
typedef struct q2_K_field_controls {
    __m512i scale[2], mins;
} q2_K_field_controls;

static inline q2_K_field_controls q2_K_field_controls_make(void)
{
    q2_K_field_controls c;
    uint8_t at[3][64];
    for (int lane = 0; lane < 4; lane++)
        for (int b = 0; b < 16; b += 2) {
            for (int k = 0; k < 2; k++) /* field 2k + b / 8 */
                at[k][16 * lane + b] = (uint8_t)(8 * (lane / 2) + 2 * (2 * k + b / 8) + lane % 2);
            at[2][16 * lane + b] = (uint8_t)(8 * (lane % 2) + b / 2);
            at[0][16 * lane + b + 1] = at[1][16 * lane + b + 1] = at[2][16 * lane + b + 1] = 0x80;
        }
    c.scale[0] = _mm512_loadu_si512(at[0]);
    c.scale[1] = _mm512_loadu_si512(at[1]);
    c.mins = _mm512_loadu_si512(at[2]);
    return c;
}

/* Fields 1 and 3 are masked in place at bits 2-3 (as the AVX2 rows take them), one shift for the
 * four fields instead of three: their packed sums of four products, at most 4 * 12 * 128, stay
 * within int16, and they land in dwords 2-3 of each 128-bit lane of the result (scaled_sum's
 * layout), which are then 4 times their value. */
static inline __m512i q2_K_field_sum(const block_q2_K *w, __m512i scale_bytes,
                                     const q2_K_field_controls *c, const int8_t *y)
{
    const __m512i three = _mm512_set1_epi8(3), twelve = _mm512_set1_epi8(12);
    __m512i v = _mm512_loadu_si512(w->qs), v4 = _mm512_srli_epi16(v, 4), q[4];
    q[0] = _mm512_and_si512(v, three);
    q[1] = _mm512_and_si512(v, twelve);
    q[2] = _mm512_and_si512(v4, three);
    q[3] = _mm512_and_si512(v4, twelve);
    return scaled_sum(q, _mm512_shuffle_epi8(scale_bytes, c->scale[0]),
                      _mm512_shuffle_epi8(scale_bytes, c->scale[1]), y);
}

KERNEL_STEP float q2_K_pairs_pair_step(const block_q2_K *w, const block_q8_K_pair *a, int64_t i,
                                       int64_t j, float sum)
{
    const q2_K_field_controls c = q2_K_field_controls_make();
    const __m512i m15 = _mm512_set1_epi8(15);
    const block_q8_K_pair *p = &a[i / 2];
    ellm_prefetch_ahead(&w[i], 2 * (int)sizeof *w);
    __m512i raw0 = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)w[i].scales));
    __m512i raw1 = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)w[j].scales));
    __m512i sums0 = q2_K_field_sum(&w[i], _mm512_and_si512(raw0, m15), &c, p->qs[0]);
    __m512i sums1 = q2_K_field_sum(&w[j], _mm512_and_si512(raw1, m15), &c, p->qs[1]);
    /* The control widens the raw bytes to words (high byte 0), so a 16-bit shift leaves the min
     * nibble alone, without a mask. */
    __m512i min_words = _mm512_srli_epi16(
        _mm512_shuffle_epi8(_mm512_mask_blend_epi64(0xF0, raw0, raw1), c.mins), 4);
    __m512i mins = _mm512_madd_epi16(min_words, _mm512_loadu_si512(p->bsums));
    uint32_t h0, h1;
    memcpy(&h0, &w[i].d, 4);
    memcpy(&h1, &w[j].d, 4);
    __m128 d = _mm_cvtph_ps(_mm_insert_epi32(_mm_cvtsi32_si128((int)h0), (int)h1, 1));
    /* Fields 0 and 2 brought to 4 times theirs too, once a pair (fold_pair keeps the dword
     * positions within 128-bit lanes); the exact sumi lanes are divided by 4 again. */
    __m512i quads = _mm512_sllv_epi32(fold_pair(sums0, sums1),
                                      _mm512_broadcast_i32x4(_mm_setr_epi32(2, 2, 0, 0)));
    __m128i totals = _mm_srav_epi32(pair_totals(quads, mins), _mm_setr_epi32(2, 0, 2, 0));
    return add_pair_terms(sum, pair_terms_ad(totals, d, _mm_loadu_ps(p->d)), i, j);
}

PAIR_ROW_KERNEL(q2_K_pairs, block_q2_K, block_q8_K_pair)

/* The 16 six-bit Q3_K scale codes minus 32: low nibbles from bytes 0-7 (sub-blocks 0-7 the low
 * nibble, 8-15 the high one), the top two bits of sub-block s at bits 2 (s / 4) of byte
 * 8 + s % 4. */
static inline __m128i q3_K_scales(const uint8_t *scales)
{
    uint64_t lo;
    uint32_t top;
    memcpy(&lo, scales, 8);
    memcpy(&top, scales + 8, 4);
    __m128i low4 = _mm_set_epi64x((long long)((lo >> 4) & 0x0F0F0F0F0F0F0F0Full),
                                  (long long)(lo & 0x0F0F0F0F0F0F0F0Full));
    __m128i high2 = _mm_and_si128(
        _mm_srlv_epi32(_mm_set1_epi32((int)top), _mm_setr_epi32(0, 2, 4, 6)), _mm_set1_epi8(3));
    return _mm_sub_epi8(_mm_or_si128(low4, _mm_slli_epi16(high2, 4)), _mm_set1_epi8(32));
}

KERNEL_STEP float q3_K_step(const q8_K_row *x, const uint8_t *row, int64_t i, float sum)
{
    const block_q3_K *w = (const block_q3_K *)row + i;
    const block_q8_K *a = &x->a[i];
    const __m512i four = _mm512_set1_epi8(4);
    __m256i scales = _mm256_cvtepi8_epi16(q3_K_scales(w->scales));
    __m512i q[4], pairs[2];
    two_bit_quants(w->qs, q);
    /* The stored value is q + 4 = low | high bit << 2; the high bit of quant vector c sits at
     * bit 4 (c / 2) + 2 (c % 2) of hmask (low half) and the next bit (high half). */
    __m512i hm = broadcast32(w->hmask);
    for (int c = 0; c < 4; c++) {
        int bit = 4 * (c / 2) + 2 * (c % 2);
        __m512i select = _mm512_mask_blend_epi64(0xF0, _mm512_set1_epi8((char)(1 << bit)),
                                                 _mm512_set1_epi8((char)(1 << (bit + 1))));
        q[c] = _mm512_mask_add_epi8(q[c], _mm512_test_epi8_mask(hm, select), q[c], four);
    }
    sixteen_scale_pairs(_mm512_castsi256_si512(scales), 0, pairs);
    /* minus 4 × scale × (activation sum) per sub-block for the stored + 4 */
    __m256i offset = _mm256_madd_epi16(scales, load_bsums(a));
    __m512i total = _mm512_sub_epi32(scaled_sum(q, pairs[0], pairs[1], a->qs),
                                     _mm512_zextsi256_si512(_mm256_slli_epi32(offset, 2)));
    int32_t isum = _mm512_reduce_add_epi32(total);
    return sum + _cvtsh_ss(w->d) * a->d * (float)isum;
}

Q8_K_ROW_KERNEL(q3_K, 1)

/* Q3_K against activation pairs in the field order (block_q8_K_pair), two super-blocks a step
 * reduced and scaled together (Q6_K's tail), where the plain kernel takes one: field f of the
 * 64 quant bytes is a mask of the bytes (fields 0, 1) or of the bytes shifted by 4 (fields 2, 3),
 * fields 1 and 3 in place at bits 2-3 as in q2_K_field_sum (one shift for four fields instead of
 * three; their packed sums of four products, at most 4 * 28 * 128, stay within int16). The third
 * bit, bit f (low 256 bits) or 4 + f (high 256 bits) of the broadcast hmask, comes to bit 2
 * (fields 0, 2) or 4 (fields 1, 3) by one 64-bit rotation and is merged by a ternary logic op
 * (the masked byte adds cost a vptestmb each, and GCC copied their operands). The same exact
 * integers and float operations as the plain kernel, so the same bits. */
KERNEL_STEP __m512i q3_K_field_sum(const block_q3_K *w, __m512i scale_words, int first,
                                   const int8_t *y)
{
    const __m512i three = _mm512_set1_epi8(3), twelve = _mm512_set1_epi8(12);
    __m512i v = _mm512_loadu_si512(w->qs), v4 = _mm512_srli_epi16(v, 4);
    __m512i hm = broadcast32(w->hmask), q[4], pairs[2];
    __m512i low[4] = {_mm512_and_si512(v, three), _mm512_and_si512(v, twelve),
                      _mm512_and_si512(v4, three), _mm512_and_si512(v4, twelve)};
    for (int f = 0; f < 4; f++) {
        int to = f % 2 ? 4 : 2;
        long long lo = (f - to) & 63, hi = 4 + f - to;
        __m512i turn = _mm512_setr_epi64(lo, lo, lo, lo, hi, hi, hi, hi);
        /* 0xF8: low | (rotated & bit) */
        q[f] = _mm512_ternarylogic_epi32(low[f], _mm512_rorv_epi64(hm, turn),
                                         _mm512_set1_epi8((char)(1 << to)), 0xF8);
    }
    field_scale_pairs(scale_words, first, pairs);
    return scaled_sum(q, pairs[0], pairs[1], y);
}

KERNEL_STEP float q3_K_pairs_pair_step(const block_q3_K *w, const block_q8_K_pair *a, int64_t i,
                                       int64_t j, float sum)
{
    const block_q8_K_pair *p = &a[i / 2];
    ellm_prefetch_ahead(&w[i], 2 * (int)sizeof *w);
    /* sc - 32 of block i in words 0-15, of block j in 16-31 */
    __m512i words = _mm512_cvtepi8_epi16(q3_K_pair_scale_codes(&w[i], &w[j]));
    /* Fields 1 and 3 land in dwords 2-3 of every 128-bit lane (fold_pair keeps them there), 4
     * times their value: one shift a pair divides them exactly. */
    __m512i sums = _mm512_srav_epi32(
        fold_pair(q3_K_field_sum(&w[i], words, 0, p->qs[0]),
                  q3_K_field_sum(&w[j], words, 16, p->qs[1])),
        _mm512_setr_epi32(0, 0, 2, 2, 0, 0, 2, 2, 0, 0, 2, 2, 0, 0, 2, 2));
    /* minus 4 × scale × (activation sum) per sub-block for the stored + 4 */
    __m512i offset = _mm512_madd_epi16(words, _mm512_loadu_si512(p->bsums));
    sums = _mm512_sub_epi32(sums, _mm512_slli_epi32(offset, 2));
    return add_pair_scaled(sum, sums, w[i].d, w[j].d, p->d[0], p->d[2], i, j);
}

PAIR_ROW_KERNEL(q3_K_pairs, block_q3_K, block_q8_K_pair)

/* IQ4_XS: the levels go to dpbusd as unsigned bytes level + 128 (one table lookup), and 128 ×
 * scale × (activation sum) of each sub-block comes off afterwards. A 64-byte load of quants is
 * four sub-blocks, one per 128-bit lane, low nibbles values 0-15 and high nibbles 16-31, so the
 * activations (two sub-blocks to a load) are regrouped by halves to match. The block sums reach
 * 4 * 2 * 241 * 128 per lane, beyond int16, so the scales are applied with vpmulld. */

/* ls - 32 of sub-blocks 0-7 in dwords 0-7 */
static inline __m256i iq4_xs_scales(const block_iq4_xs *w)
{
    uint32_t scales_l;
    memcpy(&scales_l, w->scales_l, 4);
    __m256i ls = _mm256_or_si256(
        _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)scales_l),
                                           _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28)),
                         _mm256_set1_epi32(15)),
        _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)w->scales_h << 4),
                                           _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14)),
                         _mm256_set1_epi32(0x30)));
    return _mm256_sub_epi32(ls, _mm256_set1_epi32(32));
}

/* Half h of the block's exact sum with its scales applied, 16 int32 lanes: dots holds the level
 * + 128 products of sub-block 4h + L in 128-bit lane L (low nibbles against act_lo, high
 * nibbles against act_hi, added to start). */
static inline __m512i iq4_xs_half(const block_iq4_xs *w, int h, __m256i ls, __m512i start,
                                  __m512i act_lo, __m512i act_hi)
{
    const __m512i table = _mm512_broadcast_i32x4(_mm_xor_si128(
        _mm_loadu_si128((const __m128i *)ellm_kvalues_iq4nl), _mm_set1_epi8((char)0x80)));
    const __m512i low = _mm512_set1_epi8(0x0F);
    const __m512i lane_scale = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    __m512i packed = _mm512_loadu_si512(w->qs + 64 * h);
    __m512i lo = _mm512_shuffle_epi8(table, _mm512_and_si512(packed, low));
    __m512i hi = _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16(packed, 4), low));
    __m512i dots = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(start, lo, act_lo), hi, act_hi);
    __m512i scale = _mm512_permutexvar_epi32(_mm512_add_epi32(lane_scale, _mm512_set1_epi32(4 * h)),
                                             _mm512_zextsi256_si512(ls));
    return _mm512_mullo_epi32(dots, scale);
}

KERNEL_STEP float iq4_xs_step(const q8_K_row *x, const uint8_t *row, int64_t i, float sum)
{
    const block_iq4_xs *w = (const block_iq4_xs *)row + i;
    const block_q8_K *a = &x->a[i];
    __m256i ls = iq4_xs_scales(w);
    __m512i total = _mm512_setzero_si512();
    for (int h = 0; h < 2; h++) {
        __m512i near = _mm512_loadu_si512(a->qs + 128 * h);
        __m512i far = _mm512_loadu_si512(a->qs + 128 * h + 64);
        total = _mm512_add_epi32(
            total, iq4_xs_half(w, h, ls, _mm512_setzero_si512(),
                               _mm512_shuffle_i64x2(near, far, _MM_SHUFFLE(2, 0, 2, 0)),
                               _mm512_shuffle_i64x2(near, far, _MM_SHUFFLE(3, 1, 3, 1))));
    }
    /* bsums 2s and 2s + 1 make sub-block s: ls - 32 in both int16 halves of dword s */
    __m256i ls_pairs = _mm256_or_si256(_mm256_and_si256(ls, _mm256_set1_epi32(0xFFFF)),
                                       _mm256_slli_epi32(ls, 16));
    __m256i offset = _mm256_madd_epi16(ls_pairs, load_bsums(a));
    total = _mm512_sub_epi32(total, _mm512_zextsi256_si512(_mm256_slli_epi32(offset, 7)));
    int32_t isum = _mm512_reduce_add_epi32(total);
    return sum + _cvtsh_ss(w->d) * a->d * (float)isum;
}

Q8_K_ROW_KERNEL(iq4_xs, 1)

/* The same against the activations in IQ4_XS's order (block_q8_K_halves), made once per token:
 * no regrouping shuffles, and the offset of 128 enters as each half's starting sum instead of a
 * product with the block sums. The integer sum is the same exact integer, so the result is the
 * plain kernel's bit for bit. */
static inline __m512i iq4_xs_halves_sum(const block_iq4_xs *w, const block_q8_K_halves *a)
{
    __m256i ls = iq4_xs_scales(w);
    return _mm512_add_epi32(iq4_xs_half(w, 0, ls, _mm512_loadu_si512(a->offset[0]),
                                        _mm512_loadu_si512(a->qs), _mm512_loadu_si512(a->qs + 64)),
                            iq4_xs_half(w, 1, ls, _mm512_loadu_si512(a->offset[1]),
                                        _mm512_loadu_si512(a->qs + 128),
                                        _mm512_loadu_si512(a->qs + 192)));
}

/* Super-blocks in pairs, reduced and scaled together (Q6_K's tail): with the regrouping gone,
 * each block's own horizontal sum and float tail were the largest part left of its step. */
KERNEL_STEP float iq4_xs_halves_pair_step(const block_iq4_xs *w, const block_q8_K_halves *a,
                                          int64_t i, int64_t j, float sum)
{
    ellm_prefetch_ahead(&w[i], 2 * (int)sizeof *w);
    __m512i sums = fold_pair(iq4_xs_halves_sum(&w[i], &a[i]), iq4_xs_halves_sum(&w[j], &a[j]));
    return add_pair_scaled(sum, sums, w[i].d, w[j].d, a[i].d, a[j].d, i, j);
}

PAIR_ROW_KERNEL(iq4_xs_halves, block_iq4_xs, block_q8_K_halves)
#endif
