/* Horizontal sums, the 8x8 transpose and the K-quant scale shuffles shared by the AVX2 kernels (included only by *_avx2.c files, which are
 * compiled for AVX2). Every kernel that must match another bit for bit reduces in this one
 * order: the two 128-bit halves, then the upper pair onto the lower, then the two last lanes. */
#ifndef EDGELLM_QUANT_LANES_AVX2_H
#define EDGELLM_QUANT_LANES_AVX2_H

#include <immintrin.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "quant/blocks.h"

static inline float hsum128(__m128 v)
{
    v = _mm_add_ps(v, _mm_movehl_ps(v, v));
    v = _mm_add_ss(v, _mm_movehdup_ps(v));
    return _mm_cvtss_f32(v);
}

static inline float hsum256(__m256 v)
{
    return hsum128(_mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)));
}

/* sum + w[j] * x[j] for j in [i, n), one product at a time: the F16 dot's tail after its
 * 16-value steps, shared by the single-row kernel and the tiles so they end in the same bits. */
static inline float f16_dot_tail(float sum, const uint8_t *w, const float *x, int64_t i, int64_t n)
{
    for (int64_t j = i; j < n; j++) {
        uint16_t h;
        memcpy(&h, w + 2 * j, 2);
        sum += _cvtsh_ss(h) * x[j];
    }
    return sum;
}

