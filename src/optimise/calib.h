/* A calibration run: the model, a state and a thread pool set up to pass calibration tokens
 * through the forward pass chunk by chunk, each chunk from an empty cache, with an input observer
 * watching. imatrix, GPTQ's per-layer statistics and prune's block influence all run on it. */
#ifndef EDGELLM_OPTIMISE_CALIB_H
#define EDGELLM_OPTIMISE_CALIB_H

#include <stdbool.h>
#include <stdint.h>

#include "core/threadpool.h"
#include "edgellm.h"
#include "gguf/gguf.h"
#include "model/model.h"

typedef struct ellm_calib_run {
    gguf_file *file;
    ellm_model *model;
    ellm_state *state;
    ellm_threadpool *pool;
    const edgellm_token *ids;
    int32_t n_ctx, n_chunks, n_batch;
    float *logits; /* n_batch rows of the vocabulary */
} ellm_calib_run;

/* Opens the model at model_path for chunks of n_ctx of the ids (at most n_chunks of them, 0 for
 * every whole chunk). Fails with a one-line message when the ids do not fill one chunk or hold an
 * id outside the vocabulary. The ids must outlive the run. */
edgellm_status ellm_calib_open(const char *model_path, const edgellm_token *ids, int32_t n_ids,
                               int32_t n_ctx, int32_t n_chunks, int32_t n_threads,
                               ellm_calib_run *out);
/* Passes every chunk through the forward pass with observer watching (all_logits: the logits of
 * every position, which some observers need computed). failed, when non-NULL, is checked after
 * every batch: an observer that ran out of memory stops the run with fail_message. on_chunk
 * (may be NULL) gets the elapsed seconds after every chunk. */
edgellm_status ellm_calib_pass(ellm_calib_run *r, ellm_input_observer observer, void *user,
                               bool all_logits, const bool *failed, const char *fail_message,
                               void (*on_chunk)(void *user, int32_t done, int32_t total,
                                                double seconds),
                               void *chunk_user);
/* A new state, sized for the model's weights as they are now: after a matrix of the model was
 * replaced by one of another type, whose products need other scratch space. */
edgellm_status ellm_calib_renew_state(ellm_calib_run *r);
void ellm_calib_close(ellm_calib_run *r);
double ellm_calib_seconds(void);

#endif
