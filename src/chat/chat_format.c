/* The chat template of each family, reimplemented statement by statement from its published
 * Jinja source (tests/chat_reference/templates and the shared tokenizer_config.json files), so
 * the output is the same bytes the template renders. Where a template raises an exception the
 * renderer fails with the template's own message. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "chat/chat.h"
#include "chat/chat_text.h"
#include "core/status.h"

typedef struct render {
    const ellm_chat_message *msgs;
    size_t n;
    bool add_generation_prompt;
    const char *bos;
    const char *eos;
    chat_buf out;
} render;

static bool role_is(const ellm_chat_message *m, const char *role)
{
    return m->role && strcmp(m->role, role) == 0;
}

static const char *content_of(const ellm_chat_message *m) { return m->content ? m->content : ""; }

static void put(render *r, const char *s) { chat_buf_append(&r->out, s); }
static void put_span(render *r, chat_span s) { chat_buf_append_n(&r->out, s.p, s.n); }

/* The template's raise_exception(message): the render fails. */
static bool raise(render *r, const char *family, const char *message)
{
    chat_buf_discard(&r->out);
    ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "the %s chat template rejects this conversation: %s",
              family, message);
    return false;
}

/* Roles must alternate user/assistant/user/... from position 0 of loop_messages. */
static bool alternates(const ellm_chat_message *m, size_t index0)
{
    return role_is(m, "user") == (index0 % 2 == 0);
}

static bool render_chatml(render *r)
{
    for (size_t i = 0; i < r->n; i++) {
        put(r, "<|im_start|>");
        put(r, r->msgs[i].role);
        put(r, "\n");
        put(r, content_of(&r->msgs[i]));
        put(r, "<|im_end|>\n");
    }
    if (r->add_generation_prompt)
        put(r, "<|im_start|>assistant\n");
    return true;
}

static bool render_smollm(render *r)
{
    if (!role_is(&r->msgs[0], "system"))
        put(r, "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
               "Hugging Face<|im_end|>\n");
    return render_chatml(r);
}

static bool render_llama2(render *r)
{
    const ellm_chat_message *loop = r->msgs;
    size_t n = r->n;
    const char *system = NULL;
    if (role_is(&r->msgs[0], "system")) {
        system = content_of(&r->msgs[0]);
        loop++;
        n--;
    }
    for (size_t i = 0; i < n; i++) {
        const ellm_chat_message *m = &loop[i];
        if (!alternates(m, i))
            return raise(r, "llama2",
                         "Conversation roles must alternate user/assistant/user/assistant/...");
        chat_buf content = {0};
        if (i == 0 && system) {
            chat_buf_append(&content, "<<SYS>>\n");
            chat_buf_append(&content, system);
            chat_buf_append(&content, "\n<</SYS>>\n\n");
        }
        chat_buf_append(&content, content_of(m));
        chat_span text = {content.data ? content.data : "", content.len};
        if (content.failed)
            r->out.failed = true;
        if (role_is(m, "user")) {
            put(r, r->bos);
            put(r, "[INST] ");
            put_span(r, chat_strip(text));
            put(r, " [/INST]");
        } else if (role_is(m, "assistant")) {
            put(r, " ");
            put_span(r, chat_strip(text));
            put(r, " ");
            put(r, r->eos);
        }
        chat_buf_discard(&content);
    }
    return true;
}

static bool render_llama3(render *r)
{
    for (size_t i = 0; i < r->n; i++) {
        if (i == 0)
            put(r, r->bos);
        put(r, "<|start_header_id|>");
        put(r, r->msgs[i].role);
        put(r, "<|end_header_id|>\n\n");
        put_span(r, chat_strip(chat_span_of(r->msgs[i].content)));
        put(r, "<|eot_id|>");
    }
    if (r->add_generation_prompt)
        put(r, "<|start_header_id|>assistant<|end_header_id|>\n\n");
    return true;
}

/* tojson of a string as transformers defines it (json.dumps, non-ASCII kept). */
static void put_json_string(render *r, const char *s)
{
    put(r, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        switch (*p) {
        case '"': put(r, "\\\""); break;
        case '\\': put(r, "\\\\"); break;
        case '\n': put(r, "\\n"); break;
        case '\r': put(r, "\\r"); break;
        case '\t': put(r, "\\t"); break;
        case '\b': put(r, "\\b"); break;
        case '\f': put(r, "\\f"); break;
        default:
            if (*p < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", *p);
                put(r, esc);
            } else {
                chat_buf_append_n(&r->out, (const char *)p, 1);
            }
        }
    }
    put(r, "\"");
}

/* Llama 3.1 / 3.2 (without tools): a system turn with the knowledge cutoff and the date, then
 * Llama 3 turns; tool results become ipython turns holding their text as a JSON string (a string
 * "is iterable" in Jinja, so the template passes it through tojson). */
