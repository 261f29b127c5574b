#!/usr/bin/env python3
"""Writes a seed corpus for fuzz_gguf into OUT_DIR from the shared GGUF models.

The shared models are megabytes of weights; the fuzzer should spend its time in the parser, so the
seeds are small *valid* files that keep each model's metadata (arrays shortened) and tensor table
(dimensions shrunk, offsets re-packed), plus the first 64 KiB of each model as it is, plus one
file with every value type, nested arrays and a custom alignment. Nothing here is committed: the
seeds are derived from ../shared at run time.

usage: make_seeds.py OUT_DIR MODEL.gguf...
"""
import os
import struct
import sys

SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "B", 10: "Q", 11: "q", 12: "d"}
# Bytes per block and elements per block for the tensor types the seeds use.
TYPE_LAYOUT = {0: (4, 1), 1: (2, 1), 2: (18, 32), 8: (34, 32), 30: (2, 1)}


class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, fmt):
        value = struct.unpack_from("<" + fmt, self.data, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return value

    def string(self):
        n = self.take("Q")
        s = self.data[self.pos:self.pos + n]
        self.pos += n
        return s

    def value(self, vtype):
        if vtype == 8:
            return self.string()
        if vtype == 9:
            etype, n = self.take("I"), self.take("Q")
            return (etype, [self.value(etype) for _ in range(n)])
        return self.take(SCALAR[vtype])


def enc_str(s):
    return struct.pack("<Q", len(s)) + s


def enc_value(vtype, v):
    if vtype == 8:
        return enc_str(v)
    if vtype == 9:
        etype, items = v
        return struct.pack("<IQ", etype, len(items)) + b"".join(enc_value(etype, x) for x in items)
    return struct.pack("<" + SCALAR[vtype], v)


def build(kvs, tensors, alignment=32):
    """kvs: [(key bytes, type, value)], tensors: [(name bytes, ne list, type)]."""
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs))
    for key, vtype, v in kvs:
        out += enc_str(key) + struct.pack("<I", vtype) + enc_value(vtype, v)
    offset, blobs = 0, []
    for name, ne, ttype in tensors:
        block_bytes, block_size = TYPE_LAYOUT[ttype]
        n = 1
        for d in ne:
            n *= d
        size = n // block_size * block_bytes
        out += enc_str(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne)
        out += struct.pack("<IQ", ttype, offset)
        blobs.append((offset, bytes((i * 7) & 0xFF for i in range(size))))
        offset = (offset + size + alignment - 1) // alignment * alignment
    out += b"\0" * (-len(out) % alignment)
    data = bytearray(offset)
    for off, blob in blobs:
        data[off:off + len(blob)] = blob
    return out + bytes(data)


def shrink_model(data):
    r = Reader(data)
    assert r.data[:4] == b"GGUF"
    r.pos = 4
    _version, n_tensors, n_kv = r.take("I"), r.take("Q"), r.take("Q")
    kvs = []
    for _ in range(n_kv):
        key, vtype = r.string(), r.take("I")
        v = r.value(vtype)
        if vtype == 9:
            v = (v[0], v[1][:16])
        kvs.append((key, vtype, v))
    tensors = []
    for _ in range(n_tensors):
        name, n_dims = r.string(), r.take("I")
        ne = [r.take("Q") for _ in range(n_dims)]
        ttype, _offset = r.take("I"), r.take("Q")
        if ttype not in TYPE_LAYOUT:
            continue
        block = TYPE_LAYOUT[ttype][1]
        tensors.append((name, [block] + [min(d, 2) for d in ne[1:]], ttype))
    return build(kvs, tensors[:12])


def every_type():
    kvs = [
        (b"general.alignment", 4, 64),
        (b"u8", 0, 200), (b"i8", 1, -100), (b"u16", 2, 60000), (b"i16", 3, -30000),
        (b"u32", 4, 4000000000), (b"i32", 5, -2000000000), (b"f32", 6, 1.5), (b"bool", 7, 1),
        (b"str", 8, "h\u00e9llo".encode()), (b"u64", 10, 1 << 60), (b"i64", 11, -(1 << 60)),
        (b"f64", 12, -2.25),
        (b"strs", 9, (8, [b"<unk>", b"", b"\xe2\x96\x81a"])),
        (b"nested", 9, (9, [(3, [7, -8]), (8, [b"x"]), (0, [])])),
    ]
    tensors = [(b"f32", [32, 2], 0), (b"f16", [8], 1), (b"q8", [32, 2], 8), (b"q4", [64], 2)]
    return build(kvs, tensors, alignment=64)


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    for path in sys.argv[2:]:
        with open(path, "rb") as f:
            data = f.read()
        base = os.path.basename(path)
        with open(os.path.join(out_dir, base + ".head"), "wb") as f:
            f.write(data[:65536])
        with open(os.path.join(out_dir, base + ".small"), "wb") as f:
            f.write(shrink_model(data))
    with open(os.path.join(out_dir, "every-type.gguf"), "wb") as f:
        f.write(every_type())


if __name__ == "__main__":
    main()
