/* The public API as a careless or hostile application calls it: NULL, negative and huge
 * arguments to every function, hostile text, lifecycle misuse, contexts on many threads at once,
 * callbacks that stop or re-enter, and files that are not models. Each call must fail cleanly with
 * the status the header documents (or succeed), never crash, hang or touch memory it does not own
 * (run under the sanitizer build). */
#define _GNU_SOURCE /* memmem */
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/utf8.h"
#include "edgellm.h"
#include "test_util.h"

static const char *model_path(void) { return test_shared_path("models/aidreams260K-f32.gguf"); }

/* Functions that take an object accept NULL for it and fail or return their documented default. */
static void test_null_everything(void)
{
    edgellm_model *m = (edgellm_model *)1;
    CHECK(edgellm_model_load(NULL, NULL, &m) == EDGELLM_ERR_INVALID_ARGUMENT && !m);
    CHECK(edgellm_model_load("", NULL, NULL) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_model_load_from_memory(NULL, 10, NULL, &m) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_model_load_from_memory(NULL, 0, NULL, &m) != EDGELLM_OK && !m);
    edgellm_model_free(NULL);
    edgellm_context_free(NULL);
    edgellm_batch_free(NULL);
    edgellm_sampler_free(NULL);
    edgellm_grammar_free(NULL);
    edgellm_grammar_state_free(NULL);
    edgellm_text_stream_free(NULL);
    edgellm_sampler_reset(NULL);
    edgellm_sampler_accept(NULL, 3);
    edgellm_grammar_state_reset(NULL);
    CHECK(edgellm_status_name((edgellm_status)-1) != NULL);
    CHECK(edgellm_status_name((edgellm_status)INT_MAX) != NULL);
    CHECK(edgellm_kernel_arithmetic(NULL) == NULL);
    CHECK(edgellm_kernel_arithmetic("") == NULL);
    CHECK(edgellm_kernel_arithmetic("Q4_0\xff") == NULL);
    CHECK(edgellm_use_kernel_set("no-such-set") == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_use_kernel_set(NULL) == EDGELLM_OK);

    edgellm_model_info info;
    CHECK(edgellm_model_get_info(NULL, &info) == EDGELLM_ERR_INVALID_ARGUMENT);
    edgellm_memory_estimate est;
    CHECK(edgellm_model_estimate_memory(NULL, 0, EDGELLM_KV_F16, 0, &est) ==
          EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_context_estimate_memory(NULL, NULL, &est) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_model_meta_count(NULL) == 0);
    char kb[8], vb[8];
    CHECK(edgellm_model_meta_at(NULL, 0, kb, sizeof kb, vb, sizeof vb) ==
          EDGELLM_ERR_INVALID_ARGUMENT);
    size_t len = 99;
    CHECK(edgellm_model_meta_string(NULL, "general.name", NULL, 0, &len) ==
          EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_model_tensor_count(NULL) == 0);
    edgellm_tensor_desc td;
    CHECK(edgellm_model_tensor_at(NULL, 0, &td) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_n_vocab(NULL) == 0 && edgellm_token_bos(NULL) == -1 &&
          edgellm_token_eos(NULL) == -1 && edgellm_add_bos_default(NULL) == 0 &&
          edgellm_token_is_eog(NULL, 0) == 0);
    int32_t n = 0;
    CHECK(edgellm_tokenize(NULL, "a", 1, 0, NULL, 0, &n) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_token_to_piece(NULL, 0, NULL, 0, &len) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_token_text(NULL, 0, NULL, 0, &len) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_detokenize(NULL, NULL, 0, 0, NULL, 0, &len) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_model_check_draft(NULL, NULL) == EDGELLM_ERR_INVALID_ARGUMENT);
    edgellm_context *c = (edgellm_context *)1;
    CHECK(edgellm_context_create(NULL, NULL, &c) == EDGELLM_ERR_INVALID_ARGUMENT && !c);
    CHECK(edgellm_context_n_ctx(NULL) == 0 && edgellm_context_n_batch(NULL) == 0 &&
          edgellm_context_n_past(NULL) == 0 && edgellm_context_model(NULL) == NULL);
    n = 7;
    CHECK(edgellm_context_tokens(NULL, &n) == NULL && n == 0);
    CHECK(edgellm_context_tokens(NULL, NULL) == NULL);
    CHECK(edgellm_context_truncate(NULL, 0) == EDGELLM_ERR_INVALID_ARGUMENT);
    edgellm_token t = 1;
    CHECK(edgellm_eval(NULL, &t, 1, 0) == EDGELLM_ERR_INVALID_ARGUMENT);
    edgellm_batch *b = (edgellm_batch *)1;
    CHECK(edgellm_batch_create(NULL, NULL, &b) == EDGELLM_ERR_INVALID_ARGUMENT && !b);
    CHECK(edgellm_eval_batch(NULL, NULL, NULL, NULL, 0) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_context_copy_cache(NULL, NULL) == EDGELLM_ERR_INVALID_ARGUMENT);
    float out[4];
    CHECK(edgellm_embed(NULL, &t, 1, out, 4) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_context_set_profiling(NULL, 1) == EDGELLM_ERR_INVALID_ARGUMENT);
    edgellm_profile prof;
    CHECK(edgellm_context_get_profile(NULL, &prof) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_get_logits(NULL, -1) == NULL);
    edgellm_sampler *s = (edgellm_sampler *)1;
    CHECK(edgellm_sampler_create(NULL, 10, NULL) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_sampler_create(NULL, 0, &s) == EDGELLM_ERR_INVALID_ARGUMENT && !s);
    CHECK(edgellm_sampler_create(NULL, -5, &s) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_sampler_sample(NULL, NULL) == -1);
    edgellm_grammar *g = (edgellm_grammar *)1;
    CHECK(edgellm_grammar_compile(NULL, "root ::= \"a\"", 12, NULL, &g) ==
              EDGELLM_ERR_INVALID_ARGUMENT &&
          !g);
    edgellm_grammar_state *gs = (edgellm_grammar_state *)1;
    CHECK(edgellm_grammar_state_create(NULL, &gs) == EDGELLM_ERR_INVALID_ARGUMENT && !gs);
    float lg[2] = {0, 0};
    CHECK(edgellm_grammar_state_mask(NULL, lg, NULL) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_grammar_state_accept(NULL, 0) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_grammar_state_can_end(NULL) == 0 && edgellm_grammar_state_must_end(NULL) == 0);
    edgellm_text_stream *ts = (edgellm_text_stream *)1;
    CHECK(edgellm_text_stream_create(NULL, NULL, 0, &ts) == EDGELLM_ERR_INVALID_ARGUMENT && !ts);
    const char *text = NULL;
    int stopped = 0;
    CHECK(edgellm_text_stream_push(NULL, 0, &text, &len, &stopped) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_text_stream_finish(NULL, &text, &len) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_text_stream_stopped(NULL) == 0);
    edgellm_generate_params gp = edgellm_generate_default_params();
    edgellm_generate_result r;
    CHECK(edgellm_generate(NULL, "x", &gp, &r) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_generate_tokens(NULL, &t, 1, &gp, &r) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(strlen(edgellm_last_error()) > 0);
}

/* The last error is one line of well-formed UTF-8 without control characters (C1 included),
 * whatever bytes the caller's strings quoted in it held. */
static bool printable_utf8(const char *msg)
{
    size_t n = strlen(msg);
    uint32_t cp = 0;
    for (size_t i = 0, k; i < n; i += k)
        if (!(k = ellm_utf8_next(msg + i, n - i, &cp)) || cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
            return false;
    return true;
}

static void test_error_messages(edgellm_model *m)
{
    size_t len = 0;
    static const char key[] = "key\xff\xfe\x1b[2J\xc2\x9b"
                              "31m\n\xe2\x82";
    CHECK(edgellm_model_meta_string(m, key, NULL, 0, &len) == EDGELLM_ERR_NOT_FOUND);
    CHECK_MSG(printable_utf8(edgellm_last_error()), "%s", edgellm_last_error());
    CHECK(strstr(edgellm_last_error(), "key?") != NULL);
    /* A path of two-byte characters longer than the message: the cut falls inside one. */
    char path[1402] = "/";
    for (int i = 0; i < 700; i++)
        memcpy(path + 1 + 2 * i, "\xc3\xa9", 2);
    path[1401] = '\0';
    edgellm_model *none = NULL;
    CHECK(edgellm_model_load(path, NULL, &none) == EDGELLM_ERR_IO && !none);
    CHECK_MSG(printable_utf8(edgellm_last_error()), "a cut path");
    CHECK(strstr(edgellm_last_error(), "\xc3\xa9\xc3\xa9") != NULL); /* whole ones are kept */
}

/* Metadata keys and strings are the file's bytes; edgellm_model_meta_at renders them printable. */
static void test_hostile_metadata(void)
{
    size_t size = 0;
    char *bytes = test_read_file(model_path(), &size);
    CHECK(bytes != NULL);
    if (!bytes)
        return;
    /* Same lengths, so the file stays well-formed (the reader wants UTF-8 keys): a key with ESC
     * and a C1 CSI, and the name "l2c" becoming DEL, C1 CSI. */
    char *key = memmem(bytes, size, "general.file_type", 17);
    char *name = memmem(bytes, size, "l2c", 3);
    CHECK(key && name);
    if (key && name) {
        memcpy(key + 8, "\x1b[\xc2\x9b", 4);
        memcpy(name, "\x7f\xc2\x9b", 3);
    }
    edgellm_model *m = NULL;
    edgellm_status st = edgellm_model_load_from_memory(bytes, size, NULL, &m);
    CHECK_MSG(st == EDGELLM_OK, "%s", edgellm_last_error());
    for (int64_t i = 0; m && i < edgellm_model_meta_count(m); i++) {
        char k[128], v[256];
        CHECK(edgellm_model_meta_at(m, i, k, sizeof k, v, sizeof v) == EDGELLM_OK);
        CHECK_MSG(printable_utf8(k) && printable_utf8(v), "metadata %lld", (long long)i);
    }
    edgellm_model_free(m);
    free(bytes);
}

/* Out-of-range ids, sizes and buffers on a loaded model. */
static void test_model_arguments(edgellm_model *m)
{
    int32_t n_vocab = edgellm_n_vocab(m);
    char buf[64];
    size_t len = 0;
    const edgellm_token ids[] = {-1, INT_MIN, n_vocab, INT_MAX};
    for (int i = 0; i < 4; i++) {
        CHECK(edgellm_token_to_piece(m, ids[i], buf, sizeof buf, &len) != EDGELLM_OK);
        CHECK(edgellm_token_text(m, ids[i], buf, sizeof buf, &len) != EDGELLM_OK);
        CHECK(edgellm_token_is_eog(m, ids[i]) == 0);
        CHECK(edgellm_detokenize(m, &ids[i], 1, 0, buf, sizeof buf, &len) != EDGELLM_OK);
    }
    CHECK(edgellm_token_to_piece(m, 5, buf, sizeof buf, NULL) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_token_text(m, 5, buf, sizeof buf, NULL) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_detokenize(m, NULL, 3, 0, buf, sizeof buf, &len) == EDGELLM_ERR_INVALID_ARGUMENT);
    edgellm_token five[1] = {5};
    CHECK(edgellm_detokenize(m, five, -1, 0, buf, sizeof buf, &len) ==
          EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_detokenize(m, five, 1, 0, NULL, 0, &len) == EDGELLM_ERR_BUFFER_TOO_SMALL);
    /* A NULL buffer with a capacity is a caller's bug, not a place to write. */
    CHECK(edgellm_detokenize(m, five, 1, 0, NULL, 8, &len) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_token_to_piece(m, 5, NULL, 8, &len) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_token_text(m, 5, NULL, 8, &len) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_token_to_piece(m, 5, NULL, 0, &len) == EDGELLM_ERR_BUFFER_TOO_SMALL && len > 0);
    CHECK(edgellm_detokenize(m, five, 1, 0, NULL, 0, NULL) == EDGELLM_ERR_INVALID_ARGUMENT);
    /* The needed size, then exactly that: a NUL only when there is room. */
    CHECK(edgellm_token_text(m, 5, NULL, 0, &len) == EDGELLM_ERR_BUFFER_TOO_SMALL && len > 0);
    char exact[64];
    memset(exact, '#', sizeof exact);
    size_t need = len;
    CHECK(edgellm_token_text(m, 5, exact, need, &len) == EDGELLM_OK && exact[need] == '#');

    int32_t n = -1;
    edgellm_token toks[8];
    CHECK(edgellm_tokenize(m, NULL, 5, 0, toks, 8, &n) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_tokenize(m, "abc", 3, 0, NULL, 8, &n) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_tokenize(m, "abc", 3, 0, toks, -1, &n) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_tokenize(m, "abc", 3, 0, toks, 8, NULL) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_tokenize(m, NULL, 0, 0, NULL, 0, &n) == EDGELLM_OK && n == 0);
    CHECK(edgellm_tokenize(m, "", 0, -1, toks, 8, &n) == EDGELLM_OK);
    /* Invalid UTF-8, embedded NULs and control bytes tokenize (byte fallback or unknown). */
    static const char hostile[] =
        "\xff\xfe\xc0\x80 a\0b \xed\xa0\x80\xf4\x90\x80\x80\x1b[0m\xe2\x82";
    edgellm_token many[256];
    CHECK(edgellm_tokenize(m, hostile, sizeof hostile - 1, EDGELLM_TOKENIZE_PARSE_SPECIAL, many,
                           256, &n) == EDGELLM_OK);
    for (int32_t i = 0; i < n && i < 256; i++)
        CHECK(many[i] >= 0 && many[i] < n_vocab);
    CHECK(edgellm_detokenize(m, many, n, 1, NULL, 0, &len) == EDGELLM_ERR_BUFFER_TOO_SMALL);

    char key[8], value[8];
    int64_t n_meta = edgellm_model_meta_count(m);
    CHECK(n_meta > 0);
    CHECK(edgellm_model_meta_at(m, -1, key, 8, value, 8) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_model_meta_at(m, n_meta, key, 8, value, 8) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_model_meta_at(m, INT64_MAX, key, 8, value, 8) == EDGELLM_ERR_INVALID_ARGUMENT);
    for (int64_t i = 0; i < n_meta; i++) /* tiny buffers are truncated, NUL-terminated */
        if (edgellm_model_meta_at(m, i, key, 1, value, 1) == EDGELLM_OK)
            CHECK(key[0] == '\0' && value[0] == '\0');
    CHECK(edgellm_model_meta_string(m, NULL, NULL, 0, &len) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_model_meta_string(m, "general.architecture", NULL, 8, &len) ==
          EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_model_meta_string(m, "general.architecture", NULL, 0, &len) ==
              EDGELLM_ERR_BUFFER_TOO_SMALL &&
          len == 5);
    CHECK(edgellm_model_meta_string(m, "no.such.key\xff", NULL, 0, &len) == EDGELLM_ERR_NOT_FOUND);
    CHECK(edgellm_model_meta_string(m, "general.architecture", buf, sizeof buf, NULL) ==
          EDGELLM_ERR_INVALID_ARGUMENT);
    edgellm_tensor_desc td;
    CHECK(edgellm_model_tensor_at(m, -1, &td) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_model_tensor_at(m, edgellm_model_tensor_count(m), &td) ==
          EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_model_tensor_at(m, 0, NULL) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_model_get_info(m, NULL) == EDGELLM_ERR_INVALID_ARGUMENT);

    edgellm_memory_estimate est;
    CHECK(edgellm_model_estimate_memory(m, INT_MAX, EDGELLM_KV_F16, 0, &est) ==
          EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_model_estimate_memory(m, 64, (edgellm_kv_type)99, 0, &est) ==
          EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_model_estimate_memory(m, 64, (edgellm_kv_type)-1, 0, &est) ==
          EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_model_estimate_memory(m, INT_MIN, EDGELLM_KV_F16, INT_MIN, &est) == EDGELLM_OK);
    CHECK(edgellm_model_estimate_memory(m, 64, EDGELLM_KV_F16, 0, NULL) ==
          EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_model_check_draft(m, m) == EDGELLM_OK);
}

/* Context parameters at and past their limits: refused with a message, or clamped as documented. */
static void test_context_limits(edgellm_model *m)
{
    edgellm_context_params cp = edgellm_context_default_params();
    edgellm_context *c = NULL;
    edgellm_memory_estimate est;
    cp.kv_type = (edgellm_kv_type)7;
    CHECK(edgellm_context_create(m, &cp, &c) == EDGELLM_ERR_INVALID_ARGUMENT && !c);
    CHECK(edgellm_context_estimate_memory(m, &cp, &est) == EDGELLM_ERR_INVALID_ARGUMENT);
    cp = edgellm_context_default_params();
    cp.n_ctx = INT_MAX;
    CHECK(edgellm_context_create(m, &cp, &c) == EDGELLM_ERR_INVALID_ARGUMENT && !c);
    /* A thread count no machine has: a clear failure (or a pool), never a crash. */
    cp = edgellm_context_default_params();
    cp.n_ctx = 16;
    cp.n_threads = INT_MAX;
    edgellm_status st = edgellm_context_create(m, &cp, &c);
    CHECK_MSG(st == EDGELLM_ERR_INVALID_ARGUMENT || st == EDGELLM_ERR_OUT_OF_MEMORY,
              "n_threads INT_MAX: %s %s", edgellm_status_name(st), edgellm_last_error());
    edgellm_context_free(c);
    c = NULL;
    CHECK(edgellm_context_estimate_memory(m, &cp, &est) != EDGELLM_OK);
    edgellm_batch *b = NULL;
    CHECK(edgellm_batch_create(m, &cp, &b) != EDGELLM_OK && !b);
    /* n_batch beyond the context is clamped to it; negative means the default. */
    cp = edgellm_context_default_params();
    cp.n_ctx = 16;
    cp.n_threads = 1;
    cp.n_batch = INT_MAX;
    CHECK(edgellm_context_create(m, &cp, &c) == EDGELLM_OK && edgellm_context_n_batch(c) == 16);
    edgellm_context_free(c);
    cp.n_batch = INT_MIN;
    cp.n_threads = INT_MIN;
    cp.n_ctx = INT_MIN;
    CHECK(edgellm_context_create(m, &cp, &c) == EDGELLM_OK && edgellm_context_n_ctx(c) > 0);
    edgellm_context_free(c);
    CHECK(edgellm_context_create(m, NULL, NULL) == EDGELLM_ERR_INVALID_ARGUMENT);

    cp = edgellm_context_default_params();
    cp.n_ctx = 16;
    cp.n_threads = 1;
    cp.n_batch = 4;
    CHECK(edgellm_context_create(m, &cp, &c) == EDGELLM_OK);
    if (!c)
        return;
    edgellm_token t[20] = {1, 2, 3, 4, 5, 6, 7, 8};
    CHECK(edgellm_eval(c, t, 0, 0) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_eval(c, t, -3, 0) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_eval(c, t, INT_MAX, 0) == EDGELLM_ERR_CONTEXT_FULL);
    CHECK(edgellm_eval(c, NULL, 1, 0) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_eval(c, t, 3, 0) == EDGELLM_OK && edgellm_context_n_past(c) == 3);
    CHECK(edgellm_get_logits(c, INT_MIN) == NULL && edgellm_get_logits(c, INT_MAX) == NULL &&
          edgellm_get_logits(c, -2) == NULL);
    /* Truncating beyond what is cached keeps the cache; a negative count is refused. */
    CHECK(edgellm_context_truncate(c, INT_MAX) == EDGELLM_OK && edgellm_context_n_past(c) == 3);
    CHECK(edgellm_context_truncate(c, -1) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_context_n_past(c) == 3);
    float e[1];
    CHECK(edgellm_embed(c, t, 1, e, -1) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_embed(c, t, INT_MAX, e, 1) == EDGELLM_ERR_INVALID_ARGUMENT);
    edgellm_profile prof;
    CHECK(edgellm_context_get_profile(c, NULL) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_context_set_profiling(c, INT_MIN) == EDGELLM_OK);
    CHECK(edgellm_context_get_profile(c, &prof) == EDGELLM_OK);
    CHECK(edgellm_context_set_profiling(c, 0) == EDGELLM_OK);
    edgellm_context_free(c);
}

typedef struct cb_state {
    int calls;
    int stop_at;              /* return non-zero on this call (1 = the first) */
    edgellm_context *reenter; /* when set, each call evaluates a token on this other context */
    edgellm_model *model;
    int reenter_failures;
    /* When set, each call tries to evaluate a token on, and truncate, the generating context. */
    edgellm_context *reenter_self;
    int self_accepted; /* of those calls, the ones the library did not refuse */
    edgellm_token tokens[64];
    int n_tokens;
    size_t bytes;
    bool bad_utf8_start;
} cb_state;

static int on_token(void *user, edgellm_token token, const char *text, size_t len)
{
    cb_state *s = user;
    s->calls++;
    (void)token;
    s->bytes += len;
    if (token >= 0 && s->n_tokens < 64)
        s->tokens[s->n_tokens++] = token;
    if (s->reenter_self) {
        edgellm_token one = 1;
        s->self_accepted += edgellm_eval(s->reenter_self, &one, 1, 0) == EDGELLM_OK;
        s->self_accepted += edgellm_context_truncate(s->reenter_self, 0) == EDGELLM_OK;
    }
    if (len > 0 && ((unsigned char)text[0] & 0xC0) == 0x80)
        s->bad_utf8_start = true;
    if (s->reenter) {
        /* Re-entering the library from a callback, on another object, is allowed. */
        edgellm_token one = 1;
        if (edgellm_context_n_past(s->reenter) >= edgellm_context_n_ctx(s->reenter))
            edgellm_context_truncate(s->reenter, 0);
        if (edgellm_eval(s->reenter, &one, 1, 0) != EDGELLM_OK)
            s->reenter_failures++;
        int32_t n = 0;
        if (edgellm_tokenize(s->model, "re-entered", 10, 0, NULL, 0, &n) !=
            EDGELLM_ERR_BUFFER_TOO_SMALL)
            s->reenter_failures++;
    }
    return s->stop_at > 0 && s->calls >= s->stop_at;
}

/* The sanitizers reserve terabytes of address space, so an address-space limit cannot be set
 * under them. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define ADDRESS_SPACE_LIMITABLE 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define ADDRESS_SPACE_LIMITABLE 0
#endif
#endif
#ifndef ADDRESS_SPACE_LIMITABLE
#define ADDRESS_SPACE_LIMITABLE 1
#endif

/* repeat_last_n = INT32_MAX is a valid window: it must not allocate a history of 8 GiB (refused
 * as out of memory on a phone), and it penalizes as the whole history (-1) does. */
static void test_huge_penalty_window(edgellm_model *m)
{
    edgellm_sampler_params sp = edgellm_sampler_default_params();
    sp.repeat_last_n = INT32_MAX;
    sp.repeat_penalty = 1.5f;
    if (ADDRESS_SPACE_LIMITABLE) {
        pid_t child = fork();
        CHECK(child >= 0);
        if (child == 0) {
            struct rlimit limit = {1ul << 30, 1ul << 30};
            edgellm_sampler *s = NULL;
            int ok = setrlimit(RLIMIT_AS, &limit) == 0 &&
                     edgellm_sampler_create(&sp, edgellm_n_vocab(m), &s) == EDGELLM_OK;
            _exit(ok ? 0 : 1);
        }
        int status = 0;
        CHECK(waitpid(child, &status, 0) == child);
        CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "a sampler with repeat_last_n = INT32_MAX needs more than 1 GiB");
    }
    cb_state outputs[2];
    memset(outputs, 0, sizeof outputs);
    for (int i = 0; i < 2; i++) {
        edgellm_context_params cp = edgellm_context_default_params();
        cp.n_threads = 1;
        edgellm_context *ctx = NULL;
        CHECK(edgellm_context_create(m, &cp, &ctx) == EDGELLM_OK);
        edgellm_generate_params gp = edgellm_generate_default_params();
        gp.max_tokens = 24;
        gp.sampling = sp;
        gp.sampling.temperature = 0;
        gp.sampling.repeat_last_n = i == 0 ? INT32_MAX : -1;
        gp.on_token = on_token;
        gp.user_data = &outputs[i];
        CHECK(edgellm_generate(ctx, "Once upon a time", &gp, NULL) == EDGELLM_OK);
        edgellm_context_free(ctx);
    }
    CHECK_MSG(outputs[0].n_tokens == 24 && outputs[1].n_tokens == 24 &&
                  !memcmp(outputs[0].tokens, outputs[1].tokens, sizeof outputs[0].tokens),
              "an INT32_MAX window penalizes otherwise than the whole history");
}

static void test_generate_arguments(edgellm_model *m)
{
    edgellm_context_params cp = edgellm_context_default_params();
    cp.n_ctx = 32;
    cp.n_threads = 1;
    cp.n_batch = 8;
    edgellm_context *c = NULL, *other = NULL;
    CHECK(edgellm_context_create(m, &cp, &c) == EDGELLM_OK);
    CHECK(edgellm_context_create(m, &cp, &other) == EDGELLM_OK);
    if (!c || !other) {
        edgellm_context_free(c);
        edgellm_context_free(other);
        return;
    }
    edgellm_generate_result r;
    edgellm_generate_params gp = edgellm_generate_default_params();
    cb_state cs = {0};
    gp.on_token = on_token;
    gp.user_data = &cs;
    CHECK(edgellm_generate(c, "x", NULL, &r) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_generate(c, NULL, &gp, &r) == EDGELLM_ERR_INVALID_ARGUMENT);
    /* An empty prompt with no BOS has nothing to continue from. */
    gp.add_bos = 0;
    CHECK(edgellm_generate(c, "", &gp, &r) == EDGELLM_ERR_INVALID_ARGUMENT);
    gp.add_bos = 1;
    gp.max_tokens = 4;
    CHECK(edgellm_generate(c, "", &gp, &r) == EDGELLM_OK && r.n_generated <= 4);
    /* max_tokens INT_MAX, and INT_MIN (unlimited): the context ends it. */
    gp.add_bos = -1;
    gp.max_tokens = INT_MAX;
    gp.sampling.seed = UINT64_MAX;
    gp.sampling.temperature = 1.0f;
    CHECK(edgellm_generate(c, "Once upon", &gp, &r) == EDGELLM_OK);
    CHECK(r.stop_reason == EDGELLM_STOP_CONTEXT_FULL || r.stop_reason == EDGELLM_STOP_EOS);
    CHECK(edgellm_context_n_past(c) <= 32);
    gp.max_tokens = INT_MIN;
    gp.sampling.seed = 0;
    CHECK(edgellm_generate(c, "Once upon", &gp, &r) == EDGELLM_OK);
    CHECK(r.stop_reason == EDGELLM_STOP_CONTEXT_FULL || r.stop_reason == EDGELLM_STOP_EOS);
    /* keep_cache with a full context: refused, not overrun. */
    gp.keep_cache = 1;
    gp.max_tokens = 4;
    if (edgellm_context_n_past(c) == 32)
        CHECK(edgellm_generate(c, "more", &gp, &r) == EDGELLM_ERR_CONTEXT_FULL);
    gp.keep_cache = 0;
    /* A prompt longer than the context. */
    char longp[4096];
    memset(longp, 'a', sizeof longp - 1);
    for (size_t i = 1; i < sizeof longp - 1; i += 2)
        longp[i] = ' ';
    longp[sizeof longp - 1] = '\0';
    CHECK(edgellm_generate(c, longp, &gp, &r) == EDGELLM_ERR_CONTEXT_FULL);
    /* Invalid UTF-8 and control bytes in the prompt; the output stays whole characters. */
    cs = (cb_state){0};
    CHECK(edgellm_generate(c, "\xff\xfe\xc3\x28 \x1b\x07 \xf0\x9f", &gp, &r) == EDGELLM_OK);
    CHECK(!cs.bad_utf8_start);
    /* Sampling parameters that are not numbers are refused before anything is evaluated
     * (negative presence and frequency penalties are allowed: they favour repeats). */
    static const size_t fields[] = {offsetof(edgellm_sampler_params, temperature),
                                    offsetof(edgellm_sampler_params, top_p),
                                    offsetof(edgellm_sampler_params, min_p),
                                    offsetof(edgellm_sampler_params, repeat_penalty),
                                    offsetof(edgellm_sampler_params, presence_penalty),
                                    offsetof(edgellm_sampler_params, frequency_penalty)};
    const float bad[] = {NAN, INFINITY, -INFINITY, -1.0f};
    for (size_t f = 0; f < sizeof fields / sizeof fields[0]; f++)
        for (int i = 0; i < (f < 4 ? 4 : 3); i++) {
            edgellm_generate_params b = gp;
            memcpy((char *)&b.sampling + fields[f], &bad[i], sizeof bad[i]);
            CHECK_MSG(edgellm_generate(c, "x", &b, &r) == EDGELLM_ERR_INVALID_ARGUMENT,
                      "sampling field %zu = %g", f, bad[i]);
        }
    edgellm_generate_params b = gp;
    b.sampling.top_k = INT_MAX;
    b.sampling.repeat_last_n = -1;
    b.sampling.presence_penalty = 1e30f;
    b.sampling.frequency_penalty = -1e30f;
    CHECK(edgellm_generate(c, "x", &b, &r) == EDGELLM_OK);
    b = gp;
    b.sampling.top_k = -1;
    CHECK(edgellm_generate(c, "x", &b, &r) == EDGELLM_ERR_INVALID_ARGUMENT);
    /* Stop strings: empty ones are ignored, NULL entries and negative counts refused, and one
     * longer than the output never fires. */
    const char *stops[3] = {"", "a stop string far longer than anything four tokens could write",
                            NULL};
    b = gp;
    b.stop_strings = stops;
    b.n_stop_strings = 2;
    cs = (cb_state){0};
    CHECK(edgellm_generate(c, "x", &b, &r) == EDGELLM_OK);
    CHECK(r.stop_reason != EDGELLM_STOP_STRING && r.n_generated > 0);
    b.n_stop_strings = 3;
    CHECK(edgellm_generate(c, "x", &b, &r) == EDGELLM_ERR_INVALID_ARGUMENT);
    b.n_stop_strings = -1;
    CHECK(edgellm_generate(c, "x", &b, &r) == EDGELLM_ERR_INVALID_ARGUMENT);
    b.stop_strings = NULL;
    b.n_stop_strings = 5;
    CHECK(edgellm_generate(c, "x", &b, &r) == EDGELLM_ERR_INVALID_ARGUMENT);
    /* Prompt ids outside the vocabulary. */
    edgellm_token badp[2] = {1, edgellm_n_vocab(m)};
    CHECK(edgellm_generate_tokens(c, badp, 2, &gp, &r) == EDGELLM_ERR_INVALID_ARGUMENT);
    badp[1] = -7;
    CHECK(edgellm_generate_tokens(c, badp, 2, &gp, &r) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_generate_tokens(c, badp, -2, &gp, &r) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_generate_tokens(c, badp, 1, &gp, NULL) == EDGELLM_OK);
    /* Speculative settings at their limits. */
    b = gp;
    b.lookup_ngram = INT_MAX;
    b.draft_max = INT_MAX;
    edgellm_status st = edgellm_generate(c, "x y x y x y", &b, &r);
    CHECK_MSG(st == EDGELLM_OK || st == EDGELLM_ERR_INVALID_ARGUMENT, "draft_max INT_MAX: %s",
              edgellm_last_error());
    b.draft_max = -3;
    b.lookup_ngram = 2;
    st = edgellm_generate(c, "x y x y x y", &b, &r);
    CHECK_MSG(st == EDGELLM_OK || st == EDGELLM_ERR_INVALID_ARGUMENT, "draft_max -3: %s",
              edgellm_last_error());
    b.lookup_ngram = -1;
    b.draft_max = 8;
    st = edgellm_generate(c, "x y", &b, &r);
    CHECK_MSG(st == EDGELLM_OK || st == EDGELLM_ERR_INVALID_ARGUMENT, "lookup_ngram -1: %s",
              edgellm_last_error());
    /* The context as its own draft. */
    b = gp;
    b.draft = c;
    CHECK(edgellm_generate(c, "x", &b, &r) == EDGELLM_ERR_INVALID_ARGUMENT);
    b.draft = other;
    b.lookup_ngram = 2;
    CHECK(edgellm_generate(c, "x", &b, &r) == EDGELLM_ERR_INVALID_ARGUMENT); /* two sources */

    /* A grammar compiled for another vocabulary: its masks do not fit this model's logits. */
    edgellm_model_params vocab_only = edgellm_model_default_params();
    vocab_only.vocab_only = 1;
    edgellm_model *other_vocab = NULL;
    edgellm_grammar *foreign = NULL;
    static const char gram[] = "root ::= [a-z ]+";
    CHECK(edgellm_model_load(test_shared_path("models/llama2-vocab-tiny-f16.gguf"), &vocab_only,
                             &other_vocab) == EDGELLM_OK);
    CHECK(other_vocab && edgellm_grammar_compile(other_vocab, gram, sizeof gram - 1, NULL,
                                                 &foreign) == EDGELLM_OK);
    b = gp;
    b.grammar = foreign;
    CHECK(foreign && edgellm_generate(c, "x", &b, &r) == EDGELLM_ERR_INVALID_ARGUMENT);
    b.lookup_ngram = 2;
    CHECK(foreign && edgellm_generate(c, "x", &b, &r) == EDGELLM_ERR_INVALID_ARGUMENT);
    edgellm_grammar_free(foreign);
    edgellm_model_free(other_vocab);

    /* A callback that stops at once; one that re-enters the library on another context. */
    cs = (cb_state){.stop_at = 1};
    gp.max_tokens = 16;
    CHECK(edgellm_generate(c, "Once", &gp, &r) == EDGELLM_OK);
    CHECK(r.stop_reason == EDGELLM_STOP_CALLBACK && r.n_generated == 1 && cs.calls == 1);
    cs = (cb_state){.reenter = other, .model = m};
    CHECK(edgellm_generate(c, "Once", &gp, &r) == EDGELLM_OK);
    CHECK(cs.calls > 0 && cs.reenter_failures == 0);
    /* On the generating context itself it is refused (it corrupted the output and cache before
     * API version 4), and the output is what it is without it. */
    static cb_state plain, self;
    plain = (cb_state){0};
    self = (cb_state){.reenter_self = c};
    gp.sampling.temperature = 0;
    gp.user_data = &plain;
    CHECK(edgellm_generate(c, "Once upon a time", &gp, &r) == EDGELLM_OK);
    gp.user_data = &self;
    CHECK(edgellm_generate(c, "Once upon a time", &gp, &r) == EDGELLM_OK);
    CHECK_MSG(self.calls > 0 && self.self_accepted == 0,
              "%d of %d calls on the generating context from its callback were accepted",
              self.self_accepted, 2 * self.calls);
    CHECK_MSG(self.n_tokens == plain.n_tokens &&
                  !memcmp(self.tokens, plain.tokens, (size_t)plain.n_tokens * sizeof *plain.tokens),
              "re-entering the generating context changed its output");
    gp.user_data = &cs;

    edgellm_context_free(other);
    edgellm_context_free(c);
}

typedef struct worker {
    edgellm_model *model;
    int id;
    int failures;
    edgellm_token out[12];
    int n_out;
    char error[160];
} worker;

static int keep_tokens(void *user, edgellm_token token, const char *text, size_t len)
{
    (void)text, (void)len;
    worker *w = user;
    if (token >= 0 && w->n_out < 12)
        w->out[w->n_out++] = token;
    return 0;
}

/* Each thread makes its own context (and grammar: the shared trie is built once under a lock) and
 * generates greedily; every thread must get the same tokens as the others. */
static void *worker_main(void *arg)
{
    worker *w = arg;
    edgellm_context_params cp = edgellm_context_default_params();
    cp.n_ctx = 64;
    cp.n_threads = 1 + w->id % 2;
    cp.kv_type = (edgellm_kv_type)(w->id % 3);
    edgellm_context *c = NULL;
    edgellm_grammar *g = NULL;
    static const char gram[] = "root ::= [a-z ]+";
    /* The main thread has failed many times by now; none of it shows here. */
    if (edgellm_last_error()[0] != '\0')
        w->failures++;
    if (edgellm_context_create(w->model, &cp, &c) != EDGELLM_OK ||
        edgellm_grammar_compile(w->model, gram, sizeof gram - 1, NULL, &g) != EDGELLM_OK) {
        w->failures++;
        snprintf(w->error, sizeof w->error, "%s", edgellm_last_error());
    }
    edgellm_generate_params gp = edgellm_generate_default_params();
    gp.max_tokens = 12;
    gp.sampling.temperature = 0;
    gp.on_token = keep_tokens;
    gp.user_data = w;
    if (c && edgellm_generate(c, "Once upon a time", &gp, NULL) != EDGELLM_OK) {
        w->failures++;
        snprintf(w->error, sizeof w->error, "%s", edgellm_last_error());
    }
    /* A failure on this thread leaves the message here only. */
    edgellm_token bad = -1;
    if (c && (edgellm_eval(c, &bad, 1, 0) == EDGELLM_OK ||
              !strstr(edgellm_last_error(), "outside the vocabulary")))
        w->failures++;
    edgellm_grammar_free(g);
    edgellm_context_free(c);
    return NULL;
}

static void test_threads(void)
{
    /* A fresh model, so the grammar trie is built by the racing threads. */
    edgellm_model *m = NULL;
    CHECK(edgellm_model_load(model_path(), NULL, &m) == EDGELLM_OK);
    if (!m)
        return;
    enum { N = 6 };
    worker w[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        w[i] = (worker){.model = m, .id = i};
        CHECK(pthread_create(&th[i], NULL, worker_main, &w[i]) == 0);
    }
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < N; i++) {
        CHECK_MSG(w[i].failures == 0, "thread %d: %s", i, w[i].error);
        /* KV types differ by thread: compare within one type only. */
        if (i >= 3)
            CHECK(w[i].n_out == w[i - 3].n_out && !memcmp(w[i].out, w[i - 3].out, sizeof w[i].out));
    }
    edgellm_model_free(m);
}

