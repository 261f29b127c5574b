/* `edgellm bench --draft D | --lookup N [--force-acceptance R]` (see bench_speculative.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_speculative.h"

void bench_speculative_defaults(bench_speculative *b)
{
    *b = (bench_speculative){0};
    cli_draft_defaults(&b->draft);
}

const char *bench_speculative_usage(void)
{
    return "  --draft MODEL | --lookup N [--draft-max N] [--draft-min N]: also time greedy\n"
           "      decoding with speculative proposals against plain decoding in the same run\n"
           "  --force-acceptance R: BENCHMARK ONLY, breaks the output: accept each proposal\n"
           "      with probability R (0..1) whatever the models say, to measure the cost model\n"
           "      on models with random weights\n";
}

cli_option_result bench_speculative_option(const char *cmd, int argc, char **argv, int *i,
                                           bench_speculative *b)
{
    if (strcmp(argv[*i], "--force-acceptance") != 0)
        return cli_draft_option(cmd, argc, argv, i, &b->draft);
    const char *opt = argv[*i];
    const char *v = cli_option_value(cmd, argc, argv, i);
    if (!v || !cli_parse_float(cmd, opt, v, 0, 1, &b->forced_rate))
        return CLI_OPTION_BAD;
    b->forced = true;
    return CLI_OPTION_TAKEN;
}

bool bench_speculative_wanted(const bench_speculative *b)
{
    return b->draft.draft_path || b->draft.lookup > 0;
}

bool bench_speculative_check(const char *cmd, const bench_speculative *b)
{
    if (b->forced && !bench_speculative_wanted(b)) {
        cli_error(cmd, "--force-acceptance needs proposals to accept: add --draft MODEL or "
                       "--lookup N");
        return false;
    }
    return true;
}

/* One greedy generation from an empty cache; adds its decode tokens and seconds. */
static edgellm_status timed_generation(edgellm_context *ctx, const edgellm_generate_params *gp,
                                       const edgellm_token *prompt, int n_prompt,
                                       edgellm_generate_result *res, double decoded[2])
{
    edgellm_context_truncate(ctx, 0);
    if (gp->draft)
        edgellm_context_truncate(gp->draft, 0);
    edgellm_status st = edgellm_generate_tokens(ctx, prompt, n_prompt, gp, res);
    if (res->n_generated > 1) {
        decoded[0] += res->n_generated - 1;
        decoded[1] += res->decode_seconds;
    }
    return st;
}

int bench_speculative_run(const char *cmd, const bench_speculative *b, const edgellm_model *m,
                          edgellm_context *ctx, const edgellm_context_params *cp,
                          const edgellm_token *prompt, int n_prompt, int n_gen, int reps,
                          bench_speculative_figures *out)
{
    *out = (bench_speculative_figures){0};
    edgellm_generate_params plain = edgellm_generate_default_params();
    plain.max_tokens = n_gen;
    plain.sampling.temperature = 0;
    edgellm_generate_params spec = plain;
    cli_draft draft = {0};
    int rc = cli_draft_open(cmd, &b->draft, m, cp, &draft, &spec);
    if (rc != 0)
        return rc;
    spec.benchmark_force_acceptance = b->forced;
    spec.benchmark_acceptance_rate = (float)b->forced_rate;
    /* Tokens and seconds after the first token, summed; runs alternate so that both see the
     * same machine load. */
    double plain_decoded[2] = {0, 0}, spec_decoded[2] = {0, 0};
    for (int r = 0; r < reps && rc == 0; r++) {
        edgellm_generate_result res;
        if (timed_generation(ctx, &plain, prompt, n_prompt, &res, plain_decoded) != EDGELLM_OK ||
            timed_generation(ctx, &spec, prompt, n_prompt, &res, spec_decoded) != EDGELLM_OK) {
            cli_error(cmd, "%s", edgellm_last_error());
            rc = 1;
            break;
        }
        out->proposed += res.n_draft_proposed;
        out->accepted += res.n_draft_accepted;
        out->passes += res.n_target_passes + 1;
        out->generated += res.n_generated;
    }
    if (rc == 0) {
        out->plain_tps = plain_decoded[1] > 0 ? plain_decoded[0] / plain_decoded[1] : 0;
        out->speculative_tps = spec_decoded[1] > 0 ? spec_decoded[0] / spec_decoded[1] : 0;
    }
    cli_draft_close(&draft);
    return rc;
}

void bench_speculative_print(const bench_speculative *b, const bench_speculative_figures *f,
                             bool json)
{
    double rate = f->proposed > 0 ? (double)f->accepted / (double)f->proposed : 0;
    double per_pass = f->passes > 0 ? (double)f->generated / (double)f->passes : 0;
    double speedup = f->plain_tps > 0 ? f->speculative_tps / f->plain_tps : 0;
    if (json) {
        printf("{\"draft\": ");
        if (b->draft.draft_path)
            cli_print_json_string(stdout, b->draft.draft_path, strlen(b->draft.draft_path));
        else
            printf("null");
        printf(", \"lookup_ngram\": %ld, \"draft_max\": %ld, \"draft_min\": %ld, "
               "\"forced_acceptance\": ",
               b->draft.lookup, b->draft.draft_max, b->draft.draft_min);
        if (b->forced)
            printf("%.3f", b->forced_rate);
        else
            printf("null");
        printf(", \"plain_decode_tok_per_s\": %.2f, \"decode_tok_per_s\": %.2f, \"speedup\": %.3f, "
               "\"proposed\": %ld, \"accepted\": %ld, \"acceptance_rate\": %.4f, "
               "\"tokens_per_pass\": %.3f}",
               f->plain_tps, f->speculative_tps, speedup, f->proposed, f->accepted, rate, per_pass);
        return;
    }
    printf("%-22s ", "speculative");
    if (b->draft.draft_path)
        printf("draft %s", b->draft.draft_path);
    else
        printf("prompt lookup of %ld-grams", b->draft.lookup);
    printf(", up to %ld per pass", b->draft.draft_max);
    if (b->forced)
        printf(", FORCED acceptance %.2f (benchmark only)", b->forced_rate);
    printf("\n%-22s %.2f   (plain %.2f in the same run: %.2fx)\n", "spec_decode_tok_per_s",
           f->speculative_tps, f->plain_tps, speedup);
    printf("%-22s %.1f%%  (%ld of %ld proposals)\n", "spec_acceptance", rate * 100.0, f->accepted,
           f->proposed);
    printf("%-22s %.2f\n", "spec_tokens_per_pass", per_pass);
}
