/* Look-ups and typed getters over a parsed file. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "gguf/gguf.h"
#include "gguf/gguf_internal.h"

uint32_t ellm_gguf_version(const gguf_file *f) { return f->version; }
uint64_t ellm_gguf_alignment(const gguf_file *f) { return f->alignment; }
uint64_t ellm_gguf_data_offset(const gguf_file *f) { return f->data_offset; }
uint64_t ellm_gguf_file_size(const gguf_file *f) { return f->file_size; }
uint64_t ellm_gguf_kv_count(const gguf_file *f) { return f->n_kv; }
uint64_t ellm_gguf_tensor_count(const gguf_file *f) { return f->n_tensors; }

const gguf_kv *ellm_gguf_kv_at(const gguf_file *f, uint64_t i)
{
    return i < f->n_kv ? &f->kvs[i] : NULL;
}

const gguf_tensor_info *ellm_gguf_tensor_at(const gguf_file *f, uint64_t i)
{
    return i < f->n_tensors ? &f->tensors[i] : NULL;
}

bool ellm_gguf_str_eq(gguf_str s, const char *cstr)
{
    size_t n = strlen(cstr);
    return s.len == n && memcmp(s.data, cstr, n) == 0;
}

char *ellm_gguf_str_dup(gguf_str s)
{
    char *p = malloc(s.len + 1);
    if (p) {
        if (s.len)
            memcpy(p, s.data, s.len);
        p[s.len] = '\0';
    }
    return p;
}

const gguf_kv *ellm_gguf_find_kv(const gguf_file *f, const char *key)
{
    for (uint64_t i = 0; i < f->n_kv; i++)
        if (ellm_gguf_str_eq(f->kvs[i].key, key))
            return &f->kvs[i];
    return NULL;
}

const gguf_tensor_info *ellm_gguf_find_tensor(const gguf_file *f, const char *name)
{
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if (ellm_gguf_str_eq(f->tensors[i].name, name))
            return &f->tensors[i];
    return NULL;
}

static bool is_unsigned(gguf_value_type t)
{
    return t == GGUF_TYPE_UINT8 || t == GGUF_TYPE_UINT16 || t == GGUF_TYPE_UINT32 ||
           t == GGUF_TYPE_UINT64;
}

static bool is_signed(gguf_value_type t)
{
    return t == GGUF_TYPE_INT8 || t == GGUF_TYPE_INT16 || t == GGUF_TYPE_INT32 ||
           t == GGUF_TYPE_INT64;
}

/* Integer value of a kv widened to a range check. */
static edgellm_status get_int(const gguf_file *f, const char *key, int64_t min, uint64_t max,
                              bool *negative, uint64_t *mag)
{
    const gguf_kv *kv = ellm_gguf_find_kv(f, key);
    if (!kv)
        return EDGELLM_ERR_NOT_FOUND;
    gguf_value_type t = kv->value.type;
    if (is_unsigned(t)) {
        *negative = false;
        *mag = kv->value.v.u64;
    } else if (is_signed(t)) {
        int64_t v = kv->value.v.i64;
        *negative = v < 0;
        *mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    } else {
        return ellm_fail(EDGELLM_ERR_FORMAT, "metadata '%s' should be an integer but is %s", key,
                         ellm_gguf_value_type_name(t));
    }
    bool ok = *negative ? (min < 0 && *mag <= (uint64_t)0 - (uint64_t)min) : *mag <= max;
    if (!ok)
        return ellm_fail(EDGELLM_ERR_FORMAT, "metadata '%s' is out of range", key);
    return EDGELLM_OK;
}

edgellm_status ellm_gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out)
{
    bool neg;
    uint64_t mag;
    edgellm_status st = get_int(f, key, 0, UINT32_MAX, &neg, &mag);
    if (st == EDGELLM_OK)
        *out = (uint32_t)mag;
    return st;
}

edgellm_status ellm_gguf_get_i32(const gguf_file *f, const char *key, int32_t *out)
{
    bool neg;
    uint64_t mag;
    edgellm_status st = get_int(f, key, INT32_MIN, INT32_MAX, &neg, &mag);
    if (st == EDGELLM_OK)
        *out = neg ? (int32_t)(-(int64_t)mag) : (int32_t)mag;
    return st;
}

edgellm_status ellm_gguf_get_u64(const gguf_file *f, const char *key, uint64_t *out)
{
    bool neg;
    uint64_t mag;
    edgellm_status st = get_int(f, key, 0, UINT64_MAX, &neg, &mag);
    if (st == EDGELLM_OK)
        *out = mag;
    return st;
}

