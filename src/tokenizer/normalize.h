/* Unicode normalization some BPE families apply before pre-tokenization. */
#ifndef EDGELLM_TOKENIZER_NORMALIZE_H
#define EDGELLM_TOKENIZER_NORMALIZE_H

#include <stddef.h>

#include "edgellm.h"

/* NFC (canonical decomposition, canonical ordering, canonical composition) of text[0..len).
 * Text that cannot change (every code point below U+0300) is returned as is in *out; otherwise
 * the result is written to *buf (grown with realloc to *cap bytes; the caller frees it) and *out
 * points there. Bytes that are not valid UTF-8 pass through unchanged. */
edgellm_status ellm_nfc(const char *text, size_t len, char **buf, size_t *cap, const char **out,
                        size_t *out_len);

#endif
