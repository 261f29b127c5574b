/* The step-by-step generation across threads, through the public header only, on the shared
 * aidreams model:
 *  - one thread pulls a generation a token at a time while another cancels its context without
 *    pause: whenever the cancel lands, the tokens handed out are a prefix of what the same
 *    generation gives undisturbed, the status, *ended and the result agree, the cache holds the
 *    prompt and (at most) those tokens, and the context then generates exactly what a fresh one
 *    does;
 *  - two threads each pull generations on their own context of one model (one grammar shared by
 *    both, as the header allows), in slices of different sizes: each gets exactly its
 *    single-threaded output;
 *  - four threads each make a context, a text stream and a grammar state of a model and a
 *    grammar whose handles the main thread then frees: each thread's generations are exactly
 *    the single-threaded ones, and whichever thread frees last frees the model and the grammar
 *    (their counts are atomic: ThreadSanitizer checks the hand-over);
 *  - two threads each pull greedy generations (plain and under a grammar) drafting with one
 *    shared draft context, which the main thread also frees while they run: each output is the
 *    output without a draft, and every proposal is accepted (the model drafts for itself, so a
 *    proposal from another generation's cache would show).
 * Nothing checked depends on timing: where the cancel lands varies, what must hold wherever it
 * lands does not. Run it in the sanitizer build (or a -fsanitize=thread one) for the races. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "edgellm.h"
#include "test_util.h"

enum { MAX_OUT = 128, N_GEN = 40, CANCEL_ROUNDS = 30, CONCURRENT_ROUNDS = 6 };

typedef struct output {
    edgellm_token tokens[MAX_OUT];
    int n_tokens;
    char text[4096];
    size_t len;
} output;

/* The prompt's ids followed by the undisturbed generation's tokens: every state a context
 * generating it passes through caches a prefix of this. */
typedef struct sequence {
    edgellm_token ids[2 * MAX_OUT];
    int32_t n_prompt, n;
} sequence;

static int collect(void *user, edgellm_token token, const char *text, size_t len)
{
    output *o = user;
    if (token >= 0 && o->n_tokens < MAX_OUT)
        o->tokens[o->n_tokens++] = token;
    if (o->len + len < sizeof o->text) {
        memcpy(o->text + o->len, text, len);
        o->len += len;
    }
    return 0;
}

static edgellm_context *new_context(edgellm_model *m, int32_t n_threads)
{
    edgellm_context_params cp = edgellm_context_default_params();
    cp.n_ctx = 128;
    cp.n_threads = n_threads;
    cp.n_batch = 8; /* several passes per prompt: more points for a cancel to land */
    edgellm_context *ctx = NULL;
    CHECK(edgellm_context_create(m, &cp, &ctx) == EDGELLM_OK && ctx);
    return ctx;
}

typedef struct job {
    const char *prompt;
    edgellm_generate_params params;
    int32_t slice; /* tokens per edgellm_generation_next; the prompt goes in slices of 5 */
} job;

/* Begins job on ctx, pulls it to its end in the job's slices, finishes it. */
static edgellm_status run_job(edgellm_context *ctx, const job *j, output *out,
                              edgellm_generate_result *result)
{
    memset(out, 0, sizeof *out);
    edgellm_generate_params p = j->params;
    p.on_token = collect;
    p.user_data = out;
    edgellm_generation *g = NULL;
    edgellm_status st = edgellm_generation_begin(ctx, j->prompt, &p, &g);
    if (st != EDGELLM_OK)
        return st;
    int ended = 0;
    while (!ended && edgellm_generation_prompt_left(g) > 0)
        edgellm_generation_prefill(g, 5, &ended);
    while (!ended)
        edgellm_generation_next(g, j->slice, &ended);
    return edgellm_generation_finish(g, result);
}

/* ---- a cancel storm on a generation pulled a token at a time ----------------------------- */

typedef struct storm {
    edgellm_context *ctx;
    atomic_bool quit;
    atomic_long landed;
} storm;

static void pause_us(long us)
{
    struct timespec pause = {0, us * 1000};
    nanosleep(&pause, NULL);
}

/* Cancels again and again; after each one that lands, a pause of varying length (up to about
 * a token's time), so that cancels land in prefill, in decode and between calls. */
static void *cancel_repeatedly(void *arg)
{
    storm *s = arg;
    while (!atomic_load(&s->quit))
        if (edgellm_context_cancel(s->ctx)) {
            long landed = atomic_fetch_add(&s->landed, 1);
            pause_us(landed * 7919 % 400);
        }
    return NULL;
}

