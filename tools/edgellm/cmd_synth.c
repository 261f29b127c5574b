/* `edgellm synth`: a model with random weights and real shapes, for benchmarks and tests. */
#include <stdio.h>
#include <string.h>

#include "cli_util.h"
#include "commands.h"
#include "convert/synth.h"
#include "edgellm.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: edgellm synth (--preset NAME | --dims EMBD,LAYERS,HEADS,KV_HEADS,FF) "
            "--vocab VOCAB.gguf -o OUT.gguf [--type f32|f16|bf16|q8_0|q4_0] [--ctx N] "
            "[--seed S] [--tied]\n"
            "  presets: %s\n"
            "  the vocabulary (e.g. ../shared/models/llama2-vocab-tiny-f16.gguf, Llama 2's) is "
            "copied into the model\n",
            ellm_synth_preset_names());
}

int cmd_synth(int argc, char **argv)
{
    const char *cmd = "synth";
    const char *preset = NULL, *dims = NULL, *vocab = NULL, *out = NULL;
    ellm_type type = ELLM_TYPE_Q4_0;
    long ctx = 0;
    uint64_t seed = 1;
    bool tied = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = "";
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        bool takes_value = strcmp(a, "--tied") != 0;
        if (takes_value && !(v = cli_option_value(cmd, argc, argv, &i)))
            return EXIT_USAGE;
        if (!strcmp(a, "--preset"))
            preset = v;
        else if (!strcmp(a, "--dims"))
            dims = v;
        else if (!strcmp(a, "--vocab"))
            vocab = v;
        else if (!strcmp(a, "-o") || !strcmp(a, "--output"))
            out = v;
        else if (!strcmp(a, "--type")) {
            if (!ellm_type_from_name(v, &type)) {
                cli_error(cmd, "unknown type '%s' (f32, f16, bf16, q8_0, q4_0)", v);
                return EXIT_USAGE;
            }
        } else if (!strcmp(a, "--ctx")) {
            if (!cli_parse_int(cmd, a, v, 1, 1 << 24, &ctx))
                return EXIT_USAGE;
        } else if (!strcmp(a, "--seed")) {
            if (!cli_parse_u64(cmd, a, v, &seed))
                return EXIT_USAGE;
        } else if (!strcmp(a, "--tied")) {
            tied = true;
        } else {
            cli_error(cmd, "unknown option '%s' (see 'edgellm synth --help')", a);
            return EXIT_USAGE;
        }
    }
    if ((!preset) == (!dims)) {
        cli_error(cmd, "give either --preset NAME (%s) or --dims", ellm_synth_preset_names());
        return EXIT_USAGE;
    }
    if (!vocab || !out) {
        cli_error(cmd, "need --vocab VOCAB.gguf and -o OUT.gguf");
        return EXIT_USAGE;
    }
    const cli_input input = {"--vocab", vocab};
    if (cli_output_refused(cmd, out, &input, 1))
        return EXIT_USAGE;
    ellm_synth_shape shape;
    if (preset) {
        const ellm_synth_shape *p = ellm_synth_preset(preset);
        if (!p) {
            cli_error(cmd, "unknown preset '%s' (presets: %s)", preset, ellm_synth_preset_names());
            return EXIT_USAGE;
        }
        shape = *p;
    } else {
        int e, l, h, k, f;
        char extra;
        if (sscanf(dims, "%d,%d,%d,%d,%d%c", &e, &l, &h, &k, &f, &extra) != 5 || e <= 0 || l <= 0 ||
            h <= 0 || k <= 0 || f <= 0) {
            cli_error(cmd, "--dims expects EMBD,LAYERS,HEADS,KV_HEADS,FF (positive), got '%s'",
                      dims);
            return EXIT_USAGE;
        }
        shape = (ellm_synth_shape){"custom", e, l, h, k, f, 2048, 10000.0f, tied};
    }
    if (tied)
        shape.tied = true;
    if (ctx > 0)
        shape.n_ctx = (int32_t)ctx;
    fprintf(stderr, "edgellm synth: writing %s (%s weights, %d layers x %d)...\n", out,
            ellm_type_name(type), shape.n_layer, shape.n_embd);
    if (ellm_synth_model(&shape, type, vocab, out, seed) != EDGELLM_OK) {
        cli_error(cmd, "%s", edgellm_last_error());
        return 1;
    }
    fprintf(stderr, "edgellm synth: wrote %s\n", out);
    return 0;
}
