/* Tensor element formats: conversion, (de)quantization, dot products and matrix multiplication.
 *
 * Every format has a scalar reference implementation that the tests hold every faster kernel to.
 * Per-ISA kernels (AVX2, NEON, ...) register behind one dispatch table chosen at run time from the
 * CPU's features, so one binary runs on any machine of its architecture. */
#ifndef EDGELLM_QUANT_H
#define EDGELLM_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/tensor_types.h"
#include "core/threadpool.h"
#include "edgellm.h"

/* IEEE half and bfloat16 conversions (round-to-nearest-even, NaN/Inf preserved). */
float ellm_f16_to_f32(uint16_t h);
uint16_t ellm_f32_to_f16(float f);
float ellm_bf16_to_f32(uint16_t h);
uint16_t ellm_f32_to_bf16(float f);

/* Whether this build can compute with tensors of the type (dequantize and dot). */
bool ellm_type_supported(ellm_type type);

/* Converts n values (a multiple of the block size) of a row to float. */
void ellm_dequantize_row(ellm_type type, const void *src, float *dst, int64_t n);
/* Quantizes n floats with the format's reference quantizer; returns bytes written. */
size_t ellm_quantize_row(ellm_type type, const float *src, void *dst, int64_t n);
/* Importance-weighted quantization (weighted.c): the block scales are searched to minimise
 * sum_j w[j] (src[j] - q[j])^2, w being n non-negative column importances (from an imatrix).
 * Types without a weighted search, or w NULL, take ellm_quantize_row. Same block layout. */
bool ellm_type_has_weighted_search(ellm_type type);
size_t ellm_quantize_row_weighted(ellm_type type, const float *src, void *dst, int64_t n,
                                  const float *w);
/* The same for a row whose activations have mean mu (per column; w their mean squares): also
 * keeps the row's errors from adding up along mu, an output bias (weighted.c), for the 32-value
 * types Q4_0, Q4_1, Q5_0, Q5_1 and IQ4_NL; other types and mu NULL are
 * ellm_quantize_row_weighted. scratch holds 4 n floats. */
size_t ellm_quantize_row_weighted_mean(ellm_type type, const float *src, void *dst, int64_t n,
                                       const float *w, const float *mu, float *scratch);
/* A matrix's rounding objective for its rows' errors e, e^T (D + U U^T) e, U = [mu, dirs]: the
 * activations' mean squares w, mean mu (may be NULL) and k covariance directions (dirs: k
 * vectors of n, each an eigenvector times the root of its eigenvalue), prepared once per matrix
 * for rounding rows in order with error feedback (weighted.c). n a multiple of 32. */
#define ELLM_OBJECTIVE_MAX_RANK 65
typedef struct ellm_row_objective {
    int64_t n;
    int rank;     /* columns of U */
    float *w;     /* n: the mean squares, for types without feedback */
    float *d;     /* n: the diagonal left beside U U^T */
    float *u;     /* n x rank: U by rows */
    float *gain;  /* n x rank: each value's feedback from the errors before it */
    float *block; /* n / 32 matrices rank x rank: the feedback at each 32-value block start */
} ellm_row_objective;
/* False (nothing allocated) without memory, for a rank (k + 1 with mu) above the maximum, or n
 * not a multiple of 32. */
bool ellm_row_objective_init(ellm_row_objective *o, int64_t n, const float *w, const float *mu,
                             const float *dirs, int k);
void ellm_row_objective_free(ellm_row_objective *o);
/* Rounds a row under the objective: the 32-value types value by value, each block's scale among
 * multiples of the searched one scored on the whole objective (Q4_0, Q5_0 and IQ4_NL then refit
 * their scales under it and choose their levels again), ending where no single value's
 * neighbouring level lowers it; the K-quants and IQ4_XS super-block by super-block; other types
 * (and a row of another width) as ellm_quantize_row_weighted with w. scratch holds 3 n floats. */
size_t ellm_quantize_row_objective(ellm_type type, const float *src, void *dst, int64_t n,
                                   const ellm_row_objective *o, float *scratch);
