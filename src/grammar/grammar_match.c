/* The matcher: the set of parse stacks that the output so far leaves open, advanced one code
 * point at a time, and the walk of the vocabulary trie that finds every token keeping the output a
 * valid prefix.
 *
 * A stack is a chain of nodes (position in the grammar's elements, parent); its top always sits on
 * a character class, the nodes below it are where to continue when the rule above ends. Node 0 is
 * the empty stack: the output is a complete sentence. Nodes and sets of stacks ("states") are
 * interned, so equal states have equal ids and a transition (state, code point) is computed once
 * per generation. States whose stack tops loop on one character class (the inside of a string, a
 * run of digits) let the walk accept whole trie subtrees at once: the bound grammar knows, per
 * class, which subtrees consist only of that class's characters. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "grammar/grammar.h"

#define MASK_CACHE 16
/* Why a matcher gave up (its overflow field): too many stacks open or memory, or too much work. */
enum { OVERFLOW_STACKS = 1, OVERFLOW_WORK = 2 };

typedef struct snode {
    int32_t pos, parent;
    int32_t depth; /* nodes below it */
} snode;

/* Open-addressing map from non-zero 64-bit keys to int32 values. */
typedef struct u64map {
    uint64_t *keys;
    int32_t *vals;
    size_t cap, n;
} u64map;

typedef struct mask_entry {
    int64_t key; /* state id and partial character; -1 unused */
    uint64_t *bits;
} mask_entry;

struct ellm_matcher {
    ellm_bound_grammar *bg;
    const ellm_grammar *g;
    const ellm_token_trie *trie;

    snode *nodes;
    int32_t n_nodes, cap_nodes;
    u64map node_ids;

    int32_t *state_off, *state_len; /* stacks of state i: pool[state_off[i] ...] */
    int32_t *state_loop;            /* run class of each state; -2 not yet known, -1 none */
    int32_t *state_run;             /* how many characters of that class it survives */
    int32_t *state_succ;            /* the state after one character of that class */
    int32_t n_states, cap_states;
    int32_t *pool;
    int64_t pool_n, pool_cap;
    u64map state_ids;    /* hash of the stack list -> chain head; see intern_state */
    int32_t *state_next; /* next state with the same hash */

    u64map transitions; /* (state << 21 | code point) + 1 -> state */

    int32_t *scratch;
    int32_t scratch_n, scratch_cap;
    int overflow; /* 0, or why the matcher gave up (OVERFLOW_*) */
    int64_t work; /* stack expansions in this call (allowed_slots, accept_bytes) */

    const uint8_t **below; /* per class, fetched once from the bound grammar */

    int32_t initial, current;
    int need;      /* continuation bytes still missing from a partial character */
    uint32_t part; /* the bits of that character so far */

    mask_entry cache[MASK_CACHE];
    int cache_next;
    size_t mask_words;
};

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

