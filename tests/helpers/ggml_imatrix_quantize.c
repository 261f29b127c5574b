/* Test helper: the other runtime's own importance-weighted quantization of a model, for comparing
 * with `edgellm quantize --imatrix` at the same type.
 *
 *   ggml_imatrix_quantize LIB F32.gguf OURS.gguf IMATRIX.gguf OUT.gguf
 *
 * LIB is the ggml base library of the npm package @node-llama-cpp/linux-x64. OUT is OURS (an
 * `edgellm quantize --imatrix` file) with every block-quantized matrix of a type edgellm searches
 * with weights that the imatrix covers (the 32-value types and Q2_K..Q6_K) re-quantized from the
 * F32 model by that library's ggml_quantize_chunk, given the same
 * per-column mean squares; everything else (types, head, metadata) is OURS', so the two files
 * differ only in how those matrices were rounded. The tensor types are GGUF type numbers, which
 * are the library's own. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "optimise/imatrix.h"
#include "quant/quant.h"

typedef size_t (*quantize_chunk_fn)(int type, const float *src, void *dst, int64_t start,
                                    int64_t nrows, int64_t n_per_row, const float *imatrix);

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr,
                "usage: ggml_imatrix_quantize LIB F32.gguf OURS.gguf IMATRIX.gguf OUT.gguf\n");
        return 2;
    }
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    quantize_chunk_fn quantize_chunk = lib ? (quantize_chunk_fn)dlsym(lib, "ggml_quantize_chunk")
                                           : NULL;
    if (!quantize_chunk) {
        fprintf(stderr, "ggml_imatrix_quantize: cannot load ggml_quantize_chunk from %s: %s\n",
                argv[1], dlerror());
        return 1;
    }
    gguf_file *src = NULL, *ours = NULL;
    ellm_imatrix *im = NULL;
    if (ellm_gguf_open(argv[2], &src) != EDGELLM_OK ||
        ellm_gguf_open(argv[3], &ours) != EDGELLM_OK ||
        ellm_imatrix_load(argv[4], src, &im) != EDGELLM_OK) {
        fprintf(stderr, "ggml_imatrix_quantize: %s\n", edgellm_last_error());
        return 1;
    }
    gguf_writer *w = ellm_gguf_writer_create();
    edgellm_status st = EDGELLM_OK;
    for (uint64_t i = 0; st == EDGELLM_OK && i < ellm_gguf_kv_count(ours); i++) {
        const gguf_kv *kv = ellm_gguf_kv_at(ours, i);
        char *key = ellm_gguf_str_dup(kv->key);
        st = ellm_gguf_writer_set_value(w, key, &kv->value);
        free(key);
    }
    uint64_t n = ellm_gguf_tensor_count(ours);
    void **bufs = calloc(n, sizeof *bufs);
    int replaced = 0;
    for (uint64_t i = 0; st == EDGELLM_OK && i < n; i++) {
        const gguf_tensor_info *t = ellm_gguf_tensor_at(ours, i);
        char *name = ellm_gguf_str_dup(t->name);
        const void *data = t->data;
        const gguf_tensor_info *s = ellm_gguf_find_tensor(src, name);
        const float *imp = ellm_imatrix_find(im, name, (int64_t)t->ne[0]);
        if (imp && s && s->type == ELLM_TYPE_F32 &&
            ellm_type_has_weighted_search((ellm_type)t->type)) {
            int64_t rows = (int64_t)(t->n_elements / t->ne[0]);
            bufs[i] = malloc(t->n_bytes);
            size_t got = quantize_chunk((int)t->type, s->data, bufs[i], 0, rows, (int64_t)t->ne[0],
                                        imp);
            if (got != t->n_bytes) {
                fprintf(stderr, "ggml_imatrix_quantize: %s: %zu bytes, expected %llu\n", name, got,
                        (unsigned long long)t->n_bytes);
                return 1;
            }
            data = bufs[i];
            replaced++;
        }
        st = ellm_gguf_writer_add_tensor(w, name, (ellm_type)t->type, t->n_dims, t->ne, data);
        free(name);
    }
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_write(w, argv[5]);
    if (st != EDGELLM_OK) {
        fprintf(stderr, "ggml_imatrix_quantize: %s\n", edgellm_last_error());
        return 1;
    }
    printf("%d matrices quantized by the other runtime\n", replaced);
    for (uint64_t i = 0; i < n; i++)
        free(bufs[i]);
    free(bufs);
    ellm_gguf_writer_free(w);
    ellm_imatrix_free(im);
    ellm_gguf_close(ours);
    ellm_gguf_close(src);
    return replaced > 0 ? 0 : 1;
}
