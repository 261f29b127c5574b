/* Decode gemv kernels against a plain streaming read of the same bytes, in one process: for each
 * weight type, a matrix larger than the last-level cache is multiplied by one activation row with
 * the kernel set's decode kernels (what ellm_matmul calls for one token: vec_dot_rows for groups
 * of rows where the set has it, vec_dot_ext where the set has one, else vec_dot; where there is a
 * multi-row kernel, the single-row kernel is timed too), and the same number of bytes is read by
 * a simple vector loop; the two are interleaved and the best of N of each is kept, so that a busy
 * shared machine slows both alike. The ratio kernel ÷ read is how close a kernel comes to being
 * memory-bound.
 *
 * --threads N splits every matrix's rows into N contiguous shares, one per thread, as a decode
 * step's threads share a matmul; a repetition costs its busiest thread's CPU time (a thread
 * waiting for its partner spins, so the wait is charged), and the CPU share printed says how much
 * of the kernel's best repetition the threads really ran together. --rows R replaces the one
 * large matrix by as many R-row matrices as fill --mib, each one job that every thread finishes
 * before the next starts (a model's small matrices: 256 rows for tinyllama's k and v).
 * --chunk C deals each matrix out in C-row chunks in turn (thread t: chunks t, t + N, ...)
 * instead of contiguous shares. --hugepages 1 asks for 2 MiB pages for the weights and the read's
 * buffer (MADV_HUGEPAGE, as the model's mapping asks; Linux only), so that the figures compare
 * with a model whose weights the kernel maps by 2 MiB entries. --by-four 1 lays the matrices out
 * in ELLM_ROWS_BY_FOUR order (Q4_0, in sets with kernels for it) and times vec_dot_by_four in the
 * multi-row pass, as the web build's decode runs such matrices (its single-row pass then reads the
 * same bytes as plain rows: its timing holds, its values do not).
 *
 *   build/gemv_micro [--kernels SET] [--threads 1] [--chunk 0] [--mib 256] [--rows 0] [--reps 7]
 *                    [--cols 2048] [--hugepages 0] [--by-four 0] [TYPE...]
 *
 * Not a test: it asserts nothing and its numbers depend on the machine. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#define _DEFAULT_SOURCE         /* madvise */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "micro_util.h"
#include "quant/quant.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

/* Reads every byte once with four independent 32-byte streams of XORs: no arithmetic to speak
 * of, so it runs at the rate one core can pull bytes from memory. */
#if defined(__x86_64__)
__attribute__((target("avx2"))) static uint64_t stream_read(const uint8_t *p, size_t bytes)
{
    __m256i acc[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                      _mm256_setzero_si256()};
    size_t i = 0;
    for (; i + 128 <= bytes; i += 128)
        for (int k = 0; k < 4; k++)
            acc[k] = _mm256_xor_si256(acc[k],
                                      _mm256_loadu_si256((const __m256i *)(p + i + 32 * k)));
    __m256i all = _mm256_xor_si256(_mm256_xor_si256(acc[0], acc[1]),
                                   _mm256_xor_si256(acc[2], acc[3]));
    uint64_t lanes[4];
    _mm256_storeu_si256((__m256i *)lanes, all);
    return lanes[0] ^ lanes[1] ^ lanes[2] ^ lanes[3];
}
#else
static uint64_t stream_read(const uint8_t *p, size_t bytes)
{
    uint64_t acc[4] = {0, 0, 0, 0};
    for (size_t i = 0; i + 32 <= bytes; i += 32)
        for (int k = 0; k < 4; k++) {
            uint64_t v;
            memcpy(&v, p + i + 8 * k, 8);
            acc[k] ^= v;
        }
    return acc[0] ^ acc[1] ^ acc[2] ^ acc[3];
}
#endif

typedef struct bench_result {
    double kernel_gbs, read_gbs, single_gbs; /* single_gbs: 0 without a multi-row kernel */
    double share; /* the threads' CPU time over threads x wall in the kernel's best repetition */
    int together; /* the kernel's repetitions with a CPU share of at least 0.75 */
    float checksum;
} bench_result;

