/* Machine measurements for `edgellm bench`. The AVX2/FMA and AVX-512 loops are compiled for that
 * ISA function by function and run only on CPUs that have it; elsewhere portable loops give a
 * (lower) figure. The FMA peak is the widest vector FMA the CPU has, so that an efficiency
 * computed against it is never flattered by measuring a narrower unit than the kernels use. */
#define _DEFAULT_SOURCE /* madvise, MADV_HUGEPAGE */
#define _POSIX_C_SOURCE 200809L
#include "machine.h"

#include <sys/mman.h>
#include <sys/wait.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/mapped_file.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define HAVE_X86 1
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

static double seconds_of(clockid_t clock)
{
    struct timespec t;
    clock_gettime(clock, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static double now(void) { return seconds_of(CLOCK_MONOTONIC); }

static bool has_avx2_fma(void)
{
#if defined(HAVE_X86)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return false;
#endif
}

static bool has_avx512f(void)
{
#if defined(HAVE_X86)
    __builtin_cpu_init();
    return has_avx2_fma() && __builtin_cpu_supports("avx512f");
#else
    return false;
#endif
}

/* One thread's share of a measurement: a loop that reads memory or does arithmetic. */
typedef struct machine_job {
    const char *arith; /* the arithmetic loop, named as machine_arith_peak_gops takes it */
    long iters;
    double work;        /* set by the loop: operations done (a multiply-add is two) */
    double cpu_seconds; /* the thread's CPU time in the loop */
    int64_t sink;       /* keeps the loops from being optimized away */
} machine_job;

typedef void (*machine_loop)(machine_job *j);

typedef struct slot {
    machine_loop loop;
    machine_job job;
} slot;

static void *run_slot(void *arg)
{
    slot *s = arg;
    double t0 = seconds_of(CLOCK_THREAD_CPUTIME_ID);
    s->loop(&s->job);
    s->job.cpu_seconds = seconds_of(CLOCK_THREAD_CPUTIME_ID) - t0;
    return NULL;
}

/* An arithmetic peak is what the cores can do, so it is each thread's work over the CPU time it
 * ran (summed over the threads), which other processes on a busy machine cannot lower; under
 * load, a wall-clock peak caught a slice of the cores and came out below what the kernels
 * reached in their own slices (efficiencies above 100 %). Memory bandwidth is shared by every
 * process, so it is timed by the wall clock (machine_read_bandwidth). Runs loop on `threads`
 * threads at once, `reps` times; the best total work per CPU second, in G per second; 0 when a
 * loop could not run (negative work). */
static double best_cpu_rate(machine_loop loop, machine_job proto, int threads, int reps)
{
    if (threads < 1)
        return 0;
    if (threads > 64)
        threads = 64;
    double best = 0;
    for (int rep = 0; rep < reps; rep++) {
        pthread_t t[64];
        slot slots[64];
        for (int i = 0; i < threads; i++) {
            slots[i] = (slot){loop, proto};
            pthread_create(&t[i], NULL, run_slot, &slots[i]);
        }
        double cpu_rate = 0;
        bool failed = false;
        for (int i = 0; i < threads; i++) {
            pthread_join(t[i], NULL);
            failed |= slots[i].job.work < 0;
            if (slots[i].job.cpu_seconds > 0)
                cpu_rate += slots[i].job.work / slots[i].job.cpu_seconds;
        }
        if (failed)
            return 0;
        /* More threads than CPUs take turns on them: their CPU-time rates add up to more than
         * the CPUs can do together. */
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        if (cpus > 0 && threads > cpus)
            cpu_rate *= (double)cpus / threads;
        best = cpu_rate / 1e9 > best ? cpu_rate / 1e9 : best;
    }
    return best;
}

#if defined(HAVE_X86)
__attribute__((target("avx2"))) static int64_t read_avx2(const uint8_t *p, size_t n)
{
    const __m256i *v = (const __m256i *)p;
    __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t k = 0; k + 4 <= n / 32; k += 4) {
        s0 = _mm256_add_epi64(s0, _mm256_load_si256(v + k));
        s1 = _mm256_add_epi64(s1, _mm256_load_si256(v + k + 1));
        s2 = _mm256_add_epi64(s2, _mm256_load_si256(v + k + 2));
        s3 = _mm256_add_epi64(s3, _mm256_load_si256(v + k + 3));
    }
    s0 = _mm256_add_epi64(_mm256_add_epi64(s0, s1), _mm256_add_epi64(s2, s3));
    return _mm256_extract_epi64(s0, 0);
}
#endif

/* One sequential pass over n bytes (a multiple of 128, 64-byte aligned). */
static int64_t read_pass(const uint8_t *p, size_t n)
{
#if defined(HAVE_X86)
    if (has_avx2_fma())
        return read_avx2(p, n);
#endif
    const uint64_t *q = (const uint64_t *)p;
    uint64_t s = 0;
    for (size_t k = 0; k < n / 8; k++)
        s += q[k];
    return (int64_t)s;
}

/* The bandwidth measurement: threads that stay up across the repetitions and start each one
 * together at a barrier, each reading its own contiguous slice front to back, as a decode step's
 * threads each read their share of a matrix's rows. The first measurements created the threads
 * inside a timing of about 20 ms and gave 30-79 GB/s on the same idle machine. */
typedef struct read_team {
    pthread_barrier_t start, done;
    uint8_t *buf;
    size_t per;   /* bytes per thread */
    int passes;   /* over its slice per repetition */
    int reps;     /* timed repetitions */
    bool touch;   /* first run: write the slices and read them once, untimed */
    double *wall; /* per repetition, timed by thread 0 */
    double *cpu;  /* per repetition: CPU seconds summed over the threads */
    pthread_mutex_t lock;
    uint64_t sink; /* unsigned: the sums of the bytes read wrap, they only keep the reads */
} read_team;

typedef struct read_member {
    read_team *team;
    int index;
} read_member;

static void *read_member_run(void *arg)
{
    read_member *me = arg;
    read_team *t = me->team;
    uint8_t *mine = t->buf + t->per * (size_t)me->index;
    uint64_t sink = 0;
    if (t->touch) { /* by the thread that reads it (first-touch places the pages near it) */
        memset(mine, 1, t->per);
        sink = (uint64_t)read_pass(mine, t->per);
    }
    for (int rep = 0; rep < t->reps; rep++) {
        pthread_barrier_wait(&t->start);
        double w0 = now(), c0 = seconds_of(CLOCK_THREAD_CPUTIME_ID);
        for (int k = 0; k < t->passes; k++)
            sink += (uint64_t)read_pass(mine, t->per);
        double c = seconds_of(CLOCK_THREAD_CPUTIME_ID) - c0;
        pthread_barrier_wait(&t->done);
        pthread_mutex_lock(&t->lock);
        t->cpu[rep] += c;
        if (me->index == 0)
            t->wall[rep] = now() - w0;
        t->sink += sink;
        pthread_mutex_unlock(&t->lock);
    }
    return NULL;
}

/* Runs the team; false when a thread could not be started. */
static bool read_team_run(read_team *t, int threads)
{
    pthread_t tid[64];
    read_member members[64];
    int started = 0;
    pthread_barrier_init(&t->start, NULL, (unsigned)threads);
    pthread_barrier_init(&t->done, NULL, (unsigned)threads);
    pthread_mutex_init(&t->lock, NULL);
    for (int i = 1; i < threads; i++, started++) {
        members[i] = (read_member){t, i};
        if (pthread_create(&tid[i], NULL, read_member_run, &members[i]))
            break;
    }
    bool ok = started == threads - 1;
    if (ok) {
        members[0] = (read_member){t, 0};
        read_member_run(&members[0]);
    }
    for (int i = 1; i <= started; i++)
        pthread_join(tid[i], NULL);
    pthread_barrier_destroy(&t->start);
    pthread_barrier_destroy(&t->done);
    pthread_mutex_destroy(&t->lock);
    return ok;
}

edgellm_page_advice machine_page_advice(void)
{
    const char *v = getenv("EDGELLM_HUGEPAGES");
    return v && (!strcmp(v, "0") || !strcmp(v, "off")) ? EDGELLM_PAGES_SMALL : EDGELLM_PAGES_HUGE;
}

#define HUGE_PAGE ((size_t)2 << 20)

/* The buffer gets the pages the weights' mapping asks for (EDGELLM_HUGEPAGES, machine_page_advice), so
 * that the bandwidth and the decode it is compared with pay the same TLB misses: a 2 MiB-aligned
 * anonymous region with MADV_HUGEPAGE (this kernel's THP mode is "madvise", so a plain
 * allocation gets 4 KiB pages), or MADV_NOHUGEPAGE. *region is what to unmap. */
static uint8_t *pages_like_weights(size_t bytes, uint8_t **region)
{
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    void *p = mmap(NULL, bytes + HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
                   0);
    if (p == MAP_FAILED)
        return NULL;
    *region = p;
    uint8_t *buf = (uint8_t *)(((uintptr_t)p + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    (void)madvise(buf, bytes,
                  machine_page_advice() == EDGELLM_PAGES_SMALL ? MADV_NOHUGEPAGE : MADV_HUGEPAGE);
    return buf;
#else
    *region = aligned_alloc(64, bytes);
    return *region;
#endif
}

static void free_pages_like_weights(uint8_t *region, size_t bytes)
{
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (region)
        munmap(region, bytes + HUGE_PAGE);
#else
    (void)bytes;
    free(region);
#endif
}

/* Best of ten repetitions of at least 50 ms each (0.5 s of reading): each long enough that the
 * start barrier's skew and the timer do not count, short enough that on a busy machine some
 * repetition may find all the threads running at once (repetitions of 0.3 s found none at load
 * 25: CPU share 0.04-0.16). */
enum { READ_REPS = 10 };
#define READ_MIN_SECONDS 0.05 /* of reading per timed repetition */

/* The bandwidth buffer, written once and kept for the measurements that follow. */
typedef struct read_buffer {
    uint8_t *buf, *region;
    size_t per; /* bytes per thread */
    int used;   /* threads */
    int passes; /* over a slice per repetition: at least READ_MIN_SECONDS of reading */
    double huge_fraction;
} read_buffer;

static void read_buffer_close(read_buffer *b)
{
    free_pages_like_weights(b->region, b->per * (size_t)b->used);
    b->region = b->buf = NULL;
}

static bool read_buffer_open(read_buffer *b, int threads)
{
    *b = (read_buffer){0};
    if (threads < 1)
        return false;
    b->used = threads > 64 ? 64 : threads;
    /* Far above the last-level cache (32 MiB per CCD on these EPYCs), so every pass comes from
     * memory. Not sized from sysconf's L3 figure: in this VM it reports 508 MiB, the host's. */
    size_t size = (size_t)512 << 20;
    b->per = size / (size_t)b->used / 128 * 128;
    b->buf = pages_like_weights(b->per * (size_t)b->used, &b->region);
    if (!b->buf)
        return false;
    double wall[1] = {0}, cpu[1] = {0};
    /* One pass to size the repetitions. */
    read_team t = {.buf = b->buf,
                   .per = b->per,
                   .passes = 1,
                   .reps = 1,
                   .touch = true,
                   .wall = wall,
                   .cpu = cpu};
    if (!read_team_run(&t, b->used) || wall[0] <= 0) {
        read_buffer_close(b);
        return false;
    }
    ellm_page_counts pages;
    b->huge_fraction = ellm_page_counts_of(b->buf, b->per * (size_t)b->used, NULL, &pages) &&
                               pages.resident
                           ? (double)pages.huge / (double)pages.resident
                           : -1;
    double passes = READ_MIN_SECONDS / wall[0] + 1;
    b->passes = passes > 1000 ? 1000 : (int)passes;
    return true;
}

static machine_bandwidth read_buffer_measure(read_buffer *b, int reps)
{
    machine_bandwidth r = {.huge_fraction = b->huge_fraction};
    if (reps < 1)
        reps = 1;
    if (reps > READ_REPS)
        reps = READ_REPS;
    double wall[READ_REPS] = {0}, cpu[READ_REPS] = {0};
    read_team t = {
        .buf = b->buf, .per = b->per, .passes = b->passes, .reps = reps, .wall = wall, .cpu = cpu};
    if (!read_team_run(&t, b->used))
        return r;
    double bytes = (double)b->per * b->used * t.passes, rates[READ_REPS];
    for (int rep = 0; rep < reps; rep++) {
        rates[rep] = wall[rep] > 0 ? bytes / wall[rep] / 1e9 : 0;
        if (rates[rep] > r.gbs) {
            r.gbs = rates[rep];
            r.cpu_share = cpu[rep] / (wall[rep] * b->used);
        }
    }
    double lo = rates[0];
    for (int rep = 1; rep < reps; rep++)
        lo = rates[rep] < lo ? rates[rep] : lo;
    r.spread = r.gbs > 0 ? (r.gbs - lo) / r.gbs : 0;
    return r;
}

machine_bandwidth machine_read_bandwidth(int threads)
{
    machine_bandwidth r = {0};
    read_buffer b;
    if (!read_buffer_open(&b, threads))
        return r;
    r = read_buffer_measure(&b, READ_REPS);
    read_buffer_close(&b);
    return r;
}

/* The probe's process: answers each request (a repetition count) with a measurement over one
 * buffer written at the first request, until the benchmark closes the pipe. */
struct machine_bandwidth_probe {
    pid_t pid;
    int request_fd, answer_fd;
};

/* All n bytes over a pipe, either way; false at end of file or on an error. */
static bool pipe_transfer(int fd, void *data, size_t n, bool writing)
{
    char *p = data;
    while (n > 0) {
        ssize_t k = writing ? write(fd, p, n) : read(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return false;
        p += k, n -= (size_t)k;
    }
    return true;
}

static void probe_serve(int request_fd, int answer_fd, int threads)
{
    read_buffer b;
    bool open = false;
    int32_t reps;
    while (pipe_transfer(request_fd, &reps, sizeof reps, false)) {
        machine_bandwidth r = {0};
        if (!open)
            open = read_buffer_open(&b, threads);
        if (open)
            r = read_buffer_measure(&b, reps);
        if (!pipe_transfer(answer_fd, &r, sizeof r, true))
            break;
    }
    if (open)
        read_buffer_close(&b);
}

machine_bandwidth_probe *machine_bandwidth_probe_start(int threads)
{
    int request[2], answer[2];
    machine_bandwidth_probe *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    if (pipe(request) != 0) {
        free(p);
        return NULL;
    }
    if (pipe(answer) != 0) {
        close(request[0]), close(request[1]);
        free(p);
        return NULL;
    }
    /* A probe that died (killed, out of memory) makes the next request a failed write, not a
     * SIGPIPE that would end the benchmark. */
    signal(SIGPIPE, SIG_IGN);
    fflush(NULL); /* nothing buffered is written twice */
    pid_t pid = fork();
    if (pid == 0) {
        close(request[1]), close(answer[0]);
        probe_serve(request[0], answer[1], threads);
        _exit(0);
    }
    close(request[0]), close(answer[1]);
    if (pid < 0) {
        close(request[1]), close(answer[0]);
        free(p);
        return NULL;
    }
    *p = (machine_bandwidth_probe){pid, request[1], answer[0]};
    return p;
}

bool machine_bandwidth_probe_read(machine_bandwidth_probe *p, int reps, machine_bandwidth *out)
{
    int32_t n = reps;
    *out = (machine_bandwidth){0};
    return p && pipe_transfer(p->request_fd, &n, sizeof n, true) &&
           pipe_transfer(p->answer_fd, out, sizeof *out, false) && out->gbs > 0;
}

void machine_bandwidth_probe_stop(machine_bandwidth_probe *p)
{
    if (!p)
        return;
    close(p->request_fd); /* the probe reads the end of the requests and leaves */
    close(p->answer_fd);
    while (waitpid(p->pid, NULL, 0) < 0 && errno == EINTR) {
    }
    free(p);
}

/* Arithmetic loops: independent accumulator chains of the instructions the kernels are built on.
 * In the integer ones the operand registers pass through an empty asm each step so the compiler
 * cannot hoist the loop-invariant products out. */
#if defined(HAVE_X86)
__attribute__((target("avx2,fma"))) static void fma_avx2(machine_job *j)
{
    /* 10 independent chains cover the FMA latency x throughput of current cores. */
    __m256 a[10], m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    for (int k = 0; k < 10; k++)
        a[k] = _mm256_set1_ps((float)k);
    for (long i = 0; i < j->iters; i++)
        for (int k = 0; k < 10; k++)
            a[k] = _mm256_fmadd_ps(a[k], m, c);
    __m256 s = a[0];
    for (int k = 1; k < 10; k++)
        s = _mm256_add_ps(s, a[k]);
    j->sink = (int64_t)_mm256_cvtss_f32(s);
    j->work = 2.0 * 8 * 10 * (double)j->iters;
}

__attribute__((target("avx512f"))) static void fma_avx512(machine_job *j)
{
    /* 12 chains: two 512-bit FMA units of 4-cycle latency need at least 8 in flight. */
    __m512 a[12], m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
    for (int k = 0; k < 12; k++)
        a[k] = _mm512_set1_ps((float)k);
    for (long i = 0; i < j->iters; i++)
        for (int k = 0; k < 12; k++)
            a[k] = _mm512_fmadd_ps(a[k], m, c);
    __m512 s = a[0];
    for (int k = 1; k < 12; k++)
        s = _mm512_add_ps(s, a[k]);
    j->sink = (int64_t)_mm512_reduce_add_ps(s);
    j->work = 2.0 * 16 * 12 * (double)j->iters;
}

__attribute__((target("avx512f,avx512bw,avx512vnni"))) static void int8_vnni512(machine_job *j)
{
    /* vpdpbusd: 64 u8 x s8 products summed into 16 int32 lanes. */
    __m512i acc[12], a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(-2);
    for (int k = 0; k < 12; k++)
        acc[k] = _mm512_set1_epi32(k);
    for (long i = 0; i < j->iters; i++) {
        __asm__ volatile("" : "+v"(a), "+v"(b));
        for (int k = 0; k < 12; k++)
            acc[k] = _mm512_dpbusd_epi32(acc[k], a, b);
    }
    for (int k = 1; k < 12; k++)
        acc[0] = _mm512_add_epi32(acc[0], acc[k]);
    /* one lane keeps the chains live; a reduction in C would overflow int (UB) on long runs */
    j->sink = _mm_cvtsi128_si32(_mm512_castsi512_si128(acc[0]));
    j->work = 2.0 * 64 * 12 * (double)j->iters;
}

__attribute__((target("avx2"))) static void int8_avx2(machine_job *j)
{
    /* vpmaddubsw (32 u8 x s8 products in 16 pairs), vpmaddwd by ones, vpaddd: the sequence
     * every AVX2 integer kernel reduces a 32-byte block with. */
    __m256i acc[8], a = _mm256_set1_epi8(3), b = _mm256_set1_epi8(-2), ones = _mm256_set1_epi16(1);
    for (int k = 0; k < 8; k++)
        acc[k] = _mm256_set1_epi32(k);
    for (long i = 0; i < j->iters; i++) {
        /* Per chain: with one barrier per step the eight identical products were computed once,
         * and the loop timed the additions. */
        for (int k = 0; k < 8; k++) {
            __asm__ volatile("" : "+x"(a));
            acc[k] = _mm256_add_epi32(acc[k], _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), ones));
        }
    }
    for (int k = 1; k < 8; k++)
        acc[0] = _mm256_add_epi32(acc[0], acc[k]);
    j->sink = _mm256_extract_epi32(acc[0], 0);
    j->work = 2.0 * 32 * 8 * (double)j->iters;
}
#endif

#if defined(__aarch64__)
#include <arm_neon.h>
__attribute__((target("arch=armv8.2-a+dotprod"))) static void int8_sdot(machine_job *j)
{
    /* sdot: 16 s8 x s8 products summed into 4 int32 lanes. */
    int32x4_t acc[8];
    int8x16_t a = vdupq_n_s8(3), b = vdupq_n_s8(-2);
    for (int k = 0; k < 8; k++)
        acc[k] = vdupq_n_s32(k);
    for (long i = 0; i < j->iters; i++) {
        __asm__ volatile("" : "+w"(a), "+w"(b));
        for (int k = 0; k < 8; k++)
            acc[k] = vdotq_s32(acc[k], a, b);
    }
    for (int k = 1; k < 8; k++)
        acc[0] = vaddq_s32(acc[0], acc[k]);
    j->sink = vgetq_lane_s32(acc[0], 0);
    j->work = 2.0 * 16 * 8 * (double)j->iters;
}

static void int8_neon(machine_job *j)
{
    /* smull + smlal2 (16 products as int16) then sadalp into int32. */
    int32x4_t acc[8];
    int8x16_t a = vdupq_n_s8(3), b = vdupq_n_s8(-2);
    for (int k = 0; k < 8; k++)
        acc[k] = vdupq_n_s32(k);
    for (long i = 0; i < j->iters; i++) {
        __asm__ volatile("" : "+w"(a), "+w"(b));
        for (int k = 0; k < 8; k++) {
            int16x8_t p = vmull_s8(vget_low_s8(a), vget_low_s8(b));
            acc[k] = vpadalq_s16(acc[k], vmlal_high_s8(p, a, b));
        }
    }
    for (int k = 1; k < 8; k++)
        acc[0] = vaddq_s32(acc[0], acc[k]);
    j->sink = vgetq_lane_s32(acc[0], 0);
    j->work = 2.0 * 16 * 8 * (double)j->iters;
}

static void f32_fma_neon(machine_job *j)
{
    float32x4_t acc[10], m = vdupq_n_f32(0.999999f), c = vdupq_n_f32(1e-7f);
    for (int k = 0; k < 10; k++)
        acc[k] = vdupq_n_f32((float)k);
    for (long i = 0; i < j->iters; i++)
        for (int k = 0; k < 10; k++)
            acc[k] = vfmaq_f32(c, acc[k], m);
    for (int k = 1; k < 10; k++)
        acc[0] = vaddq_f32(acc[0], acc[k]);
    j->sink = (int32_t)vgetq_lane_f32(acc[0], 0);
    j->work = 2.0 * 4 * 10 * (double)j->iters;
}

static bool has_sdot(void)
{
#if defined(__linux__)
    return (getauxval(AT_HWCAP) & (1 << 20)) != 0; /* HWCAP_ASIMDDP */
#else
    return false;
#endif
}
#endif

/* Runs the loop of j->arith; work -1 when this CPU has no such instructions. */
static void arith_loop(machine_job *j)
{
    const char *a = j->arith;
#if defined(HAVE_X86)
    __builtin_cpu_init();
    if (!strcmp(a, "int8-vnni512") && has_avx512f() && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vnni")) {
        int8_vnni512(j);
        return;
    }
    if (!strcmp(a, "int8-avx2") && has_avx2_fma()) {
        int8_avx2(j);
        return;
    }
    if (!strcmp(a, "f32-fma-avx512") && has_avx512f()) {
        fma_avx512(j);
        return;
    }
    if (!strcmp(a, "f32-fma-avx2") && has_avx2_fma()) {
        fma_avx2(j);
        return;
    }
#endif
#if defined(__aarch64__)
    if (!strcmp(a, "int8-sdot") && has_sdot()) {
        int8_sdot(j);
        return;
    }
    if (!strcmp(a, "int8-neon")) {
        int8_neon(j);
        return;
    }
    if (!strcmp(a, "f32-fma-neon")) {
        f32_fma_neon(j);
        return;
    }
#endif
    if (!strcmp(a, "scalar")) {
        /* The portable kernels' float multiply-adds, ten chains as in the FMA loop. */
        float v[10];
        for (int k = 0; k < 10; k++)
            v[k] = (float)k;
        for (long i = 0; i < j->iters; i++)
            for (int k = 0; k < 10; k++)
                v[k] = v[k] * 0.999999f + 1e-7f;
        j->sink = (int64_t)(v[0] + v[9]);
        j->work = 2.0 * 10 * (double)j->iters;
        return;
    }
    j->work = -1;
}

/* Peaks already measured in this process: a benchmark asks for the FMA peak both as the float
 * figure and as the attention's share of the arithmetic. */
typedef struct measured_peak {
    char arith[32];
    int threads;
    double gops;
} measured_peak;

static double measure_arith_peak(const char *arith, int threads);

double machine_arith_peak_gops(const char *arith, int threads)
{
    static measured_peak measured[16];
    static int n_measured;
    if (!arith)
        return 0;
    for (int i = 0; i < n_measured; i++)
        if (measured[i].threads == threads && !strcmp(measured[i].arith, arith))
            return measured[i].gops;
    double gops = measure_arith_peak(arith, threads);
    if (n_measured < 16 && strlen(arith) < sizeof measured[0].arith) {
        measured_peak *m = &measured[n_measured++];
        snprintf(m->arith, sizeof m->arith, "%s", arith);
        m->threads = threads;
        m->gops = gops;
    }
    return gops;
}

static double measure_arith_peak(const char *arith, int threads)
{
    /* Ten short runs (10-20 ms of CPU time each): sized to 0.1 s, the best of five came out up to
     * 24 % lower at load 25-34 (a longer run takes more interference even in CPU time, in this
     * VM), and the best of three short ones moved as much from run to run. */
    long iters = !strcmp(arith, "scalar") ? 20000000 : 10000000;
    return best_cpu_rate(arith_loop, (machine_job){.arith = arith, .iters = iters}, threads, 10);
}

double machine_fma_peak_gflops(int threads)
{
    return machine_arith_peak_gops(has_avx512f()    ? "f32-fma-avx512"
                                   : has_avx2_fma() ? "f32-fma-avx2"
                                                    : "scalar",
                                   threads);
}

const char *machine_fma_isa(void)
{
    return has_avx512f() ? "avx512" : has_avx2_fma() ? "avx2" : "scalar";
}

const char *machine_cpu_model(void)
{
    static char model[128] = "unknown";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return model;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "model name", 10)) {
            char *colon = strchr(line, ':');
            if (colon) {
                snprintf(model, sizeof model, "%s", colon + 2);
                model[strcspn(model, "\n")] = '\0';
            }
            break;
        }
    }
    fclose(f);
    return model;
}
