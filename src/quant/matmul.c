/* Matrix × activations. Activations are converted once to the weight kernel's input format, then
 * each thread works through its own contiguous range of output rows in chunks, and takes chunks
 * from the other threads' ranges once its own is done: a thread that is descheduled on a busy
 * machine no longer holds up a fixed share of the work. Each output value is computed by one
 * kernel call whatever thread runs it, so results are bit-identical for any pool size and any
 * timing. */
#include <stdalign.h>
#include <stdatomic.h>

#include "quant/kernels.h"
#include "quant/quant.h"

/* Rows processed together in prefill: each weight row block stays in cache while it is reused
 * across every token of the batch. */
#define ROW_TILE 16
/* Fewest tokens that take the tiles: one token (decode) streams the weights once, which the
 * single-row kernels do at a higher rate than 16 interleaved row streams; both give the same
 * bytes (the tile contract), so the choice never changes a result. */
#define GEMM_MIN_TOKENS 2
/* Activation bytes per token chunk of the gemm path: a chunk stays in L2 while every row tile of
 * the thread's range passes over it. */
#define TOKEN_CHUNK_BYTES (256 * 1024)

/* Tokens per gemm call: a multiple of 4, at least 4. The tiled rows (16-bit values) are about
 * twice as long: as many tokens per chunk as the 8-bit rows get, so the tile reuses its decoded
 * weights as often (two of them fit in this machine's 2 MB L2). The tiled layout's tile takes a
 * whole chunk in one token step, so its chunks are evened out: a 256-token prompt at 2048 columns
 * was 124 + 124 + 8 tokens, and the 8-token call ran at half the tile's rate. */
static int64_t chunk_tokens(ellm_act_layout layout, uint64_t row_bytes, int64_t n_tokens)
{
    size_t bytes = layout == ELLM_ACT_Q8_K_TILED ? 2 * TOKEN_CHUNK_BYTES : TOKEN_CHUNK_BYTES;
    int64_t chunk = (int64_t)(bytes / row_bytes) & ~(int64_t)3;
    if (chunk < 4)
        return 4;
    if (layout == ELLM_ACT_Q8_K_TILED && n_tokens > chunk) {
        int64_t calls = (n_tokens + chunk - 1) / chunk;
        int64_t even = ((n_tokens + calls - 1) / calls + 3) & ~(int64_t)3;
        chunk = even < chunk ? even : chunk;
    }
    return chunk;
}

typedef struct convert_job {
    ellm_type type;
    ellm_act_layout layout;
    const float *x;
    uint8_t *dst;
    int64_t n_in, n_tokens;
    uint64_t row_bytes;
    int64_t chunk; /* the gemm calls' tokens, for the tiled layout */
    /* With the tiled layout: plain Q8_K rows as well, plain_row_bytes apart (NULL: none). */
    uint8_t *plain;
    uint64_t plain_row_bytes;
} convert_job;

static void convert_task(void *arg, int ith, int nth)
{
    convert_job *j = arg;
    for (int64_t t = ith; t < j->n_tokens; t += nth) {
        const float *x = j->x + t * j->n_in;
        if (j->layout == ELLM_ACT_Q8_K_TILED) {
            int64_t t0 = t / j->chunk * j->chunk;
            int64_t nt = j->n_tokens - t0 < j->chunk ? j->n_tokens - t0 : j->chunk;
            uint8_t *tiled = j->dst + t0 * j->row_bytes;
            if (j->plain) {
                /* The tiled converter goes through these same blocks: placing them is all it
                 * adds, so both layouts are the bytes each conversion alone makes. */
                uint8_t *plain = j->plain + t * j->plain_row_bytes;
                ellm_quantize_act(ELLM_ACT_PLAIN, ELLM_TYPE_Q8_K, x, plain, j->n_in);
                ellm_q8_K_tiled_place(plain, j->n_in, tiled, t - t0, nt);
            } else {
                ellm_quantize_q8_K_tiled(x, j->n_in, tiled, t - t0, nt);
            }
        } else {
            ellm_quantize_act(j->layout, j->type, x, j->dst + t * j->row_bytes, j->n_in);
        }
    }
}

