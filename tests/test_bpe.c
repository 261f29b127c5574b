/* Byte-level BPE: vocabularies imported from the Hugging Face tokenizer.json files in
 * ../shared/tokenizers must tokenize the reference texts exactly as the transformers.js
 * implementation does (../shared/testdata/tokenize-*-bpe.json); plus the vocabulary-only model
 * API, special tokens on/off, end-of-generation ids, the byte-to-unicode map and the
 * pre-tokenizer families without a live reference, against hand-derived splits. */
#define _POSIX_C_SOURCE 200809L
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>

#include "convert/hf_tokenizer.h"
#include "edgellm.h"
#include "test_util.h"
#include "tokenizer/normalize.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/vocab_internal.h"

static edgellm_model *convert_and_load(const char *name)
{
    char dir[64];
    snprintf(dir, sizeof dir, "tokenizers/%s", name);
    char file[64];
    snprintf(file, sizeof file, "bpe-%s.gguf", name);
    const char *out = test_tmp_path(file);
    edgellm_status st = ellm_convert_hf_vocab_only(test_shared_path(dir), out, NULL);
    CHECK_MSG(st == EDGELLM_OK, "convert %s: %s", name, edgellm_last_error());
    if (st != EDGELLM_OK)
        return NULL;

    /* Without vocab_only the file is refused with a message saying why. */
    edgellm_model *m = NULL;
    CHECK(edgellm_model_load(out, NULL, &m) == EDGELLM_ERR_FORMAT);
    CHECK_MSG(strstr(edgellm_last_error(), "vocab_only") != NULL, "%s", edgellm_last_error());

    edgellm_model_params mp = edgellm_model_default_params();
    mp.vocab_only = 1;
    st = edgellm_model_load(out, &mp, &m);
    CHECK_MSG(st == EDGELLM_OK, "load %s: %s", out, edgellm_last_error());
    return st == EDGELLM_OK ? m : NULL;
}

static int32_t tokenize(const edgellm_model *m, const char *text, size_t len, int flags,
                        edgellm_token **ids)
{
    int32_t n = 0;
    edgellm_tokenize(m, text, len, flags, NULL, 0, &n);
    *ids = malloc((size_t)(n ? n : 1) * sizeof **ids);
    edgellm_status st = edgellm_tokenize(m, text, len, flags, *ids, n, &n);
    CHECK_MSG(st == EDGELLM_OK, "%s", edgellm_last_error());
    return st == EDGELLM_OK ? n : -1;
}

static bool round_trips(const edgellm_model *m, const edgellm_token *ids, int32_t n,
                        const char *text, size_t len)
{
    size_t need = 0;
    edgellm_detokenize(m, ids, n, 0, NULL, 0, &need);
    char *buf = malloc(need + 1);
    bool ok = edgellm_detokenize(m, ids, n, 0, buf, need + 1, &need) == EDGELLM_OK && need == len &&
              memcmp(buf, text, len) == 0;
    free(buf);
    return ok;
}

/* Every text of the reference file, id for id; and detokenizing gives the text back. */
static void check_reference(const edgellm_model *m, const char *rel)
{
    json_error_t jerr;
    json_t *cases = json_load_file(test_shared_path(rel), 0, &jerr);
    CHECK_MSG(json_is_array(cases), "cannot read %s: %s", rel, jerr.text);
    size_t i;
    json_t *c;
    int matched = 0;
    json_array_foreach(cases, i, c)
    {
        json_t *jt = json_object_get(c, "text"), *ref = json_object_get(c, "ids");
        const char *text = json_string_value(jt);
        size_t len = json_string_length(jt);
        /* The reference always recognises added tokens written in the text. */
        edgellm_token *ids = NULL;
        int32_t n = tokenize(m, text, len, EDGELLM_TOKENIZE_PARSE_SPECIAL, &ids);
        bool same = n >= 0 && (size_t)n == json_array_size(ref);
        for (int32_t k = 0; same && k < n; k++)
            same = ids[k] == (edgellm_token)json_integer_value(json_array_get(ref, (size_t)k));
        CHECK_MSG(same, "%s: \"%s\" tokenizes differently from the reference", rel, text);
        matched += same;
        free(ids);
        n = tokenize(m, text, len, 0, &ids);
        CHECK_MSG(n >= 0 && round_trips(m, ids, n, text, len), "%s: \"%s\" does not round-trip",
                  rel, text);
        free(ids);
    }
    printf("%s: %d of %zu texts match the reference\n", rel, matched, json_array_size(cases));
    CHECK(json_array_size(cases) >= 30);
    json_decref(cases);
}

static bool ids_equal(const edgellm_token *a, int32_t n, const edgellm_token *b, int32_t nb)
{
    return n == nb && (n == 0 || memcmp(a, b, (size_t)n * sizeof *a) == 0);
}

