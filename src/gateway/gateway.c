#define _GNU_SOURCE /* memmem */
/* The gateway's routing front: per request it strips the "edgellm" member, picks a route
 * (override, --route, or the complexity score against the policy's threshold), and either lets
 * the local handlers answer or redacts the body, calls the cloud and restores its answer. A cloud
 * that cannot be reached opens a circuit breaker; the edge model then answers with a note
 * (edge-fallback) until a health probe of the upstream's /v1/models succeeds. */
#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/mapped_file.h"
#include "gateway/cascade.h"
#include "gateway/classify.h"
#include "gateway/cloud_answer.h"
#include "gateway/gateway.h"
#include "gateway/pii.h"
#include "gateway/pii_json.h"
#include "gateway/speculative.h"
#include "gateway/stream_restore.h"
#include "gateway/upstream.h"
#include "server/http.h"

enum { RT_EDGE, RT_CLOUD, RT_FALLBACK, RT_SPECULATIVE, RT_COUNT };
static const char *const route_names[RT_COUNT] = {"edge", "cloud", "edge-fallback", "speculative"};

static const char *const failure_names[] = {"cloud-unreachable", "cloud-dns",      "cloud-tls",
                                            "cloud-timeout",     "cloud-5xx",      "cloud-429",
                                            "circuit-open",      "cloud-malformed"};
#define N_FAILURES (sizeof failure_names / sizeof failure_names[0])

/* Short on purpose: it must fit beside the prompt in a small edge model's context. */
#define DEFAULT_FALLBACK_NOTE                                                                      \
    "The cloud is offline; a small on-device model answers. Say when you are unsure."

typedef struct gateway {
    gw_config *cfg;
    gw_upstream up;
    pii_policy *pii;
    double threshold;
    bool fallback_on_malformed;
    char *fallback_note; /* the system note of edge-fallback answers; "" = none */
    /* circuit breaker */
    pthread_mutex_t mu;
    bool open;
    pthread_t prober;
    atomic_bool stopping;
    /* counters for /metrics */
    atomic_ullong routed[RT_COUNT];
    atomic_ullong failures[N_FAILURES];
    atomic_ullong pii_entities, pii_blocked, probes_failed, circuit_opened;
    /* speculative edge-cloud decoding */
    gw_vocab_map *vocab;
    gw_spec_config spec;
    atomic_ullong spec_drafted, spec_accepted, spec_calls, spec_tokens;
    /* intents that must stay on the device (policy: intent_labels, local_intents) */
    char **intent_labels;
    int n_intent_labels;
    bool local_intent[GW_CLASSIFY_MAX_LABELS];
    int n_local_intents;
    atomic_ullong intent_kept;
    /* confidence cascade (policy: "cascade") */
    bool cascade;
    double cascade_mean, cascade_min; /* thresholds on the edge answer's token logprobs */
    atomic_ullong cascade_kept, cascade_escalated;
} gateway;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void count_failure(gateway *g, const char *reason)
{
    for (size_t i = 0; i < N_FAILURES; i++)
        if (!strcmp(failure_names[i], reason))
            atomic_fetch_add(&g->failures[i], 1);
}

static void circuit_set(gateway *g, bool open)
{
    pthread_mutex_lock(&g->mu);
    bool was = g->open;
    g->open = open;
    pthread_mutex_unlock(&g->mu);
    if (open && !was) {
        atomic_fetch_add(&g->circuit_opened, 1);
        fprintf(stderr, "edgellm gateway: cloud unavailable, answering on the edge until a "
                        "health probe succeeds\n");
    } else if (!open && was) {
        fprintf(stderr, "edgellm gateway: cloud reachable again\n");
    }
}

static bool circuit_is_open(gateway *g)
{
    pthread_mutex_lock(&g->mu);
    bool open = g->open;
    pthread_mutex_unlock(&g->mu);
    return open;
}

/* A probe answers within about a second, or the cloud counts as down. */
static bool probe_upstream(gateway *g)
{
    gw_call c;
    bool ok = false;
    if (ellm_gw_call_start(&c, &g->up, "/v1/models", NULL, 0, g->up.connect_timeout_s + 0.5)) {
        while (!ellm_gw_call_pump(&c, 100) && !atomic_load(&g->stopping)) {
        }
        ok = c.finished && c.result == CURLE_OK && c.status >= 200 && c.status < 300;
    }
    ellm_gw_call_free(&c);
    return ok;
}

/* Probes often while the circuit is open (recovery is noticed within an interval), rarely
 * while it is closed (a hanging cloud is found before requests pay its timeout). */
static void *prober_main(void *arg)
{
    gateway *g = arg;
    /* A cloud starts out trusted: the first request, not a probe, is its first contact. */
    double next = now_s() + 10 * g->cfg->probe_interval_s;
    while (!atomic_load(&g->stopping)) {
        double t = now_s();
        if (t >= next) {
            bool ok = probe_upstream(g);
            if (!ok)
                atomic_fetch_add(&g->probes_failed, 1);
            circuit_set(g, !ok);
            next = now_s() + (ok ? 10 : 1) * g->cfg->probe_interval_s;
        }
        nanosleep(&(struct timespec){0, 50 * 1000000L}, NULL);
    }
    return NULL;
}

/* ---- complexity ---- */

static int ascii_ncasecmp(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int x = tolower((unsigned char)a[i]), y = tolower((unsigned char)b[i]);
        if (x != y)
            return x - y;
    }
    return 0;
}

static bool has_word(const char *text, size_t len, const char *word)
{
    size_t n = strlen(word);
    for (size_t i = 0; i + n <= len; i++) {
        if (ascii_ncasecmp(text + i, word, n) != 0)
            continue;
        bool left = i == 0 || !isalnum((unsigned char)text[i - 1]);
        bool right = i + n == len || !isalnum((unsigned char)text[i + n]);
        if (left && right)
            return true;
    }
    return false;
}

static double clamp01(double x) { return x < 0 ? 0 : x > 1 ? 1 : x; }

void ellm_gw_complexity_score(const char *text, size_t len, int n_tokens, long max_tokens,
                              int n_messages, double surprisal, gw_complexity *out)
{
    static const char *const code_math[] = {
        "```",        "def ",  "#include", "function(", "=>",        "\\frac",        "integral",
        "derivative", "prove", "theorem",  "equation",  "algorithm", "complexity of", "sql"};
    static const char *const step_words[] = {
        "step by step", "first",       "then", "finally",  "compare",    "analyze",
        "analyse",      "explain why", "plan", "evaluate", "trade-offs", "justify"};
    out->length = clamp01(n_tokens / 512.0);
    out->max_tokens = max_tokens < 0 ? 0.25 : clamp01(max_tokens / 1024.0);
    out->code_math = 0;
    for (size_t i = 0; i < sizeof code_math / sizeof code_math[0]; i++) {
        const char *w = code_math[i];
        bool symbolic = !isalpha((unsigned char)w[0]) || strchr(w, ' ') || strchr(w, '(');
        if (symbolic ? memmem(text, len, w, strlen(w)) != NULL : has_word(text, len, w)) {
            out->code_math = 1;
            break;
        }
    }
    int steps = 0;
    for (size_t i = 0; i < sizeof step_words / sizeof step_words[0]; i++)
        steps += has_word(text, len, step_words[i]);
    out->steps = clamp01(steps / 2.0);
    out->turns = clamp01((n_messages - 1) / 8.0);
    out->surprisal = clamp01(surprisal);
    /* Weights sum to 1 (docs/gateway.md): code or maths with a multi-step instruction is enough
     * to cross the default threshold 0.6 with any length; length alone is not. */
    out->score = clamp01(0.20 * out->length + 0.10 * out->max_tokens + 0.30 * out->code_math +
                         0.20 * out->steps + 0.05 * out->turns + 0.15 * out->surprisal);
}

/* ---- the text of a request ---- */

typedef struct text_collect {
    char *data;
    size_t len, cap;
} text_collect;

static void collect(text_collect *t, const char *s, size_t n)
{
    if (t->len + n + 2 > t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 1024;
        while (cap < t->len + n + 2)
            cap *= 2;
        char *d = realloc(t->data, cap);
        if (!d)
            return;
        t->data = d;
        t->cap = cap;
    }
    memcpy(t->data + t->len, s, n);
    t->len += n;
    t->data[t->len++] = '\n';
    t->data[t->len] = '\0';
}

/* Every user string of a request, in order, joined by newlines (for scoring). */
static void collect_texts(json_t *j, text_collect *t)
{
    const char *key;
    json_t *v;
    size_t i;
    if (json_is_string(j)) {
        collect(t, json_string_value(j), json_string_length(j));
    } else if (json_is_object(j)) {
        json_object_foreach(j, key, v)
        {
            if (!ellm_gw_structural_key(key))
                collect_texts(v, t);
        }
    } else if (json_is_array(j)) {
        json_array_foreach(j, i, v) collect_texts(v, t);
    }
}

/* ---- answers ---- */

static int send_error(srv_server *srv, struct MHD_Connection *conn, srv_front_request *rq,
                      int status, const char *code, const char *fmt, const char *arg)
{
    srv_api_error e;
    ellm_srv_error_set(&e, status, status >= 500 ? "server_error" : "invalid_request_error", code,
                       NULL, fmt, arg);
    return ellm_srv_http_send_error(srv, conn, rq, &e);
}

