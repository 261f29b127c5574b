/* HTTP(S) downloads with libcurl: resumable (Range requests continue what the partial file
 * holds), retried after dropped connections and short bodies, and failing fast with a clear
 * message when the disk is full. */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/bulk_write.h"
#include "core/free_space.h"
#include "core/status.h"
#include "store/store_internal.h"

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

typedef struct download {
    int fd;
    const char *path;
    const char *url;
    uint64_t start;  /* bytes the file held when this attempt began */
    uint64_t offset; /* where the next byte goes */
    /* curl hands over 16 KiB pieces; staged into 8 MiB writes the file is cached in 2 MiB folios
     * (core/bulk_write.h), which the model's mapping then covers with 2 MiB TLB entries. */
    ellm_bulk_writer out;
    double staged_since;  /* when out last reached the file */
    uint64_t staged_from; /* out's file offset then */
    bool checked_status;
    bool write_failed;
    int write_errno;       /* the write error (0: none, or one already reported) */
    uint64_t announced;    /* a body refused for its Content-Length (0: none) */
    uint64_t free_on_disk; /* the free space it was refused for */
    bool progress;
    const store_install_options *opts;
    double started;
    double last_draw;
    uint64_t shown_total;
    CURL *curl;
} download;

static void notice(const store_install_options *opts, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void notice(const store_install_options *opts, const char *fmt, ...)
{
    if (!opts->notice)
        return;
    char message[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    opts->notice(opts->notice_user, message);
}

/* What the partial file held is not a prefix the server will continue: empty it. */
static edgellm_status restart_from_zero(int fd, const char *path)
{
    if (ftruncate(fd, 0) != 0)
        return ellm_fail(EDGELLM_ERR_IO, "cannot truncate %s: %s", path, strerror(errno));
    return EDGELLM_OK;
}

/* How long received bytes may wait in memory before they are written. */
static const double STAGE_SECONDS = 0.2;

static size_t on_body(char *data, size_t size, size_t nmemb, void *user)
{
    download *d = user;
    size_t len = size * nmemb;
    if (!d->checked_status) {
        d->checked_status = true;
        long code = 0;
        curl_easy_getinfo(d->curl, CURLINFO_RESPONSE_CODE, &code);
        if (code == 200 && d->offset > 0) {
            /* The server ignored our Range and sends the whole body: take it from byte 0. */
            if (restart_from_zero(d->fd, d->path) != EDGELLM_OK) {
                d->write_failed = true;
                return 0;
            }
            notice(d->opts,
                   "%s ignored the request to resume at byte %llu (HTTP 200 instead of "
                   "206): downloading it again from byte 0",
                   d->url, (unsigned long long)d->offset);
            d->offset = d->start = 0;
            ellm_bulk_writer_free(&d->out); /* nothing is staged before the first piece */
            ellm_bulk_writer_init(&d->out, d->fd, 0);
            d->staged_from = 0;
        }
        /* A body larger than the free space would fill the disk for every other program before
         * failing: refused on its Content-Length, before a byte is written. */
        curl_off_t body_len = -1;
        curl_easy_getinfo(d->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &body_len);
        if (body_len > 0 && !ellm_fits_free_space(d->fd, (uint64_t)body_len, &d->free_on_disk)) {
            d->announced = (uint64_t)body_len;
            return 0;
        }
    }
    int err = ellm_bulk_write(&d->out, data, len);
    double now = ellm_st_now();
    if (d->out.offset != d->staged_from) {
        d->staged_from = d->out.offset;
        d->staged_since = now;
    } else if (!err && now - d->staged_since > STAGE_SECONDS) {
        /* A slow download is written as it comes, so a killed install loses little: downloads
         * below CHUNK / STAGE_SECONDS (40 MB/s) do not get 2 MiB folios, faster ones do. */
        err = ellm_bulk_writer_flush(&d->out);
        d->staged_from = d->out.offset;
        d->staged_since = now;
    }
    d->offset = ellm_bulk_writer_offset(&d->out);
    if (err) {
        d->write_failed = true;
        d->write_errno = err;
        return 0;
    }
    return len;
}

static int on_progress(void *user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    download *d = user;
    double now = ellm_st_now();
    if (d->progress && now - d->last_draw >= 0.1) {
        d->last_draw = now;
        d->shown_total = dltotal > 0 ? d->start + (uint64_t)dltotal : 0;
        ellm_st_progress_draw("downloading", d->start + (uint64_t)dlnow, d->shown_total,
                              d->started);
    }
    return 0;
}

static CURL *new_handle(const char *url)
{
    pthread_once(&curl_once, curl_init_once);
    CURL *c = curl_easy_init();
    if (!c)
        return NULL;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 20L);
    /* A connection that delivers nothing for 30 s counts as dropped and is retried. */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 30L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "edgellm-store/1");
    return c;
}

