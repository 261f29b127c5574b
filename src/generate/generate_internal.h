/* Shared by the generation loop (generate.c) and its speculative variant (speculative.c). */
#ifndef EDGELLM_GENERATE_INTERNAL_H
#define EDGELLM_GENERATE_INTERNAL_H

#include "edgellm.h"

typedef struct ellm_generate_run {
    edgellm_context *ctx;
    const edgellm_model *model;
    const edgellm_generate_params *params;
    edgellm_generate_result *result;
    edgellm_text_stream *text;
    edgellm_grammar_state *grammar; /* NULL when unconstrained */
    float *masked;                  /* logits with the grammar's mask applied */
} ellm_generate_run;

/* The error for a sampler that found no token to draw (every logit -inf or NaN). */
edgellm_status ellm_generate_no_token(void);

/* Monotonic clock in seconds. */
double ellm_generate_now(void);

/* Hands the callback what became final with this token; returns non-zero to stop (and sets the
 * stop reason). */
int ellm_generate_deliver(ellm_generate_run *r, edgellm_token token, const char *text, size_t len);

/* The scores to sample from at a position with these logits: the logits themselves when
 * unconstrained, else r->masked (what the grammar forbids at -inf). NULL when generation ends
 * there: the grammar's output is complete with nothing allowed to follow, or no token can
 * continue it (stop reason set), or masking failed (*st set). */
const float *ellm_generate_constrain(ellm_generate_run *r, const float *logits,
                                     edgellm_status *st);
/* A token drawn from scores (from ellm_generate_constrain); never one the grammar forbids. */
edgellm_token ellm_generate_sample(const ellm_generate_run *r, edgellm_sampler *sampler,
                                   const float *scores);
/* t, or the best token of scores when the grammar forbids t. */
edgellm_token ellm_generate_allowed(const ellm_generate_run *r, const float *scores,
                                    edgellm_token t);
/* Advances the grammar (if any) over an emitted token. */
edgellm_status ellm_generate_grammar_accept(ellm_generate_run *r, edgellm_token tok);

/* Whether params ask for speculative decoding (a draft context or prompt lookup). */
int ellm_speculative_wanted(const edgellm_generate_params *params);
/* Validates the speculative settings of params for generating on ctx (ok when none are set). */
edgellm_status ellm_speculative_check(const edgellm_context *ctx,
                                      const edgellm_generate_params *params);
/* The decoding loop with proposals, after the prompt was evaluated into r->ctx and sampler has
 * seen the prompt; sets the result's counters, ttft and *t_first (clock at the first token). */
edgellm_status ellm_generate_speculative(ellm_generate_run *r, edgellm_sampler *sampler,
                                         double t_start, double *t_first);

#endif
