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
