#!/usr/bin/env python3
"""Speculative edge-cloud decoding against plain cloud generation through `edgellm gateway`:
cloud calls per generated token, cloud forward passes (the cloud's decode steps or verification
passes) and end-to-end latency, with a simulated network delay before every cloud call
(--cloud-latency-ms, a gateway test knob). A benchmark, not a test: compare the ratios of one
run on a quiet machine.

  bench/gateway_speculative.py EDGELLM CLOUD_MODEL [--edge EDGE.gguf] [--k 4,8] \\
      [--latency-ms 50] [--tokens 48] [--repeat 3]

The edge defaults to a Q4_0 copy of CLOUD_MODEL made with `edgellm quantize`; the prompts are
greedy.tsv's (../shared). Every request is greedy, so both routes give the same text (checked)."""
import argparse
import http.client
import json
import os
import subprocess
import tempfile
import time

import serving  # bench/serving.py: the server start every benchmark uses

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.environ.get("SHARED", os.path.join(HERE, "..", "..", "shared"))


def start(argv, tmp):
    return serving.start(argv + ["--threads", "1"], tmp)


def post(port, body):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    c.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    return json.loads(r.read())


def prompts():
    out = []
    for line in open(os.path.join(SHARED, "testdata", "aidreams", "greedy.tsv"), encoding="utf-8"):
        if not line.startswith("#"):
            out.append(line.split("\t")[0])
    return out


def run(port, tokens, repeat):
    """Best-of-repeat wall time over all prompts, the texts, and the speculative counters."""
    best, texts, stats = None, [], {"drafted": 0, "accepted": 0, "cloud_calls": 0}
    for _ in range(repeat):
        texts, stats = [], {"drafted": 0, "accepted": 0, "cloud_calls": 0}
        t0 = time.perf_counter()
        for p in prompts():
            r = post(port, {"prompt": p, "max_tokens": tokens, "temperature": 0})
            texts.append(r["choices"][0]["text"])
            for k, v in r.get("edgellm", {}).get("speculative", {}).items():
                if k in stats:
                    stats[k] += v
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    return best, texts, stats


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("edgellm")
    ap.add_argument("cloud_model")
    ap.add_argument("--edge")
    ap.add_argument("--k", default="2,4,8")
    ap.add_argument("--latency-ms", type=float, default=50)
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="gw-spec-bench-")
    edge = a.edge
    if not edge:
        edge = os.path.join(tmp, "edge-q4_0.gguf")
        subprocess.run([a.edgellm, "quantize", a.cloud_model, edge, "q4_0"], check=True,
                       capture_output=True)
    procs = []
    try:
        cloud, cport = start([a.edgellm, "serve", "-m", a.cloud_model], tmp)
        procs.append(cloud)
        base = [a.edgellm, "gateway", "-m", edge, "--route", "cloud", "--pii", "off",
                "--cloud-url", "http://127.0.0.1:%d/v1" % cport,
                "--cloud-latency-ms", str(a.latency_ms)]
        n_prompts = len(prompts())
        n_tokens = n_prompts * a.tokens
        plain, pport = start(base, tmp)
        procs.append(plain)
        t_plain, ref, _ = run(pport, a.tokens, a.repeat)
        print("%d prompts x %d tokens, %.0f ms simulated delay per cloud call, edge %s"
              % (n_prompts, a.tokens, a.latency_ms, os.path.basename(edge)))
        print("%-16s %10s %12s %14s %12s %10s" % ("route", "calls/tok", "cloud passes",
                                                 "acceptance", "latency/req", "vs plain"))
        print("%-16s %10.3f %12d %14s %10.1f ms %10s" % ("cloud (plain)", n_prompts / n_tokens,
                                                       n_tokens, "-", 1000 * t_plain / n_prompts,
                                                       "1.00x"))
        for k in a.k.split(","):
            spec, sport = start(base + ["--speculative", k], tmp)
            procs.append(spec)
            t, texts, st = run(sport, a.tokens, a.repeat)
            if texts != ref:
                print("  (k=%s: texts differ from plain cloud generation!)" % k)
            rate = st["accepted"] / max(st["drafted"], 1)
            print("%-16s %10.3f %12d %13.1f%% %10.1f ms %9.2fx" % (
                "speculative K=" + k, st["cloud_calls"] / n_tokens, st["cloud_calls"],
                100 * rate, 1000 * t / n_prompts, t / t_plain))
            spec.terminate()
            spec.wait()
            procs.remove(spec)
        print("cloud passes: plain generation runs one decode step per token; speculative runs "
              "one verification pass per call (the drafts and the cloud's token at once).")
    finally:
        for p in procs:
            p.terminate()
            p.wait()


if __name__ == "__main__":
    main()
