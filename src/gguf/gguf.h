/* GGUF (versions 2 and 3) reader and writer.
 *
 * The reader parses a file that is memory-mapped read-only; strings, arrays and tensor data point
 * into the mapping (nothing is copied). Every count, length, offset and size is checked against the
 * file size with overflow-safe arithmetic before use, so any byte sequence either parses into a
 * consistent structure or fails with a message naming the problem. */
#ifndef EDGELLM_GGUF_H
#define EDGELLM_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/tensor_types.h"
#include "edgellm.h"

#define GGUF_MAGIC "GGUF"
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4

typedef enum gguf_value_type {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE_COUNT
} gguf_value_type;

/* A length-delimited string inside the mapping; not NUL-terminated. */
typedef struct gguf_str {
    uint64_t len;
    const char *data;
} gguf_str;

typedef struct gguf_value gguf_value;

typedef struct gguf_array {
    gguf_value_type elem_type;
    uint64_t n;
    const uint8_t
        *raw;          /* numeric/bool elements: n packed little-endian values (may be unaligned) */
    gguf_str *strings; /* elem_type == STRING: n strings */
    gguf_value *items; /* elem_type == ARRAY: n nested values */
} gguf_array;

struct gguf_value {
    gguf_value_type type;
    union {
        uint64_t u64; /* every unsigned integer type, widened */
        int64_t i64;  /* every signed integer type, widened */
        double f64;   /* FLOAT32 and FLOAT64, widened */
        bool b;
        gguf_str str;
        gguf_array arr;
    } v;
};

typedef struct gguf_kv {
    gguf_str key;
    gguf_value value;
} gguf_kv;

typedef struct gguf_tensor_info {
    gguf_str name;
    uint32_t n_dims;
    uint64_t ne[GGUF_MAX_DIMS]; /* unused dimensions are 1 */
    uint32_t type;              /* an ellm_type number */
    uint64_t offset;            /* relative to the start of the data section */
    uint64_t n_elements;
    uint64_t n_bytes;
    const void *data; /* into the mapping */
} gguf_tensor_info;

typedef struct gguf_file gguf_file;

/* Maps and parses a file. On failure *out is NULL and the message names the file and problem. */
edgellm_status ellm_gguf_open(const char *path, gguf_file **out);
/* The same with the mapping advised the given pages (ellm_gguf_open: EDGELLM_PAGES_HUGE). */
edgellm_status ellm_gguf_open_paged(const char *path, edgellm_page_advice pages, gguf_file **out);
/* Parses bytes the caller keeps alive for the lifetime of the result (used by tests and fuzzers). */
edgellm_status ellm_gguf_parse(const void *data, size_t size, gguf_file **out);
void ellm_gguf_close(gguf_file *file);

uint32_t ellm_gguf_version(const gguf_file *file);
uint64_t ellm_gguf_alignment(const gguf_file *file);
uint64_t ellm_gguf_data_offset(const gguf_file *file);
uint64_t ellm_gguf_file_size(const gguf_file *file);

uint64_t ellm_gguf_kv_count(const gguf_file *file);
const gguf_kv *ellm_gguf_kv_at(const gguf_file *file, uint64_t index);
const gguf_kv *ellm_gguf_find_kv(const gguf_file *file, const char *key); /* NULL if absent */

uint64_t ellm_gguf_tensor_count(const gguf_file *file);
const gguf_tensor_info *ellm_gguf_tensor_at(const gguf_file *file, uint64_t index);
const gguf_tensor_info *ellm_gguf_find_tensor(const gguf_file *file, const char *name);

bool ellm_gguf_str_eq(gguf_str s, const char *cstr);
/* Copies a string into a NUL-terminated malloc'd buffer (NULL on allocation failure). */
char *ellm_gguf_str_dup(gguf_str s);

/* Typed getters. They return EDGELLM_ERR_NOT_FOUND if the key is absent (leaving *out alone, so
 * callers can pre-set a default) and EDGELLM_ERR_FORMAT with a message naming the key if the value
 * has the wrong type or does not fit. Integer getters accept any integer type whose value fits. */
