/* The tensor element types of the GGUF format (the numbering is part of the file format) and the
 * layout facts every module needs: block size and bytes per block. */
#ifndef EDGELLM_CORE_TENSOR_TYPES_H
#define EDGELLM_CORE_TENSOR_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum ellm_type {
    ELLM_TYPE_F32 = 0,
    ELLM_TYPE_F16 = 1,
    ELLM_TYPE_Q4_0 = 2,
    ELLM_TYPE_Q4_1 = 3,
    ELLM_TYPE_Q5_0 = 6,
    ELLM_TYPE_Q5_1 = 7,
    ELLM_TYPE_Q8_0 = 8,
    ELLM_TYPE_Q8_1 = 9,
    ELLM_TYPE_Q2_K = 10,
    ELLM_TYPE_Q3_K = 11,
    ELLM_TYPE_Q4_K = 12,
    ELLM_TYPE_Q5_K = 13,
    ELLM_TYPE_Q6_K = 14,
    ELLM_TYPE_Q8_K = 15,
    ELLM_TYPE_IQ2_XXS = 16,
    ELLM_TYPE_IQ2_XS = 17,
    ELLM_TYPE_IQ3_XXS = 18,
    ELLM_TYPE_IQ1_S = 19,
    ELLM_TYPE_IQ4_NL = 20,
    ELLM_TYPE_IQ3_S = 21,
    ELLM_TYPE_IQ2_S = 22,
    ELLM_TYPE_IQ4_XS = 23,
    ELLM_TYPE_I8 = 24,
    ELLM_TYPE_I16 = 25,
    ELLM_TYPE_I32 = 26,
    ELLM_TYPE_I64 = 27,
    ELLM_TYPE_F64 = 28,
    ELLM_TYPE_IQ1_M = 29,
    ELLM_TYPE_BF16 = 30,
    ELLM_TYPE_TQ1_0 = 34,
    ELLM_TYPE_TQ2_0 = 35,
    ELLM_TYPE_COUNT = 36
} ellm_type;

typedef struct ellm_type_traits {
    const char *name;     /* NULL for numbers the format does not (or no longer) assign */
    uint32_t block_size;  /* elements per block */
    uint32_t block_bytes; /* bytes per block */
} ellm_type_traits;

/* Traits of a type number read from a file; NULL when the number is not a known type. */
const ellm_type_traits *ellm_type_traits_of(uint32_t type);
const char *ellm_type_name(uint32_t type); /* "?" for unknown numbers */
/* Looks a type up by name ("Q4_0", case-insensitive); returns false if unknown. */
bool ellm_type_from_name(const char *name, ellm_type *out);

/* Bytes of a row of n elements; false when n is not a multiple of the block size or it overflows. */
bool ellm_row_bytes(uint32_t type, uint64_t n, uint64_t *out_bytes);

/* How a matrix's rows lie in its bytes. */
typedef enum ellm_row_order {
    ELLM_ROWS_PLAIN = 0, /* row r at data + r * row_bytes, as in the file */
    /* Q4_0 only, laid out at load for the kernel sets that read it (ellm_q4_0_rows_by_four,
     * quant.h): each whole group of four rows (4g..4g + 3) fills its own 4 row_bytes with the four
     * rows' blocks interleaved; the rows after the last whole group stay plain. */
    ELLM_ROWS_BY_FOUR = 1,
} ellm_row_order;

/* A 2-D weight matrix as the compute kernels see it: ne0 values per row, ne1 rows. Data is
 * borrowed (usually a pointer into the memory-mapped model file). */
typedef struct ellm_tensor {
    const char *name;
    ellm_type type;
    int64_t ne[4];
    int32_t n_dims;
    uint64_t row_bytes;
    uint64_t n_bytes;
    const void *data;
    ellm_row_order row_order;
} ellm_tensor;

#endif
