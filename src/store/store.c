/* Manifests, the active pointer, install/activate/rollback/pin/remove/gc/verify. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/status.h"
#include "store/store_internal.h"

/* ---- paths and locking -------------------------------------------------------------------- */

edgellm_status store_default_root(char *out, size_t cap)
{
    const char *home = getenv("EDGELLM_HOME");
    if (home && *home)
        return st_path(out, cap, "%s", home);
    const char *xdg = getenv("XDG_DATA_HOME");
    if (xdg && *xdg)
        return st_path(out, cap, "%s/edgellm", xdg);
    const char *user_home = getenv("HOME");
    if (!user_home || !*user_home)
        return ellm_fail(EDGELLM_ERR_NOT_FOUND, "neither EDGELLM_HOME nor HOME is set: cannot find the model store");
    return st_path(out, cap, "%s/.local/share/edgellm", user_home);
}

static edgellm_status make_dirs(const char *path)
{
    char buf[1100];
    edgellm_status st = st_path(buf, sizeof buf, "%s", path);
    if (st != EDGELLM_OK)
        return st;
    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char saved = *p;
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return ellm_fail(EDGELLM_ERR_IO, "cannot create directory %s: %s", buf, strerror(errno));
            *p = saved;
            if (saved == '\0')
                break;
        }
    }
    return EDGELLM_OK;
}

edgellm_status store_open(const char *root, store **out)
{
    *out = NULL;
    store *s = calloc(1, sizeof *s);
    if (!s)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "out of memory");
    s->lock_fd = -1;
    char dir[1100];
    edgellm_status st = st_path(s->root, sizeof s->root, "%s", root);
    if (st == EDGELLM_OK)
        st = st_path(dir, sizeof dir, "%s/blobs/sha256", root);
    if (st == EDGELLM_OK)
        st = make_dirs(dir);
    if (st == EDGELLM_OK)
        st = st_path(dir, sizeof dir, "%s/models", root);
    if (st == EDGELLM_OK)
        st = make_dirs(dir);
    if (st == EDGELLM_OK)
        st = st_path(dir, sizeof dir, "%s/tmp", root);
    if (st == EDGELLM_OK)
        st = make_dirs(dir);
    if (st == EDGELLM_OK)
        st = st_path(dir, sizeof dir, "%s/lock", root);
    if (st == EDGELLM_OK) {
        s->lock_fd = open(dir, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (s->lock_fd < 0)
            st = ellm_fail(EDGELLM_ERR_IO, "cannot open the store lock %s: %s", dir, strerror(errno));
    }
    if (st != EDGELLM_OK) {
        store_close(s);
        return st;
    }
    *out = s;
    return EDGELLM_OK;
}

void store_close(store *s)
{
    if (!s)
        return;
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    free(s);
}

const char *store_root(const store *s) { return s->root; }

edgellm_status st_lock_store(store *s)
{
    while (flock(s->lock_fd, LOCK_EX) != 0) {
        if (errno != EINTR)
            return ellm_fail(EDGELLM_ERR_IO, "cannot lock the store at %s: %s", s->root, strerror(errno));
    }
    return EDGELLM_OK;
}

void st_unlock_store(store *s) { flock(s->lock_fd, LOCK_UN); }

/* ---- names -------------------------------------------------------------------------------- */

edgellm_status store_parse_ref(const char *ref, char *name_out, size_t name_cap, char *version_out,
                               size_t version_cap)
{
    const char *colon = strchr(ref, ':');
    size_t name_len = colon ? (size_t)(colon - ref) : strlen(ref);
    const char *version = colon ? colon + 1 : "";
    size_t version_len = strlen(version);
    if (!st_valid_token(ref, name_len) || name_len >= name_cap || name_len >= STORE_NAME_MAX)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "'%s' is not a model name: use letters, digits, '.', '_' and '-' "
                         "(NAME or NAME:VERSION)", ref);
    if (colon && (!st_valid_token(version, version_len) || version_len >= version_cap ||
                  version_len >= STORE_VERSION_MAX))
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "'%s' has an invalid version: use letters, digits, '.', '_' and '-'", ref);
    memcpy(name_out, ref, name_len);
    name_out[name_len] = '\0';
    memcpy(version_out, version, version_len);
    version_out[version_len] = '\0';
    return EDGELLM_OK;
}

/* ---- manifests ---------------------------------------------------------------------------- */

void store_model_clear(store_model *model)
{
    free(model->versions);
    memset(model, 0, sizeof *model);
}

const store_version *store_model_find(const store_model *model, const char *version)
{
    for (size_t i = 0; i < model->n_versions; i++)
        if (strcmp(model->versions[i].version, version) == 0)
            return &model->versions[i];
    return NULL;
}

/* The forms a manifest field may take; anything else makes the manifest corrupt. */
typedef enum field_form {
    FIELD_TOKEN,  /* a version name */
    FIELD_SHA256, /* 64 lowercase hex digits: it becomes part of a blob path */
    FIELD_KEY,    /* 64 lowercase hex digits, or "" when unsigned */
    FIELD_SIG,    /* 128 lowercase hex digits, or "" when unsigned */
    FIELD_TEXT    /* printable text (shown by `models info`) */
} field_form;

static const char *field_form_name(field_form form)
{
    switch (form) {
    case FIELD_TOKEN: return "a version name (letters, digits, '.', '_', '-')";
    case FIELD_SHA256: return "a SHA-256 (64 lowercase hex digits)";
    case FIELD_KEY: return "an Ed25519 key (64 lowercase hex digits) or empty";
    case FIELD_SIG: return "an Ed25519 signature (128 lowercase hex digits) or empty";
    case FIELD_TEXT: return "text without control characters";
    }
    return "?";
}

