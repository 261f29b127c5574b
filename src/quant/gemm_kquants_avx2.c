/* AVX2 tiles of weight rows × tokens for the K-quants (Q2_K..Q6_K, against plain Q8_K activation
 * rows) and IQ4_XS (against their 16-bit variant), with eight weight rows in the eight 32-bit lanes of a vector, as gemm_avx2.c
 * does for the 32-value formats.
 *
 * A super-block of the eight rows is decoded and transposed once (lane l of q[p][g] holds levels
 * 4g..4g+3 of the 32-value piece p of row l) and reused by a step of up to TOKEN_STEP tokens,
 * piece by piece with the piece's levels held in registers. Per token, a maddubs of each group
 * against the broadcast activations, the pairs summed in int16 as far as they cannot overflow
 * (group_span), then one madd with the rows' sub-block scales: the tile spends its time in
 * maddubs. Every kernel of this set, like the scalar one, forms each super-block's sum as an exact
 * integer and only then scales it to float (the scalar kernel's expression, in its order), so
 * the order of the integer work is free and every (row, token) value is bit-identical to the
 * single-row kernels and to the scalar ones (test_quant_kquants checks both).
 *
 * IQ4_XS takes 16-bit lanes instead (wblock): its levels span -127..113, too wide for maddubs
 * without a sign move or two nibble planes, so each level is multiplied by its sub-block scale
 * once per super-block and one madd against the 16-bit activation rows (ELLM_ACT_Q8_K_TILED, the
 * set's gemm_tiled) forms two values of the eight rows. */
#include "quant/kernels.h"

#if defined(ELLM_HAVE_AVX2_KERNELS)
#include <immintrin.h>
#include <string.h>

#include "quant/blocks.h"
#include "quant/lanes_avx2.h"
#include "quant/quant.h"
#include "quant/reference_kquants_low.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

enum {
    GROUP_ROWS = 8, /* weight rows per vector, one per 32-bit lane */
    PIECES = 8,     /* 32-value pieces of a super-block */
    GROUPS = 8,     /* groups of four levels in a piece, one maddubs each */
    /* Tokens sharing one decoded super-block: at 32 the decoding and transposition took about a
     * tenth of the tile's time. 128 takes a 2048-column matmul's 112-token chunk in one step
     * (64 decoded each super-block twice): 6.6 % fewer instructions in the Q6_K tile. */
    TOKEN_STEP = 128,
};

typedef enum ktile_kind {
    KTILE_Q4_K,
    KTILE_Q5_K,
    KTILE_Q6_K,
    KTILE_Q2_K,
    KTILE_Q3_K,
    KTILE_IQ4_XS
} ktile_kind;

/* A super-block of the eight rows, ready for maddubs: the unsigned levels, per piece and half
 * piece (groups 0-3, 4-7) the rows' scales as an int16 pair per lane, the multipliers of the
 * activations' 16-value sums as int16 pairs (Q4_K/Q5_K: min 2k and 2k + 1; Q2_K: min 2g and
 * 2g + 1; Q6_K, Q3_K: scale 2g and 2g + 1, for their offsets of 32 and 4), and the rows'
 * super-block scales. */
typedef struct kblock {
    __m256i q[PIECES][GROUPS];
    __m256i sc[2 * PIECES]; /* half piece h of piece p at 2p + h */
    __m256i bsum_mul[GROUPS];
    __m256 d, dmin;
} kblock;

static inline size_t kblock_bytes(ktile_kind kind)
{
    switch (kind) {
    case KTILE_Q4_K: return sizeof(block_q4_K);
    case KTILE_Q5_K: return sizeof(block_q5_K);
    case KTILE_Q6_K: return sizeof(block_q6_K);
    case KTILE_Q2_K: return sizeof(block_q2_K);
    case KTILE_Q3_K: return sizeof(block_q3_K);
    case KTILE_IQ4_XS:
    default: return sizeof(block_iq4_xs);
    }
}

/* The 32 levels of piece p of a super-block, in value order, as the single-row kernels unpack
 * them. */
