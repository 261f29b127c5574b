/* `edgellm models ...`: the on-device model store. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli_util.h"
#include "commands.h"
#include "core/mapped_file.h"
#include "edgellm.h"
#include "store/store.h"

#define CMD "models"

static void models_usage(FILE *out)
{
    fprintf(out,
            "usage: edgellm models <action> [options]   (store: $EDGELLM_HOME, default "
            "~/.local/share/edgellm)\n\n"
            "  install NAME[:VERSION] FROM   install a .gguf file or http(s):// URL; verifies "
            "FROM.sig\n"
            "          [--sig PATH|URL] [--allow-unsigned] [--no-activate] [--retries N]\n"
            "          [--no-progress]   (the progress bar shows only on a terminal anyway)\n"
            "  list                          installed models, their active version and pin\n"
            "  info NAME                     every version with its metadata\n"
            "  activate NAME:VERSION         switch the active version\n"
            "  rollback NAME                 back to the previously active version\n"
            "  pin NAME | unpin NAME         pinned models keep their active version on install\n"
            "  remove NAME[:VERSION] [--force]\n"
            "  gc                            delete files no version references\n"
            "  verify                        re-hash every file and report corruption\n"
            "  path NAME[:VERSION]           the file `edgellm run -m NAME` would load\n"
            "  keygen KEYFILE                new Ed25519 key pair (KEYFILE, KEYFILE.pub)\n"
            "  sign --key KEYFILE NAME:VERSION FILE [--out FILE.sig]\n"
            "  trust KEY|KEYFILE.pub         add a publisher key to the trusted keys\n");
}

static int fail(const char *what)
{
    cli_error(CMD, "%s%s%s", what ? what : "", what ? ": " : "", edgellm_last_error());
    return 1;
}

static store *open_store(void)
{
    char root[1024];
    store *s = NULL;
    if (ellm_store_default_root(root, sizeof root) != EDGELLM_OK ||
        ellm_store_open(root, &s) != EDGELLM_OK) {
        fail(NULL);
        return NULL;
    }
    return s;
}

static int parse_ref_arg(const char *ref, char *name, char *version)
{
    if (ellm_store_parse_ref(ref, name, STORE_NAME_MAX, version, STORE_VERSION_MAX) != EDGELLM_OK) {
        fail(NULL);
        return EXIT_USAGE;
    }
    return 0;
}

static void print_notice(void *user, const char *message)
{
    (void)user;
    fprintf(stderr, "edgellm %s: note: %s\n", CMD, message);
}

static int do_install(int argc, char **argv)
{
    store_install_options opts = {
        .activate = true, .progress = isatty(STDERR_FILENO) != 0, .notice = print_notice};
    const char *positional[2] = {NULL, NULL};
    int n_pos = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--sig") == 0) {
            if (!(opts.sig = cli_option_value(CMD, argc, argv, &i)))
                return EXIT_USAGE;
        } else if (strcmp(argv[i], "--allow-unsigned") == 0) {
            opts.allow_unsigned = true;
        } else if (strcmp(argv[i], "--no-activate") == 0) {
            opts.activate = false;
        } else if (strcmp(argv[i], "--no-progress") == 0) {
            opts.progress = false;
        } else if (strcmp(argv[i], "--retries") == 0) {
            const char *v = cli_option_value(CMD, argc, argv, &i);
            long n = 0;
            if (!v || !cli_parse_int(CMD, "--retries", v, 0, 100, &n))
                return EXIT_USAGE;
            opts.max_retries = n == 0 ? -1 : (int)n;
        } else if (argv[i][0] == '-' && argv[i][1] == '-') {
            cli_error(CMD, "install: unknown option %s", argv[i]);
            return EXIT_USAGE;
        } else if (n_pos < 2) {
            positional[n_pos++] = argv[i];
        } else {
            cli_error(CMD, "install: unexpected argument %s", argv[i]);
            return EXIT_USAGE;
        }
    }
    if (n_pos != 2) {
        cli_error(CMD, "install needs NAME[:VERSION] and FROM (a .gguf file or http(s):// URL)");
        return EXIT_USAGE;
    }
    char name[STORE_NAME_MAX], version[STORE_VERSION_MAX];
    int rc = parse_ref_arg(positional[0], name, version);
    if (rc)
        return rc;
    store *s = open_store();
    if (!s)
        return 1;
    char installed[STORE_VERSION_MAX];
    edgellm_status st = ellm_store_install(s, name, version, positional[1], &opts, installed,
                                           sizeof installed);
    if (st != EDGELLM_OK) {
        ellm_store_close(s);
        return fail("install");
    }
    store_model m;
    if (ellm_store_get_model(s, name, &m) == EDGELLM_OK) {
        const store_version *v = ellm_store_model_find(&m, installed);
        printf("installed %s:%s (sha256 %.16s..., %s%s)%s\n", name, installed, v ? v->sha256 : "?",
               v && v->signed_by[0] ? "signed by " : "unsigned",
               v && v->signed_by[0] ? v->signed_by : "",
               strcmp(m.active, installed) == 0 ? ", active"
               : m.pinned                       ? ", not activated: the model is pinned"
                                                : "");
        ellm_store_model_clear(&m);
    }
    ellm_store_close(s);
    return 0;
}

static int do_list(store *s)
{
    char **names = NULL;
    size_t n = 0;
    if (ellm_store_list_names(s, &names, &n) != EDGELLM_OK)
        return fail("list");
    if (n == 0)
        printf("no models installed in %s\n", ellm_store_root(s));
    else
        printf("%-24s %-12s %-8s %-10s %-8s %s\n", "NAME", "ACTIVE", "VERSIONS", "SIZE", "QUANT",
               "PINNED");
    for (size_t i = 0; i < n; i++) {
        store_model m;
        if (ellm_store_get_model(s, names[i], &m) != EDGELLM_OK) {
            printf("%-24s (manifest unreadable: %s)\n", names[i], edgellm_last_error());
            continue;
        }
        const store_version *v = ellm_store_model_find(&m, m.active);
        char size[32];
        cli_format_bytes(v ? v->size : 0, size, sizeof size);
        printf("%-24s %-12s %-8zu %-10s %-8s %s\n", m.name, m.active[0] ? m.active : "-",
               m.n_versions, v ? size : "-", v ? v->quantization : "-", m.pinned ? "yes" : "no");
        ellm_store_model_clear(&m);
    }
    ellm_store_free_names(names, n);
    return 0;
}

static int do_info(store *s, const char *name)
{
    store_model m;
    if (ellm_store_get_model(s, name, &m) != EDGELLM_OK)
        return fail("info");
    printf("name:     %s\nactive:   %s\nprevious: %s\npinned:   %s\n", m.name,
           m.active[0] ? m.active : "-", m.previous[0] ? m.previous : "-", m.pinned ? "yes" : "no");
    for (size_t i = 0; i < m.n_versions; i++) {
        const store_version *v = &m.versions[i];
        char size[32], ram[32], when[64] = "?";
        time_t t = (time_t)v->installed_at;
        struct tm tm;
        if (gmtime_r(&t, &tm))
            strftime(when, sizeof when, "%Y-%m-%d %H:%M:%SZ", &tm);
        printf("\nversion %s%s\n", v->version,
               strcmp(v->version, m.active) == 0 ? "  (active)" : "");
        printf("  sha256:        %s\n", v->sha256);
        printf("  size:          %s (%llu bytes)\n", cli_format_bytes(v->size, size, sizeof size),
               (unsigned long long)v->size);
        printf("  architecture:  %s\n  quantization:  %s\n  parameters:    %llu\n", v->architecture,
               v->quantization, (unsigned long long)v->n_params);
        printf("  context:       %u\n  minimum RAM:   %s (at 512 tokens or the training context if "
               "shorter, F16 cache)\n",
               v->context_length, cli_format_bytes(v->min_ram_bytes, ram, sizeof ram));
        printf("  source:        %s\n  installed:     %s\n", v->source, when);
        printf("  signed by:     %s\n", v->signed_by[0] ? v->signed_by : "(unsigned)");
    }
    ellm_store_model_clear(&m);
    return 0;
}

static void report_verify(void *user, const char *name, const char *version, const char *problem)
{
    (void)user;
    if (problem)
        printf("CORRUPT %s%s%s: %s\n", name, version[0] ? ":" : "", version, problem);
    else
        printf("ok      %s:%s\n", name, version);
}

static int do_sign(int argc, char **argv)
{
    const char *key = NULL, *out = NULL, *ref = NULL, *file = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--key") == 0) {
            if (!(key = cli_option_value(CMD, argc, argv, &i)))
                return EXIT_USAGE;
        } else if (strcmp(argv[i], "--out") == 0) {
            if (!(out = cli_option_value(CMD, argc, argv, &i)))
                return EXIT_USAGE;
        } else if (!ref) {
            ref = argv[i];
        } else if (!file) {
            file = argv[i];
        } else {
            cli_error(CMD, "sign: unexpected argument %s", argv[i]);
            return EXIT_USAGE;
        }
    }
    if (!key || !ref || !file) {
        cli_error(CMD, "sign needs --key KEYFILE NAME:VERSION FILE");
        return EXIT_USAGE;
    }
    char name[STORE_NAME_MAX], version[STORE_VERSION_MAX];
    int rc = parse_ref_arg(ref, name, version);
    if (rc)
        return rc;
    if (!version[0]) {
        cli_error(CMD, "sign needs a version: NAME:VERSION");
        return EXIT_USAGE;
    }
    char default_out[4200];
    if (!out) {
        int n = snprintf(default_out, sizeof default_out, "%s.sig", file);
        if (n < 0 || (size_t)n >= sizeof default_out) {
            cli_error(CMD, "sign: the path %.60s... is too long to add .sig; give --out FILE",
                      file);
            return EXIT_USAGE;
        }
        out = default_out;
    }
    const cli_input inputs[] = {{"the signed file", file}, {"the secret key", key}};
    if (cli_output_overwrites_input(CMD, out, inputs, sizeof inputs / sizeof *inputs))
        return EXIT_USAGE;
    if (ellm_store_sign_file(key, file, name, version, out) != EDGELLM_OK)
        return fail("sign");
    printf("signed %s as %s:%s -> %s\n", file, name, version, out);
    return 0;
}

static int do_trust(store *s, const char *arg)
{
    char key[200] = "";
    /* A path that exists is a key file (refused unless regular); anything else the key itself. */
    struct stat sb;
    FILE *f = stat(arg, &sb) == 0 ? ellm_fopen_regular(arg) : NULL;
    if (!f && errno != ENOENT) {
        cli_error(CMD, "trust: %s", edgellm_last_error());
        return 1;
    }
    if (f) {
        char kind[32];
        if (fscanf(f, "%31s %199s", kind, key) != 2 || strcmp(kind, "ed25519") != 0)
            key[0] = '\0';
        fclose(f);
        if (!key[0]) {
            cli_error(CMD, "trust: %s is not a public key file (\"ed25519 <hex>\")", arg);
            return EXIT_USAGE;
        }
    } else {
        snprintf(key, sizeof key, "%s", arg);
    }
    if (ellm_store_trust_key(s, key, f ? arg : "") != EDGELLM_OK)
        return fail("trust");
    printf("trusted ed25519 %s\n", key);
    return 0;
}

