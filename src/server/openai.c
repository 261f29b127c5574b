#define _POSIX_C_SOURCE 200809L
/* The OpenAI API's JSON: reading chat and completion requests into generation requests, and
 * writing responses, streamed chunks, usage and errors in the shapes its clients expect. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/chat.h"
#include "server/server_internal.h"

#define MAX_STOPS 4
#define MAX_MESSAGES 1024

void srv_error_set(srv_api_error *e, int status, const char *type, const char *code,
                   const char *param, const char *fmt, ...)
{
    e->status = status;
    e->type = type;
    e->code = code;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}

/* Text as a JSON string; bytes that are not valid UTF-8 become U+FFFD rather than failing. */
static json_t *lossy_string(const char *s, size_t n)
{
    json_t *j = json_stringn(s, n);
    if (j)
        return j;
    char *out = malloc(n * 3 + 1);
    if (!out)
        return json_string("");
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        bool ok = len > 0 && i + len <= n;
        for (size_t k = 1; ok && k < len; k++)
            ok = ((unsigned char)s[i + k] & 0xC0) == 0x80;
        if (ok) {
            json_t *probe = json_stringn(s + i, len); /* rejects overlongs and surrogates */
            ok = probe != NULL;
            json_decref(probe);
        }
        if (ok) {
            memcpy(out + o, s + i, len);
            o += len;
            i += len;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    j = json_stringn(out, o);
    free(out);
    return j ? j : json_string("");
}

json_t *srv_error_json(const srv_api_error *e)
{
    return json_pack("{s:{s:o,s:s,s:o,s:o}}", "error", "message",
                     lossy_string(e->message, strlen(e->message)), "type", e->type, "param",
                     e->param[0] ? json_string(e->param) : json_null(), "code",
                     e->code ? json_string(e->code) : json_null());
}

static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

static bool bad_type(srv_api_error *err, const char *field, const char *want, const json_t *got)
{
    srv_error_set(err, 400, "invalid_request_error", "invalid_type", field,
                  "'%s' must be %s, got %s", field, want, json_kind(got));
    return false;
}

/* Optional number in [lo, hi]; absent or null leaves *out unchanged. */
static bool get_number(json_t *body, const char *field, double lo, double hi, double *out,
                       srv_api_error *err)
{
    json_t *v = json_object_get(body, field);
    if (!v || json_is_null(v))
        return true;
    if (!json_is_number(v))
        return bad_type(err, field, "a number", v);
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi)) {
        srv_error_set(err, 400, "invalid_request_error", "invalid_value", field,
                      "'%s' must be between %g and %g, got %g", field, lo, hi, d);
        return false;
    }
    *out = d;
    return true;
}

static bool get_int(json_t *body, const char *field, long long lo, long long hi, long long *out,
                    srv_api_error *err)
{
    json_t *v = json_object_get(body, field);
    if (!v || json_is_null(v))
        return true;
    if (!json_is_integer(v))
        return bad_type(err, field, "an integer", v);
    long long d = json_integer_value(v);
    if (d < lo || d > hi) {
        srv_error_set(err, 400, "invalid_request_error", "invalid_value", field,
                      "'%s' must be between %lld and %lld, got %lld", field, lo, hi, d);
        return false;
    }
    *out = d;
    return true;
}

static bool get_bool(json_t *body, const char *field, bool *out, srv_api_error *err)
{
    json_t *v = json_object_get(body, field);
    if (!v || json_is_null(v))
        return true;
    if (!json_is_boolean(v))
        return bad_type(err, field, "a boolean", v);
    *out = json_is_true(v);
    return true;
}

bool srv_check_model(json_t *body, const char *model_id, srv_api_error *err)
{
    json_t *v = json_object_get(body, "model");
    if (!v || json_is_null(v))
        return true;
    if (!json_is_string(v))
        return bad_type(err, "model", "a string", v);
    if (strcmp(json_string_value(v), model_id) != 0) {
        srv_error_set(err, 404, "invalid_request_error", "model_not_found", "model",
                      "The model '%s' does not exist; this server serves '%s' (see /v1/models)",
                      json_string_value(v), model_id);
        return false;
    }
    return true;
}

