/* GGUF parser. Reads through a bounds-checked cursor; every length and count is checked against
 * the bytes that remain before anything is allocated or dereferenced. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/checked_math.h"
#include "core/mapped_file.h"
#include "core/status.h"
#include "core/utf8.h"
#include "gguf/gguf.h"
#include "gguf/gguf_internal.h"

#define GGUF_MAX_ARRAY_DEPTH 8

typedef struct cursor {
    const uint8_t *base;
    uint64_t size;
    uint64_t pos;
    const char *what; /* section being read, for messages */
} cursor;

static edgellm_status truncated(const cursor *c, uint64_t need)
{
    return ellm_fail(EDGELLM_ERR_FORMAT,
                     "file is truncated: reading %s needs %llu bytes at offset %llu but only "
                     "%llu remain (file size %llu); re-download or re-convert the model",
                     c->what, (unsigned long long)need, (unsigned long long)c->pos,
                     (unsigned long long)(c->size - c->pos), (unsigned long long)c->size);
}

static edgellm_status take(cursor *c, uint64_t n, const uint8_t **out)
{
    if (n > c->size - c->pos)
        return truncated(c, n);
    *out = c->base + c->pos;
    c->pos += n;
    return EDGELLM_OK;
}

static edgellm_status read_u32(cursor *c, uint32_t *out)
{
    const uint8_t *p = NULL;
    edgellm_status st = take(c, 4, &p);
    if (st == EDGELLM_OK)
        *out = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    return st;
}

static uint64_t load_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static edgellm_status read_u64(cursor *c, uint64_t *out)
{
    const uint8_t *p = NULL;
    edgellm_status st = take(c, 8, &p);
    if (st == EDGELLM_OK)
        *out = load_u64(p);
    return st;
}

static edgellm_status read_str(cursor *c, gguf_str *out)
{
    uint64_t len;
    edgellm_status st = read_u64(c, &len);
    if (st != EDGELLM_OK)
        return st;
    const uint8_t *p = NULL;
    st = take(c, len, &p);
    if (st != EDGELLM_OK)
        return st;
    out->len = len;
    out->data = (const char *)p;
    return EDGELLM_OK;
}

