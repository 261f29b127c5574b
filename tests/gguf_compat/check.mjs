// edgellm's GGUF files against an independent GGUF implementation (@huggingface/gguf, the
// parser the Hugging Face Hub uses) and the format's published facts:
//  1. every file `edgellm quantize` writes parses there with the same tensor table (names, types,
//     shapes, sizes from the published block sizes), aligned non-overlapping data and the
//     source's metadata;
//  2. Q8_0 and Q4_0 blocks are byte-identical to an independent quantizer written here from the
//     format definition (f16 scale, the rounding the reference implementation specifies);
//  3. a header rewritten by the other tool's GGUF writer loads in edgellm with the new metadata
//     and generates exactly what the original does.
import { gguf, buildGgufHeader } from "@huggingface/gguf";
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync, statSync, openAsBlob } from "node:fs";
import { join } from "node:path";

const [edgellm, shared, tmp] = process.argv.slice(2);
const source = join(shared, "models", "aidreams260K-f32.gguf");
let checks = 0, failed = 0;
function check(cond, what) {
  checks++;
  if (!cond) { failed++; console.error("FAIL:", what); }
  return cond;
}

// GGML type ids -> [name, values per block, bytes per block], as the GGUF specification lists them.
const TYPES = {
  0: ["F32", 1, 4], 1: ["F16", 1, 2], 2: ["Q4_0", 32, 18], 3: ["Q4_1", 32, 20], 6: ["Q5_0", 32, 22],
  7: ["Q5_1", 32, 24], 8: ["Q8_0", 32, 34], 10: ["Q2_K", 256, 84], 11: ["Q3_K", 256, 110],
  12: ["Q4_K", 256, 144], 13: ["Q5_K", 256, 176], 14: ["Q6_K", 256, 210], 20: ["IQ4_NL", 32, 18],
  23: ["IQ4_XS", 256, 136], 30: ["BF16", 1, 2],
};

const run = (...args) => execFileSync(edgellm, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });

// `edgellm info`'s tensor table: name, type, dims ("64 x 512"), bytes.
function edgellmTensors(path) {
  const out = run("info", path);
  const rows = new Map();
  for (const line of out.split("\n")) {
    const m = line.match(/^\s+(\S+\.weight)\s+(\S+)\s+([\d x]+?)\s+(\d+)\s*$/);
    if (m) rows.set(m[1], { type: m[2], dims: m[3].split(" x ").map(Number), bytes: Number(m[4]) });
  }
  return rows;
}

async function checkFile(path, label, src) {
  const parsed = await gguf(path, { allowLocalFile: true, typedMetadata: true });
  const ours = edgellmTensors(path);
  const fileSize = BigInt(statSync(path).size);
  const alignment = BigInt(parsed.metadata["general.alignment"] ?? 32);
  check(parsed.tensorDataOffset % alignment === 0n, `${label}: data section aligned`);
  check(parsed.tensorInfos.length === ours.size && ours.size > 0, `${label}: same tensor count`);
  let prevEnd = 0n;
  const sorted = [...parsed.tensorInfos].sort((a, b) => (a.offset < b.offset ? -1 : 1));
  for (const t of sorted) {
    const facts = TYPES[t.dtype];
    if (!check(facts, `${label}: ${t.name} has a known type (${t.dtype})`)) continue;
    const [name, block, bytesPerBlock] = facts;
    const n = t.shape.reduce((a, b) => a * b, 1n);
    const rowLen = t.shape[0];
    check(rowLen % BigInt(block) === 0n, `${label}: ${t.name} rows split into ${name} blocks`);
    const size = (n / BigInt(block)) * BigInt(bytesPerBlock);
    check(t.offset % alignment === 0n && t.offset >= prevEnd, `${label}: ${t.name} aligned, no overlap`);
    prevEnd = t.offset + size;
    check(parsed.tensorDataOffset + t.offset + size <= fileSize, `${label}: ${t.name} inside the file`);
    const mine = ours.get(t.name);
    if (check(mine, `${label}: edgellm lists ${t.name}`)) {
      check(mine.type === name, `${label}: ${t.name} type ${mine.type} vs ${name}`);
      check(JSON.stringify(mine.dims) === JSON.stringify(t.shape.map(Number)), `${label}: ${t.name} shape`);
      check(BigInt(mine.bytes) === size, `${label}: ${t.name} size ${mine.bytes} vs ${size}`);
    }
  }
  for (const key of ["general.architecture", "llama.embedding_length", "llama.block_count",
                     "llama.feed_forward_length", "llama.attention.head_count", "llama.context_length",
                     "tokenizer.ggml.model", "tokenizer.ggml.bos_token_id"]) {
    check(JSON.stringify(parsed.metadata[key], (k, v) => typeof v === "bigint" ? Number(v) : v) ===
          JSON.stringify(src.metadata[key], (k, v) => typeof v === "bigint" ? Number(v) : v),
          `${label}: metadata ${key}`);
  }
  check(parsed.metadata["tokenizer.ggml.tokens"].length === src.metadata["tokenizer.ggml.tokens"].length,
        `${label}: vocabulary`);
  return parsed;
}

