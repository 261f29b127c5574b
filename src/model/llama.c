/* The llama-family decoder every row of the architecture table (model/arch.c) describes:
 * hyper-parameters from `<arch>.*` metadata, the row's traits, and the tensor set they imply.
 * The keys are those GGUF writers use for each architecture. */
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
    edgellm_status st = ellm_gguf_get_u32(f, key, &v);
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

/* Head and FFN sizes may differ between layers (pruned models): the key then holds an array with
 * one positive count per layer. Element `layer` of it, or with layer -1 the largest (what the
 * state's buffers are sized for); a plain number is every layer's count. */
static edgellm_status get_count_key(const gguf_file *f, const char *arch, const char *suffix,
                                    bool required, int32_t layer, int32_t *out)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    const gguf_array *arr = NULL;
    if (ellm_gguf_get_array(f, key, &arr) != EDGELLM_OK)
        return get_i32_key(f, arch, suffix, required, out);
    int64_t best = 0, v = 0;
    for (uint64_t i = 0; i < arr->n; i++) {
        if (!ellm_gguf_array_get_i64(arr, i, &v) || v <= 0 || v > (1 << 30))
            return ellm_fail(EDGELLM_ERR_FORMAT,
                             "metadata '%s' element %llu is not a usable count (a positive "
                             "integer)",
                             key, (unsigned long long)i);
        if (layer < 0 ? v > best : (int64_t)i == layer)
            best = v;
    }
    if (best == 0)
        return ellm_fail(EDGELLM_ERR_FORMAT, "metadata '%s' has %llu per-layer entries, too few",
                         key, (unsigned long long)arr->n);
    *out = (int32_t)best;
    return EDGELLM_OK;
}

static edgellm_status get_f32_key(const gguf_file *f, const char *arch, const char *suffix,
                                  float *out)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    edgellm_status st = ellm_gguf_get_f32(f, key, out);
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
#define REQ(suffix, field)                                                                         \
    if ((st = get_i32_key(f, a, suffix, true, &hp->field)) != EDGELLM_OK)                          \
        return st;
#define OPT(suffix, field)                                                                         \
    if ((st = get_i32_key(f, a, suffix, false, &hp->field)) != EDGELLM_OK)                         \
        return st;
#define COUNT(suffix, field, required)                                                             \
    if ((st = get_count_key(f, a, suffix, required, -1, &hp->field)) != EDGELLM_OK)                \
        return st;
    REQ("embedding_length", n_embd)
    REQ("block_count", n_layer)
    COUNT("feed_forward_length", n_ff, true)
    COUNT("attention.head_count", n_head, true)
    hp->n_ctx_train = 2048;
    OPT("context_length", n_ctx_train)
    hp->n_head_kv = hp->n_head;
    COUNT("attention.head_count_kv", n_head_kv, false)
#undef COUNT
    hp->head_dim = 0;
    OPT("attention.key_length", head_dim)
    if (!hp->head_dim && hp->n_embd % hp->n_head != 0)
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "embedding length %d is not a multiple of the head count %d", hp->n_embd,
                         hp->n_head);
    if (!hp->head_dim)
        hp->head_dim = hp->n_embd / hp->n_head;
    int32_t value_len = hp->head_dim;
    if ((st = get_i32_key(f, a, "attention.value_length", false, &value_len)) != EDGELLM_OK)
        return st;
    if (value_len != hp->head_dim)
        return ellm_fail(EDGELLM_ERR_UNSUPPORTED,
                         "key length %d differs from value length %d; not supported", hp->head_dim,
                         value_len);
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
    if ((st = get_f32_key(f, a, "attention.layer_norm_rms_epsilon", &hp->rms_norm_eps)) !=
            EDGELLM_OK ||
        (st = get_f32_key(f, a, "rope.freq_base", &hp->rope_freq_base)) != EDGELLM_OK)
        return st;
    if (hp->rms_norm_eps <= 0 || hp->rope_freq_base <= 0)
        return ellm_fail(EDGELLM_ERR_FORMAT, "rms epsilon and rope.freq_base must be positive");

    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", a);
    gguf_str type;
    st = ellm_gguf_get_str(f, key, &type);
    if (st != EDGELLM_OK && st != EDGELLM_ERR_NOT_FOUND)
        return st;
    bool has_type = st == EDGELLM_OK;
    float factor = 0;
    if ((st = get_f32_key(f, a, "rope.scaling.factor", &factor)) != EDGELLM_OK)
        return st;
    if (has_type && !ellm_gguf_str_eq(type, "none") && !ellm_gguf_str_eq(type, "linear"))
        return ellm_fail(EDGELLM_ERR_UNSUPPORTED,
                         "rope scaling type '%.*s' is not supported (supported: none, linear)",
                         (int)(type.len > 32 ? 32 : type.len), type.data);
    if ((!has_type || ellm_gguf_str_eq(type, "linear")) && factor > 0 && factor != 1.0f)
        hp->rope_freq_scale = 1.0f / factor;
    float scale_linear = 0;
    if ((st = get_f32_key(f, a, "rope.scale_linear", &scale_linear)) != EDGELLM_OK)
        return st;
    if (scale_linear > 0 && !has_type)
        hp->rope_freq_scale = 1.0f / scale_linear;
    return EDGELLM_OK;
}

