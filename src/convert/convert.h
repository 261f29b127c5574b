/* Importers that turn other model formats into GGUF. */
#ifndef EDGELLM_CONVERT_H
#define EDGELLM_CONVERT_H

#include "core/tensor_types.h"
#include "gguf/gguf.h"
#include "edgellm.h"

typedef struct ellm_convert_options {
    ellm_type out_type; /* F32, F16 or Q8_0/Q4_0 for 2-D weights; norms always stay F32 */
    const char *name;   /* general.name; NULL = derived from the file name */
    /* Called for every tensor that could not take out_type (e.g. rows not a multiple of the
     * block size) with the type it got instead; may be NULL. */
    void (*on_fallback)(void *user, const char *tensor, ellm_type wanted, ellm_type used);
    void *user;
} ellm_convert_options;

/* The hyper-parameters an importer records for a llama-architecture model. */
typedef struct ellm_llama_meta {
    const char *name;
    ellm_type weight_type; /* for general.file_type */
    int32_t n_ctx, n_embd, n_layer, n_ff, n_head, n_head_kv, n_rot;
    float rope_base, rms_eps;
} ellm_llama_meta;

/* general.file_type number for files whose weights are mostly of this type. */
uint32_t ellm_gguf_file_type(ellm_type weight_type);
/* Writes general.architecture/name/file_type and the llama.* hyper-parameter keys. */
edgellm_status ellm_write_llama_meta(gguf_writer *w, const ellm_llama_meta *meta);

/* Converts a llama2.c checkpoint plus its tokenizer.bin to a GGUF file (written atomically). */
edgellm_status ellm_convert_llama2c(const char *checkpoint_path, const char *tokenizer_path,
                                    const char *out_path, const ellm_convert_options *options);

/* Converts a Hugging Face checkpoint folder (config.json, model.safetensors or shards listed in
 * model.safetensors.index.json; F32/F16/BF16) of a supported architecture (llama, mistral,
 * qwen2, qwen3, gemma, gemma2, gemma3, phi3) to GGUF, streaming tensor by tensor (atomic write).
 * out_type: F32, F16, BF16 or Q8_0 for matrices; vectors stay F32. The vocabulary is imported
 * from the folder's tokenizer.json when there is one (*with_vocab, may be NULL, says whether). */
edgellm_status ellm_convert_hf(const char *dir, const char *out_path,
                               const ellm_convert_options *options, bool *with_vocab);

/* The most pieces a SentencePiece model may have for `convert --from sentencepiece`. */
#define ELLM_SPM_MAX_PIECES (1 << 22)

/* Converts a SentencePiece model (MODEL.model from spm_train: a BPE model without normalization
 * rules or whitespace collapsing, which edgellm tokenizes exactly as spm_encode does) to a GGUF
 * vocabulary (no tensors, general.type "vocab"; written atomically) for `edgellm train --vocab`.
 * Models edgellm would tokenize differently are refused with the spm_train option to change. */
edgellm_status ellm_convert_sentencepiece(const char *model_path, const char *out_path,
                                          const char *name);

typedef struct ellm_quantize_options {
    /* Called for every tensor whose rows do not split into the target's blocks, with the type
     * it got instead; may be NULL. */
    void (*on_fallback)(void *user, const char *tensor, ellm_type wanted, ellm_type used);
    /* Called after each tensor is written (done of total); may be NULL. */
    void (*on_progress)(void *user, int done, int total);
    void *user;
    /* Importance of each input column of a matrix (e.g. an imatrix's mean squares), or NULL for
     * plain rounding of that matrix; the callback itself may be NULL. Block formats with a
     * weighted search (ellm_type_has_weighted_search) then minimise the weighted error. */
    const float *(*importance)(void *user, const char *tensor, int64_t n_cols);
    /* Changes row `row` of a tensor (n values, as float) before it is quantized, e.g. an AWQ
     * fold; applied to 1-D tensors too. May be NULL. */
    void (*transform_row)(void *user, const char *tensor, uint64_t row, float *x, int64_t n);
    /* Quantizes a whole matrix at once instead of row by row (GPTQ), for the tensors
     * claims_matrix accepts: w holds its rows as float after transform_row and may be changed.
     * Both may be NULL. */
    bool (*claims_matrix)(void *user, const char *tensor, ellm_type type, int64_t n_cols);
    edgellm_status (*quantize_matrix)(void *user, const char *tensor, ellm_type type, float *w,
                                      int64_t n_rows, int64_t n_cols, void *dst);
    /* With importances, a mix gives its higher type to the layer matrices where it removes the
     * most importance-weighted error per extra byte, within the extra bytes its fixed rules
     * would spend; true keeps the fixed rules (layer position and matrix kind) instead. */
    bool mix_by_rules;
    /* Mean activation of each input column of a matrix (an imatrix's "in_sum"), for the matrices
     * that have importances: the rounding then also keeps the row's errors from adding up into
     * an output bias (ellm_quantize_row_weighted_mean). May be NULL, or return NULL. */
    const float *(*mean_value)(void *user, const char *tensor, int64_t n_cols);
    /* The leading directions of the activations' covariance for a matrix with importances (an
     * imatrix's "in_cov_vecs" times the roots of "in_cov_vals"): *k vectors of n_cols, which the
     * rounding's error feedback also carries (ellm_row_objective). May be NULL, or return NULL. */
    const float *(*directions)(void *user, const char *tensor, int64_t n_cols, int *k);
    /* Mean KL divergence at the logits, over calibration text, of the model with the n listed
     * weights rounded to the types of each of n_plans plans (types[p * n + k]) against the model
     * as given (GPTQ's calibration run): kl[p]. A mix then moves a step of bits from the untied
     * output head to the token embedding where that lowers it at no more bytes. May be NULL. */
    edgellm_status (*logit_kl)(void *user, const char *const *tensors, int n,
                               const ellm_type *types, int n_plans, double *kl);
    /* in_path already open (e.g. by GPTQ's calibration model), read instead of a second mapping
     * of the same file, which would count its pages twice in the process's resident memory;
     * not closed. NULL: in_path is opened. */
    const gguf_file *input;
} ellm_quantize_options;

/* Writes in_path's model with its matrices converted to target (atomically: a temp file renamed
 * into place when complete). Metadata is carried over; general.file_type is updated. */
edgellm_status ellm_quantize_model(const char *in_path, const char *out_path, ellm_type target,
                                   const ellm_quantize_options *options);

/* The same with a named mix of types: Q2_K, Q3_K_S/M/L, Q4_K_S/M, Q5_K_S/M, Q6_K or IQ4_XS
 * (case-insensitive; Q3_K, Q4_K and Q5_K name their usual mix). The attention value/output and
 * FFN down projections get more bits where the mix says so, the output head Q6_K (or Q8_0 where
 * Q6_K is not built), and rows that do not split into 256-value blocks a 32-value type or F16
 * (reported through on_fallback). general.file_type records the mix. */
edgellm_status ellm_quantize_model_recipe(const char *in_path, const char *out_path,
                                          const char *recipe, const ellm_quantize_options *options);
/* Whether `name` is one of the mixes above. */
bool ellm_quant_recipe_exists(const char *name);
/* The TYPE names `edgellm quantize` accepts, for help and error messages. */
const char *ellm_quant_recipe_names(void);

#endif
