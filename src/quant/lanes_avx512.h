/* Helpers of the AVX-512 kernels that hold 16 weight rows in the 16 lanes of a vector (included
 * only by *_avx512.c files, which are compiled for AVX-512). */
#ifndef EDGELLM_QUANT_LANES_AVX512_H
#define EDGELLM_QUANT_LANES_AVX512_H

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum {
    ROW_GROUP = 16,  /* rows per vector, one per 32-bit lane */
    TOKEN_STEP = 64, /* tokens whose running sums stay in L1 while a row group is swept */
};

/* 16 consecutive weight rows; a short last group repeats its last row in the unused lanes, so
 * every load stays inside the tensor, and only the live lanes are stored. */
typedef struct row_group {
    const uint8_t *p[ROW_GROUP];
    const uint8_t *base, *next; /* first row of this group and of the next */
    __m512i offsets;            /* byte offset of each lane's row from base */
    __mmask16 live;
} row_group;

static inline row_group row_group_at(const uint8_t *w, size_t stride, int64_t r0, int64_t n_rows)
{
    row_group G;
    int nr = n_rows - r0 < ROW_GROUP ? (int)(n_rows - r0) : ROW_GROUP;
    int32_t off[ROW_GROUP];
    G.base = w + (size_t)r0 * stride;
    G.next = G.base + (size_t)ROW_GROUP * stride;
    for (int l = 0; l < ROW_GROUP; l++) {
        off[l] = (int32_t)((size_t)(l < nr ? l : nr - 1) * stride);
        G.p[l] = G.base + off[l];
    }
    G.offsets = _mm512_loadu_si512(off);
    G.live = (__mmask16)((1u << nr) - 1);
    return G;
}

/* 16 interleaved row streams defeat the hardware prefetcher: while block b of this group is used,
 * fetch the matching share of the next group's (contiguous) rows, so that it is in cache when the
 * group after this one starts. */
static inline void prefetch_next_group(const row_group *G, int64_t b, size_t block_bytes)
{
    for (size_t at = (size_t)b * ROW_GROUP * block_bytes & ~(size_t)63;
         at < (size_t)(b + 1) * ROW_GROUP * block_bytes; at += 64)
        _mm_prefetch((const char *)(G->next + at), _MM_HINT_T0);
}

/* The 4 bytes at p in every 32-bit lane. */
static inline __m512i broadcast4(const void *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

/* Rows k, 4 + k, 8 + k and 12 + k of the group: 16 bytes at off in each, one per 128-bit lane. */
static inline __m512i rows_by_lane(const uint8_t *const *p, int k, size_t off)
{
    __m512i t = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(p[k] + off)));
    t = _mm512_inserti32x4(t, _mm_loadu_si128((const __m128i *)(p[4 + k] + off)), 1);
    t = _mm512_inserti32x4(t, _mm_loadu_si128((const __m128i *)(p[8 + k] + off)), 2);
    return _mm512_inserti32x4(t, _mm_loadu_si128((const __m128i *)(p[12 + k] + off)), 3);
}

/* 16 bytes at off of each of the 16 rows, transposed: lane l of z[g] = bytes 4g..4g+3 of row l. */
static inline void transpose_16x16(const uint8_t *const *p, size_t off, __m512i z[4])
{
    __m512i t0 = rows_by_lane(p, 0, off), t1 = rows_by_lane(p, 1, off);
    __m512i t2 = rows_by_lane(p, 2, off), t3 = rows_by_lane(p, 3, off);
    /* Within 128-bit lane j, t_k holds row 4j + k: two unpack steps gather dword g of the four
     * rows 4j..4j+3 in order, so lane 4j + k ends up holding row 4j + k. */
    __m512i u0 = _mm512_unpacklo_epi32(t0, t1), u1 = _mm512_unpackhi_epi32(t0, t1);
    __m512i u2 = _mm512_unpacklo_epi32(t2, t3), u3 = _mm512_unpackhi_epi32(t2, t3);
    z[0] = _mm512_unpacklo_epi64(u0, u2);
    z[1] = _mm512_unpackhi_epi64(u0, u2);
    z[2] = _mm512_unpacklo_epi64(u1, u3);
    z[3] = _mm512_unpackhi_epi64(u1, u3);
}

/* The 4 bytes at offset off of each lane's row. */
static inline __m512i gather4(const row_group *G, size_t off)
{
    return _mm512_i32gather_epi32(G->offsets, (const void *)(G->base + off), 1);
}

/* The half-precision value at offset off of each lane's row, as a float (exact conversion). */
static inline __m512 gather_halves(const row_group *G, size_t off)
{
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(gather4(G, off)));
}

/* Adds block column b of the 16 rows of G, times the tokens 0..nt-1 of x (rows x_stride apart),
 * to sum[0..nt-1], one lane per row, in the order of the format's scalar kernel. */
typedef void (*lanes_block_fn)(const row_group *G, int64_t b, const uint8_t *x, size_t x_stride,
                               int nt, __m512 *sum, const void *ctx);

/* The tile driver: row groups of 16, tokens in steps whose running sums stay in L1, block columns
 * in order inside (so each row's sum sees its blocks in the scalar kernel's order). */
static inline void gemm_rows_in_lanes(int64_t n_blocks, size_t block_bytes, const uint8_t *w,
                                      size_t w_stride, int64_t n_rows, const uint8_t *x,
                                      size_t x_stride, int64_t n_tok, float *y, int64_t y_stride,
                                      lanes_block_fn block, const void *ctx)
{
    __m512 sum[TOKEN_STEP];
    for (int64_t r0 = 0; r0 < n_rows; r0 += ROW_GROUP) {
        row_group G = row_group_at(w, w_stride, r0, n_rows);
        for (int64_t t0 = 0; t0 < n_tok; t0 += TOKEN_STEP) {
            int nt = n_tok - t0 < TOKEN_STEP ? (int)(n_tok - t0) : TOKEN_STEP;
            for (int t = 0; t < nt; t++)
                sum[t] = _mm512_setzero_ps();
            for (int64_t b = 0; b < n_blocks; b++) {
                prefetch_next_group(&G, b, block_bytes);
                block(&G, b, x + (size_t)t0 * x_stride, x_stride, nt, sum, ctx);
            }
            for (int t = 0; t < nt; t++)
                _mm512_mask_storeu_ps(y + (t0 + t) * y_stride + r0, G.live, sum[t]);
        }
    }
}

/* A single-row kernel's step (a few blocks added to its running sum): inlined into the kernel's
 * loop, which GCC does not do by itself for the larger ones (a call per super-block, constants
 * reloaded each time, measured at up to a third of the kernel's speed). */
#define KERNEL_STEP static inline __attribute__((always_inline))

#endif
