/* GGUF v3 writer: metadata and tensor infos are kept in memory, tensor data is streamed to a
 * temporary file that replaces the destination only once it is complete and synced. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/bulk_write.h"
#include "core/locked_file.h"
#include "core/checked_math.h"
#include "core/free_space.h"
#include "core/status.h"
#include "gguf/gguf.h"
#include "gguf/gguf_internal.h"

typedef struct wbuf {
    uint8_t *data;
    size_t len;
    size_t cap;
    bool failed;
} wbuf;

static void wb_put(wbuf *b, const void *p, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *d = realloc(b->data, cap);
        if (!d) {
            b->failed = true;
            return;
        }
        b->data = d;
        b->cap = cap;
    }
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void wb_u32(wbuf *b, uint32_t v)
{
    uint8_t p[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    wb_put(b, p, 4);
}

static void wb_u64(wbuf *b, uint64_t v)
{
    uint8_t p[8];
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
    wb_put(b, p, 8);
}

static void wb_str(wbuf *b, const char *s, uint64_t len)
{
    wb_u64(b, len);
    wb_put(b, s, (size_t)len);
}

typedef struct wkv {
    char *key;
    wbuf encoded; /* type + value, already serialized */
} wkv;

typedef struct wtensor {
    char *name;
    ellm_type type;
    uint32_t n_dims;
    uint64_t ne[GGUF_MAX_DIMS];
    uint64_t n_bytes;
    uint64_t offset;
    const void *data;
    gguf_tensor_fill_fn fill;
    void *user;
} wtensor;

struct gguf_writer {
    wkv *kvs;
    size_t n_kv, cap_kv;
    wtensor *tensors;
    size_t n_tensors, cap_tensors;
    uint32_t alignment;
};

gguf_writer *ellm_gguf_writer_create(void)
{
    gguf_writer *w = calloc(1, sizeof *w);
    if (w)
        w->alignment = GGUF_DEFAULT_ALIGNMENT;
    return w;
}

void ellm_gguf_writer_free(gguf_writer *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kvs[i].key);
        free(w->kvs[i].encoded.data);
    }
    for (size_t i = 0; i < w->n_tensors; i++)
        free(w->tensors[i].name);
    free(w->kvs);
    free(w->tensors);
    free(w);
}

/* Returns the slot for key (new or replaced), its encoding emptied. */
static wkv *kv_slot(gguf_writer *w, const char *key)
{
    if (!key || !*key)
        return NULL;
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kvs[i].key, key) == 0) {
            w->kvs[i].encoded.len = 0;
            w->kvs[i].encoded.failed = false;
            return &w->kvs[i];
        }
    }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? w->cap_kv * 2 : 32;
        wkv *k = realloc(w->kvs, cap * sizeof *k);
        if (!k)
            return NULL;
        w->kvs = k;
        w->cap_kv = cap;
    }
    wkv *kv = &w->kvs[w->n_kv];
    memset(kv, 0, sizeof *kv);
    kv->key = strdup(key);
    if (!kv->key)
        return NULL;
    w->n_kv++;
    return kv;
}

static edgellm_status finish_kv(wkv *kv, const char *key)
{
    if (!key || !*key)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "GGUF metadata key is empty");
    if (!kv || kv->encoded.failed)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for GGUF metadata");
    return EDGELLM_OK;
}

static edgellm_status set_scalar(gguf_writer *w, const char *key, gguf_value_type t,
                                 const void *le_bytes, size_t n)
{
    wkv *kv = kv_slot(w, key);
    if (kv) {
        wb_u32(&kv->encoded, (uint32_t)t);
        wb_put(&kv->encoded, le_bytes, n);
    }
    return finish_kv(kv, key);
}

/* Host values are little-endian on every platform edgellm targets (x86, ARM, WebAssembly). */
#define DEFINE_SETTER(fname, ctype, gtype)                                                         \
    edgellm_status fname(gguf_writer *w, const char *key, ctype v)                                 \
    {                                                                                              \
        return set_scalar(w, key, gtype, &v, sizeof v);                                            \
    }