ALWAYS_INLINE __m256i piece_levels(ktile_kind kind, const uint8_t *blk, int p)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3);
    if (kind == KTILE_Q2_K || kind == KTILE_Q3_K) {
        /* Value 128h + 32j + l: bits 2j..2j+1 of qs[32h + l]; Q3_K adds 4 where bit 4h + j of
         * hmask[l] is set (the level + 4, 0..7; the offset comes off with the bsums). */
        int h = p / 4, j = p % 4;
        const uint8_t *qs = kind == KTILE_Q2_K ? ((const block_q2_K *)blk)->qs
                                               : ((const block_q3_K *)blk)->qs;
        __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * h));
        __m256i low = _mm256_and_si256(_mm256_srli_epi16(q, 2 * j), m2);
        if (kind == KTILE_Q2_K)
            return low;
        __m256i hm = _mm256_loadu_si256((const __m256i *)((const block_q3_K *)blk)->hmask);
        __m256i bit = _mm256_set1_epi8((char)(1 << (4 * h + j)));
        __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(hm, bit), bit);
        return _mm256_or_si256(low, _mm256_and_si256(set, _mm256_set1_epi8(4)));
    }
    if (kind == KTILE_Q6_K) {
        const block_q6_K *b = (const block_q6_K *)blk;
        int h = p / 4, k = p % 4;
        __m256i l = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h + 32 * (k & 1)));
        __m256i low = _mm256_and_si256(k < 2 ? l : _mm256_srli_epi16(l, 4), m4);
        __m256i hb = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * h));
        __m256i top = _mm256_and_si256(_mm256_srli_epi16(hb, 2 * k), _mm256_set1_epi8(3));
        return _mm256_or_si256(low, _mm256_slli_epi16(top, 4));
    }
    int c = p / 2;
    const uint8_t *qs = kind == KTILE_Q4_K ? ((const block_q4_K *)blk)->qs
                                           : ((const block_q5_K *)blk)->qs;
    __m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
    __m256i q = _mm256_and_si256(p & 1 ? _mm256_srli_epi16(v, 4) : v, m4);
    if (kind == KTILE_Q5_K) {
        __m256i qh = _mm256_loadu_si256((const __m256i *)((const block_q5_K *)blk)->qh);
        __m256i h = _mm256_and_si256(_mm256_srli_epi16(qh, p), _mm256_set1_epi8(1));
        q = _mm256_or_si256(q, _mm256_slli_epi16(h, 4));
    }
    return q;
}

static inline int32_t int16_pair(int lo, int hi)
{
    return (int32_t)((uint32_t)(uint16_t)lo | (uint32_t)(uint16_t)hi << 16);
}

/* Asks for a row's super-block (bb bytes at blk) into L1. The tiles' weights come from memory or
 * L3 the first time a row group is decoded (a layer's matrices are far larger than L2), and the
 * eight rows' short streams (one super-block of each per decode) gave the hardware prefetchers
 * little to follow: the Q6_K tile ran at 73 % of the int8-avx2 peak on 2048 rows (weights in L3)
 * against 86 % on 256 (in L2). Asked for one super-block ahead, the lines arrive while the tokens
 * pass over the current one. Prefetches never fault, so the address past the matrix is harmless
 * (formed as an integer, no out-of-object pointer). */
ALWAYS_INLINE void prefetch_superblock(const uint8_t *blk, size_t bb)
{
    for (size_t k = 0; k < bb; k += 64)
        _mm_prefetch((const char *)((uintptr_t)blk + k), _MM_HINT_T0);
    _mm_prefetch((const char *)((uintptr_t)blk + bb - 1), _MM_HINT_T0);
}

/* The super-blocks a tile decodes after super-block i of the group of eight rows at rows: the
 * same rows' next ones, or after the last, the first of the rows next_rows bytes on (the group
 * that group's tile decodes next). */
ALWAYS_INLINE void prefetch_next_superblocks(const uint8_t *const *rows, size_t next_rows,
                                             int64_t i, int64_t nb, size_t bb)
{
    for (int l = 0; l < GROUP_ROWS; l++) {
        uintptr_t next = i + 1 < nb ? (uintptr_t)rows[l] + (size_t)(i + 1) * bb
                                    : (uintptr_t)rows[l] + next_rows;
        prefetch_superblock((const uint8_t *)next, bb);
    }
}

/* Q6_K's scales in the kblock's order, in vectors: each row's 16 signed scale bytes as int16
 * are its bsum_mul pairs (2g, 2g + 1) and, each word doubled, its sc pairs; three transpositions
 * put row l in lane l. Written value by value (as the other K-quants are) this was about half of
 * the super-block's decoding. */
