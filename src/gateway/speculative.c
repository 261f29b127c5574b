#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gateway/speculative.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_s(double s)
{
    if (s > 0)
        nanosleep(&(struct timespec){(time_t)s, (long)((s - (time_t)s) * 1e9)}, NULL);
}

bool ellm_gw_spec_supported(json_t *body, const char **why)
{
    /* Each of these changes what the cloud generates in a way one scoring call cannot see
     * (several choices, constrained or biased sampling, tool calls) or asks for the cloud's own
     * per-token output (logprobs, echo). */
    static const char *const needs_cloud[] = {
        "tools",        "functions", "response_format", "grammar", "logit_bias", "logprobs",
        "top_logprobs", "echo",      "suffix",          "best_of"};
    for (size_t i = 0; i < sizeof needs_cloud / sizeof needs_cloud[0]; i++) {
        json_t *v = json_object_get(body, needs_cloud[i]);
        if (v && !json_is_null(v) && !json_is_false(v)) {
            *why = needs_cloud[i];
            return false;
        }
    }
    json_t *n = json_object_get(body, "n");
    if (n && !(json_is_integer(n) && json_integer_value(n) == 1)) {
        *why = "n";
        return false;
    }
    /* Penalties depend on the whole history the cloud holds; the acceptance test does not
     * model them. */
    static const char *const penalties[] = {"presence_penalty", "frequency_penalty"};
    for (size_t i = 0; i < 2; i++) {
        json_t *v = json_object_get(body, penalties[i]);
        if (json_is_number(v) && json_number_value(v) != 0) {
            *why = penalties[i];
            return false;
        }
    }
    return true;
}

static bool push_seq(gw_spec *s, edgellm_token t)
{
    if (s->n_seq == s->cap_seq) {
        int32_t cap = s->cap_seq ? s->cap_seq * 2 : 256;
        edgellm_token *g = realloc(s->seq, (size_t)cap * sizeof *g);
        if (!g)
            return false;
        s->seq = g;
        s->cap_seq = cap;
    }
    s->seq[s->n_seq++] = t;
    return true;
}

bool ellm_gw_spec_start(gw_spec *s, const gw_spec_config *cfg, srv_server *srv,
                        struct MHD_Connection *conn, json_t *body, srv_endpoint_kind kind,
                        double deadline, srv_api_error *err)
{
    memset(s, 0, sizeof *s);
    s->cfg = cfg;
    s->srv = srv;
    s->conn = conn;
    s->deadline = deadline;
    s->req = ellm_srv_request_new();
    if (!s->req) {
        ellm_srv_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
        return false;
    }
    if (!ellm_srv_parse_completion(body, kind, srv->model, srv->model_id,
                                   ellm_srv_scheduler_n_ctx(srv->sched), s->req, &s->opts, err))
        return false;
    srv_request *r = s->req;
    int32_t n_ctx = ellm_srv_scheduler_n_ctx(srv->sched);
    int32_t room = n_ctx - r->n_prompt;
    if (r->max_tokens < 0 || r->max_tokens > room)
        r->max_tokens = room;
    /* The cloud samples its own token (after the last accepted draft) as the client asked. */
    bool sampled = r->sampling.temperature > 0;
    s->call_template = json_pack("{s:i,s:b,s:i,s:f,s:f,s:b}", "max_tokens", 1, "echo", 1,
                                 "logprobs", sampled ? SRV_MAX_TOP_LOGPROBS : cfg->top_n,
                                 "temperature", (double)r->sampling.temperature, "top_p",
                                 (double)r->sampling.top_p, "stream", 0);
    s->rng = r->sampling.seed ^ 0x9E3779B97F4A7C15ULL;
    json_t *model = json_object_get(body, "model");
    if (s->call_template && json_is_string(model))
        json_object_set(s->call_template, "model", model);
    bool ok = s->call_template &&
              ellm_gw_edge_open(&s->edge, srv, r->n_prompt + r->max_tokens + cfg->k + 2) ==
                  EDGELLM_OK &&
              edgellm_text_stream_create(srv->model, (const char *const *)r->stops, r->n_stops,
                                         &s->text) == EDGELLM_OK;
    if (ok && sampled)
        ok = (s->draft_logits = malloc((size_t)cfg->k * (size_t)s->edge.n_vocab *
                                       sizeof *s->draft_logits)) != NULL;
    for (int32_t i = 0; ok && i < r->n_prompt; i++)
        ok = push_seq(s, r->prompt[i]);
    if (!ok) {
        ellm_srv_error_set(err, 500, "server_error", NULL, NULL, "cannot set up the edge draft: %s",
                           edgellm_last_error());
        return false;
    }
    return true;
}

