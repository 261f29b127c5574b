// The inference side of edgellm.mjs: runs in a Web Worker (browsers) or a worker_threads Worker
// (Node), loads the WebAssembly module, streams the model's bytes straight into wasm memory and
// runs generations, posting each piece of text as it becomes final. A classic script (not a
// module) so that the same file runs under importScripts in browsers and require in Node.
"use strict";

const inNode = typeof importScripts !== "function";
let post;
let nodeRequire;
if (inNode) {
  nodeRequire = require;
  const { parentPort } = nodeRequire("worker_threads");
  post = (msg, transfer) => parentPort.postMessage(msg, transfer);
  parentPort.on("message", (msg) => handle(msg));
} else {
  post = (msg, transfer) => self.postMessage(msg, transfer);
  self.onmessage = (ev) => handle(ev.data);
}

// EDGELLM_OK .. EDGELLM_ERR_CANCELLED, as include/edgellm.h numbers them.
const STATUS = ["ok", "invalid_argument", "io", "format", "unsupported", "out_of_memory",
  "context_full", "buffer_too_small", "not_found", "cancelled"];

let mod = null;       // the Emscripten module
let engine = 0;       // wasm_engine pointer
let interruptFlag = null; // Int32Array on a SharedArrayBuffer, when the page has one
let onText = null;    // where the running generation's text goes

function lastError() {
  return mod.UTF8ToString(mod._edgellm_wasm_last_error());
}

async function init({ variant, baseUrl, threads, interrupt }) {
  interruptFlag = interrupt ? new Int32Array(interrupt) : null;
  const options = {
    edgellmPoolSize: Math.max(0, threads - 1),
    edgellmText: (text) => {
      if (text) onText(text);
      return interruptFlag !== null && Atomics.load(interruptFlag, 0) !== 0;
    },
    print: () => {},
    printErr: (line) => post({ type: "log", line }),
  };
  let factory;
  if (inNode) {
    const path = nodeRequire("path");
    const { fileURLToPath } = nodeRequire("url");
    const dir = fileURLToPath(baseUrl);
    factory = nodeRequire(path.join(dir, `edgellm-${variant}.js`));
    // Node has fetch, which this Emscripten would try on a file path.
    options.wasmBinary = nodeRequire("fs").readFileSync(path.join(dir, `edgellm-${variant}.wasm`));
  } else {
    importScripts(`${baseUrl}edgellm-${variant}.js`);
    factory = self.createEdgellmModule;
    options.locateFile = (file) => baseUrl + file;
    options.mainScriptUrlOrBlob = `${baseUrl}edgellm-${variant}.js`;
  }
  mod = await factory(options);
  return { kernelSet: mod.UTF8ToString(mod._edgellm_wasm_kernel_set()) };
}

// Copies the model into one malloc'd block of wasm memory, chunk by chunk as it arrives.
class ModelBytes {
  constructor(size) {
    this.size = size;
    this.ptr = mod._malloc(size) >>> 0;
    if (size > 0 && this.ptr === 0)
      throw new Error(`could not reserve ${size} bytes of WebAssembly memory for the model ` +
        `(the engine refused to grow its memory that far); close other tabs or use a smaller ` +
        `model`);
    this.loaded = 0;
  }
  write(chunk) {
    if (this.loaded + chunk.byteLength > this.size) {
      throw new Error(`the model source sent more than the ${this.size} bytes it announced`);
    }
    mod.HEAPU8.set(chunk, this.ptr + this.loaded);
    this.loaded += chunk.byteLength;
  }
  free() {
    if (this.ptr) mod._free(this.ptr);
    this.ptr = 0;
  }
}

// wasm32 addresses 4 GiB; the context (KV cache, scratch) and the runtime need room too.
const MEMORY_LIMIT = 4 * 1024 ** 3;
const RESERVE = 256 * 1024 ** 2;
function checkSize(size, name) {
  if (size > MEMORY_LIMIT - RESERVE)
    throw new Error(`${name} is ${(size / 1024 ** 3).toFixed(2)} GiB (${size} bytes) but ` +
      `WebAssembly memory is limited to 4 GiB (wasm32), of which the model may use at most ` +
      `${(MEMORY_LIMIT - RESERVE) / 1024 ** 3} GiB; use a smaller model or quantization`);
}

async function open(request) {
  const bytes = await readModel(request.source);
  const ptr = bytes.ptr;
  bytes.ptr = 0; // edgellm_wasm_open owns it now, whatever happens
  engine = mod._edgellm_wasm_open(ptr, bytes.size, request.nCtx, request.threads) >>> 0;
  if (!engine) throw new Error(lastError());
  return JSON.parse(mod.UTF8ToString(mod._edgellm_wasm_model_info(engine)));
}

// The model's bytes in wasm memory; nothing stays allocated when reading fails.
async function readModel(source) {
  const progress = (phase, loaded, total) => post({ type: "progress", phase, loaded, total });
  let bytes = null;
  try {
    return await readInto(source, progress, (size) => (bytes = new ModelBytes(size)));
  } catch (e) {
    if (bytes) bytes.free();
    throw e;
  }
}

