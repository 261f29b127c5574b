/* GGUF reader and writer: files written by another runtime, round trips, and a corpus of hostile
 * files that must each fail with a clear message (the sanitizer build proves no out-of-bounds
 * read happens on the way). */
#include <stdlib.h>
#include <string.h>

#include "core/tensor_types.h"
#include "gguf/gguf.h"
#include "test_util.h"

static void test_shared_files(void)
{
    gguf_file *f = NULL;
    edgellm_status st = gguf_open(test_shared_path("models/aidreams260K-f32.gguf"), &f);
    CHECK_MSG(st == EDGELLM_OK, "%s", edgellm_last_error());
    if (f) {
        CHECK(gguf_version(f) == 3);
        gguf_str arch;
        CHECK(gguf_get_str(f, "general.architecture", &arch) == EDGELLM_OK &&
              gguf_str_eq(arch, "llama"));
        uint32_t v = 0;
        CHECK(gguf_get_u32(f, "llama.embedding_length", &v) == EDGELLM_OK && v == 64);
        CHECK(gguf_get_u32(f, "llama.feed_forward_length", &v) == EDGELLM_OK && v == 172);
        const gguf_array *tokens;
        CHECK(gguf_get_array(f, "tokenizer.ggml.tokens", &tokens) == EDGELLM_OK &&
              tokens->n == 512 && tokens->elem_type == GGUF_TYPE_STRING &&
              gguf_str_eq(tokens->strings[1], "<s>"));
        CHECK(gguf_tensor_count(f) == 39);
        const gguf_tensor_info *t = gguf_find_tensor(f, "blk.0.ffn_down.weight");
        CHECK(t && t->ne[0] == 172 && t->ne[1] == 64 && t->type == ELLM_TYPE_F32 &&
              t->n_bytes == 172 * 64 * 4);
        CHECK(gguf_get_u32(f, "general.architecture", &v) == EDGELLM_ERR_FORMAT);
        CHECK(strstr(edgellm_last_error(), "general.architecture") != NULL);
        CHECK(gguf_get_u32(f, "no.such.key", &v) == EDGELLM_ERR_NOT_FOUND);
        gguf_close(f);
    }
    st = gguf_open(test_shared_path("models/llama2-vocab-tiny-f16.gguf"), &f);
    CHECK_MSG(st == EDGELLM_OK, "%s", edgellm_last_error());
    if (f) {
        const gguf_array *tokens;
        CHECK(gguf_get_array(f, "tokenizer.ggml.tokens", &tokens) == EDGELLM_OK &&
              tokens->n == 32000);
        gguf_close(f);
    }
    CHECK(gguf_open(test_shared_path("models/no-such-file.gguf"), &f) == EDGELLM_ERR_IO);
    CHECK(strstr(edgellm_last_error(), "no-such-file") != NULL);
    CHECK(gguf_open(test_shared_path("models/aidreams260K.bin"), &f) == EDGELLM_ERR_FORMAT);
    CHECK(strstr(edgellm_last_error(), "not a GGUF file") != NULL);
}

static bool values_equal(const gguf_value *a, const gguf_value *b)
{
    if (a->type != b->type)
        return false;
    switch (a->type) {
    case GGUF_TYPE_STRING:
        return a->v.str.len == b->v.str.len && !memcmp(a->v.str.data, b->v.str.data, a->v.str.len);
    case GGUF_TYPE_ARRAY: {
        const gguf_array *x = &a->v.arr, *y = &b->v.arr;
        if (x->elem_type != y->elem_type || x->n != y->n)
            return false;
        for (uint64_t i = 0; i < x->n; i++) {
            if (x->elem_type == GGUF_TYPE_STRING) {
                if (x->strings[i].len != y->strings[i].len ||
                    memcmp(x->strings[i].data, y->strings[i].data, x->strings[i].len))
                    return false;
            } else if (x->elem_type == GGUF_TYPE_ARRAY) {
                if (!values_equal(&x->items[i], &y->items[i]))
                    return false;
            }
        }
        if (x->raw && y->raw) {
            int64_t ia, ib;
            float fa, fb;
            for (uint64_t i = 0; i < x->n; i++) {
                bool ok_i = gguf_array_get_i64(x, i, &ia) && gguf_array_get_i64(y, i, &ib);
                if (ok_i && ia != ib)
                    return false;
                if (!ok_i && gguf_array_get_f32(x, i, &fa) && gguf_array_get_f32(y, i, &fb) &&
                    memcmp(&fa, &fb, 4) != 0)
                    return false;
            }
        }
        return true;
    }
    case GGUF_TYPE_FLOAT32:
    case GGUF_TYPE_FLOAT64: return a->v.f64 == b->v.f64;
    case GGUF_TYPE_BOOL: return a->v.b == b->v.b;
    default: return a->v.u64 == b->v.u64;
    }
}

