/* Re-quantizing a GGUF model: every 2-D weight is converted to the target type (through float),
 * with the usual per-tensor choices, and every metadata key is carried over. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "convert/convert.h"
#include "core/finite.h"
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
    const float *importance; /* per input column, floored (see importance_weights); or NULL */
    const float *mean_value; /* per input column, the mean activation (with importance); or NULL */
    const float *directions; /* n_dirs vectors of n_cols: the covariance's leading directions */
    int n_dirs;
    char *name;
} requant;

typedef struct requant_rows {
    const requant *r;
    uint8_t *dst;
    uint64_t n_rows, src_rb, dst_rb;
    const ellm_row_objective *objective; /* with means or directions; or NULL */
    float *rows;                         /* ROW_FLOATS rows of floats per thread */
    int64_t bad_row;                     /* a row holding NaN or infinity, -1 while none is found */
} requant_rows;

/* A row and the scratch of ellm_quantize_row_weighted_mean. */
#define ROW_FLOATS 5

/* Rows are independent, so threads take interleaved rows; the bytes do not depend on the split. */
static void requantize_rows(void *arg, int ith, int nth)
{
    requant_rows *j = arg;
    const gguf_tensor_info *t = j->r->src;
    float *row = j->rows + (size_t)ith * ROW_FLOATS * t->ne[0];
    for (uint64_t i = (uint64_t)ith; i < j->n_rows; i += (uint64_t)nth) {
        ellm_dequantize_row((ellm_type)t->type, (const uint8_t *)t->data + i * j->src_rb, row,
                            (int64_t)t->ne[0]);
        if (ellm_first_nonfinite(row, t->ne[0]) >= 0)
            __atomic_store_n(&j->bad_row, (int64_t)i, __ATOMIC_RELAXED);
        const ellm_quantize_options *o = j->r->options;
        if (o->transform_row)
            o->transform_row(o->user, j->r->name, i, row, (int64_t)t->ne[0]);
        if (j->objective)
            ellm_quantize_row_objective(j->r->type, row, j->dst + i * j->dst_rb, (int64_t)t->ne[0],
                                        j->objective, row + t->ne[0]);
        else
            ellm_quantize_row_weighted_mean(j->r->type, row, j->dst + i * j->dst_rb,
                                            (int64_t)t->ne[0], j->r->importance, j->r->mean_value,
                                            row + t->ne[0]);
    }
}

/* The whole matrix as float (after transform_row), handed to options->quantize_matrix. */
static edgellm_status fill_matrix(const requant *r, requant_rows *j)
{
    const gguf_tensor_info *t = r->src;
    const ellm_quantize_options *o = r->options;
    int64_t n = (int64_t)t->ne[0];
    float *w = malloc((size_t)j->n_rows * (size_t)n * sizeof *w);
    if (!w)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the %s matrix", r->name);
    for (uint64_t i = 0; i < j->n_rows; i++) {
        float *row = w + i * (uint64_t)n;
        ellm_dequantize_row((ellm_type)t->type, (const uint8_t *)t->data + i * j->src_rb, row, n);
        if (j->bad_row < 0 && ellm_first_nonfinite(row, n) >= 0)
            j->bad_row = (int64_t)i;
        if (o->transform_row)
            o->transform_row(o->user, r->name, i, row, n);
    }
    edgellm_status st = j->bad_row >= 0 ? EDGELLM_OK
                                        : o->quantize_matrix(o->user, r->name, r->type, w,
                                                             (int64_t)j->n_rows, n, j->dst);
    free(w);
    return st;
}

static edgellm_status fill_requantized(void *user, void *dst, uint64_t n_bytes)
{
    const requant *r = user;
    const gguf_tensor_info *t = r->src;
    requant_rows j = {.r = r, .dst = dst, .n_rows = t->n_elements / t->ne[0], .bad_row = -1};
    ellm_row_bytes(t->type, t->ne[0], &j.src_rb);
    ellm_row_bytes(r->type, t->ne[0], &j.dst_rb);
    if (j.dst_rb * j.n_rows != n_bytes)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "internal size mismatch");
    const ellm_quantize_options *o = r->options;
    if (t->n_dims >= 2 && o->claims_matrix && o->quantize_matrix &&
        o->claims_matrix(o->user, r->name, r->type, (int64_t)t->ne[0])) {
        edgellm_status st = fill_matrix(r, &j);
        if (st != EDGELLM_OK)
            return st;
    } else {
        int nth = r->pool ? ellm_threadpool_size(r->pool) : 1;
        /* Prepared once per matrix, with covariance directions; without them (or memory for
         * them) the rows take the mean alone, the bytes of files without directions as before. */
        ellm_row_objective objective;
        if (r->importance && r->n_dirs > 0 &&
            ellm_row_objective_init(&objective, (int64_t)t->ne[0], r->importance, r->mean_value,
                                    r->directions, r->n_dirs))
            j.objective = &objective;
        j.rows = malloc((size_t)nth * ROW_FLOATS * t->ne[0] * sizeof *j.rows);
        if (j.rows)
            ellm_threadpool_run(r->pool, requantize_rows, &j);
        if (j.objective)
            ellm_row_objective_free(&objective);
        if (!j.rows)
            return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for a row");
        free(j.rows);
    }
    if (j.bad_row >= 0)
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "row %lld holds NaN or an infinite value: the input model is broken and "
                         "would only compute NaN; nothing was written",
                         (long long)j.bad_row);
    if (r->options->on_progress)
        r->options->on_progress(r->options->user, r->index + 1, r->total);
    return EDGELLM_OK;
}

