/* Operations of the training graph and their gradients. Work is split over the pool so that each
 * output element belongs to one thread and is summed in a fixed order: results do not depend on
 * timing. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/train_ops.h"

/* Eight independent partial sums so the compiler may vectorize without reassociating. */
static float dot(const float *a, const float *b, int64_t n)
{
    float acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            acc[k] += a[i + k] * b[i + k];
    float sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; i++)
        sum += a[i] * b[i];
    return sum;
}

static void axpy(float *y, float a, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] += a * x[i];
}

static void split(int64_t n, int ith, int nth, int64_t *i0, int64_t *i1)
{
    int64_t per = (n + nth - 1) / nth;
    *i0 = per * ith < n ? per * ith : n;
    *i1 = *i0 + per < n ? *i0 + per : n;
}

typedef struct matmul_job {
    float *y, *dx, *dW;
    const float *x, *W, *dy;
    int64_t n_rows, n_in, n_out;
    bool accumulate;
} matmul_job;

/* Rows of W in tiles of 16 against all x rows: a tile of W stays in cache while x streams. */
static void matmul_task(void *arg, int ith, int nth)
{
    matmul_job *j = arg;
    int64_t o0, o1;
    split(j->n_out, ith, nth, &o0, &o1);
    for (int64_t ob = o0; ob < o1; ob += 16) {
        int64_t oe = ob + 16 < o1 ? ob + 16 : o1;
        for (int64_t t = 0; t < j->n_rows; t++) {
            const float *xt = j->x + t * j->n_in;
            for (int64_t o = ob; o < oe; o++)
                j->y[t * j->n_out + o] = dot(j->W + o * j->n_in, xt, j->n_in);
        }
    }
}

void ellm_train_matmul(ellm_threadpool *pool, float *y, const float *x, const float *W,
                       int64_t n_rows, int64_t n_in, int64_t n_out)
{
    matmul_job j = {.y = y, .x = x, .W = W, .n_rows = n_rows, .n_in = n_in, .n_out = n_out};
    ellm_threadpool_run(pool, matmul_task, &j);
}

static void matmul_dx_task(void *arg, int ith, int nth)
{
    matmul_job *j = arg;
    int64_t t0, t1;
    split(j->n_rows, ith, nth, &t0, &t1);
    for (int64_t t = t0; t < t1; t++) {
        float *dxt = j->dx + t * j->n_in;
        if (!j->accumulate)
            memset(dxt, 0, (size_t)j->n_in * sizeof *dxt);
        const float *dyt = j->dy + t * j->n_out;
        for (int64_t o = 0; o < j->n_out; o++)
            if (dyt[o] != 0.0f)
                axpy(dxt, dyt[o], j->W + o * j->n_in, j->n_in);
    }
}

static void matmul_dw_task(void *arg, int ith, int nth)
{
    matmul_job *j = arg;
    int64_t o0, o1;
    split(j->n_out, ith, nth, &o0, &o1);
    for (int64_t ob = o0; ob < o1; ob += 16) {
        int64_t oe = ob + 16 < o1 ? ob + 16 : o1;
        for (int64_t t = 0; t < j->n_rows; t++) {
            const float *xt = j->x + t * j->n_in, *dyt = j->dy + t * j->n_out;
            for (int64_t o = ob; o < oe; o++)
                if (dyt[o] != 0.0f)
                    axpy(j->dW + o * j->n_in, dyt[o], xt, j->n_in);
        }
    }
}

void ellm_train_matmul_backward(ellm_threadpool *pool, float *dx, float *dW, const float *dy,
                                const float *x, const float *W, int64_t n_rows, int64_t n_in,
                                int64_t n_out, bool accumulate)
{
    matmul_job j = {.dx = dx,
                    .dW = dW,
                    .x = x,
                    .W = W,
                    .dy = dy,
                    .n_rows = n_rows,
                    .n_in = n_in,
                    .n_out = n_out,
                    .accumulate = accumulate};
    if (dx)
        ellm_threadpool_run(pool, matmul_dx_task, &j);
    if (dW)
        ellm_threadpool_run(pool, matmul_dw_task, &j);
}

void ellm_train_rms_norm(float *y, float *rstd, const float *x, const float *w, int64_t n_rows,
                         int64_t n, float eps)
{
    for (int64_t t = 0; t < n_rows; t++) {
        const float *xt = x + t * n;
        double ss = 0;
        for (int64_t i = 0; i < n; i++)
            ss += (double)xt[i] * xt[i];
        float mean = (float)(ss / (double)n);
        float r = 1.0f / sqrtf(mean + eps);
        rstd[t] = r;
        for (int64_t i = 0; i < n; i++)
            y[t * n + i] = xt[i] * r * w[i];
    }
}

