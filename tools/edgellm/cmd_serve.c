/* edgellm serve: the OpenAI-compatible HTTP server. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_draft.h"
#include "cli_util.h"
#include "commands.h"
#include "core/mapped_file.h"
#include "machine.h"
#include "serve_options.h"
#include "server/server.h"
#include "store/store.h"

static void serve_usage(FILE *out)
{
    fprintf(out,
            "usage: edgellm serve -m MODEL [options]\n"
            "       edgellm serve --web [-m MODEL] [options]\n"
            "  Serves the model over the OpenAI API: /v1/chat/completions, /v1/completions,\n"
            "  /v1/embeddings, /v1/models, /tokenize, /detokenize, /health, /metrics, and a chat\n"
            "  page at /.\n"
            "  -m, --model FILE        GGUF model (or a name installed with `edgellm models`)\n"
            "      --host ADDR         address to bind (default 127.0.0.1: this machine only)\n"
            "      --port N            port (default 8080; 0 picks a free one)\n"
            "      --parallel N        sequences decoded together (default 4)\n"
            "      --ctx N             context per sequence (default: the model's, up to 4096)\n"
            "      --batch N           tokens per forward pass (default 256)\n"
            "      --queue N           requests that may wait for a slot before 429 (default 4 x "
            "parallel)\n"
            "      --threads N         CPU threads (default: all)\n"
            "      --kv-type f16|f32|q8_0  KV cache precision of every slot (default f16)\n"
            "      --kernels SET       force a kernel set (default: the CPU's fastest, or\n"
            "                          $EDGELLM_KERNELS)\n"
            "      --api-key KEY       require 'Authorization: Bearer KEY' (all but /health)\n"
            "      --api-key-file F    the same, with the key read from a file (printable ASCII,\n"
            "                          at most 1024 bytes, one trailing newline allowed)\n"
            "      --cors ORIGINS      allow these browser origins (comma-separated, or *)\n"
            "      --allowed-hosts H   Host names clients may use besides localhost and the bound\n"
            "                          address (comma-separated, or *); others get 421\n"
            "      --alias NAME        the model id clients use (default: the file name)\n"
            "      --max-body BYTES    largest request body (default 1M)\n"
            "      --timeout SECONDS   deadline of one request (default 600)\n"
            "      --body-timeout S    a request that stalls while it arrives (headers or body\n"
            "                          silent for S seconds, or a body not complete S seconds\n"
            "                          after its headers) is cut (default 30; an idle keep-alive\n"
            "                          connection is kept 300 s)\n"
            "      --grace SECONDS     time in-flight requests get after SIGTERM (default 10)\n"
            "      --ready-file F      write host:port to F once listening (for scripts)\n"
            "      --web               the page at / runs a model in the browser (WebAssembly,\n"
            "                          threads: served cross-origin isolated) instead of chatting\n"
            "                          through this server; needs the browser build (make web);\n"
            "                          without -m the server has no API model, only the page\n"
            "      --web-root DIR      where the browser build is (default: the installed one,\n"
            "                          else web/dist of the source tree); implies --web\n");
    fputs(cli_draft_usage(), out);
}

/* One option of serve's (also the gateway's, for its edge model and endpoint). */
int serve_option(const char *cmd, serve_options *o, int argc, char **argv, int *i)
{
    ellm_server_config *cfg = o->cfg;
    const char *a = argv[*i];
    const char *val = NULL;
    long v;
    double d;
    uint64_t size;
    cli_option_result drafted = cli_draft_option(cmd, argc, argv, i, &o->draft);
    if (drafted == CLI_OPTION_BAD)
        return SERVE_OPTION_USAGE;
    if (drafted == CLI_OPTION_TAKEN)
        return SERVE_OPTION_TAKEN;
#define VALUE()                                                                                    \
    if (!(val = cli_option_value(cmd, argc, argv, i)))                                             \
        return SERVE_OPTION_USAGE;
#define INT_OPT(field, lo, hi)                                                                     \
    VALUE() if (!cli_parse_int(cmd, a, val, lo, hi, &v)) return SERVE_OPTION_USAGE;                \
    cfg->field = (int)v;
    if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
        VALUE() cfg->model_path = val;
    } else if (!strcmp(a, "--host")) {
        VALUE() cfg->host = val;
    } else if (!strcmp(a, "--port")) {
        INT_OPT(port, 0, 65535)
    } else if (!strcmp(a, "--parallel")) {
        INT_OPT(parallel, 1, 256)
    } else if (!strcmp(a, "--ctx")) {
        INT_OPT(n_ctx, 1, 1 << 20)
        o->ctx_given = true;
    } else if (!strcmp(a, "--batch")) {
        INT_OPT(n_batch, 1, 1 << 16)
    } else if (!strcmp(a, "--queue")) {
        INT_OPT(queue_max, 0, 100000)
    } else if (!strcmp(a, "--threads")) {
        INT_OPT(n_threads, 1, 1024)
    } else if (!strcmp(a, "--kv-type")) {
        VALUE() if (!cli_parse_kv_type(cmd, val, &cfg->kv_type)) return SERVE_OPTION_USAGE;
    } else if (!strcmp(a, "--kernels")) {
        VALUE() o->kernels = val;
    } else if (!strcmp(a, "--api-key")) {
        VALUE() cfg->api_key = val;
    } else if (!strcmp(a, "--api-key-file")) {
        VALUE() free(o->key_from_file);
        char why[512];
        if (!(o->key_from_file = ellm_server_read_api_key_file(val, why, sizeof why))) {
            cli_error(cmd, "%s", why);
            return SERVE_OPTION_FAILED;
        }
        cfg->api_key = o->key_from_file;
    } else if (!strcmp(a, "--cors")) {
        VALUE() cfg->cors_origins = val;
    } else if (!strcmp(a, "--allowed-hosts")) {
        VALUE() cfg->allowed_hosts = val;
    } else if (!strcmp(a, "--alias")) {
        VALUE() cfg->model_id = val;
    } else if (!strcmp(a, "--max-body")) {
        VALUE() if (!cli_parse_size(cmd, a, val, &size)) return SERVE_OPTION_USAGE;
        if (size == 0 || size > (1ull << 30)) {
            cli_error(cmd, "--max-body must be between 1 byte and 1G");
            return SERVE_OPTION_USAGE;
        }
        cfg->max_body_bytes = (size_t)size;
    } else if (!strcmp(a, "--timeout")) {
        VALUE() if (!cli_parse_float(cmd, a, val, 0.001, 86400 * 7, &d)) return SERVE_OPTION_USAGE;
        cfg->request_timeout_s = d;
    } else if (!strcmp(a, "--body-timeout")) {
        INT_OPT(body_timeout_s, 1, 86400)
    } else if (!strcmp(a, "--grace")) {
        VALUE() if (!cli_parse_float(cmd, a, val, 0, 3600, &d)) return SERVE_OPTION_USAGE;
        cfg->shutdown_grace_s = d;
    } else if (!strcmp(a, "--ready-file")) {
        VALUE() cfg->ready_file = val;
    } else {
        return SERVE_OPTION_UNKNOWN;
    }
