#define _POSIX_C_SOURCE 200809L
/* The OpenAI API's JSON: reading chat and completion requests into generation requests, and
 * writing responses, streamed chunks, usage and errors in the shapes its clients expect. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "chat/chat.h"
#include "core/utf8.h"
#include "server/server_internal.h"
#include "structured/structured.h"

#define MAX_STOPS 4
#define MAX_MESSAGES 1024

void ellm_srv_error_set(srv_api_error *e, int status, const char *type, const char *code,
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
    size_t o = ellm_utf8_sanitize(s, n, out);
    j = json_stringn(out, o);
    free(out);
    return j ? j : json_string("");
}

json_t *ellm_srv_error_json(const srv_api_error *e)
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
    ellm_srv_error_set(err, 400, "invalid_request_error", "invalid_type", field,
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
        ellm_srv_error_set(err, 400, "invalid_request_error", "invalid_value", field,
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
        ellm_srv_error_set(err, 400, "invalid_request_error", "invalid_value", field,
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

bool ellm_srv_check_model(json_t *body, const char *model_id, srv_api_error *err)
{
    json_t *v = json_object_get(body, "model");
    if (!v || json_is_null(v))
        return true;
    if (!json_is_string(v))
        return bad_type(err, "model", "a string", v);
    if (strcmp(json_string_value(v), model_id) != 0) {
        ellm_srv_error_set(
            err, 404, "invalid_request_error", "model_not_found", "model",
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
        ellm_srv_error_set(err, 400, "invalid_request_error", "invalid_value", "stop",
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
            ellm_srv_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
            ok = false;
            break;
        }
        r->n_stops++;
    }
    json_decref(list);
    return ok;
}

/* "logit_bias": {"token id": bias in [-100, 100]}, added to the logits before sampling. */
/* −100 bans a token (OpenAI's documented meaning). Banning all of them leaves the sampler
 * nothing to pick, and since the same amount is added to every logit it would pick exactly as
 * without a bias: refused unless nothing is generated (echo with max_tokens 0). */
static bool bans_every_token(const srv_request *r, int32_t n_vocab, srv_api_error *err)
{
    if (r->max_tokens == 0 || r->n_bias < n_vocab)
        return false;
    bool *banned = calloc((size_t)n_vocab, sizeof *banned);
    int32_t n_banned = 0;
    for (int i = 0; banned && i < r->n_bias; i++) {
        if (r->bias[i].bias <= -100 && !banned[r->bias[i].token]) {
            banned[r->bias[i].token] = true;
            n_banned++;
        }
    }
    free(banned);
    if (n_banned < n_vocab)
        return false;
    ellm_srv_error_set(err, 400, "invalid_request_error", "invalid_value", "logit_bias",
                       "'logit_bias' bans every token of the vocabulary (all %d at -100), so no "
                       "token can be generated; leave at least one token out",
                       n_vocab);
    return true;
}

static bool parse_logit_bias(json_t *body, const edgellm_model *model, srv_request *r,
                             srv_api_error *err)
{
    json_t *v = json_object_get(body, "logit_bias");
    if (!v || json_is_null(v))
        return true;
    if (!json_is_object(v))
        return bad_type(err, "logit_bias", "an object mapping token ids to biases", v);
    size_t n = json_object_size(v);
    if (n == 0)
        return true;
    int32_t n_vocab = edgellm_n_vocab(model);
    if (n > (size_t)n_vocab) {
        ellm_srv_error_set(err, 400, "invalid_request_error", "invalid_value", "logit_bias",
                           "'logit_bias' holds %zu entries but the vocabulary has %d tokens", n,
                           n_vocab);
        return false;
    }
    r->bias = calloc(n, sizeof *r->bias);
    if (!r->bias) {
        ellm_srv_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
        return false;
    }
    const char *key;
    json_t *value;
    json_object_foreach(v, key, value)
    {
        char *end = NULL;
        long id = strtol(key, &end, 10);
        if (key[0] < '0' || key[0] > '9' || *end != '\0' || id >= n_vocab) {
            ellm_srv_error_set(
                err, 400, "invalid_request_error", "invalid_value", "logit_bias",
                "logit_bias key '%.40s' is not a token id (a decimal integer from 0 to "
                "%d)",
                key, n_vocab - 1);
            return false;
        }
        double bias = json_is_number(value) ? json_number_value(value) : NAN;
        if (!(bias >= -100 && bias <= 100)) {
            ellm_srv_error_set(err, 400, "invalid_request_error", "invalid_value", "logit_bias",
                               "logit_bias['%s'] must be a number from -100 to 100", key);
            return false;
        }
        r->bias[r->n_bias++] = (srv_logit_bias){(edgellm_token)id, (float)bias};
    }
    return !bans_every_token(r, n_vocab, err);
}

/* "echo" (completions only): the prompt's tokens lead the choice; with max_tokens 0 nothing is
 * generated, which is how a client scores a text (its prompt logprobs). */
static bool parse_echo(json_t *body, srv_endpoint_kind kind, long long max_tokens, srv_request *r,
                       srv_api_error *err)
{
    if (kind == SRV_COMPLETION && !get_bool(body, "echo", &r->echo, err))
        return false;
    if (max_tokens == 0 && !r->echo) {
        ellm_srv_error_set(err, 400, "invalid_request_error", "invalid_value", "max_tokens",
                           "'max_tokens' is 0: that only makes sense with 'echo': true on "
                           "/v1/completions (to score the prompt); ask for at least 1 token");
        return false;
    }
    return true;
}

/* Whether a completion prompt of n tokens fits the context. A prompt that is only scored (echo,
 * max_tokens 0) may fill it; any other needs room for at least one generated token. */
static bool prompt_fits(size_t n, int n_ctx, const srv_request *r, const char *param,
                        srv_api_error *err)
{
    bool generates = !(r->echo && r->max_tokens == 0);
    if (n + generates <= (size_t)n_ctx)
        return true;
    if (generates)
        ellm_srv_error_set(err, 400, "invalid_request_error", "context_length_exceeded", param,
                           "the prompt is %zu tokens but the context holds %d (and at least one "
                           "generated token); shorten it",
                           n, n_ctx);
    else
        ellm_srv_error_set(err, 400, "invalid_request_error", "context_length_exceeded", param,
                           "the prompt is %zu tokens but the context holds %d; shorten it", n,
                           n_ctx);
    return false;
}

