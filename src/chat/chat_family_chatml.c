/* ChatML (<|im_start|>role\n...<|im_end|>) and the families built on it: SmolLM2 and Qwen 2/2.5
 * (default system messages, tool results) and Qwen 3 (<think> reasoning on the latest turns). */
#include "chat/chat_render.h"

bool chat_render_chatml(chat_render *r)
{
    for (size_t i = 0; i < r->n; i++) {
        chat_put(r, "<|im_start|>");
        chat_put(r, r->msgs[i].role);
        chat_put(r, "\n");
        chat_put(r, chat_content_of(&r->msgs[i]));
        chat_put(r, "<|im_end|>\n");
    }
    if (r->add_generation_prompt)
        chat_put(r, "<|im_start|>assistant\n");
    return true;
}

bool chat_render_smollm(chat_render *r)
{
    if (!chat_role_is(&r->msgs[0], "system"))
        chat_put(r, "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
               "Hugging Face<|im_end|>\n");
    return chat_render_chatml(r);
}

/* Qwen's tool results: consecutive "tool" messages share one user turn. */
static void put_qwen_tool(chat_render *r, size_t i)
{
    if (i == 0 || !chat_role_is(&r->msgs[i - 1], "tool"))
        chat_put(r, "<|im_start|>user");
    chat_put(r, "\n<tool_response>\n");
    chat_put(r, chat_content_of(&r->msgs[i]));
    chat_put(r, "\n</tool_response>");
    if (i + 1 == r->n || !chat_role_is(&r->msgs[i + 1], "tool"))
        chat_put(r, "<|im_end|>\n");
}

static void put_im_turn(chat_render *r, const char *role, chat_span content)
{
    chat_put(r, "<|im_start|>");
    chat_put(r, role);
    chat_put(r, "\n");
    chat_put_span(r, content);
    chat_put(r, "<|im_end|>\n");
}

bool chat_render_qwen25(chat_render *r, const char *default_system)
{
    if (chat_role_is(&r->msgs[0], "system"))
        put_im_turn(r, "system", chat_span_of(r->msgs[0].content));
    else
        put_im_turn(r, "system", chat_span_of(default_system));
    for (size_t i = 0; i < r->n; i++) {
        const ellm_chat_message *m = &r->msgs[i];
        if (chat_role_is(m, "user") || (chat_role_is(m, "system") && i > 0) ||
            chat_role_is(m, "assistant"))
            put_im_turn(r, m->role, chat_span_of(m->content));
        else if (chat_role_is(m, "tool"))
            put_qwen_tool(r, i);
    }
    if (r->add_generation_prompt)
        chat_put(r, "<|im_start|>assistant\n");
    return true;
}

/* The user message the last assistant turn answers: the last one that is not a tool result. */
static size_t qwen3_last_query(const chat_render *r)
{
    for (size_t k = r->n; k-- > 0;) {
        chat_span c = chat_span_of(r->msgs[k].content);
        if (chat_role_is(&r->msgs[k], "user") &&
            !(chat_span_starts_with(c, "<tool_response>") &&
              chat_span_ends_with(c, "</tool_response>")))
            return k;
    }
    return r->n - 1;
}

static void put_qwen3_assistant(chat_render *r, size_t i, size_t last_query)
{
    chat_span content = chat_span_of(r->msgs[i].content);
    chat_span reasoning = {"", 0};
    if (chat_span_contains(content, "</think>")) {
        chat_span whole = content;
        content = chat_lstrip_chars(chat_split_last(whole, "</think>"), "\n");
        chat_span before = chat_rstrip_chars(chat_split_first(whole, "</think>"), "\n");
        reasoning = chat_lstrip_chars(chat_split_last(before, "<think>"), "\n");
    }
    chat_put(r, "<|im_start|>assistant\n");
    if (i > last_query && (i + 1 == r->n || reasoning.n > 0)) {
        chat_put(r, "<think>\n");
        chat_put_span(r, chat_strip_chars(reasoning, "\n"));
        chat_put(r, "\n</think>\n\n");
        chat_put_span(r, chat_lstrip_chars(content, "\n"));
    } else {
        chat_put_span(r, content);
    }
    chat_put(r, "<|im_end|>\n");
}

bool chat_render_qwen3(chat_render *r)
{
    if (chat_role_is(&r->msgs[0], "system"))
        put_im_turn(r, "system", chat_span_of(r->msgs[0].content));
    size_t last_query = qwen3_last_query(r);
    for (size_t i = 0; i < r->n; i++) {
        const ellm_chat_message *m = &r->msgs[i];
        if (chat_role_is(m, "user") || (chat_role_is(m, "system") && i > 0))
            put_im_turn(r, m->role, chat_span_of(m->content));
        else if (chat_role_is(m, "assistant"))
            put_qwen3_assistant(r, i, last_query);
        else if (chat_role_is(m, "tool"))
            put_qwen_tool(r, i);
    }
    if (r->add_generation_prompt)
        chat_put(r, "<|im_start|>assistant\n");
    return true;
}
