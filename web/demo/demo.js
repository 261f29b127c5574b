// The chat page, with two backends: the model running in this browser (edgellm-wasm: loaded by
// URL or file picker, with a progress bar) or, in the copy `edgellm serve` embeds at "/"
// (<html data-backend="server">), the server's /v1/chat/completions. Streams answers, keeps
// conversations in localStorage. Served from web/demo (web/serve.py) or by `edgellm serve [--web]`:
// either way ../dist holds the browser build.
import { blockHtml, escapeHtml, renderGrowing } from "./markdown.js";

const $ = (id) => document.getElementById(id);
const STORE = "edgellm-demo-conversations";
const serverMode = document.documentElement.dataset.backend === "server";
let backend = null; // {stream(request) -> async iterable of chunks, stop()}
let engine = null;
const storage = openStorage();
let conversations = loadConversations();
let current = null;
let busy = false; // an answer is streaming: Enter and Send wait for it
let streaming = null; // the answer being written
const messageViews = new WeakMap(); // message -> the element showing it, while shown

// ---- environment checks: say plainly what this browser lacks ------------------------------
async function environmentWarnings() {
  const notes = [];
  let api = null;
  try {
    api = await import("../dist/edgellm.mjs");
  } catch (e) {
    notes.push(`The browser build could not be loaded (${e.message}): run \`make web\`.`);
  }
  if (api && !api.wasmSimdAvailable())
    notes.push("This browser cannot run WebAssembly SIMD, which the model needs: use a current " +
      "Chrome, Edge or Firefox, or Safari 16.4 or later.");
  if (!globalThis.crossOriginIsolated)
    notes.push("This page is not cross-origin isolated, so it runs on one thread and Stop takes " +
      "effect only when the answer ends. Serve it with COOP/COEP headers (edgellm serve --web, or " +
      "web/serve.py) for threads.");
  if (navigator.deviceMemory && navigator.deviceMemory < 4)
    notes.push(`This device reports ${navigator.deviceMemory} GB of memory: pick a small model.`);
  if (typeof caches !== "object")
    notes.push("This page is not a secure context (https or localhost), so models are downloaded " +
      "again on every load.");
  return notes;
}
const params = new URLSearchParams(location.search);
if (!serverMode) {
  environmentWarnings().then((warnings) => {
    if (warnings.length) { $("warning").textContent = warnings.join(" "); $("warning").hidden = false; }
  });
  $("threads").value = globalThis.crossOriginIsolated ? Math.min(navigator.hardwareConcurrency || 4, 8) : 1;
  if (params.get("model")) $("model-url").value = params.get("model");
}

// ---- sampling settings, kept across visits ----------------------------------------------------
const SETTINGS = "edgellm-demo-settings";
const SETTING_IDS = ["temperature", "top_p", "top_k", "min_p", "repeat_penalty", "max_tokens", "system"];
try {
  const saved = JSON.parse(storage?.getItem(SETTINGS) || "{}");
  for (const id of SETTING_IDS) if (typeof saved[id] === "string") $(id).value = saved[id];
} catch { /* unreadable settings: the defaults stay */ }
for (const id of SETTING_IDS) {
  $(id).addEventListener("change", () => {
    try {
      storage?.setItem(SETTINGS, JSON.stringify(Object.fromEntries(SETTING_IDS.map((k) => [k, $(k).value]))));
    } catch { /* a full storage: the settings still apply to this visit */ }
  });
}
// A field left empty or invalid falls back to its default rather than sending NaN.
function setting(id, fallback) {
  const v = Number($(id).value);
  return $(id).value.trim() !== "" && Number.isFinite(v) ? v : fallback;
}

