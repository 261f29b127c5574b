#define _POSIX_C_SOURCE 200809L
/* The transformer forward pass over a batch of tokens, with the KV cache and scratch it uses.
 * Every parallel step assigns each output element to exactly one thread and computes it in a
 * fixed order, so logits are bit-identical whatever the thread count. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "model/model_internal.h"
#include "model/profile.h"
#include "model/state.h"
#include "quant/quant.h"

typedef struct layout {
    size_t kv_layer_bytes;
    size_t off_x, off_xn, off_q, off_k, off_v, off_att, off_gate, off_up, off_tmp, off_scores,
        off_mm, off_tok_seq, off_tok_pos, off_fused, off_kv, total_scratch, total;
} layout;

static size_t align64(size_t v) { return (v + 63) & ~(size_t)63; }

static void compute_layout(const ellm_model *m, const ellm_state_params *p, layout *L)
{
    const ellm_hparams *hp = &m->hp;
    size_t T = (size_t)p->n_batch;
    size_t q_dim = (size_t)hp->n_head * hp->head_dim;
    size_t kv_dim = (size_t)hp->n_head_kv * hp->head_dim;
    size_t threads = p->n_threads > 0 ? (size_t)p->n_threads : 1;
    size_t mm = 0;
    const ellm_weights *w = &m->w;
    for (int32_t il = 0; il < hp->n_layer; il++) {
        const ellm_layer *l = &w->layers[il];
        const ellm_tensor *ts[] = {&l->wq,       &l->wk,     &l->wv,       &l->wo,
                                   &l->ffn_gate, &l->ffn_up, &l->ffn_down, &l->wqkv};
        for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) {
            if (!ts[i]->data)
                continue;
            size_t s = ellm_matmul_scratch_bytes(ts[i], (int64_t)T);
            mm = s > mm ? s : mm;
        }
    }
    size_t so = ellm_matmul_scratch_bytes(&w->output, (int64_t)T);
    mm = so > mm ? so : mm;

    size_t o = 0;
#define PLACE(field, bytes)                                                                        \
    L->field = o;                                                                                  \
    o += align64(bytes);
    PLACE(off_x, T * hp->n_embd * 4)
    PLACE(off_xn, T * hp->n_embd * 4)
    PLACE(off_q, T * q_dim * 4)
    PLACE(off_k, T * kv_dim * 4)
    PLACE(off_v, T * kv_dim * 4)
    PLACE(off_att, T * q_dim * 4)
    PLACE(off_gate, T * hp->n_ff * 4)
    PLACE(off_up, T * hp->n_ff * 4)
    PLACE(off_tmp, T * hp->n_embd * 4)
    PLACE(off_scores, threads * ellm_attention_scratch_floats(m, p) * 4)
    PLACE(off_mm, mm)
    PLACE(off_tok_seq, T * sizeof(int32_t))
    PLACE(off_tok_pos, T * sizeof(int32_t))
    size_t fused = 0;
    if (hp->fused_qkv)
        fused = q_dim + 2 * kv_dim;
    if (hp->fused_gate_up && 2 * (size_t)hp->n_ff > fused)
        fused = 2 * (size_t)hp->n_ff;
    PLACE(off_fused, T * fused * 4)
#undef PLACE
    L->total_scratch = o;
    L->kv_layer_bytes = p->scratch_only ? 0 : ellm_kv_layer_bytes(hp, p->kv_type, p->n_ctx);
    L->off_kv = o;
    L->total = o + 2 * (size_t)hp->n_layer * L->kv_layer_bytes;
}

void ellm_state_memory(const ellm_model *m, const ellm_state_params *p, uint64_t *kv_bytes,
                       uint64_t *scratch_bytes)
{
    layout L;
    compute_layout(m, p, &L);
    size_t ptrs = 2 * (size_t)m->hp.n_layer * sizeof(uint8_t *) + sizeof(ellm_state);
    if (kv_bytes)
        *kv_bytes = L.total - L.off_kv;
    if (scratch_bytes)
        *scratch_bytes = L.total_scratch + ptrs;
}

edgellm_status ellm_state_create(const ellm_model *m, const ellm_state_params *p, ellm_state **out)
{
    *out = NULL;
    if (p->n_ctx <= 0 || p->n_batch <= 0)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "context and batch sizes must be positive");
    layout L;
    compute_layout(m, p, &L);
    ellm_state *s = calloc(1, sizeof *s);
    if (!s)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the model state");
    s->p = *p;
    if (s->p.n_threads <= 0)
        s->p.n_threads = 1;
    s->kv.k = calloc((size_t)m->hp.n_layer, sizeof *s->kv.k);
    s->kv.v = calloc((size_t)m->hp.n_layer, sizeof *s->kv.v);
    /* 64-byte aligned so SIMD loads of rows never split cache lines needlessly. */
    void *block = NULL;
    if (s->kv.k && s->kv.v && posix_memalign(&block, 64, L.total) == 0)
        s->block = block;
    if (!s->block) {
        ellm_state_free(s);
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY,
                         "cannot allocate %.1f MiB for the KV cache and scratch; use a smaller "
                         "context (--ctx)",
                         (double)L.total / (1024.0 * 1024.0));
    }
    uint8_t *b = block;
    s->x = (float *)(b + L.off_x);
    s->xn = (float *)(b + L.off_xn);
    s->q = (float *)(b + L.off_q);
    s->k = (float *)(b + L.off_k);
    s->v = (float *)(b + L.off_v);
    s->att = (float *)(b + L.off_att);
    s->gate = (float *)(b + L.off_gate);
    s->up = (float *)(b + L.off_up);
    s->tmp = (float *)(b + L.off_tmp);
    s->scores = (float *)(b + L.off_scores);
    s->scores_per_thread = ellm_attention_scratch_floats(m, p);
    s->mm_scratch = b + L.off_mm;
    s->tok_seq = (int32_t *)(b + L.off_tok_seq);
    s->tok_pos = (int32_t *)(b + L.off_tok_pos);
    s->fused = (float *)(b + L.off_fused);
    ellm_kv_bind(&s->kv, &m->hp, p->kv_type, b + L.off_kv, L.kv_layer_bytes);
    *out = s;
    return EDGELLM_OK;
}