void ellm_train_rms_norm_backward(float *dx, float *dw, const float *dy, const float *x,
                                  const float *w, const float *rstd, int64_t n_rows, int64_t n)
{
    for (int64_t t = 0; t < n_rows; t++) {
        const float *xt = x + t * n, *dyt = dy + t * n;
        float r = rstd[t];
        double proj = 0; /* sum of dy * w * x */
        for (int64_t i = 0; i < n; i++) {
            proj += (double)dyt[i] * w[i] * xt[i];
            dw[i] += dyt[i] * xt[i] * r;
        }
        float c = (float)(proj / (double)n) * r * r * r;
        for (int64_t i = 0; i < n; i++)
            dx[t * n + i] += dyt[i] * w[i] * r - xt[i] * c;
    }
}

void ellm_train_rope_table(float *table, int32_t n_ctx, int32_t head_dim, float freq_base)
{
    int32_t half = head_dim / 2;
    float theta_scale = powf(freq_base, -2.0f / (float)head_dim);
    for (int32_t p = 0; p < n_ctx; p++) {
        float theta = (float)p;
        for (int32_t i = 0; i < half; i++) {
            table[((size_t)p * half + i) * 2] = cosf(theta);
            table[((size_t)p * half + i) * 2 + 1] = sinf(theta);
            theta *= theta_scale;
        }
    }
}

void ellm_train_rope(float *x, const float *table, int64_t n_rows, int32_t n_ctx, int32_t n_heads,
                     int32_t head_dim, bool neox, bool inverse)
{
    int32_t half = head_dim / 2;
    for (int64_t t = 0; t < n_rows; t++) {
        const float *cs = table + (size_t)(t % n_ctx) * half * 2;
        for (int32_t h = 0; h < n_heads; h++) {
            float *v = x + (t * n_heads + h) * head_dim;
            for (int32_t i = 0; i < half; i++) {
                float c = cs[2 * i], s = inverse ? -cs[2 * i + 1] : cs[2 * i + 1];
                int32_t a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
                float x0 = v[a], x1 = v[b];
                v[a] = x0 * c - x1 * s;
                v[b] = x0 * s + x1 * c;
            }
        }
    }
}

typedef struct attention_job {
    float *out, *probs, *dq, *dk, *dv;
    float *scratch; /* backward: n_ctx floats per thread */
    const float *q, *k, *v, *dout, *cprobs;
    int32_t n_seq, n_ctx, n_head, n_head_kv, hd;
} attention_job;

static void attention_task(void *arg, int ith, int nth)
{
    attention_job *j = arg;
    int32_t hd = j->hd, group = j->n_head / j->n_head_kv;
    size_t q_dim = (size_t)j->n_head * hd, kv_dim = (size_t)j->n_head_kv * hd;
    float scale = 1.0f / sqrtf((float)hd);
    for (int32_t job = ith; job < j->n_seq * j->n_head; job += nth) {
        int32_t b = job / j->n_head, h = job % j->n_head, kvh = h / group;
        size_t base = (size_t)b * j->n_ctx;
        for (int32_t t = 0; t < j->n_ctx; t++) {
            const float *qt = j->q + (base + t) * q_dim + (size_t)h * hd;
            float *p = j->probs + (((size_t)b * j->n_head + h) * j->n_ctx + t) * j->n_ctx;
            float max = -INFINITY;
            for (int32_t s = 0; s <= t; s++) {
                p[s] = dot(qt, j->k + (base + s) * kv_dim + (size_t)kvh * hd, hd) * scale;
                max = p[s] > max ? p[s] : max;
            }
            float sum = 0;
            for (int32_t s = 0; s <= t; s++) {
                p[s] = expf(p[s] - max);
                sum += p[s];
            }
            float inv = 1.0f / sum;
            float *o = j->out + (base + t) * q_dim + (size_t)h * hd;
            memset(o, 0, (size_t)hd * sizeof *o);
            for (int32_t s = 0; s <= t; s++) {
                p[s] *= inv;
                axpy(o, p[s], j->v + (base + s) * kv_dim + (size_t)kvh * hd, hd);
            }
            for (int32_t s = t + 1; s < j->n_ctx; s++)
                p[s] = 0;
        }
    }
}

void ellm_train_attention(ellm_threadpool *pool, float *out, float *probs, const float *q,
                          const float *k, const float *v, int32_t n_seq, int32_t n_ctx,
                          int32_t n_head, int32_t n_head_kv, int32_t head_dim)
{
    attention_job j = {.out = out,
                       .probs = probs,
                       .q = q,
                       .k = k,
                       .v = v,
                       .n_seq = n_seq,
                       .n_ctx = n_ctx,
                       .n_head = n_head,
                       .n_head_kv = n_head_kv,
                       .hd = head_dim};
    ellm_threadpool_run(pool, attention_task, &j);
}

