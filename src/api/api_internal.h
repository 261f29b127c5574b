/* Entry points of src/api for modules outside the public API (the store's memory planner). */
#ifndef EDGELLM_API_INTERNAL_H
#define EDGELLM_API_INTERNAL_H

#include "edgellm.h"
#include "model/model.h"

/* edgellm_context_estimate_memory for a model that is not at hand: these hyper-parameters
 * (n_ctx_train bounds the context), every matrix of matrix_type, weights_bytes of weights. */
edgellm_status ellm_estimate_memory_for_shape(const ellm_hparams *hp, ellm_type matrix_type,
                                              uint64_t weights_bytes,
                                              const edgellm_context_params *params,
                                              edgellm_memory_estimate *out);

#endif
