/* Mistral's [INST] formats: v1 (spaces around the tags, system message in the first turn) and v3
 * (no spaces, system message in the last turn, trimmed replies). */
#include "chat/chat_render.h"

bool chat_render_mistral(chat_render *r)
{
    const ellm_chat_message *loop = r->msgs;
    size_t n = r->n;
    const char *system = NULL;
    if (chat_role_is(&r->msgs[0], "system")) {
        system = chat_content_of(&r->msgs[0]);
        loop++;
        n--;
    }
    chat_put(r, r->bos);
    for (size_t i = 0; i < n; i++) {
        const ellm_chat_message *m = &loop[i];
        if (!chat_alternates(m, i))
            return chat_raise(r, "mistral",
                         "After the optional system message, conversation roles must alternate "
                         "user/assistant/user/assistant/...");
        if (chat_role_is(m, "user")) {
            chat_put(r, " [INST] ");
            if (i == 0 && system) {
                chat_put(r, system);
                chat_put(r, "\n\n");
            }
            chat_put(r, chat_content_of(m));
            chat_put(r, " [/INST]");
        } else if (chat_role_is(m, "assistant")) {
            chat_put(r, " ");
            chat_put(r, chat_content_of(m));
            chat_put(r, r->eos);
        } else {
            return chat_raise(r, "mistral",
                         "Only user and assistant roles are supported, with the exception of an "
                         "initial optional system message!");
        }
    }
    return true;
}

bool chat_render_mistral_v3(chat_render *r)
{
    const ellm_chat_message *loop = r->msgs;
    size_t n = r->n;
    const char *system = NULL;
    if (chat_role_is(&r->msgs[0], "system")) {
        system = chat_content_of(&r->msgs[0]);
        loop++;
        n--;
    }
    /* Tool results do not take part in the alternation. */
    for (size_t i = 0, index = 0; i < n; i++) {
        if (chat_role_is(&loop[i], "tool") || chat_role_is(&loop[i], "tool_results"))
            continue;
        if (!chat_alternates(&loop[i], index++))
            return chat_raise(r, "mistral-v3",
                         "After the optional system message, conversation roles must alternate "
                         "user/assistant/user/assistant/...");
    }
    chat_put(r, r->bos);
    for (size_t i = 0; i < n; i++) {
        const ellm_chat_message *m = &loop[i];
        if (chat_role_is(m, "user")) {
            chat_put(r, "[INST] ");
            if (i + 1 == n && system) {
                chat_put(r, system);
                chat_put(r, "\n\n");
            }
            chat_put(r, chat_content_of(m));
            chat_put(r, "[/INST]");
        } else if (chat_role_is(m, "assistant")) {
            chat_put(r, " ");
            chat_put_span(r, chat_strip(chat_span_of(m->content)));
            chat_put(r, r->eos);
        } else if (chat_role_is(m, "tool") || chat_role_is(m, "tool_results")) {
            return chat_raise(r, "mistral-v3",
                         "Tool call IDs should be alphanumeric strings with length 9!");
        } else {
            return chat_raise(r, "mistral-v3",
                         "Only user and assistant roles are supported, with the exception of an "
                         "initial optional system message!");
        }
    }
    return true;
}
