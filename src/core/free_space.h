/* Whether a file of a known size fits on its file system, asked before the first byte is written:
 * a write larger than the free space fills the disk for every other program until it fails. Used
 * by the GGUF writer, `eval --save-logits` and the store's downloads. */
#ifndef EDGELLM_CORE_FREE_SPACE_H
#define EDGELLM_CORE_FREE_SPACE_H

#include <stdbool.h>
#include <stdint.h>

/* False when fd's file system has fewer than need bytes free for an unprivileged writer; the
 * free bytes go to *free_bytes (may be NULL). True where the free space cannot be read: the
 * write then goes ahead and a full disk is reported when it happens. */
bool ellm_fits_free_space(int fd, uint64_t need, uint64_t *free_bytes);

#endif