static bool transient(CURLcode rc)
{
    return rc == CURLE_PARTIAL_FILE || rc == CURLE_RECV_ERROR || rc == CURLE_SEND_ERROR ||
           rc == CURLE_GOT_NOTHING || rc == CURLE_OPERATION_TIMEDOUT ||
           rc == CURLE_COULDNT_CONNECT || rc == CURLE_HTTP2_STREAM;
}

static bool disk_full(int err) { return err == ENOSPC || err == EFBIG || err == EDQUOT; }

edgellm_status ellm_st_download(const char *url, int part_fd, const char *part_path,
                                const store_install_options *opts)
{
    int max_retries = opts->max_retries == 0 ? 5 : opts->max_retries < 0 ? 0 : opts->max_retries;
    bool progress = opts->progress;
    double started = ellm_st_now();
    char last_problem[256] = "";
    for (int attempt = 0; attempt <= max_retries; attempt++) {
        struct stat sb;
        if (fstat(part_fd, &sb) != 0)
            return ellm_fail(EDGELLM_ERR_IO, "cannot stat %s: %s", part_path, strerror(errno));
        download d = {.fd = part_fd,
                      .path = part_path,
                      .url = url,
                      .start = (uint64_t)sb.st_size,
                      .offset = (uint64_t)sb.st_size,
                      .progress = progress,
                      .opts = opts,
                      .started = started};
        ellm_bulk_writer_init(&d.out, part_fd, d.start);
        d.staged_from = d.start;
        d.staged_since = started;
        d.curl = new_handle(url);
        if (!d.curl)
            return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "cannot create a download handle");
        curl_easy_setopt(d.curl, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(d.curl, CURLOPT_WRITEDATA, &d);
        curl_easy_setopt(d.curl, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(d.curl, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(d.curl, CURLOPT_XFERINFODATA, &d);
        /* A plain Range header rather than CURLOPT_RESUME_FROM: with that, libcurl fails a 200
         * answer itself (CURLE_RANGE_ERROR), or takes a body the size of what we hold as already
         * complete; this way on_body sees the 200 and starts the file over. */
        char range[32];
        if (d.start > 0) {
            snprintf(range, sizeof range, "%llu-", (unsigned long long)d.start);
            curl_easy_setopt(d.curl, CURLOPT_RANGE, range);
        }
        CURLcode rc = curl_easy_perform(d.curl);
        long code = 0;
        curl_off_t body_len = -1;
        curl_easy_getinfo(d.curl, CURLINFO_RESPONSE_CODE, &code);
        curl_easy_getinfo(d.curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &body_len);
        curl_easy_cleanup(d.curl);
        /* Also after a dropped connection: the next attempt resumes from what the file holds. */
        if (!d.write_failed) {
            int err = ellm_bulk_writer_flush(&d.out);
            if (err) {
                d.write_failed = true;
                d.write_errno = err;
            }
        }
        ellm_bulk_writer_free(&d.out);
        if (progress && d.last_draw > 0)
            ellm_st_progress_done();

        if (d.announced)
            return ellm_fail(EDGELLM_ERR_IO,
                             "%s is %.2f MiB (%llu bytes to download) but the store's file system "
                             "has %.2f MiB free; nothing was downloaded: free space and rerun the "
                             "install",
                             url, (double)(d.start + d.announced) / 1048576.0,
                             (unsigned long long)d.announced, (double)d.free_on_disk / 1048576.0);
        if (d.write_failed) {
            /* Retrying cannot help, and a full disk should get its space back. */
            bool emptied = ftruncate(part_fd, 0) == 0;
            if (!d.write_errno) /* already reported */
                return EDGELLM_ERR_IO;
            if (!disk_full(d.write_errno))
                return ellm_fail(EDGELLM_ERR_IO, "cannot write %s: %s", part_path,
                                 strerror(d.write_errno));
            return ellm_fail(EDGELLM_ERR_IO,
                             "disk full while downloading %s (%s) after %llu bytes; %s: free "
                             "space and rerun the install",
                             url, strerror(d.write_errno), (unsigned long long)d.offset,
                             emptied ? "the partial download was deleted to give the space back"
                                     : "the partial download could not be emptied");
        }
        if (rc == CURLE_OK) {
            if (body_len >= 0 && d.offset != d.start + (uint64_t)body_len) {
                snprintf(last_problem, sizeof last_problem, "short body (%llu of %llu bytes)",
                         (unsigned long long)(d.offset - d.start), (unsigned long long)body_len);
            } else {
                if (fsync(part_fd) != 0)
                    return ellm_fail(EDGELLM_ERR_IO, "cannot sync %s: %s", part_path,
                                     strerror(errno));
                return EDGELLM_OK;
            }
        } else if (d.start > 0 &&
                   ((rc == CURLE_HTTP_RETURNED_ERROR && code == 416) || rc == CURLE_RANGE_ERROR)) {
            /* What we hold is not a prefix the server will continue: start over at once (the
             * next request asks for no range, so this cannot repeat). */
            edgellm_status st = restart_from_zero(part_fd, part_path);
            if (st != EDGELLM_OK)
                return st;
            notice(opts, "%s did not resume at byte %llu (%s): downloading it again from byte 0",
                   url, (unsigned long long)d.start,
                   rc == CURLE_RANGE_ERROR ? "range not delivered" : "HTTP 416");
            attempt--;
            continue;
        } else if (rc == CURLE_HTTP_RETURNED_ERROR) {
            return ellm_fail(code == 404 ? EDGELLM_ERR_NOT_FOUND : EDGELLM_ERR_IO,
                             "download of %s failed: HTTP %ld", url, code);
        } else if (transient(rc)) {
            snprintf(last_problem, sizeof last_problem, "%s at byte %llu", curl_easy_strerror(rc),
                     (unsigned long long)d.offset);
        } else {
            return ellm_fail(EDGELLM_ERR_IO, "download of %s failed: %s", url,
                             curl_easy_strerror(rc));
        }
        if (attempt < max_retries) {
            struct timespec pause = {0, 100000000L * (attempt + 1)};
            nanosleep(&pause, NULL);
        }
    }
    struct stat held;
    bool kept = fstat(part_fd, &held) == 0 && held.st_size > 0;
    return ellm_fail(EDGELLM_ERR_IO,
                     "download of %s did not complete after %d attempts (last: %s); %s", url,
                     max_retries + 1, last_problem,
                     kept ? "the partial file is kept, rerun the install to resume"
                          : "nothing was received to keep, rerun the install to try again");
}

typedef struct membuf {
    char *data;
    size_t len;
    bool too_big;
} membuf;

static size_t on_small_body(char *data, size_t size, size_t nmemb, void *user)
{
    membuf *m = user;
    size_t len = size * nmemb;
    if (m->len + len > STORE_SIGNATURE_MAX) {
        m->too_big = true;
        return 0;
    }
    char *grown = realloc(m->data, m->len + len + 1);
    if (!grown)
        return 0;
    m->data = grown;
    memcpy(m->data + m->len, data, len);
    m->len += len;
    m->data[m->len] = '\0';
    return len;
}

edgellm_status ellm_st_fetch_small(const char *url, char **text_out, size_t *len_out)
{
    *text_out = NULL;
    CURLcode rc = CURLE_OK;
    long code = 0;
    for (int attempt = 0; attempt < 4; attempt++) {
        membuf m = {0};
        CURL *c = new_handle(url);
        if (!c)
            return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "cannot create a download handle");
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_small_body);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &m);
        rc = curl_easy_perform(c);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
        curl_easy_cleanup(c);
        if (rc == CURLE_OK) {
            if (!m.data) {
                m.data = calloc(1, 1);
                if (!m.data)
                    return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "out of memory");
            }
            *text_out = m.data;
            *len_out = m.len;
            return EDGELLM_OK;
        }
        free(m.data);
        if (m.too_big)
            return ellm_fail(EDGELLM_ERR_FORMAT, "%s is larger than 1 MiB: not a signature", url);
        if (rc == CURLE_HTTP_RETURNED_ERROR && code == 404)
            return ellm_fail(EDGELLM_ERR_NOT_FOUND, "%s: HTTP 404", url);
        if (!transient(rc))
            break;
    }
    if (rc == CURLE_HTTP_RETURNED_ERROR)
        return ellm_fail(EDGELLM_ERR_IO, "fetching %s failed: HTTP %ld", url, code);
    return ellm_fail(EDGELLM_ERR_IO, "fetching %s failed: %s", url, curl_easy_strerror(rc));
}
