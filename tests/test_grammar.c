/* The grammar engine: parser errors, and the token mask checked against a slow, obviously correct
 * reference — for every token, does appending its bytes keep the output a valid prefix? — on
 * random grammars and random vocabularies whose tokens span several terminals and split UTF-8
 * characters. The reference works on the test's own grammar tree (position sets over code points),
 * not on anything the engine compiled. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "grammar/grammar.h"
#include "test_util.h"

/* ---- parser errors -------------------------------------------------------------------- */

static void expect_error(const char *text, const char *needle)
{
    ellm_grammar *g = NULL;
    edgellm_status st = ellm_grammar_parse(text, strlen(text), NULL, &g);
    CHECK_MSG(st == EDGELLM_ERR_INVALID_ARGUMENT && !g, "accepted: %s", text);
    CHECK_MSG(strstr(edgellm_last_error(), needle) != NULL, "for %s: got '%s', wanted '%s'", text,
              edgellm_last_error(), needle);
    ellm_grammar_destroy(g);
}

static void expect_ok(const char *text)
{
    ellm_grammar *g = NULL;
    edgellm_status st = ellm_grammar_parse(text, strlen(text), NULL, &g);
    CHECK_MSG(st == EDGELLM_OK && g, "refused %s: %s", text, edgellm_last_error());
    ellm_grammar_destroy(g);
}

static void test_parse_errors(void)
{
    expect_error("", "no rule 'root'");
    expect_error("start ::= \"a\"", "no rule 'root'");
    expect_error("root ::= \"abc", "line 1: unterminated string");
    expect_error("root ::= [abc", "unterminated character class");
    expect_error("root ::= x", "rule 'x' is used but never defined");
    expect_error("root ::= \"a\"\nroot ::= \"b\"", "line 2: rule 'root' is defined twice");
    expect_error("root ::= (\"a\"", "not closed");
    expect_error("root ::= \"a\" )", "without a matching (");
    expect_error("root ::= root \"a\" | \"b\"", "rule 'root' can reach itself");
    expect_error("root ::= (\"a\"?)*", "can reach itself");
    expect_error("root ::= \"a\"{3,1}", "n smaller than m");
    expect_error("root ::= \"a\"{20000}", "above 10000");
    expect_error("root ::= \"a\"{2", "expected }");
    expect_error("root ::= * \"a\"", "unexpected '*'");
    expect_error("root ::= \"\\q\"", "unknown escape");
    expect_error("root ::= \"\\x4\"", "hex digits");
    expect_error("root ::= [z-a]", "backwards");
    expect_error("root ::= \"a\" a\na ::= a \"b\"", "rule 'a' can reach itself");
    expect_error("root ::= [^\\x00-\\U0010FFFF]", "can never be completed");
    expect_error("root ::= loop\nloop ::= \"a\" loop", "can never be completed");
    expect_error("root = \"a\"", "expected ::=");
    expect_error("root ::= \"\xff\"", "invalid UTF-8");
    char deep[400];
    size_t n = 0;
    n += (size_t)snprintf(deep, sizeof deep, "root ::= ");
    for (int i = 0; i < 70; i++)
        deep[n++] = '(';
    deep[n++] = '"';
    deep[n++] = 'a';
    deep[n++] = '"';
    for (int i = 0; i < 70; i++)
        deep[n++] = ')';
    deep[n] = 0;
    expect_error(deep, "nested more than 64");
    char big[2048];
    n = (size_t)snprintf(big, sizeof big, "root ::= ");
    for (int i = 0; i < 110; i++)
        n += (size_t)snprintf(big + n, sizeof big - n, "\"a\"{10000} ");
    expect_error(big, "too large");

    expect_ok("root ::= \"a\" | [b-d]+ (x | \"\") # comment\nx ::= .{2,3} \"\\u00e9\\\"\"");
    expect_ok("root ::= item*\nitem ::= [^\\n]+ \"\\n\"");
    expect_ok("root ::= \"a\"{0,} \"b\"{1,} \"c\"{2}");
}

/* A chain of n rules a0 -> a1 -> ... -> a<n> with the given last rule, written first to last or
 * last to first, after the given head rules; malloc'd. */
