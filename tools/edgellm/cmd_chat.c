/* `edgellm chat`: an interactive multi-turn conversation on stdin/stdout in the model's chat
 * format. Each turn renders the whole conversation with the chat template and lets generation
 * reuse the KV-cache prefix it shares with what is cached (the previous turns), so only the new
 * text is evaluated. Hidden test modes: --format-only renders a JSON conversation from stdin with
 * a given family; --detect-template FILE prints the family a template file is recognised as. */
#define _POSIX_C_SOURCE 200809L
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "chat/chat.h"
#include "cli_draft.h"
#include "cli_util.h"
#include "commands.h"
#include "edgellm.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: edgellm chat -m MODEL [options]\n"
            "Type a message (one line) and press Enter; the reply streams back. A line that is\n"
            "a single word starting with '/' is a command: /reset starts a new conversation,\n"
            "/exit (or end of input, Ctrl-D) quits.\n"
            "  -m, --model PATH        GGUF model file (or an installed model name)\n"
            "      --system TEXT       system message that opens the conversation\n"
            "  -n, --n-predict N       most tokens per reply (default 512; -1 = until the turn\n"
            "                          ends)\n"
            "  -t, --threads N         threads (default: all CPUs)\n"
            "      --ctx N             context length (default: the model's)\n"
            "      --temp T            temperature (default 0.8; 0 = greedy)\n"
            "      --top-k K           (default 40; 0 = off)\n"
            "      --top-p P           (default 0.95; 1 = off)\n"
            "      --min-p P, --repeat-penalty R, --repeat-last-n N, --presence-penalty P,\n"
            "      --frequency-penalty P   as in edgellm run\n"
            "      --seed S            random seed (default: random)\n"
            "      --template-family F use chat format F instead of the detected one\n"
            "                          (chatml, llama2, llama3, llama3.1, llama3.2, gemma, phi3,\n"
            "                          mistral, mistral-v3, smollm, qwen2, qwen2.5, qwen3,\n"
            "                          zephyr)\n"
            "  -v, --verbose           a line per turn on stderr: prompt tokens, cached, speed\n"
            "%s",
            cli_draft_usage());
}

/* ---- the conversation ------------------------------------------------------------------- */

typedef struct history {
    ellm_chat_message *msgs;
    size_t n, cap;
    size_t n_keep; /* the system message survives /reset */
} history;

static bool history_push(history *h, const char *role, const char *content, size_t len)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 16;
        ellm_chat_message *m = realloc(h->msgs, cap * sizeof *m);
        if (!m)
            return false;
        h->msgs = m;
        h->cap = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy)
        return false;
    memcpy(copy, content, len);
    copy[len] = '\0';
    h->msgs[h->n].role = role;
    h->msgs[h->n].content = copy;
    h->n++;
    return true;
}

static void history_pop_to(history *h, size_t n)
{
    while (h->n > n)
        free((char *)h->msgs[--h->n].content);
}

/* The reply as it streams: echoed to stdout and kept for the history. */
typedef struct reply {
    char *text;
    size_t len, cap;
    bool failed;
} reply;

static int on_token(void *user, edgellm_token token, const char *text, size_t len)
{
    reply *r = user;
    (void)token;
    if (len == 0)
        return 0;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    if (r->len + len + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 256;
        while (cap < r->len + len + 1)
            cap *= 2;
        char *t = realloc(r->text, cap);
        if (!t) {
            r->failed = true;
            return 1;
        }
        r->text = t;
        r->cap = cap;
    }
    memcpy(r->text + r->len, text, len);
    r->len += len;
    return 0;
}

typedef struct session {
    const char *cmd;
    edgellm_model *model;
    edgellm_context *ctx;
    ellm_chat_family family;
    char bos[256], eos[256];
    edgellm_generate_params gp;
    bool verbose;
    int turn;
} session;

