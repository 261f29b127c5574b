/* One generation step of one sequence, the same for edgellm_generate (generate.c) and the
 * server's batched scheduler (server/scheduler.c): which cached prefix a prompt reuses, the scores
 * to sample from under a grammar, the draw, end-of-generation, accepting the token (sampler
 * history, grammar, streamed text with stop strings), the length limits, and the check of a
 * pass's speculative proposals. Forward passes, timing and where the text goes stay with the
 * caller. */
#ifndef EDGELLM_STEP_H
#define EDGELLM_STEP_H

#include <stdbool.h>

#include "edgellm.h"
#include "generate/speculative.h"

typedef struct ellm_step {
    const edgellm_model *model;
    int32_t n_vocab;
    edgellm_sampler *sampler;
    edgellm_text_stream *text;
    edgellm_grammar_state *grammar; /* NULL when unconstrained (or a lazy grammar not started) */
    float *masked;                  /* the scores with the grammar's mask applied */
    ellm_spec *spec;                /* the proposer under speculative decoding, else NULL */
    int32_t base;                   /* tokens cached when the first token was sampled */
    int32_t n_generated;
    edgellm_stop_reason stop; /* why the sequence ended; NONE while it goes on */
    double grammar_seconds;   /* masking and advancing the grammar */
} ellm_step;

/* Monotonic clock in seconds. */
double ellm_generate_now(void);

/* How many leading tokens of tokens[0 .. n) ctx has cached. */
int32_t ellm_cache_common_prefix(const edgellm_context *ctx, const edgellm_token *tokens,
                                 int32_t n);
/* Cuts ctx's cache back to the prefix it shares with tokens[0 .. n) (n > 0), but before the last
 * token at the latest: evaluating that one gives the logits generation starts from. Returns the
 * tokens kept; tokens[kept .. n) are the ones to evaluate. */
int32_t ellm_cache_reuse_prefix(edgellm_context *ctx, const edgellm_token *tokens, int32_t n);

/* A sequence sampled as sampling says, its text cut at the stop strings; the prompt's tokens
 * are the sampler's penalty history. base is set by the caller. On failure *s holds nothing. */
edgellm_status ellm_step_init(ellm_step *s, const edgellm_model *model,
                              const edgellm_sampler_params *sampling,
                              const char *const *stop_strings, int32_t n_stop_strings,
                              const edgellm_token *prompt, int32_t n_prompt);
/* From the next token on, only what grammar allows (not owned; it outlives the step). */
edgellm_status ellm_step_start_grammar(ellm_step *s, const edgellm_grammar *grammar);
/* Frees what the step holds and leaves it empty (freeing an empty step is fine). */
void ellm_step_free(ellm_step *s);

/* The scores to sample from at a position with these logits: the logits themselves when
 * unconstrained, else the step's masked copy (what the grammar forbids at -inf). NULL when the
 * sequence ends there: the grammar's output is complete with nothing allowed to follow
 * (stop = GRAMMAR_DONE), no token can continue it (GRAMMAR_DONE when it can end there, else
 * GRAMMAR_STUCK), or masking failed (*st set). */
const float *ellm_step_scores(ellm_step *s, const float *logits, edgellm_status *st);
/* A token drawn from scores (from ellm_step_scores); never one the grammar forbids. -1 when
 * nothing can be drawn. */
edgellm_token ellm_step_sample(ellm_step *s, const float *scores);
/* tok, sampled, is the sequence's next token: stop = EOS when it ends generation (and nothing
 * else happens); otherwise it counts as generated, joins the penalty history, advances the
 * grammar, and *text is what became final with it (valid until the next call), to be handed out
 * even when it completed a stop string (stop = STRING). A negative tok (nothing could be sampled)
 * fails. */
edgellm_status ellm_step_accept(ellm_step *s, edgellm_token tok, const char **text, size_t *len);
/* After the newest token was handed out: CONTEXT_FULL when it has no free position in a context
 * of n_ctx to be evaluated at, MAX_TOKENS when max_tokens (> 0) are generated, else NONE. */
edgellm_stop_reason ellm_step_limit(const ellm_step *s, int32_t n_ctx, int32_t max_tokens);

/* Where the tokens a step yields go. */
typedef struct ellm_step_sink {
    /* The scores the sampler sees at a position with these logits (e.g. the logits plus a
     * request's logit bias); NULL: the logits themselves. */
    const float *(*adjust)(void *user, const float *logits);
    /* tok, drawn at a position with these logits, is the next token: ellm_step_accept it and
     * hand out its text; false when the sequence ended (stop reason or *st say why; the step
     * may have been freed then). */
    bool (*emit)(void *user, edgellm_token tok, const float *logits, edgellm_status *st);
    void *user;
} ellm_step_sink;

/* After one pass of ctx over the pending token and n_proposed proposals from s->spec (the logits
 * of every position kept): emits the proposals that stand, then one token of the model's own
 * (at the first rejected proposal, or after the last), and cuts the cache back to the pending
 * token and the proposals emitted before the end. *n_accepted counts the proposals that stood.
 * Returns false when the sequence ended: when *st is ok and the step is still alive, its stop
 * reason says why. */
bool ellm_step_verify(ellm_step *s, edgellm_context *ctx, const edgellm_token *proposals,
                      int32_t n_proposed, const ellm_step_sink *sink, int32_t *n_accepted,
                      edgellm_status *st);

#endif