/* The architecture's traits (its row of model/arch.c) and the hyper-parameters only some
 * architectures have. */
static edgellm_status read_variant(const gguf_file *f, const ellm_arch *arch, ellm_hparams *hp)
{
    const char *a = hp->arch;
    hp->rope_neox = arch->rope_neox;
    hp->qk_norm = arch->qk_norm;
    hp->post_norms = arch->post_norms;
    hp->gelu_ffn = arch->activation == ELLM_ACT_GELU_TANH;
    hp->fused_qkv = arch->fused_qkv;
    hp->fused_gate_up = arch->fused_gate_up;
    hp->embd_scale = arch->embd_scale ? sqrtf((float)hp->n_embd) : 0.0f;
    hp->attn_scale = 1.0f / sqrtf((float)hp->head_dim);
    /* Files carry no key for query_pre_attn_scalar, so the published shapes decide, unless the
     * file gives attention.scale. */
    if (arch->query_scalar_wide_layers && hp->n_layer == arch->query_scalar_wide_layers)
        hp->attn_scale = 1.0f / sqrtf((float)(hp->n_embd / hp->n_head));
    edgellm_status st;
    if ((st = get_f32_key(f, a, "attention.scale", &hp->attn_scale)) != EDGELLM_OK ||
        (st = get_f32_key(f, a, "attn_logit_softcapping", &hp->attn_softcap)) != EDGELLM_OK ||
        (st = get_f32_key(f, a, "final_logit_softcapping", &hp->final_softcap)) != EDGELLM_OK ||
        (st = get_i32_key(f, a, "attention.sliding_window", arch->swa_pattern > 0,
                          &hp->sliding_window)) != EDGELLM_OK)
        return st;
    if (!(hp->attn_scale > 0) || hp->attn_softcap < 0 || hp->final_softcap < 0)
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "attention.scale must be positive and soft-capping values not negative");
    if (hp->attn_scale > 1e6f)
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "attention.scale %g overflows the attention scores (expected about "
                         "1/sqrt(head size), at most 1e6)",
                         hp->attn_scale);
    hp->swa_pattern = arch->swa_pattern;
    hp->rope_freq_base_swa = hp->rope_freq_base;
    if (arch->swa_rope_base > 0) {
        hp->rope_freq_base_swa = arch->swa_rope_base;
        if ((st = get_f32_key(f, a, "rope.freq_base_swa", &hp->rope_freq_base_swa)) != EDGELLM_OK)
            return st;
        if (!(hp->rope_freq_base_swa > 0))
            return ellm_fail(EDGELLM_ERR_FORMAT, "rope.freq_base_swa must be positive");
    }
    hp->rope_attn_factor = 1.0f;
    hp->n_ctx_orig = hp->n_ctx_train;
    if (arch->longrope) {
        if ((st = get_f32_key(f, a, "rope.scaling.attn_factor", &hp->rope_attn_factor)) !=
                EDGELLM_OK ||
            (st = get_i32_key(f, a, "rope.scaling.original_context_length", false,
                              &hp->n_ctx_orig)) != EDGELLM_OK)
            return st;
        if (!(hp->rope_attn_factor > 0))
            return ellm_fail(EDGELLM_ERR_FORMAT, "rope.scaling.attn_factor must be positive");
    }
    return EDGELLM_OK;
}

