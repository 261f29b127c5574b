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
const REFERENCE = "@huggingface/jinja";
function load(t) {
  if (t.shared) {
    const cfg = JSON.parse(readFileSync(join(shared, t.shared), "utf8"));
    return { ...t, src: cfg.chat_template, bos: tokenText(cfg.bos_token), eos: tokenText(cfg.eos_token) };
  }
  return { ...t, src: readFileSync(join(here, "templates", t.file), "utf8") };
}
// The documented reason this template and its family differ on conversation c, or null.
function difference(t, c) {
  const roles = c.messages.map((m) => m.role);
  const holds = {
    no_generation_prompt: () => !c.gen,
    has_system: () => roles.includes("system"),
    empty_system: () => c.messages.some((m) => m.role === "system" && m.content === ""),
    other_roles: () => roles.some((r) => !["system", "user", "assistant"].includes(r)),
    has_tools: () => c.tools !== undefined || c.messages.some((m) => m.tool_calls !== undefined),
  };
  for (const d of t.differences ?? []) {
    if (d.only && d.only !== REFERENCE) continue;
    const ok = d.when.startsWith("case:") ? c.name === d.when.slice(5) : holds[d.when]();
    if (ok) return d.reason;
  }
  return null;
}

// Each template: where its text comes from, the family it must be recognised as, the bos/eos texts
// of its model, and the cases where the family knowingly differs from this particular template.
const templates = JSON.parse(readFileSync(join(here, "templates.json"), "utf8")).templates.map(load);

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
      const why = difference(t, c);
      if (why) {
        skipped++;
        continue;
      }
      let expected = null, error = null;
      try {
        const context = { messages: conv.messages, add_generation_prompt: gen, bos_token: t.bos, eos_token: t.eos };
        if (conv.tools !== undefined) context.tools = conv.tools;
        expected = template.render(context);
      } catch (e) {
        error = String(e.message || e);
      }
      const input = JSON.stringify({ messages: conv.messages, tools: conv.tools, add_generation_prompt: gen, bos_token: t.bos, eos_token: t.eos });
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
