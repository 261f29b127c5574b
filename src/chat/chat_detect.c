/* Recognising a template's family from markers in its text, and the families' names. The markers
 * are the control tokens each format is built from (they survive every revision of a family's
 * template), checked from the most specific to the most general. */
#include <string.h>

#include "chat/chat.h"

static const char *const family_names[ELLM_CHAT_FAMILY_COUNT] = {
    [ELLM_CHAT_CHATML] = "chatml",    [ELLM_CHAT_LLAMA2] = "llama2",
    [ELLM_CHAT_LLAMA3] = "llama3",    [ELLM_CHAT_GEMMA] = "gemma",
    [ELLM_CHAT_PHI3] = "phi3",        [ELLM_CHAT_MISTRAL] = "mistral",
    [ELLM_CHAT_SMOLLM] = "smollm",    [ELLM_CHAT_QWEN25] = "qwen2.5",
    [ELLM_CHAT_QWEN3] = "qwen3",      [ELLM_CHAT_LLAMA31] = "llama3.1",
    [ELLM_CHAT_LLAMA32] = "llama3.2", [ELLM_CHAT_ZEPHYR] = "zephyr",
    [ELLM_CHAT_QWEN2] = "qwen2",      [ELLM_CHAT_MISTRAL_V3] = "mistral-v3",
};

const char *ellm_chat_family_name(ellm_chat_family f)
{
    return (unsigned)f < ELLM_CHAT_FAMILY_COUNT ? family_names[f] : "unknown";
}

bool ellm_chat_family_from_name(const char *name, ellm_chat_family *out)
{
    for (int f = 0; name && f < ELLM_CHAT_FAMILY_COUNT; f++) {
        if (strcmp(name, family_names[f]) == 0) {
            *out = (ellm_chat_family)f;
            return true;
        }
    }
    return false;
}

static bool has(const char *text, const char *marker) { return strstr(text, marker) != NULL; }

static bool detect(const char *t, ellm_chat_family *f)
{
    if (has(t, "<|start_header_id|>") && has(t, "<|eot_id|>")) {
        /* 3.1 and later always open with a system turn giving the knowledge cutoff and date. */
        if (has(t, "Cutting Knowledge Date"))
            *f = has(t, "strftime_now") ? ELLM_CHAT_LLAMA32 : ELLM_CHAT_LLAMA31;
        else
            *f = ELLM_CHAT_LLAMA3;
    } else if (has(t, "<|im_start|>")) {
        /* ChatML variants differ in their default system prompt and reasoning blocks. */
        if (has(t, "<think>") || has(t, "reasoning_content"))
            *f = ELLM_CHAT_QWEN3;
        else if (has(t, "You are Qwen, created by Alibaba Cloud"))
            *f = ELLM_CHAT_QWEN25;
        else if (has(t, "You are a helpful AI assistant named SmolLM"))
            *f = ELLM_CHAT_SMOLLM;
        else if (has(t, "system\nYou are a helpful assistant.<|im_end|>") ||
                 has(t, "system\\nYou are a helpful assistant.<|im_end|>"))
            *f = ELLM_CHAT_QWEN2; /* the default system turn, newline written or escaped */
        else
            *f = ELLM_CHAT_CHATML;
    } else if (has(t, "<start_of_turn>"))
        *f = ELLM_CHAT_GEMMA;
    else if (has(t, "<|user|>") && has(t, "<|end|>"))
        *f = ELLM_CHAT_PHI3;
    else if (has(t, "<|user|>") && has(t, "<|assistant|>") && has(t, "eos_token"))
        *f = ELLM_CHAT_ZEPHYR; /* each turn ends with EOS instead of Phi-3's <|end|> */
    else if (has(t, "[INST]") && has(t, "<<SYS>>"))
        *f = ELLM_CHAT_LLAMA2;
    else if (has(t, "[INST]") && (has(t, "[AVAILABLE_TOOLS]") || has(t, "[TOOL_CALLS]")))
        *f = ELLM_CHAT_MISTRAL_V3; /* the tool-calling generation of Mistral's format */
    else if (has(t, "[INST]"))
        *f = ELLM_CHAT_MISTRAL;
    else
        return false;
    return true;
}

ellm_chat_family ellm_chat_detect(const char *template_text, bool *recognised)
{
    ellm_chat_family f = ELLM_CHAT_CHATML;
    bool ok = template_text && detect(template_text, &f);
    if (recognised)
        *recognised = ok;
    return ok ? f : ELLM_CHAT_CHATML;
}

const char *const *ellm_chat_stop_strings(ellm_chat_family f)
{
    static const char *const chatml[] = {"<|im_end|>", "<|im_start|>", NULL};
    static const char *const llama2[] = {"</s>", "[INST]", NULL};
    static const char *const llama3[] = {"<|eot_id|>", "<|start_header_id|>", NULL};
    static const char *const gemma[] = {"<end_of_turn>", "<start_of_turn>", NULL};
    static const char *const phi3[] = {"<|end|>", "<|user|>", NULL};
    static const char *const zephyr[] = {"</s>", "<|user|>", NULL};
    switch (f) {
    case ELLM_CHAT_LLAMA2:
    case ELLM_CHAT_MISTRAL:
    case ELLM_CHAT_MISTRAL_V3: return llama2;
    case ELLM_CHAT_LLAMA3:
    case ELLM_CHAT_LLAMA31:
    case ELLM_CHAT_LLAMA32: return llama3;
    case ELLM_CHAT_GEMMA: return gemma;
    case ELLM_CHAT_PHI3: return phi3;
    case ELLM_CHAT_ZEPHYR: return zephyr;
    default: return chatml;
    }
}