static char *rule_chain(const char *head, int n, const char *link, const char *last, bool reversed)
{
    size_t cap = strlen(head) + (size_t)n * 64 + strlen(last) + 64;
    char *text = malloc(cap);
    size_t len = (size_t)snprintf(text, cap, "%s\na%d ::= %s\n", head, n, last);
    for (int k = 0; k < n; k++) {
        int i = reversed ? k : n - 1 - k;
        len += (size_t)snprintf(text + len, cap - len, "a%d ::= a%d %s\n", i, i + 1, link);
    }
    return text;
}

/* Long chains of rules, in both orders: what the checks find at one end must reach the other
 * (whether a rule can be completed, whether it can match nothing). The lookups by name and these
 * checks were quadratic in the number of rules (1 MiB of chained rules took about 16 s). */
static void test_long_rule_chains(void)
{
    for (int reversed = 0; reversed <= 1; reversed++) {
        char *t = rule_chain("root ::= a0", 40000, "\"x\"", "\"y\"", reversed);
        expect_ok(t);
        free(t);
        t = rule_chain("root ::= a0", 40000, "\"x\"", "[^\\x00-\\U0010FFFF]", reversed);
        expect_error(t, "rule 'root' can never be completed");
        free(t);
        /* c reaches itself past a0 only if the whole chain can match nothing. */
        t = rule_chain("root ::= c\nc ::= a0 c \"z\" | \"z\"", 40000, "", "\"\"", reversed);
        expect_error(t, "can reach itself");
        free(t);
        t = rule_chain("root ::= c\nc ::= a0 c \"z\" | \"z\"", 40000, "", "\"y\"", reversed);
        expect_ok(t);
        free(t);
    }
}

/* ---- a reference recogniser on the test's own grammar tree ----------------------------- */

enum { N_CLASS, N_SEQ, N_ALT, N_REP, N_REF };

typedef struct node {
    int kind;
    int negate;
    uint32_t lo[4], hi[4];
    int n_ranges;
    struct node *kids[4];
    int n_kids;
    int min, max; /* N_REP; max -1 unbounded */
    int rule;     /* N_REF */
    int literal;  /* N_SEQ written as a "string" (all kids single characters) */
} node;

#define MAX_RULES 5
#define MAX_SYMS 60

typedef struct tgrammar {
    node *rules[MAX_RULES];
    int n_rules;
} tgrammar;

static uint64_t rng_state = 0x1234567;
static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

static const uint32_t alphabet[] = {'a', 'b', 'c',  'x',    '{',     '}',
                                    '"', ' ', 0xE9, 0x20AC, 0x1F600, '\n'};
#define N_ALPHA (sizeof alphabet / sizeof *alphabet)

static uint32_t any_letter(void) { return alphabet[rnd(N_ALPHA)]; }

static node *new_node(int kind)
{
    node *n = calloc(1, sizeof *n);
    n->kind = kind;
    return n;
}

static node *char_node(uint32_t c)
{
    node *n = new_node(N_CLASS);
    n->lo[0] = n->hi[0] = c;
    n->n_ranges = 1;
    return n;
}

static node *random_expr(int rule, int n_rules, int depth)
{
    uint32_t k = rnd(depth > 2 ? 3 : 7);
    if (k == 0) {
        node *n = new_node(N_CLASS);
        n->n_ranges = 1 + (int)rnd(2);
        for (int i = 0; i < n->n_ranges; i++) {
            uint32_t a = any_letter(), b = rnd(3) ? a : any_letter();
            n->lo[i] = a < b ? a : b;
            n->hi[i] = a < b ? b : a;
        }
        n->negate = rnd(4) == 0;
        if (rnd(8) == 0) { /* . */
            n->negate = 0;
            n->n_ranges = 1;
            n->lo[0] = 0;
            n->hi[0] = 0x10FFFF;
        }
        return n;
    }
    if (k == 1) {
        node *n = new_node(N_SEQ);
        n->literal = 1;
        n->n_kids = 1 + (int)rnd(3);
        for (int i = 0; i < n->n_kids; i++)
            n->kids[i] = char_node(any_letter());
        return n;
    }
    if (k == 2) {
        if (rule + 1 < n_rules) {
            node *n = new_node(N_REF);
            n->rule = rule + 1 + (int)rnd((uint32_t)(n_rules - rule - 1));
            return n;
        }
        return char_node(any_letter());
    }
    if (k == 3 || k == 4) {
        node *n = new_node(k == 3 ? N_SEQ : N_ALT);
        n->n_kids = 2 + (int)rnd(2);
        for (int i = 0; i < n->n_kids; i++)
            n->kids[i] = random_expr(rule, n_rules, depth + 1);
        return n;
    }
    node *n = new_node(N_REP);
    n->n_kids = 1;
    /* A repeated expression that can match nothing would be refused as left recursion; keep the
     * body a character class or a non-empty literal. */
    n->kids[0] = rnd(2) ? char_node(any_letter()) : random_expr(rule, n_rules, 3);
    while (n->kids[0]->kind != N_CLASS && !(n->kids[0]->kind == N_SEQ && n->kids[0]->literal)) {
        free(n->kids[0]);
        n->kids[0] = random_expr(rule, n_rules, 3);
    }
    switch (rnd(5)) {
    case 0:
        n->min = 0;
        n->max = -1;
        break; /* * */
    case 1:
        n->min = 1;
        n->max = -1;
        break; /* + */
    case 2:
        n->min = 0;
        n->max = 1;
        break; /* ? */
    case 3:
        n->min = (int)rnd(3);
        n->max = n->min + (int)rnd(3);
        break;
    default:
        n->min = (int)rnd(3);
        n->max = -1;
        break;
    }
    return n;
}