void ellm_gw_spec_free(gw_spec *s)
{
    ellm_srv_request_release(s->req);
    json_decref(s->call_template);
    ellm_gw_edge_close(&s->edge);
    free(s->seq);
    free(s->draft_logits);
    ellm_gw_call_free(&s->call);
    edgellm_text_stream_free(s->text);
    ellm_srv_events_free(s->events, s->n_events);
    memset(s, 0, sizeof *s);
}

json_t *ellm_gw_spec_stats(const gw_spec *s)
{
    return json_pack("{s:i,s:i,s:i,s:f}", "drafted", s->drafted, "accepted", s->accepted,
                     "cloud_calls", s->calls, "acceptance_rate",
                     s->drafted ? (double)s->accepted / s->drafted : 0.0);
}

/* ---- the cloud's verdict ---- */

static bool fail_why(char *why, size_t cap, const char *msg)
{
    snprintf(why, cap, "%s", msg);
    return false;
}

/* The key of the largest value in an OpenAI top_logprobs object, and that value. */
static const char *top_choice(json_t *top, double *best)
{
    const char *key, *best_key = NULL;
    json_t *v;
    json_object_foreach(top, key, v)
    {
        if (!json_is_number(v))
            return NULL;
        double lp = json_number_value(v);
        if (!best_key || lp > *best) {
            best_key = key;
            *best = lp;
        }
    }
    return best_key;
}

/* The token a cloud's text stands for: one end of generation ends the answer. */
static bool text_to_token(const gw_vocab_map *vocab, const edgellm_model *model, const char *text,
                          size_t len, gw_verdict *out)
{
    edgellm_token t = ellm_gw_vocab_map_find(vocab, text, len);
    if (t < 0) {
        /* Typically part of a UTF-8 character, which JSON text cannot carry (the cloud sends
         * U+FFFD): the token is unknown, the next round asks again from the accepted prefix. */
        out->unknown = true;
        out->next = -1;
        return true;
    }
    out->end = edgellm_token_is_eog(model, t) != 0;
    out->next = out->end ? -1 : t;
    return true;
}

/* The logprobs arrays of a verification answer, checked against what was sent. */
typedef struct scored {
    json_t *choice, *tokens, *token_lps, *tops;
    size_t n;
} scored;

static bool scored_read(json_t *answer, int32_t n_sent, scored *sc, char *why, size_t why_cap)
{
    sc->choice = json_array_get(json_object_get(answer, "choices"), 0);
    json_t *lp = json_object_get(sc->choice, "logprobs");
    sc->tokens = json_object_get(lp, "tokens");
    sc->token_lps = json_object_get(lp, "token_logprobs");
    sc->tops = json_object_get(lp, "top_logprobs");
    if (!json_is_object(sc->choice) || !json_is_array(sc->tokens) ||
        !json_is_array(sc->token_lps) || !json_is_array(sc->tops))
        return fail_why(why, why_cap,
                        "the verification answer has no choices[0].logprobs with tokens, "
                        "token_logprobs and top_logprobs (does the cloud support echo with "
                        "logprobs on /v1/completions?)");
    sc->n = json_array_size(sc->tokens);
    if (json_array_size(sc->token_lps) != sc->n || json_array_size(sc->tops) != sc->n ||
        (sc->n != (size_t)n_sent && sc->n != (size_t)n_sent + 1)) {
        snprintf(why, why_cap,
                 "the verification answer scores %zu tokens, %d were sent (one more may be "
                 "generated)",
                 sc->n, n_sent);
        return false;
    }
    return true;
}

