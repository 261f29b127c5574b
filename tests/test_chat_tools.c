/* Tool calls in src/chat beyond what the Jinja reference reaches: reading calls back out of
 * family-formatted text (what tool_choice "auto" relies on, since random test models never write
 * a call), the held-back prefix of streamed text, Python's json.dumps number forms, and the Hermes
 * style rendered through a family whose template knows no tools. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "chat/chat.h"
#include "test_util.h"

/* Parses text as family f; checks the content and the calls "name args|name args". */
static void expect_parse(ellm_chat_family f, const char *text, const char *content,
                         const char *calls)
{
    ellm_chat_parsed p;
    CHECK(ellm_chat_parse_tool_calls(f, text, strlen(text), &p));
    char got[1024] = "";
    for (size_t i = 0; i < p.n_calls; i++) {
        size_t at = strlen(got);
        snprintf(got + at, sizeof got - at, "%s%s %s", i ? "|" : "", p.calls[i].name,
                 p.calls[i].arguments);
    }
    CHECK_MSG(strcmp(p.content, content) == 0, "%s: content %s, wanted %s",
              ellm_chat_family_name(f), p.content, content);
    CHECK_MSG(strcmp(got, calls) == 0, "%s: calls '%s', wanted '%s' (text %s)",
              ellm_chat_family_name(f), got, calls, text);
    ellm_chat_parsed_free(&p);
}

static void test_parse(void)
{
    /* Qwen / Hermes: <tool_call> blocks after optional text. */
    expect_parse(ELLM_CHAT_QWEN25,
                 "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", "
                 "\"days\": 2, \"t\": 0.1}}\n</tool_call>",
                 "", "get_weather {\"city\":\"Paris\",\"days\":2,\"t\":0.1}");
    expect_parse(ELLM_CHAT_QWEN3,
                 "Let me check.\n<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool_call>\n"
                 "<tool_call>\n{\"name\": \"b\", \"arguments\": {\"x\": [1, true, null]}}\n"
                 "</tool_call>\n",
                 "Let me check.", "a {}|b {\"x\":[1,true,null]}");
    /* The closing tag may be missing when generation stopped after the object. */
    expect_parse(ELLM_CHAT_CHATML, "<tool_call>\n{\"name\": \"a\", \"arguments\": {\"k\": \"v\"}}",
                 "", "a {\"k\":\"v\"}");
    /* Not calls: all of it stays content. */
    const char *not_calls[] = {
        "Just text, no call.",
        "<tool_call>\n{\"name\": \"a\", \"arguments\": {\"k\": ",         /* truncated */
        "<tool_call>\nnot json\n</tool_call>",                            /* no object */
        "<tool_call>\n{\"arguments\": {}}\n</tool_call>",                 /* no name */
        "<tool_call>\n{\"name\": \"a\", \"arguments\": 3}\n</tool_call>", /* arguments not an object */
        "<tool_call>\n{\"name\": \"a\"}\n</tool_call> and then text",     /* text after the call */
        "<tool_call>\n{\"name\": \"\", \"arguments\": {}}\n</tool_call>",          /* empty name */
        "<tool_call>\n{\"name\": \"a\\u0000b\", \"arguments\": {}}\n</tool_call>", /* NUL in name */
    };
    for (size_t i = 0; i < sizeof not_calls / sizeof *not_calls; i++)
        expect_parse(ELLM_CHAT_QWEN25, not_calls[i], not_calls[i], "");
    /* A call without arguments has empty arguments. */
    expect_parse(ELLM_CHAT_SMOLLM, "<tool_call>{\"name\": \"now\"}</tool_call>", "", "now {}");

    /* Llama 3.1/3.2: the whole answer is the object, with "parameters" (or "arguments"). */
    expect_parse(ELLM_CHAT_LLAMA31,
                 " {\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}", "",
                 "get_weather {\"city\":\"Oslo\"}");
    expect_parse(ELLM_CHAT_LLAMA32,
                 "<|python_tag|>{\"name\": \"a\", \"arguments\": {\"n\": 1}}; {\"name\": \"b\", "
                 "\"parameters\": {}}",
                 "", "a {\"n\":1}|b {}");
    expect_parse(ELLM_CHAT_LLAMA31, "The weather is {\"name\": \"x\"}",
                 "The weather is {\"name\": \"x\"}", "");
    expect_parse(ELLM_CHAT_LLAMA31, "{\"answer\": 42}", "{\"answer\": 42}", "");
    expect_parse(ELLM_CHAT_LLAMA31, "{\"name\": \"a\", \"parameters\": {}} trailing",
                 "{\"name\": \"a\", \"parameters\": {}} trailing", "");

    /* Mistral v3: [TOOL_CALLS] and a list of objects. */
    expect_parse(ELLM_CHAT_MISTRAL_V3,
                 "[TOOL_CALLS] [{\"name\": \"a\", \"arguments\": {\"q\": \"\\u00e9\\n\"}}, "
                 "{\"name\": \"b\", \"arguments\": {}, \"id\": \"abcdefghi\"}]",
                 "", "a {\"q\":\"\xC3\xA9\\n\"}|b {}");
    expect_parse(ELLM_CHAT_MISTRAL_V3, "[TOOL_CALLS] []", "[TOOL_CALLS] []", "");
    /* [TOOL_CALLS] is a control token that generated text does not show. */
    expect_parse(ELLM_CHAT_MISTRAL_V3, " [{\"name\": \"a\", \"arguments\": {}}]", "", "a {}");
    expect_parse(ELLM_CHAT_MISTRAL_V3, "[1, 2] is a list", "[1, 2] is a list", "");
    expect_parse(ELLM_CHAT_MISTRAL_V3, "[TOOL_CALLS] [{\"name\": \"a\"",
                 "[TOOL_CALLS] [{\"name\": \"a\"", "");
    /* Another family's syntax is text. */
    expect_parse(ELLM_CHAT_MISTRAL_V3, "<tool_call>{\"name\": \"a\"}</tool_call>",
                 "<tool_call>{\"name\": \"a\"}</tool_call>", "");
    /* NULL text is no text. */
    ellm_chat_parsed p;
    CHECK(ellm_chat_parse_tool_calls(ELLM_CHAT_QWEN25, NULL, 0, &p) && p.n_calls == 0 &&
          strcmp(p.content, "") == 0);
    ellm_chat_parsed_free(&p);
}

