#define _POSIX_C_SOURCE 200809L
#include "core/file_replace.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/locked_file.h"

bool ellm_file_replace_open(ellm_replaced_file *f, const char *path, char *err, size_t cap)
{
    memset(f, 0, sizeof *f);
    const char *slash = strrchr(path, '/');
    if (!*(slash ? slash + 1 : path)) {
        snprintf(err, cap, "'%.300s' names a directory, not a file", path);
        return false;
    }
    if (!ellm_replaceable_target(path, err, cap))
        return false;
    ellm_sweep_dead_temporaries(path);
    size_t size = strlen(path) + 48;
    f->path = strdup(path);
    f->temporary = malloc(size);
    if (!f->path || !f->temporary) {
        snprintf(err, cap, "no memory to write '%.300s'", path);
        ellm_file_replace_abandon(f);
        return false;
    }
    int fd = ellm_create_locked_temporary(path, f->temporary, size);
    if (fd < 0) {
        snprintf(err, cap, "cannot write '%.300s': %s", path, strerror(errno));
        free(f->temporary);
        f->temporary = NULL; /* nothing of ours to delete */
        ellm_file_replace_abandon(f);
        return false;
    }
    f->out = fdopen(fd, "wb");
    if (!f->out) {
        snprintf(err, cap, "cannot write '%.300s': %s", f->temporary, strerror(errno));
        close(fd);
        ellm_file_replace_abandon(f);
        return false;
    }
    return true;
}

bool ellm_file_replace_commit(ellm_replaced_file *f, char *err, size_t cap)
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
        ellm_sync_parent_directory(f->path);
        free(f->temporary);
        f->temporary = NULL;
    }
    ellm_file_replace_abandon(f);
    return ok;
}

void ellm_file_replace_abandon(ellm_replaced_file *f)
{
    if (f->out)
        fclose(f->out);
    if (f->temporary)
        unlink(f->temporary);
    free(f->temporary);
    free(f->path);
    memset(f, 0, sizeof *f);
}
