/* Token sampling: penalties over a window of recent tokens, then top-k, temperature, top-p and
 * min-p filtering and a draw from a seeded generator (xoshiro256**), so a seed reproduces a run. */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "edgellm.h"
#include "sample/sampler.h"

typedef struct candidate {
    int32_t id;
    float logit;
    float p;
} candidate;

struct edgellm_sampler {
    edgellm_sampler_params params;
    int32_t n_vocab;
    uint64_t rng[4];
    int32_t *history; /* ring buffer of accepted tokens */
    int32_t history_cap, history_len, history_head;
    int32_t *counts; /* occurrences of each token in the window */
    float *logits;   /* scratch copy */
    candidate *cands;
};

edgellm_sampler_params edgellm_sampler_default_params(void)
{
    edgellm_sampler_params p = {
        .temperature = 0.8f,
        .top_k = 40,
        .top_p = 0.95f,
        .min_p = 0.05f,
        .repeat_penalty = 1.0f,
        .repeat_last_n = 64,
        .presence_penalty = 0.0f,
        .frequency_penalty = 0.0f,
        .seed = 0,
    };
    return p;
}

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next_u64(edgellm_sampler *s)
{
    uint64_t *r = s->rng;
    uint64_t result = rotl(r[1] * 5, 7) * 9;
    uint64_t t = r[1] << 17;
    r[2] ^= r[0];
    r[3] ^= r[1];
    r[1] ^= r[2];
    r[0] ^= r[3];
    r[2] ^= t;
    r[3] = rotl(r[3], 45);
    return result;
}

/* Uniform in [0, 1) with 53 random bits. */
static double next_unit(edgellm_sampler *s) { return (double)(next_u64(s) >> 11) * 0x1.0p-53; }

void edgellm_sampler_reset(edgellm_sampler *s)
{
    if (!s)
        return;
    uint64_t x = s->params.seed;
    for (int i = 0; i < 4; i++)
        s->rng[i] = splitmix64(&x);
    s->history_len = 0;
    s->history_head = 0;
    memset(s->counts, 0, (size_t)s->n_vocab * sizeof *s->counts);
}

edgellm_status edgellm_sampler_create(const edgellm_sampler_params *params, int32_t n_vocab,
                                      edgellm_sampler **out)
{
    if (!out)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "edgellm_sampler_create: out is NULL");
    *out = NULL;
    edgellm_sampler_params p = params ? *params : edgellm_sampler_default_params();
    if (n_vocab <= 0)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "vocabulary size must be positive");
    if (!(p.temperature >= 0) || !isfinite(p.temperature))
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "temperature must be >= 0, got %g",
                         p.temperature);
    if (p.top_k < 0)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "top_k must be >= 0, got %d", p.top_k);
    if (!(p.top_p > 0 && p.top_p <= 1))
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "top_p must be in (0, 1], got %g", p.top_p);
    if (!(p.min_p >= 0 && p.min_p <= 1))
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "min_p must be in [0, 1], got %g", p.min_p);
    if (!(p.repeat_penalty > 0) || !isfinite(p.repeat_penalty))
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "repeat penalty must be > 0, got %g",
                         p.repeat_penalty);
    if (!isfinite(p.presence_penalty) || !isfinite(p.frequency_penalty))
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "penalties must be finite numbers");
    if (p.repeat_last_n < -1)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "repeat_last_n must be >= -1");
    edgellm_sampler *s = calloc(1, sizeof *s);
    if (!s)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for a sampler");
    s->params = p;
    s->n_vocab = n_vocab;
    /* -1 means the whole history; a generous ring keeps long sessions bounded, and windows longer
     * than it get it too: INT32_MAX must not ask for 8 GiB for a history no context holds. */
    int32_t longest_window = 1 << 16;
    s->history_cap = p.repeat_last_n == -1 || p.repeat_last_n > longest_window
                         ? longest_window
                         : (p.repeat_last_n > 0 ? p.repeat_last_n : 1);
    s->history = malloc((size_t)s->history_cap * sizeof *s->history);
    s->counts = calloc((size_t)n_vocab, sizeof *s->counts);
    s->logits = malloc((size_t)n_vocab * sizeof *s->logits);
    s->cands = malloc((size_t)n_vocab * sizeof *s->cands);
    if (!s->history || !s->counts || !s->logits || !s->cands) {
        edgellm_sampler_free(s);
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for a sampler");
    }
    edgellm_sampler_reset(s);
    *out = s;
    return EDGELLM_OK;
}