/* Copies obj[key] into out when it has the given form; a missing key reads as "" and is accepted
 * where "" is. */
static bool read_field(json_t *obj, const char *key, field_form form, bool may_be_empty, char *out,
                       size_t cap)
{
    json_t *value = json_object_get(obj, key);
    if (value && !json_is_string(value))
        return false;
    const char *v = value ? json_string_value(value) : "";
    size_t len = strlen(v);
    if (len >= cap || (value && json_string_length(value) != len)) /* too long, or a NUL inside */
        return false;
    bool ok;
    if (len == 0)
        ok = may_be_empty;
    else if (form == FIELD_TOKEN)
        ok = st_valid_token(v, len);
    else if (form == FIELD_SHA256 || form == FIELD_KEY)
        ok = st_valid_hex(v, 32);
    else if (form == FIELD_SIG)
        ok = st_valid_hex(v, 64);
    else
        ok = !st_has_control(v);
    if (ok)
        memcpy(out, v, len + 1);
    return ok;
}

static bool read_count(json_t *obj, const char *key, uint64_t *out)
{
    json_t *value = json_object_get(obj, key);
    if (!value) {
        *out = 0;
        return true;
    }
    if (!json_is_integer(value) || json_integer_value(value) < 0)
        return false;
    *out = (uint64_t)json_integer_value(value);
    return true;
}

/* The one reader of manifests. Every field must have the form the store writes before any of it
 * is used: a sha256 becomes part of a path, versions and text are printed. A manifest with a field
 * out of form is refused whole: dropping the entry would let gc delete the blob it references. */
static edgellm_status load_manifest(store *s, const char *name, store_model *out)
{
    memset(out, 0, sizeof *out);
    char path[1300];
    edgellm_status st = st_path(path, sizeof path, "%s/models/%s/manifest.json", s->root, name);
    if (st != EDGELLM_OK)
        return st;
    struct stat sb;
    if (lstat(path, &sb) != 0 && (errno == ENOENT || errno == ENOTDIR))
        return ellm_fail(EDGELLM_ERR_NOT_FOUND, "model '%s' is not installed (see 'edgellm models list')", name);
    FILE *f = fopen(path, "rb");
    if (!f || fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        int err = f ? EISDIR : errno;
        if (f)
            fclose(f);
        return ellm_fail(EDGELLM_ERR_IO,
                         "cannot read the manifest %s: %s; restore it, or remove the model with "
                         "'edgellm models remove %s'", path, f ? "not a regular file" : strerror(err),
                         name);
    }
    json_error_t err;
    json_t *root = json_loadf(f, JSON_REJECT_DUPLICATES, &err);
    fclose(f);
    json_t *versions = root ? json_object_get(root, "versions") : NULL;
    if (!root || !json_is_object(root) || !json_is_array(versions)) {
        json_decref(root);
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "manifest %s is corrupt (%s); restore it, or remove the model with "
                         "'edgellm models remove %s'",
                         path, root ? "no \"versions\" list" : err.text, name);
    }
    snprintf(out->name, sizeof out->name, "%s", name);
    const char *bad = NULL, *expected = NULL;
    size_t bad_entry = 0;
#define FIELD(obj, key, form, may_be_empty, dst)                                                \
    do {                                                                                        \
        if (!bad && !read_field((obj), (key), (form), (may_be_empty), (dst), sizeof(dst))) {    \
            bad = (key);                                                                        \
            expected = field_form_name(form);                                                   \
        }                                                                                       \
    } while (0)
    FIELD(root, "active", FIELD_TOKEN, true, out->active);
    FIELD(root, "previous", FIELD_TOKEN, true, out->previous);
    out->pinned = json_is_true(json_object_get(root, "pinned"));
    size_t n = json_array_size(versions);
    out->versions = n ? calloc(n, sizeof *out->versions) : NULL;
    if (n && !out->versions) {
        json_decref(root);
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "out of memory");
    }
    for (size_t i = 0; i < n && !bad; i++) {
        json_t *v = json_array_get(versions, i);
        store_version *sv = &out->versions[i];
        bad_entry = i + 1;
        uint64_t context = 0, installed = 0;
        FIELD(v, "version", FIELD_TOKEN, false, sv->version);
        FIELD(v, "sha256", FIELD_SHA256, false, sv->sha256);
        FIELD(v, "architecture", FIELD_TEXT, true, sv->architecture);
        FIELD(v, "quantization", FIELD_TEXT, true, sv->quantization);
        FIELD(v, "source", FIELD_TEXT, true, sv->source);
        FIELD(v, "signed_by", FIELD_KEY, true, sv->signed_by);
        FIELD(v, "signature", FIELD_SIG, true, sv->signature);
        if (!bad && !(read_count(v, "size", &sv->size) && read_count(v, "parameters", &sv->n_params) &&
                      read_count(v, "context_length", &context) &&
                      read_count(v, "min_ram_bytes", &sv->min_ram_bytes) &&
                      read_count(v, "installed_at", &installed))) {
            bad = "size, parameters, context_length, min_ram_bytes or installed_at";
            expected = "a count (an integer from 0)";
        }
        sv->context_length = context > UINT32_MAX ? UINT32_MAX : (uint32_t)context;
        sv->installed_at = (int64_t)installed;
        out->n_versions = i + 1;
    }