static inline void q6_K_scales(const uint8_t *const blk[GROUP_ROWS], kblock *B)
{
    __m256i pairs[GROUP_ROWS], first[GROUP_ROWS], second[GROUP_ROWS];
    uint16_t d[GROUP_ROWS];
    for (int l = 0; l < GROUP_ROWS; l++) {
        const block_q6_K *b = (const block_q6_K *)blk[l];
        pairs[l] = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)b->scales));
        /* Sub-blocks 0-3 | 8-11 and 4-7 | 12-15, each scale in both words of its dword. */
        __m256i lo = _mm256_unpacklo_epi16(pairs[l], pairs[l]);
        __m256i hi = _mm256_unpackhi_epi16(pairs[l], pairs[l]);
        first[l] = _mm256_permute2x128_si256(lo, hi, 0x20);
        second[l] = _mm256_permute2x128_si256(lo, hi, 0x31);
        d[l] = b->d;
    }
    transpose_8x8(pairs, B->bsum_mul);
    /* Half piece h of piece p is sub-block 2p + h. */
    transpose_8x8(first, B->sc);
    transpose_8x8(second, B->sc + PIECES);
    B->d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)d));
    B->dmin = _mm256_setzero_ps();
}

ALWAYS_INLINE void decode_kblock(ktile_kind kind, const uint8_t *const *rows, int64_t i, kblock *B)
{
    size_t bb = kblock_bytes(kind);
    const uint8_t *blk[GROUP_ROWS];
    for (int l = 0; l < GROUP_ROWS; l++)
        blk[l] = rows[l] + (size_t)i * bb;
    for (int p = 0; p < PIECES; p++) {
        __m256i lv[GROUP_ROWS];
        for (int l = 0; l < GROUP_ROWS; l++)
            lv[l] = piece_levels(kind, blk[l], p);
        transpose_8x8(lv, B->q[p]);
    }
    if (kind == KTILE_Q6_K) {
        q6_K_scales(blk, B);
        return;
    }
    int32_t sc[PIECES][2][GROUP_ROWS], mul[GROUPS][GROUP_ROWS];
    uint16_t d[GROUP_ROWS], dmin[GROUP_ROWS];
    for (int l = 0; l < GROUP_ROWS; l++) {
        if (kind == KTILE_Q2_K || kind == KTILE_Q3_K) {
            /* Sub-block scales (Q2_K: low nibble, the min code above; Q3_K: the 6-bit code
             * - 32) in sub-block order: piece p holds sub-blocks 2p and 2p + 1. */
            int scale[16], mult[16];
            for (int k = 0; k < 16; k++) {
                if (kind == KTILE_Q2_K) {
                    const block_q2_K *b = (const block_q2_K *)blk[l];
                    scale[k] = b->scales[k] & 15;
                    mult[k] = b->scales[k] >> 4;
                } else {
                    const block_q3_K *b = (const block_q3_K *)blk[l];
                    scale[k] = mult[k] = ellm_q3_K_scale(b->scales, k) - 32;
                }
            }
            for (int p = 0; p < PIECES; p++)
                for (int h = 0; h < 2; h++)
                    sc[p][h][l] = int16_pair(scale[2 * p + h], scale[2 * p + h]);
            for (int g = 0; g < GROUPS; g++)
                mul[g][l] = int16_pair(mult[2 * g], mult[2 * g + 1]);
            if (kind == KTILE_Q2_K) {
                d[l] = ((const block_q2_K *)blk[l])->d;
                dmin[l] = ((const block_q2_K *)blk[l])->dmin;
            } else {
                d[l] = ((const block_q3_K *)blk[l])->d;
                dmin[l] = 0;
            }
            continue;
        }
        /* The 12-byte scale packing (blocks.h), read as three 32-bit words. */
        const block_q4_K *b = (const block_q4_K *)blk[l]; /* Q5_K starts the same way */
        uint32_t u[3];
        memcpy(u, b->scales, 12);
        uint32_t s4[2] = {u[0] & 0x3F3F3F3Fu, (u[2] & 0x0F0F0F0Fu) | ((u[0] >> 6) & 0x03030303u)
                                                                         << 4};
        uint32_t m4[2] = {u[1] & 0x3F3F3F3Fu,
                          ((u[2] >> 4) & 0x0F0F0F0Fu) | ((u[1] >> 6) & 0x03030303u) << 4};
        uint8_t s[8], m[8];
        memcpy(s, s4, 8);
        memcpy(m, m4, 8);
        for (int p = 0; p < PIECES; p++)
            sc[p][0][l] = sc[p][1][l] = int16_pair(s[p], s[p]);
        for (int k = 0; k < 4; k++)
            mul[k][l] = int16_pair(m[2 * k], m[2 * k + 1]);
        d[l] = b->d;
        dmin[l] = b->dmin;
    }
    for (int p = 0; p < PIECES; p++)
        for (int h = 0; h < 2; h++)
            B->sc[2 * p + h] = _mm256_loadu_si256((const __m256i *)sc[p][h]);
    int n_mul = kind == KTILE_Q4_K || kind == KTILE_Q5_K ? 4 : GROUPS;
    for (int g = 0; g < n_mul; g++)
        B->bsum_mul[g] = _mm256_loadu_si256((const __m256i *)mul[g]);
    B->d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)d));
    B->dmin = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)dmin));
}

