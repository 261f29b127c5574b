/* `edgellm bench`: the standard edge benchmark record for one model on this machine, with the
 * machine's own memory bandwidth and FMA peak measured in the same run so that efficiencies
 * (not raw speeds, which depend on a shared machine's load) can be compared. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_speculative.h"
#include "cli_util.h"
#include "commands.h"
#include "edgellm.h"
#include "core/mapped_file.h"
#include "core/threadpool.h"
#include "machine.h"
#include "store/store.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: edgellm bench -m MODEL [-p PROMPT_TOKENS] [-n GEN_TOKENS] [-t THREADS] "
            "[-r REPETITIONS] [--kv-type f16|f32|q8_0] [--kernels SET] [--json] [--profile] "
            "[--ctx-curve]\n"
            "  defaults: 512 prompt tokens, 128 generated, all CPUs, 3 repetitions "
            "(medians reported)\n"
            "  --profile: one more run with per-operation timers (matmul by weight type, "
            "attention, norms, RoPE, sampling, other), printed after the record\n"
            "  --ctx-curve: decode tok/s with 128, 512, 1024, 2048 and 4096 tokens already in "
            "the cache (GEN_TOKENS each, depths the model's context holds), and the loss of "
            "the deepest against 128\n"
            "%s",
            bench_speculative_usage());
}

typedef struct run_figures {
    double prefill_tps, decode_tps, ttft_ms;
} run_figures;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static int argmax(const float *v, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best])
            best = i;
    return best;
}

/* One prefill + decode pass with greedy sampling over a fresh cache. */
static edgellm_status one_run(edgellm_context *ctx, const edgellm_token *prompt, int n_prompt,
                              int n_gen, int n_vocab, run_figures *out)
{
    edgellm_context_truncate(ctx, 0);
    double t0 = cli_now_seconds();
    edgellm_status st = edgellm_eval(ctx, prompt, n_prompt, 0);
    if (st != EDGELLM_OK)
        return st;
    edgellm_token tok = argmax(edgellm_get_logits(ctx, -1), n_vocab);
    double t1 = cli_now_seconds();
    for (int i = 0; i < n_gen && st == EDGELLM_OK; i++) {
        st = edgellm_eval(ctx, &tok, 1, 0);
        if (st == EDGELLM_OK)
            tok = argmax(edgellm_get_logits(ctx, -1), n_vocab);
    }
    double t2 = cli_now_seconds();
    out->prefill_tps = n_prompt / (t1 - t0);
    out->ttft_ms = (t1 - t0) * 1000.0;
    out->decode_tps = n_gen / (t2 - t1);
    return st;
}

/* The bandwidth a round is judged against: best of this many repetitions of 50 ms, before and
 * after the round. */
enum { ROUND_BANDWIDTH_REPS = 4 };

/* The bandwidth measurements of a run: one after the runs, or one before and after each round. */
typedef struct bandwidth_rounds {
    int n_rounds;                /* 0: one measurement after the runs */
    const machine_bandwidth *at; /* n_rounds + 1 measurements */
    double median_gbs;           /* of the rounds' (each the mean of its two measurements) */
    double lo_gbs, hi_gbs;       /* over the measurements */
    double cpu_share;            /* the lowest a measurement had */
    double huge_fraction;
} bandwidth_rounds;

static double round_gbs(const bandwidth_rounds *b, int r)
{
    return 0.5 * (b->at[r].gbs + b->at[r + 1].gbs);
}

static bandwidth_rounds one_measurement(machine_bandwidth m)
{
    return (bandwidth_rounds){.median_gbs = m.gbs,
                              .lo_gbs = m.gbs * (1.0 - m.spread),
                              .hi_gbs = m.gbs,
                              .cpu_share = m.cpu_share,
                              .huge_fraction = m.huge_fraction};
}

static bandwidth_rounds rounds_of(const machine_bandwidth *at, int n_rounds)
{
    bandwidth_rounds b = {.n_rounds = n_rounds,
                          .at = at,
                          .lo_gbs = at[0].gbs,
                          .hi_gbs = at[0].gbs,
                          .cpu_share = at[0].cpu_share,
                          .huge_fraction = at[0].huge_fraction};
    for (int i = 1; i <= n_rounds; i++) {
        b.lo_gbs = at[i].gbs < b.lo_gbs ? at[i].gbs : b.lo_gbs;
        b.hi_gbs = at[i].gbs > b.hi_gbs ? at[i].gbs : b.hi_gbs;
        b.cpu_share = at[i].cpu_share < b.cpu_share ? at[i].cpu_share : b.cpu_share;
    }
    double *g = malloc((size_t)n_rounds * sizeof *g);
    b.median_gbs = round_gbs(&b, 0); /* without memory for the median, the first round's */
    if (g) {
        for (int r = 0; r < n_rounds; r++)
            g[r] = round_gbs(&b, r);
        b.median_gbs = median(g, n_rounds);
        free(g);
    }
    return b;
}

