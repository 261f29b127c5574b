/*
 * edgellm — run quantized GGUF language models on the device.
 *
 * The stable C API that applications embed. Conventions:
 *  - Every fallible call returns an edgellm_status; on failure a readable message describing what
 *    went wrong (and what to do about it) is available from edgellm_last_error() on the same thread.
 *  - The library never prints, never exits and never reads environment variables.
 *  - Objects are opaque; a model may be shared by many contexts (one context per thread at a time).
 */
#ifndef EDGELLM_H
#define EDGELLM_H

#include <stddef.h>
#include <stdint.h>

#include "edgellm_version.h" /* EDGELLM_VERSION_*, generated from the project's version */

/* Marks the functions libedgellm exports. The library is built with hidden visibility, so a
 * function declared here without it is missing from libedgellm.so and libedgellm.a
 * (tests/library_symbols.sh checks both against this header). */
#ifndef EDGELLM_API
#if defined(__GNUC__) || defined(__clang__)
#define EDGELLM_API __attribute__((visibility("default")))
#else
#define EDGELLM_API
#endif
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define EDGELLM_API_VERSION 6

typedef enum edgellm_status {
    EDGELLM_OK = 0,
    EDGELLM_ERR_INVALID_ARGUMENT = 1, /* a parameter is out of range or NULL */
    EDGELLM_ERR_IO = 2,               /* a file could not be opened, read, written or mapped */
    EDGELLM_ERR_FORMAT = 3,           /* a file is corrupt, truncated or inconsistent */
    EDGELLM_ERR_UNSUPPORTED =
        4, /* valid input that this build cannot handle (architecture, type) */
    EDGELLM_ERR_OUT_OF_MEMORY = 5,
    EDGELLM_ERR_CONTEXT_FULL = 6, /* the tokens do not fit in the context window */
    EDGELLM_ERR_BUFFER_TOO_SMALL =
        7,                     /* the caller's buffer is too small; the needed size is reported */
    EDGELLM_ERR_NOT_FOUND = 8, /* a key, tensor or name does not exist */
    EDGELLM_ERR_CANCELLED = 9, /* a callback or edgellm_context_cancel asked to stop */
    EDGELLM_ERR_BUSY = 10      /* the context has an open edgellm_generation (API version 4) */
} edgellm_status;

typedef int32_t edgellm_token;

typedef struct edgellm_model edgellm_model;
typedef struct edgellm_context edgellm_context;
typedef struct edgellm_sampler edgellm_sampler;

/* ---- Library ---------------------------------------------------------------------------- */

EDGELLM_API
const char *edgellm_version(void);
/* The message of the last failure on the calling thread ("" if none). Valid until the next call. */
EDGELLM_API
const char *edgellm_last_error(void);
EDGELLM_API
const char *edgellm_status_name(edgellm_status status);
/* Name of the kernel set chosen for this CPU at run time (e.g. "avx2", "neon", "scalar"). */
EDGELLM_API
const char *edgellm_kernel_set(void);
/* Uses the named kernel set ("avx512", "avx2", "neon-dotprod", "neon", "wasm-simd", "scalar")
 * for every kernel from then on: matrix products, prefill tiles, activation quantizers and
 * attention. NULL or "" returns to the CPU's default. Fails with EDGELLM_ERR_INVALID_ARGUMENT
 * naming the sets this CPU runs when the name is unknown or the CPU lacks its features. Call it
 * before evaluating; the set is process-wide. */
EDGELLM_API
edgellm_status edgellm_use_kernel_set(const char *name);
/* The arithmetic the kernel set in use multiplies a weight type ("Q4_0", "F16", ...) with, or
 * attention with (type "attention"): "int8-vnni512", "int8-avx2", "int8-sdot", "int8-neon",
 * "f32-fma-avx512", "f32-fma-avx2", "f32-fma-neon" or "scalar"; NULL for unknown types. For a
 * type with multi-token tiles it is the tiles' arithmetic (prompt processing). Lets an
 * efficiency be measured against the peak of the instructions really used. */
EDGELLM_API
const char *edgellm_kernel_arithmetic(const char *type);

/* ---- Models ----------------------------------------------------------------------------- */

/* How a model file's mapping asks for pages (Linux; other systems use theirs). */
typedef enum edgellm_page_advice {
    /* MADV_HUGEPAGE: a file read cold is cached in 2 MiB folios where the filesystem can, each
     * mapped by one page-table entry (decode reads every weight once per token). */
    EDGELLM_PAGES_HUGE = 0,
    /* MADV_NOHUGEPAGE: 4 KiB entries even over 2 MiB folios, for comparisons. */
    EDGELLM_PAGES_SMALL = 1,
} edgellm_page_advice;