static void test_cancel_storm(edgellm_model *m, const job *j, const output *want,
                              const sequence *full)
{
    storm s = {.ctx = new_context(m, 2)};
    atomic_init(&s.quit, false);
    atomic_init(&s.landed, 0);
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, cancel_repeatedly, &s) == 0);
    int cancelled = 0;
    for (int round = 0; round < CANCEL_ROUNDS; round++) {
        output got = {0};
        edgellm_generate_params p = j->params;
        p.on_token = collect;
        p.user_data = &got;
        p.keep_cache = 0;
        edgellm_generation *g = NULL;
        edgellm_status st = edgellm_generation_begin(s.ctx, j->prompt, &p, &g);
        CHECK_MSG(st == EDGELLM_OK && g, "round %d: begin: %s", round, edgellm_last_error());
        if (!g)
            break;
        int ended = 0, calls = 0;
        edgellm_status last = EDGELLM_OK;
        while (!ended && calls++ < 4 * MAX_OUT) {
            last = edgellm_generation_next(g, 1, &ended);
            CHECK_MSG(last == EDGELLM_OK || last == EDGELLM_ERR_CANCELLED,
                      "round %d: next: %s (%s)", round, edgellm_status_name(last),
                      edgellm_last_error());
            CHECK_MSG(last == EDGELLM_OK || ended, "round %d: a failed next did not end it", round);
        }
        CHECK_MSG(ended, "round %d: the generation never ended", round);
        int32_t n_past = edgellm_context_n_past(s.ctx);
        edgellm_generate_result r;
        st = edgellm_generation_finish(g, &r);
        CHECK_MSG(st == last, "round %d: finish returned %s after next's %s", round,
                  edgellm_status_name(st), edgellm_status_name(last));
        CHECK_MSG((st == EDGELLM_ERR_CANCELLED) == (r.stop_reason == EDGELLM_STOP_CANCELLED),
                  "round %d: status %s with stop reason %d", round, edgellm_status_name(st),
                  (int)r.stop_reason);
        CHECK_MSG(r.n_generated == got.n_tokens, "round %d: result says %d tokens, %d came", round,
                  r.n_generated, got.n_tokens);
        /* Wherever it stopped, what came is where the undisturbed generation went. */
        CHECK_MSG(got.n_tokens <= want->n_tokens &&
                      !memcmp(got.tokens, want->tokens, (size_t)got.n_tokens * sizeof *got.tokens),
                  "round %d: the %d tokens before the cancel are not the undisturbed ones", round,
                  got.n_tokens);
        if (st == EDGELLM_OK)
            CHECK_MSG(got.n_tokens == want->n_tokens && got.len == want->len &&
                          !memcmp(got.text, want->text, got.len),
                      "round %d: not cancelled, yet other output", round);
        else
            cancelled++;
        /* A cancel before the first slice leaves the cache of the round before; otherwise it
         * keeps the prompt's whole chunks, or the prompt and the tokens handed out (the last
         * one unless the cancel came between its emission and its pass). */
        int32_t n_cached = 0;
        const edgellm_token *cached = edgellm_context_tokens(s.ctx, &n_cached);
        CHECK_MSG(n_cached == n_past && n_cached <= full->n &&
                      !memcmp(cached, full->ids, (size_t)n_cached * sizeof *cached),
                  "round %d: the %d cached tokens are not a prefix of the prompt and its "
                  "undisturbed continuation",
                  round, n_cached);
        if (got.n_tokens > 0)
            CHECK_MSG(n_cached >= full->n_prompt + got.n_tokens - 1,
                      "round %d: %d tokens cached after %d prompt and %d generated", round,
                      n_cached, full->n_prompt, got.n_tokens);
    }
    atomic_store(&s.quit, true);
    pthread_join(thread, NULL);
    /* The storm is over: the context generates what a fresh one generates. */
    output after;
    edgellm_generate_result r;
    CHECK(run_job(s.ctx, j, &after, &r) == EDGELLM_OK);
    CHECK_MSG(after.n_tokens == want->n_tokens &&
                  !memcmp(after.tokens, want->tokens, sizeof after.tokens),
              "after the cancels the context generates other tokens");
    printf("cancel storm: %d of %d generations cancelled, %ld cancels landed\n", cancelled,
           CANCEL_ROUNDS, (long)atomic_load(&s.landed));
    edgellm_context_free(s.ctx);
}

