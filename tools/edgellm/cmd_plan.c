/* `edgellm plan` (memory a model needs at a context length) and `edgellm recommend` (which model
 * size and quantization fit a device). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_util.h"
#include "commands.h"
#include "edgellm.h"
#include "store/store.h"

static bool load_shape(const char *cmd, const char *model, store_model_shape *shape, char *path,
                       size_t cap)
{
    if (store_resolve_model(model, path, cap) != EDGELLM_OK ||
        store_read_shape(path, shape) != EDGELLM_OK) {
        cli_error(cmd, "%s", edgellm_last_error());
        return false;
    }
    return true;
}

static bool parse_cache(const char *cmd, const char *s, int *bytes)
{
    if (strcmp(s, "f16") == 0 || strcmp(s, "F16") == 0)
        *bytes = 2;
    else if (strcmp(s, "f32") == 0 || strcmp(s, "F32") == 0)
        *bytes = 4;
    else {
        cli_error(cmd, "--cache expects f16 or f32, got '%s'", s);
        return false;
    }
    return true;
}

/* The plan for one context: the runtime's own accounting of what a context allocates when the
 * model loads (exactly what `edgellm run` will allocate), else the header-only estimate. */
typedef struct planner {
    const store_model_shape *shape;
    edgellm_model *model; /* NULL: header-only */
    int kv_bytes;
    int32_t n_batch;      /* 0: the runtime's default */
} planner;

static void plan_at(const planner *pl, int32_t ctx, store_plan *out)
{
    store_plan_memory(pl->shape, ctx, pl->kv_bytes, pl->n_batch > 0 ? pl->n_batch : 256, out);
    edgellm_memory_estimate est;
    if (pl->model &&
        edgellm_model_estimate_memory(pl->model, ctx, pl->kv_bytes == 2 ? EDGELLM_KV_F16 : EDGELLM_KV_F32,
                                      pl->n_batch, &est) == EDGELLM_OK) {
        out->weights_bytes = est.weights_bytes;
        out->kv_bytes = est.kv_cache_bytes;
        out->scratch_bytes = est.scratch_bytes;
        out->total_bytes = est.total_bytes + out->overhead_bytes;
    }
}

