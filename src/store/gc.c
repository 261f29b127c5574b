/* Deleting: removing versions, gc of unreferenced blobs and stale temporaries, verify. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/locked_file.h"
#include "core/status.h"
#include "store/store_internal.h"

typedef struct hash_set {
    char (*items)[STORE_HASH_HEX];
    size_t n, cap;
} hash_set;

static bool hash_set_add(hash_set *h, const char *sha)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 32;
        void *grown = realloc(h->items, cap * sizeof *h->items);
        if (!grown)
            return false;
        h->items = grown;
        h->cap = cap;
    }
    snprintf(h->items[h->n++], STORE_HASH_HEX, "%s", sha);
    return true;
}

static bool hash_set_has(const hash_set *h, const char *sha)
{
    for (size_t i = 0; i < h->n; i++)
        if (strcmp(h->items[i], sha) == 0)
            return true;
    return false;
}

edgellm_status ellm_st_check_blob(store *s, const store_version *v, const char *name)
{
    char blob[1300], sha[STORE_HASH_HEX];
    uint64_t size = 0;
    edgellm_status st = ellm_st_blob_path(s, v->sha256, blob, sizeof blob);
    if (st != EDGELLM_OK)
        return st;
    if (access(blob, F_OK) != 0)
        return ellm_fail(EDGELLM_ERR_NOT_FOUND, "%s:%s: its file %s is missing; reinstall it", name,
                         v->version, blob);
    st = ellm_store_sha256_file(blob, sha, &size);
    if (st != EDGELLM_OK)
        return st;
    if (strcmp(sha, v->sha256) != 0 || size != v->size)
        return ellm_fail(
            EDGELLM_ERR_FORMAT,
            "%s:%s is corrupt: its file hashes to %.16s... (%llu bytes) but the manifest "
            "says %.16s... (%llu bytes); reinstall it",
            name, v->version, sha, (unsigned long long)size, v->sha256,
            (unsigned long long)v->size);
    return EDGELLM_OK;
}

edgellm_status ellm_store_remove(store *s, const char *name, const char *version, bool force)
{
    edgellm_status st = ellm_st_lock_store(s);
    if (st != EDGELLM_OK)
        return st;
    store_model m;
    st = ellm_st_load_manifest(s, name, &m);
    bool whole = !version || !version[0];
    /* Removing a whole name needs nothing from its manifest, so a corrupt or unreadable one can
     * be removed (the messages about it point here). */
    if (whole && st != EDGELLM_OK && st != EDGELLM_ERR_NOT_FOUND)
        st = EDGELLM_OK;
    if (st == EDGELLM_OK && whole) {
        char dir[1200], path[1300];
        st = ellm_st_path(dir, sizeof dir, "%s/models/%s", s->root, name);
        if (st == EDGELLM_OK)
            st = ellm_st_path(path, sizeof path, "%s/manifest.json", dir);
        /* Unlinking the manifest is the one step that makes the name disappear. */
        if (st == EDGELLM_OK && unlink(path) != 0)
            st = ellm_fail(EDGELLM_ERR_IO, "cannot remove %s: %s", path, strerror(errno));
        if (st == EDGELLM_OK) {
            ellm_st_fsync_dir(dir);
            rmdir(dir);
        }
    } else if (st == EDGELLM_OK) {
        size_t i = 0;
        while (i < m.n_versions && strcmp(m.versions[i].version, version) != 0)
            i++;
        if (i == m.n_versions)
            st = ellm_fail(EDGELLM_ERR_NOT_FOUND, "%s:%s is not installed", name, version);
        else if (strcmp(m.active, version) == 0 && !force)
            st = ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                           "%s:%s is the active version: activate another first, or remove the "
                           "whole model with 'edgellm models remove %s'",
                           name, version, name);
        else {
            memmove(&m.versions[i], &m.versions[i + 1],
                    (m.n_versions - i - 1) * sizeof *m.versions);
            m.n_versions--;
            if (strcmp(m.active, version) == 0)
                m.active[0] = '\0';
            if (strcmp(m.previous, version) == 0)
                m.previous[0] = '\0';
            st = ellm_st_save_manifest(s, &m);
        }
    }
    ellm_store_model_clear(&m);
    ellm_st_unlock_store(s);
    return st;
}

