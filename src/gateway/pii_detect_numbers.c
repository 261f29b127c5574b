/* Cards, phone numbers, US SSNs and IPv4 addresses. All are digit groups joined by single
 * separators, so one scanner splits each run of digits, separators and parentheses into groups
 * and tries windows of whole space-separated pieces, longest first: "Qty 2 4111 1111 1111 1111"
 * still yields the card. A run glued to a word, or led by '#', '.', '-', '/' or '$', is an
 * identifier or an amount and is skipped. */
#define _GNU_SOURCE /* memmem */
#include <stdlib.h>
#include <string.h>

#include "gateway/pii_internal.h"

enum { WINDOW_GROUPS = 8, GROUP_DIGITS_MAX = 19 };

typedef struct digit_group {
    size_t start, end; /* the digits */
    size_t span_start; /* including '(' or a leading '+' */
    size_t span_end;   /* including ')' */
    char sep;          /* separator before the group: 0 at the run start or after ')';
                        * '\n' for a line break ("\r\n" too) */
    bool paren;
} digit_group;

bool ellm_pii_luhn_valid(const char *digits, size_t n)
{
    int sum = 0;
    for (size_t k = 0; k < n; k++) {
        int d = digits[n - 1 - k] - '0';
        if (k & 1) {
            d *= 2;
            if (d > 9)
                d -= 9;
        }
        sum += d;
    }
    return n > 0 && sum % 10 == 0;
}

bool ellm_pii_label_before(const char *text, size_t pos, size_t window, const char *const *words)
{
    size_t from = pos > window ? pos - window : 0;
    for (size_t k = from; k < pos; k++) {
        if (k > 0 && pii_is_alpha((unsigned char)text[k - 1]))
            continue;
        for (size_t w = 0; words[w]; w++) {
            size_t m = strlen(words[w]), j = 0;
            if (k + m > pos)
                continue;
            while (j < m && pii_lower((unsigned char)text[k + j]) == (unsigned char)words[w][j])
                j++;
            if (j == m && (k + m == pos || !pii_is_alpha((unsigned char)text[k + m])))
                return true;
        }
    }
    return false;
}

typedef struct window {
    const pii_folded *fold;
    const char *text; /* fold->text */
    const digit_group *g;
    size_t n;  /* groups */
    bool plus; /* led by '+' */
    char digits[GROUP_DIGITS_MAX + 1];
    size_t n_digits;
    bool has_paren, seps_space, seps_dash, seps_dot, seps_none;
    size_t line_breaks;
} window;

/* Fills the summary of groups g[0, n); false when it has too many digits for any detector. */
static bool window_init(window *w, const pii_folded *fold, const digit_group *g, size_t n,
                        bool plus)
{
    memset(w, 0, sizeof *w);
    w->fold = fold;
    w->text = fold->text;
    const char *text = fold->text;
    w->g = g;
    w->n = n;
    w->plus = plus;
    for (size_t k = 0; k < n; k++) {
        size_t d = g[k].end - g[k].start;
        if (w->n_digits + d > GROUP_DIGITS_MAX)
            return false;
        memcpy(w->digits + w->n_digits, text + g[k].start, d);
        w->n_digits += d;
        w->has_paren |= g[k].paren;
        if (k > 0) {
            w->seps_space |= g[k].sep == ' ';
            w->seps_dash |= g[k].sep == '-';
            w->seps_dot |= g[k].sep == '.';
            w->seps_none |= g[k].sep == 0;
            w->line_breaks += g[k].sep == '\n';
        }
    }
    return true;
}

static size_t group_len(const window *w, size_t k) { return w->g[k].end - w->g[k].start; }

/* Groups of four (the last 1-4) or Amex's 4-6-5. Spaces and dashes may mix ("4111 1111-1111
 * 1111" is what people type) and dots separate 4-4-4-4; one line break may stand for a space
 * where a mail client wrapped the number, but a column of numbers is not a card. */
