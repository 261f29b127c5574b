// The WebAssembly build through its JavaScript API in Node (run by tests/web_node.sh, which
// builds web/dist and the models named in the environment): greedy completions equal the
// reference text and `edgellm run --temp 0`, logits equal the native scalar kernels' bit for bit,
// streaming, interrupt, unload, bad model bytes, a model over the memory limit, bad requests.
import { strict as assert } from "node:assert";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";

const env = process.env;
const { createEngine, wasmRelaxedSimdAvailable } = await import(path.join(env.SOURCE_DIR, "web/dist/edgellm.mjs"));
const tmp = env.WEB_TMP;
// WEB_RELAXED=1 (node --experimental-wasm-relaxed-simd): the relaxed build, through the checks
// that compare results (the rest ran in the plain run; the JavaScript is the same).
const relaxed = env.WEB_RELAXED === "1";
const relaxedChecks = /runtime info|reference prompts|logits equal|relaxedSimd/;
// WEB_CHECKS=regex runs only the checks whose names match (to try a few, or an older web/dist).
const only = env.WEB_CHECKS ? new RegExp(env.WEB_CHECKS) : null;
let failures = 0;
async function check(name, fn) {
  if (relaxed && !relaxedChecks.test(name)) return;
  if (only && !only.test(name)) return;
  try {
    await fn();
    console.log(`ok: ${name}`);
  } catch (e) {
    failures++;
    console.log(`FAIL: ${name}: ${e && e.stack ? e.stack : e}`);
  }
}
async function rejects(promiseFn, pattern) {
  let error = null;
  try { await promiseFn(); } catch (e) { error = e; }
  assert.ok(error, "expected an error");
  assert.match(error.message, pattern);
  assert.ok(!error.message.includes("\n"), `one-line message: ${error.message}`);
}

const greedy = fs.readFileSync(path.join(env.SHARED, "testdata/aidreams/greedy.tsv"), "utf8")
  .split("\n").filter((l) => l && !l.startsWith("#")).map((l) => l.split("\t"));
const unescape = (s) => s.replace(/\\n/g, "\n").replace(/\\t/g, "\t");

