/* The pages the weights' mapping asks for (EDGELLM_HUGEPAGES, core/mapped_file.c): with each
 * setting the mapping holds the file's bytes and, on Linux, carries the advice asked for (smaps
 * VmFlags "hg" for MADV_HUGEPAGE, "nh" for MADV_NOHUGEPAGE), and a model loaded with each gives
 * bit-identical logits. Whether the kernel then maps 2 MiB pages depends on the filesystem and on
 * how the page cache holds the file, so that is reported by `edgellm bench`, not asserted. */
#define _DEFAULT_SOURCE /* setenv */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "convert/synth.h"
#include "core/mapped_file.h"
#include "edgellm.h"
#include "test_util.h"

enum { N_TOK = 24 };

/* The smaps VmFlags line of the mapping that holds p, or "" when there is none to read. */
static void vm_flags_of(const void *p, char *out, size_t cap)
{
    out[0] = '\0';
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f)
        return;
    char line[4352];
    bool inside = false;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            inside = (uintptr_t)p >= lo && (uintptr_t)p < hi;
            continue;
        }
        if (inside && !strncmp(line, "VmFlags:", 8)) {
            size_t n = strlen(line + 8) < cap - 1 ? strlen(line + 8) : cap - 1;
            memcpy(out, line + 8, n);
            out[n] = '\0';
            break;
        }
    }
    fclose(f);
}

static bool has_flag(const char *flags, const char *flag)
{
    size_t n = strlen(flag);
    for (const char *s = flags; (s = strstr(s, flag)) != NULL; s += n)
        if ((s == flags || s[-1] == ' ') && (s[n] == ' ' || s[n] == '\n' || s[n] == '\0'))
            return true;
    return false;
}

static void check_mapping(const char *path, const char *setting, const char *flag)
{
    setenv("EDGELLM_HUGEPAGES", setting, 1);
    ellm_mapped_file m;
    CHECK_MSG(ellm_map_file(path, &m) == EDGELLM_OK, "%s: %s", setting, edgellm_last_error());
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    char *bytes = malloc(m.size);
    CHECK(bytes && f && fread(bytes, 1, m.size, f) == m.size);
    CHECK_MSG(bytes && m.data && !memcmp(bytes, m.data, m.size), "%s: mapping differs", setting);
    free(bytes);
    if (f)
        fclose(f);
#if defined(__linux__) && !defined(__EMSCRIPTEN__)
    char flags[512];
    vm_flags_of(m.data, flags, sizeof flags);
    CHECK_MSG(has_flag(flags, flag), "EDGELLM_HUGEPAGES=%s: VmFlags lack '%s':%s", setting, flag,
              flags);
#else
    (void)flag;
#endif
    ellm_unmap_file(&m);
}

/* Logits of every position of a fixed sequence. */
static float *logits_with(const char *path, const char *setting)
{
    setenv("EDGELLM_HUGEPAGES", setting, 1);
    edgellm_model *m = NULL;
    CHECK_MSG(edgellm_model_load(path, NULL, &m) == EDGELLM_OK, "%s: %s", setting,
              edgellm_last_error());
    if (!m)
        return NULL;
    int32_t n_vocab = edgellm_n_vocab(m);
    edgellm_token ids[N_TOK];
    for (int i = 0; i < N_TOK; i++)
        ids[i] = 3 + (edgellm_token)((i * 37) % (n_vocab - 3));
    edgellm_context_params cp = edgellm_context_default_params();
    cp.n_ctx = 64;
    cp.n_threads = 2;
    edgellm_context *ctx = NULL;
    float *out = malloc((size_t)N_TOK * (size_t)n_vocab * sizeof *out);
    /* All but the last token as one batch (the prefill tiles), the last alone (the decode
     * kernels). */
    bool ok = out && edgellm_context_create(m, &cp, &ctx) == EDGELLM_OK &&
              edgellm_eval(ctx, ids, N_TOK - 1, 1) == EDGELLM_OK;
    for (int i = 0; ok && i < N_TOK - 1; i++)
        memcpy(out + (size_t)i * n_vocab, edgellm_get_logits(ctx, i), (size_t)n_vocab * 4);
    ok = ok && edgellm_eval(ctx, &ids[N_TOK - 1], 1, 0) == EDGELLM_OK;
    if (ok)
        memcpy(out + (size_t)(N_TOK - 1) * n_vocab, edgellm_get_logits(ctx, -1),
               (size_t)n_vocab * 4);
    CHECK_MSG(ok, "%s: evaluation failed: %s", setting, edgellm_last_error());
    edgellm_context_free(ctx);
    edgellm_model_free(m);
    if (!ok) {
        free(out);
        return NULL;
    }
    return out;
}

int main(void)
{
    const char *aidreams = test_shared_path("models/aidreams260K-f32.gguf");
    /* Larger than a few 2 MiB pages (about 14 MB of F16 weights), so that huge pages can be
     * mapped at all. */
    ellm_synth_shape shape = {"pages-test", 512, 3, 8, 8, 1536, 128, 10000.0f, false};
    char path[512];
    snprintf(path, sizeof path, "%s/test_huge_pages_synth.gguf", EDGELLM_TEST_TMP);
    CHECK(ellm_synth_model(&shape, ELLM_TYPE_F16, aidreams, path, 1) == EDGELLM_OK);

    /* A kernel built without transparent huge pages refuses both advices (EINVAL) and shows no
     * flag; the mapping must still load and give the same logits there. */
    if (access("/sys/kernel/mm/transparent_hugepage/enabled", F_OK) == 0) {
        check_mapping(path, "off", "nh");
        check_mapping(path, "0", "nh");
        check_mapping(path, "on", "hg");
        check_mapping(path, "", "hg"); /* unset or empty: the default */
    } else {
        printf("test_huge_pages: no transparent huge pages in this kernel; flags not checked\n");
    }

    float *small = logits_with(path, "off");
    float *huge = logits_with(path, "on");
    edgellm_model *m = NULL;
    CHECK(edgellm_model_load(path, NULL, &m) == EDGELLM_OK);
    size_t bytes = (size_t)N_TOK * (size_t)(m ? edgellm_n_vocab(m) : 0) * sizeof(float);
    edgellm_model_free(m);
    CHECK(small && huge);
    CHECK_MSG(small && huge && !memcmp(small, huge, bytes), "logits differ: off vs on");
    free(small), free(huge);
    unsetenv("EDGELLM_HUGEPAGES");
    remove(path);
    return test_finish("test_huge_pages");
}
