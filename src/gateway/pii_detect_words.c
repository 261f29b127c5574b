/* Detectors led by a word: IBANs (two letters and two check digits), secrets (well-known key
 * prefixes, "password: ..." assignments, long high-entropy tokens) and dates of birth after a
 * label ("DOB:", "born on", "date of birth"). One pass visits each token once. */
#include <math.h>
#include <string.h>

#include "gateway/pii_internal.h"

enum { ENTROPY_MIN_LEN = 32, LABEL_VALUE_MAX = 256, IBAN_MAX = 34 };

/* ISO 13616 registry: country code and IBAN length. */
static const struct {
    char cc[3];
    unsigned char len;
} iban_countries[] = {
    {"AD", 24}, {"AE", 23}, {"AL", 28}, {"AT", 20}, {"AZ", 28}, {"BA", 20}, {"BE", 16}, {"BG", 22},
    {"BH", 22}, {"BI", 27}, {"BR", 29}, {"BY", 28}, {"CH", 21}, {"CR", 22}, {"CY", 28}, {"CZ", 24},
    {"DE", 22}, {"DJ", 27}, {"DK", 18}, {"DO", 28}, {"EE", 20}, {"EG", 29}, {"ES", 24}, {"FI", 18},
    {"FK", 18}, {"FO", 18}, {"FR", 27}, {"GB", 22}, {"GE", 22}, {"GI", 23}, {"GL", 18}, {"GR", 27},
    {"GT", 28}, {"HR", 21}, {"HU", 28}, {"IE", 22}, {"IL", 23}, {"IQ", 23}, {"IS", 26}, {"IT", 27},
    {"JO", 30}, {"KW", 30}, {"KZ", 20}, {"LB", 28}, {"LC", 32}, {"LI", 21}, {"LT", 20}, {"LU", 20},
    {"LV", 21}, {"LY", 25}, {"MC", 27}, {"MD", 24}, {"ME", 22}, {"MK", 19}, {"MN", 20}, {"MR", 27},
    {"MT", 31}, {"MU", 30}, {"NI", 28}, {"NL", 18}, {"NO", 15}, {"OM", 23}, {"PK", 24}, {"PL", 28},
    {"PS", 29}, {"PT", 25}, {"QA", 29}, {"RO", 24}, {"RS", 22}, {"RU", 33}, {"SA", 24}, {"SC", 31},
    {"SD", 18}, {"SE", 24}, {"SI", 19}, {"SK", 24}, {"SM", 27}, {"SO", 23}, {"ST", 25}, {"SV", 28},
    {"TL", 23}, {"TN", 24}, {"TR", 26}, {"UA", 29}, {"VA", 22}, {"VG", 24}, {"XK", 20},
};

/* The country code in either case: people copy "de89 3704 ..." from lower-cased forms. */
static int iban_length(const char *cc)
{
    char a = (char)(pii_lower((unsigned char)cc[0]) ^ 0x20),
         b = (char)(pii_lower((unsigned char)cc[1]) ^ 0x20);
    for (size_t k = 0; k < sizeof iban_countries / sizeof iban_countries[0]; k++)
        if (iban_countries[k].cc[0] == a && iban_countries[k].cc[1] == b)
            return iban_countries[k].len;
    return 0;
}

/* Letters count as 10..35; the check digits make the number, rotated, equal 1 mod 97. */
static int iban_mod97(const char *s, size_t n)
{
    int r = 0;
    for (size_t k = 0; k < n; k++) {
        unsigned char ch = (unsigned char)s[(k + 4) % n];
        if (pii_is_digit(ch))
            r = (r * 10 + (ch - '0')) % 97;
        else if (pii_is_alpha(ch))
            r = (r * 100 + (pii_lower(ch) - 'a' + 10)) % 97;
        else
            return -1;
    }
    return r;
}

bool ellm_pii_iban_valid(const char *iban, size_t n)
{
    return n >= 5 && pii_is_upper((unsigned char)iban[0]) && pii_is_upper((unsigned char)iban[1]) &&
           pii_is_digit((unsigned char)iban[2]) && pii_is_digit((unsigned char)iban[3]) &&
           iban_length(iban) == (int)n && iban_mod97(iban, n) == 1;
}

/* The separator between two groups of a printed IBAN at e: a space, a dash, or a line break
 * where a mail client wrapped it. Its length, or 0. */
