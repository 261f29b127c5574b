/* Re-quantizing a GGUF model: every 2-D weight is converted to the target type (through float),
 * with the usual per-tensor choices, and every metadata key is carried over. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "convert/convert.h"
#include "core/status.h"
#include "core/threadpool.h"
#include "gguf/gguf.h"
#include "quant/quant.h"

typedef struct requant {
    const gguf_tensor_info *src;
    ellm_type type;
    const ellm_quantize_options *options;
    int index, total;
    ellm_threadpool *pool;
} requant;

typedef struct requant_rows {
    const requant *r;
    uint8_t *dst;
    uint64_t n_rows, src_rb, dst_rb;
    float *rows; /* one float row per thread */
} requant_rows;

/* Rows are independent, so threads take interleaved rows; the bytes do not depend on the split. */
static void requantize_rows(void *arg, int ith, int nth)
{
    requant_rows *j = arg;
    const gguf_tensor_info *t = j->r->src;
    float *row = j->rows + (size_t)ith * t->ne[0];
    for (uint64_t i = (uint64_t)ith; i < j->n_rows; i += (uint64_t)nth) {
        ellm_dequantize_row((ellm_type)t->type, (const uint8_t *)t->data + i * j->src_rb, row,
                            (int64_t)t->ne[0]);
        ellm_quantize_row(j->r->type, row, j->dst + i * j->dst_rb, (int64_t)t->ne[0]);
    }
}

static edgellm_status fill_requantized(void *user, void *dst, uint64_t n_bytes)
{
    const requant *r = user;
    const gguf_tensor_info *t = r->src;
    requant_rows j = {.r = r, .dst = dst, .n_rows = t->n_elements / t->ne[0]};
    ellm_row_bytes(t->type, t->ne[0], &j.src_rb);
    ellm_row_bytes(r->type, t->ne[0], &j.dst_rb);
    if (j.dst_rb * j.n_rows != n_bytes)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "internal size mismatch");
    int nth = r->pool ? ellm_threadpool_size(r->pool) : 1;
    j.rows = malloc((size_t)nth * t->ne[0] * sizeof *j.rows);
    if (!j.rows)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for a row");
    ellm_threadpool_run(r->pool, requantize_rows, &j);
    free(j.rows);
    if (r->options->on_progress)
        r->options->on_progress(r->options->user, r->index + 1, r->total);
    return EDGELLM_OK;
}

static bool name_is(gguf_str s, const char *name) { return gguf_str_eq(s, name); }

static const ellm_quant_recipe k_recipes[] = {
    {"Q4_K_S", ELLM_TYPE_Q4_K, ELLM_MIX_K_S, 14}, {"Q4_K_M", ELLM_TYPE_Q4_K, ELLM_MIX_K_M, 15},
    {"Q5_K_S", ELLM_TYPE_Q5_K, ELLM_MIX_K_S, 16}, {"Q5_K_M", ELLM_TYPE_Q5_K, ELLM_MIX_K_M, 17},
    {"Q6_K", ELLM_TYPE_Q6_K, ELLM_MIX_PLAIN, 18},  {"Q4_K", ELLM_TYPE_Q4_K, ELLM_MIX_K_M, 15},
    {"Q5_K", ELLM_TYPE_Q5_K, ELLM_MIX_K_M, 17},
};

const char *ellm_quant_recipe_names(void)
{
    return "q4_k_s, q4_k_m, q5_k_s, q5_k_m, q6_k, q8_0, q4_0, f16, bf16, f32";
}

const ellm_quant_recipe *ellm_quant_recipe_find(const char *name, ellm_quant_recipe *scratch)
{
    for (size_t i = 0; i < sizeof k_recipes / sizeof k_recipes[0]; i++)
        if (strcasecmp(k_recipes[i].name, name) == 0)
            return &k_recipes[i];
    ellm_type t;
    /* Q8_K is an activation format, never stored in files. */
    if (!ellm_type_from_name(name, &t) || t == ELLM_TYPE_Q8_K || !ellm_type_supported(t))
        return NULL;
    *scratch = (ellm_quant_recipe){ellm_type_name(t), t, ELLM_MIX_PLAIN, ellm_gguf_file_type(t)};
    return scratch;
}