/* Copies every key and tensor of a file through the writer and checks the result is equal. */
static void test_round_trip(void)
{
    gguf_file *src = NULL, *dst = NULL;
    if (gguf_open(test_shared_path("models/aidreams260K-f32.gguf"), &src) != EDGELLM_OK) {
        CHECK(0);
        return;
    }
    gguf_writer *w = gguf_writer_create();
    for (uint64_t i = 0; i < gguf_kv_count(src); i++) {
        const gguf_kv *kv = gguf_kv_at(src, i);
        char *key = gguf_str_dup(kv->key);
        CHECK(gguf_writer_set_value(w, key, &kv->value) == EDGELLM_OK);
        free(key);
    }
    for (uint64_t i = 0; i < gguf_tensor_count(src); i++) {
        const gguf_tensor_info *t = gguf_tensor_at(src, i);
        char *name = gguf_str_dup(t->name);
        CHECK(gguf_writer_add_tensor(w, name, (ellm_type)t->type, t->n_dims, t->ne, t->data) ==
              EDGELLM_OK);
        free(name);
    }
    const char *out = test_tmp_path("roundtrip.gguf");
    CHECK(gguf_writer_write(w, out) == EDGELLM_OK);
    gguf_writer_free(w);
    CHECK_MSG(gguf_open(out, &dst) == EDGELLM_OK, "%s", edgellm_last_error());
    if (dst) {
        CHECK(gguf_kv_count(dst) == gguf_kv_count(src));
        for (uint64_t i = 0; i < gguf_kv_count(src); i++) {
            const gguf_kv *a = gguf_kv_at(src, i), *b = gguf_kv_at(dst, i);
            CHECK(a->key.len == b->key.len && !memcmp(a->key.data, b->key.data, a->key.len));
            CHECK_MSG(values_equal(&a->value, &b->value), "value of key %llu differs",
                      (unsigned long long)i);
        }
        CHECK(gguf_tensor_count(dst) == gguf_tensor_count(src));
        for (uint64_t i = 0; i < gguf_tensor_count(src); i++) {
            const gguf_tensor_info *a = gguf_tensor_at(src, i), *b = gguf_tensor_at(dst, i);
            CHECK(a->n_bytes == b->n_bytes && !memcmp(a->data, b->data, a->n_bytes));
            CHECK((uintptr_t)b->data % 32 == 0 || gguf_data_offset(dst) % 32 == 0);
        }
        gguf_close(dst);
    }
    gguf_close(src);
}

