/* The forward pass against a deliberately naive reference written here, independently of
 * src/model, on small random Llama models that exercise grouped-query attention, per-dimension
 * RoPE frequency factors, linear RoPE scaling, partial rotary dimensions, tied and separate output
 * heads, and quantized weights. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "model/model.h"
#include "quant/quant.h"
#include "test_util.h"

typedef struct spec {
    const char *name;
    int n_embd, n_layer, n_head, n_head_kv, n_ff, n_vocab, n_rot;
    float freq_base, rope_scale; /* rope_scale: linear factor (0 = none) */
    bool freq_factors, tied;
    ellm_type wtype;
} spec;

static uint64_t seed = 42;
static float frand(void) { return test_rand_uniform(&seed); }

/* Weights as the reference sees them: float, [rows][cols]. */
typedef struct ref_layer {
    float *attn_norm, *wq, *wk, *wv, *wo, *ffn_norm, *gate, *up, *down;
} ref_layer;

typedef struct ref_model {
    spec s;
    float *embd, *out_norm, *output, *factors;
    ref_layer *layers;
} ref_model;

static float *random_matrix(int rows, int cols, float scale)
{
    float *m = malloc((size_t)rows * cols * sizeof *m);
    for (int i = 0; i < rows * cols; i++)
        m[i] = frand() * scale;
    return m;
}

/* Stores a matrix in the writer in the requested type, and replaces the reference copy by
 * what the file really holds (so quantization error is not counted against the forward pass). */
static void add_matrix(gguf_writer *w, const char *name, float *m, int rows, int cols,
                       ellm_type type, uint8_t **keep)
{
    if (cols % 32 != 0 && type != ELLM_TYPE_F32 && type != ELLM_TYPE_F16)
        type = ELLM_TYPE_F32;
    uint64_t rb = 0;
    ellm_row_bytes(type, (uint64_t)cols, &rb);
    uint8_t *data = malloc(rb * (uint64_t)rows);
    for (int r = 0; r < rows; r++) {
        ellm_quantize_row(type, m + (size_t)r * cols, data + rb * (uint64_t)r, cols);
        ellm_dequantize_row(type, data + rb * (uint64_t)r, m + (size_t)r * cols, cols);
    }
    uint64_t ne[2] = {(uint64_t)cols, (uint64_t)rows};
    CHECK(ellm_gguf_writer_add_tensor(w, name, type, rows == 1 ? 1 : 2, ne, data) == EDGELLM_OK);
    *keep = data;
}

