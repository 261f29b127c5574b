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

// createEngine's signal aborted the load (edgellm.mjs posts "cancel"): it stops at its next step.
// A download is aborted and keeps what arrived, as a broken one does; a download that has
// arrived whole is still checked and stored (a complete entry, not one a resume would trip on).
let loadCancelled = false;
let downloadWatchdog = null;
function cancelLoad() {
  loadCancelled = true;
  downloadWatchdog?.cancel();
}
const LOAD_CANCELLED = "the load was cancelled";
function stopIfCancelled() {
  if (loadCancelled) throw new Error(LOAD_CANCELLED);
}

function lastError() {
  return mod.UTF8ToString(mod._edgellm_wasm_last_error());
}

async function init({ variant, relaxed, baseUrl, threads, interrupt }) {
  interruptFlag = interrupt ? new Int32Array(interrupt) : null;
  const options = {
    // Emscripten 3.1.6 resolves the threaded module only when the last pooled worker has
    // loaded, so an empty pool (one thread) would never resolve: keep one idle worker there.
    edgellmPoolSize: Math.max(1, threads - 1),
    edgellmText: (text) => {
      if (text) onText(text);
      return interruptFlag !== null && Atomics.load(interruptFlag, 0) !== 0;
    },
    print: () => {},
    printErr: (line) => post({ type: "log", line }),
  };
  // The relaxed build is the same link with other opcodes: the glue loads either. A server that
  // copied only the plain .wasm files still works: the plain build is used and the log says why.
  if (relaxed && !(await relaxedFilePresent(`${baseUrl}edgellm-${variant}-relaxed.wasm`))) {
    relaxed = false;
    post({ type: "log", line: `edgellm-${variant}-relaxed.wasm is not next to edgellm.mjs (missing, or not ` +
      `a WebAssembly module); running the plain SIMD128 build (copy the whole web/dist folder for ` +
      `the faster one)` });
  }
  const wasmFile = `edgellm-${variant}${relaxed ? "-relaxed" : ""}.wasm`;
  let factory;
  if (inNode) {
    const path = nodeRequire("path");
    const { fileURLToPath } = nodeRequire("url");
    const dir = fileURLToPath(baseUrl);
    factory = nodeRequire(path.join(dir, `edgellm-${variant}.js`));
    // Node has fetch, which this Emscripten would try on a file path.
    options.wasmBinary = nodeRequire("fs").readFileSync(path.join(dir, wasmFile));
  } else {
    importScripts(`${baseUrl}edgellm-${variant}.js`);
    factory = self.createEdgellmModule;
    options.locateFile = (file) => baseUrl + (file === `edgellm-${variant}.wasm` ? wasmFile : file);
    options.mainScriptUrlOrBlob = `${baseUrl}edgellm-${variant}.js`;
  }
  mod = await factory(options);
  return { kernelSet: mod.UTF8ToString(mod._edgellm_wasm_kernel_set()), relaxed };
}

// A WebAssembly module starts with "\0asm". Hosts that answer every path with their index page
// (single-page-app hosting) give 200 and HTML for a file they lack, which must count as missing.
function isWasmHeader(bytes) {
  return bytes.length >= 4 && bytes[0] === 0x00 && bytes[1] === 0x61 && bytes[2] === 0x73 && bytes[3] === 0x6d;
}

async function relaxedFilePresent(url) {
  if (inNode) {
    const fs = nodeRequire("fs");
    const { fileURLToPath } = nodeRequire("url");
    let fd = -1;
    try {
      fd = fs.openSync(fileURLToPath(url), "r");
      const head = Buffer.alloc(4);
      return isWasmHeader(head.subarray(0, fs.readSync(fd, head, 0, 4, 0)));
    } catch {
      return false;
    } finally {
      if (fd >= 0) fs.closeSync(fd);
    }
  }
  // GET, not HEAD (some static servers, `edgellm serve --web` among them, refuse HEAD); only
  // the status and the first bytes are needed, so the rest of the body is dropped.
  try {
    const response = await fetch(url);
    if (!response.ok || !response.body) {
      await response.body?.cancel();
      return false;
    }
    const reader = response.body.getReader();
    let head = new Uint8Array(0);
    while (head.length < 4) {
      const { done, value } = await reader.read();
      if (done) break;
      const joined = new Uint8Array(head.length + value.length);
      joined.set(head);
      joined.set(value, head.length);
      head = joined;
    }
    await reader.cancel();
    return isWasmHeader(head);
  } catch {
    return false;
  }
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
      throw new Error(`the model source sent more than the ${this.size} bytes it announced (a ` +
        `server that compresses the file announces the compressed size: serve .gguf files ` +
        `without Content-Encoding)`);
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
  const bytes = await readModel(request.source, request.cache, request.stallSeconds);
  if (loadCancelled) {
    bytes.free();
    stopIfCancelled();
  }
  const ptr = bytes.ptr;
  bytes.ptr = 0; // edgellm_wasm_open owns it now, whatever happens
  engine = mod._edgellm_wasm_open(ptr, bytes.size, request.nCtx, request.threads) >>> 0;
  if (!engine) throw new Error(lastError());
  return JSON.parse(mod.UTF8ToString(mod._edgellm_wasm_model_info(engine)));
}

