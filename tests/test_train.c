/* The training graph: every backward op against central finite differences of a double-precision
 * forward written here, the whole model's gradients against finite differences of its own loss,
 * its forward against the inference engine on the aidreams model, the optimizer and schedule
 * against hand-computed values, reproducibility across thread counts, and the overfit test. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "model/model.h"
#include "test_util.h"
#include "train/train.h"
#include "train/train_ops.h"

static uint64_t rng = 7;
static float frand(void) { return test_rand_uniform(&rng); }

static float *random_floats(size_t n, float scale)
{
    float *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = frand() * scale;
    return v;
}

/* Objective: sum of upstream gradient times the op's double-precision output, as a function of
 * all the op's inputs packed into one vector. */
typedef double (*objective_fn)(const double *in, const void *ctx);

/* Compares the analytic gradient of every input with a central difference of the objective. */
static void check_gradient(const char *name, const float *in, const float *analytic, size_t n,
                           objective_fn f, const void *ctx)
{
    double *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++)
        x[i] = in[i];
    double worst = 0;
    size_t worst_i = 0;
    for (size_t i = 0; i < n; i++) {
        double h = 1e-5 * (fabs(x[i]) > 1 ? fabs(x[i]) : 1), keep = x[i];
        x[i] = keep + h;
        double up = f(x, ctx);
        x[i] = keep - h;
        double down = f(x, ctx);
        x[i] = keep;
        double fd = (up - down) / (2 * h);
        double err = fabs(analytic[i] - fd) / (1e-4 + fabs(fd));
        if (err > worst) {
            worst = err;
            worst_i = i;
        }
    }
    CHECK_MSG(worst < 2e-3, "%s: input %zu off by a relative %.2g", name, worst_i, worst);
    free(x);
}

/* ---- matmul: inputs x [R][I], W [O][I] ---- */
typedef struct mm_ctx {
    int R, I, O;
    const float *dy;
} mm_ctx;

static double mm_objective(const double *in, const void *vctx)
{
    const mm_ctx *c = vctx;
    const double *x = in, *W = in + c->R * c->I;
    double total = 0;
    for (int t = 0; t < c->R; t++)
        for (int o = 0; o < c->O; o++) {
            double y = 0;
            for (int i = 0; i < c->I; i++)
                y += W[o * c->I + i] * x[t * c->I + i];
            total += c->dy[t * c->O + o] * y;
        }
    return total;
}

static void test_matmul_gradient(ellm_threadpool *pool)
{
    mm_ctx c = {5, 7, 6, NULL};
    size_t nx = (size_t)c.R * c.I, nw = (size_t)c.O * c.I;
    float *in = random_floats(nx + nw, 1.0f);
    float *dy = random_floats((size_t)c.R * c.O, 1.0f);
    float *grad = calloc(nx + nw, sizeof *grad);
    c.dy = dy;
    /* the dx half is written (not added) unless accumulating: poison it to check */
    for (size_t i = 0; i < nx; i++)
        grad[i] = 1e6f;
    ellm_train_matmul_backward(pool, grad, grad + nx, dy, in, in + nx, c.R, c.I, c.O, false);
    check_gradient("matmul", in, grad, nx + nw, mm_objective, &c);
    /* forward against the same double sum */
    float *y = malloc((size_t)c.R * c.O * sizeof *y);
    ellm_train_matmul(pool, y, in, in + nx, c.R, c.I, c.O);
    double got = 0;
    for (int i = 0; i < c.R * c.O; i++)
        got += (double)dy[i] * y[i];
    double x[200];
    for (size_t i = 0; i < nx + nw; i++)
        x[i] = in[i];
    CHECK(fabs(got - mm_objective(x, &c)) < 1e-4);
    free(y);
    free(in);
    free(dy);
    free(grad);
}

/* ---- RMSNorm: inputs x [R][N], w [N] ---- */
typedef struct norm_ctx {
    int R, N;
    float eps;
    const float *dy;
} norm_ctx;

