/* GBNF text -> compiled grammar. Groups and repetitions become synthesised rules, so the matcher
 * only ever sees character classes, rule references and alternative ends. The checks that make a
 * grammar usable (every rule defined, no left recursion, the root can be completed) run here, once,
 * so that a bad grammar is refused before any decoding. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hex.h"
#include "core/status.h"
#include "grammar/grammar.h"

#define MAX_CODEPOINT 0x10FFFFu

typedef struct ivec {
    int32_t *v;
    int32_t n, cap;
} ivec;

typedef struct brule {
    char *name;
    size_t name_len;
    int line;    /* where it was defined, 0 while only referenced */
    int used_at; /* first line referring to it */
    ivec *alts;
    int32_t n_alts, cap_alts;
} brule;

typedef struct parser {
    const char *p, *end;
    int line;
    brule *rules;
    int32_t n_rules, cap_rules;
    ellm_char_class *classes;
    int32_t n_classes, cap_classes;
    ellm_cp_range *ranges;
    int32_t n_ranges, cap_ranges;
    int32_t *class_hash; /* open addressing: class index + 1, 0 empty */
    int32_t class_hash_cap;
    int32_t *rule_hash; /* rule names, the same way: rule index + 1, 0 empty */
    int32_t rule_hash_cap;
    int64_t n_elements;
    int depth;
    edgellm_status failed;
} parser;

static edgellm_status fail_at(parser *P, const char *what)
{
    if (!P->failed)
        P->failed = ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "grammar line %d: %s", P->line, what);
    return P->failed;
}

int ellm_grammar_grow(void **v, int32_t *cap, int64_t need, size_t elem)
{
    if (need <= *cap)
        return 1;
    if (need > INT32_MAX / 2)
        return 0;
    int32_t c = *cap ? *cap : 8;
    while (c < need)
        c *= 2;
    void *n = realloc(*v, (size_t)c * elem);
    if (!n)
        return 0;
    *v = n;
    *cap = c;
    return 1;
}

static int ivec_push(parser *P, ivec *v, int32_t x)
{
    if (!ellm_grammar_grow((void **)&v->v, &v->cap, v->n + 1, sizeof *v->v)) {
        fail_at(P, "out of memory");
        return 0;
    }
    v->v[v->n++] = x;
    if (++P->n_elements > ELLM_GRAMMAR_MAX_ELEMENTS) {
        fail_at(P, "the grammar is too large once repetitions are expanded (more than 1M "
                   "elements); use smaller {m,n} bounds");
        return 0;
    }
    return 1;
}

/* Every reference looks its rule up: searching the rules in turn made a grammar of many rules
 * quadratic to compile (1 MiB of 48,000 chained rules took about 18 s). */
static uint32_t hash_name(const char *name, size_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)name[i]) * 16777619u;
    return h;
}

/* The slot of the rule called name, or the empty slot where it would go. */
static int32_t *rule_slot(const parser *P, const char *name, size_t len)
{
    uint32_t mask = (uint32_t)P->rule_hash_cap - 1;
    for (uint32_t j = hash_name(name, len) & mask;; j = (j + 1) & mask) {
        int32_t r = P->rule_hash[j] - 1;
        if (r < 0 || (P->rules[r].name_len == len && memcmp(P->rules[r].name, name, len) == 0))
            return &P->rule_hash[j];
    }
}

static int32_t find_rule(const parser *P, const char *name, size_t len)
{
    return P->rule_hash_cap ? *rule_slot(P, name, len) - 1 : -1;
}

/* Indexes rule r by name unless an earlier rule has that name: the first one is found, as the
 * search in turn found it. The table is kept at most half full. */
static int index_rule(parser *P, int32_t r)
{
    if (P->rule_hash_cap < 2 * (r + 1)) {
        int32_t cap = P->rule_hash_cap ? P->rule_hash_cap * 2 : 64;
        int32_t *table = calloc((size_t)cap, sizeof *table);
        if (!table)
            return 0;
        free(P->rule_hash);
        P->rule_hash = table;
        P->rule_hash_cap = cap;
        for (int32_t i = 0; i < r; i++)
            index_rule(P, i);
    }
    int32_t *slot = rule_slot(P, P->rules[r].name, P->rules[r].name_len);
    if (!*slot)
        *slot = r + 1;
    return 1;
}

