// bench/web.mjs's edgellm turn run in Node instead of Chromium: the same prompts (a word, then
// "the" to -p words, the first word changed per repetition), the same 4-token warm-up on
// "Hello", the same streaming request and the same variant choice (st on one thread, mt on more),
// so that Node's and Chromium's decode figures come from identical inputs (docs/web.md, "Session
// 17"). Several web builds are loaded into one process and take turns, repetition by repetition.
//
//   node --experimental-wasm-relaxed-simd bench/web_node.mjs --model M.gguf [--threads 1]
//       [-p 64] [-n 32] [-r 3] DIST [DIST...]
//
// Per repetition and build: the engine's own decode tokens/s (usage.extra, what bench/web.mjs
// reports), the wall-clock tokens/s between the first streamed token and the last, and the same
// steps per CPU-second of this process (every thread: the worker, the wasm threads, the main
// thread receiving the stream), which on one thread is what bench/web.mjs's per-CPU-second
// column measures of Chromium's renderer processes.
import path from "node:path";

const args = process.argv.slice(2);
const dists = [];
const options = { "--model": null, "--threads": "1", "-p": "64", "-n": "32", "-r": "3" };
for (let i = 0; i < args.length; i++) {
  if (args[i] in options && i + 1 < args.length) options[args[i++]] = args[i];
  else if (args[i].startsWith("-")) usage(`unknown option ${args[i]}`);
  else dists.push(path.resolve(args[i]));
}
function usage(why) {
  console.error(`bench/web_node.mjs: ${why}\nusage: node --experimental-wasm-relaxed-simd bench/web_node.mjs ` +
    `--model M.gguf [--threads N] [-p PROMPT_WORDS] [-n GEN_TOKENS] [-r REPETITIONS] DIST [DIST...]`);
  process.exit(2);
}
const [threads, promptWords, genTokens, reps] = ["--threads", "-p", "-n", "-r"].map((k) => Number(options[k]));
if (!options["--model"] || dists.length === 0) usage("a model and at least one web build are needed");
if (![threads, promptWords, genTokens, reps].every((v) => Number.isInteger(v) && v > 0)) usage("counts are positive integers");

const firstWords = ["a", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "it", "we", "he",
  "she", "you", "they", "this", "that", "my"];
const prompt = (r) => ` ${firstWords[r % firstWords.length]}` + " the".repeat(promptWords - 1);
const cpuSeconds = () => {
  const c = process.cpuUsage();
  return (c.user + c.system) / 1e6;
};

const builds = [];
for (const dist of dists) {
  // A query per build: the same module URL twice would be one module, one worker.
  const { createEngine } = await import(`file://${path.join(dist, "edgellm.mjs")}?build=${builds.length}`);
  const engine = await createEngine({ model: options["--model"], threads, variant: threads > 1 ? "mt" : "st",
    contextSize: 1024 });
  await engine.completions.create({ prompt: "Hello", max_tokens: 4, temperature: 0 });
  const info = engine.runtimeInfo();
  builds.push({ dist, engine, label: `${dist} (${info.variant} ${info.kernelSet} ${info.threads}t)`, rows: [] });
}

for (let r = 0; r < reps; r++)
  for (const b of builds) {
    let usage = null, firstWall = 0, firstCpu = 0;
    const stream = await b.engine.completions.create({ prompt: prompt(r), max_tokens: genTokens, temperature: 0, stream: true });
    for await (const chunk of stream) {
      if (!firstWall) [firstWall, firstCpu] = [performance.now(), cpuSeconds()];
      if (chunk.usage) usage = chunk.usage;
    }
    const steps = usage.completion_tokens - 1;
    const row = { engine: usage.extra.decode_tokens_per_s, wall: steps / ((performance.now() - firstWall) / 1000),
      cpu: steps / (cpuSeconds() - firstCpu) };
    b.rows.push(row);
    console.log(`repetition ${r + 1}, ${b.label}: ${usage.prompt_tokens} prompt tokens, decode ${row.engine.toFixed(2)} tok/s ` +
      `(engine), ${row.wall.toFixed(2)} tok/s (first to last token), ${row.cpu.toFixed(2)} tok/CPU-s`);
  }
const median = (v) => {
  const s = [...v].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
for (const b of builds) {
  const m = (k) => median(b.rows.map((row) => row[k])).toFixed(2);
  console.log(`median of ${reps}, ${b.label}: decode ${m("engine")} tok/s (engine), ${m("wall")} tok/s, ${m("cpu")} tok/CPU-s`);
  await b.engine.unload();
}
process.exit(0);