static edgellm_status factors_from(const ellm_tensor *t, int32_t n, const char *name, float **out)
{
    edgellm_status st = ellm_tensor_to_floats(t, out);
    if (st != EDGELLM_OK)
        return st;
    for (int32_t i = 0; i < n; i++)
        if (!((*out)[i] > 0) || !isfinite((*out)[i]))
            return ellm_fail(EDGELLM_ERR_FORMAT, "%s[%d] is %g; frequency factors must be positive",
                             name, (int)i, (*out)[i]);
    return EDGELLM_OK;
}

/* RoPE turns position p of pair i into the angle freq_scale * (p * theta_scale^i / factor_i), in
 * floats. Bases, scales or factors so small or large that this overflows at a position the
 * context can reach make every attention score NaN, so such files are refused at load. */
static edgellm_status check_rope_angles(const ellm_hparams *hp, const ellm_model *m)
{
    const double limit = 1e38; /* below FLT_MAX with room for the float rounding */
    const float *tables[2] = {m->rope_factors, m->rope_factors_long};
    const float scales[2] = {m->rope_theta_scale, m->rope_theta_scale_swa};
    double last_pos = hp->n_ctx_train > 1 ? hp->n_ctx_train - 1 : 1;
    if (!isfinite(hp->rope_freq_scale) || !(hp->rope_freq_scale > 0))
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "the RoPE frequency scale is %g (1 / rope.scaling.factor or "
                         "rope.scale_linear); it must be a positive finite number",
                         hp->rope_freq_scale);
    for (int s = 0; s < 2; s++)
        for (int t = 0; t < 2; t++) {
            if (!tables[t])
                continue;
            double pos = last_pos; /* theta_base of pair i is pos * theta_scale^i */
            for (int32_t i = 0; i < hp->n_rot / 2; i++, pos *= scales[s]) {
                double angle = hp->rope_freq_scale * (pos / tables[t][i]);
                if (!(pos < limit) || !(angle < limit))
                    return ellm_fail(EDGELLM_ERR_FORMAT,
                                     "RoPE overflows: with rope.freq_base %g, frequency scale %g "
                                     "and factor %g the angle of rotary pair %d at position %.0f "
                                     "is not a finite float; the hyper-parameters are broken",
                                     s ? hp->rope_freq_base_swa : hp->rope_freq_base,
                                     hp->rope_freq_scale, tables[t][i], (int)i, last_pos);
            }
        }
    /* Both queries and keys are multiplied by it, so scores grow with its square. */
    if (!(hp->rope_attn_factor <= 1e6f))
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "rope.scaling.attn_factor %g overflows the attention scores (expected "
                         "about 1, at most 1e6)",
                         hp->rope_attn_factor);
    return EDGELLM_OK;
}

/* Every per-layer tensor (blk.*) of the file must have been bound: one that is not belongs to a
 * feature this loader does not implement (biases, extra norms of another variant), and ignoring
 * it would compute a different model. Other extra tensors are left alone, as before. */
static edgellm_status check_all_bound(const gguf_file *f, const ellm_model *m)
{
    const ellm_weights *w = &m->w;
    uint64_t n = ellm_gguf_tensor_count(f);
    for (uint64_t i = 0; i < n; i++) {
        const gguf_tensor_info *t = ellm_gguf_tensor_at(f, i);
        if (t->n_bytes == 0 || t->name.len < 4 || memcmp(t->name.data, "blk.", 4) != 0)
            continue;
        bool found = false;
        for (int32_t il = 0; !found && il < m->hp.n_layer; il++) {
            const ellm_layer *L = &w->layers[il];
            const ellm_tensor *ts[] = {
                &L->attn_norm,    &L->wq,          &L->wk,          &L->wv,
                &L->wo,           &L->ffn_norm,    &L->ffn_gate,    &L->ffn_up,
                &L->ffn_down,     &L->bq,          &L->bk,          &L->bv,
                &L->wqkv,         &L->attn_q_norm, &L->attn_k_norm, &L->post_attn_norm,
                &L->post_ffw_norm};
            for (size_t k = 0; !found && k < sizeof ts / sizeof ts[0]; k++)
                found = t->data == ts[k]->data;
        }
        if (!found)
            return ellm_fail(EDGELLM_ERR_UNSUPPORTED,
                             "tensor '%.*s' belongs to a feature of this %s model that is not "
                             "supported",
                             (int)(t->name.len > 64 ? 64 : t->name.len), t->name.data, m->hp.arch);
    }
    return EDGELLM_OK;
}

