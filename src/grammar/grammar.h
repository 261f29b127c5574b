/* Constrained decoding: a context-free grammar (GBNF syntax, docs/structured-output.md) compiled
 * once, a pushdown matcher over Unicode code points, and a byte trie of the vocabulary so that the
 * tokens allowed after a prefix are found by one walk of the trie rather than one test per token.
 *
 * Layers: ellm_grammar (compiled, immutable), ellm_token_trie (per vocabulary, immutable) and
 * ellm_matcher (per generation: the set of parse stacks after the text so far). The tests drive
 * the layers directly with made-up vocabularies; the public edgellm_grammar_* API binds them to a
 * model. */
#ifndef EDGELLM_GRAMMAR_H
#define EDGELLM_GRAMMAR_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "core/utf8.h"
#include "edgellm.h"

/* Limits that keep hostile grammars from exhausting memory or time. */
#define ELLM_GRAMMAR_MAX_TEXT (1u << 20)    /* bytes of grammar text */
#define ELLM_GRAMMAR_MAX_ELEMENTS (1 << 20) /* compiled elements, repetitions expanded */
#define ELLM_GRAMMAR_MAX_NESTING 64         /* parenthesised groups inside each other */
#define ELLM_GRAMMAR_MAX_REPEAT 10000       /* m and n of {m,n} */
#define ELLM_GRAMMAR_MAX_STACKS 4096        /* parse stacks alive at once (ambiguity) */
/* Stack expansions in one matcher call (a token's mask or its acceptance): legitimate grammars
 * need a few hundred against a 32000-token vocabulary; an ambiguous one that stays under
 * MAX_STACKS could otherwise take seconds per token (a fuzzed 130-byte grammar: 4.7 million). */
#define ELLM_GRAMMAR_MAX_WORK (1 << 20)

typedef struct ellm_cp_range {
    uint32_t lo, hi; /* inclusive code points */
} ellm_cp_range;

/* A set of code points: sorted, merged, non-adjacent ranges (negation already applied). */
typedef struct ellm_char_class {
    int32_t first_range, n_ranges;
    uint64_t ascii[2]; /* membership of 0..127, the common case */
} ellm_char_class;

/* An element is one int32: END (0), a character class (4*class+1) or a rule reference
 * (4*rule+2). Each alternative is its elements followed by END. */
#define ELLM_GEL_END 0
#define ELLM_GEL_IS_CLASS(e) (((e)&3) == 1)
#define ELLM_GEL_IS_RULE(e) (((e)&3) == 2)
#define ELLM_GEL_ARG(e) ((e) >> 2)

typedef struct ellm_grammar {
    int32_t *elems;
    int32_t n_elems;
    int32_t *alt_start;  /* element index where each alternative begins */
    int32_t *rule_first; /* first alternative of each rule */
    int32_t *rule_n_alts;
    char **rule_names; /* synthesised rules are named after their rule, e.g. "item_3" */
    int32_t n_rules;
    int32_t root;
    ellm_char_class *classes;
    int32_t n_classes;
    ellm_cp_range *ranges;
} ellm_grammar;

/* Parses and checks GBNF text (len bytes). On failure returns EDGELLM_ERR_INVALID_ARGUMENT with
 * a one-line message naming the line and what is wrong. root_name NULL means "root". */
/* Grows *v (an array of elem-byte items, *cap of them) to hold at least need; 0 when that is
 * over INT32_MAX / 2 items or memory runs out (*v is then unchanged). */
int ellm_grammar_grow(void **v, int32_t *cap, int64_t need, size_t elem);

edgellm_status ellm_grammar_parse(const char *text, size_t len, const char *root_name,
                                  ellm_grammar **out);
void ellm_grammar_destroy(ellm_grammar *g);
int ellm_class_contains(const ellm_grammar *g, int32_t cls, uint32_t cp);

/* Byte trie over the token texts of a vocabulary. Tokens are numbered in trie order ("slots"),
 * so every subtree is a contiguous range of slots. Empty texts (control tokens) are left out. */
typedef struct ellm_trie_node {
    int32_t first_child, n_children; /* children are consecutive nodes, sorted by byte */
    int32_t slot_lo, slot_hi;        /* slots of every token in this subtree */
    int32_t term_hi;                 /* slots [slot_lo, term_hi) end exactly here */
    int32_t cp_depth;                /* whole characters on the path from the root */
    int32_t cp_in;                   /* code point the edge into this node completes; -1 none
                                        yet (mid-character), -2 invalid UTF-8 */
    uint8_t byte;                    /* the edge's byte */
} ellm_trie_node;

