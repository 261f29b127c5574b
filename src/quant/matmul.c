/* Matrix × activations. Activations are converted once to the weight kernel's input format, then
 * output rows are split into one contiguous range per thread. Each output value is computed by
 * one kernel call whatever the thread count, so results are bit-identical for any pool size. */
#include "quant/quant.h"

/* Rows processed together in prefill: each weight row block stays in cache while it is reused
 * across every token of the batch. */
#define ROW_TILE 16

typedef struct convert_job {
    ellm_type type;
    const float *x;
    uint8_t *dst;
    int64_t n_in, n_tokens;
    uint64_t row_bytes;
} convert_job;

static void convert_task(void *arg, int ith, int nth)
{
    convert_job *j = arg;
    for (int64_t t = ith; t < j->n_tokens; t += nth)
        ellm_quantize_activations(j->type, j->x + t * j->n_in, j->dst + t * j->row_bytes, j->n_in);
}

typedef struct matmul_job {
    const ellm_tensor *w;
    const ellm_type_kernels *k;
    const uint8_t *xq;
    uint64_t xq_row_bytes;
    int64_t n_tokens;
    float *y;
} matmul_job;

static void matmul_task(void *arg, int ith, int nth)
{
    matmul_job *j = arg;
    int64_t n_in = j->w->ne[0], n_out = j->w->ne[1];
    int64_t per = (n_out + nth - 1) / nth;
    int64_t r0 = per * ith, r1 = r0 + per < n_out ? r0 + per : n_out;
    const uint8_t *wbase = j->w->data;
    for (int64_t rt = r0; rt < r1; rt += ROW_TILE) {
        int64_t rend = rt + ROW_TILE < r1 ? rt + ROW_TILE : r1;
        int64_t t = 0;
        if (j->k->vec_dot_x4) {
            for (; t + 4 <= j->n_tokens; t += 4) {
                const void *xs[4];
                for (int k = 0; k < 4; k++)
                    xs[k] = j->xq + (t + k) * j->xq_row_bytes;
                for (int64_t r = rt; r < rend; r++) {
                    float out[4];
                    j->k->vec_dot_x4(n_in, out, wbase + r * j->w->row_bytes, xs);
                    for (int k = 0; k < 4; k++)
                        j->y[(t + k) * n_out + r] = out[k];
                }
            }
        }
        for (; t < j->n_tokens; t++) {
            const void *xrow = j->xq + t * j->xq_row_bytes;
            float *yrow = j->y + t * n_out;
            for (int64_t r = rt; r < rend; r++)
                j->k->vec_dot(n_in, &yrow[r], wbase + r * j->w->row_bytes, xrow);
        }
    }
}

size_t ellm_matmul_scratch_bytes(const ellm_tensor *w, int64_t n_tokens)
{
    const ellm_type_kernels *k = ellm_kernels_for(w->type);
    if (!k || k->vec_dot_type == ELLM_TYPE_F32)
        return 0;
    uint64_t rb = 0;
    ellm_row_bytes(k->vec_dot_type, (uint64_t)w->ne[0], &rb);
    return (size_t)(rb * (uint64_t)n_tokens);
}

void ellm_matmul(ellm_threadpool *pool, const ellm_tensor *w, const float *x, int64_t n_tokens,
                 float *y, void *scratch)
{
    const ellm_type_kernels *k = ellm_kernels_for(w->type);
    matmul_job job = {.w = w, .k = k, .n_tokens = n_tokens, .y = y};
    if (k->vec_dot_type == ELLM_TYPE_F32) {
        job.xq = (const uint8_t *)x;
        job.xq_row_bytes = (uint64_t)w->ne[0] * sizeof(float);
    } else {
        uint64_t rb = 0;
        ellm_row_bytes(k->vec_dot_type, (uint64_t)w->ne[0], &rb);
        convert_job cj = {k->vec_dot_type, x, scratch, w->ne[0], n_tokens, rb};
        ellm_threadpool_run(n_tokens > 1 ? pool : NULL, convert_task, &cj);
        job.xq = scratch;
        job.xq_row_bytes = rb;
    }
    ellm_threadpool_run(pool, matmul_task, &job);
}
