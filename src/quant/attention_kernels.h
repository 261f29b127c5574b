/* Attention kernels per instruction set, registered with the matrix kernels in the kernel sets of
 * dispatch.c: the set in use decides both, so forcing a set (the scalar one included) decides
 * the attention path too. */
#ifndef EDGELLM_QUANT_ATTENTION_KERNELS_H
#define EDGELLM_QUANT_ATTENTION_KERNELS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "core/exp.h"

/* One head of one token over an F16 cache: rows of stride bytes, n_pos of them, the head's hd
 * values at the start of each row; acc (hd halves) and qr (hd floats) are scratch. */
typedef void (*ellm_attend_f16_fn)(const float *q, const uint8_t *kc, const uint8_t *vc,
                                   size_t stride, int32_t n_pos, int32_t hd, float scale,
                                   uint16_t *acc, float *qr, float *out);
/* The wide paths (head sizes in 32s): acc is scratch for hd floats, where the running output is
 * kept in F32 across positions; qr (hd floats) takes the F16-rounded query. */
typedef void (*ellm_attend_f16_wide_fn)(const float *q, const uint8_t *kc, const uint8_t *vc,
                                        size_t stride, int32_t n_pos, int32_t hd, float scale,
                                        float *acc, float *qr, float *out);
/* n_heads query heads sharing one KV head (q and out hold them one after another). */
typedef void (*ellm_attend_f16_group_fn)(const float *q, const uint8_t *kc, const uint8_t *vc,
                                         size_t stride, int32_t n_pos, int32_t hd, float scale,
                                         int32_t n_heads, float *out);

/* n_tokens consecutive tokens of one sequence, each with n_heads query heads sharing one KV
 * head: token t over the first n_pos + t positions, its heads' queries at q + t * q_stride and
 * outputs at out + t * out_stride (floats), each (token, head) exactly as the set's f16_group
 * computes it for that token alone. A prefill's tokens share each block of key and value rows. */
typedef void (*ellm_attend_f16_group_tokens_fn)(const float *q, size_t q_stride, const uint8_t *kc,
                                                const uint8_t *vc, size_t stride, int32_t n_pos,
                                                int32_t n_tokens, int32_t hd, float scale,
                                                int32_t n_heads, float *out, size_t out_stride);

/* The largest finite F16. */
#define ELLM_F16_MAX 65504.0f

/* x limited to F16's range, +-65504, before it is rounded to F16 (the F16 cache's keys and values,
 * the query the F16 kernels round, their running output): beyond it x would round to an
 * infinity, and an infinity times a zero, or less another infinity, in the scores or the running
 * output makes every later logit NaN. NaN stays NaN, so a model computing it is still reported. */
static inline float ellm_f16_saturate(float x)
{
    return x > ELLM_F16_MAX ? ELLM_F16_MAX : x < -ELLM_F16_MAX ? -ELLM_F16_MAX : x;
}

/* The Q8_0 cache's softmax, in place: two passes as ellm_attention_softmax_exact, but each weight
 * is ellm_exp(score - max) and the sum is kept in eight partial sums (position p in
 * sum p % 8) added ((0 + 1) + (2 + 3)) + ((4 + 5) + (6 + 7)), so that eight-lane copies give
 * the same bits. */
static inline void ellm_attention_softmax_q8_0(float *scores, int32_t n)
{
    float max = -INFINITY, part[8] = {0};
    for (int32_t p = 0; p < n; p++)
        max = scores[p] > max ? scores[p] : max;
    for (int32_t p = 0; p < n; p++) {
        scores[p] = ellm_exp(scores[p] - max);
        part[p % 8] += scores[p];
    }
    float sum = ((part[0] + part[1]) + (part[2] + part[3])) +
                ((part[4] + part[5]) + (part[6] + part[7]));
    float inv = 1.0f / sum;
    for (int32_t p = 0; p < n; p++)
        scores[p] *= inv;
}

/* Asks for the `bytes` of one head's cached row `ahead` bytes on (the row a block of positions
 * further) while this block is computed: the rows of a head are strided (every KV head of a
 * position is one row), which the hardware prefetchers alone follow too late to keep one core
 * streaming. Prefetches never fault, so running past the cache's end is harmless; the address
 * is formed as an integer so no out-of-object pointer is made. */