static void free_node(node *n)
{
    if (!n)
        return;
    for (int i = 0; i < n->n_kids; i++)
        free_node(n->kids[i]);
    free(n);
}

static void put_cp(char **p, uint32_t c, int in_class)
{
    if (c == '"' || c == '\\' || (in_class && (c == ']' || c == '-' || c == '^')))
        *p += sprintf(*p, "\\%c", (char)c);
    else if (c < 32 || c >= 127)
        *p += sprintf(*p, "\\U%08X", c);
    else
        *p += sprintf(*p, "%c", (char)c);
}

static void print_node(char **p, const node *n)
{
    switch (n->kind) {
    case N_CLASS:
        if (!n->negate && n->n_ranges == 1 && n->lo[0] == 0 && n->hi[0] == 0x10FFFF) {
            *p += sprintf(*p, ". ");
            break;
        }
        *p += sprintf(*p, "[%s", n->negate ? "^" : "");
        for (int i = 0; i < n->n_ranges; i++) {
            put_cp(p, n->lo[i], 1);
            if (n->hi[i] != n->lo[i]) {
                *p += sprintf(*p, "-");
                put_cp(p, n->hi[i], 1);
            }
        }
        *p += sprintf(*p, "] ");
        break;
    case N_SEQ:
        if (n->literal) {
            *p += sprintf(*p, "\"");
            for (int i = 0; i < n->n_kids; i++)
                put_cp(p, n->kids[i]->lo[0], 0);
            *p += sprintf(*p, "\" ");
            break;
        }
        *p += sprintf(*p, "( ");
        for (int i = 0; i < n->n_kids; i++)
            print_node(p, n->kids[i]);
        *p += sprintf(*p, ") ");
        break;
    case N_ALT:
        *p += sprintf(*p, "( ");
        for (int i = 0; i < n->n_kids; i++) {
            if (i)
                *p += sprintf(*p, "| ");
            print_node(p, n->kids[i]);
        }
        *p += sprintf(*p, ") ");
        break;
    case N_REP:
        *p += sprintf(*p, "( ");
        print_node(p, n->kids[0]);
        if (n->min == 0 && n->max == -1)
            *p += sprintf(*p, ")* ");
        else if (n->min == 1 && n->max == -1)
            *p += sprintf(*p, ")+ ");
        else if (n->min == 0 && n->max == 1)
            *p += sprintf(*p, ")? ");
        else if (n->max == -1)
            *p += sprintf(*p, "){%d,} ", n->min);
        else
            *p += sprintf(*p, "){%d,%d} ", n->min, n->max);
        break;
    case N_REF: *p += sprintf(*p, "r%d ", n->rule); break;
    }
}

/* The input: code points, the last possibly only a range (a partial UTF-8 character). */
typedef struct input {
    uint32_t lo[MAX_SYMS], hi[MAX_SYMS];
    int n;
    int prefix_reached; /* some terminal was tried at the end of the input */
} input;