static uint64_t scalar_size(gguf_value_type t)
{
    switch (t) {
    case GGUF_TYPE_UINT8:
    case GGUF_TYPE_INT8:
    case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16:
    case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32:
    case GGUF_TYPE_INT32:
    case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64:
    case GGUF_TYPE_INT64:
    case GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

uint64_t ellm_gguf_scalar_size(gguf_value_type t) { return scalar_size(t); }

/* Decodes a fixed-size scalar at p into a value. */
static void decode_scalar(gguf_value_type t, const uint8_t *p, gguf_value *v)
{
    v->type = t;
    switch (t) {
    case GGUF_TYPE_UINT8: v->v.u64 = p[0]; break;
    case GGUF_TYPE_INT8: v->v.i64 = (int8_t)p[0]; break;
    case GGUF_TYPE_BOOL: v->v.b = p[0] != 0; break;
    case GGUF_TYPE_UINT16: v->v.u64 = (uint16_t)(p[0] | p[1] << 8); break;
    case GGUF_TYPE_INT16: v->v.i64 = (int16_t)(uint16_t)(p[0] | p[1] << 8); break;
    case GGUF_TYPE_UINT32:
    case GGUF_TYPE_INT32:
    case GGUF_TYPE_FLOAT32: {
        uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                     (uint32_t)p[3] << 24;
        if (t == GGUF_TYPE_UINT32)
            v->v.u64 = u;
        else if (t == GGUF_TYPE_INT32)
            v->v.i64 = (int32_t)u;
        else {
            float f;
            memcpy(&f, &u, 4);
            v->v.f64 = f;
        }
        break;
    }
    case GGUF_TYPE_UINT64: v->v.u64 = load_u64(p); break;
    case GGUF_TYPE_INT64: v->v.i64 = (int64_t)load_u64(p); break;
    case GGUF_TYPE_FLOAT64: {
        uint64_t u = load_u64(p);
        memcpy(&v->v.f64, &u, 8);
        break;
    }
    default: break;
    }
}

static void free_value(gguf_value *v)
{
    if (v->type != GGUF_TYPE_ARRAY)
        return;
    free(v->v.arr.strings);
    if (v->v.arr.items) {
        for (uint64_t i = 0; i < v->v.arr.n; i++)
            free_value(&v->v.arr.items[i]);
        free(v->v.arr.items);
    }
    v->v.arr.strings = NULL;
    v->v.arr.items = NULL;
}

static edgellm_status read_value(cursor *c, gguf_value_type type, gguf_value *out, int depth);

static edgellm_status read_array(cursor *c, gguf_value *out, int depth)
{
    if (depth >= GGUF_MAX_ARRAY_DEPTH)
        return ellm_fail(EDGELLM_ERR_FORMAT, "%s: arrays nested deeper than %d levels", c->what,
                         GGUF_MAX_ARRAY_DEPTH);
    uint32_t et;
    uint64_t n;
    edgellm_status st = read_u32(c, &et);
    if (st == EDGELLM_OK)
        st = read_u64(c, &n);
    if (st != EDGELLM_OK)
        return st;
    if (et >= GGUF_TYPE_COUNT)
        return ellm_fail(EDGELLM_ERR_FORMAT, "%s: array element type %u is not a GGUF type",
                         c->what, et);
    gguf_array *arr = &out->v.arr;
    out->type = GGUF_TYPE_ARRAY;
    arr->elem_type = (gguf_value_type)et;
    arr->n = 0;
    arr->raw = NULL;
    arr->strings = NULL;
    arr->items = NULL;
    uint64_t remaining = c->size - c->pos;
    uint64_t esize = scalar_size(arr->elem_type);
    if (esize) {
        uint64_t bytes;
        if (!ellm_mul_u64(n, esize, &bytes) || bytes > remaining)
            return ellm_fail(EDGELLM_ERR_FORMAT,
                             "%s: array of %llu %s elements needs more bytes than the %llu left in "
                             "the file; it is truncated or corrupt",
                             c->what, (unsigned long long)n,
                             ellm_gguf_value_type_name(arr->elem_type),
                             (unsigned long long)remaining);
        st = take(c, bytes, &arr->raw);
        if (st == EDGELLM_OK)
            arr->n = n;
        return st;
    }
    /* Strings need at least 8 bytes each, nested arrays 12: bound n before allocating. */
    uint64_t min_elem = arr->elem_type == GGUF_TYPE_STRING ? 8 : 12;
    if (n > remaining / min_elem)
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "%s: array claims %llu elements but only %llu bytes are left in the "
                         "file; it is truncated or corrupt",
                         c->what, (unsigned long long)n, (unsigned long long)remaining);
    if (n == 0)
        return EDGELLM_OK;
    if (arr->elem_type == GGUF_TYPE_STRING) {
        arr->strings = calloc(n, sizeof *arr->strings);
        if (!arr->strings)
            return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "%s: no memory for %llu strings", c->what,
                             (unsigned long long)n);
        arr->n = n;
        for (uint64_t i = 0; i < n; i++) {
            st = read_str(c, &arr->strings[i]);
            if (st != EDGELLM_OK)
                return st;
        }
        return EDGELLM_OK;
    }
    arr->items = calloc(n, sizeof *arr->items);
    if (!arr->items)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "%s: no memory for %llu arrays", c->what,
                         (unsigned long long)n);
    arr->n = n;
    for (uint64_t i = 0; i < n; i++) {
        arr->items[i].type = GGUF_TYPE_ARRAY; /* so free_value handles partial parses */
        arr->items[i].v.arr.n = 0;
        arr->items[i].v.arr.strings = NULL;
        arr->items[i].v.arr.items = NULL;
    }
    for (uint64_t i = 0; i < n; i++) {
        st = read_value(c, GGUF_TYPE_ARRAY, &arr->items[i], depth + 1);
        if (st != EDGELLM_OK)
            return st;
    }
    return EDGELLM_OK;
}