static void test_llama3(void)
{
    edgellm_model *m = convert_and_load("llama3");
    if (!m)
        return;
    edgellm_model_info info;
    CHECK(edgellm_model_get_info(m, &info) == EDGELLM_OK);
    CHECK(strcmp(info.architecture, "llama") == 0);
    CHECK(info.n_vocab == 128256);
    CHECK(edgellm_token_bos(m) == 128000);
    CHECK(edgellm_token_eos(m) == 128001);
    CHECK(edgellm_add_bos_default(m));
    CHECK(edgellm_token_is_eog(m, 128001));  /* <|end_of_text|> */
    CHECK(edgellm_token_is_eog(m, 128009));  /* <|eot_id|> */
    CHECK(!edgellm_token_is_eog(m, 128008)); /* a reserved token in Llama 3.0 */
    CHECK(!edgellm_token_is_eog(m, 128000));
    CHECK(!edgellm_token_is_eog(m, 9906));

    /* A vocabulary-only model cannot be evaluated. */
    edgellm_context *ctx = NULL;
    CHECK(edgellm_context_create(m, NULL, &ctx) == EDGELLM_ERR_UNSUPPORTED);
    CHECK(ctx == NULL);
    edgellm_memory_estimate est;
    CHECK(edgellm_model_estimate_memory(m, 0, EDGELLM_KV_F16, 0, &est) == EDGELLM_ERR_UNSUPPORTED);

    check_reference(m, "testdata/tokenize-llama3-bpe.json");

    /* Special tokens: recognised with PARSE_SPECIAL, plain text without. */
    const char *chat = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>";
    edgellm_token *ids = NULL;
    int32_t n = tokenize(m, chat, strlen(chat), EDGELLM_TOKENIZE_PARSE_SPECIAL, &ids);
    const edgellm_token want[] = {128000, 128006, 882, 128007, 271, 13347, 128009};
    CHECK_MSG(ids_equal(ids, n, want, 7), "chat prompt: %d ids", n);
    free(ids);
    n = tokenize(m, chat, strlen(chat), 0, &ids);
    bool any_special = false;
    for (int32_t k = 0; k < n; k++)
        any_special |= ids[k] >= 128000;
    CHECK(n > 7 && !any_special);
    CHECK(round_trips(m, ids, n, chat, strlen(chat)));
    free(ids);
    /* BOS comes from the flag, once. */
    n = tokenize(m, "Hello", 5, EDGELLM_TOKENIZE_ADD_BOS, &ids);
    const edgellm_token hello[] = {128000, 9906};
    CHECK(ids_equal(ids, n, hello, 2));
    free(ids);
    /* Pieces invert the byte-to-unicode map; control tokens have no text. */
    char piece[16];
    size_t len = 0;
    CHECK(edgellm_token_to_piece(m, 1917, piece, sizeof piece, &len) == EDGELLM_OK && len == 6 &&
          memcmp(piece, " world", 6) == 0);
    CHECK(edgellm_token_to_piece(m, 198, piece, sizeof piece, &len) == EDGELLM_OK && len == 1 &&
          piece[0] == '\n');
    CHECK(edgellm_token_to_piece(m, 128009, piece, sizeof piece, &len) == EDGELLM_OK && len == 0);

    /* Arbitrary bytes (invalid UTF-8 included) survive tokenize + detokenize. */
    unsigned int seed = 12345;
    for (int trial = 0; trial < 200; trial++) {
        char bytes[64];
        size_t nb = 1 + (size_t)(trial % 63);
        for (size_t k = 0; k < nb; k++) {
            seed = seed * 1103515245u + 12345u;
            bytes[k] = (char)(seed >> 16);
        }
        n = tokenize(m, bytes, nb, 0, &ids);
        CHECK_MSG(n > 0 && round_trips(m, ids, n, bytes, nb), "random bytes trial %d", trial);
        free(ids);
    }
    edgellm_model_free(m);
}

