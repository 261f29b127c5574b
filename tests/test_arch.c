/* The architecture table (src/model/arch.c) against the architectures' published definitions:
 * every row's name, Hugging Face classes and traits, lookups both ways, refusals that name the
 * supported ones, and a tiny file of every row loaded with the traits the row gives. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/threadpool.h"
#include "gguf/gguf.h"
#include "model/arch.h"
#include "model/model.h"
#include "test_util.h"

/* Written from the models' definitions, not from the table: a wrong row disagrees here. */
static const struct {
    const char *name, *hf_classes, *traits;
} expected[] = {
    {"llama", "LlamaForCausalLM MistralForCausalLM", ""},
    {"mistral", "", ""},
    {"qwen2", "Qwen2ForCausalLM", "neox qkv_bias hf_window_opt_in"},
    {"qwen3", "Qwen3ForCausalLM", "neox qk_norm hf_window_opt_in"},
    {"gemma", "GemmaForCausalLM", "neox gelu_tanh embd_scale norm_plus_one tied hf_act_alias=gelu"},
    {"gemma2", "Gemma2ForCausalLM",
     "neox post_norms gelu_tanh embd_scale norm_plus_one tied swa_pattern=2 wide_layers=46"},
    {"gemma3", "Gemma3ForCausalLM",
     "neox qk_norm post_norms gelu_tanh embd_scale norm_plus_one tied swa_pattern=6 "
     "swa_rope_base=10000 wide_layers=62"},
    {"phi3", "Phi3ForCausalLM", "neox fused_qkv fused_gate_up longrope"},
};
enum { N_EXPECTED = sizeof expected / sizeof expected[0] };

static void append(char *buf, size_t size, const char *word)
{
    size_t used = strlen(buf);
    snprintf(buf + used, size - used, "%s%s", used ? " " : "", word);
}

/* The row's traits in the words of `expected`. */
static void describe(const ellm_arch *a, char *buf, size_t size)
{
    char word[64];
    buf[0] = '\0';
    const struct {
        bool on;
        const char *word;
    } flags[] = {
        {a->rope_neox, "neox"},
        {a->qk_norm, "qk_norm"},
        {a->qkv_bias, "qkv_bias"},
        {a->fused_qkv, "fused_qkv"},
        {a->fused_gate_up, "fused_gate_up"},
        {a->post_norms, "post_norms"},
        {a->activation == ELLM_ACT_GELU_TANH, "gelu_tanh"},
        {a->embd_scale, "embd_scale"},
        {a->norm_plus_one, "norm_plus_one"},
        {a->tied_output, "tied"},
    };
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        if (flags[i].on)
            append(buf, size, flags[i].word);
    if (a->swa_pattern) {
        snprintf(word, sizeof word, "swa_pattern=%d", (int)a->swa_pattern);
        append(buf, size, word);
    }
    if (a->swa_rope_base != 0) {
        snprintf(word, sizeof word, "swa_rope_base=%g", a->swa_rope_base);
        append(buf, size, word);
    }
    if (a->query_scalar_wide_layers) {
        snprintf(word, sizeof word, "wide_layers=%d", (int)a->query_scalar_wide_layers);
        append(buf, size, word);
    }
    if (a->longrope)
        append(buf, size, "longrope");
    if (a->hf_act_alias) {
        snprintf(word, sizeof word, "hf_act_alias=%s", a->hf_act_alias);
        append(buf, size, word);
    }
    if (a->hf_window_opt_in)
        append(buf, size, "hf_window_opt_in");
}