static edgellm_status read_value(cursor *c, gguf_value_type type, gguf_value *out, int depth)
{
    if (type == GGUF_TYPE_ARRAY)
        return read_array(c, out, depth);
    out->type = type;
    if (type == GGUF_TYPE_STRING)
        return read_str(c, &out->v.str);
    uint64_t size = scalar_size(type);
    if (size == 0)
        return ellm_fail(EDGELLM_ERR_FORMAT, "%s: value type %u is not a GGUF type", c->what,
                         (unsigned)type);
    const uint8_t *p = NULL;
    edgellm_status st = take(c, size, &p);
    if (st != EDGELLM_OK)
        return st;
    if (type == GGUF_TYPE_BOOL && p[0] > 1)
        return ellm_fail(EDGELLM_ERR_FORMAT, "%s: boolean value %u is neither 0 nor 1", c->what,
                         p[0]);
    decode_scalar(type, p, out);
    return EDGELLM_OK;
}

void ellm_gguf_close(gguf_file *f)
{
    if (!f)
        return;
    if (f->kvs) {
        for (uint64_t i = 0; i < f->n_kv; i++)
            free_value(&f->kvs[i].value);
        free(f->kvs);
    }
    free(f->tensors);
    free(f->tensor_order);
    if (f->owns_mapping)
        ellm_unmap_file(&f->mapping);
    free(f);
}

static int compare_by_offset(const void *a, const void *b, void *ctx);

/* qsort_r is not C11; sort indices with a small merge sort instead. */
static void sort_tensor_order(gguf_file *f)
{
    uint64_t n = f->n_tensors;
    if (n < 2) {
        f->tensor_order_sorted = true;
        return;
    }
    uint64_t *tmp = malloc(n * sizeof *tmp);
    uint64_t *a = f->tensor_order;
    if (!tmp)
        return; /* reported by the caller as out of memory */
    for (uint64_t width = 1; width < n; width *= 2) {
        for (uint64_t lo = 0; lo < n; lo += 2 * width) {
            uint64_t mid = lo + width < n ? lo + width : n;
            uint64_t hi = lo + 2 * width < n ? lo + 2 * width : n;
            uint64_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                tmp[k++] = compare_by_offset(&a[j], &a[i], f) < 0 ? a[j++] : a[i++];
            while (i < mid)
                tmp[k++] = a[i++];
            while (j < hi)
                tmp[k++] = a[j++];
        }
        memcpy(a, tmp, n * sizeof *a);
    }
    free(tmp);
    f->tensor_order_sorted = true;
}

static int compare_by_offset(const void *a, const void *b, void *ctx)
{
    const gguf_file *f = ctx;
    uint64_t oa = f->tensors[*(const uint64_t *)a].offset;
    uint64_t ob = f->tensors[*(const uint64_t *)b].offset;
    return oa < ob ? -1 : oa > ob;
}

