/* AVX2 + FMA + F16C kernels (compiled with those flags; called only on CPUs that have them).
 *
 * Software prefetch in the AVX2 decode kernels: on the AMD EPYC of session 6 ellm_prefetch_stream
 * (L2 and L1) cost more than it saved (one thread: Q8_0 66 -> 87 % of a streaming read, Q4_K 57 ->
 * 68 %, Q6_K 61 -> 67 % without it); on the Xeon of session 9 the Q4_0/Q8_0 decode kernels
 * (the extended-row ones) gain from ellm_prefetch_ahead, L1 only, 2 KB ahead (Q4_0 0.55-0.62 ->
 * 0.83-0.90 of a read, Q8_0 0.79-0.89 -> 0.96-1.02; build/gemv_micro --kernels avx2
 * --hugepages 1). */
#include "quant/kernels.h"

#if defined(ELLM_HAVE_AVX2_KERNELS)
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "quant/blocks.h"
#include "quant/lanes_avx2.h"
#include "quant/prefetch.h"
#include "quant/quant.h"

void ellm_vec_dot_f32_avx2(int64_t n, float *out, const void *row, const void *x)
{
    const float *a = row, *b = x;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
        acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), acc2);
        acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), acc3);
    }
    /* Reduction order (0+2)+(1+3) then pairwise within the register, like the most widely used
     * runtime, so F32 models agree with its published logits as closely as possible. */
    __m256 sum8 = _mm256_add_ps(_mm256_add_ps(acc0, acc2), _mm256_add_ps(acc1, acc3));
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(sum8), _mm256_extractf128_ps(sum8, 1));
    s4 = _mm_hadd_ps(s4, s4);
    float sum = _mm_cvtss_f32(_mm_hadd_ps(s4, s4));
    for (; i < n; i++)
        sum += a[i] * b[i];
    *out = sum;
}

void ellm_vec_dot_f16_avx2(int64_t n, float *out, const void *row, const void *x)
{
    const uint16_t *a = row;
    const float *b = x;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 w0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(a + i)));
        __m256 w1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(a + i + 8)));
        acc0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(b + i + 8), acc1);
    }
    *out = f16_dot_tail(hsum256(_mm256_add_ps(acc0, acc1)), row, b, i, n);
}

/* Q8_0 and Q4_0 against 8-bit activations: each block's 32 products are summed exactly in
 * integers, eight blocks at a time into the eight lanes of one vector, converted once and
 * multiplied by the blocks' scale products d_w * d_a in one fused multiply-add: lane k of the
 * accumulator holds the blocks i with i % 8 == k, in order, and the result is hsum256 of it.
 * The GEMM tiles (gemm_avx2.c) repeat exactly this float work (lane k there is an accumulator
 * of eight rows), so prefill and decode agree bit for bit; a change to the float order here
 * must be repeated there. Blocks past the end of a short last group have scale and sum 0, and
 * fma(0, 0, acc) leaves acc unchanged. */
enum { GROUP_BLOCKS = 8 };

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* Sum of signed 8-bit products of 32 pairs, as 8 int32 lanes. */
static inline __m256i dot_i8_32(__m256i a, __m256i b)
{
    __m256i abs_a = _mm256_sign_epi8(a, a);
    __m256i sb = _mm256_sign_epi8(b, a);
    __m256i pairs = _mm256_maddubs_epi16(abs_a, sb);
    return _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
}

/* The 32 nibbles of a Q4_0 block in value order (low nibbles, then high), unsigned: the 16 bytes
 * go to both 128-bit halves by the load itself, and one variable shift brings the high nibbles
 * down in the upper half. */
static inline __m256i q4_0_nibbles(const block_q4_0 *b)
{
    __m256i packed = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)b->qs));
    return _mm256_and_si256(_mm256_srlv_epi64(packed, _mm256_set_epi64x(4, 4, 0, 0)),
                            _mm256_set1_epi8(0x0F));
}

static inline __m256i q4_0_levels(const block_q4_0 *b)
{
    return _mm256_sub_epi8(q4_0_nibbles(b), _mm256_set1_epi8(8));
}

