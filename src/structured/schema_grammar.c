/* JSON Schema -> GBNF. Each subschema becomes a rule; $ref targets become rules once (so recursive
 * schemas become recursive rules); shared pieces (JSON strings, numbers, any value) are emitted
 * once when first used. Every keyword is either translated or refused by name: a schema is never
 * half-honoured. */
#define _POSIX_C_SOURCE 200809L
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/utf8.h"
#include "structured/structured.h"

/* Whitespace between JSON tokens: at most one space or newline, so that a model cannot pad
 * forever and small budgets still reach the closing bracket. */
#define WS_RULE "ws ::= [ \\n]?\n"

#define BASE_RULES                                                                                 \
    "value ::= object | array | string | number | \"true\" | \"false\" | \"null\"\n"               \
    "object ::= \"{\" ws ( member ( \",\" ws member )* )? \"}\" ws\n"                              \
    "member ::= string \":\" ws value\n"                                                           \
    "array ::= \"[\" ws ( value ( \",\" ws value )* )? \"]\" ws\n"                                 \
    "string ::= \"\\\"\" char* \"\\\"\" ws\n"                                                      \
    "char ::= [^\"\\\\\\x00-\\x1f] | \"\\\\\" ( [\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4} )\n"         \
    "number ::= \"-\"? ( \"0\" | [1-9] [0-9]{0,15} ) ( \".\" [0-9]{1,16} )? ( [eE] [-+]? "         \
    "[0-9]{1,3} )? ws\n"                                                                           \
    "integer ::= \"-\"? ( \"0\" | [1-9] [0-9]{0,15} ) ws\n"                                        \
    "boolean ::= ( \"true\" | \"false\" ) ws\n"                                                    \
    "null ::= \"null\" ws\n" WS_RULE

const char *ellm_structured_json_object_grammar(void) { return "root ::= object\n" BASE_RULES; }

typedef struct sbuf {
    char *s;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_add(sbuf *b, const char *text, size_t len)
{
    if (b->oom)
        return;
    if (b->n + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 1024;
        while (cap < b->n + len + 1)
            cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) {
            b->oom = 1;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
    memcpy(b->s + b->n, text, len);
    b->n += len;
    b->s[b->n] = 0;
}

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof tmp) {
        sb_add(b, tmp, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->oom = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb_add(b, big, (size_t)n);
    free(big);
}

/* Bytes as a GBNF string literal. */
static void sb_literal(sbuf *b, const char *s, size_t len)
{
    sb_add(b, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            sb_printf(b, "\\%c", c);
        else if (c < 0x20)
            sb_printf(b, "\\x%02X", c);
        else
            sb_add(b, (const char *)&c, 1);
    }
    sb_add(b, "\"", 1);
}

typedef struct ref_rule {
    char *pointer; /* "#/$defs/x" */
    int id;
} ref_rule;

typedef struct conv {
    const json_t *root;
    sbuf rules;
    int next_rule;
    ref_rule *refs;
    int n_refs, cap_refs;
    int depth;
    char *err;
    size_t err_cap;
    int failed;
} conv;

static int fail(conv *c, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(conv *c, const char *path, const char *fmt, ...)
{
    if (c->failed)
        return -1;
    c->failed = 1;
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(c->err, c->err_cap, "%s at %s", msg, *path ? path : "/ (the schema's root)");
    return -1;
}

static int new_rule(conv *c) { return c->next_rule++; }

static void child_path(char *out, size_t cap, const char *path, const char *key)
{
    snprintf(out, cap, "%s/%s", path, key);
}

static int convert(conv *c, const json_t *s, const char *path);

/* A rule for a JSON literal value (enum/const). */
static void literal_value(conv *c, const json_t *v)
{
    char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (!text) {
        c->rules.oom = 1;
        return;
    }
    sb_literal(&c->rules, text, strlen(text));
    free(text);
}

static const char *const annotation_keys[] = {
    "title",      "description", "$schema",   "$id",   "$comment",    "examples", "default",
    "deprecated", "readOnly",    "writeOnly", "$defs", "definitions", NULL};

static int is_annotation(const char *key)
{
    for (int i = 0; annotation_keys[i]; i++)
        if (strcmp(key, annotation_keys[i]) == 0)
            return 1;
    return 0;
}

static int only_annotations(const json_t *s)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)s, key, v) if (!is_annotation(key)) return 0;
    return 1;
}

