/* The extended activation layouts (see quant.h): the plain Q8_0 blocks plus per-block data that
 * every weight row would otherwise recompute for itself (the gemm kernels), and the 16-bit
 * variants of Q8_0 and Q8_K for kernels that multiply in 16-bit lanes, and Q8_K in the orders of
 * the AVX-512 IQ4_XS, Q2_K and Q3_K kernels. */
#include <string.h>

#include "quant/blocks.h"
#include "quant/quant.h"

static size_t align32(size_t v) { return (v + 31) & ~(size_t)31; }

ellm_q8_0_ext_layout ellm_q8_0_ext_layout_for(int64_t n)
{
    size_t nb = (size_t)(n / QK8_0);
    ellm_q8_0_ext_layout L;
    L.scales_offset = nb * QK8_0;
    L.block_sums_offset = L.scales_offset + align32(nb * sizeof(float));
    /* Rows start on 64-byte boundaries so consecutive tokens never share a cache line. */
    L.row_bytes = (L.block_sums_offset + nb * sizeof(int32_t) + 63) & ~(size_t)63;
    return L;
}

void ellm_quantize_q8_0_ext(const float *x, void *dst, int64_t n)
{
    ellm_q8_0_ext_layout L = ellm_q8_0_ext_layout_for(n);
    uint8_t *row = dst;
    int8_t *qs = dst;
    float *scales = (float *)(row + L.scales_offset);
    int32_t *block_sums = (int32_t *)(row + L.block_sums_offset);
    for (int64_t i = 0; i < n / QK8_0; i++) {
        block_q8_0 b;
        ellm_quantize_activations(ELLM_TYPE_Q8_0, x + i * QK8_0, &b, QK8_0);
        memcpy(qs + i * QK8_0, b.qs, QK8_0);
        scales[i] = ellm_f16_to_f32(b.d);
        block_sums[i] = 0;
        for (int j = 0; j < QK8_0; j++)
            block_sums[i] += b.qs[j];
    }
}

/* ELLM_ACT_Q8_0_PAIRED (quant.h): the extended row, each whole group of eight blocks rearranged
 * in place, its values 16 at a time. */
static void quantize_q8_0_paired(const float *x, void *dst, int64_t n)
{
    enum { GROUP = 8, PIECE = 16 };
    ellm_quantize_q8_0_ext(x, dst, n);
    ellm_q8_0_ext_layout L = ellm_q8_0_ext_layout_for(n);
    uint8_t *row = dst;
    float *scales = (float *)(row + L.scales_offset);
    int32_t *block_sums = (int32_t *)(row + L.block_sums_offset);
    for (int64_t g = 0; g + GROUP <= n / QK8_0; g += GROUP) {
        uint8_t values[GROUP * QK8_0];
        float group_scales[GROUP];
        int32_t group_sums[GROUP];
        memcpy(values, row + g * QK8_0, sizeof values);
        memcpy(group_scales, scales + g, sizeof group_scales);
        memcpy(group_sums, block_sums + g, sizeof group_sums);
        for (int j = 0; j < GROUP * QK8_0; j += PIECE)
            memcpy(row + g * QK8_0 + ellm_act_mag_index(j), values + j, PIECE);
        for (int b = 0; b < GROUP; b++) {
            scales[g + ellm_q8_0_paired_slot(b)] = group_scales[b];
            block_sums[g + ellm_q8_0_paired_slot(b)] = group_sums[b];
        }
    }
}

ellm_q8_0_ext_layout ellm_q8_0_wide_layout_for(int64_t n)
{
    size_t nb = (size_t)(n / QK8_0);
    ellm_q8_0_ext_layout L;
    L.scales_offset = nb * QK8_0 * sizeof(int16_t);
    L.block_sums_offset = L.scales_offset + align32(nb * sizeof(float));
    L.row_bytes = (L.block_sums_offset + nb * sizeof(int32_t) + 63) & ~(size_t)63;
    return L;
}

/* A row of ellm_q8_0_wide_layout_for's shape: each reference block's values placed by place into
 * its 64 bytes, then the float scales and int32 block sums. */
static void quantize_q8_0_in_64_bytes(const float *x, void *dst, int64_t n,
                                      void (*place)(const block_q8_0 *b, uint8_t *out))
{
    ellm_q8_0_ext_layout L = ellm_q8_0_wide_layout_for(n);
    uint8_t *row = dst;
    float *scales = (float *)(row + L.scales_offset);
    int32_t *block_sums = (int32_t *)(row + L.block_sums_offset);
    for (int64_t i = 0; i < n / QK8_0; i++) {
        block_q8_0 b;
        ellm_quantize_activations(ELLM_TYPE_Q8_0, x + i * QK8_0, &b, QK8_0);
        place(&b, row + i * 64);
        scales[i] = ellm_f16_to_f32(b.d);
        block_sums[i] = 0;
        for (int j = 0; j < QK8_0; j++)
            block_sums[i] += b.qs[j];
    }
}

