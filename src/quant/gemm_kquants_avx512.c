/* AVX-512 + VNNI tiles for Q4_K and Q6_K weights against Q8_K activations, 16 weight rows in
 * the vector lanes (the scheme of gemm_avx512.c): each super-block of the 16 rows is transposed
 * once so that one dpbusd against 4 broadcast activation bytes adds 4 products to every row's
 * exact sub-block sum. The sub-block scales are applied in integers, the mins through the
 * activation block sums, and the float tail is the scalar kernel's, step for step, so every
 * result is bit-identical to ellm_vec_dot_q4_K_scalar / ellm_vec_dot_q6_K_scalar for decode and
 * prefill alike. */
#include "quant/kernels.h"

#if defined(ELLM_HAVE_AVX2_KERNELS)
#include <immintrin.h>
#include <string.h>

#include "quant/blocks.h"
#include "quant/lanes_avx512.h"
#include "quant/quant.h"

/* A Q4_K super-block's scales of 16 rows, one row per lane. */
typedef struct q4_K_scales {
    __m512i sc[8];   /* sub-block scales, int32 */
    __m512i mins[8]; /* sub-block mins, twice as int16 (m, m), for dpwssd with bsum pairs */
    __m512 d, dmin;
} q4_K_scales;

/* pshufb index of a 32-bit word at position q of a 128-bit lane: (byte k, 0, byte k, 0). */
static inline int32_t pair_index(int q, int k)
{
    uint32_t b = (uint32_t)(4 * q + k);
    return (int32_t)(b | 0x8000u | b << 16 | 0x80000000u); /* top bit set: a zero byte */
}

/* Byte k of each lane's 32-bit word as the int16 pair (byte k, byte k). */
static inline __m512i byte_as_int16_pair(__m512i v, int k)
{
    return _mm512_shuffle_epi8(v, _mm512_set4_epi32(pair_index(3, k), pair_index(2, k),
                                                    pair_index(1, k), pair_index(0, k)));
}

static inline void q4_K_scales_of(const row_group *G, size_t at, q4_K_scales *s)
{
    const __m512i six = _mm512_set1_epi32(0x3F3F3F3F), nib = _mm512_set1_epi32(0x0F0F0F0F);
    const __m512i two = _mm512_set1_epi32(0x03030303), byte = _mm512_set1_epi32(0xFF);
    __m512i z[4];
    transpose_16x16(G->p, at + offsetof(block_q4_K, scales), z);
    /* The 12-byte packing read as three 32-bit words per row (blocks.h): scales 0-3 and mins 0-3
     * in the low 6 bits of words 0 and 1, scales and mins 4-7 from the nibbles of word 2 and the
     * top 2 bits of words 0 and 1. */
    __m512i s_lo = _mm512_and_si512(z[0], six), m_lo = _mm512_and_si512(z[1], six);
    __m512i s_hi = _mm512_or_si512(
        _mm512_and_si512(z[2], nib),
        _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(z[0], 6), two), 4));
    __m512i m_hi = _mm512_or_si512(
        _mm512_and_si512(_mm512_srli_epi32(z[2], 4), nib),
        _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(z[1], 6), two), 4));
    for (int k = 0; k < 4; k++) {
        s->sc[k] = _mm512_and_si512(_mm512_srli_epi32(s_lo, 8 * k), byte);
        s->sc[4 + k] = _mm512_and_si512(_mm512_srli_epi32(s_hi, 8 * k), byte);
        s->mins[k] = byte_as_int16_pair(m_lo, k);
        s->mins[4 + k] = byte_as_int16_pair(m_hi, k);
    }
    __m512i dd = gather4(G, at + offsetof(block_q4_K, d)); /* d in the low half, dmin above */
    s->d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dd));
    s->dmin = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dd, 16)));
}

