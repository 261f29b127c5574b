/* `edgellm prune -m IN -o OUT (--heads F | --ffn F | --layers N) [-f CALIB.txt | --imatrix F]`:
 * structured pruning by calibrated importance (src/optimise/prune.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli_calib.h"
#include "cli_util.h"
#include "commands.h"
#include "edgellm.h"
#include "gguf/gguf.h"
#include "optimise/imatrix.h"
#include "optimise/prune.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: edgellm prune -m IN.gguf -o OUT.gguf (--heads F | --ffn F | --layers N)\n"
            "                     [-f CALIB.txt | --ids FILE | --imatrix IMATRIX.gguf] [--ctx N]\n"
            "                     [--chunks N] [-t N] [--zeroed]\n"
            "  --heads F   remove the fraction F (0 <= F < 1) of attention head groups (a KV head\n"
            "              with its query heads), the least important across all layers\n"
            "  --ffn F     remove the fraction F of FFN channels\n"
            "  --layers N  drop the N layers that turn the residual stream least (needs -f)\n"
            "  -f          calibration text: heads and channels are ranked by activation-weighted\n"
            "              weight size, layers by block influence; without it (or --imatrix,\n"
            "              from 'edgellm imatrix') heads and channels by weight size alone\n"
            "  --zeroed    keep every shape and zero the removed parts instead (a reference)\n"
            "  Layers keep different head/FFN counts (per-layer GGUF arrays); llama/mistral.\n");
}

static bool parse_fraction(const char *cmd, const char *opt, const char *v, float *out)
{
    char *end = NULL;
    double f = strtod(v, &end);
    if (end == v || *end || !(f >= 0 && f < 1)) {
        cli_error(cmd, "%s '%s': give a fraction at least 0 and below 1 (0.25 removes a quarter)",
                  opt, v);
        return false;
    }
    *out = (float)f;
    return true;
}

static void report_layer(void *user, int32_t layer, bool dropped, int32_t heads, int32_t heads_kept,
                         int32_t ffn, int32_t ffn_kept)
{
    (void)user;
    if (dropped)
        fprintf(stderr, "edgellm prune: layer %d dropped\n", (int)layer);
    else if (heads_kept != heads || ffn_kept != ffn)
        fprintf(stderr, "edgellm prune: layer %d: heads %d -> %d, ffn %d -> %d\n", (int)layer,
                (int)heads, (int)heads_kept, (int)ffn, (int)ffn_kept);
}

static double mib_of(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (double)sb.st_size / 1048576.0 : 0;
}

int cmd_prune(int argc, char **argv)
{
    const char *cmd = "prune";
    const char *in_path = NULL, *out_path = NULL, *imatrix_path = NULL;
    cli_calib calib = cli_calib_defaults(512);
    ellm_prune_params pp = {0};
    int modes = 0;
    long layers = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--zeroed")) {
            pp.zeroed = true;
            continue;
        }
        cli_option_result r = cli_calib_option(cmd, argc, argv, &i, &calib);
        if (r == CLI_OPTION_BAD)
            return EXIT_USAGE;
        if (r == CLI_OPTION_TAKEN)
            continue;
        if (!(v = cli_option_value(cmd, argc, argv, &i)))
            return EXIT_USAGE;
        if (!strcmp(a, "-m") || !strcmp(a, "--model"))
            in_path = v;
        else if (!strcmp(a, "-o"))
            out_path = v;
        else if (!strcmp(a, "--imatrix"))
            imatrix_path = v;
        else if (!strcmp(a, "--heads")) {
            if (!parse_fraction(cmd, a, v, &pp.heads))
                return EXIT_USAGE;
            modes++;
        } else if (!strcmp(a, "--ffn")) {
            if (!parse_fraction(cmd, a, v, &pp.ffn))
                return EXIT_USAGE;
            modes++;
        } else if (!strcmp(a, "--layers")) {
            if (!cli_parse_int(cmd, a, v, 1, 1 << 20, &layers))
                return EXIT_USAGE;
            modes++;
        } else {
            cli_error(cmd, "unknown option '%s' (see 'edgellm prune --help')", a);
            return EXIT_USAGE;
        }
    }
    bool text = calib.text_path || calib.ids_path;
    if (!in_path || !out_path || modes != 1) {
        cli_error(cmd, "need -m IN.gguf, -o OUT.gguf and exactly one of --heads F, --ffn F or "
                       "--layers N (see 'edgellm prune --help')");
        return EXIT_USAGE;
    }
    const cli_input inputs[] = {
        {"the model", in_path}, {"-f", calib.text_path}, {"--ids", calib.ids_path}};
    if (cli_output_refused(cmd, out_path, inputs, sizeof inputs / sizeof *inputs))
        return EXIT_USAGE;
    if (calib.text_path && calib.ids_path) {
        cli_error(cmd, "give the calibration text as -f TEXT or --ids FILE, not both");
        return EXIT_USAGE;
    }
    if (text && imatrix_path) {
        cli_error(cmd, "give calibration text (-f) or an importance matrix (--imatrix), not both");
        return EXIT_USAGE;
    }
    if (layers > 0 && !text) {
        cli_error(cmd, "--layers ranks layers by block influence on calibration text: give -f "
                       "CALIB.txt");
        return EXIT_USAGE;
    }
    pp.layers = (int32_t)layers;
    pp.on_layer = report_layer;
    ellm_imatrix *im = NULL;
    float *influence = NULL;
    edgellm_token *ids = NULL;
    int rc = 0;
    if (imatrix_path && !(im = cli_load_imatrix(cmd, imatrix_path, in_path)))
        return 1;
    if (text) {
        int32_t n = 0;
        if (!(ids = cli_calib_tokens(cmd, in_path, &calib, &n, &rc)))
            return rc;
        rc = 0;
        const char *source = calib.text_path ? calib.text_path : calib.ids_path;
        edgellm_status st = EDGELLM_OK;
        if (layers > 0) {
            st = ellm_block_influence(in_path, ids, n, (int32_t)calib.ctx, (int32_t)calib.chunks,
                                      (int32_t)calib.threads, &influence);
        } else {
            ellm_imatrix_params ip = {(int32_t)calib.ctx,
                                      (int32_t)calib.chunks,
                                      (int32_t)calib.threads,
                                      source,
                                      NULL,
                                      NULL,
                                      0};
            st = ellm_imatrix_collect(in_path, ids, n, &ip, &im);
        }
        if (st != EDGELLM_OK) {
            cli_error(cmd, "%s %s: %s", calib.text_path ? "-f" : "--ids", source,
                      edgellm_last_error());
            rc = 1;
        }
    }
    pp.im = im;
    pp.block_influence = influence;
    if (rc == 0 && ellm_prune_model(in_path, out_path, &pp) != EDGELLM_OK) {
        cli_error(cmd, "%s", edgellm_last_error());
        rc = 1;
    }
    if (rc == 0)
        fprintf(stderr, "edgellm prune: wrote %s (%.2f MiB, from %.2f MiB)\n", out_path,
                mib_of(out_path), mib_of(in_path));
    ellm_imatrix_free(im);
    free(influence);
    free(ids);
    return rc;
}
