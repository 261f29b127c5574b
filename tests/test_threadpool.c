/* The thread pool: every job runs on every thread exactly once and the dispatcher returns only
 * after all have finished, whether the workers are spinning, just going to sleep or asleep when
 * the job arrives (gaps shorter than, about as long as and longer than the pool's spin), and a
 * pool can be freed while its workers sleep. A lost wake-up hangs the test (ctest's timeout). */
#define _POSIX_C_SOURCE 200809L
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "core/threadpool.h"
#include "test_util.h"

#define MAX_THREADS 4

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

int main(void)
{
    for (int nth = 1; nth <= 3; nth++) {
        ellm_threadpool *pool = NULL;
        CHECK(ellm_threadpool_create(nth, &pool) == EDGELLM_OK);
        CHECK(ellm_threadpool_size(pool) == nth);
        run_jobs(pool, nth, 20000, 0, "back to back");
        run_jobs(pool, nth, 200, 20e-6, "gaps of 20 us (workers near the end of their spin)");
        run_jobs(pool, nth, 20, 3e-3, "gaps of 3 ms (workers asleep)");
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
    return test_finish("threadpool");
}
