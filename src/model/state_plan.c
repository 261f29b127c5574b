/* The state memory of a model that is not at hand (a size class to advise on): a model of those
 * hyper-parameters whose matrices all have one type, measured by ellm_state_memory itself, so a
 * plan for a shape and the allocation for a loaded model come from the same layout. */
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "model/model_internal.h"

static ellm_tensor matrix(ellm_type type, int64_t n_in, int64_t n_out)
{
    /* The layout only asks whether a matrix is present (a non-NULL data pointer), never reads it. */
    static const char present;
    return (ellm_tensor){.type = type, .ne = {n_in, n_out, 1, 1}, .n_dims = 2, .data = &present};
}

edgellm_status ellm_state_memory_for_shape(const ellm_hparams *hp, ellm_type matrix_type,
                                           const ellm_state_params *params, uint64_t *kv_bytes,
                                           uint64_t *scratch_bytes)
{
    if (hp->n_layer <= 0 || hp->n_embd <= 0 || hp->n_head <= 0 || hp->n_head_kv <= 0 ||
        hp->head_dim <= 0 || hp->n_ff <= 0 || hp->n_vocab <= 0)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "a shape to plan needs positive layer, width, head, FFN and vocabulary "
                         "sizes");
    ellm_model m;
    memset(&m, 0, sizeof m);
    m.hp = *hp;
    m.w.layers = calloc((size_t)hp->n_layer, sizeof *m.w.layers);
    if (!m.w.layers)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "out of memory planning a model shape");
    int64_t q_dim = (int64_t)hp->n_head * hp->head_dim,
            kv_dim = (int64_t)hp->n_head_kv * hp->head_dim;
    for (int32_t il = 0; il < hp->n_layer; il++) {
        ellm_layer *l = &m.w.layers[il];
        l->wq = matrix(matrix_type, hp->n_embd, q_dim);
        l->wk = matrix(matrix_type, hp->n_embd, kv_dim);
        l->wv = matrix(matrix_type, hp->n_embd, kv_dim);
        l->wo = matrix(matrix_type, q_dim, hp->n_embd);
        l->ffn_gate = matrix(matrix_type, hp->n_embd, hp->n_ff);
        l->ffn_up = matrix(matrix_type, hp->n_embd, hp->n_ff);
        l->ffn_down = matrix(matrix_type, hp->n_ff, hp->n_embd);
    }
    m.w.output = matrix(matrix_type, hp->n_embd, hp->n_vocab);
    ellm_state_memory(&m, params, kv_bytes, scratch_bytes);
    free(m.w.layers);
    return EDGELLM_OK;
}
