/* edgellm_context_cancel from a second thread: a long prefill and a decode stop early with
 * EDGELLM_ERR_CANCELLED, keep a consistent cache, and the context then generates exactly what a
 * fresh one does. The cancel is issued at a chosen point of the work (a layer of a pass, a token),
 * handed over to the other thread and waited for, so what is checked never depends on timing. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#include "api/api_internal.h"
#include "edgellm.h"
#include "model/model.h"
#include "test_util.h"

enum { N_PROMPT = 96, N_BATCH = 8, N_GEN = 24, MAX_OUT = 64 };

/* The second thread: cancels ctx each time the generating thread asks, then reports back. */
typedef struct canceller {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    edgellm_context *ctx;
    int asked, done, landed;
    bool quit;
} canceller;

static void *canceller_main(void *arg)
{
    canceller *c = arg;
    pthread_mutex_lock(&c->mu);
    while (!c->quit) {
        if (c->done < c->asked) {
            edgellm_context *ctx = c->ctx;
            pthread_mutex_unlock(&c->mu);
            int landed = edgellm_context_cancel(ctx);
            pthread_mutex_lock(&c->mu);
            c->landed = landed;
            c->done++;
            pthread_cond_broadcast(&c->cv);
        } else {
            pthread_cond_wait(&c->cv, &c->mu);
        }
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* On the thread running the call: returns once the other thread has cancelled ctx. */
static int cancel_from_other_thread(canceller *c, edgellm_context *ctx)
{
    pthread_mutex_lock(&c->mu);
    c->ctx = ctx;
    int want = ++c->asked;
    pthread_cond_broadcast(&c->cv);
    while (c->done < want)
        pthread_cond_wait(&c->cv, &c->mu);
    int landed = c->landed;
    pthread_mutex_unlock(&c->mu);
    return landed;
}

/* Counts the work of passes through the matrix inputs the forward pass shows an observer: a
 * layer's attention input starts that layer. The cancel goes out at layer cancel_layer of pass
 * cancel_pass (both from 1 and 0); what is seen after it is the work the cancel did not stop. */
typedef struct watch {
    canceller *canceller;
    edgellm_context *ctx;
    int cancel_pass, cancel_layer;
    int passes, layers_after, inputs_after;
    bool cancelled;
    int landed;
} watch;

static void observe(void *user, int32_t layer, ellm_matrix_input which, const float *x,
                    int32_t n_rows, int64_t n_cols)
{
    (void)x;
    (void)n_rows;
    (void)n_cols;
    watch *w = user;
    if (w->cancelled) {
        w->inputs_after++;
        w->layers_after += which == ELLM_INPUT_ATTN;
        return;
    }
    if (which != ELLM_INPUT_ATTN)
        return;
    w->passes += layer == 0;
    if (w->passes == w->cancel_pass && layer == w->cancel_layer) {
        w->landed = cancel_from_other_thread(w->canceller, w->ctx);
        w->cancelled = true;
    }
}

typedef struct collected {
    edgellm_token tokens[MAX_OUT];
    int n_tokens, calls;
    int cancel_at; /* on_token asks the other thread to cancel at this token (0 = never) */
    int landed;
    canceller *canceller;
    edgellm_context *ctx;
} collected;

static int collect(void *user, edgellm_token token, const char *text, size_t len)
{
    (void)text;
    (void)len;
    collected *c = user;
    c->calls++;
    if (token >= 0 && c->n_tokens < MAX_OUT)
        c->tokens[c->n_tokens++] = token;
    if (c->cancel_at > 0 && c->n_tokens == c->cancel_at)
        c->landed = cancel_from_other_thread(c->canceller, c->ctx);
    return 0;
}

static edgellm_context *new_context(edgellm_model *m)
{
    edgellm_context_params cp = edgellm_context_default_params();
    cp.n_threads = 2;
    cp.n_batch = N_BATCH;
    edgellm_context *ctx = NULL;
    CHECK(edgellm_context_create(m, &cp, &ctx) == EDGELLM_OK);
    return ctx;
}

static edgellm_status generate_drafted(edgellm_context *ctx, edgellm_context *draft,
                                       const edgellm_token *prompt, int32_t n_prompt, collected *c,
                                       edgellm_generate_result *r)
{
    edgellm_generate_params gp = edgellm_generate_default_params();
    gp.draft = draft;
    gp.max_tokens = N_GEN;
    gp.sampling.temperature = 0;
    gp.on_token = collect;
    gp.user_data = c;
    return edgellm_generate_tokens(ctx, prompt, n_prompt, &gp, r);
}

static edgellm_status generate_n(edgellm_context *ctx, const edgellm_token *prompt,
                                 int32_t n_prompt, collected *c, edgellm_generate_result *r)
{
    return generate_drafted(ctx, NULL, prompt, n_prompt, c, r);
}

static edgellm_status generate(edgellm_context *ctx, const edgellm_token *prompt, collected *c,
                               edgellm_generate_result *r)
{
    return generate_n(ctx, prompt, N_PROMPT, c, r);
}

/* What the context generates now must be what a fresh context generated. */
static void check_like_fresh(edgellm_context *ctx, const edgellm_token *prompt,
                             const collected *fresh, const char *after)
{
    collected again = {0};
    edgellm_generate_result r;
    CHECK_MSG(generate(ctx, prompt, &again, &r) == EDGELLM_OK, "after %s: %s", after,
              edgellm_last_error());
    CHECK_MSG(r.stop_reason == EDGELLM_STOP_MAX_TOKENS && again.n_tokens == fresh->n_tokens &&
                  !memcmp(again.tokens, fresh->tokens, sizeof again.tokens),
              "after %s the context generates other tokens than a fresh one", after);
}

static void test_cancel_prefill(edgellm_model *m, canceller *cn, const edgellm_token *prompt,
                                const collected *fresh)
{
    edgellm_context *ctx = new_context(m);
    if (!ctx)
        return;
    /* Pass 4 of the 12 the prompt needs, at layer 2: passes 1-3 are whole chunks. */
    watch w = {.canceller = cn, .ctx = ctx, .cancel_pass = 4, .cancel_layer = 2};
    ellm_state_set_input_observer(ellm_context_state(ctx), observe, &w);
    collected c = {0};
    edgellm_generate_result r;
    edgellm_status st = generate(ctx, prompt, &c, &r);
    CHECK_MSG(st == EDGELLM_ERR_CANCELLED, "prefill: %s", edgellm_status_name(st));
    CHECK(w.cancelled && w.landed == 1);
    /* The rest of layer 2 ran; no later layer, pass or token did. */
    CHECK_MSG(w.layers_after == 0 && w.inputs_after <= 3,
              "the pass went on after the cancel: %d layers, %d matrix inputs", w.layers_after,
              w.inputs_after);
    CHECK(w.passes == 4);
    CHECK(c.calls == 0 && r.n_generated == 0 && r.stop_reason == EDGELLM_STOP_CANCELLED);
    int32_t n = 0;
    const edgellm_token *cached = edgellm_context_tokens(ctx, &n);
    CHECK_MSG(n == 3 * N_BATCH && !memcmp(cached, prompt, (size_t)n * sizeof *cached),
              "the cache holds %d tokens, not the 3 finished chunks of the prompt", (int)n);
    ellm_state_set_input_observer(ellm_context_state(ctx), NULL, NULL);
    check_like_fresh(ctx, prompt, fresh, "a cancelled prefill");
    edgellm_context_free(ctx);
}

static void test_cancel_decode(edgellm_model *m, canceller *cn, const edgellm_token *prompt,
                               const collected *fresh)
{
    edgellm_context *ctx = new_context(m);
    if (!ctx)
        return;
    collected c = {.cancel_at = 5, .canceller = cn, .ctx = ctx};
    edgellm_generate_result r;
    edgellm_status st = generate(ctx, prompt, &c, &r);
    CHECK_MSG(st == EDGELLM_ERR_CANCELLED, "decode: %s", edgellm_status_name(st));
    CHECK(c.landed == 1 && c.calls == 5 && r.n_generated == 5);
    CHECK(r.stop_reason == EDGELLM_STOP_CANCELLED);
    CHECK(!memcmp(c.tokens, fresh->tokens, 5 * sizeof *c.tokens));
    /* The fifth token was emitted, its pass cancelled: the cache ends at the fourth. */
    CHECK_MSG(edgellm_context_n_past(ctx) == N_PROMPT + 4, "n_past %d after the cancel",
              (int)edgellm_context_n_past(ctx));
    check_like_fresh(ctx, prompt, fresh, "a cancelled decode");
    edgellm_context_free(ctx);
}

/* edgellm_eval keeps the chunks it finished; evaluating the rest gives the logits of one call. */
static void test_cancel_eval(edgellm_model *m, canceller *cn, const edgellm_token *prompt)
{
    edgellm_context *a = new_context(m), *b = new_context(m);
    if (!a || !b) {
        edgellm_context_free(a);
        edgellm_context_free(b);
        return;
    }
    watch w = {.canceller = cn, .ctx = a, .cancel_pass = 2, .cancel_layer = 0};
    ellm_state_set_input_observer(ellm_context_state(a), observe, &w);
    CHECK(edgellm_eval(a, prompt, N_PROMPT, 0) == EDGELLM_ERR_CANCELLED);
    CHECK(w.landed == 1 && w.passes == 2 && w.layers_after == 0);
    CHECK(edgellm_context_n_past(a) == N_BATCH && edgellm_get_logits(a, -1) == NULL);
    CHECK(edgellm_eval(a, prompt + N_BATCH, N_PROMPT - N_BATCH, 0) == EDGELLM_OK);
    CHECK(edgellm_eval(b, prompt, N_PROMPT, 0) == EDGELLM_OK);
    const float *la = edgellm_get_logits(a, -1), *lb = edgellm_get_logits(b, -1);
    CHECK(la && lb && !memcmp(la, lb, (size_t)edgellm_n_vocab(m) * sizeof *la));
    edgellm_context_free(a);
    edgellm_context_free(b);
}

static void test_cancel_embed(edgellm_model *m, canceller *cn, const edgellm_token *prompt)
{
    edgellm_context *ctx = new_context(m);
    if (!ctx)
        return;
    edgellm_model_info info;
    CHECK(edgellm_model_get_info(m, &info) == EDGELLM_OK);
    float v[256], ref[256];
    CHECK(info.n_embd <= 256);
    watch w = {.canceller = cn, .ctx = ctx, .cancel_pass = 3, .cancel_layer = 1};
    ellm_state_set_input_observer(ellm_context_state(ctx), observe, &w);
    CHECK(edgellm_embed(ctx, prompt, N_PROMPT, v, info.n_embd) == EDGELLM_ERR_CANCELLED);
    CHECK(w.landed == 1 && w.layers_after == 0 && edgellm_context_n_past(ctx) == 0);
    ellm_state_set_input_observer(ellm_context_state(ctx), NULL, NULL);
    CHECK(edgellm_embed(ctx, prompt, N_PROMPT, v, info.n_embd) == EDGELLM_OK);
    edgellm_context *fresh = new_context(m);
    if (fresh) {
        CHECK(edgellm_embed(fresh, prompt, N_PROMPT, ref, info.n_embd) == EDGELLM_OK);
        CHECK(!memcmp(v, ref, (size_t)info.n_embd * sizeof *v));
    }
    edgellm_context_free(fresh);
    edgellm_context_free(ctx);
}

/* A prompt that shares only its first half with what the cache holds: the call keeps that prefix
 * and evaluates the rest; cancelled in its third pass, the cache holds the shared prefix and the
 * two chunks after it, and the context then generates for the new prompt exactly what a fresh
 * context does. */
static void test_cancel_prefix_reuse(edgellm_model *m, canceller *cn, const edgellm_token *prompt)
{
    enum { SHARED = N_PROMPT / 2 };
    edgellm_token other[N_PROMPT];
    memcpy(other, prompt, SHARED * sizeof *other);
    /* The second half of the prompt, reversed: the same tokens, another text. */
    for (int i = SHARED; i < N_PROMPT; i++)
        other[i] = prompt[N_PROMPT - 1 - (i - SHARED)];
    CHECK(other[SHARED] != prompt[SHARED]);
    collected want = {0};
    edgellm_generate_result r;
    edgellm_context *fresh = new_context(m), *ctx = new_context(m);
    CHECK(fresh && generate(fresh, other, &want, &r) == EDGELLM_OK);
    collected first = {0};
    CHECK(ctx && generate(ctx, prompt, &first, &r) == EDGELLM_OK);
    if (fresh && ctx) {
        watch w = {.canceller = cn, .ctx = ctx, .cancel_pass = 3, .cancel_layer = 1};
        ellm_state_set_input_observer(ellm_context_state(ctx), observe, &w);
        collected c = {0};
        edgellm_status st = generate(ctx, other, &c, &r);
        CHECK_MSG(st == EDGELLM_ERR_CANCELLED, "prefix reuse: %s", edgellm_status_name(st));
        CHECK(w.landed == 1 && w.passes == 3 && w.layers_after == 0 && c.calls == 0);
        int32_t n = 0;
        const edgellm_token *cached = edgellm_context_tokens(ctx, &n);
        CHECK_MSG(n == SHARED + 2 * N_BATCH && !memcmp(cached, other, (size_t)n * sizeof *cached),
                  "the cache holds %d tokens, not the shared %d and two finished chunks", (int)n,
                  (int)SHARED);
        ellm_state_set_input_observer(ellm_context_state(ctx), NULL, NULL);
        collected again = {0};
        CHECK(generate(ctx, other, &again, &r) == EDGELLM_OK);
        CHECK_MSG(again.n_tokens == want.n_tokens &&
                      !memcmp(again.tokens, want.tokens, sizeof again.tokens),
                  "after a cancelled prefix-reuse prefill the context generates other tokens "
                  "than a fresh one");
    }
    edgellm_context_free(fresh);
    edgellm_context_free(ctx);
}

/* A cancel of the generating context that lands while its draft context works, reading the
 * prompt (draft pass 3 of the 12 the prompt needs) or proposing (pass 14: after the prompt, the
 * first pass's catch-up over the pending token is pass 13, then one pass per proposal), stops
 * that work before the draft's next layer, as it stops the model's own passes, and nothing is
 * handed out after it. Before session 26 the draft ran on to the end of its work (its whole
 * prompt; with a draft shared by several threads a pass's catch-up can be as long), and after a
 * cancel in the draft's prompt the first token was still handed out. */
static void test_cancel_while_drafting(edgellm_model *m, canceller *cn, const edgellm_token *prompt,
                                       const collected *fresh)
{
    static const int cancel_passes[2] = {3, 14};
    for (int k = 0; k < 2; k++) {
        edgellm_context *ctx = new_context(m), *draft = new_context(m);
        if (!ctx || !draft) {
            edgellm_context_free(ctx);
            edgellm_context_free(draft);
            return;
        }
        watch w = {.canceller = cn, .ctx = ctx, .cancel_pass = cancel_passes[k], .cancel_layer = 1};
        ellm_state_set_input_observer(ellm_context_state(draft), observe, &w);
        collected c = {0};
        edgellm_generate_result r;
        edgellm_status st = generate_drafted(ctx, draft, prompt, N_PROMPT, &c, &r);
        CHECK_MSG(st == EDGELLM_ERR_CANCELLED, "drafting pass %d: %s", cancel_passes[k],
                  edgellm_status_name(st));
        CHECK(w.cancelled && w.landed == 1);
        CHECK_MSG(w.layers_after == 0 && w.inputs_after <= 3,
                  "the draft went on after the cancel in its pass %d: %d layers, %d matrix inputs",
                  cancel_passes[k], w.layers_after, w.inputs_after);
        /* Before the cancel: nothing in the draft's prompt, the first token before pass 14. */
        CHECK_MSG(c.calls == k, "%d tokens handed out with a cancel in draft pass %d", c.calls,
                  cancel_passes[k]);
        CHECK(r.stop_reason == EDGELLM_STOP_CANCELLED && r.n_generated == c.n_tokens);
        CHECK(!memcmp(c.tokens, fresh->tokens, (size_t)c.n_tokens * sizeof *c.tokens));
        CHECK(edgellm_context_n_past(ctx) == N_PROMPT);
        ellm_state_set_input_observer(ellm_context_state(draft), NULL, NULL);
        check_like_fresh(ctx, prompt, fresh, "a cancel while drafting");
        collected again = {0};
        CHECK(edgellm_context_truncate(ctx, 0) == EDGELLM_OK);
        CHECK(generate_drafted(ctx, draft, prompt, N_PROMPT, &again, &r) == EDGELLM_OK &&
              !memcmp(again.tokens, fresh->tokens, sizeof again.tokens) &&
              r.n_draft_accepted == r.n_draft_proposed && r.n_draft_proposed > 0);
        edgellm_context_free(draft);
        edgellm_context_free(ctx);
    }
}

/* A cancel while nothing runs is dropped: the next call runs to its end. */
static void test_cancel_idle(edgellm_model *m, canceller *cn, const edgellm_token *prompt,
                             const collected *fresh)
{
    CHECK(edgellm_context_cancel(NULL) == 0);
    edgellm_context *ctx = new_context(m);
    if (!ctx)
        return;
    pthread_mutex_lock(&cn->mu);
    int before = cn->done;
    pthread_mutex_unlock(&cn->mu);
    CHECK(cancel_from_other_thread(cn, ctx) == 0);
    pthread_mutex_lock(&cn->mu);
    CHECK(cn->done == before + 1);
    pthread_mutex_unlock(&cn->mu);
    check_like_fresh(ctx, prompt, fresh, "a cancel while idle");
    edgellm_context_free(ctx);
}

int main(void)
{
    edgellm_model *m = NULL;
    edgellm_status st = edgellm_model_load(test_shared_path("models/aidreams260K-f32.gguf"), NULL,
                                           &m);
    CHECK_MSG(st == EDGELLM_OK, "%s", edgellm_last_error());
    if (!m)
        return test_finish("test_api_cancel");
    /* A story the model continues past N_GEN tokens without an end of text. */
    const char *story = "Once upon a time, there was a little girl named Lily. She loved to play "
                        "outside in the park with her big red ball. One day, she saw a small dog "
                        "under a tree. The dog was sad because it was lost. Lily wanted to help "
                        "the dog find its home, so she asked her mom. Her mom said they could "
                        "look together. They walked and walked until";
    edgellm_token prompt[4 * N_PROMPT];
    int32_t n = 0;
    CHECK(edgellm_tokenize(m, story, strlen(story), EDGELLM_TOKENIZE_ADD_BOS, prompt, 4 * N_PROMPT,
                           &n) == EDGELLM_OK);
    CHECK_MSG(n >= N_PROMPT, "the story is %d tokens", (int)n);

    canceller cn = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, canceller_main, &cn) == 0);

    collected fresh = {0};
    edgellm_context *ctx = new_context(m);
    edgellm_generate_result r;
    CHECK(ctx && generate(ctx, prompt, &fresh, &r) == EDGELLM_OK);
    CHECK_MSG(r.stop_reason == EDGELLM_STOP_MAX_TOKENS && fresh.n_tokens == N_GEN,
              "a fresh context stopped (%d) after %d tokens", (int)r.stop_reason, fresh.n_tokens);
    edgellm_context_free(ctx);

    test_cancel_prefill(m, &cn, prompt, &fresh);
    test_cancel_decode(m, &cn, prompt, &fresh);
    test_cancel_eval(m, &cn, prompt);
    test_cancel_embed(m, &cn, prompt);
    test_cancel_idle(m, &cn, prompt, &fresh);
    test_cancel_prefix_reuse(m, &cn, prompt);
    test_cancel_while_drafting(m, &cn, prompt, &fresh);

    pthread_mutex_lock(&cn.mu);
    cn.quit = true;
    pthread_cond_broadcast(&cn.cv);
    pthread_mutex_unlock(&cn.mu);
    pthread_join(thread, NULL);
    edgellm_model_free(m);
    return test_finish("test_api_cancel");
}