static void test_stream_start(void)
{
    const char *t = "Sure. <tool";
    CHECK(ellm_chat_tool_call_start(ELLM_CHAT_QWEN25, t, strlen(t)) == 6);
    t = "Sure. <b>bold</b>";
    CHECK(ellm_chat_tool_call_start(ELLM_CHAT_QWEN25, t, strlen(t)) == strlen(t));
    t = "x <tool_call>{";
    CHECK(ellm_chat_tool_call_start(ELLM_CHAT_CHATML, t, strlen(t)) == 2);
    t = "ok [TOOL_CA";
    CHECK(ellm_chat_tool_call_start(ELLM_CHAT_MISTRAL_V3, t, strlen(t)) == 3);
    CHECK(ellm_chat_tool_call_start(ELLM_CHAT_MISTRAL_V3, " [{", 3) == 0);
    /* Llama: only at the start of the answer. */
    CHECK(ellm_chat_tool_call_start(ELLM_CHAT_LLAMA31, "  ", 2) == 0);
    CHECK(ellm_chat_tool_call_start(ELLM_CHAT_LLAMA31, " {\"na", 5) == 0);
    CHECK(ellm_chat_tool_call_start(ELLM_CHAT_LLAMA32, "<|pyth", 6) == 0);
    CHECK(ellm_chat_tool_call_start(ELLM_CHAT_LLAMA31, "The {", 5) == 5);
}

static void expect_dump(const char *json, int indent, bool compact, const char *want)
{
    json_t *v = json_loads(json, JSON_DECODE_ANY, NULL);
    char *out = NULL;
    size_t len = 0;
    CHECK(v && ellm_chat_json_dump(v, indent, compact, &out, &len));
    CHECK_MSG(out && strcmp(out, want) == 0 && len == strlen(want), "dump %s: %s, wanted %s", json,
              out ? out : "(null)", want);
    free(out);
    json_decref(v);
}

