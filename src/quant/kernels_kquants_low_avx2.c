/* AVX2 dot kernels of Q2_K, Q3_K and IQ4_XS weights with Q8_K activations (compiled with
 * AVX2/FMA/F16C flags; called only on CPUs that have them). Each super-block's integer sum is
 * exactly the scalar kernel's, and it is scaled and accumulated with the same float expression in
 * the same order, so results are bit-identical to kernels_kquants_low_scalar.c. */
#include "quant/kernels.h"

#if defined(ELLM_HAVE_AVX2_KERNELS)
#include <immintrin.h>
#include <stdbool.h>
#include <string.h>

#include "quant/blocks.h"
#include "quant/quant.h"
#include "quant/lanes_avx2.h"
#include "quant/prefetch.h"
#include "quant/reference_kquants_low.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* A Q2_K block's 16 scale nibbles in both 128-bit lanes; the broadcast is a load (no shuffle). */
ALWAYS_INLINE __m256i q2_K_scale_bytes(const block_q2_K *w)
{
    return _mm256_and_si256(
        _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)w->scales)),
        _mm256_set1_epi8(15));
}

/* The min term: sum over sub-blocks of min code times the activations' 16-value sums. The codes
 * are the high nibbles, so widening the bytes from memory and one 16-bit shift take them (a shift,
 * a mask and a widening otherwise). */
ALWAYS_INLINE __m256i q2_K_min_sum(const block_q2_K *w, const block_q8_K *a)
{
    __m256i mins = _mm256_srli_epi16(
        _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)w->scales)), 4);
    return _mm256_madd_epi16(mins, _mm256_loadu_si256((const __m256i *)a->bsums));
}

/* The four 2-bit fields of 32 quant bytes: 0 and 2 at bits 0-1 of the byte and of the byte
 * shifted by 4, 1 and 3 masked in place at bits 2-3 (4 times their value), one shift for four. */
static inline void q2_K_fields(const uint8_t *qs, __m256i fields[4])
{
    const __m256i m3 = _mm256_set1_epi8(3), m12 = _mm256_set1_epi8(12);
    __m256i q = _mm256_loadu_si256((const __m256i *)qs);
    __m256i q4 = _mm256_srli_epi16(q, 4);
    fields[0] = _mm256_and_si256(q, m3);
    fields[1] = _mm256_and_si256(q, m12);
    fields[2] = _mm256_and_si256(q4, m3);
    fields[3] = _mm256_and_si256(q4, m12);
}

/* The scale words for fields 2k and 2k + 1 of half h packed side by side as q2_K_sums and
 * q2_K_sums_vnni have them: lane L holds four words of sub-block 8h + 4k + L, then four of
 * 8h + 4k + 2 + L. */
ALWAYS_INLINE __m256i q2_K_field_pair_scales(__m256i scale_bytes, int h, int k)
{
    char lo = (char)(8 * h + 4 * k), hi = (char)(8 * h + 4 * k + 2);
    return _mm256_shuffle_epi8(
        scale_bytes,
        _mm256_setr_epi8(lo, -128, lo, -128, lo, -128, lo, -128, hi, -128, hi, -128, hi, -128, hi,
                         -128, (char)(lo + 1), -128, (char)(lo + 1), -128, (char)(lo + 1), -128,
                         (char)(lo + 1), -128, (char)(hi + 1), -128, (char)(hi + 1), -128,
                         (char)(hi + 1), -128, (char)(hi + 1), -128));
}

/* Given the pair reduction (vphaddd) of two Q2_K super-blocks' scaled sums, whose even dwords
 * hold fields 0 and 2, taken at their value, and odd dwords fields 1 and 3, taken at 4 times
 * theirs (q2_K_fields): brings the first to 4 times theirs too (the exact total times 4, which an
 * arithmetic shift by 2 undoes once per group), one shift for two blocks. */
ALWAYS_INLINE __m256i times_four_fields_0_2(__m256i acc)
{
    return _mm256_sllv_epi32(acc, _mm256_setr_epi32(2, 0, 2, 0, 2, 0, 2, 0));
}

/* One Q2_K super-block's integer sums against one activation block: the scaled quants' in the
 * eight lanes of *isum, fields 0 and 2 at their value and 1 and 3 at 4 times theirs
 * (times_four_fields_0_2 evens them, once per pair of blocks in a group), the min term's in those
 * of *msum (fields 1 and 3 at 4 times their value keep the sums of eight products within int16,
 * 8 * 12 * 128). One round of int16 pair sums puts two fields side by side and one vpmaddwd
 * scales both: vphaddw issues once every two cycles on Zen 5, where it bounded the row at three a
 * half (docs/performance.md, session 12), and the second round cost more than the vpmaddwd and
 * vpshufb it saved. */
static inline void q2_K_sums(const block_q2_K *w, const block_q8_K *a, __m256i *isum, __m256i *msum)
{
    __m256i scales = q2_K_scale_bytes(w);
    __m256i acc = _mm256_setzero_si256();
    for (int h = 0; h < 2; h++) {
        __m256i fields[4];
        q2_K_fields(w->qs + 32 * h, fields);
        __m256i p[4];
        for (int j = 0; j < 4; j++)
            p[j] = _mm256_maddubs_epi16(
                fields[j], _mm256_loadu_si256((const __m256i *)(a->qs + 128 * h + 32 * j)));
        for (int k = 0; k < 2; k++)
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_hadd_epi16(p[2 * k], p[2 * k + 1]),
                                                          q2_K_field_pair_scales(scales, h, k)));
    }
    *isum = acc;
    *msum = q2_K_min_sum(w, a);
}

