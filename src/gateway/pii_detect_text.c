/* Detectors anchored on a marker byte sequence: e-mail addresses ('@'), URLs with credentials
 * ("://"), private key blocks ("-----BEGIN ") and IPv6 addresses (':'). Each finds its markers
 * with memchr/memmem, so text without them costs almost nothing. */
#define _GNU_SOURCE /* memmem */
#include <string.h>

#include "gateway/pii_internal.h"

enum { EMAIL_LOCAL_MAX = 64, DOMAIN_MAX = 253, LABEL_MAX = 63, IPV6_MAX = 45 };

static bool email_local_char(unsigned char c)
{
    return pii_is_alnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-';
}

/* Top-level "domains" that are really file names: logo@2x.png is not an address. */
static bool file_extension(const char *s, size_t n)
{
    static const char *const ext[] = {"png", "jpg",  "jpeg", "gif", "svg", "webp", "ico", "bmp",
                                      "tif", "tiff", "pdf",  "js",  "css", "map",  NULL};
    for (size_t k = 0; ext[k]; k++) {
        size_t m = strlen(ext[k]);
        if (m != n)
            continue;
        size_t j = 0;
        while (j < n && pii_lower((unsigned char)s[j]) == (unsigned char)ext[k][j])
            j++;
        if (j == n)
            return true;
    }
    return false;
}

/* The end of a domain name starting at pos (at least two labels, alphabetic TLD), or 0. */
static size_t domain_end(const char *t, size_t len, size_t pos)
{
    size_t e = pos, labels = 0, tld_start = pos;
    for (;;) {
        size_t l = e;
        while (e < len && e - pos <= DOMAIN_MAX &&
               (pii_is_alnum((unsigned char)t[e]) || t[e] == '-'))
            e++;
        if (e == l || e - l > LABEL_MAX || t[l] == '-' || t[e - 1] == '-')
            return 0;
        labels++;
        tld_start = l;
        if (e + 1 < len && t[e] == '.' && pii_is_alnum((unsigned char)t[e + 1]))
            e++;
        else
            break;
    }
    if (labels < 2 || e - tld_start < 2 || e - pos > DOMAIN_MAX)
        return 0;
    for (size_t k = tld_start; k < e; k++)
        if (!pii_is_alpha((unsigned char)t[k]))
            return 0;
    if (file_extension(t + tld_start, e - tld_start))
        return 0;
    return e;
}

void ellm_pii_find_emails(const char *text, size_t len, pii_candidates *c)
{
    size_t from = 0;
    const char *at;
    while (from < len && (at = memchr(text + from, '@', len - from))) {
        size_t a = (size_t)(at - text);
        from = a + 1;
        size_t s = a;
        while (s > 0 && a - s <= EMAIL_LOCAL_MAX && email_local_char((unsigned char)text[s - 1]))
            s--;
        if (a - s > EMAIL_LOCAL_MAX)
            continue;
        while (s < a && (text[s] == '.' || text[s] == '-'))
            s++;
        if (s == a || text[a - 1] == '.' || (s > 0 && pii_is_word((unsigned char)text[s - 1])))
            continue;
        /* The user of ssh://git@host is a login name, not a mailbox. */
        if (s >= 3 && memcmp(text + s - 3, "://", 3) == 0)
            continue;
        bool double_dot = false;
        for (size_t k = s; k + 1 < a; k++)
            double_dot |= text[k] == '.' && text[k + 1] == '.';
        if (double_dot)
            continue;
        size_t e = domain_end(text, len, a + 1);
        if (!e || (e < len && (pii_is_word((unsigned char)text[e]) || text[e] == '@')))
            continue;
        ellm_pii_candidates_add(c, s, e, PII_EMAIL);
        from = e;
    }
}

static bool url_char(unsigned char c)
{
    return c > ' ' && c != '"' && c != '\'' && c != '<' && c != '>' && c != '`' && c != 0x7f;
}

/* A user part that is itself a token (https://ghp_xxx@github.com) counts as a credential. */
static bool token_like(const char *s, size_t n)
{
    bool letter = false, digit = false;
    for (size_t k = 0; k < n; k++) {
        letter |= pii_is_alpha((unsigned char)s[k]);
        digit |= pii_is_digit((unsigned char)s[k]);
    }
    return n >= 20 && letter && digit;
}

/* Trailing punctuation after a URL belongs to the sentence; a ')' only if unbalanced. */
static size_t trim_url_end(const char *t, size_t s, size_t e)
{
    for (;;) {
        unsigned char last = (unsigned char)t[e - 1];
        if (pii_in((unsigned char)last, ".,;:!?") && e - 1 > s) {
            e--;
            continue;
        }
        if (last == ')') {
            int depth = 0;
            for (size_t k = s; k < e; k++)
                depth += t[k] == '(' ? 1 : t[k] == ')' ? -1 : 0;
            if (depth < 0) {
                e--;
                continue;
            }
        }
        return e;
    }
}

