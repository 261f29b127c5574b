#define _POSIX_C_SOURCE 200809L
/* Importance matrices: collection through the forward pass's input observer, the GGUF file, and
 * its validation against a model (imatrix.h describes the format). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mapped_file.h"
#include "core/status.h"
#include "model/model.h"
#include "optimise/calib.h"
#include "optimise/imatrix.h"
#include "quant/quant.h"

typedef struct imatrix_entry {
    char name[96];
    int64_t n_cols;
    float *sum2;       /* per column */
    float *mean;       /* sum2 / count */
    float *sum;        /* per column, sum of the activations; NULL when the file has none */
    float *mean_value; /* sum / count, or NULL */
    float count;       /* rows seen */
    int k;             /* covariance directions; 0 when the file has none */
    float *vecs;       /* k unit eigenvectors of n_cols values, leading first */
    float *vals;       /* k eigenvalues of the rows' scatter sum_rows (x - mu)(x - mu)^T */
    float *dirs;       /* k vectors: vecs times sqrt(vals / count) */
} imatrix_entry;

struct ellm_imatrix {
    imatrix_entry *entries;
    int n_entries;
    char arch[32];
    uint32_t n_layer, n_embd, n_vocab;
    uint32_t chunk_count, chunk_size;
    char *dataset;
};

/* ---------------------------------------------------------------- collection */

#define N_INPUTS 5 /* the ellm_matrix_input values */

/* Inputs up to this width keep their whole scatter matrix sum x x^T (n^2 doubles, an exact
 * eigendecomposition at the end); wider ones a sketch of it, the scatter matrix times a random
 * n x l matrix (n l doubles, its leading eigenvectors by the Nystrom method). */
#define EXACT_MAX_COLS 256

typedef struct accumulator {
    double *sum2, *sum;
    int64_t n_cols;
    double rows;
    int sketch_cols; /* l; 0 for the exact scatter matrix */
    double *scatter; /* n x n, or n x l: sum over rows of x (x^T omega); NULL without directions */
    float *omega;    /* n x l Gaussian test matrix of the sketch */
} accumulator;

typedef struct collector {
    accumulator *acc; /* (n_layer + 1) * N_INPUTS; the head is in the last layer slot */
    int32_t n_layer;
    int rank;      /* covariance directions to keep per input up to EXACT_MAX_COLS wide */
    int wide_rank; /* and per wider (sketched) input */
    bool failed;
} collector;

/* A fixed-seed Gaussian test matrix (Box-Muller on splitmix64): the same file for the same run. */
static void gaussian_fill(float *v, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i += 2) {
        double u[2];
        for (int k = 0; k < 2; k++) {
            uint64_t z = (seed += 0x9e3779b97f4a7c15ull);
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
            z ^= z >> 31;
            u[k] = ((double)(z >> 11) + 0.5) / 9007199254740992.0;
        }
        double rad = sqrt(-2 * log(u[0])), ang = 6.283185307179586 * u[1];
        v[i] = (float)(rad * cos(ang));
        if (i + 1 < n)
            v[i + 1] = (float)(rad * sin(ang));
    }
}

static bool start_scatter(accumulator *a, int rank, uint64_t seed)
{
    int64_t n = a->n_cols;
    if (n <= EXACT_MAX_COLS) {
        a->scatter = calloc((size_t)(n * n), sizeof *a->scatter);
        return a->scatter != NULL;
    }
    a->sketch_cols = (int)(2 * rank + 8 < n ? 2 * rank + 8 : n);
    a->scatter = calloc((size_t)n * (size_t)a->sketch_cols, sizeof *a->scatter);
    a->omega = malloc((size_t)n * (size_t)a->sketch_cols * sizeof *a->omega);
    if (a->omega)
        gaussian_fill(a->omega, (size_t)n * (size_t)a->sketch_cols, seed);
    return a->scatter && a->omega;
}

static void add_to_scatter(accumulator *a, const float *row)
{
    int64_t n = a->n_cols;
    if (!a->sketch_cols) {
        for (int64_t i = 0; i < n; i++) {
            double xi = row[i], *s = a->scatter + i * n;
            for (int64_t j = i; j < n; j++)
                s[j] += xi * row[j];
        }
        return;
    }
    int l = a->sketch_cols;
    double p[2 * ELLM_OBJECTIVE_MAX_RANK + 8] = {0};
    for (int64_t j = 0; j < n; j++) {
        const float *om = a->omega + j * l;
        for (int c = 0; c < l; c++)
            p[c] += (double)row[j] * om[c];
    }
    for (int64_t j = 0; j < n; j++) {
        double *s = a->scatter + j * l, xj = row[j];
        for (int c = 0; c < l; c++)
            s[c] += xj * p[c];
    }
}

static void observe_input(void *user, int32_t layer, ellm_matrix_input which, const float *x,
                          int32_t n_rows, int64_t n_cols)
{
    collector *c = user;
    int32_t slot = layer < 0 ? c->n_layer : layer;
    accumulator *a = &c->acc[(size_t)slot * N_INPUTS + which];
    if (!a->sum2) {
        a->sum2 = calloc((size_t)n_cols, sizeof *a->sum2);
        a->sum = calloc((size_t)n_cols, sizeof *a->sum);
        a->n_cols = n_cols;
        int rank = n_cols <= EXACT_MAX_COLS ? c->rank : c->wide_rank;
        if (!a->sum2 || !a->sum ||
            (rank > 0 && !start_scatter(a, rank, (uint64_t)(slot * N_INPUTS + which)))) {
            c->failed = true;
            return;
        }
    }
    for (int32_t r = 0; r < n_rows; r++) {
        const float *row = x + (size_t)r * (size_t)n_cols;
        for (int64_t j = 0; j < n_cols; j++) {
            a->sum2[j] += (double)row[j] * row[j];
            a->sum[j] += row[j];
        }
        if (a->scatter)
            add_to_scatter(a, row);
    }
    a->rows += n_rows;
}

