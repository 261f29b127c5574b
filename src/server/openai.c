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
#include "structured/structured.h"

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

/* "logit_bias": {"token id": bias in [-100, 100]}, added to the logits before sampling. */
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
        srv_error_set(err, 400, "invalid_request_error", "invalid_value", "logit_bias",
                      "'logit_bias' holds %zu entries but the vocabulary has %d tokens", n,
                      n_vocab);
        return false;
    }
    r->bias = calloc(n, sizeof *r->bias);
    if (!r->bias) {
        srv_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
        return false;
    }
    const char *key;
    json_t *value;
    json_object_foreach(v, key, value) {
        char *end = NULL;
        long id = strtol(key, &end, 10);
        if (key[0] < '0' || key[0] > '9' || *end != '\0' || id >= n_vocab) {
            srv_error_set(err, 400, "invalid_request_error", "invalid_value", "logit_bias",
                          "logit_bias key '%.40s' is not a token id (a decimal integer from 0 to "
                          "%d)",
                          key, n_vocab - 1);
            return false;
        }
        double bias = json_is_number(value) ? json_number_value(value) : NAN;
        if (!(bias >= -100 && bias <= 100)) {
            srv_error_set(err, 400, "invalid_request_error", "invalid_value", "logit_bias",
                          "logit_bias['%s'] must be a number from -100 to 100", key);
            return false;
        }
        r->bias[r->n_bias++] = (srv_logit_bias){(edgellm_token)id, (float)bias};
    }
    return true;
}

/* "echo" (completions only): the prompt's tokens lead the choice; with max_tokens 0 nothing is
 * generated, which is how a client scores a text (its prompt logprobs). */
