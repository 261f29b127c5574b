// Renders every family's published chat template with @huggingface/jinja (the Jinja
// implementation transformers.js uses) for fixed conversations, with and without the generation
// prompt, and checks that `edgellm chat --format-only` produces the same bytes — or fails where the
// template raises. Also checks that each template text is recognised as its family.
//
// usage: node check.mjs EDGELLM SHARED_DIR SCRATCH_DIR
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Template } from "@huggingface/jinja";

const [edgellm, shared, scratch] = process.argv.slice(2);
if (!edgellm || !shared || !scratch) {
  console.error("usage: node check.mjs EDGELLM SHARED_DIR SCRATCH_DIR");
  process.exit(2);
}
const here = dirname(fileURLToPath(import.meta.url));
mkdirSync(scratch, { recursive: true });

function tokenText(t) {
  if (t == null) return "";
  return typeof t === "string" ? t : t.content ?? "";
}
function fromFile(file) {
  return readFileSync(join(here, "templates", file), "utf8");
}
function fromConfig(rel) {
  const cfg = JSON.parse(readFileSync(join(shared, rel), "utf8"));
  return { src: cfg.chat_template, bos: tokenText(cfg.bos_token), eos: tokenText(cfg.eos_token) };
}
const hasSystem = (c) => c.messages.some((m) => m.role === "system");

// Each template: where its text comes from, the family it must be recognised as, the bos/eos texts
// of its model, and the cases where the family knowingly differs from this particular template.
const templates = [
  { name: "chatml", src: fromFile("chatml.jinja"), family: "chatml", bos: "<s>", eos: "</s>" },
  {
    name: "llama2-chat", src: fromFile("llama2-chat.jinja"), family: "llama2", bos: "<s>", eos: "</s>",
    // `system_message != false` with an empty system message: Python's Jinja2 (what transformers
    // runs) says true and writes an empty <<SYS>> block, as edgellm does; this JavaScript
    // implementation compares loosely ('' == false) and leaves the block out.
    skip: (c) => (c.name === "empty_system" ? "@huggingface/jinja compares '' != false as JavaScript does; edgellm follows Python Jinja2" : null),
  },
  {
    name: "llama3 (shared tokenizer_config.json)", ...fromConfig("tokenizers/llama3/tokenizer_config.json"),
    family: "llama3",
    skip: (c) => (!c.gen ? "this early Llama 3 template appends the assistant header even without add_generation_prompt; the family follows the later published one" : null),
  },
  { name: "llama3-instruct", src: fromFile("llama3-instruct.jinja"), family: "llama3", bos: "<|begin_of_text|>", eos: "<|eot_id|>" },
  { name: "llama3.1-instruct", src: fromFile("llama3.1-instruct.jinja"), family: "llama3.1", bos: "<|begin_of_text|>", eos: "<|eot_id|>" },
  { name: "llama3.2-instruct", src: fromFile("llama3.2-instruct.jinja"), family: "llama3.2", bos: "<|begin_of_text|>", eos: "<|eot_id|>" },
  { name: "qwen3 (shared tokenizer_config.json)", ...fromConfig("tokenizers/qwen3/tokenizer_config.json"), family: "qwen3" },
  { name: "qwen2.5-instruct", src: fromFile("qwen2.5-instruct.jinja"), family: "qwen2.5", bos: "", eos: "<|im_end|>" },
  { name: "gemma3-it", src: fromFile("gemma3-it.jinja"), family: "gemma", bos: "<bos>", eos: "<eos>" },
  {
    name: "gemma2-it", src: fromFile("gemma2-it.jinja"), family: "gemma", bos: "<bos>", eos: "<eos>",
    skip: (c) => (hasSystem(c) ? "the Gemma 2 template rejects system messages; the family merges them as Gemma 3 does" : null),
  },
  { name: "phi3-mini-4k-instruct", src: fromFile("phi3-mini-4k-instruct.jinja"), family: "phi3", bos: "<s>", eos: "<|endoftext|>" },
  {
    name: "phi3.5-mini-instruct", src: fromFile("phi3.5-mini-instruct.jinja"), family: "phi3", bos: "<s>", eos: "<|endoftext|>",
    skip: (c) => (c.messages.some((m) => m.role === "system" && m.content === "") ? "Phi-3.5 drops an empty system message; the family follows Phi-3" : null),
  },
  { name: "mistral-7b-instruct-v0.2", src: fromFile("mistral-7b-instruct-v0.2.jinja"), family: "mistral", bos: "<s>", eos: "</s>" },
  { name: "zephyr (TinyLlama-1.1B-Chat)", src: fromFile("zephyr.jinja"), family: "zephyr", bos: "<s>", eos: "</s>" },
  { name: "smollm2-instruct", src: fromFile("smollm2-instruct.jinja"), family: "smollm", bos: "<|im_start|>", eos: "<|im_end|>" },
];