/* How many groups of a piece sum their maddubs pairs in int16 before one madd with the scale:
 * as many as stay below 32767 in the worst case (level max × 128 × 2 per pair, so Q4_K 16 ×
 * 1920, Q5_K 8 × 3968, Q6_K 4 × 8064, Q2_K/Q3_K 8 × 896) and within one
 * sub-block (Q6_K, Q2_K, Q3_K: four groups). */
static inline int group_span(ktile_kind kind)
{
    switch (kind) {
    case KTILE_Q4_K: return 8;
    case KTILE_Q6_K: return 2;
    default: return 4;
    }
}

/* The eight rows' exact sum of scale × level × activation over one 32-value piece for one token
 * (y: the piece's activations). */
ALWAYS_INLINE __m256i piece_sum(ktile_kind kind, const __m256i w[GROUPS], __m256i sc0, __m256i sc1,
                                const int8_t *y)
{
    int span = group_span(kind);
    __m256i total = _mm256_setzero_si256();
    for (int g0 = 0; g0 < GROUPS; g0 += span) {
        __m256i s = _mm256_setzero_si256();
        for (int g = g0; g < g0 + span; g++) {
            int32_t four;
            memcpy(&four, y + 4 * g, 4);
            s = _mm256_add_epi16(s, _mm256_maddubs_epi16(w[g], _mm256_set1_epi32(four)));
        }
        total = _mm256_add_epi32(total, _mm256_madd_epi16(s, g0 < 4 ? sc0 : sc1));
    }
    return total;
}

/* The bsums pair (2k, 2k + 1) of a, as one int32 broadcast to every lane. */
static inline __m256i bsum_pair(const int16_t *bsums, int k)
{
    int32_t v;
    memcpy(&v, bsums + 2 * k, 4);
    return _mm256_set1_epi32(v);
}

/* One super-block's term of the eight rows' sums for one token, from their exact integer sums
 * (isum): the scalar kernel's float expression, operation for operation. */
ALWAYS_INLINE __m256 block_term(ktile_kind kind, const kblock *B, const block_q8_K *a, __m256i isum)
{
    __m256 ad = _mm256_set1_ps(a->d);
    __m256 dall = _mm256_mul_ps(B->d, ad);
    __m256i off = _mm256_setzero_si256();
    if (kind == KTILE_Q4_K || kind == KTILE_Q5_K) {
        /* Pairs of 16-value sums are the sub-block sums (int16 is enough: |sum| <= 32 * 128). */
        __m256i b = _mm256_loadu_si256((const __m256i *)a->bsums);
        int16_t sub[8];
        _mm_storeu_si128((__m128i *)sub,
                         _mm_hadd_epi16(_mm256_castsi256_si128(b), _mm256_extracti128_si256(b, 1)));
        for (int k = 0; k < 4; k++)
            off = _mm256_add_epi32(off, _mm256_madd_epi16(B->bsum_mul[k], bsum_pair(sub, k)));
    } else {
        for (int g = 0; g < GROUPS; g++)
            off = _mm256_add_epi32(off, _mm256_madd_epi16(B->bsum_mul[g], bsum_pair(a->bsums, g)));
    }
    /* The levels are the values + 32 (Q6_K) or + 4 (Q3_K): scale × offset × the 16-value sums
     * come off. */
    if (kind == KTILE_Q6_K)
        isum = _mm256_sub_epi32(isum, _mm256_slli_epi32(off, 5));
    if (kind == KTILE_Q3_K)
        isum = _mm256_sub_epi32(isum, _mm256_slli_epi32(off, 2));
    __m256 term = _mm256_mul_ps(dall, _mm256_cvtepi32_ps(isum));
    if (kind == KTILE_Q4_K || kind == KTILE_Q5_K || kind == KTILE_Q2_K)
        term = _mm256_sub_ps(term,
                             _mm256_mul_ps(_mm256_mul_ps(B->dmin, ad), _mm256_cvtepi32_ps(off)));
    return term;
}

