// edgellm in the browser (and Node >= 18): the public JavaScript API, shaped like WebLLM and the
// OpenAI client. Inference runs in a worker (edgellm-worker.js); this module only validates
// requests, forwards them and shapes the answers. See docs/web.md.

const inNode = typeof process === "object" && !!(process.versions && process.versions.node) &&
  typeof window === "undefined";
const baseUrl = new URL("./", import.meta.url).href;

const FINISH = { 1: "stop", 2: "length", 3: "stop", 4: "length", 5: "abort" };

/** The variant this page can run: threads need SharedArrayBuffer (a cross-origin-isolated page). */
function threadsAvailable() {
  return typeof SharedArrayBuffer === "function" && (inNode || globalThis.crossOriginIsolated === true);
}

// The smallest module using a SIMD128 instruction: the build's kernels need them, and an engine
// without them would fail to compile the module with a message that does not say why.
const SIMD_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10,
  10, 1, 8, 0, 65, 0, 253, 15, 253, 98, 11]);
/** Whether this JavaScript engine runs WebAssembly with SIMD128, which both builds need. */
export function wasmSimdAvailable() {
  try {
    return typeof WebAssembly === "object" && WebAssembly.validate(SIMD_PROBE);
  } catch {
    return false;
  }
}

// The smallest module using relaxed SIMD's i16x8.relaxed_dot_i8x16_i7x16_s (0xfd 0x112), the
// instruction of the relaxed builds (edgellm-<variant>-relaxed.wasm): Chromium 114 and later run
// it; Node 20 only with --experimental-wasm-relaxed-simd.
const RELAXED_SIMD_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 7, 1, 96, 2, 123, 123, 1,
  123, 3, 2, 1, 0, 10, 11, 1, 9, 0, 32, 0, 32, 1, 253, 146, 2, 11]);
/** Whether this engine runs relaxed SIMD's dot products, so that the relaxed build can be used. */
export function wasmRelaxedSimdAvailable() {
  try {
    return typeof WebAssembly === "object" && WebAssembly.validate(RELAXED_SIMD_PROBE);
  } catch {
    return false;
  }
}

function hardwareThreads() {
  const n = typeof navigator === "object" && navigator.hardwareConcurrency;
  return Math.max(1, Math.min(n || 4, 16));
}

async function startWorker() {
  if (inNode) {
    const { Worker } = await import("node:worker_threads");
    const { fileURLToPath } = await import("node:url");
    const w = new Worker(fileURLToPath(new URL("./edgellm-worker.js", import.meta.url)));
    w.unref();
    return {
      post: (m, t) => w.postMessage(m, t),
      listen: (fn) => w.on("message", fn),
      onStop: (fn) => {
        w.on("error", (e) => fn(e && e.message ? e.message : String(e)));
        w.on("exit", (code) => fn(`it exited with code ${code}`));
      },
      terminate: () => w.terminate(),
    };
  }
  const w = new Worker(new URL("./edgellm-worker.js", import.meta.url));
  return {
    post: (m, t) => w.postMessage(m, t),
    listen: (fn) => { w.onmessage = (ev) => fn(ev.data); },
    onStop: (fn) => {
      // A script that failed to load or threw at the top level: the event says little more.
      w.onerror = (ev) => {
        ev.preventDefault();
        fn(ev.message || "edgellm-worker.js could not be loaded from next to edgellm.mjs");
      };
    },
    terminate: () => w.terminate(),
  };
}

// ---- request validation: the ranges `edgellm serve` accepts ---------------------------------

function fail(field, what) {
  throw new TypeError(`'${field}' ${what}`);
}
/** A caller's value as an error message can show it: NaN, 5n and "5" as themselves, never JSON's
 * "null" for NaN nor a TypeError for a BigInt. */
function describe(v) {
  if (typeof v === "string") return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  if (typeof v === "bigint") return `${v}n`;
  if (typeof v !== "object" || v === null) return String(v);
  try {
    return (JSON.stringify(v) ?? typeof v).slice(0, 60);
  } catch {
    return typeof v;
  }
}
function number(req, field, lo, hi, dflt) {
  const v = req[field];
  if (v === undefined || v === null) return dflt;
  if (typeof v !== "number" || !Number.isFinite(v)) fail(field, `must be a number, got ${describe(v)}`);
  if (v < lo || v > hi) fail(field, `must be between ${lo} and ${hi}, got ${v}`);
  return v;
}
function integer(req, field, lo, hi, dflt) {
  const v = number(req, field, lo, hi, dflt);
  if (!Number.isInteger(v)) fail(field, `must be an integer, got ${v}`);
  return v;
}