/* sum_j w[j] (src[j] - dequantized q[j])^2 (w NULL: all 1); scratch holds n floats. */
float ellm_weighted_row_error(ellm_type type, const float *src, const void *q, int64_t n,
                              const float *w, float *scratch);

/* Scalar reference dot product of a weight row of `type` with a float vector: the slow, obviously
 * correct definition the fast kernels are tested against. */
float ellm_dot_reference(ellm_type type, const void *row, const float *x, int64_t n);

/* The fast path: a weight row of `type` dotted with an activation row already converted to
 * `vec_dot_type` (e.g. Q8_0 for Q4_0 weights; F32 for F32 weights). */
typedef void (*ellm_vec_dot_fn)(int64_t n, float *out, const void *row, const void *x);

/* Optional: one weight row against four activation rows, out[0..3]; must give exactly what four
 * vec_dot calls give (it only shares the weight decoding between them). */
typedef void (*ellm_vec_dot_x4_fn)(int64_t n, float *out, const void *row, const void *const *x);

/* Optional: a tile of rows × tokens at once, with the activations in the layout
 * ellm_gemm_act_layout names (the extended Q8_0 layout, plain rows of vec_dot_type, or their
 * 16-bit variants): y[t * y_stride + r] = row r · token t for r < n_rows,
 * t < n_tok. Every (row, token) value must be exactly what vec_dot gives for it, whatever the
 * tile shape, so a token's result never depends on which other tokens share its batch. */
typedef void (*ellm_gemm_fn)(int64_t n, const uint8_t *w, size_t w_stride, int64_t n_rows,
                             const uint8_t *x, size_t x_stride, int64_t n_tok, float *y,
                             int64_t y_stride);

/* Optional: ELLM_DOT_ROWS consecutive weight rows (row_bytes apart) against one activation row
 * in the layout the set's decode path reads (ext_layout where the set has vec_dot_ext, else plain
 * rows of vec_dot_type): out[r] = row r · x, bit for bit what the single-row kernel gives. The
 * scalar kernels add one block term at a time to one float, a chain whose additions wait on each
 * other; the rows' chains are independent, so working on several rows at once overlaps them. */
enum { ELLM_DOT_ROWS = 8 };
typedef void (*ellm_vec_dot_rows_fn)(int64_t n, float *out, const void *rows, size_t row_bytes,
                                     const void *x);

/* Q4_0 matrices in ELLM_ROWS_BY_FOUR order (core/tensor_types.h): block i of the group of rows
 * 4g..4g + 3 is the four rows' half scales (8 bytes, row 4g's first), then each row's 16 quant
 * bytes in turn: 72 bytes, as many as the four blocks, so a group fills the bytes of its rows and
 * a matrix is laid out in place. A four-row kernel then reads one stream instead of four and the
 * four scales in one load (the web build's decode, docs/web.md, session 26). */
enum { ELLM_BY_FOUR = 4 };
/* Lays out the whole groups of four of n_rows Q4_0 rows (row_bytes apart) at data in that order,
 * in place; the rows after the last whole group stay as they are. scratch holds 4 row_bytes. */
void ellm_q4_0_rows_by_four(void *data, int64_t n_rows, size_t row_bytes, void *scratch);
/* Row k (0..3) of the group at `group` as plain Q4_0 blocks at row. */
void ellm_q4_0_row_of_four(const void *group, size_t row_bytes, int k, void *row);

/* How a matmul's activation rows are laid out. */
typedef enum ellm_act_layout {
    ELLM_ACT_Q8_0_EXT,  /* ellm_quantize_q8_0_ext */
    ELLM_ACT_Q8_0_WIDE, /* ellm_q8_0_wide_layout_for */
    ELLM_ACT_Q8_K_WIDE, /* block_q8_K_wide (blocks.h): Q8_K with int16 values in the wide order */
    /* block_q8_K_halves (blocks.h): Q8_K in the AVX-512 IQ4_XS kernel's order, with offsets */
    ELLM_ACT_Q8_K_HALVES,
    /* block_q8_K_pair (blocks.h): Q8_K blocks in pairs in the AVX-512 Q2_K/Q3_K order */
    ELLM_ACT_Q8_K_PAIRS,
    ELLM_ACT_Q8_K_MAG, /* block_q8_K_mag (blocks.h): Q8_K values and magnitudes, middle 16s swapped */
    ELLM_ACT_Q8_0_SPLIT,  /* ellm_q8_0_split_layout_for */
    ELLM_ACT_Q8_0_PAIRED, /* ellm_q8_0_paired_slot: the extended row, two blocks a vector */
    ELLM_ACT_PLAIN,       /* rows of the kernels' vec_dot_type (ellm_quantize_activations) */
    /* ellm_quantize_q8_K_tiled: Q8_K as int16, a gemm call's tokens interleaved */
    ELLM_ACT_Q8_K_TILED,
} ellm_act_layout;