// The model's bytes in wasm memory; nothing stays allocated when reading fails.
async function readModel(source, useCache, stallSeconds) {
  const progress = (phase, loaded, total) => post({ type: "progress", phase, loaded, total });
  let bytes = null;
  const allocate = (size) => {
    if (bytes) bytes.free(); // a damaged cached copy gave way to a download of another size
    return (bytes = new ModelBytes(size));
  };
  try {
    if (source.kind === "url") {
      const store = useCache ? await openCache() : null;
      const watchdog = new StallWatchdog(stallSeconds);
      downloadWatchdog = watchdog;
      try {
        await readUrl(source, store, progress, allocate, watchdog);
      } finally {
        watchdog.stop(); // and a download left unread on an error is closed, not left running
        downloadWatchdog = null;
      }
    } else {
      await readInto(source, progress, allocate);
      if (source.sha256) await verify(bytes, source.sha256, progress, source.path || "the model");
    }
    return bytes;
  } catch (e) {
    if (bytes) bytes.free();
    throw e;
  }
}

// ---- the download cache --------------------------------------------------------------------
// Downloads go to Cache Storage as they arrive, in parts, so that a download that stopped
// continues with a range request from where it stopped, and a model loaded before is read back
// without a request. An entry is the model's URL plus its SHA-256: the expected one when the
// caller gave it, else the one computed when the download completed; the bytes are checked
// against it before every use. Node, and pages that are not a secure context, have no Cache
// Storage: there every load downloads (docs/web.md).
const CACHE_NAME = "edgellm-models-v1";
const CACHE_PART = 4 << 20; // bytes per cached part: what a broken download can lose at most
const entryKey = (url) => `https://edgellm-cache.invalid/${encodeURIComponent(url)}`;
const metaKey = (url) => `${entryKey(url)}/meta`;
const partKey = (url, i) => `${entryKey(url)}/part/${i}`;

async function openCache() {
  if (typeof caches !== "object" || !caches) return null;
  try {
    return await caches.open(CACHE_NAME);
  } catch (e) {
    post({ type: "log", line: `edgellm: no download cache (${e.message}); downloading without it` });
    return null;
  }
}

async function readMeta(store, url) {
  const r = await store.match(metaKey(url));
  if (!r) return null;
  try {
    const meta = await r.json();
    return meta && meta.url === url && Array.isArray(meta.parts) ? meta : null;
  } catch {
    return null; // unreadable: treated as absent, and replaced
  }
}

async function writeMeta(store, meta) {
  await store.put(metaKey(meta.url), new Response(JSON.stringify(meta),
    { headers: { "Content-Type": "application/json" } }));
}

async function dropEntry(store, url) {
  const meta = await readMeta(store, url);
  const found = await store.delete(metaKey(url));
  // Parts past those the meta lists can exist when it was written last before a crash.
  const n = meta ? meta.parts.length + 1 : 0;
  for (let i = 0; i < n; i++) await store.delete(partKey(url, i));
  for (const req of await store.keys()) // any others of this URL (an unreadable meta)
    if (req.url.startsWith(`${entryKey(url)}/`)) await store.delete(req);
  return found;
}

async function cacheList() {
  const store = await openCache();
  if (!store) return [];
  const entries = [];
  for (const req of await store.keys()) {
    if (!req.url.endsWith("/meta")) continue;
    const meta = await (await store.match(req)).json().catch(() => null);
    if (!meta) continue;
    entries.push({
      url: meta.url, size: meta.size, storedBytes: meta.parts.reduce((a, b) => a + b, 0),
      complete: meta.complete, sha256: meta.sha256 || meta.expectedSha256 || null,
      savedAt: meta.savedAt,
    });
  }
  return entries;
}

async function cacheDelete({ url }) {
  const store = await openCache();
  return store ? dropEntry(store, url) : false;
}