// Request fields `edgellm serve` implements and this engine does not, with the values that ask for
// nothing. Ignoring any other value answered another request than the one made: free text for
// a JSON response_format, tokens a logit_bias bans, no tool calls for the tools given.
const serverOnlyFields = {
  response_format: (v) => typeof v === "object" && v.type === "text",
  grammar: () => false,
  logit_bias: (v) => typeof v === "object" && Object.keys(v).length === 0,
  tools: (v) => Array.isArray(v) && v.length === 0,
  logprobs: (v) => v === false || v === 0,
  top_logprobs: (v) => v === 0,
};

function samplingParams(req) {
  if (typeof req !== "object" || req === null) throw new TypeError("the request must be an object");
  for (const [field, asksNothing] of Object.entries(serverOnlyFields)) {
    const v = req[field];
    if (v !== undefined && v !== null && !asksNothing(v))
      fail(field, `${describe(v)} is not supported in the browser engine (edgellm serve has it); remove the field`);
  }
  if (req.n !== undefined && req.n !== 1) fail("n", "must be 1 (send separate requests for more choices)");
  let temperature = number(req, "temperature", 0, 2, 1);
  let topP = number(req, "top_p", 0, 1, 1);
  if (topP === 0) { temperature = 0; topP = 1; } // only the most likely token remains
  let stop = req.stop ?? [];
  if (typeof stop === "string") stop = [stop];
  if (!Array.isArray(stop) || stop.some((s) => typeof s !== "string"))
    fail("stop", "must be a string or an array of strings");
  if (stop.length > 4) fail("stop", `holds ${stop.length} sequences; at most 4 are allowed`);
  const seed = req.seed === undefined || req.seed === null
    ? Math.floor(Math.random() * 2 ** 32)
    : integer(req, "seed", 0, Number.MAX_SAFE_INTEGER, 0);
  return {
    temperature,
    top_p: topP,
    top_k: integer(req, "top_k", 0, 1 << 30, 0),
    min_p: number(req, "min_p", 0, 1, 0),
    repeat_penalty: number(req, "repeat_penalty", 0.01, 10, 1),
    presence_penalty: number(req, "presence_penalty", -2, 2, 0),
    frequency_penalty: number(req, "frequency_penalty", -2, 2, 0),
    seed,
    max_tokens: integer(req, req.max_completion_tokens !== undefined ? "max_completion_tokens" : "max_tokens", 1, 1 << 30, 0),
    stop: stop.filter((s) => s.length > 0), // an empty stop string would end every generation at once
  };
}

function chatMessages(req) {
  const m = req.messages;
  if (!Array.isArray(m) || m.length === 0) fail("messages", "must be a non-empty array of {role, content}");
  return m.map((msg, i) => {
    if (typeof msg !== "object" || msg === null) fail(`messages[${i}]`, "must be an object");
    let role = msg.role === "developer" ? "system" : msg.role;
    if (!["system", "user", "assistant"].includes(role))
      fail(`messages[${i}].role`, `'${msg.role}' is not supported (use system, user or assistant)`);
    let content = msg.content;
    if (Array.isArray(content)) // the parts form: text parts joined
      content = content.map((p) => {
        if (!p || p.type !== "text" || typeof p.text !== "string")
          fail(`messages[${i}].content`, "parts must be {type: 'text', text}");
        return p.text;
      }).join("");
    if (typeof content !== "string") fail(`messages[${i}].content`, "must be a string");
    return { role, content };
  });
}

// ---- responses ----------------------------------------------------------------------------

let counter = 0;
function responseId(prefix) {
  counter += 1;
  return `${prefix}-${Date.now().toString(36)}${counter.toString(36)}`;
}

function usageOf(r) {
  return {
    prompt_tokens: r.promptTokens,
    completion_tokens: r.completionTokens,
    total_tokens: r.promptTokens + r.completionTokens,
    prompt_tokens_details: { cached_tokens: r.cachedTokens },
    extra: {
      time_to_first_token_s: r.ttftSeconds,
      prefill_tokens_per_s: r.prefillSeconds > 0 ? (r.promptTokens - r.cachedTokens) / r.prefillSeconds : 0,
      decode_tokens_per_s: r.decodeSeconds > 0 ? (r.completionTokens - 1) / r.decodeSeconds : 0,
    },
  };
}