/* The column weights of one matrix: the importances plus a small floor (a thousandth of their
 * mean), so columns never seen active still count a little and a block of them keeps a sensible
 * scale. NULL when there are none or the type has no weighted search. */
static float *importance_weights(const ellm_quantize_options *o, const char *name, ellm_type type,
                                 int64_t n_cols)
{
    if (!o->importance || !ellm_type_has_weighted_search(type))
        return NULL;
    const float *imp = o->importance(o->user, name, n_cols);
    if (!imp)
        return NULL;
    float *w = malloc((size_t)n_cols * sizeof *w);
    if (!w)
        return NULL;
    double mean = 0;
    for (int64_t j = 0; j < n_cols; j++)
        mean += imp[j];
    mean /= (double)n_cols;
    for (int64_t j = 0; j < n_cols; j++)
        w[j] = imp[j] + (float)(1e-3 * mean) + 1e-30f;
    return w;
}

static bool name_is(gguf_str s, const char *name) { return ellm_gguf_str_eq(s, name); }

/* Whether the tensor name contains `part` (e.g. "ffn_down" in "blk.3.ffn_down.weight"). */
static bool name_has(gguf_str s, const char *part)
{
    size_t n = strlen(part);
    for (size_t i = 0; i + n <= s.len; i++)
        if (memcmp(s.data + i, part, n) == 0)
            return true;
    return false;
}

/* The layer of "blk.N.<...>", or -1. */
static int layer_of(gguf_str s)
{
    if (s.len < 5 || memcmp(s.data, "blk.", 4) != 0)
        return -1;
    int n = 0;
    size_t i = 4;
    for (; i < s.len && s.data[i] >= '0' && s.data[i] <= '9' && n < 1000000; i++)
        n = n * 10 + (s.data[i] - '0');
    return i > 4 ? n : -1;
}

/* The matrix kind of "blk.N.<kind>" (e.g. "attn_v.weight"); empty for other names. */
static gguf_str kind_of(gguf_str s)
{
    gguf_str k = {0, s.data + s.len};
    if (layer_of(s) < 0)
        return k;
    for (size_t i = 4; i < s.len; i++)
        if (s.data[i] == '.')
            return (gguf_str){s.len - i - 1, s.data + i + 1};
    return k;
}

static bool same_str(gguf_str a, gguf_str b)
{
    return a.len == b.len && memcmp(a.data, b.data, a.len) == 0;
}

/* A named mix: the type most matrices get, the general.file_type it records, and per-tensor
 * exceptions following the widely used K-quant mixes (more bits where quantization error hurts
 * most: the attention value and output projections and the FFN down projection). */
typedef enum recipe_id {
    RECIPE_SINGLE, /* one type for every matrix (F32, F16, BF16, Q8_0, Q4_0, ...) */
    RECIPE_Q2_K,
    RECIPE_Q3_K_S,
    RECIPE_Q3_K_M,
    RECIPE_Q3_K_L,
    RECIPE_IQ4_XS,
    RECIPE_K_S, /* Q4_K_S / Q5_K_S: a few early attn_v and ffn_down layers one step up */
    RECIPE_K_M, /* Q4_K_M / Q5_K_M: attn_v and ffn_down of about half the layers at Q6_K */
    RECIPE_Q6_K,
} recipe_id;

typedef struct recipe {
    const char *name;
    recipe_id id;
    ellm_type base;
    uint32_t file_type; /* the GGUF convention's "mostly ..." number */
} recipe;

static const recipe recipes[] = {
    {"Q2_K", RECIPE_Q2_K, ELLM_TYPE_Q2_K, 10},
    {"Q3_K_S", RECIPE_Q3_K_S, ELLM_TYPE_Q3_K, 11},
    {"Q3_K_M", RECIPE_Q3_K_M, ELLM_TYPE_Q3_K, 12},
    {"Q3_K_L", RECIPE_Q3_K_L, ELLM_TYPE_Q3_K, 13},
    {"Q4_K_S", RECIPE_K_S, ELLM_TYPE_Q4_K, 14},
    {"Q4_K_M", RECIPE_K_M, ELLM_TYPE_Q4_K, 15},
    {"Q5_K_S", RECIPE_K_S, ELLM_TYPE_Q5_K, 16},
    {"Q5_K_M", RECIPE_K_M, ELLM_TYPE_Q5_K, 17},
    {"Q6_K", RECIPE_Q6_K, ELLM_TYPE_Q6_K, 18},
    {"IQ4_XS", RECIPE_IQ4_XS, ELLM_TYPE_IQ4_XS, 30},
    /* The bare K types mean their usual mix. */
    {"Q3_K", RECIPE_Q3_K_S, ELLM_TYPE_Q3_K, 11},
    {"Q4_K", RECIPE_K_M, ELLM_TYPE_Q4_K, 15},
    {"Q5_K", RECIPE_K_M, ELLM_TYPE_Q5_K, 17},
};