static int32_t plan_max_context(const planner *pl, uint64_t budget, int32_t limit)
{
    store_plan p;
    plan_at(pl, 1, &p);
    if (p.total_bytes > budget)
        return 0;
    plan_at(pl, limit, &p);
    if (p.total_bytes <= budget)
        return limit;
    int32_t lo = 1, hi = limit;
    while (hi - lo > 1) {
        int32_t mid = lo + (hi - lo) / 2;
        plan_at(pl, mid, &p);
        if (p.total_bytes <= budget)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

int cmd_plan(int argc, char **argv)
{
    const char *cmd = "plan", *model = NULL;
    long n_ctx = 0, n_batch = 0;
    int kv_bytes = 2;
    uint64_t budget = 0;
    bool json = false, have_ram = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            printf("usage: edgellm plan -m MODEL [-c CONTEXT] [--cache f16|f32] [--batch N] [--ram SIZE] [--json]\n"
                   "  MODEL is a .gguf file or an installed name; SIZE like 3G (default: this machine's available RAM)\n");
            return 0;
        } else if (strcmp(a, "-m") == 0 || strcmp(a, "--model") == 0) {
            if (!(model = cli_option_value(cmd, argc, argv, &i)))
                return EXIT_USAGE;
        } else if (strcmp(a, "-c") == 0 || strcmp(a, "--ctx") == 0 || strcmp(a, "--context") == 0) {
            if (!(v = cli_option_value(cmd, argc, argv, &i)) || !cli_parse_int(cmd, a, v, 1, 1 << 24, &n_ctx))
                return EXIT_USAGE;
        } else if (strcmp(a, "--batch") == 0 || strcmp(a, "-b") == 0) {
            if (!(v = cli_option_value(cmd, argc, argv, &i)) || !cli_parse_int(cmd, a, v, 1, 1 << 16, &n_batch))
                return EXIT_USAGE;
        } else if (strcmp(a, "--cache") == 0 || strcmp(a, "--kv-type") == 0) {
            if (!(v = cli_option_value(cmd, argc, argv, &i)) || !parse_cache(cmd, v, &kv_bytes))
                return EXIT_USAGE;
        } else if (strcmp(a, "--ram") == 0) {
            if (!(v = cli_option_value(cmd, argc, argv, &i)) || !cli_parse_size(cmd, a, v, &budget))
                return EXIT_USAGE;
            have_ram = true;
        } else if (strcmp(a, "--json") == 0) {
            json = true;
        } else if (a[0] != '-' && !model) {
            model = a;
        } else {
            cli_error(cmd, "unknown argument %s (see 'edgellm plan --help')", a);
            return EXIT_USAGE;
        }
    }
    if (!model) {
        cli_error(cmd, "needs -m MODEL (a .gguf file or an installed model name)");
        return EXIT_USAGE;
    }
    store_model_shape shape;
    char path[2048];
    if (!load_shape(cmd, model, &shape, path, sizeof path))
        return 1;
    if (!have_ram)
        budget = store_machine_ram();
    int32_t ctx = n_ctx > 0 ? (int32_t)n_ctx : (shape.n_ctx_train > 0 ? shape.n_ctx_train : 2048);
    planner pl = {.shape = &shape, .kv_bytes = kv_bytes, .n_batch = (int32_t)n_batch};
    const char *method = "the runtime's allocation for this model";
    if (edgellm_model_load(path, NULL, &pl.model) != EDGELLM_OK) {
        pl.model = NULL;
        method = "estimated from the GGUF header (the runtime cannot load this model)";
    }
    store_plan p;
    plan_at(&pl, ctx, &p);
    int32_t limit = shape.n_ctx_train > 0 ? shape.n_ctx_train : 1 << 20;
    int32_t max_ctx = plan_max_context(&pl, budget, limit);
    edgellm_model_free(pl.model);
    bool fits = p.total_bytes <= budget;
    if (json) {
        printf("{\"model\": \"%s\", \"context\": %d, \"cache\": \"%s\", \"batch\": %ld, "
               "\"weights_bytes\": %llu, \"kv_cache_bytes\": %llu, \"scratch_bytes\": %llu, "
               "\"overhead_bytes\": %llu, \"total_bytes\": %llu, \"budget_bytes\": %llu, "
               "\"fits\": %s, \"max_context\": %d, \"training_context\": %d, \"runtime_accounting\": %s}\n",
               path, ctx, kv_bytes == 2 ? "f16" : "f32", n_batch > 0 ? n_batch : 256L, (unsigned long long)p.weights_bytes,
               (unsigned long long)p.kv_bytes, (unsigned long long)p.scratch_bytes,
               (unsigned long long)p.overhead_bytes, (unsigned long long)p.total_bytes,
               (unsigned long long)budget, fits ? "true" : "false", max_ctx, shape.n_ctx_train,
               strncmp(method, "the runtime", 11) == 0 ? "true" : "false");
        return 0;
    }
    char b1[32], b2[32], b3[32], b4[32], b5[32], b6[32];
    printf("model:     %s (%s, %s, %llu parameters)\n", path, shape.architecture, shape.quantization,
           (unsigned long long)shape.n_params);
    printf("context:   %d tokens, %s KV cache, batch %ld (%s)\n", ctx, kv_bytes == 2 ? "F16" : "F32",
           n_batch > 0 ? n_batch : 256L, method);
    printf("weights:   %s (memory-mapped, shared between processes)\n",
           cli_format_bytes(p.weights_bytes, b1, sizeof b1));
    printf("KV cache:  %s\n", cli_format_bytes(p.kv_bytes, b2, sizeof b2));
    printf("scratch:   %s\n", cli_format_bytes(p.scratch_bytes, b3, sizeof b3));
    printf("runtime:   %s\n", cli_format_bytes(p.overhead_bytes, b4, sizeof b4));
    printf("total:     %s\n", cli_format_bytes(p.total_bytes, b5, sizeof b5));
    printf("budget:    %s (%s)\n", cli_format_bytes(budget, b6, sizeof b6),
           have_ram ? "--ram" : "available on this machine");
    if (fits)
        printf("fits:      yes\n");
    else
        printf("fits:      NO, needs %s more\n", cli_format_bytes(p.total_bytes - budget, b1, sizeof b1));
    if (max_ctx == 0)
        printf("largest context that fits: none (the weights alone exceed the budget)\n");
    else
        printf("largest context that fits: %d tokens%s\n", max_ctx,
               max_ctx == limit && shape.n_ctx_train > 0 ? " (the model's training context)" : "");
    if (n_ctx > 0 && shape.n_ctx_train > 0 && n_ctx > shape.n_ctx_train)
        printf("note: %ld exceeds the model's training context %d; quality degrades past it\n", n_ctx,
               shape.n_ctx_train);
    return 0;
}