static bool parse_stops(json_t *body, srv_request *r, srv_api_error *err)
{
    json_t *v = json_object_get(body, "stop");
    if (!v || json_is_null(v))
        return true;
    json_t *list = v;
    if (json_is_string(v)) {
        list = json_array();
        json_array_append(list, v);
    } else if (!json_is_array(v)) {
        return bad_type(err, "stop", "a string or an array of strings", v);
    } else {
        json_incref(list);
    }
    bool ok = true;
    size_t n = json_array_size(list);
    if (n > MAX_STOPS) {
        srv_error_set(err, 400, "invalid_request_error", "invalid_value", "stop",
                      "'stop' holds %zu sequences; at most %d are allowed", n, MAX_STOPS);
        ok = false;
    }
    r->stops = ok && n ? calloc(n, sizeof *r->stops) : NULL;
    for (size_t i = 0; ok && i < n; i++) {
        json_t *s = json_array_get(list, i);
        if (!json_is_string(s)) {
            ok = bad_type(err, "stop", "a string or an array of strings", s);
            break;
        }
        if (json_string_length(s) == 0)
            continue; /* an empty stop string would end every generation at once */
        r->stops[r->n_stops] = strdup(json_string_value(s));
        if (!r->stops[r->n_stops]) {
            srv_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
            ok = false;
            break;
        }
        r->n_stops++;
    }
    json_decref(list);
    return ok;
}

/* Tokenizes a completion prompt into r->prompt. */
static bool tokenize_prompt(const edgellm_model *model, const char *text, size_t len, int flags,
                            int n_ctx, const char *param, srv_request *r, srv_api_error *err)
{
    int32_t n = 0;
    edgellm_status st = edgellm_tokenize(model, text, len, flags, NULL, 0, &n);
    if (st != EDGELLM_OK && st != EDGELLM_ERR_BUFFER_TOO_SMALL) {
        srv_error_set(err, 400, "invalid_request_error", NULL, param, "cannot tokenize: %s",
                      edgellm_last_error());
        return false;
    }
    if (n == 0) {
        srv_error_set(err, 400, "invalid_request_error", "invalid_value", param,
                      "the prompt is empty and the model adds no BOS token");
        return false;
    }
    if (n >= n_ctx) {
        srv_error_set(err, 400, "invalid_request_error", "context_length_exceeded", param,
                      "the prompt is %d tokens but the context holds %d (and at least one "
                      "generated token); shorten it",
                      n, n_ctx);
        return false;
    }
    r->prompt = malloc((size_t)n * sizeof *r->prompt);
    if (!r->prompt) {
        srv_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
        return false;
    }
    edgellm_tokenize(model, text, len, flags, r->prompt, n, &n);
    r->n_prompt = n;
    return true;
}

/* Tokenizes a rendered chat prompt into r->prompt (see ellm_chat_tokenize). */
static bool chat_tokens(const edgellm_model *model, const char *text, const ellm_chat_span *spans,
                        size_t n_spans, int n_ctx, srv_request *r, srv_api_error *err)
{
    edgellm_token *ids = NULL;
    int32_t n = 0;
    if (ellm_chat_tokenize(model, text, spans, n_spans, true, &ids, &n) != EDGELLM_OK) {
        srv_error_set(err, 400, "invalid_request_error", NULL, "messages", "cannot tokenize: %s",
                      edgellm_last_error());
        return false;
    }
    if (n == 0 || n >= n_ctx) {
        free(ids);
        if (n == 0)
            srv_error_set(err, 400, "invalid_request_error", "invalid_value", "messages",
                          "the prompt is empty and the model adds no BOS token");
        else
            srv_error_set(err, 400, "invalid_request_error", "context_length_exceeded",
                          "messages",
                          "the prompt is %d tokens but the context holds %d (and at least one "
                          "generated token); shorten it",
                          n, n_ctx);
        return false;
    }
    r->prompt = ids;
    r->n_prompt = n;
    return true;
}

