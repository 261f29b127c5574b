/* Minimal assertion helpers: a failed check prints file:line and the condition, and the test
 * exits non-zero at the end (all checks run, so one run shows every failure). */
#ifndef EDGELLM_TEST_UTIL_H
#define EDGELLM_TEST_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

extern int test_failures;
extern int test_checks;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        test_checks++;                                                                             \
        if (!(cond)) {                                                                             \
            test_failures++;                                                                       \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
        }                                                                                          \
    } while (0)

#define CHECK_MSG(cond, ...)                                                                       \
    do {                                                                                           \
        test_checks++;                                                                             \
        if (!(cond)) {                                                                             \
            test_failures++;                                                                       \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

/* Reproducible test data from a caller-owned 64-bit state (an LCG's top 53 bits): uniform in
 * [-1, 1), and normal from two uniforms (Box-Muller). Each test keeps its own seed, so adding
 * draws to one test cannot change another's data. */
float test_rand_uniform(uint64_t *state);
float test_rand_gauss(uint64_t *state);

/* Prints the summary and returns the process exit code. */
int test_finish(const char *name);

/* Reads a whole file into a malloc'd, NUL-terminated buffer (NULL on failure). */
char *test_read_file(const char *path, size_t *out_len);

/* Joins the shared data directory and a relative path (static buffer, rotates over 8 slots). */
const char *test_shared_path(const char *rel);
/* A path under the test scratch directory (static buffer, rotates over 8 slots). */
const char *test_tmp_path(const char *name);

/* One line of ../shared/testdata/aidreams/greedy.tsv: a prompt and its 48 greedy tokens. */
typedef struct test_greedy_case {
    char prompt[256];
    int32_t ids[48];
    char text[1024];
} test_greedy_case;

/* Reads up to max cases from greedy.tsv; returns how many (0 if it cannot be read). */
int test_load_greedy_cases(test_greedy_case *cases, int max);

#endif
