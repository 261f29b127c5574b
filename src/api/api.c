/* The public C API over the modules: models, contexts, tokenization and evaluation. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"
#include "core/finite.h"
#include "core/status.h"
#include "core/threadpool.h"
#include "edgellm.h"
#include "generate/generation.h"
#include "gguf/gguf.h"
#include "grammar/grammar.h"
#include "model/model.h"
#include "model/profile.h"
#include "quant/attention_kernels.h"
#include "quant/quant.h"
#include "tokenizer/tokenizer.h"

struct edgellm_model {
    gguf_file *file;
    ellm_model *model; /* NULL when loaded vocabulary-only */
    char *architecture;
    ellm_vocab *vocab;
    char *name;
    char quantization[16];
    char **tensor_names;
    uint64_t n_params;
    uint64_t weights_bytes;
    ellm_token_trie *token_trie; /* for grammars; built on first use under token_trie_lock */
    /* The application's handle and every context, batch, grammar and text stream made from the
     * model: freeing the model before them must not pull the weights from under them. */
    atomic_int refs;
};

static pthread_mutex_t token_trie_lock = PTHREAD_MUTEX_INITIALIZER;

struct edgellm_context {
    edgellm_model *model;
    ellm_state *state;
    ellm_threadpool *pool;
    edgellm_context_params params;
    edgellm_token *tokens; /* what the KV cache holds, n_ctx capacity */
    float *logits;         /* logits_cap rows: 1 until an eval asks for every position */
    int32_t logits_cap;
    int32_t logits_rows;   /* rows of the last eval kept */
    int32_t logits_first;  /* batch position of logits row 0 */
    bool batch_all_logits; /* edgellm_eval_batch keeps a row for every token it is given */
    ellm_profile *profile; /* while profiling is on */
    /* CTX_RUNNING while a public call runs the model, plus ELLM_CANCEL_REQUESTED once
     * edgellm_context_cancel asked it to stop; one word, so a cancel can only land on a running
     * call and never outlives it. */
    atomic_uint run_state;
    int32_t call_depth; /* nesting of those calls; only the calling thread touches it */
    /* A generation that ended at its token budget leaves its last token unevaluated (nothing reads
     * its logits unless the conversation goes on); the next keep_cache generation evaluates it
     * first. pending_at is the cache length it follows, -1 when there is none. */
    edgellm_token pending;
    int32_t pending_at;
    /* The step-by-step generation begun on this context and not yet finished: it owns the cache
     * between its calls, so the public calls that would change the cache are refused. */
    edgellm_generation *generation;
    /* Under draft_lock: the open generations that use this context as their draft, and whether
     * one of their passes is drafting with it now. */
    ellm_draft_hold *drafting;
    bool draft_claimed;
};

/* Generations on different threads may share a draft context: this lock orders their begins,
 * finishes and drafting passes, and the context's free, on what they share (each context's
 * drafting list and claim, and its open generation as other threads' begins see it). Held for a
 * few instructions, never while a model runs, so no generation waits for another's drafting. */
static pthread_mutex_t draft_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t draft_unclaimed = PTHREAD_COND_INITIALIZER;

#define CTX_RUNNING 1u

struct edgellm_batch {
    edgellm_model *model;
    ellm_state *work; /* scratch for every token of a pass; no KV cache of its own */
    ellm_threadpool *pool;
    int32_t n_batch;
    ellm_forward_seq *seqs;
    float *logits; /* one row per context of a pass */
};

const char *edgellm_version(void) { return EDGELLM_VERSION_STRING; }
const char *edgellm_kernel_set(void) { return ellm_kernel_set_name(); }

edgellm_status edgellm_use_kernel_set(const char *name)
{
    if (!name || !*name) {
        ellm_quant_use_kernel_set(NULL);
        return EDGELLM_OK;
    }
    if (ellm_quant_use_kernel_set(name))
        return EDGELLM_OK;
    const char *names[16];
    int n = ellm_kernel_sets_available(names, 16);
    char list[256] = "";
    for (int i = 0; i < n && i < 16; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", names[i]);
    if (ellm_kernel_set_in_build(name))
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "kernel set '%s' needs CPU features this machine lacks; it runs: %s", name,
                         list);
    return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                     "unknown kernel set '%s' (or one of another architecture); this CPU runs: %s",
                     name, list);
}

const char *edgellm_kernel_arithmetic(const char *type)
{
    if (type && !strcmp(type, "attention")) {
        const char *isa = ellm_attention_kernels_active()->isa;
        return !strcmp(isa, "avx512") ? "f32-fma-avx512"
               : !strcmp(isa, "avx2") ? "f32-fma-avx2"
               : !strcmp(isa, "neon") ? "f32-fma-neon"
                                      : "scalar";
    }
    ellm_type t;
    const ellm_type_kernels *k = type && ellm_type_from_name(type, &t) ? ellm_kernels_for(t) : NULL;
    if (!k)
        return NULL;
    bool floats = k->vec_dot_type == ELLM_TYPE_F32;
    /* Prefill runs the tiles, so their ISA decides where there are tiles from another set. */
    const char *isa = k->gemm && k->gemm_isa ? k->gemm_isa : k->isa;
    if (!strcmp(isa, "avx512"))
        return floats ? "f32-fma-avx512" : "int8-vnni512";
    if (!strcmp(isa, "avx2"))
        return floats ? "f32-fma-avx2" : "int8-avx2";
    if (!strcmp(isa, "neon-dotprod"))
        return floats ? "f32-fma-neon" : "int8-sdot";
    if (!strcmp(isa, "neon"))
        return floats ? "f32-fma-neon" : "int8-neon";
    return "scalar";
}

edgellm_model_params edgellm_model_default_params(void)
{
    edgellm_model_params p = {0};
    return p;
}

/* The weight type covering most bytes among the 2-D tensors. */
static void describe_weights(edgellm_model *m)
{
    uint64_t by_type[ELLM_TYPE_COUNT] = {0};
    for (uint64_t i = 0; i < ellm_gguf_tensor_count(m->file); i++) {
        const gguf_tensor_info *t = ellm_gguf_tensor_at(m->file, i);
        m->n_params += t->n_elements;
        m->weights_bytes += t->n_bytes;
        if (t->n_dims >= 2 && t->type < ELLM_TYPE_COUNT)
            by_type[t->type] += t->n_bytes;
    }
    uint32_t best = 0;
    for (uint32_t t = 0; t < ELLM_TYPE_COUNT; t++)
        if (by_type[t] > by_type[best])
            best = t;
    snprintf(m->quantization, sizeof m->quantization, "%s", ellm_type_name(best));
}

/* An empty model held by its handle alone. */
static edgellm_model *model_alloc(void)
{
    edgellm_model *m = calloc(1, sizeof *m);
    if (m)
        atomic_init(&m->refs, 1);
    return m;
}

/* Builds the model over an opened GGUF file (owned by m from here on); path names the file in
 * messages. */
static edgellm_status model_from_file(edgellm_model *m, const char *path, bool vocab_only,
                                      edgellm_model **out);