// ---- conversations ---------------------------------------------------------------------------
// Shown in the sidebar, and on a phone also above the chat (the sidebar is a closed drawer there).
function storageWarning(text) {
  for (const id of ["storage-warning", "phone-storage-warning"]) {
    $(id).textContent = text;
    $(id).hidden = false;
  }
}
// Browsers that block site data (a setting, some private modes) throw on any use of localStorage,
// even reading the property: the page then keeps its conversations in memory and says so.
function openStorage() {
  try {
    localStorage.getItem(STORE);
    return localStorage;
  } catch (e) {
    storageWarning(`This browser does not let the page store data (${e.message}): conversations ` +
      "and settings are kept only until the page is closed. Allow site data to keep them.");
    return null;
  }
}
function isOptionalString(v) {
  return v === undefined || typeof v === "string";
}
function isMessage(m) {
  return typeof m === "object" && m !== null && (m.role === "user" || m.role === "assistant") &&
    typeof m.content === "string" && isOptionalString(m.stats) && isOptionalString(m.error);
}
function isConversation(c) {
  return typeof c === "object" && c !== null && typeof c.id === "string" && typeof c.title === "string" &&
    Array.isArray(c.messages) && c.messages.every(isMessage);
}
// What an earlier visit saved. Storage edited by hand, by an extension or by another page of this
// origin can hold anything: the conversations that are whole are shown; the saved text, when any
// of it is not, is kept under another key rather than overwritten by the next save.
function loadConversations() {
  const saved = storage?.getItem(STORE) ?? null;
  if (saved === null) return [];
  let parsed = null;
  try {
    parsed = JSON.parse(saved);
  } catch { /* unreadable: set aside below */ }
  const whole = Array.isArray(parsed) ? parsed.filter(isConversation) : [];
  if (!Array.isArray(parsed) || whole.length !== parsed.length) {
    const key = `${STORE}-unreadable-${Date.now()}`;
    try {
      storage.setItem(key, saved);
      storageWarning(`Some saved conversations could not be read; their saved text was kept in ` +
        `localStorage under "${key}".`);
    } catch {
      storageWarning("Some saved conversations could not be read, and storage is too full to keep a copy of them.");
    }
  }
  return whole;
}
// A full storage (quota) must not stop the chat: the conversation stays on the page.
function save() {
  if (!storage) return;
  try {
    storage.setItem(STORE, JSON.stringify(conversations));
  } catch (e) {
    storageWarning(`Conversations could not be saved (${e.message}): delete some to make room.`);
  }
}
// An empty conversation is reused rather than joined by another one.
function newConversation() {
  if (current && !current.messages.length) {
    $("input").focus();
    return;
  }
  current = { id: Date.now().toString(36), title: "New conversation", messages: [] };
  conversations.unshift(current);
  save();
  renderList();
  renderMessages();
}

// ---- on a phone: the sidebar as a drawer ----------------------------------------------------
// Open, it is a modal dialog over the chat (which is inert meanwhile); choosing or starting a
// conversation, a tap beside it, or Escape closes it.
const phoneLayout = matchMedia("(max-width: 720px)");
const drawerIsOpen = () => document.body.classList.contains("drawer-open");
// Where the focus goes once a conversation is chosen: the message box, or with no chat shown (no
// model loaded yet) the menu button on a phone.
const composerOrMenu = () => ($("input").getClientRects().length ? $("input") : $("menu"));
function openDrawer() {
  document.body.classList.add("drawer-open");
  $("menu").setAttribute("aria-expanded", "true");
  $("sidebar").setAttribute("role", "dialog");
  $("sidebar").setAttribute("aria-modal", "true");
  document.querySelector("main").inert = true;
  $("backdrop").hidden = false;
  ($("conversations").querySelector("li.active .open") ?? $("new-chat")).focus();
}
function closeDrawer() {
  if (!drawerIsOpen()) return;
  document.body.classList.remove("drawer-open");
  $("menu").setAttribute("aria-expanded", "false");
  $("sidebar").removeAttribute("role");
  $("sidebar").removeAttribute("aria-modal");
  document.querySelector("main").inert = false;
  $("backdrop").hidden = true;
}
$("menu").onclick = openDrawer;
$("backdrop").onclick = () => { closeDrawer(); $("menu").focus(); };
// What Tab can reach in the drawer, in order: not hidden buttons (no box), nor the fields of
// closed settings (Chromium gives them a box).
const drawerStops = () => [...$("sidebar").querySelectorAll("button, input, textarea, select, summary, a[href]")]
  .filter((e) => !e.disabled && e.getClientRects().length &&
    (e.tagName === "SUMMARY" || !e.closest("details:not([open])")));