static double norm_objective(const double *in, const void *vctx)
{
    const norm_ctx *c = vctx;
    const double *x = in, *w = in + c->R * c->N;
    double total = 0;
    for (int t = 0; t < c->R; t++) {
        double ss = 0;
        for (int i = 0; i < c->N; i++)
            ss += x[t * c->N + i] * x[t * c->N + i];
        double r = 1 / sqrt(ss / c->N + c->eps);
        for (int i = 0; i < c->N; i++)
            total += c->dy[t * c->N + i] * x[t * c->N + i] * r * w[i];
    }
    return total;
}

static void test_rms_norm_gradient(void)
{
    norm_ctx c = {3, 8, 1e-5f, NULL};
    size_t nx = (size_t)c.R * c.N;
    float *in = random_floats(nx + c.N, 1.0f);
    float *dy = random_floats(nx, 1.0f);
    float *grad = calloc(nx + c.N, sizeof *grad);
    float *y = malloc(nx * sizeof *y), rstd[3];
    c.dy = dy;
    ellm_train_rms_norm(y, rstd, in, in + nx, c.R, c.N, c.eps);
    ellm_train_rms_norm_backward(grad, grad + nx, dy, in, in + nx, rstd, c.R, c.N);
    check_gradient("rms_norm", in, grad, nx + c.N, norm_objective, &c);
    free(in);
    free(dy);
    free(grad);
    free(y);
}

/* ---- RoPE: input x [R][H*hd], positions t % n_ctx ---- */
typedef struct rope_ctx {
    int R, n_ctx, H, hd;
    bool neox;
    float base;
    const float *dy;
} rope_ctx;

static double rope_objective(const double *in, const void *vctx)
{
    const rope_ctx *c = vctx;
    int half = c->hd / 2;
    double total = 0;
    for (int t = 0; t < c->R; t++)
        for (int h = 0; h < c->H; h++)
            for (int i = 0; i < half; i++) {
                double theta = (t % c->n_ctx) * pow(c->base, -2.0 * i / c->hd);
                int a = c->neox ? i : 2 * i, b = c->neox ? i + half : 2 * i + 1;
                const double *v = in + (t * c->H + h) * c->hd;
                const float *g = c->dy + (t * c->H + h) * c->hd;
                total += g[a] * (v[a] * cos(theta) - v[b] * sin(theta)) +
                         g[b] * (v[a] * sin(theta) + v[b] * cos(theta));
            }
    return total;
}

static void test_rope_gradient(void)
{
    for (int neox = 0; neox < 2; neox++) {
        rope_ctx c = {6, 3, 2, 8, neox, 10000.0f, NULL};
        size_t n = (size_t)c.R * c.H * c.hd;
        float *in = random_floats(n, 1.0f), *dy = random_floats(n, 1.0f);
        float table[3 * 4 * 2];
        ellm_train_rope_table(table, c.n_ctx, c.hd, c.base);
        float *grad = malloc(n * sizeof *grad);
        memcpy(grad, dy, n * sizeof *grad);
        ellm_train_rope(grad, table, c.R, c.n_ctx, c.H, c.hd, c.neox, true);
        c.dy = dy;
        check_gradient(neox ? "rope (neox)" : "rope", in, grad, n, rope_objective, &c);
        free(in);
        free(dy);
        free(grad);
    }
}

/* ---- attention: inputs q [S*T][H*hd], k, v [S*T][KV*hd] ---- */
typedef struct att_ctx {
    int S, T, H, KV, hd;
    const float *dy;
} att_ctx;

