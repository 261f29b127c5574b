/* Activation-aware scaling (AWQ) folded into the model: per input channel j of a group of
 * matrices sharing an input, the weight columns are multiplied by s_j and the input divided by
 * s_j where it is produced (the preceding RMSNorm weight, or the preceding matrix's output row:
 * attn_v for attn_output, ffn_up for ffn_down), so the unrounded model computes the same function.
 * Columns that multiply large activations grow inside their blocks and lose less to rounding.
 *
 * s_j = m_j^(alpha/2) (m_j the imatrix mean square), normalised to geometric-mean range 1, with
 * alpha searched per group in 0, 0.1, ..., 1 to minimise the imatrix-weighted output error of
 * the group's matrices quantized to the target type (alpha 0 is plain quantization). */
#ifndef EDGELLM_OPTIMISE_AWQ_H
#define EDGELLM_OPTIMISE_AWQ_H

#include "core/tensor_types.h"
#include "edgellm.h"
#include "gguf/gguf.h"
#include "optimise/imatrix.h"

typedef struct ellm_awq ellm_awq;

/* Searches the scales of every group of the llama-architecture model for quantization to
 * `type`; groups whose rows do not split into its blocks keep scale 1. on_group (may be NULL)
 * hears each group's chosen alpha. */
edgellm_status ellm_awq_plan(const gguf_file *model, const ellm_imatrix *im, ellm_type type,
                             void (*on_group)(void *user, const char *group, float alpha),
                             void *user, ellm_awq **out);
/* Applies the fold to row `row` (n values) of tensor `tensor` in place (no-op for others). */
void ellm_awq_transform_row(const ellm_awq *awq, const char *tensor, uint64_t row, float *x,
                            int64_t n);
/* Undoes the fold on a row of tensor `tensor` (the transform's inverse): a scaled matrix's
 * quantized row, so restored, is what the unscaled model multiplies by. False (x untouched) when
 * the fold leaves the tensor alone; awq may be NULL. */
bool ellm_awq_restore_row(const ellm_awq *awq, const char *tensor, uint64_t row, float *x,
                          int64_t n);
/* The importances of a scaled matrix's columns (the imatrix's m_j / s_j^2), or NULL. */
const float *ellm_awq_importance(const ellm_awq *awq, const char *tensor, int64_t n_cols);
/* The factors a scaled matrix's columns were multiplied by (its input is divided by them), or
 * NULL when the fold leaves the matrix alone. */
const float *ellm_awq_column_scales(const ellm_awq *awq, const char *tensor, int64_t n_cols);
void ellm_awq_free(ellm_awq *awq);

#endif
