/* The WebAssembly entry points behind web/edgellm.mjs: a model loaded from bytes the JavaScript
 * side streamed into wasm memory, completions and chat completions that hand each piece of text
 * to JavaScript as it becomes final, and the logits of a token sequence (for tests). A generation
 * runs in slices (begin, next, finish), its prompt too, so that the worker's event loop, which
 * delivers an interrupt or an unload, runs between them even where no shared memory carries a
 * flag into a running call. Every failure returns a status whose message edgellm_wasm_last_error
 * gives. */
#include <emscripten.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"
#include "chat/chat.h"
#include "core/status.h"
#include "edgellm.h"
#include "quant/quant.h"

typedef struct wasm_engine {
    edgellm_model *model;
    edgellm_context *ctx;
    void *bytes; /* the GGUF file, owned: the model points into it */
    edgellm_generation *running;
    edgellm_generate_result last;
    double prompt_ms_per_token; /* as the last slice of a prompt took; 0 before the first */
} wasm_engine;

/* Hands text to the worker (Module.edgellmText) and asks it whether to stop. */
EM_JS(int, wasm_emit_text, (const char *text, size_t len),
      { return Module["edgellmText"](UTF8ToString(text, len)) ? 1 : 0; });

static int on_token(void *user, edgellm_token token, const char *text, size_t len)
{
    (void)user;
    (void)token;
    return wasm_emit_text(text, len);
}

EMSCRIPTEN_KEEPALIVE const char *edgellm_wasm_last_error(void) { return edgellm_last_error(); }

EMSCRIPTEN_KEEPALIVE const char *edgellm_wasm_kernel_set(void) { return edgellm_kernel_set(); }

/* Takes ownership of bytes (from malloc) whether or not the load succeeds. */
EMSCRIPTEN_KEEPALIVE wasm_engine *edgellm_wasm_open(void *bytes, size_t size, int n_ctx,
                                                    int n_threads)
{
    wasm_engine *e = calloc(1, sizeof *e);
    if (!e) {
        free(bytes);
        return NULL;
    }
    e->bytes = bytes;
    edgellm_context_params cp = edgellm_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_threads = n_threads;
    edgellm_model_info info;
    edgellm_status st = edgellm_model_load_from_memory(bytes, size, NULL, &e->model);
    /* A long training context would fill wasm memory with KV cache nobody asked for. */
    if (st == EDGELLM_OK && n_ctx <= 0 &&
        (st = edgellm_model_get_info(e->model, &info)) == EDGELLM_OK)
        cp.n_ctx = info.n_ctx_train > 0 && info.n_ctx_train < 4096 ? info.n_ctx_train : 4096;
    if (st == EDGELLM_OK)
        st = edgellm_context_create(e->model, &cp, &e->ctx);
    /* The bytes are this engine's own copy, kept until the model is freed: its matrices can be
     * laid out for the kernels (Q4_0 rows by four for the wasm-relaxed set), by the context's
     * threads. */
    if (st == EDGELLM_OK)
        st = ellm_context_lay_out_model(e->ctx, bytes, size);
    if (st != EDGELLM_OK) {
        edgellm_context_free(e->ctx);
        edgellm_model_free(e->model);
        free(bytes);
        free(e);
        return NULL;
    }
    return e;
}

EMSCRIPTEN_KEEPALIVE void edgellm_wasm_close(wasm_engine *e)
{
    if (!e)
        return;
    if (e->running)
        edgellm_generation_finish(e->running, NULL);
    edgellm_context_free(e->ctx);
    edgellm_model_free(e->model);
    free(e->bytes);
    free(e);
}

/* Model facts as one JSON object (the strings are GGUF metadata: escaped for JSON). */
static void append_json_string(char *buf, size_t cap, const char *s)
{
    size_t n = strlen(buf);
    for (; *s && n + 8 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[n++] = '\\';
            buf[n++] = (char)c;
        } else if (c < 0x20) {
            n += (size_t)snprintf(buf + n, cap - n, "\\u%04x", c);
        } else {
            buf[n++] = (char)c;
        }
    }
    buf[n] = 0;
}

EMSCRIPTEN_KEEPALIVE const char *edgellm_wasm_model_info(wasm_engine *e)
{
    static char buf[1024];
    edgellm_model_info info;
    if (edgellm_model_get_info(e->model, &info) != EDGELLM_OK)
        return NULL;
    strcpy(buf, "{\"architecture\":\"");
    append_json_string(buf, sizeof buf, info.architecture);
    strcat(buf, "\",\"name\":\"");
    append_json_string(buf, sizeof buf, info.name);
    strcat(buf, "\",\"quantization\":\"");
    append_json_string(buf, sizeof buf, info.quantization);
    size_t n = strlen(buf);
    snprintf(buf + n, sizeof buf - n,
             "\",\"n_vocab\":%d,\"n_layer\":%d,\"n_embd\":%d,\"n_ctx\":%d,\"n_params\":%llu,"
             "\"file_bytes\":%llu,\"chat_template\":\"%s\"}",
             info.n_vocab, info.n_layer, info.n_embd, edgellm_context_n_ctx(e->ctx),
             (unsigned long long)info.n_params, (unsigned long long)info.file_bytes,
             ellm_chat_family_name(ellm_chat_detect_model(e->model, NULL)));
    return buf;
}

