/* Attention kernels per instruction set, registered with the matrix kernels in the kernel sets of
 * dispatch.c: the set in use decides both, so forcing a set (the scalar one included) decides
 * the attention path too. */
#ifndef EDGELLM_QUANT_ATTENTION_KERNELS_H
#define EDGELLM_QUANT_ATTENTION_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* One head of one token over an F16 cache: rows of stride bytes, n_pos of them, the head's hd
 * values at the start of each row; acc (hd halves) and qr (hd floats) are scratch. */
typedef void (*ellm_attend_f16_fn)(const float *q, const uint8_t *kc, const uint8_t *vc,
                                   size_t stride, int32_t n_pos, int32_t hd, float scale,
                                   uint16_t *acc, float *qr, float *out);
/* n_heads query heads sharing one KV head (q and out hold them one after another). */
typedef void (*ellm_attend_f16_group_fn)(const float *q, const uint8_t *kc, const uint8_t *vc,
                                         size_t stride, int32_t n_pos, int32_t hd, float scale,
                                         int32_t n_heads, float *out);

typedef struct ellm_attention_kernels {
    const char *isa;
    ellm_attend_f16_fn f16;      /* any head size; bit-identical to ellm_attend_f16_portable */
    ellm_attend_f16_fn f16_wide; /* head sizes that are a multiple of 32; NULL: f16 */
    /* Head sizes 64 and 128 with more than one query head per KV head, each head exactly as
     * f16_wide computes it; NULL where the set has none. */
    ellm_attend_f16_group_fn f16_group;
} ellm_attention_kernels;

/* The attention kernels of the kernel set in use (see ellm_kernels_for). */
const ellm_attention_kernels *ellm_attention_kernels_active(void);

/* One attention head of one token over an F16 cache (attention_f16.inc), with the portable
 * half conversions: what every ISA copy below except the *_wide ones must equal bit for bit. */
void ellm_attend_f16_portable(const float *q, const uint8_t *kc, const uint8_t *vc, size_t stride,
                              int32_t n_pos, int32_t hd, float scale, uint16_t *acc, float *qr,
                              float *out);

#if defined(__x86_64__)
#define ELLM_HAVE_F16C_ATTENTION 1
/* One attention head over an F16 cache using F16C conversions (see attention_f16.inc). */
void ellm_attend_f16_f16c(const float *q, const uint8_t *kc, const uint8_t *vc, size_t stride,
                          int32_t n_pos, int32_t hd, float scale, uint16_t *acc, float *qr,
                          float *out);
/* The same for head sizes that are a multiple of 32, eight lanes at a time. */
void ellm_attend_f16_f16c_wide(const float *q, const uint8_t *kc, const uint8_t *vc,
                               size_t stride, int32_t n_pos, int32_t hd, float scale,
                               uint16_t *acc, float *qr, float *out);
/* n_heads query heads sharing one KV head (q and out hold them one after another), each exactly
 * as ellm_attend_f16_f16c_wide computes it; head sizes 64 and 128, CPUs with AVX-512
 * (attention_avx512.c). */
void ellm_attend_f16_group_avx512(const float *q, const uint8_t *kc, const uint8_t *vc,
                                  size_t stride, int32_t n_pos, int32_t hd, float scale,
                                  int32_t n_heads, float *out);
#endif

#if defined(__aarch64__)
#define ELLM_HAVE_NEON_ATTENTION 1
/* One attention head over an F16 cache with AArch64 half conversions (attention_neon.c). */
void ellm_attend_f16_neon(const float *q, const uint8_t *kc, const uint8_t *vc, size_t stride,
                          int32_t n_pos, int32_t hd, float scale, uint16_t *acc, float *qr,
                          float *out);
/* Head sizes that are a multiple of 32: the F16C wide path's computation, eight lanes a step. */
void ellm_attend_f16_neon_wide(const float *q, const uint8_t *kc, const uint8_t *vc,
                               size_t stride, int32_t n_pos, int32_t hd, float scale,
                               uint16_t *acc, float *qr, float *out);
#endif

#if defined(__wasm__)
/* The same with SIMD128 half conversions (attention_wasm_simd.c, built with -msimd128);
 * bit-identical to the portable head for every head size. */
void ellm_attend_f16_wasm_simd(const float *q, const uint8_t *kc, const uint8_t *vc,
                               size_t stride, int32_t n_pos, int32_t hd, float scale,
                               uint16_t *acc, float *qr, float *out);
#endif

#endif