static double att_objective(const double *in, const void *vctx)
{
    const att_ctx *c = vctx;
    int qd = c->H * c->hd, kvd = c->KV * c->hd;
    const double *q = in, *k = q + c->S * c->T * qd, *v = k + c->S * c->T * kvd;
    double total = 0, sc[16];
    for (int b = 0; b < c->S; b++)
        for (int h = 0; h < c->H; h++)
            for (int t = 0; t < c->T; t++) {
                int kvh = h / (c->H / c->KV);
                double max = -INFINITY, sum = 0;
                for (int s = 0; s <= t; s++) {
                    double d = 0;
                    for (int i = 0; i < c->hd; i++)
                        d += q[(b * c->T + t) * qd + h * c->hd + i] *
                             k[(b * c->T + s) * kvd + kvh * c->hd + i];
                    sc[s] = d / sqrt(c->hd);
                    max = sc[s] > max ? sc[s] : max;
                }
                for (int s = 0; s <= t; s++)
                    sum += sc[s] = exp(sc[s] - max);
                for (int i = 0; i < c->hd; i++) {
                    double o = 0;
                    for (int s = 0; s <= t; s++)
                        o += sc[s] / sum * v[(b * c->T + s) * kvd + kvh * c->hd + i];
                    total += c->dy[(b * c->T + t) * qd + h * c->hd + i] * o;
                }
            }
    return total;
}

static void test_attention_gradient(ellm_threadpool *pool)
{
    att_ctx c = {2, 5, 4, 2, 4, NULL};
    size_t nq = (size_t)c.S * c.T * c.H * c.hd, nkv = (size_t)c.S * c.T * c.KV * c.hd;
    float *in = random_floats(nq + 2 * nkv, 1.0f), *dy = random_floats(nq, 1.0f);
    float *out = malloc(nq * sizeof *out);
    float *probs = malloc((size_t)c.S * c.H * c.T * c.T * sizeof *probs);
    float *grad = malloc((nq + 2 * nkv) * sizeof *grad);
    for (size_t i = 0; i < nq + 2 * nkv; i++)
        grad[i] = 1e6f; /* every gradient is overwritten */
    ellm_train_attention(pool, out, probs, in, in + nq, in + nq + nkv, c.S, c.T, c.H, c.KV, c.hd);
    CHECK(ellm_train_attention_backward(pool, grad, grad + nq, grad + nq + nkv, dy, probs, in,
                                        in + nq, in + nq + nkv, c.S, c.T, c.H, c.KV, c.hd));
    c.dy = dy;
    check_gradient("attention", in, grad, nq + 2 * nkv, att_objective, &c);
    free(in);
    free(dy);
    free(out);
    free(probs);
    free(grad);
}

/* ---- SwiGLU: inputs g [N], u [N] ---- */
typedef struct swiglu_ctx {
    int N;
    const float *dy;
} swiglu_ctx;

static double swiglu_objective(const double *in, const void *vctx)
{
    const swiglu_ctx *c = vctx;
    double total = 0;
    for (int i = 0; i < c->N; i++)
        total += c->dy[i] * in[i] / (1 + exp(-in[i])) * in[c->N + i];
    return total;
}

static void test_swiglu_gradient(void)
{
    swiglu_ctx c = {12, NULL};
    float *in = random_floats(2 * (size_t)c.N, 3.0f), *dy = random_floats((size_t)c.N, 1.0f);
    float grad[24];
    ellm_train_swiglu_backward(grad, grad + c.N, dy, in, in + c.N, c.N);
    c.dy = dy;
    check_gradient("swiglu", in, grad, 2 * (size_t)c.N, swiglu_objective, &c);
    free(in);
    free(dy);
}

/* ---- cross-entropy: input logits [R][V] ---- */
typedef struct ce_ctx {
    int R, V;
    const int32_t *targets;
} ce_ctx;

static double ce_objective(const double *z, const void *vctx)
{
    const ce_ctx *c = vctx;
    double total = 0;
    for (int t = 0; t < c->R; t++) {
        double sum = 0;
        for (int i = 0; i < c->V; i++)
            sum += exp(z[t * c->V + i]);
        total += log(sum) - z[t * c->V + c->targets[t]];
    }
    return total / c->R;
}

