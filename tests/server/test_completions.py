#!/usr/bin/env python3
"""The completion fields beyond one plain generation, over real HTTP against `edgellm serve`:
echo with prompt logprobs (checked against logits a reference runtime computed for the same ids),
max_tokens 0, token-id prompts, n > 1 (shared prompt, derived seeds, streaming indices, chat),
seed, logit_bias, stop lists, cached_tokens, and the 400s for bad values. Standard library only;
the server harness is test_server.py's."""
import array
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_server as ts  # noqa: E402  (the harness: Server, check, MODEL, SHARED)

check = ts.check
TESTDATA = os.path.join(ts.SHARED, "testdata", "aidreams")
N_VOCAB = 512


def reference_logprobs():
    """The 55 ids and the log-softmax of the reference runtime's logits at every position."""
    ids = [int(t) for t in open(os.path.join(TESTDATA, "logits-ids.txt")).read().split()]
    raw = array.array("f")
    with open(os.path.join(TESTDATA, "logits-f32.bin"), "rb") as f:
        raw.frombytes(f.read())
    if sys.byteorder != "little":
        raw.byteswap()
    rows = []
    for p in range(len(ids)):
        row = raw[p * N_VOCAB:(p + 1) * N_VOCAB]
        m = max(row)
        log_z = m + math.log(sum(math.exp(x - m) for x in row))
        rows.append([x - log_z for x in row])
    return ids, rows


def greedy_cases():
    cases = []
    for line in open(os.path.join(TESTDATA, "greedy.tsv")):
        if line.startswith("#") or not line.strip():
            continue
        prompt, ids, greedy, _ = line.rstrip("\n").split("\t")
        cases.append((prompt, [int(t) for t in ids.split()], [int(t) for t in greedy.split()]))
    return cases


def completion(s, body):
    return s.request("POST", "/v1/completions", body)


def texts(body):
    return [c["text"] for c in sorted(body["choices"], key=lambda c: c["index"])]


def test_prompt_logprobs(s, ids, ref, what):
    """echo + logprobs + max_tokens 0 scores every prompt token as the reference runtime does."""
    st, body, _ = completion(s, {"prompt": ids, "echo": True, "logprobs": 5, "max_tokens": 0})
    if not check(st == 200, "%s: echo scoring request: %s %s" % (what, st, body)):
        return
    ch = body["choices"][0]
    lp = ch["logprobs"]
    check(ch["finish_reason"] == "length" and body["usage"]["completion_tokens"] == 0,
          "%s: max_tokens 0 generates nothing: %s" % (what, body["usage"]))
    check(len(lp["tokens"]) == len(ids) and len(lp["token_logprobs"]) == len(ids)
          and len(lp["top_logprobs"]) == len(ids) and len(lp["text_offset"]) == len(ids),
          "%s: one entry per prompt token" % what)
    check(lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None,
          "%s: the first token has no logprob" % what)
    worst = 0.0
    for i in range(1, len(ids)):
        want = ref[i - 1][ids[i]]
        got = lp["token_logprobs"][i]
        worst = max(worst, abs(got - want))
        top_want = sorted(ref[i - 1], reverse=True)[:5]
        top_got = sorted(lp["top_logprobs"][i].values(), reverse=True)
        # Distinct pieces may share a string, so the object can hold fewer than 5 keys.
        check(1 <= len(top_got) <= 5 and all(abs(g - w) < 1e-3 for g, w in zip(top_got, top_want)),
              "%s: top_logprobs at %d: %s vs %s" % (what, i, top_got, top_want))
    check(worst < 1e-3, "%s: prompt logprobs differ from the reference by up to %g" % (what, worst))
    st, det, _ = s.request("POST", "/detokenize", {"tokens": ids})
    check(st == 200 and ch["text"] == det["content"],
          "%s: echo text is the prompt's text: %r vs %r" % (what, ch["text"], det))
    offsets = lp["text_offset"]
    check(all(offsets[i] <= offsets[i + 1] for i in range(len(offsets) - 1))
          and offsets[-1] <= len(ch["text"]), "%s: text offsets ascend" % what)

    # max_tokens 1: the same prompt scores, plus the generated token (the gateway's call).
    st, one, _ = completion(s, {"prompt": ids, "echo": True, "logprobs": 2, "max_tokens": 1,
                                "temperature": 0})
    lp1 = one["choices"][0]["logprobs"] if st == 200 else {"token_logprobs": []}
    check(len(lp1["token_logprobs"]) == len(ids) + 1
          and all(abs(a - b) < 1e-6 for a, b in zip(lp1["token_logprobs"][1:len(ids)],
                                                    lp["token_logprobs"][1:]))
          and one["choices"][0]["text"].startswith(ch["text"]),
          "%s: echo with max_tokens 1 keeps the prompt scores and adds one token" % what)
    best = max(range(N_VOCAB), key=lambda t: ref[len(ids) - 1][t]) if len(ids) <= len(ref) else None
    if best is not None and len(lp1["token_logprobs"]) == len(ids) + 1:
        check(abs(lp1["token_logprobs"][-1] - ref[len(ids) - 1][best]) < 1e-3,
              "%s: the generated token is the greedy one with its logprob" % what)


