/* Model architectures: hyper-parameters and weights bound from GGUF, the KV cache, and the
 * forward pass. */
#ifndef EDGELLM_MODEL_H
#define EDGELLM_MODEL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/mapped_file.h"
#include "core/tensor_types.h"
#include "core/threadpool.h"
#include "edgellm.h"
#include "gguf/gguf.h"

typedef struct ellm_hparams {
    char arch[32];
    int32_t n_vocab;
    int32_t n_ctx_train;
    int32_t n_embd;
    int32_t n_layer;
    int32_t n_head;
    int32_t n_head_kv;
    int32_t head_dim; /* n_embd / n_head unless the file says otherwise */
    int32_t n_ff;
    int32_t n_rot; /* rotary dimensions per head (rope.dimension_count) */
    float rms_norm_eps;
    float rope_freq_base;
    float rope_freq_scale; /* 1 / linear scaling factor */
    bool rope_neox;
    bool tied_embeddings;
    /* Variants of the llama-family decoder (all off / neutral for llama itself): the traits of
     * the model's row of the architecture table (model/arch.c), which the forward pass tests. */
    bool qk_norm;             /* per-head RMSNorm of Q and K before RoPE (qwen3, gemma3) */
    bool post_norms;          /* RMSNorm of the attention and FFN outputs (gemma2, gemma3) */
    bool gelu_ffn;            /* GeGLU with tanh-approximated GELU instead of SwiGLU (gemma) */
    bool fused_qkv;           /* one attn_qkv matrix (phi3) */
    bool fused_gate_up;       /* ffn_up holds gate then up rows (phi3) */
    float embd_scale;         /* embeddings multiplied by this (gemma: sqrt(n_embd)); 0 = none */
    float attn_scale;         /* multiplier of q.k (1/sqrt(head_dim) unless the model says) */
    float attn_softcap;       /* scores -> cap * tanh(scores / cap); 0 = none (gemma2) */
    float final_softcap;      /* the same on the logits; 0 = none */
    int32_t sliding_window;   /* tokens a sliding layer sees (itself included); 0 = none */
    int32_t swa_pattern;      /* 0: every layer slides; n: layer il slides unless (il+1) % n == 0 */
    float rope_freq_base_swa; /* RoPE base of sliding layers (gemma3), no scaling there */
    float rope_attn_factor;   /* LongRoPE magnitude correction of rotated Q/K; 1 = none */
    int32_t n_ctx_orig;       /* LongRoPE: contexts above this use the long factors */
} ellm_hparams;

typedef struct ellm_layer {
    ellm_tensor attn_norm, wq, wk, wv, wo;
    ellm_tensor ffn_norm, ffn_gate, ffn_up, ffn_down;
    ellm_tensor bq, bk, bv;                    /* data NULL when absent */
    ellm_tensor wqkv;                          /* fused_qkv */
    ellm_tensor attn_q_norm, attn_k_norm;      /* qk_norm */
    ellm_tensor post_attn_norm, post_ffw_norm; /* post_norms */
} ellm_layer;

/* Whether layer il attends through the sliding window. */
static inline bool ellm_layer_slides(const ellm_hparams *hp, int32_t il)
{
    if (hp->sliding_window <= 0)
        return false;
    return hp->swa_pattern <= 0 || (il + 1) % hp->swa_pattern != 0;
}

typedef struct ellm_weights {
    ellm_tensor tok_embd;
    ellm_tensor output_norm;
    ellm_tensor output;     /* == tok_embd when tied */
    ellm_tensor rope_freqs; /* data NULL when absent */
    ellm_layer *layers;
} ellm_weights;

/* Opaque to everything but src/model; the public edgellm_model wraps it with the vocabulary. */
typedef struct ellm_model ellm_model;

/* Binds a parsed file (which must outlive the model) into a model, validating every shape and
 * type; unsupported architectures and types fail with a message naming them. */
edgellm_status ellm_model_create(const gguf_file *file, ellm_model **out);
void ellm_model_free(ellm_model *model);
/* Lays the matrices only matmuls read (the layers' and an untied output head) out in the row
 * order the kernel set in use reads fastest, in place: Q4_0 in ELLM_ROWS_BY_FOUR order where the
 * set has kernels for it (ellm_rows_by_four_wanted; the web build's wasm-relaxed set). Only for
 * a model whose file bytes [bytes, bytes + size) are the engine's own writable copy, never a
 * mapping or the application's memory; matrices outside them stay as they are. With pool (may
 * be NULL), its threads share the work. *laid_out: how many were. Results stay bit for bit what
 * they were, in every kernel set. */
edgellm_status ellm_model_lay_out_rows(ellm_model *model, void *bytes, size_t size,
                                       ellm_threadpool *pool, int *laid_out);
const ellm_hparams *ellm_model_hparams(const ellm_model *model);
const ellm_weights *ellm_model_weights(const ellm_model *model);

/* KV cache + scratch for one sequence. */
typedef struct ellm_state ellm_state;

typedef struct ellm_state_params {
    int32_t n_ctx;
    int32_t n_batch;
    edgellm_kv_type kv_type;
    int32_t n_threads; /* threads of the pool that will run ellm_forward (per-thread scratch) */
    bool scratch_only; /* no KV cache: only the work state of batched passes */
} ellm_state_params;

/* Bytes a state with these parameters allocates (KV cache and scratch, separately). */
void ellm_state_memory(const ellm_model *model, const ellm_state_params *params, uint64_t *kv_bytes,
                       uint64_t *scratch_bytes);
