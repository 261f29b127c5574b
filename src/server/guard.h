/* The checks every request passes from its headers alone, before any of its body is read: the
 * Host it names (DNS rebinding), its API key, its Content-Type and its declared length. Kept apart
 * from the routing so that any HTTP front end of edgellm (the server, the gateway) applies the
 * same rules; docs/server.md ("Threat model") says why each exists. */
#ifndef EDGELLM_SERVER_GUARD_H
#define EDGELLM_SERVER_GUARD_H

#include <stdbool.h>
#include <stddef.h>

#include "server/server_internal.h"

struct MHD_Connection;

#define SRV_KEY_DIGEST_BYTES 32

typedef struct srv_guard {
    /* Host names a client may use besides the localhost names; "*" in the list admits any. */
    char **allowed_hosts;
    int n_allowed_hosts;
    bool any_host;
    /* The bound address: 4 or 16 bytes; 0 when bound to a wildcard (0.0.0.0 or ::), where
     * every IP literal is accepted because a client on the network reaches the server by one of
     * this machine's addresses, and a rebinding attack always carries a name, never a literal. */
    unsigned char bound_addr[16];
    int bound_len;
    bool bound_wildcard;
    /* BLAKE2b of the API key, so the comparison takes the same time whatever the lengths. */
    bool has_key;
    unsigned char key_digest[SRV_KEY_DIGEST_BYTES];
    size_t max_body;
} srv_guard;

/* bind_host is the literal address listened on; allowed_hosts is comma-separated (NULL = none);
 * api_key NULL = no authentication. False with a one-line message naming the bad entry. */
bool ellm_srv_guard_init(srv_guard *g, const char *bind_host, const char *allowed_hosts,
                         const char *api_key, size_t max_body, char *err, size_t err_cap);
void ellm_srv_guard_free(srv_guard *g);

/* Whether a Host header value ("name", "name:port", "[v6]:port") names this server. A request
 * without Host (HTTP/1.0; browsers always send one) passes. */
bool ellm_srv_guard_host_allowed(const srv_guard *g, const char *host);
/* application/json, in any case, with or without parameters such as charset. */
bool ellm_srv_content_type_is_json(const char *content_type);
/* Whether an Authorization value carries the key: scheme "Bearer" in any case (RFC 7235), one or
 * more spaces, the key. Always true without a key. */
bool ellm_srv_guard_key_matches(const srv_guard *g, const char *authorization);

/* The three header checks in the order a front end applies them; each false fills err with the
 * OpenAI-shaped error (421, 401, 415/413) whose message names the fix. */
bool ellm_srv_guard_check_host(const srv_guard *g, struct MHD_Connection *conn, srv_api_error *err);
bool ellm_srv_guard_check_key(const srv_guard *g, struct MHD_Connection *conn, srv_api_error *err);
/* For a request that may carry a body; json_body says the endpoint reads one (then the
 * Content-Type must be JSON). */
bool ellm_srv_guard_check_body(const srv_guard *g, struct MHD_Connection *conn, bool json_body,
                               srv_api_error *err);

/* Splits a comma-separated list into trimmed, non-empty malloc'd entries; false when out of
 * memory. Frees with ellm_srv_list_free. */
bool ellm_srv_list_split(const char *list, char ***out, int *n);
void ellm_srv_list_free(char **list, int n);

#endif