/* An IQ4_XS super-block of the eight rows: lane l of w[p][k] holds the values of piece p of row
 * l at positions 2k, 2k + 1 of the wide activation order (ellm_act_wide_index), each its level
 * times the piece's scale (|(ls - 32) × level| <= 32 × 127) as int16; and the rows' super-block
 * scales. */
typedef struct wblock {
    __m256i w[PIECES][2 * GROUPS];
    __m256 d;
} wblock;

/* Eight rows' 16-byte strings, one row per 128-bit half (r[k] holds rows k and k + 4), as four
 * vectors: lane l of out[j] is dword j of row l. */
static inline void rows_dwords(const __m256i r[4], __m256i out[4])
{
    __m256i ab_lo = _mm256_unpacklo_epi32(r[0], r[1]), ab_hi = _mm256_unpackhi_epi32(r[0], r[1]);
    __m256i cd_lo = _mm256_unpacklo_epi32(r[2], r[3]), cd_hi = _mm256_unpackhi_epi32(r[2], r[3]);
    out[0] = _mm256_unpacklo_epi64(ab_lo, cd_lo);
    out[1] = _mm256_unpackhi_epi64(ab_lo, cd_lo);
    out[2] = _mm256_unpacklo_epi64(ab_hi, cd_hi);
    out[3] = _mm256_unpackhi_epi64(ab_hi, cd_hi);
}

/* The nibbles are transposed before they become levels: dword j of a row's piece holds the
 * indices of values 4j..4j+3 (low nibbles) and 4j+16..4j+19 (high), so after one 4 × 8
 * transposition a lane's bytes are already one row's, and a byte shuffle sends each wide pair
 * (values 4j, 4j + 2 or 4j + 1, 4j + 3, ellm_act_wide_index) to the high bytes of a dword, from
 * where an arithmetic shift sign-extends it. Levels widened row by row and two 8 × 8
 * transpositions of the products spent about 2.5 times the shuffles. The sub-block scales come
 * eight rows a vector, lane l row l's. */
static void decode_wblock(const uint8_t *const *rows, int64_t i, wblock *B)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m128i table = _mm_loadu_si128((const __m128i *)ellm_kvalues_iq4nl);
    const __m256i levels = _mm256_set_m128i(table, table);
    /* Bytes 4m + o and 4m + o + 2 of each lane to the high bytes of its words (-1: zero). */
    const __m256i even = _mm256_setr_epi8(-1, 0, -1, 2, -1, 4, -1, 6, -1, 8, -1, 10, -1, 12, -1, 14,
                                          -1, 0, -1, 2, -1, 4, -1, 6, -1, 8, -1, 10, -1, 12, -1,
                                          14);
    const __m256i odd = _mm256_setr_epi8(-1, 1, -1, 3, -1, 5, -1, 7, -1, 9, -1, 11, -1, 13, -1, 15,
                                         -1, 1, -1, 3, -1, 5, -1, 7, -1, 9, -1, 11, -1, 13, -1, 15);
    uint16_t d[GROUP_ROWS];
    const block_iq4_xs *blk[GROUP_ROWS];
    int32_t low_scales[GROUP_ROWS], high_scales[GROUP_ROWS];
    for (int l = 0; l < GROUP_ROWS; l++) {
        blk[l] = (const block_iq4_xs *)rows[l] + i;
        d[l] = blk[l]->d;
        memcpy(&low_scales[l], blk[l]->scales_l, sizeof low_scales[l]);
        high_scales[l] = blk[l]->scales_h;
    }
    __m256i sl = _mm256_loadu_si256((const __m256i *)low_scales);
    __m256i sh = _mm256_loadu_si256((const __m256i *)high_scales);
    for (int p = 0; p < PIECES; p++, sl = _mm256_srli_epi32(sl, 4), sh = _mm256_srli_epi32(sh, 2)) {
        /* ellm_iq4_xs_scale - 32 of each row, in both words of its lane */
        __m256i ls = _mm256_or_si256(
            _mm256_and_si256(sl, _mm256_set1_epi32(15)),
            _mm256_slli_epi32(_mm256_and_si256(sh, _mm256_set1_epi32(3)), 4));
        ls = _mm256_sub_epi16(_mm256_or_si256(ls, _mm256_slli_epi32(ls, 16)),
                              _mm256_set1_epi16(32));
        __m256i packed[4], nibbles[4];
        for (int k = 0; k < 4; k++)
            packed[k] = _mm256_loadu2_m128i((const __m128i *)(blk[k + 4]->qs + 16 * p),
                                            (const __m128i *)(blk[k]->qs + 16 * p));
        rows_dwords(packed, nibbles);
        for (int j = 0; j < 4; j++) {
            __m256i half[2] = {_mm256_and_si256(nibbles[j], m4),
                               _mm256_and_si256(_mm256_srli_epi16(nibbles[j], 4), m4)};
            for (int h = 0; h < 2; h++) {
                __m256i lv = _mm256_shuffle_epi8(levels, half[h]);
                __m256i *w = B->w[p] + GROUPS * h + j;
                w[0] = _mm256_mullo_epi16(_mm256_srai_epi16(_mm256_shuffle_epi8(lv, even), 8), ls);
                w[4] = _mm256_mullo_epi16(_mm256_srai_epi16(_mm256_shuffle_epi8(lv, odd), 8), ls);
            }
        }
    }
    B->d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)d));
}

