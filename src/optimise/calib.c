#define _POSIX_C_SOURCE 200809L
/* The calibration run shared by imatrix, GPTQ and prune (calib.h). */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/status.h"
#include "optimise/calib.h"

double ellm_calib_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

edgellm_status ellm_calib_renew_state(ellm_calib_run *r)
{
    ellm_state_free(r->state);
    r->state = NULL;
    ellm_state_params sp = {.n_ctx = r->n_ctx,
                            .n_batch = r->n_batch,
                            .kv_type = EDGELLM_KV_F32,
                            .n_threads = ellm_threadpool_size(r->pool)};
    return ellm_state_create(r->model, &sp, &r->state);
}

edgellm_status ellm_calib_open(const char *model_path, const edgellm_token *ids, int32_t n_ids,
                               int32_t n_ctx, int32_t n_chunks, int32_t n_threads,
                               ellm_calib_run *r)
{
    memset(r, 0, sizeof *r);
    r->carried_layer = -1;
    if (n_ctx < 2)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "the chunk size must be at least 2 tokens");
    if (n_ids < n_ctx)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "the calibration text has %d tokens, fewer than one chunk of %d; give "
                         "more text or a smaller --ctx",
                         n_ids, n_ctx);
    r->ids = ids;
    r->n_ctx = n_ctx;
    r->n_chunks = n_ids / n_ctx;
    if (n_chunks > 0 && n_chunks < r->n_chunks)
        r->n_chunks = n_chunks;
    r->n_batch = n_ctx < 512 ? n_ctx : 512;
    edgellm_status st = ellm_gguf_open(model_path, &r->file);
    if (st == EDGELLM_OK)
        st = ellm_model_create(r->file, &r->model);
    if (st == EDGELLM_OK)
        st = ellm_threadpool_create(n_threads, &r->pool);
    const ellm_hparams *hp = r->model ? ellm_model_hparams(r->model) : NULL;
    if (st == EDGELLM_OK)
        st = ellm_calib_renew_state(r);
    for (int32_t i = 0; st == EDGELLM_OK && i < n_ids; i++)
        if (ids[i] < 0 || ids[i] >= hp->n_vocab)
            st = ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                           "calibration token id %d at position %d is outside the vocabulary "
                           "(0..%d)",
                           ids[i], i, hp->n_vocab - 1);
    if (st == EDGELLM_OK &&
        !(r->logits = malloc((size_t)r->n_batch * (size_t)hp->n_vocab * sizeof *r->logits)))
        st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the calibration logits");
    if (st != EDGELLM_OK)
        ellm_calib_close(r);
    return st;
}

edgellm_status ellm_calib_pass(ellm_calib_run *r, ellm_input_observer observer, void *user,
                               bool all_logits, const bool *failed, const char *fail_message,
                               void (*on_chunk)(void *user, int32_t done, int32_t total,
                                                double seconds),
                               void *chunk_user)
{
    ellm_state_set_input_observer(r->state, observer, user);
    double t0 = ellm_calib_seconds();
    edgellm_status st = EDGELLM_OK;
    for (int32_t chunk = 0; st == EDGELLM_OK && chunk < r->n_chunks; chunk++) {
        ellm_state_truncate(r->state, 0);
        const edgellm_token *tok = r->ids + (size_t)chunk * (size_t)r->n_ctx;
        for (int32_t done = 0; st == EDGELLM_OK && done < r->n_ctx; done += r->n_batch) {
            int32_t n = r->n_ctx - done < r->n_batch ? r->n_ctx - done : r->n_batch;
            st = ellm_forward(r->model, r->state, r->pool, tok + done, n, all_logits, r->logits);
            if (st == EDGELLM_OK && failed && *failed)
                st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "%s", fail_message);
        }
        if (st == EDGELLM_OK && on_chunk)
            on_chunk(chunk_user, chunk + 1, r->n_chunks, ellm_calib_seconds() - t0);
    }
    ellm_state_set_input_observer(r->state, NULL, NULL);
    return st;
}

edgellm_status ellm_calib_carry_open(ellm_calib_run *r)
{
    int64_t n_embd = ellm_model_hparams(r->model)->n_embd;
    uint64_t values = (uint64_t)r->n_chunks * (uint64_t)r->n_ctx * (uint64_t)n_embd;
    if (values * sizeof(float) > ELLM_CALIB_CARRY_MAX_BYTES)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "the calibration hidden states carried from layer to layer would take "
                         "%.0f MiB (%d chunks x %d tokens x %lld floats), over the %.0f MiB "
                         "bound; lower --chunks or --ctx",
                         (double)(values * sizeof(float)) / (1024.0 * 1024.0), (int)r->n_chunks,
                         (int)r->n_ctx, (long long)n_embd,
                         (double)ELLM_CALIB_CARRY_MAX_BYTES / (1024.0 * 1024.0));
    free(r->carried);
    r->carried = malloc((size_t)values * sizeof *r->carried);
    r->carried_layer = -1;
    if (!r->carried)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY,
                         "no memory for %.0f MiB of calibration hidden states; lower --chunks or "
                         "--ctx",
                         (double)(values * sizeof(float)) / (1024.0 * 1024.0));
    return EDGELLM_OK;
}

void ellm_calib_carry_start(ellm_calib_run *r)
{
    ellm_forward_embed(r->model, r->ids, r->n_chunks * r->n_ctx, r->carried);
    r->carried_layer = 0;
}

edgellm_status ellm_calib_carry_pass(ellm_calib_run *r, int32_t first, int32_t last, bool advance,
                                     ellm_input_observer observer, void *user, const bool *failed,
                                     const char *fail_message)
{
    if (!r->carried || r->carried_layer != first)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "the carried calibration states are not at layer %d's input", (int)first);
    size_t n_embd = (size_t)ellm_model_hparams(r->model)->n_embd;
    ellm_state_set_input_observer(r->state, observer, user);
    edgellm_status st = EDGELLM_OK;
    for (int32_t chunk = 0; st == EDGELLM_OK && chunk < r->n_chunks; chunk++) {
        ellm_state_truncate(r->state, 0);
        float *x = r->carried + (size_t)chunk * (size_t)r->n_ctx * n_embd;
        for (int32_t done = 0; st == EDGELLM_OK && done < r->n_ctx; done += r->n_batch) {
            int32_t n = r->n_ctx - done < r->n_batch ? r->n_ctx - done : r->n_batch;
            float *rows = x + (size_t)done * n_embd;
            st = ellm_forward_layers(r->model, r->state, r->pool, first, last, rows, n,
                                     advance ? rows : NULL);
            if (st == EDGELLM_OK && failed && *failed)
                st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "%s", fail_message);
        }
    }
    ellm_state_set_input_observer(r->state, NULL, NULL);
    /* A pass stopped part way has moved some rows on and not others. */
    if (advance)
        r->carried_layer = st == EDGELLM_OK ? last : -1;
    return st;
}

void ellm_calib_close(ellm_calib_run *r)
{
    free(r->carried);
    free(r->logits);
    ellm_state_free(r->state);
    ellm_threadpool_free(r->pool);
    ellm_model_free(r->model);
    ellm_gguf_close(r->file);
    memset(r, 0, sizeof *r);
}
