/* AVX2 + FMA + F16C dot kernels of Q4_1, Q5_0, Q5_1 and IQ4_NL weights (compiled with those
 * flags; called only on CPUs that have them), and the Q8_1 activation quantizer.
 *
 * One body (dot_rows) serves every format and both the single-row and the four-row kernels: the
 * format and the row count are compile-time constants at each call, so the compiler specializes
 * it. The results equal the scalar kernels' bit for bit. */
#include "quant/kernels.h"

#if defined(ELLM_HAVE_AVX2_KERNELS)
#include <immintrin.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "quant/blocks.h"
#include "quant/lanes_avx2.h"
#include "quant/quant.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

typedef enum weight_kind { KIND_Q4_1, KIND_Q5_0, KIND_Q5_1, KIND_IQ4_NL } weight_kind;

/* The 32 nibbles of a block in value order: low nibbles are values 0..15, high nibbles 16..31. */
static inline __m256i unpack_nibbles(const uint8_t *qs)
{
    const __m128i m15 = _mm_set1_epi8(15);
    __m128i packed = _mm_loadu_si128((const __m128i *)qs);
    __m128i lo = _mm_and_si128(packed, m15);
    __m128i hi = _mm_and_si128(_mm_srli_epi16(packed, 4), m15);
    return _mm256_set_m128i(hi, lo);
}

/* 0xFF in byte j where value j's fifth bit (bit j of the little-endian qh word) is set. */
static inline __m256i fifth_bits(const uint8_t *qh)
{
    int32_t word;
    memcpy(&word, qh, 4);
    /* Byte j takes byte j / 8 of the word, then tests its bit j % 8. */
    const __m256i spread = _mm256_set_epi64x(0x0303030303030303ll, 0x0202020202020202ll,
                                             0x0101010101010101ll, 0);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(word), spread);
    return _mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit);
}

/* Weight block i as 32 int8 levels: unsigned 0..31 for the "_1" formats, signed otherwise. */
ALWAYS_INLINE __m256i decode_block(weight_kind kind, const void *row, int64_t i)
{
    switch (kind) {
    case KIND_Q4_1: return unpack_nibbles(((const block_q4_1 *)row + i)->qs);
    case KIND_Q5_1: {
        const block_q5_1 *b = (const block_q5_1 *)row + i;
        return _mm256_or_si256(unpack_nibbles(b->qs),
                               _mm256_and_si256(fifth_bits(b->qh), _mm256_set1_epi8(0x10)));
    }
    case KIND_Q5_0: {
        const block_q5_0 *b = (const block_q5_0 *)row + i;
        /* q - 16 is the nibble where the fifth bit is set, and the nibble with 0xF0 set (the
         * int8 nibble - 16) where it is clear. */
        return _mm256_or_si256(
            unpack_nibbles(b->qs),
            _mm256_andnot_si256(fifth_bits(b->qh), _mm256_set1_epi8((char)0xF0)));
    }
    case KIND_IQ4_NL:
    default: {
        __m128i table = _mm_loadu_si128((const __m128i *)ellm_kvalues_iq4nl);
        return _mm256_shuffle_epi8(_mm256_set_m128i(table, table),
                                   unpack_nibbles(((const block_iq4_nl *)row + i)->qs));
    }
    }
}

static inline bool has_min(weight_kind kind) { return kind == KIND_Q4_1 || kind == KIND_Q5_1; }

static inline size_t weight_block_bytes(weight_kind kind)
{
    switch (kind) {
    case KIND_Q4_1: return sizeof(block_q4_1);
    case KIND_Q5_1: return sizeof(block_q5_1);
    case KIND_Q5_0: return sizeof(block_q5_0);
    case KIND_IQ4_NL:
    default: return sizeof(block_iq4_nl);
    }
}

/* Sum of the 32 products of weight levels w and activations a, as 8 int32 lanes. */
ALWAYS_INLINE __m256i block_products(weight_kind kind, __m256i w, const int8_t *aqs)
{
    __m256i a = _mm256_loadu_si256((const __m256i *)aqs);
    const __m256i ones = _mm256_set1_epi16(1);
    if (has_min(kind)) /* unsigned levels times signed activations */
        return _mm256_madd_epi16(_mm256_maddubs_epi16(w, a), ones);
    /* Signed levels (at least -127): magnitudes times activations carrying the levels' signs;
     * 2 * 127 * 127 fits int16, so nothing saturates. */
    __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
    return _mm256_madd_epi16(p, ones);
}

