/* The PII session applied to JSON: every string but the structural members. */
#include <stdlib.h>
#include <string.h>

#include "gateway/pii_json.h"

bool ellm_gw_structural_key(const char *key)
{
    static const char *const keys[] = {"model",  "role",          "type",
                                       "object", "finish_reason", "encoding_format",
                                       "id",     "tool_call_id"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (!strcmp(key, keys[i]))
            return true;
    return false;
}

void ellm_gw_walk_strings(json_t *parent, const char *key, size_t index, json_t *j, gw_walk *w)
{
    if (w->failed)
        return;
    if (json_is_string(j)) {
        const char *s = json_string_value(j);
        size_t n = json_string_length(j);
        char *out = NULL;
        size_t out_len = 0;
        edgellm_status st;
        if (w->mode == GW_WALK_SCAN) {
            pii_entity *e = NULL;
            size_t ne = 0;
            if (ellm_pii_scan(w->policy, s, n, &e, &ne) != EDGELLM_OK) {
                w->failed = true;
                return;
            }
            pii_entity *all = ne ? realloc(w->found, (w->n_found + ne) * sizeof *all) : w->found;
            if (ne && all) {
                memcpy(all + w->n_found, e, ne * sizeof *e);
                w->found = all;
                w->n_found += ne;
            }
            free(e);
            return;
        }
        size_t ne = 0;
        st = w->mode == GW_WALK_REDACT
                 ? ellm_pii_redact(w->session, s, n, &out, &out_len, NULL, &ne)
                 : ellm_pii_restore(w->session, s, n, &out, &out_len);
        if (st != EDGELLM_OK) {
            w->failed = true;
            return;
        }
        w->n_redacted += ne;
        json_t *repl = json_stringn(out, out_len);
        free(out);
        if (!repl) {
            w->failed = true;
            return;
        }
        if (key)
            json_object_set_new(parent, key, repl);
        else
            json_array_set_new(parent, index, repl);
        return;
    }
    const char *k;
    json_t *v;
    size_t i;
    if (json_is_object(j)) {
        void *tmp;
        json_object_foreach_safe(j, tmp, k, v)
        {
            if (!ellm_gw_structural_key(k))
                ellm_gw_walk_strings(j, k, 0, v, w);
        }
    } else if (json_is_array(j)) {
        json_array_foreach(j, i, v) ellm_gw_walk_strings(j, NULL, i, v, w);
    }
}
