/* Gemma: <start_of_turn>user/model turns; the system message opens the first user turn. */
#include "chat/chat_render.h"

bool ellm_chat_render_gemma(chat_render *r)
{
    ellm_chat_put(r, r->bos);
    const ellm_chat_message *loop = r->msgs;
    size_t n = r->n;
    const char *first_user_prefix = NULL;
    if (ellm_chat_role_is(&r->msgs[0], "system")) {
        first_user_prefix = ellm_chat_content_of(&r->msgs[0]);
        loop++;
        n--;
    }
    for (size_t i = 0; i < n; i++) {
        const ellm_chat_message *m = &loop[i];
        if (!ellm_chat_alternates(m, i))
            return ellm_chat_raise(
                r, "gemma", "Conversation roles must alternate user/assistant/user/assistant/...");
        ellm_chat_put(r, "<start_of_turn>");
        ellm_chat_put(r, ellm_chat_role_is(m, "assistant") ? "model" : m->role);
        ellm_chat_put(r, "\n");
        if (i == 0 && first_user_prefix) {
            ellm_chat_put(r, first_user_prefix);
            ellm_chat_put(r, "\n\n");
        }
        ellm_chat_put_span(r, ellm_chat_strip(ellm_chat_span_of(m->content)));
        ellm_chat_put(r, "<end_of_turn>\n");
    }
    if (r->add_generation_prompt)
        ellm_chat_put(r, "<start_of_turn>model\n");
    return true;
}
