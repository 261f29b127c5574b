/* The project's e^x for float: the softmax factors of the attention kernels and SiLU's e^-g. */
#ifndef EDGELLM_CORE_EXP_H
#define EDGELLM_CORE_EXP_H

#include <math.h>
#include <stdint.h>

/* e^x for x <= 0 (the softmax factors of the attention kernels: a score less the running
 * maximum), built from additions, multiplications and an exponent made in integers only (no fused
 * multiply-add, no table), so that the vector copies in the wide attention kernels of every ISA
 * give exactly this value lane by lane. Round x / ln 2 to n, reduce r = x - n ln 2 in two steps
 * (ln 2 split so n * hi is exact), e^r by Cephes' degree-7 minimax polynomial, times 2^n.
 * Within 0.990 ulp of e^x (double precision) for every float of [-87, 0], but not the correctly
 * rounded float for 5-10 % of x in [-10, 0] (exhaustive figures in docs/performance.md
 * "Session 16"; tests/test_quant.c samples them). Below -87 (results under 1.7e-38, near
 * FLT_MIN) it gives 0; NaN stays NaN. x > 0 is outside its domain (2^n would overflow the
 * exponent field past n = 127): SiLU, which needs both signs, takes ellm_exp_rounded. */
#define ELLM_EXP_LOG2E 1.44269504088896341f
#define ELLM_EXP_ROUNDER 12582912.0f /* 1.5 * 2^23: adding it rounds to an integer */
#define ELLM_EXP_LN2_HI 0.693359375f
#define ELLM_EXP_LN2_LO -2.12194440e-4f
#define ELLM_EXP_FLOOR -87.0f
#define ELLM_EXP_P0 1.9875691500e-4f
#define ELLM_EXP_P1 1.3981999507e-3f
#define ELLM_EXP_P2 8.3334519073e-3f
#define ELLM_EXP_P3 4.1665795894e-2f
#define ELLM_EXP_P4 1.6666665459e-1f
#define ELLM_EXP_P5 5.0000001201e-1f

static inline float ellm_exp(float x)
{
    if (!(x >= ELLM_EXP_FLOOR))
        return x < ELLM_EXP_FLOOR ? 0.0f : x;
    float n = (x * ELLM_EXP_LOG2E + ELLM_EXP_ROUNDER) - ELLM_EXP_ROUNDER;
    float r = x - n * ELLM_EXP_LN2_HI;
    r = r - n * ELLM_EXP_LN2_LO;
    float p = ELLM_EXP_P0 * r + ELLM_EXP_P1;
    p = p * r + ELLM_EXP_P2;
    p = p * r + ELLM_EXP_P3;
    p = p * r + ELLM_EXP_P4;
    p = p * r + ELLM_EXP_P5;
    float e = p * (r * r) + r + 1.0f;
    union {
        uint32_t u;
        float f;
    } two_n = {.u = (uint32_t)((int32_t)n + 127) << 23};
    return e * two_n.f;
}

/* e^x rounded once to float from a double-precision computation: the correctly rounded float for
 * all but 35 of the 2.2e9 floats of [-88, 88] (max 0.500003 ulp), so it has glibc's expf's bits
 * except where that one is not correctly rounded. SiLU takes it rather than ellm_exp, whose
 * 1-ulp errors (5-10 % of x in [-10, 0]) moved test_model's reference logits from 0.0009 to
 * 0.0022 off (limit 0.001): last-bit changes cross F16 rounding boundaries in the KV cache. x is
 * limited to [-104, 89] (beyond, the float result is 0 or +inf anyway) and NaN stays NaN; then
 * n = x / ln 2 rounded, r = x - n ln 2 in double, e^r by its Taylor polynomial to degree 10
 * (truncation under 2.5e-13 for |r| <= ln 2 / 2), times 2^n made from the bits of the rounding
 * sum. Additions and multiplications only, no fused multiply-add, so vector copies of any width
 * give exactly this value. */
#define ELLM_EXP_ROUNDED_LOW -104.0f
#define ELLM_EXP_ROUNDED_HIGH 89.0f
#define ELLM_EXP_ROUNDED_SHIFTER 6755399441055744.0 /* 1.5 * 2^52: adding it rounds to an integer */
#define ELLM_EXP_ROUNDED_LOG2E 1.4426950408889634
#define ELLM_EXP_ROUNDED_LN2 0.6931471805599453
/* e^r's Taylor coefficients from degree 10 down, in the order Horner's rule takes them. */
enum { ELLM_EXP_ROUNDED_DEGREE = 10 };
static const double ellm_exp_rounded_taylor[ELLM_EXP_ROUNDED_DEGREE + 1] = {
    1.0 / 3628800, 1.0 / 362880, 1.0 / 40320, 1.0 / 5040, 1.0 / 720, 1.0 / 120,
    1.0 / 24,      1.0 / 6,      0.5,         1.0,        1.0};

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
    double p = ellm_exp_rounded_taylor[0];
    for (int k = 1; k <= ELLM_EXP_ROUNDED_DEGREE; k++)
        p = p * r + ellm_exp_rounded_taylor[k];
    /* The sum's low mantissa bits hold n (in [-150, 128]) in two's complement; adding the
     * exponent bias and shifting leaves exactly 2^n's exponent field. */
    two_n.u = (shifted.u + 1023) << 52;
    return (float)(p * two_n.f);
}

#endif
