// The demo chat page: loads a GGUF model into edgellm-wasm (by URL or file picker), streams
// answers, keeps conversations in localStorage. Served from web/ so that ../dist is reachable
// (web/serve.py sends the headers that enable threads).
import { createEngine } from "../dist/edgellm.mjs";

const $ = (id) => document.getElementById(id);
const STORE = "edgellm-demo-conversations";
let engine = null;
let conversations = JSON.parse(localStorage.getItem(STORE) || "[]");
let current = null;

// ---- environment checks: say plainly what this browser lacks ------------------------------
function environmentWarnings() {
  const notes = [];
  if (typeof WebAssembly !== "object") notes.push("This browser cannot run WebAssembly.");
  if (!globalThis.crossOriginIsolated)
    notes.push("This page is not cross-origin isolated, so it runs on one thread and Stop takes " +
      "effect only when the answer ends. Serve it with COOP/COEP headers (web/serve.py) for threads.");
  if (navigator.deviceMemory && navigator.deviceMemory < 4)
    notes.push(`This device reports ${navigator.deviceMemory} GB of memory: pick a small model.`);
  return notes;
}
const warnings = environmentWarnings();
if (warnings.length) { $("warning").textContent = warnings.join(" "); $("warning").hidden = false; }
$("threads").value = globalThis.crossOriginIsolated ? Math.min(navigator.hardwareConcurrency || 4, 8) : 1;
const params = new URLSearchParams(location.search);
if (params.get("model")) $("model-url").value = params.get("model");

// ---- Markdown: escaped text, fenced code, inline code, bold, italics, lists, paragraphs ----
function escapeHtml(s) {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}
function inline(s) {
  return escapeHtml(s)
    .replace(/`([^`]+)`/g, "<code>$1</code>")
    .replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>")
    .replace(/(^|[\s(])\*([^*\s][^*]*)\*/g, "$1<em>$2</em>");
}
function renderMarkdown(text) {
  const out = [];
  const parts = text.split(/```/);
  parts.forEach((part, i) => {
    if (i % 2 === 1) { // a code block (possibly still open while streaming)
      const nl = part.indexOf("\n");
      const code = nl >= 0 ? part.slice(nl + 1) : "";
      out.push(`<pre><button class="copy-code">Copy</button><code>${escapeHtml(code)}</code></pre>`);
      return;
    }
    for (const block of part.split(/\n{2,}/)) {
      if (!block.trim()) continue;
      const lines = block.split("\n");
      if (lines.every((l) => /^\s*([-*]|\d+\.)\s/.test(l) || !l.trim())) {
        const ordered = /^\s*\d+\./.test(lines[0]);
        const items = lines.filter((l) => l.trim()).map((l) => `<li>${inline(l.replace(/^\s*([-*]|\d+\.)\s/, ""))}</li>`);
        out.push(ordered ? `<ol>${items.join("")}</ol>` : `<ul>${items.join("")}</ul>`);
      } else {
        out.push(`<p>${lines.map(inline).join("<br>")}</p>`);
      }
    }
  });
  return out.join("");
}

// ---- conversations ---------------------------------------------------------------------------
function save() { localStorage.setItem(STORE, JSON.stringify(conversations)); }
function newConversation() {
  current = { id: Date.now().toString(36), title: "New conversation", messages: [] };
  conversations.unshift(current);
  save();
  renderList();
  renderMessages();
}
function renderList() {
  const ul = $("conversations");
  ul.replaceChildren();
  for (const c of conversations) {
    const li = document.createElement("li");
    li.className = c === current ? "active" : "";
    const title = document.createElement("span");
    title.textContent = c.title;
    const del = document.createElement("button");
    del.textContent = "✕";
    del.title = "Delete conversation";
    del.onclick = (ev) => {
      ev.stopPropagation();
      conversations = conversations.filter((x) => x !== c);
      if (current === c) current = conversations[0] || null;
      save();
      if (!current) newConversation(); else { renderList(); renderMessages(); }
    };
    li.append(title, del);
    li.onclick = () => { current = c; renderList(); renderMessages(); };
    ul.append(li);
  }
}
function messageElement(m) {
  const div = document.createElement("div");
  div.className = `msg ${m.role}`;
  const who = document.createElement("div");
  who.className = "who";
  who.textContent = m.role === "user" ? "You" : "Model";
  const copy = document.createElement("button");
  copy.textContent = "Copy";
  copy.onclick = () => navigator.clipboard?.writeText(m.content);
  who.append(copy);
  const body = document.createElement("div");
  body.className = "body";
  body.innerHTML = m.role === "user" ? escapeHtml(m.content).replace(/\n/g, "<br>") : renderMarkdown(m.content);
  const stats = document.createElement("div");
  stats.className = "stats";
  stats.textContent = m.stats || "";
  div.append(who, body, stats);
  return div;
}
function renderMessages() {
  $("messages").replaceChildren(...(current ? current.messages.map(messageElement) : []));
  $("messages").scrollTop = $("messages").scrollHeight;
}
$("messages").addEventListener("click", (ev) => {
  if (ev.target.classList.contains("copy-code"))
    navigator.clipboard?.writeText(ev.target.nextElementSibling.textContent);
});