/* Round r's decode against its own bandwidth. */
static double round_efficiency(const bandwidth_rounds *b, int r, const double *decode_tps,
                               double bytes_per_token)
{
    return bytes_per_token * decode_tps[r] / (round_gbs(b, r) * 1e9);
}

/* The median of the rounds' efficiencies. */
static double median_round_efficiency(const bandwidth_rounds *b, const double *decode_tps,
                                      double bytes_per_token)
{
    double *e = malloc((size_t)b->n_rounds * sizeof *e);
    if (!e)
        return NAN;
    for (int r = 0; r < b->n_rounds; r++)
        e[r] = round_efficiency(b, r, decode_tps, bytes_per_token);
    double m = median(e, b->n_rounds);
    free(e);
    return m;
}

/* Ordinary (non-control) token ids, the same every run. */
static edgellm_token *bench_tokens(long n, int n_vocab)
{
    edgellm_token *ids = malloc((size_t)n * sizeof *ids);
    uint64_t x = 12345;
    for (long i = 0; ids && i < n; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = 3 + (edgellm_token)((x >> 33) % (uint64_t)(n_vocab - 3));
    }
    return ids;
}

/* Decode speed against the depth of the cache: attention reads every cached position per token,
 * so long contexts slow decode down even though the weights read stay the same. */
static const int curve_depths[] = {128, 512, 1024, 2048, 4096};
enum { CURVE_POINTS = sizeof curve_depths / sizeof curve_depths[0] };

typedef struct ctx_curve {
    int n_points; /* the depths (from the first) that fit the model's context */
    double decode_tps[CURVE_POINTS];
} ctx_curve;

/* Depths of the curve whose decode steps fit n_ctx_train. */
static int curve_points_fitting(long n_gen, int n_ctx_train)
{
    int n = 0;
    while (n < CURVE_POINTS && curve_depths[n] + n_gen + 1 <= n_ctx_train)
        n++;
    return n;
}

/* One prefill to the deepest point, then per depth, deepest first (truncating only shortens
 * the cache: going up from 128 would decode at 128 + n_gen every time): the cache cut back to
 * that depth and n_gen greedy decode steps timed, reps times (median). */
static edgellm_status measure_ctx_curve(edgellm_context *ctx, int n_vocab, long n_gen, long reps,
                                        ctx_curve *out)
{
    int deepest = curve_depths[out->n_points - 1];
    edgellm_token *ids = bench_tokens(deepest + 1, n_vocab);
    double *tps = calloc((size_t)reps, sizeof *tps);
    edgellm_status st = ids && tps ? EDGELLM_OK : EDGELLM_ERR_OUT_OF_MEMORY;
    if (st == EDGELLM_OK) {
        edgellm_context_truncate(ctx, 0);
        st = edgellm_eval(ctx, ids, deepest, 0);
    }
    for (int k = out->n_points - 1; k >= 0 && st == EDGELLM_OK; k--) {
        for (long r = 0; r < reps && st == EDGELLM_OK; r++) {
            edgellm_context_truncate(ctx, curve_depths[k]);
            edgellm_token tok = ids[curve_depths[k]];
            double t0 = cli_now_seconds();
            for (long i = 0; i < n_gen && st == EDGELLM_OK; i++) {
                st = edgellm_eval(ctx, &tok, 1, 0);
                if (st == EDGELLM_OK)
                    tok = argmax(edgellm_get_logits(ctx, -1), n_vocab);
            }
            tps[r] = (double)n_gen / (cli_now_seconds() - t0);
        }
        out->decode_tps[k] = median(tps, (int)reps);
    }
    free(ids);
    free(tps);
    return st;
}

/* The deepest point's decode speed lost against the shallowest, as a fraction. */
static double curve_loss(const ctx_curve *c)
{
    return c->n_points > 1 ? 1.0 - c->decode_tps[c->n_points - 1] / c->decode_tps[0] : 0.0;
}