void ellm_state_free(ellm_state *s)
{
    if (!s)
        return;
    free(s->block);
    free(s->kv.k);
    free(s->kv.v);
    free(s);
}

int32_t ellm_state_n_past(const ellm_state *s) { return s->n_past; }

void ellm_state_set_profile(ellm_state *s, ellm_profile *profile) { s->profile = profile; }

void ellm_state_set_input_observer(ellm_state *s, ellm_input_observer fn, void *user)
{
    s->observer = fn;
    s->observer_user = user;
}

void ellm_state_set_cancel(ellm_state *s, atomic_uint *word) { s->cancel = word; }

void ellm_state_set_cancel_owner(ellm_state *s, atomic_uint *word) { s->cancel_owner = word; }

static bool cancel_word_set(const atomic_uint *word)
{
    return word && (atomic_load_explicit(word, memory_order_relaxed) & ELLM_CANCEL_REQUESTED) != 0;
}

static bool cancelled(const ellm_state *s)
{
    return cancel_word_set(s->cancel) || cancel_word_set(s->cancel_owner);
}

static void observe(const ellm_state *s, int32_t layer, ellm_matrix_input which, const float *x,
                    int32_t n_rows, int64_t n_cols)
{
    if (s->observer)
        s->observer(s->observer_user, layer, which, x, n_rows, n_cols);
}

/* Profile timers: a clock read only when a profile is attached. */
static double prof_begin(const ellm_state *s) { return s->profile ? ellm_profile_now() : 0; }

static void prof_end(ellm_state *s, ellm_prof_op op, double t0)
{
    if (s->profile) {
        s->profile->op_s[op] += ellm_profile_now() - t0;
        s->profile->op_calls[op]++;
    }
}

/* The weights (of one input) in one pool dispatch, timed under their weight type. Weights of
 * different types (mixed quantizations) share the dispatch when their kernels take the same
 * activations (ellm_matmul_multi decides); with a profile attached they go one by one so each
 * type gets its own time. */
static void matmul_weights(ellm_state *s, ellm_threadpool *pool, const ellm_tensor *const *w,
                           int n_w, const float *x, int32_t n_tokens, float *const *y)
{
    for (int i = 1; i < n_w && s->profile; i++) {
        if (w[i]->type != w[0]->type) {
            for (int k = 0; k < n_w; k++)
                matmul_weights(s, pool, &w[k], 1, x, n_tokens, &y[k]);
            return;
        }
    }
    double t0 = prof_begin(s);
    ellm_matmul_multi(pool, w, n_w, x, n_tokens, y, s->mm_scratch);
    if (s->profile) {
        s->profile->matmul_s[w[0]->type] += ellm_profile_now() - t0;
        s->profile->matmul_calls[w[0]->type] += (uint64_t)n_w;
    }
}

