/* Chooses the kernel set once, from the CPU's features at run time. */
#include <stdatomic.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <pthread.h>
#endif
#if defined(__wasm__)
#include <pthread.h>
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

#include "quant/attention_kernels.h"
#include "quant/kernels.h"
#include "quant/quant.h"

typedef void (*activation_quantizer)(const float *x, void *dst, int64_t n);

/* One instruction set's kernels: the only place that decides which ISA computes what. Entries
 * are indexed by weight type (matrix kernels) and by activation type (quantizers); a type a set
 * leaves out takes the scalar set's kernel. */
typedef struct kernel_set {
    const char *name;
    ellm_type_kernels types[ELLM_TYPE_COUNT];
    /* Byte-identical to the reference quantizer; NULL: the reference itself. */
    activation_quantizer quantize_to[ELLM_TYPE_COUNT];
    /* Converters to the activation layouts (ellm_act_layout below ELLM_ACT_PLAIN), byte-identical
     * to act_ext.c's; NULL: act_ext.c's own, through quantize_to. */
    activation_quantizer quantize_layout[ELLM_ACT_PLAIN];
    /* The types whose tile reads ELLM_ACT_Q8_K_TILED (ellm_gemm_act_layout). */
    bool gemm_tiled[ELLM_TYPE_COUNT];
    ellm_attention_kernels attention;
    ellm_rows_combine_fn silu_mul; /* bit-identical to ellm_silu_mul_scalar; NULL: that one */
    void (*prepare)(void);         /* run once before the set's kernels are used; NULL: nothing */
} kernel_set;

/* An entry: activation type, single-row dot, ISA, four-row dot, extended-row dot, tile. */
#define K(act, dot, isa, x4, ext, gemm)                                                            \
    {                                                                                              \
        ELLM_TYPE_##act, dot, isa, x4, ext, gemm, NULL, ELLM_ACT_Q8_0_EXT, NULL, NULL, NULL        \
    }
/* The same with a multi-row decode kernel on plain rows (no extended-row dot). */
#define K_ROWS(act, dot, isa, x4, gemm, rows)                                                      \
    {                                                                                              \
        ELLM_TYPE_##act, dot, isa, x4, NULL, gemm, NULL, ELLM_ACT_Q8_0_EXT, rows, NULL, NULL       \
    }
/* The same with an extended-row dot on layout, and its multi-row decode kernel. */
#define K_EXT_ROWS(act, dot, isa, x4, ext, gemm, layout, rows)                                     \
    {                                                                                              \
        ELLM_TYPE_##act, dot, isa, x4, ext, gemm, NULL, layout, rows, NULL, NULL                   \
    }
/* An entry whose tile comes from another set. */
#define K_TILE_OF(act, dot, isa, gemm, gemm_isa)                                                   \
    {                                                                                              \
        ELLM_TYPE_##act, dot, isa, NULL, NULL, gemm, gemm_isa, ELLM_ACT_Q8_0_EXT, NULL, NULL, NULL \
    }

static const kernel_set scalar_set = {
    .name = "scalar",
    .types =
        {
            [ELLM_TYPE_F32] = K(F32, ellm_vec_dot_f32_scalar, "scalar", NULL, NULL, NULL),
            [ELLM_TYPE_F16] = K(F32, ellm_vec_dot_f16_scalar, "scalar", NULL, NULL, NULL),
            [ELLM_TYPE_BF16] = K(F32, ellm_vec_dot_bf16_scalar, "scalar", NULL, NULL, NULL),
            [ELLM_TYPE_Q8_0] = K(Q8_0, ellm_vec_dot_q8_0_scalar, "scalar", NULL, NULL, NULL),
            [ELLM_TYPE_Q4_0] = K(Q8_0, ellm_vec_dot_q4_0_scalar, "scalar", NULL, NULL, NULL),
            [ELLM_TYPE_Q4_K] = K(Q8_K, ellm_vec_dot_q4_K_scalar, "scalar", NULL, NULL, NULL),
            [ELLM_TYPE_Q5_K] = K(Q8_K, ellm_vec_dot_q5_K_scalar, "scalar", NULL, NULL, NULL),
            [ELLM_TYPE_Q6_K] = K(Q8_K, ellm_vec_dot_q6_K_scalar, "scalar", NULL, NULL, NULL),
            [ELLM_TYPE_Q2_K] = K(Q8_K, ellm_vec_dot_q2_K_scalar, "scalar", NULL, NULL, NULL),
            [ELLM_TYPE_Q3_K] = K(Q8_K, ellm_vec_dot_q3_K_scalar, "scalar", NULL, NULL, NULL),
            [ELLM_TYPE_IQ4_XS] = K(Q8_K, ellm_vec_dot_iq4_xs_scalar, "scalar", NULL, NULL, NULL),
            [ELLM_TYPE_Q4_1] = K(Q8_1, ellm_vec_dot_q4_1_scalar, "scalar", NULL, NULL, NULL),
            [ELLM_TYPE_Q5_0] = K(Q8_0, ellm_vec_dot_q5_0_scalar, "scalar", NULL, NULL, NULL),
            [ELLM_TYPE_Q5_1] = K(Q8_1, ellm_vec_dot_q5_1_scalar, "scalar", NULL, NULL, NULL),
            [ELLM_TYPE_IQ4_NL] = K(Q8_0, ellm_vec_dot_iq4_nl_scalar, "scalar", NULL, NULL, NULL),
        },
    .attention = {"scalar", ellm_attend_f16_portable, NULL, NULL, ellm_axpy_q8_0_portable,
                  ellm_attend_q8_0_group_portable, NULL, ellm_f16_store_portable},
};

