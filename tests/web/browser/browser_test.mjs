// The chat page in headless Chromium (run by tests/web_browser.sh, which starts the servers and
// logs each web/serve.py server's requests):
// - from web/serve.py, cross-origin isolated (threads) and not (one thread): the first download
//   of the model is cut short by the server, the second continues it with a range request, the
//   bytes are checked against their SHA-256, an answer streams, and after a reload the model
//   comes from the cache without a request; engine.cache lists and deletes, a wrong expected
//   hash is refused;
// - from `edgellm serve`: its page at "/" chats through /v1/chat/completions, and with --web the
//   page runs the model in the browser (loaded with the file picker), cross-origin isolated.
// - in a page without shared memory, interrupt() and a stream left early stop a long generation
//   (the worker generates in slices and reads messages between them).
// A screenshot of each page goes to OUT_DIR.
import { strict as assert } from "node:assert";
import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import puppeteer from "puppeteer-core";

const env = process.env;
const { CHROMIUM, MODEL_PATH, MODEL_FILE, OUT_DIR } = env;
const modelSha256 = crypto.createHash("sha256").update(fs.readFileSync(MODEL_FILE)).digest("hex");
const modelSize = fs.statSync(MODEL_FILE).size;
fs.writeFileSync(path.join(OUT_DIR, "not-a-model.gguf"), "This is a text file, not a model.\n");
let failures = 0;
async function check(name, fn) {
  try { await fn(); console.log(`ok: ${name}`); } catch (e) { failures++; console.log(`FAIL: ${name}: ${e.stack || e}`); }
}
// The server's log lines for the model: {status, range}.
const modelRequests = (log) => fs.readFileSync(log, "utf8").split("\n")
  .filter((l) => l.includes(`GET ${MODEL_PATH} `))
  .map((l) => ({ status: Number(/" (\d{3})/.exec(l)?.[1]), range: /range=(\S+)/.exec(l)?.[1] ?? null }));

// The model's context is short (128 tokens): each answer in a new conversation.
async function chat(page, text) {
  await page.click("#new-chat");
  await page.type("#input", text);
  await page.click("#send");
  await page.waitForFunction(() => /tokens\/s|Error/.test(document.querySelector(".msg.assistant:last-child .stats")?.textContent || ""),
    { timeout: 60000 });
  const answer = await page.$eval(".msg.assistant:last-child", (e) => ({
    text: e.querySelector(".body").textContent, stats: e.querySelector(".stats").textContent }));
  assert.ok(answer.text.length > 0, "the answer has text");
  assert.match(answer.stats, /^\d+ tokens · [\d.]+ tokens\/s · first token after \d+ ms/, answer.stats);
  return answer;
}

// The server log's line saying that the page closed the download of url, once the server has
// seen it (it looks every 0.2 s), or "" after 10 s.
async function closedByClient(log, url) {
  for (let i = 0; i < 100; i++) {
    const line = fs.readFileSync(log, "utf8").split("\n").find((l) => l.includes(url) && l.includes("closed by the client"));
    if (line) return line;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return "";
}

// The page's statuses from now on are kept in the page (window.statuses): read in the same page,
// they are all there when the test looks, as a function exposed to the test might not yet be.
const keepStatuses = (page) => page.evaluate(() => {
  window.statuses = [];
  new MutationObserver(() => window.statuses.push(document.querySelector("#status").textContent))
    .observe(document.querySelector("#status"), { childList: true, characterData: true, subtree: true });
});
const statusesSeen = (page) => page.evaluate(() => window.statuses);
// Run in a page before its scripts: counts the workers it starts (window.workersStarted) and
// those it ends (window.workersEnded).
const countWorkers = () => {
  window.workersStarted = 0;
  window.workersEnded = new Set();
  window.Worker = class extends Worker {
    constructor(...args) { super(...args); window.workersStarted++; }
    terminate() { window.workersEnded.add(this); super.terminate(); }
  };
};

// Waits until the page has loaded its model, or says why it could not.
async function modelLoaded(page) {
  await page.waitForFunction(() => !document.querySelector("#chat").hidden ||
    /Could not load/.test(document.querySelector("#status").textContent), { timeout: 60000 });
  const status = await page.$eval("#status", (e) => e.textContent);
  assert.doesNotMatch(status, /Could not load/);
}

const browser = await puppeteer.launch({
  executablePath: CHROMIUM, headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
try {
  for (const [label, base, log, wantThreads] of [["isolated", env.ISOLATED_URL, env.ISOLATED_LOG, true],
    ["plain", env.PLAIN_URL, env.PLAIN_LOG, false]]) {
    const page = await browser.newPage();
    await page.setViewport({ width: 1100, height: 720 });
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    const modelUrl = `${base}${MODEL_PATH}`;
    await check(`${label}: a download cut short says so and keeps what arrived`, async () => {
      await page.goto(`${base}/demo/?model=${MODEL_PATH}`, { waitUntil: "load" });
      await page.click("#load-url");
      // The server hangs up once the page has every byte it sent (web/serve.py's /hang-up).
      await page.waitForFunction((size, cut) => document.querySelector("#progress").value * size > cut - 0.5,
        { timeout: 60000 }, modelSize, Number(env.CUT_BYTES));
      await fetch(`${base}/hang-up`);
      await page.waitForFunction(() => /Could not load/.test(document.querySelector("#status").textContent), { timeout: 60000 });
      const status = await page.$eval("#status", (e) => e.textContent);
      assert.match(status, /stopped after \d+ of \d+ bytes .*load it again to continue where it stopped/, status);
      assert.deepEqual(modelRequests(log), [{ status: 200, range: null }]);
    });
    await check(`${label}: loading again continues with a range request, with progress`, async () => {
      await page.click("#load-url");
      await modelLoaded(page);
      assert.equal(await page.$eval("#progress", (e) => e.value), 1, "the progress bar reached the end");
      const requests = modelRequests(log);
      assert.equal(requests.length, 2, JSON.stringify(requests));
      const from = Number(/^bytes=(\d+)-$/.exec(requests[1].range)?.[1]);
      assert.equal(requests[1].status, 206);
      // What the page kept: every byte the server sent before it hung up.
      assert.equal(from, Number(env.CUT_BYTES), `resumed from ${requests[1].range}`);
      const runtime = await page.$eval("#runtime", (e) => e.textContent);
      assert.match(runtime, wantThreads ? /\d+ threads/ : /1 thread/, runtime);
      // Chromium (114 and later) validates relaxed SIMD: the relaxed build is the one loaded.
      assert.match(runtime, /wasm-relaxed/);
      assert.equal(await page.evaluate(() => globalThis.crossOriginIsolated), wantThreads);
      if (!wantThreads) assert.match(await page.$eval("#warning", (e) => e.textContent), /not cross-origin isolated/);
    });
    await check(`${label}: stream an answer`, async () => {
      await chat(page, "I dreamed");
      await page.screenshot({ path: `${OUT_DIR}/demo-${label}.png` });
    });
    await check(`${label}: after a reload the conversation is there and the model comes from the cache`, async () => {
      await page.reload({ waitUntil: "load" });
      const titles = await page.$$eval("#conversations li span", (els) => els.map((e) => e.textContent));
      assert.ok(titles.includes("I dreamed"), JSON.stringify(titles));
      const before = modelRequests(log).length;
      await keepStatuses(page);
      await page.click("#load-url");
      await modelLoaded(page);
      assert.equal(modelRequests(log).length, before, "no request for the model");
      const phases = await statusesSeen(page);
      assert.ok(phases.some((t) => /^Reading from the cache/.test(t)), JSON.stringify(phases));
      assert.ok(!phases.some((t) => /^Downloading/.test(t)), JSON.stringify(phases));
      await chat(page, "Once upon");
    });
    await check(`${label}: engine.cache lists the model with its SHA-256, checks expected hashes, deletes`, async () => {
      const before = modelRequests(log).length;
      const r = await page.evaluate(async (url, sha256) => {
        const { createEngine } = await import("/dist/edgellm.mjs");
        const out = {};
        const e1 = await createEngine({ model: url, sha256, threads: 1 });
        out.list = await e1.cache.list();
        try {
          await createEngine({ model: url, sha256: "0".repeat(64), threads: 1 });
        } catch (e) { out.wrong = e.message; }
        out.afterWrong = await e1.cache.list();
        const e2 = await createEngine({ model: url, threads: 1 }); // downloads again, fine
        await e2.unload();
        out.afterReload = (await e1.cache.list()).length;
        out.deleted = await e1.cache.delete(url);
        out.deletedAgain = await e1.cache.delete(url);
        out.afterDelete = await e1.cache.list();
        await e1.unload();
        return out;
      }, modelUrl, modelSha256);
      assert.deepEqual(r.list.map(({ url, size, storedBytes, complete, sha256 }) => ({ url, size, storedBytes, complete, sha256 })),
        [{ url: modelUrl, size: modelSize, storedBytes: modelSize, complete: true, sha256: modelSha256 }]);
      assert.match(r.wrong, new RegExp(`has SHA-256 ${modelSha256}, not the expected 0{64}`), r.wrong);
      assert.deepEqual(r.afterWrong, [], "the entry of another hash is not kept");
      assert.equal(r.afterReload, 1);
      assert.equal(r.deleted, true);
      assert.equal(r.deletedAgain, false);
      assert.deepEqual(r.afterDelete, []);
      // The right hash loaded from the cache; the wrong one and the next load downloaded.
      assert.equal(modelRequests(log).length, before + 2);
      assert.deepEqual(errors, []);
    });
    await page.close();
  }

  await check("the page's Markdown escapes HTML and renders headings, code blocks and lists", async () => {
    const page = await browser.newPage();
    await page.goto(`${env.SERVE_API_URL}/`, { waitUntil: "load" });
    const html = await page.evaluate(async () => {
      const { renderMarkdown } = await import("/markdown.js");
      return renderMarkdown("## A <b>title</b>\n<img src=x onerror=alert(1)> **bold** `a<b`\n\n```js\nif (a < b) \"x\";\n```\n\n- one\n- <two>");
    });
    assert.equal(html, "<h3>A &lt;b&gt;title&lt;/b&gt;</h3><p>&lt;img src=x onerror=alert(1)&gt; <strong>bold</strong> <code>a&lt;b</code></p>" +
      "<div class=\"code\"><button class=\"copy-code\">Copy</button><pre><code>if (a &lt; b) &quot;x&quot;;\n</code></pre></div>" +
      "<ul><li>one</li><li>&lt;two&gt;</li></ul>");
    await page.close();
  });

  // ---- the page as its users meet it (session 24) ------------------------------------------
  // A new page at url, and the uncaught errors it throws; beforeScripts runs in it before its own.
  const openPage = async (url, beforeScripts) => {
    const page = await browser.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    if (beforeScripts) await page.evaluateOnNewDocument(beforeScripts);
    await page.goto(url, { waitUntil: "load" });
    return { page, errors };
  };
  // A slow download that then stalls, left running in its own page while the checks below run
  // (it takes seconds by design) and looked at in the last check: the statuses it showed are kept.
  const slow = await openPage(`${env.PLAIN_URL}/demo/`);
  await keepStatuses(slow.page);
  await slow.page.$eval("#model-url", (e, url) => { e.value = url; }, `${MODEL_PATH}?stall-after=250000&bytes-per-second=100000`);
  await slow.page.click("#load-url");
  await check("the page's Markdown: a list right after a line of text, nested lists, numbering, tables", async () => {
    const page = await browser.newPage();
    await page.goto(`${env.SERVE_API_URL}/`, { waitUntil: "load" });
    const html = await page.evaluate(async () => {
      const { renderMarkdown } = await import("/markdown.js");
      return renderMarkdown("Steps:\n1. one\n2. two\n   still two\n\n- a\n  - a.1 <i>\n- b\n\n3. three\n\n" +
        "| Name | <b>x</b> |\n| --- | :-: |\n| a | 1 |\nafter");
    });
    assert.equal(html, "<p>Steps:</p><ol><li>one</li><li>two<br>still two</li></ol>" +
      "<ul><li>a<ul><li>a.1 &lt;i&gt;</li></ul></li><li>b</li></ul><ol start=\"3\"><li>three</li></ol>" +
      "<div class=\"table\"><table><thead><tr><th>Name</th><th class=\"align-center\">&lt;b&gt;x&lt;/b&gt;</th></tr></thead>" +
      "<tbody><tr><td>a</td><td class=\"align-center\">1</td></tr></tbody></table></div><p>after</p>");
    await page.close();
  });

  // ---- tables as models write them, a phone, keyboard and touch (session 25) ----------------
  await check("the page's Markdown tables: pipes in code and escaped pipes are text, :-- :-: --: align, cells stay inert", async () => {
    const { page, errors } = await openPage(`${env.SERVE_API_URL}/`);
    const html = await page.evaluate(async () => {
      const { renderMarkdown } = await import("/markdown.js");
      return renderMarkdown("| Operator | Example | Means |\n|:--|:-:|--:|\n| `||` | `a || b` | or |\n" +
        "| pipe | `x \\| y`, a \\| b | `` ` `` |\n| <img src=x onerror=alert(1)> | \\<b\\> **`<i>`** |\n" +
        "| 1 | 2 | 3 | 4 |\n\n\\*not emphasis\\* `` a`b `` \\\\| still one paragraph");
    });
    const cell = (tag, align, text) => `<${tag}${align ? ` class="align-${align}"` : ""}>${text}</${tag}>`;
    const row = (tag, texts) => `<tr>${texts.map((t, k) => cell(tag, ["left", "center", "right"][k], t)).join("")}</tr>`;
    assert.equal(html, "<div class=\"table\"><table><thead>" + row("th", ["Operator", "Example", "Means"]) + "</thead><tbody>" +
      row("td", ["<code>||</code>", "<code>a || b</code>", "or"]) +
      row("td", ["pipe", "<code>x | y</code>, a | b", "<code>`</code>"]) +
      row("td", ["&lt;img src=x onerror=alert(1)&gt;", "&#60;b&#62; <strong><code>&lt;i&gt;</code></strong>", ""]) + // a missing cell: empty
      row("td", ["1", "2", "3"]) + // one too many: dropped
      "</tbody></table></div><p>&#42;not emphasis&#42; <code>a`b</code> &#92;| still one paragraph</p>");
    // A streaming answer's blocks, its tail parsed again on each piece, are those of the whole text.
    const streamed = await page.evaluate(async () => {
      const { blockHtml, renderGrowing, renderMarkdown } = await import("/markdown.js");
      const text = "Intro **b** `a|b`\n\n1. one\n   more\n\n| a | b |\n|:-|-:|\n| `|` | \\| |\n\n```js\nx = 1;\n\n\n" +
        "y = \"```\";\n```\n\n````\nfour\n````\n\nafter\n\n\n\n# Head\n```\nopen\n\nstill code";
      const state = {};
      const differ = [];
      for (let n = 0; n <= text.length; n++)
        if (renderGrowing(text.slice(0, n), state).map(blockHtml).join("") !== renderMarkdown(text.slice(0, n))) differ.push(n);
      if (renderGrowing("another text", state).map(blockHtml).join("") !== renderMarkdown("another text")) differ.push("another");
      const codeState = {}; // another text that also starts with a code block: none of the first one's lines
      renderGrowing("```\nfirst\n", codeState);
      if (renderGrowing("```\nsecond\n", codeState).map(blockHtml).join("") !== renderMarkdown("```\nsecond\n")) differ.push("another code block");
      return differ;
    });
    assert.deepEqual(streamed, [], "lengths at which the streamed blocks differ");
    // A header whose rule row has another number of cells is no table.
    assert.equal(await page.evaluate(async () => (await import("/markdown.js")).renderMarkdown("a | b\n| --- |")),
      "<p>a | b<br>| --- |</p>");
    assert.deepEqual(errors, []);
    await page.close();
  });

  // A stand-in for edgellm serve's chat API that streams each answer only as far as the test says
  // (the rest is the real server's: the page, /v1/models): what the page does in the middle of an
  // answer is checked without depending on how fast a model writes.
  const streams = [];
  let streamArrived = () => {};
  const puppet = http.createServer(async (req, res) => {
    if (req.method === "POST" && req.url === "/v1/chat/completions") {
      let body = "";
      for await (const part of req) body += part;
      res.writeHead(200, { "Content-Type": "text/event-stream" });
      const event = (chunk) => res.write(`data: ${JSON.stringify(chunk)}\n\n`);
      streams.push({
        request: JSON.parse(body),
        send: (text) => event({ choices: [{ index: 0, delta: { content: text }, finish_reason: null }] }),
        end: () => { event({ choices: [{ index: 0, delta: {}, finish_reason: "stop" }] }); res.end("data: [DONE]\n\n"); },
        drop: () => res.socket.destroy(), // the server going away mid-answer
        closed: new Promise((resolve) => res.on("close", resolve)),
      });
      streamArrived();
      return;
    }
    const r = await fetch(`${env.SERVE_API_URL}${req.url}`, { method: req.method });
    res.writeHead(r.status, { "Content-Type": r.headers.get("content-type") ?? "text/plain" });
    res.end(Buffer.from(await r.arrayBuffer()));
  });
  await new Promise((resolve) => puppet.listen(0, "127.0.0.1", resolve));
  puppet.unref(); // the test's end does not wait for it
  const puppetUrl = `http://127.0.0.1:${puppet.address().port}`;
  const nextStream = (count) => (streams.length >= count ? Promise.resolve(streams[count - 1]) :
    new Promise((resolve) => { streamArrived = () => { if (streams.length >= count) resolve(streams[count - 1]); }; }));
  const lastAnswer = (page) => page.$eval(".msg.assistant:last-child", (e) => ({
    text: e.querySelector(".body").textContent, stats: e.querySelector(".stats").textContent,
    error: e.querySelector(".stats").classList.contains("error") }));
  const openConversation = (page, title) => page.$$eval("#conversations li span", (spans, t) =>
    spans.find((e) => e.textContent === t).click(), title);
  const savedConversations = (page) => page.evaluate(() => JSON.parse(localStorage.getItem("edgellm-demo-conversations")));

  await check("the chat page mid-answer: focus, another conversation, Stop then send, a reload, a dropped server", async () => {
    const { page, errors } = await openPage(`${puppetUrl}/`);
    await page.setViewport({ width: 1280, height: 800 });
    await page.waitForFunction(() => /edgellm serve/.test(document.querySelector("#runtime").textContent), { timeout: 30000 });
    await page.type("#input", "First question");
    await page.click("#send");
    const first = await nextStream(1);
    assert.equal(await page.evaluate(() => document.activeElement.id), "input", "the message box keeps the focus");
    first.send("Hello");
    await page.waitForFunction(() => document.querySelector(".msg.assistant:last-child .body").textContent === "Hello");
    // Another conversation while the answer streams, then back: the answer went on meanwhile.
    await page.click("#new-chat");
    first.send(" world");
    await openConversation(page, "First question");
    await page.waitForFunction(() => document.querySelector(".msg.assistant:last-child .body").textContent === "Hello world");
    await page.click("#new-chat");
    first.send("!");
    first.end();
    await page.waitForFunction(() => document.querySelector("#stop").hidden);
    await openConversation(page, "First question");
    assert.match((await lastAnswer(page)).stats, /^3 tokens · /, "the stats went to the answer, not to the page shown");
    assert.equal((await lastAnswer(page)).text, "Hello world!");
    // Stop, then the next message goes out at once.
    await page.type("#input", "Second");
    await page.keyboard.press("Enter");
    (await nextStream(2)).send("Part");
    await page.waitForFunction(() => document.querySelector(".msg.assistant:last-child .body").textContent === "Part");
    await page.click("#stop");
    await page.waitForFunction(() => /stopped$/.test(document.querySelector(".msg.assistant:last-child .stats").textContent));
    assert.equal(await page.evaluate(() => document.activeElement.id), "input", "back in the message box after Stop");
    await page.keyboard.type("Third");
    await page.keyboard.press("Enter");
    const third = await nextStream(3);
    assert.deepEqual(third.request.messages.map((m) => m.content), ["First question", "Hello world!", "Second", "Part", "Third"]);
    // A reload in the middle of an answer keeps the question and what arrived.
    third.send("Before the reload");
    await page.waitForFunction(() => document.querySelector(".msg.assistant:last-child .body").textContent === "Before the reload");
    await page.reload({ waitUntil: "load" });
    const saved = (await savedConversations(page)).find((c) => c.title === "First question");
    assert.deepEqual(saved.messages.slice(-2).map((m) => [m.content, m.stats]), [["Third", undefined],
      ["Before the reload", "The page was closed while this answer was written: it ends here."]]);
    // The server going away mid-answer: the page says what happened and what to do.
    await page.waitForFunction(() => /edgellm serve/.test(document.querySelector("#runtime").textContent), { timeout: 30000 });
    await page.type("#input", "Fourth");
    await page.keyboard.press("Enter");
    const fourth = await nextStream(4);
    fourth.send("Half an");
    await page.waitForFunction(() => document.querySelector(".msg.assistant:last-child .body").textContent === "Half an");
    fourth.drop();
    await page.waitForFunction(() => !document.querySelector("#send").hidden);
    const dropped = await lastAnswer(page);
    assert.equal(dropped.text, "Half an", "what arrived stays");
    assert.match(dropped.stats, /^Error: The connection to the server was lost \(.*\): check that edgellm serve is still running, then send your message again\.$/, dropped.stats);
    assert.equal(dropped.error, true, "shown as an error");
    await page.screenshot({ path: `${OUT_DIR}/server-dropped.png` });
    assert.deepEqual(errors, []);
    await page.close();
  });

  await check("the chat page: deleting the conversation being answered stops the answer, Undo brings it back; empty ones are not piled up", async () => {
    const { page, errors } = await openPage(`${puppetUrl}/`);
    await page.waitForFunction(() => /edgellm serve/.test(document.querySelector("#runtime").textContent), { timeout: 30000 });
    const count = () => page.$$eval("#conversations li", (l) => l.length);
    const before = await count();
    await page.click("#new-chat");
    await page.click("#new-chat");
    assert.ok(await count() <= before + 1, "two clicks on New conversation, one empty conversation");
    const number = streams.length + 1;
    await page.type("#input", "Doomed");
    await page.keyboard.press("Enter");
    const doomed = await nextStream(number);
    doomed.send("Some");
    await page.waitForFunction(() => document.querySelector(".msg.assistant:last-child .body").textContent === "Some");
    await page.click("#conversations li.active .delete");
    await Promise.race([doomed.closed, new Promise((_, reject) => // the page hung up
      setTimeout(() => reject(new Error("the answer of a deleted conversation still streams")), 30000))]);
    await page.waitForFunction(() => !document.querySelector("#send").hidden, { timeout: 30000 });
    assert.ok(!(await page.$$eval("#conversations li span", (l) => l.map((e) => e.textContent))).includes("Doomed"));
    // One tap on a ✕ is easily a tap meant for another conversation: Undo brings it back, saved.
    assert.equal(await page.$eval("#deleted", (e) => e.hidden ? "" : e.textContent), 'Deleted "Doomed". Undo');
    await page.click("#undo-delete");
    assert.equal(await page.$eval("#conversations li.active span", (e) => e.textContent), "Doomed");
    assert.equal(await page.$eval(".msg.assistant:last-child .body", (e) => e.textContent), "Some");
    assert.ok((await savedConversations(page)).some((c) => c.title === "Doomed"), "saved again");
    assert.equal(await page.$eval("#deleted", (e) => e.hidden), true);
    assert.deepEqual(errors, []);
    await page.close();
  });

  await check("the chat page: a refused request says why, and the retry does not send it again", async () => {
    const { page, errors } = await openPage(`${env.SERVE_API_URL}/`);
    await page.waitForFunction(() => /edgellm serve/.test(document.querySelector("#runtime").textContent), { timeout: 30000 });
    await page.click("#new-chat");
    const bodies = [];
    page.on("request", (r) => { if (r.method() === "POST") bodies.push(JSON.parse(r.postData())); });
    await page.$eval("#temperature", (e) => { e.value = "-5"; });
    await page.type("#input", "Refused");
    await page.keyboard.press("Enter");
    await page.waitForFunction(() => !document.querySelector("#send").hidden);
    const refused = await lastAnswer(page);
    assert.match(refused.stats, /^Error: 'temperature' must be between 0 and 2, got -5$/, refused.stats);
    assert.equal(refused.error, true, "shown as an error");
    await page.$eval("#temperature", (e) => { e.value = "0"; });
    await page.type("#input", "I dreamed");
    await page.keyboard.press("Enter");
    await page.waitForFunction(() => /tokens\/s/.test(document.querySelector(".msg.assistant:last-child .stats").textContent), { timeout: 60000 });
    assert.deepEqual(bodies[1].messages, [{ role: "user", content: "I dreamed" }]);
    assert.deepEqual(errors, []);
    await page.close();
  });

  await check("the chat page against a server that wants an API key: says where to enter it, then chats", async () => {
    const { page, errors } = await openPage(`${env.SERVE_KEY_URL}/`);
    const needsKey = /^The server needs its API key \(missing or wrong API key: .*\): enter it under Sampling settings, API key\.$/;
    await page.waitForFunction(() => document.querySelector("#runtime").textContent !== "", { timeout: 30000 });
    assert.match(await page.$eval("#runtime", (e) => e.textContent), needsKey);
    await page.type("#input", "I dreamed");
    await page.keyboard.press("Enter");
    await page.waitForFunction(() => !document.querySelector("#send").hidden, { timeout: 30000 });
    assert.match((await lastAnswer(page)).stats, new RegExp(`^Error: ${needsKey.source.slice(1)}`));
    await page.click("#settings summary");
    await page.type("#api-key", "sekrit");
    await page.$eval("#api-key", (e) => e.dispatchEvent(new Event("change")));
    await page.waitForFunction(() => /· edgellm serve$/.test(document.querySelector("#runtime").textContent), { timeout: 30000 });
    await page.click("#input");
    await page.type("#input", "I dreamed");
    await page.keyboard.press("Enter");
    await page.waitForFunction(() => /tokens\/s/.test(document.querySelector(".msg.assistant:last-child .stats").textContent), { timeout: 60000 });
    assert.deepEqual(errors, []);
    await page.close();
  });

  await check("the chat page: Enter that ends an input method's composition does not send", async () => {
    const { page, errors } = await openPage(`${puppetUrl}/`);
    await page.waitForFunction(() => /edgellm serve/.test(document.querySelector("#runtime").textContent), { timeout: 30000 });
    const before = streams.length;
    await page.evaluate(() => {
      const input = document.querySelector("#input");
      for (const [value, isComposing] of [["日本", true], ["日本語", false]]) {
        input.value = value;
        input.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", isComposing, bubbles: true, cancelable: true }));
      }
    });
    const sent = await nextStream(before + 1);
    sent.end();
    assert.equal(sent.request.messages.at(-1).content, "日本語", "the message once written");
    await page.waitForFunction(() => !document.querySelector("#send").hidden);
    assert.equal(streams.length, before + 1);
    assert.deepEqual(errors, []);
    await page.close();
  });

  await check("the chat page on a phone (390x844): a long conversation keeps the message box on screen; any script reads right", async () => {
    const { page, errors } = await openPage(`${env.SERVE_API_URL}/`);
    await page.setViewport({ width: 390, height: 844 });
    await page.emulateMediaFeatures([{ name: "prefers-reduced-motion", value: "reduce" }]); // the drawer opens at once
    const long = { id: "long", title: `${"a".repeat(39)}😀 and more`, messages: [] };
    for (let i = 0; i < 12; i++) {
      long.messages.push({ role: "user", content: `Question ${i} https://example.com/${"x".repeat(120)}` },
        { role: "assistant", content: `مرحبا بالعالم ${i}\n\n\`\`\`\n${"long_line_of_code() ".repeat(20)}\n\`\`\`` });
    }
    const many = Array.from({ length: 300 }, (_, i) => ({ id: `c${i}`, title: `Conversation ${i}`, messages: [] }));
    await page.evaluate((v) => localStorage.setItem("edgellm-demo-conversations", v), JSON.stringify([long, ...many]));
    await page.reload({ waitUntil: "load" });
    const layout = await page.evaluate(() => ({
      composerBottom: document.querySelector("#composer").getBoundingClientRect().bottom,
      pageHeight: document.documentElement.scrollHeight, pageWidth: document.documentElement.scrollWidth,
      arabic: getComputedStyle(document.querySelector(".msg.assistant .body p")).unicodeBidi,
      bodyDir: document.querySelector(".msg.assistant .body").dir,
      codeDirection: getComputedStyle(document.querySelector(".msg.assistant pre")).direction,
    }));
    assert.ok(layout.composerBottom <= 844, `the message box ends at ${layout.composerBottom} px`);
    assert.deepEqual([layout.pageHeight, layout.pageWidth], [844, 390], "the page itself does not scroll");
    assert.deepEqual([layout.arabic, layout.bodyDir], ["plaintext", "auto"]);
    assert.equal(layout.codeDirection, "ltr", "code in a right-to-left answer reads left to right");
    await page.screenshot({ path: `${OUT_DIR}/phone.png` });
    // Every setting can be reached with the settings open: none lies under the messages.
    await page.click("#menu");
    await page.click("#settings summary");
    const covered = await page.$$eval("#settings :is(input, textarea)", (fields) => fields.filter((e) => {
      if (e.getClientRects().length === 0) return false; // the other mode's field
      e.scrollIntoView({ block: "nearest" });
      const r = e.getBoundingClientRect();
      return document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2) !== e;
    }).map((e) => e.id));
    assert.deepEqual(covered, [], "settings under the messages");
    await page.screenshot({ path: `${OUT_DIR}/phone-settings.png` });
    await page.click("#settings summary");
    // A title cut at 40 characters keeps whole characters (no half of an emoji's surrogate pair).
    await page.click("#new-chat"); // closes the drawer
    await page.type("#input", long.title);
    await page.keyboard.press("Enter");
    await page.waitForFunction(() => !document.querySelector("#send").hidden, { timeout: 60000 });
    const title = await page.$eval("#conversations li.active span", (e) => e.textContent);
    assert.equal(title, `${"a".repeat(39)}😀`);
    assert.deepEqual(errors, []);
    await page.close();
  });

  await check("the chat page on a phone: the conversations are a drawer (menu, Escape, a tap beside it, choosing one)", async () => {
    const { page, errors } = await openPage(`${env.SERVE_API_URL}/`);
    await page.setViewport({ width: 390, height: 844, hasTouch: true, isMobile: true });
    // No slide: the drawer's state is read at once (and the screenshots show it still).
    await page.emulateMediaFeatures([{ name: "prefers-reduced-motion", value: "reduce" }]);
    const chats = [{ id: "a", title: "سؤال بالعربية", messages: [{ role: "user", content: "مرحبا" },
      { role: "assistant", content: "| a | b |\n| --- | --: |\n| 1 | 2 |" }] },
    { id: "b", title: "Second", messages: [] }];
    await page.evaluate((v) => localStorage.setItem("edgellm-demo-conversations", v), JSON.stringify(chats));
    await page.reload({ waitUntil: "load" });
    await page.waitForFunction(() => /edgellm serve/.test(document.querySelector("#runtime").textContent), { timeout: 30000 });
    const state = () => page.evaluate(() => ({
      sidebar: getComputedStyle(document.querySelector("#sidebar")).visibility,
      expanded: document.querySelector("#menu").getAttribute("aria-expanded"),
      inert: document.querySelector("main").inert,
      focus: document.activeElement.id || document.activeElement.className,
    }));
    const closed = await page.evaluate(() => ({
      messages: document.querySelector("#messages").getBoundingClientRect().width,
      menu: document.querySelector("#menu").getAttribute("aria-label"),
      title: document.querySelector("#topbar-title").textContent,
      hit: document.elementFromPoint(20, 420).closest("#sidebar") === null,
      touchCopy: getComputedStyle(document.querySelector(".msg .who button")).opacity,
      fontSizes: [...document.querySelectorAll("#input, #settings input")].map((e) => parseFloat(getComputedStyle(e).fontSize)),
    }));
    assert.deepEqual(closed, { messages: 390, menu: "Conversations and settings", title: "سؤال بالعربية", hit: true,
      touchCopy: "1", fontSizes: closed.fontSizes.map(() => 16) }, "closed: the messages have the whole width");
    assert.deepEqual(await state(), { sidebar: "hidden", expanded: "false", inert: false, focus: "" });
    await page.screenshot({ path: `${OUT_DIR}/phone-drawer-closed.png` });
    // The menu opens it as a dialog; the focus goes to the conversation shown.
    await page.click("#menu");
    assert.deepEqual(await state(), { sidebar: "visible", expanded: "true", inert: true, focus: "open" });
    assert.equal(await page.$eval("#sidebar", (e) => `${e.getAttribute("role")} ${e.getAttribute("aria-modal")}`), "dialog true");
    assert.equal(await page.evaluate(() => document.activeElement.textContent), "سؤال بالعربية");
    await page.screenshot({ path: `${OUT_DIR}/phone-drawer-open.png` });
    // Modal: Tab and Shift+Tab go round its six controls (twice), never out to the page or beyond.
    const outside = [];
    for (const key of ["Tab", "Shift+Tab"]) {
      for (let i = 0; i < 12; i++) {
        if (key === "Shift+Tab") await page.keyboard.down("Shift");
        await page.keyboard.press("Tab");
        if (key === "Shift+Tab") await page.keyboard.up("Shift");
        const where = await page.evaluate(() => (document.querySelector("#sidebar").contains(document.activeElement) ? "" :
          document.activeElement.id || document.activeElement.tagName));
        if (where) outside.push(`${key} ${i + 1}: ${where}`);
      }
    }
    assert.deepEqual(outside, [], "the focus left the open drawer");
    await page.keyboard.press("Escape");
    assert.deepEqual(await state(), { sidebar: "hidden", expanded: "false", inert: false, focus: "menu" });
    // A tap beside it closes it.
    await page.click("#menu");
    await page.touchscreen.tap(375, 600);
    assert.deepEqual(await state(), { sidebar: "hidden", expanded: "false", inert: false, focus: "menu" });
    // Choosing a conversation shows it, closes the drawer and puts the focus in the message box.
    await page.click("#menu");
    await openConversation(page, "Second");
    assert.deepEqual(await state(), { sidebar: "hidden", expanded: "false", inert: false, focus: "input" });
    assert.equal(await page.$eval("#topbar-title", (e) => e.textContent), "Second");
    // Tab from the menu button reaches the conversations, Enter opens one: no mouse needed.
    await page.click("#menu");
    await page.keyboard.down("Shift");
    await page.keyboard.press("Tab"); // from "Second" back to the first conversation's delete button, then its title
    await page.keyboard.press("Tab");
    await page.keyboard.up("Shift");
    await page.keyboard.press("Enter");
    assert.deepEqual(await state(), { sidebar: "hidden", expanded: "false", inert: false, focus: "input" });
    assert.equal(await page.$eval("#topbar-title", (e) => e.textContent), "سؤال بالعربية");
    // Starting a conversation closes it too.
    await page.click("#menu");
    await page.click("#new-chat");
    assert.deepEqual(await state(), { sidebar: "hidden", expanded: "false", inert: false, focus: "input" });
    // A window widened past the phone layout: the sidebar in place, nothing inert.
    await page.click("#menu");
    await page.setViewport({ width: 1280, height: 800 });
    await page.waitForFunction(() => !document.querySelector("main").inert);
    const desktop = await page.evaluate(() => ({
      sidebar: document.querySelector("#sidebar").getBoundingClientRect().toJSON(),
      main: document.querySelector("main").getBoundingClientRect().left,
      menu: document.querySelector("#menu").getClientRects().length,
    }));
    assert.deepEqual([desktop.sidebar.left, desktop.sidebar.width, desktop.main, desktop.menu], [0, 272, 272, 0]);
    assert.deepEqual(errors, []);
    await page.close();
  });

  await check("the chat page: keeps the place of a reader scrolled up, copies (also mid-answer, also without the Clipboard API), the message box grows", async () => {
    const { page, errors } = await openPage(`${puppetUrl}/`, () => { // at http://<LAN address>: not a secure context
      Object.defineProperty(Navigator.prototype, "clipboard", { get: () => undefined });
      document.addEventListener("copy", () => {
        const box = document.activeElement;
        window.copied = box.value.slice(box.selectionStart, box.selectionEnd);
      });
    });
    await page.setViewport({ width: 1280, height: 800 });
    await page.waitForFunction(() => /edgellm serve/.test(document.querySelector("#runtime").textContent), { timeout: 30000 });
    await page.click("#new-chat");
    // What each part gave, compared at the end: one part that fails does not hide the others.
    const seen = {};
    const height = () => page.$eval("#input", (e) => e.getBoundingClientRect().height);
    const oneLine = await height();
    await page.type("#input", "A long question");
    for (let i = 0; i < 4; i++) {
      await page.keyboard.down("Shift");
      await page.keyboard.press("Enter");
      await page.keyboard.up("Shift");
      await page.keyboard.type(`line ${i}`);
    }
    seen.grewWithFiveLines = (await height()) > oneLine + 40;
    const number = streams.length + 1;
    await page.keyboard.press("Enter");
    const answer = await nextStream(number);
    seen.sizeOnceSent = (await height()) === oneLine;
    answer.send("```sh\nls | wc -l\n```\n\n" + Array.from({ length: 80 }, (_, i) => `Line ${i} of a long answer.`).join("\n\n"));
    await page.waitForFunction(() => /Line 79/.test(document.querySelector(".msg.assistant:last-child .body").textContent));
    const atEnd = () => page.$eval("#messages", (e) => e.scrollTop >= e.scrollHeight - e.clientHeight - 1);
    seen.followsAtTheEnd = await atEnd();
    await page.$eval("#messages", (e) => { e.scrollTop = 0; }); // scrolled up to read
    // The code block's Copy clicked as a person does, the button held down a moment, while the
    // answer goes on.
    const copyCode = await (await page.$(".msg.assistant:last-child .copy-code")).boundingBox();
    await page.mouse.move(copyCode.x + copyCode.width / 2, copyCode.y + copyCode.height / 2);
    await page.mouse.down();
    answer.send("\n\nMore text.");
    await page.waitForFunction(() => /More text/.test(document.querySelector(".msg.assistant:last-child .body").textContent));
    await page.mouse.up();
    seen.placeKept = await page.$eval("#messages", (e) => e.scrollTop === 0);
    seen.latestOffered = await page.evaluate(() => document.querySelector("#to-latest")?.hidden === false);
    await page.waitForFunction(() => document.querySelector(".copy-code").textContent !== "Copy", { timeout: 10000 }).catch(() => {});
    seen.codeButton = await page.$eval(".copy-code", (e) => e.textContent);
    seen.codeCopied = await page.evaluate(() => window.copied);
    if (seen.latestOffered) await page.click("#to-latest"); // back to the end
    else await page.$eval("#messages", (e) => { e.scrollTop = e.scrollHeight; });
    seen.latestGone = await page.waitForFunction(() => document.querySelector("#to-latest").hidden, { timeout: 10000 })
      .then(() => true, () => false);
    answer.send("\n\nThe end.");
    await page.waitForFunction(() => /The end/.test(document.querySelector(".msg.assistant:last-child .body").textContent));
    seen.followsAgain = await atEnd();
    answer.end();
    await page.waitForFunction(() => !document.querySelector("#send").hidden);
    await page.hover(".msg.user");
    await page.click(".msg.user .who button");
    await page.waitForFunction(() => document.querySelector(".msg.user .who button").textContent !== "Copy");
    seen.button = await page.$eval(".msg.user .who button", (e) => e.textContent);
    seen.copied = await page.evaluate(() => window.copied);
    seen.focusOnButton = await page.evaluate(() => document.activeElement.classList.length === 0 &&
      document.activeElement.closest(".who") !== null);
    // Scrolled up, then another conversation too short to scroll: no button to an end it is at.
    await page.$eval("#messages", (e) => { e.scrollTop = 0; });
    await page.click("#new-chat");
    seen.latestOnShortOne = await page.evaluate(() => document.querySelector("#to-latest")?.hidden === false);
    assert.deepEqual(seen, { grewWithFiveLines: true, sizeOnceSent: true, followsAtTheEnd: true, placeKept: true,
      latestOffered: true, latestGone: true, followsAgain: true, codeButton: "Copied", codeCopied: "ls | wc -l\n", button: "Copied", copied: "A long question\nline 0\nline 1\nline 2\nline 3", focusOnButton: true, latestOnShortOne: false });
    assert.deepEqual(errors, []);
    await page.close();
  });

  // ---- long answers as they stream (session 26) --------------------------------------------
  // The page against the stand-in, connected, with question sent in a new conversation: its stream.
  const askStandIn = async (page, question) => {
    await page.waitForFunction(() => /edgellm serve/.test(document.querySelector("#runtime").textContent), { timeout: 30000 });
    await page.click("#new-chat");
    const number = streams.length + 1;
    await page.type("#input", question);
    await page.keyboard.press("Enter");
    return nextStream(number);
  };
  await check("the chat page: a long list, table and code block streaming keep their finished items, rows and lines (a selection in them too, past the answer's end)", async () => {
    const { page, errors } = await openPage(`${puppetUrl}/`);
    await page.setViewport({ width: 1280, height: 800 });
    const answer = await askStandIn(page, "A long answer");
    // Each piece sent, the page shows what the whole text renders to.
    await page.evaluate(async () => {
      const { renderMarkdown } = await import("/markdown.js");
      window.showsWhole = (text) => {
        const whole = document.createElement("div");
        whole.innerHTML = renderMarkdown(text);
        return document.querySelector(".msg.assistant:last-child .body").innerHTML === whole.innerHTML;
      };
    });
    let sent = "";
    const send = async (text) => {
      answer.send(text);
      sent += text;
      await page.waitForFunction((t) => window.showsWhole(t), {}, sent);
    };
    const item = (k) => `${k}. Step ${k} with \`tool --pass ${k}\` and **care**, done\n` +
      (k === 3 ? "   and a second line\n" : "") + (k === 5 ? "   - nested a\n   - nested b\n" : "");
    await send(`Steps:\n${Array.from({ length: 12 }, (_, k) => item(k + 1)).join("")}`);
    await page.evaluate(() => {
      window.keptItems = [...document.querySelectorAll(".msg.assistant:last-child .body > ol > li")].slice(0, 10);
      const text = window.keptItems[1].firstChild; // "Step 2 with "
      const range = document.createRange();
      range.setStart(text, 0);
      range.setEnd(text, 6);
      getSelection().removeAllRanges();
      getSelection().addRange(range);
    });
    for (let k = 13; k <= 20; k++) { // a word at a time, as a model writes
      for (const word of item(k).match(/\S+\s*/g)) await send(word);
    }
    await send("\n| Name | Value |\n|:--|--:|\n" + Array.from({ length: 10 }, (_, k) => `| row ${k + 1} | ${k + 1} |\n`).join(""));
    await page.evaluate(() => {
      window.keptRows = [...document.querySelectorAll(".msg.assistant:last-child tbody tr")].slice(0, 9);
    });
    for (let k = 11; k <= 16; k++) {
      await send(`| row ${k}`);
      await send(` | ${k} |\n`);
    }
    // A code block: a selection in its first line, and the block, last while it streams and after.
    // Another conversation opened and this one again meanwhile: the block is made anew, whole.
    await send("\n```sh\nmake web\nmake test\n");
    await page.evaluate(() => { // through the list, the table and a code block's first lines
      const body = document.querySelector(".msg.assistant:last-child .body");
      const items = [...body.querySelectorAll(":scope > ol > li")];
      const rows = [...body.querySelectorAll("tbody tr")];
      window.kept = { itemsKept: window.keptItems.every((e, k) => items[k] === e), rowsKept: window.keptRows.every((e, k) => rows[k] === e),
        listSelection: getSelection().toString() };
    });
    await page.click("#new-chat");
    await openConversation(page, "A long answer");
    await send("make install\n");
    await page.evaluate(() => {
      window.keptCode = document.querySelector(".msg.assistant:last-child .code");
      getSelection().selectAllChildren(window.keptCode.querySelector("code"));
    });
    for (let k = 1; k <= 6; k++) {
      await send(`ctest -R case_${k}`);
      await send(" --output-on-failure\n");
    }
    await send("```\n\nThe end.");
    answer.end();
    await page.waitForFunction(() => !document.querySelector("#send").hidden);
    const seen = await page.evaluate((text) => {
      const body = document.querySelector(".msg.assistant:last-child .body");
      const items = [...body.querySelectorAll(":scope > ol > li")];
      const rows = [...body.querySelectorAll("tbody tr")];
      return {
        itemsKept: window.kept.itemsKept,
        rowsKept: window.kept.rowsKept,
        codeKept: body.querySelector(".code") === window.keptCode,
        selections: [window.kept.listSelection, getSelection().toString()],
        sameAsWhole: window.showsWhole(text),
        counts: [items.length, rows.length],
      };
    }, sent);
    assert.deepEqual(seen, { itemsKept: true, rowsKept: true, codeKept: true, selections: ["Step 2", "make web\nmake test\nmake install\n"], sameAsWhole: true,
      counts: [20, 16] });
    assert.deepEqual(errors, []);
    await page.close();
  });

  await check("the chat page: Stop then Regenerate asks the same question again, without the stopped answer; Escape stops", async () => {
    const { page, errors } = await openPage(`${puppetUrl}/`);
    const first = await askStandIn(page, "Tell me a story");
    const number = streams.length;
    first.send("Once upon a");
    await page.waitForFunction(() => document.querySelector(".msg.assistant:last-child .body").textContent === "Once upon a");
    const offered = () => page.$eval(".msg.assistant:last-child", (e) => e.querySelector(".regenerate")?.getClientRects().length > 0);
    const seen = { whileStreaming: await offered() };
    await page.click("#stop");
    await page.waitForFunction(() => !document.querySelector("#send").hidden);
    seen.afterStop = await offered();
    await page.click(".msg.assistant:last-child .regenerate");
    const again = await nextStream(number + 1);
    seen.sent = again.request.messages.map((m) => m.content);
    seen.focus = await page.evaluate(() => document.activeElement.id);
    again.send("A new story.");
    again.end();
    await page.waitForFunction(() => !document.querySelector("#send").hidden);
    seen.shown = await page.$$eval(".msg .body", (l) => l.map((e) => e.textContent));
    // An answer of one piece has no speed to speak of ("1 tokens · 0.0 tokens/s" before).
    seen.oneToken = (await lastAnswer(page)).stats.replace(/\d+ ms$/, "N ms");
    seen.saved = (await savedConversations(page)).find((c) => c.title === "Tell me a story").messages.map((m) => m.content);
    seen.onlyOnTheLast = await page.$$eval(".msg.assistant .regenerate", (l) => l.map((e) => e.getClientRects().length > 0));
    // Escape in the message box stops an answer too: the keyboard needs no trip to the Stop button.
    const third = await askStandIn(page, "Another one");
    third.send("Long");
    await page.waitForFunction(() => document.querySelector(".msg.assistant:last-child .body").textContent === "Long");
    await page.keyboard.press("Escape");
    seen.escapeStops = await Promise.race([third.closed.then(() => true), new Promise((resolve) => setTimeout(() => resolve(false), 10000))]);
    await page.waitForFunction(() => !document.querySelector("#send").hidden, { timeout: 10000 }).catch(() => {});
    seen.escapeStats = await page.$eval(".msg.assistant:last-child .stats", (e) => e.textContent.replace(/^.* · /, ""));
    assert.deepEqual(seen, { whileStreaming: false, afterStop: true, sent: ["Tell me a story"], focus: "input", escapeStops: true, escapeStats: "stopped", oneToken: "1 token · first token after N ms",
      shown: ["Tell me a story", "A new story."], saved: ["Tell me a story", "A new story."], onlyOnTheLast: [true] });
    assert.deepEqual(errors, []);
    await page.close();
  });

  await check("the chat page: in another conversation while an answer streams, a button says where it is and goes there", async () => {
    const { page, errors } = await openPage(`${puppetUrl}/`);
    await page.setViewport({ width: 1280, height: 800 });
    await page.emulateMediaFeatures([{ name: "prefers-reduced-motion", value: "reduce" }]); // no drawer sliding away on resize
    const answer = await askStandIn(page, "Where did it go");
    answer.send("Still writing");
    await page.waitForFunction(() => document.querySelector(".msg.assistant:last-child .body").textContent === "Still writing");
    const note = () => page.$eval("#answering-elsewhere", (e) => (e.hidden ? "" : e.textContent));
    const seen = { inItsConversation: await note() };
    await page.click("#new-chat");
    await page.setViewport({ width: 390, height: 844 }); // on a phone too
    seen.elsewhere = await note();
    const box = await page.$eval("#answering-elsewhere", (e) => e.getBoundingClientRect().toJSON());
    seen.onScreen = box.left >= 0 && box.right <= 390 && box.height > 0;
    await page.click("#answering-elsewhere");
    seen.shown = await page.$eval("#topbar-title", (e) => e.textContent);
    seen.afterGoing = await note();
    await page.setViewport({ width: 1280, height: 800 });
    await page.click("#new-chat");
    answer.end();
    await page.waitForFunction(() => !document.querySelector("#send").hidden);
    seen.afterTheEnd = await note();
    assert.deepEqual(seen, { inItsConversation: "", elsewhere: 'Writing the answer in "Where did it go": show it', onScreen: true,
      shown: "Where did it go", afterGoing: "", afterTheEnd: "" });
    assert.deepEqual(errors, []);
    await page.close();
  });

  await check("the chat page: a model URL with nothing behind it says to check the URL, and the page stays usable", async () => {
    const { page, errors } = await openPage(`${env.PLAIN_URL}/demo/?model=/models/no-such-model.gguf`);
    await page.click("#load-url");
    await page.waitForFunction(() => /Could not load/.test(document.querySelector("#status").textContent), { timeout: 60000 });
    assert.match(await page.$eval("#status", (e) => e.textContent),
      /^Could not load the model: downloading .*\/models\/no-such-model\.gguf failed: HTTP 404 \(there is no file at that address\); check the URL$/);
    assert.equal(await page.$eval("#load-url", (e) => e.disabled), false, "Load works again");
    assert.deepEqual(errors, []);
    await page.close();
  });

  await check("the chat page where the browser refuses site data: it says so and chats anyway", async () => {
    const { page, errors } = await openPage(`${env.SERVE_API_URL}/`, () => { // what Chromium does with "Block all site data"
      Object.defineProperty(window, "localStorage", { get() { throw new DOMException("Access is denied for this document.", "SecurityError"); } });
    });
    await page.waitForFunction(() => /edgellm serve/.test(document.querySelector("#runtime").textContent), { timeout: 30000 });
    const refused = /^This browser does not let the page store data \(Access is denied for this document\.\): .* Allow site data to keep them\.$/;
    assert.match(await page.$eval("#storage-warning", (e) => e.textContent), refused);
    // On a phone the sidebar is a closed drawer: the note is also above the chat.
    await page.setViewport({ width: 390, height: 844 });
    assert.match(await page.$eval("#phone-storage-warning", (e) => (e.getClientRects().length ? e.textContent : "")), refused);
    await page.setViewport({ width: 800, height: 600 });
    assert.equal(await page.$eval("#phone-storage-warning", (e) => e.getClientRects().length), 0, "once on a wide screen");
    await chat(page, "I dreamed");
    assert.deepEqual(errors, []);
    await page.close();
  });

  await check("edgellm serve: the page at / chats through /v1/chat/completions, streaming", async () => {
    const page = await browser.newPage();
    await page.setViewport({ width: 1100, height: 720 });
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    const posts = [];
    page.on("request", (r) => { if (r.method() === "POST") posts.push(r.url()); });
    await page.goto(`${env.SERVE_API_URL}/`, { waitUntil: "load" });
    await page.waitForFunction(() => /edgellm serve/.test(document.querySelector("#runtime").textContent), { timeout: 30000 });
    assert.match(await page.$eval("#runtime", (e) => e.textContent), /^aidreams260K-f32 · edgellm serve$/);
    assert.equal(await page.$eval("#loader", (e) => e.hidden), true, "no model loader against the server");
    await chat(page, "I dreamed");
    assert.deepEqual(posts, [`${env.SERVE_API_URL}/v1/chat/completions`]);
    await page.click("#settings summary"); // the screenshot shows the sampling settings too
    await page.screenshot({ path: `${OUT_DIR}/serve-api.png` });
    assert.deepEqual(errors, []);
    await page.close();
  });

  await check("the page sends nothing more while an answer streams (a second Enter waits)", async () => {
    const page = await browser.newPage();
    await page.goto(`${env.SERVE_API_URL}/`, { waitUntil: "load" });
    await page.waitForFunction(() => /edgellm serve/.test(document.querySelector("#runtime").textContent), { timeout: 30000 });
    const posts = [];
    page.on("request", (r) => { if (r.method() === "POST") posts.push(r.url()); });
    await page.click("#new-chat");
    await page.evaluate(() => {
      const input = document.querySelector("#input");
      for (const text of ["I dreamed", "Once upon"]) {
        input.value = text;
        input.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true }));
      }
    });
    await page.waitForFunction(() => /tokens\/s|Error/.test(document.querySelector(".msg.assistant:last-child .stats")?.textContent || ""),
      { timeout: 60000 });
    assert.deepEqual(await page.$$eval("#messages .msg", (els) => els.map((e) => e.className)), ["msg user", "msg assistant"]);
    assert.equal(posts.length, 1, JSON.stringify(posts));
    assert.equal(await page.$eval("#input", (e) => e.value), "Once upon", "the second message stays in the box");
    await page.close();
  });

  await check("edgellm serve --web: the page runs the model in the browser with threads (file picker)", async () => {
    const page = await browser.newPage();
    await page.setViewport({ width: 1100, height: 720 });
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    const posts = [];
    page.on("request", (r) => { if (r.method() === "POST") posts.push(r.url()); });
    await page.goto(`${env.SERVE_WEB_URL}/`, { waitUntil: "load" });
    assert.equal(await page.evaluate(() => globalThis.crossOriginIsolated), true, "COOP/COEP make it isolated");
    assert.equal(await page.$eval("#composer", (e) => e.getClientRects().length), 0, "no message box before a model");
    await page.screenshot({ path: `${OUT_DIR}/serve-web-loader.png` });
    // Chromium gives the page a File it cannot read when the path handed to DevTools has a ".."
    // in it (its file-permission check refuses such paths), as ctest's ../shared does: the
    // worker's read then fails, which the page reports as such instead of "network error".
    const picker = await page.$("#model-file");
    const real = fs.realpathSync(MODEL_FILE);
    const dir = path.dirname(real);
    await picker.uploadFile(`${dir}/../${path.basename(dir)}/${path.basename(real)}`); // not normalised
    await page.waitForFunction(() => /Could not load/.test(document.querySelector("#status").textContent), { timeout: 60000 });
    assert.match(await page.$eval("#status", (e) => e.textContent),
      /^Could not load the model: could not read aidreams260K-f32\.gguf after \d+ of \d+ bytes \(the browser said: .*\); .*choose it again$/);
    await page.$eval("#status", (e) => { e.textContent = ""; }); // the next status is the next load's
    await picker.uploadFile(real);
    await modelLoaded(page);
    assert.match(await page.$eval("#runtime", (e) => e.textContent), /\d+ threads · wasm-relaxed/);
    // While the answer is written "Change model" is greyed out (it did nothing when clicked then).
    await page.evaluate(() => {
      const button = document.querySelector("#change-model");
      window.changeModelStates = [button.disabled];
      new MutationObserver(() => window.changeModelStates.push(button.disabled)).observe(button, { attributeFilter: ["disabled"] });
    });
    await chat(page, "I dreamed");
    assert.deepEqual(await page.evaluate(() => window.changeModelStates), [false, true, false]);
    assert.deepEqual(posts, [], "nothing sent to the server");
    await page.screenshot({ path: `${OUT_DIR}/serve-web.png` });
    // On a phone "Change model" is in the drawer: it closes it and goes to the model's URL.
    await page.setViewport({ width: 390, height: 844 });
    await page.emulateMediaFeatures([{ name: "prefers-reduced-motion", value: "reduce" }]);
    await page.click("#menu");
    await page.click("#change-model");
    assert.deepEqual(await page.evaluate(() => [document.body.classList.contains("drawer-open"),
      document.querySelector("#loader").hidden, document.activeElement.id]), [false, false, "model-url"]);
    assert.deepEqual(errors, []);
    await page.close();
  });
  // ---- a hostile or careless user (issue 17) ----------------------------------------------
  await check("a URL that answers with a web page or another file is refused at its first bytes, and not cached", async () => {
    const { page, errors } = await openPage(`${env.ISOLATED_URL}/demo/`);
    const r = await page.evaluate(async () => {
      const { createEngine } = await import("/dist/edgellm.mjs");
      const out = [];
      for (const model of ["/demo/index.html", "/models/aidreams-tok512.bin"]) {
        try {
          await createEngine({ model, threads: 1 });
          out.push("loaded");
        } catch (e) { out.push(e.message); }
      }
      const engine = await createEngine({ model: "/models/aidreams260K-f32.gguf", threads: 1, cache: false });
      out.push((await engine.cache.list()).map((m) => m.url));
      await engine.unload();
      return out;
    });
    assert.match(r[0], /\/demo\/index\.html is not a GGUF model: it starts with '<!doctype html>.*' \(a web page: .*\); check the URL/i, r[0]);
    assert.match(r[1], /aidreams-tok512\.bin is not a GGUF model: it starts with '.*'; check the URL/, r[1]);
    assert.deepEqual(r[2], [], "nothing cached");
    assert.deepEqual(errors, []);
    await page.close();
  });

  await check("the chat page survives corrupt saved conversations, keeps their text, and renders stored answers inert", async () => {
    const { page, errors } = await openPage(`${env.PLAIN_URL}/demo/`);
    const key = "edgellm-demo-conversations";
    await page.evaluate((k) => localStorage.setItem(k, "[{\"id\": \"x\", \"title\": "), key); // cut off mid-write
    await page.reload({ waitUntil: "load" });
    await page.waitForFunction(() => !document.querySelector("#storage-warning").hidden);
    const kept = await page.evaluate((k) => Object.keys(localStorage).filter((x) => x.startsWith(`${k}-unreadable-`))
      .map((x) => localStorage.getItem(x)), key);
    assert.deepEqual(kept, ["[{\"id\": \"x\", \"title\": "]);
    assert.match(await page.$eval("#storage-warning", (e) => e.textContent), /could not be read; their saved text was kept/);
    assert.equal(await page.$$eval("#conversations li", (l) => l.length), 1, "a new conversation to type in");
    // Valid JSON of the wrong shape, and hostile text in the answers of a whole conversation.
    const hostile = { id: "h", title: "<img src=x onerror=window.pwned=1>", messages: [
      { role: "user", content: "<img src=x onerror=window.pwned=2>" },
      { role: "assistant", content: "<script>window.pwned=3</script> [link](javascript:window.pwned=4) " +
        "**<svg onload=window.pwned=5>**\n\n```\n</code></pre><img src=x onerror=window.pwned=6>\n```" }] };
    await page.evaluate((k, v) => localStorage.setItem(k, v), key,
      JSON.stringify([hostile, { id: "y", title: "t", messages: [{ role: "user", content: 5 }] }, null]));
    await page.reload({ waitUntil: "load" });
    await page.waitForFunction(() => !document.querySelector("#storage-warning").hidden);
    assert.deepEqual(await page.$$eval("#conversations li span", (l) => l.map((e) => e.textContent)), [hostile.title]);
    assert.equal(await page.$$eval("#messages .msg", (l) => l.length), 2);
    await new Promise((resolve) => setTimeout(resolve, 500)); // time for an image's onerror to fire
    assert.equal(await page.evaluate(() => window.pwned), undefined);
    assert.equal(await page.$$eval("#messages :is(img, script, a, svg, iframe)", (l) => l.length), 0);
    assert.deepEqual(errors, []);
    await page.close();
  });

  await check("the chat page: a full storage is reported and the page keeps working", async () => {
    const { page, errors } = await openPage(`${env.SERVE_API_URL}/`);
    await page.waitForFunction(() => /edgellm serve/.test(document.querySelector("#runtime").textContent), { timeout: 30000 });
    await page.evaluate(() => { // what a browser does when the origin's quota is used up
      Storage.prototype.setItem = () => { throw new DOMException("The quota has been exceeded.", "QuotaExceededError"); };
    });
    await chat(page, "I dreamed");
    assert.match(await page.$eval("#storage-warning", (e) => e.textContent), /Conversations could not be saved \(The quota has been exceeded\.\)/);
    await chat(page, "Once upon"); // not stuck waiting for the first answer
    assert.deepEqual(errors, []);
    await page.close();
  });

  await check("the chat page: a model chosen while another loads wins; the earlier one is dropped", async () => {
    // A load that fails or is dropped ends its worker as its last step: once both workers have
    // ended, both loads have settled and nothing more of theirs can show (a load that succeeds
    // keeps its worker: this then waits in vain and fails).
    const { page, errors } = await openPage(`${env.ISOLATED_URL}/demo/`, countWorkers);
    // The earlier model's download is held after its first bytes (web/serve.py sends no more
    // until the page hangs up): it is still loading when the file is chosen, however fast or
    // busy the machine, and would go on were it not dropped.
    const held = `${MODEL_PATH}?stall-after=250000`;
    await page.$eval("#model-url", (e, url) => { e.value = url; }, held);
    await page.click("#load-url");
    await page.waitForFunction((size) => document.querySelector("#progress").value * size > 249999.5, { timeout: 60000 }, modelSize);
    await keepStatuses(page);
    // While it downloads, a file that is not a model: its error is what the page shows.
    await (await page.$("#model-file")).uploadFile(path.join(OUT_DIR, "not-a-model.gguf"));
    await page.waitForFunction(() => window.workersStarted === 2 && window.workersEnded.size === 2, { timeout: 30000 });
    const shown = await page.evaluate(() => ({
      status: document.querySelector("#status").textContent,
      earlier: window.statuses.filter((t) => /^(Downloading|Loading cancelled|Ready)/.test(t)),
      chat: document.querySelector("#chat").hidden,
      load: document.querySelector("#load-url").disabled,
      cancel: document.querySelector("#cancel-load").hidden,
    }));
    assert.match(shown.status, /^Could not load the model: .*(not-a-model\.gguf|not a GGUF file)/, shown.status);
    assert.deepEqual(shown.earlier, [], "statuses of the earlier load shown after the file was chosen");
    assert.deepEqual([shown.chat, shown.load, shown.cancel], [true, false, true], "[chat hidden, Load disabled, Cancel hidden]");
    // The page hung up on the earlier download rather than leave it to the server's timeout.
    assert.match(await closedByClient(env.ISOLATED_LOG, held), /closed by the client after 250000 bytes/);
    assert.deepEqual(errors, []);
    await page.close();
  });

  // ---- cancelling a load (session 22) ----------------------------------------------------------
  for (const [label, base, log] of [["isolated", env.ISOLATED_URL, env.ISOLATED_LOG], ["plain", env.PLAIN_URL, env.PLAIN_LOG]]) {
    await check(`${label}: the chat page's Cancel stops a download, keeps what arrived, and a new load works`, async () => {
      const { page, errors } = await openPage(`${base}/demo/`);
      await page.setViewport({ width: 1100, height: 720 });
      const stalling = `${MODEL_PATH}?stall-after=300000`; // web/serve.py sends that much, then waits
      await page.$eval("#model-url", (e, url) => { e.value = url; }, stalling);
      await page.click("#load-url");
      await page.waitForFunction((size) => /^Downloading/.test(document.querySelector("#status").textContent) &&
        document.querySelector("#progress").value * size > 299999.5, { timeout: 60000 }, modelSize); // all 300000 arrived
      await page.screenshot({ path: `${OUT_DIR}/cancel-${label}.png` });
      await page.click("#cancel-load");
      await page.waitForFunction(() => /^Loading cancelled/.test(document.querySelector("#status").textContent), { timeout: 30000 });
      const idle = await page.evaluate(() => ({
        status: document.querySelector("#status").textContent,
        progress: document.querySelector("#progress").hidden,
        load: document.querySelector("#load-url").disabled,
        cancel: document.querySelector("#cancel-load").hidden,
        chat: document.querySelector("#chat").hidden,
      }));
      assert.deepEqual(idle, { status: "Loading cancelled: no model is loaded. Load one by URL or choose a file.",
        progress: true, load: false, cancel: true, chat: true });
      // The download was closed from the page's side, not left running to the server's timeout.
      assert.match(await closedByClient(log, stalling), /closed by the client after 300000 bytes/);
      await page.$eval("#model-url", (e, url) => { e.value = url; }, MODEL_PATH);
      await page.click("#load-url");
      await modelLoaded(page);
      await chat(page, "I dreamed");
      // What the cancelled download got is in the cache as an unfinished entry, to be continued.
      const cached = await page.evaluate(async (url) => {
        const { createEngine } = await import("/dist/edgellm.mjs");
        const engine = await createEngine({ model: "/models/aidreams260K-f32.gguf", threads: 1 });
        const list = await engine.cache.list();
        await engine.cache.delete(url);
        await engine.unload();
        return list.filter((m) => m.url === url).map(({ size, storedBytes, complete, sha256 }) => ({ size, storedBytes, complete, sha256 }));
      }, `${base}${stalling}`);
      assert.deepEqual(cached, [{ size: modelSize, storedBytes: 300000, complete: false, sha256: null }]);
      assert.deepEqual(errors, []);
      await page.close();
    });
  }
  await check("createEngine: an aborted signal rejects at once with an AbortError", async () => {
    // At once: before a worker is started or the model asked for (not timed: a busy machine).
    const { page, errors } = await openPage(`${env.PLAIN_URL}/demo/`, countWorkers);
    const requestsBefore = modelRequests(env.PLAIN_LOG).length;
    const r = await page.evaluate(async (model) => {
      const { createEngine } = await import("/dist/edgellm.mjs");
      try {
        await createEngine({ model, threads: 1, signal: AbortSignal.abort() });
        return { loaded: true };
      } catch (e) {
        return { name: e.name, isDomException: e instanceof DOMException, workers: window.workersStarted };
      }
    }, MODEL_PATH);
    assert.deepEqual(r, { name: "AbortError", isDomException: true, workers: 0 });
    assert.equal(modelRequests(env.PLAIN_LOG).length, requestsBefore, "the model was asked for");
    assert.deepEqual(errors, []);
    await page.close();
  });
  await check("a page without shared memory: interrupt() and a stream left early stop a long generation", async () => {
    const { page, errors } = await openPage(`${env.PLAIN_URL}/demo/`);
    // The synthetic model's 2048-token context: a generation left running takes seconds.
    const r = await page.evaluate(async (base64) => {
      const { createEngine } = await import("/dist/edgellm.mjs");
      const engine = await createEngine({ model: Uint8Array.from(atob(base64), (c) => c.charCodeAt(0)) });
      const results = [];
      let sawText = null;
      const dispatch = engine.dispatch.bind(engine);
      engine.dispatch = (msg) => {
        if (msg.type === "delta" && sawText) sawText();
        if (msg.type === "result" && msg.result && "stopReason" in msg.result) results.push(msg.result);
        dispatch(msg);
      };
      const out = { isolated: globalThis.crossOriginIsolated, variant: engine.runtimeInfo().variant };
      const want = await engine.completions.create({ prompt: "Once upon", temperature: 0, max_tokens: 12 });
      const started = new Promise((resolve) => { sawText = resolve; });
      const long = engine.completions.create({ prompt: "Once", temperature: 0 });
      await started;
      engine.interrupt();
      const interrupted = await long;
      out.interrupted = [interrupted.choices[0].finish_reason, interrupted.usage.completion_tokens];
      const stream = await engine.completions.create({ prompt: "Once", temperature: 0, stream: true });
      for await (const chunk of stream) break;
      const next = await engine.completions.create({ prompt: "Once upon", temperature: 0, max_tokens: 12 });
      out.sameText = next.choices[0].text === want.choices[0].text;
      out.left = [results.at(-2).stopReason, results.at(-2).completionTokens];
      await engine.unload();
      return out;
    }, fs.readFileSync(env.LONG_MODEL_FILE).toString("base64"));
    assert.deepEqual([r.isolated, r.variant], [false, "st"]);
    assert.equal(r.interrupted[0], "abort");
    assert.ok(r.interrupted[1] < 1000, `${r.interrupted[1]} tokens despite the interrupt`);
    assert.equal(r.left[0], 5, "the left stream's generation was interrupted");
    assert.ok(r.left[1] < 1000, `${r.left[1]} tokens nobody read`);
    assert.ok(r.sameText, "the next request gives the same text as before");
    assert.deepEqual(errors, []);
    await page.close();
  });
  await check("the chat page: a slow download says its speed (KiB/s under 1 MiB/s) and time left, a stalled one how long nothing has arrived", async () => {
    const { page, errors } = slow;
    // In front: waitForFunction polls on animation frames, which a page behind another (one a
    // failed check left open) does not get.
    await page.bringToFront();
    await page.waitForFunction(() => /nothing has arrived/.test(document.querySelector("#status").textContent), { timeout: 30000 });
    const slowStatuses = await statusesSeen(page);
    const speeds = slowStatuses.filter((t) => / [KM]iB\/s /.test(t));
    assert.ok(speeds.length > 0, JSON.stringify(slowStatuses));
    assert.match(speeds.at(-1), /^Downloading 0\.2 of 1\.0 MiB · \d+ KiB\/s · about \d+ s left$/);
    assert.match(slowStatuses.at(-1), /^Downloading 0\.2 of 1\.0 MiB · nothing has arrived for \d+ s; still waiting$/);
    await page.click("#cancel-load");
    await page.waitForFunction(() => /^Loading cancelled/.test(document.querySelector("#status").textContent), { timeout: 30000 });
    assert.deepEqual(errors, []);
    await page.close();
  });
} finally {
  await browser.close();
}
console.log(failures ? `${failures} checks failed` : "all checks passed");
process.exit(failures ? 1 : 0);