document.addEventListener("keydown", (ev) => {
  if (!drawerIsOpen()) return;
  if (ev.key === "Escape") { closeDrawer(); $("menu").focus(); }
  // Modal: Tab past the last stop goes to the first and Shift+Tab before the first to the last,
  // instead of leaving for the browser's own controls and then the inert chat.
  if (ev.key !== "Tab") return;
  const stops = drawerStops();
  const at = stops.indexOf(document.activeElement);
  const wrapTo = ev.shiftKey ? (at <= 0 ? stops.at(-1) : null) : (at === -1 || at === stops.length - 1 ? stops[0] : null);
  if (wrapTo) { ev.preventDefault(); wrapTo.focus(); }
});
// A window widened past the phone layout shows the sidebar in place: nothing may stay inert.
phoneLayout.addEventListener("change", () => { if (!phoneLayout.matches) closeDrawer(); });
// Each conversation is a button (Tab and Enter reach it) beside its delete button.
function renderList() {
  const ul = $("conversations");
  ul.replaceChildren();
  for (const c of conversations) {
    const li = document.createElement("li");
    li.className = c === current ? "active" : "";
    const open = document.createElement("button");
    open.className = "open";
    if (c === current) open.setAttribute("aria-current", "true");
    const title = document.createElement("span");
    title.textContent = c.title;
    title.dir = "auto"; // a right-to-left title reads right to left
    open.append(title);
    open.onclick = () => {
      current = c;
      renderList();
      renderMessages();
      closeDrawer();
      composerOrMenu().focus();
    };
    const del = document.createElement("button");
    del.className = "delete";
    del.textContent = "✕";
    del.title = "Delete conversation";
    del.setAttribute("aria-label", `Delete conversation: ${c.title}`);
    del.onclick = () => {
      const hadFocus = document.activeElement === del;
      if (c.messages.includes(streaming)) backend?.stop(); // nobody is left to read that answer
      offerUndo(c, conversations.indexOf(c));
      conversations = conversations.filter((x) => x !== c);
      if (current === c) current = conversations[0] || null;
      save();
      if (!current) newConversation(); else { renderList(); renderMessages(); }
      if (hadFocus) $("conversations").querySelector("li.active .open")?.focus(); // not lost on <body>
    };
    li.append(open, del);
    ul.append(li);
  }
  $("topbar-title").textContent = current?.title ?? "";
}
// A deleted conversation can be brought back until the next deletion or for UNDO_MS: on a phone
// the open conversation's ✕ is one tap away from the taps that choose conversations.
const UNDO_MS = 10000;
let deleted = null; // {conversation, index, timer}
function offerUndo(conversation, index) {
  clearTimeout(deleted?.timer);
  deleted = { conversation, index, timer: setTimeout(forgetDeleted, UNDO_MS) };
  $("deleted-text").textContent = `Deleted "${conversation.title}".`;
  $("deleted").hidden = false;
}
function forgetDeleted() {
  clearTimeout(deleted?.timer);
  deleted = null;
  $("deleted").hidden = true;
}
$("undo-delete").onclick = () => {
  if (!deleted) return;
  const { conversation, index } = deleted;
  forgetDeleted();
  conversations.splice(Math.min(index, conversations.length), 0, conversation);
  current = conversation;
  save();
  renderList();
  renderMessages();
  $("conversations").querySelector("li.active .open")?.focus();
};
function showStats(view, m) {
  const stats = view.lastElementChild;
  stats.className = m.error ? "stats error" : "stats";
  stats.textContent = m.stats || "";
}
function messageElement(m) {
  const div = document.createElement("div");
  div.className = `msg ${m.role}`;
  const who = document.createElement("div");
  who.className = "who";
  who.textContent = m.role === "user" ? "You" : "Model";
  const copy = document.createElement("button");
  copy.textContent = "Copy";
  copy.title = "Copy this message";
  copy.onclick = () => copyText(copy, m.content);
  who.append(copy);
  if (m.role === "assistant") { // shown on the conversation's last answer while none streams (CSS)
    const again = document.createElement("button");
    again.className = "regenerate";
    again.textContent = "Regenerate";
    again.title = "Replace this answer with a new one";
    again.onclick = regenerate;
    who.append(again);
  }
  const body = document.createElement("div");
  body.className = "body";
  body.dir = "auto";
  if (m.role === "user") body.innerHTML = escapeHtml(m.content).replace(/\n/g, "<br>");
  else showMarkdown(body, m.content);
  const stats = document.createElement("div");
  div.append(who, body, stats);
  showStats(div, m);
  messageViews.set(m, div);
  return div;
}
// An answer shown as it streams: only its tail is parsed again, and only what changed is replaced,
// so a block already whole stays the same element (a code block's Copy button being clicked, text
// being selected), and so do the finished items, rows and code lines of a list, table or code
// block that grows.
const blockSources = new WeakMap(); // element -> the block (markdown.js) it was made from
const parses = new WeakMap(); // an answer's element -> what renderGrowing keeps between tokens
function nodeFrom(html) {
  const template = document.createElement("template");
  template.innerHTML = html;
  return template.content.firstChild;
}
// A list, table or code block shown, made from `shown`, brought to `block`: the parts (<li>, <tr>,
// lines of code) that are the same stay the same nodes.
function updateParts(element, shown, block) {
  const container = block.partsIn ? element.querySelector(block.partsIn) : element;
  const nodes = [...container.childNodes];
  block.parts.forEach((html, k) => {
    if (nodes[k] && shown.parts[k] === html) return;
    const part = nodeFrom(html);
    if (nodes[k]) nodes[k].replaceWith(part);
    else container.append(part);
  });
  for (const stale of nodes.slice(block.parts.length)) stale.remove();
}
function showMarkdown(body, text) {
  if (!parses.has(body)) parses.set(body, {});
  const blocks = renderGrowing(text, parses.get(body));
  const shown = [...body.children];
  blocks.forEach((block, i) => {
    const source = shown[i] && blockSources.get(shown[i]);
    if (source === block) return;
    if (typeof block === "object" && typeof source === "object" && source.open === block.open) {
      updateParts(shown[i], source, block);
      blockSources.set(shown[i], block);
      return;
    }
    const element = nodeFrom(blockHtml(block));
    // A code block's text made whole is one node: a node a line, as updateParts keeps them.
    if (block.partsIn === "code") element.querySelector("code").replaceChildren(...block.parts.map(nodeFrom));
    blockSources.set(element, block);
    if (shown[i]) shown[i].replaceWith(element);
    else body.append(element);
  });
  for (const stale of shown.slice(blocks.length)) stale.remove();
}
function renderMessages() {
  const messages = current ? current.messages.map(messageElement) : [];
  if (!messages.length) {
    const empty = document.createElement("div");
    empty.className = "empty";
    empty.textContent = serverMode ? "Ask the server's model something." :
      "Ask something: the answer is written here, on this device.";
    messages.push(empty);
  }
  $("messages").replaceChildren(...messages);
  $("messages").scrollTop = $("messages").scrollHeight;
  offerLatest(); // a conversation too short to scroll fires no scroll event to hide the button
  offerAnswering();
}
// The Clipboard API exists only in a secure context: a phone opening `edgellm serve --host` at
// http://192.168.x.y has none, so the text is then copied the older way, selected in a hidden
// text box. The button says whether the copy worked.
async function writeClipboard(text, button) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch { /* no Clipboard API, or refused: the older way below */ }
  const box = document.createElement("textarea");
  box.value = text;
  box.readOnly = true; // no on-screen keyboard popping up on a phone
  box.style.cssText = "position: fixed; top: 0; left: 0; opacity: 0;";
  document.body.append(box);
  box.select();
  let copied = false;
  try {
    copied = document.execCommand("copy");
  } catch { /* not even that */ }
  box.remove();
  button.focus();
  return copied;
}
async function copyText(button, text) {
  const label = button.textContent;
  button.textContent = (await writeClipboard(text, button)) ? "Copied" : "Copy failed";
  setTimeout(() => { button.textContent = label; }, 1200);
}
$("messages").addEventListener("click", (ev) => {
  if (ev.target.classList.contains("copy-code"))
    copyText(ev.target, ev.target.nextElementSibling.textContent);
});