enum { PASS_READ, PASS_KERNEL, PASS_SINGLE, N_PASSES };

/* bytes (rounded up) 2 MiB-aligned and advised for 2 MiB pages before anything touches them, or
 * 64-byte aligned as before. */
static void *bench_alloc(size_t bytes, bool huge)
{
    enum { HUGE = 2 << 20 };
    if (!huge)
        return aligned_alloc(64, (bytes + 63) / 64 * 64);
    size_t size = (bytes + HUGE - 1) / HUGE * HUGE;
    void *p = aligned_alloc(HUGE, size);
#if defined(MADV_HUGEPAGE)
    if (p)
        madvise(p, size, MADV_HUGEPAGE);
#endif
    return p;
}

/* copies matrices of rows x cols one after another: each copy is one job, its rows split between
 * the threads, all of them finishing it before any starts the next (a decode step's matmuls are
 * separate pool dispatches, and the matrices together are larger than the cache). */
typedef struct bench_matrix {
    const ellm_type_kernels *k;
    ellm_vec_dot_fn dot;
    const uint8_t *w, *plain;
    uint64_t row_bytes;
    int64_t rows, copies, cols;
    int64_t chunk; /* 0: contiguous shares; else chunks of this many rows dealt out in turn */
    const void *xq;
    float *y;
} bench_matrix;

/* --by-four: the matrices laid out in ELLM_ROWS_BY_FOUR order where the set reads them so. */
static bool by_four_asked;

static bool by_four(const ellm_type_kernels *k) { return by_four_asked && k->vec_dot_by_four; }

static uint64_t run_rows(const bench_matrix *m, int pass, int64_t copy, int64_t r0, int64_t r1)
{
    size_t base = (size_t)copy * (size_t)m->rows * m->row_bytes;
    if (pass == PASS_READ)
        return stream_read(m->plain + base + (size_t)r0 * m->row_bytes,
                           (size_t)(r1 - r0) * m->row_bytes);
    float *y = m->y + copy * m->rows;
    const uint8_t *w = m->w + base;
    int64_t r = r0;
    if (pass == PASS_KERNEL && by_four(m->k))
        for (; r + ELLM_BY_FOUR <= r1; r += ELLM_BY_FOUR)
            m->k->vec_dot_by_four(m->cols, &y[r], w + (size_t)r * m->row_bytes, m->row_bytes,
                                  m->xq);
    if (pass == PASS_KERNEL && m->k->vec_dot_rows)
        for (; r + ELLM_DOT_ROWS <= r1; r += ELLM_DOT_ROWS)
            m->k->vec_dot_rows(m->cols, &y[r], w + (size_t)r * m->row_bytes, m->row_bytes, m->xq);
    for (; r < r1; r++)
        m->dot(m->cols, &y[r], w + (size_t)r * m->row_bytes, m->xq);
    return 0;
}

/* The pool's way of waiting: spin on a generation count, then yield while the partner is away. */
typedef struct spin_barrier {
    atomic_int arrived, generation;
    int n;
} spin_barrier;

static void barrier_wait(spin_barrier *b)
{
    int gen = atomic_load(&b->generation);
    if (atomic_fetch_add(&b->arrived, 1) == b->n - 1) {
        atomic_store(&b->arrived, 0);
        atomic_fetch_add(&b->generation, 1);
        return;
    }
    for (long spins = 0; atomic_load(&b->generation) == gen; spins++)
        if (spins > 20000)
            sched_yield();
}

typedef struct bench_thread {
    const bench_matrix *m;
    spin_barrier *barrier;
    int ith, nth, reps;
    double *cpu; /* [rep][pass] thread CPU seconds */
    double *wall;
    uint64_t sink;
} bench_thread;

