#define _POSIX_C_SOURCE 200809L
/* Request checks made from the headers alone (see guard.h), and the rules an API key obeys. */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "server/guard.h"
#include "core/mapped_file.h"

bool ellm_srv_list_split(const char *list, char ***out, int *n)
{
    *out = NULL;
    *n = 0;
    if (!list || !*list)
        return true;
    int cap = 1;
    for (const char *p = list; *p; p++)
        cap += *p == ',';
    char **items = calloc((size_t)cap, sizeof *items);
    if (!items)
        return false;
    int count = 0;
    for (const char *p = list;;) {
        const char *end = strchr(p, ',');
        if (!end)
            end = p + strlen(p);
        const char *a = p, *b = end;
        while (a < b && (*a == ' ' || *a == '\t'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
            b--;
        if (b > a && !(items[count++] = strndup(a, (size_t)(b - a)))) {
            ellm_srv_list_free(items, count - 1);
            return false;
        }
        if (!*end)
            break;
        p = end + 1;
    }
    *out = items;
    *n = count;
    return true;
}

void ellm_srv_list_free(char **list, int n)
{
    for (int i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

/* An IPv4 literal, or an IPv6 one (brackets already removed): its bytes and their count. */
static int ip_literal(const char *name, unsigned char addr[16])
{
    if (inet_pton(AF_INET, name, addr) == 1)
        return 4;
    if (inet_pton(AF_INET6, name, addr) == 1)
        return 16;
    return 0;
}

bool ellm_srv_guard_init(srv_guard *g, const char *bind_host, const char *allowed_hosts,
                         const char *api_key, size_t max_body, char *err, size_t err_cap)
{
    memset(g, 0, sizeof *g);
    g->max_body = max_body;
    g->bound_len = ip_literal(bind_host, g->bound_addr);
    static const unsigned char zero[16];
    g->bound_wildcard = g->bound_len > 0 && !memcmp(g->bound_addr, zero, (size_t)g->bound_len);
    if (!ellm_srv_list_split(allowed_hosts, &g->allowed_hosts, &g->n_allowed_hosts)) {
        snprintf(err, err_cap, "out of memory");
        return false;
    }
    for (int i = 0; i < g->n_allowed_hosts; i++) {
        const char *h = g->allowed_hosts[i];
        if (!strcmp(h, "*")) {
            g->any_host = true;
            continue;
        }
        /* A port would never match (ports are not compared) and brackets belong to URLs. */
        for (const char *p = h; *p; p++) {
            if (*p == ':' || *p == '[' || *p == ']' || *p == '/' || (unsigned char)*p <= ' ' ||
                (unsigned char)*p >= 0x7f) {
                snprintf(err, err_cap,
                         "--allowed-hosts entry '%.100s' is not a host name: give names or IPv4 "
                         "addresses without port or scheme, comma-separated (e.g. "
                         "--allowed-hosts mybox.local,192.168.1.5)",
                         h);
                ellm_srv_guard_free(g);
                return false;
            }
        }
    }
    if (api_key) {
        g->has_key = true;
        crypto_generichash(g->key_digest, sizeof g->key_digest, (const unsigned char *)api_key,
                           strlen(api_key), NULL, 0);
    }
    return true;
}

void ellm_srv_guard_free(srv_guard *g)
{
    ellm_srv_list_free(g->allowed_hosts, g->n_allowed_hosts);
    g->allowed_hosts = NULL;
    g->n_allowed_hosts = 0;
}

bool ellm_srv_guard_host_allowed(const srv_guard *g, const char *host)
{
    if (!host)
        return true;
    if (g->any_host)
        return true;
    /* Split "name[:port]" or "[v6][:port]"; the port is not compared (port forwarding and
     * proxies change it, and a rebinding page differs from us in the name, not the port). */
    char name[256];
    const char *port;
    if (host[0] == '[') {
        const char *close = strchr(host, ']');
        if (!close || (size_t)(close - host - 1) >= sizeof name)
            return false;
        memcpy(name, host + 1, (size_t)(close - host - 1));
        name[close - host - 1] = '\0';
        unsigned char addr[16];
        if (ip_literal(name, addr) != 16)
            return false;
        port = close + 1;
    } else {
        size_t n = strcspn(host, ":");
        if (n == 0 || n >= sizeof name)
            return false;
        memcpy(name, host, n);
        name[n] = '\0';
        port = host + n;
    }
    if (*port) {
        if (*port++ != ':' || strlen(port) > 5)
            return false;
        for (const char *p = port; *p; p++)
            if (*p < '0' || *p > '9')
                return false;
    }
    if (!strcasecmp(name, "localhost") || !strcmp(name, "127.0.0.1") || !strcmp(name, "::1"))
        return true;
    unsigned char addr[16];
    int len = ip_literal(name, addr);
    if (len > 0 &&
        (g->bound_wildcard || (len == g->bound_len && !memcmp(addr, g->bound_addr, (size_t)len))))
        return true;
    for (int i = 0; i < g->n_allowed_hosts; i++)
        if (!strcasecmp(name, g->allowed_hosts[i]))
            return true;
    return false;
}

bool ellm_srv_content_type_is_json(const char *content_type)
{
    if (!content_type)
        return false;
    const char *p = content_type;
    while (*p == ' ' || *p == '\t')
        p++;
    static const char want[] = "application/json";
    if (strncasecmp(p, want, sizeof want - 1) != 0)
        return false;
    p += sizeof want - 1;
    while (*p == ' ' || *p == '\t')
        p++;
    return *p == '\0' || *p == ';';
}

bool ellm_srv_guard_key_matches(const srv_guard *g, const char *authorization)
{
    if (!g->has_key)
        return true;
    if (!authorization || strncasecmp(authorization, "Bearer", 6) != 0 ||
        (authorization[6] != ' ' && authorization[6] != '\t'))
        return false;
    const char *given = authorization + 6;
    while (*given == ' ' || *given == '\t')
        given++;
    unsigned char digest[SRV_KEY_DIGEST_BYTES];
    crypto_generichash(digest, sizeof digest, (const unsigned char *)given, strlen(given), NULL, 0);
    return sodium_memcmp(digest, g->key_digest, sizeof digest) == 0;
}

bool ellm_srv_guard_check_host(const srv_guard *g, struct MHD_Connection *conn, srv_api_error *err)
{
    const char *host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
    if (ellm_srv_guard_host_allowed(g, host))
        return true;
    ellm_srv_error_set(
        err, 421, "invalid_request_error", "host_not_allowed", NULL,
        "the Host header '%.100s' does not name this server (a page on another site "
        "may be reaching it through DNS rebinding); to serve under that name, start it "
        "with --allowed-hosts NAME",
        host);
    return false;
}

bool ellm_srv_guard_check_key(const srv_guard *g, struct MHD_Connection *conn, srv_api_error *err)
{
    const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                   MHD_HTTP_HEADER_AUTHORIZATION);
    if (ellm_srv_guard_key_matches(g, auth))
        return true;
    ellm_srv_error_set(err, 401, "authentication_error", "invalid_api_key", NULL,
                       "missing or wrong API key: send 'Authorization: Bearer <key>'");
    return false;
}

bool ellm_srv_guard_check_body(const srv_guard *g, struct MHD_Connection *conn, bool json_body,
                               srv_api_error *err)
{
    if (json_body) {
        const char *type = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                       MHD_HTTP_HEADER_CONTENT_TYPE);
        if (!ellm_srv_content_type_is_json(type)) {
            ellm_srv_error_set(
                err, 415, "invalid_request_error", "unsupported_media_type", NULL,
                "the request body must be sent with 'Content-Type: application/json' "
                "(got %s%.100s%s)",
                type ? "'" : "", type ? type : "none", type ? "'" : "");
            return false;
        }
    }
    /* libmicrohttpd has refused a malformed Content-Length before we are called. */
    const char *length = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (length) {
        errno = 0;
        char *end;
        unsigned long long n = strtoull(length, &end, 10);
        if (errno == ERANGE || n > g->max_body) {
            ellm_srv_error_set(
                err, 413, "invalid_request_error", "request_too_large", NULL,
                "the request body is larger than the limit of %zu bytes (--max-body)", g->max_body);
            return false;
        }
    }
    return true;
}

bool ellm_server_check_api_key(const char *key, size_t len, char *err, size_t err_cap)
{
    if (len == 0) {
        snprintf(err, err_cap, "is empty");
        return false;
    }
    if (len > ELLM_SERVER_API_KEY_MAX) {
        snprintf(err, err_cap, "is longer than %d bytes", ELLM_SERVER_API_KEY_MAX);
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)key[i];
        if (c < '!' || c > '~') {
            snprintf(err, err_cap,
                     "has %s (byte 0x%02x) at offset %zu: a key is printable ASCII without "
                     "spaces",
                     c == 0                 ? "a NUL byte"
                     : c == ' '             ? "a space"
                     : c < ' ' || c == 0x7f ? "a control character"
                                            : "a non-ASCII byte",
                     c, i);
            return false;
        }
    }
    return true;
}

char *ellm_server_read_api_key_file(const char *path, char *err, size_t err_cap)
{
    FILE *f = ellm_fopen_regular(path);
    if (!f) {
        snprintf(err, err_cap, "cannot read the API key file: %s", edgellm_last_error());
        return NULL;
    }
    /* Room for the longest key, "\r\n" and one byte more to notice a longer file. */
    char buf[ELLM_SERVER_API_KEY_MAX + 3];
    size_t n = fread(buf, 1, sizeof buf, f);
    bool read_error = ferror(f);
    fclose(f);
    if (read_error) {
        snprintf(err, err_cap, "cannot read the API key file '%s'", path);
        return NULL;
    }
    if (n > 0 && buf[n - 1] == '\n')
        n--;
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    char why[160];
    if (!ellm_server_check_api_key(buf, n, why, sizeof why)) {
        snprintf(err, err_cap,
                 "the API key file '%s' %s (a key is 1 to %d printable ASCII characters, "
                 "optionally followed by one newline)",
                 path, why, ELLM_SERVER_API_KEY_MAX);
        return NULL;
    }
    char *key = strndup(buf, n);
    if (!key)
        snprintf(err, err_cap, "out of memory");
    return key;
}