const conversations = JSON.parse(readFileSync(join(here, "conversations.json"), "utf8"));
let passed = 0, failed = 0, skipped = 0, raised = 0;

function show(buf, at) {
  return JSON.stringify(buf.subarray(Math.max(0, at - 20), at + 40).toString("utf8"));
}

for (const t of templates) {
  // Detection on the real template text.
  const tplPath = join(scratch, t.name.replace(/[^A-Za-z0-9.-]+/g, "_") + ".jinja");
  writeFileSync(tplPath, t.src);
  const det = spawnSync(edgellm, ["chat", "--detect-template", tplPath], { encoding: "utf8" });
  if (det.status === 0 && det.stdout.trim() === t.family) passed++;
  else {
    failed++;
    console.log(`FAIL detect ${t.name}: expected ${t.family}, got ${JSON.stringify(det.stdout.trim())} ${det.stderr}`);
  }

  const template = new Template(t.src);
  for (const conv of conversations) {
    for (const gen of [false, true]) {
      const c = { ...conv, gen };
      const label = `${t.name} / ${conv.name} / add_generation_prompt=${gen}`;
      const why = t.skip && t.skip(c);
      if (why) {
        skipped++;
        continue;
      }
      let expected = null, error = null;
      try {
        expected = template.render({ messages: conv.messages, add_generation_prompt: gen, bos_token: t.bos, eos_token: t.eos });
      } catch (e) {
        error = String(e.message || e);
      }
      const input = JSON.stringify({ messages: conv.messages, add_generation_prompt: gen, bos_token: t.bos, eos_token: t.eos });
      const run = spawnSync(edgellm, ["chat", "--format-only", "--template-family", t.family], { input });
      if (error !== null) {
        raised++;
        if (run.status === 1 && run.stdout.length === 0) passed++;
        else {
          failed++;
          console.log(`FAIL ${label}: the template raises (${error}) but edgellm rendered ${JSON.stringify(run.stdout.toString())}`);
        }
        continue;
      }
      const want = Buffer.from(expected, "utf8");
      if (run.status !== 0) {
        failed++;
        console.log(`FAIL ${label}: edgellm failed (${run.stderr.toString().trim()}) but the template renders ${JSON.stringify(expected)}`);
        continue;
      }
      if (Buffer.compare(want, run.stdout) === 0) {
        passed++;
        continue;
      }
      let at = 0;
      while (at < want.length && at < run.stdout.length && want[at] === run.stdout[at]) at++;
      failed++;
      console.log(`FAIL ${label}: first difference at byte ${at}\n  jinja:   ${show(want, at)}\n  edgellm: ${show(run.stdout, at)}`);
    }
  }
}

// Templates of no known family fall back (the caller warns).
const unknown = join(scratch, "vicuna.jinja");
writeFileSync(unknown, "{% for message in messages %}{% if message['role'] == 'user' %}USER: {{ message['content'] }}\n{% elif message['role'] == 'assistant' %}ASSISTANT: {{ message['content'] }}\n{% endif %}{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}");
const det = spawnSync(edgellm, ["chat", "--detect-template", unknown], { encoding: "utf8" });
if (det.status === 0 && det.stdout.trim() === "unrecognised") passed++;
else {
  failed++;
  console.log(`FAIL detect unknown template: got ${JSON.stringify(det.stdout)}`);
}

console.log(`(${templates.length} templates x ${conversations.length} conversations x 2; ${raised} cases where the template raises; ${skipped} documented differences skipped)`);
console.log(`chat_templates: ${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
