/* Synthetic models: random weights in the exact layer shapes of well-known models, carrying a
 * real vocabulary copied from a donor GGUF, so benchmarks and tests run at full size without
 * downloading weights. Weights are streamed tensor by tensor; memory stays bounded. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "convert/convert.h"
#include "convert/synth.h"
#include "core/status.h"
#include "gguf/gguf.h"
#include "quant/quant.h"

static const ellm_synth_shape presets[] = {
    /* name, n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx, rope_base, tied */
    {"tinyllama-1.1b", 2048, 22, 32, 4, 5632, 2048, 10000.0f, false},
    {"llama-3.2-1b", 2048, 16, 32, 8, 8192, 8192, 500000.0f, true},
    {"qwen2.5-0.5b", 896, 24, 14, 2, 4864, 8192, 1000000.0f, true},
    {"smollm2-360m", 960, 32, 15, 5, 2560, 8192, 100000.0f, true},
};

const ellm_synth_shape *ellm_synth_preset(const char *name)
{
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (strcasecmp(presets[i].name, name) == 0)
            return &presets[i];
    return NULL;
}

const char *ellm_synth_preset_names(void)
{
    return "tinyllama-1.1b, llama-3.2-1b, qwen2.5-0.5b, smollm2-360m";
}

typedef struct synth_tensor {
    char name[64];
    uint64_t ne[2];
    uint32_t n_dims;
    ellm_type type;
    float scale; /* standard deviation of the random values (norms: 1 +/- scale) */
    bool is_norm;
    uint64_t seed;
} synth_tensor;

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static edgellm_status fill_random(void *user, void *dst, uint64_t n_bytes)
{
    const synth_tensor *t = user;
    uint64_t row_bytes = 0;
    ellm_row_bytes(t->type, t->ne[0], &row_bytes);
    if (row_bytes * t->ne[1] != n_bytes)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "size mismatch for %s", t->name);
    float *row = malloc(t->ne[0] * sizeof *row);
    if (!row)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for a row of %s", t->name);
    uint64_t state = t->seed;
    for (uint64_t r = 0; r < t->ne[1]; r++) {
        for (uint64_t i = 0; i < t->ne[0]; i++) {
            /* Sum of two uniforms: cheap, bell-shaped, variance 1/6 per unit. */
            double u = (double)(splitmix(&state) >> 11) * 0x1.0p-53 +
                       (double)(splitmix(&state) >> 11) * 0x1.0p-53 - 1.0;
            float v = (float)(u * 2.449 * t->scale);
            row[i] = t->is_norm ? 1.0f + v : v;
        }
        ellm_quantize_row(t->type, row, (uint8_t *)dst + r * row_bytes, (int64_t)t->ne[0]);
    }
    free(row);
    return EDGELLM_OK;
}

static edgellm_status copy_vocab(gguf_writer *w, const gguf_file *donor)
{
    for (uint64_t i = 0; i < ellm_gguf_kv_count(donor); i++) {
        const gguf_kv *kv = ellm_gguf_kv_at(donor, i);
        if (kv->key.len < 10 || memcmp(kv->key.data, "tokenizer.", 10) != 0)
            continue;
        char *key = ellm_gguf_str_dup(kv->key);
        if (!key)
            return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory");
        edgellm_status st = ellm_gguf_writer_set_value(w, key, &kv->value);
        free(key);
        if (st != EDGELLM_OK)
            return st;
    }
    return EDGELLM_OK;
}

