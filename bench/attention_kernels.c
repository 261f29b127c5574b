/* Decode attention over an F16 cache on tinyllama-1.1b shapes (32 query heads on 4 KV heads of
 * 64, 22 layers), kernel alone: what one token's attention costs at each cache depth, for each
 * vector kernel set this CPU runs, called the way attention.c calls it (one grouped call per KV
 * head where the set has a grouped kernel, else the wide path per query head). Each layer has
 * its own cache as in a model, so at 4096 positions the 92 MB a token reads come from memory,
 * not from the last-level cache; the bytes/s column is that read (keys and values of the
 * depth) against the time. Times are this thread's CPU time (the machines are shared: CPU
 * time does not count waiting for a core), the fastest of 5 trials: build/attention_kernels
 * (built with the project; not a test). */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "micro_util.h"
#include "quant/attention_kernels.h"
#include "quant/quant.h"

enum { HEAD_DIM = 64, N_HEAD = 32, N_HEAD_KV = 4, N_LAYER = 22, MAX_DEPTH = 4096, TRIALS = 5 };

static uint64_t rng = 0x2545F4914F6CDD1Dull;

/* The query heads of one KV head at one depth, as attention_task runs them. */
static void attend_group(const ellm_attention_kernels *k, const float *q, const uint8_t *kc,
                         const uint8_t *vc, size_t stride, int32_t depth, float *scratch,
                         float *out)
{
    enum { GROUP = N_HEAD / N_HEAD_KV };
    float scale = 0.125f;
    if (k->f16_group) {
        k->f16_group(q, kc, vc, stride, depth, HEAD_DIM, scale, GROUP, out);
        return;
    }
    for (int h = 0; h < GROUP; h++) {
        if (k->f16_wide)
            k->f16_wide(q + h * HEAD_DIM, kc, vc, stride, depth, HEAD_DIM, scale,
                        (void *)(scratch + HEAD_DIM), scratch, out + h * HEAD_DIM);
        else
            k->f16(q + h * HEAD_DIM, kc, vc, stride, depth, HEAD_DIM, scale,
                   (void *)(scratch + HEAD_DIM), scratch, out + h * HEAD_DIM);
    }
}

int main(void)
{
    /* The cache's layout (kv_cache.h): per layer, each KV head's positions one after another. */
    size_t head_bytes = HEAD_DIM * 2, head_stride = MAX_DEPTH * head_bytes;
    size_t layer_bytes = N_HEAD_KV * head_stride;
    uint8_t *kc = malloc(N_LAYER * layer_bytes), *vc = malloc(N_LAYER * layer_bytes);
    static float q[N_HEAD / N_HEAD_KV * HEAD_DIM], out[N_HEAD / N_HEAD_KV * HEAD_DIM],
        scratch[2 * HEAD_DIM];
    if (!kc || !vc)
        return 1;
    for (size_t i = 0; i < N_LAYER * layer_bytes / 2; i++) {
        uint16_t k = ellm_f32_to_f16(bench_uniform(&rng)), v = ellm_f32_to_f16(bench_uniform(&rng));
        memcpy(kc + 2 * i, &k, 2);
        memcpy(vc + 2 * i, &v, 2);
    }
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++)
        q[i] = bench_uniform(&rng) * 3.0f;
    const int depths[] = {128, 512, 1024, 2048, 4096};
    const char *sets[8];
    int n_sets = ellm_kernel_sets_available(sets, 8);
    printf("%-8s %6s %14s %16s %10s\n", "set", "depth", "ns/head-pos", "ms/token (22 L)",
           "GB/s read");
    for (int s = 0; s < n_sets && s < 8; s++) {
        /* The scalar set is the reference, a hundred times slower: not a speed target. */
        if (!strcmp(sets[s], "scalar") || !ellm_quant_use_kernel_set(sets[s]))
            continue;
        const ellm_attention_kernels *k = ellm_attention_kernels_active();
        for (size_t d = 0; d < sizeof depths / sizeof depths[0]; d++) {
            int32_t depth = depths[d];
            int tokens = 2 * MAX_DEPTH / depth; /* about the same work at every depth */
            double best = 1e30;
            for (int t = 0; t < TRIALS; t++) {
                double t0 = bench_thread_seconds();
                for (int c = 0; c < tokens; c++)
                    for (int l = 0; l < N_LAYER; l++)
                        for (int h = 0; h < N_HEAD_KV; h++)
                            attend_group(k, q, kc + l * layer_bytes + h * head_stride,
                                         vc + l * layer_bytes + h * head_stride, head_bytes, depth,
                                         scratch, out);
                double per_token = (bench_thread_seconds() - t0) / tokens;
                best = per_token < best ? per_token : best;
            }
            double bytes = 2.0 * N_LAYER * N_HEAD_KV * (double)depth * (double)head_bytes;
            printf("%-8s %6d %14.2f %16.3f %10.1f\n", sets[s], depth,
                   1e9 * best / (N_LAYER * N_HEAD) / depth, 1e3 * best, bytes / best / 1e9);
        }
    }
    printf("(check: %g)\n", (double)out[0]);
    free(kc);
    free(vc);
    return 0;
}
