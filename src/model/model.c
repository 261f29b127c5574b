/* Model creation (the architecture from the table in model/arch.c) and tensor binding. */
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
    *out = malloc((size_t)n * sizeof(float));
    if (!*out)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory to convert a tensor");
    for (int64_t r = 0; r < t->ne[1]; r++)
        ellm_dequantize_row(t->type, (const uint8_t *)t->data + r * t->row_bytes,
                            *out + r * t->ne[0], t->ne[0]);
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
