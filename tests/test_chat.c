/* Chat module pieces the Jinja reference (chat_templates.sh) does not reach: Python's whitespace
 * rules for strip/trim, failures with clear messages, JSON conversations, and prompts built from a
 * loaded model (its template in the GGUF metadata, its BOS/EOS token texts). */
#include <stdlib.h>
#include <string.h>

#include "chat/chat.h"
#include "chat/chat_text.h"
#include "edgellm.h"
#include "gguf/gguf.h"
#include "test_util.h"

static bool span_is(chat_span s, const char *want)
{
    return s.n == strlen(want) && memcmp(s.p, want, s.n) == 0;
}

/* Python's str.isspace set, which Jinja's trim and str.strip() use under transformers. */
static void test_strip(void)
{
    CHECK(span_is(ellm_chat_strip(ellm_chat_span_of(" \t\n\v\f\rx y\r\n")), "x y"));
    /* U+00A0, U+3000, U+2028, U+0085 and the ASCII separators U+001C..U+001F are whitespace. */
    CHECK(span_is(ellm_chat_strip(ellm_chat_span_of("\xC2\xA0\xE3\x80\x80x\xE2\x80\xA8\xC2\x85")),
                  "x"));
    CHECK(span_is(ellm_chat_strip(ellm_chat_span_of("\x1c\x1fx\x1e")), "x"));
    /* U+FEFF (a JavaScript trim() character) and U+200B are not. */
    CHECK(span_is(ellm_chat_strip(ellm_chat_span_of("\xEF\xBB\xBFx")), "\xEF\xBB\xBFx"));
    CHECK(span_is(ellm_chat_strip(ellm_chat_span_of("x\xE2\x80\x8B")), "x\xE2\x80\x8B"));
    /* A broken UTF-8 tail is kept, not misread. */
    CHECK(span_is(ellm_chat_rstrip(ellm_chat_span_of("x\xE3\x80")), "x\xE3\x80"));
    CHECK(span_is(ellm_chat_strip(ellm_chat_span_of("   ")), ""));
    CHECK(span_is(ellm_chat_strip(ellm_chat_span_of(NULL)), ""));
    /* strip('\n') touches only newlines. */
    CHECK(span_is(ellm_chat_strip_chars(ellm_chat_span_of("\n a \n\n"), "\n"), " a "));
    CHECK(span_is(ellm_chat_lstrip_chars(ellm_chat_span_of("\n\nab\n"), "\n"), "ab\n"));
    CHECK(span_is(ellm_chat_split_last(ellm_chat_span_of("a</t>b</t>c"), "</t>"), "c"));
    CHECK(span_is(ellm_chat_split_first(ellm_chat_span_of("a</t>b</t>c"), "</t>"), "a"));
    CHECK(span_is(ellm_chat_split_last(ellm_chat_span_of("abc"), "</t>"), "abc"));
    /* str.split finds separators left to right without overlap: "aaa".split("aa")[-1] == "a". */
    CHECK(span_is(ellm_chat_split_last(ellm_chat_span_of("aaa"), "aa"), "a"));
}

static void test_format_failures(void)
{
    ellm_chat_message user = {"user", "hi"};
    CHECK(ellm_chat_format(ELLM_CHAT_CHATML, NULL, 0, true, "", "") == NULL);
    CHECK(strstr(edgellm_last_error(), "at least one message") != NULL);
    ellm_chat_message no_role = {NULL, "hi"};
    CHECK(ellm_chat_format(ELLM_CHAT_CHATML, &no_role, 1, true, "", "") == NULL);
    CHECK(strstr(edgellm_last_error(), "no role") != NULL);
    CHECK(ellm_chat_format((ellm_chat_family)99, &user, 1, true, "", "") == NULL);
    ellm_chat_message twice[] = {{"user", "a"}, {"user", "b"}};
    CHECK(ellm_chat_format(ELLM_CHAT_GEMMA, twice, 2, true, "<bos>", "<eos>") == NULL);
    CHECK_MSG(strstr(edgellm_last_error(), "must alternate") != NULL, "%s", edgellm_last_error());
    ellm_chat_message tool[] = {{"user", "a"}, {"tool", "c"}}; /* alternation holds, role not */
    CHECK(ellm_chat_format(ELLM_CHAT_MISTRAL, tool, 2, true, "<s>", "</s>") == NULL);
    CHECK(strstr(edgellm_last_error(), "Only user and assistant") != NULL);
    /* NULL bos/eos and content count as empty strings. */
    ellm_chat_message empty = {"user", NULL};
    char *s = ellm_chat_format(ELLM_CHAT_LLAMA2, &empty, 1, true, NULL, NULL);
    CHECK(s && strcmp(s, "[INST]  [/INST]") == 0);
    free(s);
}