#if defined(ELLM_HAVE_AVX2_KERNELS)
/* The AVX2 entries of the types the AVX-512 set has no kernels of its own for. */
#define AVX2_COMMON_TYPES                                                                          \
    [ELLM_TYPE_F32] = K(F32, ellm_vec_dot_f32_avx2, "avx2", NULL, NULL, NULL),                     \
    [ELLM_TYPE_BF16] = K(F32, ellm_vec_dot_bf16_scalar, "scalar", NULL, NULL, NULL),               \
    [ELLM_TYPE_Q4_1] = K(Q8_1, ellm_vec_dot_q4_1_avx2, "avx2", ellm_vec_dot_q4_1_x4_avx2, NULL,    \
                         ellm_gemm_q4_1_avx2),                                                     \
    [ELLM_TYPE_Q5_0] = K(Q8_0, ellm_vec_dot_q5_0_avx2, "avx2", ellm_vec_dot_q5_0_x4_avx2, NULL,    \
                         ellm_gemm_q5_0_avx2),                                                     \
    [ELLM_TYPE_Q5_1] = K(Q8_1, ellm_vec_dot_q5_1_avx2, "avx2", ellm_vec_dot_q5_1_x4_avx2, NULL,    \
                         ellm_gemm_q5_1_avx2),                                                     \
    [ELLM_TYPE_IQ4_NL] = K(Q8_0, ellm_vec_dot_iq4_nl_avx2, "avx2", ellm_vec_dot_iq4_nl_x4_avx2,    \
                           NULL, ellm_gemm_iq4_nl_avx2)

#define AVX2_QUANTIZERS                                                                            \
    [ELLM_TYPE_Q8_0] = ellm_quantize_row_q8_0_avx2,                                                \
    [ELLM_TYPE_Q8_K] = ellm_quantize_row_q8_K_avx2, [ELLM_TYPE_Q8_1] = ellm_quantize_row_q8_1_avx2

