#define _POSIX_C_SOURCE 200809L
#include "core/bulk_write.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void ellm_bulk_writer_init(ellm_bulk_writer *w, int fd, uint64_t offset)
{
    w->fd = fd;
    w->offset = offset;
    w->buf = NULL;
    w->len = 0;
}

static int pwrite_all(int fd, const unsigned char *p, size_t n, uint64_t offset)
{
    while (n > 0) {
        ssize_t k = pwrite(fd, p, n, (off_t)offset);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return errno;
        if (k == 0) /* no progress and no error: treat it as the disk being full */
            return ENOSPC;
        p += k;
        n -= (size_t)k;
        offset += (uint64_t)k;
    }
    return 0;
}

int ellm_bulk_writer_flush(ellm_bulk_writer *w)
{
    if (w->len == 0)
        return 0;
    int err = pwrite_all(w->fd, w->buf, w->len, w->offset);
    if (err)
        return err;
    w->offset += w->len;
    w->len = 0;
    return 0;
}

int ellm_bulk_write(ellm_bulk_writer *w, const void *data, size_t n)
{
    const unsigned char *p = data;
    while (n > 0) {
        uint64_t at = w->offset + w->len;
        /* The staged bytes end at the next chunk boundary, so a first flush from an unaligned
         * start (a resumed download) brings every later one onto the boundaries. */
        size_t room = ELLM_BULK_WRITE_CHUNK - (size_t)(at % ELLM_BULK_WRITE_CHUNK);
        if (w->len == 0 && room == ELLM_BULK_WRITE_CHUNK && n >= ELLM_BULK_WRITE_CHUNK) {
            /* Whole aligned chunks of a large piece go straight out, without a copy. */
            size_t direct = n - n % ELLM_BULK_WRITE_CHUNK;
            int err = pwrite_all(w->fd, p, direct, w->offset);
            if (err)
                return err;
            w->offset += direct;
            p += direct;
            n -= direct;
            continue;
        }
        if (!w->buf) {
            w->buf = malloc(ELLM_BULK_WRITE_CHUNK);
            if (!w->buf)
                return ENOMEM;
        }
        size_t k = n < room ? n : room;
        memcpy(w->buf + w->len, p, k);
        w->len += k;
        p += k;
        n -= k;
        if (k == room) {
            int err = ellm_bulk_writer_flush(w);
            if (err)
                return err;
        }
    }
    return 0;
}

uint64_t ellm_bulk_writer_offset(const ellm_bulk_writer *w) { return w->offset + w->len; }

void ellm_bulk_writer_free(ellm_bulk_writer *w)
{
    free(w->buf);
    w->buf = NULL;
    w->len = 0;
}
