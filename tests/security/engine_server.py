#!/usr/bin/env python3
"""Engine-side hostile inputs of issue 11 through `edgellm serve`: a model that computes NaN fails
each request with an OpenAI-shaped 500 (streaming: an error event) while the server stays up; with
--parallel 2, a request whose text makes the model compute NaN fails alone while another decoded
in the same passes succeeds; a SentencePiece vocabulary without an unknown token gives 400 on
/tokenize and completions instead of id -1; top_p below the smallest float is a 400 naming
top_p. Hostile files are made at test time with gguf_edit and synth."""
import http.client
import json
import os
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "server"))
import test_server as ts  # noqa: E402  (the server harness: Server, check)

EDGELLM = ts.EDGELLM
SHARED = ts.SHARED
EDIT = os.path.join(os.environ["BUILD_DIR"], "tests", "gguf_edit")
TMP = tempfile.mkdtemp(prefix="security-engine-server-", dir=os.environ.get("TEST_TMP", "/tmp"))
BASE = ts.MODEL
check = ts.check


class Server(ts.Server):
    """The harness's server; request answers (status, body), what these checks read."""

    def request(self, method, path, body=None):
        return super().request(method, path, body)[:2]

    def alive(self):
        return self.proc.poll() is None and self.request("GET", "/health")[0] == 200


def is_error(status, body, code, words):
    return (status == code and isinstance(body, dict) and isinstance(body.get("error"), dict)
            and all(w in body["error"].get("message", "") for w in words))


def edit(out, *args):
    subprocess.run([EDIT, BASE, out] + list(args), check=True)
    return out


# --- a model with NaN in its output head ---
s = Server(edit(os.path.join(TMP, "nan-head.gguf"), "--poke-f32", "output.weight", "640", "nan"))
try:
    chat = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 8}
    st, body = s.request("POST", "/v1/chat/completions", chat)
    check(is_error(st, body, 500, ["NaN"]), "chat on a NaN model: 500 naming NaN (%s %s)" % (st, body))
    st, body = s.request("POST", "/v1/completions",
                         {"prompt": "The machine", "max_tokens": 8, "logprobs": 3})
    check(is_error(st, body, 500, ["NaN"]), "completion with logprobs: 500 (%s %s)" % (st, body))
    st, body = s.request("POST", "/v1/chat/completions", dict(chat, logprobs=True, top_logprobs=2))
    check(is_error(st, body, 500, ["NaN"]), "chat with logprobs: 500 (%s %s)" % (st, body))
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)
    conn.request("POST", "/v1/chat/completions", body=json.dumps(dict(chat, stream=True)),
                 headers={"Content-Type": "application/json"})
    text = conn.getresponse().read().decode()
    conn.close()
    events = [json.loads(l[6:]) for l in text.split("\n") if l.startswith("data: {")]
    check(any("NaN" in e.get("error", {}).get("message", "") for e in events)
          and text.rstrip().endswith("data: [DONE]"),
          "streamed chat on a NaN model ends with an error event and [DONE]: %r" % text[-300:])
    st, body = s.request("POST", "/v1/embeddings", {"input": "hello"})
    check(st == 500 or st == 200, "embeddings answer (%s)" % st)
    check(s.alive(), "the server is still up after NaN requests")
finally:
    s.stop()

# --- one request's text makes the model compute NaN: only that request fails ---
# "\u00e9" is two byte tokens in this vocabulary (ids 3 + 0xC3, 3 + 0xA9); their embeddings get NaN.
poisoned = edit(os.path.join(TMP, "poisoned.gguf"), "--poke-f32", "token_embd.weight",
                str((3 + 0xC3) * 64), "nan", "--poke-f32", "token_embd.weight",
                str((3 + 0xA9) * 64), "nan")
s = Server(poisoned, "--parallel", "2")
try:
    st, body = s.request("POST", "/tokenize", {"content": "\u00e9"})
    check(st == 200 and {3 + 0xC3, 3 + 0xA9} <= set(body["tokens"]),
          "the poisoned text holds the poisoned byte tokens (%s)" % body)
    results = {}

    def send(name, prompt, n):
        results[name] = s.request("POST", "/v1/completions",
                                  {"prompt": prompt, "max_tokens": n, "temperature": 0})

    for round_ in range(3):
        good = threading.Thread(target=send, args=("good", "The machine dreams of", 24))
        bad = threading.Thread(target=send, args=("bad", "The \u00e9", 24))
        good.start()
        time.sleep(0.01 * round_)
        bad.start()
        good.join()
        bad.join()
        st, body = results["good"]
        check(st == 200 and body["choices"][0]["text"],
              "round %d: the clean request beside a NaN one succeeds (%s %s)" % (round_, st, body))
        st, body = results["bad"]
        check(is_error(st, body, 500, ["NaN"]), "round %d: the NaN request fails alone (%s %s)"
              % (round_, st, body))
    check(s.alive(), "the server is still up")
finally:
    s.stop()

# --- a SentencePiece vocabulary with two tokens and no unknown token ---
def s_(b):
    b = b.encode()
    return struct.pack("<Q", len(b)) + b


kv = [s_("general.architecture") + struct.pack("<I", 8) + s_("llama"),
      s_("tokenizer.ggml.model") + struct.pack("<I", 8) + s_("llama"),
      s_("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 2) + s_("\u2581a") + s_("b")]
data = b"GGUF" + struct.pack("<IQQ", 3, 0, len(kv)) + b"".join(kv)
vocab = os.path.join(TMP, "spm2-vocab.gguf")
open(vocab, "wb").write(data + b"\0" * (-len(data) % 32))
spm2 = os.path.join(TMP, "spm2.gguf")
subprocess.run([EDGELLM, "synth", "--dims", "64,1,4,4,128", "--vocab", vocab, "-o", spm2],
               check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
s = Server(spm2)
try:
    st, body = s.request("POST", "/tokenize", {"content": "ab"})
    check(st == 200 and body == {"tokens": [0, 1]}, "/tokenize of covered text (%s %s)" % (st, body))
    st, body = s.request("POST", "/tokenize", {"content": "a xyz"})
    check(is_error(st, body, 400, ["unknown token"]), "/tokenize of uncovered text: 400 (%s %s)"
          % (st, body))
    st, body = s.request("POST", "/v1/completions", {"prompt": "a xyz", "max_tokens": 2})
    check(is_error(st, body, 400, ["unknown token"]), "completion of uncovered text: 400 (%s %s)"
          % (st, body))
    st, body = s.request("POST", "/v1/chat/completions",
                         {"messages": [{"role": "user", "content": "xyz"}], "max_tokens": 2})
    check(st == 400, "chat of uncovered text: 400 (%s %s)" % (st, body))
    check(s.alive(), "the server is still up")
finally:
    s.stop()

# --- top_p that rounds to zero as a float ---
s = Server(BASE)
try:
    st, body = s.request("POST", "/v1/completions", {"prompt": "The", "top_p": 1e-50})
    check(is_error(st, body, 400, ["top_p"]) and body["error"].get("param") == "top_p",
          "top_p 1e-50: 400 naming top_p (%s %s)" % (st, body))
    st, body = s.request("POST", "/v1/completions", {"prompt": "The", "top_p": 1e-30,
                                                      "max_tokens": 2})
    check(st == 200, "top_p 1e-30 is a valid float (%s)" % st)
finally:
    s.stop()

print("%d checks, %d failures" % (ts.checks, len(ts.failures)))
sys.exit(1 if ts.failures else 0)
