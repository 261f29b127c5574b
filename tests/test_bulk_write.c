/* The bulk writer (core/bulk_write.h): a file written through it holds exactly the bytes given,
 * for pieces of 1 byte to several MiB crossing the flush boundaries, from offset 0 and from an
 * unaligned offset (a resumed download); what reaches the file between writes always ends on a
 * chunk boundary (the coalescing the page cache's 2 MiB folios depend on); and a failing write
 * (/dev/full) is returned, both from a write and from the final flush. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/bulk_write.h"
#include "test_util.h"

#define CHUNK ELLM_BULK_WRITE_CHUNK

static uint64_t next(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}

/* Piece sizes mixing single bytes, a few KiB (curl's pieces), around a MiB and past a chunk. */
static size_t piece_size(uint64_t *s)
{
    switch (next(s) % 4) {
    case 0: return 1 + next(s) % 16;
    case 1: return 1 + next(s) % (64 << 10);
    case 2: return 1 + next(s) % (3 << 20);
    default: return CHUNK - 4096 + next(s) % (2 * CHUNK);
    }
}

static void write_and_compare(uint64_t start, uint64_t seed, const char *name)
{
    const size_t total = 5 * CHUNK + 12345;
    unsigned char *data = malloc(start + total);
    CHECK(data != NULL);
    if (!data)
        return;
    uint64_t s = seed;
    for (size_t i = 0; i < start + total; i++)
        data[i] = (unsigned char)next(&s);
    const char *path = test_tmp_path(name);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    CHECK(fd >= 0);
    if (fd < 0) {
        free(data);
        return;
    }
    /* The prefix a resumed download already holds. */
    CHECK(start == 0 || pwrite(fd, data, start, 0) == (ssize_t)start);

    ellm_bulk_writer w;
    ellm_bulk_writer_init(&w, fd, start);
    size_t done = 0;
    int bad_size = 0;
    while (done < total) {
        size_t n = piece_size(&s);
        if (n > total - done)
            n = total - done;
        CHECK(ellm_bulk_write(&w, data + start + done, n) == 0);
        done += n;
        CHECK(ellm_bulk_writer_offset(&w) == start + done);
        struct stat sb;
        CHECK(fstat(fd, &sb) == 0);
        uint64_t size = (uint64_t)sb.st_size, end = start + done;
        /* On disk: the prefix, or up to a chunk boundary, never more than a chunk behind. */
        bool on_boundary = size == start || size % CHUNK == 0;
        if (!on_boundary || size > end || end - size >= CHUNK)
            bad_size++;
    }
    CHECK_MSG(bad_size == 0, "%s: %d writes left the file off a chunk boundary", name, bad_size);
    CHECK(ellm_bulk_writer_flush(&w) == 0);
    ellm_bulk_writer_free(&w);
    close(fd);

    size_t len = 0;
    char *back = test_read_file(path, &len);
    CHECK_MSG(back && len == start + total && memcmp(back, data, len) == 0,
              "%s: the file differs from the data written (%zu of %zu bytes)", name, len,
              (size_t)(start + total));
    free(back);
    free(data);
    unlink(path);
}

static void write_errors_are_returned(void)
{
    int fd = open("/dev/full", O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "no /dev/full: write error check skipped\n");
        return;
    }
    static unsigned char big[CHUNK + 100];
    ellm_bulk_writer w;
    /* A small write is only staged; its failure shows at the flush. */
    ellm_bulk_writer_init(&w, fd, 0);
    CHECK(ellm_bulk_write(&w, big, 100) == 0);
    CHECK(ellm_bulk_writer_flush(&w) == ENOSPC);
    ellm_bulk_writer_free(&w);
    /* A write that fills a chunk fails itself. */
    ellm_bulk_writer_init(&w, fd, 0);
    CHECK(ellm_bulk_write(&w, big, 100) == 0);
    CHECK(ellm_bulk_write(&w, big, CHUNK) == ENOSPC);
    ellm_bulk_writer_free(&w);
    ellm_bulk_writer_init(&w, fd, 0);
    CHECK(ellm_bulk_write(&w, big, sizeof big) == ENOSPC);
    ellm_bulk_writer_free(&w);
    close(fd);
}

int main(void)
{
    write_and_compare(0, 1, "bulk_write_0.bin");
    write_and_compare(3 * (1u << 20) + 7, 2, "bulk_write_resume.bin");
    write_and_compare(CHUNK, 3, "bulk_write_aligned_resume.bin");
    write_errors_are_returned();
    return test_finish("test_bulk_write");
}