void edgellm_sampler_free(edgellm_sampler *s)
{
    if (!s)
        return;
    free(s->history);
    free(s->counts);
    free(s->logits);
    free(s->cands);
    free(s);
}

void edgellm_sampler_accept(edgellm_sampler *s, edgellm_token token)
{
    if (!s || token < 0 || token >= s->n_vocab || s->params.repeat_last_n == 0)
        return;
    if (s->history_len == s->history_cap) {
        int32_t oldest = s->history[s->history_head];
        s->counts[oldest]--;
        s->history[s->history_head] = token;
        s->history_head = (s->history_head + 1) % s->history_cap;
    } else {
        s->history[(s->history_head + s->history_len) % s->history_cap] = token;
        s->history_len++;
    }
    s->counts[token]++;
}

static void apply_penalties(edgellm_sampler *s, float *logits)
{
    const edgellm_sampler_params *p = &s->params;
    bool any = p->repeat_penalty != 1.0f || p->presence_penalty != 0.0f ||
               p->frequency_penalty != 0.0f;
    if (!any)
        return;
    for (int32_t k = 0; k < s->history_len; k++) {
        int32_t id = s->history[(s->history_head + k) % s->history_cap];
        int32_t c = s->counts[id];
        if (c <= 0)
            continue; /* already penalized through an earlier occurrence */
        float l = logits[id];
        if (p->repeat_penalty != 1.0f)
            l = l > 0 ? l / p->repeat_penalty : l * p->repeat_penalty;
        l -= (float)c * p->frequency_penalty + p->presence_penalty;
        logits[id] = l;
        s->counts[id] = -c; /* mark as done for this call */
    }
    for (int32_t k = 0; k < s->history_len; k++) {
        int32_t id = s->history[(s->history_head + k) % s->history_cap];
        if (s->counts[id] < 0)
            s->counts[id] = -s->counts[id];
    }
}

/* NaN compares false with everything, which breaks the strict order the partial sort's scans
 * rely on (they then run past the array): every NaN becomes -inf, a token that is never drawn. */
static void order_nan_last(float *logits, int32_t n)
{
    for (int32_t i = 0; i < n; i++)
        if (isnan(logits[i]))
            logits[i] = -INFINITY;
}

/* The first token with the largest logit, or -1 when every logit is -inf. */
static int32_t argmax(const float *v, int32_t n)
{
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (v[i] > v[best])
            best = i;
    return v[best] > -INFINITY ? best : -1;
}

static int by_logit_desc(const void *a, const void *b)
{
    const candidate *x = a, *y = b;
    if (x->logit != y->logit)
        return x->logit < y->logit ? 1 : -1;
    return x->id - y->id; /* deterministic order for equal logits */
}

/* Moves the k largest candidates to the front, sorted (quickselect, then sort of k). */
static void partial_sort(candidate *c, int32_t n, int32_t k)
{
    int32_t lo = 0, hi = n - 1;
    while (lo < hi) {
        candidate pivot = c[(lo + hi) / 2];
        int32_t i = lo, j = hi;
        while (i <= j) {
            while (by_logit_desc(&c[i], &pivot) < 0)
                i++;
            while (by_logit_desc(&c[j], &pivot) > 0)
                j--;
            if (i <= j) {
                candidate t = c[i];
                c[i++] = c[j];
                c[j--] = t;
            }
        }
        if (k - 1 <= j)
            hi = j;
        else if (k - 1 >= i)
            lo = i;
        else
            break;
    }
    qsort(c, (size_t)k, sizeof *c, by_logit_desc);
}

/* The temperature > 0 path: the penalised logits in s->logits filtered by top-k, temperature,
 * top-p and min-p into s->cands[0 .. n), sorted by logit; returns n. Their p are the temperature
 * softmax over the top-k survivors, so after the top-p/min-p cuts they sum to *kept_sum (<= 1). */
