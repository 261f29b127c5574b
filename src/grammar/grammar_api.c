/* The public constrained-decoding API: a grammar compiled against a model's vocabulary trie, and
 * per-generation matching states over it. */
#include <stdatomic.h>
#include <stdlib.h>

#include "api/api_internal.h"
#include "core/status.h"
#include "grammar/grammar.h"

struct edgellm_grammar {
    ellm_bound_grammar bound;
    const edgellm_model *model; /* retained: the trie the grammar is bound to is the model's */
    /* The application's handle and each state (a generation's too): a grammar freed while a
     * generation uses it stays until that generation finishes. States live on many threads. */
    atomic_int refs;
};

struct edgellm_grammar_state {
    ellm_matcher *matcher;
    edgellm_grammar *grammar;
};

static void grammar_release(edgellm_grammar *g)
{
    if (atomic_fetch_sub(&g->refs, 1) != 1)
        return;
    ellm_bound_grammar_release(&g->bound);
    ellm_model_release(g->model);
    free(g);
}

edgellm_status edgellm_grammar_compile(const edgellm_model *model, const char *text, size_t len,
                                       const char *root, edgellm_grammar **out)
{
    if (!out)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "edgellm_grammar_compile: out is NULL");
    *out = NULL;
    if (!model || !text)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "edgellm_grammar_compile: need a model and grammar text");
    ellm_grammar *g = NULL;
    edgellm_status st = ellm_grammar_parse(text, len, root, &g);
    if (st != EDGELLM_OK)
        return st;
    const ellm_token_trie *trie = NULL;
    st = ellm_model_token_trie(model, &trie);
    edgellm_grammar *eg = st == EDGELLM_OK ? calloc(1, sizeof *eg) : NULL;
    if (st == EDGELLM_OK && !eg)
        st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for a grammar");
    if (st == EDGELLM_OK)
        st = ellm_bound_grammar_init(&eg->bound, g, trie);
    if (st != EDGELLM_OK) {
        ellm_grammar_destroy(g);
        free(eg);
        return st;
    }
    eg->model = model;
    ellm_model_retain(model);
    atomic_init(&eg->refs, 1);
    /* A grammar whose first character no token can write would only ever stop at once. */
    edgellm_grammar_state *probe = NULL;
    st = edgellm_grammar_state_create(eg, &probe);
    if (st == EDGELLM_OK) {
        int32_t n_allowed = 0;
        uint8_t *allowed = malloc((size_t)trie->n_tokens);
        if (!allowed) {
            st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory to check the grammar");
        } else {
            n_allowed = ellm_matcher_allowed(probe->matcher, allowed);
            if (n_allowed < 0)
                st = EDGELLM_ERR_UNSUPPORTED;
            else if (n_allowed == 0 && !ellm_matcher_can_end(probe->matcher))
                st = ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                               "grammar: no token of this model's vocabulary can begin its output");
            free(allowed);
        }
        edgellm_grammar_state_free(probe);
    }
    if (st != EDGELLM_OK) {
        edgellm_grammar_free(eg);
        return st;
    }
    *out = eg;
    return EDGELLM_OK;
}

int32_t ellm_grammar_n_vocab(const edgellm_grammar *g) { return g->bound.trie->n_tokens; }

void edgellm_grammar_free(edgellm_grammar *g)
{
    if (g)
        grammar_release(g);
}

edgellm_status edgellm_grammar_state_create(const edgellm_grammar *g, edgellm_grammar_state **out)
{
    if (!out)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "edgellm_grammar_state_create: out is NULL");
    *out = NULL;
    if (!g)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "edgellm_grammar_state_create: no grammar");
    edgellm_grammar_state *s = calloc(1, sizeof *s);
    if (!s)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for a grammar state");
    /* The bound grammar only changes through its lazily filled, lock-protected tables. */
    edgellm_status st = ellm_matcher_create((ellm_bound_grammar *)&g->bound, &s->matcher);
    if (st != EDGELLM_OK) {
        free(s);
        return st;
    }
    /* Only the count changes; the grammar is shared read-only. */
    s->grammar = (edgellm_grammar *)g;
    atomic_fetch_add(&s->grammar->refs, 1);
    *out = s;
    return EDGELLM_OK;
}

void edgellm_grammar_state_free(edgellm_grammar_state *s)
{
    if (!s)
        return;
    ellm_matcher_free(s->matcher);
    grammar_release(s->grammar);
    free(s);
}

void edgellm_grammar_state_reset(edgellm_grammar_state *s)
{
    if (s)
        ellm_matcher_reset(s->matcher);
}

edgellm_status edgellm_grammar_state_mask(edgellm_grammar_state *s, float *logits,
                                          int32_t *n_allowed)
{
    if (!s || !logits)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "edgellm_grammar_state_mask: need a state and logits");
    int32_t n = ellm_matcher_mask_logits(s->matcher, logits);
    if (n < 0)
        return EDGELLM_ERR_UNSUPPORTED;
    if (n_allowed)
        *n_allowed = n;
    return EDGELLM_OK;
}

edgellm_status edgellm_grammar_state_accept(edgellm_grammar_state *s, edgellm_token token)
{
    if (!s)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "edgellm_grammar_state_accept: no state");
    return ellm_matcher_accept_token(s->matcher, token);
}

int edgellm_grammar_state_can_end(const edgellm_grammar_state *s)
{
    return s && ellm_matcher_can_end(s->matcher);
}

int edgellm_grammar_state_must_end(const edgellm_grammar_state *s)
{
    return s && ellm_matcher_must_end(s->matcher);
}

ellm_matcher_mark ellm_grammar_state_get_mark(const edgellm_grammar_state *s)
{
    return ellm_matcher_get_mark(s->matcher);
}

void ellm_grammar_state_rewind(edgellm_grammar_state *s, ellm_matcher_mark mark)
{
    ellm_matcher_rewind(s->matcher, mark);
}

int ellm_grammar_state_prepare(edgellm_grammar_state *s)
{
    return ellm_matcher_prepare(s->matcher);
}
