/* Q4_0 and Q8_0 matrices laid out in ELLM_ROWS_BY_FOUR order (quant.h) and back. */
#include <string.h>

#include "quant/blocks.h"
#include "quant/quant.h"

enum { SCALE_BYTES = sizeof(uint16_t) };

/* Both formats' blocks are a half scale and then the quant bytes. */
static size_t block_bytes_of(ellm_type type)
{
    return type == ELLM_TYPE_Q8_0 ? sizeof(block_q8_0) : sizeof(block_q4_0);
}

/* The whole groups of n_rows rows of blocks block_bytes long, inlined with the size a constant
 * so that every copy is a few moves, not a call (the web build lays out gigabytes at load). */
static inline __attribute__((always_inline)) void rows_by_four_of(uint8_t *group, int64_t n_rows,
                                                                  size_t row_bytes,
                                                                  uint8_t *scratch,
                                                                  const size_t block_bytes)
{
    const size_t quant_bytes = block_bytes - SCALE_BYTES, nb = row_bytes / block_bytes;
    for (int64_t g = 0; g + ELLM_BY_FOUR <= n_rows;
         g += ELLM_BY_FOUR, group += ELLM_BY_FOUR * row_bytes) {
        /* The group's plain rows are copied out first: its interleaved blocks overwrite them. */
        memcpy(scratch, group, ELLM_BY_FOUR * row_bytes);
        for (int k = 0; k < ELLM_BY_FOUR; k++) {
            const uint8_t *row = scratch + k * row_bytes;
            for (size_t i = 0; i < nb; i++, row += block_bytes) {
                uint8_t *out = group + i * ELLM_BY_FOUR * block_bytes;
                memcpy(out + SCALE_BYTES * k, row, SCALE_BYTES);
                memcpy(out + ELLM_BY_FOUR * SCALE_BYTES + quant_bytes * k, row + SCALE_BYTES,
                       quant_bytes);
            }
        }
    }
}

void ellm_rows_by_four(ellm_type type, void *data, int64_t n_rows, size_t row_bytes, void *scratch)
{
    if (type == ELLM_TYPE_Q8_0)
        rows_by_four_of(data, n_rows, row_bytes, scratch, sizeof(block_q8_0));
    else
        rows_by_four_of(data, n_rows, row_bytes, scratch, sizeof(block_q4_0));
}

/* Block i of row k of the group at `group`, in its plain form at out. */
static void plain_block(size_t block_bytes, const void *group, size_t i, int k, uint8_t *out)
{
    size_t quant_bytes = block_bytes - SCALE_BYTES;
    const uint8_t *in = (const uint8_t *)group + i * ELLM_BY_FOUR * block_bytes;
    memcpy(out, in + SCALE_BYTES * k, SCALE_BYTES);
    memcpy(out + SCALE_BYTES, in + ELLM_BY_FOUR * SCALE_BYTES + quant_bytes * k, quant_bytes);
}

void ellm_row_of_four(ellm_type type, const void *group, size_t row_bytes, int k, void *row)
{
    size_t block_bytes = block_bytes_of(type);
    for (size_t i = 0; i < row_bytes / block_bytes; i++)
        plain_block(block_bytes, group, i, k, (uint8_t *)row + i * block_bytes);
}

void ellm_dequantize_row_of_four(ellm_type type, const void *group, size_t row_bytes, int k,
                                 float *out)
{
    size_t block_bytes = block_bytes_of(type);
    /* A block at a time: a row may be longer than any fixed buffer. */
    uint8_t plain[sizeof(block_q8_0)];
    for (size_t i = 0; i < row_bytes / block_bytes; i++) {
        plain_block(block_bytes, group, i, k, plain);
        ellm_dequantize_row(type, plain, out + i * QK8_0, QK8_0);
    }
}