static inline __m256i q8_0_levels(const block_q8_0 *b)
{
    return _mm256_loadu_si256((const __m256i *)b->qs);
}

static inline __m256i load_i8_32(const int8_t *q) { return _mm256_loadu_si256((const __m256i *)q); }

/* The totals of eight int32 vectors: lane k = the sum of v[k]'s lanes (exact). */
static inline __m256i lane_totals(const __m256i v[GROUP_BLOCKS])
{
    __m256i pairs[4];
    for (int p = 0; p < 4; p++)
        pairs[p] = _mm256_hadd_epi32(v[2 * p], v[2 * p + 1]);
    return lane_totals_of_pairs(pairs);
}

/* The half-precision scales of kb (<= 8) blocks `stride` bytes apart (scale first), as floats;
 * 0 past kb. Inserted into the vector straight from the blocks: gathered through a stack array,
 * the vector load failed store forwarding and so waited for the eight stores to retire, which
 * from memory means for every older load of the stream (Q4_0 read 6.5 GB/s from memory against
 * 19 in cache; 9.4 this way, 2 MiB pages, one core). */
ALWAYS_INLINE __m256 group_half_scales(const void *first, size_t stride, int kb)
{
    return _mm256_cvtph_ps(kquant_block_halves(first, stride, kb));
}

/* Up to eight blocks of one weight row as signed levels, shared by every activation row. */
typedef struct weight_group {
    __m256i levels[GROUP_BLOCKS];
    __m256 d;
} weight_group;

ALWAYS_INLINE void load_group(ellm_type type, const void *row, int64_t i, int kb, weight_group *g)
{
    for (int k = 0; k < GROUP_BLOCKS; k++)
        g->levels[k] = k >= kb                  ? _mm256_setzero_si256()
                       : type == ELLM_TYPE_Q4_0 ? q4_0_levels((const block_q4_0 *)row + i + k)
                                                : q8_0_levels((const block_q8_0 *)row + i + k);
    g->d = type == ELLM_TYPE_Q4_0
               ? group_half_scales((const block_q4_0 *)row + i, sizeof(block_q4_0), kb)
               : group_half_scales((const block_q8_0 *)row + i, sizeof(block_q8_0), kb);
}

/* One group against a plain Q8_0 activation row: acc + (d_w * d_a) * (exact block sums). */
ALWAYS_INLINE __m256 group_step(const weight_group *g, const block_q8_0 *a, int64_t i, int kb,
                                __m256 acc)
{
    __m256i p[GROUP_BLOCKS];
    for (int k = 0; k < GROUP_BLOCKS; k++)
        p[k] = k < kb ? dot_i8_32(g->levels[k], load_i8_32(a[i + k].qs)) : _mm256_setzero_si256();
    __m256 d = _mm256_mul_ps(g->d, group_half_scales(a + i, sizeof *a, kb));
    return _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(lane_totals(p)), acc);
}

/* rows activation rows against one weight row: every weight group is decoded once. */
ALWAYS_INLINE void dot_rows(ellm_type type, int64_t n, float *out, const void *row,
                            const block_q8_0 *const *x, int rows)
{
    int64_t nb = n / QK8_0, i = 0;
    __m256 acc[4];
    weight_group g;
    for (int t = 0; t < rows; t++)
        acc[t] = _mm256_setzero_ps();
    for (; i + GROUP_BLOCKS <= nb; i += GROUP_BLOCKS) {
        load_group(type, row, i, GROUP_BLOCKS, &g);
        for (int t = 0; t < rows; t++)
            acc[t] = group_step(&g, x[t], i, GROUP_BLOCKS, acc[t]);
    }
    if (i < nb) {
        load_group(type, row, i, (int)(nb - i), &g);
        for (int t = 0; t < rows; t++)
            acc[t] = group_step(&g, x[t], i, (int)(nb - i), acc[t]);
    }
    for (int t = 0; t < rows; t++)
        out[t] = hsum256(acc[t]);
}

void ellm_vec_dot_q8_0_avx2(int64_t n, float *out, const void *row, const void *x)
{
    const block_q8_0 *a = x;
    dot_rows(ELLM_TYPE_Q8_0, n, out, row, &a, 1);
}

