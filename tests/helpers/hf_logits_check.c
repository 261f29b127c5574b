/* hf_logits_check MODEL.gguf DIR TOL [REL_TOL] [--ctx N]: runs DIR/tokens.txt through the model (all at
 * once, then one token at a time, with an F32 KV cache; then with the F16 cache) and compares
 * every position's logits with DIR/reference.bin (float64, written by hf_model.py's naive
 * reference). Prints the largest differences; exits 1 when any exceeds TOL (absolute), or
 * REL_TOL times the largest logit when given (quantized weights). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "model/model.h"

enum { MAX_TOKENS = 64 };

static double max_error(const float *got, const double *want, size_t n, double *scale)
{
    double worst = 0;
    *scale = 0;
    for (size_t i = 0; i < n; i++) {
        worst = fmax(worst, fabs((double)got[i] - want[i]));
        *scale = fmax(*scale, fabs(want[i]));
    }
    return worst;
}

/* Evaluates the tokens in steps of `step` tokens into logits (all positions). */
static int32_t n_ctx = 32; /* --ctx: LongRoPE models switch factors above their original context */

static int run(ellm_model *m, edgellm_kv_type kv, const edgellm_token *tokens, int n, int step,
               float *logits)
{
    int32_t n_vocab = ellm_model_hparams(m)->n_vocab;
    ellm_state_params sp = {.n_ctx = n_ctx, .n_batch = n, .kv_type = kv, .n_threads = 2};
    ellm_state *st = NULL;
    ellm_threadpool *pool = NULL;
    int ok = ellm_threadpool_create(2, &pool) == EDGELLM_OK &&
             ellm_state_create(m, &sp, &st) == EDGELLM_OK;
    for (int at = 0; ok && at < n; at += step) {
        int k = n - at < step ? n - at : step;
        ok = ellm_forward(m, st, pool, tokens + at, k, true, logits + (size_t)at * n_vocab) ==
             EDGELLM_OK;
    }
    if (!ok)
        fprintf(stderr, "hf_logits_check: %s\n", edgellm_last_error());
    ellm_state_free(st);
    ellm_threadpool_free(pool);
    return ok;
}

/* Two sequences in one batched pass (the server's continuous batching): the first gets the
 * first half of the tokens, then both continue together, the second starting from scratch with
 * all tokens; every logit row is compared with the reference. */
static int run_batched(ellm_model *m, const edgellm_token *tokens, int n, const double *want,
                       double *worst)
{
    int32_t n_vocab = ellm_model_hparams(m)->n_vocab;
    ellm_state_params sp = {
        .n_ctx = n_ctx, .n_batch = 2 * n, .kv_type = EDGELLM_KV_F32, .n_threads = 2};
    ellm_state *a = NULL, *b = NULL, *work = NULL;
    ellm_threadpool *pool = NULL;
    float *logits = malloc((size_t)2 * n * n_vocab * sizeof *logits);
    int half = n / 2;
    int ok = logits && ellm_threadpool_create(2, &pool) == EDGELLM_OK &&
             ellm_state_create(m, &sp, &a) == EDGELLM_OK &&
             ellm_state_create(m, &sp, &b) == EDGELLM_OK;
    sp.scratch_only = true;
    ok = ok && ellm_state_create(m, &sp, &work) == EDGELLM_OK;
    ok = ok && ellm_forward(m, a, pool, tokens, half, true, logits) == EDGELLM_OK;
    ellm_forward_seq seqs[2] = {{a, tokens + half, n - half, true, false},
                                {b, tokens, n, true, false}};
    ok = ok &&
         ellm_forward_batch(m, work, pool, seqs, 2, logits + (size_t)half * n_vocab) == EDGELLM_OK;
    *worst = 0;
    for (int r = 0; ok && r < 2 * n; r++) {
        int pos = r < n ? r : r - n; /* rows: a's positions 0..n-1, then b's 0..n-1 */
        for (int32_t v = 0; v < n_vocab; v++)
            *worst = fmax(*worst, fabs((double)logits[(size_t)r * n_vocab + v] -
                                       want[(size_t)pos * n_vocab + v]));
    }
    if (!ok)
        fprintf(stderr, "hf_logits_check: %s\n", edgellm_last_error());
    ellm_state_free(a), ellm_state_free(b), ellm_state_free(work);
    ellm_threadpool_free(pool);
    free(logits);
    return ok;
}

int main(int argc, char **argv)
{
    if (argc >= 6 && !strcmp(argv[argc - 2], "--ctx")) {
        n_ctx = atoi(argv[argc - 1]);
        argc -= 2;
    }
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: hf_logits_check MODEL.gguf DIR TOL [REL_TOL]\n");
        return 2;
    }
    double tol = atof(argv[3]), rel = argc == 5 ? atof(argv[4]) : 0;
    char path[4096];
    snprintf(path, sizeof path, "%s/tokens.txt", argv[2]);
    FILE *f = fopen(path, "r");
    edgellm_token tokens[MAX_TOKENS];
    int n = 0;
    while (f && n < MAX_TOKENS && fscanf(f, "%d", &tokens[n]) == 1)
        n++;
    if (f)
        fclose(f);
    gguf_file *file = NULL;
    ellm_model *m = NULL;
    if (n == 0 || ellm_gguf_open(argv[1], &file) != EDGELLM_OK ||
        ellm_model_create(file, &m) != EDGELLM_OK) {
        fprintf(stderr, "hf_logits_check: %s\n", n ? edgellm_last_error() : "no tokens");
        ellm_gguf_close(file);
        return 1;
    }
    size_t n_vocab = (size_t)ellm_model_hparams(m)->n_vocab, total = (size_t)n * n_vocab;
    double *want = malloc(total * sizeof *want);
    float *got = malloc(total * sizeof *got);
    snprintf(path, sizeof path, "%s/reference.bin", argv[2]);
    f = fopen(path, "rb");
    int ok = f && want && got && fread(want, sizeof *want, total, f) == total;
    if (f)
        fclose(f);
    if (!ok)
        fprintf(stderr, "hf_logits_check: cannot read %zu reference logits from %s\n", total, path);
    struct {
        const char *what;
        edgellm_kv_type kv;
        int step;
        double slack; /* extra tolerance as a fraction of the largest logit */
    } runs[] = {
        {"batch, F32 cache", EDGELLM_KV_F32, n, 0},
        {"token by token, F32 cache", EDGELLM_KV_F32, 1, 0},
        /* The F16 cache rounds keys, values and the running output to half precision. */
        {"batch, F16 cache", EDGELLM_KV_F16, n, 0.01},
    };
    for (size_t r = 0; ok && r < sizeof runs / sizeof runs[0]; r++) {
        if (!run(m, runs[r].kv, tokens, n, runs[r].step, got)) {
            ok = 0;
            break;
        }
        double scale, err = max_error(got, want, total, &scale);
        double limit = (rel > 0 ? rel * scale : tol) + runs[r].slack * scale;
        printf("%s: %s: max |logit - reference| = %.3g (largest logit %.3g, limit %.3g)\n", argv[1],
               runs[r].what, err, scale, limit);
        if (!(err <= limit))
            ok = 0;
    }
    double worst = 0;
    if (ok && rel == 0) {
        ok = run_batched(m, tokens, n, want, &worst);
        printf("%s: two sequences batched, F32 cache: max |logit - reference| = %.3g (limit "
               "%.3g)\n",
               argv[1], worst, tol);
        ok = ok && worst <= tol;
    }
    free(want);
    free(got);
    ellm_model_free(m);
    ellm_gguf_close(file);
    return ok ? 0 : 1;
}
