#!/usr/bin/env python3
"""What sharing the prompt between the choices of one request saves: wall time of one request
with n choices (the prompt evaluated once, its KV cache copied to the other choices) against n
concurrent n=1 requests with the same prompt (each slot evaluates it), and one n=1 request. A
benchmark, not a test: run it on a quiet machine and compare the ratios of one run.

  bench/server_choices.py EDGELLM MODEL [--n 4] [--prompt-tokens 400] [--tokens 8] [--threads N]

Each measurement starts a fresh server (--parallel n, empty caches) and reports the best of
--repeat runs; every prompt differs from the previous run's so no slot cache helps."""
import argparse
import http.client
import json
import os
import tempfile
import threading
import time

import serving  # bench/serving.py: the server start every benchmark uses


def start(edgellm, model, parallel, threads, tmp):
    return serving.start([edgellm, "serve", "-m", model, "--parallel", str(parallel),
                          "--threads", str(threads), "--ctx", "1024", "--batch", "512"], tmp)


def post(port, body):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    c.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    data = json.loads(r.read())
    if r.status != 200:
        raise RuntimeError(data)
    return data


def prompt_ids(run, n_tokens):
    # Distinct ids per run (first token differs), all inside a 32000-token vocabulary.
    return [1] + [(1000 + 7919 * (run * n_tokens + i)) % 31000 + 500 for i in range(n_tokens - 1)]


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("edgellm")
    ap.add_argument("model")
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--prompt-tokens", type=int, default=400)
    ap.add_argument("--tokens", type=int, default=8)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-choices-")
    base = {"max_tokens": a.tokens, "temperature": 0.8, "seed": 1}
    results = {"one n=1 request": [], "one request, n=%d (shared prompt)" % a.n: [],
               "%d concurrent n=1 requests (prompt each)" % a.n: []}
    names = list(results)
    run = 0
    for _ in range(a.repeat):
        for name in names:
            proc, port = start(a.edgellm, a.model, a.n, a.threads, tmp)
            try:
                run += 1
                ids = prompt_ids(run, a.prompt_tokens)
                if name == names[0]:
                    results[name].append(timed(lambda: post(port, dict(base, prompt=ids))))
                elif name == names[1]:
                    results[name].append(timed(lambda: post(port, dict(base, prompt=ids, n=a.n))))
                else:
                    def many():
                        ts = [threading.Thread(target=post, args=(port, dict(base, prompt=ids, seed=i)))
                              for i in range(a.n)]
                        for t in ts:
                            t.start()
                        for t in ts:
                            t.join()
                    results[name].append(timed(many))
            finally:
                proc.terminate()
                proc.wait()
    ref = min(results[names[0]])
    print("prompt %d tokens, %d generated per choice, n=%d, %d threads"
          % (a.prompt_tokens, a.tokens, a.n, a.threads))
    for name in names:
        best = min(results[name])
        print("  %-42s %7.3f s  (%.2fx one request)" % (name, best, best / ref))


if __name__ == "__main__":
    main()