static int map_get(const u64map *m, uint64_t key, int32_t *val)
{
    if (!m->cap)
        return 0;
    for (size_t i = mix64(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (m->keys[i] == key) {
            *val = m->vals[i];
            return 1;
        }
        if (!m->keys[i])
            return 0;
    }
}

static int map_put(u64map *m, uint64_t key, int32_t val)
{
    if ((m->n + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 1024;
        uint64_t *keys = calloc(cap, sizeof *keys);
        int32_t *vals = malloc(cap * sizeof *vals);
        if (!keys || !vals) {
            free(keys);
            free(vals);
            return 0;
        }
        for (size_t i = 0; i < m->cap; i++) {
            if (!m->keys[i])
                continue;
            size_t j = mix64(m->keys[i]) & (cap - 1);
            while (keys[j])
                j = (j + 1) & (cap - 1);
            keys[j] = m->keys[i];
            vals[j] = m->vals[i];
        }
        free(m->keys);
        free(m->vals);
        m->keys = keys;
        m->vals = vals;
        m->cap = cap;
    }
    size_t i = mix64(key) & (m->cap - 1);
    while (m->keys[i] && m->keys[i] != key)
        i = (i + 1) & (m->cap - 1);
    if (!m->keys[i])
        m->n++;
    m->keys[i] = key;
    m->vals[i] = val;
    return 1;
}

static void map_free(u64map *m)
{
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

/* Node ids are never 0 except for the empty stack, so a failed allocation reports -1. */
static int32_t intern_node(ellm_matcher *m, int32_t pos, int32_t parent)
{
    uint64_t key = ((uint64_t)(uint32_t)pos << 32 | (uint32_t)parent) + 1;
    int32_t id;
    if (map_get(&m->node_ids, key, &id))
        return id;
    if (!ellm_grammar_grow((void **)&m->nodes, &m->cap_nodes, m->n_nodes + 1, sizeof *m->nodes))
        return -1;
    id = m->n_nodes;
    m->nodes[m->n_nodes++] = (snode){pos, parent, parent > 0 ? m->nodes[parent].depth + 1 : 0};
    if (!map_put(&m->node_ids, key, id))
        return -1;
    return id;
}

static int push_scratch(ellm_matcher *m, int32_t stack)
{
    if (m->scratch_n >= 4 * ELLM_GRAMMAR_MAX_STACKS) {
        m->overflow = OVERFLOW_STACKS;
        return 0;
    }
    if (!ellm_grammar_grow((void **)&m->scratch, &m->scratch_cap, m->scratch_n + 1,
                           sizeof *m->scratch)) {
        m->overflow = OVERFLOW_STACKS;
        return 0;
    }
    m->scratch[m->scratch_n++] = stack;
    return 1;
}

/* Adds to scratch every stack whose top is a character class, reachable from continuing at pos
 * with the given parent. Recursion only follows rule references at the start of alternatives,
 * which the parser proved cannot cycle. */
static void expand(ellm_matcher *m, int32_t pos, int32_t parent)
{
    if (++m->work > ELLM_GRAMMAR_MAX_WORK) {
        m->overflow = OVERFLOW_WORK;
        return;
    }
    const int32_t *el = m->g->elems;
    while (el[pos] == ELLM_GEL_END) {
        if (parent == 0) {
            push_scratch(m, 0);
            return;
        }
        pos = m->nodes[parent].pos;
        parent = m->nodes[parent].parent;
    }
    if (ELLM_GEL_IS_CLASS(el[pos])) {
        int32_t id = intern_node(m, pos, parent);
        if (id < 0)
            m->overflow = OVERFLOW_STACKS;
        else
            push_scratch(m, id);
        return;
    }
    int32_t rule = ELLM_GEL_ARG(el[pos]);
    /* A reference that ends its alternative needs no node of its own (so repetitions, which are
     * right-recursive rules, do not grow the stack). */
    int32_t cont = el[pos + 1] == ELLM_GEL_END ? parent : intern_node(m, pos + 1, parent);
    if (cont < 0) {
        m->overflow = OVERFLOW_STACKS;
        return;
    }
    for (int32_t a = 0; a < m->g->rule_n_alts[rule] && !m->overflow; a++)
        expand(m, m->g->alt_start[m->g->rule_first[rule] + a], cont);
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return x < y ? -1 : x > y;
}

static int grow_states(ellm_matcher *m)
{
    if (m->n_states < m->cap_states)
        return 1;
    if (m->cap_states > INT32_MAX / 4)
        return 0;
    int32_t cap = m->cap_states ? m->cap_states * 2 : 256;
    int32_t **arrays[] = {&m->state_off,  &m->state_len, &m->state_loop,
                          &m->state_next, &m->state_run, &m->state_succ};
    for (size_t i = 0; i < sizeof arrays / sizeof *arrays; i++) {
        int32_t *n = realloc(*arrays[i], (size_t)cap * sizeof *n);
        if (!n)
            return 0;
        *arrays[i] = n;
    }
    m->cap_states = cap;
    return 1;
}

/* The state whose stacks are in scratch (sorted and deduplicated here); state 0 is the dead
 * state, the empty set. -1 when the set is too large. */
static int32_t intern_scratch(ellm_matcher *m)
{
    if (m->overflow)
        return -1;
    if (m->scratch_n > 1)
        qsort(m->scratch, (size_t)m->scratch_n, sizeof *m->scratch, cmp_i32);
    int32_t n = 0;
    for (int32_t i = 0; i < m->scratch_n; i++)
        if (n == 0 || m->scratch[n - 1] != m->scratch[i])
            m->scratch[n++] = m->scratch[i];
    if (n > ELLM_GRAMMAR_MAX_STACKS) {
        m->overflow = OVERFLOW_STACKS;
        return -1;
    }
    if (n == 0)
        return 0;
    uint64_t h = 0x9E3779B97F4A7C15ull;
    for (int32_t i = 0; i < n; i++)
        h = mix64(h ^ (uint64_t)(uint32_t)m->scratch[i]);
    h |= 1;
    int32_t head = -1;
    if (map_get(&m->state_ids, h, &head)) {
        for (int32_t s = head; s >= 0; s = m->state_next[s])
            if (m->state_len[s] == n &&
                memcmp(m->pool + m->state_off[s], m->scratch, (size_t)n * sizeof *m->scratch) == 0)
                return s;
    }
    if (m->pool_n + n > INT32_MAX / 2) {
        m->overflow = OVERFLOW_STACKS;
        return -1;
    }
    if (m->pool_n + n > m->pool_cap) {
        int64_t cap = m->pool_cap ? m->pool_cap : 1024;
        while (cap < m->pool_n + n)
            cap *= 2;
        int32_t *p = realloc(m->pool, (size_t)cap * sizeof *p);
        if (!p) {
            m->overflow = OVERFLOW_STACKS;
            return -1;
        }
        m->pool = p;
        m->pool_cap = cap;
    }
    if (!grow_states(m)) {
        m->overflow = OVERFLOW_STACKS;
        return -1;
    }
    int32_t s = m->n_states++;
    m->state_off[s] = (int32_t)m->pool_n;
    m->state_len[s] = n;
    m->state_loop[s] = -2;
    m->state_next[s] = head;
    memcpy(m->pool + m->pool_n, m->scratch, (size_t)n * sizeof *m->scratch);
    m->pool_n += n;
    if (!map_put(&m->state_ids, h, s)) {
        m->overflow = OVERFLOW_STACKS;
        return -1;
    }
    return s;
}

static int32_t advance(ellm_matcher *m, int32_t state, uint32_t cp)
{
    if (state <= 0)
        return state;
    int32_t run_cls = m->state_loop[state];
    if (run_cls >= 0 && ellm_class_contains(m->g, run_cls, cp))
        return m->state_succ[state];
    uint64_t key = ((uint64_t)(uint32_t)state << 21 | cp) + 1;
    int32_t next;
    if (map_get(&m->transitions, key, &next))
        return next;
    m->scratch_n = 0;
    const int32_t *stacks = m->pool + m->state_off[state];
    for (int32_t i = 0; i < m->state_len[state] && !m->overflow; i++) {
        if (stacks[i] == 0)
            continue;
        snode top = m->nodes[stacks[i]];
        if (ellm_class_contains(m->g, ELLM_GEL_ARG(m->g->elems[top.pos]), cp))
            expand(m, top.pos + 1, top.parent);
    }
    next = intern_scratch(m);
    if (next >= 0 && !map_put(&m->transitions, key, next))
        m->overflow = OVERFLOW_STACKS;
    return next;
}

/* Whether some stack top of state accepts a character in [lo, hi]. */
static int range_viable(const ellm_matcher *m, int32_t state, uint32_t lo, uint32_t hi)
{
    const int32_t *stacks = m->pool + m->state_off[state];
    for (int32_t i = 0; i < m->state_len[state]; i++) {
        if (stacks[i] == 0)
            continue;
        const ellm_char_class *c =
            &m->g->classes[ELLM_GEL_ARG(m->g->elems[m->nodes[stacks[i]].pos])];
        const ellm_cp_range *r = m->g->ranges + c->first_range;
        for (int32_t k = 0; k < c->n_ranges; k++)
            if (r[k].lo <= hi && r[k].hi >= lo)
                return 1;
    }
    return 0;
}

/* One byte of output: returns the next state (0 dead, -1 overflow); need/part carry a character
 * that is not complete yet, which must still be able to match some stack. */
static int32_t step_byte(ellm_matcher *m, int32_t state, int *need, uint32_t *part, uint8_t b)
{
    uint32_t lo, hi;
    if (*need == 0) {
        *need = ellm_utf8_lead(b, part);
        if (*need == 0)
            return advance(m, state, b);
        if (*need < 0) {
            *need = 0;
            return 0;
        }
        lo = *part << (6 * *need);
        hi = lo | ((1u << (6 * *need)) - 1);
        /* The leads whose second byte is restricted cover fewer code points. */
        if (b == 0xE0)
            lo = 0x800;
        else if (b == 0xED)
            hi = 0xD7FF;
        else if (b == 0xF0)
            lo = 0x10000;
        else if (b == 0xF4)
            hi = 0x10FFFF;
    } else {
        if (!ellm_utf8_continuation_ok(*need, *part, b))
            return 0;
        *part = (*part << 6) | (b & 0x3F);
        if (--*need == 0)
            return advance(m, state, *part);
        lo = *part << (6 * *need);
        hi = lo | ((1u << (6 * *need)) - 1);
    }
    return range_viable(m, state, lo, hi) ? state : 0;
}

static int classes_disjoint(const ellm_grammar *g, int32_t a, int32_t b)
{
    const ellm_cp_range *x = g->ranges + g->classes[a].first_range;
    const ellm_cp_range *y = g->ranges + g->classes[b].first_range;
    int32_t i = 0, j = 0;
    while (i < g->classes[a].n_ranges && j < g->classes[b].n_ranges) {
        if (x[i].hi < y[j].lo)
            i++;
        else if (y[j].hi < x[i].lo)
            j++;
        else
            return 0;
    }
    return 1;
}

static int class_subset(const ellm_grammar *g, int32_t a, int32_t b)
{
    const ellm_cp_range *x = g->ranges + g->classes[a].first_range;
    const ellm_cp_range *y = g->ranges + g->classes[b].first_range;
    int32_t j = 0;
    for (int32_t i = 0; i < g->classes[a].n_ranges; i++) {
        while (j < g->classes[b].n_ranges && y[j].hi < x[i].lo)
            j++;
        if (j == g->classes[b].n_ranges || y[j].lo > x[i].lo || y[j].hi < x[i].hi)
            return 0;
    }
    return 1;
}

static uint64_t class_size(const ellm_grammar *g, int32_t c)
{
    uint64_t n = 0;
    const ellm_cp_range *r = g->ranges + g->classes[c].first_range;
    for (int32_t i = 0; i < g->classes[c].n_ranges; i++)
        n += r[i].hi - r[i].lo + 1;
    return n;
}

/* Whether all characters of class c advance state alike: each stack top's class either contains
 * c or misses it entirely, so one sample character decides for the whole class. */
static int32_t state_depth(const ellm_matcher *m, int32_t state)
{
    int32_t d = 0;
    for (int32_t j = 0; j < m->state_len[state]; j++) {
        int32_t id = m->pool[m->state_off[state] + j];
        if (m->nodes[id].depth > d)
            d = m->nodes[id].depth;
    }
    return d;
}

static int uniform_in(ellm_matcher *m, int32_t state, int32_t c)
{
    const int32_t *stacks = m->pool + m->state_off[state];
    for (int32_t j = 0; j < m->state_len[state]; j++) {
        if (stacks[j] == 0)
            continue;
        int32_t d = ELLM_GEL_ARG(m->g->elems[m->nodes[stacks[j]].pos]);
        if (d != c && !classes_disjoint(m->g, c, d) && !class_subset(m->g, c, d))
            return 0;
    }
    return 1;
}

#define RUN_FOREVER INT32_MAX
/* Runs are followed this far; a longer bounded repetition (or a recursion that deepens with every
 * character) just walks the trie. */
#define MAX_RUN 1024

/* A "run class" of state: a class c that every state reached by reading characters of c treats
 * uniformly, until the run dies or loops. Then any text made only of c's characters is allowed
 * exactly when it has at most *run of them (RUN_FOREVER when the run loops, e.g. inside a JSON
 * string; a count for bounded repetitions such as char{0,80}). Returns -1 when there is none. */
static int32_t run_class(ellm_matcher *m, int32_t state, int32_t *run)
{
    if (m->state_loop[state] != -2) {
        *run = m->state_run[state];
        return m->state_loop[state];
    }
    int32_t best = -1, best_run = 0;
    uint64_t best_size = 0;
    for (int32_t i = 0; i < m->state_len[state] && !m->overflow; i++) {
        int32_t top = m->pool[m->state_off[state] + i];
        if (top == 0)
            continue;
        int32_t c = ELLM_GEL_ARG(m->g->elems[m->nodes[top].pos]);
        uint64_t size = class_size(m->g, c);
        if (size == 0 || size <= best_size || !uniform_in(m, state, c))
            continue;
        uint32_t sample = m->g->ranges[m->g->classes[c].first_range].lo;
        int32_t s = state, steps = 0, depth0 = state_depth(m, state);
        for (;;) {
            int32_t next = advance(m, s, sample);
            if (next <= 0)
                break; /* dies after `steps` characters */
            if (next == s) {
                steps = RUN_FOREVER;
                break;
            }
            steps++;
            /* A run whose stacks deepen is a recursion, not a repetition: not followed. */
            if (steps > MAX_RUN || state_depth(m, next) > depth0 || !uniform_in(m, next, c)) {
                steps = -1; /* not uniform all the way, or too long to follow: undecided */
                break;
            }
            s = next;
        }
        if (steps >= 0) {
            best = c;
            best_run = steps;
            best_size = size;
        }
    }
    if (m->overflow)
        return -1;
    if (best < 0) {
        /* The states along an undecided run would each follow it again: they have none either. */
        m->state_loop[state] = -1;
        const int32_t *stacks = m->pool + m->state_off[state];
        int32_t top = m->state_len[state] > 0 ? stacks[m->state_len[state] - 1] : 0;
        int32_t c = top > 0 ? ELLM_GEL_ARG(m->g->elems[m->nodes[top].pos]) : -1;
        if (c >= 0 && m->g->classes[c].n_ranges > 0) {
            uint32_t sample = m->g->ranges[m->g->classes[c].first_range].lo;
            int32_t s = state;
            for (int k = 0; k < MAX_RUN; k++) {
                s = advance(m, s, sample);
                if (s <= 0 || m->state_loop[s] != -2)
                    break;
                m->state_loop[s] = -1;
            }
        }
        return -1;
    }
    /* Record the whole run, so the states along it know theirs (and advance() skips the
     * expansion for characters of the class). */
    uint32_t sample = m->g->ranges[m->g->classes[best].first_range].lo;
    int32_t s = state, left = best_run;
    for (;;) {
        int32_t next = advance(m, s, sample);
        if (m->overflow || next < 0)
            return -1;
        m->state_loop[s] = best;
        m->state_run[s] = left;
        m->state_succ[s] = next;
        if (left == RUN_FOREVER || left == 0 || next <= 0 || m->state_loop[next] != -2)
            break;
        s = next;
        left--;
    }
    *run = best_run;
    return best;
}

static const uint8_t *class_below(ellm_matcher *m, int32_t cls)
{
    if (m->below[cls])
        return m->below[cls];
    ellm_bound_grammar *bg = m->bg;
    const ellm_token_trie *t = bg->trie;
    pthread_mutex_lock(&bg->lock);
    if (!bg->class_below[cls]) {
        uint8_t *bits = calloc((size_t)t->n_nodes / 8 + 1, 1);
        if (bits) {
            for (int32_t v = t->n_nodes - 1; v >= 0; v--) {
                const ellm_trie_node *nd = &t->nodes[v];
                int good = !(nd->term_hi > nd->slot_lo && nd->cp_in == -1);
                for (int32_t k = 0; k < nd->n_children && good; k++) {
                    int32_t w = nd->first_child + k;
                    int32_t cp = t->nodes[w].cp_in;
                    good = cp != -2 &&
                           (cp == -1 || ellm_class_contains(bg->grammar, cls, (uint32_t)cp)) &&
                           ((bits[w >> 3] >> (w & 7)) & 1);
                }
                if (good)
                    bits[v >> 3] |= (uint8_t)(1u << (v & 7));
            }
        }
        bg->class_below[cls] = bits;
    }
    m->below[cls] = bg->class_below[cls];
    pthread_mutex_unlock(&bg->lock);
    return m->below[cls];
}

static void set_range(uint64_t *bits, int32_t lo, int32_t hi)
{
    for (int32_t i = lo; i < hi && (i & 63); i++)
        bits[i >> 6] |= 1ull << (i & 63);
    int32_t i = lo + ((64 - (lo & 63)) & 63);
    if (i > hi)
        return;
    for (; i + 64 <= hi; i += 64)
        bits[i >> 6] = ~0ull;
    for (; i < hi; i++)
        bits[i >> 6] |= 1ull << (i & 63);
}

static void walk(ellm_matcher *m, int32_t v, int32_t state, int need, uint32_t part, int aligned,
                 uint64_t *bits)
{
    const ellm_trie_node *nd = &m->trie->nodes[v];
    if (aligned && need == 0) {
        int32_t run = 0;
        int32_t c = run_class(m, state, &run);
        /* Short runs (a literal's next character) are not worth a pass over the trie. */
        if (c >= 0 && run >= 4) {
            const uint8_t *below = class_below(m, c);
            if (below && ((below[v >> 3] >> (v & 7)) & 1)) {
                /* Every token here continues with whole characters of c only. */
                if (run == RUN_FOREVER) {
                    set_range(bits, nd->slot_lo, nd->slot_hi);
                } else {
                    const int32_t *cps = m->trie->slot_cps;
                    int32_t limit = nd->cp_depth + run;
                    for (int32_t sl = nd->slot_lo; sl < nd->slot_hi; sl++)
                        if (cps[sl] <= limit)
                            bits[sl >> 6] |= 1ull << (sl & 63);
                }
                return;
            }
        }
    }
    set_range(bits, nd->slot_lo, nd->term_hi);
    for (int32_t k = 0; k < nd->n_children && !m->overflow; k++) {
        int32_t w = nd->first_child + k;
        int n2 = need;
        uint32_t p2 = part;
        int32_t s2 = step_byte(m, state, &n2, &p2, m->trie->nodes[w].byte);
        if (s2 > 0)
            walk(m, w, s2, n2, p2, aligned, bits);
    }
}

/* The allowed slots for the current state, cached per (state, partial character). */
static const uint64_t *allowed_slots(ellm_matcher *m)
{
    int64_t key = (int64_t)m->current << 32 | (int64_t)m->need << 24 | m->part;
    for (int i = 0; i < MASK_CACHE; i++)
        if (m->cache[i].key == key)
            return m->cache[i].bits;
    mask_entry *e = &m->cache[m->cache_next];
    m->cache_next = (m->cache_next + 1) % MASK_CACHE;
    if (!e->bits) {
        e->bits = malloc(m->mask_words * sizeof *e->bits);
        if (!e->bits)
            return NULL;
    }
    e->key = -1;
    memset(e->bits, 0, m->mask_words * sizeof *e->bits);
    m->work = 0;
    if (m->current > 0 && m->trie->n_nodes > 0)
        walk(m, 0, m->current, m->need, m->part, m->need == 0, e->bits);
    if (m->overflow)
        return NULL;
    e->key = key;
    return e->bits;
}

static int32_t too_ambiguous(const ellm_matcher *m)
{
    if (m->overflow == OVERFLOW_WORK)
        ellm_fail(EDGELLM_ERR_UNSUPPORTED,
                  "grammar: one token took more than %d expansions of its parse stacks; the "
                  "grammar is too ambiguous, make its alternatives start differently",
                  ELLM_GRAMMAR_MAX_WORK);
    else
        ellm_fail(EDGELLM_ERR_UNSUPPORTED,
                  "grammar: more than %d parse stacks are open at once (or memory ran out); the "
                  "grammar is too ambiguous, make its alternatives start differently",
                  ELLM_GRAMMAR_MAX_STACKS);
    return -1;
}

int32_t ellm_matcher_allowed(ellm_matcher *m, uint8_t *allowed)
{
    const uint64_t *bits = allowed_slots(m);
    if (!bits)
        return too_ambiguous(m);
    int end = ellm_matcher_can_end(m);
    int32_t count = 0;
    for (int32_t t = 0; t < m->trie->n_tokens; t++) {
        int32_t s = m->trie->token_slot[t];
        int ok = s >= 0 ? (int)((bits[s >> 6] >> (s & 63)) & 1) : end && m->trie->token_eog[t];
        allowed[t] = (uint8_t)ok;
        count += ok;
    }
    return count;
}

int32_t ellm_matcher_mask_logits(ellm_matcher *m, float *logits)
{
    const uint64_t *bits = allowed_slots(m);
    if (!bits)
        return too_ambiguous(m);
    int end = ellm_matcher_can_end(m);
    int32_t count = 0;
    const int32_t *slot = m->trie->token_slot;
    for (int32_t t = 0; t < m->trie->n_tokens; t++) {
        int32_t s = slot[t];
        int ok = s >= 0 ? (int)((bits[s >> 6] >> (s & 63)) & 1) : end && m->trie->token_eog[t];
        if (!ok)
            logits[t] = -INFINITY;
        count += ok;
    }
    return count;
}

static int state_has_empty_stack(const ellm_matcher *m, int32_t state)
{
    return state > 0 && m->state_len[state] > 0 && m->pool[m->state_off[state]] == 0;
}

int ellm_matcher_can_end(const ellm_matcher *m)
{
    return m->need == 0 && state_has_empty_stack(m, m->current);
}

int ellm_matcher_must_end(const ellm_matcher *m)
{
    return ellm_matcher_can_end(m) && m->state_len[m->current] == 1;
}

edgellm_status ellm_matcher_accept_bytes(ellm_matcher *m, const char *bytes, size_t len)
{
    int32_t s = m->current;
    int need = m->need;
    uint32_t part = m->part;
    m->work = 0;
    for (size_t i = 0; i < len && s > 0; i++)
        s = step_byte(m, s, &need, &part, (uint8_t)bytes[i]);
    if (s < 0)
        return too_ambiguous(m), EDGELLM_ERR_UNSUPPORTED;
    if (s == 0)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "the text does not continue the grammar's output here");
    m->current = s;
    m->need = need;
    m->part = part;
    return EDGELLM_OK;
}

edgellm_status ellm_matcher_accept_token(ellm_matcher *m, edgellm_token token)
{
    const ellm_token_trie *t = m->trie;
    if (token < 0 || token >= t->n_tokens)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "token %d is not in the vocabulary", token);
    if (t->token_eog[token]) {
        if (!ellm_matcher_can_end(m))
            return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                             "end of generation where the grammar's output is not complete");
        return EDGELLM_OK;
    }
    if (t->token_slot[token] < 0)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "token %d has no text, so the grammar cannot accept it", token);
    return ellm_matcher_accept_bytes(m, t->bytes + t->token_off[token],
                                     (size_t)t->token_len[token]);
}