static void test_rows(void)
{
    size_t n_rows = 0;
    while (ellm_arch_at(n_rows))
        n_rows++;
    CHECK_MSG(n_rows == N_EXPECTED, "the table has %zu rows, the test knows %d", n_rows,
              (int)N_EXPECTED);
    for (size_t i = 0; i < n_rows; i++) {
        const ellm_arch *a = ellm_arch_at(i), *found = NULL;
        CHECK_MSG(ellm_arch_find(a->name, strlen(a->name), &found) == EDGELLM_OK && found == a,
                  "row '%s' is not the one its name finds (duplicate name?)", a->name);
        int e = -1;
        for (int k = 0; k < N_EXPECTED; k++)
            if (!strcmp(expected[k].name, a->name))
                e = k;
        CHECK_MSG(e >= 0, "row '%s' is not an architecture this test knows", a->name);
        if (e < 0)
            continue;
        char classes[256] = "", traits[512];
        for (size_t k = 0; k < ELLM_ARCH_MAX_HF_CLASSES && a->hf_classes[k]; k++) {
            append(classes, sizeof classes, a->hf_classes[k]);
            /* Round trip: the class imports as this very row (a class listed twice would find
             * the first row that lists it). */
            CHECK_MSG(ellm_arch_find_hf(a->hf_classes[k], &found) == EDGELLM_OK && found == a,
                      "class %s of row '%s' does not import as that row", a->hf_classes[k],
                      a->name);
        }
        CHECK_MSG(!strcmp(classes, expected[e].hf_classes), "row '%s' imports '%s', expected '%s'",
                  a->name, classes, expected[e].hf_classes);
        describe(a, traits, sizeof traits);
        CHECK_MSG(!strcmp(traits, expected[e].traits), "row '%s' has traits '%s', expected '%s'",
                  a->name, traits, expected[e].traits);
        /* What the loader relies on: biases sit on split projections, a sliding base on
         * sliding layers. */
        CHECK_MSG(!(a->qkv_bias && a->fused_qkv), "row '%s': biases of a fused QKV", a->name);
        CHECK_MSG(a->swa_rope_base == 0 || a->swa_pattern > 0,
                  "row '%s': a sliding RoPE base without sliding layers", a->name);
    }
    /* Every class of the expected list, looked up by name, gives its row's GGUF name. */
    for (int e = 0; e < N_EXPECTED; e++) {
        char classes[256];
        snprintf(classes, sizeof classes, "%s", expected[e].hf_classes);
        for (char *cls = strtok(classes, " "); cls; cls = strtok(NULL, " ")) {
            const ellm_arch *a = NULL;
            CHECK_MSG(
                ellm_arch_find_hf(cls, &a) == EDGELLM_OK && !strcmp(a->name, expected[e].name),
                "%s imports as '%s', expected '%s'", cls, a ? a->name : "(none)", expected[e].name);
        }
    }
}

static void test_refusals(void)
{
    const ellm_arch *a = (const ellm_arch *)1;
    CHECK(ellm_arch_find("mamba", 5, &a) == EDGELLM_ERR_UNSUPPORTED && a == NULL);
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", edgellm_last_error());
    CHECK_MSG(strstr(msg, "'mamba' is not supported") != NULL, "message: %s", msg);
    for (int e = 0; e < N_EXPECTED; e++) {
        char want[64];
        snprintf(want, sizeof want, "%s%s", expected[e].name, e + 1 < N_EXPECTED ? ", " : ")");
        CHECK_MSG(strstr(msg, want) != NULL, "'%s' not listed in: %s", expected[e].name, msg);
    }
    /* Names are matched whole: neither a prefix nor a longer name is a row. */
    CHECK(ellm_arch_find("gemma2", 5, &a) == EDGELLM_OK && a && !strcmp(a->name, "gemma"));
    CHECK(ellm_arch_find("llam", 4, &a) == EDGELLM_ERR_UNSUPPORTED);
    CHECK(ellm_arch_find("llama3", 6, &a) == EDGELLM_ERR_UNSUPPORTED);
    CHECK(ellm_arch_find("", 0, &a) == EDGELLM_ERR_UNSUPPORTED);

    CHECK(ellm_arch_find_hf("MambaForCausalLM", &a) == EDGELLM_ERR_UNSUPPORTED && a == NULL);
    snprintf(msg, sizeof msg, "%s", edgellm_last_error());
    CHECK_MSG(strstr(msg, "model class 'MambaForCausalLM' is not supported") != NULL, "message: %s",
              msg);
    for (int e = 0; e < N_EXPECTED; e++) {
        char classes[256];
        snprintf(classes, sizeof classes, "%s", expected[e].hf_classes);
        for (char *cls = strtok(classes, " "); cls; cls = strtok(NULL, " "))
            CHECK_MSG(strstr(msg, cls) != NULL, "%s not listed in: %s", cls, msg);
    }
    CHECK(ellm_arch_find_hf("llama", &a) == EDGELLM_ERR_UNSUPPORTED); /* a GGUF name, no class */
}