static int class_meets(const node *n, uint32_t lo, uint32_t hi)
{
    if (!n->negate) {
        for (int i = 0; i < n->n_ranges; i++)
            if (n->lo[i] <= hi && n->hi[i] >= lo)
                return 1;
        return 0;
    }
    /* Negated: is some code point of [lo, hi] outside every range? Skip over covering ranges. */
    for (uint32_t c = lo; c <= hi;) {
        int covered = 0;
        for (int i = 0; i < n->n_ranges; i++) {
            if (c >= n->lo[i] && c <= n->hi[i]) {
                c = n->hi[i] + 1;
                covered = 1;
                break;
            }
        }
        if (!covered)
            return 1;
    }
    return 0;
}

static uint64_t ends(const tgrammar *g, const node *n, uint64_t start, input *in)
{
    uint64_t out = 0;
    switch (n->kind) {
    case N_CLASS:
        for (int i = 0; i <= in->n; i++) {
            if (!((start >> i) & 1))
                continue;
            if (i == in->n)
                in->prefix_reached = 1;
            else if (class_meets(n, in->lo[i], in->hi[i]))
                out |= 1ull << (i + 1);
        }
        return out;
    case N_SEQ:
        out = start;
        for (int i = 0; i < n->n_kids && out; i++)
            out = ends(g, n->kids[i], out, in);
        return out;
    case N_ALT:
        for (int i = 0; i < n->n_kids; i++)
            out |= ends(g, n->kids[i], start, in);
        return out;
    case N_REF: return ends(g, g->rules[n->rule], start, in);
    case N_REP: {
        uint64_t cur = start;
        out = n->min == 0 ? start : 0;
        for (int k = 1; cur; k++) {
            if (n->max >= 0 && k > n->max)
                break;
            cur = ends(g, n->kids[0], cur, in);
            if (k >= n->min) {
                uint64_t fresh = cur & ~out;
                out |= cur;
                if (n->max < 0)
                    cur = fresh;
            }
        }
        return out;
    }
    }
    return 0;
}

/* Decodes bytes into in; returns 0 for ill-formed UTF-8. The well-formed sequences are those of
 * the Unicode standard's table 3-7: per lead byte, the range its second byte must be in. The last
 * character may be incomplete: then its symbol is the range between its smallest and largest
 * well-formed completions. */
static int decode(const uint8_t *b, size_t len, input *in)
{
    in->n = 0;
    for (size_t i = 0; i < len;) {
        uint8_t lead = b[i];
        int size;
        uint8_t lo2 = 0x80, hi2 = 0xBF;
        if (lead < 0x80)
            size = 1;
        else if (lead >= 0xC2 && lead <= 0xDF)
            size = 2;
        else if (lead >= 0xE0 && lead <= 0xEF)
            size = 3;
        else if (lead >= 0xF0 && lead <= 0xF4)
            size = 4;
        else
            return 0;
        if (lead == 0xE0)
            lo2 = 0xA0;
        if (lead == 0xED)
            hi2 = 0x9F;
        if (lead == 0xF0)
            lo2 = 0x90;
        if (lead == 0xF4)
            hi2 = 0x8F;
        uint8_t least[4], most[4];
        for (int k = 0; k < size; k++) {
            uint8_t want_lo = k == 0 ? lead : k == 1 ? lo2 : 0x80;
            uint8_t want_hi = k == 0 ? lead : k == 1 ? hi2 : 0xBF;
            if (i + (size_t)k < len) {
                uint8_t got = b[i + (size_t)k];
                if (got < want_lo || got > want_hi)
                    return 0;
                least[k] = most[k] = got;
            } else {
                least[k] = want_lo;
                most[k] = want_hi;
            }
        }
        uint32_t vlo = size == 1 ? least[0] : (uint32_t)least[0] & (0x7Fu >> size);
        uint32_t vhi = size == 1 ? most[0] : (uint32_t)most[0] & (0x7Fu >> size);
        for (int k = 1; k < size; k++) {
            vlo = (vlo << 6) | (least[k] & 0x3F);
            vhi = (vhi << 6) | (most[k] & 0x3F);
        }
        if (in->n >= MAX_SYMS)
            return 0;
        in->lo[in->n] = vlo;
        in->hi[in->n] = vhi;
        in->n++;
        i += (size_t)size;
    }
    return 1;
}