/* The same for a model that is not loaded: these hyper-parameters, every matrix of matrix_type
 * (state_plan.c). */
edgellm_status ellm_state_memory_for_shape(const ellm_hparams *hp, ellm_type matrix_type,
                                           const ellm_state_params *params, uint64_t *kv_bytes,
                                           uint64_t *scratch_bytes);
edgellm_status ellm_state_create(const ellm_model *model, const ellm_state_params *params,
                                 ellm_state **out);
void ellm_state_free(ellm_state *state);
int32_t ellm_state_n_past(const ellm_state *state);
/* Attaches a profile (model/profile.h) that forward passes on this state add their times to;
 * NULL detaches. The caller owns it. */
struct ellm_profile;
void ellm_state_set_profile(ellm_state *state, struct ellm_profile *profile);
void ellm_state_truncate(ellm_state *state, int32_t n_keep);

/* The inputs of a layer's matrices, each shared by the matrices that multiply it. */
typedef enum ellm_matrix_input {
    ELLM_INPUT_ATTN,     /* attn_q, attn_k, attn_v (or the fused attn_qkv): the normed x */
    ELLM_INPUT_ATTN_OUT, /* attn_output: the attention heads' output */
    ELLM_INPUT_FFN,      /* ffn_gate, ffn_up: the normed x */
    ELLM_INPUT_FFN_DOWN, /* ffn_down: the gated FFN activation */
    ELLM_INPUT_HEAD,     /* output (layer -1): the final normed x of the rows giving logits */
} ellm_matrix_input;

/* Sees every matrix input of a forward pass before it is multiplied: n_rows rows of n_cols
 * floats (calibration statistics for importance-aware quantization). Runs on the calling thread. */
typedef void (*ellm_input_observer)(void *user, int32_t layer, ellm_matrix_input which,
                                    const float *x, int32_t n_rows, int64_t n_cols);
/* Attaches an observer to passes on this state; NULL detaches. Off by default; a detached
 * observer costs one pointer test per matrix input. */
void ellm_state_set_input_observer(ellm_state *state, ellm_input_observer fn, void *user);
/* A pass on this state stops before its next layer, failing with EDGELLM_ERR_CANCELLED (and
 * changing nothing, like any failure), once another thread sets ELLM_CANCEL_REQUESTED in *word;
 * NULL never stops. Layers are the finest point where the cost of the test is nothing against
 * the work and a long prefill chunk still ends within a fraction of its time. */
#define ELLM_CANCEL_REQUESTED 2u
void ellm_state_set_cancel(ellm_state *state, atomic_uint *word);
/* A second such word, of the context whose generation drafts with this state's (NULL: none). */
void ellm_state_set_cancel_owner(ellm_state *state, atomic_uint *word);
/* dst's cache becomes the first n positions of src's (same model and KV type): a shared prompt
 * is evaluated once and copied, instead of evaluated again for every sequence. */
edgellm_status ellm_state_copy_prefix(const ellm_model *model, ellm_state *dst,
                                      const ellm_state *src, int32_t n);

/*
 * Runs n_tokens (<= n_batch) tokens at positions n_past.. through the model, appends them to the
 * KV cache and writes logits: for every position into logits[n_tokens * n_vocab] when all_logits,
 * else only the last position into logits[n_vocab].
 */
edgellm_status ellm_forward(const ellm_model *model, ellm_state *state, ellm_threadpool *pool,
                            const edgellm_token *tokens, int32_t n_tokens, bool all_logits,
                            float *logits);

/* One sequence's part of a batched forward pass. */
typedef struct ellm_forward_seq {
    ellm_state *state;           /* its KV cache; each state at most once per batch */
    const edgellm_token *tokens; /* appended at positions state's n_past.. */
    int32_t n_tokens;
    bool all_logits; /* logits for every token, else only the last */
    bool hidden;     /* instead of logits: every token's final normed hidden state
                                     (n_embd floats each); only in a batch of one sequence */
} ellm_forward_seq;

/*
 * Runs several sequences (sharing the model) through one forward pass: the matmuls read each
 * weight once for all their tokens. work provides the scratch, so the total token count must not
 * exceed its n_batch and no sequence's context may exceed its n_ctx; work may be one of the
 * sequences' states. logits receives the kept rows sequence by sequence. Each sequence gets
 * exactly the logits it would get evaluated alone. Nothing changes when it fails.
 */
edgellm_status ellm_forward_batch(const ellm_model *model, ellm_state *work, ellm_threadpool *pool,
                                  const ellm_forward_seq *seqs, int32_t n_seqs, float *logits);

/* The residual stream a forward pass starts from: n_tokens rows of n_embd floats into x, the
 * token embedding's rows (scaled as the architecture asks). */
void ellm_forward_embed(const ellm_model *model, const edgellm_token *tokens, int32_t n_tokens,
                        float *x);
/*
 * Part of a forward pass: layers first..last-1 (first == last: none) of the model over n_tokens
 * (<= n_batch) rows of the residual stream x at layer first's input, at positions n_past.. of the
 * state's cache, whose layers first..last-1 take their keys and values. x_out (may be x; NULL:
 * not wanted) gets the rows at layer last's input. The rows go through the same steps as in
 * ellm_forward, so a prefill split into layer ranges gives the same bits. With last == n_layer, an
 * attached observer also sees the final norm's output of every row as the head's input. n_past
 * moves on by n_tokens.
 */
edgellm_status ellm_forward_layers(const ellm_model *model, ellm_state *state,
                                   ellm_threadpool *pool, int32_t first, int32_t last,
                                   const float *x, int32_t n_tokens, float *x_out);

#endif
