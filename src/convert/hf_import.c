/* Hugging Face checkpoints (config.json + safetensors) to GGUF: the model class picks the row of
 * the architecture table (model/arch.c), its hyper-parameters are mapped to the `<arch>.*` keys
 * GGUF runtimes read, the tensors renamed to the GGUF convention and streamed one row at a time
 * into the writer, so memory stays bounded whatever the model size. The row's traits decide which
 * tensors and keys there are; this file knows only Hugging Face names and config keys.
 *
 * Layout facts of the GGUF convention applied here:
 *  - files of architectures with normal RoPE (llama) rotate adjacent pairs, while Hugging Face
 *    checkpoints rotate the two halves of each head: their Q/K rows are permuted (within each
 *    head, HF row half*hd/2 + i becomes GGUF row 2i + half). NeoX files keep the halves.
 *  - checkpoints of norm_plus_one architectures (Gemma) store RMSNorm weights as w for a norm
 *    that multiplies by (1 + w); GGUF files store 1 + w, so runtimes apply a plain RMSNorm. */
#define _DEFAULT_SOURCE /* madvise */
#include <errno.h>
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "convert/convert.h"
#include "convert/hf_tokenizer.h"
#include "convert/safetensors.h"
#include "core/finite.h"
#include "core/mapped_file.h"
#include "core/status.h"
#include "gguf/gguf.h"
#include "model/arch.h"
#include "quant/quant.h"

typedef struct hf_config {
    const ellm_arch *arch; /* the row of model/arch.c the model class is imported as */
    int64_t n_vocab, n_ctx, n_embd, n_layer, n_ff, n_head, n_head_kv, head_dim, n_rot;
    double rms_eps, rope_theta;
    bool tied;
    /* rope scaling */
    char rope_type[16];
    double rope_factor, low_freq_factor, high_freq_factor, attn_factor;
    int64_t rope_orig_ctx;
    float *factors_long, *factors_short; /* phi3 LongRoPE, n_rot/2 each */
    int64_t sliding_window;              /* 0: none */
    double attn_softcap, final_softcap, query_pre_attn_scalar, rope_local_base;
} hf_config;

/* ---- config.json -------------------------------------------------------------------------- */

static edgellm_status get_int(const json_t *cfg, const char *key, bool required, int64_t min,
                              int64_t max, int64_t *out)
{
    const json_t *v = json_object_get(cfg, key);
    if (!v || json_is_null(v)) {
        if (required)
            return ellm_fail(EDGELLM_ERR_FORMAT, "config.json is missing '%s'", key);
        return EDGELLM_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
        return ellm_fail(EDGELLM_ERR_FORMAT, "config.json: '%s' must be an integer in %lld..%lld",
                         key, (long long)min, (long long)max);
    *out = json_integer_value(v);
    return EDGELLM_OK;
}

static edgellm_status get_num(const json_t *cfg, const char *key, double *out)
{
    const json_t *v = json_object_get(cfg, key);
    if (!v || json_is_null(v))
        return EDGELLM_OK;
    /* Every number read here is written as a float32: one beyond its range would become inf. */
    if (!json_is_number(v) || !(fabs(json_number_value(v)) <= FLT_MAX))
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "config.json: '%s' must be a finite number within the float32 range "
                         "(magnitude at most 3.4e38)",
                         key);
    *out = json_number_value(v);
    return EDGELLM_OK;
}

static edgellm_status get_factors(const json_t *scaling, const char *key, int64_t n, float **out)
{
    const json_t *a = json_object_get(scaling, key);
    if (!json_is_array(a) || (int64_t)json_array_size(a) != n)
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "config.json: rope_scaling.%s must be an array of %lld numbers (half "
                         "the rotary dimensions)",
                         key, (long long)n);
    *out = malloc((size_t)n * sizeof **out);
    if (!*out)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory");
    for (int64_t i = 0; i < n; i++) {
        const json_t *v = json_array_get(a, (size_t)i);
        double d = json_is_number(v) ? json_number_value(v) : -1;
        if (!(d > 0) || !(d <= FLT_MAX))
            return ellm_fail(EDGELLM_ERR_FORMAT,
                             "config.json: rope_scaling.%s[%lld] must be a positive number", key,
                             (long long)i);
        (*out)[i] = (float)d;
    }
    return EDGELLM_OK;
}

