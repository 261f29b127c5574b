#define _POSIX_C_SOURCE 200809L
/* Calls to the cloud upstream with libcurl's multi interface, driven by the connection thread
 * that waits for them, so a stream can be relayed piece by piece and abandoned the moment the
 * client goes away (freeing the call closes the upstream connection). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/upstream.h"

bool ellm_gw_upstream_url_usable(const char *url, char *why, size_t cap)
{
    CURLU *u = curl_url();
    if (!u) {
        snprintf(why, cap, "cannot be checked: out of memory");
        return false;
    }
    char *host = NULL, *query = NULL, *fragment = NULL;
    CURLUcode rc = curl_url_set(u, CURLUPART_URL, url, 0);
    if (rc != CURLUE_OK)
        snprintf(why, cap, "is not a URL libcurl can use (%s)", curl_url_strerror(rc));
    else if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host[0])
        snprintf(why, cap, "has no host");
    else if (curl_url_get(u, CURLUPART_QUERY, &query, 0) == CURLUE_OK ||
             curl_url_get(u, CURLUPART_FRAGMENT, &fragment, 0) == CURLUE_OK)
        snprintf(why, cap, "has a %s, but the API paths are appended to it",
                 query ? "query (?...)" : "fragment (#...)");
    bool usable = rc == CURLUE_OK && host && host[0] && !query && !fragment;
    curl_free(host);
    curl_free(query);
    curl_free(fragment);
    curl_url_cleanup(u);
    return usable;
}

void ellm_gw_upstream_url_for_log(const char *url, char *out, size_t cap)
{
    const char *scheme_end = strstr(url, "://");
    const char *authority = scheme_end ? scheme_end + 3 : url;
    size_t authority_len = strcspn(authority, "/?#");
    const char *at = NULL;
    for (const char *c = authority; c < authority + authority_len; c++)
        if (*c == '@')
            at = c;
    if (at)
        snprintf(out, cap, "%.*s***%s", (int)(authority - url), url, at);
    else
        snprintf(out, cap, "%s", url);
}

static size_t on_body(char *data, size_t size, size_t n, void *user)
{
    gw_call *c = user;
    size_t len = size * n;
    if (c->len + len + 1 > c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 8192;
        while (cap < c->len + len + 1)
            cap *= 2;
        /* An upstream that never stops talking is not allowed to take all memory. */
        if (cap > GW_UPSTREAM_MAX_BODY)
            return 0;
        char *b = realloc(c->body, cap);
        if (!b)
            return 0;
        c->body = b;
        c->cap = cap;
    }
    memcpy(c->body + c->len, data, len);
    c->len += len;
    c->body[c->len] = '\0';
    c->got_body = true;
    return len;
}

/* What differs from one call to the next on the same handles. */
static void set_request(gw_call *c, const gw_upstream *u, const char *path, const char *body,
                        size_t len, double total_timeout_s)
{
    char url[2048];
    snprintf(url, sizeof url, "%s%s", u->root, path);
    curl_easy_setopt(c->easy, CURLOPT_URL, url);
    curl_easy_setopt(c->easy, CURLOPT_TIMEOUT_MS, (long)(total_timeout_s * 1000));
    if (body) {
        curl_easy_setopt(c->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
        curl_easy_setopt(c->easy, CURLOPT_COPYPOSTFIELDS, body);
    } else {
        curl_easy_setopt(c->easy, CURLOPT_HTTPGET, 1L);
    }
}

bool ellm_gw_call_restart(gw_call *c, const gw_upstream *u, const char *path, const char *body,
                          size_t len, double total_timeout_s)
{
    if (!c->easy || !c->multi || !c->finished) {
        ellm_gw_call_free(c);
        return ellm_gw_call_start(c, u, path, body, len, total_timeout_s);
    }
    curl_multi_remove_handle(c->multi, c->easy);
    c->len = 0;
    if (c->body)
        c->body[0] = '\0';
    c->got_body = c->finished = false;
    c->result = CURLE_OK;
    c->status = 0;
    c->error[0] = '\0';
    set_request(c, u, path, body, len, total_timeout_s);
    return curl_multi_add_handle(c->multi, c->easy) == CURLM_OK;
}

bool ellm_gw_call_start(gw_call *c, const gw_upstream *u, const char *path, const char *body,
                        size_t len, double total_timeout_s)
{
    memset(c, 0, sizeof *c);
    c->easy = curl_easy_init();
    c->multi = curl_multi_init();
    if (!c->easy || !c->multi)
        return false;
    set_request(c, u, path, body, len, total_timeout_s);
    curl_easy_setopt(c->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)(u->connect_timeout_s * 1000));
    curl_easy_setopt(c->easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c->easy, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(c->easy, CURLOPT_ERRORBUFFER, c->error);
    curl_easy_setopt(c->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c->easy, CURLOPT_FOLLOWLOCATION, 0L);
    if (u->insecure) {
        curl_easy_setopt(c->easy, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(c->easy, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    c->headers = curl_slist_append(NULL, "Content-Type: application/json");
    if (u->auth_header)
        c->headers = curl_slist_append(c->headers, u->auth_header);
    curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, c->headers);
    return curl_multi_add_handle(c->multi, c->easy) == CURLM_OK;
}

const char *ellm_gw_call_redirect(const gw_call *c)
{
    char *to = NULL;
    if (!c->easy || curl_easy_getinfo(c->easy, CURLINFO_REDIRECT_URL, &to) != CURLE_OK)
        return NULL;
    return to;
}

void ellm_gw_call_moved(gw_call *c)
{
    curl_easy_setopt(c->easy, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(c->easy, CURLOPT_ERRORBUFFER, c->error);
}

bool ellm_gw_call_pump(gw_call *c, int wait_ms)
{
    if (c->finished)
        return true;
    int running = 0;
    curl_multi_perform(c->multi, &running);
    if (running)
        curl_multi_poll(c->multi, NULL, 0, wait_ms, NULL);
    curl_multi_perform(c->multi, &running);
    int left;
    CURLMsg *m;
    while ((m = curl_multi_info_read(c->multi, &left)))
        if (m->msg == CURLMSG_DONE) {
            c->finished = true;
            c->result = m->data.result;
        }
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &c->status);
    return c->finished;
}

void ellm_gw_call_free(gw_call *c)
{
    if (c->multi && c->easy)
        curl_multi_remove_handle(c->multi, c->easy);
    if (c->easy)
        curl_easy_cleanup(c->easy);
    if (c->multi)
        curl_multi_cleanup(c->multi);
    curl_slist_free_all(c->headers);
    free(c->body);
    memset(c, 0, sizeof *c);
}

const char *ellm_gw_call_failure(const gw_call *c)
{
    if (!c->finished || c->result == CURLE_OK) {
        if (c->status == 429)
            return "cloud-429";
        if (c->status >= 500)
            return "cloud-5xx";
        return NULL;
    }
    switch (c->result) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY: return "cloud-dns";
    case CURLE_OPERATION_TIMEDOUT: return "cloud-timeout";
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR: return "cloud-tls";
    default: return "cloud-unreachable";
    }
}