static double wall_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Every thread runs the same repetitions of the read, the kernel and (with a multi-row kernel)
 * the single rows, interleaved, each over its share of every copy's rows: a contiguous share
 * (rounded to whole multi-row groups), or with a chunk size, chunks ith, ith + nth, ... (what
 * ellm_matmul's claims from its shared counter give each thread when both run at one pace). */
static void *bench_thread_main(void *arg)
{
    bench_thread *t = arg;
    const bench_matrix *m = t->m;
    int64_t r0 = m->rows * t->ith / t->nth / ELLM_DOT_ROWS * ELLM_DOT_ROWS;
    int64_t r1 = t->ith + 1 == t->nth
                     ? m->rows
                     : m->rows * (t->ith + 1) / t->nth / ELLM_DOT_ROWS * ELLM_DOT_ROWS;
    int64_t step = m->rows;
    if (m->chunk > 0) {
        r0 = m->chunk * t->ith;
        r1 = r0 + m->chunk;
        step = m->chunk * t->nth;
    }
    int passes = m->k->vec_dot_rows ? N_PASSES : PASS_SINGLE;
    for (int rep = 0; rep < t->reps; rep++)
        for (int pass = 0; pass < passes; pass++) {
            barrier_wait(t->barrier);
            double c0 = bench_thread_seconds(), w0 = wall_seconds();
            for (int64_t c = 0; c < m->copies; c++) {
                for (int64_t from = r0; from < m->rows; from += step) {
                    int64_t to = from + (r1 - r0) < m->rows ? from + (r1 - r0) : m->rows;
                    t->sink ^= run_rows(m, pass, c, from, to);
                }
                if (t->nth > 1)
                    barrier_wait(t->barrier);
            }
            t->cpu[rep * N_PASSES + pass] = bench_thread_seconds() - c0;
            t->wall[rep * N_PASSES + pass] = wall_seconds() - w0;
        }
    return NULL;
}

/* copies x rows x cols of the type made of a few distinct quantized rows repeated (the values do
 * not change the work; quantizing hundreds of MB would take minutes). rows 0: one matrix of
 * target_bytes. */
static bool bench_type(ellm_type type, size_t target_bytes, int64_t rows, int64_t cols,
                       int64_t chunk, int reps, int nth, bool huge, bench_result *res)
{
    const ellm_type_kernels *k = ellm_kernels_for(type);
    uint64_t row_bytes = 0;
    if (!k || !ellm_row_bytes(type, (uint64_t)cols, &row_bytes))
        return false;
    int64_t copies = 1;
    if (rows > 0) {
        copies = (int64_t)(target_bytes / (row_bytes * (uint64_t)rows));
        copies = copies < 1 ? 1 : copies;
    } else {
        rows = (int64_t)(target_bytes / row_bytes);
    }
    int64_t all_rows = rows * copies;
    size_t bytes = (size_t)all_rows * row_bytes;
    uint8_t *w = bench_alloc(bytes, huge);
    uint8_t *plain = bench_alloc(bytes, huge);
    float *x = malloc((size_t)cols * sizeof(float));
    float *y = malloc((size_t)all_rows * sizeof(float));
    enum { DISTINCT = 61 };
    uint64_t seed = 12345;
    for (int64_t c = 0; c < cols; c++)
        x[c] = bench_uniform(&seed);
    for (int64_t r = 0; r < DISTINCT && r < all_rows; r++) {
        for (int64_t c = 0; c < cols; c++)
            x[c] = bench_uniform(&seed) * (1.0f + (float)(c % 7));
        ellm_quantize_row(type, x, w + (size_t)r * row_bytes, cols);
    }
    for (int64_t r = DISTINCT; r < all_rows; r++)
        memcpy(w + (size_t)r * row_bytes, w + (size_t)(r % DISTINCT) * row_bytes, row_bytes);
    memset(plain, 1, bytes);
    if (by_four(k)) {
        void *scratch = malloc(ELLM_BY_FOUR * row_bytes);
        for (int64_t c = 0; c < copies; c++)
            ellm_q4_0_rows_by_four(w + (size_t)(c * rows) * row_bytes, rows, row_bytes, scratch);
        free(scratch);
    }
    for (int64_t c = 0; c < cols; c++)
        x[c] = bench_uniform(&seed);
    /* The activation row in the layout the decode path gives the kernel. */
    ellm_act_layout layout = k->vec_dot_ext ? k->ext_layout : ELLM_ACT_PLAIN;
    size_t xq_bytes = ellm_act_row_bytes(layout, k->vec_dot_type, cols);
    void *xq = aligned_alloc(64, (xq_bytes + 63) / 64 * 64);
    ellm_quantize_act(layout, k->vec_dot_type, x, xq, cols);

    bench_matrix m = {.k = k,
                      .dot = k->vec_dot_ext ? k->vec_dot_ext : k->vec_dot,
                      .w = w,
                      .plain = plain,
                      .row_bytes = row_bytes,
                      .rows = rows,
                      .copies = copies,
                      .cols = cols,
                      .chunk = chunk,
                      .xq = xq,
                      .y = y};
    spin_barrier barrier = {.n = nth};
    bench_thread *th = calloc((size_t)nth, sizeof *th);
    pthread_t *ids = calloc((size_t)nth, sizeof *ids);
    for (int i = 0; i < nth; i++) {
        th[i] = (bench_thread){.m = &m, .barrier = &barrier, .ith = i, .nth = nth, .reps = reps};
        th[i].cpu = calloc((size_t)reps * N_PASSES, sizeof(double));
        th[i].wall = calloc((size_t)reps * N_PASSES, sizeof(double));
    }
    for (int i = 1; i < nth; i++)
        pthread_create(&ids[i], NULL, bench_thread_main, &th[i]);
    bench_thread_main(&th[0]);
    for (int i = 1; i < nth; i++)
        pthread_join(ids[i], NULL);

    /* A repetition takes as long as its busiest thread's CPU time (waiting at a barrier spins,
     * so a thread held up by its partner is charged for it). On a loaded machine the threads
     * often run one at a time, which is not the contention being measured: the best of the
     * repetitions in which they ran together (CPU share >= 0.75) is kept where there are any. */
    double best[N_PASSES] = {1e30, 1e30, 1e30};
    bool together[N_PASSES] = {false, false, false};
    uint64_t sink = 0;
    res->share = 0;
    res->together = 0;
    for (int rep = 0; rep < reps; rep++)
        for (int pass = 0; pass < N_PASSES; pass++) {
            double most = 0, sum = 0, wall = 0;
            for (int i = 0; i < nth; i++) {
                double c = th[i].cpu[rep * N_PASSES + pass], wt = th[i].wall[rep * N_PASSES + pass];
                most = c > most ? c : most;
                sum += c;
                wall = wt > wall ? wt : wall;
            }
            if (most <= 0)
                continue;
            double share = sum / (nth * wall);
            /* One thread has no partner to run with: its CPU time alone, as before. */
            bool with = nth > 1 && share >= 0.75;
            if (pass == PASS_KERNEL)
                res->together += with;
            if ((with && !together[pass]) || (with == together[pass] && most < best[pass])) {
                best[pass] = most;
                together[pass] = with;
                if (pass == PASS_KERNEL)
                    res->share = share;
            }
        }
    for (int i = 0; i < nth; i++) {
        sink ^= th[i].sink;
        free(th[i].cpu), free(th[i].wall);
    }
    res->read_gbs = (double)bytes / best[PASS_READ] * 1e-9;
    res->kernel_gbs = (double)bytes / best[PASS_KERNEL] * 1e-9;
    res->single_gbs = k->vec_dot_rows ? (double)bytes / best[PASS_SINGLE] * 1e-9 : 0;
    res->checksum = y[0] + y[all_rows / 2] + (float)(sink & 1);
    free(th), free(ids), free(w), free(plain), free(x), free(y), free(xq);
    return true;
}

static int usage(void)
{
    fprintf(stderr,
            "usage: gemv_micro [--kernels SET] [--threads N] [--chunk N] [--mib N] [--rows N] "
            "[--reps N] [--cols N] [--hugepages 0|1] [--by-four 0|1] [TYPE...]\n");
    return 2;
}

int main(int argc, char **argv)
{
    size_t mib = 256;
    int reps = 7;
    int64_t cols = 2048, rows = 0, chunk = 0;
    int threads = 1;
    bool huge = false;
    const char *default_types[] = {"q4_0", "q8_0", "q2_K", "q3_K",
                                   "q4_K", "q5_K", "q6_K", "iq4_xs"};
    const char **types = default_types;
    int n_types = (int)(sizeof default_types / sizeof default_types[0]);
    int a = 1;
    for (; a < argc && argv[a][0] == '-'; a += 2) {
        if (a + 1 >= argc)
            return usage();
        if (!strcmp(argv[a], "--kernels")) {
            if (!ellm_quant_use_kernel_set(argv[a + 1])) {
                fprintf(stderr, "gemv_micro: kernel set '%s' is not available on this CPU\n",
                        argv[a + 1]);
                return 2;
            }
        } else if (!strcmp(argv[a], "--mib") && atoi(argv[a + 1]) > 0) {
            mib = (size_t)atoi(argv[a + 1]);
        } else if (!strcmp(argv[a], "--reps") && atoi(argv[a + 1]) > 0) {
            reps = atoi(argv[a + 1]);
        } else if (!strcmp(argv[a], "--cols") && atoi(argv[a + 1]) > 0) {
            cols = atoi(argv[a + 1]);
        } else if (!strcmp(argv[a], "--rows") && atoi(argv[a + 1]) > 0) {
            rows = atoi(argv[a + 1]);
        } else if (!strcmp(argv[a], "--chunk") && atoi(argv[a + 1]) > 0) {
            chunk = atoi(argv[a + 1]) / ELLM_DOT_ROWS * ELLM_DOT_ROWS;
        } else if (!strcmp(argv[a], "--threads") && atoi(argv[a + 1]) > 0) {
            threads = atoi(argv[a + 1]);
        } else if (!strcmp(argv[a], "--by-four")) {
            by_four_asked = atoi(argv[a + 1]) != 0;
        } else if (!strcmp(argv[a], "--hugepages")) {
            huge = atoi(argv[a + 1]) != 0;
        } else {
            return usage();
        }
    }
    if (a < argc) {
        types = (const char **)(argv + a);
        n_types = argc - a;
    }
    if (rows > 0)
        printf("kernel set %s, %d thread(s), %lld x %lld matrices filling %zu MiB%s, best of %d\n",
               ellm_kernel_set_name(), threads, (long long)rows, (long long)cols, mib,
               huge ? " (2 MiB pages asked)" : "", reps);
    else
        printf("kernel set %s, %d thread(s), %zu MiB matrices of %lld columns%s, best of %d\n",
               ellm_kernel_set_name(), threads, mib, (long long)cols,
               huge ? " (2 MiB pages asked)" : "", reps);
    printf("| type | isa | kernel GB/s | read GB/s | kernel / read | single-row / read | CPU share "
           "| reps together |\n|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < n_types; i++) {
        ellm_type type;
        bench_result r;
        if (!ellm_type_from_name(types[i], &type)) {
            fprintf(stderr, "gemv_micro: unknown type '%s'\n", types[i]);
            return 2;
        }
        if (!bench_type(type, mib << 20, rows, cols, chunk, reps, threads, huge, &r)) {
            printf("| %s | no kernel or %lld columns do not split into its blocks |\n", types[i],
                   (long long)cols);
            continue;
        }
        printf("| %s | %s | %.1f | %.1f | %.2f |", types[i], ellm_kernels_for(type)->isa,
               r.kernel_gbs, r.read_gbs, r.kernel_gbs / r.read_gbs);
        if (r.single_gbs > 0)
            printf(" %.2f |", r.single_gbs / r.read_gbs);
        else
            printf(" - |");
        if (threads > 1)
            printf(" %.2f | %d |\n", r.share, r.together);
        else
            printf(" %.2f | - |\n", r.share);
        fflush(stdout);
        /* --by-four's single rows read the laid-out bytes as plain rows: any values. */
        if (r.checksum != r.checksum && !by_four(ellm_kernels_for(type)))
            fprintf(stderr, "gemv_micro: %s produced NaN\n", types[i]);
    }
    return 0;
}