/* The drafted token's log-probability (exact: keyed by position, not text) and the
 * alternatives at position pos. */
static bool scored_at(const scored *sc, size_t pos, double *mine, json_t **top, char *why,
                      size_t why_cap)
{
    json_t *m = json_array_get(sc->token_lps, pos);
    *top = json_array_get(sc->tops, pos);
    if (!json_is_number(m) || !json_is_object(*top) || json_object_size(*top) == 0)
        return fail_why(why, why_cap,
                        "the verification answer lacks a log-probability or its alternatives "
                        "for a drafted token");
    *mine = json_number_value(m);
    return true;
}

/* After every draft was accepted: the token the cloud generated itself, or the end. */
static bool scored_next(const scored *sc, int32_t n_sent, const gw_vocab_map *vocab,
                        const edgellm_model *model, gw_verdict *out, char *why, size_t why_cap)
{
    if (sc->n == (size_t)n_sent + 1) {
        json_t *gen = json_array_get(sc->tokens, (size_t)n_sent);
        if (!json_is_string(gen))
            return fail_why(why, why_cap, "the generated token of the verification is not text");
        return text_to_token(vocab, model, json_string_value(gen), json_string_length(gen), out);
    }
    /* Nothing generated: the cloud's next token ended the answer. */
    json_t *fr = json_object_get(sc->choice, "finish_reason");
    if (json_is_string(fr) && !strcmp(json_string_value(fr), "length"))
        return fail_why(why, why_cap,
                        "the verification generated nothing but did not stop (finish_reason "
                        "'length'): is the cloud's context full?");
    out->end = true;
    return true;
}

bool ellm_gw_spec_judge_greedy(json_t *answer, const gw_vocab_map *vocab,
                               const edgellm_model *model, int32_t n_sent, int32_t first,
                               int32_t n_draft, gw_verdict *out, char *why, size_t why_cap)
{
    memset(out, 0, sizeof *out);
    out->next = -1;
    scored sc;
    if (!scored_read(answer, n_sent, &sc, why, why_cap))
        return false;
    for (int32_t i = 0; i < n_draft; i++) {
        double mine, best = 0;
        json_t *top;
        if (!scored_at(&sc, (size_t)(first + i), &mine, &top, why, why_cap))
            return false;
        const char *key = top_choice(top, &best);
        if (!key)
            return fail_why(why, why_cap, "a top_logprobs value is not a number");
        /* Compares ids exactly: the drafted token is the argmax when nothing scores higher. */
        if (mine >= best) {
            out->n_accepted++;
            continue;
        }
        return text_to_token(vocab, model, key, strlen(key), out);
    }
    return scored_next(&sc, n_sent, vocab, model, out, why, why_cap);
}

static double rng_uniform(uint64_t *state)
{
    /* splitmix64 */
    uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0;
}

typedef struct candidate {
    edgellm_token id;
    double lp, p;
} candidate;

static int candidate_desc(const void *a, const void *b)
{
    double x = ((const candidate *)a)->lp, y = ((const candidate *)b)->lp;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* The cloud's distribution at one position as far as the answer shows it: its top-N (texts
 * mapped to ids; texts that map to none are left out) and the drafted token, at temperature T,
 * cut to top_p, renormalised. Returns the number of candidates. */