/* Element-wise steps of a batch split over the pool in contiguous ranges (each element is
 * computed alone, so the split cannot change results); small ones stay on the caller. */
typedef enum elementwise_op { EW_ADD, EW_SILU_MUL } elementwise_op;

typedef struct elementwise_job {
    elementwise_op op;
    float *dst;
    const float *src;
    int64_t n;
} elementwise_job;

static void elementwise_task(void *arg, int ith, int nth)
{
    elementwise_job *j = arg;
    int64_t per = (j->n + nth - 1) / nth;
    int64_t i0 = per * ith, i1 = i0 + per < j->n ? i0 + per : j->n;
    if (j->op == EW_ADD) {
        for (int64_t i = i0; i < i1; i++)
            j->dst[i] += j->src[i];
    } else if (i1 > i0) {
        ellm_silu_mul(j->dst + i0, j->src + i0, i1 - i0);
    }
}

static void elementwise(ellm_threadpool *pool, elementwise_op op, float *dst, const float *src,
                        int64_t n)
{
    elementwise_job j = {op, dst, src, n};
    ellm_threadpool_run(n >= 16384 ? pool : NULL, elementwise_task, &j);
}

void ellm_state_truncate(ellm_state *s, int32_t n_keep)
{
    if (n_keep < 0)
        n_keep = 0;
    if (n_keep < s->n_past)
        s->n_past = n_keep;
}

edgellm_status ellm_state_copy_prefix(const ellm_model *m, ellm_state *dst, const ellm_state *src,
                                      int32_t n)
{
    if (n < 0 || n > src->n_past || n > dst->p.n_ctx || dst->kv.type != src->kv.type ||
        dst->p.scratch_only || src->p.scratch_only)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "cannot copy %d cached positions: the caches differ in size or type", n);
    ellm_kv_copy(&dst->kv, &src->kv, m->hp.n_layer, n);
    dst->n_past = n;
    return EDGELLM_OK;
}

/* out = x * weight / the root mean square ss / n of x, ss being x's sum of squares. */
static void rms_scale(const float *x, const float *weight, float *out, int64_t n, double ss,
                      float eps)
{
    float mean = (float)(ss / (double)n);
    float scale = 1.0f / sqrtf(mean + eps);
    for (int64_t i = 0; i < n; i++)
        out[i] = x[i] * scale * weight[i];
}

static void rms_norm(const float *x, const float *weight, float *out, int64_t n, float eps)
{
    double ss = 0;
    for (int64_t i = 0; i < n; i++)
        ss += (double)x[i] * x[i];
    rms_scale(x, weight, out, n, ss, eps);
}

/* rms_norm of four rows: each row's sum of squares is added in rms_norm's order, but one row's
 * chain of dependent double additions (4 cycles a value) runs beside three others. */
static void rms_norm4(const float *const x[4], const float *weight, float *const out[4], int64_t n,
                      float eps)
{
    double ss0 = 0, ss1 = 0, ss2 = 0, ss3 = 0;
    for (int64_t i = 0; i < n; i++) {
        ss0 += (double)x[0][i] * x[0][i];
        ss1 += (double)x[1][i] * x[1][i];
        ss2 += (double)x[2][i] * x[2][i];
        ss3 += (double)x[3][i] * x[3][i];
    }
    rms_scale(x[0], weight, out[0], n, ss0, eps);
    rms_scale(x[1], weight, out[1], n, ss1, eps);
    rms_scale(x[2], weight, out[2], n, ss2, eps);
    rms_scale(x[3], weight, out[3], n, ss3, eps);
}

/* rms_norm of each of n_tokens rows, rows split over the pool. */
typedef struct norm_job {
    const float *x, *weight;
    float *out;
    int64_t n;
    int32_t n_tokens;
    float eps;
} norm_job;

static void norm_task(void *arg, int ith, int nth)
{
    norm_job *j = arg;
    int32_t t = ith;
    for (; t + 3 * nth < j->n_tokens; t += 4 * nth) {
        const float *x[4];
        float *out[4];
        for (int r = 0; r < 4; r++) {
            x[r] = j->x + (t + r * nth) * j->n;
            out[r] = j->out + (t + r * nth) * j->n;
        }
        rms_norm4(x, j->weight, out, j->n, j->eps);
    }
    for (; t < j->n_tokens; t += nth)
        rms_norm(j->x + t * j->n, j->weight, j->out + t * j->n, j->n, j->eps);
}

