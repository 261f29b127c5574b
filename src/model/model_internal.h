/* Model layout shared by the architecture loaders and the forward pass. */
#ifndef EDGELLM_MODEL_INTERNAL_H
#define EDGELLM_MODEL_INTERNAL_H

#include "model/arch.h"
#include "model/model.h"

typedef struct ellm_layer_norms {
    float *attn_norm;
    float *ffn_norm;
    float *q_norm, *k_norm;      /* qk_norm: head_dim each */
    float *post_attn, *post_ffw; /* post_norms */
    float *bq, *bk, *bv;         /* biases, NULL when absent */
} ellm_layer_norms;

struct ellm_model {
    const ellm_arch *arch;  /* its row of the architecture table */
    ellm_hparams hp;        /* head and FFN counts: the largest of any layer */
    ellm_hparams *layer_hp; /* per layer: hp with that layer's head and FFN counts */
    ellm_weights w;
    /* Norm weights as float (tiny; converted once so every type of file works). */
    float *output_norm;
    ellm_layer_norms *norms;
    /* RoPE angle of pair i at position p: freq_scale * (p * theta_scale^i) / factor[i], with the
     * power built up by repeated float multiplication as GGUF runtimes do (so logits agree). */
    float rope_theta_scale;
    float *rope_factors;        /* n_rot / 2 values, 1 when the file has no rope_freqs */
    float *rope_factors_long;   /* LongRoPE factors for contexts above n_ctx_orig; NULL if none */
    float rope_theta_scale_swa; /* theta_scale of sliding layers (rope_freq_base_swa) */
};

/* Binds a tensor by name and checks its type is computable and its shape is exactly ne[0..n). */
edgellm_status ellm_bind_tensor(const gguf_file *file, const char *name, int n_dims,
                                const int64_t *ne, bool required, ellm_tensor *out);
/* Converts a 1-D tensor to a freshly allocated float array. */
edgellm_status ellm_tensor_to_floats(const ellm_tensor *t, float **out);

/* Loads a decoder of the llama family, the block every row of the architecture table describes;
 * model->arch says which variant. */
edgellm_status ellm_llama_load(const gguf_file *file, ellm_model *model);

#endif