/* Most weights one dispatch takes (Q/K/V). */
#define MAX_WEIGHTS 4

/* Most thread ranges a dispatch keeps; threads beyond share them. */
#define MAX_RANGES 32

/* Rows [next, end) of one thread's range not claimed yet. Each on a cache line of its own: a
 * claim would otherwise take the line of the other ranges (and of the job's fields) from the
 * other threads' caches once per chunk. */
typedef struct row_range {
    alignas(64) atomic_llong next;
    int64_t end;
} row_range;

/* Several weights sharing one input, their output rows numbered one after another, so one pool
 * dispatch computes them all (Q/K/V, gate/up). Their types may differ (Q4_K_M's Q6_K attn_v next
 * to Q4_K attn_q) as long as their kernels take the same activation rows; each weight's rows go
 * through its own type's kernels. */
typedef struct matmul_job {
    const ellm_tensor *const *w;
    float *const *y;
    int n_w;
    int64_t total_rows;
    const ellm_type_kernels *k[MAX_WEIGHTS];
    ellm_gemm_fn gemm[MAX_WEIGHTS];
    bool ext_dot[MAX_WEIGHTS]; /* single rows through vec_dot_ext (extended activations) */
    /* Weights in ELLM_ROWS_BY_FOUR order: their whole groups' kernels (gemm_by_four NULL for a
     * single token). Each range of their rows starts at a group (matmul_dispatch). */
    ellm_vec_dot_rows_fn by_four[MAX_WEIGHTS];
    ellm_gemm_fn gemm_by_four[MAX_WEIGHTS];
    const uint8_t *xq;
    uint64_t xq_row_bytes;
    int64_t n_tokens;
    int64_t chunk_tokens; /* tokens per gemm call */
    /* Gate/up pairs: a chunk is rows [r0, r1) of both weights, and combine(y[0], y[1]) runs on
     * them as soon as both are computed, by the thread that computed them. */
    ellm_rows_combine_fn combine;
    int64_t span;       /* rows to hand out: all weights' rows, or one weight's when paired */
    int64_t chunk_rows; /* the largest chunk; chunks shrink towards the end of a range */
    int n_ranges;
    row_range ranges[MAX_RANGES];
} matmul_job;

/* Rows [r0, r1) of weight iw against token t's activations, ELLM_DOT_ROWS rows a call where the
 * set has a multi-row kernel for the layout they are in. */
static void token_rows(const matmul_job *j, int iw, int64_t t, int64_t r0, int64_t r1)
{
    const ellm_tensor *w = j->w[iw];
    const ellm_type_kernels *kern = j->k[iw];
    const uint8_t *wbase = w->data;
    size_t row_bytes = w->row_bytes;
    int64_t n_in = w->ne[0];
    const void *xrow = j->xq + t * j->xq_row_bytes;
    float *yrow = j->y[iw] + t * w->ne[1];
    int64_t r = r0;
    if (j->by_four[iw])
        for (int64_t grouped = w->ne[1] / ELLM_BY_FOUR * ELLM_BY_FOUR; r < grouped && r < r1;
             r += ELLM_BY_FOUR)
            j->by_four[iw](n_in, &yrow[r], wbase + r * row_bytes, row_bytes, xrow);
    else if (kern->vec_dot_rows && j->ext_dot[iw] == (kern->vec_dot_ext != NULL))
        for (; r + ELLM_DOT_ROWS <= r1; r += ELLM_DOT_ROWS)
            kern->vec_dot_rows(n_in, &yrow[r], wbase + r * row_bytes, row_bytes, xrow);
    ellm_vec_dot_fn dot = j->ext_dot[iw] ? kern->vec_dot_ext : kern->vec_dot;
    for (; r < r1; r++)
        dot(n_in, &yrow[r], wbase + r * row_bytes, xrow);
}

