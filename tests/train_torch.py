"""The training graph's loss and gradients against PyTorch autograd (in float64) on the same tiny
llama model, tied and separate output heads. Usage: train_torch.py TRAIN_DUMP TMP_DIR
(bench/train_vs_torch.py imports loss_of from here: one PyTorch model for test and benchmark)"""
import os
import struct
import subprocess
import sys

import torch


def read(path):
    with open(path, "rb") as f:
        data = f.read()
    vocab, embd, layers, heads, kv, ff, n_seq, n_ctx, tied = struct.unpack_from("<9i", data, 0)
    eps, base = struct.unpack_from("<2f", data, 36)
    off = 44
    n = n_seq * n_ctx
    tok = torch.tensor(struct.unpack_from(f"<{n}i", data, off)).view(n_seq, n_ctx)
    off += 4 * n
    tgt = torch.tensor(struct.unpack_from(f"<{n}i", data, off)).view(n_seq, n_ctx)
    off += 4 * n
    hd = embd // heads
    shapes = [("token_embd", (vocab, embd)), ("output_norm", (embd,))]
    if not tied:
        shapes.append(("output", (vocab, embd)))
    for il in range(layers):
        shapes += [(f"{il}.attn_norm", (embd,)), (f"{il}.wq", (heads * hd, embd)),
                   (f"{il}.wk", (kv * hd, embd)), (f"{il}.wv", (kv * hd, embd)),
                   (f"{il}.wo", (embd, heads * hd)), (f"{il}.ffn_norm", (embd,)),
                   (f"{il}.gate", (ff, embd)), (f"{il}.up", (ff, embd)),
                   (f"{il}.down", (embd, ff))]
    total = sum(torch.Size(s).numel() for _, s in shapes)
    flat = torch.tensor(struct.unpack_from(f"<{total}f", data, off), dtype=torch.float64)
    off += 4 * total
    (loss,) = struct.unpack_from("<d", data, off)
    off += 8
    grads = torch.tensor(struct.unpack_from(f"<{total}f", data, off), dtype=torch.float64)
    params, gparams, at = {}, {}, 0
    for name, shape in shapes:
        k = torch.Size(shape).numel()
        params[name] = flat[at:at + k].view(shape).clone().requires_grad_(True)
        gparams[name] = grads[at:at + k].view(shape)
        at += k
    dims = dict(vocab=vocab, embd=embd, layers=layers, heads=heads, kv=kv, hd=hd, eps=eps,
                base=base, tied=tied)
    return dims, tok, tgt, params, loss, gparams


def rms_norm(x, w, eps):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w


def rope(x, base):
    # x: [S, T, H, hd]; pairs (2i, 2i+1) rotated by pos * base^(-2i/hd)
    S, T, H, hd = x.shape
    inv = base ** (-torch.arange(0, hd, 2, dtype=x.dtype) / hd)
    ang = torch.arange(T, dtype=x.dtype)[:, None] * inv[None, :]
    c, s = torch.cos(ang)[None, :, None, :], torch.sin(ang)[None, :, None, :]
    a, b = x[..., 0::2], x[..., 1::2]
    out = torch.stack((a * c - b * s, a * s + b * c), dim=-1)
    return out.flatten(-2)


def loss_of(d, tok, tgt, P):
    """The mean next-token cross-entropy of the llama model with parameters P (dict by layout
    name) on tokens [S][T]; d holds the dimensions (heads, kv, hd, eps, base, layers, tied)."""
    S, T = tok.shape
    H, KV, hd = d["heads"], d["kv"], d["hd"]
    x = P["token_embd"][tok]
    mask = torch.full((T, T), float("-inf"), dtype=x.dtype).triu(1)
    for il in range(d["layers"]):
        h = rms_norm(x, P[f"{il}.attn_norm"], d["eps"])
        q = rope((h @ P[f"{il}.wq"].T).view(S, T, H, hd), d["base"])
        k = rope((h @ P[f"{il}.wk"].T).view(S, T, KV, hd), d["base"])
        v = (h @ P[f"{il}.wv"].T).view(S, T, KV, hd)
        k = k.repeat_interleave(H // KV, dim=2)
        v = v.repeat_interleave(H // KV, dim=2)
        att = (q.transpose(1, 2) @ k.transpose(1, 2).transpose(-1, -2)) / hd ** 0.5 + mask
        o = (att.softmax(-1) @ v.transpose(1, 2)).transpose(1, 2).reshape(S, T, H * hd)
        x = x + o @ P[f"{il}.wo"].T
        h = rms_norm(x, P[f"{il}.ffn_norm"], d["eps"])
        g = h @ P[f"{il}.gate"].T
        x = x + (torch.nn.functional.silu(g) * (h @ P[f"{il}.up"].T)) @ P[f"{il}.down"].T
    head = P["token_embd"] if d["tied"] else P["output"]
    logits = rms_norm(x, P["output_norm"], d["eps"]) @ head.T
    return torch.nn.functional.cross_entropy(logits.reshape(S * T, -1), tgt.reshape(-1))


def main(dump_exe, tmp):
    failures = 0
    for mode in ("tied", "separate"):
        path = os.path.join(tmp, f"train_torch_{mode}.bin")
        subprocess.run([dump_exe, mode, path], check=True)
        d, tok, tgt, P, c_loss, c_grads = read(path)
        ref = loss_of(d, tok, tgt, P)
        ref.backward()
        loss_err = abs(ref.item() - c_loss)
        worst, worst_name = 0.0, ""
        for name, p in P.items():
            err = ((p.grad - c_grads[name]).abs() / (1e-4 + p.grad.abs().max())).max().item()
            if err > worst:
                worst, worst_name = err, name
        print(f"{mode}: loss {c_loss:.6f} (torch {ref.item():.6f}), worst gradient error "
              f"{worst:.2e} of the tensor's largest ({worst_name})")
        if loss_err > 1e-5 * max(1.0, abs(ref.item())) or worst > 1e-4:
            failures += 1
            print(f"{mode}: FAILED", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
