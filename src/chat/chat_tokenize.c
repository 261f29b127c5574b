/* ellm_chat_tokenize: a rendered chat prompt to token ids, the template's markup parsed for
 * control tokens and the messages' text not, so a message holding "<|im_end|>" stays text.
 *
 * Tokenizers cut text at control tokens and tokenize the pieces between them on their own
 * (SentencePiece adds its dummy prefix to each). So the text is cut at exactly those places:
 * the control tokens inside each markup range. The markup text before a range's first control
 * token and after its last one is tokenized together with the neighbouring message text, as the
 * whole-string tokenization would (Llama 2's "[INST] " + content, Gemma's "user\n" + content). */
#include <stdlib.h>
#include <string.h>

#include "chat/chat.h"
#include "core/status.h"

typedef struct id_list {
    edgellm_token *ids;
    int32_t n, cap;
} id_list;

/* Tokenizes text[0, len) with flags into a malloc'd array. */
static edgellm_status tokenize(const edgellm_model *model, const char *text, size_t len, int flags,
                               id_list *out)
{
    out->ids = NULL;
    out->n = out->cap = 0;
    int32_t n = 0;
    edgellm_status st = edgellm_tokenize(model, text, len, flags, NULL, 0, &n);
    if (st != EDGELLM_OK && st != EDGELLM_ERR_BUFFER_TOO_SMALL)
        return st;
    if (n == 0)
        return EDGELLM_OK;
    out->ids = malloc((size_t)n * sizeof *out->ids);
    if (!out->ids)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for %d prompt tokens", n);
    out->cap = n;
    return edgellm_tokenize(model, text, len, flags, out->ids, n, &out->n);
}

static edgellm_status append(id_list *dst, const id_list *src)
{
    if (dst->n + src->n > dst->cap) {
        int32_t cap = (dst->n + src->n) * 2;
        edgellm_token *grown = realloc(dst->ids, (size_t)cap * sizeof *grown);
        if (!grown)
            return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the prompt tokens");
        dst->ids = grown;
        dst->cap = cap;
    }
    if (src->n > 0)
        memcpy(dst->ids + dst->n, src->ids, (size_t)src->n * sizeof *src->ids);
    dst->n += src->n;
    return EDGELLM_OK;
}

/* Whether the token is one that special-token parsing produces from its text: with parsing
 * its text is that one token, without it is not. */
static bool is_control(const edgellm_model *model, edgellm_token t)
{
    char text[256];
    size_t len = 0;
    if (edgellm_token_text(model, t, text, sizeof text, &len) != EDGELLM_OK || len == 0)
        return false;
    edgellm_token with[2], without[2];
    int32_t nw = 0, nwo = 0;
    edgellm_status st = edgellm_tokenize(model, text, len, EDGELLM_TOKENIZE_PARSE_SPECIAL, with, 2,
                                         &nw);
    if (st != EDGELLM_OK || nw != 1 || with[0] != t)
        return false;
    st = edgellm_tokenize(model, text, len, 0, without, 2, &nwo);
    return st == EDGELLM_ERR_BUFFER_TOO_SMALL ||
           (st == EDGELLM_OK && (nwo != 1 || without[0] != t));
}

static size_t control_len(const edgellm_model *model, edgellm_token t)
{
    size_t len = 0;
    edgellm_token_text(model, t, NULL, 0, &len);
    return len;
}

/* The first occurrence of needle[0, n) in hay[0, len), or len. */
static size_t find(const char *hay, size_t len, const char *needle, size_t n, bool last)
{
    size_t found = len;
    for (size_t i = 0; n > 0 && i + n <= len; i++) {
        if (memcmp(hay + i, needle, n) == 0) {
            found = i;
            if (!last)
                break;
        }
    }
    return found;
}

/* Within markup text m[0, len): [*lo, *hi) from the start of its first control token to the end
 * of its last one; *lo == *hi == len when it has none. */