DEFINE_SETTER(ellm_gguf_writer_set_u8, uint8_t, GGUF_TYPE_UINT8)
DEFINE_SETTER(ellm_gguf_writer_set_i8, int8_t, GGUF_TYPE_INT8)
DEFINE_SETTER(ellm_gguf_writer_set_u16, uint16_t, GGUF_TYPE_UINT16)
DEFINE_SETTER(ellm_gguf_writer_set_i16, int16_t, GGUF_TYPE_INT16)
DEFINE_SETTER(ellm_gguf_writer_set_u32, uint32_t, GGUF_TYPE_UINT32)
DEFINE_SETTER(ellm_gguf_writer_set_i32, int32_t, GGUF_TYPE_INT32)
DEFINE_SETTER(ellm_gguf_writer_set_u64, uint64_t, GGUF_TYPE_UINT64)
DEFINE_SETTER(ellm_gguf_writer_set_i64, int64_t, GGUF_TYPE_INT64)
DEFINE_SETTER(ellm_gguf_writer_set_f32, float, GGUF_TYPE_FLOAT32)
DEFINE_SETTER(ellm_gguf_writer_set_f64, double, GGUF_TYPE_FLOAT64)

edgellm_status ellm_gguf_writer_set_bool(gguf_writer *w, const char *key, bool v)
{
    uint8_t b = v ? 1 : 0;
    return set_scalar(w, key, GGUF_TYPE_BOOL, &b, 1);
}

edgellm_status ellm_gguf_writer_set_str(gguf_writer *w, const char *key, const char *v)
{
    if (!v)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "GGUF metadata '%s': string is NULL",
                         key ? key : "");
    wkv *kv = kv_slot(w, key);
    if (kv) {
        wb_u32(&kv->encoded, GGUF_TYPE_STRING);
        wb_str(&kv->encoded, v, strlen(v));
    }
    return finish_kv(kv, key);
}

edgellm_status ellm_gguf_writer_set_array(gguf_writer *w, const char *key,
                                          gguf_value_type elem_type, const void *data, uint64_t n)
{
    uint64_t size = ellm_gguf_scalar_size(elem_type), bytes;
    if (size == 0 || !ellm_mul_u64(size, n, &bytes) || bytes > SIZE_MAX || (n && !data))
        return ellm_fail(
            EDGELLM_ERR_INVALID_ARGUMENT,
            "ellm_gguf_writer_set_array: '%s' needs a fixed-size element type and data",
            key ? key : "");
    wkv *kv = kv_slot(w, key);
    if (kv) {
        wb_u32(&kv->encoded, GGUF_TYPE_ARRAY);
        wb_u32(&kv->encoded, (uint32_t)elem_type);
        wb_u64(&kv->encoded, n);
        wb_put(&kv->encoded, data, (size_t)bytes);
    }
    return finish_kv(kv, key);
}

edgellm_status ellm_gguf_writer_set_str_array(gguf_writer *w, const char *key,
                                              const char *const *strings, uint64_t n)
{
    /* Checked before the key's slot is touched, so a refused call leaves no half-written kv. */
    for (uint64_t i = 0; i < n; i++)
        if (!strings || !strings[i])
            return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                             "GGUF metadata '%s': string %llu is NULL", key ? key : "",
                             (unsigned long long)i);
    wkv *kv = kv_slot(w, key);
    if (kv) {
        wb_u32(&kv->encoded, GGUF_TYPE_ARRAY);
        wb_u32(&kv->encoded, GGUF_TYPE_STRING);
        wb_u64(&kv->encoded, n);
        for (uint64_t i = 0; i < n; i++)
            wb_str(&kv->encoded, strings[i], strlen(strings[i]));
    }
    return finish_kv(kv, key);
}