/* IQ4_XS row groups sharing one pass over the activations: two, the 16 rows ellm_matmul hands a
 * tile per call (gemm_micro --row-tile 16, 112 tokens, when the tile still widened the
 * activations itself: one group 50 %, two 53-54 % of the int8-avx2 peak). Tokens sharing one
 * decoded super-block: the 112 of a 2048-column matmul chunk in one step gave 55-56 % against
 * 53 % in steps of 64 (the decoding, a multiply per level and a transposition per piece, is
 * paid per step). */
enum { WIDE_GROUPS = 2, WIDE_STEP = 128 };

/* One token's half piece: eight pairs of its activations against the pair vectors w. */
ALWAYS_INLINE __m256i half_piece_sum(const __m256i w[GROUPS], const uint8_t *xw, __m256i s)
{
    for (int k = 0; k < GROUPS; k++) {
        int32_t pair;
        memcpy(&pair, xw + 4 * k, 4);
        s = _mm256_add_epi32(s, _mm256_madd_epi16(w[k], _mm256_set1_epi32(pair)));
    }
    return s;
}

/* Super-block i of ng groups of eight rows against tokens t0..t0+nt of the call's n_tok, whose
 * activations come as int16 with the tokens interleaved (ELLM_ACT_Q8_K_TILED, made once per
 * matmul): each half piece (eight pair vectors) of each group held in registers while the tokens
 * pass, one broadcast pair, one madd and one addition per two values, the tokens' values read as
 * one stream. The sums (|pair| <= 2 × 4064 × 128, a super-block below 2^27) are the exact
 * integers of the single-row kernel, and the float step its expression (d_w × d_a times the
 * integer). Against the two nibble planes of level + 128 (two maddubs per four values, then
 * madds and the offset) this spends 32 vector instructions per piece, eight rows and token
 * instead of 34. Widening plain Q8_K rows here, per call, ran at 55-56 % of the int8-avx2 peak,
 * reading 16-bit rows one token apart at 50 %, the interleaved stream at 60-64 %
 * (docs/performance.md, "Session 10"). Holding a whole piece (half of it as memory operands) for
 * one pass over the tokens ran at 42 %. */
