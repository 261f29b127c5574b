/* Chat templates: turning a conversation into the prompt text a chat model was trained on.
 *
 * Models ship their prompt format as a Jinja template (tokenizer.chat_template). Instead of a
 * Jinja interpreter, each family's published template is reimplemented here, byte for byte, and
 * the family is recognised from markers in the template text. tests/chat_reference checks every
 * family against its published templates rendered by two Jinja implementations (transformers.js'
 * @huggingface/jinja, and Python's Jinja2 set up as transformers sets it up). Which published
 * template each family follows is listed at ellm_chat_family below.
 *
 * Where Jinja implementations disagree, the renderers follow Python's Jinja2 as transformers runs
 * it (the tokens models were trained on): trim/strip() remove Python's Unicode whitespace,
 * strip('\n') removes only newlines, and '' != false is true. Llama 2 and Mistral templates have
 * no generation prompt: their output ends with the user's [/INST] either way. */
#ifndef EDGELLM_CHAT_H
#define EDGELLM_CHAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "edgellm.h"

/* Tools and their calls arrive as jansson values, which only chat_tools.c and chat_json.c read
 * (they are built where jansson is; the browser build leaves them and tools out): here the type
 * is only named. */
typedef struct json_t json_t;

typedef struct ellm_chat_message {
    const char *role; /* "system", "user", "assistant" (others as the template treats them) */
    const char *content;
} ellm_chat_message;

typedef enum ellm_chat_family {
    ELLM_CHAT_CHATML,  /* <|im_start|>role\n...<|im_end|>\n for every role (the ChatML template) */
    ELLM_CHAT_LLAMA2,  /* Llama-2-chat: <s>[INST] <<SYS>>\n...\n<</SYS>>\n\n... [/INST] ... </s> */
    ELLM_CHAT_LLAMA3,  /* Meta-Llama-3-Instruct: <|start_header_id|>role<|end_header_id|>\n\n
                          content|trim<|eot_id|>, BOS first */
    ELLM_CHAT_GEMMA,   /* Gemma 3 it: <start_of_turn>user/model, the system message prefixed to
                          the first user turn, roles must alternate. Used for Gemma 1/2 too
                          (whose templates reject a system message; these are merged instead). */
    ELLM_CHAT_PHI3,    /* Phi-3-mini-instruct: <|user|>\n...<|end|>\n, EOS after a conversation
                          without generation prompt */
    ELLM_CHAT_MISTRAL, /* Mistral "v1" ([INST] with spaces around it), as in the template of
                          Mistral-7B-Instruct-v0.2: the system message prefixed to the first user
                          turn, roles must alternate */
    ELLM_CHAT_SMOLLM,  /* SmolLM2-Instruct: ChatML with "You are a helpful AI assistant named
                          SmolLM, trained by Hugging Face" when no system message is given */
    ELLM_CHAT_QWEN25,  /* Qwen2.5-Instruct: ChatML with "You are Qwen, created by Alibaba Cloud.
                          You are a helpful assistant." by default, tool results as user turns */
    ELLM_CHAT_QWEN3,   /* Qwen3: ChatML with <think> reasoning blocks on the last assistant turn */
    ELLM_CHAT_LLAMA31, /* Llama 3.1 Instruct: Llama 3 turns after a system turn that always
                          carries "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024";
                          tool results as ipython turns holding their JSON-quoted text */
    ELLM_CHAT_LLAMA32, /* Llama 3.2 Instruct: as 3.1 with today's date (local time, "%d %b %Y",
                          as the template gets it from strftime_now under transformers) */
    ELLM_CHAT_ZEPHYR,  /* Zephyr / TinyLlama-1.1B-Chat: <|user|>\n...</s>\n, generation prompt
                          <|assistant|>\n */
    ELLM_CHAT_QWEN2,   /* Qwen2-Instruct and the Qwen2.5 base models: Qwen 2.5's format with
                          "You are a helpful assistant." as the default system message */
    ELLM_CHAT_MISTRAL_V3, /* Mistral v3 (Mistral-7B-Instruct-v0.3): [INST] without the spaces,
                          the system message prefixed to the last message when that is a user
                          turn, assistant turns trimmed; tool results need tool-call ids this
                          API does not carry, so they are rejected */
    ELLM_CHAT_FAMILY_COUNT
} ellm_chat_family;

/* Tool calling (OpenAI's tools / tool_calls / role "tool", in the shapes Hugging Face chat
 * templates receive them). A call an assistant message made: arguments is the JSON value the
 * templates see (an object; a string is rendered as the templates render strings). */