static const char *write_model(const spec *s, ref_model *rm, uint8_t ***blobs, int *n_blobs)
{
    rm->s = *s;
    gguf_writer *w = ellm_gguf_writer_create();
    ellm_gguf_writer_set_str(w, "general.architecture", "llama");
    ellm_gguf_writer_set_u32(w, "llama.context_length", 64);
    ellm_gguf_writer_set_u32(w, "llama.embedding_length", (uint32_t)s->n_embd);
    ellm_gguf_writer_set_u32(w, "llama.block_count", (uint32_t)s->n_layer);
    ellm_gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)s->n_ff);
    ellm_gguf_writer_set_u32(w, "llama.attention.head_count", (uint32_t)s->n_head);
    ellm_gguf_writer_set_u32(w, "llama.attention.head_count_kv", (uint32_t)s->n_head_kv);
    ellm_gguf_writer_set_u32(w, "llama.rope.dimension_count", (uint32_t)s->n_rot);
    ellm_gguf_writer_set_f32(w, "llama.rope.freq_base", s->freq_base);
    ellm_gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-6f);
    if (s->rope_scale > 0) {
        ellm_gguf_writer_set_str(w, "llama.rope.scaling.type", "linear");
        ellm_gguf_writer_set_f32(w, "llama.rope.scaling.factor", s->rope_scale);
    }
    int hd = s->n_embd / s->n_head, kv = hd * s->n_head_kv;
    *blobs = calloc(16 + 9 * (size_t)s->n_layer, sizeof **blobs);
    int nb = 0;
    rm->embd = random_matrix(s->n_vocab, s->n_embd, 1.0f);
    add_matrix(w, "token_embd.weight", rm->embd, s->n_vocab, s->n_embd, s->wtype, &(*blobs)[nb++]);
    rm->out_norm = random_matrix(1, s->n_embd, 0.5f);
    for (int i = 0; i < s->n_embd; i++)
        rm->out_norm[i] += 1.0f; /* norm weights near 1, as trained models have */
    add_matrix(w, "output_norm.weight", rm->out_norm, 1, s->n_embd, ELLM_TYPE_F32, &(*blobs)[nb++]);
    if (s->tied) {
        rm->output = rm->embd;
    } else {
        rm->output = random_matrix(s->n_vocab, s->n_embd, 0.5f);
        add_matrix(w, "output.weight", rm->output, s->n_vocab, s->n_embd, s->wtype,
                   &(*blobs)[nb++]);
    }
    rm->factors = NULL;
    if (s->freq_factors) {
        rm->factors = malloc((size_t)(s->n_rot / 2) * sizeof(float));
        for (int i = 0; i < s->n_rot / 2; i++)
            rm->factors[i] = 1.0f + (float)i * 0.7f;
        add_matrix(w, "rope_freqs.weight", rm->factors, 1, s->n_rot / 2, ELLM_TYPE_F32,
                   &(*blobs)[nb++]);
    }
    rm->layers = calloc((size_t)s->n_layer, sizeof *rm->layers);
    for (int l = 0; l < s->n_layer; l++) {
        ref_layer *L = &rm->layers[l];
        char name[64];
#define MAT(field, tname, rows, cols, scale, type)                                                 \
    L->field = random_matrix(rows, cols, scale);                                                   \
    if (rows == 1)                                                                                 \
        for (int i_ = 0; i_ < (cols); i_++)                                                        \
            L->field[i_] += 1.0f;                                                                  \
    snprintf(name, sizeof name, "blk.%d." tname ".weight", l);                                     \
    add_matrix(w, name, L->field, rows, cols, type, &(*blobs)[nb++]);
        MAT(attn_norm, "attn_norm", 1, s->n_embd, 0.2f, ELLM_TYPE_F32)
        MAT(wq, "attn_q", s->n_embd, s->n_embd, 0.3f, s->wtype)
        MAT(wk, "attn_k", kv, s->n_embd, 0.3f, s->wtype)
        MAT(wv, "attn_v", kv, s->n_embd, 0.3f, s->wtype)
        MAT(wo, "attn_output", s->n_embd, s->n_embd, 0.3f, s->wtype)
        MAT(ffn_norm, "ffn_norm", 1, s->n_embd, 0.2f, ELLM_TYPE_F32)
        MAT(gate, "ffn_gate", s->n_ff, s->n_embd, 0.3f, s->wtype)
        MAT(up, "ffn_up", s->n_ff, s->n_embd, 0.3f, s->wtype)
        MAT(down, "ffn_down", s->n_embd, s->n_ff, 0.3f, s->wtype)
#undef MAT
    }
    const char *path = test_tmp_path(s->name);
    CHECK_MSG(ellm_gguf_writer_write(w, path) == EDGELLM_OK, "%s", edgellm_last_error());
    ellm_gguf_writer_free(w);
    *n_blobs = nb;
    return path;
}

/* ---- the naive reference: one token at a time, double precision, no KV tricks ---- */

/* Quantized weights are multiplied with activations rounded to Q8_0 blocks (the format their
 * kernels consume); the reference applies the same rounding to its input so that only the
 * forward pass itself is compared. */
static bool round_activations;

static void matvec(const float *m, const double *x, int rows, int cols, double *y)
{
    double *xr = malloc((size_t)cols * sizeof *xr);
    if (round_activations && cols % 32 == 0) {
        float *xf = calloc((size_t)cols, sizeof *xf);
        uint8_t *blocks = malloc((size_t)cols / 32 * 34);
        for (int c = 0; c < cols; c++)
            xf[c] = (float)x[c];
        ellm_quantize_row(ELLM_TYPE_Q8_0, xf, blocks, cols);
        ellm_dequantize_row(ELLM_TYPE_Q8_0, blocks, xf, cols);
        for (int c = 0; c < cols; c++)
            xr[c] = xf[c];
        free(xf);
        free(blocks);
    } else {
        memcpy(xr, x, (size_t)cols * sizeof *xr);
    }
    for (int r = 0; r < rows; r++) {
        double s = 0;
        for (int c = 0; c < cols; c++)
            s += (double)m[(size_t)r * cols + c] * xr[c];
        y[r] = s;
    }
    free(xr);
}

