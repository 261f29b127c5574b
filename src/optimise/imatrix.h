/* Importance matrices: per matrix, per input column, the mean square of the activations the
 * matrix multiplies over calibration text. An error in column j of a weight row changes the
 * layer's output by about that error times the activation, so the mean square says how much the
 * column's quantization error costs (docs/optimise.md).
 *
 * File format (a GGUF container, the layout other runtimes' imatrix files use):
 *   general.type = "imatrix", imatrix.chunk_count (u32), imatrix.chunk_size (u32),
 *   imatrix.datasets (string array), and to recognise the model it belongs to
 *   imatrix.model.architecture (string), imatrix.model.n_layer, .n_embd, .n_vocab (u32);
 *   for every weight W: "W.in_sum2" F32 [n_cols, 1] (sum over rows of x_j^2) and
 *   "W.counts" F32 [1, 1] (the number of rows); the mean square is in_sum2 / counts; and, in
 *   files edgellm writes, "W.in_sum" F32 [n_cols, 1] (sum over rows of x_j), optional on load;
 *   with --rank k, "W.in_cov_vecs" F32 [n_cols, k] (the k leading unit eigenvectors of the
 *   activations' covariance, one per row of ne[0] values) and "W.in_cov_vals" F32 [k, 1] (their
 *   eigenvalues times counts, i.e. of the scatter sum over rows of (x - mu)(x - mu)^T), both
 *   optional on load. Other runtimes read only the .in_sum2 and .counts tensors. */
#ifndef EDGELLM_OPTIMISE_IMATRIX_H
#define EDGELLM_OPTIMISE_IMATRIX_H

#include <stdint.h>

#include "edgellm.h"
#include "gguf/gguf.h"

typedef struct ellm_imatrix ellm_imatrix;

typedef struct ellm_imatrix_params {
    int32_t n_ctx;       /* tokens per chunk; each chunk starts from an empty cache */
    int32_t n_chunks;    /* 0: every whole chunk of the text */
    int32_t n_threads;   /* 0: one per CPU */
    const char *dataset; /* recorded in imatrix.datasets; may be NULL */
    /* Called after every chunk with the elapsed seconds; may be NULL. */
    void (*on_progress)(void *user, int32_t done, int32_t total, double seconds);
    void *user;
    int32_t rank; /* covariance directions per input, 0 to ELLM_IMATRIX_MAX_RANK (at most its
                     width), or ELLM_IMATRIX_RANK_AUTO */
} ellm_imatrix_params;

#define ELLM_IMATRIX_MAX_RANK 64
/* The whole covariance of inputs up to 64 columns wide (ELLM_IMATRIX_MAX_RANK directions, up to
 * 256 columns), 8 directions of wider ones, which come from a sketch whose cost grows with them. */
#define ELLM_IMATRIX_RANK_AUTO (-1)

/* Runs the token ids through the model at model_path chunk by chunk, accumulating every matrix
 * input's squares. Fails with a clear message when the ids do not fill one chunk. */
edgellm_status ellm_imatrix_collect(const char *model_path, const edgellm_token *ids, int32_t n_ids,
                                    const ellm_imatrix_params *params, ellm_imatrix **out);
/* Writes the file atomically. */
edgellm_status ellm_imatrix_write(const ellm_imatrix *im, const char *path);
/* Reads and validates a file against the model it is to be used with: its type, every entry's
 * shape against the model's matrix of that name, finite non-negative sums, positive counts. */
edgellm_status ellm_imatrix_load(const char *path, const gguf_file *model, ellm_imatrix **out);
/* Mean squares of the columns of weight `tensor` (NULL when the file has none for it). */
const float *ellm_imatrix_find(const ellm_imatrix *im, const char *tensor, int64_t n_cols);
/* Mean activations of the columns of weight `tensor` (NULL when the file has no "W.in_sum"). */
const float *ellm_imatrix_find_mean_value(const ellm_imatrix *im, const char *tensor,
                                          int64_t n_cols);
/* The covariance's k leading directions of weight `tensor`'s input columns, each eigenvector
 * times the root of its eigenvalue (k vectors of n_cols), or NULL (*k = 0) without them. */
const float *ellm_imatrix_find_directions(const ellm_imatrix *im, const char *tensor,
                                          int64_t n_cols, int *k);
int ellm_imatrix_entry_count(const ellm_imatrix *im);
void ellm_imatrix_free(ellm_imatrix *im);

#endif