typedef struct cancel {
    atomic_int flag;    /* set by the canceller thread */
    atomic_int started; /* set by the callback once tokens flow */
    int calls;
} cancel;

static int until_cancelled(void *user, edgellm_token token, const char *text, size_t len)
{
    (void)token, (void)text, (void)len;
    cancel *c = user;
    c->calls++;
    atomic_store(&c->started, 1);
    return atomic_load(&c->flag);
}

static void *canceller(void *arg)
{
    cancel *c = arg;
    while (!atomic_load(&c->started))
        sched_yield();
    atomic_store(&c->flag, 1);
    return NULL;
}

/* Stopping a generation from another thread: decode stops through the callback, and a prompt is
 * evaluated in chunks the application can stop between, after which edgellm_generate reuses the
 * cached prompt (docs/embedding.md, "Session 10"). */
static void test_cancel(edgellm_model *m)
{
    edgellm_context_params cp = edgellm_context_default_params();
    cp.n_ctx = 0; /* the model's: 128 */
    cp.n_threads = 2;
    cp.n_batch = 8;
    edgellm_context *c = NULL;
    CHECK(edgellm_context_create(m, &cp, &c) == EDGELLM_OK);
    if (!c)
        return;
    cancel cc;
    atomic_init(&cc.flag, 0);
    atomic_init(&cc.started, 0);
    cc.calls = 0;
    pthread_t th;
    CHECK(pthread_create(&th, NULL, canceller, &cc) == 0);
    edgellm_generate_params gp = edgellm_generate_default_params();
    gp.max_tokens = 0; /* until the context is full: only the cancel ends it early */
    gp.sampling.temperature = 0;
    gp.on_token = until_cancelled;
    gp.user_data = &cc;
    edgellm_generate_result r;
    CHECK(edgellm_generate(c, "Once upon a time", &gp, &r) == EDGELLM_OK);
    pthread_join(th, NULL);
    CHECK(r.stop_reason == EDGELLM_STOP_CALLBACK || r.stop_reason == EDGELLM_STOP_EOS);
    /* The token the callback stopped at is not evaluated. */
    if (r.stop_reason == EDGELLM_STOP_CALLBACK)
        CHECK(edgellm_context_n_past(c) == r.n_prompt_tokens + r.n_generated - 1);

    /* The prompt by hand, a chunk at a time, then the same prompt through edgellm_generate. */
    static const char prompt[] = "The little dog ran to the park and saw a big red ball";
    edgellm_token ids[64];
    int32_t n = 0;
    CHECK(edgellm_tokenize(m, prompt, sizeof prompt - 1, EDGELLM_TOKENIZE_ADD_BOS, ids, 64, &n) ==
          EDGELLM_OK);
    CHECK(edgellm_context_truncate(c, 0) == EDGELLM_OK);
    for (int32_t done = 0; done < n; done += 4) /* an app checks its flag between chunks */
        CHECK(edgellm_eval(c, ids + done, n - done < 4 ? n - done : 4, 0) == EDGELLM_OK);
    gp.max_tokens = 8;
    gp.on_token = NULL;
    gp.add_bos = 1;
    edgellm_generate_result chunked;
    CHECK(edgellm_generate_tokens(c, ids, n, &gp, &chunked) == EDGELLM_OK);
    CHECK(chunked.n_cached_tokens == n - 1);
    int32_t n_out = 0;
    const edgellm_token *out = edgellm_context_tokens(c, &n_out);
    edgellm_token first[128];
    int32_t n_first = n_out < 128 ? n_out : 128;
    memcpy(first, out, (size_t)n_first * sizeof *out);
    CHECK(edgellm_context_truncate(c, 0) == EDGELLM_OK);
    CHECK(edgellm_generate_tokens(c, ids, n, &gp, &r) == EDGELLM_OK && r.n_cached_tokens == 0);
    out = edgellm_context_tokens(c, &n_out);
    CHECK(n_out == n_first && r.n_generated == chunked.n_generated &&
          !memcmp(first, out, (size_t)n_first * sizeof *out));
    edgellm_context_free(c);
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "test_api_hostile: a load hung (FIFO?)\n";
    if (write(2, msg, sizeof msg - 1) < 0) {
    }
    _exit(1);
}

