#!/usr/bin/env python3
"""Speculative edge-cloud decoding in `edgellm gateway --speculative K`, over real HTTP: the edge
is a Q4_0 copy of the aidreams model made with `edgellm quantize`, the cloud a second process
(`edgellm serve` on the F32 model). Greedy output through the gateway equals the cloud's own
greedy output for the 7 prompts of greedy.tsv (completions, chat, streamed), with the
acceptance rate reported in the answer and /metrics; sampled output follows the cloud's
distribution; a cloud with another vocabulary or without /tokenize is refused at start-up;
malformed verification answers are 502s (or the edge's answer when the cloud is down), never a
crash or hang. Standard library only."""
import collections
import http.server
import json
import math
import os
import socketserver
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "server"))
import test_server as ts  # noqa: E402
import test_gateway as tg  # noqa: E402

check = ts.check


def greedy_prompts():
    rows = []
    for line in open(os.path.join(ts.SHARED, "testdata", "aidreams", "greedy.tsv"),
                     encoding="utf-8"):
        if line.startswith("#"):
            continue
        prompt, _, _, text = line.rstrip("\n").split("\t")
        rows.append((prompt, text.replace("\\n", "\n").replace("\\t", "\t")))
    return rows


def completion(server, body, path="/v1/completions"):
    st, resp, hdrs = server.request("POST", path, body)
    return st, resp, hdrs