static bool card_grouping(const window *w)
{
    if (w->n == 1)
        return true;
    if (w->has_paren || w->plus || w->seps_none || w->line_breaks > 1 ||
        (w->line_breaks && !w->seps_space && !w->seps_dash))
        return false;
    if (w->seps_dot && (w->seps_space || w->seps_dash || w->n_digits != 16))
        return false;
    if (w->n == 3 && group_len(w, 0) == 4 && group_len(w, 1) == 6 &&
        (group_len(w, 2) == 4 || group_len(w, 2) == 5))
        return true;
    for (size_t k = 0; k + 1 < w->n; k++)
        if (group_len(w, k) != 4)
            return false;
    return group_len(w, w->n - 1) >= 1 && group_len(w, w->n - 1) <= 4;
}

/* Issuer prefixes in use: 2 (Mastercard 2221-2720), 3 (Amex, Diners, JCB), 4 (Visa),
 * 5 (Mastercard, Maestro), 6 (Discover, UnionPay, Maestro). */
static bool card_number(const window *w)
{
    if (w->n_digits < 13 || w->n_digits > 19 || !card_grouping(w))
        return false;
    char first = w->digits[0];
    if (first < '2' || first > '6')
        return false;
    if (first == '2') {
        int prefix = atoi((char[]){w->digits[0], w->digits[1], w->digits[2], w->digits[3], 0});
        if (prefix < 2221 || prefix > 2720)
            return false;
    }
    return ellm_pii_luhn_valid(w->digits, w->n_digits);
}

static const char *const ssn_labels[] = {
    "ssn", "ss#", "social security", "social security number", "social security no", NULL};

typedef enum verdict { NOT_IT, IS_IT, SHAPE_ONLY } verdict;

/* Area 001-899 except 666, group 01-99, serial 0001-9999 (SSA rules since 2011). */
static verdict ssn(const window *w, size_t start)
{
    bool grouped = w->n == 3 && group_len(w, 0) == 3 && group_len(w, 1) == 2 &&
                   group_len(w, 2) == 4 && !w->has_paren && !w->plus && !w->seps_dot &&
                   !w->seps_none && !w->line_breaks && !(w->seps_space && w->seps_dash);
    bool labelled = w->n == 1 && w->n_digits == 9 && !w->plus &&
                    ellm_pii_label_before(w->text, start, 32, ssn_labels);
    if (!grouped && !labelled)
        return NOT_IT;
    const char *d = w->digits;
    int area = (d[0] - '0') * 100 + (d[1] - '0') * 10 + (d[2] - '0');
    bool ok = area != 0 && area != 666 && area < 900 && !(d[3] == '0' && d[4] == '0') &&
              memcmp(d + 5, "0000", 4) != 0;
    return ok ? IS_IT : SHAPE_ONLY;
}

/* Lower case, as UTF-8 bytes: "tel\303\251fono" is teléfono; the Cyrillic "тел", "Тел", "моб",
 * "Моб" and the Arabic "هاتف", "جوال" are not folded, so they are matched here too. */
static const char *const phone_labels[] = {"phone",
                                           "tel",
                                           "telephone",
                                           "call",
                                           "mobile",
                                           "cell",
                                           "fax",
                                           "whatsapp",
                                           "sms",
                                           "text me",
                                           "ring",
                                           "contact",
                                           "reach me",
                                           "mob",
                                           "handy",
                                           "telefon",
                                           "telefono",
                                           "tel\303\251fono",
                                           "telefone",
                                           "celular",
                                           "cellulare",
                                           "m\303\263vil",
                                           "movil",
                                           "portable",
                                           "t\303\251l",
                                           "mobil",
                                           "t\303\251l\303\251phone",
                                           "cellphone",
                                           "cell phone",
                                           "\321\202\320\265\320\273",
                                           "\320\242\320\265\320\273",
                                           "\320\274\320\276\320\261",
                                           "\320\234\320\276\320\261",
                                           "\331\207\330\247\330\252\331\201",
                                           "\330\254\331\210\330\247\331\204",
                                           NULL};