/* 1: the bytes are a valid prefix; 2: they are also a complete sentence. */
static int reference(const tgrammar *g, const uint8_t *b, size_t len)
{
    input in;
    if (!decode(b, len, &in))
        return 0;
    in.prefix_reached = 0;
    uint64_t e = ends(g, g->rules[0], 1, &in);
    int complete = ((e >> in.n) & 1) && (in.n == 0 || in.lo[in.n - 1] == in.hi[in.n - 1]);
    /* A partial last character is only a prefix, even if its range could complete the rule. */
    int partial = in.n > 0 && in.lo[in.n - 1] != in.hi[in.n - 1];
    if (complete)
        return 2;
    return in.prefix_reached || (partial && ((e >> in.n) & 1)) ? 1 : 0;
}

static size_t put_utf8(uint8_t *o, uint32_t c)
{
    if (c < 0x80) {
        o[0] = (uint8_t)c;
        return 1;
    }
    if (c < 0x800) {
        o[0] = (uint8_t)(0xC0 | (c >> 6));
        o[1] = (uint8_t)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        o[0] = (uint8_t)(0xE0 | (c >> 12));
        o[1] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
        o[2] = (uint8_t)(0x80 | (c & 0x3F));
        return 3;
    }
    o[0] = (uint8_t)(0xF0 | (c >> 18));
    o[1] = (uint8_t)(0x80 | ((c >> 12) & 0x3F));
    o[2] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
    o[3] = (uint8_t)(0x80 | (c & 0x3F));
    return 4;
}

/* A random sentence (bytes) of the grammar, used to reach prefixes deep inside it; stops
 * early (still a valid prefix) when it gets long or a class has no letter of the alphabet. */
static void sample(const tgrammar *g, const node *n, uint8_t *o, size_t *len, size_t cap)
{
    if (*len + 8 > cap)
        return;
    switch (n->kind) {
    case N_CLASS:
        for (int tries = 0; tries < 50; tries++) {
            uint32_t c = any_letter();
            if (class_meets(n, c, c)) {
                *len += put_utf8(o + *len, c);
                return;
            }
        }
        *len = cap; /* nothing after this point may be added */
        return;
    case N_SEQ:
        for (int i = 0; i < n->n_kids; i++)
            sample(g, n->kids[i], o, len, cap);
        return;
    case N_ALT: sample(g, n->kids[rnd((uint32_t)n->n_kids)], o, len, cap); return;
    case N_REF: sample(g, g->rules[n->rule], o, len, cap); return;
    case N_REP: {
        int k = n->min + (int)rnd((uint32_t)((n->max < 0 ? 3 : n->max - n->min) + 1));
        for (int i = 0; i < k; i++)
            sample(g, n->kids[0], o, len, cap);
        return;
    }
    }
}

#define N_TOKENS 300

static void random_vocab(char **pieces, int32_t *lens, uint8_t *eog)
{
    for (int t = 0; t < N_TOKENS; t++) {
        uint8_t buf[32];
        size_t n = 0;
        eog[t] = 0;
        if (t == 0) { /* end of generation, no text */
            eog[t] = 1;
        } else if (t < 12) { /* single bytes, including ones never valid */
            buf[n++] = (uint8_t)(t < 6 ? 0x80 + rnd(0x80) : 0xE0 + rnd(0x20));
        } else {
            int chars = 1 + (int)rnd(4);
            for (int i = 0; i < chars; i++)
                n += put_utf8(buf + n, any_letter());
            /* Cut some tokens inside a character, at either end. */
            if (rnd(4) == 0 && n > 1)
                n -= 1 + rnd((uint32_t)n - 1);
            if (rnd(5) == 0 && n > 1) {
                size_t cut = 1 + rnd((uint32_t)n - 1);
                memmove(buf, buf + cut, n - cut);
                n -= cut;
            }
        }
        pieces[t] = malloc(n + 1);
        memcpy(pieces[t], buf, n);
        lens[t] = (int32_t)n;
    }
}

static void *prepare_on_thread(void *matcher)
{
    CHECK(ellm_matcher_prepare(matcher));
    return NULL;
}

