/* GPTQ: a matrix is rounded one input column at a time, and each column's rounding error is
 * pushed onto the columns not yet rounded through the inverse of H = X^T X (X the calibration
 * activations the matrix multiplies), so the layer's output X W^T changes as little as the
 * remaining columns can make up for. With U the upper Cholesky factor of H^-1 (H^-1 = U^T U),
 * rounding column i with error e_i updates w_j -= (e_i / U_ii) U_ij for j > i.
 *
 * The block scales are chosen per quantization block as the columns reach it (from the values
 * already corrected by the earlier columns' errors, importance-weighted by diag H where the format
 * has a weighted search), then every column of the block is rounded on that block's grid with
 * feedback (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL, Q4_K, Q5_K, Q6_K). Other block formats fix their
 * codes when the block starts and feed the block's errors forward column by column. For the
 * 32-value formats the block scales (and minimums) are then refit by least squares to minimise
 * the row's output error under H for the final codes, the row is rounded once more on the refit
 * scales, and the better pass is kept. Q4_0, IQ4_NL and Q3_K then move single values one level
 * where that lowers the row's error under H with every other value known, and refit again.
 *
 * The untied token embedding has no input activations; its H is that of the matrices reading the
 * residual stream: the sum over every layer's q/k/v and gate/up of diag(g) W^T W diag(g), g the
 * RMSNorm weight in front of them.
 *
 * ffn_gate and ffn_up of a SwiGLU FFN, where the calibration text is long enough for it, get a
 * Hessian per row, each token weighted by what that row's output error is multiplied by in
 * silu(g) u, and up's rows first aim at silu(g) u under the already rounded gate
 * (ellm_gptq_quantize_gated).
 *
 * H is never stored for the whole model: ellm_gptq recomputes one layer's H (the four inputs
 * q/k/v, attn_output, gate/up, down) by running the model over the calibration tokens when a
 * matrix of that layer is first asked for, and keeps only that layer's. */
#ifndef EDGELLM_OPTIMISE_GPTQ_H
#define EDGELLM_OPTIMISE_GPTQ_H

#include <stdbool.h>
#include <stdint.h>

#include "core/tensor_types.h"
#include "core/threadpool.h"
#include "edgellm.h"
#include "gguf/gguf.h"
#include "optimise/awq.h"

/* The relative damping GPTQ adds to H's diagonal (times its mean) before inverting. */
#define ELLM_GPTQ_DAMP 0.01f

/* Quantizes the n_rows x n_cols matrix w (row-major floats; changed in place by the feedback) to
 * `type` rows in dst, given h = X^T X (n_cols x n_cols, row-major, symmetric; scale free).
 * feedback false rounds every block on its own (the same blocks without error propagation: the
 * baseline the tests compare against). Fails when n_cols does not split into the type's blocks. */
edgellm_status ellm_gptq_quantize(ellm_threadpool *pool, ellm_type type, float *w, int64_t n_rows,
                                  int64_t n_cols, const float *h, float damp, bool feedback,
                                  void *dst);
/* ellm_gptq_quantize with the errors of lazy_columns columns (rounded up to whole blocks; 0: the
 * default, 128) applied to the rest of the row at once. The width changes only how the updates
 * are grouped, never their order: every width gives the same bytes (the tests' reference). */
edgellm_status ellm_gptq_quantize_lazy(ellm_threadpool *pool, ellm_type type, float *w,
                                       int64_t n_rows, int64_t n_cols, const float *h, float damp,
                                       bool feedback, int64_t lazy_columns, void *dst);
/* ellm_gptq_quantize with act-order: the columns rounded in descending order of diag H, each
 * block's scale chosen when the order first reaches one of its columns (static groups), on the
 * values the feedback has left by then. w ends in file order. */
edgellm_status ellm_gptq_quantize_act_order(ellm_threadpool *pool, ellm_type type, float *w,
                                            int64_t n_rows, int64_t n_cols, const float *h,
                                            float damp, int64_t lazy_columns, void *dst);
/* U (n x n, upper) with U^T U = (H + lambda I)^-1, lambda = damp * mean(diag H), times ten while
 * that is not positive definite in double precision; fails when it never is (NaN or infinite
 * statistics). The lower triangle of u is zero. */
edgellm_status ellm_gptq_inverse_factor(ellm_threadpool *pool, const float *h, int64_t n,
                                        float damp, float *u);
