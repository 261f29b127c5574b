/* The chat page at "/": web/demo's files, embedded in the binary so that `serve` needs none at
 * run time. With --web (cfg->web_root set) "/" is the page that runs the model in the browser,
 * its browser build is read from the web root under /dist/, and every page response carries the
 * headers that make the page cross-origin isolated (threads in WebAssembly). */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <microhttpd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/mapped_file.h"
#include "server/chat_page.h"
#include "server/http.h"

static const srv_page_file *embedded(const char *path)
{
    for (size_t i = 0; i < ellm_srv_n_page_files; i++)
        if (!strcmp(ellm_srv_page_files[i].path, path))
            return &ellm_srv_page_files[i];
    return NULL;
}

/* The file name of a /dist/ path: one plain name (no '/', no leading '.'), so nothing outside
 * the web root can be named. NULL otherwise. */
static const char *dist_name(const char *url)
{
    static const char prefix[] = "/dist/";
    if (strncmp(url, prefix, sizeof prefix - 1) != 0)
        return NULL;
    const char *name = url + sizeof prefix - 1;
    if (!*name || *name == '.' || strlen(name) > 128)
        return NULL;
    for (const char *c = name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '.' || *c == '-' || *c == '_'))
            return NULL;
    return name;
}

static const char *content_type_of(const char *name)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".mjs", "text/javascript; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".wasm", "application/wasm"},
        {".ts", "text/plain; charset=utf-8"},
        {".html", "text/html; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
    };
    const char *dot = strrchr(name, '.');
    for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
        if (!strcmp(dot, types[i].ext))
            return types[i].type;
    return "application/octet-stream";
}

bool ellm_srv_page_path(const srv_server *srv, const char *url)
{
    if (strncmp(url, "/index", 6) != 0 && embedded(url)) /* "/" stands for the index pages */
        return true;
    return srv->cfg->web_root && dist_name(url);
}

static int send_page(srv_server *srv, struct MHD_Connection *conn, struct MHD_Response *resp,
                     const char *content_type, const char *endpoint, double t_start)
{
    MHD_add_response_header(resp, "Content-Type", content_type);
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    if (srv->cfg->web_root) {
        MHD_add_response_header(resp, "Cross-Origin-Opener-Policy", "same-origin");
        MHD_add_response_header(resp, "Cross-Origin-Embedder-Policy", "require-corp");
        MHD_add_response_header(resp, "Cross-Origin-Resource-Policy", "same-origin");
    } else {
        /* The page only talks to this server; model text is escaped before it is rendered, and
         * this keeps anything that slipped through from loading or sending elsewhere. */
        MHD_add_response_header(resp, "Content-Security-Policy",
                                "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'");
    }
    ellm_srv_http_decorate(srv, conn, resp, NULL);
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    ellm_srv_metrics_request(srv->metrics, endpoint, 200, ellm_srv_now() - t_start);
    return ret;
}

int ellm_srv_page_answer(srv_server *srv, struct MHD_Connection *conn, const char *url,
                         const char *endpoint, double t_start)
{
    const char *name = srv->cfg->web_root ? dist_name(url) : NULL;
    if (!name) {
        const srv_page_file *f = embedded(
            !strcmp(url, "/") ? srv->cfg->web_root ? "/index.html" : "/index-server.html" : url);
        if (!f)
            return MHD_NO; /* routed here only for the paths ellm_srv_page_path accepts */
        struct MHD_Response *resp = MHD_create_response_from_buffer(f->len, (void *)f->data,
                                                                    MHD_RESPMEM_PERSISTENT);
        return resp ? send_page(srv, conn, resp, f->content_type, endpoint, t_start) : MHD_NO;
    }
    char path[4096];
    int fd = -1;
    struct stat st;
    if ((size_t)snprintf(path, sizeof path, "%s/%s", srv->cfg->web_root, name) < sizeof path)
        fd = ellm_open_regular(path);
    if (fd < 0 || fstat(fd, &st) != 0) {
        if (fd >= 0)
            close(fd);
        srv_front_request rq = {.endpoint = endpoint, .t_start = t_start};
        srv_api_error e;
        ellm_srv_error_set(&e, 404, "invalid_request_error", "not_found", NULL,
                           "%s is not part of the browser build in %s (run `make web` again?)", url,
                           srv->cfg->web_root);
        return ellm_srv_http_send_error(srv, conn, &rq, &e);
    }
    struct MHD_Response *resp = MHD_create_response_from_fd64((uint64_t)st.st_size, fd);
    if (!resp) {
        close(fd);
        return MHD_NO;
    }
    return send_page(srv, conn, resp, content_type_of(name), endpoint, t_start);
}
