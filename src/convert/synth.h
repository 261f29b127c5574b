/* Synthetic models with the layer shapes of well-known models and random weights. */
#ifndef EDGELLM_CONVERT_SYNTH_H
#define EDGELLM_CONVERT_SYNTH_H

#include <stdbool.h>
#include <stdint.h>

#include "core/tensor_types.h"
#include "edgellm.h"

typedef struct ellm_synth_shape {
    const char *name;
    int32_t n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx;
    float rope_base;
    bool tied;
} ellm_synth_shape;

/* A named preset (tinyllama-1.1b, llama-3.2-1b, qwen2.5-0.5b, smollm2-360m) or NULL. */
const ellm_synth_shape *ellm_synth_preset(const char *name);
const char *ellm_synth_preset_names(void);

/* Writes a llama-architecture GGUF with random weights of `type` (norms F32) in the given shape;
 * the vocabulary (every tokenizer.* key) is copied from vocab_gguf, so the embedding and output
 * have that vocabulary's size. Same seed, same file. */
edgellm_status ellm_synth_model(const ellm_synth_shape *shape, ellm_type type,
                                const char *vocab_gguf, const char *out_path, uint64_t seed);

#endif
