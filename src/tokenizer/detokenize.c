/* Token ids back to bytes, and the UTF-8 bookkeeping streaming output needs. */
#include <string.h>

#include "core/status.h"
#include "core/utf8.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"
#include "tokenizer/vocab_internal.h"

static edgellm_status put(char *buf, size_t cap, size_t *len, const char *p, size_t n)
{
    if (buf && *len + n <= cap)
        memcpy(buf + *len, p, n);
    *len += n;
    return EDGELLM_OK;
}

/* Byte-level BPE texts spell every byte as one character of GPT-2's byte-to-unicode map; a
 * character outside the map (only in hand-edited vocabularies) is passed through as UTF-8. */
static void append_byte_level(const ellm_vocab_token *tok, char *buf, size_t cap, size_t *len)
{
    for (uint32_t i = 0; i < tok->len;) {
        uint32_t n;
        int b = ellm_bpe_char_to_byte(ellm_utf8_decode(tok->text + i, tok->len - i, &n));
        if (b >= 0) {
            char c = (char)b;
            put(buf, cap, len, &c, 1);
        } else {
            put(buf, cap, len, tok->text + i, n);
        }
        i += n;
    }
}

/* Appends a token's bytes at *len (counting even when they do not fit). */
static void append_piece(const ellm_vocab *v, edgellm_token t, char *buf, size_t cap, size_t *len)
{
    const ellm_vocab_token *tok = &v->tokens[t];
    switch (tok->type) {
    case ELLM_TOKEN_CONTROL:
    case ELLM_TOKEN_UNUSED: return;
    case ELLM_TOKEN_BYTE: {
        int b = ellm_parse_byte_token(tok->text, tok->len);
        if (b >= 0) {
            char c = (char)b;
            put(buf, cap, len, &c, 1);
            return;
        }
        break;
    }
    case ELLM_TOKEN_USER_DEFINED: break; /* added tokens are stored as their plain text */
    default:
        if (v->bpe) {
            append_byte_level(tok, buf, cap, len);
            return;
        }
        break;
    }
    const char *p = tok->text;
    uint32_t n = tok->len;
    for (uint32_t i = 0; i < n;) {
        if (i + 3 <= n && memcmp(p + i, "\xE2\x96\x81", 3) == 0) {
            put(buf, cap, len, " ", 1);
            i += 3;
        } else {
            put(buf, cap, len, p + i, 1);
            i++;
        }
    }
}

edgellm_status ellm_token_piece(const ellm_vocab *v, edgellm_token t, char *buf, size_t cap,
                                size_t *len)
{
    if (!v || !len || t < 0 || t >= v->n_tokens)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "token id %d is not in the vocabulary of %d",
                         (int)t, v ? v->n_tokens : 0);
    *len = 0;
    append_piece(v, t, buf, cap, len);
    if (*len > cap)
        return ellm_fail(EDGELLM_ERR_BUFFER_TOO_SMALL, "token piece needs %zu bytes", *len);
    return EDGELLM_OK;
}

edgellm_status ellm_detokenize(const ellm_vocab *v, const edgellm_token *tokens, int32_t n_tokens,
                               bool remove_leading_space, char *buf, size_t cap, size_t *len)
{
    if (!v || !len || n_tokens < 0 || (!tokens && n_tokens > 0))
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "ellm_detokenize: invalid arguments");
    *len = 0;
    bool at_start = true;
    for (int32_t i = 0; i < n_tokens; i++) {
        edgellm_token t = tokens[i];
        if (t < 0 || t >= v->n_tokens)
            return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                             "token id %d at position %d is not in the vocabulary of %d", (int)t,
                             (int)i, v->n_tokens);
        size_t before = *len;
        append_piece(v, t, buf, cap, len);
        if (at_start && *len > before) {
            at_start = false;
            /* The dummy prefix the tokenizer added is not part of the text. */
            if (remove_leading_space && v->add_space_prefix &&
                v->tokens[t].type != ELLM_TOKEN_BYTE) {
                const ellm_vocab_token *tok = &v->tokens[t];
                bool space = tok->text[0] == ' ' ||
                             (tok->len >= 3 && memcmp(tok->text, "\xE2\x96\x81", 3) == 0);
                if (space) {
                    if (buf && *len <= cap) /* otherwise the call fails: contents don't matter */
                        memmove(buf + before, buf + before + 1, *len - before - 1);
                    (*len)--;
                }
            }
        }
    }
    if (*len + 1 > cap) {
        return ellm_fail(EDGELLM_ERR_BUFFER_TOO_SMALL, "detokenized text needs %zu bytes",
                         *len + 1);
    }
    buf[*len] = '\0';
    return EDGELLM_OK;
}
