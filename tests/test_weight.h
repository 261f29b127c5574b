/* Quantized 2-D weights for the matmul tests (header-only: test_util.c is linked into tests that
 * do not link the quant library). */
#ifndef EDGELLM_TEST_WEIGHT_H
#define EDGELLM_TEST_WEIGHT_H

#include "quant/quant.h"
#include "test_util.h"

/* Quantizes rows x n_in floats of src into dst and describes them as the weight ellm_matmul
 * takes. */
static inline ellm_tensor test_quantized_weight(ellm_type type, int64_t n_in, int64_t rows,
                                                const float *src, uint8_t *dst)
{
    uint64_t rb = 0;
    CHECK(ellm_row_bytes(type, (uint64_t)n_in, &rb));
    for (int64_t r = 0; r < rows; r++)
        ellm_quantize_row(type, src + r * n_in, dst + r * rb, n_in);
    return (ellm_tensor){.type = type,
                         .ne = {n_in, rows, 1, 1},
                         .n_dims = 2,
                         .row_bytes = rb,
                         .n_bytes = rb * (uint64_t)rows,
                         .data = dst};
}

#endif
