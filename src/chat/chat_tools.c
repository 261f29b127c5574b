/* Tool calling in chat prompts and answers: the JSON the templates' tojson filter writes, the
 * tool values the renderers reach through chat_tool_ops, the Hermes-style rendering for families
 * whose templates know no tools, and reading the calls a model wrote back out of its text. The
 * one file of the templates that reads jansson values (with chat_json.c): builds without jansson
 * (the browser) leave it out and have no tools. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "chat/chat_render.h"
#include "core/status.h"

/* ---- tojson as transformers defines it: json.dumps(x, ensure_ascii=False, indent=indent) ---- */

/* Python's repr of a float: the shortest digits that read back to the same double, positional
 * for decimal exponents -4 .. 15, scientific (e+XX / e-XX) otherwise. */
static void dump_real(chat_buf *b, double v)
{
    if (!isfinite(v)) { /* json.dumps writes these; jansson never holds them */
        ellm_chat_buf_append(b, isnan(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity");
        return;
    }
    char sci[40];
    for (int p = 1; p <= 17; p++) {
        snprintf(sci, sizeof sci, "%.*e", p - 1, v);
        if (strtod(sci, NULL) == v)
            break;
    }
    /* sci is [-]d[.ddd]e[+-]XX: split into sign, digits and the decimal exponent. */
    const char *p = sci;
    bool negative = *p == '-';
    if (negative)
        p++;
    char digits[24];
    size_t nd = 0;
    for (; *p && *p != 'e'; p++)
        if (*p != '.' && nd + 1 < sizeof digits)
            digits[nd++] = *p;
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    digits[nd] = '\0';
    int exp10 = *p == 'e' ? atoi(p + 1) : 0;
    if (negative)
        ellm_chat_buf_append(b, "-");
    if (exp10 < -4 || exp10 >= 16) {
        ellm_chat_buf_append_n(b, digits, 1);
        if (nd > 1) {
            ellm_chat_buf_append(b, ".");
            ellm_chat_buf_append(b, digits + 1);
        }
        char e[16];
        snprintf(e, sizeof e, "e%c%02d", exp10 < 0 ? '-' : '+', abs(exp10));
        ellm_chat_buf_append(b, e);
    } else if (exp10 < 0) {
        ellm_chat_buf_append(b, "0.");
        for (int k = -1; k > exp10; k--)
            ellm_chat_buf_append(b, "0");
        ellm_chat_buf_append(b, digits);
    } else {
        size_t whole = (size_t)exp10 + 1;
        for (size_t k = 0; k < whole; k++)
            ellm_chat_buf_append_n(b, k < nd ? digits + k : "0", 1);
        ellm_chat_buf_append(b, ".");
        ellm_chat_buf_append(b, nd > whole ? digits + whole : "0");
    }
}

static void newline_indent(chat_buf *b, int indent, int depth)
{
    ellm_chat_buf_append(b, "\n");
    for (int k = 0; k < indent * depth; k++)
        ellm_chat_buf_append(b, " ");
}

static void dump_value(chat_buf *b, const json_t *v, int indent, bool compact, int depth)
{
    const char *item_sep = indent >= 0 || compact ? "," : ", ";
    const char *key_sep = compact ? ":" : ": ";
    if (depth > 256) { /* jansson's own parser nests at most 2048; a template would give up */
        b->failed = true;
        return;
    }
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        if (json_object_size(v) == 0) {
            ellm_chat_buf_append(b, "{}");
            break;
        }
        ellm_chat_buf_append(b, "{");
        const char *key;
        json_t *member;
        bool first = true;
        json_object_foreach((json_t *)v, key, member)
        {
            if (!first)
                ellm_chat_buf_append(b, item_sep);
            first = false;
            if (indent >= 0)
                newline_indent(b, indent, depth + 1);
            ellm_chat_buf_json_string(b, key, strlen(key));
            ellm_chat_buf_append(b, key_sep);
            dump_value(b, member, indent, compact, depth + 1);
        }
        if (indent >= 0)
            newline_indent(b, indent, depth);
        ellm_chat_buf_append(b, "}");
        break;
    }
    case JSON_ARRAY: {
        if (json_array_size(v) == 0) {
            ellm_chat_buf_append(b, "[]");
            break;
        }
        ellm_chat_buf_append(b, "[");
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i > 0)
                ellm_chat_buf_append(b, item_sep);
            if (indent >= 0)
                newline_indent(b, indent, depth + 1);
            dump_value(b, json_array_get(v, i), indent, compact, depth + 1);
        }
        if (indent >= 0)
            newline_indent(b, indent, depth);
        ellm_chat_buf_append(b, "]");
        break;
    }
    case JSON_STRING:
        ellm_chat_buf_json_string(b, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER: {
        char num[32];
        snprintf(num, sizeof num, "%lld", (long long)json_integer_value(v));
        ellm_chat_buf_append(b, num);
        break;
    }
    case JSON_REAL: dump_real(b, json_real_value(v)); break;
    case JSON_TRUE: ellm_chat_buf_append(b, "true"); break;
    case JSON_FALSE: ellm_chat_buf_append(b, "false"); break;
    default: ellm_chat_buf_append(b, "null"); break;
    }
}

