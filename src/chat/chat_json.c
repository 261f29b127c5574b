/* Conversations in the JSON shape chat APIs use: {"messages": [{"role", "content"}, ...]}. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "chat/chat.h"
#include "core/status.h"

void ellm_chat_conversation_free(ellm_chat_conversation *conv)
{
    if (!conv)
        return;
    for (size_t i = 0; conv->messages && i < conv->n; i++) {
        free((char *)conv->messages[i].role);
        free((char *)conv->messages[i].content);
    }
    free(conv->messages);
    conv->messages = NULL;
    conv->n = 0;
}

static char *dup_string(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

edgellm_status ellm_chat_conversation_parse(const char *json_text, ellm_chat_conversation *out)
{
    if (!json_text || !out)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "ellm_chat_conversation_parse: NULL argument");
    out->messages = NULL;
    out->n = 0;
    json_error_t err;
    json_t *root = json_loads(json_text, 0, &err);
    if (!root)
        return ellm_fail(EDGELLM_ERR_FORMAT, "the conversation is not valid JSON (line %d: %s)",
                         err.line, err.text);
    json_t *list = json_is_object(root) ? json_object_get(root, "messages") : root;
    edgellm_status st = EDGELLM_OK;
    if (!json_is_array(list)) {
        st = ellm_fail(EDGELLM_ERR_FORMAT,
                       "the conversation must be {\"messages\": [...]} or an array of messages");
        goto done;
    }
    size_t n = json_array_size(list);
    out->messages = calloc(n ? n : 1, sizeof *out->messages);
    if (!out->messages) {
        st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for %zu chat messages", n);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(list, i);
        json_t *role = json_object_get(m, "role");
        json_t *content = json_object_get(m, "content");
        if (!json_is_string(role) || !(json_is_string(content) || json_is_null(content))) {
            st = ellm_fail(EDGELLM_ERR_FORMAT,
                           "message %zu needs a string \"role\" and a string \"content\"", i);
            goto done;
        }
        ellm_chat_message *dst = &out->messages[out->n++];
        dst->role = dup_string(json_string_value(role), json_string_length(role));
        dst->content = json_is_string(content)
                           ? dup_string(json_string_value(content), json_string_length(content))
                           : dup_string("", 0);
        if (!dst->role || !dst->content) {
            st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for chat message %zu", i);
            goto done;
        }
    }
done:
    json_decref(root);
    if (st != EDGELLM_OK)
        ellm_chat_conversation_free(out);
    return st;
}
