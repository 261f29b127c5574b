/* Chooses the kernel set once, from the CPU's features at run time. */
#include <stdatomic.h>

#include "quant/kernels.h"
#include "quant/quant.h"

typedef struct kernel_set {
    const char *name;
    ellm_type_kernels f32, f16, bf16, q8_0, q4_0;
    ellm_type_kernels q4_K, q5_K, q6_K;
    ellm_type_kernels q2_k, q3_k, iq4_xs;
} kernel_set;

static const kernel_set scalar_set = {
    "scalar",
    {ELLM_TYPE_F32, ellm_vec_dot_f32_scalar, "scalar", NULL},
    {ELLM_TYPE_F32, ellm_vec_dot_f16_scalar, "scalar", NULL},
    {ELLM_TYPE_F32, ellm_vec_dot_bf16_scalar, "scalar", NULL},
    {ELLM_TYPE_Q8_0, ellm_vec_dot_q8_0_scalar, "scalar", NULL},
    {ELLM_TYPE_Q8_0, ellm_vec_dot_q4_0_scalar, "scalar", NULL},
    {ELLM_TYPE_Q8_K, ellm_vec_dot_q4_K_scalar, "scalar", NULL},
    {ELLM_TYPE_Q8_K, ellm_vec_dot_q5_K_scalar, "scalar", NULL},
    {ELLM_TYPE_Q8_K, ellm_vec_dot_q6_K_scalar, "scalar", NULL},
    {ELLM_TYPE_Q8_K, ellm_vec_dot_q2_K_scalar, "scalar", NULL},
    {ELLM_TYPE_Q8_K, ellm_vec_dot_q3_K_scalar, "scalar", NULL},
    {ELLM_TYPE_Q8_K, ellm_vec_dot_iq4_xs_scalar, "scalar", NULL},
};

#if defined(ELLM_HAVE_AVX2_KERNELS)
static const kernel_set avx2_set = {
    "avx2",
    {ELLM_TYPE_F32, ellm_vec_dot_f32_avx2, "avx2", NULL},
    {ELLM_TYPE_F32, ellm_vec_dot_f16_avx2, "avx2", NULL},
    {ELLM_TYPE_F32, ellm_vec_dot_bf16_scalar, "scalar", NULL},
    {ELLM_TYPE_Q8_0, ellm_vec_dot_q8_0_avx2, "avx2", ellm_vec_dot_q8_0_x4_avx2},
    {ELLM_TYPE_Q8_0, ellm_vec_dot_q4_0_avx2, "avx2", ellm_vec_dot_q4_0_x4_avx2},
    {ELLM_TYPE_Q8_K, ellm_vec_dot_q4_K_avx2, "avx2", ellm_vec_dot_q4_K_x4_avx2},
    {ELLM_TYPE_Q8_K, ellm_vec_dot_q5_K_avx2, "avx2", ellm_vec_dot_q5_K_x4_avx2},
    {ELLM_TYPE_Q8_K, ellm_vec_dot_q6_K_avx2, "avx2", ellm_vec_dot_q6_K_x4_avx2},
    {ELLM_TYPE_Q8_K, ellm_vec_dot_q2_K_avx2, "avx2", NULL},
    {ELLM_TYPE_Q8_K, ellm_vec_dot_q3_K_avx2, "avx2", NULL},
    {ELLM_TYPE_Q8_K, ellm_vec_dot_iq4_xs_avx2, "avx2", NULL},
};
#endif

static _Atomic(const kernel_set *) active_set;
static atomic_bool force_scalar;

static const kernel_set *detect(void)
{
#if defined(ELLM_HAVE_AVX2_KERNELS)
    if (!atomic_load(&force_scalar)) {
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
            __builtin_cpu_supports("f16c"))
            return &avx2_set;
    }
#endif
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

void ellm_quant_force_scalar(bool on)
{
    atomic_store(&force_scalar, on);
    atomic_store(&active_set, detect());
}

const char *ellm_kernel_set_name(void) { return current()->name; }

const ellm_type_kernels *ellm_kernels_for(ellm_type type)
{
    const kernel_set *s = current();
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
    default: return NULL;
    }
}

void ellm_quantize_activations(ellm_type vec_dot_type, const float *x, void *dst, int64_t n)
{
#if defined(ELLM_HAVE_AVX2_KERNELS)
    if (vec_dot_type == ELLM_TYPE_Q8_0 && current() == &avx2_set) {
        ellm_quantize_row_q8_0_avx2(x, dst, n);
        return;
    }
    if (vec_dot_type == ELLM_TYPE_Q8_K && current() == &avx2_set) {
        ellm_quantize_row_q8_K_avx2(x, dst, n);
        return;
    }
#endif
    ellm_quantize_row(vec_dot_type, x, dst, n);
}