/* ---- two contexts of one model on two threads --------------------------------------------- */

/* A thread's share: its context (made and freed by the main thread, which alone counts checks). */
typedef struct worker {
    edgellm_context *ctx;
    const job *jobs;
    int n_jobs;
    output outputs[CONCURRENT_ROUNDS];
    edgellm_status status[CONCURRENT_ROUNDS];
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    for (int i = 0; i < CONCURRENT_ROUNDS; i++) {
        edgellm_generate_result r;
        w->status[i] = run_job(w->ctx, &w->jobs[i % w->n_jobs], &w->outputs[i], &r);
    }
    return NULL;
}

static void test_two_contexts(edgellm_model *m, const job *jobs_a, const job *jobs_b, int n_jobs)
{
    output alone_a[CONCURRENT_ROUNDS], alone_b[CONCURRENT_ROUNDS];
    edgellm_context *ctx = new_context(m, 1);
    for (int i = 0; i < CONCURRENT_ROUNDS; i++) {
        edgellm_generate_result r;
        CHECK(run_job(ctx, &jobs_a[i % n_jobs], &alone_a[i], &r) == EDGELLM_OK);
        CHECK(run_job(ctx, &jobs_b[i % n_jobs], &alone_b[i], &r) == EDGELLM_OK);
        CHECK_MSG(alone_a[i].n_tokens > 0 && alone_b[i].n_tokens > 0, "job %d generated nothing",
                  i);
    }
    edgellm_context_free(ctx);

    worker a = {.ctx = new_context(m, 1), .jobs = jobs_a, .n_jobs = n_jobs};
    worker b = {.ctx = new_context(m, 2), .jobs = jobs_b, .n_jobs = n_jobs};
    pthread_t ta, tb;
    CHECK(pthread_create(&ta, NULL, work, &a) == 0);
    CHECK(pthread_create(&tb, NULL, work, &b) == 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    edgellm_context_free(a.ctx);
    edgellm_context_free(b.ctx);
    for (int i = 0; i < CONCURRENT_ROUNDS; i++) {
        CHECK_MSG(a.status[i] == EDGELLM_OK && b.status[i] == EDGELLM_OK, "round %d: %s / %s", i,
                  edgellm_status_name(a.status[i]), edgellm_status_name(b.status[i]));
        CHECK_MSG(!memcmp(&a.outputs[i], &alone_a[i], sizeof alone_a[i]),
                  "round %d: thread A's output differs from its single-threaded one", i);
        CHECK_MSG(!memcmp(&b.outputs[i], &alone_b[i], sizeof alone_b[i]),
                  "round %d: thread B's output differs from its single-threaded one", i);
    }
}

/* ---- one draft context shared by generations on two threads ------------------------------ */

enum { DRAFTERS = 2, DRAFT_ROUNDS = 4 };

/* The draft context the drafters share. The application's own lock keeps a generation from
 * beginning with it while it is freed; the generations already open need none. */
typedef struct shared_draft {
    pthread_mutex_t lock;
    edgellm_context *ctx; /* NULL once freed */
} shared_draft;

/* A thread drafting with the shared context; what it got is checked by the main thread. */
typedef struct drafter {
    edgellm_context *ctx;
    shared_draft *draft;
    const job *jobs;         /* DRAFT_ROUNDS, run in turn */
    atomic_int *tokens_seen; /* by every drafter together, for the main thread's free */
    atomic_int *finished;    /* drafters that are done */
    output outputs[DRAFT_ROUNDS];
    edgellm_generate_result results[DRAFT_ROUNDS];
    edgellm_status status[DRAFT_ROUNDS];
} drafter;

typedef struct counted_output {
    output *out;
    atomic_int *tokens_seen;
} counted_output;

static int collect_counted(void *user, edgellm_token token, const char *text, size_t len)
{
    counted_output *c = user;
    atomic_fetch_add(c->tokens_seen, 1);
    return collect(c->out, token, text, len);
}

static void *draft_with_shared(void *arg)
{
    drafter *d = arg;
    for (int i = 0; i < DRAFT_ROUNDS; i++) {
        job j = d->jobs[i];
        j.params.draft_max = 4;
        output *out = &d->outputs[i];
        memset(out, 0, sizeof *out);
        counted_output counted = {out, d->tokens_seen};
        edgellm_generation *g = NULL;
        j.params.on_token = collect_counted;
        j.params.user_data = &counted;
        pthread_mutex_lock(&d->draft->lock);
        j.params.draft = d->draft->ctx;
        d->status[i] = edgellm_generation_begin(d->ctx, j.prompt, &j.params, &g);
        pthread_mutex_unlock(&d->draft->lock);
        int ended = d->status[i] != EDGELLM_OK;
        while (!ended && edgellm_generation_prompt_left(g) > 0)
            edgellm_generation_prefill(g, 5, &ended);
        while (!ended)
            edgellm_generation_next(g, j.slice, &ended);
        if (g)
            d->status[i] = edgellm_generation_finish(g, &d->results[i]);
    }
    atomic_fetch_add(d->finished, 1);
    return NULL;
}

/* Two generations at a time, on two threads, drafting with one context (one small draft model
 * for a pool of chat sessions). Greedy output is the output without a draft whatever the timing:
 * a pass that finds the draft busy on the other thread checks no proposals. The model drafts for
 * itself, so every greedy proposal made from the right cache is accepted: a proposal made from
 * the other generation's cache would show as a rejection. With free_after > 0 the main thread
 * frees the draft once the threads have handed out that many tokens, while they run. Before
 * session 26 the two threads re-synced and evaluated the draft's cache at the same time (a data
 * race ThreadSanitizer reports). */
static void test_shared_draft(edgellm_model *m, const job *jobs, int free_after)
{
    output want[DRAFT_ROUNDS];
    edgellm_context *ctx = new_context(m, 1);
    for (int i = 0; i < DRAFT_ROUNDS; i++) {
        edgellm_generate_result r;
        CHECK(run_job(ctx, &jobs[i], &want[i], &r) == EDGELLM_OK && want[i].n_tokens > 0);
    }
    edgellm_context_free(ctx);

    atomic_int tokens_seen = 0, finished = 0;
    static shared_draft draft = {.lock = PTHREAD_MUTEX_INITIALIZER};
    draft.ctx = new_context(m, 2);
    static drafter drafters[DRAFTERS];
    pthread_t threads[DRAFTERS];
    for (int t = 0; t < DRAFTERS; t++) {
        drafters[t] = (drafter){.ctx = new_context(m, 1 + t),
                                .draft = &draft,
                                .jobs = jobs,
                                .tokens_seen = &tokens_seen,
                                .finished = &finished};
        CHECK(pthread_create(&threads[t], NULL, draft_with_shared, &drafters[t]) == 0);
    }
    if (free_after > 0) {
        while (atomic_load(&tokens_seen) < free_after && atomic_load(&finished) < DRAFTERS)
            sched_yield();
        pthread_mutex_lock(&draft.lock);
        edgellm_context_free(draft.ctx);
        draft.ctx = NULL;
        pthread_mutex_unlock(&draft.lock);
    }
    for (int t = 0; t < DRAFTERS; t++)
        pthread_join(threads[t], NULL);
    int32_t proposed = 0;
    for (int t = 0; t < DRAFTERS; t++) {
        const drafter *d = &drafters[t];
        for (int i = 0; i < DRAFT_ROUNDS; i++) {
            const edgellm_generate_result *r = &d->results[i];
            CHECK_MSG(d->status[i] == EDGELLM_OK, "thread %d, round %d: %s", t, i,
                      edgellm_status_name(d->status[i]));
            CHECK_MSG(!memcmp(&d->outputs[i], &want[i], sizeof want[i]),
                      "thread %d, round %d: '%.*s' drafting with a shared context, '%.*s' "
                      "without a draft",
                      t, i, (int)d->outputs[i].len, d->outputs[i].text, (int)want[i].len,
                      want[i].text);
            CHECK_MSG(r->n_draft_accepted == r->n_draft_proposed,
                      "thread %d, round %d: %d of %d proposals accepted (a draft proposing for "
                      "itself from the right cache is always right)",
                      t, i, r->n_draft_accepted, r->n_draft_proposed);
            CHECK(r->n_generated == want[i].n_tokens);
            proposed += r->n_draft_proposed;
        }
        edgellm_context_free(d->ctx);
    }
    /* Some pass wins the draft first and proposes; once freed, maybe none did before. */
    if (free_after == 0)
        CHECK_MSG(proposed > 0, "no generation drafted with the shared context");
    printf("shared draft%s: %d proposals checked in %d generations\n",
           free_after > 0 ? " (freed while they ran)" : "", (int)proposed, DRAFTERS * DRAFT_ROUNDS);
    edgellm_context_free(draft.ctx);
}

/* The storm of test_cancel_storm aimed at a draft context: the cancels land in the drafting of
 * the generation that drafts with it (one session's "stop" sent to the draft a pool shares), and
 * stop that drafting, not the generation, which is cancelled through its own context. Before
 * session 26 the generation ended with EDGELLM_ERR_CANCELLED. */
static void test_draft_cancelled(edgellm_model *m, const job *j, const output *want)
{
    edgellm_context *ctx = new_context(m, 1);
    storm s = {.ctx = new_context(m, 2)};
    atomic_init(&s.quit, false);
    atomic_init(&s.landed, 0);
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, cancel_repeatedly, &s) == 0);
    job drafted = *j;
    drafted.params.draft = s.ctx;
    drafted.params.draft_max = 4;
    for (int round = 0; round < CANCEL_ROUNDS / 3; round++) {
        output got;
        edgellm_generate_result r;
        edgellm_status st = run_job(ctx, &drafted, &got, &r);
        CHECK_MSG(st == EDGELLM_OK && r.stop_reason == EDGELLM_STOP_MAX_TOKENS,
                  "round %d: a cancel of the draft context ended the generation: %s (%s)", round,
                  edgellm_status_name(st), edgellm_last_error());
        CHECK_MSG(!memcmp(&got, want, sizeof got), "round %d: '%.*s' under cancels of the draft",
                  round, (int)got.len, got.text);
        CHECK(r.n_draft_accepted == r.n_draft_proposed);
    }
    atomic_store(&s.quit, true);
    pthread_join(thread, NULL);
    printf("draft cancelled: %ld cancels landed in its drafting\n", (long)atomic_load(&s.landed));
    edgellm_context_free(s.ctx);
    edgellm_context_free(ctx);
}

