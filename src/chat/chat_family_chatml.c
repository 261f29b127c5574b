/* ChatML (<|im_start|>role\n...<|im_end|>) and the families built on it: SmolLM2 and Qwen 2/2.5
 * (default system messages, tools, tool calls and results) and Qwen 3 (<think> reasoning on the
 * latest turns). */
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

/* The system turn that lists the tools (Qwen 2.5 and 3 write the same block). */
static void put_qwen_tools(chat_render *r)
{
    chat_put(r, "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
                "You are provided with function signatures within <tools></tools> XML tags:\n"
                "<tools>");
    for (size_t t = 0; t < chat_tool_count(r); t++) {
        chat_put(r, "\n");
        chat_put_tool(r, t, -1);
    }
    chat_put(r, "\n</tools>\n\nFor each function call, return a json object with function name "
                "and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": "
                "<function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n");
}

/* One call as a <tool_call> block; Qwen 3 writes string arguments as they are. */
static void put_qwen_call(chat_render *r, const ellm_chat_tool_call *c, bool raw_strings)
{
    chat_put(r, "<tool_call>\n{\"name\": \"");
    chat_put_request_text(r, c->name);
    chat_put(r, "\", \"arguments\": ");
    chat_put_arguments(r, c, raw_strings);
    chat_put(r, "}\n</tool_call>");
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
    if (chat_tool_count(r) > 0) {
        chat_put(r, "<|im_start|>system\n");
        chat_put(r, chat_role_is(&r->msgs[0], "system") ? chat_content_of(&r->msgs[0])
                                                        : default_system);
        chat_put(r, "\n\n");
        put_qwen_tools(r);
    } else if (chat_role_is(&r->msgs[0], "system")) {
        put_im_turn(r, "system", chat_span_of(r->msgs[0].content));
    } else {
        put_im_turn(r, "system", chat_span_of(default_system));
    }
    for (size_t i = 0; i < r->n; i++) {
        const ellm_chat_message *m = &r->msgs[i];
        const ellm_chat_message_tools *mt = chat_message_tools(r, i);
        if (chat_role_is(m, "user") || (chat_role_is(m, "system") && i > 0) ||
            (chat_role_is(m, "assistant") && mt->n_calls == 0)) {
            put_im_turn(r, m->role, chat_span_of(m->content));
        } else if (chat_role_is(m, "assistant")) {
            chat_put(r, "<|im_start|>assistant");
            if (*chat_content_of(m)) {
                chat_put(r, "\n");
                chat_put(r, m->content);
            }
            for (size_t c = 0; c < mt->n_calls; c++) {
                chat_put(r, "\n");
                put_qwen_call(r, &mt->calls[c], false);
            }
            chat_put(r, "<|im_end|>\n");
        } else if (chat_role_is(m, "tool")) {
            put_qwen_tool(r, i);
        }
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
    const ellm_chat_message_tools *mt = chat_message_tools(r, i);
    for (size_t c = 0; c < mt->n_calls; c++) {
        if (c > 0 || content.n > 0)
            chat_put(r, "\n");
        put_qwen_call(r, &mt->calls[c], true);
    }
    chat_put(r, "<|im_end|>\n");
}

bool chat_render_qwen3(chat_render *r)
{
    if (chat_tool_count(r) > 0) {
        chat_put(r, "<|im_start|>system\n");
        if (chat_role_is(&r->msgs[0], "system")) {
            chat_put(r, chat_content_of(&r->msgs[0]));
            chat_put(r, "\n\n");
        }
        put_qwen_tools(r);
    } else if (chat_role_is(&r->msgs[0], "system")) {
        put_im_turn(r, "system", chat_span_of(r->msgs[0].content));
    }
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