class FakeCloud:
    """A cloud whose /tokenize and /v1/completions answers the test chooses. /tokenize is the
    real cloud's unless mode says otherwise; completions are relayed to the real cloud and then
    broken as mode says."""

    def __init__(self, real_port):
        self.mode = "ok"
        self.prompts = []  # the token-id prompts of the verification calls
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def reply(self, status, payload):
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def real(self, raw):
                req = urllib.request.Request("http://127.0.0.1:%d%s" % (real_port, self.path),
                                             raw, {"Content-Type": "application/json"})
                return json.load(urllib.request.urlopen(req))

            def do_GET(self):
                self.reply(200, {"object": "list", "data": [{"id": "cloud"}]})

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path == "/tokenize":
                    if fake.mode == "no-tokenize":
                        return self.reply(404, {"error": {"message": "not found"}})
                    answer = self.real(raw)
                    if fake.mode == "other-tokenizer":
                        answer["tokens"] = [t + 1 for t in answer["tokens"]]
                    return self.reply(200, answer)
                if fake.mode == "garbage":
                    return self.reply(200, b"{not json")
                if fake.mode == "500":
                    return self.reply(500, {"error": {"message": "overloaded"}})
                fake.prompts.append(json.loads(raw).get("prompt"))
                answer = self.real(raw)
                lp = answer["choices"][0]["logprobs"]
                if fake.mode == "no-logprobs":
                    answer["choices"][0]["logprobs"] = None
                elif fake.mode == "short":
                    for k in ("tokens", "token_logprobs", "top_logprobs"):
                        lp[k] = lp[k][:-3]
                elif fake.mode == "bad-top":
                    lp["top_logprobs"] = ["x"] * len(lp["top_logprobs"])
                self.reply(200, answer)

        class Srv(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.httpd = Srv(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def refused(cloud_port, model, want):
    """The gateway must exit 2 at start-up with one line containing want."""
    p = subprocess.run([ts.EDGELLM, "gateway", "-m", model, "--port", "0", "--speculative", "4",
                        "--cloud-url", "http://127.0.0.1:%d/v1" % cloud_port],
                       capture_output=True, text=True, timeout=60)
    check(p.returncode == 2 and want in p.stderr,
          "start-up refused (%s): rc %s, %r" % (want, p.returncode, p.stderr[-300:]))


def test_greedy(g, cloud):
    total_drafted = total_accepted = 0
    for prompt, reference in greedy_prompts():
        body = {"prompt": prompt, "max_tokens": 48, "temperature": 0}
        st, mine, hdrs = completion(g, body)
        st2, theirs, _ = completion(cloud, body)
        ok = st == 200 and st2 == 200
        check(ok and mine["choices"][0]["text"] == theirs["choices"][0]["text"],
              "greedy through the gateway equals the cloud's own for %r" % prompt)
        check(ok and theirs["choices"][0]["text"] == reference,
              "the cloud's greedy text is greedy.tsv's for %r" % prompt)
        check(hdrs.get("x-edgellm-route") == "speculative", "route header: %s" % hdrs)
        spec = (mine or {}).get("edgellm", {}).get("speculative", {}) if ok else {}
        check(spec.get("cloud_calls", 99) < 48 and spec.get("cloud_calls", 0) >= 1,
              "fewer cloud calls than tokens: %s" % spec)
        check(0 <= spec.get("accepted", -1) <= spec.get("drafted", -1) and
              abs(spec.get("acceptance_rate", -1) - spec["accepted"] / max(spec["drafted"], 1))
              < 1e-9, "consistent stats: %s" % spec)
        total_drafted += spec.get("drafted", 0)
        total_accepted += spec.get("accepted", 0)
    rate = total_accepted / max(total_drafted, 1)
    print("speculative: Q4_0 edge, F32 cloud, K=4: acceptance %.3f (%d of %d drafted)"
          % (rate, total_accepted, total_drafted))
    check(rate > 0.5, "most drafts of a Q4_0 copy are accepted: %.3f" % rate)
    check(tg.metric(g, "edgellm_gateway_speculative_accepted_total") == total_accepted,
          "/metrics counts the accepted drafts")
    check(tg.metric(g, "edgellm_gateway_speculative_drafted_total") == total_drafted,
          "/metrics counts the drafts")
    st, text, _ = g.request("GET", "/metrics")
    check('edgellm_gateway_requests_total{route="speculative"} 7' in text,
          "/metrics counts the speculative route")


def test_stream_and_chat(g, cloud):
    prompt = greedy_prompts()[2][0]
    body = {"prompt": prompt, "max_tokens": 40, "temperature": 0}
    st, streamed, done = tg.stream_text(g, "/v1/completions", dict(body, stream=True), {})
    _, whole, _ = completion(cloud, body)
    check(st == 200 and done and streamed == whole["choices"][0]["text"],
          "streamed speculative text equals the cloud's: %r" % streamed[:40])
    st, events, done, _ = g.stream("/v1/completions", dict(body, stream=True))
    check(len(events) > 2 and "speculative" in events[-1].get("edgellm", {}),
          "a stream comes in several chunks, the last with the stats")
    chat = {"messages": [{"role": "user", "content": "The machine"}], "max_tokens": 24,
            "temperature": 0}
    st, mine, hdrs = completion(g, chat, "/v1/chat/completions")
    _, theirs, _ = completion(cloud, chat, "/v1/chat/completions")
    check(st == 200 and mine["choices"][0]["message"]["content"] ==
          theirs["choices"][0]["message"]["content"] and
          hdrs.get("x-edgellm-route") == "speculative",
          "chat greedy through the gateway equals the cloud's own")
    # Features one scoring call cannot verify go to the cloud as they are.
    st, resp, hdrs = completion(g, dict(body, logprobs=2))
    check(st == 200 and hdrs.get("x-edgellm-route") == "cloud",
          "logprobs requests are relayed, not drafted: %s" % hdrs)


def test_sampled(g, cloud):
    """g drafts with random weights, so almost every draft is rejected: the answer's
    distribution is then the residual rule's doing, and a rule that kept drafts it should not
    would show the edge's near-uniform guesses."""
    prompt, reference = greedy_prompts()[0]
    st, r, _ = completion(g, {"prompt": prompt, "max_tokens": 48, "temperature": 0})
    check(st == 200 and r["choices"][0]["text"] == reference,
          "greedy equals the cloud's even when no draft is accepted")
    prompt = "The machine"
    _, ref, _ = completion(cloud, {"prompt": prompt, "max_tokens": 1, "logprobs": 20,
                                   "temperature": 0})
    top = ref["choices"][0]["logprobs"]["top_logprobs"][0]
    body = {"prompt": prompt, "max_tokens": 4, "temperature": 1.0, "seed": 7}
    _, a, _ = completion(g, body)
    _, b, _ = completion(g, body)
    check(a["choices"][0]["text"] == b["choices"][0]["text"], "a seed reproduces sampled text")
    # The first token's frequency over seeds against the cloud's probabilities: drafts from a
    # different (quantized) model must not move it.
    n = 250
    counts = collections.Counter()
    for seed in range(n):
        _, r, _ = completion(g, dict(body, seed=seed))
        text = r["choices"][0]["text"]
        counts[max((k for k in top if text.startswith(k)), key=len, default=None)] += 1
    # Keys that are prefixes of others (" " of " hum") make the bucketing coarse; compare only
    # tokens no other top key starts with.
    clean = [k for k in top if not any(o != k and o.startswith(k) for o in top)]
    tv = 0.5 * sum(abs(counts[k] / n - math.exp(top[k])) for k in clean)
    print("speculative sampling: total variation %.3f over %d samples" % (tv, n))
    check(tv < 0.12, "sampled first tokens follow the cloud's distribution: TV %.3f" % tv)


def test_malformed(cloud, edge):
    fake = FakeCloud(cloud.port)
    try:
        g = tg.start_gateway(fake.port, "--route", "cloud", "--speculative", "4", "--retries",
                             "0", model=edge)
        try:
            # Drafts are token ids of the redacted text: personal data leaves no more than
            # with plain cloud calls.
            fake.prompts.clear()
            st, r, hdrs = completion(g, {"prompt": "I dreamed of jane.doe@example.com",
                                         "max_tokens": 6, "temperature": 0})
            sent = ""
            if fake.prompts:
                req = urllib.request.Request(
                    "http://127.0.0.1:%d/detokenize" % cloud.port,
                    json.dumps({"tokens": fake.prompts[0]}).encode(),
                    {"Content-Type": "application/json"})
                sent = json.load(urllib.request.urlopen(req)).get("content", "")
            check(st == 200 and hdrs.get("x-edgellm-route") == "speculative" and
                  "[EMAIL_1]" in sent and "jane.doe" not in sent,
                  "speculative prompts are redacted before they are tokenized: %r" % sent)
            body = {"prompt": "I dreamed", "max_tokens": 12, "temperature": 0}
            for mode, words in (("garbage", "not a JSON object"),
                                ("no-logprobs", "logprobs"),
                                ("short", "tokens"),
                                ("bad-top", "log-probability")):
                fake.mode = mode
                t0 = time.time()
                st, resp, hdrs = completion(g, body)
                msg = (resp or {}).get("error", {}).get("message", "") if isinstance(resp, dict) \
                    else ""
                check(st == 502 and words in msg and time.time() - t0 < 10,
                      "%s verification answer -> 502 naming it: %s %r" % (mode, st, msg))
            fake.mode = "500"
            st, resp, hdrs = completion(g, body)
            check(st == 200 and hdrs.get("x-edgellm-route") == "edge-fallback",
                  "a cloud answering 500 falls back to the edge: %s %s" % (st, hdrs))
            check(g.request("GET", "/health")[0] == 200, "the gateway is alive after all that")
        finally:
            tg.stop(g)
        fake.mode = "other-tokenizer"
        refused(fake.port, edge, "tokenizes differently")
        fake.mode = "no-tokenize"
        refused(fake.port, edge, "no POST /tokenize")
    finally:
        fake.stop()


def main():
    edge = os.path.join(ts.TMP, "aidreams-q4_0.gguf")
    subprocess.run([ts.EDGELLM, "quantize", ts.MODEL, edge, "q4_0"], check=True,
                   capture_output=True)
    cloud = ts.Server(ts.MODEL, "--threads", "2")
    try:
        g = tg.start_gateway(cloud.port, "--route", "cloud", "--speculative", "4", model=edge)
        try:
            test_greedy(g, cloud)
            test_stream_and_chat(g, cloud)
        finally:
            tg.stop(g)
        random_edge = os.path.join(ts.TMP, "aidreams-vocab-random.gguf")
        subprocess.run([ts.EDGELLM, "synth", "--dims", "64,2,4,4,172", "--vocab", ts.MODEL,
                        "-o", random_edge, "--ctx", "128", "--seed", "3"], check=True,
                       capture_output=True)
        g = tg.start_gateway(cloud.port, "--route", "cloud", "--speculative", "4",
                             model=random_edge)
        try:
            test_sampled(g, cloud)
        finally:
            tg.stop(g)
        test_malformed(cloud, edge)
    finally:
        cloud.stop()
    # A cloud serving another vocabulary (the Llama 2 one) is refused.
    other = ts.Server(os.path.join(ts.SHARED, "models", "llama2-vocab-tiny-f16.gguf"))
    try:
        refused(other.port, edge, "tokenizes differently")
    finally:
        other.stop()
    print("gateway_speculative: %d checks, %d failed" % (ts.checks, len(ts.failures)))
    sys.exit(1 if ts.failures else 0)


if __name__ == "__main__":
    main()
