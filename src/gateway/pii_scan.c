/* Runs the detectors and resolves overlaps: the longest detection wins, at equal length a
 * policy type beats a built-in one and a real detection beats a shape. */
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "gateway/pii_internal.h"
#include "gateway/pii_policy_internal.h"

static const char *const builtin_names[PII_BUILTIN_COUNT] = {
    [PII_EMAIL] = "EMAIL",
    [PII_PHONE] = "PHONE",
    [PII_CARD] = "CARD",
    [PII_IBAN] = "IBAN",
    [PII_SSN] = "SSN",
    [PII_IP_ADDRESS] = "IP_ADDRESS",
    [PII_URL_CREDENTIALS] = "URL_CREDENTIALS",
    [PII_SECRET] = "SECRET",
    [PII_DOB] = "DOB",
};

const char *ellm_pii_builtin_name(pii_builtin type)
{
    return type >= 0 && type < PII_BUILTIN_COUNT ? builtin_names[type] : "UNKNOWN";
}

static void add(pii_candidates *c, size_t start, size_t end, const char *type, int builtin,
                bool shape)
{
    if (end <= start || c->out_of_memory)
        return;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 32;
        pii_candidate *bigger = realloc(c->items, cap * sizeof *bigger);
        if (!bigger) {
            c->out_of_memory = true;
            return;
        }
        c->items = bigger;
        c->cap = cap;
    }
    c->items[c->n++] = (pii_candidate){start, end, type, builtin, shape};
}

void ellm_pii_candidates_add(pii_candidates *c, size_t start, size_t end, pii_builtin type)
{
    add(c, start, end, builtin_names[type], (int)type, false);
}

void ellm_pii_candidates_add_shape(pii_candidates *c, size_t start, size_t end, pii_builtin type)
{
    add(c, start, end, builtin_names[type], (int)type, true);
}

void ellm_pii_candidates_add_custom(pii_candidates *c, size_t start, size_t end, const char *type)
{
    add(c, start, end, type, -1, false);
}

static int by_priority(const void *pa, const void *pb)
{
    const pii_candidate *a = pa, *b = pb;
    size_t la = a->end - a->start, lb = b->end - b->start;
    if (la != lb)
        return la > lb ? -1 : 1;
    if (a->shape != b->shape)
        return a->shape ? 1 : -1;
    if (a->builtin != b->builtin)
        return a->builtin < b->builtin ? -1 : 1;
    return a->start < b->start ? -1 : a->start > b->start;
}

static int by_start(const void *pa, const void *pb)
{
    const pii_entity *a = pa, *b = pb;
    return a->start < b->start ? -1 : a->start > b->start;
}

static bool range_free(const unsigned char *taken, size_t start, size_t end)
{
    for (size_t k = start; k < end; k++)
        if (taken[k >> 3] & (1u << (k & 7)))
            return false;
    return true;
}

static void range_take(unsigned char *taken, size_t start, size_t end)
{
    for (size_t k = start; k < end; k++)
        taken[k >> 3] |= (unsigned char)(1u << (k & 7));
}

edgellm_status ellm_pii_scan(const pii_policy *policy, const char *text, size_t len,
                             pii_entity **out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    if (!policy || (!text && len))
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "ellm_pii_scan: no policy or no text");
    pii_candidates c = {0};
    pii_folded folded;
    if (!ellm_pii_fold(text, len, &folded))
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the PII detections");
    ellm_pii_find_emails(folded.text, folded.len, &c);
    ellm_pii_find_url_credentials(folded.text, folded.len, &c);
    ellm_pii_find_private_keys(folded.text, folded.len, &c);
    ellm_pii_find_ipv6(folded.text, folded.len, &c);
    ellm_pii_find_numbers(&folded, &c);
    ellm_pii_find_words(folded.text, folded.len, &c);
    /* The built-in detections back in original offsets; the user's terms and patterns are
     * matched on the original text, as written in the policy. */
    if (folded.owned)
        for (size_t k = 0; k < c.n; k++) {
            c.items[k].end = ellm_pii_fold_end(&folded, c.items[k].end);
            c.items[k].start = ellm_pii_fold_start(&folded, c.items[k].start);
        }
    ellm_pii_fold_free(&folded);
    edgellm_status st = ellm_pii_policy_find_custom(policy, text, len, &c);
    if (st != EDGELLM_OK) {
        free(c.items);
        return st;
    }
    if (c.out_of_memory) {
        free(c.items);
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the PII detections");
    }
    size_t kept = 0;
    for (size_t k = 0; k < c.n; k++)
        if (c.items[k].builtin < 0 ||
            ellm_pii_policy_enabled(policy, (pii_builtin)c.items[k].builtin))
            c.items[kept++] = c.items[k];
    c.n = kept;
    if (c.n == 0) {
        free(c.items);
        return EDGELLM_OK;
    }
    qsort(c.items, c.n, sizeof *c.items, by_priority);
    unsigned char *taken = calloc(len / 8 + 1, 1);
    pii_entity *entities = malloc(c.n * sizeof *entities);
    if (!taken || !entities) {
        free(taken);
        free(entities);
        free(c.items);
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the PII detections");
    }
    size_t n = 0;
    for (size_t k = 0; k < c.n; k++) {
        const pii_candidate *cand = &c.items[k];
        if (!range_free(taken, cand->start, cand->end))
            continue;
        range_take(taken, cand->start, cand->end);
        if (cand->shape ||
            ellm_pii_policy_allows(policy, text + cand->start, cand->end - cand->start))
            continue;
        entities[n++] = (pii_entity){cand->start, cand->end, cand->type, NULL};
    }
    free(taken);
    free(c.items);
    if (n == 0) {
        free(entities);
        return EDGELLM_OK;
    }
    qsort(entities, n, sizeof *entities, by_start);
    *out = entities;
    *n_out = n;
    return EDGELLM_OK;
}

static int by_name(const void *pa, const void *pb)
{
    return strcmp(*(const char *const *)pa, *(const char *const *)pb);
}

size_t ellm_pii_describe_types(const pii_entity *entities, size_t n, char *buf, size_t cap)
{
    const char **names = n ? malloc(n * sizeof *names) : NULL;
    size_t n_names = 0, need = 0;
    bool fits = true;
    if (cap)
        buf[0] = '\0';
    if (n && !names)
        return 0;
    for (size_t k = 0; k < n; k++)
        names[n_names++] = entities[k].type;
    qsort(names, n_names, sizeof *names, by_name);
    for (size_t k = 0; k < n_names; k++) {
        if (k > 0 && strcmp(names[k], names[k - 1]) == 0)
            continue;
        const char *sep = need ? ", " : "";
        size_t m = strlen(sep) + strlen(names[k]);
        fits = fits && need + m < cap;
        if (fits) {
            strcpy(buf + need, sep);
            strcat(buf + need, names[k]);
        }
        need += m;
    }
    free(names);
    return need;
}