/* One job per (sequence, KV head): it alone writes that head's dk and dv, summing over its
 * group's query heads and positions in a fixed order. */
static void attention_backward_task(void *arg, int ith, int nth)
{
    attention_job *j = arg;
    int32_t hd = j->hd, group = j->n_head / j->n_head_kv;
    size_t q_dim = (size_t)j->n_head * hd, kv_dim = (size_t)j->n_head_kv * hd;
    float scale = 1.0f / sqrtf((float)hd);
    float *dp = j->scratch + (size_t)ith * j->n_ctx;
    for (int32_t job = ith; job < j->n_seq * j->n_head_kv; job += nth) {
        int32_t b = job / j->n_head_kv, kvh = job % j->n_head_kv;
        size_t base = (size_t)b * j->n_ctx;
        for (int32_t s = 0; s < j->n_ctx; s++) {
            memset(j->dk + (base + s) * kv_dim + (size_t)kvh * hd, 0, (size_t)hd * sizeof(float));
            memset(j->dv + (base + s) * kv_dim + (size_t)kvh * hd, 0, (size_t)hd * sizeof(float));
        }
        for (int32_t h = kvh * group; h < (kvh + 1) * group; h++)
            for (int32_t t = 0; t < j->n_ctx; t++) {
                const float *p = j->cprobs +
                                 (((size_t)b * j->n_head + h) * j->n_ctx + t) * j->n_ctx;
                const float *dout = j->dout + (base + t) * q_dim + (size_t)h * hd;
                const float *qt = j->q + (base + t) * q_dim + (size_t)h * hd;
                float *dqt = j->dq + (base + t) * q_dim + (size_t)h * hd;
                float pdp = 0;
                for (int32_t s = 0; s <= t; s++) {
                    dp[s] = dot(dout, j->v + (base + s) * kv_dim + (size_t)kvh * hd, hd);
                    pdp += p[s] * dp[s];
                    axpy(j->dv + (base + s) * kv_dim + (size_t)kvh * hd, p[s], dout, hd);
                }
                memset(dqt, 0, (size_t)hd * sizeof *dqt);
                for (int32_t s = 0; s <= t; s++) {
                    float ds = p[s] * (dp[s] - pdp) * scale;
                    axpy(dqt, ds, j->k + (base + s) * kv_dim + (size_t)kvh * hd, hd);
                    axpy(j->dk + (base + s) * kv_dim + (size_t)kvh * hd, ds, qt, hd);
                }
            }
    }
}

bool ellm_train_attention_backward(ellm_threadpool *pool, float *dq, float *dk, float *dv,
                                   const float *dout, const float *probs, const float *q,
                                   const float *k, const float *v, int32_t n_seq, int32_t n_ctx,
                                   int32_t n_head, int32_t n_head_kv, int32_t head_dim)
{
    int nth = pool ? ellm_threadpool_size(pool) : 1;
    float *scratch = malloc((size_t)nth * (size_t)n_ctx * sizeof *scratch);
    if (!scratch)
        return false;
    attention_job j = {.scratch = scratch,
                       .dq = dq,
                       .dk = dk,
                       .dv = dv,
                       .dout = dout,
                       .cprobs = probs,
                       .q = q,
                       .k = k,
                       .v = v,
                       .n_seq = n_seq,
                       .n_ctx = n_ctx,
                       .n_head = n_head,
                       .n_head_kv = n_head_kv,
                       .hd = head_dim};
    ellm_threadpool_run(pool, attention_backward_task, &j);
    free(scratch);
    return true;
}

