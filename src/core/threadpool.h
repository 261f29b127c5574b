/* A persistent pool of worker threads. The calling thread takes part as worker 0, so a pool of
 * n threads starts n - 1 workers. Work functions partition by (ith, nth) or take parts from a
 * shared count; either way what a part gives must not depend on the thread that computes it, so
 * that results are bit-identical whatever the thread count and timing. */
#ifndef EDGELLM_CORE_THREADPOOL_H
#define EDGELLM_CORE_THREADPOOL_H

#include <stddef.h>

#include "edgellm.h"

typedef struct ellm_threadpool ellm_threadpool;

typedef void (*ellm_task_fn)(void *arg, int ith, int nth);

/* The most threads a pool takes: far beyond any machine the library runs on, low enough that a
 * garbage count is refused before anything is sized by it. */
#define ELLM_THREADPOOL_MAX 256

/* n_threads <= 0: one per online CPU. */
edgellm_status ellm_threadpool_create(int n_threads, ellm_threadpool **out);
void ellm_threadpool_free(ellm_threadpool *pool);
/* Heap bytes a pool of n_threads (<= 0: one per online CPU) holds while it lives, for memory
 * planning; the workers' stacks are the system's. */
size_t ellm_threadpool_bytes(int n_threads);
int ellm_threadpool_size(const ellm_threadpool *pool);
/* Runs fn(arg, ith, nth) for ith = 0..nth-1 on the pool and returns when all have finished.
 * pool may be NULL (runs fn(arg, 0, 1) on the caller). */
void ellm_threadpool_run(ellm_threadpool *pool, ellm_task_fn fn, void *arg);
/* The same for a job whose threads take its work from a shared count, so that fn(arg, 0, nth)
 * alone completes it (which thread does which part may then depend on timing, what each part
 * gives must not): a worker that has not started the job by the time the caller's own call
 * returns skips it, so the caller does not wait for a worker to wake up. Workers that did
 * start it have finished when this returns. */
void ellm_threadpool_run_shared(ellm_threadpool *pool, ellm_task_fn fn, void *arg);

int ellm_cpu_count(void);

#endif