/* Serializes a parsed value without its type tag (the caller writes that). */
static void encode_value_body(wbuf *b, const gguf_value *v)
{
    if (v->type == GGUF_TYPE_STRING) {
        wb_str(b, v->v.str.data, v->v.str.len);
        return;
    }
    if (v->type != GGUF_TYPE_ARRAY) {
        uint64_t size = ellm_gguf_scalar_size(v->type);
        uint8_t p[8];
        uint64_t u = 0;
        if (v->type == GGUF_TYPE_FLOAT32) {
            float f = (float)v->v.f64;
            uint32_t u32;
            memcpy(&u32, &f, 4);
            u = u32;
        } else if (v->type == GGUF_TYPE_FLOAT64) {
            memcpy(&u, &v->v.f64, 8);
        } else if (v->type == GGUF_TYPE_BOOL) {
            u = v->v.b;
        } else if (v->type == GGUF_TYPE_INT8 || v->type == GGUF_TYPE_INT16 ||
                   v->type == GGUF_TYPE_INT32 || v->type == GGUF_TYPE_INT64) {
            u = (uint64_t)v->v.i64;
        } else {
            u = v->v.u64;
        }
        for (uint64_t i = 0; i < size; i++)
            p[i] = (uint8_t)(u >> (8 * i));
        wb_put(b, p, (size_t)size);
        return;
    }
    const gguf_array *a = &v->v.arr;
    wb_u32(b, (uint32_t)a->elem_type);
    wb_u64(b, a->n);
    if (a->elem_type == GGUF_TYPE_STRING) {
        for (uint64_t i = 0; i < a->n; i++)
            wb_str(b, a->strings[i].data, a->strings[i].len);
    } else if (a->elem_type == GGUF_TYPE_ARRAY) {
        for (uint64_t i = 0; i < a->n; i++)
            encode_value_body(b, &a->items[i]);
    } else {
        wb_put(b, a->raw, (size_t)(a->n * ellm_gguf_scalar_size(a->elem_type)));
    }
}

edgellm_status ellm_gguf_writer_set_value(gguf_writer *w, const char *key, const gguf_value *value)
{
    wkv *kv = kv_slot(w, key);
    if (kv) {
        wb_u32(&kv->encoded, (uint32_t)value->type);
        encode_value_body(&kv->encoded, value);
    }
    return finish_kv(kv, key);
}

edgellm_status ellm_gguf_writer_set_alignment(gguf_writer *w, uint32_t alignment)
{
    if (alignment == 0 || (alignment & (alignment - 1)) != 0)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "alignment %u is not a power of two",
                         alignment);
    w->alignment = alignment;
    return ellm_gguf_writer_set_u32(w, "general.alignment", alignment);
}

static edgellm_status add_tensor(gguf_writer *w, const char *name, ellm_type type, uint32_t n_dims,
                                 const uint64_t *ne, const void *data, gguf_tensor_fill_fn fill,
                                 void *user)
{
    if (!name || !*name || n_dims < 1 || n_dims > GGUF_MAX_DIMS)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "tensor '%s': needs a name and 1..4 dims",
                         name ? name : "");
    for (size_t i = 0; i < w->n_tensors; i++)
        if (strcmp(w->tensors[i].name, name) == 0)
            return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "tensor '%s' added twice", name);
    const ellm_type_traits *tr = ellm_type_traits_of(type);
    if (!tr)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "tensor '%s': unknown type %d", name,
                         (int)type);
    uint64_t n_el = 1;
    for (uint32_t d = 0; d < n_dims; d++)
        if (ne[d] == 0 || !ellm_mul_u64(n_el, ne[d], &n_el))
            return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "tensor '%s': bad dimensions", name);
    if (ne[0] % tr->block_size != 0)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "tensor '%s': row length %llu is not a multiple of the %s block size %u",
                         name, (unsigned long long)ne[0], tr->name, tr->block_size);
    if (w->n_tensors == w->cap_tensors) {
        size_t cap = w->cap_tensors ? w->cap_tensors * 2 : 64;
        wtensor *t = realloc(w->tensors, cap * sizeof *t);
        if (!t)
            return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for tensor infos");
        w->tensors = t;
        w->cap_tensors = cap;
    }
    wtensor *t = &w->tensors[w->n_tensors];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    if (!t->name)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for tensor infos");
    t->type = type;
    t->n_dims = n_dims;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++)
        t->ne[d] = d < n_dims ? ne[d] : 1;
    if (!ellm_mul_u64(n_el / tr->block_size, tr->block_bytes, &t->n_bytes) ||
        t->n_bytes > SIZE_MAX) {
        free(t->name);
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "tensor '%s': byte size overflows", name);
    }
    t->data = data;
    t->fill = fill;
    t->user = user;
    w->n_tensors++;
    return EDGELLM_OK;
}