/** Chunks pushed by the worker, consumed by `for await`. */
class ChunkStream {
  constructor(onAbandon) {
    this.queue = []; this.waiting = null; this.ended = false; this.error = null;
    this.abandoned = false; this.onAbandon = onAbandon;
  }
  push(chunk) { if (!this.abandoned) { this.queue.push(chunk); this.wake(); } }
  end(error) { this.ended = true; this.error = error || null; this.wake(); }
  wake() { if (this.waiting) { const w = this.waiting; this.waiting = null; w(); } }
  async *[Symbol.asyncIterator]() {
    try {
      for (;;) {
        if (this.queue.length) { yield this.queue.shift(); continue; }
        if (this.ended) { if (this.error) throw this.error; return; }
        await new Promise((r) => { this.waiting = r; });
      }
    } finally {
      // The caller left the loop early (break, return, a throw): nobody reads the rest, so the
      // generation must not go on filling the context and holding up the requests queued after it.
      if (!this.ended) {
        this.abandoned = true;
        this.queue = [];
        this.onAbandon();
      }
    }
  }
}

class Engine {
  constructor(worker, info, runtime) {
    this.worker = worker;
    this.info = info;
    this.runtime = runtime;
    this.pending = new Map();
    this.nextId = 1;
    this.queue = Promise.resolve(); // one generation at a time
    this.unloading = null;
    this.stoppedBecause = "the engine was unloaded; create a new one";
    this.interruptFlag = runtime.interruptBuffer ? new Int32Array(runtime.interruptBuffer) : null;
    // Async, so that a bad request is a rejected promise like every other failure, not an
    // exception thrown past the caller's .catch().
    this.chat = { completions: { create: async (req) => this.create("chat", req) } };
    this.completions = { create: async (req) => this.create("completion", req) };
    // Downloaded models kept in Cache Storage (docs/web.md); empty in Node.
    this.cache = {
      list: () => this.call("cacheList", {}),
      delete: async (url) => {
        if (typeof url !== "string" && !(url instanceof URL)) fail("url", "must be the model's URL");
        return this.call("cacheDelete", { url: absoluteUrl(String(url)) });
      },
    };
  }

