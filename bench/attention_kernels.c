/* Decode attention over an F16 cache on tinyllama-1.1b shapes (32 query heads on 4 KV heads of
 * 64, 22 layers), kernel alone: what one token's attention costs at each cache depth, for each
 * vector kernel set this CPU runs, called the way attention.c calls it (one grouped call per KV
 * head where the set has a grouped kernel, else the wide path per query head). Each layer has
 * its own cache as in a model, so at 4096 positions the 92 MB a token reads come from memory,
 * not from the last-level cache; the bytes/s column is that read (keys and values of the
 * depth) against the time. Times are this thread's CPU time (the machines are shared: CPU
 * time does not count waiting for a core), the fastest of 5 trials: build/attention_kernels
 * (built with the project; not a test). Then the same over a Q8_0 cache: the one-head path
 * (attention.c's attend_q8_0: the set's Q8_0 dot per position, exact softmax, axpy_q8_0) against
 * the set's grouped kernel, trials alternated. Between the two, a prefill's attention where the
 * set has a multi-token kernel (bench_prefill). */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "micro_util.h"
#include "quant/attention_kernels.h"
#include "quant/blocks.h"
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

/* One KV head's query heads over a Q8_0 cache, one head at a time (q8: the quantized queries). */
static void attend_q8_0_heads(const ellm_attention_kernels *k, const block_q8_0 *q8,
                              const uint8_t *kc, const uint8_t *vc, size_t stride, int32_t depth,
                              float *scores, float *out)
{
    enum { GROUP = N_HEAD / N_HEAD_KV, NB = HEAD_DIM / QK8_0 };
    const ellm_type_kernels *dot = ellm_kernels_for(ELLM_TYPE_Q8_0);
    for (int h = 0; h < GROUP; h++) {
        for (int32_t p = 0; p < depth; p++) {
            dot->vec_dot(HEAD_DIM, &scores[p], kc + (size_t)p * stride, q8 + h * NB);
            scores[p] *= 0.125f;
        }
        ellm_attention_softmax_exact(scores, depth);
        memset(out + h * HEAD_DIM, 0, HEAD_DIM * sizeof(float));
        for (int32_t p = 0; p < depth; p++)
            k->axpy_q8_0(NB, scores[p], vc + (size_t)p * stride, out + h * HEAD_DIM);
    }
}

static void bench_q8_0_cache(const char *const *sets, int n_sets)
{
    enum { GROUP = N_HEAD / N_HEAD_KV, NB = HEAD_DIM / QK8_0 };
    size_t head_bytes = NB * sizeof(block_q8_0), head_stride = MAX_DEPTH * head_bytes;
    size_t layer_bytes = N_HEAD_KV * head_stride;
    uint8_t *kc = malloc(N_LAYER * layer_bytes), *vc = malloc(N_LAYER * layer_bytes);
    static block_q8_0 q8[GROUP * NB];
    static float scores[GROUP * MAX_DEPTH], out[GROUP * HEAD_DIM];
    if (!kc || !vc)
        return;
    for (size_t i = 0; i < N_LAYER * layer_bytes / sizeof(block_q8_0); i++) {
        block_q8_0 *kb = (block_q8_0 *)kc + i, *vb = (block_q8_0 *)vc + i;
        kb->d = ellm_f32_to_f16(0.01f + 0.01f * bench_uniform(&rng));
        vb->d = ellm_f32_to_f16(0.02f + 0.01f * bench_uniform(&rng));
        for (int j = 0; j < QK8_0; j++) {
            kb->qs[j] = (int8_t)(127.0f * bench_uniform(&rng));
            vb->qs[j] = (int8_t)(127.0f * bench_uniform(&rng));
        }
    }
    for (int i = 0; i < GROUP * NB; i++) {
        q8[i].d = ellm_f32_to_f16(0.02f);
        for (int j = 0; j < QK8_0; j++)
            q8[i].qs[j] = (int8_t)(127.0f * bench_uniform(&rng));
    }
    const int depths[] = {128, 512, 1024, 2048, 4096};
    printf("\nQ8_0 cache\n%-8s %6s %20s %20s %8s\n", "set", "depth", "one-head ms/token",
           "grouped ms/token", "ratio");
    for (int s = 0; s < n_sets && s < 8; s++) {
        if (!strcmp(sets[s], "scalar") || !ellm_quant_use_kernel_set(sets[s]))
            continue;
        const ellm_attention_kernels *k = ellm_attention_kernels_active();
        for (size_t d = 0; d < sizeof depths / sizeof depths[0]; d++) {
            int32_t depth = depths[d];
            int tokens = 2 * MAX_DEPTH / depth;
            double best[2] = {1e30, 1e30};
            for (int t = 0; t < 2 * TRIALS; t++) {
                int grouped = t % 2;
                double t0 = bench_thread_seconds();
                for (int c = 0; c < tokens; c++)
                    for (int l = 0; l < N_LAYER; l++)
                        for (int h = 0; h < N_HEAD_KV; h++) {
                            const uint8_t *kh = kc + l * layer_bytes + h * head_stride;
                            const uint8_t *vh = vc + l * layer_bytes + h * head_stride;
                            if (grouped)
                                k->q8_0_group(q8, kh, vh, head_bytes, depth, HEAD_DIM, 0.125f, 0,
                                              GROUP, scores, out);
                            else
                                attend_q8_0_heads(k, q8, kh, vh, head_bytes, depth, scores, out);
                        }
                double per_token = (bench_thread_seconds() - t0) / tokens;
                best[grouped] = per_token < best[grouped] ? per_token : best[grouped];
            }
            printf("%-8s %6d %20.3f %20.3f %8.2f\n", sets[s], depth, 1e3 * best[0], 1e3 * best[1],
                   best[0] / best[1]);
        }
    }
    printf("(check: %g)\n", (double)out[0]);
    free(kc);
    free(vc);
}