/* A message's content: a string, null, or an array of {"type": "text", "text": ...} parts. */
static char *message_content(json_t *content, size_t index, srv_api_error *err)
{
    if (!content || json_is_null(content))
        return strdup("");
    if (json_is_string(content))
        return strndup(json_string_value(content), json_string_length(content));
    char field[64];
    snprintf(field, sizeof field, "messages[%zu].content", index);
    if (!json_is_array(content)) {
        bad_type(err, field, "a string or an array of content parts", content);
        return NULL;
    }
    size_t total = 0, i;
    json_t *part;
    json_array_foreach(content, i, part) {
        json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
        if (!json_is_string(type) || strcmp(json_string_value(type), "text") != 0 ||
            !json_is_string(text)) {
            srv_error_set(err, 400, "invalid_request_error", "invalid_value", field,
                          "content part %zu is not a text part ({\"type\": \"text\", \"text\": "
                          "...}); this model reads text only",
                          i);
            return NULL;
        }
        total += json_string_length(text);
    }
    char *out = malloc(total + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    json_array_foreach(content, i, part) {
        json_t *text = json_object_get(part, "text");
        memcpy(out + o, json_string_value(text), json_string_length(text));
        o += json_string_length(text);
    }
    out[o] = '\0';
    return out;
}

static bool chat_prompt(json_t *body, const edgellm_model *model, int n_ctx, srv_request *r,
                        srv_api_error *err)
{
    json_t *msgs = json_object_get(body, "messages");
    if (!msgs) {
        srv_error_set(err, 400, "invalid_request_error", "missing_required_parameter", "messages",
                      "'messages' is required");
        return false;
    }
    if (!json_is_array(msgs))
        return bad_type(err, "messages", "an array of messages", msgs);
    size_t n = json_array_size(msgs);
    if (n == 0 || n > MAX_MESSAGES) {
        srv_error_set(err, 400, "invalid_request_error", "invalid_value", "messages",
                      "'messages' must hold 1 to %d messages, got %zu", MAX_MESSAGES, n);
        return false;
    }
    ellm_chat_message *list = calloc(n, sizeof *list);
    char **contents = calloc(n, sizeof *contents);
    bool ok = list && contents;
    if (!ok)
        srv_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
    for (size_t i = 0; ok && i < n; i++) {
        json_t *m = json_array_get(msgs, i);
        char field[64];
        snprintf(field, sizeof field, "messages[%zu]", i);
        if (!json_is_object(m)) {
            ok = bad_type(err, field, "an object", m);
            break;
        }
        json_t *role = json_object_get(m, "role");
        snprintf(field, sizeof field, "messages[%zu].role", i);
        if (!json_is_string(role)) {
            ok = role ? bad_type(err, field, "a string", role) : false;
            if (!role)
                srv_error_set(err, 400, "invalid_request_error", "missing_required_parameter",
                              field, "'%s' is required", field);
            break;
        }
        const char *rs = json_string_value(role);
        if (!strcmp(rs, "developer"))
            rs = "system"; /* the newer name for the same thing */
        if (strcmp(rs, "system") && strcmp(rs, "user") && strcmp(rs, "assistant")) {
            srv_error_set(err, 400, "invalid_request_error", "invalid_value", field,
                          "role '%s' is not supported (use system, user or assistant)", rs);
            ok = false;
            break;
        }
        contents[i] = message_content(json_object_get(m, "content"), i, err);
        if (!contents[i]) {
            ok = false;
            break;
        }
        list[i].role = rs;
        list[i].content = contents[i];
    }
    char *text = NULL;
    ellm_chat_span *spans = NULL;
    size_t n_spans = 0;
    if (ok) {
        bool recognised = true;
        text = ellm_chat_format_model_spans(model, list, n, true, &recognised, &spans, &n_spans);
        if (!text) {
            srv_error_set(err, 400, "invalid_request_error", "invalid_value", "messages",
                          "%s",
                          edgellm_last_error());
            ok = false;
        }
    }
    if (ok) {
        /* The template's markup becomes control tokens, the messages' text stays text (a
         * client cannot inject "<|im_end|>"); BOS is added unless the template wrote it. */
        ok = chat_tokens(model, text, spans, n_spans, n_ctx, r, err);
    }
    free(spans);
    if (ok) {
        /* A vocabulary without the family's end-of-turn token emits it as text: stop there. */
        const char *const *extra = ellm_chat_stop_strings(ellm_chat_detect_model(model, NULL));
        for (size_t k = 0; extra && extra[k] && ok; k++) {
            char **grown = realloc(r->stops, (size_t)(r->n_stops + 1) * sizeof *grown);
            if (!grown || !(grown[r->n_stops] = strdup(extra[k]))) {
                if (grown)
                    r->stops = grown;
                srv_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
                ok = false;
                break;
            }
            r->stops = grown;
            r->n_stops++;
        }
    }
    free(text);
    for (size_t i = 0; contents && i < n; i++)
        free(contents[i]);
    free(contents);
    free(list);
    return ok;
}

static bool completion_prompt(json_t *body, const edgellm_model *model, int n_ctx,
                              srv_request *r, srv_api_error *err)
{
    json_t *p = json_object_get(body, "prompt");
    if (!p) {
        srv_error_set(err, 400, "invalid_request_error", "missing_required_parameter", "prompt",
                      "'prompt' is required");
        return false;
    }
    if (json_is_array(p) && json_array_size(p) == 1 && json_is_string(json_array_get(p, 0)))
        p = json_array_get(p, 0);
    int flags = edgellm_add_bos_default(model) ? EDGELLM_TOKENIZE_ADD_BOS : 0;
    if (json_is_string(p))
        return tokenize_prompt(model, json_string_value(p), json_string_length(p), flags, n_ctx,
                               "prompt", r, err);
    if (!json_is_array(p) || json_array_size(p) == 0)
        return bad_type(err, "prompt", "a string or an array of token ids", p);
    size_t n = json_array_size(p);
    if ((long long)n >= n_ctx) {
        srv_error_set(err, 400, "invalid_request_error", "context_length_exceeded", "prompt",
                      "the prompt is %zu tokens but the context holds %d", n, n_ctx);
        return false;
    }
    r->prompt = malloc(n * sizeof *r->prompt);
    if (!r->prompt) {
        srv_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
        return false;
    }
    int32_t n_vocab = edgellm_n_vocab(model);
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get(p, i);
        if (!json_is_integer(t) || json_integer_value(t) < 0 ||
            json_integer_value(t) >= n_vocab) {
            srv_error_set(err, 400, "invalid_request_error", "invalid_value", "prompt",
                          "prompt[%zu] is not a token id (an integer from 0 to %d); only one "
                          "prompt per request is supported",
                          i, n_vocab - 1);
            return false;
        }
        r->prompt[i] = (edgellm_token)json_integer_value(t);
    }
    r->n_prompt = (int32_t)n;
    return true;
}

