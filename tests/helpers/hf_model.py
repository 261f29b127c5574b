#!/usr/bin/env python3
"""Small random-weight models in Hugging Face layout, and a naive reference forward pass.

  hf_model.py model ARCH DIR [--dtype bf16|f16|f32] [--shards N] [--no-reference]
                   [--vocab-size N] [--long-rope]
      writes DIR/config.json, DIR/model.safetensors (or N shards + index), DIR/tokens.txt (the
      token ids to evaluate) and DIR/reference.bin (float64 logits of every position, row-major)
  hf_model.py hostile KIND DIR
      writes a small llama checkpoint broken in one way (see HOSTILE)

The reference is written from the architectures' published definitions (the Hugging Face
modelling code's maths: RMSNorm, rotate-half RoPE on unpermuted Q/K rows, grouped-query
attention, masks, soft-capping, activations) in plain Python loops and double precision, with no
knowledge of GGUF layouts, so it checks the converter's permutations and renames as well as the
runtime's forward pass. Standard library only.
"""
import json
import math
import os
import random
import struct
import sys

# ---- numbers as the checkpoint stores them ----------------------------------------------------


def round_to(dtype, v):
    if dtype == "F32":
        return struct.unpack("<f", struct.pack("<f", v))[0]
    if dtype == "F16":
        return struct.unpack("<e", struct.pack("<e", v))[0]
    bits = struct.unpack("<I", struct.pack("<f", v))[0]  # BF16: round to nearest even
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return struct.unpack("<f", struct.pack("<I", bits))[0]


def encode(dtype, values):
    if isinstance(values, (bytes, bytearray)):
        return bytes(values)
    if dtype == "F32":
        return struct.pack("<%df" % len(values), *values)
    if dtype == "F16":
        return struct.pack("<%de" % len(values), *values)
    return b"".join(struct.pack("<I", v)[2:] for v in
                    (struct.unpack("<I", struct.pack("<f", x))[0] for x in values))


def write_safetensors(path, tensors, meta=None):
    """tensors: list of (name, dtype, shape, flat values already rounded)."""
    header, blobs, off = {}, [], 0
    if meta is not None:
        header["__metadata__"] = meta
    for name, dtype, shape, values in tensors:
        blob = encode(dtype, values)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(blob)]}
        blobs.append(blob)
        off += len(blob)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


# ---- model definitions ------------------------------------------------------------------------

BASE = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
            rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=False)

ARCHS = {
    "llama": dict(architectures=["LlamaForCausalLM"], hidden_act="silu",
                  rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                "high_freq_factor": 4.0,
                                "original_max_position_embeddings": 64}, rope_theta=500000.0),
    "mistral": dict(architectures=["MistralForCausalLM"], hidden_act="silu", sliding_window=5,
                    num_key_value_heads=1),
    "qwen2": dict(architectures=["Qwen2ForCausalLM"], hidden_act="silu", tie_word_embeddings=True,
                  use_sliding_window=False, sliding_window=128, rope_theta=1000000.0),
    "qwen3": dict(architectures=["Qwen3ForCausalLM"], hidden_act="silu", head_dim=16,
                  rope_theta=1000000.0, tie_word_embeddings=True),
    "gemma": dict(architectures=["GemmaForCausalLM"], hidden_act="gelu",
                  hidden_activation="gelu_pytorch_tanh", head_dim=16, num_key_value_heads=1),
    "gemma2": dict(architectures=["Gemma2ForCausalLM"], hidden_activation="gelu_pytorch_tanh",
                   head_dim=16, query_pre_attn_scalar=24, sliding_window=4,
                   attn_logit_softcapping=2.0, final_logit_softcapping=3.0,
                   num_hidden_layers=3),
    "gemma3": dict(architectures=["Gemma3ForCausalLM"], hidden_activation="gelu_pytorch_tanh",
                   head_dim=16, query_pre_attn_scalar=16, sliding_window=4,
                   sliding_window_pattern=6, rope_local_base_freq=10000.0,
                   rope_theta=1000000.0, rope_scaling={"rope_type": "linear", "factor": 8.0},
                   num_hidden_layers=7, final_logit_softcapping=None,
                   attn_logit_softcapping=None),
    "phi3": dict(architectures=["Phi3ForCausalLM"], hidden_act="silu", sliding_window=6,
                 partial_rotary_factor=0.5, max_position_embeddings=256,
                 original_max_position_embeddings=64),
}


