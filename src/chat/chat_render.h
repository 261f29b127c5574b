/* What the per-family renderers share (internal to src/chat): the state of one rendering and the
 * few Jinja operations every template uses. Each chat_render_FAMILY function reimplements one
 * family's published template statement by statement; on a template's raise_exception it fails
 * through ellm_chat_raise with the template's own message. */
#ifndef EDGELLM_CHAT_RENDER_H
#define EDGELLM_CHAT_RENDER_H

#include <stdbool.h>
#include <stddef.h>

#include "chat/chat.h"
#include "chat/chat_text.h"

typedef struct chat_render chat_render;

/* The tools' JSON values, read for a rendering (chat_tools.c, built only where jansson is). Only
 * the entry points that take tools (ellm_chat_format_tools, ellm_chat_format_model_tools, in that
 * file) pass them, so the renderers and the entry points without tools need no JSON support. */
typedef struct chat_tool_ops {
    size_t (*count)(const chat_render *r); /* tools in the list */
    bool (*given)(const chat_render *r);   /* a list was given, even an empty one */
    void (*put_tool)(chat_render *r, size_t t, int indent); /* tojson(indent) of tool t */
    /* tojson of a call's arguments (not NULL); raw_strings: a string as it is */
    void (*put_arguments)(chat_render *r, const ellm_chat_tool_call *c, bool raw_strings);
    void (*put_mistral_tools)(chat_render *r); /* Mistral v3's [AVAILABLE_TOOLS] block */
    /* Renders a conversation with tools in the Hermes style through a family without tool
     * support: the tools go into the system message, calls into assistant text, results into
     * user turns. */
    bool (*hermes_fallback)(chat_render *r, bool (*render)(chat_render *));
} chat_tool_ops;

struct chat_render {
    const ellm_chat_message *msgs;
    size_t n; /* at least 1 */
    bool add_generation_prompt;
    const char *bos; /* never NULL */
    const char *eos;
    const ellm_chat_tools *tools;  /* never NULL (an empty one when there are none) */
    const chat_tool_ops *tool_ops; /* NULL when the caller passed no tools */
    chat_buf out;
    /* Which bytes of out came from message text (roles and contents), when asked for: pieces
     * written from a message's own strings are found by where they point, text a renderer
     * derives from a message (a copy, an escaped form) is bracketed by ellm_chat_content_begin/end. */
    bool track_spans;
    ellm_chat_span *spans;
    size_t n_spans, cap_spans;
    bool spans_failed;
    int content_depth;
    size_t content_start;
};

bool ellm_chat_role_is(const ellm_chat_message *m, const char *role);
const char *ellm_chat_content_of(const ellm_chat_message *m); /* NULL content reads as "" */
void ellm_chat_put(chat_render *r, const char *s);
void ellm_chat_put_span(chat_render *r, chat_span s);
/* Everything written between these came from message text (nestable). */
void ellm_chat_content_begin(chat_render *r);
void ellm_chat_content_end(chat_render *r);
/* The template's raise_exception(message): discards the output and fails; returns false. */
bool ellm_chat_raise(chat_render *r, const char *family, const char *message);
/* (role == 'user') == (index0 % 2 == 0): the alternation most templates check. */
bool ellm_chat_alternates(const ellm_chat_message *m, size_t index0);

/* Tools, through r->tool_ops where they need the JSON values. The number of tools (0 when none:
 * Jinja's "if tools" is ellm_chat_tool_count(r) > 0); whether a list was given at all ("tools is not
 * none"). */
size_t ellm_chat_tool_count(const chat_render *r);
bool ellm_chat_tools_given(const chat_render *r);
/* tojson(indent) of tool t (indent < 0: none), written as message text. */
void ellm_chat_put_tool(chat_render *r, size_t t, int indent);
/* tojson of a call's arguments ("null" when it has none, as tojson writes an undefined value);
 * raw_strings: string arguments as they are. */
void ellm_chat_put_arguments(chat_render *r, const ellm_chat_tool_call *c, bool raw_strings);
/* The calls message i makes (n_calls 0 when none) and the call id it answers (NULL if none). */
const ellm_chat_message_tools *ellm_chat_tools_of_message(const chat_render *r, size_t i);
/* tojson of a string (json.dumps, non-ASCII kept), written as message text. */
void ellm_chat_put_json_string(chat_render *r, const char *s);
/* Text that came from the request (a tool's name, an id), written as message text. */
void ellm_chat_put_request_text(chat_render *r, const char *s);

/* ellm_chat_format_tools and ellm_chat_format_model_tools with the tools' reader (NULL with no
 * tools): chat_format.c and chat_model.c, which the entry points in chat_tools.c call. */
char *ellm_chat_format_with_tools(ellm_chat_family f, const ellm_chat_message *msgs, size_t n,
                                  const ellm_chat_tools *tools, const chat_tool_ops *ops,
                                  bool add_generation_prompt, const char *bos_text,
                                  const char *eos_text, ellm_chat_span **spans, size_t *n_spans);
char *ellm_chat_format_model_with_tools(const edgellm_model *model, const ellm_chat_message *msgs,
                                        size_t n, const ellm_chat_tools *tools,
                                        const chat_tool_ops *ops, bool add_generation_prompt,
                                        bool *template_recognised, ellm_chat_span **spans,
                                        size_t *n_spans);

/* ChatML and its variants (chat_family_chatml.c). */
bool ellm_chat_render_chatml(chat_render *r);
bool ellm_chat_render_smollm(chat_render *r);
bool ellm_chat_render_qwen25(chat_render *r, const char *default_system);
bool ellm_chat_render_qwen3(chat_render *r);
/* Llama 2, 3, 3.1/3.2 (chat_family_llama.c); date is the "Today Date" line's text. */
bool ellm_chat_render_llama2(chat_render *r);
bool ellm_chat_render_llama3(chat_render *r);
bool ellm_chat_render_llama31(chat_render *r, const char *date);
/* Today's date as strftime_now("%d %b %Y") gives it to the Llama 3.2 template. */
void ellm_chat_today(char *buf, size_t cap);
/* Gemma (chat_family_gemma.c). */
bool ellm_chat_render_gemma(chat_render *r);
/* <|role|> tag formats: Phi-3 and Zephyr (chat_family_phi.c). */
bool ellm_chat_render_phi3(chat_render *r);
bool ellm_chat_render_zephyr(chat_render *r);
/* Mistral v1 and v3 (chat_family_mistral.c). */
bool ellm_chat_render_mistral(chat_render *r);
bool ellm_chat_render_mistral_v3(chat_render *r);

#endif
