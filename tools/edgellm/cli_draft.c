/* Speculative decoding and the other generation options shared by the commands (see cli_draft.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_draft.h"
#include "cli_util.h"
#include "store/store.h"

void cli_draft_defaults(cli_draft_options *o)
{
    edgellm_generate_params gp = edgellm_generate_default_params();
    *o = (cli_draft_options){NULL, gp.draft_max, gp.draft_min, 0};
}

const char *cli_draft_usage(void)
{
    return "      --draft MODEL       speculative decoding: a smaller model with the same\n"
           "                          vocabulary proposes tokens the model checks in one pass\n"
           "      --draft-max N       most tokens proposed per pass (default 8)\n"
           "      --draft-min N       fewer proposals than this are not checked (default 1)\n"
           "      --lookup N          speculative decoding without a draft model: propose what\n"
           "                          followed the last N tokens earlier in the context\n";
}

cli_option_result cli_draft_option(const char *cmd, int argc, char **argv, int *i,
                                   cli_draft_options *o)
{
    const char *a = argv[*i];
    long *target = NULL, lo = 0, hi = 0;
    if (!strcmp(a, "--draft")) {
        const char *v = cli_option_value(cmd, argc, argv, i);
        if (!v)
            return CLI_OPTION_BAD;
        o->draft_path = v;
        return CLI_OPTION_TAKEN;
    } else if (!strcmp(a, "--draft-max")) {
        target = &o->draft_max, lo = 1, hi = 64;
    } else if (!strcmp(a, "--draft-min")) {
        target = &o->draft_min, lo = 0, hi = 64;
    } else if (!strcmp(a, "--lookup")) {
        target = &o->lookup, lo = 1, hi = 64;
    } else {
        return CLI_OPTION_NOT_MINE;
    }
    const char *v = cli_option_value(cmd, argc, argv, i);
    if (!v || !cli_parse_int(cmd, a, v, lo, hi, target))
        return CLI_OPTION_BAD;
    return CLI_OPTION_TAKEN;
}

int cli_draft_check(const char *cmd, const cli_draft_options *o)
{
    if (o->draft_path && o->lookup > 0) {
        cli_error(cmd, "give either --draft or --lookup, not both");
        return EXIT_USAGE;
    }
    if (o->draft_min > o->draft_max) {
        cli_error(cmd, "--draft-min (%ld) must not exceed --draft-max (%ld)", o->draft_min,
                  o->draft_max);
        return EXIT_USAGE;
    }
    return 0;
}

int cli_draft_open(const char *cmd, const cli_draft_options *o, const edgellm_model *target,
                   const edgellm_context_params *cp, cli_draft *draft, edgellm_generate_params *gp)
{
    *draft = (cli_draft){0};
    int rc = cli_draft_check(cmd, o);
    if (rc != 0)
        return rc;
    gp->draft_max = (int32_t)o->draft_max;
    gp->draft_min = (int32_t)o->draft_min;
    gp->lookup_ngram = (int32_t)o->lookup;
    if (!o->draft_path)
        return 0;
    char resolved[4096];
    edgellm_model_info info;
    edgellm_model_params mp = cli_model_params();
    if (ellm_store_resolve_model(o->draft_path, resolved, sizeof resolved) != EDGELLM_OK ||
        edgellm_model_load(resolved, &mp, &draft->model) != EDGELLM_OK) {
        cli_error(cmd, "draft model: %s", edgellm_last_error());
        return 1;
    }
    if (edgellm_model_check_draft(target, draft->model) != EDGELLM_OK) {
        cli_error(cmd, "--draft %s cannot be used: %s", o->draft_path, edgellm_last_error());
        cli_draft_close(draft);
        return 1;
    }
    edgellm_model_get_info(draft->model, &info);
    edgellm_context_params dcp = *cp;
    if (dcp.n_ctx <= 0 || dcp.n_ctx > info.n_ctx_train)
        dcp.n_ctx = info.n_ctx_train;
    if (edgellm_context_create(draft->model, &dcp, &draft->ctx) != EDGELLM_OK) {
        cli_error(cmd, "draft model: %s", edgellm_last_error());
        cli_draft_close(draft);
        return 1;
    }
    gp->draft = draft->ctx;
    return 0;
}

void cli_draft_close(cli_draft *draft)
{
    edgellm_context_free(draft->ctx);
    edgellm_model_free(draft->model);
    *draft = (cli_draft){0};
}

void cli_draft_report(FILE *out, const char *prefix, const edgellm_generate_result *res)
{
    if (res->n_target_passes <= 0)
        return;
    /* The prompt's pass yields the first token, so it counts as a pass too. */
    double per_pass = (double)res->n_generated / (res->n_target_passes + 1);
    fprintf(out, "%sspeculative: %d of %d proposals accepted (%.1f %%), %.2f tokens per pass\n",
            prefix, res->n_draft_accepted, res->n_draft_proposed,
            res->n_draft_proposed > 0 ? 100.0 * res->n_draft_accepted / res->n_draft_proposed : 0.0,
            per_pass);
}

void cli_generation_defaults(cli_generation_options *o, long n_predict)
{
    *o = (cli_generation_options){.n_predict = n_predict,
                                  .sampling = edgellm_sampler_default_params()};
    cli_draft_defaults(&o->draft);
}

cli_option_result cli_generation_option(const char *cmd, int argc, char **argv, int *i,
                                        cli_generation_options *o)
{
    cli_option_result r = cli_sampling_option(cmd, argc, argv, i, &o->sampling, &o->seed_given);
    if (r == CLI_OPTION_NOT_MINE)
        r = cli_draft_option(cmd, argc, argv, i, &o->draft);
    if (r != CLI_OPTION_NOT_MINE)
        return r;
    const char *a = argv[*i];
    long *target = NULL, lo = 0, hi = 0;
    if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
        const char *v = cli_option_value(cmd, argc, argv, i);
        if (!v)
            return CLI_OPTION_BAD;
        o->model_path = v;
        return CLI_OPTION_TAKEN;
    } else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) {
        target = &o->n_predict, lo = -1, hi = 1 << 30;
    } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
        target = &o->threads, lo = 1, hi = 256;
    } else if (!strcmp(a, "--ctx") || !strcmp(a, "-c")) {
        target = &o->ctx_len, lo = 1, hi = 1 << 24;
    } else {
        return CLI_OPTION_NOT_MINE;
    }
    const char *v = cli_option_value(cmd, argc, argv, i);
    if (!v || !cli_parse_int(cmd, a, v, lo, hi, target))
        return CLI_OPTION_BAD;
    return CLI_OPTION_TAKEN;
}
