/* What this machine can do, measured in the same run as a benchmark: memory read bandwidth and
 * fused-multiply-add peak, both over a given number of threads. */
#ifndef EDGELLM_CLI_MACHINE_H
#define EDGELLM_CLI_MACHINE_H

#include <stdbool.h>

#include "edgellm.h"

/* Read bandwidth over a buffer far larger than the caches (512 MiB), every thread reading its own
 * slice front to back: the best of ten repetitions of at least 50 ms each, in GB/s. cpu_share is
 * the CPU time the threads got in that repetition over threads x its wall time: below about 0.9
 * other processes shared the cores and the figure is low. spread is (best - worst) / best over
 * the repetitions. */
/* The buffer's pages are the ones the weights' mapping asks for (EDGELLM_HUGEPAGES);
 * huge_fraction is the share of it the kernel gave in 2 MiB pages (-1: not known). */
typedef struct machine_bandwidth {
    double gbs, cpu_share, spread, huge_fraction;
} machine_bandwidth;
machine_bandwidth machine_read_bandwidth(int threads);
/* The same measurement in a process of its own, made on request between a benchmark's rounds: the
 * host's memory is shared beyond this machine, so its bandwidth moves between one minute and the
 * next, and an efficiency holds only against a bandwidth measured beside the run it judges. The
 * process keeps its buffer (512 MiB) out of the benchmark's own peak memory. Start it before any
 * thread is created (it forks); NULL when it could not be started. _read measures over the best of
 * reps repetitions (at most ten); false when the probe failed. */
typedef struct machine_bandwidth_probe machine_bandwidth_probe;
machine_bandwidth_probe *machine_bandwidth_probe_start(int threads);
bool machine_bandwidth_probe_read(machine_bandwidth_probe *p, int reps, machine_bandwidth *out);
void machine_bandwidth_probe_stop(machine_bandwidth_probe *p);
/* Peak single-precision FMA throughput with independent accumulators, in GFLOP/s, with the
 * widest vectors the CPU has (machine_fma_isa names them). */
double machine_fma_peak_gflops(int threads);
const char *machine_fma_isa(void);
/* Peak throughput of one kind of arithmetic, named as edgellm_kernel_arithmetic names it
 * ("int8-vnni512", "int8-avx2", "int8-sdot", "int8-neon", "f32-fma-avx512", "f32-fma-avx2",
 * "f32-fma-neon", "scalar"), in G operations/s (a multiply-add is two), over the threads with
 * independent accumulators, each thread timed by its own CPU time (other processes on a busy
 * machine cannot lower it); 0 when this CPU has no such instructions. */
double machine_arith_peak_gops(const char *arith, int threads);
/* The pages EDGELLM_HUGEPAGES asks the weights' mapping for (the commands pass it to
 * edgellm_model_params.pages): unset, empty, "on" or "1" huge; "off" or "0" small. */
edgellm_page_advice machine_page_advice(void);
/* "AMD EPYC ..." from /proc/cpuinfo, or "unknown". */
const char *machine_cpu_model(void);

#endif