static edgellm_status parse_kvs(gguf_file *f, cursor *c)
{
    uint64_t remaining = c->size - c->pos;
    /* A key/value pair needs at least 8 (key length) + 4 (type) + 1 bytes. */
    if (f->n_kv > remaining / 13)
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "header claims %llu metadata entries but only %llu bytes follow; the "
                         "file is truncated or corrupt",
                         (unsigned long long)f->n_kv, (unsigned long long)remaining);
    f->kvs = calloc(f->n_kv ? f->n_kv : 1, sizeof *f->kvs);
    if (!f->kvs)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for %llu metadata entries",
                         (unsigned long long)f->n_kv);
    uint64_t parsed = f->n_kv;
    f->n_kv = 0;
    for (uint64_t i = 0; i < parsed; i++) {
        gguf_kv *kv = &f->kvs[i];
        c->what = "a metadata key";
        edgellm_status st = read_str(c, &kv->key);
        if (st != EDGELLM_OK)
            return st;
        if (kv->key.len == 0)
            return ellm_fail(EDGELLM_ERR_FORMAT, "metadata entry %llu has an empty key",
                             (unsigned long long)i);
        if (!ellm_utf8_valid(kv->key.data, (size_t)kv->key.len))
            return ellm_fail(EDGELLM_ERR_FORMAT, "metadata entry %llu: key is not valid UTF-8",
                             (unsigned long long)i);
        uint32_t type;
        c->what = "a metadata value";
        st = read_u32(c, &type);
        if (st != EDGELLM_OK)
            return st;
        static _Thread_local char what[256];
        snprintf(what, sizeof what, "metadata '%.*s'", (int)(kv->key.len > 200 ? 200 : kv->key.len),
                 kv->key.data);
        c->what = what;
        if (type >= GGUF_TYPE_COUNT)
            return ellm_fail(EDGELLM_ERR_FORMAT, "%s: value type %u is not a GGUF type", what,
                             type);
        kv->value.type = (gguf_value_type)type;
        kv->value.v.arr.strings = NULL;
        kv->value.v.arr.items = NULL;
        kv->value.v.arr.n = 0;
        f->n_kv = i + 1; /* owned from here on, so ellm_gguf_close frees partial arrays */
        st = read_value(c, (gguf_value_type)type, &kv->value, 0);
        if (st != EDGELLM_OK)
            return st;
    }
    return EDGELLM_OK;
}

static edgellm_status parse_alignment(gguf_file *f)
{
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    const gguf_kv *kv = ellm_gguf_find_kv(f, "general.alignment");
    if (!kv)
        return EDGELLM_OK;
    uint64_t a;
    if (kv->value.type == GGUF_TYPE_UINT32 || kv->value.type == GGUF_TYPE_UINT64 ||
        kv->value.type == GGUF_TYPE_UINT16 || kv->value.type == GGUF_TYPE_UINT8)
        a = kv->value.v.u64;
    else if (kv->value.type == GGUF_TYPE_INT32 && kv->value.v.i64 > 0)
        a = (uint64_t)kv->value.v.i64;
    else
        return ellm_fail(EDGELLM_ERR_FORMAT, "general.alignment has type %s; it must be uint32",
                         ellm_gguf_value_type_name(kv->value.type));
    if (a == 0 || (a & (a - 1)) != 0 || a > (1u << 20))
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "general.alignment is %llu; it must be a power of two up to 1 MiB",
                         (unsigned long long)a);
    f->alignment = a;
    return EDGELLM_OK;
}

