/* The KV cache of one sequence: per layer, n_ctx positions of keys and of values in the cache's
 * element type. Heads that fill whole rows of the type are stored head-major
 * ([kv_head][position][head size]): a head's positions are contiguous, so attention streams
 * them (with all heads of a position in one row, a head's pass read a fixed part of every row,
 * which a core fetches from memory far more slowly). Q8_0 heads whose size is not a multiple of
 * 32 share blocks and stay position-major: each row is the n_head_kv heads of one position. */
#ifndef EDGELLM_MODEL_KV_CACHE_H
#define EDGELLM_MODEL_KV_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "core/tensor_types.h"
#include "edgellm.h"
#include "model/model.h"

typedef struct ellm_kv_cache {
    ellm_type type;    /* element type of the cached rows (F16, F32, Q8_0) */
    size_t row_bytes;  /* one position: every KV head */
    size_t head_bytes; /* one KV head of one position; 0 when heads do not fill whole Q8_0
                           blocks (head sizes not a multiple of 32 share blocks) */
    /* Head h's keys at position p start at k[layer] + h * head_stride + p * pos_stride:
     * head-major, head_bytes and n_ctx * head_bytes; position-major (head_bytes 0), row_bytes
     * and 0 (the head is then elements h * head_dim.. of the row). */
    size_t pos_stride, head_stride;
    int32_t head_dim;
    uint8_t **k, **v; /* per layer: n_ctx positions; NULL for a scratch-only state */
} ellm_kv_cache;

/* The element type a cache of kv_type stores. */
ellm_type ellm_kv_element_type(edgellm_kv_type kv_type);
/* Bytes of one layer's keys (or values) for n_ctx positions, 64-byte aligned. */
size_t ellm_kv_layer_bytes(const ellm_hparams *hp, edgellm_kv_type kv_type, int32_t n_ctx);
/* Points the cache at 2 * n_layer layers of layer_bytes each from base (k, v of layer 0, ...);
 * k and v must hold n_layer pointers. */
void ellm_kv_bind(ellm_kv_cache *c, const ellm_hparams *hp, edgellm_kv_type kv_type, uint8_t *base,
                  size_t layer_bytes);
/* Stores one position's keys and values (kv_dim floats each) of a layer; an F16 cache stores
 * them saturated (ellm_f16_saturate, attention_kernels.h). */
void ellm_kv_store(const ellm_kv_cache *c, int32_t layer, int32_t pos, const float *k,
                   const float *v, int64_t kv_dim);
/* Copies the first n positions of every layer from src to dst (same type and row size; the
 * caches may hold different numbers of positions). */
void ellm_kv_copy(const ellm_kv_cache *dst, const ellm_kv_cache *src, int32_t n_layer, int32_t n);

#endif
