/* Importers that turn other model formats into GGUF. */
#ifndef EDGELLM_CONVERT_H
#define EDGELLM_CONVERT_H

#include "core/tensor_types.h"
#include "gguf/gguf.h"
#include "edgellm.h"

typedef struct ellm_convert_options {
    ellm_type out_type;   /* F32, F16 or Q8_0/Q4_0 for 2-D weights; norms always stay F32 */
    const char *name;     /* general.name; NULL = derived from the file name */
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

typedef struct ellm_quantize_options {
    /* Called for every tensor whose rows do not split into the target's blocks, with the type
     * it got instead; may be NULL. */
    void (*on_fallback)(void *user, const char *tensor, ellm_type wanted, ellm_type used);
    /* Called after each tensor is written (done of total); may be NULL. */
    void (*on_progress)(void *user, int done, int total);
    void *user;
} ellm_quantize_options;

/* Writes in_path's model with its matrices converted to target (atomically: a temp file renamed
 * into place when complete). Metadata is carried over; general.file_type is updated. */
edgellm_status ellm_quantize_model(const char *in_path, const char *out_path, ellm_type target,
                                   const ellm_quantize_options *options);

/* How a recipe varies the type between tensors. */
typedef enum ellm_quant_mix {
    ELLM_MIX_PLAIN, /* every matrix gets the base type (the output head may get more bits) */
    ELLM_MIX_K_S,   /* K-quant "small": a few early attn_v / ffn_down layers one step up */
    ELLM_MIX_K_M,   /* K-quant "medium": attn_v and ffn_down of about half the layers at Q6_K */
} ellm_quant_mix;

/* A named quantization recipe (the TYPE argument of `edgellm quantize`). */
typedef struct ellm_quant_recipe {
    const char *name;   /* e.g. "Q4_K_M" */
    ellm_type base;     /* the type most matrices get */
    ellm_quant_mix mix;
    uint32_t file_type; /* general.file_type of the result */
} ellm_quant_recipe;

/* The recipe of that name (case-insensitive): the K-quant mixes Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M,
 * Q6_K (Q4_K and Q5_K mean their _M mix), or a plain weight type this build supports (written
 * to *scratch, which the result then points to). NULL if there is none. */
const ellm_quant_recipe *ellm_quant_recipe_find(const char *name, ellm_quant_recipe *scratch);
/* Names of the recipes, for help and error messages. */
const char *ellm_quant_recipe_names(void);

/* ellm_quantize_model with a recipe. */
edgellm_status ellm_quantize_model_recipe(const char *in_path, const char *out_path,
                                          const ellm_quant_recipe *recipe,
                                          const ellm_quantize_options *options);

#endif