static void rmsnorm(const double *x, const float *w, int n, double *y)
{
    double ss = 0;
    for (int i = 0; i < n; i++)
        ss += x[i] * x[i];
    double scale = 1.0 / sqrt(ss / n + 1e-6);
    for (int i = 0; i < n; i++)
        y[i] = x[i] * scale * w[i];
}

/* Rotates adjacent pairs (2i, 2i+1) of the first n_rot dims of each head. */
static void rotate(const ref_model *rm, double *v, int n_heads, int pos)
{
    const spec *s = &rm->s;
    int hd = s->n_embd / s->n_head;
    for (int h = 0; h < n_heads; h++)
        for (int i = 0; i < s->n_rot / 2; i++) {
            double freq = pow(s->freq_base, -2.0 * i / s->n_rot);
            if (rm->factors)
                freq /= rm->factors[i];
            double p = s->rope_scale > 0 ? pos / s->rope_scale : pos;
            double a = p * freq, c = cos(a), sn = sin(a);
            double *x = v + h * hd + 2 * i;
            double x0 = x[0], x1 = x[1];
            x[0] = x0 * c - x1 * sn;
            x[1] = x0 * sn + x1 * c;
        }
}

static void reference_logits(const ref_model *rm, const int *tokens, int n, double *logits,
                             double *hidden)
{
    const spec *s = &rm->s;
    int d = s->n_embd, hd = d / s->n_head, kvd = hd * s->n_head_kv;
    double *K = calloc((size_t)s->n_layer * n * kvd, sizeof *K);
    double *Vc = calloc((size_t)s->n_layer * n * kvd, sizeof *Vc);
    double *x = malloc(d * sizeof *x), *xn = malloc(d * sizeof *xn), *q = malloc(d * sizeof *q);
    double *att = malloc(d * sizeof *att), *tmp = malloc(d * sizeof *tmp);
    double *g = malloc(s->n_ff * sizeof *g), *u = malloc(s->n_ff * sizeof *u);
    double *sc = malloc(n * sizeof *sc);
    for (int t = 0; t < n; t++) {
        for (int i = 0; i < d; i++)
            x[i] = rm->embd[(size_t)tokens[t] * d + i];
        for (int l = 0; l < s->n_layer; l++) {
            const ref_layer *L = &rm->layers[l];
            double *k = K + ((size_t)l * n + t) * kvd, *v = Vc + ((size_t)l * n + t) * kvd;
            rmsnorm(x, L->attn_norm, d, xn);
            matvec(L->wq, xn, d, d, q);
            matvec(L->wk, xn, kvd, d, k);
            matvec(L->wv, xn, kvd, d, v);
            rotate(rm, q, s->n_head, t);
            rotate(rm, k, s->n_head_kv, t);
            for (int h = 0; h < s->n_head; h++) {
                int kh = h / (s->n_head / s->n_head_kv);
                double mx = -1e300, sum = 0;
                for (int p = 0; p <= t; p++) {
                    const double *kp = K + ((size_t)l * n + p) * kvd + kh * hd;
                    double dot = 0;
                    for (int j = 0; j < hd; j++)
                        dot += q[h * hd + j] * kp[j];
                    sc[p] = dot / sqrt((double)hd);
                    mx = fmax(mx, sc[p]);
                }
                for (int p = 0; p <= t; p++)
                    sum += sc[p] = exp(sc[p] - mx);
                for (int j = 0; j < hd; j++) {
                    double o = 0;
                    for (int p = 0; p <= t; p++)
                        o += sc[p] / sum * Vc[((size_t)l * n + p) * kvd + kh * hd + j];
                    att[h * hd + j] = o;
                }
            }
            matvec(L->wo, att, d, d, tmp);
            for (int i = 0; i < d; i++)
                x[i] += tmp[i];
            rmsnorm(x, L->ffn_norm, d, xn);
            matvec(L->gate, xn, s->n_ff, d, g);
            matvec(L->up, xn, s->n_ff, d, u);
            for (int i = 0; i < s->n_ff; i++)
                g[i] = g[i] / (1.0 + exp(-g[i])) * u[i];
            double *gd = malloc(d * sizeof *gd);
            matvec(L->down, g, d, s->n_ff, gd);
            for (int i = 0; i < d; i++)
                x[i] += gd[i];
            free(gd);
        }
        rmsnorm(x, rm->out_norm, d, xn);
        if (hidden)
            memcpy(hidden + (size_t)t * d, xn, (size_t)d * sizeof *xn);
        matvec(rm->output, xn, s->n_vocab, d, logits + (size_t)t * s->n_vocab);
    }
    free(K), free(Vc), free(x), free(xn), free(q), free(att), free(tmp), free(g), free(u), free(sc);
}