/* Labels in scripts the fold turns into spaces, looked for in the original text: 電話, 电话,
 * 携帯, 手机, 手機 (Japanese and Chinese), 전화, 휴대폰, 연락처 (Korean). */
static const char *const folded_phone_labels[] = {"\351\233\273\350\251\261",
                                                  "\347\224\265\350\257\235",
                                                  "\346\220\272\345\270\257",
                                                  "\346\211\213\346\234\272",
                                                  "\346\211\213\346\251\237",
                                                  "\354\240\204\355\231\224",
                                                  "\355\234\264\353\214\200\355\217\260",
                                                  "\354\227\260\353\235\275\354\262\230",
                                                  NULL};

/* Whether a phone label precedes the folded offset start: in the `reach` bytes of the folded
 * text before it, or, for the labels the fold removed, in the original bytes before it (reach
 * and a half: CJK characters take three bytes where the folded text has one). */
static bool phone_label_before(const window *w, size_t start, size_t reach)
{
    if (ellm_pii_label_before(w->fold->text, start, reach, phone_labels))
        return true;
    if (!w->fold->owned)
        return false;
    size_t o = ellm_pii_fold_start(w->fold, start), original_reach = reach + reach / 2;
    size_t from = o > original_reach ? o - original_reach : 0;
    for (size_t k = 0; folded_phone_labels[k]; k++)
        if (memmem(w->fold->original + from, o - from, folded_phone_labels[k],
                   strlen(folded_phone_labels[k])))
            return true;
    return false;
}

static bool nanp(const char *d, size_t n)
{
    if (n == 11 && d[0] == '1')
        d++, n--;
    return n == 10 && d[0] >= '2' && d[3] >= '2';
}

/* Formats of countries with many users that neither the North American nor the trunk-0 rule
 * covers: Chinese mobiles 1[3-9]X XXXX XXXX, Brazil's (AA) [9]XXXX-XXXX, Russia's trunk 8
 * 8 (9XX) XXX-XX-XX. */
static bool national_without_trunk_0(const window *w)
{
    const char *d = w->digits;
    size_t n = w->n_digits;
    if (w->n == 3 && n == 11 && d[0] == '1' && d[1] >= '3' && group_len(w, 0) == 3 &&
        group_len(w, 1) == 4 && !w->has_paren && !w->seps_dot && !w->seps_none &&
        !(w->seps_space && w->seps_dash))
        return true;
    if (w->n == 3 && w->g[0].paren && group_len(w, 0) == 2 && d[0] != '0' &&
        (group_len(w, 1) == 4 || group_len(w, 1) == 5) && group_len(w, 2) == 4)
        return true;
    if (n == 11 && d[0] == '8' && group_len(w, 0) == 1 && w->n >= 4 && group_len(w, 1) == 3 &&
        !w->seps_dot) {
        for (size_t k = 2; k < w->n; k++)
            if (group_len(w, k) < 2 || group_len(w, k) > 3)
                return false;
        return true;
    }
    return false;
}