for (const variant of ["st", "mt"]) {
  const threads = variant === "mt" ? 2 : 1;
  const model = path.join(env.SHARED, "models/aidreams260K-f32.gguf");
  const engine = await createEngine({ model, variant, threads });

  await check(`${variant}: runtime info`, () => {
    const info = engine.runtimeInfo();
    assert.equal(info.variant, variant);
    assert.equal(info.threads, threads);
    assert.equal(info.kernelSet, relaxed ? "wasm-relaxed" : "wasm-simd");
    assert.equal(info.relaxedSimd, relaxed);
    assert.equal(info.model.n_vocab, 512);
  });

  await check(`${variant}: the 7 reference prompts give the reference text and edgellm run's`, async () => {
    assert.equal(greedy.length, 7);
    for (const [prompt, , , text] of greedy) {
      const c = await engine.completions.create({ prompt, temperature: 0, max_tokens: 48 });
      assert.equal(c.choices[0].text, unescape(text), `prompt '${prompt}'`);
      const native = execFileSync(env.EDGELLM, ["run", "-m", model, "-p", prompt, "-n", "48",
        "--temp", "0", "-t", "1"], { stdio: ["ignore", "pipe", "ignore"] }).toString();
      assert.equal(c.choices[0].text, native.replace(/\n$/, ""), `prompt '${prompt}' against edgellm run`);
      assert.equal(c.object, "text_completion");
      assert.match(c.id, /^cmpl-/);
      assert.equal(c.choices[0].finish_reason, "length");
      assert.equal(c.usage.completion_tokens, 48);
      assert.equal(c.usage.total_tokens, c.usage.prompt_tokens + 48);
    }
  });

  await check(`${variant}: streaming chunks add up to the whole answer`, async () => {
    const whole = await engine.chat.completions.create({
      messages: [{ role: "user", content: "I dreamed" }], temperature: 0, max_tokens: 20 });
    const stream = await engine.chat.completions.create({
      messages: [{ role: "user", content: "I dreamed" }], temperature: 0, max_tokens: 20, stream: true });
    let text = "", chunks = 0, last = null;
    for await (const chunk of stream) {
      assert.equal(chunk.object, "chat.completion.chunk");
      assert.equal(chunk.id, (last ?? chunk).id);
      text += chunk.choices[0].delta.content ?? "";
      chunks++;
      last = chunk;
    }
    assert.ok(chunks > 2, `${chunks} chunks`);
    assert.equal(text, whole.choices[0].message.content);
    assert.equal(last.choices[0].finish_reason, whole.choices[0].finish_reason);
    assert.equal(last.usage.completion_tokens, whole.usage.completion_tokens);
    assert.equal(whole.object, "chat.completion");
    assert.equal(whole.choices[0].message.role, "assistant");
  });

  await check(`${variant}: interrupt stops a running generation`, async () => {
    const stream = await engine.completions.create({ prompt: "The machine", max_tokens: 100,
      temperature: 0.8, seed: 3, stream: true });
    let n = 0, finish = null, usage = null;
    for await (const chunk of stream) {
      if (++n === 3) engine.interrupt();
      finish = chunk.choices[0].finish_reason ?? finish;
      usage = chunk.usage ?? usage;
    }
    assert.equal(finish, "abort");
    assert.ok(usage.completion_tokens < 100, `${usage.completion_tokens} tokens despite the interrupt`);
    // The engine still works afterwards.
    const c = await engine.completions.create({ prompt: "I dreamed", temperature: 0, max_tokens: 48 });
    assert.equal(c.choices[0].text, unescape(greedy[0][3]));
  });

  await check(`${variant}: bad requests get clear errors`, async () => {
    await rejects(() => engine.completions.create({ prompt: "x", temperature: 3 }), /'temperature' must be between 0 and 2/);
    await rejects(() => engine.completions.create({ prompt: 5 }), /'prompt' must be a string/);
    await rejects(() => engine.chat.completions.create({ messages: [] }), /'messages' must be a non-empty array/);
    await rejects(() => engine.chat.completions.create({ messages: [{ role: "tool", content: "x" }] }), /role/);
    await rejects(() => engine.completions.create({ prompt: "x", stop: ["a", "b", "c", "d", "e"] }), /at most 4/);
    // logits() took a string's characters, and any value not a token id, as token 0.
    await rejects(() => engine.logits("abc"), /'tokens' must be a non-empty array of token ids, got "abc"/);
    await rejects(() => engine.logits([]), /'tokens' must be a non-empty array/);
    await rejects(() => engine.logits([1, 2.5]), /'tokens' holds 2.5 at index 1: token ids are integers 0..511/);
    await rejects(() => engine.logits([1, 512]), /'tokens' holds 512 at index 1/);
    await rejects(() => engine.logits(["1"]), /'tokens' holds "1" at index 0/);
    assert.equal((await engine.logits(Uint16Array.from([1, 2]))).length, 2 * 512);
  });

  await check(`${variant}: a bad request is a rejected promise, not an exception thrown at the call`, async () => {
    let promise = null;
    assert.doesNotThrow(() => { promise = engine.completions.create({ prompt: "x", top_k: -1 }); });
    await assert.rejects(promise, /'top_k' must be between 0/);
    assert.doesNotThrow(() => { promise = engine.chat.completions.create({ messages: "hi", stream: true }); });
    await assert.rejects(promise, /'messages' must be a non-empty array/);
    assert.doesNotThrow(() => { promise = engine.cache.delete(42); });
    await assert.rejects(promise, /'url' must be the model's URL/);
  });

  await check(`${variant}: sampling parameters and stop strings act as in edgellm run`, async () => {
    const model = path.join(env.SHARED, "models/aidreams260K-f32.gguf");
    const prompt = "The little dog";
    const sampling = { temperature: 0.9, top_k: 30, top_p: 0.9, min_p: 0.02, repeat_penalty: 1.15, seed: 11 };
    const c = await engine.completions.create({ prompt, max_tokens: 40, ...sampling });
    const native = execFileSync(env.EDGELLM, ["run", "-m", model, "-p", prompt, "-n", "40", "-t", "1",
      "--temp", "0.9", "--top-k", "30", "--top-p", "0.9", "--min-p", "0.02", "--repeat-penalty", "1.15",
      "--seed", "11"], { stdio: ["ignore", "pipe", "ignore"] }).toString().replace(/\n$/, "");
    assert.equal(c.choices[0].text, native);
    const other = await engine.completions.create({ prompt, max_tokens: 40, ...sampling, seed: 12 });
    assert.notEqual(other.choices[0].text, c.choices[0].text, "another seed, another text");
    // A stop string: the text ends before it, finish_reason "stop".
    const word = c.choices[0].text.trim().split(/\s+/)[2];
    const stopped = await engine.completions.create({ prompt, max_tokens: 40, ...sampling, stop: [word] });
    assert.equal(stopped.choices[0].finish_reason, "stop");
    assert.equal(stopped.choices[0].text, c.choices[0].text.slice(0, c.choices[0].text.indexOf(word)));
  });

  await check(`${variant}: unload frees the engine and later calls fail clearly`, async () => {
    await engine.unload();
    await rejects(() => engine.completions.create({ prompt: "x" }), /unloaded/);
  });
}

await check("logits equal the native scalar kernels' bit for bit on quantized models", async () => {
  for (const name of env.LOGIT_MODELS.split(" ")) {
    const ids = fs.readFileSync(path.join(tmp, "ids.txt"), "utf8").trim().split(/\s+/).map(Number);
    const want = new Uint32Array(fs.readFileSync(path.join(tmp, `${name}.logits`)).buffer.slice(0));
    for (const variant of ["st", "mt"]) {
      const engine = await createEngine({ model: path.join(tmp, `${name}.gguf`), variant, threads: variant === "mt" ? 2 : 1 });
      for (const set of ["", "scalar"]) {
        const got = new Uint32Array((await engine.logits(ids, set)).buffer);
        assert.equal(got.length, want.length, name);
        const bad = got.findIndex((v, i) => v !== want[i]);
        assert.equal(bad, -1, `${name} ${variant} kernels '${set || engine.runtimeInfo().kernelSet}': ` +
          `logit ${bad} differs (${new Float32Array(got.buffer)[bad]} vs ${new Float32Array(want.buffer)[bad]})`);
        // The first token alone runs the decode kernels (the model's Q4_0 matrices laid out by
        // four in the relaxed build), not the prompt's tiles: its logits are the first row.
        const one = new Uint32Array((await engine.logits(ids.slice(0, 1), set)).buffer);
        const badOne = one.findIndex((v, i) => v !== want[i]);
        assert.equal(badOne, -1, `${name} ${variant} kernels '${set || engine.runtimeInfo().kernelSet}', ` +
          `one token: logit ${badOne} differs (${new Float32Array(one.buffer)[badOne]} vs ${new Float32Array(want.buffer)[badOne]})`);
      }
      await engine.unload();
    }
  }
});

await check("relaxedSimd: the relaxed build only where the engine runs it, never forced on", async () => {
  assert.equal(wasmRelaxedSimdAvailable(), relaxed, "Node validates relaxed SIMD only with its flag");
  const model = path.join(tmp, "synth-q4_k_m.gguf");
  const ids = fs.readFileSync(path.join(tmp, "ids.txt"), "utf8").trim().split(/\s+/).map(Number);
  const plain = await createEngine({ model, variant: "st", threads: 1, relaxedSimd: false });
  assert.equal(plain.runtimeInfo().relaxedSimd, false);
  assert.equal(plain.runtimeInfo().kernelSet, "wasm-simd");
  // The unpatched module's probe refuses the set even when asked for it by name.
  await rejects(() => plain.logits(ids, "wasm-relaxed"), /kernel set 'wasm-relaxed' is not available/);
  await plain.unload();
  await rejects(() => createEngine({ model, relaxedSimd: "yes" }), /'relaxedSimd' must be true or false/);
  if (relaxed) {
    // A folder served without the relaxed files (an app that copied only the plain .wasm): the
    // engine that could run them falls back to the plain build, says why, and gives the same text.
    const dist = path.join(tmp, "dist-without-relaxed");
    fs.rmSync(dist, { recursive: true, force: true });
    fs.cpSync(path.join(env.SOURCE_DIR, "web/dist"), dist, { recursive: true });
    for (const f of fs.readdirSync(dist)) if (f.endsWith("-relaxed.wasm")) fs.rmSync(path.join(dist, f));
    const other = await import(path.join(dist, "edgellm.mjs"));
    const logs = [];
    const fallback = await other.createEngine({ model, variant: "st", threads: 1, onLog: (l) => logs.push(l) });
    assert.equal(fallback.runtimeInfo().relaxedSimd, false);
    assert.equal(fallback.runtimeInfo().kernelSet, "wasm-simd");
    assert.ok(logs.some((l) => l.includes("edgellm-st-relaxed.wasm is not next to edgellm.mjs")), logs.join("; "));
    const full = await createEngine({ model, variant: "st", threads: 1 });
    const prompt = "I dreamed of";
    const a = await fallback.completions.create({ prompt, temperature: 0, max_tokens: 16 });
    const b = await full.completions.create({ prompt, temperature: 0, max_tokens: 16 });
    assert.equal(a.choices[0].text, b.choices[0].text);
    await fallback.unload();
    // A host that answers a missing file with its index page (200, HTML) is a missing file too.
    fs.writeFileSync(path.join(dist, "edgellm-st-relaxed.wasm"), "<!doctype html><title>app</title>");
    const htmlLogs = [];
    const fromHtml = await other.createEngine({ model, variant: "st", threads: 1, onLog: (l) => htmlLogs.push(l) });
    assert.equal(fromHtml.runtimeInfo().kernelSet, "wasm-simd");
    assert.ok(htmlLogs.some((l) => l.includes("not a WebAssembly module")), htmlLogs.join("; "));
    const c = await fromHtml.completions.create({ prompt, temperature: 0, max_tokens: 16 });
    assert.equal(c.choices[0].text, b.choices[0].text);
    await fromHtml.unload();
    await full.unload();
  }
});

await check("the threaded build runs with one thread (it used to never finish loading)", async () => {
  const model = path.join(env.SHARED, "models/aidreams260K-f32.gguf");
  let timer;
  const hung = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error("createEngine did not finish within 120 s")), 120000);
    timer.unref();
  });
  try {
    const engine = await Promise.race([createEngine({ model, variant: "mt", threads: 1 }), hung]);
    assert.equal(engine.runtimeInfo().variant, "mt");
    assert.equal(engine.runtimeInfo().threads, 1);
    const c = await engine.completions.create({ prompt: greedy[0][0], temperature: 0, max_tokens: 48 });
    assert.equal(c.choices[0].text, unescape(greedy[0][3]));
    await engine.unload();
  } finally {
    clearTimeout(timer);
  }
});

