/* Intent classification on the edge model (POST /v1/classify, and the policy's local_intents):
 * each label is scored by its log-likelihood as the continuation of a short prompt,
 *   "Text: <input>\nCategory:" + " <label>",
 * summed over the label's tokens; the probabilities are the softmax of those scores over the
 * labels given. */
#ifndef EDGELLM_GATEWAY_CLASSIFY_H
#define EDGELLM_GATEWAY_CLASSIFY_H

#include <stdbool.h>
#include <stddef.h>

#include "server/http.h"

#define GW_CLASSIFY_MAX_LABELS 64

typedef struct gw_classification {
    int best;                                   /* index of the most likely label */
    double logprob[GW_CLASSIFY_MAX_LABELS];     /* log p(label | prompt) */
    double probability[GW_CLASSIFY_MAX_LABELS]; /* softmax over the labels */
    int n_prompt_tokens;
    bool truncated; /* the input was cut to fit the context */
} gw_classification;

/* Scores n_labels labels (1..GW_CLASSIFY_MAX_LABELS) for text. An input too long for one edge
 * context is cut to its beginning when truncate is set, else refused. False with err set. */
bool ellm_gw_classify(srv_server *srv, const char *text, size_t len, const char *const *labels,
                      int n_labels, bool truncate, gw_classification *out, char *err,
                      size_t err_cap);

#endif