edgellm_status ellm_synth_model(const ellm_synth_shape *shape, ellm_type type,
                                const char *vocab_gguf, const char *out_path, uint64_t seed)
{
    if (type != ELLM_TYPE_F32 && type != ELLM_TYPE_F16 && type != ELLM_TYPE_Q8_0 &&
        type != ELLM_TYPE_Q4_0 && type != ELLM_TYPE_BF16)
        return ellm_fail(EDGELLM_ERR_UNSUPPORTED, "synth cannot write %s weights yet",
                         ellm_type_name(type));
    if (shape->n_embd <= 0 || shape->n_layer <= 0 || shape->n_head <= 0 || shape->n_head_kv <= 0 ||
        shape->n_ff <= 0 || shape->n_embd % shape->n_head != 0 ||
        shape->n_head % shape->n_head_kv != 0 || (shape->n_embd / shape->n_head) % 2 != 0)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "inconsistent shape: embedding %d must split into %d heads of even size, "
                         "and the heads into %d KV groups",
                         shape->n_embd, shape->n_head, shape->n_head_kv);
    gguf_file *donor = NULL;
    edgellm_status st = ellm_gguf_open(vocab_gguf, &donor);
    if (st != EDGELLM_OK)
        return ellm_fail_wrap(st, "reading the vocabulary");
    const gguf_array *tokens = NULL;
    st = ellm_gguf_get_array(donor, "tokenizer.ggml.tokens", &tokens);
    if (st != EDGELLM_OK) {
        ellm_gguf_close(donor);
        return ellm_fail(EDGELLM_ERR_FORMAT, "'%s' has no tokenizer.ggml.tokens to copy",
                         vocab_gguf);
    }
    uint64_t n_vocab = tokens->n;
    int hd = shape->n_embd / shape->n_head;
    uint64_t d = (uint64_t)shape->n_embd, kv = (uint64_t)hd * shape->n_head_kv;
    uint64_t ff = (uint64_t)shape->n_ff;
    int n_tensors = 3 + 9 * shape->n_layer;
    synth_tensor *ts = calloc((size_t)n_tensors, sizeof *ts);
    gguf_writer *w = ellm_gguf_writer_create();
    if (!ts || !w) {
        free(ts);
        ellm_gguf_writer_free(w);
        ellm_gguf_close(donor);
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory");
    }
    /* Rows that do not split into blocks (none in the presets; custom shapes may) stay F16. */
    ellm_type row_type = type;
    int n = 0;
#define ADD(nm, cols, rows, sc, norm)                                                              \
    do {                                                                                           \
        synth_tensor *t_ = &ts[n++];                                                               \
        snprintf(t_->name, sizeof t_->name, "%s", nm);                                             \
        t_->ne[0] = (cols);                                                                        \
        t_->ne[1] = (rows);                                                                        \
        t_->n_dims = (rows) == 1 ? 1 : 2;                                                          \
        t_->is_norm = norm;                                                                        \
        t_->type = norm ? ELLM_TYPE_F32 : row_type;                                                \
        const ellm_type_traits *tr_ = ellm_type_traits_of(t_->type);                               \
        if (t_->ne[0] % tr_->block_size != 0)                                                      \
            t_->type = ELLM_TYPE_F16;                                                              \
        t_->scale = sc;                                                                            \
        t_->seed = seed * 1000003u + (uint64_t)n;                                                  \
    } while (0)
    ADD("token_embd.weight", d, n_vocab, 0.02f, false);
    ADD("output_norm.weight", d, 1, 0.05f, true);
    if (!shape->tied)
        ADD("output.weight", d, n_vocab, 0.02f, false);
    float proj = 1.0f / sqrtf((float)d), down = 1.0f / sqrtf((float)ff);
    for (int l = 0; l < shape->n_layer; l++) {
        char nm[64];
#define LAYER(suffix, cols, rows, sc, norm)                                                        \
    snprintf(nm, sizeof nm, "blk.%d." suffix ".weight", l);                                        \
    ADD(nm, cols, rows, sc, norm);
        LAYER("attn_norm", d, 1, 0.05f, true)
        LAYER("attn_q", d, d, proj, false)
        LAYER("attn_k", d, kv, proj, false)
        LAYER("attn_v", d, kv, proj, false)
        LAYER("attn_output", d, d, proj, false)
        LAYER("ffn_norm", d, 1, 0.05f, true)
        LAYER("ffn_gate", d, ff, proj, false)
        LAYER("ffn_up", d, ff, proj, false)
        LAYER("ffn_down", ff, d, down, false)
#undef LAYER
    }
#undef ADD
    char name[96];
    snprintf(name, sizeof name, "synthetic %s", shape->name);
    ellm_llama_meta meta = {name,
                            type,
                            shape->n_ctx,
                            shape->n_embd,
                            shape->n_layer,
                            shape->n_ff,
                            shape->n_head,
                            shape->n_head_kv,
                            hd,
                            shape->rope_base,
                            1e-5f};
    st = ellm_write_llama_meta(w, &meta);
#define SET(call)                                                                                  \
    if (st == EDGELLM_OK)                                                                          \
        st = call;
    SET(copy_vocab(w, donor))
#undef SET
    for (int i = 0; st == EDGELLM_OK && i < n; i++)
        st = ellm_gguf_writer_add_tensor_fill(w, ts[i].name, ts[i].type, ts[i].n_dims, ts[i].ne,
                                              fill_random, &ts[i]);
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_write(w, out_path);
    ellm_gguf_writer_free(w);
    ellm_gguf_close(donor);
    free(ts);
    return st;
}
