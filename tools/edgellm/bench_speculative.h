/* The speculative decoding part of `edgellm bench`: decode speed with proposals from a draft
 * model or prompt lookup against plain decoding in the same run, acceptance rate and tokens per
 * pass; under --force-acceptance (benchmark only) for any acceptance rate. */
#ifndef EDGELLM_BENCH_SPECULATIVE_H
#define EDGELLM_BENCH_SPECULATIVE_H

#include <stdbool.h>

#include "cli_draft.h"

typedef struct bench_speculative {
    cli_draft_options draft;
    bool forced;
    double forced_rate;
} bench_speculative;

typedef struct bench_speculative_figures {
    double plain_tps, speculative_tps; /* decode tokens/s over all runs */
    long proposed, accepted, passes, generated;
} bench_speculative_figures;

void bench_speculative_defaults(bench_speculative *b);
/* Parses argv[*i] when it is --draft, --draft-max, --draft-min, --lookup or --force-acceptance. */
cli_option_result bench_speculative_option(const char *cmd, int argc, char **argv, int *i,
                                           bench_speculative *b);
bool bench_speculative_wanted(const bench_speculative *b);
/* Whether the options make sense together (prints the error when not). */
bool bench_speculative_check(const char *cmd, const bench_speculative *b);
const char *bench_speculative_usage(void);
/* reps alternating runs of n_gen greedy tokens after prompt, without and with proposals, on ctx
 * (target model m). Returns the exit code (errors printed). */
int bench_speculative_run(const char *cmd, const bench_speculative *b, const edgellm_model *m,
                          edgellm_context *ctx, const edgellm_context_params *cp,
                          const edgellm_token *prompt, int n_prompt, int n_gen, int reps,
                          bench_speculative_figures *out);
void bench_speculative_print(const bench_speculative *b, const bench_speculative_figures *f,
                             bool json);

#endif