static int key_allowed(const char *key, const char *const *allowed)
{
    for (int i = 0; allowed[i]; i++)
        if (strcmp(key, allowed[i]) == 0)
            return 1;
    return 0;
}

/* Refuses keywords the schema uses that the chosen type does not translate. */
static int check_keys(conv *c, const json_t *s, const char *path, const char *const *allowed)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)s, key, v)
    {
        if (is_annotation(key) || key_allowed(key, allowed))
            continue;
        return fail(c, path, "unsupported JSON Schema keyword '%s'", key);
    }
    return 0;
}

static int get_count(conv *c, const json_t *s, const char *key, const char *path, long long *out)
{
    json_t *v = json_object_get(s, key);
    if (!v)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 10000)
        return fail(c, path, "'%s' must be an integer from 0 to 10000", key);
    *out = json_integer_value(v);
    return 1;
}

/* " {m,n}" for a repetition, from bounds where max < 0 means none. */
static void repeat_suffix(sbuf *b, long long min, long long max)
{
    if (max < 0)
        sb_printf(b, "{%lld,}", min);
    else
        sb_printf(b, "{%lld,%lld}", min, max);
}

/* ---- string patterns: a documented subset of regular expressions ---------------------- */

typedef struct rx {
    conv *c;
    const char *p, *end;
    const char *path;
    sbuf *out;
    int depth;
} rx;

/* Characters that JSON writes escaped are left out of pattern classes, so that what the pattern
 * produces is always a valid JSON string body. */
#define JSON_UNSAFE "\\x00-\\x1f\"\\\\"

static int rx_alternatives(rx *r);

static int rx_fail(rx *r, const char *what)
{
    return fail(r->c, r->path,
                "'pattern' uses %s, which is outside the supported subset "
                "(literals, ., [classes], \\d \\w \\s, groups, |, * + ? {m,n}, "
                "^ and $)",
                what);
}

/* Copies a whole UTF-8 character that starts at r->p - 1 (its lead byte already consumed). */
static int rx_copy_multibyte(rx *r, int quoted)
{
    uint32_t cp;
    size_t n = ellm_utf8_next(r->p - 1, (size_t)(r->end - (r->p - 1)), &cp);
    if (n == 0)
        return rx_fail(r, "invalid UTF-8");
    if (quoted)
        sb_add(r->out, "\"", 1);
    sb_add(r->out, r->p - 1, n);
    if (quoted)
        sb_add(r->out, "\" ", 2);
    r->p += n - 1;
    return 0;
}

static void rx_class_char(rx *r, unsigned char ch)
{
    if (ch == ']' || ch == '\\' || ch == '^' || ch == '-' || ch == '"')
        sb_printf(r->out, "\\%c", ch);
    else if (ch < 0x20)
        sb_printf(r->out, "\\x%02X", ch);
    else
        sb_add(r->out, (const char *)&ch, 1);
}

static int rx_escape_class(rx *r, char e, int in_class)
{
    const char *body = NULL;
    switch (e) {
    case 'd': body = "0-9"; break;
    case 'w': body = "a-zA-Z0-9_"; break;
    case 's': body = " \\t\\n\\r"; break;
    default: return 0;
    }
    if (in_class)
        sb_add(r->out, body, strlen(body));
    else
        sb_printf(r->out, "[%s]", body);
    return 1;
}

