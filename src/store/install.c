/* Installing (copy or download, verify, atomic switch) and moving the active pointer
 * (activate, rollback, pin). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/bulk_write.h"
#include "core/free_space.h"
#include "core/locked_file.h"
#include "core/mapped_file.h"
#include "core/status.h"
#include "store/store_internal.h"

static edgellm_status copy_write_failed(int err, const char *from, const char *out_path)
{
    if (err == ENOSPC || err == EFBIG || err == EDQUOT)
        return ellm_fail(EDGELLM_ERR_IO,
                         "disk full while copying %s into the store (%s): free space and retry",
                         from, strerror(err));
    return ellm_fail(EDGELLM_ERR_IO, "cannot write %s: %s", out_path, strerror(err));
}

static edgellm_status copy_and_hash(const char *from, int out_fd, const char *out_path,
                                    bool progress)
{
    int in = ellm_open_regular(from);
    if (in < 0)
        return EDGELLM_ERR_IO;
    struct stat sb;
    uint64_t total = fstat(in, &sb) == 0 ? (uint64_t)sb.st_size : 0, free_bytes = 0;
    if (!ellm_fits_free_space(out_fd, total, &free_bytes)) {
        close(in);
        return ellm_fail(EDGELLM_ERR_IO,
                         "%s is %.2f MiB but the store's file system has %.2f MiB free; nothing "
                         "was copied: free space and retry",
                         from, (double)total / 1048576.0, (double)free_bytes / 1048576.0);
    }
    enum { CHUNK = 1 << 20 };
    char *buf = malloc(CHUNK);
    edgellm_status st = buf ? EDGELLM_OK : ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "out of memory");
    uint64_t done = 0;
    double started = ellm_st_now(), last = 0;
    /* The copy becomes a model that is mapped: written in 8 MiB writes its pages are cached in
     * 2 MiB folios (core/bulk_write.h). The temporary is new, so it starts at offset 0. */
    ellm_bulk_writer out;
    ellm_bulk_writer_init(&out, out_fd, 0);
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
        int err = ellm_bulk_write(&out, buf, (size_t)n);
        if (err) {
            st = copy_write_failed(err, from, out_path);
            break;
        }
        done += (uint64_t)n;
        if (progress && ellm_st_now() - last > 0.1) {
            last = ellm_st_now();
            ellm_st_progress_draw("copying", done, total, started);
        }
    }
    if (st == EDGELLM_OK) {
        int err = ellm_bulk_writer_flush(&out);
        if (err)
            st = copy_write_failed(err, from, out_path);
    }
    ellm_bulk_writer_free(&out);
    if (progress && last > 0)
        ellm_st_progress_done();
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
        const char *query = ellm_st_is_url(from) ? strchr(from, '?') : NULL;
        if (query)
            path_len = (size_t)(query - from);
        edgellm_status st = ellm_st_path(default_sig, sizeof default_sig, "%.*s.sig%s",
                                         (int)path_len, from, query ? query : "");
        if (st != EDGELLM_OK)
            return st;
        where = default_sig;
    }
    char *text = NULL;
    size_t len = 0;
    if (ellm_st_is_url(where)) {
        edgellm_status st = ellm_st_fetch_small(where, &text, &len);
        if (st == EDGELLM_ERR_NOT_FOUND && !opts->sig)
            return EDGELLM_OK;
        if (st != EDGELLM_OK)
            return ellm_fail_wrap(st, "signature");
    } else {
        FILE *f = ellm_fopen_regular(where);
        if (!f) {
            if (errno == ENOENT && !opts->sig) {
                ellm_clear_error();
                return EDGELLM_OK;
            }
            return ellm_fail_wrap(EDGELLM_ERR_IO, "cannot read the signature");
        }
        /* One byte past the limit tells a file that is too long from one that fits exactly. */
        text = malloc(STORE_SIGNATURE_MAX + 1);
        len = text ? fread(text, 1, STORE_SIGNATURE_MAX + 1, f) : 0;
        fclose(f);
        if (!text)
            return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "out of memory");
        if (len > STORE_SIGNATURE_MAX) {
            free(text);
            return ellm_fail(EDGELLM_ERR_FORMAT, "%s is larger than 1 MiB: not a signature", where);
        }
    }
    edgellm_status st = ellm_store_signature_parse(text, len, sig);
    free(text);
    if (st != EDGELLM_OK)
        return ellm_fail_wrap(st, "signature %s", where);
    *found = true;
    return EDGELLM_OK;
}

