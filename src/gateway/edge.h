/* The gateway's own work on the edge model, beside the server's scheduler: drafting for
 * speculative edge-cloud decoding, the confidence cascade's edge answer, intent classification.
 * Each job opens a context of its own, sized to what it needs, so none waits for a slot. */
#ifndef EDGELLM_GATEWAY_EDGE_H
#define EDGELLM_GATEWAY_EDGE_H

#include <stdbool.h>
#include <stddef.h>

#include "edgellm.h"
#include "server/http.h"

typedef struct gw_edge {
    edgellm_model *model;
    edgellm_context *ctx;
    int32_t n_vocab;
} gw_edge;

/* A context of the server's edge model holding up to n_ctx tokens (capped at a slot's). */
edgellm_status ellm_gw_edge_open(gw_edge *e, srv_server *srv, int32_t n_ctx);
void ellm_gw_edge_close(gw_edge *e);
/* Makes the context hold exactly seq[0..n) (n >= 1), re-evaluating only past the prefix it
 * already holds, and returns the logits that predict the token after seq; NULL on failure. */
const float *ellm_gw_edge_sync(gw_edge *e, const edgellm_token *seq, int32_t n);
/* Appends one token and returns the logits that predict the next; NULL on failure. */
const float *ellm_gw_edge_push(gw_edge *e, edgellm_token token);

edgellm_token ellm_gw_argmax(const float *logits, int32_t n_vocab);
/* The token at cumulative probability u (in [0,1)) of softmax(logits / temperature). */
edgellm_token ellm_gw_sample(const float *logits, int32_t n_vocab, double temperature, double u);
/* log p(token) under softmax(logits / temperature) (temperature <= 0 counts as 1). */
double ellm_gw_logprob(const float *logits, int32_t n_vocab, edgellm_token token,
                       double temperature);

/* Appends one event (its text copied) to a growing list; false when out of memory. */
bool ellm_gw_events_push(srv_event **events, size_t *n, size_t *cap, edgellm_token token,
                         const char *text, size_t len);

/* Token texts back to ids: an OpenAI-shaped answer names tokens by their text only. */
typedef struct gw_vocab_map gw_vocab_map;
gw_vocab_map *ellm_gw_vocab_map_build(const edgellm_model *model);
void ellm_gw_vocab_map_free(gw_vocab_map *m);
/* The token whose text is exactly text[0..len): an end-of-generation token first, then an
 * ordinary token before a byte token of the same text (<0x41> and "A"); -1 when none. */
edgellm_token ellm_gw_vocab_map_find(const gw_vocab_map *m, const char *text, size_t len);

#endif
