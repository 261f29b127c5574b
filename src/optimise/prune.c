/* Structured pruning: importance, the plan and the smaller GGUF (prune.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "core/threadpool.h"
#include "gguf/gguf.h"
#include "model/arch.h"
#include "model/model.h"
#include "optimise/calib.h"
#include "optimise/prune.h"
#include "quant/quant.h"

/* ---------------------------------------------------------------- block influence */

typedef struct influence {
    int32_t n_layer;
    int64_t n_embd;
    float **norm;      /* n_layer + 1: attn_norm weights, then output_norm */
    float *prev, *cur; /* residual directions of the rows, n_batch x n_embd */
    int32_t prev_depth, prev_rows;
    double *sum;  /* per layer, 1 - cos summed */
    double *rows; /* per layer */
} influence;

/* The normed input of layer `depth` (depth n_layer: the output norm) divided by its norm weight
 * has the direction of the residual stream entering it; consecutive depths give a layer's cos. */
static void observe_residual(void *user, int32_t layer, ellm_matrix_input which, const float *x,
                             int32_t n_rows, int64_t n_cols)
{
    influence *in = user;
    int32_t depth = which == ELLM_INPUT_ATTN ? layer : which == ELLM_INPUT_HEAD ? in->n_layer : -1;
    if (depth < 0 || n_cols != in->n_embd)
        return;
    const float *g = in->norm[depth];
    for (int64_t i = 0; i < (int64_t)n_rows * n_cols; i++) {
        float gj = g[i % n_cols];
        in->cur[i] = gj != 0 ? x[i] / gj : 0;
    }
    if (depth > 0 && in->prev_depth == depth - 1 && in->prev_rows == n_rows) {
        for (int32_t r = 0; r < n_rows; r++) {
            const float *a = in->prev + (size_t)r * n_cols, *b = in->cur + (size_t)r * n_cols;
            double ab = 0, aa = 0, bb = 0;
            for (int64_t j = 0; j < n_cols; j++) {
                ab += (double)a[j] * b[j];
                aa += (double)a[j] * a[j];
                bb += (double)b[j] * b[j];
            }
            if (aa > 0 && bb > 0) {
                in->sum[depth - 1] += 1 - ab / sqrt(aa * bb);
                in->rows[depth - 1] += 1;
            }
        }
    }
    float *t = in->prev;
    in->prev = in->cur;
    in->cur = t;
    in->prev_depth = depth;
    in->prev_rows = n_rows;
}

/* A 1-D tensor of the file as n floats, freshly allocated. */
static edgellm_status vector_of(const gguf_file *f, const char *name, int64_t n, float **out)
{
    const gguf_tensor_info *t = ellm_gguf_find_tensor(f, name);
    if (!t || (int64_t)t->n_elements != n)
        return ellm_fail(EDGELLM_ERR_FORMAT, "tensor '%s' with %lld values is missing", name,
                         (long long)n);
    if (!(*out = malloc((size_t)n * sizeof **out)))
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory");
    ellm_dequantize_row((ellm_type)t->type, t->data, *out, n);
    return EDGELLM_OK;
}

