/* `edgellm run`: generate a continuation of a prompt, streamed to stdout, with a timing summary
 * on stderr. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli_draft.h"
#include "cli_util.h"
#include "commands.h"
#include "edgellm.h"
#include "structured/structured.h"

#define MAX_STOPS 16

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: edgellm run -m MODEL (-p PROMPT | -f FILE) [options]\n"
        "  -m, --model PATH        GGUF model file\n"
        "  -p, --prompt TEXT       prompt to continue (not echoed)\n"
        "  -f, --file PATH         read the prompt from a file\n"
        "  -n, --n-predict N       tokens to generate (default 128; -1 = until EOS)\n"
        "  -t, --threads N         threads (default: all CPUs)\n"
        "      --ctx N             context length (default: the model's)\n"
        "      --temp T            temperature (default 0.8; 0 = greedy)\n"
        "      --top-k K           (default 40; 0 = off)\n"
        "      --top-p P           (default 0.95; 1 = off)\n"
        "      --min-p P           (default 0.05; 0 = off)\n"
        "      --repeat-penalty R  (default 1 = off)\n"
        "      --repeat-last-n N   window for the penalties (default 64)\n"
        "      --presence-penalty P, --frequency-penalty P (default 0)\n"
        "      --seed S            random seed (default: random, printed)\n"
        "      --stop TEXT         stop when TEXT is generated (repeatable)\n"
        "      --kv-type f16|f32|q8_0  KV cache precision (default f16; q8_0 about halves it)\n"
        "      --kernels SET       force a kernel set (avx512, avx2vnni, avx2, neon-dotprod,\n"
        "                          neon, scalar; default: the CPU's fastest, or $EDGELLM_KERNELS)\n"
        "      --special           recognise control tokens written in the prompt\n"
        "      --grammar-file F    only generate text the GBNF grammar in F accepts\n"
        "      --json-schema F     only generate JSON that the JSON Schema in F describes\n"
        "      --json              only generate a JSON object\n"
        "  -v, --verbose           also report speculative acceptance and tokens per pass\n"
        "%s",
        cli_draft_usage());
}

typedef struct stream_state {
    int32_t n_tokens;
} stream_state;

static int on_token(void *user, edgellm_token token, const char *text, size_t len)
{
    stream_state *s = user;
    (void)token;
    if (len > 0) {
        fwrite(text, 1, len, stdout);
        fflush(stdout);
    }
    s->n_tokens++;
    return 0;
}

/* Bytes of the longest text one token stands for: its piece, or for a control token written in
 * the prompt (--special) its text in the vocabulary. */
static size_t longest_token_bytes(const edgellm_model *model)
{
    size_t longest = 1;
    char text[256];
    for (int32_t id = 0; id < edgellm_n_vocab(model); id++) {
        size_t piece = 0, stored = 0;
        edgellm_token_to_piece(model, id, text, sizeof text, &piece);
        edgellm_token_text(model, id, text, sizeof text, &stored);
        size_t len = piece > stored ? piece : stored;
        longest = len > longest ? len : longest;
    }
    return longest;
}

/* A prompt file that cannot fit the context is refused before it is read and tokenized whole
 * (a 2 GB file took minutes and its size in memory to fail). No token stands for more than the
 * longest token's bytes, and normalization (NFC) shortens a text by at most a factor of three
 * (decomposed Hangul jamo, three code points a syllable), so beyond n_ctx x longest x 4 bytes the
 * prompt is certainly too long; only that much is read, which also bounds an endless stdin. */
static char *read_prompt_file(const char *cmd, const char *path, const edgellm_model *model,
                              int32_t n_ctx)
{
    size_t longest = longest_token_bytes(model);
    size_t limit = (size_t)n_ctx * longest * 4, len = 0;
    bool longer = false;
    char *text = cli_read_file_prefix(path, limit, &len, &longer);
    if (!text) {
        cli_error(cmd, "cannot read prompt file: %s", edgellm_last_error());
        return NULL;
    }
    if (longer) {
        struct stat sb;
        char size[64] = "";
        if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode))
            snprintf(size, sizeof size, " (%lld bytes)", (long long)sb.st_size);
        cli_error(cmd,
                  "the prompt file '%s' is longer than %zu bytes%s: more than the %d tokens the "
                  "context holds (no token of this model is longer than %zu bytes); shorten it "
                  "to about %d tokens or raise --ctx",
                  path, limit, size, n_ctx, longest, n_ctx);
        free(text);
        return NULL;
    }
    return text;
}

