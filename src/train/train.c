/* The training graph of the llama architecture: parameter layout, the forward pass that keeps
 * what the backward pass needs, the backward pass, and the optimizer. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "model/model.h"
#include "quant/quant.h"
#include "train/train.h"
#include "train/train_ops.h"

edgellm_status ellm_train_config_check(const ellm_train_config *c)
{
    if (c->n_vocab <= 0 || c->n_embd <= 0 || c->n_layer <= 0 || c->n_head <= 0 ||
        c->n_head_kv <= 0 || c->n_ff <= 0)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "model dimensions must be positive (vocab %d, embd %d, layers %d, heads "
                         "%d, kv heads %d, ff %d)",
                         (int)c->n_vocab, (int)c->n_embd, (int)c->n_layer, (int)c->n_head,
                         (int)c->n_head_kv, (int)c->n_ff);
    if (c->n_embd % c->n_head != 0 || (c->n_embd / c->n_head) % 2 != 0)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "the width %d must be a multiple of twice the head count %d (even head "
                         "size)",
                         (int)c->n_embd, (int)c->n_head);
    if (c->n_head % c->n_head_kv != 0)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "the head count %d must be a multiple of the KV head count %d",
                         (int)c->n_head, (int)c->n_head_kv);
    if (!(c->rms_norm_eps > 0) || !(c->rope_freq_base > 0))
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "RMSNorm epsilon and RoPE base must be positive");
    return EDGELLM_OK;
}

size_t ellm_train_tensor_count(const ellm_train_config *c)
{
    return 2 + (c->tied_embeddings ? 0 : 1) + 9 * (size_t)c->n_layer;
}

/* The layout: tensor i's name, shape and offset in the flat array. */
static void tensor_layout(const ellm_train_config *c, size_t i, ellm_train_tensor *out,
                          size_t *offset)
{
    int64_t E = c->n_embd, hd = c->n_embd / c->n_head;
    int64_t q_dim = hd * c->n_head, kv_dim = hd * c->n_head_kv;
    size_t off = 0;
    size_t head = c->tied_embeddings ? 2 : 3;
    memset(out, 0, sizeof *out);
    if (i < head) {
        static const char *names[] = {"token_embd.weight", "output_norm.weight", "output.weight"};
        int64_t shapes[3][2] = {{E, c->n_vocab}, {E, 1}, {E, c->n_vocab}};
        for (size_t k = 0; k < i; k++)
            off += (size_t)(shapes[k][0] * shapes[k][1]);
        snprintf(out->name, sizeof out->name, "%s", names[i]);
        out->ne0 = shapes[i][0];
        out->ne1 = shapes[i][1];
        *offset = off;
        return;
    }
    static const char *names[9] = {"attn_norm", "attn_q",   "attn_k", "attn_v",  "attn_output",
                                   "ffn_norm",  "ffn_gate", "ffn_up", "ffn_down"};
    int64_t shapes[9][2] = {{E, 1}, {E, q_dim},   {E, kv_dim},  {E, kv_dim}, {q_dim, E},
                            {E, 1}, {E, c->n_ff}, {E, c->n_ff}, {c->n_ff, E}};
    size_t per_layer = 0;
    for (size_t k = 0; k < 9; k++)
        per_layer += (size_t)(shapes[k][0] * shapes[k][1]);
    for (size_t k = 0; k < head; k++) {
        ellm_train_tensor t;
        size_t o;
        tensor_layout(c, k, &t, &o);
        off = o + (size_t)(t.ne0 * t.ne1);
    }
    size_t li = (i - head) / 9, ti = (i - head) % 9;
    off += li * per_layer;
    for (size_t k = 0; k < ti; k++)
        off += (size_t)(shapes[k][0] * shapes[k][1]);
    snprintf(out->name, sizeof out->name, "blk.%zu.%s.weight", li, names[ti]);
    out->ne0 = shapes[ti][0];
    out->ne1 = shapes[ti][1];
    *offset = off;
}

void ellm_train_tensor_at(const ellm_train_params *p, size_t i, ellm_train_tensor *out)
{
    size_t off = 0;
    tensor_layout(&p->cfg, i, out, &off);
    out->data = p->data + off;
}

edgellm_status ellm_train_params_create(const ellm_train_config *cfg, ellm_train_params **out)
{
    *out = NULL;
    edgellm_status st = ellm_train_config_check(cfg);
    if (st != EDGELLM_OK)
        return st;
    size_t count = ellm_train_tensor_count(cfg);
    ellm_train_tensor last;
    size_t off = 0;
    tensor_layout(cfg, count - 1, &last, &off);
    size_t n = off + (size_t)(last.ne0 * last.ne1);
    ellm_train_params *p = calloc(1, sizeof *p);
    if (p) {
        p->data = calloc(n, sizeof *p->data);
        p->layers = calloc((size_t)cfg->n_layer, sizeof *p->layers);
    }
    if (!p || !p->data || !p->layers) {
        ellm_train_params_free(p);
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for %zu training parameters", n);
    }
    p->cfg = *cfg;
    p->n = n;
    ellm_train_tensor t;
    ellm_train_tensor_at(p, 0, &t);
    p->tok_embd = t.data;
    ellm_train_tensor_at(p, 1, &t);
    p->output_norm = t.data;
    p->output = p->tok_embd;
    if (!cfg->tied_embeddings) {
        ellm_train_tensor_at(p, 2, &t);
        p->output = t.data;
    }
    size_t head = cfg->tied_embeddings ? 2 : 3;
    for (int32_t il = 0; il < cfg->n_layer; il++) {
        float **slots[9] = {
            &p->layers[il].attn_norm, &p->layers[il].wq,     &p->layers[il].wk,
            &p->layers[il].wv,        &p->layers[il].wo,     &p->layers[il].ffn_norm,
            &p->layers[il].ffn_gate,  &p->layers[il].ffn_up, &p->layers[il].ffn_down};
        for (size_t k = 0; k < 9; k++) {
            ellm_train_tensor_at(p, head + (size_t)il * 9 + k, &t);
            *slots[k] = t.data;
        }
    }
    *out = p;
    return EDGELLM_OK;
}

