// The chat page's Markdown: fenced code blocks (with a copy button), inline code, bold, italics,
// backslash escapes, headings, lists (nested by indentation, also right after a line of text) and
// tables (with column alignment). Safe by construction: every piece of text is HTML-escaped before
// any markup is added, and the markup added is fixed (no links, images or raw HTML).
export function escapeHtml(s) {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}
const backtickRun = (s, from) => {
  let end = from;
  while (s[end] === "`") end++;
  return end - from;
};
// Where the code span opened by the run of backticks at s[from] ends (just past its closing run of
// as many backticks), or -1 when the run is never closed and so is plain text.
function codeSpanEnd(s, from) {
  const run = backtickRun(s, from);
  for (let i = from + run; i < s.length;) {
    const next = s[i] === "`" ? backtickRun(s, i) : 0;
    if (next === run) return i + run;
    i += next || 1;
  }
  return -1;
}
const ESCAPABLE = /[!-/:-@[-`{-~]/; // ASCII punctuation: what a backslash makes literal
// Code spans are set aside as "\0<n>\0" while the emphasis patterns run over the rest (bold may
// hold code, code never holds bold); a NUL of the text itself is shown as U+FFFD, as HTML would.
function inline(s) {
  const spans = [];
  let text = "";
  for (let i = 0; i < s.length;) {
    const end = s[i] === "`" ? codeSpanEnd(s, i) : -1;
    if (end > 0) {
      const run = backtickRun(s, i);
      let code = s.slice(i + run, end - run);
      if (code.length > 2 && code.startsWith(" ") && code.endsWith(" ") && code.trim()) code = code.slice(1, -1);
      text += `\0${spans.length}\0`;
      spans.push(`<code>${escapeHtml(code)}</code>`);
      i = end;
    } else if (s[i] === "`") { // a run never closed: its backticks are text
      const run = backtickRun(s, i);
      text += s.slice(i, i + run);
      i += run;
    } else if (s[i] === "\\" && ESCAPABLE.test(s[i + 1] ?? "")) {
      text += `&#${s.charCodeAt(i + 1)};`; // a character reference: the emphasis patterns pass it by
      i += 2;
    } else {
      text += s[i] === "\0" ? "\uFFFD" : escapeHtml(s[i]);
      i++;
    }
  }
  return text.replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>")
    .replace(/(^|[\s(])\*([^*\s][^*]*)\*/g, "$1<em>$2</em>")
    .replace(/\0(\d+)\0/g, (_, n) => spans[n]);
}
const LIST_ITEM = /^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$/;
const HEADING = /^\s{0,3}(#{1,6})\s+(.*)$/;
// A table row's cells, split at the pipes that are neither escaped (\|) nor inside a code span;
// the pipes before the first cell and after the last are optional. An escaped pipe is a "|" in
// its cell, also inside a code span (as GitHub's tables have it).
function rowCells(line) {
  const s = line.trim();
  const cells = [];
  let cell = "";
  let endsWithPipe = false;
  for (let i = 0; i < s.length;) {
    endsWithPipe = false;
    const end = s[i] === "`" ? codeSpanEnd(s, i) : -1;
    if (s[i] === "\\" && s[i + 1] === "|") {
      cell += "|";
      i += 2;
    } else if (s[i] === "\\") {
      cell += s.slice(i, i + 2); // another escape, left for inline(): in "\\|" the pipe splits
      i += 2;
    } else if (end > 0) {
      cell += s.slice(i, end).replace(/\\\|/g, "|");
      i = end;
    } else if (s[i] === "`") {
      const run = backtickRun(s, i);
      cell += s.slice(i, i + run);
      i += run;
    } else if (s[i] === "|") {
      cells.push(cell);
      cell = "";
      endsWithPipe = true;
      i++;
    } else {
      cell += s[i];
      i++;
    }
  }
  if (!endsWithPipe) cells.push(cell);
  if (s.startsWith("|")) cells.shift();
  return cells.map((c) => c.trim());
}
const RULE_CELL = /^:?-+:?$/;
const ALIGNMENT = { "::": "center", ":-": "left", "-:": "right", "--": "" };
// The alignment of each column when line is a table's rule row (| :-- | :-: | --: |) under a
// header of that many cells, else null.
function tableRule(line, columns) {
  if (line === undefined || !line.includes("|")) return null;
  const cells = rowCells(line);
  if (cells.length !== columns || !cells.every((c) => RULE_CELL.test(c))) return null;
  return cells.map((c) => ALIGNMENT[c[0] + c[c.length - 1]]);
}
function tableRow(cells, tag, alignments) {
  return `<tr>${alignments.map((align, k) => {
    const attribute = align ? ` class="align-${align}"` : "";
    return `<${tag}${attribute}>${inline(cells[k] ?? "")}</${tag}>`;
  }).join("")}</tr>`;
}
// A table starts at lines[i] when that line has a pipe and the next is its rule row.
function tableAt(lines, i) {
  return lines[i].includes("|") ? tableRule(lines[i + 1], rowCells(lines[i]).length) : null;
}

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
    const alignments = tableAt(lines, i);
    if (!line.trim() || heading || alignments) {
      endParagraph();
      endList();
    }
    if (!line.trim()) continue;
    if (heading) { // "# Title" as a heading no larger than the text around it deserves
      const tag = heading[1].length <= 2 ? "h3" : "h4";
      out.push(`<${tag}>${inline(heading[2])}</${tag}>`);
    } else if (alignments) { // rows with fewer cells than the header get empty ones, extra cells are dropped
      const head = tableRow(rowCells(line), "th", alignments);
      const rows = [];
      for (i += 2; i < lines.length && lines[i].includes("|"); i++) rows.push(tableRow(rowCells(lines[i]), "td", alignments));
      i--;
      out.push(`<div class="table"><table><thead>${head}</thead><tbody>${rows.join("")}</tbody></table></div>`);
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

// The answer as a list of blocks, each the HTML of one element (a paragraph, heading, list, table
// or code block).
function renderBlocks(text) {
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
  return out;
}

export const renderMarkdown = (text) => renderBlocks(text).join("");

// The blocks of a text that grows at its end (a streaming answer), parsing only its tail: an empty
// line outside a code block ends every block, so the blocks before the last such line are final
// and kept from one call to the next. state: {} at first, then what the last call left in it.
export function renderGrowing(text, state) {
  if (!state.text || !text.startsWith(state.text)) Object.assign(state, { done: [], cut: 0 });
  let inCode = false;
  for (let i = state.cut; ;) {
    const fence = text.indexOf("```", i);
    const blank = inCode ? -1 : text.indexOf("\n\n", i);
    if (blank >= 0 && (fence < 0 || blank < fence)) {
      const end = blank + 2;
      if (end > state.cut) {
        state.done.push(...renderBlocks(text.slice(state.cut, end)));
        state.cut = end;
      }
      i = end;
    } else if (fence >= 0) {
      inCode = !inCode;
      i = fence + 3;
    } else {
      break;
    }
  }
  state.text = text;
  return [...state.done, ...renderBlocks(text.slice(state.cut))];
}