edgellm_status edgellm_model_load(const char *path, const edgellm_model_params *params,
                                  edgellm_model **out)
{
    if (!out)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "edgellm_model_load: out_model is NULL");
    *out = NULL;
    if (!path || !*path)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "edgellm_model_load: no path given");
    edgellm_page_advice pages = params ? params->pages : EDGELLM_PAGES_HUGE;
    if (pages != EDGELLM_PAGES_HUGE && pages != EDGELLM_PAGES_SMALL)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "edgellm_model_load: pages is %d (EDGELLM_PAGES_HUGE or "
                         "EDGELLM_PAGES_SMALL)",
                         (int)pages);
    edgellm_model *m = model_alloc();
    if (!m)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for a model");
    edgellm_status st = ellm_gguf_open_paged(path, pages, &m->file);
    if (st != EDGELLM_OK) {
        free(m);
        return st;
    }
    return model_from_file(m, path, params && params->vocab_only, out);
}

edgellm_status edgellm_model_load_from_memory(const void *data, size_t size,
                                              const edgellm_model_params *params,
                                              edgellm_model **out)
{
    if (!out)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "edgellm_model_load_from_memory: out_model is NULL");
    *out = NULL;
    if (!data && size)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "edgellm_model_load_from_memory: no data given");
    edgellm_model *m = model_alloc();
    if (!m)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for a model");
    edgellm_status st = ellm_gguf_parse(data ? data : "", size, &m->file);
    if (st != EDGELLM_OK) {
        free(m);
        return ellm_fail_wrap(st, "the model bytes");
    }
    return model_from_file(m, "model bytes", params && params->vocab_only, out);
}

edgellm_status ellm_context_lay_out_model(edgellm_context *ctx, void *bytes, size_t size)
{
    if (!ctx || !ctx->model || !ctx->model->model)
        return EDGELLM_OK;
    int laid_out;
    return ellm_model_lay_out_rows(ctx->model->model, bytes, size, ctx->pool, &laid_out);
}

static edgellm_status model_from_file(edgellm_model *m, const char *path, bool vocab_only,
                                      edgellm_model **out)
{
    edgellm_status st = EDGELLM_OK;
    if (!vocab_only && ellm_gguf_tensor_count(m->file) == 0)
        st = ellm_fail(EDGELLM_ERR_FORMAT,
                       "'%s' holds no tensors (a vocabulary-only file?); it can only be loaded "
                       "for tokenization (edgellm_model_params.vocab_only)",
                       path);
    if (st == EDGELLM_OK && !vocab_only) {
        st = ellm_model_create(m->file, &m->model);
        if (st != EDGELLM_OK)
            st = ellm_fail_wrap(st, "'%s'", path);
    }
    if (st == EDGELLM_OK) {
        st = ellm_vocab_load(m->file, &m->vocab);
        if (st != EDGELLM_OK)
            st = ellm_fail_wrap(st, "'%s'", path);
    }
    if (st == EDGELLM_OK && m->model &&
        ellm_vocab_size(m->vocab) != ellm_model_hparams(m->model)->n_vocab)
        st = ellm_fail(EDGELLM_ERR_FORMAT,
                       "'%s': the vocabulary has %d tokens but the embedding has %d rows", path,
                       ellm_vocab_size(m->vocab), ellm_model_hparams(m->model)->n_vocab);
    if (st == EDGELLM_OK) {
        gguf_str name = {0, ""};
        ellm_gguf_get_str(m->file, "general.name", &name);
        /* Quoted to terminals and logs by every application (info, bench, a chat UI's title):
         * a hostile general.name must not carry escape sequences there. */
        m->name = ellm_gguf_str_dup(name);
        if (m->name)
            ellm_make_printable(m->name);
        gguf_str arch = {0, ""};
        ellm_gguf_get_str(m->file, "general.architecture", &arch);
        m->architecture = ellm_gguf_str_dup(arch);
        if (!m->architecture)
            st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for model metadata");
        uint64_t n = ellm_gguf_tensor_count(m->file);
        m->tensor_names = calloc(n ? n : 1, sizeof *m->tensor_names);
        if (!m->name || !m->tensor_names)
            st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for model metadata");
        for (uint64_t i = 0; st == EDGELLM_OK && i < n; i++) {
            m->tensor_names[i] = ellm_gguf_str_dup(ellm_gguf_tensor_at(m->file, i)->name);
            if (!m->tensor_names[i])
                st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for model metadata");
            else
                ellm_make_printable(m->tensor_names[i]);
        }
    }
    if (st != EDGELLM_OK) {
        edgellm_model_free(m);
        return st;
    }
    describe_weights(m);
    *out = m;
    return EDGELLM_OK;
}

void ellm_model_retain(const edgellm_model *m)
{
    /* The count is bookkeeping, not the model's content, which stays read-only. */
    atomic_fetch_add(&((edgellm_model *)m)->refs, 1);
}

void ellm_model_release(const edgellm_model *cm)
{
    edgellm_model *m = (edgellm_model *)cm;
    if (atomic_fetch_sub(&m->refs, 1) != 1)
        return;
    if (m->tensor_names && m->file)
        for (uint64_t i = 0; i < ellm_gguf_tensor_count(m->file); i++)
            free(m->tensor_names[i]);
    free(m->tensor_names);
    free(m->name);
    free(m->architecture);
    ellm_token_trie_destroy(m->token_trie);
    ellm_vocab_free(m->vocab);
    ellm_model_free(m->model);
    ellm_gguf_close(m->file);
    free(m);
}

void edgellm_model_free(edgellm_model *m)
{
    if (m)
        ellm_model_release(m);
}

edgellm_status edgellm_model_get_info(const edgellm_model *m, edgellm_model_info *info)
{
    if (!m || !info)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "edgellm_model_get_info: NULL argument");
    memset(info, 0, sizeof *info);
    if (!m->model) {
        info->architecture = m->architecture;
        info->name = m->name;
        info->quantization = m->quantization;
        info->n_vocab = ellm_vocab_size(m->vocab);
        info->file_bytes = ellm_gguf_file_size(m->file);
        return EDGELLM_OK;
    }
    const ellm_hparams *hp = ellm_model_hparams(m->model);
    info->architecture = hp->arch;
    info->name = m->name;
    info->quantization = m->quantization;
    info->n_vocab = hp->n_vocab;
    info->n_ctx_train = hp->n_ctx_train;
    info->n_embd = hp->n_embd;
    info->n_layer = hp->n_layer;
    info->n_head = hp->n_head;
    info->n_head_kv = hp->n_head_kv;
    info->n_ff = hp->n_ff;
    info->head_dim = hp->head_dim;
    info->rms_norm_eps = hp->rms_norm_eps;
    info->rope_freq_base = hp->rope_freq_base;
    info->rope_freq_scale = hp->rope_freq_scale;
    info->rope_neox = hp->rope_neox;
    info->tied_embeddings = hp->tied_embeddings;
    info->n_params = m->n_params;
    info->weights_bytes = m->weights_bytes;
    info->file_bytes = ellm_gguf_file_size(m->file);
    return EDGELLM_OK;
}