/* Eigenvalues (ev) and unit eigenvectors (columns of v, n x n) of the symmetric matrix a, which
 * is destroyed: cyclic Jacobi rotations until the off-diagonal part is negligible. */
static void jacobi_eigen(double *a, int64_t n, double *v, double *ev)
{
    for (int64_t i = 0; i < n * n; i++)
        v[i] = i % (n + 1) == 0;
    for (int sweep = 0; sweep < 60; sweep++) {
        double off = 0, all = 0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++) {
                all += a[i * n + j] * a[i * n + j];
                if (i != j)
                    off += a[i * n + j] * a[i * n + j];
            }
        if (off <= 1e-24 * all)
            break;
        for (int64_t p = 0; p < n; p++)
            for (int64_t q = p + 1; q < n; q++) {
                double apq = a[p * n + q];
                if (apq == 0)
                    continue;
                double theta = (a[q * n + q] - a[p * n + p]) / (2 * apq);
                double t = (theta >= 0 ? 1 : -1) / (fabs(theta) + sqrt(theta * theta + 1));
                double c = 1 / sqrt(t * t + 1), sn = t * c;
                for (int64_t k = 0; k < n; k++) { /* columns p and q */
                    double akp = a[k * n + p], akq = a[k * n + q];
                    a[k * n + p] = c * akp - sn * akq;
                    a[k * n + q] = sn * akp + c * akq;
                }
                for (int64_t k = 0; k < n; k++) { /* rows p and q */
                    double apk = a[p * n + k], aqk = a[q * n + k];
                    a[p * n + k] = c * apk - sn * aqk;
                    a[q * n + k] = sn * apk + c * aqk;
                }
                for (int64_t k = 0; k < n; k++) {
                    double vkp = v[k * n + p], vkq = v[k * n + q];
                    v[k * n + p] = c * vkp - sn * vkq;
                    v[k * n + q] = sn * vkp + c * vkq;
                }
            }
    }
    for (int64_t i = 0; i < n; i++)
        ev[i] = a[i * n + i];
}

/* The k largest of ev (m of them) with their vectors (column c of vec, m columns of n rows),
 * into vecs (k x n) and vals (times scale), leading first. */
static void keep_leading(const double *ev, const double *vec, int64_t n, int64_t m, int k,
                         double scale, float *vecs, float *vals)
{
    bool *used = calloc((size_t)m, sizeof *used);
    for (int r = 0; r < k; r++) {
        int64_t best = -1;
        for (int64_t c = 0; c < m; c++)
            if (!(used && used[c]) && (best < 0 || ev[c] > ev[best]))
                best = c;
        if (used)
            used[best] = true;
        vals[r] = (float)(fmax(ev[best], 0) * scale);
        double norm = 0;
        for (int64_t i = 0; i < n; i++)
            norm += vec[i * m + best] * vec[i * m + best];
        norm = norm > 0 ? 1 / sqrt(norm) : 0;
        for (int64_t i = 0; i < n; i++)
            vecs[(int64_t)r * n + i] = (float)(vec[i * m + best] * norm);
    }
    free(used);
}

/* The exact path: the covariance S / N - mu mu^T and its eigendecomposition. */
static bool exact_directions(const accumulator *a, int k, float *vecs, float *vals)
{
    int64_t n = a->n_cols;
    double *c = malloc((size_t)(n * n) * sizeof *c), *v = malloc((size_t)(n * n) * sizeof *v);
    double *ev = malloc((size_t)n * sizeof *ev);
    bool ok = c && v && ev;
    for (int64_t i = 0; ok && i < n; i++)
        for (int64_t j = i; j < n; j++)
            c[i * n + j] = c[j * n + i] = a->scatter[i * n + j] / a->rows -
                                          a->sum[i] / a->rows * (a->sum[j] / a->rows);
    if (ok) {
        jacobi_eigen(c, n, v, ev);
        keep_leading(ev, v, n, n, k, a->rows, vecs, vals);
    }
    free(c);
    free(v);
    free(ev);
    return ok;
}

/* The sketch path, a fixed-rank Nystrom approximation of the covariance A from Y = A omega:
 * A ~ Y (omega^T Y)^-1 Y^T = E E^T with E = Y L^-T (omega^T Y = L L^T), whose eigenvectors are
 * E's left singular vectors; a small shift nu I keeps omega^T Y positive definite and is taken
 * off the eigenvalues again (Tropp, Yurtsever, Udell and Cevher 2017). */