/* The same sums with AVX-VNNI: vpdpbusd takes the four fields' products to exact int32 sums of
 * four (each lane one sub-block), which pack losslessly into int16 (at most 4 * 12 * 128) so that
 * one vpdpwssd applies the scales of two fields, in place of the int16 pair sums and their
 * vphaddw. The packed words are laid out as q2_K_sums' pair sums. */
__attribute__((target("avxvnni"))) static inline void
q2_K_sums_vnni(const block_q2_K *w, const block_q8_K *a, __m256i *isum, __m256i *msum)
{
    __m256i scales = q2_K_scale_bytes(w);
    __m256i acc = _mm256_setzero_si256();
    for (int h = 0; h < 2; h++) {
        __m256i fields[4];
        q2_K_fields(w->qs + 32 * h, fields);
        __m256i d[4];
        for (int j = 0; j < 4; j++)
            d[j] = _mm256_dpbusd_avx_epi32(
                _mm256_setzero_si256(), fields[j],
                _mm256_loadu_si256((const __m256i *)(a->qs + 128 * h + 32 * j)));
        for (int k = 0; k < 2; k++)
            acc = _mm256_dpwssd_avx_epi32(acc, _mm256_packs_epi32(d[2 * k], d[2 * k + 1]),
                                          q2_K_field_pair_scales(scales, h, k));
    }
    *isum = acc;
    *msum = q2_K_min_sum(w, a);
}

/* One super-block's sums by q2_K_sums, or with vnni by q2_K_sums_vnni (the same integers). */
ALWAYS_INLINE void q2_K_block(bool vnni, const block_q2_K *w, const block_q8_K *a, __m256i *isum,
                              __m256i *msum)
{
    if (vnni)
        q2_K_sums_vnni(w, a, isum, msum);
    else
        q2_K_sums(w, a, isum, msum);
}

/* The pair reductions of super-blocks 2p and 2p + 1 of a group of count blocks (see
 * lane_totals_of_pairs); a block at or past count is +0 and is not read. The pair's 168 bytes are
 * prefetched together: three requests, where a block's own took two each. */
ALWAYS_INLINE void q2_K_pair_sums(bool vnni, const block_q2_K *w, const block_q8_K *a, int p,
                                  int count, __m256i isum_pairs[4], __m256i msum_pairs[4])
{
    __m256i isum[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
    __m256i msum[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
    if (2 * p < count)
        ellm_prefetch_ahead(&w[2 * p], 2 * (int)sizeof *w);
    for (int k = 0; k < 2 && 2 * p + k < count; k++)
        q2_K_block(vnni, &w[2 * p + k], &a[2 * p + k], &isum[k], &msum[k]);
    isum_pairs[p] = times_four_fields_0_2(_mm256_hadd_epi32(isum[0], isum[1]));
    msum_pairs[p] = _mm256_hadd_epi32(msum[0], msum[1]);
}

/* The terms of count (at most 8) Q2_K super-blocks against one activation row (lane b: block b,
 * +0 past count). The four pairs are written out: as a loop (over blocks with a parity test, or
 * over pairs) GCC kept it rolled, with the pointer and index arithmetic of every iteration in the
 * front end's four uops a cycle that bound this row. */
ALWAYS_INLINE __m256 q2_K_group_terms(bool vnni, const block_q2_K *w, const block_q8_K *a,
                                      __m256 act_scales, int count)
{
    __m256i isum_pairs[4], msum_pairs[4];
    q2_K_pair_sums(vnni, w, a, 0, count, isum_pairs, msum_pairs);
    q2_K_pair_sums(vnni, w, a, 1, count, isum_pairs, msum_pairs);
    q2_K_pair_sums(vnni, w, a, 2, count, isum_pairs, msum_pairs);
    q2_K_pair_sums(vnni, w, a, 3, count, isum_pairs, msum_pairs);
    return kquant_terms_min(
        _mm256_srai_epi32(lane_totals_of_pairs(isum_pairs), 2), lane_totals_of_pairs(msum_pairs),
        kquant_block_words((const uint8_t *)&w[0].d, sizeof *w, count), act_scales);
}

/* One row a group at a time, a last partial group (rows of 11 008 columns: 43 blocks) as a group
 * of fewer blocks, as kq_dot_row takes Q4_K's (until session 24 such rows went in pairs with a
 * float tail every pair, 30 % more instructions a block). */
ALWAYS_INLINE void q2_K_dot(bool vnni, int64_t n, float *out, const void *row, const void *x)
{
    const block_q2_K *w = row;
    const block_q8_K *a = x;
    int64_t nb = n / QK_K, i = 0;
    float sum = 0;
    for (; i + 8 <= nb; i += 8)
        sum = add_lanes_in_order(
            sum, q2_K_group_terms(vnni, w + i, a + i, kquant_act_scales(a + i, 8), 8));
    if (i < nb) {
        int count = (int)(nb - i);
        sum = add_lanes_in_order(
            sum, q2_K_group_terms(vnni, w + i, a + i, kquant_act_scales(a + i, count), count));
    }
    *out = sum;
}

void ellm_vec_dot_q2_K_avx2(int64_t n, float *out, const void *row, const void *x)
{
    q2_K_dot(false, n, out, row, x);
}

/* ELLM_DOT_ROWS rows a group at a time, every row's sum in block order as q2_K_dot adds it: the
 * group's activation scales are gathered once for all the rows (seven inserts a group, about an
 * eighth of a 2048-column row's work around its integer sums) and the rows' terms are added eight
 * rows an addition (add_rows_lanes_in_order). */
ALWAYS_INLINE void q2_K_rows(bool vnni, int64_t n, float *out, const void *rows, size_t row_bytes,
                             const void *x)
{
    const block_q8_K *a = x;
    int64_t nb = n / QK_K;
    ELLM_ADD_ROWS_BY_GROUPS(block_q2_K, nb, out, rows, row_bytes, a,
                            q2_K_group_terms(vnni, w, at, scales, count));
}

void ellm_vec_dot_q2_K_rows_avx2(int64_t n, float *out, const void *rows, size_t row_bytes,
                                 const void *x)
{
    q2_K_rows(false, n, out, rows, row_bytes, x);
}

__attribute__((target("avxvnni"))) void ellm_vec_dot_q2_K_avx2vnni(int64_t n, float *out,
                                                                   const void *row, const void *x)
{
    q2_K_dot(true, n, out, row, x);
}

__attribute__((target("avxvnni"))) void ellm_vec_dot_q2_K_rows_avx2vnni(int64_t n, float *out,
                                                                        const void *rows,
                                                                        size_t row_bytes,
                                                                        const void *x)
{
    q2_K_rows(true, n, out, rows, row_bytes, x);
}

/* The byte masks and tables of q3_K_codes and q3_K_pair_scale_codes_with, formed once per call
 * (q3_K_masks_pinned). third02 and third13 map a nibble of hmask bits (fields 0-3 of a half) to
 * the third bits of fields 0 and 2 (bits 2 and 6) or 1 and 3 (likewise). */
typedef struct {
    __m256i low2, nibble, bias, pairs, code, third02, third13; /* 3, 15, 32, 0x33, 7 a byte */
} q3_K_masks;

static inline __m256i q3_K_third_bits(int first)
{
    char t[16];
    for (int n = 0; n < 16; n++)
        t[n] = (char)((n >> first & 1) << 2 | (n >> (first + 2) & 1) << 6);
    return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)t));
}

