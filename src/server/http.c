#define _GNU_SOURCE /* POLLRDHUP: notice a client that hung up while its request runs */
/* HTTP plumbing on libmicrohttpd: one thread per connection, bodies gathered within a size
 * limit, authentication and CORS, the answers' headers and metrics, and routing to the endpoint
 * handlers (endpoint_*.c). */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "server/chat_page.h"
#include "server/endpoints.h"

const char *ellm_srv_http_error_type(int status)
{
    switch (status) {
    case 401: return "authentication_error";
    case 404: return "invalid_request_error";
    case 429: return "rate_limit_error";
    case 503: return "server_unavailable";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

/* CORS headers for an allowed Origin; nothing for others (the browser then refuses). */
static void add_cors(srv_server *srv, struct MHD_Connection *conn, struct MHD_Response *resp)
{
    if (srv->n_cors == 0)
        return;
    const char *origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
    if (!origin)
        return;
    for (int i = 0; i < srv->n_cors; i++) {
        if (!strcmp(srv->cors[i], "*") || !strcmp(srv->cors[i], origin)) {
            MHD_add_response_header(resp, "Access-Control-Allow-Origin", origin);
            MHD_add_response_header(resp, "Vary", "Origin");
            return;
        }
    }
}

void ellm_srv_http_decorate(srv_server *srv, struct MHD_Connection *conn, struct MHD_Response *resp,
                            const srv_front_request *rq)
{
    add_cors(srv, conn, resp);
    /* A client that kept this connection for its next request would find it closed under it
     * once the drain ends: it should open the next one to another instance, or after the
     * restart. */
    if (atomic_load(&srv->state) == SRV_STATE_STOPPING)
        MHD_add_response_header(resp, "Connection", "close");
    if (rq && rq->route[0])
        MHD_add_response_header(resp, "x-edgellm-route", rq->route);
    if (rq && rq->reason[0])
        MHD_add_response_header(resp, "x-edgellm-route-reason", rq->reason);
}

enum MHD_Result ellm_srv_http_reply(srv_server *srv, struct MHD_Connection *conn, int status,
                                    const char *content_type, const char *body, size_t len,
                                    const char *endpoint, srv_conn *cs)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)body,
                                                                MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", content_type);
    if (status == 429 || status == 503)
        MHD_add_response_header(resp, "Retry-After", "1");
    if (status == 401)
        MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
    ellm_srv_http_decorate(srv, conn, resp, &cs->rq);
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    ellm_srv_metrics_request(srv->metrics, endpoint, status, ellm_srv_now() - cs->t_start);
    return ret;
}

enum MHD_Result ellm_srv_http_reply_json(srv_server *srv, struct MHD_Connection *conn, int status,
                                         json_t *j, const char *endpoint, srv_conn *cs)
{
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text)
        return ellm_srv_http_reply(
            srv, conn, 500, "application/json",
            "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\","
            "\"param\":null,\"code\":null}}",
            88, endpoint, cs);
    enum MHD_Result r = ellm_srv_http_reply(srv, conn, status, "application/json", text,
                                            strlen(text), endpoint, cs);
    free(text);
    return r;
}

enum MHD_Result ellm_srv_http_reply_error(srv_server *srv, struct MHD_Connection *conn,
                                          const srv_api_error *e, const char *endpoint,
                                          srv_conn *cs)
{
    return ellm_srv_http_reply_json(srv, conn, e->status, ellm_srv_error_json(e), endpoint, cs);
}

/* A front's answers are counted and decorated like the server's own: through a srv_conn that
 * carries the front's request. */
int ellm_srv_http_send(srv_server *srv, struct MHD_Connection *conn, const srv_front_request *rq,
                       int status, const char *content_type, const char *body, size_t len)
{
    srv_conn cs = {.t_start = rq->t_start, .rq = *rq};
    return ellm_srv_http_reply(srv, conn, status, content_type, body, len, rq->endpoint, &cs);
}

