#!/usr/bin/env python3
"""A bounded fuzzing pass over the server's request bodies and headers: valid requests are
mutated at the JSON level (wrong types, huge or negative numbers, deep nesting, odd unicode,
duplicate keys) and at the byte level (flips, truncation, garbage, invalid UTF-8), and sent with
randomised headers (lying Content-Length, broken chunked encoding, odd Authorization/Origin)
over raw sockets. Every answer must be a well-formed HTTP response below 500 (or a closed
connection for malformed HTTP), the server must stay healthy, and it must exit 0 on SIGTERM (the
sanitizer build adds leak checking at that exit). FUZZ_SECONDS bounds the run (default 20)."""
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time

EDGELLM = os.environ["EDGELLM"]
SHARED = os.environ["SHARED"]
SECONDS = float(os.environ.get("FUZZ_SECONDS", "20"))
TMP = tempfile.mkdtemp(prefix="fuzz-http-", dir=os.environ.get("TEST_TMP", "/tmp"))
KEY = "fuzz-key"
rng = random.Random(int(os.environ.get("FUZZ_SEED", "1234")))

SEEDS = [
    ("/v1/chat/completions", {"model": "aidreams260K-f32", "messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Tell me a dream"}],
        "max_tokens": 8, "temperature": 0.7, "top_p": 0.9, "seed": 3, "stop": ["\n", "."],
        "logprobs": True, "top_logprobs": 2, "stream": False}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
                              "max_completion_tokens": 6, "stream": True,
                              "stream_options": {"include_usage": True}}),
    ("/v1/completions", {"prompt": "Once upon a time", "max_tokens": 8, "temperature": 0,
                         "logprobs": 2, "presence_penalty": 0.5, "frequency_penalty": 0.5, "n": 1,
                         "user": "x"}),
    ("/v1/completions", {"prompt": [1, 50, 60, 70], "max_tokens": 4, "stream": True}),
    ("/v1/embeddings", {"input": ["a dream", "of circuits"], "encoding_format": "base64"}),
    ("/v1/embeddings", {"input": [[1, 2, 3], [4, 5]]}),
    ("/tokenize", {"content": "Hello world", "add_special": True, "with_pieces": True}),
    ("/detokenize", {"tokens": [1, 100, 200, 300]}),
]
PATHS = [p for p, _ in SEEDS] + ["/", "/health", "/metrics", "/v1/models", "/v1/x", "//v1/models",
                                  "/v1/chat/completions?x=1", "/%00", "/" + "a" * 5000]
WEIRD = [None, True, False, 0, -1, 1e308, -1e308, 2**63, -2**63, 2**64, 0.5, "", "x" * 10000,
         "\u0000", "\ud7ff\ue000", "\U0001F600", [], {}, [None], {"a": None}, "<|im_start|>",
         "</s><s>[INST]", 1e-320, "NaN"]