/* The empty asm hides the masks' values from GCC, which otherwise forms each again from an
 * immediate (three instructions) before every row's group loops and inside the partial group's
 * pair loop, rather than keep it in a register or reload it from the stack. */
ALWAYS_INLINE q3_K_masks q3_K_masks_pinned(void)
{
    q3_K_masks m = {_mm256_set1_epi8(3),    _mm256_set1_epi8(15), _mm256_set1_epi8(32),
                    _mm256_set1_epi8(0x33), _mm256_set1_epi8(7),  q3_K_third_bits(0),
                    q3_K_third_bits(1)};
    __asm__(""
            : "+x"(m.low2), "+x"(m.nibble), "+x"(m.bias), "+x"(m.pairs), "+x"(m.code),
              "+x"(m.third02), "+x"(m.third13));
    return m;
}

/* q3_K_pair_scale_codes as int16: block w0's in s16[0], w1's in s16[1], sub-block s in word s. */
ALWAYS_INLINE void q3_K_pair_scale_words(const block_q3_K *w0, const block_q3_K *w1,
                                         const q3_K_masks *m, __m256i s16[2])
{
    __m256i codes = q3_K_pair_scale_codes_with(w0, w1, m->nibble, m->low2, m->bias);
    s16[0] = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(codes));
    s16[1] = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(codes, 1));
}

/* The stored codes q + 4 (0..7: two low bits, and 4 for the third bit) of half h's four fields
 * (values 128h + 32j .. + 31 in code[j]), hm the block's hmask. The half's four third bits (a
 * nibble of hm) go by two table lookups to where fields 0 and 2, and 1 and 3 (the quants shifted
 * by 2), have their codes' third bits when the quants are masked to bits 0-1 and 4-5: then one
 * mask, or a shift and a mask, takes each code. 14 vector operations a half where moving each
 * field's bit on its own took 16-17 (docs/performance.md, session 24). */
ALWAYS_INLINE void q3_K_codes(const block_q3_K *w, __m256i hm, int h, const q3_K_masks *m,
                              __m256i code[4])
{
    __m256i q = _mm256_loadu_si256((const __m256i *)(w->qs + 32 * h));
    __m256i nibble = _mm256_and_si256(h ? _mm256_srli_epi16(hm, 4) : hm, m->nibble);
    __m256i f02 = _mm256_or_si256(_mm256_and_si256(q, m->pairs),
                                  _mm256_shuffle_epi8(m->third02, nibble));
    __m256i f13 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 2), m->pairs),
                                  _mm256_shuffle_epi8(m->third13, nibble));
    code[0] = _mm256_and_si256(f02, m->code);
    code[1] = _mm256_and_si256(f13, m->code);
    code[2] = _mm256_and_si256(_mm256_srli_epi16(f02, 4), m->code);
    code[3] = _mm256_and_si256(_mm256_srli_epi16(f13, 4), m->code);
}

