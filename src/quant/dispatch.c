/* Chooses the kernel set once, from the CPU's features at run time. */
#include <stdatomic.h>
#include <string.h>
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

#include "quant/kernels.h"
#include "quant/quant.h"

typedef void (*activation_quantizer)(const float *x, void *dst, int64_t n);

typedef struct kernel_set {
    const char *name;
    ellm_type_kernels f32, f16, bf16, q8_0, q4_0;
    ellm_type_kernels q4_K, q5_K, q6_K;
    ellm_type_kernels q2_k, q3_k, iq4_xs;
    ellm_type_kernels q4_1, q5_0, q5_1, iq4_nl;
    /* Activation quantizers, byte-identical to the reference; NULL: the reference itself. */
    activation_quantizer to_q8_0, to_q8_K, to_q8_1;
} kernel_set;

static const kernel_set scalar_set = {
    "scalar",
    {ELLM_TYPE_F32, ellm_vec_dot_f32_scalar, "scalar", NULL, NULL},
    {ELLM_TYPE_F32, ellm_vec_dot_f16_scalar, "scalar", NULL, NULL},
    {ELLM_TYPE_F32, ellm_vec_dot_bf16_scalar, "scalar", NULL, NULL},
    {ELLM_TYPE_Q8_0, ellm_vec_dot_q8_0_scalar, "scalar", NULL, NULL},
    {ELLM_TYPE_Q8_0, ellm_vec_dot_q4_0_scalar, "scalar", NULL, NULL},
    {ELLM_TYPE_Q8_K, ellm_vec_dot_q4_K_scalar, "scalar", NULL, NULL},
    {ELLM_TYPE_Q8_K, ellm_vec_dot_q5_K_scalar, "scalar", NULL, NULL},
    {ELLM_TYPE_Q8_K, ellm_vec_dot_q6_K_scalar, "scalar", NULL, NULL},
    {ELLM_TYPE_Q8_K, ellm_vec_dot_q2_K_scalar, "scalar", NULL, NULL},
    {ELLM_TYPE_Q8_K, ellm_vec_dot_q3_K_scalar, "scalar", NULL, NULL},
    {ELLM_TYPE_Q8_K, ellm_vec_dot_iq4_xs_scalar, "scalar", NULL, NULL},
    {ELLM_TYPE_Q8_1, ellm_vec_dot_q4_1_scalar, "scalar", NULL, NULL},
    {ELLM_TYPE_Q8_0, ellm_vec_dot_q5_0_scalar, "scalar", NULL, NULL},
    {ELLM_TYPE_Q8_1, ellm_vec_dot_q5_1_scalar, "scalar", NULL, NULL},
    {ELLM_TYPE_Q8_0, ellm_vec_dot_iq4_nl_scalar, "scalar", NULL, NULL},
    NULL, NULL, NULL,
};

#if defined(ELLM_HAVE_AVX2_KERNELS)
static const kernel_set avx2_set = {
    "avx2",
    {ELLM_TYPE_F32, ellm_vec_dot_f32_avx2, "avx2", NULL, NULL},
    {ELLM_TYPE_F32, ellm_vec_dot_f16_avx2, "avx2", NULL, NULL},
    {ELLM_TYPE_F32, ellm_vec_dot_bf16_scalar, "scalar", NULL, NULL},
    {ELLM_TYPE_Q8_0, ellm_vec_dot_q8_0_avx2, "avx2", ellm_vec_dot_q8_0_x4_avx2, NULL},
    {ELLM_TYPE_Q8_0, ellm_vec_dot_q4_0_avx2, "avx2", ellm_vec_dot_q4_0_x4_avx2, NULL},
    {ELLM_TYPE_Q8_K, ellm_vec_dot_q4_K_avx2, "avx2", ellm_vec_dot_q4_K_x4_avx2, NULL},
    {ELLM_TYPE_Q8_K, ellm_vec_dot_q5_K_avx2, "avx2", ellm_vec_dot_q5_K_x4_avx2, NULL},
    {ELLM_TYPE_Q8_K, ellm_vec_dot_q6_K_avx2, "avx2", ellm_vec_dot_q6_K_x4_avx2, NULL},
    {ELLM_TYPE_Q8_K, ellm_vec_dot_q2_K_avx2, "avx2", NULL, NULL},
    {ELLM_TYPE_Q8_K, ellm_vec_dot_q3_K_avx2, "avx2", NULL, NULL},
    {ELLM_TYPE_Q8_K, ellm_vec_dot_iq4_xs_avx2, "avx2", NULL, NULL},
    {ELLM_TYPE_Q8_1, ellm_vec_dot_q4_1_avx2, "avx2", ellm_vec_dot_q4_1_x4_avx2, NULL},
    {ELLM_TYPE_Q8_0, ellm_vec_dot_q5_0_avx2, "avx2", ellm_vec_dot_q5_0_x4_avx2, NULL},
    {ELLM_TYPE_Q8_1, ellm_vec_dot_q5_1_avx2, "avx2", ellm_vec_dot_q5_1_x4_avx2, NULL},
    {ELLM_TYPE_Q8_0, ellm_vec_dot_iq4_nl_avx2, "avx2", ellm_vec_dot_iq4_nl_x4_avx2, NULL},
    ellm_quantize_row_q8_0_avx2, ellm_quantize_row_q8_K_avx2, ellm_quantize_row_q8_1_avx2,
};

