/* llama2.c import: the converted file carries exactly the tensors another runtime's converter
 * wrote for the same checkpoint; the unshared-classifier variant; quantized output with the F16
 * fallback for rows that do not split into blocks; and hostile checkpoints. Hugging Face configs
 * checked by the architecture's traits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "convert/convert.h"
#include "gguf/gguf.h"
#include "test_util.h"

static bool write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return false;
    bool ok = fwrite(data, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

static void test_matches_reference(void)
{
    const char *out = test_tmp_path("convert-f32.gguf");
    edgellm_status st = ellm_convert_llama2c(test_shared_path("models/aidreams260K.bin"),
                                             test_shared_path("models/aidreams-tok512.bin"), out,
                                             NULL);
    CHECK_MSG(st == EDGELLM_OK, "%s", edgellm_last_error());
    gguf_file *mine = NULL, *ref = NULL;
    CHECK(ellm_gguf_open(out, &mine) == EDGELLM_OK);
    CHECK(ellm_gguf_open(test_shared_path("models/aidreams260K-f32.gguf"), &ref) == EDGELLM_OK);
    if (!mine || !ref) {
        ellm_gguf_close(mine);
        ellm_gguf_close(ref);
        return;
    }
    /* Every tensor of ours equals the reference's, byte for byte; the reference also stores the
     * shared classifier as output.weight, which must equal the embedding we tie to. */
    int same = 0;
    for (uint64_t i = 0; i < ellm_gguf_tensor_count(mine); i++) {
        const gguf_tensor_info *t = ellm_gguf_tensor_at(mine, i);
        char *name = ellm_gguf_str_dup(t->name);
        const gguf_tensor_info *r = ellm_gguf_find_tensor(ref, name);
        bool eq = r && r->type == t->type && !memcmp(r->ne, t->ne, sizeof t->ne) &&
                  r->n_bytes == t->n_bytes && !memcmp(r->data, t->data, t->n_bytes);
        CHECK_MSG(eq, "tensor %s differs from the reference", name);
        same += eq;
        free(name);
    }
    CHECK(same == 38 && ellm_gguf_tensor_count(mine) == 38);
    const gguf_tensor_info *ro = ellm_gguf_find_tensor(ref, "output.weight");
    const gguf_tensor_info *me = ellm_gguf_find_tensor(mine, "token_embd.weight");
    CHECK(ro && me && ro->n_bytes == me->n_bytes && !memcmp(ro->data, me->data, me->n_bytes));
    CHECK(ellm_gguf_find_tensor(mine, "output.weight") == NULL);
    /* Metadata the reference has must have the same values (general.name aside). */
    const char *keys[] = {"general.architecture",          "llama.context_length",
                          "llama.embedding_length",        "llama.block_count",
                          "llama.feed_forward_length",     "llama.attention.head_count",
                          "llama.attention.head_count_kv", "llama.rope.dimension_count",
                          "tokenizer.ggml.model",          "tokenizer.ggml.bos_token_id",
                          "tokenizer.ggml.eos_token_id",   "tokenizer.ggml.unknown_token_id"};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        const gguf_kv *a = ellm_gguf_find_kv(mine, keys[k]), *b = ellm_gguf_find_kv(ref, keys[k]);
        CHECK_MSG(a && b, "key %s missing", keys[k]);
        if (!a || !b)
            continue;
        char va[128], vb[128];
        ellm_gguf_value_format(&a->value, va, sizeof va);
        ellm_gguf_value_format(&b->value, vb, sizeof vb);
        CHECK_MSG(!strcmp(va, vb), "%s: %s vs reference %s", keys[k], va, vb);
    }
    const gguf_array *ta, *tb;
    CHECK(ellm_gguf_get_array(mine, "tokenizer.ggml.tokens", &ta) == EDGELLM_OK);
    CHECK(ellm_gguf_get_array(ref, "tokenizer.ggml.tokens", &tb) == EDGELLM_OK);
    for (uint64_t i = 0; i < ta->n && i < tb->n; i++)
        CHECK_MSG(ta->strings[i].len == tb->strings[i].len &&
                      !memcmp(ta->strings[i].data, tb->strings[i].data, ta->strings[i].len),
                  "token %llu differs", (unsigned long long)i);
    const gguf_array *ya, *yb;
    CHECK(ellm_gguf_get_array(mine, "tokenizer.ggml.token_type", &ya) == EDGELLM_OK);
    CHECK(ellm_gguf_get_array(ref, "tokenizer.ggml.token_type", &yb) == EDGELLM_OK);
    for (uint64_t i = 0; i < ya->n; i++) {
        int64_t x, y;
        CHECK(ellm_gguf_array_get_i64(ya, i, &x) && ellm_gguf_array_get_i64(yb, i, &y) && x == y);
    }
    ellm_gguf_close(mine);
    ellm_gguf_close(ref);
}

