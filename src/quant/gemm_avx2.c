/* AVX2 tiles of weight rows × tokens for Q4_0 and Q8_0 weights against extended Q8_0 activations
 * (quant.h). Each (row, token) value is computed with exactly the integer lane sums, scale
 * products and accumulation order of the single-row kernels in kernels_avx2.c, so results are
 * bit-identical to them whatever the tile shape; only the work around them is shared:
 *  - Q4_0 nibbles stay unsigned (0..15) so one maddubs multiplies them with the signed
 *    activations, and the precomputed 8 × activation sums remove the offset of 8 per lane;
 *  - activation scales come as floats, weight rows are decoded once for four tokens. */
#include "quant/kernels.h"

#if defined(ELLM_HAVE_AVX2_KERNELS)
#include <immintrin.h>
#include <pthread.h>

#include "quant/blocks.h"
#include "quant/lanes_avx2.h"
#include "quant/quant.h"

/* Weight scales as floats by table: a broadcast from memory costs no vector ALU slot, where the
 * F16C conversion of one scalar takes three. Entries are exactly _cvtsh_ss of their index. */
static float half_table[1 << 16];
static pthread_once_t half_table_once = PTHREAD_ONCE_INIT;

static void fill_half_table(void)
{
    for (uint32_t h = 0; h < (1u << 16); h++)
        half_table[h] = _cvtsh_ss((unsigned short)h);
}

void ellm_gemm_avx2_init(void) { pthread_once(&half_table_once, fill_half_table); }

/* dw × da broadcast to all lanes: the same single float product the single-row kernels form. */
static inline __m256 block_scale(uint16_t wd, const float *ad)
{
    return _mm256_mul_ps(_mm256_broadcast_ss(&half_table[wd]), _mm256_broadcast_ss(ad));
}

static inline __m256 weight_scale(uint16_t wd) { return _mm256_broadcast_ss(&half_table[wd]); }

/* One token's view of an extended activation row. */
typedef struct act_row {
    const int8_t *qs;
    const float *d;
    const int32_t *sum8;
} act_row;

static inline act_row act_at(const uint8_t *x, const ellm_q8_0_ext_layout *L)
{
    act_row a = {(const int8_t *)x, (const float *)(x + L->scales_offset),
                 (const int32_t *)(x + L->sums_offset)};
    return a;
}

/* The 32 nibbles of a block as unsigned bytes: low nibbles (values 0..15) in the low half, high
 * nibbles (values 16..31) in the high half, the order the signed unpack uses. */
static inline __m256i q4_nibbles(const block_q4_0 *b)
{
    __m256i packed = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)b->qs));
    __m256i shifted = _mm256_srlv_epi64(packed, _mm256_set_epi64x(4, 4, 0, 0));
    return _mm256_and_si256(shifted, _mm256_set1_epi8(0x0F));
}

/* Lane j = sum over activations 4j..4j+3 of (nibble - 8) * activation: the same integers the
 * signed kernel forms. Pair sums reach at most 2 * 15 * 127, so maddubs never saturates. */
static inline __m256i q4_lanes(__m256i nib, const act_row *a, int64_t i)
{
    __m256i act = _mm256_loadu_si256((const __m256i *)(a->qs + 32 * i));
    __m256i pairs = _mm256_maddubs_epi16(nib, act);
    __m256i lanes = _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
    return _mm256_sub_epi32(lanes, _mm256_loadu_si256((const __m256i *)(a->sum8 + 8 * i)));
}

static void q4_0_row_x1(int64_t nb, const block_q4_0 *w, const act_row *a, float *out)
{
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        __m256i p0 = q4_lanes(q4_nibbles(&w[i]), a, i);
        __m256i p1 = q4_lanes(q4_nibbles(&w[i + 1]), a, i + 1);
        __m256 d0 = block_scale(w[i].d, &a->d[i]);
        __m256 d1 = block_scale(w[i + 1].d, &a->d[i + 1]);
        acc0 = _mm256_fmadd_ps(d0, _mm256_cvtepi32_ps(p0), acc0);
        acc1 = _mm256_fmadd_ps(d1, _mm256_cvtepi32_ps(p1), acc1);
    }
    for (; i < nb; i++) {
        __m256i p = q4_lanes(q4_nibbles(&w[i]), a, i);
        __m256 d = block_scale(w[i].d, &a->d[i]);
        acc0 = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc0);
    }
    *out = hsum256(_mm256_add_ps(acc0, acc1));
}

/* Four tokens of one row. Each block is finished for all four tokens before the next is decoded,
 * so only one decoded block and its scale are live beside the eight accumulators (the 16 AVX2
 * registers then hold everything without spilling). */
static inline void q4_0_block_x4(const block_q4_0 *w, const act_row *a, int64_t i, __m256 *acc)
{
    __m256i nib = q4_nibbles(w);
    __m256 dw = weight_scale(w->d);
    for (int t = 0; t < 4; t++) {
        __m256 d = _mm256_mul_ps(dw, _mm256_broadcast_ss(&a[t].d[i]));
        acc[t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(q4_lanes(nib, &a[t], i)), acc[t]);
    }
}

