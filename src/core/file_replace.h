/* A file replaced whole or not at all, by any number of writers at once: each writes its own
 * temporary ("PATH.tmp.PID.N", locked while it is open: core/locked_file.h), syncs it and
 * renames it over PATH, so a reader sees the old file or the new one, never a part. A writer
 * that was killed leaves its temporary unlocked; the next writer of PATH deletes it. Used by
 * `serve --ready-file` and `eval --save-logits`. */
#ifndef EDGELLM_CORE_FILE_REPLACE_H
#define EDGELLM_CORE_FILE_REPLACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef struct ellm_replaced_file {
    FILE *out; /* write the new contents here */
    char *path;
    char *temporary;
} ellm_replaced_file;

/* Opens a new temporary for path (after deleting the ones killed writers left). False with the
 * reason, naming path, in err. */
bool ellm_file_replace_open(ellm_replaced_file *f, const char *path, char *err, size_t cap);
/* Syncs what was written and renames it over path. False with the reason in err, the temporary
 * deleted and path as it was. Either way f is closed. */
bool ellm_file_replace_commit(ellm_replaced_file *f, char *err, size_t cap);
/* Deletes the temporary and leaves path as it was (f may be zeroed, or already closed). */
void ellm_file_replace_abandon(ellm_replaced_file *f);

#endif