static bool parse_echo(json_t *body, srv_endpoint_kind kind, long long max_tokens, srv_request *r,
                       srv_api_error *err)
{
    if (kind == SRV_COMPLETION && !get_bool(body, "echo", &r->echo, err))
        return false;
    if (max_tokens == 0 && !r->echo) {
        srv_error_set(err, 400, "invalid_request_error", "invalid_value", "max_tokens",
                      "'max_tokens' is 0: that only makes sense with 'echo': true on "
                      "/v1/completions (to score the prompt); ask for at least 1 token");
        return false;
    }
    return true;
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
    /* A list of one prompt (text or token ids) is that prompt. */
    if (json_is_array(p) && json_array_size(p) == 1 &&
        (json_is_string(json_array_get(p, 0)) || json_is_array(json_array_get(p, 0))))
        p = json_array_get(p, 0);
    if (json_is_array(p) && json_array_size(p) > 1 &&
        (json_is_string(json_array_get(p, 0)) || json_is_array(json_array_get(p, 0)))) {
        srv_error_set(err, 400, "invalid_request_error", "invalid_value", "prompt",
                      "'prompt' holds %zu prompts; this server takes one prompt per request "
                      "(send one request each, or use 'n' for several choices of one prompt)",
                      json_array_size(p));
        return false;
    }
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
            srv_error_set(err, 400, "invalid_request_error", "invalid_value", "grammar",
                          "give either 'grammar' or a JSON 'response_format', not both");
            return false;
        }
        if (strcmp(t, "json_object") == 0) {
            wanted = true;
            text = strdup(structured_json_object_grammar());
        } else if (strcmp(t, "json_schema") == 0) {
            json_t *js = json_object_get(rf, "json_schema");
            json_t *schema = json_is_object(js) ? json_object_get(js, "schema") : NULL;
            json_t *name = json_is_object(js) ? json_object_get(js, "name") : NULL;
            json_t *strict = json_is_object(js) ? json_object_get(js, "strict") : NULL;
            if (!json_is_object(js) || !schema || !json_is_string(name) ||
                (strict && !json_is_boolean(strict) && !json_is_null(strict))) {
                srv_error_set(err, 400, "invalid_request_error", "invalid_value",
                              "response_format",
                              "'response_format' of type json_schema needs 'json_schema': "
                              "{\"name\": string, \"schema\": object, \"strict\": boolean}");
                return false;
            }
            text = structured_schema_to_grammar(schema, why, sizeof why);
            if (!text) {
                srv_error_set(err, 400, "invalid_request_error", "invalid_value",
                              "response_format", "json_schema: %s", why);
                return false;
            }
        } else if (strcmp(t, "text") != 0) {
            srv_error_set(err, 400, "invalid_request_error", "invalid_value", "response_format",
                          "'response_format' type must be text, json_object or json_schema");
            return false;
        }
    }
    if (!text) {
        if (wanted)
            srv_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
        return !wanted;
    }
    edgellm_status st = edgellm_grammar_compile(model, text, strlen(text), NULL, &r->grammar);
    free(text);
    if (st != EDGELLM_OK) {
        srv_error_set(err, st == EDGELLM_ERR_OUT_OF_MEMORY ? 500 : 400,
                      st == EDGELLM_ERR_OUT_OF_MEMORY ? "server_error" : "invalid_request_error",
                      "invalid_value", field, "%s", edgellm_last_error());
        return false;
    }
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
            srv_error_set(err, 400, "invalid_request_error", "invalid_value", "top_logprobs",
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

size_t srv_token_piece(const edgellm_model *model, edgellm_token token, char **buf, size_t *cap)
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
        size_t len = srv_token_piece(model, ev[i].token, &piece, &cap);
        json_t *top = json_array();
        for (int k = 0; k < ev[i].n_top; k++) {
            size_t tl = srv_token_piece(model, ev[i].top[k].token, &piece, &cap);
            json_array_append_new(top, json_pack("{s:o,s:f,s:o}", "token", lossy_string(piece, tl),
                                                 "logprob", logprob_value(ev[i].top[k].logprob),
                                                 "bytes", token_bytes(piece, tl)));
        }
        len = srv_token_piece(model, ev[i].token, &piece, &cap);
        json_array_append_new(content, json_pack("{s:o,s:f,s:o,s:o}", "token",
                                                 lossy_string(piece, len), "logprob",
                                                 logprob_value(ev[i].logprob), "bytes",
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
            size_t len = srv_token_piece(model, ev[i].token, &piece, &cap);
            json_array_append_new(tokens, lossy_string(piece, len));
            json_array_append_new(lps, json_null());
            json_array_append_new(tops, json_null());
            json_array_append_new(offsets, json_integer((json_int_t)at));
        } else if (ev[i].token >= 0) {
            size_t len = srv_token_piece(model, ev[i].token, &piece, &cap);
            json_array_append_new(tokens, lossy_string(piece, len));
            json_array_append_new(lps, json_real(logprob_value(ev[i].logprob)));
            json_t *top = json_object();
            for (int k = 0; k < ev[i].n_top; k++) {
                size_t tl = srv_token_piece(model, ev[i].top[k].token, &piece, &cap);
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
    const char *r = srv_finish_reason(f);
    return r ? json_string(r) : json_null();
}

json_t *srv_completion_response(const srv_completion_opts *o, const edgellm_model *model,
                                const char *id, const char *model_id, long long created,
                                const srv_choice_result *choices, int n_choices,
                                int32_t n_prompt, int32_t n_cached, int32_t n_generated)
{
    json_t *list = json_array();
    for (int i = 0; i < n_choices; i++) {
        const srv_event *ev = choices[i].events;
        size_t n = choices[i].n_events;
        json_t *choice;
        if (o->kind == SRV_CHAT)
            choice = json_pack("{s:i,s:{s:s,s:o},s:o,s:o}", "index", i, "message", "role",
                               "assistant", "content", joined_text(ev, n), "logprobs",
                               o->logprobs ? chat_logprobs(model, ev, n) : json_null(),
                               "finish_reason", finish_json(choices[i].finish));
        else
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
                     srv_usage_json(n_prompt, n_cached, n_generated));
}

json_t *srv_completion_chunk(const srv_completion_opts *o, const edgellm_model *model,
                             const char *id, const char *model_id, long long created, int index,
                             const srv_event *ev, size_t n, size_t text_offset, bool first,
                             srv_finish finish)
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
        choice = json_pack("{s:o,s:i,s:o,s:o}", "text", joined_text(ev, n), "index", index,
                           "logprobs",
                           o->logprobs && n > 0 ? completion_logprobs(model, ev, n, text_offset)
                                                : json_null(),
                           "finish_reason", finish_json(finish));
    }
    return json_pack("{s:s,s:s,s:I,s:s,s:s,s:[o]}", "id", id, "object",
                     o->kind == SRV_CHAT ? "chat.completion.chunk" : "text_completion", "created",
                     (json_int_t)created, "model", model_id, "system_fingerprint",
                     "edgellm-" EDGELLM_SERVER_VERSION, "choices", choice);
}