/* The scale words for fields 2k and 2k + 1 of a half, from that half's eight sub-block scales in
 * both lanes of half_scales, side by side as q3_K_isum and q3_K_isum_vnni pack the fields: lane
 * L holds four words of sub-block 4k + L of the half, then four of 4k + 2 + L. */
ALWAYS_INLINE __m256i q3_K_field_pair_scales(__m256i half_scales, int k)
{
    char lo = (char)(8 * k), hi = (char)(8 * k + 4);
    return _mm256_shuffle_epi8(
        half_scales,
        _mm256_setr_epi8(lo, (char)(lo + 1), lo, (char)(lo + 1), lo, (char)(lo + 1), lo,
                         (char)(lo + 1), hi, (char)(hi + 1), hi, (char)(hi + 1), hi, (char)(hi + 1),
                         hi, (char)(hi + 1), (char)(lo + 2), (char)(lo + 3), (char)(lo + 2),
                         (char)(lo + 3), (char)(lo + 2), (char)(lo + 3), (char)(lo + 2),
                         (char)(lo + 3), (char)(hi + 2), (char)(hi + 3), (char)(hi + 2),
                         (char)(hi + 3), (char)(hi + 2), (char)(hi + 3), (char)(hi + 2),
                         (char)(hi + 3)));
}

/* The integer sum of a Q3_K super-block, in eight lanes. Each value is taken as its stored code
 * (q3_K_codes), so one maddubs per 32 values suffices; the offset -4 of every value is applied
 * once per super-block as -4 * sum over sub-blocks of scale times the activations' 16-value sum.
 * One round of int16 pair sums puts two fields side by side (sums of four products, at most
 * 4 * 7 * 128) and one vpmaddwd scales both, as in q2_K_sums. */
static inline __m256i q3_K_isum(const block_q3_K *w, const block_q8_K *a, __m256i s16,
                                const q3_K_masks *m)
{
    const __m256i halves[2] = {_mm256_permute2x128_si256(s16, s16, 0x00),
                               _mm256_permute2x128_si256(s16, s16, 0x11)};
    __m256i hm = _mm256_loadu_si256((const __m256i *)w->hmask);
    __m256i acc = _mm256_setzero_si256();
    for (int h = 0; h < 2; h++) {
        __m256i code[4], p[4];
        q3_K_codes(w, hm, h, m, code);
        for (int j = 0; j < 4; j++)
            p[j] = _mm256_maddubs_epi16(
                code[j], _mm256_loadu_si256((const __m256i *)(a->qs + 128 * h + 32 * j)));
        for (int k = 0; k < 2; k++)
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_hadd_epi16(p[2 * k], p[2 * k + 1]),
                                                          q3_K_field_pair_scales(halves[h], k)));
    }
    __m256i offset = _mm256_madd_epi16(s16, _mm256_loadu_si256((const __m256i *)a->bsums));
    return _mm256_sub_epi32(acc, _mm256_slli_epi32(offset, 2));
}

/* The same with AVX-VNNI (as q2_K_sums_vnni): each field's exact int32 sums of four products by
 * vpdpbusd, two fields packed to int16 (at most 4 * 7 * 128) and scaled by one vpdpwssd, in the
 * layout of q3_K_isum's pair sums. */
__attribute__((target("avxvnni"))) static inline __m256i
q3_K_isum_vnni(const block_q3_K *w, const block_q8_K *a, __m256i s16, const q3_K_masks *m)
{
    const __m256i halves[2] = {_mm256_permute2x128_si256(s16, s16, 0x00),
                               _mm256_permute2x128_si256(s16, s16, 0x11)};
    __m256i hm = _mm256_loadu_si256((const __m256i *)w->hmask);
    __m256i acc = _mm256_setzero_si256();
    for (int h = 0; h < 2; h++) {
        __m256i code[4], d[4];
        q3_K_codes(w, hm, h, m, code);
        for (int j = 0; j < 4; j++)
            d[j] = _mm256_dpbusd_avx_epi32(
                _mm256_setzero_si256(), code[j],
                _mm256_loadu_si256((const __m256i *)(a->qs + 128 * h + 32 * j)));
        for (int k = 0; k < 2; k++)
            acc = _mm256_dpwssd_avx_epi32(acc, _mm256_packs_epi32(d[2 * k], d[2 * k + 1]),
                                          q3_K_field_pair_scales(halves[h], k));
    }
    __m256i offset = _mm256_madd_epi16(s16, _mm256_loadu_si256((const __m256i *)a->bsums));
    return _mm256_sub_epi32(acc, _mm256_slli_epi32(offset, 2));
}

ALWAYS_INLINE __m256i q3_K_block(bool vnni, const block_q3_K *w, const block_q8_K *a, __m256i s16,
                                 const q3_K_masks *m)
{
    return vnni ? q3_K_isum_vnni(w, a, s16, m) : q3_K_isum(w, a, s16, m);
}

/* The pair reduction of super-blocks 2p and 2p + 1 of a group of count blocks (their scales
 * unpacked together, their bytes prefetched together); a block at or past count is +0 and its
 * scales are not read. */
