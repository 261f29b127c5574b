/* The forward pass with saved activations, the backward pass, and the optimizer. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "train/train.h"
#include "train/train_ops.h"

typedef struct layer_acts {
    float *x;           /* residual stream entering the layer */
    float *rstd1, *xn1; /* attention norm */
    float *q, *k, *v;   /* after RoPE */
    float *probs, *att; /* attention probabilities and output */
    float *xm;          /* residual after attention */
    float *rstd2, *xn2; /* FFN norm */
    float *g, *u, *h;   /* gate, up, silu(gate) * up */
} layer_acts;

struct ellm_train_work {
    ellm_train_config cfg;
    int32_t n_seq, n_ctx;
    layer_acts *layers;
    float *x_final, *rstd_f, *xn_f, *logits;
    float *rope;
    /* gradients of activations, reused by every layer */
    float *dx, *dxn, *dq, *dk, *dv, *datt, *dg, *du, *dh, *dlogits;
    float *block;
    size_t bytes;
};

edgellm_status ellm_train_work_create(const ellm_train_config *c, int32_t n_seq, int32_t n_ctx,
                                      ellm_train_work **out)
{
    *out = NULL;
    edgellm_status st = ellm_train_config_check(c);
    if (st != EDGELLM_OK)
        return st;
    if (n_seq <= 0 || n_ctx <= 0)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "batch and context must be positive");
    size_t rows = (size_t)n_seq * n_ctx, E = (size_t)c->n_embd, F = (size_t)c->n_ff;
    size_t hd = E / (size_t)c->n_head, qd = hd * (size_t)c->n_head, kvd = hd * (size_t)c->n_head_kv;
    size_t P = (size_t)n_seq * c->n_head * n_ctx * n_ctx, V = (size_t)c->n_vocab;
    size_t per_layer = rows * (E + 1 + E + qd + 2 * kvd + qd + E + 1 + E + 3 * F) + P;
    size_t total = per_layer * (size_t)c->n_layer + rows * (E + 1 + E + V) + (size_t)n_ctx * hd +
                   rows * (2 * E + qd + 2 * kvd + qd + 3 * F + V);
    ellm_train_work *w = calloc(1, sizeof *w);
    if (w) {
        w->layers = calloc((size_t)c->n_layer, sizeof *w->layers);
        w->block = calloc(total, sizeof(float));
    }
    if (!w || !w->layers || !w->block) {
        ellm_train_work_free(w);
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY,
                         "cannot allocate %.1f MiB of training activations; use a smaller batch "
                         "or context",
                         (double)total * 4 / (1024.0 * 1024.0));
    }
    w->cfg = *c;
    w->n_seq = n_seq;
    w->n_ctx = n_ctx;
    w->bytes = total * sizeof(float) + (size_t)c->n_layer * sizeof *w->layers;
    float *b = w->block;
#define TAKE(ptr, count) (ptr) = b, b += (count)
    for (int32_t il = 0; il < c->n_layer; il++) {
        layer_acts *L = &w->layers[il];
        TAKE(L->x, rows * E);
        TAKE(L->rstd1, rows);
        TAKE(L->xn1, rows * E);
        TAKE(L->q, rows * qd);
        TAKE(L->k, rows * kvd);
        TAKE(L->v, rows * kvd);
        TAKE(L->probs, P);
        TAKE(L->att, rows * qd);
        TAKE(L->xm, rows * E);
        TAKE(L->rstd2, rows);
        TAKE(L->xn2, rows * E);
        TAKE(L->g, rows * F);
        TAKE(L->u, rows * F);
        TAKE(L->h, rows * F);
    }
    TAKE(w->x_final, rows * E);
    TAKE(w->rstd_f, rows);
    TAKE(w->xn_f, rows * E);
    TAKE(w->logits, rows * V);
    TAKE(w->rope, (size_t)n_ctx * hd);
    TAKE(w->dx, rows * E);
    TAKE(w->dxn, rows * E);
    TAKE(w->dq, rows * qd);
    TAKE(w->dk, rows * kvd);
    TAKE(w->dv, rows * kvd);
    TAKE(w->datt, rows * qd);
    TAKE(w->dg, rows * F);
    TAKE(w->du, rows * F);
    TAKE(w->dh, rows * F);
    TAKE(w->dlogits, rows * V);
