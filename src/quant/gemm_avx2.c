/* AVX2 tiles of weight rows × tokens for the 32-value formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
 * IQ4_NL): register-tiled, with eight weight rows in the eight 32-bit lanes of a vector.
 *
 * A block of the eight rows is decoded to int8 levels and transposed once, so that lane l of
 * vector g holds levels 4g..4g+3 of row l; each token's activations 4g..4g+3 are broadcast to
 * every lane, and one maddubs + madd forms, for all eight rows at once, the integer that the
 * single-row kernel (kernels_avx2.c, kernels_legacy_avx2.c) forms in its lane g. The float work
 * then repeats that kernel's, lane for lane: its lane g accumulator (one for even blocks, one for
 * odd ones) becomes a vector of the eight rows' lane-g accumulators, updated by the same fused
 * multiply-add with the same scale product, and its final horizontal sum becomes the same tree of
 * additions across those vectors. Every (row, token) value is therefore bit-identical to the
 * single-row kernel whatever the tile shape, the batch or the thread count (test_quant checks
 * it); a change to the float order of those kernels must be repeated here.
 *
 * The decoding and transposition are paid once per block of eight rows and reused by a step of
 * up to TOKEN_STEP tokens, whose accumulators stay in L1. Q4_0 and Q8_0 hold one decoded block in
 * registers while the tokens pass (sweep_resident; Q8_0 half a block at a time,
 * sweep_resident_q8_0_halves); the others decode CHUNK_BLOCKS blocks at a time so that a token
 * sweeps a chunk with its accumulators in registers. */
#include "quant/kernels.h"

#if defined(ELLM_HAVE_AVX2_KERNELS)
#include <immintrin.h>
#include <string.h>

#include "quant/blocks.h"
#include "quant/lanes_avx2.h"
#include "quant/quant.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

enum {
    GROUP_ROWS = 8,  /* weight rows per vector, one per 32-bit lane */
    LANE_GROUPS = 8, /* groups of four levels in a 32-value block */
    /* Blocks decoded before the tokens sweep them (9 KB, in L1): each token's accumulators are
     * loaded and stored once per chunk, so 16 halves those round trips against 8. */
    CHUNK_BLOCKS = 16,
    TOKEN_STEP = 64, /* tokens whose accumulators stay in L1 while a row group is swept */
};

typedef enum tile_kind {
    TILE_Q4_0,
    TILE_Q8_0,
    TILE_Q5_0,
    TILE_IQ4_NL,
    TILE_Q4_1,
    TILE_Q5_1
} tile_kind;

/* The "_1" kinds: unsigned levels, a minimum per block, Q8_1 activations. The others: signed
 * levels against extended Q8_0 activation rows. */
static inline bool has_min(tile_kind kind) { return kind == TILE_Q4_1 || kind == TILE_Q5_1; }

/* Kinds whose single-row kernels (kernels_avx2.c) sum each block's products exactly in integers
 * and convert once per block: lane k of their accumulator takes blocks i with i % 8 == k. The
 * others convert each group of four products (one accumulator per group and block parity). */
static inline bool has_block_sums(tile_kind kind) { return kind == TILE_Q4_0 || kind == TILE_Q8_0; }

/* Q4_0's levels stay unsigned nibbles (q, not q - 8) so that its activations need no sign
 * moves: the tile subtracts 8 x the block's activation sum from the integer instead. */
static inline bool unsigned_levels(tile_kind kind) { return has_min(kind) || kind == TILE_Q4_0; }

static inline size_t block_bytes(tile_kind kind)
{
    switch (kind) {
    case TILE_Q4_0: return sizeof(block_q4_0);
    case TILE_Q8_0: return sizeof(block_q8_0);
    case TILE_Q5_0: return sizeof(block_q5_0);
    case TILE_IQ4_NL: return sizeof(block_iq4_nl);
    case TILE_Q4_1: return sizeof(block_q4_1);
    case TILE_Q5_1:
    default: return sizeof(block_q5_1);
    }
}

/* The 32 nibbles at qs in value order: low nibbles are values 0..15, high nibbles 16..31. */
static inline __m256i nibbles(const uint8_t *qs)
{
    const __m128i m15 = _mm_set1_epi8(15);
    __m128i packed = _mm_loadu_si128((const __m128i *)qs);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(packed, 4), m15),
                            _mm_and_si128(packed, m15));
}

