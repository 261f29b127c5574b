/* The forward pass against reference logits and greedy continuations computed by other runtimes
 * (../shared/testdata/aidreams), the KV cache against whole-sequence evaluation, and thread-count
 * invariance. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "model/model.h"
#include "quant/quant.h"
#include "test_util.h"

#define MAX_IDS 256

static int read_ids(const char *path, int32_t *ids, int max)
{
    char *text = test_read_file(path, NULL);
    if (!text)
        return -1;
    int n = 0;
    char *p = text, *end;
    for (long v = strtol(p, &end, 10); end != p && n < max; v = strtol(p, &end, 10)) {
        ids[n++] = (int32_t)v;
        p = end;
    }
    free(text);
    return n;
}

typedef struct fixture {
    gguf_file *file;
    ellm_model *model;
    int32_t n_vocab;
} fixture;

static ellm_state *new_state(const fixture *fx, int n_ctx, int n_batch, edgellm_kv_type kv,
                             int threads)
{
    ellm_state_params p = {.n_ctx = n_ctx, .n_batch = n_batch, .kv_type = kv, .n_threads = threads};
    ellm_state *s = NULL;
    edgellm_status st = ellm_state_create(fx->model, &p, &s);
    CHECK_MSG(st == EDGELLM_OK, "%s", edgellm_last_error());
    return s;
}

static float *eval_all(const fixture *fx, const int32_t *ids, int n, edgellm_kv_type kv,
                       int threads, bool one_by_one)
{
    ellm_threadpool *pool = NULL;
    ellm_threadpool_create(threads, &pool);
    ellm_state *s = new_state(fx, 128, one_by_one ? 1 : n, kv, threads);
    float *logits = calloc((size_t)n * fx->n_vocab, sizeof(float));
    if (!s || !logits) {
        ellm_threadpool_free(pool);
        free(logits);
        ellm_state_free(s);
        return NULL;
    }
    if (one_by_one) {
        for (int i = 0; i < n; i++)
            CHECK(ellm_forward(fx->model, s, pool, &ids[i], 1, false,
                               logits + (size_t)i * fx->n_vocab) == EDGELLM_OK);
    } else {
        CHECK(ellm_forward(fx->model, s, pool, ids, n, true, logits) == EDGELLM_OK);
    }
    ellm_state_free(s);
    ellm_threadpool_free(pool);
    return logits;
}

static double max_abs_diff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        m = d > m ? d : m;
    }
    return m;
}

static void test_reference_logits(const fixture *fx)
{
    int32_t ids[MAX_IDS];
    int n = read_ids(test_shared_path("testdata/aidreams/logits-ids.txt"), ids, MAX_IDS);
    CHECK(n == 55);
    size_t len = 0;
    float *ref = (float *)test_read_file(test_shared_path("testdata/aidreams/logits-f32.bin"),
                                         &len);
    CHECK(ref && len == (size_t)n * fx->n_vocab * sizeof(float));
    if (!ref || n <= 0)
        return;
    size_t total = (size_t)n * fx->n_vocab;
    float *f32 = eval_all(fx, ids, n, EDGELLM_KV_F32, 1, false);
    float *f16 = eval_all(fx, ids, n, EDGELLM_KV_F16, 1, false);
    float *step = eval_all(fx, ids, n, EDGELLM_KV_F16, 1, true);
    float *t2 = eval_all(fx, ids, n, EDGELLM_KV_F16, 2, false);
    float *t3 = eval_all(fx, ids, n, EDGELLM_KV_F16, 3, false);
    float *step3 = eval_all(fx, ids, n, EDGELLM_KV_F16, 3, true);
    float *step1 = eval_all(fx, ids, n, EDGELLM_KV_F16, 1, true);
    if (f32 && f16 && step && t2 && t3 && step1 && step3) {
        double e32 = max_abs_diff(f32, ref, total), e16 = max_abs_diff(f16, ref, total);
        double es = max_abs_diff(step, f16, total);
        fprintf(stderr,
                "max |logit - reference|: F32 KV %.3g, F16 KV %.3g; token-by-token vs "
                "batch %.3g\n",
                e32, e16, es);
        /* The reference runtime keeps an F16 cache: the exact F32 cache differs by its rounding. */
        CHECK_MSG(e32 < 1e-2, "F32 KV logits off by %g", e32);
        CHECK_MSG(e16 < 1e-3, "F16 KV logits off by %g", e16);
        CHECK_MSG(es < 1e-4, "KV-cache path differs from whole-sequence path by %g", es);
        CHECK_MSG(max_abs_diff(step, ref, total) < 1e-3, "token-by-token off reference");
        CHECK_MSG(memcmp(f16, t2, total * sizeof(float)) == 0, "2 threads change the logits");
        CHECK_MSG(memcmp(f16, t3, total * sizeof(float)) == 0, "3 threads change the logits");
        CHECK_MSG(memcmp(step1, step3, total * sizeof(float)) == 0,
                  "3 threads change the decode logits");
    }
    free(f32);
    free(f16);
    free(step);
    free(t2);
    free(t3);
    free(step1);
    free(step3);
    free(ref);
}