/* AVX-512 + VNNI: its own kernels where they exist, the AVX2 ones for the other types and the
 * activation quantizers (this set is only chosen on CPUs that also run the AVX2 set). */
static const kernel_set avx512_set = {
    "avx512",
    {ELLM_TYPE_F32, ellm_vec_dot_f32_avx2, "avx2", NULL, NULL},
    {ELLM_TYPE_F32, ellm_vec_dot_f16_avx2, "avx2", NULL, NULL},
    {ELLM_TYPE_F32, ellm_vec_dot_bf16_scalar, "scalar", NULL, NULL},
    {ELLM_TYPE_Q8_0, ellm_vec_dot_q8_0_avx512, "avx512", NULL, ellm_vec_dot_q8_0_ext_avx512},
    {ELLM_TYPE_Q8_0, ellm_vec_dot_q4_0_avx512, "avx512", NULL, ellm_vec_dot_q4_0_ext_avx512},
    {ELLM_TYPE_Q8_K, ellm_vec_dot_q4_K_avx512, "avx512", ellm_vec_dot_q4_K_x4_avx512, NULL},
    {ELLM_TYPE_Q8_K, ellm_vec_dot_q5_K_avx512, "avx512", ellm_vec_dot_q5_K_x4_avx512, NULL},
    {ELLM_TYPE_Q8_K, ellm_vec_dot_q6_K_avx512, "avx512", ellm_vec_dot_q6_K_x4_avx512, NULL},
    {ELLM_TYPE_Q8_K, ellm_vec_dot_q2_K_avx2, "avx2", NULL, NULL},
    {ELLM_TYPE_Q8_K, ellm_vec_dot_q3_K_avx2, "avx2", NULL, NULL},
    {ELLM_TYPE_Q8_K, ellm_vec_dot_iq4_xs_avx2, "avx2", NULL, NULL},
    {ELLM_TYPE_Q8_1, ellm_vec_dot_q4_1_avx2, "avx2", ellm_vec_dot_q4_1_x4_avx2, NULL},
    {ELLM_TYPE_Q8_0, ellm_vec_dot_q5_0_avx2, "avx2", ellm_vec_dot_q5_0_x4_avx2, NULL},
    {ELLM_TYPE_Q8_1, ellm_vec_dot_q5_1_avx2, "avx2", ellm_vec_dot_q5_1_x4_avx2, NULL},
    {ELLM_TYPE_Q8_0, ellm_vec_dot_iq4_nl_avx2, "avx2", ellm_vec_dot_iq4_nl_x4_avx2, NULL},
    ellm_quantize_row_q8_0_avx2, ellm_quantize_row_q8_K_avx2, ellm_quantize_row_q8_1_avx2,
};
#endif

