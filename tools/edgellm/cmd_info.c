/* `edgellm info`: what a model file is and what it needs. */
#include <stdio.h>
#include <string.h>

#include "cli_util.h"
#include "commands.h"
#include "edgellm.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: edgellm info MODEL.gguf [--ctx N] [--kv-type f16|f32|q8_0] [--no-tensors]\n");
}

int cmd_info(int argc, char **argv)
{
    const char *cmd = "info";
    const char *path = NULL;
    long ctx_len = 0;
    bool tensors = true;
    edgellm_kv_type kv = EDGELLM_KV_F16;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--ctx") || !strcmp(a, "-c")) {
            if (!(v = cli_option_value(cmd, argc, argv, &i)) ||
                !cli_parse_int(cmd, a, v, 1, 1 << 24, &ctx_len))
                return EXIT_USAGE;
        } else if (!strcmp(a, "--kv-type")) {
            if (!(v = cli_option_value(cmd, argc, argv, &i)))
                return EXIT_USAGE;
            if (!cli_parse_kv_type(cmd, v, &kv))
                return EXIT_USAGE;
        } else if (!strcmp(a, "--no-tensors")) {
            tensors = false;
        } else if (a[0] == '-' && a[1] != '\0') {
            cli_error(cmd, "unknown option '%s' (see 'edgellm info --help')", a);
            return EXIT_USAGE;
        } else if (!path) {
            path = a;
        } else {
            cli_error(cmd, "unexpected argument '%s': give one model file", a);
            return EXIT_USAGE;
        }
    }
    if (!path) {
        cli_error(cmd, "no model given: edgellm info MODEL.gguf");
        return EXIT_USAGE;
    }
    edgellm_model *m = cli_load_model(cmd, path, NULL);
    if (!m)
        return 1;
    edgellm_model_info in;
    edgellm_model_get_info(m, &in);
    char b1[32], b2[32], b3[32], b4[32];
    printf("model:          %s\n", path);
    printf("name:           %s\n", in.name[0] ? in.name : "(none)");
    printf("architecture:   %s\n", in.architecture);
    printf("weights:        %s (most bytes), %llu parameters, %s of tensors, file %s\n",
           in.quantization, (unsigned long long)in.n_params,
           cli_format_bytes(in.weights_bytes, b1, sizeof b1),
           cli_format_bytes(in.file_bytes, b2, sizeof b2));
    printf("hyper-parameters:\n");
    printf("  context length %d, embedding %d, layers %d, feed-forward %d\n", in.n_ctx_train,
           in.n_embd, in.n_layer, in.n_ff);
    printf("  heads %d, KV heads %d, head size %d\n", in.n_head, in.n_head_kv, in.head_dim);
    printf("  RMS norm epsilon %g, RoPE %s base %g scale %g\n", in.rms_norm_eps,
           in.rope_neox ? "NeoX" : "normal", in.rope_freq_base, in.rope_freq_scale);
    printf("  output head: %s\n", in.tied_embeddings ? "tied to the token embedding" : "separate");
    printf("vocabulary:     %d tokens, BOS %d, EOS %d, add BOS %s\n", in.n_vocab,
           edgellm_token_bos(m), edgellm_token_eos(m), edgellm_add_bos_default(m) ? "yes" : "no");
    printf("kernels:        %s\n", edgellm_kernel_set());

    edgellm_memory_estimate est;
    const char *kv_name = kv == EDGELLM_KV_F16 ? "F16" : kv == EDGELLM_KV_Q8_0 ? "Q8_0" : "F32";
    if (edgellm_model_estimate_memory(m, (int32_t)ctx_len, kv, 0, &est) == EDGELLM_OK) {
        printf("memory at context %ld (%s KV cache): weights %s + KV cache %s + scratch %s = %s\n",
               ctx_len > 0 ? ctx_len : (long)in.n_ctx_train, kv_name,
               cli_format_bytes(est.weights_bytes, b1, sizeof b1),
               cli_format_bytes(est.kv_cache_bytes, b2, sizeof b2),
               cli_format_bytes(est.scratch_bytes, b3, sizeof b3),
               cli_format_bytes(est.total_bytes, b4, sizeof b4));
    } else {
        printf("memory:         %s\n", edgellm_last_error());
    }

    printf("metadata (%lld keys):\n", (long long)edgellm_model_meta_count(m));
    for (int64_t i = 0; i < edgellm_model_meta_count(m); i++) {
        char key[256], value[512];
        if (edgellm_model_meta_at(m, i, key, sizeof key, value, sizeof value) == EDGELLM_OK)
            printf("  %-44s %s\n", key, value);
    }
    if (tensors) {
        printf("tensors (%lld):\n", (long long)edgellm_model_tensor_count(m));
        printf("  %-36s %-7s %-24s %s\n", "name", "type", "shape", "bytes");
        for (int64_t i = 0; i < edgellm_model_tensor_count(m); i++) {
            edgellm_tensor_desc t;
            if (edgellm_model_tensor_at(m, i, &t) != EDGELLM_OK)
                continue;
            char shape[64];
            int n = 0;
            for (int d = 0; d < t.n_dims && n < (int)sizeof shape; d++)
                n += snprintf(shape + n, sizeof shape - (size_t)n, d ? " x %lld" : "%lld",
                              (long long)t.ne[d]);
            printf("  %-36s %-7s %-24s %llu\n", t.name, t.type, shape,
                   (unsigned long long)t.n_bytes);
        }
    }
    edgellm_model_free(m);
    return 0;
}
