/* Conversations in the JSON shape chat APIs use: {"messages": [{"role", "content"}, ...]}, with
 * "tools", assistant "tool_calls" and "tool_call_id" as Hugging Face chat templates take them. */
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
    free(conv->per_message);
    free(conv->calls);
    json_decref(conv->json);
    memset(conv, 0, sizeof *conv);
}

/* The tool fields of every message; the calls share one array. Borrowed from the JSON. */
static edgellm_status read_tool_fields(json_t *root, json_t *list, ellm_chat_conversation *out)
{
    size_t n = json_array_size(list), total = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *calls = json_object_get(json_array_get(list, i), "tool_calls");
        if (calls && !json_is_array(calls) && !json_is_null(calls))
            return ellm_fail(EDGELLM_ERR_FORMAT, "message %zu: \"tool_calls\" must be an array", i);
        total += json_array_size(calls);
    }
    out->per_message = calloc(n ? n : 1, sizeof *out->per_message);
    out->calls = calloc(total ? total : 1, sizeof *out->calls);
    if (!out->per_message || !out->calls)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the conversation's tool calls");
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(list, i);
        json_t *calls = json_object_get(m, "tool_calls");
        ellm_chat_message_tools *mt = &out->per_message[i];
        mt->tool_call_id = json_string_value(json_object_get(m, "tool_call_id"));
        mt->calls = json_array_size(calls) ? &out->calls[used] : NULL;
        for (size_t c = 0; c < json_array_size(calls); c++) {
            json_t *call = json_array_get(calls, c);
            json_t *fn = json_object_get(call, "function");
            if (!fn)
                fn = call; /* {"name", "arguments"} without the "function" wrapper */
            ellm_chat_tool_call *tc = &out->calls[used++];
            tc->id = json_string_value(json_object_get(call, "id"));
            tc->name = json_string_value(json_object_get(fn, "name"));
            tc->arguments = json_object_get(fn, "arguments");
            if (!tc->name)
                return ellm_fail(EDGELLM_ERR_FORMAT,
                                 "message %zu: tool call %zu needs a string \"name\"", i, c);
            mt->n_calls++;
        }
    }
    json_t *tools = json_is_object(root) ? json_object_get(root, "tools") : NULL;
    if (tools && !json_is_null(tools) && !json_is_array(tools))
        return ellm_fail(EDGELLM_ERR_FORMAT, "\"tools\" must be an array of tool objects");
    out->tools.tools = json_is_array(tools) ? tools : NULL;
    out->tools.per_message = out->per_message;
    return EDGELLM_OK;
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
    memset(out, 0, sizeof *out);
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
    st = read_tool_fields(root, list, out);
done:
    out->json = root;
    if (st != EDGELLM_OK)
        ellm_chat_conversation_free(out);
    return st;
}