/* GPTQ for ffn_gate (is_gate) or ffn_up of a SwiGLU FFN, silu(x . g_r) (x . u_r): row r gets its
 * own Hessian sum_t a_t x_t x_t^T over the n_tok rows of x (the FFN's normed inputs), a_t the
 * square of what an error in that row's output at token t is multiplied by in the product
 * (silu'(g_r . x_t) (u_r . x_t) for gate, silu(g_r . x_t) for up). gate and up (n_rows x n) are
 * the matrices the model computes with (for up: the gate as rounded); gate0, when not NULL, is
 * the gate as given, and up's rows are first moved to the least-squares best match of
 * silu(gate0 x) (up x) under the rounded gate. w: the rows to round (changed in place). */
edgellm_status ellm_gptq_quantize_gated(ellm_threadpool *pool, ellm_type type, float *w,
                                        int64_t n_rows, int64_t n, const float *x, int64_t n_tok,
                                        const float *gate, const float *gate0, const float *up,
                                        bool is_gate, float damp, void *dst);
/* Whether ellm_gptq_quantize handles the type with n_cols-wide rows. */
bool ellm_gptq_supports(ellm_type type, int64_t n_cols);

typedef struct ellm_gptq ellm_gptq;

typedef struct ellm_gptq_params {
    int32_t n_ctx;     /* tokens per chunk; each chunk starts from an empty cache */
    int32_t n_chunks;  /* 0: every whole chunk of the calibration tokens */
    int32_t n_threads; /* 0: one per CPU */
    /* Called when a layer's statistics are computed (layer, total layers, seconds; layer -1:
     * the output head's input); may be NULL. */
    void (*on_layer)(void *user, int32_t layer, int32_t n_layer, double seconds);
    void *user;
    /* Act-order: each matrix's columns are rounded in descending order of diag H, each block's
     * scale chosen when the order reaches its first column (types with a grid here; others in
     * order). */
    bool act_order;
} ellm_gptq_params;

/* Opens the model at model_path (the weights the first layer's activations come from) for GPTQ
 * over the calibration token ids (kept by reference: they must outlive the handle). Fails with a
 * clear message when the ids do not fill one chunk or lie outside the vocabulary, or when their
 * hidden states, carried from layer to layer, would exceed ELLM_CALIB_CARRY_MAX_BYTES. */
edgellm_status ellm_gptq_create(const char *model_path, const edgellm_token *ids, int32_t n_ids,
                                const ellm_gptq_params *params, ellm_gptq **out);
/* The model file the calibration runs on, mapped once: quantizing reads it through this
 * (ellm_quantize_options.input) instead of mapping it again. */
const gguf_file *ellm_gptq_input(const ellm_gptq *g);
/* Bytes of quantized matrices the calibration model computes with now: the layer being quantized
 * (the earlier layers' are released once the calibration states are carried past them) and the
 * token embedding. */
uint64_t ellm_gptq_installed_bytes(const ellm_gptq *g);
/* Whether GPTQ applies to this weight of the model quantized to type: a layer matrix of a known
 * input, the untied output head (H from the final norm's output over every calibration row), or
 * the untied token embedding, whose rows split into the type's blocks. */
bool ellm_gptq_covers(const ellm_gptq *g, const char *tensor, ellm_type type, int64_t n_cols);
/* Quantizes covered matrix `tensor` (n_rows x n_cols floats in w, changed in place) to dst.
 * awq (may be NULL): the fold w went through; a column multiplied by s_j (its input divided by
 * it) makes H diag(1/s) H diag(1/s). The quantized matrix then replaces the model's own for the
 * statistics of the later layers (sequential GPTQ): quantize in layer order (a layer asked for
 * after later layers' copies were released fails). */
edgellm_status ellm_gptq_quantize_tensor(ellm_gptq *g, const char *tensor, ellm_type type, float *w,
                                         int64_t n_rows, int64_t n_cols, const ellm_awq *awq,
                                         void *dst);
/* Mean KL divergence over the calibration positions of the model's next-token distributions with
 * the n (at most 4) listed weights rounded plainly to the types of a plan, against the model as
 * it is: kl[p] for plan p (types[p * n + k] for tensors[k]; at most 4 plans, which share the
 * model's reference pass). Only the token embedding and the untied output head: per-matrix
 * errors cannot say which of two matrices of different kinds a bit helps more, the logits can.
 * The model is left as it was. */
edgellm_status ellm_gptq_logit_kl(ellm_gptq *g, const char *const *tensors, int n,
                                  const ellm_type *types, int n_plans, double *kl);
void ellm_gptq_free(ellm_gptq *g);

#endif
