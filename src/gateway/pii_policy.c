/* PII policies: which built-in detectors run, the user's terms and PCRE2 patterns, and values
 * that are never redacted. Read from the "pii" member of a JSON policy file. */
#define _POSIX_C_SOURCE 200809L /* strdup */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <jansson.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mapped_file.h"
#include "core/status.h"
#include "core/utf8.h"
#include "gateway/pii_policy_internal.h"

enum {
    POLICY_FILE_MAX = 16 << 20,
    TYPE_NAME_MAX = 32,
    TERM_MAX = 256,
    PATTERN_MAX = 4096,
    MATCH_LIMIT = 5000000,
    DEPTH_LIMIT = 100000,
};

typedef struct custom_pattern {
    char *type;
    pcre2_code *code;
} custom_pattern;

struct pii_policy {
    bool disabled[PII_BUILTIN_COUNT];
    custom_pattern *patterns;
    size_t n_patterns;
    char **allow;
    size_t n_allow;
    pcre2_match_context *match_context;
};

void ellm_pii_policy_free(pii_policy *policy)
{
    if (!policy)
        return;
    for (size_t k = 0; k < policy->n_patterns; k++) {
        free(policy->patterns[k].type);
        pcre2_code_free(policy->patterns[k].code);
    }
    free(policy->patterns);
    for (size_t k = 0; k < policy->n_allow; k++)
        free(policy->allow[k]);
    free(policy->allow);
    pcre2_match_context_free(policy->match_context);
    free(policy);
}

static edgellm_status policy_new(pii_policy **out)
{
    pii_policy *p = calloc(1, sizeof *p);
    if (!p || !(p->match_context = pcre2_match_context_create(NULL))) {
        free(p);
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the PII policy");
    }
    /* A pattern that backtracks without end must fail, not hang the request. */
    pcre2_set_match_limit(p->match_context, MATCH_LIMIT);
    pcre2_set_depth_limit(p->match_context, DEPTH_LIMIT);
    *out = p;
    return EDGELLM_OK;
}

edgellm_status ellm_pii_policy_default(pii_policy **out) { return policy_new(out); }

bool ellm_pii_policy_enabled(const pii_policy *policy, pii_builtin type)
{
    return !policy->disabled[type];
}

bool ellm_pii_policy_allows(const pii_policy *policy, const char *value, size_t len)
{
    for (size_t k = 0; k < policy->n_allow; k++)
        if (strlen(policy->allow[k]) == len && memcmp(policy->allow[k], value, len) == 0)
            return true;
    return false;
}

static bool valid_type_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > TYPE_NAME_MAX || !pii_is_upper((unsigned char)s[0]))
        return false;
    for (size_t k = 1; k < n; k++)
        if (!pii_is_upper((unsigned char)s[k]) && !pii_is_digit((unsigned char)s[k]) && s[k] != '_')
            return false;
    return true;
}

static edgellm_status add_pattern(pii_policy *p, const char *origin, const char *type,
                                  const char *regex, size_t regex_len, const char *what)
{
    int code;
    PCRE2_SIZE offset;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)regex, regex_len,
                                   PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | PCRE2_UCP, &code, &offset,
                                   NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        return ellm_fail(EDGELLM_ERR_FORMAT, "%s: %s for %s: %s at offset %zu", origin, what, type,
                         (const char *)msg, (size_t)offset);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* without JIT the interpreter runs it */
    custom_pattern *bigger = realloc(p->patterns, (p->n_patterns + 1) * sizeof *bigger);
    char *type_copy = strdup(type);
    if (!bigger || !type_copy) {
        if (bigger)
            p->patterns = bigger;
        free(type_copy);
        pcre2_code_free(re);
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the PII policy");
    }
    p->patterns = bigger;
    p->patterns[p->n_patterns++] = (custom_pattern){type_copy, re};
    return EDGELLM_OK;
}

static int longer_first(const void *pa, const void *pb)
{
    size_t a = strlen(*(const char *const *)pa), b = strlen(*(const char *const *)pb);
    return a > b ? -1 : a < b;
}

/* One pattern for a type's terms: any of them, case-insensitive, not inside a longer word. */
static edgellm_status add_terms(pii_policy *p, const char *origin, const char *type, json_t *list)
{
    if (!json_is_array(list) || json_array_size(list) == 0)
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "%s: pii.terms.%s must be a non-empty array of strings", origin, type);
    size_t n = json_array_size(list);
    const char **terms = malloc(n * sizeof *terms);
    if (!terms)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the PII policy");
    size_t total = 0;
    for (size_t k = 0; k < n; k++) {
        json_t *t = json_array_get(list, k);
        size_t m = json_is_string(t) ? json_string_length(t) : 0;
        if (m == 0 || m > TERM_MAX) {
            free(terms);
            return ellm_fail(EDGELLM_ERR_FORMAT,
                             "%s: pii.terms.%s[%zu] must be a string of 1 to %d bytes", origin,
                             type, k, TERM_MAX);
        }
        terms[k] = json_string_value(t);
        total += 2 * m + 1;
    }
    qsort(terms, n, sizeof *terms, longer_first);
    static const char head[] = "(?i)(?<![\\p{L}\\p{N}_])(?:";
    static const char tail[] = ")(?![\\p{L}\\p{N}_])";
    char *re = malloc(sizeof head + total + sizeof tail);
    if (!re) {
        free(terms);
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the PII policy");
    }
    size_t len = 0;
    memcpy(re, head, sizeof head - 1);
    len += sizeof head - 1;
    for (size_t k = 0; k < n; k++) {
        if (k)
            re[len++] = '|';
        for (const char *c = terms[k]; *c; c++) {
            unsigned char ch = (unsigned char)*c;
            if (ch < 0x80 && !pii_is_alnum(ch))
                re[len++] = '\\';
            re[len++] = (char)ch;
        }
    }
    memcpy(re + len, tail, sizeof tail - 1);
    len += sizeof tail - 1;
    free(terms);
    edgellm_status st = add_pattern(p, origin, type, re, len, "the terms");
    free(re);
    return st;
}

