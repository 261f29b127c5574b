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
    if (ellm_store_resolve_model(model, path, cap) != EDGELLM_OK ||
        ellm_store_read_shape(path, shape) != EDGELLM_OK) {
        cli_error(cmd, "%s", edgellm_last_error());
        return false;
    }
    return true;
}

static const char *kv_type_name(edgellm_kv_type kv)
{
    return kv == EDGELLM_KV_F32 ? "f32" : kv == EDGELLM_KV_Q8_0 ? "q8_0" : "f16";
}

/* Plans the model file at path (loaded as `run` loads it: weights mapped, not read) for cp, whose
 * n_ctx (<= 0: the training context; above it, cut to it when clamp) is set to the context
 * planned; also the largest context that fits budget and the training context. Messages name
 * the model as the user gave it: an installed name, not its blob's path. */
static bool plan_file(const char *cmd, const char *name, const char *path,
                      edgellm_context_params *cp, bool clamp, uint64_t budget, store_plan *p,
                      int32_t *max_ctx, int32_t *train_ctx)
{
    edgellm_model *model = NULL;
    edgellm_model_info info;
    bool ok = edgellm_model_load(path, NULL, &model) == EDGELLM_OK &&
              edgellm_model_get_info(model, &info) == EDGELLM_OK;
    if (ok) {
        if (cp->n_ctx <= 0 || (clamp && cp->n_ctx > info.n_ctx_train))
            cp->n_ctx = info.n_ctx_train;
        ok = ellm_store_plan_model(model, cp, p) == EDGELLM_OK;
    }
    if (!ok) {
        cli_error(cmd, "cannot plan %s: %s", name, edgellm_last_error());
        edgellm_model_free(model);
        return false;
    }
    *max_ctx = ellm_store_plan_max_context(model, cp, budget, info.n_ctx_train);
    *train_ctx = info.n_ctx_train;
    edgellm_model_free(model);
    return true;
}