/* Super-block i of the 16 rows against nt tokens. */
static inline void q4_K_block(const row_group *G, int64_t i, const uint8_t *x, size_t x_stride,
                              int nt, __m512 *sum, const void *ctx)
{
    (void)ctx;
    const __m512i low = _mm512_set1_epi8(0x0F);
    __m512i isum[TOKEN_STEP];
    size_t at = (size_t)i * sizeof(block_q4_K);
    q4_K_scales s;
    q4_K_scales_of(G, at, &s);
    for (int t = 0; t < nt; t++)
        isum[t] = _mm512_setzero_si512();
    /* Chunk c: 32 bytes of quants per row, low nibbles sub-block 2c, high nibbles 2c + 1. */
    for (int c = 0; c < 4; c++) {
        __m512i z[8], lo[8], hi[8];
        size_t qs = at + offsetof(block_q4_K, qs) + 32 * (size_t)c;
        transpose_16x16(G->p, qs, z);
        transpose_16x16(G->p, qs + 16, z + 4);
        for (int g = 0; g < 8; g++) {
            lo[g] = _mm512_and_si512(z[g], low);
            hi[g] = _mm512_and_si512(_mm512_srli_epi16(z[g], 4), low);
        }
        for (int t = 0; t < nt; t++) {
            const block_q8_K *a = (const block_q8_K *)(x + (size_t)t * x_stride);
            const int8_t *ya = a[i].qs + 64 * c;
            __m512i s0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo[0], broadcast4(ya));
            __m512i s1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), hi[0], broadcast4(ya + 32));
            for (int g = 1; g < 8; g++) {
                s0 = _mm512_dpbusd_epi32(s0, lo[g], broadcast4(ya + 4 * g));
                s1 = _mm512_dpbusd_epi32(s1, hi[g], broadcast4(ya + 32 + 4 * g));
            }
            isum[t] = _mm512_add_epi32(isum[t],
                                       _mm512_add_epi32(_mm512_mullo_epi32(s.sc[2 * c], s0),
                                                        _mm512_mullo_epi32(s.sc[2 * c + 1], s1)));
        }
    }
    for (int t = 0; t < nt; t++) {
        const block_q8_K *a = (const block_q8_K *)(x + (size_t)t * x_stride);
        /* sum over j of m_j × (bsums[2j] + bsums[2j + 1]) */
        __m512i summ = _mm512_setzero_si512();
        for (int j = 0; j < 8; j++)
            summ = _mm512_dpwssd_epi32(summ, s.mins[j], broadcast4(&a[i].bsums[2 * j]));
        __m512 ad = _mm512_set1_ps(a[i].d);
        __m512 full = _mm512_mul_ps(_mm512_mul_ps(ad, s.d), _mm512_cvtepi32_ps(isum[t]));
        __m512 mins = _mm512_mul_ps(_mm512_mul_ps(ad, s.dmin), _mm512_cvtepi32_ps(summ));
        sum[t] = _mm512_add_ps(sum[t], _mm512_sub_ps(full, mins));
    }
}

void ellm_gemm_q4_K_avx512(int64_t n, const uint8_t *w, size_t w_stride, int64_t n_rows,
                           const uint8_t *x, size_t x_stride, int64_t n_tok, float *y,
                           int64_t y_stride)
{
    gemm_rows_in_lanes(n / QK_K, sizeof(block_q4_K), w, w_stride, n_rows, x, x_stride, n_tok, y,
                       y_stride, q4_K_block, NULL);
}

/* A Q6_K super-block's 16 signed sub-block scales of 16 rows, one row per lane. */
typedef struct q6_K_scales {
    __m512i sc[16];   /* int32 */
    __m512i pairs[8]; /* (scales[2k], scales[2k + 1]) as int16, for dpwssd with bsum pairs */
    __m512 d;
} q6_K_scales;

static inline void q6_K_scales_of(const row_group *G, size_t at, q6_K_scales *s)
{
    const __m512i low16 = _mm512_set1_epi32(0xFFFF);
    __m512i z[4];
    transpose_16x16(G->p, at + offsetof(block_q6_K, scales), z);
    for (int k = 0; k < 4; k++) {
        for (int j = 0; j < 4; j++) /* byte j of each word, sign-extended */
            s->sc[4 * k + j] = _mm512_srai_epi32(_mm512_slli_epi32(z[k], 24 - 8 * j), 24);
        /* 16-bit words (s0, s2) and (s1, s3) of each 32-bit lane, sign-extended */
        __m512i even = _mm512_srai_epi16(_mm512_slli_epi16(z[k], 8), 8);
        __m512i odd = _mm512_srai_epi16(z[k], 8);
        s->pairs[2 * k] = _mm512_or_si512(_mm512_and_si512(even, low16),
                                          _mm512_slli_epi32(odd, 16));
        s->pairs[2 * k + 1] = _mm512_or_si512(_mm512_srli_epi32(even, 16),
                                              _mm512_andnot_si512(low16, odd));
    }
    /* The scale is the block's last 2 bytes: read the 4 ending there, so no lane reads past it. */
    __m512i dd = gather4(G, at + offsetof(block_q6_K, d) - 2);
    s->d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dd, 16)));
}

