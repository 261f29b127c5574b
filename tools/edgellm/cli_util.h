/* Small helpers shared by the subcommands: strict number parsing, errors, resource usage. */
#ifndef EDGELLM_CLI_UTIL_H
#define EDGELLM_CLI_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

/* A whole file (or stdin for "-") in a malloc'd buffer with a NUL after its *len bytes; NULL
 * if it cannot be read. */
char *cli_read_file(const char *path, size_t *len);

/* Peak resident set size of this process in bytes (0 if unknown). */
uint64_t cli_peak_rss_bytes(void);
double cli_now_seconds(void);
/* "1.23 GiB"-style rendering into buf; returns buf. */
const char *cli_format_bytes(uint64_t bytes, char *buf, int cap);

#endif