/* Paths that are not model files; a model truncated anywhere; a model replaced while loaded. */
static void test_files(void)
{
    edgellm_model *m = NULL;
    CHECK(edgellm_model_load(test_tmp_path(""), NULL, &m) == EDGELLM_ERR_IO && !m);
    CHECK(edgellm_model_load("/dev/zero", NULL, &m) == EDGELLM_ERR_IO && !m);
    CHECK(edgellm_model_load("/dev/null", NULL, &m) != EDGELLM_OK && !m);
    CHECK(edgellm_model_load("/no/such/dir/model.gguf", NULL, &m) == EDGELLM_ERR_IO);
    /* A FIFO nobody writes to: opening it for reading would wait for a writer forever. */
    const char *fifo = test_tmp_path("hostile.fifo");
    unlink(fifo);
    if (mkfifo(fifo, 0600) == 0) {
        signal(SIGALRM, on_alarm);
        alarm(20);
        CHECK(edgellm_model_load(fifo, NULL, &m) == EDGELLM_ERR_IO && !m);
        alarm(0);
        unlink(fifo);
    }

    size_t size = 0;
    char *bytes = test_read_file(model_path(), &size);
    CHECK(bytes != NULL);
    if (!bytes)
        return;
    /* No read permission (root reads anyway; then only the load is checked). */
    const char *locked = test_tmp_path("hostile-locked.gguf");
    FILE *f = fopen(locked, "wb");
    if (f) {
        fwrite(bytes, 1, size, f);
        fclose(f);
        chmod(locked, 0);
        edgellm_status st = edgellm_model_load(locked, NULL, &m);
        CHECK(geteuid() == 0 ? st == EDGELLM_OK : st == EDGELLM_ERR_IO);
        edgellm_model_free(m);
        m = NULL;
        unlink(locked);
    }
    /* Every prefix up to the tensor data, then a stride through the data: each fails as a
     * format error (nothing is read past the end). */
    size_t step = 1;
    for (size_t n = 0; n < size; n += step) {
        if (n > 65536)
            step = 4093;
        edgellm_status st = edgellm_model_load_from_memory(bytes, n, NULL, &m);
        CHECK_MSG(st == EDGELLM_ERR_FORMAT && !m, "prefix %zu: %s", n, edgellm_status_name(st));
        edgellm_model_free(m);
        m = NULL;
    }

    /* Replacing the file by rename while it is loaded: the model keeps the old file's pages. */
    const char *path = test_tmp_path("hostile-replaced.gguf");
    const char *next = test_tmp_path("hostile-replaced.gguf.new");
    f = fopen(path, "wb");
    if (f) {
        fwrite(bytes, 1, size, f);
        fclose(f);
    }
    CHECK(edgellm_model_load(path, NULL, &m) == EDGELLM_OK);
    f = fopen(next, "wb");
    if (f) {
        fwrite("GGUF garbage", 1, 12, f);
        fclose(f);
    }
    CHECK(rename(next, path) == 0);
    edgellm_context *c = NULL;
    CHECK(m && edgellm_context_create(m, NULL, &c) == EDGELLM_OK);
    edgellm_token t[3] = {1, 2, 3};
    CHECK(c && edgellm_eval(c, t, 3, 0) == EDGELLM_OK);
    edgellm_context_free(c);
    edgellm_model_free(m);
    unlink(path);
    free(bytes);
}