// ---- loading -----------------------------------------------------------------------------------
const PHASES = { cache: "Reading from the cache", verify: "Checking SHA-256 of", load: "Loading" };
const mebibytes = (bytes) => (bytes / 2 ** 20).toFixed(1);
// A phone's slow connection gets KiB/s: "0.0 MiB/s" would say nothing arrives.
const rate = (bytesPerSecond) => (bytesPerSecond < 2 ** 20 ? `${Math.max(1, Math.round(bytesPerSecond / 1024))} KiB/s`
  : `${mebibytes(bytesPerSecond)} MiB/s`);
function duration(seconds) {
  if (seconds < 90) return `${Math.max(1, Math.round(seconds))} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${Math.floor(seconds / 3600)} h ${Math.round((seconds % 3600) / 60)} min`;
}
// A download of hundreds of MiB on a phone's connection: its status says how fast it goes and
// how long it has left (over the last few seconds), and when nothing arrives, for how long (the
// engine gives up after a minute of that, keeping what arrived for the next Load).
const SPEED_WINDOW_MS = 5000;
const STALL_NOTE_AFTER_MS = 5000;
function downloadStatus(show) {
  const samples = []; // [time, bytes loaded], the last SPEED_WINDOW_MS of them
  let total = 0;
  const describe = () => {
    const [lastAt, loaded] = samples.at(-1);
    const [firstAt, firstLoaded] = samples[0];
    const now = performance.now();
    let text = `Downloading ${mebibytes(loaded)} of ${mebibytes(total)} MiB`;
    if (now - lastAt >= STALL_NOTE_AFTER_MS) {
      text += ` · nothing has arrived for ${duration((now - lastAt) / 1000)}; still waiting`;
    } else if (lastAt - firstAt >= 1000) {
      const perSecond = (loaded - firstLoaded) / ((lastAt - firstAt) / 1000);
      if (perSecond > 0) text += ` · ${rate(perSecond)} · about ${duration((total - loaded) / perSecond)} left`;
    }
    return text;
  };
  const timer = setInterval(() => samples.length && show(describe()), 1000);
  return {
    progress(loaded, size) {
      const now = performance.now();
      samples.push([now, loaded]);
      while (samples.length > 2 && now - samples[0][0] > SPEED_WINDOW_MS) samples.shift();
      total = size;
      show(describe());
    },
    stop: () => clearInterval(timer),
  };
}
// The file picker (and a drop) stay usable while a model loads: the last model chosen wins; the
// earlier load is aborted (its download stops), and one that finishes loading anyway is unloaded,
// not left holding memory. Cancel aborts the load in progress and leaves the page idle.
let latestLoad = 0;
let loadController = null;
async function load(model) {
  const attempt = ++latestLoad;
  const superseded = () => attempt !== latestLoad;
  loadController?.abort();
  const controller = new AbortController();
  loadController = controller;
  $("status").textContent = "Starting…";
  $("progress").value = 0;
  $("progress").hidden = false;
  $("load-url").disabled = true;
  $("cancel-load").hidden = false;
  const download = downloadStatus((text) => { if (!superseded()) $("status").textContent = text; });
  try {
    if (engine) await engine.unload();
    engine = null;
    backend = null;
    const { createEngine } = await import("../dist/edgellm.mjs");
    const threads = Number($("threads").value) || 1;
    const sha256 = typeof model === "string" && params.get("sha256") ? params.get("sha256") : undefined;
    const created = await createEngine({
      model, threads, sha256, signal: controller.signal,
      onProgress: ({ phase, loaded, total }) => {
        if (superseded()) return;
        $("progress").value = total ? loaded / total : 0;
        if (phase === "download") {
          download.progress(loaded, total);
        } else {
          download.stop();
          $("status").textContent = `${PHASES[phase] || phase} ${mebibytes(loaded)} of ${mebibytes(total)} MiB`;
        }
      },
    });
    if (superseded()) {
      await created.unload();
      return;
    }
    engine = created;
    const info = engine.runtimeInfo();
    $("runtime").textContent = `${info.model.name || info.model.architecture} · ${info.model.quantization} · ` +
      `${info.multiThreaded ? `${info.threads} threads` : "1 thread"} · ${info.kernelSet}`;
    backend = {
      stream: (request) => engine.chat.completions.create({ ...request, stream: true }),
      stop: () => engine.interrupt(),
    };
    $("status").textContent = "Ready.";
    $("loader").hidden = true;
    $("chat").hidden = false;
    $("change-model").hidden = false;
    $("input").focus();
  } catch (e) {
    if (superseded()) return;
    if (e.name === "AbortError") {
      $("progress").hidden = true;
      $("status").textContent = "Loading cancelled: no model is loaded. Load one by URL or choose a file.";
    } else {
      $("status").textContent = `Could not load the model: ${e.message}`;
    }
  } finally {
    download.stop();
    if (!superseded()) {
      $("load-url").disabled = false;
      $("cancel-load").hidden = true;
      loadController = null;
    }
  }
}
$("cancel-load").onclick = () => loadController?.abort();
$("load-url").onclick = () => {
  if ($("model-url").value.trim()) load($("model-url").value.trim());
  else $("status").textContent = "Enter the URL of a GGUF model, or choose a file.";
};
// A .gguf dropped anywhere on the loader loads like one chosen with the picker.
for (const [type, dragging] of [["dragover", true], ["dragleave", false], ["drop", false]]) {
  $("loader").addEventListener(type, (ev) => {
    if (serverMode) return;
    ev.preventDefault();
    $("loader").classList.toggle("dragging", dragging);
    const file = type === "drop" && ev.dataTransfer.files[0];
    if (file) load(file);
  });
}
$("model-url").onkeydown = (ev) => { if (ev.key === "Enter") $("load-url").click(); };
$("change-model").onclick = () => {
  if (busy) return;
  $("chat").hidden = true;
  $("loader").hidden = false;
  $("change-model").hidden = true;
  $("progress").hidden = true;
  $("status").textContent = "The current model stays loaded until another one is.";
  closeDrawer();
  $("model-url").focus();
};
$("model-file").onchange = (ev) => ev.target.files[0] && load(ev.target.files[0]);

