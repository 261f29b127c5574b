/* The speculative decoding options `run`, `chat`, `serve` and `bench` share: --draft FILE,
 * --draft-max N, --draft-min N and --lookup N, and turning them into a draft model and context. */
#ifndef EDGELLM_CLI_DRAFT_H
#define EDGELLM_CLI_DRAFT_H

#include <stdbool.h>
#include <stdio.h>

#include "cli_util.h"
#include "edgellm.h"

typedef struct cli_draft_options {
    const char *draft_path; /* a file or store NAME[:VERSION]; NULL = no draft model */
    long draft_max, draft_min, lookup;
} cli_draft_options;

typedef struct cli_draft {
    edgellm_model *model;
    edgellm_context *ctx;
} cli_draft;

void cli_draft_defaults(cli_draft_options *o);
/* Parses argv[*i] (and its value) into o when it is one of the options. */
cli_option_result cli_draft_option(const char *cmd, int argc, char **argv, int *i,
                                   cli_draft_options *o);
/* Help lines for the options. */
const char *cli_draft_usage(void);
/* The usage errors of the options alone (both sources, --draft-min above --draft-max): 0, or 2
 * after printing a one-line error. */
int cli_draft_check(const char *cmd, const cli_draft_options *o);
/* Loads the draft model, refuses one whose vocabulary differs from target's and gives it a
 * context like cp (its context capped at what the draft model was trained for); then sets the
 * speculative fields of gp. Returns the exit code: 0, or 2 (usage) / 1 (runtime) after printing a
 * one-line error. */
int cli_draft_open(const char *cmd, const cli_draft_options *o, const edgellm_model *target,
                   const edgellm_context_params *cp, cli_draft *draft, edgellm_generate_params *gp);
void cli_draft_close(cli_draft *draft);

/* The options `run` and `chat` share: -m, -n, -t, --ctx, the sampling options
 * (cli_sampling_option) and the speculative ones. */
typedef struct cli_generation_options {
    const char *model_path;
    long n_predict, threads, ctx_len; /* threads and ctx_len 0: the library's defaults */
    edgellm_sampler_params sampling;
    bool seed_given;
    cli_draft_options draft;
} cli_generation_options;

void cli_generation_defaults(cli_generation_options *o, long n_predict);
/* Parses argv[*i] (and its value) into o when it is one of them. */
cli_option_result cli_generation_option(const char *cmd, int argc, char **argv, int *i,
                                        cli_generation_options *o);
/* "speculative: 123 of 200 proposals accepted (61.5 %), 2.31 tokens per pass" for -v summaries
 * (nothing when no pass followed the prompt's). */
void cli_draft_report(FILE *out, const char *prefix, const edgellm_generate_result *res);

#endif