static void norm_rows(ellm_state *s, ellm_threadpool *pool, const float *weight, int32_t n_tokens,
                      int64_t n, float eps)
{
    double t0 = prof_begin(s);
    norm_job j = {s->x, weight, s->xn, n, n_tokens, eps};
    ellm_threadpool_run(n_tokens > 1 ? pool : NULL, norm_task, &j);
    prof_end(s, ELLM_PROF_NORM, t0);
}

/* The rotation a layer applies: sliding layers of some models use their own base and no
 * scaling, LongRoPE models pick factors by context length and scale the rotated vectors. */
typedef struct rope_params {
    float theta_scale, freq_scale, attn_factor;
    const float *factors;
} rope_params;

static void add_bias(float *v, const float *bias, size_t n)
{
    if (bias)
        for (size_t i = 0; i < n; i++)
            v[i] += bias[i];
}

/* GELU with the tanh approximation (the activation Gemma was trained with). */
static float gelu_tanh(float x)
{
    const float k = 0.7978845608028654f; /* sqrt(2 / pi) */
    return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}

/* gate = GELU(gate) * up, element by element. */
static void gelu_mul(float *gate, const float *up, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        gate[i] = gelu_tanh(gate[i]) * up[i];
}

/* gate = act(gate · xn) * (up · xn) for a layer with separate gate and up weights: the activation
 * runs inside the matmul's dispatch on each chunk of rows as it is computed, instead of a serial
 * pass between two dispatches (at one token that pass, 13 us for tinyllama's SiLU, outlasted the
 * pool workers' spin, so they went to sleep and had to be woken for the down projection). */
static void gated_ffn(ellm_state *s, ellm_threadpool *pool, const ellm_layer *L,
                      ellm_rows_combine_fn act_mul, int32_t n_tokens, int64_t n_ff)
{
    const ellm_tensor *gate_up[2] = {&L->ffn_gate, &L->ffn_up};
    float *gate_up_out[2] = {s->gate, s->up};
    if (s->profile && L->ffn_gate.type != L->ffn_up.type) {
        /* each type timed alone (matmul_weights) */
        matmul_weights(s, pool, gate_up, 2, s->xn, n_tokens, gate_up_out);
        act_mul(s->gate, s->up, n_tokens * n_ff);
        return;
    }
    double t0 = prof_begin(s);
    ellm_matmul_gated(pool, &L->ffn_gate, &L->ffn_up, s->xn, n_tokens, s->gate, s->up, act_mul,
                      s->mm_scratch);
    if (s->profile) {
        s->profile->matmul_s[L->ffn_gate.type] += ellm_profile_now() - t0;
        s->profile->matmul_calls[L->ffn_gate.type] += 2;
    }
}

static rope_params layer_rope(const ellm_model *m, int32_t il, const ellm_state *seq)
{
    const ellm_hparams *hp = &m->hp;
    rope_params r = {m->rope_theta_scale, hp->rope_freq_scale, hp->rope_attn_factor,
                     m->rope_factors};
    if (hp->rope_freq_base_swa != hp->rope_freq_base && ellm_layer_slides(hp, il)) {
        r.theta_scale = m->rope_theta_scale_swa;
        r.freq_scale = 1.0f;
    }
    if (m->rope_factors_long && seq->p.n_ctx > hp->n_ctx_orig)
        r.factors = m->rope_factors_long;
    return r;
}

/* Angles one pass of rope() takes: their cosines and sines kept in arrays, so that each head is
 * rotated along its contiguous values (which GCC vectorizes) rather than every angle striding
 * across the heads. At one token the rotation runs on the dispatching thread alone, between the
 * Q/K/V and attention jobs. */
#define ROPE_ANGLES 64

/* Pairs (a[i], b[i]) rotated by the angles of cosines c and sines s (NeoX: the two halves). */
static void rotate_halves(float *restrict a, float *restrict b, const float *c, const float *s,
                          int32_t n)
{
    for (int32_t i = 0; i < n; i++) {
        float x0 = a[i], x1 = b[i];
        a[i] = x0 * c[i] - x1 * s[i];
        b[i] = x0 * s[i] + x1 * c[i];
    }
}

/* Pairs (v[2i], v[2i + 1]) rotated likewise (the original Llama layout). */
static void rotate_adjacent(float *restrict v, const float *c, const float *s, int32_t n)
{
    for (int32_t i = 0; i < n; i++) {
        float x0 = v[2 * i], x1 = v[2 * i + 1];
        v[2 * i] = x0 * c[i] - x1 * s[i];
        v[2 * i + 1] = x0 * s[i] + x1 * c[i];
    }
}