ALWAYS_INLINE __m256i q3_K_pair_sums(bool vnni, const block_q3_K *w, const block_q8_K *a, int p,
                                     const q3_K_masks *m, int count)
{
    __m256i isum[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()}, s16[2];
    if (2 * p < count) {
        bool both = 2 * p + 1 < count;
        q3_K_pair_scale_words(&w[2 * p], &w[both ? 2 * p + 1 : 2 * p], m, s16);
        ellm_prefetch_ahead(&w[2 * p], 2 * (int)sizeof *w);
        isum[0] = q3_K_block(vnni, &w[2 * p], &a[2 * p], s16[0], m);
        if (both)
            isum[1] = q3_K_block(vnni, &w[2 * p + 1], &a[2 * p + 1], s16[1], m);
    }
    return _mm256_hadd_epi32(isum[0], isum[1]);
}

/* The terms of count (at most 8) Q3_K super-blocks against one activation row (lane b: block
 * b), a pair of blocks a step. The four pairs are written out, as q2_K_group_terms's are: as a
 * loop GCC kept it rolled, with the pairs' sums stored and loaded again and the loop's
 * bookkeeping every pair. */
ALWAYS_INLINE __m256 q3_K_group_terms(bool vnni, const block_q3_K *w, const block_q8_K *a,
                                      const q3_K_masks *m, int count)
{
    __m256i pairs[4] = {
        q3_K_pair_sums(vnni, w, a, 0, m, count), q3_K_pair_sums(vnni, w, a, 1, m, count),
        q3_K_pair_sums(vnni, w, a, 2, m, count), q3_K_pair_sums(vnni, w, a, 3, m, count)};
    __m128i d = kquant_block_halves((const uint8_t *)&w[0].d, sizeof *w, count);
    return kquant_terms(lane_totals_of_pairs(pairs), d, kquant_act_scales(a, count));
}

/* Up to Q3_K_GROUPS_A_PASS groups of a row are taken before their terms are added: 16 384
 * columns, every row of the common shapes in one pass. */
enum { Q3_K_GROUPS_A_PASS = 8 };

/* The terms of the nb (at most 8 * Q3_K_GROUPS_A_PASS) blocks at w, group g's in
 * terms[ELLM_DOT_ROWS * g]. A row that ends in a partial group (5632 columns: 22 blocks, the FFN
 * down rows) takes it as a group too: the pair loop's float tail per pair cost 5 % more per byte,
 * and this group is a rolled loop, which the slowdown from memory of written-out groups followed
 * by a tail (the exact-integer kernels' subsection) does not reach. */
ALWAYS_INLINE void q3_K_row_terms(bool vnni, int64_t nb, const block_q3_K *w, const block_q8_K *a,
                                  const q3_K_masks *m, __m256 *terms)
{
    int64_t i = 0;
    for (; i + 8 <= nb; i += 8, terms += ELLM_DOT_ROWS)
        *terms = q3_K_group_terms(vnni, w + i, a + i, m, 8);
    if (i < nb)
        *terms = q3_K_group_terms(vnni, w + i, a + i, m, (int)(nb - i));
}

/* One row, its groups' terms added in block order, with the masks formed once a call
 * (docs/performance.md, session 20: 2.8 % of the Q3_K rows' instructions). */
ALWAYS_INLINE void q3_K_dot(bool vnni, int64_t n, float *out, const void *row, const void *x)
{
    q3_K_masks m = q3_K_masks_pinned();
    const block_q3_K *w = row;
    const block_q8_K *a = x;
    int64_t nb = n / QK_K, i = 0;
    float sum = 0;
    for (; i + 8 <= nb; i += 8)
        sum = add_lanes_in_order(sum, q3_K_group_terms(vnni, w + i, a + i, &m, 8));
    if (i < nb)
        sum = add_lanes_in_order(sum, q3_K_group_terms(vnni, w + i, a + i, &m, (int)(nb - i)));
    *out = sum;
}

/* ELLM_DOT_ROWS rows, each row's terms by q3_K_dot's code (so the rows equal the single-row
 * kernel bit for bit) and row after row within a pass (session 18: taking the FFN down rows
 * group-major cost CPU time), then added eight rows an addition (add_rows_lanes_in_order). */
ALWAYS_INLINE void q3_K_rows(bool vnni, int64_t n, float *out, const void *first, size_t row_bytes,
                             const void *x)
{
    _Static_assert(ELLM_DOT_ROWS == 8, "add_rows_lanes_in_order takes eight rows");
    q3_K_masks m = q3_K_masks_pinned();
    const block_q8_K *a = x;
    int64_t nb = n / QK_K;
    __m256 sums = _mm256_setzero_ps();
    for (int64_t at = 0; at < nb; at += 8 * Q3_K_GROUPS_A_PASS) {
        int64_t pass = nb - at < 8 * Q3_K_GROUPS_A_PASS ? nb - at : 8 * Q3_K_GROUPS_A_PASS;
        __m256 terms[Q3_K_GROUPS_A_PASS][ELLM_DOT_ROWS];
        for (int r = 0; r < ELLM_DOT_ROWS; r++)
            q3_K_row_terms(vnni, pass,
                           (const block_q3_K *)((const uint8_t *)first + (size_t)r * row_bytes) +
                               at,
                           a + at, &m, &terms[0][r]);
        for (int g = 0; 8 * g < pass; g++)
            sums = add_rows_lanes_in_order(sums, terms[g]);
    }
    _mm256_storeu_ps(out, sums);
}

