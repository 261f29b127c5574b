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
// A list or table is a block of parts (its <li> or <tr> elements, in the element partsIn selects,
// else in the block's own), so that a streaming answer's page adds rows to the element it shows
// rather than making the whole list again at every token. Other blocks are plain HTML.
export const blockHtml = (block) => (typeof block === "string" ? block : block.open + block.parts.join("") + block.close);

// One list from items[from] on: items indented deeper than the first go into the item before them.
// The <li> of each item (with the lists nested in it) is kept by its item. Items are never changed
// once made (a continuation line replaces the last one with a longer copy), so an <li> followed
// by a later item of the list is final: a streaming list builds only its last one again.
const finishedItems = new WeakMap(); // item -> {html, next, last, after}
function listBlock(items, from) {
  const { indent, ordered, number } = items[from];
  const parts = [];
  let i = from;
  while (i < items.length && items[i].indent >= indent) {
    const kept = finishedItems.get(items[i]);
    if (kept && items[kept.next - 1] === kept.last && items[kept.next] === kept.after) {
      parts.push(kept.html);
      i = kept.next;
      continue;
    }
    let html = `<li>${items[i].html}`;
    let next = i + 1;
    if (next < items.length && items[next].indent > indent) {
      const nested = listBlock(items, next);
      html += blockHtml(nested.block);
      next = nested.next;
    }
    html += "</li>";
    if (next < items.length) finishedItems.set(items[i], { html, next, last: items[next - 1], after: items[next] });
    parts.push(html);
    i = next;
  }
  const open = ordered ? (number === 1 ? "<ol>" : `<ol start="${number}">`) : "<ul>";
  return { block: { open, parts, close: ordered ? "</ol>" : "</ul>" }, next: i };
}

// The text between code blocks is parsed a line at a time, each line once: a paragraph's lines, list
// items and table rows are rendered when fed, and what a streaming answer's next token can still
// change (the open paragraph, list or table) is finished on a copy (copyParser).
const newParser = (fed) => ({ fed, out: [], paragraph: [], items: [], table: null });
const copyParser = (p) => ({ ...p, out: [...p.out], paragraph: [...p.paragraph], items: [...p.items],
  table: p.table && { ...p.table, rows: [...p.table.rows] } });
function endParagraph(p) {
  if (p.paragraph.length) p.out.push(`<p>${p.paragraph.join("<br>")}</p>`);
  p.paragraph = [];
}
function endList(p) {
  for (let i = 0; i < p.items.length;) {
    const { block, next } = listBlock(p.items, i);
    p.out.push(block);
    i = next;
  }
  p.items = [];
}
function endTable(p) {
  if (p.table) p.out.push({ open: p.table.open, parts: p.table.rows, close: "</tbody></table></div>", partsIn: "tbody" });
  p.table = null;
}
// One line; next is the line after it (undefined when there is none), which only a line with a
// pipe looks at (is it a table's header?). Returns how many lines it took: 2 for a table's header
// and rule row.
function feedLine(p, line, next) {
  if (p.table) {
    if (line.includes("|")) { // rows with fewer cells than the header get empty ones, extra cells are dropped
      p.table.rows.push(tableRow(rowCells(line), "td", p.table.alignments));
      return 1;
    }
    endTable(p);
  }
  const heading = HEADING.exec(line);
  const item = LIST_ITEM.exec(line);
  const alignments = line.includes("|") ? tableRule(next, rowCells(line).length) : null;
  if (!line.trim() || heading || alignments) {
    endParagraph(p);
    endList(p);
  }
  if (!line.trim()) return 1;
  if (heading) { // "# Title" as a heading no larger than the text around it deserves
    const tag = heading[1].length <= 2 ? "h3" : "h4";
    p.out.push(`<${tag}>${inline(heading[2])}</${tag}>`);
  } else if (alignments) {
    const head = tableRow(rowCells(line), "th", alignments);
    p.table = { alignments, open: `<div class="table"><table><thead>${head}</thead><tbody>`, rows: [] };
    return 2;
  } else if (item) {
    endParagraph(p);
    p.items.push({ indent: item[1].replace(/\t/g, "    ").length, ordered: /\d/.test(item[2]),
      number: parseInt(item[2], 10), html: inline(item[3]) });
  } else if (p.items.length && /^\s/.test(line)) { // an indented line continues the item above
    const last = p.items.at(-1);
    p.items[p.items.length - 1] = { ...last, html: `${last.html}<br>${inline(line.trim())}` };
  } else {
    endList(p);
    p.paragraph.push(inline(line));
  }
  return 1;
}
// Feeds the lines of text that end before `end`, from where the parser is; a line that may be a
// table's header waits until the line after it has ended too.
function feedEndedLines(p, text, end) {
  for (;;) {
    const nl = text.indexOf("\n", p.fed);
    if (nl < 0 || nl >= end) return;
    const line = text.slice(p.fed, nl);
    let next;
    if (!p.table && line.includes("|")) {
      const nextEnd = text.indexOf("\n", nl + 1);
      if (nextEnd < 0 || nextEnd >= end) return;
      next = text.slice(nl + 1, nextEnd);
    }
    p.fed = feedLine(p, line, next) === 2 ? text.indexOf("\n", nl + 1) + 1 : nl + 1;
  }
}
// Feeds what is left (the lines not yet fed, the last one possibly unfinished) and ends the open
// blocks: all the parser's blocks.
function finishParser(p, rest) {
  const lines = rest.split("\n");
  for (let i = 0; i < lines.length;) i += feedLine(p, lines[i], lines[i + 1]);
  endParagraph(p);
  endList(p);
  endTable(p);
  return p.out;
}

