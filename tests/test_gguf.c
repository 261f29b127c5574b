/* GGUF reader and writer: files written by another runtime (facts read from them with an
 * independent Python decoder of the format), round trips through the writer, every value type and
 * nested arrays. Hostile files are in test_gguf_hostile.c. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "core/tensor_types.h"
#include "gguf/gguf.h"
#include "test_util.h"

static void test_shared_files(void)
{
    gguf_file *f = NULL;
    edgellm_status st = ellm_gguf_open(test_shared_path("models/aidreams260K-f32.gguf"), &f);
    CHECK_MSG(st == EDGELLM_OK, "%s", edgellm_last_error());
    if (f) {
        CHECK(ellm_gguf_version(f) == 3);
        gguf_str arch;
        CHECK(ellm_gguf_get_str(f, "general.architecture", &arch) == EDGELLM_OK &&
              ellm_gguf_str_eq(arch, "llama"));
        uint32_t v = 0;
        CHECK(ellm_gguf_get_u32(f, "llama.embedding_length", &v) == EDGELLM_OK && v == 64);
        CHECK(ellm_gguf_get_u32(f, "llama.feed_forward_length", &v) == EDGELLM_OK && v == 172);
        const gguf_array *tokens;
        CHECK(ellm_gguf_get_array(f, "tokenizer.ggml.tokens", &tokens) == EDGELLM_OK &&
              tokens->n == 512 && tokens->elem_type == GGUF_TYPE_STRING &&
              ellm_gguf_str_eq(tokens->strings[1], "<s>"));
        CHECK(ellm_gguf_tensor_count(f) == 39);
        const gguf_tensor_info *t = ellm_gguf_find_tensor(f, "blk.0.ffn_down.weight");
        CHECK(t && t->ne[0] == 172 && t->ne[1] == 64 && t->type == ELLM_TYPE_F32 &&
              t->n_bytes == 172 * 64 * 4);
        CHECK(ellm_gguf_get_u32(f, "general.architecture", &v) == EDGELLM_ERR_FORMAT);
        CHECK(strstr(edgellm_last_error(), "general.architecture") != NULL);
        CHECK(ellm_gguf_get_u32(f, "no.such.key", &v) == EDGELLM_ERR_NOT_FOUND);
        ellm_gguf_close(f);
    }
    st = ellm_gguf_open(test_shared_path("models/llama2-vocab-tiny-f16.gguf"), &f);
    CHECK_MSG(st == EDGELLM_OK, "%s", edgellm_last_error());
    if (f) {
        CHECK(ellm_gguf_version(f) == 3 && ellm_gguf_kv_count(f) == 21 &&
              ellm_gguf_tensor_count(f) == 21);
        CHECK(ellm_gguf_alignment(f) == 32 && ellm_gguf_data_offset(f) == 725056);
        CHECK(ellm_gguf_file_size(f) == 9180480);
        gguf_str name;
        CHECK(ellm_gguf_get_str(f, "general.name", &name) == EDGELLM_OK &&
              ellm_gguf_str_eq(name, "synth"));
        uint32_t v = 0;
        CHECK(ellm_gguf_get_u32(f, "llama.block_count", &v) == EDGELLM_OK && v == 2);
        CHECK(ellm_gguf_get_u32(f, "llama.context_length", &v) == EDGELLM_OK && v == 512);
        CHECK(ellm_gguf_get_u32(f, "general.file_type", &v) == EDGELLM_OK && v == 1);
        const gguf_array *tokens, *scores, *types;
        CHECK(ellm_gguf_get_array(f, "tokenizer.ggml.tokens", &tokens) == EDGELLM_OK &&
              tokens->n == 32000 && ellm_gguf_str_eq(tokens->strings[2], "</s>"));
        CHECK(ellm_gguf_get_array(f, "tokenizer.ggml.scores", &scores) == EDGELLM_OK &&
              scores->n == 32000 && scores->elem_type == GGUF_TYPE_FLOAT32);
        int64_t tt = -1;
        CHECK(ellm_gguf_get_array(f, "tokenizer.ggml.token_type", &types) == EDGELLM_OK &&
              types->elem_type == GGUF_TYPE_INT32 && ellm_gguf_array_get_i64(types, 0, &tt) &&
              tt == 2);
        bool add_bos = false;
        CHECK(ellm_gguf_get_bool(f, "tokenizer.ggml.add_bos_token", &add_bos) == EDGELLM_OK &&
              add_bos);
        const gguf_tensor_info *emb = ellm_gguf_find_tensor(f, "token_embd.weight");
        CHECK(emb && emb->type == ELLM_TYPE_F16 && emb->n_dims == 2 && emb->ne[0] == 64 &&
              emb->ne[1] == 32000 && emb->ne[2] == 1 && emb->n_bytes == 64 * 32000 * 2 &&
              emb->offset == 0);
        const gguf_tensor_info *out = ellm_gguf_find_tensor(f, "output.weight");
        CHECK(out && out->offset == 4359424 && out->type == ELLM_TYPE_F16);
        const gguf_tensor_info *norm = ellm_gguf_find_tensor(f, "blk.0.attn_norm.weight");
        CHECK(norm && norm->type == ELLM_TYPE_F32 && norm->offset == 4096000 &&
              (const uint8_t *)norm->data == (const uint8_t *)emb->data + 4096000);
        char text[512];
        ellm_gguf_value_format(&ellm_gguf_find_kv(f, "tokenizer.ggml.tokens")->value, text,
                               sizeof text);
        const char *want = "[32000 \u00d7 string] [\"<unk>\", \"<s>\", \"</s>\", ";
        CHECK_MSG(strncmp(text, want, strlen(want)) == 0, "%s", text);
        ellm_gguf_close(f);
    }
    CHECK(ellm_gguf_open(test_shared_path("models/no-such-file.gguf"), &f) == EDGELLM_ERR_IO);
    CHECK(strstr(edgellm_last_error(), "no-such-file") != NULL);
    CHECK(ellm_gguf_open(test_shared_path("models/aidreams260K.bin"), &f) == EDGELLM_ERR_FORMAT);
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
                bool ok_i = ellm_gguf_array_get_i64(x, i, &ia) &&
                            ellm_gguf_array_get_i64(y, i, &ib);
                if (ok_i && ia != ib)
                    return false;
                if (!ok_i && ellm_gguf_array_get_f32(x, i, &fa) &&
                    ellm_gguf_array_get_f32(y, i, &fb) && memcmp(&fa, &fb, 4) != 0)
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
    if (ellm_gguf_open(test_shared_path("models/aidreams260K-f32.gguf"), &src) != EDGELLM_OK) {
        CHECK(0);
        return;
    }
    gguf_writer *w = ellm_gguf_writer_create();
    for (uint64_t i = 0; i < ellm_gguf_kv_count(src); i++) {
        const gguf_kv *kv = ellm_gguf_kv_at(src, i);
        char *key = ellm_gguf_str_dup(kv->key);
        CHECK(ellm_gguf_writer_set_value(w, key, &kv->value) == EDGELLM_OK);
        free(key);
    }
    for (uint64_t i = 0; i < ellm_gguf_tensor_count(src); i++) {
        const gguf_tensor_info *t = ellm_gguf_tensor_at(src, i);
        char *name = ellm_gguf_str_dup(t->name);
        CHECK(ellm_gguf_writer_add_tensor(w, name, (ellm_type)t->type, t->n_dims, t->ne, t->data) ==
              EDGELLM_OK);
        free(name);
    }
    const char *out = test_tmp_path("roundtrip.gguf");
    CHECK(ellm_gguf_writer_write(w, out) == EDGELLM_OK);
    ellm_gguf_writer_free(w);
    CHECK_MSG(ellm_gguf_open(out, &dst) == EDGELLM_OK, "%s", edgellm_last_error());
    if (dst) {
        CHECK(ellm_gguf_kv_count(dst) == ellm_gguf_kv_count(src));
        for (uint64_t i = 0; i < ellm_gguf_kv_count(src); i++) {
            const gguf_kv *a = ellm_gguf_kv_at(src, i), *b = ellm_gguf_kv_at(dst, i);
            CHECK(a->key.len == b->key.len && !memcmp(a->key.data, b->key.data, a->key.len));
            CHECK_MSG(values_equal(&a->value, &b->value), "value of key %llu differs",
                      (unsigned long long)i);
        }
        CHECK(ellm_gguf_tensor_count(dst) == ellm_gguf_tensor_count(src));
        for (uint64_t i = 0; i < ellm_gguf_tensor_count(src); i++) {
            const gguf_tensor_info *a = ellm_gguf_tensor_at(src, i),
                                   *b = ellm_gguf_tensor_at(dst, i);
            CHECK(a->n_bytes == b->n_bytes && !memcmp(a->data, b->data, a->n_bytes));
            CHECK(a->type == b->type && a->n_dims == b->n_dims &&
                  !memcmp(a->ne, b->ne, sizeof a->ne) && b->offset % 32 == 0);
        }
        ellm_gguf_close(dst);
    }
    /* The reference file was written by llama.cpp's converter with the same layout rules (keys
     * and tensors in order, 32-byte alignment, tensors packed), so the copy is byte-identical. */
    size_t n_ref = 0, n_out = 0;
    char *ref = test_read_file(test_shared_path("models/aidreams260K-f32.gguf"), &n_ref);
    char *copy = test_read_file(out, &n_out);
    CHECK_MSG(ref && copy && n_ref == n_out && !memcmp(ref, copy, n_ref),
              "copy differs from the reference (%zu vs %zu bytes)", n_ref, n_out);
    free(ref);
    free(copy);
    ellm_gguf_close(src);
}