static bool sketch_directions(const accumulator *a, int k, float *vecs, float *vals)
{
    int64_t n = a->n_cols;
    int l = a->sketch_cols;
    double *y = malloc((size_t)n * (size_t)l * sizeof *y), *e = malloc((size_t)n * l * sizeof *e);
    double *b = malloc((size_t)(l * l) * sizeof *b), *w = malloc((size_t)(l * l) * sizeof *w);
    double *ev = malloc((size_t)l * sizeof *ev), mo[2 * ELLM_OBJECTIVE_MAX_RANK + 8] = {0};
    bool ok = y && e && b && w && ev;
    double norm_y = 0, norm_o = 0;
    for (int64_t j = 0; ok && j < n; j++)
        for (int c = 0; c < l; c++)
            mo[c] += a->sum[j] / a->rows * a->omega[j * l + c];
    for (int64_t j = 0; ok && j < n; j++)
        for (int c = 0; c < l; c++) {
            y[j * l + c] = a->scatter[j * l + c] / a->rows - a->sum[j] / a->rows * mo[c];
            norm_y += y[j * l + c] * y[j * l + c];
            norm_o += (double)a->omega[j * l + c] * a->omega[j * l + c];
        }
    double nu = ok && norm_o > 0 ? 1e-7 * sqrt(norm_y / norm_o) : 0;
    bool factored = false;
    for (int attempt = 0; ok && !factored && attempt<8; attempt++, nu = nu> 0 ? nu * 10 : 1e-30) {
        for (int64_t j = 0; j < n; j++)
            for (int c = 0; c < l; c++)
                e[j * l + c] = y[j * l + c] + nu * a->omega[j * l + c];
        for (int r = 0; r < l; r++)
            for (int c = 0; c <= r; c++) {
                double t = 0;
                for (int64_t j = 0; j < n; j++)
                    t += a->omega[j * l + r] * e[j * l + c] + a->omega[j * l + c] * e[j * l + r];
                b[r * l + c] = t / 2;
            }
        factored = true; /* Cholesky, lower triangle of b */
        for (int r = 0; factored && r < l; r++)
            for (int c = 0; c <= r; c++) {
                double t = b[r * l + c];
                for (int m = 0; m < c; m++)
                    t -= b[r * l + m] * b[c * l + m];
                if (r == c) {
                    factored = t > 0;
                    b[r * l + r] = factored ? sqrt(t) : 0;
                } else {
                    b[r * l + c] = t / b[c * l + c];
                }
            }
        if (!factored)
            continue;
        for (int64_t j = 0; j < n; j++) /* E L^T = Y + nu omega, row by row */
            for (int c = 0; c < l; c++) {
                double t = e[j * l + c];
                for (int m = 0; m < c; m++)
                    t -= b[c * l + m] * e[j * l + m];
                e[j * l + c] = t / b[c * l + c];
            }
    }
    if (ok && factored) {
        for (int r = 0; r < l; r++) /* E^T E = W diag(s^2) W^T */
            for (int c = 0; c <= r; c++) {
                double t = 0;
                for (int64_t j = 0; j < n; j++)
                    t += e[j * l + r] * e[j * l + c];
                b[r * l + c] = b[c * l + r] = t;
            }
        jacobi_eigen(b, l, w, ev);
        for (int64_t j = 0; j < n; j++) { /* E W: the eigenvectors, unnormalised */
            double row[2 * ELLM_OBJECTIVE_MAX_RANK + 8];
            for (int c = 0; c < l; c++) {
                row[c] = 0;
                for (int m = 0; m < l; m++)
                    row[c] += e[j * l + m] * w[m * l + c];
            }
            memcpy(e + j * l, row, (size_t)l * sizeof *row);
        }
        for (int c = 0; c < l; c++)
            ev[c] -= nu;
        keep_leading(ev, e, n, l, k, a->rows, vecs, vals);
    } else if (ok) { /* never positive definite (an input that is all zeros): no directions */
        memset(vecs, 0, (size_t)k * (size_t)n * sizeof *vecs);
        memset(vals, 0, (size_t)k * sizeof *vals);
    }
    free(y);
    free(e);
    free(b);
    free(w);
    free(ev);
    return ok;
}

/* Keeps k covariance directions (vecs k x n, vals the scatter sum's eigenvalues) in entry e. */
static bool set_directions(imatrix_entry *e, int k, const float *vecs, const float *vals)
{
    e->vecs = malloc((size_t)k * (size_t)e->n_cols * sizeof *e->vecs);
    e->dirs = malloc((size_t)k * (size_t)e->n_cols * sizeof *e->dirs);
    e->vals = malloc((size_t)k * sizeof *e->vals);
    if (!e->vecs || !e->dirs || !e->vals)
        return false;
    e->k = k;
    memcpy(e->vecs, vecs, (size_t)k * (size_t)e->n_cols * sizeof *vecs);
    memcpy(e->vals, vals, (size_t)k * sizeof *vals);
    for (int r = 0; r < k; r++) {
        float root = sqrtf(vals[r] / e->count);
        for (int64_t j = 0; j < e->n_cols; j++)
            e->dirs[(int64_t)r * e->n_cols + j] = vecs[(int64_t)r * e->n_cols + j] * root;
    }
    return true;
}

/* The weights that multiply each input, by their GGUF names. */
static const char *const input_weights[N_INPUTS][4] = {
    [ELLM_INPUT_ATTN] = {"attn_q", "attn_k", "attn_v", "attn_qkv"},
    [ELLM_INPUT_ATTN_OUT] = {"attn_output"},
    [ELLM_INPUT_FFN] = {"ffn_gate", "ffn_up"},
    [ELLM_INPUT_FFN_DOWN] = {"ffn_down"},
    [ELLM_INPUT_HEAD] = {"output"},
};

/* sum may be NULL (a file without the activation sums). */
static edgellm_status add_entry(ellm_imatrix *im, const char *name, int64_t n_cols,
                                const double *sum2, const double *sum, double rows)
{
    imatrix_entry *g = realloc(im->entries, (size_t)(im->n_entries + 1) * sizeof *g);
    if (!g)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the importance matrix");
    im->entries = g;
    imatrix_entry *e = &g[im->n_entries];
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", name);
    e->n_cols = n_cols;
    e->count = (float)rows;
    e->sum2 = malloc((size_t)n_cols * sizeof *e->sum2);
    e->mean = malloc((size_t)n_cols * sizeof *e->mean);
    if (sum) {
        e->sum = malloc((size_t)n_cols * sizeof *e->sum);
        e->mean_value = malloc((size_t)n_cols * sizeof *e->mean_value);
    }
    if (!e->sum2 || !e->mean || (sum && (!e->sum || !e->mean_value))) {
        free(e->sum2);
        free(e->mean);
        free(e->sum);
        free(e->mean_value);
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the importance matrix");
    }
    for (int64_t j = 0; j < n_cols; j++) {
        e->sum2[j] = (float)sum2[j];
        e->mean[j] = rows > 0 ? (float)(sum2[j] / rows) : 0;
        if (sum) {
            e->sum[j] = (float)sum[j];
            e->mean_value[j] = rows > 0 ? (float)(sum[j] / rows) : 0;
        }
    }
    im->n_entries++;
    return EDGELLM_OK;
}