static void test_random_masks(void)
{
    int grammars = 0, prefixes = 0, compared = 0;
    for (int round = 0; round < 120; round++) {
        tgrammar tg = {.n_rules = 1 + (int)rnd(MAX_RULES)};
        for (int r = 0; r < tg.n_rules; r++)
            tg.rules[r] = random_expr(r, tg.n_rules, 0);
        char text[8192], *p = text;
        for (int r = 0; r < tg.n_rules; r++) {
            p += sprintf(p, r == 0 ? "root ::= " : "r%d ::= ", r);
            print_node(&p, tg.rules[r]);
            p += sprintf(p, "\n");
        }
        ellm_grammar *g = NULL;
        if (ellm_grammar_parse(text, strlen(text), NULL, &g) != EDGELLM_OK) {
            /* Only grammars that can never finish may be refused; the test makes none. */
            CHECK_MSG(0, "refused %s: %s", text, edgellm_last_error());
            for (int r = 0; r < tg.n_rules; r++)
                free_node(tg.rules[r]);
            continue;
        }
        grammars++;
        char *pieces[N_TOKENS];
        int32_t lens[N_TOKENS];
        uint8_t eog[N_TOKENS];
        random_vocab(pieces, lens, eog);
        ellm_token_trie *trie = NULL;
        CHECK(ellm_token_trie_build(N_TOKENS, (const char *const *)pieces, lens, eog, &trie) ==
              EDGELLM_OK);
        ellm_bound_grammar bg;
        CHECK(ellm_bound_grammar_init(&bg, g, trie) == EDGELLM_OK);
        ellm_matcher *m = NULL;
        CHECK(ellm_matcher_create(&bg, &m) == EDGELLM_OK);
        for (int s = 0; s < 6 && m; s++) {
            uint8_t sentence[64];
            size_t len = 0;
            sample(&tg, tg.rules[0], sentence, &len, 40);
            if (len >= 40 - 8)
                len = 0; /* possibly cut short in the middle: start from the beginning */
            /* Walk the sentence token by token: the engine's mask must equal the reference's
             * verdict for every token at every step; then take an allowed token at random. */
            ellm_matcher_reset(m);
            uint8_t prefix[128];
            size_t plen = 0;
            size_t cut = len ? rnd((uint32_t)len + 1) : 0;
            CHECK(ellm_matcher_accept_bytes(m, (const char *)sentence, cut) == EDGELLM_OK);
            memcpy(prefix, sentence, cut);
            plen = cut;
            for (int step = 0; step < 6; step++) {
                prefixes++;
                /* Text fed ahead and taken back (speculative proposals) leaves no trace, and the
                 * allowed set prepared on another thread (during a forward pass) is the one the
                 * mask then uses: both are checked by the comparison below. */
                ellm_matcher_mark mark = ellm_matcher_get_mark(m);
                for (int ahead = 0; ahead < 3; ahead++)
                    (void)ellm_matcher_accept_token(m, (edgellm_token)rnd(N_TOKENS));
                ellm_matcher_rewind(m, mark);
                if (step % 2 == 1) {
                    pthread_t helper;
                    CHECK(pthread_create(&helper, NULL, prepare_on_thread, m) == 0);
                    pthread_join(helper, NULL);
                }
                uint8_t allowed[N_TOKENS];
                int32_t n_allowed = ellm_matcher_allowed(m, allowed);
                int here = reference(&tg, prefix, plen);
                CHECK_MSG(here >= 1, "prefix not valid for the reference: %.*s", (int)plen, prefix);
                CHECK_MSG(ellm_matcher_can_end(m) == (here == 2), "can_end after '%.*s' in %s",
                          (int)plen, prefix, text);
                int32_t count = 0, pick = -1;
                for (int t = 0; t < N_TOKENS; t++) {
                    int want;
                    if (eog[t]) {
                        want = here == 2;
                    } else {
                        uint8_t buf[160];
                        memcpy(buf, prefix, plen);
                        memcpy(buf + plen, pieces[t], (size_t)lens[t]);
                        want = reference(&tg, buf, plen + (size_t)lens[t]) > 0;
                    }
                    compared++;
                    CHECK_MSG(allowed[t] == want,
                              "token %d '%.*s' after '%.*s': engine %d, reference %d\n%s", t,
                              lens[t], pieces[t], (int)plen, prefix, allowed[t], want, text);
                    count += want;
                    if (want && !eog[t] && (pick < 0 || rnd(3) == 0))
                        pick = t;
                }
                CHECK(n_allowed == count);
                if (pick < 0 || plen + (size_t)lens[pick] > 50)
                    break;
                CHECK(ellm_matcher_accept_token(m, pick) == EDGELLM_OK);
                memcpy(prefix + plen, pieces[pick], (size_t)lens[pick]);
                plen += (size_t)lens[pick];
            }
        }
        /* A token the grammar refuses leaves the state unchanged. */
        ellm_matcher_free(m);
        ellm_bound_grammar_release(&bg);
        ellm_token_trie_destroy(trie);
        for (int t = 0; t < N_TOKENS; t++)
            free(pieces[t]);
        for (int r = 0; r < tg.n_rules; r++)
            free_node(tg.rules[r]);
    }
    printf("random masks: %d grammars, %d prefixes, %d token verdicts compared\n", grammars,
           prefixes, compared);
    CHECK(grammars >= 100 && compared > 100000);
}