static void print_ctx_curve(const ctx_curve *c, long n_gen, bool json)
{
    if (json) {
        printf("\"ctx_curve\": {\"generated_tokens\": %ld, \"points\": [", n_gen);
        for (int k = 0; k < c->n_points; k++)
            printf("%s{\"depth\": %d, \"decode_tok_per_s\": %.2f}", k ? ", " : "", curve_depths[k],
                   c->decode_tps[k]);
        printf("], \"loss_deepest_vs_shallowest\": %.3f}", curve_loss(c));
        return;
    }
    printf("\ndecode against context depth (%ld tokens each)\n", n_gen);
    for (int k = 0; k < c->n_points; k++)
        printf("  %6d %10.2f tok/s  %6.1f%%\n", curve_depths[k], c->decode_tps[k],
               100.0 * c->decode_tps[k] / c->decode_tps[0]);
    if (c->n_points > 1)
        printf("  %d against %d: %+.1f%% decode speed\n", curve_depths[c->n_points - 1],
               curve_depths[0], -100.0 * curve_loss(c));
}

/* Time per operation of one prefill and of the decode steps after it. */
typedef struct phase_profile {
    edgellm_profile ops;
    double sampling_s;
    int tokens;
} phase_profile;

/* one_run again with the context's operation timers on; the timed runs stay untouched. */
static edgellm_status profiled_run(edgellm_context *ctx, const edgellm_token *prompt, int n_prompt,
                                   int n_gen, int n_vocab, phase_profile *prefill,
                                   phase_profile *decode)
{
    edgellm_context_truncate(ctx, 0);
    edgellm_status st = edgellm_context_set_profiling(ctx, 1);
    if (st == EDGELLM_OK)
        st = edgellm_eval(ctx, prompt, n_prompt, 0);
    if (st != EDGELLM_OK)
        return st;
    double t0 = cli_now_seconds();
    edgellm_token tok = argmax(edgellm_get_logits(ctx, -1), n_vocab);
    prefill->sampling_s = cli_now_seconds() - t0;
    prefill->tokens = n_prompt;
    edgellm_context_get_profile(ctx, &prefill->ops);
    edgellm_context_set_profiling(ctx, 1); /* restart the counters for the decode phase */
    decode->sampling_s = 0;
    for (int i = 0; i < n_gen && st == EDGELLM_OK; i++) {
        st = edgellm_eval(ctx, &tok, 1, 0);
        t0 = cli_now_seconds();
        if (st == EDGELLM_OK)
            tok = argmax(edgellm_get_logits(ctx, -1), n_vocab);
        decode->sampling_s += cli_now_seconds() - t0;
    }
    decode->tokens = n_gen;
    if (st == EDGELLM_OK)
        st = edgellm_context_get_profile(ctx, &decode->ops);
    edgellm_context_set_profiling(ctx, 0);
    return st;
}

/* The operations of a token by the arithmetic that performs them, and each one's measured
 * peak: the prefill peak is their harmonic mix (the time each share would take at its peak). */
typedef struct arith_mix {
    int n;
    const char *name[8];
    double ops[8], peak[8];
} arith_mix;

static void arith_mix_add(arith_mix *mx, const char *name, double ops)
{
    if (!name)
        name = "scalar";
    int i = 0;
    while (i < mx->n && strcmp(mx->name[i], name))
        i++;
    if (i == mx->n) {
        if (mx->n == 8)
            return;
        mx->name[mx->n++] = name;
    }
    mx->ops[i] += ops;
}

/* 0 when some arithmetic could not be measured. */
static double arith_mix_peak(arith_mix *mx, int threads)
{
    double total = 0, seconds = 0;
    for (int i = 0; i < mx->n; i++) {
        mx->peak[i] = machine_arith_peak_gops(mx->name[i], threads);
        if (mx->peak[i] <= 0)
            return 0;
        total += mx->ops[i];
        seconds += mx->ops[i] / mx->peak[i];
    }
    return seconds > 0 ? total / seconds : 0;
}

static double phase_total(const phase_profile *p) { return p->ops.forward_seconds + p->sampling_s; }

static void print_profile(const phase_profile *pf, const phase_profile *dc)
{
    printf("\nprofile (one extra run; ms per token and share of the phase)\n");
    printf("  %-18s %12s %7s %12s %7s\n", "operation", "prefill ms", "%", "decode ms", "%");
    double tp = phase_total(pf), td = phase_total(dc);
    for (int i = 0; i <= pf->ops.n_entries; i++) {
        const char *name = i < pf->ops.n_entries ? pf->ops.entries[i].name : "sampling";
        double a = i < pf->ops.n_entries ? pf->ops.entries[i].seconds : pf->sampling_s;
        double b = dc->sampling_s;
        for (int k = 0; i < pf->ops.n_entries && k < dc->ops.n_entries; k++)
            if (!strcmp(dc->ops.entries[k].name, name))
                b = dc->ops.entries[k].seconds;
        printf("  %-18s %12.3f %6.1f%% %12.3f %6.1f%%\n", name, a * 1e3 / pf->tokens,
               tp > 0 ? 100.0 * a / tp : 0.0, b * 1e3 / dc->tokens, td > 0 ? 100.0 * b / td : 0.0);
    }
    printf("  %-18s %12.3f %7s %12.3f\n", "total", tp * 1e3 / pf->tokens, "",
           td * 1e3 / dc->tokens);
}