static int rx_atom(rx *r)
{
    char ch = *r->p;
    if (ch == '(') {
        r->p++;
        if (r->end - r->p >= 2 && r->p[0] == '?') {
            if (r->p[1] != ':')
                return rx_fail(r, "a lookaround or named group");
            r->p += 2;
        }
        if (++r->depth > 32)
            return rx_fail(r, "groups nested more than 32 deep");
        sb_add(r->out, "( ", 2);
        if (rx_alternatives(r) < 0)
            return -1;
        if (r->p >= r->end || *r->p != ')')
            return rx_fail(r, "an unclosed (");
        r->p++;
        r->depth--;
        sb_add(r->out, ") ", 2);
        return 0;
    }
    if (ch == '[') {
        r->p++;
        int negate = r->p < r->end && *r->p == '^';
        if (negate)
            r->p++;
        sb_add(r->out, "[", 1);
        if (negate)
            sb_add(r->out, "^" JSON_UNSAFE, strlen("^" JSON_UNSAFE));
        int first = 1;
        while (r->p < r->end && (*r->p != ']' || first)) {
            first = 0;
            unsigned char cc = (unsigned char)*r->p++;
            if (cc == '\\') {
                if (r->p >= r->end)
                    return rx_fail(r, "a trailing backslash");
                char e = *r->p++;
                if (!rx_escape_class(r, e, 1)) {
                    if (e == 'n')
                        sb_add(r->out, "\\n", 2);
                    else if (e == 't')
                        sb_add(r->out, "\\t", 2);
                    else if ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z') ||
                             (e >= '0' && e <= '9'))
                        return rx_fail(r, "an escape like \\b, \\p or a backreference");
                    else if (e != '"' && e != '\\')
                        rx_class_char(r, (unsigned char)e);
                }
            } else if (cc == '-' && r->p < r->end && *r->p != ']') {
                sb_add(r->out, "-", 1);
            } else if (cc >= 0x80) {
                if (rx_copy_multibyte(r, 0) < 0)
                    return -1;
            } else if (cc != '"' && cc >= 0x20) { /* JSON-unsafe ones left out, see above */
                rx_class_char(r, cc);
            }
        }
        if (r->p >= r->end)
            return rx_fail(r, "an unclosed [");
        r->p++;
        sb_add(r->out, "] ", 2);
        return 0;
    }
    if (ch == '.') {
        r->p++;
        sb_add(r->out, "[^" JSON_UNSAFE "] ", strlen("[^" JSON_UNSAFE "] "));
        return 0;
    }
    if (ch == '\\') {
        r->p++;
        if (r->p >= r->end)
            return rx_fail(r, "a trailing backslash");
        char e = *r->p++;
        if (rx_escape_class(r, e, 0)) {
            sb_add(r->out, " ", 1);
            return 0;
        }
        if ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z') || (e >= '0' && e <= '9'))
            return rx_fail(r, "an escape like \\b, \\p or a backreference");
        ch = e;
    } else {
        if (ch == '*' || ch == '+' || ch == '?' || ch == '{' || ch == ')' || ch == '|')
            return rx_fail(r, "a misplaced operator");
        r->p++;
    }
    /* A literal character, written as JSON writes it inside a string. */
    if (ch == '"' || ch == '\\')
        sb_printf(r->out, "\"\\\\\\%c\" ", ch);
    else if ((unsigned char)ch < 0x20)
        return rx_fail(r, "a control character");
    else if ((unsigned char)ch >= 0x80)
        return rx_copy_multibyte(r, 1);
    else {
        sb_literal(r->out, &ch, 1);
        sb_add(r->out, " ", 1);
    }
    return 0;
}

static int rx_sequence(rx *r)
{
    int any = 0;
    while (r->p < r->end && *r->p != '|' && *r->p != ')') {
        if (*r->p == '^' && !any) {
            r->p++;
            continue;
        }
        if (*r->p == '$' && r->p + 1 == r->end) {
            r->p++;
            continue;
        }
        if (*r->p == '^' || *r->p == '$')
            return rx_fail(r, "an anchor inside the pattern");
        size_t mark = r->out->n;
        sb_add(r->out, "( ", 2);
        if (rx_atom(r) < 0)
            return -1;
        sb_add(r->out, ") ", 2);
        any = 1;
        if (r->p < r->end && (*r->p == '*' || *r->p == '+' || *r->p == '?')) {
            r->out->n--; /* attach the operator to the group */
            sb_printf(r->out, "%c ", *r->p);
            r->p++;
        } else if (r->p < r->end && *r->p == '{') {
            long long m = 0, n = -1;
            char *q;
            m = strtoll(r->p + 1, &q, 10);
            if (q == r->p + 1 || m < 0 || m > 1000)
                return rx_fail(r, "a {m,n} it cannot read (bounds must be 0..1000)");
            if (*q == ',') {
                if (q[1] == '}') {
                    q++;
                } else {
                    char *q2;
                    n = strtoll(q + 1, &q2, 10);
                    if (q2 == q + 1 || n < m || n > 1000)
                        return rx_fail(r, "a {m,n} it cannot read (bounds must be 0..1000)");
                    q = q2;
                }
            } else {
                n = m;
            }
            if (q >= r->end || *q != '}')
                return rx_fail(r, "a {m,n} it cannot read (bounds must be 0..1000)");
            r->p = q + 1;
            r->out->n--;
            repeat_suffix(r->out, m, n);
            sb_add(r->out, " ", 1);
        }
        if (r->p < r->end && (*r->p == '*' || *r->p == '+' || *r->p == '?' || *r->p == '{'))
            return rx_fail(r, "a lazy or possessive quantifier");
        (void)mark;
    }
    if (!any)
        sb_add(r->out, "\"\" ", 3);
    return 0;
}