static void test_qwen3(void)
{
    edgellm_model *m = convert_and_load("qwen3");
    if (!m)
        return;
    edgellm_model_info info;
    CHECK(edgellm_model_get_info(m, &info) == EDGELLM_OK);
    CHECK(info.n_vocab == 151669);
    CHECK(edgellm_token_bos(m) == -1);
    CHECK(edgellm_token_eos(m) == 151645); /* <|im_end|> */
    CHECK(!edgellm_add_bos_default(m));
    CHECK(edgellm_token_is_eog(m, 151645));
    CHECK(edgellm_token_is_eog(m, 151643)); /* <|endoftext|> */
    CHECK(!edgellm_token_is_eog(m, 151644));

    check_reference(m, "testdata/tokenize-qwen3-bpe.json");

    /* Non-special added tokens (<think>) are matched whole too, only with PARSE_SPECIAL. */
    const char *text = "<|im_start|>assistant\n<think>\n\n</think>";
    edgellm_token *ids = NULL;
    int32_t n = tokenize(m, text, strlen(text), EDGELLM_TOKENIZE_PARSE_SPECIAL, &ids);
    const edgellm_token want[] = {151644, 77091, 198, 151667, 271, 151668};
    CHECK_MSG(ids_equal(ids, n, want, 6), "qwen chat text: %d ids", n);
    free(ids);
    n = tokenize(m, text, strlen(text), 0, &ids);
    for (int32_t k = 0; k < n; k++)
        CHECK(ids[k] < 151643);
    free(ids);
    /* Digits are single tokens in Qwen's pre-tokenizer. */
    n = tokenize(m, "2024", 4, 0, &ids);
    const edgellm_token digits[] = {17, 15, 17, 19};
    CHECK(ids_equal(ids, n, digits, 4));
    free(ids);
    edgellm_model_free(m);
}

static void check_nfc(const char *in, const char *want)
{
    char *buf = NULL;
    size_t cap = 0, n = 0;
    const char *out = NULL;
    CHECK(ellm_nfc(in, strlen(in), &buf, &cap, &out, &n) == EDGELLM_OK);
    CHECK_MSG(n == strlen(want) && memcmp(out, want, n) == 0, "NFC of \"%s\" is \"%.*s\"", in,
              (int)n, out);
    free(buf);
}

/* Examples worked from the Unicode data by hand (the live test compares many more with the
 * JavaScript engine's String.prototype.normalize through the Qwen reference tokenizer). */
static void test_nfc(void)
{
    check_nfc("plain ascii", "plain ascii");
    check_nfc("e\xCC\x81", "\xC3\xA9");             /* e + U+0301 -> é */
    check_nfc("a\xCC\x82\xCC\xA3", "\xE1\xBA\xAD"); /* a + ^ + dot below -> ậ */
    check_nfc("a\xCC\xA3\xCC\x82", "\xE1\xBA\xAD"); /* same after reordering */
    check_nfc("\xE2\x80\x80", "\xE2\x80\x82");      /* U+2000 -> U+2002 */
    check_nfc("\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8", "\xEA\xB0\x81"); /* jamo -> 각 */
    check_nfc("\xE0\xA5\x98", "\xE0\xA4\x95\xE0\xA4\xBC");             /* U+0958 stays decomposed */
    check_nfc("\xFF\xCC\x81", "\xFF\xCC\x81");                         /* an invalid byte is kept */
}

static void test_byte_map(void)
{
    bool seen[0x144] = {false};
    for (int b = 0; b < 256; b++) {
        uint32_t c = ellm_bpe_byte_to_char((uint8_t)b);
        CHECK(c < 0x144 && !seen[c]);
        if (c < 0x144)
            seen[c] = true;
        CHECK(ellm_bpe_char_to_byte(c) == b);
    }
    CHECK(ellm_bpe_byte_to_char(' ') == 0x120);  /* 'Ġ' */
    CHECK(ellm_bpe_byte_to_char('\n') == 0x10A); /* 'Ċ' */
    CHECK(ellm_bpe_byte_to_char('A') == 'A');
    CHECK(ellm_bpe_char_to_byte(0x144) == -1);
}

/* Pieces of text under a family, joined with '|'. */
static void check_split(ellm_pre_type type, const char *text, const char *want)
{
    ellm_pretok p = {0};
    size_t n = 0;
    CHECK(ellm_pretokenize(&p, type, text, strlen(text), &n) == EDGELLM_OK);
    char got[512] = "";
    size_t g = 0;
    for (size_t k = 0; k < n && g + 2 < sizeof got; k++) {
        size_t a = ellm_pretok_piece_start(&p, k), e = ellm_pretok_piece_end(&p, k);
        if (k)
            got[g++] = '|';
        size_t len = e - a < sizeof got - g - 1 ? e - a : sizeof got - g - 1;
        memcpy(got + g, text + a, len);
        g += len;
        got[g] = '\0';
    }
    CHECK_MSG(strcmp(got, want) == 0, "%s: \"%s\" split as \"%s\", want \"%s\"",
              ellm_pre_type_name(type), text, got, want);
    ellm_pretok_free(&p);
}