/* Deletes the regular files in dir except those in keep and those whose name starts with
 * keep_prefix (NULL: none); with only_unlocked, only files no process holds a flock() on. */
static edgellm_status sweep_dir(const char *dir, const hash_set *keep, const char *keep_prefix,
                                bool only_unlocked, uint64_t *files, uint64_t *bytes)
{
    DIR *d = opendir(dir);
    if (!d)
        return ellm_fail(EDGELLM_ERR_IO, "cannot read %s: %s", dir, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (keep && hash_set_has(keep, e->d_name))
            continue;
        if (keep_prefix && strncmp(e->d_name, keep_prefix, strlen(keep_prefix)) == 0)
            continue;
        char path[1400];
        if (ellm_st_path(path, sizeof path, "%s/%s", dir, e->d_name) != EDGELLM_OK)
            continue;
        struct stat sb;
        if (lstat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
            continue;
        if (only_unlocked) {
            /* Temporaries of a running install or download are flock()ed by their owner. */
            uint64_t size;
            if (ellm_unlink_if_unlocked(dirfd(d), e->d_name, &size)) {
                (*files)++;
                *bytes += size;
            }
            continue;
        }
        if (unlink(path) == 0) {
            (*files)++;
            *bytes += (uint64_t)sb.st_size;
        }
    }
    closedir(d);
    return EDGELLM_OK;
}

/* Deletes the files in dir whose names start with prefix. */
/* Copies of installs that were killed: every live install holds a flock() on its temporary, so an
 * unlocked one is older than any install still running. Partial downloads are kept: a rerun of
 * that install resumes from them (gc deletes them). */
void ellm_st_sweep_stale_temporaries(store *s)
{
    char dir[1200];
    uint64_t files = 0, bytes = 0;
    if (ellm_st_path(dir, sizeof dir, "%s/tmp", s->root) == EDGELLM_OK)
        sweep_dir(dir, NULL, "download-", true, &files, &bytes);
}

static void sweep_prefixed(const char *dir, const char *prefix, uint64_t *files, uint64_t *bytes)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *f;
    while ((f = readdir(d)) != NULL) {
        if (strncmp(f->d_name, prefix, strlen(prefix)) != 0)
            continue;
        char path[1700];
        struct stat sb;
        if (ellm_st_path(path, sizeof path, "%s/%s", dir, f->d_name) == EDGELLM_OK &&
            lstat(path, &sb) == 0 && S_ISREG(sb.st_mode) && unlink(path) == 0) {
            (*files)++;
            *bytes += (uint64_t)sb.st_size;
        }
    }
    closedir(d);
}

/* Temporaries of manifests and of trusted-keys left by a process killed mid-write; safe to delete
 * under the store lock, which every writer of those files holds. */
static edgellm_status sweep_atomic_write_temps(store *s, uint64_t *files, uint64_t *bytes)
{
    sweep_prefixed(s->root, ".trusted-keys.", files, bytes);
    char models[1200];
    edgellm_status st = ellm_st_path(models, sizeof models, "%s/models", s->root);
    if (st != EDGELLM_OK)
        return st;
    DIR *d = opendir(models);
    if (!d)
        return ellm_fail(EDGELLM_ERR_IO, "cannot read %s: %s", models, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char dir[1400];
        if (ellm_st_path(dir, sizeof dir, "%s/%s", models, e->d_name) != EDGELLM_OK)
            continue;
        sweep_prefixed(dir, ".manifest.json.", files, bytes);
        /* A directory whose manifest was removed but not the directory itself. */
        char manifest[1500];
        if (ellm_st_path(manifest, sizeof manifest, "%s/manifest.json", dir) == EDGELLM_OK &&
            access(manifest, F_OK) != 0)
            rmdir(dir);
    }
    closedir(d);
    return EDGELLM_OK;
}