#undef FIELD
    json_decref(root);
    if (bad) {
        store_model_clear(out);
        char where[48] = "";
        if (bad_entry)
            snprintf(where, sizeof where, "version entry %zu: ", bad_entry);
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "manifest %s is corrupt: %s%s is not %s; restore it, or remove the model "
                         "with 'edgellm models remove %s' and reinstall it",
                         path, where, bad, expected, name);
    }
    return EDGELLM_OK;
}

static edgellm_status save_manifest(store *s, const store_model *m)
{
    json_t *versions = json_array();
    for (size_t i = 0; i < m->n_versions; i++) {
        const store_version *v = &m->versions[i];
        json_array_append_new(versions,
            json_pack("{s:s, s:s, s:I, s:s, s:s, s:I, s:I, s:I, s:s, s:s, s:s, s:I}",
                      "version", v->version, "sha256", v->sha256, "size", (json_int_t)v->size,
                      "architecture", v->architecture, "quantization", v->quantization,
                      "parameters", (json_int_t)v->n_params, "context_length",
                      (json_int_t)v->context_length, "min_ram_bytes", (json_int_t)v->min_ram_bytes,
                      "source", v->source, "signed_by", v->signed_by, "signature", v->signature,
                      "installed_at", (json_int_t)v->installed_at));
    }
    json_t *root = json_pack("{s:s, s:s, s:s, s:b, s:o}", "name", m->name, "active", m->active,
                             "previous", m->previous, "pinned", m->pinned, "versions", versions);
    char *text = root ? json_dumps(root, JSON_INDENT(2)) : NULL;
    json_decref(root);
    if (!text)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "out of memory writing a manifest");
    char dir[1200];
    edgellm_status st = st_path(dir, sizeof dir, "%s/models/%s", s->root, m->name);
    if (st == EDGELLM_OK && mkdir(dir, 0755) != 0 && errno != EEXIST)
        st = ellm_fail(EDGELLM_ERR_IO, "cannot create %s: %s", dir, strerror(errno));
    if (st == EDGELLM_OK) {
        char models_dir[1200];
        st = st_path(models_dir, sizeof models_dir, "%s/models", s->root);
        if (st == EDGELLM_OK)
            st = st_fsync_dir(models_dir);
    }
    if (st == EDGELLM_OK)
        st = st_write_atomic(dir, "manifest.json", text, strlen(text));
    free(text);
    return st;
}

static edgellm_status blob_path(const store *s, const char *sha, char *out, size_t cap)
{
    if (!st_valid_sha256(sha))
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "refusing a blob name that is not a SHA-256 (64 lowercase hex digits)");
    return st_path(out, cap, "%s/blobs/sha256/%s", s->root, sha);
}

edgellm_status store_get_model(store *s, const char *name, store_model *out)
{
    return load_manifest(s, name, out);
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

edgellm_status store_list_names(store *s, char ***names_out, size_t *count_out)
{
    *names_out = NULL;
    *count_out = 0;
    char dir[1200];
    edgellm_status st = st_path(dir, sizeof dir, "%s/models", s->root);
    if (st != EDGELLM_OK)
        return st;
    DIR *d = opendir(dir);
    if (!d)
        return ellm_fail(EDGELLM_ERR_IO, "cannot read %s: %s", dir, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        /* Only names the store can create; anything else in models/ is not a model. */
        if (!st_valid_token(e->d_name, strlen(e->d_name)) || strlen(e->d_name) >= STORE_NAME_MAX)
            continue;
        /* A manifest that exists but cannot be read is listed, so its readers report it. */
        char manifest[1400];
        struct stat sb;
        if (st_path(manifest, sizeof manifest, "%s/%s/manifest.json", dir, e->d_name) != EDGELLM_OK ||
            (lstat(manifest, &sb) != 0 && (errno == ENOENT || errno == ENOTDIR)))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **grown = realloc(names, cap * sizeof *names);
            if (!grown)
                break;
            names = grown;
        }
        names[n] = strdup(e->d_name);
        if (names[n])
            n++;
    }
    closedir(d);
    if (n > 0)
        qsort(names, n, sizeof *names, cmp_names);
    *names_out = names;
    *count_out = n;
    return EDGELLM_OK;
}

void store_free_names(char **names, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
}

/* ---- install ------------------------------------------------------------------------------ */

static edgellm_status copy_and_hash(const char *from, int out_fd, const char *out_path, bool progress)
{
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return ellm_fail(EDGELLM_ERR_IO, "cannot open %s: %s", from, strerror(errno));
    struct stat sb;
    uint64_t total = fstat(in, &sb) == 0 ? (uint64_t)sb.st_size : 0;
    enum { CHUNK = 1 << 20 };
    char *buf = malloc(CHUNK);
    edgellm_status st = buf ? EDGELLM_OK : ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "out of memory");
    uint64_t done = 0;
    double started = st_now(), last = 0;
    while (st == EDGELLM_OK) {
        ssize_t n = read(in, buf, CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            st = ellm_fail(EDGELLM_ERR_IO, "cannot read %s: %s", from, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out_fd, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                int err = errno;
                if (err == ENOSPC || err == EFBIG || err == EDQUOT)
                    st = ellm_fail(EDGELLM_ERR_IO, "disk full while copying %s into the store (%s): "
                                   "free space and retry", from, strerror(err));
                else
                    st = ellm_fail(EDGELLM_ERR_IO, "cannot write %s: %s", out_path, strerror(err));
                break;
            }
            off += w;
        }
        done += (uint64_t)n;
        if (progress && st_now() - last > 0.1) {
            last = st_now();
            st_progress_draw("copying", done, total, started);
        }
    }
    if (progress && last > 0)
        st_progress_done();
    free(buf);
    close(in);
    if (st == EDGELLM_OK && fsync(out_fd) != 0)
        st = ellm_fail(EDGELLM_ERR_IO, "cannot sync %s: %s", out_path, strerror(errno));
    return st;
}