bool srv_parse_completion(json_t *body, srv_endpoint_kind kind, const edgellm_model *model,
                          const char *model_id, int n_ctx, srv_request *r,
                          srv_completion_opts *o, srv_api_error *err)
{
    memset(o, 0, sizeof *o);
    o->kind = kind;
    if (!json_is_object(body))
        return bad_type(err, "body", "a JSON object", body);
    if (!srv_check_model(body, model_id, err))
        return false;
    long long n = 1;
    if (!get_int(body, "n", 1, 1000, &n, err))
        return false;
    if (n != 1) {
        srv_error_set(err, 400, "invalid_request_error", "invalid_value", "n",
                      "only n=1 is supported; send separate requests for more choices");
        return false;
    }
    json_t *user = json_object_get(body, "user");
    if (user && !json_is_null(user) && !json_is_string(user))
        return bad_type(err, "user", "a string", user);
    long long max_tokens = 0;
    const char *max_field = json_object_get(body, "max_completion_tokens") ? "max_completion_tokens"
                                                                           : "max_tokens";
    if (!get_int(body, max_field, 1, 1 << 30, &max_tokens, err))
        return false;
    r->max_tokens = (int32_t)max_tokens; /* 0: until the context is full */

    /* OpenAI's defaults: temperature 1, top_p 1, no penalties. */
    edgellm_sampler_params *sp = &r->sampling;
    *sp = edgellm_sampler_default_params();
    double temperature = 1.0, top_p = 1.0, presence = 0, frequency = 0;
    if (!get_number(body, "temperature", 0, 2, &temperature, err) ||
        !get_number(body, "top_p", 0, 1, &top_p, err) ||
        !get_number(body, "presence_penalty", -2, 2, &presence, err) ||
        !get_number(body, "frequency_penalty", -2, 2, &frequency, err))
        return false;
    if (top_p > 0 && (float)top_p == 0) {
        srv_error_set(err, 400, "invalid_request_error", "invalid_value", "top_p",
                      "'top_p' %g is below the smallest positive float (1.4e-45); send 0 for "
                      "only the most likely token, or a larger value",
                      top_p);
        return false;
    }
    if (top_p == 0) {
        temperature = 0; /* only the most likely token remains */
        top_p = 1;
    }
    sp->temperature = (float)temperature;
    sp->top_k = 0;
    sp->top_p = (float)top_p;
    sp->min_p = 0;
    sp->repeat_penalty = 1;
    sp->repeat_last_n = -1;
    sp->presence_penalty = (float)presence;
    sp->frequency_penalty = (float)frequency;
    long long seed = -1;
    json_t *seed_v = json_object_get(body, "seed");
    if (seed_v && !json_is_null(seed_v) && !json_is_integer(seed_v))
        return bad_type(err, "seed", "an integer", seed_v);
    if (seed_v && json_is_integer(seed_v))
        seed = json_integer_value(seed_v);
    if (seed_v && json_is_integer(seed_v))
        sp->seed = (uint64_t)seed;
    else {
        /* No seed: a fresh one per request. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        sp->seed = (uint64_t)ts.tv_nsec * 6364136223846793005ULL ^ (uint64_t)ts.tv_sec ^
                   (uint64_t)(uintptr_t)r;
    }
    /* Whatever the sampler would refuse is the request's fault: say so now, not mid-run. */
    edgellm_sampler *probe = NULL;
    if (edgellm_sampler_create(sp, edgellm_n_vocab(model), &probe) != EDGELLM_OK) {
        srv_error_set(err, 400, "invalid_request_error", "invalid_value", NULL, "%s",
                      edgellm_last_error());
        return false;
    }
    edgellm_sampler_free(probe);
    if (!parse_stops(body, r, err) || !get_bool(body, "stream", &o->stream, err))
        return false;
    json_t *so = json_object_get(body, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so))
            return bad_type(err, "stream_options", "an object", so);
        if (!get_bool(so, "include_usage", &o->include_usage, err))
            return false;
    }
    if (kind == SRV_CHAT) {
        long long top = 0;
        if (!get_bool(body, "logprobs", &o->logprobs, err) ||
            !get_int(body, "top_logprobs", 0, SRV_MAX_TOP_LOGPROBS, &top, err))
            return false;
        if (top > 0 && !o->logprobs) {
            srv_error_set(err, 400, "invalid_request_error", "invalid_value", "top_logprobs",
                          "'top_logprobs' needs 'logprobs': true");
            return false;
        }
        o->top_logprobs = (int)top;
    } else {
        /* Completions: logprobs is the number of alternatives (0..5). */
        long long lp = -1;
        if (!get_int(body, "logprobs", 0, 5, &lp, err))
            return false;
        o->logprobs = lp >= 0;
        o->top_logprobs = lp > 0 ? (int)lp : 0;
    }
    r->logprobs = o->logprobs;
    r->top_logprobs = o->top_logprobs;
    return kind == SRV_CHAT ? chat_prompt(body, model, n_ctx, r, err)
                            : completion_prompt(body, model, n_ctx, r, err);
}