static const kernel_set avx2_set = {
    .name = "avx2",
    .types =
        {
            AVX2_COMMON_TYPES,
            [ELLM_TYPE_F16] = K(F32, ellm_vec_dot_f16_avx2, "avx2", NULL, NULL, ellm_gemm_f16_avx2),
            [ELLM_TYPE_Q2_K] = K_ROWS(Q8_K, ellm_vec_dot_q2_K_avx2, "avx2", NULL,
                                      ellm_gemm_q2_K_avx2, ellm_vec_dot_q2_K_rows_avx2),
            [ELLM_TYPE_Q3_K] = K_ROWS(Q8_K, ellm_vec_dot_q3_K_avx2, "avx2", NULL,
                                      ellm_gemm_q3_K_avx2, ellm_vec_dot_q3_K_rows_avx2),
            [ELLM_TYPE_IQ4_XS] = K_EXT_ROWS(Q8_K, ellm_vec_dot_iq4_xs_avx2, "avx2", NULL,
                                            ellm_vec_dot_iq4_xs_mag_avx2, ellm_gemm_iq4_xs_avx2,
                                            ELLM_ACT_Q8_K_MAG, ellm_vec_dot_iq4_xs_mag_rows_avx2),
            [ELLM_TYPE_Q8_0] = K_EXT_ROWS(Q8_0, ellm_vec_dot_q8_0_avx2, "avx2",
                                          ellm_vec_dot_q8_0_x4_avx2, ellm_vec_dot_q8_0_ext_avx2,
                                          ellm_gemm_q8_0_avx2, ELLM_ACT_Q8_0_EXT,
                                          ellm_vec_dot_q8_0_ext_rows_avx2),
            [ELLM_TYPE_Q4_0] = K_EXT_ROWS(Q8_0, ellm_vec_dot_q4_0_avx2, "avx2",
                                          ellm_vec_dot_q4_0_x4_avx2, ellm_vec_dot_q4_0_paired_avx2,
                                          ellm_gemm_q4_0_avx2, ELLM_ACT_Q8_0_PAIRED,
                                          ellm_vec_dot_q4_0_paired_rows_avx2),
            [ELLM_TYPE_Q4_K] = K_ROWS(Q8_K, ellm_vec_dot_q4_K_avx2, "avx2",
                                      ellm_vec_dot_q4_K_x4_avx2, ellm_gemm_q4_K_avx2,
                                      ellm_vec_dot_q4_K_rows_avx2),
            [ELLM_TYPE_Q5_K] = K_ROWS(Q8_K, ellm_vec_dot_q5_K_avx2, "avx2",
                                      ellm_vec_dot_q5_K_x4_avx2, ellm_gemm_q5_K_avx2,
                                      ellm_vec_dot_q5_K_rows_avx2),
            [ELLM_TYPE_Q6_K] = K_ROWS(Q8_K, ellm_vec_dot_q6_K_avx2, "avx2",
                                      ellm_vec_dot_q6_K_x4_avx2, ellm_gemm_q6_K_avx2,
                                      ellm_vec_dot_q6_K_rows_avx2),
        },
    .quantize_to = {AVX2_QUANTIZERS},
    .gemm_tiled = {[ELLM_TYPE_IQ4_XS] = true},
    .attention = {"avx2", ellm_attend_f16_f16c, ellm_attend_f16_f16c_wide,
                  ellm_attend_f16_group_avx2, ellm_axpy_q8_0_avx2, ellm_attend_q8_0_group_avx2,
                  ellm_attend_f16_group_tokens_avx2, ellm_f16_store_f16c},
    .silu_mul = ellm_silu_mul_avx2,
};

/* AVX2 with AVX-VNNI (vpdpbusd on 256-bit vectors: Intel Alder Lake and later, AMD Zen 5), for the
 * many laptops that have it without AVX-512: the AVX2 set, copied at first use so the two cannot
 * drift apart, with the kernels that gain from VNNI in place of the plain AVX2 ones. avx2 stays
 * plain AVX2 (forced, and tested, on these CPUs too). */
static void avx2vnni_prepare(void);
static kernel_set avx2vnni_set = {.name = "avx2vnni", .prepare = avx2vnni_prepare};

static void avx2vnni_fill(void)
{
    memcpy(avx2vnni_set.types, avx2_set.types, sizeof avx2_set.types);
    memcpy(avx2vnni_set.quantize_to, avx2_set.quantize_to, sizeof avx2_set.quantize_to);
    memcpy(avx2vnni_set.quantize_layout, avx2_set.quantize_layout, sizeof avx2_set.quantize_layout);
    memcpy(avx2vnni_set.gemm_tiled, avx2_set.gemm_tiled, sizeof avx2_set.gemm_tiled);
    avx2vnni_set.attention = avx2_set.attention;
    avx2vnni_set.silu_mul = avx2_set.silu_mul;
    avx2vnni_set.types[ELLM_TYPE_Q2_K] = (ellm_type_kernels)K_TILE_OF(
        Q8_K, ellm_vec_dot_q2_K_avx2vnni, "avx2vnni", ellm_gemm_q2_K_avx2, "avx2");
    avx2vnni_set.types[ELLM_TYPE_Q2_K].vec_dot_rows = ellm_vec_dot_q2_K_rows_avx2vnni;
    avx2vnni_set.types[ELLM_TYPE_Q3_K] = (ellm_type_kernels)K_TILE_OF(
        Q8_K, ellm_vec_dot_q3_K_avx2vnni, "avx2vnni", ellm_gemm_q3_K_avx2, "avx2");
    avx2vnni_set.types[ELLM_TYPE_Q3_K].vec_dot_rows = ellm_vec_dot_q3_K_rows_avx2vnni;
    /* IQ4_XS keeps the AVX2 kernels on the magnitude row: on a Sapphire Rapids core (the P-cores
     * of these laptops) they read 3-5 % faster than VNNI ones on plain Q8_K rows, in L2 and from
     * memory alike (docs/performance.md, session 23). */
}

static void avx2vnni_prepare(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, avx2vnni_fill);
}

/* AVX-VNNI: CPUID leaf 7, sub-leaf 1, EAX bit 4 (the OS saving the 256-bit state is checked with
 * AVX2). */
static bool cpu_has_avx_vnni(void)
{
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    return __get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx) && (eax >> 4 & 1);
}