typedef struct edgellm_model_params {
    int reserved; /* must be 0; placeholder so the struct can grow without breaking callers */
    /* 1 = load only the tokenizer (e.g. a file written by `edgellm convert --vocab-only`, which
     * has no tensors): tokenization, detokenization, metadata and edgellm_model_get_info
     * (architecture, name, n_vocab; the rest 0) work; creating a context or batch and
     * estimating memory fail with EDGELLM_ERR_UNSUPPORTED. */
    int vocab_only;
    /* The pages edgellm_model_load asks for (default EDGELLM_PAGES_HUGE); a model in memory
     * (edgellm_model_load_from_memory) lives in pages the application chose. Any other value is
     * EDGELLM_ERR_INVALID_ARGUMENT. */
    edgellm_page_advice pages;
} edgellm_model_params;

EDGELLM_API
edgellm_model_params edgellm_model_default_params(void);

/* Memory-maps a GGUF file read-only and validates it. params may be NULL for defaults. */
EDGELLM_API
edgellm_status edgellm_model_load(const char *path, const edgellm_model_params *params,
                                  edgellm_model **out_model);
/* Releases the application's handle. The model itself (its mapping and memory) goes when the
 * contexts, batches, grammars and text streams made from it are freed too: each keeps it, so they
 * go on working when the model is freed first (API version 5; docs/embedding.md, "Ownership"). */
EDGELLM_API
void edgellm_model_free(edgellm_model *model);
/* The same from a GGUF file already in memory (e.g. a browser download): data must stay valid and
 * unchanged until the model goes (edgellm_model_free and the last object made from it freed),
 * which does not free it. */
EDGELLM_API
edgellm_status edgellm_model_load_from_memory(const void *data, size_t size,
                                              const edgellm_model_params *params,
                                              edgellm_model **out_model);

typedef struct edgellm_model_info {
    const char *architecture; /* "llama", ... (owned by the model) */
    const char *name;         /* general.name or "", control bytes and invalid UTF-8 as '?' */
    const char *quantization; /* most common weight type, e.g. "Q4_0", "F32" */
    int32_t n_vocab;
    int32_t n_ctx_train;
    int32_t n_embd;
    int32_t n_layer;
    int32_t n_head;
    int32_t n_head_kv;
    int32_t n_ff;
    int32_t head_dim;
    float rms_norm_eps;
    float rope_freq_base;
    float rope_freq_scale;
    int32_t rope_neox;       /* 1 = NeoX-style RoPE (rotate halves), 0 = normal (adjacent pairs) */
    int32_t tied_embeddings; /* 1 when the output head reuses the token embedding */
    uint64_t n_params;
    uint64_t weights_bytes; /* bytes of tensor data mapped from the file */
    uint64_t file_bytes;
} edgellm_model_info;

EDGELLM_API
edgellm_status edgellm_model_get_info(const edgellm_model *model, edgellm_model_info *out_info);

/* Q8_0: blocks of 32 values with one F16 scale (8.5 bits a value, about half of F16); needs
 * KV rows (KV heads x head size) that are a multiple of 32. */
typedef enum edgellm_kv_type {
    EDGELLM_KV_F16 = 0,
    EDGELLM_KV_F32 = 1,
    EDGELLM_KV_Q8_0 = 2
} edgellm_kv_type;

typedef struct edgellm_memory_estimate {
    uint64_t weights_bytes;
    uint64_t kv_cache_bytes;
    uint64_t scratch_bytes;
    uint64_t total_bytes;
} edgellm_memory_estimate;

/* Memory a context of n_ctx tokens would need (n_ctx <= 0: the model's training context). */
EDGELLM_API
edgellm_status edgellm_model_estimate_memory(const edgellm_model *model, int32_t n_ctx,
                                             edgellm_kv_type kv_type, int32_t n_batch,
                                             edgellm_memory_estimate *out);

/* Metadata access: number of key/value pairs and a printable rendering of one of them. */
EDGELLM_API
int64_t edgellm_model_meta_count(const edgellm_model *model);
/* Writes "key" and a human-readable value (long arrays abbreviated) into the buffers. */
EDGELLM_API
edgellm_status edgellm_model_meta_at(const edgellm_model *model, int64_t index, char *key_buf,
                                     size_t key_cap, char *value_buf, size_t value_cap);

typedef struct edgellm_tensor_desc {
    const char *name; /* owned by the model; control bytes and invalid UTF-8 as '?' */
    const char *type; /* "F32", "Q4_0", ... */
    int32_t n_dims;
    int64_t ne[4]; /* ne[0] is the row length (innermost dimension) */
    uint64_t n_bytes;
} edgellm_tensor_desc;

/* The string value of metadata key (e.g. "tokenizer.chat_template"), NUL-terminated in buf.
 * Always stores its length (without the NUL) in *len; EDGELLM_ERR_BUFFER_TOO_SMALL when cap is
 * not more than that (buf may be NULL with cap 0 to ask), EDGELLM_ERR_NOT_FOUND when the key is
 * absent, EDGELLM_ERR_FORMAT when its value is not a string. */
EDGELLM_API
edgellm_status edgellm_model_meta_string(const edgellm_model *model, const char *key, char *buf,
                                         size_t cap, size_t *len);

