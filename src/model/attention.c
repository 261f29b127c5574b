/* The attention step of a forward pass: every query head of every batch row over its own
 * sequence's KV cache, and the storing of new keys and values in those caches. Each (row, head)
 * is computed by one thread in a fixed order, so results do not depend on the thread count. */
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "model/model_internal.h"
#include "model/state.h"
#include "quant/attention_kernels.h"
#include "quant/blocks.h"
#include "quant/quant.h"

/* Query heads of one KV head, the most of any layer (pruned layers differ in head counts). */
static size_t widest_group(const ellm_model *m)
{
    int32_t widest = 1;
    for (int32_t l = 0; l < m->hp.n_layer; l++) {
        /* A shape being planned (ellm_state_memory_for_shape) has no per-layer table. */
        const ellm_hparams *hp = m->layer_hp ? &m->layer_hp[l] : &m->hp;
        if (hp->n_head_kv > 0 && hp->n_head / hp->n_head_kv > widest)
            widest = hp->n_head / hp->n_head_kv;
    }
    return (size_t)widest;
}

/* Scores of every position (the F32 and Q8_0 paths; for a whole group of heads on the grouped
 * Q8_0 path) then the Q8_0 queries (fewer bytes than head size floats each), or the F16 path's
 * rounded query and running output (2 head sizes). Whatever the work state's own cache type: a
 * batch's sequences may have other ones. */
size_t ellm_attention_scratch_floats(const ellm_model *m, const ellm_state_params *p)
{
    size_t f16_path = 2 * (size_t)m->hp.head_dim;
    size_t scores_path = widest_group(m) * ((size_t)p->n_ctx + (size_t)m->hp.head_dim);
    return scores_path > f16_path ? scores_path : f16_path;
}

typedef struct store_kv_job {
    const ellm_state *work;
    const ellm_forward_seq *seqs;
    int32_t layer, n_tokens;
    int64_t kv_dim;
} store_kv_job;

/* Each row goes to its own cache position, so the rows can be stored in any order. */
static void store_kv_task(void *arg, int ith, int nth)
{
    const store_kv_job *j = arg;
    for (int32_t t = ith; t < j->n_tokens; t += nth)
        ellm_kv_store(&j->seqs[j->work->tok_seq[t]].state->kv, j->layer, j->work->tok_pos[t],
                      j->work->k + (size_t)t * (size_t)j->kv_dim,
                      j->work->v + (size_t)t * (size_t)j->kv_dim, j->kv_dim);
}

void ellm_attention_store_kv(const ellm_state *work, const ellm_forward_seq *seqs, int32_t layer,
                             int32_t n_tokens, int64_t kv_dim, ellm_threadpool *pool)
{
    store_kv_job j = {work, seqs, layer, n_tokens, kv_dim};
    ellm_threadpool_run(n_tokens > 1 ? pool : NULL, store_kv_task, &j);
}

typedef struct attention_job {
    const ellm_model *m;
    ellm_state *work;             /* holds q, att, scores and the row -> sequence map */
    const ellm_forward_seq *seqs; /* each row attends over its own sequence's cache */
    int32_t layer, n_tokens;
    const ellm_attention_kernels *kernels; /* the kernel set's, chosen once per pass */
    bool grouped_f16;                      /* kernels->f16_group for an F16 cache's groups */
    bool grouped_q8_0;                     /* q8_0_group for a Q8_0 cache's groups */
    int32_t heads_per_job;  /* query heads of one KV head per job (either grouped path only) */
    int32_t tokens_per_job; /* consecutive tokens per job: more than 1 with f16_group_tokens */
    atomic_int next_job;    /* the first job no thread has taken yet */
} attention_job;

/* One head of one token over an F32 cache: exact two-pass softmax in float. */
static void attend_f32(const float *q, const uint8_t *kc, const uint8_t *vc, size_t stride,
                       int32_t n_pos, int32_t hd, float scale, float *scores, float *out)
{
    const ellm_type_kernels *dot = ellm_kernels_for(ELLM_TYPE_F32);
    for (int32_t p = 0; p < n_pos; p++) {
        dot->vec_dot(hd, &scores[p], kc + (size_t)p * stride, q);
        scores[p] *= scale;
    }
    ellm_attention_softmax_exact(scores, n_pos);
    memset(out, 0, (size_t)hd * sizeof(float));
    for (int32_t p = 0; p < n_pos; p++) {
        float w = scores[p];
        const float *v = (const float *)(vc + (size_t)p * stride);
        for (int32_t d = 0; d < hd; d++)
            out[d] += w * v[d];
    }
}

/* One head of one token with soft-capped scores (cap * tanh(score / cap)) over either cache:
 * exact two-pass softmax in float. The capped models take this plain path. */