const char *srv_finish_reason(srv_finish f)
{
    switch (f) {
    case SRV_FINISH_STOP: return "stop";
    case SRV_FINISH_LENGTH: return "length";
    default: return NULL;
    }
}

json_t *srv_usage_json(int32_t n_prompt, int32_t n_cached, int32_t n_generated)
{
    return json_pack("{s:i,s:i,s:i,s:{s:i}}", "prompt_tokens", n_prompt, "completion_tokens",
                     n_generated, "total_tokens", n_prompt + n_generated,
                     "prompt_tokens_details", "cached_tokens", n_cached);
}

static json_t *token_bytes(const char *piece, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_integer((unsigned char)piece[i]));
    return a;
}

static size_t piece_of(const edgellm_model *model, edgellm_token t, char *buf, size_t cap)
{
    size_t n = 0;
    if (edgellm_token_to_piece(model, t, buf, cap, &n) != EDGELLM_OK)
        n = 0;
    return n;
}

/* JSON has no -inf (jansson refuses it, which would drop the entry and leave the arrays of a
 * response with different lengths): OpenAI's -9999 stands for "practically impossible". */
static double logprob_value(float logprob)
{
    return logprob > -9999.0f ? (double)logprob : -9999.0;
}

/* Chat: {"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}]} */
static json_t *chat_logprobs(const edgellm_model *model, const srv_event *ev, size_t n)
{
    json_t *content = json_array();
    char piece[256];
    for (size_t i = 0; i < n; i++) {
        if (ev[i].token < 0)
            continue;
        size_t len = piece_of(model, ev[i].token, piece, sizeof piece);
        json_t *top = json_array();
        for (int k = 0; k < ev[i].n_top; k++) {
            size_t tl = piece_of(model, ev[i].top[k].token, piece, sizeof piece);
            json_array_append_new(top, json_pack("{s:o,s:f,s:o}", "token", lossy_string(piece, tl),
                                                 "logprob", logprob_value(ev[i].top[k].logprob),
                                                 "bytes", token_bytes(piece, tl)));
        }
        len = piece_of(model, ev[i].token, piece, sizeof piece);
        json_array_append_new(content, json_pack("{s:o,s:f,s:o,s:o}", "token",
                                                 lossy_string(piece, len), "logprob",
                                                 logprob_value(ev[i].logprob), "bytes",
                                                 token_bytes(piece, len), "top_logprobs", top));
    }
    return json_pack("{s:o}", "content", content);
}