def test_echo_stream(s, ids):
    status, events, done, _ = s.stream("/v1/completions",
                                       {"prompt": ids, "echo": True, "logprobs": 1,
                                        "max_tokens": 6, "temperature": 0, "stream": True})
    text, tokens, offsets, lps = "", [], [], []
    for e in events:
        c = e["choices"][0] if e.get("choices") else None
        if not c:
            continue
        text += c["text"]
        if c["logprobs"]:
            tokens += c["logprobs"]["tokens"]
            offsets += c["logprobs"]["text_offset"]
            lps += c["logprobs"]["token_logprobs"]
    st, body, _ = completion(s, {"prompt": ids, "echo": True, "logprobs": 1, "max_tokens": 6,
                                 "temperature": 0})
    want = body["choices"][0]
    check(status == 200 and done and text == want["text"]
          and offsets == want["logprobs"]["text_offset"] and lps == want["logprobs"]["token_logprobs"],
          "streamed echo equals the response: %r %s vs %r %s" % (text, offsets, want["text"],
                                                                  want["logprobs"]["text_offset"]))


def test_token_id_prompts(s, cases):
    for prompt, ids, greedy in cases[:3]:
        a = completion(s, {"prompt": prompt, "max_tokens": 12, "temperature": 0})[1]
        b = completion(s, {"prompt": ids, "max_tokens": 12, "temperature": 0})[1]
        c = completion(s, {"prompt": [ids], "max_tokens": 12, "temperature": 0})[1]
        check(texts(a) == texts(b) == texts(c)
              and a["usage"]["prompt_tokens"] == b["usage"]["prompt_tokens"] == len(ids),
              "token ids prompt = text prompt for %r: %s %s %s" % (prompt, texts(a), texts(b), texts(c)))
        e = completion(s, {"prompt": ids, "max_tokens": 12, "temperature": 0, "echo": True})[1]
        check(texts(e) == [prompt + texts(b)[0]], "echo prepends the prompt: %r" % texts(e))


def test_choices(s, cases):
    prompt = cases[0][0]
    g = completion(s, {"prompt": prompt, "max_tokens": 16, "temperature": 0, "n": 3})[1]
    one = completion(s, {"prompt": prompt, "max_tokens": 16, "temperature": 0})[1]
    check(sorted(c["index"] for c in g["choices"]) == [0, 1, 2]
          and texts(g) == texts(one) * 3,
          "greedy n=3: identical choices equal to n=1: %s vs %s" % (texts(g), texts(one)))
    check(g["usage"]["prompt_tokens"] == one["usage"]["prompt_tokens"]
          and g["usage"]["completion_tokens"] == 3 * one["usage"]["completion_tokens"],
          "n=3 usage: prompt once, completions summed: %s" % g["usage"])

    seed = 12345
    body = {"prompt": prompt, "max_tokens": 16, "temperature": 1.0, "seed": seed}
    many = completion(s, dict(body, n=4))[1]
    got = texts(many)
    check(len(set(got)) >= 2, "sampled choices differ: %s" % got)
    for i in range(4):
        alone = completion(s, dict(body, seed=seed + i))[1]
        check(texts(alone) == [got[i]], "choice %d = n=1 with seed %d: %r vs %r"
              % (i, seed + i, got[i], texts(alone)))
    again = completion(s, dict(body, n=4))[1]
    check(texts(again) == got, "same seed, same choices")

    # Streaming: every chunk names its choice; each choice gets its own finish chunk.
    status, events, done, _ = s.stream("/v1/completions", dict(body, n=4, stream=True))
    streamed, finishes = {}, {}
    for e in events:
        for c in e.get("choices", []):
            streamed[c["index"]] = streamed.get(c["index"], "") + c["text"]
            if c["finish_reason"]:
                finishes[c["index"]] = finishes.get(c["index"], 0) + 1
    check(status == 200 and done and [streamed.get(i) for i in range(4)] == got
          and finishes == {0: 1, 1: 1, 2: 1, 3: 1},
          "streamed n=4 equals the response: %s %s" % (streamed, finishes))

    # Chat: choices, derived seeds, logprobs per choice, streamed indices.
    chat = {"messages": [{"role": "user", "content": "tell me a dream"}], "max_tokens": 10,
            "temperature": 1.0, "seed": 99, "logprobs": True, "top_logprobs": 2}
    st, cb, _ = s.request("POST", "/v1/chat/completions", dict(chat, n=2))
    ok = st == 200 and len(cb["choices"]) == 2
    for i in range(2 if ok else 0):
        alone = s.request("POST", "/v1/chat/completions", dict(chat, seed=99 + i))[1]
        c = cb["choices"][i]
        check(c["index"] == i and c["message"]["content"] == alone["choices"][0]["message"]["content"]
              and len(c["logprobs"]["content"]) == len(alone["choices"][0]["logprobs"]["content"]),
              "chat choice %d = n=1 with seed %d" % (i, 99 + i))
    check(ok, "chat n=2: %s %s" % (st, cb))
    status, events, done, _ = s.stream("/v1/chat/completions", dict(chat, n=2, stream=True))
    content = {}
    for e in events:
        for c in e.get("choices", []):
            content[c["index"]] = content.get(c["index"], "") + (c["delta"].get("content") or "")
    check(ok and done and [content.get(i) for i in range(2)]
          == [c["message"]["content"] for c in cb["choices"]], "chat stream n=2: %s" % content)


