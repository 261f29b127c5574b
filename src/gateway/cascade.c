#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "gateway/cascade.h"
#include "gateway/edge.h"

bool ellm_gw_edge_answer_run(gw_edge_answer *a, srv_server *srv, json_t *body,
                             srv_endpoint_kind kind, double deadline, srv_api_error *err)
{
    memset(a, 0, sizeof *a);
    if (!(a->req = ellm_srv_request_new())) {
        ellm_srv_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
        return false;
    }
    srv_request *r = a->req;
    if (!ellm_srv_parse_completion(body, kind, srv->model, srv->model_id,
                                   ellm_srv_scheduler_n_ctx(srv->sched), r, &a->opts, err))
        return false;
    int32_t room = ellm_srv_scheduler_n_ctx(srv->sched) - r->n_prompt;
    int32_t max_tokens = r->max_tokens < 0 || r->max_tokens > room ? room : r->max_tokens;
    gw_edge e;
    edgellm_sampler *sampler = NULL;
    edgellm_text_stream *text = NULL;
    bool ok = ellm_gw_edge_open(&e, srv, r->n_prompt + max_tokens + 1) == EDGELLM_OK &&
              edgellm_sampler_create(&r->sampling, e.n_vocab, &sampler) == EDGELLM_OK &&
              edgellm_text_stream_create(srv->model, (const char *const *)r->stops, r->n_stops,
                                         &text) == EDGELLM_OK;
    for (int32_t i = 0; ok && i < r->n_prompt; i++)
        edgellm_sampler_accept(sampler, r->prompt[i]);
    const float *logits = ok ? ellm_gw_edge_sync(&e, r->prompt, r->n_prompt) : NULL;
    double sum = 0;
    a->min_logprob = 0;
    a->finish = SRV_FINISH_LENGTH;
    while (ok && logits && a->n_generated < max_tokens) {
        if (ellm_srv_now() > deadline) {
            a->finish = SRV_FINISH_TIMEOUT;
            break;
        }
        edgellm_token t = edgellm_sampler_sample(sampler, logits);
        if (t < 0 || edgellm_token_is_eog(srv->model, t)) {
            a->finish = SRV_FINISH_STOP;
            break;
        }
        double lp = ellm_gw_logprob(logits, e.n_vocab, t, 1);
        sum += lp;
        if (a->n_generated == 0 || lp < a->min_logprob)
            a->min_logprob = lp;
        a->n_generated++;
        edgellm_sampler_accept(sampler, t);
        const char *piece = NULL;
        size_t len = 0;
        int stopped = 0;
        ok = edgellm_text_stream_push(text, t, &piece, &len, &stopped) == EDGELLM_OK &&
             ellm_gw_events_push(&a->events, &a->n_events, &a->cap_events, t, piece ? piece : "",
                                 len);
        if (stopped) {
            a->finish = SRV_FINISH_STOP;
            break;
        }
        if (ok && a->n_generated < max_tokens)
            logits = ellm_gw_edge_push(&e, t);
    }
    const char *tail = NULL;
    size_t tail_len = 0;
    if (ok && edgellm_text_stream_finish(text, &tail, &tail_len) == EDGELLM_OK && tail_len)
        ok = ellm_gw_events_push(&a->events, &a->n_events, &a->cap_events, -1, tail, tail_len);
    ok = ok && logits;
    a->mean_logprob = a->n_generated ? sum / a->n_generated : 0;
    edgellm_text_stream_free(text);
    edgellm_sampler_free(sampler);
    ellm_gw_edge_close(&e);
    if (!ok)
        ellm_srv_error_set(err, 500, "server_error", NULL, NULL,
                           "the edge model could not answer: %s", edgellm_last_error());
    return ok;
}

void ellm_gw_edge_answer_free(gw_edge_answer *a)
{
    ellm_srv_request_release(a->req);
    ellm_srv_events_free(a->events, a->n_events);
    memset(a, 0, sizeof *a);
}