/* Sampling and stopping as `serve` takes them (the JavaScript side checks the ranges). */
static edgellm_generate_params generate_params(double temperature, double top_p, int top_k,
                                               double min_p, double repeat_penalty, double presence,
                                               double frequency, double seed, int max_tokens,
                                               const char *const *stops, int n_stops)
{
    edgellm_generate_params gp = edgellm_generate_default_params();
    gp.max_tokens = max_tokens;
    gp.stop_strings = stops;
    gp.n_stop_strings = n_stops;
    gp.sampling.temperature = (float)temperature;
    gp.sampling.top_p = (float)top_p;
    gp.sampling.top_k = top_k;
    gp.sampling.min_p = (float)min_p;
    gp.sampling.repeat_penalty = (float)repeat_penalty;
    gp.sampling.presence_penalty = (float)presence;
    gp.sampling.frequency_penalty = (float)frequency;
    gp.sampling.seed = (uint64_t)seed;
    gp.on_token = on_token;
    return gp;
}

/* Begins a completion of prompt, as `edgellm run` makes it (BOS as the model wants it). */
EMSCRIPTEN_KEEPALIVE int edgellm_wasm_begin_complete(wasm_engine *e, const char *prompt,
                                                     double temperature, double top_p, int top_k,
                                                     double min_p, double repeat_penalty,
                                                     double presence, double frequency, double seed,
                                                     int max_tokens, const char *const *stops,
                                                     int n_stops)
{
    if (e->running)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "a generation is already running");
    edgellm_generate_params gp = generate_params(temperature, top_p, top_k, min_p, repeat_penalty,
                                                 presence, frequency, seed, max_tokens, stops,
                                                 n_stops);
    return edgellm_generation_begin(e->ctx, prompt, &gp, &e->running);
}

/* Begins a chat completion: the messages rendered by the model's chat template, its markup
 * tokenized as control tokens and the messages as plain text (as `serve` does), the family's
 * end-of-turn text added to the stop strings. */
EMSCRIPTEN_KEEPALIVE int
edgellm_wasm_begin_chat(wasm_engine *e, const char *const *roles, const char *const *contents,
                        int n_messages, double temperature, double top_p, int top_k, double min_p,
                        double repeat_penalty, double presence, double frequency, double seed,
                        int max_tokens, const char *const *stops, int n_stops)
{
    if (e->running)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "a generation is already running");
    ellm_chat_message *msgs = calloc((size_t)(n_messages > 0 ? n_messages : 1), sizeof *msgs);
    const char *all_stops[64];
    if (!msgs || n_stops > 32)
        return msgs ? EDGELLM_ERR_INVALID_ARGUMENT : EDGELLM_ERR_OUT_OF_MEMORY;
    for (int i = 0; i < n_messages; i++) {
        msgs[i].role = roles[i];
        msgs[i].content = contents[i];
    }
    ellm_chat_span *spans = NULL;
    size_t n_spans = 0;
    char *text = ellm_chat_format_model_spans(e->model, msgs, (size_t)n_messages, true, NULL,
                                              &spans, &n_spans);
    free(msgs);
    if (!text)
        return EDGELLM_ERR_INVALID_ARGUMENT;
    edgellm_token *tokens = NULL;
    int32_t n_tokens = 0;
    edgellm_status st = ellm_chat_tokenize(e->model, text, spans, n_spans, true, &tokens,
                                           &n_tokens);
    free(spans);
    free(text);
    if (st != EDGELLM_OK)
        return st;
    int n_all = 0;
    for (; n_all < n_stops; n_all++)
        all_stops[n_all] = stops[n_all];
    const char *const *extra = ellm_chat_stop_strings(ellm_chat_detect_model(e->model, NULL));
    for (int k = 0; extra && extra[k] && n_all < 64; k++)
        all_stops[n_all++] = extra[k];
    edgellm_generate_params gp = generate_params(temperature, top_p, top_k, min_p, repeat_penalty,
                                                 presence, frequency, seed, max_tokens, all_stops,
                                                 n_all);
    st = edgellm_generation_begin_tokens(e->ctx, tokens, n_tokens, &gp, &e->running);
    free(tokens);
    return st;
}