static inline void ellm_attention_prefetch(const uint8_t *row, size_t ahead, int bytes)
{
    for (int k = 0; k < bytes; k += 64)
        __builtin_prefetch((const void *)((uintptr_t)row + ahead + (unsigned)k), 0, 3);
}

/* Scores to softmax weights in place, the exact two-pass way in float: the largest score taken
 * out before expf, the sum's reciprocal applied to each weight (the F32 and Q8_0 caches'). */
static inline void ellm_attention_softmax_exact(float *scores, int32_t n)
{
    float max = -INFINITY, sum = 0;
    for (int32_t p = 0; p < n; p++)
        max = scores[p] > max ? scores[p] : max;
    for (int32_t p = 0; p < n; p++) {
        scores[p] = expf(scores[p] - max);
        sum += scores[p];
    }
    float inv = 1.0f / sum;
    for (int32_t p = 0; p < n; p++)
        scores[p] *= inv;
}

/* out[i] += (w * d) * q for the values q (scale d) of n_blocks Q8_0 blocks, in that order of
 * operations (no fused multiply-add): one position's values in a Q8_0 cache's weighted sum. */
typedef void (*ellm_axpy_q8_0_fn)(int32_t n_blocks, float w, const void *blocks, float *out);

/* n_heads query heads sharing one KV head over a Q8_0 cache whose head is whole blocks (hd a
 * multiple of 32) at the start of each row: q8 holds the heads' queries quantized to Q8_0 (hd / 32
 * blocks each, one head after another). Per head exactly the one-head Q8_0 path: each score the
 * Q8_0 dot (exact integer block sums, then sum += (d_k * d_q) * isum block by block) times
 * scale, soft-capped (cap * tanhf(s / cap)) when cap > 0, the two-pass softmax
 * ellm_attention_softmax_q8_0, then the values' weighted sum position by position as
 * ellm_axpy_q8_0_portable computes it. Each key and value row is read once for the group.
 * scores is scratch for n_heads * n_pos floats; out takes the heads one after another. */
typedef void (*ellm_attend_q8_0_group_fn)(const void *q8, const uint8_t *kc, const uint8_t *vc,
                                          size_t stride, int32_t n_pos, int32_t hd, float scale,
                                          float cap, int32_t n_heads, float *scores, float *out);
/* n values of src saturated (ellm_f16_saturate) and rounded to F16 at dst: the F16 cache's rows. */
typedef void (*ellm_f16_store_fn)(const float *src, uint8_t *dst, int64_t n);

typedef struct ellm_attention_kernels {
    const char *isa;
    ellm_attend_f16_fn f16;           /* any head size; bit-identical to ellm_attend_f16_portable */
    ellm_attend_f16_wide_fn f16_wide; /* head sizes that are a multiple of 32; NULL: f16 */
    /* Head sizes 64 and 128 with more than one query head per KV head, each head exactly as
     * f16_wide computes it; NULL where the set has none. */
    ellm_attend_f16_group_fn f16_group;
    ellm_axpy_q8_0_fn axpy_q8_0; /* bit-identical to ellm_axpy_q8_0_portable; NULL: that one */
    /* Bit-identical to ellm_attend_q8_0_group_portable; NULL: that one. */
    ellm_attend_q8_0_group_fn q8_0_group;
    /* Where f16_group applies, several tokens a call; NULL: f16_group token by token. */
    ellm_attend_f16_group_tokens_fn f16_group_tokens;
    ellm_f16_store_fn f16_store; /* bit-identical to ellm_f16_store_portable; NULL: that one */
} ellm_attention_kernels;

/* The attention kernels of the kernel set in use (see ellm_kernels_for). */
const ellm_attention_kernels *ellm_attention_kernels_active(void);

/* One attention head of one token over an F16 cache (attention_f16.inc), with the portable
 * half conversions: what every ISA copy below except the *_wide ones must equal bit for bit. */
void ellm_attend_f16_portable(const float *q, const uint8_t *kc, const uint8_t *vc, size_t stride,
                              int32_t n_pos, int32_t hd, float scale, uint16_t *acc, float *qr,
                              float *out);