/* Every token of the batch against rows [r0, r1) of weight iw, a row tile at a time so that the
 * tile's rows stay in cache across the tokens: groups of four tokens by the four-token kernel,
 * then the others one by one. A single token (decode) reuses nothing: one tile takes the range. */
static void rows_vec_dot(const matmul_job *j, int iw, int64_t r0, int64_t r1)
{
    const ellm_tensor *w = j->w[iw];
    const ellm_type_kernels *kern = j->k[iw];
    float *y = j->y[iw];
    int64_t n_in = w->ne[0], n_out = w->ne[1];
    const uint8_t *wbase = w->data;
    int64_t four_token_end = kern->vec_dot_x4 && !j->ext_dot[iw] && !j->by_four[iw]
                                 ? j->n_tokens / 4 * 4
                                 : 0;
    int64_t tile = j->n_tokens > 1 ? ROW_TILE : r1 - r0;
    for (int64_t rt = r0; rt < r1; rt += tile) {
        int64_t rend = rt + tile < r1 ? rt + tile : r1;
        for (int64_t t = 0; t < four_token_end; t += 4) {
            const void *xs[4];
            for (int k = 0; k < 4; k++)
                xs[k] = j->xq + (t + k) * j->xq_row_bytes;
            for (int64_t r = rt; r < rend; r++) {
                float out[4];
                kern->vec_dot_x4(n_in, out, wbase + r * w->row_bytes, xs);
                for (int k = 0; k < 4; k++)
                    y[(t + k) * n_out + r] = out[k];
            }
        }
        for (int64_t t = four_token_end; t < j->n_tokens; t++)
            token_rows(j, iw, t, rt, rend);
    }
}

/* Rows [r, r + nr) of weight iw against tokens [t0, t0 + nt) by its tiles: whole groups of four
 * of an ELLM_ROWS_BY_FOUR weight by its gemm_by_four, the rows after them (plain) by gemm. */
static void gemm_tile(const matmul_job *j, int iw, int64_t r, int64_t nr, int64_t t0, int64_t nt)
{
    const ellm_tensor *w = j->w[iw];
    int64_t n_in = w->ne[0], n_out = w->ne[1];
    const uint8_t *x = j->xq + t0 * j->xq_row_bytes;
    float *y = j->y[iw] + t0 * n_out;
    int64_t grouped = j->gemm_by_four[iw] ? n_out / ELLM_BY_FOUR * ELLM_BY_FOUR : 0;
    int64_t in_groups = r >= grouped ? 0 : r + nr <= grouped ? nr : grouped - r;
    const uint8_t *rows = (const uint8_t *)w->data + r * w->row_bytes;
    if (in_groups)
        j->gemm_by_four[iw](n_in, rows, w->row_bytes, in_groups, x, j->xq_row_bytes, nt, y + r,
                            n_out);
    if (in_groups < nr)
        j->gemm[iw](n_in, rows + in_groups * w->row_bytes, w->row_bytes, nr - in_groups, x,
                    j->xq_row_bytes, nt, y + r + in_groups, n_out);
}

static void rows_gemm(const matmul_job *j, int iw, int64_t r0, int64_t r1)
{
    int64_t chunk = j->chunk_tokens;
    /* A batch of fewer than 4 tokens has little reuse to block for: one tile takes the range. */
    int64_t tile = j->n_tokens < 4 ? r1 - r0 : ROW_TILE;
    for (int64_t t0 = 0; t0 < j->n_tokens; t0 += chunk) {
        int64_t nt = t0 + chunk < j->n_tokens ? chunk : j->n_tokens - t0;
        for (int64_t rt = r0; rt < r1; rt += tile) {
            int64_t nr = rt + tile < r1 ? tile : r1 - rt;
            gemm_tile(j, iw, rt, nr, t0, nt);
        }
    }
}

