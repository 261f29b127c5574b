#define _POSIX_C_SOURCE 200809L
#include "cli_util.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include "core/locked_file.h"
#include "core/mapped_file.h"
#include "core/status.h"
#include "core/utf8.h"
#include "machine.h"
#include "store/store.h"

void cli_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "edgellm %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

bool cli_parse_int(const char *cmd, const char *opt, const char *s, long min, long max, long *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
        cli_error(cmd, "%s expects an integer from %ld to %ld, got '%s'", opt, min, max, s);
        return false;
    }
    *out = v;
    return true;
}

bool cli_parse_float(const char *cmd, const char *opt, const char *s, double min, double max,
                     double *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !isfinite(v) || v < min || v > max) {
        cli_error(cmd, "%s expects a number from %g to %g, got '%s'", opt, min, max, s);
        return false;
    }
    *out = v;
    return true;
}

bool cli_parse_u64(const char *cmd, const char *opt, const char *s, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    if (s[0] == '-' || s[0] == '\0') {
        cli_error(cmd, "%s expects a non-negative integer, got '%s'", opt, s);
        return false;
    }
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0') {
        cli_error(cmd, "%s expects a non-negative integer, got '%s'", opt, s);
        return false;
    }
    *out = v;
    return true;
}

bool cli_parse_size(const char *cmd, const char *opt, const char *s, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || !isfinite(v) || v < 0)
        goto bad;
    double mult = 1;
    if (*end) {
        char unit = (char)(*end | 0x20);
        if (unit == 'k')
            mult = 1024.0;
        else if (unit == 'm')
            mult = 1024.0 * 1024;
        else if (unit == 'g')
            mult = 1024.0 * 1024 * 1024;
        else if (unit == 't')
            mult = 1024.0 * 1024 * 1024 * 1024;
        else if (unit != 'b')
            goto bad;
        end++;
        if (strcasecmp(end, "") != 0 && strcasecmp(end, "b") != 0 && strcasecmp(end, "ib") != 0)
            goto bad;
    }
    if (v * mult > 1.8e19)
        goto bad;
    *out = (uint64_t)(v * mult);
    return true;
bad:
    cli_error(cmd, "%s expects a size like 512M, 3G or 1.5GiB, got '%s'", opt, s);
    return false;
}

const char *cli_option_value(const char *cmd, int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        cli_error(cmd, "option %s needs a value", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

uint64_t cli_peak_rss_bytes(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (uint64_t)ru.ru_maxrss * 1024u; /* Linux reports KiB */
}

double cli_now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

const char *cli_format_bytes(uint64_t bytes, char *buf, int cap)
{
    const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)bytes;
    int u = 0;
    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        u++;
    }
    if (u == 0)
        snprintf(buf, (size_t)cap, "%llu B", (unsigned long long)bytes);
    else
        snprintf(buf, (size_t)cap, "%.2f %s", v, units[u]);
    return buf;
}

edgellm_model_params cli_model_params(void)
{
    edgellm_model_params p = edgellm_model_default_params();
    p.pages = machine_page_advice();
    return p;
}

edgellm_model *cli_load_model(const char *cmd, const char *model,
                              const edgellm_model_params *params)
{
    char path[4096];
    edgellm_model *m = NULL;
    edgellm_model_params p = params ? *params : cli_model_params();
    p.pages = machine_page_advice();
    if (ellm_store_resolve_model(model, path, sizeof path) != EDGELLM_OK ||
        edgellm_model_load(path, &p, &m) != EDGELLM_OK) {
        cli_error(cmd, "%s", edgellm_last_error());
        return NULL;
    }
    return m;
}

/* stdin for "-" and /dev/stdin. Other descriptors the process already has open (/dev/fd/N, a
 * shell's <(...)) are streams the user opened on purpose, their writer already there: opened as
 * they are. Any other path must be a regular file (a FIFO nothing writes to would wait forever). */