EDGELLM_API
int64_t edgellm_model_tensor_count(const edgellm_model *model);
EDGELLM_API
edgellm_status edgellm_model_tensor_at(const edgellm_model *model, int64_t index,
                                       edgellm_tensor_desc *out);

/* ---- Tokenizer -------------------------------------------------------------------------- */

EDGELLM_API
int32_t edgellm_n_vocab(const edgellm_model *model);
EDGELLM_API
edgellm_token edgellm_token_bos(const edgellm_model *model); /* -1 if none */
EDGELLM_API
edgellm_token edgellm_token_eos(const edgellm_model *model); /* -1 if none */
EDGELLM_API
int edgellm_add_bos_default(const edgellm_model *model); /* tokenizer.ggml.add_bos_token */
/* Whether a token ends generation (EOS, end-of-turn). */
EDGELLM_API
int edgellm_token_is_eog(const edgellm_model *model, edgellm_token token);

typedef enum edgellm_tokenize_flags {
    EDGELLM_TOKENIZE_ADD_BOS = 1, /* prepend BOS (when the vocabulary has one) */
    EDGELLM_TOKENIZE_PARSE_SPECIAL =
        2 /* recognise control tokens like "</s>" written in the text */
} edgellm_tokenize_flags;

/*
 * Tokenizes text (len bytes, need not be NUL-terminated). Writes at most max_tokens ids and always
 * stores the number needed in *n_tokens; returns EDGELLM_ERR_BUFFER_TOO_SMALL when it did not fit.
 */
EDGELLM_API
edgellm_status edgellm_tokenize(const edgellm_model *model, const char *text, size_t len, int flags,
                                edgellm_token *tokens, int32_t max_tokens, int32_t *n_tokens);

/*
 * The bytes one token stands for (byte tokens become their raw byte, "▁" becomes a space).
 * Always stores the needed size in *len; EDGELLM_ERR_BUFFER_TOO_SMALL if cap was not enough.
 * The bytes may be an incomplete UTF-8 sequence; use edgellm_detokenize or the generate callback
 * for text that is always whole characters.
 */
EDGELLM_API
edgellm_status edgellm_token_to_piece(const edgellm_model *model, edgellm_token token, char *buf,
                                      size_t cap, size_t *len);

/* The token's text as the vocabulary stores it, control tokens included ("<s>", "<|eot_id|>"):
 * what a chat template writes for bos_token / eos_token. NUL-terminated in buf when it fits;
 * same size contract as edgellm_token_to_piece. */
EDGELLM_API
edgellm_status edgellm_token_text(const edgellm_model *model, edgellm_token token, char *buf,
                                  size_t cap, size_t *len);

/* Text of a token sequence. The SentencePiece dummy-prefix space of the first token is removed
 * when remove_leading_space is set. Output is NUL-terminated when it fits. */
EDGELLM_API
edgellm_status edgellm_detokenize(const edgellm_model *model, const edgellm_token *tokens,
                                  int32_t n_tokens, int remove_leading_space, char *buf, size_t cap,
                                  size_t *len);

/* ---- Contexts and evaluation ------------------------------------------------------------ */

typedef struct edgellm_context_params {
    int32_t n_ctx;     /* context length in tokens; <= 0 means the model's training context */
    int32_t n_threads; /* <= 0 means the number of online CPUs */
    int32_t n_batch;   /* maximum tokens evaluated in one forward pass (prefill chunk) */
    edgellm_kv_type kv_type;
} edgellm_context_params;

EDGELLM_API
edgellm_context_params edgellm_context_default_params(void);

/* The bytes edgellm_context_create(model, params) allocates (NULL params: the defaults): the
 * KV cache, and as scratch the state's buffers for params' batch and threads, the token list and
 * a row of logits; computed from the layout the context is allocated by, so the two agree
 * exactly. weights_bytes is the mapped file's tensor data (shared, not allocated). */
EDGELLM_API
edgellm_status edgellm_context_estimate_memory(const edgellm_model *model,
                                               const edgellm_context_params *params,
                                               edgellm_memory_estimate *out);

EDGELLM_API
edgellm_status edgellm_context_create(edgellm_model *model, const edgellm_context_params *params,
                                      edgellm_context **out_ctx);
EDGELLM_API
void edgellm_context_free(edgellm_context *ctx);

EDGELLM_API
int32_t edgellm_context_n_ctx(const edgellm_context *ctx);
/* Most tokens one edgellm_eval with all_logits may take (the resolved n_batch). */
EDGELLM_API
int32_t edgellm_context_n_batch(const edgellm_context *ctx);
/* Number of tokens currently held in the KV cache. */
EDGELLM_API
int32_t edgellm_context_n_past(const edgellm_context *ctx);
/* The token ids held in the KV cache, in order (*n_tokens of them; valid until the next call
 * that changes the context). Lets callers find a prefix they can reuse. */
