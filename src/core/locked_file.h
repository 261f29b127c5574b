/* Temporaries owned by a live process: the owner holds a flock() on it for as long as it writes,
 * so a file nobody holds is left over from a killed process and may be deleted. Used by the GGUF
 * writer's temporaries and the store's install temporaries. */
#ifndef EDGELLM_CORE_LOCKED_FILE_H
#define EDGELLM_CORE_LOCKED_FILE_H

#include <stdbool.h>
#include <stdint.h>

/* Locks fd, a file just created, for its owner. False when a sweep unlinked the file before the
 * lock was taken (the sweep holds the lock while it unlinks): close fd and create another. */
bool ellm_lock_new_file(int fd);

/* Unlinks name in directory dir_fd if it is a regular file no process holds a lock on, and only
 * the very file that was checked (not one created under the same name meanwhile). Its size goes
 * to *bytes (may be NULL). Returns whether it was unlinked. */
bool ellm_unlink_if_unlocked(int dir_fd, const char *name, uint64_t *bytes);

#endif