/* A matcher for grammar text over a small vocabulary (at most 32 pieces) whose one
 * end-of-generation token is pieces[eog_token]. */
typedef struct matcher_fixture {
    ellm_token_trie *trie;
    ellm_bound_grammar bg;
    ellm_matcher *m;
} matcher_fixture;

static void fixture_open(matcher_fixture *f, const char *text, size_t len,
                         const char *const *pieces, int32_t n, int32_t eog_token)
{
    ellm_grammar *g = NULL;
    CHECK_MSG(ellm_grammar_parse(text, len, NULL, &g) == EDGELLM_OK, "refused %s: %s", text,
              edgellm_last_error());
    int32_t lens[32];
    uint8_t eog[32] = {0};
    CHECK(n <= 32);
    for (int32_t i = 0; i < n; i++)
        lens[i] = (int32_t)strlen(pieces[i]);
    eog[eog_token] = 1;
    f->trie = NULL;
    CHECK(ellm_token_trie_build(n, pieces, lens, eog, &f->trie) == EDGELLM_OK);
    CHECK(ellm_bound_grammar_init(&f->bg, g, f->trie) == EDGELLM_OK);
    f->m = NULL;
    CHECK(ellm_matcher_create(&f->bg, &f->m) == EDGELLM_OK);
}

static void fixture_close(matcher_fixture *f)
{
    ellm_matcher_free(f->m);
    ellm_bound_grammar_release(&f->bg); /* frees the grammar */
    ellm_token_trie_destroy(f->trie);
}

