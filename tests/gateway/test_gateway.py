#!/usr/bin/env python3
"""`edgellm gateway` over real HTTP on loopback, with a recording upstream (a small OpenAI-shaped
server in this file that stores every byte it receives and echoes the last user text back):
no labelled PII value reaches the upstream in any field, the restored answer equals the original
text (whole and streamed in 3-byte chunks, so placeholders split across chunks; streamed
tool-call arguments, refusal, reasoning, function_call, audio transcript and many choices
too), --pii block, the route headers and /metrics, the per-request override, the cloud key
never reaching the client, offline fallback (closed port, hanging upstream, 5xx) within the
latency bound, the circuit breaker and recovery, malformed answers (502), routing by
complexity, /v1/classify and the policy's local_intents, and the confidence cascade. Standard
library only; the HTTP client helpers are test_server.py's."""
import http.server
import json
import os
import socket
import socketserver
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "server"))
import test_server as ts  # noqa: E402  (check, Server's request/stream helpers, MODEL, TMP)

check = ts.check
CLOUD_KEY = "cloud-secret-key-42"
CLIENT_KEY = "gateway-client-key"

PII = {
    "EMAIL": "jane.doe@example.com",
    "PHONE": "+1 (202) 555-0143",
    "CARD": "4111 1111 1111 1111",
    "IBAN": "DE89 3704 0044 0532 0130 00",
    "SSN": "123-45-6789",
    "IP_ADDRESS": "192.168.17.42",
    "SECRET": "sk-proj-Zx81mQ4rT0pLk29sVb7nWc3yHd5Jf6Ge",
}


