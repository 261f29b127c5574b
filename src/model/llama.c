/* The Llama architecture family: hyper-parameters from `<arch>.*` metadata and the tensor set. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "model/model_internal.h"
#include "quant/quant.h"

static edgellm_status get_i32_key(const gguf_file *f, const char *arch, const char *suffix,
                                  bool required, int32_t *out)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    uint32_t v;
    edgellm_status st = gguf_get_u32(f, key, &v);
    if (st == EDGELLM_ERR_NOT_FOUND) {
        if (required)
            return ellm_fail(EDGELLM_ERR_FORMAT, "the model is missing metadata '%s'", key);
        return EDGELLM_OK;
    }
    if (st != EDGELLM_OK)
        return st;
    if (v == 0 || v > (1u << 30))
        return ellm_fail(EDGELLM_ERR_FORMAT, "metadata '%s' is %u, which is not usable", key, v);
    *out = (int32_t)v;
    return EDGELLM_OK;
}

static edgellm_status get_f32_key(const gguf_file *f, const char *arch, const char *suffix,
                                  float *out)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    edgellm_status st = gguf_get_f32(f, key, out);
    if (st == EDGELLM_ERR_NOT_FOUND)
        return EDGELLM_OK;
    if (st == EDGELLM_OK && !isfinite(*out))
        return ellm_fail(EDGELLM_ERR_FORMAT, "metadata '%s' is not a finite number", key);
    return st;
}

static edgellm_status read_hparams(const gguf_file *f, ellm_hparams *hp)
{
    const char *a = hp->arch;
    edgellm_status st;
#define REQ(suffix, field)                                                                  \
    if ((st = get_i32_key(f, a, suffix, true, &hp->field)) != EDGELLM_OK)                   \
        return st;
#define OPT(suffix, field)                                                                  \
    if ((st = get_i32_key(f, a, suffix, false, &hp->field)) != EDGELLM_OK)                  \
        return st;
    REQ("embedding_length", n_embd)
    REQ("block_count", n_layer)
    REQ("feed_forward_length", n_ff)
    REQ("attention.head_count", n_head)
    hp->n_ctx_train = 2048;
    OPT("context_length", n_ctx_train)
    hp->n_head_kv = hp->n_head;
    OPT("attention.head_count_kv", n_head_kv)
    if (hp->n_embd % hp->n_head != 0)
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "embedding length %d is not a multiple of the head count %d", hp->n_embd,
                         hp->n_head);
    hp->head_dim = hp->n_embd / hp->n_head;
    OPT("attention.key_length", head_dim)
    int32_t value_len = hp->head_dim;
    if ((st = get_i32_key(f, a, "attention.value_length", false, &value_len)) != EDGELLM_OK)
        return st;
    if (value_len != hp->head_dim)
        return ellm_fail(EDGELLM_ERR_UNSUPPORTED,
                         "key length %d differs from value length %d; not supported",
                         hp->head_dim, value_len);
    if (hp->n_head % hp->n_head_kv != 0)
        return ellm_fail(EDGELLM_ERR_FORMAT, "head count %d is not a multiple of KV head count %d",
                         hp->n_head, hp->n_head_kv);
    hp->n_rot = hp->head_dim;
    OPT("rope.dimension_count", n_rot)
    if (hp->n_rot > hp->head_dim || hp->n_rot % 2 != 0)
        return ellm_fail(EDGELLM_ERR_FORMAT, "rope.dimension_count %d does not fit head size %d",
                         hp->n_rot, hp->head_dim);
#undef REQ
#undef OPT
    hp->rms_norm_eps = 1e-5f;
    hp->rope_freq_base = 10000.0f;
    hp->rope_freq_scale = 1.0f;
    if ((st = get_f32_key(f, a, "attention.layer_norm_rms_epsilon", &hp->rms_norm_eps)) != EDGELLM_OK ||
        (st = get_f32_key(f, a, "rope.freq_base", &hp->rope_freq_base)) != EDGELLM_OK)
        return st;
    if (hp->rms_norm_eps <= 0 || hp->rope_freq_base <= 0)
        return ellm_fail(EDGELLM_ERR_FORMAT, "rms epsilon and rope.freq_base must be positive");

    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", a);
    gguf_str type;
    st = gguf_get_str(f, key, &type);
    if (st != EDGELLM_OK && st != EDGELLM_ERR_NOT_FOUND)
        return st;
    bool has_type = st == EDGELLM_OK;
    float factor = 0;
    if ((st = get_f32_key(f, a, "rope.scaling.factor", &factor)) != EDGELLM_OK)
        return st;
    if (has_type && !gguf_str_eq(type, "none") && !gguf_str_eq(type, "linear"))
        return ellm_fail(EDGELLM_ERR_UNSUPPORTED,
                         "rope scaling type '%.*s' is not supported (supported: none, linear)",
                         (int)(type.len > 32 ? 32 : type.len), type.data);
    if ((!has_type || gguf_str_eq(type, "linear")) && factor > 0 && factor != 1.0f)
        hp->rope_freq_scale = 1.0f / factor;
    float scale_linear = 0;
    if ((st = get_f32_key(f, a, "rope.scale_linear", &scale_linear)) != EDGELLM_OK)
        return st;
    if (scale_linear > 0 && !has_type)
        hp->rope_freq_scale = 1.0f / scale_linear;
    return EDGELLM_OK;
}

edgellm_status ellm_llama_load(const gguf_file *f, ellm_model *m)
{
    ellm_hparams *hp = &m->hp;
    edgellm_status st = read_hparams(f, hp);
    if (st != EDGELLM_OK)
        return st;
    /* Llama files rotate adjacent pairs: converters permute Q/K rows into that layout. */
    hp->rope_neox = false;

    const gguf_tensor_info *embd = gguf_find_tensor(f, "token_embd.weight");
    if (!embd)
        return ellm_fail(EDGELLM_ERR_FORMAT, "tensor 'token_embd.weight' is missing");
    if (embd->n_dims != 2 || embd->ne[1] > INT32_MAX)
        return ellm_fail(EDGELLM_ERR_FORMAT, "tensor 'token_embd.weight' must be 2-D");
    hp->n_vocab = (int32_t)embd->ne[1];

    int64_t n_embd = hp->n_embd, n_vocab = hp->n_vocab, n_ff = hp->n_ff;
    int64_t q_dim = (int64_t)hp->n_head * hp->head_dim;
    int64_t kv_dim = (int64_t)hp->n_head_kv * hp->head_dim;
    ellm_weights *w = &m->w;
    if ((st = ellm_bind_tensor(f, "token_embd.weight", 2, (int64_t[]){n_embd, n_vocab}, true,
                               &w->tok_embd)) != EDGELLM_OK ||
        (st = ellm_bind_tensor(f, "output_norm.weight", 1, (int64_t[]){n_embd}, true,
                               &w->output_norm)) != EDGELLM_OK ||
        (st = ellm_bind_tensor(f, "output.weight", 2, (int64_t[]){n_embd, n_vocab}, false,
                               &w->output)) != EDGELLM_OK ||
        (st = ellm_bind_tensor(f, "rope_freqs.weight", 1, (int64_t[]){hp->n_rot / 2}, false,
                               &w->rope_freqs)) != EDGELLM_OK)
        return st;
    hp->tied_embeddings = w->output.data == NULL;
    if (hp->tied_embeddings)
        w->output = w->tok_embd;

    w->layers = calloc((size_t)hp->n_layer, sizeof *w->layers);
    m->norms = calloc((size_t)hp->n_layer, sizeof *m->norms);
    if (!w->layers || !m->norms)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for %d layers", hp->n_layer);
    for (int32_t il = 0; il < hp->n_layer; il++) {
        ellm_layer *L = &w->layers[il];
        struct {
            const char *suffix;
            int n_dims;
            int64_t ne[2];
            ellm_tensor *dst;
        } specs[] = {
            {"attn_norm", 1, {n_embd, 1}, &L->attn_norm},
            {"attn_q", 2, {n_embd, q_dim}, &L->wq},
            {"attn_k", 2, {n_embd, kv_dim}, &L->wk},
            {"attn_v", 2, {n_embd, kv_dim}, &L->wv},
            {"attn_output", 2, {q_dim, n_embd}, &L->wo},
            {"ffn_norm", 1, {n_embd, 1}, &L->ffn_norm},
            {"ffn_gate", 2, {n_embd, n_ff}, &L->ffn_gate},
            {"ffn_up", 2, {n_embd, n_ff}, &L->ffn_up},
            {"ffn_down", 2, {n_ff, n_embd}, &L->ffn_down},
        };
        for (size_t k = 0; k < sizeof specs / sizeof specs[0]; k++) {
            char name[96];
            snprintf(name, sizeof name, "blk.%d.%s.weight", (int)il, specs[k].suffix);
            st = ellm_bind_tensor(f, name, specs[k].n_dims, specs[k].ne, true, specs[k].dst);
            if (st != EDGELLM_OK)
                return st;
        }
        if ((st = ellm_tensor_to_floats(&L->attn_norm, &m->norms[il].attn_norm)) != EDGELLM_OK ||
            (st = ellm_tensor_to_floats(&L->ffn_norm, &m->norms[il].ffn_norm)) != EDGELLM_OK)
            return st;
    }
    if ((st = ellm_tensor_to_floats(&w->output_norm, &m->output_norm)) != EDGELLM_OK)
        return st;

    int32_t n_pairs = hp->n_rot / 2;
    m->rope_theta_scale = powf(hp->rope_freq_base, -2.0f / (float)hp->n_rot);
    if (w->rope_freqs.data) {
        if ((st = ellm_tensor_to_floats(&w->rope_freqs, &m->rope_factors)) != EDGELLM_OK)
            return st;
        for (int32_t i = 0; i < n_pairs; i++)
            if (!(m->rope_factors[i] > 0) || !isfinite(m->rope_factors[i]))
                return ellm_fail(EDGELLM_ERR_FORMAT,
                                 "rope_freqs.weight[%d] is %g; frequency factors must be positive",
                                 (int)i, m->rope_factors[i]);
    } else {
        m->rope_factors = malloc((size_t)n_pairs * sizeof(float));
        if (!m->rope_factors)
            return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for RoPE tables");
        for (int32_t i = 0; i < n_pairs; i++)
            m->rope_factors[i] = 1.0f;
    }
    return EDGELLM_OK;
}