static edgellm_status parse_tensor_infos(gguf_file *f, cursor *c)
{
    uint64_t remaining = c->size - c->pos;
    /* name length 8 + n_dims 4 + one dim 8 + type 4 + offset 8 */
    if (f->n_tensors > remaining / 32)
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "header claims %llu tensors but only %llu bytes follow; the file is "
                         "truncated or corrupt",
                         (unsigned long long)f->n_tensors, (unsigned long long)remaining);
    f->tensors = calloc(f->n_tensors ? f->n_tensors : 1, sizeof *f->tensors);
    f->tensor_order = calloc(f->n_tensors ? f->n_tensors : 1, sizeof *f->tensor_order);
    if (!f->tensors || !f->tensor_order)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for %llu tensor infos",
                         (unsigned long long)f->n_tensors);
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor_info *t = &f->tensors[i];
        c->what = "a tensor name";
        edgellm_status st = read_str(c, &t->name);
        if (st != EDGELLM_OK)
            return st;
        int nl = (int)(t->name.len > 200 ? 200 : t->name.len);
        if (t->name.len == 0 || !ellm_utf8_valid(t->name.data, (size_t)t->name.len))
            return ellm_fail(EDGELLM_ERR_FORMAT, "tensor %llu has an empty or non-UTF-8 name",
                             (unsigned long long)i);
        c->what = "a tensor info";
        st = read_u32(c, &t->n_dims);
        if (st != EDGELLM_OK)
            return st;
        if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
            return ellm_fail(EDGELLM_ERR_FORMAT,
                             "tensor '%.*s' has %u dimensions (1 to %d allowed)", nl, t->name.data,
                             t->n_dims, GGUF_MAX_DIMS);
        for (int d = 0; d < GGUF_MAX_DIMS; d++)
            t->ne[d] = 1;
        uint64_t n_el = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            st = read_u64(c, &t->ne[d]);
            if (st != EDGELLM_OK)
                return st;
            if (t->ne[d] == 0 || t->ne[d] > INT64_MAX)
                return ellm_fail(EDGELLM_ERR_FORMAT, "tensor '%.*s': dimension %u is %llu", nl,
                                 t->name.data, d, (unsigned long long)t->ne[d]);
            if (!ellm_mul_u64(n_el, t->ne[d], &n_el) || n_el > INT64_MAX)
                return ellm_fail(EDGELLM_ERR_FORMAT,
                                 "tensor '%.*s': the product of its dimensions overflows", nl,
                                 t->name.data);
        }
        t->n_elements = n_el;
        st = read_u32(c, &t->type);
        if (st == EDGELLM_OK)
            st = read_u64(c, &t->offset);
        if (st != EDGELLM_OK)
            return st;
        const ellm_type_traits *tr = ellm_type_traits_of(t->type);
        if (!tr)
            return ellm_fail(EDGELLM_ERR_FORMAT,
                             "tensor '%.*s' has unknown type number %u; the file may need a newer "
                             "edgellm",
                             nl, t->name.data, t->type);
        if (t->ne[0] % tr->block_size != 0)
            return ellm_fail(EDGELLM_ERR_FORMAT,
                             "tensor '%.*s': row length %llu is not a multiple of the %s block "
                             "size %u",
                             nl, t->name.data, (unsigned long long)t->ne[0], tr->name,
                             tr->block_size);
        if (!ellm_mul_u64(n_el / tr->block_size, tr->block_bytes, &t->n_bytes))
            return ellm_fail(EDGELLM_ERR_FORMAT, "tensor '%.*s': byte size overflows", nl,
                             t->name.data);
        if (t->offset % f->alignment != 0)
            return ellm_fail(EDGELLM_ERR_FORMAT,
                             "tensor '%.*s': data offset %llu is not a multiple of the alignment "
                             "%llu",
                             nl, t->name.data, (unsigned long long)t->offset,
                             (unsigned long long)f->alignment);
        f->tensor_order[i] = i;
    }
    return EDGELLM_OK;
}

/* Finds a repeated name among n strings laid out `stride` bytes apart (the key of each kv, the
 * name of each tensor). A hash table keeps this linear: a hostile file may hold hundreds of
 * thousands of same-length names, which a pairwise scan would take minutes over. Returns
 * EDGELLM_OK with *dup = n when all differ, else the index of the second occurrence. */
static edgellm_status find_duplicate_name(const void *items, size_t stride, uint64_t n,
                                          uint64_t *dup)
{
    *dup = n;
    uint64_t cap = 16;
    while (cap < n * 2)
        cap *= 2;
    uint64_t *slots = calloc(cap, sizeof *slots);
    if (!slots)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory to index %llu names",
                         (unsigned long long)n);
    const uint8_t *base = items;
    for (uint64_t i = 0; i < n && *dup == n; i++) {
        const gguf_str *name = (const gguf_str *)(base + i * stride);
        uint64_t h = 1469598103934665603ull; /* FNV-1a */
        for (uint64_t k = 0; k < name->len; k++)
            h = (h ^ (uint8_t)name->data[k]) * 1099511628211ull;
        for (uint64_t s = h & (cap - 1);; s = (s + 1) & (cap - 1)) {
            if (slots[s] == 0) {
                slots[s] = i + 1;
                break;
            }
            const gguf_str *other = (const gguf_str *)(base + (slots[s] - 1) * stride);
            if (other->len == name->len && memcmp(other->data, name->data, name->len) == 0) {
                *dup = i;
                break;
            }
        }
    }
    free(slots);
    return EDGELLM_OK;
}