typedef struct ellm_type_kernels {
    ellm_type vec_dot_type;
    ellm_vec_dot_fn vec_dot;
    const char *isa;               /* "scalar", "avx2", "neon", ... */
    ellm_vec_dot_x4_fn vec_dot_x4; /* NULL when the set has none for this type */
    /* Optional: vec_dot with the activation row in the extended layout ext_layout (below), which
     * carries what every weight row would otherwise recompute (the decode path converts once per
     * token); must equal vec_dot bit for bit. */
    ellm_vec_dot_fn vec_dot_ext;
    ellm_gemm_fn gemm; /* NULL when the set has no tiles for this type */
    /* The ISA of gemm when it is another set's (the AVX-512 set runs some AVX2 tiles); NULL: isa. */
    const char *gemm_isa;
    ellm_act_layout ext_layout;        /* what vec_dot_ext reads (the default, 0: Q8_0_EXT) */
    ellm_vec_dot_rows_fn vec_dot_rows; /* NULL when the set has none for this type */
    /* Optional, Q4_0 (ELLM_ROWS_BY_FOUR matrices): the four rows of the group at rows (row_bytes
     * the matrix's) against the activation row vec_dot_rows reads, out[0..3]; and tiles of whole
     * groups (w at a group, n_rows a multiple of 4) on gemm's activations. Bit for bit what
     * vec_dot and gemm give for the same rows in plain order. A set with both is one the loader
     * may lay matrices out for (ellm_rows_by_four_wanted). */
    ellm_vec_dot_rows_fn vec_dot_by_four;
    ellm_gemm_fn gemm_by_four;
} ellm_type_kernels;

/*
 * Extended Q8_0 activation rows for the gemm kernels, from exactly the blocks ellm_quantize_row
 * makes: first every block's 32 values (each block 32-byte aligned, so no load splits a cache
 * line), then each block's scale as a float, then each block's sum of its 32 activations as an
 * int32 (what a kernel working on Q4_0's unsigned nibbles subtracts, times 8, to apply the
 * format's offset of 8). Rows are a multiple of 64 bytes.
 */
typedef struct ellm_q8_0_ext_layout {
    size_t scales_offset, block_sums_offset, row_bytes;
} ellm_q8_0_ext_layout;
ellm_q8_0_ext_layout ellm_q8_0_ext_layout_for(int64_t n);
void ellm_quantize_q8_0_ext(const float *x, void *dst, int64_t n);

/*
 * The same with the values stored as int16 (64 bytes per block), for kernels that multiply in
 * 16-bit lanes and would otherwise widen every activation once per weight row (wasm SIMD128 has
 * no 8-bit multiply): each 16 consecutive values of a block are stored as their 8 values of even
 * index, then their 8 values of odd index, the order in which 16-bit lanes split a byte vector
 * (ellm_act_wide_index). Then the float scales and int32 block sums as above.
 */
ellm_q8_0_ext_layout ellm_q8_0_wide_layout_for(int64_t n);
/*
 * The same shape again (64 bytes per block), for kernels whose 8-bit products take a signed
 * operand and one of 0..127 (relaxed SIMD's dot) and so cannot take Q8_0's signed weights, -128
 * included, against signed activations: each block's 32 values as max(a, 0), then as max(-a, 0),
 * both 0..127 (Q8_0 activations are within +-127). Then the float scales and int32 block sums.
 */
