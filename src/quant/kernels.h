/* Dot-product kernels per ISA, registered in dispatch.c. Each computes *out = row · x over n
 * values, with x already in the weight type's vec_dot_type. */
#ifndef EDGELLM_QUANT_KERNELS_H
#define EDGELLM_QUANT_KERNELS_H

#include <stddef.h>
#include <stdint.h>

void ellm_vec_dot_f32_scalar(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_f16_scalar(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_bf16_scalar(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q8_0_scalar(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q4_0_scalar(int64_t n, float *out, const void *row, const void *x);
/* K-quants against Q8_K activations (kernels_kquants_scalar.c). */
void ellm_vec_dot_q4_K_scalar(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q5_K_scalar(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q6_K_scalar(int64_t n, float *out, const void *row, const void *x);
/* Low-bit K-quants against Q8_K activations (kernels_kquants_low_*.c). */
void ellm_vec_dot_q2_K_scalar(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q3_K_scalar(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_iq4_xs_scalar(int64_t n, float *out, const void *row, const void *x);

#if defined(__x86_64__) || defined(_M_X64)
#define ELLM_HAVE_AVX2_KERNELS 1
void ellm_vec_dot_f32_avx2(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_f16_avx2(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q8_0_avx2(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q4_0_avx2(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q8_0_x4_avx2(int64_t n, float *out, const void *row, const void *const *x);
void ellm_vec_dot_q4_0_x4_avx2(int64_t n, float *out, const void *row, const void *const *x);
/* Tiles of rows × tokens against extended Q8_0 activations (gemm_avx2.c; see ellm_gemm_fn).
 * ellm_gemm_avx2_init must have run once before (it fills their scale table). */
void ellm_gemm_avx2_init(void);
void ellm_gemm_q4_0_avx2(int64_t n, const uint8_t *w, size_t w_stride, int64_t n_rows,
                         const uint8_t *x, size_t x_stride, int64_t n_tok, float *y,
                         int64_t y_stride);
void ellm_gemm_q8_0_avx2(int64_t n, const uint8_t *w, size_t w_stride, int64_t n_rows,
                         const uint8_t *x, size_t x_stride, int64_t n_tok, float *y,
                         int64_t y_stride);
void ellm_vec_dot_q2_K_avx2(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_q3_K_avx2(int64_t n, float *out, const void *row, const void *x);
void ellm_vec_dot_iq4_xs_avx2(int64_t n, float *out, const void *row, const void *x);
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
#endif

#endif