static int send_json_text(srv_server *srv, struct MHD_Connection *conn, srv_front_request *rq,
                          int status, json_t *j)
{
    char *text = json_dumps(j, JSON_COMPACT);
    if (!text)
        return send_error(srv, conn, rq, 500, NULL, "%s", "out of memory");
    int r = ellm_srv_http_send(srv, conn, rq, status, "application/json", text, strlen(text));
    free(text);
    return r;
}

/* The body the local handler gets: the client's, minus "edgellm", with the fallback note. */
static bool set_local_body(srv_front_request *rq, json_t *body, const char *note)
{
    if (note && *note) {
        json_t *msgs = json_object_get(body, "messages");
        json_t *first = json_array_get(msgs, 0);
        json_t *role = json_object_get(first, "role");
        json_t *content = json_object_get(first, "content");
        if (json_is_string(role) && !strcmp(json_string_value(role), "system") &&
            json_is_string(content)) {
            size_t n = strlen(note) + 2 + json_string_length(content);
            char *merged = malloc(n + 1);
            if (!merged)
                return false;
            snprintf(merged, n + 1, "%s\n\n%s", note, json_string_value(content));
            json_object_set_new(first, "content", json_stringn(merged, n));
            free(merged);
        } else if (json_is_array(msgs)) {
            json_array_insert_new(msgs, 0,
                                  json_pack("{s:s,s:s}", "role", "system", "content", note));
        }
    }
    char *text = json_dumps(body, JSON_COMPACT);
    if (!text)
        return false;
    rq->body = text;
    rq->len = strlen(text);
    return true;
}

static void set_route(srv_front_request *rq, gateway *g, int route, const char *reason)
{
    snprintf(rq->route, sizeof rq->route, "%s", route_names[route]);
    snprintf(rq->reason, sizeof rq->reason, "%s", reason);
    atomic_fetch_add(&g->routed[route], 1);
}

/* ---- streaming relay ---- */

typedef struct relay {
    gateway *g;
    srv_server *srv;
    struct MHD_Connection *conn;
    srv_front_request rq;
    gw_call call;
    pii_session *session;
    gw_stream_restore *restore; /* NULL when nothing was redacted */
    json_t *before;             /* chunks of held-back tails the restoration puts out; reused */
    bool chat;
    size_t scan; /* bytes of call.body already consumed */
    pii_buffer out;
    size_t out_off;
    bool done;
    unsigned events;        /* data events the cloud sent, to name the one at fault */
    bool committed;         /* the client got a 200: a fault now ends the stream with an error */
    const char *fault_code; /* set when the cloud's stream went wrong: it ends with fault */
    char fault[384];
} relay;

/* Appends to a stream's pending output, whose first `*off` bytes were already sent: the buffer
 * starts over once everything in it went out. Both streaming answers (relayed and speculative)
 * write through these two. */
static void sse_put(pii_buffer *out, size_t *off, const char *s, size_t n)
{
    if (*off == out->len)
        *off = out->len = 0;
    if (out->len + n > out->cap) {
        size_t cap = out->cap ? out->cap * 2 : 4096;
        while (cap < out->len + n)
            cap *= 2;
        char *d = realloc(out->data, cap);
        if (!d)
            return;
        out->data = d;
        out->cap = cap;
    }
    memcpy(out->data + out->len, s, n);
    out->len += n;
}

static void sse_put_event(pii_buffer *out, size_t *off, json_t *j)
{
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    if (!text)
        return;
    sse_put(out, off, "data: ", 6);
    sse_put(out, off, text, strlen(text));
    sse_put(out, off, "\n\n", 2);
    free(text);
}

/* Records the first thing wrong with the cloud's stream; what the cloud sends after it is not
 * relayed. */
static void relay_fault(relay *r, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void relay_fault(relay *r, const char *code, const char *fmt, ...)
{
    if (r->fault_code)
        return;
    r->fault_code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->fault, sizeof r->fault, fmt, ap);
    va_end(ap);
}

/* The chunks the restoration put in r->before go out, in order. */
static void put_before(relay *r)
{
    size_t i;
    json_t *chunk;
    json_array_foreach(r->before, i, chunk) sse_put_event(&r->out, &r->out_off, chunk);
    json_array_clear(r->before);
}

/* The end of a stream the cloud ended with its [DONE]. */
static void relay_finish(relay *r)
{
    if (r->restore) {
        ellm_gw_stream_restore_done(r->restore, r->before);
        put_before(r);
    }
    sse_put(&r->out, &r->out_off, "data: [DONE]\n\n", 14);
    r->done = true;
}

/* Restores one upstream event (stream_restore.h): each streamed text through its own streaming
 * restorer (a placeholder split across chunks is held back), anything else in the chunk as a
 * whole. A chunk is checked whole before any of it is restored; a chunk past the bound of
 * streamed texts ends the stream with nothing of it relayed, like a misshapen one. */
static void relay_event(relay *r, const char *data, size_t n)
{
    if (n == 6 && !memcmp(data, "[DONE]", 6)) {
        relay_finish(r);
        return;
    }
    r->events++;
    json_error_t parse;
    json_t *j = json_loadb(data, n, 0, &parse);
    if (!json_is_object(j)) {
        relay_fault(r, "upstream_invalid",
                    "the cloud's stream is not OpenAI-shaped: event %u is not a JSON object (%s); "
                    "check --cloud-url",
                    r->events, j ? "another JSON value" : parse.text);
        json_decref(j);
        return;
    }
    if (json_is_object(json_object_get(j, "error")) && !json_object_get(j, "choices")) {
        /* The cloud's own error event (the shape this server sends mid-stream) goes on as is. */
        sse_put_event(&r->out, &r->out_off, j);
        json_decref(j);
        return;
    }
    char field[128];
    const char *fault = ellm_gw_cloud_answer_fault(
        j, r->chat ? GW_CHOICE_DELTA : GW_CHOICE_TEXT_CHUNK, field, sizeof field);
    if (fault) {
        json_decref(j);
        relay_fault(r, "upstream_invalid",
                    "the cloud's stream is not OpenAI-shaped: event %u: '%s' %s; check "
                    "--cloud-url",
                    r->events, field, fault);
        return;
    }
    gw_stream_status st = r->restore ? ellm_gw_stream_restore_chunk(r->restore, j, r->before)
                                     : GW_STREAM_OK;
    if (r->restore)
        put_before(r);
    if (st == GW_STREAM_OK)
        sse_put_event(&r->out, &r->out_off, j);
    else
        relay_fault(r, "upstream_invalid",
                    st == GW_STREAM_TOO_MANY_TEXTS
                        ? "the cloud's stream has more than %d texts (choices and tool calls) at "
                          "event %u; the gateway restores at most that many per stream"
                        : "out of memory for the %d streamed texts at event %u",
                    GW_MAX_STREAMED_TEXTS, r->events);
    json_decref(j);
}

/* Whether the cloud has sent one whole "data:" line: what a stream is judged by before the
 * client gets its 200. *scanned is where the lines not yet looked at begin, kept between calls:
 * a cloud sending comment lines before its first event is read once, not again at every pump. */
static bool stream_event_arrived(const gw_call *call, size_t *scanned)
{
    size_t at = *scanned;
    while (call->body && at < call->len) {
        const char *nl = memchr(call->body + at, '\n', call->len - at);
        if (!nl)
            return false;
        if (call->len - at >= 5 && !memcmp(call->body + at, "data:", 5))
            return true;
        at = (size_t)(nl - call->body) + 1;
        *scanned = at;
    }
    return false;
}

/* Consumes every complete "data:" line the upstream has sent, up to its [DONE] or a fault. */
static void relay_parse(relay *r)
{
    if (!r->call.body) /* nothing has arrived yet */
        return;
    while (!r->done && !r->fault_code) {
        char *start = r->call.body + r->scan;
        char *nl = memchr(start, '\n', r->call.len - r->scan);
        if (!nl)
            break;
        size_t n = (size_t)(nl - start);
        if (n > 0 && start[n - 1] == '\r')
            n--;
        if (n >= 5 && !memcmp(start, "data:", 5)) {
            size_t off = 5 + (n > 5 && start[5] == ' ');
            relay_event(r, start + off, n - off);
        }
        r->scan = (size_t)(nl - r->call.body) + 1;
    }
    /* Keep the buffer from growing with the whole answer. */
    if (r->scan > 65536) {
        memmove(r->call.body, r->call.body + r->scan, r->call.len - r->scan + 1);
        r->call.len -= r->scan;
        r->scan = 0;
    }
}

/* Turns what the cloud has sent so far into events for the client; a stream that ended
 * without its [DONE] is at fault. */
static void relay_advance(relay *r)
{
    relay_parse(r);
    if (r->done || r->fault_code || !r->call.finished)
        return;
    if (r->call.result != CURLE_OK)
        relay_fault(r, "upstream_failed", "the cloud stream broke off: %s",
                    ellm_gw_call_failure(&r->call));
    else
        /* Closed without its "data: [DONE]": cut off mid-answer, or not an event stream at all
         * (a JSON object, an empty body), which would otherwise pass as a complete, empty
         * answer. */
        relay_fault(r, "upstream_invalid",
                    "the cloud's stream ended without \"data: [DONE]\" (cut off, or not a "
                    "Server-Sent Events stream; check --cloud-url)");
}