/* Rows [g0, g1) of the weights numbered one after another. */
static void global_rows(const matmul_job *j, int64_t g0, int64_t g1)
{
    int64_t base = 0;
    for (int i = 0; i < j->n_w && base < g1; base += j->w[i]->ne[1], i++) {
        int64_t r0 = g0 > base ? g0 - base : 0;
        int64_t r1 = g1 - base < j->w[i]->ne[1] ? g1 - base : j->w[i]->ne[1];
        if (r0 >= r1)
            continue;
        if (j->gemm[i])
            rows_gemm(j, i, r0, r1);
        else
            rows_vec_dot(j, i, r0, r1);
    }
}

/* A chunk from the front of a range, smaller as the range's end nears so that its owner and a
 * thread helping it finish within a short chunk of each other (a 128-row chunk of a 5632-column
 * down projection is 18 us of reading at one core's rate). */
static bool claim_rows(const matmul_job *j, row_range *range, int64_t *r0, int64_t *r1)
{
    long long front = atomic_load_explicit(&range->next, memory_order_relaxed);
    for (;;) {
        int64_t left = range->end - front;
        if (left <= 0)
            return false;
        int64_t n = left / 2;
        n = (n + ROW_TILE - 1) / ROW_TILE * ROW_TILE;
        n = n < ROW_TILE ? ROW_TILE : n > j->chunk_rows ? j->chunk_rows : n;
        n = n < left ? n : left;
        if (atomic_compare_exchange_weak_explicit(&range->next, &front, front + n,
                                                  memory_order_relaxed, memory_order_relaxed)) {
            *r0 = front;
            *r1 = front + n;
            return true;
        }
    }
}

static void paired_rows(const matmul_job *j, int64_t r0, int64_t r1)
{
    for (int i = 0; i < 2; i++) {
        if (j->gemm[i])
            rows_gemm(j, i, r0, r1);
        else
            rows_vec_dot(j, i, r0, r1);
    }
    int64_t n_out = j->w[0]->ne[1];
    for (int64_t t = 0; t < j->n_tokens; t++)
        j->combine(j->y[0] + t * n_out + r0, j->y[1] + t * n_out + r0, r1 - r0);
}

/* Each thread starts on its own range, so while both run at one pace each reads one unbroken
 * stream of weights: dealing a decode's rows out in 128-row chunks from one shared count made
 * both threads' streams jump at every chunk, and two-thread decode read 62 % of the two-thread
 * bandwidth (Q4_K_M) where contiguous halves read 72-75 % (docs/performance.md, "Session 9").
 * Then it helps the next ranges from their fronts, in ascending order: a thread that runs alone
 * (its partner descheduled) still reads forward streams, which the prefetchers follow. */
static void matmul_task(void *arg, int ith, int nth)
{
    (void)nth;
    matmul_job *j = arg;
    int own = ith % j->n_ranges;
    for (int k = 0; k < j->n_ranges; k++) {
        row_range *range = &j->ranges[(own + k) % j->n_ranges];
        int64_t r0, r1;
        while (claim_rows(j, range, &r0, &r1)) {
            if (j->combine)
                paired_rows(j, r0, r1);
            else
                global_rows(j, r0, r1);
        }
    }
}

size_t ellm_matmul_scratch_bytes(const ellm_tensor *w, int64_t n_tokens)
{
    const ellm_type_kernels *k = ellm_kernels_for(w->type);
    if (!k || k->vec_dot_type == ELLM_TYPE_F32)
        return 0;
    /* Any of these layouts may be used, depending on the kernels selected at the time of the
     * call. */
    size_t plain = ellm_act_row_bytes(ELLM_ACT_PLAIN, k->vec_dot_type, w->ne[0]);
    size_t ext = k->vec_dot_type == ELLM_TYPE_Q8_0
                     ? ellm_act_row_bytes(ELLM_ACT_Q8_0_EXT, k->vec_dot_type, w->ne[0])
                     : 0;
    size_t own = k->vec_dot_ext ? ellm_act_row_bytes(k->ext_layout, k->vec_dot_type, w->ne[0]) : 0;
    size_t tile = k->gemm
                      ? ellm_act_row_bytes(ellm_gemm_act_layout(w->type), k->vec_dot_type, w->ne[0])
                      : 0;
    /* The tiled layout's dispatch may make plain rows beside it (matmul_by_layout). */
    if (k->gemm && ellm_gemm_act_layout(w->type) == ELLM_ACT_Q8_K_TILED)
        tile += plain;
    size_t most = plain > ext ? plain : ext;
    most = most > own ? most : own;
    return (most > tile ? most : tile) * (size_t)n_tokens;
}