/* F16C: CPUID leaf 1, ECX bit 29. Asked directly because clang (14) does not know "f16c" as a
 * __builtin_cpu_supports feature and refuses to compile the call. */
static bool cpu_has_f16c(void)
{
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    return __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx >> 29 & 1);
}

/* AVX-512 + VNNI: its own kernels where they exist, the AVX2 ones for the other types and the
 * activation quantizers (this set is only chosen on CPUs that also run the AVX2 set). */
static const kernel_set avx512_set = {
    .name = "avx512",
    .types =
        {
            AVX2_COMMON_TYPES,
            /* The AVX2 single row (decode); tiles that repeat its float work lane for lane. */
            [ELLM_TYPE_F16] = K_TILE_OF(F32, ellm_vec_dot_f16_avx2, "avx2", ellm_gemm_f16_avx512,
                                        "avx512"),
            [ELLM_TYPE_Q8_0] = K(Q8_0, ellm_vec_dot_q8_0_avx512, "avx512", NULL,
                                 ellm_vec_dot_q8_0_ext_avx512, ellm_gemm_q8_0_avx512),
            [ELLM_TYPE_Q4_0] = K(Q8_0, ellm_vec_dot_q4_0_avx512, "avx512", NULL,
                                 ellm_vec_dot_q4_0_ext_avx512, ellm_gemm_q4_0_avx512),
            [ELLM_TYPE_Q4_K] = K(Q8_K, ellm_vec_dot_q4_K_avx512, "avx512",
                                 ellm_vec_dot_q4_K_x4_avx512, NULL, ellm_gemm_q4_K_avx512),
            [ELLM_TYPE_Q5_K] = K(Q8_K, ellm_vec_dot_q5_K_avx512, "avx512",
                                 ellm_vec_dot_q5_K_x4_avx512, NULL, NULL),
            [ELLM_TYPE_Q6_K] = K(Q8_K, ellm_vec_dot_q6_K_avx512, "avx512",
                                 ellm_vec_dot_q6_K_x4_avx512, NULL, ellm_gemm_q6_K_avx512),
            /* Single rows of their own (decode), the AVX2 tiles (prefill): both equal the
             * scalar kernel bit for bit. */
            [ELLM_TYPE_Q2_K] = {ELLM_TYPE_Q8_K, ellm_vec_dot_q2_K_avx512, "avx512", NULL,
                                ellm_vec_dot_q2_K_pairs_avx512, ellm_gemm_q2_K_avx2, "avx2",
                                ELLM_ACT_Q8_K_PAIRS, NULL, NULL, NULL},
            [ELLM_TYPE_Q3_K] = {ELLM_TYPE_Q8_K, ellm_vec_dot_q3_K_avx512, "avx512", NULL,
                                ellm_vec_dot_q3_K_pairs_avx512, ellm_gemm_q3_K_avx2, "avx2",
                                ELLM_ACT_Q8_K_PAIRS, NULL, NULL, NULL},
            /* IQ4_XS, Q2_K and Q3_K decode on activations in their own orders. */
            [ELLM_TYPE_IQ4_XS] = {ELLM_TYPE_Q8_K, ellm_vec_dot_iq4_xs_avx512, "avx512", NULL,
                                  ellm_vec_dot_iq4_xs_halves_avx512, ellm_gemm_iq4_xs_avx2, "avx2",
                                  ELLM_ACT_Q8_K_HALVES, NULL, NULL, NULL},
        },
    .quantize_to = {AVX2_QUANTIZERS},
    .gemm_tiled = {[ELLM_TYPE_IQ4_XS] = true}, /* the AVX2 tile */
    .attention = {"avx512", ellm_attend_f16_f16c, ellm_attend_f16_f16c_wide,
                  ellm_attend_f16_group_avx512, ellm_axpy_q8_0_avx2, ellm_attend_q8_0_group_avx2,
                  NULL, ellm_f16_store_f16c},
    .silu_mul = ellm_silu_mul_avx2,
};
#endif

#if defined(ELLM_HAVE_NEON_KERNELS)
/* Every AArch64 CPU has NEON; F32/F16 dots, BF16, the quantizers and attention are the same in
 * both ARM sets. */
