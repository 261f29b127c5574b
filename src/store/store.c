/* The store's layout on disk, its lock, and resolving NAME[:VERSION] to a blob path. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/mapped_file.h"
#include "core/status.h"
#include "store/store_internal.h"

/* ---- paths and locking -------------------------------------------------------------------- */

edgellm_status ellm_store_default_root(char *out, size_t cap)
{
    const char *home = getenv("EDGELLM_HOME");
    if (home && *home)
        return ellm_st_path(out, cap, "%s", home);
    const char *xdg = getenv("XDG_DATA_HOME");
    if (xdg && *xdg)
        return ellm_st_path(out, cap, "%s/edgellm", xdg);
    const char *user_home = getenv("HOME");
    if (!user_home || !*user_home)
        return ellm_fail(EDGELLM_ERR_NOT_FOUND,
                         "neither EDGELLM_HOME nor HOME is set: cannot find the model store");
    return ellm_st_path(out, cap, "%s/.local/share/edgellm", user_home);
}

static edgellm_status make_dirs(const char *path)
{
    char buf[1100];
    edgellm_status st = ellm_st_path(buf, sizeof buf, "%s", path);
    if (st != EDGELLM_OK)
        return st;
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char saved = *p;
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return ellm_fail(EDGELLM_ERR_IO, "cannot create directory %s: %s", buf,
                                 strerror(errno));
            *p = saved;
            if (saved == '\0')
                break;
        }
    }
    return EDGELLM_OK;
}

edgellm_status ellm_store_open(const char *root, store **out)
{
    *out = NULL;
    store *s = calloc(1, sizeof *s);
    if (!s)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "out of memory");
    s->lock_fd = -1;
    char dir[1100];
    edgellm_status st = ellm_st_path(s->root, sizeof s->root, "%s", root);
    if (st == EDGELLM_OK)
        st = ellm_st_path(dir, sizeof dir, "%s/blobs/sha256", root);
    if (st == EDGELLM_OK)
        st = make_dirs(dir);
    if (st == EDGELLM_OK)
        st = ellm_st_path(dir, sizeof dir, "%s/models", root);
    if (st == EDGELLM_OK)
        st = make_dirs(dir);
    if (st == EDGELLM_OK)
        st = ellm_st_path(dir, sizeof dir, "%s/tmp", root);
    if (st == EDGELLM_OK)
        st = make_dirs(dir);
    if (st == EDGELLM_OK)
        st = ellm_st_path(dir, sizeof dir, "%s/lock", root);
    if (st == EDGELLM_OK) {
        s->lock_fd = open(dir, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (s->lock_fd < 0)
            st = ellm_fail(EDGELLM_ERR_IO, "cannot open the store lock %s: %s", dir,
                           strerror(errno));
    }
    if (st != EDGELLM_OK) {
        ellm_store_close(s);
        return st;
    }
    *out = s;
    return EDGELLM_OK;
}

void ellm_store_close(store *s)
{
    if (!s)
        return;
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    free(s);
}

const char *ellm_store_root(const store *s) { return s->root; }

edgellm_status ellm_st_lock_store(store *s)
{
    while (flock(s->lock_fd, LOCK_EX) != 0) {
        if (errno != EINTR)
            return ellm_fail(EDGELLM_ERR_IO, "cannot lock the store at %s: %s", s->root,
                             strerror(errno));
    }
    return EDGELLM_OK;
}

void ellm_st_unlock_store(store *s) { flock(s->lock_fd, LOCK_UN); }

/* ---- names -------------------------------------------------------------------------------- */

