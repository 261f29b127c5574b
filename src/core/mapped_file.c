/* _DEFAULT_SOURCE: madvise and MADV_HUGEPAGE are outside POSIX. */
#define _DEFAULT_SOURCE
#define _POSIX_C_SOURCE 200809L
#include "core/mapped_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/status.h"

#if defined(__linux__) && !defined(__EMSCRIPTEN__) && defined(MADV_HUGEPAGE) &&                    \
    defined(MADV_NOHUGEPAGE)
#define HAVE_LINUX_THP 1
#endif

const char *ellm_file_kind(unsigned mode)
{
    if (S_ISREG(mode))
        return "a regular file";
    if (S_ISDIR(mode))
        return "a directory";
    if (S_ISFIFO(mode))
        return "a FIFO";
    if (S_ISCHR(mode))
        return "a character device";
    if (S_ISBLK(mode))
        return "a block device";
    if (S_ISSOCK(mode))
        return "a socket";
    return "a special file";
}

int ellm_open_regular(const char *path)
{
    /* O_NONBLOCK: a FIFO opens at once instead of waiting for a writer, so fstat can refuse it. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        int e = errno;
        ellm_fail(EDGELLM_ERR_IO, "cannot open '%s': %s", path, strerror(e));
        errno = e;
        return -1;
    }
    struct stat st;
    int e = 0;
    if (fstat(fd, &st) != 0) {
        e = errno;
        ellm_fail(EDGELLM_ERR_IO, "cannot stat '%s': %s", path, strerror(e));
    } else if (!S_ISREG(st.st_mode)) {
        e = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
        ellm_fail(EDGELLM_ERR_IO, "'%s' is %s, not a regular file", path,
                  ellm_file_kind((unsigned)st.st_mode));
    } else {
        int flags = fcntl(fd, F_GETFL);
        if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
            e = errno;
            ellm_fail(EDGELLM_ERR_IO, "cannot read '%s': %s", path, strerror(e));
        }
    }
    if (e != 0) {
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

FILE *ellm_fopen_regular(const char *path)
{
    int fd = ellm_open_regular(path);
    if (fd < 0)
        return NULL;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        int e = errno;
        close(fd);
        ellm_fail(EDGELLM_ERR_IO, "cannot read '%s': %s", path, strerror(e));
        errno = e;
    }
    return f;
}

edgellm_status ellm_map_file(const char *path, edgellm_page_advice pages, ellm_mapped_file *out)
{
    out->data = NULL;
    out->size = 0;
    int fd = ellm_open_regular(path);
    if (fd < 0)
        return EDGELLM_ERR_IO;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return ellm_fail(EDGELLM_ERR_IO, "cannot stat '%s': %s", path, strerror(e));
    }
    if (st.st_size == 0) {
        close(fd);
        return EDGELLM_OK;
    }
    size_t size = (size_t)st.st_size;
    void *p = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    int e = errno;
#if defined(HAVE_LINUX_THP)
    /* Decode streams every weight once per token, so its TLB misses are one per page. Where the
     * filesystem caches files in large folios (ext4, xfs on recent kernels), 2 MiB folios get one
     * page-table entry each; MADV_HUGEPAGE makes a cold read cache the whole file in 2 MiB folios
     * (readahead alone: 94 % here). Failure only means smaller pages. */
    if (p != MAP_FAILED)
        (void)madvise(p, size, pages == EDGELLM_PAGES_SMALL ? MADV_NOHUGEPAGE : MADV_HUGEPAGE);
#else
    (void)pages;
#endif
    close(fd);
    if (p == MAP_FAILED)
        return ellm_fail(EDGELLM_ERR_IO, "cannot map '%s': %s", path, strerror(e));
    out->data = p;
    out->size = size;
    return EDGELLM_OK;
}

void ellm_unmap_file(ellm_mapped_file *file)
{
    if (file->data)
        munmap((void *)file->data, file->size);
    file->data = NULL;
    file->size = 0;
}

/* Sums the Rss and huge-page lines of the smaps entries selected. */
bool ellm_page_counts_of(const void *addr, size_t len, const char *path, ellm_page_counts *out)
{
    out->resident = out->huge = 0;
#if defined(__linux__) && !defined(__EMSCRIPTEN__)
    char want[4096] = "";
    if (path && !realpath(path, want))
        return false;
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f)
        return false;
    uintptr_t lo = (uintptr_t)addr, hi = lo + len;
    char line[4352];
    bool selected = false;
    while (fgets(line, sizeof line, f)) {
        unsigned long start, end, kb;
        int name_at = 0;
        /* A mapping's first line: "start-end perms offset dev inode [name]". */
        if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %n", &start, &end, &name_at) == 2 &&
            name_at > 0) {
            if (path) {
                char *name = line + name_at;
                name[strcspn(name, "\n")] = '\0';
                selected = !strcmp(name, want);
            } else {
                selected = start < hi && end > lo;
            }
        } else if (selected && sscanf(line, "Rss: %lu kB", &kb) == 1) {
            out->resident += (uint64_t)kb << 10;
        } else if (selected && (sscanf(line, "AnonHugePages: %lu kB", &kb) == 1 ||
                                sscanf(line, "FilePmdMapped: %lu kB", &kb) == 1 ||
                                sscanf(line, "ShmemPmdMapped: %lu kB", &kb) == 1)) {
            out->huge += (uint64_t)kb << 10;
        }
    }
    fclose(f);
    return true;
#else
    (void)addr, (void)len, (void)path;
    return false;
#endif
}
