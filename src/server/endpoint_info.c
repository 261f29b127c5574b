/* /health, /v1/models and /metrics: what the server is and how it is doing. */
#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>

#include "server/endpoints.h"

enum MHD_Result ellm_srv_endpoint_health(srv_server *srv, struct MHD_Connection *conn, srv_conn *cs)
{
    int state = atomic_load(&srv->state);
    /* serve --web without -m has no model on purpose: healthy, and says so */
    bool ok = state == SRV_STATE_READY || state == SRV_STATE_NO_MODEL;
    return ellm_srv_http_reply_json(srv, conn, ok ? 200 : 503,
                                    json_pack("{s:s}", "status",
                                              state == SRV_STATE_NO_MODEL  ? "no_model"
                                              : ok                         ? "ok"
                                              : state == SRV_STATE_LOADING ? "loading"
                                                                           : "stopping"),
                                    cs->endpoint, cs);
}

enum MHD_Result ellm_srv_endpoint_models(srv_server *srv, struct MHD_Connection *conn, srv_conn *cs)
{
    edgellm_model_info info;
    edgellm_model_get_info(srv->model, &info);
    json_t *m = json_pack("{s:s,s:s,s:I,s:s,s:{s:s,s:s,s:I,s:i,s:i}}", "id", srv->model_id,
                          "object", "model", "created", (json_int_t)srv->created, "owned_by",
                          "edgellm", "meta", "architecture", info.architecture, "quantization",
                          info.quantization, "n_params", (json_int_t)info.n_params, "n_ctx",
                          ellm_srv_scheduler_n_ctx(srv->sched), "n_embd", info.n_embd);
    return ellm_srv_http_reply_json(
        srv, conn, 200, json_pack("{s:s,s:[o]}", "object", "list", "data", m), "/v1/models", cs);
}

enum MHD_Result ellm_srv_endpoint_metrics(srv_server *srv, struct MHD_Connection *conn,
                                          srv_conn *cs)
{
    int state = atomic_load(&srv->state);
    int queue = state == SRV_STATE_READY ? ellm_srv_scheduler_queue_depth(srv->sched) : 0;
    int active = state == SRV_STATE_READY ? ellm_srv_scheduler_active(srv->sched) : 0;
    char *text = ellm_srv_metrics_render(srv->metrics, queue, active, srv->cfg->parallel);
    char *extra = text && srv->front && srv->front->metrics ? srv->front->metrics(srv->front->ctx)
                                                            : NULL;
    if (extra) {
        size_t a = strlen(text), b = strlen(extra);
        char *both = realloc(text, a + b + 1);
        if (both) {
            memcpy(both + a, extra, b + 1);
            text = both;
        }
        free(extra);
    }
    if (!text)
        return ellm_srv_http_fail(srv, conn, 500, NULL, "/metrics", cs, "out of memory");
    enum MHD_Result r = ellm_srv_http_reply(srv, conn, 200, "text/plain; version=0.0.4", text,
                                            strlen(text), "/metrics", cs);
    free(text);
    return r;
}