static edgellm_status read_rope_scaling(const json_t *cfg, hf_config *c)
{
    const json_t *rs = json_object_get(cfg, "rope_scaling");
    snprintf(c->rope_type, sizeof c->rope_type, "none");
    c->attn_factor = 1.0;
    if (!rs || json_is_null(rs))
        return EDGELLM_OK;
    if (!json_is_object(rs))
        return ellm_fail(EDGELLM_ERR_FORMAT, "config.json: rope_scaling must be an object");
    const json_t *t = json_object_get(rs, "rope_type");
    if (!t)
        t = json_object_get(rs, "type");
    if (!json_is_string(t))
        return ellm_fail(EDGELLM_ERR_FORMAT, "config.json: rope_scaling has no rope_type");
    const char *type = json_string_value(t);
    edgellm_status st;
    c->rope_factor = 1.0;
    if ((st = get_num(rs, "factor", &c->rope_factor)) != EDGELLM_OK)
        return st;
    if (!(c->rope_factor > 0))
        return ellm_fail(EDGELLM_ERR_FORMAT, "config.json: rope_scaling.factor must be positive");
    if (!strcmp(type, "default")) {
        return EDGELLM_OK;
    } else if (!strcmp(type, "linear")) {
        snprintf(c->rope_type, sizeof c->rope_type, "linear");
    } else if (!strcmp(type, "llama3")) {
        /* Becomes per-frequency factors (rope_freqs), the GGUF form of this scaling. */
        snprintf(c->rope_type, sizeof c->rope_type, "llama3");
        c->low_freq_factor = 1.0;
        c->high_freq_factor = 4.0;
        c->rope_orig_ctx = 8192;
        if ((st = get_num(rs, "low_freq_factor", &c->low_freq_factor)) != EDGELLM_OK ||
            (st = get_num(rs, "high_freq_factor", &c->high_freq_factor)) != EDGELLM_OK ||
            (st = get_int(rs, "original_max_position_embeddings", false, 1, INT32_MAX,
                          &c->rope_orig_ctx)) != EDGELLM_OK)
            return st;
        if (!(c->high_freq_factor > c->low_freq_factor) || !(c->low_freq_factor > 0))
            return ellm_fail(EDGELLM_ERR_FORMAT,
                             "config.json: llama3 rope scaling needs high_freq_factor > "
                             "low_freq_factor > 0");
    } else if ((!strcmp(type, "longrope") || !strcmp(type, "su")) && c->arch->longrope) {
        snprintf(c->rope_type, sizeof c->rope_type, "longrope");
        c->rope_orig_ctx = c->n_ctx;
        if ((st = get_int(cfg, "original_max_position_embeddings", true, 1, INT32_MAX,
                          &c->rope_orig_ctx)) != EDGELLM_OK ||
            (st = get_factors(rs, "long_factor", c->n_rot / 2, &c->factors_long)) != EDGELLM_OK ||
            (st = get_factors(rs, "short_factor", c->n_rot / 2, &c->factors_short)) != EDGELLM_OK)
            return st;
        double scale = (double)c->n_ctx / (double)c->rope_orig_ctx;
        c->attn_factor = scale > 1.0 ? sqrt(1.0 + log(scale) / log((double)c->rope_orig_ctx)) : 1.0;
    } else {
        return ellm_fail(EDGELLM_ERR_UNSUPPORTED,
                         "config.json: rope_scaling type '%.24s' is not supported for %s "
                         "(supported: linear, llama3, and longrope for Phi-3)",
                         type, c->arch->name);
    }
    return EDGELLM_OK;
}

static edgellm_status read_config(const char *dir, hf_config *c)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = ellm_fopen_regular(path);
    if (!f)
        return ellm_fail_wrap(EDGELLM_ERR_IO, "a Hugging Face model directory needs a config.json");
    json_error_t jerr;
    json_t *cfg = json_loadf(f, JSON_REJECT_DUPLICATES, &jerr);
    fclose(f);
    if (!cfg)
        return ellm_fail(EDGELLM_ERR_FORMAT, "%s: %s", path, jerr.text);
    edgellm_status st = EDGELLM_OK;
    const json_t *archs = json_object_get(cfg, "architectures");
    const char *cls = json_is_array(archs) && json_is_string(json_array_get(archs, 0))
                          ? json_string_value(json_array_get(archs, 0))
                          : NULL;
    if (!json_is_object(cfg))
        st = ellm_fail(EDGELLM_ERR_FORMAT, "%s is not a JSON object", path);
    else if (!cls)
        st = ellm_fail(EDGELLM_ERR_FORMAT,
                       "%s has no \"architectures\" list naming the model "
                       "class",
                       path);
    else
        st = ellm_arch_find_hf(cls, &c->arch);
    if (st != EDGELLM_OK) {
        json_decref(cfg);
        return st;
    }
    const int64_t big = 1 << 24;