void ellm_pii_find_url_credentials(const char *text, size_t len, pii_candidates *c)
{
    size_t from = 0;
    const char *hit;
    while (from + 3 <= len && (hit = memmem(text + from, len - from, "://", 3))) {
        size_t p = (size_t)(hit - text);
        from = p + 3;
        size_t s = p;
        while (
            s > 0 && p - s < 32 &&
            (pii_is_alnum((unsigned char)text[s - 1]) || pii_in((unsigned char)text[s - 1], "+.-")))
            s--;
        while (s < p && !pii_is_alpha((unsigned char)text[s]))
            s++;
        if (s == p || (s > 0 && pii_is_word((unsigned char)text[s - 1])))
            continue;
        size_t auth = p + 3, auth_end = auth;
        while (auth_end < len && auth_end - auth < 2048 &&
               url_char((unsigned char)text[auth_end]) &&
               !pii_in((unsigned char)text[auth_end], "/?#"))
            auth_end++;
        size_t at = auth_end;
        while (at > auth && text[at - 1] != '@')
            at--;
        if (at == auth || at == auth_end)
            continue;
        size_t user_end = at - 1;
        const char *colon = memchr(text + auth, ':', user_end - auth);
        bool credential = colon ? (size_t)(colon - text) + 1 < user_end
                                : token_like(text + auth, user_end - auth);
        if (!credential)
            continue;
        size_t e = auth_end;
        while (e < len && url_char((unsigned char)text[e]))
            e++;
        e = trim_url_end(text, s, e);
        ellm_pii_candidates_add(c, s, e, PII_URL_CREDENTIALS);
        from = e;
    }
}

/* Where the line of base64 that ends just before `line_end` (its '\n', or its "\r\n") starts,
 * or line_end when the line is not all base64. */
static size_t base64_line_start(const char *t, size_t line_end)
{
    size_t e = line_end > 0 && t[line_end - 1] == '\r' ? line_end - 1 : line_end, s = e;
    while (s > 0 &&
           (pii_is_alnum((unsigned char)t[s - 1]) || pii_in((unsigned char)t[s - 1], "+/=")))
        s--;
    return s < e && (s == 0 || t[s - 1] == '\n') ? s : line_end;
}

/* A private key whose beginning was cut off when it was pasted: the whole lines of base64 above
 * its END line at s are the key. A complete block also yields its body here, shorter than the
 * block itself, so it loses the overlap. Returns where the search goes on. */
static size_t private_key_tail(const char *text, size_t len, size_t s, pii_candidates *c)
{
    size_t label = s + 9, label_end = label; /* after "-----END " */
    while (label_end < len && label_end - label < 64 && text[label_end] != '-' &&
           text[label_end] != '\n')
        label_end++;
    if (label_end + 5 > len || memcmp(text + label_end, "-----", 5) != 0 ||
        !memmem(text + label, label_end - label, "PRIVATE KEY", 11))
        return label;
    size_t start = s;
    while (start > 0 && text[start - 1] == '\n') {
        size_t line = base64_line_start(text, start - 1);
        if (line == start - 1)
            break;
        start = line;
    }
    if (start < s)
        ellm_pii_candidates_add(c, start, label_end + 5, PII_SECRET);
    return label_end + 5;
}

/* The block whose "-----BEGIN " is at s: adds it, returns where the search goes on. *next_end
 * remembers where the next "-----END " starts (len: none), so many headers cost one pass. */
static size_t private_key_block(const char *text, size_t len, size_t s, size_t *next_end,
                                pii_candidates *c)
{
    size_t label = s + 11, label_end = label; /* after "-----BEGIN " */
    while (label_end < len && label_end - label < 64 && text[label_end] != '-' &&
           text[label_end] != '\n')
        label_end++;
    if (label_end + 5 > len || memcmp(text + label_end, "-----", 5) != 0)
        return label;
    /* Certificates and public keys are not secret, but their base64 lines look random: the
     * whole block is claimed as a shape so that no line is taken for a token. */
    bool private_key = memmem(text + label, label_end - label, "PRIVATE KEY", 11) != NULL;
    /* Blocks do not nest: the first "-----END " after the header closes it if it carries the
     * same label. Without it the rest of the text is the key (an unclosed public block claims
     * nothing). */
    size_t e = len, body = label_end + 5, label_len = label_end - label;
    if (*next_end < body) {
        const char *end = memmem(text + body, len - body, "-----END ", 9);
        *next_end = end ? (size_t)(end - text) : len;
    }
    size_t q = *next_end + 9;
    bool closed = *next_end < len && q + label_len + 5 <= len &&
                  memcmp(text + q, text + label, label_len) == 0 &&
                  memcmp(text + q + label_len, "-----", 5) == 0;
    if (closed)
        e = q + label_len + 5;
    if (private_key)
        ellm_pii_candidates_add(c, s, e, PII_SECRET);
    else if (closed)
        ellm_pii_candidates_add_shape(c, s, e, PII_SECRET);
    return private_key || closed ? e : label;
}

