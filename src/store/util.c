#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/locked_file.h"
#include "core/mapped_file.h"
#include "core/status.h"
#include "store/store_internal.h"

edgellm_status ellm_st_path(char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, cap, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "path too long (limit %zu bytes): %s...",
                         cap, out);
    return EDGELLM_OK;
}

edgellm_status ellm_st_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return ellm_fail(EDGELLM_ERR_IO, "cannot open directory %s: %s", dir, strerror(errno));
    int rc = fsync(fd);
    int err = errno;
    close(fd);
    if (rc != 0 && err != EINVAL) /* some filesystems cannot sync directories; nothing to do */
        return ellm_fail(EDGELLM_ERR_IO, "cannot sync directory %s: %s", dir, strerror(err));
    return EDGELLM_OK;
}

static edgellm_status write_all(int fd, const void *data, size_t len, const char *path)
{
    const unsigned char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int err = errno;
            if (err == ENOSPC || err == EFBIG || err == EDQUOT)
                return ellm_fail(EDGELLM_ERR_IO,
                                 "no space left writing %s (%s): free disk space and retry", path,
                                 strerror(err));
            return ellm_fail(EDGELLM_ERR_IO, "cannot write %s: %s", path, strerror(err));
        }
        p += n;
        len -= (size_t)n;
    }
    return EDGELLM_OK;
}

edgellm_status ellm_st_write_atomic(const char *dir, const char *final_name, const void *data,
                                    size_t len)
{
    char tmp[1200], final_path[1200];
    edgellm_status st = ellm_st_path(tmp, sizeof tmp, "%s/.%s.XXXXXX", dir, final_name);
    if (st == EDGELLM_OK)
        st = ellm_st_path(final_path, sizeof final_path, "%s/%s", dir, final_name);
    if (st != EDGELLM_OK)
        return st;
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return ellm_fail(EDGELLM_ERR_IO, "cannot create a temporary file in %s: %s", dir,
                         strerror(errno));
    st = write_all(fd, data, len, tmp);
    if (st == EDGELLM_OK && fchmod(fd, 0644) != 0)
        st = ellm_fail(EDGELLM_ERR_IO, "cannot chmod %s: %s", tmp, strerror(errno));
    if (st == EDGELLM_OK && fsync(fd) != 0)
        st = ellm_fail(EDGELLM_ERR_IO, "cannot sync %s: %s", tmp, strerror(errno));
    if (close(fd) != 0 && st == EDGELLM_OK)
        st = ellm_fail(EDGELLM_ERR_IO, "cannot close %s: %s", tmp, strerror(errno));
    if (st == EDGELLM_OK && rename(tmp, final_path) != 0)
        st = ellm_fail(EDGELLM_ERR_IO, "cannot rename %s to %s: %s", tmp, final_path,
                       strerror(errno));
    if (st != EDGELLM_OK) {
        unlink(tmp);
        return st;
    }
    return ellm_st_fsync_dir(dir);
}

edgellm_status ellm_st_replace_file(const char *path, const void *data, size_t len)
{
    char refusal[512];
    if (!ellm_replaceable_target(path, refusal, sizeof refusal))
        return ellm_fail(EDGELLM_ERR_IO, "%s", refusal);
    const char *slash = strrchr(path, '/');
    char dir[1100];
    edgellm_status st = slash ? ellm_st_path(dir, sizeof dir, "%.*s",
                                             slash == path ? 1 : (int)(slash - path), path)
                              : ellm_st_path(dir, sizeof dir, ".");
    if (st != EDGELLM_OK)
        return st;
    return ellm_st_write_atomic(dir, slash ? slash + 1 : path, data, len);
}

bool ellm_st_is_url(const char *s)
{
    return strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0;
}