/* The n heads of vec, each rotated at angles i0..i0 + n of cosines c and sines s. */
static void rotate_heads(const ellm_hparams *hp, float *vec, int32_t n_heads, int32_t i0,
                         const float *c, const float *s, int32_t n)
{
    int32_t half = hp->n_rot / 2;
    for (int32_t h = 0; h < n_heads; h++) {
        float *v = vec + (size_t)h * hp->head_dim;
        if (hp->rope_neox)
            rotate_halves(v + i0, v + i0 + half, c, s, n);
        else
            rotate_adjacent(v + 2 * i0, c, s, n);
    }
}

/* A token's queries and keys share its position, so each angle's cosine and sine is computed once
 * for both. */
static void rope(const ellm_model *m, const rope_params *r, float *q, int32_t n_head, float *k,
                 int32_t n_head_kv, int32_t pos)
{
    const ellm_hparams *hp = &m->hp;
    int32_t half = hp->n_rot / 2;
    float theta_base = (float)pos;
    for (int32_t i0 = 0; i0 < half; i0 += ROPE_ANGLES) {
        int32_t n = half - i0 < ROPE_ANGLES ? half - i0 : ROPE_ANGLES;
        float c[ROPE_ANGLES], s[ROPE_ANGLES];
        for (int32_t i = 0; i < n; i++) {
            float theta = r->freq_scale * (theta_base / r->factors[i0 + i]);
            theta_base *= r->theta_scale;
            c[i] = cosf(theta);
            s[i] = sinf(theta);
            if (r->attn_factor != 1.0f) {
                c[i] *= r->attn_factor;
                s[i] *= r->attn_factor;
            }
        }
        rotate_heads(hp, q, n_head, i0, c, s, n);
        rotate_heads(hp, k, n_head_kv, i0, c, s, n);
    }
}

/* The rotation of each of n_tokens rows' queries and keys, rows split over the pool. */
typedef struct rope_job {
    const ellm_model *m;
    ellm_state *s;
    const ellm_forward_seq *seqs;
    int32_t layer, n_tokens;
} rope_job;

static void rope_task(void *arg, int ith, int nth)
{
    const rope_job *j = arg;
    const ellm_hparams *hp = &j->m->layer_hp[j->layer];
    size_t q_dim = (size_t)hp->n_head * hp->head_dim;
    size_t kv_dim = (size_t)hp->n_head_kv * hp->head_dim;
    for (int32_t t = ith; t < j->n_tokens; t += nth) {
        rope_params r = layer_rope(j->m, j->layer, j->seqs[j->s->tok_seq[t]].state);
        rope(j->m, &r, j->s->q + t * q_dim, hp->n_head, j->s->k + t * kv_dim, hp->n_head_kv,
             j->s->tok_pos[t]);
    }
}

/* Each of n_tokens rows of a fused matrix's output (widths[0] + ... + widths[n - 1] floats) split
 * into the n per-part buffers, row by row. */
static void split_rows(const float *fused, int32_t n_tokens, float *const *parts,
                       const size_t *widths, int n)
{
    size_t row = 0;
    for (int k = 0; k < n; k++)
        row += widths[k];
    for (int32_t t = 0; t < n_tokens; t++) {
        const float *src = fused + t * row;
        for (int k = 0; k < n; k++) {
            memcpy(parts[k] + t * widths[k], src, widths[k] * sizeof(float));
            src += widths[k];
        }
    }
}

/* x = rms_norm(x) * weight for n_rows rows of n floats in place (per-head Q/K norms, post-norms). */
static void rms_norm_each(float *x, const float *weight, int64_t n_rows, int64_t n, float eps)
{
    for (int64_t r = 0; r < n_rows; r++)
        rms_norm(x + r * n, weight, x + r * n, n, eps);
}

static void prof_pass(ellm_state *s, int32_t n_tokens, double t0)
{
    if (s->profile) {
        s->profile->forward_s += ellm_profile_now() - t0;
        s->profile->forward_calls++;
        s->profile->tokens += (uint64_t)n_tokens;
    }
}

edgellm_status ellm_forward(const ellm_model *m, ellm_state *s, ellm_threadpool *pool,
                            const edgellm_token *tokens, int32_t n_tokens, bool all_logits,
                            float *logits)
{
    ellm_forward_seq seq = {s, tokens, n_tokens, all_logits, false};
    return ellm_forward_batch(m, s, pool, &seq, 1, logits);
}