def make_config(arch, vocab_size=None):
    cfg = dict(BASE)
    cfg.update(ARCHS[arch])
    if vocab_size:
        cfg["vocab_size"] = vocab_size
    if arch == "phi3":
        n_rot = int(cfg["hidden_size"] // cfg["num_attention_heads"] * cfg["partial_rotary_factor"])
        cfg["rope_scaling"] = {"type": "longrope",
                               "long_factor": [1.0 + 0.9 * i for i in range(n_rot // 2)],
                               "short_factor": [1.0 + 0.3 * i for i in range(n_rot // 2)]}
    return cfg


def head_dim(cfg):
    return cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]


def make_weights(arch, cfg, dtype, rng):
    """HF tensor name -> (shape, flat rounded values)."""
    E, F, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    hd, nh, nkv = head_dim(cfg), cfg["num_attention_heads"], cfg["num_key_value_heads"]
    gemma = arch.startswith("gemma")
    w = {}

    def mat(name, rows, cols, scale):
        if rows * cols > 1000000 and dtype == "BF16":
            # Real vocabularies make huge embeddings: random BF16 bytes of magnitude about
            # 2^-7..2^-6 (no reference is computed for these).
            raw = bytearray(rng.randbytes(2 * rows * cols))
            table = bytes((i & 0x80) | 0x3C for i in range(256))
            raw[1::2] = bytes(raw[1::2]).translate(table)
            w[name] = ([rows, cols], raw)
            return
        w[name] = ([rows, cols], [round_to(dtype, rng.uniform(-1, 1) * scale)
                                  for _ in range(rows * cols)])

    def vec(name, n, norm=True, scale=0.2):
        base = 0.0 if (gemma or not norm) else 1.0  # gemma stores w of a (1 + w) norm
        w[name] = ([n], [round_to(dtype, base + rng.uniform(-1, 1) * scale) for _ in range(n)])

    mat("model.embed_tokens.weight", V, E, 1.0)
    for l in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % l
        vec(p + "input_layernorm.weight", E)
        if arch == "phi3":
            mat(p + "self_attn.qkv_proj.weight", (nh + 2 * nkv) * hd, E, 0.3)
            mat(p + "mlp.gate_up_proj.weight", 2 * F, E, 0.3)
        else:
            mat(p + "self_attn.q_proj.weight", nh * hd, E, 0.3)
            mat(p + "self_attn.k_proj.weight", nkv * hd, E, 0.3)
            mat(p + "self_attn.v_proj.weight", nkv * hd, E, 0.3)
            mat(p + "mlp.gate_proj.weight", F, E, 0.3)
            mat(p + "mlp.up_proj.weight", F, E, 0.3)
        if arch == "qwen2":
            vec(p + "self_attn.q_proj.bias", nh * hd, norm=False, scale=0.5)
            vec(p + "self_attn.k_proj.bias", nkv * hd, norm=False, scale=0.5)
            vec(p + "self_attn.v_proj.bias", nkv * hd, norm=False, scale=0.5)
        if arch in ("qwen3", "gemma3"):
            vec(p + "self_attn.q_norm.weight", hd)
            vec(p + "self_attn.k_norm.weight", hd)
        mat(p + "self_attn.o_proj.weight", E, nh * hd, 0.3)
        mat(p + "mlp.down_proj.weight", E, F, 0.3)
        vec(p + "post_attention_layernorm.weight", E)
        if arch in ("gemma2", "gemma3"):
            vec(p + "pre_feedforward_layernorm.weight", E)
            vec(p + "post_feedforward_layernorm.weight", E)
    vec("model.norm.weight", E)
    if not cfg["tie_word_embeddings"] and not gemma:
        mat("lm_head.weight", V, E, 0.5)
    return w


# ---- the naive reference ----------------------------------------------------------------------


def matvec(m, x, bias=None):
    (rows, cols), data = m
    out = []
    for r in range(rows):
        s = 0.0
        base = r * cols
        for c in range(cols):
            s += data[base + c] * x[c]
        out.append(s + (bias[1][r] if bias else 0.0))
    return out


def rmsnorm(x, w, eps, gemma):
    scale = 1.0 / math.sqrt(sum(v * v for v in x) / len(x) + eps)
    return [v * scale * ((1.0 + g) if gemma else g) for v, g in zip(x, w[1])]


def gelu_tanh(x):
    return 0.5 * x * (1.0 + math.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def silu(x):
    return x / (1.0 + math.exp(-x))


LONG_ROPE = False


def inv_freqs(cfg, arch, n_rot, local):
    """Per-pair inverse frequencies and the cos/sin multiplier, as the HF rotary embeddings
    compute them."""
    base = cfg["rope_local_base_freq"] if local else cfg["rope_theta"]
    inv = [1.0 / base ** (2 * i / n_rot) for i in range(n_rot // 2)]
    rs = None if local else cfg.get("rope_scaling")
    mult = 1.0
    if rs and rs.get("rope_type", rs.get("type")) == "linear":
        inv = [f / rs["factor"] for f in inv]
    elif rs and rs.get("rope_type") == "llama3":
        old, lo, hi, fac = (rs["original_max_position_embeddings"], rs["low_freq_factor"],
                            rs["high_freq_factor"], rs["factor"])
        out = []
        for f in inv:
            wl = 2 * math.pi / f
            if wl < old / hi:
                out.append(f)
            elif wl > old / lo:
                out.append(f / fac)
            else:
                s = (old / wl - lo) / (hi - lo)
                out.append((1 - s) * f / fac + s * f)
        inv = out
    elif rs and rs.get("type") == "longrope":
        # The short factors apply within the original context, the long ones beyond it (here:
        # when the runtime's context is longer, as GGUF runtimes decide).
        key = "long_factor" if LONG_ROPE else "short_factor"
        inv = [f / e for f, e in zip(inv, rs[key])]
        scale = cfg["max_position_embeddings"] / cfg["original_max_position_embeddings"]
        mult = math.sqrt(1 + math.log(scale) / math.log(cfg["original_max_position_embeddings"]))
    return inv, mult


def rope(v, n_heads, hd, n_rot, pos, inv, mult):
    out = list(v)
    half = n_rot // 2
    for h in range(n_heads):
        b = h * hd
        for i in range(half):
            c, s = math.cos(pos * inv[i]) * mult, math.sin(pos * inv[i]) * mult
            x1, x2 = v[b + i], v[b + i + half]
            out[b + i] = x1 * c - x2 * s
            out[b + i + half] = x2 * c + x1 * s
    return out


def reference(arch, cfg, w, tokens):
    E, V, L = cfg["hidden_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
    hd, nh, nkv = head_dim(cfg), cfg["num_attention_heads"], cfg["num_key_value_heads"]
    eps = cfg["rms_norm_eps"]
    gemma = arch.startswith("gemma")
    n_rot = int(hd * cfg.get("partial_rotary_factor", 1.0))
    scaling = (cfg["query_pre_attn_scalar"] ** -0.5 if arch in ("gemma2", "gemma3")
               else hd ** -0.5)
    pattern = {"gemma2": 2, "gemma3": 6}.get(arch)

    def sliding(l):
        if pattern:
            return (l + 1) % pattern != 0
        return arch in ("mistral", "phi3")

    K = [[] for _ in range(L)]
    Vs = [[] for _ in range(L)]
    logits = []
    for t, tok in enumerate(tokens):
        x = list(w["model.embed_tokens.weight"][1][tok * E:(tok + 1) * E])
        if gemma:
            x = [v * math.sqrt(E) for v in x]
        for l in range(L):
            p = "model.layers.%d." % l
            h = rmsnorm(x, w[p + "input_layernorm.weight"], eps, gemma)
            if arch == "phi3":
                qkv = matvec(w[p + "self_attn.qkv_proj.weight"], h)
                q, k, v = qkv[:nh * hd], qkv[nh * hd:(nh + nkv) * hd], qkv[(nh + nkv) * hd:]
            else:
                b = arch == "qwen2"
                q = matvec(w[p + "self_attn.q_proj.weight"], h,
                           w[p + "self_attn.q_proj.bias"] if b else None)
                k = matvec(w[p + "self_attn.k_proj.weight"], h,
                           w[p + "self_attn.k_proj.bias"] if b else None)
                v = matvec(w[p + "self_attn.v_proj.weight"], h,
                           w[p + "self_attn.v_proj.bias"] if b else None)
            if arch in ("qwen3", "gemma3"):
                q = sum((rmsnorm(q[i * hd:(i + 1) * hd], w[p + "self_attn.q_norm.weight"], eps,
                                 gemma) for i in range(nh)), [])
                k = sum((rmsnorm(k[i * hd:(i + 1) * hd], w[p + "self_attn.k_norm.weight"], eps,
                                 gemma) for i in range(nkv)), [])
            local = arch == "gemma3" and sliding(l)
            inv, mult = inv_freqs(cfg, arch, n_rot, local)
            q = rope(q, nh, hd, n_rot, t, inv, mult)
            k = rope(k, nkv, hd, n_rot, t, inv, mult)
            K[l].append(k)
            Vs[l].append(v)
            win = cfg.get("sliding_window") if sliding(l) else None
            att = []
            for hh in range(nh):
                kh = hh // (nh // nkv)
                scores = {}
                for j in range(t + 1):
                    if win and t - j >= win:
                        continue  # outside the window: masked
                    s = sum(q[hh * hd + d] * K[l][j][kh * hd + d] for d in range(hd)) * scaling
                    cap = cfg.get("attn_logit_softcapping")
                    if arch == "gemma2" and cap:
                        s = math.tanh(s / cap) * cap
                    scores[j] = s
                m = max(scores.values())
                ex = {j: math.exp(s - m) for j, s in scores.items()}
                tot = sum(ex.values())
                for d in range(hd):
                    att.append(sum(ex[j] / tot * Vs[l][j][kh * hd + d] for j in ex))
            o = matvec(w[p + "self_attn.o_proj.weight"], att)
            if arch in ("gemma2", "gemma3"):
                o = rmsnorm(o, w[p + "post_attention_layernorm.weight"], eps, True)
                x = [a + b for a, b in zip(x, o)]
                h = rmsnorm(x, w[p + "pre_feedforward_layernorm.weight"], eps, True)
            else:
                x = [a + b for a, b in zip(x, o)]
                h = rmsnorm(x, w[p + "post_attention_layernorm.weight"], eps, gemma)
            if arch == "phi3":
                gu = matvec(w[p + "mlp.gate_up_proj.weight"], h)
                F = len(gu) // 2
                act = [silu(g) * u for g, u in zip(gu[:F], gu[F:])]
            else:
                g = matvec(w[p + "mlp.gate_proj.weight"], h)
                u = matvec(w[p + "mlp.up_proj.weight"], h)
                fn = gelu_tanh if gemma else silu
                act = [fn(a) * b for a, b in zip(g, u)]
            d = matvec(w[p + "mlp.down_proj.weight"], act)
            if arch in ("gemma2", "gemma3"):
                d = rmsnorm(d, w[p + "post_feedforward_layernorm.weight"], eps, True)
            x = [a + b for a, b in zip(x, d)]
        h = rmsnorm(x, w["model.norm.weight"], eps, gemma)
        head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
        out = matvec(head, h)
        cap = cfg.get("final_logit_softcapping")
        if arch in ("gemma2", "gemma3") and cap:
            out = [math.tanh(v / cap) * cap for v in out]
        logits.append(out)
    return logits


# ---- commands ---------------------------------------------------------------------------------


def write_model(arch, out_dir, dtype, shards, seed=7, with_reference=True, vocab_size=None):
    rng = random.Random(seed)
    cfg = make_config(arch, vocab_size)
    w = make_weights(arch, cfg, dtype, rng)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    names = list(w)
    if shards <= 1:
        write_safetensors(os.path.join(out_dir, "model.safetensors"),
                          [(n, dtype, w[n][0], w[n][1]) for n in names], {"format": "pt"})
    else:
        weight_map = {}
        for s in range(shards):
            fname = "model-%05d-of-%05d.safetensors" % (s + 1, shards)
            part = names[s::shards]
            write_safetensors(os.path.join(out_dir, fname),
                              [(n, dtype, w[n][0], w[n][1]) for n in part])
            weight_map.update({n: fname for n in part})
        with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {}, "weight_map": weight_map}, f)
    if not with_reference:
        return cfg, w
    tokens = [(i * 7 + 3) % cfg["vocab_size"] for i in range(12)]
    with open(os.path.join(out_dir, "tokens.txt"), "w") as f:
        f.write(" ".join(map(str, tokens)) + "\n")
    logits = reference(arch, cfg, w, tokens)
    with open(os.path.join(out_dir, "reference.bin"), "wb") as f:
        for row in logits:
            f.write(struct.pack("<%dd" % len(row), *row))
    return cfg, w


HOSTILE = ["header-len-huge", "header-len-short", "header-not-json", "offsets-outside",
           "offsets-overlap", "offsets-hole", "dtype-lies", "dtype-unknown", "truncated",
           "empty-file", "shard-missing", "index-disagrees", "duplicate-across-shards",
           "shard-path-escape", "config-heads", "config-missing-key", "config-not-json",
           "config-arch", "config-layer-types", "shape-mismatch", "tensor-missing", "tensor-extra", "dtype-int",
           "no-weights", "negative-offset"]


def hostile(kind, out_dir):
    cfg, w = write_model("llama", out_dir, "BF16", 1, seed=3, with_reference=False)
    st = os.path.join(out_dir, "model.safetensors")
    raw = open(st, "rb").read()
    hlen = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + hlen])
    data = raw[8 + hlen:]

    def rewrite(h, body=data):
        hb = json.dumps(h).encode()
        open(st, "wb").write(struct.pack("<Q", len(hb)) + hb + body)

    first = "model.embed_tokens.weight"
    if kind == "header-len-huge":
        open(st, "wb").write(struct.pack("<Q", 1 << 62) + raw[8:])
    elif kind == "header-len-short":
        open(st, "wb").write(struct.pack("<Q", 1) + raw[8:])
    elif kind == "header-not-json":
        open(st, "wb").write(raw[:8] + b"{" + b"x" * (hlen - 1) + data)
    elif kind == "offsets-outside":
        header[first]["data_offsets"][1] = len(data) + 64
        rewrite(header)
    elif kind == "offsets-overlap":
        a, b = header["model.norm.weight"]["data_offsets"], header[first]["data_offsets"]
        header["model.norm.weight"]["data_offsets"] = [b[0], b[0] + (a[1] - a[0])]
        rewrite(header)
    elif kind == "offsets-hole":
        for v in header.values():
            if isinstance(v, dict) and "data_offsets" in v:
                v["data_offsets"] = [v["data_offsets"][0] + 2, v["data_offsets"][1] + 2]
        rewrite(header, b"\0\0" + data)
    elif kind == "dtype-lies":
        header[first]["dtype"] = "F32"
        rewrite(header)
    elif kind == "dtype-unknown":
        header[first]["dtype"] = "Q4"
        rewrite(header)
    elif kind == "dtype-int":
        # Consistent I16 in place of BF16: valid file, but not a float checkpoint.
        header[first]["dtype"] = "I16"
        rewrite(header)
    elif kind == "negative-offset":
        header[first]["data_offsets"][0] = -2
        rewrite(header)
    elif kind == "truncated":
        open(st, "wb").write(raw[:len(raw) - 100])
    elif kind == "empty-file":
        open(st, "wb").write(b"")
    elif kind in ("shard-missing", "index-disagrees", "duplicate-across-shards",
                  "shard-path-escape"):
        os.remove(st)
        write_model("llama", out_dir, "BF16", 2, seed=3, with_reference=False)
        idx_path = os.path.join(out_dir, "model.safetensors.index.json")
        idx = json.load(open(idx_path))
        if kind == "shard-missing":
            os.remove(os.path.join(out_dir, "model-00002-of-00002.safetensors"))
        elif kind == "index-disagrees":
            idx["weight_map"][first] = "model-00002-of-00002.safetensors"
        elif kind == "shard-path-escape":
            idx["weight_map"][first] = "../model-00001-of-00002.safetensors"
        else:
            # The second shard also carries a tensor of the first.
            p2 = os.path.join(out_dir, "model-00002-of-00002.safetensors")
            r2 = open(p2, "rb").read()
            h2len = struct.unpack("<Q", r2[:8])[0]
            h2 = json.loads(r2[8:8 + h2len])
            end = max(v["data_offsets"][1] for v in h2.values() if "data_offsets" in v)
            n = cfg["hidden_size"]
            dup = next(k for k, f in sorted(idx["weight_map"].items())
                       if f.endswith("00001-of-00002.safetensors") and k.endswith("norm.weight"))
            h2[dup] = {"dtype": "BF16", "shape": [n], "data_offsets": [end, end + 2 * n]}
            hb = json.dumps(h2).encode()
            open(p2, "wb").write(struct.pack("<Q", len(hb)) + hb + r2[8 + h2len:] + b"\0" * 2 * n)
        json.dump(idx, open(idx_path, "w"))
    elif kind.startswith("config-"):
        c = dict(cfg)
        if kind == "config-heads":
            c["num_key_value_heads"] = 3
        elif kind == "config-missing-key":
            del c["hidden_size"]
        elif kind == "config-arch":
            c["architectures"] = ["MambaForCausalLM"]
        elif kind == "config-layer-types":
            c["layer_types"] = ["full_attention", "sliding_attention"]
        path = os.path.join(out_dir, "config.json")
        if kind == "config-not-json":
            open(path, "w").write("{\"hidden_size\": 32,")
        else:
            json.dump(c, open(path, "w"))
    elif kind == "shape-mismatch":
        c = dict(cfg)
        c["intermediate_size"] = 40
        json.dump(c, open(os.path.join(out_dir, "config.json"), "w"))
    elif kind == "tensor-missing":
        del header["model.layers.1.mlp.up_proj.weight"]
        # Re-tile the data so the file is otherwise valid.
        tensors = [(n, v["dtype"], v["shape"],
                    data[v["data_offsets"][0]:v["data_offsets"][1]])
                   for n, v in header.items() if n != "__metadata__"]
        _rewrite_raw(st, tensors)
    elif kind == "tensor-extra":
        tensors = [(n, v["dtype"], v["shape"], data[v["data_offsets"][0]:v["data_offsets"][1]])
                   for n, v in header.items() if n != "__metadata__"]
        tensors.append(("model.layers.0.self_attn.q_proj.bias", "BF16", [32], b"\0" * 64))
        _rewrite_raw(st, tensors)
    elif kind == "no-weights":
        os.remove(st)
    else:
        raise SystemExit("unknown kind " + kind)


def _rewrite_raw(path, tensors):
    header, off, body = {}, 0, b""
    for n, dt, shape, blob in tensors:
        header[n] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(blob)]}
        off += len(blob)
        body += blob
    hb = json.dumps(header).encode()
    open(path, "wb").write(struct.pack("<Q", len(hb)) + hb + body)


def write_seeds(out_dir):
    """Small safetensors files for the header fuzzer: valid ones of every dtype and rank, and
    every hostile variant's weights file."""
    os.makedirs(out_dir, exist_ok=True)
    rng = random.Random(1)
    for i, dtype in enumerate(["F32", "F16", "BF16"]):
        tensors = [("t%d" % k, dtype, shape, [round_to(dtype, rng.uniform(-1, 1))
                                               for _ in range(math.prod(shape))])
                   for k, shape in enumerate([[3], [2, 4], [1, 2, 2], []])]
        write_safetensors(os.path.join(out_dir, "valid-%d.safetensors" % i), tensors,
                          {"format": "pt"} if i else None)
    tmp = os.path.join(out_dir, "_tmp")
    for kind in HOSTILE:
        if kind.startswith("config") or kind in ("no-weights", "shape-mismatch"):
            continue
        hostile(kind, tmp)
        for name in sorted(os.listdir(tmp)):
            if name.endswith(".safetensors"):
                with open(os.path.join(tmp, name), "rb") as f:
                    data = f.read()
                with open(os.path.join(out_dir, "%s-%s" % (kind, name)), "wb") as f:
                    f.write(data[:65536])
        for name in os.listdir(tmp):
            os.remove(os.path.join(tmp, name))
    os.rmdir(tmp)


def main():
    a = sys.argv[1:]
    if len(a) >= 3 and a[0] == "model":
        dtype = a[a.index("--dtype") + 1].upper() if "--dtype" in a else "BF16"
        shards = int(a[a.index("--shards") + 1]) if "--shards" in a else 1
        vocab = int(a[a.index("--vocab-size") + 1]) if "--vocab-size" in a else None
        global LONG_ROPE
        LONG_ROPE = "--long-rope" in a
        write_model(a[1], a[2], dtype, shards, with_reference="--no-reference" not in a,
                    vocab_size=vocab)
    elif len(a) == 3 and a[0] == "hostile":
        hostile(a[1], a[2])
    elif len(a) == 2 and a[0] == "seeds":
        write_seeds(a[1])
    elif len(a) == 1 and a[0] == "list-hostile":
        print("\n".join(HOSTILE))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