#undef TAKE
    ellm_train_rope_table(w->rope, n_ctx, (int32_t)hd, c->rope_freq_base);
    *out = w;
    return EDGELLM_OK;
}

void ellm_train_work_free(ellm_train_work *w)
{
    if (!w)
        return;
    free(w->block);
    free(w->layers);
    free(w);
}

size_t ellm_train_work_bytes(const ellm_train_work *w) { return w->bytes; }

const float *ellm_train_logits(const ellm_train_work *w) { return w->logits; }

static bool same_config(const ellm_train_config *a, const ellm_train_config *b)
{
    return a->n_vocab == b->n_vocab && a->n_embd == b->n_embd && a->n_layer == b->n_layer &&
           a->n_head == b->n_head && a->n_head_kv == b->n_head_kv && a->n_ff == b->n_ff &&
           a->tied_embeddings == b->tied_embeddings;
}

/* The forward pass, the loss (cross-entropy, or distillation with kd) and the backward pass. */
static edgellm_status forward_backward(const ellm_train_params *p, ellm_train_params *grads,
                                       ellm_train_work *w, ellm_threadpool *pool,
                                       const int32_t *tokens, const int32_t *targets,
                                       const ellm_train_distill *kd, float grad_scale, double *loss)
{
    const ellm_train_config *c = &p->cfg;
    if (!same_config(c, &w->cfg) || (grads && !same_config(c, &grads->cfg)))
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "parameters, gradients and work state have different shapes");
    if (grads && !targets)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "a backward pass needs targets");
    int64_t rows = (int64_t)w->n_seq * w->n_ctx, E = c->n_embd, F = c->n_ff, V = c->n_vocab;
    int32_t hd = c->n_embd / c->n_head;
    int64_t qd = (int64_t)hd * c->n_head, kvd = (int64_t)hd * c->n_head_kv;
    for (int64_t t = 0; t < rows; t++)
        if (tokens[t] < 0 || tokens[t] >= V || (targets && (targets[t] < 0 || targets[t] >= V)))
            return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                             "token id at batch position %lld is outside the vocabulary (0..%lld)",
                             (long long)t, (long long)V - 1);

    /* ---- forward ---- */
    for (int64_t t = 0; t < rows; t++)
        memcpy(w->layers[0].x + t * E, p->tok_embd + (int64_t)tokens[t] * E,
               (size_t)E * sizeof(float));
    for (int32_t il = 0; il < c->n_layer; il++) {
        const ellm_train_layer *P = &p->layers[il];
        layer_acts *L = &w->layers[il];
        float *x_next = il + 1 < c->n_layer ? w->layers[il + 1].x : w->x_final;
        ellm_train_rms_norm(L->xn1, L->rstd1, L->x, P->attn_norm, rows, E, c->rms_norm_eps);
        ellm_train_matmul(pool, L->q, L->xn1, P->wq, rows, E, qd);
        ellm_train_matmul(pool, L->k, L->xn1, P->wk, rows, E, kvd);
        ellm_train_matmul(pool, L->v, L->xn1, P->wv, rows, E, kvd);
        ellm_train_rope(L->q, w->rope, rows, w->n_ctx, c->n_head, hd, c->rope_neox, false);
        ellm_train_rope(L->k, w->rope, rows, w->n_ctx, c->n_head_kv, hd, c->rope_neox, false);
        ellm_train_attention(pool, L->att, L->probs, L->q, L->k, L->v, w->n_seq, w->n_ctx,
                             c->n_head, c->n_head_kv, hd);
        ellm_train_matmul(pool, L->xm, L->att, P->wo, rows, qd, E);
        for (int64_t i = 0; i < rows * E; i++)
            L->xm[i] += L->x[i];
        ellm_train_rms_norm(L->xn2, L->rstd2, L->xm, P->ffn_norm, rows, E, c->rms_norm_eps);
        ellm_train_matmul(pool, L->g, L->xn2, P->ffn_gate, rows, E, F);
        ellm_train_matmul(pool, L->u, L->xn2, P->ffn_up, rows, E, F);
        ellm_train_swiglu(L->h, L->g, L->u, rows * F);
        ellm_train_matmul(pool, x_next, L->h, P->ffn_down, rows, F, E);
        for (int64_t i = 0; i < rows * E; i++)
            x_next[i] += L->xm[i];
    }
    ellm_train_rms_norm(w->xn_f, w->rstd_f, w->x_final, p->output_norm, rows, E, c->rms_norm_eps);
    ellm_train_matmul(pool, w->logits, w->xn_f, p->output, rows, E, V);
    if (!targets)
        return EDGELLM_OK;
    double l = kd ? ellm_train_distill_loss(pool, grads ? w->dlogits : NULL, w->logits,
                                            kd->teacher_logits, targets, rows, V, kd->temperature,
                                            kd->alpha, grad_scale, kd->mean_kl)
                  : ellm_train_cross_entropy(pool, grads ? w->dlogits : NULL, w->logits, targets,
                                             rows, V, grad_scale);
    if (isnan(l) && !grads)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the loss");
    if (loss)
        *loss = l;
    if (!grads)
        return EDGELLM_OK;

    /* ---- backward ---- */
    memset(w->dxn, 0, (size_t)(rows * E) * sizeof(float));
    ellm_train_matmul_backward(pool, w->dxn, grads->output, w->dlogits, w->xn_f, p->output, rows, E,
                               V, false);
    memset(w->dx, 0, (size_t)(rows * E) * sizeof(float));
    ellm_train_rms_norm_backward(w->dx, grads->output_norm, w->dxn, w->x_final, p->output_norm,
                                 w->rstd_f, rows, E);
    for (int32_t il = c->n_layer - 1; il >= 0; il--) {
        const ellm_train_layer *P = &p->layers[il];
        ellm_train_layer *G = &grads->layers[il];
        layer_acts *L = &w->layers[il];
        /* dx is the gradient of the layer's output, which is xm + ffn(xm) */
        ellm_train_matmul_backward(pool, w->dh, G->ffn_down, w->dx, L->h, P->ffn_down, rows, F, E,
                                   false);
        ellm_train_swiglu_backward(w->dg, w->du, w->dh, L->g, L->u, rows * F);
        ellm_train_matmul_backward(pool, w->dxn, G->ffn_gate, w->dg, L->xn2, P->ffn_gate, rows, E,
                                   F, false);
        ellm_train_matmul_backward(pool, w->dxn, G->ffn_up, w->du, L->xn2, P->ffn_up, rows, E, F,
                                   true);
        ellm_train_rms_norm_backward(w->dx, G->ffn_norm, w->dxn, L->xm, P->ffn_norm, L->rstd2, rows,
                                     E);
        /* dx is now the gradient of xm = x + attention(x) */
        ellm_train_matmul_backward(pool, w->datt, G->wo, w->dx, L->att, P->wo, rows, qd, E, false);
        if (!ellm_train_attention_backward(pool, w->dq, w->dk, w->dv, w->datt, L->probs, L->q, L->k,
                                           L->v, w->n_seq, w->n_ctx, c->n_head, c->n_head_kv, hd))
            return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the attention gradient");
        ellm_train_rope(w->dq, w->rope, rows, w->n_ctx, c->n_head, hd, c->rope_neox, true);
        ellm_train_rope(w->dk, w->rope, rows, w->n_ctx, c->n_head_kv, hd, c->rope_neox, true);
        ellm_train_matmul_backward(pool, w->dxn, G->wq, w->dq, L->xn1, P->wq, rows, E, qd, false);
        ellm_train_matmul_backward(pool, w->dxn, G->wk, w->dk, L->xn1, P->wk, rows, E, kvd, true);
        ellm_train_matmul_backward(pool, w->dxn, G->wv, w->dv, L->xn1, P->wv, rows, E, kvd, true);
        ellm_train_rms_norm_backward(w->dx, G->attn_norm, w->dxn, L->x, P->attn_norm, L->rstd1,
                                     rows, E);
    }
    for (int64_t t = 0; t < rows; t++) {
        float *dst = grads->tok_embd + (int64_t)tokens[t] * E;
        for (int64_t i = 0; i < E; i++)
            dst[i] += w->dx[t * E + i];
    }
    return EDGELLM_OK;
}