static const recipe *find_recipe(const char *name)
{
    for (size_t i = 0; i < sizeof recipes / sizeof recipes[0]; i++)
        if (strcasecmp(recipes[i].name, name) == 0)
            return &recipes[i];
    return NULL;
}

bool ellm_quant_recipe_exists(const char *name) { return find_recipe(name) != NULL; }

const char *ellm_quant_recipe_names(void)
{
    return "q8_0, q5_1, q5_0, q4_1, q4_0, iq4_nl, f16, bf16, f32 and the other single types this "
           "build has, or a mix: "
           "q2_k, q3_k_s, q3_k_m, q3_k_l, q4_k_s, q4_k_m, q5_k_s, q5_k_m, q6_k, iq4_xs";
}

/* What the per-tensor choices need to know about the whole model. */
typedef struct model_shape {
    bool tied;   /* no output.weight: the token embedding is also the output head */
    int n_layer; /* from the blk.N tensor names */
    int n_gqa;   /* query heads per KV head, from the attn_q / attn_v output sizes (1 if unknown) */
} model_shape;

static model_shape shape_of(const gguf_file *in)
{
    model_shape m = {ellm_gguf_find_tensor(in, "output.weight") == NULL, 0, 1};
    for (uint64_t i = 0; i < ellm_gguf_tensor_count(in); i++) {
        int l = layer_of(ellm_gguf_tensor_at(in, i)->name);
        if (l + 1 > m.n_layer)
            m.n_layer = l + 1;
    }
    const gguf_tensor_info *q = ellm_gguf_find_tensor(in, "blk.0.attn_q.weight");
    const gguf_tensor_info *v = ellm_gguf_find_tensor(in, "blk.0.attn_v.weight");
    if (q && v && q->n_dims >= 2 && v->n_dims >= 2 && v->ne[1] > 0 && q->ne[1] % v->ne[1] == 0)
        m.n_gqa = (int)(q->ne[1] / v->ne[1]);
    return m;
}

/* The first of the preferred types this build supports (the last is always supported). */
static ellm_type first_supported(ellm_type a, ellm_type b, ellm_type c)
{
    return ellm_type_supported(a) ? a : ellm_type_supported(b) ? b : c;
}

/* The K-quant "medium" layer choice: the first and last eighth of the layers, and every third
 * one between, get more bits (about half of them in all); these tensors matter most. */
static bool more_bits_layer(int layer, int n_layer)
{
    return layer < n_layer / 8 || layer >= 7 * n_layer / 8 || (layer - n_layer / 8) % 3 == 2;
}

/* For rows that do not split into 256-value super-blocks: the 32-value type the common tools
 * substitute, then the next best this build has; F16 (which fits any row) when none fits. */
static ellm_type small_block_substitute(ellm_type want, int64_t n_cols)
{
    ellm_type chain[3] = {ELLM_TYPE_Q8_0, ELLM_TYPE_Q8_0, ELLM_TYPE_Q8_0};
    switch (want) {
    case ELLM_TYPE_Q2_K:
    case ELLM_TYPE_Q3_K:
    case ELLM_TYPE_IQ4_XS:
        chain[0] = ELLM_TYPE_IQ4_NL;
        chain[1] = ELLM_TYPE_Q4_0;
        break;
    case ELLM_TYPE_Q4_K:
        chain[0] = ELLM_TYPE_Q5_0;
        chain[1] = ELLM_TYPE_Q4_0;
        break;
    case ELLM_TYPE_Q5_K:
        chain[0] = ELLM_TYPE_Q5_1;
        chain[1] = ELLM_TYPE_Q5_0;
        break;
    default: break;
    }
    for (int i = 0; i < 3; i++)
        if (ellm_type_supported(chain[i]) &&
            n_cols % ellm_type_traits_of(chain[i])->block_size == 0)
            return chain[i];
    return ELLM_TYPE_F16;
}

/* A recipe's wish for one matrix, before checking that its rows split into the type's blocks.
 * Types this build does not have give way to the next best it has. */
