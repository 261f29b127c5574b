/* Text helpers the template renderers share: a growing output buffer and the string methods the
 * templates call (Python's str.strip family, as Jinja evaluates them). */
#ifndef EDGELLM_CHAT_TEXT_H
#define EDGELLM_CHAT_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/* An output buffer; after an allocation failure it stays failed and appends do nothing. */
typedef struct chat_buf {
    char *data;
    size_t len, cap;
    bool failed;
} chat_buf;

void ellm_chat_buf_append_n(chat_buf *b, const char *s, size_t n);
void ellm_chat_buf_append(chat_buf *b, const char *s); /* NULL appends nothing */
/* The NUL-terminated text (ownership passes to the caller), or NULL with an ellm_fail message
 * after an allocation failure. */
char *ellm_chat_buf_finish(chat_buf *b);
void ellm_chat_buf_discard(chat_buf *b);

/* A view of part of a string. */
typedef struct chat_span {
    const char *p;
    size_t n;
} chat_span;

chat_span ellm_chat_span_of(const char *s); /* NULL is the empty span */

/* str.strip() / lstrip() / rstrip() without arguments: Unicode whitespace as Python's
 * str.isspace() defines it (ASCII whitespace, U+001C..U+001F, U+0085, U+00A0, U+1680,
 * U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000). */
chat_span ellm_chat_strip(chat_span s);
chat_span ellm_chat_lstrip(chat_span s);
chat_span ellm_chat_rstrip(chat_span s);

/* str.strip(chars) / lstrip(chars) / rstrip(chars) for an ASCII set of characters. */
chat_span ellm_chat_strip_chars(chat_span s, const char *chars);
chat_span ellm_chat_lstrip_chars(chat_span s, const char *chars);
chat_span ellm_chat_rstrip_chars(chat_span s, const char *chars);

/* s.split(sep)[0] and s.split(sep)[-1]; the whole string when sep does not occur. */
chat_span ellm_chat_split_first(chat_span s, const char *sep);
chat_span ellm_chat_split_last(chat_span s, const char *sep);

/* json.dumps of a string (ensure_ascii=False: non-ASCII kept), appended with its quotes. */
void ellm_chat_buf_json_string(chat_buf *b, const char *s, size_t n);

bool ellm_chat_span_contains(chat_span s, const char *needle);
bool ellm_chat_span_starts_with(chat_span s, const char *prefix);
bool ellm_chat_span_ends_with(chat_span s, const char *suffix);

#endif
