/* AWQ scale search and fold (awq.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "core/threadpool.h"
#include "model/arch.h"
#include "optimise/awq.h"
#include "quant/quant.h"

/* What the fold does to one tensor: columns multiplied by col_mul (norm weights: by 1 / s),
 * rows divided by row_div; importance = the imatrix's m_j / s_j^2 for scaled matrices. */
typedef struct awq_tensor {
    char name[96];
    int64_t n_cols;
    float *col_mul, *row_div, *importance;
} awq_tensor;

struct ellm_awq {
    awq_tensor *t;
    int n;
};

static awq_tensor *entry(ellm_awq *a, const char *name, int64_t n_cols)
{
    for (int i = 0; i < a->n; i++)
        if (!strcmp(a->t[i].name, name))
            return &a->t[i];
    awq_tensor *g = realloc(a->t, (size_t)(a->n + 1) * sizeof *g);
    if (!g)
        return NULL;
    a->t = g;
    awq_tensor *e = &g[a->n++];
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", name);
    e->n_cols = n_cols;
    return e;
}

/* A copy of src (n floats), NULL on failure. */
static float *dup_floats(const float *src, int64_t n)
{
    float *d = malloc((size_t)n * sizeof *d);
    if (d)
        memcpy(d, src, (size_t)n * sizeof *d);
    return d;
}

/* The scales of exponent alpha from mean squares m (n values), normalised so that
 * max * min = 1 (neither side of the fold grows without bound). */
static void scales_for(const float *m, int64_t n, float alpha, float *s)
{
    float lo = INFINITY, hi = 0;
    for (int64_t j = 0; j < n; j++) {
        s[j] = powf(fmaxf(m[j], 1e-12f), alpha / 2);
        lo = fminf(lo, s[j]);
        hi = fmaxf(hi, s[j]);
    }
    float norm = sqrtf(lo * hi);
    for (int64_t j = 0; j < n; j++)
        s[j] = norm > 0 ? s[j] / norm : 1.0f;
}

/* Importance-weighted error of the matrix's sampled rows quantized after scaling its columns
 * by s: sum_j m_j (w_j - q_j / s_j)^2 for weights w (at most 64 rows, evenly spaced). */
static double scaled_error(const gguf_tensor_info *t, ellm_type type, const float *m,
                           const float *s, float *row, float *scaled, float *w, float *back,
                           uint8_t *q)
{
    int64_t n = (int64_t)t->ne[0];
    uint64_t rows = t->n_elements / t->ne[0], stride = rows > 64 ? rows / 64 : 1;
    uint64_t rb;
    ellm_row_bytes(t->type, t->ne[0], &rb);
    for (int64_t j = 0; j < n; j++)
        w[j] = m[j] / (s[j] * s[j]) + 1e-30f;
    double err = 0;
    for (uint64_t i = 0; i < rows; i += stride) {
        ellm_dequantize_row((ellm_type)t->type, (const uint8_t *)t->data + i * rb, row, n);
        for (int64_t j = 0; j < n; j++)
            scaled[j] = row[j] * s[j];
        ellm_quantize_row_weighted(type, scaled, q, n, w);
        ellm_dequantize_row(type, q, back, n);
        for (int64_t j = 0; j < n; j++) {
            double e = (double)row[j] - (double)back[j] / s[j];
            err += (double)m[j] * e * e;
        }
    }
    return err;
}

/* One group: matrices sharing an input, folded into `producer` (a norm, divided element-wise;
 * or a matrix whose output rows are divided). */
typedef struct group {
    char label[48];
    const char *matrices[3];
    const char *producer;
    bool producer_is_norm;
} group;

#define N_ALPHAS 11 /* alpha = 0, 0.1, ..., 1 */

/* The column scales of the group's n columns for one alpha (sp: the producer's n_prod). */
static void group_scales(const float *mp, int64_t n_prod, int64_t n, int64_t head_dim,
                         int32_t n_rep, float alpha, float *sp, float *s)
{
    scales_for(mp, n_prod, alpha, sp);
    for (int64_t j = 0; j < n; j++)
        s[j] = sp[(j / head_dim / n_rep) * head_dim + j % head_dim];
}

