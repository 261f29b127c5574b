// What the chat page (web/demo) costs per streamed token while a long answer grows, in headless
// Chromium: a numbered list, a table, a code block and prose with headings, each streamed word by
// word to the page (as `edgellm serve`'s page, against a stand-in for /v1/chat/completions that
// sends the next word only once the page has taken the last one). For each answer and each of
// --marks (items, rows, code lines or paragraphs already shown), the items before the mark arrive
// at once, then the next --window items one word at a time; the figure is the main thread's time
// per word over those words (Chromium's TaskDuration: parsing, DOM changes, style, layout and paint,
// plus the test's own check of each word, the same for every page). --base-demo DIR adds another
// copy of the page (say main's web/demo) measured in turns with this one on the same browser.
// Not part of `make test`: timings are quoted in docs/web.md, never asserted.
//
//   ctest --test-dir build -R '^web_browser$'   # once: installs puppeteer-core into the build tree
//   node bench/web_render.mjs [--build build] [--demo web/demo] [--base-demo DIR] [-r 3]
//       [--marks 50,200,400] [--window 2]
import fs from "node:fs";
import http from "node:http";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const args = process.argv.slice(2);
function usage(why) {
  console.error(`bench/web_render.mjs: ${why}\nusage: node bench/web_render.mjs [--build DIR] [--demo DIR] ` +
    "[--base-demo DIR] [-r ROUNDS] [--marks N,N,...] [--window ITEMS]");
  process.exit(2);
}
function option(name, dflt) {
  const i = args.indexOf(name);
  if (i < 0) return dflt;
  if (i + 1 >= args.length) usage(`${name} needs a value`);
  return args[i + 1];
}
const positive = (name, text, hi) => {
  const v = Number(text);
  if (!Number.isInteger(v) || v < 1 || v > hi) usage(`${name} takes whole numbers from 1 to ${hi}, not "${text}"`);
  return v;
};
const build = path.resolve(option("--build", path.join(root, "build")));
const rounds = positive("-r", option("-r", "3"), 50);
const marks = option("--marks", "50,200,400").split(",").map((m) => positive("--marks", m, 5000));
const windowItems = positive("--window", option("--window", "2"), 50);
const pages = [["this", path.resolve(option("--demo", path.join(root, "web/demo")))]];
if (option("--base-demo", null)) pages.unshift(["base", path.resolve(option("--base-demo"))]);
for (const [, dir] of pages)
  if (!fs.existsSync(path.join(dir, "markdown.js"))) usage(`${dir} is not a copy of web/demo (no markdown.js)`);
const chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p) => fs.existsSync(p));
if (!chromium) usage("chromium is missing: run scripts/install-deps.sh --test");
const npmPackage = path.join(build, "web-browser-npm/package.json");
if (!fs.existsSync(path.join(build, "web-browser-npm/node_modules/puppeteer-core")))
  usage(`no puppeteer-core under ${path.dirname(npmPackage)}: run ctest --test-dir ${build} -R '^web_browser$' once`);
const requireFromNpm = createRequire(npmPackage);
const puppeteer = (await import(pathToFileURL(requireFromNpm.resolve("puppeteer-core")).href)).default;

// The answers, item by item (an item ends with its newline).
const LONG = Array.from({ length: Math.max(...marks) + windowItems + 1 }, (_, k) => k + 1);
const answers = {
  list: ["Here is the list you asked for:\n",
    ...LONG.map((k) => `${k}. Step ${k}: check the **limit ${k}** setting, then run \`tool --pass ${k}\` again.\n`)],
  table: ["| # | Name | Value | Notes |\n|---|:--|--:|---|\n",
    ...LONG.map((k) => `| ${k} | item_${k} | ${(k * 37) % 1000} | see \`x${k}\` and **row ${k}** |\n`)],
  code: ["```python\n", ...LONG.map((k) => `    total_${k} = compute(values[${k}], scale=${k % 7})  # step ${k}\n`)],
  prose: ["Some background first.\n\n", ...LONG.map((k) => (k % 10 === 0 ? `### Part ${k / 10}\n\n` :
    `Paragraph ${k} says what the **${k}th** point is, why it matters, and how \`option_${k}\` changes it.\n\n`))],
};
const words = (text) => text.match(/\s*\S+\s*$|\s*\S+/g) ?? [text];

