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

typedef struct ellm_chat_message {
    const char *role;    /* "system", "user", "assistant" (others as the template treats them) */
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
                             bool add_generation_prompt, const char *bos_text,
                             const char *eos_text, ellm_chat_span **spans, size_t *n_spans);

/* Convenience: from a loaded model (reads tokenizer.chat_template and the bos/eos token texts
 * through the public API). *template_recognised (may be NULL) is false when the model has no
 * template or one no family matches; ChatML is used then and the caller should warn. */
char *ellm_chat_format_model(const edgellm_model *model, const ellm_chat_message *msgs, size_t n,
                             bool add_generation_prompt, bool *template_recognised);

/* ellm_chat_format_model with the message spans of ellm_chat_format_spans. */
char *ellm_chat_format_model_spans(const edgellm_model *model, const ellm_chat_message *msgs,
                                   size_t n, bool add_generation_prompt,
                                   bool *template_recognised, ellm_chat_span **spans,
                                   size_t *n_spans);

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

/* A conversation read from JSON: {"messages": [{"role": ..., "content": ...}, ...]} or the bare
 * array. The strings are owned by the conversation. */
typedef struct ellm_chat_conversation {
    ellm_chat_message *messages;
    size_t n;
} ellm_chat_conversation;

edgellm_status ellm_chat_conversation_parse(const char *json_text, ellm_chat_conversation *out);
void ellm_chat_conversation_free(ellm_chat_conversation *conv);

#endif
