/* The confidence cascade's first step: the edge model answers a request in the gateway, and
 * the log-probability of each token it chose says how sure it was. The gateway keeps the answer
 * when the mean and the minimum clear the policy's thresholds, else discards it and asks the
 * cloud (docs/gateway.md, "Confidence cascade"). */
#ifndef EDGELLM_GATEWAY_CASCADE_H
#define EDGELLM_GATEWAY_CASCADE_H

#include <jansson.h>

#include "server/http.h"

typedef struct gw_edge_answer {
    srv_request *req;
    srv_completion_opts opts;
    srv_event *events; /* the answer's text, one event per token */
    size_t n_events, cap_events;
    srv_finish finish;
    int32_t n_generated;
    double mean_logprob; /* over the generated tokens, under the model's own distribution */
    double min_logprob;
} gw_edge_answer;

/* Generates the answer to body (one choice) on the edge model. False with err set for an
 * invalid request (400) or a failure (500). */
bool ellm_gw_edge_answer_run(gw_edge_answer *a, srv_server *srv, json_t *body,
                             srv_endpoint_kind kind, double deadline, srv_api_error *err);
void ellm_gw_edge_answer_free(gw_edge_answer *a);

#endif