// ---- the server's API (the page at "/" of edgellm serve) -----------------------------------
// fetch() says only "Failed to fetch" or "network error" when the server is gone.
function connectionLost(e) {
  if (e.name === "AbortError") return e;
  return new Error(`The connection to the server was lost (${e.message}): check that edgellm serve ` +
    "is still running, then send your message again.");
}
async function* serverEvents(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffered = "";
  for (;;) {
    let done, value;
    try {
      ({ done, value } = await reader.read());
    } catch (e) {
      throw connectionLost(e);
    }
    if (done) return;
    buffered += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffered.indexOf("\n\n")) >= 0) {
      const event = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") return;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);
        yield chunk;
      }
    }
  }
}
// The server's own words, and for a missing key where this page takes it (the server's message
// speaks of HTTP headers, which a user of the page never sees).
async function refusal(r) {
  const j = await r.json().catch(() => ({}));
  const said = j.error?.message || `HTTP ${r.status}`;
  if (r.status === 401)
    return new Error(`The server needs its API key (${said}): enter it under Sampling settings, API key.`);
  return new Error(said);
}
function serverBackend() {
  let controller = null;
  const headers = () => {
    const h = { "Content-Type": "application/json" };
    if ($("api-key").value) h.Authorization = `Bearer ${$("api-key").value}`;
    return h;
  };
  return {
    async describe() {
      const r = await fetch("/v1/models", { headers: headers() }).catch((e) => { throw connectionLost(e); });
      if (!r.ok) throw await refusal(r);
      const j = await r.json().catch(() => ({}));
      return `${j.data?.[0]?.id ?? "model"} · edgellm serve`;
    },
    async stream(request) {
      controller = new AbortController();
      const r = await fetch("/v1/chat/completions", {
        method: "POST", headers: headers(), signal: controller.signal,
        body: JSON.stringify({ ...request, stream: true, stream_options: { include_usage: true } }),
      }).catch((e) => { throw connectionLost(e); });
      if (!r.ok) throw await refusal(r);
      return serverEvents(r.body);
    },
    stop: () => controller?.abort(),
  };
}
async function connectServer() {
  backend = serverBackend();
  try {
    $("runtime").textContent = await backend.describe();
  } catch (e) {
    $("runtime").textContent = e.message;
  }
}
$("api-key").addEventListener("change", () => serverMode && connectServer());

