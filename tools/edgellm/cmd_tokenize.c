/* `edgellm tokenize`: a model's tokenizer on text, ids printed as JSON. Loads only the
 * vocabulary, so it also works on files written by `edgellm convert --vocab-only`. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_util.h"
#include "commands.h"
#include "edgellm.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: edgellm tokenize -m MODEL [--no-bos] [--special] [--pieces] [--stats]\n"
                 "                        (-p TEXT | -f FILE | --jsonl FILE)\n"
                 "  prints the token ids as a JSON array\n"
                 "  --no-bos     do not add BOS even if the model's tokenizer does by default\n"
                 "  --special    recognise special tokens written in the text (<|im_start|>, ...)\n"
                 "  --pieces     print [{\"id\": N, \"piece\": TEXT}, ...] instead of ids\n"
                 "  --jsonl FILE each line of FILE is a JSON string; prints one line per input:\n"
                 "               {\"ids\": [...], \"text\": the ids detokenized again}\n"
                 "  --stats      print the tokenization speed to stderr\n");
}

/* Tokenizes text into *ids (grown as needed); returns the count or -1 after printing an error. */
static int32_t tokenize(const edgellm_model *m, const char *text, size_t len, int flags,
                        edgellm_token **ids, int32_t *cap)
{
    int32_t n = 0;
    edgellm_status st = edgellm_tokenize(m, text, len, flags, *ids, *cap, &n);
    if (st == EDGELLM_ERR_BUFFER_TOO_SMALL) {
        edgellm_token *g = realloc(*ids, (size_t)n * sizeof *g);
        if (!g) {
            cli_error("tokenize", "no memory for %d tokens", (int)n);
            return -1;
        }
        *ids = g;
        *cap = n;
        st = edgellm_tokenize(m, text, len, flags, *ids, *cap, &n);
    }
    if (st != EDGELLM_OK) {
        cli_error("tokenize", "%s", edgellm_last_error());
        return -1;
    }
    return n;
}

static void print_ids(const edgellm_token *ids, int32_t n)
{
    fputc('[', stdout);
    for (int32_t i = 0; i < n; i++)
        printf(i ? ", %d" : "%d", (int)ids[i]);
    fputc(']', stdout);
}

static int print_pieces(const edgellm_model *m, const edgellm_token *ids, int32_t n)
{
    char buf[1024];
    fputc('[', stdout);
    for (int32_t i = 0; i < n; i++) {
        size_t len = 0;
        if (edgellm_token_to_piece(m, ids[i], buf, sizeof buf, &len) != EDGELLM_OK) {
            cli_error("tokenize", "%s", edgellm_last_error());
            return 1;
        }
        printf("%s{\"id\": %d, \"piece\": ", i ? ", " : "", (int)ids[i]);
        cli_print_json_string(stdout, buf, len);
        fputc('}', stdout);
    }
    fputc(']', stdout);
    return 0;
}