static void free_ref(ref_model *rm)
{
    free(rm->embd);
    free(rm->out_norm);
    if (!rm->s.tied)
        free(rm->output);
    free(rm->factors);
    for (int l = 0; l < rm->s.n_layer; l++) {
        ref_layer *L = &rm->layers[l];
        free(L->attn_norm), free(L->wq), free(L->wk), free(L->wv), free(L->wo), free(L->ffn_norm),
            free(L->gate), free(L->up), free(L->down);
    }
    free(rm->layers);
}

static void run_case(const spec *s, double tol)
{
    ref_model rm;
    uint8_t **blobs;
    int nb;
    const char *path = write_model(s, &rm, &blobs, &nb);
    gguf_file *f = NULL;
    ellm_model *m = NULL;
    CHECK_MSG(ellm_gguf_open(path, &f) == EDGELLM_OK, "%s", edgellm_last_error());
    if (f)
        CHECK_MSG(ellm_model_create(f, &m) == EDGELLM_OK, "%s: %s", s->name, edgellm_last_error());
    if (m) {
        CHECK(ellm_model_hparams(m)->tied_embeddings == s->tied);
        enum { T = 12 };
        int tokens[T];
        for (int i = 0; i < T; i++)
            tokens[i] = (i * 7 + 3) % s->n_vocab;
        double *want = malloc((size_t)T * s->n_vocab * sizeof *want);
        round_activations = s->wtype == ELLM_TYPE_Q8_0 || s->wtype == ELLM_TYPE_Q4_0;
        double *want_hidden = malloc((size_t)T * s->n_embd * sizeof *want_hidden);
        reference_logits(&rm, tokens, T, want, want_hidden);
        float *got = malloc((size_t)T * s->n_vocab * sizeof *got);
        ellm_state_params sp = {
            .n_ctx = 32, .n_batch = T, .kv_type = EDGELLM_KV_F32, .n_threads = 2};
        ellm_state *st = NULL;
        ellm_threadpool *pool = NULL;
        ellm_threadpool_create(2, &pool);
        CHECK(ellm_state_create(m, &sp, &st) == EDGELLM_OK);
        CHECK(ellm_forward(m, st, pool, tokens, T, true, got) == EDGELLM_OK);
        double worst = 0, scale = 0;
        for (int i = 0; i < T * s->n_vocab; i++) {
            worst = fmax(worst, fabs(got[i] - want[i]));
            scale = fmax(scale, fabs(want[i]));
        }
        fprintf(stderr, "%s: max |logit - naive reference| = %.3g (largest logit %.3g)\n", s->name,
                worst, scale);
        if (tol < 0) /* relative tolerance */
            tol = -tol * scale;
        CHECK_MSG(worst < tol, "%s: logits off the naive reference by %g", s->name, worst);
        /* The final normed hidden states (what embeddings pool) against the reference's. */
        float *hidden = malloc((size_t)T * s->n_embd * sizeof *hidden);
        ellm_state_truncate(st, 0);
        ellm_forward_seq seq = {st, tokens, T, false, true};
        CHECK(ellm_forward_batch(m, st, pool, &seq, 1, hidden) == EDGELLM_OK);
        double worst_h = 0, scale_h = 0;
        for (int i = 0; i < T * s->n_embd; i++) {
            worst_h = fmax(worst_h, fabs(hidden[i] - want_hidden[i]));
            scale_h = fmax(scale_h, fabs(want_hidden[i]));
        }
        fprintf(stderr, "%s: max |hidden - naive reference| = %.3g (largest %.3g)\n", s->name,
                worst_h, scale_h);
        CHECK_MSG(worst_h <= 1e-5 * scale_h,
                  "%s: hidden states off the naive reference by %g (largest %g)", s->name, worst_h,
                  scale_h);
        free(hidden);
        free(want_hidden);
        ellm_state_free(st);
        /* The F16 cache (default) rounds the query, keys, values and the running output to
         * half precision: within 1% of the largest logit. */
        sp.kv_type = EDGELLM_KV_F16;
        st = NULL;
        CHECK(ellm_state_create(m, &sp, &st) == EDGELLM_OK);
        CHECK(ellm_forward(m, st, pool, tokens, T, true, got) == EDGELLM_OK);
        double worst16 = 0;
        for (int i = 0; i < T * s->n_vocab; i++)
            worst16 = fmax(worst16, fabs(got[i] - want[i]));
        fprintf(stderr, "%s: F16 cache: max |logit - naive reference| = %.3g\n", s->name, worst16);
        CHECK_MSG(worst16 < 0.01 * scale + tol, "%s: F16-cache logits off by %g", s->name, worst16);
        ellm_state_free(st);
        ellm_threadpool_free(pool);
        free(want);
        free(got);
    }
    ellm_model_free(m);
    ellm_gguf_close(f);
    for (int i = 0; i < nb; i++)
        free(blobs[i]);
    free(blobs);
    free_ref(&rm);
}