/* Eight rows of eight dwords, transposed: out[g] lane l = dword g of r[l]. */
static inline void transpose_8x8(const __m256i r[8], __m256i out[8])
{
    __m256i t[8], u[8];
    for (int k = 0; k < 4; k++) {
        t[2 * k] = _mm256_unpacklo_epi32(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = _mm256_unpackhi_epi32(r[2 * k], r[2 * k + 1]);
    }
    /* u[4h + g] holds dword g (low half) and g + 4 (high half) of rows 4h..4h+3 */
    for (int h = 0; h < 2; h++) {
        u[4 * h] = _mm256_unpacklo_epi64(t[4 * h], t[4 * h + 2]);
        u[4 * h + 1] = _mm256_unpackhi_epi64(t[4 * h], t[4 * h + 2]);
        u[4 * h + 2] = _mm256_unpacklo_epi64(t[4 * h + 1], t[4 * h + 3]);
        u[4 * h + 3] = _mm256_unpackhi_epi64(t[4 * h + 1], t[4 * h + 3]);
    }
    for (int g = 0; g < 4; g++) {
        out[g] = _mm256_permute2x128_si256(u[g], u[4 + g], 0x20);
        out[4 + g] = _mm256_permute2x128_si256(u[g], u[4 + g], 0x31);
    }
}

/* Byte shuffle putting 16-bit word 2k in every slot of the low 128-bit lane and word 2k + 1 in
 * every slot of the high lane (of a vector holding the same eight words in both lanes). */
static inline __m256i lane_pair_pick(int k)
{
    return _mm256_set_m128i(_mm_set1_epi16((short)((4 * k + 3) << 8 | (4 * k + 2))),
                            _mm_set1_epi16((short)((4 * k + 1) << 8 | (4 * k))));
}

/* The scalar K-quant kernels scale each super-block's exact integer sums to float and add them
 * in block order; the AVX2 kernels that must equal them bit for bit take these steps, written
 * as intrinsics so that no compiler fuses them, on one or two consecutive super-blocks (two at a
 * time share the reductions). */

/* A super-block's integer sums, partly reduced: the scaled quants' in the four lanes of half, the
 * min term's in those of mins. */
typedef struct kquant_part {
    __m128i half, mins;
} kquant_part;

/* sum + a.d * d * isum - a.d * dmin * msum for p0 (activation scale ad0) and then, if two, p1
 * (ad1). dd holds d, dmin of the first super-block and then of the second. */
static inline __m128 kquant_add_blocks_min(__m128 sum, kquant_part p0, kquant_part p1, __m128 dd,
                                           float ad0, float ad1, bool two)
{
    __m128i sums = _mm_hadd_epi32(_mm_hadd_epi32(p0.half, p0.mins),
                                  _mm_hadd_epi32(p1.half, p1.mins)); /* isum0 msum0 isum1 msum1 */
    __m128 scale = _mm_mul_ps(_mm_setr_ps(ad0, ad0, ad1, ad1), dd);
    __m128 t = _mm_mul_ps(scale, _mm_cvtepi32_ps(sums));
    __m128 terms = _mm_hsub_ps(t, t);
    sum = _mm_add_ss(sum, terms);
    return two ? _mm_add_ss(sum, _mm_movehdup_ps(terms)) : sum;
}

/* sum + a.d * d * isum for isum0 (activation scale ad0, d lane 0) and then, if two, isum1 (ad1,
 * d lane 1). */
static inline __m128 kquant_add_blocks(__m128 sum, __m256i isum0, __m256i isum1, __m128 d,
                                       float ad0, float ad1, bool two)
{
    __m128i h0 = _mm_add_epi32(_mm256_castsi256_si128(isum0), _mm256_extracti128_si256(isum0, 1));
    __m128i h1 = _mm_add_epi32(_mm256_castsi256_si128(isum1), _mm256_extracti128_si256(isum1, 1));
    __m128i sums = _mm_hadd_epi32(h0, h1);
    sums = _mm_hadd_epi32(sums, sums); /* isum0 isum1 isum0 isum1 */
    __m128 t = _mm_mul_ps(_mm_mul_ps(_mm_setr_ps(ad0, ad1, 0, 0), d), _mm_cvtepi32_ps(sums));
    sum = _mm_add_ss(sum, t);
    return two ? _mm_add_ss(sum, _mm_movehdup_ps(t)) : sum;
}

/* Two IEEE halves (d of the first super-block, then of the second) as floats in lanes 0 and 1. */
static inline __m128 kquant_halves(uint16_t first, uint16_t second)
{
    return _mm_cvtph_ps(_mm_setr_epi16((short)first, (short)second, 0, 0, 0, 0, 0, 0));
}

/* Lane b of the result is the exact sum of the eight int32 lanes of block b's vector, given
 * pairs[p] = _mm256_hadd_epi32(v[2p], v[2p + 1]) (taken as each pair is ready, so that the eight
 * vectors need not be live at once). */
static inline __m256i lane_totals_of_pairs(const __m256i pairs[4])
{
    __m256i first = _mm256_hadd_epi32(pairs[0], pairs[1]); /* v0..v3: low halves | high halves */
    __m256i second = _mm256_hadd_epi32(pairs[2], pairs[3]);
    return _mm256_add_epi32(_mm256_permute2x128_si256(first, second, 0x20),
                            _mm256_permute2x128_si256(first, second, 0x31));
}

/* sum + terms lane 0 + lane 1 + ... + lane 7, one addition at a time: the scalar kernels of the
 * 32-value formats add their blocks' terms to one float in block order, and the AVX2 single-row
 * kernels, which form eight consecutive blocks' terms in the lanes of a vector, add them in that
 * order to equal them bit for bit. The lanes go through memory to scalar loads, which run on the
 * load ports, rather than through shuffles competing with the decoding for the shuffle port. A
 * lane of +0 (a block past the end) leaves the sum unchanged: it starts at +0 and so is never
 * -0. */
static inline float add_lanes_in_order(float sum, __m256 terms)
{
    float t[8];
    _mm256_storeu_ps(t, terms);
    for (int k = 0; k < 8; k++)
        sum += t[k];
    return sum;
}

/* Lane r of the result is lane r of sums + lane 0 + lane 1 + ... + lane 7 of terms[r], one
 * addition at a time as add_lanes_in_order adds one row's terms, so each lane equals that row's
 * single-row sum bit for bit; a kernel of eight rows adds them eight rows an addition, after one
 * 8x8 transpose, in place of seven lane extractions and eight scalar additions a row. Forced
 * inline: with the partial-group expansions of ELLM_ADD_ROWS_BY_GROUPS GCC left it out of
 * line in kernels_kquants_low_avx2.c, a call and the terms through memory every group (1.5 M
 * instructions a tl-q2_k token). */
static inline __attribute__((always_inline)) __m256 add_rows_lanes_in_order(__m256 sums,
                                                                            const __m256 terms[8])
{
    __m256 pairs[8], quads[8];
    for (int k = 0; k < 4; k++) { /* rows 2k, 2k + 1 interleaved */
        pairs[2 * k] = _mm256_unpacklo_ps(terms[2 * k], terms[2 * k + 1]);
        pairs[2 * k + 1] = _mm256_unpackhi_ps(terms[2 * k], terms[2 * k + 1]);
    }
    for (int k = 0; k < 2; k++) { /* quads[4k + j]: lanes j and j + 4 of rows 4k .. 4k + 3 */
        quads[4 * k] = _mm256_shuffle_ps(pairs[4 * k], pairs[4 * k + 2], 0x44);
        quads[4 * k + 1] = _mm256_shuffle_ps(pairs[4 * k], pairs[4 * k + 2], 0xEE);
        quads[4 * k + 2] = _mm256_shuffle_ps(pairs[4 * k + 1], pairs[4 * k + 3], 0x44);
        quads[4 * k + 3] = _mm256_shuffle_ps(pairs[4 * k + 1], pairs[4 * k + 3], 0xEE);
    }
    for (int j = 0; j < 4; j++)
        sums = _mm256_add_ps(sums, _mm256_permute2f128_ps(quads[j], quads[4 + j], 0x20));
    for (int j = 0; j < 4; j++)
        sums = _mm256_add_ps(sums, _mm256_permute2f128_ps(quads[j], quads[4 + j], 0x31));
    return sums;
}

/* Up to ELLM_GROUPS_A_PASS groups of eight blocks of a row are taken before their terms are added
 * (a row of 16 384 columns in one pass). */
enum { ELLM_GROUPS_A_PASS = 8 };

/* The body of an ELLM_DOT_ROWS-row decode kernel for rows of nb blocks of block_type, a pass of up
 * to ELLM_GROUPS_A_PASS groups of eight blocks at a time: the groups' activation scales are
 * gathered once for the rows, then group_terms (an expression of w, the row's blocks of the group,
 * `at`, the group's activation blocks, `scales`, theirs, and `count`, the group's blocks: 8, or
 * fewer in a last partial group) gives each row's eight terms of each group, row after row, and
 * the rows' terms are added eight rows an addition (add_rows_lanes_in_order) into out[0..7]. A
 * kernel whose group_terms takes only whole groups (count 8) calls this with nb a multiple of 8.
 * Row after row, not group after group over the rows: taken that way rows of two groups or more
 * (4096 columns) read from memory at 0.62-0.66 of a streaming read where the single rows read
 * 0.72-0.80 (docs/performance.md, session 23). Rows of one group (2048 columns) keep a loop of
 * their own: the pass loop ran 2-4 % more instructions there, the avx2vnni Q2_K rows 6 % slower
 * in L2. The partial group is an expansion of its own so that whole groups keep count a
 * constant. */
#define ELLM_ADD_ROWS_BY_GROUPS(block_type, nb, out, rows, row_bytes, act, group_terms)            \
    do {                                                                                           \
        _Static_assert(ELLM_DOT_ROWS == 8, "add_rows_lanes_in_order takes eight rows");            \
        int64_t n_groups_ = ((nb) + 7) / 8;                                                        \
        int last_count_ = (int)((nb)-8 * (n_groups_ - 1));                                         \
        __m256 sums_ = _mm256_setzero_ps();                                                        \
        if ((nb) == 8) {                                                                           \
            const block_q8_K *at = (act);                                                          \
            const int count = 8;                                                                   \
            (void)count;                                                                           \
            __m256 scales = kquant_act_scales(at, 8), terms_[ELLM_DOT_ROWS];                       \
            for (int r_ = 0; r_ < ELLM_DOT_ROWS; r_++) {                                           \
                const block_type *w = (const block_type *)((const uint8_t *)(rows) +               \
                                                           (size_t)r_ * (row_bytes));              \
                terms_[r_] = (group_terms);                                                        \
            }                                                                                      \
            _mm256_storeu_ps((out), add_rows_lanes_in_order(sums_, terms_));                       \
            break;                                                                                 \
        }                                                                                          \
        if (last_count_ == 8) {                                                                    \
            ELLM_ROWS_IN_PASSES_(block_type, n_groups_, 8, sums_, rows, row_bytes, act,            \
                                 group_terms);                                                     \
        } else {                                                                                   \
            ELLM_ROWS_IN_PASSES_(block_type, n_groups_, last_count_, sums_, rows, row_bytes, act,  \
                                 group_terms);                                                     \
        }                                                                                          \
        _mm256_storeu_ps((out), sums_);                                                            \
    } while (0)

/* ELLM_ADD_ROWS_BY_GROUPS's passes over n_groups groups, the last of last_count blocks: expanded
 * once with last_count the constant 8, so that rows of whole groups run no code of the partial
 * group (it cost them 2-4 % more instructions at 4096 columns), and once with the row's count. */
#define ELLM_ROWS_IN_PASSES_(block_type, n_groups, last_count, sums, rows, row_bytes, act,         \
                             group_terms)                                                          \
    for (int64_t g0_ = 0; g0_ < (n_groups); g0_ += ELLM_GROUPS_A_PASS) {                           \
        int groups_ = (int)((n_groups)-g0_ < ELLM_GROUPS_A_PASS ? (n_groups)-g0_                   \
                                                                : ELLM_GROUPS_A_PASS);             \
        int whole_ = g0_ + groups_ == (n_groups) && (last_count) < 8 ? groups_ - 1 : groups_;      \
        __m256 scales_[ELLM_GROUPS_A_PASS], terms_[ELLM_GROUPS_A_PASS][ELLM_DOT_ROWS];             \
        for (int g_ = 0; g_ < groups_; g_++)                                                       \
            scales_[g_] = kquant_act_scales((act) + 8 * (g0_ + g_),                                \
                                            g_ < whole_ ? 8 : (last_count));                       \
        for (int r_ = 0; r_ < ELLM_DOT_ROWS; r_++) {                                               \
            const block_type *row_ = (const block_type *)((const uint8_t *)(rows) +                \
                                                          (size_t)r_ * (row_bytes));               \
            for (int g_ = 0; g_ < whole_; g_++) {                                                  \
                const block_type *w = row_ + 8 * (g0_ + g_);                                       \
                const block_q8_K *at = (act) + 8 * (g0_ + g_);                                     \
                const int count = 8;                                                               \
                (void)count;                                                                       \
                __m256 scales = scales_[g_];                                                       \
                terms_[g_][r_] = (group_terms);                                                    \
            }                                                                                      \
            if ((last_count) < 8 && whole_ < groups_) {                                            \
                const block_type *w = row_ + 8 * (g0_ + whole_);                                   \
                const block_q8_K *at = (act) + 8 * (g0_ + whole_);                                 \
                const int count = (last_count);                                                    \
                (void)count;                                                                       \
                __m256 scales = scales_[whole_];                                                   \
                terms_[whole_][r_] = (group_terms);                                                \
            }                                                                                      \
        }                                                                                          \
        for (int g_ = 0; g_ < groups_; g_++)                                                       \
            (sums) = add_rows_lanes_in_order((sums), terms_[g_]);                                  \
    }

