/*
 * What the example programs share: reading their token-count argument, and a model with one
 * context. Each example still compiles as one file (`cc step.c $(pkg-config ...)`): this header
 * sits next to it.
 */
#ifndef EDGELLM_EXAMPLE_H
#define EDGELLM_EXAMPLE_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include <edgellm.h>

/* arg (the argument called name) as a count from 1 to 1000000 into *count. Returns 0, or 2, the
 * usage exit status, after saying what is wrong. */
static inline int example_parse_count(const char *program, const char *name, const char *arg,
                                      long *count)
{
    char *end;
    errno = 0;
    long value = strtol(arg, &end, 10);
    if (errno || *end || end == arg || value < 1 || value > 1000000) {
        fprintf(stderr, "%s: %s must be a number from 1 to 1000000, not '%s'\n", program, name,
                arg);
        return 2;
    }
    *count = value;
    return 0;
}

/* Loads the model at path and creates a context of the default parameters on it. Returns 0, or
 * 1 after saying what failed (then nothing is left to free). */
static inline int example_open(const char *program, const char *path, edgellm_model **model,
                               edgellm_context **ctx)
{
    *model = NULL;
    *ctx = NULL;
    if (edgellm_model_load(path, NULL, model) != EDGELLM_OK) {
        fprintf(stderr, "%s: cannot load the model: %s\n", program, edgellm_last_error());
        return 1;
    }
    if (edgellm_context_create(*model, NULL, ctx) != EDGELLM_OK) {
        fprintf(stderr, "%s: cannot create a context: %s\n", program, edgellm_last_error());
        edgellm_model_free(*model);
        *model = NULL;
        return 1;
    }
    return 0;
}

#endif
