/* The KV cache's layout and the conversion of new keys and values into it. */
#include "model/kv_cache.h"

#include <string.h>

#include "quant/quant.h"

ellm_type ellm_kv_element_type(edgellm_kv_type kv_type)
{
    return kv_type == EDGELLM_KV_F32    ? ELLM_TYPE_F32
           : kv_type == EDGELLM_KV_Q8_0 ? ELLM_TYPE_Q8_0
                                        : ELLM_TYPE_F16;
}

static size_t row_bytes_of(ellm_type type, int64_t n)
{
    uint64_t b = 0;
    ellm_row_bytes(type, (uint64_t)n, &b);
    return (size_t)b;
}

size_t ellm_kv_layer_bytes(const ellm_hparams *hp, edgellm_kv_type kv_type, int32_t n_ctx)
{
    size_t row = row_bytes_of(ellm_kv_element_type(kv_type), (int64_t)hp->n_head_kv * hp->head_dim);
    return ((size_t)n_ctx * row + 63) & ~(size_t)63;
}

void ellm_kv_bind(ellm_kv_cache *c, const ellm_hparams *hp, edgellm_kv_type kv_type, uint8_t *base,
                  size_t layer_bytes)
{
    c->type = ellm_kv_element_type(kv_type);
    c->head_bytes = row_bytes_of(c->type, hp->head_dim);
    c->row_bytes = row_bytes_of(c->type, (int64_t)hp->n_head_kv * hp->head_dim);
    for (int32_t il = 0; il < hp->n_layer; il++) {
        c->k[il] = base + (size_t)(2 * il) * layer_bytes;
        c->v[il] = base + (size_t)(2 * il + 1) * layer_bytes;
    }
}

void ellm_kv_store(const ellm_kv_cache *c, int32_t layer, int32_t pos, const float *k,
                   const float *v, int64_t kv_dim)
{
    ellm_quantize_row(c->type, k, c->k[layer] + (size_t)pos * c->row_bytes, kv_dim);
    ellm_quantize_row(c->type, v, c->v[layer] + (size_t)pos * c->row_bytes, kv_dim);
}

void ellm_kv_copy(const ellm_kv_cache *dst, const ellm_kv_cache *src, int32_t n_layer, int32_t n)
{
    for (int32_t il = 0; il < n_layer; il++) {
        memcpy(dst->k[il], src->k[il], (size_t)n * src->row_bytes);
        memcpy(dst->v[il], src->v[il], (size_t)n * src->row_bytes);
    }
}
