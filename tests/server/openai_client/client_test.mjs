// The official `openai` client against `edgellm serve`: chat and completions, streaming and
// not, embeddings, and errors surfacing as the client's typed exceptions.
import OpenAI from "openai";
import { spawn } from "node:child_process";
import { existsSync, readFileSync, mkdtempSync } from "node:fs";
import { join } from "node:path";

// Start the server on a free loopback port with an API key.
const [edgellm, modelPath, tmpRoot] = process.argv.slice(2);
const tmp = mkdtempSync(join(tmpRoot, "openai-client-"));
const readyFile = join(tmp, "ready");
const apiKey = "client-test-key";
const server = spawn(edgellm, ["serve", "-m", modelPath, "--port", "0", "--ready-file", readyFile,
                               "--api-key", apiKey, "--parallel", "2", "--threads", "2"],
                     { stdio: ["ignore", "inherit", "inherit"] });
const serverExit = new Promise((resolve) => server.on("exit", (code) => resolve(code)));
const startDeadline = Date.now() + 30000;
while (!existsSync(readyFile)) {
  if (Date.now() > startDeadline || server.exitCode !== null) { console.error("server did not start"); process.exit(1); }
  await new Promise((r) => setTimeout(r, 20));
}
const hostPort = readFileSync(readyFile, "utf8").trim();
const baseURL = `http://${hostPort}/v1`;
for (;;) {
  const r = await fetch(`http://${hostPort}/health`).catch(() => null);
  if (r && r.status === 200) break;
  if (Date.now() > startDeadline) { console.error("model did not load"); process.exit(1); }
  await new Promise((r) => setTimeout(r, 20));
}
const model = (await (await fetch(`${baseURL}/models`, { headers: { Authorization: `Bearer ${apiKey}` } })).json()).data[0].id;
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 60000 });
let checks = 0, failed = 0;
function check(cond, what) {
  checks++;
  if (!cond) { failed++; console.error("FAIL:", what); }
}

const models = await client.models.list();
check(models.data.length === 1 && models.data[0].id === model, "models.list");

const chat = await client.chat.completions.create({
  model, messages: [{ role: "system", content: "You dream." }, { role: "user", content: "Tell me." }],
  max_tokens: 16, temperature: 0, seed: 1,
});
const msg = chat.choices[0].message;
check(chat.object === "chat.completion" && msg.role === "assistant" && typeof msg.content === "string"
      && msg.content.length > 0, "chat.completions.create: " + JSON.stringify(chat));
check(["stop", "length"].includes(chat.choices[0].finish_reason), "chat finish_reason");
check(chat.usage.completion_tokens > 0 && chat.usage.total_tokens ===
      chat.usage.prompt_tokens + chat.usage.completion_tokens, "chat usage");

const stream = await client.chat.completions.create({
  model, messages: [{ role: "system", content: "You dream." }, { role: "user", content: "Tell me." }],
  max_tokens: 16, temperature: 0, seed: 1, stream: true, stream_options: { include_usage: true },
});
let streamed = "", finish = null, usage = null, chunks = 0;
for await (const chunk of stream) {
  chunks++;
  if (chunk.usage) usage = chunk.usage;
  for (const c of chunk.choices) {
    streamed += c.delta?.content ?? "";
    if (c.finish_reason) finish = c.finish_reason;
  }
}
check(streamed === msg.content, `streamed chat == non-streamed (${JSON.stringify(streamed)} vs ${JSON.stringify(msg.content)})`);
check(finish === chat.choices[0].finish_reason && usage && usage.completion_tokens === chat.usage.completion_tokens,
      "stream finish and usage");
check(chunks >= 3, "several chunks");

const completion = await client.completions.create({ model, prompt: "Once upon a time", max_tokens: 12, temperature: 0 });
check(completion.object === "text_completion" && completion.choices[0].text.length > 0, "completions.create");
const cstream = await client.completions.create({ model, prompt: "Once upon a time", max_tokens: 12, temperature: 0, stream: true });
let ctext = "";
for await (const chunk of cstream) ctext += chunk.choices[0]?.text ?? "";
check(ctext === completion.choices[0].text, "streamed completion == non-streamed");

// The gateway's verification call: token ids, echo, prompt logprobs; and n choices with a seed.
const ids = [1, 303, 281, 269, 435, 447, 328];
const scored = await client.completions.create({ model, prompt: ids, echo: true, logprobs: 3, max_tokens: 1, temperature: 0 });
const slp = scored.choices[0].logprobs;
check(slp.tokens.length === ids.length + 1 && slp.token_logprobs[0] === null && slp.top_logprobs[0] === null
      && slp.token_logprobs.slice(1).every((x) => x <= 0) && scored.choices[0].text.startsWith("I dreamed"),
      "echo + logprobs over token ids: " + JSON.stringify(slp));
const several = await client.completions.create({ model, prompt: "Once upon a time", max_tokens: 8, n: 3, seed: 4, logit_bias: { "446": -100 } });
const third = await client.completions.create({ model, prompt: "Once upon a time", max_tokens: 8, seed: 6, logit_bias: { "446": -100 } });
check(several.choices.length === 3 && several.choices.map((c) => c.index).join() === "0,1,2"
      && several.choices[2].text === third.choices[0].text, "n=3 with seed: choice 2 = seed + 2");

// The client asks for base64 embeddings by default and decodes them.
const emb = await client.embeddings.create({ model, input: ["a dream of circuits", "electric sheep"] });
check(emb.data.length === 2 && emb.data[0].embedding.length > 0, "embeddings.create");
const norm = Math.sqrt(emb.data[0].embedding.reduce((a, x) => a + x * x, 0));
check(Math.abs(norm - 1) < 1e-4, "unit-length embedding: " + norm);
const embf = await client.embeddings.create({ model, input: "a dream of circuits", encoding_format: "float" });
check(Math.max(...embf.data[0].embedding.map((x, i) => Math.abs(x - emb.data[0].embedding[i]))) < 1e-6,
      "float and base64 embeddings agree");

try {
  await client.chat.completions.create({ model: "not-a-model", messages: [{ role: "user", content: "x" }] });
  check(false, "unknown model must fail");
} catch (e) {
  check(e instanceof OpenAI.NotFoundError && e.status === 404, "unknown model -> NotFoundError: " + e);
}
try {
  await new OpenAI({ baseURL, apiKey: "wrong", maxRetries: 0 }).models.list();
  check(false, "wrong key must fail");
} catch (e) {
  check(e instanceof OpenAI.AuthenticationError, "wrong key -> AuthenticationError: " + e);
}
try {
  await client.chat.completions.create({ model, messages: [{ role: "user", content: "x" }], temperature: "hot" });
  check(false, "bad temperature must fail");
} catch (e) {
  check(e instanceof OpenAI.BadRequestError && e.param === "temperature", "bad type -> BadRequestError: " + e);
}
server.kill("SIGTERM");
const code = await serverExit;
check(code === 0, "server exits 0 on SIGTERM: " + code);
console.log(`openai_client: ${checks} checks, ${failed} failed`);
process.exit(failed ? 1 : 0);
