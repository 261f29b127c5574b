/* SentencePiece tokenizer against a reference runtime's tokenizations (../shared/testdata) and
 * the aidreams prompts, special-token handling, byte fallback and streaming UTF-8. */
#define _POSIX_C_SOURCE 200809L
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/utf8.h"
#include "gguf/gguf.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

static ellm_vocab *load_vocab(const char *rel, gguf_file **file)
{
    ellm_vocab *v = NULL;
    edgellm_status st = ellm_gguf_open(test_shared_path(rel), file);
    CHECK_MSG(st == EDGELLM_OK, "%s", edgellm_last_error());
    if (st == EDGELLM_OK) {
        st = ellm_vocab_load(*file, &v);
        CHECK_MSG(st == EDGELLM_OK, "%s", edgellm_last_error());
    }
    return v;
}

static void test_llama2_reference(void)
{
    gguf_file *f = NULL;
    ellm_vocab *v = load_vocab("models/llama2-vocab-tiny-f16.gguf", &f);
    json_error_t jerr;
    json_t *cases = json_load_file(test_shared_path("testdata/tokenize-llama2-spm.json"), 0, &jerr);
    CHECK_MSG(cases && json_is_array(cases), "cannot read the reference JSON: %s", jerr.text);
    if (!v || !cases) {
        json_decref(cases);
        ellm_vocab_free(v);
        ellm_gguf_close(f);
        return;
    }
    size_t i;
    json_t *c;
    int matched = 0, round_trips = 0;
    json_array_foreach(cases, i, c)
    {
        const char *text = json_string_value(json_object_get(c, "text"));
        json_t *ids = json_object_get(c, "ids");
        size_t n_ref = json_array_size(ids);
        int32_t n = 0;
        size_t len = strlen(text);
        /* The reference recognises control tokens written in the text ("<s> ... </s>" gives ids
         * 1 and 2), so it is compared with special parsing on. */
        ellm_tokenize(v, text, len, false, true, NULL, 0, &n);
        edgellm_token *got = malloc((size_t)(n ? n : 1) * sizeof *got);
        CHECK(ellm_tokenize(v, text, len, false, true, got, n, &n) == EDGELLM_OK);
        bool same = (size_t)n == n_ref;
        for (size_t k = 0; same && k < n_ref; k++)
            same = got[k] == (edgellm_token)json_integer_value(json_array_get(ids, k));
        CHECK_MSG(same, "tokenization of \"%s\" differs from the reference (%d vs %zu ids)", text,
                  n, n_ref);
        matched += same;
        bool has_control = false;
        for (int32_t k = 0; k < n; k++)
            has_control |= ellm_vocab_token_type(v, got[k]) == ELLM_TOKEN_CONTROL;
        if (has_control) { /* control tokens have no text of their own */
            free(got);
            continue;
        }
        size_t cap = len * 4 + 16, out_len = 0;
        char *back = malloc(cap);
        CHECK(ellm_detokenize(v, got, n, true, back, cap, &out_len) == EDGELLM_OK);
        bool rt = out_len == len && memcmp(back, text, len) == 0;
        CHECK_MSG(rt, "detokenizing \"%s\" gives \"%.*s\"", text, (int)out_len, back);
        round_trips += rt;
        free(back);
        free(got);
    }
    fprintf(stderr, "llama2 SPM: %d/%zu tokenizations match, %d round trips\n", matched,
            json_array_size(cases), round_trips);
    CHECK(json_array_size(cases) > 10);
    json_decref(cases);
    ellm_vocab_free(v);
    ellm_gguf_close(f);
}