#undef INT_OPT
#undef VALUE
    return SERVE_OPTION_TAKEN;
}

void serve_options_init(serve_options *o, ellm_server_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->port = 8080;
    cfg->parallel = 4;
    cfg->queue_max = -1;
    cfg->shutdown_grace_s = 10;
    o->cfg = cfg;
    o->key_from_file = NULL;
    o->ctx_given = false;
    o->model_optional = false;
    o->kernels = NULL;
    cli_draft_defaults(&o->draft);
}

int serve_options_finish(const char *cmd, serve_options *o, char *resolved, size_t cap)
{
    ellm_server_config *cfg = o->cfg;
    if (!cfg->model_path && !o->model_optional) {
        cli_error(cmd, "no model given: edgellm %s -m MODEL.gguf", cmd);
        return EXIT_USAGE;
    }
    char why[160];
    if (cfg->api_key && cfg->api_key != o->key_from_file &&
        !ellm_server_check_api_key(cfg->api_key, strlen(cfg->api_key), why, sizeof why)) {
        cli_error(cmd, "--api-key %s", why);
        return EXIT_USAGE;
    }
    if (!cli_use_kernels(cmd, o->kernels))
        return EXIT_USAGE;
    if (!o->ctx_given)
        cfg->n_ctx = -4096; /* the model's context, capped: slots x context must fit in memory */
    /* -m takes a file or an installed NAME[:VERSION] from the model store. */
    if (cfg->model_path && ellm_store_resolve_model(cfg->model_path, resolved, cap) != EDGELLM_OK) {
        cli_error(cmd, "%s", edgellm_last_error());
        return 1;
    }
    if (cfg->model_path)
        cfg->model_path = resolved;
    if (cli_draft_check(cmd, &o->draft) != 0)
        return EXIT_USAGE;
    if (!cfg->model_path && (o->draft.draft_path || o->draft.lookup)) {
        cli_error(cmd, "--draft and --lookup speed up the server's model: give it with -m MODEL");
        return EXIT_USAGE;
    }
    if (o->draft.draft_path && ellm_store_resolve_model(o->draft.draft_path, o->draft_resolved,
                                                        sizeof o->draft_resolved) != EDGELLM_OK) {
        cli_error(cmd, "--draft: %s", edgellm_last_error());
        return 1;
    }
    cfg->draft_path = o->draft.draft_path ? o->draft_resolved : NULL;
    cfg->pages = machine_page_advice();
    cfg->lookup_ngram = (int)o->draft.lookup;
    cfg->draft_max = (int)o->draft.draft_max;
    cfg->draft_min = (int)o->draft.draft_min;
    return 0;
}