/* One more than the largest version that is a plain number. A number of 19 digits or more is not
 * counted: one more than it could wrap around to a negative "version" that no manifest reader
 * accepts (and would not fit a long anyway). */
static void next_version(const store_model *m, char *out, size_t cap)
{
    long long best = 0;
    for (size_t i = 0; i < m->n_versions; i++) {
        const char *v = m->versions[i].version;
        size_t digits = strspn(v, "0123456789");
        if (digits == 0 || digits > 18 || v[digits] != '\0')
            continue;
        long long n = strtoll(v, NULL, 10);
        if (n > best)
            best = n;
    }
    snprintf(out, cap, "%lld", best + 1);
}

/* A temporary under tmp/ that this process owns: flock()ed so gc leaves it alone. */
static edgellm_status open_owned_temp(store *s, const char *prefix, char *path, size_t cap,
                                      int *fd_out)
{
    for (;;) {
        edgellm_status st = ellm_st_path(path, cap, "%s/tmp/%s-XXXXXX", s->root, prefix);
        if (st != EDGELLM_OK)
            return st;
        int fd = mkostemp(path, O_CLOEXEC);
        if (fd < 0)
            return ellm_fail(EDGELLM_ERR_IO, "cannot create a temporary file in %s/tmp: %s",
                             s->root, strerror(errno));
        if (ellm_lock_new_file(fd)) {
            *fd_out = fd;
            return EDGELLM_OK;
        }
        close(fd);
    }
}

