/* Training of llama-architecture models in F32: the forward pass with saved activations, its
 * backward pass, cross-entropy loss, AdamW, the learning-rate schedule and gradient clipping.
 * Core-style: libc, libm and pthreads only. Every parallel step gives each output element to one
 * thread, which computes it in a fixed order, so a run is reproducible for a given seed and thread
 * count. */
#ifndef EDGELLM_TRAIN_H
#define EDGELLM_TRAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/threadpool.h"
#include "edgellm.h"
#include "model/model.h"

typedef struct ellm_train_config {
    int32_t n_vocab, n_embd, n_layer, n_head, n_head_kv, n_ff;
    float rms_norm_eps, rope_freq_base;
    bool rope_neox;       /* rotate pairs (i, i + head_dim/2) instead of (2i, 2i+1) */
    bool tied_embeddings; /* the output head is the token embedding */
} ellm_train_config;

typedef struct ellm_train_layer {
    float *attn_norm, *wq, *wk, *wv, *wo, *ffn_norm, *ffn_gate, *ffn_up, *ffn_down;
} ellm_train_layer;

/* All parameters (or all gradients: the same layout) in one array. Matrices are row-major
 * [out][in] as GGUF stores them. */
typedef struct ellm_train_params {
    ellm_train_config cfg;
    size_t n; /* floats in data */
    float *data;
    float *tok_embd, *output_norm, *output; /* output == tok_embd when tied */
    ellm_train_layer *layers;
} ellm_train_params;

/* One named tensor of the layout, with its GGUF name and shape (ne0 = columns). */
typedef struct ellm_train_tensor {
    char name[48];
    int64_t ne0, ne1; /* ne1 = 1 for vectors */
    float *data;
} ellm_train_tensor;

/* Validates the dimensions (positive, heads dividing the width and each other, even head size). */
edgellm_status ellm_train_config_check(const ellm_train_config *cfg);
/* Zero-filled parameters of this shape. */
edgellm_status ellm_train_params_create(const ellm_train_config *cfg, ellm_train_params **out);
void ellm_train_params_free(ellm_train_params *p);
/* Norm weights 1, every matrix normal(0, 0.02) from seed (residual projections scaled by
 * 1/sqrt(2 * n_layer)). */
void ellm_train_params_init_random(ellm_train_params *p, uint64_t seed);
/* The model's weights dequantized to F32. Refuses architectures and features the training graph
 * does not have (biases, QK-norm, RoPE scaling, partial rotation, ...), naming them. */
edgellm_status ellm_train_params_from_model(const ellm_model *model, ellm_train_params **out);

size_t ellm_train_tensor_count(const ellm_train_config *cfg);
/* Tensor i (0 <= i < count) of p; a tied model lists no output tensor. */
void ellm_train_tensor_at(const ellm_train_params *p, size_t i, ellm_train_tensor *out);

/* Activations of one micro-batch of n_seq sequences of n_ctx tokens. */
typedef struct ellm_train_work ellm_train_work;
edgellm_status ellm_train_work_create(const ellm_train_config *cfg, int32_t n_seq, int32_t n_ctx,
                                      ellm_train_work **out);
void ellm_train_work_free(ellm_train_work *w);
/* Bytes the work state holds (activations and gradients of activations). */
size_t ellm_train_work_bytes(const ellm_train_work *w);
/* Logits [n_seq * n_ctx][n_vocab] of the last forward pass. */
const float *ellm_train_logits(const ellm_train_work *w);

/*
 * Runs tokens [n_seq][n_ctx] forward; with targets (same shape, next tokens) computes the mean
 * cross-entropy into *loss, and with grads also runs backward, ADDING grad_scale times the
 * gradient of that mean to grads (so micro-batches accumulate). Token ids must be valid.
 */
edgellm_status ellm_train_forward_backward(const ellm_train_params *p, ellm_train_params *grads,
                                           ellm_train_work *w, ellm_threadpool *pool,
                                           const int32_t *tokens, const int32_t *targets,
                                           float grad_scale, double *loss);

/* A distillation step's teacher: its logits for the same rows, and the loss's parameters. */
typedef struct ellm_train_distill {
    /* [n_seq * n_ctx][n_vocab]; -INFINITY marks tokens outside the teacher's kept top-k, whose
     * distribution is then the softmax over the kept ones. */
    const float *teacher_logits;
    float temperature, alpha;
    double *mean_kl; /* receives the mean KL(teacher || student) at the temperature; may be NULL */
} ellm_train_distill;

/* ellm_train_forward_backward with the distillation loss (ellm_train_distill_loss in
 * train_ops.h): alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE
 * in *loss, its gradient added (times grad_scale) to grads. Needs targets. */
edgellm_status ellm_train_forward_backward_distill(const ellm_train_params *p,
                                                   ellm_train_params *grads, ellm_train_work *w,
                                                   ellm_threadpool *pool, const int32_t *tokens,
                                                   const int32_t *targets,
                                                   const ellm_train_distill *kd, float grad_scale,
                                                   double *loss);

/* AdamW with bias correction and decoupled weight decay (matrices only, not norms). */
typedef struct ellm_adamw {
    float beta1, beta2, eps, weight_decay;
    float *m, *v; /* first and second moments, p->n floats each */
    int64_t t;    /* updates done */
} ellm_adamw;

edgellm_status ellm_adamw_init(ellm_adamw *opt, size_t n);
void ellm_adamw_free(ellm_adamw *opt);
void ellm_adamw_update(ellm_adamw *opt, ellm_train_params *p, const ellm_train_params *grads,
                       float lr);

/* The L2 norm of all gradients (double accumulation); when above max_norm > 0 every gradient is
 * scaled down to it. Returns the norm before clipping. */
double ellm_train_clip_grad_norm(ellm_train_params *grads, double max_norm);

/* Linear warm-up over warmup steps to lr, then cosine decay to min_lr at total steps. */
float ellm_train_lr(float lr, float min_lr, int64_t warmup, int64_t total, int64_t step);

#endif