void ellm_vec_dot_q3_K_avx2(int64_t n, float *out, const void *row, const void *x)
{
    q3_K_dot(false, n, out, row, x);
}

void ellm_vec_dot_q3_K_rows_avx2(int64_t n, float *out, const void *rows, size_t row_bytes,
                                 const void *x)
{
    q3_K_rows(false, n, out, rows, row_bytes, x);
}

__attribute__((target("avxvnni"))) void ellm_vec_dot_q3_K_avx2vnni(int64_t n, float *out,
                                                                   const void *row, const void *x)
{
    q3_K_dot(true, n, out, row, x);
}

__attribute__((target("avxvnni"))) void ellm_vec_dot_q3_K_rows_avx2vnni(int64_t n, float *out,
                                                                        const void *rows,
                                                                        size_t row_bytes,
                                                                        const void *x)
{
    q3_K_rows(true, n, out, rows, row_bytes, x);
}

/* The vectors the plain AVX2 IQ4_XS kernels use for every block, formed once a call: the levels,
 * the nibble mask and the bit iq4_xs_scales flips. The empty asm hides their values from GCC,
 * which otherwise formed the masks again from immediates inside the group loops (three
 * instructions a mask). */
typedef struct iq4_xs_consts {
    __m256i table, low4, flip;
} iq4_xs_consts;

/* picks[k] is lane_pair_pick(k): sub-block 2k's scale (word 2k of iq4_xs_scales's result) to
 * every word of the low lane, 2k + 1's to the high lane's. Memory operands of their vpshufb, not
 * pinned in four registers: the eight-row pass loop then had too few registers and spilled pair
 * sums and constants (3.7 instructions a block more: docs/performance.md, session 24). */
static const uint8_t iq4_xs_scale_picks[4][32] __attribute__((aligned(32))) = {
    {0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1,
     2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3},
    {4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5,
     6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7},
    {8,  9,  8,  9,  8,  9,  8,  9,  8,  9,  8,  9,  8,  9,  8,  9,
     10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11},
    {12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13,
     14, 15, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15}};

static inline __m256i iq4_xs_levels(void)
{
    return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)ellm_kvalues_iq4nl));
}

ALWAYS_INLINE iq4_xs_consts iq4_xs_consts_pinned(void)
{
    iq4_xs_consts c = {iq4_xs_levels(), _mm256_set1_epi8(15), _mm256_set1_epi16((short)0x8000)};
    __asm__("" : "+x"(c.table), "+x"(c.low4), "+x"(c.flip));
    return c;
}

/* The same scales as int16, sub-block s in word s of both 128-bit lanes. One shuffle of the
 * block's first 16 bytes puts scales_l's byte s / 2 in both bytes of word s of the low lane and
 * scales_h in every word of the high lane; one multiply moves each word's field to bits 10-13 (the
 * low four bits of ls) or 14-15 (its top two), so the two lanes or'ed hold ls << 10, and ls - 32
 * is ls ^ 32 read as a six-bit signed number: seven vector operations where the dword route took
 * 12. */
ALWAYS_INLINE __m256i iq4_xs_scales(const block_iq4_xs *b, const iq4_xs_consts *c)
{
    __m256i head = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)b));
    __m256i fields = _mm256_shuffle_epi8(head, _mm256_setr_epi8(4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6,
                                                                7, 7, 7, 7, 2, 3, 2, 3, 2, 3, 2, 3,
                                                                2, 3, 2, 3, 2, 3, 2, 3));
    __m256i placed = _mm256_and_si256(
        _mm256_mullo_epi16(fields, _mm256_setr_epi16(4, 64, 4, 64, 4, 64, 4, 64, 1 << 14, 1 << 12,
                                                     1 << 10, 1 << 8, 1 << 6, 1 << 4, 1 << 2, 1)),
        _mm256_setr_epi16(0x3C00, 0x3C00, 0x3C00, 0x3C00, 0x3C00, 0x3C00, 0x3C00, 0x3C00,
                          (short)0xC000, (short)0xC000, (short)0xC000, (short)0xC000, (short)0xC000,
                          (short)0xC000, (short)0xC000, (short)0xC000));
    __m256i shifted = _mm256_or_si256(placed, _mm256_permute4x64_epi64(placed, 0x4E));
    return _mm256_srai_epi16(_mm256_xor_si256(shifted, c->flip), 10);
}

/* 16 activations at lo in the low 128-bit lane and 16 at hi in the high lane. */
static inline __m256i load_halves(const int8_t *lo, const int8_t *hi)
{
    return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)lo)),
                                   _mm_loadu_si128((const __m128i *)hi), 1);
}

/* The integer sum of one IQ4_XS super-block against an activation block: a plain Q8_K block
 * (block_q8_K), or with mag a magnitude block (block_q8_K_mag), whose values are stored in the
 * order a step meets them and whose magnitudes are made once per token instead of in every row
 * (per 64 values two sign operations and two 128-bit inserts fewer). */
