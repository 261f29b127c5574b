#define _POSIX_C_SOURCE 200809L
#include "core/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/status.h"

#ifdef __EMSCRIPTEN__
#include <emscripten/threading.h>
#endif

/* Workers spin briefly on a generation counter (a decode step dispatches over a hundred small
 * jobs, so waking through the kernel each time would dominate), then sleep on a condition
 * variable; the dispatcher takes the mutex only when one sleeps. The spin (6.5-12.5 us on these
 * machines, by the CPU's speed) is shorter than most serial gaps between a decode step's jobs
 * (7-10 us; 24 us after gate/up, quantizing the down projection's input; the sampling between
 * steps), so on an idle machine a worker is usually woken through the kernel (docs/performance.md,
 * "Where a decode step's time goes"). Longer waits were tried and dropped: polling
 * between sched_yield calls for 1 ms made decode 10-20x slower on a loaded machine (presumably
 * the scheduler queues a thread that keeps yielding behind every other runnable one, so each
 * job started late), and a 500 us pure spin 3x slower (it burnt the cores the dispatching thread
 * needed). */
#define SPIN_ITERATIONS 20000

struct ellm_threadpool {
    int n_threads;
    pthread_t *threads;
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    atomic_uint generation;
    atomic_int sleepers; /* workers inside (or entering) the condition-variable wait */
    atomic_uint gate;    /* the current job's JOB_* word */
    atomic_bool stop;
    ellm_task_fn fn;
    void *arg;
#ifdef __EMSCRIPTEN__
    atomic_int dispatcher_sleeping; /* the dispatcher waits on `gate` (wasm_wait_for_workers) */
#endif
};

/* The gate word of a job: the workers it still waits for, whether it is shared (workers join
 * it rather than all being owed) and closed to joiners, and the low bits of its generation, so
 * that a worker that saw an earlier generation cannot join a later job by mistake. A shared
 * job starts with no workers owed; the other kind with every worker. */
#define JOB_OWED_MASK 0x1ffu /* up to ELLM_THREADPOOL_MAX - 1 workers */
#define JOB_CLOSED 0x200u
#define JOB_SHARED 0x400u
#define JOB_TAG_SHIFT 11

_Static_assert(ELLM_THREADPOOL_MAX - 1 <= JOB_OWED_MASK, "the gate counts every worker");

static unsigned job_tag(unsigned generation) { return generation << JOB_TAG_SHIFT; }

static bool job_has_tag(unsigned gate, unsigned generation)
{
    return (gate >> JOB_TAG_SHIFT) == (job_tag(generation) >> JOB_TAG_SHIFT);
}

typedef struct worker_arg {
    ellm_threadpool *pool;
    int ith;
} worker_arg;

/* The generation after `seen`, or `seen` when the pool is stopping. */
static unsigned wait_for_job(ellm_threadpool *pool, unsigned seen)
{
    unsigned gen;
    for (int spins = 0; spins < SPIN_ITERATIONS; spins++) {
        gen = atomic_load_explicit(&pool->generation, memory_order_acquire);
        if (gen != seen || atomic_load_explicit(&pool->stop, memory_order_relaxed))
            return gen;
    }
    /* The sleeper count goes up before the generation is read again and the dispatcher reads
     * it after publishing a new generation (both sequentially consistent), so either this
     * worker sees the new job or the dispatcher sees a sleeper and broadcasts under the mutex. */
    pthread_mutex_lock(&pool->mutex);
    atomic_fetch_add(&pool->sleepers, 1);
    while ((gen = atomic_load(&pool->generation)) == seen && !atomic_load(&pool->stop))
        pthread_cond_wait(&pool->wake, &pool->mutex);
    atomic_fetch_sub(&pool->sleepers, 1);
    pthread_mutex_unlock(&pool->mutex);
    return gen;
}

/* Whether this worker takes part in job `generation`: always in a job owed by every worker; in
 * a shared one only while it is open, and counted in before the dispatcher may return. False
 * for a job the dispatcher has finished (or replaced) already: the worker must not touch its
 * function or argument then. */
static bool join_job(ellm_threadpool *pool, unsigned generation)
{
    unsigned gate = atomic_load(&pool->gate);
    for (;;) {
        if (!job_has_tag(gate, generation))
            return false;
        if (!(gate & JOB_SHARED))
            return true;
        if (gate & JOB_CLOSED)
            return false;
        if (atomic_compare_exchange_weak(&pool->gate, &gate, gate + 1))
            return true;
    }
}

static void leave_job(ellm_threadpool *pool)
{
    atomic_fetch_sub_explicit(&pool->gate, 1, memory_order_acq_rel);
#ifdef __EMSCRIPTEN__
    /* Pairs with the dispatcher's store then load in wasm_wait_for_workers: either it sees
     * this decrement or this sees it asleep. */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load(&pool->dispatcher_sleeping))
        emscripten_futex_wake(&pool->gate, 1);
#endif
}

static void *worker_main(void *p)
{
    worker_arg *wa = p;
    ellm_threadpool *pool = wa->pool;
    int ith = wa->ith;
    free(wa);
    unsigned seen = 0;
    for (;;) {
        seen = wait_for_job(pool, seen);
        if (atomic_load(&pool->stop))
            return NULL;
        if (!join_job(pool, seen))
            continue;
        pool->fn(pool->arg, ith, pool->n_threads);
        leave_job(pool);
    }
}

