/* /v1/chat/completions and /v1/completions: the request goes to the scheduler as one request per
 * choice; the answer waits for every choice, or streams them as Server-Sent Events while the
 * scheduler produces tokens. A connection that goes away cancels its generation at once. */
#include <microhttpd.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/endpoints.h"

static void request_id(srv_server *srv, const char *prefix, char *out, size_t cap)
{
    long n = atomic_fetch_add(&srv->next_id, 1);
    uint32_t r = randombytes_random();
    snprintf(out, cap, "%s-%08x%06lx", prefix, r, n & 0xFFFFFF);
}

typedef struct stream_state {
    srv_server *srv;
    srv_request *req; /* choice 0 */
    srv_request *choices[SRV_MAX_CHOICES];
    size_t choice_seen[SRV_MAX_CHOICES], choice_text[SRV_MAX_CHOICES];
    bool choice_first_sent[SRV_MAX_CHOICES], choice_done[SRV_MAX_CHOICES];
    srv_tool_stream choice_tools[SRV_MAX_CHOICES]; /* with tools: text held back per choice */
    int n_choices;
    srv_completion_opts opts;
    struct MHD_Connection *conn;
    char id[64];
    char endpoint[48];
    long long created;
    bool finished;
    char *out;
    size_t out_len, out_cap, out_off;
    double t_start;
} stream_state;

static bool out_append(stream_state *st, const char *s, size_t n)
{
    if (st->out_off > 0 && st->out_off == st->out_len)
        st->out_off = st->out_len = 0;
    if (st->out_len + n > st->out_cap) {
        size_t cap = st->out_cap ? st->out_cap * 2 : 4096;
        while (cap < st->out_len + n)
            cap *= 2;
        char *b = realloc(st->out, cap);
        if (!b)
            return false;
        st->out = b;
        st->out_cap = cap;
    }
    memcpy(st->out + st->out_len, s, n);
    st->out_len += n;
    return true;
}

static bool out_event(stream_state *st, json_t *j)
{
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text)
        return false;
    bool ok = out_append(st, "data: ", 6) && out_append(st, text, strlen(text)) &&
              out_append(st, "\n\n", 2);
    free(text);
    return ok;
}

static void format_stream_error(stream_state *st, srv_finish f, const char *message)
{
    srv_api_error e;
    int status = f == SRV_FINISH_TIMEOUT ? 504 : f == SRV_FINISH_SHUTDOWN ? 503 : 500;
    ellm_srv_error_set(&e, status, ellm_srv_http_error_type(status), NULL, NULL, "%s", message);
    out_event(st, ellm_srv_error_json(&e));
}