edgellm_status ellm_gguf_get_f32(const gguf_file *f, const char *key, float *out)
{
    const gguf_kv *kv = ellm_gguf_find_kv(f, key);
    if (!kv)
        return EDGELLM_ERR_NOT_FOUND;
    if (kv->value.type == GGUF_TYPE_FLOAT32 || kv->value.type == GGUF_TYPE_FLOAT64) {
        *out = (float)kv->value.v.f64;
        return EDGELLM_OK;
    }
    if (is_unsigned(kv->value.type)) {
        *out = (float)kv->value.v.u64;
        return EDGELLM_OK;
    }
    if (is_signed(kv->value.type)) {
        *out = (float)kv->value.v.i64;
        return EDGELLM_OK;
    }
    return ellm_fail(EDGELLM_ERR_FORMAT, "metadata '%s' should be a number but is %s", key,
                     ellm_gguf_value_type_name(kv->value.type));
}

edgellm_status ellm_gguf_get_bool(const gguf_file *f, const char *key, bool *out)
{
    const gguf_kv *kv = ellm_gguf_find_kv(f, key);
    if (!kv)
        return EDGELLM_ERR_NOT_FOUND;
    if (kv->value.type != GGUF_TYPE_BOOL)
        return ellm_fail(EDGELLM_ERR_FORMAT, "metadata '%s' should be a bool but is %s", key,
                         ellm_gguf_value_type_name(kv->value.type));
    *out = kv->value.v.b;
    return EDGELLM_OK;
}

edgellm_status ellm_gguf_get_str(const gguf_file *f, const char *key, gguf_str *out)
{
    const gguf_kv *kv = ellm_gguf_find_kv(f, key);
    if (!kv)
        return EDGELLM_ERR_NOT_FOUND;
    if (kv->value.type != GGUF_TYPE_STRING)
        return ellm_fail(EDGELLM_ERR_FORMAT, "metadata '%s' should be a string but is %s", key,
                         ellm_gguf_value_type_name(kv->value.type));
    *out = kv->value.v.str;
    return EDGELLM_OK;
}

edgellm_status ellm_gguf_get_array(const gguf_file *f, const char *key, const gguf_array **out)
{
    const gguf_kv *kv = ellm_gguf_find_kv(f, key);
    if (!kv)
        return EDGELLM_ERR_NOT_FOUND;
    if (kv->value.type != GGUF_TYPE_ARRAY)
        return ellm_fail(EDGELLM_ERR_FORMAT, "metadata '%s' should be an array but is %s", key,
                         ellm_gguf_value_type_name(kv->value.type));
    *out = &kv->value.v.arr;
    return EDGELLM_OK;
}

static bool array_elem(const gguf_array *arr, uint64_t i, gguf_value *v)
{
    uint64_t size = ellm_gguf_scalar_size(arr->elem_type);
    if (i >= arr->n || size == 0)
        return false;
    const uint8_t *p = arr->raw + i * size;
    v->type = arr->elem_type;
    switch (arr->elem_type) {
    case GGUF_TYPE_UINT8: v->v.u64 = p[0]; break;
    case GGUF_TYPE_INT8: v->v.i64 = (int8_t)p[0]; break;
    case GGUF_TYPE_BOOL: v->v.b = p[0] != 0; break;
    case GGUF_TYPE_UINT16: v->v.u64 = (uint16_t)(p[0] | p[1] << 8); break;
    case GGUF_TYPE_INT16: v->v.i64 = (int16_t)(uint16_t)(p[0] | p[1] << 8); break;
    default: {
        uint64_t u = 0;
        for (int k = (int)size - 1; k >= 0; k--)
            u = u << 8 | p[k];
        if (arr->elem_type == GGUF_TYPE_UINT32 || arr->elem_type == GGUF_TYPE_UINT64)
            v->v.u64 = u;
        else if (arr->elem_type == GGUF_TYPE_INT32)
            v->v.i64 = (int32_t)(uint32_t)u;
        else if (arr->elem_type == GGUF_TYPE_INT64)
            v->v.i64 = (int64_t)u;
        else if (arr->elem_type == GGUF_TYPE_FLOAT32) {
            uint32_t u32 = (uint32_t)u;
            float fl;
            memcpy(&fl, &u32, 4);
            v->v.f64 = fl;
        } else {
            memcpy(&v->v.f64, &u, 8);
        }
    }
    }
    return true;
}