static ellm_type recipe_wish(const recipe *r, const gguf_tensor_info *t, const model_shape *m)
{
    bool head = name_is(t->name, "output.weight") ||
                (m->tied && name_is(t->name, "token_embd.weight"));
    if (head)
        return first_supported(ELLM_TYPE_Q6_K, ELLM_TYPE_Q8_0, ELLM_TYPE_Q8_0);
    int layer = layer_of(t->name);
    bool attn_v = name_has(t->name, "attn_v."), ffn_down = name_has(t->name, "ffn_down");
    bool attn_out = name_has(t->name, "attn_output.");
    switch (r->id) {
    case RECIPE_Q2_K:
        if (attn_v && m->n_gqa >= 4)
            return first_supported(ELLM_TYPE_Q4_K, ELLM_TYPE_Q3_K, ELLM_TYPE_Q3_K);
        if (attn_v || ffn_down || attn_out)
            return ELLM_TYPE_Q3_K;
        break;
    case RECIPE_Q3_K_M:
        if (attn_v && layer < 2)
            return first_supported(ELLM_TYPE_Q5_K, ELLM_TYPE_Q4_K, ELLM_TYPE_Q3_K);
        if (ffn_down && layer < m->n_layer / 16)
            return first_supported(ELLM_TYPE_Q5_K, ELLM_TYPE_Q4_K, ELLM_TYPE_Q3_K);
        if (attn_v || ffn_down || attn_out)
            return first_supported(ELLM_TYPE_Q4_K, ELLM_TYPE_Q3_K, ELLM_TYPE_Q3_K);
        break;
    case RECIPE_Q3_K_L:
        if (attn_v || ffn_down || attn_out)
            return first_supported(ELLM_TYPE_Q5_K, ELLM_TYPE_Q4_K, ELLM_TYPE_Q3_K);
        break;
    case RECIPE_IQ4_XS:
        if ((attn_v && m->n_gqa >= 4) || (ffn_down && layer < m->n_layer / 8))
            return first_supported(ELLM_TYPE_Q5_K, ELLM_TYPE_IQ4_XS, ELLM_TYPE_IQ4_XS);
        break;
    case RECIPE_K_M:
        if ((attn_v || ffn_down) && layer >= 0 && more_bits_layer(layer, m->n_layer))
            return ELLM_TYPE_Q6_K;
        break;
    case RECIPE_K_S:
        if (r->base == ELLM_TYPE_Q4_K && layer >= 0 &&
            ((attn_v && layer < 4) || (ffn_down && layer < (m->n_layer + 7) / 8)))
            return ELLM_TYPE_Q5_K;
        break;
    case RECIPE_Q6_K:
    case RECIPE_Q3_K_S:
    case RECIPE_SINGLE: break;
    }
    return r->base;
}

/* The 32-value types of 4 and 5 bits: a single-type target of one of these keeps the output head
 * at Q8_0, where the logits' quantization error hurts most. */
static bool single_keeps_8bit_head(ellm_type t)
{
    return t == ELLM_TYPE_Q4_0 || t == ELLM_TYPE_Q4_1 || t == ELLM_TYPE_Q5_0 ||
           t == ELLM_TYPE_Q5_1 || t == ELLM_TYPE_IQ4_NL;
}

/* The type one tensor gets: norms and other 1-D tensors stay as they are. A single-type target
 * keeps the output head (the token embedding when the head is tied to it) at 8 bits under a 4- or
 * 5-bit target, and rows that do not split into its blocks take F16, the nearest type that fits
 * any row length. A recipe takes its wish; rows that do not split into 256-value blocks take a
 * 32-value substitute, or F16 when they do not split into 32s either. */
static ellm_type choose(const gguf_tensor_info *t, const recipe *r, const model_shape *m,
                        bool *fell_back, ellm_type *wanted)
{
    *fell_back = false;
    *wanted = r->base;
    if (t->n_dims < 2)
        return (ellm_type)t->type;
    ellm_type want = r->base;
    if (r->id == RECIPE_SINGLE) {
        bool head = name_is(t->name, "output.weight") ||
                    (m->tied && name_is(t->name, "token_embd.weight"));
        if (head && single_keeps_8bit_head(r->base))
            want = ELLM_TYPE_Q8_0;
    } else {
        want = recipe_wish(r, t, m);
    }
    *wanted = want;
    if (t->ne[0] % ellm_type_traits_of(want)->block_size == 0)
        return want;
    *fell_back = true;
    if (r->id != RECIPE_SINGLE)
        return small_block_substitute(want, t->ne[0]);
    return ELLM_TYPE_F16;
}

static edgellm_status quantize_with(const char *in_path, const char *out_path, const recipe *r,
                                    const ellm_quantize_options *options);

edgellm_status ellm_quantize_model(const char *in_path, const char *out_path, ellm_type target,
                                   const ellm_quantize_options *options)
{
    /* The K types are quantized with the mix of the same name (Q3_K: Q3_K_S, Q4_K: Q4_K_M...). */
    const recipe *mix = find_recipe(ellm_type_name(target));
    if (mix)
        return quantize_with(in_path, out_path, mix, options);
    /* Q8_K is an activation format, never stored in files. */
    if (!ellm_type_supported(target) || target == ELLM_TYPE_Q8_K || target == ELLM_TYPE_Q8_1)
        return ellm_fail(EDGELLM_ERR_UNSUPPORTED,
                         "quantizing to %s is not supported yet (supported: %s)",
                         ellm_type_name(target), ellm_quant_recipe_names());
    recipe single = {ellm_type_name(target), RECIPE_SINGLE, target, ellm_gguf_file_type(target)};
    return quantize_with(in_path, out_path, &single, options);
}