static size_t iban_separator(const char *t, size_t len, size_t e)
{
    size_t n = e < len && pii_in((unsigned char)t[e], " -\n")    ? 1
               : e + 1 < len && t[e] == '\r' && t[e + 1] == '\n' ? 2
                                                                 : 0;
    return n && e + n < len && pii_is_alnum((unsigned char)t[e + n]) ? n : 0;
}

/* An IBAN at s, compact or printed in groups of four; adds it (or its shape when the checksum
 * fails) and returns its end, or 0. */
static size_t find_iban(const char *t, size_t len, size_t s, pii_candidates *c)
{
    int want = iban_length(t + s);
    if (!want)
        return 0;
    char compact[IBAN_MAX + 1];
    size_t n = 0, e = s;
    bool grouped = iban_separator(t, len, s + 4) != 0;
    while (n < (size_t)want && e < len) {
        unsigned char ch = (unsigned char)t[e];
        size_t sep = grouped && n > 0 && n % 4 == 0 ? iban_separator(t, len, e) : 0;
        if (sep) {
            e += sep;
            continue;
        }
        if (!pii_is_alnum(ch))
            break;
        compact[n++] = (char)ch;
        e++;
    }
    if (n != (size_t)want || (e < len && pii_is_word((unsigned char)t[e])))
        return 0;
    if (iban_mod97(compact, n) == 1)
        ellm_pii_candidates_add(c, s, e, PII_IBAN);
    else
        ellm_pii_candidates_add_shape(c, s, e, PII_IBAN);
    return e;
}

static bool secret_body_char(unsigned char c) { return pii_is_alnum(c) || c == '_' || c == '-'; }

/* Well-known API key formats: prefix, then at least `min` body characters. */
static const struct {
    const char *prefix;
    unsigned char min;
    bool upper_alnum_only; /* AWS key ids: exactly 16 of [A-Z0-9] */
} key_prefixes[] = {
    {"sk-", 20, false},      {"sk_live_", 16, false}, {"sk_test_", 16, false},
    {"rk_live_", 16, false}, {"rk_test_", 16, false}, {"whsec_", 24, false},
    {"ghp_", 30, false},     {"gho_", 30, false},     {"ghu_", 30, false},
    {"ghs_", 30, false},     {"ghr_", 30, false},     {"github_pat_", 40, false},
    {"glpat-", 20, false},   {"xoxb-", 10, false},    {"xoxp-", 10, false},
    {"xoxa-", 10, false},    {"xoxs-", 10, false},    {"xapp-", 10, false},
    {"AKIA", 16, true},      {"ASIA", 16, true},      {"AIza", 35, false},
    {"hf_", 30, false},      {"npm_", 30, false},     {"pypi-", 32, false},
    {"dop_v1_", 40, false},  {"shpat_", 32, false},   {"shpss_", 32, false},
    {"SG.", 20, false},      {"eyJ", 10, false},
};

/* Whether a prefix of the table can start with these three bytes: almost every word is
 * turned away here, before the table is walked. */
static bool prefix_start(char a, char b, char c)
{
    switch (a) {
    case 's': return (b == 'k' && (c == '-' || c == '_')) || (b == 'h' && c == 'p');
    case 'r': return b == 'k' && c == '_';
    case 'w': return b == 'h' && c == 's';
    case 'g':
        return (b == 'h' && pii_in((unsigned char)c, "pousr")) || (b == 'i' && c == 't') ||
               (b == 'l' && c == 'p');
    case 'x': return (b == 'o' && c == 'x') || (b == 'a' && c == 'p');
    case 'A': return (b == 'K' || b == 'S') ? c == 'I' : b == 'I' && c == 'z';
    case 'h': return b == 'f' && c == '_';
    case 'n': return b == 'p' && c == 'm';
    case 'p': return b == 'y' && c == 'p';
    case 'd': return b == 'o' && c == 'p';
    case 'S': return b == 'G' && c == '.';
    case 'e': return b == 'y' && c == 'J';
    default: return false;
    }
}