#define INT(key, req, min, max, field)                                                             \
    if (st == EDGELLM_OK)                                                                          \
        st = get_int(cfg, key, req, min, max, &c->field);
    INT("vocab_size", true, 1, ELLM_HF_MAX_VOCAB, n_vocab)
    INT("hidden_size", true, 1, 1 << 17, n_embd)
    INT("num_hidden_layers", true, 1, 4096, n_layer)
    INT("intermediate_size", true, 1, 1 << 20, n_ff)
    INT("num_attention_heads", true, 1, 4096, n_head)
    if (st == EDGELLM_OK)
        c->n_head_kv = c->n_head;
    INT("num_key_value_heads", false, 1, 4096, n_head_kv)
    if (st == EDGELLM_OK) {
        c->n_ctx = 2048;
        c->head_dim = c->n_embd / c->n_head;
    }
    INT("max_position_embeddings", false, 1, big * 64, n_ctx)
    INT("head_dim", false, 1, 1 << 16, head_dim)
    INT("sliding_window", false, 0, big * 64, sliding_window)
#undef INT
    if (st == EDGELLM_OK && c->n_head % c->n_head_kv != 0)
        st = ellm_fail(EDGELLM_ERR_FORMAT,
                       "config.json: num_attention_heads %lld is not a multiple of "
                       "num_key_value_heads %lld",
                       (long long)c->n_head, (long long)c->n_head_kv);
    if (st == EDGELLM_OK && !json_object_get(cfg, "head_dim") && c->n_embd % c->n_head != 0)
        st = ellm_fail(EDGELLM_ERR_FORMAT,
                       "config.json: hidden_size %lld is not a multiple of num_attention_heads "
                       "%lld (and no head_dim is given)",
                       (long long)c->n_embd, (long long)c->n_head);
    if (st == EDGELLM_OK && c->head_dim % 2 != 0)
        st = ellm_fail(EDGELLM_ERR_FORMAT, "config.json: head size %lld is odd; RoPE needs pairs",
                       (long long)c->head_dim);
    c->rms_eps = 1e-6;
    c->rope_theta = 10000.0;
    if (st == EDGELLM_OK)
        st = get_num(cfg, "rms_norm_eps", &c->rms_eps);
    if (st == EDGELLM_OK)
        st = get_num(cfg, "rope_theta", &c->rope_theta);
    if (st == EDGELLM_OK && (!(c->rms_eps > 0) || !(c->rope_theta > 0)))
        st = ellm_fail(EDGELLM_ERR_FORMAT, "config.json: rms_norm_eps and rope_theta must be "
                                           "positive");
    c->n_rot = c->head_dim;
    double partial = 1.0;
    if (st == EDGELLM_OK)
        st = get_num(cfg, "partial_rotary_factor", &partial);
    if (st == EDGELLM_OK && partial != 1.0) {
        if (!(partial > 0 && partial <= 1))
            st = ellm_fail(EDGELLM_ERR_FORMAT, "config.json: partial_rotary_factor must be in "
                                               "(0, 1]");
        c->n_rot = (int64_t)(partial * (double)c->head_dim) & ~(int64_t)1;
    }
    c->tied = c->arch->tied_output;
    const json_t *tie = json_object_get(cfg, "tie_word_embeddings");
    if (st == EDGELLM_OK && json_is_boolean(tie) && !c->tied)
        c->tied = json_is_true(tie);
    if (st == EDGELLM_OK)
        st = read_rope_scaling(cfg, c);
    c->query_pre_attn_scalar = (double)c->head_dim;
    /* Without their own base, sliding layers rotate like the others. */
    c->rope_local_base = c->arch->swa_rope_base > 0 ? c->arch->swa_rope_base : c->rope_theta;
    if (st == EDGELLM_OK)
        st = get_num(cfg, "attn_logit_softcapping", &c->attn_softcap);
    if (st == EDGELLM_OK)
        st = get_num(cfg, "final_logit_softcapping", &c->final_softcap);
    if (st == EDGELLM_OK)
        st = get_num(cfg, "query_pre_attn_scalar", &c->query_pre_attn_scalar);
    if (st == EDGELLM_OK)
        st = get_num(cfg, "rope_local_base_freq", &c->rope_local_base);
    if (st == EDGELLM_OK && (c->attn_softcap < 0 || c->final_softcap < 0 ||
                             !(c->query_pre_attn_scalar > 0) || !(c->rope_local_base > 0)))
        st = ellm_fail(EDGELLM_ERR_FORMAT, "config.json: soft-capping, query_pre_attn_scalar and "
                                           "rope_local_base_freq must be positive");
    if (st == EDGELLM_OK) {
        const json_t *act = json_object_get(cfg, "hidden_activation");
        if (!act || json_is_null(act))
            act = json_object_get(cfg, "hidden_act");
        bool gelu = c->arch->activation == ELLM_ACT_GELU_TANH;
        const char *want = gelu ? "gelu_pytorch_tanh" : "silu";
        const char *alias = c->arch->hf_act_alias;
        if (json_is_string(act) && strcmp(json_string_value(act), want) != 0 &&
            !(alias && !strcmp(json_string_value(act), alias)))
            st = ellm_fail(EDGELLM_ERR_UNSUPPORTED,
                           "config.json: activation '%.32s' is not supported for %s (needs %s)",
                           json_string_value(act), c->arch->name, want);
    }
    if (st == EDGELLM_OK) {
        int64_t pattern = c->arch->swa_pattern;
        int64_t got = pattern;
        st = get_int(cfg, "sliding_window_pattern", false, 1, 4096, &got);
        if (st == EDGELLM_OK && got != pattern)
            st = ellm_fail(EDGELLM_ERR_UNSUPPORTED,
                           "config.json: sliding_window_pattern %lld is not supported (%s uses "
                           "%lld)",
                           (long long)got, c->arch->name, (long long)pattern);
        const json_t *uses = json_object_get(cfg, "use_sliding_window");
        if (st == EDGELLM_OK && c->arch->hf_window_opt_in && json_is_true(uses))
            st = ellm_fail(EDGELLM_ERR_UNSUPPORTED,
                           "config.json: %s sliding-window attention (use_sliding_window) is "
                           "not supported",
                           c->arch->name);
        if (c->arch->hf_window_opt_in)
            c->sliding_window = 0; /* listed but unused unless use_sliding_window */
        if (st == EDGELLM_OK && c->sliding_window >= c->n_ctx && pattern == 0)
            c->sliding_window = 0; /* a window as long as the context changes nothing */
        if (st == EDGELLM_OK && pattern > 0 && c->sliding_window == 0)
            st = ellm_fail(EDGELLM_ERR_FORMAT, "config.json: %s needs sliding_window",
                           c->arch->name);
        /* Newer configs list each layer's attention; GGUF runtimes derive it from the
         * architecture's fixed pattern, so any other layout cannot be represented. */
        const json_t *types = json_object_get(cfg, "layer_types");
        for (int64_t il = 0; st == EDGELLM_OK && json_is_array(types) && il < c->n_layer; il++) {
            bool slides = c->sliding_window > 0 && (pattern == 0 || (il + 1) % pattern != 0);
            const json_t *t = json_array_get(types, (size_t)il);
            const char *want = slides ? "sliding_attention" : "full_attention";
            if (json_array_size(types) != (size_t)c->n_layer || !json_is_string(t) ||
                strcmp(json_string_value(t), want) != 0)
                st = ellm_fail(EDGELLM_ERR_UNSUPPORTED,
                               "config.json: layer_types[%lld] is not '%s'; only the standard "
                               "%s layer pattern is supported",
                               (long long)il, want, c->arch->name);
        }
    }
    json_decref(cfg);
    return st;
}

