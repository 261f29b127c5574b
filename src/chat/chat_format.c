/* ellm_chat_format: checks the conversation and hands it to the family's renderer
 * (chat_family_*.c), which reimplements that family's published Jinja template statement by
 * statement, so the output is the same bytes the template renders. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chat/chat_render.h"
#include "core/status.h"

bool ellm_chat_role_is(const ellm_chat_message *m, const char *role)
{
    return m->role && strcmp(m->role, role) == 0;
}

const char *ellm_chat_content_of(const ellm_chat_message *m)
{
    return m->content ? m->content : "";
}

/* Records out[offset, offset+length) as message text, merging with the previous range. */
static void record_span(chat_render *r, size_t offset, size_t length)
{
    if (!r->track_spans || length == 0)
        return;
    if (r->n_spans > 0) {
        ellm_chat_span *last = &r->spans[r->n_spans - 1];
        if (last->offset + last->length == offset) {
            last->length += length;
            return;
        }
    }
    if (r->n_spans == r->cap_spans) {
        size_t cap = r->cap_spans ? r->cap_spans * 2 : 16;
        ellm_chat_span *grown = realloc(r->spans, cap * sizeof *grown);
        if (!grown) {
            r->spans_failed = true;
            return;
        }
        r->spans = grown;
        r->cap_spans = cap;
    }
    r->spans[r->n_spans++] = (ellm_chat_span){offset, length};
}

/* Whether p points into one of the messages' own strings (compared as addresses: the pieces a
 * renderer writes are the template's literals, the bos/eos texts, or views of message text). */
static bool from_message(const chat_render *r, const char *p)
{
    uintptr_t a = (uintptr_t)p;
    for (size_t i = 0; i < r->n; i++) {
        const char *strs[2] = {r->msgs[i].role, r->msgs[i].content};
        for (int k = 0; k < 2; k++) {
            if (!strs[k])
                continue;
            uintptr_t lo = (uintptr_t)strs[k];
            if (a >= lo && a <= lo + strlen(strs[k]))
                return true;
        }
    }
    return false;
}

static void put_bytes(chat_render *r, const char *s, size_t n)
{
    size_t offset = r->out.len;
    ellm_chat_buf_append_n(&r->out, s, n);
    if (r->track_spans && r->content_depth == 0 && n > 0 && from_message(r, s))
        record_span(r, offset, r->out.len - offset);
}

void ellm_chat_put(chat_render *r, const char *s)
{
    if (s)
        put_bytes(r, s, strlen(s));
}
void ellm_chat_put_span(chat_render *r, chat_span s) { put_bytes(r, s.p, s.n); }

void ellm_chat_content_begin(chat_render *r)
{
    if (r->content_depth++ == 0)
        r->content_start = r->out.len;
}

void ellm_chat_content_end(chat_render *r)
{
    if (--r->content_depth == 0)
        record_span(r, r->content_start, r->out.len - r->content_start);
}

/* The template's raise_exception(message): the render fails. */
bool ellm_chat_raise(chat_render *r, const char *family, const char *message)
{
    ellm_chat_buf_discard(&r->out);
    ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "the %s chat template rejects this conversation: %s",
              family, message);
    return false;
}

/* Roles must alternate user/assistant/user/... from position 0 of loop_messages. */
bool ellm_chat_alternates(const ellm_chat_message *m, size_t index0)
{
    return ellm_chat_role_is(m, "user") == (index0 % 2 == 0);
}

/* Whether a family's own template renders tools and tool calls. */
static bool renders_tools(ellm_chat_family f)
{
    return f == ELLM_CHAT_LLAMA31 || f == ELLM_CHAT_LLAMA32 || f == ELLM_CHAT_QWEN25 ||
           f == ELLM_CHAT_QWEN2 || f == ELLM_CHAT_QWEN3 || f == ELLM_CHAT_MISTRAL_V3;
}

static bool has_tool_calls(const chat_render *r)
{
    for (size_t i = 0; i < r->n; i++)
        if (ellm_chat_tools_of_message(r, i)->n_calls > 0)
            return true;
    return false;
}

static bool render_default_qwen25(chat_render *r)
{
    return ellm_chat_render_qwen25(
        r, "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.");
}

static bool render_llama32(chat_render *r)
{
    char date[32];
    ellm_chat_today(date, sizeof date);
    return ellm_chat_render_llama31(r, date);
}

static bool render_llama31(chat_render *r) { return ellm_chat_render_llama31(r, "26 Jul 2024"); }
static bool render_qwen2(chat_render *r)
{
    return ellm_chat_render_qwen25(r, "You are a helpful assistant.");
}