static edgellm_status read_signature(const char *from, const store_install_options *opts,
                                     store_signature *sig, bool *found)
{
    *found = false;
    char default_sig[1200];
    const char *where = opts->sig;
    if (!where) {
        /* For a URL the signature sits beside the path, before any query string. */
        size_t path_len = strlen(from);
        const char *query = st_is_url(from) ? strchr(from, '?') : NULL;
        if (query)
            path_len = (size_t)(query - from);
        edgellm_status st = st_path(default_sig, sizeof default_sig, "%.*s.sig%s", (int)path_len,
                                    from, query ? query : "");
        if (st != EDGELLM_OK)
            return st;
        where = default_sig;
    }
    char *text = NULL;
    size_t len = 0;
    if (st_is_url(where)) {
        edgellm_status st = st_fetch_small(where, &text, &len);
        if (st == EDGELLM_ERR_NOT_FOUND && !opts->sig)
            return EDGELLM_OK;
        if (st != EDGELLM_OK)
            return ellm_fail_wrap(st, "signature");
    } else {
        FILE *f = fopen(where, "rb");
        if (!f) {
            if (errno == ENOENT && !opts->sig)
                return EDGELLM_OK;
            return ellm_fail(EDGELLM_ERR_IO, "cannot read signature %s: %s", where, strerror(errno));
        }
        text = malloc(65536);
        len = text ? fread(text, 1, 65535, f) : 0;
        fclose(f);
        if (!text)
            return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "out of memory");
    }
    edgellm_status st = store_signature_parse(text, len, sig);
    free(text);
    if (st != EDGELLM_OK)
        return ellm_fail_wrap(st, "signature %s", where);
    *found = true;
    return EDGELLM_OK;
}

static void next_version(const store_model *m, char *out, size_t cap)
{
    long best = 0;
    for (size_t i = 0; i < m->n_versions; i++) {
        char *end = NULL;
        long v = strtol(m->versions[i].version, &end, 10);
        if (end && *end == '\0' && v > best)
            best = v;
    }
    snprintf(out, cap, "%ld", best + 1);
}

/* A temporary under tmp/ that this process owns: flock()ed so gc leaves it alone. */
static edgellm_status open_owned_temp(store *s, const char *prefix, char *path, size_t cap, int *fd_out)
{
    for (;;) {
        edgellm_status st = st_path(path, cap, "%s/tmp/%s-XXXXXX", s->root, prefix);
        if (st != EDGELLM_OK)
            return st;
        int fd = mkostemp(path, O_CLOEXEC);
        if (fd < 0)
            return ellm_fail(EDGELLM_ERR_IO, "cannot create a temporary file in %s/tmp: %s", s->root,
                             strerror(errno));
        while (flock(fd, LOCK_EX) != 0 && errno == EINTR) {
        }
        /* A gc that saw the file before we locked it unlinks it while holding the lock; our
         * flock returns after that, so a file still linked now is ours for good. */
        struct stat sb;
        if (fstat(fd, &sb) == 0 && sb.st_nlink > 0) {
            *fd_out = fd;
            return EDGELLM_OK;
        }
        close(fd);
    }
}

/* Partial downloads are keyed by URL so an interrupted install resumes where it stopped. */
static edgellm_status open_download_part(store *s, const char *url, char *path, size_t cap, int *fd_out)
{
    char key[STORE_HASH_HEX];
    unsigned char digest[crypto_hash_sha256_BYTES];
    if (sodium_init() < 0)
        return ellm_fail(EDGELLM_ERR_UNSUPPORTED, "libsodium failed to initialize");
    crypto_hash_sha256(digest, (const unsigned char *)url, strlen(url));
    st_hex(digest, 16, key);
    edgellm_status st = st_path(path, cap, "%s/tmp/download-%s.part", s->root, key);
    if (st != EDGELLM_OK)
        return st;
    for (;;) {
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0)
            return ellm_fail(EDGELLM_ERR_IO, "cannot open %s: %s", path, strerror(errno));
        /* Another process downloading the same URL holds it: wait, then continue from its
         * bytes. If meanwhile it finished and moved the file into blobs/ (or gc deleted it),
         * our descriptor no longer names the path: open afresh rather than write into a blob. */
        while (flock(fd, LOCK_EX) != 0 && errno == EINTR) {
        }
        struct stat held, now;
        if (fstat(fd, &held) == 0 && stat(path, &now) == 0 && held.st_ino == now.st_ino &&
            held.st_dev == now.st_dev) {
            *fd_out = fd;
            return EDGELLM_OK;
        }
        close(fd);
    }
}

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

static edgellm_status sweep_dir(const char *dir, const hash_set *keep, const char *keep_prefix,
                                bool only_unlocked, uint64_t *files, uint64_t *bytes);

/* The reason a file was refused, from the parser or the loader: it may quote the file's own
 * strings, so its control characters are escaped before they reach a terminal. */
static edgellm_status refuse_model(edgellm_status st, const char *from, const char *what)
{
    char cause[768];
    st_escape_controls(edgellm_last_error(), cause, sizeof cause);
    return ellm_fail(st, "refusing to install %s: %s: %s", from, what, cause);
}