def mutate_json(v, depth=0):
    r = rng.random()
    if r < 0.15:
        return rng.choice(WEIRD)
    if isinstance(v, dict):
        v = dict(v)
        for k in list(v.keys()):
            if rng.random() < 0.3:
                v[k] = mutate_json(v[k], depth + 1)
            elif rng.random() < 0.05:
                del v[k]
        if rng.random() < 0.1:
            v[rng.choice(["n", "stream", "logprobs", "top_logprobs", "stop", "max_tokens",
                          "temperature", "input", "messages", "prompt", "tokens", "content"])] = rng.choice(WEIRD)
        return v
    if isinstance(v, list):
        v = [mutate_json(x, depth + 1) if rng.random() < 0.3 else x for x in v]
        if rng.random() < 0.1:
            v = v * rng.randint(2, 300)
        return v
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return rng.choice([v * -1, v * 1e6, 0, 2**31, -2**31, 3.7, 1e400 if False else 1e300])
    if isinstance(v, str):
        return rng.choice([v * rng.randint(1, 50), v[: len(v) // 2], "\udcff" if False else "\u2028",
                           "é" * 100, "\x01\x02", "{{ }}"])
    return v


def mutate_bytes(b):
    b = bytearray(b)
    for _ in range(rng.randint(1, 8)):
        op = rng.random()
        if not b:
            break
        i = rng.randrange(len(b))
        if op < 0.3:
            b[i] = rng.randrange(256)
        elif op < 0.5:
            del b[i:i + rng.randint(1, 20)]
        elif op < 0.7:
            b[i:i] = rng.choice([b"\xff\xfe", b"\\u0000", b'"', b"{", b"]", b"\\ud800", b"\xc3", b"9" * 400])
        else:
            b = b[:i]
    return bytes(b)


def deep(n):
    return ("[" * n + "]" * n).encode()


def make_request():
    path, body = rng.choice(SEEDS)
    r = rng.random()
    if r < 0.45:
        data = json.dumps(mutate_json(body), allow_nan=rng.random() < 0.5).encode()
    elif r < 0.8:
        data = mutate_bytes(json.dumps(body).encode())
    elif r < 0.85:
        data = deep(rng.choice([10, 3000, 100000]))
    elif r < 0.9:
        data = b'{"messages": [' + b'{"role": "user", "content": "x"},' * rng.randint(1, 3000) + b"{}]}"
    else:
        data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 2000)))
    if rng.random() < 0.1:
        path = rng.choice(PATHS)
    method = rng.choice(["POST"] * 8 + ["GET", "PUT", "DELETE", "OPTIONS", "PATCH", "BREW"])
    headers = [("Host", "127.0.0.1"), ("Content-Type", rng.choice(["application/json", "text/plain", "x" * 300]))]
    auth = rng.random()
    if auth < 0.85:
        headers.append(("Authorization", "Bearer " + KEY))
    elif auth < 0.9:
        headers.append(("Authorization", rng.choice(["Bearer", "Bearer  " + KEY, "Basic abc", "Bearer " + "k" * 5000])))
    if rng.random() < 0.2:
        headers.append(("Origin", rng.choice(["http://ok.example", "null", "http://evil", "\x7f"])))
    framing = rng.random()
    if framing < 0.8:
        headers.append(("Content-Length", str(len(data))))
        payload = data
    elif framing < 0.9:
        headers.append(("Transfer-Encoding", "chunked"))
        payload = b""
        i = 0
        while i < len(data):
            n = rng.randint(1, 500)
            size = b"%x" % len(data[i:i + n]) if rng.random() < 0.95 else b"zz"
            payload += size + b"\r\n" + data[i:i + n] + b"\r\n"
            i += n
        payload += b"0\r\n\r\n"
    else:
        headers.append(("Content-Length", str(rng.choice([0, len(data) // 2, len(data) + 10, 2**40]))))
        payload = data
    if rng.random() < 0.05:
        headers.append(("X-Junk", "y" * rng.randint(1, 20000)))
    head = "%s %s HTTP/1.1\r\n" % (method, path) + "".join("%s: %s\r\n" % h for h in headers) + "Connection: close\r\n\r\n"
    return head.encode("latin-1", "replace") + payload


def send(port, raw):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        s.sendall(raw)
    except OSError:
        pass
    try:
        s.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except (socket.timeout, OSError):
        pass
    s.close()
    return data


def main():
    ready = os.path.join(TMP, "ready")
    log = open(os.path.join(TMP, "server.log"), "w+")
    proc = subprocess.Popen([EDGELLM, "serve", "-m", os.path.join(SHARED, "models", "aidreams260K-f32.gguf"),
                             "--port", "0", "--ready-file", ready, "--api-key", KEY, "--parallel", "2",
                             "--threads", "2", "--cors", "http://ok.example", "--max-body", "256K"],
                            stdout=log, stderr=log)
    t0 = time.time()
    while not os.path.exists(ready):
        assert proc.poll() is None and time.time() - t0 < 30, "server did not start"
        time.sleep(0.02)
    port = int(open(ready).read().strip().rsplit(":", 1)[1])
    while b" 200 " not in send(port, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"):
        assert time.time() - t0 < 30, "model did not load"
        time.sleep(0.05)
    bad, n, statuses = [], 0, {}
    end = time.time() + SECONDS
    while time.time() < end:
        raw = make_request()
        resp = send(port, raw)
        n += 1
        if proc.poll() is not None:
            bad.append("server died on request %d: %r" % (n, raw[:300]))
            break
        if resp:
            line = resp.split(b"\r\n", 1)[0]
            parts = line.split(b" ")
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
                bad.append("not an HTTP response: %r" % line[:100])
                continue
            code = int(parts[1])
            statuses[code] = statuses.get(code, 0) + 1
            if code >= 500:
                bad.append("%d for %r -> %r" % (code, raw[:200], resp[:300]))
    healthy = b" 200 " in send(port, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = "hung"
    print("fuzz_http: %d requests, statuses %s" % (n, dict(sorted(statuses.items()))))
    if not healthy:
        bad.append("server unhealthy after fuzzing")
    if rc != 0:
        log.seek(0)
        bad.append("server exit %s after SIGTERM: %s" % (rc, log.read()[-3000:]))
    for b in bad[:20]:
        print("FAIL:", b, file=sys.stderr)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