/* A prefill's attention at one KV head of every layer: token t of n over the first t + 1
 * positions, token by token with the set's grouped kernel against f16_group_tokens in
 * attention.c's runs of four, trials alternated; ns per (query head, attended position). */
static void bench_prefill(const char *const *sets, int n_sets, const uint8_t *kc, const uint8_t *vc,
                          size_t layer_bytes, const float *q, float *out)
{
    enum { GROUP = N_HEAD / N_HEAD_KV, RUN = 4 };
    const int lengths[] = {256, 1024};
    printf("\nprefill, F16 cache\n%-8s %6s %22s %22s %8s\n", "set", "tokens",
           "token by token ns/h-p", "four a call ns/h-p", "ratio");
    for (int s = 0; s < n_sets && s < 8; s++) {
        if (!strcmp(sets[s], "scalar") || !ellm_quant_use_kernel_set(sets[s]))
            continue;
        const ellm_attention_kernels *k = ellm_attention_kernels_active();
        if (!k->f16_group || !k->f16_group_tokens)
            continue;
        for (size_t l = 0; l < sizeof lengths / sizeof lengths[0]; l++) {
            int32_t n = lengths[l];
            double best[2] = {1e30, 1e30};
            for (int t = 0; t < 2 * TRIALS; t++) {
                int together = t % 2;
                double t0 = bench_thread_seconds();
                for (int layer = 0; layer < N_LAYER; layer++) {
                    const uint8_t *kh = kc + layer * layer_bytes, *vh = vc + layer * layer_bytes;
                    for (int32_t tok = 0; tok < n; tok += together ? RUN : 1) {
                        if (together)
                            k->f16_group_tokens(q, 0, kh, vh, HEAD_DIM * 2, tok + 1,
                                                n - tok < RUN ? n - tok : RUN, HEAD_DIM, 0.125f,
                                                GROUP, out, 0);
                        else
                            k->f16_group(q, kh, vh, HEAD_DIM * 2, tok + 1, HEAD_DIM, 0.125f, GROUP,
                                         out);
                    }
                }
                double spent = bench_thread_seconds() - t0;
                best[together] = spent < best[together] ? spent : best[together];
            }
            double pairs = (double)N_LAYER * GROUP * n * (n + 1) / 2;
            printf("%-8s %6d %22.2f %22.2f %8.2f\n", sets[s], n, 1e9 * best[0] / pairs,
                   1e9 * best[1] / pairs, best[0] / best[1]);
        }
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
    bench_prefill(sets, n_sets, kc, vc, layer_bytes, q, out);
    printf("(check: %g)\n", (double)out[0]);
    free(kc);
    free(vc);
    bench_q8_0_cache(sets, n_sets);
    return 0;
}
