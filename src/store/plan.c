/* The memory planner: what a model needs at a context length. The header gives the shape shown
 * to the user; the figures are the engine's own (edgellm_context_estimate_memory). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/api_internal.h"
#include "core/status.h"
#include "core/tensor_types.h"
#include "gguf/gguf.h"
#include "store/store_internal.h"

static int32_t get_i32(const gguf_file *f, const char *arch, const char *suffix, int32_t dflt)
{
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    uint32_t v = 0;
    if (ellm_gguf_get_u32(f, key, &v) != EDGELLM_OK || v > INT32_MAX)
        return dflt;
    return (int32_t)v;
}

edgellm_status ellm_store_read_shape(const char *gguf_path, store_model_shape *out)
{
    memset(out, 0, sizeof *out);
    gguf_file *f = NULL;
    edgellm_status st = ellm_gguf_open(gguf_path, &f);
    if (st != EDGELLM_OK)
        return st;
    gguf_str arch = {0};
    /* The name is printed by plan and info: from a file, so only when it is printable. */
    if (ellm_gguf_get_str(f, "general.architecture", &arch) == EDGELLM_OK && arch.len > 0 &&
        arch.len < sizeof out->architecture && !memchr(arch.data, '\0', arch.len)) {
        memcpy(out->architecture, arch.data, arch.len);
        out->architecture[arch.len] = '\0';
    }
    if (!out->architecture[0] || ellm_st_has_control(out->architecture)) {
        snprintf(out->architecture, sizeof out->architecture, "unknown");
    }
    const char *a = out->architecture;
    out->n_embd = get_i32(f, a, "embedding_length", 0);
    out->n_layer = get_i32(f, a, "block_count", 0);
    out->n_head = get_i32(f, a, "attention.head_count", 0);
    out->n_head_kv = get_i32(f, a, "attention.head_count_kv", out->n_head);
    out->n_ff = get_i32(f, a, "feed_forward_length", 0);
    out->n_ctx_train = get_i32(f, a, "context_length", 0);
    out->head_dim = get_i32(f, a, "attention.key_length",
                            out->n_head > 0 ? out->n_embd / out->n_head : 0);
    const gguf_array *tokens = NULL;
    if (ellm_gguf_get_array(f, "tokenizer.ggml.tokens", &tokens) == EDGELLM_OK &&
        tokens->n <= INT32_MAX)
        out->n_vocab = (int32_t)tokens->n;

    /* The quantization is the type holding most weight bytes among the matrices. */
    uint64_t bytes_by_type[64] = {0};
    for (uint64_t i = 0; i < ellm_gguf_tensor_count(f); i++) {
        const gguf_tensor_info *t = ellm_gguf_tensor_at(f, i);
        out->n_params += t->n_elements;
        out->weights_bytes += t->n_bytes;
        if (t->n_dims >= 2 && t->type < 64)
            bytes_by_type[t->type] += t->n_bytes;
        if (out->n_vocab == 0 && ellm_gguf_str_eq(t->name, "token_embd.weight") &&
            t->ne[1] <= INT32_MAX)
            out->n_vocab = (int32_t)t->ne[1];
    }
    uint32_t best = 0;
    for (uint32_t t = 1; t < 64; t++)
        if (bytes_by_type[t] > bytes_by_type[best])
            best = t;
    snprintf(out->quantization, sizeof out->quantization, "%s", ellm_type_name(best));
    out->file_bytes = ellm_gguf_file_size(f);
    ellm_gguf_close(f);
    if (out->n_embd <= 0 || out->n_layer <= 0 || out->n_head <= 0)
        return ellm_fail(
            EDGELLM_ERR_FORMAT,
            "%s lacks %s.embedding_length / block_count / attention.head_count: cannot "
            "plan its memory",
            gguf_path, a);
    return EDGELLM_OK;
}

/* The process around the engine: code, libc, the thread pool's stacks touched, vocabulary
 * tables. */
static uint64_t process_overhead(int32_t n_vocab)
{
    return 6ull * 1024 * 1024 + (uint64_t)(n_vocab > 0 ? n_vocab : 0) * 64ull;
}

