#!/usr/bin/env python3
"""SIGTERM under load: while a long stream drains, every request that reaches `edgellm serve`
gets an HTTP answer. New connections (sending at once, or connecting first and sending later)
and a keep-alive connection opened before the signal all get 503 shutting_down with Retry-After
and Connection: close (/health: 503 "stopping"), none a reset or silence; the stream is cut at the
grace with an error event and [DONE]; the process exits 0 within the grace. Every step waits for
something the server shows (the stream's first event, /health saying "stopping"), never for a
fixed time. Standard library only."""
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_server as ts  # noqa: E402  (the server harness: Server, check)

check = ts.check
GRACE_S = 5

# (method, path, body): every kind of request a client may send while the server drains.
REQUESTS = [
    ("POST", "/v1/completions", {"prompt": "hello", "max_tokens": 8, "temperature": 0}),
    ("POST", "/v1/completions", {"prompt": "hello", "max_tokens": 8, "stream": True}),
    ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}],
                                      "max_tokens": 4}),
    ("POST", "/tokenize", {"content": "hello"}),
    ("GET", "/v1/models", None),
    ("GET", "/metrics", None),
    ("GET", "/health", None),
]


def request_bytes(method, path, body):
    data = json.dumps(body).encode() if body is not None else b""
    head = "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n" % (method, path)
    if body is not None:
        head += "Content-Type: application/json\r\nContent-Length: %d\r\n" % len(data)
    return (head + "\r\n").encode() + data


def read_answer(sock):
    """The HTTP answer on sock as (status, lower-cased headers, parsed body), or the reason there
    was none (a reset, the connection closed without a status line, a timeout)."""
    resp = http.client.HTTPResponse(sock)
    try:
        resp.begin()
        payload = resp.read()
    except (OSError, http.client.HTTPException) as e:
        return None, {}, "%s: %s" % (type(e).__name__, e)
    try:
        parsed = json.loads(payload)
    except ValueError:
        parsed = payload[:200]
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, parsed


def check_refusal(what, status, headers, body, path):
    if not check(status == 503, "%s: HTTP 503, not %s (%s)" % (what, status, body)):
        return
    check(headers.get("retry-after") == "1", "%s: Retry-After 1: %s" % (what, headers))
    check(headers.get("connection", "").lower() == "close",
          "%s: Connection: close: %s" % (what, headers))
    if path == "/health":
        check(body == {"status": "stopping"}, "%s: /health says stopping: %s" % (what, body))
        return
    err = body.get("error", {}) if isinstance(body, dict) else {}
    check(err.get("code") == "shutting_down" and err.get("type") == "server_unavailable" and
          "shutting down" in err.get("message", ""),
          "%s: OpenAI-shaped shutting_down error: %s" % (what, body))


def test_drain_answers_everyone(model):
    s = ts.Server(model, "--parallel", "1", "--ctx", "8192", "--threads", "2",
                  "--grace", str(GRACE_S))
    try:
        # A client that keeps its connection between requests, opened before the signal.
        kept = http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)
        kept.request("GET", "/health")
        first = kept.getresponse()
        first.read()
        check(first.status == 200, "keep-alive connection: /health 200 before the signal")

        streamer, out = s.start_long_stream()
        t_signal = time.time()
        s.proc.send_signal(signal.SIGTERM)
        # The drain has begun once /health says so (on the connection opened before it).
        status, body = None, None
        while status != 503 and s.proc.poll() is None and time.time() - t_signal < 30:
            kept.request("GET", "/health")
            resp = kept.getresponse()
            status, body = resp.status, resp.read()
            headers = {k.lower(): v for k, v in resp.getheaders()}
            if status != 503:
                time.sleep(0.01)
        check(status == 503 and json.loads(body) == {"status": "stopping"},
              "/health says stopping after SIGTERM: %s %s" % (status, body))
        check(headers.get("connection", "").lower() == "close",
              "the keep-alive /health answer during the drain closes the connection: %s" % headers)

        # New connections: some send their request at once, others connect first and send once
        # every connection is open (connected while the listening socket was not being served).
        waves = []
        for i in range(24):
            method, path, body = REQUESTS[i % len(REQUESTS)]
            sock = socket.create_connection(("127.0.0.1", s.port), timeout=30)
            sock.sendall(request_bytes(method, path, body))
            waves.append(("request %d (%s %s) sent at once" % (i, method, path), sock, path))
        idle = []
        for i in range(8):
            method, path, body = REQUESTS[i % len(REQUESTS)]
            idle.append((socket.create_connection(("127.0.0.1", s.port), timeout=30),
                         method, path, body))
        for i, (sock, method, path, body) in enumerate(idle):
            sock.sendall(request_bytes(method, path, body))
            waves.append(("request %d (%s %s) sent after connecting" % (i, method, path), sock,
                          path))
        check(streamer.is_alive(), "every request went out while the stream was draining")

        for what, sock, path in waves:
            status, headers, body = read_answer(sock)
            sock.close()
            check_refusal(what, status, headers, body, path)

        streamer.join(GRACE_S + 30)
        rc = s.proc.wait(30)
        elapsed = time.time() - t_signal
        check(rc == 0, "exit code 0 after SIGTERM: %s" % rc)
        check(elapsed < GRACE_S + 3, "stopped within the grace: %.1f s" % elapsed)
        print("server_shutdown: %d connections answered during the drain; exit %.2f s after "
              "SIGTERM (grace %d s)" % (len(waves), elapsed, GRACE_S))
        st, events, done, _ = out.get("r", (None, [], False, {}))
        check(st == 200 and done and events and "error" in events[-1],
              "the in-flight stream ends with an error event and [DONE] at the grace: status %s, "
              "[DONE] %s, %d events, last %s" % (st, done, len(events), events[-1:]))
        kept.close()
    finally:
        if s.proc.poll() is None:
            s.proc.kill()


def main():
    slow = os.path.join(ts.TMP, "slow.gguf")
    subprocess.run([ts.EDGELLM, "synth", "--dims", "512,8,8,8,1536", "--vocab",
                    os.path.join(ts.SHARED, "models", "llama2-vocab-tiny-f16.gguf"), "-o", slow,
                    "--type", "q8_0", "--ctx", "8192"], check=True, capture_output=True)
    test_drain_answers_everyone(slow)
    print("server_shutdown: %d checks, %d failed" % (ts.checks, len(ts.failures)))
    sys.exit(1 if ts.failures else 0)


if __name__ == "__main__":
    main()
