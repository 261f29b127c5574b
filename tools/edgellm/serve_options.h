/* The options of `edgellm serve`, shared with `edgellm gateway` (which serves its edge model the
 * same way). */
#ifndef EDGELLM_CLI_SERVE_OPTIONS_H
#define EDGELLM_CLI_SERVE_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>

#include "cli_draft.h"
#include "server/server.h"

typedef struct serve_options {
    ellm_server_config *cfg;
    char *key_from_file; /* owned; freed by the caller */
    bool ctx_given;
    bool model_optional;       /* serve --web: the page loads its model in the browser */
    const char *kernels;       /* --kernels; NULL: $EDGELLM_KERNELS or the CPU's default */
    cli_draft_options draft;   /* --draft / --lookup: speculative decoding per slot */
    char draft_resolved[4096]; /* the draft's path once resolved from the store */
} serve_options;

enum { SERVE_OPTION_TAKEN, SERVE_OPTION_UNKNOWN, SERVE_OPTION_USAGE, SERVE_OPTION_FAILED };

/* cfg gets serve's defaults. */
void serve_options_init(serve_options *o, ellm_server_config *cfg);
/* Takes argv[*i] (and its value, advancing *i) if it is one of serve's options. */
int serve_option(const char *cmd, serve_options *o, int argc, char **argv, int *i);
/* Checks what needs every option (a model, a valid key) and resolves the model from the store
 * into resolved; returns 0 or the exit code. */
int serve_options_finish(const char *cmd, serve_options *o, char *resolved, size_t cap);

#endif
