/* Coalesces a file's writes into few large ones at 2 MiB-aligned file offsets. The page cache
 * sizes a new file's folios after the writes that create it: 8 MiB writes give 2 MiB folios, which
 * the weights' mapping can then cover with 2 MiB TLB entries; per-tensor or per-chunk writes at
 * unaligned offsets give small folios that stay small until the pages are evicted. */
#ifndef EDGELLM_CORE_BULK_WRITE_H
#define EDGELLM_CORE_BULK_WRITE_H

#include <stddef.h>
#include <stdint.h>

/* Staging size and flush alignment: a multiple of 2 MiB so every flush but the last ends on a
 * 2 MiB boundary, and large enough that a flush fills whole folios. */
#define ELLM_BULK_WRITE_CHUNK ((size_t)8 << 20)

typedef struct ellm_bulk_writer {
    int fd;
    uint64_t offset; /* file offset of buf[0] */
    unsigned char *buf;
    size_t len;
} ellm_bulk_writer;

/* Starts writing fd at file offset `offset` (pwrite: the descriptor's own position is not used
 * or moved). Nothing is allocated until the first write. */
void ellm_bulk_writer_init(ellm_bulk_writer *w, int fd, uint64_t offset);

/* Appends n bytes. Returns 0 or the errno of the failed write (ENOSPC for a write that wrote
 * nothing, ENOMEM without memory for the buffer), leaving the message to the caller, whose
 * wording (disk full, which file) differs. Bytes before a failure may or may not be on disk. */
int ellm_bulk_write(ellm_bulk_writer *w, const void *data, size_t n);

/* Writes what is staged. Returns 0 or an errno as ellm_bulk_write. */
int ellm_bulk_writer_flush(ellm_bulk_writer *w);

/* File offset the next byte goes to (staged bytes included). */
uint64_t ellm_bulk_writer_offset(const ellm_bulk_writer *w);

/* Frees the buffer without writing what is staged; the writer can be initialised again. */
void ellm_bulk_writer_free(ellm_bulk_writer *w);

#endif