edgellm_status ellm_block_influence(const char *model_path, const edgellm_token *ids, int32_t n_ids,
                                    int32_t n_ctx, int32_t n_chunks, int32_t n_threads, float **out)
{
    *out = NULL;
    ellm_calib_run run;
    edgellm_status st = ellm_calib_open(model_path, ids, n_ids, n_ctx, n_chunks, n_threads, &run);
    if (st != EDGELLM_OK)
        return st;
    const ellm_hparams *hp = ellm_model_hparams(run.model);
    influence in = {0};
    in.n_layer = hp->n_layer;
    in.n_embd = hp->n_embd;
    in.prev_depth = -1;
    in.norm = calloc((size_t)hp->n_layer + 1, sizeof *in.norm);
    in.prev = malloc((size_t)run.n_batch * (size_t)hp->n_embd * sizeof *in.prev);
    in.cur = malloc((size_t)run.n_batch * (size_t)hp->n_embd * sizeof *in.cur);
    in.sum = calloc((size_t)hp->n_layer, sizeof *in.sum);
    in.rows = calloc((size_t)hp->n_layer, sizeof *in.rows);
    if (!in.norm || !in.prev || !in.cur || !in.sum || !in.rows)
        st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the block influence");
    for (int32_t il = 0; st == EDGELLM_OK && il <= hp->n_layer; il++) {
        char name[64];
        if (il < hp->n_layer)
            snprintf(name, sizeof name, "blk.%d.attn_norm.weight", (int)il);
        else
            snprintf(name, sizeof name, "output_norm.weight");
        st = vector_of(run.file, name, hp->n_embd, &in.norm[il]);
    }
    /* Every position's logits: the output norm's input (the last depth) is only observed for
     * the rows whose logits are computed. */
    if (st == EDGELLM_OK)
        st = ellm_calib_pass(&run, observe_residual, &in, true, NULL, NULL, NULL, NULL);
    float *bi = st == EDGELLM_OK ? malloc((size_t)hp->n_layer * sizeof *bi) : NULL;
    if (st == EDGELLM_OK && !bi)
        st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory");
    for (int32_t il = 0; st == EDGELLM_OK && il < hp->n_layer; il++)
        bi[il] = in.rows[il] > 0 ? (float)(in.sum[il] / in.rows[il]) : 0;
    for (int32_t il = 0; in.norm && il <= in.n_layer; il++)
        free(in.norm[il]);
    free(in.norm);
    free(in.prev);
    free(in.cur);
    free(in.sum);
    free(in.rows);
    ellm_calib_close(&run);
    if (st != EDGELLM_OK) {
        free(bi);
        return st;
    }
    *out = bi;
    return EDGELLM_OK;
}

/* ---------------------------------------------------------------- the plan */

typedef struct shape {
    int32_t n_layer, n_head, n_head_kv, n_ff, head_dim;
    int64_t n_embd;
    char arch[32];
} shape;

typedef struct plan {
    shape s;
    bool *layer_kept;   /* n_layer */
    bool *group_kept;   /* n_layer x n_head_kv */
    bool *channel_kept; /* n_layer x n_ff */
} plan;

typedef struct ranked {
    double score;
    int64_t index;
} ranked;

