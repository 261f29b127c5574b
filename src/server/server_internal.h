/* Shared between the server's files: requests, the scheduler that batches them, metrics. */
#ifndef EDGELLM_SERVER_INTERNAL_H
#define EDGELLM_SERVER_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "edgellm.h"
#include "server/server.h"

#define SRV_MAX_TOP_LOGPROBS 20
#define SRV_MAX_CHOICES 8 /* n: choices one request may ask for */
#define EDGELLM_SERVER_VERSION EDGELLM_VERSION_STRING

typedef enum srv_finish {
    SRV_FINISH_NONE = 0,
    SRV_FINISH_STOP,      /* end of turn or a stop string */
    SRV_FINISH_LENGTH,    /* max_tokens or the context is full */
    SRV_FINISH_CANCELLED, /* the client went away */
    SRV_FINISH_TIMEOUT,   /* the request's deadline passed */
    SRV_FINISH_SHUTDOWN,  /* the server stopped before it finished */
    SRV_FINISH_ERROR,
    SRV_FINISH_TOOL_CALLS /* only in responses: the answer is tool calls ("tool_calls") */
} srv_finish;

typedef struct srv_logprob {
    edgellm_token token;
    float logprob;
} srv_logprob;

/* One generated token and the text that became final with it. */
typedef struct srv_event {
    char *text;
    size_t len;
    edgellm_token token;
    float logprob;
    bool no_logprob; /* the first prompt token of an echo: nothing before it predicts it */
    int n_top;
    srv_logprob top[SRV_MAX_TOP_LOGPROBS];
} srv_event;

typedef struct srv_logit_bias {
    edgellm_token token;
    float bias;
} srv_logit_bias;

typedef struct srv_request {
    /* Set before submission, read-only afterwards. */
    edgellm_token *prompt;
    int32_t n_prompt;
    edgellm_sampler_params sampling;
    int32_t max_tokens; /* < 0: until the context is full; capped so it fits */
    char **stops;
    int n_stops;
    bool logprobs;
    int top_logprobs;
    double deadline;      /* monotonic seconds */
    srv_logit_bias *bias; /* added to the logits before sampling (not to logprobs) */
    int n_bias;
    bool echo; /* the prompt's tokens are the first events */
    /* The choices of one request (n > 1) share group (0: alone); choice 0 evaluates the prompt
     * and the others copy its cache. */
    uint64_t group;
    int choice;
    edgellm_grammar *grammar; /* response_format / grammar; NULL = unconstrained. Owned, unless
                                  grammar_owner is set: the other choices of an n > 1 request
                                  share choice 0's and hold a reference to it */
    struct srv_request *grammar_owner;
    const char *grammar_trigger; /* a lazy grammar (tool_choice "auto"): it applies once the
                                    output ends with this text (a static string, e.g. the
                                    family's "<tool_call>"); NULL: from the first token */

    /* Guarded by the scheduler's mutex; cv is signalled on every new event and at the end. */
    pthread_cond_t cv;
    int refs;
    srv_event *events;
    size_t n_events, cap_events;
    bool done;
    srv_finish finish;
    char error[256];
    int32_t n_generated, n_cached;
    double t_submit, t_first, t_done;

    atomic_bool cancelled; /* set by the connection's thread, seen at the next step */
    srv_event *prompt_lp;  /* echo with logprobs: per prompt token, filled during prefill */
} srv_request;

srv_request *ellm_srv_request_new(void);
/* Choice `choice` of the same request as base: same prompt and options, seed base's + choice. */
srv_request *ellm_srv_request_derive(const srv_request *base, int choice);
void ellm_srv_request_release(srv_request *r); /* drops a reference; takes the scheduler's lock */

typedef struct srv_metrics srv_metrics;
typedef struct srv_scheduler srv_scheduler;

typedef enum srv_submit_result { SRV_SUBMITTED, SRV_QUEUE_FULL, SRV_STOPPING } srv_submit_result;

edgellm_status ellm_srv_scheduler_create(edgellm_model *model, const ellm_server_config *cfg,
                                         srv_metrics *metrics, srv_scheduler **out);
/* Stops admitting (queued requests end as SHUTDOWN), lets running requests finish until
 * grace_deadline (monotonic seconds), cuts the rest, and returns when none is left. */
void ellm_srv_scheduler_drain(srv_scheduler *s, double grace_deadline);
void ellm_srv_scheduler_free(srv_scheduler *s);
srv_submit_result ellm_srv_scheduler_submit(srv_scheduler *s, srv_request *r);
/* The choices of one request, all or none (they share a group). */
srv_submit_result ellm_srv_scheduler_submit_choices(srv_scheduler *s, srv_request *const *reqs,
                                                    int n);
/* Waits (with the scheduler's lock) until r has events past *seen or is done, or timeout_s
 * passes; copies nothing — the caller reads r->events[*seen ..] through ellm_srv_request_take. */
void ellm_srv_request_wait(srv_scheduler *s, srv_request *r, size_t seen, double timeout_s);
/* Copies events [from, n_events) into a fresh array the caller frees with ellm_srv_events_free, and
 * reports whether the request is done (then *finish and the counters are final). */
size_t ellm_srv_request_take(srv_scheduler *s, srv_request *r, size_t from, srv_event **out,
                             bool *done);