/* 0xFF in byte j where bit j of the little-endian 32-bit word at qh (value j's fifth bit) is
 * set. */
static inline __m256i fifth_bits(const uint8_t *qh)
{
    int32_t word;
    memcpy(&word, qh, 4);
    const __m256i spread = _mm256_set_epi64x(0x0303030303030303ll, 0x0202020202020202ll,
                                             0x0101010101010101ll, 0);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(word), spread);
    return _mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit);
}

/* The 32 levels of the block at b in value order: unsigned (0..31) for the unsigned_levels kinds,
 * signed for the others, exactly the levels the single-row kernels multiply (Q4_0: q, whose
 * offset of 8 is subtracted from the integer sums). */
ALWAYS_INLINE __m256i block_levels(tile_kind kind, const uint8_t *b)
{
    switch (kind) {
    case TILE_Q4_0: return nibbles(b + offsetof(block_q4_0, qs));
    case TILE_Q8_0: return _mm256_loadu_si256((const __m256i *)(b + offsetof(block_q8_0, qs)));
    case TILE_Q5_0:
        /* q - 16: the nibble where the fifth bit is set, nibble - 16 (0xF0 set) where clear */
        return _mm256_or_si256(nibbles(b + offsetof(block_q5_0, qs)),
                               _mm256_andnot_si256(fifth_bits(b + offsetof(block_q5_0, qh)),
                                                   _mm256_set1_epi8((char)0xF0)));
    case TILE_IQ4_NL: {
        __m128i table = _mm_loadu_si128((const __m128i *)ellm_kvalues_iq4nl);
        return _mm256_shuffle_epi8(_mm256_set_m128i(table, table),
                                   nibbles(b + offsetof(block_iq4_nl, qs)));
    }
    case TILE_Q4_1: return nibbles(b + offsetof(block_q4_1, qs));
    case TILE_Q5_1:
    default:
        return _mm256_or_si256(
            nibbles(b + offsetof(block_q5_1, qs)),
            _mm256_and_si256(fifth_bits(b + offsetof(block_q5_1, qh)), _mm256_set1_epi8(0x10)));
    }
}

/* CHUNK_BLOCKS blocks of the eight rows, ready for maddubs: the unsigned operand (|level| for
 * signed kinds, whose sign moves onto the activations, as in the single-row kernels; the level
 * itself otherwise), the signed levels, and the rows' scales (and minimums) as floats. */
typedef struct chunk {
    __m256i mag[CHUNK_BLOCKS][LANE_GROUPS];
    __m256i sgn[CHUNK_BLOCKS][LANE_GROUPS];
    __m256 d[CHUNK_BLOCKS], m[CHUNK_BLOCKS];
} chunk;

ALWAYS_INLINE void decode_chunk(tile_kind kind, const uint8_t *const *rows, int64_t b0, int kb,
                                chunk *C)
{
    size_t bb = block_bytes(kind);
    for (int k = 0; k < kb; k++) {
        __m256i lv[GROUP_ROWS];
        uint16_t d[GROUP_ROWS], m[GROUP_ROWS];
        for (int l = 0; l < GROUP_ROWS; l++) {
            const uint8_t *b = rows[l] + (size_t)(b0 + k) * bb;
            lv[l] = block_levels(kind, b);
            memcpy(&d[l], b, 2);     /* every format here starts with its scale... */
            memcpy(&m[l], b + 2, 2); /* ...and the "_1" formats continue with the minimum */
        }
        C->d[k] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)d));
        if (has_min(kind))
            C->m[k] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)m));
        if (unsigned_levels(kind)) {
            transpose_8x8(lv, C->mag[k]);
        } else {
            transpose_8x8(lv, C->sgn[k]);
            for (int g = 0; g < LANE_GROUPS; g++)
                C->mag[k][g] = _mm256_sign_epi8(C->sgn[k][g], C->sgn[k][g]);
        }
    }
}

/* One token's blocks: quants, scale and (Q8_1) d × sum. */
typedef struct token_view {
    const uint8_t *x;
    const float *ext_d;      /* extended Q8_0 rows: the scales as floats */
    const int32_t *ext_sums; /* extended Q8_0 rows: each block's sum of activations */
} token_view;