static bool phone(const window *w, size_t start)
{
    size_t n = w->n_digits;
    const char *d = w->digits;
    if ((w->n > 1 && group_len(w, w->n - 1) < 2) || w->line_breaks)
        return false;
    if (w->plus)
        return n >= 8 && n <= 15 && d[0] != '0';
    if (w->n >= 2 && d[0] == '0' && d[1] == '0' && group_len(w, 0) <= 4)
        return n >= 10 && n <= 17 && d[2] != '0';
    if (w->n == 1) /* Chinese mobiles 1[3-9]XXXXXXXXX too */
        return (nanp(d, n) || (n >= 10 && n <= 11 && d[0] == '0' && d[1] != '0') ||
                (n == 11 && d[0] == '1' && d[1] >= '3')) &&
               phone_label_before(w, start, 32);
    if (w->seps_none && !w->has_paren)
        return false;
    if (national_without_trunk_0(w))
        return true;
    /* North American: (1) NXX NXX XXXX. */
    size_t lead = w->n == 4 && group_len(w, 0) == 1 && d[0] == '1' ? 1 : 0;
    if (w->n - lead == 3 && group_len(w, lead) == 3 && group_len(w, lead + 1) == 3 &&
        group_len(w, lead + 2) == 4 && nanp(d, n))
        return true;
    /* Trunk prefix 0 (most of Europe, UK, Australia, ...): 0AB... in 2-5, then 2-8 digit groups;
     * German mobiles have 12 digits. */
    bool trunk = d[0] == '0' && d[1] != '0' && n >= 10 && n <= 12 && group_len(w, 0) >= 2 &&
                 group_len(w, 0) <= 5;
    for (size_t k = 1; k < w->n && trunk; k++)
        trunk = group_len(w, k) >= 2 && group_len(w, k) <= 8;
    if (trunk)
        return true;
    /* Right after a label any grouping of a plausible length is a number to call: the 9-digit
     * mobiles of Spain or Poland, India's 5-5 ("Mobile: 98765 43210"). ISO dates ("2024-01-15
     * 10") are not, nor the numbers of a sentence that only began with "call" or "contact". */
    return n >= 8 && n <= 15 && !w->seps_dot && !(group_len(w, 0) == 4 && w->seps_dash) &&
           phone_label_before(w, start, 16);
}

static const char *const version_labels[] = {"version",  "ver", "release", "build",
                                             "firmware", "v",   NULL};

/* Tries the window of groups g[0, n); adds a candidate and returns true when it is one. */
static bool classify(const pii_folded *fold, const digit_group *g, size_t n, bool plus,
                     pii_candidates *c)
{
    const char *text = fold->text;
    size_t start = g[0].span_start, end = g[n - 1].span_end;
    if (n == 4 && !plus) {
        bool dots = true;
        for (size_t k = 1; k < n; k++)
            dots &= g[k].sep == '.' && !g[k].paren;
        if (dots && !g[0].paren && ellm_pii_ipv4_valid(text + start, end - start)) {
            if (ellm_pii_label_before(text, start, 12, version_labels))
                ellm_pii_candidates_add_shape(c, start, end, PII_IP_ADDRESS);
            else
                ellm_pii_candidates_add(c, start, end, PII_IP_ADDRESS);
            return true;
        }
    }
    window w;
    if (!window_init(&w, fold, g, n, plus))
        return false;
    if (card_number(&w)) {
        ellm_pii_candidates_add(c, start, end, PII_CARD);
        return true;
    }
    /* A card-shaped number that fails the checksum is a typo or a test number, not a phone
     * number with its first group cut off. */
    if (w.n > 1 && w.n_digits >= 13 && card_grouping(&w)) {
        ellm_pii_candidates_add_shape(c, start, end, PII_CARD);
        return true;
    }
    verdict v = ssn(&w, start);
    if (v != NOT_IT) {
        if (v == IS_IT)
            ellm_pii_candidates_add(c, start, end, PII_SSN);
        else
            ellm_pii_candidates_add_shape(c, start, end, PII_SSN);
        return true;
    }
    if (phone(&w, start)) {
        ellm_pii_candidates_add(c, start, end, PII_PHONE);
        return true;
    }
    return false;
}

/* A line break ("\n" or "\r\n") at pos between a group of four and the 1-4 digits that end a
 * wrapped card number: its length, or 0. Other line breaks end the run, so that the numbers of
 * consecutive log lines are not read as one. */
static size_t wrapped_group(const char *t, size_t len, size_t pos)
{
    size_t n = pos < len && t[pos] == '\n'                             ? 1
               : pos + 1 < len && t[pos] == '\r' && t[pos + 1] == '\n' ? 2
                                                                       : 0;
    size_t d = pos + n;
    while (n && d < len && d - pos - n < 5 && pii_is_digit((unsigned char)t[d]))
        d++;
    size_t digits = d - pos - n;
    return n && digits >= 1 && digits <= 4 && (d == len || !pii_is_digit((unsigned char)t[d])) ? n
                                                                                               : 0;
}