/* Super-block i of the 16 rows against nt tokens. */
static inline void q6_K_block(const row_group *G, int64_t i, const uint8_t *x, size_t x_stride,
                              int nt, __m512 *sum, const void *ctx)
{
    (void)ctx;
    const __m512i nib = _mm512_set1_epi8(0x0F);
    __m512i isum[TOKEN_STEP];
    size_t at = (size_t)i * sizeof(block_q6_K);
    q6_K_scales s;
    q6_K_scales_of(G, at, &s);
    for (int t = 0; t < nt; t++)
        isum[t] = _mm512_setzero_si512();
    for (int h = 0; h < 2; h++) {
        /* ql[l], ql[l + 32] and qh[l] of this half for l = 4g..4g+3, transposed. */
        __m512i ql0[8], ql1[8], qh[8];
        size_t ql = at + offsetof(block_q6_K, ql) + 64 * (size_t)h;
        size_t qhi = at + offsetof(block_q6_K, qh) + 32 * (size_t)h;
        transpose_16x16(G->p, ql, ql0);
        transpose_16x16(G->p, ql + 16, ql0 + 4);
        transpose_16x16(G->p, ql + 32, ql1);
        transpose_16x16(G->p, ql + 48, ql1 + 4);
        transpose_16x16(G->p, qhi, qh);
        transpose_16x16(G->p, qhi + 16, qh + 4);
        /* Quarter k: values 32k + l, sub-blocks 2k (l < 16) and 2k + 1 of the half; low 4 bits
         * from ql[l] (k = 0, 2) or ql[l + 32] (k = 1, 3), low or high nibble for k < 2 or
         * k >= 2, top 2 bits from bits 2k, 2k + 1 of qh[l]. */
        for (int k = 0; k < 4; k++) {
            __m512i q[8];
            const __m512i top = _mm512_set1_epi8((char)(3 << (2 * k)));
            for (int g = 0; g < 8; g++) {
                __m512i src = k & 1 ? ql1[g] : ql0[g];
                __m512i lo4 = k < 2 ? src : _mm512_srli_epi16(src, 4);
                __m512i hi2 = _mm512_and_si512(qh[g], top);
                hi2 = k == 0   ? _mm512_slli_epi16(hi2, 4)
                      : k == 1 ? _mm512_slli_epi16(hi2, 2)
                      : k == 3 ? _mm512_srli_epi16(hi2, 2)
                               : hi2;
                q[g] = _mm512_or_si512(_mm512_and_si512(lo4, nib), hi2);
            }
            __m512i sc0 = s.sc[8 * h + 2 * k], sc1 = s.sc[8 * h + 2 * k + 1];
            for (int t = 0; t < nt; t++) {
                const block_q8_K *a = (const block_q8_K *)(x + (size_t)t * x_stride);
                const int8_t *ya = a[i].qs + 128 * h + 32 * k;
                __m512i p0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q[0], broadcast4(ya));
                __m512i p1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q[4], broadcast4(ya + 16));
                for (int g = 1; g < 4; g++) {
                    p0 = _mm512_dpbusd_epi32(p0, q[g], broadcast4(ya + 4 * g));
                    p1 = _mm512_dpbusd_epi32(p1, q[4 + g], broadcast4(ya + 16 + 4 * g));
                }
                isum[t] = _mm512_add_epi32(isum[t], _mm512_add_epi32(_mm512_mullo_epi32(sc0, p0),
                                                                     _mm512_mullo_epi32(sc1, p1)));
            }
        }
    }
    for (int t = 0; t < nt; t++) {
        const block_q8_K *a = (const block_q8_K *)(x + (size_t)t * x_stride);
        /* The stored q is value + 32: 32 × sum of scale × activation sum comes off. */
        __m512i offset = _mm512_setzero_si512();
        for (int k = 0; k < 8; k++)
            offset = _mm512_dpwssd_epi32(offset, s.pairs[k], broadcast4(&a[i].bsums[2 * k]));
        __m512i total = _mm512_sub_epi32(isum[t], _mm512_slli_epi32(offset, 5));
        __m512 scale = _mm512_mul_ps(_mm512_set1_ps(a[i].d), s.d);
        sum[t] = _mm512_add_ps(sum[t], _mm512_mul_ps(scale, _mm512_cvtepi32_ps(total)));
    }
}

void ellm_gemm_q6_K_avx512(int64_t n, const uint8_t *w, size_t w_stride, int64_t n_rows,
                           const uint8_t *x, size_t x_stride, int64_t n_tok, float *y,
                           int64_t y_stride)
{
    gemm_rows_in_lanes(n / QK_K, sizeof(block_q6_K), w, w_stride, n_rows, x, x_stride, n_tok, y,
                       y_stride, q6_K_block, NULL);
}
#endif