/* The job's kernels for weight i at n_tokens tokens and the layout of the activations they read:
 * tiles the layout ellm_gemm_act_layout names, single rows their set's extended layout where it
 * has a kernel for one, everything else plain rows. */
static ellm_act_layout choose_kernels(matmul_job *job, int i, int64_t n_tokens)
{
    const ellm_type_kernels *k = ellm_kernels_for(job->w[i]->type);
    job->k[i] = k;
    job->gemm[i] = n_tokens >= GEMM_MIN_TOKENS ? ellm_gemm_for(job->w[i]->type) : NULL;
    job->by_four[i] = NULL;
    job->gemm_by_four[i] = NULL;
    if (job->w[i]->row_order == ELLM_ROWS_BY_FOUR) {
        if (!k->vec_dot_by_four || !k->gemm_by_four) {
            /* A set that was not the one the weight was laid out for (the tests' scalar logits):
             * the portable kernel, a token at a time on plain rows. */
            job->by_four[i] = ellm_vec_dot_q4_0_by_four_scalar;
            job->gemm[i] = NULL;
            job->ext_dot[i] = false;
            return ELLM_ACT_PLAIN;
        }
        job->by_four[i] = k->vec_dot_by_four;
        job->gemm_by_four[i] = job->gemm[i] ? k->gemm_by_four : NULL;
    }
    job->ext_dot[i] = !job->gemm[i] && k->vec_dot_ext;
    if (job->ext_dot[i])
        return k->ext_layout;
    return job->gemm[i] ? ellm_gemm_act_layout(job->w[i]->type) : ELLM_ACT_PLAIN;
}

/* Converts x for kernels k in layout (the tiled layout's gemm calls chunk tokens each) to dst,
 * and with plain, plain Q8_K rows there too; returns the rows the kernels read. */
static const uint8_t *convert_activations(ellm_threadpool *pool, const ellm_type_kernels *k,
                                          ellm_act_layout layout, const float *x, int64_t n_in,
                                          int64_t n_tokens, int64_t chunk, uint8_t *dst,
                                          uint8_t *plain)
{
    if (k->vec_dot_type == ELLM_TYPE_F32)
        return (const uint8_t *)x;
    convert_job cj = {.type = k->vec_dot_type,
                      .layout = layout,
                      .x = x,
                      .dst = dst,
                      .n_in = n_in,
                      .n_tokens = n_tokens,
                      .row_bytes = ellm_act_row_bytes(layout, k->vec_dot_type, n_in),
                      .chunk = chunk,
                      .plain = plain,
                      .plain_row_bytes = ellm_act_row_bytes(ELLM_ACT_PLAIN, ELLM_TYPE_Q8_K, n_in)};
    ellm_threadpool_run(n_tokens > 1 ? pool : NULL, convert_task, &cj);
    return dst;
}

