/* One HTTP call to the cloud upstream (libcurl), pumped by the thread that waits for it. */
#ifndef EDGELLM_GATEWAY_UPSTREAM_H
#define EDGELLM_GATEWAY_UPSTREAM_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>

#define GW_UPSTREAM_MAX_BODY (64u << 20)

typedef struct gw_upstream {
    char root[1024];   /* scheme://host[:port] and any prefix, without a trailing /v1 */
    char *auth_header; /* "Authorization: Bearer KEY" or NULL; never logged */
    bool insecure;
    double connect_timeout_s;
} gw_upstream;

typedef struct gw_call {
    CURL *easy;
    CURLM *multi;
    struct curl_slist *headers;
    char *body; /* what arrived so far, NUL-terminated; a relay consumes it from the front */
    size_t len, cap;
    bool got_body;
    bool finished;
    CURLcode result;
    long status;
    char error[CURL_ERROR_SIZE];
} gw_call;

/* Whether url can be the cloud's base URL, as libcurl reads it: a host, no spaces or control
 * characters, no query or fragment (the paths are appended to it). False with what is wrong in
 * why. */
bool ellm_gw_upstream_url_usable(const char *url, char *why, size_t cap);

/* url as it may be logged: the user part of https://user:password@host, a credential as much
 * as the key is, becomes "***". */
void ellm_gw_upstream_url_for_log(const char *url, char *out, size_t cap);

/* POSTs body (GET when body is NULL) to root + path. False when libcurl cannot set it up. */
bool ellm_gw_call_start(gw_call *c, const gw_upstream *u, const char *path, const char *body,
                        size_t len, double total_timeout_s);
/* Another call on a finished call's handles (a zeroed c gets new ones): the connection is kept
 * alive between them, so a series of calls pays the TCP and TLS handshakes once. */
bool ellm_gw_call_restart(gw_call *c, const gw_upstream *u, const char *path, const char *body,
                          size_t len, double total_timeout_s);
/* After copying a gw_call to a new address: libcurl writes to the new one. */
void ellm_gw_call_moved(gw_call *c);
/* Moves the transfer on, waiting up to wait_ms for the network; true once it has finished. */
bool ellm_gw_call_pump(gw_call *c, int wait_ms);
void ellm_gw_call_free(gw_call *c);
/* Where a finished call's 3xx answer points (its Location, resolved against the request's URL),
 * or NULL; valid until the call is freed. */
const char *ellm_gw_call_redirect(const gw_call *c);
/* Why a finished call counts as the cloud being unavailable ("cloud-unreachable", "cloud-dns",
 * "cloud-tls", "cloud-timeout", "cloud-5xx", "cloud-429"), or NULL when it answered. */
const char *ellm_gw_call_failure(const gw_call *c);

#endif
