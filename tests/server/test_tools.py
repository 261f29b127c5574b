#!/usr/bin/env python3
"""Tool calls on /v1/chat/completions end to end: with tool_choice "required" or a named function
the answer is a call whose arguments validate against the function's parameters (checked with
Python's jsonschema, independent of the server), streamed in OpenAI's delta format too; a
conversation carrying the call and its result is accepted; tool_choice "none" and "auto" answer in
text when the model writes no call; bad tools, tool choices and tool messages are 400s naming the
problem. Two one-layer random models: one with Llama 2's vocabulary and no chat template (the
Hermes style through ChatML), one with Qwen 3's vocabulary and template (its own tool block)."""
import json
import os
import subprocess
import sys

import jsonschema

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_server as ts  # noqa: E402  (the server harness)

WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 12},
        "unit": {"enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer"},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
TIME = {"type": "object", "properties": {"zone": {"type": "string", "pattern": "^[A-Z]{3}$"}},
        "required": ["zone"], "additionalProperties": False}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                      "parameters": WEATHER}},
    {"type": "function", "function": {"name": "get_time", "description": "Time in a zone",
                                      "parameters": TIME}},
]
SCHEMAS = {"get_weather": WEATHER, "get_time": TIME}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


def valid_call(call, name=None):
    """The call's shape and that its arguments validate; returns a failure text or None."""
    try:
        if call["type"] != "function" or not call["id"]:
            return "bad type or id: %r" % call
        fn = call["function"]
        if name and fn["name"] != name:
            return "named %r, wanted %r" % (fn["name"], name)
        jsonschema.validate(json.loads(fn["arguments"]), SCHEMAS[fn["name"]])
    except (KeyError, TypeError, ValueError, jsonschema.ValidationError) as e:
        return "%s: %r" % (e, call)
    return None


def constrained_calls(s, label):
    check = ts.check
    for seed in range(4):
        for choice, name in (("required", None),
                             ({"type": "function", "function": {"name": "get_time"}}, "get_time")):
            body = {"messages": ASK, "tools": TOOLS, "tool_choice": choice, "seed": seed,
                    "temperature": 1}
            st, resp, _ = s.request("POST", "/v1/chat/completions", body)
            ok = st == 200
            why = "status %d %r" % (st, resp)
            if ok:
                c = resp["choices"][0]
                msg = c["message"]
                calls = msg.get("tool_calls") or []
                why = valid_call(calls[0], name) if len(calls) == 1 else "calls: %r" % msg
                ok = why is None and c["finish_reason"] == "tool_calls" and msg["content"] is None
            check(ok, "%s: tool_choice %r seed %d gives a valid call (%s)" % (label, choice, seed,
                                                                               why))

    # Streamed: the call arrives as OpenAI's deltas (index, id, type, name; then arguments).
    st, events, done, _ = s.stream("/v1/chat/completions",
                                   {"messages": ASK, "tools": TOOLS, "tool_choice": "required",
                                    "seed": 5, "temperature": 1, "stream": True})
    calls, finish, content = {}, None, ""
    for e in events:
        for c in e.get("choices", []):
            delta = c["delta"]
            content += delta.get("content") or ""
            for tc in delta.get("tool_calls", []):
                acc = calls.setdefault(tc["index"], {"id": None, "type": None,
                                                     "function": {"name": "", "arguments": ""}})
                acc["id"] = tc.get("id", acc["id"])
                acc["type"] = tc.get("type", acc["type"])
                acc["function"]["name"] += tc.get("function", {}).get("name", "")
                acc["function"]["arguments"] += tc.get("function", {}).get("arguments", "")
            finish = c["finish_reason"] or finish
    why = valid_call(calls[0]) if len(calls) == 1 else "calls %r" % calls
    check(st == 200 and done and why is None and finish == "tool_calls" and content == "",
          "%s: streamed call in deltas (%s, finish %s, content %r)" % (label, why, finish, content))

    # The round trip: the call and its result go back into the conversation.
    st, resp, _ = s.request("POST", "/v1/chat/completions",
                            {"messages": ASK, "tools": TOOLS, "tool_choice": "required", "seed": 1})
    call = resp["choices"][0]["message"]["tool_calls"][0] if st == 200 else None
    if call:
        convo = ASK + [{"role": "assistant", "content": None, "tool_calls": [call]},
                       {"role": "tool", "tool_call_id": call["id"], "content": "21 C, clear"}]
        st, resp, _ = s.request("POST", "/v1/chat/completions",
                                {"messages": convo, "tools": TOOLS, "tool_choice": "none",
                                 "max_tokens": 8, "seed": 1})
        check(st == 200 and isinstance(resp["choices"][0]["message"]["content"], str) and
              "tool_calls" not in resp["choices"][0]["message"],
              "%s: conversation with the call and its result answered in text: %r" % (label, resp))
    else:
        check(False, "%s: no call to send back: %r" % (label, resp))

    # "auto" with a model that writes no call syntax: text, finish "stop"/"length".
    st, resp, _ = s.request("POST", "/v1/chat/completions",
                            {"messages": ASK, "tools": TOOLS, "max_tokens": 12, "seed": 3})
    c = resp["choices"][0] if st == 200 else {}
    check(st == 200 and isinstance(c["message"]["content"], str) and
          c["finish_reason"] in ("stop", "length"), "%s: auto answers in text: %r" % (label, resp))