/* The alphas are independent, so threads take interleaved ones, each with its own buffers
 * (buffer_floats per thread); every alpha's error is summed in the same order whatever the
 * split, so the choice does not depend on the thread count. */
typedef struct alpha_search {
    const gguf_tensor_info *const *mats;
    int n_mats;
    ellm_type type;
    const float *m, *mp;
    int64_t n, n_prod, head_dim;
    int32_t n_rep;
    float *buffers;
    size_t buffer_floats;
    double err[N_ALPHAS];
} alpha_search;

static void search_alphas(void *arg, int ith, int nth)
{
    alpha_search *j = arg;
    int64_t n = j->n;
    float *sp = j->buffers + (size_t)ith * j->buffer_floats, *s = sp + j->n_prod, *work = s + n;
    uint8_t *q = (uint8_t *)(work + 4 * n);
    for (int step = ith; step < N_ALPHAS; step += nth) {
        group_scales(j->mp, j->n_prod, n, j->head_dim, j->n_rep, 0.1f * (float)step, sp, s);
        double err = 0;
        for (int k = 0; k < j->n_mats; k++)
            err += scaled_error(j->mats[k], j->type, j->m, s, work, work + n, work + 2 * n,
                                work + 3 * n, q);
        j->err[step] = err;
    }
}

static edgellm_status search_group(ellm_awq *a, const gguf_file *f, const ellm_imatrix *im,
                                   ellm_type type, const group *g, int64_t head_dim, int32_t n_rep,
                                   ellm_threadpool *pool, float *alpha_out)
{
    *alpha_out = 0;
    const gguf_tensor_info *mats[3] = {0};
    int n_mats = 0;
    int64_t n = 0;
    for (int k = 0; k < 3 && g->matrices[k]; k++) {
        const gguf_tensor_info *t = ellm_gguf_find_tensor(f, g->matrices[k]);
        if (!t)
            continue;
        if (n && (int64_t)t->ne[0] != n)
            return EDGELLM_OK;
        n = (int64_t)t->ne[0];
        mats[n_mats++] = t;
    }
    const gguf_tensor_info *prod = ellm_gguf_find_tensor(f, g->producer);
    if (!n_mats || !prod || n % ellm_type_traits_of(type)->block_size != 0)
        return EDGELLM_OK;
    const float *m = ellm_imatrix_find(im, g->matrices[0], n);
    if (!m)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "--awq needs the imatrix statistics of '%s', which the file lacks",
                         g->matrices[0]);
    /* The producer has n / n_rep channels: attn_output's input repeats each KV head's values
     * for the n_rep query heads sharing it, so column j (head j / head_dim) takes the scale of
     * channel (j / head_dim / n_rep) * head_dim + j % head_dim, from their mean square. */
    int64_t n_prod = n / n_rep;
    int64_t prod_len = g->producer_is_norm ? (int64_t)prod->ne[0]
                                           : (int64_t)(prod->n_elements / prod->ne[0]);
    if (prod_len != n_prod)
        return EDGELLM_OK;
    /* Per thread: the producer's and the columns' scales, four rows of work and a quantized
     * row (4 bytes per value is more than any block type takes, plus a block's slack). */
    size_t buffer_floats = (size_t)n_prod + 6 * (size_t)n + 16;
    int nth = pool ? ellm_threadpool_size(pool) : 1;
    float *mp = calloc((size_t)n_prod, sizeof *mp), *sp = malloc((size_t)n_prod * sizeof *sp);
    float *best_s = malloc((size_t)n * sizeof *best_s);
    alpha_search job = {mats,
                        n_mats,
                        type,
                        m,
                        mp,
                        n,
                        n_prod,
                        head_dim,
                        n_rep,
                        malloc((size_t)nth * buffer_floats * sizeof(float)),
                        buffer_floats,
                        {0}};
    edgellm_status st = EDGELLM_OK;
    if (!mp || !sp || !best_s || !job.buffers) {
        st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the AWQ search");
        goto done;
    }
    for (int64_t j = 0; j < n; j++)
        mp[(j / head_dim / n_rep) * head_dim + j % head_dim] += m[j] / (float)n_rep;
    ellm_threadpool_run(pool, search_alphas, &job);
    double best = INFINITY;
    for (int step = 0; step < N_ALPHAS; step++)
        if (job.err[step] < best) {
            best = job.err[step];
            *alpha_out = 0.1f * (float)step;
        }
    if (*alpha_out == 0)
        goto done; /* plain quantization is best: nothing to fold */
    group_scales(mp, n_prod, n, head_dim, n_rep, *alpha_out, sp, best_s);
    for (int k = 0; k < n_mats; k++) {
        char name[96];
        snprintf(name, sizeof name, "%.*s", (int)mats[k]->name.len, mats[k]->name.data);
        awq_tensor *e = entry(a, name, n);
        if (!e || !(e->col_mul = dup_floats(best_s, n)) ||
            !(e->importance = malloc((size_t)n * sizeof(float)))) {
            st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory");
            goto done;
        }
        for (int64_t j = 0; j < n; j++)
            e->importance[j] = m[j] / (best_s[j] * best_s[j]);
    }
    for (int64_t c = 0; c < n_prod; c++)
        sp[c] = best_s[(c / head_dim) * head_dim * n_rep + c % head_dim];
    awq_tensor *p = entry(a, g->producer, (int64_t)prod->ne[0]);
    if (!p) {
        st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory");
        goto done;
    }
    if (g->producer_is_norm) {
        for (int64_t c = 0; c < n_prod; c++)
            sp[c] = 1.0f / sp[c];
        if (!(p->col_mul = dup_floats(sp, n_prod)))
            st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory");
    } else if (!(p->row_div = dup_floats(sp, n_prod))) {
        st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory");
    }
