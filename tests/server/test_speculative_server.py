#!/usr/bin/env python3
"""Speculative decoding in `edgellm serve` over real HTTP: with a Q4_0 draft made at test time and
with prompt lookup, two slots decoding concurrent requests give the reference greedy text for the
7 prompts of greedy.tsv, streamed too; /metrics counts proposals, acceptances and passes; a seeded
sampled request is reproducible; constrained requests (response_format, streaming too) are
drafted under the grammar and give the greedy text of a server without proposals; a draft with
another vocabulary and contradictory options are refused.
Standard library only; the server harness is test_server.py's."""
import json
import os
import re
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_server as ts  # noqa: E402  (the harness: Server, check, MODEL, SHARED, TMP)

check = ts.check
N = 48


def reference_cases():
    cases = []
    for line in open(os.path.join(ts.SHARED, "testdata", "aidreams", "greedy.tsv"),
                     encoding="utf-8"):
        if line.startswith("#") or not line.strip():
            continue
        prompt, _, _, text = line.rstrip("\n").split("\t")
        cases.append((prompt, text.replace("\\n", "\n")))
    return cases


def metric(text, name):
    m = re.search(r"^%s (\S+)$" % re.escape(name), text, re.M)
    return float(m.group(1)) if m else None


def metrics(s):
    st, text, _ = s.request("GET", "/metrics")
    check(st == 200, "metrics status %s" % st)
    return {k: metric(text, k) for k in (
        "edgellm_draft_tokens_total", "edgellm_draft_accepted_tokens_total",
        "edgellm_target_passes_total", "edgellm_draft_acceptance_rate",
        "edgellm_generated_tokens_total")}


