/* Model creation (the architecture from the table in model/arch.c) and tensor binding. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "model/model_internal.h"
#include "quant/quant.h"

edgellm_status ellm_bind_tensor(const gguf_file *f, const char *name, int n_dims, const int64_t *ne,
                                bool required, ellm_tensor *out)
{
    memset(out, 0, sizeof *out);
    const gguf_tensor_info *t = ellm_gguf_find_tensor(f, name);
    if (!t) {
        if (required)
            return ellm_fail(EDGELLM_ERR_FORMAT, "tensor '%s' is missing from the model", name);
        return EDGELLM_OK;
    }
    bool shape_ok = true;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) {
        int64_t want = d < n_dims ? ne[d] : 1;
        if ((int64_t)t->ne[d] != want)
            shape_ok = false;
    }
    if (!shape_ok) {
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "tensor '%s' has shape [%llu, %llu, %llu] but the model's "
                         "hyper-parameters need [%lld, %lld]; the file is inconsistent",
                         name, (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
                         (unsigned long long)t->ne[2], (long long)ne[0],
                         (long long)(n_dims > 1 ? ne[1] : 1));
    }
    if (!ellm_type_supported((ellm_type)t->type))
        return ellm_fail(EDGELLM_ERR_UNSUPPORTED,
                         "tensor '%s' has type %s, which this build cannot compute with yet; "
                         "re-quantize the model to Q4_0, Q8_0, F16 or F32",
                         name, ellm_type_name(t->type));
    out->name = NULL; /* names live in the mapping unterminated; callers use the spec name */
    out->type = (ellm_type)t->type;
    out->n_dims = (int32_t)t->n_dims;
    for (int d = 0; d < 4; d++)
        out->ne[d] = (int64_t)t->ne[d];
    ellm_row_bytes(t->type, t->ne[0], &out->row_bytes);
    out->n_bytes = t->n_bytes;
    out->data = t->data;
    return EDGELLM_OK;
}

edgellm_status ellm_tensor_to_floats(const ellm_tensor *t, float **out)
{
    int64_t n = t->ne[0] * t->ne[1];
    bool by_four = t->row_order == ELLM_ROWS_BY_FOUR;
    int64_t grouped = by_four ? t->ne[1] / ELLM_BY_FOUR * ELLM_BY_FOUR : 0;
    void *plain = by_four ? malloc(t->row_bytes) : NULL;
    *out = malloc((size_t)n * sizeof(float));
    if (!*out || (by_four && !plain)) {
        free(*out);
        free(plain);
        *out = NULL;
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory to convert a tensor");
    }
    for (int64_t r = 0; r < t->ne[1]; r++) {
        const uint8_t *row = (const uint8_t *)t->data + r * t->row_bytes;
        if (r < grouped) {
            ellm_q4_0_row_of_four(row - r % ELLM_BY_FOUR * t->row_bytes, t->row_bytes,
                                  (int)(r % ELLM_BY_FOUR), plain);
            row = plain;
        }
        ellm_dequantize_row(t->type, row, *out + r * t->ne[0], t->ne[0]);
    }
    free(plain);
    return EDGELLM_OK;
}

/* Whether t is a Q4_0 matrix of at least four rows in plain order in the writable bytes
 * [bytes, bytes + size) that the kernel set in use reads in ELLM_ROWS_BY_FOUR order. */
static bool to_lay_out(const ellm_tensor *t, const uint8_t *bytes, size_t size)
{
    uintptr_t at = (uintptr_t)t->data, start = (uintptr_t)bytes;
    return t->data && t->type == ELLM_TYPE_Q4_0 && t->row_order == ELLM_ROWS_PLAIN &&
           t->ne[1] >= ELLM_BY_FOUR && ellm_rows_by_four_wanted(t->type) && at >= start &&
           at - start <= size && size - (at - start) >= t->n_bytes;
}

/* The matrices to lay out, their groups dealt out to the pool's threads: each thread takes its
 * share of every matrix's groups (the groups are independent), with its own scratch of 4 rows. */
typedef struct lay_out_job {
    ellm_tensor *const *ts;
    int n;
    uint8_t *scratch;
    size_t scratch_bytes; /* per thread */
} lay_out_job;