static int32_t filtered_candidates(edgellm_sampler *s, double *kept_sum)
{
    const edgellm_sampler_params *p = &s->params;
    int32_t n = s->n_vocab;
    for (int32_t i = 0; i < n; i++)
        s->cands[i] = (candidate){i, s->logits[i], 0};
    int32_t k = p->top_k > 0 && p->top_k < n ? p->top_k : n;
    partial_sort(s->cands, n, k);
    n = k;
    /* Softmax at the temperature over the survivors (sorted, so [0] is the max). */
    double sum = 0;
    float max = s->cands[0].logit;
    if (max == -INFINITY) { /* nothing can be drawn (order_nan_last made NaN -inf) */
        *kept_sum = 0;
        return 0;
    }
    for (int32_t i = 0; i < n; i++) {
        float l = s->cands[i].logit;
        /* +inf - +inf is NaN: tokens at +inf share the whole probability instead. */
        if (max == INFINITY)
            s->cands[i].p = l == INFINITY ? 1.0f : 0.0f;
        else
            s->cands[i].p = expf((l - max) / p->temperature);
        sum += s->cands[i].p;
    }
    for (int32_t i = 0; i < n; i++)
        s->cands[i].p = (float)(s->cands[i].p / sum);
    if (p->top_p < 1.0f) {
        double cum = 0;
        int32_t keep = n;
        for (int32_t i = 0; i < n; i++) {
            cum += s->cands[i].p;
            if (cum >= p->top_p) {
                keep = i + 1;
                break;
            }
        }
        n = keep;
    }
    if (p->min_p > 0.0f) {
        float threshold = p->min_p * s->cands[0].p;
        int32_t keep = 1;
        while (keep < n && s->cands[keep].p >= threshold)
            keep++;
        n = keep;
    }
    sum = 0;
    for (int32_t i = 0; i < n; i++)
        sum += s->cands[i].p;
    *kept_sum = sum;
    return n;
}

/* s->logits := logits_in with the penalties applied and NaN ordered as -inf, so that every
 * comparison below is a total order (a NaN made the partial sort run off the array). */
static void load_logits(edgellm_sampler *s, const float *logits_in)
{
    memcpy(s->logits, logits_in, (size_t)s->n_vocab * sizeof *s->logits);
    apply_penalties(s, s->logits);
    order_nan_last(s->logits, s->n_vocab);
}

edgellm_token edgellm_sampler_sample(edgellm_sampler *s, const float *logits_in)
{
    if (!s || !logits_in)
        return -1;
    load_logits(s, logits_in);
    if (s->params.temperature <= 0.0f)
        return argmax(s->logits, s->n_vocab);
    double sum = 0;
    int32_t n = filtered_candidates(s, &sum);
    if (n == 0)
        return -1;
    double r = next_unit(s) * sum, acc = 0;
    for (int32_t i = 0; i < n; i++) {
        acc += s->cands[i].p;
        if (r < acc)
            return s->cands[i].id;
    }
    return s->cands[n - 1].id;
}

/* ---- Internals for speculative decoding (sample/sampler.h) ---- */

bool ellm_sampler_is_greedy(const edgellm_sampler *s) { return s->params.temperature <= 0.0f; }

void ellm_sampler_distribution(edgellm_sampler *s, const float *logits_in, float *probs)
{
    load_logits(s, logits_in);
    memset(probs, 0, (size_t)s->n_vocab * sizeof *probs);
    if (s->params.temperature <= 0.0f) {
        edgellm_token best = argmax(s->logits, s->n_vocab);
        if (best >= 0)
            probs[best] = 1.0f;
        return;
    }
    double sum = 0;
    int32_t n = filtered_candidates(s, &sum);
    for (int32_t i = 0; i < n; i++)
        probs[s->cands[i].id] = (float)(s->cands[i].p / sum);
}

double ellm_sampler_uniform(edgellm_sampler *s) { return next_unit(s); }

edgellm_token ellm_sampler_draw(edgellm_sampler *s, const float *weights)
{
    double sum = 0;
    for (int32_t i = 0; i < s->n_vocab; i++)
        sum += weights[i];
    if (!(sum > 0))
        return -1;
    double r = next_unit(s) * sum, acc = 0;
    int32_t last = -1;
    for (int32_t i = 0; i < s->n_vocab; i++) {
        if (weights[i] <= 0)
            continue;
        acc += weights[i];
        last = i;
        if (r < acc)
            return i;
    }
    return last;
}

void ellm_sampler_copy_history(edgellm_sampler *dst, const edgellm_sampler *src)
{
    if (dst->n_vocab != src->n_vocab || dst->history_cap != src->history_cap)
        return;
    memcpy(dst->history, src->history, (size_t)src->history_cap * sizeof *dst->history);
    memcpy(dst->counts, src->counts, (size_t)src->n_vocab * sizeof *dst->counts);
    dst->history_len = src->history_len;
    dst->history_head = src->history_head;
}