edgellm_context_params edgellm_context_default_params(void)
{
    edgellm_context_params p = {
        .n_ctx = 0, .n_threads = 0, .n_batch = 256, .kv_type = EDGELLM_KV_F16};
    return p;
}

static edgellm_status resolve_params_for(const ellm_hparams *hp, const edgellm_context_params *in,
                                         ellm_state_params *out)
{
    int32_t n_ctx = in->n_ctx > 0 ? in->n_ctx : hp->n_ctx_train;
    if (in->n_ctx > hp->n_ctx_train)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "context of %d tokens is longer than the model's %d", in->n_ctx,
                         hp->n_ctx_train);
    if (in->kv_type != EDGELLM_KV_F16 && in->kv_type != EDGELLM_KV_F32 &&
        in->kv_type != EDGELLM_KV_Q8_0)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "unknown KV cache type %d",
                         (int)in->kv_type);
    if (in->kv_type == EDGELLM_KV_Q8_0 && ((int64_t)hp->n_head_kv * hp->head_dim) % 32 != 0)
        return ellm_fail(EDGELLM_ERR_UNSUPPORTED,
                         "a Q8_0 KV cache needs KV rows (KV heads x head size, %d here) that are "
                         "a multiple of 32; use an f16 cache",
                         (int)(hp->n_head_kv * hp->head_dim));
    /* Checked here, not only by the pool, so an estimate never sizes buffers for a count that
     * edgellm_context_create would refuse. */
    if (in->n_threads > ELLM_THREADPOOL_MAX)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "%d threads requested; at most %d",
                         (int)in->n_threads, ELLM_THREADPOOL_MAX);
    int32_t n_batch = in->n_batch > 0 ? in->n_batch : 256;
    if (n_batch > n_ctx)
        n_batch = n_ctx;
    out->n_ctx = n_ctx;
    out->n_batch = n_batch;
    out->kv_type = in->kv_type;
    out->n_threads = in->n_threads > 0 ? in->n_threads : ellm_cpu_count();
    out->scratch_only = false;
    return EDGELLM_OK;
}

static edgellm_status resolve_params(const edgellm_model *m, const edgellm_context_params *in,
                                     ellm_state_params *out)
{
    if (!m->model)
        return ellm_fail(EDGELLM_ERR_UNSUPPORTED,
                         "the model was loaded for its vocabulary only (vocab_only); it has no "
                         "weights to evaluate");
    return resolve_params_for(ellm_model_hparams(m->model), in, out);
}

/* Adds what edgellm_context_create holds beside its state: the context itself, its thread pool,
 * its token list and one row of logits (more only while a caller asks for every position's
 * logits). */
static void finish_estimate(const ellm_state_params *sp, int32_t n_vocab, uint64_t weights_bytes,
                            uint64_t kv_bytes, uint64_t state_bytes, edgellm_memory_estimate *out)
{
    out->weights_bytes = weights_bytes;
    out->kv_cache_bytes = kv_bytes;
    out->scratch_bytes = state_bytes + sizeof(edgellm_context) +
                         ellm_threadpool_bytes(sp->n_threads) +
                         (uint64_t)sp->n_ctx * sizeof(edgellm_token) +
                         (uint64_t)n_vocab * sizeof(float);
    out->total_bytes = weights_bytes + kv_bytes + out->scratch_bytes;
}

edgellm_status edgellm_context_estimate_memory(const edgellm_model *m,
                                               const edgellm_context_params *params,
                                               edgellm_memory_estimate *out)
{
    if (!m || !out)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "edgellm_context_estimate_memory: NULL");
    edgellm_context_params cp = params ? *params : edgellm_context_default_params();
    ellm_state_params sp;
    edgellm_status st = resolve_params(m, &cp, &sp);
    if (st != EDGELLM_OK)
        return st;
    uint64_t kv = 0, state = 0;
    ellm_state_memory(m->model, &sp, &kv, &state);
    finish_estimate(&sp, ellm_model_hparams(m->model)->n_vocab, m->weights_bytes, kv, state, out);
    return EDGELLM_OK;
}

edgellm_status ellm_estimate_memory_for_shape(const ellm_hparams *hp, ellm_type matrix_type,
                                              uint64_t weights_bytes,
                                              const edgellm_context_params *params,
                                              edgellm_memory_estimate *out)
{
    edgellm_context_params cp = params ? *params : edgellm_context_default_params();
    ellm_state_params sp;
    edgellm_status st = resolve_params_for(hp, &cp, &sp);
    uint64_t kv = 0, state = 0;
    if (st == EDGELLM_OK)
        st = ellm_state_memory_for_shape(hp, matrix_type, &sp, &kv, &state);
    if (st == EDGELLM_OK)
        finish_estimate(&sp, hp->n_vocab, weights_bytes, kv, state, out);
    return st;
}

edgellm_status edgellm_model_estimate_memory(const edgellm_model *m, int32_t n_ctx,
                                             edgellm_kv_type kv_type, int32_t n_batch,
                                             edgellm_memory_estimate *out)
{
    if (!m || !out)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "edgellm_model_estimate_memory: NULL");
    edgellm_context_params cp = edgellm_context_default_params();
    cp.n_ctx = n_ctx;
    cp.kv_type = kv_type;
    if (n_batch > 0)
        cp.n_batch = n_batch;
    return edgellm_context_estimate_memory(m, &cp, out);
}

int64_t edgellm_model_meta_count(const edgellm_model *m)
{
    return m ? (int64_t)ellm_gguf_kv_count(m->file) : 0;
}

edgellm_status edgellm_model_meta_at(const edgellm_model *m, int64_t index, char *key_buf,
                                     size_t key_cap, char *value_buf, size_t value_cap)
{
    if (!m || index < 0 || (uint64_t)index >= ellm_gguf_kv_count(m->file) || !key_buf ||
        !value_buf || key_cap == 0 || value_cap == 0)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "metadata index %lld out of range",
                         (long long)index);
    const gguf_kv *kv = ellm_gguf_kv_at(m->file, (uint64_t)index);
    snprintf(key_buf, key_cap, "%.*s", (int)(kv->key.len > 4096 ? 4096 : kv->key.len),
             kv->key.data);
    ellm_gguf_value_format(&kv->value, value_buf, value_cap);
    /* Both come from the file: the header promises text an application can print. */
    ellm_make_printable(key_buf);
    ellm_make_printable(value_buf);
    return EDGELLM_OK;
}

edgellm_status edgellm_model_meta_string(const edgellm_model *m, const char *key, char *buf,
                                         size_t cap, size_t *len)
{
    if (!m || !key || !len || (!buf && cap > 0))
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "edgellm_model_meta_string: need a model, a key and a length pointer");
    *len = 0;
    gguf_str value;
    edgellm_status st = ellm_gguf_get_str(m->file, key, &value);
    if (st == EDGELLM_ERR_NOT_FOUND)
        return ellm_fail(st, "the model has no metadata key '%s'", key);
    if (st != EDGELLM_OK)
        return st;
    *len = (size_t)value.len;
    if (cap <= value.len)
        return ellm_fail(EDGELLM_ERR_BUFFER_TOO_SMALL, "metadata '%s' needs %llu bytes", key,
                         (unsigned long long)value.len + 1);
    memcpy(buf, value.data, (size_t)value.len);
    buf[value.len] = '\0';
    return EDGELLM_OK;
}