static void test_cross_entropy_gradient(ellm_threadpool *pool)
{
    int32_t targets[4] = {0, 5, 2, 9};
    ce_ctx c = {4, 10, targets};
    float *z = random_floats(40, 4.0f), dz[40];
    double loss = ellm_train_cross_entropy(pool, dz, z, targets, c.R, c.V, 1.0f);
    double x[40];
    for (int i = 0; i < 40; i++)
        x[i] = z[i];
    CHECK(fabs(loss - ce_objective(x, &c)) < 1e-6);
    check_gradient("cross_entropy", z, dz, 40, ce_objective, &c);
    /* a uniform prediction costs exactly log(V) */
    float flat[10] = {0};
    int32_t one = 3;
    CHECK(fabs(ellm_train_cross_entropy(pool, NULL, flat, &one, 1, 10, 1.0f) - log(10.0)) < 1e-9);
    free(z);
}

/* ---- distillation loss: input student logits [R][V] ---- */
typedef struct kd_ctx {
    int R, V;
    const float *teacher;
    const int32_t *targets;
    double T, alpha;
} kd_ctx;

static double kd_objective(const double *s, const void *vctx)
{
    const kd_ctx *c = vctx;
    double total = 0;
    for (int r = 0; r < c->R; r++) {
        const double *z = s + r * c->V;
        const float *te = c->teacher + r * c->V;
        double zs = 0, zsT = 0, ztT = 0;
        for (int i = 0; i < c->V; i++) {
            zs += exp(z[i]);
            zsT += exp(z[i] / c->T);
            ztT += exp(te[i] / c->T);
        }
        double kl = 0;
        for (int i = 0; i < c->V; i++) {
            double p = exp(te[i] / c->T) / ztT, q = exp(z[i] / c->T) / zsT;
            kl += p * log(p / q);
        }
        total += c->alpha * c->T * c->T * kl + (1 - c->alpha) * (log(zs) - z[c->targets[r]]);
    }
    return total / c->R;
}

static void test_distill_loss(ellm_threadpool *pool)
{
    /* By hand: p = softmax([3,1,0] / 2) = [0.628532, 0.231224, 0.140244],
     * q = softmax([1,2,3] / 2) = [0.186324, 0.307196, 0.506480],
     * KL(p||q) = sum p log(p/q) = 0.764543 - 0.181880 - 0.180208 = 0.518454,
     * CE = log(e + e^2 + e^3) - 1 = 2.407606,
     * loss = 0.5 * 2^2 * 0.518454 + 0.5 * 2.407606 = 2.240711. */
    float student[3] = {1, 2, 3}, teacher[3] = {3, 1, 0};
    int32_t target = 0;
    double kl = 0;
    double loss = ellm_train_distill_loss(pool, NULL, student, teacher, &target, 1, 3, 2.0f, 0.5f,
                                          1.0f, &kl);
    CHECK_MSG(fabs(loss - 2.240711) < 1e-6, "distillation loss %.7f, by hand 2.240711", loss);
    CHECK(fabs(kl - 0.518454) < 1e-6);
    /* alpha 0 is plain cross-entropy; a student equal to its teacher has no KL */
    CHECK(fabs(ellm_train_distill_loss(pool, NULL, student, teacher, &target, 1, 3, 2.0f, 0.0f,
                                       1.0f, NULL) -
               2.407606) < 1e-6);
    ellm_train_distill_loss(pool, NULL, teacher, teacher, &target, 1, 3, 3.0f, 1.0f, 1.0f, &kl);
    CHECK(fabs(kl) < 1e-12);

    /* A teacher cut to its top 2: p = softmax([3, 1] / 2) = [0.731059, 0.268941] over the kept
     * tokens, 0 for the third; KL = 0.731059 log(0.731059 / 0.186324)
     * + 0.268941 log(0.268941 / 0.307196) = 0.999363 - 0.035767 = 0.963596. */
    float top2[3] = {3, 1, -INFINITY}, dtop[3];
    double loss2 = ellm_train_distill_loss(pool, dtop, student, top2, &target, 1, 3, 2.0f, 1.0f,
                                           1.0f, &kl);
    CHECK_MSG(fabs(kl - 0.963596) < 1e-6, "top-k KL %.7f, by hand 0.963596", kl);
    CHECK(fabs(loss2 - 4 * 0.963596) < 4e-6);
    /* d(T^2 KL)/ds = T (q - p): the dropped token's gradient is T q alone */
    CHECK_MSG(fabs(dtop[2] - 2 * 0.506480) < 1e-5, "top-k gradient %.6f", dtop[2]);

    int32_t targets[3] = {4, 0, 7};
    float *s = random_floats(24, 3.0f), *t = random_floats(24, 3.0f), ds[24];
    kd_ctx c = {3, 8, t, targets, 2.5, 0.7};
    ellm_train_distill_loss(pool, ds, s, t, targets, 3, 8, 2.5f, 0.7f, 1.0f, NULL);
    check_gradient("distillation", s, ds, 24, kd_objective, &c);
    free(s);
    free(t);
}

