/* Entry points of src/api for modules outside the public API (the store's memory planner). */
#ifndef EDGELLM_API_INTERNAL_H
#define EDGELLM_API_INTERNAL_H

#include "edgellm.h"
#include "model/model.h"

/* edgellm_context_estimate_memory for a model that is not at hand: these hyper-parameters
 * (n_ctx_train bounds the context), every matrix of matrix_type, weights_bytes of weights. */
edgellm_status ellm_estimate_memory_for_shape(const ellm_hparams *hp, ellm_type matrix_type,
                                              uint64_t weights_bytes,
                                              const edgellm_context_params *params,
                                              edgellm_memory_estimate *out);

/* ellm_model_lay_out_rows on the model of ctx, which edgellm_model_load_from_memory loaded from
 * bytes the caller hands to the engine to rewrite ([bytes, bytes + size), e.g. the web build's
 * own copy of the file, which it keeps for the model's life and frees after it), on ctx's
 * threads (the layout reads and writes every byte it moves once: one wasm thread does not fill
 * the memory bus). Before the model has run on ctx, and with no other context on the model. */
edgellm_status ellm_context_lay_out_model(edgellm_context *ctx, void *bytes, size_t size);

/* A public call that runs the model on ctx (edgellm_eval, edgellm_embed, edgellm_generate*)
 * begins and ends: edgellm_context_cancel reaches only what runs in between. Calls nest (generate
 * evaluates through edgellm_eval); the outermost one's end drops a cancel that nothing honoured. */
void ellm_context_begin_call(edgellm_context *ctx);
void ellm_context_end_call(edgellm_context *ctx);
/* Whether edgellm_context_cancel has asked the running call on ctx to stop. */
bool ellm_context_cancel_requested(const edgellm_context *ctx);
/* The last token of a generation that ended at its budget, emitted but not evaluated: set after
 * the generation, taken (and forgotten) by the next one. Taking it yields it only if nothing
 * changed the cache since it was set. */
void ellm_context_set_pending(edgellm_context *ctx, edgellm_token token);
bool ellm_context_take_pending(edgellm_context *ctx, edgellm_token *token);
/* Whether taking it now would yield it. */
bool ellm_context_owes_pending(const edgellm_context *ctx);
/* EDGELLM_OK when ctx has no open generation, else EDGELLM_ERR_BUSY with a message naming what
 * (the refused function). While there is one, the public calls that change ctx's cache are
 * refused; the generation itself evaluates and truncates through ellm_context_eval and
 * ellm_context_truncate, which do not ask. */
edgellm_status ellm_context_refuse_busy(const edgellm_context *ctx, const char *what);
/* An open generation drafting with a context (edgellm_generate_params.draft), in that context's
 * list from begin to finish. Each of its passes re-syncs the draft's cache, so the context must
 * not open a generation of its own meanwhile, and two passes must not draft with it at once
 * (generations on different threads may share it): a pass claims it first. Freeing the context
 * sets draft to NULL in each entry: the generation goes on without proposals. The generation owns
 * the entry; draft and next belong to src/api (under its lock). */
typedef struct ellm_draft_hold {
    edgellm_context *draft;
    struct ellm_draft_hold *next;
} ellm_draft_hold;
/* EDGELLM_ERR_BUSY (naming what) when a generation may not open on ctx drafting with draft (NULL:
 * none): ctx has an open generation or drafts for one, or draft has an open generation. */
edgellm_status ellm_context_refuse_open(const edgellm_context *ctx, const edgellm_context *draft,
                                        const char *what);
/* Checks as ellm_context_refuse_open does and, in the same step (other threads may open
 * generations drafting with the same context), makes generation ctx's open one and puts hold in
 * draft's list. */
edgellm_status ellm_context_open_generation(edgellm_context *ctx, edgellm_generation *generation,
                                            edgellm_context *draft, ellm_draft_hold *hold,
                                            const char *what);
/* The generation is finished: ctx (NULL once freed) has none open, hold leaves its draft's list. */
void ellm_context_close_generation(edgellm_context *ctx, ellm_draft_hold *hold);
/* hold's draft context for one drafting of the generation on ctx, until ellm_draft_unclaim,
 * without waiting: NULL when another generation's pass drafts with it now, or when it was freed
 * (*freed then; it stays NULL). Meanwhile a cancel of ctx stops the draft's passes too.
 * The pass must unclaim it before anything can call back into the application, which may free
 * the draft. */
edgellm_context *ellm_draft_claim(edgellm_context *ctx, ellm_draft_hold *hold, bool *freed);
void ellm_draft_unclaim(edgellm_context *draft);
/* The model's memory stays until its handle (edgellm_model_free) and every object made from it
 * (contexts, batches, grammars, text streams) are released; each of those retains it. Atomic:
 * they are created and freed on any threads. */
void ellm_model_retain(const edgellm_model *model);
void ellm_model_release(const edgellm_model *model);
edgellm_status ellm_context_eval(edgellm_context *ctx, const edgellm_token *tokens,
                                 int32_t n_tokens, int all_logits);
/* n_keep is at most what is cached. */
void ellm_context_truncate(edgellm_context *ctx, int32_t n_keep);
/* The model state of ctx, for tests that watch its passes (ellm_state_set_input_observer). */
ellm_state *ellm_context_state(edgellm_context *ctx);

#endif