#define NEON_INT(act, type, sfx, name)                                                             \
    K(act, ellm_vec_dot_##type##_##sfx, name, ellm_vec_dot_##type##_x4_##sfx, NULL, NULL)
#define NEON_INT_SET(set_name, sfx)                                                                \
    {                                                                                              \
        .name = set_name,                                                                          \
        .types =                                                                                   \
            {                                                                                      \
                [ELLM_TYPE_F32] = K(F32, ellm_vec_dot_f32_neon, "neon", NULL, NULL, NULL),         \
                [ELLM_TYPE_F16] = K(F32, ellm_vec_dot_f16_neon, "neon", NULL, NULL, NULL),         \
                [ELLM_TYPE_BF16] = K(F32, ellm_vec_dot_bf16_scalar, "scalar", NULL, NULL, NULL),   \
                [ELLM_TYPE_Q8_0] = NEON_INT(Q8_0, q8_0, sfx, set_name),                            \
                [ELLM_TYPE_Q4_0] = NEON_INT(Q8_0, q4_0, sfx, set_name),                            \
                [ELLM_TYPE_Q4_K] = NEON_INT(Q8_K, q4_K, sfx, set_name),                            \
                [ELLM_TYPE_Q5_K] = NEON_INT(Q8_K, q5_K, sfx, set_name),                            \
                [ELLM_TYPE_Q6_K] = NEON_INT(Q8_K, q6_K, sfx, set_name),                            \
                [ELLM_TYPE_Q2_K] = NEON_INT(Q8_K, q2_K, sfx, set_name),                            \
                [ELLM_TYPE_Q3_K] = NEON_INT(Q8_K, q3_K, sfx, set_name),                            \
                [ELLM_TYPE_IQ4_XS] = NEON_INT(Q8_K, iq4_xs, sfx, set_name),                        \
                [ELLM_TYPE_Q4_1] = NEON_INT(Q8_1, q4_1, sfx, set_name),                            \
                [ELLM_TYPE_Q5_0] = NEON_INT(Q8_0, q5_0, sfx, set_name),                            \
                [ELLM_TYPE_Q5_1] = NEON_INT(Q8_1, q5_1, sfx, set_name),                            \
                [ELLM_TYPE_IQ4_NL] = NEON_INT(Q8_0, iq4_nl, sfx, set_name),                        \
            },                                                                                     \
        .quantize_to = {[ELLM_TYPE_Q8_0] = ellm_quantize_row_q8_0_neon,                            \
                        [ELLM_TYPE_Q8_K] = ellm_quantize_row_q8_K_neon,                            \
                        [ELLM_TYPE_Q8_1] = ellm_quantize_row_q8_1_neon},                           \
        .attention = {"neon", ellm_attend_f16_neon,    ellm_attend_f16_neon_wide,                  \
                      NULL,   ellm_axpy_q8_0_portable, ellm_attend_q8_0_group_portable,            \
                      NULL,   ellm_f16_store_portable},                                            \
        .silu_mul = ellm_silu_mul_neon,                                                            \
    }
static const kernel_set neon_set = NEON_INT_SET("neon", neon);
static const kernel_set neon_dotprod_set = NEON_INT_SET("neon-dotprod", neon_dotprod);

/* The ARMv8.2 dot-product extension (SDOT/UDOT), as the kernel reports it. */
static bool cpu_has_dotprod(void)
{
#if defined(__linux__)
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
    return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#else
    return false;
#endif
}
#endif

#if defined(ELLM_HAVE_WASM_SIMD_KERNELS)
/* A wasm entry: single rows, their decode kernel on wide activations of the layout, tile. */
#define K_WASM(act, type, layout, gemm)                                                            \
    {                                                                                              \
        ELLM_TYPE_##act, ellm_vec_dot_##type##_wasm_simd, "wasm-simd", NULL,                       \
            ellm_vec_dot_##type##_wide_wasm_simd, gemm, NULL, ELLM_ACT_##layout, NULL, NULL, NULL  \
    }
/* The same with a multi-row decode kernel. */
#define K_WASM_ROWS(act, type, layout, gemm)                                                       \
    {                                                                                              \
        ELLM_TYPE_##act, ellm_vec_dot_##type##_wasm_simd, "wasm-simd", NULL,                       \
            ellm_vec_dot_##type##_wide_wasm_simd, gemm, NULL, ELLM_ACT_##layout,                   \
            ellm_vec_dot_##type##_wide_rows_wasm_simd, NULL, NULL                                  \
    }
/* Types without a SIMD128 kernel (BF16) take the scalar one. Attention is the portable head with
 * vector half conversions (no fused multiply-add in SIMD128, so no wide path). */
static const kernel_set wasm_simd_set = {
    .name = "wasm-simd",
    .types =
        {
            [ELLM_TYPE_F32] = K(F32, ellm_vec_dot_f32_wasm_simd, "wasm-simd", NULL, NULL, NULL),
            [ELLM_TYPE_F16] = K(F32, ellm_vec_dot_f16_wasm_simd, "wasm-simd", NULL, NULL, NULL),
            [ELLM_TYPE_Q8_0] = K_WASM_ROWS(Q8_0, q8_0, Q8_0_WIDE, ellm_gemm_q8_0_wasm_simd),
            [ELLM_TYPE_Q4_0] = K_WASM_ROWS(Q8_0, q4_0, Q8_0_WIDE, ellm_gemm_q4_0_wasm_simd),
            [ELLM_TYPE_Q4_K] = K_WASM(Q8_K, q4_K, Q8_K_WIDE, ellm_gemm_q4_K_wasm_simd),
            [ELLM_TYPE_Q5_K] = K_WASM(Q8_K, q5_K, Q8_K_WIDE, ellm_gemm_q5_K_wasm_simd),
            [ELLM_TYPE_Q6_K] = K_WASM(Q8_K, q6_K, Q8_K_WIDE, ellm_gemm_q6_K_wasm_simd),
            [ELLM_TYPE_IQ4_XS] = K_WASM(Q8_K, iq4_xs, Q8_K_WIDE, ellm_gemm_iq4_xs_wasm_simd),
            [ELLM_TYPE_IQ4_NL] = K_WASM_ROWS(Q8_0, iq4_nl, Q8_0_WIDE, ellm_gemm_iq4_nl_wasm_simd),
            [ELLM_TYPE_Q5_0] = K_WASM_ROWS(Q8_0, q5_0, Q8_0_WIDE, ellm_gemm_q5_0_wasm_simd),
            [ELLM_TYPE_Q4_1] = K(Q8_1, ellm_vec_dot_q4_1_wasm_simd, "wasm-simd", NULL, NULL,
                                 ellm_gemm_q4_1_wasm_simd),
            [ELLM_TYPE_Q5_1] = K(Q8_1, ellm_vec_dot_q5_1_wasm_simd, "wasm-simd", NULL, NULL,
                                 ellm_gemm_q5_1_wasm_simd),
            [ELLM_TYPE_Q2_K] = K_WASM(Q8_K, q2_K, Q8_K_WIDE, ellm_gemm_q2_K_wasm_simd),
            [ELLM_TYPE_Q3_K] = K_WASM(Q8_K, q3_K, Q8_K_WIDE, ellm_gemm_q3_K_wasm_simd),
        },
    .quantize_to = {[ELLM_TYPE_Q8_0] = ellm_quantize_row_q8_0_wasm_simd,
                    [ELLM_TYPE_Q8_K] = ellm_quantize_row_q8_K_wasm_simd},
    .quantize_layout = {[ELLM_ACT_Q8_0_EXT] = ellm_quantize_q8_0_ext_wasm_simd,
                        [ELLM_ACT_Q8_0_WIDE] = ellm_quantize_q8_0_wide_wasm_simd,
                        [ELLM_ACT_Q8_0_SPLIT] = ellm_quantize_q8_0_split_wasm_simd,
                        [ELLM_ACT_Q8_K_WIDE] = ellm_quantize_q8_K_wide_wasm_simd},
    .attention = {"wasm-simd", ellm_attend_f16_wasm_simd, NULL, ellm_attend_f16_group_wasm_simd,
                  ellm_axpy_q8_0_portable, ellm_attend_q8_0_group_portable, NULL,
                  ellm_f16_store_portable},
    .silu_mul = ellm_silu_mul_wasm_simd,
};

/* Relaxed SIMD (a module web/relaxed_patch.py rewrote, see kernels_wasm_relaxed.c): the wasm-simd
 * set, copied at first use so the two cannot drift apart, with decode kernels that multiply by
 * relaxed dots on 8-bit rows (plain Q8_K, extended and split Q8_0) in place of the wide-row ones, and
 * relaxed tiles for Q4_0, Q4_K, Q5_K and Q6_K; the other tiles and plain single rows stay. */
static void wasm_relaxed_prepare(void);
static kernel_set wasm_relaxed_set = {.name = "wasm-relaxed", .prepare = wasm_relaxed_prepare};

/* A K-quant's relaxed single and multi-row kernels on plain Q8_K rows, and its relaxed tile. */
#define K_RELAXED_KQ(type)                                                                         \
    (ellm_type_kernels)                                                                            \
    {                                                                                              \
        .vec_dot_type = ELLM_TYPE_Q8_K, .vec_dot = ellm_vec_dot_##type##_wasm_relaxed,             \
        .isa = "wasm-relaxed", .gemm = ellm_gemm_##type##_wasm_relaxed,                            \
        .gemm_isa = "wasm-relaxed", .vec_dot_rows = ellm_vec_dot_##type##_rows_wasm_relaxed        \
    }

/* A 32-value format's relaxed single and multi-row kernels on Q8_0 rows of a layout (kind: ext
 * for ELLM_ACT_Q8_0_EXT, split for ELLM_ACT_Q8_0_SPLIT), and its wasm-simd plain single row and
 * tile. */
#define K_RELAXED_ON(type, kind, layout)                                                           \
    (ellm_type_kernels)                                                                            \
    {                                                                                              \
        .vec_dot_type = ELLM_TYPE_Q8_0, .vec_dot = ellm_vec_dot_##type##_wasm_simd,                \
        .isa = "wasm-relaxed", .vec_dot_ext = ellm_vec_dot_##type##_##kind##_wasm_relaxed,         \
        .gemm = ellm_gemm_##type##_wasm_simd, .gemm_isa = "wasm-simd", .ext_layout = layout,       \
        .vec_dot_rows = ellm_vec_dot_##type##_##kind##_rows_wasm_relaxed                           \
    }

static void wasm_relaxed_fill(void)
{
    memcpy(wasm_relaxed_set.types, wasm_simd_set.types, sizeof wasm_simd_set.types);
    memcpy(wasm_relaxed_set.quantize_to, wasm_simd_set.quantize_to,
           sizeof wasm_simd_set.quantize_to);
    memcpy(wasm_relaxed_set.quantize_layout, wasm_simd_set.quantize_layout,
           sizeof wasm_simd_set.quantize_layout);
    memcpy(wasm_relaxed_set.gemm_tiled, wasm_simd_set.gemm_tiled, sizeof wasm_simd_set.gemm_tiled);
    wasm_relaxed_set.attention = wasm_simd_set.attention;
    wasm_relaxed_set.silu_mul = wasm_simd_set.silu_mul;
    wasm_relaxed_set.types[ELLM_TYPE_Q4_0] = (ellm_type_kernels){
        .vec_dot_type = ELLM_TYPE_Q8_0,
        .vec_dot = ellm_vec_dot_q4_0_wasm_simd,
        .isa = "wasm-relaxed",
        .vec_dot_ext = ellm_vec_dot_q4_0_ext_wasm_relaxed,
        .gemm = ellm_gemm_q4_0_wasm_relaxed,
        .gemm_isa = "wasm-relaxed",
        .ext_layout = ELLM_ACT_Q8_0_EXT,
        .vec_dot_rows = ellm_vec_dot_q4_0_ext_rows_wasm_relaxed,
        .vec_dot_by_four = ellm_vec_dot_q4_0_by_four_wasm_relaxed,
        .gemm_by_four = ellm_gemm_q4_0_by_four_wasm_relaxed,
    };
    wasm_relaxed_set.types[ELLM_TYPE_Q4_K] = K_RELAXED_KQ(q4_K);
    wasm_relaxed_set.types[ELLM_TYPE_Q5_K] = K_RELAXED_KQ(q5_K);
    wasm_relaxed_set.types[ELLM_TYPE_Q6_K] = K_RELAXED_KQ(q6_K);
    wasm_relaxed_set.types[ELLM_TYPE_Q5_0] = K_RELAXED_ON(q5_0, ext, ELLM_ACT_Q8_0_EXT);
    wasm_relaxed_set.types[ELLM_TYPE_Q8_0] = K_RELAXED_ON(q8_0, split, ELLM_ACT_Q8_0_SPLIT);
}

static void wasm_relaxed_prepare(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, wasm_relaxed_fill);
}
#endif