static int rx_alternatives(rx *r)
{
    for (;;) {
        if (rx_sequence(r) < 0)
            return -1;
        if (r->p >= r->end || *r->p != '|')
            return 0;
        r->p++;
        sb_add(r->out, "| ", 2);
    }
}

/* ---- types ---------------------------------------------------------------------------- */

static int string_rule(conv *c, const json_t *s, const char *path)
{
    static const char *const keys[] = {"type", "minLength", "maxLength", "pattern", "format", NULL};
    if (check_keys(c, s, path, keys) < 0)
        return -1;
    long long min = 0, max = -1;
    if (get_count(c, s, "minLength", path, &min) < 0 ||
        get_count(c, s, "maxLength", path, &max) < 0)
        return -1;
    if (max >= 0 && max < min)
        return fail(c, path, "'maxLength' is smaller than 'minLength': no string can match");
    json_t *pattern = json_object_get(s, "pattern");
    json_t *format = json_object_get(s, "format");
    if ((pattern || format) && (json_object_get(s, "minLength") || json_object_get(s, "maxLength")))
        return fail(c, path, "unsupported JSON Schema keyword '%s' together with '%s'",
                    json_object_get(s, "minLength") ? "minLength" : "maxLength",
                    pattern ? "pattern" : "format");
    if (pattern && format)
        return fail(c, path, "unsupported JSON Schema keyword 'format' together with 'pattern'");
    int id = new_rule(c);
    sbuf body = {0};
    if (pattern) {
        if (!json_is_string(pattern))
            return fail(c, path, "'pattern' must be a string");
        char sub[512];
        child_path(sub, sizeof sub, path, "pattern");
        rx r = {.c = c,
                .p = json_string_value(pattern),
                .end = json_string_value(pattern) + json_string_length(pattern),
                .path = sub,
                .out = &body};
        if (rx_alternatives(&r) < 0 || (r.p < r.end && (rx_fail(&r, "an unmatched )"), 1))) {
            free(body.s);
            return -1;
        }
    } else if (format) {
        const char *f = json_is_string(format) ? json_string_value(format) : "";
        const char *date = "[0-9]{4} \"-\" ( \"0\" [1-9] | \"1\" [0-2] ) \"-\" ( \"0\" [1-9] | "
                           "[12] [0-9] | \"3\" [01] )";
        const char *time = "( [01] [0-9] | \"2\" [0-3] ) \":\" [0-5] [0-9] \":\" [0-5] [0-9] "
                           "( \".\" [0-9]{1,6} )? ( \"Z\" | [+-] ( [01] [0-9] | \"2\" [0-3] ) "
                           "\":\" [0-5] [0-9] )";
        if (strcmp(f, "date") == 0)
            sb_printf(&body, "%s", date);
        else if (strcmp(f, "time") == 0)
            sb_printf(&body, "%s", time);
        else if (strcmp(f, "date-time") == 0)
            sb_printf(&body, "%s \"T\" %s", date, time);
        else if (strcmp(f, "uuid") == 0)
            sb_printf(&body, "[0-9a-f]{8} \"-\" [0-9a-f]{4} \"-\" [0-9a-f]{4} \"-\" [0-9a-f]{4} "
                             "\"-\" [0-9a-f]{12}");
        else if (strcmp(f, "email") == 0)
            sb_printf(&body,
                      "[a-zA-Z0-9_+-] ( [a-zA-Z0-9._+-]{0,14} [a-zA-Z0-9_+-] )? \"@\" "
                      "[a-zA-Z0-9] [a-zA-Z0-9-]{0,14} ( \".\" [a-zA-Z0-9] [a-zA-Z0-9-]{0,14} )"
                      "? \".\" [a-zA-Z]{2,6}");
        else
            return fail(c, path,
                        "unsupported string 'format' \"%s\" (supported: date, time, "
                        "date-time, uuid, email)",
                        f);
    } else {
        sb_add(&body, "char", 4);
        repeat_suffix(&body, min, max);
    }
    if (body.oom) {
        free(body.s);
        return fail(c, path, "out of memory");
    }
    sb_printf(&c->rules, "r%d ::= \"\\\"\" %s \"\\\"\" ws\n", id, body.s ? body.s : "");
    free(body.s);
    return id;
}