/* One entry per weight of the file that multiplies an observed input. */
static edgellm_status entries_from(ellm_imatrix *im, const collector *c, const gguf_file *file)
{
    for (int32_t slot = 0; slot <= c->n_layer; slot++)
        for (int k = 0; k < N_INPUTS; k++) {
            const accumulator *a = &c->acc[(size_t)slot * N_INPUTS + k];
            int want = a->sketch_cols ? c->wide_rank : c->rank;
            int rank = a->scatter ? (int)(want < a->n_cols ? want : a->n_cols) : 0;
            if (a->sketch_cols && rank > a->sketch_cols)
                rank = a->sketch_cols;
            float *vecs = NULL, vals[ELLM_OBJECTIVE_MAX_RANK];
            if (rank > 0) {
                vecs = malloc((size_t)rank * (size_t)a->n_cols * sizeof *vecs);
                if (!vecs || !(a->sketch_cols ? sketch_directions(a, rank, vecs, vals)
                                              : exact_directions(a, rank, vecs, vals))) {
                    free(vecs);
                    return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY,
                                     "no memory for the covariance's directions");
                }
            }
            for (int n = 0; a->sum2 && n < 4 && input_weights[k][n]; n++) {
                char name[96];
                if (slot == c->n_layer)
                    snprintf(name, sizeof name, "%s.weight", input_weights[k][n]);
                else
                    snprintf(name, sizeof name, "blk.%d.%s.weight", slot, input_weights[k][n]);
                const gguf_tensor_info *t = ellm_gguf_find_tensor(file, name);
                if (!t || (int64_t)t->ne[0] != a->n_cols)
                    continue;
                /* A broken weight upstream wrote a file every later load refused. */
                for (int64_t j = 0; j < a->n_cols; j++)
                    if (!isfinite(a->sum2[j])) {
                        free(vecs);
                        return ellm_fail(EDGELLM_ERR_FORMAT,
                                         "the activations at the input of '%s' hold NaN or "
                                         "infinite values: a weight of the model is broken "
                                         "(re-convert or re-download it); nothing was written",
                                         name);
                    }
                edgellm_status st = add_entry(im, name, a->n_cols, a->sum2, a->sum, a->rows);
                if (st == EDGELLM_OK && rank > 0 &&
                    !set_directions(&im->entries[im->n_entries - 1], rank, vecs, vals))
                    st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory");
                if (st != EDGELLM_OK) {
                    free(vecs);
                    return st;
                }
            }
            free(vecs);
        }
    return EDGELLM_OK;
}

edgellm_status ellm_imatrix_collect(const char *model_path, const edgellm_token *ids, int32_t n_ids,
                                    const ellm_imatrix_params *p, ellm_imatrix **out)
{
    *out = NULL;
    ellm_calib_run run;
    edgellm_status st = ellm_calib_open(model_path, ids, n_ids, p->n_ctx, p->n_chunks, p->n_threads,
                                        &run);
    if (st != EDGELLM_OK)
        return st;
    const ellm_hparams *hp = ellm_model_hparams(run.model);
    ellm_imatrix *im = calloc(1, sizeof *im);
    collector c = {0};
    c.n_layer = hp->n_layer;
    c.rank = p->rank == ELLM_IMATRIX_RANK_AUTO ? ELLM_IMATRIX_MAX_RANK
             : p->rank < 0                     ? 0
             : p->rank > ELLM_IMATRIX_MAX_RANK ? ELLM_IMATRIX_MAX_RANK
                                               : p->rank;
    c.wide_rank = p->rank == ELLM_IMATRIX_RANK_AUTO ? 8 : c.rank;
    c.acc = calloc((size_t)(hp->n_layer + 1) * N_INPUTS, sizeof *c.acc);
    if (!im || !c.acc)
        st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the activation statistics");
    if (st == EDGELLM_OK)
        st = ellm_calib_pass(&run, observe_input, &c, true, &c.failed,
                             "no memory for the statistics", p->on_progress, p->user);
    if (st == EDGELLM_OK) {
        snprintf(im->arch, sizeof im->arch, "%s", hp->arch);
        im->n_layer = (uint32_t)hp->n_layer;
        im->n_embd = (uint32_t)hp->n_embd;
        im->n_vocab = (uint32_t)hp->n_vocab;
        im->chunk_count = (uint32_t)run.n_chunks;
        im->chunk_size = (uint32_t)p->n_ctx;
        im->dataset = strdup(p->dataset ? p->dataset : "");
        st = im->dataset ? entries_from(im, &c, run.file)
                         : ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory");
    }
    if (c.acc)
        for (size_t i = 0; i < (size_t)(c.n_layer + 1) * N_INPUTS; i++) {
            free(c.acc[i].sum2);
            free(c.acc[i].sum);
            free(c.acc[i].scatter);
            free(c.acc[i].omega);
        }
    free(c.acc);
    ellm_calib_close(&run);
    if (st != EDGELLM_OK) {
        ellm_imatrix_free(im);
        return st;
    }
    *out = im;
    return EDGELLM_OK;
}

/* ---------------------------------------------------------------- file */

