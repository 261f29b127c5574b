#!/usr/bin/env python3
"""Writes the relaxed-SIMD variant of a linked edgellm module.

src/quant/kernels_wasm_relaxed.c and the relaxed tiles of src/quant/gemm_wasm_simd.c write relaxed
SIMD's i16x8.relaxed_dot_i8x16_i7x16_s (opcode 0x112) as i16x8.q15mulr_sat_s (0x82), for which
clang 14 has an intrinsic; both take two v128 and give one, and both opcodes are two LEB128 bytes,
so replacing one with the other changes no size field. The rewrite touches the code section only,
and only when the placeholder's byte sequence occurs there exactly as often as wasm-dis counts
q15mulr instructions: a byte sequence that is part of an immediate, or an instruction encoded in
more bytes, makes the counts differ and the build fail rather than ship a module that runs the
placeholder or corrupts an immediate.

usage: relaxed_patch.py WASM_DIS IN.wasm OUT.wasm
"""
import re
import subprocess
import sys

PLACEHOLDER = bytes([0xFD, 0x82, 0x01])  # i16x8.q15mulr_sat_s
RELAXED_DOT = bytes([0xFD, 0x92, 0x02])  # i16x8.relaxed_dot_i8x16_i7x16_s
CODE_SECTION = 10


def fail(message):
    sys.exit(f"relaxed_patch.py: {message}")


def read_leb_u32(data, at):
    value, shift = 0, 0
    while True:
        if at >= len(data) or shift > 28:
            fail("malformed LEB128 in a section header")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def code_section(module):
    """(start, end) of the code section's contents."""
    if module[:8] != b"\0asm\x01\0\0\0":
        fail("not a version-1 WebAssembly module")
    at, found = 8, None
    while at < len(module):
        section_id = module[at]
        size, start = read_leb_u32(module, at + 1)
        end = start + size
        if end > len(module):
            fail(f"section {section_id} runs past the end of the module")
        if section_id == CODE_SECTION:
            if found:
                fail("two code sections")
            found = (start, end)
        at = end
    if not found:
        fail("no code section")
    return found


def main():
    if len(sys.argv) != 4:
        fail("usage: relaxed_patch.py WASM_DIS IN.wasm OUT.wasm")
    wasm_dis, src, dst = sys.argv[1:]
    module = bytearray(open(src, "rb").read())
    text = subprocess.run([wasm_dis, src], check=True, capture_output=True, text=True).stdout
    instructions = len(re.findall(r"\(i16x8\.q15mulr_sat_s\b", text))
    start, end = code_section(module)
    hits = []
    at = module.find(PLACEHOLDER, start, end)
    while at != -1:
        hits.append(at)
        at = module.find(PLACEHOLDER, at + len(PLACEHOLDER), end)
    if instructions == 0:
        fail(f"{src} has no q15mulr placeholder (were the relaxed kernels built?)")
    if len(hits) != instructions:
        fail(f"{src}: {len(hits)} placeholder byte sequences in the code section but "
             f"{instructions} q15mulr instructions; refusing to patch")
    for at in hits:
        module[at:at + len(RELAXED_DOT)] = RELAXED_DOT
    if module.find(PLACEHOLDER, start, end) != -1:
        fail("a placeholder sequence is left after the rewrite")
    open(dst, "wb").write(module)
    print(f"relaxed_patch.py: {dst}: {len(hits)} relaxed dots")


if __name__ == "__main__":
    main()