static int fallbacks;
static void count_fallback(void *user, const char *tensor, ellm_type wanted, ellm_type used)
{
    (void)user;
    CHECK(strstr(tensor, "ffn_down") != NULL && wanted == ELLM_TYPE_Q8_0 && used == ELLM_TYPE_F16);
    fallbacks++;
}

static void test_quantized_and_unshared(void)
{
    size_t len = 0;
    char *ckpt = test_read_file(test_shared_path("models/aidreams260K.bin"), &len);
    CHECK(ckpt != NULL);
    if (!ckpt)
        return;
    ellm_convert_options o = {.out_type = ELLM_TYPE_Q8_0, .on_fallback = count_fallback};
    const char *out = test_tmp_path("convert-q8.gguf");
    CHECK(ellm_convert_llama2c(test_shared_path("models/aidreams260K.bin"),
                               test_shared_path("models/aidreams-tok512.bin"), out,
                               &o) == EDGELLM_OK);
    CHECK(fallbacks == 4);
    gguf_file *f = NULL;
    CHECK(ellm_gguf_open(out, &f) == EDGELLM_OK);
    if (f) {
        CHECK(ellm_gguf_find_tensor(f, "blk.0.attn_q.weight")->type == ELLM_TYPE_Q8_0);
        CHECK(ellm_gguf_find_tensor(f, "blk.0.ffn_down.weight")->type == ELLM_TYPE_F16);
        CHECK(ellm_gguf_find_tensor(f, "blk.0.attn_norm.weight")->type == ELLM_TYPE_F32);
        ellm_gguf_close(f);
    }

    /* Unshared classifier: negate vocab_size and append a vocab x dim classifier. */
    int32_t vocab = 512, dim = 64;
    size_t extra = (size_t)vocab * dim * sizeof(float);
    char *unshared = malloc(len + extra);
    memcpy(unshared, ckpt, len);
    int32_t neg = -vocab;
    memcpy(unshared + 5 * 4, &neg, 4);
    float *cls = (float *)(unshared + len);
    for (size_t i = 0; i < (size_t)vocab * dim; i++)
        cls[i] = (float)(i % 97) * 0.01f;
    const char *path = test_tmp_path("unshared.bin");
    CHECK(write_file(path, unshared, len + extra));
    out = test_tmp_path("unshared.gguf");
    CHECK_MSG(ellm_convert_llama2c(path, test_shared_path("models/aidreams-tok512.bin"), out,
                                   NULL) == EDGELLM_OK,
              "%s", edgellm_last_error());
    CHECK(ellm_gguf_open(out, &f) == EDGELLM_OK);
    if (f) {
        const gguf_tensor_info *t = ellm_gguf_find_tensor(f, "output.weight");
        CHECK(t && t->ne[0] == 64 && t->ne[1] == 512 && !memcmp(t->data, cls, extra));
        ellm_gguf_close(f);
    }

    /* Hostile checkpoints. */
    CHECK(write_file(path, ckpt, len - 100));
    CHECK(ellm_convert_llama2c(path, test_shared_path("models/aidreams-tok512.bin"), out, NULL) ==
          EDGELLM_ERR_FORMAT);
    CHECK(strstr(edgellm_last_error(), "truncated") != NULL);
    int32_t bad[7] = {64, 172, 4, 3, 4, 512, 128}; /* 3 heads do not divide 64 */
    memcpy(unshared, bad, sizeof bad);
    CHECK(write_file(path, unshared, len));
    CHECK(ellm_convert_llama2c(path, test_shared_path("models/aidreams-tok512.bin"), out, NULL) ==
          EDGELLM_ERR_FORMAT);
    CHECK(strstr(edgellm_last_error(), "heads") != NULL);
    int32_t absurd[7] = {1 << 30, 172, 4, 4, 4, 512, 128};
    memcpy(unshared, absurd, sizeof absurd);
    CHECK(write_file(path, unshared, len));
    CHECK(ellm_convert_llama2c(path, test_shared_path("models/aidreams-tok512.bin"), out, NULL) ==
          EDGELLM_ERR_FORMAT);
    CHECK(write_file(path, ckpt, 10));
    CHECK(ellm_convert_llama2c(path, test_shared_path("models/aidreams-tok512.bin"), out, NULL) ==
          EDGELLM_ERR_FORMAT);
    /* A tokenizer with fewer tokens than the model's vocabulary. */
    size_t tlen = 0;
    char *tok = test_read_file(test_shared_path("models/aidreams-tok512.bin"), &tlen);
    const char *tpath = test_tmp_path("short-tok.bin");
    CHECK(tok && write_file(tpath, tok, tlen / 2));
    CHECK(ellm_convert_llama2c(test_shared_path("models/aidreams260K.bin"), tpath, out, NULL) ==
          EDGELLM_ERR_FORMAT);
    CHECK(strstr(edgellm_last_error(), "tokenizer") != NULL ||
          strstr(edgellm_last_error(), "token") != NULL);
    /* Nothing is written where a conversion failed. */
    const char *never = test_tmp_path("never-written.gguf");
    remove(never);
    CHECK(ellm_convert_llama2c(test_shared_path("models/aidreams260K.bin"), tpath, never, NULL) !=
          EDGELLM_OK);
    FILE *nf = fopen(never, "rb");
    CHECK(nf == NULL);
    if (nf)
        fclose(nf);
    free(tok);
    free(unshared);
    free(ckpt);
}

