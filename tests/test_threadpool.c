/* The thread pool: every job runs on every thread exactly once and the dispatcher returns only
 * after all have finished, whether the workers are spinning, just going to sleep or asleep when
 * the job arrives (gaps shorter than, about as long as and longer than the pool's spin), and a
 * pool can be freed while its workers sleep. A shared job is done once, part by part, with the
 * workers that joined it finished and the others never starting it late, and it stays open to
 * workers while the caller runs it. A lost wake-up hangs the test (ctest's timeout). */
#define _POSIX_C_SOURCE 200809L
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/threadpool.h"
#include "test_util.h"

#define MAX_THREADS 4

/* ThreadSanitizer makes every synchronisation a hundred times slower (20000 back-to-back jobs per
 * thread count took 120 s under it, on 2 busy cores); a tenth of them still hands each job over
 * thousands of times while the workers spin, go to sleep or sleep. */
#if defined(__SANITIZE_THREAD__)
#define JOB_SCALE 10
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define JOB_SCALE 10
#endif
#endif
#ifndef JOB_SCALE
#define JOB_SCALE 1
#endif

typedef struct count_job {
    atomic_int runs[MAX_THREADS];
    atomic_int nth_seen;
} count_job;

static void count_task(void *arg, int ith, int nth)
{
    count_job *j = arg;
    atomic_fetch_add(&j->runs[ith], 1);
    atomic_store(&j->nth_seen, nth);
}

static void pause_for(double seconds)
{
    struct timespec t = {0, (long)(seconds * 1e9)};
    nanosleep(&t, NULL);
}

/* n jobs with `gap` seconds between them; each must have run once on each of nth threads by the
 * time ellm_threadpool_run returns. */
static void run_jobs(ellm_threadpool *pool, int nth, int n, double gap, const char *what)
{
    int bad = 0;
    for (int i = 0; i < n; i++) {
        count_job j;
        memset(&j, 0, sizeof j);
        ellm_threadpool_run(pool, count_task, &j);
        for (int t = 0; t < MAX_THREADS; t++)
            bad += atomic_load(&j.runs[t]) != (t < nth ? 1 : 0);
        bad += atomic_load(&j.nth_seen) != nth;
        if (gap > 0)
            pause_for(gap);
    }
    CHECK_MSG(bad == 0, "%s: %d jobs of %d threads ran the wrong number of times", what, bad, nth);
}

/* A shared job: PARTS parts taken from a count. Workers that started it are counted in `inside`
 * while they run; `runs` counts each thread's calls. */
#define PARTS 64
#define SHARED_JOBS (4000 / JOB_SCALE)

typedef struct shared_job {
    atomic_int next_part;
    atomic_int done[PARTS];
    atomic_int runs[MAX_THREADS];
    atomic_int inside;
} shared_job;

static void shared_task(void *arg, int ith, int nth)
{
    (void)nth;
    shared_job *j = arg;
    atomic_fetch_add(&j->inside, 1);
    atomic_fetch_add(&j->runs[ith], 1);
    for (int p; (p = atomic_fetch_add(&j->next_part, 1)) < PARTS;)
        atomic_fetch_add(&j->done[p], 1);
    atomic_fetch_sub(&j->inside, 1);
}

/* Shared jobs (kept apart, so that a worker that ran one after its return would show) with
 * `gap` seconds between them: when ellm_threadpool_run_shared returns, every part has been done
 * once, the caller has run the job once and each worker at most once, and no worker is still
 * inside; afterwards, no job has been run again. Regular jobs between them check that a worker
 * that skipped a shared job still runs the next regular one. */