static inline ellm_q8_0_ext_layout ellm_q8_0_split_layout_for(int64_t n)
{
    return ellm_q8_0_wide_layout_for(n);
}
/* Where value j of a block of 16-value groups is stored in a 16-bit ("wide") activation row. */
static inline int ellm_act_wide_index(int j) { return (j & ~15) | (j & 1) << 3 | (j & 15) >> 1; }

/* Where value j of a super-block is stored in a magnitude (ELLM_ACT_Q8_K_MAG) row: bits 4 and 5
 * of j swapped. */
static inline int ellm_act_mag_index(int j)
{
    return (j & ~0x30) | (j & 0x10) << 1 | (j & 0x20) >> 1;
}

/*
 * ELLM_ACT_Q8_0_PAIRED: the extended Q8_0 row (ellm_q8_0_ext_layout_for's shape and offsets) for
 * kernels that take two blocks in the two 128-bit halves of a vector. In each whole group of eight
 * blocks, value j of the group is stored at ellm_act_mag_index(j): blocks 2p and 2p + 1 share 64
 * bytes as values 0-15 of 2p, 0-15 of 2p + 1, 16-31 of 2p, 16-31 of 2p + 1. The group's scales
 * and block sums are stored in the order those pairs' sums come out of two rounds of pair
 * additions, block b in slot ellm_q8_0_paired_slot(b): blocks 0, 2, 4, 6, then 1, 3, 5, 7. Blocks
 * after the last whole group are stored as in the extended row.
 */
static inline int ellm_q8_0_paired_slot(int b) { return (b & 1) << 2 | b >> 1; }

/* The layout the gemm of the set in use reads for a weight type: ELLM_ACT_Q8_K_TILED where the
 * set says so (16-bit values made once per matmul instead of widened for every group of rows by
 * the tile), else the extended Q8_0 rows (vec_dot_type Q8_0) or plain rows. */
ellm_act_layout ellm_gemm_act_layout(ellm_type type);

/*
 * The tiled 16-bit Q8_K layout (ELLM_ACT_Q8_K_TILED), for tiles that multiply in 16-bit lanes: the
 * n_tok tokens of one gemm call (x, the first token's row, n_tok rows of ellm_act_row_bytes
 * apart) are interleaved, so that the tokens' values of one 32-value group lie side by side and a
 * tile sweeping the tokens reads one contiguous stream. Group g (values 32g..32g+31, in the order
 * of ellm_act_wide_index) of token t is 32 int16 at x + 64 (g n_tok + t); then the super-block
 * scales: super-block s of token t a float at x + 64 G n_tok + 4 (s n_tok + t), G = n / 32. The
 * layout depends on n_tok: a tile must be called with the tokens the activations were placed for.
 * ellm_quantize_q8_K_tiled places the float row x as token t of n_tok at dst.
 */
void ellm_quantize_q8_K_tiled(const float *x, int64_t n, void *dst, int64_t t, int64_t n_tok);
/* The same from a plain row of Q8_K blocks (the tests' hand-made activations). */
void ellm_q8_K_tiled_place(const void *plain, int64_t n, void *dst, int64_t t, int64_t n_tok);

/* Bytes of one activation row of n values in the layout (for ELLM_ACT_PLAIN, of vec_dot_type). */
size_t ellm_act_row_bytes(ellm_act_layout layout, ellm_type vec_dot_type, int64_t n);
/* The kernel set's own converter to a layout (a SIMD one, byte-identical to act_ext.c's), NULL
 * when it has none. */
typedef void (*ellm_act_quantizer_fn)(const float *x, void *dst, int64_t n);
ellm_act_quantizer_fn ellm_act_layout_quantizer(ellm_act_layout layout);
/* Converts a float row to the layout, from exactly the blocks ellm_quantize_activations makes. */
void ellm_quantize_act(ellm_act_layout layout, ellm_type vec_dot_type, const float *x, void *dst,
                       int64_t n);