/* One thread begins generations drafting with a context while another begins generations on
 * that context itself: each begin either opens its generation or is refused (EDGELLM_ERR_BUSY),
 * never both at once, since the drafting one would re-sync the cache under the other. Each side
 * pauses after a generation of its own, so that the other's begins find the context free. */
enum { BEGIN_RACE_OPENS = 4, BEGIN_RACE_ROUNDS = 20000 };

typedef struct draft_owner {
    edgellm_context *draft;
    const job *job;
    const output *want;
    atomic_bool quit;
    atomic_int opened, refused, wrong, failed;
} draft_owner;

static void *generate_on_draft(void *arg)
{
    draft_owner *o = arg;
    while (!atomic_load(&o->quit)) {
        output got;
        edgellm_generate_result r;
        edgellm_status st = run_job(o->draft, o->job, &got, &r);
        if (st == EDGELLM_ERR_BUSY) {
            atomic_fetch_add(&o->refused, 1);
            continue;
        }
        if (st != EDGELLM_OK)
            atomic_fetch_add(&o->failed, 1);
        else if (memcmp(&got, o->want, sizeof got) != 0)
            atomic_fetch_add(&o->wrong, 1);
        pause_us(atomic_fetch_add(&o->opened, 1) * 7919 % 300);
    }
    return NULL;
}

