"""Training tokens/s of `edgellm train` against PyTorch (Debian's python3-torch) on the same llama
model, batch, sequence length and thread count, measured in the same run, and the peak memory of
edgellm per parameter.

usage: bench/train_vs_torch.py EDGELLM VOCAB.gguf CORPUS.txt [--dims E,L,H,K,F] [--ctx N]
       [--batch N] [--steps N] [-t N]
Both sides run the same number of AdamW steps on random windows; the first step of each is
excluded from the rate (allocation and warm-up)."""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

ap = argparse.ArgumentParser()
ap.add_argument("edgellm")
ap.add_argument("vocab")
ap.add_argument("corpus")
ap.add_argument("--dims", default="256,4,4,4,768")
ap.add_argument("--ctx", type=int, default=128)
ap.add_argument("--batch", type=int, default=8)
ap.add_argument("--steps", type=int, default=6)
ap.add_argument("-t", type=int, default=2)
a = ap.parse_args()
E, L, H, K, F = (int(x) for x in a.dims.split(","))

with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, "bench.gguf")
    run = subprocess.run([a.edgellm, "train", "-o", out, "--dims", a.dims, "--vocab", a.vocab,
                          "-f", a.corpus, "--ctx", str(a.ctx), "--batch", str(a.batch),
                          "--steps", str(a.steps), "-t", str(a.t), "--eval-split", "0"],
                         capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"edgellm train failed: {run.stderr.strip()}")
    # edgellm reports its own peak; Linux keeps the peak across exec, so edgellm runs before
    # this interpreter imports torch
    peak = re.search(r"peak memory ([0-9.]+) (KiB|MiB|GiB)", run.stderr)
    unit = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}[peak.group(2)]
    peak_bytes = float(peak.group(1)) * unit
    n_params = int(re.search(r"(\d+) parameters", run.stderr).group(1))
    # rate over steps 2..N from the CSV log (cumulative rate since the first step of the run)
    rows = open(out + ".csv").read().split("\n")[1:]
    rates = [float(r.split(",")[5]) for r in rows if r]
    ours = rates[-1]

import torch  # noqa: E402  (after the edgellm run: see above)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from train_torch import loss_of  # noqa: E402  the tests' PyTorch model

torch.set_num_threads(a.t)
torch.manual_seed(0)
# the vocabulary size follows from the parameter count of a tied model
per_layer = E + E * E + 2 * (E // H * K) * E + E * E + E + 3 * E * F
vocab_size = (n_params - E - L * per_layer) // E
hd = E // H
d = dict(vocab=vocab_size, embd=E, layers=L, heads=H, kv=K, hd=hd, eps=1e-5, base=10000.0,
         tied=True)
shapes = {"token_embd": (vocab_size, E), "output_norm": (E,)}
for il in range(L):
    shapes.update({f"{il}.attn_norm": (E,), f"{il}.wq": (E, E), f"{il}.wk": (K * hd, E),
                   f"{il}.wv": (K * hd, E), f"{il}.wo": (E, E), f"{il}.ffn_norm": (E,),
                   f"{il}.gate": (F, E), f"{il}.up": (F, E), f"{il}.down": (E, F)})
P = {n: (torch.randn(s) * 0.02 if len(s) == 2 else torch.ones(s)).requires_grad_(True)
     for n, s in shapes.items()}
opt = torch.optim.AdamW(P.values(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
t0 = None
for step in range(a.steps):
    if step == 1:
        t0 = time.perf_counter()
    tok = torch.randint(0, vocab_size, (a.batch, a.ctx + 1))
    loss = loss_of(d, tok[:, :-1], tok[:, 1:], P)
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(P.values(), 1.0)
    opt.step()
theirs = (a.steps - 1) * a.batch * a.ctx / (time.perf_counter() - t0)
print(f"model: {n_params} parameters (dims {a.dims}, vocab {vocab_size}), batch {a.batch} x "
      f"ctx {a.ctx}, {a.t} threads, {a.steps} steps")
print(f"edgellm: {ours:.0f} tok/s (whole run)   pytorch {torch.__version__}: {theirs:.0f} tok/s "
      f"(steps 2..)   ratio {ours / theirs:.2f}x")
print(f"edgellm peak RSS {peak_bytes / (1 << 20):.1f} MiB = {peak_bytes / n_params:.1f} bytes per "
      f"parameter (weights, gradients and two AdamW moments are 16; the rest is activations)")
