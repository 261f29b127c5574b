/* /tokenize and /detokenize: the model's tokenizer over HTTP. */
#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>

#include "server/endpoints.h"

/* A token's bytes as a JSON string, whatever their length (a vocabulary may hold tokens of
 * hundreds of bytes); NULL when they are not valid UTF-8 on their own. */
static json_t *piece_json(const edgellm_model *model, edgellm_token token)
{
    char *piece = NULL;
    size_t cap = 0, len = ellm_srv_token_piece(model, token, &piece, &cap);
    json_t *j = json_stringn(piece ? piece : "", len);
    free(piece);
    return j;
}

enum MHD_Result ellm_srv_endpoint_tokenize(srv_server *srv, struct MHD_Connection *conn,
                                           srv_conn *cs, json_t *body)
{
    const char *endpoint = "/tokenize";
    srv_api_error err;
    json_t *content = json_object_get(body, "content");
    json_t *add = json_object_get(body, "add_special"),
           *parse = json_object_get(body, "parse_special"),
           *pieces = json_object_get(body, "with_pieces");
    const char *bad = !json_is_string(content)             ? "content"
                      : add && !json_is_boolean(add)       ? "add_special"
                      : parse && !json_is_boolean(parse)   ? "parse_special"
                      : pieces && !json_is_boolean(pieces) ? "with_pieces"
                                                           : NULL;
    if (bad) {
        ellm_srv_error_set(
            &err, 400, "invalid_request_error", "invalid_type", bad,
            !strcmp(bad, "content") ? "'content' must be a string" : "'%s' must be a boolean", bad);
        json_decref(body);
        return ellm_srv_http_reply_error(srv, conn, &err, endpoint, cs);
    }
    int flags = (json_is_true(add) ? EDGELLM_TOKENIZE_ADD_BOS : 0) |
                (json_is_true(parse) ? EDGELLM_TOKENIZE_PARSE_SPECIAL : 0);
    int32_t n = 0;
    const char *text = json_string_value(content);
    size_t len = json_string_length(content);
    edgellm_status st = edgellm_tokenize(srv->model, text, len, flags, NULL, 0, &n);
    edgellm_token *tokens = malloc(((size_t)n + 1) * sizeof *tokens);
    if (tokens && (st == EDGELLM_OK || st == EDGELLM_ERR_BUFFER_TOO_SMALL))
        st = edgellm_tokenize(srv->model, text, len, flags, tokens, n, &n);
    json_t *out = json_array();
    for (int32_t i = 0; st == EDGELLM_OK && i < n; i++) {
        if (json_is_true(pieces)) {
            json_t *p = piece_json(srv->model, tokens[i]);
            json_array_append_new(
                out, json_pack("{s:i,s:o}", "id", tokens[i], "piece", p ? p : json_pack("[]")));
        } else {
            json_array_append_new(out, json_integer(tokens[i]));
        }
    }
    free(tokens);
    json_decref(body);
    if (st != EDGELLM_OK) {
        json_decref(out);
        return ellm_srv_http_fail(srv, conn, 400, NULL, endpoint, cs, edgellm_last_error());
    }
    return ellm_srv_http_reply_json(srv, conn, 200, json_pack("{s:o}", "tokens", out), endpoint,
                                    cs);
}

enum MHD_Result ellm_srv_endpoint_detokenize(srv_server *srv, struct MHD_Connection *conn,
                                             srv_conn *cs, json_t *body)
{
    const char *endpoint = "/detokenize";
    srv_api_error err;
    json_t *list = json_object_get(body, "tokens");
    size_t n = json_array_size(list);
    edgellm_token *tokens = malloc((n + 1) * sizeof *tokens);
    bool ok = json_is_array(list) && tokens && n <= 1000000;
    size_t i;
    json_t *t;
    json_array_foreach(list, i, t)
    {
        if (!ok)
            break;
        if (!json_is_integer(t) || json_integer_value(t) < 0 ||
            json_integer_value(t) >= edgellm_n_vocab(srv->model))
            ok = false;
        else
            tokens[i] = (edgellm_token)json_integer_value(t);
    }
    json_decref(body);
    if (!ok) {
        free(tokens);
        ellm_srv_error_set(&err, 400, "invalid_request_error", "invalid_value", "tokens",
                           "'tokens' must be an array of token ids (0 to %d)",
                           edgellm_n_vocab(srv->model) - 1);
        return ellm_srv_http_reply_error(srv, conn, &err, endpoint, cs);
    }
    size_t len = 0;
    edgellm_detokenize(srv->model, tokens, (int32_t)n, 1, NULL, 0, &len);
    char *text = malloc(len + 1);
    edgellm_status st = text ? edgellm_detokenize(srv->model, tokens, (int32_t)n, 1, text, len + 1,
                                                  &len)
                             : EDGELLM_ERR_OUT_OF_MEMORY;
    free(tokens);
    if (st != EDGELLM_OK) {
        free(text);
        return ellm_srv_http_fail(srv, conn, 500, NULL, endpoint, cs, "cannot detokenize");
    }
    json_t *s = json_stringn(text, len);
    free(text);
    return ellm_srv_http_reply_json(
        srv, conn, 200, json_pack("{s:o}", "content", s ? s : json_string("")), endpoint, cs);
}