static void test_draft_begin_race(edgellm_model *m, const job *j, const output *want)
{
    edgellm_context *ctx = new_context(m, 1);
    static draft_owner owner;
    owner = (draft_owner){.draft = new_context(m, 1), .job = j, .want = want};
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, generate_on_draft, &owner) == 0);
    job drafted = *j;
    drafted.params.draft = owner.draft;
    int opened = 0, refused = 0;
    for (int round = 0;
         round < BEGIN_RACE_ROUNDS &&
         (opened < BEGIN_RACE_OPENS || atomic_load(&owner.opened) < BEGIN_RACE_OPENS);
         round++) {
        output got;
        edgellm_generate_result r;
        edgellm_status st = run_job(ctx, &drafted, &got, &r);
        CHECK_MSG(st == EDGELLM_OK || st == EDGELLM_ERR_BUSY, "round %d: %s (%s)", round,
                  edgellm_status_name(st), edgellm_last_error());
        refused += st == EDGELLM_ERR_BUSY;
        if (st != EDGELLM_OK)
            continue;
        CHECK_MSG(!memcmp(&got, want, sizeof got) && r.n_draft_accepted == r.n_draft_proposed,
                  "round %d: '%.*s', %d of %d proposals accepted", round, (int)got.len, got.text,
                  r.n_draft_accepted, r.n_draft_proposed);
        pause_us(opened++ * 7919 % 300);
    }
    atomic_store(&owner.quit, true);
    pthread_join(thread, NULL);
    CHECK_MSG(atomic_load(&owner.failed) == 0 && atomic_load(&owner.wrong) == 0,
              "on the draft context itself: %d failed, %d other outputs",
              atomic_load(&owner.failed), atomic_load(&owner.wrong));
    /* Its own generations, as a fresh context gives them. */
    output got;
    edgellm_generate_result r;
    CHECK(run_job(owner.draft, j, &got, &r) == EDGELLM_OK && !memcmp(&got, want, sizeof got));
    printf("draft begin race: drafting %d opened, %d refused; on the draft %d opened, %d refused\n",
           opened, refused, atomic_load(&owner.opened), atomic_load(&owner.refused));
    edgellm_context_free(owner.draft);
    edgellm_context_free(ctx);
}

