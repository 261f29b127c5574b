/* The binary heap of the tokenizers' merge queues (BPE and SentencePiece), which differ in what
 * they queue and how they rank it, not in the queue.
 *
 * ELLM_HEAP_DEFINE(name, type, before) defines, for items of `type` kept in the order of
 * `static bool before(const type *a, const type *b)` (true: a is popped before b):
 *   typedef struct name { type *items; size_t n, cap; } name;   (zero-initialised: empty)
 *   static inline bool name_push(name *h, type item);  false when out of memory, h unchanged
 *   static inline type name_pop(name *h);              h->n must be > 0
 * Each heap is its own code for its type, so the comparison inlines: SentencePiece merges a whole
 * text in one loop (its spaces are pieces too), and a heap that called the comparison through a
 * pointer and copied items of run-time size took twice as long on 240 KB of this project's docs
 * with the Llama 2 vocabulary. The caller frees items. */
#ifndef EDGELLM_CORE_HEAP_H
#define EDGELLM_CORE_HEAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>

#define ELLM_HEAP_DEFINE(name, type, before)                                                       \
    typedef struct name {                                                                          \
        type *items;                                                                               \
        size_t n, cap;                                                                             \
    } name;                                                                                        \
                                                                                                   \
    static inline bool name##_push(name *h, type item)                                             \
    {                                                                                              \
        if (h->n == h->cap) {                                                                      \
            size_t cap = h->cap ? h->cap * 2 : 64;                                                 \
            type *items = realloc(h->items, cap * sizeof *items);                                  \
            if (!items)                                                                            \
                return false;                                                                      \
            h->items = items;                                                                      \
            h->cap = cap;                                                                          \
        }                                                                                          \
        size_t i = h->n++;                                                                         \
        while (i > 0) {                                                                            \
            size_t parent = (i - 1) / 2;                                                           \
            if (!before(&item, &h->items[parent]))                                                 \
                break;                                                                             \
            h->items[i] = h->items[parent];                                                        \
            i = parent;                                                                            \
        }                                                                                          \
        h->items[i] = item;                                                                        \
        return true;                                                                               \
    }                                                                                              \
                                                                                                   \
    static inline type name##_pop(name *h)                                                         \
    {                                                                                              \
        type top = h->items[0], last = h->items[--h->n];                                           \
        size_t i = 0, n = h->n;                                                                    \
        for (;;) {                                                                                 \
            size_t l = 2 * i + 1, r = l + 1, best = i;                                             \
            const type *cur = &last;                                                               \
            if (l < n && before(&h->items[l], cur)) {                                              \
                best = l;                                                                          \
                cur = &h->items[l];                                                                \
            }                                                                                      \
            if (r < n && before(&h->items[r], cur))                                                \
                best = r;                                                                          \
            if (best == i)                                                                         \
                break;                                                                             \
            h->items[i] = h->items[best];                                                          \
            i = best;                                                                              \
        }                                                                                          \
        if (n > 0)                                                                                 \
            h->items[i] = last;                                                                    \
        return top;                                                                                \
    }

#endif