def metric(s, name):
    st, text, _ = s.request("GET", "/metrics")
    for line in text.splitlines():
        if line.startswith(name + " "):
            return int(float(line.split()[1]))
    return None


def test_prompt_shared_once(s):
    """On an idle server with a slot per choice, the later choices copy the first one's prompt
    cache: the metrics count their prompt tokens as cached."""
    before = metric(s, "edgellm_prompt_tokens_cached_total")
    prompt = "a never seen prompt about quiet copper rivers and the long night"
    st, body, _ = completion(s, {"prompt": prompt, "max_tokens": 4, "temperature": 0.7, "n": 4,
                                 "seed": 5})
    after = metric(s, "edgellm_prompt_tokens_cached_total")
    n = body["usage"]["prompt_tokens"] if st == 200 else 0
    first = body["usage"]["prompt_tokens_details"]["cached_tokens"] if st == 200 else -1
    check(st == 200 and 0 <= first <= 1 and after - before == 3 * n + first,
          "n=4 evaluates the prompt once (cached %d -> %d, prompt %d, first choice's cached %d)"
          % (before, after, n, first))
    st, body, _ = completion(s, {"prompt": prompt, "max_tokens": 2, "temperature": 0})
    check(st == 200 and body["usage"]["prompt_tokens_details"]["cached_tokens"] == n - 1,
          "repeated prompt served from the cache: %s" % body.get("usage"))