// IEEE binary16 from a float32 value, round to nearest even.
const f32 = new Float32Array(1), u32 = new Uint32Array(f32.buffer);
function f16bits(v) {
  f32[0] = v;
  const bits = u32[0], sign = (bits >>> 16) & 0x8000, exp = (bits >>> 23) & 0xff;
  let mant = bits & 0x7fffff;
  if (exp === 255) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e, rem = mant & ((1 << shift) - 1), half = 1 << (shift - 1);
    let r = mant >>> shift;
    if (rem > half || (rem === half && (r & 1))) r++;
    return sign | r;
  }
  let r = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (r & 1))) r++;
  return sign | r;
}
const fr = Math.fround;
const roundHalfAway = (v) => Math.sign(v) * Math.floor(Math.abs(v) + 0.5);

// Q8_0: d = amax / 127, q = round(x / d) (half away from zero), computed in float32.
function quantizeQ8_0(x) {
  const out = new Uint8Array((x.length / 32) * 34);
  for (let b = 0; b < x.length / 32; b++) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b * 32 + j]));
    const d = fr(amax / 127), id = d ? fr(1 / d) : 0, h = f16bits(d);
    out[b * 34] = h & 0xff; out[b * 34 + 1] = h >> 8;
    for (let j = 0; j < 32; j++) out[b * 34 + 2 + j] = roundHalfAway(fr(x[b * 32 + j] * id)) & 0xff;
  }
  return out;
}

// Q4_0: the value of largest magnitude maps to -8: d = max / -8, q = min(15, trunc(x / d + 8.5)).
function quantizeQ4_0(x) {
  const out = new Uint8Array((x.length / 32) * 18);
  for (let b = 0; b < x.length / 32; b++) {
    let amax = 0, max = 0;
    for (let j = 0; j < 32; j++) {
      const v = x[b * 32 + j];
      if (Math.abs(v) > amax) { amax = Math.abs(v); max = v; }
    }
    const d = fr(max / -8), id = d ? fr(1 / d) : 0, h = f16bits(d);
    out[b * 18] = h & 0xff; out[b * 18 + 1] = h >> 8;
    for (let j = 0; j < 16; j++) {
      const lo = Math.min(15, Math.trunc(fr(fr(x[b * 32 + j] * id) + 8.5)));
      const hi = Math.min(15, Math.trunc(fr(fr(x[b * 32 + j + 16] * id) + 8.5)));
      out[b * 18 + 2 + j] = lo | (hi << 4);
    }
  }
  return out;
}

function tensorBytes(path, parsed, t, nbytes) {
  const buf = readFileSync(path);
  const start = Number(parsed.tensorDataOffset + t.offset);
  return buf.subarray(start, start + nbytes);
}

const src = await gguf(source, { allowLocalFile: true, typedMetadata: true });
const recipes = (process.env.GGUF_COMPAT_TYPES ||
  "f16,bf16,q8_0,q4_0,q4_1,q5_0,q5_1,iq4_nl,q2_k,q3_k_s,q3_k_m,q3_k_l,q4_k_s,q4_k_m,q5_k_s,q5_k_m,q6_k,iq4_xs").split(",");
for (const recipe of recipes) {
  const out = join(tmp, `aidreams-${recipe}.gguf`);
  try {
    run("quantize", source, out, recipe);
  } catch (e) {
    check(false, `edgellm quantize ${recipe} failed: ${e.stderr}`);
    continue;
  }
  const parsed = await checkFile(out, recipe, src);
  if (recipe !== "q8_0" && recipe !== "q4_0") continue;
  // Blocks against the independent quantizer.
  const want = recipe === "q8_0" ? 8 : 2, quant = recipe === "q8_0" ? quantizeQ8_0 : quantizeQ4_0;
  let compared = 0;
  for (const t of parsed.tensorInfos) {
    if (t.dtype !== want) continue;
    const s = src.tensorInfos.find((u) => u.name === t.name);
    const n = Number(t.shape.reduce((a, b) => a * b, 1n));
    const raw = tensorBytes(source, src, s, n * 4);
    const x = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + n * 4));
    const expected = quant(x);
    const got = tensorBytes(out, parsed, t, expected.length);
    let diff = -1;
    for (let i = 0; i < expected.length && diff < 0; i++) if (expected[i] !== got[i]) diff = i;
    check(diff < 0, `${recipe}: ${t.name} blocks differ from the format's quantizer at byte ${diff}`);
    compared++;
  }
  check(compared >= 10, `${recipe}: compared ${compared} tensors`);
}

// The other tool rewrites the header (new name, its own serializer); edgellm must load it.
const blob = await openAsBlob(source);
const meta = { ...src.typedMetadata, "general.name": { value: "rewritten by @huggingface/gguf", type: 8 } };
const header = await buildGgufHeader(blob, meta, {
  littleEndian: true, tensorInfoByteRange: src.tensorInfoByteRange, alignment: 32,
});
const data = readFileSync(source).subarray(Number(src.tensorDataOffset));
const rewritten = join(tmp, "aidreams-rewritten.gguf");
writeFileSync(rewritten, Buffer.concat([Buffer.from(await header.arrayBuffer()), data]));
const info = run("info", rewritten, "--no-tensors");
check(info.includes("rewritten by @huggingface/gguf"), "edgellm reads the rewritten header's metadata");
const gen = (p) => run("run", "-m", p, "-p", "Once upon a time", "--temp", "0", "-n", "24");
check(gen(rewritten) === gen(source), "the rewritten file generates exactly what the original does");
console.log(`gguf_compat: ${checks} checks, ${failed} failed`);
process.exit(failed ? 1 : 0);
