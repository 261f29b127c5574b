/* Test helper for the memory planner: writes a random-weight Llama model of a chosen size that
 * reuses the vocabulary (and every other tokenizer key) of a real GGUF file, so `edgellm run`
 * loads and runs it, and its peak memory can be compared with `edgellm plan`.
 *
 *   store_synth_model VOCAB_GGUF OUT N_EMBD N_LAYER N_HEAD N_HEAD_KV N_FF N_CTX [--ff-meta N]
 *                     [--vocab-rows N]
 *
 * --ff-meta writes N as feed_forward_length while the FFN tensors keep N_FF, and --vocab-rows
 * gives the embedding and output N rows instead of one per vocabulary entry: files that parse but
 * cannot load, for the store's install checks.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"

typedef struct fill_state {
    uint32_t seed;
    float scale;
    bool ones;
} fill_state;

static edgellm_status fill_random(void *user, void *dst, uint64_t n_bytes)
{
    fill_state *fs = user;
    float *f = dst;
    for (uint64_t i = 0; i < n_bytes / sizeof(float); i++) {
        fs->seed = fs->seed * 1664525u + 1013904223u;
        f[i] = fs->ones ? 1.0f : ((float)(fs->seed >> 8) / 16777216.0f - 0.5f) * fs->scale;
    }
    return EDGELLM_OK;
}

int main(int argc, char **argv)
{
    uint32_t ff_meta = 0, vocab_rows = 0;
    bool usage_ok = argc >= 9 && (argc - 9) % 2 == 0;
    for (int i = 9; usage_ok && i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--ff-meta") == 0)
            ff_meta = (uint32_t)atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--vocab-rows") == 0)
            vocab_rows = (uint32_t)atoi(argv[i + 1]);
        else
            usage_ok = false;
    }
    if (!usage_ok) {
        fprintf(stderr,
                "usage: %s VOCAB_GGUF OUT N_EMBD N_LAYER N_HEAD N_HEAD_KV N_FF N_CTX "
                "[--ff-meta N] [--vocab-rows N]\n",
                argv[0]);
        return 2;
    }
    uint32_t n_embd = (uint32_t)atoi(argv[3]), n_layer = (uint32_t)atoi(argv[4]);
    uint32_t n_head = (uint32_t)atoi(argv[5]), n_head_kv = (uint32_t)atoi(argv[6]);
    uint32_t n_ff = (uint32_t)atoi(argv[7]), n_ctx = (uint32_t)atoi(argv[8]);
    if (!n_embd || !n_layer || !n_head || !n_head_kv || !n_ff || !n_ctx || n_embd % n_head) {
        fprintf(stderr, "bad dimensions\n");
        return 2;
    }
    gguf_file *in = NULL;
    if (ellm_gguf_open(argv[1], &in) != EDGELLM_OK) {
        fprintf(stderr, "%s\n", edgellm_last_error());
        return 1;
    }
    const gguf_array *tokens = NULL;
    if (ellm_gguf_get_array(in, "tokenizer.ggml.tokens", &tokens) != EDGELLM_OK) {
        fprintf(stderr, "%s has no tokenizer.ggml.tokens\n", argv[1]);
        return 1;
    }
    uint64_t n_vocab = vocab_rows ? vocab_rows : tokens->n;
    gguf_writer *w = ellm_gguf_writer_create();
    edgellm_status st = w ? EDGELLM_OK : EDGELLM_ERR_OUT_OF_MEMORY;
    for (uint64_t i = 0; st == EDGELLM_OK && i < ellm_gguf_kv_count(in); i++) {
        const gguf_kv *kv = ellm_gguf_kv_at(in, i);
        char *key = ellm_gguf_str_dup(kv->key);
        if (!key)
            st = EDGELLM_ERR_OUT_OF_MEMORY;
        else if (strncmp(key, "tokenizer.", 10) == 0 || strcmp(key, "general.architecture") == 0 ||
                 strcmp(key, "llama.attention.layer_norm_rms_epsilon") == 0)
            st = ellm_gguf_writer_set_value(w, key, &kv->value);
        free(key);
    }
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_set_str(w, "general.name", "store planner synthetic");
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_set_u32(w, "llama.embedding_length", n_embd);
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_set_u32(w, "llama.block_count", n_layer);
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_set_u32(w, "llama.attention.head_count", n_head);
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_set_u32(w, "llama.attention.head_count_kv", n_head_kv);
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_set_u32(w, "llama.feed_forward_length", ff_meta ? ff_meta : n_ff);
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_set_u32(w, "llama.context_length", n_ctx);
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_set_u32(w, "llama.rope.dimension_count", n_embd / n_head);

    uint32_t head_dim = n_embd / n_head, kv_dim = n_head_kv * head_dim;
    /* One fill state per tensor, alive until the write below. */
    size_t n_tensors = 3 + 9 * (size_t)n_layer, t = 0;
    fill_state *states = calloc(n_tensors, sizeof *states);
    if (!states)
        st = EDGELLM_ERR_OUT_OF_MEMORY;
#define ADD(name, nd, d0, d1, is_norm)                                                             \
    do {                                                                                           \
        if (st != EDGELLM_OK)                                                                      \
            break;                                                                                 \
        uint64_t ne_[2] = {(d0), (d1)};                                                            \
        states[t] = (fill_state){                                                                  \
            .seed = 7u + (uint32_t)t * 7919u, .scale = 0.08f, .ones = (is_norm)};                  \
        st = ellm_gguf_writer_add_tensor_fill(w, (name), ELLM_TYPE_F32, (nd), ne_, fill_random,    \
                                              &states[t]);                                         \
        t++;                                                                                       \
    } while (0)
    ADD("token_embd.weight", 2, n_embd, n_vocab, false);
    ADD("output_norm.weight", 1, n_embd, 1, true);
    ADD("output.weight", 2, n_embd, n_vocab, false);
    for (uint32_t il = 0; il < n_layer; il++) {
        char name[96];
#define LAYER(suffix, nd, d0, d1, is_norm)                                                         \
    snprintf(name, sizeof name, "blk.%u.%s.weight", il, suffix);                                   \
    ADD(name, nd, d0, d1, is_norm);
        LAYER("attn_norm", 1, n_embd, 1, true)
        LAYER("attn_q", 2, n_embd, n_embd, false)
        LAYER("attn_k", 2, n_embd, kv_dim, false)
        LAYER("attn_v", 2, n_embd, kv_dim, false)
        LAYER("attn_output", 2, n_embd, n_embd, false)
        LAYER("ffn_norm", 1, n_embd, 1, true)
        LAYER("ffn_gate", 2, n_embd, n_ff, false)
        LAYER("ffn_up", 2, n_embd, n_ff, false)
        LAYER("ffn_down", 2, n_ff, n_embd, false)
#undef LAYER
    }
#undef ADD
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_write(w, argv[2]);
    if (st != EDGELLM_OK)
        fprintf(stderr, "%s\n", edgellm_last_error());
    free(states);
    ellm_gguf_writer_free(w);
    ellm_gguf_close(in);
    return st == EDGELLM_OK ? 0 : 1;
}
