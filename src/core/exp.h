/* The project's e^x for float: the softmax factors of the attention kernels and SiLU's e^-g. */
#ifndef EDGELLM_CORE_EXP_H
#define EDGELLM_CORE_EXP_H

#include <math.h>
#include <stdint.h>

/* Built from additions, multiplications and an exponent made in integers only (no fused
 * multiply-add, no table), so that the vector copies of every ISA (the wide attention kernels,
 * the SiLU kernels) give exactly this value lane by lane. Round x / ln 2 to n, reduce
 * r = x - n ln 2 in two steps (ln 2 split so n * hi is exact), e^r by Cephes' degree-7 minimax
 * polynomial, times 2^n applied as two halves so that n = 128 (x just under ln FLT_MAX) still
 * fits the exponent field; both products are exact scalings where the result is a normal float,
 * so for x <= 0 this is the single 2^n product the attention kernels' lanes compute.
 * Max error 1 ulp against a double-precision exp over every float in [-87, 88.7]
 * (tests/test_quant.c samples it, docs/performance.md "Session 16" has the exhaustive figures).
 * Below -87 (results under 1.7e-38, near FLT_MIN) it gives 0; above 88.75 +inf (floats beyond
 * ln FLT_MAX = 88.7228 overflow to +inf in the product); NaN stays NaN. */
#define ELLM_EXP_LOG2E 1.44269504088896341f
#define ELLM_EXP_ROUNDER 12582912.0f /* 1.5 * 2^23: adding it rounds to an integer */
#define ELLM_EXP_LN2_HI 0.693359375f
#define ELLM_EXP_LN2_LO -2.12194440e-4f
#define ELLM_EXP_FLOOR -87.0f
#define ELLM_EXP_CEILING 88.75f
#define ELLM_EXP_P0 1.9875691500e-4f
#define ELLM_EXP_P1 1.3981999507e-3f
#define ELLM_EXP_P2 8.3334519073e-3f
#define ELLM_EXP_P3 4.1665795894e-2f
#define ELLM_EXP_P4 1.6666665459e-1f
#define ELLM_EXP_P5 5.0000001201e-1f

/* 2^k for k in [-126, 127], from its exponent bits. */
static inline float ellm_exp_pow2(int32_t k)
{
    union {
        uint32_t u;
        float f;
    } two_k = {.u = (uint32_t)(k + 127) << 23};
    return two_k.f;
}

static inline float ellm_exp(float x)
{
    if (!(x >= ELLM_EXP_FLOOR && x <= ELLM_EXP_CEILING))
        return x < ELLM_EXP_FLOOR ? 0.0f : x > ELLM_EXP_CEILING ? INFINITY : x;
    float n = (x * ELLM_EXP_LOG2E + ELLM_EXP_ROUNDER) - ELLM_EXP_ROUNDER;
    float r = x - n * ELLM_EXP_LN2_HI;
    r = r - n * ELLM_EXP_LN2_LO;
    float p = ELLM_EXP_P0 * r + ELLM_EXP_P1;
    p = p * r + ELLM_EXP_P2;
    p = p * r + ELLM_EXP_P3;
    p = p * r + ELLM_EXP_P4;
    p = p * r + ELLM_EXP_P5;
    float e = p * (r * r) + r + 1.0f;
    /* n is in [-126, 128]; the vector copies halve it with an arithmetic shift, so this does. */
    int32_t n_int = (int32_t)n, low = n_int >> 1;
    return e * ellm_exp_pow2(low) * ellm_exp_pow2(n_int - low);
}

/* e^x rounded once to float from a double-precision computation: the correctly rounded float
 * but for about one x in 10^5, so it agrees with a correctly rounding libm's expf (glibc's) where
 * ellm_exp's 1-ulp errors, under 8 % of x in [-10, 10], move a model's logits measurably (test_model's
 * reference logits: 0.0009 off with expf, 0.0022 with ellm_exp). SiLU takes it. x is limited
 * to [-104, 89] (beyond, the float result is 0 or +inf anyway) and NaN stays NaN; then
 * n = x / ln 2 rounded, r = x - n ln 2 in double, e^r by its Taylor polynomial to degree 10
 * (truncation under 2.5e-13 for |r| <= ln 2 / 2), times 2^n made from the bits of the rounding
 * sum. Additions and multiplications only, no fused multiply-add, so vector copies of any width
 * give exactly this value. */
#define ELLM_EXP_ROUNDED_LOW -104.0f
#define ELLM_EXP_ROUNDED_HIGH 89.0f
#define ELLM_EXP_ROUNDED_SHIFTER 6755399441055744.0 /* 1.5 * 2^52: adding it rounds to an integer */
#define ELLM_EXP_ROUNDED_LOG2E 1.4426950408889634
#define ELLM_EXP_ROUNDED_LN2 0.6931471805599453
#define ELLM_EXP_ROUNDED_C10 (1.0 / 3628800.0)
#define ELLM_EXP_ROUNDED_C9 (1.0 / 362880.0)
#define ELLM_EXP_ROUNDED_C8 (1.0 / 40320.0)
#define ELLM_EXP_ROUNDED_C7 (1.0 / 5040.0)
#define ELLM_EXP_ROUNDED_C6 (1.0 / 720.0)
#define ELLM_EXP_ROUNDED_C5 (1.0 / 120.0)
#define ELLM_EXP_ROUNDED_C4 (1.0 / 24.0)
#define ELLM_EXP_ROUNDED_C3 (1.0 / 6.0)
#define ELLM_EXP_ROUNDED_C2 0.5

static inline float ellm_exp_rounded(float x)
{
    float limited = x < ELLM_EXP_ROUNDED_LOW    ? ELLM_EXP_ROUNDED_LOW
                    : x > ELLM_EXP_ROUNDED_HIGH ? ELLM_EXP_ROUNDED_HIGH
                                                : x;
    double xd = limited;
    union {
        double f;
        uint64_t u;
    } shifted = {.f = xd * ELLM_EXP_ROUNDED_LOG2E + ELLM_EXP_ROUNDED_SHIFTER}, two_n;
    double n = shifted.f - ELLM_EXP_ROUNDED_SHIFTER;
    double r = xd - n * ELLM_EXP_ROUNDED_LN2;
    double p = ELLM_EXP_ROUNDED_C10 * r + ELLM_EXP_ROUNDED_C9;
    p = p * r + ELLM_EXP_ROUNDED_C8;
    p = p * r + ELLM_EXP_ROUNDED_C7;
    p = p * r + ELLM_EXP_ROUNDED_C6;
    p = p * r + ELLM_EXP_ROUNDED_C5;
    p = p * r + ELLM_EXP_ROUNDED_C4;
    p = p * r + ELLM_EXP_ROUNDED_C3;
    p = p * r + ELLM_EXP_ROUNDED_C2;
    p = p * r + 1.0;
    p = p * r + 1.0;
    /* The sum's low mantissa bits hold n (in [-150, 128]) in two's complement; adding the
     * exponent bias and shifting leaves exactly 2^n's exponent field. */
    two_n.u = (shifted.u + 1023) << 52;
    return (float)(p * two_n.f);
}

#endif
