/* A conversation's mapping between values and placeholders, redaction and restoration (whole
 * texts and streams). Values are kept only here, in memory, and wiped on free. */
#define _DEFAULT_SOURCE /* explicit_bzero */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "gateway/pii_internal.h"

/* "[" + a type name of up to 32 bytes + "_" + a number + "]" */
enum { PLACEHOLDER_MAX = 64 };

typedef struct mapping {
    char *value; /* NULL: a placeholder-shaped string seen in an input, never handed out */
    size_t value_len;
    char placeholder[PLACEHOLDER_MAX];
    size_t placeholder_len;
} mapping;

typedef struct type_counter {
    char name[PLACEHOLDER_MAX];
    unsigned long next;
} type_counter;

struct pii_session {
    const pii_policy *policy;
    mapping **items;
    size_t n_items, n_values;
    /* Open addressing, slots hold item index + 1. */
    uint32_t *by_value, *by_placeholder;
    size_t slots;
    type_counter *types;
    size_t n_types;
};

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t k = 0; k < n; k++)
        h = (h ^ (unsigned char)s[k]) * 1099511628211ull;
    return h;
}

static void buffer_reserve(pii_buffer *b, size_t more, bool *oom)
{
    if (*oom || b->len + more + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more + 1)
        cap *= 2;
    char *bigger = realloc(b->data, cap);
    if (!bigger) {
        *oom = true;
        return;
    }
    b->data = bigger;
    b->cap = cap;
}

static void buffer_append(pii_buffer *b, const char *s, size_t n, bool *oom)
{
    buffer_reserve(b, n, oom);
    if (*oom)
        return;
    if (n)
        memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void ellm_pii_buffer_free(pii_buffer *buf)
{
    if (!buf)
        return;
    free(buf->data);
    *buf = (pii_buffer){0};
}

edgellm_status ellm_pii_session_create(const pii_policy *policy, pii_session **out)
{
    *out = NULL;
    if (!policy)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "ellm_pii_session_create: no policy");
    pii_session *s = calloc(1, sizeof *s);
    if (!s)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for a PII session");
    s->policy = policy;
    *out = s;
    return EDGELLM_OK;
}

void ellm_pii_session_free(pii_session *s)
{
    if (!s)
        return;
    for (size_t k = 0; k < s->n_items; k++) {
        if (s->items[k]->value) {
            explicit_bzero(s->items[k]->value, s->items[k]->value_len);
            free(s->items[k]->value);
        }
        explicit_bzero(s->items[k], sizeof *s->items[k]);
        free(s->items[k]);
    }
    free(s->items);
    free(s->by_value);
    free(s->by_placeholder);
    free(s->types);
    free(s);
}

size_t ellm_pii_session_size(const pii_session *s) { return s ? s->n_values : 0; }

static const mapping *find_placeholder(const pii_session *s, const char *p, size_t n)
{
    if (!s->slots)
        return NULL;
    for (size_t i = hash_bytes(p, n) & (s->slots - 1);; i = (i + 1) & (s->slots - 1)) {
        uint32_t slot = s->by_placeholder[i];
        if (!slot)
            return NULL;
        const mapping *m = s->items[slot - 1];
        if (m->placeholder_len == n && memcmp(m->placeholder, p, n) == 0)
            return m;
    }
}

static const mapping *find_value(const pii_session *s, const char *v, size_t n)
{
    if (!s->slots)
        return NULL;
    for (size_t i = hash_bytes(v, n) & (s->slots - 1);; i = (i + 1) & (s->slots - 1)) {
        uint32_t slot = s->by_value[i];
        if (!slot)
            return NULL;
        const mapping *m = s->items[slot - 1];
        if (m->value && m->value_len == n && memcmp(m->value, v, n) == 0)
            return m;
    }
}

static void index_item(uint32_t *table, size_t slots, const char *key, size_t n, uint32_t slot)
{
    size_t i = hash_bytes(key, n) & (slots - 1);
    while (table[i])
        i = (i + 1) & (slots - 1);
    table[i] = slot;
}