// ---- loading -----------------------------------------------------------------------------------
async function load(model) {
  $("status").textContent = "Starting…";
  $("progress").hidden = false;
  $("load-url").disabled = true;
  try {
    if (engine) await engine.unload();
    const threads = Number($("threads").value) || 1;
    engine = await createEngine({
      model, threads,
      onProgress: ({ phase, loaded, total }) => {
        $("progress").value = total ? loaded / total : 0;
        $("status").textContent = `${phase === "download" ? "Downloading" : "Loading"} ${(loaded / 2 ** 20).toFixed(1)} of ${(total / 2 ** 20).toFixed(1)} MiB`;
      },
    });
    const info = engine.runtimeInfo();
    $("runtime").textContent = `${info.model.name || info.model.architecture} · ${info.model.quantization} · ` +
      `${info.multiThreaded ? `${info.threads} threads` : "1 thread"} · ${info.kernelSet}`;
    $("status").textContent = "Ready.";
    $("loader").hidden = true;
    $("chat").hidden = false;
    $("input").focus();
  } catch (e) {
    $("status").textContent = `Could not load the model: ${e.message}`;
  } finally {
    $("load-url").disabled = false;
  }
}
$("load-url").onclick = () => $("model-url").value && load($("model-url").value);
$("model-file").onchange = (ev) => ev.target.files[0] && load(ev.target.files[0]);

// ---- chatting ------------------------------------------------------------------------------
async function send() {
  const text = $("input").value.trim();
  if (!text || !engine) return;
  $("input").value = "";
  current.messages.push({ role: "user", content: text });
  if (current.title === "New conversation") current.title = text.slice(0, 40);
  const answer = { role: "assistant", content: "" };
  current.messages.push(answer);
  renderList();
  renderMessages();
  const el = $("messages").lastElementChild;
  $("send").hidden = true;
  $("stop").hidden = false;
  const t0 = performance.now();
  let firstAt = 0;
  try {
    const stream = await engine.chat.completions.create({
      messages: current.messages.slice(0, -1).map(({ role, content }) => ({ role, content })),
      stream: true,
      temperature: Number($("temperature").value),
      top_p: Number($("top_p").value),
      top_k: Number($("top_k").value),
      max_tokens: Number($("max_tokens").value),
    });
    for await (const chunk of stream) {
      const delta = chunk.choices[0].delta.content;
      if (delta) {
        if (!firstAt) firstAt = performance.now();
        answer.content += delta;
        el.querySelector(".body").innerHTML = renderMarkdown(answer.content);
        $("messages").scrollTop = $("messages").scrollHeight;
      }
      if (chunk.usage) {
        const u = chunk.usage;
        answer.stats = `${u.completion_tokens} tokens · ${u.extra.decode_tokens_per_s.toFixed(1)} tokens/s · ` +
          `first token after ${((firstAt || performance.now()) - t0).toFixed(0)} ms` +
          (chunk.choices[0].finish_reason === "abort" ? " · stopped" : "");
      }
    }
  } catch (e) {
    answer.stats = `Error: ${e.message}`;
  }
  el.querySelector(".stats").textContent = answer.stats || "";
  save();
  $("send").hidden = false;
  $("stop").hidden = true;
}
$("composer").onsubmit = (ev) => { ev.preventDefault(); send(); };
$("input").onkeydown = (ev) => { if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); send(); } };
$("stop").onclick = () => engine?.interrupt();
$("new-chat").onclick = newConversation;

if (conversations.length) { current = conversations[0]; renderList(); renderMessages(); } else newConversation();
