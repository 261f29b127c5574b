/* Temporaries owned by a live process: the owner holds a flock() on it for as long as it writes,
 * so a file nobody holds is left over from a killed process and may be deleted. Used by the GGUF
 * writer's temporaries, the store's install temporaries and the server's replaced files
 * (server/file_replace.h). */
#ifndef EDGELLM_CORE_LOCKED_FILE_H
#define EDGELLM_CORE_LOCKED_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Locks fd, a file just created, for its owner. False when a sweep unlinked the file before the
 * lock was taken (the sweep holds the lock while it unlinks): close fd and create another. */
bool ellm_lock_new_file(int fd);

/* Unlinks name in directory dir_fd if it is a regular file no process holds a lock on, and only
 * the very file that was checked (not one created under the same name meanwhile). Its size goes
 * to *bytes (may be NULL). Returns whether it was unlinked. */
bool ellm_unlink_if_unlocked(int dir_fd, const char *name, uint64_t *bytes);

/* Deletes the temporaries of path ("PATH.tmp.PID.N") that killed writers left (SIGKILL, SIGXFSZ,
 * a power cut): one nobody holds has no writer left. Locks are per open file and vanish with the
 * process, whatever its PID namespace. */
void ellm_sweep_dead_temporaries(const char *path);

/* Creates and locks a temporary of path, "PATH.tmp.PID.N" with N unique in the process, so
 * concurrent writers never share one; its name goes to tmp (cap: strlen(path) + 48 is enough).
 * The lock holds while the descriptor is open. -1 with errno set when it cannot be created. */
int ellm_create_locked_temporary(const char *path, char *tmp, size_t cap);

/* Whether path may be replaced by renaming a new file over it: it does not exist yet or is a
 * regular file. Otherwise false with the reason, naming path and what it is, in err: the rename
 * would unlink a device, FIFO or socket and leave a regular file in its place (run as root,
 * `-o /dev/null` would replace /dev/null for every process). Symlinks are followed. */
bool ellm_replaceable_target(const char *path, char *err, size_t cap);

/* Makes a rename into path's directory durable. Best effort: some file systems cannot open or
 * sync a directory, and the file's own contents are synced before the rename. */
void ellm_sync_parent_directory(const char *path);

#endif
