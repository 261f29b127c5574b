/* `edgellm convert`: import models from other formats into GGUF. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli_util.h"
#include "commands.h"
#include "convert/convert.h"
#include "convert/hf_tokenizer.h"
#include "core/status.h"
#include "edgellm.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: edgellm convert --from llama2c CHECKPOINT.bin --tokenizer TOKENIZER.bin "
            "-o OUT.gguf [--outtype f32|f16|q8_0|q4_0] [--name NAME]\n"
            "       edgellm convert --from hf MODEL_DIR -o OUT.gguf "
            "[--outtype f32|f16|bf16|q8_0] [--name NAME] [--vocab-only]\n"
            "  MODEL_DIR is a Hugging Face checkpoint folder: config.json, tokenizer.json\n"
            "  (with tokenizer_config.json, generation_config.json) and model.safetensors\n"
            "  (or shards with model.safetensors.index.json). --vocab-only writes just the\n"
            "  tokenizer and metadata (no weights needed).\n"
            "       edgellm convert --from sentencepiece MODEL.model -o VOCAB.gguf [--name NAME]\n"
            "  MODEL.model is a BPE model from spm_train (--model_type=bpe\n"
            "  --normalization_rule_name=identity --remove_extra_whitespaces=false); the GGUF\n"
            "  vocabulary tokenizes as spm_encode does, for 'edgellm train --vocab'.\n");
}

static void report_fallback(void *user, const char *tensor, ellm_type wanted, ellm_type used)
{
    (void)user;
    fprintf(stderr, "edgellm convert: %s: rows do not split into %s blocks; stored as %s\n", tensor,
            ellm_type_name(wanted), ellm_type_name(used));
}

/* True, after printing the error, when out is one of the files the import reads: a .json or
 * .safetensors file directly in the checkpoint folder (the shards' names are the index's). */
static bool output_in_checkpoint(const char *cmd, const char *dir, const char *out)
{
    struct stat out_st, dir_st, parent_st;
    if (stat(out, &out_st) != 0 || stat(dir, &dir_st) != 0)
        return false;
    const char *slash = strrchr(out, '/');
    char parent[4096];
    snprintf(parent, sizeof parent, "%.*s", slash ? (int)(slash - out) + 1 : 1, slash ? out : ".");
    const char *base = slash ? slash + 1 : out;
    size_t n = strlen(base);
    bool read = (n > 5 && !strcmp(base + n - 5, ".json")) ||
                (n > 12 && !strcmp(base + n - 12, ".safetensors"));
    if (!read || stat(parent, &parent_st) != 0 || parent_st.st_dev != dir_st.st_dev ||
        parent_st.st_ino != dir_st.st_ino)
        return false;
    cli_error(cmd,
              "the output '%s' is a file of the checkpoint folder '%s' that the import reads: "
              "writing it would destroy it; nothing was written: give another output path",
              out, dir);
    return true;
}

/* --from hf: a Hugging Face model directory (weights and vocabulary, or the vocabulary only). */
static int convert_hf(const char *dir, const char *tokenizer, const char *out, ellm_type out_type,
                      const char *name, bool vocab_only)
{
    const char *cmd = "convert";
    if (!dir || !out) {
        cli_error(cmd, "need MODEL_DIR (a Hugging Face model directory) and -o OUT.gguf");
        return EXIT_USAGE;
    }
    if (tokenizer) {
        cli_error(cmd, "--tokenizer is for llama2c; a Hugging Face folder's tokenizer.json is "
                       "read from MODEL_DIR");
        return EXIT_USAGE;
    }
    /* A FIFO or device output is refused before the import, as for the other formats. */
    if (cli_output_refused(cmd, out, NULL, 0) || output_in_checkpoint(cmd, dir, out))
        return EXIT_USAGE;
    if (vocab_only) {
        if (ellm_convert_hf_vocab_only(dir, out, name) != EDGELLM_OK) {
            cli_error(cmd, "%s", edgellm_last_error());
            return 1;
        }
        fprintf(stderr, "edgellm convert: wrote %s (vocabulary only)\n", out);
        return 0;
    }
    if (out_type == ELLM_TYPE_Q4_0) {
        cli_error(cmd, "--from hf writes f32, f16, bf16 or q8_0; use 'edgellm quantize' for "
                       "q4_0 afterwards");
        return EXIT_USAGE;
    }
    if (vocab_only) {
        if (ellm_convert_hf_vocab_only(dir, out, name) != EDGELLM_OK) {
            cli_error(cmd, "%s", edgellm_last_error());
            return 1;
        }
        fprintf(stderr, "edgellm convert: wrote %s\n", out);
        return 0;
    }
    ellm_convert_options o = {.out_type = out_type, .name = name, .on_fallback = report_fallback};
    bool with_vocab = false;
    if (ellm_convert_hf(dir, out, &o, &with_vocab) != EDGELLM_OK) {
        cli_error(cmd, "%s", edgellm_last_error());
        return 1;
    }
    if (!with_vocab)
        fprintf(stderr,
                "edgellm convert: wrote %s (weights only: %s has no tokenizer.json, so "
                "the file cannot tokenize text)\n",
                out, dir);
    else
        fprintf(stderr, "edgellm convert: wrote %s\n", out);
    return 0;
}