static int by_score(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    if (x->score != y->score)
        return x->score < y->score ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

static uint32_t arch_u32(const gguf_file *f, const char *arch, const char *key, edgellm_status *st)
{
    char k[128];
    uint32_t v = 0;
    snprintf(k, sizeof k, "%s.%s", arch, key);
    edgellm_status s = ellm_gguf_get_u32(f, k, &v);
    if (s != EDGELLM_OK && s != EDGELLM_ERR_NOT_FOUND && *st == EDGELLM_OK)
        *st = ellm_fail(EDGELLM_ERR_UNSUPPORTED,
                        "metadata '%s' is not a single number: the model already has layers of "
                        "different sizes; prune the original model",
                        k);
    return v;
}

static edgellm_status read_shape(const gguf_file *f, shape *s)
{
    gguf_str a = {0};
    if (ellm_gguf_get_str(f, "general.architecture", &a) == EDGELLM_OK)
        snprintf(s->arch, sizeof s->arch, "%.*s", (int)(a.len < 31 ? a.len : 31), a.data);
    const ellm_arch *row = NULL;
    if (ellm_arch_find(s->arch, strlen(s->arch), &row) != EDGELLM_OK || !ellm_arch_plain_block(row))
        return ellm_fail(EDGELLM_ERR_UNSUPPORTED,
                         "prune supports models with the plain llama block (llama, mistral) so "
                         "far, not '%s'",
                         s->arch);
    edgellm_status st = EDGELLM_OK;
    s->n_layer = (int32_t)arch_u32(f, s->arch, "block_count", &st);
    s->n_embd = arch_u32(f, s->arch, "embedding_length", &st);
    s->n_head = (int32_t)arch_u32(f, s->arch, "attention.head_count", &st);
    s->n_head_kv = (int32_t)arch_u32(f, s->arch, "attention.head_count_kv", &st);
    s->n_ff = (int32_t)arch_u32(f, s->arch, "feed_forward_length", &st);
    s->head_dim = (int32_t)arch_u32(f, s->arch, "attention.key_length", &st);
    if (st != EDGELLM_OK)
        return st;
    if (!s->n_head_kv)
        s->n_head_kv = s->n_head;
    if (!s->head_dim && s->n_head)
        s->head_dim = (int32_t)(s->n_embd / s->n_head);
    if (!s->n_layer || !s->n_embd || !s->n_head || !s->n_ff || !s->head_dim ||
        s->n_head % s->n_head_kv != 0)
        return ellm_fail(EDGELLM_ERR_FORMAT, "the model's layer, head or FFN counts are missing "
                                             "or inconsistent");
    for (int32_t il = 0; il < s->n_layer; il++) {
        static const char *const needed[] = {"attn_q",   "attn_k", "attn_v",  "attn_output",
                                             "ffn_gate", "ffn_up", "ffn_down"};
        static const char *const refused[] = {"attn_q.bias", "attn_k.bias", "attn_v.bias",
                                              "attn_qkv.weight"};
        char name[96];
        for (size_t k = 0; k < sizeof needed / sizeof needed[0]; k++) {
            snprintf(name, sizeof name, "blk.%d.%s.weight", (int)il, needed[k]);
            if (!ellm_gguf_find_tensor(f, name))
                return ellm_fail(EDGELLM_ERR_UNSUPPORTED,
                                 "tensor '%s' is missing: prune needs separate q/k/v, output, "
                                 "gate, up and down matrices",
                                 name);
        }
        for (size_t k = 0; k < sizeof refused / sizeof refused[0]; k++) {
            snprintf(name, sizeof name, "blk.%d.%s", (int)il, refused[k]);
            if (ellm_gguf_find_tensor(f, name))
                return ellm_fail(EDGELLM_ERR_UNSUPPORTED,
                                 "tensor '%s': prune does not handle projection biases or fused "
                                 "matrices yet",
                                 name);
        }
    }
    return EDGELLM_OK;
}

/* Per column of a matrix (ne[0] columns), the sum over rows of the squared weights. */
static edgellm_status column_norms(const gguf_file *f, const char *name, int64_t n_cols,
                                   double *out)
{
    const gguf_tensor_info *t = ellm_gguf_find_tensor(f, name);
    if (!t || t->n_dims != 2 || (int64_t)t->ne[0] != n_cols)
        return ellm_fail(EDGELLM_ERR_FORMAT, "tensor '%s' does not have %lld columns", name,
                         (long long)n_cols);
    uint64_t rb;
    ellm_row_bytes(t->type, t->ne[0], &rb);
    float *row = malloc((size_t)n_cols * sizeof *row);
    if (!row)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory");
    memset(out, 0, (size_t)n_cols * sizeof *out);
    for (uint64_t r = 0; r < t->ne[1]; r++) {
        ellm_dequantize_row((ellm_type)t->type, (const uint8_t *)t->data + r * rb, row, n_cols);
        for (int64_t j = 0; j < n_cols; j++)
            out[j] += (double)row[j] * row[j];
    }
    free(row);
    return EDGELLM_OK;
}

/* Scores relative to their layer's total (layers differ in scale; a unit's share of its layer's
 * output is what ranks across layers). Dropped layers' units rank last: they go anyway and must
 * not use the budget. */
static void share_of_layer(ranked *r, int32_t n_layer, int64_t per_layer, const bool *layer_kept)
{
    for (int32_t il = 0; il < n_layer; il++) {
        ranked *l = r + (int64_t)il * per_layer;
        double total = 0;
        for (int64_t k = 0; k < per_layer; k++)
            total += l[k].score;
        for (int64_t k = 0; k < per_layer; k++)
            l[k].score = !layer_kept[il] ? INFINITY : total > 0 ? l[k].score / total : 0;
    }
}

/* Removes the `count` lowest of n scored units (unit i of layer i / per_layer), refusing a plan
 * that empties a layer. */
static edgellm_status remove_lowest(ranked *r, int64_t n, int64_t per_layer, int64_t count,
                                    bool *kept, const plan *p, const char *what, float fraction)
{
    qsort(r, (size_t)n, sizeof *r, by_score);
    for (int64_t i = 0; i < n; i++)
        kept[i] = true;
    for (int64_t i = 0; i < count; i++)
        kept[r[i].index] = false;
    for (int32_t il = 0; il < p->s.n_layer; il++) {
        if (!p->layer_kept[il])
            continue;
        int64_t left = 0;
        for (int64_t k = 0; k < per_layer; k++)
            left += kept[il * per_layer + k];
        if (!left)
            return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                             "--%s %g would remove every %s of layer %d (the least important "
                             "there are all there); use a smaller fraction, or --layers to drop "
                             "whole layers",
                             what, fraction, !strcmp(what, "heads") ? "head" : "FFN channel",
                             (int)il);
    }
    return EDGELLM_OK;
}

