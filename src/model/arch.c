/* The architecture table (model/arch.h). Traits are those of the models' published definitions
 * and of the GGUF convention other runtimes read them in. */
#include "model/arch.h"

#include <stdio.h>
#include <string.h>

#include "core/status.h"

static const ellm_arch archs[] = {
    {
        .name = "llama",
        /* Mistral is a llama with an optional sliding window; GGUF runtimes load it as llama. */
        .hf_classes = {"LlamaForCausalLM", "MistralForCausalLM"},
    },
    {
        /* Files some converters write for Mistral models; computed exactly as llama. */
        .name = "mistral",
    },
    {
        .name = "qwen2",
        .hf_classes = {"Qwen2ForCausalLM"},
        .rope_neox = true,
        .qkv_bias = true,
        .hf_window_opt_in = true,
    },
    {
        .name = "qwen3",
        .hf_classes = {"Qwen3ForCausalLM"},
        .rope_neox = true,
        .qk_norm = true,
        .hf_window_opt_in = true,
    },
    {
        .name = "gemma",
        .hf_classes = {"GemmaForCausalLM"},
        .rope_neox = true,
        .activation = ELLM_ACT_GELU_TANH,
        .embd_scale = true,
        .norm_plus_one = true,
        .tied_output = true,
        /* Gemma 1 configs say "gelu" but the model was trained with the tanh approximation. */
        .hf_act_alias = "gelu",
    },
    {
        .name = "gemma2",
        .hf_classes = {"Gemma2ForCausalLM"},
        .rope_neox = true,
        .post_norms = true,
        .activation = ELLM_ACT_GELU_TANH,
        .embd_scale = true,
        .norm_plus_one = true,
        .tied_output = true,
        .swa_pattern = 2,
        .query_scalar_wide_layers = 46,
    },
    {
        .name = "gemma3",
        .hf_classes = {"Gemma3ForCausalLM"},
        .rope_neox = true,
        .qk_norm = true,
        .post_norms = true,
        .activation = ELLM_ACT_GELU_TANH,
        .embd_scale = true,
        .norm_plus_one = true,
        .tied_output = true,
        .swa_pattern = 6,
        .swa_rope_base = 10000.0f,
        .query_scalar_wide_layers = 62,
    },
    {
        .name = "phi3",
        .hf_classes = {"Phi3ForCausalLM"},
        .rope_neox = true,
        .fused_qkv = true,
        .fused_gate_up = true,
        .longrope = true,
    },
};

enum { N_ARCHS = sizeof archs / sizeof archs[0] };

const ellm_arch *ellm_arch_at(size_t i) { return i < N_ARCHS ? &archs[i] : NULL; }

/* "a, b, c": every row's name, or every HF class. */
static const char *supported_list(bool hf_classes, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < N_ARCHS; i++) {
        const char *const *names = hf_classes ? archs[i].hf_classes : &archs[i].name;
        size_t n = hf_classes ? ELLM_ARCH_MAX_HF_CLASSES : 1;
        for (size_t k = 0; k < n && names[k] && used < size; k++)
            used += (size_t)snprintf(buf + used, size - used, "%s%s", used ? ", " : "", names[k]);
    }
    return buf;
}

edgellm_status ellm_arch_find(const char *name, size_t len, const ellm_arch **out)
{
    *out = NULL;
    for (size_t i = 0; i < N_ARCHS; i++)
        if (strlen(archs[i].name) == len && memcmp(archs[i].name, name, len) == 0) {
            *out = &archs[i];
            return EDGELLM_OK;
        }
    char list[256];
    return ellm_fail(EDGELLM_ERR_UNSUPPORTED,
                     "architecture '%.*s' is not supported (supported: %s)",
                     (int)(len > 40 ? 40 : len), name, supported_list(false, list, sizeof list));
}

edgellm_status ellm_arch_find_hf(const char *hf_class, const ellm_arch **out)
{
    *out = NULL;
    for (size_t i = 0; i < N_ARCHS; i++)
        for (size_t k = 0; k < ELLM_ARCH_MAX_HF_CLASSES && archs[i].hf_classes[k]; k++)
            if (!strcmp(archs[i].hf_classes[k], hf_class)) {
                *out = &archs[i];
                return EDGELLM_OK;
            }
    char list[512];
    return ellm_fail(EDGELLM_ERR_UNSUPPORTED,
                     "model class '%.64s' is not supported (supported: %s)", hf_class,
                     supported_list(true, list, sizeof list));
}

bool ellm_arch_plain_block(const ellm_arch *a)
{
    return !a->qk_norm && !a->qkv_bias && !a->fused_qkv && !a->fused_gate_up && !a->post_norms &&
           a->activation == ELLM_ACT_SILU && !a->embd_scale && !a->norm_plus_one &&
           a->swa_pattern == 0 && a->query_scalar_wide_layers == 0 && !a->longrope;
}