/* The same array under `key` in both files, element by element. */
static void check_same_array(const gguf_file *mine, const gguf_file *ref, const char *key)
{
    const gguf_array *a = NULL, *b = NULL;
    CHECK_MSG(ellm_gguf_get_array(mine, key, &a) == EDGELLM_OK, "ours lacks %s", key);
    CHECK_MSG(ellm_gguf_get_array(ref, key, &b) == EDGELLM_OK, "the reference lacks %s", key);
    if (!a || !b)
        return;
    CHECK_MSG(a->n == b->n, "%s: %llu vs %llu entries", key, (unsigned long long)a->n,
              (unsigned long long)b->n);
    int differ = 0;
    for (uint64_t i = 0; i < a->n && i < b->n; i++) {
        if (a->elem_type == GGUF_TYPE_STRING) {
            differ += a->strings[i].len != b->strings[i].len ||
                      memcmp(a->strings[i].data, b->strings[i].data, a->strings[i].len) != 0;
        } else {
            float x = 0, y = 0;
            int64_t j = 0, k = 0;
            if (a->elem_type == GGUF_TYPE_FLOAT32) {
                CHECK(ellm_gguf_array_get_f32(a, i, &x) && ellm_gguf_array_get_f32(b, i, &y));
                differ += x != y;
            } else {
                CHECK(ellm_gguf_array_get_i64(a, i, &j) && ellm_gguf_array_get_i64(b, i, &k));
                differ += j != k;
            }
        }
    }
    CHECK_MSG(differ == 0, "%s: %d entries differ from the reference", key, differ);
}

/* The Llama 2 tokenizer.model (a SentencePiece protobuf) imports to the very tokens, scores and
 * types another runtime's converter wrote into llama2-vocab-tiny-f16.gguf. */