// A code block's parts are its lines, escaped (text in the page's <code>, a node each). The button
// sits outside the scrolling <pre>: it stays in view and off the code.
const codeBlock = (lines) => ({ open: '<div class="code"><button class="copy-code">Copy</button><pre><code>', parts: lines,
  close: "</code></pre></div>", partsIn: "code" });
const codeLines = (code) => code.split(/(?<=\n)/).filter((line) => line).map(escapeHtml);

// The answer as a list of blocks, each one element (a paragraph, heading, list, table or code block).
function renderBlocks(text) {
  const out = [];
  text.split(/```/).forEach((part, i) => {
    if (i % 2 === 1) { // a code block (possibly still open while streaming); its first line names the language
      const nl = part.indexOf("\n");
      out.push(codeBlock(nl >= 0 ? codeLines(part.slice(nl + 1)) : []));
    } else {
      out.push(...finishParser(newParser(0), part));
    }
  });
  return out;
}

export const renderMarkdown = (text) => renderBlocks(text).map(blockHtml).join("");

// The blocks of a text that grows at its end (a streaming answer). What lies before the last empty
// line outside code, or before the last code fence, is final: its blocks are kept from one call
// to the next (state.done). After it, text is fed to a parser a line at a time as lines end, and
// the lines of an open code block are escaped as they end: a long list, table or code block is not
// parsed again at each token.
// state: {} at first, then what the last call left in it.
export function renderGrowing(text, state) {
  if (!state.text || !text.startsWith(state.text)) Object.assign(state, { done: [], cut: 0, parser: null, code: null });
  const finalUpTo = (end) => {
    if (end <= state.cut) return;
    if (text.startsWith("```", state.cut)) {
      state.done.push(...renderBlocks(text.slice(state.cut, end)));
    } else {
      const parser = state.parser ?? newParser(state.cut);
      feedEndedLines(parser, text, end);
      state.done.push(...finishParser(parser, text.slice(parser.fed, end)));
    }
    state.cut = end;
    state.parser = null;
  };
  let inCode = false;
  for (let i = state.cut; ;) {
    const fence = text.indexOf("```", i);
    const blank = inCode ? -1 : text.indexOf("\n\n", i);
    if (blank >= 0 && (fence < 0 || blank < fence)) {
      finalUpTo(blank + 2);
      i = blank + 2;
    } else if (fence >= 0) { // the text before a code block and a closed code block are final
      if (!inCode) finalUpTo(fence);
      inCode = !inCode;
      i = fence + 3;
      if (!inCode) finalUpTo(i);
    } else {
      break;
    }
  }
  state.text = text;
  if (inCode) { // its lines escaped once each, as they end
    if (state.code?.cut !== state.cut) state.code = { cut: state.cut, fed: -1, lines: [] };
    const code = state.code;
    if (code.fed < 0 && text.includes("\n", state.cut)) code.fed = text.indexOf("\n", state.cut) + 1;
    if (code.fed < 0) return [...state.done, codeBlock([])];
    for (let nl; (nl = text.indexOf("\n", code.fed)) >= 0; code.fed = nl + 1) code.lines.push(escapeHtml(text.slice(code.fed, nl + 1)));
    const unfinished = text.slice(code.fed);
    return [...state.done, codeBlock(unfinished ? [...code.lines, escapeHtml(unfinished)] : [...code.lines])];
  }
  state.parser ??= newParser(state.cut);
  feedEndedLines(state.parser, text, text.length);
  return [...state.done, ...finishParser(copyParser(state.parser), text.slice(state.parser.fed))];
}
