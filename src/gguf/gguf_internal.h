/* Layout of a parsed GGUF file, shared by the reader's files. */
#ifndef EDGELLM_GGUF_INTERNAL_H
#define EDGELLM_GGUF_INTERNAL_H

#include <stdio.h>

#include "core/mapped_file.h"
#include "gguf/gguf.h"

struct gguf_file {
    uint32_t version;
    uint64_t n_tensors;
    uint64_t n_kv;
    uint64_t alignment;
    uint64_t data_offset;
    uint64_t file_size;
    gguf_kv *kvs;
    gguf_tensor_info *tensors;
    uint64_t *tensor_order; /* tensor indices sorted by data offset */
    bool tensor_order_sorted;
    ellm_mapped_file mapping;
    bool owns_mapping;
};

uint64_t ellm_gguf_scalar_size(gguf_value_type t);

#endif