def test_logit_bias(s, cases):
    prompt, ids, greedy = cases[1]
    base = completion(s, {"prompt": ids, "max_tokens": 4, "temperature": 0, "logprobs": 1})[1]
    banned = greedy[0]
    b = completion(s, {"prompt": ids, "max_tokens": 4, "temperature": 0, "logprobs": 1,
                       "logit_bias": {str(banned): -100}})[1]
    check(b["choices"][0]["logprobs"]["tokens"][0] != base["choices"][0]["logprobs"]["tokens"][0],
          "logit_bias -100 bans the greedy token: %s" % b["choices"][0]["logprobs"]["tokens"])
    forced = greedy[7]
    f = completion(s, {"prompt": ids, "max_tokens": 5, "temperature": 0.9, "seed": 1, "logprobs": 1,
                       "logit_bias": {str(forced): 100}})[1]
    st, piece, _ = s.request("POST", "/detokenize", {"tokens": [1, 259, forced]})
    toks = f["choices"][0]["logprobs"]["tokens"]
    check(len(toks) == 5 and len(set(toks)) == 1 and f["choices"][0]["text"].strip() != ""
          and piece["content"].endswith(toks[0].strip()),
          "logit_bias +100 forces token %d: %s" % (forced, toks))
    check(f["choices"][0]["logprobs"]["token_logprobs"][1] < -0.5,
          "logprobs are the model's, before the bias: %s" % f["choices"][0]["logprobs"]["token_logprobs"])
    # -100 on every token bans them all: nothing could be generated (adding the same amount to
    # every logit would sample as if there were no bias), so it is a 400; with one token left,
    # that token is all that is generated; with nothing to generate, nothing is refused.
    every = {str(t): -100 for t in range(N_VOCAB)}
    for path, body in [("/v1/completions", {"prompt": ids, "max_tokens": 3}),
                       ("/v1/chat/completions",
                        {"messages": [{"role": "user", "content": prompt}], "max_tokens": 3})]:
        st, resp, _ = s.request("POST", path, dict(body, logit_bias=every))
        check(st == 400 and resp["error"]["param"] == "logit_bias"
              and "every token" in resp["error"]["message"],
              "%s: logit_bias -100 on every token is a 400 naming it: %s %s" % (path, st, resp))
    kept = greedy[7]
    st, resp, _ = completion(s, {"prompt": ids, "max_tokens": 4, "temperature": 1, "seed": 3,
                                 "logprobs": 1,
                                 "logit_bias": dict(every, **{str(kept): 0})})
    toks = resp["choices"][0]["logprobs"]["tokens"] if st == 200 else []
    check(len(toks) == 4 and len(set(toks)) == 1 and piece["content"].endswith(toks[0].strip()),
          "every token but %d banned: only it is generated: %s %s" % (kept, st, toks))
    st, resp, _ = completion(s, {"prompt": ids, "echo": True, "max_tokens": 0, "logit_bias": every})
    check(st == 200 and resp["usage"]["completion_tokens"] == 0,
          "every token banned, echo and max_tokens 0: scored, not refused: %s %s" % (st, resp))


def test_stops(s, cases):
    prompt = cases[2][0]
    full = completion(s, {"prompt": prompt, "max_tokens": 30, "temperature": 0})[1]["choices"][0]["text"]
    words = full.split()
    first, later = words[1], words[4]
    r = completion(s, {"prompt": prompt, "max_tokens": 30, "temperature": 0,
                       "stop": ["zzqq", later, first, "\u00e9t\u00e9"]})[1]["choices"][0]
    cut = min(full.find(first), full.find(later))
    check(r["text"] == full[:cut] and r["finish_reason"] == "stop",
          "stop list of 4 ends at the earliest: %r vs %r" % (r["text"], full[:cut]))
    r = completion(s, {"prompt": prompt, "max_tokens": 30, "temperature": 0, "stop": later})[1]["choices"][0]
    check(r["text"] == full[:full.find(later)], "stop as a string: %r" % r["text"])


def test_errors(s):
    def bad(body, param, what, path="/v1/completions"):
        st, resp, _ = s.request("POST", path, body)
        check(st == 400 and isinstance(resp, dict) and resp.get("error", {}).get("param") == param
              and resp["error"]["message"], "%s: expected 400 naming %s, got %s %s" % (what, param, st, resp))
        return resp

    p = {"prompt": "I dreamed", "max_tokens": 2}
    bad(dict(p, n=0), "n", "n=0")
    bad(dict(p, n=9), "n", "n=9")
    bad(dict(p, n="2"), "n", "n as a string")
    bad(dict(p, logprobs=21), "logprobs", "logprobs 21")
    bad(dict(p, logprobs=-1), "logprobs", "logprobs -1")
    bad(dict(p, max_tokens=0), "max_tokens", "max_tokens 0 without echo")
    bad(dict(p, echo="yes"), "echo", "echo as a string")
    bad(dict(p, seed="x"), "seed", "seed as a string")
    bad(dict(p, seed=1.5), "seed", "seed as a number")
    bad(dict(p, stop=["a", "b", "c", "d", "e"]), "stop", "five stop strings")
    bad(dict(p, stop=["a", 3]), "stop", "a stop that is not a string")
    bad(dict(p, logit_bias={"abc": 1}), "logit_bias", "logit_bias key not a number")
    bad(dict(p, logit_bias={"-1": 1}), "logit_bias", "logit_bias negative id")
    bad(dict(p, logit_bias={str(N_VOCAB): 1}), "logit_bias", "logit_bias id past the vocabulary")
    bad(dict(p, logit_bias={"5": 100.5}), "logit_bias", "logit_bias over 100")
    bad(dict(p, logit_bias={"5": "up"}), "logit_bias", "logit_bias value a string")
    bad(dict(p, logit_bias=[1, 2]), "logit_bias", "logit_bias an array")
    bad({"messages": [{"role": "user", "content": "x"}], "logit_bias": {"5": -101}}, "logit_bias",
        "chat logit_bias under -100", path="/v1/chat/completions")
    bad({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 21, "logprobs": True},
        "top_logprobs", "chat top_logprobs 21", path="/v1/chat/completions")
    bad({"prompt": [1, 2, N_VOCAB]}, "prompt", "token id past the vocabulary")
    bad({"prompt": [1, -2]}, "prompt", "negative token id")
    bad({"prompt": [1, "a"]}, "prompt", "mixed token ids and text")
    r = bad({"prompt": []}, "prompt", "empty prompt array")
    check("empty array" in r["error"]["message"],
          "the 400 says the array is empty, not that it is the wrong type: %s" % r)
    r = bad({"prompt": [[1, 2], [1, 3]]}, "prompt", "several token-id prompts")
    check("one prompt per request" in r["error"]["message"], "the 400 names the limitation")
    bad({"prompt": ["a", "b"]}, "prompt", "several text prompts")


