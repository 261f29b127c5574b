/* The `edgellm` command: dispatches to subcommands. */
#define _DEFAULT_SOURCE /* sigaction, siginfo_t and BUS_ADRERR */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_util.h"
#include "commands.h"
#include "edgellm.h"

typedef struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"run", cmd_run, "generate text from a prompt"},
    {"chat", cmd_chat, "talk with a chat model, turn by turn, in its chat format"},
    {"info", cmd_info, "show a model's architecture, metadata, tensors and memory needs"},
    {"convert", cmd_convert, "convert a llama2.c or Hugging Face checkpoint to GGUF"},
    {"models", cmd_models, "install, verify, activate and roll back models in the local store"},
    {"plan", cmd_plan, "memory a model needs at a context length, and whether it fits"},
    {"recommend", cmd_recommend, "model size and quantization that fit a memory budget"},
    {"serve", cmd_serve, "OpenAI-compatible HTTP server"},
    {"synth", cmd_synth, "a model with random weights in the shapes of a known model"},
    {"quantize", cmd_quantize, "convert a GGUF model's weights to another type (q8_0, q4_0, ...)"},
    {"eval", cmd_eval, "perplexity, and KL divergence / top-1 agreement against saved logits"},
    {"bench", cmd_bench, "the standard edge benchmark record for a model on this machine"},
    {"tokenize", cmd_tokenize, "text to token ids (JSON), with the model's tokenizer"},
    {"redact", cmd_redact, "replace personal data and secrets in a text by placeholders"},
    {"imatrix", cmd_imatrix, "activation statistics over calibration text, for quantize --imatrix"},
    {"gateway", cmd_gateway,
     "one local OpenAI endpoint routing between the edge model and a cloud"},
    {"train", cmd_train, "train a llama model from scratch or fine-tune one on a text corpus"},
    {"prune", cmd_prune, "remove the least important heads, FFN channels or layers of a model"},
    {"distill", cmd_distill, "train a student model on a teacher model's token distributions"},
};

static void usage(FILE *out)
{
    fprintf(out, "edgellm %s — run language models on this device\n\n", edgellm_version());
    fprintf(out, "usage: edgellm <command> [options]   (edgellm <command> --help for details)\n\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (commands[i].fn)
            fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n  --version  the version and the kernel set this CPU runs\n");
}

#if defined(SA_SIGINFO) && defined(BUS_ADRERR) && !defined(__EMSCRIPTEN__)
/* Models are mapped, not read: when a model file shrinks while in use (truncated, or rewritten in
 * place by a copy or a download) reading a weight whose page is gone raises SIGBUS. Said as what
 * happened and what to do, instead of the shell's bare "Bus error". Any other SIGBUS is a bug: the
 * default action is restored and the faulting access runs again to produce it. */
static void on_sigbus(int sig, siginfo_t *info, void *context)
{
    (void)context;
    if (info->si_code == BUS_ADRERR) {
        static const char message[] =
            "edgellm: a model file shrank while it was in use (truncated, or rewritten in place), "
            "so its weights can no longer be read; stopped. Replace a model file by writing the "
            "new one under another name and renaming it over the old, then run again.\n";
        ssize_t written = write(STDERR_FILENO, message, sizeof message - 1);
        (void)written;
        _exit(EXIT_FAILURE);
    }
    signal(sig, SIG_DFL);
}

static void report_shrunk_models(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, NULL);
}
#else
static void report_shrunk_models(void) {}
#endif

/* Standard output goes to files and pipes as often as to a terminal: a full disk must not end in
 * exit 0 with the output cut short. Only said for a command that succeeded otherwise: one that
 * failed has said why already (and may have failed on this very write). */
static int with_output_checked(const char *cmd, int rc)
{
    int err = fflush(stdout) != 0 ? errno : 0;
    if (rc != 0 || (!err && !ferror(stdout)))
        return rc;
    fprintf(stderr,
            "edgellm %s: writing the output failed%s%s; it is incomplete (is the disk it goes "
            "to full?)\n",
            cmd, err ? ": " : "", err ? strerror(err) : "");
    return 1;
}

static int run_command(int argc, char **argv)
{
    /* Past a file-size limit (ulimit -f) a write then fails with EFBIG, which every writer
     * reports and cleans up after, instead of the signal killing the process mid-file. */
    signal(SIGXFSZ, SIG_IGN);
    report_shrunk_models();
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(name, "--version") == 0 || strcmp(name, "version") == 0) {
        printf("edgellm %s (kernels: %s)\n", edgellm_version(), edgellm_kernel_set());
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(name, commands[i].name) == 0) {
            if (!commands[i].fn) {
                fprintf(stderr, "edgellm: command '%s' is not available in this build\n", name);
                return EXIT_USAGE;
            }
            return commands[i].fn(argc - 1, argv + 1);
        }
    }
    fprintf(stderr, "edgellm: unknown command '%s' (run 'edgellm --help' for the list)\n", name);
    return EXIT_USAGE;
}

int main(int argc, char **argv)
{
    int rc = run_command(argc, argv);
    return with_output_checked(argc > 1 ? argv[1] : "", rc);
}
