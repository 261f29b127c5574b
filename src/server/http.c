#define _GNU_SOURCE /* POLLRDHUP: notice a client that hung up while its request runs */
/* HTTP plumbing on libmicrohttpd: one thread per connection, bodies gathered within a size
 * limit, authentication and CORS, routing, and Server-Sent Events that stream tokens as the
 * scheduler produces them. A connection that goes away cancels its generation at once. */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "server/chat_page.h"
#include "server/http.h"

struct route;

typedef struct conn_state {
    char *body;
    size_t len, cap;
    bool too_large;
    bool answered;             /* refused from the headers: whatever body follows is dropped */
    double t_start;
    const struct route *route; /* NULL: the path or the method is unknown */
    const char *endpoint;      /* the metrics label */
    srv_front_request rq;      /* the route headers a front chose (empty for `serve`) */
} conn_state;

static const char *reason_type(int status)
{
    switch (status) {
    case 401: return "authentication_error";
    case 404: return "invalid_request_error";
    case 429: return "rate_limit_error";
    case 503: return "server_unavailable";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

/* CORS headers for an allowed Origin; nothing for others (the browser then refuses). */
static void add_cors(srv_server *srv, struct MHD_Connection *conn, struct MHD_Response *resp)
{
    if (srv->n_cors == 0)
        return;
    const char *origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
    if (!origin)
        return;
    for (int i = 0; i < srv->n_cors; i++) {
        if (!strcmp(srv->cors[i], "*") || !strcmp(srv->cors[i], origin)) {
            MHD_add_response_header(resp, "Access-Control-Allow-Origin", origin);
            MHD_add_response_header(resp, "Vary", "Origin");
            return;
        }
    }
}

void srv_http_decorate(srv_server *srv, struct MHD_Connection *conn, struct MHD_Response *resp,
                       const srv_front_request *rq)
{
    add_cors(srv, conn, resp);
    if (rq && rq->route[0])
        MHD_add_response_header(resp, "x-edgellm-route", rq->route);
    if (rq && rq->reason[0])
        MHD_add_response_header(resp, "x-edgellm-route-reason", rq->reason);
}

static enum MHD_Result send_response(srv_server *srv, struct MHD_Connection *conn, int status,
                                     const char *content_type, const char *body, size_t len,
                                     const char *endpoint, conn_state *cs)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", content_type);
    if (status == 429 || status == 503)
        MHD_add_response_header(resp, "Retry-After", "1");
    if (status == 401)
        MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
    srv_http_decorate(srv, conn, resp, &cs->rq);
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    srv_metrics_request(srv->metrics, endpoint, status, srv_now() - cs->t_start);
    return ret;
}

static enum MHD_Result send_json(srv_server *srv, struct MHD_Connection *conn, int status,
                                 json_t *j, const char *endpoint, conn_state *cs)
{
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text)
        return send_response(srv, conn, 500, "application/json",
                             "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\","
                             "\"param\":null,\"code\":null}}",
                             88, endpoint, cs);
    enum MHD_Result r =
        send_response(srv, conn, status, "application/json", text, strlen(text), endpoint, cs);
    free(text);
    return r;
}

static enum MHD_Result send_error(srv_server *srv, struct MHD_Connection *conn,
                                  const srv_api_error *e, const char *endpoint, conn_state *cs)
{
    return send_json(srv, conn, e->status, srv_error_json(e), endpoint, cs);
}

/* A front's answers are counted and decorated like the server's own: through a conn_state that
 * carries the front's request. */
int srv_http_send(srv_server *srv, struct MHD_Connection *conn, const srv_front_request *rq,
                  int status, const char *content_type, const char *body, size_t len)
{
    conn_state cs = {.t_start = rq->t_start, .rq = *rq};
    return send_response(srv, conn, status, content_type, body, len, rq->endpoint, &cs);
}

int srv_http_send_error(srv_server *srv, struct MHD_Connection *conn, const srv_front_request *rq,
                        const srv_api_error *e)
{
    conn_state cs = {.t_start = rq->t_start, .rq = *rq};
    return send_error(srv, conn, e, rq->endpoint, &cs);
}

static enum MHD_Result fail(srv_server *srv, struct MHD_Connection *conn, int status,
                            const char *code, const char *endpoint, conn_state *cs,
                            const char *message)
{
    srv_api_error e;
    srv_error_set(&e, status, reason_type(status), code, NULL, "%s", message);
    return send_error(srv, conn, &e, endpoint, cs);
}