ALWAYS_INLINE __m256i iq4_xs_isum(const block_iq4_xs *w, const void *x, bool mag,
                                  const iq4_xs_consts *c)
{
    const __m256i table = c->table, m15 = c->low4;
    __m256i scales = iq4_xs_scales(w, c);
    __m256i acc = _mm256_setzero_si256();
    for (int k = 0; k < 4; k++) {
        __m256i packed = _mm256_loadu_si256((const __m256i *)(w->qs + 32 * k));
        __m256i wlo = _mm256_shuffle_epi8(table, _mm256_and_si256(packed, m15));
        __m256i whi = _mm256_shuffle_epi8(table,
                                          _mm256_and_si256(_mm256_srli_epi16(packed, 4), m15));
        /* Activations go in as unsigned magnitudes (Q8_K stores -128, whose negation does
         * not fit int8, but its magnitude reads correctly as unsigned 128) and the weights
         * take their signs; 2 * 128 * 127 fits int16, so nothing saturates. */
        __m256i alo, ahi, ulo, uhi;
        if (mag) {
            const block_q8_K_mag *m = x;
            alo = _mm256_loadu_si256((const __m256i *)(m->qs + 64 * k));
            ahi = _mm256_loadu_si256((const __m256i *)(m->qs + 64 * k + 32));
            ulo = _mm256_loadu_si256((const __m256i *)(m->mag + 64 * k));
            uhi = _mm256_loadu_si256((const __m256i *)(m->mag + 64 * k + 32));
        } else {
            const int8_t *ak = ((const block_q8_K *)x)->qs + 64 * k;
            alo = load_halves(ak, ak + 32);
            ahi = load_halves(ak + 16, ak + 48);
            ulo = _mm256_sign_epi8(alo, alo);
            uhi = _mm256_sign_epi8(ahi, ahi);
        }
        __m256i plo = _mm256_maddubs_epi16(ulo, _mm256_sign_epi8(wlo, alo));
        __m256i phi = _mm256_maddubs_epi16(uhi, _mm256_sign_epi8(whi, ahi));
        __m256i sc = _mm256_shuffle_epi8(scales,
                                         _mm256_load_si256((const __m256i *)iq4_xs_scale_picks[k]));
        acc = _mm256_add_epi32(
            acc, _mm256_add_epi32(_mm256_madd_epi16(plo, sc), _mm256_madd_epi16(phi, sc)));
    }
    return acc;
}

/* The activation scales of count (at most 8) consecutive magnitude blocks, zero beyond. */
ALWAYS_INLINE __m256 iq4_xs_act_scales(const block_q8_K_mag *a, int count)
{
    return _mm256_castsi256_ps(kquant_block_words((const uint8_t *)&a->d, sizeof *a, count));
}

/* The pair reduction of super-blocks 2p and 2p + 1 of a group of count blocks against magnitude
 * activation blocks (their bytes prefetched together); a block at or past count is +0. */