static void test_sentencepiece_matches_reference(void)
{
    const char *out = test_tmp_path("convert-spm-llama2.gguf");
    edgellm_status st = ellm_convert_sentencepiece(
        test_shared_path("tokenizers/llama2/tokenizer.model"), out, NULL);
    CHECK_MSG(st == EDGELLM_OK, "%s", edgellm_last_error());
    gguf_file *mine = NULL, *ref = NULL;
    CHECK(ellm_gguf_open(out, &mine) == EDGELLM_OK);
    CHECK(ellm_gguf_open(test_shared_path("models/llama2-vocab-tiny-f16.gguf"), &ref) ==
          EDGELLM_OK);
    if (mine && ref) {
        check_same_array(mine, ref, "tokenizer.ggml.tokens");
        check_same_array(mine, ref, "tokenizer.ggml.scores");
        check_same_array(mine, ref, "tokenizer.ggml.token_type");
        const char *ids[] = {"tokenizer.ggml.unknown_token_id", "tokenizer.ggml.bos_token_id",
                             "tokenizer.ggml.eos_token_id"};
        for (size_t k = 0; k < sizeof ids / sizeof ids[0]; k++) {
            uint32_t x = 99, y = 98;
            CHECK(ellm_gguf_get_u32(mine, ids[k], &x) == EDGELLM_OK);
            CHECK(ellm_gguf_get_u32(ref, ids[k], &y) == EDGELLM_OK);
            CHECK_MSG(x == y, "%s: %u vs %u", ids[k], x, y);
        }
    }
    ellm_gguf_close(mine);
    ellm_gguf_close(ref);
}

/* Truncated, empty and non-protobuf model files fail with a message naming the file. */
static void test_sentencepiece_hostile(void)
{
    FILE *f = fopen(test_shared_path("tokenizers/llama2/tokenizer.model"), "rb");
    CHECK(f != NULL);
    if (!f)
        return;
    static unsigned char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    CHECK(n > 1000);
    const char *in = test_tmp_path("hostile.model"), *out = test_tmp_path("hostile-spm.gguf");
    size_t cuts[] = {0, 1, 7, n / 2, n - 1};
    for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
        CHECK(write_file(in, buf, cuts[k]));
        CHECK_MSG(ellm_convert_sentencepiece(in, out, NULL) == EDGELLM_ERR_FORMAT,
                  "a model cut at %zu bytes was accepted", cuts[k]);
        CHECK(strstr(edgellm_last_error(), "hostile.model") != NULL);
    }
    const char text[] = "this is a text file, not a protobuf\n";
    CHECK(write_file(in, text, sizeof text - 1));
    CHECK(ellm_convert_sentencepiece(in, out, NULL) == EDGELLM_ERR_FORMAT);
    /* a piece whose length runs past the end of its message */
    const unsigned char overlong[] = {0x0A, 0x05, 0x0A, 0x7F, 'a', 'b', 'c'};
    CHECK(write_file(in, overlong, sizeof overlong));
    CHECK(ellm_convert_sentencepiece(in, out, NULL) == EDGELLM_ERR_FORMAT);
    /* a well-formed file with only a unigram trainer_spec and one piece: refused by name */
    const unsigned char unigram[] = {0x0A, 0x03, 0x0A, 0x01, 'a', 0x12, 0x02, 0x18, 0x01};
    CHECK(write_file(in, unigram, sizeof unigram));
    CHECK(ellm_convert_sentencepiece(in, out, NULL) == EDGELLM_ERR_UNSUPPORTED);
    CHECK(strstr(edgellm_last_error(), "--model_type=bpe") != NULL);
}

/* Hugging Face config.json checks that follow the architecture table's traits; each config is
 * refused (or accepted) before any weight is read, so the folder holds nothing else. */