static void unescape(char *s)
{
    char *o = s;
    for (char *p = s; *p; p++) {
        if (p[0] == '\\' && p[1] == 'n') {
            *o++ = '\n';
            p++;
        } else if (p[0] == '\\' && p[1] == 't') {
            *o++ = '\t';
            p++;
        } else if (p[0] == '\\' && p[1] == '\\') {
            *o++ = '\\';
            p++;
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
}

static void test_aidreams_prompts(void)
{
    gguf_file *f = NULL;
    ellm_vocab *v = load_vocab("models/aidreams260K-f32.gguf", &f);
    char *tsv = test_read_file(test_shared_path("testdata/aidreams/greedy.tsv"), NULL);
    CHECK(v && tsv);
    int rows = 0;
    for (char *save = NULL, *line = tsv ? strtok_r(tsv, "\n", &save) : NULL; v && line;
         line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#')
            continue;
        char *cols[4];
        char *p = line;
        for (int c = 0; c < 4; c++) {
            cols[c] = p;
            p = p ? strchr(p, '\t') : NULL;
            if (p)
                *p++ = '\0';
        }
        edgellm_token want[64], got[64], cont[64];
        int nw = 0, nc = 0;
        for (char *q = cols[1], *end; nw < 64; q = end) {
            long id = strtol(q, &end, 10);
            if (end == q)
                break;
            want[nw++] = (edgellm_token)id;
        }
        for (char *q = cols[2], *end; nc < 64; q = end) {
            long id = strtol(q, &end, 10);
            if (end == q)
                break;
            cont[nc++] = (edgellm_token)id;
        }
        int32_t n = 0;
        CHECK(ellm_tokenize(v, cols[0], strlen(cols[0]), true, false, got, 64, &n) == EDGELLM_OK);
        CHECK_MSG(n == nw && !memcmp(got, want, (size_t)n * sizeof *got),
                  "prompt \"%s\" tokenizes differently", cols[0]);
        char text[1024];
        size_t len;
        unescape(cols[3]);
        CHECK(ellm_detokenize(v, cont, nc, false, text, sizeof text, &len) == EDGELLM_OK);
        CHECK_MSG(len == strlen(cols[3]) && !memcmp(text, cols[3], len),
                  "continuation of \"%s\" detokenizes to \"%.*s\"", cols[0], (int)len, text);
        rows++;
    }
    CHECK(rows == 7);
    free(tsv);
    ellm_vocab_free(v);
    ellm_gguf_close(f);
}

static void test_special_and_bytes(void)
{
    gguf_file *f = NULL;
    ellm_vocab *v = load_vocab("models/llama2-vocab-tiny-f16.gguf", &f);
    if (!v) {
        ellm_gguf_close(f);
        return;
    }
    edgellm_token ids[256];
    int32_t n = 0;
    const char *text = "Hello</s>world";
    CHECK(ellm_tokenize(v, text, strlen(text), false, true, ids, 256, &n) == EDGELLM_OK);
    bool has_eos = false;
    for (int i = 0; i < n; i++)
        has_eos |= ids[i] == ellm_vocab_eos(v);
    CHECK_MSG(has_eos, "</s> not recognised with special parsing on");
    CHECK(ellm_tokenize(v, text, strlen(text), false, false, ids, 256, &n) == EDGELLM_OK);
    for (int i = 0; i < n; i++)
        CHECK_MSG(ids[i] != ellm_vocab_eos(v), "</s> recognised with special parsing off");

    /* Byte fallback: characters outside the vocabulary become their UTF-8 bytes. */
    const char *emoji = "I \xF0\x9F\xA6\x99 llamas \xE7\x8C\xAB"; /* 🦙 猫 */
    CHECK(ellm_tokenize(v, emoji, strlen(emoji), false, false, ids, 256, &n) == EDGELLM_OK);
    int bytes = 0;
    for (int i = 0; i < n; i++)
        bytes += ellm_vocab_token_type(v, ids[i]) == ELLM_TOKEN_BYTE;
    CHECK_MSG(bytes >= 4, "expected byte-fallback tokens for the emoji, got %d", bytes);
    char out[256];
    size_t len;
    CHECK(ellm_detokenize(v, ids, n, true, out, sizeof out, &len) == EDGELLM_OK);
    CHECK(len == strlen(emoji) && !memcmp(out, emoji, len));

    /* Streaming: appending pieces one by one never exposes half a character. */
    char stream[256];
    size_t held = 0, shown = 0;
    for (int i = 0; i < n; i++) {
        size_t pl;
        CHECK(ellm_token_piece(v, ids[i], stream + held, sizeof stream - held, &pl) == EDGELLM_OK);
        held += pl;
        size_t ready = held - ellm_utf8_incomplete_tail(stream, held);
        for (size_t k = shown; k < ready; k++) {
            unsigned char c = (unsigned char)stream[k];
            if (k == shown)
                CHECK_MSG((c & 0xC0) != 0x80, "a streamed chunk starts mid-character");
        }
        shown = ready;
    }
    CHECK(shown == held);
    CHECK(ellm_utf8_incomplete_tail("a\xE7\x8C", 3) == 2);
    CHECK(ellm_utf8_incomplete_tail("a\xE7\x8C\xAB", 4) == 0);
    CHECK(ellm_utf8_incomplete_tail("\xF0\x9F\xA6", 3) == 3);

    /* Invalid UTF-8 input is tokenized byte by byte, not rejected or crashed on. */
    const char bad[] = {'a', (char)0xFF, (char)0xC3, 'b', 0};
    CHECK(ellm_tokenize(v, bad, 4, false, false, ids, 256, &n) == EDGELLM_OK && n > 0);
    CHECK(ellm_detokenize(v, ids, n, true, out, sizeof out, &len) == EDGELLM_OK);
    CHECK(len == 4 && !memcmp(out, bad, 4));

    /* Buffer contracts. */
    CHECK(ellm_tokenize(v, "Hello world", 11, true, false, ids, 1, &n) ==
          EDGELLM_ERR_BUFFER_TOO_SMALL);
    CHECK(n == 3);
    CHECK(ellm_token_piece(v, 32000, out, sizeof out, &len) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(ellm_tokenize(v, "", 0, true, false, ids, 256, &n) == EDGELLM_OK && n == 1 &&
          ids[0] == ellm_vocab_bos(v));

    /* Throughput on ~1 MB of text (reported, not asserted). */
    size_t big_len = 1 << 20;
    char *big = malloc(big_len + 1);
    const char *words = "The quick brown fox jumps over the lazy dog, 1234 times; naïve café. ";
    for (size_t i = 0; i < big_len; i++)
        big[i] = words[i % strlen(words)];
    big[big_len] = '\0';
    int32_t cap = (int32_t)big_len;
    edgellm_token *many = malloc((size_t)cap * sizeof *many);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK(ellm_tokenize(v, big, big_len, false, false, many, cap, &n) == EDGELLM_OK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    fprintf(stderr, "tokenized 1 MiB into %d tokens in %.3f s (%.0f tokens/s)\n", n, s, n / s);
    free(many);
    free(big);
    ellm_vocab_free(v);
    ellm_gguf_close(f);
}

int main(void)
{
    test_llama2_reference();
    test_aidreams_prompts();
    test_special_and_bytes();
    return test_finish("test_tokenizer");
}