/* --from sentencepiece: a vocabulary only (SentencePiece models hold no weights). */
static int convert_sentencepiece(const char *model, const char *tokenizer, const char *out,
                                 ellm_type out_type, const char *name)
{
    const char *cmd = "convert";
    if (!model || !out) {
        cli_error(cmd, "need MODEL.model (from spm_train) and -o VOCAB.gguf");
        return EXIT_USAGE;
    }
    if (tokenizer || out_type != ELLM_TYPE_F32) {
        cli_error(cmd, "--from sentencepiece writes a vocabulary only: drop --%s",
                  tokenizer ? "tokenizer" : "outtype");
        return EXIT_USAGE;
    }
    const cli_input input = {"the SentencePiece model", model};
    if (cli_output_refused(cmd, out, &input, 1))
        return EXIT_USAGE;
    if (ellm_convert_sentencepiece(model, out, name) != EDGELLM_OK) {
        cli_error(cmd, "%s", edgellm_last_error());
        return 1;
    }
    fprintf(stderr, "edgellm convert: wrote %s (vocabulary only)\n", out);
    return 0;
}

int cmd_convert(int argc, char **argv)
{
    const char *cmd = "convert";
    const char *from = NULL, *input = NULL, *tokenizer = NULL, *out = NULL, *name = NULL;
    ellm_type out_type = ELLM_TYPE_F32;
    bool vocab_only = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--from")) {
            if (!(v = cli_option_value(cmd, argc, argv, &i)))
                return EXIT_USAGE;
            from = v;
        } else if (!strcmp(a, "--vocab-only")) {
            vocab_only = true;
        } else if (!strcmp(a, "--tokenizer")) {
            if (!(v = cli_option_value(cmd, argc, argv, &i)))
                return EXIT_USAGE;
            tokenizer = v;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            if (!(v = cli_option_value(cmd, argc, argv, &i)))
                return EXIT_USAGE;
            out = v;
        } else if (!strcmp(a, "--name")) {
            if (!(v = cli_option_value(cmd, argc, argv, &i)))
                return EXIT_USAGE;
            name = v;
        } else if (!strcmp(a, "--outtype")) {
            if (!(v = cli_option_value(cmd, argc, argv, &i)))
                return EXIT_USAGE;
            if (!ellm_type_from_name(v, &out_type) ||
                (out_type != ELLM_TYPE_F32 && out_type != ELLM_TYPE_F16 &&
                 out_type != ELLM_TYPE_BF16 && out_type != ELLM_TYPE_Q8_0 &&
                 out_type != ELLM_TYPE_Q4_0)) {
                cli_error(cmd, "--outtype must be f32, f16, bf16, q8_0 or q4_0, got '%s'", v);
                return EXIT_USAGE;
            }
        } else if (a[0] == '-' && a[1] != '\0') {
            cli_error(cmd, "unknown option '%s' (see 'edgellm convert --help')", a);
            return EXIT_USAGE;
        } else if (!input) {
            input = a;
        } else {
            cli_error(cmd, "unexpected argument '%s'", a);
            return EXIT_USAGE;
        }
    }
    if (!from) {
        cli_error(cmd, "say which format to read: --from llama2c, --from hf or --from "
                       "sentencepiece");
        return EXIT_USAGE;
    }
    if (!strcmp(from, "hf"))
        return convert_hf(input, tokenizer, out, out_type, name, vocab_only);
    if (!strcmp(from, "sentencepiece"))
        return convert_sentencepiece(input, tokenizer, out, out_type, name);
    if (strcmp(from, "llama2c") != 0) {
        cli_error(cmd, "unknown source format '%s' (supported: llama2c, hf, sentencepiece)", from);
        return EXIT_USAGE;
    }
    if (vocab_only) {
        cli_error(cmd, "--vocab-only is for --from hf");
        return EXIT_USAGE;
    }
    if (out_type == ELLM_TYPE_BF16) {
        cli_error(cmd, "--outtype bf16 is only available with --from hf");
        return EXIT_USAGE;
    }
    if (!input || !tokenizer || !out) {
        cli_error(cmd, "need CHECKPOINT, --tokenizer TOKENIZER.bin and -o OUT.gguf");
        return EXIT_USAGE;
    }
    const cli_input inputs[] = {{"the checkpoint", input}, {"--tokenizer", tokenizer}};
    if (cli_output_refused(cmd, out, inputs, sizeof inputs / sizeof *inputs))
        return EXIT_USAGE;
    ellm_convert_options o = {.out_type = out_type, .name = name, .on_fallback = report_fallback};
    if (ellm_convert_llama2c(input, tokenizer, out, &o) != EDGELLM_OK) {
        cli_error(cmd, "%s", edgellm_last_error());
        return 1;
    }
    fprintf(stderr, "edgellm convert: wrote %s\n", out);
    return 0;
}