ALWAYS_INLINE const int8_t *token_block(tile_kind kind, const token_view *v, int64_t b, float *da,
                                        float *sa)
{
    if (has_min(kind)) {
        const block_q8_1 *a = (const block_q8_1 *)v->x + b;
        __m128 ds = _mm_cvtph_ps(_mm_cvtsi32_si128((int)((uint32_t)a->d | (uint32_t)a->s << 16)));
        *da = _mm_cvtss_f32(ds);
        *sa = _mm_cvtss_f32(_mm_shuffle_ps(ds, ds, 1));
        return a->qs;
    }
    *da = v->ext_d[b];
    *sa = 0;
    return (const int8_t *)v->x + (size_t)b * QK8_0;
}

/* The accumulators of one token: the single-row kernel's lane-g sums of even (acc[0]) and odd
 * (acc[1]) blocks, one row per lane, and its minimum terms (not the has_block_sums kinds'). */
typedef struct token_sums {
    __m256 acc[2][LANE_GROUPS];
    __m256 mins[2];
} token_sums;

/* Blocks of parity par of the chunk for one token. */
ALWAYS_INLINE void sweep_chunk(tile_kind kind, const chunk *C, int64_t b0, int kb, int par,
                               const token_view *v, token_sums *s)
{
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[LANE_GROUPS];
    for (int g = 0; g < LANE_GROUPS; g++)
        acc[g] = s->acc[par][g];
    __m256 mins = s->mins[par];
    for (int k = par; k < kb; k += 2) {
        float da, sa;
        const int8_t *qa = token_block(kind, v, b0 + k, &da, &sa);
        __m256 d = _mm256_mul_ps(C->d[k], _mm256_set1_ps(da));
        for (int g = 0; g < LANE_GROUPS; g++) {
            int32_t four;
            memcpy(&four, qa + 4 * g, 4);
            __m256i a = _mm256_set1_epi32(four);
            if (!has_min(kind))
                a = _mm256_sign_epi8(a, C->sgn[k][g]);
            __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(C->mag[k][g], a), ones);
            acc[g] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc[g]);
        }
        if (has_min(kind))
            mins = _mm256_add_ps(mins, _mm256_mul_ps(C->m[k], _mm256_set1_ps(sa)));
    }
    for (int g = 0; g < LANE_GROUPS; g++)
        s->acc[par][g] = acc[g];
    s->mins[par] = mins;
}

/* Q4_0 and Q8_0: one block of the eight rows held in registers while every token of the step
 * passes, its exact block integer and the single-row kernel's float step (lane b % 8) right
 * behind it. Against sweeping 16 decoded blocks from L1 a few tokens at a time this drops the
 * weight loads from the token loop: Q4_0 61-62 % -> 70-71 %, Q8_0 46 % -> 50 % of the int8-avx2
 * peak in gemm_micro. Q4_0 multiplies its unsigned nibbles and sums a block's eight pair sums in
 * 16 bits (at most 16 x 15 x 127), then subtracts 8 x the activation sum; Q8_0's pairs reach
 * 2 x 128 x 127, so each takes its sign move and its own widening madd (gemm_tiles sends Q8_0
 * to sweep_resident_q8_0_halves, below, which keeps its signs in registers). */
ALWAYS_INLINE void sweep_resident(tile_kind kind, const uint8_t *const *rows, int64_t b,
                                  const uint8_t *x, size_t x_stride, ellm_q8_0_ext_layout L,
                                  __m256 (*s)[LANE_GROUPS], int nt)
{
    const __m256i ones = _mm256_set1_epi16(1);
    chunk C;
    decode_chunk(kind, rows, b, 1, &C);
    __m256i w[LANE_GROUPS], sg[LANE_GROUPS];
    for (int g = 0; g < LANE_GROUPS; g++) {
        w[g] = C.mag[0][g];
        sg[g] = C.sgn[0][g];
    }
    __m256 dw = C.d[0];
    int lane = (int)(b % LANE_GROUPS);
    /* One pointer stepping by the row stride: GCC otherwise kept an index per group on the stack. */
    const int8_t *qa = (const int8_t *)x + (size_t)b * QK8_0;
    size_t d_off = L.scales_offset + (size_t)b * sizeof(float) - (size_t)b * QK8_0;
    size_t s_off = L.block_sums_offset + (size_t)b * sizeof(int32_t) - (size_t)b * QK8_0;
    for (int t = 0; t < nt; t++, qa += x_stride) {
        /* A step's activation rows (64 x n bytes and more) are in L2, and every other block
         * takes each token onto a new line: asking for the line two blocks ahead gave Q4_0
         * 2-5 points of the peak in gemm_micro (4 blocks ahead 0-2, 8 blocks ahead less). A
         * prefetch past the buffer is a hint, never a fault. */
        _mm_prefetch((const char *)qa + 2 * QK8_0, _MM_HINT_T0);
        __m256i p = _mm256_setzero_si256();
        for (int g = 0; g < LANE_GROUPS; g++) {
            int32_t four;
            memcpy(&four, qa + 4 * g, 4);
            __m256i a = _mm256_set1_epi32(four);
            if (kind == TILE_Q4_0)
                p = _mm256_add_epi16(p, _mm256_maddubs_epi16(w[g], a));
            else
                p = _mm256_add_epi32(
                    p, _mm256_madd_epi16(_mm256_maddubs_epi16(w[g], _mm256_sign_epi8(a, sg[g])),
                                         ones));
        }
        __m256i total = p;
        if (kind == TILE_Q4_0) {
            int32_t asum;
            memcpy(&asum, qa + s_off, 4);
            total = _mm256_sub_epi32(_mm256_madd_epi16(p, ones), _mm256_set1_epi32(8 * asum));
        }
        float da;
        memcpy(&da, qa + d_off, 4);
        __m256 d = _mm256_mul_ps(dw, _mm256_set1_ps(da));
        __m256 *acc = &s[t][lane];
        *acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(total), *acc);
    }
}