static bool render_llama31(render *r, const char *date)
{
    put(r, r->bos);
    const ellm_chat_message *loop = r->msgs;
    size_t n = r->n;
    chat_span system = {"", 0};
    if (role_is(&r->msgs[0], "system")) {
        system = chat_strip(chat_span_of(r->msgs[0].content));
        loop++;
        n--;
    }
    put(r, "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
           "Today Date: ");
    put(r, date);
    put(r, "\n\n");
    put_span(r, system);
    put(r, "<|eot_id|>");
    for (size_t i = 0; i < n; i++) {
        const ellm_chat_message *m = &loop[i];
        if (role_is(m, "tool") || role_is(m, "ipython")) {
            put(r, "<|start_header_id|>ipython<|end_header_id|>\n\n");
            put_json_string(r, content_of(m));
        } else {
            put(r, "<|start_header_id|>");
            put(r, m->role);
            put(r, "<|end_header_id|>\n\n");
            put_span(r, chat_strip(chat_span_of(m->content)));
        }
        put(r, "<|eot_id|>");
    }
    if (r->add_generation_prompt)
        put(r, "<|start_header_id|>assistant<|end_header_id|>\n\n");
    return true;
}

/* Today's date as strftime_now("%d %b %Y") gives it: local time, English month abbreviation. */
static void today(char *buf, size_t cap)
{
    static const char *const months[12] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t now = time(NULL);
    struct tm tm;
    if (!localtime_r(&now, &tm)) {
        snprintf(buf, cap, "26 Jul 2024"); /* the template's own fallback */
        return;
    }
    snprintf(buf, cap, "%02d %s %d", tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900);
}

static bool render_gemma(render *r)
{
    put(r, r->bos);
    const ellm_chat_message *loop = r->msgs;
    size_t n = r->n;
    const char *first_user_prefix = NULL;
    if (role_is(&r->msgs[0], "system")) {
        first_user_prefix = content_of(&r->msgs[0]);
        loop++;
        n--;
    }
    for (size_t i = 0; i < n; i++) {
        const ellm_chat_message *m = &loop[i];
        if (!alternates(m, i))
            return raise(r, "gemma",
                         "Conversation roles must alternate user/assistant/user/assistant/...");
        put(r, "<start_of_turn>");
        put(r, role_is(m, "assistant") ? "model" : m->role);
        put(r, "\n");
        if (i == 0 && first_user_prefix) {
            put(r, first_user_prefix);
            put(r, "\n\n");
        }
        put_span(r, chat_strip(chat_span_of(m->content)));
        put(r, "<end_of_turn>\n");
    }
    if (r->add_generation_prompt)
        put(r, "<start_of_turn>model\n");
    return true;
}

static bool render_phi3(render *r)
{
    for (size_t i = 0; i < r->n; i++) {
        const ellm_chat_message *m = &r->msgs[i];
        const char *tag = role_is(m, "system")      ? "<|system|>\n"
                          : role_is(m, "user")      ? "<|user|>\n"
                          : role_is(m, "assistant") ? "<|assistant|>\n"
                                                    : NULL;
        if (!tag)
            continue; /* the template has no branch for other roles */
        put(r, tag);
        put(r, content_of(m));
        put(r, "<|end|>\n");
    }
    put(r, r->add_generation_prompt ? "<|assistant|>\n" : r->eos);
    return true;
}

/* The template puts a newline after each turn's EOS: its lines end outside the expressions. */
static bool render_zephyr(render *r)
{
    for (size_t i = 0; i < r->n; i++) {
        const ellm_chat_message *m = &r->msgs[i];
        const char *tag = role_is(m, "user")        ? "<|user|>\n"
                          : role_is(m, "system")    ? "<|system|>\n"
                          : role_is(m, "assistant") ? "<|assistant|>\n"
                                                    : NULL;
        if (tag) {
            put(r, tag);
            put(r, content_of(m));
            put(r, r->eos);
            put(r, "\n");
        }
        if (i + 1 == r->n && r->add_generation_prompt)
            put(r, "<|assistant|>\n");
    }
    return true;
}

static bool render_mistral(render *r)
{
    const ellm_chat_message *loop = r->msgs;
    size_t n = r->n;
    const char *system = NULL;
    if (role_is(&r->msgs[0], "system")) {
        system = content_of(&r->msgs[0]);
        loop++;
        n--;
    }
    put(r, r->bos);
    for (size_t i = 0; i < n; i++) {
        const ellm_chat_message *m = &loop[i];
        if (!alternates(m, i))
            return raise(r, "mistral",
                         "After the optional system message, conversation roles must alternate "
                         "user/assistant/user/assistant/...");
        if (role_is(m, "user")) {
            put(r, " [INST] ");
            if (i == 0 && system) {
                put(r, system);
                put(r, "\n\n");
            }
            put(r, content_of(m));
            put(r, " [/INST]");
        } else if (role_is(m, "assistant")) {
            put(r, " ");
            put(r, content_of(m));
            put(r, r->eos);
        } else {
            return raise(r, "mistral",
                         "Only user and assistant roles are supported, with the exception of an "
                         "initial optional system message!");
        }
    }
    return true;
}