/* The layer a tensor belongs to ("blk.N."), or -1. */
static int layer_of(gguf_str name)
{
    if (name.len < 5 || memcmp(name.data, "blk.", 4) != 0)
        return -1;
    int n = 0;
    size_t i = 4;
    for (; i < name.len && name.data[i] >= '0' && name.data[i] <= '9' && n < 1000000; i++)
        n = n * 10 + (name.data[i] - '0');
    return i > 4 && i < name.len && name.data[i] == '.' ? n : -1;
}

static bool name_ends(gguf_str s, const char *suffix)
{
    size_t n = strlen(suffix);
    return s.len >= n && memcmp(s.data + s.len - n, suffix, n) == 0;
}

/* The K-quant "medium" layer choice: the first and last eighth of the layers, and every third
 * one between, get more bits (about half of them in all); these tensors matter most. */
static bool more_bits_layer(int layer, int n_layer)
{
    return layer < n_layer / 8 || layer >= 7 * n_layer / 8 || (layer - n_layer / 8) % 3 == 2;
}

/* For rows that do not split into 256-value super-blocks: the nearest 32-block type this build
 * has (the K-quant convention's replacement first, then one of about the same size or larger),
 * or F16, which fits any row. */
static ellm_type fallback_type(ellm_type want, uint64_t n_cols)
{
    ellm_type chain[3] = {ELLM_TYPE_F16, ELLM_TYPE_F16, ELLM_TYPE_F16};
    switch (want) {
    case ELLM_TYPE_Q4_K: chain[0] = ELLM_TYPE_Q5_0; chain[1] = ELLM_TYPE_Q4_0; break;
    case ELLM_TYPE_Q5_K:
        chain[0] = ELLM_TYPE_Q5_1;
        chain[1] = ELLM_TYPE_Q5_0;
        chain[2] = ELLM_TYPE_Q8_0;
        break;
    case ELLM_TYPE_Q6_K: chain[0] = ELLM_TYPE_Q8_0; break;
    default: break;
    }
    for (int i = 0; i < 3; i++) {
        const ellm_type_traits *tr = ellm_type_traits_of(chain[i]);
        if (ellm_type_supported(chain[i]) && n_cols % tr->block_size == 0)
            return chain[i];
    }
    return ELLM_TYPE_F16;
}

/* The type one tensor gets: norms and other 1-D tensors stay as they are; the output head (the
 * token embedding when the head is tied to it) gets more bits than a 4-bit base (Q8_0 under
 * Q4_0, Q6_K under the K-quant recipes), as the common recipes do; the K mixes raise attn_v and
 * ffn_down in some layers; rows that do not split into the chosen type's blocks take the nearest
 * type that fits (fallback_type). */
static ellm_type choose(const gguf_tensor_info *t, const ellm_quant_recipe *r, bool tied,
                        int n_layer, ellm_type *wanted)
{
    *wanted = (ellm_type)t->type;
    if (t->n_dims < 2)
        return (ellm_type)t->type;
    ellm_type want = r->base;
    bool k_recipe = r->base == ELLM_TYPE_Q4_K || r->base == ELLM_TYPE_Q5_K ||
                    r->base == ELLM_TYPE_Q6_K;
    bool head = name_is(t->name, "output.weight") || (tied && name_is(t->name, "token_embd.weight"));
    int layer = layer_of(t->name);
    bool attn_v = layer >= 0 && name_ends(t->name, ".attn_v.weight");
    bool ffn_down = layer >= 0 && name_ends(t->name, ".ffn_down.weight");
    if (r->base == ELLM_TYPE_Q4_0 && head)
        want = ELLM_TYPE_Q8_0;
    else if (k_recipe && head)
        want = ELLM_TYPE_Q6_K;
    else if (r->mix == ELLM_MIX_K_M && (attn_v || ffn_down) && more_bits_layer(layer, n_layer))
        want = ELLM_TYPE_Q6_K;
    else if (r->mix == ELLM_MIX_K_S && r->base == ELLM_TYPE_Q4_K &&
             ((attn_v && layer < 4) || (ffn_down && layer < (n_layer + 7) / 8)))
        want = ELLM_TYPE_Q5_K;
    *wanted = want;
    const ellm_type_traits *tr = ellm_type_traits_of(want);
    return t->ne[0] % tr->block_size != 0 ? fallback_type(want, t->ne[0]) : want;
}