static ssize_t relay_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    relay *r = cls;
    for (;;) {
        if (r->out_off < r->out.len) {
            size_t n = r->out.len - r->out_off < max ? r->out.len - r->out_off : max;
            memcpy(buf, r->out.data + r->out_off, n);
            r->out_off += n;
            return (ssize_t)n;
        }
        if (r->done)
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (r->fault_code) {
            /* Bytes went out already: the stream ends with the error and without [DONE], so
             * no client takes it for a complete answer. Text a restorer holds back may be the
             * start of a placeholder and is dropped. */
            srv_api_error e;
            ellm_srv_error_set(&e, 502, "server_error", r->fault_code, NULL, "%s", r->fault);
            json_t *ej = ellm_srv_error_json(&e);
            sse_put_event(&r->out, &r->out_off, ej);
            json_decref(ej);
            if (!strcmp(r->fault_code, "upstream_invalid"))
                count_failure(r->g, "cloud-malformed");
            r->done = true;
            continue;
        }
        relay_advance(r);
        if (r->out_off < r->out.len || r->done || r->fault_code)
            continue;
        if (ellm_srv_http_client_gone(r->conn))
            return MHD_CONTENT_READER_END_WITH_ERROR;
        ellm_gw_call_pump(&r->call, 100);
    }
}

static void relay_free(void *cls)
{
    relay *r = cls;
    ellm_gw_call_free(&r->call); /* closes the upstream connection if it is still open */
    ellm_gw_stream_restore_free(r->restore);
    json_decref(r->before);
    ellm_pii_session_free(r->session);
    ellm_pii_buffer_free(&r->out);
    if (r->committed)
        ellm_srv_metrics_request(r->srv->metrics, r->rq.endpoint, 200,
                                 ellm_srv_now() - r->rq.t_start);
    free(r);
}

/* ---- the route hook ---- */

typedef struct routing {
    int route;
    char reason[96];
    gw_complexity cx;
    bool scored;
} routing;

/* How unexpected the prompt is to the edge model: its mean surprisal per token (the negative
 * log-probability of each token given the ones before) over the first tokens that fit one pass,
 * divided by ln(vocabulary size), the surprisal of a uniform guess. Runs on the server's
 * embedding context, which nothing else uses between embedding requests. */
static double prompt_surprisal(srv_server *srv, const char *text, size_t len)
{
    int32_t cap = edgellm_context_n_ctx(srv->embed_ctx);
    int32_t batch = srv->cfg->n_batch > 0 ? srv->cfg->n_batch : 256;
    if (cap > batch)
        cap = batch;
    if (cap > 256)
        cap = 256;
    edgellm_token *tokens = malloc((size_t)cap * sizeof *tokens);
    int32_t n = 0;
    int flags = edgellm_add_bos_default(srv->model) ? EDGELLM_TOKENIZE_ADD_BOS : 0;
    edgellm_status st = tokens ? edgellm_tokenize(srv->model, text, len, flags, tokens, cap, &n)
                               : EDGELLM_ERR_OUT_OF_MEMORY;
    if (st == EDGELLM_ERR_BUFFER_TOO_SMALL) {
        /* Longer than one pass: the first cap tokens stand for the whole prompt. */
        int32_t all = n;
        edgellm_token *full = malloc((size_t)all * sizeof *full);
        st = full ? edgellm_tokenize(srv->model, text, len, flags, full, all, &n)
                  : EDGELLM_ERR_OUT_OF_MEMORY;
        if (st == EDGELLM_OK) {
            memcpy(tokens, full, (size_t)cap * sizeof *tokens);
            n = cap;
        }
        free(full);
    }
    double sum = 0;
    int32_t counted = 0;
    int32_t n_vocab = edgellm_n_vocab(srv->model);
    if (st == EDGELLM_OK && n >= 2) {
        pthread_mutex_lock(&srv->embed_mu);
        edgellm_context_truncate(srv->embed_ctx, 0);
        if (edgellm_eval(srv->embed_ctx, tokens, n, 1) == EDGELLM_OK) {
            for (int32_t i = 0; i + 1 < n; i++) {
                const float *lg = edgellm_get_logits(srv->embed_ctx, i);
                if (!lg)
                    break;
                float m = lg[0];
                for (int32_t v = 1; v < n_vocab; v++)
                    m = lg[v] > m ? lg[v] : m;
                double z = 0;
                for (int32_t v = 0; v < n_vocab; v++)
                    z += exp((double)lg[v] - m);
                sum += m + log(z) - lg[tokens[i + 1]];
                counted++;
            }
        }
        edgellm_context_truncate(srv->embed_ctx, 0);
        pthread_mutex_unlock(&srv->embed_mu);
    }
    free(tokens);
    return counted && n_vocab > 1 ? sum / counted / log((double)n_vocab) : 0;
}

/* Whether the policy's intent classifier puts the request's text in a local intent: then it
 * stays on the device whatever the route asked for. A text it cannot score stays too. */
static bool local_intent(gateway *g, srv_server *srv, json_t *body, routing *out)
{
    if (!g->n_local_intents)
        return false;
    text_collect t = {0};
    json_t *msgs = json_object_get(body, "messages");
    collect_texts(msgs ? msgs : json_object_get(body, "prompt"), &t);
    gw_classification c;
    char err[256];
    bool scored = ellm_gw_classify(srv, t.data ? t.data : "", t.len,
                                   (const char *const *)g->intent_labels, g->n_intent_labels, true,
                                   &c, err, sizeof err);
    free(t.data);
    if (!scored) {
        fprintf(stderr, "edgellm gateway: intent not classified (%s): kept on the edge\n", err);
        snprintf(out->reason, sizeof out->reason, "local-intent=unclassified");
    } else if (g->local_intent[c.best]) {
        snprintf(out->reason, sizeof out->reason, "local-intent=%.60s", g->intent_labels[c.best]);
    } else {
        return false;
    }
    out->route = RT_EDGE;
    atomic_fetch_add(&g->intent_kept, 1);
    return true;
}

static void decide(gateway *g, srv_server *srv, json_t *body, gw_route_mode mode, routing *out)
{
    if (mode == GW_ROUTE_EDGE) {
        out->route = RT_EDGE;
        snprintf(out->reason, sizeof out->reason, "route=edge");
        return;
    }
    if (local_intent(g, srv, body, out))
        return;
    if (mode == GW_ROUTE_CLOUD) {
        out->route = RT_CLOUD;
        snprintf(out->reason, sizeof out->reason, "route=cloud");
        return;
    }
    text_collect t = {0};
    json_t *msgs = json_object_get(body, "messages");
    collect_texts(msgs ? msgs : json_object_get(body, "prompt"), &t);
    int32_t n_tokens = 0;
    if (t.len)
        edgellm_tokenize(srv->model, t.data, t.len, 0, NULL, 0, &n_tokens);
    json_t *mt = json_object_get(body, "max_completion_tokens");
    if (!json_is_integer(mt))
        mt = json_object_get(body, "max_tokens");
    double surprisal = t.len ? prompt_surprisal(srv, t.data, t.len) : 0;
    ellm_gw_complexity_score(t.data ? t.data : "", t.len, n_tokens,
                             json_is_integer(mt) ? (long)json_integer_value(mt) : -1,
                             msgs ? (int)json_array_size(msgs) : 1, surprisal, &out->cx);
    out->scored = true;
    free(t.data);
    bool cloud = out->cx.score > g->threshold;
    out->route = cloud ? RT_CLOUD : RT_EDGE;
    snprintf(out->reason, sizeof out->reason, "complexity=%.2f%s%.2f", out->cx.score,
             cloud ? ">" : "<=", g->threshold);
}

static void log_request(const srv_front_request *rq, const routing *rt, const char *route,
                        const char *reason, size_t n_redacted)
{
    if (rt->scored)
        fprintf(stderr,
                "edgellm gateway: %s route=%s reason=%s complexity=%.3f length=%.2f "
                "max_tokens=%.2f code_math=%.0f steps=%.2f turns=%.2f surprisal=%.2f pii=%zu\n",
                rq->endpoint, route, reason, rt->cx.score, rt->cx.length, rt->cx.max_tokens,
                rt->cx.code_math, rt->cx.steps, rt->cx.turns, rt->cx.surprisal, n_redacted);
    else
        fprintf(stderr, "edgellm gateway: %s route=%s reason=%s pii=%zu\n", rq->endpoint, route,
                reason, n_redacted);
}

/* Falls back to the edge model: the local handler answers the body with the note. */
static bool fall_back(gateway *g, srv_front_request *rq, json_t *body, const char *why,
                      const routing *rt, int *result, srv_server *srv, struct MHD_Connection *conn)
{
    count_failure(g, why);
    set_route(rq, g, RT_FALLBACK, why);
    log_request(rq, rt, "edge-fallback", why, 0);
    bool chat = !strcmp(rq->endpoint, "/v1/chat/completions");
    if (!set_local_body(rq, body, chat ? g->fallback_note : NULL)) {
        *result = send_error(srv, conn, rq, 500, NULL, "%s", "out of memory");
        return true;
    }
    return false;
}

/* A cloud answer the client cannot be given, refused before any byte of it went out: the edge
 * answers under fallback_on_malformed, else a 502 saying why. Takes body. */