/* A secret with a well-known prefix at s (a token of at least 3 bytes): returns its end, or 0. */
static size_t key_with_prefix(const char *t, size_t len, size_t s)
{
    if (!prefix_start(t[s], t[s + 1], t[s + 2]))
        return 0;
    for (size_t k = 0; k < sizeof key_prefixes / sizeof key_prefixes[0]; k++) {
        const char *p = key_prefixes[k].prefix;
        if (t[s] != p[0] || t[s + 1] != p[1])
            continue;
        size_t m = strlen(p);
        if (s + m > len || memcmp(t + s, p, m) != 0)
            continue;
        size_t e = s + m;
        if (key_prefixes[k].upper_alnum_only) {
            while (e < len && e - s - m < 16 &&
                   (pii_is_upper((unsigned char)t[e]) || pii_is_digit((unsigned char)t[e])))
                e++;
            if (e - s - m == 16 && (e == len || !pii_is_alnum((unsigned char)t[e])))
                return e;
            continue;
        }
        /* JWTs and SendGrid keys are dot-separated parts. */
        bool dotted = p[m - 1] == '.' || strcmp(p, "eyJ") == 0;
        size_t body = 0;
        while (e < len && (secret_body_char((unsigned char)t[e]) ||
                           (dotted && t[e] == '.' && e + 1 < len &&
                            secret_body_char((unsigned char)t[e + 1])))) {
            e++;
            body++;
        }
        if (body >= key_prefixes[k].min && (e == len || !pii_is_word((unsigned char)t[e])))
            return e;
    }
    return 0;
}

/* Random-looking: upper, lower and digits, no dots, not hexadecimal, and at least 4.2 bits of
 * entropy per character. Hex hashes, UUIDs, identifiers and paths fail one of these. */
static bool high_entropy(const char *s, size_t n)
{
    bool upper = false, lower = false, digit = false, non_hex = false;
    unsigned counts[128] = {0};
    for (size_t k = 0; k < n; k++) {
        unsigned char ch = (unsigned char)s[k];
        if (ch >= 128 || ch == '.')
            return false;
        upper |= pii_is_upper(ch);
        lower |= pii_is_lower(ch);
        digit |= pii_is_digit(ch);
        non_hex |= pii_is_alpha(ch) && !pii_is_hex(ch);
        counts[ch]++;
    }
    if (!upper || !lower || !digit || !non_hex)
        return false;
    double bits = 0;
    for (size_t k = 0; k < 128; k++)
        if (counts[k]) {
            double p = (double)counts[k] / (double)n;
            bits -= p * log2(p);
        }
    return bits >= 4.2;
}

static bool token_char(unsigned char c)
{
    return pii_is_alnum(c) || c == '_' || c == '-' || c == '.' || c == '+' || c == '/';
}

static bool word_is(const char *s, size_t n, const char *lower_word)
{
    for (size_t k = 0; k < n; k++)
        if (!lower_word[k])
            return false;
    if (lower_word[n])
        return false;
    for (size_t k = 0; k < n; k++)
        if (pii_lower((unsigned char)s[k]) != (unsigned char)lower_word[k])
            return false;
    return true;
}

static bool any_word(const char *s, size_t n, const char *const *words)
{
    for (size_t k = 0; words[k]; k++)
        if (words[k][0] == (char)pii_lower((unsigned char)s[0]) && word_is(s, n, words[k]))
            return true;
    return false;
}

/* Skips spaces, the punctuation between a label and its value, and filler words. */
static size_t skip_filler(const char *t, size_t len, size_t pos, const char *const *fillers)
{
    size_t limit = pos + 32 < len ? pos + 32 : len;
    for (;;) {
        while (pos < limit && pii_in((unsigned char)t[pos], " \t:=,-\"'"))
            pos++;
        size_t w = pos;
        while (w < limit && pii_is_alpha((unsigned char)t[w]))
            w++;
        if (w > pos && w < limit && !pii_is_alnum((unsigned char)t[w]) &&
            any_word(t + pos, w - pos, fillers)) {
            pos = w;
            continue;
        }
        return pos;
    }
}

static const char *const months[] = {"january",  "february", "march",  "april",     "may",
                                     "june",     "july",     "august", "september", "october",
                                     "november", "december", NULL};

/* A month name or its three-letter abbreviation ("Sept" too) at pos: 1-12 and *end, or 0. */
static int month_at(const char *t, size_t len, size_t pos, size_t *end)
{
    size_t w = pos;
    while (w < len && pii_is_alpha((unsigned char)t[w]))
        w++;
    size_t n = w - pos;
    for (int m = 0; months[m]; m++) {
        if (word_is(t + pos, n, months[m]) ||
            (n == 3 &&
             word_is(t + pos, 3, (char[]){months[m][0], months[m][1], months[m][2], 0})) ||
            (m == 8 && word_is(t + pos, n, "sept"))) {
            if (w < len && t[w] == '.')
                w++;
            *end = w;
            return m + 1;
        }
    }
    return 0;
}