/* Masking a 100k-token vocabulary inside a JSON string must take whole subtrees at once. */
static void test_string_loop_and_refusal(void)
{
    const char *text = "root ::= \"\\\"\" [^\"\\\\]* \"\\\"\"";
    const char *piece_text[] = {"\"", "ab", "a\"", "\\", "\xc3", "\xa9", "\xc3\xa9x", "\"\"", ""};
    int32_t n = (int32_t)(sizeof piece_text / sizeof *piece_text);
    matcher_fixture f;
    fixture_open(&f, text, strlen(text), piece_text, n, n - 1);
    ellm_matcher *m = f.m;
    uint8_t allowed[16];
    CHECK(ellm_matcher_allowed(m, allowed) == 2 && allowed[0] && allowed[7]);
    CHECK(ellm_matcher_accept_token(m, 0) == EDGELLM_OK);
    /* Inside: ab, a" (closes), \xc3 (partial é), \xc3\xa9x, " and "" is refused (would go on). */
    CHECK(ellm_matcher_allowed(m, allowed) == 5);
    CHECK(allowed[0] && allowed[1] && allowed[2] && !allowed[3] && allowed[4] && !allowed[5] &&
          allowed[6] && !allowed[7] && !allowed[8]);
    CHECK(ellm_matcher_accept_token(m, 3) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(ellm_matcher_accept_token(m, 4) == EDGELLM_OK); /* half of é */
    CHECK(!ellm_matcher_can_end(m));
    CHECK(ellm_matcher_allowed(m, allowed) == 1 && allowed[5]);
    CHECK(ellm_matcher_accept_token(m, 5) == EDGELLM_OK);
    CHECK(ellm_matcher_accept_token(m, 2) == EDGELLM_OK);
    CHECK(ellm_matcher_must_end(m));
    CHECK(ellm_matcher_allowed(m, allowed) == 1 && allowed[8]);
    fixture_close(&f);
}

/* A grammar the fuzzer found (fuzz_grammar, CI of session 17): never more than
 * ELLM_GRAMMAR_MAX_STACKS stacks at once, but its overlapping classes before a recursion made a
 * token's mask over the fuzzer's 25-token vocabulary take 4.7 million stack expansions (1.4 s,
 * 13 s under ASan). The matcher gives up on it within ELLM_GRAMMAR_MAX_WORK expansions a call
 * and says why, instead of running for seconds a token. */
static void test_expansion_budget(void)
{
    static const char text[] =
        "root ::= \"a\" | [booK:Kt = :\"|2o r:=]  root\"a\" | [b-drootro_::= \"a\002  "
        "::=\"yoa\" ot ::=( s 2o| r:=]  root\"a\" | [b-drootro_:o:= \"a\002  ::=\"yo:] ";
    const char *piece_text[] = {"",  "a",  "b",        "ab", "{", "}", "\"", "\\",   " ",   "\n",
                                "0", "12", "\xc3\xa9", "[",  "]", ",", ":",  "true", "null"};
    int32_t n = (int32_t)(sizeof piece_text / sizeof *piece_text);
    matcher_fixture f;
    fixture_open(&f, text, sizeof text - 1, piece_text, n, 0);
    ellm_matcher *m = f.m;
    int32_t allowed_n = 1;
    int steps = 0;
    for (; steps < 16 && allowed_n > 0; steps++) {
        uint8_t allowed[32];
        allowed_n = ellm_matcher_allowed(m, allowed);
        int pick = -1;
        for (int32_t k = 1; k < n && pick < 0 && allowed_n > 0; k++)
            if (allowed[(k + steps) % n] && (k + steps) % n != 0)
                pick = (k + steps) % n;
        if (pick >= 0)
            CHECK(ellm_matcher_accept_token(m, pick) == EDGELLM_OK);
        else if (allowed_n > 0)
            break;
    }
    CHECK_MSG(allowed_n < 0 && strstr(edgellm_last_error(), "expansions of its parse stacks"),
              "the ambiguous grammar is refused with a reason (%d after %d steps: %s)", allowed_n,
              steps, edgellm_last_error());
    fixture_close(&f);
}

/* A grammar whose start alone opens more than ELLM_GRAMMAR_MAX_STACKS parse stacks (13 rules of
 * two alternatives in a chain, each waiting for a different tail: 8192 stacks before the first
 * byte) is refused when its matcher is made, with the ambiguity named rather than a lack of
 * memory. */
static void test_ambiguous_start(void)
{
    char text[1024] = "root ::= r0\n";
    size_t len = strlen(text);
    for (int i = 0; i < 13; i++) {
        char next[16];
        snprintf(next, sizeof next, i < 12 ? "r%d" : "\"c\"", i + 1);
        len += (size_t)snprintf(text + len, sizeof text - len, "r%d ::= %s \"a\" | %s \"b\"\n", i,
                                next, next);
        CHECK(len < sizeof text);
    }
    ellm_grammar *g = NULL;
    CHECK_MSG(ellm_grammar_parse(text, len, NULL, &g) == EDGELLM_OK, "refused: %s",
              edgellm_last_error());
    const char *pieces[] = {"", "a", "b", "c"};
    int32_t lens[] = {0, 1, 1, 1};
    uint8_t eog[] = {1, 0, 0, 0};
    ellm_token_trie *trie = NULL;
    CHECK(ellm_token_trie_build(4, pieces, lens, eog, &trie) == EDGELLM_OK);
    ellm_bound_grammar bg;
    CHECK(ellm_bound_grammar_init(&bg, g, trie) == EDGELLM_OK);
    ellm_matcher *m = NULL;
    edgellm_status st = ellm_matcher_create(&bg, &m);
    CHECK_MSG(st == EDGELLM_ERR_UNSUPPORTED && strstr(edgellm_last_error(), "parse stacks"),
              "a start of 8192 stacks is refused as too ambiguous (status %d: %s)", (int)st,
              edgellm_last_error());
    ellm_matcher_free(m);
    ellm_bound_grammar_release(&bg);
    ellm_token_trie_destroy(trie);
}

int main(void)
{
    test_parse_errors();
    test_long_rule_chains();
    test_string_loop_and_refusal();
    test_random_masks();
    test_expansion_budget();
    test_ambiguous_start();
    return test_finish("test_grammar");
}