void ellm_vec_dot_q4_0_avx2(int64_t n, float *out, const void *row, const void *x)
{
    const block_q8_0 *a = x;
    dot_rows(ELLM_TYPE_Q4_0, n, out, row, &a, 1);
}

/* Four activation rows sharing each decoded weight group (bit-identical to single rows). */
void ellm_vec_dot_q4_0_x4_avx2(int64_t n, float *out, const void *row, const void *const *x)
{
    const block_q8_0 *a[4] = {x[0], x[1], x[2], x[3]};
    dot_rows(ELLM_TYPE_Q4_0, n, out, row, a, 4);
}

void ellm_vec_dot_q8_0_x4_avx2(int64_t n, float *out, const void *row, const void *const *x)
{
    const block_q8_0 *a[4] = {x[0], x[1], x[2], x[3]};
    dot_rows(ELLM_TYPE_Q8_0, n, out, row, a, 4);
}

/* kb (<= 8) consecutive 32-bit values, 0 past kb. A whole group is loaded directly: copying it
 * through a stack array first stalls the load on store forwarding. */
ALWAYS_INLINE __m256i group_i32(const int32_t *v, int kb)
{
    if (kb == GROUP_BLOCKS)
        return _mm256_loadu_si256((const __m256i *)v);
    int32_t part[GROUP_BLOCKS] = {0};
    memcpy(part, v, (size_t)kb * sizeof *v);
    return _mm256_loadu_si256((const __m256i *)part);
}

/* The decode path: the activation row in the extended Q8_0 layout carries the scales as floats
 * and each block's sum of activations, so Q4_0 multiplies its unsigned nibbles (no sign moves)
 * and subtracts 8 x that sum from the block's total, and no activation scale is converted. The
 * integers, scale products and float operations are the plain kernels', so the results are
 * bit-identical to them. */
ALWAYS_INLINE __m256 ext_group_step(ellm_type type, const void *row, const int8_t *a,
                                    const float *da, const int32_t *block_sums, int64_t i, int kb,
                                    __m256 acc)
{
    __m256i p[GROUP_BLOCKS];
    for (int k = 0; k < GROUP_BLOCKS; k++) {
        const int8_t *ak = a + (i + k) * QK8_0;
        if (k >= kb)
            p[k] = _mm256_setzero_si256();
        else if (type == ELLM_TYPE_Q4_0)
            p[k] = _mm256_madd_epi16(
                _mm256_maddubs_epi16(q4_0_nibbles((const block_q4_0 *)row + i + k), load_i8_32(ak)),
                _mm256_set1_epi16(1));
        else
            p[k] = dot_i8_32(q8_0_levels((const block_q8_0 *)row + i + k), load_i8_32(ak));
    }
    __m256i totals = lane_totals(p);
    __m256 dw = type == ELLM_TYPE_Q4_0
                    ? group_half_scales((const block_q4_0 *)row + i, sizeof(block_q4_0), kb)
                    : group_half_scales((const block_q8_0 *)row + i, sizeof(block_q8_0), kb);
    if (type == ELLM_TYPE_Q4_0)
        totals = _mm256_sub_epi32(totals, _mm256_slli_epi32(group_i32(block_sums + i, kb), 3));
    __m256 d = _mm256_mul_ps(dw, _mm256_castsi256_ps(group_i32((const int32_t *)(da + i), kb)));
    return _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(totals), acc);
}

/* The half scales of a whole group of eight Q4_0 blocks as floats in the paired order
 * (ellm_q8_0_paired_slot). A pair of 18-byte blocks is 36 bytes, so the 32-byte load at 32j finds
 * block 2j's scale in the low word of dword j and block 2j + 1's in the high word of dword j + 4:
 * four loads, three blends and two shuffles, where eight word inserts took the shuffle port
 * eight times. */
