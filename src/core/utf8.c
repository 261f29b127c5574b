#include "core/utf8.h"

static bool is_continuation(unsigned char b) { return (b & 0xC0) == 0x80; }

int ellm_utf8_lead(uint8_t b, uint32_t *part)
{
    if (b < 0x80) {
        *part = b;
        return 0;
    }
    /* C0 and C1 could only start overlong forms, F5 and above only values past U+10FFFF. */
    int need = b >= 0xC2 && b < 0xE0   ? 1
               : b >= 0xE0 && b < 0xF0 ? 2
               : b >= 0xF0 && b < 0xF5 ? 3
                                       : -1;
    if (need > 0)
        *part = b & (0x3Fu >> need);
    return need;
}

bool ellm_utf8_continuation_ok(int need, uint32_t part, uint8_t b)
{
    if (!is_continuation(b))
        return false;
    if (need == 2 && part == 0x0)
        return b >= 0xA0; /* after E0: below would be overlong */
    if (need == 2 && part == 0xD)
        return b <= 0x9F; /* after ED: above would be a surrogate */
    if (need == 3 && part == 0x0)
        return b >= 0x90; /* after F0: below would be overlong */
    if (need == 3 && part == 0x4)
        return b <= 0x8F; /* after F4: above would pass U+10FFFF */
    return true;
}

size_t ellm_utf8_next(const char *s, size_t n, uint32_t *cp)
{
    if (n == 0)
        return 0;
    const unsigned char *u = (const unsigned char *)s;
    uint32_t part;
    int need = ellm_utf8_lead(u[0], &part);
    if (need < 0 || (size_t)need > n - 1)
        return 0;
    for (int k = 1; k <= need; k++) {
        if (!ellm_utf8_continuation_ok(need - k + 1, part, u[k]))
            return 0;
        part = part << 6 | (u[k] & 0x3Fu);
    }
    *cp = part;
    return (size_t)need + 1;
}

uint32_t ellm_utf8_decode(const char *s, size_t n, uint32_t *len)
{
    uint32_t cp;
    size_t k = ellm_utf8_next(s, n, &cp);
    *len = k ? (uint32_t)k : 1;
    return k ? cp : 0xFFFD;
}

bool ellm_utf8_valid(const char *s, size_t n)
{
    uint32_t cp;
    for (size_t i = 0; i < n;) {
        size_t k = ellm_utf8_next(s + i, n - i, &cp);
        if (k == 0)
            return false;
        i += k;
    }
    return true;
}

size_t ellm_utf8_encode(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp >= 0xD800 && cp <= 0xDFFF)
        return 0;
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    if (cp > 0x10FFFF)
        return 0;
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

size_t ellm_utf8_sanitize(const char *s, size_t n, char *out)
{
    size_t o = 0;
    uint32_t cp;
    for (size_t i = 0; i < n;) {
        size_t k = ellm_utf8_next(s + i, n - i, &cp);
        if (k == 0) {
            o += ellm_utf8_encode(0xFFFD, out + o);
            i++;
        } else {
            for (size_t j = 0; j < k; j++)
                out[o++] = s[i + j];
            i += k;
        }
    }
    return o;
}

size_t ellm_utf8_incomplete_tail(const char *buf, size_t len)
{
    /* Look back at most 3 bytes for a lead byte whose sequence runs past the end. */
    for (size_t back = 1; back <= 3 && back <= len; back++) {
        unsigned char c = (unsigned char)buf[len - back];
        if (is_continuation(c))
            continue;
        size_t need = ellm_utf8_sequence_length(c);
        return need > back ? back : 0;
    }
    return 0;
}

size_t ellm_utf8_sequence_length(unsigned char lead)
{
    if ((lead & 0xE0) == 0xC0)
        return 2;
    if ((lead & 0xF0) == 0xE0)
        return 3;
    if ((lead & 0xF8) == 0xF0)
        return 4;
    return 1;
}

size_t ellm_utf8_char_start(const char *s, size_t pos)
{
    size_t start = pos;
    while (start > 0 && pos - start < 3 && is_continuation((unsigned char)s[start]))
        start--;
    return start;
}