edgellm_status ellm_quantize_model_recipe(const char *in_path, const char *out_path,
                                          const char *recipe_name,
                                          const ellm_quantize_options *options)
{
    const recipe *r = find_recipe(recipe_name);
    if (!r)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "unknown quantization recipe '%s' (%s)",
                         recipe_name, ellm_quant_recipe_names());
    return quantize_with(in_path, out_path, r, options);
}

/* A training checkpoint (edgellm train) also holds the optimizer's moments and the run's state:
 * the quantized file is the model alone. */
static bool is_training_state(gguf_str name)
{
    return (name.len > 7 &&
            (!memcmp(name.data, "adam_m.", 7) || !memcmp(name.data, "adam_v.", 7))) ||
           (name.len > 6 && !memcmp(name.data, "train.", 6));
}

/* ---------------------------------------------------------------- sensitivity-based mixes */

/* The higher type a mix spends its extra bits on: the one its rules give most layer matrices
 * above the base type (Q6_K for Q4_K_M, Q4_K for Q3_K_M, ...); the base type when it has none. */
static ellm_type mix_upgrade_type(const gguf_file *in, const recipe *r, const ellm_type *plan)
{
    int count[ELLM_TYPE_COUNT] = {0}, best = 0;
    ellm_type up = r->base;
    for (uint64_t i = 0; i < ellm_gguf_tensor_count(in); i++) {
        const gguf_tensor_info *t = ellm_gguf_tensor_at(in, i);
        if (t->n_dims < 2 || layer_of(t->name) < 0 || plan[i] == r->base ||
            (unsigned)plan[i] >= ELLM_TYPE_COUNT)
            continue;
        if (++count[plan[i]] > best) {
            best = count[plan[i]];
            up = plan[i];
        }
    }
    return up;
}

typedef struct sensitivity {
    uint64_t tensor;
    double gain;    /* importance-weighted error at the base type minus at the higher type */
    uint64_t extra; /* bytes the higher type costs over the base type */
} sensitivity;

/* Rows sampled per matrix to measure its sensitivity: the error sums scale with the row count,
 * so a spread sample estimates the whole matrix's well at a fraction of the cost. */
#define SENSITIVITY_ROWS 128

typedef struct sensitivity_job {
    const gguf_file *in;
    const ellm_quantize_options *o;
    ellm_type base, up;
    sensitivity *items;
    int n_items;
    int64_t max_cols;
} sensitivity_job;

/* The importance-weighted error of the sampled rows of one matrix at the base and the higher
 * type, scaled to all its rows (each thread takes every nth matrix). */
static void measure_sensitivity(void *arg, int ith, int nth)
{
    sensitivity_job *j = arg;
    size_t row_cap = (size_t)j->max_cols * 4 + 1024;
    float *row = malloc((size_t)j->max_cols * 2 * sizeof *row);
    uint8_t *q = malloc(row_cap);
    for (int k = ith; row && q && k < j->n_items; k += nth) {
        const gguf_tensor_info *t = ellm_gguf_tensor_at(j->in, j->items[k].tensor);
        int64_t n = (int64_t)t->ne[0];
        uint64_t n_rows = t->n_elements / t->ne[0], src_rb, step;
        ellm_row_bytes(t->type, t->ne[0], &src_rb);
        char *name = ellm_gguf_str_dup(t->name);
        float *w = name ? importance_weights(j->o, name, j->base, n) : NULL;
        free(name);
        if (!w) {
            j->items[k].gain = -1; /* no statistics: keeps the rules' type */
            continue;
        }
        step = n_rows > SENSITIVITY_ROWS ? n_rows / SENSITIVITY_ROWS : 1;
        double e_base = 0, e_up = 0;
        uint64_t sampled = 0;
        for (uint64_t i = 0; i < n_rows; i += step, sampled++) {
            ellm_dequantize_row((ellm_type)t->type, (const uint8_t *)t->data + i * src_rb, row, n);
            ellm_quantize_row_weighted(j->base, row, q, n, w);
            e_base += ellm_weighted_row_error(j->base, row, q, n, w, row + n);
            ellm_quantize_row_weighted(j->up, row, q, n, w);
            e_up += ellm_weighted_row_error(j->up, row, q, n, w, row + n);
        }
        free(w);
        j->items[k].gain = (e_base - e_up) * (double)n_rows / (double)sampled;
    }
    free(row);
    free(q);
}

/* Whether the rules give the higher type to some matrix of this one's kind. The measured
 * errors are compared within the kinds the rules upgrade (which layers' attn_v, ffn_down, ...):
 * across kinds the output-space error misleads, as an attn_q or ffn_gate error reaches the
 * logits through a softmax or a gate, an attn_v or ffn_down error directly (measured: with every
 * kind a candidate, Q4_K_S on the default model went from KL 0.00044 to 0.00062). */