class Upstream:
    """An OpenAI-shaped cloud that records what it receives. mode: ok, hang, 500, garbage,
    empty (200 with no body), cut (a stream that closes before its [DONE]); reshape, when set,
    rewrites each whole (non-streamed) answer before it is sent; script, when set, is called
    with the last user text a stream gets and returns its events instead: (data, seconds to
    wait after it), data being sent as "data: DATA" (no [DONE] unless the script sends one)."""

    def __init__(self, port=0):
        self.received = []  # (method, path, headers, body bytes)
        self.mode = "ok"
        self.reshape = None
        self.script = None
        self.release = threading.Event()
        up = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def reply(self, status, payload, ctype="application/json"):
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                up.received.append(("GET", self.path, dict(self.headers), b""))
                if up.mode == "hang":
                    up.release.wait(30)
                    return
                if up.mode == "500":
                    return self.reply(500, {"error": {"message": "down"}})
                self.reply(200, {"object": "list", "data": [{"id": "cloud-model"}]})

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(n)
                up.received.append(("POST", self.path, dict(self.headers), raw))
                if up.mode == "hang":
                    up.release.wait(30)
                    return
                if up.mode == "500":
                    return self.reply(500, {"error": {"message": "overloaded"}})
                if up.mode == "garbage":
                    return self.reply(200, b"<html>not json", "text/html")
                if up.mode == "redirect":
                    self.send_response(301)
                    self.send_header("Location", "https://elsewhere.example/v1" + self.path[3:])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if up.mode == "404":
                    return self.reply(404, b"<html>Not Found</html>", "text/html")
                if up.mode == "empty":
                    return self.reply(200, b"", "text/event-stream")
                body = json.loads(raw)
                chat = self.path.endswith("/chat/completions")
                if chat:
                    text = body["messages"][-1]["content"]
                else:
                    text = body["prompt"]
                answer = "You said: " + text
                if not body.get("stream"):
                    if chat:
                        choice = {"index": 0, "message": {"role": "assistant", "content": answer},
                                  "finish_reason": "stop"}
                    else:
                        choice = {"index": 0, "text": answer, "finish_reason": "stop"}
                    answer = {"id": "x", "object": "chat.completion", "model": body.get("model"),
                              "choices": [choice]}
                    if up.reshape:
                        up.reshape(answer)
                    return self.reply(200, answer)
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                if up.script:
                    for data, wait in up.script(text):
                        self.wfile.write(b"data: " + data.encode() + b"\n\n")
                        self.wfile.flush()
                        time.sleep(wait)
                    self.close_connection = True
                    return
                for i in range(0, len(answer), 3):
                    piece = answer[i:i + 3]
                    if chat:
                        ch = {"index": 0, "delta": {"content": piece}, "finish_reason": None}
                    else:
                        ch = {"index": 0, "text": piece, "finish_reason": None}
                    ev = {"id": "x", "object": "chunk", "choices": [ch]}
                    self.wfile.write(b"data: " + json.dumps(ev).encode() + b"\n\n")
                    self.wfile.flush()
                if up.mode != "cut":
                    self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
                self.close_connection = True

        class Srv(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.httpd = Srv(("127.0.0.1", port), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def everything(self):
        """Every byte received, raw and JSON-decoded, as one text."""
        parts = []
        for method, path, headers, raw in self.received:
            parts.append(path)
            parts.append(json.dumps(headers))
            parts.append(raw.decode("utf-8", "replace"))
            try:
                parts.append(json.dumps(json.loads(raw), ensure_ascii=False))
            except ValueError:
                pass
        return "\n".join(parts)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_gateway(cloud_port, *args, model=None):
    g = ts.Server.__new__(ts.Server)
    g.ready = os.path.join(ts.TMP, "gw-ready-%d" % time.monotonic_ns())
    g.log = open(os.path.join(ts.TMP, "gw-%d.log" % time.monotonic_ns()), "w+")
    env = dict(os.environ, EDGELLM_CLOUD_KEY=CLOUD_KEY)
    g.proc = subprocess.Popen(
        [ts.EDGELLM, "gateway", "-m", model or ts.MODEL, "--port", "0", "--ready-file", g.ready,
         "--cloud-url", "http://127.0.0.1:%d/v1" % cloud_port, "--threads", "2"] + list(args),
        stdout=g.log, stderr=g.log, env=env)
    deadline = time.time() + 30
    while not os.path.exists(g.ready):
        if g.proc.poll() is not None or time.time() > deadline:
            raise RuntimeError("gateway did not start: " + g.logtext())
        time.sleep(0.02)
    g.port = int(open(g.ready).read().strip().rsplit(":", 1)[1])
    while g.request("GET", "/health")[0] != 200:
        if time.time() > deadline:
            raise RuntimeError("gateway model did not load")
        time.sleep(0.02)
    return g


def stop(g):
    rc = g.stop()
    check(rc == 0, "gateway exits 0 on SIGTERM: %s" % rc)
    log = g.logtext()
    for value in PII.values():
        check(value not in log, "the gateway's log holds no PII value (%s)" % value[:4])
    check(CLOUD_KEY not in log, "the gateway's log never holds the cloud key")
    return log


def metric(g, name, headers=None):
    st, text, _ = g.request("GET", "/metrics", headers=headers)
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


def pii_text():
    return ("Contact me at %(EMAIL)s or %(PHONE)s. Card %(CARD)s, IBAN %(IBAN)s, SSN %(SSN)s, "
            "server %(IP_ADDRESS)s, api key %(SECRET)s; again %(EMAIL)s." % PII)


def stream_text(g, path, body, headers):
    st, events, done, _ = g.stream(path, body, headers)
    text = ""
    for ev in events:
        for ch in ev.get("choices", []):
            text += (ch.get("delta") or {}).get("content") or ch.get("text") or ""
    return st, text, done


def test_pii_and_routes(up):
    g = start_gateway(up.port, "--route", "cloud", "--api-key", CLIENT_KEY)
    auth = {"Authorization": "Bearer " + CLIENT_KEY}
    try:
        original = pii_text()
        body = {"model": "m", "messages": [
            {"role": "system", "content": "The user is %s." % PII["EMAIL"]},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "c1", "type": "function",
                 "function": {"name": "lookup", "arguments": json.dumps({"ssn": PII["SSN"]})}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "card " + PII["CARD"]},
            {"role": "user", "content": original}], "edgellm": {"route": "cloud"}}
        st, resp, hdrs = g.request("POST", "/v1/chat/completions", body, auth)
        check(st == 200, "cloud chat: %s %s" % (st, resp))
        check(hdrs.get("x-edgellm-route") == "cloud", "route header cloud: %s" % hdrs)
        check(hdrs.get("x-edgellm-route-reason") == "route=cloud", "reason: %s" % hdrs)
        if st == 200:
            got = resp["choices"][0]["message"]["content"]
            check(got == "You said: " + original, "restored answer equals the original: %r" % got)
        # Streaming: the answer comes back in 3-byte chunks, placeholders split across them.
        st, text, done = stream_text(g, "/v1/chat/completions",
                                     dict(body, stream=True), auth)
        check(st == 200 and done, "streamed cloud chat: %s" % st)
        check(text == "You said: " + original, "streamed restored answer: %r" % text)
        # Completions with a prompt, streamed and not.
        cbody = {"prompt": original, "max_tokens": 8}
        st, resp, hdrs = g.request("POST", "/v1/completions", cbody, auth)
        check(st == 200 and resp["choices"][0]["text"] == "You said: " + original,
              "completion restored: %s %s" % (st, resp))
        st, text, done = stream_text(g, "/v1/completions", dict(cbody, stream=True), auth)
        check(st == 200 and done and text == "You said: " + original,
              "streamed completion restored: %r" % text)
        seen = up.everything()
        for kind, value in PII.items():
            check(value not in seen, "no %s value reached the upstream" % kind)
        check("[EMAIL_1]" in seen and "[CARD_1]" in seen, "placeholders were sent instead")
        check(CLIENT_KEY not in seen, "the client's key is not forwarded upstream")
        posts = [r for r in up.received if r[0] == "POST"]
        check(all(r[2].get("Authorization") == "Bearer " + CLOUD_KEY for r in posts),
              "the cloud key goes upstream as Bearer")
        check(all(b'"edgellm"' not in r[3] for r in posts), "the edgellm member is stripped")
        check(all(json.loads(r[3]).get("model") == "m" for r in posts if b"messages" in r[3]),
              "the client's model is passed on without --cloud-model")
        # Per-request override to the edge: the local model answers, nothing goes upstream.
        n_before = len(up.received)
        st, resp, hdrs = g.request("POST", "/v1/chat/completions",
                                   {"messages": [{"role": "user", "content": PII["EMAIL"]}],
                                    "max_tokens": 4, "edgellm": {"route": "edge"}}, auth)
        check(st == 200 and hdrs.get("x-edgellm-route") == "edge",
              "override to edge: %s %s" % (st, hdrs))
        check(len([r for r in up.received[n_before:] if r[0] == "POST"]) == 0,
              "an edge request sends nothing upstream")
        st, resp, hdrs = g.request("POST", "/v1/chat/completions",
                                   {"messages": [{"role": "user", "content": "x"}],
                                    "edgellm": {"route": "moon"}}, auth)
        check(st == 400 and "route" in resp["error"]["message"], "bad override: %s" % resp)
        st, resp, hdrs = g.request("POST", "/v1/embeddings", {"input": PII["EMAIL"]}, auth)
        check(st == 200 and hdrs.get("x-edgellm-route") == "edge",
              "embeddings on the device: %s %s" % (st, hdrs))
        check(CLOUD_KEY not in json.dumps(resp) and CLOUD_KEY not in json.dumps(hdrs),
              "the cloud key never reaches the client")
        st, resp, _ = g.request("POST", "/v1/chat/completions", body)
        check(st == 401, "the gateway's own key is required: %s" % st)
        st, resp, _ = g.request("POST", "/v1/chat/completions", body,
                                dict(auth, Host="evil.example"))
        check(st == 421, "Host check as in serve: %s" % st)
        check(metric(g, 'edgellm_gateway_requests_total{route="cloud"}', auth) == 4,
              "/metrics counts 4 cloud requests")
        check(metric(g, "edgellm_gateway_pii_redacted_total", auth) >= 4 * 8,
              "/metrics counts the redacted values")
    finally:
        stop(g)
    # Block mode: 400 naming the types, never the values; nothing sent.
    g = start_gateway(up.port, "--route", "cloud", "--pii", "block")
    try:
        n_before = len(up.received)
        st, resp, hdrs = g.request("POST", "/v1/chat/completions",
                                   {"messages": [{"role": "user", "content": pii_text()}]})
        msg = resp["error"]["message"] if isinstance(resp, dict) else ""
        check(st == 400 and resp["error"]["code"] == "pii_detected", "block: %s %s" % (st, resp))
        check("EMAIL" in msg and "CARD" in msg and "IBAN" in msg, "block names types: %s" % msg)
        check(all(v not in msg for v in PII.values()), "block never names a value")
        check(len([r for r in up.received[n_before:] if r[0] == "POST"]) == 0,
              "a blocked request sends nothing")
        st, resp, hdrs = g.request("POST", "/v1/chat/completions",
                                   {"messages": [{"role": "user", "content": "hello there"}]})
        check(st == 200 and hdrs.get("x-edgellm-route") == "cloud", "clean text passes block")
    finally:
        stop(g)


def chat(g, text="Tell me a story", stream=False):
    body = {"messages": [{"role": "user", "content": text}], "max_tokens": 8, "stream": stream}
    t0 = time.monotonic()
    if stream:
        conn_st, events, done, _ = g.stream("/v1/chat/completions", body)
        return conn_st, None, {}, time.monotonic() - t0
    st, resp, hdrs = g.request("POST", "/v1/chat/completions", body)
    return st, resp, hdrs, time.monotonic() - t0


def edge_time(g):
    """How long the edge model alone takes for the same request (the baseline of the bound)."""
    best = 1e9
    for _ in range(3):
        t0 = time.monotonic()
        st, _, hdrs = g.request("POST", "/v1/chat/completions",
                                {"messages": [{"role": "user", "content": "Tell me a story"}],
                                 "max_tokens": 8, "edgellm": {"route": "edge"}})
        best = min(best, time.monotonic() - t0)
    return best


def short_note_policy():
    """The 260K test model has 128 tokens of context: the default note would not fit."""
    path = os.path.join(ts.TMP, "note-policy.json")
    with open(path, "w") as f:
        json.dump({"fallback_note": "Offline: be unsure."}, f)
    return path


def test_offline():
    # A closed port: connection refused, fallback at once.
    closed = free_port()
    g = start_gateway(closed, "--route", "cloud", "--policy", short_note_policy())
    try:
        base = edge_time(g)
        st, resp, hdrs, dt = chat(g)
        check(st == 200 and hdrs.get("x-edgellm-route") == "edge-fallback",
              "closed port falls back: %s %s" % (st, hdrs))
        check(hdrs.get("x-edgellm-route-reason") in ("cloud-unreachable", "circuit-open"),
              "reason: %s" % hdrs)
        check(dt - base < 1.0, "fallback's extra latency under 1 s: %.3f s" % (dt - base))
        st2, resp2, _ = g.request("POST", "/v1/chat/completions",
                                  {"messages": [{"role": "user", "content": "Tell me a story"}],
                                   "max_tokens": 8, "edgellm": {"route": "edge"}})
        check(st == 200 and st2 == 200 and resp["usage"]["prompt_tokens"] >
              resp2["usage"]["prompt_tokens"] + 5, "the fallback's prompt carries the note")
        print("fallback (closed port): %.3f s, edge alone %.3f s" % (dt, base))
        # The circuit is open now: the next requests do not try the network.
        time.sleep(0.3)
        st, resp, hdrs, dt = chat(g)
        check(hdrs.get("x-edgellm-route-reason") == "circuit-open",
              "circuit open after a failure: %s" % hdrs)
        check(metric(g, "edgellm_gateway_circuit_open") == 1, "/metrics shows the open circuit")
        # Recovery: the cloud comes up on that port; a probe closes the circuit.
        up = Upstream(closed)
        try:
            deadline = time.time() + 10
            while metric(g, "edgellm_gateway_circuit_open") != 0 and time.time() < deadline:
                time.sleep(0.1)
            st, resp, hdrs, dt = chat(g)
            check(st == 200 and hdrs.get("x-edgellm-route") == "cloud",
                  "recovered to the cloud: %s %s" % (st, hdrs))
            # A cloud answering 500 (after the retry) falls back too, and garbage is a 502.
            up.mode = "500"
            st, resp, hdrs, dt = chat(g)
            check(st == 200 and hdrs.get("x-edgellm-route") == "edge-fallback"
                  and hdrs.get("x-edgellm-route-reason") == "cloud-5xx", "5xx: %s" % hdrs)
            up.mode = "garbage"
            st, resp, hdrs, dt = chat(g)
            check(st == 502 and resp["error"]["code"] == "upstream_invalid",
                  "malformed answer is a 502: %s %s" % (st, resp))
            # No API answer at all: the 502 says what the server did instead (it said "'answer'
            # is not a JSON object").
            for mode, words in (("redirect", "the cloud answered HTTP 301, a redirect to "
                                 "'https://elsewhere.example/v1/chat/completions', which the "
                                 "gateway does not follow"),
                                ("404", "the cloud answered HTTP 404 without a JSON body")):
                up.mode = mode
                st, resp, hdrs, dt = chat(g)
                check(st == 502 and resp["error"]["code"] == "upstream_invalid"
                      and words in resp["error"]["message"],
                      "%s is a 502 saying so: %s %s" % (mode, st, resp))
            up.mode = "garbage"
            # A whole answer whose fields have the wrong types is a 502 naming the field, not
            # a 200 the client cannot read.
            def tool_call(arguments):
                return {"id": "c1", "type": "function",
                        "function": {"name": "f", "arguments": arguments}}
            misshapen = [
                ("choices", lambda a: a.update(choices=[])),
                ("choices[0]", lambda a: a.update(choices=["hi"])),
                ("choices[0].message", lambda a: a["choices"][0].pop("message")),
                ("choices[0].message.content",
                 lambda a: a["choices"][0]["message"].update(content=5)),
                ("choices[0].message.tool_calls", lambda a: a["choices"][0]["message"].update(
                    content=None, tool_calls={"f": 1})),
                ("choices[0].message.tool_calls[0]",
                 lambda a: a["choices"][0]["message"].update(tool_calls=[5])),
                ("choices[0].message.tool_calls[0].function.arguments",
                 lambda a: a["choices"][0]["message"].update(tool_calls=[tool_call({"x": 1})])),
                ("choices[0].message.function_call.arguments",
                 lambda a: a["choices"][0]["message"].update(
                     content=None, function_call={"name": "f", "arguments": {"x": 1}})),
                ("choices[0].finish_reason", lambda a: a["choices"][0].update(finish_reason=1)),
                ("usage", lambda a: a.update(usage="lots")),
            ]
            up.mode = "ok"
            for field, reshape in misshapen:
                up.reshape = reshape
                st, resp, hdrs, dt = chat(g)
                check(st == 502 and resp["error"]["code"] == "upstream_invalid"
                      and ("'%s'" % field) in resp["error"]["message"],
                      "an answer with a misshapen %s is a 502 naming it: %s %s" % (field, st, resp))
            # The shapes the API allows still pass: content null beside tool calls.
            up.reshape = lambda a: a["choices"][0]["message"].update(
                content=None, tool_calls=[tool_call('{"x": 1}')])
            st, resp, hdrs, dt = chat(g)
            check(st == 200 and resp["choices"][0]["message"]["tool_calls"][0]["function"]
                  ["arguments"] == '{"x": 1}', "a tool-call answer passes: %s %s" % (st, resp))
            up.reshape = None
            st, resp, _ = g.request("POST", "/v1/completions", {"prompt": "hi", "max_tokens": 4})
            check(st == 200 and resp["choices"][0]["text"] == "You said: hi",
                  "a completion passes: %s %s" % (st, resp))
            up.reshape = lambda a: a["choices"][0].update(text=["You", "said"])
            st, resp, _ = g.request("POST", "/v1/completions", {"prompt": "hi", "max_tokens": 4})
            check(st == 502 and "'choices[0].text'" in resp["error"]["message"],
                  "a completion whose text is an array is a 502: %s %s" % (st, resp))
            # Every choice and the usage are checked, not only the first choice.
            for field, reshape in [
                ("choices[1].text", lambda a: a["choices"].append({"index": 1, "text": 7})),
                ("usage", lambda a: a.update(usage=[1])),
            ]:
                up.reshape = reshape
                st, resp, _ = g.request("POST", "/v1/completions", {"prompt": "hi", "max_tokens": 4})
                check(st == 502 and ("'%s'" % field) in resp["error"]["message"],
                      "a completion with a misshapen %s is a 502 naming it: %s %s" % (field, st, resp))
            up.reshape = None
            # A stream that is not an event stream or is empty has sent the client nothing when
            # it ends: a 502, as a whole answer would be.
            for mode in ("garbage", "empty"):
                up.mode = mode
                st, events, done, _ = g.stream("/v1/chat/completions",
                                               {"messages": [{"role": "user", "content": "hi"}],
                                                "max_tokens": 4, "stream": True})
                check(st == 502 and events[0]["error"]["code"] == "upstream_invalid"
                      and "[DONE]" in events[0]["error"]["message"],
                      "the %s cloud stream is a 502: %s %s" % (mode, st, events))
                check(g.proc.poll() is None, "the gateway survives a %s cloud stream" % mode)
            up.mode = "ok"
        finally:
            up.stop()
    finally:
        stop(g)
    # A hanging upstream: the deadline ends the first call; then the probe opens the circuit.
    up = Upstream()
    up.mode = "hang"
    g = start_gateway(up.port, "--route", "cloud", "--cloud-timeout", "1",
                      "--policy", short_note_policy())
    try:
        base = edge_time(g)
        st, resp, hdrs, dt = chat(g, stream=False)
        check(st == 200 and hdrs.get("x-edgellm-route") == "edge-fallback",
              "hanging upstream falls back: %s %s" % (st, hdrs))
        print("fallback (hanging upstream, --cloud-timeout 1): %.3f s" % dt)
        check(dt - base < 1.6, "at the deadline: %.3f s" % (dt - base))
        st, resp, hdrs, dt = chat(g)
        check(hdrs.get("x-edgellm-route-reason") == "circuit-open" and dt - base < 0.5,
              "then the open circuit answers at once: %s %.3f s" % (hdrs, dt))
        st, events, done, _ = g.stream("/v1/chat/completions",
                                       {"messages": [{"role": "user", "content": "hi"}],
                                        "max_tokens": 4, "stream": True})
        check(st == 200 and done, "a stream falls back too")
    finally:
        stop(g)
        up.stop()


def test_routing(up):
    g = start_gateway(up.port, "--route", "auto")
    try:
        cases = [
            ("Hi!", 16, "edge"),
            ("What is the capital of France?", 32, "edge"),
            ("First, write a Python function `def merge(a, b)` that merges two sorted lists; "
             "then prove its complexity step by step and compare it with heapq.merge.", 512,
             "cloud"),
            ("Derive the equation of motion, then explain why the integral converges. " * 3,
             1024, "cloud"),
            # A long answer or a multi-step instruction alone stays: neither part reaches 0.6.
            ("Tell me about the sea.", 4096, "edge"),
            ("First compare the two poems, then evaluate their trade-offs and justify your "
             "choice.", 1024, "edge"),
        ]
        for text, max_tokens, want in cases:
            st, resp, hdrs = g.request("POST", "/v1/chat/completions",
                                       {"messages": [{"role": "user", "content": text}],
                                        "max_tokens": max_tokens})
            check(st == 200 and hdrs.get("x-edgellm-route") == want,
                  "auto routes %r to %s: %s" % (text[:30], want, hdrs))
            check(hdrs.get("x-edgellm-route-reason", "").startswith("complexity="),
                  "reason names the score: %s" % hdrs)
        log = g.logtext()
        check("complexity=" in log and "code_math=" in log and "surprisal=" in log,
              "the score's parts are logged")
    finally:
        stop(g)


def write_policy(policy):
    path = os.path.join(ts.TMP, "policy-%d.json" % time.monotonic_ns())
    with open(path, "w") as f:
        json.dump(policy, f)
    return path


def test_classify_and_intents(up):
    labels = ["dreams", "invoices"]
    g = start_gateway(up.port, "--route", "cloud",
                      "--policy", write_policy({"intent_labels": labels,
                                                "local_intents": ["dreams"]}))
    try:
        text = "I dreamed of gentle whispers of probability"
        st, resp, hdrs = g.request("POST", "/v1/classify", {"input": text, "labels": labels})
        ok = st == 200 and isinstance(resp, dict) and len(resp.get("labels", [])) == 2
        check(ok and resp["object"] == "classification" and resp["label"] ==
              resp["labels"][0]["label"] and hdrs.get("x-edgellm-route") == "edge",
              "/v1/classify answers on the device, most likely label first: %s" % resp)
        check(ok and abs(sum(x["probability"] for x in resp["labels"]) - 1) < 1e-6 and
              resp["labels"][0]["logprob"] >= resp["labels"][1]["logprob"] and
              all(x["logprob"] < 0 for x in resp["labels"]),
              "probabilities sum to 1 and follow the log-likelihoods")
        swapped = g.request("POST", "/v1/classify", {"input": text, "labels": labels[::-1]})[1]
        check(ok and swapped["label"] == resp["label"], "the label order does not decide")
        for bad in ({"input": text}, {"input": 3, "labels": labels},
                    {"input": text, "labels": ["a"]}, {"input": text, "labels": ["a", "a"]},
                    {"input": text, "labels": ["a", ""]}, {"input": "x" * 5000, "labels": labels}):
            st, r, _ = g.request("POST", "/v1/classify", bad)
            check(st == 400 and "error" in r, "bad classify body %s -> 400: %s" % (
                json.dumps(bad)[:60], r))
        # The policy: the label the classifier picks decides, whatever --route says.
        local = resp["label"] == "dreams"
        before = len(up.received)
        st, r, hdrs = g.request("POST", "/v1/completions",
                                {"prompt": text, "max_tokens": 4})
        want = ("edge", "local-intent=dreams") if local else ("cloud", "route=cloud")
        check(st == 200 and (hdrs.get("x-edgellm-route"), hdrs.get("x-edgellm-route-reason"))
              == want, "local_intents routes as the classifier says: %s" % hdrs)
        check(local == (len(up.received) == before), "a local intent sends nothing out")
        check(metric(g, "edgellm_gateway_local_intent_total") == (1 if local else 0),
              "/metrics counts requests kept local")
    finally:
        stop(g)
    for policy, words in (({"intent_labels": ["a"], "local_intents": ["a"]}, "intent_labels"),
                          ({"intent_labels": ["a", "b"], "local_intents": ["c"]}, "local_intents"),
                          ({"intent_labels": ["a", "b"]}, "local_intents"),
                          ({"cascade": {"min_mean_logprob": 1}}, "cascade"),
                          ({"cascade": {"mean": -1}}, "cascade")):
        p = subprocess.run([ts.EDGELLM, "gateway", "-m", ts.MODEL, "--cloud-url",
                            "http://127.0.0.1:%d" % up.port, "--policy", write_policy(policy)],
                           capture_output=True, text=True, timeout=30)
        check(p.returncode == 2 and words in p.stderr and p.stderr.count("\n") == 1,
              "policy %s refused in one line: %r" % (policy, p.stderr))


def test_cloud_url(up):
    # A --cloud-url libcurl cannot use is refused at start: it was accepted, and every request
    # then fell back to the edge with only "cloud unavailable" in the log.
    for url, words in (("http://", "No host part"), ("http://a b/v1", "not a URL"),
                       ("https://host/v1?key=1", "has a query"), ("http://host/v1#x", "fragment"),
                       ("http://127.0.0.1:99999/v1", "Port number")):
        try:
            p = subprocess.run([ts.EDGELLM, "gateway", "-m", ts.MODEL, "--port", "0",
                                "--cloud-url", url], capture_output=True, text=True, timeout=10)
            rc, err = p.returncode, p.stderr
        except subprocess.TimeoutExpired as e:
            rc, err = "still serving after 10 s", (e.stderr or b"").decode()
        check(rc == 2 and words in err and err.count("\n") == 1,
              "--cloud-url %r refused in one line: %s %r" % (url, rc, err))
    # A password in the URL is a credential like the key: never in the log.
    g = start_gateway(up.port, "--cloud-url", "http://jo:hunter2@127.0.0.1:%d/v1" % up.port)
    try:
        st, _, hdrs = g.request("POST", "/v1/completions", {"prompt": "hi", "max_tokens": 2,
                                                            "edgellm": {"route": "cloud"}})
        check(st == 200 and hdrs.get("x-edgellm-route") == "cloud",
              "a URL with a user part still reaches the cloud: %s %s" % (st, hdrs))
    finally:
        log = stop(g)
    check("hunter2" not in log and "http://***@127.0.0.1" in log,
          "the password in --cloud-url is masked in the log: %r" % log.splitlines()[:1])


def test_cascade(up):
    prompt = {"prompt": "I dreamed", "max_tokens": 8, "temperature": 0}
    # Thresholds no answer can miss: the edge's answer is kept, and it is the edge's own.
    g = start_gateway(up.port, "--policy", write_policy(
        {"cascade": {"min_mean_logprob": -50, "min_token_logprob": -80}}))
    try:
        before = len(up.received)
        st, r, hdrs = g.request("POST", "/v1/completions", prompt)
        c = (r or {}).get("edgellm", {}).get("cascade", {}) if st == 200 else {}
        check(st == 200 and hdrs.get("x-edgellm-route") == "edge" and
              hdrs.get("x-edgellm-route-reason") == "confident" and c.get("tokens") == 8 and
              c["min_logprob"] <= c["mean_logprob"] < 0,
              "a confident edge answer is kept: %s %s" % (hdrs, c))
        check(len(up.received) == before, "a kept answer sends nothing to the cloud")
        local = g.request("POST", "/v1/completions",
                          dict(prompt, edgellm={"route": "edge"}))[1]
        check(st == 200 and r["choices"][0]["text"] == local["choices"][0]["text"],
              "the kept answer is what the edge model answers")
        st, events, done, _ = g.stream("/v1/completions", dict(prompt, stream=True))
        text = "".join(ch.get("text", "") for ev in events for ch in ev.get("choices", []))
        check(st == 200 and done and text == r["choices"][0]["text"],
              "a kept stream sends the same text")
        check(metric(g, 'edgellm_gateway_cascade_total{outcome="kept"}') == 2,
              "/metrics counts kept answers")
    finally:
        stop(g)
    # Thresholds no answer can meet: the draft is discarded and the cloud answers.
    g = start_gateway(up.port, "--policy", write_policy(
        {"cascade": {"min_mean_logprob": -0.0001}}))
    try:
        st, r, hdrs = g.request("POST", "/v1/completions", prompt)
        check(st == 200 and hdrs.get("x-edgellm-route") == "cloud" and
              hdrs.get("x-edgellm-route-reason") == "low-confidence" and
              r["choices"][0]["text"].startswith("You said:"),
              "a low-confidence edge answer is replaced by the cloud's: %s" % hdrs)
        st, text, done = stream_text(g, "/v1/completions", dict(prompt, stream=True), {})
        check(st == 200 and done and text.startswith("You said:"),
              "a low-confidence stream is the cloud's from its first byte: %r" % text[:30])
        check(metric(g, 'edgellm_gateway_cascade_total{outcome="escalated"}') == 2,
              "/metrics counts escalations")
        # Only auto-routed edge requests are cascaded: an override is obeyed as it is.
        st, r, hdrs = g.request("POST", "/v1/completions",
                                dict(prompt, edgellm={"route": "edge"}))
        check(hdrs.get("x-edgellm-route-reason") == "route=edge", "overrides skip the cascade")
    finally:
        stop(g)


def chunk(content=None, **delta):
    """A streamed chat chunk of one choice."""
    if content is not None:
        delta["content"] = content
    return json.dumps({"id": "x", "object": "chat.completion.chunk",
                       "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})


def stream_chat(g, text="hi"):
    st, events, done, _ = g.stream("/v1/chat/completions",
                                   {"messages": [{"role": "user", "content": text}],
                                    "max_tokens": 4, "stream": True})
    said = "".join(text for text in map(delta_member("content"), events)
                   if isinstance(text, str))
    errors = [ev["error"] for ev in events if "error" in ev]
    return st, events, done, said, errors


def delta_member(name):
    """What an event's first delta holds under name (None for anything else: a relayed
    misshapen event must not break the test that reports it)."""
    def get(ev):
        try:
            return ev["choices"][0]["delta"].get(name)
        except (KeyError, IndexError, TypeError, AttributeError):
            return None
    return get


def test_stream_shapes():
    """A streamed cloud answer is checked event by event with the whole answer's field checks:
    before the client got anything a misshapen stream is a 502 naming the field (or the edge's
    answer, by policy); after, it ends with an error event naming it and no [DONE]."""
    up = Upstream()
    g = start_gateway(up.port, "--route", "cloud")
    call = json.dumps({"index": 0, "id": "c1", "type": "function",
                       "function": {"name": "f", "arguments": ""}})
    misshapen = [
        ("choices", json.dumps({"id": "x", "choices": "hi"})),
        ("choices[0]", json.dumps({"id": "x", "choices": [5]})),
        ("choices[0].delta", json.dumps({"id": "x", "choices": [{"index": 0, "delta": "hi"}]})),
        ("choices[0].delta.content", chunk(5)),
        ("choices[0].delta.tool_calls", chunk(tool_calls={"f": 1})),
        ("choices[0].delta.tool_calls[0]", chunk(tool_calls=[5])),
        ("choices[0].delta.tool_calls[0].function.arguments",
         chunk(tool_calls=[{"index": 0, "function": {"arguments": {"x": 1}}}])),
        ("choices[0].delta.function_call", chunk(function_call="f")),
        ("choices[0].delta.function_call.arguments", chunk(function_call={"arguments": 5})),
        ("choices[0].index", json.dumps({"choices": [{"index": "0", "delta": {}}]})),
        ("usage", json.dumps({"choices": [], "usage": 7})),
    ]
    try:
        for field, bad in misshapen:
            # First event bad: nothing went out yet.
            up.script = lambda text: [(bad, 0), (chunk("more"), 0), ("[DONE]", 0)]
            st, events, done, said, errors = stream_chat(g)
            check(st == 502 and events[0]["error"]["code"] == "upstream_invalid"
                  and ("'%s'" % field) in events[0]["error"]["message"],
                  "a stream whose first event has a misshapen %s is a 502 naming it: %s %s"
                  % (field, st, events))
            # Bad after a good event the client already has: an error event, no [DONE].
            up.script = lambda text: [(chunk("Hello"), 0.4), (bad, 0), (chunk("more"), 0),
                                      ("[DONE]", 0)]
            st, events, done, said, errors = stream_chat(g)
            check(st == 200 and said == "Hello" and not done and len(errors) == 1
                  and errors[0]["code"] == "upstream_invalid"
                  and ("'%s'" % field) in errors[0]["message"],
                  "a stream turning misshapen at %s ends with an error event naming it and no "
                  "[DONE]: %s %s %s" % (field, st, done, events))
        for script, what in [
                (lambda text: [(chunk("Hello"), 0.4), ("not json", 0), ("[DONE]", 0)],
                 "event 2 is not a JSON object"),
                (lambda text: [(chunk("Hello"), 0.4), (chunk(" there"), 0)], "[DONE]")]:
            up.script = script
            st, events, done, said, errors = stream_chat(g)
            check(st == 200 and not done and said.startswith("Hello") and len(errors) == 1
                  and what in errors[0]["message"],
                  "a stream with %r ends with one error event and no [DONE]: %s" % (what, events))
        up.script = lambda text: [("not json", 0), ("[DONE]", 0)]
        st, events, done, said, errors = stream_chat(g)
        check(st == 502 and "event 1 is not a JSON object" in events[0]["error"]["message"],
              "a stream whose first event is not JSON is a 502: %s %s" % (st, events))
        # What the API allows passes: tool calls arriving in pieces, a role-only delta, the
        # usage chunk without choices, the cloud's own error event.
        up.script = lambda text: [
            (chunk(role="assistant"), 0), (chunk(None, tool_calls=[json.loads(call)]), 0),
            (chunk(None, tool_calls=[{"index": 0, "function": {"arguments": '{"x"'}}]), 0),
            (chunk(None, tool_calls=[{"index": 0, "function": {"arguments": ': 1}'}}]), 0),
            (json.dumps({"id": "x", "choices": [], "usage": {"total_tokens": 3}}), 0),
            ("[DONE]", 0)]
        st, events, done, said, errors = stream_chat(g)
        args = "".join(c["function"].get("arguments", "")
                       for calls in map(delta_member("tool_calls"), events) if calls
                       for c in calls)
        check(st == 200 and done and not errors and args == '{"x": 1}'
              and events[-1]["usage"]["total_tokens"] == 3,
              "a streamed tool call and a usage chunk pass: %s" % events)
        # A completions stream ends with a usage chunk without choices too (include_usage), the
        # one `edgellm serve` sends (found by fuzz_stream_restore).
        email = PII["EMAIL"]

        def completion_with_usage(text):
            start = text.index("[EMAIL_")
            return [(json.dumps({"id": "x", "object": "text_completion", "choices": [
                        {"index": 0, "text": "Mail " + text[start:start + 4],
                         "finish_reason": None}]}), 0.4),
                    (json.dumps({"id": "x", "object": "text_completion", "choices": [
                        {"index": 0, "text": text[start + 4:start + 9], "finish_reason": None}]}),
                     0),
                    (json.dumps({"id": "x", "object": "text_completion", "choices": [],
                                 "usage": {"total_tokens": 3}}), 0), ("[DONE]", 0)]
        up.script = completion_with_usage
        st, events, done, _ = g.stream("/v1/completions", {
            "prompt": "write to %s please" % email, "max_tokens": 4, "stream": True,
            "stream_options": {"include_usage": True}})
        said = "".join(ch.get("text", "") for ev in events for ch in ev.get("choices") or [])
        check(st == 200 and done and not any("error" in ev for ev in events)
              and said == "Mail " + email and events[-1].get("usage") == {"total_tokens": 3},
              "a completions stream's usage chunk without choices passes: %s" % events)
        # A placeholder held back when the stream breaks is dropped, never sent in part.

        def held_back(text):
            start = text.index("[EMAIL_")
            return [(chunk("Mail " + text[start:start + 4]), 0.4), (chunk(5), 0),
                    ("[DONE]", 0)]
        up.script = held_back
        st, events, done, said, errors = stream_chat(g, "write to %s please" % email)
        check(st == 200 and said == "Mail " and not done and len(errors) == 1,
              "a broken stream drops a held-back placeholder start: %r %s" % (said, events))
        up.script = None
        check(g.proc.poll() is None, "the gateway survives misshapen streams")
    finally:
        stop(g)
    # With fallback_on_malformed the edge answers a stream that is bad from its first event.
    g = start_gateway(up.port, "--route", "cloud", "--policy",
                      write_policy({"fallback_on_malformed": True}))
    try:
        up.script = lambda text: [(chunk(5), 0), ("[DONE]", 0)]
        st, events, done, said, errors = stream_chat(g)
        check(st == 200 and done and not errors,
              "fallback_on_malformed: the edge streams instead: %s %s" % (st, events))
        st, _, hdrs = g.request("POST", "/v1/chat/completions",
                                {"messages": [{"role": "user", "content": "hi"}],
                                 "max_tokens": 4, "stream": True})
        check(hdrs.get("x-edgellm-route") == "edge-fallback"
              and hdrs.get("x-edgellm-route-reason") == "cloud-malformed",
              "the fallback is named: %s" % hdrs)
        up.script = None
    finally:
        stop(g)
        up.stop()


# The members of a streamed chat delta the gateway restores across fragments, besides content and
# the tool calls: (the object holding it or None, its key).
STREAMED_MEMBERS = [(None, "refusal"), (None, "reasoning_content"), (None, "reasoning"),
                    ("function_call", "arguments"), ("audio", "transcript")]
# What a holder's first fragment carries besides the text.
HEAD_MEMBERS = {"function_call": ("name", "send"), "audio": ("id", "audio_1")}


def choice_events(events, index):
    """The choices of index, in the order the client got them."""
    return [ch for ev in events for ch in ev.get("choices") or [] if ch.get("index") == index]


def tool_fragments(choices):
    """(tool call index, fragment) for every tool-call fragment of a choice, in order."""
    return [(call.get("index"), call) for ch in choices
            for call in (ch.get("delta") or {}).get("tool_calls") or []]


def streamed_calls_intact(choices, one_after_another=True):
    """OpenAI's streamed tool-call shape: calls one after another (unless the cloud interleaved
    them), id/type/name only on a call's first fragment, nothing of the choice after its
    finish_reason."""
    seen, last = [], None
    for at, call in tool_fragments(choices):
        first = at not in seen
        if first:
            seen.append(at)
        elif at != last and one_after_another:
            return False
        has_head = "id" in call and "type" in call and "name" in call.get("function", {})
        has_any = "id" in call or "type" in call or "name" in call.get("function", {})
        if (first and not has_head) or (not first and has_any):
            return False
        last = at
    finished = [i for i, ch in enumerate(choices) if ch.get("finish_reason")]
    return len(finished) == 1 and finished[0] == len(choices) - 1


def member_text(choices, holder, key):
    """A streamed member of a choice's delta (holder: the object holding it, or None), as the
    client concatenates it."""
    text = ""
    for ch in choices:
        delta = ch.get("delta") or {}
        text += ((delta.get(holder) or {}) if holder else delta).get(key) or ""
    return text


def test_stream_restoration():
    """Every streamed text is restored across fragments: tool-call arguments per (choice, tool
    call) split at every byte and interleaved (a placeholder split where another call begins
    included), refusal, reasoning_content, reasoning and the deprecated function_call's
    arguments split at every byte, choice indexes beyond 16 and huge ones, a tail held back at
    the end of a choice or the stream; a cloud naming more choices and tool calls than the
    gateway restores gets a 502 (or an error event) naming the bound. A whole answer restores
    the same members."""
    up = Upstream()
    g = start_gateway(up.port, "--route", "cloud")
    email, phone = PII["EMAIL"], PII["PHONE"]
    user = "mail %s or call %s" % (email, phone)
    template = '{"to": "[EMAIL_1]", "call": "[PHONE_1]"}'
    wanted = template.replace("[EMAIL_1]", email).replace("[PHONE_1]", phone)

    def head(k, arguments=""):
        return {"index": k, "id": "call_%d" % k, "type": "function",
                "function": {"name": "send", "arguments": arguments}}

    def args(k, arguments):
        return {"index": k, "function": {"arguments": arguments}}

    def event(index, finish=None, **delta):
        return (json.dumps({"id": "x", "object": "chat.completion.chunk", "created": 1,
                            "model": "m", "choices": [{"index": index, "delta": delta,
                                                       "finish_reason": finish}]}), 0)

    said = "Mail [EMAIL_1] now [EMAI"
    said_restored = "Mail %s now [EMAI" % email

    def split_everywhere(text):
        placeholders = "[EMAIL_1]" in text and "[PHONE_1]" in text
        check(placeholders, "the cloud got placeholders: %r" % text)
        out = [event(0, role="assistant", content=None)]
        for k in range(len(template) + 1):
            # Tool call k: its arguments split at byte k.
            out.append(event(0, tool_calls=[head(k)]))
            out.append(event(0, tool_calls=[args(k, template[:k])]))
            out.append(event(0, tool_calls=[args(k, template[k:])]))
        out.append(event(0, "tool_calls"))
        # Choice 51: a placeholder split exactly where another call begins, the first call
        # going on after it (against OpenAI's order).
        out += [event(51, tool_calls=[head(0, "to [EMA")]), event(51, tool_calls=[head(1, "[P")]),
                event(51, tool_calls=[args(0, "IL_1]")]), event(51, tool_calls=[args(1, "HONE_1]")]),
                event(51, "tool_calls")]
        # Choice 52: a call whose arguments end with what could start a placeholder, then one
        # more call: the tail goes out when the choice ends, naming its call.
        out += [event(52, tool_calls=[head(0, "see [EM")]),
                event(52, tool_calls=[head(1, "[PHONE_1]")]), event(52, "tool_calls")]
        # The other members a cloud streams in pieces, each split at every byte in a choice of
        # its own (the last piece's tail held back at the choice's end).
        for m, (holder, key) in enumerate(STREAMED_MEMBERS):
            for k in range(len(said) + 1):
                c = 100 * (m + 1) + k

                def piece(text, head=False):
                    if not holder:
                        return {key: text}
                    return {holder: dict([HEAD_MEMBERS[holder]] if head else [], **{key: text})}
                out += [event(c, **piece(said[:k], head=True)), event(c, **piece(said[k:])),
                        event(c, "stop")]
        # Choices 1..40 (beyond the old 16): the content split at a different byte each, the
        # last fragment held back at the end of the choice; one finishing in its own event.
        for c in range(1, 41):
            k = c % (len(said) + 1)
            out.append(event(c, content=said[:k]))
            out.append(event(c, content=said[k:]) if c % 2 else event(c, "stop", content=said[k:]))
            if c % 2:
                out.append(event(c, "stop"))
        # Choice 50: two tool calls begun, then their arguments interleaved byte by byte.
        out += [event(50, tool_calls=[head(0)]), event(50, tool_calls=[head(1)])]
        for byte in template:
            out += [event(50, tool_calls=[args(0, byte)]), event(50, tool_calls=[args(1, byte)])]
        out.append(event(50, "tool_calls"))
        # Huge choice indexes and one 1-byte fragment at a time.
        for c in (2 ** 40, 2 ** 63 - 1):
            for byte in "[PHONE_1]!":
                out.append(event(c, content=byte))
            out.append(event(c, "stop"))
        out.append(("[DONE]", 0))
        return out

    try:
        up.script = split_everywhere
        st, events, done, _, errors = stream_chat(g, user)
        check(st == 200 and done and not errors, "a split stream passes: %s %s" % (st, errors))
        choices = choice_events(events, 0)
        frags = tool_fragments(choices)
        n = len(template) + 1
        got = ["".join(f["function"].get("arguments", "") for at, f in frags if at == k)
               for k in range(n)]
        bad = [k for k in range(n) if got[k] != wanted]
        check(not bad, "tool-call arguments split at every byte are restored (wrong at %s: %r)"
              % (bad[:3], [got[k] for k in bad[:3]]))
        check(streamed_calls_intact(choices),
              "the streamed tool-call shape is intact: %s" % choices[-4:])
        for c, what in [(51, "split where another call begins"), (52, "held back")]:
            cs = choice_events(events, c)
            got = ["".join(f["function"].get("arguments", "") for at, f in tool_fragments(cs)
                           if at == k) for k in (0, 1)]
            want = ["to " + email, phone] if c == 51 else ["see [EM", phone]
            check(got == want and streamed_calls_intact(cs, one_after_another=False),
                  "a placeholder %s: %r (%s)" % (what, got, cs))
        for m, (holder, key) in enumerate(STREAMED_MEMBERS):
            wrong = []
            for k in range(len(said) + 1):
                cs = choice_events(events, 100 * (m + 1) + k)
                text = member_text(cs, holder, key)
                # The holder's head member (a name, an id) on its first fragment only.
                heads = [ch["delta"][holder].get(HEAD_MEMBERS[holder][0]) for ch in cs
                         if holder and holder in ch.get("delta", {})]
                if (text != said_restored or not streamed_calls_intact(cs)
                        or (holder and heads[:1] != [HEAD_MEMBERS[holder][1]])
                        or any(heads[1:])):
                    wrong.append((k, text, cs))
            check(not wrong, "%s split at every byte is restored (wrong at %s)"
                  % (key if not holder else holder + "." + key, wrong[:2]))
        wrong = []
        for c in range(1, 41):
            cs = choice_events(events, c)
            text = "".join((ch.get("delta") or {}).get("content") or "" for ch in cs)
            if text != said_restored or not streamed_calls_intact(cs):
                wrong.append((c, text, cs[-2:]))
        check(not wrong, "40 choices restored, each finish last: %s" % wrong[:2])
        frags = tool_fragments(choice_events(events, 50))
        got = ["".join(f["function"].get("arguments", "") for at, f in frags if at == k)
               for k in (0, 1)]
        check(got == [wanted, wanted], "interleaved tool calls are restored: %s" % got)
        for c in (2 ** 40, 2 ** 63 - 1):
            cs = choice_events(events, c)
            text = "".join((ch.get("delta") or {}).get("content") or "" for ch in cs)
            check(text == phone + "!" and streamed_calls_intact(cs),
                  "choice index %d restored from 1-byte fragments: %r" % (c, text))

        # More texts than the gateway restores: a 502 before the client got anything...
        many = json.dumps({"id": "x", "choices": [{"index": c, "delta": {"content": "a"}}
                                                  for c in range(10000)]})
        up.script = lambda text: [(many, 0), ("[DONE]", 0)]
        st, events, done, _, _ = stream_chat(g, user)
        check(st == 502 and "more than 4096" in events[0]["error"]["message"],
              "10 000 choices are a 502 naming the bound: %s %s" % (st, str(events)[:300]))
        # ... an error event after it (tool calls count too).
        calls = [args(k, "x") for k in range(5000)]
        up.script = lambda text: [(chunk("Hello"), 0.4), event(0, tool_calls=calls),
                                  ("[DONE]", 0)]
        st, events, done, said, errors = stream_chat(g, user)
        check(st == 200 and not done and len(errors) == 1
              and "more than 4096" in errors[0]["message"],
              "5 000 tool calls end the stream with an error event: %s %s"
              % (st, str(events)[-300:]))
        # Indexes that are not positions are misshapen.
        for bad_index, field in [(-1, "choices[0].index"),
                                 ("x", "choices[0].delta.tool_calls[0].index")]:
            ev = (json.dumps({"choices": [{"index": bad_index, "delta": {}}]})
                  if bad_index == -1 else event(0, tool_calls=[args(bad_index, "x")])[0])
            up.script = lambda text: [(ev, 0), ("[DONE]", 0)]
            st, events, _, _, _ = stream_chat(g, user)
            check(st == 502 and ("'%s'" % field) in events[0]["error"]["message"],
                  "an index %r is a 502 naming %s: %s %s" % (bad_index, field, st, events))
        up.script = None
        check(g.proc.poll() is None, "the gateway survives the hostile streams")

        # A whole answer restores the same members (its walk restores every string of it).
        def whole(answer):
            text = answer["choices"][0]["message"]["content"]
            answer["choices"][0]["message"] = {
                "role": "assistant", "content": None, "refusal": text,
                "reasoning_content": text, "reasoning": text,
                "function_call": {"name": "send", "arguments": json.dumps({"to": text})},
                "audio": {"id": "audio_1", "data": "", "transcript": text}}
        up.reshape = whole
        st, resp, _ = g.request("POST", "/v1/chat/completions",
                                {"messages": [{"role": "user", "content": user}],
                                 "max_tokens": 4})
        message = resp.get("choices", [{}])[0].get("message", {})
        said_back = "You said: " + user
        check(st == 200 and all(message.get(k) == said_back
                                for k in ("refusal", "reasoning_content", "reasoning"))
              and json.loads(message["function_call"]["arguments"]) == {"to": said_back}
              and message["audio"]["transcript"] == said_back,
              "a whole answer's refusal, reasoning, function_call and audio are restored: %s %s"
              % (st, message))
        up.reshape = None
    finally:
        stop(g)
        up.stop()


def main():
    test_stream_shapes()
    test_stream_restoration()
    up = Upstream()
    try:
        test_pii_and_routes(up)
        test_routing(up)
        test_classify_and_intents(up)
        test_cascade(up)
        test_cloud_url(up)
    finally:
        up.stop()
    test_offline()
    print("gateway: %d checks, %d failed" % (ts.checks, len(ts.failures)))
    sys.exit(1 if ts.failures else 0)


if __name__ == "__main__":
    main()