int cmd_plan(int argc, char **argv)
{
    const char *cmd = "plan", *model = NULL;
    long n_ctx = 0, n_batch = 0, n_threads = 0;
    edgellm_context_params cp = edgellm_context_default_params();
    uint64_t budget = 0;
    bool json = false, have_ram = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            printf("usage: edgellm plan -m MODEL [-c|--ctx CONTEXT] [--kv-type f16|f32|q8_0] "
                   "[--batch N] "
                   "[-t THREADS] [--ram SIZE] [--json]\n"
                   "  MODEL is a .gguf file or an installed name; SIZE like 3G (default: this "
                   "machine's available RAM)\n");
            return 0;
        } else if (strcmp(a, "-m") == 0 || strcmp(a, "--model") == 0) {
            if (!(model = cli_option_value(cmd, argc, argv, &i)))
                return EXIT_USAGE;
        } else if (strcmp(a, "-c") == 0 || strcmp(a, "--ctx") == 0 || strcmp(a, "--context") == 0) {
            if (!(v = cli_option_value(cmd, argc, argv, &i)) ||
                !cli_parse_int(cmd, a, v, 1, 1 << 24, &n_ctx))
                return EXIT_USAGE;
        } else if (strcmp(a, "--batch") == 0 || strcmp(a, "-b") == 0) {
            if (!(v = cli_option_value(cmd, argc, argv, &i)) ||
                !cli_parse_int(cmd, a, v, 1, 1 << 16, &n_batch))
                return EXIT_USAGE;
        } else if (strcmp(a, "--cache") == 0 || strcmp(a, "--kv-type") == 0) {
            if (!(v = cli_option_value(cmd, argc, argv, &i)) ||
                !cli_parse_kv_type(cmd, v, &cp.kv_type))
                return EXIT_USAGE;
        } else if (strcmp(a, "-t") == 0 || strcmp(a, "--threads") == 0) {
            if (!(v = cli_option_value(cmd, argc, argv, &i)) ||
                !cli_parse_int(cmd, a, v, 1, 256, &n_threads))
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
        budget = ellm_store_machine_ram();
    cp.n_ctx = (int32_t)n_ctx;
    cp.n_threads = (int32_t)n_threads;
    if (n_batch > 0)
        cp.n_batch = (int32_t)n_batch;
    store_plan p;
    int32_t max_ctx = 0, limit = 0;
    if (!plan_file(cmd, model, path, &cp, false, budget, &p, &max_ctx, &limit))
        return 1;
    int32_t ctx = cp.n_ctx;
    bool fits = p.total_bytes <= budget;
    int32_t batch = cp.n_batch < ctx ? cp.n_batch : ctx;
    if (json) {
        printf("{\"model\": ");
        cli_print_json_string(stdout, path, strlen(path)); /* the path as typed: quotes too */
        printf(", \"context\": %d, \"cache\": \"%s\", \"batch\": %d, "
               "\"weights_bytes\": %llu, \"kv_cache_bytes\": %llu, \"scratch_bytes\": %llu, "
               "\"overhead_bytes\": %llu, \"total_bytes\": %llu, \"budget_bytes\": %llu, "
               "\"fits\": %s, \"max_context\": %d, \"training_context\": %d}\n",
               ctx, kv_type_name(cp.kv_type), batch, (unsigned long long)p.weights_bytes,
               (unsigned long long)p.kv_bytes, (unsigned long long)p.scratch_bytes,
               (unsigned long long)p.overhead_bytes, (unsigned long long)p.total_bytes,
               (unsigned long long)budget, fits ? "true" : "false", max_ctx, limit);
        return 0;
    }
    char b1[32], b2[32], b3[32], b4[32], b5[32], b6[32];
    printf("model:     %s (%s, %s, %llu parameters)\n", path, shape.architecture,
           shape.quantization, (unsigned long long)shape.n_params);
    printf("context:   %d tokens, %s KV cache, batch %d (the engine's own layout for this model)\n",
           ctx, kv_type_name(cp.kv_type), batch);
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
        printf("fits:      NO, needs %s more\n",
               cli_format_bytes(p.total_bytes - budget, b1, sizeof b1));
    if (max_ctx == 0)
        printf("largest context that fits: none (the weights alone exceed the budget)\n");
    else
        printf("largest context that fits: %d tokens%s\n", max_ctx,
               max_ctx == limit ? " (the model's training context)" : "");
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
            printf(
                "usage: edgellm recommend [--ram SIZE] [--target browser|mobile|laptop] [-c|--ctx "
                "CONTEXT] [-m MODEL]\n");
            return 0;
        } else if (strcmp(a, "--ram") == 0) {
            if (!(v = cli_option_value(cmd, argc, argv, &i)) || !cli_parse_size(cmd, a, v, &ram))
                return EXIT_USAGE;
            have_ram = true;
        } else if (strcmp(a, "--target") == 0) {
            if (!(target = cli_option_value(cmd, argc, argv, &i)))
                return EXIT_USAGE;
            if (strcmp(target, "browser") != 0 && strcmp(target, "mobile") != 0 &&
                strcmp(target, "laptop") != 0) {
                cli_error(cmd, "--target expects browser, mobile or laptop, got '%s'", target);
                return EXIT_USAGE;
            }
        } else if (strcmp(a, "-c") == 0 || strcmp(a, "--ctx") == 0 || strcmp(a, "--context") == 0) {
            if (!(v = cli_option_value(cmd, argc, argv, &i)) ||
                !cli_parse_int(cmd, a, v, 1, 1 << 24, &n_ctx))
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
        ram = ellm_store_machine_ram();
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
    printf("device:  %s with %s RAM; budget %s (%s)\n", target,
           cli_format_bytes(ram, b1, sizeof b1), cli_format_bytes(usable, b2, sizeof b2),
           why_budget);
    printf("context: %d tokens, F16 KV cache\n\n", ctx);

    edgellm_context_params cp = edgellm_context_default_params();
    cp.n_ctx = ctx;
    const size_class *best = NULL;
    const quant_format *best_q = NULL;
    store_plan best_plan = {0};
    printf("%-8s %-6s %12s  %s\n", "SIZE", "QUANT", "NEEDS", "FITS");
    for (size_t c = 0; c < sizeof classes / sizeof classes[0]; c++) {
        for (size_t q = 0; q < sizeof formats / sizeof formats[0]; q++) {
            store_model_shape shape;
            class_shape(&classes[c], &formats[q], &shape);
            store_plan p;
            if (ellm_store_plan_shape(&shape, &cp, &p) != EDGELLM_OK) {
                cli_error(cmd, "%s", edgellm_last_error());
                return 1;
            }
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
        printf("recommendation: none: even a 0.5B model at Q4_0 needs more than %s here; use a "
               "smaller "
               "context (-c) or a device with more memory\n",
               cli_format_bytes(usable, b1, sizeof b1));
    } else {
        printf("recommendation: a %s model at %s (%s): it needs %s of the %s budget at %d tokens, "
               "leaving %s free; the next size up does not fit\n",
               best->label, best_q->name, best_q->why,
               cli_format_bytes(best_plan.total_bytes, b1, sizeof b1),
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
        edgellm_context_params model_cp = edgellm_context_default_params();
        model_cp.n_ctx = ctx;
        int32_t max_ctx = 0, train_ctx = 0;
        if (!plan_file(cmd, model, path, &model_cp, true, usable, &p, &max_ctx, &train_ctx))
            return 1;
        int32_t model_ctx = model_cp.n_ctx;
        if (p.total_bytes > usable) {
            printf("warning: %s cannot fit: it needs %s at %d tokens but the %s budget is %s%s\n",
                   model, cli_format_bytes(p.total_bytes, b1, sizeof b1), model_ctx, target,
                   cli_format_bytes(usable, b2, sizeof b2),
                   max_ctx > 0 ? " (a shorter context would)"
                               : " (its weights alone are too large)");
            rc = 1;
        } else {
            printf("%s fits: it needs %s at %d tokens of the %s budget\n", model,
                   cli_format_bytes(p.total_bytes, b1, sizeof b1), model_ctx,
                   cli_format_bytes(usable, b2, sizeof b2));
        }
    }
    return rc;
}