void ellm_train_params_free(ellm_train_params *p)
{
    if (!p)
        return;
    free(p->data);
    free(p->layers);
    free(p);
}

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double uniform01(uint64_t *state)
{
    return ((double)(splitmix64(state) >> 11) + 0.5) * 0x1.0p-53;
}

void ellm_train_params_init_random(ellm_train_params *p, uint64_t seed)
{
    uint64_t state = seed;
    double resid_scale = 1.0 / sqrt(2.0 * p->cfg.n_layer);
    for (size_t i = 0; i < ellm_train_tensor_count(&p->cfg); i++) {
        ellm_train_tensor t;
        ellm_train_tensor_at(p, i, &t);
        size_t n = (size_t)(t.ne0 * t.ne1);
        if (t.ne1 == 1) {
            for (size_t k = 0; k < n; k++)
                t.data[k] = 1.0f;
            continue;
        }
        bool resid = strstr(t.name, "attn_output") || strstr(t.name, "ffn_down");
        double std = 0.02 * (resid ? resid_scale : 1.0);
        for (size_t k = 0; k < n; k++) {
            /* Box-Muller */
            double u1 = uniform01(&state), u2 = uniform01(&state);
            t.data[k] = (float)(std * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
        }
    }
}

/* The engine's tensor behind layout entry i. */
static const ellm_tensor *model_tensor(const ellm_weights *w, const ellm_train_config *c, size_t i)
{
    size_t head = c->tied_embeddings ? 2 : 3;
    if (i == 0)
        return &w->tok_embd;
    if (i == 1)
        return &w->output_norm;
    if (i == 2 && head == 3)
        return &w->output;
    const ellm_layer *L = &w->layers[(i - head) / 9];
    const ellm_tensor *ts[9] = {&L->attn_norm, &L->wq,       &L->wk,     &L->wv,      &L->wo,
                                &L->ffn_norm,  &L->ffn_gate, &L->ffn_up, &L->ffn_down};
    return ts[(i - head) % 9];
}

edgellm_status ellm_train_params_from_model(const ellm_model *model, ellm_train_params **out)
{
    *out = NULL;
    const ellm_hparams *hp = ellm_model_hparams(model);
    const ellm_weights *w = ellm_model_weights(model);
    const char *unsupported = NULL;
    if (hp->qk_norm)
        unsupported = "QK-norm";
    else if (hp->post_norms)
        unsupported = "post-norms";
    else if (hp->gelu_ffn)
        unsupported = "a GeGLU feed-forward";
    else if (hp->fused_qkv || hp->fused_gate_up)
        unsupported = "fused matrices";
    else if (hp->embd_scale > 0 || hp->attn_softcap > 0 || hp->final_softcap > 0)
        unsupported = "embedding scaling or soft-capping";
    else if (hp->sliding_window > 0)
        unsupported = "sliding-window attention";
    else if (hp->rope_freq_scale != 1.0f || w->rope_freqs.data || hp->rope_attn_factor != 1.0f)
        unsupported = "RoPE scaling or frequency factors";
    else if (hp->n_rot != hp->head_dim || hp->head_dim * hp->n_head != hp->n_embd)
        unsupported = "partial rotation or a head size other than width / heads";
    else if (fabsf(hp->attn_scale * sqrtf((float)hp->head_dim) - 1.0f) > 1e-6f)
        unsupported = "an attention scale other than 1/sqrt(head size)";
    else if (w->layers[0].bq.data || w->layers[0].bk.data || w->layers[0].bv.data)
        unsupported = "attention biases";
    if (unsupported)
        return ellm_fail(EDGELLM_ERR_UNSUPPORTED,
                         "training does not support %s (architecture '%s'); use a llama model",
                         unsupported, hp->arch);
    ellm_train_config cfg = {
        hp->n_vocab, hp->n_embd,       hp->n_layer,        hp->n_head,    hp->n_head_kv,
        hp->n_ff,    hp->rms_norm_eps, hp->rope_freq_base, hp->rope_neox, hp->tied_embeddings};
    ellm_train_params *p = NULL;
    edgellm_status st = ellm_train_params_create(&cfg, &p);
    if (st != EDGELLM_OK)
        return st;
    for (size_t i = 0; i < ellm_train_tensor_count(&cfg); i++) {
        ellm_train_tensor t;
        ellm_train_tensor_at(p, i, &t);
        const ellm_tensor *src = model_tensor(w, &cfg, i);
        if (src->ne[0] != t.ne0 || (src->n_dims > 1 ? src->ne[1] : 1) != t.ne1) {
            ellm_train_params_free(p);
            return ellm_fail(EDGELLM_ERR_FORMAT, "tensor %s has an unexpected shape", t.name);
        }
        for (int64_t r = 0; r < t.ne1; r++)
            ellm_dequantize_row(src->type, (const uint8_t *)src->data + r * src->row_bytes,
                                t.data + r * t.ne0, t.ne0);
    }
    *out = p;
    return EDGELLM_OK;
}
