#include "test_util.h"

#include <stdlib.h>

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