static void run_shared_jobs(ellm_threadpool *pool, int nth, int n, double gap, const char *what)
{
    static shared_job jobs[SHARED_JOBS];
    static int seen[SHARED_JOBS][MAX_THREADS];
    int bad = 0, joined = 0;
    for (int i = 0; i < n; i++) {
        shared_job *j = &jobs[i];
        memset(j, 0, sizeof *j);
        ellm_threadpool_run_shared(pool, shared_task, j);
        for (int p = 0; p < PARTS; p++)
            bad += atomic_load(&j->done[p]) != 1;
        bad += atomic_load(&j->inside) != 0 || atomic_load(&j->runs[0]) != 1;
        for (int t = 0; t < MAX_THREADS; t++) {
            seen[i][t] = atomic_load(&j->runs[t]);
            bad += seen[i][t] > (t < nth ? 1 : 0);
            joined += t > 0 && seen[i][t] == 1;
        }
        if (i % 3 == 2)
            run_jobs(pool, nth, 1, 0, what);
        if (gap > 0)
            pause_for(gap);
    }
    pause_for(2e-3);
    for (int i = 0; i < n; i++)
        for (int t = 0; t < MAX_THREADS; t++)
            bad += atomic_load(&jobs[i].runs[t]) != seen[i][t];
    CHECK_MSG(bad == 0, "%s: %d shared jobs of %d threads went wrong", what, bad, nth);
    printf("%s, %d threads: workers joined %d of %d shared jobs\n", what, nth, joined, n);
}

typedef struct meeting {
    atomic_int arrived;
} meeting;

/* The caller's call returns only once every worker has joined: a shared job stays open to
 * workers while the caller runs it, so they must all get in (else the test hangs). */
static void meet_task(void *arg, int ith, int nth)
{
    meeting *m = arg;
    if (ith > 0)
        atomic_fetch_add(&m->arrived, 1);
    else
        while (atomic_load(&m->arrived) < nth - 1)
            pause_for(10e-6);
}

static void run_meetings(ellm_threadpool *pool, int nth)
{
    int bad = 0;
    for (int i = 0; i < 20; i++) {
        meeting m;
        atomic_init(&m.arrived, 0);
        ellm_threadpool_run_shared(pool, meet_task, &m);
        bad += atomic_load(&m.arrived) != nth - 1;
        pause_for(3e-3);
    }
    CHECK_MSG(bad == 0, "shared jobs that wait for every worker, %d threads: %d went wrong", nth,
              bad);
}

int main(void)
{
    for (int nth = 1; nth <= 3; nth++) {
        ellm_threadpool *pool = NULL;
        CHECK(ellm_threadpool_create(nth, &pool) == EDGELLM_OK);
        CHECK(ellm_threadpool_size(pool) == nth);
        run_jobs(pool, nth, 20000 / JOB_SCALE, 0, "back to back");
        run_jobs(pool, nth, 200, 20e-6, "gaps of 20 us (workers near the end of their spin)");
        run_jobs(pool, nth, 20, 3e-3, "gaps of 3 ms (workers asleep)");
        run_shared_jobs(pool, nth, SHARED_JOBS, 0, "shared, back to back");
        run_shared_jobs(pool, nth, 200, 20e-6, "shared, gaps of 20 us");
        run_shared_jobs(pool, nth, 20, 3e-3, "shared, gaps of 3 ms");
        run_meetings(pool, nth);
        /* Freed right after a job and again after the workers fell asleep. */
        ellm_threadpool_free(pool);
        CHECK(ellm_threadpool_create(nth, &pool) == EDGELLM_OK);
        run_jobs(pool, nth, 1, 0, "one job");
        pause_for(5e-3);
        ellm_threadpool_free(pool);
    }
    count_job j;
    memset(&j, 0, sizeof j);
    ellm_threadpool_run(NULL, count_task, &j);
    CHECK_MSG(atomic_load(&j.runs[0]) == 1 && atomic_load(&j.nth_seen) == 1,
              "a NULL pool runs the job once on the caller");
    shared_job sj;
    memset(&sj, 0, sizeof sj);
    ellm_threadpool_run_shared(NULL, shared_task, &sj);
    CHECK_MSG(atomic_load(&sj.runs[0]) == 1 && atomic_load(&sj.next_part) > PARTS,
              "a NULL pool runs a shared job once on the caller");
    return test_finish("threadpool");
}