await check("bad model bytes: a clear error, and the module still loads good models", async () => {
  await rejects(() => createEngine({ model: new TextEncoder().encode("definitely not a GGUF file").buffer }), /GGUF|magic/i);
  const gguf = fs.readFileSync(path.join(env.SHARED, "models/aidreams260K-f32.gguf"));
  await rejects(() => createEngine({ model: gguf.subarray(0, 5000) }), /truncated|past the end|beyond/i);
  const engine = await createEngine({ model: gguf, threads: 1 }); // a Buffer (typed array)
  const c = await engine.completions.create({ prompt: greedy[1][0], temperature: 0, max_tokens: 48 });
  assert.equal(c.choices[0].text, unescape(greedy[1][3]));
  await engine.unload();
});

await check("a model over the wasm32 memory limit is refused before it is read", async () => {
  const big = path.join(tmp, "too-big.gguf");
  const fd = fs.openSync(big, "w");
  fs.ftruncateSync(fd, 5 * 1024 ** 3); // sparse: no disk used
  fs.closeSync(fd);
  const t0 = Date.now();
  await rejects(() => createEngine({ model: big, threads: 1 }), /5\.00 GiB \(5368709120 bytes\).*limited to 4 GiB/);
  assert.ok(Date.now() - t0 < 20000, "refused without reading the file");
});