/* ---- tensor plan -------------------------------------------------------------------------- */

typedef enum transform { TR_NONE, TR_PERMUTE_HEADS, TR_ADD_ONE } transform;

typedef struct plan_tensor {
    char name[96];
    const ellm_st_tensor *src; /* NULL: from floats */
    const float *floats;
    transform tr;
    int64_t heads; /* TR_PERMUTE_HEADS */
    uint32_t n_dims;
    uint64_t ne[2]; /* GGUF order: ne[0] = columns */
    ellm_type type;
    const ellm_convert_options *o;
} plan_tensor;

typedef struct plan {
    plan_tensor *t;
    int n, cap;
    bool *used; /* per source tensor, to refuse checkpoints with tensors nothing reads */
} plan;

static edgellm_status plan_add(plan *p, const ellm_st_set *set, const hf_config *c,
                               const ellm_convert_options *o, const char *src_name,
                               const char *dst_name, int64_t rows, int64_t cols, bool required,
                               transform tr, int64_t heads)
{
    const ellm_st_tensor *s = ellm_st_find(set, src_name);
    if (!s) {
        if (required)
            return ellm_fail(EDGELLM_ERR_FORMAT,
                             "tensor '%s' is missing from the checkpoint (needed by %s)", src_name,
                             c->arch->name);
        return EDGELLM_OK;
    }
    p->used[s - set->tensors] = true;
    bool vec = rows == 0;
    if ((vec && (s->n_dims != 1 || (int64_t)s->shape[0] != cols)) ||
        (!vec && (s->n_dims != 2 || (int64_t)s->shape[0] != rows || (int64_t)s->shape[1] != cols)))
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "tensor '%s' has shape [%llu%s%llu] but config.json implies [%lld%s%lld]",
                         src_name, (unsigned long long)s->shape[0], s->n_dims > 1 ? ", " : "",
                         s->n_dims > 1 ? (unsigned long long)s->shape[1] : 0ull,
                         (long long)(vec ? cols : rows), vec ? "" : ", ",
                         (long long)(vec ? 0 : cols));
    if (s->dtype != ELLM_ST_F32 && s->dtype != ELLM_ST_F16 && s->dtype != ELLM_ST_BF16)
        return ellm_fail(EDGELLM_ERR_UNSUPPORTED,
                         "tensor '%s' has dtype %s; only F32, F16 and BF16 checkpoints are "
                         "supported",
                         src_name, ellm_st_dtype_name(s->dtype));
    if (p->n == p->cap) {
        int cap = p->cap ? p->cap * 2 : 64;
        plan_tensor *t = realloc(p->t, (size_t)cap * sizeof *t);
        if (!t)
            return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory");
        p->t = t;
        p->cap = cap;
    }
    plan_tensor *t = &p->t[p->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", dst_name);
    t->src = s;
    t->tr = tr;
    t->heads = heads;
    t->n_dims = vec ? 1 : 2;
    t->ne[0] = (uint64_t)cols;
    t->ne[1] = vec ? 1 : (uint64_t)rows;
    t->o = o;
    /* Norms, biases and other vectors stay F32; matrices take the requested type, falling back to
     * F16 when rows do not split into its blocks. */
    t->type = ELLM_TYPE_F32;
    if (!vec) {
        t->type = o->out_type;
        const ellm_type_traits *tr_ = ellm_type_traits_of(o->out_type);
        if (t->ne[0] % tr_->block_size != 0) {
            t->type = ELLM_TYPE_F16;
            if (o->on_fallback)
                o->on_fallback(o->user, t->name, o->out_type, ELLM_TYPE_F16);
        }
    }
    return EDGELLM_OK;
}

