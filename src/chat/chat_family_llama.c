/* Llama 2 (<<SYS>> in the first [INST]), Llama 3 (header turns) and Llama 3.1/3.2 (a system turn
 * with the knowledge cutoff and the date). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <time.h>

#include "chat/chat_render.h"

bool ellm_chat_render_llama2(chat_render *r)
{
    const ellm_chat_message *loop = r->msgs;
    size_t n = r->n;
    const char *system = NULL;
    if (ellm_chat_role_is(&r->msgs[0], "system")) {
        system = ellm_chat_content_of(&r->msgs[0]);
        loop++;
        n--;
    }
    for (size_t i = 0; i < n; i++) {
        const ellm_chat_message *m = &loop[i];
        if (!ellm_chat_alternates(m, i))
            return ellm_chat_raise(
                r, "llama2", "Conversation roles must alternate user/assistant/user/assistant/...");
        chat_buf content = {0};
        if (i == 0 && system) {
            ellm_chat_buf_append(&content, "<<SYS>>\n");
            ellm_chat_buf_append(&content, system);
            ellm_chat_buf_append(&content, "\n<</SYS>>\n\n");
        }
        ellm_chat_buf_append(&content, ellm_chat_content_of(m));
        chat_span text = {content.data ? content.data : "", content.len};
        if (content.failed)
            r->out.failed = true;
        if (ellm_chat_role_is(m, "user")) {
            ellm_chat_put(r, r->bos);
            ellm_chat_put(r, "[INST] ");
            ellm_chat_content_begin(r); /* text is a copy of the messages */
            ellm_chat_put_span(r, ellm_chat_strip(text));
            ellm_chat_content_end(r);
            ellm_chat_put(r, " [/INST]");
        } else if (ellm_chat_role_is(m, "assistant")) {
            ellm_chat_put(r, " ");
            ellm_chat_content_begin(r);
            ellm_chat_put_span(r, ellm_chat_strip(text));
            ellm_chat_content_end(r);
            ellm_chat_put(r, " ");
            ellm_chat_put(r, r->eos);
        }
        ellm_chat_buf_discard(&content);
    }
    return true;
}

bool ellm_chat_render_llama3(chat_render *r)
{
    for (size_t i = 0; i < r->n; i++) {
        if (i == 0)
            ellm_chat_put(r, r->bos);
        ellm_chat_put(r, "<|start_header_id|>");
        ellm_chat_put(r, r->msgs[i].role);
        ellm_chat_put(r, "<|end_header_id|>\n\n");
        ellm_chat_put_span(r, ellm_chat_strip(ellm_chat_span_of(r->msgs[i].content)));
        ellm_chat_put(r, "<|eot_id|>");
    }
    if (r->add_generation_prompt)
        ellm_chat_put(r, "<|start_header_id|>assistant<|end_header_id|>\n\n");
    return true;
}

static const char llama_tools_prompt[] =
    "Given the following functions, please respond with a JSON for a function call with its "
    "proper arguments that best answers the given prompt.\n\nRespond in the format {\"name\": "
    "function name, \"parameters\": dictionary of argument name and its value}.Do not use "
    "variables.\n\n";

/* An assistant turn that calls a function: the call as the JSON object the model writes. */
static bool put_llama_call(chat_render *r, const ellm_chat_message_tools *mt)
{
    if (mt->n_calls != 1)
        return ellm_chat_raise(r, "llama3.1",
                               "This model only supports single tool-calls at once!");
    ellm_chat_put(r, "<|start_header_id|>assistant<|end_header_id|>\n\n{\"name\": \"");
    ellm_chat_put_request_text(r, mt->calls[0].name);
    ellm_chat_put(r, "\", \"parameters\": ");
    ellm_chat_put_arguments(r, &mt->calls[0], false);
    ellm_chat_put(r, "}<|eot_id|>");
    return true;
}

/* Llama 3.1 / 3.2 (tools in the first user message, the template's default): a system turn with
 * the knowledge cutoff and the date, then Llama 3 turns; calls are JSON objects, tool results
 * ipython turns holding their text as a JSON string (a string "is iterable" in Jinja, so the
 * template passes it through tojson). */
bool ellm_chat_render_llama31(chat_render *r, const char *date)
{
    ellm_chat_put(r, r->bos);
    size_t first = 0;
    chat_span system = {"", 0};
    if (ellm_chat_role_is(&r->msgs[0], "system")) {
        system = ellm_chat_strip(ellm_chat_span_of(r->msgs[0].content));
        first = 1;
    }
    /* "tools is not none": an empty list counts as tools here. */
    bool with_tools = ellm_chat_tools_given(r);
    ellm_chat_put(r, "<|start_header_id|>system<|end_header_id|>\n\n");
    if (with_tools)
        ellm_chat_put(r, "Environment: ipython\n");
    ellm_chat_put(r, "Cutting Knowledge Date: December 2023\nToday Date: ");
    ellm_chat_put(r, date);
    ellm_chat_put(r, "\n\n");
    ellm_chat_put_span(r, system);
    ellm_chat_put(r, "<|eot_id|>");
    if (with_tools) {
        if (first == r->n)
            return ellm_chat_raise(
                r, "llama3.1",
                "Cannot put tools in the first user message when there's no first "
                "user message!");
        ellm_chat_put(r, "<|start_header_id|>user<|end_header_id|>\n\n");
        ellm_chat_put(r, llama_tools_prompt);
        for (size_t t = 0; t < ellm_chat_tool_count(r); t++) {
            ellm_chat_put_tool(r, t, 4);
            ellm_chat_put(r, "\n\n");
        }
        ellm_chat_put_span(r, ellm_chat_strip(ellm_chat_span_of(r->msgs[first].content)));
        ellm_chat_put(r, "<|eot_id|>");
        first++;
    }
    for (size_t i = first; i < r->n; i++) {
        const ellm_chat_message *m = &r->msgs[i];
        const ellm_chat_message_tools *mt = ellm_chat_tools_of_message(r, i);
        if (mt->n_calls > 0) {
            if (!put_llama_call(r, mt))
                return false;
            continue;
        }
        if (ellm_chat_role_is(m, "tool") || ellm_chat_role_is(m, "ipython")) {
            ellm_chat_put(r, "<|start_header_id|>ipython<|end_header_id|>\n\n");
            ellm_chat_put_json_string(r, ellm_chat_content_of(m));
        } else {
            ellm_chat_put(r, "<|start_header_id|>");
            ellm_chat_put(r, m->role);
            ellm_chat_put(r, "<|end_header_id|>\n\n");
            ellm_chat_put_span(r, ellm_chat_strip(ellm_chat_span_of(m->content)));
        }
        ellm_chat_put(r, "<|eot_id|>");
    }
    if (r->add_generation_prompt)
        ellm_chat_put(r, "<|start_header_id|>assistant<|end_header_id|>\n\n");
    return true;
}

/* Today's date as strftime_now("%d %b %Y") gives it: local time, English month abbreviation. */
void ellm_chat_today(char *buf, size_t cap)
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