/* Fewest prompt tokens a slice evaluates. A pass reads every weight once whatever its length,
 * which costs about what two tokens' arithmetic costs, for small models as for large ones, so
 * the share of the rate a pass keeps depends on its tokens, not on its time: without shared
 * memory, against one pass of the prompt, passes of 16 tokens lost 15 % of smollm2's prefill
 * rate, of 32 5-8 %, of 48 or 64 under 1 %; a pass of 48 tinyllama tokens takes 2-3 s, the
 * longest a stop waits for (docs/web.md, session 23). Passes sized to 50 ms halved the rate. */
#define MIN_PROMPT_SLICE 48

/* Evaluates one pass of the prompt: as much as fits in about ms_left, as the last pass's cost
 * per token predicts, and MIN_PROMPT_SLICE tokens at least. */
static void prompt_slice(wasm_engine *e, double ms_left, int *ended)
{
    int32_t n = MIN_PROMPT_SLICE;
    double fits = e->prompt_ms_per_token > 0 ? ms_left / e->prompt_ms_per_token : 0;
    int32_t most = edgellm_context_n_batch(e->ctx);
    if (fits > n)
        n = fits > most ? most : (int32_t)fits;
    int32_t left = edgellm_generation_prompt_left(e->running);
    /* A last pass of fewer than MIN_PROMPT_SLICE tokens would cost nearly a whole pass (every
     * weight read for a few tokens): they go with this one. */
    if (left - n < MIN_PROMPT_SLICE && left <= most)
        n = left;
    double t0 = emscripten_get_now();
    edgellm_generation_prefill(e->running, n, ended);
    /* The first slice may find part of the prompt cached: then it evaluated fewer. */
    e->prompt_ms_per_token = (emscripten_get_now() - t0) / (n < left ? n : left);
}

/* Evaluates a slice of the prompt, or once it is evaluated generates, for about budget_ms (one
 * token at least) and returns 1 when the generation has ended, 0 when there is more to come. */
EMSCRIPTEN_KEEPALIVE int edgellm_wasm_next(wasm_engine *e, double budget_ms)
{
    double until = emscripten_get_now() + budget_ms;
    int ended = !e->running;
    if (!ended && edgellm_generation_prompt_left(e->running) > 0) {
        /* One pass: a second in what time is left would be a short one, whose cost per token
         * (mostly reading the weights) misleads the next slice's estimate. */
        prompt_slice(e, budget_ms, &ended);
        return ended;
    }
    while (!ended) {
        edgellm_generation_next(e->running, 1, &ended);
        if (emscripten_get_now() >= until)
            break;
    }
    return ended;
}

/* How many of the running generation's prompt tokens are still to evaluate. */
EMSCRIPTEN_KEEPALIVE int edgellm_wasm_prompt_left(wasm_engine *e)
{
    return e->running ? edgellm_generation_prompt_left(e->running) : 0;
}

/* Ends the running generation (stopping it if it has not ended: finish_reason "abort") and
 * returns its status; edgellm_wasm_last_result then describes it. */
EMSCRIPTEN_KEEPALIVE int edgellm_wasm_finish(wasm_engine *e)
{
    if (!e->running)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "no generation is running");
    edgellm_status st = edgellm_generation_finish(e->running, &e->last);
    e->running = NULL;
    return st;
}

/* The last generation's counts and times: prompt tokens, cached prompt tokens, generated
 * tokens, stop reason, prefill, time to first token, decode (seconds). */
EMSCRIPTEN_KEEPALIVE double edgellm_wasm_last_result(wasm_engine *e, int field)
{
    const edgellm_generate_result *r = &e->last;
    switch (field) {
    case 0: return r->n_prompt_tokens;
    case 1: return r->n_cached_tokens;
    case 2: return r->n_generated;
    case 3: return r->stop_reason;
    case 4: return r->prefill_seconds;
    case 5: return r->ttft_seconds;
    case 6: return r->decode_seconds;
    default: return 0;
    }
}

/* Logits at every position of tokens evaluated from an empty cache, n_tokens x n_vocab floats
 * (valid until the next call), or NULL. kernel_set: "" for the default set, else a set's name. */
EMSCRIPTEN_KEEPALIVE const float *edgellm_wasm_logits(wasm_engine *e, const edgellm_token *tokens,
                                                      int n_tokens, const char *kernel_set)
{
    /* A message of its own: the last one may be an earlier call's (a set this module does not
     * offer, such as wasm-relaxed in an unpatched one, is no failure of the engine's). */
    if (!ellm_quant_use_kernel_set(*kernel_set ? kernel_set : NULL)) {
        ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "kernel set '%s' is not available", kernel_set);
        return NULL;
    }
    edgellm_status st = edgellm_context_truncate(e->ctx, 0);
    if (st == EDGELLM_OK)
        st = edgellm_eval(e->ctx, tokens, n_tokens, 1);
    ellm_quant_use_kernel_set(NULL);
    return st == EDGELLM_OK ? edgellm_get_logits(e->ctx, 0) : NULL;
}