/* Q8_0 the same way, half a block (four groups) at a time: the tokens pass the first half, each
 * leaving its integer in part[t], then the second, which adds it and takes the float step. A
 * whole block's magnitudes and signs are 16 vectors, all of AVX2's registers, so GCC kept the
 * signs on the stack and every sign move loaded one (20 vector loads a token and block against
 * 11 here); the integers are sums of the same products, so the results are unchanged. */
ALWAYS_INLINE void sweep_resident_q8_0_halves(const uint8_t *const *rows, int64_t b,
                                              const uint8_t *x, size_t x_stride,
                                              ellm_q8_0_ext_layout L, __m256 (*s)[LANE_GROUPS],
                                              __m256i *part, int nt)
{
    const __m256i ones = _mm256_set1_epi16(1);
    chunk C;
    decode_chunk(TILE_Q8_0, rows, b, 1, &C);
    __m256 dw = C.d[0];
    int lane = (int)(b % LANE_GROUPS);
    size_t d_off = L.scales_offset + (size_t)b * sizeof(float) - (size_t)b * QK8_0;
    for (int h = 0; h < 2; h++) {
        __m256i w[LANE_GROUPS / 2], sg[LANE_GROUPS / 2];
        for (int g = 0; g < LANE_GROUPS / 2; g++) {
            w[g] = C.mag[0][4 * h + g];
            sg[g] = C.sgn[0][4 * h + g];
        }
        const int8_t *qa = (const int8_t *)x + (size_t)b * QK8_0 + 16 * h;
        for (int t = 0; t < nt; t++, qa += x_stride) {
            if (h == 0)
                _mm_prefetch((const char *)qa + 2 * QK8_0, _MM_HINT_T0);
            __m256i p[LANE_GROUPS / 2];
            for (int g = 0; g < LANE_GROUPS / 2; g++) {
                int32_t four;
                memcpy(&four, qa + 4 * g, 4);
                __m256i a = _mm256_sign_epi8(_mm256_set1_epi32(four), sg[g]);
                p[g] = _mm256_madd_epi16(_mm256_maddubs_epi16(w[g], a), ones);
            }
            __m256i sum = _mm256_add_epi32(_mm256_add_epi32(p[0], p[1]),
                                           _mm256_add_epi32(p[2], p[3]));
            if (h == 0) {
                part[t] = sum;
                continue;
            }
            __m256i total = _mm256_add_epi32(part[t], sum);
            float da;
            memcpy(&da, qa - 16 + d_off, 4);
            __m256 d = _mm256_mul_ps(dw, _mm256_set1_ps(da));
            __m256 *acc = &s[t][lane];
            *acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(total), *acc);
        }
    }
}

/* The single-row kernel's final sum: hsum256 of its accumulator (acc0 + acc1 for the kinds with
 * two: the halves, then the upper pair onto the lower, then the last two lanes), then the minimum
 * terms. */
