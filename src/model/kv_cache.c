/* The KV cache's layout and the conversion of new keys and values into it. */
#include "model/kv_cache.h"

#include <string.h>

#include "quant/attention_kernels.h"
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
    c->head_dim = hp->head_dim;
    /* The positions a layer holds: n_ctx, or more where ellm_kv_layer_bytes's rounding up to 64
     * bytes leaves room for whole rows; every head's share lies within the layer either way. */
    size_t n_ctx = c->row_bytes ? layer_bytes / c->row_bytes : 0;
    c->pos_stride = c->head_bytes ? c->head_bytes : c->row_bytes;
    c->head_stride = c->head_bytes ? n_ctx * c->head_bytes : 0;
    for (int32_t il = 0; il < hp->n_layer; il++) {
        c->k[il] = base + (size_t)(2 * il) * layer_bytes;
        c->v[il] = base + (size_t)(2 * il + 1) * layer_bytes;
    }
}

/* KV heads of a row of kv_dim values (pruned layers keep fewer heads than the cache has room
 * for); 1 for a position-major cache, whose rows are stored whole. */
static int64_t heads_stored(const ellm_kv_cache *c, int64_t kv_dim)
{
    return c->head_stride ? kv_dim / c->head_dim : 1;
}

void ellm_kv_store(const ellm_kv_cache *c, int32_t layer, int32_t pos, const float *k,
                   const float *v, int64_t kv_dim)
{
    int64_t n_heads = heads_stored(c, kv_dim), n = kv_dim / n_heads;
    ellm_f16_store_fn store_f16 = ellm_attention_kernels_active()->f16_store;
    if (!store_f16)
        store_f16 = ellm_f16_store_portable;
    for (int64_t h = 0; h < n_heads; h++) {
        size_t at = (size_t)h * c->head_stride + (size_t)pos * c->pos_stride;
        if (c->type == ELLM_TYPE_F16) {
            store_f16(k + h * n, c->k[layer] + at, n);
            store_f16(v + h * n, c->v[layer] + at, n);
        } else {
            ellm_quantize_row(c->type, k + h * n, c->k[layer] + at, n);
            ellm_quantize_row(c->type, v + h * n, c->v[layer] + at, n);
        }
    }
}

void ellm_kv_copy(const ellm_kv_cache *dst, const ellm_kv_cache *src, int32_t n_layer, int32_t n)
{
    size_t n_heads = src->head_stride ? src->row_bytes / src->head_bytes : 1;
    for (int32_t il = 0; il < n_layer; il++)
        for (size_t h = 0; h < n_heads; h++) {
            memcpy(dst->k[il] + h * dst->head_stride, src->k[il] + h * src->head_stride,
                   (size_t)n * src->pos_stride);
            memcpy(dst->v[il] + h * dst->head_stride, src->v[il] + h * src->head_stride,
                   (size_t)n * src->pos_stride);
        }
}