bool ellm_chat_json_dump(const json_t *value, int indent, bool compact, char **out, size_t *len)
{
    chat_buf b = {.data = *out, .len = *len, .cap = *out ? *len + 1 : 0};
    dump_value(&b, value, indent, compact, 0);
    if (b.failed) {
        ellm_chat_buf_discard(&b);
        *out = NULL;
        *len = 0;
        return false;
    }
    *out = b.data;
    *len = b.len;
    return true;
}

/* ---- what the renderers reach through chat_tool_ops ---- */

static const json_t *tool_list(const chat_render *r)
{
    const json_t *t = r->tools->tools;
    return json_is_array(t) ? t : NULL;
}

static size_t tool_count(const chat_render *r) { return json_array_size(tool_list(r)); }

static bool tools_given(const chat_render *r) { return tool_list(r) != NULL; }

static void put_tojson(chat_render *r, const json_t *v, int indent)
{
    chat_buf text = {0};
    dump_value(&text, v, indent, false, 0);
    if (text.failed)
        r->out.failed = true;
    ellm_chat_content_begin(r);
    ellm_chat_put_span(r, (chat_span){text.data ? text.data : "", text.len});
    ellm_chat_content_end(r);
    ellm_chat_buf_discard(&text);
}

static void put_tool(chat_render *r, size_t t, int indent)
{
    put_tojson(r, json_array_get(tool_list(r), t), indent);
}

static void put_arguments(chat_render *r, const ellm_chat_tool_call *c, bool raw_strings)
{
    if (raw_strings && json_is_string(c->arguments))
        ellm_chat_put_request_text(r, json_string_value(c->arguments));
    else
        put_tojson(r, c->arguments, -1);
}

/* The [AVAILABLE_TOOLS] block: each function's members written one by one, strings without
 * escaping (as the template does), "return" left out. */
static void put_mistral_tools(chat_render *r)
{
    const json_t *tools = tool_list(r);
    ellm_chat_put(r, "[AVAILABLE_TOOLS] [");
    for (size_t t = 0; t < json_array_size(tools); t++) {
        const json_t *function = json_object_get(json_array_get(tools, t), "function");
        ellm_chat_put(r, "{\"type\": \"function\", \"function\": {");
        const char *key;
        json_t *val;
        bool first = true;
        json_object_foreach((json_t *)function, key, val)
        {
            if (strcmp(key, "return") == 0)
                continue;
            if (!first)
                ellm_chat_put(r, ", ");
            first = false;
            ellm_chat_put(r, "\"");
            ellm_chat_put_request_text(r, key);
            ellm_chat_put(r, json_is_string(val) ? "\": \"" : "\": ");
            if (json_is_string(val)) {
                ellm_chat_put_request_text(r, json_string_value(val));
                ellm_chat_put(r, "\"");
            } else {
                put_tojson(r, val, -1);
            }
        }
        ellm_chat_put(r, "}}");
        ellm_chat_put(r, t + 1 < json_array_size(tools) ? ", " : "]");
    }
    ellm_chat_put(r, "[/AVAILABLE_TOOLS]");
}

/* ---- Hermes style through a family without tools ---- */

static const char hermes_tools_intro[] =
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are "
    "provided with function signatures within <tools></tools> XML tags:\n<tools>";
static const char hermes_tools_outro[] =
    "\n</tools>\n\nFor each function call, return a json object with function name and "
    "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": "
    "<function-name>, \"arguments\": <args-json-object>}\n</tool_call>";

static void hermes_call(chat_buf *b, const ellm_chat_tool_call *c)
{
    ellm_chat_buf_append(b, "<tool_call>\n{\"name\": \"");
    ellm_chat_buf_append(b, c->name);
    ellm_chat_buf_append(b, "\", \"arguments\": ");
    if (c->arguments)
        dump_value(b, c->arguments, -1, false, 0);
    else
        ellm_chat_buf_append(b, "{}");
    ellm_chat_buf_append(b, "}\n</tool_call>");
}