/* A small file using every value type, nested arrays and a custom alignment. */
static void test_all_value_types(void)
{
    gguf_writer *w = gguf_writer_create();
    CHECK(gguf_writer_set_u8(w, "t.u8", 200) == EDGELLM_OK);
    gguf_writer_set_i8(w, "t.i8", -100);
    gguf_writer_set_u16(w, "t.u16", 60000);
    gguf_writer_set_i16(w, "t.i16", -30000);
    gguf_writer_set_u32(w, "t.u32", 4000000000u);
    gguf_writer_set_i32(w, "t.i32", -2000000000);
    gguf_writer_set_u64(w, "t.u64", 1ull << 60);
    gguf_writer_set_i64(w, "t.i64", -(1ll << 60));
    gguf_writer_set_f32(w, "t.f32", 1.5f);
    gguf_writer_set_f64(w, "t.f64", -2.25);
    gguf_writer_set_bool(w, "t.bool", true);
    gguf_writer_set_str(w, "t.str", "héllo");
    int32_t ints[3] = {1, -2, 3};
    gguf_writer_set_array(w, "t.arr_i32", GGUF_TYPE_INT32, ints, 3);
    CHECK(gguf_writer_set_alignment(w, 64) == EDGELLM_OK);
    CHECK(gguf_writer_set_alignment(w, 48) == EDGELLM_ERR_INVALID_ARGUMENT);
    float data[64];
    for (int i = 0; i < 64; i++)
        data[i] = (float)i;
    uint64_t ne[2] = {32, 2};
    CHECK(gguf_writer_add_tensor(w, "a", ELLM_TYPE_F32, 2, ne, data) == EDGELLM_OK);
    CHECK(gguf_writer_add_tensor(w, "b", ELLM_TYPE_F32, 1, ne, data) == EDGELLM_OK);
    CHECK(gguf_writer_add_tensor(w, "a", ELLM_TYPE_F32, 1, ne, data) ==
          EDGELLM_ERR_INVALID_ARGUMENT);
    uint64_t odd[1] = {33};
    CHECK(gguf_writer_add_tensor(w, "q", ELLM_TYPE_Q8_0, 1, odd, data) ==
          EDGELLM_ERR_INVALID_ARGUMENT);
    const char *path = test_tmp_path("types.gguf");
    CHECK(gguf_writer_write(w, path) == EDGELLM_OK);
    gguf_writer_free(w);

    /* Nested arrays are written through set_value from a parsed array of arrays: build the
     * bytes by hand, since the writer's API takes parsed values for them. */
    gguf_file *f = NULL;
    CHECK_MSG(gguf_open(path, &f) == EDGELLM_OK, "%s", edgellm_last_error());
    if (!f)
        return;
    uint32_t u32;
    int32_t i32;
    uint64_t u64;
    float f32;
    bool b;
    gguf_str s;
    CHECK(gguf_get_u32(f, "t.u8", &u32) == EDGELLM_OK && u32 == 200);
    CHECK(gguf_get_i32(f, "t.i8", &i32) == EDGELLM_OK && i32 == -100);
    CHECK(gguf_get_u32(f, "t.u16", &u32) == EDGELLM_OK && u32 == 60000);
    CHECK(gguf_get_i32(f, "t.i16", &i32) == EDGELLM_OK && i32 == -30000);
    CHECK(gguf_get_u32(f, "t.u32", &u32) == EDGELLM_OK && u32 == 4000000000u);
    CHECK(gguf_get_i32(f, "t.i32", &i32) == EDGELLM_OK && i32 == -2000000000);
    CHECK(gguf_get_u64(f, "t.u64", &u64) == EDGELLM_OK && u64 == 1ull << 60);
    CHECK(gguf_get_u32(f, "t.u64", &u32) == EDGELLM_ERR_FORMAT); /* does not fit */
    CHECK(gguf_get_u32(f, "t.i8", &u32) == EDGELLM_ERR_FORMAT);  /* negative */
    CHECK(gguf_get_f32(f, "t.f32", &f32) == EDGELLM_OK && f32 == 1.5f);
    CHECK(gguf_get_f32(f, "t.f64", &f32) == EDGELLM_OK && f32 == -2.25f);
    CHECK(gguf_get_bool(f, "t.bool", &b) == EDGELLM_OK && b);
    CHECK(gguf_get_str(f, "t.str", &s) == EDGELLM_OK && gguf_str_eq(s, "héllo"));
    const gguf_array *arr;
    int64_t e;
    CHECK(gguf_get_array(f, "t.arr_i32", &arr) == EDGELLM_OK && arr->n == 3 &&
          gguf_array_get_i64(arr, 1, &e) && e == -2);
    CHECK(gguf_alignment(f) == 64 && gguf_data_offset(f) % 64 == 0);
    const gguf_tensor_info *tb = gguf_find_tensor(f, "b");
    CHECK(tb && tb->offset % 64 == 0 && !memcmp(tb->data, data, 32 * 4));
    char buf[256];
    gguf_value_format(&gguf_find_kv(f, "t.arr_i32")->value, buf, sizeof buf);
    CHECK(strcmp(buf, "[3 x int32] [1, -2, 3]") == 0);
    gguf_close(f);
}

/* ---- Hostile files, built byte by byte ---- */

typedef struct bytes {
    uint8_t *p;
    size_t n, cap;
} bytes;

