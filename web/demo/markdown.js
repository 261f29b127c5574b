// The chat page's Markdown: fenced code blocks (with a copy button), inline code, bold, italics,
// headings, lists and paragraphs. Safe by construction: every piece of text is HTML-escaped before any
// markup is added, and the markup added is fixed (no links, images or raw HTML).
export function escapeHtml(s) {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}
function inline(s) {
  return escapeHtml(s)
    .replace(/`([^`]+)`/g, "<code>$1</code>")
    .replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>")
    .replace(/(^|[\s(])\*([^*\s][^*]*)\*/g, "$1<em>$2</em>");
}
export function renderMarkdown(text) {
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
      const lines = block.replace(/^\s*\n|\n\s*$/g, "").split("\n"); // no empty first or last line
      const heading = /^(#{1,6})\s+(.*)$/.exec(lines[0]);
      if (heading) { // "# Title" as a heading no larger than the text around it deserves
        const tag = heading[1].length <= 2 ? "h3" : "h4";
        out.push(`<${tag}>${inline(heading[2])}</${tag}>`);
        lines.shift();
        if (!lines.some((l) => l.trim())) continue;
      }
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
