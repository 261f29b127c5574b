/* The pages the weights' mapping asks for (edgellm_model_params.pages, core/mapped_file.c): with
 * each setting the mapping holds the file's bytes and, on Linux, carries the advice asked for
 * (smaps VmFlags "hg" for MADV_HUGEPAGE, "nh" for MADV_NOHUGEPAGE), a model loaded through the
 * API with each gets that advice whatever EDGELLM_HUGEPAGES says (the library no longer reads it;
 * the commands do and pass it down), and gives bit-identical logits. Whether the kernel then maps
 * 2 MiB pages depends on the filesystem and on how the page cache holds the file, so that is
 * reported by `edgellm bench`, not asserted. */
#define _DEFAULT_SOURCE /* setenv, realpath */
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

/* The smaps VmFlags line of this process's (one) mapping of the file at path, or "" when there is
 * none to read. */
static void vm_flags_of(const char *path, char *out, size_t cap)
{
    out[0] = '\0';
    char want[4096];
    FILE *f = realpath(path, want) ? fopen("/proc/self/smaps", "r") : NULL;
    if (!f)
        return;
    char line[4352];
    bool inside = false;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            const char *name = strchr(line, '/');
            inside = name && !strncmp(name, want, strlen(want)) && name[strlen(want)] == '\n';
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

static const char *name_of(edgellm_page_advice pages)
{
    return pages == EDGELLM_PAGES_SMALL ? "EDGELLM_PAGES_SMALL" : "EDGELLM_PAGES_HUGE";
}

/* The advice's flag in smaps, with EDGELLM_HUGEPAGES set to ask for the other pages: the library
 * must not read it. */
static const char *flag_of(edgellm_page_advice pages)
{
    setenv("EDGELLM_HUGEPAGES", pages == EDGELLM_PAGES_SMALL ? "on" : "off", 1);
    return pages == EDGELLM_PAGES_SMALL ? "nh" : "hg";
}

/* The flags of the file's mapping hold flag (Linux with transparent huge pages). */
static void check_flag(const char *path, const char *what, const char *flag)
{
#if defined(__linux__) && !defined(__EMSCRIPTEN__)
    if (access("/sys/kernel/mm/transparent_hugepage/enabled", F_OK) != 0)
        return;
    char flags[512];
    vm_flags_of(path, flags, sizeof flags);
    CHECK_MSG(has_flag(flags, flag), "%s: VmFlags lack '%s':%s", what, flag, flags);
#else
    (void)path, (void)what, (void)flag;
#endif
}

static void check_mapping(const char *path, edgellm_page_advice pages)
{
    const char *setting = name_of(pages), *flag = flag_of(pages);
    ellm_mapped_file m;
    CHECK_MSG(ellm_map_file(path, pages, &m) == EDGELLM_OK, "%s: %s", setting,
              edgellm_last_error());
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    char *bytes = malloc(m.size);
    CHECK(bytes && f && fread(bytes, 1, m.size, f) == m.size);
    CHECK_MSG(bytes && m.data && !memcmp(bytes, m.data, m.size), "%s: mapping differs", setting);
    free(bytes);
    if (f)
        fclose(f);
    check_flag(path, setting, flag);
    ellm_unmap_file(&m);
}

/* Logits of every position of a fixed sequence, from the model loaded with the pages asked for
 * (whose mapping must carry their advice). */
static float *logits_with(const char *path, edgellm_page_advice pages)
{
    const char *setting = name_of(pages), *flag = flag_of(pages);
    edgellm_model_params mp = edgellm_model_default_params();
    mp.pages = pages;
    edgellm_model *m = NULL;
    CHECK_MSG(edgellm_model_load(path, &mp, &m) == EDGELLM_OK, "%s: %s", setting,
              edgellm_last_error());
    if (!m)
        return NULL;
    check_flag(path, setting, flag);
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
    if (access("/sys/kernel/mm/transparent_hugepage/enabled", F_OK) != 0)
        printf("test_huge_pages: no transparent huge pages in this kernel; flags not checked\n");
    check_mapping(path, EDGELLM_PAGES_SMALL);
    check_mapping(path, EDGELLM_PAGES_HUGE);

    float *small = logits_with(path, EDGELLM_PAGES_SMALL);
    float *huge = logits_with(path, EDGELLM_PAGES_HUGE);
    /* Defaults (NULL, and the default parameters) ask for huge pages. */
    edgellm_model *m = NULL;
    setenv("EDGELLM_HUGEPAGES", "off", 1);
    CHECK(edgellm_model_load(path, NULL, &m) == EDGELLM_OK);
    check_flag(path, "params NULL", "hg");
    edgellm_model_free(m);
    m = NULL;
    edgellm_model_params mp = edgellm_model_default_params();
    CHECK(mp.pages == EDGELLM_PAGES_HUGE);
    mp.pages = (edgellm_page_advice)2;
    CHECK(edgellm_model_load(path, &mp, &m) == EDGELLM_ERR_INVALID_ARGUMENT && !m);
    CHECK_MSG(strstr(edgellm_last_error(), "pages is 2") != NULL, "message: %s",
              edgellm_last_error());
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
