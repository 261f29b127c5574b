/* edgellm gateway: one local OpenAI endpoint in front of the edge model and a cloud model. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_util.h"
#include "commands.h"
#include "gateway/gateway.h"
#include "serve_options.h"

static void gateway_usage(FILE *out)
{
    fprintf(out,
            "usage: edgellm gateway -m EDGE.gguf --cloud-url URL [options]\n"
            "  Serves the OpenAI API of `edgellm serve` and decides per request whether the edge\n"
            "  model answers or the cloud does; personal data is redacted before anything leaves\n"
            "  and restored in the answer; an unreachable cloud falls back to the edge model.\n"
            "  Every answer carries x-edgellm-route and x-edgellm-route-reason (docs/gateway.md).\n"
            "      --cloud-url URL       an OpenAI-compatible server (https://host/v1)\n"
            "      --cloud-model NAME    the model named upstream (default: the client's)\n"
            "      --cloud-key-file F    the upstream's API key, read from a file\n"
            "      --cloud-key-env VAR   ... or from this environment variable\n"
            "                            (default: EDGELLM_CLOUD_KEY when set)\n"
            "      --cloud-insecure      do not verify the upstream's TLS certificate\n"
            "      --route MODE          auto (complexity score, default), edge or cloud\n"
            "      --pii MODE            redact (default), block (400 pii_detected) or off\n"
            "      --policy FILE         JSON: complexity_threshold, fallback_on_malformed, pii\n"
            "      --connect-timeout S   upstream connect timeout (default 0.5)\n"
            "      --cloud-timeout S     deadline of one upstream call (default 60)\n"
            "      --retries N           extra attempts after 429/5xx (default 1)\n"
            "      --probe-interval S    health probes while the cloud is down (default 0.5)\n"
            "      --speculative K       cloud requests: the edge drafts K tokens, the cloud\n"
            "                            verifies them in one call (needs the cloud's /tokenize)\n"
            "      --cloud-latency-ms MS test knob: wait MS before every cloud call\n"
            "  and every option of `edgellm serve` (-m, --host, --port, --parallel, --ctx,\n"
            "  --threads, --api-key, --api-key-file, --cors, --allowed-hosts, --max-body,\n"
            "  --timeout, --grace, --ready-file, ...).\n");
}

/* The key without its trailing newline; NULL with the reason printed. */
static char *read_cloud_key(const char *cmd, const char *path)
{
    char why[512];
    char *key = ellm_server_read_api_key_file(path, why, sizeof why);
    if (!key)
        cli_error(cmd, "--cloud-key-file: %s", why);
    return key;
}