def test_prompt_fills_context(ids, ref):
    """A prompt of exactly --ctx tokens that is only scored (echo, max_tokens 0) generates nothing,
    so it fits: it was refused as if it needed room for a generated token."""
    s = ts.Server(ts.MODEL, "--parallel", "2", "--ctx", str(len(ids)))
    try:
        for logprobs in (5, None):
            body = {"prompt": ids, "echo": True, "max_tokens": 0, "n": 2}
            if logprobs:
                body["logprobs"] = logprobs
            st, resp, _ = completion(s, body)
            what = "a %d-token prompt in a %d-token context, echo, max_tokens 0, logprobs %s" % (
                len(ids), len(ids), logprobs)
            if not check(st == 200 and len(resp["choices"]) == 2, "%s: %s %s" % (what, st, resp)):
                continue
            ch = resp["choices"][0]
            check(ch["text"] == resp["choices"][1]["text"] and ch["finish_reason"] == "length"
                  and resp["usage"]["completion_tokens"] == 0
                  and resp["usage"]["prompt_tokens"] == len(ids),
                  "%s: the prompt echoed, nothing generated: %s" % (what, resp["usage"]))
            if logprobs:
                got = ch["logprobs"]["token_logprobs"]
                worst = max(abs(got[i] - ref[i - 1][ids[i]]) for i in range(1, len(ids)))
                check(len(got) == len(ids) and worst < 1e-3,
                      "%s: every position scored as the reference does (%g)" % (what, worst))
        st, events, done, _ = s.stream("/v1/completions", {"prompt": ids, "echo": True,
                                                           "max_tokens": 0, "logprobs": 1,
                                                           "stream": True})
        check(st == 200 and done and not any("error" in ev for ev in events),
              "the same, streamed: %s" % events[-1:])
        for body, why in [(dict(prompt=ids, echo=True, max_tokens=1), "and at least one generated"),
                          (dict(prompt=ids, echo=True), "and at least one generated"),
                          (dict(prompt=ids + [ids[1]], echo=True, max_tokens=0), "; shorten it")]:
            st, resp, _ = completion(s, body)
            check(st == 400 and resp["error"]["code"] == "context_length_exceeded"
                  and why in resp["error"]["message"],
                  "%s ids, max_tokens %s: 400 saying why: %s %s"
                  % (len(body["prompt"]), body.get("max_tokens"), st, resp))
    finally:
        check(s.stop() == 0, "the full-context server exits 0")


def main():
    ids, ref = reference_logprobs()
    cases = greedy_cases()
    s = ts.Server(ts.MODEL, "--parallel", "4")
    chunked = None
    try:
        test_prompt_logprobs(s, ids, ref, "one pass")
        test_prompt_logprobs(s, ids[:20], ref, "prefix")
        test_echo_stream(s, ids[:12])
        test_token_id_prompts(s, cases)
        test_prompt_shared_once(s)
        test_choices(s, cases)
        test_logit_bias(s, cases)
        test_stops(s, cases)
        test_errors(s)
        test_prompt_fills_context(ids, ref)
        # A prompt longer than a pass takes: scored over several passes, same values.
        chunked = ts.Server(ts.MODEL, "--parallel", "2", "--batch", "16")
        test_prompt_logprobs(chunked, ids, ref, "16-token passes")
        test_choices(chunked, cases)
    finally:
        for server in (s, chunked):
            if server:
                rc = server.stop()
                check(rc == 0, "server exits 0 (no sanitizer report): %s\n%s"
                      % (rc, server.logtext()[-3000:]))
    print("%d checks, %d failures" % (ts.checks, len(ts.failures)))
    if ts.failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
