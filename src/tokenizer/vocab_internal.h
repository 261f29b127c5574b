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
    edgellm_token bos, eos, unk, eot, eom;
    bool add_bos;
    bool add_space_prefix;
    edgellm_token byte_tokens[256]; /* id of "<0xNN>" or -1 */
    int32_t *specials;              /* control/user-defined ids, longest text first */
    int32_t n_specials;
    uint8_t special_first[256]; /* 1 for bytes some special token starts with */
    edgellm_token eog[16];      /* tokens that end generation (EOS, end-of-turn, ...) */
    int32_t n_eog;
    struct ellm_bpe *bpe; /* byte-level BPE state ("gpt2" vocabularies), else NULL */
};

/* Id of the token with exactly this text, or -1. */
edgellm_token ellm_vocab_find(const ellm_vocab *vocab, const char *text, size_t len);
/* The token for a byte of text no token covers: byte_token when the vocabulary has one (>= 0),
 * else the unknown token; a one-line error when it has neither, since no id can stand for the
 * byte. */
edgellm_status ellm_vocab_byte_fallback(const ellm_vocab *vocab, edgellm_token byte_token,
                                        uint8_t byte, edgellm_token *out);
/* The longest special (control or user-defined) token whose text starts text[0..len), or -1. */
edgellm_token ellm_vocab_match_special(const ellm_vocab *vocab, const char *text, size_t len);
/* "<0xAB>" -> 0xAB, else -1. */
int ellm_parse_byte_token(const char *text, size_t len);

/* Byte-level BPE (bpe.c). Loads tokenizer.ggml.pre and tokenizer.ggml.merges into v->bpe. */
edgellm_status ellm_bpe_load(ellm_vocab *vocab, const gguf_file *file);
void ellm_bpe_free(struct ellm_bpe *bpe);
/* ellm_tokenize for vocabularies with v->bpe. */
edgellm_status ellm_bpe_tokenize(const ellm_vocab *vocab, const char *text, size_t len,
                                 bool add_bos, bool parse_special, edgellm_token *tokens,
                                 int32_t max_tokens, int32_t *n_tokens);
/* The raw byte a character of a byte-level token text stands for (GPT-2's byte-to-unicode map
 * inverted), or -1 if cp is not one of the 256 characters of the map. */
int ellm_bpe_char_to_byte(uint32_t cp);
/* The character byte b is written as in byte-level token texts. */
uint32_t ellm_bpe_byte_to_char(uint8_t b);

#endif