/* sum[t] += blocks i .. i + kb - 1 (kb <= 8) of row . x[t] for t < rows, in the scalar kernels'
 * arithmetic (kernels_legacy_scalar.c): each block's products summed exactly in integers, its term (d_w * d_a) * isum (+ m * s for the
 * "_1" formats) formed in that order, and the terms added to one float in block order. Eight
 * blocks at a time: their integer sums land in the lanes of one vector (lane_totals), their
 * terms are formed eight at once and then added lane by lane (add_lanes_in_order). Each
 * activation row goes through the same operations whatever `rows` is, so the four-row results
 * equal four single calls. */
ALWAYS_INLINE void dot_group(weight_kind kind, int rows, int64_t i, int kb, float *sum,
                             const void *row, const void *const *x)
{
    const size_t wb = weight_block_bytes(kind);
    const size_t ab = has_min(kind) ? sizeof(block_q8_1) : sizeof(block_q8_0);
    const size_t a_qs = has_min(kind) ? offsetof(block_q8_1, qs) : offsetof(block_q8_0, qs);
    const uint8_t *w0 = (const uint8_t *)row + (size_t)i * wb;
    __m256i q[8];
    for (int k = 0; k < 8; k++)
        q[k] = k < kb ? decode_block(kind, row, i + k) : _mm256_setzero_si256();
    __m256 dw = group_halves(w0, wb, kb); /* every format here starts with its scale... */
    __m256 mw = has_min(kind) ? group_halves(w0 + 2, wb, kb) /* ...the "_1" ones then m */
                              : _mm256_setzero_ps();
    for (int t = 0; t < rows; t++) {
        const uint8_t *a0 = (const uint8_t *)x[t] + (size_t)i * ab;
        __m256i p[8];
        for (int k = 0; k < 8; k++)
            p[k] = k < kb ? block_products(kind, q[k], (const int8_t *)(a0 + k * ab + a_qs))
                          : _mm256_setzero_si256();
        __m256 d = _mm256_mul_ps(dw, group_halves(a0, ab, kb));
        __m256 terms = _mm256_mul_ps(d, _mm256_cvtepi32_ps(lane_totals(p)));
        if (has_min(kind))
            terms = _mm256_add_ps(terms, _mm256_mul_ps(mw, group_halves(a0 + 2, ab, kb)));
        sum[t] = add_lanes_in_order(sum[t], terms);
    }
}

ALWAYS_INLINE void dot_rows(weight_kind kind, int rows, int64_t n, float *out, const void *row,
                            const void *const *x)
{
    int64_t nb = n / 32, i = 0;
    float sum[4];
    for (int t = 0; t < rows; t++)
        sum[t] = 0;
    for (; i + 8 <= nb; i += 8)
        dot_group(kind, rows, i, 8, sum, row, x);
    if (i < nb)
        dot_group(kind, rows, i, (int)(nb - i), sum, row, x);
    for (int t = 0; t < rows; t++)
        out[t] = sum[t];
}

void ellm_vec_dot_q4_1_avx2(int64_t n, float *out, const void *row, const void *x)
{
    dot_rows(KIND_Q4_1, 1, n, out, row, &x);
}
void ellm_vec_dot_q5_0_avx2(int64_t n, float *out, const void *row, const void *x)
{
    dot_rows(KIND_Q5_0, 1, n, out, row, &x);
}
void ellm_vec_dot_q5_1_avx2(int64_t n, float *out, const void *row, const void *x)
{
    dot_rows(KIND_Q5_1, 1, n, out, row, &x);
}
void ellm_vec_dot_iq4_nl_avx2(int64_t n, float *out, const void *row, const void *x)
{
    dot_rows(KIND_IQ4_NL, 1, n, out, row, &x);
}
void ellm_vec_dot_q4_1_x4_avx2(int64_t n, float *out, const void *row, const void *const *x)
{
    dot_rows(KIND_Q4_1, 4, n, out, row, x);
}
void ellm_vec_dot_q5_0_x4_avx2(int64_t n, float *out, const void *row, const void *const *x)
{
    dot_rows(KIND_Q5_0, 4, n, out, row, x);
}
void ellm_vec_dot_q5_1_x4_avx2(int64_t n, float *out, const void *row, const void *const *x)
{
    dot_rows(KIND_Q5_1, 4, n, out, row, x);
}
void ellm_vec_dot_iq4_nl_x4_avx2(int64_t n, float *out, const void *row, const void *const *x)
{
    dot_rows(KIND_IQ4_NL, 4, n, out, row, x);
}

/* The decode path of Q5_0 and IQ4_NL: the activation row in the extended Q8_0 layout carries
 * the scales as floats and each block's sum of activations, so no activation scale is converted,
 * and Q5_0 multiplies its unsigned levels q (0..31, no sign moves) and subtracts 16 x the block's
 * sum. The integers, scale products and float additions are dot_rows', so the results equal the
 * plain kernels' (and the scalar ones) bit for bit. */
