/* The server object shared by the HTTP layer (http.c) and the process lifecycle (server.c). */
#ifndef EDGELLM_SERVER_HTTP_H
#define EDGELLM_SERVER_HTTP_H

#include <stdatomic.h>

#include "server/guard.h"
#include "server/server_internal.h"

enum { SRV_STATE_LOADING = 0, SRV_STATE_READY = 1, SRV_STATE_FAILED = 2, SRV_STATE_STOPPING = 3 };

typedef struct srv_server {
    const ellm_server_config *cfg;
    char model_id[256];
    atomic_int state;
    edgellm_model *model;
    srv_scheduler *sched;
    srv_metrics *metrics;
    struct MHD_Daemon *daemon;
    int port;
    size_t max_body;
    double request_timeout_s;
    long long created;
    pthread_mutex_t embed_mu; /* one embedding at a time on embed_ctx */
    edgellm_context *embed_ctx;
    char **cors;
    int n_cors;
    srv_guard guard;
    atomic_bool http_started;    /* libmicrohttpd's messages go to stderr from then on */
    char http_start_error[256];  /* its message while starting, for the one error line */
    atomic_long next_id;
    atomic_int responses_in_flight; /* generation answers still being written */
} srv_server;

/* Starts listening (requests get 503 until the model is ready); false with a message if not. */
bool srv_http_start(srv_server *srv, char *err, size_t err_cap);
/* Stops accepting new connections; open ones continue. */
void srv_http_quiesce(srv_server *srv);
/* Closes everything (waits for connection threads). */
void srv_http_stop(srv_server *srv);

#endif
