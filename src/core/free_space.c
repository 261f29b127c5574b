#include "core/free_space.h"

#include <sys/statvfs.h>

bool ellm_fits_free_space(int fd, uint64_t need, uint64_t *free_bytes)
{
    struct statvfs fs;
    if (fstatvfs(fd, &fs) != 0 || fs.f_frsize == 0 ||
        (uint64_t)fs.f_bavail > UINT64_MAX / fs.f_frsize)
        return true;
    uint64_t available = (uint64_t)fs.f_bavail * fs.f_frsize;
    if (free_bytes)
        *free_bytes = available;
    return need <= available;
}