edgellm_status ellm_quantize_model(const char *in_path, const char *out_path, ellm_type target,
                                   const ellm_quantize_options *options)
{
    ellm_quant_recipe scratch;
    const ellm_quant_recipe *r = ellm_quant_recipe_find(ellm_type_name(target), &scratch);
    if (!r)
        return ellm_fail(EDGELLM_ERR_UNSUPPORTED,
                         "quantizing to %s is not supported yet (supported: %s)",
                         ellm_type_name(target), ellm_quant_recipe_names());
    return ellm_quantize_model_recipe(in_path, out_path, r, options);
}

edgellm_status ellm_quantize_model_recipe(const char *in_path, const char *out_path,
                                          const ellm_quant_recipe *recipe,
                                          const ellm_quantize_options *options)
{
    ellm_quantize_options none = {0};
    const ellm_quantize_options *o = options ? options : &none;
    gguf_file *in = NULL;
    edgellm_status st = gguf_open(in_path, &in);
    if (st != EDGELLM_OK)
        return st;
    for (uint64_t i = 0; i < gguf_tensor_count(in); i++) {
        const gguf_tensor_info *t = gguf_tensor_at(in, i);
        if (!ellm_type_supported((ellm_type)t->type)) {
            gguf_close(in);
            return ellm_fail(EDGELLM_ERR_UNSUPPORTED,
                             "tensor '%.*s' is %s, which this build cannot read yet",
                             (int)t->name.len, t->name.data, ellm_type_name(t->type));
        }
    }
    gguf_writer *w = gguf_writer_create();
    uint64_t n = gguf_tensor_count(in);
    /* The K-quant quantizers search per sub-block: use every core (a 1B model takes minutes). */
    ellm_threadpool *pool = NULL;
    if (ellm_threadpool_create(0, &pool) != EDGELLM_OK)
        pool = NULL; /* run on this thread alone */
    requant *jobs = calloc(n ? n : 1, sizeof *jobs);
    if (!w || !jobs)
        st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory");
    for (uint64_t i = 0; st == EDGELLM_OK && i < gguf_kv_count(in); i++) {
        const gguf_kv *kv = gguf_kv_at(in, i);
        char *key = gguf_str_dup(kv->key);
        if (!key) {
            st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory");
            break;
        }
        st = strcmp(key, "general.file_type") == 0
                 ? gguf_writer_set_u32(w, key, recipe->file_type)
                 : gguf_writer_set_value(w, key, &kv->value);
        free(key);
    }
    if (st == EDGELLM_OK && !gguf_find_kv(in, "general.file_type"))
        st = gguf_writer_set_u32(w, "general.file_type", recipe->file_type);
    int n_layer = 0;
    for (uint64_t i = 0; i < n; i++) {
        int layer = layer_of(gguf_tensor_at(in, i)->name);
        n_layer = layer >= n_layer ? layer + 1 : n_layer;
    }
    for (uint64_t i = 0; st == EDGELLM_OK && i < n; i++) {
        const gguf_tensor_info *t = gguf_tensor_at(in, i);
        ellm_type wanted;
        bool tied = gguf_find_tensor(in, "output.weight") == NULL;
        jobs[i] = (requant){t, choose(t, recipe, tied, n_layer, &wanted), o, (int)i, (int)n, pool};
        char *name = gguf_str_dup(t->name);
        if (!name) {
            st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory");
            break;
        }
        if (jobs[i].type != wanted && o->on_fallback)
            o->on_fallback(o->user, name, wanted, jobs[i].type);
        st = gguf_writer_add_tensor_fill(w, name, jobs[i].type, t->n_dims, t->ne,
                                         fill_requantized, &jobs[i]);
        free(name);
    }
    if (st == EDGELLM_OK)
        st = gguf_writer_write(w, out_path);
    gguf_writer_free(w);
    ellm_threadpool_free(pool);
    free(jobs);
    gguf_close(in);
    return st;
}