/* Python's json.dumps forms, which the templates' tojson writes under transformers. */
static void test_json_dump(void)
{
    expect_dump("[0.1, 1.5, 100.0, 1e16, 1e15, 0.0001, 0.00001, -2.5e-7, 123456789.125]", -1, false,
                "[0.1, 1.5, 100.0, 1e+16, 1000000000000000.0, 0.0001, 1e-05, -2.5e-07, "
                "123456789.125]");
    expect_dump("{\"b\": 1, \"a\": [true, false, null], \"e\": {}, \"f\": []}", -1, false,
                "{\"b\": 1, \"a\": [true, false, null], \"e\": {}, \"f\": []}");
    expect_dump("{\"a\": [1, {\"b\": \"\\u00e9\\t\\u0001\"}]}", 2, false,
                "{\n  \"a\": [\n    1,\n    {\n      \"b\": \"\xC3\xA9\\t\\u0001\"\n    }\n  ]\n}");
    expect_dump("{\"a\": [1, 2], \"b\": \"x\"}", -1, true, "{\"a\":[1,2],\"b\":\"x\"}");
}

/* Families without tools in their template: the Hermes block in the system message, calls as
 * <tool_call> text, results as a user turn; the roles still alternate for Gemma. */
static void test_hermes_fallback(void)
{
    json_t *tools = json_loads("[{\"type\": \"function\", \"function\": {\"name\": \"f\"}}]", 0,
                               NULL);
    json_t *args = json_loads("{\"x\": 1}", 0, NULL);
    ellm_chat_tool_call call = {"abcdefghi", "f", args};
    ellm_chat_message msgs[] = {{"user", "go"}, {"assistant", ""}, {"tool", "r1"}, {"tool", "r2"}};
    ellm_chat_message_tools per[4] = {
        {NULL, 0, NULL}, {&call, 1, NULL}, {NULL, 0, "abcdefghi"}, {NULL, 0, "abcdefghi"}};
    ellm_chat_tools t = {tools, per};
    char *s = ellm_chat_format_tools(ELLM_CHAT_GEMMA, msgs, 4, &t, true, "<bos>", "<eos>", NULL,
                                     NULL);
    CHECK_MSG(s && strstr(s, "<start_of_turn>user\n# Tools\n") &&
                  strstr(s, "<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"f\"}}\n"
                            "</tools>") &&
                  strstr(s, "\n\ngo<end_of_turn>\n<start_of_turn>model\n<tool_call>\n{\"name\": "
                            "\"f\", \"arguments\": {\"x\": 1}}\n</tool_call><end_of_turn>\n"
                            "<start_of_turn>user\n<tool_response>\nr1\n</tool_response>\n"
                            "<tool_response>\nr2\n</tool_response><end_of_turn>\n"
                            "<start_of_turn>model\n"),
              "%s", s ? s : edgellm_last_error());
    free(s);
    /* The rewritten turns are all message text: none of it may become control tokens. */
    ellm_chat_span *spans = NULL;
    size_t n_spans = 0;
    s = ellm_chat_format_tools(ELLM_CHAT_CHATML, msgs, 4, &t, true, "", "", &spans, &n_spans);
    CHECK(s && n_spans > 0);
    for (size_t i = 0; s && i < n_spans; i++) {
        CHECK_MSG(memchr(s + spans[i].offset, '|', spans[i].length) == NULL,
                  "span %zu holds ChatML markup", i);
    }
    free(spans);
    free(s);
    /* Mistral v3 checks the ids of calls and results as its template does. */
    ellm_chat_tool_call short_id = {"c1", "f", args};
    ellm_chat_message_tools bad[4] = {
        {NULL, 0, NULL}, {&short_id, 1, NULL}, {NULL, 0, "c1"}, {NULL, 0, "c1"}};
    ellm_chat_tools tb = {tools, bad};
    CHECK(ellm_chat_format_tools(ELLM_CHAT_MISTRAL_V3, msgs, 4, &tb, true, "<s>", "</s>", NULL,
                                 NULL) == NULL);
    CHECK(strstr(edgellm_last_error(), "length 9") != NULL);
    json_decref(args);
    json_decref(tools);
}

int main(void)
{
    test_parse();
    test_stream_start();
    test_json_dump();
    test_hermes_fallback();
    return test_finish("test_chat_tools");
}
