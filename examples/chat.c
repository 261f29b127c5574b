/*
 * A chat loop on libedgellm: every line read from stdin is a user turn, the reply is streamed to
 * stdout on one line. Each turn continues the context of the previous ones (only the new turn is
 * evaluated); "/reset" starts over; end of input quits. Built against the installed library:
 *
 *   cc chat.c $(pkg-config --cflags --libs edgellm) -o chat
 *   ./chat model.gguf [MAX_TOKENS_PER_REPLY]
 *
 * The library does not format conversations: this example writes a plain transcript
 * ("User: ...\nAssistant:"), which suits base models. An instruction-tuned model wants its own
 * chat format, which it documents in its "tokenizer.chat_template" metadata
 * (edgellm_model_meta_string).
 */
#define _POSIX_C_SOURCE 200809L /* getline */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "example.h"

static int print_text(void *user_data, edgellm_token token, const char *text, size_t len)
{
    (void)user_data;
    (void)token;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0;
}

/* One user turn and the reply to it; returns 0, or 1 after reporting a failure. */
static int reply(edgellm_context *ctx, const char *line, int32_t max_tokens)
{
    /* The first turn starts the transcript; later ones follow the previous reply, whose
     * line break was the stop string and so is not in the context. */
    const char *before = edgellm_context_n_past(ctx) > 0 ? "\n" : "";
    size_t size = strlen(before) + strlen("User: \nAssistant:") + strlen(line) + 1;
    char *turn = malloc(size);
    if (!turn) {
        fprintf(stderr, "chat: no memory for a turn of %zu bytes\n", size);
        return 1;
    }
    snprintf(turn, size, "%sUser: %s\nAssistant:", before, line);

    static const char *const stop[] = {"\n"};
    edgellm_generate_params params = edgellm_generate_default_params();
    params.max_tokens = max_tokens;
    params.stop_strings = stop;
    params.n_stop_strings = 1;
    params.keep_cache = 1; /* continue the conversation held in the KV cache */
    params.sampling.temperature = 0.0f;
    params.on_token = print_text;
    edgellm_generate_result result;
    edgellm_status status = edgellm_generate(ctx, turn, &params, &result);
    free(turn);
    putchar('\n');
    fflush(stdout);
    /* Nothing was cached before this turn: starting over would not make room for it. */
    if (status == EDGELLM_ERR_CONTEXT_FULL && edgellm_context_n_past(ctx) == 0) {
        fprintf(stderr, "chat: the turn is longer than the whole context (%d tokens); shorten it\n",
                edgellm_context_n_ctx(ctx));
        return 0;
    }
    if (status == EDGELLM_ERR_CONTEXT_FULL ||
        (status == EDGELLM_OK && result.stop_reason == EDGELLM_STOP_CONTEXT_FULL)) {
        fprintf(stderr, "chat: the context is full: type /reset to start over\n");
        return 0;
    }
    if (status != EDGELLM_OK) {
        fprintf(stderr, "chat: %s\n", edgellm_last_error());
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: chat MODEL.gguf [MAX_TOKENS_PER_REPLY]  (turns on stdin)\n");
        return 2;
    }
    long max_tokens = 128;
    if (argc == 3 && example_parse_count("chat", "MAX_TOKENS_PER_REPLY", argv[2], &max_tokens) != 0)
        return 2;
    edgellm_model *model;
    edgellm_context *ctx;
    if (example_open("chat", argv[1], &model, &ctx) != 0)
        return 1;

    int rc = 0;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while (rc == 0 && (len = getline(&line, &cap, stdin)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (strcmp(line, "/reset") == 0)
            rc = edgellm_context_truncate(ctx, 0) == EDGELLM_OK ? 0 : 1;
        else if (len > 0)
            rc = reply(ctx, line, (int32_t)max_tokens);
    }
    free(line);
    edgellm_context_free(ctx);
    edgellm_model_free(model);
    return rc;
}
