/* `edgellm quantize IN.gguf OUT.gguf TYPE [--imatrix F [--awq]] [--gptq --calib F]`: TYPE is a
 * single type or a named mix (Q3_K_M, ...); with an importance matrix the block scales minimise
 * the importance-weighted error; with --gptq the layer matrices get GPTQ's error feedback. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "cli_calib.h"
#include "cli_util.h"
#include "commands.h"
#include "convert/convert.h"
#include "edgellm.h"
#include "gguf/gguf.h"
#include "optimise/awq.h"
#include "optimise/gptq.h"
#include "optimise/imatrix.h"
#include "quant/quant.h"

static void report_fallback(void *user, const char *tensor, ellm_type wanted, ellm_type used)
{
    (void)user;
    fprintf(stderr, "edgellm quantize: %s: rows do not split into %s blocks; stored as %s\n",
            tensor, ellm_type_name(wanted), ellm_type_name(used));
}

static void report_progress(void *user, int done, int total)
{
    (void)user;
    if (isatty(STDERR_FILENO))
        fprintf(stderr, "\redgellm quantize: %d/%d tensors", done, total);
    if (done == total && isatty(STDERR_FILENO))
        fputc('\n', stderr);
}

/* What quantizing with calibration statistics uses: the imatrix, the AWQ fold and GPTQ, if asked. */
typedef struct calibrated {
    ellm_imatrix *im;
    ellm_awq *awq;
    ellm_gptq *gptq;
} calibrated;

static const float *calibrated_importance(void *user, const char *tensor, int64_t n_cols)
{
    const calibrated *c = user;
    const float *scaled = ellm_awq_importance(c->awq, tensor, n_cols);
    return scaled ? scaled : ellm_imatrix_find(c->im, tensor, n_cols);
}

/* The mean activations fit the unscaled columns only: none under AWQ. */
static const float *calibrated_mean_value(void *user, const char *tensor, int64_t n_cols)
{
    const calibrated *c = user;
    return c->awq ? NULL : ellm_imatrix_find_mean_value(c->im, tensor, n_cols);
}

/* So do the covariance's directions. */
static const float *calibrated_directions(void *user, const char *tensor, int64_t n_cols, int *k)
{
    const calibrated *c = user;
    return c->awq ? NULL : ellm_imatrix_find_directions(c->im, tensor, n_cols, k);
}

static void awq_fold(void *user, const char *tensor, uint64_t row, float *x, int64_t n)
{
    const calibrated *c = user;
    ellm_awq_transform_row(c->awq, tensor, row, x, n);
}

static bool gptq_claims(void *user, const char *tensor, ellm_type type, int64_t n_cols)
{
    const calibrated *c = user;
    return ellm_gptq_covers(c->gptq, tensor, type, n_cols);
}

static edgellm_status gptq_matrix(void *user, const char *tensor, ellm_type type, float *w,
                                  int64_t n_rows, int64_t n_cols, void *dst)
{
    const calibrated *c = user;
    return ellm_gptq_quantize_tensor(c->gptq, tensor, type, w, n_rows, n_cols, c->awq, dst);
}

static edgellm_status gptq_logit_kl(void *user, const char *const *tensors, int n,
                                    const ellm_type *types, int n_plans, double *kl)
{
    const calibrated *c = user;
    edgellm_status st = ellm_gptq_logit_kl(c->gptq, tensors, n, types, n_plans, kl);
    for (int p = 0; st == EDGELLM_OK && n == 2 && p < n_plans; p++)
        fprintf(stderr, "edgellm quantize: --gptq: %s %s, %s %s: calibration KL %.5f\n", tensors[0],
                ellm_type_name(types[2 * p]), tensors[1], ellm_type_name(types[2 * p + 1]), kl[p]);
    return st;
}

static void report_gptq_layer(void *user, int32_t layer, int32_t n_layer, double seconds)
{
    (void)user;
    if (layer < 0)
        fprintf(stderr, "edgellm quantize: --gptq: output head statistics in %.1f s\n", seconds);
    else
        fprintf(stderr, "edgellm quantize: --gptq: layer %d/%d statistics in %.1f s\n", layer + 1,
                n_layer, seconds);
}

/* Files without the model keys (other runtimes') pass the loader's checks when they cover only
 * some matrices, e.g. a model with fewer layers: half of aidreams' matrices were rounded without
 * their statistics and nothing said so. */
