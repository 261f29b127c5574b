/* edgellm serve: the OpenAI-compatible HTTP server. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_draft.h"
#include "cli_util.h"
#include "commands.h"
#include "server/server.h"
#include "store/store.h"

static void serve_usage(FILE *out)
{
    fprintf(out,
            "usage: edgellm serve -m MODEL [options]\n"
            "  Serves the model over the OpenAI API: /v1/chat/completions, /v1/completions,\n"
            "  /v1/embeddings, /v1/models, /tokenize, /detokenize, /health, /metrics, and a chat\n"
            "  page at /.\n"
            "  -m, --model FILE        GGUF model (or a name installed with `edgellm models`)\n"
            "      --host ADDR         address to bind (default 127.0.0.1: this machine only)\n"
            "      --port N            port (default 8080; 0 picks a free one)\n"
            "      --parallel N        sequences decoded together (default 4)\n"
            "      --ctx N             context per sequence (default: the model's, up to 4096)\n"
            "      --batch N           tokens per forward pass (default 256)\n"
            "      --queue N           requests that may wait for a slot before 429 (default 4 x parallel)\n"
            "      --threads N         CPU threads (default: all)\n"
            "      --api-key KEY       require 'Authorization: Bearer KEY' (all but /health)\n"
            "      --api-key-file F    the same, with the key read from a file (printable ASCII,\n"
            "                          at most 1024 bytes, one trailing newline allowed)\n"
            "      --cors ORIGINS      allow these browser origins (comma-separated, or *)\n"
            "      --allowed-hosts H   Host names clients may use besides localhost and the bound\n"
            "                          address (comma-separated, or *); others get 421\n"
            "      --alias NAME        the model id clients use (default: the file name)\n"
            "      --max-body BYTES    largest request body (default 1M)\n"
            "      --timeout SECONDS   deadline of one request (default 600)\n"
            "      --grace SECONDS     time in-flight requests get after SIGTERM (default 10)\n"
            "      --ready-file F      write host:port to F once listening (for scripts)\n");
    fputs(cli_draft_usage(), out);
}

int cmd_serve(int argc, char **argv)
{
    const char *cmd = "serve";
    ellm_server_config cfg = {0};
    cfg.port = 8080;
    cfg.parallel = 4;
    cfg.n_ctx = 0;
    cfg.queue_max = -1;
    cfg.shutdown_grace_s = 10;
    char *key_from_file = NULL;
    long v;
    double d;
    uint64_t size;
    bool ctx_given = false;
    cli_draft_options draft;
    cli_draft_defaults(&draft);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = NULL;
        cli_option_result taken = cli_draft_option(cmd, argc, argv, &i, &draft);
        if (taken == CLI_OPTION_BAD) {
            free(key_from_file);
            return EXIT_USAGE;
        }
        if (taken == CLI_OPTION_TAKEN)
            continue;
#define VALUE()                                                                \
    if (!(val = cli_option_value(cmd, argc, argv, &i))) {                      \
        free(key_from_file);                                                   \
        return EXIT_USAGE;                                                     \
    }
#define INT_OPT(field, lo, hi)                                                 \
    VALUE() if (!cli_parse_int(cmd, a, val, lo, hi, &v)) return EXIT_USAGE;    \
    cfg.field = (int)v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            serve_usage(stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            VALUE() cfg.model_path = val;
        } else if (!strcmp(a, "--host")) {
            VALUE() cfg.host = val;
        } else if (!strcmp(a, "--port")) {
            INT_OPT(port, 0, 65535)
        } else if (!strcmp(a, "--parallel")) {
            INT_OPT(parallel, 1, 256)
        } else if (!strcmp(a, "--ctx")) {
            INT_OPT(n_ctx, 1, 1 << 20)
            ctx_given = true;
        } else if (!strcmp(a, "--batch")) {
            INT_OPT(n_batch, 1, 1 << 16)
        } else if (!strcmp(a, "--queue")) {
            INT_OPT(queue_max, 0, 100000)
        } else if (!strcmp(a, "--threads")) {
            INT_OPT(n_threads, 1, 1024)
        } else if (!strcmp(a, "--api-key")) {
            VALUE() cfg.api_key = val;
        } else if (!strcmp(a, "--api-key-file")) {
            VALUE() free(key_from_file);
            char why[512];
            if (!(key_from_file = ellm_server_read_api_key_file(val, why, sizeof why))) {
                cli_error(cmd, "%s", why);
                return 1;
            }
            cfg.api_key = key_from_file;
        } else if (!strcmp(a, "--cors")) {
            VALUE() cfg.cors_origins = val;
        } else if (!strcmp(a, "--allowed-hosts")) {
            VALUE() cfg.allowed_hosts = val;
        } else if (!strcmp(a, "--alias")) {
            VALUE() cfg.model_id = val;
        } else if (!strcmp(a, "--max-body")) {
            VALUE() if (!cli_parse_size(cmd, a, val, &size)) return EXIT_USAGE;
            if (size == 0 || size > (1ull << 30)) {
                cli_error(cmd, "--max-body must be between 1 byte and 1G");
                return EXIT_USAGE;
            }
            cfg.max_body_bytes = (size_t)size;
        } else if (!strcmp(a, "--timeout")) {
            VALUE() if (!cli_parse_float(cmd, a, val, 0.001, 86400 * 7, &d)) return EXIT_USAGE;
            cfg.request_timeout_s = d;
        } else if (!strcmp(a, "--grace")) {
            VALUE() if (!cli_parse_float(cmd, a, val, 0, 3600, &d)) return EXIT_USAGE;
            cfg.shutdown_grace_s = d;
        } else if (!strcmp(a, "--ready-file")) {
            VALUE() cfg.ready_file = val;
        } else {
            cli_error(cmd, "unknown option '%s' (see edgellm serve --help)", a);
            free(key_from_file);
            return EXIT_USAGE;
        }
#undef INT_OPT
#undef VALUE
    }
    if (!cfg.model_path) {
        cli_error(cmd, "no model given: edgellm serve -m MODEL.gguf");
        free(key_from_file);
        return EXIT_USAGE;
    }
    char why[160];
    if (cfg.api_key && cfg.api_key != key_from_file &&
        !ellm_server_check_api_key(cfg.api_key, strlen(cfg.api_key), why, sizeof why)) {
        cli_error(cmd, "--api-key %s", why);
        free(key_from_file);
        return EXIT_USAGE;
    }
    if (!ctx_given)
        cfg.n_ctx = -4096; /* the model's context, capped: slots x context must fit in memory */
    /* -m takes a file or an installed NAME[:VERSION] from the model store. */
    char resolved[4096];
    if (store_resolve_model(cfg.model_path, resolved, sizeof resolved) != EDGELLM_OK) {
        cli_error(cmd, "%s", edgellm_last_error());
        free(key_from_file);
        return 1;
    }
    cfg.model_path = resolved;
    char draft_resolved[4096];
    if (cli_draft_check(cmd, &draft) != 0) {
        free(key_from_file);
        return EXIT_USAGE;
    }
    if (draft.draft_path &&
        store_resolve_model(draft.draft_path, draft_resolved, sizeof draft_resolved) != EDGELLM_OK) {
        cli_error(cmd, "--draft: %s", edgellm_last_error());
        free(key_from_file);
        return 1;
    }
    cfg.draft_path = draft.draft_path ? draft_resolved : NULL;
    cfg.lookup_ngram = (int)draft.lookup;
    cfg.draft_max = (int)draft.draft_max;
    cfg.draft_min = (int)draft.draft_min;
    int rc = ellm_server_run(&cfg);
    free(key_from_file);
    return rc;
}