/* Digits at pos (1..max of them): value, or -1; *end after them. */
static int number_at(const char *t, size_t len, size_t pos, int max_digits, size_t *end)
{
    int v = 0, n = 0;
    while (pos < len && pii_is_digit((unsigned char)t[pos])) {
        if (++n > max_digits)
            return -1;
        v = v * 10 + (t[pos++] - '0');
    }
    *end = pos;
    return n ? v : -1;
}

static bool day_ok(int d, int m) { return m >= 1 && m <= 12 && d >= 1 && d <= (m == 2 ? 29 : 31); }
static bool year_ok(int y, size_t digits) { return digits == 2 || (y >= 1900 && y <= 2099); }

/* A date at pos (numeric Y-M-D, D/M/Y, M/D/Y with / - or .; "12 March 1985", "March 12, 1985",
 * "12th of March 1985"): its end, or 0. */
static size_t date_at(const char *t, size_t len, size_t pos)
{
    size_t e;
    int a = number_at(t, len, pos, 4, &e);
    if (a >= 0) {
        size_t a_digits = e - pos;
        if (e + 1 < len && pii_in((unsigned char)t[e], "/-.") &&
            pii_is_digit((unsigned char)t[e + 1])) {
            char sep = t[e];
            size_t e2, e3;
            int b = number_at(t, len, e + 1, 2, &e2);
            if (b < 0 || e2 + 1 >= len || t[e2] != sep)
                return 0;
            int y = number_at(t, len, e2 + 1, 4, &e3);
            size_t y_digits = e3 - e2 - 1;
            if (y < 0)
                return 0;
            bool ok = a_digits == 4 ? a >= 1900 && a <= 2099 && y_digits <= 2 && day_ok(y, b)
                                    : a_digits <= 2 && (y_digits == 4 || y_digits == 2) &&
                                          year_ok(y, y_digits) && (day_ok(a, b) || day_ok(b, a));
            return ok && (e3 == len || !pii_is_alnum((unsigned char)t[e3])) ? e3 : 0;
        }
        /* "12 March 1985", "12th of March, 1985" */
        if (a_digits > 2)
            return 0;
        size_t p = e;
        if (p + 2 <= len && (word_is(t + p, 2, "st") || word_is(t + p, 2, "nd") ||
                             word_is(t + p, 2, "rd") || word_is(t + p, 2, "th")))
            p += 2;
        while (p < len && t[p] == ' ')
            p++;
        if (p + 3 <= len && word_is(t + p, 2, "of") && t[p + 2] == ' ')
            p += 3;
        size_t me;
        int m = month_at(t, len, p, &me);
        if (!m || !day_ok(a, m))
            return 0;
        p = me;
        if (p < len && t[p] == ',')
            p++;
        while (p < len && t[p] == ' ')
            p++;
        int y = number_at(t, len, p, 4, &e);
        return y >= 0 && e - p == 4 && year_ok(y, 4) &&
                       (e == len || !pii_is_alnum((unsigned char)t[e]))
                   ? e
                   : 0;
    }
    /* "March 12, 1985", "Mar 12th 1985" */
    size_t me;
    int m = month_at(t, len, pos, &me);
    if (!m)
        return 0;
    size_t p = me;
    while (p < len && t[p] == ' ')
        p++;
    int d = number_at(t, len, p, 2, &e);
    if (d < 0 || !day_ok(d, m))
        return 0;
    p = e;
    if (p + 2 <= len && (word_is(t + p, 2, "st") || word_is(t + p, 2, "nd") ||
                         word_is(t + p, 2, "rd") || word_is(t + p, 2, "th")))
        p += 2;
    if (p < len && t[p] == ',')
        p++;
    while (p < len && t[p] == ' ')
        p++;
    int y = number_at(t, len, p, 4, &e);
    return y >= 0 && e - p == 4 && year_ok(y, 4) && (e == len || !pii_is_alnum((unsigned char)t[e]))
               ? e
               : 0;
}

typedef enum label_kind { LABEL_SECRET = 1, LABEL_PASSWORD, LABEL_DOB, LABEL_AUTH } label_kind;

typedef struct label {
    const char *word; /* lower case */
    unsigned char len;
    unsigned char kind;
} label;
#define LABEL(w, k)                                                                                \
    {                                                                                              \
        w, sizeof w - 1, k                                                                         \
    }

/* A secret follows ':' or '=' after these; the password family also takes " is ". A date of
 * birth follows the DOB labels after filler words ("Date of birth is", "born on the"). The
 * credentials of an Authorization header follow its scheme after a space. Sorted by first
 * letter: label_of looks only at the labels with the word's first letter. */