/* ---- the model's and the grammar's handles freed while other threads use them ------------- */

enum { HOLDERS = 4 };

typedef struct holder {
    edgellm_model *model;
    const edgellm_grammar *grammar;
    const job *jobs; /* two: run after the handles are freed */
    atomic_int *ready;
    atomic_bool *released;
    output outputs[2];
    edgellm_status status[2];
    bool stream_ok, state_ok;
} holder;

static void *hold_and_generate(void *arg)
{
    holder *h = arg;
    /* Not new_context: CHECK counts in globals, and this runs on several threads. */
    edgellm_context_params cp = edgellm_context_default_params();
    cp.n_ctx = 128;
    cp.n_threads = 1;
    cp.n_batch = 8;
    edgellm_context *ctx = NULL;
    edgellm_context_create(h->model, &cp, &ctx);
    edgellm_text_stream *stream = NULL;
    edgellm_grammar_state *state = NULL;
    edgellm_text_stream_create(h->model, NULL, 0, &stream);
    edgellm_grammar_state_create(h->grammar, &state);
    atomic_fetch_add(h->ready, 1);
    while (!atomic_load(h->released))
        sched_yield();
    for (int i = 0; i < 2; i++) {
        edgellm_generate_result r;
        h->status[i] = ctx ? run_job(ctx, &h->jobs[i], &h->outputs[i], &r) : EDGELLM_ERR_IO;
    }
    const char *text = NULL;
    size_t len = 0;
    int stopped = 0;
    h->stream_ok = stream && edgellm_text_stream_push(stream, h->outputs[0].tokens[0], &text, &len,
                                                      &stopped) == EDGELLM_OK;
    h->state_ok = state && edgellm_grammar_state_can_end(state) == 0;
    edgellm_grammar_state_free(state);
    edgellm_context_free(ctx);
    edgellm_text_stream_free(stream);
    return NULL;
}

/* Before session 25 the threads read the model and the grammar after they were freed. */
static void test_handles_freed_under_threads(const job *jobs)
{
    edgellm_model *m = NULL;
    CHECK(edgellm_model_load(test_shared_path("models/aidreams260K-f32.gguf"), NULL, &m) ==
          EDGELLM_OK);
    static const char words[] = "root ::= (\" \" [a-z]+)+ \".\"";
    edgellm_grammar *grammar = NULL;
    CHECK(m && edgellm_grammar_compile(m, words, strlen(words), NULL, &grammar) == EDGELLM_OK);
    if (!grammar) {
        edgellm_model_free(m);
        return;
    }
    job own[2] = {jobs[0], jobs[2]};
    own[1].params.grammar = grammar;
    output want[2];
    edgellm_context *ctx = new_context(m, 1);
    for (int i = 0; i < 2; i++) {
        edgellm_generate_result r;
        CHECK(run_job(ctx, &own[i], &want[i], &r) == EDGELLM_OK && want[i].n_tokens > 0);
    }
    edgellm_context_free(ctx);

    atomic_int ready = 0;
    atomic_bool released = false;
    static holder holders[HOLDERS];
    pthread_t threads[HOLDERS];
    for (int i = 0; i < HOLDERS; i++) {
        holders[i] = (holder){
            .model = m, .grammar = grammar, .jobs = own, .ready = &ready, .released = &released};
        CHECK(pthread_create(&threads[i], NULL, hold_and_generate, &holders[i]) == 0);
    }
    while (atomic_load(&ready) < HOLDERS)
        sched_yield();
    edgellm_grammar_free(grammar);
    edgellm_model_free(m);
    atomic_store(&released, true);
    for (int i = 0; i < HOLDERS; i++)
        pthread_join(threads[i], NULL);
    for (int i = 0; i < HOLDERS; i++) {
        const holder *h = &holders[i];
        CHECK_MSG(h->status[0] == EDGELLM_OK && h->status[1] == EDGELLM_OK, "thread %d: %s / %s", i,
                  edgellm_status_name(h->status[0]), edgellm_status_name(h->status[1]));
        for (int k = 0; k < 2; k++)
            CHECK_MSG(!memcmp(&h->outputs[k], &want[k], sizeof want[k]),
                      "thread %d, job %d: not the output of the handles' lifetime", i, k);
        CHECK(h->stream_ok && h->state_ok);
    }
}

