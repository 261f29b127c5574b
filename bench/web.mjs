// edgellm-wasm against wllama (llama.cpp compiled to WebAssembly, npm @wllama/wllama pinned by
// bench/web/package-lock.json) in the same headless Chromium, on the same GGUF file, single- and
// multi-threaded: load time, prefill and decode tokens/s side by side with their ratio, and the
// ratio to native `edgellm bench` on the same machine in the same run. Not part of `make test`.
//
//   make web && cmake --build build && node bench/web.mjs [--build build] [--dist web/dist]
//       [--model M.gguf] [--type q4_0|q4_k_m|...] [--preset smollm2-360m|tinyllama-1.1b|...]
//       [--threads 2] [-p 64] [-n 64] [-r 3] [--base-dist DIR]
//
// Without --model a synthetic model of the preset's shape (default smollm2-360m; random weights
// in the real layer shapes, the Llama 2 vocabulary of ../shared) at --type (default q4_0; other
// types are quantized from an F16 synthesis with `edgellm quantize`) is made into
// BUILD/bench-web/. The model
// is fetched once into a Blob and handed to each engine, so load time is parsing and copying into
// WebAssembly memory, not the network. Each engine is loaded once in its own tab and warmed up
// with one generation; then the measured prompt (the same text for both, its first word changed
// per repetition so that no engine reuses a cached prompt; its token count is shown) and greedy
// decode run -r times, the two engines taking turns, and every figure is the median of the
// repetitions. Besides tokens per second of wall time, each figure is also given per CPU-second:
// the CPU time of Chromium's renderer processes (the tabs, their workers and the wasm threads,
// from the DevTools protocol's SystemInfo.getProcessInfo) over the same span, sampled when the
// prefill ends (edgellm: its first streamed token; wllama: its prompt decode returns) and when
// the last token is out. On a machine shared with other work these hold where wall-clock speeds
// swing (a time slice lost to another process is not counted); with threads they count every
// thread's CPU, so they measure work per token, not speed. Native: `edgellm bench -r REPS`
// (medians of wall time: the command reports no CPU time) with EDGELLM_KERNELS=avx2 (the kernel
// set it reports is shown: builds without that switch use their default). --base-dist DIR adds
// a third tab, "edgellm (base)", running another web build (say main's web/dist) in the same turns,
// so that two builds are compared interleaved on the same machine at the same moment.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const args = process.argv.slice(2);
function option(names, dflt) {
  const i = args.findIndex((a) => names.includes(a));
  if (i < 0) return dflt;
  if (i + 1 >= args.length) usage(`${args[i]} needs a value`);
  return args[i + 1];
}
function usage(why) {
  console.error(`bench/web.mjs: ${why}\nusage: node bench/web.mjs [--build DIR] [--dist DIR] [--model M.gguf] [--type TYPE] [--preset SHAPE] [--threads N] [-p PROMPT_TOKENS] [-n GEN_TOKENS] [-r REPETITIONS] [--base-dist DIR]`);
  process.exit(2);
}
function count(names, dflt, lo, hi) {
  const v = Number(option(names, dflt));
  if (!Number.isInteger(v) || v < lo || v > hi) usage(`${names[0]} must be an integer from ${lo} to ${hi}`);
  return v;
}
const build = path.resolve(option(["--build"], path.join(root, "build")));
const threads = count(["--threads", "-t"], 2, 2, 16);
const promptTokens = count(["-p"], 64, 8, 1024);
const genTokens = count(["-n"], 64, 2, 512);
const reps = count(["-r"], 3, 1, 20);
const edgellm = path.join(build, "edgellm");
const dist = path.resolve(option(["--dist"], path.join(root, "web/dist")));
const baseDist = option(["--base-dist"], null);
if (baseDist && !fs.existsSync(path.join(baseDist, "edgellm-mt.wasm"))) usage(`${baseDist} holds no web build (edgellm-mt.wasm)`);
for (const [file, what] of [[edgellm, "cmake --build build"], [path.join(dist, "edgellm-mt.wasm"), "make web"]])
  if (!fs.existsSync(file)) usage(`${file} is missing: run ${what} first`);
const chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p) => fs.existsSync(p));
if (!chromium) usage("chromium is missing: run scripts/install-deps.sh --test");