static void warn_uncovered(const char *imatrix_path, const char *model_path, const ellm_imatrix *im)
{
    gguf_file *model = NULL;
    if (ellm_gguf_open(model_path, &model) != EDGELLM_OK)
        return;
    int matrices = 0, missing = 0;
    char first[96] = "";
    for (uint64_t i = 0; i < ellm_gguf_tensor_count(model); i++) {
        const gguf_tensor_info *t = ellm_gguf_tensor_at(model, i);
        char name[96];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.data);
        if (t->n_dims != 2 || (strncmp(name, "blk.", 4) && strcmp(name, "output.weight")))
            continue;
        matrices++;
        if (!ellm_imatrix_find(im, name, (int64_t)t->ne[0]) && !missing++)
            snprintf(first, sizeof first, "%s", name);
    }
    ellm_gguf_close(model);
    if (missing)
        fprintf(stderr,
                "edgellm quantize: warning: '%s' has no statistics for %d of the %d matrices "
                "(%s, ...); they are rounded as without --imatrix\n",
                imatrix_path, missing, matrices, first);
}

/* X^T X from fewer tokens than a matrix has columns has rank below its width, and GPTQ pushes the
 * rounding errors into directions the calibration never saw: aidreams Q4_0 with 2 tokens had a
 * held-out KL of 0.77, with 64 0.029, plain rounding 0.020 (tests/attack_gptq.sh). */
static void warn_few_tokens(const char *cmd, const char *model_path, const cli_calib *calib,
                            int32_t n_ids)
{
    edgellm_model *m = NULL;
    edgellm_model_info info;
    if (edgellm_model_load(model_path, NULL, &m) != EDGELLM_OK ||
        edgellm_model_get_info(m, &info) != EDGELLM_OK) {
        edgellm_model_free(m);
        return;
    }
    edgellm_model_free(m);
    long widest = info.n_ff > info.n_embd ? info.n_ff : info.n_embd;
    long q_width = (long)info.n_head * info.head_dim;
    widest = q_width > widest ? q_width : widest;
    long chunks = n_ids / calib->ctx;
    chunks = calib->chunks > 0 && calib->chunks < chunks ? calib->chunks : chunks;
    if (chunks * calib->ctx < widest)
        fprintf(stderr,
                "edgellm %s: warning: --gptq: %ld calibration tokens for matrices %ld columns "
                "wide; with fewer tokens than columns GPTQ can do worse than plain rounding: give "
                "at least %ld\n",
                cmd, chunks * calib->ctx, widest, widest);
}

/* The calibration tokens of --calib, cut to the model's context, and GPTQ over them. */
static ellm_gptq *open_gptq(const char *cmd, const char *model_path, cli_calib *calib,
                            bool act_order, edgellm_token **ids_out, int *status)
{
    int32_t n = 0;
    edgellm_token *ids = cli_calib_tokens(cmd, model_path, calib, &n, status);
    *ids_out = NULL;
    if (!ids)
        return NULL;
    ellm_gptq_params p = {(int32_t)calib->ctx,
                          (int32_t)calib->chunks,
                          (int32_t)calib->threads,
                          report_gptq_layer,
                          NULL,
                          act_order};
#ifdef __GLIBC__
    /* GPTQ frees each layer's statistics (n x n floats per input) before the next layer's. After
     * such a free glibc raises its mmap threshold, so the next layers' buffers come from a heap it
     * keeps; a fixed threshold maps each one and gives it back when freed. */
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
#endif
    ellm_gptq *g = NULL;
    if (ellm_gptq_create(model_path, ids, n, &p, &g) != EDGELLM_OK) {
        cli_error(cmd, "--calib %s: %s", calib->text_path, edgellm_last_error());
        free(ids);
        *status = 1;
        return NULL;
    }
    *ids_out = ids;
    warn_few_tokens(cmd, model_path, calib, n);
    return g;
}

static void report_awq(void *user, const char *group, float alpha)
{
    (void)user;
    if (alpha > 0)
        fprintf(stderr, "edgellm quantize: --awq %s: alpha %.1f\n", group, alpha);
}