/* Representative shapes of common open model size classes (Llama/Qwen-style, grouped-query
 * attention), used to turn a budget into advice without any file. */
typedef struct size_class {
    const char *label;
    uint64_t n_params;
    int32_t n_layer, n_embd, n_head, n_head_kv, head_dim, n_ff, n_vocab;
} size_class;

static const size_class classes[] = {
    {"0.5B", 494000000ull, 24, 896, 14, 2, 64, 4864, 151936},
    {"1B", 1240000000ull, 16, 2048, 32, 8, 64, 8192, 128256},
    {"3B", 3210000000ull, 28, 3072, 24, 8, 128, 8192, 128256},
    {"7-8B", 8030000000ull, 32, 4096, 32, 8, 128, 14336, 128256},
    {"13-14B", 14700000000ull, 48, 5120, 40, 8, 128, 13824, 152064},
    {"30-34B", 32800000000ull, 64, 5120, 40, 8, 128, 27648, 152064},
    {"70B", 70600000000ull, 80, 8192, 64, 8, 128, 28672, 128256},
};

typedef struct quant_format {
    const char *name;
    double bits_per_weight;
    const char *why;
} quant_format;

static const quant_format formats[] = {
    {"Q8_0", 8.5, "near-lossless quality"},
    {"Q4_0", 4.5, "about half the memory of Q8_0 at a small quality cost"},
};

static void class_shape(const size_class *c, const quant_format *q, store_model_shape *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->architecture, sizeof out->architecture, "llama");
    snprintf(out->quantization, sizeof out->quantization, "%s", q->name);
    out->n_params = c->n_params;
    out->weights_bytes = (uint64_t)((double)c->n_params * q->bits_per_weight / 8.0);
    out->n_layer = c->n_layer;
    out->n_embd = c->n_embd;
    out->n_head = c->n_head;
    out->n_head_kv = c->n_head_kv;
    out->head_dim = c->head_dim;
    out->n_ff = c->n_ff;
    out->n_vocab = c->n_vocab;
}