/* A small file using every value type, nested arrays and a custom alignment. */
static void test_all_value_types(void)
{
    gguf_writer *w = ellm_gguf_writer_create();
    CHECK(ellm_gguf_writer_set_u8(w, "t.u8", 200) == EDGELLM_OK);
    ellm_gguf_writer_set_i8(w, "t.i8", -100);
    ellm_gguf_writer_set_u16(w, "t.u16", 60000);
    ellm_gguf_writer_set_i16(w, "t.i16", -30000);
    ellm_gguf_writer_set_u32(w, "t.u32", 4000000000u);
    ellm_gguf_writer_set_i32(w, "t.i32", -2000000000);
    ellm_gguf_writer_set_u64(w, "t.u64", 1ull << 60);
    ellm_gguf_writer_set_i64(w, "t.i64", -(1ll << 60));
    ellm_gguf_writer_set_f32(w, "t.f32", 1.5f);
    ellm_gguf_writer_set_f64(w, "t.f64", -2.25);
    ellm_gguf_writer_set_bool(w, "t.bool", true);
    ellm_gguf_writer_set_str(w, "t.str", "héllo");
    int32_t ints[3] = {1, -2, 3};
    ellm_gguf_writer_set_array(w, "t.arr_i32", GGUF_TYPE_INT32, ints, 3);
    const char *strs[3] = {"a", "", "\xc3\xbc"};
    CHECK(ellm_gguf_writer_set_str_array(w, "t.arr_str", strs, 3) == EDGELLM_OK);
    double f64s[2] = {0.5, -1e300};
    ellm_gguf_writer_set_array(w, "t.arr_f64", GGUF_TYPE_FLOAT64, f64s, 2);
    bool bools[2] = {true, false};
    ellm_gguf_writer_set_array(w, "t.arr_bool", GGUF_TYPE_BOOL, bools, 2);
    ellm_gguf_writer_set_array(w, "t.arr_empty", GGUF_TYPE_UINT64, NULL, 0);
    CHECK(ellm_gguf_writer_set_u32(w, "", 1) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(ellm_gguf_writer_set_array(w, "t.bad", GGUF_TYPE_STRING, strs, 3) ==
          EDGELLM_ERR_INVALID_ARGUMENT);
    const char *with_null[2] = {"a", NULL};
    CHECK(ellm_gguf_writer_set_str_array(w, "t.bad", with_null, 2) == EDGELLM_ERR_INVALID_ARGUMENT);
    /* Nested arrays enter the writer as parsed values (set_value), so parse a hand-made file
     * holding [[int16 7, -8], [string "x"], []] and carry the value over. */
    static const uint8_t nested_file[] = {'G',
                                          'G',
                                          'U',
                                          'F',
                                          3,
                                          0,
                                          0,
                                          0,
                                          0,
                                          0,
                                          0,
                                          0,
                                          0,
                                          0,
                                          0,
                                          0,
                                          1,
                                          0,
                                          0,
                                          0,
                                          0,
                                          0,
                                          0,
                                          0, /* header */
                                          1,
                                          0,
                                          0,
                                          0,
                                          0,
                                          0,
                                          0,
                                          0,
                                          'n',
                                          GGUF_TYPE_ARRAY,
                                          0,
                                          0,
                                          0, /* key "n": array */
                                          GGUF_TYPE_ARRAY,
                                          0,
                                          0,
                                          0,
                                          3,
                                          0,
                                          0,
                                          0,
                                          0,
                                          0,
                                          0,
                                          0, /* of 3 arrays */
                                          GGUF_TYPE_INT16,
                                          0,
                                          0,
                                          0,
                                          2,
                                          0,
                                          0,
                                          0,
                                          0,
                                          0,
                                          0,
                                          0,
                                          7,
                                          0,
                                          0xF8,
                                          0xFF,
                                          GGUF_TYPE_STRING,
                                          0,
                                          0,
                                          0,
                                          1,
                                          0,
                                          0,
                                          0,
                                          0,
                                          0,
                                          0,
                                          0,
                                          1,
                                          0,
                                          0,
                                          0,
                                          0,
                                          0,
                                          0,
                                          0,
                                          'x',
                                          GGUF_TYPE_UINT8,
                                          0,
                                          0,
                                          0,
                                          0,
                                          0,
                                          0,
                                          0,
                                          0,
                                          0,
                                          0,
                                          0};
    gguf_file *nf = NULL;
    CHECK_MSG(ellm_gguf_parse(nested_file, sizeof nested_file, &nf) == EDGELLM_OK, "%s",
              edgellm_last_error());
    if (nf)
        CHECK(ellm_gguf_writer_set_value(w, "t.nested", &ellm_gguf_kv_at(nf, 0)->value) ==
              EDGELLM_OK);
    ellm_gguf_close(nf);
    CHECK(ellm_gguf_writer_set_alignment(w, 64) == EDGELLM_OK);
    CHECK(ellm_gguf_writer_set_alignment(w, 48) == EDGELLM_ERR_INVALID_ARGUMENT);
    float data[64];
    for (int i = 0; i < 64; i++)
        data[i] = (float)i;
    uint64_t ne[2] = {32, 2};
    CHECK(ellm_gguf_writer_add_tensor(w, "a", ELLM_TYPE_F32, 2, ne, data) == EDGELLM_OK);
    CHECK(ellm_gguf_writer_add_tensor(w, "b", ELLM_TYPE_F32, 1, ne, data) == EDGELLM_OK);
    CHECK(ellm_gguf_writer_add_tensor(w, "a", ELLM_TYPE_F32, 1, ne, data) ==
          EDGELLM_ERR_INVALID_ARGUMENT);
    uint64_t odd[1] = {33};
    CHECK(ellm_gguf_writer_add_tensor(w, "q", ELLM_TYPE_Q8_0, 1, odd, data) ==
          EDGELLM_ERR_INVALID_ARGUMENT);
    const char *path = test_tmp_path("types.gguf");
    CHECK(ellm_gguf_writer_write(w, path) == EDGELLM_OK);
    ellm_gguf_writer_free(w);

    gguf_file *f = NULL;
    CHECK_MSG(ellm_gguf_open(path, &f) == EDGELLM_OK, "%s", edgellm_last_error());
    if (!f)
        return;
    uint32_t u32;
    int32_t i32;
    uint64_t u64;
    float f32;
    bool b;
    gguf_str s;
    char buf[256];
    CHECK(ellm_gguf_get_u32(f, "t.u8", &u32) == EDGELLM_OK && u32 == 200);
    CHECK(ellm_gguf_get_i32(f, "t.i8", &i32) == EDGELLM_OK && i32 == -100);
    CHECK(ellm_gguf_get_u32(f, "t.u16", &u32) == EDGELLM_OK && u32 == 60000);
    CHECK(ellm_gguf_get_i32(f, "t.i16", &i32) == EDGELLM_OK && i32 == -30000);
    CHECK(ellm_gguf_get_u32(f, "t.u32", &u32) == EDGELLM_OK && u32 == 4000000000u);
    CHECK(ellm_gguf_get_i32(f, "t.i32", &i32) == EDGELLM_OK && i32 == -2000000000);
    CHECK(ellm_gguf_get_u64(f, "t.u64", &u64) == EDGELLM_OK && u64 == 1ull << 60);
    CHECK(ellm_gguf_get_u32(f, "t.u64", &u32) == EDGELLM_ERR_FORMAT); /* does not fit */
    CHECK(ellm_gguf_get_u32(f, "t.i8", &u32) == EDGELLM_ERR_FORMAT);  /* negative */
    CHECK(ellm_gguf_get_f32(f, "t.f32", &f32) == EDGELLM_OK && f32 == 1.5f);
    CHECK(ellm_gguf_get_f32(f, "t.f64", &f32) == EDGELLM_OK && f32 == -2.25f);
    CHECK(ellm_gguf_get_bool(f, "t.bool", &b) == EDGELLM_OK && b);
    CHECK(ellm_gguf_get_str(f, "t.str", &s) == EDGELLM_OK && ellm_gguf_str_eq(s, "héllo"));
    const gguf_array *arr;
    int64_t e;
    CHECK(ellm_gguf_get_array(f, "t.arr_i32", &arr) == EDGELLM_OK && arr->n == 3 &&
          ellm_gguf_array_get_i64(arr, 1, &e) && e == -2);
    double d64;
    float fl;
    CHECK(ellm_gguf_get_array(f, "t.arr_str", &arr) == EDGELLM_OK && arr->n == 3 &&
          arr->elem_type == GGUF_TYPE_STRING && ellm_gguf_str_eq(arr->strings[0], "a") &&
          arr->strings[1].len == 0 && ellm_gguf_str_eq(arr->strings[2], "\xc3\xbc"));
    CHECK(ellm_gguf_get_array(f, "t.arr_f64", &arr) == EDGELLM_OK && arr->n == 2 &&
          arr->elem_type == GGUF_TYPE_FLOAT64);
    if (arr->elem_type == GGUF_TYPE_FLOAT64 && arr->n == 2) {
        memcpy(&d64, arr->raw + 8, 8);
        CHECK(d64 == -1e300 && ellm_gguf_array_get_f32(arr, 0, &fl) && fl == 0.5f);
    }
    CHECK(ellm_gguf_get_array(f, "t.arr_bool", &arr) == EDGELLM_OK && arr->n == 2 &&
          ellm_gguf_array_get_i64(arr, 0, &e) && e == 1 && ellm_gguf_array_get_i64(arr, 1, &e) &&
          e == 0);
    CHECK(ellm_gguf_find_kv(f, "t.bad") == NULL && ellm_gguf_kv_count(f) == 19);
    CHECK(ellm_gguf_get_array(f, "t.arr_empty", &arr) == EDGELLM_OK && arr->n == 0 &&
          arr->elem_type == GGUF_TYPE_UINT64 && !ellm_gguf_array_get_i64(arr, 0, &e));
    const gguf_array *nested;
    CHECK(ellm_gguf_get_array(f, "t.nested", &nested) == EDGELLM_OK && nested->n == 3 &&
          nested->elem_type == GGUF_TYPE_ARRAY);
    if (nested->n == 3 && nested->elem_type == GGUF_TYPE_ARRAY) {
        const gguf_array *a0 = &nested->items[0].v.arr, *a1 = &nested->items[1].v.arr;
        CHECK(a0->elem_type == GGUF_TYPE_INT16 && a0->n == 2 &&
              ellm_gguf_array_get_i64(a0, 1, &e) && e == -8);
        CHECK(a1->elem_type == GGUF_TYPE_STRING && a1->n == 1 &&
              ellm_gguf_str_eq(a1->strings[0], "x"));
        CHECK(nested->items[2].v.arr.n == 0 && nested->items[2].v.arr.elem_type == GGUF_TYPE_UINT8);
        ellm_gguf_value_format(&ellm_gguf_find_kv(f, "t.nested")->value, buf, sizeof buf);
        CHECK_MSG(strcmp(buf, "[3 \u00d7 array] [[2 \u00d7 int16] [7, -8], [1 \u00d7 string] "
                              "[\"x\"], [0 \u00d7 uint8] []]") == 0,
                  "%s", buf);
    }
    CHECK(ellm_gguf_alignment(f) == 64 && ellm_gguf_data_offset(f) % 64 == 0);
    const gguf_tensor_info *tb = ellm_gguf_find_tensor(f, "b");
    CHECK(tb && tb->offset % 64 == 0 && !memcmp(tb->data, data, 32 * 4));
    ellm_gguf_value_format(&ellm_gguf_find_kv(f, "t.arr_i32")->value, buf, sizeof buf);
    CHECK_MSG(strcmp(buf, "[3 \u00d7 int32] [1, -2, 3]") == 0, "%s", buf);

    /* Second generation: every kv copied through set_value must come back equal, in order. */
    gguf_writer *w2 = ellm_gguf_writer_create();
    for (uint64_t i = 0; i < ellm_gguf_kv_count(f); i++) {
        char *key = ellm_gguf_str_dup(ellm_gguf_kv_at(f, i)->key);
        CHECK(ellm_gguf_writer_set_value(w2, key, &ellm_gguf_kv_at(f, i)->value) == EDGELLM_OK);
        free(key);
    }
    const char *path2 = test_tmp_path("types2.gguf");
    CHECK(ellm_gguf_writer_write(w2, path2) == EDGELLM_OK);
    ellm_gguf_writer_free(w2);
    gguf_file *f2 = NULL;
    CHECK_MSG(ellm_gguf_open(path2, &f2) == EDGELLM_OK, "%s", edgellm_last_error());
    if (f2) {
        CHECK(ellm_gguf_kv_count(f2) == ellm_gguf_kv_count(f) && ellm_gguf_tensor_count(f2) == 0);
        for (uint64_t i = 0; i < ellm_gguf_kv_count(f) && i < ellm_gguf_kv_count(f2); i++) {
            const gguf_kv *a = ellm_gguf_kv_at(f, i), *b2 = ellm_gguf_kv_at(f2, i);
            CHECK(a->key.len == b2->key.len && !memcmp(a->key.data, b2->key.data, a->key.len));
            CHECK_MSG(values_equal(&a->value, &b2->value), "kv %llu differs",
                      (unsigned long long)i);
        }
        ellm_gguf_close(f2);
    }
    ellm_gguf_close(f);
}

/* A fill callback producing float i*scale at index i, or failing when asked to. */
typedef struct fill_state {
    float scale;
    int calls;
    int fail_on_call;
} fill_state;

static edgellm_status fill_ramp(void *user, void *dst, uint64_t n_bytes)
{
    fill_state *fs = user;
    if (++fs->calls == fs->fail_on_call)
        return ellm_fail(EDGELLM_ERR_CANCELLED, "stopped by the test");
    float *out = dst;
    for (uint64_t i = 0; i < n_bytes / 4; i++)
        out[i] = (float)i * fs->scale;
    return EDGELLM_OK;
}

static bool temporaries_left(const char *dir, const char *base)
{
    DIR *d = opendir(dir);
    bool found = false;
    struct dirent *e;
    size_t n = strlen(base);
    while (d && (e = readdir(d)))
        if (strncmp(e->d_name, base, n) == 0 && strstr(e->d_name + n, ".tmp."))
            found = true;
    if (d)
        closedir(d);
    return found;
}

/* Streaming tensors through callbacks, and failures that must leave the destination alone. */
static void test_writer_streaming_and_failures(void)
{
    const char *path = test_tmp_path("stream.gguf");
    uint64_t ne[2] = {64, 3};
    fill_state fs = {0.25f, 0, 0};
    gguf_writer *w = ellm_gguf_writer_create();
    CHECK(ellm_gguf_writer_set_str(w, "general.architecture", "llama") == EDGELLM_OK);
    CHECK(ellm_gguf_writer_add_tensor_fill(w, "x", ELLM_TYPE_F32, 2, ne, fill_ramp, &fs) ==
          EDGELLM_OK);
    CHECK(ellm_gguf_writer_add_tensor_fill(w, "y", ELLM_TYPE_F32, 1, ne, fill_ramp, &fs) ==
          EDGELLM_OK);
    CHECK(ellm_gguf_writer_write(w, path) == EDGELLM_OK && fs.calls == 2);
    ellm_gguf_writer_free(w);
    size_t n_before = 0;
    char *before = test_read_file(path, &n_before);
    gguf_file *f = NULL;
    CHECK_MSG(ellm_gguf_open(path, &f) == EDGELLM_OK, "%s", edgellm_last_error());
    if (f) {
        const gguf_tensor_info *x = ellm_gguf_find_tensor(f, "x"),
                               *y = ellm_gguf_find_tensor(f, "y");
        CHECK(x && y && x->n_bytes == 64 * 3 * 4 && y->n_bytes == 64 * 4);
        CHECK(x && ((const float *)x->data)[191] == 191 * 0.25f);
        CHECK(y && y->offset == 768 && ((const float *)y->data)[63] == 63 * 0.25f);
        ellm_gguf_close(f);
    }

    /* The second tensor's producer fails: error returned, old file intact, no temporary. */
    fill_state failing = {1.0f, 0, 2};
    w = ellm_gguf_writer_create();
    ellm_gguf_writer_set_str(w, "general.architecture", "other");
    ellm_gguf_writer_add_tensor_fill(w, "x", ELLM_TYPE_F32, 2, ne, fill_ramp, &failing);
    ellm_gguf_writer_add_tensor_fill(w, "y", ELLM_TYPE_F32, 1, ne, fill_ramp, &failing);
    CHECK(ellm_gguf_writer_write(w, path) == EDGELLM_ERR_CANCELLED);
    CHECK_MSG(strstr(edgellm_last_error(), "producing tensor 'y'") != NULL, "%s",
              edgellm_last_error());
    ellm_gguf_writer_free(w);
    size_t n_after = 0;
    char *after = test_read_file(path, &n_after);
    CHECK(before && after && n_before == n_after && !memcmp(before, after, n_before));
    CHECK(!temporaries_left(EDGELLM_TEST_TMP, "stream.gguf"));
    free(before);
    free(after);

    /* A directory that does not exist. */
    w = ellm_gguf_writer_create();
    CHECK(ellm_gguf_writer_write(w, test_tmp_path("no-such-dir/out.gguf")) == EDGELLM_ERR_IO);
    CHECK(strstr(edgellm_last_error(), "no-such-dir") != NULL);
    ellm_gguf_writer_free(w);
}

int main(void)
{
    test_shared_files();
    test_round_trip();
    test_all_value_types();
    test_writer_streaming_and_failures();
    return test_finish("test_gguf");
}
