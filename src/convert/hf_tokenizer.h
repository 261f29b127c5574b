/* Hugging Face tokenizers (tokenizer.json) to GGUF tokenizer.ggml.* metadata. */
#ifndef EDGELLM_CONVERT_HF_TOKENIZER_H
#define EDGELLM_CONVERT_HF_TOKENIZER_H

#include "edgellm.h"
#include "gguf/gguf.h"

/*
 * Reads dir/tokenizer.json (a byte-level BPE tokenizer) plus, when present,
 * dir/tokenizer_config.json (special tokens, add_bos_token, chat_template), dir/config.json
 * (vocab_size, special ids) and dir/generation_config.json (eos/bos ids), and sets on w the keys
 * GGUF runtimes read: tokenizer.ggml.model "gpt2", .pre (the pre-tokenizer family: llama-bpe,
 * qwen2, gpt2, smollm), .tokens, .token_type, .merges, bos/eos/eot/eom/unknown/padding ids,
 * add_bos_token, add_eos_token and tokenizer.chat_template. When config.json's vocab_size is
 * larger than the tokenizer (padded embeddings), the vocabulary is padded with unused
 * "[PADn]" tokens so it matches the embedding rows. *out_n_vocab (may be NULL) receives the
 * token count written. Fails with a message naming the file and what is unsupported.
 */
edgellm_status ellm_hf_write_tokenizer(gguf_writer *w, const char *dir, int32_t *out_n_vocab);

/* The largest vocabulary (config.json vocab_size, highest token id + 1) an import accepts. */
#define ELLM_HF_MAX_VOCAB (1 << 23)
/* Ids no token names (holes, padding up to vocab_size) become "[PADn]" tokens; beyond this many
 * more than the tokens actually defined, the file is hostile or broken, not padded. */
#define ELLM_HF_MAX_PADDING 65536

/*
 * `edgellm convert --from hf DIR --vocab-only`: writes out_path (atomically) with no tensors,
 * general.architecture from config.json's model_type ("llama" without config.json),
 * general.name (name, or the directory's base name) and the tokenizer keys above.
 */
edgellm_status ellm_convert_hf_vocab_only(const char *dir, const char *out_path, const char *name);

#endif