edgellm_status ellm_train_forward_backward(const ellm_train_params *p, ellm_train_params *grads,
                                           ellm_train_work *w, ellm_threadpool *pool,
                                           const int32_t *tokens, const int32_t *targets,
                                           float grad_scale, double *loss)
{
    return forward_backward(p, grads, w, pool, tokens, targets, NULL, grad_scale, loss);
}

edgellm_status ellm_train_forward_backward_distill(const ellm_train_params *p,
                                                   ellm_train_params *grads, ellm_train_work *w,
                                                   ellm_threadpool *pool, const int32_t *tokens,
                                                   const int32_t *targets,
                                                   const ellm_train_distill *kd, float grad_scale,
                                                   double *loss)
{
    if (!kd || !kd->teacher_logits || !targets || !(kd->temperature > 0) ||
        !(kd->alpha >= 0 && kd->alpha <= 1))
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "distillation needs teacher logits, targets, a temperature > 0 and an "
                         "alpha in [0, 1]");
    return forward_backward(p, grads, w, pool, tokens, targets, kd, grad_scale, loss);
}

edgellm_status ellm_adamw_init(ellm_adamw *opt, size_t n)
{
    opt->m = calloc(n, sizeof *opt->m);
    opt->v = calloc(n, sizeof *opt->v);
    opt->t = 0;
    if (!opt->m || !opt->v) {
        ellm_adamw_free(opt);
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the optimizer state");
    }
    return EDGELLM_OK;
}