/* ---- the whole model ---- */
static ellm_train_params *tiny_model(bool tied, int vocab, int embd, int layers, int heads, int kv,
                                     int ff, uint64_t seed)
{
    ellm_train_config cfg = {vocab, embd, layers, heads, kv, ff, 1e-5f, 10000.0f, false, tied};
    ellm_train_params *p = NULL;
    CHECK(ellm_train_params_create(&cfg, &p) == EDGELLM_OK);
    if (p)
        ellm_train_params_init_random(p, seed);
    return p;
}

static void random_tokens(int32_t *v, size_t n, int vocab)
{
    for (size_t i = 0; i < n; i++)
        v[i] = (int32_t)((frand() + 1) * 0.5f * vocab) % vocab;
}

/* The model's own float loss against central differences of it, on parameters sampled over
 * every tensor: a float forward is too noisy for more than about two digits, which still catches
 * a missing or misrouted gradient. */
static void test_model_gradient(ellm_threadpool *pool, bool tied)
{
    ellm_train_params *p = tiny_model(tied, 13, 8, 2, 2, 1, 12, 3), *g = NULL;
    if (!p)
        return;
    /* larger weights than at initialization so every path carries signal */
    for (size_t i = 0; i < p->n; i++)
        p->data[i] += frand() * 0.3f;
    CHECK(ellm_train_params_create(&p->cfg, &g) == EDGELLM_OK);
    ellm_train_work *w = NULL;
    CHECK(ellm_train_work_create(&p->cfg, 2, 5, &w) == EDGELLM_OK);
    int32_t tok[10], tgt[10];
    random_tokens(tok, 10, 13);
    random_tokens(tgt, 10, 13);
    double loss = 0;
    CHECK(ellm_train_forward_backward(p, g, w, pool, tok, tgt, 1.0f, &loss) == EDGELLM_OK);
    int bad = 0, checked = 0;
    for (size_t ti = 0; ti < ellm_train_tensor_count(&p->cfg); ti++) {
        ellm_train_tensor t, gt;
        ellm_train_tensor_at(p, ti, &t);
        ellm_train_tensor_at(g, ti, &gt);
        size_t n = (size_t)(t.ne0 * t.ne1);
        for (size_t k = 0; k < 6; k++) {
            size_t i = (k * 7919 + ti * 31) % n;
            float keep = t.data[i];
            const float h = 1e-2f;
            double up = 0, down = 0;
            t.data[i] = keep + h;
            ellm_train_forward_backward(p, NULL, w, pool, tok, tgt, 1.0f, &up);
            t.data[i] = keep - h;
            ellm_train_forward_backward(p, NULL, w, pool, tok, tgt, 1.0f, &down);
            t.data[i] = keep;
            double fd = (up - down) / (2 * h);
            checked++;
            if (fabs(gt.data[i] - fd) > 2e-3 + 0.05 * fabs(fd)) {
                bad++;
                fprintf(stderr, "%s[%zu]: analytic %g, finite difference %g\n", t.name, i,
                        gt.data[i], fd);
            }
        }
    }
    CHECK_MSG(bad == 0, "%d of %d sampled model gradients (tied %d) disagree", bad, checked, tied);
    ellm_train_work_free(w);
    ellm_train_params_free(p);
    ellm_train_params_free(g);
}