static int32_t add_rule(parser *P, const char *name, size_t len)
{
    if (!ellm_grammar_grow((void **)&P->rules, &P->cap_rules, P->n_rules + 1, sizeof *P->rules)) {
        fail_at(P, "out of memory");
        return -1;
    }
    brule *r = &P->rules[P->n_rules];
    memset(r, 0, sizeof *r);
    r->name = malloc(len + 1);
    if (!r->name) {
        fail_at(P, "out of memory");
        return -1;
    }
    memcpy(r->name, name, len);
    r->name[len] = 0;
    r->name_len = len;
    if (!index_rule(P, P->n_rules)) {
        free(r->name);
        fail_at(P, "out of memory");
        return -1;
    }
    return P->n_rules++;
}

/* A rule made for a group or repetition inside rule `owner`. */
static int32_t synth_rule(parser *P, int32_t owner)
{
    char name[160];
    snprintf(name, sizeof name, "%.120s_%d", P->rules[owner].name, P->n_rules);
    int32_t r = add_rule(P, name, strlen(name));
    if (r >= 0)
        P->rules[r].line = P->line;
    return r;
}

static ivec *new_alt(parser *P, int32_t rule)
{
    brule *r = &P->rules[rule];
    if (!ellm_grammar_grow((void **)&r->alts, &r->cap_alts, r->n_alts + 1, sizeof *r->alts)) {
        fail_at(P, "out of memory");
        return NULL;
    }
    ivec *a = &r->alts[r->n_alts++];
    memset(a, 0, sizeof *a);
    return a;
}

