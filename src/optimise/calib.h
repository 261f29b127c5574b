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
    /* Carried hidden states (ellm_calib_carry_*): the residual stream of every calibration
     * position at layer carried_layer's input, chunk by chunk; carried_layer < 0: none yet. */
    float *carried;
    int32_t carried_layer;
} ellm_calib_run;

/* The most the carried hidden states may take: at 4 bytes a value they are exact (a narrower
 * type would change GPTQ's statistics), and beyond this the calibration is better made smaller. */
#define ELLM_CALIB_CARRY_MAX_BYTES ((uint64_t)1 << 30)

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
/* Makes room for carried hidden states (n_chunks x n_ctx x n_embd floats), failing with a message
 * naming --chunks and --ctx when they exceed ELLM_CALIB_CARRY_MAX_BYTES; none are computed yet. */
edgellm_status ellm_calib_carry_open(ellm_calib_run *r);
/* The carried states become the token embeddings of the calibration ids (layer 0's input), from
 * the model's embedding as it is now. */
void ellm_calib_carry_start(ellm_calib_run *r);
/* Runs layers first..last-1 over the carried states, which must be at layer first's input, chunk
 * by chunk from an empty cache in the batches ellm_calib_pass uses (so every row sees the same
 * computations as there), with observer watching (may be NULL). advance: the carried states move
 * on to layer last's input; otherwise they stay as they were. failed and fail_message as in
 * ellm_calib_pass. */
edgellm_status ellm_calib_carry_pass(ellm_calib_run *r, int32_t first, int32_t last, bool advance,
                                     ellm_input_observer observer, void *user, const bool *failed,
                                     const char *fail_message);
void ellm_calib_close(ellm_calib_run *r);
double ellm_calib_seconds(void);

#endif