async function readInto(source, progress, allocate) {
  let bytes;
  if (source.kind === "path") {
    const fs = nodeRequire("fs");
    const fd = fs.openSync(source.path, "r");
    try {
      const size = fs.fstatSync(fd).size;
      checkSize(size, `'${source.path}'`);
      bytes = allocate(size);
      const step = 16 << 20;
      while (bytes.loaded < size) {
        const want = Math.min(step, size - bytes.loaded);
        // Straight from the file into wasm memory.
        const got = fs.readSync(fd, mod.HEAPU8, bytes.ptr + bytes.loaded, want, bytes.loaded);
        if (got <= 0) throw new Error(`'${source.path}' ended after ${bytes.loaded} bytes`);
        bytes.loaded += got;
        progress("load", bytes.loaded, size);
      }
    } finally {
      fs.closeSync(fd);
    }
  } else if (source.kind === "buffer") {
    checkSize(source.buffer.byteLength, "the model buffer");
    bytes = allocate(source.buffer.byteLength);
    bytes.write(new Uint8Array(source.buffer));
    progress("load", bytes.loaded, bytes.size);
  } else {
    // A download or a File: the size is known first, then chunks are appended as they come.
    let stream, size, phase;
    if (source.kind === "url") {
      const response = await fetch(source.url);
      if (!response.ok)
        throw new Error(`downloading ${source.url} failed: HTTP ${response.status}`);
      size = Number(response.headers.get("content-length"));
      if (!Number.isFinite(size) || size <= 0)
        throw new Error(`${source.url} did not say how large it is (no Content-Length); ` +
          `serve it with one, or pass the model as a File or ArrayBuffer`);
      checkSize(size, source.url);
      stream = response.body;
      phase = "download";
    } else {
      size = source.file.size;
      checkSize(size, source.file.name || "the file");
      stream = source.file.stream();
      phase = "load";
    }
    bytes = allocate(size);
    const reader = stream.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      bytes.write(value);
      progress(phase, bytes.loaded, bytes.size);
    }
    if (bytes.loaded !== bytes.size) {
      throw new Error(`the model source ended after ${bytes.loaded} of ${bytes.size} bytes; ` +
        `check the connection and load it again`);
    }
  }
  return bytes;
}

// Strings and string arrays in wasm memory for one call; freed together.
class Arena {
  constructor() { this.ptrs = []; }
  str(s) {
    const n = mod.lengthBytesUTF8(s) + 1;
    const p = mod._malloc(n);
    this.ptrs.push(p);
    mod.stringToUTF8(s, p, n);
    return p;
  }
  strs(list) {
    const p = mod._malloc(4 * Math.max(1, list.length));
    this.ptrs.push(p);
    list.forEach((s, i) => { mod.HEAPU32[(p >>> 2) + i] = this.str(s); });
    return p;
  }
  free() { this.ptrs.forEach((p) => mod._free(p)); }
}

function generate({ id, kind, prompt, messages, params }) {
  if (interruptFlag) Atomics.store(interruptFlag, 0, 0);
  onText = (text) => post({ type: "delta", id, text });
  const arena = new Arena();
  const p = params;
  let status;
  try {
    const sampling = [p.temperature, p.top_p, p.top_k, p.min_p, p.repeat_penalty,
      p.presence_penalty, p.frequency_penalty, p.seed, p.max_tokens,
      arena.strs(p.stop), p.stop.length];
    if (kind === "chat") {
      status = mod._edgellm_wasm_chat(engine, arena.strs(messages.map((m) => m.role)),
        arena.strs(messages.map((m) => m.content)), messages.length, ...sampling);
    } else {
      status = mod._edgellm_wasm_complete(engine, arena.str(prompt), ...sampling);
    }
  } finally {
    arena.free();
  }
  if (status !== 0) throw new Error(lastError() || `generation failed (${STATUS[status]})`);
  const r = (i) => mod._edgellm_wasm_last_result(engine, i);
  return {
    promptTokens: r(0), cachedTokens: r(1), completionTokens: r(2), stopReason: r(3),
    prefillSeconds: r(4), ttftSeconds: r(5), decodeSeconds: r(6),
  };
}

function logits({ tokens, kernelSet }) {
  const arena = new Arena();
  try {
    const tp = mod._malloc(4 * tokens.length);
    arena.ptrs.push(tp);
    mod.HEAP32.set(tokens, tp >>> 2);
    const out = mod._edgellm_wasm_logits(engine, tp, tokens.length, arena.str(kernelSet)) >>> 0;
    if (!out) throw new Error(lastError() || `kernel set '${kernelSet}' is not available`);
    const nVocab = JSON.parse(mod.UTF8ToString(mod._edgellm_wasm_model_info(engine))).n_vocab;
    return new Float32Array(mod.HEAPF32.slice(out >>> 2, (out >>> 2) + nVocab * tokens.length));
  } finally {
    arena.free();
  }
}

function unload() {
  if (engine) mod._edgellm_wasm_close(engine);
  engine = 0;
}

const handlers = { init, open, generate, logits, unload };

async function handle(msg) {
  try {
    const result = await handlers[msg.type](msg);
    post({ type: "result", id: msg.id, result });
  } catch (e) {
    post({ type: "error", id: msg.id, message: e && e.message ? e.message : String(e) });
  }
}