static void q8_0_wide_block(const block_q8_0 *b, uint8_t *out)
{
    for (int j = 0; j < QK8_0; j++) {
        int16_t v = b->qs[j];
        memcpy(out + 2 * ellm_act_wide_index(j), &v, sizeof v);
    }
}

static void q8_0_split_block(const block_q8_0 *b, uint8_t *out)
{
    for (int j = 0; j < QK8_0; j++) {
        out[j] = (uint8_t)(b->qs[j] > 0 ? b->qs[j] : 0);
        out[QK8_0 + j] = (uint8_t)(b->qs[j] < 0 ? -b->qs[j] : 0);
    }
}

static void q8_K_wide_block(const block_q8_K *b, void *dst)
{
    block_q8_K_wide *out = dst;
    out->d = b->d;
    memcpy(out->bsums, b->bsums, sizeof b->bsums);
    for (int j = 0; j < QK_K; j++)
        out->qs[ellm_act_wide_index(j)] = b->qs[j];
}

static void q8_K_halves_block(const block_q8_K *b, void *dst)
{
    block_q8_K_halves *out = dst;
    out->d = b->d;
    for (int s = 0; s < QK_K / 32; s++) {
        const int h = s / 4, lane = s % 4;
        for (int j = 0; j < 32; j++)
            out->qs[128 * h + 64 * (j / 16) + 16 * lane + j % 16] = b->qs[32 * s + j];
        for (int k = 0; k < 4; k++)
            out->offset[h][4 * lane + k] = -32 * (b->bsums[2 * s] + b->bsums[2 * s + 1]);
    }
}

/* The index moves whole runs of 16 values, so they are copied 16 at a time and the magnitudes
 * taken over the rearranged values in one run, which the compiler vectorizes: value by value
 * through the index it cost 18 instructions a value, 1 % of an IQ4_XS file's decoded token. */
static void q8_K_mag_block(const block_q8_K *b, void *dst)
{
    enum { RUN = 16 };
    block_q8_K_mag *out = dst;
    out->d = b->d;
    for (int j = 0; j < QK_K; j += RUN)
        memcpy(out->qs + ellm_act_mag_index(j), b->qs + j, RUN);
    for (int j = 0; j < QK_K; j++)
        out->mag[j] = (uint8_t)(out->qs[j] < 0 ? -out->qs[j] : out->qs[j]);
}

static void quantize_q8_K_pairs(const float *x, void *dst, int64_t n)
{
    block_q8_K_pair *out = dst;
    const int64_t nb = n / QK_K;
    memset(out, 0, (size_t)(nb + 1) / 2 * sizeof *out);
    for (int64_t i = 0; i < (nb + 1) / 2 * 2; i++) {
        block_q8_K b;
        block_q8_K_pair *p = &out[i / 2];
        const int half = (int)(i % 2);
        ellm_quantize_activations(ELLM_TYPE_Q8_K, x + (i < nb ? i : nb - 1) * QK_K, &b, QK_K);
        p->d[2 * half] = p->d[2 * half + 1] = b.d;
        memcpy(p->bsums[half], b.bsums, sizeof b.bsums);
        for (int v = 0; v < QK_K; v++)
            p->qs[half][64 * (v % 128 / 32) + 32 * (v / 128) + v % 32] = b.qs[v];
    }
}

/* The Q8_K layouts: each reference block rearranged by arrange into a zeroed block_bytes. */
static void quantize_q8_K_as(const float *x, void *dst, int64_t n, size_t block_bytes,
                             void (*arrange)(const block_q8_K *b, void *out))
{
    for (int64_t i = 0; i < n / QK_K; i++) {
        block_q8_K b;
        uint8_t *out = (uint8_t *)dst + (size_t)i * block_bytes;
        ellm_quantize_activations(ELLM_TYPE_Q8_K, x + i * QK_K, &b, QK_K);
        memset(out, 0, block_bytes);
        arrange(&b, out);
    }
}

/* ELLM_ACT_Q8_K_TILED (quant.h): values of one 32-value group of every token side by side. */
enum { TILED_GROUP = 32 };

static size_t tiled_scales_offset(int64_t n, int64_t n_tok)
{
    return (size_t)n * sizeof(int16_t) * (size_t)n_tok;
}

/* Super-block i of token t. The wide order written as plain strided loops (not through
 * ellm_act_wide_index), which the compiler turns into shuffles: the conversion runs once per
 * token and matmul, and element by element it cost about as much as the tiles gained. */
static void tiled_put(uint8_t *dst, int64_t n, const block_q8_K *b, int64_t i, int64_t t,
                      int64_t n_tok)
{
    for (int g = 0; g < QK_K / TILED_GROUP; g++) {
        int16_t *out = (int16_t *)(dst + ((i * QK_K / TILED_GROUP + g) * n_tok + t) * 64);
        const int8_t *in = b->qs + TILED_GROUP * g;
        for (int h = 0; h < TILED_GROUP; h += 16)
            for (int j = 0; j < 8; j++) {
                out[h + j] = in[h + 2 * j];
                out[h + 8 + j] = in[h + 2 * j + 1];
            }
    }
    float *scales = (float *)(dst + tiled_scales_offset(n, n_tok));
    scales[i * n_tok + t] = b->d;
}