static bool refuse_malformed(gateway *g, srv_server *srv, struct MHD_Connection *conn,
                             srv_front_request *rq, json_t *body, const routing *rt,
                             const char *code, const char *why, int *result)
{
    if (g->fallback_on_malformed) {
        bool answered = fall_back(g, rq, body, "cloud-malformed", rt, result, srv, conn);
        json_decref(body);
        return answered;
    }
    count_failure(g, "cloud-malformed");
    json_decref(body);
    *result = send_error(srv, conn, rq, 502, code, "%s", why);
    return true;
}

/* ---- answers the gateway generates itself ---- */

/* One choice's events as the whole answer: JSON, or for a stream the same as server-sent events
 * at once. extra (stolen) becomes the answer's "edgellm" member; a session restores the text. */
static int send_events(srv_server *srv, struct MHD_Connection *conn, srv_front_request *rq,
                       const srv_completion_opts *o, const char *model, const srv_event *ev,
                       size_t n, srv_finish finish, int32_t n_prompt, int32_t n_generated,
                       json_t *extra, pii_session *session)
{
    char id[64];
    bool chat = o->kind == SRV_CHAT;
    snprintf(id, sizeof id, "%s-gw%08lx%04x", chat ? "chatcmpl" : "cmpl",
             (unsigned long)atomic_fetch_add(&srv->next_id, 1), (unsigned)(rand() & 0xFFFF));
    long long created = (long long)time(NULL);
    srv_choice_result choice = {ev, n, finish};
    json_t *answer = NULL;
    if (!o->stream) {
        answer = ellm_srv_completion_response(o, srv->model, id, model, created, &choice, 1,
                                              n_prompt, 0, n_generated);
    } else {
        /* The whole text in one chunk, then the finish (and usage) as a stream ends. */
        answer = json_array();
        json_array_append_new(answer,
                              ellm_srv_completion_chunk(o, srv->model, id, model, created, 0, ev, n,
                                                        0, true, SRV_FINISH_NONE));
        json_array_append_new(answer, ellm_srv_completion_chunk(o, srv->model, id, model, created,
                                                                0, NULL, 0, 0, false, finish));
        if (o->include_usage)
            json_array_append_new(
                answer, json_pack("{s:s,s:s,s:I,s:s,s:[],s:o}", "id", id, "object",
                                  chat ? "chat.completion.chunk" : "text_completion", "created",
                                  (json_int_t)created, "model", model, "choices", "usage",
                                  ellm_srv_usage_json(n_prompt, 0, n_generated)));
    }
    if (answer && session) {
        gw_walk rw = {.mode = GW_WALK_RESTORE, .session = session};
        ellm_gw_walk_strings(NULL, NULL, 0, answer, &rw);
    }
    json_t *last = o->stream ? json_array_get(answer, 1) : answer;
    if (last && extra)
        json_object_set(last, "edgellm", extra);
    json_decref(extra);
    if (!answer)
        return send_error(srv, conn, rq, 500, NULL, "%s", "out of memory");
    if (!o->stream) {
        int r = send_json_text(srv, conn, rq, 200, answer);
        json_decref(answer);
        return r;
    }
    pii_buffer sse = {0};
    size_t i;
    json_t *chunk;
    bool ok = true;
    json_array_foreach(answer, i, chunk)
    {
        char *text = json_dumps(chunk, JSON_COMPACT);
        ok = ok && text;
        size_t len = text ? strlen(text) : 0;
        char *grown = ok ? realloc(sse.data, sse.len + len + 16) : NULL;
        if (!grown) {
            free(text);
            ok = false;
            break;
        }
        sse.data = grown;
        sse.len += (size_t)sprintf(sse.data + sse.len, "data: %s\n\n", text);
        free(text);
    }
    json_decref(answer);
    char *grown = ok ? realloc(sse.data, sse.len + 16) : NULL;
    int r;
    if (grown) {
        sse.data = grown;
        sse.len += (size_t)sprintf(sse.data + sse.len, "data: [DONE]\n\n");
        r = ellm_srv_http_send(srv, conn, rq, 200, "text/event-stream", sse.data, sse.len);
    } else {
        r = send_error(srv, conn, rq, 500, NULL, "%s", "out of memory");
    }
    ellm_pii_buffer_free(&sse);
    return r;
}

/* The cascade's first step: the edge answers, and keeps the answer when it was sure enough.
 * Returns whether it answered; false escalates to the cloud (rt's reason says why). */
static bool try_cascade(gateway *g, srv_server *srv, struct MHD_Connection *conn,
                        srv_front_request *rq, json_t *body, routing *rt, int *result)
{
    gw_edge_answer a;
    srv_api_error err;
    bool chat = !strcmp(rq->endpoint, "/v1/chat/completions");
    if (!ellm_gw_edge_answer_run(&a, srv, body, chat ? SRV_CHAT : SRV_COMPLETION,
                                 now_s() + srv->request_timeout_s, &err)) {
        ellm_gw_edge_answer_free(&a);
        set_route(rq, g, RT_EDGE, rt->reason);
        *result = ellm_srv_http_send_error(srv, conn, rq, &err);
        return true;
    }
    bool sure = a.n_generated == 0 ||
                (a.mean_logprob >= g->cascade_mean && a.min_logprob >= g->cascade_min);
    fprintf(stderr,
            "edgellm gateway: %s cascade: edge answer of %d tokens, mean logprob %.3f, min "
            "%.3f: %s\n",
            rq->endpoint, a.n_generated, a.mean_logprob, a.min_logprob,
            sure ? "kept" : "low confidence, asking the cloud");
    if (!sure) {
        atomic_fetch_add(&g->cascade_escalated, 1);
        ellm_gw_edge_answer_free(&a);
        rt->route = RT_CLOUD;
        snprintf(rt->reason, sizeof rt->reason, "low-confidence");
        return false;
    }
    atomic_fetch_add(&g->cascade_kept, 1);
    char reason[96];
    snprintf(reason, sizeof reason, "confident");
    set_route(rq, g, RT_EDGE, reason);
    log_request(rq, rt, "edge", reason, 0);
    json_t *extra = json_pack("{s:{s:f,s:f,s:i}}", "cascade", "mean_logprob", a.mean_logprob,
                              "min_logprob", a.min_logprob, "tokens", a.n_generated);
    *result = send_events(srv, conn, rq, &a.opts, srv->model_id, a.events, a.n_events, a.finish,
                          a.req->n_prompt, a.n_generated, extra, NULL);
    ellm_gw_edge_answer_free(&a);
    return true;
}

/* ---- speculative edge-cloud decoding ---- */

typedef struct spec_answer {
    gateway *g;
    srv_server *srv;
    struct MHD_Connection *conn;
    srv_front_request rq;
    gw_spec spec;
    pii_session *session;
    pii_restorer *restorer; /* a stream's text, placeholders held back until resolved */
    char id[64];
    char model[256];
    long long created;
    size_t sent_events; /* events already streamed */
    size_t text_offset;
    bool first_chunk, done;
    pii_buffer out;
    size_t out_off;
} spec_answer;

static void spec_answer_free(spec_answer *a)
{
    gateway *g = a->g;
    atomic_fetch_add(&g->spec_drafted, (unsigned long long)a->spec.drafted);
    atomic_fetch_add(&g->spec_accepted, (unsigned long long)a->spec.accepted);
    atomic_fetch_add(&g->spec_calls, (unsigned long long)a->spec.calls);
    atomic_fetch_add(&g->spec_tokens, (unsigned long long)a->spec.n_generated);
    fprintf(stderr,
            "edgellm gateway: %s speculative drafted=%d accepted=%d cloud_calls=%d tokens=%d\n",
            a->rq.endpoint, a->spec.drafted, a->spec.accepted, a->spec.calls, a->spec.n_generated);
    ellm_gw_spec_free(&a->spec);
    ellm_pii_restorer_free(a->restorer);
    ellm_pii_session_free(a->session);
    ellm_pii_buffer_free(&a->out);
    free(a);
}

/* Streams the events accepted since the last call as one chunk (restored when redacted). */
static void spec_stream_new_text(spec_answer *a, bool last)
{
    gw_spec *s = &a->spec;
    pii_buffer restored = {0};
    const srv_event *ev = s->events + a->sent_events;
    size_t n = s->n_events - a->sent_events;
    srv_event joined = {.token = -1};
    if (a->restorer) {
        for (size_t i = 0; i < n; i++)
            ellm_pii_restorer_feed(a->restorer, ev[i].text, ev[i].len, &restored);
        if (last)
            ellm_pii_restorer_finish(a->restorer, &restored);
        joined.text = restored.data ? restored.data : "";
        joined.len = restored.len;
        ev = &joined;
        n = 1;
    }
    a->sent_events = s->n_events;
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += ev[i].len;
    if (len || a->first_chunk || last) {
        json_t *chunk = ellm_srv_completion_chunk(
            &s->opts, a->srv->model, a->id, a->model, a->created, 0, ev, n, a->text_offset,
            a->first_chunk, last ? s->finish : SRV_FINISH_NONE);
        if (last && chunk)
            json_object_set_new(chunk, "edgellm",
                                json_pack("{s:o}", "speculative", ellm_gw_spec_stats(s)));
        sse_put_event(&a->out, &a->out_off, chunk);
        json_decref(chunk);
        a->text_offset += len;
        a->first_chunk = false;
    }
    ellm_pii_buffer_free(&restored);
}