static edgellm_status plan_floats(plan *p, const char *name, const float *data, int64_t n)
{
    if (p->n == p->cap) {
        int cap = p->cap ? p->cap * 2 : 64;
        plan_tensor *t = realloc(p->t, (size_t)cap * sizeof *t);
        if (!t)
            return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory");
        p->t = t;
        p->cap = cap;
    }
    plan_tensor *t = &p->t[p->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->floats = data;
    t->n_dims = 1;
    t->ne[0] = (uint64_t)n;
    t->ne[1] = 1;
    t->type = ELLM_TYPE_F32;
    return EDGELLM_OK;
}

static edgellm_status build_plan(const ellm_st_set *set, const hf_config *c,
                                 const ellm_convert_options *o, const float *rope_freqs, plan *p)
{
    const ellm_arch *a = c->arch;
    transform norm_tr = a->norm_plus_one ? TR_ADD_ONE : TR_NONE;
    transform qk_tr = a->rope_neox ? TR_NONE : TR_PERMUTE_HEADS;
    int64_t E = c->n_embd, F = c->n_ff, hd = c->head_dim;
    int64_t q_dim = c->n_head * hd, kv_dim = c->n_head_kv * hd;
    edgellm_status st;
#define ADD(src, dst, rows, cols, req, tr, heads)                                                  \
    if ((st = plan_add(p, set, c, o, src, dst, rows, cols, req, tr, heads)) != EDGELLM_OK)         \
        return st;
    ADD("model.embed_tokens.weight", "token_embd.weight", c->n_vocab, E, true, TR_NONE, 0)
    if (rope_freqs &&
        (st = plan_floats(p, "rope_freqs.weight", rope_freqs, c->n_rot / 2)) != EDGELLM_OK)
        return st;
    if (c->factors_long &&
        ((st = plan_floats(p, "rope_factors_long.weight", c->factors_long, c->n_rot / 2)) !=
             EDGELLM_OK ||
         (st = plan_floats(p, "rope_factors_short.weight", c->factors_short, c->n_rot / 2)) !=
             EDGELLM_OK))
        return st;
    for (int64_t il = 0; il < c->n_layer; il++) {
        char s[160], d[96];
#define LAYER(hf, gg, rows, cols, req, tr, heads)                                                  \
    snprintf(s, sizeof s, "model.layers.%lld.%s", (long long)il, hf);                              \
    snprintf(d, sizeof d, "blk.%lld.%s", (long long)il, gg);                                       \
    ADD(s, d, rows, cols, req, tr, heads)
        LAYER("input_layernorm.weight", "attn_norm.weight", 0, E, true, norm_tr, 0)
        if (a->fused_qkv) {
            LAYER("self_attn.qkv_proj.weight", "attn_qkv.weight", q_dim + 2 * kv_dim, E, true,
                  TR_NONE, 0)
        } else {
            LAYER("self_attn.q_proj.weight", "attn_q.weight", q_dim, E, true, qk_tr, c->n_head)
            LAYER("self_attn.k_proj.weight", "attn_k.weight", kv_dim, E, true, qk_tr, c->n_head_kv)
            LAYER("self_attn.v_proj.weight", "attn_v.weight", kv_dim, E, true, TR_NONE, 0)
        }
        if (a->qkv_bias) {
            LAYER("self_attn.q_proj.bias", "attn_q.bias", 0, q_dim, true, TR_NONE, 0)
            LAYER("self_attn.k_proj.bias", "attn_k.bias", 0, kv_dim, true, TR_NONE, 0)
            LAYER("self_attn.v_proj.bias", "attn_v.bias", 0, kv_dim, true, TR_NONE, 0)
        }
        if (a->qk_norm) {
            LAYER("self_attn.q_norm.weight", "attn_q_norm.weight", 0, hd, true, norm_tr, 0)
            LAYER("self_attn.k_norm.weight", "attn_k_norm.weight", 0, hd, true, norm_tr, 0)
        }
        LAYER("self_attn.o_proj.weight", "attn_output.weight", E, q_dim, true, TR_NONE, 0)
        if (a->post_norms) {
            LAYER("post_attention_layernorm.weight", "post_attention_norm.weight", 0, E, true,
                  norm_tr, 0)
            LAYER("pre_feedforward_layernorm.weight", "ffn_norm.weight", 0, E, true, norm_tr, 0)
            LAYER("post_feedforward_layernorm.weight", "post_ffw_norm.weight", 0, E, true, norm_tr,
                  0)
        } else {
            LAYER("post_attention_layernorm.weight", "ffn_norm.weight", 0, E, true, norm_tr, 0)
        }
        if (a->fused_gate_up) {
            LAYER("mlp.gate_up_proj.weight", "ffn_up.weight", 2 * F, E, true, TR_NONE, 0)
        } else {
            LAYER("mlp.gate_proj.weight", "ffn_gate.weight", F, E, true, TR_NONE, 0)
            LAYER("mlp.up_proj.weight", "ffn_up.weight", F, E, true, TR_NONE, 0)
        }
        LAYER("mlp.down_proj.weight", "ffn_down.weight", E, F, true, TR_NONE, 0)
#undef LAYER
    }
    ADD("model.norm.weight", "output_norm.weight", 0, E, true, norm_tr, 0)
    if (c->tied) {
        const ellm_st_tensor *head = ellm_st_find(set, "lm_head.weight");
        if (head) /* a tied checkpoint may still carry a copy; the file keeps one */
            p->used[head - set->tensors] = true;
    } else {
        ADD("lm_head.weight", "output.weight", c->n_vocab, E, true, TR_NONE, 0)
    }
#undef ADD
    for (size_t i = 0; i < set->n_tensors; i++) {
        const char *n = set->tensors[i].name;
        size_t len = strlen(n);
        /* Precomputed RoPE tables some checkpoints carry; runtimes derive them. */
        if (len > 20 && !strcmp(n + len - 20, "rotary_emb.inv_freq"))
            continue;
        if (!p->used[i])
            return ellm_fail(EDGELLM_ERR_UNSUPPORTED,
                             "checkpoint tensor '%s' has no place in a %s model (a variant "
                             "this importer does not support, e.g. attention biases?)",
                             n, c->arch->name);
    }
    return EDGELLM_OK;
}

/* ---- streaming the rows ------------------------------------------------------------------- */

static void source_row(const ellm_st_tensor *s, uint64_t row, uint64_t cols, void *tmp, float *out)
{
    static const unsigned size[] = {[ELLM_ST_F32] = 4, [ELLM_ST_F16] = 2, [ELLM_ST_BF16] = 2};
    uint64_t bytes = cols * size[s->dtype];
    /* safetensors data need not be aligned for its dtype: copy before reading it as numbers. */
    memcpy(tmp, s->data + row * bytes, bytes);
    if (s->dtype == ELLM_ST_F32)
        memcpy(out, tmp, bytes);
    else
        ellm_dequantize_row(s->dtype == ELLM_ST_F16 ? ELLM_TYPE_F16 : ELLM_TYPE_BF16, tmp, out,
                            (int64_t)cols);
}

/* Drops the converted tensor's pages from this process (they stay in the page cache), so the
 * resident set holds one tensor of the checkpoint at a time, not every shard read so far. */
static void release_pages(const ellm_st_tensor *s)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t begin = ((uintptr_t)s->data + page - 1) & ~(page - 1);
    uintptr_t end = ((uintptr_t)s->data + s->n_bytes) & ~(page - 1);
    if (end > begin)
        madvise((void *)begin, end - begin, MADV_DONTNEED);
}