static void put(bytes *b, const void *p, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
}
static void u32(bytes *b, uint32_t v) { put(b, &v, 4); }
static void u64(bytes *b, uint64_t v) { put(b, &v, 8); }
static void str(bytes *b, const char *s)
{
    u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void pad_to(bytes *b, size_t align)
{
    static const uint8_t z[64];
    while (b->n % align)
        put(b, z, 1);
}

/* A valid file: one string kv, one nested array kv, two F32 tensors. Returns its bytes. */
static bytes make_valid(void)
{
    bytes b = {0};
    put(&b, "GGUF", 4);
    u32(&b, 3);
    u64(&b, 2); /* tensors */
    u64(&b, 2); /* kvs */
    str(&b, "general.architecture");
    u32(&b, GGUF_TYPE_STRING);
    str(&b, "llama");
    str(&b, "nested");
    u32(&b, GGUF_TYPE_ARRAY);
    u32(&b, GGUF_TYPE_ARRAY);
    u64(&b, 2);
    for (int k = 0; k < 2; k++) {
        u32(&b, GGUF_TYPE_STRING);
        u64(&b, 1);
        str(&b, k ? "b" : "a");
    }
    str(&b, "t0");
    u32(&b, 2);
    u64(&b, 4);
    u64(&b, 2);
    u32(&b, ELLM_TYPE_F32);
    u64(&b, 0);
    str(&b, "t1");
    u32(&b, 1);
    u64(&b, 8);
    u32(&b, ELLM_TYPE_F32);
    u64(&b, 32);
    pad_to(&b, 32);
    float data[16] = {0};
    put(&b, data, 32);
    put(&b, data, 32);
    return b;
}

/* Offsets of fields in make_valid's output, found by scanning for known content. */
static size_t find(const bytes *b, const char *needle, size_t len)
{
    for (size_t i = 0; i + len <= b->n; i++)
        if (!memcmp(b->p + i, needle, len))
            return i;
    return (size_t)-1;
}

static int expect_failure(const uint8_t *data, size_t n, const char *keyword, const char *what)
{
    gguf_file *f = NULL;
    edgellm_status st = gguf_parse(data, n, &f);
    bool ok = st != EDGELLM_OK && f == NULL && edgellm_last_error()[0] != '\0' &&
              (!keyword || strstr(edgellm_last_error(), keyword));
    CHECK_MSG(ok, "%s: status %d, message '%s' (expected '%s')", what, st, edgellm_last_error(),
              keyword ? keyword : "");
    gguf_close(f);
    return ok;
}

static void test_hostile(void)
{
    bytes v = make_valid();
    gguf_file *f = NULL;
    CHECK_MSG(gguf_parse(v.p, v.n, &f) == EDGELLM_OK, "%s", edgellm_last_error());
    gguf_close(f);

    /* Truncated at every byte: the header/metadata/infos region, and inside the data. */
    int truncations = 0;
    for (size_t cut = 0; cut < v.n; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1);
        memcpy(copy, v.p, cut);
        truncations += expect_failure(copy, cut, NULL, "truncated file");
        free(copy);
    }
    CHECK(truncations == (int)v.n);

    bytes m;
#define MUTATE(offset, type, value, keyword, what)                                          \
    do {                                                                                    \
        m.p = malloc(v.n);                                                                  \
        m.n = v.n;                                                                          \
        memcpy(m.p, v.p, v.n);                                                              \
        type val_ = (value);                                                                \
        memcpy(m.p + (offset), &val_, sizeof val_);                                         \
        expect_failure(m.p, m.n, keyword, what);                                            \
        free(m.p);                                                                          \
    } while (0)
    MUTATE(0, uint32_t, 0x4C4D4747u /* "GGML" */, "not a GGUF file", "bad magic");
    MUTATE(4, uint32_t, 1, "version 1", "version 1");
    MUTATE(4, uint32_t, 4, "version 4", "version 4");
    MUTATE(8, uint64_t, UINT64_MAX, "tensors", "absurd tensor count");
    MUTATE(16, uint64_t, 1ull << 62, "metadata entries", "absurd kv count");
    size_t key0 = find(&v, "general.architecture", 20) - 8;
    MUTATE(key0, uint64_t, 1ull << 40, "truncated", "key length past end");
    MUTATE(key0, uint64_t, 0, "empty key", "empty key");
    MUTATE(key0 + 8, uint8_t, 0xFF, "UTF-8", "non-UTF-8 key");
    size_t type0 = key0 + 8 + 20;
    MUTATE(type0, uint32_t, 99, "not a GGUF type", "unknown value type");
    size_t arr = find(&v, "nested", 6) + 6;
    MUTATE(arr + 4, uint32_t, 77, "element type", "unknown array element type");
    MUTATE(arr + 8, uint64_t, UINT64_MAX / 2, "array claims", "absurd array length");
    size_t t0 = find(&v, "t0", 2);
    MUTATE(t0 + 2, uint32_t, 0, "dimensions", "zero dims");
    MUTATE(t0 + 2, uint32_t, 5, "dimensions", "five dims");
    MUTATE(t0 + 6, uint64_t, 0, "dimension 0", "zero-size dimension");
    MUTATE(t0 + 6, uint64_t, 1ull << 62, "overflows", "dimension product overflow");
    MUTATE(t0 + 22, uint32_t, 31, "unknown type", "removed type number");
    MUTATE(t0 + 22, uint32_t, 1000, "unknown type", "unknown tensor type");
    MUTATE(t0 + 22, uint32_t, ELLM_TYPE_Q4_0, "multiple of", "row not a multiple of the block");
    MUTATE(t0 + 26, uint64_t, 8, "alignment", "misaligned offset");
    MUTATE(t0 + 26, uint64_t, 1ull << 50, "past the end", "offset past the end");
    MUTATE(t0 + 26, uint64_t, UINT64_MAX - 31, "past the end", "offset that overflows");
    MUTATE(t0 + 26, uint64_t, 32, "overlap", "overlapping tensors");
    size_t t1 = find(&v, "t1", 2);
    MUTATE(t1, uint16_t, 0x3074 /* "t0" */, "twice", "duplicate tensor name");
#undef MUTATE

    /* Duplicate keys and a bad general.alignment need re-built files. */
    bytes d = {0};
    put(&d, "GGUF", 4);
    u32(&d, 3);
    u64(&d, 0);
    u64(&d, 2);
    for (int k = 0; k < 2; k++) {
        str(&d, "dup");
        u32(&d, GGUF_TYPE_UINT32);
        u32(&d, 1);
    }
    expect_failure(d.p, d.n, "twice", "duplicate key");
    d.n = 0;
    put(&d, "GGUF", 4);
    u32(&d, 3);
    u64(&d, 0);
    u64(&d, 1);
    str(&d, "general.alignment");
    u32(&d, GGUF_TYPE_UINT32);
    u32(&d, 24);
    expect_failure(d.p, d.n, "power of two", "alignment not a power of two");
    d.n = 0;
    put(&d, "GGUF", 4);
    u32(&d, 3);
    u64(&d, 0);
    u64(&d, 1);
    str(&d, "general.alignment");
    u32(&d, GGUF_TYPE_STRING);
    str(&d, "32");
    expect_failure(d.p, d.n, "alignment", "alignment of the wrong type");
    /* Arrays nested deeper than the limit. */
    d.n = 0;
    put(&d, "GGUF", 4);
    u32(&d, 3);
    u64(&d, 0);
    u64(&d, 1);
    str(&d, "deep");
    u32(&d, GGUF_TYPE_ARRAY);
    for (int k = 0; k < 20; k++) {
        u32(&d, GGUF_TYPE_ARRAY);
        u64(&d, 1);
    }
    u32(&d, GGUF_TYPE_UINT8);
    u64(&d, 0);
    expect_failure(d.p, d.n, "nested", "deep nesting");
    free(d.p);

    /* Random mutations: each must either parse into something consistent or fail cleanly. */
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    int parsed = 0, failed = 0;
    for (int iter = 0; iter < 20000; iter++) {
        uint8_t *copy = malloc(v.n);
        memcpy(copy, v.p, v.n);
        int flips = 1 + (int)(rng % 4);
        for (int k = 0; k < flips; k++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            copy[(rng >> 33) % v.n] = (uint8_t)(rng >> 20);
        }
        gguf_file *g = NULL;
        if (gguf_parse(copy, v.n, &g) == EDGELLM_OK) {
            parsed++;
            for (uint64_t i = 0; i < gguf_tensor_count(g); i++) {
                const gguf_tensor_info *t = gguf_tensor_at(g, i);
                const uint8_t *end = (const uint8_t *)t->data + t->n_bytes;
                CHECK(end <= copy + v.n && (const uint8_t *)t->data >= copy);
            }
            char buf[128];
            for (uint64_t i = 0; i < gguf_kv_count(g); i++)
                gguf_value_format(&gguf_kv_at(g, i)->value, buf, sizeof buf);
            gguf_close(g);
        } else {
            failed++;
            CHECK(g == NULL && edgellm_last_error()[0] != '\0');
        }
        free(copy);
    }
    fprintf(stderr, "random mutations: %d parsed, %d rejected\n", parsed, failed);
    CHECK(parsed + failed == 20000);
    free(v.p);
}

int main(void)
{
    test_shared_files();
    test_round_trip();
    test_all_value_types();
    test_hostile();
    return test_finish("test_gguf");
}