static edgellm_status control_core(const edgellm_model *model, const char *m, size_t len,
                                   size_t *lo, size_t *hi)
{
    *lo = *hi = len;
    id_list ids;
    edgellm_status st = tokenize(model, m, len, EDGELLM_TOKENIZE_PARSE_SPECIAL, &ids);
    if (st != EDGELLM_OK)
        return st;
    int32_t first = -1, last = -1;
    for (int32_t i = 0; i < ids.n; i++) {
        if (is_control(model, ids.ids[i])) {
            if (first < 0)
                first = i;
            last = i;
        }
    }
    if (first >= 0) {
        char text[256];
        size_t n = 0;
        /* Plain text before the first control token cannot hold its text (it would have been
         * parsed), so its first occurrence is where it stands; likewise the last one's last. */
        edgellm_token_text(model, ids.ids[first], text, sizeof text, &n);
        size_t a = find(m, len, text, n, false);
        edgellm_token_text(model, ids.ids[last], text, sizeof text, &n);
        size_t b = find(m, len, text, n, true);
        if (a < len && b < len && a <= b) {
            *lo = a;
            *hi = b + control_len(model, ids.ids[last]);
        }
    }
    free(ids.ids);
    return EDGELLM_OK;
}

/* Tokenizes text[a, b) with flags and appends the ids. */
static edgellm_status add_piece(const edgellm_model *model, const char *text, size_t a, size_t b,
                                int flags, id_list *out)
{
    if (b <= a)
        return EDGELLM_OK;
    id_list piece;
    edgellm_status st = tokenize(model, text + a, b - a, flags, &piece);
    if (st == EDGELLM_OK)
        st = append(out, &piece);
    free(piece.ids);
    return st;
}

edgellm_status ellm_chat_tokenize(const edgellm_model *model, const char *text,
                                  const ellm_chat_span *spans, size_t n_spans, bool ensure_bos,
                                  edgellm_token **tokens, int32_t *n_tokens)
{
    if (!model || !text || (!spans && n_spans > 0) || !tokens || !n_tokens)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "ellm_chat_tokenize: invalid arguments");
    *tokens = NULL;
    *n_tokens = 0;
    size_t len = strlen(text);
    id_list out = {0};
    edgellm_status st = EDGELLM_OK;
    /* plain: where the text not yet tokenized starts; it holds no control token to parse. */
    size_t plain = 0, pos = 0;
    for (size_t k = 0; k <= n_spans && st == EDGELLM_OK; k++) {
        size_t markup_end = k < n_spans ? spans[k].offset : len;
        if (markup_end < pos || markup_end > len) {
            st = ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                           "ellm_chat_tokenize: message span %zu is out of order or past the text",
                           k);
            break;
        }
        size_t lo, hi;
        st = control_core(model, text + pos, markup_end - pos, &lo, &hi);
        if (st != EDGELLM_OK)
            break;
        if (lo < markup_end - pos) {
            st = add_piece(model, text, plain, pos + lo, 0, &out);
            if (st == EDGELLM_OK)
                st = add_piece(model, text, pos + lo, pos + hi, EDGELLM_TOKENIZE_PARSE_SPECIAL,
                               &out);
            plain = pos + hi;
        }
        pos = k < n_spans ? spans[k].offset + spans[k].length : len;
        if (pos > len)
            st = ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                           "ellm_chat_tokenize: message span %zu runs past the text", k);
    }
    if (st == EDGELLM_OK)
        st = add_piece(model, text, plain, len, 0, &out);
    edgellm_token bos = edgellm_token_bos(model);
    if (st == EDGELLM_OK && ensure_bos && bos >= 0 && edgellm_add_bos_default(model) &&
        (out.n == 0 || out.ids[0] != bos)) {
        id_list one = {&bos, 1, 1};
        st = append(&out, &one);
        if (st == EDGELLM_OK) {
            memmove(out.ids + 1, out.ids, (size_t)(out.n - 1) * sizeof *out.ids);
            out.ids[0] = bos;
        }
    }
    if (st != EDGELLM_OK) {
        free(out.ids);
        return st;
    }
    *tokens = out.ids;
    *n_tokens = out.n;
    return EDGELLM_OK;
}
