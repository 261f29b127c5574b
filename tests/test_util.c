#define _POSIX_C_SOURCE 200809L
#include "test_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int test_failures;
int test_checks;

int test_finish(const char *name)
{
    if (test_checks == 0) {
        fprintf(stderr, "%s: no checks ran\n", name);
        return 1;
    }
    fprintf(stderr, "%s: %d checks, %d failed\n", name, test_checks, test_failures);
    return test_failures == 0 ? 0 : 1;
}

char *test_read_file(const char *path, size_t *out_len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return NULL;
    }
    long size = ftell(f);
    if (size < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return NULL;
    }
    char *buf = malloc((size_t)size + 1);
    if (buf && fread(buf, 1, (size_t)size, f) != (size_t)size) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[size] = '\0';
        if (out_len)
            *out_len = (size_t)size;
    }
    return buf;
}

const char *test_shared_path(const char *rel)
{
    /* Rotating buffers so several paths can be passed to one call. */
    static char bufs[8][4096];
    static int slot;
    char *buf = bufs[slot++ % 8];
    snprintf(buf, 4096, "%s/%s", EDGELLM_SHARED_DIR, rel);
    return buf;
}

const char *test_tmp_path(const char *name)
{
    static char bufs[8][4096];
    static int slot;
    char *buf = bufs[slot++ % 8];
    snprintf(buf, 4096, "%s/%s", EDGELLM_TEST_TMP, name);
    return buf;
}

/* Undoes the TSV escapes \n, \t and \\ in place. */
static void unescape_tsv(char *s)
{
    char *o = s;
    for (char *p = s; *p; p++) {
        if (p[0] == '\\' && (p[1] == 'n' || p[1] == 't' || p[1] == '\\')) {
            *o++ = p[1] == 'n' ? '\n' : p[1] == 't' ? '\t' : '\\';
            p++;
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
}

int test_load_greedy_cases(test_greedy_case *cases, int max)
{
    char *tsv = test_read_file(test_shared_path("testdata/aidreams/greedy.tsv"), NULL);
    if (!tsv)
        return 0;
    int n = 0;
    char *save = NULL;
    for (char *line = strtok_r(tsv, "\n", &save); line && n < max;
         line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#')
            continue;
        char *cols[4], *p = line;
        for (int c = 0; c < 4; c++) {
            cols[c] = p;
            p = p ? strchr(p, '\t') : NULL;
            if (p)
                *p++ = '\0';
        }
        test_greedy_case *gc = &cases[n];
        snprintf(gc->prompt, sizeof gc->prompt, "%s", cols[0]);
        char *q = cols[2], *end;
        for (int k = 0; k < 48; k++, q = end)
            gc->ids[k] = (int32_t)strtol(q, &end, 10);
        unescape_tsv(cols[3]);
        snprintf(gc->text, sizeof gc->text, "%s", cols[3]);
        n++;
    }
    free(tsv);
    return n;
}

float test_rand_uniform(uint64_t *state)
{
    *state = *state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(*state >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

float test_rand_gauss(uint64_t *state)
{
    float u = 0.5f * (test_rand_uniform(state) + 1.0f) + 1e-7f, v = test_rand_uniform(state);
    return sqrtf(-2.0f * logf(u)) * cosf(3.14159265f * v);
}