bool ellm_st_valid_token(const char *s, size_t len)
{
    if (len == 0 || s[0] == '.' || s[0] == '-')
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

bool ellm_st_valid_hex(const char *s, size_t n_bytes)
{
    for (size_t i = 0; i < 2 * n_bytes; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false; /* also stops at a NUL before the end */
    return s[2 * n_bytes] == '\0';
}

bool ellm_st_valid_sha256(const char *s) { return ellm_st_valid_hex(s, 32); }

bool ellm_st_has_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return true;
    return false;
}

void ellm_st_escape_controls(const char *text, char *out, size_t cap)
{
    size_t at = 0;
    for (; *text; text++) {
        unsigned char c = (unsigned char)*text;
        bool escape = c < 0x20 || c == 0x7f || c == '\\';
        size_t need = escape ? 4 : 1;
        if (at + need >= cap)
            break;
        if (escape)
            at += (size_t)snprintf(out + at, cap - at, "\\x%02x", c);
        else
            out[at++] = (char)c;
    }
    if (cap > 0)
        out[at] = '\0';
}

double ellm_st_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void human(uint64_t bytes, char *buf, size_t cap)
{
    const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)bytes;
    int u = 0;
    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        u++;
    }
    snprintf(buf, cap, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
}

void ellm_st_progress_draw(const char *label, uint64_t done, uint64_t total, double started)
{
    double elapsed = ellm_st_now() - started;
    double rate = elapsed > 0.05 ? (double)done / elapsed : 0.0;
    char done_s[32], total_s[32], rate_s[32], eta_s[32] = "--";
    human(done, done_s, sizeof done_s);
    human(total, total_s, sizeof total_s);
    human((uint64_t)rate, rate_s, sizeof rate_s);
    if (total > 0 && rate > 0 && done <= total) {
        double eta = (double)(total - done) / rate;
        snprintf(eta_s, sizeof eta_s, "%.0fs", eta);
    }
    char bar[31];
    int filled = total > 0 ? (int)((double)done * 30.0 / (double)total) : 0;
    if (filled > 30)
        filled = 30;
    for (int i = 0; i < 30; i++)
        bar[i] = i < filled ? '#' : '.';
    bar[30] = '\0';
    if (total > 0)
        fprintf(stderr, "\r%s [%s] %s / %s  %s/s  ETA %s   ", label, bar, done_s, total_s, rate_s,
                eta_s);
    else
        fprintf(stderr, "\r%s %s  %s/s   ", label, done_s, rate_s);
    fflush(stderr);
}

void ellm_st_progress_done(void) { fputc('\n', stderr); }

bool ellm_st_unhex(const char *hex, unsigned char *out, size_t n)
{
    size_t decoded = 0;
    return strlen(hex) == 2 * n && sodium_hex2bin(out, n, hex, 2 * n, NULL, &decoded, NULL) == 0 &&
           decoded == n;
}

edgellm_status ellm_st_sha256_fd(int fd, const char *path_for_errors, char hex_out[STORE_HASH_HEX],
                                 uint64_t *size_out)
{
    if (sodium_init() < 0)
        return ellm_fail(EDGELLM_ERR_UNSUPPORTED, "libsodium failed to initialize");
    crypto_hash_sha256_state state;
    crypto_hash_sha256_init(&state);
    enum { CHUNK = 1 << 20 };
    unsigned char *buf = malloc(CHUNK);
    if (!buf)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "out of memory hashing %s", path_for_errors);
    uint64_t total = 0;
    off_t at = 0;
    for (;;) {
        ssize_t n = pread(fd, buf, CHUNK, at);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int err = errno;
            free(buf);
            return ellm_fail(EDGELLM_ERR_IO, "cannot read %s: %s", path_for_errors, strerror(err));
        }
        if (n == 0)
            break;
        crypto_hash_sha256_update(&state, buf, (unsigned long long)n);
        total += (uint64_t)n;
        at += n;
    }
    free(buf);
    unsigned char digest[crypto_hash_sha256_BYTES];
    crypto_hash_sha256_final(&state, digest);
    sodium_bin2hex(hex_out, STORE_HASH_HEX, digest, sizeof digest);
    if (size_out)
        *size_out = total;
    return EDGELLM_OK;
}

edgellm_status ellm_store_sha256_file(const char *path, char hex_out[STORE_HASH_HEX],
                                      uint64_t *size)
{
    int fd = ellm_open_regular(path);
    if (fd < 0)
        return EDGELLM_ERR_IO;
    edgellm_status st = ellm_st_sha256_fd(fd, path, hex_out, size);
    close(fd);
    return st;
}