// npm packages (puppeteer-core, @wllama/wllama) from the lockfile, into the build tree.
const npmDir = path.join(build, "bench-web-npm");
const lock = path.join(root, "bench/web/package-lock.json");
const installed = path.join(npmDir, "node_modules/.installed-lock.json");
if (!fs.existsSync(installed) || !fs.readFileSync(lock).equals(fs.readFileSync(installed))) {
  fs.mkdirSync(npmDir, { recursive: true });
  for (const f of ["package.json", "package-lock.json"]) fs.copyFileSync(path.join(root, "bench/web", f), path.join(npmDir, f));
  console.error("bench/web.mjs: npm ci (puppeteer-core, @wllama/wllama) ...");
  execFileSync("npm", ["ci", "--ignore-scripts", "--no-audit", "--no-fund"], { cwd: npmDir, stdio: ["ignore", "ignore", "inherit"] });
  fs.copyFileSync(lock, installed);
}
const requireFromNpm = createRequire(path.join(npmDir, "package.json"));
const puppeteer = (await import(pathToFileURL(requireFromNpm.resolve("puppeteer-core")).href)).default;
const wllamaDir = path.join(npmDir, "node_modules/@wllama/wllama/esm");

let model = option(["--model", "-m"], null);
const type = option(["--type"], "q4_0").toLowerCase();
const preset = option(["--preset"], "smollm2-360m");
if (!/^[\w.-]+$/.test(type) || !/^[\w.-]+$/.test(preset)) usage("--type and --preset take a plain name");
if (!model) {
  model = path.join(build, `bench-web/${preset}-${type}.gguf`);
  if (!fs.existsSync(model)) {
    fs.mkdirSync(path.dirname(model), { recursive: true });
    const direct = ["q4_0", "q8_0", "f16", "f32"].includes(type);
    const synthOut = direct ? model : path.join(build, `bench-web/${preset}-f16.gguf`);
    const synth = ["synth", "--preset", preset, "--type", direct ? type : "f16", "-o", synthOut,
      "--vocab", path.join(root, "../shared/models/llama2-vocab-tiny-f16.gguf")];
    console.error(`bench/web.mjs: edgellm ${synth.join(" ")}`);
    execFileSync(edgellm, synth, { stdio: ["ignore", "ignore", "inherit"] });
    if (!direct) {
      console.error(`bench/web.mjs: edgellm quantize ${synthOut} ${model} ${type}`);
      execFileSync(edgellm, ["quantize", synthOut, model, type.toUpperCase()], { stdio: ["ignore", "ignore", "inherit"] });
    }
  }
}
if (!fs.existsSync(model)) usage(`no model at ${model}`);
// One token per word in SentencePiece vocabularies; the first word differs per repetition.
const firstWords = ["a", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "it", "we", "he",
  "she", "you", "they", "this", "that", "my"];
const prompts = firstWords.slice(0, reps).map((w) => ` ${w}` + " the".repeat(promptTokens - 1));

// Native, same machine, same moment.
function native(t) {
  const out = execFileSync(edgellm, ["bench", "-m", model, "-p", String(promptTokens), "-n", String(genTokens),
    "-t", String(t), "-r", String(reps), "--json"], { env: { ...process.env, EDGELLM_KERNELS: "avx2" }, stdio: ["ignore", "pipe", "ignore"] });
  const j = JSON.parse(out.toString());
  return { load: j.model_load_time_s, prefill: j.prefill_tok_per_s, decode: j.decode_tok_per_s, kernels: j.device?.kernels };
}