static edgellm_status convert_config(const char *cls, const char *extra)
{
    const char *dir = test_tmp_path("hf_config_traits");
    mkdir(dir, 0755);
    char path[4096], json[1024];
    snprintf(path, sizeof path, "%s/config.json", dir);
    int n = snprintf(json, sizeof json,
                     "{\"architectures\": [\"%s\"], \"vocab_size\": 16, \"hidden_size\": 8, "
                     "\"num_hidden_layers\": 2, \"intermediate_size\": 16, "
                     "\"num_attention_heads\": 2%s}",
                     cls, extra);
    CHECK(write_file(path, json, (size_t)n));
    return ellm_convert_hf(dir, test_tmp_path("hf_config_traits.gguf"), NULL, NULL);
}

static void test_hf_config_traits(void)
{
    /* Qwen configs list a window that applies only when use_sliding_window asks for it. */
    CHECK(convert_config("Qwen3ForCausalLM", ", \"use_sliding_window\": true") ==
          EDGELLM_ERR_UNSUPPORTED);
    CHECK_MSG(strstr(edgellm_last_error(), "qwen3 sliding-window attention (use_sliding_window)"),
              "%s", edgellm_last_error());
    CHECK(convert_config("Qwen2ForCausalLM", ", \"use_sliding_window\": true") ==
          EDGELLM_ERR_UNSUPPORTED);
    CHECK(convert_config("Qwen2ForCausalLM", ", \"use_sliding_window\": false, "
                                             "\"sliding_window\": 4") != EDGELLM_OK);
    CHECK_MSG(strstr(edgellm_last_error(), "safetensors"), "%s", edgellm_last_error());
    /* Gemma 1 configs name the tanh GELU "gelu"; Gemma 2 ones may not. */
    CHECK(convert_config("GemmaForCausalLM", ", \"hidden_act\": \"gelu\"") != EDGELLM_OK);
    CHECK_MSG(strstr(edgellm_last_error(), "safetensors"), "%s", edgellm_last_error());
    CHECK(convert_config("Gemma2ForCausalLM", ", \"hidden_act\": \"gelu\"") ==
          EDGELLM_ERR_UNSUPPORTED);
    CHECK_MSG(strstr(edgellm_last_error(), "activation 'gelu' is not supported for gemma2 (needs "
                                           "gelu_pytorch_tanh)"),
              "%s", edgellm_last_error());
    CHECK(convert_config("LlamaForCausalLM", ", \"hidden_act\": \"gelu_pytorch_tanh\"") ==
          EDGELLM_ERR_UNSUPPORTED);
    /* The sliding/global layer pattern is the architecture's; Gemma 2/3 need a window. */
    CHECK(convert_config("Gemma3ForCausalLM",
                         ", \"sliding_window\": 4, "
                         "\"sliding_window_pattern\": 5") == EDGELLM_ERR_UNSUPPORTED);
    CHECK_MSG(strstr(edgellm_last_error(), "(gemma3 uses 6)"), "%s", edgellm_last_error());
    CHECK(convert_config("Gemma2ForCausalLM", "") == EDGELLM_ERR_FORMAT);
    CHECK_MSG(strstr(edgellm_last_error(), "gemma2 needs sliding_window"), "%s",
              edgellm_last_error());
    /* LongRoPE only where the architecture has it. */
    CHECK(convert_config("LlamaForCausalLM", ", \"rope_scaling\": {\"rope_type\": "
                                             "\"longrope\"}") == EDGELLM_ERR_UNSUPPORTED);
    /* An unknown class is refused with every supported one listed. */
    CHECK(convert_config("MambaForCausalLM", "") == EDGELLM_ERR_UNSUPPORTED);
    const char *msg = edgellm_last_error();
    CHECK_MSG(strstr(msg, "'MambaForCausalLM' is not supported") &&
                  strstr(msg, "MistralForCausalLM") && strstr(msg, "Phi3ForCausalLM"),
              "%s", msg);
}

int main(void)
{
    test_hf_config_traits();
    test_matches_reference();
    test_quantized_and_unshared();
    test_sentencepiece_matches_reference();
    test_sentencepiece_hostile();
    return test_finish("test_convert");
}
