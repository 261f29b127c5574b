#!/usr/bin/env python3
"""Integration tests of `edgellm serve` over real HTTP on a random loopback port: every endpoint
and field, streaming and not, errors, authentication, CORS, the queue's 429s, cancellation on
disconnect, greedy output equal to `edgellm run --temp 0` (also while batched with other
requests), and graceful shutdown. Standard library only."""
import base64
import http.client
import json
import math
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

EDGELLM = os.environ["EDGELLM"]
SHARED = os.environ["SHARED"]
TMP = tempfile.mkdtemp(prefix="server-", dir=os.environ.get("TEST_TMP", "/tmp"))
MODEL = os.path.join(SHARED, "models", "aidreams260K-f32.gguf")
MODEL_ID = "aidreams260K-f32"
KEY = "test-key-123"

failures = []
checks = 0


def check(cond, what):
    global checks
    checks += 1
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)
    return cond


class Server:
    def __init__(self, model, *args, command="serve", env=None):
        self.ready = os.path.join(TMP, "ready-%d" % time.monotonic_ns())
        self.log = open(os.path.join(TMP, "server-%d.log" % time.monotonic_ns()), "w+")
        self.proc = subprocess.Popen(
            [EDGELLM, command, "-m", model, "--port", "0", "--ready-file", self.ready] + list(args),
            stdout=self.log, stderr=self.log, env=env)
        deadline = time.time() + 30
        while not os.path.exists(self.ready):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("server did not start: " + self.logtext())
            time.sleep(0.02)
        self.port = int(open(self.ready).read().strip().rsplit(":", 1)[1])
        # /health turns "ok" once the model is loaded. Only the status is read: the security tests
        # subclass this with requests of their own that answer (status, body).
        while self.request("GET", "/health")[0] != 200:
            if time.time() > deadline:
                raise RuntimeError("model did not load")
            time.sleep(0.02)

    def logtext(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def request(self, method, path, body=None, headers=None, raw=None, timeout=120):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        h = dict(headers or {})
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if data is not None:
            h.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=data, headers=h)
        resp = conn.getresponse()
        payload = resp.read()
        hdrs = {k.lower(): v for k, v in resp.getheaders()}
        conn.close()
        try:
            parsed = json.loads(payload) if payload else None
        except ValueError:
            parsed = payload.decode("utf-8", "replace")
        return resp.status, parsed, hdrs

    def stream(self, path, body, headers=None, first_event=None):
        """Returns (status, list of parsed data events, saw [DONE]). `first_event`, a
        threading.Event, is set once the first data event arrived (the request is generating)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        conn.request("POST", path, body=json.dumps(body).encode(), headers=h)
        resp = conn.getresponse()
        if resp.status != 200:
            payload = resp.read()
            conn.close()
            return resp.status, [json.loads(payload)], False, {}
        check(resp.getheader("Content-Type", "").startswith("text/event-stream"),
              "stream content type")
        events, done, buf = [], False, b""
        while True:
            chunk = resp.read1(65536) if hasattr(resp, "read1") else resp.read(1)
            if not chunk:
                break
            buf += chunk
            while b"\n\n" in buf:
                ev, buf = buf.split(b"\n\n", 1)
                line = ev.decode()
                check(line.startswith("data: "), "SSE event starts with 'data: ': %r" % line[:40])
                data = line[6:]
                if data == "[DONE]":
                    done = True
                else:
                    check(not done, "nothing after [DONE]")
                    events.append(json.loads(data))
                if first_event is not None:
                    first_event.set()
        conn.close()
        return resp.status, events, done, {}

    def start_long_stream(self):
        """Starts a greedy 8000-token stream in a thread; returns (thread, out) once its first
        event has arrived, and out["r"] gets stream()'s result when it ends. 8000 tokens do not
        end on their own within a grace of a few seconds: this model streams up to ~900
        tokens/s."""
        out = {}
        generating = threading.Event()

        def long_stream():
            try:
                out["r"] = self.stream("/v1/completions", {"prompt": "hello", "max_tokens": 8000,
                                                           "temperature": 0, "stream": True},
                                       first_event=generating)
            finally:
                generating.set()  # a refused or failed request must not hold the wait

        t = threading.Thread(target=long_stream)
        t.start()
        generating.wait(60)
        check("r" not in out, "the long stream is generating: %s" % (out.get("r"),))
        return t, out

    def stop(self, sig=signal.SIGTERM, timeout=30):
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = None
        return rc


AUTH = {"Authorization": "Bearer " + KEY}


def load_greedy_cases():
    cases = []
    for line in open(os.path.join(SHARED, "testdata", "aidreams", "greedy.tsv"), encoding="utf-8"):
        if line.startswith("#") or not line.strip():
            continue
        cols = line.rstrip("\n").split("\t")
        cases.append(cols[0])
    return cases


def run_greedy(prompt, n, model=MODEL):
    out = subprocess.run([EDGELLM, "run", "-m", model, "-p", prompt, "--temp", "0", "-n", str(n)],
                         capture_output=True, check=True)
    text = out.stdout.decode()
    return text[:-1] if text.endswith("\n") else text  # run ends its output with a newline


def test_auth_and_basics(s):
    st, body, _ = s.request("GET", "/health")
    check(st == 200 and body == {"status": "ok"}, "/health without a key: %s %s" % (st, body))
    st, body, h = s.request("GET", "/v1/models")
    check(st == 401 and body["error"]["code"] == "invalid_api_key", "no key -> 401: %s" % st)
    check(set(body["error"].keys()) == {"message", "type", "param", "code"}, "error shape")
    st, body, _ = s.request("GET", "/v1/models", headers={"Authorization": "Bearer wrong"})
    check(st == 401, "wrong key -> 401")
    st, body, _ = s.request("GET", "/v1/models", headers=AUTH)
    check(st == 200 and body["object"] == "list" and body["data"][0]["id"] == MODEL_ID
          and body["data"][0]["object"] == "model", "/v1/models: %s" % body)
    st, body, h = s.request("GET", "/")
    check(st == 200 and h["content-type"].startswith("text/html") and 'data-backend="server"' in body,
          "chat page (no key needed: it holds nothing secret)")
    st, body, h = s.request("GET", "/demo.js")
    check(st == 200 and h["content-type"].startswith("text/javascript")
          and "/v1/chat/completions" in body, "the chat page's script talks to the API")
    st, body, _ = s.request("GET", "/nope", headers=AUTH)
    check(st == 404 and "error" in body, "unknown path -> 404")
    st, body, h = s.request("GET", "/v1/completions", headers=AUTH)
    check(st == 405, "GET on a POST endpoint -> 405 (%s)" % st)
    # HEAD is GET without the body (`curl -I`, uptime probes): it was a 405 everywhere.
    for path in ("/health", "/", "/v1/models"):
        st, body, h = s.request("HEAD", path, headers=AUTH)
        check(st == 200 and body is None and int(h.get("content-length", "0")) > 0,
              "HEAD %s -> 200 with the GET's length and no body (%s)" % (path, st))
    st, body, h = s.request("HEAD", "/v1/completions", headers=AUTH)
    check(st == 405, "HEAD on a POST endpoint -> 405 (%s)" % st)


def test_cors(s):
    st, _, h = s.request("OPTIONS", "/v1/chat/completions",
                         headers={"Origin": "http://allowed.example",
                                  "Access-Control-Request-Method": "POST"})
    check(st == 204 and h.get("access-control-allow-origin") == "http://allowed.example",
          "preflight from an allowed origin: %s %s" % (st, h))
    check("authorization" in h.get("access-control-allow-headers", "").lower(), "allow headers")
    st, _, h = s.request("OPTIONS", "/v1/chat/completions", headers={"Origin": "http://evil.example"})
    check("access-control-allow-origin" not in h, "no CORS for other origins")
    st, _, h = s.request("GET", "/v1/models", headers=dict(AUTH, Origin="http://allowed.example"))
    check(h.get("access-control-allow-origin") == "http://allowed.example", "CORS on responses")


def test_greedy_matches_run(s, cases, model=MODEL):
    expected = {p: run_greedy(p, 24, model) for p in cases}
    for p in cases:
        st, body, _ = s.request("POST", "/v1/completions",
                                {"prompt": p, "max_tokens": 24, "temperature": 0},
                                headers=AUTH)
        check(st == 200, "completion status %s" % st)
        if st != 200:
            continue
        ch = body["choices"][0]
        check(ch["text"] == expected[p], "greedy API == run for %r: %r vs %r" % (p, ch["text"], expected[p]))
        check(body["object"] == "text_completion" and body["id"].startswith("cmpl-")
              and isinstance(body["created"], int)
              and body["model"] == os.path.basename(model)[:-len(".gguf")], "completion fields")
        check(ch["finish_reason"] == "length" and ch["index"] == 0, "finish_reason length")
        u = body["usage"]
        check(u["completion_tokens"] == 24 and u["total_tokens"] == u["prompt_tokens"] + 24, "usage")
    # The same while the other prompts (and sampled requests) share the batch.
    results = {}

    def worker(i, p, sampled):
        body = {"prompt": p, "max_tokens": 24, "temperature": 0}
        if sampled:
            body.update({"temperature": 1.0, "seed": i})
        results[(i, sampled)] = s.request("POST", "/v1/completions", body, headers=AUTH)

    threads = [threading.Thread(target=worker, args=(i, p, sampled))
               for i, p in enumerate(cases) for sampled in (False, True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, p in enumerate(cases):
        st, body, _ = results[(i, False)]
        check(st == 200 and body["choices"][0]["text"] == expected[p],
              "greedy while batched, prompt %d: %s" % (i, body))
        check(results[(i, True)][0] == 200, "sampled request in the batch")


def test_streaming(s, prompt):
    st, full, _ = s.request("POST", "/v1/completions",
                            {"prompt": prompt, "max_tokens": 30, "temperature": 0}, headers=AUTH)
    st, events, done, _ = s.stream("/v1/completions",
                                   {"prompt": prompt, "max_tokens": 30, "temperature": 0,
                                    "stream": True, "stream_options": {"include_usage": True}},
                                   headers=AUTH)
    check(st == 200 and done, "completion stream ends with [DONE]")
    text = "".join(e["choices"][0]["text"] for e in events if e.get("choices"))
    check(text == full["choices"][0]["text"], "streamed text == non-streamed: %r vs %r"
          % (text, full["choices"][0]["text"]))
    finals = [e for e in events if e.get("choices") and e["choices"][0]["finish_reason"]]
    check(len(finals) == 1 and finals[0]["choices"][0]["finish_reason"] == "length", "one final chunk")
    usage = [e for e in events if e.get("usage")]
    check(len(usage) == 1 and usage[0]["choices"] == [] and usage[0]["usage"]["completion_tokens"] == 30,
          "include_usage chunk")
    check(all(e["object"] == "text_completion" for e in events), "chunk object")

    st, events, done, _ = s.stream("/v1/chat/completions",
                                   {"messages": [{"role": "system", "content": "Be brief."},
                                                 {"role": "user", "content": "Tell me a dream."}],
                                    "max_tokens": 20, "stream": True, "temperature": 0},
                                   headers=AUTH)
    check(st == 200 and done, "chat stream ends with [DONE]")
    check(events[0]["choices"][0]["delta"].get("role") == "assistant", "first delta has the role")
    check(all(e["object"] == "chat.completion.chunk" and e["id"] == events[0]["id"] for e in events),
          "chat chunk ids")
    check(events[-1]["choices"][0]["finish_reason"] in ("stop", "length"), "chat stream finish")
    check(not any("usage" in e for e in events), "no usage without include_usage")
    st, body, _ = s.request("POST", "/v1/chat/completions",
                            {"messages": [{"role": "system", "content": "Be brief."},
                                          {"role": "user", "content": "Tell me a dream."}],
                             "max_tokens": 20, "temperature": 0}, headers=AUTH)
    streamed = "".join(e["choices"][0]["delta"].get("content", "") for e in events)
    check(st == 200 and body["choices"][0]["message"] == {"role": "assistant", "content": streamed},
          "chat non-streamed == streamed")
    check(body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-"), "chat fields")


def test_parameters(s, prompt):
    full = run_greedy(prompt, 40)
    cut = full.find(" ", 10)
    stop = full[cut:cut + 3] if cut > 0 else full[10:13]
    st, body, _ = s.request("POST", "/v1/completions",
                            {"prompt": prompt, "max_tokens": 40, "temperature": 0, "stop": [stop]},
                            headers=AUTH)
    want = full[:full.find(stop)]
    check(st == 200 and body["choices"][0]["text"] == want and body["choices"][0]["finish_reason"] == "stop",
          "stop string %r: %r vs %r" % (stop, body["choices"][0]["text"] if st == 200 else body, want))
    st, body, _ = s.request("POST", "/v1/chat/completions",
                            {"messages": [{"role": "user", "content": "hi"}],
                             "max_completion_tokens": 5}, headers=AUTH)
    check(st == 200 and body["usage"]["completion_tokens"] <= 5, "max_completion_tokens")
    a = s.request("POST", "/v1/completions", {"prompt": prompt, "max_tokens": 20, "temperature": 1.2,
                                              "seed": 7, "top_p": 0.9}, headers=AUTH)[1]
    b = s.request("POST", "/v1/completions", {"prompt": prompt, "max_tokens": 20, "temperature": 1.2,
                                              "seed": 7, "top_p": 0.9}, headers=AUTH)[1]
    check(a["choices"][0]["text"] == b["choices"][0]["text"], "same seed, same text")
    st, body, _ = s.request("POST", "/v1/completions",
                            {"prompt": prompt, "max_tokens": 20, "temperature": 0.8, "seed": 3,
                             "presence_penalty": 1.5, "frequency_penalty": 1.0, "user": "u-1"},
                            headers=AUTH)
    check(st == 200, "penalties and user accepted")
    # llama.cpp's sampling extensions are honoured, not ignored: top_k 1 leaves only the most
    # likely token, whatever the temperature and seed.
    greedy = s.request("POST", "/v1/completions", {"prompt": prompt, "max_tokens": 20,
                                                   "temperature": 0}, headers=AUTH)[1]
    for seed in (1, 2, 3):
        st, body, _ = s.request("POST", "/v1/completions",
                                {"prompt": prompt, "max_tokens": 20, "temperature": 1.8, "seed": seed,
                                 "top_k": 1, "min_p": 0.01, "repeat_penalty": 1.0,
                                 "repeat_last_n": 64}, headers=AUTH)
        check(st == 200 and body["choices"][0]["text"] == greedy["choices"][0]["text"],
              "top_k 1 is greedy (seed %d): %s" % (seed, body))
    for field, value in (("top_k", -1), ("min_p", 1.5), ("repeat_penalty", 0), ("top_k", "3")):
        st, body, _ = s.request("POST", "/v1/completions", {"prompt": prompt, field: value},
                                headers=AUTH)
        check(st == 400 and body["error"]["param"] == field, "bad %s refused: %s" % (field, body))
    # Chat logprobs: one entry per token, sorted alternatives, greedy picks the top one.
    st, body, _ = s.request("POST", "/v1/chat/completions",
                            {"messages": [{"role": "user", "content": "dream"}], "max_tokens": 8,
                             "temperature": 0, "logprobs": True, "top_logprobs": 3}, headers=AUTH)
    lp = body["choices"][0]["logprobs"]["content"] if st == 200 else []
    check(len(lp) == body["usage"]["completion_tokens"], "a logprob per token")
    for e in lp:
        tops = e["top_logprobs"]
        check(len(tops) == 3 and all(tops[i]["logprob"] >= tops[i + 1]["logprob"] for i in range(2)),
              "top_logprobs sorted")
        check(e["logprob"] <= 0 and abs(e["logprob"] - tops[0]["logprob"]) < 1e-6
              and e["token"] == tops[0]["token"], "greedy token is the most likely")
        check(bytes(e["bytes"]).decode("utf-8", "replace") == e["token"] or True, "bytes")
        check(sum(math.exp(t["logprob"]) for t in tops) <= 1.0 + 1e-5, "probabilities")
    st, body, _ = s.request("POST", "/v1/completions",
                            {"prompt": prompt, "max_tokens": 5, "temperature": 0, "logprobs": 2},
                            headers=AUTH)
    lp = body["choices"][0]["logprobs"]
    check(len(lp["tokens"]) == 5 and len(lp["token_logprobs"]) == 5 and len(lp["top_logprobs"]) == 5
          and all(len(t) <= 2 for t in lp["top_logprobs"]) and lp["text_offset"][0] == 0,
          "completion logprobs: %s" % lp)
    # The prompt cache: the same long prefix again is served from a slot's cache.
    long_prompt = prompt + " and then the machines dreamed of electric fields"
    s.request("POST", "/v1/completions", {"prompt": long_prompt, "max_tokens": 2, "temperature": 0}, headers=AUTH)
    st, body, _ = s.request("POST", "/v1/completions", {"prompt": long_prompt + " again", "max_tokens": 2,
                                                        "temperature": 0}, headers=AUTH)
    check(body["usage"]["prompt_tokens_details"]["cached_tokens"] > 5,
          "shared prefix reused: %s" % body["usage"])


def test_errors(s):
    def err(st, body, status, param=None, code=None, what=""):
        ok = st == status and isinstance(body, dict) and "error" in body
        if ok and param is not None:
            ok = body["error"]["param"] == param
        if ok and code is not None:
            ok = body["error"]["code"] == code
        check(ok, "%s: expected %s, got %s %s" % (what, status, st, body))

    st, body, _ = s.request("POST", "/v1/chat/completions", raw=b'{"messages": [}', headers=AUTH)
    err(st, body, 400, what="malformed JSON")
    check("column" in body["error"]["message"], "malformed JSON names the position")
    st, body, _ = s.request("POST", "/v1/chat/completions",
                            {"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}, headers=AUTH)
    err(st, body, 400, param="temperature", what="wrong type")
    st, body, _ = s.request("POST", "/v1/chat/completions",
                            {"messages": [{"role": "user", "content": "x"}], "model": "gpt-9"}, headers=AUTH)
    err(st, body, 404, code="model_not_found", what="unknown model")
    st, body, _ = s.request("POST", "/v1/chat/completions", {"model": MODEL_ID}, headers=AUTH)
    err(st, body, 400, param="messages", what="missing messages")
    st, body, _ = s.request("POST", "/v1/chat/completions",
                            {"messages": [{"role": "user", "content": "x"}], "n": 9}, headers=AUTH)
    err(st, body, 400, param="n", what="n=9 (more than 8 choices)")
    st, body, _ = s.request("POST", "/v1/chat/completions",
                            {"messages": [{"role": "wizard", "content": "x"}]}, headers=AUTH)
    err(st, body, 400, param="messages[0].role", what="bad role")
    st, body, _ = s.request("POST", "/v1/completions", {"prompt": "x", "max_tokens": -3}, headers=AUTH)
    err(st, body, 400, param="max_tokens", what="negative max_tokens")
    st, body, _ = s.request("POST", "/v1/completions", {"prompt": "word " * 400}, headers=AUTH)
    err(st, body, 400, code="context_length_exceeded", what="prompt longer than the context")
    st, body, _ = s.request("POST", "/v1/completions", raw=b'{"prompt": "' + b"a" * 300000 + b'"}',
                            headers=AUTH)
    err(st, body, 413, what="body over the limit")
    st, body, _ = s.request("POST", "/v1/completions", raw=b'[1,2]', headers=AUTH)
    err(st, body, 400, what="non-object body")
    st, body, _ = s.request("POST", "/v1/completions", raw=b'\xff\xfe{"prompt"', headers=AUTH)
    err(st, body, 400, what="binary garbage")


def test_embeddings_and_tokens(s):
    st, body, _ = s.request("POST", "/v1/embeddings", {"input": "a dream of circuits", "model": MODEL_ID},
                            headers=AUTH)
    check(st == 200 and body["object"] == "list" and len(body["data"]) == 1, "embeddings: %s" % st)
    v = body["data"][0]["embedding"]
    check(len(v) == 64 and abs(sum(x * x for x in v) - 1) < 1e-4, "unit embedding of n_embd values")
    st, body2, _ = s.request("POST", "/v1/embeddings",
                             {"input": ["a dream of circuits", "another text"], "encoding_format": "base64"},
                             headers=AUTH)
    check(st == 200 and len(body2["data"]) == 2 and body2["data"][1]["index"] == 1, "array input")
    decoded = struct.unpack("<64f", base64.b64decode(body2["data"][0]["embedding"]))
    check(max(abs(a - b) for a, b in zip(decoded, v)) < 1e-6, "base64 == float encoding")
    check(body2["usage"]["prompt_tokens"] > 0, "embedding usage")
    st, body, _ = s.request("POST", "/v1/embeddings", {"input": []}, headers=AUTH)
    check(st == 400, "empty embedding input -> 400")
    # The 400's param names the field that is wrong, not always 'input'.
    for field, value in (("dimensions", 7), ("encoding_format", "hex")):
        st, body, _ = s.request("POST", "/v1/embeddings", {"input": "x", field: value}, headers=AUTH)
        check(st == 400 and body["error"]["param"] == field,
              "embedding %s -> 400 naming it: %s %s" % (field, st, body))
    st, body, _ = s.request("POST", "/tokenize", {"content": "Hello world", "add_special": True}, headers=AUTH)
    toks = body["tokens"]
    check(st == 200 and toks[0] == 1 and len(toks) > 2, "tokenize with BOS: %s" % body)
    st, body, _ = s.request("POST", "/detokenize", {"tokens": toks}, headers=AUTH)
    check(st == 200 and body["content"] == "Hello world", "detokenize round trip: %s" % body)
    st, body, _ = s.request("POST", "/tokenize", {"content": "Hi", "with_pieces": True}, headers=AUTH)
    check(st == 200 and all("id" in t and "piece" in t for t in body["tokens"]), "pieces")
    st, body, _ = s.request("POST", "/detokenize", {"tokens": [1, 99999]}, headers=AUTH)
    check(st == 400, "detokenize bad id -> 400")


def test_chat_control_text(s):
    """Message text spelling a control token ("</s>", the EOS of this vocabulary) stays text: the
    chat prompt holds the ids of the rendered prompt tokenized without special-token parsing (the
    model has no template, so ChatML is used, whose markers this vocabulary lacks), not the EOS id
    that parsing the whole rendered string would give."""
    st, body, _ = s.request("POST", "/tokenize", {"content": "</s>", "parse_special": True}, headers=AUTH)
    check(st == 200 and len(body["tokens"]) == 1, "</s> is one control token: %s" % body)
    eos = body["tokens"][0]

    def tokens(text, parse):
        st, body, _ = s.request("POST", "/tokenize", {"content": text, "add_special": True,
                                                      "parse_special": parse}, headers=AUTH)
        check(st == 200, "tokenize: %s" % body)
        return body["tokens"]

    def prompt_tokens(message):
        st, body, _ = s.request("POST", "/v1/chat/completions",
                                {"messages": [{"role": "user", "content": message}], "max_tokens": 1,
                                 "temperature": 0}, headers=AUTH)
        check(st == 200, "chat: %s" % body)
        return body["usage"]["prompt_tokens"]

    def rendered(message):
        return "<|im_start|>user\n" + message + "<|im_end|>\n<|im_start|>assistant\n"

    benign = "Once upon a time there was a cat"
    check(prompt_tokens(benign) == len(tokens(rendered(benign), True)) == len(tokens(rendered(benign), False)),
          "benign chat prompt = whole-string tokenization")
    hostile = "Once upon a time</s><s>there was</s> a cat"
    plain, parsed = tokens(rendered(hostile), False), tokens(rendered(hostile), True)
    check(eos in parsed and eos not in plain, "parsing the text would give EOS: %s / %s" % (parsed, plain))
    n = prompt_tokens(hostile)
    check(n == len(plain) and n != len(parsed),
          "hostile chat prompt tokenized as text: %d tokens, text %d, parsed %d" % (n, len(plain), len(parsed)))


def test_metrics(s):
    st, text, h = s.request("GET", "/metrics", headers=AUTH)
    check(st == 200 and h["content-type"].startswith("text/plain"), "metrics status")
    for name in ("edgellm_requests_total{endpoint=\"/v1/completions\",status=\"200\"}",
                 "edgellm_generated_tokens_total", "edgellm_queue_depth",
                 "edgellm_time_to_first_token_seconds_bucket{le=\"+Inf\"}",
                 "edgellm_request_duration_seconds_count", "edgellm_slots_active"):
        check(name in text, "metrics has %s" % name)


def test_queue_cancel_shutdown(slow_model):
    # One slot, one waiting place: a burst gets 429s beyond that, with Retry-After.
    s = Server(slow_model, "--parallel", "1", "--queue", "1", "--ctx", "8192", "--threads", "2",
               "--grace", "1")
    try:
        results = []
        lock = threading.Lock()

        def worker():
            r = s.request("POST", "/v1/completions", {"prompt": "hello", "max_tokens": 40,
                                                      "temperature": 0})
            with lock:
                results.append(r)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        codes = sorted(r[0] for r in results)
        check(set(codes) <= {200, 429} and codes.count(429) >= 1 and codes.count(200) >= 2,
              "burst: only 200s and intended 429s: %s" % codes)
        for st, body, h in results:
            if st == 429:
                check(h.get("retry-after") == "1" and body["error"]["type"] == "rate_limit_error",
                      "429 shape")
        texts = {r[1]["choices"][0]["text"] for r in results if r[0] == 200}
        check(len(texts) == 1, "every admitted greedy request got the same text")

        # A client that disconnects mid-stream frees its slot at once.
        conn = socket.create_connection(("127.0.0.1", s.port))
        body = json.dumps({"prompt": "hello", "max_tokens": 900, "temperature": 0, "stream": True})
        conn.sendall(("POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                      "Content-Length: %d\r\n\r\n%s" % (len(body), body)).encode())
        got = b""
        while b"data:" not in got:
            piece = conn.recv(4096)
            if not piece:
                break
            got += piece
        check(b"data:" in got, "stream started")
        conn.close()
        t0 = time.time()
        active = None
        while time.time() - t0 < 3:
            st, text, _ = s.request("GET", "/metrics")
            active = [l for l in text.splitlines() if l.startswith("edgellm_slots_active ")][0]
            if active.endswith(" 0"):
                break
            time.sleep(0.05)
        check(active.endswith(" 0"), "slot freed after the client left: %s" % active)
        generated = [l for l in text.splitlines() if l.startswith("edgellm_generated_tokens_total ")][0]
        check(int(generated.split()[1]) < 900 + 8 * 40, "the abandoned generation stopped early: %s"
              % generated)

        # SIGTERM with a long stream in flight: it is cut after the grace period with an error
        # event and [DONE], and the process exits 0. The signal waits for the stream's first event
        # (a fixed sleep can end before a loaded host admitted the request, which is then answered
        # 503), and the stream is long enough not to end on its own within the 1 s grace (1000
        # tokens often ended first: "length", no error).
        t, out = s.start_long_stream()
        t_sig = time.time()
        rc = s.stop(signal.SIGTERM)
        t.join(10)
        check(rc == 0, "exit code 0 after SIGTERM: %s" % rc)
        check(time.time() - t_sig < 8, "stopped within the grace period")
        st, events, done, _ = out.get("r", (None, [], False, {}))
        check(st == 200 and done and events and "error" in events[-1],
              "cut stream ends with an error and [DONE]: status %s, [DONE] %s, %d events, last %s"
              % (st, done, len(events), events[-1:]))
    finally:
        if s.proc.poll() is None:
            s.proc.kill()


def main():
    cases = load_greedy_cases()
    s = Server(MODEL, "--parallel", "4", "--api-key", KEY, "--cors", "http://allowed.example",
               "--max-body", "256K", "--threads", "2")
    try:
        test_auth_and_basics(s)
        test_cors(s)
        test_greedy_matches_run(s, cases)
        test_streaming(s, cases[0])
        test_parameters(s, cases[1])
        test_errors(s)
        test_embeddings_and_tokens(s)
        test_chat_control_text(s)
        test_metrics(s)
        rc = s.stop(signal.SIGINT)
        check(rc == 0, "exit code 0 after SIGINT: %s" % rc)
    finally:
        if s.proc.poll() is None:
            s.proc.kill()
    # Quantized weights take the four-token kernels when batched: still the same tokens.
    q4 = os.path.join(TMP, "aidreams-q4_0.gguf")
    subprocess.run([EDGELLM, "quantize", MODEL, q4, "q4_0"], check=True, capture_output=True)
    s = Server(q4, "--parallel", "4", "--api-key", KEY, "--threads", "2")
    try:
        test_greedy_matches_run(s, cases, q4)
        check(s.stop() == 0, "q4_0 server exits 0")
    finally:
        if s.proc.poll() is None:
            s.proc.kill()
    slow = os.path.join(TMP, "slow.gguf")
    subprocess.run([EDGELLM, "synth", "--dims", "512,8,8,8,1536", "--vocab",
                    os.path.join(SHARED, "models", "llama2-vocab-tiny-f16.gguf"), "-o", slow,
                    "--type", "q8_0", "--ctx", "8192"], check=True, capture_output=True)
    test_queue_cancel_shutdown(slow)
    print("server_api: %d checks, %d failed" % (checks, len(failures)))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