ALWAYS_INLINE float ext_group(weight_kind kind, const void *row, const int8_t *a, const float *da,
                              const int32_t *block_sums, int64_t i, int kb, float sum)
{
    const size_t wb = weight_block_bytes(kind);
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i p[8];
    for (int k = 0; k < 8; k++) {
        if (k >= kb) {
            p[k] = _mm256_setzero_si256();
        } else if (kind == KIND_Q5_0) {
            const block_q5_0 *b = (const block_q5_0 *)row + i + k;
            __m256i q = _mm256_or_si256(
                unpack_nibbles(b->qs), _mm256_and_si256(fifth_bits(b->qh), _mm256_set1_epi8(0x10)));
            __m256i ak = _mm256_loadu_si256((const __m256i *)(a + (i + k) * 32));
            p[k] = _mm256_madd_epi16(_mm256_maddubs_epi16(q, ak), ones);
        } else {
            p[k] = block_products(kind, decode_block(kind, row, i + k), a + (i + k) * 32);
        }
    }
    __m256i totals = lane_totals(p);
    if (kind == KIND_Q5_0)
        totals = _mm256_sub_epi32(totals, _mm256_slli_epi32(group_i32(block_sums + i, kb), 4));
    __m256 dw = group_halves((const uint8_t *)row + (size_t)i * wb, wb, kb);
    __m256 d = _mm256_mul_ps(dw, _mm256_castsi256_ps(group_i32((const int32_t *)(da + i), kb)));
    return add_lanes_in_order(sum, _mm256_mul_ps(d, _mm256_cvtepi32_ps(totals)));
}

ALWAYS_INLINE void dot_ext(weight_kind kind, int64_t n, float *out, const void *row, const void *x)
{
    const ellm_q8_0_ext_layout L = ellm_q8_0_ext_layout_for(n);
    const int8_t *a = x;
    const float *da = (const float *)((const uint8_t *)x + L.scales_offset);
    const int32_t *block_sums = (const int32_t *)((const uint8_t *)x + L.block_sums_offset);
    int64_t nb = n / 32, i = 0;
    float sum = 0;
    for (; i + 8 <= nb; i += 8)
        sum = ext_group(kind, row, a, da, block_sums, i, 8, sum);
    if (i < nb)
        sum = ext_group(kind, row, a, da, block_sums, i, (int)(nb - i), sum);
    *out = sum;
}

void ellm_vec_dot_q5_0_ext_avx2(int64_t n, float *out, const void *row, const void *x)
{
    dot_ext(KIND_Q5_0, n, out, row, x);
}
void ellm_vec_dot_iq4_nl_ext_avx2(int64_t n, float *out, const void *row, const void *x)
{
    dot_ext(KIND_IQ4_NL, n, out, row, x);
}

/* roundf (halves away from zero) of 8 floats, exactly: truncate, then step away from zero where
 * the dropped fraction (exact in float) is at least one half. */
static inline __m256 round_half_away(__m256 v)
{
    const __m256 sign_mask = _mm256_set1_ps(-0.0f);
    __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256 frac = _mm256_andnot_ps(sign_mask, _mm256_sub_ps(v, t));
    __m256 away = _mm256_or_ps(_mm256_and_ps(v, sign_mask), _mm256_set1_ps(1.0f));
    __m256 step = _mm256_and_ps(_mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ), away);
    return _mm256_add_ps(t, step);
}

/* The reference Q8_1 quantizer's arithmetic (the same amax, scale, product and rounding for each
 * value) eight values at a time, so the bytes are identical. */
void ellm_quantize_row_q8_1_avx2(const float *x, void *dst, int64_t n)
{
    block_q8_1 *b = dst;
    const __m256 sign_mask = _mm256_set1_ps(-0.0f);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t i = 0; i < n / QK8_1; i++) {
        const float *xb = x + i * QK8_1;
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
        __m256 vid = _mm256_set1_ps(id);
        __m256i q[4];
        for (int k = 0; k < 4; k++)
            q[k] = _mm256_cvttps_epi32(round_half_away(_mm256_mul_ps(v[k], vid)));
        /* Sum of the quants. */
        __m256i s8 = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s8), _mm256_extracti128_si256(s8, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(1, 0, 3, 2)));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(2, 3, 0, 1)));
        int sum = _mm_cvtsi128_si32(s4);
        /* Narrow to int8 (the values are within -127..127); packs work within 128-bit lanes,
         * so the dwords come out interleaved and are put back in order. */
        __m256i p16a = _mm256_packs_epi32(q[0], q[1]), p16b = _mm256_packs_epi32(q[2], q[3]);
        __m256i p8 = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p16a, p16b), order);
        _mm256_storeu_si256((__m256i *)b[i].qs, p8);
        b[i].d = ellm_f32_to_f16(d);
        b[i].s = ellm_f32_to_f16(ellm_f16_to_f32(b[i].d) * (float)sum);
    }
}
#endif