/* Qwen's tool results: consecutive "tool" messages share one user turn. */
static void put_qwen_tool(render *r, size_t i)
{
    if (i == 0 || !role_is(&r->msgs[i - 1], "tool"))
        put(r, "<|im_start|>user");
    put(r, "\n<tool_response>\n");
    put(r, content_of(&r->msgs[i]));
    put(r, "\n</tool_response>");
    if (i + 1 == r->n || !role_is(&r->msgs[i + 1], "tool"))
        put(r, "<|im_end|>\n");
}

static void put_im_turn(render *r, const char *role, chat_span content)
{
    put(r, "<|im_start|>");
    put(r, role);
    put(r, "\n");
    put_span(r, content);
    put(r, "<|im_end|>\n");
}

static bool render_qwen25(render *r)
{
    if (role_is(&r->msgs[0], "system"))
        put_im_turn(r, "system", chat_span_of(r->msgs[0].content));
    else
        put(r, "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
               "assistant.<|im_end|>\n");
    for (size_t i = 0; i < r->n; i++) {
        const ellm_chat_message *m = &r->msgs[i];
        if (role_is(m, "user") || (role_is(m, "system") && i > 0) || role_is(m, "assistant"))
            put_im_turn(r, m->role, chat_span_of(m->content));
        else if (role_is(m, "tool"))
            put_qwen_tool(r, i);
    }
    if (r->add_generation_prompt)
        put(r, "<|im_start|>assistant\n");
    return true;
}

/* The user message the last assistant turn answers: the last one that is not a tool result. */
static size_t qwen3_last_query(const render *r)
{
    for (size_t k = r->n; k-- > 0;) {
        chat_span c = chat_span_of(r->msgs[k].content);
        if (role_is(&r->msgs[k], "user") &&
            !(chat_span_starts_with(c, "<tool_response>") &&
              chat_span_ends_with(c, "</tool_response>")))
            return k;
    }
    return r->n - 1;
}

static void put_qwen3_assistant(render *r, size_t i, size_t last_query)
{
    chat_span content = chat_span_of(r->msgs[i].content);
    chat_span reasoning = {"", 0};
    if (chat_span_contains(content, "</think>")) {
        chat_span whole = content;
        content = chat_lstrip_chars(chat_split_last(whole, "</think>"), "\n");
        reasoning = chat_lstrip_chars(
            chat_split_last(chat_rstrip_chars(chat_split_first(whole, "</think>"), "\n"), "<think>"),
            "\n");
    }
    put(r, "<|im_start|>assistant\n");
    if (i > last_query && (i + 1 == r->n || reasoning.n > 0)) {
        put(r, "<think>\n");
        put_span(r, chat_strip_chars(reasoning, "\n"));
        put(r, "\n</think>\n\n");
        put_span(r, chat_lstrip_chars(content, "\n"));
    } else {
        put_span(r, content);
    }
    put(r, "<|im_end|>\n");
}

static bool render_qwen3(render *r)
{
    if (role_is(&r->msgs[0], "system"))
        put_im_turn(r, "system", chat_span_of(r->msgs[0].content));
    size_t last_query = qwen3_last_query(r);
    for (size_t i = 0; i < r->n; i++) {
        const ellm_chat_message *m = &r->msgs[i];
        if (role_is(m, "user") || (role_is(m, "system") && i > 0))
            put_im_turn(r, m->role, chat_span_of(m->content));
        else if (role_is(m, "assistant"))
            put_qwen3_assistant(r, i, last_query);
        else if (role_is(m, "tool"))
            put_qwen_tool(r, i);
    }
    if (r->add_generation_prompt)
        put(r, "<|im_start|>assistant\n");
    return true;
}

char *ellm_chat_format(ellm_chat_family f, const ellm_chat_message *msgs, size_t n,
                       bool add_generation_prompt, const char *bos_text, const char *eos_text)
{
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
    render r = {.msgs = msgs,
                .n = n,
                .add_generation_prompt = add_generation_prompt,
                .bos = bos_text ? bos_text : "",
                .eos = eos_text ? eos_text : ""};
    bool ok;
    switch (f) {
    case ELLM_CHAT_CHATML: ok = render_chatml(&r); break;
    case ELLM_CHAT_LLAMA2: ok = render_llama2(&r); break;
    case ELLM_CHAT_LLAMA3: ok = render_llama3(&r); break;
    case ELLM_CHAT_GEMMA: ok = render_gemma(&r); break;
    case ELLM_CHAT_PHI3: ok = render_phi3(&r); break;
    case ELLM_CHAT_ZEPHYR: ok = render_zephyr(&r); break;
    case ELLM_CHAT_MISTRAL: ok = render_mistral(&r); break;
    case ELLM_CHAT_SMOLLM: ok = render_smollm(&r); break;
    case ELLM_CHAT_QWEN25: ok = render_qwen25(&r); break;
    case ELLM_CHAT_QWEN3: ok = render_qwen3(&r); break;
    case ELLM_CHAT_LLAMA31: ok = render_llama31(&r, "26 Jul 2024"); break;
    case ELLM_CHAT_LLAMA32: {
        char date[32];
        today(date, sizeof date);
        ok = render_llama31(&r, date);
        break;
    }
    default:
        ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "unknown chat template family %d", (int)f);
        return NULL;
    }
    return ok ? chat_buf_finish(&r.out) : NULL;
}