/* A quantized ffn_down keeps its type only when its kept columns fill whole blocks
 * (column_type); otherwise it would be written as F16, making the pruned file larger and slower
 * than the original. So each layer's kept count goes to the nearest multiple of the block (at
 * least one block): the most important removed channels come back, or the least important kept
 * ones go too (r sorted ascending by remove_lowest, its first `removed` entries the removed
 * ones). The total removed then differs from the asked fraction by less than half a block per
 * layer. */
static void keep_whole_blocks(const gguf_file *f, const ranked *r, int64_t n, int64_t removed,
                              plan *p)
{
    const shape *s = &p->s;
    for (int32_t il = 0; il < s->n_layer; il++) {
        char name[96];
        snprintf(name, sizeof name, "blk.%d.ffn_down.weight", (int)il);
        const gguf_tensor_info *t = ellm_gguf_find_tensor(f, name);
        const ellm_type_traits *tr = t ? ellm_type_traits_of((ellm_type)t->type) : NULL;
        if (!p->layer_kept[il] || !tr || tr->block_size <= 1)
            continue;
        int64_t block = tr->block_size;
        bool *kept = p->channel_kept + (int64_t)il * s->n_ff;
        int64_t left = 0;
        for (int64_t c = 0; c < s->n_ff; c++)
            left += kept[c];
        int64_t want = (left + block / 2) / block * block;
        want = want < block ? block : want;
        for (int64_t i = removed - 1; i >= 0 && left < want; i--)
            if (r[i].index / s->n_ff == il && !kept[r[i].index % s->n_ff]) {
                kept[r[i].index % s->n_ff] = true;
                left++;
            }
        for (int64_t i = removed; i < n && left > want; i++)
            if (r[i].index / s->n_ff == il && kept[r[i].index % s->n_ff]) {
                kept[r[i].index % s->n_ff] = false;
                left--;
            }
    }
}