/* A vocabulary-only model: tokenization works, everything that needs weights says so. */
static void test_vocab_only(void)
{
    edgellm_model_params mp = edgellm_model_default_params();
    mp.vocab_only = 1;
    edgellm_model *m = NULL;
    CHECK(edgellm_model_load(model_path(), &mp, &m) == EDGELLM_OK);
    if (!m)
        return;
    edgellm_context *c = NULL;
    edgellm_batch *b = NULL;
    edgellm_memory_estimate est;
    CHECK(edgellm_context_create(m, NULL, &c) == EDGELLM_ERR_UNSUPPORTED && !c);
    CHECK(edgellm_batch_create(m, NULL, &b) == EDGELLM_ERR_UNSUPPORTED && !b);
    CHECK(edgellm_model_estimate_memory(m, 0, EDGELLM_KV_F16, 0, &est) == EDGELLM_ERR_UNSUPPORTED);
    int32_t n = 0;
    CHECK(edgellm_tokenize(m, "hello", 5, 0, NULL, 0, &n) == EDGELLM_ERR_BUFFER_TOO_SMALL);
    edgellm_model_info info;
    CHECK(edgellm_model_get_info(m, &info) == EDGELLM_OK && info.n_layer == 0);
    edgellm_model_free(m);
}

int main(void)
{
    test_null_everything();
    test_hostile_metadata();
    edgellm_model *m = NULL;
    edgellm_status st = edgellm_model_load(model_path(), NULL, &m);
    CHECK_MSG(st == EDGELLM_OK, "%s", edgellm_last_error());
    if (m) {
        test_error_messages(m);
        test_model_arguments(m);
        test_context_limits(m);
        test_generate_arguments(m);
        test_huge_penalty_window(m);
        test_cancel(m);
    }
    edgellm_model_free(m);
    test_threads();
    test_files();
    test_vocab_only();
    return test_finish("test_api_hostile");
}