void ellm_q8_K_tiled_place(const void *plain, int64_t n, void *dst, int64_t t, int64_t n_tok)
{
    for (int64_t i = 0; i < n / QK_K; i++)
        tiled_put(dst, n, (const block_q8_K *)plain + i, i, t, n_tok);
}

void ellm_quantize_q8_K_tiled(const float *x, int64_t n, void *dst, int64_t t, int64_t n_tok)
{
    /* Through plain blocks, eight super-blocks a call of the set's quantizer. */
    enum { PIECE = 8 };
    block_q8_K plain[PIECE];
    for (int64_t i0 = 0; i0 < n / QK_K; i0 += PIECE) {
        int64_t count = n / QK_K - i0 < PIECE ? n / QK_K - i0 : PIECE;
        ellm_quantize_activations(ELLM_TYPE_Q8_K, x + i0 * QK_K, plain, count * QK_K);
        for (int64_t i = 0; i < count; i++)
            tiled_put(dst, n, &plain[i], i0 + i, t, n_tok);
    }
}

size_t ellm_act_row_bytes(ellm_act_layout layout, ellm_type vec_dot_type, int64_t n)
{
    switch (layout) {
    case ELLM_ACT_Q8_0_EXT: return ellm_q8_0_ext_layout_for(n).row_bytes;
    case ELLM_ACT_Q8_0_WIDE: return ellm_q8_0_wide_layout_for(n).row_bytes;
    case ELLM_ACT_Q8_0_SPLIT: return ellm_q8_0_split_layout_for(n).row_bytes;
    case ELLM_ACT_Q8_0_PAIRED: return ellm_q8_0_ext_layout_for(n).row_bytes;
    case ELLM_ACT_Q8_K_WIDE: return (size_t)(n / QK_K) * sizeof(block_q8_K_wide);
    case ELLM_ACT_Q8_K_HALVES: return (size_t)(n / QK_K) * sizeof(block_q8_K_halves);
    case ELLM_ACT_Q8_K_PAIRS: return (size_t)(n / QK_K + 1) / 2 * sizeof(block_q8_K_pair);
    case ELLM_ACT_Q8_K_MAG: return (size_t)(n / QK_K) * sizeof(block_q8_K_mag);
    /* A multiple of 64 bytes, so that every call's first token starts a cache line. */
    case ELLM_ACT_Q8_K_TILED:
        return tiled_scales_offset(n, 1) + ((size_t)(n / QK_K) * sizeof(float) + 63) / 64 * 64;
    case ELLM_ACT_PLAIN: break;
    }
    if (vec_dot_type == ELLM_TYPE_F32)
        return (size_t)n * sizeof(float);
    uint64_t rb = 0;
    ellm_row_bytes(vec_dot_type, (uint64_t)n, &rb);
    return (size_t)rb;
}

void ellm_quantize_act(ellm_act_layout layout, ellm_type vec_dot_type, const float *x, void *dst,
                       int64_t n)
{
    ellm_act_quantizer_fn set_own = ellm_act_layout_quantizer(layout);
    if (set_own) {
        set_own(x, dst, n);
        return;
    }
    switch (layout) {
    case ELLM_ACT_Q8_0_EXT: ellm_quantize_q8_0_ext(x, dst, n); return;
    case ELLM_ACT_Q8_0_WIDE: quantize_q8_0_in_64_bytes(x, dst, n, q8_0_wide_block); return;
    case ELLM_ACT_Q8_0_SPLIT: quantize_q8_0_in_64_bytes(x, dst, n, q8_0_split_block); return;
    case ELLM_ACT_Q8_0_PAIRED: quantize_q8_0_paired(x, dst, n); return;
    case ELLM_ACT_Q8_K_WIDE:
        quantize_q8_K_as(x, dst, n, sizeof(block_q8_K_wide), q8_K_wide_block);
        return;
    case ELLM_ACT_Q8_K_HALVES:
        quantize_q8_K_as(x, dst, n, sizeof(block_q8_K_halves), q8_K_halves_block);
        return;
    case ELLM_ACT_Q8_K_PAIRS: quantize_q8_K_pairs(x, dst, n); return;
    case ELLM_ACT_Q8_K_MAG:
        quantize_q8_K_as(x, dst, n, sizeof(block_q8_K_mag), q8_K_mag_block);
        return;
    case ELLM_ACT_Q8_K_TILED: ellm_quantize_q8_K_tiled(x, n, dst, 0, 1); return;
    case ELLM_ACT_PLAIN: break;
    }
    if (vec_dot_type == ELLM_TYPE_F32)
        memcpy(dst, x, (size_t)n * sizeof(float));
    else
        ellm_quantize_activations(vec_dot_type, x, dst, n);
}