static edgellm_status make_plan(const gguf_file *f, const ellm_prune_params *pp, plan *p)
{
    const shape *s = &p->s;
    int32_t rep = s->n_head / s->n_head_kv;
    int64_t n_groups = (int64_t)s->n_layer * s->n_head_kv, n_chan = (int64_t)s->n_layer * s->n_ff;
    p->layer_kept = malloc((size_t)s->n_layer * sizeof *p->layer_kept);
    p->group_kept = malloc((size_t)n_groups * sizeof *p->group_kept);
    p->channel_kept = malloc((size_t)n_chan * sizeof *p->channel_kept);
    int64_t q_dim = (int64_t)s->n_head * s->head_dim;
    int64_t widest = q_dim > s->n_ff ? q_dim : s->n_ff;
    ranked *r = malloc((size_t)(n_chan > n_groups ? n_chan : n_groups) * sizeof *r);
    double *norms = malloc((size_t)widest * sizeof *norms);
    edgellm_status st = EDGELLM_OK;
    if (!p->layer_kept || !p->group_kept || !p->channel_kept || !r || !norms)
        st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the pruning plan");
    for (int32_t il = 0; st == EDGELLM_OK && il < s->n_layer; il++)
        p->layer_kept[il] = true;
    if (st == EDGELLM_OK && pp->layers > 0) {
        for (int32_t il = 0; il < s->n_layer; il++)
            r[il] = (ranked){pp->block_influence[il], il};
        qsort(r, (size_t)s->n_layer, sizeof *r, by_score);
        for (int32_t i = 0; i < pp->layers; i++)
            p->layer_kept[r[i].index] = false;
    }
    /* Head groups: the activation-weighted size of their attn_output columns. */
    for (int32_t il = 0; st == EDGELLM_OK && il < s->n_layer; il++) {
        char name[96];
        snprintf(name, sizeof name, "blk.%d.attn_output.weight", (int)il);
        st = column_norms(f, name, q_dim, norms);
        const float *m = pp->im ? ellm_imatrix_find(pp->im, name, q_dim) : NULL;
        for (int32_t g = 0; st == EDGELLM_OK && g < s->n_head_kv; g++) {
            double score = 0;
            for (int64_t j = (int64_t)g * rep * s->head_dim;
                 j < (int64_t)(g + 1) * rep * s->head_dim; j++)
                score += (m ? m[j] : 1.0) * norms[j];
            int64_t i = (int64_t)il * s->n_head_kv + g;
            r[i] = (ranked){score, i};
        }
    }
    if (st == EDGELLM_OK)
        share_of_layer(r, s->n_layer, s->n_head_kv, p->layer_kept);
    if (st == EDGELLM_OK)
        st = remove_lowest(r, n_groups, s->n_head_kv, lround(pp->heads * (double)n_groups),
                           p->group_kept, p, "heads", pp->heads);
    for (int32_t il = 0; st == EDGELLM_OK && il < s->n_layer; il++) {
        char name[96];
        snprintf(name, sizeof name, "blk.%d.ffn_down.weight", (int)il);
        st = column_norms(f, name, s->n_ff, norms);
        const float *m = pp->im ? ellm_imatrix_find(pp->im, name, s->n_ff) : NULL;
        for (int32_t c = 0; st == EDGELLM_OK && c < s->n_ff; c++) {
            int64_t i = (int64_t)il * s->n_ff + c;
            r[i] = (ranked){(m ? m[c] : 1.0) * norms[c], i};
        }
    }
    if (st == EDGELLM_OK)
        share_of_layer(r, s->n_layer, s->n_ff, p->layer_kept);
    if (st == EDGELLM_OK)
        st = remove_lowest(r, n_chan, s->n_ff, lround(pp->ffn * (double)n_chan), p->channel_kept, p,
                           "ffn", pp->ffn);
    if (st == EDGELLM_OK)
        keep_whole_blocks(f, r, n_chan, lround(pp->ffn * (double)n_chan), p);
    free(r);
    free(norms);
    return st;
}

static void free_plan(plan *p)
{
    free(p->layer_kept);
    free(p->group_kept);
    free(p->channel_kept);
}

/* ---------------------------------------------------------------- writing */

typedef enum selection { SELECT_ALL, SELECT_ROWS, SELECT_COLUMNS } selection;

typedef struct tensor_job {
    const gguf_tensor_info *src;
    ellm_type type;
    selection how;
    int64_t *index; /* kept (or with zeroed, zeroed) rows or columns */
    int64_t n_index;
    bool zeroed;
} tensor_job;