int64_t edgellm_model_tensor_count(const edgellm_model *m)
{
    return m ? (int64_t)ellm_gguf_tensor_count(m->file) : 0;
}

edgellm_status edgellm_model_tensor_at(const edgellm_model *m, int64_t index,
                                       edgellm_tensor_desc *out)
{
    if (!m || !out || index < 0 || (uint64_t)index >= ellm_gguf_tensor_count(m->file))
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "tensor index %lld out of range",
                         (long long)index);
    const gguf_tensor_info *t = ellm_gguf_tensor_at(m->file, (uint64_t)index);
    out->name = m->tensor_names[index];
    out->type = ellm_type_name(t->type);
    out->n_dims = (int32_t)t->n_dims;
    for (int d = 0; d < 4; d++)
        out->ne[d] = (int64_t)t->ne[d];
    out->n_bytes = t->n_bytes;
    return EDGELLM_OK;
}

/* ---- Tokenizer ---- */

int32_t edgellm_n_vocab(const edgellm_model *m) { return m ? ellm_vocab_size(m->vocab) : 0; }
edgellm_token edgellm_token_bos(const edgellm_model *m)
{
    return m ? ellm_vocab_bos(m->vocab) : -1;
}
edgellm_token edgellm_token_eos(const edgellm_model *m)
{
    return m ? ellm_vocab_eos(m->vocab) : -1;
}
int edgellm_add_bos_default(const edgellm_model *m) { return m && ellm_vocab_add_bos(m->vocab); }

/* The texts a token can write: control, unused and unknown tokens write nothing a grammar could
 * match; end-of-generation tokens are marked so the grammar allows them only when complete. */
static edgellm_status build_token_trie(const edgellm_model *m, ellm_token_trie **out)
{
    int32_t n = ellm_vocab_size(m->vocab);
    char **pieces = calloc((size_t)n, sizeof *pieces);
    int32_t *lens = calloc((size_t)n, sizeof *lens);
    uint8_t *eog = calloc((size_t)n, 1);
    edgellm_status st = EDGELLM_OK;
    if (!pieces || !lens || !eog)
        st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the vocabulary trie");
    char buf[256];
    for (int32_t t = 0; t < n && st == EDGELLM_OK; t++) {
        eog[t] = ellm_vocab_is_eog(m->vocab, t);
        ellm_token_type type = ellm_vocab_token_type(m->vocab, t);
        if (type == ELLM_TOKEN_CONTROL || type == ELLM_TOKEN_UNUSED || type == ELLM_TOKEN_UNKNOWN)
            continue;
        size_t len = 0;
        st = ellm_token_piece(m->vocab, t, buf, sizeof buf, &len);
        if (st == EDGELLM_ERR_BUFFER_TOO_SMALL) {
            pieces[t] = malloc(len);
            st = pieces[t]
                     ? ellm_token_piece(m->vocab, t, pieces[t], len, &len)
                     : ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the vocabulary trie");
        } else if (st == EDGELLM_OK && len > 0) {
            pieces[t] = malloc(len);
            if (pieces[t])
                memcpy(pieces[t], buf, len);
            else
                st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the vocabulary trie");
        }
        lens[t] = (int32_t)len;
    }
    if (st == EDGELLM_OK)
        st = ellm_token_trie_build(n, (const char *const *)pieces, lens, eog, out);
    for (int32_t t = 0; pieces && t < n; t++)
        free(pieces[t]);
    free(pieces);
    free(lens);
    free(eog);
    return st;
}

edgellm_status ellm_model_token_trie(const edgellm_model *m, const ellm_token_trie **out)
{
    edgellm_status st = EDGELLM_OK;
    pthread_mutex_lock(&token_trie_lock);
    if (!m->token_trie)
        st = build_token_trie(m, &((edgellm_model *)m)->token_trie);
    *out = m->token_trie;
    pthread_mutex_unlock(&token_trie_lock);
    return st;
}

int edgellm_token_is_eog(const edgellm_model *m, edgellm_token t)
{
    return m && ellm_vocab_is_eog(m->vocab, t);
}

edgellm_status edgellm_tokenize(const edgellm_model *m, const char *text, size_t len, int flags,
                                edgellm_token *tokens, int32_t max_tokens, int32_t *n_tokens)
{
    if (!m)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "edgellm_tokenize: model is NULL");
    return ellm_tokenize(m->vocab, text, len, (flags & EDGELLM_TOKENIZE_ADD_BOS) != 0,
                         (flags & EDGELLM_TOKENIZE_PARSE_SPECIAL) != 0, tokens, max_tokens,
                         n_tokens);
}

edgellm_status edgellm_token_to_piece(const edgellm_model *m, edgellm_token token, char *buf,
                                      size_t cap, size_t *len)
{
    if (!m || (!buf && cap > 0))
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "edgellm_token_to_piece: need a model, and a buffer when cap > 0");
    return ellm_token_piece(m->vocab, token, buf, cap, len);
}

edgellm_status edgellm_token_text(const edgellm_model *m, edgellm_token token, char *buf,
                                  size_t cap, size_t *len)
{
    if (!m || !len || (!buf && cap > 0))
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "edgellm_token_text: need a model, len, and a buffer when cap > 0");
    *len = 0;
    const char *text = ellm_vocab_token_text(m->vocab, token);
    if (!text)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "token id %d is not in the vocabulary of %d",
                         (int)token, ellm_vocab_size(m->vocab));
    *len = strlen(text);
    if (!buf || cap < *len)
        return ellm_fail(EDGELLM_ERR_BUFFER_TOO_SMALL, "token text needs %zu bytes", *len);
    memcpy(buf, text, *len);
    if (cap > *len)
        buf[*len] = '\0';
    return EDGELLM_OK;
}

edgellm_status edgellm_detokenize(const edgellm_model *m, const edgellm_token *tokens,
                                  int32_t n_tokens, int remove_leading_space, char *buf, size_t cap,
                                  size_t *len)
{
    if (!m || (!buf && cap > 0))
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "edgellm_detokenize: need a model, and a buffer when cap > 0");
    return ellm_detokenize(m->vocab, tokens, n_tokens, remove_leading_space != 0, buf, cap, len);
}