void ellm_train_swiglu(float *h, const float *g, const float *u, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        h[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void ellm_train_swiglu_backward(float *dg, float *du, const float *dh, const float *g,
                                const float *u, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        float sig = 1.0f / (1.0f + expf(-g[i]));
        du[i] = dh[i] * g[i] * sig;
        dg[i] = dh[i] * u[i] * sig * (1.0f + g[i] * (1.0f - sig));
    }
}

typedef struct ce_job {
    float *dlogits;
    const float *logits;
    const int32_t *targets;
    double *row_loss;
    int64_t n_rows, n_vocab;
    float scale;
} ce_job;

static void ce_task(void *arg, int ith, int nth)
{
    ce_job *j = arg;
    int64_t t0, t1;
    split(j->n_rows, ith, nth, &t0, &t1);
    for (int64_t t = t0; t < t1; t++) {
        const float *z = j->logits + t * j->n_vocab;
        float max = -INFINITY;
        for (int64_t i = 0; i < j->n_vocab; i++)
            max = z[i] > max ? z[i] : max;
        double sum = 0;
        for (int64_t i = 0; i < j->n_vocab; i++)
            sum += exp((double)z[i] - max);
        double lse = max + log(sum);
        j->row_loss[t] = lse - z[j->targets[t]];
        if (!j->dlogits)
            continue;
        float *dz = j->dlogits + t * j->n_vocab;
        float scale = j->scale / (float)j->n_rows;
        for (int64_t i = 0; i < j->n_vocab; i++)
            dz[i] = (float)exp((double)z[i] - lse) * scale;
        dz[j->targets[t]] -= scale;
    }
}

double ellm_train_cross_entropy(ellm_threadpool *pool, float *dlogits, const float *logits,
                                const int32_t *targets, int64_t n_rows, int64_t n_vocab,
                                float scale)
{
    double *row_loss = malloc((size_t)n_rows * sizeof *row_loss);
    if (!row_loss)
        return NAN;
    ce_job j = {dlogits, logits, targets, row_loss, n_rows, n_vocab, scale};
    ellm_threadpool_run(pool, ce_task, &j);
    double total = 0;
    for (int64_t t = 0; t < n_rows; t++)
        total += row_loss[t];
    free(row_loss);
    return total / (double)n_rows;
}

typedef struct distill_job {
    float *dlogits;
    const float *student, *teacher;
    const int32_t *targets;
    double *row_loss, *row_kl;
    int64_t n_rows, n_vocab;
    float temperature, alpha, scale;
} distill_job;

/* log-sum-exp of z / T (double accumulation) */
static double log_sum_exp(const float *z, int64_t n, double inv_t)
{
    double max = -INFINITY, sum = 0;
    for (int64_t i = 0; i < n; i++)
        max = z[i] * inv_t > max ? z[i] * inv_t : max;
    for (int64_t i = 0; i < n; i++)
        sum += exp(z[i] * inv_t - max);
    return max + log(sum);
}

static void distill_task(void *arg, int ith, int nth)
{
    distill_job *j = arg;
    int64_t t0, t1;
    split(j->n_rows, ith, nth, &t0, &t1);
    double T = j->temperature, inv_t = 1.0 / T, a = j->alpha;
    for (int64_t t = t0; t < t1; t++) {
        const float *s = j->student + t * j->n_vocab, *te = j->teacher + t * j->n_vocab;
        double lse_s = log_sum_exp(s, j->n_vocab, 1.0);
        double lse_sT = log_sum_exp(s, j->n_vocab, inv_t);
        double lse_tT = log_sum_exp(te, j->n_vocab, inv_t);
        double kl = 0;
        for (int64_t i = 0; i < j->n_vocab; i++) {
            if (te[i] == -INFINITY)
                continue; /* outside the teacher's top-k: p = 0 adds nothing (0 log 0 = 0) */
            double log_p = te[i] * inv_t - lse_tT, log_q = s[i] * inv_t - lse_sT;
            kl += exp(log_p) * (log_p - log_q);
        }
        double ce = lse_s - s[j->targets[t]];
        j->row_kl[t] = kl;
        j->row_loss[t] = a * T * T * kl + (1 - a) * ce;
        if (!j->dlogits)
            continue;
        /* d(T^2 KL)/ds = T (q - p); d CE/ds = softmax(s) - onehot */
        double scale = (double)j->scale / (double)j->n_rows;
        float *dz = j->dlogits + t * j->n_vocab;
        for (int64_t i = 0; i < j->n_vocab; i++) {
            double p = exp(te[i] * inv_t - lse_tT), q = exp(s[i] * inv_t - lse_sT);
            double soft = exp(s[i] - lse_s) - (i == j->targets[t] ? 1.0 : 0.0);
            dz[i] = (float)(scale * (a * T * (q - p) + (1 - a) * soft));
        }
    }
}

double ellm_train_distill_loss(ellm_threadpool *pool, float *dlogits, const float *student,
                               const float *teacher, const int32_t *targets, int64_t n_rows,
                               int64_t n_vocab, float temperature, float alpha, float scale,
                               double *mean_kl)
{
    double *row = malloc(2 * (size_t)n_rows * sizeof *row);
    if (!row)
        return NAN;
    distill_job j = {dlogits, student, teacher,     targets, row,  row + n_rows,
                     n_rows,  n_vocab, temperature, alpha,   scale};
    ellm_threadpool_run(pool, distill_task, &j);
    double loss = 0, kl = 0;
    for (int64_t t = 0; t < n_rows; t++) {
        loss += row[t];
        kl += row[n_rows + t];
    }
    free(row);
    if (mean_kl)
        *mean_kl = kl / (double)n_rows;
    return loss / (double)n_rows;
}