static edgellm_status check_batch(const ellm_model *m, const ellm_state *work,
                                  const ellm_threadpool *pool, const ellm_forward_seq *seqs,
                                  int32_t n_seqs, int32_t *out_total)
{
    if (n_seqs <= 0 || !seqs || !work)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "a forward pass needs at least one sequence");
    if (ellm_threadpool_size(pool) > work->p.n_threads)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "the pool has more threads than the state");
    int64_t total = 0;
    for (int32_t i = 0; i < n_seqs; i++) {
        const ellm_forward_seq *q = &seqs[i];
        if (!q->state || !q->tokens || q->n_tokens <= 0)
            return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                             "sequence %d of the batch has no state or no tokens", (int)i);
        for (int32_t k = 0; k < i; k++)
            if (seqs[k].state == q->state)
                return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                                 "sequences %d and %d of the batch share one state", (int)k,
                                 (int)i);
        if (q->state->p.scratch_only)
            return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                             "sequence %d of the batch has no KV cache", (int)i);
        if (q->hidden && n_seqs != 1)
            return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                             "hidden states are only produced for a batch of one sequence");
        if (q->state->p.n_ctx > work->p.n_ctx)
            return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                             "sequence %d has a longer context (%d) than the batch's work state "
                             "(%d)",
                             (int)i, (int)q->state->p.n_ctx, (int)work->p.n_ctx);
        if (q->state->n_past + q->n_tokens > q->state->p.n_ctx)
            return ellm_fail(EDGELLM_ERR_CONTEXT_FULL,
                             "%d more tokens do not fit: %d of %d context positions are used",
                             (int)q->n_tokens, (int)q->state->n_past, (int)q->state->p.n_ctx);
        for (int32_t t = 0; t < q->n_tokens; t++)
            if (q->tokens[t] < 0 || q->tokens[t] >= m->hp.n_vocab)
                return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                                 "token id %d at batch position %d is outside the vocabulary "
                                 "(0..%d)",
                                 (int)q->tokens[t], (int)t, (int)m->hp.n_vocab - 1);
        total += q->n_tokens;
    }
    if (total > work->p.n_batch)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "batch of %lld tokens (1 to %d allowed)",
                         (long long)total, (int)work->p.n_batch);
    *out_total = (int32_t)total;
    return EDGELLM_OK;
}

void ellm_forward_embed(const ellm_model *m, const edgellm_token *tokens, int32_t n_tokens,
                        float *x)
{
    const ellm_tensor *e = &m->w.tok_embd;
    int64_t n_embd = m->hp.n_embd;
    for (int32_t t = 0; t < n_tokens; t++) {
        float *row = x + (size_t)t * (size_t)n_embd;
        ellm_dequantize_row(e->type, (const uint8_t *)e->data + (size_t)tokens[t] * e->row_bytes,
                            row, n_embd);
        if (m->hp.embd_scale > 0)
            for (int64_t i = 0; i < n_embd; i++)
                row[i] *= m->hp.embd_scale;
    }
}

