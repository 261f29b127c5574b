/* Structured pruning of llama-architecture models: whole attention head groups (a KV head with
 * the query heads sharing it), FFN channels or whole layers are removed, the least important
 * first, and a smaller GGUF is written whose layers may differ in their head and FFN counts
 * (per-layer arrays in attention.head_count, attention.head_count_kv and feed_forward_length,
 * the way GGUF expresses variable layers; src/model/llama.c reads them).
 *
 * Importance (docs/optimise.md):
 *   FFN channel c:   m_c * ||column c of ffn_down||^2, m_c the mean square of the channel's
 *                    activation (imatrix of ffn_down), 1 without calibration
 *   head group:      the same summed over the attn_output columns of its query heads
 *   layer:           block influence 1 - mean cos(x_in, x_out) of the residual stream over the
 *                    calibration tokens (a layer that barely turns it matters least)
 * Heads and channels are ranked across all layers, so per-layer counts differ. */
#ifndef EDGELLM_OPTIMISE_PRUNE_H
#define EDGELLM_OPTIMISE_PRUNE_H

#include <stdbool.h>
#include <stdint.h>

#include "edgellm.h"
#include "optimise/imatrix.h"

typedef struct ellm_prune_params {
    float heads;                  /* fraction of head groups to remove, in [0, 1) */
    float ffn;                    /* fraction of FFN channels to remove, in [0, 1) */
    int32_t layers;               /* whole layers to drop, 0..n_layer-1 */
    const ellm_imatrix *im;       /* activation statistics, or NULL for weight magnitude alone */
    const float *block_influence; /* per layer (ellm_block_influence); needed when layers > 0 */
    /* Keeps every shape and zeroes what would be removed instead (the consumer side: the
     * attn_output columns of removed heads, the ffn_down columns of removed channels, both
     * matrices of a dropped layer): the reference a pruned model must compute exactly. */
    bool zeroed;
    /* Hears each input layer's outcome; may be NULL. */
    void (*on_layer)(void *user, int32_t layer, bool dropped, int32_t heads, int32_t heads_kept,
                     int32_t ffn, int32_t ffn_kept);
    void *user;
} ellm_prune_params;

/* Per layer, block influence over the calibration tokens run in chunks of n_ctx (n_chunks 0:
 * all); *out is n_layer floats for the caller to free. */
edgellm_status ellm_block_influence(const char *model_path, const edgellm_token *ids, int32_t n_ids,
                                    int32_t n_ctx, int32_t n_chunks, int32_t n_threads,
                                    float **out);
/* Writes the pruned model (atomically). Fails with a one-line reason for models it cannot prune
 * (not llama/mistral, fused or biased projections, already variable layers), fractions outside
 * [0, 1), a layer count not below the model's, and a plan that would remove every head group or
 * FFN channel of some layer. */
edgellm_status ellm_prune_model(const char *in_path, const char *out_path,
                                const ellm_prune_params *params);

#endif