static edgellm_status fill_tensor(void *user, void *dst, uint64_t n_bytes)
{
    const tensor_job *j = user;
    const gguf_tensor_info *t = j->src;
    uint64_t src_rb = 0, dst_rb = 0, n_rows = t->n_elements / t->ne[0];
    int64_t n_src = (int64_t)t->ne[0];
    ellm_row_bytes(t->type, t->ne[0], &src_rb);
    const uint8_t *data = t->data;
    if (j->how != SELECT_COLUMNS) {
        uint64_t done = j->how == SELECT_ALL ? n_bytes : 0;
        if (j->how == SELECT_ALL)
            memcpy(dst, data, n_bytes);
        for (int64_t i = 0; j->how == SELECT_ROWS && i < j->n_index; i++, done += src_rb)
            memcpy((uint8_t *)dst + done, data + (uint64_t)j->index[i] * src_rb, src_rb);
        return done == n_bytes ? EDGELLM_OK
                               : ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "internal size mismatch");
    }
    /* Columns kept (or, zeroed, the removed ones set to 0): through float, back to the type. */
    int64_t n_dst = j->zeroed ? n_src : j->n_index;
    ellm_row_bytes(j->type, (uint64_t)n_dst, &dst_rb);
    if (dst_rb * n_rows != n_bytes)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "internal size mismatch");
    float *row = malloc((size_t)n_src * sizeof *row), *out = malloc((size_t)n_dst * sizeof *out);
    if (!row || !out) {
        free(row);
        free(out);
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory");
    }
    for (uint64_t r = 0; r < n_rows; r++) {
        ellm_dequantize_row((ellm_type)t->type, data + r * src_rb, row, n_src);
        if (j->zeroed) {
            memcpy(out, row, (size_t)n_src * sizeof *out);
            for (int64_t i = 0; i < j->n_index; i++)
                out[j->index[i]] = 0;
        } else {
            for (int64_t i = 0; i < j->n_index; i++)
                out[i] = row[j->index[i]];
        }
        ellm_quantize_row(j->type, out, (uint8_t *)dst + r * dst_rb, n_dst);
    }
    free(row);
    free(out);
    return EDGELLM_OK;
}

/* The type a column-pruned matrix is written in: its own where the new rows still split into
 * its blocks, else F16 (float formats stay as they are). */
static ellm_type column_type(ellm_type type, int64_t n_cols)
{
    const ellm_type_traits *tr = ellm_type_traits_of(type);
    if (tr && ellm_type_supported(type) && n_cols % tr->block_size == 0)
        return type;
    return ELLM_TYPE_F16;
}

/* Which rows/columns of a layer matrix survive: per head group (rows or columns of head_dim
 * values, rep query heads per group for attn_q/attn_output), or per FFN channel. */
static int64_t kept_indices(const plan *p, int32_t il, const char *matrix, bool invert,
                            int64_t *index, selection *how)
{
    const shape *s = &p->s;
    int32_t rep = s->n_head / s->n_head_kv;
    int64_t n = 0;
    bool heads_q = !strcmp(matrix, "attn_q") || !strcmp(matrix, "attn_output");
    bool heads_kv = !strcmp(matrix, "attn_k") || !strcmp(matrix, "attn_v");
    bool ffn = !strcmp(matrix, "ffn_gate") || !strcmp(matrix, "ffn_up") ||
               !strcmp(matrix, "ffn_down");
    *how = !strcmp(matrix, "attn_output") || !strcmp(matrix, "ffn_down") ? SELECT_COLUMNS
                                                                         : SELECT_ROWS;
    if (heads_q || heads_kv) {
        int32_t per_group = heads_q ? rep : 1;
        for (int32_t g = 0; g < s->n_head_kv; g++)
            if (p->group_kept[(int64_t)il * s->n_head_kv + g] != invert)
                for (int64_t j = 0; j < (int64_t)per_group * s->head_dim; j++)
                    index[n++] = (int64_t)g * per_group * s->head_dim + j;
    } else if (ffn) {
        for (int32_t c = 0; c < s->n_ff; c++)
            if (p->channel_kept[(int64_t)il * s->n_ff + c] != invert)
                index[n++] = c;
    } else {
        *how = SELECT_ALL;
    }
    return n;
}

/* Per-layer counts: one number when every kept layer has the same, else an array. */
static edgellm_status set_counts(gguf_writer *w, const char *arch, const char *key,
                                 const uint32_t *counts, int32_t n)
{
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    bool same = true;
    for (int32_t i = 1; i < n; i++)
        same = same && counts[i] == counts[0];
    return same ? ellm_gguf_writer_set_u32(w, k, counts[0])
                : ellm_gguf_writer_set_array(w, k, GGUF_TYPE_UINT32, counts, (uint64_t)n);
}