typedef struct ellm_token_trie {
    ellm_trie_node *nodes;
    int32_t n_nodes;
    int32_t n_tokens;    /* vocabulary size */
    int32_t n_slots;     /* tokens in the trie */
    int32_t *slot_token; /* slot -> token id */
    int32_t *token_slot; /* token id -> slot, -1 when not in the trie */
    int32_t *slot_cps;   /* characters in each slot's text (when it ends on a whole one) */
    uint8_t *token_eog;  /* 1 for tokens that end generation (allowed only when complete) */
    char *bytes;         /* every token's text, token_off[i] .. token_off[i] + token_len[i] */
    int64_t *token_off;
    int32_t *token_len;
} ellm_token_trie;

/* pieces[i] (lens[i] bytes) is the text of token i; eog[i] marks end-of-generation tokens
 * (may be NULL). */
edgellm_status ellm_token_trie_build(int32_t n_tokens, const char *const *pieces,
                                     const int32_t *lens, const uint8_t *eog,
                                     ellm_token_trie **out);
void ellm_token_trie_destroy(ellm_token_trie *t);

/* A grammar bound to a vocabulary, with what is precomputed lazily for the pair. Shareable
 * between threads (the lazy parts are filled under the lock). */
typedef struct ellm_bound_grammar {
    ellm_grammar *grammar;
    const ellm_token_trie *trie;
    pthread_mutex_t lock;
    /* [class] -> a bit per trie node: every token ending in the node's subtree continues after
     * the node with whole characters of that class only. NULL until first needed. */
    uint8_t **class_below;
} ellm_bound_grammar;

edgellm_status ellm_bound_grammar_init(ellm_bound_grammar *bg, ellm_grammar *g,
                                       const ellm_token_trie *trie);
/* The size of the vocabulary a compiled grammar was bound to: its masks cover that many logits. */
int32_t ellm_grammar_n_vocab(const edgellm_grammar *g);
void ellm_bound_grammar_release(ellm_bound_grammar *bg);

typedef struct ellm_matcher ellm_matcher;

edgellm_status ellm_matcher_create(ellm_bound_grammar *bg, ellm_matcher **out);
void ellm_matcher_free(ellm_matcher *m);
void ellm_matcher_reset(ellm_matcher *m);
/* Feeds bytes of output text; fails (and changes nothing) if they cannot continue a valid prefix. */
edgellm_status ellm_matcher_accept_bytes(ellm_matcher *m, const char *bytes, size_t len);
edgellm_status ellm_matcher_accept_token(ellm_matcher *m, edgellm_token token);
/* allowed[token] = 1 for every token that keeps the output a valid prefix (EOG tokens only when
 * the output is complete), 0 otherwise; returns the number allowed, or -1 on failure (too many
 * parse stacks or stack expansions: the grammar is too ambiguous), with the error set. */
int32_t ellm_matcher_allowed(ellm_matcher *m, uint8_t *allowed);
/* Sets the logits of disallowed tokens to -INFINITY; same return as ellm_matcher_allowed. */
int32_t ellm_matcher_mask_logits(ellm_matcher *m, float *logits);
/* Where a matcher stands: enough to return to it after feeding text ahead (speculative
 * proposals). Only meaningful for the matcher it came from. */
typedef struct ellm_matcher_mark {
    int32_t state, need;
    uint32_t part;
} ellm_matcher_mark;
ellm_matcher_mark ellm_matcher_get_mark(const ellm_matcher *m);
void ellm_matcher_rewind(ellm_matcher *m, ellm_matcher_mark mark);
/* Computes (and caches) the current state's allowed set without applying it, so a later mask
 * costs one pass over the vocabulary; may run on another thread while the state's owner waits
 * for something else (the forward pass). Returns 0 on failure (the error is left for the mask). */
int ellm_matcher_prepare(ellm_matcher *m);
int ellm_matcher_can_end(const ellm_matcher *m);  /* the output so far is a complete sentence */
int ellm_matcher_must_end(const ellm_matcher *m); /* ... and nothing can follow it */

/* The same for a public grammar state (grammar_api.c), for the generation loop and the server's
 * speculative decoding, which feed proposals through the state and take them back. */
ellm_matcher_mark ellm_grammar_state_get_mark(const edgellm_grammar_state *s);
void ellm_grammar_state_rewind(edgellm_grammar_state *s, ellm_matcher_mark mark);
int ellm_grammar_state_prepare(edgellm_grammar_state *s);

/* The trie of a model's vocabulary, built on first use and kept with the model (implemented by
 * the api module, which owns the model). */
edgellm_status ellm_model_token_trie(const edgellm_model *model, const ellm_token_trie **out);

#endif