edgellm_status edgellm_model_check_draft(const edgellm_model *target, const edgellm_model *draft)
{
    if (!target || !draft)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "edgellm_model_check_draft: NULL model");
    const ellm_vocab *t = target->vocab, *d = draft->vocab;
    const char *fix = "; a draft model must share the target's tokenizer";
    if (ellm_vocab_size(t) != ellm_vocab_size(d))
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "the draft model has %d tokens, the target %d%s", ellm_vocab_size(d),
                         ellm_vocab_size(t), fix);
    if (ellm_vocab_bos(t) != ellm_vocab_bos(d) || ellm_vocab_eos(t) != ellm_vocab_eos(d))
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "the draft model's BOS/EOS ids are %d/%d, the target's %d/%d%s",
                         ellm_vocab_bos(d), ellm_vocab_eos(d), ellm_vocab_bos(t), ellm_vocab_eos(t),
                         fix);
    for (edgellm_token id = 0; id < ellm_vocab_size(t); id++) {
        const char *a = ellm_vocab_token_text(t, id), *b = ellm_vocab_token_text(d, id);
        if (strcmp(a ? a : "", b ? b : "") != 0)
            return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                             "token %d is '%.40s' in the draft model but '%.40s' in the target%s",
                             (int)id, b ? b : "", a ? a : "", fix);
        if (ellm_vocab_is_eog(t, id) != ellm_vocab_is_eog(d, id))
            return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                             "token %d ends generation in only one of the draft and target "
                             "models%s",
                             (int)id, fix);
    }
    return EDGELLM_OK;
}

/* ---- Contexts ---- */

edgellm_status edgellm_context_create(edgellm_model *m, const edgellm_context_params *params,
                                      edgellm_context **out)
{
    if (!out)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "edgellm_context_create: out is NULL");
    *out = NULL;
    if (!m)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "edgellm_context_create: model is NULL");
    edgellm_context_params cp = params ? *params : edgellm_context_default_params();
    ellm_state_params sp;
    edgellm_status st = resolve_params(m, &cp, &sp);
    if (st != EDGELLM_OK)
        return st;
    edgellm_context *c = calloc(1, sizeof *c);
    if (!c)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for a context");
    c->model = m;
    ellm_model_retain(m);
    c->pending_at = -1;
    atomic_init(&c->run_state, 0);
    c->params = cp;
    c->params.n_ctx = sp.n_ctx;
    c->params.n_batch = sp.n_batch;
    c->params.n_threads = sp.n_threads;
    int32_t n_vocab = ellm_model_hparams(m->model)->n_vocab;
    c->tokens = malloc((size_t)sp.n_ctx * sizeof *c->tokens);
    c->logits = malloc((size_t)n_vocab * sizeof *c->logits);
    c->logits_cap = 1;
    if (!c->tokens || !c->logits)
        st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for a context of %d tokens", sp.n_ctx);
    if (st == EDGELLM_OK)
        st = ellm_threadpool_create(sp.n_threads, &c->pool);
    if (st == EDGELLM_OK)
        st = ellm_state_create(m->model, &sp, &c->state);
    if (st != EDGELLM_OK) {
        edgellm_context_free(c);
        return st;
    }
    ellm_state_set_cancel(c->state, &c->run_state);
    *out = c;
    return EDGELLM_OK;
}

/* Asks the call running on c to stop; whether one was running. */
static bool request_cancel(edgellm_context *c)
{
    unsigned s = atomic_load(&c->run_state);
    while (s & CTX_RUNNING)
        if ((s & ELLM_CANCEL_REQUESTED) ||
            atomic_compare_exchange_weak(&c->run_state, &s, s | ELLM_CANCEL_REQUESTED))
            return true;
    return false;
}

int edgellm_context_cancel(edgellm_context *c)
{
    /* Only an atomic word, no lock: apps call this from signal handlers. The draft's passes
     * drafting for c's generation read c's word too (ellm_draft_claim), so they stop with it. */
    return c && request_cancel(c);
}

void ellm_context_begin_call(edgellm_context *c)
{
    if (c->call_depth++ == 0)
        atomic_store(&c->run_state, CTX_RUNNING);
}

void ellm_context_end_call(edgellm_context *c)
{
    if (--c->call_depth == 0)
        atomic_store(&c->run_state, 0);
}

bool ellm_context_cancel_requested(const edgellm_context *c)
{
    return (atomic_load(&c->run_state) & ELLM_CANCEL_REQUESTED) != 0;
}

ellm_state *ellm_context_state(edgellm_context *c) { return c->state; }

edgellm_status ellm_context_refuse_busy(const edgellm_context *c, const char *what)
{
    if (!c || !c->generation)
        return EDGELLM_OK;
    return ellm_fail(EDGELLM_ERR_BUSY,
                     "%s: the context has an open generation (edgellm_generation_begin); "
                     "call edgellm_generation_finish first, or use another context",
                     what);
}

/* ellm_context_refuse_open with draft_lock held. */
static edgellm_status refuse_open(const edgellm_context *c, const edgellm_context *draft,
                                  const char *what)
{
    if (c && c->drafting)
        return ellm_fail(EDGELLM_ERR_BUSY,
                         "%s: the context is the draft of an open generation; finish that "
                         "generation (edgellm_generation_finish) first, or use another context",
                         what);
    edgellm_status st = ellm_context_refuse_busy(c, what);
    if (st == EDGELLM_OK && draft && draft->generation)
        st = ellm_fail(EDGELLM_ERR_BUSY,
                       "%s: the draft context has an open generation; finish it first", what);
    return st;
}

edgellm_status ellm_context_refuse_open(const edgellm_context *c, const edgellm_context *draft,
                                        const char *what)
{
    pthread_mutex_lock(&draft_lock);
    edgellm_status st = refuse_open(c, draft, what);
    pthread_mutex_unlock(&draft_lock);
    return st;
}

edgellm_status ellm_context_open_generation(edgellm_context *c, edgellm_generation *generation,
                                            edgellm_context *draft, ellm_draft_hold *hold,
                                            const char *what)
{
    pthread_mutex_lock(&draft_lock);
    edgellm_status st = refuse_open(c, draft, what);
    if (st == EDGELLM_OK) {
        c->generation = generation;
        hold->draft = draft;
        if (draft) {
            hold->next = draft->drafting;
            draft->drafting = hold;
        }
    }
    pthread_mutex_unlock(&draft_lock);
    return st;
}

void ellm_context_close_generation(edgellm_context *c, ellm_draft_hold *hold)
{
    pthread_mutex_lock(&draft_lock);
    if (c)
        c->generation = NULL;
    if (hold->draft) {
        ellm_draft_hold **link = &hold->draft->drafting;
        while (*link && *link != hold)
            link = &(*link)->next;
        if (*link)
            *link = hold->next;
        hold->draft = NULL;
    }
    pthread_mutex_unlock(&draft_lock);
}

edgellm_context *ellm_draft_claim(edgellm_context *c, ellm_draft_hold *hold, bool *freed)
{
    pthread_mutex_lock(&draft_lock);
    edgellm_context *draft = hold->draft;
    *freed = !draft;
    if (draft && draft->draft_claimed)
        draft = NULL;
    else if (draft)
        draft->draft_claimed = true;
    if (draft) /* set and cleared by the claiming thread, the only one running the draft */
        ellm_state_set_cancel_owner(draft->state, &c->run_state);
    pthread_mutex_unlock(&draft_lock);
    return draft;
}

void ellm_draft_unclaim(edgellm_context *draft)
{
    pthread_mutex_lock(&draft_lock);
    ellm_state_set_cancel_owner(draft->state, NULL);
    draft->draft_claimed = false;
    pthread_cond_broadcast(&draft_unclaimed);
    pthread_mutex_unlock(&draft_lock);
}

