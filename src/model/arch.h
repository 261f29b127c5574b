/* The decoder architectures edgellm runs: one row per GGUF general.architecture, holding the
 * Hugging Face classes imported as it and every trait on which the loader, the importer and the
 * forward pass differ. Nothing else in the code compares architecture names: adding an
 * architecture is adding a row (docs/architecture.md). */
#ifndef EDGELLM_MODEL_ARCH_H
#define EDGELLM_MODEL_ARCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "edgellm.h"

typedef enum ellm_activation {
    ELLM_ACT_SILU,      /* SwiGLU: silu(gate) * up */
    ELLM_ACT_GELU_TANH, /* GeGLU with the tanh approximation of GELU */
} ellm_activation;

enum { ELLM_ARCH_MAX_HF_CLASSES = 3 };

typedef struct ellm_arch {
    const char *name; /* general.architecture, and the prefix of its `<name>.*` metadata keys */
    /* config.json "architectures" classes imported as this row (NULL-terminated list). */
    const char *hf_classes[ELLM_ARCH_MAX_HF_CLASSES + 1];

    /* RoPE rotates the two halves of each head (NeoX), not adjacent pairs. Hugging Face
     * checkpoints always rotate halves, so Q/K rows of the others are permuted on import. */
    bool rope_neox;
    bool qk_norm;       /* per-head RMSNorm of Q and K before RoPE */
    bool qkv_bias;      /* Q, K and V projections carry biases */
    bool fused_qkv;     /* one attn_qkv matrix: Q rows, then K, then V */
    bool fused_gate_up; /* ffn_up holds the gate rows, then the up rows */
    bool post_norms;    /* RMSNorm of the attention and FFN outputs before the residual add */
    ellm_activation activation;
    bool embd_scale; /* embeddings are multiplied by sqrt(n_embd) */
    /* RMSNorm multiplies by (1 + w); checkpoints store w, GGUF files store 1 + w. */
    bool norm_plus_one;
    bool tied_output; /* the output head is the embedding whatever a config says */
    /* 0: a sliding window (if any) applies to every layer. n: layers alternate, layer il
     * slides unless (il + 1) % n == 0, and the window size is required. */
    int32_t swa_pattern;
    /* Sliding layers' own RoPE base (the default of rope.freq_base_swa); 0 = the global one. */
    float swa_rope_base;
    /* Queries scale by query_pre_attn_scalar^-1/2, which GGUF files do not carry: it is the head
     * size except in the published model of this many layers, where it is n_embd / n_head.
     * 0: the architecture has no such scalar (plain 1/sqrt(head size)). */
    int32_t query_scalar_wide_layers;
    /* LongRoPE: long/short frequency factors switched by context, rope.scaling.attn_factor and
     * rope.scaling.original_context_length. */
    bool longrope;

    /* Hugging Face config conventions. */
    const char *hf_act_alias; /* another hidden_act its configs give for the same activation */
    bool hf_window_opt_in;    /* sliding_window applies only with use_sliding_window: true */
} ellm_arch;

/* Row i of the table, NULL past the end. */
const ellm_arch *ellm_arch_at(size_t i);
/* The row of GGUF architecture name[0..len), or a failure naming it and the supported ones. */
edgellm_status ellm_arch_find(const char *name, size_t len, const ellm_arch **out);
/* The row a Hugging Face model class is imported as, or a failure naming it and the supported
 * classes. */
edgellm_status ellm_arch_find_hf(const char *hf_class, const ellm_arch **out);
/* Whether the row's block is the plain llama block (RMSNorm * w, separate unbiased q/k/v,
 * SwiGLU, no extra norms, scales or windows): what AWQ's fold and structured pruning assume.
 * The RoPE style does not matter to them. */
bool ellm_arch_plain_block(const ellm_arch *a);

#endif
