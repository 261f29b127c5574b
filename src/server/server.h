/* The OpenAI-compatible HTTP server behind `edgellm serve`. */
#ifndef EDGELLM_SERVER_H
#define EDGELLM_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ellm_server_config {
    const char *model_path;
    const char *model_id;      /* the id clients name; NULL = the file name without .gguf */
    const char *host;          /* NULL = 127.0.0.1 */
    int port;                  /* 0 = any free port (the chosen one is printed) */
    int parallel;              /* sequences decoded together */
    int n_ctx;                 /* per sequence; 0 = the model's training context, -N = that
                                  but at most N */
    int n_threads;             /* <= 0 = every CPU */
    int n_batch;               /* tokens per forward pass; <= 0 = 256 */
    int queue_max;             /* requests waiting for a slot before 429; < 0 = 4 x parallel */
    const char *api_key;       /* NULL = no authentication */
    const char *cors_origins;  /* comma-separated allowed origins; NULL = no CORS headers */
    size_t max_body_bytes;     /* 0 = 1 MiB */
    double request_timeout_s;  /* deadline of one request; <= 0 = 600 */
    double shutdown_grace_s;   /* how long in-flight requests may finish after SIGTERM */
    const char *ready_file;    /* if set, "host:port" is written here once listening */
} ellm_server_config;

/* Loads the model, serves until SIGINT/SIGTERM, drains, and returns a process exit code. Errors
 * are printed to stderr. */
int ellm_server_run(const ellm_server_config *config);

#endif