_Static_assert(offsetof(gguf_kv, key) == 0, "find_duplicate_name reads a kv's key at offset 0");
_Static_assert(offsetof(gguf_tensor_info, name) == 0,
               "find_duplicate_name reads a tensor's name at offset 0");

static edgellm_status check_names_unique(gguf_file *f)
{
    uint64_t dup;
    edgellm_status st = find_duplicate_name(f->kvs, sizeof *f->kvs, f->n_kv, &dup);
    if (st != EDGELLM_OK)
        return st;
    if (dup < f->n_kv) {
        const gguf_str *k = &f->kvs[dup].key;
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "metadata key '%.*s' appears twice (second time as entry %llu); the "
                         "file is corrupt",
                         (int)(k->len > 200 ? 200 : k->len), k->data, (unsigned long long)dup);
    }
    st = find_duplicate_name(f->tensors, sizeof *f->tensors, f->n_tensors, &dup);
    if (st != EDGELLM_OK)
        return st;
    if (dup < f->n_tensors) {
        const gguf_str *name = &f->tensors[dup].name;
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "tensor name '%.*s' appears twice (second time as tensor %llu); the file "
                         "is corrupt",
                         (int)(name->len > 200 ? 200 : name->len), name->data,
                         (unsigned long long)dup);
    }
    return EDGELLM_OK;
}

static edgellm_status place_tensors(gguf_file *f, const uint8_t *base)
{
    uint64_t data_size = f->file_size - f->data_offset;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor_info *t = &f->tensors[i];
        uint64_t end;
        if (!ellm_add_u64(t->offset, t->n_bytes, &end) || end > data_size) {
            /* Absolute file offsets make the message comparable with the file size; a sum
             * that does not fit in 64 bits is shown as start and length instead. */
            uint64_t abs_start, abs_end;
            int nl = (int)(t->name.len > 200 ? 200 : t->name.len);
            if (ellm_add_u64(f->data_offset, t->offset, &abs_start) &&
                ellm_add_u64(abs_start, t->n_bytes, &abs_end))
                return ellm_fail(EDGELLM_ERR_FORMAT,
                                 "tensor '%.*s': data [%llu..%llu) runs past the end of the file "
                                 "(size %llu): the file is truncated; re-download or re-convert "
                                 "it",
                                 nl, t->name.data, (unsigned long long)abs_start,
                                 (unsigned long long)abs_end, (unsigned long long)f->file_size);
            return ellm_fail(EDGELLM_ERR_FORMAT,
                             "tensor '%.*s': data offset %llu + %llu bytes runs past the end of "
                             "the file (size %llu): the file is corrupt; re-download or "
                             "re-convert it",
                             nl, t->name.data, (unsigned long long)t->offset,
                             (unsigned long long)t->n_bytes, (unsigned long long)f->file_size);
        }
        t->data = base + f->data_offset + t->offset;
    }
    sort_tensor_order(f);
    if (!f->tensor_order_sorted)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory to check tensor overlap");
    for (uint64_t k = 1; k < f->n_tensors; k++) {
        const gguf_tensor_info *a = &f->tensors[f->tensor_order[k - 1]];
        const gguf_tensor_info *b = &f->tensors[f->tensor_order[k]];
        if (a->offset + a->n_bytes > b->offset)
            return ellm_fail(EDGELLM_ERR_FORMAT,
                             "tensors '%.*s' (data offset %llu, %llu bytes) and '%.*s' (data "
                             "offset %llu) overlap in the file; it is corrupt",
                             (int)(a->name.len > 100 ? 100 : a->name.len), a->name.data,
                             (unsigned long long)a->offset, (unsigned long long)a->n_bytes,
                             (int)(b->name.len > 100 ? 100 : b->name.len), b->name.data,
                             (unsigned long long)b->offset);
    }
    return EDGELLM_OK;
}