static edgellm_status write_pruned(const gguf_file *in, const char *out_path, const plan *p,
                                   const ellm_prune_params *pp)
{
    const shape *s = &p->s;
    int32_t *new_layer = malloc((size_t)s->n_layer * sizeof *new_layer);
    uint32_t *heads = malloc((size_t)s->n_layer * 3 * sizeof *heads);
    uint64_t n_tensors = ellm_gguf_tensor_count(in);
    tensor_job *jobs = calloc(n_tensors ? n_tensors : 1, sizeof *jobs);
    gguf_writer *w = ellm_gguf_writer_create();
    int32_t rep = s->n_head / s->n_head_kv, n_kept = 0;
    edgellm_status st = new_layer && heads && jobs && w
                            ? EDGELLM_OK
                            : ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory");
    uint32_t *kv_heads = heads ? heads + s->n_layer : NULL,
             *ffn = heads ? heads + 2 * s->n_layer : NULL;
    for (int32_t il = 0; st == EDGELLM_OK && il < s->n_layer; il++) {
        new_layer[il] = -1;
        uint32_t groups = 0, channels = 0;
        for (int32_t g = 0; g < s->n_head_kv; g++)
            groups += p->group_kept[(int64_t)il * s->n_head_kv + g];
        for (int32_t c = 0; c < s->n_ff; c++)
            channels += p->channel_kept[(int64_t)il * s->n_ff + c];
        if (pp->on_layer)
            pp->on_layer(pp->user, il, !p->layer_kept[il], s->n_head,
                         p->layer_kept[il] ? (int32_t)groups * rep : 0, s->n_ff,
                         p->layer_kept[il] ? (int32_t)channels : 0);
        if (!p->layer_kept[il] && !pp->zeroed)
            continue;
        new_layer[il] = n_kept;
        heads[n_kept] = pp->zeroed ? (uint32_t)s->n_head : groups * (uint32_t)rep;
        kv_heads[n_kept] = pp->zeroed ? (uint32_t)s->n_head_kv : groups;
        ffn[n_kept] = pp->zeroed ? (uint32_t)s->n_ff : channels;
        n_kept++;
    }
    char key_of[4][64];
    snprintf(key_of[0], sizeof key_of[0], "%s.block_count", s->arch);
    snprintf(key_of[1], sizeof key_of[1], "%s.attention.head_count", s->arch);
    snprintf(key_of[2], sizeof key_of[2], "%s.attention.head_count_kv", s->arch);
    snprintf(key_of[3], sizeof key_of[3], "%s.feed_forward_length", s->arch);
    for (uint64_t i = 0; st == EDGELLM_OK && i < ellm_gguf_kv_count(in); i++) {
        const gguf_kv *kv = ellm_gguf_kv_at(in, i);
        bool replaced = false;
        for (int k = 0; k < 4; k++)
            replaced = replaced || ellm_gguf_str_eq(kv->key, key_of[k]);
        char *key = ellm_gguf_str_dup(kv->key);
        if (!key)
            st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory");
        else if (!replaced)
            st = ellm_gguf_writer_set_value(w, key, &kv->value);
        free(key);
    }
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_set_u32(w, key_of[0], (uint32_t)n_kept);
    if (st == EDGELLM_OK)
        st = set_counts(w, s->arch, "attention.head_count", heads, n_kept);
    if (st == EDGELLM_OK)
        st = set_counts(w, s->arch, "attention.head_count_kv", kv_heads, n_kept);
    if (st == EDGELLM_OK)
        st = set_counts(w, s->arch, "feed_forward_length", ffn, n_kept);
    /* Fewer heads no longer give the head size as n_embd / n_head. */
    char key[128];
    snprintf(key, sizeof key, "%s.attention.key_length", s->arch);
    if (st == EDGELLM_OK && !ellm_gguf_find_kv(in, key))
        st = ellm_gguf_writer_set_u32(w, key, (uint32_t)s->head_dim);
    snprintf(key, sizeof key, "%s.attention.value_length", s->arch);
    if (st == EDGELLM_OK && !ellm_gguf_find_kv(in, key))
        st = ellm_gguf_writer_set_u32(w, key, (uint32_t)s->head_dim);
    int64_t widest = (int64_t)s->n_head * s->head_dim > s->n_ff ? (int64_t)s->n_head * s->head_dim
                                                                : s->n_ff;
    for (uint64_t i = 0; st == EDGELLM_OK && i < n_tensors; i++) {
        const gguf_tensor_info *t = ellm_gguf_tensor_at(in, i);
        tensor_job *j = &jobs[i];
        j->src = t;
        j->type = (ellm_type)t->type;
        j->zeroed = pp->zeroed;
        char name[160], matrix[64] = "";
        snprintf(name, sizeof name, "%.*s", (int)(t->name.len < 159 ? t->name.len : 159),
                 t->name.data);
        int il = -1, end = 0;
        uint64_t ne[4] = {t->ne[0], t->ne[1], t->ne[2], t->ne[3]};
        if (sscanf(name, "blk.%d.%63[^.]%n", &il, matrix, &end) == 2 && il >= 0 &&
            il < s->n_layer) {
            if (new_layer[il] < 0)
                continue;
            char rest[96];
            snprintf(rest, sizeof rest, "%s", name + end);
            snprintf(name, sizeof name, "blk.%d.%s%s", (int)new_layer[il], matrix, rest);
            bool weight = !strcmp(rest, ".weight") && t->n_dims == 2;
            if (weight) {
                if (!(j->index = malloc((size_t)widest * sizeof *j->index))) {
                    st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory");
                    break;
                }
                bool layer_gone = !p->layer_kept[il]; /* only with zeroed */
                j->n_index = kept_indices(p, il, matrix, pp->zeroed, j->index, &j->how);
                if (pp->zeroed && j->how == SELECT_COLUMNS && layer_gone) {
                    j->n_index = (int64_t)t->ne[0];
                    for (int64_t c = 0; c < j->n_index; c++)
                        j->index[c] = c;
                } else if (pp->zeroed && j->how == SELECT_ROWS) {
                    j->how = SELECT_ALL; /* zeroing the consumer's columns is enough */
                }
                if (!pp->zeroed && j->how == SELECT_ROWS)
                    ne[1] = (uint64_t)j->n_index;
                if (!pp->zeroed && j->how == SELECT_COLUMNS) {
                    ne[0] = (uint64_t)j->n_index;
                    j->type = column_type(j->type, j->n_index);
                } else if (pp->zeroed && j->how == SELECT_COLUMNS) {
                    j->type = column_type(j->type, (int64_t)t->ne[0]);
                }
            }
        }
        st = ellm_gguf_writer_add_tensor_fill(w, name, j->type, t->n_dims, ne, fill_tensor, j);
    }
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_write(w, out_path);
    ellm_gguf_writer_free(w);
    for (uint64_t i = 0; jobs && i < n_tensors; i++)
        free(jobs[i].index);
    free(jobs);
    free(heads);
    free(new_layer);
    return st;
}