  call(type, fields, onDelta) {
    if (!this.worker) return Promise.reject(new Error(this.stoppedBecause));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, onDelta });
      this.worker.post({ type, id, ...fields });
    });
  }

  /** The worker is gone (unloaded, crashed or never started): what waited on it fails now with
   * message, rather than never settling, and so does every later call. */
  detach(message) {
    if (!this.worker) return;
    this.worker = null;
    this.stoppedBecause = message;
    const error = new Error(message);
    for (const p of this.pending.values()) p.reject(error);
    this.pending.clear();
  }

  /** Queues fn after the running request; requests still queued when unload starts fail. */
  enqueue(fn) {
    const run = () => this.unloading ? Promise.reject(new Error("the engine was unloaded; create a new one")) : fn();
    const done = this.queue.then(run, run);
    this.queue = done.catch(() => {});
    return done;
  }

  dispatch(msg) {
    const p = this.pending.get(msg.id);
    if (!p) return;
    if (msg.type === "delta") { p.onDelta?.(msg.text); return; }
    if (msg.type === "prompt") return; // the prompt is still being evaluated (not surfaced yet)
    this.pending.delete(msg.id);
    if (msg.type === "error") p.reject(new Error(msg.message));
    else p.resolve(msg.result);
  }

  create(kind, req) {
    const params = samplingParams(req);
    const fields = kind === "chat" ? { kind, messages: chatMessages(req), params }
      : { kind, prompt: typeof req.prompt === "string" ? req.prompt : fail("prompt", "must be a string"), params };
    const id = responseId(kind === "chat" ? "chatcmpl" : "cmpl");
    const created = Math.floor(Date.now() / 1000);
    const model = this.info.name || this.info.architecture;
    const object = kind === "chat" ? "chat.completion" : "text_completion";
    const choiceOf = (text, finish) => kind === "chat"
      ? { index: 0, message: { role: "assistant", content: text }, finish_reason: finish, logprobs: null }
      : { index: 0, text, finish_reason: finish, logprobs: null };
    const chunkOf = (text, finish, first) => ({
      id, object: kind === "chat" ? "chat.completion.chunk" : "text_completion", created, model,
      choices: [kind === "chat"
        ? { index: 0, delta: first ? { role: "assistant", content: text } : (text ? { content: text } : {}), finish_reason: finish, logprobs: null }
        : { index: 0, text, finish_reason: finish, logprobs: null }],
    });

    if (req.stream) {
      let running = false;
      const stream = new ChunkStream(() => { if (running) this.interrupt(); });
      let first = true;
      // A stream yields only once its generation runs, so it cannot be left before that.
      this.enqueue(() => {
        running = true;
        return this.generate(fields, (text) => {
          stream.push(chunkOf(text, null, first));
          first = false;
        }).finally(() => { running = false; });
      }).then((r) => {
        const last = chunkOf("", FINISH[r.stopReason] || "stop", first);
        last.usage = usageOf(r);
        stream.push(last);
        stream.end();
      }, (e) => stream.end(e));
      return Promise.resolve(stream);
    }
    let text = "";
    return this.enqueue(() => this.generate(fields, (t) => { text += t; })).then((r) => ({
      id, object, created, model,
      choices: [choiceOf(text, FINISH[r.stopReason] || "stop")],
      usage: usageOf(r),
    }));
  }

  /** Posts one generation (its turn in the queue has come). The interrupt flag is cleared here,
   * not when the worker starts it: an interrupt (or unload) between this post and the worker's
   * first token must stop it, not be forgotten. */
  generate(fields, onDelta) {
    if (this.interruptFlag) Atomics.store(this.interruptFlag, 0, 0);
    return this.call("generate", fields, onDelta);
  }

  /** Stops the running generation (finish_reason "abort"): after its current token where the
   * page shares memory with the worker, else after the worker's current slice (about 50 ms). */
  interrupt() {
    if (this.interruptFlag) Atomics.store(this.interruptFlag, 0, 1);
    else this.worker?.post({ type: "interrupt" });
  }

  /** Logits (n_tokens x n_vocab) of token ids evaluated from an empty cache; kernelSet "" is the
   * default set, "scalar" the portable kernels. For tests. */
  logits(tokens, kernelSet = "") {
    // Int32Array.from turned a string's characters, and anything else not a token id, into 0.
    const nVocab = this.info.n_vocab;
    const isList = Array.isArray(tokens) || (ArrayBuffer.isView(tokens) && !(tokens instanceof DataView));
    if (!isList || tokens.length === 0)
      return Promise.reject(new TypeError(`'tokens' must be a non-empty array of token ids, got ${describe(tokens)}`));
    const bad = Array.prototype.findIndex.call(tokens, (t) => !Number.isInteger(t) || t < 0 || t >= nVocab);
    if (bad >= 0)
      return Promise.reject(new TypeError(`'tokens' holds ${describe(tokens[bad])} at index ${bad}: token ids are integers 0..${nVocab - 1}`));
    return this.enqueue(() => this.call("logits", { tokens: Int32Array.from(tokens), kernelSet }));
  }

  runtimeInfo() {
    return {
      threads: this.runtime.threads,
      multiThreaded: this.runtime.variant === "mt",
      variant: this.runtime.variant,
      crossOriginIsolated: this.runtime.isolated,
      kernelSet: this.runtime.kernelSet,
      relaxedSimd: this.runtime.relaxedSimd,
      interruptible: true, // with shared memory after a token, without it after a slice
      model: this.info,
    };
  }

  /** Stops the running generation, fails the queued ones and frees the model; every call,
   * however many at once, settles when that is done. */
  unload() {
    if (!this.unloading) this.unloading = this.close();
    return this.unloading;
  }

  async close() {
    if (!this.worker) return;
    this.interrupt();
    // The running request stops within a slice; a worker that does not answer in time is ended
    // (detach below fails what still waits on it).
    const stopping = this.queue.then(() => this.call("unload", {}));
    await settledOrTimedOut(stopping, UNLOAD_GRACE_MS);
    const worker = this.worker;
    this.detach("the engine was unloaded; create a new one");
    await worker?.terminate();
  }
}