edgellm_status ellm_imatrix_write(const ellm_imatrix *im, const char *path)
{
    gguf_writer *w = ellm_gguf_writer_create();
    if (!w)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory");
    const char *datasets[1] = {im->dataset ? im->dataset : ""};
    edgellm_status st = ellm_gguf_writer_set_str(w, "general.type", "imatrix");
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_set_u32(w, "imatrix.chunk_count", im->chunk_count);
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_set_u32(w, "imatrix.chunk_size", im->chunk_size);
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_set_str_array(w, "imatrix.datasets", datasets, 1);
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_set_str(w, "imatrix.model.architecture", im->arch);
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_set_u32(w, "imatrix.model.n_layer", im->n_layer);
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_set_u32(w, "imatrix.model.n_embd", im->n_embd);
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_set_u32(w, "imatrix.model.n_vocab", im->n_vocab);
    for (int i = 0; st == EDGELLM_OK && i < im->n_entries; i++) {
        const imatrix_entry *e = &im->entries[i];
        char name[128];
        uint64_t ne_sum[2] = {(uint64_t)e->n_cols, 1}, ne_count[2] = {1, 1};
        snprintf(name, sizeof name, "%s.in_sum2", e->name);
        st = ellm_gguf_writer_add_tensor(w, name, ELLM_TYPE_F32, 2, ne_sum, e->sum2);
        snprintf(name, sizeof name, "%s.counts", e->name);
        if (st == EDGELLM_OK)
            st = ellm_gguf_writer_add_tensor(w, name, ELLM_TYPE_F32, 2, ne_count, &e->count);
        snprintf(name, sizeof name, "%s.in_sum", e->name);
        if (st == EDGELLM_OK && e->sum)
            st = ellm_gguf_writer_add_tensor(w, name, ELLM_TYPE_F32, 2, ne_sum, e->sum);
        uint64_t ne_vecs[2] = {(uint64_t)e->n_cols, (uint64_t)e->k},
                 ne_vals[2] = {(uint64_t)e->k, 1};
        snprintf(name, sizeof name, "%s.in_cov_vecs", e->name);
        if (st == EDGELLM_OK && e->k > 0)
            st = ellm_gguf_writer_add_tensor(w, name, ELLM_TYPE_F32, 2, ne_vecs, e->vecs);
        snprintf(name, sizeof name, "%s.in_cov_vals", e->name);
        if (st == EDGELLM_OK && e->k > 0)
            st = ellm_gguf_writer_add_tensor(w, name, ELLM_TYPE_F32, 2, ne_vals, e->vals);
    }
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_write(w, path);
    ellm_gguf_writer_free(w);
    return st;
}

static bool has_suffix(gguf_str s, const char *suffix, size_t *stem)
{
    size_t n = strlen(suffix);
    if (s.len <= n || memcmp(s.data + s.len - n, suffix, n) != 0)
        return false;
    *stem = s.len - n;
    return true;
}

/* The model keys the file records must match the model's where both have them. */
static edgellm_status check_model_key(const gguf_file *f, const char *path, const char *key,
                                      const gguf_file *model, const char *model_key)
{
    uint32_t have = 0, want = 0;
    if (ellm_gguf_get_u32(f, key, &have) != EDGELLM_OK ||
        ellm_gguf_get_u32(model, model_key, &want) != EDGELLM_OK)
        return EDGELLM_OK;
    if (have != want)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "'%s' was computed for another model (%s %u, this model has %u); compute "
                         "it for this model with 'edgellm imatrix'",
                         path, key + strlen("imatrix.model."), have, want);
    return EDGELLM_OK;
}

/* The optional "W.in_sum" tensor (the activations' sums, which older files and other runtimes'
 * do not have): *out stays NULL without it. */
static edgellm_status read_value_sums(const gguf_file *f, const char *path, const char *name,
                                      uint64_t n_cols, double **out)
{
    char sum_name[128];
    snprintf(sum_name, sizeof sum_name, "%s.in_sum", name);
    const gguf_tensor_info *t = ellm_gguf_find_tensor(f, sum_name);
    if (!t)
        return EDGELLM_OK;
    if (t->type != ELLM_TYPE_F32 || t->ne[0] != n_cols || t->n_elements != n_cols)
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "'%s': '%s' must be F32 with one value per input column (%llu); "
                         "recompute the file with 'edgellm imatrix'",
                         path, sum_name, (unsigned long long)n_cols);
    double *sums = malloc((size_t)n_cols * sizeof *sums);
    if (!sums)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory");
    for (uint64_t j = 0; j < n_cols; j++) {
        float v;
        memcpy(&v, (const uint8_t *)t->data + 4 * j, sizeof v);
        if (!isfinite(v)) {
            free(sums);
            return ellm_fail(EDGELLM_ERR_FORMAT, "'%s': '%s' column %llu is %g; it must be finite",
                             path, sum_name, (unsigned long long)j, (double)v);
        }
        sums[j] = v;
    }
    *out = sums;
    return EDGELLM_OK;
}

/* The optional "W.in_cov_vecs" [n_cols, k] and "W.in_cov_vals" [k, 1] (older files and other
 * runtimes' have neither): both or none, k from 1 to ELLM_IMATRIX_MAX_RANK, finite, the values
 * non-negative. */