def test_greedy(s, cases, what):
    results = {}

    def worker(i, prompt):
        results[i] = s.request("POST", "/v1/completions",
                               {"prompt": prompt, "max_tokens": N, "temperature": 0})

    threads = [threading.Thread(target=worker, args=(i, p)) for i, (p, _) in enumerate(cases)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, (prompt, want) in enumerate(cases):
        st, body, _ = results[i]
        got = body["choices"][0]["text"] if st == 200 else body
        check(st == 200 and got == want,
              "%s: greedy text of %r: %r, reference %r" % (what, prompt, got, want))


SCHEMA = {"type": "object",
          "properties": {"name": {"type": "string", "maxLength": 12}, "n": {"type": "integer"},
                         "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3}},
          "required": ["name", "n", "tags"]}
FORMAT = {"type": "json_schema", "json_schema": {"name": "thing", "schema": SCHEMA}}


def constrained_texts(s, cases, stream=False):
    """Greedy completions of every prompt under FORMAT, sent concurrently: {prompt: text}."""
    results = {}

    def worker(prompt):
        body = {"prompt": prompt, "max_tokens": N, "temperature": 0, "response_format": FORMAT}
        if stream:
            st, events, done, _ = s.stream("/v1/completions", dict(body, stream=True))
            text = "".join(e["choices"][0]["text"] for e in events if e.get("choices"))
            results[prompt] = text if st == 200 and done else None
        else:
            st, resp, _ = s.request("POST", "/v1/completions", body)
            results[prompt] = resp["choices"][0]["text"] if st == 200 else None

    threads = [threading.Thread(target=worker, args=(p,)) for p, _ in cases]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_constrained(s, cases, what, reference):
    before = metrics(s)["edgellm_draft_tokens_total"]
    for stream in (False, True):
        got = constrained_texts(s, cases, stream)
        for prompt, _ in cases:
            check(got[prompt] is not None and got[prompt] == reference[prompt],
                  "%s: constrained greedy%s text of %r: %r, without proposals %r"
                  % (what, " streamed" if stream else "", prompt, got[prompt], reference[prompt]))
    check(metrics(s)["edgellm_draft_tokens_total"] > before,
          "%s: constrained requests get proposals" % what)
    # Plain streaming with proposals: the reference greedy text, chunk by chunk.
    prompt, want = cases[1]
    st, events, done, _ = s.stream("/v1/completions", {"prompt": prompt, "max_tokens": N,
                                                       "temperature": 0, "stream": True})
    text = "".join(e["choices"][0]["text"] for e in events if e.get("choices"))
    check(st == 200 and done and text == want,
          "%s: streamed greedy text %r, reference %r" % (what, text, want))
    # Sampling under the grammar with proposals: valid JSON with the required members.
    for seed in range(3):
        st, resp, _ = s.request("POST", "/v1/chat/completions",
                                {"messages": [{"role": "user", "content": "A thing?"}],
                                 "temperature": 1, "seed": seed, "max_tokens": 100,
                                 "response_format": FORMAT})
        try:
            value = json.loads(resp["choices"][0]["message"]["content"])
            ok = set(value) == {"name", "n", "tags"} and isinstance(value["n"], int)
        except (ValueError, KeyError, TypeError):
            ok = resp.get("choices", [{}])[0].get("finish_reason") == "length"
        check(st == 200 and ok, "%s: sampled chat under json_schema, seed %d: %r"
              % (what, seed, resp))


def test_server(cases, what, *opts, reference=None):
    s = ts.Server(ts.MODEL, "--parallel", "2", "--threads", "1", *opts)
    try:
        before = metrics(s)
        check(before["edgellm_draft_tokens_total"] == 0 and before["edgellm_target_passes_total"] == 0,
              "%s: speculative counters start at 0: %s" % (what, before))
        test_greedy(s, cases, what)
        after = metrics(s)
        proposed = after["edgellm_draft_tokens_total"]
        accepted = after["edgellm_draft_accepted_tokens_total"]
        passes = after["edgellm_target_passes_total"]
        generated = after["edgellm_generated_tokens_total"]
        print("%s: %d of %d proposals accepted, %d passes for %d tokens"
              % (what, accepted, proposed, passes, generated))
        check(proposed > 0 and 0 < accepted <= proposed,
              "%s: proposals counted: %s" % (what, after))
        check(abs(after["edgellm_draft_acceptance_rate"] - accepted / proposed) < 1e-3,
              "%s: acceptance rate is accepted / proposed: %s" % (what, after))
        # Each pass after the prompt's yields its accepted proposals and one token of its own.
        check(0 < passes < generated and passes + accepted <= generated,
              "%s: fewer passes than tokens: %s" % (what, after))
        # Sampling goes through the same rule: a seed reproduces the request.
        body = {"prompt": cases[0][0], "max_tokens": 24, "temperature": 0.8, "seed": 7}
        a = s.request("POST", "/v1/completions", body)
        b = s.request("POST", "/v1/completions", body)
        check(a[0] == 200 and b[0] == 200 and
              a[1]["choices"][0]["text"] == b[1]["choices"][0]["text"] and
              a[1]["usage"]["completion_tokens"] > 0,
              "%s: seeded sampling is reproducible: %s / %s" % (what, a[1], b[1]))
        test_constrained(s, cases, what, reference)
        check(s.stop() == 0, "%s: clean shutdown" % what)
    except Exception:
        s.proc.kill()
        raise
    return proposed, accepted


def refused(args, code, pattern, what):
    p = subprocess.run([ts.EDGELLM, "serve", "-m", ts.MODEL, "--port", "0"] + args,
                       capture_output=True, text=True, timeout=60)
    check(p.returncode == code and re.search(pattern, p.stderr) is not None
          and p.stderr.count("\n") <= 3,
          "%s: exit %d (want %d), stderr %r" % (what, p.returncode, code, p.stderr))


def main():
    cases = reference_cases()
    check(len(cases) == 7, "7 reference prompts")
    q4 = os.path.join(ts.TMP, "aidreams-q4_0.gguf")
    subprocess.run([ts.EDGELLM, "quantize", ts.MODEL, q4, "q4_0"], check=True,
                   capture_output=True)
    plain = ts.Server(ts.MODEL, "--parallel", "2", "--threads", "1")
    try:
        reference = constrained_texts(plain, cases)
        check(all(t and t.startswith("{") for t in reference.values()),
              "constrained greedy references: %s" % reference)
        check(plain.stop() == 0, "reference server: clean shutdown")
    except Exception:
        plain.proc.kill()
        raise
    proposed, accepted = test_server(cases, "draft q4_0", "--draft", q4, reference=reference)
    check(accepted < proposed, "the q4_0 draft gets some proposals rejected (the rollback runs)")
    test_server(cases, "lookup 2", "--lookup", "2", reference=reference)
    refused(["--draft", os.path.join(ts.SHARED, "models", "llama2-vocab-tiny-f16.gguf")], 1,
            r"--draft .* cannot be used: .*tokens", "draft with another vocabulary")
    refused(["--draft", q4, "--lookup", "2"], 2, r"either --draft or --lookup", "both sources")
    refused(["--draft-max", "4", "--draft-min", "5", "--lookup", "2"], 2,
            r"--draft-min \(5\) must not exceed --draft-max \(4\)", "draft-min above draft-max")
    refused(["--lookup", "0"], 2, r"--lookup", "lookup 0")
    print("%d checks, %d failures" % (ts.checks, len(ts.failures)))
    return 1 if ts.failures else 0


if __name__ == "__main__":
    sys.exit(main())