/* Keeps the tables at most half full. */
static bool grow_tables(pii_session *s)
{
    if ((s->n_items + 1) * 2 <= s->slots)
        return true;
    if (s->n_items + 1 >= UINT32_MAX / 4)
        return false;
    size_t slots = s->slots ? s->slots * 2 : 64;
    uint32_t *by_value = calloc(slots, sizeof *by_value);
    uint32_t *by_placeholder = calloc(slots, sizeof *by_placeholder);
    mapping **items = realloc(s->items, slots / 2 * sizeof *items);
    if (!by_value || !by_placeholder || !items) {
        free(by_value);
        free(by_placeholder);
        if (items)
            s->items = items;
        return false;
    }
    s->items = items;
    for (size_t k = 0; k < s->n_items; k++) {
        const mapping *m = s->items[k];
        if (m->value)
            index_item(by_value, slots, m->value, m->value_len, (uint32_t)(k + 1));
        index_item(by_placeholder, slots, m->placeholder, m->placeholder_len, (uint32_t)(k + 1));
    }
    free(s->by_value);
    free(s->by_placeholder);
    s->by_value = by_value;
    s->by_placeholder = by_placeholder;
    s->slots = slots;
    return true;
}

static mapping *add_item(pii_session *s, const char *placeholder, size_t placeholder_len,
                         const char *value, size_t value_len)
{
    if (!grow_tables(s))
        return NULL;
    mapping *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    if (value && !(m->value = malloc(value_len + 1))) {
        free(m);
        return NULL;
    }
    if (value) {
        memcpy(m->value, value, value_len);
        m->value[value_len] = '\0';
        m->value_len = value_len;
    }
    memcpy(m->placeholder, placeholder, placeholder_len);
    m->placeholder_len = placeholder_len;
    s->items[s->n_items++] = m;
    uint32_t slot = (uint32_t)s->n_items;
    if (value) {
        index_item(s->by_value, s->slots, value, value_len, slot);
        s->n_values++;
    }
    index_item(s->by_placeholder, s->slots, placeholder, placeholder_len, slot);
    return m;
}

static type_counter *counter_for(pii_session *s, const char *type)
{
    for (size_t k = 0; k < s->n_types; k++)
        if (strcmp(s->types[k].name, type) == 0)
            return &s->types[k];
    type_counter *bigger = realloc(s->types, (s->n_types + 1) * sizeof *bigger);
    if (!bigger)
        return NULL;
    s->types = bigger;
    type_counter *t = &s->types[s->n_types++];
    snprintf(t->name, sizeof t->name, "%s", type);
    t->next = 1;
    return t;
}

static const mapping *placeholder_for(pii_session *s, const char *type, const char *value,
                                      size_t len)
{
    const mapping *m = find_value(s, value, len);
    if (m)
        return m;
    type_counter *t = counter_for(s, type);
    if (!t)
        return NULL;
    char p[PLACEHOLDER_MAX];
    int n;
    do
        n = snprintf(p, sizeof p, "[%s_%lu]", t->name, t->next++);
    while (find_placeholder(s, p, (size_t)n));
    return add_item(s, p, (size_t)n, value, len);
}

static bool placeholder_body_char(unsigned char c)
{
    return pii_is_upper(c) || pii_is_digit(c) || c == '_';
}

/* Length of a "[TYPE_N]" at t (t[0] == '['), or 0. */
static size_t placeholder_shape(const char *t, size_t n)
{
    size_t e = 1;
    while (e < n && e < PLACEHOLDER_MAX && placeholder_body_char((unsigned char)t[e]))
        e++;
    if (e >= n || t[e] != ']' || e < 4 || !pii_is_upper((unsigned char)t[1]))
        return 0;
    size_t d = e;
    while (d > 1 && pii_is_digit((unsigned char)t[d - 1]))
        d--;
    return d < e && t[d - 1] == '_' && t[d] != '0' ? e + 1 : 0;
}

static int by_start(const void *pa, const void *pb)
{
    const pii_entity *a = pa, *b = pb;
    return a->start < b->start ? -1 : a->start > b->start;
}

/* Placeholder-shaped strings the input already contains are never handed out, so that
 * restoring gives back exactly what was redacted. One that this session has already handed out
 * for a value would be restored to that value, so it is redacted itself, as a PLACEHOLDER
 * entity: appended to *found (kept sorted, never overlapping a detection). */