/* Every set this build has, fastest first, and whether this CPU can run it. */
static const kernel_set *const all_sets[] = {
#if defined(ELLM_HAVE_AVX2_KERNELS)
    &avx512_set,       &avx2vnni_set,  &avx2_set,
#endif
#if defined(ELLM_HAVE_NEON_KERNELS)
    &neon_dotprod_set, &neon_set,
#endif
#if defined(ELLM_HAVE_WASM_SIMD_KERNELS)
    &wasm_relaxed_set, &wasm_simd_set,
#endif
    &scalar_set,
};

static bool cpu_runs(const kernel_set *s)
{
#if defined(ELLM_HAVE_AVX2_KERNELS)
    __builtin_cpu_init();
    bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
    if (s == &avx2_set)
        return avx2;
    if (s == &avx2vnni_set)
        return avx2 && cpu_has_avx_vnni();
    /* The compiler's check includes the OS saving the 512-bit state (XCR0). */
    if (s == &avx512_set)
        return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("bmi2");
#endif
#if defined(ELLM_HAVE_NEON_KERNELS)
    if (s == &neon_dotprod_set)
        return cpu_has_dotprod();
#endif
#if defined(ELLM_HAVE_WASM_SIMD_KERNELS)
    /* Never in an unpatched module, where the placeholder is q15mulr and not the dot. */
    if (s == &wasm_relaxed_set)
        return ellm_wasm_relaxed_patched();
#endif
    return true;
}

