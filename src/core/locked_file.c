#define _DEFAULT_SOURCE /* flock */
#define _POSIX_C_SOURCE 200809L
#include "core/locked_file.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

bool ellm_lock_new_file(int fd)
{
    while (flock(fd, LOCK_EX) != 0 && errno == EINTR) {
    }
    struct stat sb;
    return fstat(fd, &sb) == 0 && sb.st_nlink > 0;
}

bool ellm_unlink_if_unlocked(int dir_fd, const char *name, uint64_t *bytes)
{
    int fd = openat(dir_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return false;
    struct stat held, now;
    bool gone = flock(fd, LOCK_EX | LOCK_NB) == 0 && fstat(fd, &held) == 0 &&
                S_ISREG(held.st_mode) && fstatat(dir_fd, name, &now, AT_SYMLINK_NOFOLLOW) == 0 &&
                held.st_ino == now.st_ino && held.st_dev == now.st_dev &&
                unlinkat(dir_fd, name, 0) == 0;
    if (gone && bytes)
        *bytes = (uint64_t)held.st_size;
    close(fd);
    return gone;
}