EDGELLM_API
const edgellm_token *edgellm_context_tokens(const edgellm_context *ctx, int32_t *n_tokens);
EDGELLM_API
const edgellm_model *edgellm_context_model(const edgellm_context *ctx);
/*
 * Asks the call running on ctx (edgellm_eval, edgellm_embed, edgellm_generate,
 * edgellm_generate_tokens), or the generation open on it (edgellm_generation_begin), to stop;
 * callable from any thread while ctx exists, e.g. when the user leaves the screen during a long
 * prompt, and from a signal handler (it only sets an atomic word). The call stops before the next layer of its forward pass (or before the next token)
 * and returns EDGELLM_ERR_CANCELLED with the context usable:
 *  - edgellm_eval keeps the n_batch chunks it finished in the cache (edgellm_context_n_past says
 *    how far it got; an edgellm_generate with the same prompt reuses them) and no logits;
 *  - edgellm_generate* has handed every accepted token to on_token; the cache holds the prompt
 *    (or the chunks of it that were finished) and the output, except the last token when the
 *    cancel came after it was emitted and before it was evaluated (as when on_token stops);
 *    out_result says how many tokens were generated, stop_reason EDGELLM_STOP_CANCELLED;
 *  - edgellm_embed leaves the cache empty.
 *  - an open edgellm_generation that has not ended keeps the cancel until its running or next
 *    edgellm_generation_prefill / _next call, which stops as edgellm_generate does (or, between
 *    calls, at once without evaluating or handing out anything) and returns
 *    EDGELLM_ERR_CANCELLED; edgellm_generation_finish then reports EDGELLM_STOP_CANCELLED.
 * Returns 1 when a call was running or a generation is open and not ended (it will stop, unless
 * a call was already past its last check and returns its normal result), 0 otherwise: that
 * cancel is dropped, and the next call runs normally. Batched passes (edgellm_eval_batch) are
 * not cancelled this way. A generation's draft model stops before its next layer too (API
 * version 6); a cancel of a draft context itself stops only the drafting it lands in, not the
 * generation drafting with it.
 */
EDGELLM_API
int edgellm_context_cancel(edgellm_context *ctx);
/* Forget cached tokens after the first n_keep (0 clears the cache), e.g. to reuse a shared prefix. */
EDGELLM_API
edgellm_status edgellm_context_truncate(edgellm_context *ctx, int32_t n_keep);

/*
 * Evaluates n_tokens tokens at positions n_past.. and appends them to the KV cache. With
 * all_logits = 0 only the last position's logits are kept; otherwise logits for every position
 * (then n_tokens must not exceed n_batch). Longer batches are split into n_batch chunks. Fails
 * with EDGELLM_ERR_CONTEXT_FULL (and changes nothing) if the tokens would not fit, and with EDGELLM_ERR_FORMAT (appending nothing)
 * when the model computes NaN or infinite logits: its weights or hyper-parameters are broken.
 * edgellm_eval_batch and edgellm_embed fail the same way.
 */
EDGELLM_API
edgellm_status edgellm_eval(edgellm_context *ctx, const edgellm_token *tokens, int32_t n_tokens,
                            int all_logits);

/*
 * Continuous batching: several contexts of one model evaluated in one forward pass, so each
 * weight is read once for all of them and n sequences decode much faster together than one after
 * another. A batch is the workspace of such passes: its params give the most tokens per pass
 * (n_batch), the longest context it serves (n_ctx) and the threads it runs on (n_threads).
 * Contexts that are only evaluated through a batch can be created with n_threads = 1 and a small
 * n_batch, since they then need no scratch or threads of their own.
 */
typedef struct edgellm_batch edgellm_batch;

EDGELLM_API
edgellm_status edgellm_batch_create(edgellm_model *model, const edgellm_context_params *params,
                                    edgellm_batch **out_batch);
EDGELLM_API
void edgellm_batch_free(edgellm_batch *batch);

/*
 * Context i gets tokens[i][0 .. n_tokens[i]) appended and keeps its last position's logits:
 * exactly the logits edgellm_eval would give it alone. The total token count must not exceed the
 * batch's n_batch, no context may be longer than its n_ctx, and a context appears at most once.
 * On failure no context changes. One pass at a time per batch.
 */
EDGELLM_API
edgellm_status edgellm_eval_batch(edgellm_batch *batch, edgellm_context *const *ctxs,
                                  const edgellm_token *const *tokens, const int32_t *n_tokens,
                                  int32_t n_ctxs);

/* While on, edgellm_eval_batch keeps this context's logits for every token it is given in a pass
 * (edgellm_get_logits(ctx, i) for the i-th of them), not only the last: scoring a whole prompt,
 * e.g. for its per-token log-probabilities, in the same pass as other contexts' tokens. */
EDGELLM_API
edgellm_status edgellm_context_set_batch_all_logits(edgellm_context *ctx, int on);

/* dst's cache becomes a copy of src's (tokens, KV rows and src's last logits), so several
 * sequences continuing one prompt evaluate it once. Both contexts are of one model and KV type;
 * dst's n_ctx must hold src's tokens. */
EDGELLM_API
edgellm_status edgellm_context_copy_cache(edgellm_context *dst, const edgellm_context *src);