ALWAYS_INLINE __m256 q4_0_paired_group_scales(const block_q4_0 *w)
{
    const uint8_t *p = (const uint8_t *)w;
    __m256i l0 = _mm256_loadu_si256((const __m256i *)p);
    __m256i l1 = _mm256_loadu_si256((const __m256i *)(p + 32));
    __m256i l2 = _mm256_loadu_si256((const __m256i *)(p + 64));
    __m256i l3 = _mm256_loadu_si256((const __m256i *)(p + 96));
    __m256i mixed = _mm256_blend_epi32(_mm256_blend_epi32(l0, l1, 0x22),
                                       _mm256_blend_epi32(l2, l3, 0x88), 0xCC);
    __m256i words = _mm256_shuffle_epi8(
        mixed, _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                -1, -1, -1, -1, -1, -1, 2, 3, 6, 7, 10, 11, 14, 15));
    return _mm256_cvtph_ps(_mm256_castsi256_si128(_mm256_permute4x64_epi64(words, 0x0C)));
}

/* A whole group of Q4_0 against the paired extended row (ELLM_ACT_Q8_0_PAIRED): blocks 2p and
 * 2p + 1 are one vector, their 16 bytes of nibbles in its two halves, whose low nibbles meet values
 * 0-15 of both blocks and high nibbles values 16-31. The products' 16-bit pair sums stay 16-bit
 * through an addition and two rounds of pair additions (a word then sums 16 products of a nibble
 * and an activation, at most 16 x 15 x 128 = 30 720), which leave the eight blocks' sums in the
 * paired order that the row's scales and sums share, and one vpmaddwd widens them. Lane by lane
 * the float work is ext_group_step's. */
ALWAYS_INLINE __m256 q4_0_paired_group_step(const block_q4_0 *w, const int8_t *a, const float *da,
                                            const int32_t *block_sums, __m256 acc)
{
    const __m256i m15 = _mm256_set1_epi8(0x0F);
    __m256i words[GROUP_BLOCKS / 2];
    for (int p = 0; p < GROUP_BLOCKS / 2; p++) {
        __m256i packed = _mm256_loadu2_m128i((const __m128i *)w[2 * p + 1].qs,
                                             (const __m128i *)w[2 * p].qs);
        __m256i low = _mm256_and_si256(packed, m15);
        __m256i high = _mm256_and_si256(_mm256_srli_epi16(packed, 4), m15);
        words[p] = _mm256_add_epi16(_mm256_maddubs_epi16(low, load_i8_32(a + 64 * p)),
                                    _mm256_maddubs_epi16(high, load_i8_32(a + 64 * p + 32)));
    }
    __m256i totals = _mm256_madd_epi16(_mm256_hadd_epi16(_mm256_hadd_epi16(words[0], words[1]),
                                                         _mm256_hadd_epi16(words[2], words[3])),
                                       _mm256_set1_epi16(1));
    totals = _mm256_sub_epi32(
        totals, _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)block_sums), 3));
    __m256 d = _mm256_mul_ps(q4_0_paired_group_scales(w), _mm256_loadu_ps(da));
    return _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(totals), acc);
}

/* One row against its decode row x of layout L: Q8_0 on the extended row, Q4_0 on the paired row,
 * whose whole groups come out in the paired order; the accumulator's lanes are then put back in
 * block order (lane k: blocks i with i % 8 == k) for the blocks after them, which the paired row
 * stores as the extended row does, and for the final sum. */