static int array_rule(conv *c, const json_t *s, const char *path)
{
    static const char *const keys[] = {"type", "items", "minItems", "maxItems", NULL};
    if (check_keys(c, s, path, keys) < 0)
        return -1;
    long long min = 0, max = -1;
    if (get_count(c, s, "minItems", path, &min) < 0 || get_count(c, s, "maxItems", path, &max) < 0)
        return -1;
    if (max >= 0 && max < min)
        return fail(c, path, "'maxItems' is smaller than 'minItems': no array can match");
    json_t *items = json_object_get(s, "items");
    char sub[512];
    child_path(sub, sizeof sub, path, "items");
    int item = -1;
    if (items && (item = convert(c, items, sub)) < 0)
        return -1;
    char item_name[32];
    if (item >= 0)
        snprintf(item_name, sizeof item_name, "r%d", item);
    else
        snprintf(item_name, sizeof item_name, "value");
    int id = new_rule(c);
    sb_printf(&c->rules, "r%d ::= \"[\" ws ", id);
    if (max == 0) {
        /* nothing inside */
    } else if (min == 0) {
        sb_printf(&c->rules, "( %s ( \",\" ws %s )", item_name, item_name);
        repeat_suffix(&c->rules, 0, max < 0 ? -1 : max - 1);
        sb_add(&c->rules, " )?", 3);
    } else {
        sb_printf(&c->rules, "%s ( \",\" ws %s )", item_name, item_name);
        repeat_suffix(&c->rules, min - 1, max < 0 ? -1 : max - 1);
    }
    sb_add(&c->rules, " \"]\" ws\n", 8);
    return id;
}

