/* scalar_logits MODEL.gguf OUT.bin ID...: evaluates the token ids as one sequence from an empty
 * cache with the portable scalar kernels and writes every position's logits to OUT.bin (float32,
 * n_ids x n_vocab, little-endian): the reference other builds (WebAssembly) must match bit for
 * bit. */
#include <stdio.h>
#include <stdlib.h>

#include "edgellm.h"
#include "quant/quant.h"

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: scalar_logits MODEL.gguf OUT.bin ID...\n");
        return 2;
    }
    int n = argc - 3;
    edgellm_token *ids = calloc((size_t)n, sizeof *ids);
    for (int i = 0; ids && i < n; i++)
        ids[i] = atoi(argv[3 + i]);
    if (!ids || !ellm_quant_use_kernel_set("scalar")) {
        fprintf(stderr, "scalar_logits: setup failed\n");
        return 1;
    }
    edgellm_model *model = NULL;
    edgellm_context *ctx = NULL;
    edgellm_context_params cp = edgellm_context_default_params();
    cp.n_threads = 1;
    if (edgellm_model_load(argv[1], NULL, &model) != EDGELLM_OK ||
        edgellm_context_create(model, &cp, &ctx) != EDGELLM_OK ||
        edgellm_eval(ctx, ids, n, 1) != EDGELLM_OK) {
        fprintf(stderr, "scalar_logits: %s\n", edgellm_last_error());
        return 1;
    }
    FILE *f = fopen(argv[2], "wb");
    int32_t n_vocab = edgellm_n_vocab(model);
    for (int i = 0; f && i < n; i++)
        fwrite(edgellm_get_logits(ctx, i), sizeof(float), (size_t)n_vocab, f);
    if (!f || fclose(f) != 0) {
        fprintf(stderr, "scalar_logits: cannot write %s\n", argv[2]);
        return 1;
    }
    edgellm_context_free(ctx);
    edgellm_model_free(model);
    free(ids);
    return 0;
}