/* The training forward against the inference engine on the same F32 weights. */
static void test_matches_engine(ellm_threadpool *pool)
{
    gguf_file *file = NULL;
    ellm_model *model = NULL;
    if (ellm_gguf_open(test_shared_path("models/aidreams260K-f32.gguf"), &file) != EDGELLM_OK ||
        ellm_model_create(file, &model) != EDGELLM_OK) {
        CHECK_MSG(0, "cannot load the aidreams model from the shared data");
        ellm_gguf_close(file);
        return;
    }
    char *text = test_read_file(test_shared_path("testdata/aidreams/logits-ids.txt"), NULL);
    int32_t ids[64];
    int n = 0;
    for (char *s = text, *end; s && n < 64; s = end) {
        long v = strtol(s, &end, 10);
        if (end == s)
            break;
        ids[n++] = (int32_t)v;
    }
    free(text);
    ellm_train_params *p = NULL;
    CHECK(ellm_train_params_from_model(model, &p) == EDGELLM_OK);
    ellm_train_work *w = NULL;
    CHECK(n > 40 && ellm_train_work_create(&p->cfg, 1, n, &w) == EDGELLM_OK);
    ellm_state *st = NULL;
    ellm_state_params sp = {.n_ctx = n, .n_batch = n, .kv_type = EDGELLM_KV_F32, .n_threads = 3};
    CHECK(ellm_state_create(model, &sp, &st) == EDGELLM_OK);
    int V = p->cfg.n_vocab;
    float *engine = malloc((size_t)n * V * sizeof *engine);
    if (w && st && engine) {
        CHECK(ellm_forward(model, st, pool, ids, n, true, engine) == EDGELLM_OK);
        CHECK(ellm_train_forward_backward(p, NULL, w, pool, ids, NULL, 1.0f, NULL) == EDGELLM_OK);
        const float *mine = ellm_train_logits(w);
        double worst = 0, scale = 0;
        for (size_t i = 0; i < (size_t)n * V; i++) {
            double d = fabs((double)mine[i] - engine[i]);
            worst = d > worst ? d : worst;
            scale = fabs(engine[i]) > scale ? fabs(engine[i]) : scale;
        }
        printf("engine match: max |logit difference| %.3g over logits up to %.3g\n", worst, scale);
        CHECK_MSG(worst < 1e-4 * scale, "training forward differs from the engine by %g", worst);
    }
    free(engine);
    ellm_state_free(st);
    ellm_train_work_free(w);
    ellm_train_params_free(p);
    ellm_model_free(model);
    ellm_gguf_close(file);
}