typedef struct ellm_chat_tool_call {
    const char *id; /* NULL when the client gave none */
    const char *name;
    const json_t *arguments;
} ellm_chat_tool_call;

/* The tool fields of one message: the calls of an assistant message, the call a "tool" message
 * answers. */
typedef struct ellm_chat_message_tools {
    const ellm_chat_tool_call *calls;
    size_t n_calls;
    const char *tool_call_id; /* NULL when absent */
} ellm_chat_message_tools;

/* What a conversation carries beyond roles and contents. Families whose templates support tools
 * (Llama 3.1/3.2, Qwen 2/2.5/3, Mistral v3) render them as their templates do; every other family
 * gets the Hermes style (a <tools> block in the system message, <tool_call> blocks in assistant
 * text, results as <tool_response> blocks in a user turn) written into its ordinary turns. */
typedef struct ellm_chat_tools {
    const json_t *tools;                        /* array of {"type": "function", "function":
                                                  {...}}; NULL or empty: none */
    const ellm_chat_message_tools *per_message; /* one per message, or NULL */
} ellm_chat_tools;

/* Detects the family from a tokenizer.chat_template string (NULL/unknown -> CHATML,
 * *recognised = false). recognised may be NULL. */
ellm_chat_family ellm_chat_detect(const char *template_text, bool *recognised);

/* "chatml", "llama2", "llama3", "gemma", "phi3", "mistral", "smollm", "qwen2.5", "qwen3",
 * "llama3.1", "llama3.2", "zephyr", "qwen2", "mistral-v3". */
const char *ellm_chat_family_name(ellm_chat_family f);
/* The family of a name as ellm_chat_family_name spells it; false if there is none. */
bool ellm_chat_family_from_name(const char *name, ellm_chat_family *out);

/* Renders messages exactly as the family's Jinja template does (with bos/eos token texts where
 * the template inserts them; NULL counts as ""), appending the generation prompt when
 * add_generation_prompt. Returns a malloc'd string, or NULL with an ellm_fail message (e.g. a
 * role the template rejects, like Gemma with a non-alternating conversation where the original
 * template raises an exception, or no messages at all). */
char *ellm_chat_format(ellm_chat_family f, const ellm_chat_message *msgs, size_t n,
                       bool add_generation_prompt, const char *bos_text, const char *eos_text);

/* A byte range of a rendered prompt. */
typedef struct ellm_chat_span {
    size_t offset, length;
} ellm_chat_span;

/* ellm_chat_format that also reports which byte ranges of the text came from the messages
 * (their contents and roles, possibly stripped or escaped as the template does): *spans gets a
 * malloc'd array of *n_spans ranges in increasing order, adjacent ones merged (NULL when there
 * are none). Everything outside them is the template's own markup. Callers tokenize the message
 * ranges without special-token parsing so message text cannot inject control tokens. */
char *ellm_chat_format_spans(ellm_chat_family f, const ellm_chat_message *msgs, size_t n,
                             bool add_generation_prompt, const char *bos_text, const char *eos_text,
                             ellm_chat_span **spans, size_t *n_spans);

/* ellm_chat_format_spans with tools (NULL: none); spans and n_spans may be NULL. */
char *ellm_chat_format_tools(ellm_chat_family f, const ellm_chat_message *msgs, size_t n,
                             const ellm_chat_tools *tools, bool add_generation_prompt,
                             const char *bos_text, const char *eos_text, ellm_chat_span **spans,
                             size_t *n_spans);

/* Convenience: from a loaded model (reads tokenizer.chat_template and the bos/eos token texts
 * through the public API). *template_recognised (may be NULL) is false when the model has no
 * template or one no family matches; ChatML is used then and the caller should warn. */
char *ellm_chat_format_model(const edgellm_model *model, const ellm_chat_message *msgs, size_t n,
                             bool add_generation_prompt, bool *template_recognised);

/* ellm_chat_format_model with the message spans of ellm_chat_format_spans. */
char *ellm_chat_format_model_spans(const edgellm_model *model, const ellm_chat_message *msgs,
                                   size_t n, bool add_generation_prompt, bool *template_recognised,
                                   ellm_chat_span **spans, size_t *n_spans);

/* ellm_chat_format_model_spans with tools (NULL: none). */
char *ellm_chat_format_model_tools(const edgellm_model *model, const ellm_chat_message *msgs,
                                   size_t n, const ellm_chat_tools *tools,
                                   bool add_generation_prompt, bool *template_recognised,
                                   ellm_chat_span **spans, size_t *n_spans);

