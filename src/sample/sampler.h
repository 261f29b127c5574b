/* What speculative decoding needs from a sampler beyond the public API: the exact distribution
 * edgellm_sampler_sample draws from, draws from the sampler's own seeded generator, and a copy
 * of the penalties' token history (a draft's sampler must see the same history as the target's). */
#ifndef EDGELLM_SAMPLER_H
#define EDGELLM_SAMPLER_H

#include <stdbool.h>

#include "edgellm.h"

bool ellm_sampler_is_greedy(const edgellm_sampler *sampler);
/* probs (n_vocab floats) = the distribution edgellm_sampler_sample would draw from for these
 * logits with the current history: penalties, then top-k, temperature, top-p and min-p,
 * renormalised over the survivors (zeros elsewhere); greedy gives 1 at the argmax. */
void ellm_sampler_distribution(edgellm_sampler *sampler, const float *logits, float *probs);
/* Uniform in [0, 1). */
double ellm_sampler_uniform(edgellm_sampler *sampler);
/* A token drawn with probability proportional to weights (n_vocab non-negative floats);
 * -1 when they are all zero. */
edgellm_token ellm_sampler_draw(edgellm_sampler *sampler, const float *weights);
/* dst's penalty history becomes src's (both made with the same parameters and vocabulary). */
void ellm_sampler_copy_history(edgellm_sampler *dst, const edgellm_sampler *src);

#endif
