/* Test helper: writes a copy of a GGUF file with metadata and tensors changed, to make files with
 * unsupported features or missing pieces.
 *
 *   gguf_edit IN OUT [--set-str KEY VALUE] [--del KEY] [--drop TENSOR] [--add-f32 TENSOR N]...
 *                    [--set-f32 KEY VALUE] [--poke-f32 TENSOR INDEX VALUE] [--scramble TENSOR SEED]
 *
 * --set-f32 takes any strtof spelling (nan, inf, 1e-45); --poke-f32 overwrites one value of an
 * F32 tensor; --scramble overwrites a tensor's data with seeded random bytes (any type).
 */
#include <stdbool.h>
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
    if (argc < 3 || ellm_gguf_open(argv[1], &in) != EDGELLM_OK) {
        fprintf(stderr,
                "usage: gguf_edit IN OUT [--set-str K V] [--del K] [--drop T] "
                "[--add-f32 T N]... (%s)\n",
                argc < 3 ? "" : edgellm_last_error());
        return 2;
    }
    gguf_writer *w = ellm_gguf_writer_create();
    edgellm_status st = EDGELLM_OK;
    for (uint64_t i = 0; st == EDGELLM_OK && i < ellm_gguf_kv_count(in); i++) {
        const gguf_kv *kv = ellm_gguf_kv_at(in, i);
        char *key = ellm_gguf_str_dup(kv->key);
        if (!listed(argc, argv, "--del", key))
            st = ellm_gguf_writer_set_value(w, key, &kv->value);
        free(key);
    }
    /* Changed tensors get their own copy of the data, kept until the file is written. */
    uint64_t n_tensors = ellm_gguf_tensor_count(in);
    void **copies = calloc(n_tensors + 1, sizeof *copies);
    for (uint64_t i = 0; st == EDGELLM_OK && i < n_tensors; i++) {
        const gguf_tensor_info *t = ellm_gguf_tensor_at(in, i);
        char *name = ellm_gguf_str_dup(t->name);
        const void *data = t->data;
        for (int a = 3; a < argc && st == EDGELLM_OK; a++) {
            bool poke = !strcmp(argv[a], "--poke-f32") && a + 3 < argc;
            bool scramble = !strcmp(argv[a], "--scramble") && a + 2 < argc;
            if ((!poke && !scramble) || strcmp(argv[a + 1], name) != 0)
                continue;
            if (!copies[i] && (copies[i] = malloc(t->n_bytes ? t->n_bytes : 1)))
                memcpy(copies[i], t->data, t->n_bytes);
            if (!copies[i]) {
                st = EDGELLM_ERR_OUT_OF_MEMORY;
                break;
            }
            data = copies[i];
            if (poke) {
                uint64_t at = strtoull(argv[a + 2], NULL, 10);
                if (t->type != ELLM_TYPE_F32 || (at + 1) * sizeof(float) > t->n_bytes) {
                    fprintf(stderr, "gguf_edit: %s is not F32 or has no value %s\n", name,
                            argv[a + 2]);
                    st = EDGELLM_ERR_INVALID_ARGUMENT;
                    break;
                }
                float v = strtof(argv[a + 3], NULL);
                memcpy((char *)copies[i] + at * sizeof v, &v, sizeof v);
            } else {
                uint64_t x = strtoull(argv[a + 2], NULL, 10) * 2654435761u + 1;
                for (uint64_t b = 0; b < t->n_bytes; b++) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    ((unsigned char *)copies[i])[b] = (unsigned char)(x >> 24);
                }
            }
        }
        if (st == EDGELLM_OK && !listed(argc, argv, "--drop", name))
            st = ellm_gguf_writer_add_tensor(w, name, (ellm_type)t->type, t->n_dims, t->ne, data);
        free(name);
    }
    for (int i = 3; st == EDGELLM_OK && i < argc; i++) {
        if (!strcmp(argv[i], "--set-str") && i + 2 < argc) {
            st = ellm_gguf_writer_set_str(w, argv[i + 1], argv[i + 2]);
            i += 2;
        } else if (!strcmp(argv[i], "--add-f32") && i + 2 < argc) {
            uint64_t ne[1] = {strtoull(argv[i + 2], NULL, 10)};
            st = ellm_gguf_writer_add_tensor_fill(w, argv[i + 1], ELLM_TYPE_F32, 1, ne, fill_ones,
                                                  NULL);
            i += 2;
        } else if (!strcmp(argv[i], "--set-f32") && i + 2 < argc) {
            st = ellm_gguf_writer_set_f32(w, argv[i + 1], strtof(argv[i + 2], NULL));
            i += 2;
        } else if (!strcmp(argv[i], "--poke-f32") && i + 3 < argc) {
            i += 3;
        } else if (!strcmp(argv[i], "--scramble") && i + 2 < argc) {
            i += 2;
        } else if ((!strcmp(argv[i], "--del") || !strcmp(argv[i], "--drop")) && i + 1 < argc) {
            i += 1;
        } else {
            fprintf(stderr, "gguf_edit: bad argument '%s'\n", argv[i]);
            st = EDGELLM_ERR_INVALID_ARGUMENT;
        }
    }
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_write(w, argv[2]);
    if (st != EDGELLM_OK)
        fprintf(stderr, "gguf_edit: %s\n", edgellm_last_error());
    ellm_gguf_writer_free(w);
    for (uint64_t i = 0; i < n_tensors; i++)
        free(copies[i]);
    free(copies);
    ellm_gguf_close(in);
    return st == EDGELLM_OK ? 0 : 1;
}