/*
 * A sentence embedding: the final (normed) hidden states of tokens, mean-pooled over positions
 * and L2-normalised, written to out (out_dim must be the model's n_embd). Uses the context's
 * cache from position 0 (what was cached is forgotten; the tokens stay cached after).
 */
EDGELLM_API
edgellm_status edgellm_embed(edgellm_context *ctx, const edgellm_token *tokens, int32_t n_tokens,
                             float *out, int32_t out_dim);

/* ---- Profiling -------------------------------------------------------------------------- */

#define EDGELLM_PROFILE_MAX_ENTRIES 24

typedef struct edgellm_profile_entry {
    char name[24];  /* "matmul Q4_0" (per weight type), "attention", "norm", "rope", "other" */
    double seconds; /* wall time spent in it */
    uint64_t calls;
} edgellm_profile_entry;

typedef struct edgellm_profile {
    double forward_seconds; /* wall time of the forward passes; the entries add up to it */
    uint64_t forward_calls;
    uint64_t tokens; /* tokens those passes evaluated */
    int32_t n_entries;
    edgellm_profile_entry entries[EDGELLM_PROFILE_MAX_ENTRIES];
} edgellm_profile;

/* Switches per-operation timing of this context's forward passes on (counting from zero) or off.
 * On, every operation reads the clock twice; off, passes run exactly as without profiling. */
EDGELLM_API
edgellm_status edgellm_context_set_profiling(edgellm_context *ctx, int on);
/* The times recorded since profiling was switched on (fails if it is off). */
EDGELLM_API
edgellm_status edgellm_context_get_profile(const edgellm_context *ctx, edgellm_profile *out);

/* Logits (n_vocab floats) of position i of the last eval; i = -1 means the last position.
 * NULL if that position's logits were not kept. */
EDGELLM_API
const float *edgellm_get_logits(const edgellm_context *ctx, int32_t i);

/* ---- Sampling --------------------------------------------------------------------------- */

typedef struct edgellm_sampler_params {
    float temperature;       /* 0 = greedy (argmax) */
    int32_t top_k;           /* 0 = off */
    float top_p;             /* 1 = off */
    float min_p;             /* 0 = off */
    float repeat_penalty;    /* 1 = off; divides positive / multiplies negative logits */
    int32_t repeat_last_n;   /* window of recent tokens the penalties look at; -1 = whole history;
                                both at most the last 65536 tokens */
    float presence_penalty;  /* 0 = off; subtracted once from tokens present in the window */
    float frequency_penalty; /* 0 = off; subtracted per occurrence in the window */
    uint64_t seed;           /* same seed + same inputs = same output */
} edgellm_sampler_params;

EDGELLM_API
edgellm_sampler_params edgellm_sampler_default_params(void);

EDGELLM_API
edgellm_status edgellm_sampler_create(const edgellm_sampler_params *params, int32_t n_vocab,
                                      edgellm_sampler **out_sampler);
EDGELLM_API
void edgellm_sampler_free(edgellm_sampler *sampler);
/* Forget the token history (the penalties' window) and reseed. */
EDGELLM_API
void edgellm_sampler_reset(edgellm_sampler *sampler);
/* Records a token in the history the penalties look at (prompt tokens included). */
EDGELLM_API
void edgellm_sampler_accept(edgellm_sampler *sampler, edgellm_token token);
/* Picks the next token from logits (not modified). A NaN logit counts as -inf (never picked);
 * tokens at +inf share all the probability. -1 when no token can be picked: every logit is NaN
 * or -inf after the penalties (or sampler or logits is NULL). */
EDGELLM_API
edgellm_token edgellm_sampler_sample(edgellm_sampler *sampler, const float *logits);

/* ---- Constrained decoding -------------------------------------------------------------- */

/*
 * A grammar in GBNF syntax (docs/structured-output.md: rules `name ::= ...`, alternation,
 * grouping, * + ? {m,n}, "literals", [classes], ., comments), compiled against one model's
 * vocabulary. Generation under it only produces text the grammar accepts.
 *
 * Ownership and threads: the caller owns a compiled grammar and may free it at any time: the
 * states and generations using it keep it until they are freed or finished, and it keeps its
 * model (API version 5). A compiled grammar is safe to use
 * from any number of threads at once (what it computes lazily is guarded by a lock). The first
 * grammar compiled for a model also builds the model's vocabulary trie, which the model keeps
 * and every grammar shares.
 */
typedef struct edgellm_grammar edgellm_grammar;

/* Compiles len bytes of grammar text, starting from rule root (NULL: "root"). Fails with
 * EDGELLM_ERR_INVALID_ARGUMENT and a message naming the line and the problem for a malformed,
 * left-recursive or never-completing grammar, or one no token of the vocabulary can begin. */
EDGELLM_API
edgellm_status edgellm_grammar_compile(const edgellm_model *model, const char *text, size_t len,
                                       const char *root, edgellm_grammar **out_grammar);
EDGELLM_API
void edgellm_grammar_free(edgellm_grammar *grammar);

