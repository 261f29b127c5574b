/* Formats with <|role|> tags: Phi-3 (turns end in <|end|>) and Zephyr (turns end in EOS). */
#include "chat/chat_render.h"

bool ellm_chat_render_phi3(chat_render *r)
{
    for (size_t i = 0; i < r->n; i++) {
        const ellm_chat_message *m = &r->msgs[i];
        const char *tag = ellm_chat_role_is(m, "system")      ? "<|system|>\n"
                          : ellm_chat_role_is(m, "user")      ? "<|user|>\n"
                          : ellm_chat_role_is(m, "assistant") ? "<|assistant|>\n"
                                                              : NULL;
        if (!tag)
            continue; /* the template has no branch for other roles */
        ellm_chat_put(r, tag);
        ellm_chat_put(r, ellm_chat_content_of(m));
        ellm_chat_put(r, "<|end|>\n");
    }
    ellm_chat_put(r, r->add_generation_prompt ? "<|assistant|>\n" : r->eos);
    return true;
}

/* The template puts a newline after each turn's EOS: its lines end outside the expressions. */
bool ellm_chat_render_zephyr(chat_render *r)
{
    for (size_t i = 0; i < r->n; i++) {
        const ellm_chat_message *m = &r->msgs[i];
        const char *tag = ellm_chat_role_is(m, "user")        ? "<|user|>\n"
                          : ellm_chat_role_is(m, "system")    ? "<|system|>\n"
                          : ellm_chat_role_is(m, "assistant") ? "<|assistant|>\n"
                                                              : NULL;
        if (tag) {
            ellm_chat_put(r, tag);
            ellm_chat_put(r, ellm_chat_content_of(m));
            ellm_chat_put(r, r->eos);
            ellm_chat_put(r, "\n");
        }
        if (i + 1 == r->n && r->add_generation_prompt)
            ellm_chat_put(r, "<|assistant|>\n");
    }
    return true;
}