edgellm_status ellm_llama_load(const gguf_file *f, ellm_model *m)
{
    ellm_hparams *hp = &m->hp;
    edgellm_status st = read_hparams(f, hp);
    if (st == EDGELLM_OK)
        st = read_variant(f, m->arch, hp);
    if (st != EDGELLM_OK)
        return st;

    const gguf_tensor_info *embd = ellm_gguf_find_tensor(f, "token_embd.weight");
    if (!embd)
        return ellm_fail(EDGELLM_ERR_FORMAT, "tensor 'token_embd.weight' is missing");
    if (embd->n_dims != 2 || embd->ne[1] > INT32_MAX)
        return ellm_fail(EDGELLM_ERR_FORMAT, "tensor 'token_embd.weight' must be 2-D");
    hp->n_vocab = (int32_t)embd->ne[1];

    int64_t n_embd = hp->n_embd, n_vocab = hp->n_vocab, n_ff = hp->n_ff, hd = hp->head_dim;
    int64_t q_dim = (int64_t)hp->n_head * hp->head_dim;
    int64_t kv_dim = (int64_t)hp->n_head_kv * hp->head_dim;
    int64_t n_pairs64 = hp->n_rot / 2;
    ellm_weights *w = &m->w;
    if ((st = ellm_bind_tensor(f, "token_embd.weight", 2, (int64_t[]){n_embd, n_vocab}, true,
                               &w->tok_embd)) != EDGELLM_OK ||
        (st = ellm_bind_tensor(f, "output_norm.weight", 1, (int64_t[]){n_embd}, true,
                               &w->output_norm)) != EDGELLM_OK ||
        (st = ellm_bind_tensor(f, "output.weight", 2, (int64_t[]){n_embd, n_vocab}, false,
                               &w->output)) != EDGELLM_OK ||
        (st = ellm_bind_tensor(f, "rope_freqs.weight", 1, (int64_t[]){n_pairs64}, false,
                               &w->rope_freqs)) != EDGELLM_OK)
        return st;
    hp->tied_embeddings = w->output.data == NULL;
    if (hp->tied_embeddings)
        w->output = w->tok_embd;

    w->layers = calloc((size_t)hp->n_layer, sizeof *w->layers);
    m->norms = calloc((size_t)hp->n_layer, sizeof *m->norms);
    m->layer_hp = calloc((size_t)hp->n_layer, sizeof *m->layer_hp);
    if (!w->layers || !m->norms || !m->layer_hp)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for %d layers", hp->n_layer);
    for (int32_t il = 0; il < hp->n_layer; il++) {
        ellm_layer *L = &w->layers[il];
        ellm_layer_norms *N = &m->norms[il];
        bool split_qkv = !hp->fused_qkv, gate = !hp->fused_gate_up;
        ellm_hparams *lh = &m->layer_hp[il];
        *lh = *hp;
        lh->n_head_kv = 0;
        if ((st = get_count_key(f, hp->arch, "feed_forward_length", true, il, &lh->n_ff)) !=
                EDGELLM_OK ||
            (st = get_count_key(f, hp->arch, "attention.head_count", true, il, &lh->n_head)) !=
                EDGELLM_OK ||
            (st = get_count_key(f, hp->arch, "attention.head_count_kv", false, il,
                                &lh->n_head_kv)) != EDGELLM_OK)
            return st;
        if (!lh->n_head_kv)
            lh->n_head_kv = lh->n_head;
        if (lh->n_head % lh->n_head_kv != 0)
            return ellm_fail(EDGELLM_ERR_FORMAT,
                             "layer %d: head count %d is not a multiple of KV head count %d",
                             (int)il, lh->n_head, lh->n_head_kv);
        n_ff = lh->n_ff;
        q_dim = (int64_t)lh->n_head * hd;
        kv_dim = (int64_t)lh->n_head_kv * hd;
        struct {
            const char *suffix;
            int n_dims;
            int64_t ne[2];
            ellm_tensor *dst;
            bool required, wanted;
            float **floats; /* vectors used as float arrays */
        } specs[] = {
            {"attn_norm.weight", 1, {n_embd, 1}, &L->attn_norm, true, true, &N->attn_norm},
            {"attn_q.weight", 2, {n_embd, q_dim}, &L->wq, true, split_qkv, NULL},
            {"attn_k.weight", 2, {n_embd, kv_dim}, &L->wk, true, split_qkv, NULL},
            {"attn_v.weight", 2, {n_embd, kv_dim}, &L->wv, true, split_qkv, NULL},
            {"attn_qkv.weight", 2, {n_embd, q_dim + 2 * kv_dim}, &L->wqkv, true, !split_qkv, NULL},
            {"attn_q.bias", 1, {q_dim, 1}, &L->bq, false, split_qkv, &N->bq},
            {"attn_k.bias", 1, {kv_dim, 1}, &L->bk, false, split_qkv, &N->bk},
            {"attn_v.bias", 1, {kv_dim, 1}, &L->bv, false, split_qkv, &N->bv},
            {"attn_q_norm.weight", 1, {hd, 1}, &L->attn_q_norm, true, hp->qk_norm, &N->q_norm},
            {"attn_k_norm.weight", 1, {hd, 1}, &L->attn_k_norm, true, hp->qk_norm, &N->k_norm},
            {"attn_output.weight", 2, {q_dim, n_embd}, &L->wo, true, true, NULL},
            {"post_attention_norm.weight",
             1,
             {n_embd, 1},
             &L->post_attn_norm,
             true,
             hp->post_norms,
             &N->post_attn},
            {"ffn_norm.weight", 1, {n_embd, 1}, &L->ffn_norm, true, true, &N->ffn_norm},
            {"ffn_gate.weight", 2, {n_embd, n_ff}, &L->ffn_gate, true, gate, NULL},
            {"ffn_up.weight", 2, {n_embd, gate ? n_ff : 2 * n_ff}, &L->ffn_up, true, true, NULL},
            {"ffn_down.weight", 2, {n_ff, n_embd}, &L->ffn_down, true, true, NULL},
            {"post_ffw_norm.weight",
             1,
             {n_embd, 1},
             &L->post_ffw_norm,
             true,
             hp->post_norms,
             &N->post_ffw},
        };
        for (size_t k = 0; k < sizeof specs / sizeof specs[0]; k++) {
            if (!specs[k].wanted)
                continue;
            char name[96];
            snprintf(name, sizeof name, "blk.%d.%s", (int)il, specs[k].suffix);
            st = ellm_bind_tensor(f, name, specs[k].n_dims, specs[k].ne, specs[k].required,
                                  specs[k].dst);
            if (st == EDGELLM_OK && specs[k].floats && specs[k].dst->data)
                st = ellm_tensor_to_floats(specs[k].dst, specs[k].floats);
            if (st != EDGELLM_OK)
                return st;
        }
    }
    if ((st = ellm_tensor_to_floats(&w->output_norm, &m->output_norm)) != EDGELLM_OK)
        return st;

    int32_t n_pairs = hp->n_rot / 2;
    m->rope_theta_scale = powf(hp->rope_freq_base, -2.0f / (float)hp->n_rot);
    m->rope_theta_scale_swa = powf(hp->rope_freq_base_swa, -2.0f / (float)hp->n_rot);
    ellm_tensor f_long = {0}, f_short = {0};
    if (m->arch->longrope &&
        ((st = ellm_bind_tensor(f, "rope_factors_long.weight", 1, (int64_t[]){n_pairs64}, false,
                                &f_long)) != EDGELLM_OK ||
         (st = ellm_bind_tensor(f, "rope_factors_short.weight", 1, (int64_t[]){n_pairs64}, false,
                                &f_short)) != EDGELLM_OK))
        return st;
    if (f_long.data && (st = factors_from(&f_long, n_pairs, "rope_factors_long.weight",
                                          &m->rope_factors_long)) != EDGELLM_OK)
        return st;
    if (w->rope_freqs.data || f_short.data) {
        const ellm_tensor *t = w->rope_freqs.data ? &w->rope_freqs : &f_short;
        if ((st = factors_from(
                 t, n_pairs, w->rope_freqs.data ? "rope_freqs.weight" : "rope_factors_short.weight",
                 &m->rope_factors)) != EDGELLM_OK)
            return st;
    } else {
        m->rope_factors = malloc((size_t)n_pairs * sizeof(float));
        if (!m->rope_factors)
            return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for RoPE tables");
        for (int32_t i = 0; i < n_pairs; i++)
            m->rope_factors[i] = 1.0f;
    }
    if ((st = check_rope_angles(hp, m)) != EDGELLM_OK)
        return st;
    return check_all_bound(f, m);
}
