/* A generation that runs in slices: begin, then next as often as the caller likes, then finish.
 * edgellm_generate and edgellm_generate_tokens are one begin, one next to the end and one finish,
 * so a caller that must return to its own event loop between tokens (the single-threaded
 * WebAssembly worker, which sees an interrupt only between its calls into wasm) gets the same
 * tokens, text and result from the one generation loop. */
#ifndef EDGELLM_GENERATION_H
#define EDGELLM_GENERATION_H

#include <stdbool.h>

#include "edgellm.h"

typedef struct ellm_generation ellm_generation;

/* Validates what edgellm_generate_tokens validates and prepares the sampler, stop strings and
 * grammar; the prompt (copied) is evaluated by the first next. params is copied too, but what it
 * points to (the callback's user_data, the grammar, a draft context) must outlive the
 * generation; the stop strings need not. Nothing else may run on ctx until finish. */
edgellm_status ellm_generation_begin(edgellm_context *ctx, const edgellm_token *prompt,
                                     int32_t n_prompt, const edgellm_generate_params *params,
                                     ellm_generation **out);
/* The same from text, tokenized as edgellm_generate tokenizes it. */
edgellm_status ellm_generation_begin_text(edgellm_context *ctx, const char *prompt,
                                          const edgellm_generate_params *params,
                                          ellm_generation **out);
/* Evaluates up to n_tokens more of the prompt (its first slice decides, as next would, which
 * cached prefix it reuses), so that a long prompt runs in slices too; *ended as for next. The
 * logits it leaves are those of one pass over the whole prompt, bit for bit, whatever the
 * slices. A generation finished before its prompt is evaluated keeps the slices evaluated in
 * the cache, where a later prompt that starts the same reuses them (a keep_cache continuation
 * finished before its first slice still owes the token the last call handed out). */
edgellm_status ellm_generation_prefill(ellm_generation *gen, int32_t n_tokens, bool *ended);
/* How many prompt tokens are still to evaluate (before the first slice: the whole prompt, of
 * which a cached prefix may turn out not to need it); 0 once next generates. */
int32_t ellm_generation_prompt_left(const ellm_generation *gen);
/* Evaluates what is left of the prompt, then generates until n_tokens more tokens are
 * handed to on_token (a speculative pass may hand out a few more: its accepted proposals are
 * never held back) or the generation ends; n_tokens = 0 only evaluates the prompt. *ended tells
 * whether it has ended (then later calls do nothing). Returns the failure that ended it, if any.
 * edgellm_context_cancel reaches the call while it runs, not the time between calls. */
edgellm_status ellm_generation_next(ellm_generation *gen, int32_t n_tokens, bool *ended);
/* Ends the generation and frees it. One that had not ended stops as if its callback had asked
 * to (EDGELLM_STOP_CALLBACK: the text still held back is dropped); the KV cache keeps what was
 * evaluated: the prompt and the tokens handed out (under speculative decoding all but the last).
 * *out (may be NULL) gets the result edgellm_generate_tokens gives (prefill_seconds 0 when the
 * prompt was not evaluated to its end); returns its status. */
edgellm_status ellm_generation_finish(ellm_generation *gen, edgellm_generate_result *out);

#endif