// The cached parts of meta into bytes; false when one is missing or of the wrong length.
async function readParts(store, meta, bytes, progress) {
  for (let i = 0; i < meta.parts.length; i++) {
    const r = await store.match(partKey(meta.url, i));
    if (!r) return false;
    const part = new Uint8Array(await r.arrayBuffer());
    stopIfCancelled();
    if (part.byteLength !== meta.parts[i] || bytes.loaded + part.byteLength > bytes.size) return false;
    bytes.write(part);
    progress("cache", bytes.loaded, bytes.size);
  }
  return true;
}

async function sha256Hex(bytes) {
  const subtle = inNode ? nodeRequire("crypto").webcrypto.subtle : globalThis.crypto && crypto.subtle;
  if (!subtle) return null;
  let view = mod.HEAPU8.subarray(bytes.ptr, bytes.ptr + bytes.size);
  // SubtleCrypto reads no shared memory, and the threaded build's heap is a SharedArrayBuffer:
  // there the bytes are copied out once for the digest.
  if (!(view.buffer instanceof ArrayBuffer)) view = view.slice();
  const digest = new Uint8Array(await subtle.digest("SHA-256", view));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function digestWithProgress(bytes, progress) {
  progress("verify", 0, bytes.size);
  const got = await sha256Hex(bytes);
  progress("verify", bytes.size, bytes.size);
  return got;
}

async function verify(bytes, expected, progress, name) {
  const got = await digestWithProgress(bytes, progress);
  if (got === null)
    throw new Error(`cannot check the SHA-256 of ${name}: this page has no SubtleCrypto (serve ` +
      `it over https or from localhost)`);
  if (got !== expected)
    throw new Error(`${name} has SHA-256 ${got}, not the expected ${expected}: the file is ` +
      `damaged or not the one meant; check the URL and the hash`);
}

// A server that stops sending without closing the connection would keep a load waiting forever:
// the request is aborted once nothing has arrived for stallSeconds.
class StallWatchdog {
  constructor(seconds) {
    this.seconds = seconds;
    this.controller = new AbortController();
    this.stalled = false;
    this.cancelled = false;
    this.timer = null;
    this.feed();
  }
  feed() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.stalled = true;
      this.controller.abort();
    }, this.seconds * 1000);
  }
  stop() {
    clearTimeout(this.timer);
    this.controller.abort();
  }
  cancel() {
    this.cancelled = true;
    this.stop();
  }
}

// A status code alone does not tell a user what to do next.
function httpAdvice(status) {
  if (status === 404 || status === 410) return " (there is no file at that address); check the URL";
  if (status === 401 || status === 403) return " (the server refuses to give it out); check the URL, or download the file and choose it instead";
  if (status >= 500) return " (the server failed); try again later";
  return "; check the URL";
}

// What fetch says of a failed request ("fetch failed", "Failed to fetch") names neither the URL
// nor the cause; Node keeps the cause apart.
function fetchFailure(url, e) {
  const cause = e && e.cause ? e.cause.code || e.cause.message : "";
  return new Error(`could not download ${url} (${e && e.message ? e.message : e}${cause ? `: ${cause}` : ""}); ` +
    `check the URL, that the server is running and, for another site, that it lets this page read ` +
    `it (CORS)`);
}

const GGUF_MAGIC = [0x47, 0x47, 0x55, 0x46]; // "GGUF"
// A URL that answers with something else (a web server's "not found" page with status 200, a
// login page) is refused at its first bytes: not downloaded whole, and never cached as the model.
function checkGgufMagic(bytes, url) {
  const head = mod.HEAPU8.subarray(bytes.ptr, bytes.ptr + Math.min(bytes.loaded, 32));
  if (head.length >= 4 && GGUF_MAGIC.every((b, i) => head[i] === b)) return;
  const text = String.fromCharCode(...head).replace(/[^\x20-\x7e]/g, ".");
  const page = /^\s*</.test(text) ? " (a web page: the server answered with HTML, not the file)" : "";
  throw new Error(`${url} is not a GGUF model: it starts with '${text}'${page}; check the URL`);
}