static void sweep_wblocks(const wblock *B, int ng, int64_t i, const uint8_t *x, int64_t nb,
                          int64_t n_tok, int64_t t0, int nt, __m256 (*acc)[WIDE_STEP],
                          __m256i (*isum)[WIDE_STEP])
{
    const size_t group_bytes = 32 * sizeof(int16_t);
    const float *ad = (const float *)(x + (size_t)nb * PIECES * (size_t)n_tok * group_bytes) +
                      i * n_tok + t0;
    for (int p = 0; p < PIECES; p++) {
        const uint8_t *xp = x +
                            ((size_t)(i * PIECES + p) * (size_t)n_tok + (size_t)t0) * group_bytes;
        for (int gi = 0; gi < ng; gi++)
            for (int h = 0; h < 2; h++) {
                __m256i w[GROUPS];
                for (int k = 0; k < GROUPS; k++)
                    w[k] = B[gi].w[p][GROUPS * h + k];
                __m256i *is = isum[gi];
                const uint8_t *xw = xp + h * group_bytes / 2;
                if (p == 0 && h == 0) {
                    for (int t = 0; t < nt; t++, xw += group_bytes)
                        is[t] = half_piece_sum(w, xw, _mm256_setzero_si256());
                } else if (p < PIECES - 1 || h == 0) {
                    for (int t = 0; t < nt; t++, xw += group_bytes)
                        is[t] = half_piece_sum(w, xw, is[t]);
                } else {
                    /* The super-block's last sums go to the float step at once, not through
                     * isum and a second pass over the tokens. */
                    __m256 *a = acc[gi];
                    for (int t = 0; t < nt; t++, xw += group_bytes) {
                        __m256i s = half_piece_sum(w, xw, is[t]);
                        __m256 dall = _mm256_mul_ps(B[gi].d, _mm256_set1_ps(ad[t]));
                        a[t] = _mm256_add_ps(a[t], _mm256_mul_ps(dall, _mm256_cvtepi32_ps(s)));
                    }
                }
            }
    }
}

static void iq4_xs_tiles(int64_t n, const uint8_t *w, size_t w_stride, int64_t n_rows,
                         const uint8_t *x, int64_t n_tok, float *y, int64_t y_stride)
{
    int64_t nb = n / QK_K;
    wblock W[WIDE_GROUPS];
    __m256 acc[WIDE_GROUPS][WIDE_STEP];
    __m256i isum[WIDE_GROUPS][WIDE_STEP];
    for (int64_t r0 = 0; r0 < n_rows; r0 += WIDE_GROUPS * GROUP_ROWS) {
        int64_t left = n_rows - r0;
        int ng = left < WIDE_GROUPS * GROUP_ROWS ? (int)((left + GROUP_ROWS - 1) / GROUP_ROWS)
                                                 : WIDE_GROUPS;
        /* A short last group repeats its last row in the unused lanes, which are not stored. */
        const uint8_t *rows[WIDE_GROUPS][GROUP_ROWS];
        __m256i store_mask[WIDE_GROUPS];
        for (int gi = 0; gi < ng; gi++) {
            int64_t g0 = r0 + gi * GROUP_ROWS;
            int nr = n_rows - g0 < GROUP_ROWS ? (int)(n_rows - g0) : GROUP_ROWS;
            int32_t live[GROUP_ROWS];
            for (int l = 0; l < GROUP_ROWS; l++) {
                rows[gi][l] = w + (size_t)(g0 + (l < nr ? l : nr - 1)) * w_stride;
                live[l] = l < nr ? -1 : 0;
            }
            store_mask[gi] = _mm256_loadu_si256((const __m256i *)live);
        }
        for (int64_t t0 = 0; t0 < n_tok; t0 += WIDE_STEP) {
            int nt = n_tok - t0 < WIDE_STEP ? (int)(n_tok - t0) : WIDE_STEP;
            for (int gi = 0; gi < ng; gi++)
                for (int t = 0; t < nt; t++)
                    acc[gi][t] = _mm256_setzero_ps();
            for (int64_t i = 0; i < nb; i++) {
                for (int gi = 0; gi < ng; gi++) {
                    decode_wblock(rows[gi], i, &W[gi]);
                    if (t0 == 0)
                        prefetch_next_superblocks(rows[gi], WIDE_GROUPS * GROUP_ROWS * w_stride, i,
                                                  nb, sizeof(block_iq4_xs));
                }
                sweep_wblocks(W, ng, i, x, nb, n_tok, t0, nt, acc, isum);
            }
            for (int gi = 0; gi < ng; gi++)
                for (int t = 0; t < nt; t++)
                    _mm256_maskstore_ps(y + (t0 + t) * y_stride + r0 + gi * GROUP_ROWS,
                                        store_mask[gi], acc[gi][t]);
        }
    }
}

