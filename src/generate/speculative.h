/* The propose/verify step of speculative decoding, one per generated sequence. edgellm_generate
 * (speculative.c) and the server's scheduler, which checks proposals inside its batched pass,
 * both go through it, so there is one acceptance rule (docs/speculative.md). */
#ifndef EDGELLM_SPECULATIVE_H
#define EDGELLM_SPECULATIVE_H

#include <stdbool.h>

#include "edgellm.h"

typedef struct ellm_spec ellm_spec;

/* Whether params ask for speculative decoding (a draft context or prompt lookup). */
int ellm_speculative_wanted(const edgellm_generate_params *params);
/* Validates the speculative settings of params for generating on ctx (ok when none are set). */
edgellm_status ellm_speculative_check(const edgellm_context *ctx,
                                      const edgellm_generate_params *params);

/* Proposals for one sequence generated on ctx as params say: its draft context or lookup_ngram,
 * draft_max, draft_min, sampling and the benchmark knobs (ellm_speculative_check them first).
 * Only ellm_spec_prefill and ellm_spec_propose with k > 0 use the draft context: a caller whose
 * draft other sequences share (generations on other threads) runs them only while it has the
 * draft to itself, and otherwise asks for no proposals (k = 0). */
edgellm_status ellm_spec_create(const edgellm_context *ctx, const edgellm_generate_params *params,
                                ellm_spec **out);
void ellm_spec_free(ellm_spec *sp);
/* The draft reads the tokens cached in ctx now (the prompt), ahead of the first proposals. */
edgellm_status ellm_spec_prefill(ellm_spec *sp, const edgellm_context *ctx);
/* Up to k tokens proposed to follow ctx's cached tokens and the pending one, into out; none when
 * fewer than draft_min come. sampler is the model's, with the sequence's history so far. Under a
 * grammar (NULL: unconstrained), whose state has accepted the pending token, only tokens it
 * allows are proposed (a draft model samples from its masked logits); the state is left as it
 * was. */
edgellm_status ellm_spec_propose(ellm_spec *sp, const edgellm_context *ctx, edgellm_token pending,
                                 const edgellm_sampler *sampler, edgellm_grammar_state *grammar,
                                 int32_t k, edgellm_token *out, int32_t *n_out);
/* Whether proposal x, the i-th of the pass, stands given the model's logits at its position
 * (masked by the grammar there, under one);
 * when not, *instead is the token to emit in its place and the pass ends there. The caller
 * emits an accepted x (edgellm_sampler_accept) before asking about the next one. */
bool ellm_spec_accept(ellm_spec *sp, edgellm_sampler *sampler, const float *logits, int32_t i,
                      edgellm_token x, edgellm_token *instead);

#endif