int cmd_run(int argc, char **argv)
{
    const char *cmd = "run";
    const char *prompt = NULL, *prompt_file = NULL;
    const char *stops[MAX_STOPS];
    int n_stops = 0;
    cli_generation_options g;
    cli_generation_defaults(&g, 128);
    bool special = false, verbose = false;
    edgellm_kv_type kv = EDGELLM_KV_F16;
    const char *kernels = NULL;
    const char *grammar_file = NULL, *schema_file = NULL;
    bool json_object = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = NULL;
#define VALUE()                                                                                    \
    if (!(v = cli_option_value(cmd, argc, argv, &i)))                                              \
        return EXIT_USAGE;
        cli_option_result shared = cli_generation_option(cmd, argc, argv, &i, &g);
        if (shared == CLI_OPTION_BAD)
            return EXIT_USAGE;
        if (shared == CLI_OPTION_TAKEN)
            continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            VALUE() prompt = v;
        } else if (!strcmp(a, "-f") || !strcmp(a, "--file")) {
            VALUE() prompt_file = v;
        } else if (!strcmp(a, "--stop")) {
            VALUE() if (n_stops == MAX_STOPS)
            {
                cli_error(cmd, "at most %d --stop strings", MAX_STOPS);
                return EXIT_USAGE;
            }
            if (!*v) {
                cli_error(cmd, "--stop needs a non-empty string");
                return EXIT_USAGE;
            }
            stops[n_stops++] = v;
        } else if (!strcmp(a, "--kv-type")) {
            VALUE() if (!cli_parse_kv_type(cmd, v, &kv)) return EXIT_USAGE;
        } else if (!strcmp(a, "--kernels")) {
            VALUE() kernels = v;
        } else if (!strcmp(a, "--special")) {
            special = true;
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            verbose = true;
        } else if (!strcmp(a, "--grammar-file")) {
            VALUE() grammar_file = v;
        } else if (!strcmp(a, "--json-schema")) {
            VALUE() schema_file = v;
        } else if (!strcmp(a, "--json")) {
            json_object = true;
        } else {
            cli_error(cmd, "unknown option '%s' (see 'edgellm run --help')", a);
            return EXIT_USAGE;
        }