static edgellm_status parse_patterns(pii_policy *p, const char *origin, json_t *obj)
{
    if (!json_is_object(obj))
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "%s: pii.patterns must be an object {\"TYPE\": \"regex\" or [...]}",
                         origin);
    const char *type;
    json_t *value;
    json_object_foreach(obj, type, value)
    {
        if (!valid_type_name(type))
            return ellm_fail(EDGELLM_ERR_FORMAT,
                             "%s: pii.patterns: type name '%.40s' must be 1-%d of A-Z, 0-9, _ "
                             "starting with a letter",
                             origin, type, TYPE_NAME_MAX);
        size_t n = json_is_array(value) ? json_array_size(value) : 1;
        if (json_is_array(value) && n == 0)
            return ellm_fail(EDGELLM_ERR_FORMAT, "%s: pii.patterns.%s is an empty array", origin,
                             type);
        for (size_t k = 0; k < n; k++) {
            json_t *re = json_is_array(value) ? json_array_get(value, k) : value;
            size_t m = json_is_string(re) ? json_string_length(re) : 0;
            if (m == 0 || m > PATTERN_MAX)
                return ellm_fail(EDGELLM_ERR_FORMAT,
                                 "%s: pii.patterns.%s must be a regular expression string of 1 "
                                 "to %d bytes (or an array of them)",
                                 origin, type, PATTERN_MAX);
            edgellm_status st = add_pattern(p, origin, type, json_string_value(re), m,
                                            "the pattern");
            if (st != EDGELLM_OK)
                return st;
        }
    }
    return EDGELLM_OK;
}

static edgellm_status parse_terms(pii_policy *p, const char *origin, json_t *obj)
{
    if (!json_is_object(obj))
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "%s: pii.terms must be an object {\"TYPE\": [\"term\", ...]}", origin);
    const char *type;
    json_t *value;
    json_object_foreach(obj, type, value)
    {
        if (!valid_type_name(type))
            return ellm_fail(EDGELLM_ERR_FORMAT,
                             "%s: pii.terms: type name '%.40s' must be 1-%d of A-Z, 0-9, _ "
                             "starting with a letter",
                             origin, type, TYPE_NAME_MAX);
        edgellm_status st = add_terms(p, origin, type, value);
        if (st != EDGELLM_OK)
            return st;
    }
    return EDGELLM_OK;
}

static edgellm_status parse_disable(pii_policy *p, const char *origin, json_t *list)
{
    if (!json_is_array(list))
        return ellm_fail(EDGELLM_ERR_FORMAT, "%s: pii.disable must be an array of type names",
                         origin);
    for (size_t k = 0; k < json_array_size(list); k++) {
        const char *name = json_string_value(json_array_get(list, k));
        int found = -1;
        for (int t = 0; name && t < PII_BUILTIN_COUNT; t++)
            if (strcmp(name, ellm_pii_builtin_name((pii_builtin)t)) == 0)
                found = t;
        if (found < 0)
            return ellm_fail(EDGELLM_ERR_FORMAT,
                             "%s: pii.disable[%zu] is not a built-in type (EMAIL, PHONE, CARD, "
                             "IBAN, SSN, IP_ADDRESS, URL_CREDENTIALS, SECRET, DOB)",
                             origin, k);
        p->disabled[found] = true;
    }
    return EDGELLM_OK;
}

static edgellm_status parse_allow(pii_policy *p, const char *origin, json_t *list)
{
    if (!json_is_array(list))
        return ellm_fail(EDGELLM_ERR_FORMAT, "%s: pii.allow must be an array of strings", origin);
    size_t n = json_array_size(list);
    p->allow = calloc(n ? n : 1, sizeof *p->allow);
    if (!p->allow)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the PII policy");
    for (size_t k = 0; k < n; k++) {
        json_t *v = json_array_get(list, k);
        if (!json_is_string(v) || json_string_length(v) == 0)
            return ellm_fail(EDGELLM_ERR_FORMAT, "%s: pii.allow[%zu] must be a non-empty string",
                             origin, k);
        if (!(p->allow[p->n_allow++] = strdup(json_string_value(v))))
            return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the PII policy");
    }
    return EDGELLM_OK;
}

