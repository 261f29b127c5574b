/* ellm_chat_format: checks the conversation and hands it to the family's renderer
 * (chat_family_*.c), which reimplements that family's published Jinja template statement by
 * statement, so the output is the same bytes the template renders. */
#include <string.h>

#include "chat/chat_render.h"
#include "core/status.h"

bool chat_role_is(const ellm_chat_message *m, const char *role)
{
    return m->role && strcmp(m->role, role) == 0;
}

const char *chat_content_of(const ellm_chat_message *m) { return m->content ? m->content : ""; }

void chat_put(chat_render *r, const char *s) { chat_buf_append(&r->out, s); }
void chat_put_span(chat_render *r, chat_span s) { chat_buf_append_n(&r->out, s.p, s.n); }

/* The template's raise_exception(message): the render fails. */
bool chat_raise(chat_render *r, const char *family, const char *message)
{
    chat_buf_discard(&r->out);
    ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "the %s chat template rejects this conversation: %s",
              family, message);
    return false;
}

/* Roles must alternate user/assistant/user/... from position 0 of loop_messages. */
bool chat_alternates(const ellm_chat_message *m, size_t index0)
{
    return chat_role_is(m, "user") == (index0 % 2 == 0);
}

char *ellm_chat_format(ellm_chat_family f, const ellm_chat_message *msgs, size_t n,
                       bool add_generation_prompt, const char *bos_text, const char *eos_text)
{
    if (!msgs || n == 0) {
        ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "a chat prompt needs at least one message");
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (!msgs[i].role || !*msgs[i].role) {
            ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                      "chat message %zu has no role: give \"system\", \"user\" or \"assistant\"",
                      i);
            return NULL;
        }
    }
    chat_render r = {.msgs = msgs,
                     .n = n,
                     .add_generation_prompt = add_generation_prompt,
                     .bos = bos_text ? bos_text : "",
                     .eos = eos_text ? eos_text : ""};
    bool ok;
    switch (f) {
    case ELLM_CHAT_CHATML: ok = chat_render_chatml(&r); break;
    case ELLM_CHAT_LLAMA2: ok = chat_render_llama2(&r); break;
    case ELLM_CHAT_LLAMA3: ok = chat_render_llama3(&r); break;
    case ELLM_CHAT_GEMMA: ok = chat_render_gemma(&r); break;
    case ELLM_CHAT_PHI3: ok = chat_render_phi3(&r); break;
    case ELLM_CHAT_ZEPHYR: ok = chat_render_zephyr(&r); break;
    case ELLM_CHAT_MISTRAL: ok = chat_render_mistral(&r); break;
    case ELLM_CHAT_MISTRAL_V3: ok = chat_render_mistral_v3(&r); break;
    case ELLM_CHAT_SMOLLM: ok = chat_render_smollm(&r); break;
    case ELLM_CHAT_QWEN25:
        ok = chat_render_qwen25(
            &r, "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.");
        break;
    case ELLM_CHAT_QWEN2: ok = chat_render_qwen25(&r, "You are a helpful assistant."); break;
    case ELLM_CHAT_QWEN3: ok = chat_render_qwen3(&r); break;
    case ELLM_CHAT_LLAMA31: ok = chat_render_llama31(&r, "26 Jul 2024"); break;
    case ELLM_CHAT_LLAMA32: {
        char date[32];
        chat_today(date, sizeof date);
        ok = chat_render_llama31(&r, date);
        break;
    }
    default:
        ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "unknown chat template family %d", (int)f);
        return NULL;
    }
    return ok ? chat_buf_finish(&r.out) : NULL;
}