static const label whole_labels[] = {
    LABEL("api_key", LABEL_SECRET),  LABEL("apikey", LABEL_SECRET),
    LABEL("api-key", LABEL_SECRET),  LABEL("birth", LABEL_DOB),
    LABEL("birthdate", LABEL_DOB),   LABEL("birthday", LABEL_DOB),
    LABEL("born", LABEL_DOB),        LABEL("bearer", LABEL_AUTH),
    LABEL("basic", LABEL_AUTH),      LABEL("dob", LABEL_DOB),
    LABEL("d.o.b", LABEL_DOB),       LABEL("geburtsdatum", LABEL_DOB),
    LABEL("geboren", LABEL_DOB),     LABEL("naissance", LABEL_DOB),
    LABEL("nacimiento", LABEL_DOB),  LABEL("password", LABEL_PASSWORD),
    LABEL("passwd", LABEL_PASSWORD), LABEL("passcode", LABEL_PASSWORD),
    LABEL("pwd", LABEL_PASSWORD),    LABEL("pass", LABEL_PASSWORD),
    LABEL("pin", LABEL_SECRET),      LABEL("secret", LABEL_SECRET),
    LABEL("token", LABEL_SECRET),
};
/* Key names ending like these: "DB_PASSWORD", "aws_secret_access_key", "github-token". */
static const label suffix_labels[] = {
    LABEL("password", LABEL_PASSWORD),  LABEL("passwd", LABEL_SECRET),
    LABEL("secret", LABEL_SECRET),      LABEL("_token", LABEL_SECRET),
    LABEL("-token", LABEL_SECRET),      LABEL("api_key", LABEL_SECRET),
    LABEL("apikey", LABEL_SECRET),      LABEL("api-key", LABEL_SECRET),
    LABEL("access_key", LABEL_SECRET),  LABEL("secret_key", LABEL_SECRET),
    LABEL("private_key", LABEL_SECRET),
};

static label_kind label_of(const char *s, size_t n)
{
    unsigned char first = pii_lower((unsigned char)s[0]), last = pii_lower((unsigned char)s[n - 1]);
    const size_t n_whole = sizeof whole_labels / sizeof whole_labels[0];
    size_t lo = 0, hi = n_whole; /* the first label not before `first` */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if ((unsigned char)whole_labels[mid].word[0] < first)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t k = lo; k < n_whole && (unsigned char)whole_labels[k].word[0] == first; k++) {
        const label *l = &whole_labels[k];
        if (l->len == n && word_is(s, n, l->word))
            return (label_kind)l->kind;
    }
    if (n <= 6 || !pii_in(last, "dtny"))
        return 0;
    for (size_t k = 0; k < sizeof suffix_labels / sizeof suffix_labels[0]; k++) {
        const label *l = &suffix_labels[k];
        if (n > l->len && (unsigned char)l->word[l->len - 1] == last &&
            word_is(s + n - l->len, l->len, l->word))
            return (label_kind)l->kind;
    }
    return 0;
}

static const char *const dob_fillers[] = {"date", "is", "was", "on", "the",
                                          "am",   "le", "of",  "in", NULL};

static bool placeholder_value(const char *s, size_t n)
{
    static const char *const words[] = {"null",     "none",     "true",   "false",
                                        "required", "redacted", "hidden", "changeme",
                                        "optional", "string",   NULL};
    if (pii_in((unsigned char)s[0], "$<{"))
        return true;
    bool stars = true;
    for (size_t k = 0; k < n; k++)
        stars &= s[k] == '*' || s[k] == 'x' || s[k] == 'X' || s[k] == '.';
    return stars || any_word(s, n, words);
}

/* The credentials of an HTTP Authorization header ("Bearer ya29.a0Af...", "Basic dXNlcjpw"):
 * after the scheme and a space, a token68 (RFC 7235) with a letter and a digit, so that "the
 * bearer of this letter" and "Basic authentication" stay. Adds it, returns its end or 0. */