def lazy_auto(s):
    """Under "auto" the call grammar waits for the family's trigger. A random model never writes
    <tool_call> by itself, so logit_bias forces that token (one token in Qwen's vocabulary); what
    follows it must then be well-formed calls, however random the model."""
    check = ts.check
    st, resp, _ = s.request("POST", "/tokenize", {"content": "<tool_call>", "parse_special": True})
    check(st == 200 and len(resp["tokens"]) == 1, "<tool_call> is one token: %r" % resp)
    trigger = resp["tokens"][0]
    calls = 0
    for seed in range(6):
        st, resp, _ = s.request("POST", "/v1/chat/completions",
                                {"messages": ASK, "tools": TOOLS, "seed": seed, "max_tokens": 160,
                                 "logit_bias": {str(trigger): 100}})
        c = resp["choices"][0] if st == 200 else {}
        found = c.get("message", {}).get("tool_calls") or []
        whys = [valid_call(call) for call in found]
        calls += len(found)
        # Cut off by max_tokens (the bias forces call after call) is the only other outcome.
        check(st == 200 and (c["finish_reason"] == "tool_calls" and found and
                             not any(whys) or c["finish_reason"] == "length"),
              "auto with a forced <tool_call>, seed %d: %r %r" % (seed, whys, c))
    check(calls > 0, "auto: some forced call completes under the lazy grammar (%d)" % calls)


def empty_parameters(s):
    """A function with the empty schema as parameters takes no arguments (OpenAI's reading): its
    call is generated with {} (the empty schema would admit any value, and an unbounded object
    that a random model never closes)."""
    tools = [{"type": "function", "function": {"name": "ping", "parameters": {}}}]
    for seed in range(3):
        st, resp, _ = s.request("POST", "/v1/chat/completions",
                                {"messages": ASK, "tools": tools, "tool_choice": "required",
                                 "seed": seed, "max_tokens": 200})
        calls = resp["choices"][0]["message"].get("tool_calls") if st == 200 else None
        ok = bool(calls) and json.loads(calls[0]["function"]["arguments"]) == {}
        ts.check(ok and resp["choices"][0]["finish_reason"] == "tool_calls",
                 "parameters {} seed %d: a call with an arguments object: %r" % (seed, resp))