/* The matching state of one output: what a caller running its own decoding loop needs. One per
 * generation, used by one thread at a time; it keeps its grammar (edgellm_grammar_free may come
 * first). */
typedef struct edgellm_grammar_state edgellm_grammar_state;

EDGELLM_API
edgellm_status edgellm_grammar_state_create(const edgellm_grammar *grammar,
                                            edgellm_grammar_state **out_state);
EDGELLM_API
void edgellm_grammar_state_free(edgellm_grammar_state *state);
/* Back to the start of the output. */
EDGELLM_API
void edgellm_grammar_state_reset(edgellm_grammar_state *state);
/* Sets the logits (n_vocab of them) of every token that cannot continue the output to
 * -INFINITY; end-of-generation tokens stay only where the output is complete. *n_allowed (may
 * be NULL) gets the number left; 0 means nothing can continue. EDGELLM_ERR_UNSUPPORTED when
 * the grammar is too ambiguous to follow (too many parse stacks at once). */
EDGELLM_API
edgellm_status edgellm_grammar_state_mask(edgellm_grammar_state *state, float *logits,
                                          int32_t *n_allowed);
/* Appends a token's text to the output; EDGELLM_ERR_INVALID_ARGUMENT (state unchanged) when the
 * grammar does not allow it there. */
EDGELLM_API
edgellm_status edgellm_grammar_state_accept(edgellm_grammar_state *state, edgellm_token token);
/* 1 when the output so far is complete; must_end: and nothing may follow it. */
EDGELLM_API
int edgellm_grammar_state_can_end(const edgellm_grammar_state *state);
EDGELLM_API
int edgellm_grammar_state_must_end(const edgellm_grammar_state *state);

/* ---- Generation ------------------------------------------------------------------------- */

typedef enum edgellm_stop_reason {
    EDGELLM_STOP_NONE = 0,
    EDGELLM_STOP_EOS = 1,           /* the model produced end-of-sequence */
    EDGELLM_STOP_MAX_TOKENS = 2,    /* the token budget was used up */
    EDGELLM_STOP_STRING = 3,        /* a stop string was produced (it is not emitted) */
    EDGELLM_STOP_CONTEXT_FULL = 4,  /* the context window is full */
    EDGELLM_STOP_CALLBACK = 5,      /* the callback asked to stop */
    EDGELLM_STOP_GRAMMAR_DONE = 6,  /* the grammar's output is complete and nothing may follow */
    EDGELLM_STOP_GRAMMAR_STUCK = 7, /* no token of the vocabulary can continue the grammar's
                                       output (e.g. it needs a character no token writes) */
    EDGELLM_STOP_CANCELLED = 8      /* edgellm_context_cancel (API version 3) */
} edgellm_stop_reason;

/*
 * Called once per generated token with the text that became final with it: always whole UTF-8
 * characters, never part of a possible stop string (held back until it is known not to be one).
 * text may be empty. When generation ends with text still held back, one last call with
 * token = -1 delivers it. Return non-zero to stop generating.
 */
typedef int (*edgellm_token_callback)(void *user_data, edgellm_token token, const char *text,
                                      size_t text_len);

typedef struct edgellm_generate_params {
    int32_t max_tokens;              /* <= 0: until EOS or the context is full */
    const char *const *stop_strings; /* may be NULL */
    int32_t n_stop_strings;
    int add_bos;       /* -1 = the model's default, 0 = no, 1 = yes */
    int parse_special; /* recognise control tokens written in the prompt */
    int keep_cache;    /* 1 = continue after the tokens already in the KV cache
                                        (multi-turn); 0 = start from an empty cache, reusing
                                        any cached prefix the new prompt shares */
    edgellm_sampler_params sampling;
    edgellm_token_callback on_token;
    void *user_data;
    /* Speculative decoding (docs/speculative.md): cheap proposals for the next tokens are checked
     * by the model in one batched pass and the KV cache is rolled back past the rejected ones.
     * Greedy output is token for token what decoding without proposals gives; sampled output
     * follows the same distribution edgellm_sampler_sample draws from (penalties, top-k,
     * temperature, top-p and min-p applied to both models), not the same random stream. At most
     * one source of proposals: */
    edgellm_context *draft; /* a context of a smaller model with the same vocabulary
                               (edgellm_model_check_draft); NULL = none. Open generations on
                               any threads may share one (API version 6): a pass that finds it
                               drafting for another thread's generation checks no proposals
                               (the same greedy output). Freed while generations draft with
                               it, from any thread, they go on without proposals */
    int32_t lookup_ngram;   /* > 0: prompt lookup: propose what followed the latest earlier
                               occurrence of the context's last lookup_ngram tokens; 0 = off */
    int32_t draft_max;      /* most tokens proposed per pass of the model (default 8) */
    int32_t draft_min;      /* fewer proposals than this are not checked (default 1) */
    /* BENCHMARK ONLY — breaks the output distribution. With benchmark_force_acceptance = 1 each
     * proposal is accepted with probability benchmark_acceptance_rate whatever the models say,
     * so the cost of drafting and verifying can be measured for any acceptance rate on models
     * with random weights (`edgellm bench --force-acceptance`). Leave 0 in normal use. */
    int benchmark_force_acceptance;
    float benchmark_acceptance_rate;
    /* NULL = unconstrained. Otherwise only tokens that keep the output a valid prefix of the
     * grammar are sampled, end-of-generation only where the output is complete. Not owned: it
     * must stay alive during the call (one grammar may serve many generations at once). */
    const struct edgellm_grammar *grammar;
} edgellm_generate_params;