done:
    free(mp);
    free(sp);
    free(best_s);
    free(job.buffers);
    return st;
}

static uint32_t arch_u32(const gguf_file *f, const char *arch, const char *key)
{
    char k[128];
    uint32_t v = 0;
    snprintf(k, sizeof k, "%s.%s", arch, key);
    ellm_gguf_get_u32(f, k, &v);
    return v;
}

edgellm_status ellm_awq_plan(const gguf_file *f, const ellm_imatrix *im, ellm_type type,
                             void (*on_group)(void *user, const char *group, float alpha),
                             void *user, ellm_awq **out)
{
    *out = NULL;
    gguf_str arch_s = {0};
    char arch[32] = "";
    if (ellm_gguf_get_str(f, "general.architecture", &arch_s) == EDGELLM_OK)
        snprintf(arch, sizeof arch, "%.*s", (int)arch_s.len, arch_s.data);
    /* The fold assumes a plain RMSNorm * weight before q/k/v and gate/up, and v/up outputs that
     * reach attn_output/ffn_down linearly: the plain llama block. */
    const ellm_arch *row = NULL;
    if (ellm_arch_find(arch, strlen(arch), &row) != EDGELLM_OK || !ellm_arch_plain_block(row))
        return ellm_fail(EDGELLM_ERR_UNSUPPORTED,
                         "--awq supports models with the plain llama block (llama, mistral) so "
                         "far, not '%s'",
                         arch);
    if (!ellm_type_supported(type) || ellm_type_traits_of(type)->block_size <= 1)
        return ellm_fail(EDGELLM_ERR_UNSUPPORTED, "--awq needs a block-quantized target type");
    uint32_t n_layer = arch_u32(f, arch, "block_count"),
             n_embd = arch_u32(f, arch, "embedding_length");
    uint32_t n_head = arch_u32(f, arch, "attention.head_count");
    uint32_t n_head_kv = arch_u32(f, arch, "attention.head_count_kv");
    if (!n_head_kv)
        n_head_kv = n_head;
    if (!n_layer || !n_head || n_head % n_head_kv != 0 || n_embd % n_head != 0)
        return ellm_fail(EDGELLM_ERR_FORMAT, "the model's layer and head counts are missing or "
                                             "inconsistent");
    const gguf_tensor_info *vt = ellm_gguf_find_tensor(f, "blk.0.attn_v.weight");
    int64_t head_dim = vt && vt->n_dims >= 2 ? (int64_t)vt->ne[1] / n_head_kv : n_embd / n_head;
    ellm_awq *a = calloc(1, sizeof *a);
    if (!a)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory");
    /* Quantizing the sampled rows for every alpha is most of --awq's time: use every core. */
    ellm_threadpool *pool = NULL;
    if (ellm_threadpool_create(0, &pool) != EDGELLM_OK)
        pool = NULL; /* run on this thread alone */
    edgellm_status st = EDGELLM_OK;
    for (uint32_t il = 0; st == EDGELLM_OK && il < n_layer; il++) {
        char nq[64], nk[64], nv[64], no[64], ng[64], nu[64], nd[64], an[64], fn[64];
        snprintf(nq, sizeof nq, "blk.%u.attn_q.weight", il);
        snprintf(nk, sizeof nk, "blk.%u.attn_k.weight", il);
        snprintf(nv, sizeof nv, "blk.%u.attn_v.weight", il);
        snprintf(no, sizeof no, "blk.%u.attn_output.weight", il);
        snprintf(ng, sizeof ng, "blk.%u.ffn_gate.weight", il);
        snprintf(nu, sizeof nu, "blk.%u.ffn_up.weight", il);
        snprintf(nd, sizeof nd, "blk.%u.ffn_down.weight", il);
        snprintf(an, sizeof an, "blk.%u.attn_norm.weight", il);
        snprintf(fn, sizeof fn, "blk.%u.ffn_norm.weight", il);
        group groups[4] = {
            {"", {nq, nk, nv}, an, true},
            {"", {no, NULL, NULL}, nv, false},
            {"", {ng, nu, NULL}, fn, true},
            {"", {nd, NULL, NULL}, nu, false},
        };
        static const char *labels[4] = {"attn_qkv", "attn_output", "ffn_gate_up", "ffn_down"};
        for (int k = 0; st == EDGELLM_OK && k < 4; k++) {
            snprintf(groups[k].label, sizeof groups[k].label, "blk.%u.%s", il, labels[k]);
            float alpha = 0;
            bool heads = k == 1;
            st = search_group(a, f, im, type, &groups[k], heads ? head_dim : 1,
                              heads ? (int32_t)(n_head / n_head_kv) : 1, pool, &alpha);
            if (st == EDGELLM_OK && on_group)
                on_group(user, groups[k].label, alpha);
        }
    }
    ellm_threadpool_free(pool);
    if (st != EDGELLM_OK) {
        ellm_awq_free(a);
        return st;
    }
    *out = a;
    return EDGELLM_OK;
}