static int cloud_distribution(json_t *top, edgellm_token draft, double draft_lp,
                              const gw_vocab_map *vocab, double t, double top_p, candidate *c,
                              int cap)
{
    int n = 0;
    const char *key;
    json_t *v;
    c[n++] = (candidate){draft, draft_lp, 0};
    json_object_foreach(top, key, v)
    {
        edgellm_token id = ellm_gw_vocab_map_find(vocab, key, strlen(key));
        bool seen = id < 0 || !json_is_number(v);
        for (int i = 0; i < n && !seen; i++)
            seen = c[i].id == id;
        if (!seen && n < cap)
            c[n++] = (candidate){id, json_number_value(v), 0};
    }
    qsort(c, (size_t)n, sizeof *c, candidate_desc);
    double z = 0;
    for (int i = 0; i < n; i++)
        z += c[i].p = exp((c[i].lp - c[0].lp) / t);
    double kept = 0;
    int keep = n;
    for (int i = 0; i < n; i++) {
        kept += c[i].p / z;
        if (kept >= top_p) {
            keep = i + 1;
            break;
        }
    }
    double zk = 0;
    for (int i = 0; i < keep; i++)
        zk += c[i].p;
    for (int i = 0; i < n; i++)
        c[i].p = i < keep ? c[i].p / zk : 0;
    return n;
}

bool ellm_gw_spec_judge_sampled(json_t *answer, const gw_vocab_map *vocab,
                                const edgellm_model *model, int32_t n_sent, int32_t first,
                                int32_t n_draft, const gw_spec_sampling *smp, gw_verdict *out,
                                char *why, size_t why_cap)
{
    memset(out, 0, sizeof *out);
    out->next = -1;
    scored sc;
    if (!scored_read(answer, n_sent, &sc, why, why_cap))
        return false;
    int32_t n_vocab = edgellm_n_vocab(model);
    for (int32_t i = 0; i < n_draft; i++) {
        double mine;
        json_t *top;
        if (!scored_at(&sc, (size_t)(first + i), &mine, &top, why, why_cap))
            return false;
        candidate c[SRV_MAX_TOP_LOGPROBS + 1];
        int n = cloud_distribution(top, smp->draft[i], mine, vocab, smp->temperature, smp->top_p, c,
                                   SRV_MAX_TOP_LOGPROBS + 1);
        const float *q_logits = smp->edge_logits + (size_t)i * (size_t)n_vocab;
        double p_x = 0;
        for (int j = 0; j < n; j++)
            if (c[j].id == smp->draft[i])
                p_x = c[j].p;
        double q_x = exp(ellm_gw_logprob(q_logits, n_vocab, smp->draft[i], smp->temperature));
        if (rng_uniform(smp->rng) * q_x < p_x) {
            out->n_accepted++;
            continue;
        }
        /* Rejected: the cloud's token comes from what p has beyond q. */
        double residual = 0;
        for (int j = 0; j < n; j++) {
            double q = exp(ellm_gw_logprob(q_logits, n_vocab, c[j].id, smp->temperature));
            c[j].lp = c[j].p > q ? c[j].p - q : 0;
            residual += c[j].lp;
        }
        double u = rng_uniform(smp->rng) * (residual > 0 ? residual : 1), acc = 0;
        edgellm_token pick = c[0].id;
        for (int j = 0; j < n; j++) {
            acc += residual > 0 ? c[j].lp : c[j].p;
            if (u < acc) {
                pick = c[j].id;
                break;
            }
        }
        out->end = edgellm_token_is_eog(model, pick) != 0;
        out->next = out->end ? -1 : pick;
        return true;
    }
    return scored_next(&sc, n_sent, vocab, model, out, why, why_cap);
}

/* ---- one round ---- */

static bool client_gone(gw_spec *s) { return s->conn && ellm_srv_http_client_gone(s->conn); }

/* POSTs the verification; retried after a failure with 0.2 s, 0.4 s, ... backoff within the
 * deadline (it only reads, so repeating it is safe). */