edgellm_status ellm_gguf_writer_add_tensor(gguf_writer *w, const char *name, ellm_type type,
                                           uint32_t n_dims, const uint64_t *ne, const void *data)
{
    return add_tensor(w, name, type, n_dims, ne, data, NULL, NULL);
}

edgellm_status ellm_gguf_writer_add_tensor_fill(gguf_writer *w, const char *name, ellm_type type,
                                                uint32_t n_dims, const uint64_t *ne,
                                                gguf_tensor_fill_fn fill, void *user)
{
    return add_tensor(w, name, type, n_dims, ne, NULL, fill, user);
}

static edgellm_status write_all(ellm_bulk_writer *out, const void *p, size_t n, const char *path)
{
    int err = ellm_bulk_write(out, p, n);
    if (err)
        return ellm_fail(EDGELLM_ERR_IO, "writing '%s' failed: %s", path, strerror(err));
    return EDGELLM_OK;
}

static edgellm_status write_padding(ellm_bulk_writer *out, uint64_t n, const char *path)
{
    static const uint8_t zeros[64];
    while (n > 0) {
        size_t k = n > sizeof zeros ? sizeof zeros : (size_t)n;
        edgellm_status st = write_all(out, zeros, k, path);
        if (st != EDGELLM_OK)
            return st;
        n -= k;
    }
    return EDGELLM_OK;
}

static edgellm_status write_body(gguf_writer *w, ellm_bulk_writer *out, const char *path)
{
    wbuf head = {0};
    wb_put(&head, GGUF_MAGIC, 4);
    wb_u32(&head, 3);
    wb_u64(&head, w->n_tensors);
    wb_u64(&head, w->n_kv);
    for (size_t i = 0; i < w->n_kv; i++) {
        wb_str(&head, w->kvs[i].key, strlen(w->kvs[i].key));
        wb_put(&head, w->kvs[i].encoded.data, w->kvs[i].encoded.len);
    }
    uint64_t offset = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        wtensor *t = &w->tensors[i];
        t->offset = offset;
        wb_str(&head, t->name, strlen(t->name));
        wb_u32(&head, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++)
            wb_u64(&head, t->ne[d]);
        wb_u32(&head, (uint32_t)t->type);
        wb_u64(&head, t->offset);
        ellm_align_up_u64(offset + t->n_bytes, w->alignment, &offset);
    }
    if (head.failed) {
        free(head.data);
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the GGUF header");
    }
    uint64_t aligned;
    ellm_align_up_u64(head.len, w->alignment, &aligned);
    edgellm_status st = write_all(out, head.data, head.len, path);
    free(head.data);
    if (st == EDGELLM_OK)
        st = write_padding(out, aligned - head.len, path);
    /* A fill callback produces one tensor at a time into a buffer freed right after, so peak
     * memory is the largest tensor, not the model. */
    for (size_t i = 0; i < w->n_tensors && st == EDGELLM_OK; i++) {
        wtensor *t = &w->tensors[i];
        if (t->fill) {
            void *buf = malloc(t->n_bytes ? (size_t)t->n_bytes : 1);
            if (!buf) {
                st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory to write tensor '%s'",
                               t->name);
                break;
            }
            st = t->fill(t->user, buf, t->n_bytes);
            if (st != EDGELLM_OK)
                st = ellm_fail_wrap(st, "producing tensor '%s'", t->name);
            else
                st = write_all(out, buf, (size_t)t->n_bytes, path);
            free(buf);
        } else {
            st = write_all(out, t->data, (size_t)t->n_bytes, path);
        }
        uint64_t padded;
        ellm_align_up_u64(t->n_bytes, w->alignment, &padded);
        if (st == EDGELLM_OK && i + 1 < w->n_tensors)
            st = write_padding(out, padded - t->n_bytes, path);
    }
    return st;
}