bool ellm_gguf_array_get_f32(const gguf_array *arr, uint64_t i, float *out)
{
    gguf_value v;
    if (!array_elem(arr, i, &v))
        return false;
    if (v.type == GGUF_TYPE_FLOAT32 || v.type == GGUF_TYPE_FLOAT64)
        *out = (float)v.v.f64;
    else if (is_unsigned(v.type))
        *out = (float)v.v.u64;
    else if (is_signed(v.type))
        *out = (float)v.v.i64;
    else
        return false;
    return true;
}

bool ellm_gguf_array_get_i64(const gguf_array *arr, uint64_t i, int64_t *out)
{
    gguf_value v;
    if (!array_elem(arr, i, &v))
        return false;
    if (is_signed(v.type))
        *out = v.v.i64;
    else if (is_unsigned(v.type) && v.v.u64 <= INT64_MAX)
        *out = (int64_t)v.v.u64;
    else if (v.type == GGUF_TYPE_BOOL)
        *out = v.v.b;
    else
        return false;
    return true;
}

const char *ellm_gguf_value_type_name(gguf_value_type t)
{
    static const char *names[GGUF_TYPE_COUNT] = {"uint8",  "int8",    "uint16", "int16",  "uint32",
                                                 "int32",  "float32", "bool",   "string", "array",
                                                 "uint64", "int64",   "float64"};
    return (unsigned)t < GGUF_TYPE_COUNT ? names[t] : "unknown";
}

typedef struct sbuf {
    char *buf;
    size_t cap;
    size_t len;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    if (b->len + 1 >= b->cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->buf + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        b->len = b->len + (size_t)n < b->cap ? b->len + (size_t)n : b->cap - 1;
}

/* Strings are shown quoted with control characters escaped, and cut at 60 bytes. */
static void sb_str(sbuf *b, gguf_str s)
{
    sb_printf(b, "\"");
    uint64_t n = s.len > 60 ? 60 : s.len;
    for (uint64_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s.data[i];
        if (ch == '"' || ch == '\\')
            sb_printf(b, "\\%c", ch);
        else if (ch < 0x20)
            sb_printf(b, "\\x%02x", ch);
        else
            sb_printf(b, "%c", ch);
    }
    sb_printf(b, s.len > 60 ? "...\"" : "\"");
}

static void sb_scalar(sbuf *b, const gguf_value *v)
{
    if (v->type == GGUF_TYPE_BOOL)
        sb_printf(b, "%s", v->v.b ? "true" : "false");
    else if (is_unsigned(v->type))
        sb_printf(b, "%llu", (unsigned long long)v->v.u64);
    else if (is_signed(v->type))
        sb_printf(b, "%lld", (long long)v->v.i64);
    else if (v->type == GGUF_TYPE_FLOAT32 || v->type == GGUF_TYPE_FLOAT64)
        sb_printf(b, "%g", v->v.f64);
    else if (v->type == GGUF_TYPE_STRING)
        sb_str(b, v->v.str);
}

static void sb_value(sbuf *b, const gguf_value *v)
{
    if (v->type != GGUF_TYPE_ARRAY) {
        sb_scalar(b, v);
        return;
    }
    const gguf_array *a = &v->v.arr;
    sb_printf(b, "[%llu \u00d7 %s]", (unsigned long long)a->n,
              ellm_gguf_value_type_name(a->elem_type));
    uint64_t shown = a->n < 6 ? a->n : 6;
    sb_printf(b, " [");
    for (uint64_t i = 0; i < shown; i++) {
        if (i)
            sb_printf(b, ", ");
        if (a->elem_type == GGUF_TYPE_STRING)
            sb_str(b, a->strings[i]);
        else if (a->elem_type == GGUF_TYPE_ARRAY)
            sb_value(b, &a->items[i]);
        else {
            gguf_value e = {.type = GGUF_TYPE_UINT8};
            if (array_elem(a, i, &e))
                sb_scalar(b, &e);
        }
    }
    sb_printf(b, a->n > shown ? ", ...]" : "]");
}

const char *ellm_gguf_value_format(const gguf_value *value, char *buf, size_t cap)
{
    if (cap == 0)
        return buf;
    sbuf b = {buf, cap, 0};
    buf[0] = '\0';
    sb_value(&b, value);
    return buf;
}