static edgellm_status fill_tensor(void *user, void *dst, uint64_t n_bytes)
{
    const plan_tensor *t = user;
    uint64_t cols = t->ne[0], rows = t->ne[1], row_bytes = 0;
    ellm_row_bytes(t->type, cols, &row_bytes);
    if (row_bytes * rows != n_bytes)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "internal size mismatch for '%s'", t->name);
    if (t->floats) {
        memcpy(dst, t->floats, n_bytes);
        return EDGELLM_OK;
    }
    float *row = malloc(cols * sizeof *row);
    void *tmp = malloc(cols * sizeof(float));
    if (!row || !tmp) {
        free(row);
        free(tmp);
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for a row of '%s'", t->name);
    }
    uint64_t hd = t->tr == TR_PERMUTE_HEADS ? rows / (uint64_t)t->heads : 0;
    for (uint64_t r = 0; r < rows; r++) {
        uint64_t src = r;
        if (t->tr == TR_PERMUTE_HEADS) {
            /* GGUF row 2i + half of a head holds HF row half * hd/2 + i of that head. */
            uint64_t head = r / hd, within = r % hd;
            src = head * hd + (within % 2) * (hd / 2) + within / 2;
        }
        source_row(t->src, src, cols, tmp, row);
        if (t->tr == TR_ADD_ONE)
            for (uint64_t i = 0; i < cols; i++)
                row[i] += 1.0f;
        int64_t bad = ellm_first_nonfinite(row, (int64_t)cols);
        if (bad >= 0) {
            bool nan = isnan(row[bad]);
            free(row);
            free(tmp);
            return ellm_fail(EDGELLM_ERR_FORMAT,
                             "'%s' holds %s at row %llu, column %lld: the checkpoint is broken "
                             "and would only compute NaN; nothing was written",
                             t->src->name, nan ? "NaN" : "an infinite value",
                             (unsigned long long)src, (long long)bad);
        }
        ellm_quantize_row(t->type, row, (uint8_t *)dst + r * row_bytes, (int64_t)cols);
    }
    free(row);
    free(tmp);
    release_pages(t->src);
    return EDGELLM_OK;
}

