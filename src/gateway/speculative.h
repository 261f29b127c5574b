/* Speculative edge-cloud decoding (docs/gateway.md, "Speculative edge-cloud decoding"): the
 * edge model drafts K tokens, one standard /v1/completions call (token-id prompt, echo,
 * logprobs, max_tokens 1) has the cloud score them, and the longest prefix the cloud agrees with
 * plus the cloud's own token at the first disagreement is kept. Greedy requests give exactly the
 * cloud's greedy tokens; sampled ones follow the cloud's distribution over its top-N. */
#ifndef EDGELLM_GATEWAY_SPECULATIVE_H
#define EDGELLM_GATEWAY_SPECULATIVE_H

#include <jansson.h>

#include "gateway/edge.h"
#include "gateway/upstream.h"
#include "server/http.h"

#define GW_SPEC_MAX_K 64

typedef struct gw_spec_config {
    const gw_upstream *up;
    const gw_vocab_map *vocab;
    int k;                 /* tokens drafted per verification call, at most GW_SPEC_MAX_K */
    int top_n;             /* alternatives the cloud returns per position (logprobs) */
    int retries;           /* extra attempts of a verification call after a failure */
    double latency_s;      /* added before every cloud call: a simulated network (benchmarks) */
    double call_timeout_s; /* one verification call, retries included */
} gw_spec_config;

enum { GW_SPEC_MORE, GW_SPEC_DONE, GW_SPEC_FAILED, GW_SPEC_GONE };

typedef struct gw_spec {
    const gw_spec_config *cfg;
    srv_server *srv;
    struct MHD_Connection *conn;
    srv_request *req; /* the prompt tokens, limits, stops and sampling of the request */
    srv_completion_opts opts;
    json_t *call_template; /* the verification body without its prompt */
    gw_edge edge;
    edgellm_token *seq; /* prompt and every token accepted so far */
    int32_t n_seq, cap_seq, n_generated;
    edgellm_text_stream *text;
    srv_event *events; /* text that became final, one event per accepted token */
    size_t n_events, cap_events;
    srv_finish finish;
    double deadline;
    uint64_t rng;
    float *draft_logits; /* sampled requests: the edge's logits at each drafted position */
    int drafted, accepted, calls;
    int stalls;            /* rounds in a row that kept no token */
    gw_call call;          /* the verification calls, one after another on one connection */
    char cloud_model[256]; /* "model" of the cloud's answers */
    /* After GW_SPEC_FAILED: a ellm_gw_call_failure() reason when the cloud was unavailable, else
     * "cloud-malformed" with error saying what was wrong. */
    const char *failure;
    char error[256];
} gw_spec;

/* Whether a request can be decoded speculatively; when not, *why names the feature that needs
 * the cloud's own generation (the request then goes to the cloud as it is). */
bool ellm_gw_spec_supported(json_t *body, const char **why);
/* Parses body (already redacted, "model" set for the cloud) for kind; false with err set when
 * the request itself is invalid (a 400). deadline bounds the whole request (monotonic s). */
bool ellm_gw_spec_start(gw_spec *s, const gw_spec_config *cfg, srv_server *srv,
                        struct MHD_Connection *conn, json_t *body, srv_endpoint_kind kind,
                        double deadline, srv_api_error *err);
/* One round: draft, verify, accept. New events are appended to s->events. */
int ellm_gw_spec_step(gw_spec *s);
void ellm_gw_spec_free(gw_spec *s);
/* {"drafted", "accepted", "cloud_calls", "acceptance_rate"} */
json_t *ellm_gw_spec_stats(const gw_spec *s);

/* What one verification answer says about the draft at positions first .. first+n_draft of
 * the n_sent tokens sent: how many drafted tokens are accepted (greedy: each is the cloud's
 * argmax), and the cloud's own token after them (-1 with end set when the cloud ends there,
 * or with unknown set when its text names no edge token).
 * False with why set when the answer is not what the protocol promises. Exposed for tests. */
typedef struct gw_verdict {
    int n_accepted;
    edgellm_token next;
    bool end;
    bool unknown; /* the cloud's text maps to no edge token: next is -1 */
} gw_verdict;
bool ellm_gw_spec_judge_greedy(json_t *answer, const gw_vocab_map *vocab,
                               const edgellm_model *model, int32_t n_sent, int32_t first,
                               int32_t n_draft, gw_verdict *out, char *why, size_t why_cap);

/* Sampled requests: the standard speculative sampling rule. Draft token x (drawn from the edge's
 * q = softmax(logits / T)) is kept with probability min(1, p(x) / q(x)), p being the cloud's
 * distribution at temperature T (and top_p) over its top-N alternatives and x; at the first
 * rejection the cloud's token is drawn from max(0, p - q), renormalised. */
typedef struct gw_spec_sampling {
    double temperature, top_p;
    const float *edge_logits; /* n_draft x n_vocab */
    const edgellm_token *draft;
    uint64_t *rng;
} gw_spec_sampling;
bool ellm_gw_spec_judge_sampled(json_t *answer, const gw_vocab_map *vocab,
                                const edgellm_model *model, int32_t n_sent, int32_t first,
                                int32_t n_draft, const gw_spec_sampling *smp, gw_verdict *out,
                                char *why, size_t why_cap);

#endif

/* Start-up check that edge and cloud tokenize alike: probe strings through the cloud's
 * POST /tokenize ({"content"} -> {"tokens"}, llama.cpp's and edgellm serve's shape) against the
 * edge tokenizer. False with one line in err: no /tokenize, a different tokenizer, no cloud. */
bool ellm_gw_spec_check_tokenizer(const gw_upstream *up, const edgellm_model *model,
                                  double timeout_s, char *err, size_t err_cap);
