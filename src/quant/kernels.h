/* Dot-product kernels per ISA, registered in dispatch.c. Each computes *out = row · x over n
 * values, with x already in the weight type's vec_dot_type. */
#ifndef EDGELLM_QUANT_KERNELS_H
#define EDGELLM_QUANT_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

void ellm_vec_dot_f32_scalar(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_f16_scalar(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_bf16_scalar(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q8_0_scalar(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q4_0_scalar(int64_t n, float *out, const void *row, const void *x);
/* The four rows of a Q4_0 group in ELLM_ROWS_BY_FOUR order against plain Q8_0 rows: the
 * portable vec_dot_by_four, which ellm_matmul takes for such matrices in sets without one. */
void ellm_vec_dot_q4_0_by_four_scalar(int64_t n, float *out, const void *rows, size_t row_bytes,
                                      const void *x);
/* K-quants against Q8_K activations (kernels_kquants_scalar.c). */
void ellm_vec_dot_q4_K_scalar(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q5_K_scalar(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q6_K_scalar(int64_t n, float *out, const void *row, const void *x);
/* Low-bit K-quants against Q8_K activations (kernels_kquants_low_*.c). */
void ellm_vec_dot_q2_K_scalar(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q3_K_scalar(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_iq4_xs_scalar(int64_t n, float *out, const void *row, const void *x);
/* Q4_1, Q5_1 against Q8_1 and Q5_0, IQ4_NL against Q8_0 activations (kernels_legacy_*.c). */
void ellm_vec_dot_q4_1_scalar(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q5_0_scalar(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q5_1_scalar(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_iq4_nl_scalar(int64_t n, float *out, const void *row, const void *x);
/* gate[i] = SiLU(gate[i]) * up[i], SiLU(g) = g / (1 + ellm_exp_rounded(-g)) (silu_scalar.c):
 * the reference every set's copy equals bit for bit, and the kernel of sets without one. */
void ellm_silu_mul_scalar(float *gate, const float *up, int64_t n);

#if defined(__x86_64__) || defined(_M_X64)
#define ELLM_HAVE_AVX2_KERNELS 1
void ellm_vec_dot_f32_avx2(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_f16_avx2(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q8_0_avx2(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q4_0_avx2(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q8_0_x4_avx2(int64_t n, float *out, const void *row, const void *const *x);
void ellm_vec_dot_q4_0_x4_avx2(int64_t n, float *out, const void *row, const void *const *x);
/* The same with x in the extended Q8_0 layout (ellm_quantize_q8_0_ext): the decode path. */
void ellm_vec_dot_q8_0_ext_avx2(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q8_0_ext_rows_avx2(int64_t n, float *out, const void *rows, size_t row_bytes,
                                     const void *x);
/* Q4_0 against the paired extended row (ELLM_ACT_Q8_0_PAIRED), one row and ELLM_DOT_ROWS rows:
 * the decode path. */
void ellm_vec_dot_q4_0_paired_avx2(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q4_0_paired_rows_avx2(int64_t n, float *out, const void *rows, size_t row_bytes,
                                        const void *x);
void ellm_vec_dot_q2_K_avx2(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q3_K_avx2(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_iq4_xs_avx2(int64_t n, float *out, const void *row, const void *x);
/* The same with x in the magnitude Q8_K layout (ELLM_ACT_Q8_K_MAG): the decode path. */
void ellm_vec_dot_iq4_xs_mag_avx2(int64_t n, float *out, const void *row, const void *x);
/* ELLM_DOT_ROWS rows at once on the plain Q8_K row (see ellm_vec_dot_rows_fn): the decode path. */
void ellm_vec_dot_q2_K_rows_avx2(int64_t n, float *out, const void *rows, size_t row_bytes,
                                 const void *x);
void ellm_vec_dot_q3_K_rows_avx2(int64_t n, float *out, const void *rows, size_t row_bytes,
                                 const void *x);
void ellm_vec_dot_q6_K_rows_avx2(int64_t n, float *out, const void *rows, size_t row_bytes,
                                 const void *x);
void ellm_vec_dot_q4_K_rows_avx2(int64_t n, float *out, const void *rows, size_t row_bytes,
                                 const void *x);
void ellm_vec_dot_q5_K_rows_avx2(int64_t n, float *out, const void *rows, size_t row_bytes,
                                 const void *x);
/* The same for IQ4_XS on its decode row, ELLM_ACT_Q8_K_MAG. */
void ellm_vec_dot_iq4_xs_mag_rows_avx2(int64_t n, float *out, const void *rows, size_t row_bytes,
                                       const void *x);
/* The avx2vnni set's (AVX2 + AVX-VNNI, vpdpbusd on 256-bit vectors): bit-identical to scalar. */
void ellm_vec_dot_q2_K_avx2vnni(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q3_K_avx2vnni(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q2_K_rows_avx2vnni(int64_t n, float *out, const void *rows, size_t row_bytes,
                                     const void *x);
void ellm_vec_dot_q3_K_rows_avx2vnni(int64_t n, float *out, const void *rows, size_t row_bytes,
                                     const void *x);
/* Tiles of rows × tokens (gemm_avx2.c; see ellm_gemm_fn), bit-identical to the single-row
 * kernels of their type: against extended Q8_0 activation rows, or plain Q8_1 rows for Q4_1 and
 * Q5_1. */
#define ELLM_GEMM_AVX2(type)                                                                       \
    void ellm_gemm_##type##_avx2(int64_t n, const uint8_t *w, size_t w_stride, int64_t n_rows,     \
                                 const uint8_t *x, size_t x_stride, int64_t n_tok, float *y,       \
                                 int64_t y_stride);
ELLM_GEMM_AVX2(q4_0)
ELLM_GEMM_AVX2(q8_0)
ELLM_GEMM_AVX2(q5_0)
ELLM_GEMM_AVX2(iq4_nl)
ELLM_GEMM_AVX2(q4_1)
ELLM_GEMM_AVX2(q5_1)
/* The same for K-quants against plain Q8_K rows (gemm_kquants_avx2.c). */
ELLM_GEMM_AVX2(q4_K)
ELLM_GEMM_AVX2(q5_K)
ELLM_GEMM_AVX2(q6_K)
ELLM_GEMM_AVX2(q2_K)
ELLM_GEMM_AVX2(q3_K)
/* F16 weights against plain F32 rows (gemm_f16_avx2.c). */
ELLM_GEMM_AVX2(f16)
ELLM_GEMM_AVX2(iq4_xs)
/* Quantizes a float row to Q8_0 blocks with the same result as the reference quantizer. */
void ellm_quantize_row_q8_0_avx2(const float *x, void *dst, int64_t n);
/* K-quants against Q8_K activations (kernels_kquants_avx2.c). */
void ellm_vec_dot_q4_K_avx2(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q5_K_avx2(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q6_K_avx2(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q4_K_x4_avx2(int64_t n, float *out, const void *row, const void *const *x);
void ellm_vec_dot_q5_K_x4_avx2(int64_t n, float *out, const void *row, const void *const *x);
void ellm_vec_dot_q6_K_x4_avx2(int64_t n, float *out, const void *row, const void *const *x);
/* Quantizes a float row to Q8_K blocks, byte-identical to the reference quantizer. */
void ellm_quantize_row_q8_K_avx2(const float *x, void *dst, int64_t n);
/* Q4_1, Q5_0, Q5_1 and IQ4_NL (kernels_legacy_avx2.c), single and four-row. */
void ellm_vec_dot_q4_1_avx2(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q5_0_avx2(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q5_1_avx2(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_iq4_nl_avx2(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q4_1_x4_avx2(int64_t n, float *out, const void *row, const void *const *x);
void ellm_vec_dot_q5_0_x4_avx2(int64_t n, float *out, const void *row, const void *const *x);
void ellm_vec_dot_q5_1_x4_avx2(int64_t n, float *out, const void *row, const void *const *x);
void ellm_vec_dot_iq4_nl_x4_avx2(int64_t n, float *out, const void *row, const void *const *x);
/* Quantizes a float row to Q8_1 blocks, byte-identical to the reference quantizer. */
void ellm_quantize_row_q8_1_avx2(const float *x, void *dst, int64_t n);
/* ellm_silu_mul_scalar eight values at a time (silu_avx2.c); the AVX-512 set's too. */
void ellm_silu_mul_avx2(float *gate, const float *up, int64_t n);

/* AVX-512 (F/BW/VL/DQ) + VNNI kernels, compiled into the same x86-64 binary and chosen only on
 * CPUs that have those features. Every one sums exact integers per block and applies the scalar
 * kernel's float operations in its order, so each is bit-identical to the scalar kernel. */
void ellm_vec_dot_q4_0_avx512(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q8_0_avx512(int64_t n, float *out, const void *row, const void *x);
/* The same with x in the extended Q8_0 layout (ellm_quantize_q8_0_ext): the decode path. */
void ellm_vec_dot_q4_0_ext_avx512(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q8_0_ext_avx512(int64_t n, float *out, const void *row, const void *x);
/* K-quants against Q8_K activations, single and four-row (kernels_kquants_avx512.c). */
void ellm_vec_dot_q4_K_avx512(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q5_K_avx512(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q6_K_avx512(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q4_K_x4_avx512(int64_t n, float *out, const void *row, const void *const *x);
void ellm_vec_dot_q5_K_x4_avx512(int64_t n, float *out, const void *row, const void *const *x);
void ellm_vec_dot_q6_K_x4_avx512(int64_t n, float *out, const void *row, const void *const *x);
/* Q2_K, Q3_K and IQ4_XS against Q8_K activations, single rows (kernels_kquants_avx512.c). */
void ellm_vec_dot_q2_K_avx512(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q3_K_avx512(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_iq4_xs_avx512(int64_t n, float *out, const void *row, const void *x);
/* IQ4_XS against ELLM_ACT_Q8_K_HALVES rows (block_q8_K_halves): its decode path. */
void ellm_vec_dot_iq4_xs_halves_avx512(int64_t n, float *out, const void *row, const void *x);
/* Q2_K and Q3_K against ELLM_ACT_Q8_K_PAIRS rows (block_q8_K_pair): their decode path. */
void ellm_vec_dot_q2_K_pairs_avx512(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q3_K_pairs_avx512(int64_t n, float *out, const void *row, const void *x);
/* Tiles against extended Q8_0 activations (gemm_avx512.c; see ellm_gemm_fn): 16 weight rows per
 * step in the vector lanes, so one tile serves decode (one token) and prefill alike. */
void ellm_gemm_q4_0_avx512(int64_t n, const uint8_t *w, size_t w_stride, int64_t n_rows,
                           const uint8_t *x, size_t x_stride, int64_t n_tok, float *y,
                           int64_t y_stride);
void ellm_gemm_q8_0_avx512(int64_t n, const uint8_t *w, size_t w_stride, int64_t n_rows,
                           const uint8_t *x, size_t x_stride, int64_t n_tok, float *y,
                           int64_t y_stride);
/* The same against plain Q8_K activation rows (gemm_kquants_avx512.c). */
void ellm_gemm_q4_K_avx512(int64_t n, const uint8_t *w, size_t w_stride, int64_t n_rows,
                           const uint8_t *x, size_t x_stride, int64_t n_tok, float *y,
                           int64_t y_stride);
void ellm_gemm_q6_K_avx512(int64_t n, const uint8_t *w, size_t w_stride, int64_t n_rows,
                           const uint8_t *x, size_t x_stride, int64_t n_tok, float *y,
                           int64_t y_stride);
/* F16 weights against plain F32 rows (gemm_f16_avx512.c), equal to ellm_vec_dot_f16_avx2. */
void ellm_gemm_f16_avx512(int64_t n, const uint8_t *w, size_t w_stride, int64_t n_rows,
                          const uint8_t *x, size_t x_stride, int64_t n_tok, float *y,
                          int64_t y_stride);
#endif

#if defined(__aarch64__)
#define ELLM_HAVE_NEON_KERNELS 1
/* NEON kernels (kernels_neon.c): float dots and the activation quantizers, shared by both ARM
 * sets, byte-identical quantizers and bit-identical integer dots to the scalar kernels. */
void ellm_vec_dot_f32_neon(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_f16_neon(int64_t n, float *out, const void *row, const void *x);
void ellm_quantize_row_q8_0_neon(const float *x, void *dst, int64_t n);
void ellm_quantize_row_q8_K_neon(const float *x, void *dst, int64_t n);
void ellm_quantize_row_q8_1_neon(const float *x, void *dst, int64_t n);
/* ellm_silu_mul_scalar four values at a time (silu_neon.c), both ARM sets'. */
void ellm_silu_mul_neon(float *gate, const float *up, int64_t n);
/* Integer dot kernels (kernels_neon_int.inc), once with plain NEON (_neon) and once with the
 * ARMv8.2 dot-product extension (_neon_dotprod, kernels_neon_dotprod.c). */
#define ELLM_NEON_INT_KERNELS(suffix)                                                              \
    void ellm_vec_dot_q8_0_##suffix(int64_t n, float *out, const void *row, const void *x);        \
    void ellm_vec_dot_q4_0_##suffix(int64_t n, float *out, const void *row, const void *x);        \
    void ellm_vec_dot_q8_0_x4_##suffix(int64_t n, float *out, const void *row,                     \
                                       const void *const *x);                                      \
    void ellm_vec_dot_q4_0_x4_##suffix(int64_t n, float *out, const void *row,                     \
                                       const void *const *x);                                      \
    void ellm_vec_dot_q4_K_##suffix(int64_t n, float *out, const void *row, const void *x);        \
    void ellm_vec_dot_q5_K_##suffix(int64_t n, float *out, const void *row, const void *x);        \
    void ellm_vec_dot_q6_K_##suffix(int64_t n, float *out, const void *row, const void *x);        \
    void ellm_vec_dot_q4_K_x4_##suffix(int64_t n, float *out, const void *row,                     \
                                       const void *const *x);                                      \
    void ellm_vec_dot_q5_K_x4_##suffix(int64_t n, float *out, const void *row,                     \
                                       const void *const *x);                                      \
    void ellm_vec_dot_q6_K_x4_##suffix(int64_t n, float *out, const void *row,                     \
                                       const void *const *x);                                      \
    void ellm_vec_dot_q2_K_##suffix(int64_t n, float *out, const void *row, const void *x);        \
    void ellm_vec_dot_q3_K_##suffix(int64_t n, float *out, const void *row, const void *x);        \
    void ellm_vec_dot_iq4_xs_##suffix(int64_t n, float *out, const void *row, const void *x);      \
    void ellm_vec_dot_q2_K_x4_##suffix(int64_t n, float *out, const void *row,                     \
                                       const void *const *x);                                      \
    void ellm_vec_dot_q3_K_x4_##suffix(int64_t n, float *out, const void *row,                     \
                                       const void *const *x);                                      \
    void ellm_vec_dot_iq4_xs_x4_##suffix(int64_t n, float *out, const void *row,                   \
                                         const void *const *x);                                    \
    void ellm_vec_dot_q4_1_##suffix(int64_t n, float *out, const void *row, const void *x);        \
    void ellm_vec_dot_q4_1_x4_##suffix(int64_t n, float *out, const void *row,                     \
                                       const void *const *x);                                      \
    void ellm_vec_dot_q5_0_##suffix(int64_t n, float *out, const void *row, const void *x);        \
    void ellm_vec_dot_q5_0_x4_##suffix(int64_t n, float *out, const void *row,                     \
                                       const void *const *x);                                      \
    void ellm_vec_dot_q5_1_##suffix(int64_t n, float *out, const void *row, const void *x);        \
    void ellm_vec_dot_q5_1_x4_##suffix(int64_t n, float *out, const void *row,                     \
                                       const void *const *x);                                      \
    void ellm_vec_dot_iq4_nl_##suffix(int64_t n, float *out, const void *row, const void *x);      \
    void ellm_vec_dot_iq4_nl_x4_##suffix(int64_t n, float *out, const void *row,                   \
                                         const void *const *x);
ELLM_NEON_INT_KERNELS(neon)
ELLM_NEON_INT_KERNELS(neon_dotprod)
#endif

#if defined(__wasm__)
#define ELLM_HAVE_WASM_SIMD_KERNELS 1
/* WebAssembly SIMD128 kernels (kernels_wasm_simd.c): every one bit-identical to the scalar
 * kernel of its type. Every engine that runs the web build has SIMD128, so the set is always
 * chosen there (a module without it would not validate anyway). */
void ellm_vec_dot_f32_wasm_simd(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_f16_wasm_simd(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q8_0_wasm_simd(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q4_0_wasm_simd(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_iq4_nl_wasm_simd(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q5_0_wasm_simd(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q4_1_wasm_simd(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q5_1_wasm_simd(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q4_K_wasm_simd(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q5_K_wasm_simd(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q6_K_wasm_simd(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_iq4_xs_wasm_simd(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q2_K_wasm_simd(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q3_K_wasm_simd(int64_t n, float *out, const void *row, const void *x);
/* The same with x in the wide (16-bit) layouts, ELLM_ACT_Q8_0_WIDE for the 32-value formats and
 * ELLM_ACT_Q8_K_WIDE for the others: the decode path. */
void ellm_vec_dot_q4_0_wide_wasm_simd(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q5_0_wide_wasm_simd(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q8_0_wide_wasm_simd(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_iq4_nl_wide_wasm_simd(int64_t n, float *out, const void *row, const void *x);
/* ELLM_DOT_ROWS rows at once on the wide Q8_0 row (see ellm_vec_dot_rows_fn). */
void ellm_vec_dot_q4_0_wide_rows_wasm_simd(int64_t n, float *out, const void *rows,
                                           size_t row_bytes, const void *x);
void ellm_vec_dot_q5_0_wide_rows_wasm_simd(int64_t n, float *out, const void *rows,
                                           size_t row_bytes, const void *x);
void ellm_vec_dot_q8_0_wide_rows_wasm_simd(int64_t n, float *out, const void *rows,
                                           size_t row_bytes, const void *x);
void ellm_vec_dot_iq4_nl_wide_rows_wasm_simd(int64_t n, float *out, const void *rows,
                                             size_t row_bytes, const void *x);
void ellm_vec_dot_q4_K_wide_wasm_simd(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q5_K_wide_wasm_simd(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q6_K_wide_wasm_simd(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_iq4_xs_wide_wasm_simd(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q2_K_wide_wasm_simd(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q3_K_wide_wasm_simd(int64_t n, float *out, const void *row, const void *x);
/* Activation quantizers, byte-identical to the reference ones: Q8_0 and Q8_K rows, and the
 * extended, wide and split layouts (ELLM_ACT_Q8_0_EXT, ELLM_ACT_Q8_0_WIDE, ELLM_ACT_Q8_0_SPLIT,
 * ELLM_ACT_Q8_K_WIDE) written directly. */
void ellm_quantize_row_q8_0_wasm_simd(const float *x, void *dst, int64_t n);
void ellm_quantize_row_q8_K_wasm_simd(const float *x, void *dst, int64_t n);
void ellm_quantize_q8_0_ext_wasm_simd(const float *x, void *dst, int64_t n);
void ellm_quantize_q8_0_wide_wasm_simd(const float *x, void *dst, int64_t n);
void ellm_quantize_q8_0_split_wasm_simd(const float *x, void *dst, int64_t n);
void ellm_quantize_q8_K_wide_wasm_simd(const float *x, void *dst, int64_t n);
/* ellm_silu_mul_scalar four values at a time (silu_wasm_simd.c), both wasm sets'. */
void ellm_silu_mul_wasm_simd(float *gate, const float *up, int64_t n);
/* Tiles of four rows in lanes (gemm_wasm_simd.c; see ellm_gemm_fn): Q4_0, Q8_0, Q5_0 and IQ4_NL
 * against extended Q8_0 activations, Q4_1 and Q5_1 against plain Q8_1 rows, K-quants against
 * Q8_K rows; bit-identical to the kernels above. */
#define ELLM_WASM_GEMM(type, set)                                                                  \
    void ellm_gemm_##type##_##set(int64_t n, const uint8_t *w, size_t w_stride, int64_t n_rows,    \
                                  const uint8_t *x, size_t x_stride, int64_t n_tok, float *y,      \
                                  int64_t y_stride);
#define ELLM_WASM_SIMD_GEMM(type) ELLM_WASM_GEMM(type, wasm_simd)
ELLM_WASM_SIMD_GEMM(q4_0)
ELLM_WASM_SIMD_GEMM(q8_0)
ELLM_WASM_SIMD_GEMM(q4_K)
ELLM_WASM_SIMD_GEMM(q5_K)
ELLM_WASM_SIMD_GEMM(q6_K)
ELLM_WASM_SIMD_GEMM(q5_0)
ELLM_WASM_SIMD_GEMM(iq4_nl)
ELLM_WASM_SIMD_GEMM(q4_1)
ELLM_WASM_SIMD_GEMM(q5_1)
ELLM_WASM_SIMD_GEMM(iq4_xs)
ELLM_WASM_SIMD_GEMM(q2_K)
ELLM_WASM_SIMD_GEMM(q3_K)
/* The same tiles with 8-bit products by relaxed SIMD's dot (the wasm-relaxed set, in a patched
 * module only): the weight levels stay bytes below 64, bit-identical to the kernels above. */
ELLM_WASM_GEMM(q4_0, wasm_relaxed)
ELLM_WASM_GEMM(q4_K, wasm_relaxed)
ELLM_WASM_GEMM(q5_K, wasm_relaxed)
ELLM_WASM_GEMM(q6_K, wasm_relaxed)
/* The wasm-relaxed set (kernels_wasm_relaxed.c): single rows against plain Q8_K rows whose 8-bit
 * products are relaxed SIMD dots (Q4_0, Q5_0: on extended Q8_0 rows), bit-identical to the scalar
 * kernels. They run the dot only in a module the web build patched; ellm_wasm_relaxed_patched says
 * whether this one is. */
bool ellm_wasm_relaxed_patched(void);
void ellm_vec_dot_q4_K_wasm_relaxed(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q5_K_wasm_relaxed(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q6_K_wasm_relaxed(int64_t n, float *out, const void *row, const void *x);
/* ELLM_DOT_ROWS rows at once on the plain Q8_K row (see ellm_vec_dot_rows_fn). */
void ellm_vec_dot_q4_K_rows_wasm_relaxed(int64_t n, float *out, const void *rows, size_t row_bytes,
                                         const void *x);
void ellm_vec_dot_q5_K_rows_wasm_relaxed(int64_t n, float *out, const void *rows, size_t row_bytes,
                                         const void *x);
void ellm_vec_dot_q6_K_rows_wasm_relaxed(int64_t n, float *out, const void *rows, size_t row_bytes,
                                         const void *x);
/* Q4_0 and Q5_0 against the extended Q8_0 row (ELLM_ACT_Q8_0_EXT), one row and ELLM_DOT_ROWS
 * rows. */
void ellm_vec_dot_q4_0_ext_wasm_relaxed(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q4_0_ext_rows_wasm_relaxed(int64_t n, float *out, const void *rows,
                                             size_t row_bytes, const void *x);
/* Q4_0 in ELLM_ROWS_BY_FOUR order: one group against the extended row, and tiles of groups. */
void ellm_vec_dot_q4_0_by_four_wasm_relaxed(int64_t n, float *out, const void *rows,
                                            size_t row_bytes, const void *x);
ELLM_WASM_GEMM(q4_0_by_four, wasm_relaxed)
void ellm_vec_dot_q5_0_ext_wasm_relaxed(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q5_0_ext_rows_wasm_relaxed(int64_t n, float *out, const void *rows,
                                             size_t row_bytes, const void *x);
/* Q8_0 against the split Q8_0 row (ELLM_ACT_Q8_0_SPLIT), one row and ELLM_DOT_ROWS rows. */
void ellm_vec_dot_q8_0_split_wasm_relaxed(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q8_0_split_rows_wasm_relaxed(int64_t n, float *out, const void *rows,
                                               size_t row_bytes, const void *x);
#endif

#endif