/* Completions: {"tokens", "token_logprobs", "top_logprobs": [{token: logprob}], "text_offset"} */
static json_t *completion_logprobs(const edgellm_model *model, const srv_event *ev, size_t n,
                                   size_t offset)
{
    json_t *tokens = json_array(), *lps = json_array(), *tops = json_array(),
           *offsets = json_array();
    char piece[256];
    size_t at = offset;
    for (size_t i = 0; i < n; i++) {
        if (ev[i].token >= 0) {
            size_t len = piece_of(model, ev[i].token, piece, sizeof piece);
            json_array_append_new(tokens, lossy_string(piece, len));
            json_array_append_new(lps, json_real(logprob_value(ev[i].logprob)));
            json_t *top = json_object();
            for (int k = 0; k < ev[i].n_top; k++) {
                size_t tl = piece_of(model, ev[i].top[k].token, piece, sizeof piece);
                json_t *key = lossy_string(piece, tl);
                json_object_set_new(top, json_string_value(key),
                                    json_real(logprob_value(ev[i].top[k].logprob)));
                json_decref(key);
            }
            json_array_append_new(tops, top);
            json_array_append_new(offsets, json_integer((json_int_t)at));
        }
        at += ev[i].len;
    }
    return json_pack("{s:o,s:o,s:o,s:o}", "tokens", tokens, "token_logprobs", lps, "top_logprobs",
                     tops, "text_offset", offsets);
}