/* Reads the run starting at pos into *groups; returns the number of groups (0 if none). */
static size_t read_run(const char *t, size_t len, size_t pos, digit_group **groups, size_t *cap,
                       bool *oom)
{
    size_t n = 0;
    char sep = 0;
    for (;;) {
        size_t span_start = pos;
        bool paren = false;
        if (pos < len && t[pos] == '(') {
            paren = true;
            pos++;
        }
        if (pos >= len || !pii_is_digit((unsigned char)t[pos]))
            break;
        size_t gs = pos;
        while (pos < len && pii_is_digit((unsigned char)t[pos]))
            pos++;
        size_t ge = pos;
        if (paren) {
            if (pos >= len || t[pos] != ')')
                break;
            pos++;
        }
        if (n == *cap) {
            size_t new_cap = *cap ? *cap * 2 : 16;
            digit_group *bigger = realloc(*groups, new_cap * sizeof *bigger);
            if (!bigger) {
                *oom = true;
                return n;
            }
            *groups = bigger;
            *cap = new_cap;
        }
        (*groups)[n++] = (digit_group){gs, ge, span_start, pos, sep, paren};
        size_t sep_len = pos < len && pii_in((unsigned char)t[pos], " -.") ? 1
                         : ge - gs == 4 ? wrapped_group(t, len, pos)
                                        : 0;
        if (sep_len && pos + sep_len < len &&
            (pii_is_digit((unsigned char)t[pos + sep_len]) || t[pos + sep_len] == '(')) {
            sep = t[pos + sep_len - 1];
            pos += sep_len;
        } else if (paren && pos < len && pii_is_digit((unsigned char)t[pos])) {
            sep = 0;
        } else {
            break;
        }
    }
    return n;
}

void ellm_pii_find_numbers(const pii_folded *fold, pii_candidates *c)
{
    const char *text = fold->text;
    size_t len = fold->len;
    digit_group *groups = NULL;
    size_t cap = 0;
    size_t i = 0;
    while (i < len) {
        unsigned char ch = (unsigned char)text[i];
        bool lead = pii_is_digit(ch) || ((ch == '+' || ch == '(') && i + 1 < len &&
                                         pii_is_digit((unsigned char)text[i + 1]));
        if (!lead) {
            i++;
            continue;
        }
        unsigned char prev = i > 0 ? (unsigned char)text[i - 1] : ' ';
        bool plus = ch == '+';
        size_t n = read_run(text, len, plus ? i + 1 : i, &groups, &cap, &c->out_of_memory);
        if (n == 0) {
            i++;
            continue;
        }
        if (plus)
            groups[0].span_start = i;
        size_t run_end = groups[n - 1].span_end;
        /* After '/' only as a URL's host: http://10.0.0.1/ */
        bool url_host = prev == '/' && i >= 2 && text[i - 2] == '/';
        bool left_ok = !pii_is_word(prev) && (url_host || !pii_in(prev, "#.-/$+"));
        bool right_ok = run_end >= len || !pii_is_word((unsigned char)text[run_end]);
        for (size_t k = 0; k < n;) {
            bool start_ok = k == 0 ? left_ok : groups[k].sep == ' ' || groups[k].sep == '\n';
            bool found = false;
            if (start_ok) {
                size_t last = k + WINDOW_GROUPS - 1 < n - 1 ? k + WINDOW_GROUPS - 1 : n - 1;
                for (size_t m = last + 1; m-- > k && !found;) {
                    bool end_ok = m == n - 1
                                      ? right_ok
                                      : groups[m + 1].sep == ' ' || groups[m + 1].sep == '\n';
                    if (end_ok && classify(fold, groups + k, m - k + 1, plus && k == 0, c)) {
                        found = true;
                        k = m + 1;
                    }
                }
            }
            if (!found)
                k++;
        }
        i = run_end;
        while (i < len && pii_is_word((unsigned char)text[i]))
            i++;
    }
    free(groups);
}
