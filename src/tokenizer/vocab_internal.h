/* Vocabulary layout shared by the tokenizer's files. */
#ifndef EDGELLM_TOKENIZER_VOCAB_INTERNAL_H
#define EDGELLM_TOKENIZER_VOCAB_INTERNAL_H

#include "tokenizer/tokenizer.h"

typedef struct ellm_vocab_token {
    const char *text; /* NUL-terminated, in text_pool */
    uint32_t len;
    float score;
    ellm_token_type type;
} ellm_vocab_token;

struct ellm_vocab {
    int32_t n_tokens;
    ellm_vocab_token *tokens;
    char *text_pool;
    int32_t *index; /* open addressing: token id or -1 */
    uint64_t index_mask;
    edgellm_token bos, eos, unk, eot;
    bool add_bos;
    bool add_space_prefix;
    edgellm_token byte_tokens[256]; /* id of "<0xNN>" or -1 */
    int32_t *specials;              /* control/user-defined ids, longest text first */
    int32_t n_specials;
};

/* Id of the token with exactly this text, or -1. */
edgellm_token ellm_vocab_find(const ellm_vocab *vocab, const char *text, size_t len);
/* "<0xAB>" -> 0xAB, else -1. */
int ellm_parse_byte_token(const char *text, size_t len);

#endif
