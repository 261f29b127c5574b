/* Small helpers shared by the subcommands: strict number parsing, errors, resource usage. */
#ifndef EDGELLM_CLI_UTIL_H
#define EDGELLM_CLI_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "edgellm.h"

#define EXIT_USAGE 2

/* Prints "edgellm <cmd>: <message>\n" to stderr. */
void cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Strict parsers: the whole string must be a number in range; on failure print an error naming
 * the option and return false. */
bool cli_parse_int(const char *cmd, const char *opt, const char *s, long min, long max, long *out);
bool cli_parse_float(const char *cmd, const char *opt, const char *s, double min, double max,
                     double *out);
bool cli_parse_u64(const char *cmd, const char *opt, const char *s, uint64_t *out);
/* Sizes like "512M", "3G", "1.5GiB", "800000" (bytes). */
bool cli_parse_size(const char *cmd, const char *opt, const char *s, uint64_t *out);

/* The value following option argv[*i]; prints an error and returns NULL when missing. */
const char *cli_option_value(const char *cmd, int argc, char **argv, int *i);

/* Default model parameters with the pages EDGELLM_HUGEPAGES asks for (machine_page_advice). */
edgellm_model_params cli_model_params(void);
/* Loads -m MODEL: a file or an installed NAME[:VERSION] of the model store; params may be NULL
 * (cli_model_params; given ones get the pages EDGELLM_HUGEPAGES asks for too). NULL after
 * printing the error. */
edgellm_model *cli_load_model(const char *cmd, const char *model,
                              const edgellm_model_params *params);

/* An input file of a command that writes an output: what it is to the user ("the model", "-f")
 * and its path (NULL when the option was not given). */
typedef struct cli_input {
    const char *role, *path;
} cli_input;
/* True, after printing the error, when output names the same file as one of the inputs by any
 * name ("m.gguf" and "./m.gguf", a hard or symbolic link): writing it would destroy the input,
 * and a mapped input would be read while it is replaced. */
bool cli_output_overwrites_input(const char *cmd, const char *output, const cli_input *inputs,
                                 size_t n_inputs);
/* The same for an output written whole and renamed into place (models, logits), which also
 * cannot be a FIFO, device or directory: refused here, before the command's work, rather than
 * by the writer at the end. */
bool cli_output_refused(const char *cmd, const char *output, const cli_input *inputs,
                        size_t n_inputs);

/* A whole file (or stdin for "-" and /dev/stdin; /dev/fd/N as it is) in a malloc'd buffer with
 * a NUL after its *len bytes; NULL with the reason in edgellm_last_error() (naming the path; a
 * FIFO, directory or device is refused, never waited on) if it cannot be read. */
char *cli_read_file(const char *path, size_t *len);
/* The same, reading no more than limit bytes: *longer says the file holds more (the buffer then
 * holds the first limit). For inputs only a bounded part of which can be used. */
char *cli_read_file_prefix(const char *path, size_t limit, size_t *len, bool *longer);
/* The tokens of -f TEXT (tokenized with the model's tokenizer, BOS as the model wants) or of
 * --ids FILE (whitespace-separated ids), each checked against the vocabulary; exactly one path is
 * non-NULL. NULL after printing the error. */
edgellm_token *cli_load_tokens(const char *cmd, edgellm_model *m, const char *text_path,
                               const char *ids_path, int32_t *n);

/* The sampling options `run` and `chat` share: --temp, --top-k, --top-p, --min-p,
 * --repeat-penalty, --repeat-last-n, --presence-penalty, --frequency-penalty, --seed. */
typedef enum cli_option_result {
    CLI_OPTION_NOT_MINE,
    CLI_OPTION_TAKEN,
    CLI_OPTION_BAD
} cli_option_result;
/* Parses argv[*i] (and its value) into sp when it is one of them; *seed_given is set by --seed. */
cli_option_result cli_sampling_option(const char *cmd, int argc, char **argv, int *i,
                                      edgellm_sampler_params *sp, bool *seed_given);
/* A seed from the clock, for runs that were not given one. */
uint64_t cli_time_seed(void);

/* Writes bytes as a JSON string; bytes that are not valid UTF-8 become U+FFFD. */
void cli_print_json_string(FILE *out, const char *s, size_t n);

/* --kv-type f16|f32|q8_0 (run, bench, serve, info, eval); false after printing the error. */
bool cli_parse_kv_type(const char *cmd, const char *value, edgellm_kv_type *out);
/* Forces the kernel set named by --kernels (name, when given) or else by the EDGELLM_KERNELS
 * environment variable, for every kernel; false after printing the error (unknown set, or one
 * this CPU cannot run). */
bool cli_use_kernels(const char *cmd, const char *name);

/* Peak resident set size of this process in bytes (0 if unknown). */
uint64_t cli_peak_rss_bytes(void);
double cli_now_seconds(void);
/* "1.23 GiB"-style rendering into buf; returns buf. */
const char *cli_format_bytes(uint64_t bytes, char *buf, int cap);

#endif
