/* Turns generated tokens into text that is safe to hand out: only whole UTF-8 characters, and
 * never text that could still become part of a stop string (the stop string itself and everything
 * after it are never emitted). */
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"
#include "core/status.h"
#include "core/utf8.h"
#include "edgellm.h"
#include "tokenizer/tokenizer.h"

typedef struct byte_buf {
    char *buf;
    size_t len, cap;
} byte_buf;

struct edgellm_text_stream {
    const edgellm_model *model;
    char **stops;
    int32_t n_stops;
    byte_buf pending; /* produced, not yet handed out */
    byte_buf out;     /* what the last call handed out */
    int stopped;
};

static bool buf_reserve(byte_buf *b, size_t need)
{
    if (need + 1 <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need + 1)
        cap *= 2;
    char *nb = realloc(b->buf, cap);
    if (!nb)
        return false;
    b->buf = nb;
    b->cap = cap;
    return true;
}

/* Length of the longest suffix of text that is a proper prefix of some stop string. */
static size_t stop_prefix_tail(const char *text, size_t len, char *const *stops, int n_stops)
{
    size_t best = 0;
    for (int s = 0; s < n_stops; s++) {
        size_t sl = strlen(stops[s]);
        for (size_t k = sl > 1 ? sl - 1 : 0; k > best; k--)
            if (k <= len && memcmp(text + len - k, stops[s], k) == 0) {
                best = k;
                break;
            }
    }
    return best;
}

/* Earliest position where a complete stop string occurs, or len. */
static size_t find_stop(const char *text, size_t len, char *const *stops, int n_stops)
{
    size_t first = len;
    for (int s = 0; s < n_stops; s++) {
        size_t sl = strlen(stops[s]);
        if (sl == 0 || sl > len)
            continue;
        for (size_t i = 0; i + sl <= len && i < first; i++)
            if (memcmp(text + i, stops[s], sl) == 0) {
                first = i;
                break;
            }
    }
    return first;
}

edgellm_status edgellm_text_stream_create(const edgellm_model *model,
                                          const char *const *stop_strings, int32_t n_stop_strings,
                                          edgellm_text_stream **out)
{
    if (!out)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "edgellm_text_stream_create: out is NULL");
    *out = NULL;
    if (!model || n_stop_strings < 0 || (n_stop_strings > 0 && !stop_strings))
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "edgellm_text_stream_create: need a model and valid stop strings");
    for (int32_t i = 0; i < n_stop_strings; i++)
        if (!stop_strings[i])
            return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "stop string %d is NULL", (int)i);
    edgellm_text_stream *s = calloc(1, sizeof *s);
    if (!s)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for a text stream");
    s->model = model;
    ellm_model_retain(model);
    if (n_stop_strings > 0) {
        s->stops = calloc((size_t)n_stop_strings, sizeof *s->stops);
        if (!s->stops) {
            free(s);
            return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for stop strings");
        }
        for (int32_t i = 0; i < n_stop_strings; i++) {
            size_t n = strlen(stop_strings[i]);
            s->stops[i] = malloc(n + 1);
            s->n_stops = i + 1;
            if (!s->stops[i]) {
                edgellm_text_stream_free(s);
                return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for stop strings");
            }
            memcpy(s->stops[i], stop_strings[i], n + 1);
        }
    }
    *out = s;
    return EDGELLM_OK;
}

void edgellm_text_stream_free(edgellm_text_stream *s)
{
    if (!s)
        return;
    for (int32_t i = 0; i < s->n_stops; i++)
        free(s->stops[i]);
    free(s->stops);
    free(s->pending.buf);
    free(s->out.buf);
    ellm_model_release(s->model);
    free(s);
}

/* Moves the final part of the pending text to out. */
static edgellm_status release(edgellm_text_stream *s, bool final, const char **text, size_t *len)
{
    char *p = s->pending.buf ? s->pending.buf : "";
    size_t n = s->pending.len;
    size_t stop_at = find_stop(p, n, s->stops, s->n_stops);
    bool hit = stop_at < n;
    size_t ready = hit ? stop_at : n;
    if (!hit && !final) {
        ready -= stop_prefix_tail(p, ready, s->stops, s->n_stops);
        ready -= ellm_utf8_incomplete_tail(p, ready);
    }
    if (!buf_reserve(&s->out, ready))
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for generated text");
    memcpy(s->out.buf, p, ready);
    s->out.len = ready;
    s->out.buf[ready] = '\0';
    if (hit) {
        s->stopped = 1;
        s->pending.len = 0;
    } else {
        memmove(p, p + ready, n - ready);
        s->pending.len = n - ready;
    }
    *text = s->out.buf;
    *len = ready;
    return EDGELLM_OK;
}

edgellm_status edgellm_text_stream_push(edgellm_text_stream *s, edgellm_token token,
                                        const char **text, size_t *len, int *stopped)
{
    if (!s || !text || !len || !stopped)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "edgellm_text_stream_push: bad argument");
    *text = "";
    *len = 0;
    *stopped = s->stopped;
    if (s->stopped)
        return EDGELLM_OK;
    /* Pieces are short; a second call is only needed for an unusually long one. */
    size_t plen = 0;
    edgellm_status st = EDGELLM_ERR_BUFFER_TOO_SMALL;
    for (size_t want = 64; st == EDGELLM_ERR_BUFFER_TOO_SMALL; want = plen) {
        if (!buf_reserve(&s->pending, s->pending.len + want))
            return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for generated text");
        st = edgellm_token_to_piece(s->model, token, s->pending.buf + s->pending.len,
                                    s->pending.cap - s->pending.len, &plen);
    }
    if (st != EDGELLM_OK)
        return st;
    s->pending.len += plen;
    st = release(s, false, text, len);
    *stopped = s->stopped;
    return st;
}

edgellm_status edgellm_text_stream_finish(edgellm_text_stream *s, const char **text, size_t *len)
{
    if (!s || !text || !len)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "edgellm_text_stream_finish: bad argument");
    *text = "";
    *len = 0;
    if (s->stopped)
        return EDGELLM_OK;
    return release(s, true, text, len);
}

int edgellm_text_stream_stopped(const edgellm_text_stream *s) { return s ? s->stopped : 0; }