/* The single-row decode kernels take super-blocks eight at a time: each block's integer sums stay
 * in vectors until the eight are reduced together (lane_totals_of_pairs), the eight float terms of the
 * scalar kernel's expression are formed in the lanes of one vector, and only the final additions
 * run one block after the other, in block order, as the scalar kernel adds them. */

static inline int kquant_field32(const uint8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline short kquant_field16(const uint8_t *p)
{
    int16_t v;
    memcpy(&v, p, 2);
    return v;
}

/* The 32-bit field at first + b * stride of the blocks b < count (at most 8) in lane b, zero in
 * the lanes beyond: a group's d and dmin halves (Q2_K, Q4_K, Q5_K) or its activation scales.
 * Inserted straight from memory: a copy through an array stalls on store forwarding. */
static inline __m256i kquant_block_words(const uint8_t *first, size_t stride, int count)
{
    __m128i half[2];
    for (int k = 0; k < 2; k++) {
        const uint8_t *p = first + (size_t)(4 * k) * stride;
        int n = count - 4 * k;
        __m128i v = _mm_cvtsi32_si128(n > 0 ? kquant_field32(p) : 0);
        v = _mm_insert_epi32(v, n > 1 ? kquant_field32(p + stride) : 0, 1);
        v = _mm_insert_epi32(v, n > 2 ? kquant_field32(p + 2 * stride) : 0, 2);
        half[k] = _mm_insert_epi32(v, n > 3 ? kquant_field32(p + 3 * stride) : 0, 3);
    }
    return _mm256_set_m128i(half[1], half[0]);
}

/* The activation scales of count (at most 8) consecutive Q8_K blocks, zero beyond. */
static inline __m256 kquant_act_scales(const block_q8_K *a, int count)
{
    return _mm256_castsi256_ps(
        kquant_block_words((const uint8_t *)&a->d, sizeof(block_q8_K), count));
}

/* The 16-bit field at first + b * stride of the blocks b < count (at most 8), zero beyond: a
 * group's d (Q3_K, Q6_K: the block's last field, so no wider read). */
static inline __m128i kquant_block_halves(const uint8_t *first, size_t stride, int count)
{
    __m128i v = _mm_cvtsi32_si128(count > 0 ? (uint16_t)kquant_field16(first) : 0);
    v = _mm_insert_epi16(v, count > 1 ? kquant_field16(first + stride) : 0, 1);
    v = _mm_insert_epi16(v, count > 2 ? kquant_field16(first + 2 * stride) : 0, 2);
    v = _mm_insert_epi16(v, count > 3 ? kquant_field16(first + 3 * stride) : 0, 3);
    v = _mm_insert_epi16(v, count > 4 ? kquant_field16(first + 4 * stride) : 0, 4);
    v = _mm_insert_epi16(v, count > 5 ? kquant_field16(first + 5 * stride) : 0, 5);
    v = _mm_insert_epi16(v, count > 6 ? kquant_field16(first + 6 * stride) : 0, 6);
    return _mm_insert_epi16(v, count > 7 ? kquant_field16(first + 7 * stride) : 0, 7);
}

/* The terms ad * d * isum of up to eight super-blocks (lane b: block b), with d the blocks' IEEE
 * half scales. */
static inline __m256 kquant_terms(__m256i isum, __m128i d, __m256 ad)
{
    __m256 scale = _mm256_mul_ps(ad, _mm256_cvtph_ps(d));
    return _mm256_mul_ps(scale, _mm256_cvtepi32_ps(isum));
}

/* The terms ad * d * isum - ad * dmin * msum of up to eight super-blocks (lane b: block b), with
 * lane b of d_dmin holding block b's two IEEE halves d and dmin as stored. The subtraction is an
 * hsub of the interleaved products, so that no compiler can fuse it with a multiplication. */
static inline __m256 kquant_terms_min(__m256i isum, __m256i msum, __m256i d_dmin, __m256 ad)
{
    __m256i order = _mm256_permute4x64_epi64(d_dmin, 0xD8); /* blocks 0 1 4 5 | 2 3 6 7 */
    __m256 dd_lo = _mm256_cvtph_ps(_mm256_castsi256_si128(order));
    __m256 dd_hi = _mm256_cvtph_ps(_mm256_extracti128_si256(order, 1));
    /* Lanes i0 m0 i1 m1 | i4 m4 i5 m5 and i2 m2 i3 m3 | i6 m6 i7 m7, the scales to match. */
    __m256 t_lo = _mm256_mul_ps(_mm256_mul_ps(_mm256_unpacklo_ps(ad, ad), dd_lo),
                                _mm256_cvtepi32_ps(_mm256_unpacklo_epi32(isum, msum)));
    __m256 t_hi = _mm256_mul_ps(_mm256_mul_ps(_mm256_unpackhi_ps(ad, ad), dd_hi),
                                _mm256_cvtepi32_ps(_mm256_unpackhi_epi32(isum, msum)));
    return _mm256_hsub_ps(t_lo, t_hi);
}

/* The 16 six-bit scale codes minus 32 of Q3_K super-blocks w0 and w1 as int8, sub-block s in byte
 * s of the low (w0) and the high (w1) 128-bit lane: low nibbles from bytes 0..7 (sub-blocks 0..7
 * low nibble, 8..15 high nibble), top two bits of sub-block s from byte 8 + s % 4 at bit
 * 2 * (s / 4), i.e. dword s / 4 of the top bytes shifted right by 2 * (s / 4). Both blocks in one
 * pass (a block's own pass costs as much, and a 64-bit field of it went through general
 * registers); each 16-byte load starts 4 bytes before the scales so that it ends inside the
 * block. Shared by the AVX2 and AVX-512 Q3_K rows; the masks (15, 3 and 32 in every byte) are
 * arguments so that a kernel can form them once per call (q3_K_masks_pinned). */
static inline __m256i q3_K_pair_scale_codes_with(const block_q3_K *w0, const block_q3_K *w1,
                                                 __m256i nibble, __m256i two_bits, __m256i bias)
{
    const size_t at = offsetof(block_q3_K, scales) - 4;
    __m256i raw = _mm256_loadu2_m128i((const __m128i *)((const uint8_t *)w1 + at),
                                      (const __m128i *)((const uint8_t *)w0 + at));
    __m256i lo = _mm256_srli_si256(raw, 4); /* bytes 0-7: scales 0-7 */
    __m256i low4 = _mm256_and_si256(_mm256_unpacklo_epi64(lo, _mm256_srli_epi16(lo, 4)), nibble);
    __m256i high2 = _mm256_and_si256(
        _mm256_srlv_epi32(_mm256_shuffle_epi32(raw, _MM_SHUFFLE(3, 3, 3, 3)),
                          _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6)),
        two_bits);
    return _mm256_sub_epi8(_mm256_or_si256(low4, _mm256_slli_epi16(high2, 4)), bias);
}

