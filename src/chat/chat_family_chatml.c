/* ChatML (<|im_start|>role\n...<|im_end|>) and the families built on it: SmolLM2 and Qwen 2/2.5
 * (default system messages, tools, tool calls and results) and Qwen 3 (<think> reasoning on the
 * latest turns). */
#include "chat/chat_render.h"

bool ellm_chat_render_chatml(chat_render *r)
{
    for (size_t i = 0; i < r->n; i++) {
        ellm_chat_put(r, "<|im_start|>");
        ellm_chat_put(r, r->msgs[i].role);
        ellm_chat_put(r, "\n");
        ellm_chat_put(r, ellm_chat_content_of(&r->msgs[i]));
        ellm_chat_put(r, "<|im_end|>\n");
    }
    if (r->add_generation_prompt)
        ellm_chat_put(r, "<|im_start|>assistant\n");
    return true;
}

bool ellm_chat_render_smollm(chat_render *r)
{
    if (!ellm_chat_role_is(&r->msgs[0], "system"))
        ellm_chat_put(r,
                      "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
                      "Hugging Face<|im_end|>\n");
    return ellm_chat_render_chatml(r);
}

/* Qwen's tool results: consecutive "tool" messages share one user turn. */
static void put_qwen_tool(chat_render *r, size_t i)
{
    if (i == 0 || !ellm_chat_role_is(&r->msgs[i - 1], "tool"))
        ellm_chat_put(r, "<|im_start|>user");
    ellm_chat_put(r, "\n<tool_response>\n");
    ellm_chat_put(r, ellm_chat_content_of(&r->msgs[i]));
    ellm_chat_put(r, "\n</tool_response>");
    if (i + 1 == r->n || !ellm_chat_role_is(&r->msgs[i + 1], "tool"))
        ellm_chat_put(r, "<|im_end|>\n");
}

/* The system turn that lists the tools (Qwen 2.5 and 3 write the same block). */
static void put_qwen_tools(chat_render *r)
{
    ellm_chat_put(r,
                  "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
                  "You are provided with function signatures within <tools></tools> XML tags:\n"
                  "<tools>");
    for (size_t t = 0; t < ellm_chat_tool_count(r); t++) {
        ellm_chat_put(r, "\n");
        ellm_chat_put_tool(r, t, -1);
    }
    ellm_chat_put(r,
                  "\n</tools>\n\nFor each function call, return a json object with function name "
                  "and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": "
                  "<function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n");
}

/* One call as a <tool_call> block; Qwen 3 writes string arguments as they are. */
static void put_qwen_call(chat_render *r, const ellm_chat_tool_call *c, bool raw_strings)
{
    ellm_chat_put(r, "<tool_call>\n{\"name\": \"");
    ellm_chat_put_request_text(r, c->name);
    ellm_chat_put(r, "\", \"arguments\": ");
    ellm_chat_put_arguments(r, c, raw_strings);
    ellm_chat_put(r, "}\n</tool_call>");
}

static void put_im_turn(chat_render *r, const char *role, chat_span content)
{
    ellm_chat_put(r, "<|im_start|>");
    ellm_chat_put(r, role);
    ellm_chat_put(r, "\n");
    ellm_chat_put_span(r, content);
    ellm_chat_put(r, "<|im_end|>\n");
}

bool ellm_chat_render_qwen25(chat_render *r, const char *default_system)
{
    if (ellm_chat_tool_count(r) > 0) {
        ellm_chat_put(r, "<|im_start|>system\n");
        ellm_chat_put(r, ellm_chat_role_is(&r->msgs[0], "system")
                             ? ellm_chat_content_of(&r->msgs[0])
                             : default_system);
        ellm_chat_put(r, "\n\n");
        put_qwen_tools(r);
    } else if (ellm_chat_role_is(&r->msgs[0], "system")) {
        put_im_turn(r, "system", ellm_chat_span_of(r->msgs[0].content));
    } else {
        put_im_turn(r, "system", ellm_chat_span_of(default_system));
    }
    for (size_t i = 0; i < r->n; i++) {
        const ellm_chat_message *m = &r->msgs[i];
        const ellm_chat_message_tools *mt = ellm_chat_tools_of_message(r, i);
        if (ellm_chat_role_is(m, "user") || (ellm_chat_role_is(m, "system") && i > 0) ||
            (ellm_chat_role_is(m, "assistant") && mt->n_calls == 0)) {
            put_im_turn(r, m->role, ellm_chat_span_of(m->content));
        } else if (ellm_chat_role_is(m, "assistant")) {
            ellm_chat_put(r, "<|im_start|>assistant");
            if (*ellm_chat_content_of(m)) {
                ellm_chat_put(r, "\n");
                ellm_chat_put(r, m->content);
            }
            for (size_t c = 0; c < mt->n_calls; c++) {
                ellm_chat_put(r, "\n");
                put_qwen_call(r, &mt->calls[c], false);
            }
            ellm_chat_put(r, "<|im_end|>\n");
        } else if (ellm_chat_role_is(m, "tool")) {
            put_qwen_tool(r, i);
        }
    }
    if (r->add_generation_prompt)
        ellm_chat_put(r, "<|im_start|>assistant\n");
    return true;
}

