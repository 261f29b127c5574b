/* Calibration options and tokens (cli_calib.h). */
#include <stdlib.h>
#include <string.h>

#include "cli_calib.h"

cli_calib cli_calib_defaults(long ctx)
{
    cli_calib c = {NULL, NULL, ctx, 0, 0, false, false};
    return c;
}

cli_option_result cli_calib_option(const char *cmd, int argc, char **argv, int *i, cli_calib *c)
{
    const char *a = argv[*i];
    bool mine = !strcmp(a, "-f") || !strcmp(a, "--ids") || !strcmp(a, "--ctx") ||
                !strcmp(a, "--chunks") || !strcmp(a, "-t");
    if (!mine)
        return CLI_OPTION_NOT_MINE;
    const char *v = cli_option_value(cmd, argc, argv, i);
    if (!v)
        return CLI_OPTION_BAD;
    if (!strcmp(a, "-f")) {
        c->text_path = v;
    } else if (!strcmp(a, "--ids")) {
        c->ids_path = v;
    } else if (!strcmp(a, "--ctx")) {
        if (!cli_parse_int(cmd, a, v, 2, 1 << 24, &c->ctx))
            return CLI_OPTION_BAD;
        c->ctx_given = true;
    } else if (!strcmp(a, "--chunks")) {
        if (!cli_parse_int(cmd, a, v, 1, 1 << 30, &c->chunks))
            return CLI_OPTION_BAD;
        c->chunks_given = true;
    } else if (!cli_parse_int(cmd, a, v, 1, 256, &c->threads)) {
        return CLI_OPTION_BAD;
    }
    return CLI_OPTION_TAKEN;
}

edgellm_token *cli_calib_tokens(const char *cmd, const char *model_path, cli_calib *c, int32_t *n,
                                int *status)
{
    *n = 0;
    *status = 1;
    edgellm_model *m = NULL;
    if (edgellm_model_load(model_path, NULL, &m) != EDGELLM_OK) {
        cli_error(cmd, "%s", edgellm_last_error());
        return NULL;
    }
    edgellm_model_info info;
    edgellm_model_get_info(m, &info);
    if (info.n_ctx_train > 0 && c->ctx > info.n_ctx_train) {
        if (c->ctx_given) {
            cli_error(cmd, "--ctx %ld is longer than the model's context of %d", c->ctx,
                      info.n_ctx_train);
            edgellm_model_free(m);
            *status = EXIT_USAGE;
            return NULL;
        }
        c->ctx = info.n_ctx_train;
    }
    edgellm_token *ids = cli_load_tokens(cmd, m, c->text_path, c->ids_path, n);
    edgellm_model_free(m);
    return ids;
}

ellm_imatrix *cli_load_imatrix(const char *cmd, const char *path, const char *model_path)
{
    gguf_file *model = NULL;
    ellm_imatrix *im = NULL;
    if (ellm_gguf_open(model_path, &model) != EDGELLM_OK ||
        ellm_imatrix_load(path, model, &im) != EDGELLM_OK)
        cli_error(cmd, "%s", edgellm_last_error());
    ellm_gguf_close(model);
    return im;
}
