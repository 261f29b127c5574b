/* The single operations of the training graph with their backward passes, exposed so the tests
 * check each against finite differences. Row-major: x[t * n + i]. "Backward" functions ADD their
 * input gradients to the buffers they are given. */
#ifndef EDGELLM_TRAIN_OPS_H
#define EDGELLM_TRAIN_OPS_H

#include <stdbool.h>
#include <stdint.h>

#include "core/threadpool.h"

/* y[t][o] = W[o] . x[t] */
void ellm_train_matmul(ellm_threadpool *pool, float *y, const float *x, const float *W,
                       int64_t n_rows, int64_t n_in, int64_t n_out);
/* dx[t] (+)= dy[t] W (accumulate: add instead of overwrite); dW[o] += sum_t dy[t][o] x[t] */
void ellm_train_matmul_backward(ellm_threadpool *pool, float *dx, float *dW, const float *dy,
                                const float *x, const float *W, int64_t n_rows, int64_t n_in,
                                int64_t n_out, bool accumulate);

/* y = x / rms(x) * w per row (as the engine computes it); saves 1/rms per row in rstd. */
void ellm_train_rms_norm(float *y, float *rstd, const float *x, const float *w, int64_t n_rows,
                         int64_t n, float eps);
void ellm_train_rms_norm_backward(float *dx, float *dw, const float *dy, const float *x,
                                  const float *w, const float *rstd, int64_t n_rows, int64_t n);

/* cos/sin of RoPE angle of pair i at position p: table[(p * half + i) * 2 + {0,1}], angles built
 * exactly as the engine builds them. */
void ellm_train_rope_table(float *table, int32_t n_ctx, int32_t head_dim, float freq_base);
/* Rotates each of n_heads heads of row t (position t % n_ctx) forward, or backward by the
 * inverse rotation (which is the gradient of the rotation). */
void ellm_train_rope(float *x, const float *table, int64_t n_rows, int32_t n_ctx, int32_t n_heads,
                     int32_t head_dim, bool neox, bool inverse);

/* Causal grouped-query attention of n_seq sequences of n_ctx rows: q [rows][n_head*hd],
 * k, v [rows][n_head_kv*hd], out like q; probs [n_seq][n_head][n_ctx][n_ctx] saved. */
void ellm_train_attention(ellm_threadpool *pool, float *out, float *probs, const float *q,
                          const float *k, const float *v, int32_t n_seq, int32_t n_ctx,
                          int32_t n_head, int32_t n_head_kv, int32_t head_dim);
/* dq, dk and dv are overwritten (each by one job only). False when out of memory. */
bool ellm_train_attention_backward(ellm_threadpool *pool, float *dq, float *dk, float *dv,
                                   const float *dout, const float *probs, const float *q,
                                   const float *k, const float *v, int32_t n_seq, int32_t n_ctx,
                                   int32_t n_head, int32_t n_head_kv, int32_t head_dim);

/* h = silu(g) * u */
void ellm_train_swiglu(float *h, const float *g, const float *u, int64_t n);
/* dg, du overwritten */
void ellm_train_swiglu_backward(float *dg, float *du, const float *dh, const float *g,
                                const float *u, int64_t n);

/* Mean over rows of -log softmax(logits[t])[targets[t]]; dlogits (if not NULL) receives
 * scale * its gradient. Returns the mean loss (double accumulation). */
double ellm_train_cross_entropy(ellm_threadpool *pool, float *dlogits, const float *logits,
                                const int32_t *targets, int64_t n_rows, int64_t n_vocab,
                                float scale);

/* Knowledge distillation: the mean over rows of
 *   alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(student, target)
 * (T^2 keeps the soft term's gradient on the scale of the hard one as T grows). Teacher logits of
 * -INFINITY (tokens outside a kept top-k) have probability 0. dlogits (if not
 * NULL) receives scale times the gradient with respect to the student's logits; *mean_kl (if not
 * NULL) the mean KL alone. NaN when out of memory. */
double ellm_train_distill_loss(ellm_threadpool *pool, float *dlogits, const float *student,
                               const float *teacher, const int32_t *targets, int64_t n_rows,
                               int64_t n_vocab, float temperature, float alpha, float scale,
                               double *mean_kl);

#endif
