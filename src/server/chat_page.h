/* The chat page of `edgellm serve` (web/demo, embedded at build time by web/embed_page.cmake):
 * at "/" it chats through the server's API; with --web it runs the model in the browser, and the
 * browser build's files (make web) are served under /dist/ from the web root. */
#ifndef EDGELLM_SERVER_CHAT_PAGE_H
#define EDGELLM_SERVER_CHAT_PAGE_H

#include <stdbool.h>
#include <stddef.h>

typedef struct srv_page_file {
    const char *path;
    const char *content_type;
    const unsigned char *data;
    size_t len;
} srv_page_file;

/* The embedded files (generated chat_page_files.c). */
extern const srv_page_file ellm_srv_page_files[];
extern const size_t ellm_srv_n_page_files;

struct MHD_Connection;
typedef struct srv_server srv_server;

/* Whether url is one of the page's files besides "/" (routed as "/"). */
bool ellm_srv_page_path(const srv_server *srv, const char *url);
/* Answers a GET of "/" or of a page file, counted in /metrics under endpoint. Returns an
 * MHD_Result. */
int ellm_srv_page_answer(srv_server *srv, struct MHD_Connection *conn, const char *url,
                         const char *endpoint, double t_start);

#endif
