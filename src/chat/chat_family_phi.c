/* Formats with <|role|> tags: Phi-3 (turns end in <|end|>) and Zephyr (turns end in EOS). */
#include "chat/chat_render.h"

bool chat_render_phi3(chat_render *r)
{
    for (size_t i = 0; i < r->n; i++) {
        const ellm_chat_message *m = &r->msgs[i];
        const char *tag = chat_role_is(m, "system")      ? "<|system|>\n"
                          : chat_role_is(m, "user")      ? "<|user|>\n"
                          : chat_role_is(m, "assistant") ? "<|assistant|>\n"
                                                    : NULL;
        if (!tag)
            continue; /* the template has no branch for other roles */
        chat_put(r, tag);
        chat_put(r, chat_content_of(m));
        chat_put(r, "<|end|>\n");
    }
    chat_put(r, r->add_generation_prompt ? "<|assistant|>\n" : r->eos);
    return true;
}

/* The template puts a newline after each turn's EOS: its lines end outside the expressions. */
bool chat_render_zephyr(chat_render *r)
{
    for (size_t i = 0; i < r->n; i++) {
        const ellm_chat_message *m = &r->msgs[i];
        const char *tag = chat_role_is(m, "user")        ? "<|user|>\n"
                          : chat_role_is(m, "system")    ? "<|system|>\n"
                          : chat_role_is(m, "assistant") ? "<|assistant|>\n"
                                                    : NULL;
        if (tag) {
            chat_put(r, tag);
            chat_put(r, chat_content_of(m));
            chat_put(r, r->eos);
            chat_put(r, "\n");
        }
        if (i + 1 == r->n && r->add_generation_prompt)
            chat_put(r, "<|assistant|>\n");
    }
    return true;
}
