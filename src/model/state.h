/* What a model state holds (forward.c creates it; the attention and KV-cache code read it). */
#ifndef EDGELLM_MODEL_STATE_H
#define EDGELLM_MODEL_STATE_H

#include "model/kv_cache.h"
#include "model/model.h"
#include "model/profile.h"

struct ellm_state {
    ellm_state_params p;
    int32_t n_past;
    ellm_kv_cache kv;
    float *x, *xn, *q, *k, *v, *att, *gate, *up, *tmp;
    float *fused;  /* output of fused matrices (phi3's attn_qkv and gate+up), else unused */
    float *scores; /* n_threads rows of scores_per_thread */
    int32_t *tok_seq, *tok_pos; /* per batch row: which sequence, at which position */
    size_t scores_per_thread;
    void *mm_scratch;
    ellm_profile *profile;        /* NULL unless a caller profiles passes on this state */
    ellm_input_observer observer; /* NULL unless a caller collects matrix input statistics */
    void *observer_user;
    atomic_uint *cancel; /* NULL unless a context may cancel passes on this state */
    /* While the state's context drafts for another context's generation: that context's word,
     * whose cancel stops these passes too (the drafting is part of its call). */
    atomic_uint *cancel_owner;
    void *block; /* one allocation holding everything above */
};

/* Per-thread attention scratch in floats for a state of these parameters. */
size_t ellm_attention_scratch_floats(const ellm_model *m, const ellm_state_params *p);

/* Appends the batch rows' keys and values (in work) to their own sequences' caches, rows split
 * over the pool. */
void ellm_attention_store_kv(const ellm_state *work, const ellm_forward_seq *seqs, int32_t layer,
                             int32_t n_tokens, int64_t kv_dim, ellm_threadpool *pool);
/* Every query head of every batch row of work (its q, written to its att) attends over its own
 * sequence's cache of the layer, split over the pool. */
void ellm_attention_run(const ellm_model *m, ellm_state *work, const ellm_forward_seq *seqs,
                        int32_t layer, int32_t n_tokens, ellm_threadpool *pool);

#endif
