/* Between the HTTP transport (http.c: bodies, limits, authentication, headers, routing) and the
 * endpoint handlers (endpoint_*.c), which turn a complete request into its answer. */
#ifndef EDGELLM_SERVER_ENDPOINTS_H
#define EDGELLM_SERVER_ENDPOINTS_H

#include <microhttpd.h>

#include "server/http.h"

struct route;

/* One request on a connection, from its headers to its answer. */
typedef struct srv_conn {
    char *body;
    size_t len, cap;
    bool too_large;
    bool answered; /* refused from the headers: whatever body follows is dropped */
    double t_start;
    const struct route *route; /* NULL: the path or the method is unknown */
    const char *endpoint;      /* the metrics label */
    srv_front_request rq;      /* the route headers a front chose (empty for `serve`) */
} srv_conn;

/* ---- answers (http.c): each adds the CORS and route headers and counts the request in
 * /metrics under endpoint ---- */

/* The OpenAI error type of an HTTP status ("authentication_error", "server_error", ...). */
const char *ellm_srv_http_error_type(int status);
/* body (copied) as the answer. */
enum MHD_Result ellm_srv_http_reply(srv_server *srv, struct MHD_Connection *conn, int status,
                                    const char *content_type, const char *body, size_t len,
                                    const char *endpoint, srv_conn *cs);
/* j (taken over) as a JSON answer; NULL j answers 500. */
enum MHD_Result ellm_srv_http_reply_json(srv_server *srv, struct MHD_Connection *conn, int status,
                                         json_t *j, const char *endpoint, srv_conn *cs);
enum MHD_Result ellm_srv_http_reply_error(srv_server *srv, struct MHD_Connection *conn,
                                          const srv_api_error *e, const char *endpoint,
                                          srv_conn *cs);
/* An error answer of this status, code (may be NULL) and message. */
enum MHD_Result ellm_srv_http_fail(srv_server *srv, struct MHD_Connection *conn, int status,
                                   const char *code, const char *endpoint, srv_conn *cs,
                                   const char *message);

/* ---- the handlers: a complete request whose headers passed every check; body is its JSON
 * object, which the handler takes over ---- */

/* /health (endpoint_info.c): 200 once the model is ready, else 503 with the state. */
enum MHD_Result ellm_srv_endpoint_health(srv_server *srv, struct MHD_Connection *conn,
                                         srv_conn *cs);
/* /v1/models and /metrics (endpoint_info.c). */
enum MHD_Result ellm_srv_endpoint_models(srv_server *srv, struct MHD_Connection *conn,
                                         srv_conn *cs);
enum MHD_Result ellm_srv_endpoint_metrics(srv_server *srv, struct MHD_Connection *conn,
                                          srv_conn *cs);
/* /v1/chat/completions and /v1/completions, streamed or not (endpoint_completions.c). */
enum MHD_Result ellm_srv_endpoint_completion(srv_server *srv, struct MHD_Connection *conn,
                                             srv_conn *cs, json_t *body, srv_endpoint_kind kind);
/* /v1/embeddings (endpoint_embeddings.c). */
enum MHD_Result ellm_srv_endpoint_embeddings(srv_server *srv, struct MHD_Connection *conn,
                                             srv_conn *cs, json_t *body);
/* /tokenize and /detokenize (endpoint_tokenize.c). */
enum MHD_Result ellm_srv_endpoint_tokenize(srv_server *srv, struct MHD_Connection *conn,
                                           srv_conn *cs, json_t *body);
enum MHD_Result ellm_srv_endpoint_detokenize(srv_server *srv, struct MHD_Connection *conn,
                                             srv_conn *cs, json_t *body);

#endif