void ellm_srv_events_free(srv_event *events, size_t n);
int ellm_srv_scheduler_queue_depth(srv_scheduler *s);
int ellm_srv_scheduler_n_ctx(srv_scheduler *s);
int ellm_srv_scheduler_active(srv_scheduler *s);
pthread_mutex_t *ellm_srv_scheduler_lock(srv_scheduler *s);

/* ---- metrics ---- */
srv_metrics *ellm_srv_metrics_new(void);
void ellm_srv_metrics_free(srv_metrics *m);
void ellm_srv_metrics_request(srv_metrics *m, const char *endpoint, int status, double seconds);
void ellm_srv_metrics_tokens(srv_metrics *m, int64_t prompt_tokens, int64_t cached_tokens,
                             int64_t generated_tokens);
void ellm_srv_metrics_ttft(srv_metrics *m, double seconds);
/* One speculative pass of a sequence: proposals checked and accepted. */
void ellm_srv_metrics_speculative(srv_metrics *m, int64_t proposed, int64_t accepted);
void ellm_srv_metrics_rejected(srv_metrics *m);
/* Prometheus text exposition; malloc'd. */
char *ellm_srv_metrics_render(srv_metrics *m, int queue_depth, int active_slots, int parallel);

double ellm_srv_now(void);

/* ---- the OpenAI request and response shapes (openai.c) ---- */
#include <jansson.h>

typedef struct srv_api_error {
    int status;       /* HTTP status */
    const char *type; /* "invalid_request_error", "authentication_error", ... */
    const char *code; /* NULL or e.g. "model_not_found" */
    char param[64];   /* the offending field, "" if none */
    char message[512];
} srv_api_error;

void ellm_srv_error_set(srv_api_error *e, int status, const char *type, const char *code,
                        const char *param, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* {"error": {"message", "type", "param", "code"}} */
json_t *ellm_srv_error_json(const srv_api_error *e);

typedef enum srv_endpoint_kind { SRV_CHAT, SRV_COMPLETION } srv_endpoint_kind;

/* What a completion request asks for beyond the generation itself. */
typedef struct srv_completion_opts {
    srv_endpoint_kind kind;
    bool stream;
    bool include_usage;
    bool logprobs;
    int top_logprobs;
    int n;           /* choices */
    bool tools;      /* chat with tools (tool_choice not "none"): tool calls are parsed out of
                        the answer in the syntax of the model's chat family */
    int tool_family; /* that family (an ellm_chat_family) */
} srv_completion_opts;

/* One streamed choice of a chat request with tools: text that may begin a tool call is held
 * back until the call is complete (or turns out not to be one). */
typedef struct srv_tool_stream {
    char *text;
    size_t len, cap;
    size_t sent; /* bytes of text already sent as content */
} srv_tool_stream;

/* One choice of a finished request, as the response shows it. */
typedef struct srv_choice_result {
    const srv_event *events;
    size_t n_events;
    srv_finish finish;
} srv_choice_result;

/* Parses a chat or completion body into r (prompt tokens, sampling, limits) and opts. The chat
 * body's messages go through the model's chat template. */
bool ellm_srv_parse_completion(json_t *body, srv_endpoint_kind kind, const edgellm_model *model,
                               const char *model_id, int n_ctx, srv_request *r,
                               srv_completion_opts *opts, srv_api_error *err);
/* Checks "model" names the served model (absent is fine). */
bool ellm_srv_check_model(json_t *body, const char *model_id, srv_api_error *err);

const char *ellm_srv_finish_reason(srv_finish f);
/* The JSON of a finished non-streaming request. */
json_t *ellm_srv_completion_response(const srv_completion_opts *o, const edgellm_model *model,
                                     const char *id, const char *model_id, long long created,
                                     const srv_choice_result *choices, int n_choices,
                                     int32_t n_prompt, int32_t n_cached, int32_t n_generated);
/* One streamed chunk of choice `index`: events' text and logprobs (may be none), and the finish
 * reason once done; text_offset is where the events' text starts in the choice's whole text. */
json_t *ellm_srv_completion_chunk(const srv_completion_opts *o, const edgellm_model *model,
                                  const char *id, const char *model_id, long long created,
                                  int index, const srv_event *events, size_t n_events,
                                  size_t text_offset, bool first, srv_finish finish);
/* The chunk for new events of a streamed choice with tools: the content that cannot be part of a
 * call, or NULL when everything new is held back. */
json_t *ellm_srv_tool_stream_feed(const srv_completion_opts *o, srv_tool_stream *ts, const char *id,
                                  const char *model_id, long long created, int index,
                                  const srv_event *events, size_t n_events);
/* At the end of a choice that finished normally: the chunks for what was held back (content, or
 * each call's header and arguments), appended to list (a JSON array); returns the finish reason
 * to report (SRV_FINISH_TOOL_CALLS when calls were found). */
srv_finish ellm_srv_tool_stream_finish(const srv_completion_opts *o, srv_tool_stream *ts,
                                       const char *id, const char *model_id, long long created,
                                       int index, srv_finish finish, json_t *list);
void ellm_srv_tool_stream_free(srv_tool_stream *ts);

/* The bytes of one token in *buf, grown (realloc) as needed and owned by the caller, who frees it
 * after a loop over many tokens; returns their length (0 for an id outside the vocabulary). */
size_t ellm_srv_token_piece(const edgellm_model *model, edgellm_token token, char **buf,
                            size_t *cap);
json_t *ellm_srv_usage_json(int32_t n_prompt, int32_t n_cached, int32_t n_generated);

#endif
