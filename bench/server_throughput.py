#!/usr/bin/env python3
"""Aggregate decode throughput of `edgellm serve` with 1, 4 and 8 concurrent streams, and
time-to-first-token percentiles. A benchmark, not a test: run it on a quiet machine.

  bench/server_throughput.py EDGELLM MODEL [--tokens 64] [--streams 1,4,8] [--threads N]

Each level starts a fresh server with --parallel equal to the stream count, sends one warm-up
request, then starts all streams at once (distinct prompts, greedy, fixed max_tokens) and
measures generated tokens (from usage) over the wall time until the last stream ends."""
import argparse
import http.client
import json
import os
import statistics
import tempfile
import threading
import time

import serving  # bench/serving.py: the server start every benchmark uses


def start(edgellm, model, parallel, threads, tmp):
    return serving.start([edgellm, "serve", "-m", model, "--parallel", str(parallel),
                          "--threads", str(threads), "--ctx", "1024"], tmp)


def stream_once(port, prompt, tokens, out):
    t0 = time.perf_counter()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    body = {"prompt": prompt, "max_tokens": tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    c.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    ttft, usage, buf = None, None, b""
    while True:
        chunk = r.read1(65536)
        if not chunk:
            break
        buf += chunk
        while b"\n\n" in buf:
            ev, buf = buf.split(b"\n\n", 1)
            data = ev[6:]
            if data == b"[DONE]":
                continue
            j = json.loads(data)
            if j.get("usage"):
                usage = j["usage"]
            elif ttft is None and j["choices"] and j["choices"][0]["text"]:
                ttft = time.perf_counter() - t0
    out.append((ttft, usage["completion_tokens"] if usage else 0, time.perf_counter() - t0))


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("edgellm")
    ap.add_argument("model")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--streams", default="1,4,8")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp()
    print("| streams | aggregate tok/s | per-stream tok/s | TTFT p50 | TTFT p90 | TTFT p99 |")
    print("|---|---|---|---|---|---|")
    base = None
    for n in [int(x) for x in a.streams.split(",")]:
        proc, port = start(a.edgellm, a.model, n, a.threads, tmp)
        try:
            stream_once(port, "warm up", 4, [])
            results, wall = [], 0.0
            for rnd in range(a.rounds):
                out = []
                threads = [threading.Thread(target=stream_once,
                                            args=(port, "Story %d of round %d: once upon a time" % (i, rnd),
                                                  a.tokens, out)) for i in range(n)]
                t0 = time.perf_counter()
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                wall += time.perf_counter() - t0
                results += out
            total = sum(r[1] for r in results)
            agg = total / wall
            base = base or agg
            ttfts = [r[0] * 1000 for r in results if r[0] is not None]
            print("| %d | %.1f (x%.2f) | %.1f | %.0f ms | %.0f ms | %.0f ms |" % (
                n, agg, agg / base, statistics.mean(r[1] / r[2] for r in results),
                pct(ttfts, 50), pct(ttfts, 90), pct(ttfts, 99)))
        finally:
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    main()
