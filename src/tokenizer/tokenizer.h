/* Vocabularies and tokenizers read from GGUF metadata (tokenizer.ggml.*). */
#ifndef EDGELLM_TOKENIZER_H
#define EDGELLM_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "edgellm.h"
#include "gguf/gguf.h"

typedef struct ellm_vocab ellm_vocab;

/* Token types as GGUF stores them in tokenizer.ggml.token_type. */
typedef enum ellm_token_type {
    ELLM_TOKEN_UNDEFINED = 0,
    ELLM_TOKEN_NORMAL = 1,
    ELLM_TOKEN_UNKNOWN = 2,
    ELLM_TOKEN_CONTROL = 3,
    ELLM_TOKEN_USER_DEFINED = 4,
    ELLM_TOKEN_UNUSED = 5,
    ELLM_TOKEN_BYTE = 6
} ellm_token_type;

/* Builds the vocabulary from a parsed file; fails with a clear message for an unsupported
 * tokenizer.ggml.model or inconsistent arrays. The vocabulary copies what it needs (it does not
 * keep pointers into the file). */
edgellm_status ellm_vocab_load(const gguf_file *file, ellm_vocab **out);
void ellm_vocab_free(ellm_vocab *vocab);

int32_t ellm_vocab_size(const ellm_vocab *vocab);
edgellm_token ellm_vocab_bos(const ellm_vocab *vocab); /* -1 if none */
edgellm_token ellm_vocab_eos(const ellm_vocab *vocab);
bool ellm_vocab_add_bos(const ellm_vocab *vocab);
/* End-of-generation: EOS and other tokens that end a turn (e.g. <|eot_id|>). */
bool ellm_vocab_is_eog(const ellm_vocab *vocab, edgellm_token token);
ellm_token_type ellm_vocab_token_type(const ellm_vocab *vocab, edgellm_token token);
/* The token's text as stored in the vocabulary ("▁the", "<0x0A>"); NULL for an invalid id. */
const char *ellm_vocab_token_text(const ellm_vocab *vocab, edgellm_token token);

/* Same contract as edgellm_tokenize. */
edgellm_status ellm_tokenize(const ellm_vocab *vocab, const char *text, size_t len, bool add_bos,
                             bool parse_special, edgellm_token *tokens, int32_t max_tokens,
                             int32_t *n_tokens);

/* Raw bytes a token stands for (byte tokens -> the byte, "▁" -> ' '; control tokens -> "").
 * Same size contract as edgellm_token_to_piece. */
edgellm_status ellm_token_piece(const ellm_vocab *vocab, edgellm_token token, char *buf, size_t cap,
                                size_t *len);

/* Same contract as edgellm_detokenize. */
edgellm_status ellm_detokenize(const ellm_vocab *vocab, const edgellm_token *tokens,
                               int32_t n_tokens, bool remove_leading_space, char *buf, size_t cap,
                               size_t *len);

#endif