void edgellm_context_free(edgellm_context *c)
{
    if (!c)
        return;
    /* The application still holds the generation: it must fail cleanly, not reach freed memory. */
    if (c->generation)
        ellm_generation_detach(c->generation);
    /* Those drafting with it go on without proposals, as they would without a draft. A pass of
     * one of them on another thread may be drafting with it right now: that one ends first. */
    pthread_mutex_lock(&draft_lock);
    while (c->draft_claimed)
        pthread_cond_wait(&draft_unclaimed, &draft_lock);
    for (ellm_draft_hold *hold = c->drafting, *next; hold; hold = next) {
        next = hold->next;
        hold->draft = NULL;
        hold->next = NULL;
    }
    c->drafting = NULL;
    pthread_mutex_unlock(&draft_lock);
    ellm_state_free(c->state);
    ellm_threadpool_free(c->pool);
    free(c->profile);
    free(c->tokens);
    free(c->logits);
    if (c->model)
        ellm_model_release(c->model);
    free(c);
}

int32_t edgellm_context_n_ctx(const edgellm_context *c) { return c ? c->params.n_ctx : 0; }
int32_t edgellm_context_n_batch(const edgellm_context *c) { return c ? c->params.n_batch : 0; }
int32_t edgellm_context_n_past(const edgellm_context *c)
{
    return c ? ellm_state_n_past(c->state) : 0;
}
const edgellm_model *edgellm_context_model(const edgellm_context *c) { return c ? c->model : NULL; }

const edgellm_token *edgellm_context_tokens(const edgellm_context *c, int32_t *n)
{
    if (n)
        *n = c ? ellm_state_n_past(c->state) : 0;
    return c ? c->tokens : NULL;
}

void ellm_context_truncate(edgellm_context *c, int32_t n_keep)
{
    ellm_state_truncate(c->state, n_keep);
    c->logits_rows = 0;
    c->pending_at = -1;
}

edgellm_status edgellm_context_truncate(edgellm_context *c, int32_t n_keep)
{
    if (!c || n_keep < 0)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "edgellm_context_truncate: bad argument");
    edgellm_status st = ellm_context_refuse_busy(c, "edgellm_context_truncate");
    if (st == EDGELLM_OK)
        ellm_context_truncate(c, n_keep);
    return st;
}

void ellm_context_set_pending(edgellm_context *c, edgellm_token token)
{
    c->pending = token;
    c->pending_at = ellm_state_n_past(c->state);
}

bool ellm_context_owes_pending(const edgellm_context *c)
{
    return c->pending_at >= 0 && c->pending_at == ellm_state_n_past(c->state);
}

bool ellm_context_take_pending(edgellm_context *c, edgellm_token *token)
{
    bool valid = ellm_context_owes_pending(c);
    if (valid)
        *token = c->pending;
    c->pending_at = -1;
    return valid;
}

/* NaN or infinite weights, or hyper-parameters that overflow, give non-finite results; handing
 * them out as a success would leave every caller to find out (the sampler cannot order NaN). */
static edgellm_status check_finite(const float *v, size_t n, const char *what)
{
    int64_t i = ellm_first_nonfinite(v, (int64_t)n);
    if (i >= 0)
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "the model computed %s %s at index %lld: its weights or "
                         "hyper-parameters are broken (re-convert or re-download it)",
                         isnan(v[i]) ? "NaN in" : "an infinite value in", what, (long long)i);
    return EDGELLM_OK;
}

static edgellm_status eval_tokens(edgellm_context *c, const edgellm_token *tokens, int32_t n_tokens,
                                  int all_logits)
{
    if (!c || !tokens || n_tokens <= 0)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "edgellm_eval: need a context and at least one token");
    int32_t n_past = ellm_state_n_past(c->state);
    if (n_tokens > c->params.n_ctx - n_past)
        return ellm_fail(EDGELLM_ERR_CONTEXT_FULL,
                         "%d tokens do not fit: %d of the %d context positions are in use; "
                         "use a larger context (--ctx) or a shorter prompt",
                         n_tokens, n_past, c->params.n_ctx);
    int32_t n_vocab = ellm_model_hparams(c->model->model)->n_vocab;
    for (int32_t i = 0; i < n_tokens; i++)
        if (tokens[i] < 0 || tokens[i] >= n_vocab)
            return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                             "token id %d at position %d is outside the vocabulary (0..%d)",
                             (int)tokens[i], (int)i, (int)n_vocab - 1);
    if (all_logits && n_tokens > c->params.n_batch)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "all_logits needs the batch (%d tokens) to fit n_batch (%d)", n_tokens,
                         c->params.n_batch);
    if (all_logits && n_tokens > c->logits_cap) {
        float *grown = realloc(c->logits, (size_t)n_tokens * (size_t)n_vocab * sizeof *grown);
        if (!grown)
            return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for %d rows of logits",
                             n_tokens);
        c->logits = grown;
        c->logits_cap = n_tokens;
    }
    c->logits_rows = 0;
    c->pending_at = -1;
    for (int32_t done = 0; done < n_tokens;) {
        int32_t chunk = n_tokens - done < c->params.n_batch ? n_tokens - done : c->params.n_batch;
        bool last = done + chunk == n_tokens;
        edgellm_status st = ellm_forward(c->model->model, c->state, c->pool, tokens + done, chunk,
                                         all_logits != 0, c->logits);
        if (st == EDGELLM_ERR_CANCELLED)
            /* The whole chunks before it are evaluated work a later call reuses (generate finds
             * them as a cached prefix); the cancelled chunk changed nothing. */
            return ellm_fail(EDGELLM_ERR_CANCELLED,
                             "edgellm_eval was cancelled after %d of its %d tokens (those stay "
                             "cached)",
                             (int)done, (int)n_tokens);
        if (st != EDGELLM_OK) {
            /* Forget the partially evaluated batch so the cache matches c->tokens. */
            ellm_state_truncate(c->state, n_past);
            return st;
        }
        if (last) {
            int32_t rows = all_logits ? chunk : 1;
            st = check_finite(c->logits, (size_t)rows * (size_t)n_vocab, "the logits");
            if (st != EDGELLM_OK) {
                ellm_state_truncate(c->state, n_past);
                return st;
            }
            c->logits_rows = rows;
            c->logits_first = all_logits ? 0 : chunk - 1;
        }
        memcpy(c->tokens + n_past + done, tokens + done, (size_t)chunk * sizeof *tokens);
        done += chunk;
    }
    return EDGELLM_OK;
}

edgellm_status ellm_context_eval(edgellm_context *c, const edgellm_token *tokens, int32_t n_tokens,
                                 int all_logits)
{
    if (!c)
        return eval_tokens(c, tokens, n_tokens, all_logits);
    ellm_context_begin_call(c);
    edgellm_status st = eval_tokens(c, tokens, n_tokens, all_logits);
    ellm_context_end_call(c);
    return st;
}

edgellm_status edgellm_eval(edgellm_context *c, const edgellm_token *tokens, int32_t n_tokens,
                            int all_logits)
{
    edgellm_status st = ellm_context_refuse_busy(c, "edgellm_eval");
    return st != EDGELLM_OK ? st : ellm_context_eval(c, tokens, n_tokens, all_logits);
}