/* Tokenizes a rendered prompt with the template's markup parsed for control tokens and the
 * message spans as plain text. The text is cut only where the markup has a control token, so
 * for message text that holds no control-token text the ids equal those of tokenizing the whole
 * text with EDGELLM_TOKENIZE_PARSE_SPECIAL (SentencePiece's dummy prefix and BPE merges see the
 * same pieces). ensure_bos: begin with BOS when the model adds one by default and the text did
 * not start with it. Returns a malloc'd array in *tokens (*n_tokens ids) or an error status. */
edgellm_status ellm_chat_tokenize(const edgellm_model *model, const char *text,
                                  const ellm_chat_span *spans, size_t n_spans, bool ensure_bos,
                                  edgellm_token **tokens, int32_t *n_tokens);

/* The family a model's template belongs to (see ellm_chat_detect). */
ellm_chat_family ellm_chat_detect_model(const edgellm_model *model, bool *recognised);

/* Text that ends an assistant turn in this family, for models whose vocabulary lacks the
 * end-of-turn token (it then comes out as plain text). NULL-terminated list. */
const char *const *ellm_chat_stop_strings(ellm_chat_family f);

/* How a family's model writes a tool call: prefix, then {"name": NAME, "<args_key>": {...}},
 * then suffix (Qwen/Hermes: <tool_call>\n...\n</tool_call>; Llama 3.1/3.2: the bare object with
 * "parameters"; Mistral v3: [TOOL_CALLS] [...]). What a constrained call is generated as. Under
 * tool_choice "auto" the grammar waits for trigger, the start of prefix (Llama: <|python_tag|>,
 * which its models write before a call), and separator joins further calls (NULL: one call). */
typedef struct ellm_chat_tool_syntax {
    const char *prefix, *suffix, *args_key;
    const char *trigger, *separator;
} ellm_chat_tool_syntax;
ellm_chat_tool_syntax ellm_chat_tool_call_syntax(ellm_chat_family f);

/* A model's answer split into text and tool calls. */
typedef struct ellm_chat_parsed_call {
    char *name;
    char *arguments; /* compact JSON text of the arguments object */
} ellm_chat_parsed_call;

typedef struct ellm_chat_parsed {
    char *content; /* the text outside the calls (possibly ""), malloc'd */
    ellm_chat_parsed_call *calls;
    size_t n_calls;
} ellm_chat_parsed;

/* Parses the family's call syntax out of generated text. Text that does not hold well-formed
 * calls (a marker followed by anything but call objects, a truncated call) is no call: it all
 * stays content. Returns false only when out of memory. */
bool ellm_chat_parse_tool_calls(ellm_chat_family f, const char *text, size_t len,
                                ellm_chat_parsed *out);
void ellm_chat_parsed_free(ellm_chat_parsed *p);

/* Where in streamed text a tool call may begin: the offset of the first byte that could be part
 * of the family's call marker (text before it is plain content that can be sent), len when
 * none can. At the very start, Llama's calls begin with '{' or <|python_tag|>. */
size_t ellm_chat_tool_call_start(ellm_chat_family f, const char *text, size_t len);

/* JSON text as Python's json.dumps(ensure_ascii=False) writes it, which is what the templates'
 * tojson filter produces under transformers: indent < 0 is one line with ", " and ": ", indent
 * >= 0 puts members on their own lines; compact writes "," and ":" with no spaces. Object members
 * in their order. Appends to *out (NULL, or a malloc'd string of *len bytes; grown with
 * realloc); false when out of memory (then *out is freed and NULL). */
bool ellm_chat_json_dump(const json_t *value, int indent, bool compact, char **out, size_t *len);

/* A conversation read from JSON: {"messages": [{"role": ..., "content": ...}, ...]} or the bare
 * array. The strings are owned by the conversation. */
typedef struct ellm_chat_conversation {
    ellm_chat_message *messages;
    size_t n;
    /* "tools" and the messages' "tool_calls" / "tool_call_id", borrowed from json */
    ellm_chat_tools tools;
    ellm_chat_message_tools *per_message;
    ellm_chat_tool_call *calls;
    json_t *json;
} ellm_chat_conversation;

edgellm_status ellm_chat_conversation_parse(const char *json_text, ellm_chat_conversation *out);
void ellm_chat_conversation_free(ellm_chat_conversation *conv);

#endif