/* The job's rows against activations xq already in the layout its kernels (chosen) read. */
static void run_rows(ellm_threadpool *pool, matmul_job *job, ellm_act_layout layout,
                     const uint8_t *xq)
{
    const ellm_tensor *const *w = job->w;
    for (int i = 0; i < job->n_w; i++)
        job->total_rows += w[i]->ne[1];
    job->span = job->combine ? w[0]->ne[1] : job->total_rows;
    /* Chunks small enough that threads finish together, large enough that a chunk's weights
     * are reused over every token of a prefill while they sit in L2. A decode reuses nothing, so
     * its chunks only halve what is left of a range: a gate/up pair reads both weights chunk by
     * chunk, and 128-row chunks broke both streams every 128 rows. */
    int threads = ellm_threadpool_size(pool);
    bool prefill = job->n_tokens >= GEMM_MIN_TOKENS;
    int64_t most = prefill ? 128 : job->span;
    int64_t chunk = prefill ? job->span / (threads * 8) : job->span;
    chunk = (chunk + ROW_TILE - 1) / ROW_TILE * ROW_TILE;
    job->chunk_rows = chunk < ROW_TILE ? ROW_TILE : chunk > most ? most : chunk;
    job->n_ranges = threads < MAX_RANGES ? threads : MAX_RANGES;
    for (int r = 0; r < job->n_ranges; r++) {
        int64_t start = job->span * r / job->n_ranges / ROW_TILE * ROW_TILE;
        int64_t end = job->span * (r + 1) / job->n_ranges / ROW_TILE * ROW_TILE;
        atomic_init(&job->ranges[r].next, start);
        job->ranges[r].end = r + 1 == job->n_ranges ? job->span : end;
    }
    job->xq_row_bytes = ellm_act_row_bytes(layout, job->k[0]->vec_dot_type, w[0]->ne[0]);
    job->chunk_tokens = chunk_tokens(layout, job->xq_row_bytes, job->n_tokens);
    job->xq = xq;
    ellm_threadpool_run_shared(pool, matmul_task, job);
}

/* Weights of one input and activation type whose kernels read two or more layouts: the weights
 * of each layout in one dispatch. Tiled and plain Q8_K rows (IQ4_XS attn_q/attn_k beside a Q5_K
 * attn_v) come out of one quantization, which the tiled weights' scratch has room for
 * (ellm_matmul_scratch_bytes); other mixes are converted a layout at a time. */
static void matmul_by_layout(ellm_threadpool *pool, const ellm_tensor *const *w, int n_w,
                             const ellm_act_layout *layouts, const float *x, int64_t n_tokens,
                             float *const *y, ellm_rows_combine_fn combine, uint8_t *scratch)
{
    const ellm_type_kernels *k = ellm_kernels_for(w[0]->type);
    int64_t n_in = w[0]->ne[0];
    bool tiled_and_plain = k->vec_dot_type == ELLM_TYPE_Q8_K;
    for (int i = 0; i < n_w; i++)
        tiled_and_plain &= layouts[i] == ELLM_ACT_Q8_K_TILED || layouts[i] == ELLM_ACT_PLAIN;
    uint8_t *plain = NULL;
    if (tiled_and_plain) {
        size_t tiled_bytes = ellm_act_row_bytes(ELLM_ACT_Q8_K_TILED, k->vec_dot_type, n_in);
        plain = scratch + tiled_bytes * (size_t)n_tokens;
        int64_t chunk = chunk_tokens(ELLM_ACT_Q8_K_TILED, tiled_bytes, n_tokens);
        convert_activations(pool, k, ELLM_ACT_Q8_K_TILED, x, n_in, n_tokens, chunk, scratch, plain);
    }
    bool done[MAX_WEIGHTS] = {false};
    for (int i = 0; i < n_w; i++) {
        if (done[i])
            continue;
        const ellm_tensor *group[MAX_WEIGHTS];
        float *group_y[MAX_WEIGHTS];
        matmul_job job = {.w = group, .y = group_y, .n_tokens = n_tokens};
        for (int m = i; m < n_w; m++) {
            if (done[m] || layouts[m] != layouts[i])
                continue;
            done[m] = true;
            group[job.n_w] = w[m];
            group_y[job.n_w] = y[m];
            choose_kernels(&job, job.n_w++, n_tokens);
        }
        const uint8_t *xq = layouts[i] == ELLM_ACT_Q8_K_TILED ? scratch : plain;
        if (!tiled_and_plain) {
            uint64_t row_bytes = ellm_act_row_bytes(layouts[i], k->vec_dot_type, n_in);
            xq = convert_activations(pool, k, layouts[i], x, n_in, n_tokens,
                                     chunk_tokens(layouts[i], row_bytes, n_tokens), scratch, NULL);
        }
        run_rows(pool, &job, layouts[i], xq);
    }
    if (combine)
        combine(y[0], y[1], n_tokens * w[0]->ne[1]);
}

