/*
 * Streams a greedy continuation of a prompt to stdout while it is generated: the smallest
 * program that embeds libedgellm. Built against the installed library (docs/embedding.md):
 *
 *   cc stream.c $(pkg-config --cflags --libs edgellm) -o stream
 *   ./stream model.gguf "Once upon a time" 64
 *
 * Prints what `edgellm run -m MODEL -p PROMPT -n N --temp 0` prints.
 */
#include <stdio.h>

#include "example.h"

/* The library calls this with text that is final: whole UTF-8 characters, never part of a stop
 * string that may still complete. */
static int print_text(void *user_data, edgellm_token token, const char *text, size_t len)
{
    (void)user_data;
    (void)token;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0; /* non-zero would stop the generation */
}

static int fail(const char *what)
{
    fprintf(stderr, "stream: %s: %s\n", what, edgellm_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: stream MODEL.gguf PROMPT [MAX_TOKENS]\n");
        return 2;
    }
    long max_tokens = 64;
    if (argc == 4 && example_parse_count("stream", "MAX_TOKENS", argv[3], &max_tokens) != 0)
        return 2;
    edgellm_model *model;
    edgellm_context *ctx;
    if (example_open("stream", argv[1], &model, &ctx) != 0)
        return 1;

    edgellm_generate_params gparams = edgellm_generate_default_params();
    gparams.max_tokens = (int32_t)max_tokens;
    gparams.sampling.temperature = 0.0f; /* greedy: the same output on every run */
    gparams.on_token = print_text;
    edgellm_generate_result result;
    edgellm_status status = edgellm_generate(ctx, argv[2], &gparams, &result);
    putchar('\n');
    int rc = 0;
    if (status != EDGELLM_OK)
        rc = fail("generation failed");
    else if (result.decode_seconds > 0)
        fprintf(stderr, "%d tokens, %.1f tokens/s\n", result.n_generated,
                (result.n_generated - 1) / result.decode_seconds);

    edgellm_context_free(ctx);
    edgellm_model_free(model);
    return rc;
}
