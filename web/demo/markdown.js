// The chat page's Markdown: fenced code blocks (with a copy button), inline code, bold, italics,
// headings, lists (nested by indentation, also right after a line of text) and tables. Safe by
// construction: every piece of text is HTML-escaped before any markup is added, and the markup
// added is fixed (no links, images or raw HTML).
export function escapeHtml(s) {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}
function inline(s) {
  return escapeHtml(s)
    .replace(/`([^`]+)`/g, "<code>$1</code>")
    .replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>")
    .replace(/(^|[\s(])\*([^*\s][^*]*)\*/g, "$1<em>$2</em>");
}
const LIST_ITEM = /^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$/;
const HEADING = /^\s{0,3}(#{1,6})\s+(.*)$/;
const TABLE_RULE = /^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$/; // | --- | :-: |
const isTableRule = (line) => line !== undefined && line.includes("|") && TABLE_RULE.test(line);
const tableCells = (line) => line.trim().replace(/^\||\|$/g, "").split("|").map((c) => inline(c.trim()));

// One list from items[from] on: items indented deeper than the first go into the item before them.
function list(items, from) {
  const { indent, ordered, number } = items[from];
  let html = ordered ? (number === 1 ? "<ol>" : `<ol start="${number}">`) : "<ul>";
  let i = from;
  while (i < items.length && items[i].indent >= indent) {
    html += `<li>${items[i].html}`;
    i++;
    if (i < items.length && items[i].indent > indent) {
      const nested = list(items, i);
      html += nested.html;
      i = nested.next;
    }
    html += "</li>";
  }
  return { html: html + (ordered ? "</ol>" : "</ul>"), next: i };
}

function textBlocks(text, out) {
  let paragraph = [];
  let items = [];
  const endParagraph = () => {
    if (paragraph.length) out.push(`<p>${paragraph.map(inline).join("<br>")}</p>`);
    paragraph = [];
  };
  const endList = () => {
    for (let i = 0; i < items.length;) {
      const { html, next } = list(items, i);
      out.push(html);
      i = next;
    }
    items = [];
  };
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const heading = HEADING.exec(line);
    const item = LIST_ITEM.exec(line);
    if (!line.trim() || heading || (line.includes("|") && isTableRule(lines[i + 1]))) {
      endParagraph();
      endList();
    }
    if (!line.trim()) continue;
    if (heading) { // "# Title" as a heading no larger than the text around it deserves
      const tag = heading[1].length <= 2 ? "h3" : "h4";
      out.push(`<${tag}>${inline(heading[2])}</${tag}>`);
    } else if (line.includes("|") && isTableRule(lines[i + 1])) {
      const head = tableCells(line).map((c) => `<th>${c}</th>`).join("");
      const rows = [];
      for (i += 2; i < lines.length && lines[i].includes("|"); i++)
        rows.push(`<tr>${tableCells(lines[i]).map((c) => `<td>${c}</td>`).join("")}</tr>`);
      i--;
      out.push(`<div class="table"><table><thead><tr>${head}</tr></thead><tbody>${rows.join("")}</tbody></table></div>`);
    } else if (item) {
      endParagraph();
      items.push({ indent: item[1].replace(/\t/g, "    ").length, ordered: /\d/.test(item[2]),
        number: parseInt(item[2], 10), html: inline(item[3]) });
    } else if (items.length && /^\s/.test(line)) { // an indented line continues the item above
      items[items.length - 1].html += `<br>${inline(line.trim())}`;
    } else {
      endList();
      paragraph.push(line);
    }
  }
  endParagraph();
  endList();
}

export function renderMarkdown(text) {
  const out = [];
  text.split(/```/).forEach((part, i) => {
    if (i % 2 === 1) { // a code block (possibly still open while streaming)
      const nl = part.indexOf("\n");
      const code = nl >= 0 ? part.slice(nl + 1) : "";
      // The button sits outside the scrolling <pre>: it stays in view and off the code.
      out.push(`<div class="code"><button class="copy-code">Copy</button><pre><code>${escapeHtml(code)}</code></pre></div>`);
    } else {
      textBlocks(part, out);
    }
  });
  return out.join("");
}