/* AWQ's fold and pruning accept exactly the rows with the plain llama block. */
static void test_plain_block(void)
{
    int plain = 0;
    for (size_t i = 0; ellm_arch_at(i); i++) {
        const ellm_arch *a = ellm_arch_at(i);
        bool is_llama_block = !strcmp(a->name, "llama") || !strcmp(a->name, "mistral");
        CHECK(ellm_arch_plain_block(a) == is_llama_block);
        plain += ellm_arch_plain_block(a);
    }
    CHECK(plain == 2);
}

/* A two-layer model of the row's shape (every tensor its traits imply, small constant weights):
 * it must load with the row's traits in its hyper-parameters and compute finite logits. */
enum { EMBD = 8, HEADS = 2, HEAD_DIM = EMBD / HEADS, FF = 16, VOCAB = 16, LAYERS = 2 };

static int write_model(const ellm_arch *a, const char *path, const float *values)
{
    gguf_writer *w = ellm_gguf_writer_create();
    char key[128];
    int ok = w != NULL;
#define U32(suffix, v)                                                                             \
    snprintf(key, sizeof key, "%s.%s", a->name, suffix);                                           \
    ok = ok && ellm_gguf_writer_set_u32(w, key, v) == EDGELLM_OK;
    ok = ok && ellm_gguf_writer_set_str(w, "general.architecture", a->name) == EDGELLM_OK;
    U32("embedding_length", EMBD)
    U32("block_count", LAYERS)
    U32("feed_forward_length", FF)
    U32("attention.head_count", HEADS)
    U32("context_length", 64)
    if (a->swa_pattern > 0) {
        U32("attention.sliding_window", 4)
    }
#undef U32
    struct {
        const char *name;
        uint64_t cols, rows;
        bool wanted;
    } tensors[] = {
        {"attn_norm.weight", EMBD, 1, true},
        {"attn_q.weight", EMBD, EMBD, !a->fused_qkv},
        {"attn_k.weight", EMBD, EMBD, !a->fused_qkv},
        {"attn_v.weight", EMBD, EMBD, !a->fused_qkv},
        {"attn_qkv.weight", EMBD, 3 * EMBD, a->fused_qkv},
        {"attn_q.bias", EMBD, 1, a->qkv_bias},
        {"attn_k.bias", EMBD, 1, a->qkv_bias},
        {"attn_v.bias", EMBD, 1, a->qkv_bias},
        {"attn_q_norm.weight", HEAD_DIM, 1, a->qk_norm},
        {"attn_k_norm.weight", HEAD_DIM, 1, a->qk_norm},
        {"attn_output.weight", EMBD, EMBD, true},
        {"post_attention_norm.weight", EMBD, 1, a->post_norms},
        {"ffn_norm.weight", EMBD, 1, true},
        {"ffn_gate.weight", EMBD, FF, !a->fused_gate_up},
        {"ffn_up.weight", EMBD, a->fused_gate_up ? 2 * FF : FF, true},
        {"ffn_down.weight", FF, EMBD, true},
        {"post_ffw_norm.weight", EMBD, 1, a->post_norms},
    };
    uint64_t embd_ne[2] = {EMBD, VOCAB}, norm_ne[1] = {EMBD};
    ok = ok &&
         ellm_gguf_writer_add_tensor(w, "token_embd.weight", ELLM_TYPE_F32, 2, embd_ne, values) ==
             EDGELLM_OK &&
         ellm_gguf_writer_add_tensor(w, "output_norm.weight", ELLM_TYPE_F32, 1, norm_ne, values) ==
             EDGELLM_OK;
    for (int il = 0; il < LAYERS; il++)
        for (size_t t = 0; t < sizeof tensors / sizeof tensors[0]; t++) {
            if (!tensors[t].wanted)
                continue;
            char name[96];
            snprintf(name, sizeof name, "blk.%d.%s", il, tensors[t].name);
            uint64_t ne[2] = {tensors[t].cols, tensors[t].rows};
            ok = ok && ellm_gguf_writer_add_tensor(w, name, ELLM_TYPE_F32, ne[1] > 1 ? 2 : 1, ne,
                                                   values) == EDGELLM_OK;
        }
    ok = ok && ellm_gguf_writer_write(w, path) == EDGELLM_OK;
    ellm_gguf_writer_free(w);
    return ok;
}