static void token_text(const edgellm_model *m, edgellm_token t, char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = '\0';
    if (t < 0 || edgellm_token_text(m, t, buf, cap - 1, &len) != EDGELLM_OK)
        buf[0] = '\0';
    else
        buf[len] = '\0';
}

/* One turn: the conversation so far, rendered and continued. Returns false only on failures
 * that end the session (out of memory, a failed evaluation). */
static bool chat_turn(session *s, history *h)
{
    ellm_chat_span *spans = NULL;
    size_t n_spans = 0;
    char *prompt = ellm_chat_format_spans(s->family, h->msgs, h->n, true, s->bos, s->eos, &spans,
                                          &n_spans);
    /* The template's markup becomes control tokens, what was typed stays text; BOS comes from
     * the template's text where it writes one, else from the model's default. */
    edgellm_token *ids = NULL;
    int32_t n_ids = 0;
    if (!prompt ||
        ellm_chat_tokenize(s->model, prompt, spans, n_spans, true, &ids, &n_ids) != EDGELLM_OK) {
        cli_error(s->cmd, "%s", edgellm_last_error());
        free(prompt);
        free(spans);
        history_pop_to(h, h->n - 1);
        return true;
    }
    free(prompt);
    free(spans);
    edgellm_generate_params gp = s->gp;
    reply r = {0};
    gp.user_data = &r;
    edgellm_generate_result res = {0};
    edgellm_status st = edgellm_generate_tokens(s->ctx, ids, n_ids, &gp, &res);
    free(ids);
    fputc('\n', stdout);
    fflush(stdout);
    s->turn++;
    if (st == EDGELLM_ERR_CONTEXT_FULL) {
        fprintf(stderr,
                "edgellm %s: the conversation no longer fits in the context (%d tokens); type "
                "/reset to start a new one (or restart with a larger --ctx)\n",
                s->cmd, edgellm_context_n_ctx(s->ctx));
        history_pop_to(h, h->n - 1);
        free(r.text);
        return true;
    }
    if (st != EDGELLM_OK || r.failed) {
        cli_error(s->cmd, "%s", r.failed ? "no memory for the reply" : edgellm_last_error());
        free(r.text);
        return false;
    }
    bool ok = history_push(h, "assistant", r.text ? r.text : "", r.len);
    free(r.text);
    if (!ok) {
        cli_error(s->cmd, "no memory for the conversation");
        return false;
    }
    if (res.stop_reason == EDGELLM_STOP_CONTEXT_FULL)
        fprintf(stderr,
                "edgellm %s: the context is full (%d tokens) and the reply was cut off; type "
                "/reset to start a new conversation\n",
                s->cmd, edgellm_context_n_ctx(s->ctx));
    if (s->verbose) {
        static const char *reasons[] = {"none",        "end of turn",  "token limit",
                                        "stop string", "context full", "stopped"};
        int32_t evaluated = res.n_prompt_tokens - res.n_cached_tokens;
        fprintf(stderr,
                "[chat] turn %d: prompt %d tokens, %d cached, %d evaluated (%.1f tokens/s); "
                "reply %d tokens (%.1f tokens/s, stop: %s); context %d/%d\n",
                s->turn, res.n_prompt_tokens, res.n_cached_tokens, evaluated,
                res.prefill_seconds > 0 ? evaluated / res.prefill_seconds : 0.0, res.n_generated,
                res.n_generated > 1 && res.decode_seconds > 0
                    ? (res.n_generated - 1) / res.decode_seconds
                    : 0.0,
                reasons[res.stop_reason], edgellm_context_n_past(s->ctx),
                edgellm_context_n_ctx(s->ctx));
        if (s->gp.draft || s->gp.lookup_ngram > 0)
            cli_draft_report(stderr, "[chat] ", &res);
    }
    return true;
}