static void test_optimizer_values(void)
{
    /* schedule: linear warm-up, cosine halfway, floor at the end */
    CHECK(fabsf(ellm_train_lr(1e-3f, 1e-4f, 10, 110, 0) - 1e-4f) < 1e-9f);
    CHECK(fabsf(ellm_train_lr(1e-3f, 1e-4f, 10, 110, 9) - 1e-3f) < 1e-9f);
    CHECK(fabsf(ellm_train_lr(1e-3f, 1e-4f, 10, 110, 60) - 5.5e-4f) < 1e-8f);
    CHECK(fabsf(ellm_train_lr(1e-3f, 1e-4f, 10, 110, 110) - 1e-4f) < 1e-9f);

    ellm_train_params *p = tiny_model(true, 4, 2, 1, 1, 1, 2, 1), *g = NULL;
    if (!p)
        return;
    CHECK(ellm_train_params_create(&p->cfg, &g) == EDGELLM_OK);
    ellm_train_params *before = NULL;
    CHECK(ellm_train_params_create(&p->cfg, &before) == EDGELLM_OK);
    for (size_t i = 0; i < g->n; i++)
        g->data[i] = (float)i - 3.5f;
    memcpy(before->data, p->data, p->n * sizeof *p->data);
    ellm_adamw opt = {0.9f, 0.95f, 1e-8f, 0.1f, NULL, NULL, 0};
    CHECK(ellm_adamw_init(&opt, p->n) == EDGELLM_OK);
    ellm_adamw_update(&opt, p, g, 0.01f);
    /* first step, bias-corrected: m/sqrt(v) = g/|g|; decay only on matrices */
    double e_tok = before->tok_embd[1] -
                   0.01 * ((g->tok_embd[1] > 0 ? 1 : -1) + 0.1 * before->tok_embd[1]);
    CHECK(fabs(p->tok_embd[1] - e_tok) < 1e-6);
    double e_norm = before->output_norm[0] - 0.01 * (g->output_norm[0] > 0 ? 1 : -1);
    CHECK(fabs(p->output_norm[0] - e_norm) < 1e-6);
    /* second step with the same gradient: still +-1 after correction */
    memcpy(before->data, p->data, p->n * sizeof *p->data);
    ellm_adamw_update(&opt, p, g, 0.01f);
    CHECK(fabs(p->output_norm[0] -
               (before->output_norm[0] - 0.01 * (g->output_norm[0] > 0 ? 1 : -1))) < 1e-6);
    ellm_adamw_free(&opt);

    /* clipping: norm of 3,4 is 5; clipped to 1 gives 0.6, 0.8 */
    memset(g->data, 0, g->n * sizeof *g->data);
    g->data[0] = 3;
    g->data[g->n - 1] = 4;
    CHECK(fabs(ellm_train_clip_grad_norm(g, 1.0) - 5.0) < 1e-12);
    CHECK(fabsf(g->data[0] - 0.6f) < 1e-7f && fabsf(g->data[g->n - 1] - 0.8f) < 1e-7f);
    CHECK(fabs(ellm_train_clip_grad_norm(g, 2.0) - 1.0) < 1e-6 && fabsf(g->data[0] - 0.6f) < 1e-7f);
    ellm_train_params_free(p);
    ellm_train_params_free(g);
    ellm_train_params_free(before);
}

/* Trains steps on one fixed batch; returns the final loss and leaves the parameters in p. */
static double train_fixed_batch(ellm_train_params *p, ellm_threadpool *pool, int steps, int n_seq,
                                int n_ctx, uint64_t data_seed, double *first_loss)
{
    ellm_train_params *g = NULL;
    ellm_train_work *w = NULL;
    ellm_adamw opt = {0.9f, 0.95f, 1e-8f, 0.0f, NULL, NULL, 0};
    CHECK(ellm_train_params_create(&p->cfg, &g) == EDGELLM_OK);
    CHECK(ellm_train_work_create(&p->cfg, n_seq, n_ctx, &w) == EDGELLM_OK);
    CHECK(ellm_adamw_init(&opt, p->n) == EDGELLM_OK);
    size_t n = (size_t)n_seq * n_ctx;
    int32_t *seq = malloc((n + 1) * sizeof *seq);
    rng = data_seed;
    random_tokens(seq, n + 1, p->cfg.n_vocab);
    double loss = NAN;
    for (int s = 0; s < steps && g && w; s++) {
        memset(g->data, 0, g->n * sizeof *g->data);
        /* two micro-batches of half weight: the accumulated gradient is the full one */
        CHECK(ellm_train_forward_backward(p, g, w, pool, seq, seq + 1, 0.5f, &loss) == EDGELLM_OK);
        CHECK(ellm_train_forward_backward(p, g, w, pool, seq, seq + 1, 0.5f, &loss) == EDGELLM_OK);
        if (s == 0 && first_loss)
            *first_loss = loss;
        ellm_train_clip_grad_norm(g, 1.0);
        ellm_adamw_update(&opt, p, g, ellm_train_lr(1e-2f, 1e-3f, 10, steps, s));
    }
    free(seq);
    ellm_adamw_free(&opt);
    ellm_train_work_free(w);
    ellm_train_params_free(g);
    return loss;
}