async function readUrl(source, store, progress, allocate, watchdog) {
  const { url } = source;
  const progressSeen = progress;
  progress = (phase, loaded, total) => {
    watchdog.feed(); // reading the cache and checking a hash take time too, not the server
    progressSeen(phase, loaded, total);
  };
  let meta = store ? await readMeta(store, url) : null;
  // The entry is the URL and its hash: a different expected hash means another file.
  const want = source.sha256 || null;
  if (meta && want && (meta.sha256 || meta.expectedSha256) && (meta.sha256 || meta.expectedSha256) !== want) {
    await dropEntry(store, url);
    meta = null;
  }
  if (meta && meta.complete) {
    checkSize(meta.size, url);
    const bytes = allocate(meta.size);
    if (await readParts(store, meta, bytes, progress) &&
        (await digestWithProgress(bytes, progress)) === meta.sha256)
      return;
    post({ type: "log", line: `edgellm: the cached copy of ${url} is damaged; downloading it again` });
    await dropEntry(store, url);
    meta = null;
  }
  const stored = meta ? meta.parts.reduce((a, b) => a + b, 0) : 0;
  let response;
  try {
    response = await fetch(url, { signal: watchdog.controller.signal,
      ...(stored > 0 ? { headers: { Range: `bytes=${stored}-` } } : {}) });
  } catch (e) {
    stopIfCancelled();
    if (watchdog.stalled)
      throw new Error(`${url} did not answer within ${watchdog.seconds} s; check the server and load it again`);
    throw fetchFailure(url, e);
  }
  if (!response.ok)
    throw new Error(`downloading ${url} failed: HTTP ${response.status}${httpAdvice(response.status)}`);
  const length = Number(response.headers.get("content-length"));
  const encoding = response.headers.get("content-encoding");
  if (encoding && encoding !== "identity") {
    await response.body.cancel();
    throw new Error(`${url} is served compressed (Content-Encoding: ${encoding}), so its size is ` +
      `unknown until it has all arrived; serve .gguf files without compression`);
  }
  let resumed = false;
  if (response.status === 206) {
    // The rest of the same file: the range starts where the cache ends and the total and
    // validator (where the server lets the page read them) are those of the first response.
    const range = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(response.headers.get("content-range") || "");
    const etag = response.headers.get("etag");
    resumed = stored > 0 && (range ? Number(range[1]) === stored && Number(range[3]) === meta.size
      : length === meta.size - stored) && !(etag && meta.etag && etag !== meta.etag);
    if (!resumed) {
      await response.body.cancel();
      if (store) await dropEntry(store, url);
      throw new Error(`${url} changed since its download started (the server answered a range ` +
        `of another file); load it again to download it whole`);
    }
  }
  const size = resumed ? meta.size : length;
  if (!Number.isFinite(size) || size <= 0)
    throw new Error(`${url} did not say how large it is (no Content-Length); ` +
      `serve it with one, or pass the model as a File or ArrayBuffer`);
  checkSize(size, url);
  if (store && !resumed) {
    if (meta) await dropEntry(store, url); // a full answer replaces what was there
    meta = { url, size, parts: [], complete: false, expectedSha256: want,
      etag: response.headers.get("etag"), savedAt: Date.now() };
  }
  const bytes = allocate(size);
  if (resumed && !(await readParts(store, meta, bytes, progress))) {
    await response.body.cancel();
    await dropEntry(store, url);
    throw new Error(`the partly downloaded copy of ${url} is damaged and was removed; load it ` +
      `again to download it whole`);
  }
  let partStart = bytes.loaded;
  const savePart = async (end) => {
    if (!store || end <= partStart) return;
    const i = meta.parts.length;
    // A copy: the part must not keep (shared) wasm memory alive.
    await store.put(partKey(url, i), new Response(mod.HEAPU8.slice(bytes.ptr + partStart, bytes.ptr + end)));
    meta.parts.push(end - partStart);
    partStart = end;
    await writeMeta(store, meta);
  };
  const stopped = async (why) => {
    await savePart(bytes.loaded).catch(() => {}); // what arrived is kept for the next attempt
    return new Error(`the download of ${url} stopped after ${bytes.loaded} of ${size} bytes ` +
      `(${why}); load it again to ${store ? "continue where it stopped" : "retry"}`);
  };
  const reader = response.body.getReader();
  for (;;) {
    let chunk;
    try {
      chunk = await reader.read();
    } catch (e) {
      if (watchdog.cancelled) {
        await stopped(LOAD_CANCELLED);
        stopIfCancelled();
      }
      throw await stopped(watchdog.stalled ? `nothing arrived for ${watchdog.seconds} s` : e.message || String(e));
    }
    if (chunk.done) break;
    const before = bytes.loaded;
    bytes.write(chunk.value);
    if (before < 4 && bytes.loaded >= 4) {
      try {
        checkGgufMagic(bytes, url);
      } catch (e) {
        if (store) await dropEntry(store, url);
        throw e;
      }
    }
    progress("download", bytes.loaded, size);
    while (store && bytes.loaded - partStart >= CACHE_PART) await savePart(partStart + CACHE_PART);
  }
  if (bytes.loaded !== size) throw await stopped("the connection ended early");
  if (size < 4) checkGgufMagic(bytes, url); // too short to have been checked above
  await savePart(bytes.loaded);
  if (want) {
    try {
      await verify(bytes, want, progress, url);
    } catch (e) {
      if (store) await dropEntry(store, url); // the next load downloads it whole
      throw e;
    }
  }
  const got = want || (store ? await digestWithProgress(bytes, progress) : null);
  if (store && got) {
    meta.sha256 = got;
    meta.complete = true;
    meta.savedAt = Date.now();
    await writeMeta(store, meta);
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
    // A File: its size is known first, then chunks are appended as they come.
    const size = source.file.size;
    checkSize(size, source.file.name || "the file");
    bytes = allocate(size);
    const reader = source.file.stream().getReader();
    for (;;) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (e) {
        // The browser's own word for an unreadable File is "network error" (Chromium), which
        // points the wrong way: the file changed, moved or was never made readable to the page.
        throw new Error(`could not read ${source.file.name || "the file"} after ${bytes.loaded} of ` +
          `${size} bytes (the browser said: ${e.message}); the file may have changed or moved ` +
          `since it was chosen: choose it again`);
      }
      const { done, value } = chunk;
      if (done) break;
      bytes.write(value);
      progress("load", bytes.loaded, bytes.size);
      if (loadCancelled) {
        await reader.cancel();
        stopIfCancelled();
      }
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

// A generation runs in slices of about SLICE_MS of wasm work, with a turn of the worker's event
// loop between them: there an "interrupt" or "unload" message is seen. Its prompt runs in slices
// too (passes of 48 tokens at least, more where 50 ms fits more); after each one that leaves more
// to do the worker posts how much is left. The shared-memory flag, where the page has one, stops
// it within a slice too (at its next token).
const SLICE_MS = 50;
let stopRequested = false;
let running = null; // the running generation's promise
const stopAsked = () => stopRequested || (interruptFlag !== null && Atomics.load(interruptFlag, 0) !== 0);

// One turn of the event loop: setTimeout(0) would be clamped to 4 ms between slices in browsers.
let nextTurn;
if (inNode) {
  nextTurn = () => new Promise((resolve) => setImmediate(resolve));
} else {
  const channel = new MessageChannel();
  const waiting = [];
  channel.port1.onmessage = () => waiting.shift()();
  nextTurn = () => new Promise((resolve) => {
    waiting.push(resolve);
    channel.port2.postMessage(0);
  });
}

function generate(request) {
  stopRequested = false; // an interrupt posted before this request was meant for an earlier one
  running = runGeneration(request);
  const done = () => { running = null; };
  running.then(done, done);
  return running;
}

async function runGeneration({ id, kind, prompt, messages, params }) {
  onText = (text) => post({ type: "delta", id, text });
  const arena = new Arena();
  const p = params;
  let status;
  try {
    const sampling = [p.temperature, p.top_p, p.top_k, p.min_p, p.repeat_penalty,
      p.presence_penalty, p.frequency_penalty, p.seed, p.max_tokens,
      arena.strs(p.stop), p.stop.length];
    if (kind === "chat") {
      status = mod._edgellm_wasm_begin_chat(engine, arena.strs(messages.map((m) => m.role)),
        arena.strs(messages.map((m) => m.content)), messages.length, ...sampling);
    } else {
      status = mod._edgellm_wasm_begin_complete(engine, arena.str(prompt), ...sampling);
    }
  } finally {
    arena.free(); // the generation keeps copies of what it needs
  }
  if (status !== 0) throw new Error(lastError() || `generation failed (${STATUS[status]})`);
  for (;;) {
    await nextTurn();
    if (stopAsked() || mod._edgellm_wasm_next(engine, SLICE_MS)) break;
    const promptLeft = mod._edgellm_wasm_prompt_left(engine);
    if (promptLeft > 0) post({ type: "prompt", id, left: promptLeft });
  }
  status = mod._edgellm_wasm_finish(engine);
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

async function unload() {
  if (running) {
    stopRequested = true;
    await running.catch(() => {});
  }
  if (engine) mod._edgellm_wasm_close(engine);
  engine = 0;
}

const handlers = { init, open, generate, logits, unload, cacheList, cacheDelete };

async function handle(msg) {
  if (msg.type === "cancel") {
    cancelLoad();
    return;
  }
  if (msg.type === "interrupt") {
    stopRequested = true;
    return;
  }
  try {
    const result = await handlers[msg.type](msg);
    post({ type: "result", id: msg.id, result });
  } catch (e) {
    post({ type: "error", id: msg.id, message: e && e.message ? e.message : String(e) });
  }
}
