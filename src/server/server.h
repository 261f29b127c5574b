/* The OpenAI-compatible HTTP server behind `edgellm serve`. */
#ifndef EDGELLM_SERVER_H
#define EDGELLM_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "edgellm.h"

typedef struct ellm_server_config {
    const char *model_path;        /* NULL only with web_root: the page, no API model */
    const char *model_id;          /* the id clients name; NULL = the file name without .gguf */
    const char *host;              /* NULL = 127.0.0.1 */
    int port;                      /* 0 = any free port (the chosen one is printed) */
    int parallel;                  /* sequences decoded together */
    int n_ctx;                     /* per sequence; 0 = the model's training context, -N = that
                                  but at most N */
    int n_threads;                 /* <= 0 = every CPU */
    int n_batch;                   /* tokens per forward pass; <= 0 = 256 */
    int queue_max;                 /* requests waiting for a slot before 429; < 0 = 4 x parallel */
    const char *api_key;           /* NULL = no authentication */
    const char *cors_origins;      /* comma-separated allowed origins; NULL = no CORS headers */
    size_t max_body_bytes;         /* 0 = 1 MiB */
    double request_timeout_s;      /* deadline of one request; <= 0 = 600 */
    int body_timeout_s;            /* how long a request may take to arrive: the longest silence
                                      in its headers or body, and its body's whole time after the
                                      headers; <= 0 = 30 */
    double shutdown_grace_s;       /* how long in-flight requests may finish after SIGTERM */
    const char *ready_file;        /* if set, "host:port" is written here once listening */
    const char *allowed_hosts;     /* comma-separated Host names accepted besides localhost and the
                                  bound address; "*" = any; NULL = none */
    const struct srv_front *front; /* a routing hook in front of the local handlers (the
                                      gateway, src/server/http.h); NULL for `serve` */
    const char *log_name;          /* the command named in messages; NULL = "edgellm serve" */
    /* Speculative decoding per slot (docs/speculative.md): a draft model sharing the model's
     * vocabulary, or prompt lookup of this many tokens; at most one. */
    const char *draft_path;   /* NULL = none */
    int lookup_ngram;         /* 0 = off */
    int draft_max, draft_min; /* proposals per pass: most, and fewest worth checking */
    edgellm_kv_type kv_type;  /* every slot's KV cache (0 = F16) */
    /* The model's and the draft's mappings (0 = huge pages; `serve` takes EDGELLM_HUGEPAGES). */
    edgellm_page_advice pages;
    /* `serve --web`: "/" is the chat page that runs a model in the browser, and this folder's
     * files (the browser build, make web) are served under /dist/; NULL = the page at "/" chats
     * through this server's API. */
    const char *web_root;
} ellm_server_config;

/* Loads the model, serves until SIGINT/SIGTERM, drains, and returns a process exit code. Errors
 * are printed to stderr. */
int ellm_server_run(const ellm_server_config *config);

/* The longest API key accepted, in bytes. */
#define ELLM_SERVER_API_KEY_MAX 1024

/* Whether key[0..len) can be an API key (1 to ELLM_SERVER_API_KEY_MAX printable ASCII
 * characters, no spaces); if not, err gets what is wrong with it ("has a NUL byte ..."). */
bool ellm_server_check_api_key(const char *key, size_t len, char *err, size_t err_cap);
/* The key in a file (one trailing newline allowed), malloc'd; NULL with a one-line message in
 * err when the file cannot be read or does not hold a valid key whole. */
char *ellm_server_read_api_key_file(const char *path, char *err, size_t err_cap);

#endif