static edgellm_status read_directions(const gguf_file *f, const char *path, imatrix_entry *e)
{
    char vecs_name[128], vals_name[128];
    snprintf(vecs_name, sizeof vecs_name, "%s.in_cov_vecs", e->name);
    snprintf(vals_name, sizeof vals_name, "%s.in_cov_vals", e->name);
    const gguf_tensor_info *tv = ellm_gguf_find_tensor(f, vecs_name);
    const gguf_tensor_info *tl = ellm_gguf_find_tensor(f, vals_name);
    if (!tv && !tl)
        return EDGELLM_OK;
    uint64_t k = tl ? tl->ne[0] : 0, n = (uint64_t)e->n_cols;
    if (!tv || !tl || tv->type != ELLM_TYPE_F32 || tl->type != ELLM_TYPE_F32 || k < 1 ||
        k > ELLM_IMATRIX_MAX_RANK || tl->n_elements != k || tv->n_dims != 2 || tv->ne[0] != n ||
        tv->ne[1] != k)
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "'%s': '%s' and '%s' must both be F32, [%llu, k] and [k, 1] with k from "
                         "1 to %d; recompute the file with 'edgellm imatrix'",
                         path, vecs_name, vals_name, (unsigned long long)n, ELLM_IMATRIX_MAX_RANK);
    float *vecs = malloc((size_t)(n * k) * sizeof *vecs), vals[ELLM_IMATRIX_MAX_RANK];
    if (!vecs)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory");
    memcpy(vecs, tv->data, (size_t)(n * k) * sizeof *vecs);
    memcpy(vals, tl->data, (size_t)k * sizeof *vals);
    const char *bad = NULL;
    for (uint64_t i = 0; !bad && i < n * k; i++)
        if (!isfinite(vecs[i]))
            bad = vecs_name;
    for (uint64_t i = 0; !bad && i < k; i++)
        if (!(vals[i] >= 0) || !isfinite(vals[i]))
            bad = vals_name;
    edgellm_status st = EDGELLM_OK;
    if (bad)
        st = ellm_fail(EDGELLM_ERR_FORMAT,
                       "'%s': '%s' holds a value that is not finite (or a negative eigenvalue)",
                       path, bad);
    /* The objective takes the directions as unit vectors and the eigenvalues as parts of the
     * scatter about the mean, whose trace the column sums of squares bound: a direction of
     * length 3e38 or eigenvalues of 3e38 were taken, and IQ4_NL's KL rose 16-fold and 4-fold. */
    double trace = 0, val_sum = 0;
    for (int64_t j = 0; j < e->n_cols; j++)
        trace += e->sum2[j];
    for (uint64_t r = 0; st == EDGELLM_OK && r < k; r++) {
        double len2 = 0;
        for (uint64_t j = 0; j < n; j++)
            len2 += (double)vecs[r * n + j] * vecs[r * n + j];
        val_sum += vals[r];
        if (!(fabs(len2 - 1) <= 1e-3))
            st = ellm_fail(EDGELLM_ERR_FORMAT,
                           "'%s': '%s' direction %llu has length %g, not 1; recompute the file "
                           "with 'edgellm imatrix'",
                           path, vecs_name, (unsigned long long)r, sqrt(len2));
    }
    if (st == EDGELLM_OK && val_sum > trace * (1 + 1e-3) + 1e-30)
        st = ellm_fail(EDGELLM_ERR_FORMAT,
                       "'%s': '%s' sum to %g, more than the sums of squares (%g) allow; "
                       "recompute the file with 'edgellm imatrix'",
                       path, vals_name, val_sum, trace);
    if (st == EDGELLM_OK && !set_directions(e, (int)k, vecs, vals))
        st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory");
    free(vecs);
    return st;
}

static edgellm_status load_entries(ellm_imatrix *im, const gguf_file *f, const char *path,
                                   const gguf_file *model)
{
    for (uint64_t i = 0; i < ellm_gguf_tensor_count(f); i++) {
        const gguf_tensor_info *t = ellm_gguf_tensor_at(f, i);
        size_t stem;
        if (!has_suffix(t->name, ".in_sum2", &stem))
            continue;
        if (stem >= 96)
            return ellm_fail(EDGELLM_ERR_FORMAT, "'%s': tensor name '%.*s' is too long", path,
                             (int)t->name.len, t->name.data);
        char name[96], count_name[128];
        memcpy(name, t->name.data, stem);
        name[stem] = 0;
        snprintf(count_name, sizeof count_name, "%s.counts", name);
        const gguf_tensor_info *ct = ellm_gguf_find_tensor(f, count_name);
        if (t->type != ELLM_TYPE_F32 || !ct || ct->type != ELLM_TYPE_F32 || ct->n_elements < 1)
            return ellm_fail(EDGELLM_ERR_FORMAT,
                             "'%s': entry '%s' needs F32 tensors '%s.in_sum2' and '%s.counts'; "
                             "the file is not an importance matrix edgellm can read",
                             path, name, name, name);
        /* Several stacked matrices (experts) would have ne[1] > 1; dense models have one. */
        if (t->ne[1] != 1 || ct->n_elements != 1)
            return ellm_fail(EDGELLM_ERR_UNSUPPORTED,
                             "'%s': entry '%s' holds %llu matrices; only one per weight is "
                             "supported",
                             path, name, (unsigned long long)t->ne[1]);
        const gguf_tensor_info *mt = ellm_gguf_find_tensor(model, name);
        if (!mt || mt->n_dims < 2)
            return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                             "'%s' has statistics for '%s', which this model does not have: was "
                             "it computed for another model? If so, compute one for this model "
                             "with 'edgellm imatrix'",
                             path, name);
        if (mt->ne[0] != t->ne[0])
            return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                             "'%s': '%s' has %llu input columns in the model but %llu in the "
                             "importance matrix: was it computed for another model? If so, "
                             "compute one for this model with 'edgellm imatrix'",
                             path, name, (unsigned long long)mt->ne[0],
                             (unsigned long long)t->ne[0]);
        float count;
        memcpy(&count, ct->data, sizeof count);
        if (!(count > 0) || !isfinite(count))
            return ellm_fail(EDGELLM_ERR_FORMAT,
                             "'%s': entry '%s' has count %g; it must be positive", path, name,
                             (double)count);
        double *sums = malloc((size_t)t->ne[0] * sizeof *sums);
        if (!sums)
            return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory");
        for (uint64_t j = 0; j < t->ne[0]; j++) {
            float v;
            memcpy(&v, (const uint8_t *)t->data + 4 * j, sizeof v);
            sums[j] = v;
            if (!(v >= 0) || !isfinite(v)) {
                free(sums);
                return ellm_fail(EDGELLM_ERR_FORMAT,
                                 "'%s': entry '%s' column %llu is %g; sums of squares must be "
                                 "finite and non-negative",
                                 path, name, (unsigned long long)j, (double)v);
            }
            /* The mean square is stored as a float: a count far below the rows the sums cover
             * made it infinite, and the quantized model's KL rose 15-fold. */
            if (!isfinite((float)(v / (double)count))) {
                free(sums);
                return ellm_fail(EDGELLM_ERR_FORMAT,
                                 "'%s': entry '%s' column %llu: sum of squares %g over count %g "
                                 "overflows; the count must be the rows the sums cover: "
                                 "recompute the file with 'edgellm imatrix'",
                                 path, name, (unsigned long long)j, (double)v, (double)count);
            }
        }
        double *values = NULL;
        edgellm_status st = read_value_sums(f, path, name, t->ne[0], &values);
        /* Real activations keep sum^2 <= count * sum of squares (Cauchy-Schwarz); a sum beyond
         * it drove the mean feedback to NaN block scales. */
        for (uint64_t j = 0; st == EDGELLM_OK && values && j < t->ne[0]; j++)
            if (values[j] * values[j] > (double)count * sums[j] * (1 + 1e-3) + 1e-30)
                st = ellm_fail(EDGELLM_ERR_FORMAT,
                               "'%s': '%s.in_sum' column %llu is %g, more than its sum of squares "
                               "%g over %g rows allows; recompute the file with 'edgellm imatrix'",
                               path, name, (unsigned long long)j, values[j], sums[j],
                               (double)count);
        if (st == EDGELLM_OK)
            st = add_entry(im, name, (int64_t)t->ne[0], sums, values, count);
        free(sums);
        free(values);
        if (st == EDGELLM_OK)
            st = read_directions(f, path, &im->entries[im->n_entries - 1]);
        if (st != EDGELLM_OK)
            return st;
    }
    if (im->n_entries == 0)
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "'%s' holds no importance statistics (no '*.in_sum2' "
                         "tensors)",
                         path);
    return EDGELLM_OK;
}