/* Every weight's rows against x in one dispatch (a dispatch per activation layout where their
 * kernels read different ones, one by one where their activation types or input sizes differ);
 * with combine, w[0] and w[1] are a gate/up pair of equal shape. */
static void matmul_dispatch(ellm_threadpool *pool, const ellm_tensor *const *w, int n_w,
                            const float *x, int64_t n_tokens, float *const *y,
                            ellm_rows_combine_fn combine, void *scratch)
{
    matmul_job job = {.w = w, .y = y, .n_w = n_w, .n_tokens = n_tokens, .combine = combine};
    bool one_by_one = n_w > MAX_WEIGHTS, one_layout = true;
    ellm_act_layout layouts[MAX_WEIGHTS] = {ELLM_ACT_PLAIN};
    /* Rows are dealt out in ranges of 16 of the weights numbered one after another (or of those
     * of one layout): an ELLM_ROWS_BY_FOUR weight's groups start on multiples of 4 only when every
     * weight but the last has a multiple of 4 rows. Otherwise each goes alone. */
    bool by_four = false, ragged = false;
    for (int i = 0; i < n_w; i++) {
        by_four |= w[i]->row_order == ELLM_ROWS_BY_FOUR;
        ragged |= i + 1 < n_w && w[i]->ne[1] % ELLM_BY_FOUR != 0;
    }
    one_by_one |= by_four && ragged;
    for (int i = 0; i < n_w && !one_by_one; i++) {
        layouts[i] = choose_kernels(&job, i, n_tokens);
        one_layout &= layouts[i] == layouts[0];
        one_by_one = w[i]->ne[0] != w[0]->ne[0] || job.k[i]->vec_dot_type != job.k[0]->vec_dot_type;
    }
    if (one_by_one) {
        for (int m = 0; m < n_w; m++)
            ellm_matmul(pool, w[m], x, n_tokens, y[m], scratch);
        if (combine)
            combine(y[0], y[1], n_tokens * w[0]->ne[1]);
        return;
    }
    if (!one_layout) {
        matmul_by_layout(pool, w, n_w, layouts, x, n_tokens, y, combine, scratch);
        return;
    }
    uint64_t row_bytes = ellm_act_row_bytes(layouts[0], job.k[0]->vec_dot_type, w[0]->ne[0]);
    const uint8_t *xq = convert_activations(pool, job.k[0], layouts[0], x, w[0]->ne[0], n_tokens,
                                            chunk_tokens(layouts[0], row_bytes, n_tokens), scratch,
                                            NULL);
    run_rows(pool, &job, layouts[0], xq);
}

void ellm_matmul_multi(ellm_threadpool *pool, const ellm_tensor *const *w, int n_w, const float *x,
                       int64_t n_tokens, float *const *y, void *scratch)
{
    matmul_dispatch(pool, w, n_w, x, n_tokens, y, NULL, scratch);
}

void ellm_matmul_gated(ellm_threadpool *pool, const ellm_tensor *gate, const ellm_tensor *up,
                       const float *x, int64_t n_tokens, float *gate_y, float *up_y,
                       ellm_rows_combine_fn combine, void *scratch)
{
    const ellm_tensor *w[2] = {gate, up};
    float *y[2] = {gate_y, up_y};
    matmul_dispatch(pool, w, 2, x, n_tokens, y, combine, scratch);
}

void ellm_matmul(ellm_threadpool *pool, const ellm_tensor *w, const float *x, int64_t n_tokens,
                 float *y, void *scratch)
{
    ellm_matmul_multi(pool, &w, 1, x, n_tokens, &y, scratch);
}