static FILE *open_input(const char *path)
{
    if (!strcmp(path, "-") || !strcmp(path, "/dev/stdin"))
        return stdin;
    if (strncmp(path, "/dev/fd/", 8) && strncmp(path, "/proc/self/fd/", 14))
        return ellm_fopen_regular(path);
    FILE *f = fopen(path, "rb");
    if (!f)
        ellm_fail(EDGELLM_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    return f;
}

bool cli_output_refused(const char *cmd, const char *output, const cli_input *inputs,
                        size_t n_inputs)
{
    char refusal[512];
    if (output && !ellm_replaceable_target(output, refusal, sizeof refusal)) {
        cli_error(cmd, "%s", refusal);
        return true;
    }
    return cli_output_overwrites_input(cmd, output, inputs, n_inputs);
}

bool cli_output_overwrites_input(const char *cmd, const char *output, const cli_input *inputs,
                                 size_t n_inputs)
{
    struct stat out;
    if (!output || stat(output, &out) != 0)
        return false; /* an output that does not exist yet is no input */
    for (size_t i = 0; i < n_inputs; i++) {
        struct stat in;
        if (inputs[i].path && stat(inputs[i].path, &in) == 0 && in.st_dev == out.st_dev &&
            in.st_ino == out.st_ino) {
            cli_error(cmd,
                      "the output '%s' is the same file as %s '%s': writing it would destroy "
                      "it; nothing was written: give another output path",
                      output, inputs[i].role, inputs[i].path);
            return true;
        }
    }
    return false;
}

char *cli_read_file_prefix(const char *path, size_t limit, size_t *len, bool *longer)
{
    *longer = false;
    FILE *f = open_input(path);
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf && n < limit) {
        size_t want = cap - n - 1 < limit - n ? cap - n - 1 : limit - n;
        size_t got = fread(buf + n, 1, want, f);
        if (got == 0)
            break;
        n += got;
        if (n + 1 == cap) {
            char *g = realloc(buf, cap * 2);
            if (!g) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = g;
            cap *= 2;
        }
    }
    if (buf && n == limit && fgetc(f) != EOF)
        *longer = true;
    bool failed = ferror(f) != 0;
    if (f != stdin)
        fclose(f);
    if (!buf || failed) {
        free(buf);
        if (failed)
            ellm_fail(EDGELLM_ERR_IO, "cannot read '%s'", path);
        else
            ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory to read '%s'", path);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

char *cli_read_file(const char *path, size_t *len)
{
    bool longer;
    return cli_read_file_prefix(path, SIZE_MAX - 1, len, &longer);
}

cli_option_result cli_sampling_option(const char *cmd, int argc, char **argv, int *i,
                                      edgellm_sampler_params *sp, bool *seed_given)
{
    static const struct {
        const char *name;
        double lo, hi;
        bool integer;
    } opts[] = {
        {"--temp", 0, 100, false},
        {"--top-k", 0, 1 << 30, true},
        {"--top-p", 1e-6, 1, false},
        {"--min-p", 0, 1, false},
        {"--repeat-penalty", 1e-3, 100, false},
        {"--repeat-last-n", -1, 1 << 20, true},
        {"--presence-penalty", -100, 100, false},
        {"--frequency-penalty", -100, 100, false},
    };
    const char *a = argv[*i];
    if (!strcmp(a, "--seed")) {
        const char *v = cli_option_value(cmd, argc, argv, i);
        uint64_t u;
        if (!v || !cli_parse_u64(cmd, a, v, &u))
            return CLI_OPTION_BAD;
        sp->seed = u;
        *seed_given = true;
        return CLI_OPTION_TAKEN;
    }
    size_t k = 0;
    while (k < sizeof opts / sizeof opts[0] && strcmp(a, opts[k].name) != 0)
        k++;
    if (k == sizeof opts / sizeof opts[0])
        return CLI_OPTION_NOT_MINE;
    const char *v = cli_option_value(cmd, argc, argv, i);
    double d = 0;
    long l = 0;
    if (!v || (opts[k].integer ? !cli_parse_int(cmd, a, v, (long)opts[k].lo, (long)opts[k].hi, &l)
                               : !cli_parse_float(cmd, a, v, opts[k].lo, opts[k].hi, &d)))
        return CLI_OPTION_BAD;
    switch (k) {
    case 0: sp->temperature = (float)d; break;
    case 1: sp->top_k = (int32_t)l; break;
    case 2: sp->top_p = (float)d; break;
    case 3: sp->min_p = (float)d; break;
    case 4: sp->repeat_penalty = (float)d; break;
    case 5: sp->repeat_last_n = (int32_t)l; break;
    case 6: sp->presence_penalty = (float)d; break;
    default: sp->frequency_penalty = (float)d; break;
    }
    return CLI_OPTION_TAKEN;
}

uint64_t cli_time_seed(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20);
}

/* Writes bytes as a JSON string; bytes that are not valid UTF-8 become U+FFFD. */
void cli_print_json_string(FILE *out, const char *s, size_t n)
{
    fputc('"', out);
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            fprintf(out, "\\%c", c);
            i++;
        } else if (c == '\n' || c == '\t' || c == '\r') {
            fprintf(out, "\\%c", c == '\n' ? 'n' : c == '\t' ? 't' : 'r');
            i++;
        } else if (c < 0x20) {
            fprintf(out, "\\u%04x", c);
            i++;
        } else if (c < 0x80) {
            fputc(c, out);
            i++;
        } else {
            uint32_t cp;
            size_t len = ellm_utf8_next(s + i, n - i, &cp);
            if (len > 0) {
                fwrite(s + i, 1, len, out);
                i += len;
            } else {
                fputs("\\ufffd", out);
                i++;
            }
        }
    }
    fputc('"', out);
}

