// The demo page in headless Chromium (run by tests/web_browser.sh, which serves web/ with
// web/serve.py twice and logs each server's requests): load the model from a loopback URL with
// progress (one request for it in the server's log), stream an answer, keep the conversation over
// a reload; cross-origin isolated (threads) and not (one thread); a screenshot of each.
import { strict as assert } from "node:assert";
import fs from "node:fs";
import puppeteer from "puppeteer-core";

const { CHROMIUM, ISOLATED_URL, PLAIN_URL, ISOLATED_LOG, PLAIN_LOG, MODEL_PATH, OUT_DIR } = process.env;
let failures = 0;
async function check(name, fn) {
  try { await fn(); console.log(`ok: ${name}`); } catch (e) { failures++; console.log(`FAIL: ${name}: ${e.stack || e}`); }
}
// Requests for the model in a server's log.
const downloads = (log) => fs.readFileSync(log, "utf8").split("\n")
  .filter((l) => l.includes(`GET ${MODEL_PATH}`)).length;

const browser = await puppeteer.launch({
  executablePath: CHROMIUM, headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
try {
  for (const [label, base, log, wantThreads] of [["isolated", ISOLATED_URL, ISOLATED_LOG, true],
    ["plain", PLAIN_URL, PLAIN_LOG, false]]) {
    const page = await browser.newPage();
    await page.setViewport({ width: 1100, height: 720 });
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await check(`${label}: load the model from a loopback URL with progress`, async () => {
      await page.goto(`${base}/demo/?model=${MODEL_PATH}`, { waitUntil: "load" });
      const before = downloads(log);
      await page.click("#load-url");
      await page.waitForSelector("#chat:not([hidden])", { timeout: 60000 });
      assert.equal(await page.$eval("#progress", (e) => e.value), 1, "the progress bar reached the end");
      const runtime = await page.$eval("#runtime", (e) => e.textContent);
      assert.match(runtime, wantThreads ? /\d+ threads/ : /1 thread/, runtime);
      assert.match(runtime, /wasm-simd/);
      assert.equal(downloads(log), before + 1, "one download of the model");
      const isolated = await page.evaluate(() => globalThis.crossOriginIsolated);
      assert.equal(isolated, wantThreads);
      if (!wantThreads) assert.match(await page.$eval("#warning", (e) => e.textContent), /not cross-origin isolated/);
    });
    await check(`${label}: stream an answer`, async () => {
      await page.type("#input", "I dreamed");
      await page.click("#send");
      await page.waitForFunction(() => /tokens\/s/.test(document.querySelector(".msg.assistant .stats")?.textContent || ""), { timeout: 60000 });
      const text = await page.$eval(".msg.assistant .body", (e) => e.textContent);
      assert.ok(text.length > 0, "the answer has text");
      await page.screenshot({ path: `${OUT_DIR}/demo-${label}.png` });
      assert.deepEqual(errors, []);
    });
    await check(`${label}: the conversation survives a reload`, async () => {
      await page.reload({ waitUntil: "load" });
      const titles = await page.$$eval("#conversations li span", (els) => els.map((e) => e.textContent));
      assert.ok(titles.includes("I dreamed"), JSON.stringify(titles));
    });
    await page.close();
  }
} finally {
  await browser.close();
}
console.log(failures ? `${failures} checks failed` : "all checks passed");
process.exit(failures ? 1 : 0);
