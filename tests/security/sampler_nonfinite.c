/* The sampler against logits a broken model produces (NaN, +-inf): it never reads outside the
 * candidates, never picks a NaN or -inf token while any other is left, gives +inf tokens all the
 * probability, and returns -1 when nothing can be picked (issue 11, item 1). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "edgellm.h"
#include "test_util.h"

static edgellm_sampler *make(float temp, int32_t top_k, float top_p, float min_p, int32_t n_vocab,
                             uint64_t seed)
{
    edgellm_sampler_params p = edgellm_sampler_default_params();
    p.temperature = temp;
    p.top_k = top_k;
    p.top_p = top_p;
    p.min_p = min_p;
    p.seed = seed;
    edgellm_sampler *s = NULL;
    CHECK(edgellm_sampler_create(&p, n_vocab, &s) == EDGELLM_OK);
    return s;
}

/* Whether token t may be picked: a number above -inf, and at +inf when any logit is. */
static int pickable(const float *logits, int32_t n, edgellm_token t)
{
    if (t < 0 || t >= n || isnan(logits[t]) || logits[t] == -INFINITY)
        return 0;
    for (int32_t i = 0; i < n; i++)
        if (logits[i] == INFINITY && logits[t] != INFINITY)
            return 0;
    return 1;
}

static uint64_t rng = 88172645463325252ull;
static uint32_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}

int main(void)
{
    enum { V = 64 };
    float logits[V];

    /* One NaN among ordinary logits at the default settings: the case that crashed run, chat
     * and serve. */
    for (int at = 0; at < V; at++) {
        for (int i = 0; i < V; i++)
            logits[i] = (float)((i * 37) % V) / 8.0f;
        logits[at] = NAN;
        edgellm_sampler *s = make(0.8f, 40, 0.95f, 0.05f, V, (uint64_t)at);
        for (int draw = 0; draw < 20; draw++) {
            edgellm_token t = edgellm_sampler_sample(s, logits);
            CHECK_MSG(pickable(logits, V, t), "NaN at %d: picked %d", at, (int)t);
        }
        edgellm_sampler_free(s);
    }

    /* Greedy skips a NaN at the front instead of keeping it as the "maximum". */
    for (int i = 0; i < V; i++)
        logits[i] = (float)i;
    logits[0] = NAN;
    edgellm_sampler *s = make(0, 0, 1, 0, V, 1);
    CHECK(edgellm_sampler_sample(s, logits) == V - 1);
    edgellm_sampler_free(s);

    /* Nothing to pick: every logit NaN or -inf, greedy or not. */
    for (int i = 0; i < V; i++)
        logits[i] = i % 2 ? NAN : -INFINITY;
    for (int greedy = 0; greedy < 2; greedy++) {
        s = make(greedy ? 0.0f : 1.0f, greedy ? 0 : 10, 0.9f, 0.1f, V, 2);
        CHECK_MSG(edgellm_sampler_sample(s, logits) == -1, "greedy %d", greedy);
        edgellm_sampler_free(s);
    }

    /* Two tokens at +inf share the draws; nothing else is ever picked. */
    for (int i = 0; i < V; i++)
        logits[i] = (float)i;
    logits[5] = logits[50] = INFINITY;
    logits[7] = NAN;
    s = make(1.0f, 0, 1.0f, 0.0f, V, 3);
    int hits5 = 0, hits50 = 0;
    for (int draw = 0; draw < 400; draw++) {
        edgellm_token t = edgellm_sampler_sample(s, logits);
        CHECK_MSG(t == 5 || t == 50, "picked %d", (int)t);
        hits5 += t == 5;
        hits50 += t == 50;
    }
    CHECK_MSG(hits5 > 100 && hits50 > 100, "+inf tokens drawn %d and %d times", hits5, hits50);
    edgellm_sampler_free(s);

    /* Random vocabularies full of non-finite values and random filters. */
    for (int round = 0; round < 3000; round++) {
        int32_t n = 1 + (int32_t)(next_rand() % 300);
        float *l = malloc((size_t)n * sizeof *l);
        for (int32_t i = 0; i < n; i++) {
            uint32_t kind = next_rand() % 8;
            l[i] = kind == 0                            ? NAN
                   : kind == 1                          ? -INFINITY
                   : kind == 2 && next_rand() % 16 == 0 ? INFINITY
                   : kind == 3                          ? (float)(next_rand() % 3) /* many ties */
                               : ((float)next_rand() / 4294967296.0f - 0.5f) * 40.0f;
        }
        int all_gone = 1;
        for (int32_t i = 0; i < n; i++)
            all_gone &= isnan(l[i]) || l[i] == -INFINITY;
        float temp = next_rand() % 4 == 0 ? 0.0f : (float)(next_rand() % 300) / 100.0f + 1e-3f;
        int32_t top_k = (int32_t)(next_rand() % (uint32_t)(n + 3));
        float top_p = (float)(1 + next_rand() % 100) / 100.0f;
        float min_p = (float)(next_rand() % 101) / 100.0f;
        s = make(temp, top_k, top_p, min_p, n, next_rand());
        edgellm_token t = edgellm_sampler_sample(s, l);
        if (all_gone)
            CHECK_MSG(t == -1, "round %d: picked %d though nothing is pickable", round, (int)t);
        else
            CHECK_MSG(pickable(l, n, t), "round %d: picked %d of %d", round, (int)t, (int)n);
        edgellm_sampler_free(s);
        free(l);
    }
    return test_finish("sampler_nonfinite");
}