static int call_cloud(gw_spec *s, const char *payload, json_t **answer)
{
    *answer = NULL;
    gw_call *call = &s->call;
    double call_deadline = now_s() + s->cfg->call_timeout_s;
    if (call_deadline > s->deadline)
        call_deadline = s->deadline;
    for (int attempt = 0;; attempt++) {
        sleep_s(s->cfg->latency_s);
        s->calls++;
        const char *failure = NULL;
        if (!ellm_gw_call_restart(call, s->cfg->up, "/v1/completions", payload, strlen(payload),
                                  call_deadline - now_s())) {
            failure = "cloud-unreachable";
        } else {
            while (!ellm_gw_call_pump(call, 100)) {
                if (client_gone(s)) {
                    ellm_gw_call_free(call);
                    return GW_SPEC_GONE;
                }
            }
            failure = ellm_gw_call_failure(call);
        }
        if (!failure && call->status != 200) {
            snprintf(s->error, sizeof s->error, "the cloud answered the verification with HTTP %ld",
                     call->status);
            failure = "cloud-malformed";
        }
        if (!failure) {
            json_error_t je;
            *answer = json_loadb(call->body ? call->body : "", call->len, JSON_ALLOW_NUL, &je);
            if (!json_is_object(*answer)) {
                json_decref(*answer);
                *answer = NULL;
                s->failure = "cloud-malformed";
                snprintf(s->error, sizeof s->error,
                         "the cloud's verification answer is not a JSON object (%s)",
                         je.text[0] ? je.text : "another JSON value");
                return GW_SPEC_FAILED;
            }
            return GW_SPEC_MORE;
        }
        ellm_gw_call_free(call); /* a failed connection is not reused */
        double backoff = 0.2 * (1 << attempt);
        if (attempt >= s->cfg->retries || now_s() + backoff >= call_deadline ||
            !strcmp(failure, "cloud-malformed")) {
            s->failure = failure;
            if (strcmp(failure, "cloud-malformed"))
                snprintf(s->error, sizeof s->error, "the cloud is unavailable (%s)", failure);
            return GW_SPEC_FAILED;
        }
        sleep_s(backoff);
    }
}

/* Takes one token into the answer; false when it ends it. */
static bool accept_token(gw_spec *s, edgellm_token t)
{
    const char *text = NULL;
    size_t len = 0;
    int stopped = 0;
    if (!push_seq(s, t) ||
        edgellm_text_stream_push(s->text, t, &text, &len, &stopped) != EDGELLM_OK ||
        !ellm_gw_events_push(&s->events, &s->n_events, &s->cap_events, t, text ? text : "", len)) {
        s->finish = SRV_FINISH_ERROR;
        return false;
    }
    s->n_generated++;
    if (stopped) {
        s->finish = SRV_FINISH_STOP;
        return false;
    }
    if (s->n_generated >= s->req->max_tokens) {
        s->finish = SRV_FINISH_LENGTH;
        return false;
    }
    return true;
}

static int finish(gw_spec *s, srv_finish f)
{
    if (s->finish == SRV_FINISH_NONE)
        s->finish = f;
    const char *text = NULL;
    size_t len = 0;
    if (edgellm_text_stream_finish(s->text, &text, &len) == EDGELLM_OK && len)
        ellm_gw_events_push(&s->events, &s->n_events, &s->cap_events, -1, text, len);
    return GW_SPEC_DONE;
}