static int cmp_range(const void *a, const void *b)
{
    const ellm_cp_range *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

static uint32_t hash_ranges(const ellm_cp_range *r, int32_t n)
{
    uint32_t h = 2166136261u;
    for (int32_t i = 0; i < n; i++) {
        h = (h ^ r[i].lo) * 16777619u;
        h = (h ^ r[i].hi) * 16777619u;
    }
    return h;
}

/* Sorts, merges and (if negate) complements ranges, then returns the class id of that set,
 * reusing an identical class so that equal sets share one id. */
static int32_t intern_class(parser *P, ellm_cp_range *r, int32_t n, int negate)
{
    if (n > 0)
        qsort(r, (size_t)n, sizeof *r, cmp_range);
    int32_t m = 0;
    for (int32_t i = 0; i < n; i++) {
        if (m > 0 && r[i].lo <= r[m - 1].hi + 1) {
            if (r[i].hi > r[m - 1].hi)
                r[m - 1].hi = r[i].hi;
        } else {
            r[m++] = r[i];
        }
    }
    n = m;
    ellm_cp_range *set = r;
    ellm_cp_range *complement = NULL;
    if (negate) {
        complement = malloc(((size_t)n + 1) * sizeof *complement);
        if (!complement) {
            fail_at(P, "out of memory");
            return -1;
        }
        int32_t k = 0;
        uint32_t next = 0;
        for (int32_t i = 0; i < n; i++) {
            if (r[i].lo > next)
                complement[k++] = (ellm_cp_range){next, r[i].lo - 1};
            next = r[i].hi + 1;
        }
        if (next <= MAX_CODEPOINT)
            complement[k++] = (ellm_cp_range){next, MAX_CODEPOINT};
        set = complement;
        n = k;
    }
    uint32_t h = hash_ranges(set, n);
    int32_t found = -1;
    if (P->class_hash_cap < 2 * (P->n_classes + 1)) {
        int32_t cap = P->class_hash_cap ? P->class_hash_cap * 2 : 64;
        int32_t *t = calloc((size_t)cap, sizeof *t);
        if (!t) {
            free(complement);
            fail_at(P, "out of memory");
            return -1;
        }
        for (int32_t c = 0; c < P->n_classes; c++) {
            const ellm_char_class *cc = &P->classes[c];
            uint32_t j = hash_ranges(P->ranges + cc->first_range, cc->n_ranges) &
                         (uint32_t)(cap - 1);
            while (t[j])
                j = (j + 1) & (uint32_t)(cap - 1);
            t[j] = c + 1;
        }
        free(P->class_hash);
        P->class_hash = t;
        P->class_hash_cap = cap;
    }
    uint32_t j = h & (uint32_t)(P->class_hash_cap - 1);
    for (; P->class_hash[j]; j = (j + 1) & (uint32_t)(P->class_hash_cap - 1)) {
        const ellm_char_class *cc = &P->classes[P->class_hash[j] - 1];
        if (cc->n_ranges == n &&
            (n == 0 || memcmp(P->ranges + cc->first_range, set, (size_t)n * sizeof *set) == 0)) {
            found = P->class_hash[j] - 1;
            break;
        }
    }
    if (found < 0) {
        if (!ellm_grammar_grow((void **)&P->classes, &P->cap_classes, P->n_classes + 1,
                               sizeof *P->classes) ||
            !ellm_grammar_grow((void **)&P->ranges, &P->cap_ranges, P->n_ranges + n + 1,
                               sizeof *P->ranges)) {
            free(complement);
            fail_at(P, "out of memory");
            return -1;
        }
        ellm_char_class *cc = &P->classes[P->n_classes];
        memset(cc, 0, sizeof *cc);
        cc->first_range = P->n_ranges;
        cc->n_ranges = n;
        if (n > 0)
            memcpy(P->ranges + P->n_ranges, set, (size_t)n * sizeof *set);
        P->n_ranges += n;
        for (int32_t i = 0; i < n; i++)
            for (uint32_t c = set[i].lo; c <= set[i].hi && c < 128; c++)
                cc->ascii[c >> 6] |= 1ull << (c & 63);
        found = P->n_classes++;
        P->class_hash[j] = found + 1;
    }
    free(complement);
    return found;
}

static int at_end(parser *P) { return P->p >= P->end; }

static void skip_space(parser *P)
{
    while (!at_end(P)) {
        char c = *P->p;
        if (c == '\n') {
            P->line++;
            P->p++;
        } else if (c == ' ' || c == '\t' || c == '\r') {
            P->p++;
        } else if (c == '#') {
            while (!at_end(P) && *P->p != '\n')
                P->p++;
        } else {
            break;
        }
    }
}

static int is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

static size_t name_length(const parser *P)
{
    const char *q = P->p;
    while (q < P->end && is_name_char(*q))
        q++;
    return (size_t)(q - P->p);
}

/* Whether the text at the cursor is `name ::=`, i.e. the next rule begins. */
static int at_rule_start(const parser *P)
{
    size_t n = name_length(P);
    if (n == 0)
        return 0;
    const char *q = P->p + n;
    while (q < P->end && (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n'))
        q++;
    return P->end - q >= 3 && memcmp(q, "::=", 3) == 0;
}

/* One character of a literal or class: an escape or a UTF-8 sequence. -1 on error. */
static int64_t parse_char(parser *P)
{
    const unsigned char *s = (const unsigned char *)P->p;
    size_t left = (size_t)(P->end - P->p);
    if (s[0] == '\\') {
        if (left < 2) {
            fail_at(P, "a backslash ends the text; escape it as \\\\");
            return -1;
        }
        int digits = 0;
        switch (s[1]) {
        case 'n': P->p += 2; return '\n';
        case 't': P->p += 2; return '\t';
        case 'r': P->p += 2; return '\r';
        case '0': P->p += 2; return 0;
        case '\\':
        case '"':
        case '\'':
        case '[':
        case ']':
        case '-':
        case '/':
        case '^': P->p += 2; return s[1];
        case 'x': digits = 2; break;
        case 'u': digits = 4; break;
        case 'U': digits = 8; break;
        default: {
            char msg[96];
            snprintf(msg, sizeof msg,
                     "unknown escape '\\%c'; use \\n \\t \\r \\\\ \\\" \\xHH "
                     "\\uHHHH or \\UHHHHHHHH",
                     s[1] >= 32 && s[1] < 127 ? s[1] : '?');
            fail_at(P, msg);
            return -1;
        }
        }
        if (left < (size_t)digits + 2) {
            fail_at(P, "a \\x, \\u or \\U escape needs 2, 4 or 8 hex digits");
            return -1;
        }
        uint32_t v = 0;
        for (int i = 0; i < digits; i++) {
            int h = ellm_hex_digit((char)s[2 + i]);
            if (h < 0) {
                fail_at(P, "a \\x, \\u or \\U escape needs 2, 4 or 8 hex digits");
                return -1;
            }
            v = v * 16 + (uint32_t)h;
        }
        if (v > MAX_CODEPOINT) {
            fail_at(P, "escaped code point beyond U+10FFFF");
            return -1;
        }
        P->p += 2 + digits;
        return v;
    }
    uint32_t v;
    size_t n = ellm_utf8_next((const char *)s, left, &v);
    if (n == 0) {
        fail_at(P, "invalid UTF-8 in the grammar text");
        return -1;
    }
    if (s[0] == '\n')
        P->line++;
    P->p += n;
    return v;
}

static int parse_literal(parser *P, ivec *out)
{
    P->p++; /* opening quote */
    for (;;) {
        if (at_end(P) || *P->p == '\n')
            return fail_at(P, "unterminated string literal (a \" is missing)"), 0;
        if (*P->p == '"') {
            P->p++;
            return 1;
        }
        int64_t c = parse_char(P);
        if (c < 0)
            return 0;
        ellm_cp_range r = {(uint32_t)c, (uint32_t)c};
        int32_t cls = intern_class(P, &r, 1, 0);
        if (cls < 0 || !ivec_push(P, out, cls * 4 + 1))
            return 0;
    }
}

static int parse_class(parser *P, ivec *out)
{
    P->p++; /* [ */
    int negate = 0;
    if (!at_end(P) && *P->p == '^') {
        negate = 1;
        P->p++;
    }
    ellm_cp_range *r = NULL;
    int32_t n = 0, cap = 0;
    for (;;) {
        if (at_end(P) || *P->p == '\n') {
            free(r);
            return fail_at(P, "unterminated character class (a ] is missing)"), 0;
        }
        if (*P->p == ']') {
            P->p++;
            break;
        }
        int64_t lo = parse_char(P), hi = lo;
        if (lo >= 0 && P->end - P->p >= 2 && P->p[0] == '-' && P->p[1] != ']') {
            P->p++;
            hi = parse_char(P);
            if (hi >= 0 && hi < lo) {
                free(r);
                return fail_at(P, "character range written backwards (e.g. [z-a]); put the "
                                  "smaller end first"),
                       0;
            }
        }
        if (lo < 0 || hi < 0 || !ellm_grammar_grow((void **)&r, &cap, n + 1, sizeof *r)) {
            free(r);
            return fail_at(P, "out of memory"), 0;
        }
        r[n++] = (ellm_cp_range){(uint32_t)lo, (uint32_t)hi};
    }
    int32_t cls = intern_class(P, r, n, negate);
    free(r);
    return cls >= 0 && ivec_push(P, out, cls * 4 + 1);
}

static int parse_alternatives(parser *P, int32_t rule);

/* Moves the elements of item into a new rule of one alternative (unless it is one element) so a
 * repetition operator applies to one element. */
static int single_element(parser *P, int32_t owner, ivec *item, int32_t *elem)
{
    if (item->n == 1) {
        *elem = item->v[0];
        return 1;
    }
    int32_t r = synth_rule(P, owner);
    ivec *a = r >= 0 ? new_alt(P, r) : NULL;
    if (!a)
        return 0;
    *a = *item;
    memset(item, 0, sizeof *item);
    *elem = r * 4 + 2;
    return 1;
}

/* rule ::= x rule | (empty): zero or more x. */
static int32_t star_rule(parser *P, int32_t owner, int32_t x)
{
    int32_t r = synth_rule(P, owner);
    if (r < 0)
        return -1;
    ivec *a = new_alt(P, r);
    if (!a || !ivec_push(P, a, x) || !ivec_push(P, a, r * 4 + 2) || !new_alt(P, r))
        return -1;
    return r;
}

static int parse_count(parser *P, long *v)
{
    const char *q = P->p;
    long n = 0;
    while (!at_end(P) && *P->p >= '0' && *P->p <= '9') {
        n = n * 10 + (*P->p - '0');
        if (n > ELLM_GRAMMAR_MAX_REPEAT)
            return fail_at(P, "repetition count above 10000 in {m,n}"), 0;
        P->p++;
    }
    *v = n;
    return P->p > q;
}

static int apply_postfix(parser *P, int32_t owner, ivec *item)
{
    for (;;) {
        char op = at_end(P) ? 0 : *P->p;
        if (op != '*' && op != '+' && op != '?' && op != '{')
            return 1;
        P->p++;
        long m = 0, n = -1; /* n = -1: unbounded */
        if (op == '{') {
            skip_space(P);
            if (!parse_count(P, &m))
                return P->failed ? 0 : (fail_at(P, "expected a number after { in {m,n}"), 0);
            skip_space(P);
            if (!at_end(P) && *P->p == ',') {
                P->p++;
                skip_space(P);
                if (!at_end(P) && *P->p != '}' && !parse_count(P, &n))
                    return P->failed ? 0
                                     : (fail_at(P, "expected a number or } after , in {m,n}"), 0);
            } else {
                n = m;
            }
            skip_space(P);
            if (at_end(P) || *P->p != '}')
                return fail_at(P, "expected } to close {m,n}"), 0;
            P->p++;
            if (n >= 0 && n < m)
                return fail_at(P, "{m,n} with n smaller than m"), 0;
        } else if (op == '+') {
            m = 1;
        } else if (op == '?') {
            n = 1;
        }
        int32_t x;
        if (item->n == 0)
            return fail_at(P, "a repetition operator (* + ? {m,n}) follows nothing"), 0;
        if (!single_element(P, owner, item, &x))
            return 0;
        item->n = 0;
        for (long i = 0; i < m; i++)
            if (!ivec_push(P, item, x))
                return 0;
        if (n < 0) {
            int32_t r = star_rule(P, owner, x);
            if (r < 0 || !ivec_push(P, item, r * 4 + 2))
                return 0;
        } else if (n > m) {
            /* x? nested n-m times: opt_k ::= x opt_{k-1} | (empty). */
            int32_t inner = -1;
            for (long k = 0; k < n - m; k++) {
                int32_t r = synth_rule(P, owner);
                ivec *a = r >= 0 ? new_alt(P, r) : NULL;
                if (!a || !ivec_push(P, a, x) || (inner >= 0 && !ivec_push(P, a, inner * 4 + 2)) ||
                    !new_alt(P, r))
                    return 0;
                inner = r;
            }
            if (!ivec_push(P, item, inner * 4 + 2))
                return 0;
        }
    }
}

static int parse_sequence(parser *P, int32_t rule, ivec *out)
{
    for (;;) {
        skip_space(P);
        if (at_end(P) || *P->p == '|' || *P->p == ')' || at_rule_start(P))
            return 1;
        ivec item = {0};
        char c = *P->p;
        int ok = 1;
        if (c == '"') {
            ok = parse_literal(P, &item);
        } else if (c == '[') {
            ok = parse_class(P, &item);
        } else if (c == '.') {
            P->p++;
            ellm_cp_range any = {0, MAX_CODEPOINT};
            int32_t cls = intern_class(P, &any, 1, 0);
            ok = cls >= 0 && ivec_push(P, &item, cls * 4 + 1);
        } else if (c == '(') {
            P->p++;
            if (++P->depth > ELLM_GRAMMAR_MAX_NESTING) {
                fail_at(P, "groups nested more than 64 deep");
                ok = 0;
            }
            int32_t r = ok ? synth_rule(P, rule) : -1;
            ok = r >= 0 && parse_alternatives(P, r);
            if (ok && (at_end(P) || *P->p != ')')) {
                fail_at(P, "a ( is not closed by )");
                ok = 0;
            }
            if (ok) {
                P->p++;
                P->depth--;
                ok = ivec_push(P, &item, r * 4 + 2);
            }
        } else if (is_name_char(c)) {
            size_t n = name_length(P);
            int32_t r = find_rule(P, P->p, n);
            if (r < 0)
                r = add_rule(P, P->p, n);
            if (r >= 0 && !P->rules[r].used_at)
                P->rules[r].used_at = P->line;
            P->p += n;
            ok = r >= 0 && ivec_push(P, &item, r * 4 + 2);
        } else {
            char msg[120];
            snprintf(msg, sizeof msg,
                     "unexpected '%c'; expected a \"literal\", [class], rule "
                     "name, (group), . or |",
                     c >= 32 && c < 127 ? c : '?');
            fail_at(P, msg);
            ok = 0;
        }
        if (ok)
            ok = apply_postfix(P, rule, &item);
        for (int32_t i = 0; ok && i < item.n; i++) {
            /* The element count was charged when the item was built. */
            if (!ellm_grammar_grow((void **)&out->v, &out->cap, out->n + 1, sizeof *out->v)) {
                fail_at(P, "out of memory");
                ok = 0;
            } else {
                out->v[out->n++] = item.v[i];
            }
        }
        free(item.v);
        if (!ok)
            return 0;
    }
}

static int parse_alternatives(parser *P, int32_t rule)
{
    for (;;) {
        ivec *a = new_alt(P, rule);
        if (!a)
            return 0;
        ivec seq = {0};
        int ok = parse_sequence(P, rule, &seq);
        /* new_alt may have moved the rule's array while the sequence made rules; refetch. */
        brule *r = &P->rules[rule];
        r->alts[r->n_alts - 1] = seq;
        if (!ok)
            return 0;
        skip_space(P);
        if (at_end(P) || *P->p != '|')
            return 1;
        P->p++;
    }
}

static void free_parser(parser *P)
{
    for (int32_t i = 0; i < P->n_rules; i++) {
        for (int32_t a = 0; a < P->rules[i].n_alts; a++)
            free(P->rules[i].alts[a].v);
        free(P->rules[i].alts);
        free(P->rules[i].name);
    }
    free(P->rules);
    free(P->classes);
    free(P->ranges);
    free(P->class_hash);
    free(P->rule_hash);
}

void ellm_grammar_destroy(ellm_grammar *g)
{
    if (!g)
        return;
    free(g->elems);
    free(g->alt_start);
    free(g->rule_first);
    free(g->rule_n_alts);
    if (g->rule_names)
        for (int32_t i = 0; i < g->n_rules; i++)
            free(g->rule_names[i]);
    free(g->rule_names);
    free(g->classes);
    free(g->ranges);
    free(g);
}

int ellm_class_contains(const ellm_grammar *g, int32_t cls, uint32_t cp)
{
    const ellm_char_class *c = &g->classes[cls];
    if (cp < 128)
        return (int)((c->ascii[cp >> 6] >> (cp & 63)) & 1);
    const ellm_cp_range *r = g->ranges + c->first_range;
    int32_t lo = 0, hi = c->n_ranges - 1;
    while (lo <= hi) {
        int32_t mid = (lo + hi) / 2;
        if (cp < r[mid].lo)
            hi = mid - 1;
        else if (cp > r[mid].hi)
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}

/* Rules that can match the empty string, and rules that can match some finite string. */
/* Marks in out[] the rules with an alternative whose every element has the property: nullable
 * (no character class, every rule nullable) or productive (no empty class, every rule
 * productive). An alternative waits for a count of rule references; a rule that gets the
 * property counts down the alternatives that refer to it, so each reference is visited once.
 * (Passes over all rules until none changed took a pass per link of a chain of rules: 48,000
 * chained rules, 1 MiB of text, compiled in about 10 s.) */
static void propagate(const ellm_grammar *g, bool nullability, const int32_t *alt_owner,
                      int32_t n_alts, const int32_t *ref_first, const int32_t *ref_alt,
                      int32_t *waiting, int32_t *queue, uint8_t *out)
{
    int32_t head = 0, tail = 0;
    for (int32_t a = 0; a < n_alts; a++) {
        waiting[a] = 0;
        for (int32_t i = g->alt_start[a]; g->elems[i] != ELLM_GEL_END; i++) {
            int32_t e = g->elems[i];
            if (!ELLM_GEL_IS_CLASS(e))
                waiting[a]++;
            else if (nullability || g->classes[ELLM_GEL_ARG(e)].n_ranges == 0)
                waiting[a] = INT32_MIN / 2; /* never: no count-down reaches 0 */
        }
        if (waiting[a] == 0 && !out[alt_owner[a]])
            out[queue[tail++] = alt_owner[a]] = 1;
    }
    while (head < tail)
        for (int32_t k = ref_first[queue[head]], end = ref_first[queue[head++] + 1]; k < end; k++)
            if (--waiting[ref_alt[k]] == 0 && !out[alt_owner[ref_alt[k]]])
                out[queue[tail++] = alt_owner[ref_alt[k]]] = 1;
}

/* False when memory ran out. */
static bool rule_fixpoints(const ellm_grammar *g, uint8_t *nullable, uint8_t *productive)
{
    int32_t n = g->n_rules, n_alts = 0;
    for (int32_t r = 0; r < n; r++)
        if (g->rule_first[r] + g->rule_n_alts[r] > n_alts)
            n_alts = g->rule_first[r] + g->rule_n_alts[r];
    int32_t *alt_owner = malloc(((size_t)n_alts + 1) * sizeof *alt_owner);
    int32_t *waiting = malloc(((size_t)n_alts + 1) * sizeof *waiting);
    int32_t *ref_first = calloc((size_t)n + 2, sizeof *ref_first);
    int32_t *ref_alt = malloc(((size_t)g->n_elems + 1) * sizeof *ref_alt);
    int32_t *queue = malloc(((size_t)n + 1) * sizeof *queue);
    bool ok = alt_owner && waiting && ref_first && ref_alt && queue;
    if (ok) {
        /* The references to each rule, as the alternatives holding them (counting sort). */
        for (int32_t r = 0; r < n; r++)
            for (int32_t a = g->rule_first[r]; a < g->rule_first[r] + g->rule_n_alts[r]; a++) {
                alt_owner[a] = r;
                for (int32_t i = g->alt_start[a]; g->elems[i] != ELLM_GEL_END; i++)
                    if (!ELLM_GEL_IS_CLASS(g->elems[i]))
                        ref_first[ELLM_GEL_ARG(g->elems[i]) + 2]++;
            }
        for (int32_t r = 0; r < n; r++)
            ref_first[r + 2] += ref_first[r + 1];
        for (int32_t a = 0; a < n_alts; a++)
            for (int32_t i = g->alt_start[a]; g->elems[i] != ELLM_GEL_END; i++)
                if (!ELLM_GEL_IS_CLASS(g->elems[i]))
                    ref_alt[ref_first[ELLM_GEL_ARG(g->elems[i]) + 1]++] = a;
        propagate(g, true, alt_owner, n_alts, ref_first, ref_alt, waiting, queue, nullable);
        propagate(g, false, alt_owner, n_alts, ref_first, ref_alt, waiting, queue, productive);
    }
    free(alt_owner);
    free(waiting);
    free(ref_first);
    free(ref_alt);
    free(queue);
    return ok;
}

/* A rule that can reach itself without consuming a character would make the matcher loop. The
 * graph's edges are the "left corner" references: those preceded only by nullable elements of
 * their alternative. */
static edgellm_status check_left_recursion(const ellm_grammar *g, const uint8_t *nullable)
{
    int32_t n = g->n_rules;
    int32_t *edge_first = calloc((size_t)n + 1, sizeof *edge_first);
    int32_t *edges = malloc(((size_t)g->n_elems + 1) * sizeof *edges);
    uint8_t *color = calloc((size_t)n, 1);                        /* 0 new, 1 on the path, 2 done */
    int32_t *stack = malloc(((size_t)n + 1) * 2 * sizeof *stack); /* (rule, next edge) pairs */
    if (!edge_first || !edges || !color || !stack) {
        free(edge_first);
        free(edges);
        free(color);
        free(stack);
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory to check the grammar");
    }
    int32_t n_edges = 0;
    for (int32_t r = 0; r < n; r++) {
        edge_first[r] = n_edges;
        for (int32_t a = 0; a < g->rule_n_alts[r]; a++) {
            for (int32_t i = g->alt_start[g->rule_first[r] + a]; g->elems[i] != ELLM_GEL_END; i++) {
                int32_t e = g->elems[i];
                if (!ELLM_GEL_IS_RULE(e))
                    break;
                edges[n_edges++] = ELLM_GEL_ARG(e);
                if (!nullable[ELLM_GEL_ARG(e)])
                    break;
            }
        }
    }
    edge_first[n] = n_edges;
    edgellm_status st = EDGELLM_OK;
    for (int32_t start = 0; start < n && st == EDGELLM_OK; start++) {
        if (color[start])
            continue;
        int32_t sp = 0;
        stack[sp++] = start;
        stack[sp++] = edge_first[start];
        color[start] = 1;
        while (sp > 0) {
            int32_t r = stack[sp - 2];
            int32_t k = stack[sp - 1]++;
            if (k >= edge_first[r + 1]) {
                color[r] = 2;
                sp -= 2;
                continue;
            }
            int32_t s = edges[k];
            if (color[s] == 2)
                continue;
            if (color[s] == 1) {
                st = ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                               "grammar: rule '%s' can reach itself without matching a character "
                               "(left recursion, or a repetition of something that can be empty); "
                               "rewrite it so that each repetition consumes input",
                               g->rule_names[s]);
                break;
            }
            color[s] = 1;
            stack[sp++] = s;
            stack[sp++] = edge_first[s];
        }
    }
    free(edge_first);
    free(edges);
    free(color);
    free(stack);
    return st;
}

static edgellm_status flatten(parser *P, int32_t root, ellm_grammar **out)
{
    ellm_grammar *g = calloc(1, sizeof *g);
    if (!g)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the grammar");
    int32_t n_alts = 0, n_elems = 0;
    for (int32_t r = 0; r < P->n_rules; r++) {
        n_alts += P->rules[r].n_alts;
        for (int32_t a = 0; a < P->rules[r].n_alts; a++)
            n_elems += P->rules[r].alts[a].n + 1;
    }
    g->n_rules = P->n_rules;
    g->root = root;
    g->elems = malloc(((size_t)n_elems + 1) * sizeof *g->elems);
    g->alt_start = malloc(((size_t)n_alts + 1) * sizeof *g->alt_start);
    g->rule_first = malloc((size_t)P->n_rules * sizeof *g->rule_first);
    g->rule_n_alts = malloc((size_t)P->n_rules * sizeof *g->rule_n_alts);
    g->rule_names = calloc((size_t)P->n_rules, sizeof *g->rule_names);
    g->classes = malloc(((size_t)P->n_classes + 1) * sizeof *g->classes);
    g->ranges = malloc(((size_t)P->n_ranges + 1) * sizeof *g->ranges);
    if (!g->elems || !g->alt_start || !g->rule_first || !g->rule_n_alts || !g->rule_names ||
        !g->classes || !g->ranges) {
        ellm_grammar_destroy(g);
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the grammar");
    }
    int32_t ai = 0, ei = 0;
    for (int32_t r = 0; r < P->n_rules; r++) {
        g->rule_first[r] = ai;
        g->rule_n_alts[r] = P->rules[r].n_alts;
        g->rule_names[r] = P->rules[r].name;
        P->rules[r].name = NULL;
        for (int32_t a = 0; a < P->rules[r].n_alts; a++) {
            g->alt_start[ai++] = ei;
            if (P->rules[r].alts[a].n > 0)
                memcpy(g->elems + ei, P->rules[r].alts[a].v,
                       (size_t)P->rules[r].alts[a].n * sizeof(int32_t));
            ei += P->rules[r].alts[a].n;
            g->elems[ei++] = ELLM_GEL_END;
        }
    }
    g->n_elems = ei;
    g->n_classes = P->n_classes;
    if (P->n_classes > 0)
        memcpy(g->classes, P->classes, (size_t)P->n_classes * sizeof *g->classes);
    if (P->n_ranges > 0)
        memcpy(g->ranges, P->ranges, (size_t)P->n_ranges * sizeof *g->ranges);
    *out = g;
    return EDGELLM_OK;
}

edgellm_status ellm_grammar_parse(const char *text, size_t len, const char *root_name,
                                  ellm_grammar **out)
{
    if (!out || (!text && len))
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "grammar: no text given");
    *out = NULL;
    if (len > ELLM_GRAMMAR_MAX_TEXT)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "grammar: the text is %zu bytes, more than the 1 MiB limit", len);
    if (memchr(text, 0, len))
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "grammar: the text contains a NUL byte; write it as \\x00");
    if (!root_name)
        root_name = "root";
    parser P = {.p = text, .end = text + len, .line = 1};
    for (;;) {
        skip_space(&P);
        if (at_end(&P))
            break;
        size_t n = name_length(&P);
        if (!at_rule_start(&P)) {
            fail_at(&P, n ? "expected ::= after the rule name" : "expected a rule: name ::= ...");
            break;
        }
        int32_t r = find_rule(&P, P.p, n);
        if (r < 0)
            r = add_rule(&P, P.p, n);
        if (r < 0)
            break;
        if (P.rules[r].line) {
            char msg[200];
            snprintf(msg, sizeof msg, "rule '%.100s' is defined twice (first on line %d)",
                     P.rules[r].name, P.rules[r].line);
            fail_at(&P, msg);
            break;
        }
        P.rules[r].line = P.line;
        P.p += n;
        skip_space(&P);
        P.p += 3; /* ::= */
        if (!parse_alternatives(&P, r))
            break;
        skip_space(&P);
        if (!at_end(&P) && *P.p == ')') {
            fail_at(&P, "a ) without a matching (");
            break;
        }
    }
    int32_t root = -1;
    if (!P.failed) {
        for (int32_t r = 0; r < P.n_rules && !P.failed; r++) {
            if (!P.rules[r].line) {
                char msg[200];
                P.line = P.rules[r].used_at;
                snprintf(msg, sizeof msg, "rule '%.100s' is used but never defined",
                         P.rules[r].name);
                fail_at(&P, msg);
            }
        }
        root = find_rule(&P, root_name, strlen(root_name));
        if (!P.failed && root < 0)
            P.failed = ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                                 "grammar: there is no rule '%s' to start from; define "
                                 "%s ::= ...",
                                 root_name, root_name);
    }
    if (P.failed) {
        edgellm_status st = P.failed;
        free_parser(&P);
        return st;
    }
    ellm_grammar *g = NULL;
    edgellm_status st = flatten(&P, root, &g);
    free_parser(&P);
    if (st != EDGELLM_OK)
        return st;
    uint8_t *nullable = calloc((size_t)g->n_rules, 1);
    uint8_t *productive = calloc((size_t)g->n_rules, 1);
    if (!nullable || !productive) {
        st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory to check the grammar");
    } else {
        st = rule_fixpoints(g, nullable, productive)
                 ? check_left_recursion(g, nullable)
                 : ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory to check the grammar");
        if (st == EDGELLM_OK && !productive[g->root])
            st = ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                           "grammar: rule '%s' can never be completed (every alternative needs "
                           "a rule that never ends, or an empty character class)",
                           g->rule_names[g->root]);
    }
    free(nullable);
    free(productive);
    if (st != EDGELLM_OK) {
        ellm_grammar_destroy(g);
        return st;
    }
    *out = g;
    return EDGELLM_OK;
}
