/* Test helper: writes a copy of a GGUF file with metadata and tensors changed, to make files with
 * unsupported features or missing pieces.
 *
 *   gguf_edit IN OUT [--set-str KEY VALUE] [--del KEY] [--drop TENSOR] [--add-f32 TENSOR N]...
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"

static edgellm_status fill_ones(void *user, void *dst, uint64_t n_bytes)
{
    (void)user;
    for (uint64_t i = 0; i < n_bytes / sizeof(float); i++)
        ((float *)dst)[i] = 1.0f;
    return EDGELLM_OK;
}

/* Whether option OPT names `name` among argv[3..]. */
static int listed(int argc, char **argv, const char *opt, const char *name)
{
    for (int i = 3; i + 1 < argc; i++)
        if (!strcmp(argv[i], opt) && !strcmp(argv[i + 1], name))
            return 1;
    return 0;
}

int main(int argc, char **argv)
{
    gguf_file *in = NULL;
    if (argc < 3 || gguf_open(argv[1], &in) != EDGELLM_OK) {
        fprintf(stderr, "usage: gguf_edit IN OUT [--set-str K V] [--del K] [--drop T] "
                        "[--add-f32 T N]... (%s)\n", argc < 3 ? "" : edgellm_last_error());
        return 2;
    }
    gguf_writer *w = gguf_writer_create();
    edgellm_status st = EDGELLM_OK;
    for (uint64_t i = 0; st == EDGELLM_OK && i < gguf_kv_count(in); i++) {
        const gguf_kv *kv = gguf_kv_at(in, i);
        char *key = gguf_str_dup(kv->key);
        if (!listed(argc, argv, "--del", key))
            st = gguf_writer_set_value(w, key, &kv->value);
        free(key);
    }
    for (uint64_t i = 0; st == EDGELLM_OK && i < gguf_tensor_count(in); i++) {
        const gguf_tensor_info *t = gguf_tensor_at(in, i);
        char *name = gguf_str_dup(t->name);
        if (!listed(argc, argv, "--drop", name))
            st = gguf_writer_add_tensor(w, name, (ellm_type)t->type, t->n_dims, t->ne, t->data);
        free(name);
    }
    for (int i = 3; st == EDGELLM_OK && i < argc; i++) {
        if (!strcmp(argv[i], "--set-str") && i + 2 < argc) {
            st = gguf_writer_set_str(w, argv[i + 1], argv[i + 2]);
            i += 2;
        } else if (!strcmp(argv[i], "--add-f32") && i + 2 < argc) {
            uint64_t ne[1] = {strtoull(argv[i + 2], NULL, 10)};
            st = gguf_writer_add_tensor_fill(w, argv[i + 1], ELLM_TYPE_F32, 1, ne, fill_ones, NULL);
            i += 2;
        } else if ((!strcmp(argv[i], "--del") || !strcmp(argv[i], "--drop")) && i + 1 < argc) {
            i += 1;
        } else {
            fprintf(stderr, "gguf_edit: bad argument '%s'\n", argv[i]);
            st = EDGELLM_ERR_INVALID_ARGUMENT;
        }
    }
    if (st == EDGELLM_OK)
        st = gguf_writer_write(w, argv[2]);
    if (st != EDGELLM_OK)
        fprintf(stderr, "gguf_edit: %s\n", edgellm_last_error());
    gguf_writer_free(w);
    gguf_close(in);
    return st == EDGELLM_OK ? 0 : 1;
}