static bool hermes_fallback(chat_render *r, bool (*render)(chat_render *))
{
    const json_t *tools = tool_count(r) > 0 ? tool_list(r) : NULL;
    size_t n = r->n;
    /* At most one message more than the conversation: a system message for the tools. */
    ellm_chat_message *msgs = calloc(n + 1, sizeof *msgs);
    chat_buf *texts = calloc(n + 1, sizeof *texts);
    size_t m = 0;
    bool ok = msgs && texts;
    size_t first = 0;
    if (ok && tools) {
        chat_buf *b = &texts[m];
        if (ellm_chat_role_is(&r->msgs[0], "system")) {
            ellm_chat_buf_append(b, ellm_chat_content_of(&r->msgs[0]));
            ellm_chat_buf_append(b, "\n\n");
            first = 1;
        }
        ellm_chat_buf_append(b, hermes_tools_intro);
        for (size_t t = 0; t < json_array_size(tools); t++) {
            ellm_chat_buf_append(b, "\n");
            dump_value(b, json_array_get(tools, t), -1, false, 0);
        }
        ellm_chat_buf_append(b, hermes_tools_outro);
        msgs[m++] = (ellm_chat_message){"system", NULL};
    }
    for (size_t i = first; ok && i < n; i++) {
        const ellm_chat_message *src = &r->msgs[i];
        const ellm_chat_message_tools *mt = ellm_chat_tools_of_message(r, i);
        chat_buf *b = &texts[m];
        if (ellm_chat_role_is(src, "tool")) {
            /* A run of tool results is one user turn. */
            for (; i < n && ellm_chat_role_is(&r->msgs[i], "tool"); i++) {
                if (b->len > 0)
                    ellm_chat_buf_append(b, "\n");
                ellm_chat_buf_append(b, "<tool_response>\n");
                ellm_chat_buf_append(b, ellm_chat_content_of(&r->msgs[i]));
                ellm_chat_buf_append(b, "\n</tool_response>");
            }
            i--;
            msgs[m++] = (ellm_chat_message){"user", NULL};
        } else if (mt->n_calls > 0) {
            ellm_chat_buf_append(b, ellm_chat_content_of(src));
            for (size_t c = 0; c < mt->n_calls; c++) {
                if (b->len > 0)
                    ellm_chat_buf_append(b, "\n");
                hermes_call(b, &mt->calls[c]);
            }
            msgs[m++] = (ellm_chat_message){src->role, NULL};
        } else {
            ellm_chat_buf_append(b, ellm_chat_content_of(src));
            msgs[m++] = (ellm_chat_message){src->role, NULL};
        }
    }
    for (size_t i = 0; ok && i < m; i++) {
        if (texts[i].failed)
            ok = false;
        msgs[i].content = texts[i].data ? texts[i].data : "";
    }
    if (ok) {
        /* The rewritten messages are all message text: their spans are found by address. */
        const ellm_chat_message *saved_msgs = r->msgs;
        size_t saved_n = r->n;
        const ellm_chat_tools *saved_tools = r->tools;
        static const ellm_chat_tools no_tools = {NULL, NULL};
        r->msgs = msgs;
        r->n = m;
        r->tools = &no_tools;
        ok = render(r);
        r->msgs = saved_msgs;
        r->n = saved_n;
        r->tools = saved_tools;
    } else {
        ellm_chat_buf_discard(&r->out);
        ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the chat prompt's tools");
    }
    for (size_t i = 0; texts && i <= n; i++)
        ellm_chat_buf_discard(&texts[i]);
    free(texts);
    free(msgs);
    return ok;
}

static const chat_tool_ops json_tool_ops = {tool_count,    tools_given,       put_tool,
                                            put_arguments, put_mistral_tools, hermes_fallback};

char *ellm_chat_format_tools(ellm_chat_family f, const ellm_chat_message *msgs, size_t n,
                             const ellm_chat_tools *tools, bool add_generation_prompt,
                             const char *bos_text, const char *eos_text, ellm_chat_span **spans,
                             size_t *n_spans)
{
    return ellm_chat_format_with_tools(f, msgs, n, tools, &json_tool_ops, add_generation_prompt,
                                       bos_text, eos_text, spans && n_spans ? spans : NULL,
                                       n_spans);
}

