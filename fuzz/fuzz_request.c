/* libFuzzer target: the request-to-sampling path of the server. A byte string is a JSON body for
 * /v1/chat/completions or /v1/completions (first byte picks which); what the server's parser
 * accepts is tokenized, evaluated and sampled a few tokens deep on a model with random weights,
 * some of them NaN or infinite (so some prompts compute NaN and must fail cleanly), and the
 * response JSON is built with logprobs that include -inf and NaN: its parallel arrays must keep
 * equal lengths. Sampled tokens must be ids or -1; ASan watches every read. */
#define _POSIX_C_SOURCE 200809L
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "edgellm.h"
#include "gguf/gguf.h"
#include "server/server_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(int ok)
{
    if (!ok)
        abort();
}

static edgellm_model *model;
static edgellm_context *ctx;

typedef struct random_tensor {
    uint64_t n, seed;
    int64_t nan_at, inf_at; /* element set to NaN / +inf, -1 for none */
    float base;             /* 1 for norms (random values around it), 0 for matrices */
} random_tensor;

static edgellm_status fill_random(void *user, void *dst, uint64_t n_bytes)
{
    const random_tensor *t = user;
    require(n_bytes == t->n * sizeof(float));
    uint64_t x = t->seed;
    float *v = dst;
    for (uint64_t i = 0; i < t->n; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        v[i] = t->base + ((float)(x >> 40) / 16777216.0f - 0.5f) * 0.4f;
    }
    if (t->nan_at >= 0)
        v[t->nan_at] = NAN;
    if (t->inf_at >= 0)
        v[t->inf_at] = INFINITY;
    return EDGELLM_OK;
}

/* The shared aidreams model's vocabulary and shapes with random weights; the embeddings of token
 * 300 and of token 200 (byte 0xC5) hold a NaN and an infinity, so prompts (or samples) with
 * them compute NaN and the others do not. */
static void make_model(void)
{
    gguf_file *in = NULL;
    require(ellm_gguf_open(EDGELLM_SHARED_DIR "/models/aidreams260K-f32.gguf", &in) == EDGELLM_OK);
    gguf_writer *w = ellm_gguf_writer_create();
    for (uint64_t i = 0; i < ellm_gguf_kv_count(in); i++) {
        const gguf_kv *kv = ellm_gguf_kv_at(in, i);
        char *key = ellm_gguf_str_dup(kv->key);
        require(ellm_gguf_writer_set_value(w, key, &kv->value) == EDGELLM_OK);
        free(key);
    }
    uint64_t n = ellm_gguf_tensor_count(in);
    random_tensor *specs = calloc(n, sizeof *specs);
    for (uint64_t i = 0; i < n; i++) {
        const gguf_tensor_info *t = ellm_gguf_tensor_at(in, i);
        char *name = ellm_gguf_str_dup(t->name);
        require(t->type == ELLM_TYPE_F32);
        specs[i] = (random_tensor){t->n_elements, i + 1, -1, -1, t->n_dims == 1 ? 1.0f : 0.0f};
        if (!strcmp(name, "token_embd.weight")) {
            specs[i].nan_at = 300 * (int64_t)t->ne[0] + 3;
            specs[i].inf_at = 200 * (int64_t)t->ne[0] + 5;
        }
        require(ellm_gguf_writer_add_tensor_fill(w, name, (ellm_type)t->type, t->n_dims, t->ne,
                                            fill_random, &specs[i]) == EDGELLM_OK);
        free(name);
    }
    char path[] = "/tmp/edgellm-fuzz-request-XXXXXX";
    int fd = mkstemp(path);
    require(fd >= 0);
    close(fd);
    require(ellm_gguf_writer_write(w, path) == EDGELLM_OK);
    ellm_gguf_writer_free(w);
    free(specs);
    ellm_gguf_close(in);
    require(edgellm_model_load(path, NULL, &model) == EDGELLM_OK);
    unlink(path);
    edgellm_context_params cp = edgellm_context_default_params();
    cp.n_ctx = 64;
    cp.n_threads = 1;
    cp.n_batch = 64;
    require(edgellm_context_create(model, &cp, &ctx) == EDGELLM_OK);
}

static size_t array_size(json_t *o, const char *key)
{
    json_t *a = json_object_get(o, key);
    require(json_is_array(a));
    return json_array_size(a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!model)
        make_model();
    if (size < 1)
        return 0;
    srv_endpoint_kind kind = data[0] & 1 ? SRV_CHAT : SRV_COMPLETION;
    json_error_t jerr;
    json_t *body = json_loadb((const char *)data + 1, size - 1, JSON_REJECT_DUPLICATES, &jerr);
    if (!body)
        return 0;
    srv_request *r = ellm_srv_request_new();
    require(r != NULL);
    srv_completion_opts opts;
    srv_api_error err;
    int32_t n_ctx = edgellm_context_n_ctx(ctx);
    if (ellm_srv_parse_completion(body, kind, model, "fuzz", n_ctx, r, &opts, &err)) {
        require(r->n_prompt > 0 && r->n_prompt < n_ctx);
        edgellm_sampler *s = NULL;
        /* The parser probed these parameters: the sampler must take them. */
        require(edgellm_sampler_create(&r->sampling, edgellm_n_vocab(model), &s) == EDGELLM_OK);
        edgellm_context_truncate(ctx, 0);
        srv_event events[4];
        size_t n_events = 0;
        static const float odd_logprobs[] = {-INFINITY, NAN, -1e30f, -0.5f};
        edgellm_status st = edgellm_eval(ctx, r->prompt, r->n_prompt, 0);
        while (st == EDGELLM_OK && n_events < 4) {
            const float *logits = edgellm_get_logits(ctx, -1);
            require(logits != NULL);
            for (int32_t i = 0; i < edgellm_n_vocab(model); i++)
                require(isfinite(logits[i])); /* what eval hands out is finite */
            edgellm_token t = edgellm_sampler_sample(s, logits);
            require(t >= -1 && t < edgellm_n_vocab(model));
            if (t < 0)
                break;
            srv_event *e = &events[n_events];
            memset(e, 0, sizeof *e);
            e->text = "x";
            e->len = 1;
            e->token = t;
            e->logprob = odd_logprobs[n_events];
            e->n_top = opts.top_logprobs < 2 ? opts.top_logprobs : 2;
            for (int k = 0; k < e->n_top; k++)
                e->top[k] = (srv_logprob){(t + k) % edgellm_n_vocab(model), odd_logprobs[k]};
            n_events++;
            edgellm_sampler_accept(s, t);
            if (edgellm_context_n_past(ctx) >= n_ctx)
                break;
            st = edgellm_eval(ctx, &t, 1, 0);
        }
        edgellm_sampler_free(s);
        srv_choice_result choice = {events, n_events, SRV_FINISH_LENGTH};
        json_t *resp = ellm_srv_completion_response(&opts, model, "id", "fuzz", 0, &choice, 1,
                                               r->n_prompt, 0, (int32_t)n_events);
        require(resp != NULL);
        json_t *lp = json_object_get(json_array_get(json_object_get(resp, "choices"), 0),
                                     "logprobs");
        if (opts.logprobs && kind == SRV_CHAT) {
            require(array_size(lp, "content") == n_events);
        } else if (opts.logprobs) {
            require(array_size(lp, "tokens") == n_events &&
                    array_size(lp, "token_logprobs") == n_events &&
                    array_size(lp, "top_logprobs") == n_events &&
                    array_size(lp, "text_offset") == n_events);
        }
        json_decref(resp);
    }
    ellm_srv_request_release(r);
    json_decref(body);
    return 0;
}