await check("a model over the wasm32 memory limit by URL is refused before its download ends", async () => {
  const http = await import("node:http");
  let sent = 0, closed = null;
  const server = http.createServer((req, res) => {
    res.writeHead(200, { "Content-Type": "application/octet-stream", "Content-Length": String(6 * 1024 ** 3) });
    res.write(Buffer.alloc(4096)); // the start of a download that would take minutes
    sent += 4096;
    closed = new Promise((resolve) => res.on("close", resolve));
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  try {
    await rejects(() => createEngine({ model: `http://127.0.0.1:${server.address().port}/big.gguf`, threads: 1 }),
      /big\.gguf is 6\.00 GiB \(6442450944 bytes\) but WebAssembly memory is limited to 4 GiB/);
    assert.equal(sent, 4096);
    const ended = await Promise.race([closed.then(() => true),
      new Promise((resolve) => setTimeout(resolve, 30000, false).unref())]);
    assert.ok(ended, "the download was abandoned, not left running");
  } finally {
    server.closeAllConnections();
    server.close();
  }
});

await check("a progress callback sees the whole file", async () => {
  const seen = [];
  const model = path.join(env.SHARED, "models/aidreams260K-f32.gguf");
  const engine = await createEngine({ model, threads: 1, onProgress: (p) => seen.push(p) });
  const size = fs.statSync(model).size;
  assert.ok(seen.length >= 1);
  assert.deepEqual(seen.at(-1), { phase: "load", loaded: size, total: size });
  await engine.unload();
});

await check("sha256: the bytes are checked against an expected hash; Node keeps no cache", async () => {
  const model = path.join(env.SHARED, "models/aidreams260K-f32.gguf");
  const sha256 = (await import("node:crypto")).createHash("sha256").update(fs.readFileSync(model)).digest("hex");
  const seen = [];
  const engine = await createEngine({ model, threads: 1, sha256: sha256.toUpperCase(), onProgress: (p) => seen.push(p.phase) });
  assert.ok(seen.includes("verify"), JSON.stringify(seen));
  assert.deepEqual(await engine.cache.list(), []);
  assert.equal(await engine.cache.delete("https://example.org/model.gguf"), false);
  await engine.unload();
  await rejects(() => createEngine({ model, threads: 1, sha256: "ab".repeat(32) }),
    new RegExp(`has SHA-256 ${sha256}, not the expected (ab){32}`));
  await rejects(() => createEngine({ model, sha256: "abc" }), /'sha256' must be 64 hexadecimal digits/);
  await rejects(() => createEngine({ model, cache: "yes" }), /'cache' must be true or false/);
});

await check("an engine without WebAssembly SIMD is told so before anything loads", async () => {
  const { wasmSimdAvailable } = await import(path.join(env.SOURCE_DIR, "web/dist/edgellm.mjs"));
  assert.equal(wasmSimdAvailable(), true, "Node runs SIMD128");
  const validate = WebAssembly.validate;
  WebAssembly.validate = () => false; // what an engine without SIMD128 answers for the probe
  try {
    await rejects(() => createEngine({ model: path.join(env.SHARED, "models/aidreams260K-f32.gguf") }),
      /cannot run WebAssembly SIMD, which edgellm needs/);
  } finally {
    WebAssembly.validate = validate;
  }
});

// ---- a hostile or careless caller (issue 17) ----------------------------------------------

// The synthetic model's context is 2048 tokens: a generation left running takes seconds, so
// whether it was stopped does not depend on timing.
const longContextModel = path.join(tmp, "synth-q4_k_m.gguf");
// A promise that never settles is the defect these checks look for: it fails the check, not the run.
const settlesWithin = (promise, seconds) => Promise.race([promise, new Promise((resolve, reject) =>
  setTimeout(() => reject(new Error(`still pending after ${seconds} s`)), seconds * 1000).unref())]);
// The worker's final answer to each request, seen where Engine receives it.
function recordResults(engine) {
  const results = [];
  const dispatch = engine.dispatch.bind(engine);
  engine.dispatch = (msg) => {
    if (msg.type === "result" && msg.result && "stopReason" in msg.result) results.push(msg.result);
    dispatch(msg);
  };
  return results;
}

await check("a stream the caller leaves early stops its generation", async () => {
  const engine = await createEngine({ model: longContextModel, threads: 1 });
  const results = recordResults(engine);
  const stream = await engine.completions.create({ prompt: "Once", temperature: 0, stream: true });
  for await (const chunk of stream) { assert.ok(chunk); break; }
  const next = await engine.completions.create({ prompt: "Once", temperature: 0, max_tokens: 3 });
  assert.equal(next.usage.completion_tokens, 3);
  assert.equal(results.length, 2);
  assert.equal(results[0].stopReason, 5, "the left stream's generation was interrupted");
  assert.ok(results[0].completionTokens < 1000, `${results[0].completionTokens} tokens nobody read`);
  await engine.unload();
});

await check("unload stops the generation just posted, fails the queued ones; repeated unloads settle", async () => {
  const engine = await createEngine({ model: longContextModel, threads: 1 });
  const results = recordResults(engine);
  const stream = await engine.completions.create({ prompt: "Once", temperature: 0, stream: true });
  const queued = [engine.completions.create({ prompt: "x" }), engine.logits([1])];
  const settled = Promise.allSettled(queued);
  // Called before the worker has begun the generation: the interrupt must not be lost.
  await settlesWithin(Promise.all([engine.unload(), engine.unload()]), 30);
  await settlesWithin(engine.unload(), 30);
  assert.equal(results[0].stopReason, 5, `${results[0].completionTokens} tokens: not interrupted`);
  for (const r of await settled) {
    assert.equal(r.status, "rejected");
    assert.match(r.reason.message, /the engine was unloaded; create a new one/);
  }
  let finish = null;
  for await (const chunk of stream) finish = chunk.choices[0].finish_reason ?? finish;
  assert.equal(finish, "abort");
  await rejects(() => engine.chat.completions.create({ messages: [{ role: "user", content: "x" }] }), /unloaded/);
  await rejects(() => engine.cache.list(), /unloaded/);
});

await check("a worker that dies fails what waits on it and every later call", async () => {
  const engine = await createEngine({ model: longContextModel, threads: 1 });
  const pending = engine.completions.create({ prompt: "Once", temperature: 0 });
  await engine.worker.terminate(); // as a crash or the browser killing it would
  await rejects(() => settlesWithin(pending, 30), /the engine's worker stopped \(it exited with code \d+\); create a new engine/);
  await rejects(() => engine.completions.create({ prompt: "x" }), /worker stopped/);
  await engine.unload();
});

await check("engine options and request fields of the wrong kind are named, with the value given", async () => {
  const model = path.join(env.SHARED, "models/aidreams260K-f32.gguf");
  for (const contextSize of [-1, 1.5, NaN, "512", 2 ** 31])
    await rejects(() => createEngine({ model, contextSize }), /'contextSize' must be a whole number of tokens/);
  await rejects(() => createEngine({ model, variant: "gpu" }), /'variant' must be "mt" \(threads\) or "st" \(one thread\), got "gpu"/);
  await rejects(() => createEngine({ model, threads: "2" }), /'threads' must be an integer from 1 to 64, got "2"/);
  await rejects(() => createEngine({ model, downloadStallSeconds: 0 }), /'downloadStallSeconds' must be a number of seconds above 0/);
  const engine = await createEngine({ model, threads: 1 });
  await rejects(() => engine.completions.create({ prompt: "x", temperature: NaN }), /'temperature' must be a number, got NaN/);
  await rejects(() => engine.completions.create({ prompt: "x", seed: 5n }), /'seed' must be a number, got 5n/);
  // Fields edgellm serve implements and this engine does not: refused, never silently ignored.
  const chat = (extra) => engine.chat.completions.create({ messages: [{ role: "user", content: "x" }], max_tokens: 1, ...extra });
  for (const extra of [{ response_format: { type: "json_object" } }, { grammar: 'root ::= "a"' },
    { logit_bias: { 5: -100 } }, { tools: [{ type: "function", function: { name: "f" } }] }, { logprobs: true },
    { top_logprobs: 2 }]) {
    const field = Object.keys(extra)[0];
    await rejects(() => chat(extra), new RegExp(`'${field}' .* is not supported in the browser engine \\(edgellm serve has it\\); remove the field`));
  }
  for (const extra of [{ response_format: { type: "text" } }, { logit_bias: {} }, { tools: [] }, { logprobs: false }])
    assert.equal((await chat(extra)).choices.length, 1, JSON.stringify(extra));
  await engine.unload();
});

await check("a download that fails says which URL and why, and never hangs", async () => {
  const http = await import("node:http");
  const zlib = await import("node:zlib");
  const model = fs.readFileSync(path.join(env.SHARED, "models/aidreams260K-f32.gguf"));
  const server = http.createServer((req, res) => {
    if (req.url === "/stalls-in-body.gguf") {
      res.writeHead(200, { "Content-Length": String(model.length) });
      res.write(model.subarray(0, 1000)); // and then nothing, the connection left open
    } else if (req.url === "/index.html-for-all.gguf") { // single-page-app hosting
      const page = Buffer.from("<!DOCTYPE html><html><body>Welcome</body></html>");
      res.writeHead(200, { "Content-Type": "text/html", "Content-Length": String(page.length) });
      res.end(page);
    } else if (req.url === "/gzipped.gguf") {
      const packed = zlib.gzipSync(model);
      res.writeHead(200, { "Content-Encoding": "gzip", "Content-Length": String(packed.length) });
      res.end(packed);
    } // else: no answer at all
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const base = `http://127.0.0.1:${server.address().port}`;
  try {
    const load = (name) => settlesWithin(createEngine({ model: `${base}/${name}`, threads: 1, downloadStallSeconds: 1 }), 30);
    await rejects(() => load("stalls-in-body.gguf"),
      /stalls-in-body\.gguf stopped after 1000 of \d+ bytes \(nothing arrived for 1 s\)/);
    await rejects(() => load("never-answers.gguf"), /never-answers\.gguf did not answer within 1 s/);
    await rejects(() => load("index.html-for-all.gguf"),
      /index\.html-for-all\.gguf is not a GGUF model: it starts with '<!DOCTYPE html>.*a web page/);
    await rejects(() => load("gzipped.gguf"), /gzipped\.gguf is served compressed \(Content-Encoding: gzip\)/);
  } finally {
    server.closeAllConnections();
    server.close();
  }
  await rejects(() => createEngine({ model: "http://127.0.0.1:1/unreachable.gguf", threads: 1 }),
    /could not download http:\/\/127\.0\.0\.1:1\/unreachable\.gguf \(fetch failed.*\); check the URL/);
});

// ---- cancelling a load, and callbacks that throw (session 22) ---------------------------------

// The engines' worker_threads Workers, as edgellm.mjs starts them (it unrefs each one).
const { Worker } = await import("node:worker_threads");
const startedWorkers = [];
const unref = Worker.prototype.unref;
Worker.prototype.unref = function recordWorker() {
  startedWorkers.push(this);
  return unref.call(this);
};
const isAbortError = (e) => e instanceof DOMException && e.name === "AbortError";

await check("signal: aborting a download rejects with an AbortError, closes the download and ends the worker", async () => {
  const http = await import("node:http");
  const model = fs.readFileSync(path.join(env.SHARED, "models/aidreams260K-f32.gguf"));
  let closed = null;
  const server = http.createServer((req, res) => {
    res.writeHead(200, { "Content-Length": String(model.length) });
    res.write(model.subarray(0, 100000)); // then nothing more, the connection left open
    closed = new Promise((resolve) => res.on("close", resolve));
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  try {
    const controller = new AbortController();
    const phases = [];
    const workersBefore = startedWorkers.length;
    const loading = createEngine({
      model: `http://127.0.0.1:${server.address().port}/slow.gguf`, threads: 1, signal: controller.signal,
      onProgress: (p) => {
        phases.push(`${p.phase} ${p.loaded}`);
        if (p.loaded === 100000) controller.abort(); // all the server sends
      },
    });
    // Within 30 s: the abort, not the stall watchdog's 60 s (no tighter bound: a busy machine).
    const error = await settlesWithin(loading.then(() => null, (e) => e), 30);
    assert.ok(error && isAbortError(error), `an AbortError, got ${error && error.stack}`);
    assert.match(error.message, /loading the model was aborted \(the signal given to createEngine\)/);
    assert.equal(phases.at(-1), "download 100000", phases.join(", "));
    const ended = await Promise.race([closed.then(() => true),
      new Promise((resolve) => setTimeout(resolve, 30000, false).unref())]);
    assert.ok(ended, "the download's connection was closed");
    assert.equal(startedWorkers.length, workersBefore + 1);
    assert.equal(startedWorkers.at(-1).threadId, -1, "the engine's worker has ended");
  } finally {
    server.closeAllConnections();
    server.close();
  }
});

await check("signal: an aborted signal rejects at once; one aborted while the file loads too; a later abort does nothing", async () => {
  const model = path.join(env.SHARED, "models/aidreams260K-f32.gguf");
  const workersBefore = startedWorkers.length;
  const already = await createEngine({ model, threads: 1, signal: AbortSignal.abort() }).then(() => null, (e) => e);
  assert.ok(already && isAbortError(already), `an AbortError, got ${already && already.stack}`);
  assert.equal(startedWorkers.length, workersBefore, "no worker was started");
  // A reason of the caller's own (a timeout's) stays reachable as the error's cause.
  const timedOut = await createEngine({ model, signal: AbortSignal.abort(new Error("too slow")) }).then(() => null, (e) => e);
  assert.ok(isAbortError(timedOut));
  assert.equal(timedOut.cause.message, "too slow");
  // Aborted while the worker starts (createEngine is past its first check): the model is not read.
  const early = new AbortController();
  const progress = [];
  const starting = createEngine({ model, threads: 1, signal: early.signal, onProgress: (p) => progress.push(p.phase) });
  queueMicrotask(() => early.abort());
  const whileStarting = await settlesWithin(starting.then(() => null, (e) => e), 30);
  assert.ok(whileStarting && isAbortError(whileStarting), `an AbortError, got ${whileStarting && whileStarting.stack}`);
  assert.deepEqual(progress, [], "the model was not read");
  const controller = new AbortController();
  const duringLoad = await settlesWithin(createEngine({ model, threads: 1, signal: controller.signal,
    onProgress: () => controller.abort() }).then(() => null, (e) => e), 30);
  assert.ok(duringLoad && isAbortError(duringLoad), `an AbortError, got ${duringLoad && duringLoad.stack}`);
  assert.equal(startedWorkers.at(-1).threadId, -1, "the engine's worker has ended");
  const later = new AbortController();
  const engine = await createEngine({ model, threads: 1, signal: later.signal });
  later.abort(); // after createEngine resolved: the engine is the caller's to unload
  const c = await engine.completions.create({ prompt: greedy[0][0], temperature: 0, max_tokens: 48 });
  assert.equal(c.choices[0].text, unescape(greedy[0][3]));
  await engine.unload();
  await rejects(() => createEngine({ model, signal: "stop" }), /'signal' must be an AbortSignal \(an AbortController's signal\), got "stop"/);
});

await check("callbacks that throw are reported once each and break neither the engine nor the process", async () => {
  // In a process of its own: on main's build the first throw ended the whole process.
  const { spawnSync } = await import("node:child_process");
  const dist = path.join(tmp, "dist-without-relaxed-for-onlog");
  fs.rmSync(dist, { recursive: true, force: true });
  fs.cpSync(path.join(env.SOURCE_DIR, "web/dist"), dist, { recursive: true });
  for (const f of fs.readdirSync(dist)) if (f.endsWith("-relaxed.wasm")) fs.rmSync(path.join(dist, f));
  const child = spawnSync(process.execPath, ["--experimental-wasm-relaxed-simd",
    path.join(env.SOURCE_DIR, "tests/web/throwing_callbacks.mjs")], {
    env: { ...env, EDGELLM_MJS: path.join(dist, "edgellm.mjs"),
      MODEL: path.join(env.SHARED, "models/aidreams260K-f32.gguf"), PROMPT: greedy[0][0] },
    encoding: "utf8", timeout: 120000 });
  assert.equal(child.status, 0, `exit ${child.status} ${child.signal ?? ""}: ${child.stderr}`);
  const result = JSON.parse(child.stdout);
  assert.equal(result.text, unescape(greedy[0][3]), "the engine answered as usual");
  assert.ok(result.progressCalls >= 3, `onProgress called ${result.progressCalls} times`);
  assert.ok(result.logCalls >= 1, `onLog called ${result.logCalls} times`);
  assert.match(result.badType, /'onProgress' must be a function, got 5/);
  const reports = result.errors;
  assert.equal(reports.filter((l) => /^edgellm: the onProgress callback threw \(Error: progress callback bug/.test(l)).length, 1, reports.join("\n"));
  assert.equal(reports.filter((l) => /^edgellm: the onLog callback threw \(Error: log callback bug/.test(l)).length, 1, reports.join("\n"));
  assert.equal(reports.length, 2, reports.join("\n"));
});

// ---- stopping a generation without shared memory (session 23) -----------------------------

// An engine as a page that is not cross-origin isolated gets it: no SharedArrayBuffer, so no
// interrupt flag and the "st" build; the worker sees an interrupt only between its slices.
async function engineWithoutSharedMemory(model) {
  const shared = globalThis.SharedArrayBuffer;
  delete globalThis.SharedArrayBuffer;
  let loading;
  try {
    loading = createEngine({ model }); // it looks before its first await
  } finally {
    globalThis.SharedArrayBuffer = shared; // before Node starts the worker, which needs it
  }
  const engine = await loading;
  assert.deepEqual([engine.runtimeInfo().variant, engine.runtimeInfo().interruptible], ["st", true]);
  return engine;
}
// Resolves when the worker posts a message of this type.
function workerPosts(engine, type) {
  return new Promise((resolve) => {
    const dispatch = engine.dispatch.bind(engine);
    engine.dispatch = (msg) => {
      if (msg.type === type) resolve();
      dispatch(msg);
    };
  });
}
// Resolves when the worker posts the running generation's first text.
const firstText = (engine) => workerPosts(engine, "delta");

await check("without shared memory: a stream left early stops, and the next request gives the right text", async () => {
  const engine = await engineWithoutSharedMemory(longContextModel);
  const want = await engine.completions.create({ prompt: "Once upon", temperature: 0, max_tokens: 12 });
  const results = recordResults(engine);
  // To the end of the 2048-token context unless stopped: seconds.
  const stream = await engine.completions.create({ prompt: "Once", temperature: 0, stream: true });
  for await (const chunk of stream) { assert.ok(chunk); break; }
  const next = await settlesWithin(engine.completions.create({ prompt: "Once upon", temperature: 0, max_tokens: 12 }), 60);
  assert.equal(next.choices[0].text, want.choices[0].text);
  assert.equal(results.length, 2);
  assert.equal(results[0].stopReason, 5, "the left stream's generation was interrupted");
  assert.ok(results[0].completionTokens < 1000, `${results[0].completionTokens} tokens nobody read`);
  await engine.unload();
});

await check("without shared memory: interrupt() ends a long completion early with finish_reason abort", async () => {
  const engine = await engineWithoutSharedMemory(longContextModel);
  const started = firstText(engine);
  const completion = engine.completions.create({ prompt: "Once", temperature: 0 });
  await started;
  engine.interrupt();
  const c = await settlesWithin(completion, 60);
  assert.equal(c.choices[0].finish_reason, "abort");
  assert.ok(c.usage.completion_tokens < 1000, `${c.usage.completion_tokens} tokens despite the interrupt`);
  // An interrupt with nothing running is not kept for the next request.
  engine.interrupt();
  const after = await engine.completions.create({ prompt: "Once", temperature: 0, max_tokens: 8 });
  assert.equal(after.choices[0].finish_reason, "length");
  assert.equal(after.usage.completion_tokens, 8);
  await engine.unload();
});

await check("without shared memory: unload during a generation stops it and frees the model, then ends the worker", async () => {
  const engine = await engineWithoutSharedMemory(longContextModel);
  const results = recordResults(engine);
  const chunks = (await engine.completions.create({ prompt: "Once", temperature: 0, stream: true }))[Symbol.asyncIterator]();
  assert.equal((await chunks.next()).done, false); // the generation runs
  const queued = engine.completions.create({ prompt: "x", max_tokens: 1 }).then(() => "answered", (e) => e);
  await settlesWithin(engine.unload(), 60);
  assert.equal(results.length, 1, "the generation answered: it was stopped, not its worker killed under it");
  assert.equal(results[0].stopReason, 5);
  assert.ok(results[0].completionTokens < 1000, `${results[0].completionTokens} tokens before the unload took effect`);
  let finish = null;
  for (let r = await chunks.next(); !r.done; r = await chunks.next()) finish = r.value.choices[0].finish_reason ?? finish;
  assert.equal(finish, "abort");
  assert.match(String(await queued), /the engine was unloaded; create a new one/);
  assert.equal(startedWorkers.at(-1).threadId, -1, "the engine's worker has ended");
});

// A prompt of about 1500 tokens of the 2048-token synthetic model (its vocabulary is aidreams'):
// about a second of prefill, evaluated in slices.
const longPrompt = (tag) => {
  const words = "the a little dog cat ran to house and saw big red ball under tree then went home".split(" ");
  return tag + Array.from({ length: 600 }, (_, i) => words[(i * 7 + (i >> 3)) % words.length]).join(" ");
};
// Resolves when the worker reports a slice of the running prompt evaluated and more left; fails
// after 60 s (a worker that evaluates a prompt in one call never reports one). Not a fixed wait:
// on a busy machine the first slice can come after any given time.
const promptUnderWay = (engine) => settlesWithin(workerPosts(engine, "prompt"), 60);

await check("without shared memory: interrupt() during a long prompt ends it (abort), and the next request reuses what was evaluated", async () => {
  const engine = await engineWithoutSharedMemory(longContextModel);
  const prompt = longPrompt("");
  const underWay = promptUnderWay(engine);
  const completion = engine.completions.create({ prompt, temperature: 0, max_tokens: 8 });
  await underWay;
  engine.interrupt();
  const stopped = await settlesWithin(completion, 60);
  assert.deepEqual([stopped.choices[0].finish_reason, stopped.usage.completion_tokens], ["abort", 0]);
  assert.ok(stopped.usage.prompt_tokens > 1400, `the prompt is ${stopped.usage.prompt_tokens} tokens`);
  const resumed = await engine.completions.create({ prompt, temperature: 0, max_tokens: 8 });
  const cached = resumed.usage.prompt_tokens_details.cached_tokens;
  assert.ok(cached > 0 && cached < resumed.usage.prompt_tokens - 1,
    `${cached} of ${resumed.usage.prompt_tokens} prompt tokens were evaluated before the interrupt`);
  // The same prompt evaluated in one go (after another prompt emptied the cache).
  await engine.completions.create({ prompt: "x", max_tokens: 1 });
  const whole = await engine.completions.create({ prompt, temperature: 0, max_tokens: 8 });
  assert.ok(whole.usage.prompt_tokens_details.cached_tokens <= 1, "only BOS is shared with \"x\"");
  assert.equal(resumed.choices[0].text, whole.choices[0].text);
  assert.equal(resumed.usage.completion_tokens, 8);
  await engine.unload();
});

await check("without shared memory: unload() during a long prompt stops it part way, the worker answering", async () => {
  const engine = await engineWithoutSharedMemory(longContextModel);
  const results = recordResults(engine);
  const underWay = promptUnderWay(engine);
  const completion = engine.completions.create({ prompt: longPrompt(""), temperature: 0, max_tokens: 8 })
    .then((c) => c.choices[0].finish_reason, (e) => e);
  await underWay;
  await settlesWithin(engine.unload(), 60);
  assert.equal(await completion, "abort");
  assert.equal(results.length, 1, "the request was answered: stopped, not its worker killed under it");
  // Prefill time is reported only for a prompt evaluated to its end.
  assert.deepEqual([results[0].stopReason, results[0].completionTokens, results[0].prefillSeconds], [5, 0, 0]);
  assert.equal(startedWorkers.at(-1).threadId, -1, "the engine's worker has ended");
});

await check("unload ends a worker that does not answer within its grace period", async () => {
  const engine = await createEngine({ model: longContextModel, threads: 1 });
  await engine.completions.create({ prompt: "Once", temperature: 0, max_tokens: 2 });
  engine.worker.post = () => {}; // the worker hears nothing more, as one stuck in a wasm call
  await settlesWithin(engine.unload(), 30);
  assert.equal(startedWorkers.at(-1).threadId, -1, "the engine's worker has ended");
  await rejects(() => engine.completions.create({ prompt: "x", max_tokens: 1 }), /the engine was unloaded; create a new one/);
});

console.log(failures ? `${failures} checks failed` : "all checks passed");
process.exit(failures ? 1 : 0);