static void test_pretokenizers(void)
{
    /* Derived by hand from each family's regex (see pretokenize.h). */
    check_split(ELLM_PRE_LLAMA3, "I'M don't 12345  x\n\n y", "I|'M| don|'t| |123|45| | x|\n\n| y");
    check_split(ELLM_PRE_LLAMA3, "a  \n\tb...\n", "a|  \n|\tb|...\n");
    check_split(ELLM_PRE_QWEN2, "ab12 3", "ab|1|2| |3");
    check_split(ELLM_PRE_GPT2, "I'M don't 12345  x\n\n y", "I|'|M| don|'t| 12345| | x|\n\n| y");
    check_split(ELLM_PRE_GPT2, "Hi!! ?? \tz", "Hi|!!| ??| |\t|z");
    check_split(ELLM_PRE_SMOLLM, "ab12 34c", "ab|1|2| |3|4|c");
    check_split(ELLM_PRE_DEFAULT, "x=1234567 y", "x|=|123|456|7| y");
    check_split(ELLM_PRE_DEFAULT, "hello, world", "hello|,| world");
    ellm_pre_type t;
    CHECK(ellm_pre_type_from_name("llama-bpe", 9, &t) && t == ELLM_PRE_LLAMA3);
    CHECK(ellm_pre_type_from_name("qwen2", 5, &t) && t == ELLM_PRE_QWEN2);
    CHECK(!ellm_pre_type_from_name("nonsense", 8, &t));
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* A hand-made GPT-2-style tokenizer whose merges make rank order observable: in "abc" the pair
 * (b, c) has the better rank although (a, b) is leftmost, so a correct BPE gives a + bc -> abc,
 * while a leftmost-first one would stop at [ab, c]. */
static void test_tiny_gpt2(void)
{
    const char *dir = test_tmp_path("hf-tiny");
    char path[600];
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    write_file(path,
               "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"c\": 2, "
               "\"\\u0120\": 3, \"bc\": 4, \"ab\": 5, \"abc\": 6},"
               " \"merges\": [\"b c\", \"a b\", [\"a\", \"bc\"]]},"
               " \"added_tokens\": [{\"id\": 7, \"content\": \"<|end|>\", \"special\": true}],"
               " \"normalizer\": null,"
               " \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"use_regex\": true}}");
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    write_file(
        path,
        "{\"eos_token\": \"<|end|>\", \"model_max_length\": 1000000000000000019884624838656}");
    const char *out = test_tmp_path("hf-tiny.gguf");
    edgellm_status st = ellm_convert_hf_vocab_only(dir, out, "tiny");
    CHECK_MSG(st == EDGELLM_OK, "%s", edgellm_last_error());
    edgellm_model_params mp = edgellm_model_default_params();
    mp.vocab_only = 1;
    edgellm_model *m = NULL;
    if (st != EDGELLM_OK || edgellm_model_load(out, &mp, &m) != EDGELLM_OK) {
        CHECK_MSG(false, "%s", edgellm_last_error());
        return;
    }
    CHECK(edgellm_token_eos(m) == 7 && edgellm_token_is_eog(m, 7));
    CHECK(!edgellm_add_bos_default(m));
    edgellm_token *ids = NULL;
    /* gpt2 pieces: "abc", " ab", "<|end|>"-as-text is not possible here (no '<' token). */
    int32_t n = tokenize(m, "abc ab", 6, 0, &ids);
    const edgellm_token want[] = {6, 3, 5};
    CHECK_MSG(ids_equal(ids, n, want, 3), "tiny: %d ids", n);
    free(ids);
    n = tokenize(m, "abc<|end|>", 10, EDGELLM_TOKENIZE_PARSE_SPECIAL, &ids);
    const edgellm_token want_special[] = {6, 7};
    CHECK(ids_equal(ids, n, want_special, 2));
    free(ids);
    /* A byte the vocabulary cannot spell is an error naming the byte, not a crash. */
    int32_t count = 0;
    CHECK(edgellm_tokenize(m, "az", 2, 0, NULL, 0, &count) == EDGELLM_ERR_FORMAT);
    CHECK_MSG(strstr(edgellm_last_error(), "0x7A") != NULL, "%s", edgellm_last_error());
    edgellm_model_free(m);

    /* Unsupported tokenizers are refused with the reason. */
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    write_file(path, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
                     " \"pre_tokenizer\": {\"type\": \"Metaspace\"}}");
    CHECK(ellm_convert_hf_vocab_only(dir, out, NULL) == EDGELLM_ERR_UNSUPPORTED);
    CHECK_MSG(strstr(edgellm_last_error(), "pre-tokenizer") != NULL, "%s", edgellm_last_error());
    write_file(path, "{\"model\": {\"type\": \"Unigram\"}}");
    CHECK(ellm_convert_hf_vocab_only(dir, out, NULL) == EDGELLM_ERR_UNSUPPORTED);
    write_file(path, "{\"model\": ");
    CHECK(ellm_convert_hf_vocab_only(dir, out, NULL) == EDGELLM_ERR_FORMAT);
    CHECK(ellm_convert_hf_vocab_only(test_tmp_path("no-such-dir"), out, NULL) == EDGELLM_ERR_IO);
}

int main(void)
{
    test_byte_map();
    test_nfc();
    test_pretokenizers();
    test_llama3();
    test_qwen3();
    test_tiny_gpt2();
    return test_finish("test_bpe");
}