static void attend_capped(const float *q, const uint8_t *kc, const uint8_t *vc, size_t stride,
                          size_t elem, int32_t n_pos, int32_t hd, float scale, float cap,
                          float *scores, float *out)
{
    for (int32_t p = 0; p < n_pos; p++) {
        const uint8_t *kr = kc + (size_t)p * stride;
        double dot = 0;
        for (int32_t d = 0; d < hd; d++)
            dot += (double)q[d] * (elem == 4 ? ((const float *)kr)[d]
                                             : ellm_f16_to_f32(((const uint16_t *)kr)[d]));
        float sc = (float)dot * scale;
        scores[p] = cap * tanhf(sc / cap);
    }
    ellm_attention_softmax_exact(scores, n_pos);
    memset(out, 0, (size_t)hd * sizeof(float));
    for (int32_t p = 0; p < n_pos; p++) {
        float w = scores[p];
        const uint8_t *vr = vc + (size_t)p * stride;
        for (int32_t d = 0; d < hd; d++)
            out[d] += w * (elem == 4 ? ((const float *)vr)[d]
                                     : ellm_f16_to_f32(((const uint16_t *)vr)[d]));
    }
}

/* The value at element e of a row of Q8_0 blocks. */
static inline float q8_0_at(const block_q8_0 *row, int64_t e)
{
    return ellm_f16_to_f32(row[e / QK8_0].d) * (float)row[e / QK8_0].qs[e % QK8_0];
}

/* One head of one token over a Q8_0 cache whose heads share blocks (head size not a multiple of
 * 32; heads of whole blocks take the set's grouped kernel): dequantized keys against the float
 * query (soft-capped scores when cap > 0), the Q8_0 cache's softmax, the dequantized values'
 * weighted sum. The head's values are elements e0.. of each cached row. */
static void attend_q8_0_shared_blocks(const float *q, const uint8_t *kc, const uint8_t *vc,
                                      size_t stride, int64_t e0, int32_t n_pos, int32_t hd,
                                      float scale, float cap, float *scores, float *out)
{
    for (int32_t p = 0; p < n_pos; p++) {
        const block_q8_0 *krow = (const block_q8_0 *)(kc + (size_t)p * stride);
        double acc = 0;
        for (int32_t d = 0; d < hd; d++)
            acc += (double)(q8_0_at(krow, e0 + d) * q[d]);
        float sc = (float)acc * scale;
        scores[p] = cap > 0 ? cap * tanhf(sc / cap) : sc;
    }
    ellm_attention_softmax_q8_0(scores, n_pos);
    memset(out, 0, (size_t)hd * sizeof(float));
    for (int32_t p = 0; p < n_pos; p++) {
        const block_q8_0 *vrow = (const block_q8_0 *)(vc + (size_t)p * stride);
        for (int32_t d = 0; d < hd; d++)
            out[d] += scores[p] * q8_0_at(vrow, e0 + d);
    }
}

/* Heads h0.. of token t (heads_per_job of them, or one per call where no grouped kernel applies)
 * over the token's own sequence's cache. scores is the thread's scratch. */
