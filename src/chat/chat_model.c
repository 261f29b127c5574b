/* Chat prompts for a loaded model: its template's family and its BOS/EOS token texts, read
 * through the public API. */
#include <stdlib.h>

#include "chat/chat.h"
#include "chat/chat_render.h"
#include "core/status.h"

/* The model's tokenizer.chat_template (malloc'd), or NULL when it has none. */
static char *model_template(const edgellm_model *model)
{
    size_t len = 0;
    if (edgellm_model_meta_string(model, "tokenizer.chat_template", NULL, 0, &len) !=
        EDGELLM_ERR_BUFFER_TOO_SMALL)
        return NULL;
    char *text = malloc(len + 1);
    if (text && edgellm_model_meta_string(model, "tokenizer.chat_template", text, len + 1, &len) !=
                    EDGELLM_OK) {
        free(text);
        text = NULL;
    }
    return text;
}

/* The vocabulary text of a special token ("" when the model has none). */
static char *token_text(const edgellm_model *model, edgellm_token token)
{
    size_t len = 0;
    if (token >= 0)
        edgellm_token_text(model, token, NULL, 0, &len);
    char *text = malloc(len + 1);
    if (!text)
        return NULL;
    if (token < 0 || edgellm_token_text(model, token, text, len + 1, &len) != EDGELLM_OK)
        len = 0;
    text[len] = '\0';
    return text;
}

ellm_chat_family ellm_chat_detect_model(const edgellm_model *model, bool *recognised)
{
    char *text = model ? model_template(model) : NULL;
    ellm_chat_family f = ellm_chat_detect(text, recognised);
    free(text);
    return f;
}

char *ellm_chat_format_model_with_tools(const edgellm_model *model, const ellm_chat_message *msgs,
                                        size_t n, const ellm_chat_tools *tools,
                                        const chat_tool_ops *ops, bool add_generation_prompt,
                                        bool *template_recognised, ellm_chat_span **spans,
                                        size_t *n_spans)
{
    if (!model) {
        ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "ellm_chat_format_model: model is NULL");
        return NULL;
    }
    ellm_chat_family f = ellm_chat_detect_model(model, template_recognised);
    char *bos = token_text(model, edgellm_token_bos(model));
    char *eos = token_text(model, edgellm_token_eos(model));
    char *out = NULL;
    if (!bos || !eos)
        ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the chat prompt");
    else
        out = ellm_chat_format_with_tools(f, msgs, n, tools, ops, add_generation_prompt, bos, eos,
                                          spans && n_spans ? spans : NULL, n_spans);
    free(bos);
    free(eos);
    return out;
}

char *ellm_chat_format_model_spans(const edgellm_model *model, const ellm_chat_message *msgs,
                                   size_t n, bool add_generation_prompt, bool *template_recognised,
                                   ellm_chat_span **spans, size_t *n_spans)
{
    if (!spans || !n_spans) {
        ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "ellm_chat_format_model_spans: spans is NULL");
        return NULL;
    }
    return ellm_chat_format_model_with_tools(model, msgs, n, NULL, NULL, add_generation_prompt,
                                             template_recognised, spans, n_spans);
}

char *ellm_chat_format_model(const edgellm_model *model, const ellm_chat_message *msgs, size_t n,
                             bool add_generation_prompt, bool *template_recognised)
{
    return ellm_chat_format_model_with_tools(model, msgs, n, NULL, NULL, add_generation_prompt,
                                             template_recognised, NULL, NULL);
}