int cmd_models(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        models_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    const char *action = argv[1];
    argc--;
    argv++;
    if (strcmp(action, "install") == 0)
        return do_install(argc, argv);
    if (strcmp(action, "sign") == 0)
        return do_sign(argc, argv);
    if (strcmp(action, "keygen") == 0) {
        if (argc != 2) {
            cli_error(CMD,
                      "keygen needs KEYFILE (the secret key; KEYFILE.pub gets the public key)");
            return EXIT_USAGE;
        }
        char pub[65];
        if (ellm_store_keygen(argv[1], pub) != EDGELLM_OK)
            return fail("keygen");
        printf("secret key: %s (keep it private)\npublic key: %s.pub\ned25519 %s\n", argv[1],
               argv[1], pub);
        return 0;
    }

    bool needs_arg = strcmp(action, "list") != 0 && strcmp(action, "gc") != 0 &&
                     strcmp(action, "verify") != 0;
    if (needs_arg && argc < 2) {
        cli_error(CMD, "%s needs a model name", action);
        return EXIT_USAGE;
    }
    bool force = argc >= 3 && strcmp(argv[2], "--force") == 0;
    if (argc > (needs_arg ? 2 : 1) + (force ? 1 : 0)) {
        cli_error(CMD, "%s: unexpected argument %s", action, argv[needs_arg ? 2 : 1]);
        return EXIT_USAGE;
    }
    char name[STORE_NAME_MAX] = "", version[STORE_VERSION_MAX] = "";
    if (needs_arg && strcmp(action, "trust") != 0) {
        int rc = parse_ref_arg(argv[1], name, version);
        if (rc)
            return rc;
    }
    store *s = open_store();
    if (!s)
        return 1;
    int rc = 0;
    if (strcmp(action, "list") == 0) {
        rc = do_list(s);
    } else if (strcmp(action, "info") == 0) {
        rc = do_info(s, name);
    } else if (strcmp(action, "activate") == 0) {
        if (!version[0]) {
            cli_error(CMD, "activate needs NAME:VERSION");
            rc = EXIT_USAGE;
        } else if (ellm_store_activate(s, name, version) != EDGELLM_OK) {
            rc = fail("activate");
        } else {
            printf("%s:%s is active\n", name, version);
        }
    } else if (strcmp(action, "rollback") == 0) {
        char now[STORE_VERSION_MAX];
        if (ellm_store_rollback(s, name, now, sizeof now) != EDGELLM_OK)
            rc = fail("rollback");
        else
            printf("%s:%s is active\n", name, now);
    } else if (strcmp(action, "pin") == 0 || strcmp(action, "unpin") == 0) {
        bool pin = strcmp(action, "pin") == 0;
        if (ellm_store_pin(s, name, pin) != EDGELLM_OK)
            rc = fail(action);
        else
            printf("%s is %s\n", name, pin ? "pinned" : "unpinned");
    } else if (strcmp(action, "remove") == 0) {
        if (ellm_store_remove(s, name, version, force) != EDGELLM_OK)
            rc = fail("remove");
        else
            printf("removed %s%s%s (run 'edgellm models gc' to free its files)\n", name,
                   version[0] ? ":" : "", version);
    } else if (strcmp(action, "gc") == 0) {
        uint64_t files = 0, bytes = 0;
        char b[32];
        if (ellm_store_gc(s, &files, &bytes) != EDGELLM_OK)
            rc = fail("gc");
        else
            printf("removed %llu unreferenced files, freed %s\n", (unsigned long long)files,
                   cli_format_bytes(bytes, b, sizeof b));
    } else if (strcmp(action, "verify") == 0) {
        size_t bad = 0;
        if (ellm_store_verify(s, report_verify, NULL, &bad) != EDGELLM_OK)
            rc = fail("verify");
        else if (bad) {
            cli_error(CMD, "verify: %zu problem(s) found; reinstall the corrupt versions", bad);
            rc = 1;
        } else {
            printf("all versions verified\n");
        }
    } else if (strcmp(action, "path") == 0) {
        char path[2048];
        if (ellm_store_model_path(s, argv[1], path, sizeof path) != EDGELLM_OK)
            rc = fail("path");
        else
            printf("%s\n", path);
    } else if (strcmp(action, "trust") == 0) {
        rc = do_trust(s, argv[1]);
    } else {
        cli_error(CMD, "unknown action '%s' (see 'edgellm models --help')", action);
        rc = EXIT_USAGE;
    }
    ellm_store_close(s);
    return rc;
}