edgellm_status ellm_store_gc(store *s, uint64_t *files_removed, uint64_t *bytes_freed)
{
    *files_removed = 0;
    *bytes_freed = 0;
    edgellm_status st = ellm_st_lock_store(s);
    if (st != EDGELLM_OK)
        return st;
    hash_set keep = {0};
    char **names = NULL;
    size_t n_names = 0;
    st = ellm_store_list_names(s, &names, &n_names);
    for (size_t i = 0; st == EDGELLM_OK && i < n_names; i++) {
        store_model m;
        st = ellm_st_load_manifest(s, names[i], &m);
        if (st != EDGELLM_OK) {
            /* A manifest we cannot read may reference anything: keep every blob. */
            st = ellm_fail_wrap(st, "gc stopped without deleting anything");
            break;
        }
        if (m.active[0] && !ellm_store_model_find(&m, m.active)) {
            /* The entry of the active version is gone from a manifest that parses: it was
             * damaged, and the blob that entry referenced must not go with it. */
            st = ellm_fail(EDGELLM_ERR_FORMAT,
                           "gc stopped without deleting anything: the manifest of '%s' names "
                           "active version '%s', which it does not list; restore the manifest, "
                           "or remove the model with 'edgellm models remove %s'",
                           names[i], m.active, names[i]);
            ellm_store_model_clear(&m);
            break;
        }
        for (size_t j = 0; j < m.n_versions; j++)
            if (!hash_set_add(&keep, m.versions[j].sha256))
                st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "out of memory");
        ellm_store_model_clear(&m);
    }
    ellm_store_free_names(names, n_names);
    char dir[1200];
    if (st == EDGELLM_OK)
        st = ellm_st_path(dir, sizeof dir, "%s/blobs/sha256", s->root);
    if (st == EDGELLM_OK)
        st = sweep_dir(dir, &keep, NULL, false, files_removed, bytes_freed);
    if (st == EDGELLM_OK)
        st = ellm_st_path(dir, sizeof dir, "%s/tmp", s->root);
    if (st == EDGELLM_OK)
        st = sweep_dir(dir, NULL, NULL, true, files_removed, bytes_freed);
    if (st == EDGELLM_OK)
        st = sweep_atomic_write_temps(s, files_removed, bytes_freed);
    free(keep.items);
    ellm_st_unlock_store(s);
    return st;
}

edgellm_status ellm_store_verify(store *s, store_verify_report_fn report, void *user, size_t *n_bad)
{
    *n_bad = 0;
    char **names = NULL;
    size_t n_names = 0;
    edgellm_status st = ellm_store_list_names(s, &names, &n_names);
    for (size_t i = 0; st == EDGELLM_OK && i < n_names; i++) {
        /* Shared lock per model: a concurrent remove + gc cannot delete a blob between reading
         * the manifest and hashing it, and writers wait for one model's check at most. */
        while (flock(s->lock_fd, LOCK_SH) != 0 && errno == EINTR) {
        }
        store_model m;
        edgellm_status ms = ellm_st_load_manifest(s, names[i], &m);
        if (ms == EDGELLM_ERR_NOT_FOUND) { /* removed since we listed it */
            ellm_st_unlock_store(s);
            continue;
        }
        if (ms != EDGELLM_OK) {
            ellm_st_unlock_store(s);
            (*n_bad)++;
            if (report)
                report(user, names[i], "", edgellm_last_error());
            continue;
        }
        if (m.active[0] && !ellm_store_model_find(&m, m.active)) {
            (*n_bad)++;
            if (report)
                report(user, names[i], m.active, "the active version is not in the manifest");
        }
        for (size_t j = 0; j < m.n_versions; j++) {
            edgellm_status bs = ellm_st_check_blob(s, &m.versions[j], names[i]);
            if (bs != EDGELLM_OK)
                (*n_bad)++;
            if (report)
                report(user, names[i], m.versions[j].version,
                       bs == EDGELLM_OK ? NULL : edgellm_last_error());
        }
        ellm_store_model_clear(&m);
        ellm_st_unlock_store(s);
    }
    ellm_store_free_names(names, n_names);
    return st;
}