int cmd_gateway(int argc, char **argv)
{
    const char *cmd = "gateway";
    gw_config g;
    memset(&g, 0, sizeof g);
    g.retries = -1;
    serve_options o;
    serve_options_init(&o, &g.server);
    char *cloud_key = NULL;
    const char *key_env = NULL;
    int rc = 0;
    double d;
    long v;
    for (int i = 1; i < argc && rc == 0; i++) {
        const char *a = argv[i];
        const char *val = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            gateway_usage(stdout);
            free(o.key_from_file);
            return 0;
        }
        int r = serve_option(cmd, &o, argc, argv, &i);
        if (r == SERVE_OPTION_TAKEN)
            continue;
        if (r != SERVE_OPTION_UNKNOWN) {
            rc = r == SERVE_OPTION_USAGE ? EXIT_USAGE : 1;
            break;
        }
        bool takes_value = strcmp(a, "--cloud-insecure") != 0;
        if (takes_value && !strncmp(a, "--", 2) && !(val = cli_option_value(cmd, argc, argv, &i))) {
            rc = EXIT_USAGE;
            break;
        }
        if (!strcmp(a, "--cloud-url")) {
            g.cloud_url = val;
        } else if (!strcmp(a, "--cloud-model")) {
            g.cloud_model = val;
        } else if (!strcmp(a, "--cloud-key-file")) {
            free(cloud_key);
            if (!(cloud_key = read_cloud_key(cmd, val)))
                rc = 1;
        } else if (!strcmp(a, "--cloud-key-env")) {
            key_env = val;
        } else if (!strcmp(a, "--cloud-insecure")) {
            g.cloud_insecure = true;
        } else if (!strcmp(a, "--route")) {
            if (!strcmp(val, "auto"))
                g.route = GW_ROUTE_AUTO;
            else if (!strcmp(val, "edge"))
                g.route = GW_ROUTE_EDGE;
            else if (!strcmp(val, "cloud"))
                g.route = GW_ROUTE_CLOUD;
            else {
                cli_error(cmd, "--route must be auto, edge or cloud (not '%s')", val);
                rc = EXIT_USAGE;
            }
        } else if (!strcmp(a, "--pii")) {
            if (!strcmp(val, "redact"))
                g.pii = GW_PII_REDACT;
            else if (!strcmp(val, "block"))
                g.pii = GW_PII_BLOCK;
            else if (!strcmp(val, "off"))
                g.pii = GW_PII_OFF;
            else {
                cli_error(cmd, "--pii must be redact, block or off (not '%s')", val);
                rc = EXIT_USAGE;
            }
        } else if (!strcmp(a, "--policy")) {
            g.policy_path = val;
        } else if (!strcmp(a, "--connect-timeout")) {
            if (!cli_parse_float(cmd, a, val, 0.001, 600, &d))
                rc = EXIT_USAGE;
            g.connect_timeout_s = d;
        } else if (!strcmp(a, "--cloud-timeout")) {
            if (!cli_parse_float(cmd, a, val, 0.001, 86400, &d))
                rc = EXIT_USAGE;
            g.deadline_s = d;
        } else if (!strcmp(a, "--probe-interval")) {
            if (!cli_parse_float(cmd, a, val, 0.01, 3600, &d))
                rc = EXIT_USAGE;
            g.probe_interval_s = d;
        } else if (!strcmp(a, "--speculative")) {
            if (!cli_parse_int(cmd, a, val, 1, 64, &v))
                rc = EXIT_USAGE;
            g.speculative_k = (int)v;
        } else if (!strcmp(a, "--cloud-latency-ms")) {
            if (!cli_parse_float(cmd, a, val, 0, 60000, &d))
                rc = EXIT_USAGE;
            g.cloud_latency_ms = d;
        } else if (!strcmp(a, "--retries")) {
            if (!cli_parse_int(cmd, a, val, 0, 10, &v))
                rc = EXIT_USAGE;
            g.retries = (int)v;
        } else {
            cli_error(cmd, "unknown option '%s' (see edgellm gateway --help)", a);
            rc = EXIT_USAGE;
        }
    }
    if (rc == 0 && !g.cloud_url) {
        cli_error(cmd, "no cloud given: edgellm gateway -m EDGE.gguf --cloud-url URL");
        rc = EXIT_USAGE;
    }
    if (rc == 0 && !cloud_key) {
        const char *name = key_env ? key_env : "EDGELLM_CLOUD_KEY";
        const char *env = getenv(name);
        if (key_env && !env) {
            cli_error(cmd, "--cloud-key-env: the environment variable %s is not set", key_env);
            rc = EXIT_USAGE;
        } else if (env) {
            char why[160];
            if (!ellm_server_check_api_key(env, strlen(env), why, sizeof why)) {
                cli_error(cmd, "the cloud key in %s %s", name, why);
                rc = EXIT_USAGE;
            } else if (!(cloud_key = strdup(env))) {
                rc = 1;
            }
        }
    }
    g.cloud_key = cloud_key;
    char resolved[4096];
    if (rc == 0)
        rc = serve_options_finish(cmd, &o, resolved, sizeof resolved);
    if (rc == 0)
        rc = ellm_gw_run(&g);
    if (cloud_key) {
        memset(cloud_key, 0, strlen(cloud_key));
        free(cloud_key);
    }
    free(o.key_from_file);
    return rc;
}