static int object_rule(conv *c, const json_t *s, const char *path)
{
    static const char *const keys[] = {"type", "properties", "required", "additionalProperties",
                                       NULL};
    if (check_keys(c, s, path, keys) < 0)
        return -1;
    json_t *props = json_object_get(s, "properties");
    json_t *required = json_object_get(s, "required");
    json_t *additional = json_object_get(s, "additionalProperties");
    if (props && !json_is_object(props))
        return fail(c, path, "'properties' must be an object");
    if (required && !json_is_array(required))
        return fail(c, path, "'required' must be an array of property names");
    if (additional && !json_is_boolean(additional) && !json_is_object(additional))
        return fail(c, path, "'additionalProperties' must be a boolean or a schema");
    size_t n = props ? json_object_size(props) : 0;
    size_t i;
    json_t *r;
    json_array_foreach(required, i, r)
    {
        if (!json_is_string(r))
            return fail(c, path, "'required' must be an array of property names");
        if (!props || !json_object_get(props, json_string_value(r)))
            return fail(c, path,
                        "required property '%s' is not in 'properties' (extra "
                        "properties are never generated)",
                        json_string_value(r));
    }
    if (n == 0) {
        /* No declared properties: any object (unless additionalProperties is false). */
        int id = new_rule(c);
        if (additional && json_is_false(additional))
            sb_printf(&c->rules, "r%d ::= \"{\" ws \"}\" ws\n", id);
        else
            sb_printf(&c->rules, "r%d ::= object\n", id);
        return id;
    }
    /* Properties in declared order; optional ones may be left out. first_k starts the object at
     * property k, rest_k continues after a property has been written. */
    const char **names = malloc(n * sizeof *names);
    int *value = malloc(n * sizeof *value);
    int *is_req = calloc(n, sizeof *is_req);
    /* The required names as a set: scanning 'required' for each property was quadratic (1 MiB
     * of schema, 28,000 properties, took seconds). */
    json_t *required_set = json_object();
    bool sets_ok = required_set != NULL;
    json_array_foreach(required, i, r)
        sets_ok = sets_ok &&
                  json_object_set_new(required_set, json_string_value(r), json_true()) == 0;
    if (!names || !value || !is_req || !sets_ok) {
        free(names);
        free(value);
        free(is_req);
        json_decref(required_set);
        return fail(c, path, "out of memory");
    }
    const char *key;
    json_t *sub;
    size_t k = 0;
    json_object_foreach(props, key, sub)
    {
        char subpath[512];
        snprintf(subpath, sizeof subpath, "%s/properties/%s", path, key);
        names[k] = key;
        value[k] = convert(c, sub, subpath);
        if (value[k] < 0) {
            free(names);
            free(value);
            free(is_req);
            json_decref(required_set);
            return -1;
        }
        is_req[k] = json_object_get(required_set, key) != NULL;
        k++;
    }
    json_decref(required_set);
    int base = c->next_rule;
    c->next_rule += (int)(2 * n + 2); /* first_k = base + k, rest_k = base + n + 1 + k */
    for (k = 0; k <= n; k++) {
        int first = base + (int)k, rest = base + (int)(n + 1 + k);
        if (k == n) {
            sb_printf(&c->rules, "r%d ::= \"\"\nr%d ::= \"\"\n", first, rest);
            continue;
        }
        json_t *name = json_string(names[k]);
        char *quoted = name ? json_dumps(name, JSON_ENCODE_ANY) : NULL;
        json_decref(name);
        if (!quoted) {
            free(names);
            free(value);
            free(is_req);
            return fail(c, path, "out of memory");
        }
        sb_printf(&c->rules, "r%d ::= ", first);
        sb_literal(&c->rules, quoted, strlen(quoted));
        sb_printf(&c->rules, " ws \":\" ws r%d r%d", value[k], rest + 1);
        if (!is_req[k])
            sb_printf(&c->rules, " | r%d", first + 1);
        sb_printf(&c->rules, "\nr%d ::= \",\" ws ", rest);
        sb_literal(&c->rules, quoted, strlen(quoted));
        sb_printf(&c->rules, " ws \":\" ws r%d r%d", value[k], rest + 1);
        if (!is_req[k])
            sb_printf(&c->rules, " | r%d", rest + 1);
        sb_add(&c->rules, "\n", 1);
        free(quoted);
    }
    free(names);
    free(value);
    free(is_req);
    int id = new_rule(c);
    sb_printf(&c->rules, "r%d ::= \"{\" ws r%d \"}\" ws\n", id, base);
    return id;
}

/* The rule of a $ref target, made once per pointer. */
static int ref_rule_of(conv *c, const char *ref, const char *path)
{
    for (int i = 0; i < c->n_refs; i++)
        if (strcmp(c->refs[i].pointer, ref) == 0)
            return c->refs[i].id;
    const json_t *target = NULL;
    if (strcmp(ref, "#") == 0) {
        target = c->root;
    } else if (strncmp(ref, "#/$defs/", 8) == 0 || strncmp(ref, "#/definitions/", 14) == 0) {
        const char *name = strchr(ref + 2, '/') + 1;
        json_t *defs = json_object_get(c->root, ref[2] == '$' ? "$defs" : "definitions");
        if (strchr(name, '/') || strchr(name, '~') || strchr(name, '%'))
            return fail(c, path, "'$ref' \"%s\" is not of the form #/$defs/NAME", ref);
        target = defs ? json_object_get(defs, name) : NULL;
    } else {
        return fail(c, path,
                    "unsupported '$ref' \"%s\" (only #, #/$defs/NAME and "
                    "#/definitions/NAME)",
                    ref);
    }
    if (!target)
        return fail(c, path, "'$ref' \"%s\" points at nothing", ref);
    if (c->n_refs == c->cap_refs) {
        int cap = c->cap_refs ? c->cap_refs * 2 : 8;
        ref_rule *n = realloc(c->refs, (size_t)cap * sizeof *n);
        if (!n)
            return fail(c, path, "out of memory");
        c->refs = n;
        c->cap_refs = cap;
    }
    /* Register before converting so that a recursive reference finds the rule. */
    int id = new_rule(c);
    c->refs[c->n_refs].pointer = strdup(ref);
    c->refs[c->n_refs].id = id;
    if (!c->refs[c->n_refs].pointer)
        return fail(c, path, "out of memory");
    c->n_refs++;
    int body = convert(c, target, ref + 1);
    if (body < 0)
        return -1;
    sb_printf(&c->rules, "r%d ::= r%d\n", id, body);
    return id;
}