static void test_names_and_detect(void)
{
    for (int f = 0; f < ELLM_CHAT_FAMILY_COUNT; f++) {
        ellm_chat_family back;
        CHECK(ellm_chat_family_from_name(ellm_chat_family_name((ellm_chat_family)f), &back));
        CHECK(back == (ellm_chat_family)f);
        CHECK(ellm_chat_stop_strings((ellm_chat_family)f)[0] != NULL);
    }
    ellm_chat_family f;
    CHECK(!ellm_chat_family_from_name("vicuna", &f));
    bool recognised = true;
    CHECK(ellm_chat_detect(NULL, &recognised) == ELLM_CHAT_CHATML && !recognised);
    CHECK(ellm_chat_detect("{{ messages }}", &recognised) == ELLM_CHAT_CHATML && !recognised);
    CHECK(ellm_chat_detect("<|im_start|>", NULL) == ELLM_CHAT_CHATML);
}

/* Llama 3.2 writes today's date (the reference test renders it too, on the same day). */
static void test_llama32_date(void)
{
    ellm_chat_message user = {"user", "hi"};
    char *s = ellm_chat_format(ELLM_CHAT_LLAMA32, &user, 1, false, "<|begin_of_text|>", "");
    const char *at = s ? strstr(s, "Today Date: ") : NULL;
    int day = 0, year = 0;
    char month[4] = {0};
    CHECK(at && sscanf(at, "Today Date: %2d %3s %4d", &day, month, &year) == 3);
    CHECK(day >= 1 && day <= 31 && year >= 2024 && strlen(month) == 3);
    CHECK(at && strncmp(at + 12, "0", day < 10 ? 1 : 0) == 0); /* two-digit day, as %d */
    free(s);
}

static void test_json(void)
{
    ellm_chat_conversation c;
    CHECK(ellm_chat_conversation_parse(
              "{\"messages\":[{\"role\":\"system\",\"content\":\"S\\u00e9\"},"
              "{\"role\":\"user\",\"content\":\"hi\"}]}",
              &c) == EDGELLM_OK);
    CHECK(c.n == 2 && strcmp(c.messages[0].content, "S\xC3\xA9") == 0 &&
          strcmp(c.messages[1].role, "user") == 0);
    ellm_chat_conversation_free(&c);
    CHECK(ellm_chat_conversation_parse("[{\"role\":\"user\",\"content\":null}]", &c) == EDGELLM_OK);
    CHECK(c.n == 1 && strcmp(c.messages[0].content, "") == 0);
    ellm_chat_conversation_free(&c);
    CHECK(ellm_chat_conversation_parse("[{\"content\":\"x\"}]", &c) == EDGELLM_ERR_FORMAT);
    CHECK(strstr(edgellm_last_error(), "message 0") != NULL && c.n == 0);
    CHECK(ellm_chat_conversation_parse("{\"messages\": 3}", &c) == EDGELLM_ERR_FORMAT);
    CHECK(ellm_chat_conversation_parse("[{", &c) == EDGELLM_ERR_FORMAT);
    CHECK(strstr(edgellm_last_error(), "not valid JSON") != NULL);
}

