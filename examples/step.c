/*
 * A generation pulled step by step from the program's own loop, the way a UI, a game loop or an
 * async runtime drives libedgellm: the prompt is evaluated a slice at a time (with a progress
 * line), then one token per call, and between any two calls the loop looks at its own events,
 * here a line typed on stdin. Typing "stop" and Enter stops the generation at once, without a
 * second thread. Built against the installed library (docs/embedding.md):
 *
 *   cc step.c $(pkg-config --cflags --libs edgellm) -o step
 *   ./step model.gguf "Once upon a time" 64
 *
 * Left to run, it prints what `edgellm run -m MODEL -p PROMPT -n N --temp 0` prints.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "example.h"

/* Prompt tokens per slice: one forward pass each, short enough to come back to the loop often. */
#define PROMPT_SLICE 16

/* The library hands over text that is final: whole UTF-8 characters, never part of a stop
 * string that may still complete. It calls this inside edgellm_generation_next (and finish), on
 * this thread. */
static int print_text(void *user_data, edgellm_token token, const char *text, size_t len)
{
    (void)token;
    int *n_printed = user_data;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    if (token >= 0)
        (*n_printed)++;
    return 0;
}

/* What the user has typed so far on stdin, read without ever waiting for it. */
typedef struct typed_input {
    char line[256];
    size_t len;
    bool closed; /* end of input: nothing more will come */
} typed_input;

/* Whether a whole line "stop" has arrived on stdin since the last look; never blocks. */
static bool user_typed_stop(typed_input *in)
{
    struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
    while (!in->closed && poll(&pfd, 1, 0) > 0) {
        char c;
        ssize_t n = read(STDIN_FILENO, &c, 1);
        if (n <= 0) {
            in->closed = n == 0 || errno != EINTR;
            continue;
        }
        if (c != '\n') {
            if (in->len + 1 < sizeof in->line)
                in->line[in->len++] = c;
            continue;
        }
        while (in->len > 0 && (in->line[in->len - 1] == '\r' || in->line[in->len - 1] == ' '))
            in->len--;
        in->line[in->len] = '\0';
        bool stop = strcmp(in->line, "stop") == 0;
        in->len = 0;
        if (stop)
            return true;
    }
    return false;
}

static int fail(const char *what)
{
    fprintf(stderr, "step: %s: %s\n", what, edgellm_last_error());
    return 1;
}

/* Pulls the generation to its end or until the user types stop; returns the exit status. */
static int pull(edgellm_generation *gen, const int *n_printed)
{
    typed_input input = {.len = 0};
    int ended = 0;
    int32_t total = edgellm_generation_prompt_left(gen);
    while (!ended && edgellm_generation_prompt_left(gen) > 0) {
        if (edgellm_generation_prefill(gen, PROMPT_SLICE, &ended) != EDGELLM_OK)
            return fail("evaluating the prompt failed");
        fprintf(stderr, "prompt: %d of %d tokens\n", total - edgellm_generation_prompt_left(gen),
                total);
        if (user_typed_stop(&input)) {
            fprintf(stderr, "stopped by the user during the prompt\n");
            return 0;
        }
    }
    while (!ended) {
        if (edgellm_generation_next(gen, 1, &ended) != EDGELLM_OK)
            return fail("generation failed");
        if (!ended && user_typed_stop(&input)) {
            fprintf(stderr, "\nstopped by the user after %d tokens\n", *n_printed);
            return 0;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4) {
        fprintf(stderr,
                "usage: step MODEL.gguf PROMPT [MAX_TOKENS]   (type stop + Enter to stop)\n");
        return 2;
    }
    long max_tokens = 64;
    if (argc == 4 && example_parse_count("step", "MAX_TOKENS", argv[3], &max_tokens) != 0)
        return 2;
    edgellm_model *model;
    edgellm_context *ctx;
    if (example_open("step", argv[1], &model, &ctx) != 0)
        return 1;

    int n_printed = 0;
    edgellm_generate_params gparams = edgellm_generate_default_params();
    gparams.max_tokens = (int32_t)max_tokens;
    gparams.sampling.temperature = 0.0f; /* greedy: the same output on every run */
    gparams.on_token = print_text;
    gparams.user_data = &n_printed;
    edgellm_generation *gen = NULL;
    int rc = 0;
    if (edgellm_generation_begin(ctx, argv[2], &gparams, &gen) != EDGELLM_OK)
        rc = fail("cannot begin the generation");
    else
        rc = pull(gen, &n_printed);
    /* Also after a stop: finish frees the generation (NULL when begin failed does nothing). */
    edgellm_generate_result result;
    edgellm_status status = edgellm_generation_finish(gen, &result);
    putchar('\n');
    if (status != EDGELLM_OK && rc == 0)
        rc = fail("generation failed");
    else if (rc == 0)
        fprintf(stderr, "%d tokens (%s)\n", result.n_generated,
                result.stop_reason == EDGELLM_STOP_CALLBACK ? "stopped" : "ended");

    edgellm_context_free(ctx);
    edgellm_model_free(model);
    return rc;
}