static json_t *joined_text(const srv_event *ev, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += ev[i].len;
    char *buf = malloc(total + 1);
    if (!buf)
        return json_string("");
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(buf + o, ev[i].text, ev[i].len);
        o += ev[i].len;
    }
    json_t *j = lossy_string(buf, o);
    free(buf);
    return j;
}

static json_t *finish_json(srv_finish f)
{
    const char *r = srv_finish_reason(f);
    return r ? json_string(r) : json_null();
}

json_t *srv_completion_response(const srv_completion_opts *o, const edgellm_model *model,
                                const char *id, const char *model_id, long long created,
                                const srv_event *ev, size_t n, srv_finish finish,
                                int32_t n_prompt, int32_t n_cached, int32_t n_generated)
{
    json_t *choice;
    if (o->kind == SRV_CHAT)
        choice = json_pack("{s:i,s:{s:s,s:o},s:o,s:o}", "index", 0, "message", "role",
                           "assistant", "content", joined_text(ev, n), "logprobs",
                           o->logprobs ? chat_logprobs(model, ev, n) : json_null(),
                           "finish_reason", finish_json(finish));
    else
        choice = json_pack("{s:o,s:i,s:o,s:o}", "text", joined_text(ev, n), "index", 0,
                           "logprobs",
                           o->logprobs ? completion_logprobs(model, ev, n, 0) : json_null(),
                           "finish_reason", finish_json(finish));
    return json_pack("{s:s,s:s,s:I,s:s,s:s,s:[o],s:o}", "id", id, "object",
                     o->kind == SRV_CHAT ? "chat.completion" : "text_completion", "created",
                     (json_int_t)created, "model", model_id, "system_fingerprint",
                     "edgellm-" EDGELLM_SERVER_VERSION, "choices", choice, "usage",
                     srv_usage_json(n_prompt, n_cached, n_generated));
}

json_t *srv_completion_chunk(const srv_completion_opts *o, const edgellm_model *model,
                             const char *id, const char *model_id, long long created,
                             const srv_event *ev, size_t n, bool first, srv_finish finish)
{
    json_t *choice;
    if (o->kind == SRV_CHAT) {
        json_t *delta = json_object();
        if (first)
            json_object_set_new(delta, "role", json_string("assistant"));
        if (n > 0 || first)
            json_object_set_new(delta, "content", joined_text(ev, n));
        choice = json_pack("{s:i,s:o,s:o,s:o}", "index", 0, "delta", delta, "logprobs",
                           o->logprobs && n > 0 ? chat_logprobs(model, ev, n) : json_null(),
                           "finish_reason", finish_json(finish));
    } else {
        choice = json_pack("{s:o,s:i,s:o,s:o}", "text", joined_text(ev, n), "index", 0,
                           "logprobs",
                           o->logprobs && n > 0 ? completion_logprobs(model, ev, n, 0)
                                                : json_null(),
                           "finish_reason", finish_json(finish));
    }
    return json_pack("{s:s,s:s,s:I,s:s,s:s,s:[o]}", "id", id, "object",
                     o->kind == SRV_CHAT ? "chat.completion.chunk" : "text_completion", "created",
                     (json_int_t)created, "model", model_id, "system_fingerprint",
                     "edgellm-" EDGELLM_SERVER_VERSION, "choices", choice);
}