// ---- chatting ------------------------------------------------------------------------------
// What the model is sent: the conversation without exchanges that failed before any answer (a
// refused request), so a retry does not send the question twice in a row.
function history(messages) {
  const kept = [];
  for (const m of messages) {
    if (m.role === "assistant" && m.error && !m.content) kept.pop();
    else kept.push({ role: m.role, content: m.content });
  }
  return kept;
}
// The answer, when its conversation is the one shown (the user may look at another meanwhile).
const shownView = (message) => (messageViews.get(message)?.isConnected ? messageViews.get(message) : null);
// Back to the message box after sending with the button or stopping, unless the user went elsewhere.
function refocusInput() {
  if ([document.body, $("send"), $("stop")].includes(document.activeElement) || !document.activeElement)
    $("input").focus();
}
// Within a line of the end: where the view follows the answer as it grows.
const atBottom = (el) => el.scrollHeight - el.scrollTop - el.clientHeight < 24;
// Scrolled up: a button back to the end (a long answer is a long way down on a phone).
const offerLatest = () => { $("to-latest").hidden = atBottom($("messages")); };
$("messages").addEventListener("scroll", offerLatest);
$("to-latest").onclick = () => {
  $("messages").scrollTop = $("messages").scrollHeight;
  $("input").focus();
};
const SAVE_EVERY_MS = 1000; // a streamed answer is saved this often, so a crash loses little of it
async function send() {
  const text = $("input").value.trim();
  if (!text || !backend || busy) return;
  $("input").value = "";
  fitInput();
  const conversation = current;
  conversation.messages.push({ role: "user", content: text });
  // Code points, not UTF-16 units: a cut never leaves half an emoji.
  if (conversation.title === "New conversation") conversation.title = Array.from(text.replace(/\s+/g, " ")).slice(0, 40).join("");
  await answerLastQuestion(conversation);
}
// The last answer (stopped, cut short, refused, or just not liked) replaced by a new one, without
// typing the question again.
function regenerate() {
  if (busy || !backend || current?.messages.at(-1)?.role !== "assistant") return;
  current.messages.pop();
  $("input").focus(); // the button goes away while the new answer streams
  answerLastQuestion(current);
}
// Looking at another conversation while an answer streams, Send waits and Stop stops that answer:
// a button above the message box says which conversation it is in and goes there.
let answeringIn = null; // the conversation whose answer streams
function offerAnswering() {
  const elsewhere = busy && answeringIn !== current && conversations.includes(answeringIn);
  $("answering-elsewhere").hidden = !elsewhere;
  if (elsewhere) $("answering-elsewhere").textContent = `Writing the answer in "${answeringIn.title}": show it`;
}
$("answering-elsewhere").onclick = () => {
  current = answeringIn;
  renderList();
  renderMessages();
  $("input").focus();
};
async function answerLastQuestion(conversation) {
  busy = true;
  answeringIn = conversation;
  document.body.classList.add("answering");
  // Another model is loaded only between answers: greyed out, not a click that does nothing.
  $("change-model").disabled = true;
  $("change-model").title = "Stop the answer first, or wait for its end";
  const answer = { role: "assistant", content: "" };
  conversation.messages.push(answer);
  streaming = answer;
  save(); // the question survives a reload during the answer
  renderList();
  renderMessages();
  $("send").hidden = true;
  $("stop").hidden = false;
  refocusInput();
  const t0 = performance.now();
  let firstAt = 0;
  let savedAt = t0;
  let usage = null;
  let finish = null;
  let pieces = 0;
  try {
    const sent = history(conversation.messages.slice(0, -1));
    const system = $("system").value.trim();
    const stream = await backend.stream({
      messages: system ? [{ role: "system", content: system }, ...sent] : sent,
      temperature: setting("temperature", 0.7),
      top_p: setting("top_p", 0.95),
      top_k: setting("top_k", 40),
      min_p: setting("min_p", 0.05),
      repeat_penalty: setting("repeat_penalty", 1.0),
      max_tokens: setting("max_tokens", 256),
    });
    for await (const chunk of stream) {
      const choice = chunk.choices?.[0];
      const delta = choice?.delta?.content;
      if (delta) {
        if (!firstAt) firstAt = performance.now();
        pieces++;
        answer.content += delta;
        const view = shownView(answer);
        if (view) {
          const follow = atBottom($("messages")); // else the reader scrolled up to read: stay there
          showMarkdown(view.querySelector(".body"), answer.content);
          if (follow) $("messages").scrollTop = $("messages").scrollHeight;
          else offerLatest();
        }
        if (performance.now() - savedAt > SAVE_EVERY_MS) { save(); savedAt = performance.now(); }
      }
      if (choice?.finish_reason) finish = choice.finish_reason;
      if (chunk.usage) usage = chunk.usage;
    }
  } catch (e) {
    if (e.name === "AbortError") finish = "abort";
    else answer.error = e.message;
  }
  if (pageClosing) return; // its stream broke because the page goes away: pagehide saved the answer
  answer.stats = answer.error ? `Error: ${answer.error}` : answerStats(usage, finish, pieces, t0, firstAt, performance.now());
  const view = shownView(answer);
  if (view) showStats(view, answer); // the answer's elements stay: a selection in it, a Copy being pressed
  streaming = null;
  save();
  $("send").hidden = false;
  $("stop").hidden = true;
  busy = false;
  answeringIn = null;
  offerAnswering();
  $("change-model").disabled = false;
  $("change-model").title = "";
  document.body.classList.remove("answering");
  refocusInput();
}
// Leaving or reloading the page while an answer streams keeps what arrived, marked as cut short.
let pageClosing = false;
addEventListener("pagehide", () => {
  if (!streaming) return;
  pageClosing = true;
  streaming.stats = "The page was closed while this answer was written: it ends here.";
  save();
});
// Tokens, decode speed and time to first token of one answer: the engine's own figures where it
// reports them (the in-browser engine), else measured here from the stream's timing.
function answerStats(usage, finish, pieces, t0, firstAt, tEnd) {
  const tokens = usage?.completion_tokens ?? pieces;
  const decodeSeconds = firstAt ? (tEnd - firstAt) / 1000 : 0;
  const speed = usage?.extra?.decode_tokens_per_s ??
    (tokens > 1 && decodeSeconds > 0 ? (tokens - 1) / decodeSeconds : 0);
  return `${tokens} ${tokens === 1 ? "token" : "tokens"}${speed > 0 ? ` · ${speed.toFixed(1)} tokens/s` : ""} · ` +
    `first token after ${((firstAt || tEnd) - t0).toFixed(0)} ms` + (finish === "abort" ? " · stopped" : "");
}
$("composer").onsubmit = (ev) => { ev.preventDefault(); send(); };
// The message box grows with its text up to its max-height (CSS), then scrolls; text that fits
// in its two rows leaves it at its own size.
function fitInput() {
  const box = $("input");
  box.style.height = "";
  if (box.scrollHeight > box.clientHeight) box.style.height = `${box.scrollHeight + box.offsetHeight - box.clientHeight}px`;
}
$("input").addEventListener("input", fitInput);
// Enter that confirms an input method's composition (Chinese, Japanese, Korean...) is not a send.
$("input").onkeydown = (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); send(); }
  // Escape stops the answer being written, without leaving the message box for the Stop button.
  if (ev.key === "Escape" && busy && !ev.isComposing) { ev.preventDefault(); backend?.stop(); }
};
$("stop").onclick = () => backend?.stop();
$("new-chat").onclick = () => {
  newConversation();
  closeDrawer();
  composerOrMenu().focus();
};

if (conversations.length) { current = conversations[0]; renderList(); renderMessages(); } else newConversation();
if (serverMode) {
  for (const el of document.querySelectorAll(".browser-only")) el.hidden = true;
  for (const el of document.querySelectorAll(".server-only")) el.hidden = false;
  $("subtitle").textContent = "on this server";
  $("loader").hidden = true;
  $("chat").hidden = false;
  connectServer();
}