/* Tokenizes a completion prompt into r->prompt. */
static bool tokenize_prompt(const edgellm_model *model, const char *text, size_t len, int flags,
                            int n_ctx, const char *param, srv_request *r, srv_api_error *err)
{
    int32_t n = 0;
    edgellm_status st = edgellm_tokenize(model, text, len, flags, NULL, 0, &n);
    if (st != EDGELLM_OK && st != EDGELLM_ERR_BUFFER_TOO_SMALL) {
        ellm_srv_error_set(err, 400, "invalid_request_error", NULL, param, "cannot tokenize: %s",
                           edgellm_last_error());
        return false;
    }
    if (n == 0) {
        ellm_srv_error_set(err, 400, "invalid_request_error", "invalid_value", param,
                           "the prompt is empty and the model adds no BOS token");
        return false;
    }
    if (!prompt_fits(n, n_ctx, r, param, err))
        return false;
    r->prompt = malloc((size_t)n * sizeof *r->prompt);
    if (!r->prompt) {
        ellm_srv_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
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
        ellm_srv_error_set(err, 400, "invalid_request_error", NULL, "messages",
                           "cannot tokenize: %s", edgellm_last_error());
        return false;
    }
    if (n == 0 || n >= n_ctx) {
        free(ids);
        if (n == 0)
            ellm_srv_error_set(err, 400, "invalid_request_error", "invalid_value", "messages",
                               "the prompt is empty and the model adds no BOS token");
        else
            ellm_srv_error_set(err, 400, "invalid_request_error", "context_length_exceeded",
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
    json_array_foreach(content, i, part)
    {
        json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
        if (!json_is_string(type) || strcmp(json_string_value(type), "text") != 0 ||
            !json_is_string(text)) {
            ellm_srv_error_set(
                err, 400, "invalid_request_error", "invalid_value", field,
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
    json_array_foreach(content, i, part)
    {
        json_t *text = json_object_get(part, "text");
        memcpy(out + o, json_string_value(text), json_string_length(text));
        o += json_string_length(text);
    }
    out[o] = '\0';
    return out;
}

/* The tool fields of message i (borrowed from the request, arguments parsed into owned values
 * listed in *args for the caller to release): an assistant's "tool_calls", a tool result's
 * "tool_call_id". */
static bool message_tool_fields(json_t *m, size_t i, const char *role, ellm_chat_message_tools *mt,
                                ellm_chat_tool_call **calls, json_t *args, srv_api_error *err)
{
    char field[96];
    json_t *id = json_object_get(m, "tool_call_id");
    if (!strcmp(role, "tool")) {
        snprintf(field, sizeof field, "messages[%zu].tool_call_id", i);
        if (!json_is_string(id) || json_string_length(id) == 0) {
            ellm_srv_error_set(
                err, 400, "invalid_request_error", "missing_required_parameter", field,
                "messages[%zu] has role 'tool' but no 'tool_call_id': give the id of "
                "the assistant's tool call it answers",
                i);
            return false;
        }
        mt->tool_call_id = json_string_value(id);
    }
    json_t *list = json_object_get(m, "tool_calls");
    if (!list || json_is_null(list))
        return true;
    snprintf(field, sizeof field, "messages[%zu].tool_calls", i);
    if (strcmp(role, "assistant") != 0) {
        ellm_srv_error_set(err, 400, "invalid_request_error", "invalid_value", field,
                           "only assistant messages carry 'tool_calls' (messages[%zu] is '%s')", i,
                           role);
        return false;
    }
    if (!json_is_array(list))
        return bad_type(err, field, "an array of tool calls", list);
    size_t n = json_array_size(list);
    if (n == 0)
        return true;
    *calls = calloc(n, sizeof **calls);
    if (!*calls) {
        ellm_srv_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
        return false;
    }
    for (size_t c = 0; c < n; c++) {
        json_t *call = json_array_get(list, c);
        json_t *fn = json_object_get(call, "function");
        json_t *name = json_object_get(fn, "name");
        json_t *arguments = json_object_get(fn, "arguments");
        json_t *call_id = json_object_get(call, "id");
        snprintf(field, sizeof field, "messages[%zu].tool_calls[%zu]", i, c);
        if (!json_is_object(call) || !json_is_object(fn) || !json_is_string(name) ||
            !(json_is_string(arguments) || json_is_object(arguments)) ||
            (call_id && !json_is_string(call_id))) {
            ellm_srv_error_set(err, 400, "invalid_request_error", "invalid_value", field,
                               "%s must be {\"id\": string, \"type\": \"function\", \"function\": "
                               "{\"name\": string, \"arguments\": JSON text}}",
                               field);
            return false;
        }
        json_t *value;
        if (json_is_string(arguments)) {
            json_error_t je;
            value = json_loadb(json_string_value(arguments), json_string_length(arguments),
                               JSON_DECODE_ANY, &je);
            if (!value) {
                ellm_srv_error_set(
                    err, 400, "invalid_request_error", "invalid_value", field,
                    "%s.function.arguments is not JSON text (%s); send the arguments "
                    "object as a JSON string, as the model's call returned it",
                    field, je.text);
                return false;
            }
        } else {
            value = json_incref(arguments);
        }
        json_array_append_new(args, value);
        (*calls)[c] = (ellm_chat_tool_call){json_string_value(call_id), json_string_value(name),
                                            value};
    }
    mt->calls = *calls;
    mt->n_calls = n;
    return true;
}

static bool chat_prompt(json_t *body, const edgellm_model *model, int n_ctx, json_t *tools,
                        srv_request *r, srv_api_error *err)
{
    json_t *msgs = json_object_get(body, "messages");
    if (!msgs) {
        ellm_srv_error_set(err, 400, "invalid_request_error", "missing_required_parameter",
                           "messages", "'messages' is required");
        return false;
    }
    if (!json_is_array(msgs))
        return bad_type(err, "messages", "an array of messages", msgs);
    size_t n = json_array_size(msgs);
    if (n == 0 || n > MAX_MESSAGES) {
        ellm_srv_error_set(err, 400, "invalid_request_error", "invalid_value", "messages",
                           "'messages' must hold 1 to %d messages, got %zu", MAX_MESSAGES, n);
        return false;
    }
    ellm_chat_message *list = calloc(n, sizeof *list);
    char **contents = calloc(n, sizeof *contents);
    ellm_chat_message_tools *per_message = calloc(n, sizeof *per_message);
    ellm_chat_tool_call **calls = calloc(n, sizeof *calls);
    json_t *args = json_array();
    bool ok = list && contents && per_message && calls && args;
    if (!ok)
        ellm_srv_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
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
                ellm_srv_error_set(err, 400, "invalid_request_error", "missing_required_parameter",
                                   field, "'%s' is required", field);
            break;
        }
        const char *rs = json_string_value(role);
        if (!strcmp(rs, "developer"))
            rs = "system"; /* the newer name for the same thing */
        if (strcmp(rs, "system") && strcmp(rs, "user") && strcmp(rs, "assistant") &&
            strcmp(rs, "tool")) {
            ellm_srv_error_set(err, 400, "invalid_request_error", "invalid_value", field,
                               "role '%s' is not supported (use system, user, assistant or tool)",
                               rs);
            ok = false;
            break;
        }
        if (!message_tool_fields(m, i, rs, &per_message[i], &calls[i], args, err)) {
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
        ellm_chat_tools chat_tools = {tools, per_message};
        text = ellm_chat_format_model_tools(model, list, n, &chat_tools, true, &recognised, &spans,
                                            &n_spans);
        if (!text) {
            ellm_srv_error_set(err, 400, "invalid_request_error", "invalid_value", "messages", "%s",
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
                ellm_srv_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
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
    for (size_t i = 0; calls && i < n; i++)
        free(calls[i]);
    free(calls);
    free(per_message);
    json_decref(args);
    return ok;
}

static bool completion_prompt(json_t *body, const edgellm_model *model, int n_ctx, srv_request *r,
                              srv_api_error *err)
{
    json_t *p = json_object_get(body, "prompt");
    if (!p) {
        ellm_srv_error_set(err, 400, "invalid_request_error", "missing_required_parameter",
                           "prompt", "'prompt' is required");
        return false;
    }
    /* A list of one prompt (text or token ids) is that prompt. */
    if (json_is_array(p) && json_array_size(p) == 1 &&
        (json_is_string(json_array_get(p, 0)) || json_is_array(json_array_get(p, 0))))
        p = json_array_get(p, 0);
    if (json_is_array(p) && json_array_size(p) > 1 &&
        (json_is_string(json_array_get(p, 0)) || json_is_array(json_array_get(p, 0)))) {
        ellm_srv_error_set(err, 400, "invalid_request_error", "invalid_value", "prompt",
                           "'prompt' holds %zu prompts; this server takes one prompt per request "
                           "(send one request each, or use 'n' for several choices of one prompt)",
                           json_array_size(p));
        return false;
    }
    int flags = edgellm_add_bos_default(model) ? EDGELLM_TOKENIZE_ADD_BOS : 0;
    if (json_is_string(p))
        return tokenize_prompt(model, json_string_value(p), json_string_length(p), flags, n_ctx,
                               "prompt", r, err);
    if (!json_is_array(p))
        return bad_type(err, "prompt", "a string or an array of token ids", p);
    size_t n = json_array_size(p);
    if (n == 0) {
        ellm_srv_error_set(err, 400, "invalid_request_error", "invalid_value", "prompt",
                           "'prompt' is an empty array; send at least one token id, or a string "
                           "(\"\" for an empty prompt)");
        return false;
    }
    if (!prompt_fits(n, n_ctx, r, "prompt", err))
        return false;
    r->prompt = malloc(n * sizeof *r->prompt);
    if (!r->prompt) {
        ellm_srv_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
        return false;
    }
    int32_t n_vocab = edgellm_n_vocab(model);
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get(p, i);
        if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) >= n_vocab) {
            ellm_srv_error_set(err, 400, "invalid_request_error", "invalid_value", "prompt",
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

/* response_format ({"type": "text" | "json_object" | "json_schema"}) and the "grammar" extension
 * (GBNF text): compiled here, so a bad one is a 400 before anything is queued. */
static bool parse_constraint(json_t *body, const edgellm_model *model, srv_request *r,
                             srv_api_error *err)
{
    json_t *rf = json_object_get(body, "response_format");
    json_t *grammar = json_object_get(body, "grammar");
    char *text = NULL;
    bool wanted = false; /* a constraint was asked for: text NULL then means no memory */
    const char *field = "grammar";
    char why[512];
    if (grammar && !json_is_null(grammar)) {
        if (!json_is_string(grammar))
            return bad_type(err, "grammar", "a string of GBNF rules", grammar);
        text = strdup(json_string_value(grammar));
        wanted = true;
    }
    if (rf && !json_is_null(rf)) {
        if (!json_is_object(rf))
            return free(text), bad_type(err, "response_format", "an object", rf);
        json_t *type = json_object_get(rf, "type");
        const char *t = json_is_string(type) ? json_string_value(type) : "";
        field = "response_format";
        if (strcmp(t, "text") != 0 && text) {
            free(text);
            ellm_srv_error_set(err, 400, "invalid_request_error", "invalid_value", "grammar",
                               "give either 'grammar' or a JSON 'response_format', not both");
            return false;
        }
        if (strcmp(t, "json_object") == 0) {
            wanted = true;
            text = strdup(ellm_structured_json_object_grammar());
        } else if (strcmp(t, "json_schema") == 0) {
            json_t *js = json_object_get(rf, "json_schema");
            json_t *schema = json_is_object(js) ? json_object_get(js, "schema") : NULL;
            json_t *name = json_is_object(js) ? json_object_get(js, "name") : NULL;
            json_t *strict = json_is_object(js) ? json_object_get(js, "strict") : NULL;
            if (!json_is_object(js) || !schema || !json_is_string(name) ||
                (strict && !json_is_boolean(strict) && !json_is_null(strict))) {
                ellm_srv_error_set(err, 400, "invalid_request_error", "invalid_value",
                                   "response_format",
                                   "'response_format' of type json_schema needs 'json_schema': "
                                   "{\"name\": string, \"schema\": object, \"strict\": boolean}");
                return false;
            }
            text = ellm_structured_schema_to_grammar(schema, why, sizeof why);
            if (!text) {
                ellm_srv_error_set(err, 400, "invalid_request_error", "invalid_value",
                                   "response_format", "json_schema: %s", why);
                return false;
            }
        } else if (strcmp(t, "text") != 0) {
            ellm_srv_error_set(err, 400, "invalid_request_error", "invalid_value",
                               "response_format",
                               "'response_format' type must be text, json_object or json_schema");
            return false;
        }
    }
    if (!text) {
        if (wanted)
            ellm_srv_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
        return !wanted;
    }
    edgellm_status st = edgellm_grammar_compile(model, text, strlen(text), NULL, &r->grammar);
    free(text);
    if (st != EDGELLM_OK) {
        ellm_srv_error_set(err, st == EDGELLM_ERR_OUT_OF_MEMORY ? 500 : 400,
                           st == EDGELLM_ERR_OUT_OF_MEMORY ? "server_error"
                                                           : "invalid_request_error",
                           "invalid_value", field, "%s", edgellm_last_error());
        return false;
    }
    return true;
}

/* ---- tools ---- */

typedef enum tool_mode { TOOL_NONE, TOOL_AUTO, TOOL_REQUIRED, TOOL_NAMED } tool_mode;

/* OpenAI's rule for function names: 1 to 64 of a-z, A-Z, 0-9, '_' and '-'. */
static bool function_name_ok(const char *s, size_t n)
{
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* Checks "tools": a non-empty array of {"type": "function", "function": {"name", "description",
 * "parameters"}} with distinct names and parameters the schema compiler accepts. */
static bool check_tools(json_t *tools, srv_api_error *err)
{
    if (!json_is_array(tools))
        return bad_type(err, "tools", "an array of {\"type\": \"function\", \"function\": {...}}",
                        tools);
    size_t n = json_array_size(tools);
    if (n == 0 || n > 128) {
        ellm_srv_error_set(err, 400, "invalid_request_error", "invalid_value", "tools",
                           "'tools' must hold 1 to 128 functions, got %zu (leave it out for none)",
                           n);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get(tools, i);
        json_t *type = json_object_get(t, "type"), *fn = json_object_get(t, "function");
        if (!json_is_object(t) || !json_is_string(type) ||
            strcmp(json_string_value(type), "function") != 0 || !json_is_object(fn)) {
            ellm_srv_error_set(err, 400, "invalid_request_error", "invalid_value", "tools",
                               "tools[%zu] is not a function tool: each tool must be {\"type\": "
                               "\"function\", \"function\": {\"name\", \"description\", "
                               "\"parameters\"}}",
                               i);
            return false;
        }
        json_t *name = json_object_get(fn, "name"), *desc = json_object_get(fn, "description"),
               *params = json_object_get(fn, "parameters");
        if (!json_is_string(name) ||
            !function_name_ok(json_string_value(name), json_string_length(name))) {
            ellm_srv_error_set(
                err, 400, "invalid_request_error", "invalid_value", "tools",
                "tools[%zu].function.name must be 1 to 64 letters, digits, '_' or '-'", i);
            return false;
        }
        for (size_t k = 0; k < i; k++) {
            json_t *other = json_object_get(json_object_get(json_array_get(tools, k), "function"),
                                            "name");
            if (json_equal(other, name)) {
                ellm_srv_error_set(err, 400, "invalid_request_error", "invalid_value", "tools",
                                   "tools[%zu] and tools[%zu] are both named '%s': function names "
                                   "must be distinct",
                                   k, i, json_string_value(name));
                return false;
            }
        }
        if ((desc && !json_is_string(desc) && !json_is_null(desc)) ||
            (params && !json_is_object(params))) {
            ellm_srv_error_set(err, 400, "invalid_request_error", "invalid_type", "tools",
                               "tools[%zu].function: 'description' must be a string and "
                               "'parameters' a JSON Schema object",
                               i);
            return false;
        }
        if (params) {
            char why[512];
            char *g = ellm_structured_schema_to_grammar(params, why, sizeof why);
            if (!g) {
                ellm_srv_error_set(err, 400, "invalid_request_error", "invalid_value", "tools",
                                   "tools[%zu].function.parameters: %s", i, why);
                return false;
            }
            free(g);
        }
    }
    return true;
}

static json_t *find_tool(json_t *tools, const char *name)
{
    for (size_t i = 0; i < json_array_size(tools); i++) {
        json_t *fn = json_object_get(json_array_get(tools, i), "function");
        if (!strcmp(json_string_value(json_object_get(fn, "name")), name))
            return fn;
    }
    return NULL;
}

/* "tool_choice": "none", "auto", "required" or {"type": "function", "function": {"name"}}. */
static bool parse_tool_choice(json_t *body, json_t *tools, tool_mode *mode, const char **named,
                              srv_api_error *err)
{
    json_t *tc = json_object_get(body, "tool_choice");
    *mode = tools ? TOOL_AUTO : TOOL_NONE;
    *named = NULL;
    if (!tc || json_is_null(tc))
        return true;
    const char *want = json_string_value(tc);
    if (want && !strcmp(want, "none"))
        *mode = TOOL_NONE;
    else if (want && !strcmp(want, "auto"))
        *mode = tools ? TOOL_AUTO : TOOL_NONE;
    else if (want && !strcmp(want, "required"))
        *mode = TOOL_REQUIRED;
    else if (json_is_object(tc)) {
        json_t *name = json_object_get(json_object_get(tc, "function"), "name");
        if (!json_is_string(name)) {
            ellm_srv_error_set(
                err, 400, "invalid_request_error", "invalid_value", "tool_choice",
                "'tool_choice' object must be {\"type\": \"function\", \"function\": "
                "{\"name\": string}}");
            return false;
        }
        *mode = TOOL_NAMED;
        *named = json_string_value(name);
    } else {
        ellm_srv_error_set(err, 400, "invalid_request_error", "invalid_value", "tool_choice",
                           "'tool_choice' must be \"none\", \"auto\", \"required\" or {\"type\": "
                           "\"function\", \"function\": {\"name\": ...}}");
        return false;
    }
    if ((*mode == TOOL_REQUIRED || *mode == TOOL_NAMED) && !tools) {
        ellm_srv_error_set(err, 400, "invalid_request_error", "invalid_value", "tool_choice",
                           "'tool_choice' asks for a tool call but the request has no 'tools'");
        return false;
    }
    if (*mode == TOOL_NAMED && !find_tool(tools, *named)) {
        ellm_srv_error_set(err, 400, "invalid_request_error", "invalid_value", "tool_choice",
                           "'tool_choice' names the function '%.64s', which is not in 'tools'",
                           *named);
        return false;
    }
    return true;
}

/* The JSON Schema of one call object {"name": NAME, "<args_key>": arguments}; the parameters'
 * $defs/definitions move to the top (into defs), where their "#/$defs/..." references point. */
static json_t *call_schema(json_t *fn, const char *args_key, json_t *defs, srv_api_error *err)
{
    json_t *params = json_object_get(fn, "parameters");
    /* No parameters, or the empty schema: an empty parameter list, as OpenAI defines it (the
     * empty schema would admit any value, and a call's arguments are an object). */
    json_t *args = params && json_object_size(params) > 0
                       ? json_deep_copy(params)
                       : json_pack("{s:s,s:{},s:b}", "type", "object", "properties",
                                   "additionalProperties", 0);
    static const char *const def_keys[] = {"$defs", "definitions"};
    for (int k = 0; args && k < 2; k++) {
        json_t *local = json_object_get(args, def_keys[k]);
        const char *key;
        json_t *def;
        json_object_foreach(local, key, def)
        {
            json_t *into = json_object_get(defs, def_keys[k]);
            json_t *have = json_object_get(into, key);
            if (have && !json_equal(have, def)) {
                ellm_srv_error_set(err, 400, "invalid_request_error", "invalid_value", "tools",
                                   "two tools define '%s/%s' differently; give the definitions "
                                   "distinct names",
                                   def_keys[k], key);
                json_decref(args);
                return NULL;
            }
            json_object_set(into, key, def);
        }
        json_object_del(args, def_keys[k]);
    }
    json_t *props = json_pack("{s:{s:O}}", "name", "const", json_object_get(fn, "name"));
    if (!args || !props) {
        json_decref(args);
        json_decref(props);
        ellm_srv_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
        return NULL;
    }
    json_object_set_new(props, args_key, args);
    return json_pack("{s:s,s:o,s:[s,s],s:b}", "type", "object", "properties", props, "required",
                     "name", args_key, "additionalProperties", 0);
}

/* A GBNF literal of s. */
static void put_gbnf_literal(char **buf, size_t *len, const char *s)
{
    char *g = *buf;
    size_t n = *len;
    g[n++] = '"';
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            g[n++] = '\\', g[n++] = *s;
        else if (*s == '\n')
            g[n++] = '\\', g[n++] = 'n';
        else
            g[n++] = *s;
    }
    g[n++] = '"';
    g[n++] = ' ';
    g[n] = '\0';
    *len = n;
}

/* With "required" or a named function the answer is one call, generated under the grammar of the
 * call syntax of the model's family around the arguments' JSON Schema. Under "auto" (lazy) the
 * same grammar, for one or more calls, starts after the family's trigger text. */
static bool tool_call_grammar(const edgellm_model *model, json_t *tools, const char *named,
                              bool lazy, srv_request *r, srv_api_error *err)
{
    ellm_chat_tool_syntax syntax = ellm_chat_tool_call_syntax(ellm_chat_detect_model(model, NULL));
    const char *prefix = syntax.prefix;
    if (lazy) {
        size_t n = strlen(syntax.trigger);
        prefix = strncmp(prefix, syntax.trigger, n) == 0 ? prefix + n : prefix;
    }
    json_t *defs = json_pack("{s:{},s:{}}", "$defs", "definitions");
    json_t *branches = json_array();
    bool ok = defs && branches;
    if (!ok)
        ellm_srv_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
    for (size_t i = 0; ok && i < json_array_size(tools); i++) {
        json_t *fn = json_object_get(json_array_get(tools, i), "function");
        if (named && strcmp(json_string_value(json_object_get(fn, "name")), named) != 0)
            continue;
        json_t *one = call_schema(fn, syntax.args_key, defs, err);
        ok = one != NULL;
        json_array_append_new(branches, one);
    }
    json_t *schema = NULL;
    if (ok) {
        schema = json_array_size(branches) == 1 ? json_incref(json_array_get(branches, 0))
                                                : json_pack("{s:O}", "anyOf", branches);
        for (int k = 0; schema && k < 2; k++) {
            const char *key = k ? "definitions" : "$defs";
            if (json_object_size(json_object_get(defs, key)) > 0)
                json_object_set(schema, key, json_object_get(defs, key));
        }
    }
    json_decref(defs);
    json_decref(branches);
    if (ok && !schema)
        ellm_srv_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
    if (!schema)
        return false;
    char why[512];
    char *rules = ellm_structured_schema_to_grammar(schema, why, sizeof why);
    json_decref(schema);
    if (!rules) {
        ellm_srv_error_set(err, 400, "invalid_request_error", "invalid_value", "tools", "%s", why);
        return false;
    }
    /* The call's start and end around the schema's root rule. */
    size_t len = strlen(rules);
    const char *separator = lazy && syntax.separator ? syntax.separator : "";
    size_t cap = len + 2 * (strlen(prefix) + strlen(syntax.suffix) + strlen(separator)) + 64;
    char *text = realloc(rules, cap);
    if (!text) {
        free(rules);
        ellm_srv_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
        return false;
    }
    len += (size_t)sprintf(text + len, "\ntool-call ::= ");
    put_gbnf_literal(&text, &len, prefix);
    len += (size_t)sprintf(text + len, "root ");
    if (*separator) {
        len += (size_t)sprintf(text + len, "( ");
        put_gbnf_literal(&text, &len, separator);
        len += (size_t)sprintf(text + len, "root )* ");
    }
    put_gbnf_literal(&text, &len, syntax.suffix);
    text[len++] = '\n';
    text[len] = '\0';
    edgellm_status st = edgellm_grammar_compile(model, text, len, "tool-call", &r->grammar);
    free(text);
    if (st != EDGELLM_OK) {
        ellm_srv_error_set(err, st == EDGELLM_ERR_OUT_OF_MEMORY ? 500 : 400,
                           st == EDGELLM_ERR_OUT_OF_MEMORY ? "server_error"
                                                           : "invalid_request_error",
                           "invalid_value", "tools", "%s", edgellm_last_error());
        return false;
    }
    r->grammar_trigger = lazy ? syntax.trigger : NULL;
    return true;
}

/* "tools", "tool_choice" and "parallel_tool_calls" of a chat request: *render gets the tools the
 * prompt lists (NULL with none or tool_choice "none"). */
static bool parse_tools(json_t *body, const edgellm_model *model, srv_request *r,
                        srv_completion_opts *o, json_t **render, srv_api_error *err)
{
    *render = NULL;
    json_t *tools = json_object_get(body, "tools");
    if (json_is_null(tools))
        tools = NULL;
    bool parallel = true;
    if ((tools && !check_tools(tools, err)) ||
        !get_bool(body, "parallel_tool_calls", &parallel, err))
        return false;
    tool_mode mode;
    const char *named;
    if (!parse_tool_choice(body, tools, &mode, &named, err))
        return false;
    if (mode == TOOL_NONE)
        return true;
    *render = tools;
    o->tools = true;
    o->tool_family = (int)ellm_chat_detect_model(model, NULL);
    if (mode == TOOL_AUTO) /* a response_format or grammar given with it applies instead */
        return r->grammar || tool_call_grammar(model, tools, NULL, true, r, err);
    if (r->grammar) {
        ellm_srv_error_set(err, 400, "invalid_request_error", "invalid_value", "tool_choice",
                           "'tool_choice' %s constrains the answer to a tool call: it cannot be "
                           "combined with 'response_format' or 'grammar'",
                           mode == TOOL_NAMED ? "naming a function" : "\"required\"");
        return false;
    }
    return tool_call_grammar(model, tools, named, false, r, err);
}

bool ellm_srv_parse_completion(json_t *body, srv_endpoint_kind kind, const edgellm_model *model,
                               const char *model_id, int n_ctx, srv_request *r,
                               srv_completion_opts *o, srv_api_error *err)
{
    memset(o, 0, sizeof *o);
    o->kind = kind;
    if (!json_is_object(body))
        return bad_type(err, "body", "a JSON object", body);
    if (!ellm_srv_check_model(body, model_id, err))
        return false;
    long long n = 1;
    if (!get_int(body, "n", 1, SRV_MAX_CHOICES, &n, err))
        return false;
    o->n = (int)n;
    json_t *user = json_object_get(body, "user");
    if (user && !json_is_null(user) && !json_is_string(user))
        return bad_type(err, "user", "a string", user);
    long long max_tokens = -1;
    const char *max_field = json_object_get(body, "max_completion_tokens") ? "max_completion_tokens"
                                                                           : "max_tokens";
    if (!get_int(body, max_field, 0, 1 << 30, &max_tokens, err) ||
        !parse_echo(body, kind, max_tokens, r, err))
        return false;
    r->max_tokens = (int32_t)max_tokens; /* -1: until the context is full */

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
        ellm_srv_error_set(err, 400, "invalid_request_error", "invalid_value", "top_p",
                           "'top_p' %g is below the smallest positive float (1.4e-45); send 0 for "
                           "only the most likely token, or a larger value",
                           top_p);
        return false;
    }
    if (top_p == 0) {
        temperature = 0; /* only the most likely token remains */
        top_p = 1;
    }
    /* Not in OpenAI's API, but llama.cpp's server and `edgellm run` take them, and so do clients
     * written for either; absent, they stay off. */
    long long top_k = 0, repeat_last_n = -1;
    double min_p = 0, repeat_penalty = 1;
    if (!get_int(body, "top_k", 0, 1 << 30, &top_k, err) ||
        !get_number(body, "min_p", 0, 1, &min_p, err) ||
        !get_number(body, "repeat_penalty", 0.01, 10, &repeat_penalty, err) ||
        !get_int(body, "repeat_last_n", -1, 1 << 30, &repeat_last_n, err))
        return false;
    sp->temperature = (float)temperature;
    sp->top_k = (int32_t)top_k;
    sp->top_p = (float)top_p;
    sp->min_p = (float)min_p;
    sp->repeat_penalty = (float)repeat_penalty;
    sp->repeat_last_n = (int32_t)repeat_last_n;
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
        ellm_srv_error_set(err, 400, "invalid_request_error", "invalid_value", NULL, "%s",
                           edgellm_last_error());
        return false;
    }
    edgellm_sampler_free(probe);
    if (!parse_stops(body, r, err) || !parse_logit_bias(body, model, r, err) ||
        !get_bool(body, "stream", &o->stream, err))
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
            ellm_srv_error_set(err, 400, "invalid_request_error", "invalid_value", "top_logprobs",
                               "'top_logprobs' needs 'logprobs': true");
            return false;
        }
        o->top_logprobs = (int)top;
    } else {
        /* Completions: logprobs is the number of alternatives. */
        long long lp = -1;
        if (!get_int(body, "logprobs", 0, SRV_MAX_TOP_LOGPROBS, &lp, err))
            return false;
        o->logprobs = lp >= 0;
        o->top_logprobs = lp > 0 ? (int)lp : 0;
    }
    r->logprobs = o->logprobs;
    r->top_logprobs = o->top_logprobs;
    if (!parse_constraint(body, model, r, err))
        return false;
    if (kind == SRV_COMPLETION)
        return completion_prompt(body, model, n_ctx, r, err);
    json_t *tools = NULL;
    return parse_tools(body, model, r, o, &tools, err) &&
           chat_prompt(body, model, n_ctx, tools, r, err);
}

const char *ellm_srv_finish_reason(srv_finish f)
{
    switch (f) {
    case SRV_FINISH_STOP: return "stop";
    case SRV_FINISH_LENGTH: return "length";
    case SRV_FINISH_TOOL_CALLS: return "tool_calls";
    default: return NULL;
    }
}

json_t *ellm_srv_usage_json(int32_t n_prompt, int32_t n_cached, int32_t n_generated)
{
    return json_pack("{s:i,s:i,s:i,s:{s:i}}", "prompt_tokens", n_prompt, "completion_tokens",
                     n_generated, "total_tokens", n_prompt + n_generated, "prompt_tokens_details",
                     "cached_tokens", n_cached);
}

static json_t *token_bytes(const char *piece, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_integer((unsigned char)piece[i]));
    return a;
}

size_t ellm_srv_token_piece(const edgellm_model *model, edgellm_token token, char **buf,
                            size_t *cap)
{
    size_t len = 0;
    edgellm_status st = edgellm_token_to_piece(model, token, *buf, *cap, &len);
    if (st == EDGELLM_ERR_BUFFER_TOO_SMALL) {
        size_t want = len < 256 ? 256 : len;
        char *grown = realloc(*buf, want);
        if (!grown)
            return 0;
        *buf = grown;
        *cap = want;
        st = edgellm_token_to_piece(model, token, *buf, *cap, &len);
    }
    return st == EDGELLM_OK ? len : 0;
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
    char *piece = NULL;
    size_t cap = 0;
    for (size_t i = 0; i < n; i++) {
        if (ev[i].token < 0)
            continue;
        size_t len = ellm_srv_token_piece(model, ev[i].token, &piece, &cap);
        json_t *top = json_array();
        for (int k = 0; k < ev[i].n_top; k++) {
            size_t tl = ellm_srv_token_piece(model, ev[i].top[k].token, &piece, &cap);
            json_array_append_new(top, json_pack("{s:o,s:f,s:o}", "token", lossy_string(piece, tl),
                                                 "logprob", logprob_value(ev[i].top[k].logprob),
                                                 "bytes", token_bytes(piece, tl)));
        }
        len = ellm_srv_token_piece(model, ev[i].token, &piece, &cap);
        json_array_append_new(content,
                              json_pack("{s:o,s:f,s:o,s:o}", "token", lossy_string(piece, len),
                                        "logprob", logprob_value(ev[i].logprob), "bytes",
                                        token_bytes(piece, len), "top_logprobs", top));
    }
    free(piece);
    return json_pack("{s:o}", "content", content);
}

/* Completions: {"tokens", "token_logprobs", "top_logprobs": [{token: logprob}], "text_offset"} */
static json_t *completion_logprobs(const edgellm_model *model, const srv_event *ev, size_t n,
                                   size_t offset)
{
    json_t *tokens = json_array(), *lps = json_array(), *tops = json_array(),
           *offsets = json_array();
    char *piece = NULL;
    size_t cap = 0;
    size_t at = offset;
    for (size_t i = 0; i < n; i++) {
        if (ev[i].token >= 0 && ev[i].no_logprob) {
            size_t len = ellm_srv_token_piece(model, ev[i].token, &piece, &cap);
            json_array_append_new(tokens, lossy_string(piece, len));
            json_array_append_new(lps, json_null());
            json_array_append_new(tops, json_null());
            json_array_append_new(offsets, json_integer((json_int_t)at));
        } else if (ev[i].token >= 0) {
            size_t len = ellm_srv_token_piece(model, ev[i].token, &piece, &cap);
            json_array_append_new(tokens, lossy_string(piece, len));
            json_array_append_new(lps, json_real(logprob_value(ev[i].logprob)));
            json_t *top = json_object();
            for (int k = 0; k < ev[i].n_top; k++) {
                size_t tl = ellm_srv_token_piece(model, ev[i].top[k].token, &piece, &cap);
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
    free(piece);
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
    const char *r = ellm_srv_finish_reason(f);
    return r ? json_string(r) : json_null();
}

/* The events' bytes as one malloc'd string (*len bytes), or NULL when out of memory. */
static char *joined_bytes(const srv_event *ev, size_t n, size_t *len)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += ev[i].len;
    char *buf = malloc(total + 1);
    if (!buf)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(buf + o, ev[i].text, ev[i].len);
        o += ev[i].len;
    }
    buf[o] = '\0';
    *len = o;
    return buf;
}

/* A tool call id: nine letters and digits, the form every family's template accepts (Mistral's
 * checks for exactly nine). */
static json_t *tool_call_id(void)
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    char id[10];
    for (int i = 0; i < 9; i++)
        id[i] = alphabet[randombytes_uniform(sizeof alphabet - 1)];
    id[9] = '\0';
    return json_string(id);
}

static json_t *tool_call_json(const ellm_chat_parsed_call *c)
{
    return json_pack("{s:o,s:s,s:{s:o,s:o}}", "id", tool_call_id(), "type", "function", "function",
                     "name", lossy_string(c->name, strlen(c->name)), "arguments",
                     lossy_string(c->arguments, strlen(c->arguments)));
}

/* The assistant message of a finished chat choice: with tools, the calls parsed out of its text
 * (content null when there is no other text) and *finish "tool_calls". */
static json_t *chat_message(const srv_completion_opts *o, const srv_event *ev, size_t n,
                            srv_finish *finish)
{
    ellm_chat_parsed parsed = {0};
    size_t len = 0;
    char *text = o->tools ? joined_bytes(ev, n, &len) : NULL;
    if (!text ||
        !ellm_chat_parse_tool_calls((ellm_chat_family)o->tool_family, text, len, &parsed) ||
        parsed.n_calls == 0) {
        free(text);
        ellm_chat_parsed_free(&parsed);
        return json_pack("{s:s,s:o}", "role", "assistant", "content", joined_text(ev, n));
    }
    free(text);
    json_t *calls = json_array();
    for (size_t k = 0; k < parsed.n_calls; k++)
        json_array_append_new(calls, tool_call_json(&parsed.calls[k]));
    json_t *content = parsed.content[0] ? lossy_string(parsed.content, strlen(parsed.content))
                                        : json_null();
    ellm_chat_parsed_free(&parsed);
    *finish = SRV_FINISH_TOOL_CALLS;
    return json_pack("{s:s,s:o,s:o}", "role", "assistant", "content", content, "tool_calls", calls);
}

json_t *ellm_srv_completion_response(const srv_completion_opts *o, const edgellm_model *model,
                                     const char *id, const char *model_id, long long created,
                                     const srv_choice_result *choices, int n_choices,
                                     int32_t n_prompt, int32_t n_cached, int32_t n_generated)
{
    json_t *list = json_array();
    for (int i = 0; i < n_choices; i++) {
        const srv_event *ev = choices[i].events;
        size_t n = choices[i].n_events;
        json_t *choice;
        if (o->kind == SRV_CHAT) {
            srv_finish finish = choices[i].finish;
            json_t *message = chat_message(o, ev, n, &finish); /* may turn finish to calls */
            choice = json_pack("{s:i,s:o,s:o,s:o}", "index", i, "message", message, "logprobs",
                               o->logprobs ? chat_logprobs(model, ev, n) : json_null(),
                               "finish_reason", finish_json(finish));
        } else
            choice = json_pack("{s:o,s:i,s:o,s:o}", "text", joined_text(ev, n), "index", i,
                               "logprobs",
                               o->logprobs ? completion_logprobs(model, ev, n, 0) : json_null(),
                               "finish_reason", finish_json(choices[i].finish));
        json_array_append_new(list, choice);
    }
    return json_pack("{s:s,s:s,s:I,s:s,s:s,s:o,s:o}", "id", id, "object",
                     o->kind == SRV_CHAT ? "chat.completion" : "text_completion", "created",
                     (json_int_t)created, "model", model_id, "system_fingerprint",
                     "edgellm-" EDGELLM_SERVER_VERSION, "choices", list, "usage",
                     ellm_srv_usage_json(n_prompt, n_cached, n_generated));
}

json_t *ellm_srv_completion_chunk(const srv_completion_opts *o, const edgellm_model *model,
                                  const char *id, const char *model_id, long long created,
                                  int index, const srv_event *ev, size_t n, size_t text_offset,
                                  bool first, srv_finish finish)
{
    json_t *choice;
    if (o->kind == SRV_CHAT) {
        json_t *delta = json_object();
        if (first)
            json_object_set_new(delta, "role", json_string("assistant"));
        if (n > 0 || first)
            json_object_set_new(delta, "content", joined_text(ev, n));
        choice = json_pack("{s:i,s:o,s:o,s:o}", "index", index, "delta", delta, "logprobs",
                           o->logprobs && n > 0 ? chat_logprobs(model, ev, n) : json_null(),
                           "finish_reason", finish_json(finish));
    } else {
        choice = json_pack(
            "{s:o,s:i,s:o,s:o}", "text", joined_text(ev, n), "index", index, "logprobs",
            o->logprobs && n > 0 ? completion_logprobs(model, ev, n, text_offset) : json_null(),
            "finish_reason", finish_json(finish));
    }
    return json_pack("{s:s,s:s,s:I,s:s,s:s,s:[o]}", "id", id, "object",
                     o->kind == SRV_CHAT ? "chat.completion.chunk" : "text_completion", "created",
                     (json_int_t)created, "model", model_id, "system_fingerprint",
                     "edgellm-" EDGELLM_SERVER_VERSION, "choices", choice);
}

/* ---- streamed choices with tools ---- */

static json_t *delta_chunk(const char *id, const char *model_id, long long created, int index,
                           json_t *delta, srv_finish finish)
{
    return json_pack("{s:s,s:s,s:I,s:s,s:s,s:[{s:i,s:o,s:n,s:o}]}", "id", id, "object",
                     "chat.completion.chunk", "created", (json_int_t)created, "model", model_id,
                     "system_fingerprint", "edgellm-" EDGELLM_SERVER_VERSION, "choices", "index",
                     index, "delta", delta, "logprobs", "finish_reason", finish_json(finish));
}

static json_t *content_chunk(const char *id, const char *model_id, long long created, int index,
                             const char *text, size_t len)
{
    return delta_chunk(id, model_id, created, index,
                       json_pack("{s:o}", "content", lossy_string(text, len)), SRV_FINISH_NONE);
}

json_t *ellm_srv_tool_stream_feed(const srv_completion_opts *o, srv_tool_stream *ts, const char *id,
                                  const char *model_id, long long created, int index,
                                  const srv_event *events, size_t n_events)
{
    size_t add = 0;
    for (size_t i = 0; i < n_events; i++)
        add += events[i].len;
    if (ts->len + add + 1 > ts->cap) {
        size_t cap = ts->cap ? ts->cap : 256;
        while (cap < ts->len + add + 1)
            cap *= 2;
        char *grown = realloc(ts->text, cap);
        if (!grown)
            return NULL;
        ts->text = grown;
        ts->cap = cap;
    }
    for (size_t i = 0; i < n_events; i++) {
        memcpy(ts->text + ts->len, events[i].text, events[i].len);
        ts->len += events[i].len;
    }
    ts->text[ts->len] = '\0';
    size_t start = ellm_chat_tool_call_start((ellm_chat_family)o->tool_family, ts->text, ts->len);
    if (start <= ts->sent)
        return NULL;
    json_t *chunk = content_chunk(id, model_id, created, index, ts->text + ts->sent,
                                  start - ts->sent);
    ts->sent = start;
    return chunk;
}

srv_finish ellm_srv_tool_stream_finish(const srv_completion_opts *o, srv_tool_stream *ts,
                                       const char *id, const char *model_id, long long created,
                                       int index, srv_finish finish, json_t *list)
{
    const char *held = ts->text ? ts->text + ts->sent : "";
    size_t len = ts->len - ts->sent;
    ellm_chat_parsed parsed = {0};
    if (len == 0)
        return finish;
    if (!ellm_chat_parse_tool_calls((ellm_chat_family)o->tool_family, held, len, &parsed) ||
        parsed.n_calls == 0) {
        ellm_chat_parsed_free(&parsed);
        json_array_append_new(list, content_chunk(id, model_id, created, index, held, len));
        return finish;
    }
    if (parsed.content[0])
        json_array_append_new(list, content_chunk(id, model_id, created, index, parsed.content,
                                                  strlen(parsed.content)));
    /* As OpenAI streams calls: the id, type and name first, then the arguments. */
    for (size_t k = 0; k < parsed.n_calls; k++) {
        const ellm_chat_parsed_call *c = &parsed.calls[k];
        json_t *head = json_pack("{s:[{s:i,s:o,s:s,s:{s:o,s:s}}]}", "tool_calls", "index", (int)k,
                                 "id", tool_call_id(), "type", "function", "function", "name",
                                 lossy_string(c->name, strlen(c->name)), "arguments", "");
        json_t *args = json_pack("{s:[{s:i,s:{s:o}}]}", "tool_calls", "index", (int)k, "function",
                                 "arguments", lossy_string(c->arguments, strlen(c->arguments)));
        json_array_append_new(list,
                              delta_chunk(id, model_id, created, index, head, SRV_FINISH_NONE));
        json_array_append_new(list,
                              delta_chunk(id, model_id, created, index, args, SRV_FINISH_NONE));
    }
    ellm_chat_parsed_free(&parsed);
    ts->sent = ts->len;
    return SRV_FINISH_TOOL_CALLS;
}

void ellm_srv_tool_stream_free(srv_tool_stream *ts)
{
    free(ts->text);
    memset(ts, 0, sizeof *ts);
}