/* Layer il over the batch's n_tokens rows of s->x, in place. */
static void run_layer(const ellm_model *m, ellm_state *s, ellm_threadpool *pool,
                      const ellm_forward_seq *seqs, int32_t il, int32_t n_tokens)
{
    const ellm_layer *L = &m->w.layers[il];
    /* pruned models' layers differ in head and FFN counts */
    const ellm_hparams *hp = &m->layer_hp[il];
    int64_t n_embd = m->hp.n_embd, n_ff = hp->n_ff;
    size_t q_dim = (size_t)hp->n_head * hp->head_dim;
    size_t kv_dim = (size_t)hp->n_head_kv * hp->head_dim;
    norm_rows(s, pool, m->norms[il].attn_norm, n_tokens, n_embd, hp->rms_norm_eps);
    const ellm_layer_norms *N = &m->norms[il];
    observe(s, il, ELLM_INPUT_ATTN, s->xn, n_tokens, n_embd);
    float *qkv_out[3] = {s->q, s->k, s->v};
    if (hp->fused_qkv) {
        const ellm_tensor *wqkv = &L->wqkv;
        matmul_weights(s, pool, &wqkv, 1, s->xn, n_tokens, &s->fused);
        split_rows(s->fused, n_tokens, qkv_out, (size_t[]){q_dim, kv_dim, kv_dim}, 3);
    } else {
        const ellm_tensor *qkv[3] = {&L->wq, &L->wk, &L->wv};
        matmul_weights(s, pool, qkv, 3, s->xn, n_tokens, qkv_out);
    }
    if (N->bq || N->bk || N->bv)
        for (int32_t t = 0; t < n_tokens; t++) {
            add_bias(s->q + t * q_dim, N->bq, q_dim);
            add_bias(s->k + t * kv_dim, N->bk, kv_dim);
            add_bias(s->v + t * kv_dim, N->bv, kv_dim);
        }
    double t0 = prof_begin(s);
    if (hp->qk_norm) {
        rms_norm_each(s->q, N->q_norm, (int64_t)n_tokens * hp->n_head, hp->head_dim,
                      hp->rms_norm_eps);
        rms_norm_each(s->k, N->k_norm, (int64_t)n_tokens * hp->n_head_kv, hp->head_dim,
                      hp->rms_norm_eps);
    }
    prof_end(s, ELLM_PROF_NORM, t0);
    t0 = prof_begin(s);
    rope_job rj = {m, s, seqs, il, n_tokens};
    ellm_threadpool_run(n_tokens > 1 ? pool : NULL, rope_task, &rj);
    prof_end(s, ELLM_PROF_ROPE, t0);
    t0 = prof_begin(s);
    ellm_attention_store_kv(s, seqs, il, n_tokens, (int64_t)kv_dim, pool);
    ellm_attention_run(m, s, seqs, il, n_tokens, pool);
    prof_end(s, ELLM_PROF_ATTENTION, t0);
    const ellm_tensor *wo = &L->wo;
    observe(s, il, ELLM_INPUT_ATTN_OUT, s->att, n_tokens, (int64_t)q_dim);
    matmul_weights(s, pool, &wo, 1, s->att, n_tokens, &s->tmp);
    if (hp->post_norms)
        rms_norm_each(s->tmp, N->post_attn, n_tokens, n_embd, hp->rms_norm_eps);
    elementwise(pool, EW_ADD, s->x, s->tmp, n_tokens * n_embd);

    norm_rows(s, pool, m->norms[il].ffn_norm, n_tokens, n_embd, hp->rms_norm_eps);
    observe(s, il, ELLM_INPUT_FFN, s->xn, n_tokens, n_embd);
    if (hp->fused_gate_up) {
        float *gate_up_out[2] = {s->gate, s->up};
        const ellm_tensor *up = &L->ffn_up;
        matmul_weights(s, pool, &up, 1, s->xn, n_tokens, &s->fused);
        split_rows(s->fused, n_tokens, gate_up_out, (size_t[]){n_ff, n_ff}, 2);
        if (hp->gelu_ffn)
            gelu_mul(s->gate, s->up, n_tokens * n_ff);
        else
            elementwise(pool, EW_SILU_MUL, s->gate, s->up, n_tokens * n_ff);
    } else {
        gated_ffn(s, pool, L, hp->gelu_ffn ? gelu_mul : ellm_silu_mul, n_tokens, n_ff);
    }
    const ellm_tensor *down = &L->ffn_down;
    observe(s, il, ELLM_INPUT_FFN_DOWN, s->gate, n_tokens, n_ff);
    matmul_weights(s, pool, &down, 1, s->gate, n_tokens, &s->tmp);
    if (hp->post_norms)
        rms_norm_each(s->tmp, N->post_ffw, n_tokens, n_embd, hp->rms_norm_eps);
    elementwise(pool, EW_ADD, s->x, s->tmp, n_tokens * n_embd);
}

/* Layers first..last-1 over the batch's rows of s->x. */
static edgellm_status run_layers(const ellm_model *m, ellm_state *s, ellm_threadpool *pool,
                                 const ellm_forward_seq *seqs, int32_t first, int32_t last,
                                 int32_t n_tokens)
{
    for (int32_t il = first; il < last; il++) {
        /* n_past has not moved yet: the rows earlier layers stored are beyond it, unused. */
        if (cancelled(s))
            return ellm_fail(EDGELLM_ERR_CANCELLED, "the forward pass was cancelled at layer %d",
                             (int)il);
        run_layer(m, s, pool, seqs, il, n_tokens);
    }
    return EDGELLM_OK;
}

