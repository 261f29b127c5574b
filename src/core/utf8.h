/* UTF-8 as the Unicode standard defines it (table 3-7: no overlong forms, no surrogates, nothing
 * above U+10FFFF): the one place that decodes, validates, encodes and repairs it. */
#ifndef EDGELLM_CORE_UTF8_H
#define EDGELLM_CORE_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Decodes the well-formed character at s[0..n): returns its length (1-4) and stores its code
 * point in *cp, or returns 0 when s does not start with one (n == 0, a stray continuation or
 * invalid lead byte, a sequence cut short, an overlong form, a surrogate, above U+10FFFF). */
size_t ellm_utf8_next(const char *s, size_t n, uint32_t *cp);

/* The tokenizers' view of the same (n > 0): a byte that does not start a well-formed character is
 * a character of its own, one byte long, decoding to U+FFFD (the byte itself still reaches the
 * vocabulary). Stores the length in *len and returns the code point. */
uint32_t ellm_utf8_decode(const char *s, size_t n, uint32_t *len);

/* Whether s[0..n) is well-formed UTF-8 throughout. */
bool ellm_utf8_valid(const char *s, size_t n);

/* Writes cp as UTF-8 into out (room for 4 bytes); returns its length, or 0 (nothing written) for a
 * surrogate or a value above U+10FFFF. */
size_t ellm_utf8_encode(uint32_t cp, char *out);

/* Copies s[0..n) into out (room for 3 * n bytes) with every byte that does not start a
 * well-formed character replaced by U+FFFD; returns the bytes written. */
size_t ellm_utf8_sanitize(const char *s, size_t n, char *out);

/* How many bytes at the end of buf[0..len) (0-3) begin a character whose remaining bytes have not
 * arrived yet: streamed text holds them back until they do. */
size_t ellm_utf8_incomplete_tail(const char *buf, size_t len);

/* The length a sequence starting with this byte claims by its high bits: 2-4 for lead bytes, 1
 * for ASCII and for bytes that cannot start a sequence (SentencePiece's split into characters). */
size_t ellm_utf8_sequence_length(unsigned char lead);

/* Where the character holding byte pos of s starts: pos moved back over at most 3 continuation
 * bytes. */
size_t ellm_utf8_char_start(const char *s, size_t pos);

/* Decoding one byte at a time (a grammar matching token bytes). A character starts at lead byte
 * b: returns the continuation bytes it needs (0 for ASCII) with the lead's bits in *part, or -1
 * for a byte no well-formed character starts with. */
int ellm_utf8_lead(uint8_t b, uint32_t *part);
/* Whether byte b may follow in a sequence that still needs `need` bytes and has decoded `part` so
 * far; right after the lead byte `part` holds the lead's bits, which is when the second byte's
 * range narrows (after E0, ED, F0 and F4). */
bool ellm_utf8_continuation_ok(int need, uint32_t part, uint8_t b);

#endif
