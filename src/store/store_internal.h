/* Declarations shared by the store's source files; store.h is the module's API. */
#ifndef EDGELLM_STORE_INTERNAL_H
#define EDGELLM_STORE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

struct store {
    char root[1024];
    int lock_fd; /* open for the store's lifetime; flock()ed around each change */
};

/* snprintf into a fixed buffer; fails (with a message) instead of truncating a path. */
edgellm_status ellm_st_path(char *out, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* fsync()s a directory so a rename inside it survives a power loss. */
edgellm_status ellm_st_fsync_dir(const char *dir);

/* Writes data to dir/<final_name> through a fsynced temporary and one rename. */
edgellm_status ellm_st_write_atomic(const char *dir, const char *final_name, const void *data,
                                    size_t len);

/* The same for a path the user gave (a public key): the file at path is either
 * its old content or data, never a truncated mix (a full disk, a killed process). */
edgellm_status ellm_st_replace_file(const char *path, const void *data, size_t len);

bool ellm_st_is_url(const char *s);

/* The store lock (see store.h): held around every change to manifests or trusted-keys and every
 * deletion. */
edgellm_status ellm_st_lock_store(store *s);
void ellm_st_unlock_store(store *s);

/* Whether s[0..len) is a model name or version: [A-Za-z0-9._-], not starting with '.' or '-'. */
bool ellm_st_valid_token(const char *s, size_t len);
/* Whether s is a SHA-256 as the store writes it: exactly 64 lowercase hex digits. Every reader of
 * a manifest or signature checks with this before the value can become part of a blob path. */
bool ellm_st_valid_sha256(const char *s);
/* Whether s is exactly 2*n_bytes lowercase hex digits (keys and signatures as the store writes
 * them). */
bool ellm_st_valid_hex(const char *s, size_t n_bytes);
/* Whether s holds a control byte (below 0x20, or 0x7f). */
bool ellm_st_has_control(const char *s);
/* Copies text into out (cap bytes, NUL included) with control bytes and '\\' written as \xNN, so
 * it fits on one line of a line-oriented file and cannot drive a terminal; cut between escapes
 * when out is too small. */
void ellm_st_escape_controls(const char *text, char *out, size_t cap);

/* Draws "bytes / total  rate  ETA" on stderr (only called when it is a terminal). */
void ellm_st_progress_draw(const char *label, uint64_t done, uint64_t total, double started);
void ellm_st_progress_done(void);
double ellm_st_now(void);

/* Downloads url into part_path, resuming from what the file already holds and retrying after
 * dropped connections; a server that ignores the Range request restarts the file from byte 0
 * (told through opts->notice). The caller holds an exclusive flock on part_fd. */
edgellm_status ellm_st_download(const char *url, int part_fd, const char *part_path,
                                const store_install_options *opts);
/* The most bytes a signature file may hold (one is under 1 KiB), fetched or read from a file. */
#define STORE_SIGNATURE_MAX (1u << 20)
/* Fetches a small resource (a signature) into a malloc'd NUL-terminated buffer.
 * EDGELLM_ERR_NOT_FOUND for HTTP 404. */
edgellm_status ellm_st_fetch_small(const char *url, char **text_out, size_t *len_out);

/* Hashes an open file from the start. */
edgellm_status ellm_st_sha256_fd(int fd, const char *path_for_errors, char hex_out[STORE_HASH_HEX],
                                 uint64_t *size_out);
/* Decodes exactly 2*n hex digits (either case) into out; false for any other length or byte. */
bool ellm_st_unhex(const char *hex, unsigned char *out, size_t n);

/* Minimum RAM recorded in manifests: the plan at 512 tokens (or the training context when
 * shorter), an F16 cache and one thread; 0 when the model cannot be planned. */
uint64_t ellm_st_min_ram(const edgellm_model *model);

/* ---- shared between the store's parts (store.c, manifest.c, install.c, gc.c) ---------- */

/* The one reader of manifests: every field is checked for the form the store writes before any
 * of it is used; EDGELLM_ERR_NOT_FOUND when the name is not installed. */
edgellm_status ellm_st_load_manifest(store *s, const char *name, store_model *out);
/* Writes a manifest through a fsynced temporary and one rename (the caller holds the lock). */
edgellm_status ellm_st_save_manifest(store *s, const store_model *m);
/* blobs/sha256/<sha>; refuses anything that is not a SHA-256 before it becomes a path. */
edgellm_status ellm_st_blob_path(const store *s, const char *sha, char *out, size_t cap);
/* Re-hashes the blob of one version against its manifest entry. */
edgellm_status ellm_st_check_blob(store *s, const store_version *v, const char *name);
/* Deletes the temporaries in tmp/ that killed installs left (unlocked ones; partial downloads
 * are kept for the rerun that resumes them). Best effort. */
void ellm_st_sweep_stale_temporaries(store *s);

#endif