static bool (*const renderers[ELLM_CHAT_FAMILY_COUNT])(chat_render *) = {
    [ELLM_CHAT_CHATML] = ellm_chat_render_chatml,
    [ELLM_CHAT_LLAMA2] = ellm_chat_render_llama2,
    [ELLM_CHAT_LLAMA3] = ellm_chat_render_llama3,
    [ELLM_CHAT_GEMMA] = ellm_chat_render_gemma,
    [ELLM_CHAT_PHI3] = ellm_chat_render_phi3,
    [ELLM_CHAT_ZEPHYR] = ellm_chat_render_zephyr,
    [ELLM_CHAT_MISTRAL] = ellm_chat_render_mistral,
    [ELLM_CHAT_MISTRAL_V3] = ellm_chat_render_mistral_v3,
    [ELLM_CHAT_SMOLLM] = ellm_chat_render_smollm,
    [ELLM_CHAT_QWEN25] = render_default_qwen25,
    [ELLM_CHAT_QWEN2] = render_qwen2,
    [ELLM_CHAT_QWEN3] = ellm_chat_render_qwen3,
    [ELLM_CHAT_LLAMA31] = render_llama31,
    [ELLM_CHAT_LLAMA32] = render_llama32,
};

char *ellm_chat_format_with_tools(ellm_chat_family f, const ellm_chat_message *msgs, size_t n,
                                  const ellm_chat_tools *tools, const chat_tool_ops *ops,
                                  bool add_generation_prompt, const char *bos_text,
                                  const char *eos_text, ellm_chat_span **spans, size_t *n_spans)
{
    static const ellm_chat_tools no_tools = {NULL, NULL};
    if (spans) {
        *spans = NULL;
        *n_spans = 0;
    }
    if (!msgs || n == 0) {
        ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "a chat prompt needs at least one message");
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (!msgs[i].role || !*msgs[i].role) {
            ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                      "chat message %zu has no role: give \"system\", \"user\" or \"assistant\"",
                      i);
            return NULL;
        }
    }
    chat_render r = {.msgs = msgs,
                     .n = n,
                     .add_generation_prompt = add_generation_prompt,
                     .bos = bos_text ? bos_text : "",
                     .eos = eos_text ? eos_text : "",
                     .tools = tools && ops ? tools : &no_tools,
                     .tool_ops = tools ? ops : NULL,
                     .track_spans = spans != NULL};
    if ((unsigned)f >= ELLM_CHAT_FAMILY_COUNT) {
        ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "unknown chat template family %d", (int)f);
        return NULL;
    }
    bool ok;
    if (r.tool_ops && !renders_tools(f) && (ellm_chat_tool_count(&r) > 0 || has_tool_calls(&r)))
        ok = r.tool_ops->hermes_fallback(&r, renderers[f]);
    else
        ok = renderers[f](&r);
    char *text = ok ? ellm_chat_buf_finish(&r.out) : NULL;
    if (text && r.spans_failed) {
        free(text);
        text = NULL;
        ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the chat prompt's message spans");
    }
    if (!text) {
        free(r.spans);
        return NULL;
    }
    if (spans) {
        *spans = r.spans;
        *n_spans = r.n_spans;
    }
    return text;
}

char *ellm_chat_format(ellm_chat_family f, const ellm_chat_message *msgs, size_t n,
                       bool add_generation_prompt, const char *bos_text, const char *eos_text)
{
    return ellm_chat_format_with_tools(f, msgs, n, NULL, NULL, add_generation_prompt, bos_text,
                                       eos_text, NULL, NULL);
}

char *ellm_chat_format_spans(ellm_chat_family f, const ellm_chat_message *msgs, size_t n,
                             bool add_generation_prompt, const char *bos_text, const char *eos_text,
                             ellm_chat_span **spans, size_t *n_spans)
{
    if (!spans || !n_spans) {
        ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "ellm_chat_format_spans: spans is NULL");
        return NULL;
    }
    return ellm_chat_format_with_tools(f, msgs, n, NULL, NULL, add_generation_prompt, bos_text,
                                       eos_text, spans, n_spans);
}

size_t ellm_chat_tool_count(const chat_render *r)
{
    return r->tool_ops ? r->tool_ops->count(r) : 0;
}

bool ellm_chat_tools_given(const chat_render *r) { return r->tool_ops && r->tool_ops->given(r); }

void ellm_chat_put_tool(chat_render *r, size_t t, int indent)
{
    if (t < ellm_chat_tool_count(r))
        r->tool_ops->put_tool(r, t, indent);
}

void ellm_chat_put_arguments(chat_render *r, const ellm_chat_tool_call *c, bool raw_strings)
{
    if (r->tool_ops && c->arguments)
        r->tool_ops->put_arguments(r, c, raw_strings);
    else
        ellm_chat_put(r, "null");
}

const ellm_chat_message_tools *ellm_chat_tools_of_message(const chat_render *r, size_t i)
{
    static const ellm_chat_message_tools none = {NULL, 0, NULL};
    return r->tools->per_message && i < r->n ? &r->tools->per_message[i] : &none;
}

void ellm_chat_put_json_string(chat_render *r, const char *s)
{
    chat_buf text = {0};
    ellm_chat_buf_json_string(&text, s ? s : "", s ? strlen(s) : 0);
    if (text.failed)
        r->out.failed = true;
    ellm_chat_content_begin(r);
    ellm_chat_put_span(r, (chat_span){text.data ? text.data : "", text.len});
    ellm_chat_content_end(r);
    ellm_chat_buf_discard(&text);
}

void ellm_chat_put_request_text(chat_render *r, const char *s)
{
    ellm_chat_content_begin(r);
    ellm_chat_put(r, s ? s : "");
    ellm_chat_content_end(r);
}
