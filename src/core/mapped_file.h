/* Read-only, shared memory mapping of a whole file: model weights are never copied, and several
 * processes using one model share its pages. */
#ifndef EDGELLM_CORE_MAPPED_FILE_H
#define EDGELLM_CORE_MAPPED_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "edgellm.h"

typedef struct ellm_mapped_file {
    const void *data; /* NULL for an empty file */
    size_t size;
} ellm_mapped_file;

/* Opens path read-only, refusing what is not a regular file with a message that names the path
 * and what it is ("'x' is a FIFO, not a regular file"): a plain open(2) of a FIFO waits for a
 * writer that may never come, and a directory or device is no input. Every path a command or the
 * library reads from its user goes through here. Returns the descriptor (blocking, close-on-exec),
 * or -1 with errno set and the message recorded (EDGELLM_ERR_IO, edgellm_last_error()). */
int ellm_open_regular(const char *path);
/* The same as a stdio stream for reading; NULL like ellm_open_regular's -1. */
FILE *ellm_fopen_regular(const char *path);
/* What a file of this st_mode is, for messages: "a FIFO", "a directory", "a socket", ... */
const char *ellm_file_kind(unsigned mode);

/* Maps path; on Linux the mapping is advised the pages asked for (failure there only means the
 * system's choice). */
edgellm_status ellm_map_file(const char *path, edgellm_page_advice pages, ellm_mapped_file *out);
void ellm_unmap_file(ellm_mapped_file *file);

/* Bytes resident and bytes mapped by huge pages (anonymous, file or shmem PMD mappings) in this
 * process's mappings of the file at path (when path is not NULL), else in those overlapping
 * [addr, addr + len), as /proc/self/smaps gives them. False where that cannot be read. */
typedef struct ellm_page_counts {
    uint64_t resident, huge;
} ellm_page_counts;
bool ellm_page_counts_of(const void *addr, size_t len, const char *path, ellm_page_counts *out);

#endif