static void spec_stream_end(spec_answer *a, const char *error)
{
    if (error) {
        srv_api_error e;
        ellm_srv_error_set(&e, 502, "server_error", "upstream_invalid", NULL,
                           "speculative decoding stopped: %s", error);
        json_t *ej = ellm_srv_error_json(&e);
        sse_put_event(&a->out, &a->out_off, ej);
        json_decref(ej);
    } else {
        spec_stream_new_text(a, true);
        if (a->spec.opts.include_usage) {
            json_t *u = json_pack(
                "{s:s,s:s,s:I,s:s,s:[],s:o}", "id", a->id, "object",
                a->spec.opts.kind == SRV_CHAT ? "chat.completion.chunk" : "text_completion",
                "created", (json_int_t)a->created, "model", a->model, "choices", "usage",
                ellm_srv_usage_json(a->spec.req->n_prompt, 0, a->spec.n_generated));
            sse_put_event(&a->out, &a->out_off, u);
            json_decref(u);
        }
    }
    sse_put(&a->out, &a->out_off, "data: [DONE]\n\n", 14);
    a->done = true;
}

static ssize_t spec_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    spec_answer *a = cls;
    for (;;) {
        if (a->out_off < a->out.len) {
            size_t n = a->out.len - a->out_off < max ? a->out.len - a->out_off : max;
            memcpy(buf, a->out.data + a->out_off, n);
            a->out_off += n;
            return (ssize_t)n;
        }
        if (a->done)
            return MHD_CONTENT_READER_END_OF_STREAM;
        int rc = ellm_gw_spec_step(&a->spec);
        if (rc == GW_SPEC_GONE)
            return MHD_CONTENT_READER_END_WITH_ERROR;
        if (rc == GW_SPEC_FAILED) {
            count_failure(a->g, a->spec.failure && !strcmp(a->spec.failure, "cloud-malformed")
                                    ? "cloud-malformed"
                                    : "cloud-unreachable");
            spec_stream_end(a, a->spec.error);
        } else if (rc == GW_SPEC_DONE) {
            spec_stream_end(a, NULL);
        } else {
            spec_stream_new_text(a, false);
        }
    }
}

static void spec_reader_free(void *cls)
{
    spec_answer *a = cls;
    ellm_srv_metrics_request(a->srv->metrics, a->rq.endpoint, 200, ellm_srv_now() - a->rq.t_start);
    spec_answer_free(a);
}

/* A cloud request decoded speculatively. Before the first byte goes out, a cloud that cannot be
 * reached falls back to the edge model as any cloud request does, and an answer that breaks the
 * protocol is a 502 (or the edge's answer, by policy); after it, a stream ends with an error
 * event. Returns whether it answered (false: the local handler answers rq's body). */
static bool answer_speculative(gateway *g, srv_server *srv, struct MHD_Connection *conn,
                               srv_front_request *rq, json_t *body, json_t *out,
                               pii_session *session, const routing *rt, int *result)
{
    spec_answer *a = calloc(1, sizeof *a);
    if (!a) {
        ellm_pii_session_free(session);
        *result = send_error(srv, conn, rq, 500, NULL, "%s", "out of memory");
        return true;
    }
    a->g = g;
    a->srv = srv;
    a->conn = conn;
    a->rq = *rq;
    a->rq.body = NULL;
    a->session = session;
    a->created = (long long)time(NULL);
    a->first_chunk = true;
    bool chat = !strcmp(rq->endpoint, "/v1/chat/completions");
    snprintf(a->id, sizeof a->id, "%s-spec%08lx%04x", chat ? "chatcmpl" : "cmpl",
             (unsigned long)atomic_fetch_add(&srv->next_id, 1), (unsigned)(rand() & 0xFFFF));
    json_t *model = json_object_get(body, "model");
    snprintf(a->model, sizeof a->model, "%s",
             g->cfg->cloud_model     ? g->cfg->cloud_model
             : json_is_string(model) ? json_string_value(model)
                                     : "");
    srv_api_error err;
    if (!ellm_gw_spec_start(&a->spec, &g->spec, srv, conn, out, chat ? SRV_CHAT : SRV_COMPLETION,
                            now_s() + srv->request_timeout_s, &err)) {
        spec_answer_free(a);
        *result = ellm_srv_http_send_error(srv, conn, rq, &err);
        return true;
    }
    int rc = ellm_gw_spec_step(&a->spec);
    while (rc == GW_SPEC_MORE && !a->spec.opts.stream)
        rc = ellm_gw_spec_step(&a->spec);
    if (rc == GW_SPEC_GONE) {
        spec_answer_free(a);
        *result = MHD_NO;
        return true;
    }
    if (rc == GW_SPEC_FAILED) {
        const char *failure = a->spec.failure ? a->spec.failure : "cloud-malformed";
        char why[256];
        snprintf(why, sizeof why, "%s", a->spec.error);
        fprintf(stderr, "edgellm gateway: %s speculative decoding failed: %s\n", rq->endpoint, why);
        spec_answer_free(a);
        bool malformed = !strcmp(failure, "cloud-malformed") || !strcmp(failure, "edge");
        if (!malformed || g->fallback_on_malformed) {
            if (!malformed)
                circuit_set(g, true);
            return fall_back(g, rq, body, malformed ? "cloud-malformed" : failure, rt, result, srv,
                             conn);
        }
        count_failure(g, "cloud-malformed");
        *result = send_error(srv, conn, rq, 502, "upstream_invalid",
                             "speculative decoding failed: %s", why);
        return true;
    }
    if (!a->model[0])
        snprintf(a->model, sizeof a->model, "%s", a->spec.cloud_model);
    set_route(rq, g, RT_SPECULATIVE, rt->reason);
    log_request(rq, rt, "speculative", rt->reason, 0);
    if (!a->spec.opts.stream) {
        gw_spec *s = &a->spec;
        *result = send_events(srv, conn, rq, &s->opts, a->model, s->events, s->n_events, s->finish,
                              s->req->n_prompt, s->n_generated,
                              json_pack("{s:o}", "speculative", ellm_gw_spec_stats(s)), a->session);
        spec_answer_free(a);
        return true;
    }
    if (a->session && ellm_pii_restorer_create(a->session, &a->restorer) != EDGELLM_OK)
        a->restorer = NULL;
    snprintf(a->rq.route, sizeof a->rq.route, "%s", rq->route);
    snprintf(a->rq.reason, sizeof a->rq.reason, "%s", rq->reason);
    if (rc == GW_SPEC_DONE)
        spec_stream_end(a, NULL);
    else
        spec_stream_new_text(a, false);
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 8192,
                                                                  spec_reader, a, spec_reader_free);
    if (!resp) {
        spec_answer_free(a);
        *result = send_error(srv, conn, rq, 500, NULL, "%s", "out of memory");
        return true;
    }
    MHD_add_response_header(resp, "Content-Type", "text/event-stream");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    ellm_srv_http_decorate(srv, conn, resp, rq);
    *result = MHD_queue_response(conn, 200, resp);
    MHD_destroy_response(resp);
    return true;
}

/* POST /v1/classify {"input": TEXT, "labels": [...]}: answered on the device. */
static int answer_classify(gateway *g, srv_server *srv, struct MHD_Connection *conn,
                           srv_front_request *rq)
{
    set_route(rq, g, RT_EDGE, "classify-on-device");
    json_error_t je;
    json_t *body = json_loadb(rq->body ? rq->body : "", rq->len, 0, &je);
    json_t *input = json_object_get(body, "input"), *labels = json_object_get(body, "labels");
    const char *bad = !json_is_object(body)    ? "the body must be a JSON object"
                      : !json_is_string(input) ? "'input' must be a string"
                      : !json_is_array(labels) || json_array_size(labels) < 2 ||
                              json_array_size(labels) > GW_CLASSIFY_MAX_LABELS
                          ? "'labels' must be an array of 2 to 64 strings"
                          : NULL;
    const char *names[GW_CLASSIFY_MAX_LABELS];
    size_t n = bad ? 0 : json_array_size(labels);
    for (size_t i = 0; i < n && !bad; i++) {
        json_t *l = json_array_get(labels, i);
        names[i] = json_string_value(l);
        if (!json_is_string(l) || json_string_length(l) == 0 || json_string_length(l) > 256 ||
            strlen(names[i]) != json_string_length(l))
            bad = "each label must be a non-empty string of at most 256 bytes";
        for (size_t k = 0; k < i && !bad; k++)
            if (!strcmp(names[k], names[i]))
                bad = "the labels must differ from each other";
    }
    if (bad) {
        json_decref(body);
        return send_error(srv, conn, rq, 400, "invalid_value",
                          "%s (POST /v1/classify {\"input\": TEXT, \"labels\": [\"a\", \"b\"]})",
                          bad);
    }
    gw_classification c;
    char err[256];
    if (!ellm_gw_classify(srv, json_string_value(input), json_string_length(input), names, (int)n,
                          false, &c, err, sizeof err)) {
        json_decref(body);
        return send_error(srv, conn, rq, 400, "input_too_long", "%s", err);
    }
    /* Most likely first, as a client reads it. */
    int order[GW_CLASSIFY_MAX_LABELS];
    for (int i = 0; i < (int)n; i++) {
        int at = i;
        while (at > 0 && c.logprob[order[at - 1]] < c.logprob[i]) {
            order[at] = order[at - 1];
            at--;
        }
        order[at] = i;
    }
    json_t *list = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(list,
                              json_pack("{s:s,s:f,s:f}", "label", names[order[i]], "probability",
                                        c.probability[order[i]], "logprob", c.logprob[order[i]]));
    json_t *answer = json_pack("{s:s,s:s,s:s,s:o,s:{s:i}}", "object", "classification", "model",
                               srv->model_id, "label", names[c.best], "labels", list, "usage",
                               "prompt_tokens", c.n_prompt_tokens);
    json_decref(body);
    int r = answer ? send_json_text(srv, conn, rq, 200, answer)
                   : send_error(srv, conn, rq, 500, NULL, "%s", "out of memory");
    json_decref(answer);
    return r;
}