edgellm_status ellm_store_parse_ref(const char *ref, char *name_out, size_t name_cap,
                                    char *version_out, size_t version_cap)
{
    const char *colon = strchr(ref, ':');
    size_t name_len = colon ? (size_t)(colon - ref) : strlen(ref);
    const char *version = colon ? colon + 1 : "";
    size_t version_len = strlen(version);
    if (!ellm_st_valid_token(ref, name_len) || name_len >= name_cap || name_len >= STORE_NAME_MAX)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "'%s' is not a model name: use letters, digits, '.', '_' and '-' "
                         "(NAME or NAME:VERSION)",
                         ref);
    if (colon && (!ellm_st_valid_token(version, version_len) || version_len >= version_cap ||
                  version_len >= STORE_VERSION_MAX))
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "'%s' has an invalid version: use letters, digits, '.', '_' and '-'", ref);
    memcpy(name_out, ref, name_len);
    name_out[name_len] = '\0';
    memcpy(version_out, version, version_len);
    version_out[version_len] = '\0';
    return EDGELLM_OK;
}

edgellm_status ellm_st_blob_path(const store *s, const char *sha, char *out, size_t cap)
{
    if (!ellm_st_valid_sha256(sha))
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "refusing a blob name that is not a SHA-256 (64 lowercase hex digits)");
    return ellm_st_path(out, cap, "%s/blobs/sha256/%s", s->root, sha);
}

edgellm_status ellm_store_model_path(store *s, const char *ref, char *path_out, size_t cap)
{
    char name[STORE_NAME_MAX], version[STORE_VERSION_MAX];
    edgellm_status st = ellm_store_parse_ref(ref, name, sizeof name, version, sizeof version);
    if (st != EDGELLM_OK)
        return st;
    store_model m;
    st = ellm_st_load_manifest(s, name, &m);
    if (st != EDGELLM_OK)
        return st;
    const char *want = version[0] ? version : m.active;
    const store_version *v = want[0] ? ellm_store_model_find(&m, want) : NULL;
    if (!v)
        st = want[0] ? ellm_fail(EDGELLM_ERR_NOT_FOUND, "%s:%s is not installed", name, want)
                     : ellm_fail(EDGELLM_ERR_NOT_FOUND,
                                 "%s has no active version: activate one with 'edgellm models "
                                 "activate %s:VERSION'",
                                 name, name);
    if (st == EDGELLM_OK)
        st = ellm_st_blob_path(s, v->sha256, path_out, cap);
    if (st == EDGELLM_OK && access(path_out, R_OK) != 0)
        st = ellm_fail(EDGELLM_ERR_NOT_FOUND, "%s:%s: its file %s is missing; reinstall it", name,
                       v->version, path_out);
    ellm_store_model_clear(&m);
    return st;
}

edgellm_status ellm_store_resolve_model(const char *name_or_path, char *path_out, size_t cap)
{
    struct stat sb;
    if (stat(name_or_path, &sb) == 0 && S_ISREG(sb.st_mode))
        return ellm_st_path(path_out, cap, "%s", name_or_path);
    if (stat(name_or_path, &sb) == 0 && (strchr(name_or_path, '/') || !S_ISDIR(sb.st_mode)))
        return ellm_fail(EDGELLM_ERR_IO, "'%s' is %s, not a model file", name_or_path,
                         ellm_file_kind((unsigned)sb.st_mode));
    if (strchr(name_or_path, '/'))
        return ellm_fail(EDGELLM_ERR_NOT_FOUND, "%s: no such model file", name_or_path);
    char root[1024];
    edgellm_status st = ellm_store_default_root(root, sizeof root);
    if (st != EDGELLM_OK)
        return st;
    char name[STORE_NAME_MAX], version[STORE_VERSION_MAX];
    st = ellm_store_parse_ref(name_or_path, name, sizeof name, version, sizeof version);
    if (st != EDGELLM_OK)
        return ellm_fail(EDGELLM_ERR_NOT_FOUND,
                         "%s is neither a model file nor an installed model name", name_or_path);
    store *s = NULL;
    st = ellm_store_open(root, &s);
    if (st != EDGELLM_OK)
        return st;
    st = ellm_store_model_path(s, name_or_path, path_out, cap);
    ellm_store_close(s);
    if (st == EDGELLM_ERR_NOT_FOUND)
        return ellm_fail_wrap(st, "%s is not a file, and in the store at %s", name_or_path, root);
    return st;
}
