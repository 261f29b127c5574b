/* Error reporting shared by every module: a status code plus a per-thread message. */
#ifndef EDGELLM_CORE_STATUS_H
#define EDGELLM_CORE_STATUS_H

#include "edgellm.h"

#if defined(__GNUC__)
#define ELLM_PRINTF(fmt_idx, args_idx) __attribute__((format(printf, fmt_idx, args_idx)))
#else
#define ELLM_PRINTF(fmt_idx, args_idx)
#endif

/* Records a formatted message for edgellm_last_error() and returns status, so failures read
 * `return ellm_fail(EDGELLM_ERR_FORMAT, "tensor '%s': ...", name);` */
edgellm_status ellm_fail(edgellm_status status, const char *fmt, ...) ELLM_PRINTF(2, 3);

/* Prefixes the current message with more context ("loading x.gguf: <old message>"). */
edgellm_status ellm_fail_wrap(edgellm_status status, const char *fmt, ...) ELLM_PRINTF(2, 3);

/* Makes text one printable line of UTF-8, in place and keeping its length: '?' over each byte of
 * a control character (C0, DEL, C1) or of what is not well-formed UTF-8. Every message passes
 * through it; so does other text quoted from files that the API hands to applications. */
void ellm_make_printable(char *text);

/* Forgets the message of a failure the caller recovered from. */
void ellm_clear_error(void);

#endif