EDGELLM_API
edgellm_generate_params edgellm_generate_default_params(void);

typedef struct edgellm_generate_result {
    int32_t n_prompt_tokens;
    int32_t n_cached_tokens; /* prompt tokens reused from the KV cache */
    int32_t n_generated;
    edgellm_stop_reason stop_reason;
    double prefill_seconds;   /* evaluating the prompt */
    double ttft_seconds;      /* from the call to the first generated token being sampled */
    double decode_seconds;    /* generating every token after the first */
    int32_t n_target_passes;  /* forward passes of the model after the prompt's */
    int32_t n_draft_proposed; /* speculative proposals checked by those passes */
    int32_t n_draft_accepted; /* of them, accepted: acceptance rate = accepted / proposed */
    double grammar_seconds;   /* masking and advancing the grammar (part of the times above) */
} edgellm_generate_result;

/*
 * Incremental detokenization for callers that run their own decoding loop (e.g. batched
 * serving): each pushed token yields the text that became final with it — whole UTF-8
 * characters only, never text that might still be the start of a stop string. When a stop
 * string completes, the text before it is returned, *stopped is set, and nothing after it is ever
 * returned. The returned text is valid until the next call on the stream.
 */
typedef struct edgellm_text_stream edgellm_text_stream;

EDGELLM_API
edgellm_status edgellm_text_stream_create(const edgellm_model *model,
                                          const char *const *stop_strings, int32_t n_stop_strings,
                                          edgellm_text_stream **out_stream);
EDGELLM_API
void edgellm_text_stream_free(edgellm_text_stream *stream);
EDGELLM_API
edgellm_status edgellm_text_stream_push(edgellm_text_stream *stream, edgellm_token token,
                                        const char **text, size_t *len, int *stopped);
/* Generation ended: returns whatever was held back (nothing after a stop string). */
EDGELLM_API
edgellm_status edgellm_text_stream_finish(edgellm_text_stream *stream, const char **text,
                                          size_t *len);
EDGELLM_API
int edgellm_text_stream_stopped(const edgellm_text_stream *stream);

/* Tokenizes prompt, evaluates it and generates, streaming through on_token. */
EDGELLM_API
edgellm_status edgellm_generate(edgellm_context *ctx, const char *prompt,
                                const edgellm_generate_params *params,
                                edgellm_generate_result *out_result);

/* Whether draft can propose tokens for target (edgellm_generate_params.draft): the same
 * vocabulary size, token texts, BOS/EOS and end-of-generation tokens. Fails with
 * EDGELLM_ERR_INVALID_ARGUMENT naming the first difference. */
EDGELLM_API
edgellm_status edgellm_model_check_draft(const edgellm_model *target, const edgellm_model *draft);

/* Same, from token ids (no tokenization, add_bos/parse_special ignored). */
EDGELLM_API
edgellm_status edgellm_generate_tokens(edgellm_context *ctx, const edgellm_token *prompt,
                                       int32_t n_prompt, const edgellm_generate_params *params,
                                       edgellm_generate_result *out_result);

/* ---- Step-by-step generation (API version 4) -------------------------------------------- */

/*
 * A generation the application pulls a slice at a time, returning to its own loop in between (a
 * UI toolkit, an async runtime, a game loop) and stopping whenever it likes without a second
 * thread: begin, then edgellm_generation_prefill for slices of the prompt and
 * edgellm_generation_next for tokens as often as it likes, then edgellm_generation_finish.
 * edgellm_generate is exactly one begin, one next to the end and one finish: slices of any sizes
 * give the same tokens, text, result and cache bit for bit (docs/embedding.md).
 *
 * Tokens reach params->on_token as with edgellm_generate, called during prefill / next / finish
 * on the thread making that call (a pull loop collects them through user_data); returning
 * non-zero ends the generation with EDGELLM_STOP_CALLBACK.
 *
 * Ownership and threads: the application owns the generation and frees it with
 * edgellm_generation_finish. What it uses may be freed first (API version 5): its context (below),
 * the model and the grammar (the generation keeps them until finish), and the draft context of
 * params, after which the generation goes on without proposals from its next pass: the same
 * greedy output, sampled output from the same distribution. Like its context, a generation is
 * used by one thread at a time (it may move between threads between calls); only
 * edgellm_context_cancel may be called from another thread while it runs. While it is open (begun and not finished, also after it ended), every call
 * that evaluates or changes the context's cache fails with EDGELLM_ERR_BUSY and changes nothing:
 * edgellm_eval, edgellm_eval_batch with the context, edgellm_embed, edgellm_generate*,
 * edgellm_context_truncate, edgellm_context_copy_cache into it, and a second
 * edgellm_generation_begin* (also when on_token makes them); the getters (edgellm_context_n_past,
 * edgellm_context_tokens, edgellm_get_logits, ...) work. The draft context of params is held too
 * until finish: a generation of its own (edgellm_generation_begin*, edgellm_generate*) fails with
 * EDGELLM_ERR_BUSY, since the drafting generation re-syncs the draft's cache before its passes (its
 * other calls are allowed while no drafting generation's call runs on another thread). Generations
 * on several threads may share one draft context (API version 6): one pass at a time drafts with
 * it, and a pass that finds it drafting for another checks no proposals instead of waiting. The
 * draft may be freed from any thread, also while those generations run (the free waits for a
 * pass drafting with it to finish drafting); only beginning a generation with it must not race
 * with its free. A context freed while a generation is open leaves that generation
 * ended: its calls fail with EDGELLM_ERR_INVALID_ARGUMENT and edgellm_generation_finish only frees
 * it.
 */
