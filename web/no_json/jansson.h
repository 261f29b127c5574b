/* The WebAssembly build has no jansson: src/chat's tool support compiles against these stand-ins
 * and is never reached there (no tools are ever passed, every value is absent). */
#ifndef EDGELLM_WEB_NO_JSON_H
#define EDGELLM_WEB_NO_JSON_H

#include <stddef.h>

typedef enum { JSON_OBJECT, JSON_ARRAY, JSON_STRING, JSON_INTEGER, JSON_REAL, JSON_TRUE,
               JSON_FALSE, JSON_NULL } json_type;
typedef struct json_t {
    json_type type;
} json_t;
typedef struct json_error_t {
    int position;
} json_error_t;
#define JSON_DISABLE_EOF_CHECK 0x2
#define JSON_DECODE_ANY 0x4

#define json_typeof(v) ((v)->type)
#define json_is_object(v) ((v) && json_typeof(v) == JSON_OBJECT)
#define json_is_array(v) ((v) && json_typeof(v) == JSON_ARRAY)
#define json_is_string(v) ((v) && json_typeof(v) == JSON_STRING)
#define json_is_null(v) ((v) && json_typeof(v) == JSON_NULL)

static inline json_t *json_object_get(const json_t *o, const char *k) { (void)o, (void)k; return NULL; }
static inline size_t json_object_size(const json_t *o) { (void)o; return 0; }
static inline size_t json_array_size(const json_t *a) { (void)a; return 0; }
static inline json_t *json_array_get(const json_t *a, size_t i) { (void)a, (void)i; return NULL; }
static inline const char *json_string_value(const json_t *s) { (void)s; return NULL; }
static inline size_t json_string_length(const json_t *s) { (void)s; return 0; }
static inline long long json_integer_value(const json_t *v) { (void)v; return 0; }
static inline double json_real_value(const json_t *v) { (void)v; return 0; }
static inline json_t *json_object(void) { return NULL; }
static inline void json_decref(json_t *v) { (void)v; }
static inline json_t *json_loadb(const char *t, size_t n, size_t f, json_error_t *e)
{
    (void)t, (void)n, (void)f, (void)e;
    return NULL;
}
/* No members to visit. */
static inline int json_no_members(const json_t *o) { (void)o; return 0; }
#define json_object_foreach(object, key, value)                                                \
    for (key = NULL, value = NULL; json_no_members(object);)

#endif