static inline __m256i q3_K_pair_scale_codes(const block_q3_K *w0, const block_q3_K *w1)
{
    return q3_K_pair_scale_codes_with(w0, w1, _mm256_set1_epi8(15), _mm256_set1_epi8(3),
                                      _mm256_set1_epi8(32));
}

/* Defines name as the ELLM_DOT_ROWS-row decode kernel (ellm_vec_dot_rows_fn) of an always-inline
 * single-row dot, called as dot(n, out, row, x): each row is that dot's own code on that row, so
 * the rows equal the single-row kernel bit for bit. One call for eight rows leaves out seven calls
 * through the matmul's kernel pointer and seven of the dot's set-ups (its constants, spilled to
 * the stack, and the frame), about a tenth of a 2048-column Q2_K row's instructions. attributes
 * (empty, or a target for a dot that needs one) go before the definition. */
#define ELLM_DOT_ROWS_WITH(attributes, name, dot)                                                  \
    attributes void name(int64_t n, float *out, const void *rows, size_t row_bytes, const void *x) \
    {                                                                                              \
        const uint8_t *row = rows;                                                                 \
        for (int r = 0; r < ELLM_DOT_ROWS; r++, row += row_bytes)                                  \
            dot(n, &out[r], row, x);                                                               \
    }
#define ELLM_DOT_ROWS_OF(name, dot) ELLM_DOT_ROWS_WITH(, name, dot)

#endif