static void test_load_each_row(void)
{
    float *values = malloc(2 * FF * EMBD * sizeof *values); /* the largest tensor */
    for (int i = 0; values && i < 2 * FF * EMBD; i++)
        values[i] = 0.05f * (float)((i * 7) % 11) - 0.2f + (i % EMBD == 0 ? 1.0f : 0.0f);
    for (size_t i = 0; values && ellm_arch_at(i); i++) {
        const ellm_arch *a = ellm_arch_at(i);
        char file[64];
        snprintf(file, sizeof file, "arch_%s.gguf", a->name);
        const char *path = test_tmp_path(file);
        gguf_file *f = NULL;
        ellm_model *m = NULL;
        int ok = write_model(a, path, values) && ellm_gguf_open(path, &f) == EDGELLM_OK &&
                 ellm_model_create(f, &m) == EDGELLM_OK;
        CHECK_MSG(ok, "a '%s' model does not load: %s", a->name, edgellm_last_error());
        if (!ok) {
            ellm_gguf_close(f);
            continue;
        }
        const ellm_hparams *hp = ellm_model_hparams(m);
        CHECK_MSG(!strcmp(hp->arch, a->name), "loaded '%s' as '%s'", a->name, hp->arch);
        CHECK_MSG(hp->rope_neox == a->rope_neox && hp->qk_norm == a->qk_norm &&
                      hp->post_norms == a->post_norms && hp->fused_qkv == a->fused_qkv &&
                      hp->fused_gate_up == a->fused_gate_up &&
                      hp->gelu_ffn == (a->activation == ELLM_ACT_GELU_TANH) &&
                      hp->swa_pattern == a->swa_pattern,
                  "'%s': the loaded flags differ from the row", a->name);
        CHECK_MSG(a->embd_scale ? fabsf(hp->embd_scale - sqrtf((float)EMBD)) < 1e-6f
                                : hp->embd_scale == 0,
                  "'%s': embedding scale %g", a->name, hp->embd_scale);
        CHECK_MSG(hp->rope_freq_base_swa ==
                      (a->swa_rope_base > 0 ? a->swa_rope_base : hp->rope_freq_base),
                  "'%s': sliding RoPE base %g", a->name, hp->rope_freq_base_swa);
        CHECK_MSG(hp->sliding_window == (a->swa_pattern > 0 ? 4 : 0), "'%s': window %d", a->name,
                  (int)hp->sliding_window);
        ellm_state_params sp = {
            .n_ctx = 8, .n_batch = 4, .kv_type = EDGELLM_KV_F32, .n_threads = 1};
        ellm_state *s = NULL;
        float logits[4 * VOCAB];
        const edgellm_token tokens[4] = {1, 5, 9, 3};
        ok = ellm_state_create(m, &sp, &s) == EDGELLM_OK &&
             ellm_forward(m, s, NULL, tokens, 4, true, logits) == EDGELLM_OK;
        CHECK_MSG(ok, "'%s': forward pass failed: %s", a->name, edgellm_last_error());
        for (int k = 0; ok && k < 4 * VOCAB; k++)
            ok = isfinite(logits[k]);
        CHECK_MSG(ok, "'%s': logits are not finite", a->name);
        ellm_state_free(s);
        ellm_model_free(m);
        ellm_gguf_close(f);
    }
    free(values);
}

int main(void)
{
    test_rows();
    test_refusals();
    test_plain_block();
    test_load_each_row();
    return test_finish("test_arch");
}