static bool gateway_route(void *ctx, srv_server *srv, struct MHD_Connection *conn,
                          srv_front_request *rq, int *result)
{
    gateway *g = ctx;
    if (!strcmp(rq->endpoint, "/v1/classify")) {
        *result = answer_classify(g, srv, conn, rq);
        return true;
    }
    if (!strcmp(rq->endpoint, "/v1/embeddings")) {
        set_route(rq, g, RT_EDGE, "embeddings-on-device");
        return false;
    }
    json_t *body = json_loadb(rq->body ? rq->body : "", rq->len, 0, NULL);
    if (!json_is_object(body)) {
        json_decref(body);
        return false; /* the local handler names what is wrong with it */
    }
    gw_route_mode mode = g->cfg->route;
    json_t *ext = json_object_get(body, "edgellm");
    if (ext) {
        json_t *r = json_object_get(ext, "route");
        const char *v = json_string_value(r);
        if (!json_is_object(ext) || (r && !v) ||
            (v && strcmp(v, "edge") && strcmp(v, "cloud") && strcmp(v, "auto"))) {
            json_decref(body);
            *result = send_error(srv, conn, rq, 400, "invalid_value", "%s",
                                 "'edgellm' must be an object like {\"route\": \"edge\"}; route "
                                 "is \"edge\", \"cloud\" or \"auto\"");
            return true;
        }
        if (v)
            mode = !strcmp(v, "edge")    ? GW_ROUTE_EDGE
                   : !strcmp(v, "cloud") ? GW_ROUTE_CLOUD
                                         : GW_ROUTE_AUTO;
        json_object_del(body, "edgellm");
    }
    routing rt = {0};
    decide(g, srv, body, mode, &rt);
    /* The cascade's edge answer is generated in the gateway, which has the same limits as a
     * speculative draft: requests needing the scheduler's features are answered as before. */
    const char *not_cascaded = NULL;
    if (rt.route == RT_EDGE && rt.scored && g->cascade &&
        ellm_gw_spec_supported(body, &not_cascaded) &&
        try_cascade(g, srv, conn, rq, body, &rt, result)) {
        json_decref(body);
        return true;
    }
    if (rt.route == RT_EDGE) {
        set_route(rq, g, RT_EDGE, rt.reason);
        log_request(rq, &rt, "edge", rt.reason, 0);
        bool ok = set_local_body(rq, body, NULL);
        json_decref(body);
        if (!ok) {
            *result = send_error(srv, conn, rq, 500, NULL, "%s", "out of memory");
            return true;
        }
        return false;
    }

    /* To the cloud: nothing leaves before every string is redacted (or refused). */
    json_t *out = json_deep_copy(body);
    pii_session *session = NULL;
    gw_walk w = {.policy = g->pii};
    if (g->cfg->pii == GW_PII_BLOCK) {
        w.mode = GW_WALK_SCAN;
        ellm_gw_walk_strings(NULL, NULL, 0, out, &w);
        if (w.n_found) {
            char types[256];
            ellm_pii_describe_types(w.found, w.n_found, types, sizeof types);
            free(w.found);
            json_decref(out);
            json_decref(body);
            atomic_fetch_add(&g->pii_blocked, 1);
            snprintf(rq->reason, sizeof rq->reason, "pii-blocked");
            fprintf(stderr, "edgellm gateway: %s refused: personal data (%s)\n", rq->endpoint,
                    types);
            *result = send_error(srv, conn, rq, 400, "pii_detected",
                                 "the request contains personal data (%s) and --pii block is on; "
                                 "remove it or send it with \"edgellm\": {\"route\": \"edge\"}",
                                 types);
            return true;
        }
    } else if (g->cfg->pii == GW_PII_REDACT) {
        if (ellm_pii_session_create(g->pii, &session) != EDGELLM_OK) {
            w.failed = true;
        } else {
            w.mode = GW_WALK_REDACT;
            w.session = session;
            ellm_gw_walk_strings(NULL, NULL, 0, out, &w);
        }
    }
    if (w.failed) {
        free(w.found);
        json_decref(out);
        json_decref(body);
        ellm_pii_session_free(session);
        *result = send_error(srv, conn, rq, 500, "pii_scan_failed", "%s",
                             "the personal-data scan failed, so nothing was sent to the cloud");
        return true;
    }
    free(w.found);
    atomic_fetch_add(&g->pii_entities, w.n_redacted);
    if (g->cfg->cloud_model)
        json_object_set_new(out, "model", json_string(g->cfg->cloud_model));
    bool stream = json_is_true(json_object_get(out, "stream"));

    if (circuit_is_open(g)) {
        json_decref(out);
        ellm_pii_session_free(session);
        bool answered = fall_back(g, rq, body, "circuit-open", &rt, result, srv, conn);
        json_decref(body);
        return answered;
    }
    const char *unsupported = NULL;
    if (g->cfg->speculative_k > 0 && !ellm_gw_spec_supported(out, &unsupported))
        fprintf(stderr,
                "edgellm gateway: %s not speculative: '%s' needs the cloud's own "
                "generation\n",
                rq->endpoint, unsupported);
    if (g->cfg->speculative_k > 0 && !unsupported) {
        bool answered = answer_speculative(g, srv, conn, rq, body, out, session, &rt, result);
        json_decref(out);
        json_decref(body);
        return answered;
    }
    char *payload = json_dumps(out, JSON_COMPACT);
    json_decref(out);
    const char *path = !strcmp(rq->endpoint, "/v1/chat/completions") ? "/v1/chat/completions"
                                                                     : "/v1/completions";
    double deadline = now_s() + g->cfg->deadline_s;
    const char *failure = NULL;
    gw_call call;
    memset(&call, 0, sizeof call);
    for (int attempt = 0; payload; attempt++) {
        if (g->spec.latency_s > 0)
            nanosleep(
                &(struct timespec){(time_t)g->spec.latency_s,
                                   (long)((g->spec.latency_s - (time_t)g->spec.latency_s) * 1e9)},
                NULL);
        if (!ellm_gw_call_start(&call, &g->up, path, payload, strlen(payload),
                                deadline - now_s())) {
            failure = "cloud-unreachable";
            break;
        }
        /* A stream is judged by its first event before the client gets a 200; until then it
         * may still fall back, or be a 502. */
        size_t scanned = 0;
        while (!ellm_gw_call_pump(&call, 100) &&
               !(stream && call.status == 200 && stream_event_arrived(&call, &scanned))) {
            if (ellm_srv_http_client_gone(conn)) {
                ellm_gw_call_free(&call);
                free(payload);
                ellm_pii_session_free(session);
                json_decref(body);
                *result = MHD_NO;
                return true;
            }
        }
        failure = ellm_gw_call_failure(&call);
        bool retry = failure && (!strcmp(failure, "cloud-429") || !strcmp(failure, "cloud-5xx")) &&
                     attempt < g->cfg->retries;
        double backoff = 0.2 * (1 << attempt);
        if (!retry || now_s() + backoff >= deadline)
            break;
        ellm_gw_call_free(&call);
        nanosleep(&(struct timespec){(time_t)backoff, (long)((backoff - (time_t)backoff) * 1e9)},
                  NULL);
    }
    if (!payload) {
        ellm_pii_session_free(session);
        json_decref(body);
        *result = send_error(srv, conn, rq, 500, NULL, "%s", "out of memory");
        return true;
    }
    free(payload);
    if (failure) {
        ellm_gw_call_free(&call);
        ellm_pii_session_free(session);
        if (strcmp(failure, "cloud-429") != 0 && strcmp(failure, "cloud-5xx") != 0)
            circuit_set(g, true);
        bool answered = fall_back(g, rq, body, failure, &rt, result, srv, conn);
        json_decref(body);
        return answered;
    }
    set_route(rq, g, RT_CLOUD, rt.reason);
    log_request(rq, &rt, "cloud", rt.reason, w.n_redacted);

    if (stream && call.status == 200) {
        bool chat = !strcmp(path, "/v1/chat/completions");
        relay *r = calloc(1, sizeof *r);
        gw_stream_restore *restore = session ? ellm_gw_stream_restore_create(session, chat) : NULL;
        json_t *before = json_array();
        struct MHD_Response *resp = r && before && (restore || !session)
                                        ? MHD_create_response_from_callback(
                                              MHD_SIZE_UNKNOWN, 8192, relay_reader, r, relay_free)
                                        : NULL;
        if (!resp) {
            free(r);
            ellm_gw_stream_restore_free(restore);
            json_decref(before);
            ellm_gw_call_free(&call);
            ellm_pii_session_free(session);
            json_decref(body);
            *result = send_error(srv, conn, rq, 500, NULL, "%s", "out of memory");
            return true;
        }
        r->g = g;
        r->srv = srv;
        r->conn = conn;
        r->rq = *rq;
        r->rq.body = NULL;
        r->call = call;
        ellm_gw_call_moved(&r->call);
        r->session = session;
        r->restore = restore;
        r->before = before;
        r->chat = chat;
        relay_advance(r);
        if (r->fault_code) {
            /* Nothing has gone to the client: answered as a misshapen whole answer is. */
            char why[sizeof r->fault];
            const char *code = r->fault_code;
            snprintf(why, sizeof why, "%s", r->fault);
            MHD_destroy_response(resp); /* frees the relay, its call and its session */
            return refuse_malformed(g, srv, conn, rq, body, &rt, code, why, result);
        }
        r->committed = true;
        MHD_add_response_header(resp, "Content-Type", "text/event-stream");
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
        ellm_srv_http_decorate(srv, conn, resp, rq);
        *result = MHD_queue_response(conn, 200, resp);
        MHD_destroy_response(resp);
        json_decref(body);
        return true;
    }

    /* Whole answers: restored, or a 502 when they are not what the API promises. */
    json_t *answer = call.len ? json_loadb(call.body, call.len, 0, NULL) : NULL;
    long status = call.status;
    char why[768] = "";
    if (!json_is_object(answer) && (status < 200 || status > 299)) {
        /* No API answer at all: what the server did instead says what is wrong with the URL. */
        const char *to = ellm_gw_call_redirect(&call);
        char shown[512];
        ellm_gw_upstream_url_for_log(to ? to : "", shown, sizeof shown);
        if (to)
            snprintf(why, sizeof why,
                     "the cloud answered HTTP %ld, a redirect to '%s', which the gateway does "
                     "not follow (the key and the text go only to --cloud-url): give that URL as "
                     "--cloud-url",
                     status, shown);
        else
            snprintf(why, sizeof why,
                     "the cloud answered HTTP %ld without a JSON body; check --cloud-url", status);
    }
    ellm_gw_call_free(&call);
    char field[128] = "answer";
    gw_choice_shape shape = !strcmp(path, "/v1/chat/completions") ? GW_CHOICE_MESSAGE
                                                                  : GW_CHOICE_TEXT;
    const char *fault = !json_is_object(answer) ? "is not a JSON object"
                        : status == 200
                            ? ellm_gw_cloud_answer_fault(answer, shape, field, sizeof field)
                            : NULL;
    if (fault) {
        json_decref(answer);
        ellm_pii_session_free(session);
        if (!why[0])
            snprintf(why, sizeof why,
                     "the cloud's answer is not OpenAI-shaped: '%s' %s; check --cloud-url", field,
                     fault);
        return refuse_malformed(g, srv, conn, rq, body, &rt, "upstream_invalid", why, result);
    }
    json_decref(body);
    if (session) {
        gw_walk rw = {.mode = GW_WALK_RESTORE, .session = session};
        ellm_gw_walk_strings(NULL, NULL, 0, answer, &rw);
    }
    ellm_pii_session_free(session);
    *result = send_json_text(srv, conn, rq, status >= 200 && status < 600 ? (int)status : 502,
                             answer);
    json_decref(answer);
    return true;
}

