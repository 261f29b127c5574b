/* `edgellm imatrix`: per matrix input column, the mean square of its activations over
 * calibration text, for importance-weighted quantization (`edgellm quantize --imatrix`). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_calib.h"
#include "cli_util.h"
#include "commands.h"
#include "edgellm.h"
#include "optimise/imatrix.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: edgellm imatrix -m MODEL (-f CALIB.txt | --ids FILE) -o IMATRIX.gguf [--ctx N] "
            "[--chunks N] [-t THREADS] [--rank K]\n"
            "  runs the calibration tokens through the model in chunks of --ctx tokens (default "
            "512, at most the model's context), each from an empty cache, and stores every "
            "matrix input's per-column sum of squares and row count (GGUF, docs/optimise.md).\n"
            "  --rank K also stores the K leading directions of each input's covariance (0 to 64; "
            "0 for files as before), which --imatrix rounding feeds its errors back along. "
            "Default: the whole covariance of inputs up to 64 columns wide, 64 directions up to "
            "256 columns, 8 of wider inputs (theirs come from a sketch that costs more with "
            "more).\n"
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
        fprintf(stderr, "\redgellm imatrix: chunk %d/%d, %.1f s, ETA %.1f s   ", done, total,
                seconds, eta);
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
    const char *model_path = NULL, *out_path = NULL;
    cli_calib calib = cli_calib_defaults(512);
    long rank = ELLM_IMATRIX_RANK_AUTO;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
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
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            model_path = v;
        } else if (!strcmp(a, "-o")) {
            out_path = v;
        } else if (!strcmp(a, "--rank")) {
            if (!cli_parse_int(cmd, a, v, 0, ELLM_IMATRIX_MAX_RANK, &rank))
                return EXIT_USAGE;
        } else {
            cli_error(cmd, "unknown option '%s' (see 'edgellm imatrix --help')", a);
            return EXIT_USAGE;
        }
    }
    if (!model_path || !out_path || (!calib.text_path) == (!calib.ids_path)) {
        cli_error(cmd, "need -m MODEL, -o IMATRIX.gguf and exactly one of -f CALIB.txt or --ids "
                       "FILE");
        return EXIT_USAGE;
    }
    const cli_input inputs[] = {
        {"the model", model_path}, {"-f", calib.text_path}, {"--ids", calib.ids_path}};
    if (cli_output_refused(cmd, out_path, inputs, sizeof inputs / sizeof *inputs))
        return EXIT_USAGE;
    int32_t n = 0;
    int status = 1;
    edgellm_token *ids = cli_calib_tokens(cmd, model_path, &calib, &n, &status);
    if (!ids)
        return status;
    progress pr = {isatty(STDERR_FILENO) != 0, -1};
    ellm_imatrix_params p = {
        (int32_t)calib.ctx,     (int32_t)calib.chunks,
        (int32_t)calib.threads, calib.text_path ? calib.text_path : calib.ids_path,
        show_progress,          &pr,
        (int32_t)rank};
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
            ellm_imatrix_entry_count(im), calib.ctx);
    ellm_imatrix_free(im);
    return 0;
}