static int one_type(conv *c, const json_t *s, const char *type, const char *path, int in_union)
{
    if (strcmp(type, "string") == 0)
        return string_rule(c, s, path);
    if (strcmp(type, "object") == 0)
        return object_rule(c, s, path);
    if (strcmp(type, "array") == 0)
        return array_rule(c, s, path);
    static const char *const plain[] = {"type", NULL};
    const char *base = strcmp(type, "number") == 0    ? "number"
                       : strcmp(type, "integer") == 0 ? "integer"
                       : strcmp(type, "boolean") == 0 ? "boolean"
                       : strcmp(type, "null") == 0    ? "null"
                                                      : NULL;
    if (!base)
        return fail(c, path, "unknown 'type' \"%s\"", type);
    if (!in_union && check_keys(c, s, path, plain) < 0)
        return -1;
    int id = new_rule(c);
    sb_printf(&c->rules, "r%d ::= %s\n", id, base);
    return id;
}

static int convert(conv *c, const json_t *s, const char *path)
{
    if (c->failed)
        return -1;
    if (json_is_true(s))
        s = NULL; /* true: anything */
    else if (json_is_false(s))
        return fail(c, path, "the schema false admits nothing");
    else if (!json_is_object(s))
        return fail(c, path, "a schema must be an object or a boolean");
    if (++c->depth > STRUCTURED_MAX_DEPTH)
        return fail(c, path, "the schema nests more than %d levels deep", STRUCTURED_MAX_DEPTH);
    if (c->rules.n > STRUCTURED_MAX_GRAMMAR)
        return fail(c, path, "the schema makes a grammar larger than 1 MiB");
    int id = -1;
    json_t *v;
    char sub[512];
    if (!s || only_annotations(s)) {
        /* Only annotations (or nothing): any JSON value. */
        id = new_rule(c);
        sb_printf(&c->rules, "r%d ::= value ws\n", id);
    } else if ((v = json_object_get(s, "$ref"))) {
        static const char *const keys[] = {"$ref", NULL};
        if (!json_is_string(v))
            return fail(c, path, "'$ref' must be a string");
        if (check_keys(c, s, path, keys) < 0)
            return -1;
        id = ref_rule_of(c, json_string_value(v), path);
    } else if ((v = json_object_get(s, "const"))) {
        static const char *const keys[] = {"const", "type", NULL};
        if (check_keys(c, s, path, keys) < 0)
            return -1;
        id = new_rule(c);
        sb_printf(&c->rules, "r%d ::= ", id);
        literal_value(c, v);
        sb_add(&c->rules, " ws\n", 4);
    } else if ((v = json_object_get(s, "enum"))) {
        static const char *const keys[] = {"enum", "type", NULL};
        if (check_keys(c, s, path, keys) < 0)
            return -1;
        if (!json_is_array(v) || json_array_size(v) == 0)
            return fail(c, path, "'enum' must be a non-empty array");
        id = new_rule(c);
        sb_printf(&c->rules, "r%d ::= ( ", id);
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e)
        {
            if (i)
                sb_add(&c->rules, " | ", 3);
            literal_value(c, e);
        }
        sb_add(&c->rules, " ) ws\n", 6);
    } else if ((v = json_object_get(s, "anyOf")) || (v = json_object_get(s, "oneOf"))) {
        const char *kw = json_object_get(s, "anyOf") ? "anyOf" : "oneOf";
        const char *const keys[] = {kw, NULL};
        if (check_keys(c, s, path, keys) < 0)
            return -1;
        if (!json_is_array(v) || json_array_size(v) == 0)
            return fail(c, path, "'%s' must be a non-empty array of schemas", kw);
        size_t n = json_array_size(v);
        int *alts = malloc(n * sizeof *alts);
        if (!alts)
            return fail(c, path, "out of memory");
        for (size_t i = 0; i < n; i++) {
            snprintf(sub, sizeof sub, "%s/%s/%zu", path, kw, i);
            alts[i] = convert(c, json_array_get(v, i), sub);
            if (alts[i] < 0) {
                free(alts);
                return -1;
            }
        }
        id = new_rule(c);
        sb_printf(&c->rules, "r%d ::= ", id);
        for (size_t i = 0; i < n; i++)
            sb_printf(&c->rules, "%sr%d", i ? " | " : "", alts[i]);
        sb_add(&c->rules, "\n", 1);
        free(alts);
    } else if ((v = json_object_get(s, "type"))) {
        if (json_is_string(v)) {
            id = one_type(c, s, json_string_value(v), path, 0);
        } else if (json_is_array(v) && json_array_size(v) > 0) {
            size_t n = json_array_size(v);
            int *alts = malloc(n * sizeof *alts);
            if (!alts)
                return fail(c, path, "out of memory");
            for (size_t i = 0; i < n; i++) {
                json_t *t = json_array_get(v, i);
                alts[i] = json_is_string(t) ? one_type(c, s, json_string_value(t), path, 1)
                                            : fail(c, path, "'type' must name types as strings");
                if (alts[i] < 0) {
                    free(alts);
                    return -1;
                }
            }
            id = new_rule(c);
            sb_printf(&c->rules, "r%d ::= ", id);
            for (size_t i = 0; i < n; i++)
                sb_printf(&c->rules, "%sr%d", i ? " | " : "", alts[i]);
            sb_add(&c->rules, "\n", 1);
            free(alts);
        } else {
            return fail(c, path, "'type' must be a string or a non-empty array of strings");
        }
    } else {
        /* No type: infer it from the keywords, or refuse the first one that means nothing. */
        if (json_object_get(s, "properties") || json_object_get(s, "required") ||
            json_object_get(s, "additionalProperties"))
            id = one_type(c, s, "object", path, 0);
        else if (json_object_get(s, "items") || json_object_get(s, "minItems") ||
                 json_object_get(s, "maxItems"))
            id = one_type(c, s, "array", path, 0);
        else if (json_object_get(s, "pattern") || json_object_get(s, "format") ||
                 json_object_get(s, "minLength") || json_object_get(s, "maxLength"))
            id = one_type(c, s, "string", path, 0);
        else
            id = check_keys(c, s, path, (const char *const[]){NULL});
    }
    c->depth--;
    if (c->rules.oom)
        return fail(c, path, "out of memory");
    return c->failed ? -1 : id;
}