ALWAYS_INLINE __m256i iq4_xs_pair_sums(const block_iq4_xs *w, const block_q8_K_mag *a, int p,
                                       const iq4_xs_consts *c, int count)
{
    __m256i isum[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
    if (2 * p < count) {
        ellm_prefetch_ahead(&w[2 * p], 2 * (int)sizeof *w);
        isum[0] = iq4_xs_isum(&w[2 * p], &a[2 * p], true, c);
        if (2 * p + 1 < count)
            isum[1] = iq4_xs_isum(&w[2 * p + 1], &a[2 * p + 1], true, c);
    }
    return _mm256_hadd_epi32(isum[0], isum[1]);
}

/* The terms of count (at most 8) IQ4_XS super-blocks against magnitude activation blocks (lane b:
 * block b, +0 past count), given the blocks' activation scales; the four pairs written out, as
 * q3_K_group_terms's are (a loop over the blocks stayed rolled where the count is not a
 * constant). */
ALWAYS_INLINE __m256 iq4_xs_group_terms(const block_iq4_xs *w, const block_q8_K_mag *a,
                                        __m256 act_scales, const iq4_xs_consts *c, int count)
{
    __m256i pairs[4] = {iq4_xs_pair_sums(w, a, 0, c, count), iq4_xs_pair_sums(w, a, 1, c, count),
                        iq4_xs_pair_sums(w, a, 2, c, count), iq4_xs_pair_sums(w, a, 3, c, count)};
    __m128i d = kquant_block_halves((const uint8_t *)&w[0].d, sizeof *w, count);
    return kquant_terms(lane_totals_of_pairs(pairs), d, act_scales);
}

/* sum plus the terms of eight IQ4_XS super-blocks against magnitude activation blocks. */
ALWAYS_INLINE float iq4_xs_group(float sum, const block_iq4_xs *w, const block_q8_K_mag *a,
                                 const iq4_xs_consts *c)
{
    return add_lanes_in_order(sum, iq4_xs_group_terms(w, a, iq4_xs_act_scales(a, 8), c, 8));
}

/* Two sub-blocks per step: their 32 packed bytes are one load, the low nibbles (values 0..15 of
 * each) one vector and the high nibbles (16..31) another, and the activations are loaded in the
 * same arrangement. The integer sum is the scalar kernel's, in another order. */
ALWAYS_INLINE void iq4_xs_dot(bool mag, int64_t n, float *out, const void *row, const void *x)
{
    const block_iq4_xs *w = row;
    const block_q8_K *a = x;
    const block_q8_K_mag *am = x;
    const iq4_xs_consts c = iq4_xs_consts_pinned();
    int64_t nb = n / QK_K;
    if (mag && nb % 8 == 0) { /* whole groups only; the pairs below take other rows */
        float total = 0;
        for (int64_t i = 0; i < nb; i += 8)
            total = iq4_xs_group(total, w + i, am + i, &c);
        *out = total;
        return;
    }
    __m128 sum = _mm_setzero_ps();
    for (int64_t i = 0; i < nb; i += 2) {
        int64_t last = i + 1 < nb ? i + 1 : i;
        ellm_prefetch_ahead(&w[i], 2 * (int)sizeof *w);
        const void *x0 = mag ? (const void *)&am[i] : &a[i];
        const void *x1 = mag ? (const void *)&am[last] : &a[last];
        __m256i s0 = iq4_xs_isum(&w[i], x0, mag, &c);
        __m256i s1 = last == i ? s0 : iq4_xs_isum(&w[last], x1, mag, &c);
        sum = kquant_add_blocks(sum, s0, s1, kquant_halves(w[i].d, w[last].d),
                                mag ? am[i].d : a[i].d, mag ? am[last].d : a[last].d, last > i);
    }
    *out = _mm_cvtss_f32(sum);
}

void ellm_vec_dot_iq4_xs_avx2(int64_t n, float *out, const void *row, const void *x)
{
    iq4_xs_dot(false, n, out, row, x);
}

ALWAYS_INLINE void iq4_xs_mag_row(int64_t n, float *out, const void *row, const void *x)
{
    iq4_xs_dot(true, n, out, row, x);
}

void ellm_vec_dot_iq4_xs_mag_avx2(int64_t n, float *out, const void *row, const void *x)
{
    iq4_xs_mag_row(n, out, row, x);
}

/* Up to IQ4_XS_GROUPS_A_PASS groups of a row are taken before their terms are added: 16 384
 * columns, every row of the common shapes in one pass. */
enum { IQ4_XS_GROUPS_A_PASS = 8 };

/* The terms of one row's whole groups and its partial group of tail blocks (if any) against the
 * magnitude blocks a, group g's in terms[ELLM_DOT_ROWS * g]. */
ALWAYS_INLINE void iq4_xs_row_terms(int whole, int tail, const block_iq4_xs *w,
                                    const block_q8_K_mag *a, const __m256 *act_scales,
                                    const iq4_xs_consts *c, __m256 *terms)
{
    for (int g = 0; g < whole; g++)
        terms[ELLM_DOT_ROWS * g] = iq4_xs_group_terms(w + 8 * g, a + 8 * g, act_scales[g], c, 8);
    if (tail)
        terms[ELLM_DOT_ROWS * whole] = iq4_xs_group_terms(w + 8 * whole, a + 8 * whole,
                                                          act_scales[whole], c, tail);
}

/* Eight rows, a pass at a time: the activation scales of the pass's groups gathered once for the
 * eight rows, then each row's groups in turn (the last partial where its blocks run out:
 * tinyllama's FFN down rows, two groups and six blocks), their terms added eight rows an addition
 * in block order (add_rows_lanes_in_order), each row's as its single-row kernel adds them. Row
 * after row, not group after group over the rows: rows of more than one group taken that way read
 * from memory at 0.62 of a streaming read where the single row reads 0.77 (eight streams a group
 * apart, the prefetch ahead landing on bytes already read; prefetching where the order goes next
 * only reached 0.67), as session 18 found for Q3_K's FFN down rows. */
void ellm_vec_dot_iq4_xs_mag_rows_avx2(int64_t n, float *out, const void *rows, size_t row_bytes,
                                       const void *x)
{
    _Static_assert(ELLM_DOT_ROWS == 8, "add_rows_lanes_in_order takes eight rows");
    const block_q8_K_mag *a = x;
    const iq4_xs_consts c = iq4_xs_consts_pinned();
    int64_t nb = n / QK_K;
    __m256 sums = _mm256_setzero_ps();
    for (int64_t at = 0; at < nb; at += 8 * IQ4_XS_GROUPS_A_PASS) {
        int64_t pass = nb - at < 8 * IQ4_XS_GROUPS_A_PASS ? nb - at : 8 * IQ4_XS_GROUPS_A_PASS;
        int whole = (int)(pass / 8), tail = (int)(pass % 8), groups = whole + (tail > 0);
        const block_q8_K_mag *ap = a + at;
        __m256 act_scales[IQ4_XS_GROUPS_A_PASS], terms[IQ4_XS_GROUPS_A_PASS][ELLM_DOT_ROWS];
        for (int g = 0; g < whole; g++)
            act_scales[g] = iq4_xs_act_scales(ap + 8 * g, 8);
        if (tail)
            act_scales[whole] = iq4_xs_act_scales(ap + 8 * whole, tail);
        for (int r = 0; r < ELLM_DOT_ROWS; r++) {
            const block_iq4_xs *w = (const block_iq4_xs *)((const uint8_t *)rows +
                                                           (size_t)r * row_bytes) +
                                    at;
            iq4_xs_row_terms(whole, tail, w, ap, act_scales, &c, &terms[0][r]);
        }
        for (int g = 0; g < groups; g++)
            sums = add_rows_lanes_in_order(sums, terms[g]);
    }
    _mm256_storeu_ps(out, sums);
}

#endif