static bool kind_upgraded(const gguf_file *in, const ellm_type *plan, ellm_type up, gguf_str name)
{
    gguf_str kind = kind_of(name);
    for (uint64_t i = 0; kind.len && i < ellm_gguf_tensor_count(in); i++)
        if (plan[i] == up && same_str(kind_of(ellm_gguf_tensor_at(in, i)->name), kind))
            return true;
    return false;
}

static int by_gain_per_byte(const void *a, const void *b)
{
    const sensitivity *x = a, *y = b;
    double gx = x->gain / (double)x->extra, gy = y->gain / (double)y->extra;
    return gx > gy ? -1 : gx < gy ? 1 : (x->tensor > y->tensor) - (x->tensor < y->tensor);
}

/* With importances, a mix spends the extra bytes its rules would spend on the layer matrices
 * where the measured gain is largest: every layer matrix whose rules give it the base or the
 * higher type is a candidate; the higher type goes to the candidates with the most weighted
 * error removed per extra byte, while the extra bytes stay within the rules' (so the file is
 * the rule-based mix's size or slightly smaller). Other choices (the output head, the mix's
 * third types, rows that need a substitute) stay as the rules make them. */
static void plan_by_sensitivity(const gguf_file *in, const recipe *r,
                                const ellm_quantize_options *o, ellm_threadpool *pool,
                                ellm_type *plan)
{
    if (r->id == RECIPE_SINGLE || !o->importance || o->mix_by_rules ||
        !ellm_type_has_weighted_search(r->base))
        return;
    ellm_type up = mix_upgrade_type(in, r, plan);
    if (up == r->base)
        return;
    uint64_t n = ellm_gguf_tensor_count(in), budget = 0;
    sensitivity_job j = {in, o, r->base, up, calloc(n ? n : 1, sizeof(sensitivity)), 0, 0};
    if (!j.items)
        return;
    for (uint64_t i = 0; i < n; i++) {
        const gguf_tensor_info *t = ellm_gguf_tensor_at(in, i);
        uint64_t b_base, b_up;
        if (t->n_dims < 2 || layer_of(t->name) < 0 || is_training_state(t->name) ||
            (plan[i] != r->base && plan[i] != up) || !kind_upgraded(in, plan, up, t->name) ||
            t->ne[0] % ellm_type_traits_of(r->base)->block_size != 0 ||
            t->ne[0] % ellm_type_traits_of(up)->block_size != 0 ||
            !ellm_row_bytes(r->base, t->ne[0], &b_base) || !ellm_row_bytes(up, t->ne[0], &b_up) ||
            b_up <= b_base)
            continue;
        uint64_t extra = (b_up - b_base) * (t->n_elements / t->ne[0]);
        j.items[j.n_items++] = (sensitivity){i, 0, extra};
        if ((int64_t)t->ne[0] > j.max_cols)
            j.max_cols = (int64_t)t->ne[0];
        if (plan[i] == up)
            budget += extra;
    }
    ellm_threadpool_run(pool, measure_sensitivity, &j);
    /* Candidates without statistics keep the rules' choice and its cost. */
    int kept = 0;
    for (int k = 0; k < j.n_items; k++) {
        if (j.items[k].gain < 0) {
            budget -= plan[j.items[k].tensor] == up ? j.items[k].extra : 0;
            continue;
        }
        j.items[kept++] = j.items[k];
    }
    qsort(j.items, (size_t)kept, sizeof *j.items, by_gain_per_byte);
    uint64_t spent = 0;
    for (int k = 0; k < kept; k++) {
        bool take = j.items[k].gain > 0 && spent + j.items[k].extra <= budget;
        spent += take ? j.items[k].extra : 0;
        plan[j.items[k].tensor] = take ? up : r->base;
    }
    free(j.items);
}

/* The next K-quant step up (dir 1) or down (dir -1) from t, or t itself at either end or off
 * the ladder. */
static ellm_type k_ladder_step(ellm_type t, int dir)
{
    static const ellm_type ladder[] = {ELLM_TYPE_Q2_K, ELLM_TYPE_Q3_K, ELLM_TYPE_Q4_K,
                                       ELLM_TYPE_Q5_K, ELLM_TYPE_Q6_K, ELLM_TYPE_Q8_0};
    const int n = (int)(sizeof ladder / sizeof ladder[0]);
    for (int i = 0; i < n; i++)
        if (ladder[i] == t)
            return i + dir >= 0 && i + dir < n && ellm_type_supported(ladder[i + dir])
                       ? ladder[i + dir]
                       : t;
    return t;
}

static uint64_t tensor_bytes(const gguf_tensor_info *t, ellm_type type)
{
    uint64_t rb = 0;
    if (t->n_dims < 2 || t->ne[0] % ellm_type_traits_of(type)->block_size ||
        !ellm_row_bytes(type, t->ne[0], &rb))
        return 0;
    return rb * (t->n_elements / t->ne[0]);
}

