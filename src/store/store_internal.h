/* Helpers shared by the store's source files. */
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
edgellm_status st_path(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* fsync()s a directory so a rename inside it survives a power loss. */
edgellm_status st_fsync_dir(const char *dir);

/* Writes data to dir/<final_name> through a fsynced temporary and one rename. */
edgellm_status st_write_atomic(const char *dir, const char *final_name, const void *data, size_t len);

bool st_is_url(const char *s);

/* Draws "bytes / total  rate  ETA" on stderr (only called when it is a terminal). */
void st_progress_draw(const char *label, uint64_t done, uint64_t total, double started);
void st_progress_done(void);
double st_now(void);

/* Downloads url into part_path, resuming from what the file already holds and retrying after
 * dropped connections. The caller holds an exclusive flock on part_fd. */
edgellm_status st_download(const char *url, int part_fd, const char *part_path, bool progress,
                           int max_retries);
/* Fetches a small resource (a signature) into a malloc'd NUL-terminated buffer.
 * EDGELLM_ERR_NOT_FOUND for HTTP 404. */
edgellm_status st_fetch_small(const char *url, char **text_out, size_t *len_out);

/* Hashes an open file from the start. */
edgellm_status st_sha256_fd(int fd, const char *path_for_errors, char hex_out[STORE_HASH_HEX],
                            uint64_t *size_out);
void st_hex(const unsigned char *bytes, size_t n, char *out);
bool st_unhex(const char *hex, unsigned char *out, size_t n);

/* Minimum RAM recorded in manifests: the plan at 512 tokens with an F16 cache. */
uint64_t st_min_ram(const store_model_shape *shape);

#endif