static size_t auth_credentials(const char *t, size_t len, size_t pos, pii_candidates *c)
{
    if (pos >= len || t[pos] != ' ')
        return 0;
    size_t p = pos + 1, e = p;
    bool letter = false, digit = false;
    while (e < len && e - p < LABEL_VALUE_MAX &&
           (pii_is_alnum((unsigned char)t[e]) || pii_in((unsigned char)t[e], "-._~+/"))) {
        letter |= pii_is_alpha((unsigned char)t[e]);
        digit |= pii_is_digit((unsigned char)t[e]);
        e++;
    }
    while (e < len && e - p < LABEL_VALUE_MAX && t[e] == '=')
        e++;
    if (e - p < 12 || !letter || !digit || (e < len && pii_is_word((unsigned char)t[e])))
        return 0;
    ellm_pii_candidates_add(c, p, e, PII_SECRET);
    return e;
}

/* The value after a secret label at pos ("password: hunter22"): adds it, returns its end or 0. */
static size_t labelled_secret(const char *t, size_t len, size_t pos, label_kind kind,
                              pii_candidates *c)
{
    size_t p = pos;
    while (p < len && (t[p] == '"' || t[p] == '\''))
        p++;
    while (p < len && t[p] == ' ')
        p++;
    if (p < len && (t[p] == ':' || t[p] == '=')) {
        p++;
        if (p < len && (t[p] == '=' || t[p] == '>'))
            p++;
    } else if (kind == LABEL_PASSWORD && p + 3 <= len && word_is(t + p, 2, "is") &&
               t[p + 2] == ' ') {
        p += 3;
    } else {
        return 0;
    }
    while (p < len && t[p] == ' ')
        p++;
    char quote = p < len && (t[p] == '"' || t[p] == '\'') ? t[p] : 0;
    if (quote)
        p++;
    size_t e = p;
    while (e < len && e - p < LABEL_VALUE_MAX && (unsigned char)t[e] > ' ' && t[e] != quote &&
           (quote || !pii_in((unsigned char)t[e], "\"',;")))
        e++;
    while (e > p && pii_in((unsigned char)t[e - 1], ".)"))
        e--;
    if (e - p < 4 || e - p >= LABEL_VALUE_MAX || placeholder_value(t + p, e - p))
        return 0;
    ellm_pii_candidates_add(c, p, e, PII_SECRET);
    return e;
}

void ellm_pii_find_words(const char *text, size_t len, pii_candidates *c)
{
    size_t i = 0;
    while (i < len) {
        unsigned char ch = (unsigned char)text[i];
        if (!pii_is_alnum(ch) || (i > 0 && (pii_is_word((unsigned char)text[i - 1]) ||
                                            token_char((unsigned char)text[i - 1])))) {
            i++;
            continue;
        }
        size_t e = i + 1;
        while (e < len && token_char((unsigned char)text[e]))
            e++;
        size_t word_end = e;
        while (word_end > i && pii_in((unsigned char)text[word_end - 1], ".-+/"))
            word_end--;
        size_t n = word_end - i;
        const char *w = text + i;
        size_t done = 0;
        if (n >= 4 && pii_is_digit((unsigned char)w[2]) && pii_is_digit((unsigned char)w[3]) &&
            pii_is_alpha(ch) && pii_is_alpha((unsigned char)w[1]))
            done = find_iban(text, len, i, c);
        if (!done && n >= 3 && (done = key_with_prefix(text, len, i)) != 0)
            ellm_pii_candidates_add(c, i, done, PII_SECRET);
        if (!done && n >= ENTROPY_MIN_LEN) {
            size_t pad = word_end;
            while (pad < len && pad - word_end < 2 && text[pad] == '=')
                pad++;
            if (high_entropy(w, n)) {
                ellm_pii_candidates_add(c, i, pad, PII_SECRET);
                done = pad;
            }
        }
        /* Every label starts with one of these letters or ends like a key name: most words
         * are turned away without a comparison. */
        unsigned char first = pii_lower(ch), last = pii_lower((unsigned char)w[n - 1]);
        label_kind kind = 0;
        if (!done && n >= 3 && n <= 32 &&
            (pii_in(first, "ptsdbgn") || (n > 6 && pii_in(last, "dtny")) ||
             (first == 'a' && (n == 6 || n == 7))))
            kind = label_of(w, n);
        if (kind == LABEL_SECRET || kind == LABEL_PASSWORD) {
            done = labelled_secret(text, len, word_end, kind, c);
        } else if (kind == LABEL_AUTH) {
            done = auth_credentials(text, len, word_end, c);
        } else if (kind == LABEL_DOB) {
            size_t p = skip_filler(text, len, e, dob_fillers);
            size_t d = p < len ? date_at(text, len, p) : 0;
            if (d) {
                ellm_pii_candidates_add(c, p, d, PII_DOB);
                done = d;
            }
        }
        i = done > e ? done : e;
    }
}