static void q4_0_row_x4(int64_t nb, const block_q4_0 *w, const act_row *a, float *out,
                        int64_t out_stride)
{
    __m256 acc0[4], acc1[4];
    for (int t = 0; t < 4; t++)
        acc0[t] = acc1[t] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        q4_0_block_x4(&w[i], a, i, acc0);
        q4_0_block_x4(&w[i + 1], a, i + 1, acc1);
    }
    if (i < nb)
        q4_0_block_x4(&w[i], a, i, acc0);
    for (int t = 0; t < 4; t++)
        out[t * out_stride] = hsum256(_mm256_add_ps(acc0[t], acc1[t]));
}

/* Lane j = sum over 4j..4j+3 of weight * activation, as the single-row Q8_0 kernel forms it:
 * |w| (computed once per weight block) times the activation carrying w's sign. */
static inline __m256i q8_lanes(__m256i wabs, __m256i wq, const act_row *a, int64_t i)
{
    __m256i sa = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(a->qs + 32 * i)), wq);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(wabs, sa), _mm256_set1_epi16(1));
}

static void q8_0_row_x1(int64_t nb, const block_q8_0 *w, const act_row *a, float *out)
{
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        __m256i w0 = _mm256_loadu_si256((const __m256i *)w[i].qs);
        __m256i w1 = _mm256_loadu_si256((const __m256i *)w[i + 1].qs);
        __m256i p0 = q8_lanes(_mm256_sign_epi8(w0, w0), w0, a, i);
        __m256i p1 = q8_lanes(_mm256_sign_epi8(w1, w1), w1, a, i + 1);
        __m256 d0 = block_scale(w[i].d, &a->d[i]);
        __m256 d1 = block_scale(w[i + 1].d, &a->d[i + 1]);
        acc0 = _mm256_fmadd_ps(d0, _mm256_cvtepi32_ps(p0), acc0);
        acc1 = _mm256_fmadd_ps(d1, _mm256_cvtepi32_ps(p1), acc1);
    }
    for (; i < nb; i++) {
        __m256i w0 = _mm256_loadu_si256((const __m256i *)w[i].qs);
        __m256i p = q8_lanes(_mm256_sign_epi8(w0, w0), w0, a, i);
        __m256 d = block_scale(w[i].d, &a->d[i]);
        acc0 = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc0);
    }
    *out = hsum256(_mm256_add_ps(acc0, acc1));
}

static inline void q8_0_block_x4(const block_q8_0 *w, const act_row *a, int64_t i, __m256 *acc)
{
    __m256i wq = _mm256_loadu_si256((const __m256i *)w->qs);
    __m256i wabs = _mm256_sign_epi8(wq, wq);
    __m256 dw = weight_scale(w->d);
    for (int t = 0; t < 4; t++) {
        __m256 d = _mm256_mul_ps(dw, _mm256_broadcast_ss(&a[t].d[i]));
        acc[t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(q8_lanes(wabs, wq, &a[t], i)), acc[t]);
    }
}

/* Four tokens of one row, block by block as q4_0_row_x4. */
static void q8_0_row_x4(int64_t nb, const block_q8_0 *w, const act_row *a, float *out,
                        int64_t out_stride)
{
    __m256 acc0[4], acc1[4];
    for (int t = 0; t < 4; t++)
        acc0[t] = acc1[t] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        q8_0_block_x4(&w[i], a, i, acc0);
        q8_0_block_x4(&w[i + 1], a, i + 1, acc1);
    }
    if (i < nb)
        q8_0_block_x4(&w[i], a, i, acc0);
    for (int t = 0; t < 4; t++)
        out[t * out_stride] = hsum256(_mm256_add_ps(acc0[t], acc1[t]));
}

/* Tokens in groups of four (each weight row decoded once per group, the group's activations
 * staying in L1 across the tile's rows), then the remaining tokens one by one. */
#define DEFINE_GEMM(name, block_t, row_x1, row_x4)                                               \
    void name(int64_t n, const uint8_t *w, size_t w_stride, int64_t n_rows, const uint8_t *x,     \
              size_t x_stride, int64_t n_tok, float *y, int64_t y_stride)                         \
    {                                                                                             \
        ellm_q8_0_ext_layout L = ellm_q8_0_ext_layout_for(n);                                     \
        int64_t nb = n / QK8_0, t = 0;                                                            \
        for (; t + 4 <= n_tok; t += 4) {                                                          \
            act_row a[4];                                                                         \
            for (int k = 0; k < 4; k++)                                                           \
                a[k] = act_at(x + (size_t)(t + k) * x_stride, &L);                                \
            for (int64_t r = 0; r < n_rows; r++)                                                  \
                row_x4(nb, (const block_t *)(w + (size_t)r * w_stride), a, y + t * y_stride + r,  \
                       y_stride);                                                                 \
        }                                                                                         \
        for (; t < n_tok; t++) {                                                                  \
            act_row a = act_at(x + (size_t)t * x_stride, &L);                                     \
            for (int64_t r = 0; r < n_rows; r++)                                                  \
                row_x1(nb, (const block_t *)(w + (size_t)r * w_stride), &a, y + t * y_stride + r); \
        }                                                                                         \
    }

DEFINE_GEMM(ellm_gemm_q4_0_avx2, block_q4_0, q4_0_row_x1, q4_0_row_x4)
DEFINE_GEMM(ellm_gemm_q8_0_avx2, block_q8_0, q8_0_row_x1, q8_0_row_x4)
#endif
