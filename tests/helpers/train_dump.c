/* Writes a tiny random model, a batch, and the training graph's loss and gradients to a raw file
 * for tests/train_torch.py to recompute in PyTorch. Layout (little-endian): 9 int32 (vocab, embd,
 * layers, heads, kv_heads, ff, n_seq, n_ctx, tied), 2 float32 (rms eps, rope base), int32 tokens
 * and targets [n_seq * n_ctx] each, float32 parameters in the layout's tensor order, float64
 * loss, float32 gradients in the same order. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/train.h"

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: train_dump tied|separate OUT.bin\n");
        return 2;
    }
    int32_t hdr[9] = {37, 16, 2, 4, 2, 24, 2, 6, strcmp(argv[1], "tied") == 0};
    ellm_train_config cfg = {hdr[0], hdr[1], hdr[2], hdr[3], hdr[4],
                             hdr[5], 1e-5f,  500.0f, false,  hdr[8] != 0};
    ellm_train_params *p = NULL, *g = NULL;
    ellm_train_work *w = NULL;
    ellm_threadpool *pool = NULL;
    if (ellm_train_params_create(&cfg, &p) || ellm_train_params_create(&cfg, &g) ||
        ellm_train_work_create(&cfg, hdr[6], hdr[7], &w) || ellm_threadpool_create(2, &pool)) {
        fprintf(stderr, "train_dump: %s\n", edgellm_last_error());
        return 1;
    }
    ellm_train_params_init_random(p, 77);
    /* weights well away from initialization so that every path matters */
    uint64_t s = 5;
    for (size_t i = 0; i < p->n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        p->data[i] += (float)((double)(s >> 11) * 0x1.0p-53 - 0.5) * 0.4f;
    }
    int32_t n = hdr[6] * hdr[7], tok[12], tgt[12];
    for (int32_t i = 0; i < n; i++) {
        tok[i] = (i * 7 + 3) % hdr[0];
        tgt[i] = (i * 11 + 5) % hdr[0];
    }
    double loss = 0;
    if (ellm_train_forward_backward(p, g, w, pool, tok, tgt, 1.0f, &loss)) {
        fprintf(stderr, "train_dump: %s\n", edgellm_last_error());
        return 1;
    }
    FILE *f = fopen(argv[2], "wb");
    float hp[2] = {cfg.rms_norm_eps, cfg.rope_freq_base};
    if (!f || fwrite(hdr, sizeof hdr, 1, f) != 1 || fwrite(hp, sizeof hp, 1, f) != 1 ||
        fwrite(tok, 4, (size_t)n, f) != (size_t)n || fwrite(tgt, 4, (size_t)n, f) != (size_t)n ||
        fwrite(p->data, 4, p->n, f) != p->n || fwrite(&loss, 8, 1, f) != 1 ||
        fwrite(g->data, 4, g->n, f) != g->n || fclose(f) != 0) {
        fprintf(stderr, "train_dump: cannot write %s\n", argv[2]);
        return 1;
    }
    ellm_threadpool_free(pool);
    ellm_train_work_free(w);
    ellm_train_params_free(p);
    ellm_train_params_free(g);
    return 0;
}