static int chat_loop(session *s, const char *system)
{
    history h = {0};
    int rc = 0;
    if (system && !history_push(&h, "system", system, strlen(system))) {
        cli_error(s->cmd, "no memory for the conversation");
        return 1;
    }
    h.n_keep = h.n;
    bool interactive = isatty(STDIN_FILENO);
    char *line = NULL;
    size_t line_cap = 0;
    for (;;) {
        if (interactive) {
            fputs("> ", stdout);
            fflush(stdout);
        }
        ssize_t got = getline(&line, &line_cap, stdin);
        if (got < 0) {
            if (interactive)
                fputc('\n', stdout); /* Ctrl-D leaves the cursor after the prompt */
            break;
        }
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r'))
            line[--got] = '\0';
        if (got == 0)
            continue;
        if (strcmp(line, "/exit") == 0 || strcmp(line, "/quit") == 0)
            break;
        if (strcmp(line, "/reset") == 0) {
            history_pop_to(&h, h.n_keep);
            edgellm_context_truncate(s->ctx, 0);
            fprintf(stderr, "[chat] conversation reset\n");
            continue;
        }
        if (line[0] == '/' && strchr(line, ' ') == NULL) {
            fprintf(stderr, "edgellm %s: unknown command '%s' (commands: /reset, /exit)\n", s->cmd,
                    line);
            continue;
        }
        if (!history_push(&h, "user", line, (size_t)got)) {
            cli_error(s->cmd, "no memory for the conversation");
            rc = 1;
            break;
        }
        if (!chat_turn(s, &h)) {
            rc = 1;
            break;
        }
    }
    free(line);
    history_pop_to(&h, 0);
    free(h.msgs);
    return rc;
}

/* ---- hidden test modes ------------------------------------------------------------------ */

/* stdin: {"messages": [...], "add_generation_prompt": bool, "bos_token": s, "eos_token": s,
 * "tools": [...]};
 * stdout: the rendered prompt, byte for byte. */
static int format_only(const char *cmd, const char *family_name)
{
    ellm_chat_family f;
    if (!family_name || !ellm_chat_family_from_name(family_name, &f)) {
        cli_error(cmd, "--format-only needs --template-family with a known family");
        return EXIT_USAGE;
    }
    size_t len = 0;
    char *text = cli_read_file("-", &len);
    if (!text) {
        cli_error(cmd, "cannot read the conversation from stdin");
        return 1;
    }
    ellm_chat_conversation conv;
    if (ellm_chat_conversation_parse(text, &conv) != EDGELLM_OK) {
        cli_error(cmd, "%s", edgellm_last_error());
        free(text);
        return 1;
    }
    json_t *root = json_loads(text, 0, NULL);
    free(text);
    bool gen = json_is_true(json_object_get(root, "add_generation_prompt"));
    const char *bos = json_string_value(json_object_get(root, "bos_token"));
    const char *eos = json_string_value(json_object_get(root, "eos_token"));
    char *out = ellm_chat_format_tools(f, conv.messages, conv.n, &conv.tools, gen, bos, eos, NULL,
                                       NULL);
    int rc = 0;
    if (out) {
        fwrite(out, 1, strlen(out), stdout);
        free(out);
    } else {
        cli_error(cmd, "%s", edgellm_last_error());
        rc = 1;
    }
    json_decref(root);
    ellm_chat_conversation_free(&conv);
    return rc;
}

static int detect_template(const char *cmd, const char *path)
{
    size_t len = 0;
    char *text = cli_read_file(path, &len);
    if (!text) {
        cli_error(cmd, "cannot read the template file: %s", edgellm_last_error());
        return 1;
    }
    bool recognised = false;
    ellm_chat_family fam = ellm_chat_detect(text, &recognised);
    printf("%s\n", recognised ? ellm_chat_family_name(fam) : "unrecognised");
    free(text);
    return 0;
}

/* ---- the command ------------------------------------------------------------------------ */