static char *gateway_metrics(void *ctx)
{
    gateway *g = ctx;
    size_t cap = 8192;
    char *t = malloc(cap);
    if (!t)
        return NULL;
    size_t n = 0;
#define PUT(...) n += (size_t)snprintf(t + n, n < cap ? cap - n : 0, __VA_ARGS__)
    PUT("# HELP edgellm_gateway_requests_total Requests by the route that answered them.\n"
        "# TYPE edgellm_gateway_requests_total counter\n");
    for (int i = 0; i < RT_COUNT; i++)
        PUT("edgellm_gateway_requests_total{route=\"%s\"} %llu\n", route_names[i],
            (unsigned long long)atomic_load(&g->routed[i]));
    PUT("# HELP edgellm_gateway_cloud_failures_total Cloud calls that failed, by reason.\n"
        "# TYPE edgellm_gateway_cloud_failures_total counter\n");
    for (size_t i = 0; i < N_FAILURES; i++)
        PUT("edgellm_gateway_cloud_failures_total{reason=\"%s\"} %llu\n", failure_names[i],
            (unsigned long long)atomic_load(&g->failures[i]));
    PUT("# HELP edgellm_gateway_pii_redacted_total Values replaced by placeholders.\n"
        "# TYPE edgellm_gateway_pii_redacted_total counter\nedgellm_gateway_pii_redacted_total "
        "%llu\n",
        (unsigned long long)atomic_load(&g->pii_entities));
    PUT("# HELP edgellm_gateway_pii_blocked_total Requests refused by --pii block.\n"
        "# TYPE edgellm_gateway_pii_blocked_total counter\nedgellm_gateway_pii_blocked_total "
        "%llu\n",
        (unsigned long long)atomic_load(&g->pii_blocked));
    PUT("# HELP edgellm_gateway_circuit_open Whether the cloud counts as unavailable.\n"
        "# TYPE edgellm_gateway_circuit_open gauge\nedgellm_gateway_circuit_open %d\n",
        circuit_is_open(g));
    PUT("# HELP edgellm_gateway_circuit_opened_total Times the cloud became unavailable.\n"
        "# TYPE edgellm_gateway_circuit_opened_total counter\n"
        "edgellm_gateway_circuit_opened_total %llu\n",
        (unsigned long long)atomic_load(&g->circuit_opened));
    PUT("# HELP edgellm_gateway_speculative_drafted_total Tokens the edge drafted for the "
        "cloud to verify.\n# TYPE edgellm_gateway_speculative_drafted_total counter\n"
        "edgellm_gateway_speculative_drafted_total %llu\n",
        (unsigned long long)atomic_load(&g->spec_drafted));
    PUT("# HELP edgellm_gateway_speculative_accepted_total Drafted tokens the cloud agreed "
        "with.\n# TYPE edgellm_gateway_speculative_accepted_total counter\n"
        "edgellm_gateway_speculative_accepted_total %llu\n",
        (unsigned long long)atomic_load(&g->spec_accepted));
    PUT("# HELP edgellm_gateway_speculative_cloud_calls_total Verification calls to the cloud.\n"
        "# TYPE edgellm_gateway_speculative_cloud_calls_total counter\n"
        "edgellm_gateway_speculative_cloud_calls_total %llu\n",
        (unsigned long long)atomic_load(&g->spec_calls));
    PUT("# HELP edgellm_gateway_speculative_tokens_total Tokens answered by speculative "
        "decoding.\n# TYPE edgellm_gateway_speculative_tokens_total counter\n"
        "edgellm_gateway_speculative_tokens_total %llu\n",
        (unsigned long long)atomic_load(&g->spec_tokens));
    PUT("# HELP edgellm_gateway_cascade_total Edge answers of the confidence cascade, kept or "
        "escalated to the cloud.\n# TYPE edgellm_gateway_cascade_total counter\n"
        "edgellm_gateway_cascade_total{outcome=\"kept\"} %llu\n"
        "edgellm_gateway_cascade_total{outcome=\"escalated\"} %llu\n",
        (unsigned long long)atomic_load(&g->cascade_kept),
        (unsigned long long)atomic_load(&g->cascade_escalated));
    PUT("# HELP edgellm_gateway_local_intent_total Requests kept on the device by the policy's "
        "local_intents.\n# TYPE edgellm_gateway_local_intent_total counter\n"
        "edgellm_gateway_local_intent_total %llu\n",
        (unsigned long long)atomic_load(&g->intent_kept));
#undef PUT
    if (n >= cap) {
        free(t);
        return NULL;
    }
    return t;
}

/* ---- start-up ---- */

/* Once the edge model is loaded: with --speculative, the cloud must tokenize as the edge does,
 * and the edge vocabulary's texts are indexed to map the cloud's tokens back to ids. */
static bool gateway_ready(void *ctx, srv_server *srv, char *err, size_t err_cap)
{
    gateway *g = ctx;
    if (g->cfg->speculative_k <= 0)
        return true;
    if (!ellm_gw_spec_check_tokenizer(
            &g->up, srv->model, g->cfg->deadline_s < 10 ? g->cfg->deadline_s : 10, err, err_cap))
        return false;
    if (!(g->vocab = ellm_gw_vocab_map_build(srv->model))) {
        snprintf(err, err_cap, "out of memory indexing the edge vocabulary");
        return false;
    }
    g->spec.vocab = g->vocab;
    fprintf(stderr,
            "edgellm gateway: speculative decoding on: %d drafted tokens per cloud call, "
            "the cloud's tokenizer matches the edge model's\n",
            g->cfg->speculative_k);
    return true;
}

