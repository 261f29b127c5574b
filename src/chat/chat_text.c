/* Output buffer and Python-style string methods for the template renderers. */
#include "chat/chat_text.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "core/utf8.h"

void ellm_chat_buf_append_n(chat_buf *b, const char *s, size_t n)
{
    if (b->failed || n == 0)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) {
            if (cap > SIZE_MAX / 2) {
                b->failed = true;
                return;
            }
            cap *= 2;
        }
        char *d = realloc(b->data, cap);
        if (!d) {
            b->failed = true;
            return;
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void ellm_chat_buf_append(chat_buf *b, const char *s)
{
    if (s)
        ellm_chat_buf_append_n(b, s, strlen(s));
}

char *ellm_chat_buf_finish(chat_buf *b)
{
    if (b->failed) {
        ellm_chat_buf_discard(b);
        ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the chat prompt");
        return NULL;
    }
    if (!b->data) {
        b->data = malloc(1);
        if (!b->data) {
            ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the chat prompt");
            return NULL;
        }
        b->data[0] = '\0';
    }
    char *out = b->data;
    b->data = NULL;
    b->len = b->cap = 0;
    return out;
}

void ellm_chat_buf_discard(chat_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

chat_span ellm_chat_span_of(const char *s)
{
    chat_span sp = {s ? s : "", s ? strlen(s) : 0};
    return sp;
}

static bool is_py_space(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

chat_span ellm_chat_lstrip(chat_span s)
{
    uint32_t c;
    size_t k;
    /* A byte that is not a well-formed character never counts as whitespace. */
    while (s.n > 0 && (k = ellm_utf8_next(s.p, s.n, &c)) > 0 && is_py_space(c)) {
        s.p += k;
        s.n -= k;
    }
    return s;
}

chat_span ellm_chat_rstrip(chat_span s)
{
    while (s.n > 0) {
        size_t start = ellm_utf8_char_start(s.p, s.n - 1);
        uint32_t c;
        size_t k = ellm_utf8_next(s.p + start, s.n - start, &c);
        if (k != s.n - start || !is_py_space(c))
            break;
        s.n = start;
    }
    return s;
}

chat_span ellm_chat_strip(chat_span s) { return ellm_chat_rstrip(ellm_chat_lstrip(s)); }

chat_span ellm_chat_lstrip_chars(chat_span s, const char *chars)
{
    while (s.n > 0 && strchr(chars, s.p[0])) {
        s.p++;
        s.n--;
    }
    return s;
}

chat_span ellm_chat_rstrip_chars(chat_span s, const char *chars)
{
    while (s.n > 0 && strchr(chars, s.p[s.n - 1]))
        s.n--;
    return s;
}

chat_span ellm_chat_strip_chars(chat_span s, const char *chars)
{
    return ellm_chat_rstrip_chars(ellm_chat_lstrip_chars(s, chars), chars);
}

/* Offset of the first (or last) occurrence of needle in s, or -1. */
static long find(chat_span s, const char *needle, bool last)
{
    size_t m = strlen(needle);
    if (m == 0 || m > s.n)
        return -1;
    long found = -1;
    for (size_t i = 0; i + m <= s.n; i++) {
        if (memcmp(s.p + i, needle, m) == 0) {
            found = (long)i;
            if (!last)
                break;
            i += m - 1; /* occurrences do not overlap, as in str.split */
        }
    }
    return found;
}

chat_span ellm_chat_split_first(chat_span s, const char *sep)
{
    long at = find(s, sep, false);
    if (at >= 0)
        s.n = (size_t)at;
    return s;
}

chat_span ellm_chat_split_last(chat_span s, const char *sep)
{
    long at = find(s, sep, true);
    if (at >= 0) {
        size_t skip = (size_t)at + strlen(sep);
        s.p += skip;
        s.n -= skip;
    }
    return s;
}

bool ellm_chat_span_contains(chat_span s, const char *needle)
{
    return find(s, needle, false) >= 0;
}

bool ellm_chat_span_starts_with(chat_span s, const char *prefix)
{
    size_t m = strlen(prefix);
    return m <= s.n && memcmp(s.p, prefix, m) == 0;
}

bool ellm_chat_span_ends_with(chat_span s, const char *suffix)
{
    size_t m = strlen(suffix);
    return m <= s.n && memcmp(s.p + s.n - m, suffix, m) == 0;
}

void ellm_chat_buf_json_string(chat_buf *b, const char *s, size_t n)
{
    ellm_chat_buf_append(b, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        switch (c) {
        case '"': ellm_chat_buf_append(b, "\\\""); break;
        case '\\': ellm_chat_buf_append(b, "\\\\"); break;
        case '\n': ellm_chat_buf_append(b, "\\n"); break;
        case '\r': ellm_chat_buf_append(b, "\\r"); break;
        case '\t': ellm_chat_buf_append(b, "\\t"); break;
        case '\b': ellm_chat_buf_append(b, "\\b"); break;
        case '\f': ellm_chat_buf_append(b, "\\f"); break;
        default:
            if (c < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", c);
                ellm_chat_buf_append(b, esc);
            } else {
                ellm_chat_buf_append_n(b, s + i, 1);
            }
        }
    }
    ellm_chat_buf_append(b, "\"");
}