/* One pass over the runs of dashes finds both the headers and the END lines: memchr skips the
 * text between dashes faster than a search for the whole marker. */
void ellm_pii_find_private_keys(const char *text, size_t len, pii_candidates *c)
{
    size_t from = 0, next_end = 0;
    const char *hit;
    while (from < len && (hit = memchr(text + from, '-', len - from))) {
        size_t run = (size_t)(hit - text), after = run;
        while (after < len && text[after] == '-')
            after++;
        from = after;
        if (after - run < 5)
            continue;
        size_t s = after - 5; /* the last five dashes of the run lead the marker */
        if (after + 6 <= len && memcmp(text + after, "BEGIN ", 6) == 0)
            from = private_key_block(text, len, s, &next_end, c);
        else if (after + 4 <= len && memcmp(text + after, "END ", 4) == 0)
            from = private_key_tail(text, len, s, c);
    }
}

bool ellm_pii_ipv4_valid(const char *s, size_t n)
{
    int parts = 0;
    size_t k = 0;
    while (k < n) {
        size_t d = k;
        int value = 0;
        while (k < n && pii_is_digit((unsigned char)s[k]) && k - d < 4)
            value = value * 10 + (s[k++] - '0');
        if (k == d || k - d > 3 || value > 255 || (s[d] == '0' && k - d > 1))
            return false;
        parts++;
        if (k < n) {
            if (s[k] != '.' || parts == 4)
                return false;
            k++;
            if (k == n)
                return false;
        }
    }
    return parts == 4;
}

/* IPv6 text forms (RFC 4291 2.2): eight groups, or fewer with one "::", optionally ending in an
 * IPv4 address. */
static bool ipv6_valid(const char *s, size_t n)
{
    int groups = 0;
    bool compressed = false;
    size_t k = 0;
    if (n >= 2 && s[0] == ':' && s[1] == ':') {
        compressed = true;
        k = 2;
        if (k == n)
            return false; /* "::" alone is too common in code to mean an address */
    } else if (n && s[0] == ':') {
        return false;
    }
    while (k < n) {
        size_t g = k;
        while (k < n && pii_is_hex((unsigned char)s[k]))
            k++;
        if (k < n && s[k] == '.') {
            if (!ellm_pii_ipv4_valid(s + g, n - g))
                return false;
            groups += 2;
            k = n;
            break;
        }
        if (k == g || k - g > 4)
            return false;
        groups++;
        if (k == n)
            break;
        if (s[k] != ':')
            return false;
        k++;
        if (k < n && s[k] == ':') {
            if (compressed)
                return false;
            compressed = true;
            k++;
            if (k == n)
                break;
        } else if (k == n) {
            return false;
        }
    }
    return compressed ? groups <= 7 && groups >= 1 : groups == 8;
}

static bool ipv6_char(unsigned char c) { return pii_is_hex(c) || c == ':' || c == '.'; }

void ellm_pii_find_ipv6(const char *text, size_t len, pii_candidates *c)
{
    size_t from = 0;
    const char *hit;
    while (from < len && (hit = memchr(text + from, ':', len - from))) {
        size_t p = (size_t)(hit - text);
        from = p + 1;
        bool before = p > 0 && (pii_is_hex((unsigned char)text[p - 1]) || text[p - 1] == ':');
        bool after = p + 1 < len && (pii_is_hex((unsigned char)text[p + 1]) || text[p + 1] == ':');
        if (!before && !after)
            continue;
        size_t s = p, e = p + 1;
        while (s > 0 && p - s <= IPV6_MAX && ipv6_char((unsigned char)text[s - 1]))
            s--;
        while (e < len && e - s <= IPV6_MAX && ipv6_char((unsigned char)text[e]))
            e++;
        from = e;
        if (e - s > IPV6_MAX)
            continue;
        while (e > s && text[e - 1] == '.')
            e--;
        if (e > s + 1 && text[e - 1] == ':' && text[e - 2] != ':')
            e--;
        if ((s > 0 && (pii_is_word((unsigned char)text[s - 1]) || text[s - 1] == '.')) ||
            (e < len && pii_is_word((unsigned char)text[e])))
            continue;
        if (ipv6_valid(text + s, e - s))
            ellm_pii_candidates_add(c, s, e, PII_IP_ADDRESS);
    }
}