static void test_overfit(ellm_threadpool *pool)
{
    ellm_train_params *p = tiny_model(false, 32, 32, 2, 4, 2, 64, 11);
    if (!p)
        return;
    double first = 0, last = train_fixed_batch(p, pool, 300, 2, 16, 99, &first);
    printf("overfit: loss %.4f -> %.4f in 300 steps\n", first, last);
    CHECK(fabs(first - log(32.0)) < 0.1);
    CHECK_MSG(last < 0.05, "the loss on one fixed batch only fell to %g", last);
    ellm_train_params_free(p);
}

/* Each element is computed by one thread in a fixed order, so thread count cannot change a bit. */
static void test_reproducible(ellm_threadpool *pool1, ellm_threadpool *pool3)
{
    ellm_train_params *a = tiny_model(true, 20, 16, 2, 4, 2, 24, 5);
    ellm_train_params *b = tiny_model(true, 20, 16, 2, 4, 2, 24, 5);
    if (!a || !b)
        return;
    CHECK(memcmp(a->data, b->data, a->n * sizeof(float)) == 0);
    double la = train_fixed_batch(a, pool1, 5, 3, 7, 1234, NULL);
    double lb = train_fixed_batch(b, pool3, 5, 3, 7, 1234, NULL);
    CHECK(la == lb);
    CHECK(memcmp(a->data, b->data, a->n * sizeof(float)) == 0);
    ellm_train_params *c = tiny_model(true, 20, 16, 2, 4, 2, 24, 6);
    CHECK(c && memcmp(a->data, c->data, 16 * sizeof(float)) != 0); /* the seed matters */
    ellm_train_params_free(a);
    ellm_train_params_free(b);
    ellm_train_params_free(c);
}

static void test_bad_input(ellm_threadpool *pool)
{
    ellm_train_config bad = {10, 12, 1, 5, 1, 8, 1e-5f, 1e4f, false, true};
    ellm_train_params *p = NULL;
    CHECK(ellm_train_params_create(&bad, &p) == EDGELLM_ERR_INVALID_ARGUMENT && !p);
    bad.n_head = 3; /* head size 4 */
    bad.n_head_kv = 2;
    CHECK(ellm_train_params_create(&bad, &p) == EDGELLM_ERR_INVALID_ARGUMENT);
    bad.n_head_kv = 3;
    CHECK(ellm_train_params_create(&bad, &p) == EDGELLM_OK);
    ellm_train_work *w = NULL;
    CHECK(ellm_train_work_create(&bad, 1, 0, &w) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(ellm_train_work_create(&bad, 1, 2, &w) == EDGELLM_OK);
    int32_t tok[2] = {1, 10}, tgt[2] = {1, 2};
    double loss;
    CHECK(ellm_train_forward_backward(p, NULL, w, pool, tok, tgt, 1.0f, &loss) ==
          EDGELLM_ERR_INVALID_ARGUMENT);
    ellm_train_work_free(w);
    ellm_train_params_free(p);
}

int main(void)
{
    ellm_threadpool *pool = NULL, *pool1 = NULL;
    CHECK(ellm_threadpool_create(3, &pool) == EDGELLM_OK);
    CHECK(ellm_threadpool_create(1, &pool1) == EDGELLM_OK);
    test_matmul_gradient(pool);
    test_rms_norm_gradient();
    test_rope_gradient();
    test_attention_gradient(pool);
    test_swiglu_gradient();
    test_cross_entropy_gradient(pool);
    test_distill_loss(pool);
    test_model_gradient(pool, true);
    test_model_gradient(pool, false);
    test_matches_engine(pool);
    test_optimizer_values();
    test_reproducible(pool1, pool);
    test_overfit(pool);
    test_bad_input(pool);
    ellm_threadpool_free(pool);
    ellm_threadpool_free(pool1);
    return test_finish("test_train");
}