/* The token embedding and the untied output head are the two largest matrices of a small model
 * and of different kinds, so per-matrix errors cannot weigh one against the other; the logits
 * over the calibration text can. A mix moves one K-quant step from the head to the embedding
 * when that lowers the measured KL and the embedding's extra bytes are at most what the head
 * gives up (the 256-wide outlier model's Q3_K_M: the embedding is 40 % of the KL left after
 * GPTQ, and Q3_K -> Q4_K against Q6_K -> Q5_K is the same 34 bytes a super-block either way). */
static edgellm_status plan_head_trade(const gguf_file *in, const recipe *r,
                                      const ellm_quantize_options *o, const bool *fell_back,
                                      ellm_type *plan)
{
    if (r->id == RECIPE_SINGLE || !o->logit_kl)
        return EDGELLM_OK;
    uint64_t e = UINT64_MAX, h = UINT64_MAX;
    for (uint64_t i = 0; i < ellm_gguf_tensor_count(in); i++) {
        const gguf_tensor_info *t = ellm_gguf_tensor_at(in, i);
        e = name_is(t->name, "token_embd.weight") ? i : e;
        h = name_is(t->name, "output.weight") ? i : h;
    }
    if (e == UINT64_MAX || h == UINT64_MAX || fell_back[e] || fell_back[h])
        return EDGELLM_OK;
    const gguf_tensor_info *te = ellm_gguf_tensor_at(in, e), *th = ellm_gguf_tensor_at(in, h);
    uint64_t e_now = tensor_bytes(te, plan[e]), h_now = tensor_bytes(th, plan[h]);
    /* Plan 0 is the rules'; plan s moves s steps, while the ladder and the bytes allow. */
    enum { MAX_STEPS = 3 };
    ellm_type plans[2 * (MAX_STEPS + 1)] = {plan[e], plan[h]};
    int n_plans = 1;
    while (e_now && h_now && n_plans <= MAX_STEPS) {
        ellm_type e_up = k_ladder_step(plans[2 * n_plans - 2], 1);
        ellm_type h_down = k_ladder_step(plans[2 * n_plans - 1], -1);
        uint64_t e_new = tensor_bytes(te, e_up), h_new = tensor_bytes(th, h_down);
        if (e_up == plans[2 * n_plans - 2] || h_down == plans[2 * n_plans - 1] || !e_new ||
            !h_new || e_new - e_now > h_now - h_new)
            break;
        plans[2 * n_plans] = e_up;
        plans[2 * n_plans + 1] = h_down;
        n_plans++;
    }
    if (n_plans == 1)
        return EDGELLM_OK;
    const char *names[2] = {"token_embd.weight", "output.weight"};
    double kl[MAX_STEPS + 1] = {0};
    edgellm_status st = o->logit_kl(o->user, names, 2, plans, n_plans, kl);
    int best = 0;
    for (int p = 1; st == EDGELLM_OK && p < n_plans; p++)
        best = kl[p] < kl[best] ? p : best;
    plan[e] = plans[2 * best];
    plan[h] = plans[2 * best + 1];
    return st;
}

/* A matrix quantizer (GPTQ) builds statistics from other matrices than the one it writes (the
 * token embedding's from every layer's): one NaN weight failed there, blamed on the activations
 * and named after the embedding. Every matrix is checked first, as the rows are when written. */
static edgellm_status check_finite_matrices(const gguf_file *in)
{
    edgellm_status st = EDGELLM_OK;
    float *row = NULL;
    for (uint64_t i = 0; st == EDGELLM_OK && i < ellm_gguf_tensor_count(in); i++) {
        const gguf_tensor_info *t = ellm_gguf_tensor_at(in, i);
        uint64_t rb = 0;
        if (t->n_dims < 2 || !ellm_row_bytes(t->type, t->ne[0], &rb))
            continue;
        float *grown = realloc(row, (size_t)t->ne[0] * sizeof *row);
        if (!grown) {
            st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for a row");
            break;
        }
        row = grown;
        for (uint64_t r = 0; st == EDGELLM_OK && r < t->n_elements / t->ne[0]; r++) {
            ellm_dequantize_row((ellm_type)t->type, (const uint8_t *)t->data + r * rb, row,
                                (int64_t)t->ne[0]);
            if (ellm_first_nonfinite(row, (int64_t)t->ne[0]) >= 0)
                st = ellm_fail(EDGELLM_ERR_FORMAT,
                               "tensor '%.*s' row %llu holds NaN or an infinite value: the input "
                               "model is broken and would only compute NaN; nothing was written",
                               (int)t->name.len, t->name.data, (unsigned long long)r);
        }
    }
    free(row);
    return st;
}

