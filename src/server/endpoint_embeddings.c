/* /v1/embeddings: one sentence embedding per input (text or token ids), as floats or base64. */
#include <microhttpd.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "server/endpoints.h"

enum MHD_Result ellm_srv_endpoint_embeddings(srv_server *srv, struct MHD_Connection *conn,
                                             srv_conn *cs, json_t *body)
{
    const char *endpoint = "/v1/embeddings";
    srv_api_error err;
    if (!ellm_srv_check_model(body, srv->model_id, &err)) {
        json_decref(body);
        return ellm_srv_http_reply_error(srv, conn, &err, endpoint, cs);
    }
    json_t *input = json_object_get(body, "input");
    json_t *list = NULL;
    /* A string, an array of strings, an array of token ids, or an array of such arrays. */
    if (json_is_string(input) || (json_is_array(input) && json_array_size(input) > 0 &&
                                  json_is_integer(json_array_get(input, 0)))) {
        list = json_array();
        json_array_append(list, input);
    } else if (json_is_array(input) && json_array_size(input) > 0) {
        list = json_incref(input);
    }
    json_t *fmt = json_object_get(body, "encoding_format");
    bool base64 = json_is_string(fmt) && !strcmp(json_string_value(fmt), "base64");
    const char *problem = NULL;
    const char *param = "input";
    if (!list)
        problem = "'input' must be a non-empty string or array (of strings or token ids)";
    else if (json_array_size(list) > 256)
        problem = "'input' holds more than 256 items";
    else if (fmt && !json_is_null(fmt) &&
             (!json_is_string(fmt) || (strcmp(json_string_value(fmt), "float") != 0 && !base64))) {
        problem = "'encoding_format' must be \"float\" or \"base64\"";
        param = "encoding_format";
    }
    json_t *dims = json_object_get(body, "dimensions");
    edgellm_model_info info;
    edgellm_model_get_info(srv->model, &info);
    if (!problem && dims && !json_is_null(dims) &&
        (!json_is_integer(dims) || json_integer_value(dims) != info.n_embd)) {
        problem = "'dimensions' can only be the model's embedding size";
        param = "dimensions";
    }
    if (problem) {
        ellm_srv_error_set(&err, 400, "invalid_request_error", "invalid_value", param, "%s",
                           problem);
        json_decref(list);
        json_decref(body);
        return ellm_srv_http_reply_error(srv, conn, &err, endpoint, cs);
    }
    json_t *data = json_array();
    float *vec = malloc((size_t)info.n_embd * sizeof *vec);
    int32_t n_ctx = edgellm_context_n_ctx(srv->embed_ctx);
    edgellm_token *tokens = malloc((size_t)n_ctx * sizeof *tokens);
    long long total_tokens = 0;
    size_t i;
    json_t *item;
    bool ok = vec && tokens;
    if (!ok)
        ellm_srv_error_set(&err, 500, "server_error", NULL, NULL, "out of memory");
    json_array_foreach(list, i, item)
    {
        if (!ok)
            break;
        int32_t n = 0;
        if (json_is_string(item)) {
            int flags = edgellm_add_bos_default(srv->model) ? EDGELLM_TOKENIZE_ADD_BOS : 0;
            edgellm_status st = edgellm_tokenize(srv->model, json_string_value(item),
                                                 json_string_length(item), flags, tokens, n_ctx,
                                                 &n);
            if (st == EDGELLM_ERR_BUFFER_TOO_SMALL || n == 0) {
                ellm_srv_error_set(&err, 400, "invalid_request_error", "context_length_exceeded",
                                   "input", "input %zu is %d tokens; 1 to %d fit", i, n, n_ctx);
                ok = false;
            } else if (st != EDGELLM_OK) {
                ellm_srv_error_set(&err, 400, "invalid_request_error", NULL, "input", "%s",
                                   edgellm_last_error());
                ok = false;
            }
        } else if (json_is_array(item) && json_array_size(item) > 0 &&
                   json_array_size(item) <= (size_t)n_ctx) {
            size_t k;
            json_t *t;
            json_array_foreach(item, k, t)
            {
                if (!json_is_integer(t) || json_integer_value(t) < 0 ||
                    json_integer_value(t) >= edgellm_n_vocab(srv->model)) {
                    ellm_srv_error_set(&err, 400, "invalid_request_error", "invalid_value", "input",
                                       "input %zu holds something that is not a token id", i);
                    ok = false;
                    break;
                }
                tokens[n++] = (edgellm_token)json_integer_value(t);
            }
        } else {
            ellm_srv_error_set(&err, 400, "invalid_request_error", "invalid_value", "input",
                               "input %zu must be a string or 1 to %d token ids", i, n_ctx);
            ok = false;
        }
        if (!ok)
            break;
        pthread_mutex_lock(&srv->embed_mu);
        edgellm_status st = edgellm_embed(srv->embed_ctx, tokens, n, vec, info.n_embd);
        pthread_mutex_unlock(&srv->embed_mu);
        if (st != EDGELLM_OK) {
            ellm_srv_error_set(&err, 500, "server_error", NULL, NULL, "%s", edgellm_last_error());
            ok = false;
            break;
        }
        total_tokens += n;
        json_t *emb;
        if (base64) {
            /* Little-endian float32, as the OpenAI clients decode it. */
            size_t bytes = (size_t)info.n_embd * 4;
            size_t cap = sodium_base64_ENCODED_LEN(bytes, sodium_base64_VARIANT_ORIGINAL);
            char *b64 = malloc(cap);
            unsigned char *raw = malloc(bytes);
            for (int32_t d = 0; raw && d < info.n_embd; d++) {
                uint32_t u;
                memcpy(&u, &vec[d], 4);
                raw[4 * d] = (unsigned char)u;
                raw[4 * d + 1] = (unsigned char)(u >> 8);
                raw[4 * d + 2] = (unsigned char)(u >> 16);
                raw[4 * d + 3] = (unsigned char)(u >> 24);
            }
            emb = b64 && raw ? json_string(sodium_bin2base64(b64, cap, raw, bytes,
                                                             sodium_base64_VARIANT_ORIGINAL))
                             : json_string("");
            free(b64);
            free(raw);
        } else {
            emb = json_array();
            for (int32_t d = 0; d < info.n_embd; d++)
                json_array_append_new(emb, json_real(vec[d]));
        }
        json_array_append_new(data, json_pack("{s:s,s:I,s:o}", "object", "embedding", "index",
                                              (json_int_t)i, "embedding", emb));
    }
    free(vec);
    free(tokens);
    json_decref(list);
    json_decref(body);
    if (!ok) {
        json_decref(data);
        return ellm_srv_http_reply_error(srv, conn, &err, endpoint, cs);
    }
    ellm_srv_metrics_tokens(srv->metrics, total_tokens, 0, 0);
    return ellm_srv_http_reply_json(srv, conn, 200,
                                    json_pack("{s:s,s:o,s:s,s:{s:I,s:I}}", "object", "list", "data",
                                              data, "model", srv->model_id, "usage",
                                              "prompt_tokens", (json_int_t)total_tokens,
                                              "total_tokens", (json_int_t)total_tokens),
                                    endpoint, cs);
}