int ellm_gw_spec_step(gw_spec *s)
{
    if (s->finish != SRV_FINISH_NONE)
        return GW_SPEC_DONE;
    if (s->n_generated >= s->req->max_tokens)
        return finish(s, SRV_FINISH_LENGTH);
    if (now_s() >= s->deadline)
        return finish(s, SRV_FINISH_TIMEOUT); /* what is accepted so far, as serve does */
    /* Draft: the last token accepted is the cloud's own, so at most max_tokens - 1 drafts. */
    int32_t k = s->cfg->k < GW_SPEC_MAX_K ? s->cfg->k : GW_SPEC_MAX_K;
    if (k > s->req->max_tokens - s->n_generated - 1)
        k = s->req->max_tokens - s->n_generated - 1;
    int32_t first = s->n_seq;
    const float *logits = k > 0 ? ellm_gw_edge_sync(&s->edge, s->seq, s->n_seq) : NULL;
    int32_t n_draft = 0;
    bool ok = true;
    double temperature = s->req->sampling.temperature;
    for (int32_t i = 0; i < k && logits; i++) {
        edgellm_token t = ellm_gw_argmax(logits, s->edge.n_vocab);
        if (temperature > 0) {
            /* q = softmax(logits / T), the distribution the acceptance test divides by. */
            memcpy(s->draft_logits + (size_t)i * (size_t)s->edge.n_vocab, logits,
                   (size_t)s->edge.n_vocab * sizeof *logits);
            t = ellm_gw_sample(logits, s->edge.n_vocab, temperature, rng_uniform(&s->rng));
        }
        if (edgellm_token_is_eog(s->srv->model, t))
            break; /* the cloud's own next token says whether it ends there */
        ok = push_seq(s, t);
        n_draft++;
        if (!ok)
            break;
        if (i + 1 < k)
            logits = ellm_gw_edge_push(&s->edge, t);
    }
    s->n_seq = first; /* the drafts stay in seq's buffer past n_seq until judged */
    if (!ok) {
        s->failure = "edge";
        snprintf(s->error, sizeof s->error, "out of memory while drafting");
        return GW_SPEC_FAILED;
    }
    int32_t n_sent = first + n_draft;
    json_t *prompt = json_array();
    for (int32_t i = 0; i < n_sent; i++)
        json_array_append_new(prompt, json_integer(s->seq[i]));
    json_object_set_new(s->call_template, "prompt", prompt);
    /* A seed per call: the cloud's own sampled tokens are reproducible from the request's. */
    json_object_set_new(s->call_template, "seed",
                        json_integer((json_int_t)((s->req->sampling.seed + (uint64_t)s->calls) &
                                                  0x7FFFFFFFFFFFFFFFULL)));
    char *payload = json_dumps(s->call_template, JSON_COMPACT);
    json_object_del(s->call_template, "prompt");
    if (!payload) {
        s->failure = "edge";
        snprintf(s->error, sizeof s->error, "out of memory");
        return GW_SPEC_FAILED;
    }
    /* The drafts are only in seq's spare room; copy them before anything grows it. */
    edgellm_token draft[GW_SPEC_MAX_K];
    int32_t nd = n_draft;
    memcpy(draft, s->seq + first, (size_t)nd * sizeof *draft);
    json_t *answer = NULL;
    int rc = call_cloud(s, payload, &answer);
    free(payload);
    if (rc != GW_SPEC_MORE)
        return rc;
    json_t *model = json_object_get(answer, "model");
    if (json_is_string(model))
        snprintf(s->cloud_model, sizeof s->cloud_model, "%s", json_string_value(model));
    gw_verdict v;
    if (temperature > 0) {
        gw_spec_sampling smp = {temperature, s->req->sampling.top_p, s->draft_logits, draft,
                                &s->rng};
        ok = ellm_gw_spec_judge_sampled(answer, s->cfg->vocab, s->srv->model, n_sent, first, nd,
                                        &smp, &v, s->error, sizeof s->error);
    } else {
        ok = ellm_gw_spec_judge_greedy(answer, s->cfg->vocab, s->srv->model, n_sent, first, nd, &v,
                                       s->error, sizeof s->error);
    }
    json_decref(answer);
    if (!ok) {
        s->failure = "cloud-malformed";
        return GW_SPEC_FAILED;
    }
    s->drafted += nd;
    s->accepted += v.n_accepted;
    for (int i = 0; i < v.n_accepted; i++)
        if (!accept_token(s, draft[i]))
            return finish(s, SRV_FINISH_STOP);
    if (v.end)
        return finish(s, SRV_FINISH_STOP);
    if (v.unknown) {
        /* A round without progress is repeated once (the edge may draft the token itself, and
         * its id is then checked exactly); twice means the cloud insists on a token whose text
         * names no edge token. */
        s->stalls = v.n_accepted ? 0 : s->stalls + 1;
        if (s->stalls >= 2) {
            s->failure = "cloud-malformed";
            snprintf(s->error, sizeof s->error,
                     "the cloud chose a token whose text is no token of the edge vocabulary "
                     "(part of a UTF-8 character?)");
            return GW_SPEC_FAILED;
        }
        return GW_SPEC_MORE;
    }
    s->stalls = 0;
    if (!accept_token(s, v.next))
        return finish(s, SRV_FINISH_STOP);
    return GW_SPEC_MORE;
}

/* ---- the shared-tokenizer check ---- */