/* Formats what choice c produced since the last call; a choice that ended badly is *failed. */
static size_t stream_choice(stream_state *st, int c, srv_request **failed)
{
    if (st->choice_done[c])
        return 0;
    srv_request *r = st->choices[c];
    srv_event *ev = NULL;
    bool done = false;
    size_t n = ellm_srv_request_take(st->srv->sched, r, st->choice_seen[c], &ev, &done);
    st->choice_seen[c] += n;
    if (!st->choice_first_sent[c] && (n > 0 || done)) {
        if (st->opts.kind == SRV_CHAT)
            out_event(st, ellm_srv_completion_chunk(&st->opts, st->srv->model, st->id,
                                                    st->srv->model_id, st->created, c, NULL, 0, 0,
                                                    true, SRV_FINISH_NONE));
        st->choice_first_sent[c] = true;
    }
    if (n > 0 && st->opts.tools)
        out_event(st, ellm_srv_tool_stream_feed(&st->opts, &st->choice_tools[c], st->id,
                                                st->srv->model_id, st->created, c, ev, n));
    else if (n > 0)
        out_event(st, ellm_srv_completion_chunk(&st->opts, st->srv->model, st->id,
                                                st->srv->model_id, st->created, c, ev, n,
                                                st->choice_text[c], false, SRV_FINISH_NONE));
    for (size_t i = 0; i < n; i++)
        st->choice_text[c] += ev[i].len;
    ellm_srv_events_free(ev, n);
    if (done) {
        st->choice_done[c] = true;
        if (r->finish == SRV_FINISH_STOP || r->finish == SRV_FINISH_LENGTH) {
            srv_finish finish = r->finish;
            if (st->opts.tools) {
                json_t *held = json_array();
                finish = ellm_srv_tool_stream_finish(&st->opts, &st->choice_tools[c], st->id,
                                                     st->srv->model_id, st->created, c, finish,
                                                     held);
                for (size_t k = 0; k < json_array_size(held); k++)
                    out_event(st, json_incref(json_array_get(held, k)));
                json_decref(held);
            }
            out_event(st, ellm_srv_completion_chunk(&st->opts, st->srv->model, st->id,
                                                    st->srv->model_id, st->created, c, NULL, 0, 0,
                                                    false, finish));
        } else if (!*failed)
            *failed = r;
    }
    return n + done;
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    stream_state *st = cls;
    srv_scheduler *sched = st->srv->sched;
    for (;;) {
        if (st->out_off < st->out_len) {
            size_t n = st->out_len - st->out_off < max ? st->out_len - st->out_off : max;
            memcpy(buf, st->out + st->out_off, n);
            st->out_off += n;
            return (ssize_t)n;
        }
        if (st->finished)
            return MHD_CONTENT_READER_END_OF_STREAM;
        size_t n_new = 0;
        int n_done = 0;
        srv_request *failed = NULL, *waiting = NULL;
        for (int c = 0; c < st->n_choices; c++)
            n_new += stream_choice(st, c, &failed);
        for (int c = 0; c < st->n_choices; c++) {
            n_done += st->choice_done[c];
            if (!st->choice_done[c] && !waiting)
                waiting = st->choices[c];
        }
        if (failed || n_done == st->n_choices) {
            if (failed) {
                format_stream_error(st, failed->finish,
                                    failed->error[0] ? failed->error : "generation failed");
            } else if (st->opts.include_usage) {
                int32_t generated = 0;
                for (int c = 0; c < st->n_choices; c++)
                    generated += st->choices[c]->n_generated;
                json_t *u = json_pack(
                    "{s:s,s:s,s:I,s:s,s:[],s:o}", "id", st->id, "object",
                    st->opts.kind == SRV_CHAT ? "chat.completion.chunk" : "text_completion",
                    "created", (json_int_t)st->created, "model", st->srv->model_id, "choices",
                    "usage", ellm_srv_usage_json(st->req->n_prompt, st->req->n_cached, generated));
                out_event(st, u);
            }
            out_append(st, "data: [DONE]\n\n", 14);
            st->finished = true;
            continue;
        }
        if (n_new > 0)
            continue;
        if (ellm_srv_http_client_gone(st->conn)) {
            for (int c = 0; c < st->n_choices; c++)
                atomic_store(&st->choices[c]->cancelled, true);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        /* The choices advance in the same scheduler steps: waiting on one wakes for all. */
        ellm_srv_request_wait(sched, waiting, st->choice_seen[waiting->choice], 0.1);
    }
}

static void stream_free(void *cls)
{
    stream_state *st = cls;
    /* The connection is gone (or the stream ended): a generation still running is wasted. */
    for (int c = 0; c < st->n_choices; c++) {
        atomic_store(&st->choices[c]->cancelled, true);
        ellm_srv_request_release(st->choices[c]);
        ellm_srv_tool_stream_free(&st->choice_tools[c]);
    }
    ellm_srv_metrics_request(st->srv->metrics, st->endpoint, 200, ellm_srv_now() - st->t_start);
    atomic_fetch_sub(&st->srv->responses_in_flight, 1);
    free(st->out);
    free(st);
}

static void cancel_choices(srv_request *const *choices, int n)
{
    for (int c = 0; c < n; c++)
        atomic_store(&choices[c]->cancelled, true);
}

static void release_choices(srv_request *const *choices, int n)
{
    for (int c = 0; c < n; c++)
        ellm_srv_request_release(choices[c]);
}

enum MHD_Result ellm_srv_endpoint_completion(srv_server *srv, struct MHD_Connection *conn,
                                             srv_conn *cs, json_t *body, srv_endpoint_kind kind)
{
    const char *endpoint = cs->endpoint;
    srv_api_error err;
    srv_request *r = ellm_srv_request_new();
    if (!r) {
        json_decref(body);
        return ellm_srv_http_fail(srv, conn, 500, NULL, endpoint, cs, "out of memory");
    }
    srv_completion_opts opts;
    bool ok = ellm_srv_parse_completion(body, kind, srv->model, srv->model_id,
                                        ellm_srv_scheduler_n_ctx(srv->sched), r, &opts, &err);
    json_decref(body);
    if (!ok) {
        ellm_srv_request_release(r);
        return ellm_srv_http_reply_error(srv, conn, &err, endpoint, cs);
    }
    r->deadline = ellm_srv_now() + srv->request_timeout_s;
    srv_request *choices[SRV_MAX_CHOICES] = {r};
    int n_choices = 1;
    while (n_choices < opts.n && (choices[n_choices] = ellm_srv_request_derive(r, n_choices)))
        n_choices++;
    srv_submit_result sr = n_choices == opts.n
                               ? ellm_srv_scheduler_submit_choices(srv->sched, choices, n_choices)
                               : SRV_QUEUE_FULL;
    if (sr != SRV_SUBMITTED) {
        bool out_of_memory = n_choices < opts.n;
        release_choices(choices, n_choices);
        if (out_of_memory)
            return ellm_srv_http_fail(srv, conn, 500, NULL, endpoint, cs, "out of memory");
        if (sr == SRV_QUEUE_FULL) {
            ellm_srv_metrics_rejected(srv->metrics);
            return ellm_srv_http_fail(
                srv, conn, 429, "rate_limit_exceeded", endpoint, cs,
                "every slot is busy and the wait queue is full; retry after a moment");
        }
        return ellm_srv_http_fail(srv, conn, 503, "shutting_down", endpoint, cs,
                                  "the server is shutting down");
    }
    long long created = (long long)time(NULL);
    char id[64];
    request_id(srv, kind == SRV_CHAT ? "chatcmpl" : "cmpl", id, sizeof id);

    if (opts.stream) {
        stream_state *st = calloc(1, sizeof *st);
        if (!st) {
            cancel_choices(choices, n_choices);
            release_choices(choices, n_choices);
            return ellm_srv_http_fail(srv, conn, 500, NULL, endpoint, cs, "out of memory");
        }
        st->srv = srv;
        st->req = r;
        memcpy(st->choices, choices, sizeof choices);
        st->n_choices = n_choices;
        st->opts = opts;
        st->conn = conn;
        st->created = created;
        st->t_start = cs->t_start;
        snprintf(st->id, sizeof st->id, "%s", id);
        snprintf(st->endpoint, sizeof st->endpoint, "%s", endpoint);
        atomic_fetch_add(&srv->responses_in_flight, 1);
        struct MHD_Response *resp = MHD_create_response_from_callback(
            MHD_SIZE_UNKNOWN, 8192, stream_reader, st, stream_free);
        if (!resp) {
            stream_free(st);
            return MHD_NO;
        }
        MHD_add_response_header(resp, "Content-Type", "text/event-stream");
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
        MHD_add_response_header(resp, "X-Accel-Buffering", "no");
        ellm_srv_http_decorate(srv, conn, resp, &cs->rq);
        enum MHD_Result ret = MHD_queue_response(conn, 200, resp);
        MHD_destroy_response(resp);
        return ret;
    }

    /* Not streamed: wait for the end of every choice, watching for the client going away. */
    for (int c = 0; c < n_choices;) {
        ellm_srv_request_wait(srv->sched, choices[c], (size_t)-1, 0.1);
        pthread_mutex_lock(ellm_srv_scheduler_lock(srv->sched));
        bool done = choices[c]->done;
        pthread_mutex_unlock(ellm_srv_scheduler_lock(srv->sched));
        if (done) {
            c++;
            continue;
        }
        if (ellm_srv_http_client_gone(conn)) {
            cancel_choices(choices, n_choices);
            release_choices(choices, n_choices);
            return MHD_NO;
        }
    }
    srv_choice_result results[SRV_MAX_CHOICES];
    srv_event *events[SRV_MAX_CHOICES];
    srv_request *failed = NULL;
    int32_t generated = 0;
    for (int c = 0; c < n_choices; c++) {
        bool done = false;
        results[c].n_events = ellm_srv_request_take(srv->sched, choices[c], 0, &events[c], &done);
        results[c].events = events[c];
        results[c].finish = choices[c]->finish;
        generated += choices[c]->n_generated;
        if (!failed && choices[c]->finish != SRV_FINISH_STOP &&
            choices[c]->finish != SRV_FINISH_LENGTH)
            failed = choices[c];
    }
    enum MHD_Result ret;
    if (!failed) {
        ret = ellm_srv_http_reply_json(
            srv, conn, 200,
            ellm_srv_completion_response(&opts, srv->model, id, srv->model_id, created, results,
                                         n_choices, r->n_prompt, r->n_cached, generated),
            endpoint, cs);
    } else {
        int status = failed->finish == SRV_FINISH_TIMEOUT    ? 504
                     : failed->finish == SRV_FINISH_SHUTDOWN ? 503
                                                             : 500;
        ret = ellm_srv_http_fail(srv, conn, status, NULL, endpoint, cs,
                                 failed->error[0] ? failed->error : "generation failed");
    }
    for (int c = 0; c < n_choices; c++)
        ellm_srv_events_free(events[c], results[c].n_events);
    release_choices(choices, n_choices);
    return ret;
}