static bool handle_literal_placeholders(pii_session *s, const char *text, size_t len,
                                        pii_entity **found, size_t *n_found)
{
    const char *p = text;
    size_t n_added = 0, n_before = *n_found;
    while (p && (size_t)(p - text) < len && (p = memchr(p, '[', len - (size_t)(p - text)))) {
        size_t n = placeholder_shape(p, len - (size_t)(p - text));
        if (n) {
            const mapping *m = find_placeholder(s, p, n);
            if (!m && !add_item(s, p, n, NULL, 0))
                return false;
            if (m && m->value) {
                pii_entity *bigger = realloc(*found, (*n_found + 1) * sizeof *bigger);
                if (!bigger)
                    return false;
                *found = bigger;
                size_t start = (size_t)(p - text);
                bool overlaps = false;
                for (size_t k = 0; k < n_before && !overlaps; k++)
                    overlaps = bigger[k].start < start + n && start < bigger[k].end;
                if (!overlaps) {
                    bigger[(*n_found)++] = (pii_entity){start, start + n, "PLACEHOLDER", NULL};
                    n_added++;
                }
            }
        }
        p += n ? n : 1;
    }
    if (n_added)
        qsort(*found, *n_found, sizeof **found, by_start);
    return true;
}

edgellm_status ellm_pii_redact(pii_session *s, const char *text, size_t len, char **out,
                               size_t *out_len, pii_entity **entities, size_t *n_entities)
{
    *out = NULL;
    if (out_len)
        *out_len = 0;
    if (entities)
        *entities = NULL;
    if (n_entities)
        *n_entities = 0;
    if (!s)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "ellm_pii_redact: no session");
    pii_entity *found;
    size_t n_found;
    edgellm_status st = ellm_pii_scan(s->policy, text, len, &found, &n_found);
    if (st != EDGELLM_OK)
        return st;
    bool oom = !handle_literal_placeholders(s, text, len, &found, &n_found);
    pii_buffer b = {0};
    size_t from = 0;
    for (size_t k = 0; k < n_found && !oom; k++) {
        const mapping *m = placeholder_for(s, found[k].type, text + found[k].start,
                                           found[k].end - found[k].start);
        if (!m) {
            oom = true;
            break;
        }
        found[k].placeholder = m->placeholder;
        buffer_append(&b, text + from, found[k].start - from, &oom);
        buffer_append(&b, m->placeholder, m->placeholder_len, &oom);
        from = found[k].end;
    }
    buffer_append(&b, text + from, len - from, &oom);
    if (oom) {
        free(found);
        ellm_pii_buffer_free(&b);
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory to redact the text");
    }
    *out = b.data;
    if (out_len)
        *out_len = b.len;
    if (entities)
        *entities = found;
    else
        free(found);
    if (n_entities)
        *n_entities = n_found;
    return EDGELLM_OK;
}

/* Whether some placeholder this session handed out begins with t[0, n): "[", a prefix of a type
 * name followed by "_", then a prefix of a number it has used. */
static bool could_become_placeholder(const pii_session *s, const char *t, size_t n)
{
    if (n == 0 || t[0] != '[' || n >= PLACEHOLDER_MAX)
        return false;
    for (size_t k = 0; k < s->n_types; k++) {
        const type_counter *tc = &s->types[k];
        size_t name_len = strlen(tc->name);
        size_t cmp = n - 1 < name_len ? n - 1 : name_len;
        if (memcmp(t + 1, tc->name, cmp) != 0)
            continue;
        if (n - 1 <= name_len || (n - 1 == name_len + 1 && t[n - 1] == '_')) {
            if (tc->next > 1)
                return true;
            continue;
        }
        if (t[1 + name_len] != '_')
            continue;
        const char *digits = t + 2 + name_len;
        size_t nd = n - 2 - name_len;
        if (digits[0] == '0' || nd > 19)
            continue;
        /* Longer numbers with these leading digits are larger, so the digits themselves must
         * be a number already used. */
        unsigned long prefix = 0;
        bool all_digits = true;
        for (size_t d = 0; d < nd && all_digits; d++) {
            all_digits = pii_is_digit((unsigned char)digits[d]);
            prefix = prefix * 10 + (unsigned long)(digits[d] - '0');
        }
        if (all_digits && prefix < tc->next)
            return true;
    }
    return false;
}

