/* Sampler properties over many seeded draws: filters exclude exactly what they should, the
 * draw follows the distribution, penalties change the choice as defined, seeds reproduce. */
#include <math.h>
#include <string.h>

#include "edgellm.h"
#include "test_util.h"

enum { V = 8 };

static edgellm_sampler *make(edgellm_sampler_params p)
{
    edgellm_sampler *s = NULL;
    CHECK(edgellm_sampler_create(&p, V, &s) == EDGELLM_OK);
    return s;
}

static edgellm_sampler_params plain(float temp)
{
    edgellm_sampler_params p = edgellm_sampler_default_params();
    p.temperature = temp;
    p.top_k = 0;
    p.top_p = 1;
    p.min_p = 0;
    p.repeat_penalty = 1;
    p.seed = 1234;
    return p;
}

static void histogram(edgellm_sampler *s, const float *logits, int draws, int *counts)
{
    memset(counts, 0, V * sizeof *counts);
    for (int i = 0; i < draws; i++) {
        edgellm_token t = edgellm_sampler_sample(s, logits);
        CHECK(t >= 0 && t < V);
        if (t >= 0 && t < V)
            counts[t]++;
    }
}

int main(void)
{
    /* probabilities at T=1: softmax of log(p) = p */
    const double p[V] = {0.40, 0.25, 0.15, 0.10, 0.05, 0.03, 0.015, 0.005};
    float logits[V];
    for (int i = 0; i < V; i++)
        logits[i] = (float)log(p[i]);
    int counts[V];
    enum { N = 40000 };

    edgellm_sampler *s = make(plain(0));
    histogram(s, logits, 100, counts);
    CHECK(counts[0] == 100); /* greedy */
    edgellm_sampler_free(s);

    s = make(plain(1));
    histogram(s, logits, N, counts);
    for (int i = 0; i < V; i++) {
        double expect = p[i] * N, sd = sqrt(N * p[i] * (1 - p[i]));
        CHECK_MSG(fabs(counts[i] - expect) < 5 * sd + 1, "token %d drawn %d times, expected %.0f",
                  i, counts[i], expect);
    }
    edgellm_sampler_free(s);

    edgellm_sampler_params kp = plain(1);
    kp.top_k = 1;
    s = make(kp);
    histogram(s, logits, 1000, counts);
    CHECK(counts[0] == 1000); /* top-k 1 is greedy */
    edgellm_sampler_free(s);

    kp.top_k = 3;
    s = make(kp);
    histogram(s, logits, N, counts);
    CHECK(counts[3] == 0 && counts[4] == 0 && counts[0] > 0 && counts[2] > 0);
    /* renormalised over the top 3: 0.40 / 0.80 */
    CHECK(fabs(counts[0] / (double)N - 0.5) < 0.02);
    edgellm_sampler_free(s);

    edgellm_sampler_params pp = plain(1);
    pp.top_p = 0.75f; /* 0.40 + 0.25 = 0.65 < 0.75 <= 0.80: keep 3 */
    s = make(pp);
    histogram(s, logits, N, counts);
    CHECK(counts[2] > 0 && counts[3] == 0);
    edgellm_sampler_free(s);

    edgellm_sampler_params mp = plain(1);
    mp.min_p = 0.3f; /* threshold 0.12: keep 0.40, 0.25, 0.15 */
    s = make(mp);
    histogram(s, logits, N, counts);
    CHECK(counts[2] > 0 && counts[3] == 0);
    edgellm_sampler_free(s);

    /* Low temperature sharpens, high flattens. */
    s = make(plain(0.25f));
    histogram(s, logits, N, counts);
    CHECK(counts[0] > 0.8 * N);
    edgellm_sampler_free(s);

    /* Penalties: a repeated top token loses its place. */
    edgellm_sampler_params rp = plain(0);
    rp.repeat_penalty = 2.0f;
    float pos[V] = {2.0f, 1.5f, 0, 0, 0, 0, 0, 0};
    s = make(rp);
    CHECK(edgellm_sampler_sample(s, pos) == 0);
    edgellm_sampler_accept(s, 0);
    CHECK(edgellm_sampler_sample(s, pos) == 1); /* 2.0 / 2 = 1.0 < 1.5 */
    edgellm_sampler_free(s);
    edgellm_sampler_params fp = plain(0);
    fp.frequency_penalty = 0.3f;
    fp.presence_penalty = 0.0f;
    s = make(fp);
    edgellm_sampler_accept(s, 0);
    CHECK(edgellm_sampler_sample(s, pos) == 0); /* 2.0 - 0.3 = 1.7 > 1.5 */
    edgellm_sampler_accept(s, 0);
    CHECK(edgellm_sampler_sample(s, pos) == 1); /* 2.0 - 0.6 = 1.4 < 1.5 */
    edgellm_sampler_free(s);
    edgellm_sampler_params wp = plain(0);
    wp.repeat_penalty = 2.0f;
    wp.repeat_last_n = 2;
    s = make(wp);
    edgellm_sampler_accept(s, 0);
    edgellm_sampler_accept(s, 5);
    edgellm_sampler_accept(s, 6); /* 0 has left the 2-token window */
    CHECK(edgellm_sampler_sample(s, pos) == 0);
    edgellm_sampler_reset(s);
    edgellm_sampler_free(s);

    /* Seeds reproduce; different seeds differ. */
    edgellm_token a[64], b[64], c[64];
    edgellm_sampler_params sp = plain(1);
    s = make(sp);
    for (int i = 0; i < 64; i++)
        a[i] = edgellm_sampler_sample(s, logits);
    edgellm_sampler_reset(s);
    for (int i = 0; i < 64; i++)
        b[i] = edgellm_sampler_sample(s, logits);
    edgellm_sampler_free(s);
    sp.seed = 99;
    s = make(sp);
    for (int i = 0; i < 64; i++)
        c[i] = edgellm_sampler_sample(s, logits);
    edgellm_sampler_free(s);
    CHECK(!memcmp(a, b, sizeof a));
    CHECK(memcmp(a, c, sizeof a) != 0);

    edgellm_sampler_params bad = plain(1);
    bad.temperature = -1;
    CHECK(edgellm_sampler_create(&bad, V, &s) == EDGELLM_ERR_INVALID_ARGUMENT);
    bad = plain(1);
    bad.min_p = 2;
    CHECK(edgellm_sampler_create(&bad, V, &s) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_sampler_create(NULL, 0, &s) == EDGELLM_ERR_INVALID_ARGUMENT);
    return test_finish("test_sample");
}