// A caller's callback that throws must not stop the engine: in Node an exception thrown from the
// worker's message listener ends the process, and in browsers it skips what followed it. It is
// reported once per callback (console.error, naming it) and the callback is still called.
function guardedCallback(name, fn) {
  if (fn === undefined || fn === null) return () => {};
  if (typeof fn !== "function") fail(name, `must be a function, got ${describe(fn)}`);
  let reported = false;
  const report = (e) => {
    if (reported) return;
    reported = true;
    console.error(`edgellm: the ${name} callback threw (${e && e.stack ? e.stack : e}); loading goes ` +
      `on and it is still called (later errors of it are not reported)`);
  };
  return (arg) => {
    try {
      const returned = fn(arg);
      if (returned && typeof returned.then === "function") returned.then(undefined, report); // async
    } catch (e) {
      report(e);
    }
  };
}

function isAbortSignal(signal) {
  return typeof signal === "object" && signal !== null && typeof signal.aborted === "boolean" &&
    typeof signal.addEventListener === "function";
}

// What createEngine rejects with when its signal aborts: an AbortError, as fetch's. The signal's
// own reason (an AbortSignal.timeout()'s TimeoutError, say) is kept as its cause.
function loadAborted(signal) {
  const error = new DOMException("loading the model was aborted (the signal given to createEngine); " +
    "nothing stays loaded, and a download's cached parts let the next load continue it", "AbortError");
  Object.defineProperty(error, "cause", { value: signal.reason, configurable: true, writable: true });
  return error;
}

// How long a worker asked to stop may take before it is ended anyway: a worker inside one long
// wasm call (parsing a model, a slice that never returns) answers no message. An aborted load
// stops its download and keeps what arrived; an unload waits for the running request to stop
// (within a slice: a prompt's slice of a 1B model, 48 tokens, takes 2-3 s without shared memory)
// and frees the model.
const CANCEL_GRACE_MS = 1000;
const UNLOAD_GRACE_MS = 5000;

// Waits for promise to settle, or ms at most; never rejects.
async function settledOrTimedOut(promise, ms) {
  let timer;
  await Promise.race([promise.catch(() => {}), new Promise((resolve) => { timer = setTimeout(resolve, ms); })]);
  clearTimeout(timer);
}

function absoluteUrl(url) {
  return new URL(url, globalThis.location?.href ?? baseUrl).href;
}

function modelSource(model) {
  if (typeof model === "string") {
    if (/^(https?:|blob:|data:)/.test(model) || !inNode)
      return { kind: "url", url: absoluteUrl(model) };
    return { kind: "path", path: model };
  }
  if (model instanceof URL) return model.protocol === "file:" && inNode
    ? { kind: "path", path: decodeURIComponent(model.pathname) } : { kind: "url", url: model.href };
  if (model instanceof ArrayBuffer) return { kind: "buffer", buffer: model };
  if (ArrayBuffer.isView(model))
    return { kind: "buffer", buffer: model.buffer.slice(model.byteOffset, model.byteOffset + model.byteLength) };
  if (typeof Blob === "function" && model instanceof Blob) return { kind: "file", file: model };
  throw new TypeError("'model' must be a URL, a file path (Node), an ArrayBuffer, a typed array or a File");
}

/**
 * Loads a GGUF model and returns an engine. options: model (URL, path in Node, ArrayBuffer,
 * File), threads (default: the CPU count, 1 where the page cannot share memory), contextSize,
 * onProgress({phase: "download"|"cache"|"verify"|"load", loaded, total}), variant ("mt"|"st",
 * default: the best the page allows), sha256 (the model's expected hash, checked before use),
 * cache (default true: downloads are kept in Cache Storage and resumed), relaxedSimd (default
 * true: the relaxed-SIMD build where the engine runs it; false: the plain SIMD128 build),
 * downloadStallSeconds (default 60: a download that receives nothing for that long fails),
 * onLog(line), signal (an AbortSignal: aborting it rejects with an AbortError and ends the load).
 */