/* ---- metadata ----------------------------------------------------------------------------- */

/* Meta's llama3 RoPE scaling as per-frequency divisors (the GGUF rope_freqs tensor): long
 * wavelengths are divided by factor, short ones kept, the band between interpolated smoothly. */
static float *llama3_rope_freqs(const hf_config *c)
{
    int64_t n = c->n_rot / 2;
    float *f = malloc((size_t)n * sizeof *f);
    if (!f)
        return NULL;
    double low_wavelen = (double)c->rope_orig_ctx / c->low_freq_factor;
    double high_wavelen = (double)c->rope_orig_ctx / c->high_freq_factor;
    for (int64_t i = 0; i < n; i++) {
        double freq = 1.0 / pow(c->rope_theta, (double)(2 * i) / (double)c->n_rot);
        double wavelen = 2.0 * 3.14159265358979323846 / freq;
        if (wavelen < high_wavelen) {
            f[i] = 1.0f;
        } else if (wavelen > low_wavelen) {
            f[i] = (float)c->rope_factor;
        } else {
            double smooth = ((double)c->rope_orig_ctx / wavelen - c->low_freq_factor) /
                            (c->high_freq_factor - c->low_freq_factor);
            f[i] = (float)(1.0 / ((1.0 - smooth) / c->rope_factor + smooth));
        }
    }
    return f;
}

static edgellm_status write_meta(gguf_writer *w, const hf_config *c, const char *name,
                                 ellm_type out_type)
{
    edgellm_status st = EDGELLM_OK;
    char key[128];
#define SET(call)                                                                                  \
    if (st == EDGELLM_OK)                                                                          \
        st = call;
#define U32(suffix, v)                                                                             \
    snprintf(key, sizeof key, "%s.%s", c->arch->name, suffix);                                     \
    SET(ellm_gguf_writer_set_u32(w, key, (uint32_t)(v)))
#define F32(suffix, v)                                                                             \
    snprintf(key, sizeof key, "%s.%s", c->arch->name, suffix);                                     \
    SET(ellm_gguf_writer_set_f32(w, key, (float)(v)))
    SET(ellm_gguf_writer_set_str(w, "general.architecture", c->arch->name))
    SET(ellm_gguf_writer_set_str(w, "general.name", name))
    SET(ellm_gguf_writer_set_u32(w, "general.file_type", ellm_gguf_file_type(out_type)))
    if (out_type == ELLM_TYPE_Q8_0)
        SET(ellm_gguf_writer_set_u32(w, "general.quantization_version", 2))
    U32("context_length", c->n_ctx)
    U32("embedding_length", c->n_embd)
    U32("block_count", c->n_layer)
    U32("feed_forward_length", c->n_ff)
    U32("attention.head_count", c->n_head)
    U32("attention.head_count_kv", c->n_head_kv)
    U32("attention.key_length", c->head_dim)
    U32("attention.value_length", c->head_dim)
    U32("rope.dimension_count", c->n_rot)
    F32("attention.layer_norm_rms_epsilon", c->rms_eps)
    F32("rope.freq_base", c->rope_theta)
    if (c->sliding_window > 0) {
        U32("attention.sliding_window", c->sliding_window)
    }
    if (!strcmp(c->rope_type, "linear")) {
        snprintf(key, sizeof key, "%s.rope.scaling.type", c->arch->name);
        SET(ellm_gguf_writer_set_str(w, key, "linear"))
        F32("rope.scaling.factor", c->rope_factor)
    }
    if (!strcmp(c->rope_type, "longrope")) {
        F32("rope.scaling.attn_factor", c->attn_factor)
        U32("rope.scaling.original_context_length", c->rope_orig_ctx)
    }
    if (c->attn_softcap > 0) {
        F32("attn_logit_softcapping", c->attn_softcap)
    }
    if (c->final_softcap > 0) {
        F32("final_logit_softcapping", c->final_softcap)
    }
    if (c->arch->swa_rope_base > 0) {
        F32("rope.freq_base_swa", c->rope_local_base)
    }
    if (c->arch->query_scalar_wide_layers && c->query_pre_attn_scalar != (double)c->head_dim) {
        /* Runtimes that only know the published sizes infer this from the layer count; the
         * explicit multiplier keeps other shapes right. */
        F32("attention.scale", 1.0 / sqrt(c->query_pre_attn_scalar))
    }
#undef U32
#undef F32
#undef SET
    return st;
}