static void print_profile_json(const char *phase, const phase_profile *p)
{
    printf("\"%s\": {\"tokens\": %d, \"seconds\": %.6f, \"operations\": {", phase, p->tokens,
           phase_total(p));
    for (int i = 0; i < p->ops.n_entries; i++)
        printf("\"%s\": {\"seconds\": %.6f, \"calls\": %llu}, ", p->ops.entries[i].name,
               p->ops.entries[i].seconds, (unsigned long long)p->ops.entries[i].calls);
    printf("\"sampling\": {\"seconds\": %.6f, \"calls\": %d}}}", p->sampling_s, p->tokens);
}

/* Cumulative package energy in microjoules from the powercap interface, if readable. */
static bool read_energy_uj(double *uj, char *why, size_t cap)
{
    const char *paths[] = {"/sys/class/powercap/intel-rapl:0/energy_uj",
                           "/sys/class/powercap/intel-rapl/intel-rapl:0/energy_uj"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        FILE *f = fopen(paths[i], "r");
        if (!f) {
            snprintf(why, cap, "%s: %s", paths[i], strerror(errno));
            continue;
        }
        unsigned long long v;
        bool ok = fscanf(f, "%llu", &v) == 1;
        fclose(f);
        if (ok) {
            *uj = (double)v;
            return true;
        }
        snprintf(why, cap, "%s is not readable", paths[i]);
    }
    return false;
}

