/* Read-only, shared memory mapping of a whole file: model weights are never copied, and several
 * processes using one model share its pages. */
#ifndef EDGELLM_CORE_MAPPED_FILE_H
#define EDGELLM_CORE_MAPPED_FILE_H

#include <stddef.h>

#include "edgellm.h"

typedef struct ellm_mapped_file {
    const void *data; /* NULL for an empty file */
    size_t size;
} ellm_mapped_file;

edgellm_status ellm_map_file(const char *path, ellm_mapped_file *out);
void ellm_unmap_file(ellm_mapped_file *file);

#endif