ALWAYS_INLINE float ext_row(ellm_type type, int64_t n, const void *row, const uint8_t *x,
                            ellm_q8_0_ext_layout L)
{
    const int8_t *a = (const int8_t *)x;
    const float *da = (const float *)(x + L.scales_offset);
    const int32_t *block_sums = (const int32_t *)(x + L.block_sums_offset);
    size_t block_bytes = type == ELLM_TYPE_Q4_0 ? sizeof(block_q4_0) : sizeof(block_q8_0);
    int64_t nb = n / QK8_0, i = 0;
    __m256 acc = _mm256_setzero_ps();
    for (; i + GROUP_BLOCKS <= nb; i += GROUP_BLOCKS) {
        ellm_prefetch_ahead((const uint8_t *)row + (size_t)i * block_bytes,
                            (int)(GROUP_BLOCKS * block_bytes));
        acc = type == ELLM_TYPE_Q4_0
                  ? q4_0_paired_group_step((const block_q4_0 *)row + i, a + i * QK8_0, da + i,
                                           block_sums + i, acc)
                  : ext_group_step(type, row, a, da, block_sums, i, GROUP_BLOCKS, acc);
    }
    if (type == ELLM_TYPE_Q4_0)
        acc = _mm256_permutevar8x32_ps(acc, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    if (i < nb)
        acc = ext_group_step(type, row, a, da, block_sums, i, (int)(nb - i), acc);
    return hsum256(acc);
}

/* ELLM_DOT_ROWS rows of ext_row, the layout found once. */
ALWAYS_INLINE void ext_rows(ellm_type type, int64_t n, float *out, const void *rows,
                            size_t row_bytes, const void *x)
{
    const ellm_q8_0_ext_layout L = ellm_q8_0_ext_layout_for(n);
    for (int r = 0; r < ELLM_DOT_ROWS; r++)
        out[r] = ext_row(type, n, (const uint8_t *)rows + r * row_bytes, x, L);
}

void ellm_vec_dot_q8_0_ext_avx2(int64_t n, float *out, const void *row, const void *x)
{
    *out = ext_row(ELLM_TYPE_Q8_0, n, row, x, ellm_q8_0_ext_layout_for(n));
}

void ellm_vec_dot_q8_0_ext_rows_avx2(int64_t n, float *out, const void *rows, size_t row_bytes,
                                     const void *x)
{
    ext_rows(ELLM_TYPE_Q8_0, n, out, rows, row_bytes, x);
}

void ellm_vec_dot_q4_0_paired_avx2(int64_t n, float *out, const void *row, const void *x)
{
    *out = ext_row(ELLM_TYPE_Q4_0, n, row, x, ellm_q8_0_ext_layout_for(n));
}

void ellm_vec_dot_q4_0_paired_rows_avx2(int64_t n, float *out, const void *rows, size_t row_bytes,
                                        const void *x)
{
    ext_rows(ELLM_TYPE_Q4_0, n, out, rows, row_bytes, x);
}

/* (int8_t)roundf(v) of eight floats, as int32 lanes holding the result's byte (0..255): roundf
 * rounds halves away from zero, and v minus its truncation is exact, so comparing its magnitude
 * with 0.5 decides as roundf does; the byte is the low byte of the truncating conversion, which
 * is what the scalar cast stores (0 for NaN). */
static inline __m256i round_half_away_low_bytes(__m256 v)
{
    const __m256 sign_mask = _mm256_set1_ps(-0.0f);
    __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256 frac = _mm256_andnot_ps(sign_mask, _mm256_sub_ps(v, t));
    __m256 up = _mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    __m256 one = _mm256_or_ps(_mm256_and_ps(v, sign_mask), _mm256_set1_ps(1.0f));
    __m256i r = _mm256_cvttps_epi32(_mm256_add_ps(t, _mm256_and_ps(up, one)));
    return _mm256_and_si256(r, _mm256_set1_epi32(0xFF));
}

void ellm_quantize_row_q8_0_avx2(const float *x, void *dst, int64_t n)
{
    block_q8_0 *b = dst;
    const __m256 sign_mask = _mm256_set1_ps(-0.0f);
    for (int64_t i = 0; i < n / QK8_0; i++) {
        const float *xb = x + i * QK8_0;
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
        b[i].d = ellm_f32_to_f16(d);
        __m256 vid = _mm256_set1_ps(id);
        __m256i q[4];
        for (int k = 0; k < 4; k++)
            q[k] = round_half_away_low_bytes(_mm256_mul_ps(v[k], vid));
        /* After the two packs (each within 128-bit halves) the low half holds values 0-3,
         * 8-11, 16-19, 24-27 and the high half 4-7, 12-15, 20-23, 28-31: the permute
         * interleaves the halves' dwords back into value order. */
        __m256i packed = _mm256_packus_epi16(_mm256_packus_epi32(q[0], q[1]),
                                             _mm256_packus_epi32(q[2], q[3]));
        packed = _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)b[i].qs, packed);
    }
}
#endif
