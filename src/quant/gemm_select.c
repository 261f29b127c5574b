/* Finds the gemm tile kernel that belongs to the vec_dot kernel dispatch.c selected, so tiles are
 * used exactly when they reproduce that kernel (and never once the scalar set is forced). */
#include "quant/kernels.h"
#include "quant/quant.h"

ellm_gemm_fn ellm_gemm_for(ellm_type type)
{
    const ellm_type_kernels *k = ellm_kernels_for(type);
    if (!k)
        return NULL;
#if defined(ELLM_HAVE_AVX2_KERNELS)
    if (k->vec_dot == ellm_vec_dot_q4_0_avx2 || k->vec_dot == ellm_vec_dot_q8_0_avx2)
        ellm_gemm_avx2_init();
    if (k->vec_dot == ellm_vec_dot_q4_0_avx2)
        return ellm_gemm_q4_0_avx2;
    if (k->vec_dot == ellm_vec_dot_q8_0_avx2)
        return ellm_gemm_q8_0_avx2;
    if (k->vec_dot == ellm_vec_dot_q4_0_avx512)
        return ellm_gemm_q4_0_avx512;
    if (k->vec_dot == ellm_vec_dot_q8_0_avx512)
        return ellm_gemm_q8_0_avx512;
    if (k->vec_dot == ellm_vec_dot_q4_K_avx512)
        return ellm_gemm_q4_K_avx512;
    if (k->vec_dot == ellm_vec_dot_q6_K_avx512)
        return ellm_gemm_q6_K_avx512;
#endif
    return NULL;
}
