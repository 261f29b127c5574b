/* The memory planner: what a model needs at a context length, from its GGUF header alone. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/status.h"
#include "core/tensor_types.h"
#include "gguf/gguf.h"
#include "store/store_internal.h"

static int32_t get_i32(const gguf_file *f, const char *arch, const char *suffix, int32_t dflt)
{
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    uint32_t v = 0;
    if (gguf_get_u32(f, key, &v) != EDGELLM_OK || v > INT32_MAX)
        return dflt;
    return (int32_t)v;
}

edgellm_status store_read_shape(const char *gguf_path, store_model_shape *out)
{
    memset(out, 0, sizeof *out);
    gguf_file *f = NULL;
    edgellm_status st = gguf_open(gguf_path, &f);
    if (st != EDGELLM_OK)
        return st;
    gguf_str arch = {0};
    /* The name is printed by plan and info: from a file, so only when it is printable. */
    if (gguf_get_str(f, "general.architecture", &arch) == EDGELLM_OK && arch.len > 0 &&
        arch.len < sizeof out->architecture && !memchr(arch.data, '\0', arch.len)) {
        memcpy(out->architecture, arch.data, arch.len);
        out->architecture[arch.len] = '\0';
    }
    if (!out->architecture[0] || st_has_control(out->architecture)) {
        snprintf(out->architecture, sizeof out->architecture, "unknown");
    }
    const char *a = out->architecture;
    out->n_embd = get_i32(f, a, "embedding_length", 0);
    out->n_layer = get_i32(f, a, "block_count", 0);
    out->n_head = get_i32(f, a, "attention.head_count", 0);
    out->n_head_kv = get_i32(f, a, "attention.head_count_kv", out->n_head);
    out->n_ff = get_i32(f, a, "feed_forward_length", 0);
    out->n_ctx_train = get_i32(f, a, "context_length", 0);
    out->head_dim = get_i32(f, a, "attention.key_length", out->n_head > 0 ? out->n_embd / out->n_head : 0);
    const gguf_array *tokens = NULL;
    if (gguf_get_array(f, "tokenizer.ggml.tokens", &tokens) == EDGELLM_OK && tokens->n <= INT32_MAX)
        out->n_vocab = (int32_t)tokens->n;

    /* The quantization is the type holding most weight bytes among the matrices. */
    uint64_t bytes_by_type[64] = {0};
    for (uint64_t i = 0; i < gguf_tensor_count(f); i++) {
        const gguf_tensor_info *t = gguf_tensor_at(f, i);
        out->n_params += t->n_elements;
        out->weights_bytes += t->n_bytes;
        if (t->n_dims >= 2 && t->type < 64)
            bytes_by_type[t->type] += t->n_bytes;
        if (out->n_vocab == 0 && gguf_str_eq(t->name, "token_embd.weight") && t->ne[1] <= INT32_MAX)
            out->n_vocab = (int32_t)t->ne[1];
    }
    uint32_t best = 0;
    for (uint32_t t = 1; t < 64; t++)
        if (bytes_by_type[t] > bytes_by_type[best])
            best = t;
    snprintf(out->quantization, sizeof out->quantization, "%s", ellm_type_name(best));
    out->file_bytes = gguf_file_size(f);
    gguf_close(f);
    if (out->n_embd <= 0 || out->n_layer <= 0 || out->n_head <= 0)
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "%s lacks %s.embedding_length / block_count / attention.head_count: cannot "
                         "plan its memory",
                         gguf_path, a);
    return EDGELLM_OK;
}

void store_plan_memory(const store_model_shape *s, int32_t n_ctx, int kv_bytes_per_elem,
                       int32_t n_batch, store_plan *out)
{
    if (n_ctx <= 0)
        n_ctx = s->n_ctx_train > 0 ? s->n_ctx_train : 2048;
    if (n_batch <= 0)
        n_batch = 32;
    if (n_batch > n_ctx)
        n_batch = n_ctx;
    uint64_t kv_dim = (uint64_t)s->n_head_kv * (uint64_t)s->head_dim;
    uint64_t q_dim = (uint64_t)s->n_head * (uint64_t)s->head_dim;
    memset(out, 0, sizeof *out);
    out->weights_bytes = s->weights_bytes;
    out->kv_bytes = 2ull * (uint64_t)s->n_layer * (uint64_t)n_ctx * kv_dim * (uint64_t)kv_bytes_per_elem;
    /* Float32 activations for one batch: residual and normed copies, q/k/v, the FFN hidden
     * pair, attention scores over the whole context, and the logits of the last row. */
    uint64_t per_token = 3ull * (uint64_t)s->n_embd + q_dim + 2ull * kv_dim + 2ull * (uint64_t)s->n_ff +
                         (uint64_t)s->n_head * (uint64_t)n_ctx;
    out->scratch_bytes = 4ull * ((uint64_t)n_batch * per_token + (uint64_t)s->n_vocab);
    /* The process itself: code, libc, the thread pool's stacks touched, vocabulary tables. */
    out->overhead_bytes = 6ull * 1024 * 1024 + (uint64_t)s->n_vocab * 64ull;
    out->total_bytes = out->weights_bytes + out->kv_bytes + out->scratch_bytes + out->overhead_bytes;
}

int32_t store_plan_max_context(const store_model_shape *shape, uint64_t budget,
                               int kv_bytes_per_elem, int32_t n_batch, int32_t limit)
{
    store_plan p;
    store_plan_memory(shape, 1, kv_bytes_per_elem, n_batch, &p);
    if (p.total_bytes > budget)
        return 0;
    int32_t lo = 1, hi = limit > 0 ? limit : 1 << 20;
    store_plan_memory(shape, hi, kv_bytes_per_elem, n_batch, &p);
    if (p.total_bytes <= budget)
        return hi;
    while (hi - lo > 1) {
        int32_t mid = lo + (hi - lo) / 2;
        store_plan_memory(shape, mid, kv_bytes_per_elem, n_batch, &p);
        if (p.total_bytes <= budget)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

uint64_t store_machine_ram(void)
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

uint64_t st_min_ram(const store_model_shape *shape)
{
    store_plan p;
    int32_t ctx = shape->n_ctx_train > 0 && shape->n_ctx_train < 512 ? shape->n_ctx_train : 512;
    store_plan_memory(shape, ctx, 2, 32, &p);
    return p.total_bytes;
}