/* Restores t[0, n) into out; unless final, stops before a trailing partial placeholder and
 * returns how many bytes it consumed. */
static size_t restore_into(const pii_session *s, const char *t, size_t n, bool final,
                           pii_buffer *out, bool *oom)
{
    size_t emitted = 0, i = 0;
    const char *p;
    while (i < n && (p = memchr(t + i, '[', n - i))) {
        size_t q = (size_t)(p - t), j = q + 1;
        while (j < n && j - q < PLACEHOLDER_MAX && placeholder_body_char((unsigned char)t[j]))
            j++;
        if (j < n && t[j] == ']') {
            const mapping *m = find_placeholder(s, t + q, j + 1 - q);
            if (m && m->value) {
                buffer_append(out, t + emitted, q - emitted, oom);
                buffer_append(out, m->value, m->value_len, oom);
                emitted = j + 1;
            }
            i = j + 1;
            continue;
        }
        if (j == n && !final && could_become_placeholder(s, t + q, n - q)) {
            buffer_append(out, t + emitted, q - emitted, oom);
            return q;
        }
        i = q + 1;
    }
    buffer_append(out, t + emitted, n - emitted, oom);
    return n;
}

edgellm_status ellm_pii_restore(const pii_session *s, const char *text, size_t len, char **out,
                                size_t *out_len)
{
    *out = NULL;
    if (out_len)
        *out_len = 0;
    if (!s)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "ellm_pii_restore: no session");
    pii_buffer b = {0};
    bool oom = false;
    buffer_reserve(&b, len, &oom);
    restore_into(s, text, len, true, &b, &oom);
    if (oom) {
        ellm_pii_buffer_free(&b);
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory to restore the text");
    }
    *out = b.data;
    if (out_len)
        *out_len = b.len;
    return EDGELLM_OK;
}

struct pii_restorer {
    const pii_session *session;
    char held[PLACEHOLDER_MAX];
    size_t n_held;
};

edgellm_status ellm_pii_restorer_create(const pii_session *session, pii_restorer **out)
{
    *out = NULL;
    if (!session)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "ellm_pii_restorer_create: no session");
    pii_restorer *r = calloc(1, sizeof *r);
    if (!r)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for a restorer");
    r->session = session;
    *out = r;
    return EDGELLM_OK;
}

edgellm_status ellm_pii_restorer_feed(pii_restorer *r, const char *chunk, size_t len,
                                      pii_buffer *out)
{
    bool oom = false;
    const char *t = chunk;
    size_t n = len;
    /* The held tail joined with the chunk lives only for this call: a gateway stream has a
     * restorer per choice and tool call, and keeping each one's largest chunk would let a cloud
     * make it hold thousands of them. */
    pii_buffer joined = {0};
    if (r->n_held) {
        buffer_append(&joined, r->held, r->n_held, &oom);
        buffer_append(&joined, chunk, len, &oom);
        t = joined.data;
        n = joined.len;
    }
    if (!oom) {
        size_t used = restore_into(r->session, t, n, false, out, &oom);
        /* What is held is shorter than a placeholder: could_become_placeholder() says so. */
        r->n_held = n - used;
        memmove(r->held, t + used, r->n_held);
    }
    if (joined.data)
        explicit_bzero(joined.data, joined.cap);
    ellm_pii_buffer_free(&joined);
    if (oom)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory to restore the stream");
    return EDGELLM_OK;
}

edgellm_status ellm_pii_restorer_finish(pii_restorer *r, pii_buffer *out)
{
    bool oom = false;
    buffer_append(out, r->held, r->n_held, &oom);
    r->n_held = 0;
    if (oom)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory to restore the stream");
    return EDGELLM_OK;
}

void ellm_pii_restorer_free(pii_restorer *r)
{
    if (!r)
        return;
    explicit_bzero(r->held, sizeof r->held);
    free(r);
}
