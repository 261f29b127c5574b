/* The memory planner against what the engine allocates. Every heap allocation of this process
 * goes through the wrappers below (linked with -Wl,--wrap), which count the bytes
 * edgellm_context_create keeps; the planner's KV cache + scratch for the same parameters must
 * equal that count, for F32, Q4_0 and pruned models (layers of different head and FFN counts),
 * F16/F32/Q8_0 caches, several contexts, batches and thread counts. Only the thread pool's
 * per-worker start arguments may be in flight when counting stops (each worker frees its own as
 * it starts), so the bound is a few bytes per thread: a planner that estimates instead of
 * following the engine's layout misses by kilobytes at least. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert/synth.h"
#include "edgellm.h"
#include "optimise/prune.h"
#include "store/store.h"
#include "test_util.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t count, size_t n);
void *__real_realloc(void *p, size_t n);
int __real_posix_memalign(void **p, size_t alignment, size_t n);
void __real_free(void *p);

enum { MAX_TRACKED = 4096 };
static pthread_mutex_t tracking_lock = PTHREAD_MUTEX_INITIALIZER;
static bool counting;
static struct {
    void *p;
    size_t n;
} tracked[MAX_TRACKED];
static int n_tracked;
static bool tracking_overflowed;
static uint64_t live_bytes;

static void note_alloc(void *p, size_t n)
{
    if (!p)
        return;
    pthread_mutex_lock(&tracking_lock);
    if (counting) {
        if (n_tracked < MAX_TRACKED) {
            tracked[n_tracked].p = p;
            tracked[n_tracked++].n = n;
            live_bytes += n;
        } else {
            tracking_overflowed = true;
        }
    }
    pthread_mutex_unlock(&tracking_lock);
}

static void note_free(void *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&tracking_lock);
    for (int i = 0; i < n_tracked; i++)
        if (tracked[i].p == p) {
            live_bytes -= tracked[i].n;
            tracked[i] = tracked[--n_tracked];
            break;
        }
    pthread_mutex_unlock(&tracking_lock);
}

void *__wrap_malloc(size_t n)
{
    void *p = __real_malloc(n);
    note_alloc(p, n);
    return p;
}

void *__wrap_calloc(size_t count, size_t n)
{
    void *p = __real_calloc(count, n);
    note_alloc(p, count * n);
    return p;
}

void *__wrap_realloc(void *p, size_t n)
{
    note_free(p);
    void *q = __real_realloc(p, n);
    note_alloc(q, n);
    return q;
}

int __wrap_posix_memalign(void **p, size_t alignment, size_t n)
{
    int rc = __real_posix_memalign(p, alignment, n);
    if (rc == 0)
        note_alloc(*p, n);
    return rc;
}

void __wrap_free(void *p)
{
    note_free(p);
    __real_free(p);
}

/* Creates a context with cp and returns the heap bytes it holds (0 when creation failed). */
static uint64_t allocated_by_context(edgellm_model *m, const edgellm_context_params *cp,
                                     edgellm_status *st)
{
    pthread_mutex_lock(&tracking_lock);
    n_tracked = 0;
    live_bytes = 0;
    counting = true;
    pthread_mutex_unlock(&tracking_lock);
    edgellm_context *ctx = NULL;
    *st = edgellm_context_create(m, cp, &ctx);
    pthread_mutex_lock(&tracking_lock);
    counting = false;
    uint64_t bytes = live_bytes;
    pthread_mutex_unlock(&tracking_lock);
    edgellm_context_free(ctx);
    return *st == EDGELLM_OK ? bytes : 0;
}

