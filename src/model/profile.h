/* Per-operation time of forward passes, recorded only when a caller attaches a profile to the
 * state (ellm_state_set_profile): with none attached the pass reads no clock. */
#ifndef EDGELLM_MODEL_PROFILE_H
#define EDGELLM_MODEL_PROFILE_H

#include <stdint.h>

#include "core/tensor_types.h"

typedef enum ellm_prof_op {
    ELLM_PROF_ATTENTION, /* KV store and attention over the cache */
    ELLM_PROF_NORM,      /* RMS norms */
    ELLM_PROF_ROPE,
    ELLM_PROF_OP_COUNT
} ellm_prof_op;

typedef struct ellm_profile {
    double matmul_s[ELLM_TYPE_COUNT]; /* by weight type, activation conversion included */
    uint64_t matmul_calls[ELLM_TYPE_COUNT];
    double op_s[ELLM_PROF_OP_COUNT];
    uint64_t op_calls[ELLM_PROF_OP_COUNT];
    double forward_s; /* whole passes; what the parts above leave is "other" */
    uint64_t forward_calls, tokens;
} ellm_profile;

/* Monotonic seconds. */
double ellm_profile_now(void);

#endif