edgellm_status ellm_store_plan_model(const edgellm_model *model,
                                     const edgellm_context_params *params, store_plan *out)
{
    memset(out, 0, sizeof *out);
    edgellm_memory_estimate engine;
    edgellm_status st = edgellm_context_estimate_memory(model, params, &engine);
    if (st != EDGELLM_OK)
        return st;
    out->weights_bytes = engine.weights_bytes;
    out->kv_bytes = engine.kv_cache_bytes;
    out->scratch_bytes = engine.scratch_bytes;
    out->overhead_bytes = process_overhead(edgellm_n_vocab(model));
    out->total_bytes = engine.total_bytes + out->overhead_bytes;
    return EDGELLM_OK;
}

edgellm_status ellm_store_plan_shape(const store_model_shape *shape,
                                     const edgellm_context_params *params, store_plan *out)
{
    memset(out, 0, sizeof *out);
    ellm_type type;
    if (!ellm_type_from_name(shape->quantization, &type))
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "cannot plan a shape of quantization '%s'",
                         shape->quantization);
    bool any_context = shape->n_ctx_train <= 0;
    if (any_context && (!params || params->n_ctx <= 0))
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "a shape without a training context needs a context length to plan");
    ellm_hparams hp;
    memset(&hp, 0, sizeof hp);
    hp.n_vocab = shape->n_vocab;
    hp.n_ctx_train = any_context ? params->n_ctx : shape->n_ctx_train;
    hp.n_embd = shape->n_embd;
    hp.n_layer = shape->n_layer;
    hp.n_head = shape->n_head;
    hp.n_head_kv = shape->n_head_kv;
    hp.head_dim = shape->head_dim;
    hp.n_ff = shape->n_ff;
    edgellm_memory_estimate engine;
    edgellm_status st = ellm_estimate_memory_for_shape(&hp, type, shape->weights_bytes, params,
                                                       &engine);
    if (st != EDGELLM_OK)
        return st;
    out->weights_bytes = engine.weights_bytes;
    out->kv_bytes = engine.kv_cache_bytes;
    out->scratch_bytes = engine.scratch_bytes;
    out->overhead_bytes = process_overhead(shape->n_vocab);
    out->total_bytes = engine.total_bytes + out->overhead_bytes;
    return EDGELLM_OK;
}

int32_t ellm_store_plan_max_context(const edgellm_model *model,
                                    const edgellm_context_params *params, uint64_t budget,
                                    int32_t limit)
{
    edgellm_context_params at = params ? *params : edgellm_context_default_params();
    store_plan p;
    at.n_ctx = 1;
    if (ellm_store_plan_model(model, &at, &p) != EDGELLM_OK || p.total_bytes > budget)
        return 0;
    int32_t lo = 1, hi = limit;
    at.n_ctx = hi;
    if (ellm_store_plan_model(model, &at, &p) == EDGELLM_OK && p.total_bytes <= budget)
        return hi;
    while (hi - lo > 1) {
        at.n_ctx = lo + (hi - lo) / 2;
        if (ellm_store_plan_model(model, &at, &p) == EDGELLM_OK && p.total_bytes <= budget)
            lo = at.n_ctx;
        else
            hi = at.n_ctx;
    }
    return lo;
}

uint64_t ellm_store_machine_ram(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (f) {
        char line[256];
        unsigned long long kb = 0;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
                break;
        fclose(f);
        if (kb > 0)
            return (uint64_t)kb * 1024ull;
    }
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : 0;
}

uint64_t ellm_st_min_ram(const edgellm_model *model)
{
    edgellm_model_info info;
    edgellm_context_params params = edgellm_context_default_params();
    params.n_threads = 1;
    params.n_ctx = edgellm_model_get_info(model, &info) == EDGELLM_OK && info.n_ctx_train > 0 &&
                           info.n_ctx_train < 512
                       ? info.n_ctx_train
                       : 512;
    store_plan plan;
    return ellm_store_plan_model(model, &params, &plan) == EDGELLM_OK ? plan.total_bytes : 0;
}