// Serves a copy of the page as edgellm serve's page at "/", and the stand-in API.
async function pageServer(dir) {
  let stream = null;
  let streamArrived = () => {};
  const server = http.createServer(async (req, res) => {
    if (req.method === "POST" && req.url === "/v1/chat/completions") {
      for await (const part of req) void part;
      res.writeHead(200, { "Content-Type": "text/event-stream" });
      stream = {
        send: (text) => res.write(`data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: text }, finish_reason: null }] })}\n\n`),
        end: () => res.end("data: [DONE]\n\n"),
      };
      streamArrived(stream);
      return;
    }
    if (req.url === "/v1/models") {
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ data: [{ id: "stand-in" }] }));
      return;
    }
    const name = req.url === "/" ? "index.html" : path.basename(req.url);
    const file = path.join(dir, name);
    if (!fs.existsSync(file)) { res.writeHead(404); res.end(); return; }
    let body = fs.readFileSync(file);
    if (name === "index.html") body = String(body).replace('<html lang="en">', '<html lang="en" data-backend="server">');
    res.writeHead(200, { "Content-Type": name.endsWith(".js") ? "text/javascript" : name.endsWith(".css") ? "text/css" : "text/html" });
    res.end(body);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}/`,
    nextStream: () => new Promise((resolve) => { streamArrived = resolve; }),
    close: () => server.close(),
  };
}

const browser = await puppeteer.launch({ executablePath: chromium, headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
const tabs = [];
for (const [label, dir] of pages) {
  const server = await pageServer(dir);
  const page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 800 });
  // Counts the stream's events the page has parsed: once the count is reached, the page has also
  // shown them (the same task's microtasks), before the next animation frame polls the count.
  await page.evaluateOnNewDocument(() => {
    const parse = JSON.parse;
    window.eventsParsed = 0;
    JSON.parse = (text, ...rest) => {
      if (typeof text === "string" && text.startsWith('{"choices"')) window.eventsParsed++;
      return parse(text, ...rest);
    };
  });
  await page.goto(server.url, { waitUntil: "load" });
  await page.waitForFunction(() => /edgellm serve/.test(document.querySelector("#runtime").textContent), { timeout: 30000 });
  tabs.push({ label, server, page });
}

// Main-thread milliseconds per word at `mark` items of the answer `kind`, in one tab.
async function measure({ server, page }, kind, mark) {
  await page.bringToFront();
  await page.click("#new-chat");
  await page.type("#input", kind);
  const streamOpened = server.nextStream();
  await page.keyboard.press("Enter");
  const stream = await streamOpened;
  const items = answers[kind];
  let sent = 0;
  const shown = () => page.waitForFunction((n) => window.eventsParsed >= n, { timeout: 60000 }, sent);
  await page.evaluate(() => { window.eventsParsed = 0; });
  for (const item of items.slice(0, mark)) { stream.send(item); sent++; }
  await shown();
  const before = await page.metrics();
  let count = 0;
  for (const item of items.slice(mark, mark + windowItems)) {
    for (const word of words(item)) {
      stream.send(word);
      sent++;
      count++;
      await shown();
    }
  }
  const after = await page.metrics();
  stream.end();
  await page.waitForFunction(() => !document.querySelector("#send").hidden, { timeout: 60000 });
  await page.click("#conversations li.active .delete"); // the saved conversations stay small
  const ms = (key) => ((after[key] - before[key]) * 1000) / count;
  return { task: ms("TaskDuration"), layout: ms("LayoutDuration") + ms("RecalcStyleDuration") };
}

const results = {}; // "kind mark label" -> [task ms per word, ...]
for (let r = 0; r < rounds; r++) {
  for (const kind of Object.keys(answers)) {
    for (const mark of marks) {
      for (const tab of r % 2 ? [...tabs].reverse() : tabs) {
        const m = await measure(tab, kind, mark);
        (results[`${kind} ${mark} ${tab.label}`] ??= []).push(m);
      }
    }
  }
}
await browser.close();
for (const tab of tabs) tab.server.close();

const median = (v) => [...v].sort((a, b) => a - b)[Math.floor((v.length - 1) / 2)];
console.log(`main-thread ms per streamed word, median of ${rounds} (of which style and layout)`);
console.log(["answer", "items shown", ...tabs.map((t) => t.label)].join(" | "));
for (const kind of Object.keys(answers)) {
  for (const mark of marks) {
    const cells = tabs.map(({ label }) => {
      const runs = results[`${kind} ${mark} ${label}`];
      return `${median(runs.map((m) => m.task)).toFixed(2)} (${median(runs.map((m) => m.layout)).toFixed(2)})`;
    });
    console.log([kind, mark, ...cells].join(" | "));
  }
}
