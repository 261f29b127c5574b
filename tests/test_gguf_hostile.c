/* Hostile GGUF files, generated here byte by byte: every one must be refused with a status and a
 * message naming the problem, and nothing may read outside the buffer (the sanitizer build of
 * this test proves that part). Random mutations must parse into something consistent or fail
 * cleanly. */
#include <stdlib.h>
#include <string.h>

#include "core/tensor_types.h"
#include "gguf/gguf.h"
#include "test_util.h"

typedef struct bytes {
    uint8_t *p;
    size_t n, cap;
} bytes;

static void put(bytes *b, const void *p, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p) {
            fprintf(stderr, "out of memory\n");
            exit(1);
        }
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
}
/* The test host is little-endian, like the format. */
static void u32(bytes *b, uint32_t v) { put(b, &v, 4); }
static void u64(bytes *b, uint64_t v) { put(b, &v, 8); }
static void str(bytes *b, const char *s)
{
    u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void pad_to(bytes *b, size_t align)
{
    static const uint8_t zero;
    while (b->n % align)
        put(b, &zero, 1);
}
static void header(bytes *b, uint64_t n_tensors, uint64_t n_kv)
{
    b->n = 0;
    put(b, "GGUF", 4);
    u32(b, 3);
    u64(b, n_tensors);
    u64(b, n_kv);
}

/* A valid file: a string kv, a nested array of string arrays, a bool, and two F32 tensors. */
static bytes make_valid(void)
{
    bytes b = {0};
    header(&b, 2, 3);
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
    str(&b, "flag");
    u32(&b, GGUF_TYPE_BOOL);
    put(&b, "\1", 1);
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
    float data[16];
    for (int i = 0; i < 16; i++)
        data[i] = (float)i;
    put(&b, data, sizeof data);
    return b;
}

static size_t find(const bytes *b, const char *needle, size_t len)
{
    for (size_t i = 0; i + len <= b->n; i++)
        if (!memcmp(b->p + i, needle, len))
            return i;
    fprintf(stderr, "make_valid no longer contains '%.*s'\n", (int)len, needle);
    exit(1);
}

/* Parses a private copy of exactly n bytes (so ASan sees any read past them) and checks the
 * failure. */
static int expect_failure(const uint8_t *data, size_t n, edgellm_status want, const char *keyword,
                          const char *what)
{
    uint8_t *copy = malloc(n ? n : 1);
    if (n)
        memcpy(copy, data, n);
    gguf_file *f = NULL;
    edgellm_status st = ellm_gguf_parse(copy, n, &f);
    const char *msg = edgellm_last_error();
    bool ok = st == want && f == NULL && msg[0] != '\0' && (!keyword || strstr(msg, keyword));
    CHECK_MSG(ok, "%s: status %d (want %d), message '%s' (want '%s')", what, st, want, msg,
              keyword ? keyword : "");
    ellm_gguf_close(f);
    free(copy);
    return ok;
}

static void test_truncations_of_small_file(const bytes *v)
{
    int refused = 0;
    for (size_t cut = 0; cut < v->n; cut++)
        refused += expect_failure(v->p, cut, EDGELLM_ERR_FORMAT,
                                  cut < 4 ? "not a GGUF file" : "truncated", "truncated file");
    CHECK(refused == (int)v->n);
}

/* Writes `value` (little-endian, sizeof value bytes) at offset into a copy and expects failure. */
#define MUTATE(v, offset, type, value, want, keyword, what)                                        \
    do {                                                                                           \
        uint8_t *m_ = malloc((v).n);                                                               \
        memcpy(m_, (v).p, (v).n);                                                                  \
        type val_ = (value);                                                                       \
        memcpy(m_ + (offset), &val_, sizeof val_);                                                 \
        expect_failure(m_, (v).n, want, keyword, what);                                            \
        free(m_);                                                                                  \
    } while (0)

static void test_crafted_fields(const bytes *v)
{
    const edgellm_status FMT = EDGELLM_ERR_FORMAT;
    MUTATE(*v, 0, uint32_t, 0x4C4D4747u /* "GGML" */, FMT, "not a GGUF file", "bad magic");
    MUTATE(*v, 4, uint32_t, 1, EDGELLM_ERR_UNSUPPORTED, "version 1", "version 1");
    MUTATE(*v, 4, uint32_t, 4, EDGELLM_ERR_UNSUPPORTED, "version 4", "version 4");
    MUTATE(*v, 4, uint32_t, 0x03000000u, EDGELLM_ERR_UNSUPPORTED, "big-endian", "big-endian file");
    MUTATE(*v, 8, uint64_t, UINT64_MAX, FMT, "tensors", "absurd tensor count");
    MUTATE(*v, 8, uint64_t, 3, FMT, NULL, "one tensor more than present");
    MUTATE(*v, 16, uint64_t, 1ull << 63, FMT, "metadata entries", "kv count 2^63");
    MUTATE(*v, 16, uint64_t, 4, FMT, NULL, "one kv more than present");

    size_t key0 = find(v, "general.architecture", 20) - 8;
    MUTATE(*v, key0, uint64_t, 1ull << 40, FMT, "truncated", "key length past the end");
    MUTATE(*v, key0, uint64_t, UINT64_MAX, FMT, "truncated", "key length 2^64-1");
    MUTATE(*v, key0, uint64_t, 0, FMT, "empty key", "empty key");
    MUTATE(*v, key0 + 8, uint8_t, 0xFF, FMT, "UTF-8", "key with byte 0xFF");
    MUTATE(*v, key0 + 8, uint16_t, 0x80C0, FMT, "UTF-8", "key with an overlong encoding");
    MUTATE(*v, key0 + 8, uint8_t, 0xE0, FMT, "UTF-8", "key with a cut sequence");
    MUTATE(*v, key0 + 8, uint8_t, 0x80, FMT, "UTF-8", "key with a stray continuation byte");
    size_t type0 = key0 + 8 + 20;
    MUTATE(*v, type0, uint32_t, 13, FMT, "not a GGUF type", "value type 13");
    MUTATE(*v, type0, uint32_t, UINT32_MAX, FMT, "not a GGUF type", "value type 2^32-1");
    MUTATE(*v, type0 + 4, uint64_t, 1ull << 62, FMT, "truncated", "string value past the end");

    size_t arr = find(v, "nested", 6) + 6;
    MUTATE(*v, arr + 4, uint32_t, 77, FMT, "element type", "unknown array element type");
    MUTATE(*v, arr + 8, uint64_t, UINT64_MAX / 2, FMT, "array claims", "absurd array length");
    MUTATE(*v, arr + 8, uint64_t, 3, FMT, NULL, "array one longer than present");
    MUTATE(*v, arr + 16 + 4, uint64_t, 1ull << 61, FMT, "array claims", "inner array length");
    MUTATE(*v, arr + 16, uint32_t, GGUF_TYPE_UINT64, FMT, NULL, "inner strings read as uint64");
    MUTATE(*v, arr + 16, uint32_t, GGUF_TYPE_UINT32, FMT, NULL, "inner strings read as uint32");

    size_t flag = find(v, "flag", 4) + 4;
    MUTATE(*v, flag + 4, uint8_t, 2, FMT, "neither 0 nor 1", "bool value 2");

    size_t t0 = find(v, "t0", 2);
    MUTATE(*v, t0 - 8, uint64_t, 0, FMT, "empty", "empty tensor name");
    MUTATE(*v, t0, uint8_t, 0xC3, FMT, "UTF-8", "non-UTF-8 tensor name");
    MUTATE(*v, t0 + 2, uint32_t, 0, FMT, "dimensions", "zero dims");
    MUTATE(*v, t0 + 2, uint32_t, 5, FMT, "dimensions", "five dims");
    MUTATE(*v, t0 + 2, uint32_t, UINT32_MAX, FMT, "dimensions", "2^32-1 dims");
    MUTATE(*v, t0 + 6, uint64_t, 0, FMT, "dimension 0", "zero-size dimension");
    MUTATE(*v, t0 + 6, uint64_t, 1ull << 63, FMT, "dimension 0", "dimension 2^63");
    MUTATE(*v, t0 + 6, uint64_t, 1ull << 62, FMT, "overflows", "dimension product overflow");
    MUTATE(*v, t0 + 6, uint64_t, 1ull << 60, FMT, "past the end", "huge but representable size");
    MUTATE(*v, t0 + 22, uint32_t, 4, FMT, "unknown type", "removed type number Q4_2");
    MUTATE(*v, t0 + 22, uint32_t, 1000, FMT, "unknown type", "unknown tensor type");
    MUTATE(*v, t0 + 22, uint32_t, ELLM_TYPE_Q4_0, FMT, "multiple of", "row not a block multiple");
    MUTATE(*v, t0 + 26, uint64_t, 8, FMT, "alignment", "misaligned offset");
    MUTATE(*v, t0 + 26, uint64_t, 1ull << 50, FMT, "past the end", "offset past the end");
    MUTATE(*v, t0 + 26, uint64_t, UINT64_MAX - 31, FMT, "past the end", "offset that overflows");
    MUTATE(*v, t0 + 26, uint64_t, 32, FMT, "overlap", "overlapping tensors");
    MUTATE(*v, t0 + 26, uint64_t, 64, FMT, "past the end", "tensor moved past the end");
    size_t t1 = find(v, "t1", 2);
    MUTATE(*v, t1, uint16_t, 0x3074 /* "t0" */, FMT, "appears twice", "duplicate tensor name");
    MUTATE(*v, t1 + 2 + 4 + 8 + 4, uint64_t, 0, FMT, "overlap", "second tensor at offset 0");
}

static void test_built_files(void)
{
    const edgellm_status FMT = EDGELLM_ERR_FORMAT;
    bytes d = {0};

    header(&d, 0, 2);
    for (int k = 0; k < 2; k++) {
        str(&d, "dup");
        u32(&d, GGUF_TYPE_UINT32);
        u32(&d, 1);
    }
    expect_failure(d.p, d.n, FMT, "'dup' appears twice", "duplicate key");

    const struct {
        uint32_t type;
        uint64_t value;
        const char *keyword;
    } alignments[] = {
        {GGUF_TYPE_UINT32, 24, "power of two"},
        {GGUF_TYPE_UINT32, 0, "power of two"},
        {GGUF_TYPE_UINT32, 1u << 31, "power of two"},
        {GGUF_TYPE_UINT64, 1ull << 40, "power"},
        {GGUF_TYPE_INT32, (uint32_t)-32, "alignment"},
        {GGUF_TYPE_FLOAT32, 0x42000000, "alignment"},
        {GGUF_TYPE_BOOL, 1, "alignment"},
    };
    for (size_t i = 0; i < sizeof alignments / sizeof alignments[0]; i++) {
        header(&d, 0, 1);
        str(&d, "general.alignment");
        u32(&d, alignments[i].type);
        if (alignments[i].type == GGUF_TYPE_UINT64)
            u64(&d, alignments[i].value);
        else if (alignments[i].type == GGUF_TYPE_BOOL)
            put(&d, "\1", 1);
        else
            u32(&d, (uint32_t)alignments[i].value);
        expect_failure(d.p, d.n, FMT, alignments[i].keyword, "bad general.alignment");
    }
    header(&d, 0, 1);
    str(&d, "general.alignment");
    u32(&d, GGUF_TYPE_STRING);
    str(&d, "32");
    expect_failure(d.p, d.n, FMT, "general.alignment has type string", "alignment as a string");

    /* A valid alignment that the tensor offsets then violate. */
    header(&d, 1, 1);
    str(&d, "general.alignment");
    u32(&d, GGUF_TYPE_UINT32);
    u32(&d, 64);
    str(&d, "w");
    u32(&d, 1);
    u64(&d, 8);
    u32(&d, ELLM_TYPE_F32);
    u64(&d, 32);
    pad_to(&d, 64);
    for (int i = 0; i < 4; i++)
        u64(&d, 0);
    expect_failure(d.p, d.n, FMT, "multiple of the alignment 64", "offset aligned to 32 not 64");

    /* Arrays nested deeper than the limit, and a long run of zero-length nested arrays. */
    header(&d, 0, 1);
    str(&d, "deep");
    u32(&d, GGUF_TYPE_ARRAY);
    for (int k = 0; k < 20; k++) {
        u32(&d, GGUF_TYPE_ARRAY);
        u64(&d, 1);
    }
    u32(&d, GGUF_TYPE_UINT8);
    u64(&d, 0);
    expect_failure(d.p, d.n, FMT, "nested deeper", "deep nesting");

    /* Header promising a data section that the file does not reach. */
    header(&d, 1, 0);
    str(&d, "w");
    u32(&d, 1);
    u64(&d, 8);
    u32(&d, ELLM_TYPE_F32);
    u64(&d, 0);
    expect_failure(d.p, d.n, FMT, "truncated", "no data section at all");
    pad_to(&d, 32);
    u64(&d, 0);
    expect_failure(d.p, d.n, FMT, "'w': data [", "data cut short");

    /* The smallest valid files: header only, and a kv without tensors. */
    gguf_file *f = NULL;
    header(&d, 0, 0);
    CHECK_MSG(ellm_gguf_parse(d.p, d.n, &f) == EDGELLM_OK, "%s", edgellm_last_error());
    CHECK(f && ellm_gguf_kv_count(f) == 0 && ellm_gguf_tensor_count(f) == 0);
    ellm_gguf_close(f);
    free(d.p);
}

/* The real model file cut at every byte of its header/metadata/tensor-info region and at and
 * around every tensor boundary in the data. */
static void test_truncations_of_model(void)
{
    size_t size = 0;
    uint8_t *file = (uint8_t *)test_read_file(test_shared_path("models/aidreams260K-f32.gguf"),
                                              &size);
    CHECK(file != NULL);
    if (!file)
        return;
    gguf_file *f = NULL;
    CHECK(ellm_gguf_parse(file, size, &f) == EDGELLM_OK);
    if (!f) {
        free(file);
        return;
    }
    size_t data_offset = (size_t)ellm_gguf_data_offset(f);
    int refused = 0, tried = 0;
    for (size_t cut = 0; cut < data_offset; cut++, tried++)
        refused += expect_failure(file, cut, EDGELLM_ERR_FORMAT,
                                  cut < 4 ? "not a GGUF" : "truncated", "truncated header");
    for (uint64_t i = 0; i < ellm_gguf_tensor_count(f); i++) {
        const gguf_tensor_info *t = ellm_gguf_tensor_at(f, i);
        size_t start = data_offset + (size_t)t->offset, end = start + (size_t)t->n_bytes;
        size_t cuts[] = {start, start + 1, end - 1};
        for (size_t k = 0; k < 3; k++, tried++) {
            char want[128];
            /* The first tensor past the cut that comes first in the info table is named. */
            uint64_t first = i;
            for (uint64_t j = 0; j < i; j++) {
                const gguf_tensor_info *o = ellm_gguf_tensor_at(f, j);
                if (data_offset + o->offset + o->n_bytes > cuts[k]) {
                    first = j;
                    break;
                }
            }
            const gguf_tensor_info *named = ellm_gguf_tensor_at(f, first);
            snprintf(want, sizeof want, "tensor '%.*s': data [", (int)named->name.len,
                     named->name.data);
            refused += expect_failure(file, cuts[k], EDGELLM_ERR_FORMAT, want, "truncated data");
        }
    }
    CHECK(refused == tried);
    /* The exact message promised to users, on the last tensor. */
    const gguf_tensor_info *last = ellm_gguf_tensor_at(f, ellm_gguf_tensor_count(f) - 1);
    uint8_t *shorter = malloc(size - 1);
    memcpy(shorter, file, size - 1);
    gguf_file *g = NULL;
    CHECK(ellm_gguf_parse(shorter, size - 1, &g) == EDGELLM_ERR_FORMAT);
    char want[256];
    snprintf(want, sizeof want,
             "tensor 'output.weight': data [%llu..%llu) runs past the end of the file (size "
             "%llu): the file is truncated; re-download or re-convert it",
             (unsigned long long)(data_offset + last->offset),
             (unsigned long long)(data_offset + last->offset + last->n_bytes),
             (unsigned long long)(size - 1));
    CHECK_MSG(strcmp(edgellm_last_error(), want) == 0, "got '%s'", edgellm_last_error());
    free(shorter);
    fprintf(stderr, "model truncations: %d of %d refused\n", refused, tried);
    ellm_gguf_close(f);
    free(file);
}

/* Every view of a parsed file must stay inside the buffer and agree with itself. */
static void check_consistent(const gguf_file *g, const uint8_t *buf, size_t n)
{
    CHECK(ellm_gguf_data_offset(g) <= n && ellm_gguf_data_offset(g) % ellm_gguf_alignment(g) == 0);
    for (uint64_t i = 0; i < ellm_gguf_tensor_count(g); i++) {
        const gguf_tensor_info *t = ellm_gguf_tensor_at(g, i);
        const uint8_t *start = t->data;
        CHECK(start >= buf + ellm_gguf_data_offset(g) && t->n_bytes <= n &&
              start + t->n_bytes <= buf + n);
        CHECK(t->n_dims >= 1 && t->n_dims <= GGUF_MAX_DIMS && ellm_type_traits_of(t->type));
        uint64_t n_el = 1;
        for (int d = 0; d < GGUF_MAX_DIMS; d++)
            n_el *= t->ne[d];
        CHECK(n_el == t->n_elements && t->offset % ellm_gguf_alignment(g) == 0);
        for (uint64_t j = 0; j < i; j++) {
            const gguf_tensor_info *o = ellm_gguf_tensor_at(g, j);
            CHECK(o->offset + o->n_bytes <= t->offset || t->offset + t->n_bytes <= o->offset);
            CHECK(o->name.len != t->name.len || memcmp(o->name.data, t->name.data, t->name.len));
        }
    }
    char text[256];
    for (uint64_t i = 0; i < ellm_gguf_kv_count(g); i++) {
        const gguf_kv *kv = ellm_gguf_kv_at(g, i);
        CHECK(kv->key.len > 0 && (const uint8_t *)kv->key.data >= buf &&
              (const uint8_t *)kv->key.data + kv->key.len <= buf + n);
        ellm_gguf_value_format(&kv->value, text, sizeof text);
        CHECK(strlen(text) < sizeof text);
    }
}

static void test_random_mutations(const bytes *v)
{
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    int parsed = 0, refused = 0;
    const int rounds = 20000;
    uint8_t *copy = malloc(v->n);
    for (int iter = 0; iter < rounds; iter++) {
        memcpy(copy, v->p, v->n);
        int flips = 1 + (int)(rng % 4);
        for (int k = 0; k < flips; k++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            copy[(rng >> 33) % v->n] = (uint8_t)(rng >> 20);
        }
        /* Some rounds also cut the tail, so mutations meet truncation. */
        size_t n = iter % 5 == 0 ? (size_t)((rng >> 11) % (v->n + 1)) : v->n;
        uint8_t *exact = malloc(n ? n : 1);
        memcpy(exact, copy, n);
        gguf_file *g = NULL;
        edgellm_status st = ellm_gguf_parse(exact, n, &g);
        if (st == EDGELLM_OK) {
            parsed++;
            check_consistent(g, exact, n);
            ellm_gguf_close(g);
        } else {
            refused++;
            CHECK(g == NULL && edgellm_last_error()[0] != '\0' &&
                  (st == EDGELLM_ERR_FORMAT || st == EDGELLM_ERR_UNSUPPORTED));
        }
        free(exact);
    }
    free(copy);
    fprintf(stderr, "random mutations: %d parsed, %d refused\n", parsed, refused);
    CHECK(parsed + refused == rounds && parsed > 0 && refused > 0);
}

int main(void)
{
    bytes v = make_valid();
    gguf_file *f = NULL;
    CHECK_MSG(ellm_gguf_parse(v.p, v.n, &f) == EDGELLM_OK, "%s", edgellm_last_error());
    CHECK(f && ellm_gguf_kv_count(f) == 3 && ellm_gguf_tensor_count(f) == 2);
    ellm_gguf_close(f);

    test_truncations_of_small_file(&v);
    test_crafted_fields(&v);
    test_built_files();
    test_truncations_of_model();
    test_random_mutations(&v);
    free(v.p);
    return test_finish("test_gguf_hostile");
}