/* Sum over the rows of matrix `name` of each column's square into colsq (n_cols); false when the
 * model has no such matrix of that width. */
static bool add_column_squares(const gguf_file *model, const char *name, int64_t n_cols,
                               double *colsq, float *row)
{
    const gguf_tensor_info *t = ellm_gguf_find_tensor(model, name);
    uint64_t row_bytes = 0;
    if (!t || t->n_dims != 2 || (int64_t)t->ne[0] != n_cols ||
        !ellm_row_bytes(t->type, t->ne[0], &row_bytes))
        return false;
    for (uint64_t r = 0; r < t->ne[1]; r++) {
        ellm_dequantize_row((ellm_type)t->type, (const uint8_t *)t->data + r * row_bytes, row,
                            n_cols);
        for (int64_t j = 0; j < n_cols; j++)
            colsq[j] += (double)row[j] * row[j];
    }
    return true;
}

/* The token embedding is a lookup: no activation multiplies it, so calibration gives it no
 * statistics. An error e_j in its column j stays in the residual stream, reaches every matrix
 * that reads it through an RMSNorm as e_j g_j / rms (g the norm weight), and moves its outputs by
 * that times its column j: the cost is about g_j^2 |W_:j|^2, summed over every layer's attention
 * and FFN inputs (each layer counted alike; the rms is one number per row, which does not change
 * a row's rounding). This is the diagonal of gptq.c's embedding Hessian. Only for an untied
 * embedding: a tied one is the output head, whose statistics the file has. */
static edgellm_status add_embedding_importance(ellm_imatrix *im, const gguf_file *model)
{
    static const char *const readers[2][5] = {
        {"blk.%d.attn_norm.weight", "blk.%d.attn_q.weight", "blk.%d.attn_k.weight",
         "blk.%d.attn_v.weight", "blk.%d.attn_qkv.weight"},
        {"blk.%d.ffn_norm.weight", "blk.%d.ffn_gate.weight", "blk.%d.ffn_up.weight", NULL, NULL},
    };
    const gguf_tensor_info *emb = ellm_gguf_find_tensor(model, "token_embd.weight");
    if (!emb || emb->n_dims != 2 || !ellm_gguf_find_tensor(model, "output.weight") ||
        ellm_imatrix_find(im, "token_embd.weight", (int64_t)emb->ne[0]))
        return EDGELLM_OK;
    int64_t n = (int64_t)emb->ne[0];
    double *sum = calloc((size_t)n, sizeof *sum), *colsq = calloc((size_t)n, sizeof *colsq);
    float *row = malloc((size_t)n * sizeof *row), *g = malloc((size_t)n * sizeof *g);
    edgellm_status st = EDGELLM_OK;
    if (!sum || !colsq || !row || !g)
        st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory");
    uint32_t n_layer = 0;
    gguf_str arch = {0};
    char key[96];
    if (ellm_gguf_get_str(model, "general.architecture", &arch) == EDGELLM_OK) {
        snprintf(key, sizeof key, "%.*s.block_count", (int)arch.len, arch.data);
        ellm_gguf_get_u32(model, key, &n_layer);
    }
    bool any = false;
    for (uint32_t kk = 0; st == EDGELLM_OK && kk < 2 * n_layer; kk++) {
        int k = (int)(kk % 2), l = (int)(kk / 2);
        char name[96];
        snprintf(name, sizeof name, readers[k][0], l);
        const gguf_tensor_info *norm = ellm_gguf_find_tensor(model, name);
        if (!norm || (int64_t)norm->n_elements != n)
            continue;
        ellm_dequantize_row((ellm_type)norm->type, norm->data, g, n);
        memset(colsq, 0, (size_t)n * sizeof *colsq);
        bool found = false;
        for (int m = 1; m < 5 && readers[k][m]; m++) {
            snprintf(name, sizeof name, readers[k][m], l);
            found |= add_column_squares(model, name, n, colsq, row);
        }
        for (int64_t j = 0; found && j < n; j++)
            sum[j] += (double)g[j] * g[j] * colsq[j];
        any |= found;
    }
    for (int64_t j = 0; j < n; j++)
        if (any && !(isfinite(sum[j]) && sum[j] >= 0))
            any = false;
    if (st == EDGELLM_OK && any)
        st = add_entry(im, "token_embd.weight", n, sum, NULL, 1);
    free(sum);
    free(colsq);
    free(row);
    free(g);
    return st;
}