int main(void)
{
    edgellm_model *m = NULL;
    if (edgellm_model_load(test_shared_path("models/aidreams260K-f32.gguf"), NULL, &m) !=
        EDGELLM_OK) {
        CHECK_MSG(0, "the shared aidreams model: %s", edgellm_last_error());
        return test_finish("test_api_threads");
    }
    /* Greedy, sampled, with a stop string, under a grammar both threads share. */
    edgellm_generate_params greedy = edgellm_generate_default_params();
    greedy.max_tokens = N_GEN;
    greedy.sampling.temperature = 0;
    edgellm_generate_params sampled = greedy;
    sampled.sampling.temperature = 0.9f;
    sampled.sampling.top_k = 20;
    sampled.sampling.seed = 11;
    sampled.sampling.repeat_penalty = 1.2f;
    static const char *const stops[] = {"park"};
    edgellm_generate_params stopping = sampled;
    stopping.stop_strings = stops;
    stopping.n_stop_strings = 1;
    stopping.sampling.seed = 5;
    static const char words[] = "root ::= (\" \" [a-z]+)+ \".\"";
    edgellm_grammar *grammar = NULL;
    CHECK_MSG(edgellm_grammar_compile(m, words, strlen(words), NULL, &grammar) == EDGELLM_OK,
              "grammar: %s", edgellm_last_error());
    edgellm_generate_params constrained = sampled;
    constrained.grammar = grammar;
    const char *story = "Once upon a time, there was a little girl named Lily. She";
    const job jobs_a[] = {{story, greedy, 1}, {story, sampled, 3}, {"The dog", constrained, 2}};
    const job jobs_b[] = {
        {"One day, Tom", sampled, 4}, {story, stopping, 1}, {"The cat", constrained, 7}};

    output want;
    edgellm_context *ctx = new_context(m, 2);
    edgellm_generate_result r;
    CHECK(run_job(ctx, &jobs_a[0], &want, &r) == EDGELLM_OK);
    CHECK_MSG(want.n_tokens >= 8, "the undisturbed generation gave %d tokens", want.n_tokens);
    sequence full = {.n_prompt = r.n_prompt_tokens};
    const edgellm_token *prompt_ids = edgellm_context_tokens(ctx, &full.n);
    memcpy(full.ids, prompt_ids, (size_t)full.n_prompt * sizeof *full.ids);
    memcpy(full.ids + full.n_prompt, want.tokens, (size_t)want.n_tokens * sizeof *full.ids);
    full.n = full.n_prompt + want.n_tokens;
    edgellm_context_free(ctx);

    test_cancel_storm(m, &jobs_a[0], &want, &full);
    test_two_contexts(m, jobs_a, jobs_b, 3);
    test_handles_freed_under_threads(jobs_a);
    edgellm_generate_params greedy_words = greedy;
    greedy_words.grammar = grammar;
    const job drafted[DRAFT_ROUNDS] = {{story, greedy, 1},
                                       {"The dog", greedy_words, 2},
                                       {"One day, Tom", greedy, 3},
                                       {story, greedy_words, 1}};
    test_shared_draft(m, drafted, 0);
    test_shared_draft(m, drafted, 30);
    test_draft_cancelled(m, &jobs_a[0], &want);
    test_draft_begin_race(m, &jobs_a[0], &want);

    edgellm_grammar_free(grammar);
    edgellm_model_free(m);
    return test_finish("test_api_threads");
}
