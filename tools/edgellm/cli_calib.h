/* The calibration options imatrix, prune, quantize --gptq and eval share (--ctx, --chunks, -t and
 * the text: -f or --ids), and the tokens they name cut to the model's context. */
#ifndef EDGELLM_CLI_CALIB_H
#define EDGELLM_CLI_CALIB_H

#include <stdbool.h>
#include <stdint.h>

#include "cli_util.h"
#include "edgellm.h"
#include "optimise/imatrix.h"

typedef struct cli_calib {
    const char *text_path, *ids_path; /* -f, --ids */
    long ctx;                         /* tokens per chunk (--ctx) */
    long chunks;                      /* --chunks; 0: every whole chunk */
    long threads;                     /* -t; 0: one per CPU */
    bool ctx_given, chunks_given;
} cli_calib;

/* ctx is the default chunk size when --ctx is not given. */
cli_calib cli_calib_defaults(long ctx);
/* Parses argv[*i] (and its value) into c when it is one of -f, --ids, --ctx, --chunks or -t. */
cli_option_result cli_calib_option(const char *cmd, int argc, char **argv, int *i, cli_calib *c);
/* The calibration tokens for the model at model_path, with c->ctx cut to the model's context (a
 * --ctx given beyond it is an error). NULL after printing the error; *status is then EXIT_USAGE
 * or 1. */
edgellm_token *cli_calib_tokens(const char *cmd, const char *model_path, cli_calib *c, int32_t *n,
                                int *status);
/* The importance matrix at path, validated against the model at model_path; NULL after printing
 * the error. */
ellm_imatrix *cli_load_imatrix(const char *cmd, const char *path, const char *model_path);

#endif