static const awq_tensor *find(const ellm_awq *a, const char *name)
{
    for (int i = 0; a && i < a->n; i++)
        if (!strcmp(a->t[i].name, name))
            return &a->t[i];
    return NULL;
}

void ellm_awq_transform_row(const ellm_awq *a, const char *tensor, uint64_t row, float *x,
                            int64_t n)
{
    const awq_tensor *e = find(a, tensor);
    if (!e || e->n_cols != n)
        return;
    if (e->col_mul)
        for (int64_t j = 0; j < n; j++)
            x[j] *= e->col_mul[j];
    if (e->row_div)
        for (int64_t j = 0; j < n; j++)
            x[j] /= e->row_div[row];
}

bool ellm_awq_restore_row(const ellm_awq *a, const char *tensor, uint64_t row, float *x, int64_t n)
{
    const awq_tensor *e = a ? find(a, tensor) : NULL;
    if (!e || e->n_cols != n || (!e->col_mul && !e->row_div))
        return false;
    if (e->col_mul)
        for (int64_t j = 0; j < n; j++)
            x[j] /= e->col_mul[j];
    if (e->row_div)
        for (int64_t j = 0; j < n; j++)
            x[j] *= e->row_div[row];
    return true;
}

const float *ellm_awq_importance(const ellm_awq *a, const char *tensor, int64_t n_cols)
{
    const awq_tensor *e = find(a, tensor);
    return e && e->n_cols == n_cols ? e->importance : NULL;
}

const float *ellm_awq_column_scales(const ellm_awq *a, const char *tensor, int64_t n_cols)
{
    const awq_tensor *e = find(a, tensor);
    /* Only scaled matrices carry importances; norms' col_mul holds the inverse scales. */
    return e && e->n_cols == n_cols && e->importance ? e->col_mul : NULL;
}

void ellm_awq_free(ellm_awq *a)
{
    if (!a)
        return;
    for (int i = 0; i < a->n; i++) {
        free(a->t[i].col_mul);
        free(a->t[i].row_div);
        free(a->t[i].importance);
    }
    free(a->t);
    free(a);
}
