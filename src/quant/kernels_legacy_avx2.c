/* AVX2 + FMA + F16C dot kernels of Q4_1, Q5_0, Q5_1 and IQ4_NL weights (compiled with those
 * flags; called only on CPUs that have them), and the Q8_1 activation quantizer.
 *
 * One body (dot_rows) serves every format and both the single-row and the four-row kernels: the
 * format and the row count are compile-time constants at each call, so the compiler specializes
 * it, and each activation row goes through exactly the same operations in the same order in
 * both, which makes the four-row results bit-identical to four single calls. Each block's integer
 * sum is exact; only the float accumulation order differs from the scalar kernels. */
#include "quant/kernels.h"

#if defined(ELLM_HAVE_AVX2_KERNELS)
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "quant/blocks.h"
#include "quant/lanes_avx2.h"
#include "quant/prefetch.h"
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

/* A block's two leading halves as floats in lanes 0 and 1 (the weight's scale and minimum, the
 * activation's scale and s; lane 1 is unused for the formats without them): one 32-bit load and
 * one vector conversion instead of two scalar ones, which would compete for the shuffle port. */
static inline __m128 leading_halves(const void *block)
{
    int32_t pair;
    memcpy(&pair, block, 4);
    return _mm_cvtph_ps(_mm_cvtsi32_si128(pair));
}

/* Weight block i as 32 int8 levels (unsigned 0..31 for the "_1" formats, signed otherwise), with
 * its scale (lane 0) and minimum (lane 1) in *dm. */
ALWAYS_INLINE __m256i decode_block(weight_kind kind, const void *row, int64_t i, __m128 *dm)
{
    switch (kind) {
    case KIND_Q4_1: {
        const block_q4_1 *b = (const block_q4_1 *)row + i;
        *dm = leading_halves(b);
        return unpack_nibbles(b->qs);
    }
    case KIND_Q5_1: {
        const block_q5_1 *b = (const block_q5_1 *)row + i;
        *dm = leading_halves(b);
        return _mm256_or_si256(unpack_nibbles(b->qs),
                               _mm256_and_si256(fifth_bits(b->qh), _mm256_set1_epi8(0x10)));
    }
    case KIND_Q5_0: {
        const block_q5_0 *b = (const block_q5_0 *)row + i;
        *dm = leading_halves(b);
        /* q - 16 is the nibble where the fifth bit is set, and the nibble with 0xF0 set (the
         * int8 nibble - 16) where it is clear. */
        return _mm256_or_si256(
            unpack_nibbles(b->qs),
            _mm256_andnot_si256(fifth_bits(b->qh), _mm256_set1_epi8((char)0xF0)));
    }
    case KIND_IQ4_NL:
    default: {
        const block_iq4_nl *b = (const block_iq4_nl *)row + i;
        *dm = leading_halves(b);
        __m128i table = _mm_loadu_si128((const __m128i *)ellm_kvalues_iq4nl);
        return _mm256_shuffle_epi8(_mm256_set_m128i(table, table), unpack_nibbles(b->qs));
    }
    }
}

/* Activation block i: its quants, with its scale (lane 0) and, for Q8_1, s (lane 1) in *ds. */
ALWAYS_INLINE const int8_t *activation_block(weight_kind kind, const void *x, int64_t i, __m128 *ds)
{
    if (kind == KIND_Q4_1 || kind == KIND_Q5_1) {
        const block_q8_1 *a = (const block_q8_1 *)x + i;
        *ds = leading_halves(a);
        return a->qs;
    }
    const block_q8_0 *a = (const block_q8_0 *)x + i;
    *ds = leading_halves(a);
    return a->qs;
}