void ellm_adamw_free(ellm_adamw *opt)
{
    free(opt->m);
    free(opt->v);
    opt->m = opt->v = NULL;
}

void ellm_adamw_update(ellm_adamw *opt, ellm_train_params *p, const ellm_train_params *grads,
                       float lr)
{
    opt->t++;
    double bc1 = 1.0 - pow(opt->beta1, (double)opt->t);
    double bc2 = 1.0 - pow(opt->beta2, (double)opt->t);
    for (size_t ti = 0; ti < ellm_train_tensor_count(&p->cfg); ti++) {
        ellm_train_tensor t;
        ellm_train_tensor_at(p, ti, &t);
        size_t off = (size_t)(t.data - p->data), n = (size_t)(t.ne0 * t.ne1);
        /* Norm gains are not decayed: pulling them to zero would switch the layer off. */
        float decay = t.ne1 > 1 ? opt->weight_decay : 0.0f;
        for (size_t i = off; i < off + n; i++) {
            float g = grads->data[i];
            opt->m[i] = opt->beta1 * opt->m[i] + (1.0f - opt->beta1) * g;
            opt->v[i] = opt->beta2 * opt->v[i] + (1.0f - opt->beta2) * g * g;
            float mhat = (float)(opt->m[i] / bc1), vhat = (float)(opt->v[i] / bc2);
            p->data[i] -= lr * (mhat / (sqrtf(vhat) + opt->eps) + decay * p->data[i]);
        }
    }
}

double ellm_train_clip_grad_norm(ellm_train_params *grads, double max_norm)
{
    double ss = 0;
    for (size_t i = 0; i < grads->n; i++)
        ss += (double)grads->data[i] * grads->data[i];
    double norm = sqrt(ss);
    if (max_norm > 0 && norm > max_norm) {
        float s = (float)(max_norm / norm);
        for (size_t i = 0; i < grads->n; i++)
            grads->data[i] *= s;
    }
    return norm;
}

float ellm_train_lr(float lr, float min_lr, int64_t warmup, int64_t total, int64_t step)
{
    if (warmup > 0 && step < warmup)
        return lr * (float)(step + 1) / (float)warmup;
    if (total <= warmup)
        return lr;
    double progress = (double)(step - warmup) / (double)(total - warmup);
    if (progress > 1)
        progress = 1;
    return min_lr + (float)(0.5 * (1.0 + cos(3.141592653589793 * progress))) * (lr - min_lr);
}