static _Atomic(const kernel_set *) active_set;
static _Atomic(const kernel_set *) forced_set; /* NULL: the fastest set this CPU runs */

static const kernel_set *detect(void)
{
    const kernel_set *f = atomic_load(&forced_set);
    if (f)
        return f;
    for (size_t i = 0; i < sizeof all_sets / sizeof all_sets[0]; i++)
        if (cpu_runs(all_sets[i]))
            return all_sets[i];
    return &scalar_set;
}

/* Makes s the set in use once its preparation is done (it may run more than once when threads
 * race here; the preparations are idempotent). */
static const kernel_set *activate(const kernel_set *s)
{
    if (s->prepare)
        s->prepare();
    atomic_store_explicit(&active_set, s, memory_order_release);
    return s;
}

static const kernel_set *current(void)
{
    const kernel_set *s = atomic_load_explicit(&active_set, memory_order_acquire);
    return s ? s : activate(detect());
}

void ellm_quant_force_scalar(bool on) { ellm_quant_use_kernel_set(on ? "scalar" : NULL); }

int ellm_kernel_sets_available(const char **names, int max)
{
    int count = 0;
    for (size_t i = 0; i < sizeof all_sets / sizeof all_sets[0]; i++)
        if (cpu_runs(all_sets[i])) {
            if (count < max)
                names[count] = all_sets[i]->name;
            count++;
        }
    return count;
}