typedef struct edgellm_generation edgellm_generation;

/*
 * Begins a generation of the text prompt on ctx, tokenized as edgellm_generate tokenizes it,
 * validating params as edgellm_generate does (every failure it reports before evaluating is
 * reported here, and *out_generation is set to NULL). Nothing is evaluated yet. params and the stop
 * strings are copied; user_data must outlive the generation (the grammar and the draft context may
 * go first, as said above). EDGELLM_ERR_BUSY when ctx already has an open generation; then
 * *out_generation is left as it was, so that a handle of the open one passed again is not lost.
 */
EDGELLM_API
edgellm_status edgellm_generation_begin(edgellm_context *ctx, const char *prompt,
                                        const edgellm_generate_params *params,
                                        edgellm_generation **out_generation);
/* The same from n_prompt token ids (copied), as edgellm_generate_tokens takes them. */
EDGELLM_API
edgellm_status edgellm_generation_begin_tokens(edgellm_context *ctx, const edgellm_token *prompt,
                                               int32_t n_prompt,
                                               const edgellm_generate_params *params,
                                               edgellm_generation **out_generation);

/*
 * Evaluates up to n_tokens (>= 1) more of the prompt and hands out nothing; once the prompt is
 * evaluated it does nothing. The first slice decides, as edgellm_generate does, which cached
 * prefix is reused. The logits the prompt leaves are those of one pass over it, bit for bit,
 * whatever the slices. *ended (may be NULL) is set to 1 when the generation has ended (a failure
 * or a cancel ends it), else 0. After the end nothing runs and the call returns the status the
 * generation ended with (EDGELLM_OK when it ended normally). n_tokens <= 0 is
 * EDGELLM_ERR_INVALID_ARGUMENT and changes nothing, and so is a NULL generation (*ended 1).
 * Called from the generation's own on_token: EDGELLM_ERR_BUSY.
 */
EDGELLM_API
edgellm_status edgellm_generation_prefill(edgellm_generation *generation, int32_t n_tokens,
                                          int *ended);
/* Prompt tokens still to evaluate (a cached prefix the first slice finds is counted until
 * then), with the last token of the previous generation that a keep_cache generation evaluates
 * first (see docs/embedding.md, "The last token of a generation"): a slice of n lowers it by at
 * least n (until 0). 0 once the prompt is evaluated; -1 for NULL. */
EDGELLM_API
int32_t edgellm_generation_prompt_left(const edgellm_generation *generation);
/*
 * Evaluates what is left of the prompt, then generates until n_tokens (>= 1; INT32_MAX: to the
 * end) more tokens are handed to on_token or the generation ends (EOS, max_tokens, a stop
 * string, a full context, the grammar, the callback, a cancel or a failure). A speculative pass
 * may hand out a few more than asked: its accepted proposals are never held back. *ended,
 * n_tokens <= 0 and calls after the end as for edgellm_generation_prefill.
 */
EDGELLM_API
edgellm_status edgellm_generation_next(edgellm_generation *generation, int32_t n_tokens,
                                       int *ended);
/*
 * Ends the generation and frees it; NULL does nothing. One that had ended hands on_token the text
 * it still held back (token -1), as edgellm_generate does. One that had not stops as if its
 * callback had asked to (EDGELLM_STOP_CALLBACK; held-back text is dropped), and the cache keeps
 * what was evaluated: the slices of the prompt and the tokens handed out (all but the last under
 * speculative decoding).
 * *out_result (may be NULL) gets the result edgellm_generate gives (prefill_seconds 0 when the
 * prompt was not evaluated to its end); returns the status that ended the generation, or the
 * finishing's own failure. Called from the generation's own on_token it is refused
 * (EDGELLM_ERR_BUSY) and frees nothing.
 */
EDGELLM_API
edgellm_status edgellm_generation_finish(edgellm_generation *generation,
                                         edgellm_generate_result *out_result);

#ifdef __cplusplus
}
#endif

#endif /* EDGELLM_H */
