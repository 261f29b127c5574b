/* Redaction, scanning and restoration of every user string of a JSON request or answer. */
#ifndef EDGELLM_GATEWAY_PII_JSON_H
#define EDGELLM_GATEWAY_PII_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "gateway/pii.h"

/* Members that hold names of things in the API, not the user's text. */
bool ellm_gw_structural_key(const char *key);

typedef enum gw_walk_mode { GW_WALK_REDACT, GW_WALK_SCAN, GW_WALK_RESTORE } gw_walk_mode;

typedef struct gw_walk {
    gw_walk_mode mode;
    pii_session *session;
    const pii_policy *policy;
    pii_entity *found; /* GW_WALK_SCAN: every entity, for the types */
    size_t n_found;
    size_t n_redacted;
    bool failed;
} gw_walk;

/* Replaces each user string of j (redacted, or restored) in place; GW_WALK_SCAN only collects.
 * j is parent's member key, or its element index when key is NULL (parent NULL: the root). */
void ellm_gw_walk_strings(json_t *parent, const char *key, size_t index, json_t *j, gw_walk *w);

#endif