// One origin for everything, cross-origin isolated so that both multi-threaded builds can run.
const types = { ".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm", ".html": "text/html" };
// Each tab holds one engine between repetitions; window.benchMark (exposed by this script) samples
// the renderer processes' CPU time at the end of the prefill and of the decode.
const page = `<!doctype html><meta charset="utf-8"><title>bench</title><script type="module">
import { Wllama } from "/wllama/index.js";
const model = () => fetch("/model.gguf").then((r) => r.blob());
const seconds = (t0) => (performance.now() - t0) / 1000;
let engine = null, w = null;
window.bench = {
  async openEdgellm(threads, dir) {
    const { createEngine } = await import("/" + dir + "/edgellm.mjs");
    const blob = await model();
    const t0 = performance.now();
    engine = await createEngine({ model: blob, threads, variant: threads > 1 ? "mt" : "st", contextSize: 1024 });
    const load = seconds(t0);
    await engine.completions.create({ prompt: "Hello", max_tokens: 4, temperature: 0 });
    const info = engine.runtimeInfo();
    return { load, threads: info.threads, variant: info.variant + " " + info.kernelSet };
  },
  async edgellm(prompt, n) {
    await window.benchMark("start");
    let usage = null, first = true;
    for await (const chunk of await engine.completions.create({ prompt, max_tokens: n, temperature: 0, stream: true })) {
      if (first) { first = false; await window.benchMark("prefill"); }
      if (chunk.usage) usage = chunk.usage;
    }
    await window.benchMark("decode");
    return { promptTokens: usage.prompt_tokens - usage.prompt_tokens_details.cached_tokens, generated: usage.completion_tokens,
      decodeSteps: usage.completion_tokens - 1, prefill: usage.extra.prefill_tokens_per_s, decode: usage.extra.decode_tokens_per_s };
  },
  async openWllama(threads) {
    const blob = await model();
    w = new Wllama({ "single-thread/wllama.wasm": "/wllama/single-thread/wllama.wasm",
      "multi-thread/wllama.wasm": "/wllama/multi-thread/wllama.wasm" }, { suppressNativeLog: true });
    const t0 = performance.now();
    await w.loadModel([blob], { n_ctx: 1024, n_batch: 1024, n_threads: threads });
    const load = seconds(t0);
    await w.decode([w.getBOS(), ...(await w.tokenize("Hello"))], {});
    return { load, threads: w.getNumThreads(), variant: w.isMultithread() ? "mt" : "st" };
  },
  async wllama(prompt, n) {
    await w.kvClear();
    const tokens = [w.getBOS(), ...(await w.tokenize(prompt))];
    await window.benchMark("start");
    let t = performance.now();
    await w.decode(tokens, {});
    const prefill = tokens.length / seconds(t);
    await window.benchMark("prefill");
    await w.samplingInit({ temp: 0 });
    t = performance.now();
    for (let i = 0; i < n; i++) {
      const { token } = await w.samplingSample();
      await w.samplingAccept([token]);
      await w.decode([token], {});
    }
    const decode = n / seconds(t);
    await window.benchMark("decode");
    return { promptTokens: tokens.length, generated: n, decodeSteps: n, prefill, decode };
  },
  async close() {
    if (engine) await engine.unload();
    if (w) await w.exit();
  },
};
window.benchReady = true;
</script>`;
const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://x").pathname;
  let file = null;
  if (url === "/") file = "page";
  else if (url === "/model.gguf") file = model;
  else if (/^\/dist\/[\w.-]+$/.test(url)) file = path.join(dist, url.slice(6));
  else if (baseDist && /^\/base-dist\/[\w.-]+$/.test(url)) file = path.join(baseDist, url.slice(11));
  else if (/^\/wllama\/[\w./-]+$/.test(url) && !url.includes("..")) file = path.join(wllamaDir, url.slice(8));
  res.setHeader("Cross-Origin-Opener-Policy", "same-origin");
  res.setHeader("Cross-Origin-Embedder-Policy", "require-corp");
  if (file === "page") { res.setHeader("Content-Type", "text/html"); res.end(page); return; }
  if (!file || !fs.existsSync(file)) { res.statusCode = 404; res.end(); return; }
  res.setHeader("Content-Type", types[path.extname(file)] || "application/octet-stream");
  res.setHeader("Content-Length", fs.statSync(file).size);
  fs.createReadStream(file).pipe(res);
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const base = `http://127.0.0.1:${server.address().port}`;

