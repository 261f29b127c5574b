/* Pre-tokenizers of byte-level BPE vocabularies: split text into the pieces BPE merges within.
 * Each family's split regex (selected by tokenizer.ggml.pre) is implemented as a hand-written
 * matcher with the semantics of a backtracking regex engine (leftmost alternative first, greedy
 * quantifiers); text between matches becomes a piece of its own, as the "Isolated" split does. */
#ifndef EDGELLM_TOKENIZER_PRETOKENIZE_H
#define EDGELLM_TOKENIZER_PRETOKENIZE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "edgellm.h"

typedef enum ellm_pre_type {
    /* "default": punctuation runs, then the GPT-2 regex without its last \s+ alternative, then
     * number runs, then groups of three ASCII digits (each stage splits the previous pieces). */
    ELLM_PRE_DEFAULT = 0,
    /* "llama-bpe" (Llama 3):
     * (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
     * \s*[\r\n]+|\s+(?!\S)|\s+ */
    ELLM_PRE_LLAMA3,
    /* "qwen2": the same with \p{N} (single digits) instead of \p{N}{1,3}. */
    ELLM_PRE_QWEN2,
    /* "gpt2": 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
    ELLM_PRE_GPT2,
    /* "smollm": every number character is a piece of its own, then the GPT-2 regex on the rest. */
    ELLM_PRE_SMOLLM
} ellm_pre_type;

/* The family named by tokenizer.ggml.pre; false if unknown. */
bool ellm_pre_type_from_name(const char *name, size_t len, ellm_pre_type *out);
const char *ellm_pre_type_name(ellm_pre_type type);

/* Reusable buffers of the pre-tokenizer (zero-initialise; free with ellm_pretok_free). */
typedef struct ellm_pretok {
    uint32_t *cp;      /* decoded code points */
    uint8_t *flags;    /* their ELLM_UC_* flags */
    uint32_t *offset;  /* byte offset of each code point, plus the end */
    uint32_t *ends[2]; /* piece ends (code point indices) of the current and next stage */
    size_t n_ends[2];
    int cur;    /* which of ends[] holds the final pieces */
    size_t cap; /* capacity of every array above, in code points */
} ellm_pretok;

void ellm_pretok_free(ellm_pretok *p);

/* Splits text[0..len) into pieces; afterwards piece k is bytes
 * [ellm_pretok_piece_start(p, k), ellm_pretok_piece_end(p, k)). Returns the number of pieces
 * in *n_pieces. */
edgellm_status ellm_pretokenize(ellm_pretok *p, ellm_pre_type type, const char *text, size_t len,
                                size_t *n_pieces);
size_t ellm_pretok_piece_start(const ellm_pretok *p, size_t k);
size_t ellm_pretok_piece_end(const ellm_pretok *p, size_t k);

#endif