/* Kernels for a weight type on this CPU, NULL if unsupported. Thread-safe; selection happens once. */
const ellm_type_kernels *ellm_kernels_for(ellm_type type);
/* Whether the set in use reads matrices of the type in ELLM_ROWS_BY_FOUR order with kernels of
 * its own (vec_dot_by_four and gemm_by_four), the condition for laying them out so. Any set
 * computes with such a matrix (ellm_matmul takes the portable four-row kernel where a set has
 * none), only slower. */
bool ellm_rows_by_four_wanted(ellm_type type);
/* The gemm tile kernel of the set in use for a weight type (it reproduces that set's vec_dot),
 * NULL if there is none. */
ellm_gemm_fn ellm_gemm_for(ellm_type type);
/* Name of the kernel set in use ("avx512", "avx2", "neon-dotprod", "neon", "scalar"). The set
 * decides every kernel: matrix dots and tiles, activation quantizers and attention. */
const char *ellm_kernel_set_name(void);
/* Forces the portable scalar kernels (on) or re-detects the CPU (off); for tests comparing paths. */
void ellm_quant_force_scalar(bool on);
/* The kernel sets this CPU can run, fastest (the default) first: up to max names stored, the
 * count returned. E.g. "neon-dotprod", "neon", "scalar" on an ARMv8.2 phone. */
int ellm_kernel_sets_available(const char **names, int max);
/* Uses the named set from then on (tests compare every set); NULL returns to the CPU's default.
 * False, changing nothing, when the set is not in this build or this CPU cannot run it. */
bool ellm_quant_use_kernel_set(const char *name);
/* Whether this build has a set of that name (whether or not this CPU can run it). */
bool ellm_kernel_set_in_build(const char *name);
/* Converts an activation row to a vec_dot_type with the fastest available kernel. */
void ellm_quantize_activations(ellm_type vec_dot_type, const float *x, void *dst, int64_t n);

/* Bytes of scratch ellm_matmul needs for n_tokens activation rows of length n_in against W. */
size_t ellm_matmul_scratch_bytes(const ellm_tensor *w, int64_t n_tokens);

/*
 * y[t * n_out + r] = dot(row r of W, x[t * n_in ..]) for t < n_tokens, r < n_out, where
 * n_in = W->ne[0] and n_out = W->ne[1]. x is float; it is converted once to the weight's
 * vec_dot_type in scratch (ellm_matmul_scratch_bytes). Work is split across the pool by output
 * rows, each computed by exactly one thread in a fixed order: results do not depend on the
 * thread count.
 */
void ellm_matmul(ellm_threadpool *pool, const ellm_tensor *w, const float *x, int64_t n_tokens,
                 float *y, void *scratch);
/* ellm_matmul for n_w weights applied to the same x (y[i] for w[i]) in one pool dispatch, with x
 * converted once (a dispatch per layout where their kernels read different ones: tiled and plain
 * Q8_K rows still from one conversion); scratch the largest of theirs. Each value is exactly what
 * ellm_matmul gives. */
void ellm_matmul_multi(ellm_threadpool *pool, const ellm_tensor *const *w, int n_w, const float *x,
                       int64_t n_tokens, float *const *y, void *scratch);
/* a[i] = f(a[i], b[i]) for i < n: each element alone, so any split of a row gives the same values. */
typedef void (*ellm_rows_combine_fn)(float *a, const float *b, int64_t n);
/* gate[i] = SiLU(gate[i]) * up[i] with the set in use's kernel, the same bits in every set (the
 * scalar one, ellm_silu_mul_scalar, with ellm_exp_rounded, core/exp.h). */
void ellm_silu_mul(float *gate, const float *up, int64_t n);
/* A gated feed-forward's gate and up projections (equal shapes) in one dispatch: up_y = up · x and
 * gate_y = combine(gate · x, up · x), the combine applied to each chunk of rows by the thread that
 * computed it, so no serial pass over the rows follows. Values are exactly ellm_matmul's followed
 * by combine over whole rows. */
void ellm_matmul_gated(ellm_threadpool *pool, const ellm_tensor *gate, const ellm_tensor *up,
                       const float *x, int64_t n_tokens, float *gate_y, float *up_y,
                       ellm_rows_combine_fn combine, void *scratch);

#endif
