#define _DEFAULT_SOURCE /* flock */
#define _POSIX_C_SOURCE 200809L
#include "core/locked_file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/mapped_file.h"

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

/* The directory holding path ("." for a bare name), or NULL without memory. */
static char *parent_directory(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
}

/* Whether name is base's temporary: "BASE.tmp.PID.N". */
static bool is_temporary_of(const char *name, const char *base)
{
    size_t n = strlen(base);
    if (strncmp(name, base, n) != 0 || strncmp(name + n, ".tmp.", 5) != 0)
        return false;
    const char *p = name + n + 5;
    size_t pid_digits = strspn(p, "0123456789");
    if (pid_digits == 0 || p[pid_digits] != '.')
        return false;
    p += pid_digits + 1;
    size_t seq_digits = strspn(p, "0123456789");
    return seq_digits > 0 && p[seq_digits] == '\0';
}

void ellm_sweep_dead_temporaries(const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    char *dir = parent_directory(path);
    DIR *d = dir ? opendir(dir) : NULL;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL)
        if (is_temporary_of(e->d_name, base))
            (void)ellm_unlink_if_unlocked(dirfd(d), e->d_name, NULL);
    if (d)
        closedir(d);
    free(dir);
}

int ellm_create_locked_temporary(const char *path, char *tmp, size_t cap)
{
    static _Atomic unsigned long sequence;
    for (;;) {
        snprintf(tmp, cap, "%s.tmp.%ld.%lu", path, (long)getpid(), sequence++);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0)
            return -1;
        if (ellm_lock_new_file(fd))
            return fd;
        close(fd); /* a sweep took it before the lock: another name */
    }
}

bool ellm_replaceable_target(const char *path, char *err, size_t cap)
{
    struct stat st;
    if (stat(path, &st) != 0 || S_ISREG(st.st_mode))
        return true;
    snprintf(err, cap,
             "cannot write '%.300s': it is %s, not a regular file; give the path of a file (the "
             "output is written to a new one renamed over it when complete)",
             path, ellm_file_kind((unsigned)st.st_mode));
    return false;
}

void ellm_sync_parent_directory(const char *path)
{
    char *dir = parent_directory(path);
    int fd = dir ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(dir);
}