/* Whether the file opens and starts with something other than the GGUF magic. */
static bool other_format(const char *path)
{
    char magic[4] = {0};
    FILE *fp = ellm_fopen_regular(path);
    bool other = fp && fread(magic, 1, 4, fp) == 4 && memcmp(magic, GGUF_MAGIC, 4) != 0;
    if (fp)
        fclose(fp);
    return other;
}

edgellm_status ellm_imatrix_load(const char *path, const gguf_file *model, ellm_imatrix **out)
{
    *out = NULL;
    gguf_file *f = NULL;
    edgellm_status st = ellm_gguf_open(path, &f);
    /* The reader's advice is for models; other runtimes' older imatrix files (.dat) land here. */
    if (st == EDGELLM_ERR_FORMAT && other_format(path))
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "'%s' is not a GGUF importance matrix (older .dat imatrix files are not "
                         "read); make one for this model with 'edgellm imatrix'",
                         path);
    if (st != EDGELLM_OK)
        return st;
    gguf_str type = {0};
    if (ellm_gguf_get_str(f, "general.type", &type) != EDGELLM_OK ||
        !ellm_gguf_str_eq(type, "imatrix")) {
        ellm_gguf_close(f);
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "'%s' is not an importance matrix (general.type is not \"imatrix\"); "
                         "make one with 'edgellm imatrix'",
                         path);
    }
    gguf_str arch = {0}, model_arch = {0};
    if (ellm_gguf_get_str(f, "imatrix.model.architecture", &arch) == EDGELLM_OK &&
        ellm_gguf_get_str(model, "general.architecture", &model_arch) == EDGELLM_OK &&
        (arch.len != model_arch.len || memcmp(arch.data, model_arch.data, arch.len) != 0)) {
        ellm_gguf_close(f);
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "'%s' was computed for a '%.*s' model, this one is '%.*s'", path,
                         (int)arch.len, arch.data, (int)model_arch.len, model_arch.data);
    }
    char key[96];
    snprintf(key, sizeof key, "%.*s.block_count", (int)model_arch.len, model_arch.data);
    st = check_model_key(f, path, "imatrix.model.n_layer", model, key);
    snprintf(key, sizeof key, "%.*s.embedding_length", (int)model_arch.len, model_arch.data);
    if (st == EDGELLM_OK)
        st = check_model_key(f, path, "imatrix.model.n_embd", model, key);
    ellm_imatrix *im = st == EDGELLM_OK ? calloc(1, sizeof *im) : NULL;
    if (st == EDGELLM_OK && !im)
        st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory");
    if (st == EDGELLM_OK)
        st = load_entries(im, f, path, model);
    if (st == EDGELLM_OK)
        st = add_embedding_importance(im, model);
    ellm_gguf_close(f);
    if (st != EDGELLM_OK) {
        ellm_imatrix_free(im);
        return st;
    }
    *out = im;
    return EDGELLM_OK;
}

const float *ellm_imatrix_find(const ellm_imatrix *im, const char *tensor, int64_t n_cols)
{
    for (int i = 0; im && i < im->n_entries; i++)
        if (!strcmp(im->entries[i].name, tensor) && im->entries[i].n_cols == n_cols)
            return im->entries[i].mean;
    return NULL;
}

const float *ellm_imatrix_find_mean_value(const ellm_imatrix *im, const char *tensor,
                                          int64_t n_cols)
{
    for (int i = 0; im && i < im->n_entries; i++)
        if (!strcmp(im->entries[i].name, tensor) && im->entries[i].n_cols == n_cols)
            return im->entries[i].mean_value;
    return NULL;
}

const float *ellm_imatrix_find_directions(const ellm_imatrix *im, const char *tensor,
                                          int64_t n_cols, int *k)
{
    *k = 0;
    for (int i = 0; im && i < im->n_entries; i++)
        if (!strcmp(im->entries[i].name, tensor) && im->entries[i].n_cols == n_cols) {
            *k = im->entries[i].k;
            return im->entries[i].k > 0 ? im->entries[i].dirs : NULL;
        }
    return NULL;
}

int ellm_imatrix_entry_count(const ellm_imatrix *im) { return im ? im->n_entries : 0; }

void ellm_imatrix_free(ellm_imatrix *im)
{
    if (!im)
        return;
    for (int i = 0; i < im->n_entries; i++) {
        free(im->entries[i].sum2);
        free(im->entries[i].mean);
        free(im->entries[i].sum);
        free(im->entries[i].mean_value);
        free(im->entries[i].vecs);
        free(im->entries[i].vals);
        free(im->entries[i].dirs);
    }
    free(im->entries);
    free(im->dataset);
    free(im);
}