#ifndef EDGELLM_WEB_DIRS
#define EDGELLM_WEB_DIRS ""
#endif

static bool holds_web_build(const char *dir)
{
    char path[4096];
    static const char *const needed[] = {"edgellm.mjs", "edgellm-worker.js", "edgellm-st.wasm"};
    for (size_t i = 0; i < sizeof needed / sizeof needed[0]; i++) {
        FILE *f = (size_t)snprintf(path, sizeof path, "%s/%s", dir, needed[i]) < sizeof path
                      ? ellm_fopen_regular(path)
                      : NULL;
        if (!f)
            return false;
        fclose(f);
    }
    return true;
}

/* The folder of the browser build for --web: the one given, else the first of EDGELLM_WEB_DIRS
 * that holds it. */
static int find_web_root(const char *cmd, const char *given, char *out, size_t cap)
{
    if (given) {
        if (!holds_web_build(given)) {
            cli_error(cmd,
                      "--web-root '%s' does not hold the browser build (edgellm.mjs, "
                      "edgellm-worker.js, edgellm-st.wasm): run `make web` and pass its "
                      "web/dist",
                      given);
            return 1;
        }
        snprintf(out, cap, "%s", given);
        return 0;
    }
    const char *dirs = EDGELLM_WEB_DIRS;
    while (*dirs) {
        size_t n = strcspn(dirs, ":");
        if (n > 0 && n < cap) {
            memcpy(out, dirs, n);
            out[n] = '\0';
            if (holds_web_build(out))
                return 0;
        }
        dirs += n + (dirs[n] == ':');
    }
    cli_error(cmd,
              "--web needs the browser build, which is not in %s: run `make web` in the "
              "source tree, or pass --web-root DIR",
              *EDGELLM_WEB_DIRS ? EDGELLM_WEB_DIRS : "any known place");
    return 1;
}

int cmd_serve(int argc, char **argv)
{
    const char *cmd = "serve";
    ellm_server_config cfg;
    serve_options o;
    serve_options_init(&o, &cfg);
    int rc = 0;
    bool web = false;
    const char *web_root = NULL;
    char web_dir[4096];
    for (int i = 1; i < argc && rc == 0; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            serve_usage(stdout);
            free(o.key_from_file);
            return 0;
        }
        if (!strcmp(argv[i], "--web")) {
            web = true;
            continue;
        }
        if (!strcmp(argv[i], "--web-root")) {
            if (!(web_root = cli_option_value(cmd, argc, argv, &i)))
                rc = EXIT_USAGE;
            web = true;
            continue;
        }
        int r = serve_option(cmd, &o, argc, argv, &i);
        if (r == SERVE_OPTION_UNKNOWN) {
            cli_error(cmd, "unknown option '%s' (see edgellm serve --help)", argv[i]);
            rc = EXIT_USAGE;
        } else if (r != SERVE_OPTION_TAKEN) {
            rc = r == SERVE_OPTION_USAGE ? EXIT_USAGE : 1;
        }
    }
    char resolved[4096];
    o.model_optional = web;
    if (rc == 0)
        rc = serve_options_finish(cmd, &o, resolved, sizeof resolved);
    if (rc == 0 && web && (rc = find_web_root(cmd, web_root, web_dir, sizeof web_dir)) == 0)
        cfg.web_root = web_dir;
    if (rc == 0)
        rc = ellm_server_run(&cfg);
    free(o.key_from_file);
    return rc;
}
