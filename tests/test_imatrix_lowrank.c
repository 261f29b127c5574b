/* The rounding objective with the covariance's directions (ellm_row_objective, quant/weighted.c):
 * activations with a mean and a few correlated directions (a = mu + z A + noise, z of 6
 * standard normals), their statistics given as an imatrix gives them (mean squares, mean, and
 * the directions: any U with U U^T = A^T A will do), rows of weights rounded three ways: on the
 * mean squares alone, with the mean's feedback, and with the mean and the directions. The
 * layer's output error sum over held-out activations of (a . (w - q))^2 must fall well below
 * the diagonal rounding's and below the mean-only rounding's for every type the weighted search
 * covers; this fails if the low-rank feedback is missing, has the wrong sign or the wrong size.
 * The 32-value types must also end in a local minimum of the objective (check_local_minimum). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "quant/blocks.h"
#include "quant/quant.h"
#include "test_util.h"

#define N_COLS 512
#define N_ROWS 24
#define N_LATENT 6
#define N_HELD 2000

static uint64_t rng = 0x243f6a8885a308d3ull;

static double uniform(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return ((double)(rng >> 11) + 0.5) / 9007199254740992.0;
}

static float normal(void)
{
    return (float)(sqrt(-2 * log(uniform())) * cos(6.283185307179586 * uniform()));
}

static float mu[N_COLS], noise[N_COLS], dirs[N_LATENT][N_COLS], w[N_COLS];
static float rows[N_ROWS][N_COLS], held[N_HELD][N_COLS];

static void make_statistics(void)
{
    for (int j = 0; j < N_COLS; j++) {
        mu[j] = 0.3f * normal();
        noise[j] = 0.2f + 0.3f * (float)uniform();
        for (int r = 0; r < N_LATENT; r++)
            dirs[r][j] = (1.0f - 0.12f * (float)r) * normal();
        w[j] = mu[j] * mu[j] + noise[j] * noise[j];
        for (int r = 0; r < N_LATENT; r++)
            w[j] += dirs[r][j] * dirs[r][j];
    }
    for (int i = 0; i < N_HELD; i++) {
        float z[N_LATENT];
        for (int r = 0; r < N_LATENT; r++)
            z[r] = normal();
        for (int j = 0; j < N_COLS; j++) {
            float a = mu[j] + noise[j] * normal();
            for (int r = 0; r < N_LATENT; r++)
                a += z[r] * dirs[r][j];
            held[i][j] = a;
        }
    }
    for (int i = 0; i < N_ROWS; i++)
        for (int j = 0; j < N_COLS; j++)
            rows[i][j] = 0.02f * normal();
}

/* Sum over held-out activations of the squared output error of a quantized row. */
static double output_error(ellm_type type, const float *x, const void *q)
{
    float e[N_COLS];
    ellm_dequantize_row(type, q, e, N_COLS);
    for (int j = 0; j < N_COLS; j++)
        e[j] -= x[j];
    double sum = 0;
    for (int i = 0; i < N_HELD; i++) {
        double y = 0;
        for (int j = 0; j < N_COLS; j++)
            y += (double)held[i][j] * e[j];
        sum += y * y;
    }
    return sum;
}

/* 32-value types round value by value; the 256-value ones feed back whole super-blocks, which
 * gains less. */
static void check_type(ellm_type type, double bound)
{
    ellm_row_objective o;
    CHECK(ellm_row_objective_init(&o, N_COLS, w, mu, &dirs[0][0], N_LATENT));
    CHECK(o.rank == N_LATENT + 1);
    double diagonal = 0, mean = 0, lowrank = 0;
    float scratch[4 * N_COLS];
    for (int i = 0; i < N_ROWS; i++) {
        uint8_t q[N_COLS * 2];
        ellm_quantize_row_weighted(type, rows[i], q, N_COLS, w);
        diagonal += output_error(type, rows[i], q);
        ellm_quantize_row_weighted_mean(type, rows[i], q, N_COLS, w, mu, scratch);
        mean += output_error(type, rows[i], q);
        size_t bytes = ellm_quantize_row_objective(type, rows[i], q, N_COLS, &o, scratch);
        CHECK(bytes == (size_t)N_COLS / ellm_type_traits_of(type)->block_size *
                           ellm_type_traits_of(type)->block_bytes);
        lowrank += output_error(type, rows[i], q);
    }
    printf("  %-7s held-out output error: diagonal %.4g, + mean %.4g, + %d directions %.4g "
           "(%.2f x diagonal, bound %.2f)\n",
           ellm_type_name(type), diagonal, mean, N_LATENT, lowrank, lowrank / diagonal, bound);
    CHECK(lowrank < bound * diagonal);
    CHECK(lowrank < mean);
    ellm_row_objective_free(&o);
}

/* e^T (D + U U^T) e of a row as rounded, from the objective's own D and U. */
static double objective_of(const ellm_row_objective *o, ellm_type type, const float *x,
                           const void *q)
{
    float y[N_COLS];
    ellm_dequantize_row(type, q, y, o->n);
    double e2 = 0, p[ELLM_OBJECTIVE_MAX_RANK] = {0};
    for (int64_t j = 0; j < o->n; j++) {
        double e = (double)y[j] - x[j];
        e2 += o->d[j] * e * e;
        for (int i = 0; i < o->rank; i++)
            p[i] += o->u[j * o->rank + i] * e;
    }
    for (int i = 0; i < o->rank; i++)
        e2 += p[i] * p[i];
    return e2;
}

/* Sets value j's code of a 32-value block (codes in level order for all five types); false
 * outside the type's codes. */