bool ellm_quant_use_kernel_set(const char *name)
{
    const kernel_set *chosen = NULL;
    for (size_t i = 0; name && i < sizeof all_sets / sizeof all_sets[0]; i++)
        if (!strcmp(all_sets[i]->name, name) && cpu_runs(all_sets[i]))
            chosen = all_sets[i];
    if (name && !chosen)
        return false;
    atomic_store(&forced_set, chosen);
    activate(detect());
    return true;
}

bool ellm_kernel_set_in_build(const char *name)
{
    for (size_t i = 0; name && i < sizeof all_sets / sizeof all_sets[0]; i++)
        if (!strcmp(all_sets[i]->name, name))
            return true;
    return false;
}

const char *ellm_kernel_set_name(void) { return current()->name; }

const ellm_type_kernels *ellm_kernels_for(ellm_type type)
{
    if ((unsigned)type >= ELLM_TYPE_COUNT)
        return NULL;
    const ellm_type_kernels *k = &current()->types[type];
    /* A set that leaves a type out (an ISA whose kernels for it are not written yet) uses the
     * portable kernel rather than a null one. */
    if (!k->vec_dot)
        k = &scalar_set.types[type];
    return k->vec_dot ? k : NULL;
}

ellm_gemm_fn ellm_gemm_for(ellm_type type)
{
    const ellm_type_kernels *k = ellm_kernels_for(type);
    return k ? k->gemm : NULL;
}

bool ellm_rows_by_four_wanted(ellm_type type)
{
    const ellm_type_kernels *k = ellm_kernels_for(type);
    return k && k->vec_dot_by_four && k->gemm_by_four;
}

ellm_act_layout ellm_gemm_act_layout(ellm_type type)
{
    const ellm_type_kernels *k = ellm_kernels_for(type);
    if (!k || !k->gemm)
        return ELLM_ACT_PLAIN;
    if (current()->gemm_tiled[type] && k == &current()->types[type])
        return ELLM_ACT_Q8_K_TILED;
    return k->vec_dot_type == ELLM_TYPE_Q8_0 ? ELLM_ACT_Q8_0_EXT : ELLM_ACT_PLAIN;
}

const ellm_attention_kernels *ellm_attention_kernels_active(void) { return &current()->attention; }

void ellm_silu_mul(float *gate, const float *up, int64_t n)
{
    ellm_rows_combine_fn silu_mul = current()->silu_mul;
    (silu_mul ? silu_mul : ellm_silu_mul_scalar)(gate, up, n);
}

ellm_act_quantizer_fn ellm_act_layout_quantizer(ellm_act_layout layout)
{
    return (unsigned)layout < ELLM_ACT_PLAIN ? current()->quantize_layout[layout] : NULL;
}

void ellm_quantize_activations(ellm_type vec_dot_type, const float *x, void *dst, int64_t n)
{
    activation_quantizer q = (unsigned)vec_dot_type < ELLM_TYPE_COUNT
                                 ? current()->quantize_to[vec_dot_type]
                                 : NULL;
    if (q)
        q(x, dst, n);
    else
        ellm_quantize_row(vec_dot_type, x, dst, n);
}