char *ellm_chat_format_model_tools(const edgellm_model *model, const ellm_chat_message *msgs,
                                   size_t n, const ellm_chat_tools *tools,
                                   bool add_generation_prompt, bool *template_recognised,
                                   ellm_chat_span **spans, size_t *n_spans)
{
    return ellm_chat_format_model_with_tools(model, msgs, n, tools, &json_tool_ops,
                                             add_generation_prompt, template_recognised, spans,
                                             n_spans);
}

/* ---- calls in generated text ---- */

ellm_chat_tool_syntax ellm_chat_tool_call_syntax(ellm_chat_family f)
{
    switch (f) {
    case ELLM_CHAT_LLAMA31:
    case ELLM_CHAT_LLAMA32:
        return (ellm_chat_tool_syntax){"", "", "parameters", "<|python_tag|>", NULL};
    case ELLM_CHAT_MISTRAL_V3:
        return (ellm_chat_tool_syntax){"[TOOL_CALLS] [", "]", "arguments", "[TOOL_CALLS]", ", "};
    default:
        return (ellm_chat_tool_syntax){"<tool_call>\n", "\n</tool_call>", "arguments",
                                       "<tool_call>", "\n</tool_call>\n<tool_call>\n"};
    }
}

static const char python_tag[] = "<|python_tag|>";

static const char *call_marker(ellm_chat_family f)
{
    switch (f) {
    case ELLM_CHAT_LLAMA31:
    case ELLM_CHAT_LLAMA32: return NULL; /* the whole answer is the call */
    case ELLM_CHAT_MISTRAL_V3: return "[TOOL_CALLS]";
    default: return "<tool_call>";
    }
}

static bool is_json_space(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

static size_t skip_space(const char *t, size_t len, size_t at)
{
    while (at < len && is_json_space(t[at]))
        at++;
    return at;
}

static bool starts_at(const char *t, size_t len, size_t at, const char *s)
{
    size_t n = strlen(s);
    return at <= len && len - at >= n && memcmp(t + at, s, n) == 0;
}

size_t ellm_chat_tool_call_start(ellm_chat_family f, const char *text, size_t len)
{
    const char *marker = call_marker(f);
    if (!marker) {
        size_t at = skip_space(text, len, 0);
        if (at == len || text[at] == '{')
            return 0;
        size_t rest = len - at, tag = sizeof python_tag - 1;
        return memcmp(text + at, python_tag, rest < tag ? rest : tag) == 0 ? 0 : len;
    }
    if (f == ELLM_CHAT_MISTRAL_V3) {
        size_t at = skip_space(text, len, 0);
        if (at == len || text[at] == '[')
            return 0; /* the calls' list after a [TOOL_CALLS] control token, which writes no text */
    }
    size_t m = strlen(marker);
    for (size_t at = 0; at < len; at++) {
        size_t rest = len - at;
        if (memcmp(text + at, marker, rest < m ? rest : m) == 0)
            return at;
    }
    return len;
}

/* One JSON value at text[*at..len): parsed, *at moved past it. */
static json_t *read_json(const char *text, size_t len, size_t *at)
{
    json_error_t err;
    json_t *v = json_loadb(text + *at, len - *at, JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY, &err);
    if (v)
        *at += (size_t)err.position;
    return v;
}

static bool add_call(ellm_chat_parsed *out, const json_t *obj, const char *args_key, bool *bad)
{
    json_t *name = json_object_get(obj, "name");
    json_t *args = json_object_get(obj, args_key);
    if (!args && strcmp(args_key, "parameters") == 0)
        args = json_object_get(obj, "arguments");
    if (!json_is_object(obj) || !json_is_string(name) || json_string_length(name) == 0 ||
        strlen(json_string_value(name)) != json_string_length(name) ||
        (args && !json_is_object(args))) {
        *bad = true;
        return true;
    }
    ellm_chat_parsed_call *grown = realloc(out->calls, (out->n_calls + 1) * sizeof *grown);
    if (!grown)
        return false;
    out->calls = grown;
    ellm_chat_parsed_call *c = &out->calls[out->n_calls];
    c->name = strdup(json_string_value(name));
    c->arguments = NULL;
    size_t n = 0;
    json_t *empty = args ? NULL : json_object();
    bool ok = c->name && ellm_chat_json_dump(args ? args : empty, -1, true, &c->arguments, &n);
    json_decref(empty);
    if (!ok) {
        free(c->name);
        free(c->arguments);
        return false;
    }
    out->n_calls++;
    return true;
}

/* The calls after the content: true with out->calls filled, or *bad when the text is not calls
 * in the family's syntax. */
static bool parse_calls(ellm_chat_family f, const char *text, size_t len, size_t at,
                        ellm_chat_parsed *out, bool *bad)
{
    ellm_chat_tool_syntax syntax = ellm_chat_tool_call_syntax(f);
    const char *marker = call_marker(f);
    if (f == ELLM_CHAT_MISTRAL_V3) {
        if (starts_at(text, len, at, marker))
            at += strlen(marker);
        at = skip_space(text, len, at);
        json_t *list = read_json(text, len, &at);
        bool ok = true;
        if (!json_is_array(list) || json_array_size(list) == 0)
            *bad = true;
        for (size_t i = 0; ok && !*bad && i < json_array_size(list); i++)
            ok = add_call(out, json_array_get(list, i), syntax.args_key, bad);
        json_decref(list);
        if (skip_space(text, len, at) != len)
            *bad = true;
        return ok;
    }
    if (!marker) {
        /* Llama: the answer is one object (after <|python_tag|>), or several joined by ';'. */
        if (starts_at(text, len, at, python_tag))
            at = skip_space(text, len, at + strlen(python_tag));
        for (;;) {
            json_t *obj = read_json(text, len, &at);
            if (!obj) {
                *bad = true;
                return true;
            }
            bool ok = add_call(out, obj, syntax.args_key, bad);
            json_decref(obj);
            if (!ok || *bad)
                return ok;
            at = skip_space(text, len, at);
            if (at == len)
                return true;
            if (text[at] != ';') {
                *bad = true;
                return true;
            }
            at = skip_space(text, len, at + 1);
        }
    }
    /* <tool_call> blocks, each holding one object; the last one may lack its closing tag when
     * generation stopped right after the object. */
    while (at < len) {
        if (!starts_at(text, len, at, marker)) {
            *bad = true;
            return true;
        }
        at = skip_space(text, len, at + strlen(marker));
        json_t *obj = read_json(text, len, &at);
        if (!obj) {
            *bad = true;
            return true;
        }
        bool ok = add_call(out, obj, syntax.args_key, bad);
        json_decref(obj);
        if (!ok || *bad)
            return ok;
        at = skip_space(text, len, at);
        if (starts_at(text, len, at, "</tool_call>"))
            at = skip_space(text, len, at + strlen("</tool_call>"));
        else if (at != len)
            *bad = true;
    }
    return true;
}

void ellm_chat_parsed_free(ellm_chat_parsed *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n_calls; i++) {
        free(p->calls[i].name);
        free(p->calls[i].arguments);
    }
    free(p->calls);
    free(p->content);
    memset(p, 0, sizeof *p);
}