/* Partial downloads are keyed by URL so an interrupted install resumes where it stopped. */
static edgellm_status open_download_part(store *s, const char *url, char *path, size_t cap,
                                         int *fd_out)
{
    char key[STORE_HASH_HEX];
    unsigned char digest[crypto_hash_sha256_BYTES];
    if (sodium_init() < 0)
        return ellm_fail(EDGELLM_ERR_UNSUPPORTED, "libsodium failed to initialize");
    crypto_hash_sha256(digest, (const unsigned char *)url, strlen(url));
    sodium_bin2hex(key, sizeof key, digest, 16);
    edgellm_status st = ellm_st_path(path, cap, "%s/tmp/download-%s.part", s->root, key);
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

/* The reason a file was refused, from the parser or the loader: it may quote the file's own
 * strings, so its control characters are escaped before they reach a terminal. */
static edgellm_status refuse_model(edgellm_status st, const char *from, const char *what)
{
    char cause[768];
    ellm_st_escape_controls(edgellm_last_error(), cause, sizeof cause);
    return ellm_fail(st, "refusing to install %s: %s: %s", from, what, cause);
}

edgellm_status ellm_store_install(store *s, const char *name, const char *version_in,
                                  const char *from, const store_install_options *opts_in,
                                  char *installed_version_out, size_t cap)
{
    store_install_options opts = opts_in ? *opts_in : (store_install_options){.activate = true};
    char tmp_path[1300];
    int fd = -1;
    bool keep_partial = false, moved = false;
    edgellm_status st;

    /* Best effort: a store whose tmp/ cannot be swept fails below with a clearer message. */
    ellm_st_sweep_stale_temporaries(s);

    /* 1. Bring the bytes into tmp/ (nothing visible yet). */
    if (ellm_st_is_url(from)) {
        st = open_download_part(s, from, tmp_path, sizeof tmp_path, &fd);
        if (st == EDGELLM_OK) {
            st = ellm_st_download(from, fd, tmp_path, &opts);
            /* A transfer problem keeps the partial file so a rerun resumes; anything later
             * (wrong hash, garbage) deletes it. */
            struct stat part;
            keep_partial = st != EDGELLM_OK && st != EDGELLM_ERR_NOT_FOUND &&
                           fstat(fd, &part) == 0 && part.st_size > 0;
        }
    } else {
        struct stat sb;
        if (stat(from, &sb) == 0 && !S_ISREG(sb.st_mode))
            return ellm_fail(EDGELLM_ERR_IO, "'%s' is %s, not a model file", from,
                             ellm_file_kind((unsigned)sb.st_mode));
        if (stat(from, &sb) != 0)
            return ellm_fail(
                EDGELLM_ERR_NOT_FOUND,
                "%s: no such model file (give a local .gguf file or an http(s):// URL)", from);
        st = open_owned_temp(s, "install", tmp_path, sizeof tmp_path, &fd);
        if (st == EDGELLM_OK)
            st = copy_and_hash(from, fd, tmp_path, opts.progress);
    }

    char sha[STORE_HASH_HEX] = "";
    uint64_t size = 0;
    if (st == EDGELLM_OK)
        st = ellm_st_sha256_fd(fd, tmp_path, sha, &size);

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
                       "pass --allow-unsigned to install it unverified",
                       from, opts.sig ? opts.sig : from, opts.sig ? "" : ".sig");
    if (st == EDGELLM_OK && signed_file) {
        if (strcmp(sig.name, name) != 0)
            st = ellm_fail(EDGELLM_ERR_FORMAT,
                           "refusing to install: the signature is for model '%s', not '%s'",
                           sig.name, name);
        else if (version[0] && strcmp(sig.version, version) != 0)
            st = ellm_fail(EDGELLM_ERR_FORMAT,
                           "refusing to install: the signature is for version '%s', not '%s'",
                           sig.version, version);
        else if (strcmp(sig.sha256, sha) != 0 || sig.size != size)
            st = ellm_fail(
                EDGELLM_ERR_FORMAT,
                "refusing to install %s: its SHA-256 %.16s... (%llu bytes) does not match "
                "the signed %.16s... (%llu bytes): the file is corrupt or was tampered with",
                from, sha, (unsigned long long)size, sig.sha256, (unsigned long long)sig.size);
        else if ((st = ellm_store_signature_check(&sig)) != EDGELLM_OK)
            st = ellm_fail_wrap(st, "refusing to install %s", from);
        else if ((st = ellm_store_key_trusted(s, sig.key, &trusted)) != EDGELLM_OK)
            st = ellm_fail_wrap(st, "refusing to install %s", from);
        else if (!trusted)
            st = ellm_fail(
                EDGELLM_ERR_FORMAT,
                "refusing to install %s: it is signed by key %s, which is not in %s/trusted-keys "
                "(add it with 'edgellm models trust KEY' if you trust the publisher)",
                from, sig.key, s->root);
        if (st == EDGELLM_OK && !version[0])
            snprintf(version, sizeof version, "%s", sig.version);
    }
    store_model_shape shape;
    uint64_t min_ram = 0;
    if (st == EDGELLM_OK) {
        st = ellm_store_read_shape(tmp_path, &shape);
        if (st != EDGELLM_OK)
            st = refuse_model(st, from, "not a usable GGUF model");
    }
    if (st == EDGELLM_OK) {
        /* The header alone passes files that cannot run (tensors that disagree with the
         * hyper-parameters, a missing tensor, a vocabulary of another size than the embedding):
         * load it as `run` would. The weights are only mapped, not read. */
        edgellm_model *model = NULL;
        st = edgellm_model_load(tmp_path, NULL, &model);
        min_ram = st == EDGELLM_OK ? ellm_st_min_ram(model) : 0;
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
        st = ellm_st_lock_store(s);
        locked = st == EDGELLM_OK;
    }
    if (st == EDGELLM_OK) {
        st = ellm_st_load_manifest(s, name, &m);
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
        const store_version *existing = ellm_store_model_find(&m, version);
        if (existing && strcmp(existing->sha256, sha) != 0)
            st = ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                           "%s:%s is already installed with different content (sha256 %.16s...); "
                           "remove it first or install under another version",
                           name, version, existing->sha256);
        already = existing != NULL;
    }
    char blob[1300];
    if (st == EDGELLM_OK)
        st = ellm_st_blob_path(s, sha, blob, sizeof blob);
    if (st == EDGELLM_OK) {
        char existing_sha[STORE_HASH_HEX];
        uint64_t existing_size = 0;
        bool intact = access(blob, F_OK) == 0 &&
                      ellm_store_sha256_file(blob, existing_sha, &existing_size) == EDGELLM_OK &&
                      strcmp(existing_sha, sha) == 0;
        if (!intact) {
            if (rename(tmp_path, blob) != 0)
                st = ellm_fail(EDGELLM_ERR_IO, "cannot move %s to %s: %s", tmp_path, blob,
                               strerror(errno));
            else {
                moved = true;
                char blobs_dir[1200];
                st = ellm_st_path(blobs_dir, sizeof blobs_dir, "%s/blobs/sha256", s->root);
                if (st == EDGELLM_OK)
                    st = ellm_st_fsync_dir(blobs_dir);
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
            v->min_ram_bytes = min_ram;
            ellm_st_escape_controls(from, v->source, sizeof v->source);
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
        st = ellm_st_save_manifest(s, &m);
    if (locked)
        ellm_st_unlock_store(s);
    ellm_store_model_clear(&m);

    if (fd >= 0) {
        if (!moved && !keep_partial)
            unlink(tmp_path);
        close(fd);
    }
    if (st == EDGELLM_OK && installed_version_out)
        snprintf(installed_version_out, cap, "%s", version);
    return st;
}

static edgellm_status set_active(store *s, const char *name, const char *version, bool to_previous,
                                 char *now_active_out, size_t cap)
{
    edgellm_status st = ellm_st_lock_store(s);
    if (st != EDGELLM_OK)
        return st;
    store_model m;
    st = ellm_st_load_manifest(s, name, &m);
    const char *target = version;
    if (st == EDGELLM_OK && to_previous) {
        if (!m.previous[0])
            st = ellm_fail(EDGELLM_ERR_NOT_FOUND, "%s has no previous version to roll back to",
                           name);
        target = m.previous;
    }
    const store_version *v = NULL;
    if (st == EDGELLM_OK) {
        v = ellm_store_model_find(&m, target);
        if (!v)
            st = ellm_fail(EDGELLM_ERR_NOT_FOUND,
                           "%s:%s is not installed (see 'edgellm models info %s')", name, target,
                           name);
    }
    if (st == EDGELLM_OK)
        st = ellm_st_check_blob(s, v, name);
    if (st == EDGELLM_OK && strcmp(m.active, target) != 0) {
        char new_active[STORE_VERSION_MAX];
        snprintf(new_active, sizeof new_active, "%s", target);
        snprintf(m.previous, sizeof m.previous, "%s", m.active);
        snprintf(m.active, sizeof m.active, "%s", new_active);
        st = ellm_st_save_manifest(s, &m);
    }
    if (st == EDGELLM_OK && now_active_out)
        snprintf(now_active_out, cap, "%s", m.active);
    ellm_store_model_clear(&m);
    ellm_st_unlock_store(s);
    return st;
}

edgellm_status ellm_store_activate(store *s, const char *name, const char *version)
{
    return set_active(s, name, version, false, NULL, 0);
}

edgellm_status ellm_store_rollback(store *s, const char *name, char *now_active_out, size_t cap)
{
    return set_active(s, name, NULL, true, now_active_out, cap);
}

edgellm_status ellm_store_pin(store *s, const char *name, bool pinned)
{
    edgellm_status st = ellm_st_lock_store(s);
    if (st != EDGELLM_OK)
        return st;
    store_model m;
    st = ellm_st_load_manifest(s, name, &m);
    if (st == EDGELLM_OK && m.pinned != pinned) {
        m.pinned = pinned;
        st = ellm_st_save_manifest(s, &m);
    }
    ellm_store_model_clear(&m);
    ellm_st_unlock_store(s);
    return st;
}