/* Refused before the first byte is written: a file larger than its file system's free space
 * (synth --dims with a digit too many asks for terabytes) would fill the disk for every other
 * program until the write failed. The tensor data is nearly all of a file; the header is not
 * counted. Where the free space cannot be read, the write goes ahead as before. */
static edgellm_status check_free_space(const gguf_writer *w, int fd, const char *path)
{
    uint64_t need = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        uint64_t padded;
        if (!ellm_align_up_u64(w->tensors[i].n_bytes, w->alignment, &padded) ||
            !ellm_add_u64(need, padded, &need))
            need = UINT64_MAX;
    }
    uint64_t free_bytes = 0;
    if (ellm_fits_free_space(fd, need, &free_bytes))
        return EDGELLM_OK;
    return ellm_fail(EDGELLM_ERR_IO,
                     "'%s' would hold %.2f GiB of tensors but its file system has %.2f GiB free; "
                     "nothing was written: free space or write it elsewhere",
                     path, (double)need / 1073741824.0, (double)free_bytes / 1073741824.0);
}

edgellm_status ellm_gguf_writer_write(gguf_writer *w, const char *path)
{
    char refusal[512];
    if (!ellm_replaceable_target(path, refusal, sizeof refusal))
        return ellm_fail(EDGELLM_ERR_IO, "%s", refusal);
    size_t n = strlen(path);
    char *tmp = malloc(n + 48);
    if (!tmp)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory");
    ellm_sweep_dead_temporaries(path);
    int fd = ellm_create_locked_temporary(path, tmp, n + 48);
    if (fd < 0) {
        edgellm_status st = ellm_fail(EDGELLM_ERR_IO, "cannot create '%s': %s", tmp,
                                      strerror(errno));
        free(tmp);
        return st;
    }
    /* One bulk writer for header, padding and tensors: the file is created in 8 MiB writes, so
     * the page cache holds it in 2 MiB folios (docs/performance.md, "Session 8: huge pages"). */
    ellm_bulk_writer out;
    ellm_bulk_writer_init(&out, fd, 0);
    edgellm_status st = check_free_space(w, fd, path);
    if (st == EDGELLM_OK)
        st = write_body(w, &out, path);
    if (st == EDGELLM_OK) {
        int err = ellm_bulk_writer_flush(&out);
        if (err)
            st = ellm_fail(EDGELLM_ERR_IO, "writing '%s' failed: %s", path, strerror(err));
    }
    ellm_bulk_writer_free(&out);
    if (st == EDGELLM_OK && fsync(fd) != 0)
        st = ellm_fail(EDGELLM_ERR_IO, "syncing '%s' failed: %s", tmp, strerror(errno));
    if (close(fd) != 0 && st == EDGELLM_OK)
        st = ellm_fail(EDGELLM_ERR_IO, "closing '%s' failed: %s", tmp, strerror(errno));
    if (st == EDGELLM_OK && rename(tmp, path) != 0)
        st = ellm_fail(EDGELLM_ERR_IO, "cannot rename '%s' to '%s': %s", tmp, path,
                       strerror(errno));
    if (st != EDGELLM_OK)
        unlink(tmp);
    else
        ellm_sync_parent_directory(path);
    free(tmp);
    return st;
}