char *ellm_structured_schema_to_grammar(const json_t *schema, char *err, size_t err_cap)
{
    char scratch[8];
    if (!err) {
        err = scratch;
        err_cap = sizeof scratch;
    }
    conv c = {.root = schema, .err = err, .err_cap = err_cap};
    err[0] = 0;
    sb_add(&c.rules, BASE_RULES, strlen(BASE_RULES));
    int root = convert(&c, schema, "");
    for (int i = 0; i < c.n_refs; i++)
        free(c.refs[i].pointer);
    free(c.refs);
    if (root < 0 || c.rules.oom) {
        if (!c.failed)
            snprintf(err, err_cap, "out of memory converting the schema");
        free(c.rules.s);
        return NULL;
    }
    if (c.rules.n > STRUCTURED_MAX_GRAMMAR) {
        snprintf(err, err_cap, "the schema makes a grammar larger than 1 MiB");
        free(c.rules.s);
        return NULL;
    }
    sb_printf(&c.rules, "root ::= r%d\n", root);
    if (c.rules.oom) {
        free(c.rules.s);
        snprintf(err, err_cap, "out of memory converting the schema");
        return NULL;
    }
    return c.rules.s;
}

char *ellm_structured_schema_text_to_grammar(const char *text, size_t len, char *err,
                                             size_t err_cap)
{
    json_error_t je;
    json_t *schema = json_loadb(text, len, JSON_DECODE_ANY, &je);
    if (!schema) {
        snprintf(err, err_cap, "the schema is not valid JSON: %s (line %d, column %d)", je.text,
                 je.line, je.column);
        return NULL;
    }
    char *g = ellm_structured_schema_to_grammar(schema, err, err_cap);
    json_decref(schema);
    return g;
}
