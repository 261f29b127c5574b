/* The attention step of a forward pass: every query head of every batch row over its own
 * sequence's KV cache, and the storing of new keys and values in those caches. Each (row, head)
 * is computed by one thread in a fixed order, so results do not depend on the thread count. */
#include <math.h>
#include <string.h>

#include "model/attention.h"
#include "model/model_internal.h"
#include "model/state.h"
#include "quant/quant.h"

size_t ellm_attention_scratch_floats(const ellm_model *m, const ellm_state_params *p)
{
    size_t f16_path = 2 * (size_t)m->hp.head_dim; /* rounded query + F16 accumulator */
    return (size_t)p->n_ctx > f16_path ? (size_t)p->n_ctx : f16_path;
}

void ellm_attention_store_kv(const ellm_state *work, const ellm_forward_seq *seqs, int32_t layer,
                             int32_t n_tokens, int64_t kv_dim)
{
    for (int32_t t = 0; t < n_tokens; t++)
        ellm_kv_store(&seqs[work->tok_seq[t]].state->kv, layer, work->tok_pos[t],
                      work->k + (size_t)t * (size_t)kv_dim, work->v + (size_t)t * (size_t)kv_dim,
                      kv_dim);
}

typedef struct attention_job {
    const ellm_model *m;
    ellm_state *work;                /* holds q, att, scores and the row -> sequence map */
    const ellm_forward_seq *seqs;    /* each row attends over its own sequence's cache */
    int32_t layer, n_tokens;
    bool grouped;                    /* ellm_attend_f16_group_avx512 for groups of heads */
    int32_t heads_per_job;           /* query heads of one KV head per job (grouped only) */
} attention_job;

#define ATTEND_F16 ellm_attend_f16_portable
#define ATTEND_F16_ATTRIBUTES
#define HALF_TO_FLOAT(h) ellm_f16_to_f32(h)
#define FLOAT_TO_HALF(f) ellm_f32_to_f16(f)
#include "model/attention_f16.inc"
#undef ATTEND_F16
#undef ATTEND_F16_ATTRIBUTES
#undef HALF_TO_FLOAT
#undef FLOAT_TO_HALF

typedef void (*attend_f16_fn)(const float *q, const uint8_t *kc, const uint8_t *vc, size_t stride,
                              int32_t n_pos, int32_t hd, float scale, uint16_t *acc, float *qr,
                              float *out);

/* The F16C copies convert with one instruction instead of a bit-manipulation routine; head
 * sizes that are a multiple of 32 also vectorize the dot and the accumulator updates. */
static attend_f16_fn select_attend_f16(int32_t head_dim)
{
#if defined(ELLM_HAVE_F16C_ATTENTION)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx2") &&
        __builtin_cpu_supports("fma"))
        return head_dim % 32 == 0 ? ellm_attend_f16_f16c_wide : ellm_attend_f16_f16c;
#endif
#if defined(ELLM_HAVE_NEON_ATTENTION)
    /* Half conversions are baseline AArch64: no CPU check. */
    return head_dim % 32 == 0 ? ellm_attend_f16_neon_wide : ellm_attend_f16_neon;
#endif
    (void)head_dim;
    return ellm_attend_f16_portable;
}