/* Copies of installs that were killed: every live install holds a flock() on its temporary, so an
 * unlocked one is older than any install still running. Partial downloads are kept: a rerun of
 * that install resumes from them (gc deletes them). */
static void sweep_stale_temporaries(store *s)
{
    char dir[1200];
    uint64_t files = 0, bytes = 0;
    if (st_path(dir, sizeof dir, "%s/tmp", s->root) == EDGELLM_OK)
        sweep_dir(dir, NULL, "download-", true, &files, &bytes);
}

edgellm_status store_install(store *s, const char *name, const char *version_in, const char *from,
                             const store_install_options *opts_in, char *installed_version_out,
                             size_t cap)
{
    store_install_options opts = opts_in ? *opts_in : (store_install_options){.activate = true};
    char tmp_path[1300];
    int fd = -1;
    bool keep_partial = false, moved = false;
    edgellm_status st;

    /* Best effort: a store whose tmp/ cannot be swept fails below with a clearer message. */
    sweep_stale_temporaries(s);

    /* 1. Bring the bytes into tmp/ (nothing visible yet). */
    if (st_is_url(from)) {
        st = open_download_part(s, from, tmp_path, sizeof tmp_path, &fd);
        if (st == EDGELLM_OK) {
            st = st_download(from, fd, tmp_path, &opts);
            /* A transfer problem keeps the partial file so a rerun resumes; anything later
             * (wrong hash, garbage) deletes it. */
            struct stat part;
            keep_partial = st != EDGELLM_OK && st != EDGELLM_ERR_NOT_FOUND &&
                           fstat(fd, &part) == 0 && part.st_size > 0;
        }
    } else {
        struct stat sb;
        if (stat(from, &sb) != 0 || !S_ISREG(sb.st_mode))
            return ellm_fail(EDGELLM_ERR_NOT_FOUND, "%s: no such model file (give a local .gguf file or an http(s):// URL)", from);
        st = open_owned_temp(s, "install", tmp_path, sizeof tmp_path, &fd);
        if (st == EDGELLM_OK)
            st = copy_and_hash(from, fd, tmp_path, opts.progress);
    }

    char sha[STORE_HASH_HEX] = "";
    uint64_t size = 0;
    if (st == EDGELLM_OK)
        st = st_sha256_fd(fd, tmp_path, sha, &size);

    /* 2. Verify: signature, hash, GGUF header. */
    store_signature sig;
    bool signed_file = false, trusted = false;
    char version[STORE_VERSION_MAX];
    snprintf(version, sizeof version, "%s", version_in ? version_in : "");
    if (st == EDGELLM_OK)
        st = read_signature(from, &opts, &sig, &signed_file);
    if (st == EDGELLM_OK && !signed_file && !opts.allow_unsigned)
        st = ellm_fail(EDGELLM_ERR_FORMAT,
                       "refusing to install %s: no signature (looked for %s%s); give --sig PATH or "
                       "pass --allow-unsigned to install it unverified", from, opts.sig ? opts.sig : from,
                       opts.sig ? "" : ".sig");
    if (st == EDGELLM_OK && signed_file) {
        if (strcmp(sig.name, name) != 0)
            st = ellm_fail(EDGELLM_ERR_FORMAT, "refusing to install: the signature is for model '%s', not '%s'",
                           sig.name, name);
        else if (version[0] && strcmp(sig.version, version) != 0)
            st = ellm_fail(EDGELLM_ERR_FORMAT,
                           "refusing to install: the signature is for version '%s', not '%s'",
                           sig.version, version);
        else if (strcmp(sig.sha256, sha) != 0 || sig.size != size)
            st = ellm_fail(EDGELLM_ERR_FORMAT,
                           "refusing to install %s: its SHA-256 %.16s... (%llu bytes) does not match "
                           "the signed %.16s... (%llu bytes): the file is corrupt or was tampered with",
                           from, sha, (unsigned long long)size, sig.sha256, (unsigned long long)sig.size);
        else if ((st = store_signature_check(&sig)) != EDGELLM_OK)
            st = ellm_fail_wrap(st, "refusing to install %s", from);
        else if ((st = store_key_trusted(s, sig.key, &trusted)) != EDGELLM_OK)
            st = ellm_fail_wrap(st, "refusing to install %s", from);
        else if (!trusted)
            st = ellm_fail(EDGELLM_ERR_FORMAT,
                           "refusing to install %s: it is signed by key %s, which is not in %s/trusted-keys "
                           "(add it with 'edgellm models trust KEY' if you trust the publisher)",
                           from, sig.key, s->root);
        if (st == EDGELLM_OK && !version[0])
            snprintf(version, sizeof version, "%s", sig.version);
    }
    store_model_shape shape;
    if (st == EDGELLM_OK) {
        st = store_read_shape(tmp_path, &shape);
        if (st != EDGELLM_OK)
            st = refuse_model(st, from, "not a usable GGUF model");
    }
    if (st == EDGELLM_OK) {
        /* The header alone passes files that cannot run (tensors that disagree with the
         * hyper-parameters, a missing tensor, a vocabulary of another size than the embedding):
         * load it as `run` would. The weights are only mapped, not read. */
        edgellm_model *model = NULL;
        st = edgellm_model_load(tmp_path, NULL, &model);
        edgellm_model_free(model);
        if (st != EDGELLM_OK)
            st = refuse_model(st, from, "the model does not load");
    }
    if (st == EDGELLM_OK && fchmod(fd, 0444) != 0)
        st = ellm_fail(EDGELLM_ERR_IO, "cannot chmod %s: %s", tmp_path, strerror(errno));

    /* 3. Commit under the store lock: blob rename, then one manifest rename. */
    store_model m = {0};
    bool locked = false;
    if (st == EDGELLM_OK) {
        st = st_lock_store(s);
        locked = st == EDGELLM_OK;
    }
    if (st == EDGELLM_OK) {
        st = load_manifest(s, name, &m);
        if (st == EDGELLM_ERR_NOT_FOUND) {
            memset(&m, 0, sizeof m);
            snprintf(m.name, sizeof m.name, "%s", name);
            st = EDGELLM_OK;
        }
    }
    bool already = false;
    if (st == EDGELLM_OK) {
        if (!version[0])
            next_version(&m, version, sizeof version);
        const store_version *existing = store_model_find(&m, version);
        if (existing && strcmp(existing->sha256, sha) != 0)
            st = ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                           "%s:%s is already installed with different content (sha256 %.16s...); "
                           "remove it first or install under another version", name, version,
                           existing->sha256);
        already = existing != NULL;
    }
    char blob[1300];
    if (st == EDGELLM_OK)
        st = blob_path(s, sha, blob, sizeof blob);
    if (st == EDGELLM_OK) {
        char existing_sha[STORE_HASH_HEX];
        uint64_t existing_size = 0;
        bool intact = access(blob, F_OK) == 0 &&
                      store_sha256_file(blob, existing_sha, &existing_size) == EDGELLM_OK &&
                      strcmp(existing_sha, sha) == 0;
        if (!intact) {
            if (rename(tmp_path, blob) != 0)
                st = ellm_fail(EDGELLM_ERR_IO, "cannot move %s to %s: %s", tmp_path, blob, strerror(errno));
            else {
                moved = true;
                char blobs_dir[1200];
                st = st_path(blobs_dir, sizeof blobs_dir, "%s/blobs/sha256", s->root);
                if (st == EDGELLM_OK)
                    st = st_fsync_dir(blobs_dir);
            }
        }
    }
    if (st == EDGELLM_OK && !already) {
        store_version *grown = realloc(m.versions, (m.n_versions + 1) * sizeof *m.versions);
        if (!grown)
            st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "out of memory");
        else {
            m.versions = grown;
            store_version *v = &m.versions[m.n_versions++];
            memset(v, 0, sizeof *v);
            snprintf(v->version, sizeof v->version, "%s", version);
            snprintf(v->sha256, sizeof v->sha256, "%s", sha);
            v->size = size;
            snprintf(v->architecture, sizeof v->architecture, "%s", shape.architecture);
            snprintf(v->quantization, sizeof v->quantization, "%s", shape.quantization);
            v->n_params = shape.n_params;
            v->context_length = shape.n_ctx_train > 0 ? (uint32_t)shape.n_ctx_train : 0;
            v->min_ram_bytes = st_min_ram(&shape);
            st_escape_controls(from, v->source, sizeof v->source);
            if (signed_file) {
                snprintf(v->signed_by, sizeof v->signed_by, "%s", sig.key);
                snprintf(v->signature, sizeof v->signature, "%s", sig.signature);
            }
            v->installed_at = (int64_t)time(NULL);
        }
    }
    if (st == EDGELLM_OK && opts.activate && !(m.pinned && m.active[0]) &&
        strcmp(m.active, version) != 0) {
        snprintf(m.previous, sizeof m.previous, "%s", m.active);
        snprintf(m.active, sizeof m.active, "%s", version);
    }
    if (st == EDGELLM_OK)
        st = save_manifest(s, &m);
    if (locked)
        st_unlock_store(s);
    store_model_clear(&m);

    if (fd >= 0) {
        if (!moved && !keep_partial)
            unlink(tmp_path);
        close(fd);
    }
    if (st == EDGELLM_OK && installed_version_out)
        snprintf(installed_version_out, cap, "%s", version);
    return st;
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

