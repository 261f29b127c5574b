/* What the rest of the library needs of a step-by-step generation (edgellm_generation, whose
 * functions are in edgellm.h) beyond the public API. */
#ifndef EDGELLM_GENERATION_H
#define EDGELLM_GENERATION_H

#include "edgellm.h"

/* The generation's context is being freed while the application still holds the generation: it
 * ends, its calls fail with EDGELLM_ERR_INVALID_ARGUMENT, and finish only frees it. */
void ellm_generation_detach(edgellm_generation *gen);

#endif