/* The user message the last assistant turn answers: the last one that is not a tool result. */
static size_t qwen3_last_query(const chat_render *r)
{
    for (size_t k = r->n; k-- > 0;) {
        chat_span c = ellm_chat_span_of(r->msgs[k].content);
        if (ellm_chat_role_is(&r->msgs[k], "user") &&
            !(ellm_chat_span_starts_with(c, "<tool_response>") &&
              ellm_chat_span_ends_with(c, "</tool_response>")))
            return k;
    }
    return r->n - 1;
}

static void put_qwen3_assistant(chat_render *r, size_t i, size_t last_query)
{
    chat_span content = ellm_chat_span_of(r->msgs[i].content);
    chat_span reasoning = {"", 0};
    if (ellm_chat_span_contains(content, "</think>")) {
        chat_span whole = content;
        content = ellm_chat_lstrip_chars(ellm_chat_split_last(whole, "</think>"), "\n");
        chat_span before = ellm_chat_rstrip_chars(ellm_chat_split_first(whole, "</think>"), "\n");
        reasoning = ellm_chat_lstrip_chars(ellm_chat_split_last(before, "<think>"), "\n");
    }
    ellm_chat_put(r, "<|im_start|>assistant\n");
    if (i > last_query && (i + 1 == r->n || reasoning.n > 0)) {
        ellm_chat_put(r, "<think>\n");
        ellm_chat_put_span(r, ellm_chat_strip_chars(reasoning, "\n"));
        ellm_chat_put(r, "\n</think>\n\n");
        ellm_chat_put_span(r, ellm_chat_lstrip_chars(content, "\n"));
    } else {
        ellm_chat_put_span(r, content);
    }
    const ellm_chat_message_tools *mt = ellm_chat_tools_of_message(r, i);
    for (size_t c = 0; c < mt->n_calls; c++) {
        if (c > 0 || content.n > 0)
            ellm_chat_put(r, "\n");
        put_qwen_call(r, &mt->calls[c], true);
    }
    ellm_chat_put(r, "<|im_end|>\n");
}

bool ellm_chat_render_qwen3(chat_render *r)
{
    if (ellm_chat_tool_count(r) > 0) {
        ellm_chat_put(r, "<|im_start|>system\n");
        if (ellm_chat_role_is(&r->msgs[0], "system")) {
            ellm_chat_put(r, ellm_chat_content_of(&r->msgs[0]));
            ellm_chat_put(r, "\n\n");
        }
        put_qwen_tools(r);
    } else if (ellm_chat_role_is(&r->msgs[0], "system")) {
        put_im_turn(r, "system", ellm_chat_span_of(r->msgs[0].content));
    }
    size_t last_query = qwen3_last_query(r);
    for (size_t i = 0; i < r->n; i++) {
        const ellm_chat_message *m = &r->msgs[i];
        if (ellm_chat_role_is(m, "user") || (ellm_chat_role_is(m, "system") && i > 0))
            put_im_turn(r, m->role, ellm_chat_span_of(m->content));
        else if (ellm_chat_role_is(m, "assistant"))
            put_qwen3_assistant(r, i, last_query);
        else if (ellm_chat_role_is(m, "tool"))
            put_qwen_tool(r, i);
    }
    if (r->add_generation_prompt)
        ellm_chat_put(r, "<|im_start|>assistant\n");
    return true;
}