edgellm_status ellm_gguf_parse(const void *data, size_t size, gguf_file **out)
{
    *out = NULL;
    gguf_file *f = calloc(1, sizeof *f);
    if (!f)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for a GGUF file");
    cursor c = {.base = data, .size = size, .pos = 0, .what = "the GGUF header"};
    f->file_size = size;
    const uint8_t *magic = NULL;
    edgellm_status st = take(&c, 4, &magic);
    if (st != EDGELLM_OK || memcmp(magic, GGUF_MAGIC, 4) != 0) {
        ellm_gguf_close(f);
        if (size < 4)
            return ellm_fail(EDGELLM_ERR_FORMAT,
                             "not a GGUF file: only %zu bytes, too short for the 'GGUF' magic",
                             size);
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "not a GGUF file (the first bytes are not 'GGUF'); convert the model "
                         "with 'edgellm convert' first");
    }
    st = read_u32(&c, &f->version);
    if (st == EDGELLM_OK && (f->version == 0x02000000u || f->version == 0x03000000u))
        st = ellm_fail(EDGELLM_ERR_UNSUPPORTED,
                       "this is a big-endian GGUF file (version %u byte-swapped); edgellm reads "
                       "little-endian files only: convert the model again for little-endian",
                       f->version >> 24);
    else if (st == EDGELLM_OK && (f->version < 2 || f->version > 3))
        st = ellm_fail(EDGELLM_ERR_UNSUPPORTED,
                       "GGUF version %u is not supported (versions 2 and 3 are); re-convert the "
                       "model with a current converter",
                       f->version);
    if (st == EDGELLM_OK)
        st = read_u64(&c, &f->n_tensors);
    if (st == EDGELLM_OK)
        st = read_u64(&c, &f->n_kv);
    if (st == EDGELLM_OK)
        st = parse_kvs(f, &c);
    if (st == EDGELLM_OK)
        st = parse_alignment(f);
    if (st == EDGELLM_OK)
        st = parse_tensor_infos(f, &c);
    if (st == EDGELLM_OK)
        st = check_names_unique(f);
    if (st == EDGELLM_OK) {
        if (!ellm_align_up_u64(c.pos, f->alignment, &f->data_offset) ||
            (f->n_tensors > 0 && f->data_offset > size))
            st = ellm_fail(EDGELLM_ERR_FORMAT,
                           "the data section (at offset %llu) starts past the end of the file "
                           "(%zu bytes); the file is truncated; re-download or re-convert it",
                           (unsigned long long)f->data_offset, size);
        else if (f->data_offset > size)
            f->data_offset = size;
    }
    if (st == EDGELLM_OK)
        st = place_tensors(f, data);
    if (st != EDGELLM_OK) {
        ellm_gguf_close(f);
        return st;
    }
    *out = f;
    return EDGELLM_OK;
}

edgellm_status ellm_gguf_open(const char *path, gguf_file **out)
{
    return ellm_gguf_open_paged(path, EDGELLM_PAGES_HUGE, out);
}

edgellm_status ellm_gguf_open_paged(const char *path, edgellm_page_advice pages, gguf_file **out)
{
    *out = NULL;
    ellm_mapped_file m;
    edgellm_status st = ellm_map_file(path, pages, &m);
    if (st != EDGELLM_OK)
        return st;
    st = ellm_gguf_parse(m.data ? m.data : "", m.size, out);
    if (st != EDGELLM_OK) {
        ellm_unmap_file(&m);
        return ellm_fail_wrap(st, "'%s'", path);
    }
    (*out)->mapping = m;
    (*out)->owns_mapping = true;
    return EDGELLM_OK;
}