static edgellm_status check_blob(store *s, const store_version *v, const char *name)
{
    char blob[1300], sha[STORE_HASH_HEX];
    uint64_t size = 0;
    edgellm_status st = blob_path(s, v->sha256, blob, sizeof blob);
    if (st != EDGELLM_OK)
        return st;
    if (access(blob, F_OK) != 0)
        return ellm_fail(EDGELLM_ERR_NOT_FOUND, "%s:%s: its file %s is missing; reinstall it",
                         name, v->version, blob);
    st = store_sha256_file(blob, sha, &size);
    if (st != EDGELLM_OK)
        return st;
    if (strcmp(sha, v->sha256) != 0 || size != v->size)
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "%s:%s is corrupt: its file hashes to %.16s... (%llu bytes) but the manifest "
                         "says %.16s... (%llu bytes); reinstall it",
                         name, v->version, sha, (unsigned long long)size, v->sha256,
                         (unsigned long long)v->size);
    return EDGELLM_OK;
}

static edgellm_status set_active(store *s, const char *name, const char *version, bool to_previous,
                                 char *now_active_out, size_t cap)
{
    edgellm_status st = st_lock_store(s);
    if (st != EDGELLM_OK)
        return st;
    store_model m;
    st = load_manifest(s, name, &m);
    const char *target = version;
    if (st == EDGELLM_OK && to_previous) {
        if (!m.previous[0])
            st = ellm_fail(EDGELLM_ERR_NOT_FOUND, "%s has no previous version to roll back to", name);
        target = m.previous;
    }
    const store_version *v = NULL;
    if (st == EDGELLM_OK) {
        v = store_model_find(&m, target);
        if (!v)
            st = ellm_fail(EDGELLM_ERR_NOT_FOUND, "%s:%s is not installed (see 'edgellm models info %s')",
                           name, target, name);
    }
    if (st == EDGELLM_OK)
        st = check_blob(s, v, name);
    if (st == EDGELLM_OK && strcmp(m.active, target) != 0) {
        char new_active[STORE_VERSION_MAX];
        snprintf(new_active, sizeof new_active, "%s", target);
        snprintf(m.previous, sizeof m.previous, "%s", m.active);
        snprintf(m.active, sizeof m.active, "%s", new_active);
        st = save_manifest(s, &m);
    }
    if (st == EDGELLM_OK && now_active_out)
        snprintf(now_active_out, cap, "%s", m.active);
    store_model_clear(&m);
    st_unlock_store(s);
    return st;
}