/* The shared model re-written with a chat template in its metadata. */
static const char *model_with_template(const char *template_text)
{
    const char *out = test_tmp_path("chat-template-model.gguf");
    gguf_file *src = NULL;
    if (ellm_gguf_open(test_shared_path("models/aidreams260K-f32.gguf"), &src) != EDGELLM_OK)
        return NULL;
    gguf_writer *w = ellm_gguf_writer_create();
    edgellm_status st = w ? EDGELLM_OK : EDGELLM_ERR_OUT_OF_MEMORY;
    for (uint64_t i = 0; st == EDGELLM_OK && i < ellm_gguf_kv_count(src); i++) {
        const gguf_kv *kv = ellm_gguf_kv_at(src, i);
        char *key = ellm_gguf_str_dup(kv->key);
        st = key ? ellm_gguf_writer_set_value(w, key, &kv->value) : EDGELLM_ERR_OUT_OF_MEMORY;
        free(key);
    }
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_set_str(w, "tokenizer.chat_template", template_text);
    for (uint64_t i = 0; st == EDGELLM_OK && i < ellm_gguf_tensor_count(src); i++) {
        const gguf_tensor_info *t = ellm_gguf_tensor_at(src, i);
        char *name = ellm_gguf_str_dup(t->name);
        st = name ? ellm_gguf_writer_add_tensor(w, name, (ellm_type)t->type, t->n_dims, t->ne,
                                                t->data)
                  : EDGELLM_ERR_OUT_OF_MEMORY;
        free(name);
    }
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_write(w, out);
    ellm_gguf_writer_free(w);
    ellm_gguf_close(src);
    return st == EDGELLM_OK ? out : NULL;
}

static void test_model(void)
{
    edgellm_model *m = NULL;
    CHECK(edgellm_model_load(test_shared_path("models/aidreams260K-f32.gguf"), NULL, &m) ==
          EDGELLM_OK);
    if (!m)
        return;
    /* The public metadata and token-text accessors. */
    char buf[64];
    size_t len = 0;
    CHECK(edgellm_model_meta_string(m, "general.architecture", NULL, 0, &len) ==
          EDGELLM_ERR_BUFFER_TOO_SMALL);
    CHECK(len == 5);
    CHECK(edgellm_model_meta_string(m, "general.architecture", buf, 5, &len) ==
          EDGELLM_ERR_BUFFER_TOO_SMALL);
    CHECK(edgellm_model_meta_string(m, "general.architecture", buf, sizeof buf, &len) ==
              EDGELLM_OK &&
          strcmp(buf, "llama") == 0);
    CHECK(edgellm_model_meta_string(m, "tokenizer.chat_template", buf, sizeof buf, &len) ==
          EDGELLM_ERR_NOT_FOUND);
    CHECK(edgellm_model_meta_string(m, "llama.block_count", buf, sizeof buf, &len) ==
          EDGELLM_ERR_FORMAT);
    CHECK(edgellm_token_text(m, edgellm_token_bos(m), buf, sizeof buf, &len) == EDGELLM_OK &&
          strcmp(buf, "<s>") == 0 && len == 3);
    CHECK(edgellm_token_text(m, edgellm_token_eos(m), buf, sizeof buf, &len) == EDGELLM_OK &&
          strcmp(buf, "</s>") == 0);
    CHECK(edgellm_token_text(m, 1 << 20, buf, sizeof buf, &len) == EDGELLM_ERR_INVALID_ARGUMENT);

    /* No template: ChatML, and the caller learns it was not recognised. */
    ellm_chat_message msgs[] = {{"system", "Be kind."}, {"user", "Hi"}};
    bool recognised = true;
    char *s = ellm_chat_format_model(m, msgs, 2, true, &recognised);
    CHECK(!recognised);
    CHECK(s && strcmp(s, "<|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                         "<|im_start|>assistant\n") == 0);
    free(s);
    edgellm_model_free(m);

    /* A Llama 2 template in the metadata: recognised, with the vocabulary's <s> and </s>. */
    const char *path = model_with_template(
        "{% if messages[0]['role'] == 'system' %}...<<SYS>>...[INST]...{% endif %}");
    CHECK(path != NULL);
    if (!path || edgellm_model_load(path, NULL, &m) != EDGELLM_OK) {
        CHECK(0);
        return;
    }
    ellm_chat_message turns[] = {{"system", "Be kind."}, {"user", "Hi"}, {"assistant", "Hello"}};
    s = ellm_chat_format_model(m, turns, 3, false, &recognised);
    CHECK(recognised && ellm_chat_detect_model(m, NULL) == ELLM_CHAT_LLAMA2);
    CHECK_MSG(s && strcmp(s, "<s>[INST] <<SYS>>\nBe kind.\n<</SYS>>\n\nHi [/INST] Hello </s>") == 0,
              "%s", s ? s : edgellm_last_error());
    free(s);
    edgellm_model_free(m);
}

int main(void)
{
    test_strip();
    test_format_failures();
    test_names_and_detect();
    test_llama32_date();
    test_json();
    test_model();
    return test_finish("test_chat");
}