edgellm_status ellm_forward_layers(const ellm_model *m, ellm_state *s, ellm_threadpool *pool,
                                   int32_t first, int32_t last, const float *x, int32_t n_tokens,
                                   float *x_out)
{
    const ellm_hparams *hp = &m->hp;
    if (first < 0 || first > last || last > hp->n_layer)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "layers %d to %d are not a range of the model's %d layers", (int)first,
                         (int)last - 1, (int)hp->n_layer);
    if (n_tokens <= 0 || n_tokens > s->p.n_batch)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "batch of %d rows (1 to %d allowed)",
                         (int)n_tokens, (int)s->p.n_batch);
    if (ellm_threadpool_size(pool) > s->p.n_threads)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "the pool has more threads than the state");
    if (s->p.scratch_only || s->n_past + n_tokens > s->p.n_ctx)
        return ellm_fail(EDGELLM_ERR_CONTEXT_FULL,
                         "%d more rows do not fit: %d of %d context positions are used",
                         (int)n_tokens, (int)s->n_past, (int)(s->p.scratch_only ? 0 : s->p.n_ctx));
    int64_t n_embd = hp->n_embd;
    for (int32_t t = 0; t < n_tokens; t++) {
        s->tok_seq[t] = 0;
        s->tok_pos[t] = s->n_past + t;
    }
    memcpy(s->x, x, (size_t)n_tokens * (size_t)n_embd * sizeof *x);
    ellm_forward_seq seq = {s, NULL, n_tokens, true, false};
    edgellm_status st = run_layers(m, s, pool, &seq, first, last, n_tokens);
    if (st != EDGELLM_OK)
        return st;
    if (last == hp->n_layer && s->observer) {
        for (int32_t t = 0; t < n_tokens; t++)
            rms_norm(s->x + t * n_embd, m->output_norm, s->xn + t * n_embd, n_embd,
                     hp->rms_norm_eps);
        observe(s, -1, ELLM_INPUT_HEAD, s->xn, n_tokens, n_embd);
    }
    if (x_out)
        memcpy(x_out, s->x, (size_t)n_tokens * (size_t)n_embd * sizeof *x_out);
    s->n_past += n_tokens;
    return EDGELLM_OK;
}

/*
 * All rows of all sequences go through every matmul together, so each weight is read once per
 * step however many sequences share it. Only attention and the KV cache are per sequence. A row's
 * result does not depend on the other rows (every kernel computes rows independently), so a
 * sequence gets the same logits batched or alone.
 */
edgellm_status ellm_forward_batch(const ellm_model *m, ellm_state *work, ellm_threadpool *pool,
                                  const ellm_forward_seq *seqs, int32_t n_seqs, float *logits)
{
    const ellm_hparams *hp = &m->hp;
    const ellm_weights *w = &m->w;
    int32_t n_tokens = 0;
    edgellm_status st = check_batch(m, work, pool, seqs, n_seqs, &n_tokens);
    if (st != EDGELLM_OK)
        return st;
    ellm_state *s = work;
    double t_pass = prof_begin(s);

    int64_t n_embd = hp->n_embd;
    for (int32_t i = 0, row = 0; i < n_seqs; i++) {
        for (int32_t t = 0; t < seqs[i].n_tokens; t++) {
            s->tok_seq[row + t] = i;
            s->tok_pos[row + t] = seqs[i].state->n_past + t;
        }
        ellm_forward_embed(m, seqs[i].tokens, seqs[i].n_tokens, s->x + (size_t)row * n_embd);
        row += seqs[i].n_tokens;
    }

    st = run_layers(m, s, pool, seqs, 0, m->hp.n_layer, n_tokens);
    if (st != EDGELLM_OK)
        return st;

    if (seqs[0].hidden) {
        for (int32_t t = 0; t < n_tokens; t++)
            rms_norm(s->x + t * n_embd, m->output_norm, logits + t * n_embd, n_embd,
                     hp->rms_norm_eps);
        seqs[0].state->n_past += n_tokens;
        prof_pass(s, n_tokens, t_pass);
        return EDGELLM_OK;
    }

    /* Rows that produce logits, packed sequence by sequence. */
    int32_t n_out = 0;
    for (int32_t i = 0, row = 0; i < n_seqs; i++) {
        int32_t first = seqs[i].all_logits ? 0 : seqs[i].n_tokens - 1;
        for (int32_t t = first; t < seqs[i].n_tokens; t++, n_out++)
            rms_norm(s->x + (row + t) * n_embd, m->output_norm, s->xn + n_out * n_embd, n_embd,
                     hp->rms_norm_eps);
        row += seqs[i].n_tokens;
    }
    const ellm_tensor *head = &w->output;
    observe(s, -1, ELLM_INPUT_HEAD, s->xn, n_out, n_embd);
    matmul_weights(s, pool, &head, 1, s->xn, n_out, &logits);
    if (hp->final_softcap > 0)
        for (int64_t i = 0; i < (int64_t)n_out * hp->n_vocab; i++)
            logits[i] = hp->final_softcap * tanhf(logits[i] / hp->final_softcap);
    for (int32_t i = 0; i < n_seqs; i++)
        seqs[i].state->n_past += seqs[i].n_tokens;
    prof_pass(s, n_tokens, t_pass);
    return EDGELLM_OK;
}