edgellm_status edgellm_batch_create(edgellm_model *m, const edgellm_context_params *params,
                                    edgellm_batch **out)
{
    if (!out)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "edgellm_batch_create: out is NULL");
    *out = NULL;
    if (!m)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "edgellm_batch_create: model is NULL");
    edgellm_context_params cp = params ? *params : edgellm_context_default_params();
    ellm_state_params sp;
    edgellm_status st = resolve_params(m, &cp, &sp);
    if (st != EDGELLM_OK)
        return st;
    sp.scratch_only = true;
    edgellm_batch *b = calloc(1, sizeof *b);
    if (!b)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for a batch");
    b->model = m;
    ellm_model_retain(m);
    b->n_batch = sp.n_batch;
    int32_t n_vocab = ellm_model_hparams(m->model)->n_vocab;
    b->logits = malloc((size_t)sp.n_batch * (size_t)n_vocab * sizeof *b->logits);
    b->seqs = calloc((size_t)sp.n_batch, sizeof *b->seqs);
    if (!b->logits || !b->seqs)
        st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for a batch of %d tokens", sp.n_batch);
    if (st == EDGELLM_OK)
        st = ellm_threadpool_create(sp.n_threads, &b->pool);
    if (st == EDGELLM_OK)
        st = ellm_state_create(m->model, &sp, &b->work);
    if (st != EDGELLM_OK) {
        edgellm_batch_free(b);
        return st;
    }
    *out = b;
    return EDGELLM_OK;
}

void edgellm_batch_free(edgellm_batch *b)
{
    if (!b)
        return;
    ellm_state_free(b->work);
    ellm_threadpool_free(b->pool);
    free(b->logits);
    free(b->seqs);
    if (b->model)
        ellm_model_release(b->model);
    free(b);
}

/* Room for rows of logits in c (they survive until a later eval overwrites them). */
static bool reserve_logit_rows(edgellm_context *c, int32_t rows, int32_t n_vocab)
{
    if (rows <= c->logits_cap)
        return true;
    float *grown = realloc(c->logits, (size_t)rows * (size_t)n_vocab * sizeof *grown);
    if (!grown)
        return false;
    c->logits = grown;
    c->logits_cap = rows;
    return true;
}

edgellm_status edgellm_context_set_batch_all_logits(edgellm_context *c, int on)
{
    if (!c)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "edgellm_context_set_batch_all_logits: "
                                                       "context is NULL");
    c->batch_all_logits = on != 0;
    return EDGELLM_OK;
}

edgellm_status edgellm_context_copy_cache(edgellm_context *dst, const edgellm_context *src)
{
    if (!dst || !src || dst == src || dst->model != src->model)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "edgellm_context_copy_cache: need two contexts of one model");
    int32_t n = ellm_state_n_past(src->state);
    if (n > dst->params.n_ctx)
        return ellm_fail(EDGELLM_ERR_CONTEXT_FULL, "%d cached tokens do not fit a context of %d", n,
                         dst->params.n_ctx);
    if (dst->params.kv_type != src->params.kv_type)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "edgellm_context_copy_cache: the contexts' KV types differ");
    edgellm_status busy = ellm_context_refuse_busy(dst, "edgellm_context_copy_cache (dst)");
    if (busy != EDGELLM_OK)
        return busy;
    int32_t n_vocab = ellm_model_hparams(src->model->model)->n_vocab;
    const float *last = edgellm_get_logits(src, -1);
    if (last && !reserve_logit_rows(dst, 1, n_vocab))
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for a row of logits");
    edgellm_status st = ellm_state_copy_prefix(src->model->model, dst->state, src->state, n);
    if (st != EDGELLM_OK)
        return st;
    memcpy(dst->tokens, src->tokens, (size_t)n * sizeof *dst->tokens);
    dst->logits_rows = 0;
    dst->pending = src->pending;
    dst->pending_at = src->pending_at;
    if (last) {
        memmove(dst->logits, last, (size_t)n_vocab * sizeof *dst->logits);
        dst->logits_rows = 1;
        dst->logits_first = 0;
    }
    return EDGELLM_OK;
}

edgellm_status edgellm_eval_batch(edgellm_batch *b, edgellm_context *const *ctxs,
                                  const edgellm_token *const *tokens, const int32_t *n_tokens,
                                  int32_t n_ctxs)
{
    if (!b || !ctxs || !tokens || !n_tokens || n_ctxs <= 0)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "edgellm_eval_batch: need a batch and at least one context with tokens");
    if (n_ctxs > b->n_batch)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "edgellm_eval_batch: %d contexts but the batch takes %d tokens", n_ctxs,
                         b->n_batch);
    int32_t n_vocab = ellm_model_hparams(b->model->model)->n_vocab;
    ellm_forward_seq *seqs = b->seqs;
    float *logits = b->logits;
    edgellm_status st = EDGELLM_OK;
    for (int32_t i = 0; i < n_ctxs && st == EDGELLM_OK; i++) {
        edgellm_context *c = ctxs[i];
        if (!c || !tokens[i] || n_tokens[i] <= 0)
            st = ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                           "edgellm_eval_batch: context %d is NULL or has no tokens", i);
        else if (c->model != b->model)
            st = ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                           "edgellm_eval_batch: context %d belongs to another model", i);
        else if (c->generation)
            st = ellm_context_refuse_busy(c, "edgellm_eval_batch");
        else if (n_tokens[i] > c->params.n_ctx - ellm_state_n_past(c->state))
            st = ellm_fail(EDGELLM_ERR_CONTEXT_FULL,
                           "context %d: %d tokens do not fit, %d of its %d positions are in use", i,
                           n_tokens[i], ellm_state_n_past(c->state), c->params.n_ctx);
        else if (c->batch_all_logits && !reserve_logit_rows(c, n_tokens[i], n_vocab))
            st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for %d rows of logits",
                           n_tokens[i]);
        else
            seqs[i] = (ellm_forward_seq){c->state, tokens[i], n_tokens[i], c->batch_all_logits,
                                         false};
    }
    if (st == EDGELLM_OK)
        st = ellm_forward_batch(b->model->model, b->work, b->pool, seqs, n_ctxs, logits);
    if (st == EDGELLM_OK) {
        size_t n_rows = 0;
        for (int32_t i = 0; i < n_ctxs; i++)
            n_rows += ctxs[i]->batch_all_logits ? (size_t)n_tokens[i] : 1;
        st = check_finite(logits, n_rows * (size_t)n_vocab,
                          n_ctxs > 1 ? "the logits of one context of the batch" : "the logits");
        /* Keep the promise that a failed pass changes no context. */
        for (int32_t i = 0; i < n_ctxs && st != EDGELLM_OK; i++)
            ellm_state_truncate(ctxs[i]->state, ellm_state_n_past(ctxs[i]->state) - n_tokens[i]);
    }
    if (st == EDGELLM_OK) {
        size_t row = 0;
        for (int32_t i = 0; i < n_ctxs; i++) {
            edgellm_context *c = ctxs[i];
            int32_t n_past = ellm_state_n_past(c->state) - n_tokens[i];
            memcpy(c->tokens + n_past, tokens[i], (size_t)n_tokens[i] * sizeof *tokens[i]);
            int32_t rows = c->batch_all_logits ? n_tokens[i] : 1;
            memcpy(c->logits, logits + row * n_vocab, (size_t)rows * n_vocab * sizeof *logits);
            row += (size_t)rows;
            c->logits_rows = rows;
            c->logits_first = n_tokens[i] - rows;
            c->pending_at = -1;
        }
    }
    return st;
}

