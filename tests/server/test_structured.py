#!/usr/bin/env python3
"""The server's constrained decoding end to end: response_format json_object and json_schema on
/v1/chat/completions and /v1/completions (streaming too), the "grammar" extension, and the 400s
for bad, unsupported or conflicting constraints, which must come before any decoding. Outputs are
checked with Python's json and jsonschema, independent of the server."""
import json
import os
import sys

import jsonschema

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_server as ts  # noqa: E402  (the server harness)

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 10},
        "n": {"type": "integer"},
        "color": {"enum": ["red", "green", "blue"]},
    },
    "required": ["name", "n", "color"],
    "additionalProperties": False,
}


def json_schema_format(schema):
    return {"type": "json_schema",
            "json_schema": {"name": "thing", "schema": schema, "strict": True}}


def main():
    check = ts.check
    s = ts.Server(ts.MODEL, "--parallel", "2")
    try:
        chat = {"messages": [{"role": "user", "content": "Tell me a story"}], "temperature": 1}
        prompt = {"prompt": "Once upon a time", "temperature": 1}
        for seed in range(4):
            body = dict(chat, seed=seed, response_format=json_schema_format(SCHEMA))
            st, resp, _ = s.request("POST", "/v1/chat/completions", body)
            text = resp["choices"][0]["message"]["content"] if st == 200 else ""
            try:
                jsonschema.validate(json.loads(text), SCHEMA)
                ok = True
            except (ValueError, jsonschema.ValidationError) as e:
                ok = False
                print("invalid:", e, repr(text), file=sys.stderr)
            check(st == 200 and ok and resp["choices"][0]["finish_reason"] == "stop",
                  "chat json_schema seed %d validates" % seed)

            body = dict(prompt, seed=seed, response_format=json_schema_format(SCHEMA))
            st, resp, _ = s.request("POST", "/v1/completions", body)
            text = resp["choices"][0]["text"] if st == 200 else ""
            try:
                jsonschema.validate(json.loads(text), SCHEMA)
                ok = True
            except (ValueError, jsonschema.ValidationError):
                ok = False
            check(st == 200 and ok, "completions json_schema seed %d validates: %r" % (seed, text))

        st, events, done, _ = s.stream("/v1/chat/completions",
                                       dict(chat, seed=9, stream=True,
                                            response_format=json_schema_format(SCHEMA)))
        text = "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"])
        try:
            jsonschema.validate(json.loads(text), SCHEMA)
            ok = True
        except (ValueError, jsonschema.ValidationError):
            ok = False
        check(st == 200 and done and ok, "streamed json_schema validates: %r" % text)

        completed = 0
        # Any object is unbounded: with this model's 128-token context some are cut off.
        for seed in range(12):
            st, resp, _ = s.request("POST", "/v1/completions",
                                    {"prompt": "I", "temperature": 1, "seed": seed,
                                     "response_format": {"type": "json_object"}})
            check(st == 200, "json_object status")
            if st == 200 and resp["choices"][0]["finish_reason"] == "stop":
                completed += 1
                text = resp["choices"][0]["text"]
                try:
                    ok = isinstance(json.loads(text), dict)
                except ValueError:
                    ok = False
                check(ok, "json_object gives an object: %r" % text)
        check(completed >= 1, "json_object completes within the context at least once")

        st, resp, _ = s.request("POST", "/v1/completions",
                                dict(prompt, seed=1, max_tokens=40,
                                     grammar='root ::= "The " ("cat" | "dog") " sat" [.!]'))
        text = resp["choices"][0]["text"] if st == 200 else ""
        check(st == 200 and text in ("The cat sat.", "The cat sat!", "The dog sat.", "The dog sat!"),
              "grammar extension followed: %r" % text)

        def bad(body, param, needle, path="/v1/chat/completions"):
            st, resp, _ = s.request("POST", path, body)
            msg = resp.get("error", {}).get("message", "") if isinstance(resp, dict) else ""
            check(st == 400 and resp["error"].get("param") == param and needle in msg,
                  "400 for %s: %d %s" % (needle, st, msg))

        bad(dict(chat, response_format={"type": "json_schema", "json_schema": {
            "name": "x", "schema": {"type": "integer", "minimum": 1}}}),
            "response_format", "unsupported JSON Schema keyword 'minimum' at /")
        bad(dict(chat, response_format={"type": "json_schema", "json_schema": {"schema": {}}}),
            "response_format", "needs 'json_schema'")
        bad(dict(chat, response_format={"type": "xml"}), "response_format", "must be text")
        bad(dict(chat, response_format="json"), "response_format", "must be an object")
        bad(dict(chat, grammar="root ::= undefined_rule"), "grammar", "never defined")
        bad(dict(chat, grammar="root ::= root \"a\""), "grammar", "can reach itself")
        bad(dict(chat, grammar=5), "grammar", "GBNF")
        bad(dict(chat, grammar='root ::= "a"', response_format={"type": "json_object"}), "grammar",
            "not both")
        deep = {}
        for _ in range(80):
            deep = {"type": "array", "items": deep}
        bad(dict(chat, response_format=json_schema_format(deep)), "response_format",
            "nests more than 64")
        bad(dict(prompt, grammar="root ::= " + "(" * 100 + '"a"' + ")" * 100), "grammar",
            "nested more than 64", path="/v1/completions")
        # The server is still fine afterwards.
        st, resp, _ = s.request("POST", "/v1/completions", dict(prompt, max_tokens=5))
        check(st == 200, "plain completion after the refusals")
    finally:
        rc = s.stop()
        check(rc == 0, "server exits cleanly")
    print("%d checks, %d failed" % (ts.checks, len(ts.failures)))
    sys.exit(1 if ts.failures else 0)


if __name__ == "__main__":
    main()