int cmd_chat(int argc, char **argv)
{
    const char *cmd = "chat";
    const char *system = NULL, *family_name = NULL, *detect_path = NULL;
    cli_generation_options g;
    cli_generation_defaults(&g, 512);
    bool verbose = false, format_mode = false;
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
        } else if (!strcmp(a, "--system")) {
            VALUE() system = v;
        } else if (!strcmp(a, "--template-family")) {
            VALUE() family_name = v;
            ellm_chat_family f;
            if (!ellm_chat_family_from_name(v, &f)) {
                cli_error(cmd, "unknown --template-family '%s' (see 'edgellm chat --help')", v);
                return EXIT_USAGE;
            }
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            verbose = true;
        } else if (!strcmp(a, "--format-only")) {
            format_mode = true;
        } else if (!strcmp(a, "--detect-template")) {
            VALUE() detect_path = v;
        } else {
            cli_error(cmd, "unknown option '%s' (see 'edgellm chat --help')", a);
            return EXIT_USAGE;
        }
#undef VALUE
    }
    if (format_mode)
        return format_only(cmd, family_name);
    if (detect_path)
        return detect_template(cmd, detect_path);
    if (g.n_predict == 0) {
        cli_error(cmd, "-n must be -1 or at least 1");
        return EXIT_USAGE;
    }
    if (!g.model_path) {
        cli_error(cmd, "no model given: pass -m MODEL.gguf (see 'edgellm chat --help')");
        return EXIT_USAGE;
    }
    if (!g.seed_given)
        g.sampling.seed = cli_time_seed();
    session s = {.cmd = cmd, .verbose = verbose};
    if (!(s.model = cli_load_model(cmd, g.model_path, NULL)))
        return 1;
    if (family_name) {
        ellm_chat_family_from_name(family_name, &s.family);
    } else {
        bool recognised = false;
        s.family = ellm_chat_detect_model(s.model, &recognised);
        if (!recognised) {
            size_t len = 0;
            bool has_template = edgellm_model_meta_string(s.model, "tokenizer.chat_template", NULL,
                                                          0, &len) == EDGELLM_ERR_BUFFER_TOO_SMALL;
            fprintf(stderr,
                    "edgellm %s: warning: %s; using the ChatML format (choose another with "
                    "--template-family)\n",
                    cmd,
                    has_template ? "the model's chat template is not one edgellm recognises"
                                 : "the model has no chat template");
        }
    }
    if (verbose)
        fprintf(stderr, "[chat] chat format: %s\n", ellm_chat_family_name(s.family));
    token_text(s.model, edgellm_token_bos(s.model), s.bos, sizeof s.bos);
    token_text(s.model, edgellm_token_eos(s.model), s.eos, sizeof s.eos);

    edgellm_context_params cp = edgellm_context_default_params();
    cp.n_ctx = (int32_t)g.ctx_len;
    cp.n_threads = (int32_t)g.threads;
    if (edgellm_context_create(s.model, &cp, &s.ctx) != EDGELLM_OK) {
        cli_error(cmd, "%s", edgellm_last_error());
        edgellm_model_free(s.model);
        return 1;
    }
    const char *const *stops = ellm_chat_stop_strings(s.family);
    int n_stops = 0;
    while (stops[n_stops])
        n_stops++;
    s.gp = edgellm_generate_default_params();
    s.gp.max_tokens = g.n_predict < 0 ? 0 : (int32_t)g.n_predict;
    s.gp.sampling = g.sampling;
    s.gp.stop_strings = stops;
    s.gp.n_stop_strings = n_stops;
    s.gp.parse_special = 1; /* the template's control tokens are tokens, not text */
    s.gp.keep_cache = 0;    /* each turn reuses the cached prefix it shares with the last */
    s.gp.on_token = on_token;

    cli_draft draft = {0};
    int rc = cli_draft_open(cmd, &g.draft, s.model, &cp, &draft, &s.gp);
    if (rc == 0)
        rc = chat_loop(&s, system);
    cli_draft_close(&draft);
    edgellm_context_free(s.ctx);
    edgellm_model_free(s.model);
    return rc;
}