static edgellm_status embed_tokens(edgellm_context *c, const edgellm_token *tokens,
                                   int32_t n_tokens, float *out, int32_t out_dim)
{
    if (!c || !tokens || n_tokens <= 0 || !out)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "edgellm_embed: need a context, at least one token and an output");
    const ellm_hparams *hp = ellm_model_hparams(c->model->model);
    int32_t n_embd = hp->n_embd;
    if (out_dim != n_embd)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "edgellm_embed: the output holds %d values, the model's embeddings %d",
                         out_dim, n_embd);
    if (n_tokens > c->params.n_ctx)
        return ellm_fail(EDGELLM_ERR_CONTEXT_FULL,
                         "the input is %d tokens but the context holds %d; shorten it or raise "
                         "--ctx",
                         n_tokens, c->params.n_ctx);
    for (int32_t i = 0; i < n_tokens; i++)
        if (tokens[i] < 0 || tokens[i] >= hp->n_vocab)
            return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                             "token id %d at position %d is outside the vocabulary (0..%d)",
                             (int)tokens[i], (int)i, (int)hp->n_vocab - 1);
    float *rows = malloc((size_t)c->params.n_batch * (size_t)n_embd * sizeof *rows);
    double *sum = calloc((size_t)n_embd, sizeof *sum);
    if (!rows || !sum) {
        free(rows);
        free(sum);
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for embeddings");
    }
    ellm_state_truncate(c->state, 0);
    c->logits_rows = 0;
    c->pending_at = -1;
    edgellm_status st = EDGELLM_OK;
    for (int32_t done = 0; done < n_tokens && st == EDGELLM_OK;) {
        int32_t chunk = n_tokens - done < c->params.n_batch ? n_tokens - done : c->params.n_batch;
        ellm_forward_seq seq = {c->state, tokens + done, chunk, false, true};
        st = ellm_forward_batch(c->model->model, c->state, c->pool, &seq, 1, rows);
        for (int32_t t = 0; t < chunk && st == EDGELLM_OK; t++)
            for (int32_t d = 0; d < n_embd; d++)
                sum[d] += rows[(size_t)t * n_embd + d];
        if (st == EDGELLM_OK)
            memcpy(c->tokens + done, tokens + done, (size_t)chunk * sizeof *tokens);
        done += chunk;
    }
    if (st == EDGELLM_OK)
        for (int32_t d = 0; d < n_embd && st == EDGELLM_OK; d++)
            if (!isfinite(sum[d]))
                st = ellm_fail(EDGELLM_ERR_FORMAT,
                               "the model computed a non-finite hidden state: its weights or "
                               "hyper-parameters are broken (re-convert or re-download it)");
    if (st == EDGELLM_OK) {
        double norm = 0;
        for (int32_t d = 0; d < n_embd; d++) {
            sum[d] /= n_tokens;
            norm += sum[d] * sum[d];
        }
        norm = sqrt(norm);
        for (int32_t d = 0; d < n_embd; d++)
            out[d] = (float)(norm > 0 ? sum[d] / norm : 0.0);
    } else {
        ellm_state_truncate(c->state, 0);
    }
    free(rows);
    free(sum);
    return st;
}

edgellm_status edgellm_embed(edgellm_context *c, const edgellm_token *tokens, int32_t n_tokens,
                             float *out, int32_t out_dim)
{
    if (!c)
        return embed_tokens(c, tokens, n_tokens, out, out_dim);
    edgellm_status busy = ellm_context_refuse_busy(c, "edgellm_embed");
    if (busy != EDGELLM_OK)
        return busy;
    ellm_context_begin_call(c);
    edgellm_status st = embed_tokens(c, tokens, n_tokens, out, out_dim);
    ellm_context_end_call(c);
    return st;
}

const float *edgellm_get_logits(const edgellm_context *c, int32_t i)
{
    if (!c || c->logits_rows == 0)
        return NULL;
    int32_t n_vocab = ellm_model_hparams(c->model->model)->n_vocab;
    if (i == -1)
        return c->logits + (size_t)(c->logits_rows - 1) * n_vocab;
    /* Compared before subtracting: i - logits_first overflows for i near INT32_MIN. */
    if (i < c->logits_first || i - c->logits_first >= c->logits_rows)
        return NULL;
    return c->logits + (size_t)(i - c->logits_first) * n_vocab;
}

edgellm_status edgellm_context_set_profiling(edgellm_context *c, int on)
{
    if (!c)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "no context to profile");
    free(c->profile);
    c->profile = NULL;
    if (on && !(c->profile = calloc(1, sizeof *c->profile))) {
        ellm_state_set_profile(c->state, NULL);
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for a profile");
    }
    ellm_state_set_profile(c->state, c->profile);
    return EDGELLM_OK;
}

static void add_entry(edgellm_profile *out, const char *name, double seconds, uint64_t calls)
{
    if (out->n_entries >= EDGELLM_PROFILE_MAX_ENTRIES)
        return;
    edgellm_profile_entry *e = &out->entries[out->n_entries++];
    snprintf(e->name, sizeof e->name, "%s", name);
    e->seconds = seconds;
    e->calls = calls;
}

edgellm_status edgellm_context_get_profile(const edgellm_context *c, edgellm_profile *out)
{
    if (!c || !out)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "get_profile needs a context and an output");
    if (!c->profile)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "profiling is off: call edgellm_context_set_profiling(ctx, 1) first");
    const ellm_profile *p = c->profile;
    memset(out, 0, sizeof *out);
    out->forward_seconds = p->forward_s;
    out->forward_calls = p->forward_calls;
    out->tokens = p->tokens;
    double parts = 0;
    for (int t = 0; t < ELLM_TYPE_COUNT; t++) {
        if (!p->matmul_calls[t])
            continue;
        char name[24];
        snprintf(name, sizeof name, "matmul %s", ellm_type_name((uint32_t)t));
        add_entry(out, name, p->matmul_s[t], p->matmul_calls[t]);
        parts += p->matmul_s[t];
    }
    static const char *const op_names[ELLM_PROF_OP_COUNT] = {"attention", "norm", "rope"};
    for (int o = 0; o < ELLM_PROF_OP_COUNT; o++) {
        add_entry(out, op_names[o], p->op_s[o], p->op_calls[o]);
        parts += p->op_s[o];
    }
    /* Embedding lookup, element-wise steps, logits copy: the rest of the passes' time. */
    add_entry(out, "other", p->forward_s > parts ? p->forward_s - parts : 0, p->forward_calls);
    return EDGELLM_OK;
}
