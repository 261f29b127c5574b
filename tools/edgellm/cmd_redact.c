/* `edgellm redact`: the gateway's PII detectors on a text; prints the redacted text, or with
 * --json the entities found with their byte offsets, values and placeholders. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_util.h"
#include "commands.h"
#include "gateway/pii.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: edgellm redact (-p TEXT | -f FILE) [--json] [--policy FILE] [--block]\n"
            "  replaces e-mail addresses, phone numbers, card numbers, IBANs, SSNs, IP addresses,\n"
            "  URLs with credentials, secrets, labelled dates of birth and the policy's own terms\n"
            "  and patterns by placeholders ([EMAIL_1], ...) and prints the result\n"
            "  -f FILE        read the text from FILE ('-' for standard input)\n"
            "  --json         print {\"text\": REDACTED, \"entities\": [{\"type\", \"start\", "
            "\"end\",\n"
            "                 \"value\", \"placeholder\"}]} (byte offsets into the input)\n"
            "  --policy FILE  JSON policy: {\"pii\": {\"terms\": {...}, \"patterns\": {...},\n"
            "                 \"disable\": [...], \"allow\": [...]}} (see docs/gateway.md)\n"
            "  --block        redact nothing: print the text if it has no PII, otherwise name the\n"
            "                 types found (never the values) and exit 1\n");
}

static void print_json(const char *text, const char *redacted, size_t redacted_len,
                       const pii_entity *e, size_t n)
{
    fputs("{\"text\": ", stdout);
    cli_print_json_string(stdout, redacted, redacted_len);
    fputs(", \"entities\": [", stdout);
    for (size_t k = 0; k < n; k++) {
        printf("%s{\"type\": ", k ? ", " : "");
        cli_print_json_string(stdout, e[k].type, strlen(e[k].type));
        printf(", \"start\": %zu, \"end\": %zu, \"value\": ", e[k].start, e[k].end);
        cli_print_json_string(stdout, text + e[k].start, e[k].end - e[k].start);
        fputs(", \"placeholder\": ", stdout);
        cli_print_json_string(stdout, e[k].placeholder, strlen(e[k].placeholder));
        fputc('}', stdout);
    }
    fputs("]}\n", stdout);
}

int cmd_redact(int argc, char **argv)
{
    const char *prompt = NULL, *file = NULL, *policy_path = NULL;
    bool json = false, block = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "-p") == 0) {
            if (!(prompt = cli_option_value("redact", argc, argv, &i)))
                return EXIT_USAGE;
        } else if (strcmp(a, "-f") == 0) {
            if (!(file = cli_option_value("redact", argc, argv, &i)))
                return EXIT_USAGE;
        } else if (strcmp(a, "--policy") == 0) {
            if (!(policy_path = cli_option_value("redact", argc, argv, &i)))
                return EXIT_USAGE;
        } else if (strcmp(a, "--json") == 0) {
            json = true;
        } else if (strcmp(a, "--block") == 0) {
            block = true;
        } else {
            cli_error("redact", "unknown option '%s' (see edgellm redact --help)", a);
            return EXIT_USAGE;
        }
    }
    if (!prompt == !file) {
        cli_error("redact", "give the text with exactly one of -p TEXT or -f FILE");
        return EXIT_USAGE;
    }
    if (block && json) {
        cli_error("redact", "--block and --json do not go together: --block prints no values");
        return EXIT_USAGE;
    }
    pii_policy *policy;
    edgellm_status st = policy_path ? ellm_pii_policy_load(policy_path, &policy)
                                    : ellm_pii_policy_default(&policy);
    if (st != EDGELLM_OK) {
        cli_error("redact", "%s", edgellm_last_error());
        return st == EDGELLM_ERR_OUT_OF_MEMORY ? 1 : EXIT_USAGE;
    }
    size_t len = prompt ? strlen(prompt) : 0;
    char *data = NULL;
    if (file && !(data = cli_read_file(file, &len))) {
        cli_error("redact", "cannot read the text: %s", edgellm_last_error());
        ellm_pii_policy_free(policy);
        return 1;
    }
    const char *text = prompt ? prompt : data;
    int rc = 0;
    pii_session *session = NULL;
    char *redacted = NULL;
    size_t redacted_len = 0, n = 0;
    pii_entity *entities = NULL;
    if (block) {
        st = ellm_pii_scan(policy, text, len, &entities, &n);
    } else {
        st = ellm_pii_session_create(policy, &session);
        if (st == EDGELLM_OK)
            st = ellm_pii_redact(session, text, len, &redacted, &redacted_len, &entities, &n);
    }
    if (st != EDGELLM_OK) {
        cli_error("redact", "%s", edgellm_last_error());
        rc = 1;
    } else if (block && n > 0) {
        char types[256];
        ellm_pii_describe_types(entities, n, types, sizeof types);
        cli_error("redact", "blocked: the text contains %s (run without --block to redact)", types);
        rc = 1;
    } else if (block) {
        fwrite(text, 1, len, stdout);
        if (prompt)
            fputc('\n', stdout);
    } else if (json) {
        print_json(text, redacted, redacted_len, entities, n);
    } else {
        fwrite(redacted, 1, redacted_len, stdout);
        if (prompt)
            fputc('\n', stdout);
    }
    free(entities);
    free(redacted);
    ellm_pii_session_free(session);
    ellm_pii_policy_free(policy);
    free(data);
    if (fflush(stdout) != 0 && rc == 0) {
        cli_error("redact", "cannot write the output");
        rc = 1;
    }
    return rc;
}