int cmd_recommend(int argc, char **argv)
{
    const char *cmd = "recommend", *target = "laptop", *model = NULL;
    uint64_t ram = 0;
    long n_ctx = 0;
    bool have_ram = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            printf("usage: edgellm recommend [--ram SIZE] [--target browser|mobile|laptop] [-c CONTEXT] [-m MODEL]\n");
            return 0;
        } else if (strcmp(a, "--ram") == 0) {
            if (!(v = cli_option_value(cmd, argc, argv, &i)) || !cli_parse_size(cmd, a, v, &ram))
                return EXIT_USAGE;
            have_ram = true;
        } else if (strcmp(a, "--target") == 0) {
            if (!(target = cli_option_value(cmd, argc, argv, &i)))
                return EXIT_USAGE;
            if (strcmp(target, "browser") != 0 && strcmp(target, "mobile") != 0 && strcmp(target, "laptop") != 0) {
                cli_error(cmd, "--target expects browser, mobile or laptop, got '%s'", target);
                return EXIT_USAGE;
            }
        } else if (strcmp(a, "-c") == 0 || strcmp(a, "--ctx") == 0 || strcmp(a, "--context") == 0) {
            if (!(v = cli_option_value(cmd, argc, argv, &i)) || !cli_parse_int(cmd, a, v, 1, 1 << 24, &n_ctx))
                return EXIT_USAGE;
        } else if (strcmp(a, "-m") == 0 || strcmp(a, "--model") == 0) {
            if (!(model = cli_option_value(cmd, argc, argv, &i)))
                return EXIT_USAGE;
        } else {
            cli_error(cmd, "unknown argument %s (see 'edgellm recommend --help')", a);
            return EXIT_USAGE;
        }
    }
    if (!have_ram)
        ram = store_machine_ram();
    const uint64_t gib = 1024ull * 1024 * 1024;
    uint64_t usable;
    const char *why_budget;
    int32_t ctx;
    if (strcmp(target, "browser") == 0) {
        usable = ram / 2 < 2 * gib ? ram / 2 : 2 * gib;
        why_budget = "half the RAM, at most 2 GiB: a wasm32 heap tops out at 4 GiB and browsers "
                     "reclaim tabs that grow past a couple of GiB";
        ctx = 2048;
    } else if (strcmp(target, "mobile") == 0) {
        usable = ram * 2 / 5;
        why_budget = "40% of RAM: mobile systems kill apps that hold more while other apps run";
        ctx = 2048;
    } else {
        usable = ram > 4 * gib ? ram - 2 * gib : ram / 2;
        if (usable > ram / 4 * 3)
            usable = ram / 4 * 3;
        why_budget = "RAM less 2 GiB (at most 75%) for the OS and other programs";
        ctx = 4096;
    }
    if (n_ctx > 0)
        ctx = (int32_t)n_ctx;
    char b1[32], b2[32], b3[32];
    printf("device:  %s with %s RAM; budget %s (%s)\n", target, cli_format_bytes(ram, b1, sizeof b1),
           cli_format_bytes(usable, b2, sizeof b2), why_budget);
    printf("context: %d tokens, F16 KV cache\n\n", ctx);

    const size_class *best = NULL;
    const quant_format *best_q = NULL;
    store_plan best_plan = {0};
    printf("%-8s %-6s %12s  %s\n", "SIZE", "QUANT", "NEEDS", "FITS");
    for (size_t c = 0; c < sizeof classes / sizeof classes[0]; c++) {
        for (size_t q = 0; q < sizeof formats / sizeof formats[0]; q++) {
            store_model_shape shape;
            class_shape(&classes[c], &formats[q], &shape);
            store_plan p;
            store_plan_memory(&shape, ctx, 2, 32, &p);
            bool fits = p.total_bytes <= usable;
            printf("%-8s %-6s %12s  %s\n", classes[c].label, formats[q].name,
                   cli_format_bytes(p.total_bytes, b1, sizeof b1), fits ? "yes" : "no");
            /* Prefer more parameters over more bits: a larger model at Q4_0 beats a smaller one
             * at Q8_0 of the same memory; within one size, the better format wins. */
            if (fits && (!best || classes[c].n_params > best->n_params)) {
                best = &classes[c];
                best_q = &formats[q];
                best_plan = p;
            }
        }
    }
    printf("\n");
    if (!best) {
        printf("recommendation: none: even a 0.5B model at Q4_0 needs more than %s here; use a smaller "
               "context (-c) or a device with more memory\n", cli_format_bytes(usable, b1, sizeof b1));
    } else {
        printf("recommendation: a %s model at %s (%s): it needs %s of the %s budget at %d tokens, "
               "leaving %s free; the next size up does not fit\n",
               best->label, best_q->name, best_q->why, cli_format_bytes(best_plan.total_bytes, b1, sizeof b1),
               cli_format_bytes(usable, b2, sizeof b2), ctx,
               cli_format_bytes(usable - best_plan.total_bytes, b3, sizeof b3));
    }
    int rc = 0;
    if (model) {
        store_model_shape shape;
        char path[2048];
        if (!load_shape(cmd, model, &shape, path, sizeof path))
            return 1;
        store_plan p;
        int32_t model_ctx = ctx;
        if (shape.n_ctx_train > 0 && model_ctx > shape.n_ctx_train)
            model_ctx = shape.n_ctx_train;
        planner pl = {.shape = &shape, .kv_bytes = 2};
        if (edgellm_model_load(path, NULL, &pl.model) != EDGELLM_OK)
            pl.model = NULL;
        plan_at(&pl, model_ctx, &p);
        int32_t max_ctx = plan_max_context(&pl, usable, shape.n_ctx_train > 0 ? shape.n_ctx_train : 1 << 20);
        edgellm_model_free(pl.model);
        if (p.total_bytes > usable) {
            printf("warning: %s cannot fit: it needs %s at %d tokens but the %s budget is %s%s\n", model,
                   cli_format_bytes(p.total_bytes, b1, sizeof b1), model_ctx, target,
                   cli_format_bytes(usable, b2, sizeof b2),
                   max_ctx > 0 ? " (a shorter context would)" : " (its weights alone are too large)");
            rc = 1;
        } else {
            printf("%s fits: it needs %s at %d tokens of the %s budget\n", model,
                   cli_format_bytes(p.total_bytes, b1, sizeof b1), model_ctx, cli_format_bytes(usable, b2, sizeof b2));
        }
    }
    return rc;
}
