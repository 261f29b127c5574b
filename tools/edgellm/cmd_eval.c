/* `edgellm eval`: perplexity over a text or token ids, and quantization quality against the saved
 * logits of a reference model (KL divergence, top-1 agreement, perplexity ratio). Logit files are
 * raw little-endian float32, one row of n_vocab per position. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_calib.h"
#include "cli_util.h"
#include "commands.h"
#include "edgellm.h"
#include "core/file_replace.h"
#include "core/free_space.h"
#include "core/finite.h"
#include "store/store.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: edgellm eval -m MODEL (-f TEXT | --ids FILE) [--ctx N] [-t THREADS] "
                 "[--save-logits OUT] [--kl-base BASE] [--kv-type f16|f32|q8_0] [--kernels SET]\n"
                 "  tokens are evaluated in windows of --ctx (default: the model's context), each "
                 "from an empty cache\n");
}

/* log-softmax normaliser of a row: max + log(sum exp(x - max)), in double. */
static double log_norm(const float *row, int n)
{
    float max = row[0];
    for (int i = 1; i < n; i++)
        max = row[i] > max ? row[i] : max;
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += exp((double)row[i] - max);
    return max + log(sum);
}

static int argmax(const float *v, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best])
            best = i;
    return best;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int cmd_eval(int argc, char **argv)
{
    const char *cmd = "eval";
    const char *model_arg = NULL, *save = NULL, *base = NULL;
    cli_calib calib = cli_calib_defaults(0); /* --ctx 0: the model's context */
    edgellm_kv_type kv = EDGELLM_KV_F16;
    const char *kernels = NULL; /* --kernels, else $EDGELLM_KERNELS, else the CPU's default */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = "";
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        cli_option_result r = cli_calib_option(cmd, argc, argv, &i, &calib);
        if (r == CLI_OPTION_BAD)
            return EXIT_USAGE;
        if (r == CLI_OPTION_TAKEN)
            continue;
        if (!(v = cli_option_value(cmd, argc, argv, &i)))
            return EXIT_USAGE;
        if (!strcmp(a, "-m") || !strcmp(a, "--model"))
            model_arg = v;
        else if (!strcmp(a, "--save-logits"))
            save = v;
        else if (!strcmp(a, "--kl-base"))
            base = v;
        else if (!strcmp(a, "--kernels"))
            kernels = v;
        else if (!strcmp(a, "--kv-type")) {
            if (!cli_parse_kv_type(cmd, v, &kv))
                return EXIT_USAGE;
        } else {
            cli_error(cmd, "unknown option '%s' (see 'edgellm eval --help')", a);
            return EXIT_USAGE;
        }
    }
    if (calib.chunks_given) {
        cli_error(cmd, "--chunks is not an eval option: eval scores every token of the text in "
                       "windows of --ctx");
        return EXIT_USAGE;
    }
    if (!model_arg || (!calib.text_path) == (!calib.ids_path)) {
        cli_error(cmd, "need -m MODEL and exactly one of -f TEXT or --ids FILE");
        return EXIT_USAGE;
    }
    /* Logits saved under one set and compared under another are how kernel sets are checked
     * against scalar: ignoring the choice compared a set with itself. */
    if (!cli_use_kernels(cmd, kernels))
        return EXIT_USAGE;
    char path[4096];
    edgellm_model *m = NULL;
    edgellm_model_params mp = cli_model_params();
    if (ellm_store_resolve_model(model_arg, path, sizeof path) != EDGELLM_OK) {
        cli_error(cmd, "%s", edgellm_last_error());
        return 1;
    }
    const cli_input inputs[] = {{"the model", path},
                                {"-f", calib.text_path},
                                {"--ids", calib.ids_path},
                                {"--kl-base", base}};
    if (cli_output_refused(cmd, save, inputs, sizeof inputs / sizeof *inputs))
        return EXIT_USAGE;
    if (edgellm_model_load(path, &mp, &m) != EDGELLM_OK) {
        cli_error(cmd, "%s", edgellm_last_error());
        return 1;
    }
    int rc = 0;
    int32_t n = 0;
    edgellm_token *ids = cli_load_tokens(cmd, m, calib.text_path, calib.ids_path, &n);
    int32_t n_vocab = edgellm_n_vocab(m);
    if (ids && n < 2) {
        cli_error(cmd, "need at least 2 tokens to evaluate, got %d", n);
        free(ids);
        ids = NULL;
    }
    if (!ids) {
        edgellm_model_free(m);
        return 1;
    }
    edgellm_model_info info;
    edgellm_model_get_info(m, &info);
    int32_t window = calib.ctx > 0 ? (int32_t)calib.ctx : info.n_ctx_train;
    if (window > n)
        window = n;
    edgellm_context_params cp = edgellm_context_default_params();
    cp.n_ctx = window;
    cp.n_batch = window;
    cp.n_threads = (int32_t)calib.threads;
    cp.kv_type = kv;
    edgellm_context *ctx = NULL;
    float *base_logits = NULL;
    FILE *save_f = NULL;
    if (edgellm_context_create(m, &cp, &ctx) != EDGELLM_OK) {
        cli_error(cmd, "%s", edgellm_last_error());
        rc = 1;
    }
    if (rc == 0 && base) {
        size_t len = 0;
        base_logits = (float *)cli_read_file(base, &len);
        if (!base_logits) {
            cli_error(cmd, "cannot read the base logits: %s", edgellm_last_error());
            rc = 1;
        } else if (len != (size_t)n * (size_t)n_vocab * sizeof(float)) {
            cli_error(cmd,
                      "'%s' holds %zu bytes but %d positions x %d vocabulary x 4 = %zu are "
                      "needed; was it saved for these tokens and this vocabulary?",
                      base, len, n, n_vocab, (size_t)n * (size_t)n_vocab * sizeof(float));
            rc = 1;
        } else {
            /* A NaN row's KL is NaN, which the clamp to >= 0 below turned into a perfect 0. */
            int64_t bad = ellm_first_nonfinite(base_logits, (int64_t)n * n_vocab);
            if (bad >= 0) {
                cli_error(cmd,
                          "'%s' holds %s at position %lld, token %lld: these are not the logits "
                          "of a working model; save them again with --save-logits",
                          base, isnan(base_logits[bad]) ? "NaN" : "an infinite value",
                          (long long)(bad / n_vocab), (long long)(bad % n_vocab));
                rc = 1;
            }
        }
    }
    /* Logits go to a temporary of this run renamed into place at the end: a failed, killed or
     * concurrent run never leaves a truncated logits file behind. */
    ellm_replaced_file saved = {0};
    char save_err[1024];
    if (rc == 0 && save) {
        uint64_t need = (uint64_t)n * (uint64_t)n_vocab * sizeof(float), free_bytes = 0;
        if (!ellm_file_replace_open(&saved, save, save_err, sizeof save_err)) {
            cli_error(cmd, "%s; give --save-logits a path in a writable directory", save_err);
            rc = 1;
        } else if (!ellm_fits_free_space(fileno(saved.out), need, &free_bytes)) {
            /* Known before the first window: failing on a full disk at the end wasted the run
             * and filled the disk for every other program meanwhile. */
            cli_error(cmd,
                      "the logits of %d positions x %d vocabulary x 4 bytes are %.2f MiB but the "
                      "file system of '%s' has %.2f MiB free; nothing was evaluated: free space, "
                      "save them elsewhere or evaluate fewer tokens",
                      n, n_vocab, (double)need / 1048576.0, save, (double)free_bytes / 1048576.0);
            rc = 1;
        } else {
            save_f = saved.out;
        }
    }
    double nll = 0, base_nll = 0, kl_sum = 0;
    int64_t predicted = 0, agree = 0, rows = 0;
    double *kls = base_logits ? malloc((size_t)n * sizeof *kls) : NULL;
    for (int32_t start = 0; rc == 0 && start < n; start += window) {
        int32_t len = n - start < window ? n - start : window;
        edgellm_context_truncate(ctx, 0);
        if (edgellm_eval(ctx, ids + start, len, 1) != EDGELLM_OK) {
            cli_error(cmd, "%s", edgellm_last_error());
            rc = 1;
            break;
        }
        for (int32_t i = 0; i < len; i++) {
            const float *row = edgellm_get_logits(ctx, i);
            if (save_f && fwrite(row, sizeof(float), (size_t)n_vocab, save_f) != (size_t)n_vocab) {
                cli_error(cmd, "writing '%s' failed: %s", save, strerror(errno));
                rc = 1;
                break;
            }
            double lz = log_norm(row, n_vocab);
            if (i + 1 < len) {
                nll += lz - row[ids[start + i + 1]];
                predicted++;
            }
            if (base_logits) {
                const float *b = base_logits + (size_t)(start + i) * n_vocab;
                double lb = log_norm(b, n_vocab), kl = 0;
                for (int32_t v = 0; v < n_vocab; v++) {
                    double lp = (double)b[v] - lb, lq = (double)row[v] - lz;
                    kl += exp(lp) * (lp - lq);
                }
                kls[rows] = kl > 0 ? kl : 0;
                kl_sum += kls[rows];
                agree += argmax(b, n_vocab) == argmax(row, n_vocab);
                if (i + 1 < len)
                    base_nll += lb - b[ids[start + i + 1]];
            }
            rows++;
        }
    }
    if (save_f && rc == 0 && !ellm_file_replace_commit(&saved, save_err, sizeof save_err)) {
        cli_error(cmd, "%s", save_err);
        rc = 1;
    }
    ellm_file_replace_abandon(&saved); /* after a failure: the temporary goes */
    if (rc == 0) {
        double ppl = exp(nll / (double)predicted);
        printf("tokens:            %d (windows of %d)\n", n, window);
        printf("perplexity:        %.4f over %lld predictions\n", ppl, (long long)predicted);
        /* As practitioners compare sizes: tensor bytes over parameters (metadata excluded). */
        printf("size:              %.2f MiB, %.4f bits per weight (%llu parameters)\n",
               (double)info.file_bytes / 1048576.0,
               info.n_params ? 8.0 * (double)info.weights_bytes / (double)info.n_params : 0.0,
               (unsigned long long)info.n_params);
        if (base_logits) {
            qsort(kls, (size_t)rows, sizeof *kls, cmp_double);
            double p99 = kls[(size_t)((double)(rows - 1) * 0.99)];
            double base_ppl = exp(base_nll / (double)predicted);
            printf("KL divergence:     mean %.6g, p99 %.6g (base || model, nats)\n",
                   kl_sum / (double)rows, p99);
            printf("top-1 agreement:   %.2f%% (%lld of %lld positions)\n",
                   100.0 * (double)agree / (double)rows, (long long)agree, (long long)rows);
            printf("perplexity ratio:  %.5f (base perplexity %.4f)\n", ppl / base_ppl, base_ppl);
        }
        if (save)
            printf("saved logits:      %s (%lld x %d float32)\n", save, (long long)rows, n_vocab);
    }
    free(kls);
    free(base_logits);
    free(ids);
    edgellm_context_free(ctx);
    edgellm_model_free(m);
    return rc;
}