#ifdef __EMSCRIPTEN__
/* Emscripten's sched_yield does not give up the CPU (it only runs calls queued for this thread),
 * so the dispatcher's wait below would spin until its time slice ends whenever a worker is
 * descheduled (in a browser the page's own threads share the cores): on a loaded machine a
 * two-thread decode step took 1.9x the CPU time of one thread, 1.1x with this. After the same
 * spin as natively the dispatcher sleeps on the gate (Atomics.wait) and each worker leaving the
 * job wakes it; the timeout only bounds a wake that cannot be lost anyway. */
static void wasm_wait_for_workers(ellm_threadpool *pool)
{
    for (int spins = 0; spins < SPIN_ITERATIONS; spins++)
        if (!(atomic_load_explicit(&pool->gate, memory_order_acquire) & JOB_OWED_MASK))
            return;
    for (;;) {
        atomic_store(&pool->dispatcher_sleeping, 1);
        unsigned gate = atomic_load(&pool->gate);
        if (gate & JOB_OWED_MASK)
            emscripten_futex_wait(&pool->gate, gate, 1.0);
        atomic_store(&pool->dispatcher_sleeping, 0);
        if (!(gate & JOB_OWED_MASK))
            return;
    }
}
#endif

int ellm_cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

edgellm_status ellm_threadpool_create(int n_threads, ellm_threadpool **out)
{
    *out = NULL;
    if (n_threads <= 0)
        n_threads = ellm_cpu_count();
    if (n_threads > ELLM_THREADPOOL_MAX)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "%d threads requested; at most %d",
                         n_threads, ELLM_THREADPOOL_MAX);
    ellm_threadpool *pool = calloc(1, sizeof *pool);
    if (!pool)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for a thread pool");
    pool->n_threads = n_threads;
    pthread_mutex_init(&pool->mutex, NULL);
    pthread_cond_init(&pool->wake, NULL);
    atomic_init(&pool->generation, 0);
    atomic_init(&pool->sleepers, 0);
    atomic_init(&pool->gate, 0);
    atomic_init(&pool->stop, false);
#ifdef __EMSCRIPTEN__
    atomic_init(&pool->dispatcher_sleeping, 0);
#endif
    pool->threads = calloc((size_t)n_threads, sizeof *pool->threads);
    if (!pool->threads) {
        free(pool);
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for a thread pool");
    }
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (wa) {
            wa->pool = pool;
            wa->ith = i;
        }
        if (!wa || pthread_create(&pool->threads[i], NULL, worker_main, wa) != 0) {
            free(wa);
            pool->n_threads = i; /* only the started workers are joined */
            ellm_threadpool_free(pool);
            return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "cannot start worker thread %d", i);
        }
    }
    *out = pool;
    return EDGELLM_OK;
}

size_t ellm_threadpool_bytes(int n_threads)
{
    if (n_threads <= 0)
        n_threads = ellm_cpu_count();
    /* What ellm_threadpool_create keeps: the pool and its thread handles (each worker frees its
     * start argument as it starts). */
    return sizeof(ellm_threadpool) + (size_t)n_threads * sizeof(pthread_t);
}

void ellm_threadpool_free(ellm_threadpool *pool)
{
    if (!pool)
        return;
    pthread_mutex_lock(&pool->mutex);
    atomic_store(&pool->stop, true);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mutex);
    for (int i = 1; i < pool->n_threads; i++)
        pthread_join(pool->threads[i], NULL);
    pthread_mutex_destroy(&pool->mutex);
    pthread_cond_destroy(&pool->wake);
    free(pool->threads);
    free(pool);
}

int ellm_threadpool_size(const ellm_threadpool *pool) { return pool ? pool->n_threads : 1; }

static void run_job(ellm_threadpool *pool, ellm_task_fn fn, void *arg, bool shared)
{
    if (!pool || pool->n_threads == 1) {
        fn(arg, 0, 1);
        return;
    }
    pool->fn = fn;
    pool->arg = arg;
    /* Only this thread writes the generation; the gate is in place before workers can see it. */
    unsigned generation = atomic_load_explicit(&pool->generation, memory_order_relaxed) + 1;
    atomic_store(&pool->gate,
                 job_tag(generation) | (shared ? JOB_SHARED : (unsigned)(pool->n_threads - 1)));
    atomic_store(&pool->generation, generation);
    /* Spinning workers see the generation; only sleeping ones need the (slow) wake. */
    if (atomic_load(&pool->sleepers) > 0) {
        pthread_mutex_lock(&pool->mutex);
        pthread_cond_broadcast(&pool->wake);
        pthread_mutex_unlock(&pool->mutex);
    }
    fn(arg, 0, pool->n_threads);
    if (shared)
        atomic_fetch_or(&pool->gate, JOB_CLOSED);
#ifdef __EMSCRIPTEN__
    wasm_wait_for_workers(pool);
#endif
    /* A worker still busy has usually nearly finished; one that is descheduled (a machine with
     * more runnable threads than cores) needs this core, so stop spinning after a while. */
    for (int spins = 0; atomic_load_explicit(&pool->gate, memory_order_acquire) & JOB_OWED_MASK;
         spins++)
        if (spins > SPIN_ITERATIONS)
            sched_yield();
}

void ellm_threadpool_run(ellm_threadpool *pool, ellm_task_fn fn, void *arg)
{
    run_job(pool, fn, arg, false);
}

void ellm_threadpool_run_shared(ellm_threadpool *pool, ellm_task_fn fn, void *arg)
{
    run_job(pool, fn, arg, true);
}
