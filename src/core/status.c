#define _POSIX_C_SOURCE 200809L
#include "core/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/utf8.h"

#define ELLM_ERROR_CAP 1024

static _Thread_local char last_error[ELLM_ERROR_CAP];

/* Messages quote strings taken from files and requests (architecture names, tensor names, metadata
 * keys, paths); a control byte among them could rewrite the user's terminal or split a log line,
 * and a byte that is not UTF-8 (or a character cut by the message's size) makes the message
 * unusable where text must be UTF-8 (JSON, Java's NewStringUTF aborts on it). */
void ellm_make_printable(char *text)
{
    size_t n = strlen(text);
    for (size_t i = 0; i < n;) {
        uint32_t cp = 0;
        size_t k = ellm_utf8_next(text + i, n - i, &cp);
        bool bad = k == 0 || cp < 0x20 || (cp >= 0x7f && cp <= 0x9f);
        if (k == 0)
            k = 1;
        if (bad)
            memset(text + i, '?', k);
        i += k;
    }
}

edgellm_status ellm_fail(edgellm_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    ellm_make_printable(last_error);
    return status;
}

edgellm_status ellm_fail_wrap(edgellm_status status, const char *fmt, ...)
{
    char previous[ELLM_ERROR_CAP];
    memcpy(previous, last_error, sizeof previous);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n + 2 < sizeof last_error && previous[0] != '\0') {
        size_t at = (size_t)n;
        size_t room = sizeof last_error - at - 3;
        size_t plen = strnlen(previous, room);
        last_error[at] = ':';
        last_error[at + 1] = ' ';
        memcpy(last_error + at + 2, previous, plen);
        last_error[at + 2 + plen] = '\0';
    }
    ellm_make_printable(last_error);
    return status;
}

void ellm_clear_error(void) { last_error[0] = '\0'; }

const char *edgellm_last_error(void) { return last_error; }

const char *edgellm_status_name(edgellm_status status)
{
    switch (status) {
    case EDGELLM_OK: return "ok";
    case EDGELLM_ERR_INVALID_ARGUMENT: return "invalid argument";
    case EDGELLM_ERR_IO: return "I/O error";
    case EDGELLM_ERR_FORMAT: return "invalid format";
    case EDGELLM_ERR_UNSUPPORTED: return "unsupported";
    case EDGELLM_ERR_OUT_OF_MEMORY: return "out of memory";
    case EDGELLM_ERR_CONTEXT_FULL: return "context full";
    case EDGELLM_ERR_BUFFER_TOO_SMALL: return "buffer too small";
    case EDGELLM_ERR_NOT_FOUND: return "not found";
    case EDGELLM_ERR_CANCELLED: return "cancelled";
    case EDGELLM_ERR_BUSY: return "busy";
    }
    return "unknown status";
}
