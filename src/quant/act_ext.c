/* The extended Q8_0 activation layout of the gemm kernels (see quant.h): the plain blocks, plus
 * per-block data that every weight row would otherwise recompute for itself. */
#include <string.h>

#include "quant/blocks.h"
#include "quant/quant.h"

static size_t align32(size_t v) { return (v + 31) & ~(size_t)31; }

ellm_q8_0_ext_layout ellm_q8_0_ext_layout_for(int64_t n)
{
    size_t nb = (size_t)(n / QK8_0);
    ellm_q8_0_ext_layout L;
    L.scales_offset = nb * QK8_0;
    L.block_sums_offset = L.scales_offset + align32(nb * sizeof(float));
    /* Rows start on 64-byte boundaries so consecutive tokens never share a cache line. */
    L.row_bytes = (L.block_sums_offset + nb * sizeof(int32_t) + 63) & ~(size_t)63;
    return L;
}

void ellm_quantize_q8_0_ext(const float *x, void *dst, int64_t n)
{
    ellm_q8_0_ext_layout L = ellm_q8_0_ext_layout_for(n);
    uint8_t *row = dst;
    int8_t *qs = dst;
    float *scales = (float *)(row + L.scales_offset);
    int32_t *block_sums = (int32_t *)(row + L.block_sums_offset);
    for (int64_t i = 0; i < n / QK8_0; i++) {
        block_q8_0 b;
        ellm_quantize_activations(ELLM_TYPE_Q8_0, x + i * QK8_0, &b, QK8_0);
        memcpy(qs + i * QK8_0, b.qs, QK8_0);
        scales[i] = ellm_f16_to_f32(b.d);
        block_sums[i] = 0;
        for (int j = 0; j < QK8_0; j++)
            block_sums[i] += b.qs[j];
    }
}
