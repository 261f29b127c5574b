// The official `openai` client against `edgellm serve`: chat and completions, streaming and
// not, embeddings, and errors surfacing as the client's typed exceptions.
import OpenAI from "openai";
import { spawn } from "node:child_process";
import { existsSync, readFileSync, mkdtempSync } from "node:fs";
import { join } from "node:path";

// Starts a server on a free loopback port with an API key; resolves once its model is loaded.
const [edgellm, modelPath, tmpRoot, toolsModelPath] = process.argv.slice(2);
const tmp = mkdtempSync(join(tmpRoot, "openai-client-"));
const apiKey = "client-test-key";
async function startServer(path, name, extraArgs) {
  const readyFile = join(tmp, "ready-" + name);
  const proc = spawn(edgellm, ["serve", "-m", path, "--port", "0", "--ready-file", readyFile,
                               "--api-key", apiKey, "--parallel", "2", "--threads", "2", ...extraArgs],
                     { stdio: ["ignore", "inherit", "inherit"] });
  const exit = new Promise((resolve) => proc.on("exit", (code) => resolve(code)));
  const startDeadline = Date.now() + 30000;
  while (!existsSync(readyFile)) {
    if (Date.now() > startDeadline || proc.exitCode !== null) { console.error("server did not start"); process.exit(1); }
    await new Promise((r) => setTimeout(r, 20));
  }
  const hostPort = readFileSync(readyFile, "utf8").trim();
  const url = `http://${hostPort}/v1`;
  for (;;) {
    const r = await fetch(`http://${hostPort}/health`).catch(() => null);
    if (r && r.status === 200) break;
    if (Date.now() > startDeadline) { console.error("model did not load"); process.exit(1); }
    await new Promise((r) => setTimeout(r, 20));
  }
  const id = (await (await fetch(`${url}/models`, { headers: { Authorization: `Bearer ${apiKey}` } })).json()).data[0].id;
  return { proc, exit, baseURL: url, model: id, client: new OpenAI({ baseURL: url, apiKey, maxRetries: 0, timeout: 60000 }) };
}
const main = await startServer(modelPath, "main", []);
const { baseURL, model, client } = main;
const server = main.proc, serverExit = main.exit;
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
// Tool calls, on a model whose context holds the tool block (random weights, Llama 2's
// vocabulary, no chat template: ChatML with tools in the Hermes style).
const tools = [
  { type: "function", function: { name: "get_weather", description: "Weather for a city",
    parameters: { type: "object", properties: { city: { type: "string", maxLength: 12 },
      unit: { enum: ["celsius", "fahrenheit"] } }, required: ["city", "unit"], additionalProperties: false } } },
  { type: "function", function: { name: "get_time", parameters: { type: "object",
    properties: { zone: { type: "string", maxLength: 32 } }, required: ["zone"], additionalProperties: false } } },
];
// Every string argument has a maxLength and no object takes other members: the grammar bounds a
// call's length, so on these random weights any seed ends the call well inside the context
// (an unbounded string ran to the length limit on some seeds).
const ts = await startServer(toolsModelPath, "tools", ["--ctx", "1024"]);
const ask = [{ role: "user", content: "What is the weather in Paris?" }];
function argumentsOk(call, name) {
  try {
    const args = JSON.parse(call.function.arguments);
    if (call.function.name !== name || call.type !== "function" || !call.id) return false;
    return name === "get_weather" ? typeof args.city === "string" && ["celsius", "fahrenheit"].includes(args.unit)
                                  : typeof args.zone === "string";
  } catch { return false; }
}
const forced = await ts.client.chat.completions.create({
  model: ts.model, messages: ask, tools, tool_choice: { type: "function", function: { name: "get_weather" } }, seed: 2,
});
const call = forced.choices[0].message.tool_calls?.[0];
check(forced.choices[0].finish_reason === "tool_calls" && call && argumentsOk(call, "get_weather"),
      "named tool_choice -> a get_weather call with valid arguments: " + JSON.stringify(forced.choices[0]));
// The round trip: the call and its result go back; the answer is text.
const answer = await ts.client.chat.completions.create({
  model: ts.model, tools, tool_choice: "none", max_tokens: 8, seed: 2,
  messages: [...ask, forced.choices[0].message, { role: "tool", tool_call_id: call?.id ?? "x", content: "21 C, clear" }],
});
check(typeof answer.choices[0].message.content === "string" && !answer.choices[0].message.tool_calls,
      "round trip with the tool result answered in text: " + JSON.stringify(answer.choices[0]));
// Streamed: the client's stream helper assembles the call from the deltas, whatever the seed
// makes the random model write.
for (let seed = 1; seed <= 10; seed++) {
  const toolStream = ts.client.chat.completions.stream({
    model: ts.model, messages: ask, tools, tool_choice: "required", seed,
  });
  let argumentDeltas = 0;
  toolStream.on("chunk", (chunk) => { for (const c of chunk.choices) argumentDeltas += c.delta.tool_calls?.length ?? 0; });
  const assembled = await toolStream.finalChatCompletion();
  const streamedCall = assembled.choices[0].message.tool_calls?.[0];
  check(assembled.choices[0].finish_reason === "tool_calls" && streamedCall && argumentDeltas >= 2 &&
        argumentsOk(streamedCall, streamedCall.function.name),
        `streamed tool call (seed ${seed}) assembled by the client: ` + JSON.stringify(assembled.choices[0]));
}
try {
  await ts.client.chat.completions.create({ model: ts.model, messages: ask, tools, tool_choice: { type: "function", function: { name: "nope" } } });
  check(false, "unknown tool_choice function must fail");
} catch (e) {
  check(e instanceof OpenAI.BadRequestError && e.param === "tool_choice", "unknown function -> BadRequestError: " + e);
}
ts.proc.kill("SIGTERM");
check((await ts.exit) === 0, "tools server exits 0 on SIGTERM");

console.log(`openai_client: ${checks} checks, ${failed} failed`);
process.exit(failed ? 1 : 0);