int cmd_bench(int argc, char **argv)
{
    const char *cmd = "bench";
    const char *model_arg = NULL;
    long n_prompt = 512, n_gen = 128, threads = 0, reps = 3;
    bool json = false, profile = false, want_curve = false;
    const char *kernels = NULL; /* --kernels, else $EDGELLM_KERNELS, else the CPU's default */
    edgellm_kv_type kv = EDGELLM_KV_F16;
    bench_speculative spec;
    bench_speculative_defaults(&spec);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = "";
        cli_option_result spec_opt = bench_speculative_option(cmd, argc, argv, &i, &spec);
        if (spec_opt == CLI_OPTION_BAD)
            return EXIT_USAGE;
        if (spec_opt == CLI_OPTION_TAKEN)
            continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json = true;
        } else if (!strcmp(a, "--profile")) {
            profile = true;
        } else if (!strcmp(a, "--ctx-curve")) {
            want_curve = true;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(v = cli_option_value(cmd, argc, argv, &i)))
                return EXIT_USAGE;
            model_arg = v;
        } else if (!strcmp(a, "-p") || !strcmp(a, "-n") || !strcmp(a, "-t") || !strcmp(a, "-r")) {
            if (!(v = cli_option_value(cmd, argc, argv, &i)))
                return EXIT_USAGE;
            long *dst = a[1] == 'p'   ? &n_prompt
                        : a[1] == 'n' ? &n_gen
                        : a[1] == 't' ? &threads
                                      : &reps;
            if (!cli_parse_int(cmd, a, v, 1, a[1] == 't' ? ELLM_THREADPOOL_MAX : 1 << 20, dst))
                return EXIT_USAGE;
        } else if (!strcmp(a, "--kv-type")) {
            if (!(v = cli_option_value(cmd, argc, argv, &i)))
                return EXIT_USAGE;
            if (!cli_parse_kv_type(cmd, v, &kv))
                return EXIT_USAGE;
        } else if (!strcmp(a, "--kernels")) {
            if (!(v = cli_option_value(cmd, argc, argv, &i)))
                return EXIT_USAGE;
            kernels = v;
        } else {
            cli_error(cmd, "unknown option '%s' (see 'edgellm bench --help')", a);
            return EXIT_USAGE;
        }
    }
    if (!model_arg) {
        cli_error(cmd, "no model given: edgellm bench -m MODEL");
        return EXIT_USAGE;
    }
    if (!bench_speculative_check(cmd, &spec))
        return EXIT_USAGE;
    if (!cli_use_kernels(cmd, kernels))
        return EXIT_USAGE;
    if (threads <= 0)
        threads = sysconf(_SC_NPROCESSORS_ONLN);
    char path[4096];
    if (ellm_store_resolve_model(model_arg, path, sizeof path) != EDGELLM_OK) {
        cli_error(cmd, "%s", edgellm_last_error());
        return 1;
    }
    double t0 = cli_now_seconds();
    edgellm_model *m = NULL;
    edgellm_model_params mp = cli_model_params();
    if (edgellm_model_load(path, &mp, &m) != EDGELLM_OK) {
        cli_error(cmd, "%s", edgellm_last_error());
        return 1;
    }
    double load_s = cli_now_seconds() - t0;
    edgellm_model_info info;
    edgellm_model_get_info(m, &info);
    int n_ctx = (int)(n_prompt + n_gen + 1);
    if (n_ctx > info.n_ctx_train) {
        cli_error(cmd, "%ld prompt + %ld generated tokens exceed the model's context of %d",
                  n_prompt, n_gen, info.n_ctx_train);
        edgellm_model_free(m);
        return EXIT_USAGE;
    }
    ctx_curve curve = {.n_points = want_curve ? curve_points_fitting(n_gen, info.n_ctx_train) : 0};
    if (want_curve && curve.n_points < 2) {
        cli_error(cmd,
                  "--ctx-curve needs room for %d + %ld tokens (two depths); the model's "
                  "context is %d: use fewer -n tokens or a model with a longer context",
                  curve_depths[1], n_gen, info.n_ctx_train);
        edgellm_model_free(m);
        return EXIT_USAGE;
    }
    if (want_curve && curve.n_points < CURVE_POINTS)
        fprintf(stderr,
                "edgellm bench: --ctx-curve stops at %d tokens: the model's context is "
                "%d (a synthetic model takes a longer one with 'edgellm synth --ctx')\n",
                curve_depths[curve.n_points - 1], info.n_ctx_train);
    if (want_curve && curve_depths[curve.n_points - 1] + n_gen + 1 > n_ctx)
        n_ctx = (int)(curve_depths[curve.n_points - 1] + n_gen + 1);
    edgellm_context_params cp = edgellm_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_threads = (int32_t)threads;
    cp.n_batch = (int32_t)n_prompt;
    if (bench_speculative_wanted(&spec) && cp.n_batch < spec.draft.draft_max + 1)
        cp.n_batch = (int32_t)spec.draft.draft_max + 1; /* a pass checks draft_max proposals */
    cp.kv_type = kv;
    /* Forks, so before the context's threads exist (loading a model starts none); a failure
     * leaves one measurement after the runs. */
    machine_bandwidth_probe *probe = machine_bandwidth_probe_start((int)threads);
    edgellm_context *ctx = NULL;
    if (edgellm_context_create(m, &cp, &ctx) != EDGELLM_OK) {
        cli_error(cmd, "%s", edgellm_last_error());
        machine_bandwidth_probe_stop(probe);
        edgellm_model_free(m);
        return 1;
    }
    edgellm_token *prompt = bench_tokens(n_prompt, info.n_vocab);
    if (!prompt) {
        cli_error(cmd, "out of memory for a %ld-token prompt", n_prompt);
        machine_bandwidth_probe_stop(probe);
        edgellm_context_free(ctx);
        edgellm_model_free(m);
        return 1;
    }
    if (!json)
        fprintf(stderr, "edgellm bench: %s, %ld+%ld tokens, %ld threads, %ld runs...\n", path,
                n_prompt, n_gen, threads, reps);
    /* Warm-up: pages of the mapping are faulted in before anything is timed. */
    run_figures warm;
    int rc = 0;
    /* No more decode steps than the context was sized for (-n 1 and 2 overflowed it). */
    if (one_run(ctx, prompt, (int)(n_prompt < 16 ? n_prompt : 16), (int)(n_gen < 4 ? n_gen : 4),
                info.n_vocab, &warm) != EDGELLM_OK) {
        cli_error(cmd, "%s", edgellm_last_error());
        rc = 1;
    }
    double *pf = calloc((size_t)reps, sizeof *pf), *dc = calloc((size_t)reps, sizeof *dc),
           *tt = calloc((size_t)reps, sizeof *tt),
           *round_dc = calloc((size_t)reps, sizeof *round_dc);
    /* Bandwidth before the first round and after each: round r is judged against the mean of
     * measurements r and r + 1. */
    machine_bandwidth *round_bw = calloc((size_t)reps + 1, sizeof *round_bw);
    bool interleaved = probe && pf && dc && tt && round_dc && round_bw && rc == 0 &&
                       machine_bandwidth_probe_read(probe, ROUND_BANDWIDTH_REPS, &round_bw[0]);
    double e0 = 0, e1 = 0;
    char power_why[256] = "";
    bool have_energy = read_energy_uj(&e0, power_why, sizeof power_why);
    double t_runs = cli_now_seconds();
    for (long r = 0; r < reps && rc == 0; r++) {
        run_figures f;
        if (one_run(ctx, prompt, (int)n_prompt, (int)n_gen, info.n_vocab, &f) != EDGELLM_OK) {
            cli_error(cmd, "%s", edgellm_last_error());
            rc = 1;
            break;
        }
        pf[r] = f.prefill_tps;
        dc[r] = round_dc[r] = f.decode_tps;
        tt[r] = f.ttft_ms;
        interleaved = interleaved &&
                      machine_bandwidth_probe_read(probe, ROUND_BANDWIDTH_REPS, &round_bw[r + 1]);
    }
    double runs_s = cli_now_seconds() - t_runs;
    have_energy = have_energy && read_energy_uj(&e1, power_why, sizeof power_why) && e1 >= e0;
    phase_profile prof_prefill, prof_decode;
    if (rc == 0 && profile &&
        profiled_run(ctx, prompt, (int)n_prompt, (int)n_gen, info.n_vocab, &prof_prefill,
                     &prof_decode) != EDGELLM_OK) {
        cli_error(cmd, "%s", edgellm_last_error());
        rc = 1;
    }
    if (rc == 0 && want_curve &&
        measure_ctx_curve(ctx, info.n_vocab, n_gen, reps, &curve) != EDGELLM_OK) {
        cli_error(cmd, "%s", edgellm_last_error());
        rc = 1;
    }
    bench_speculative_figures spec_figures;
    if (rc == 0 && bench_speculative_wanted(&spec))
        rc = bench_speculative_run(cmd, &spec, m, ctx, &cp, prompt, (int)n_prompt, (int)n_gen,
                                   (int)reps, &spec_figures);
    if (probe && !interleaved && rc == 0)
        fprintf(stderr, "edgellm bench: the bandwidth probe process stopped answering; the "
                        "bandwidth is measured once after the runs instead\n");
    machine_bandwidth_probe_stop(probe);
    if (rc != 0) {
        free(pf), free(dc), free(tt), free(round_dc), free(round_bw), free(prompt);
        edgellm_context_free(ctx);
        edgellm_model_free(m);
        return rc;
    }
    double prefill = median(pf, (int)reps), decode = median(dc, (int)reps),
           ttft = median(tt, (int)reps);
    double peak_gb = (double)cli_peak_rss_bytes() / 1e9;
    /* Whether the weights got the pages asked for depends on how the page cache holds the file
     * (mapped_file.c), so the record says what they got. */
    ellm_page_counts wpages;
    double weights_huge = ellm_page_counts_of(NULL, 0, path, &wpages) && wpages.resident
                              ? (double)wpages.huge / (double)wpages.resident
                              : -1;
    const char *pages_env = getenv("EDGELLM_HUGEPAGES");
    const char *pages_asked = pages_env && *pages_env ? pages_env : "on";
    bandwidth_rounds bwr = interleaved ? rounds_of(round_bw, (int)reps)
                                       : one_measurement(machine_read_bandwidth((int)threads));
    double bw = bwr.median_gbs;
    double fma = machine_fma_peak_gflops((int)threads);

    /* Bytes one decode step reads: every weight except the embedding table (one row of it), the
     * embedding again when the head is tied to it, and the KV cache at the average position. */
    uint64_t embd_bytes = 0, matmul_params = 0;
    arith_mix mix = {0};
    const char *embd_type = NULL, *head_type = NULL;
    for (int64_t i = 0; i < edgellm_model_tensor_count(m); i++) {
        edgellm_tensor_desc t;
        edgellm_model_tensor_at(m, i, &t);
        if (!strcmp(t.name, "token_embd.weight")) {
            embd_bytes = t.n_bytes;
            embd_type = t.type;
        } else if (!strcmp(t.name, "output.weight")) {
            head_type = t.type;
        } else if (t.n_dims == 2) {
            matmul_params += (uint64_t)(t.ne[0] * t.ne[1]);
            arith_mix_add(&mix, edgellm_kernel_arithmetic(t.type),
                          2.0 * (double)(t.ne[0] * t.ne[1]));
        }
    }
    /* The head (the embedding when tied) is read by every decode step but runs once per prompt,
     * for its last token's logits: a prefill token's share of it is 1 / n_prompt. */
    if (info.tied_embeddings)
        head_type = embd_type;
    double prefill_head_ops = 2.0 * (double)info.n_embd * (double)info.n_vocab / (double)n_prompt;
    arith_mix_add(&mix, edgellm_kernel_arithmetic(head_type), prefill_head_ops);
    double kv_elem = kv == EDGELLM_KV_F16 ? 2.0 : kv == EDGELLM_KV_Q8_0 ? 34.0 / 32.0 : 4.0;
    double kv_row = 2.0 * info.n_layer * info.n_head_kv * info.head_dim * kv_elem;
    double avg_pos = (double)n_prompt + (double)n_gen / 2.0;
    double bytes_per_token = (double)(info.weights_bytes - embd_bytes) +
                             (info.tied_embeddings ? (double)embd_bytes : 0.0) + kv_row * avg_pos;
    double attn_flops = 4.0 * info.n_layer * (double)info.n_head * info.head_dim *
                        ((double)n_prompt / 2.0);
    double flops_per_token = 2.0 * (double)matmul_params + prefill_head_ops + attn_flops;
    arith_mix_add(&mix, edgellm_kernel_arithmetic("attention"), attn_flops);
    double kernel_peak = arith_mix_peak(&mix, (int)threads);
    double decode_eff = interleaved ? median_round_efficiency(&bwr, round_dc, bytes_per_token)
                                    : bytes_per_token * decode / (bw * 1e9);
    /* Against the peak of the arithmetic the kernels use (integer dots for quantized weights),
     * and, for comparison with older records, against the float FMA peak. */
    double prefill_eff = kernel_peak > 0 ? flops_per_token * prefill / (kernel_peak * 1e9) : NAN;
    double prefill_eff_fma = flops_per_token * prefill / (fma * 1e9);
    double watts = have_energy ? (e1 - e0) / 1e6 / runs_s : NAN;
    double joules_per_1000 = have_energy ? watts / decode * 1000.0 : NAN;
    const char *name = info.name[0] ? info.name : path;

    if (json) {
        /* The name is the model's or the path the user typed: quotes, backslashes and bytes that
         * are not UTF-8 made the record invalid JSON. */
        printf("{\"runtime\": \"edgellm %s\", \"model\": ", edgellm_version());
        cli_print_json_string(stdout, name, strlen(name));
        printf(", \"quantization\": \"%s\", "
               "\"device\": {\"cpu\": \"%s\", \"cores_used\": %ld, \"kernels\": \"%s\"}, "
               "\"model_load_time_s\": %.6f, \"model_size_gb\": %.4f, \"memory_usage_gb\": %.4f, "
               "\"prefill_tok_per_s\": %.2f, \"decode_tok_per_s\": %.2f, \"ttft_ms\": %.2f, ",
               info.quantization, machine_cpu_model(), threads, edgellm_kernel_set(), load_s,
               (double)info.file_bytes / 1e9, peak_gb, prefill, decode, ttft);
        if (have_energy)
            printf(
                "\"power_draw_w\": %.2f, \"battery_impact\": {\"joules_per_1000_tokens\": %.1f}, ",
                watts, joules_per_1000);
        else
            printf("\"power_draw_w\": null, \"power_unavailable_reason\": \"%s\", "
                   "\"battery_impact\": null, ",
                   power_why);
        printf("\"prompt_tokens\": %ld, \"generated_tokens\": %ld, \"repetitions\": %ld, "
               "\"memory_bandwidth_gbs\": %.2f, \"fma_peak_gflops\": %.1f, \"fma_isa\": \"%s\", "
               "\"decode_bytes_per_token\": %.0f, \"prefill_flops_per_token\": %.0f, "
               "\"decode_efficiency\": %.3f, \"prefill_efficiency\": %.3f, "
               "\"prefill_efficiency_vs_fma\": %.3f, \"prefill_peak_gops\": %.1f, ",
               n_prompt, n_gen, reps, bw, fma, machine_fma_isa(), bytes_per_token, flops_per_token,
               decode_eff, prefill_eff, prefill_eff_fma, kernel_peak);
        printf("\"memory_bandwidth_cpu_share\": %.2f, \"memory_bandwidth_spread\": %.3f, "
               "\"memory_bandwidth_interleaved\": %s, \"rounds\": [",
               bwr.cpu_share, bwr.hi_gbs > 0 ? (bwr.hi_gbs - bwr.lo_gbs) / bwr.hi_gbs : 0.0,
               interleaved ? "true" : "false");
        for (int r = 0; r < bwr.n_rounds; r++)
            printf("%s{\"decode_tok_per_s\": %.3f, \"memory_bandwidth_gbs\": %.4f, "
                   "\"decode_efficiency\": %.4f}",
                   r ? ", " : "", round_dc[r], round_gbs(&bwr, r),
                   round_efficiency(&bwr, r, round_dc, bytes_per_token));
        printf("], \"huge_pages\": {\"asked\": \"%s\", \"weights\": %.3f, "
               "\"bandwidth_buffer\": %.3f}, \"arithmetic\": {",
               pages_asked, weights_huge, bwr.huge_fraction);
        for (int i = 0; i < mix.n; i++)
            printf("%s\"%s\": {\"share\": %.4f, \"peak_gops\": %.1f}", i ? ", " : "", mix.name[i],
                   mix.ops[i] / flops_per_token, mix.peak[i]);
        printf("}");
        if (profile) {
            printf(", \"profile\": {");
            print_profile_json("prefill", &prof_prefill);
            printf(", ");
            print_profile_json("decode", &prof_decode);
            printf("}");
        }
        if (want_curve) {
            printf(", ");
            print_ctx_curve(&curve, n_gen, true);
        }
        if (bench_speculative_wanted(&spec)) {
            printf(", \"speculative\": ");
            bench_speculative_print(&spec, &spec_figures, true);
        }
        printf("}\n");
    } else {
        printf("%-22s edgellm %s\n", "runtime", edgellm_version());
        printf("%-22s %s\n", "model", name);
        printf("%-22s %s\n", "quantization", info.quantization);
        printf("%-22s %s, %ld cores used, kernels %s\n", "device", machine_cpu_model(), threads,
               edgellm_kernel_set());
        printf("%-22s %.4f\n", "model_load_time_s", load_s);
        printf("%-22s %.3f\n", "model_size_gb", (double)info.file_bytes / 1e9);
        printf("%-22s %.3f\n", "memory_usage_gb", peak_gb);
        printf("%-22s %.1f   (%ld-token prompt, median of %ld)\n", "prefill_tok_per_s", prefill,
               n_prompt, reps);
        printf("%-22s %.2f   (%ld tokens)\n", "decode_tok_per_s", decode, n_gen);
        printf("%-22s %.1f\n", "ttft_ms", ttft);
        if (have_energy) {
            printf("%-22s %.2f\n", "power_draw_w", watts);
            printf("%-22s %.1f J per 1000 tokens\n", "battery_impact", joules_per_1000);
        } else {
            printf("%-22s null (%s)\n", "power_draw_w", power_why);
            printf("%-22s null (needs power)\n", "battery_impact");
        }
        if (interleaved)
            printf("%-22s %.1f GB/s read (median of the rounds, each against the mean of a "
                   "measurement before and after it; %.1f-%.1f GB/s), %.1f GFLOP/s FMA %s (%ld "
                   "threads, measured now)\n",
                   "machine", bw, bwr.lo_gbs, bwr.hi_gbs, fma, machine_fma_isa(), threads);
        else
            printf("%-22s %.1f GB/s read, %.1f GFLOP/s FMA %s (%ld threads, measured now)\n",
                   "machine", bw, fma, machine_fma_isa(), threads);
        if (bwr.cpu_share < 0.9)
            printf("%-22s the bandwidth threads had %.0f%% of their cores (other processes ran): "
                   "the GB/s and the decode efficiency are not the machine's\n",
                   "warning", bwr.cpu_share * 100.0);
        printf("%-22s EDGELLM_HUGEPAGES=%s: weights %.0f%% in 2 MiB pages (of %.2f GB resident), "
               "bandwidth buffer %.0f%%\n",
               "huge_pages", pages_asked, weights_huge * 100.0, (double)wpages.resident / 1e9,
               bwr.huge_fraction * 100.0);
        if (interleaved) {
            printf("%-22s %.1f%%  (median of the rounds' MB/token x tok/s / GB/s: %.0f MB x",
                   "decode_efficiency", decode_eff * 100.0, bytes_per_token / 1e6);
            for (int r = 0; r < bwr.n_rounds; r++)
                printf("%s %.2f / %.1f", r ? "," : "", round_dc[r], round_gbs(&bwr, r));
            printf(")\n");
        } else {
            printf("%-22s %.1f%%  (%.0f MB/token x %.2f tok/s / %.1f GB/s)\n", "decode_efficiency",
                   decode_eff * 100.0, bytes_per_token / 1e6, decode, bw);
        }
        printf("%-22s %.1f%%  (%.2f GOP/token x %.1f tok/s / %.1f GOP/s, the peak of:",
               "prefill_efficiency", prefill_eff * 100.0, flops_per_token / 1e9, prefill,
               kernel_peak);
        for (int i = 0; i < mix.n; i++)
            printf(" %s %.0f%% at %.1f", mix.name[i], 100.0 * mix.ops[i] / flops_per_token,
                   mix.peak[i]);
        printf(")\n%-22s %.1f%%  (against the float FMA peak above)\n", "prefill_vs_fma_peak",
               prefill_eff_fma * 100.0);
        if (profile)
            print_profile(&prof_prefill, &prof_decode);
        if (want_curve)
            print_ctx_curve(&curve, n_gen, false);
        if (bench_speculative_wanted(&spec))
            bench_speculative_print(&spec, &spec_figures, false);
    }
    free(pf), free(dc), free(tt), free(round_dc), free(round_bw), free(prompt);
    edgellm_context_free(ctx);
    edgellm_model_free(m);
    return 0;
}
