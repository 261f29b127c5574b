/* Test helper: plants outlier channels in an F32 llama-architecture model without changing what it
 * computes, the activation structure that makes real LLMs hard to quantize.
 *
 *   plant_outliers IN.gguf OUT.gguf FACTOR CHANNEL...
 *
 * In every layer, the attention and FFN RMSNorm weights of each listed channel are multiplied by
 * FACTOR and the same input column of attn_q/k/v and ffn_gate/up divided by it: the normed
 * activations of those channels become FACTOR times larger and the weights that multiply them
 * FACTOR times smaller, so the product (and the model's function) stays the same up to float
 * rounding. Plain rounding then loses those small columns inside blocks whose scale the other
 * columns set, although their error is multiplied by the largest activations. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"

static int name_ends(gguf_str s, const char *suffix)
{
    size_t n = strlen(suffix);
    return s.len >= n && memcmp(s.data + s.len - n, suffix, n) == 0;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: plant_outliers IN.gguf OUT.gguf FACTOR CHANNEL...\n");
        return 2;
    }
    float factor = strtof(argv[3], NULL);
    gguf_file *in = NULL;
    if (ellm_gguf_open(argv[1], &in) != EDGELLM_OK) {
        fprintf(stderr, "plant_outliers: %s\n", edgellm_last_error());
        return 1;
    }
    gguf_writer *w = ellm_gguf_writer_create();
    edgellm_status st = w ? EDGELLM_OK : EDGELLM_ERR_OUT_OF_MEMORY;
    for (uint64_t i = 0; st == EDGELLM_OK && i < ellm_gguf_kv_count(in); i++) {
        const gguf_kv *kv = ellm_gguf_kv_at(in, i);
        char *key = ellm_gguf_str_dup(kv->key);
        st = ellm_gguf_writer_set_value(w, key, &kv->value);
        free(key);
    }
    uint64_t n = ellm_gguf_tensor_count(in);
    float **copies = calloc(n, sizeof *copies);
    for (uint64_t i = 0; st == EDGELLM_OK && i < n; i++) {
        const gguf_tensor_info *t = ellm_gguf_tensor_at(in, i);
        int norm = name_ends(t->name, "attn_norm.weight") || name_ends(t->name, "ffn_norm.weight");
        int matrix = name_ends(t->name, "attn_q.weight") || name_ends(t->name, "attn_k.weight") ||
                     name_ends(t->name, "attn_v.weight") || name_ends(t->name, "ffn_gate.weight") ||
                     name_ends(t->name, "ffn_up.weight");
        if ((norm || matrix) && t->type != ELLM_TYPE_F32) {
            fprintf(stderr, "plant_outliers: the model must be F32\n");
            return 1;
        }
        const void *data = t->data;
        if (norm || matrix) {
            copies[i] = malloc(t->n_bytes);
            memcpy(copies[i], t->data, t->n_bytes);
            uint64_t rows = t->n_elements / t->ne[0];
            for (int c = 4; c < argc; c++) {
                uint64_t ch = strtoull(argv[c], NULL, 10);
                if (ch >= t->ne[0]) {
                    fprintf(stderr, "plant_outliers: channel %llu is beyond %llu\n",
                            (unsigned long long)ch, (unsigned long long)t->ne[0]);
                    return 1;
                }
                for (uint64_t r = 0; r < rows; r++)
                    copies[i][r * t->ne[0] + ch] *= norm ? factor : 1.0f / factor;
            }
            data = copies[i];
        }
        char *name = ellm_gguf_str_dup(t->name);
        st = ellm_gguf_writer_add_tensor(w, name, (ellm_type)t->type, t->n_dims, t->ne, data);
        free(name);
    }
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_write(w, argv[2]);
    if (st != EDGELLM_OK)
        fprintf(stderr, "plant_outliers: %s\n", edgellm_last_error());
    for (uint64_t i = 0; i < n; i++)
        free(copies[i]);
    free(copies);
    ellm_gguf_writer_free(w);
    ellm_gguf_close(in);
    return st == EDGELLM_OK ? 0 : 1;
}