/* The vocabulary of tokenizer.json, when the folder has one; it must cover the embedding. */
static edgellm_status write_vocab(gguf_writer *w, const char *dir, const hf_config *c,
                                  bool *written)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *f = ellm_fopen_regular(path);
    *written = f != NULL;
    if (!f && errno != ENOENT)
        return EDGELLM_ERR_IO;
    if (!f) {
        ellm_clear_error();
        return EDGELLM_OK;
    }
    fclose(f);
    int32_t n = 0;
    edgellm_status st = ellm_hf_write_tokenizer(w, dir, &n);
    if (st == EDGELLM_OK && n != c->n_vocab)
        st = ellm_fail(EDGELLM_ERR_FORMAT,
                       "tokenizer.json has %d tokens but the embedding (vocab_size) has %lld "
                       "rows; tokenizer and weights do not belong together",
                       (int)n, (long long)c->n_vocab);
    return st;
}

edgellm_status ellm_convert_hf(const char *dir, const char *out_path,
                               const ellm_convert_options *options, bool *with_vocab)
{
    bool vocab = false;
    if (with_vocab)
        *with_vocab = false;
    ellm_convert_options o = {.out_type = ELLM_TYPE_F32};
    if (options)
        o = *options;
    if (o.out_type != ELLM_TYPE_F32 && o.out_type != ELLM_TYPE_F16 &&
        o.out_type != ELLM_TYPE_BF16 && o.out_type != ELLM_TYPE_Q8_0)
        return ellm_fail(EDGELLM_ERR_UNSUPPORTED,
                         "output type %s is not supported here (f32, f16, bf16, q8_0)",
                         ellm_type_name(o.out_type));
    hf_config c = {0};
    edgellm_status st = read_config(dir, &c);
    ellm_st_set set = {0};
    plan p = {0};
    float *rope_freqs = NULL;
    gguf_writer *w = NULL;
    if (st == EDGELLM_OK)
        st = ellm_st_open_dir(dir, &set);
    if (st == EDGELLM_OK && !strcmp(c.rope_type, "llama3") && !(rope_freqs = llama3_rope_freqs(&c)))
        st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory");
    if (st == EDGELLM_OK && rope_freqs && ellm_first_nonfinite(rope_freqs, c.n_rot / 2) >= 0)
        st = ellm_fail(EDGELLM_ERR_FORMAT,
                       "config.json: rope_theta and rope_scaling give non-finite llama3 RoPE "
                       "factors; the configuration is broken");
    if (st == EDGELLM_OK && !(p.used = calloc(set.n_tensors + 1, sizeof *p.used)))
        st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory");
    if (st == EDGELLM_OK)
        st = build_plan(&set, &c, &o, rope_freqs, &p);
    if (st == EDGELLM_OK && !(w = ellm_gguf_writer_create()))
        st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the GGUF writer");
    if (st == EDGELLM_OK) {
        char name[256];
        if (o.name) {
            snprintf(name, sizeof name, "%s", o.name);
        } else {
            size_t len = strlen(dir);
            while (len > 1 && dir[len - 1] == '/')
                len--;
            size_t start = len;
            while (start > 0 && dir[start - 1] != '/')
                start--;
            snprintf(name, sizeof name, "%.*s", (int)(len - start), dir + start);
        }
        st = write_meta(w, &c, name, o.out_type);
    }
    if (st == EDGELLM_OK)
        st = write_vocab(w, dir, &c, &vocab);
    for (int i = 0; st == EDGELLM_OK && i < p.n; i++)
        st = ellm_gguf_writer_add_tensor_fill(w, p.t[i].name, p.t[i].type, p.t[i].n_dims, p.t[i].ne,
                                              fill_tensor, &p.t[i]);
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_write(w, out_path);
    if (st == EDGELLM_OK && with_vocab)
        *with_vocab = vocab;
    ellm_gguf_writer_free(w);
    free(p.t);
    free(p.used);
    free(rope_freqs);
    free(c.factors_long);
    free(c.factors_short);
    ellm_st_close(&set);
    return st;
}