ellm_matcher_mark ellm_matcher_get_mark(const ellm_matcher *m)
{
    return (ellm_matcher_mark){m->current, m->need, m->part};
}

/* States are interned and never forgotten, so a mark stays valid for the matcher's lifetime. */
void ellm_matcher_rewind(ellm_matcher *m, ellm_matcher_mark mark)
{
    m->current = mark.state;
    m->need = mark.need;
    m->part = mark.part;
}

int ellm_matcher_prepare(ellm_matcher *m) { return allowed_slots(m) != NULL; }

void ellm_matcher_reset(ellm_matcher *m)
{
    m->current = m->initial;
    m->need = 0;
    m->part = 0;
}

void ellm_matcher_free(ellm_matcher *m)
{
    if (!m)
        return;
    free(m->nodes);
    map_free(&m->node_ids);
    free(m->state_off);
    free(m->state_len);
    free(m->state_loop);
    free(m->state_run);
    free(m->state_succ);
    free(m->state_next);
    free(m->pool);
    map_free(&m->state_ids);
    map_free(&m->transitions);
    free(m->scratch);
    free(m->below);
    for (int i = 0; i < MASK_CACHE; i++)
        free(m->cache[i].bits);
    free(m);
}

edgellm_status ellm_matcher_create(ellm_bound_grammar *bg, ellm_matcher **out)
{
    *out = NULL;
    ellm_matcher *m = calloc(1, sizeof *m);
    if (!m)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for a grammar matcher");
    m->bg = bg;
    m->g = bg->grammar;
    m->trie = bg->trie;
    m->mask_words = (size_t)m->trie->n_slots / 64 + 1;
    m->below = calloc((size_t)m->g->n_classes + 1, sizeof *m->below);
    for (int i = 0; i < MASK_CACHE; i++)
        m->cache[i].key = -1;
    /* Node 0 is the empty stack, state 0 the dead state (no stacks). */
    int ok = m->below &&
             ellm_grammar_grow((void **)&m->nodes, &m->cap_nodes, 1, sizeof *m->nodes) &&
             grow_states(m);
    if (ok) {
        m->nodes[m->n_nodes++] = (snode){-1, -1, 0};
        m->state_off[0] = m->state_len[0] = 0;
        m->state_loop[0] = -1;
        m->state_run[0] = 0;
        m->state_succ[0] = 0;
        m->state_next[0] = -1;
        m->n_states = 1;
        m->scratch_n = 0;
        const ellm_grammar *g = m->g;
        for (int32_t a = 0; a < g->rule_n_alts[g->root] && !m->overflow; a++)
            expand(m, g->alt_start[g->rule_first[g->root] + a], 0);
        m->initial = intern_scratch(m);
        ok = m->initial > 0;
    }
    if (!ok) {
        /* A start that opens too many stacks is the grammar's ambiguity, not a lack of memory. */
        edgellm_status st = m->overflow ? (too_ambiguous(m), EDGELLM_ERR_UNSUPPORTED)
                                        : ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY,
                                                    "no memory for a grammar matcher");
        ellm_matcher_free(m);
        return st;
    }
    ellm_matcher_reset(m);
    *out = m;
    return EDGELLM_OK;
}

edgellm_status ellm_bound_grammar_init(ellm_bound_grammar *bg, ellm_grammar *g,
                                       const ellm_token_trie *trie)
{
    memset(bg, 0, sizeof *bg);
    bg->class_below = calloc((size_t)g->n_classes + 1, sizeof *bg->class_below);
    if (!bg->class_below)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for a grammar");
    pthread_mutex_init(&bg->lock, NULL);
    bg->grammar = g;
    bg->trie = trie;
    return EDGELLM_OK;
}

void ellm_bound_grammar_release(ellm_bound_grammar *bg)
{
    if (!bg || !bg->class_below)
        return;
    for (int32_t c = 0; c < bg->grammar->n_classes; c++)
        free(bg->class_below[c]);
    free(bg->class_below);
    pthread_mutex_destroy(&bg->lock);
    ellm_grammar_destroy(bg->grammar);
    memset(bg, 0, sizeof *bg);
}