edgellm_status store_activate(store *s, const char *name, const char *version)
{
    return set_active(s, name, version, false, NULL, 0);
}

edgellm_status store_rollback(store *s, const char *name, char *now_active_out, size_t cap)
{
    return set_active(s, name, NULL, true, now_active_out, cap);
}

edgellm_status store_pin(store *s, const char *name, bool pinned)
{
    edgellm_status st = st_lock_store(s);
    if (st != EDGELLM_OK)
        return st;
    store_model m;
    st = load_manifest(s, name, &m);
    if (st == EDGELLM_OK && m.pinned != pinned) {
        m.pinned = pinned;
        st = save_manifest(s, &m);
    }
    store_model_clear(&m);
    st_unlock_store(s);
    return st;
}

edgellm_status store_remove(store *s, const char *name, const char *version, bool force)
{
    edgellm_status st = st_lock_store(s);
    if (st != EDGELLM_OK)
        return st;
    store_model m;
    st = load_manifest(s, name, &m);
    bool whole = !version || !version[0];
    /* Removing a whole name needs nothing from its manifest, so a corrupt or unreadable one can
     * be removed (the messages about it point here). */
    if (whole && st != EDGELLM_OK && st != EDGELLM_ERR_NOT_FOUND)
        st = EDGELLM_OK;
    if (st == EDGELLM_OK && whole) {
        char dir[1200], path[1300];
        st = st_path(dir, sizeof dir, "%s/models/%s", s->root, name);
        if (st == EDGELLM_OK)
            st = st_path(path, sizeof path, "%s/manifest.json", dir);
        /* Unlinking the manifest is the one step that makes the name disappear. */
        if (st == EDGELLM_OK && unlink(path) != 0)
            st = ellm_fail(EDGELLM_ERR_IO, "cannot remove %s: %s", path, strerror(errno));
        if (st == EDGELLM_OK) {
            st_fsync_dir(dir);
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
                           "whole model with 'edgellm models remove %s'", name, version, name);
        else {
            memmove(&m.versions[i], &m.versions[i + 1], (m.n_versions - i - 1) * sizeof *m.versions);
            m.n_versions--;
            if (strcmp(m.active, version) == 0)
                m.active[0] = '\0';
            if (strcmp(m.previous, version) == 0)
                m.previous[0] = '\0';
            st = save_manifest(s, &m);
        }
    }
    store_model_clear(&m);
    st_unlock_store(s);
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
        if (st_path(path, sizeof path, "%s/%s", dir, e->d_name) != EDGELLM_OK)
            continue;
        struct stat sb;
        if (lstat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
            continue;
        if (only_unlocked) {
            /* Temporaries of a running install or download are flock()ed by their owner. */
            int fd = open(path, O_RDONLY | O_CLOEXEC);
            if (fd < 0)
                continue;
            bool busy = flock(fd, LOCK_EX | LOCK_NB) != 0;
            /* Between our open and our lock the owner may have renamed it into blobs/ and
             * another process created a new file under the same name: only unlink the file
             * we hold. */
            struct stat held, now;
            bool same = fstat(fd, &held) == 0 && lstat(path, &now) == 0 &&
                        held.st_ino == now.st_ino && held.st_dev == now.st_dev;
            if (!busy && same && unlink(path) == 0) {
                (*files)++;
                *bytes += (uint64_t)sb.st_size;
            }
            close(fd);
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
        if (st_path(path, sizeof path, "%s/%s", dir, f->d_name) == EDGELLM_OK &&
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
    edgellm_status st = st_path(models, sizeof models, "%s/models", s->root);
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
        if (st_path(dir, sizeof dir, "%s/%s", models, e->d_name) != EDGELLM_OK)
            continue;
        sweep_prefixed(dir, ".manifest.json.", files, bytes);
        /* A directory whose manifest was removed but not the directory itself. */
        char manifest[1500];
        if (st_path(manifest, sizeof manifest, "%s/manifest.json", dir) == EDGELLM_OK &&
            access(manifest, F_OK) != 0)
            rmdir(dir);
    }
    closedir(d);
    return EDGELLM_OK;
}

edgellm_status store_gc(store *s, uint64_t *files_removed, uint64_t *bytes_freed)
{
    *files_removed = 0;
    *bytes_freed = 0;
    edgellm_status st = st_lock_store(s);
    if (st != EDGELLM_OK)
        return st;
    hash_set keep = {0};
    char **names = NULL;
    size_t n_names = 0;
    st = store_list_names(s, &names, &n_names);
    for (size_t i = 0; st == EDGELLM_OK && i < n_names; i++) {
        store_model m;
        st = load_manifest(s, names[i], &m);
        if (st != EDGELLM_OK) {
            /* A manifest we cannot read may reference anything: keep every blob. */
            st = ellm_fail_wrap(st, "gc stopped without deleting anything");
            break;
        }
        for (size_t j = 0; j < m.n_versions; j++)
            if (!hash_set_add(&keep, m.versions[j].sha256))
                st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "out of memory");
        store_model_clear(&m);
    }
    store_free_names(names, n_names);
    char dir[1200];
    if (st == EDGELLM_OK)
        st = st_path(dir, sizeof dir, "%s/blobs/sha256", s->root);
    if (st == EDGELLM_OK)
        st = sweep_dir(dir, &keep, NULL, false, files_removed, bytes_freed);
    if (st == EDGELLM_OK)
        st = st_path(dir, sizeof dir, "%s/tmp", s->root);
    if (st == EDGELLM_OK)
        st = sweep_dir(dir, NULL, NULL, true, files_removed, bytes_freed);
    if (st == EDGELLM_OK)
        st = sweep_atomic_write_temps(s, files_removed, bytes_freed);
    free(keep.items);
    st_unlock_store(s);
    return st;
}

edgellm_status store_verify(store *s, store_verify_report_fn report, void *user, size_t *n_bad)
{
    *n_bad = 0;
    char **names = NULL;
    size_t n_names = 0;
    edgellm_status st = store_list_names(s, &names, &n_names);
    for (size_t i = 0; st == EDGELLM_OK && i < n_names; i++) {
        /* Shared lock per model: a concurrent remove + gc cannot delete a blob between reading
         * the manifest and hashing it, and writers wait for one model's check at most. */
        while (flock(s->lock_fd, LOCK_SH) != 0 && errno == EINTR) {
        }
        store_model m;
        edgellm_status ms = load_manifest(s, names[i], &m);
        if (ms == EDGELLM_ERR_NOT_FOUND) { /* removed since we listed it */
            st_unlock_store(s);
            continue;
        }
        if (ms != EDGELLM_OK) {
            st_unlock_store(s);
            (*n_bad)++;
            if (report)
                report(user, names[i], "", edgellm_last_error());
            continue;
        }
        if (m.active[0] && !store_model_find(&m, m.active)) {
            (*n_bad)++;
            if (report)
                report(user, names[i], m.active, "the active version is not in the manifest");
        }
        for (size_t j = 0; j < m.n_versions; j++) {
            edgellm_status bs = check_blob(s, &m.versions[j], names[i]);
            if (bs != EDGELLM_OK)
                (*n_bad)++;
            if (report)
                report(user, names[i], m.versions[j].version, bs == EDGELLM_OK ? NULL : edgellm_last_error());
        }
        store_model_clear(&m);
        st_unlock_store(s);
    }
    store_free_names(names, n_names);
    return st;
}

edgellm_status store_model_path(store *s, const char *ref, char *path_out, size_t cap)
{
    char name[STORE_NAME_MAX], version[STORE_VERSION_MAX];
    edgellm_status st = store_parse_ref(ref, name, sizeof name, version, sizeof version);
    if (st != EDGELLM_OK)
        return st;
    store_model m;
    st = load_manifest(s, name, &m);
    if (st != EDGELLM_OK)
        return st;
    const char *want = version[0] ? version : m.active;
    const store_version *v = want[0] ? store_model_find(&m, want) : NULL;
    if (!v)
        st = want[0] ? ellm_fail(EDGELLM_ERR_NOT_FOUND, "%s:%s is not installed", name, want)
                     : ellm_fail(EDGELLM_ERR_NOT_FOUND, "%s has no active version: activate one with 'edgellm models activate %s:VERSION'", name, name);
    if (st == EDGELLM_OK)
        st = blob_path(s, v->sha256, path_out, cap);
    if (st == EDGELLM_OK && access(path_out, R_OK) != 0)
        st = ellm_fail(EDGELLM_ERR_NOT_FOUND, "%s:%s: its file %s is missing; reinstall it", name, v->version, path_out);
    store_model_clear(&m);
    return st;
}

edgellm_status store_resolve_model(const char *name_or_path, char *path_out, size_t cap)
{
    struct stat sb;
    if (stat(name_or_path, &sb) == 0 && S_ISREG(sb.st_mode))
        return st_path(path_out, cap, "%s", name_or_path);
    if (strchr(name_or_path, '/'))
        return ellm_fail(EDGELLM_ERR_NOT_FOUND, "%s: no such model file", name_or_path);
    char root[1024];
    edgellm_status st = store_default_root(root, sizeof root);
    if (st != EDGELLM_OK)
        return st;
    char name[STORE_NAME_MAX], version[STORE_VERSION_MAX];
    st = store_parse_ref(name_or_path, name, sizeof name, version, sizeof version);
    if (st != EDGELLM_OK)
        return ellm_fail(EDGELLM_ERR_NOT_FOUND, "%s is neither a model file nor an installed model name", name_or_path);
    store *s = NULL;
    st = store_open(root, &s);
    if (st != EDGELLM_OK)
        return st;
    st = store_model_path(s, name_or_path, path_out, cap);
    store_close(s);
    if (st == EDGELLM_ERR_NOT_FOUND)
        return ellm_fail_wrap(st, "%s is not a file, and in the store at %s", name_or_path, root);
    return st;
}