static void attend_token_heads(const attention_job *j, int32_t t, int32_t h0, int32_t heads_per_job,
                               float *scores)
{
    const ellm_hparams *hp = &j->m->layer_hp[j->layer]; /* pruned layers differ in head counts */
    ellm_state *w = j->work;
    int32_t hd = hp->head_dim, group = hp->n_head / hp->n_head_kv;
    size_t q_dim = (size_t)hp->n_head * hd;
    float scale = hp->attn_scale;
    int32_t window = ellm_layer_slides(hp, j->layer) ? hp->sliding_window : 0;
    /* The wide copies also vectorize the dot and the accumulator updates. */
    ellm_attend_f16_wide_fn attend_wide = hd % 32 == 0 ? j->kernels->f16_wide : NULL;
    int32_t kvh = h0 / group;
    const ellm_state *s = j->seqs[w->tok_seq[t]].state;
    size_t stride = s->kv.pos_stride;
    int32_t n_pos = w->tok_pos[t] + 1; /* causal: this token and everything before it */
    /* A sliding layer sees only the last `window` positions (this token included). */
    int32_t first = window > 0 && n_pos > window ? n_pos - window : 0;
    n_pos -= first;
    size_t at = (size_t)kvh * s->kv.head_stride + (size_t)first * stride;
    const uint8_t *kc = s->kv.k[j->layer] + at, *vc = s->kv.v[j->layer] + at;
    /* Where the cache is position-major, the head is these elements of each row. */
    int64_t e0 = s->kv.head_stride ? 0 : (int64_t)kvh * hd;
    if (j->grouped_q8_0 && s->kv.type == ELLM_TYPE_Q8_0 && e0 == 0) {
        /* The queries quantized after the group's scores in the scratch. */
        void *q8 = scores + (size_t)heads_per_job * (size_t)w->p.n_ctx;
        const float *q = w->q + (size_t)t * q_dim + (size_t)h0 * hd;
        size_t q8_bytes = (size_t)(hd / QK8_0) * sizeof(block_q8_0);
        for (int32_t h = 0; h < heads_per_job; h++)
            ellm_quantize_activations(ELLM_TYPE_Q8_0, q + (size_t)h * hd,
                                      (uint8_t *)q8 + (size_t)h * q8_bytes, hd);
        ellm_attend_q8_0_group_fn group_q8_0 = j->kernels->q8_0_group
                                                   ? j->kernels->q8_0_group
                                                   : ellm_attend_q8_0_group_portable;
        group_q8_0(q8, kc, vc, stride, n_pos, hd, scale, hp->attn_softcap, heads_per_job, scores,
                   w->att + (size_t)t * q_dim + (size_t)h0 * hd);
        return;
    }
    if (s->kv.type == ELLM_TYPE_F16 && hp->attn_softcap <= 0) {
        /* Every set's F16 kernels round the query to F16; a query element beyond its range
         * would become an infinity there. The job's heads are its own to change. */
        float *q = w->q + (size_t)t * q_dim + (size_t)h0 * hd;
        for (size_t e = 0; e < (size_t)heads_per_job * (size_t)hd; e++)
            q[e] = ellm_f16_saturate(q[e]);
    }
    if (j->grouped_f16 && s->kv.type == ELLM_TYPE_F16) {
        j->kernels->f16_group(w->q + (size_t)t * q_dim + (size_t)h0 * hd, kc, vc, stride, n_pos, hd,
                              scale, heads_per_job, w->att + (size_t)t * q_dim + (size_t)h0 * hd);
        return;
    }
    for (int32_t h = h0; h < h0 + heads_per_job; h++) {
        const float *q = w->q + (size_t)t * q_dim + (size_t)h * hd;
        float *out = w->att + (size_t)t * q_dim + (size_t)h * hd;
        if (s->kv.type == ELLM_TYPE_Q8_0)
            attend_q8_0_shared_blocks(q, kc, vc, stride, e0, n_pos, hd, scale, hp->attn_softcap,
                                      scores, out);
        else if (hp->attn_softcap > 0)
            attend_capped(q, kc, vc, stride, s->kv.type == ELLM_TYPE_F32 ? 4 : 2, n_pos, hd, scale,
                          hp->attn_softcap, scores, out);
        else if (s->kv.type == ELLM_TYPE_F16 && attend_wide)
            attend_wide(q, kc, vc, stride, n_pos, hd, scale, scores + hd, scores, out);
        else if (s->kv.type == ELLM_TYPE_F16)
            j->kernels->f16(q, kc, vc, stride, n_pos, hd, scale, (uint16_t *)(scores + hd), scores,
                            out);
        else
            attend_f32(q, kc, vc, stride, n_pos, hd, scale, scores, out);
    }
}

/* Tokens t0.. (n of them) with the set's multi-token grouped kernel, where they are consecutive
 * positions of one sequence with an F16 cache and none of them has a sliding window cut its
 * first positions off: each (token, head) then comes out exactly as attend_token_heads gives it,
 * and the tokens share each block of cached rows. False where they are not. */
static bool attend_tokens_together(const attention_job *j, int32_t t0, int32_t n, int32_t h0,
                                   int32_t heads_per_job)
{
    const ellm_hparams *hp = &j->m->layer_hp[j->layer];
    ellm_state *w = j->work;
    const ellm_state *s = j->seqs[w->tok_seq[t0]].state;
    int32_t hd = hp->head_dim, n_pos = w->tok_pos[t0] + 1;
    int32_t window = ellm_layer_slides(hp, j->layer) ? hp->sliding_window : 0;
    if (s->kv.type != ELLM_TYPE_F16 || (window > 0 && n_pos + n - 1 > window))
        return false;
    for (int32_t i = 1; i < n; i++)
        if (w->tok_seq[t0 + i] != w->tok_seq[t0] || w->tok_pos[t0 + i] != w->tok_pos[t0] + i)
            return false;
    size_t q_dim = (size_t)hp->n_head * hd;
    for (int32_t i = 0; i < n; i++) {
        float *q = w->q + (size_t)(t0 + i) * q_dim + (size_t)h0 * hd;
        for (size_t e = 0; e < (size_t)heads_per_job * (size_t)hd; e++)
            q[e] = ellm_f16_saturate(q[e]); /* as attend_token_heads does */
    }
    size_t at = (size_t)(h0 / (hp->n_head / hp->n_head_kv)) * s->kv.head_stride;
    j->kernels->f16_group_tokens(w->q + (size_t)t0 * q_dim + (size_t)h0 * hd, q_dim,
                                 s->kv.k[j->layer] + at, s->kv.v[j->layer] + at, s->kv.pos_stride,
                                 n_pos, n, hd, hp->attn_scale, heads_per_job,
                                 w->att + (size_t)t0 * q_dim + (size_t)h0 * hd, q_dim);
    return true;
}