bool ellm_chat_parse_tool_calls(ellm_chat_family f, const char *text, size_t len,
                                ellm_chat_parsed *out)
{
    memset(out, 0, sizeof *out);
    if (!text)
        len = 0;
    size_t start = len;
    const char *marker = call_marker(f);
    if (!marker) {
        size_t at = skip_space(text, len, 0);
        if (at < len && (text[at] == '{' || starts_at(text, len, at, python_tag)))
            start = at;
    } else {
        for (size_t at = 0; at < len; at++) {
            if (starts_at(text, len, at, marker)) {
                start = at;
                break;
            }
        }
        /* Mistral's [TOOL_CALLS] and Llama's <|python_tag|> are control tokens: generated text
         * does not show them, so a Mistral answer that is a list is read as calls too. */
        size_t at = skip_space(text, len, 0);
        if (f == ELLM_CHAT_MISTRAL_V3 && start == len && at < len && text[at] == '[')
            start = at;
    }
    bool bad = start == len;
    bool ok = bad || parse_calls(f, text, len, start, out, &bad);
    if (ok && bad) {
        ellm_chat_parsed_free(out);
        start = len; /* not calls: all of it is content */
    }
    if (!ok) {
        ellm_chat_parsed_free(out);
        return false;
    }
    /* Before a call, the content loses the whitespace the template puts before the marker. */
    chat_span content = {text ? text : "", start};
    if (out->n_calls > 0)
        content = ellm_chat_rstrip(content);
    out->content = malloc(content.n + 1);
    if (!out->content) {
        ellm_chat_parsed_free(out);
        return false;
    }
    memcpy(out->content, content.p, content.n);
    out->content[content.n] = '\0';
    return true;
}
