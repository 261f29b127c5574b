/* `edgellm quantize IN.gguf OUT.gguf TYPE`: TYPE is a single type or a named mix (Q3_K_M, ...). */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli_util.h"
#include "commands.h"
#include "convert/convert.h"
#include "edgellm.h"

static void report_fallback(void *user, const char *tensor, ellm_type wanted, ellm_type used)
{
    (void)user;
    fprintf(stderr, "edgellm quantize: %s: rows do not split into %s blocks; stored as %s\n",
            tensor, ellm_type_name(wanted), ellm_type_name(used));
}

static void report_progress(void *user, int done, int total)
{
    (void)user;
    if (isatty(STDERR_FILENO))
        fprintf(stderr, "\redgellm quantize: %d/%d tensors", done, total);
    if (done == total && isatty(STDERR_FILENO))
        fputc('\n', stderr);
}

int cmd_quantize(int argc, char **argv)
{
    const char *cmd = "quantize";
    if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        printf("usage: edgellm quantize IN.gguf OUT.gguf TYPE\n"
               "  TYPE: %s\n"
               "  Mixes keep the output head at 6 or 8 bits and give attention v/output and\n"
               "  ffn_down more bits where the mix says so (K_M: about half the layers at Q6_K).\n",
               ellm_quant_recipe_names());
        return 0;
    }
    if (argc != 4) {
        cli_error(cmd, "usage: edgellm quantize IN.gguf OUT.gguf TYPE (%s)", ellm_quant_recipe_names());
        return EXIT_USAGE;
    }
    ellm_type type;
    bool recipe = ellm_quant_recipe_exists(argv[3]);
    if (!recipe && !ellm_type_from_name(argv[3], &type)) {
        cli_error(cmd, "unknown type '%s' (%s)", argv[3], ellm_quant_recipe_names());
        return EXIT_USAGE;
    }
    if (!strcmp(argv[1], argv[2])) {
        cli_error(cmd, "the output must be a different file from the input");
        return EXIT_USAGE;
    }
    ellm_quantize_options o = {.on_fallback = report_fallback, .on_progress = report_progress};
    edgellm_status st = recipe ? ellm_quantize_model_recipe(argv[1], argv[2], argv[3], &o)
                               : ellm_quantize_model(argv[1], argv[2], type, &o);
    if (st != EDGELLM_OK) {
        cli_error(cmd, "%s", edgellm_last_error());
        return 1;
    }
    fprintf(stderr, "edgellm quantize: wrote %s (%s)\n", argv[2],
            recipe ? argv[3] : ellm_type_name(type));
    return 0;
}