/* Whitespace-separated ids, each checked against the vocabulary as it is read: an id beyond 32
 * bits once became -1 and was reported as such. Says what is wrong itself (NULL, *n = -1). */
static edgellm_token *read_token_ids(const char *cmd, const char *path, int32_t n_vocab, int32_t *n)
{
    FILE *f = open_input(path);
    if (!f) {
        cli_error(cmd, "cannot read the ids: %s", edgellm_last_error());
        return NULL;
    }
    size_t cap = 256;
    edgellm_token *ids = malloc(cap * sizeof *ids);
    char word[32];
    *n = 0;
    /* A word longer than the buffer is read on in pieces: the first piece is already wrong. */
    while (ids && fscanf(f, "%31s", word) == 1) {
        char *end = NULL;
        errno = 0;
        long long v = strtoll(word, &end, 10);
        const char *problem = NULL;
        if (end == word || *end)
            problem = "is not a token id";
        else if (errno == ERANGE || v < 0 || v >= n_vocab)
            problem = "is outside the vocabulary";
        if (problem) {
            cli_error(cmd,
                      "'%s': '%s%s' at position %d %s (ids are 0..%d); give the ids the model's "
                      "tokenizer made, separated by white space",
                      path, word, strlen(word) == 31 ? "..." : "", *n, problem, n_vocab - 1);
            free(ids);
            ids = NULL;
            *n = -1;
            break;
        }
        if ((size_t)*n == cap) {
            edgellm_token *g = realloc(ids, cap * 2 * sizeof *ids);
            if (!g) {
                free(ids);
                ids = NULL;
                break;
            }
            ids = g;
            cap *= 2;
        }
        ids[(*n)++] = (edgellm_token)v;
    }
    if (ids && ferror(f)) {
        cli_error(cmd, "cannot read '%s': %s", path, strerror(errno));
        free(ids);
        ids = NULL;
    } else if (!ids && *n >= 0) {
        cli_error(cmd, "no memory for the ids of '%s'", path);
    }
    if (f != stdin)
        fclose(f);
    return ids;
}

edgellm_token *cli_load_tokens(const char *cmd, edgellm_model *m, const char *text_path,
                               const char *ids_path, int32_t *n)
{
    edgellm_token *ids = NULL;
    *n = 0;
    if (ids_path) {
        ids = read_token_ids(cmd, ids_path, edgellm_n_vocab(m), n);
    } else {
        size_t len = 0;
        char *text = cli_read_file(text_path, &len);
        if (!text) {
            cli_error(cmd, "cannot read the text: %s", edgellm_last_error());
        } else {
            int flags = edgellm_add_bos_default(m) ? EDGELLM_TOKENIZE_ADD_BOS : 0;
            edgellm_tokenize(m, text, len, flags, NULL, 0, n);
            ids = malloc((size_t)(*n > 0 ? *n : 1) * sizeof *ids);
            if (ids && edgellm_tokenize(m, text, len, flags, ids, *n, n) != EDGELLM_OK) {
                free(ids);
                ids = NULL;
                cli_error(cmd, "%s", edgellm_last_error());
            }
            free(text);
        }
    }
    int32_t n_vocab = edgellm_n_vocab(m);
    for (int32_t i = 0; ids && i < *n; i++)
        if (ids[i] < 0 || ids[i] >= n_vocab) {
            cli_error(cmd, "token id %d at position %d is outside the vocabulary (0..%d)", ids[i],
                      i, n_vocab - 1);
            free(ids);
            ids = NULL;
        }
    return ids;
}

bool cli_parse_kv_type(const char *cmd, const char *value, edgellm_kv_type *out)
{
    if (!strcmp(value, "f16"))
        *out = EDGELLM_KV_F16;
    else if (!strcmp(value, "f32"))
        *out = EDGELLM_KV_F32;
    else if (!strcmp(value, "q8_0"))
        *out = EDGELLM_KV_Q8_0;
    else {
        cli_error(cmd, "--kv-type must be f16, f32 or q8_0, got '%s'", value);
        return false;
    }
    return true;
}

bool cli_use_kernels(const char *cmd, const char *name)
{
    const char *from = "--kernels";
    if (!name) {
        name = getenv("EDGELLM_KERNELS");
        from = "EDGELLM_KERNELS";
    }
    if (!name || !*name)
        return true;
    if (edgellm_use_kernel_set(name) != EDGELLM_OK) {
        cli_error(cmd, "%s: %s", from, edgellm_last_error());
        return false;
    }
    return true;
}