/* One head of one token over an F32 cache: exact two-pass softmax in float. */
static void attend_f32(const float *q, const uint8_t *kc, const uint8_t *vc, size_t stride,
                       int32_t n_pos, int32_t hd, float scale, float *scores, float *out)
{
    const ellm_type_kernels *dot = ellm_kernels_for(ELLM_TYPE_F32);
    float max = -INFINITY;
    for (int32_t p = 0; p < n_pos; p++) {
        dot->vec_dot(hd, &scores[p], kc + (size_t)p * stride, q);
        scores[p] *= scale;
        max = scores[p] > max ? scores[p] : max;
    }
    float sum = 0;
    for (int32_t p = 0; p < n_pos; p++) {
        scores[p] = expf(scores[p] - max);
        sum += scores[p];
    }
    float inv = 1.0f / sum;
    memset(out, 0, (size_t)hd * sizeof(float));
    for (int32_t p = 0; p < n_pos; p++) {
        float w = scores[p] * inv;
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
    float max = -INFINITY;
    for (int32_t p = 0; p < n_pos; p++) {
        const uint8_t *kr = kc + (size_t)p * stride;
        double dot = 0;
        for (int32_t d = 0; d < hd; d++)
            dot += (double)q[d] * (elem == 4 ? ((const float *)kr)[d]
                                             : ellm_f16_to_f32(((const uint16_t *)kr)[d]));
        float sc = (float)dot * scale;
        scores[p] = cap * tanhf(sc / cap);
        max = scores[p] > max ? scores[p] : max;
    }
    float sum = 0;
    for (int32_t p = 0; p < n_pos; p++) {
        scores[p] = expf(scores[p] - max);
        sum += scores[p];
    }
    float inv = 1.0f / sum;
    memset(out, 0, (size_t)hd * sizeof(float));
    for (int32_t p = 0; p < n_pos; p++) {
        float w = scores[p] * inv;
        const uint8_t *vr = vc + (size_t)p * stride;
        for (int32_t d = 0; d < hd; d++)
            out[d] += w * (elem == 4 ? ((const float *)vr)[d]
                                     : ellm_f16_to_f32(((const uint16_t *)vr)[d]));
    }
}

static void attention_task(void *arg, int ith, int nth)
{
    attention_job *j = arg;
    const ellm_hparams *hp = &j->m->hp;
    ellm_state *w = j->work;
    int32_t hd = hp->head_dim, group = hp->n_head / hp->n_head_kv;
    size_t q_dim = (size_t)hp->n_head * hd;
    /* Per-thread scratch: scores (F32 path) or the F16 accumulator and rounded query. */
    float *scores = w->scores + (size_t)ith * w->scores_per_thread;
    float scale = hp->attn_scale;
    int32_t window = ellm_layer_slides(hp, j->layer) ? hp->sliding_window : 0;
    attend_f16_fn attend_f16 = select_attend_f16(hd);
    /* Where the grouped kernel applies, a job is a token's group of query heads (or part of it). */
    int32_t heads_per_job = j->grouped ? j->heads_per_job : 1;
    int32_t jobs_per_token = hp->n_head / heads_per_job;
    int32_t total = j->n_tokens * jobs_per_token;
    for (int32_t job = ith; job < total; job += nth) {
        int32_t t = job / jobs_per_token, h0 = job % jobs_per_token * heads_per_job;
        int32_t kvh = h0 / group;
        const ellm_state *s = j->seqs[w->tok_seq[t]].state;
        size_t stride = s->kv.row_bytes;
        int32_t n_pos = w->tok_pos[t] + 1; /* causal: this token and everything before it */
        /* A sliding layer sees only the last `window` positions (this token included). */
        int32_t first = window > 0 && n_pos > window ? n_pos - window : 0;
        n_pos -= first;
        size_t head = (size_t)kvh * s->kv.head_bytes + (size_t)first * stride;
        const uint8_t *kc = s->kv.k[j->layer] + head, *vc = s->kv.v[j->layer] + head;
#if defined(ELLM_HAVE_F16C_ATTENTION)
        if (j->grouped && s->kv.type == ELLM_TYPE_F16) {
            ellm_attend_f16_group_avx512(w->q + (size_t)t * q_dim + (size_t)h0 * hd, kc, vc,
                                         stride, n_pos, hd, scale, heads_per_job,
                                         w->att + (size_t)t * q_dim + (size_t)h0 * hd);
            continue;
        }
#endif
        for (int32_t h = h0; h < h0 + heads_per_job; h++) {
            const float *q = w->q + (size_t)t * q_dim + (size_t)h * hd;
            float *out = w->att + (size_t)t * q_dim + (size_t)h * hd;
            if (hp->attn_softcap > 0)
                attend_capped(q, kc, vc, stride, s->kv.type == ELLM_TYPE_F32 ? 4 : 2, n_pos, hd, scale,
                              hp->attn_softcap, scores, out);
            else if (s->kv.type == ELLM_TYPE_F16)
                attend_f16(q, kc, vc, stride, n_pos, hd, scale, (uint16_t *)(scores + hd), scores,
                           out);
            else
                attend_f32(q, kc, vc, stride, n_pos, hd, scale, scores, out);
        }
    }
}

/* Whether whole groups of query heads go to the AVX-512 grouped kernel: it reproduces the wide
 * F16 path, so it applies exactly where that path would (no soft-capping) for its head sizes. */
static bool attention_grouped(const ellm_hparams *hp)
{
#if defined(ELLM_HAVE_F16C_ATTENTION)
    __builtin_cpu_init();
    bool cpu = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx2") &&
               __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c") &&
               __builtin_cpu_supports("bmi2");
    return cpu && hp->attn_softcap <= 0 && (hp->head_dim == 64 || hp->head_dim == 128) &&
           hp->n_head / hp->n_head_kv > 1;
#else
    (void)hp;
    return false;
#endif
}

/* Query heads per grouped job: the whole group, halved while that would leave threads idle (a
 * decode step has only n_head_kv groups). Each head's result is the same either way. */
static int32_t attention_heads_per_job(const ellm_hparams *hp, int32_t n_tokens, int threads)
{
    int32_t group = hp->n_head / hp->n_head_kv, per_job = group;
    while (per_job % 2 == 0 && (int64_t)n_tokens * (hp->n_head / per_job) < 2 * (int64_t)threads)
        per_job /= 2;
    return per_job;
}


void ellm_attention_run(const ellm_model *m, ellm_state *work, const ellm_forward_seq *seqs,
                        int32_t layer, int32_t n_tokens, ellm_threadpool *pool)
{
    attention_job aj = {m, work, seqs, layer, n_tokens, attention_grouped(&m->hp),
                        attention_heads_per_job(&m->hp, n_tokens, ellm_threadpool_size(pool))};
    ellm_threadpool_run(pool, attention_task, &aj);
}