edgellm_status ellm_gguf_get_u32(const gguf_file *file, const char *key, uint32_t *out);
edgellm_status ellm_gguf_get_i32(const gguf_file *file, const char *key, int32_t *out);
edgellm_status ellm_gguf_get_u64(const gguf_file *file, const char *key, uint64_t *out);
edgellm_status ellm_gguf_get_f32(const gguf_file *file, const char *key, float *out);
edgellm_status ellm_gguf_get_bool(const gguf_file *file, const char *key, bool *out);
edgellm_status ellm_gguf_get_str(const gguf_file *file, const char *key, gguf_str *out);
edgellm_status ellm_gguf_get_array(const gguf_file *file, const char *key, const gguf_array **out);

/* Element i of a numeric array converted to the requested type (false if out of range or wrong
 * kind). */
bool ellm_gguf_array_get_f32(const gguf_array *arr, uint64_t i, float *out);
bool ellm_gguf_array_get_i64(const gguf_array *arr, uint64_t i, int64_t *out);

const char *ellm_gguf_value_type_name(gguf_value_type type);
/* Human-readable rendering of a value into buf (long arrays abbreviated); returns buf. */
const char *ellm_gguf_value_format(const gguf_value *value, char *buf, size_t cap);

/* ---- Writer ---------------------------------------------------------------------------- */

typedef struct gguf_writer gguf_writer;

/* Produces the bytes of one tensor while the file is being written; called once per tensor in
 * order, so converters can stream a model tensor by tensor with bounded memory. */
typedef edgellm_status (*gguf_tensor_fill_fn)(void *user, void *dst, uint64_t n_bytes);

gguf_writer *ellm_gguf_writer_create(void); /* NULL on allocation failure */
void ellm_gguf_writer_free(gguf_writer *w);

/* Setting a key twice replaces the earlier value. Strings and arrays are copied. */
edgellm_status ellm_gguf_writer_set_u8(gguf_writer *w, const char *key, uint8_t v);
edgellm_status ellm_gguf_writer_set_i8(gguf_writer *w, const char *key, int8_t v);
edgellm_status ellm_gguf_writer_set_u16(gguf_writer *w, const char *key, uint16_t v);
edgellm_status ellm_gguf_writer_set_i16(gguf_writer *w, const char *key, int16_t v);
edgellm_status ellm_gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v);
edgellm_status ellm_gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v);
edgellm_status ellm_gguf_writer_set_u64(gguf_writer *w, const char *key, uint64_t v);
edgellm_status ellm_gguf_writer_set_i64(gguf_writer *w, const char *key, int64_t v);
edgellm_status ellm_gguf_writer_set_f32(gguf_writer *w, const char *key, float v);
edgellm_status ellm_gguf_writer_set_f64(gguf_writer *w, const char *key, double v);
edgellm_status ellm_gguf_writer_set_bool(gguf_writer *w, const char *key, bool v);
edgellm_status ellm_gguf_writer_set_str(gguf_writer *w, const char *key, const char *v);
/* Array of fixed-size elements (numeric or BOOL), n packed values in host order. */
edgellm_status ellm_gguf_writer_set_array(gguf_writer *w, const char *key,
                                          gguf_value_type elem_type, const void *data, uint64_t n);
edgellm_status ellm_gguf_writer_set_str_array(gguf_writer *w, const char *key,
                                              const char *const *strings, uint64_t n);
/* Copies a value (including nested arrays) from a parsed file, e.g. to carry metadata over. */
edgellm_status ellm_gguf_writer_set_value(gguf_writer *w, const char *key, const gguf_value *value);
edgellm_status ellm_gguf_writer_set_alignment(gguf_writer *w, uint32_t alignment);

/* Adds a tensor whose bytes are borrowed (must stay valid until ellm_gguf_writer_write returns). */
edgellm_status ellm_gguf_writer_add_tensor(gguf_writer *w, const char *name, ellm_type type,
                                           uint32_t n_dims, const uint64_t *ne, const void *data);
/* Adds a tensor whose bytes the callback produces during ellm_gguf_writer_write. */
edgellm_status ellm_gguf_writer_add_tensor_fill(gguf_writer *w, const char *name, ellm_type type,
                                                uint32_t n_dims, const uint64_t *ne,
                                                gguf_tensor_fill_fn fill, void *user);

/* Writes version 3 to path through a temporary file in the same directory, fsynced and renamed
 * into place, so an interrupted write never leaves a partial file at path. */
edgellm_status ellm_gguf_writer_write(gguf_writer *w, const char *path);

#endif
