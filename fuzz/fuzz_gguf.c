/* libFuzzer target: any byte string given to the GGUF parser must parse into a consistent file or
 * fail cleanly with a message. Everything a parsed file exposes is walked (values formatted,
 * getters called, tensor bytes touched at both ends), so a bad pointer or length is caught by
 * ASan; broken invariants abort so libFuzzer records the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(int ok)
{
    if (!ok)
        abort();
}

static void walk_value(const gguf_value *v)
{
    char buf[256];
    ellm_gguf_value_format(v, buf, sizeof buf);
    require(strlen(buf) < sizeof buf);
    if (v->type != GGUF_TYPE_ARRAY)
        return;
    const gguf_array *a = &v->v.arr;
    float f;
    int64_t i;
    if (a->n > 0) {
        (void)ellm_gguf_array_get_f32(a, a->n - 1, &f);
        (void)ellm_gguf_array_get_i64(a, a->n - 1, &i);
    }
    require(!ellm_gguf_array_get_i64(a, a->n, &i));
    if (a->elem_type == GGUF_TYPE_ARRAY)
        for (uint64_t k = 0; k < a->n; k++)
            walk_value(&a->items[k]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gguf_file *f = NULL;
    if (ellm_gguf_parse(data, size, &f) != EDGELLM_OK) {
        require(f == NULL && edgellm_last_error()[0] != '\0');
        return 0;
    }
    uint64_t align = ellm_gguf_alignment(f);
    require(align != 0 && (align & (align - 1)) == 0);
    /* Without tensors the padding before the (empty) data section may be missing; the reader
     * then reports the end of the file as the data offset. */
    require(ellm_gguf_data_offset(f) <= size &&
            (ellm_gguf_data_offset(f) % align == 0 ||
             (ellm_gguf_tensor_count(f) == 0 && ellm_gguf_data_offset(f) == size)));
    for (uint64_t i = 0; i < ellm_gguf_kv_count(f); i++) {
        const gguf_kv *kv = ellm_gguf_kv_at(f, i);
        require(kv->key.len > 0);
        walk_value(&kv->value);
        char *key = ellm_gguf_str_dup(kv->key);
        if (!key)
            continue;
        /* Keys may contain NUL bytes; a look-up by the C string then finds an earlier or no key. */
        if (strlen(key) == kv->key.len)
            require(ellm_gguf_find_kv(f, key) == kv);
        uint32_t u32;
        int32_t i32;
        uint64_t u64;
        float f32;
        bool b;
        gguf_str s;
        const gguf_array *arr;
        (void)ellm_gguf_get_u32(f, key, &u32);
        (void)ellm_gguf_get_i32(f, key, &i32);
        (void)ellm_gguf_get_u64(f, key, &u64);
        (void)ellm_gguf_get_f32(f, key, &f32);
        (void)ellm_gguf_get_bool(f, key, &b);
        (void)ellm_gguf_get_array(f, key, &arr);
        if (ellm_gguf_get_str(f, key, &s) == EDGELLM_OK)
            require(s.len == 0 || (s.data >= (const char *)data &&
                                   s.data + s.len <= (const char *)data + size));
        free(key);
    }
    volatile uint8_t sink = 0;
    for (uint64_t i = 0; i < ellm_gguf_tensor_count(f); i++) {
        const gguf_tensor_info *t = ellm_gguf_tensor_at(f, i);
        const uint8_t *p = t->data;
        require(t->n_bytes > 0 && p >= data + ellm_gguf_data_offset(f) && t->n_bytes <= size &&
                p + t->n_bytes <= data + size);
        require(t->offset % align == 0);
        sink ^= p[0] ^ p[t->n_bytes - 1];
    }
    (void)sink;
    ellm_gguf_close(f);
    return 0;
}
