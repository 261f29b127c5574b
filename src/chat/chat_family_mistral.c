/* Mistral's [INST] formats: v1 (spaces around the tags, system message in the first turn) and v3
 * (no spaces, system message in the last turn, trimmed replies). */
#include <string.h>

#include "chat/chat_render.h"

bool ellm_chat_render_mistral(chat_render *r)
{
    const ellm_chat_message *loop = r->msgs;
    size_t n = r->n;
    const char *system = NULL;
    if (ellm_chat_role_is(&r->msgs[0], "system")) {
        system = ellm_chat_content_of(&r->msgs[0]);
        loop++;
        n--;
    }
    ellm_chat_put(r, r->bos);
    for (size_t i = 0; i < n; i++) {
        const ellm_chat_message *m = &loop[i];
        if (!ellm_chat_alternates(m, i))
            return ellm_chat_raise(
                r, "mistral",
                "After the optional system message, conversation roles must alternate "
                "user/assistant/user/assistant/...");
        if (ellm_chat_role_is(m, "user")) {
            ellm_chat_put(r, " [INST] ");
            if (i == 0 && system) {
                ellm_chat_put(r, system);
                ellm_chat_put(r, "\n\n");
            }
            ellm_chat_put(r, ellm_chat_content_of(m));
            ellm_chat_put(r, " [/INST]");
        } else if (ellm_chat_role_is(m, "assistant")) {
            ellm_chat_put(r, " ");
            ellm_chat_put(r, ellm_chat_content_of(m));
            ellm_chat_put(r, r->eos);
        } else {
            return ellm_chat_raise(
                r, "mistral",
                "Only user and assistant roles are supported, with the exception of an "
                "initial optional system message!");
        }
    }
    return true;
}

/* Mistral's tool-call ids are exactly nine characters (the template checks the length only). */
static bool mistral_id_ok(const char *id) { return id && strlen(id) == 9; }

static bool put_mistral_calls(chat_render *r, const ellm_chat_message_tools *mt)
{
    ellm_chat_put(r, "[TOOL_CALLS] [");
    for (size_t c = 0; c < mt->n_calls; c++) {
        const ellm_chat_tool_call *call = &mt->calls[c];
        /* tool_call.function|tojson without its closing brace. */
        ellm_chat_put(r, "{\"name\": ");
        ellm_chat_put_json_string(r, call->name);
        ellm_chat_put(r, ", \"arguments\": ");
        ellm_chat_put_arguments(r, call, false);
        if (!mistral_id_ok(call->id))
            return ellm_chat_raise(r, "mistral-v3",
                                   "Tool call IDs should be alphanumeric strings with length 9!");
        ellm_chat_put(r, ", \"id\": \"");
        ellm_chat_put_request_text(r, call->id);
        ellm_chat_put(r, "\"}");
        if (c + 1 < mt->n_calls) {
            ellm_chat_put(r, ", ");
        } else {
            ellm_chat_put(r, "]");
            ellm_chat_put(r, r->eos);
        }
    }
    return true;
}

bool ellm_chat_render_mistral_v3(chat_render *r)
{
    size_t first = 0;
    const char *system = NULL;
    if (ellm_chat_role_is(&r->msgs[0], "system")) {
        system = ellm_chat_content_of(&r->msgs[0]);
        first = 1;
    }
    /* Tool results and calls do not take part in the alternation. */
    size_t last_user = r->n;
    for (size_t i = first, index = 0; i < r->n; i++) {
        if (ellm_chat_role_is(&r->msgs[i], "user"))
            last_user = i;
        if (ellm_chat_role_is(&r->msgs[i], "tool") ||
            ellm_chat_role_is(&r->msgs[i], "tool_results") ||
            ellm_chat_tools_of_message(r, i)->n_calls > 0)
            continue;
        if (!ellm_chat_alternates(&r->msgs[i], index++))
            return ellm_chat_raise(
                r, "mistral-v3",
                "After the optional system message, conversation roles must alternate "
                "user/assistant/user/assistant/...");
    }
    ellm_chat_put(r, r->bos);
    for (size_t i = first; i < r->n; i++) {
        const ellm_chat_message *m = &r->msgs[i];
        const ellm_chat_message_tools *mt = ellm_chat_tools_of_message(r, i);
        if (ellm_chat_role_is(m, "user")) {
            /* "message == user_messages[-1]": equal to the last user message, not only it. */
            if (ellm_chat_tools_given(r) && last_user < r->n && mt->n_calls == 0 &&
                strcmp(ellm_chat_content_of(m), ellm_chat_content_of(&r->msgs[last_user])) == 0)
                r->tool_ops->put_mistral_tools(r);
            ellm_chat_put(r, "[INST] ");
            if (i + 1 == r->n && system) {
                ellm_chat_put(r, system);
                ellm_chat_put(r, "\n\n");
            }
            ellm_chat_put(r, ellm_chat_content_of(m));
            ellm_chat_put(r, "[/INST]");
        } else if (mt->n_calls > 0) {
            if (!put_mistral_calls(r, mt))
                return false;
        } else if (ellm_chat_role_is(m, "assistant")) {
            ellm_chat_put(r, " ");
            ellm_chat_put_span(r, ellm_chat_strip(ellm_chat_span_of(m->content)));
            ellm_chat_put(r, r->eos);
        } else if (ellm_chat_role_is(m, "tool") || ellm_chat_role_is(m, "tool_results")) {
            ellm_chat_put(r, "[TOOL_RESULTS] {\"content\": ");
            ellm_chat_put(r, ellm_chat_content_of(m));
            ellm_chat_put(r, ", ");
            if (!mistral_id_ok(mt->tool_call_id))
                return ellm_chat_raise(
                    r, "mistral-v3", "Tool call IDs should be alphanumeric strings with length 9!");
            ellm_chat_put(r, "\"call_id\": \"");
            ellm_chat_put_request_text(r, mt->tool_call_id);
            ellm_chat_put(r, "\"}[/TOOL_RESULTS]");
        } else {
            return ellm_chat_raise(
                r, "mistral-v3",
                "Only user and assistant roles are supported, with the exception of an "
                "initial optional system message!");
        }
    }
    return true;
}