/* The AWQ scales for the input model and target type. */
static ellm_awq *plan_awq(const char *cmd, const char *model_path, const ellm_imatrix *im,
                          ellm_type type)
{
    gguf_file *model = NULL;
    ellm_awq *awq = NULL;
    if (ellm_gguf_open(model_path, &model) != EDGELLM_OK ||
        ellm_awq_plan(model, im, type, report_awq, NULL, &awq) != EDGELLM_OK)
        cli_error(cmd, "%s", edgellm_last_error());
    ellm_gguf_close(model);
    return awq;
}

int cmd_quantize(int argc, char **argv)
{
    const char *cmd = "quantize";
    if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        printf("usage: edgellm quantize IN.gguf OUT.gguf TYPE [--imatrix IMATRIX.gguf [--awq]]\n"
               "                        [--gptq --calib CALIB.txt [--act-order] [--ctx N] "
               "[--chunks N]\n"
               "                        [-t N]]\n"
               "  TYPE: %s\n"
               "  Mixes keep the output head at 6 or 8 bits and give attention v/output and\n"
               "  ffn_down more bits where the mix says so (K_M: about half the layers at Q6_K).\n"
               "  --imatrix (from 'edgellm imatrix'): block scales minimise the error weighted by\n"
               "  each input column's mean square activation (q4_0, q4_1, q5_0, q5_1, iq4_nl,\n"
               "  iq4_xs and the K-quants q2_k .. q6_k); a mix gives its higher type to the layer\n"
               "  matrices where it removes the most weighted error per extra byte, at the size\n"
               "  of its fixed rules (--rule-mix: the fixed rules instead).\n"
               "  --awq (single block types, llama/mistral): per input channel scales searched on\n"
               "  the imatrix statistics and folded into the preceding norm or matrix, so the\n"
               "  unrounded model computes the same; the output is a standard GGUF.\n"
               "  --gptq: the layer matrices are rounded column by column, each column's error\n"
               "  fed to the columns not yet rounded through the inverse of X^T X, X the layer's\n"
               "  inputs on --calib text (recomputed layer by layer with the earlier layers as\n"
               "  quantized; --ctx tokens per chunk, default 512 or the model's context; --chunks\n"
               "  caps the chunks), the block scales then refit to the codes; the token\n"
               "  embedding is weighted by the matrices that read it. Combines with --awq\n"
               "  (scaling first, then GPTQ rounding of the scaled matrices). --act-order rounds\n"
               "  the columns largest diag(X^T X) first, each block's scale chosen when the\n"
               "  order reaches its first column (static groups). With a K-quant mix, --gptq\n"
               "  also moves K-quant steps from the output head to the token embedding where the\n"
               "  calibration text's KL at the logits says so, at no more bytes.\n",
               ellm_quant_recipe_names());
        return 0;
    }
    const char *imatrix_path = NULL;
    bool awq = false, gptq = false, act_order = false, rule_mix = false;
    cli_calib calib = cli_calib_defaults(512);
    for (int i = 4; i < argc; i++) {
        /* The calibration text is --calib here: -f and --ids are not quantize options. */
        bool text_option = !strcmp(argv[i], "-f") || !strcmp(argv[i], "--ids");
        cli_option_result r = text_option ? CLI_OPTION_NOT_MINE
                                          : cli_calib_option(cmd, argc, argv, &i, &calib);
        if (r == CLI_OPTION_BAD)
            return EXIT_USAGE;
        if (r == CLI_OPTION_TAKEN)
            continue;
        if (!strcmp(argv[i], "--awq")) {
            awq = true;
        } else if (!strcmp(argv[i], "--gptq")) {
            gptq = true;
        } else if (!strcmp(argv[i], "--act-order")) {
            act_order = true;
        } else if (!strcmp(argv[i], "--rule-mix")) {
            rule_mix = true;
        } else if (!strcmp(argv[i], "--imatrix") && i + 1 < argc) {
            imatrix_path = argv[++i];
        } else if (!strcmp(argv[i], "--calib") && i + 1 < argc) {
            calib.text_path = argv[++i];
        } else {
            cli_error(cmd,
                      "unknown or incomplete option '%s' (usage: edgellm quantize IN.gguf "
                      "OUT.gguf TYPE [--imatrix F [--awq]] [--gptq --calib F])",
                      argv[i]);
            return EXIT_USAGE;
        }
    }
    if (argc < 4) {
        cli_error(cmd,
                  "usage: edgellm quantize IN.gguf OUT.gguf TYPE [--imatrix F [--awq]] "
                  "[--gptq --calib F] "
                  "(TYPE: %s)",
                  ellm_quant_recipe_names());
        return EXIT_USAGE;
    }
    if (awq && !imatrix_path) {
        cli_error(cmd, "--awq searches its scales on calibration statistics: give --imatrix F "
                       "(from 'edgellm imatrix')");
        return EXIT_USAGE;
    }
    if (act_order && !gptq) {
        cli_error(cmd, "--act-order is the column order of --gptq: add --gptq --calib CALIB.txt");
        return EXIT_USAGE;
    }
    if (gptq != (calib.text_path != NULL)) {
        cli_error(cmd, gptq ? "--gptq computes its statistics by running the model on calibration "
                              "text: give --calib CALIB.txt"
                            : "--calib is the calibration text of --gptq: add --gptq");
        return EXIT_USAGE;
    }
    ellm_type type;
    bool recipe = ellm_quant_recipe_exists(argv[3]);
    if (!recipe && !ellm_type_from_name(argv[3], &type)) {
        cli_error(cmd, "unknown type '%s' (%s)", argv[3], ellm_quant_recipe_names());
        return EXIT_USAGE;
    }
    const cli_input inputs[] = {
        {"the input model", argv[1]}, {"--imatrix", imatrix_path}, {"--calib", calib.text_path}};
    if (cli_output_refused(cmd, argv[2], inputs, sizeof inputs / sizeof *inputs))
        return EXIT_USAGE;
    if (awq && recipe) {
        cli_error(cmd,
                  "--awq takes a single block type (q4_0, q4_1, q5_0, q5_1, iq4_nl, q8_0, "
                  "...), not the mix %s",
                  argv[3]);
        return EXIT_USAGE;
    }
    calibrated cal = {NULL, NULL, NULL};
    ellm_imatrix *im = NULL;
    if (imatrix_path) {
        if (!(im = cli_load_imatrix(cmd, imatrix_path, argv[1])))
            return 1;
        cal.im = im;
        if (awq && !(cal.awq = plan_awq(cmd, argv[1], im, type))) {
            ellm_imatrix_free(im);
            return 1;
        }
        warn_uncovered(imatrix_path, argv[1], im);
        if (!recipe && !ellm_type_has_weighted_search(type))
            fprintf(stderr,
                    "edgellm quantize: %s has no importance-weighted search; its "
                    "matrices are rounded as without --imatrix\n",
                    argv[3]);
    }
    edgellm_token *calib_ids = NULL;
    int status = 1;
    if (gptq && !(cal.gptq = open_gptq(cmd, argv[1], &calib, act_order, &calib_ids, &status))) {
        ellm_imatrix_free(im);
        ellm_awq_free(cal.awq);
        return status;
    }
    ellm_quantize_options o = {.on_fallback = report_fallback,
                               .on_progress = report_progress,
                               .importance = im ? calibrated_importance : NULL,
                               .transform_row = cal.awq ? awq_fold : NULL,
                               .user = &cal,
                               .claims_matrix = cal.gptq ? gptq_claims : NULL,
                               .quantize_matrix = cal.gptq ? gptq_matrix : NULL,
                               .mix_by_rules = rule_mix,
                               .mean_value = im ? calibrated_mean_value : NULL,
                               .directions = im ? calibrated_directions : NULL,
                               .logit_kl = cal.gptq ? gptq_logit_kl : NULL,
                               .input = cal.gptq ? ellm_gptq_input(cal.gptq) : NULL};
    edgellm_status st = recipe ? ellm_quantize_model_recipe(argv[1], argv[2], argv[3], &o)
                               : ellm_quantize_model(argv[1], argv[2], type, &o);
    ellm_imatrix_free(im);
    ellm_awq_free(cal.awq);
    ellm_gptq_free(cal.gptq);
    free(calib_ids);
    if (st != EDGELLM_OK) {
        cli_error(cmd, "%s", edgellm_last_error());
        return 1;
    }
    fprintf(stderr, "edgellm quantize: wrote %s (%s)\n", argv[2],
            recipe ? argv[3] : ellm_type_name(type));
    return 0;
}