/* Words, spaces at the edges and doubled, digits, punctuation, non-ASCII text and newlines:
 * where tokenizers that merely look alike split differently. */
static const char *const probes[] = {
    "Hello, world!",
    " The quick brown fox jumps over the lazy dog.",
    "numbers 12345 and 3.14159, dates 2024-01-15",
    "naïve café — Zürich, 東京, emoji 🙂",
    "line one\nline two\ttabbed  double  spaced ",
    "def f(x):\n    return x ** 2  # square",
};

/* The cloud's tokens of text, or false with the reason (err) when it cannot say. */
static bool cloud_tokens(const gw_upstream *up, const char *text, double timeout_s, json_t **out,
                         char *err, size_t err_cap)
{
    /* One body both shapes read: llama.cpp's server and `edgellm serve` take content and
     * add_special, vLLM takes prompt and add_special_tokens; each ignores the other's keys. */
    json_t *req = json_pack("{s:s,s:b,s:s,s:b}", "content", text, "add_special", 0, "prompt", text,
                            "add_special_tokens", 0);
    char *payload = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    gw_call call;
    memset(&call, 0, sizeof call);
    bool started = payload &&
                   ellm_gw_call_start(&call, up, "/tokenize", payload, strlen(payload), timeout_s);
    free(payload);
    while (started && !ellm_gw_call_pump(&call, 100)) {
    }
    const char *failure = started ? ellm_gw_call_failure(&call) : "cloud-unreachable";
    bool ok = false;
    if (failure) {
        snprintf(err, err_cap,
                 "--speculative: cannot reach the cloud to check its tokenizer (%s); start the "
                 "gateway once the cloud is up, or without --speculative",
                 failure);
    } else if (call.status == 404 || call.status == 405) {
        snprintf(err, err_cap,
                 "--speculative: the cloud has no POST /tokenize (HTTP %ld), so it cannot be "
                 "checked that edge and cloud share a tokenizer; run without --speculative",
                 call.status);
    } else if (call.status != 200) {
        snprintf(err, err_cap,
                 "--speculative: the cloud's /tokenize answered HTTP %ld; run without "
                 "--speculative",
                 call.status);
    } else {
        json_t *j = json_loadb(call.body ? call.body : "", call.len, 0, NULL);
        json_t *tokens = json_object_get(j, "tokens");
        if (!json_is_array(tokens)) {
            snprintf(err, err_cap,
                     "--speculative: the cloud's /tokenize answer has no 'tokens' array; run "
                     "without --speculative");
        } else {
            *out = json_incref(tokens);
            ok = true;
        }
        json_decref(j);
    }
    ellm_gw_call_free(&call);
    return ok;
}

bool ellm_gw_spec_check_tokenizer(const gw_upstream *up, const edgellm_model *model,
                                  double timeout_s, char *err, size_t err_cap)
{
    for (size_t p = 0; p < sizeof probes / sizeof probes[0]; p++) {
        json_t *cloud = NULL;
        if (!cloud_tokens(up, probes[p], timeout_s, &cloud, err, err_cap))
            return false;
        int32_t n = 0;
        edgellm_token mine[256];
        edgellm_status st = edgellm_tokenize(model, probes[p], strlen(probes[p]), 0, mine, 256, &n);
        size_t same = 0, nc = json_array_size(cloud);
        while (st == EDGELLM_OK && same < nc && same < (size_t)n &&
               json_is_integer(json_array_get(cloud, same)) &&
               json_integer_value(json_array_get(cloud, same)) == mine[same])
            same++;
        json_decref(cloud);
        if (st != EDGELLM_OK || same != nc || same != (size_t)n) {
            snprintf(err, err_cap,
                     "--speculative: the cloud tokenizes differently from the edge model (probe "
                     "%zu: %zu tokens at the cloud, %d at the edge, first difference at token "
                     "%zu); drafts would be verified as other text. Use a cloud serving a model "
                     "with the edge model's vocabulary, or run without --speculative",
                     p + 1, nc, n, same);
            return false;
        }
    }
    return true;
}