ALWAYS_INLINE __m256 finish(tile_kind kind, const __m256 block_acc[LANE_GROUPS],
                            const token_sums *s)
{
    __m256 v[LANE_GROUPS];
    for (int g = 0; g < LANE_GROUPS; g++)
        v[g] = has_block_sums(kind) ? block_acc[g] : _mm256_add_ps(s->acc[0][g], s->acc[1][g]);
    __m256 even = _mm256_add_ps(_mm256_add_ps(v[0], v[4]), _mm256_add_ps(v[2], v[6]));
    __m256 odd = _mm256_add_ps(_mm256_add_ps(v[1], v[5]), _mm256_add_ps(v[3], v[7]));
    __m256 sum = _mm256_add_ps(even, odd);
    if (has_min(kind))
        sum = _mm256_add_ps(sum, _mm256_add_ps(s->mins[0], s->mins[1]));
    return sum;
}

ALWAYS_INLINE void gemm_tiles(tile_kind kind, int64_t n, const uint8_t *w, size_t w_stride,
                              int64_t n_rows, const uint8_t *x, size_t x_stride, int64_t n_tok,
                              float *y, int64_t y_stride)
{
    int64_t nb = n / QK8_0;
    ellm_q8_0_ext_layout L = ellm_q8_0_ext_layout_for(n);
    chunk C;
    token_sums sums[TOKEN_STEP];
    /* The has_block_sums kinds' accumulators (lane k: blocks i % 8 == k), apart from sums so that
     * a step's share of L1 is 256 bytes a token instead of 576. */
    __m256 block_acc[TOKEN_STEP][LANE_GROUPS];
    __m256i part[TOKEN_STEP]; /* Q8_0: each token's integer of the first half block */
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
            token_view views[TOKEN_STEP];
            for (int t = 0; t < nt; t++) {
                views[t].x = x + (size_t)(t0 + t) * x_stride;
                views[t].ext_d = (const float *)(views[t].x + L.scales_offset);
                views[t].ext_sums = (const int32_t *)(views[t].x + L.block_sums_offset);
                if (has_block_sums(kind))
                    memset(block_acc[t], 0, sizeof block_acc[t]);
                else
                    memset(&sums[t], 0, sizeof sums[t]);
            }
            if (kind == TILE_Q8_0) {
                for (int64_t b = 0; b < nb; b++)
                    sweep_resident_q8_0_halves(rows, b, x + (size_t)t0 * x_stride, x_stride, L,
                                               block_acc, part, nt);
            } else if (has_block_sums(kind)) {
                for (int64_t b = 0; b < nb; b++)
                    sweep_resident(kind, rows, b, x + (size_t)t0 * x_stride, x_stride, L, block_acc,
                                   nt);
            } else {
                for (int64_t b0 = 0; b0 < nb; b0 += CHUNK_BLOCKS) {
                    int kb = nb - b0 < CHUNK_BLOCKS ? (int)(nb - b0) : CHUNK_BLOCKS;
                    decode_chunk(kind, rows, b0, kb, &C);
                    for (int t = 0; t < nt; t++) {
                        sweep_chunk(kind, &C, b0, kb, 0, &views[t], &sums[t]);
                        sweep_chunk(kind, &C, b0, kb, 1, &views[t], &sums[t]);
                    }
                }
            }
            for (int t = 0; t < nt; t++)
                _mm256_maskstore_ps(y + (t0 + t) * y_stride + r0, store_mask,
                                    finish(kind, block_acc[t], &sums[t]));
        }
    }
}

#define DEFINE_GEMM(name, kind)                                                                    \
    void name(int64_t n, const uint8_t *w, size_t w_stride, int64_t n_rows, const uint8_t *x,      \
              size_t x_stride, int64_t n_tok, float *y, int64_t y_stride)                          \
    {                                                                                              \
        gemm_tiles(kind, n, w, w_stride, n_rows, x, x_stride, n_tok, y, y_stride);                 \
    }

DEFINE_GEMM(ellm_gemm_q4_0_avx2, TILE_Q4_0)
DEFINE_GEMM(ellm_gemm_q8_0_avx2, TILE_Q8_0)
DEFINE_GEMM(ellm_gemm_q5_0_avx2, TILE_Q5_0)
DEFINE_GEMM(ellm_gemm_iq4_nl_avx2, TILE_IQ4_NL)
DEFINE_GEMM(ellm_gemm_q4_1_avx2, TILE_Q4_1)
DEFINE_GEMM(ellm_gemm_q5_1_avx2, TILE_Q5_1)
#endif