export async function createEngine(options = {}) {
  const source = modelSource(options.model);
  if (options.sha256 !== undefined) {
    if (typeof options.sha256 !== "string" || !/^[0-9a-fA-F]{64}$/.test(options.sha256))
      fail("sha256", `must be 64 hexadecimal digits, got ${JSON.stringify(options.sha256)}`);
    source.sha256 = options.sha256.toLowerCase();
  }
  if (options.cache !== undefined && typeof options.cache !== "boolean")
    fail("cache", `must be true or false, got ${JSON.stringify(options.cache)}`);
  if (options.relaxedSimd !== undefined && typeof options.relaxedSimd !== "boolean")
    fail("relaxedSimd", `must be true or false, got ${JSON.stringify(options.relaxedSimd)}`);
  const relaxed = options.relaxedSimd !== false && wasmRelaxedSimdAvailable();
  if (!wasmSimdAvailable())
    throw new Error("this browser cannot run WebAssembly SIMD, which edgellm needs: use a current " +
      "Chrome, Edge or Firefox, or Safari 16.4 or later");
  const isolated = threadsAvailable();
  let threads = options.threads ?? hardwareThreads();
  if (!Number.isInteger(threads) || threads < 1 || threads > 64)
    fail("threads", `must be an integer from 1 to 64, got ${describe(options.threads)}`);
  const contextSize = options.contextSize ?? 0;
  if (!Number.isInteger(contextSize) || contextSize < 0 || contextSize > 2 ** 31 - 1)
    fail("contextSize", `must be a whole number of tokens (0: the model's own, at most 4096), got ${describe(contextSize)}`);
  const stallSeconds = options.downloadStallSeconds ?? 60;
  if (typeof stallSeconds !== "number" || !(stallSeconds > 0))
    fail("downloadStallSeconds", `must be a number of seconds above 0, got ${describe(stallSeconds)}`);
  if (options.variant !== undefined && options.variant !== "mt" && options.variant !== "st")
    fail("variant", `must be "mt" (threads) or "st" (one thread), got ${describe(options.variant)}`);
  let variant = options.variant ?? (isolated && threads > 1 ? "mt" : "st");
  if (variant === "mt" && !isolated)
    throw new Error("threads need SharedArrayBuffer: serve the page with the headers " +
      "Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp");
  if (variant === "st") threads = 1;
  const onProgress = guardedCallback("onProgress", options.onProgress);
  const onLog = guardedCallback("onLog", options.onLog);
  const { signal } = options;
  if (signal !== undefined && !isAbortSignal(signal))
    fail("signal", `must be an AbortSignal (an AbortController's signal), got ${describe(signal)}`);
  if (signal?.aborted) throw loadAborted(signal);
  const interruptBuffer = typeof SharedArrayBuffer === "function" && isolated ? new SharedArrayBuffer(4) : null;
  const worker = await startWorker();
  const engine = new Engine(worker, null, { variant, threads, isolated, interruptBuffer });
  worker.listen((msg) => {
    if (msg.type === "progress") onProgress({ phase: msg.phase, loaded: msg.loaded, total: msg.total });
    else if (msg.type === "log") onLog(msg.line);
    else engine.dispatch(msg);
  });
  worker.onStop((why) => {
    engine.detach(`the engine's worker stopped (${why}); create a new engine`);
    worker.terminate(); // a browser worker lives on after an uncaught error: nothing uses it now
  });
  const load = async () => {
    const init = await engine.call("init", { variant, relaxed, baseUrl, threads, interrupt: interruptBuffer });
    engine.runtime.kernelSet = init.kernelSet;
    engine.runtime.relaxedSimd = init.relaxed;
    if (signal?.aborted) return; // the model is not sent for
    const transfer = source.kind === "buffer" ? [source.buffer] : [];
    const id = engine.nextId++;
    engine.info = await new Promise((resolve, reject) => {
      engine.pending.set(id, { resolve, reject });
      worker.post({ type: "open", id, source, nCtx: contextSize, threads, stallSeconds,
        cache: options.cache ?? true }, transfer);
    });
  };
  const loading = load();
  let onAbort = null;
  const aborted = signal && new Promise((resolve) => {
    onAbort = resolve;
    if (signal.aborted) resolve(); // while the worker started: its event has been and gone
    else signal.addEventListener("abort", onAbort, { once: true });
  });
  try {
    await (aborted ? Promise.race([loading, aborted]) : loading);
    if (signal?.aborted) {
      // The worker stops its download, keeping what arrived in the cache as a broken download
      // does, and frees the model's memory; ending the worker below frees the rest.
      worker.post({ type: "cancel" });
      await settledOrTimedOut(loading, CANCEL_GRACE_MS);
      throw loadAborted(signal);
    }
  } catch (e) {
    loading.catch(() => {}); // settled by detach below when the race left it pending
    const error = signal?.aborted && e?.name !== "AbortError" ? loadAborted(signal) : e;
    engine.detach(error && error.message ? error.message : String(error));
    await worker.terminate();
    throw error;
  } finally {
    if (onAbort) signal.removeEventListener("abort", onAbort);
  }
  return engine;
}