static void attention_task(void *arg, int ith, int nth)
{
    (void)nth;
    attention_job *j = arg;
    const ellm_hparams *hp = &j->m->layer_hp[j->layer];
    ellm_state *w = j->work;
    /* Per-thread scratch (ellm_attention_scratch_floats). */
    float *scores = w->scores + (size_t)ith * w->scores_per_thread;
    /* Where the grouped kernel applies, a job is a token's group of query heads (or part of it),
     * or that of a few consecutive tokens. */
    int32_t heads_per_job = j->grouped_f16 || j->grouped_q8_0 ? j->heads_per_job : 1;
    int32_t jobs_per_run = hp->n_head / heads_per_job;
    int32_t per_run = j->tokens_per_job;
    int32_t total = (j->n_tokens + per_run - 1) / per_run * jobs_per_run;
    for (int32_t job;
         (job = atomic_fetch_add_explicit(&j->next_job, 1, memory_order_relaxed)) < total;) {
        int32_t t0 = job / jobs_per_run * per_run, h0 = job % jobs_per_run * heads_per_job;
        int32_t n = j->n_tokens - t0 < per_run ? j->n_tokens - t0 : per_run;
        if (n > 1 && attend_tokens_together(j, t0, n, h0, heads_per_job))
            continue;
        for (int32_t t = t0; t < t0 + n; t++)
            attend_token_heads(j, t, h0, heads_per_job, scores);
    }
}

/* Whether an F16 cache's whole groups of query heads go to the set's grouped kernel: it
 * reproduces the wide F16 path, so it applies exactly where that path would (no soft-capping)
 * for its head sizes. */
static bool attention_grouped_f16(const ellm_hparams *hp, const ellm_attention_kernels *k)
{
    return k->f16_group && hp->attn_softcap <= 0 && (hp->head_dim == 64 || hp->head_dim == 128) &&
           hp->n_head / hp->n_head_kv > 1;
}

/* A Q8_0 cache's heads of whole blocks (soft-capped or not) all take the grouped kernel, which
 * reads each row once for the group (a group of one where every query head has its own). */
static bool attention_grouped_q8_0(const ellm_hparams *hp) { return hp->head_dim % QK8_0 == 0; }

/* Query heads per grouped job: the whole group, halved while that would leave threads idle (a
 * decode step has only n_head_kv groups). Each head's result is the same either way. */
static int32_t attention_heads_per_job(const ellm_hparams *hp, int32_t n_tokens, int threads)
{
    int32_t group = hp->n_head / hp->n_head_kv, per_job = group;
    while (per_job % 2 == 0 && (int64_t)n_tokens * (hp->n_head / per_job) < 2 * (int64_t)threads)
        per_job /= 2;
    return per_job;
}

/* Consecutive tokens a prefill job takes with f16_group_tokens: the AVX2 kernel keeps four tokens'
 * heads, and more per job would leave fewer jobs to balance between threads. */
enum { TOKENS_PER_JOB = 4 };

void ellm_attention_run(const ellm_model *m, ellm_state *work, const ellm_forward_seq *seqs,
                        int32_t layer, int32_t n_tokens, ellm_threadpool *pool)
{
    const ellm_attention_kernels *k = ellm_attention_kernels_active();
    const ellm_hparams *hp = &m->layer_hp[layer];
    bool grouped_f16 = attention_grouped_f16(hp, k);
    int32_t per_job = grouped_f16 && k->f16_group_tokens && n_tokens > 1 ? TOKENS_PER_JOB : 1;
    int32_t runs = (n_tokens + per_job - 1) / per_job;
    attention_job aj = {
        .m = m,
        .work = work,
        .seqs = seqs,
        .layer = layer,
        .n_tokens = n_tokens,
        .kernels = k,
        .grouped_f16 = grouped_f16,
        .grouped_q8_0 = attention_grouped_q8_0(hp),
        .heads_per_job = attention_heads_per_job(hp, runs, ellm_threadpool_size(pool)),
        .tokens_per_job = per_job,
    };
    atomic_init(&aj.next_job, 0);
    ellm_threadpool_run_shared(pool, attention_task, &aj);
}