/* "cascade": {"min_mean_logprob": M, "min_token_logprob": T}; NULL or what is wrong. */
static const char *load_cascade(gateway *g, json_t *policy)
{
    json_t *c = json_object_get(policy, "cascade");
    if (!c)
        return NULL;
    json_t *mean = json_object_get(c, "min_mean_logprob"),
           *min = json_object_get(c, "min_token_logprob");
    if (!json_is_object(c) || (!mean && !min) || json_object_size(c) != (size_t)(!!mean + !!min))
        return "'cascade' must be an object with 'min_mean_logprob' and/or 'min_token_logprob' "
               "(log-probabilities, e.g. -1.5 and -6)";
    if ((mean && (!json_is_number(mean) || json_number_value(mean) > 0)) ||
        (min && (!json_is_number(min) || json_number_value(min) > 0)))
        return "the 'cascade' thresholds must be numbers <= 0 (log-probabilities)";
    g->cascade = true;
    g->cascade_mean = mean ? json_number_value(mean) : -INFINITY;
    g->cascade_min = min ? json_number_value(min) : -INFINITY;
    return NULL;
}

/* "intent_labels": [...] and "local_intents": [a subset]; NULL or what is wrong. */
static const char *load_intents(gateway *g, json_t *policy)
{
    json_t *labels = json_object_get(policy, "intent_labels");
    json_t *local = json_object_get(policy, "local_intents");
    if (!labels && !local)
        return NULL;
    if (!json_is_array(labels) || json_array_size(labels) < 2 ||
        json_array_size(labels) > GW_CLASSIFY_MAX_LABELS)
        return "'intent_labels' must be an array of 2 to 64 label strings (the classifier's "
               "choices; 'local_intents' names those that stay on the device)";
    if (!json_is_array(local) || json_array_size(local) == 0)
        return "'local_intents' must be a non-empty array of labels from 'intent_labels'";
    size_t n = json_array_size(labels);
    g->intent_labels = calloc(n, sizeof *g->intent_labels);
    if (!g->intent_labels)
        return "out of memory";
    for (size_t i = 0; i < n; i++) {
        json_t *l = json_array_get(labels, i);
        if (!json_is_string(l) || json_string_length(l) == 0 || json_string_length(l) > 256 ||
            strlen(json_string_value(l)) != json_string_length(l))
            return "each of 'intent_labels' must be a non-empty string of at most 256 bytes";
        for (size_t k = 0; k < i; k++)
            if (!strcmp(g->intent_labels[k], json_string_value(l)))
                return "'intent_labels' must differ from each other";
        if (!(g->intent_labels[i] = strdup(json_string_value(l))))
            return "out of memory";
        g->n_intent_labels = (int)i + 1;
    }
    for (size_t i = 0; i < json_array_size(local); i++) {
        const char *name = json_string_value(json_array_get(local, i));
        int at = -1;
        for (int k = 0; name && k < g->n_intent_labels; k++)
            if (!strcmp(g->intent_labels[k], name))
                at = k;
        if (at < 0)
            return "each of 'local_intents' must be one of 'intent_labels'";
        if (!g->local_intent[at])
            g->n_local_intents++;
        g->local_intent[at] = true;
    }
    return NULL;
}

static bool load_policy(gateway *g, const char *path)
{
    g->threshold = 0.6;
    g->fallback_on_malformed = false;
    g->fallback_note = strdup(DEFAULT_FALLBACK_NOTE);
    if (!path)
        return ellm_pii_policy_default(&g->pii) == EDGELLM_OK ||
               (fprintf(stderr, "edgellm gateway: %s\n", edgellm_last_error()), false);
    FILE *f = ellm_fopen_regular(path);
    if (!f) {
        fprintf(stderr, "edgellm gateway: --policy: %s\n", edgellm_last_error());
        return false;
    }
    json_error_t je;
    json_t *j = json_loadf(f, 0, &je);
    fclose(f);
    if (!json_is_object(j)) {
        fprintf(stderr, "edgellm gateway: --policy %s: %s (line %d, column %d)\n", path,
                j ? "must be a JSON object" : je.text, je.line, je.column);
        json_decref(j);
        return false;
    }
    json_t *th = json_object_get(j, "complexity_threshold");
    json_t *fb = json_object_get(j, "fallback_on_malformed");
    json_t *note = json_object_get(j, "fallback_note");
    const char *bad = NULL;
    if (th && (!json_is_number(th) || json_number_value(th) < 0 || json_number_value(th) > 1))
        bad = "'complexity_threshold' must be a number from 0 to 1";
    else if (fb && !json_is_boolean(fb))
        bad = "'fallback_on_malformed' must be true or false";
    else if (note && !json_is_string(note))
        bad = "'fallback_note' must be a string (\"\" for none)";
    if (note && !bad) {
        free(g->fallback_note);
        g->fallback_note = strdup(json_string_value(note));
    }
    if (th && !bad)
        g->threshold = json_number_value(th);
    if (fb && !bad)
        g->fallback_on_malformed = json_is_true(fb);
    if (!bad)
        bad = load_intents(g, j);
    if (!bad)
        bad = load_cascade(g, j);
    json_decref(j);
    if (bad) {
        fprintf(stderr, "edgellm gateway: --policy %s: %s\n", path, bad);
        return false;
    }
    if (ellm_pii_policy_load(path, &g->pii) != EDGELLM_OK) {
        fprintf(stderr, "edgellm gateway: %s\n", edgellm_last_error());
        return false;
    }
    return true;
}

static bool set_upstream(gateway *g, const gw_config *cfg)
{
    const char *url = cfg->cloud_url;
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
        fprintf(stderr, "edgellm gateway: --cloud-url must start with http:// or https:// "
                        "(e.g. https://api.example.com/v1)\n");
        return false;
    }
    char why[200];
    if (!ellm_gw_upstream_url_usable(url, why, sizeof why)) {
        char shown[512];
        ellm_gw_upstream_url_for_log(url, shown, sizeof shown);
        fprintf(stderr,
                "edgellm gateway: --cloud-url '%s' %s: give the server's base URL (e.g. "
                "https://api.example.com/v1)\n",
                shown, why);
        return false;
    }
    size_t n = strlen(url);
    if (n >= sizeof g->up.root) {
        fprintf(stderr, "edgellm gateway: --cloud-url is longer than %zu bytes\n",
                sizeof g->up.root - 1);
        return false;
    }
    memcpy(g->up.root, url, n + 1);
    while (n > 0 && g->up.root[n - 1] == '/')
        g->up.root[--n] = '\0';
    if (n >= 3 && !strcmp(g->up.root + n - 3, "/v1"))
        g->up.root[n - 3] = '\0';
    g->up.insecure = cfg->cloud_insecure;
    g->up.connect_timeout_s = cfg->connect_timeout_s;
    if (cfg->cloud_key) {
        size_t len = strlen(cfg->cloud_key) + 32;
        g->up.auth_header = malloc(len);
        if (!g->up.auth_header)
            return false;
        snprintf(g->up.auth_header, len, "Authorization: Bearer %s", cfg->cloud_key);
    }
    return true;
}

int ellm_gw_run(gw_config *cfg)
{
    if (cfg->connect_timeout_s <= 0)
        cfg->connect_timeout_s = 0.5;
    if (cfg->deadline_s <= 0)
        cfg->deadline_s = 60;
    if (cfg->retries < 0)
        cfg->retries = 1;
    if (cfg->probe_interval_s <= 0)
        cfg->probe_interval_s = 0.5;
    gateway *g = calloc(1, sizeof *g);
    if (!g) {
        fprintf(stderr, "edgellm gateway: out of memory\n");
        return 1;
    }
    g->cfg = cfg;
    pthread_mutex_init(&g->mu, NULL);
    int rc = 2;
    if (!load_policy(g, cfg->policy_path) || !set_upstream(g, cfg))
        goto done;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    bool prober = pthread_create(&g->prober, NULL, prober_main, g) == 0;
    g->spec = (gw_spec_config){.up = &g->up,
                               .k = cfg->speculative_k,
                               .top_n = 5,
                               .retries = cfg->retries,
                               .latency_s = cfg->cloud_latency_ms / 1000.0,
                               .call_timeout_s = cfg->deadline_s};
    srv_front front = {gateway_route, gateway_metrics, g, gateway_ready};
    cfg->server.front = &front;
    cfg->server.log_name = "edgellm gateway";
    char shown_root[sizeof g->up.root];
    ellm_gw_upstream_url_for_log(g->up.root, shown_root, sizeof shown_root);
    fprintf(stderr, "edgellm gateway: cloud %s, route %s, pii %s, complexity threshold %.2f\n",
            shown_root,
            cfg->route == GW_ROUTE_AUTO   ? "auto"
            : cfg->route == GW_ROUTE_EDGE ? "edge"
                                          : "cloud",
            cfg->pii == GW_PII_REDACT  ? "redact"
            : cfg->pii == GW_PII_BLOCK ? "block"
                                       : "off",
            g->threshold);
    rc = ellm_server_run(&cfg->server);
    atomic_store(&g->stopping, true);
    if (prober)
        pthread_join(g->prober, NULL);
    curl_global_cleanup();
done:
    for (int i = 0; i < g->n_intent_labels; i++)
        free(g->intent_labels[i]);
    free(g->intent_labels);
    ellm_gw_vocab_map_free(g->vocab);
    ellm_pii_policy_free(g->pii);
    free(g->fallback_note);
    if (g->up.auth_header) {
        memset(g->up.auth_header, 0, strlen(g->up.auth_header));
        free(g->up.auth_header);
    }
    pthread_mutex_destroy(&g->mu);
    free(g);
    return rc;
}