static void check_model(const char *label, const char *path, int32_t n_ctx_max)
{
    edgellm_model *m = NULL;
    CHECK_MSG(edgellm_model_load(path, NULL, &m) == EDGELLM_OK, "%s: %s", label,
              edgellm_last_error());
    if (!m)
        return;
    const edgellm_kv_type kv_types[] = {EDGELLM_KV_F16, EDGELLM_KV_F32, EDGELLM_KV_Q8_0};
    const int32_t contexts[] = {1, 37, n_ctx_max};
    const int32_t threads[] = {1, 3};
    const int32_t batches[] = {0, 16};
    int compared = 0;
    uint64_t worst = 0;
    for (size_t k = 0; k < 3; k++)
        for (size_t c = 0; c < 3; c++)
            for (size_t t = 0; t < 2; t++)
                for (size_t b = 0; b < 2; b++) {
                    edgellm_context_params cp = edgellm_context_default_params();
                    cp.kv_type = kv_types[k];
                    cp.n_ctx = contexts[c];
                    cp.n_threads = threads[t];
                    if (batches[b] > 0)
                        cp.n_batch = batches[b];
                    store_plan plan;
                    edgellm_status planned = ellm_store_plan_model(m, &cp, &plan), created;
                    uint64_t allocated = allocated_by_context(m, &cp, &created);
                    CHECK_MSG(planned == created, "%s: the plan says %d, context creation %d",
                              label, (int)planned, (int)created);
                    if (planned != EDGELLM_OK || created != EDGELLM_OK)
                        continue;
                    uint64_t expected = plan.kv_bytes + plan.scratch_bytes;
                    uint64_t diff = expected > allocated ? expected - allocated
                                                         : allocated - expected;
                    worst = diff > worst ? diff : worst;
                    CHECK_MSG(diff <= 32u * (uint64_t)cp.n_threads,
                              "%s, kv type %d, ctx %d, %d threads, batch %d: planned %llu bytes "
                              "(KV %llu + scratch %llu), the context allocated %llu",
                              label, (int)cp.kv_type, cp.n_ctx, cp.n_threads, cp.n_batch,
                              (unsigned long long)expected, (unsigned long long)plan.kv_bytes,
                              (unsigned long long)plan.scratch_bytes,
                              (unsigned long long)allocated);
                    compared++;
                }
    printf("%s: %d plans compared with the allocation, largest difference %llu bytes\n", label,
           compared, (unsigned long long)worst);
    CHECK_MSG(compared >= 12, "%s: only %d plans could be compared", label, compared);
    edgellm_model_free(m);
}

int main(void)
{
    CHECK(!tracking_overflowed);
    const char *aidreams = test_shared_path("models/aidreams260K-f32.gguf");
    check_model("aidreams (F32)", aidreams, 128);

    /* Quantized matrices need activation scratch; grouped-query attention, head size 32. */
    char synth[512];
    snprintf(synth, sizeof synth, "%s/test_plan_layout_q4_0.gguf", EDGELLM_TEST_TMP);
    ellm_synth_shape shape = {"plan-test", 128, 2, 4, 2, 320, 512, 10000.0f, false};
    CHECK(ellm_synth_model(&shape, ELLM_TYPE_Q4_0, aidreams, synth, 7) == EDGELLM_OK);
    check_model("synthetic Q4_0", synth, 512);

    /* Pruned: layers keep different head and FFN counts. */
    char pruned[512];
    snprintf(pruned, sizeof pruned, "%s/test_plan_layout_pruned.gguf", EDGELLM_TEST_TMP);
    ellm_prune_params prune = {.heads = 0.5f, .ffn = 0.25f};
    CHECK(ellm_prune_model(aidreams, pruned, &prune) == EDGELLM_OK);
    check_model("aidreams pruned (heads 0.5, FFN 0.25)", pruned, 128);

    /* A shape without a file (recommend's size classes) plans as the loaded model of that shape. */
    store_model_shape as_shape;
    CHECK(ellm_store_read_shape(synth, &as_shape) == EDGELLM_OK);
    edgellm_model *m = NULL;
    CHECK(edgellm_model_load(synth, NULL, &m) == EDGELLM_OK);
    edgellm_context_params cp = edgellm_context_default_params();
    cp.n_ctx = 300;
    cp.n_threads = 2;
    store_plan from_file, from_shape;
    CHECK(m && ellm_store_plan_model(m, &cp, &from_file) == EDGELLM_OK);
    CHECK(ellm_store_plan_shape(&as_shape, &cp, &from_shape) == EDGELLM_OK);
    CHECK_MSG(from_shape.kv_bytes == from_file.kv_bytes &&
                  from_shape.scratch_bytes == from_file.scratch_bytes,
              "shape plan KV %llu scratch %llu, model plan KV %llu scratch %llu",
              (unsigned long long)from_shape.kv_bytes, (unsigned long long)from_shape.scratch_bytes,
              (unsigned long long)from_file.kv_bytes, (unsigned long long)from_file.scratch_bytes);
    edgellm_model_free(m);
    CHECK(!tracking_overflowed);
    return test_finish("test_plan_layout");
}