/* Whether the peer closed its side: then nobody is waiting for this request's answer. */
bool srv_http_client_gone(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci)
        return false;
    struct pollfd p = {.fd = ci->connect_fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/* Parses the body as a JSON object; on failure the error names the position. */
static json_t *parse_body(conn_state *cs, srv_api_error *err)
{
    json_error_t je;
    json_t *j = json_loadb(cs->body ? cs->body : "", cs->len, 0, &je);
    if (!j) {
        srv_error_set(err, 400, "invalid_request_error", "invalid_json", NULL,
                      "the request body is not valid JSON: %s at line %d, column %d (byte %d)",
                      je.text, je.line, je.column, je.position);
        return NULL;
    }
    if (!json_is_object(j)) {
        srv_error_set(err, 400, "invalid_request_error", "invalid_json", NULL,
                      "the request body must be a JSON object");
        json_decref(j);
        return NULL;
    }
    return j;
}

static void request_id(srv_server *srv, const char *prefix, char *out, size_t cap)
{
    long n = atomic_fetch_add(&srv->next_id, 1);
    uint32_t r = randombytes_random();
    snprintf(out, cap, "%s-%08x%06lx", prefix, r, n & 0xFFFFFF);
}

/* ---- streaming ---- */

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
    srv_error_set(&e, status, reason_type(status), NULL, NULL, "%s", message);
    out_event(st, srv_error_json(&e));
}

/* Formats what choice c produced since the last call; a choice that ended badly is *failed. */
static size_t stream_choice(stream_state *st, int c, srv_request **failed)
{
    if (st->choice_done[c])
        return 0;
    srv_request *r = st->choices[c];
    srv_event *ev = NULL;
    bool done = false;
    size_t n = srv_request_take(st->srv->sched, r, st->choice_seen[c], &ev, &done);
    st->choice_seen[c] += n;
    if (!st->choice_first_sent[c] && (n > 0 || done)) {
        if (st->opts.kind == SRV_CHAT)
            out_event(st, srv_completion_chunk(&st->opts, st->srv->model, st->id,
                                               st->srv->model_id, st->created, c, NULL, 0, 0, true,
                                               SRV_FINISH_NONE));
        st->choice_first_sent[c] = true;
    }
    if (n > 0 && st->opts.tools)
        out_event(st, srv_tool_stream_feed(&st->opts, &st->choice_tools[c], st->id,
                                           st->srv->model_id, st->created, c, ev, n));
    else if (n > 0)
        out_event(st, srv_completion_chunk(&st->opts, st->srv->model, st->id, st->srv->model_id,
                                           st->created, c, ev, n, st->choice_text[c], false,
                                           SRV_FINISH_NONE));
    for (size_t i = 0; i < n; i++)
        st->choice_text[c] += ev[i].len;
    srv_events_free(ev, n);
    if (done) {
        st->choice_done[c] = true;
        if (r->finish == SRV_FINISH_STOP || r->finish == SRV_FINISH_LENGTH) {
            srv_finish finish = r->finish;
            if (st->opts.tools) {
                json_t *held = json_array();
                finish = srv_tool_stream_finish(&st->opts, &st->choice_tools[c], st->id,
                                                st->srv->model_id, st->created, c, finish, held);
                for (size_t k = 0; k < json_array_size(held); k++)
                    out_event(st, json_incref(json_array_get(held, k)));
                json_decref(held);
            }
            out_event(st, srv_completion_chunk(&st->opts, st->srv->model, st->id,
                                               st->srv->model_id, st->created, c, NULL, 0, 0, false,
                                               finish));
        }
        else if (!*failed)
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
                    "usage", srv_usage_json(st->req->n_prompt, st->req->n_cached, generated));
                out_event(st, u);
            }
            out_append(st, "data: [DONE]\n\n", 14);
            st->finished = true;
            continue;
        }
        if (n_new > 0)
            continue;
        if (srv_http_client_gone(st->conn)) {
            for (int c = 0; c < st->n_choices; c++)
                atomic_store(&st->choices[c]->cancelled, true);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        /* The choices advance in the same scheduler steps: waiting on one wakes for all. */
        srv_request_wait(sched, waiting, st->choice_seen[waiting->choice], 0.1);
    }
}

static void stream_free(void *cls)
{
    stream_state *st = cls;
    /* The connection is gone (or the stream ended): a generation still running is wasted. */
    for (int c = 0; c < st->n_choices; c++) {
        atomic_store(&st->choices[c]->cancelled, true);
        srv_request_release(st->choices[c]);
        srv_tool_stream_free(&st->choice_tools[c]);
    }
    srv_metrics_request(st->srv->metrics, st->endpoint, 200, srv_now() - st->t_start);
    atomic_fetch_sub(&st->srv->responses_in_flight, 1);
    free(st->out);
    free(st);
}

/* ---- endpoints ---- */

static void cancel_choices(srv_request *const *choices, int n)
{
    for (int c = 0; c < n; c++)
        atomic_store(&choices[c]->cancelled, true);
}

static void release_choices(srv_request *const *choices, int n)
{
    for (int c = 0; c < n; c++)
        srv_request_release(choices[c]);
}