int ellm_srv_http_send_error(srv_server *srv, struct MHD_Connection *conn,
                             const srv_front_request *rq, const srv_api_error *e)
{
    srv_conn cs = {.t_start = rq->t_start, .rq = *rq};
    return ellm_srv_http_reply_error(srv, conn, e, rq->endpoint, &cs);
}

enum MHD_Result ellm_srv_http_fail(srv_server *srv, struct MHD_Connection *conn, int status,
                                   const char *code, const char *endpoint, srv_conn *cs,
                                   const char *message)
{
    srv_api_error e;
    ellm_srv_error_set(&e, status, ellm_srv_http_error_type(status), code, NULL, "%s", message);
    return ellm_srv_http_reply_error(srv, conn, &e, endpoint, cs);
}

/* Whether the peer closed its side: then nobody is waiting for this request's answer. */
bool ellm_srv_http_client_gone(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn,
                                                                 MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci)
        return false;
    struct pollfd p = {.fd = ci->connect_fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/* Parses the body as a JSON object; on failure the error names the position. */
static json_t *body_json(const srv_conn *cs, srv_api_error *err)
{
    json_error_t je;
    json_t *j = json_loadb(cs->body ? cs->body : "", cs->len, 0, &je);
    if (!j) {
        ellm_srv_error_set(err, 400, "invalid_request_error", "invalid_json", NULL,
                           "the request body is not valid JSON: %s at line %d, column %d (byte %d)",
                           je.text, je.line, je.column, je.position);
        return NULL;
    }
    if (!json_is_object(j)) {
        ellm_srv_error_set(err, 400, "invalid_request_error", "invalid_json", NULL,
                           "the request body must be a JSON object");
        json_decref(j);
        return NULL;
    }
    return j;
}

typedef enum route_id {
    R_HEALTH,
    R_PAGE,
    R_MODELS,
    R_METRICS,
    R_CHAT,
    R_COMPLETIONS,
    R_EMBEDDINGS,
    R_TOKENIZE,
    R_DETOKENIZE,
    R_CLASSIFY
} route_id;

static const struct route {
    const char *path;
    const char *method;
    route_id id;
    bool needs_model;
} routes[] = {
    {"/health", "GET", R_HEALTH, false},
    {"/", "GET", R_PAGE, false},
    {"/v1/models", "GET", R_MODELS, true},
    {"/metrics", "GET", R_METRICS, false},
    {"/v1/chat/completions", "POST", R_CHAT, true},
    {"/v1/completions", "POST", R_COMPLETIONS, true},
    {"/v1/embeddings", "POST", R_EMBEDDINGS, true},
    {"/tokenize", "POST", R_TOKENIZE, true},
    {"/detokenize", "POST", R_DETOKENIZE, true},
    {"/v1/classify", "POST", R_CLASSIFY, true}, /* answered by a front (the gateway) only */
};

/* Everything decided from the request line and headers, on libmicrohttpd's first call, so a
 * request that will be refused is answered before its body is read (no "100 Continue", no
 * buffering for clients without the key). Returns true with *result set when it answered. */
static bool answer_from_headers(srv_server *srv, struct MHD_Connection *conn, const char *url,
                                const char *method, srv_conn *cs, enum MHD_Result *result)
{
    bool path_known = false;
    const char *path = ellm_srv_page_path(srv, url) ? "/" : url; /* the page's files go with it */
    /* HEAD is GET without the body (libmicrohttpd leaves it out): `curl -I` and uptime probes
     * got 405 from every page and /health. */
    const char *as_method = !strcmp(method, "HEAD") ? "GET" : method;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (!strcmp(path, routes[i].path)) {
            path_known = true;
            cs->endpoint = routes[i].path;
            if (!strcmp(as_method, routes[i].method))
                cs->route = &routes[i];
        }
    if (!path_known)
        cs->endpoint = "other";
    srv_api_error e;
    if (!ellm_srv_guard_check_host(&srv->guard, conn, &e)) {
        *result = ellm_srv_http_reply_error(srv, conn, &e, cs->endpoint, cs);
        return true;
    }
    if (!strcmp(method, "OPTIONS")) {
        /* CORS preflight: answered without authentication (browsers send no credentials). */
        struct MHD_Response *resp = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
        if (!resp) {
            *result = MHD_NO;
            return true;
        }
        ellm_srv_http_decorate(srv, conn, resp, NULL);
        MHD_add_response_header(resp, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
        MHD_add_response_header(resp, "Access-Control-Allow-Headers",
                                "Authorization, Content-Type");
        MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
        *result = MHD_queue_response(conn, 204, resp);
        MHD_destroy_response(resp);
        ellm_srv_metrics_request(srv->metrics, cs->endpoint, 204, ellm_srv_now() - cs->t_start);
        return true;
    }
    /* The page holds nothing secret, and a browser cannot send a key to open it: its requests
     * to the API carry the key typed into it. */
    bool open_route = cs->route && (cs->route->id == R_HEALTH || cs->route->id == R_PAGE);
    if (!open_route && !ellm_srv_guard_check_key(&srv->guard, conn, &e)) {
        *result = ellm_srv_http_reply_error(srv, conn, &e, cs->endpoint, cs);
        return true;
    }
    if (!path_known) {
        *result = ellm_srv_http_fail(
            srv, conn, 404, "not_found", cs->endpoint, cs,
            "no such endpoint; see /v1/models, /v1/chat/completions, /v1/completions, "
            "/v1/embeddings, /tokenize, /detokenize, /health, /metrics");
        return true;
    }
    if (!cs->route) {
        ellm_srv_error_set(&e, 405, "invalid_request_error", "method_not_allowed", NULL,
                           "%s does not accept %s", cs->endpoint, method);
        *result = ellm_srv_http_reply_error(srv, conn, &e, cs->endpoint, cs);
        return true;
    }
    bool json_body = !strcmp(cs->route->method, "POST");
    if (!ellm_srv_guard_check_body(&srv->guard, conn, json_body, &e)) {
        *result = ellm_srv_http_reply_error(srv, conn, &e, cs->endpoint, cs);
        return true;
    }
    return false;
}

/* A connection waiting for its next request may idle this long; one whose request is arriving
 * gets srv->body_timeout_s, so that requests left incomplete cannot hold the 1024 connections. */
#define KEEP_ALIVE_IDLE_S 300u

static void set_connection_timeout(struct MHD_Connection *conn, unsigned seconds)
{
    MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT, seconds);
}

/* ---- the total time a request may take to arrive ----
 * libmicrohttpd's connection timeout counts silence only, so a client sending a header byte every
 * S - 1 seconds held its connection until the header buffer filled, and no callback of ours runs
 * while headers arrive. So every connection has a deadline by which what is arriving must be
 * whole: its first head S seconds after it opened, a later head S seconds after its request line
 * (and its line within the keep-alive idle time plus S of the last answer), a body S seconds
 * after its head. A watchdog thread shuts the socket of a connection past its deadline down;
 * libmicrohttpd then sees the connection end and closes it as it would any other. */

typedef struct arrival {
    int fd;
    double deadline; /* monotonic seconds; 0 while the request is being answered */
    struct arrival *prev, *next;
} arrival;

struct srv_arrivals {
    pthread_mutex_t mu;
    pthread_cond_t wake; /* signalled to stop the watchdog */
    arrival *open;       /* every connection libmicrohttpd has not closed yet */
    bool stopping;
    pthread_t watchdog;
};

/* Sets conn's deadline; with sooner_only an existing one is only brought forward. */
static void set_arrival_deadline(srv_server *srv, struct MHD_Connection *conn, double deadline,
                                 bool sooner_only)
{
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(
        conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    arrival *a = info ? info->socket_context : NULL;
    if (!a)
        return;
    pthread_mutex_lock(&srv->arrivals->mu);
    if (!sooner_only || a->deadline == 0 || deadline < a->deadline)
        a->deadline = deadline;
    pthread_mutex_unlock(&srv->arrivals->mu);
}

/* A connection is registered until libmicrohttpd closes its socket (it notifies before the
 * close, so the watchdog never shuts down a descriptor reused by another connection). */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    srv_server *srv = cls;
    struct srv_arrivals *all = srv->arrivals;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *info = MHD_get_connection_info(
            conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        arrival *a = info ? calloc(1, sizeof *a) : NULL;
        if (!a)
            return; /* bounded by silence alone, as before */
        a->fd = info->connect_fd;
        a->deadline = ellm_srv_now() + srv->body_timeout_s;
        pthread_mutex_lock(&all->mu);
        a->next = all->open;
        if (all->open)
            all->open->prev = a;
        all->open = a;
        pthread_mutex_unlock(&all->mu);
        *socket_context = a;
        return;
    }
    arrival *a = *socket_context;
    if (!a)
        return;
    pthread_mutex_lock(&all->mu);
    if (a->prev)
        a->prev->next = a->next;
    else
        all->open = a->next;
    if (a->next)
        a->next->prev = a->prev;
    pthread_mutex_unlock(&all->mu);
    free(a);
    *socket_context = NULL;
}

static void *arrival_watchdog(void *arg)
{
    struct srv_arrivals *all = arg;
    pthread_mutex_lock(&all->mu);
    while (!all->stopping) {
        double now = ellm_srv_now();
        for (arrival *a = all->open; a; a = a->next)
            if (a->deadline != 0 && now >= a->deadline) {
                shutdown(a->fd, SHUT_RDWR);
                a->deadline = 0;
            }
        /* A tenth of a second late at most: the limits are whole seconds. */
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 100 * 1000 * 1000;
        if (until.tv_nsec >= 1000 * 1000 * 1000) {
            until.tv_sec++;
            until.tv_nsec -= 1000 * 1000 * 1000;
        }
        pthread_cond_timedwait(&all->wake, &all->mu, &until);
    }
    pthread_mutex_unlock(&all->mu);
    return NULL;
}

static bool arrivals_start(srv_server *srv)
{
    struct srv_arrivals *all = calloc(1, sizeof *all);
    if (!all)
        return false;
    pthread_mutex_init(&all->mu, NULL);
    pthread_cond_init(&all->wake, NULL);
    if (pthread_create(&all->watchdog, NULL, arrival_watchdog, all) != 0) {
        pthread_cond_destroy(&all->wake);
        pthread_mutex_destroy(&all->mu);
        free(all);
        return false;
    }
    srv->arrivals = all;
    return true;
}

/* After libmicrohttpd stopped: every connection has been closed and unregistered. */
static void arrivals_stop(srv_server *srv)
{
    struct srv_arrivals *all = srv->arrivals;
    if (!all)
        return;
    pthread_mutex_lock(&all->mu);
    all->stopping = true;
    pthread_cond_signal(&all->wake);
    pthread_mutex_unlock(&all->mu);
    pthread_join(all->watchdog, NULL);
    pthread_cond_destroy(&all->wake);
    pthread_mutex_destroy(&all->mu);
    free(all);
    srv->arrivals = NULL;
}

/* Called as a request's first line has arrived: the rest must come within the body timeout. */
static void *on_request_line(void *cls, const char *uri, struct MHD_Connection *conn)
{
    (void)uri;
    srv_server *srv = cls;
    set_connection_timeout(conn, srv->body_timeout_s);
    set_arrival_deadline(srv, conn, ellm_srv_now() + srv->body_timeout_s, true);
    return NULL;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_size, void **con_cls)
{
    (void)version;
    srv_server *srv = cls;
    srv_conn *cs = *con_cls;
    if (!cs) {
        cs = calloc(1, sizeof *cs);
        if (!cs)
            return MHD_NO;
        cs->t_start = ellm_srv_now();
        *con_cls = cs;
        atomic_fetch_add(&srv->requests_open, 1);
        set_arrival_deadline(srv, conn, cs->t_start + srv->body_timeout_s, false); /* the body */
        enum MHD_Result result;
        cs->answered = answer_from_headers(srv, conn, url, method, cs, &result);
        return cs->answered ? result : MHD_YES;
    }
    if (cs->answered) {
        *upload_size = 0;
        return MHD_YES;
    }
    /* Silence between bytes is bounded by the connection timeout; this bounds a body that
     * trickles. libmicrohttpd 0.9 queues no answer mid-upload, so the connection is closed. */
    if (*upload_size > 0 && ellm_srv_now() - cs->t_start > srv->body_timeout_s)
        return MHD_NO;
    /* Nothing keeps a body a GET endpoint ignores: /health needs no key, so buffering it would
     * let anyone hold memory. */
    if (*upload_size > 0 && strcmp(cs->route->method, "POST") != 0) {
        *upload_size = 0;
        return MHD_YES;
    }
    if (*upload_size > 0) {
        /* Gather the body. A chunked body declares no length: past the limit the rest is
         * dropped as it arrives and answered with 413 at its end (libmicrohttpd 0.9 queues no
         * response in the middle of an upload). */
        if (!cs->too_large && cs->len + *upload_size > srv->max_body) {
            cs->too_large = true;
            free(cs->body);
            cs->body = NULL;
            cs->len = cs->cap = 0;
        }
        if (!cs->too_large) {
            if (cs->len + *upload_size + 1 > cs->cap) {
                size_t cap = cs->cap ? cs->cap : 4096;
                while (cap < cs->len + *upload_size + 1)
                    cap *= 2;
                char *b = realloc(cs->body, cap);
                if (!b)
                    return MHD_NO;
                cs->body = b;
                cs->cap = cap;
            }
            memcpy(cs->body + cs->len, upload_data, *upload_size);
            cs->len += *upload_size;
        }
        *upload_size = 0;
        return MHD_YES;
    }

    set_connection_timeout(conn, KEEP_ALIVE_IDLE_S); /* the request is whole */
    set_arrival_deadline(srv, conn, 0, false);
    const struct route *rt = cs->route;
    const char *endpoint = cs->endpoint;
    int state = atomic_load(&srv->state);
    if (rt->id == R_HEALTH)
        return ellm_srv_endpoint_health(srv, conn, cs);
    /* Every request that reaches a draining server gets this answer, whatever it asks: a load
     * balancer retries a 503 elsewhere, where a reset would be an error to its client. */
    if (state == SRV_STATE_STOPPING)
        return ellm_srv_http_fail(srv, conn, 503, "shutting_down", endpoint, cs,
                                  "the server is shutting down; retry on another instance or once "
                                  "it has restarted");
    if (cs->too_large) {
        char msg[128];
        snprintf(msg, sizeof msg,
                 "the request body is larger than the limit of %zu bytes (--max-body)",
                 srv->max_body);
        return ellm_srv_http_fail(srv, conn, 413, "request_too_large", endpoint, cs, msg);
    }
    if (rt->needs_model && state == SRV_STATE_NO_MODEL)
        return ellm_srv_http_fail(
            srv, conn, 404, "no_model", endpoint, cs,
            "this server has no model (serve --web without -m): the page at / runs one "
            "in the browser; restart with -m MODEL to serve one over the API");
    if (rt->needs_model && state != SRV_STATE_READY)
        return ellm_srv_http_fail(
            srv, conn, 503, state == SRV_STATE_LOADING ? "model_loading" : "shutting_down",
            endpoint, cs,
            state == SRV_STATE_LOADING ? "the model is still loading; retry shortly"
                                       : "the server is shutting down");
    if (srv->front && (rt->id == R_CHAT || rt->id == R_COMPLETIONS || rt->id == R_EMBEDDINGS ||
                       rt->id == R_CLASSIFY)) {
        cs->rq.endpoint = endpoint;
        cs->rq.body = cs->body;
        cs->rq.len = cs->len;
        cs->rq.t_start = cs->t_start;
        int result = MHD_NO;
        bool answered = srv->front->route(srv->front->ctx, srv, conn, &cs->rq, &result);
        if (cs->rq.body != cs->body) {
            free(cs->body);
            cs->body = cs->rq.body;
            cs->len = cs->cap = cs->rq.len;
        }
        cs->rq.body = NULL;
        if (answered)
            return (enum MHD_Result)result;
    }
    switch (rt->id) {
    case R_PAGE: return ellm_srv_page_answer(srv, conn, url, endpoint, cs->t_start);
    case R_MODELS: return ellm_srv_endpoint_models(srv, conn, cs);
    case R_METRICS: return ellm_srv_endpoint_metrics(srv, conn, cs);
    case R_CLASSIFY:
        return ellm_srv_http_fail(srv, conn, 404, "not_found", endpoint, cs,
                                  "/v1/classify is served by edgellm gateway, not edgellm serve");
    default: break;
    }
    /* The other endpoints take a JSON object. */
    srv_api_error err;
    json_t *body = body_json(cs, &err);
    if (!body)
        return ellm_srv_http_reply_error(srv, conn, &err, endpoint, cs);
    switch (rt->id) {
    case R_CHAT: return ellm_srv_endpoint_completion(srv, conn, cs, body, SRV_CHAT);
    case R_COMPLETIONS: return ellm_srv_endpoint_completion(srv, conn, cs, body, SRV_COMPLETION);
    case R_EMBEDDINGS: return ellm_srv_endpoint_embeddings(srv, conn, cs, body);
    case R_TOKENIZE: return ellm_srv_endpoint_tokenize(srv, conn, cs, body);
    case R_DETOKENIZE: return ellm_srv_endpoint_detokenize(srv, conn, cs, body);
    default: json_decref(body); return MHD_NO;
    }
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode code)
{
    (void)code;
    srv_server *srv = cls;
    /* The next request's line may come within the keep-alive idle time (its silence bound). */
    set_arrival_deadline(srv, conn, ellm_srv_now() + KEEP_ALIVE_IDLE_S + srv->body_timeout_s,
                         false);
    srv_conn *cs = *con_cls;
    if (cs) {
        free(cs->body);
        free(cs);
        *con_cls = NULL;
        atomic_fetch_sub(&srv->requests_open, 1);
    }
}

/* libmicrohttpd reports every connection it turns away at the limit: one line each, a client
 * opening connections in a loop wrote 140 000 lines in 8 s, enough to fill the log's disk. So
 * once running, a second prints at most this many of its messages and counts the rest. */
#define HTTP_LOG_LINES_PER_SECOND 5

static const char *http_log_name(const srv_server *srv)
{
    return srv->cfg->log_name ? srv->cfg->log_name : "edgellm serve";
}

/* Under the log's lock. */
static void print_held_back(srv_server *srv)
{
    if (srv->http_log.held_back == 0)
        return;
    fprintf(stderr, "%s: http: %lu more of its messages not shown (at most %d a second)\n",
            http_log_name(srv), srv->http_log.held_back, HTTP_LOG_LINES_PER_SECOND);
    srv->http_log.held_back = 0;
}

/* libmicrohttpd's own messages: kept while starting, so a failure is one line of ours that
 * carries its reason; printed with our prefix once running. */
static void http_log(void *cls, const char *fmt, va_list ap)
{
    srv_server *srv = cls;
    char msg[256];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    if (!atomic_load(&srv->http_started)) {
        snprintf(srv->http_start_error, sizeof srv->http_start_error, "%s", msg);
        return;
    }
    srv_http_log *log = &srv->http_log;
    pthread_mutex_lock(&log->mu);
    double now = ellm_srv_now();
    if (now - log->second_start >= 1.0) {
        print_held_back(srv);
        log->second_start = now;
        log->printed = 0;
    }
    if (log->printed < HTTP_LOG_LINES_PER_SECOND) {
        fprintf(stderr, "%s: http: %s\n", http_log_name(srv), msg);
        log->printed++;
    } else {
        log->held_back++;
    }
    pthread_mutex_unlock(&log->mu);
}

bool ellm_srv_http_start(srv_server *srv, char *err, size_t err_cap)
{
    const char *host = srv->cfg->host ? srv->cfg->host : "127.0.0.1";
    struct sockaddr_storage addr;
    memset(&addr, 0, sizeof addr);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_POLL | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    struct sockaddr_in *a4 = (struct sockaddr_in *)&addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&addr;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)srv->cfg->port);
    } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)srv->cfg->port);
        flags |= MHD_USE_IPv6;
    } else {
        snprintf(err, err_cap, "--host '%s' is not an IPv4 or IPv6 address", host);
        return false;
    }
    if (!arrivals_start(srv)) {
        snprintf(err, err_cap, "cannot start the request watchdog thread: out of resources");
        return false;
    }
    pthread_mutex_init(&srv->http_log.mu, NULL);
    srv->daemon = MHD_start_daemon(
        flags, (uint16_t)srv->cfg->port, NULL, NULL, on_request, srv, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&addr, MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv, MHD_OPTION_URI_LOG_CALLBACK,
        on_request_line, srv, MHD_OPTION_CONNECTION_LIMIT, (unsigned)1024,
        MHD_OPTION_CONNECTION_TIMEOUT, srv->body_timeout_s, MHD_OPTION_EXTERNAL_LOGGER, http_log,
        srv, MHD_OPTION_END);
    if (!srv->daemon) {
        arrivals_stop(srv);
        pthread_mutex_destroy(&srv->http_log.mu);
        snprintf(err, err_cap,
                 "cannot listen on %s:%d: %s (choose another --port, or a --host address of "
                 "this machine)",
                 host, srv->cfg->port,
                 srv->http_start_error[0] ? srv->http_start_error : "libmicrohttpd refused");
        return false;
    }
    atomic_store(&srv->http_started, true);
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = di ? di->port : srv->cfg->port;
    return true;
}

/* The answers being written when listening stops may take this long to end; past it they are
 * cut (a client trickling its body, say), so the exit stays within the grace. */
#define STOP_ANSWER_WAIT_S 1.0

void ellm_srv_http_stop(srv_server *srv)
{
    if (!srv->daemon)
        return;
    /* Connections that arrive from now on wait in the kernel's queue, and are reset when the
     * socket closes: the time from here to the close is kept short. */
    MHD_socket listening = MHD_quiesce_daemon(srv->daemon);
    double until = ellm_srv_now() + STOP_ANSWER_WAIT_S;
    while (atomic_load(&srv->requests_open) > 0 && ellm_srv_now() < until)
        nanosleep(&(struct timespec){0, 5 * 1000000L}, NULL);
    MHD_stop_daemon(srv->daemon);
    srv->daemon = NULL;
    /* libmicrohttpd hands the quiesced socket to its caller to close, and with its own threads
     * only once MHD_stop_daemon has returned (one may still be using it until then). */
    if (listening != MHD_INVALID_SOCKET)
        close(listening);
    arrivals_stop(srv);
    print_held_back(srv); /* no thread of libmicrohttpd's is left to log */
    pthread_mutex_destroy(&srv->http_log.mu);
}