/* Sum of the 32 products of weight levels w and activations a, as 8 int32 lanes. */
ALWAYS_INLINE __m256i block_products(weight_kind kind, __m256i w, const int8_t *aqs)
{
    __m256i a = _mm256_loadu_si256((const __m256i *)aqs);
    const __m256i ones = _mm256_set1_epi16(1);
    if (kind == KIND_Q4_1 || kind == KIND_Q5_1) /* unsigned levels times signed activations */
        return _mm256_madd_epi16(_mm256_maddubs_epi16(w, a), ones);
    /* Signed levels (at least -127): magnitudes times activations carrying the levels' signs;
     * 2 * 127 * 127 fits int16, so nothing saturates. */
    __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
    return _mm256_madd_epi16(p, ones);
}

/* out[t] = row . x[t] for t < rows. Two blocks per step into two accumulators, so consecutive
 * FMAs do not wait on each other. One multiplication gives both a block's d_w * d_a (lane 0) and
 * its "_1" minimum term m * s (lane 1); the minimum terms go to two sums (even and odd blocks),
 * so their additions do not form one long dependency chain. */
ALWAYS_INLINE void dot_rows(weight_kind kind, int rows, int64_t n, float *out, const void *row,
                            const void *const *x)
{
    const bool has_min = kind == KIND_Q4_1 || kind == KIND_Q5_1;
    int64_t nb = n / 32, i = 0;
    __m256 acc0[4], acc1[4];
    __m128 mins0[4], mins1[4];
    for (int t = 0; t < rows; t++) {
        acc0[t] = acc1[t] = _mm256_setzero_ps();
        mins0[t] = mins1[t] = _mm_setzero_ps();
    }
    const size_t block_bytes = kind == KIND_Q4_1   ? sizeof(block_q4_1)
                               : kind == KIND_Q5_0 ? sizeof(block_q5_0)
                               : kind == KIND_Q5_1 ? sizeof(block_q5_1)
                                                   : sizeof(block_iq4_nl);
    for (; i + 2 <= nb; i += 2) {
        __m128 dm0, dm1;
        if (rows == 1)
            ellm_prefetch_ahead((const uint8_t *)row + (size_t)i * block_bytes,
                                2 * (int)block_bytes);
        __m256i q0 = decode_block(kind, row, i, &dm0);
        __m256i q1 = decode_block(kind, row, i + 1, &dm1);
        for (int t = 0; t < rows; t++) {
            __m128 ds0, ds1;
            const int8_t *a0 = activation_block(kind, x[t], i, &ds0);
            const int8_t *a1 = activation_block(kind, x[t], i + 1, &ds1);
            __m128 s0 = _mm_mul_ps(dm0, ds0), s1 = _mm_mul_ps(dm1, ds1);
            __m256i p0 = block_products(kind, q0, a0), p1 = block_products(kind, q1, a1);
            acc0[t] = _mm256_fmadd_ps(_mm256_broadcastss_ps(s0), _mm256_cvtepi32_ps(p0), acc0[t]);
            acc1[t] = _mm256_fmadd_ps(_mm256_broadcastss_ps(s1), _mm256_cvtepi32_ps(p1), acc1[t]);
            if (has_min) {
                mins0[t] = _mm_add_ps(mins0[t], s0);
                mins1[t] = _mm_add_ps(mins1[t], s1);
            }
        }
    }
    for (; i < nb; i++) {
        __m128 dm;
        __m256i q = decode_block(kind, row, i, &dm);
        for (int t = 0; t < rows; t++) {
            __m128 ds;
            const int8_t *a = activation_block(kind, x[t], i, &ds);
            __m128 sc = _mm_mul_ps(dm, ds);
            __m256i p = block_products(kind, q, a);
            acc0[t] = _mm256_fmadd_ps(_mm256_broadcastss_ps(sc), _mm256_cvtepi32_ps(p), acc0[t]);
            if (has_min)
                mins0[t] = _mm_add_ps(mins0[t], sc);
        }
    }
    for (int t = 0; t < rows; t++) {
        float sum = hsum256(_mm256_add_ps(acc0[t], acc1[t]));
        if (has_min) {
            __m128 m = _mm_add_ps(mins0[t], mins1[t]);
            sum += _mm_cvtss_f32(_mm_shuffle_ps(m, m, 1)); /* lane 1: the minimum terms */
        }
        out[t] = sum;
    }
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