static enum MHD_Result handle_completion(srv_server *srv, struct MHD_Connection *conn,
                                         conn_state *cs, srv_endpoint_kind kind,
                                         const char *endpoint)
{
    srv_api_error err;
    json_t *body = parse_body(cs, &err);
    if (!body)
        return send_error(srv, conn, &err, endpoint, cs);
    srv_request *r = srv_request_new();
    if (!r) {
        json_decref(body);
        return fail(srv, conn, 500, NULL, endpoint, cs, "out of memory");
    }
    srv_completion_opts opts;
    bool ok = srv_parse_completion(body, kind, srv->model, srv->model_id,
                                   srv_scheduler_n_ctx(srv->sched), r, &opts, &err);
    json_decref(body);
    if (!ok) {
        srv_request_release(r);
        return send_error(srv, conn, &err, endpoint, cs);
    }
    r->deadline = srv_now() + srv->request_timeout_s;
    srv_request *choices[SRV_MAX_CHOICES] = {r};
    int n_choices = 1;
    while (n_choices < opts.n && (choices[n_choices] = srv_request_derive(r, n_choices)))
        n_choices++;
    srv_submit_result sr = n_choices == opts.n
                               ? srv_scheduler_submit_choices(srv->sched, choices, n_choices)
                               : SRV_QUEUE_FULL;
    if (sr != SRV_SUBMITTED) {
        bool out_of_memory = n_choices < opts.n;
        release_choices(choices, n_choices);
        if (out_of_memory)
            return fail(srv, conn, 500, NULL, endpoint, cs, "out of memory");
        if (sr == SRV_QUEUE_FULL) {
            srv_metrics_rejected(srv->metrics);
            return fail(srv, conn, 429, "rate_limit_exceeded", endpoint, cs,
                        "every slot is busy and the wait queue is full; retry after a moment");
        }
        return fail(srv, conn, 503, "shutting_down", endpoint, cs, "the server is shutting down");
    }
    long long created = (long long)time(NULL);
    char id[64];
    request_id(srv, kind == SRV_CHAT ? "chatcmpl" : "cmpl", id, sizeof id);

    if (opts.stream) {
        stream_state *st = calloc(1, sizeof *st);
        if (!st) {
            cancel_choices(choices, n_choices);
            release_choices(choices, n_choices);
            return fail(srv, conn, 500, NULL, endpoint, cs, "out of memory");
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
        struct MHD_Response *resp =
            MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 8192, stream_reader, st, stream_free);
        if (!resp) {
            stream_free(st);
            return MHD_NO;
        }
        MHD_add_response_header(resp, "Content-Type", "text/event-stream");
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
        MHD_add_response_header(resp, "X-Accel-Buffering", "no");
        srv_http_decorate(srv, conn, resp, &cs->rq);
        enum MHD_Result ret = MHD_queue_response(conn, 200, resp);
        MHD_destroy_response(resp);
        return ret;
    }

    /* Not streamed: wait for the end of every choice, watching for the client going away. */
    for (int c = 0; c < n_choices;) {
        srv_request_wait(srv->sched, choices[c], (size_t)-1, 0.1);
        pthread_mutex_lock(srv_scheduler_lock(srv->sched));
        bool done = choices[c]->done;
        pthread_mutex_unlock(srv_scheduler_lock(srv->sched));
        if (done) {
            c++;
            continue;
        }
        if (srv_http_client_gone(conn)) {
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
        results[c].n_events = srv_request_take(srv->sched, choices[c], 0, &events[c], &done);
        results[c].events = events[c];
        results[c].finish = choices[c]->finish;
        generated += choices[c]->n_generated;
        if (!failed && choices[c]->finish != SRV_FINISH_STOP &&
            choices[c]->finish != SRV_FINISH_LENGTH)
            failed = choices[c];
    }
    enum MHD_Result ret;
    if (!failed) {
        ret = send_json(srv, conn, 200,
                        srv_completion_response(&opts, srv->model, id, srv->model_id, created,
                                                results, n_choices, r->n_prompt, r->n_cached,
                                                generated),
                        endpoint, cs);
    } else {
        int status = failed->finish == SRV_FINISH_TIMEOUT    ? 504
                     : failed->finish == SRV_FINISH_SHUTDOWN ? 503
                                                             : 500;
        ret = fail(srv, conn, status, NULL, endpoint, cs,
                   failed->error[0] ? failed->error : "generation failed");
    }
    for (int c = 0; c < n_choices; c++)
        srv_events_free(events[c], results[c].n_events);
    release_choices(choices, n_choices);
    return ret;
}

static enum MHD_Result handle_embeddings(srv_server *srv, struct MHD_Connection *conn,
                                         conn_state *cs)
{
    const char *endpoint = "/v1/embeddings";
    srv_api_error err;
    json_t *body = parse_body(cs, &err);
    if (!body)
        return send_error(srv, conn, &err, endpoint, cs);
    if (!srv_check_model(body, srv->model_id, &err)) {
        json_decref(body);
        return send_error(srv, conn, &err, endpoint, cs);
    }
    json_t *input = json_object_get(body, "input");
    json_t *list = NULL;
    /* A string, an array of strings, an array of token ids, or an array of such arrays. */
    if (json_is_string(input) ||
        (json_is_array(input) && json_array_size(input) > 0 &&
         json_is_integer(json_array_get(input, 0)))) {
        list = json_array();
        json_array_append(list, input);
    } else if (json_is_array(input) && json_array_size(input) > 0) {
        list = json_incref(input);
    }
    json_t *fmt = json_object_get(body, "encoding_format");
    bool base64 = json_is_string(fmt) && !strcmp(json_string_value(fmt), "base64");
    const char *problem = NULL;
    if (!list)
        problem = "'input' must be a non-empty string or array (of strings or token ids)";
    else if (json_array_size(list) > 256)
        problem = "'input' holds more than 256 items";
    else if (fmt && !json_is_null(fmt) &&
             (!json_is_string(fmt) || (strcmp(json_string_value(fmt), "float") != 0 && !base64)))
        problem = "'encoding_format' must be \"float\" or \"base64\"";
    json_t *dims = json_object_get(body, "dimensions");
    edgellm_model_info info;
    edgellm_model_get_info(srv->model, &info);
    if (!problem && dims && !json_is_null(dims) &&
        (!json_is_integer(dims) || json_integer_value(dims) != info.n_embd))
        problem = "'dimensions' can only be the model's embedding size";
    if (problem) {
        srv_error_set(&err, 400, "invalid_request_error", "invalid_value", "input", "%s", problem);
        json_decref(list);
        json_decref(body);
        return send_error(srv, conn, &err, endpoint, cs);
    }
    json_t *data = json_array();
    float *vec = malloc((size_t)info.n_embd * sizeof *vec);
    int32_t n_ctx = edgellm_context_n_ctx(srv->embed_ctx);
    edgellm_token *tokens = malloc((size_t)n_ctx * sizeof *tokens);
    long long total_tokens = 0;
    size_t i;
    json_t *item;
    bool ok = vec && tokens;
    if (!ok)
        srv_error_set(&err, 500, "server_error", NULL, NULL, "out of memory");
    json_array_foreach(list, i, item) {
        if (!ok)
            break;
        int32_t n = 0;
        if (json_is_string(item)) {
            int flags = edgellm_add_bos_default(srv->model) ? EDGELLM_TOKENIZE_ADD_BOS : 0;
            edgellm_status st = edgellm_tokenize(srv->model, json_string_value(item),
                                                 json_string_length(item), flags, tokens, n_ctx, &n);
            if (st == EDGELLM_ERR_BUFFER_TOO_SMALL || n == 0) {
                srv_error_set(&err, 400, "invalid_request_error", "context_length_exceeded",
                              "input", "input %zu is %d tokens; 1 to %d fit", i, n, n_ctx);
                ok = false;
            } else if (st != EDGELLM_OK) {
                srv_error_set(&err, 400, "invalid_request_error", NULL, "input", "%s",
                              edgellm_last_error());
                ok = false;
            }
        } else if (json_is_array(item) && json_array_size(item) > 0 &&
                   json_array_size(item) <= (size_t)n_ctx) {
            size_t k;
            json_t *t;
            json_array_foreach(item, k, t) {
                if (!json_is_integer(t) || json_integer_value(t) < 0 ||
                    json_integer_value(t) >= edgellm_n_vocab(srv->model)) {
                    srv_error_set(&err, 400, "invalid_request_error", "invalid_value", "input",
                                  "input %zu holds something that is not a token id", i);
                    ok = false;
                    break;
                }
                tokens[n++] = (edgellm_token)json_integer_value(t);
            }
        } else {
            srv_error_set(&err, 400, "invalid_request_error", "invalid_value", "input",
                          "input %zu must be a string or 1 to %d token ids", i, n_ctx);
            ok = false;
        }
        if (!ok)
            break;
        pthread_mutex_lock(&srv->embed_mu);
        edgellm_status st = edgellm_embed(srv->embed_ctx, tokens, n, vec, info.n_embd);
        pthread_mutex_unlock(&srv->embed_mu);
        if (st != EDGELLM_OK) {
            srv_error_set(&err, 500, "server_error", NULL, NULL, "%s", edgellm_last_error());
            ok = false;
            break;
        }
        total_tokens += n;
        json_t *emb;
        if (base64) {
            /* Little-endian float32, as the OpenAI clients decode it. */
            size_t bytes = (size_t)info.n_embd * 4;
            size_t cap = sodium_base64_ENCODED_LEN(bytes, sodium_base64_VARIANT_ORIGINAL);
            char *b64 = malloc(cap);
            unsigned char *raw = malloc(bytes);
            for (int32_t d = 0; raw && d < info.n_embd; d++) {
                uint32_t u;
                memcpy(&u, &vec[d], 4);
                raw[4 * d] = (unsigned char)u;
                raw[4 * d + 1] = (unsigned char)(u >> 8);
                raw[4 * d + 2] = (unsigned char)(u >> 16);
                raw[4 * d + 3] = (unsigned char)(u >> 24);
            }
            emb = b64 && raw ? json_string(sodium_bin2base64(b64, cap, raw, bytes,
                                                             sodium_base64_VARIANT_ORIGINAL))
                             : json_string("");
            free(b64);
            free(raw);
        } else {
            emb = json_array();
            for (int32_t d = 0; d < info.n_embd; d++)
                json_array_append_new(emb, json_real(vec[d]));
        }
        json_array_append_new(data, json_pack("{s:s,s:I,s:o}", "object", "embedding", "index",
                                               (json_int_t)i, "embedding", emb));
    }
    free(vec);
    free(tokens);
    json_decref(list);
    json_decref(body);
    if (!ok) {
        json_decref(data);
        return send_error(srv, conn, &err, endpoint, cs);
    }
    srv_metrics_tokens(srv->metrics, total_tokens, 0, 0);
    return send_json(srv, conn, 200,
                     json_pack("{s:s,s:o,s:s,s:{s:I,s:I}}", "object", "list", "data", data,
                               "model", srv->model_id, "usage", "prompt_tokens",
                               (json_int_t)total_tokens, "total_tokens", (json_int_t)total_tokens),
                     endpoint, cs);
}

/* A token's bytes as a JSON string, whatever their length (a vocabulary may hold tokens of
 * hundreds of bytes); NULL when they are not valid UTF-8 on their own. */
static json_t *piece_json(const edgellm_model *model, edgellm_token token)
{
    char *piece = NULL;
    size_t cap = 0, len = srv_token_piece(model, token, &piece, &cap);
    json_t *j = json_stringn(piece ? piece : "", len);
    free(piece);
    return j;
}

static enum MHD_Result handle_tokenize(srv_server *srv, struct MHD_Connection *conn,
                                       conn_state *cs)
{
    const char *endpoint = "/tokenize";
    srv_api_error err;
    json_t *body = parse_body(cs, &err);
    if (!body)
        return send_error(srv, conn, &err, endpoint, cs);
    json_t *content = json_object_get(body, "content");
    json_t *add = json_object_get(body, "add_special"), *parse = json_object_get(body, "parse_special"),
           *pieces = json_object_get(body, "with_pieces");
    const char *bad = !json_is_string(content)               ? "content"
                      : add && !json_is_boolean(add)         ? "add_special"
                      : parse && !json_is_boolean(parse)     ? "parse_special"
                      : pieces && !json_is_boolean(pieces)   ? "with_pieces"
                                                             : NULL;
    if (bad) {
        srv_error_set(&err, 400, "invalid_request_error", "invalid_type", bad,
                      !strcmp(bad, "content") ? "'content' must be a string"
                                              : "'%s' must be a boolean", bad);
        json_decref(body);
        return send_error(srv, conn, &err, endpoint, cs);
    }
    int flags = (json_is_true(add) ? EDGELLM_TOKENIZE_ADD_BOS : 0) |
                (json_is_true(parse) ? EDGELLM_TOKENIZE_PARSE_SPECIAL : 0);
    int32_t n = 0;
    const char *text = json_string_value(content);
    size_t len = json_string_length(content);
    edgellm_status st = edgellm_tokenize(srv->model, text, len, flags, NULL, 0, &n);
    edgellm_token *tokens = malloc(((size_t)n + 1) * sizeof *tokens);
    if (tokens && (st == EDGELLM_OK || st == EDGELLM_ERR_BUFFER_TOO_SMALL))
        st = edgellm_tokenize(srv->model, text, len, flags, tokens, n, &n);
    json_t *out = json_array();
    for (int32_t i = 0; st == EDGELLM_OK && i < n; i++) {
        if (json_is_true(pieces)) {
            json_t *p = piece_json(srv->model, tokens[i]);
            json_array_append_new(out, json_pack("{s:i,s:o}", "id", tokens[i], "piece",
                                                 p ? p : json_pack("[]")));
        } else {
            json_array_append_new(out, json_integer(tokens[i]));
        }
    }
    free(tokens);
    json_decref(body);
    if (st != EDGELLM_OK) {
        json_decref(out);
        return fail(srv, conn, 400, NULL, endpoint, cs, edgellm_last_error());
    }
    return send_json(srv, conn, 200, json_pack("{s:o}", "tokens", out), endpoint, cs);
}

static enum MHD_Result handle_detokenize(srv_server *srv, struct MHD_Connection *conn,
                                         conn_state *cs)
{
    const char *endpoint = "/detokenize";
    srv_api_error err;
    json_t *body = parse_body(cs, &err);
    if (!body)
        return send_error(srv, conn, &err, endpoint, cs);
    json_t *list = json_object_get(body, "tokens");
    size_t n = json_array_size(list);
    edgellm_token *tokens = malloc((n + 1) * sizeof *tokens);
    bool ok = json_is_array(list) && tokens && n <= 1000000;
    size_t i;
    json_t *t;
    json_array_foreach(list, i, t) {
        if (!ok)
            break;
        if (!json_is_integer(t) || json_integer_value(t) < 0 ||
            json_integer_value(t) >= edgellm_n_vocab(srv->model))
            ok = false;
        else
            tokens[i] = (edgellm_token)json_integer_value(t);
    }
    json_decref(body);
    if (!ok) {
        free(tokens);
        srv_error_set(&err, 400, "invalid_request_error", "invalid_value", "tokens",
                      "'tokens' must be an array of token ids (0 to %d)",
                      edgellm_n_vocab(srv->model) - 1);
        return send_error(srv, conn, &err, endpoint, cs);
    }
    size_t len = 0;
    edgellm_detokenize(srv->model, tokens, (int32_t)n, 1, NULL, 0, &len);
    char *text = malloc(len + 1);
    edgellm_status st = text ? edgellm_detokenize(srv->model, tokens, (int32_t)n, 1, text, len + 1, &len)
                             : EDGELLM_ERR_OUT_OF_MEMORY;
    free(tokens);
    if (st != EDGELLM_OK) {
        free(text);
        return fail(srv, conn, 500, NULL, endpoint, cs, "cannot detokenize");
    }
    json_t *s = json_stringn(text, len);
    free(text);
    return send_json(srv, conn, 200, json_pack("{s:o}", "content", s ? s : json_string("")),
                     endpoint, cs);
}

static enum MHD_Result handle_models(srv_server *srv, struct MHD_Connection *conn, conn_state *cs)
{
    edgellm_model_info info;
    edgellm_model_get_info(srv->model, &info);
    json_t *m = json_pack("{s:s,s:s,s:I,s:s,s:{s:s,s:s,s:I,s:i,s:i}}", "id", srv->model_id,
                          "object", "model", "created", (json_int_t)srv->created, "owned_by",
                          "edgellm", "meta", "architecture", info.architecture, "quantization",
                          info.quantization, "n_params", (json_int_t)info.n_params, "n_ctx",
                          srv_scheduler_n_ctx(srv->sched), "n_embd", info.n_embd);
    return send_json(srv, conn, 200, json_pack("{s:s,s:[o]}", "object", "list", "data", m),
                     "/v1/models", cs);
}

static enum MHD_Result handle_metrics(srv_server *srv, struct MHD_Connection *conn, conn_state *cs)
{
    int state = atomic_load(&srv->state);
    int queue = state == SRV_STATE_READY ? srv_scheduler_queue_depth(srv->sched) : 0;
    int active = state == SRV_STATE_READY ? srv_scheduler_active(srv->sched) : 0;
    char *text = srv_metrics_render(srv->metrics, queue, active, srv->cfg->parallel);
    char *extra = text && srv->front && srv->front->metrics ? srv->front->metrics(srv->front->ctx)
                                                            : NULL;
    if (extra) {
        size_t a = strlen(text), b = strlen(extra);
        char *both = realloc(text, a + b + 1);
        if (both) {
            memcpy(both + a, extra, b + 1);
            text = both;
        }
        free(extra);
    }
    if (!text)
        return fail(srv, conn, 500, NULL, "/metrics", cs, "out of memory");
    enum MHD_Result r = send_response(srv, conn, 200, "text/plain; version=0.0.4", text,
                                      strlen(text), "/metrics", cs);
    free(text);
    return r;
}

typedef enum route_id {
    R_HEALTH, R_PAGE, R_MODELS, R_METRICS, R_CHAT, R_COMPLETIONS, R_EMBEDDINGS, R_TOKENIZE,
    R_DETOKENIZE, R_CLASSIFY
} route_id;

static const struct route {
    const char *path;
    const char *method;
    route_id id;
    bool needs_model;
} routes[] = {
    {"/health", "GET", R_HEALTH, false},
    {"/", "GET", R_PAGE, false},
    {"/v1/models", "GET", R_MODELS, true},
    {"/metrics", "GET", R_METRICS, false},
    {"/v1/chat/completions", "POST", R_CHAT, true},
    {"/v1/completions", "POST", R_COMPLETIONS, true},
    {"/v1/embeddings", "POST", R_EMBEDDINGS, true},
    {"/tokenize", "POST", R_TOKENIZE, true},
    {"/detokenize", "POST", R_DETOKENIZE, true},
    {"/v1/classify", "POST", R_CLASSIFY, true}, /* answered by a front (the gateway) only */
};

/* Everything decided from the request line and headers, on libmicrohttpd's first call, so a
 * request that will be refused is answered before its body is read (no "100 Continue", no
 * buffering for clients without the key). Returns true with *result set when it answered. */
static bool answer_from_headers(srv_server *srv, struct MHD_Connection *conn, const char *url,
                                const char *method, conn_state *cs, enum MHD_Result *result)
{
    bool path_known = false;
    const char *path = srv_page_path(srv, url) ? "/" : url; /* the page's files go with it */
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (!strcmp(path, routes[i].path)) {
            path_known = true;
            cs->endpoint = routes[i].path;
            if (!strcmp(method, routes[i].method))
                cs->route = &routes[i];
        }
    if (!path_known)
        cs->endpoint = "other";
    srv_api_error e;
    if (!srv_guard_check_host(&srv->guard, conn, &e)) {
        *result = send_error(srv, conn, &e, cs->endpoint, cs);
        return true;
    }
    if (!strcmp(method, "OPTIONS")) {
        /* CORS preflight: answered without authentication (browsers send no credentials). */
        struct MHD_Response *resp = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
        if (!resp) {
            *result = MHD_NO;
            return true;
        }
        add_cors(srv, conn, resp);
        MHD_add_response_header(resp, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
        MHD_add_response_header(resp, "Access-Control-Allow-Headers",
                                "Authorization, Content-Type");
        MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
        *result = MHD_queue_response(conn, 204, resp);
        MHD_destroy_response(resp);
        srv_metrics_request(srv->metrics, cs->endpoint, 204, srv_now() - cs->t_start);
        return true;
    }
    /* The page holds nothing secret, and a browser cannot send a key to open it: its requests
     * to the API carry the key typed into it. */
    bool open_route = cs->route && (cs->route->id == R_HEALTH || cs->route->id == R_PAGE);
    if (!open_route && !srv_guard_check_key(&srv->guard, conn, &e)) {
        *result = send_error(srv, conn, &e, cs->endpoint, cs);
        return true;
    }
    if (!path_known) {
        *result = fail(srv, conn, 404, "not_found", cs->endpoint, cs,
                       "no such endpoint; see /v1/models, /v1/chat/completions, /v1/completions, "
                       "/v1/embeddings, /tokenize, /detokenize, /health, /metrics");
        return true;
    }
    if (!cs->route) {
        srv_error_set(&e, 405, "invalid_request_error", "method_not_allowed", NULL,
                      "%s does not accept %s", cs->endpoint, method);
        *result = send_error(srv, conn, &e, cs->endpoint, cs);
        return true;
    }
    bool json_body = !strcmp(cs->route->method, "POST");
    if (!srv_guard_check_body(&srv->guard, conn, json_body, &e)) {
        *result = send_error(srv, conn, &e, cs->endpoint, cs);
        return true;
    }
    return false;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_size, void **con_cls)
{
    (void)version;
    srv_server *srv = cls;
    conn_state *cs = *con_cls;
    if (!cs) {
        cs = calloc(1, sizeof *cs);
        if (!cs)
            return MHD_NO;
        cs->t_start = srv_now();
        *con_cls = cs;
        enum MHD_Result result;
        cs->answered = answer_from_headers(srv, conn, url, method, cs, &result);
        return cs->answered ? result : MHD_YES;
    }
    if (cs->answered) {
        *upload_size = 0;
        return MHD_YES;
    }
    /* Nothing keeps a body a GET endpoint ignores: /health needs no key, so buffering it would
     * let anyone hold memory. */
    if (*upload_size > 0 && strcmp(cs->route->method, "POST") != 0) {
        *upload_size = 0;
        return MHD_YES;
    }
    if (*upload_size > 0) {
        /* Gather the body. A chunked body declares no length: past the limit the rest is
         * dropped as it arrives and answered with 413 at its end (libmicrohttpd 0.9 queues no
         * response in the middle of an upload). */
        if (!cs->too_large && cs->len + *upload_size > srv->max_body) {
            cs->too_large = true;
            free(cs->body);
            cs->body = NULL;
            cs->len = cs->cap = 0;
        }
        if (!cs->too_large) {
            if (cs->len + *upload_size + 1 > cs->cap) {
                size_t cap = cs->cap ? cs->cap : 4096;
                while (cap < cs->len + *upload_size + 1)
                    cap *= 2;
                char *b = realloc(cs->body, cap);
                if (!b)
                    return MHD_NO;
                cs->body = b;
                cs->cap = cap;
            }
            memcpy(cs->body + cs->len, upload_data, *upload_size);
            cs->len += *upload_size;
        }
        *upload_size = 0;
        return MHD_YES;
    }

    const struct route *rt = cs->route;
    const char *endpoint = cs->endpoint;
    int state = atomic_load(&srv->state);
    if (rt->id == R_HEALTH) {
        bool ok = state == SRV_STATE_READY || state == SRV_STATE_NO_MODEL;
        return send_json(srv, conn, ok ? 200 : 503,
                         json_pack("{s:s}", "status",
                                   state == SRV_STATE_NO_MODEL ? "no_model"
                                   : ok                        ? "ok"
                                   : state == SRV_STATE_LOADING ? "loading"
                                                                : "stopping"),
                         endpoint, cs);
    }
    if (cs->too_large) {
        char msg[128];
        snprintf(msg, sizeof msg,
                 "the request body is larger than the limit of %zu bytes (--max-body)",
                 srv->max_body);
        return fail(srv, conn, 413, "request_too_large", endpoint, cs, msg);
    }
    if (rt->needs_model && state == SRV_STATE_NO_MODEL)
        return fail(srv, conn, 404, "no_model", endpoint, cs,
                    "this server has no model (serve --web without -m): the page at / runs one "
                    "in the browser; restart with -m MODEL to serve one over the API");
    if (rt->needs_model && state != SRV_STATE_READY)
        return fail(srv, conn, 503, state == SRV_STATE_LOADING ? "model_loading" : "shutting_down",
                    endpoint, cs,
                    state == SRV_STATE_LOADING ? "the model is still loading; retry shortly"
                                               : "the server is shutting down");
    if (srv->front &&
        (rt->id == R_CHAT || rt->id == R_COMPLETIONS || rt->id == R_EMBEDDINGS ||
         rt->id == R_CLASSIFY)) {
        cs->rq.endpoint = endpoint;
        cs->rq.body = cs->body;
        cs->rq.len = cs->len;
        cs->rq.t_start = cs->t_start;
        int result = MHD_NO;
        bool answered = srv->front->route(srv->front->ctx, srv, conn, &cs->rq, &result);
        if (cs->rq.body != cs->body) {
            free(cs->body);
            cs->body = cs->rq.body;
            cs->len = cs->cap = cs->rq.len;
        }
        cs->rq.body = NULL;
        if (answered)
            return (enum MHD_Result)result;
    }
    switch (rt->id) {
    case R_PAGE: return srv_page_answer(srv, conn, url, endpoint, cs->t_start);
    case R_MODELS: return handle_models(srv, conn, cs);
    case R_METRICS: return handle_metrics(srv, conn, cs);
    case R_CHAT: return handle_completion(srv, conn, cs, SRV_CHAT, endpoint);
    case R_COMPLETIONS: return handle_completion(srv, conn, cs, SRV_COMPLETION, endpoint);
    case R_EMBEDDINGS: return handle_embeddings(srv, conn, cs);
    case R_TOKENIZE: return handle_tokenize(srv, conn, cs);
    case R_DETOKENIZE: return handle_detokenize(srv, conn, cs);
    case R_CLASSIFY:
        return fail(srv, conn, 404, "not_found", endpoint, cs,
                    "/v1/classify is served by edgellm gateway, not edgellm serve");
    default: return MHD_NO;
    }
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode code)
{
    (void)cls, (void)conn, (void)code;
    conn_state *cs = *con_cls;
    if (cs) {
        free(cs->body);
        free(cs);
        *con_cls = NULL;
    }
}

/* libmicrohttpd's own messages: kept while starting, so a failure is one line of ours that
 * carries its reason; printed with our prefix once running. */
static void http_log(void *cls, const char *fmt, va_list ap)
{
    srv_server *srv = cls;
    char msg[256];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    if (!atomic_load(&srv->http_started))
        snprintf(srv->http_start_error, sizeof srv->http_start_error, "%s", msg);
    else
        fprintf(stderr, "%s: http: %s\n",
                srv->cfg->log_name ? srv->cfg->log_name : "edgellm serve", msg);
}

bool srv_http_start(srv_server *srv, char *err, size_t err_cap)
{
    const char *host = srv->cfg->host ? srv->cfg->host : "127.0.0.1";
    struct sockaddr_storage addr;
    memset(&addr, 0, sizeof addr);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_ITC | MHD_USE_ERROR_LOG;
    struct sockaddr_in *a4 = (struct sockaddr_in *)&addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&addr;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)srv->cfg->port);
    } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)srv->cfg->port);
        flags |= MHD_USE_IPv6;
    } else {
        snprintf(err, err_cap, "--host '%s' is not an IPv4 or IPv6 address", host);
        return false;
    }
    srv->daemon = MHD_start_daemon(
        flags, (uint16_t)srv->cfg->port, NULL, NULL, on_request, srv, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&addr, MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)1024, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)300,
        MHD_OPTION_EXTERNAL_LOGGER, http_log, srv, MHD_OPTION_END);
    if (!srv->daemon) {
        snprintf(err, err_cap,
                 "cannot listen on %s:%d: %s (choose another --port, or a --host address of "
                 "this machine)",
                 host, srv->cfg->port,
                 srv->http_start_error[0] ? srv->http_start_error : "libmicrohttpd refused");
        return false;
    }
    atomic_store(&srv->http_started, true);
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = di ? di->port : srv->cfg->port;
    return true;
}

void srv_http_quiesce(srv_server *srv)
{
    if (srv->daemon)
        MHD_quiesce_daemon(srv->daemon);
}

void srv_http_stop(srv_server *srv)
{
    if (srv->daemon)
        MHD_stop_daemon(srv->daemon);
    srv->daemon = NULL;
}