static edgellm_status parse_pii(pii_policy *p, const char *origin, json_t *pii)
{
    if (!json_is_object(pii))
        return ellm_fail(EDGELLM_ERR_FORMAT, "%s: \"pii\" must be an object", origin);
    const char *key;
    json_t *value;
    json_object_foreach(pii, key, value)
    {
        edgellm_status st;
        if (strcmp(key, "terms") == 0)
            st = parse_terms(p, origin, value);
        else if (strcmp(key, "patterns") == 0)
            st = parse_patterns(p, origin, value);
        else if (strcmp(key, "disable") == 0)
            st = parse_disable(p, origin, value);
        else if (strcmp(key, "allow") == 0)
            st = parse_allow(p, origin, value);
        else
            st = ellm_fail(EDGELLM_ERR_FORMAT,
                           "%s: unknown key pii.%.40s (expected terms, patterns, disable, allow)",
                           origin, key);
        if (st != EDGELLM_OK)
            return st;
    }
    return EDGELLM_OK;
}

edgellm_status ellm_pii_policy_parse(const char *json, size_t len, const char *origin,
                                     pii_policy **out)
{
    *out = NULL;
    if (!origin)
        origin = "policy";
    json_error_t err;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &err);
    if (!root) {
        /* jansson quotes the offending token ("... near 'Alice'"): the policy's terms are
         * personal data too, so the message stops before the quote. */
        char *near = strstr(err.text, " near '");
        if (near)
            *near = '\0';
        return ellm_fail(EDGELLM_ERR_FORMAT, "%s: not valid JSON (line %d, column %d: %s)", origin,
                         err.line, err.column, err.text);
    }
    if (!json_is_object(root)) {
        json_decref(root);
        return ellm_fail(EDGELLM_ERR_FORMAT, "%s: the policy must be a JSON object", origin);
    }
    pii_policy *p = NULL;
    edgellm_status st = policy_new(&p);
    json_t *pii = json_object_get(root, "pii");
    if (st == EDGELLM_OK && pii)
        st = parse_pii(p, origin, pii);
    json_decref(root);
    if (st != EDGELLM_OK) {
        ellm_pii_policy_free(p);
        return st;
    }
    *out = p;
    return EDGELLM_OK;
}

edgellm_status ellm_pii_policy_load(const char *path, pii_policy **out)
{
    *out = NULL;
    FILE *f = ellm_fopen_regular(path);
    if (!f)
        return ellm_fail_wrap(EDGELLM_ERR_IO, "cannot open the policy file");
    char *buf = malloc(POLICY_FILE_MAX + 1);
    size_t n = buf ? fread(buf, 1, POLICY_FILE_MAX + 1, f) : 0;
    bool failed = ferror(f) != 0;
    fclose(f);
    if (!buf || failed || n > POLICY_FILE_MAX) {
        free(buf);
        return ellm_fail(failed ? EDGELLM_ERR_IO : EDGELLM_ERR_FORMAT, "policy file '%s': %s", path,
                         failed ? "read error" : "larger than 16 MiB");
    }
    edgellm_status st = ellm_pii_policy_parse(buf, n, path, out);
    free(buf);
    return st;
}

/* Steps past one character (one byte where none is well-formed), so a retry after an empty
 * match never starts mid-character. */
static size_t next_char(const char *text, size_t len, size_t pos)
{
    uint32_t cp;
    size_t n = ellm_utf8_next(text + pos, len - pos, &cp);
    return pos + (n ? n : 1);
}

edgellm_status ellm_pii_policy_find_custom(const pii_policy *policy, const char *text, size_t len,
                                           pii_candidates *c)
{
    for (size_t k = 0; k < policy->n_patterns; k++) {
        const custom_pattern *cp = &policy->patterns[k];
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(cp->code, NULL);
        if (!md)
            return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory to match pattern %s", cp->type);
        size_t pos = 0;
        int rc = 0;
        while (pos <= len) {
            rc = pcre2_match(cp->code, (PCRE2_SPTR)(text ? text : ""), len, pos, 0, md,
                             policy->match_context);
            if (rc < 0)
                break;
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            if (ov[1] > ov[0]) {
                ellm_pii_candidates_add_custom(c, ov[0], ov[1], cp->type);
                pos = ov[1];
            } else {
                pos = next_char(text, len, ov[0] > pos ? ov[0] : pos);
            }
        }
        pcre2_match_data_free(md);
        if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT ||
            rc == PCRE2_ERROR_HEAPLIMIT || rc == PCRE2_ERROR_JIT_STACKLIMIT)
            return ellm_fail(EDGELLM_ERR_UNSUPPORTED,
                             "the policy pattern for %s exceeded its match limit on this text "
                             "(simplify the pattern: nested repetition backtracks without end)",
                             cp->type);
        if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return ellm_fail(EDGELLM_ERR_UNSUPPORTED, "the policy pattern for %s failed: %s",
                             cp->type, (const char *)msg);
        }
    }
    return EDGELLM_OK;
}