#undef VALUE
    }
    if (!g.model_path) {
        cli_error(cmd, "no model given: pass -m MODEL.gguf (see 'edgellm run --help')");
        return EXIT_USAGE;
    }
    if (!prompt && !prompt_file) {
        cli_error(cmd, "no prompt given: pass -p TEXT or -f FILE");
        return EXIT_USAGE;
    }
    if (!cli_use_kernels(cmd, kernels))
        return EXIT_USAGE;
    if (prompt && prompt_file) {
        cli_error(cmd, "give either -p or -f, not both");
        return EXIT_USAGE;
    }
    if ((grammar_file != NULL) + (schema_file != NULL) + json_object > 1) {
        cli_error(cmd, "give only one of --grammar-file, --json-schema and --json");
        return EXIT_USAGE;
    }
    /* The constraint is read and converted before the model loads: a bad one fails fast. */
    char *grammar_text = NULL;
    if (grammar_file || schema_file) {
        const char *path = grammar_file ? grammar_file : schema_file;
        size_t len = 0;
        char *text = cli_read_file(path, &len);
        if (!text) {
            cli_error(cmd, "cannot read %s: %s", grammar_file ? "grammar file" : "schema file",
                      edgellm_last_error());
            return 1;
        }
        if (schema_file) {
            char err[512];
            grammar_text = ellm_structured_schema_text_to_grammar(text, strlen(text), err,
                                                                  sizeof err);
            free(text);
            if (!grammar_text) {
                cli_error(cmd, "%s: %s", schema_file, err);
                return 1;
            }
        } else {
            grammar_text = text;
        }
    } else if (json_object) {
        grammar_text = strdup(ellm_structured_json_object_grammar());
        if (!grammar_text) {
            cli_error(cmd, "out of memory");
            return 1;
        }
    }
    /* The prompt file is read once the context's size is known: see read_prompt_file. */
    char *file_text = NULL;
    if (!g.seed_given)
        g.sampling.seed = cli_time_seed();

    double t0 = cli_now_seconds();
    edgellm_model *model = cli_load_model(cmd, g.model_path, NULL);
    if (!model) {
        free(file_text);
        free(grammar_text);
        return 1;
    }
    edgellm_grammar *grammar = NULL;
    if (grammar_text && edgellm_grammar_compile(model, grammar_text, strlen(grammar_text), NULL,
                                                &grammar) != EDGELLM_OK) {
        cli_error(cmd, "%s%s%s", grammar_file ? grammar_file : "", grammar_file ? ": " : "",
                  edgellm_last_error());
        edgellm_model_free(model);
        free(file_text);
        free(grammar_text);
        return 1;
    }
    double load_s = cli_now_seconds() - t0;
    edgellm_context_params cp = edgellm_context_default_params();
    cp.n_ctx = (int32_t)g.ctx_len;
    cp.n_threads = (int32_t)g.threads;
    cp.kv_type = kv;
    edgellm_context *ctx = NULL;
    int rc = 0;
    if (edgellm_context_create(model, &cp, &ctx) != EDGELLM_OK) {
        cli_error(cmd, "%s", edgellm_last_error());
        rc = 1;
    }
    if (rc == 0 && prompt_file) {
        file_text = read_prompt_file(cmd, prompt_file, model, edgellm_context_n_ctx(ctx));
        prompt = file_text;
        rc = file_text ? 0 : 1;
    }
    edgellm_generate_result res = {0};
    edgellm_generate_params gp = edgellm_generate_default_params();
    cli_draft draft = {0};
    if (rc == 0)
        rc = cli_draft_open(cmd, &g.draft, model, &cp, &draft, &gp);
    if (rc == 0) {
        stream_state ss = {0};
        gp.max_tokens = g.n_predict < 0 ? 0 : (int32_t)g.n_predict;
        gp.sampling = g.sampling;
        gp.stop_strings = stops;
        gp.n_stop_strings = n_stops;
        gp.parse_special = special;
        gp.on_token = on_token;
        gp.user_data = &ss;
        gp.grammar = grammar;
        if (g.n_predict == 0) {
            rc = 0;
        } else if (edgellm_generate(ctx, prompt, &gp, &res) != EDGELLM_OK) {
            fflush(stdout);
            cli_error(cmd, "%s", edgellm_last_error());
            rc = 1;
        }
        fputc('\n', stdout);
        fflush(stdout);
    }
    if (rc == 0) {
        char mem[32];
        static const char *reasons[] = {"none",
                                        "end of sequence",
                                        "token limit",
                                        "stop string",
                                        "context full",
                                        "stopped",
                                        "grammar complete",
                                        "no token can continue the grammar"};
        double prefill_tps = res.prefill_seconds > 0
                                 ? (res.n_prompt_tokens - res.n_cached_tokens) / res.prefill_seconds
                                 : 0;
        double decode_tps = res.n_generated > 1 && res.decode_seconds > 0
                                ? (res.n_generated - 1) / res.decode_seconds
                                : 0;
        fprintf(stderr,
                "\n--- edgellm run: %s, %d threads, kernels %s, seed %llu\n"
                "load time:        %.1f ms\n"
                "prompt:           %d tokens, prefill %.1f tokens/s\n"
                "time to first token: %.1f ms\n"
                "generated:        %d tokens, decode %.1f tokens/s (stop: %s)\n"
                "peak memory:      %s\n",
                g.model_path, cp.n_threads > 0 ? cp.n_threads : (int)sysconf(_SC_NPROCESSORS_ONLN),
                edgellm_kernel_set(), (unsigned long long)g.sampling.seed, load_s * 1000.0,
                res.n_prompt_tokens, prefill_tps, res.ttft_seconds * 1000.0, res.n_generated,
                decode_tps, reasons[res.stop_reason],
                cli_format_bytes(cli_peak_rss_bytes(), mem, sizeof mem));
        if (verbose)
            cli_draft_report(stderr, "", &res);
        if (grammar && res.n_generated > 0) {
            /* Per generated token, against the whole time per token (prefill excluded). */
            double per_token = (res.ttft_seconds - res.prefill_seconds + res.decode_seconds) /
                               res.n_generated;
            double mask = res.grammar_seconds / res.n_generated;
            fprintf(stderr, "grammar:          %.3f ms/token of %.3f ms/token (%.1f %%)\n",
                    mask * 1000.0, per_token * 1000.0,
                    per_token > 0 ? 100.0 * mask / per_token : 0);
        }
    }
    if (rc == 0 && res.stop_reason == EDGELLM_STOP_GRAMMAR_STUCK) {
        cli_error(cmd, "no token of this model's vocabulary can continue the grammar's output; "
                       "the output is incomplete");
        rc = 1;
    }
    cli_draft_close(&draft);
    edgellm_context_free(ctx);
    edgellm_grammar_free(grammar);
    edgellm_model_free(model);
    free(file_text);
    free(grammar_text);
    return rc;
}