def bad_requests(s):
    check = ts.check
    cases = [
        ({"tools": {"type": "function"}}, "tools", "must be an array"),
        ({"tools": []}, "tools", "1 to 128"),
        ({"tools": ["get_weather"]}, "tools", "tools[0] is not a function tool"),
        ({"tools": [{"type": "function", "function": {"name": "bad name"}}]}, "tools",
         "tools[0].function.name"),
        ({"tools": [TOOLS[0], TOOLS[0]]}, "tools", "both named 'get_weather'"),
        ({"tools": [{"type": "function", "function": {
            "name": "f", "parameters": {"type": "object",
                                        "properties": {"age": {"type": "integer",
                                                               "minimum": 0}}}}}]},
         "tools", "'minimum' at /properties/age"),
        ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}},
         "tool_choice", "'nope', which is not in 'tools'"),
        ({"tools": TOOLS, "tool_choice": "sometimes"}, "tool_choice", "must be \"none\""),
        ({"tool_choice": "required"}, "tool_choice", "has no 'tools'"),
        ({"tools": TOOLS, "tool_choice": "required", "response_format": {"type": "json_object"}},
         "tool_choice", "cannot be combined"),
        ({"messages": ASK + [{"role": "tool", "content": "21 C"}]}, "messages[1].tool_call_id",
         "no 'tool_call_id'"),
        ({"messages": ASK + [{"role": "assistant", "content": None, "tool_calls": [
            {"id": "abc", "type": "function",
             "function": {"name": "get_weather", "arguments": "{not json"}}]}]},
         "messages[1].tool_calls[0]", "is not JSON text"),
        ({"messages": ASK + [{"role": "assistant", "tool_calls": "call"}]},
         "messages[1].tool_calls", "must be an array"),
        ({"messages": [{"role": "user", "content": "hi", "tool_calls": []}]},
         "messages[0].tool_calls", "only assistant messages"),
    ]
    for extra, param, words in cases:
        body = dict({"messages": ASK, "max_tokens": 4}, **extra)
        st, resp, _ = s.request("POST", "/v1/chat/completions", body)
        err = resp.get("error", {}) if isinstance(resp, dict) else {}
        check(st == 400 and err.get("param") == param and words in err.get("message", ""),
              "400 for %s: %d %r" % (json.dumps(extra)[:80], st, resp))


def tiny_model(vocab, name):
    """A one-layer model with random weights and a real vocabulary (and its chat template)."""
    model = os.path.join(ts.TMP, name)
    subprocess.run([ts.EDGELLM, "synth", "--dims", "64,1,2,2,128", "--vocab", vocab, "-o", model],
                   check=True, capture_output=True)
    return model


def main():
    check = ts.check
    # Llama 2's vocabulary and no chat template: ChatML with tools in the Hermes style.
    model = tiny_model(os.path.join(ts.SHARED, "models", "llama2-vocab-tiny-f16.gguf"),
                       "llama2-tiny.gguf")
    s = ts.Server(model, "--parallel", "2", "--ctx", "1024")
    try:
        constrained_calls(s, "no template (Hermes style)")
        empty_parameters(s)
        bad_requests(s)
    finally:
        check(s.stop() == 0, "server exits 0")

    # Qwen 3's vocabulary and chat template: its own tool block and <tool_call> syntax.
    vocab = os.path.join(ts.TMP, "qwen3-vocab.gguf")
    subprocess.run([ts.EDGELLM, "convert", "--from", "hf",
                    os.path.join(ts.SHARED, "tokenizers", "qwen3"), "--vocab-only", "-o", vocab],
                   check=True, capture_output=True)
    s = ts.Server(tiny_model(vocab, "qwen3-tiny.gguf"), "--ctx", "1024")
    try:
        constrained_calls(s, "qwen3 vocabulary and template")
        lazy_auto(s)
    finally:
        check(s.stop() == 0, "server exits 0")
    print("server_tools: %d checks, %d failed" % (ts.checks, len(ts.failures)))
    return 1 if ts.failures else 0


if __name__ == "__main__":
    sys.exit(main())