static int argmax(const float *v, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best])
            best = i;
    return best;
}

static int parse_id_list(const char *s, int32_t *ids, int max)
{
    int n = 0;
    char *end;
    for (long v = strtol(s, &end, 10); end != s && n < max; v = strtol(s, &end, 10)) {
        ids[n++] = (int32_t)v;
        s = end;
    }
    return n;
}

static void test_greedy(const fixture *fx)
{
    char *tsv = test_read_file(test_shared_path("testdata/aidreams/greedy.tsv"), NULL);
    CHECK(tsv != NULL);
    if (!tsv)
        return;
    int prompts = 0;
    ellm_threadpool *pool = NULL;
    ellm_threadpool_create(2, &pool);
    float *logits = malloc((size_t)fx->n_vocab * sizeof(float));
    for (char *line = strtok(tsv, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#')
            continue;
        char *cols[4] = {0};
        char *p = line;
        for (int c = 0; c < 4 && p; c++) {
            cols[c] = p;
            p = strchr(p, '\t');
            if (p)
                *p++ = '\0';
        }
        if (!cols[2])
            continue;
        int32_t prompt[MAX_IDS], expect[MAX_IDS], got[MAX_IDS];
        int np = parse_id_list(cols[1], prompt, MAX_IDS);
        int ne = parse_id_list(cols[2], expect, MAX_IDS);
        CHECK(np > 0 && ne == 48);
        ellm_state *s = new_state(fx, 128, 64, EDGELLM_KV_F16, 2);
        if (!s)
            break;
        CHECK(ellm_forward(fx->model, s, pool, prompt, np, false, logits) == EDGELLM_OK);
        for (int i = 0; i < ne; i++) {
            got[i] = argmax(logits, fx->n_vocab);
            if (ellm_forward(fx->model, s, pool, &got[i], 1, false, logits) != EDGELLM_OK)
                break;
        }
        CHECK_MSG(memcmp(got, expect, (size_t)ne * sizeof(int32_t)) == 0,
                  "greedy continuation of '%s' differs", cols[0]);
        ellm_state_free(s);
        prompts++;
    }
    CHECK(prompts == 7);
    free(logits);
    free(tsv);
    ellm_threadpool_free(pool);
}

static void test_bad_inputs(const fixture *fx)
{
    ellm_state *s = new_state(fx, 8, 8, EDGELLM_KV_F16, 1);
    float *logits = malloc((size_t)fx->n_vocab * 8 * sizeof(float));
    int32_t bad = fx->n_vocab;
    CHECK(ellm_forward(fx->model, s, NULL, &bad, 1, false, logits) == EDGELLM_ERR_INVALID_ARGUMENT);
    int32_t ids[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    CHECK(ellm_forward(fx->model, s, NULL, ids, 6, false, logits) == EDGELLM_OK);
    CHECK(ellm_forward(fx->model, s, NULL, ids, 3, false, logits) == EDGELLM_ERR_CONTEXT_FULL);
    CHECK(ellm_state_n_past(s) == 6);
    CHECK(strstr(edgellm_last_error(), "context") != NULL);
    ellm_state_truncate(s, 2);
    CHECK(ellm_state_n_past(s) == 2);
    free(logits);
    ellm_state_free(s);
}

int main(void)
{
    fixture fx = {0};
    edgellm_status st = ellm_gguf_open(test_shared_path("models/aidreams260K-f32.gguf"), &fx.file);
    CHECK_MSG(st == EDGELLM_OK, "%s", edgellm_last_error());
    if (st == EDGELLM_OK) {
        st = ellm_model_create(fx.file, &fx.model);
        CHECK_MSG(st == EDGELLM_OK, "%s", edgellm_last_error());
    }
    if (fx.model) {
        fx.n_vocab = ellm_model_hparams(fx.model)->n_vocab;
        CHECK(fx.n_vocab == 512);
        test_reference_logits(&fx);
        test_greedy(&fx);
        test_bad_inputs(&fx);
    }
    ellm_model_free(fx.model);
    ellm_gguf_close(fx.file);
    return test_finish("test_model");
}