ALWAYS_INLINE void kgemm_tiles(ktile_kind kind, int64_t n, const uint8_t *w, size_t w_stride,
                               int64_t n_rows, const uint8_t *x, size_t x_stride, int64_t n_tok,
                               float *y, int64_t y_stride)
{
    int64_t nb = n / QK_K;
    kblock B;
    __m256 acc[TOKEN_STEP];
    __m256i isum[TOKEN_STEP];
    for (int64_t r0 = 0; r0 < n_rows; r0 += GROUP_ROWS) {
        int nr = n_rows - r0 < GROUP_ROWS ? (int)(n_rows - r0) : GROUP_ROWS;
        /* A short last group repeats its last row in the unused lanes, which are not stored. */
        const uint8_t *rows[GROUP_ROWS];
        int32_t live[GROUP_ROWS];
        for (int l = 0; l < GROUP_ROWS; l++) {
            rows[l] = w + (size_t)(r0 + (l < nr ? l : nr - 1)) * w_stride;
            live[l] = l < nr ? -1 : 0;
        }
        __m256i store_mask = _mm256_loadu_si256((const __m256i *)live);
        for (int64_t t0 = 0; t0 < n_tok; t0 += TOKEN_STEP) {
            int nt = n_tok - t0 < TOKEN_STEP ? (int)(n_tok - t0) : TOKEN_STEP;
            const uint8_t *xt = x + (size_t)t0 * x_stride;
            for (int t = 0; t < nt; t++)
                acc[t] = _mm256_setzero_ps();
            for (int64_t i = 0; i < nb; i++) {
                decode_kblock(kind, rows, i, &B);
                if (t0 == 0)
                    prefetch_next_superblocks(rows, GROUP_ROWS * w_stride, i, nb,
                                              kblock_bytes(kind));
                /* Piece by piece, its levels held in registers for every token of the step. */
                for (int p = 0; p < PIECES; p++) {
                    __m256i wp[GROUPS];
                    for (int g = 0; g < GROUPS; g++)
                        wp[g] = B.q[p][g];
                    __m256i sc0 = B.sc[2 * p], sc1 = B.sc[2 * p + 1];
                    for (int t = 0; t < nt; t++) {
                        const block_q8_K *a = (const block_q8_K *)(xt + (size_t)t * x_stride) + i;
                        /* The step's activations are in L2: the next line of this token's
                         * super-block, asked for one piece ahead (Q4_K, Q6_K, Q2_K 2-4 points of
                         * the peak in gemm_micro). */
                        _mm_prefetch((const char *)(a->qs + 32 * p) + 64, _MM_HINT_T0);
                        __m256i s = piece_sum(kind, wp, sc0, sc1, a->qs + 32 * p);
                        isum[t] = p == 0 ? s : _mm256_add_epi32(isum[t], s);
                    }
                }
                for (int t = 0; t < nt; t++) {
                    const block_q8_K *a = (const block_q8_K *)(xt + (size_t)t * x_stride) + i;
                    acc[t] = _mm256_add_ps(acc[t], block_term(kind, &B, a, isum[t]));
                }
            }
            for (int t = 0; t < nt; t++)
                _mm256_maskstore_ps(y + (t0 + t) * y_stride + r0, store_mask, acc[t]);
        }
    }
}

#define DEFINE_KGEMM(name, kind)                                                                   \
    void name(int64_t n, const uint8_t *w, size_t w_stride, int64_t n_rows, const uint8_t *x,      \
              size_t x_stride, int64_t n_tok, float *y, int64_t y_stride)                          \
    {                                                                                              \
        if (kind == KTILE_IQ4_XS)                                                                  \
            iq4_xs_tiles(n, w, w_stride, n_rows, x, n_tok, y, y_stride);                           \
        else                                                                                       \
            kgemm_tiles(kind, n, w, w_stride, n_rows, x, x_stride, n_tok, y, y_stride);            \
    }

DEFINE_KGEMM(ellm_gemm_q4_K_avx2, KTILE_Q4_K)
DEFINE_KGEMM(ellm_gemm_q5_K_avx2, KTILE_Q5_K)
DEFINE_KGEMM(ellm_gemm_q6_K_avx2, KTILE_Q6_K)
DEFINE_KGEMM(ellm_gemm_q2_K_avx2, KTILE_Q2_K)
DEFINE_KGEMM(ellm_gemm_q3_K_avx2, KTILE_Q3_K)
DEFINE_KGEMM(ellm_gemm_iq4_xs_avx2, KTILE_IQ4_XS)
#endif
