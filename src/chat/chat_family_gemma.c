/* Gemma: <start_of_turn>user/model turns; the system message opens the first user turn. */
#include "chat/chat_render.h"

bool chat_render_gemma(chat_render *r)
{
    chat_put(r, r->bos);
    const ellm_chat_message *loop = r->msgs;
    size_t n = r->n;
    const char *first_user_prefix = NULL;
    if (chat_role_is(&r->msgs[0], "system")) {
        first_user_prefix = chat_content_of(&r->msgs[0]);
        loop++;
        n--;
    }
    for (size_t i = 0; i < n; i++) {
        const ellm_chat_message *m = &loop[i];
        if (!chat_alternates(m, i))
            return chat_raise(r, "gemma",
                         "Conversation roles must alternate user/assistant/user/assistant/...");
        chat_put(r, "<start_of_turn>");
        chat_put(r, chat_role_is(m, "assistant") ? "model" : m->role);
        chat_put(r, "\n");
        if (i == 0 && first_user_prefix) {
            chat_put(r, first_user_prefix);
            chat_put(r, "\n\n");
        }
        chat_put_span(r, chat_strip(chat_span_of(m->content)));
        chat_put(r, "<end_of_turn>\n");
    }
    if (r->add_generation_prompt)
        chat_put(r, "<start_of_turn>model\n");
    return true;
}
