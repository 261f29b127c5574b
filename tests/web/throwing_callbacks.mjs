// Run by node_test.mjs in a process of its own (a callback's exception used to end the process):
// an engine whose onProgress throws and whose onLog (an async function) rejects loads and
// answers; prints what it saw as JSON. EDGELLM_MJS is a web/dist without the relaxed files, run
// with --experimental-wasm-relaxed-simd, so that the worker logs a line (the fallback's).
const { createEngine } = await import(process.env.EDGELLM_MJS);
const errors = [];
console.error = (...args) => errors.push(args.join(" "));
const seen = { progressCalls: 0, logCalls: 0 };
const engine = await createEngine({
  model: process.env.MODEL, threads: 1, relaxedSimd: true,
  sha256: (await import("node:crypto")).createHash("sha256")
    .update((await import("node:fs")).readFileSync(process.env.MODEL)).digest("hex"), // verify phases: more calls
  onProgress: () => {
    seen.progressCalls++;
    throw new Error("progress callback bug");
  },
  onLog: async () => {
    seen.logCalls++;
    throw new Error("log callback bug");
  },
});
const c = await engine.completions.create({ prompt: process.env.PROMPT, temperature: 0, max_tokens: 48 });
await engine.unload();
const badType = await createEngine({ model: process.env.MODEL, onProgress: 5 }).then(() => "loaded", (e) => e.message);
process.stdout.write(JSON.stringify({ ...seen, text: c.choices[0].text, badType, errors }));
