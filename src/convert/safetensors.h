/* Hugging Face safetensors files: an 8-byte little-endian header length, a JSON header mapping
 * tensor names to {dtype, shape, data_offsets}, then the tensor bytes. Every header is validated
 * before any tensor is used: offsets inside the data section, non-overlapping and covering it
 * without holes, sizes matching shape x dtype, names unique (also across shards). */
#ifndef EDGELLM_CONVERT_SAFETENSORS_H
#define EDGELLM_CONVERT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/mapped_file.h"
#include "edgellm.h"

#define ELLM_ST_MAX_DIMS 8
/* Headers above this are refused (the format's own reader caps them at 100 MB as well). */
#define ELLM_ST_MAX_HEADER (100u * 1000u * 1000u)

typedef enum ellm_st_dtype {
    ELLM_ST_BOOL,
    ELLM_ST_U8,
    ELLM_ST_I8,
    ELLM_ST_F8_E4M3,
    ELLM_ST_F8_E5M2,
    ELLM_ST_I16,
    ELLM_ST_U16,
    ELLM_ST_F16,
    ELLM_ST_BF16,
    ELLM_ST_I32,
    ELLM_ST_U32,
    ELLM_ST_F32,
    ELLM_ST_I64,
    ELLM_ST_U64,
    ELLM_ST_F64,
    ELLM_ST_DTYPE_COUNT
} ellm_st_dtype;

typedef struct ellm_st_tensor {
    char *name;
    ellm_st_dtype dtype;
    int n_dims;
    uint64_t shape[ELLM_ST_MAX_DIMS]; /* as written: outermost first (rows, then columns) */
    uint64_t n_elements;
    const uint8_t *data; /* into the mapping */
    uint64_t n_bytes;
    int shard; /* index of the file it lives in */
} ellm_st_tensor;

/* The tensors of one model: one file or all shards of an index. */
typedef struct ellm_st_set {
    ellm_mapped_file *files;
    char **file_names;
    int n_files;
    ellm_st_tensor *tensors;
    size_t n_tensors;
} ellm_st_set;

const char *ellm_st_dtype_name(ellm_st_dtype dtype);

/* Parses and validates the bytes of one safetensors file (kept alive by the caller), appending
 * its tensors to set with the given shard index. `what` names the file in messages. */
edgellm_status ellm_st_parse(const void *data, size_t size, const char *what, int shard,
                             ellm_st_set *set);

/* Opens DIR/model.safetensors, or every shard listed in DIR/model.safetensors.index.json
 * (whose weight_map must agree with the shards' headers). */
edgellm_status ellm_st_open_dir(const char *dir, ellm_st_set *out);

const ellm_st_tensor *ellm_st_find(const ellm_st_set *set, const char *name);
void ellm_st_close(ellm_st_set *set);

#endif
