/* Test helper for the store: writes a copy of a GGUF model with changed metadata, optionally
 * padded with an extra tensor so the file is large (installs then take long enough to be killed
 * midway).
 *
 *   store_gguf_variant IN OUT KEY VALUE [PAD_MIB]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"

static edgellm_status fill_padding(void *user, void *dst, uint64_t n_bytes)
{
    uint32_t seed = *(const uint32_t *)user;
    float *f = dst;
    for (uint64_t i = 0; i < n_bytes / sizeof(float); i++) {
        seed = seed * 1664525u + 1013904223u;
        f[i] = (float)(seed >> 8) / 16777216.0f - 0.5f;
    }
    return EDGELLM_OK;
}

int main(int argc, char **argv)
{
    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: %s IN OUT KEY VALUE [PAD_MIB]\n", argv[0]);
        return 2;
    }
    gguf_file *in = NULL;
    if (ellm_gguf_open(argv[1], &in) != EDGELLM_OK) {
        fprintf(stderr, "%s\n", edgellm_last_error());
        return 1;
    }
    gguf_writer *w = ellm_gguf_writer_create();
    edgellm_status st = w ? EDGELLM_OK : EDGELLM_ERR_OUT_OF_MEMORY;
    for (uint64_t i = 0; st == EDGELLM_OK && i < ellm_gguf_kv_count(in); i++) {
        const gguf_kv *kv = ellm_gguf_kv_at(in, i);
        char *key = ellm_gguf_str_dup(kv->key);
        st = key ? ellm_gguf_writer_set_value(w, key, &kv->value) : EDGELLM_ERR_OUT_OF_MEMORY;
        free(key);
    }
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_set_str(w, argv[3], argv[4]);
    for (uint64_t i = 0; st == EDGELLM_OK && i < ellm_gguf_tensor_count(in); i++) {
        const gguf_tensor_info *t = ellm_gguf_tensor_at(in, i);
        char *name = ellm_gguf_str_dup(t->name);
        st = name ? ellm_gguf_writer_add_tensor(w, name, (ellm_type)t->type, t->n_dims, t->ne,
                                                t->data)
                  : EDGELLM_ERR_OUT_OF_MEMORY;
        free(name);
    }
    uint32_t seed = 12345;
    for (size_t i = 0; i < strlen(argv[4]); i++)
        seed = seed * 31u + (unsigned char)argv[4][i];
    if (st == EDGELLM_OK && argc == 6) {
        uint64_t mib = strtoull(argv[5], NULL, 10);
        uint64_t ne[2] = {1024 * 256, mib};
        st = ellm_gguf_writer_add_tensor_fill(w, "store_test.padding", ELLM_TYPE_F32, 2, ne,
                                              fill_padding, &seed);
    }
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_write(w, argv[2]);
    if (st != EDGELLM_OK)
        fprintf(stderr, "%s\n", edgellm_last_error());
    ellm_gguf_writer_free(w);
    ellm_gguf_close(in);
    return st == EDGELLM_OK ? 0 : 1;
}
