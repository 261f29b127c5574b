/* Checks of a cloud's answer: every member the restoring walk, the streamed restoration and the
 * client rely on has the type the OpenAI API promises. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "gateway/cloud_answer.h"

/* A choice's or a tool call's `index`, when present, is a position: NULL or what is wrong. */
static const char *index_fault(json_t *index)
{
    if (index && !json_is_integer(index))
        return "is not an integer";
    return index && json_integer_value(index) < 0 ? "is negative" : NULL;
}

/* A tool call's `function` or the deprecated `function_call`, its path in field: NULL, or what
 * is wrong with the member then named in field. A streamed fragment may lack either member. */
static const char *function_fault(json_t *function, bool whole, char *field, size_t cap)
{
    if (!json_is_object(function))
        return "is not an object";
    size_t at = strlen(field);
    json_t *name = json_object_get(function, "name");
    json_t *arguments = json_object_get(function, "arguments");
    snprintf(field + at, cap - at, ".name");
    if ((name || whole) && !json_is_string(name))
        return "is not a string";
    snprintf(field + at, cap - at, ".arguments");
    if ((arguments || whole) && !json_is_string(arguments))
        return "is not a string (of JSON)";
    return NULL;
}

/* A cloud's choice must have the shape the restoring walk and the client rely on. Returns NULL
 * when it has, else what is wrong with the field written to field. */
static const char *choice_fault(json_t *choice, size_t i, gw_choice_shape shape, char *field,
                                size_t cap)
{
    snprintf(field, cap, "choices[%zu]", i);
    if (!json_is_object(choice))
        return "is not an object";
    json_t *index = json_object_get(choice, "index");
    json_t *finish = json_object_get(choice, "finish_reason");
    snprintf(field, cap, "choices[%zu].index", i);
    if (index_fault(index))
        return index_fault(index);
    snprintf(field, cap, "choices[%zu].finish_reason", i);
    if (finish && !json_is_string(finish) && !json_is_null(finish))
        return "is neither a string nor null";
    if (shape == GW_CHOICE_TEXT || shape == GW_CHOICE_TEXT_CHUNK) {
        snprintf(field, cap, "choices[%zu].text", i);
        return json_is_string(json_object_get(choice, "text")) ? NULL : "is not a string";
    }
    bool whole = shape == GW_CHOICE_MESSAGE;
    const char *member = whole ? "message" : "delta";
    json_t *message = json_object_get(choice, member);
    snprintf(field, cap, "choices[%zu].%s", i, member);
    if (!json_is_object(message))
        return "is not an object";
    json_t *content = json_object_get(message, "content");
    snprintf(field, cap, "choices[%zu].%s.content", i, member);
    if (content && !json_is_string(content) && !json_is_null(content))
        return "is neither a string nor null";
    json_t *calls = json_object_get(message, "tool_calls");
    snprintf(field, cap, "choices[%zu].%s.tool_calls", i, member);
    if (calls && !json_is_array(calls) && !json_is_null(calls))
        return "is not an array";
    if (whole && !content && json_array_size(calls) == 0)
        return "is missing, and so is 'content'";
    size_t c;
    json_t *call;
    json_array_foreach(calls, c, call)
    {
        json_t *function = json_object_get(call, "function");
        snprintf(field, cap, "choices[%zu].%s.tool_calls[%zu]", i, member, c);
        if (!json_is_object(call))
            return "is not an object";
        json_t *call_index = json_object_get(call, "index");
        snprintf(field, cap, "choices[%zu].%s.tool_calls[%zu].index", i, member, c);
        if (index_fault(call_index))
            return index_fault(call_index);
        snprintf(field, cap, "choices[%zu].%s.tool_calls[%zu].function", i, member, c);
        const char *fault = function || whole ? function_fault(function, whole, field, cap) : NULL;
        if (fault)
            return fault;
    }
    json_t *function_call = json_object_get(message, "function_call");
    snprintf(field, cap, "choices[%zu].%s.function_call", i, member);
    if (function_call && !json_is_null(function_call))
        return function_fault(function_call, whole, field, cap);
    return NULL;
}

const char *ellm_gw_cloud_answer_fault(json_t *answer, gw_choice_shape shape, char *field,
                                       size_t cap)
{
    json_t *choices = json_object_get(answer, "choices");
    snprintf(field, cap, "choices");
    if (!json_is_array(choices))
        return "is not an array";
    bool chunk = shape == GW_CHOICE_TEXT_CHUNK || shape == GW_CHOICE_DELTA;
    if (json_array_size(choices) == 0 && !chunk)
        return "is empty";
    size_t i;
    json_t *choice;
    json_array_foreach(choices, i, choice)
    {
        const char *fault = choice_fault(choice, i, shape, field, cap);
        if (fault)
            return fault;
    }
    json_t *usage = json_object_get(answer, "usage");
    snprintf(field, cap, "usage");
    if (usage && !json_is_object(usage) && !json_is_null(usage))
        return "is not an object";
    return NULL;
}