const browser = await puppeteer.launch({ executablePath: chromium, headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"], protocolTimeout: 1800000 });
const browserSession = await browser.target().createCDPSession();
// Seconds of CPU used so far by the renderer processes (null where Chromium does not say).
async function rendererCpu() {
  try {
    const { processInfo } = await browserSession.send("SystemInfo.getProcessInfo");
    const renderers = processInfo.filter((p) => p.type === "renderer");
    return renderers.length ? renderers.reduce((sum, p) => sum + p.cpuTime, 0) : null;
  } catch {
    return null;
  }
}
const median = (v) => {
  const s = v.filter(Number.isFinite).sort((a, b) => a - b);
  return s.length ? (s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2) : NaN;
};
const rows = [];
const browserVersion = await browser.version();
let cpuSeen = false;
// Engines in the order they take turns; "edgellm (base)" is the --base-dist build.
const engines = baseDist ? ["edgellm", "edgellm (base)", "wllama"] : ["edgellm", "wllama"];
const opener = { "edgellm": ["openEdgellm", "dist"], "edgellm (base)": ["openEdgellm", "base-dist"], "wllama": ["openWllama"] };
const runner = { "edgellm": "edgellm", "edgellm (base)": "edgellm", "wllama": "wllama" };
try {
  for (const t of [1, threads]) {
    const nat = native(t);
    const tabs = {}, opened = {}, runs = Object.fromEntries(engines.map((e) => [e, []]));
    for (const name of engines) {
      const tab = await browser.newPage();
      tab.on("pageerror", (e) => console.error(`${name}: ${e.message}`));
      const marks = {};
      await tab.exposeFunction("benchMark", async (label) => { marks[label] = await rendererCpu(); });
      await tab.goto(`${base}/`);
      await tab.waitForFunction(() => window.benchReady === true);
      console.error(`bench/web.mjs: loading ${name}, ${t} thread(s) ...`);
      const [open, dir] = opener[name];
      opened[name] = await tab.evaluate((n, th, d) => window.bench[n](th, d), open, t, dir);
      tabs[name] = { tab, marks };
    }
    for (let r = 0; r < reps; r++)
      for (const name of engines) {
        const { tab, marks } = tabs[name];
        for (const k of Object.keys(marks)) delete marks[k];
        console.error(`bench/web.mjs: ${name}, ${t} thread(s), repetition ${r + 1} of ${reps} ...`);
        await tab.bringToFront();
        // A pause between turns: wllama's threads go on spinning after a call returns, and without it
        // the engine that ran next (always the first tab) lost 5-30 % of its speed to them (an A/A
        // run of one build in two tabs; with the pause the two agree within 2 %).
        await new Promise((done) => setTimeout(done, 3000));
        const x = await tab.evaluate((n, p, g) => window.bench[n](p, g), runner[name], prompts[r], genTokens);
        const known = [marks.start, marks.prefill, marks.decode].every((v) => v !== null && v !== undefined);
        cpuSeen ||= known;
        x.prefillCpu = known ? x.promptTokens / (marks.prefill - marks.start) : NaN;
        x.decodeCpu = known ? x.decodeSteps / (marks.decode - marks.prefill) : NaN;
        runs[name].push(x);
      }
    const got = {};
    for (const name of engines) {
      await tabs[name].tab.evaluate(() => window.bench.close());
      await tabs[name].tab.close();
      const rs = runs[name];
      got[name] = { ...opened[name], promptTokens: rs[0].promptTokens };
      for (const k of ["prefill", "decode", "prefillCpu", "decodeCpu"]) got[name][k] = median(rs.map((x) => x[k]));
    }
    rows.push({ threads: t, native: nat, ...got });
  }
} finally {
  await browser.close();
  server.close();
}

const f = (v, d = 1) => (Number.isFinite(v) ? v.toFixed(d) : "-");
const modelName = path.basename(model);
// The model column lets the tables of several runs (presets, types) be joined into one.
const modelLabel = modelName.replace(/\.gguf$/, "");
console.log(`${modelName}, ${promptTokens}-word prompt, ${genTokens} generated tokens, median of ${reps}, ${browserVersion}, ` +
  `wllama ${JSON.parse(fs.readFileSync(path.join(wllamaDir, "../package.json"))).version}`);
if (!cpuSeen) console.log("(this Chromium gave no process CPU times: the per-CPU-second columns are empty)");
console.log("| model | threads | engine | variant | load s | prompt tokens | prefill tok/s | decode tok/s | prefill, decode tok/CPU-s | " +
  "edgellm / wllama (prefill, decode) | the same per CPU-s | wasm / native (prefill, decode) |");
console.log("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
for (const r of rows) {
  for (const name of engines) {
    const x = r[name], e = name !== "wllama";
    const vs = e ? `${f(x.prefill / r.wllama.prefill, 2)}, ${f(x.decode / r.wllama.decode, 2)}` : "";
    const vsCpu = e ? `${f(x.prefillCpu / r.wllama.prefillCpu, 2)}, ${f(x.decodeCpu / r.wllama.decodeCpu, 2)}` : "";
    console.log(`| ${modelLabel} | ${r.threads} | ${name} | ${x.variant} ${x.threads}t | ${f(x.load, 2)} | ${x.promptTokens} | ${f(x.prefill)} | ${f(x.decode)} | ` +
      `${f(x.prefillCpu)}, ${f(x.decodeCpu)} | ${vs} | ${vsCpu} | ${f(x.prefill / r.native.prefill, 2)}, ${f(x.decode / r.native.decode, 2)} |`);
  }
  console.log(`| ${modelLabel} | ${r.threads} | native edgellm (${r.native.kernels}) | - | ${f(r.native.load, 2)} | ${promptTokens} | ${f(r.native.prefill)} | ${f(r.native.decode)} | | | | 1, 1 |`);
}