#if defined(ELLM_HAVE_NEON_KERNELS)
/* Every AArch64 CPU has NEON; F32/F16 dots and BF16 are the same in both ARM sets. */
#define NEON_INT_SET(name, sfx)                                                                    \
    {                                                                                              \
        name,                                                                                      \
        {ELLM_TYPE_F32, ellm_vec_dot_f32_neon, "neon", NULL, NULL},                                \
        {ELLM_TYPE_F32, ellm_vec_dot_f16_neon, "neon", NULL, NULL},                                \
        {ELLM_TYPE_F32, ellm_vec_dot_bf16_scalar, "scalar", NULL, NULL},                           \
        {ELLM_TYPE_Q8_0, ellm_vec_dot_q8_0_##sfx, name, ellm_vec_dot_q8_0_x4_##sfx, NULL},         \
        {ELLM_TYPE_Q8_0, ellm_vec_dot_q4_0_##sfx, name, ellm_vec_dot_q4_0_x4_##sfx, NULL},         \
        {ELLM_TYPE_Q8_K, ellm_vec_dot_q4_K_##sfx, name, ellm_vec_dot_q4_K_x4_##sfx, NULL},         \
        {ELLM_TYPE_Q8_K, ellm_vec_dot_q5_K_##sfx, name, ellm_vec_dot_q5_K_x4_##sfx, NULL},         \
        {ELLM_TYPE_Q8_K, ellm_vec_dot_q6_K_##sfx, name, ellm_vec_dot_q6_K_x4_##sfx, NULL},         \
        {ELLM_TYPE_Q8_K, ellm_vec_dot_q2_K_##sfx, name, ellm_vec_dot_q2_K_x4_##sfx, NULL},         \
        {ELLM_TYPE_Q8_K, ellm_vec_dot_q3_K_##sfx, name, ellm_vec_dot_q3_K_x4_##sfx, NULL},         \
        {ELLM_TYPE_Q8_K, ellm_vec_dot_iq4_xs_##sfx, name, ellm_vec_dot_iq4_xs_x4_##sfx, NULL},     \
        {ELLM_TYPE_Q8_1, ellm_vec_dot_q4_1_##sfx, name, ellm_vec_dot_q4_1_x4_##sfx, NULL},         \
        {ELLM_TYPE_Q8_0, ellm_vec_dot_q5_0_##sfx, name, ellm_vec_dot_q5_0_x4_##sfx, NULL},         \
        {ELLM_TYPE_Q8_1, ellm_vec_dot_q5_1_##sfx, name, ellm_vec_dot_q5_1_x4_##sfx, NULL},         \
        {ELLM_TYPE_Q8_0, ellm_vec_dot_iq4_nl_##sfx, name, ellm_vec_dot_iq4_nl_x4_##sfx, NULL},     \
        ellm_quantize_row_q8_0_neon, ellm_quantize_row_q8_K_neon, ellm_quantize_row_q8_1_neon,     \
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
/* Types without a SIMD128 kernel yet take the scalar one. */
static const kernel_set wasm_simd_set = {
    "wasm-simd",
    {ELLM_TYPE_F32, ellm_vec_dot_f32_wasm_simd, "wasm-simd", NULL, NULL},
    {ELLM_TYPE_F32, ellm_vec_dot_f16_wasm_simd, "wasm-simd", NULL, NULL},
    {ELLM_TYPE_F32, ellm_vec_dot_bf16_scalar, "scalar", NULL, NULL},
    {ELLM_TYPE_Q8_0, ellm_vec_dot_q8_0_wasm_simd, "wasm-simd", NULL, NULL},
    {ELLM_TYPE_Q8_0, ellm_vec_dot_q4_0_wasm_simd, "wasm-simd", NULL, NULL},
    {ELLM_TYPE_Q8_K, ellm_vec_dot_q4_K_wasm_simd, "wasm-simd", NULL, NULL},
    {ELLM_TYPE_Q8_K, ellm_vec_dot_q5_K_wasm_simd, "wasm-simd", NULL, NULL},
    {ELLM_TYPE_Q8_K, ellm_vec_dot_q6_K_wasm_simd, "wasm-simd", NULL, NULL},
    {ELLM_TYPE_Q8_K, ellm_vec_dot_q2_K_scalar, "scalar", NULL, NULL},
    {ELLM_TYPE_Q8_K, ellm_vec_dot_q3_K_scalar, "scalar", NULL, NULL},
    {ELLM_TYPE_Q8_K, ellm_vec_dot_iq4_xs_wasm_simd, "wasm-simd", NULL, NULL},
    {ELLM_TYPE_Q8_1, ellm_vec_dot_q4_1_scalar, "scalar", NULL, NULL},
    {ELLM_TYPE_Q8_0, ellm_vec_dot_q5_0_scalar, "scalar", NULL, NULL},
    {ELLM_TYPE_Q8_1, ellm_vec_dot_q5_1_scalar, "scalar", NULL, NULL},
    {ELLM_TYPE_Q8_0, ellm_vec_dot_iq4_nl_wasm_simd, "wasm-simd", NULL, NULL},
    NULL, NULL, NULL,
};
#endif

/* Every set this build has, fastest first, and whether this CPU can run it. */
static const kernel_set *const all_sets[] = {
#if defined(ELLM_HAVE_AVX2_KERNELS)
    &avx512_set,
    &avx2_set,
#endif
#if defined(ELLM_HAVE_NEON_KERNELS)
    &neon_dotprod_set,
    &neon_set,
#endif
#if defined(ELLM_HAVE_WASM_SIMD_KERNELS)
    &wasm_simd_set,
#endif
    &scalar_set,
};

static bool cpu_runs(const kernel_set *s)
{
#if defined(ELLM_HAVE_AVX2_KERNELS)
    __builtin_cpu_init();
    bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                __builtin_cpu_supports("f16c");
    if (s == &avx2_set)
        return avx2;
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

static const kernel_set *current(void)
{
    const kernel_set *s = atomic_load_explicit(&active_set, memory_order_acquire);
    if (!s) {
        s = detect();
        atomic_store_explicit(&active_set, s, memory_order_release);
    }
    return s;
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
    atomic_store(&active_set, detect());
    return true;
}

const char *ellm_kernel_set_name(void) { return current()->name; }

static const ellm_type_kernels *entry_of(const kernel_set *s, ellm_type type)
{
    switch (type) {
    case ELLM_TYPE_F32: return &s->f32;
    case ELLM_TYPE_F16: return &s->f16;
    case ELLM_TYPE_BF16: return &s->bf16;
    case ELLM_TYPE_Q8_0: return &s->q8_0;
    case ELLM_TYPE_Q4_0: return &s->q4_0;
    case ELLM_TYPE_Q4_K: return &s->q4_K;
    case ELLM_TYPE_Q5_K: return &s->q5_K;
    case ELLM_TYPE_Q6_K: return &s->q6_K;
    case ELLM_TYPE_Q2_K: return &s->q2_k;
    case ELLM_TYPE_Q3_K: return &s->q3_k;
    case ELLM_TYPE_IQ4_XS: return &s->iq4_xs;
    case ELLM_TYPE_Q4_1: return &s->q4_1;
    case ELLM_TYPE_Q5_0: return &s->q5_0;
    case ELLM_TYPE_Q5_1: return &s->q5_1;
    case ELLM_TYPE_IQ4_NL: return &s->iq4_nl;
    default: return NULL;
    }
}

const ellm_type_kernels *ellm_kernels_for(ellm_type type)
{
    const ellm_type_kernels *k = entry_of(current(), type);
    /* A set that leaves a type out (an ISA whose kernels for it are not written yet) uses the
     * portable kernel rather than a null one. */
    if (k && !k->vec_dot)
        k = entry_of(&scalar_set, type);
    return k;
}

void ellm_quantize_activations(ellm_type vec_dot_type, const float *x, void *dst, int64_t n)
{
    const kernel_set *s = current();
    activation_quantizer q = vec_dot_type == ELLM_TYPE_Q8_0   ? s->to_q8_0
                             : vec_dot_type == ELLM_TYPE_Q8_K ? s->to_q8_K
                             : vec_dot_type == ELLM_TYPE_Q8_1 ? s->to_q8_1
                                                              : NULL;
    if (q)
        q(x, dst, n);
    else
        ellm_quantize_row(vec_dot_type, x, dst, n);
}
