/* ellm_gptq_quantize_gated (session 9's per-row SwiGLU Hessians) on hostile activations and rows:
 * all-zero inputs, a dead gate or up row (every token's weight a_t zero, so that row's H is zero),
 * a row whose gate saturates silu at both ends, tokens of 1e6, and NaN or infinite inputs. Finite
 * inputs must round (1 and 3 threads to the same bytes), decode to finite values and give zero rows
 * back as zeros; NaN or infinite inputs must fail with an error, not write NaN blocks. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/threadpool.h"
#include "optimise/gptq.h"
#include "quant/quant.h"
#include "test_util.h"

enum { ROWS = 5, N = 256, TOK = 48 };

static float x[TOK * N], gate[ROWS * N], up[ROWS * N], w[ROWS * N], wc[ROWS * N];
static uint8_t q1[ROWS * N * 2], q3[ROWS * N * 2];

/* Rounds w as gate (is_gate) or up on NULL and a 3-thread pool; st the status of both. */
static edgellm_status run(ellm_threadpool *pool, ellm_type type, bool is_gate, const char *what)
{
    uint64_t rb = 0;
    CHECK(ellm_row_bytes(type, N, &rb));
    memcpy(wc, w, sizeof w);
    edgellm_status s1 = ellm_gptq_quantize_gated(NULL, type, wc, ROWS, N, x, TOK, gate,
                                                 is_gate ? NULL : gate, up, is_gate, 0.01f, q1);
    memcpy(wc, w, sizeof w);
    edgellm_status s3 = ellm_gptq_quantize_gated(pool, type, wc, ROWS, N, x, TOK, gate,
                                                 is_gate ? NULL : gate, up, is_gate, 0.01f, q3);
    CHECK_MSG(s1 == s3, "%s %s: status %d on one thread, %d on three", what, ellm_type_name(type),
              (int)s1, (int)s3);
    if (s1 != EDGELLM_OK)
        return s1;
    CHECK_MSG(!memcmp(q1, q3, (size_t)(rb * ROWS)), "%s %s: 1 and 3 threads differ", what,
              ellm_type_name(type));
    for (int r = 0; r < ROWS; r++) {
        float d[N];
        ellm_dequantize_row(type, q1 + r * rb, d, N);
        bool zero_row = true;
        for (int i = 0; i < N; i++)
            zero_row = zero_row && w[r * N + i] == 0;
        for (int i = 0; i < N; i++) {
            CHECK_MSG(isfinite(d[i]), "%s %s row %d value %d: %g", what, ellm_type_name(type), r, i,
                      d[i]);
            if (zero_row)
                CHECK_MSG(d[i] == 0, "%s %s: zero row %d value %d decodes to %g", what,
                          ellm_type_name(type), r, i, d[i]);
        }
    }
    return s1;
}

int main(void)
{
    uint64_t seed = 0x9a7ed5ull;
    ellm_threadpool *pool = NULL;
    CHECK(ellm_threadpool_create(3, &pool) == EDGELLM_OK);
    const ellm_type types[] = {ELLM_TYPE_Q4_0, ELLM_TYPE_IQ4_NL, ELLM_TYPE_Q4_K, ELLM_TYPE_Q6_K};
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        ellm_type type = types[ti];
        for (int is_gate = 0; is_gate < 2; is_gate++) {
            for (int i = 0; i < TOK * N; i++)
                x[i] = test_rand_gauss(&seed);
            for (int i = 0; i < ROWS * N; i++) {
                gate[i] = 0.1f * test_rand_gauss(&seed);
                up[i] = 0.1f * test_rand_gauss(&seed);
                w[i] = is_gate ? gate[i] : up[i];
            }
            CHECK(run(pool, type, is_gate, "random") == EDGELLM_OK);
            /* Row 1 dead in up (gate's a_t all zero), row 2 dead in gate (up's a_t zero: silu(0)
             * is 0), row 3 of the rounded matrix zero, row 4's gate saturating silu (+-1e4). */
            memset(up + 1 * N, 0, N * sizeof(float));
            memset(gate + 2 * N, 0, N * sizeof(float));
            for (int i = 0; i < N; i++) {
                gate[4 * N + i] = (i % 2 ? 1e4f : -1e4f) / N;
                w[1 * N + i] = is_gate ? gate[1 * N + i] : 0;
                w[2 * N + i] = is_gate ? 0 : up[2 * N + i];
                w[3 * N + i] = 0;
                w[4 * N + i] = is_gate ? gate[4 * N + i] : up[4 * N + i];
            }
            CHECK(run(pool, type, is_gate, "dead and saturated rows") == EDGELLM_OK);
            for (int i = 0; i < TOK * N; i++)
                x[i] *= 1e6f;
            CHECK(run(pool, type, is_gate, "inputs of 1e6") == EDGELLM_OK);
            memset(x, 0, sizeof x);
            CHECK(run(pool, type, is_gate, "all-zero inputs") == EDGELLM_OK);
            for (int i = 0; i < TOK * N; i++)
                x[i] = test_rand_gauss(&seed);
            x[7 * N + 9] = NAN;
            CHECK(run(pool, type, is_gate, "a NaN input") != EDGELLM_OK);
            x[7 * N + 9] = INFINITY;
            CHECK(run(pool, type, is_gate, "an infinite input") != EDGELLM_OK);
        }
    }
    ellm_threadpool_free(pool);
    return test_finish("test_attack_s9_gptq");
}
