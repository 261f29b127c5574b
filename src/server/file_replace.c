#define _POSIX_C_SOURCE 200809L
#include "server/file_replace.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/locked_file.h"

/* The directory holding path, opened for the sweep and the sync after the rename; -1 when it
 * cannot be opened (the temporary's own open then says why). */
static int open_parent(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (slash == path)
        return open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    char *dir = strndup(path, (size_t)(slash - path));
    int fd = dir ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    free(dir);
    return fd;
}

/* "NAME.tmp.PID.N" for the file called name: the temporaries this file's writers create. */
static bool names_a_temporary_of(const char *entry, const char *name)
{
    size_t n = strlen(name);
    if (strncmp(entry, name, n) != 0 || strncmp(entry + n, ".tmp.", 5) != 0)
        return false;
    const char *rest = entry + n + 5;
    for (int part = 0; part < 2; part++) {
        size_t digits = strspn(rest, "0123456789");
        char after = part == 0 ? '.' : '\0';
        if (digits == 0 || rest[digits] != after)
            return false;
        rest += digits + 1;
    }
    return true;
}

static void delete_abandoned_temporaries(int dir_fd, const char *name)
{
    int scan_fd = dup(dir_fd);
    DIR *d = scan_fd >= 0 ? fdopendir(scan_fd) : NULL;
    if (!d) {
        if (scan_fd >= 0)
            close(scan_fd);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (names_a_temporary_of(e->d_name, name))
            (void)ellm_unlink_if_unlocked(dir_fd, e->d_name, NULL);
    closedir(d);
}

bool ellm_srv_file_replace_open(srv_file_replace *f, const char *path, char *err, size_t cap)
{
    static _Atomic unsigned long next_number;
    memset(f, 0, sizeof *f);
    const char *slash = strrchr(path, '/');
    const char *name = slash ? slash + 1 : path;
    if (!*name) {
        snprintf(err, cap, "'%.300s' names a directory, not a file", path);
        return false;
    }
    int dir_fd = open_parent(path);
    if (dir_fd >= 0) {
        delete_abandoned_temporaries(dir_fd, name);
        close(dir_fd);
    }
    size_t size = strlen(path) + 48;
    f->path = strdup(path);
    f->temporary = malloc(size);
    if (!f->path || !f->temporary) {
        snprintf(err, cap, "no memory to write '%.300s'", path);
        ellm_srv_file_replace_abandon(f);
        return false;
    }
    for (;;) {
        snprintf(f->temporary, size, "%s.tmp.%ld.%lu", path, (long)getpid(),
                 atomic_fetch_add(&next_number, 1));
        int fd = open(f->temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0) {
            snprintf(err, cap, "cannot write '%.300s': %s", path, strerror(errno));
            free(f->temporary);
            f->temporary = NULL; /* nothing of ours to delete */
            ellm_srv_file_replace_abandon(f);
            return false;
        }
        if (!ellm_lock_new_file(fd)) { /* a sweep took it first: another name */
            close(fd);
            continue;
        }
        f->out = fdopen(fd, "wb");
        if (!f->out) {
            snprintf(err, cap, "cannot write '%.300s': %s", f->temporary, strerror(errno));
            close(fd);
            ellm_srv_file_replace_abandon(f);
            return false;
        }
        return true;
    }
}

bool ellm_srv_file_replace_commit(srv_file_replace *f, char *err, size_t cap)
{
    bool ok = f->out && fflush(f->out) == 0 && !ferror(f->out);
    if (!ok)
        snprintf(err, cap, "writing '%.300s' failed: %s", f->path,
                 f->out ? strerror(errno) : "it is not open");
    if (ok && fsync(fileno(f->out)) != 0) {
        snprintf(err, cap, "syncing '%.300s' failed: %s", f->temporary, strerror(errno));
        ok = false;
    }
    /* Renamed while still open, so the lock holds until the file has its final name and no
     * sweep can take it for abandoned. */
    if (ok && rename(f->temporary, f->path) != 0) {
        snprintf(err, cap, "cannot rename '%.300s' to '%.300s': %s", f->temporary, f->path,
                 strerror(errno));
        ok = false;
    }
    if (f->out)
        fclose(f->out); /* its contents are synced already: nothing left to lose */
    f->out = NULL;
    if (ok) {
        int dir_fd = open_parent(f->path);
        if (dir_fd >= 0) { /* the rename itself made durable; best effort */
            (void)fsync(dir_fd);
            close(dir_fd);
        }
        free(f->temporary);
        f->temporary = NULL;
    }
    ellm_srv_file_replace_abandon(f);
    return ok;
}

void ellm_srv_file_replace_abandon(srv_file_replace *f)
{
    if (f->out)
        fclose(f->out);
    if (f->temporary)
        unlink(f->temporary);
    free(f->temporary);
    free(f->path);
    memset(f, 0, sizeof *f);
}