static bool set_code(ellm_type type, uint8_t *block, int j, int code)
{
    uint8_t *qs, *qh = NULL;
    int top = 15;
    switch (type) {
    case ELLM_TYPE_Q4_0: qs = ((block_q4_0 *)block)->qs; break;
    case ELLM_TYPE_Q4_1: qs = ((block_q4_1 *)block)->qs; break;
    case ELLM_TYPE_Q5_0:
        qs = ((block_q5_0 *)block)->qs;
        qh = ((block_q5_0 *)block)->qh;
        top = 31;
        break;
    case ELLM_TYPE_Q5_1:
        qs = ((block_q5_1 *)block)->qs;
        qh = ((block_q5_1 *)block)->qh;
        top = 31;
        break;
    default: qs = ((block_iq4_nl *)block)->qs; break;
    }
    if (code < 0 || code > top)
        return false;
    int shift = j < 16 ? 0 : 4;
    qs[j % 16] = (uint8_t)((qs[j % 16] & ~(15 << shift)) | (code & 15) << shift);
    if (qh)
        qh[j / 8] = (uint8_t)((qh[j / 8] & ~(1 << (j % 8))) | ((code >> 4) & 1) << (j % 8));
    return true;
}

static int get_code(ellm_type type, const uint8_t *block, int j)
{
    uint8_t trial[sizeof(block_q5_1)];
    size_t bb = ellm_type_traits_of(type)->block_bytes;
    float ref[32], y[32];
    ellm_dequantize_row(type, block, ref, 32);
    /* The code whose block decodes value j to what it holds (levels are distinct). */
    for (int c = 0; c < 32; c++) {
        memcpy(trial, block, bb);
        if (!set_code(type, trial, j, c))
            break;
        ellm_dequantize_row(type, trial, y, 32);
        if (y[j] == ref[j])
            return c;
    }
    return -1;
}

/* The rounding ends in a local minimum of its objective: after rounding in order, refitting the
 * scales and choosing the levels again, no single value's neighbouring level on its block's grid
 * lowers e^T (D + U U^T) e (the sweeps that move single values; fails if they are missing, stop
 * early or score a move wrongly). */
static void check_local_minimum(ellm_type type)
{
    enum { N = 128 };
    ellm_row_objective o;
    CHECK(ellm_row_objective_init(&o, N, w, mu, &dirs[0][0], N_LATENT));
    size_t bb = ellm_type_traits_of(type)->block_bytes;
    float scratch[4 * N];
    int worse = 0;
    for (int i = 0; i < N_ROWS; i++) {
        uint8_t q[N * 2];
        ellm_quantize_row_objective(type, rows[i], q, N, &o, scratch);
        double base = objective_of(&o, type, rows[i], q);
        for (int j = 0; j < N; j++) {
            uint8_t *block = q + (j / 32) * bb, keep[sizeof(block_q5_1)];
            int code = get_code(type, block, j % 32);
            CHECK(code >= 0);
            memcpy(keep, block, bb);
            for (int step = -1; step <= 1; step += 2) {
                if (!set_code(type, block, j % 32, code + step))
                    continue;
                if (objective_of(&o, type, rows[i], q) < base * (1 - 1e-6))
                    worse++;
                memcpy(block, keep, bb);
            }
        }
    }
    printf("  %-7s single-level moves that lower the objective: %d\n", ellm_type_name(type), worse);
    CHECK(worse == 0);
    ellm_row_objective_free(&o);
}

static void test_bad_shapes(void)
{
    ellm_row_objective o;
    CHECK(!ellm_row_objective_init(&o, N_COLS - 16, w, mu, &dirs[0][0], N_LATENT));
    CHECK(!ellm_row_objective_init(&o, N_COLS, w, NULL, NULL, 0));
    CHECK(!ellm_row_objective_init(&o, N_COLS, w, mu, &dirs[0][0], ELLM_OBJECTIVE_MAX_RANK));
    /* A row of another width than the objective's is rounded plainly. */
    CHECK(ellm_row_objective_init(&o, N_COLS, w, mu, &dirs[0][0], N_LATENT));
    uint8_t a[N_COLS], b[N_COLS];
    float scratch[N_COLS];
    size_t na = ellm_quantize_row_objective(ELLM_TYPE_Q4_0, rows[0], a, N_COLS / 2, &o, scratch);
    size_t nb = ellm_quantize_row_weighted(ELLM_TYPE_Q4_0, rows[0], b, N_COLS / 2, NULL);
    CHECK(na == nb && memcmp(a, b, na) == 0);
    ellm_row_objective_free(&o);
}

int main(void)
{
    make_statistics();
    static const ellm_type block32[] = {ELLM_TYPE_Q4_0, ELLM_TYPE_Q4_1, ELLM_TYPE_Q5_0,
                                        ELLM_TYPE_Q5_1, ELLM_TYPE_IQ4_NL};
    for (int k = 0; k < 5; k++)
        check_type(block32[k], 0.3);
    for (int k = 0; k < 5; k++)
        check_local_minimum(block32[k]);
    static const ellm_type block256[] = {ELLM_TYPE_Q2_K, ELLM_TYPE_Q3_K, ELLM_TYPE_Q4_K,
                                         ELLM_TYPE_Q5_K, ELLM_TYPE_Q6_K, ELLM_TYPE_IQ4_XS};
    for (int k = 0; k < 6; k++)
        check_type(block256[k], 0.8);
    test_bad_shapes();
    return test_finish("test_imatrix_lowrank");
}