edgellm_status ellm_prune_model(const char *in_path, const char *out_path,
                                const ellm_prune_params *pp)
{
    if (!(pp->heads >= 0 && pp->heads < 1) || !(pp->ffn >= 0 && pp->ffn < 1))
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "a pruning fraction must be at least 0 and below 1 (got %g)",
                         !(pp->heads >= 0 && pp->heads < 1) ? pp->heads : pp->ffn);
    gguf_file *in = NULL;
    edgellm_status st = ellm_gguf_open(in_path, &in);
    plan p = {0};
    if (st == EDGELLM_OK)
        st = read_shape(in, &p.s);
    if (st == EDGELLM_OK && (pp->layers < 0 || pp->layers >= p.s.n_layer))
        st = ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                       "--layers %d: the model has %d layers; drop at least 1 and at most %d",
                       pp->layers, p.s.n_layer, p.s.n_layer - 1);
    if (st == EDGELLM_OK && pp->layers > 0 && !pp->block_influence)
        st = ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                       "dropping layers ranks them by block influence on calibration text: give "
                       "-f CALIB.txt");
    if (st == EDGELLM_OK)
        st = make_plan(in, pp, &p);
    if (st == EDGELLM_OK)
        st = write_pruned(in, out_path, &p, pp);
    free_plan(&p);
    ellm_gguf_close(in);
    return st;
}