/* --jsonl: one JSON string per line in, {"ids", "text"} per line out. */
static int tokenize_lines(const edgellm_model *m, const char *path, int flags, double *seconds,
                          uint64_t *n_total, uint64_t *n_bytes)
{
    size_t len;
    char *data = cli_read_file(path, &len);
    if (!data) {
        cli_error("tokenize", "cannot read the lines: %s", edgellm_last_error());
        return 1;
    }
    edgellm_token *ids = NULL;
    int32_t cap = 0;
    char *text_buf = NULL;
    size_t text_cap = 0;
    int rc = 0, line_no = 0;
    for (char *line = data; rc == 0 && line < data + len;) {
        char *nl = memchr(line, '\n', (size_t)(data + len - line));
        size_t line_len = nl ? (size_t)(nl - line) : (size_t)(data + len - line);
        line_no++;
        if (line_len == 0) {
            line = nl ? nl + 1 : data + len;
            continue;
        }
        json_error_t err;
        json_t *j = json_loadb(line, line_len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
        if (!json_is_string(j)) {
            /* Name the fault: a lone surrogate ("\ud800") is a valid-looking string that no
             * UTF-8 text can hold, which "not a JSON string" hid. */
            if (!j)
                cli_error("tokenize", "'%s' line %d column %d: %s%s", path, line_no, err.column,
                          err.text,
                          strstr(err.text, "invalid Unicode")
                              ? " (a lone UTF-16 surrogate: \\uD800-\\uDBFF must be followed by "
                                "\\uDC00-\\uDFFF, and the second never comes alone)"
                              : "");
            else
                cli_error("tokenize",
                          "'%s' line %d is JSON but not a string: give one JSON string per line",
                          path, line_no);
            json_decref(j);
            rc = 1;
            break;
        }
        double t0 = cli_now_seconds();
        int32_t n = tokenize(m, json_string_value(j), json_string_length(j), flags, &ids, &cap);
        *seconds += cli_now_seconds() - t0;
        *n_bytes += json_string_length(j);
        json_decref(j);
        if (n < 0) {
            rc = 1;
            break;
        }
        *n_total += (uint64_t)n;
        size_t text_len = 0;
        edgellm_status st = edgellm_detokenize(m, ids, n, 0, text_buf, text_cap, &text_len);
        if (st == EDGELLM_ERR_BUFFER_TOO_SMALL) {
            char *g = realloc(text_buf, text_len + 1);
            if (g) {
                text_buf = g;
                text_cap = text_len + 1;
                st = edgellm_detokenize(m, ids, n, 0, text_buf, text_cap, &text_len);
            }
        }
        if (st != EDGELLM_OK) {
            cli_error("tokenize", "%s", edgellm_last_error());
            rc = 1;
            break;
        }
        fputs("{\"ids\": ", stdout);
        print_ids(ids, n);
        fputs(", \"text\": ", stdout);
        cli_print_json_string(stdout, text_buf, text_len);
        fputs("}\n", stdout);
        line = nl ? nl + 1 : data + len;
    }
    free(text_buf);
    free(ids);
    free(data);
    return rc;
}

int cmd_tokenize(int argc, char **argv)
{
    const char *cmd = "tokenize";
    const char *model_arg = NULL, *prompt = NULL, *file = NULL, *jsonl = NULL;
    bool no_bos = false, special = false, pieces = false, stats = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(v = cli_option_value(cmd, argc, argv, &i)))
                return EXIT_USAGE;
            model_arg = v;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            if (!(v = cli_option_value(cmd, argc, argv, &i)))
                return EXIT_USAGE;
            prompt = v;
        } else if (!strcmp(a, "-f") || !strcmp(a, "--file")) {
            if (!(v = cli_option_value(cmd, argc, argv, &i)))
                return EXIT_USAGE;
            file = v;
        } else if (!strcmp(a, "--jsonl")) {
            if (!(v = cli_option_value(cmd, argc, argv, &i)))
                return EXIT_USAGE;
            jsonl = v;
        } else if (!strcmp(a, "--no-bos")) {
            no_bos = true;
        } else if (!strcmp(a, "--special")) {
            special = true;
        } else if (!strcmp(a, "--pieces")) {
            pieces = true;
        } else if (!strcmp(a, "--stats")) {
            stats = true;
        } else {
            cli_error(cmd, "unknown argument '%s' (see 'edgellm tokenize --help')", a);
            return EXIT_USAGE;
        }
    }
    if (!model_arg) {
        cli_error(cmd, "no model given: edgellm tokenize -m MODEL -p TEXT");
        return EXIT_USAGE;
    }
    if ((prompt != NULL) + (file != NULL) + (jsonl != NULL) != 1) {
        cli_error(cmd, "give exactly one input: -p TEXT, -f FILE or --jsonl FILE");
        return EXIT_USAGE;
    }
    if (jsonl && pieces) {
        cli_error(cmd, "--pieces does not combine with --jsonl");
        return EXIT_USAGE;
    }
    edgellm_model_params mp = edgellm_model_default_params();
    mp.vocab_only = 1; /* only the tokenizer is needed */
    edgellm_model *m = cli_load_model(cmd, model_arg, &mp);
    if (!m)
        return 1;
    int flags = (special ? EDGELLM_TOKENIZE_PARSE_SPECIAL : 0) |
                (!no_bos && edgellm_add_bos_default(m) ? EDGELLM_TOKENIZE_ADD_BOS : 0);
    int rc = 0;
    double seconds = 0;
    uint64_t n_total = 0, n_bytes = 0;
    if (jsonl) {
        rc = tokenize_lines(m, jsonl, flags, &seconds, &n_total, &n_bytes);
    } else {
        size_t len = 0;
        char *owned = NULL;
        const char *text = prompt;
        if (file) {
            text = owned = cli_read_file(file, &len);
            if (!owned) {
                cli_error(cmd, "cannot read the text: %s", edgellm_last_error());
                rc = 1;
            }
        } else {
            len = strlen(prompt);
        }
        edgellm_token *ids = NULL;
        int32_t cap = 0;
        if (rc == 0) {
            double t0 = cli_now_seconds();
            int32_t n = tokenize(m, text, len, flags, &ids, &cap);
            seconds = cli_now_seconds() - t0;
            n_bytes = len;
            if (n < 0) {
                rc = 1;
            } else {
                n_total = (uint64_t)n;
                if (pieces)
                    rc = print_pieces(m, ids, n);
                else
                    print_ids(ids, n);
                fputc('\n', stdout);
            }
        }
        free(ids);
        free(owned);
    }
    if (rc == 0 && stats)
        fprintf(stderr,
                "edgellm tokenize: %llu tokens (%llu bytes of text) in %.3f s: %.0f tokens/s\n",
                (unsigned long long)n_total, (unsigned long long)n_bytes, seconds,
                seconds > 0 ? (double)n_total / seconds : 0.0);
    edgellm_model_free(m);
    return rc;
}
