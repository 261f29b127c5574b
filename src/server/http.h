/* The server object shared by the HTTP layer (http.c) and the process lifecycle (server.c). */
#ifndef EDGELLM_SERVER_HTTP_H
#define EDGELLM_SERVER_HTTP_H

#include <stdatomic.h>

#include "server/guard.h"
#include "server/server_internal.h"

enum {
    SRV_STATE_LOADING = 0,
    SRV_STATE_READY = 1,
    SRV_STATE_FAILED = 2,
    SRV_STATE_STOPPING = 3,
    SRV_STATE_NO_MODEL = 4 /* serve --web without -m: the page only */
};

struct MHD_Connection;
struct MHD_Response;
typedef struct srv_server srv_server;

/* How many of libmicrohttpd's messages the current second has printed, and held back (http.c). */
typedef struct srv_http_log {
    pthread_mutex_t mu;
    double second_start;
    int printed;
    unsigned long held_back;
} srv_http_log;

/* What a front end in front of the local handlers (the gateway) sees of one request, and the
 * route it chose: x-edgellm-route and x-edgellm-route-reason go on the answer when set. */
typedef struct srv_front_request {
    const char *endpoint; /* "/v1/chat/completions", "/v1/completions", "/v1/embeddings",
                             "/v1/classify" */
    char *body;           /* the whole body; the front may replace it with its own malloc'd copy */
    size_t len;
    double t_start;
    char route[24];
    char reason[96];
} srv_front_request;

/* A routing hook called once a chat, completion or embedding request's body is complete (after
 * every header check). It either answers (returning true with *result set) or lets the local
 * handler answer the (possibly rewritten) body. */
typedef struct srv_front {
    bool (*route)(void *ctx, srv_server *srv, struct MHD_Connection *conn, srv_front_request *rq,
                  int *result);
    /* Lines appended to /metrics (Prometheus text, malloc'd); NULL adds nothing. */
    char *(*metrics)(void *ctx);
    void *ctx;
    /* Called once the model is loaded, before requests are served; false refuses to start
     * (err gets one line, the process exits 2). NULL: nothing to check. */
    bool (*ready)(void *ctx, srv_server *srv, char *err, size_t err_cap);
} srv_front;

struct srv_server {
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
    unsigned body_timeout_s;
    long long created;
    pthread_mutex_t embed_mu; /* one embedding at a time on embed_ctx */
    edgellm_context *embed_ctx;
    char **cors;
    int n_cors;
    srv_guard guard;
    atomic_bool http_started;   /* libmicrohttpd's messages go to stderr from then on */
    char http_start_error[256]; /* its message while starting, for the one error line */
    srv_http_log http_log;
    atomic_long next_id;
    atomic_int responses_in_flight; /* generation answers still being written */
    atomic_int requests_open;       /* from a request's head to its answer's last byte */
    const srv_front *front;         /* NULL: every request is answered locally */
    struct srv_arrivals *arrivals;  /* when each connection's request must be whole (http.c) */
};

/* Starts listening (requests get 503 until the model is ready); false with a message if not. */
bool ellm_srv_http_start(srv_server *srv, char *err, size_t err_cap);
/* Stops listening, lets the answers being written end (a moment at most), closes every
 * connection and waits for their threads. Until then new connections are accepted: while the
 * server drains (SRV_STATE_STOPPING) each request gets a 503 rather than a reset. */
void ellm_srv_http_stop(srv_server *srv);

/* For fronts: answers with a buffer (copied), adding CORS and the route headers of rq and
 * counting the request in /metrics under rq->endpoint. Returns an MHD_Result. */
int ellm_srv_http_send(srv_server *srv, struct MHD_Connection *conn, const srv_front_request *rq,
                       int status, const char *content_type, const char *body, size_t len);
/* The OpenAI-shaped error e as the answer. */
int ellm_srv_http_send_error(srv_server *srv, struct MHD_Connection *conn,
                             const srv_front_request *rq, const srv_api_error *e);
/* Adds CORS and the route headers of rq to a response the front built itself (a stream). */
void ellm_srv_http_decorate(srv_server *srv, struct MHD_Connection *conn, struct MHD_Response *resp,
                            const srv_front_request *rq);
/* Whether the client closed its side of the connection. */
bool ellm_srv_http_client_gone(struct MHD_Connection *conn);

#endif