static void lay_out_share(void *arg, int ith, int nth)
{
    const lay_out_job *j = arg;
    for (int i = 0; i < j->n; i++) {
        const ellm_tensor *t = j->ts[i];
        int64_t groups = t->ne[1] / ELLM_BY_FOUR;
        int64_t g0 = groups * ith / nth, g1 = groups * (ith + 1) / nth;
        uint8_t *rows = (uint8_t *)(uintptr_t)t->data + g0 * ELLM_BY_FOUR * t->row_bytes;
        ellm_q4_0_rows_by_four(rows, (g1 - g0) * ELLM_BY_FOUR, t->row_bytes,
                               j->scratch + (size_t)ith * j->scratch_bytes);
    }
}

/* The matrices only matmuls read: the layers' and an output head of its own (a tied head is the
 * embedding table, whose rows are looked up one by one). */
static int matmul_only_tensors(ellm_model *m, ellm_tensor **out)
{
    int n = 0;
    for (int32_t il = 0; il < m->hp.n_layer; il++) {
        ellm_layer *l = &m->w.layers[il];
        ellm_tensor *ts[] = {&l->wq,       &l->wk,     &l->wv,       &l->wo,
                             &l->ffn_gate, &l->ffn_up, &l->ffn_down, &l->wqkv};
        for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
            if (out)
                out[n++] = ts[i];
            else
                n++;
    }
    if (!m->hp.tied_embeddings) {
        if (out)
            out[n] = &m->w.output;
        n++;
    }
    return n;
}

edgellm_status ellm_model_lay_out_rows(ellm_model *m, void *bytes, size_t size,
                                       ellm_threadpool *pool, int *laid_out)
{
    *laid_out = 0;
    int n = matmul_only_tensors(m, NULL);
    ellm_tensor **ts = malloc((size_t)n * sizeof *ts);
    if (!ts)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory to lay out the model's matrices");
    matmul_only_tensors(m, ts);
    int chosen = 0;
    uint64_t most = 0;
    for (int i = 0; i < n; i++)
        if (to_lay_out(ts[i], bytes, size)) {
            ts[chosen++] = ts[i];
            most = ts[i]->row_bytes > most ? ts[i]->row_bytes : most;
        }
    int nth = pool ? ellm_threadpool_size(pool) : 1;
    lay_out_job job = {.ts = ts, .n = chosen, .scratch_bytes = ELLM_BY_FOUR * most};
    job.scratch = chosen ? malloc((size_t)nth * job.scratch_bytes) : NULL;
    if (chosen && !job.scratch) {
        free(ts);
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory to lay out the model's matrices");
    }
    if (chosen && pool)
        ellm_threadpool_run(pool, lay_out_share, &job);
    else if (chosen)
        lay_out_share(&job, 0, 1);
    for (int i = 0; i < chosen; i++)
        ts[i]->row_order = ELLM_ROWS_BY_FOUR;
    *laid_out = chosen;
    free(job.scratch);
    free(ts);
    return EDGELLM_OK;
}

edgellm_status ellm_model_create(const gguf_file *f, ellm_model **out)
{
    *out = NULL;
    gguf_str arch;
    edgellm_status st = ellm_gguf_get_str(f, "general.architecture", &arch);
    if (st == EDGELLM_ERR_NOT_FOUND)
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "the file has no general.architecture; it is not a model");
    if (st != EDGELLM_OK)
        return st;
    const ellm_arch *a = NULL;
    if ((st = ellm_arch_find(arch.data, arch.len, &a)) != EDGELLM_OK)
        return st;
    ellm_model *m = calloc(1, sizeof *m);
    if (!m)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the model");
    m->arch = a;
    snprintf(m->hp.arch, sizeof m->hp.arch, "%s", a->name);
    st = ellm_llama_load(f, m);
    if (st != EDGELLM_OK) {
        ellm_model_free(m);
        return st;
    }
    *out = m;
    return EDGELLM_OK;
}

void ellm_model_free(ellm_model *m)
{
    if (!m)
        return;
    if (m->norms) {
        for (int32_t i = 0; i < m->hp.n_layer; i++) {
            ellm_layer_norms *n = &m->norms[i];
            free(n->attn_norm), free(n->ffn_norm), free(n->q_norm), free(n->k_norm);
            free(n->post_attn), free(n->post_ffw), free(n->bq), free(n->bk), free(n->bv);
        }
    }
    free(m->norms);
    free(m->output_norm);
    free(m->rope_factors);
    free(m->rope_factors_long);
    free(m->w.layers);
    free(m->layer_hp);
    free(m);
}

const ellm_hparams *ellm_model_hparams(const ellm_model *m) { return &m->hp; }
const ellm_weights *ellm_model_weights(const ellm_model *m) { return &m->w; }