void ellm_axpy_q8_0_portable(int32_t n_blocks, float w, const void *blocks, float *out);
void ellm_f16_store_portable(const float *src, uint8_t *dst, int64_t n);
void ellm_attend_q8_0_group_portable(const void *q8, const uint8_t *kc, const uint8_t *vc,
                                     size_t stride, int32_t n_pos, int32_t hd, float scale,
                                     float cap, int32_t n_heads, float *scores, float *out);

#if defined(__x86_64__)
#define ELLM_HAVE_F16C_ATTENTION 1
/* ellm_axpy_q8_0_portable eight values at a time (attention_avx2.c). */
void ellm_axpy_q8_0_avx2(int32_t n_blocks, float w, const void *blocks, float *out);
/* ellm_f16_store_portable eight values at a time with F16C's rounding (attention_avx2.c). */
void ellm_f16_store_f16c(const float *src, uint8_t *dst, int64_t n);
/* One attention head over an F16 cache using F16C conversions (see attention_f16.inc). */
void ellm_attend_f16_f16c(const float *q, const uint8_t *kc, const uint8_t *vc, size_t stride,
                          int32_t n_pos, int32_t hd, float scale, uint16_t *acc, float *qr,
                          float *out);
/* The same for head sizes that are a multiple of 32, eight lanes at a time, the running output
 * in F32. */
void ellm_attend_f16_f16c_wide(const float *q, const uint8_t *kc, const uint8_t *vc, size_t stride,
                               int32_t n_pos, int32_t hd, float scale, float *acc, float *qr,
                               float *out);
/* n_heads query heads sharing one KV head (q and out hold them one after another), each exactly
 * as ellm_attend_f16_f16c_wide computes it; head sizes 64 and 128 (attention_avx2.c). */
void ellm_attend_f16_group_avx2(const float *q, const uint8_t *kc, const uint8_t *vc, size_t stride,
                                int32_t n_pos, int32_t hd, float scale, int32_t n_heads,
                                float *out);
/* The same for consecutive tokens (ellm_attend_f16_group_tokens_fn): each block of rows converted
 * once for up to four tokens' heads. */
void ellm_attend_f16_group_tokens_avx2(const float *q, size_t q_stride, const uint8_t *kc,
                                       const uint8_t *vc, size_t stride, int32_t n_pos,
                                       int32_t n_tokens, int32_t hd, float scale, int32_t n_heads,
                                       float *out, size_t out_stride);
/* ellm_attend_q8_0_group_portable with AVX2 integer block sums, eight heads at a time. */
void ellm_attend_q8_0_group_avx2(const void *q8, const uint8_t *kc, const uint8_t *vc,
                                 size_t stride, int32_t n_pos, int32_t hd, float scale, float cap,
                                 int32_t n_heads, float *scores, float *out);
/* The same with 512-bit vectors, CPUs with AVX-512 (attention_avx512.c). */
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
void ellm_attend_f16_neon_wide(const float *q, const uint8_t *kc, const uint8_t *vc, size_t stride,
                               int32_t n_pos, int32_t hd, float scale, float *acc, float *qr,
                               float *out);
#endif

#if defined(__wasm__)
/* The same with SIMD128 half conversions (attention_wasm_simd.c, built with -msimd128);
 * bit-identical to the portable head for every head size. */
void ellm_attend_f16_wasm_simd(const float *q, const uint8_t *kc, const uint8_t *vc, size_t stride,
                               int32_t n_pos, int32_t hd, float scale, uint16_t *acc, float *qr,
                               float *out);
/* n_heads query heads sharing one KV head, each bit for bit ellm_attend_f16_wasm_simd (so the
 * portable head): the keys and values converted once for the group; head sizes that are a
 * multiple of 4 up to 128 (attention.c passes 64 and 128). */
void ellm_attend_f16_group_wasm_simd(const float *q, const uint8_t *kc, const uint8_t *vc,
                                     size_t stride, int32_t n_pos, int32_t hd, float scale,
                                     int32_t n_heads, float *out);
#endif

#endif