int main(void)
{
    spec cases[] = {
        {"ref-gqa-freqs-scaled.gguf", 64, 2, 4, 2, 96, 50, 8, 10000.0f, 4.0f, true, true,
         ELLM_TYPE_F32},
        {"ref-mha-separate.gguf", 64, 2, 4, 4, 128, 70, 16, 500000.0f, 0.0f, false, false,
         ELLM_TYPE_F32},
        {"ref-gqa-f16.gguf", 64, 1, 4, 1, 64, 40, 16, 10000.0f, 2.0f, true, false, ELLM_TYPE_F16},
        /* Head size 64: the vectorized F16-cache attention path. */
        {"ref-head64.gguf", 128, 2, 2, 1, 128, 60, 64, 10000.0f, 0.0f, true, true, ELLM_TYPE_F32},
        /* 128 rotated pairs a head: RoPE's angles in two passes of 64. */
        {"ref-rope-passes.gguf", 512, 1, 2, 1, 64, 40, 256, 10000.0f, 0.0f, true, true,
         ELLM_TYPE_F32},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(&cases[i], 1e-4);
    /* Quantized weights: the reference uses the dequantized weights, so what remains is the
     * float rounding — except that a float-vs-double difference occasionally moves an activation
 * across a rounding boundary of the 8-bit format, a one-step change that later layers amplify
 * (measured up to 1.3% of the largest logit on these random models), hence 5%. */
    spec q8 = {"ref-q8.gguf", 64, 2, 4, 2, 96, 40, 16, 10000.0f, 0.0f, false, true, ELLM_TYPE_Q8_0};
    ellm_quant_force_scalar(true); /* the portable kernels, then the CPU's own */
    run_case(&q8, -0.05);
    ellm_quant_force_scalar(false);
    run_case(&q8, -0.05);
    spec q4 = {"ref-q4.gguf", 64, 2, 4, 2, 96, 40, 16, 10000.0f, 0.0f, false, true, ELLM_TYPE_Q4_0};
    run_case(&q4, -0.05);
    return test_finish("test_model_reference");
}
