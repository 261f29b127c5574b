/* `edgellm imatrix`: per matrix input column, the mean square of its activations over
 * calibration text, for importance-weighted quantization (`edgellm quantize --imatrix`). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_util.h"
#include "commands.h"
#include "edgellm.h"
#include "optimise/imatrix.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: edgellm imatrix -m MODEL (-f CALIB.txt | --ids FILE) -o IMATRIX.gguf [--ctx N] "
            "[--chunks N] [-t THREADS]\n"
            "  runs the calibration tokens through the model in chunks of --ctx tokens (default "
            "512, at most the model's context), each from an empty cache, and stores every "
            "matrix input's per-column sum of squares and row count (GGUF, docs/optimise.md).\n"
            "  Use text like what the model will see, and other text to judge the result.\n");
}

typedef struct progress {
    bool tty;
    int32_t last_line;
} progress;

static void show_progress(void *user, int32_t done, int32_t total, double seconds)
{
    progress *p = user;
    double eta = seconds / done * (total - done);
    /* A terminal gets one updating line; a log gets about ten lines. */
    if (p->tty) {
        fprintf(stderr, "\redgellm imatrix: chunk %d/%d, %.1f s, ETA %.1f s   ", done, total, seconds,
                eta);
        if (done == total)
            fputc('\n', stderr);
    } else if (done == total || done * 10 / total != p->last_line) {
        p->last_line = done * 10 / total;
        fprintf(stderr, "edgellm imatrix: chunk %d/%d, %.1f s, ETA %.1f s\n", done, total, seconds,
                eta);
    }
}

int cmd_imatrix(int argc, char **argv)
{
    const char *cmd = "imatrix";
    const char *model_path = NULL, *text_path = NULL, *ids_path = NULL, *out_path = NULL;
    long ctx = 512, chunks = 0, threads = 0;
    bool ctx_given = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!(v = cli_option_value(cmd, argc, argv, &i)))
            return EXIT_USAGE;
        if (!strcmp(a, "-m") || !strcmp(a, "--model"))
            model_path = v;
        else if (!strcmp(a, "-f"))
            text_path = v;
        else if (!strcmp(a, "--ids"))
            ids_path = v;
        else if (!strcmp(a, "-o"))
            out_path = v;
        else if (!strcmp(a, "--ctx")) {
            if (!cli_parse_int(cmd, a, v, 2, 1 << 20, &ctx))
                return EXIT_USAGE;
            ctx_given = true;
        } else if (!strcmp(a, "--chunks")) {
            if (!cli_parse_int(cmd, a, v, 1, 1 << 30, &chunks))
                return EXIT_USAGE;
        } else if (!strcmp(a, "-t")) {
            if (!cli_parse_int(cmd, a, v, 1, 256, &threads))
                return EXIT_USAGE;
        } else {
            cli_error(cmd, "unknown option '%s' (see 'edgellm imatrix --help')", a);
            return EXIT_USAGE;
        }
    }
    if (!model_path || !out_path || (!text_path) == (!ids_path)) {
        cli_error(cmd, "need -m MODEL, -o IMATRIX.gguf and exactly one of -f CALIB.txt or --ids "
                       "FILE");
        return EXIT_USAGE;
    }
    if (!strcmp(model_path, out_path)) {
        cli_error(cmd, "the output must be a different file from the model");
        return EXIT_USAGE;
    }
    edgellm_model *m = NULL;
    if (edgellm_model_load(model_path, NULL, &m) != EDGELLM_OK) {
        cli_error(cmd, "%s", edgellm_last_error());
        return 1;
    }
    edgellm_model_info info;
    edgellm_model_get_info(m, &info);
    if (info.n_ctx_train > 0 && ctx > info.n_ctx_train) {
        if (ctx_given) {
            cli_error(cmd, "--ctx %ld is longer than the model's context of %d", ctx,
                      info.n_ctx_train);
            edgellm_model_free(m);
            return EXIT_USAGE;
        }
        ctx = info.n_ctx_train;
    }
    int32_t n = 0;
    edgellm_token *ids = cli_load_tokens(cmd, m, text_path, ids_path, &n);
    edgellm_model_free(m);
    if (!ids)
        return 1;
    progress pr = {isatty(STDERR_FILENO) != 0, -1};
    ellm_imatrix_params p = {(int32_t)ctx, (int32_t)chunks, (int32_t)threads,
                             text_path ? text_path : ids_path, show_progress, &pr};
    ellm_imatrix *im = NULL;
    edgellm_status st = ellm_imatrix_collect(model_path, ids, n, &p, &im);
    free(ids);
    if (st == EDGELLM_OK)
        st = ellm_imatrix_write(im, out_path);
    if (st != EDGELLM_OK) {
        cli_error(cmd, "%s", edgellm_last_error());
        ellm_imatrix_free(im);
        return 1;
    }
    fprintf(stderr, "edgellm imatrix: wrote %s (%d matrices, %ld-token chunks)\n", out_path,
            ellm_imatrix_entry_count(im), ctx);
    ellm_imatrix_free(im);
    return 0;
}