static edgellm_status quantize_with(const char *in_path, const char *out_path, const recipe *r,
                                    const ellm_quantize_options *options)
{
    ellm_quantize_options none = {0};
    const ellm_quantize_options *o = options ? options : &none;
    gguf_file *opened = NULL;
    edgellm_status st = o->input ? EDGELLM_OK : ellm_gguf_open(in_path, &opened);
    if (st != EDGELLM_OK)
        return st;
    const gguf_file *in = o->input ? o->input : opened;
    for (uint64_t i = 0; i < ellm_gguf_tensor_count(in); i++) {
        const gguf_tensor_info *t = ellm_gguf_tensor_at(in, i);
        if (!ellm_type_supported((ellm_type)t->type)) {
            /* The name lies in the mapping: the message is made before it is closed. */
            st = ellm_fail(EDGELLM_ERR_UNSUPPORTED,
                           "tensor '%.*s' is %s, which this build cannot read yet",
                           (int)t->name.len, t->name.data, ellm_type_name(t->type));
            ellm_gguf_close(opened);
            return st;
        }
    }
    if (o->quantize_matrix)
        st = check_finite_matrices(in);
    if (st != EDGELLM_OK) {
        ellm_gguf_close(opened);
        return st;
    }
    gguf_writer *w = ellm_gguf_writer_create();
    uint64_t n = ellm_gguf_tensor_count(in);
    /* The K-quant quantizers search per sub-block: use every core (a 1B model takes minutes). */
    ellm_threadpool *pool = NULL;
    if (ellm_threadpool_create(0, &pool) != EDGELLM_OK)
        pool = NULL; /* run on this thread alone */
    requant *jobs = calloc(n ? n : 1, sizeof *jobs);
    if (!w || !jobs)
        st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory");
    for (uint64_t i = 0; st == EDGELLM_OK && i < ellm_gguf_kv_count(in); i++) {
        const gguf_kv *kv = ellm_gguf_kv_at(in, i);
        if (is_training_state(kv->key))
            continue;
        char *key = ellm_gguf_str_dup(kv->key);
        if (!key) {
            st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory");
            break;
        }
        if ((kv->value.type == GGUF_TYPE_FLOAT32 || kv->value.type == GGUF_TYPE_FLOAT64) &&
            !isfinite(kv->value.v.f64))
            st = ellm_fail(EDGELLM_ERR_FORMAT,
                           "metadata '%s' is not a finite number: the input model is broken; "
                           "nothing was written",
                           key);
        else
            st = strcmp(key, "general.file_type") == 0
                     ? ellm_gguf_writer_set_u32(w, key, r->file_type)
                     : ellm_gguf_writer_set_value(w, key, &kv->value);
        free(key);
    }
    if (st == EDGELLM_OK && !ellm_gguf_find_kv(in, "general.file_type"))
        st = ellm_gguf_writer_set_u32(w, "general.file_type", r->file_type);
    model_shape shape = shape_of(in);
    int n_kept = 0, kept = 0;
    ellm_type *plan = calloc(n ? n : 1, sizeof *plan);
    bool *fell_back = calloc(n ? n : 1, sizeof *fell_back);
    ellm_type *wanted = calloc(n ? n : 1, sizeof *wanted);
    if (st == EDGELLM_OK && (!plan || !fell_back || !wanted))
        st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory");
    for (uint64_t i = 0; st == EDGELLM_OK && i < n; i++) {
        n_kept += !is_training_state(ellm_gguf_tensor_at(in, i)->name);
        plan[i] = choose(ellm_gguf_tensor_at(in, i), r, &shape, &fell_back[i], &wanted[i]);
    }
    if (st == EDGELLM_OK)
        plan_by_sensitivity(in, r, o, pool, plan);
    if (st == EDGELLM_OK)
        st = plan_head_trade(in, r, o, fell_back, plan);
    for (uint64_t i = 0; st == EDGELLM_OK && i < n; i++) {
        const gguf_tensor_info *t = ellm_gguf_tensor_at(in, i);
        if (is_training_state(t->name))
            continue;
        jobs[i] = (requant){t, plan[i], o, kept++, n_kept, pool, NULL, NULL, NULL, 0, NULL};
        char *name = ellm_gguf_str_dup(t->name);
        jobs[i].name = name;
        if (!name) {
            st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory");
            break;
        }
        if (t->n_dims >= 2)
            jobs[i].importance = importance_weights(o, name, jobs[i].type, (int64_t)t->ne[0]);
        if (jobs[i].importance && o->mean_value)
            jobs[i].mean_value = o->mean_value(o->user, name, (int64_t)t->ne[0]);
        if (jobs[i].importance && o->directions)
            jobs[i].directions = o->directions(o->user, name, (int64_t)t->ne[0], &jobs[i].n_dirs);
        if (!jobs[i].directions)
            jobs[i].n_dirs = 0;
        if (fell_back[i] && o->on_fallback)
            o->on_fallback(o->user, name, wanted[i], jobs[i].type);
        st = ellm_gguf_writer_add_tensor_fill(w, name, jobs[i].type, t->n_dims, t->ne,
                                              fill_requantized, &jobs[i]);
    }
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_write(w, out_path);
    ellm_gguf_writer_free(w);
    ellm_threadpool_free(pool);
    for (uint64_t i = 0; jobs && i < n; i++) {
        free((void *)jobs[i].importance);
        free(jobs[i].name);
    }
    free(jobs);
    free(plan);
    free(fell_back);
    free(wanted);
    ellm_gguf_close(opened);
    return st;
}
