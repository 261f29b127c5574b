/* Q4_0 matrices laid out in ELLM_ROWS_BY_FOUR order (quant.h) and back. */
#include <string.h>

#include "quant/blocks.h"
#include "quant/quant.h"

enum {
    SCALE_BYTES = sizeof(uint16_t),
    QUANT_BYTES = QK4_0 / 2,
    GROUP_BLOCK_BYTES = ELLM_BY_FOUR * sizeof(block_q4_0),
};

void ellm_q4_0_rows_by_four(void *data, int64_t n_rows, size_t row_bytes, void *scratch)
{
    size_t nb = row_bytes / sizeof(block_q4_0);
    uint8_t *group = data;
    for (int64_t g = 0; g + ELLM_BY_FOUR <= n_rows;
         g += ELLM_BY_FOUR, group += ELLM_BY_FOUR * row_bytes) {
        /* The group's plain rows are copied out first: its interleaved blocks overwrite them. */
        memcpy(scratch, group, ELLM_BY_FOUR * row_bytes);
        for (int k = 0; k < ELLM_BY_FOUR; k++) {
            const block_q4_0 *row = (const block_q4_0 *)((const uint8_t *)scratch + k * row_bytes);
            for (size_t i = 0; i < nb; i++) {
                uint8_t *out = group + i * GROUP_BLOCK_BYTES;
                memcpy(out + SCALE_BYTES * k, &row[i].d, SCALE_BYTES);
                memcpy(out + ELLM_BY_FOUR * SCALE_BYTES + QUANT_BYTES * k, row[i].qs, QUANT_BYTES);
            }
        }
    }
}

void ellm_q4_0_row_of_four(const void *group, size_t row_bytes, int k, void *row)
{
    size_t nb = row_bytes / sizeof(block_q4_0);
    block_q4_0 *out = row;
    for (size_t i = 0; i < nb; i++) {
        const uint8_t *in = (const uint8_t *)group + i * GROUP_BLOCK_BYTES;
        memcpy(&out[i].d, in + SCALE_BYTES * k, SCALE_BYTES);
        memcpy(out[i].qs, in + ELLM_BY_FOUR * SCALE_BYTES + QUANT_BYTES * k, QUANT_BYTES);
    }
}
