/**
 * Converts one of our READMEs (Markdown: headings, paragraphs, pipe tables, code blocks, lists,
 * inline code, bold, italics and links) into a section-1 man page in roff (the man macros).
 * Pure: text in, text out, and it does not fail: Markdown it does not know comes out as escaped
 * text, never as roff requests, so a README cannot inject roff.
 */

/** Sections that are for the people working on conveyor, not for a man page's reader. */
const DEVELOPER_SECTIONS = new Set(['tests', 'library', 'source']);

/**
 * Escapes text for roff: backslashes, hyphens (`\-`, so options copy and paste as ASCII), and
 * every non-ASCII character as a groff `\[uXXXX]` escape, so the page is ASCII and needs no preconv.
 */
export function escapeRoff(text) {
  let out = '';
  for (const char of text) {
    const code = char.codePointAt(0);
    if (char === '\\') out += '\\e';
    else if (char === '-') out += '\\-';
    else if (code >= PARK && code <= PARK_END)
      out += char; // parked, restored later
    else if (code > 126) out += `\\[u${code.toString(16).toUpperCase().padStart(4, '0')}]`;
    else out += char;
  }
  return out;
}

// Markdown backslash escapes (`\|`, `\*`) are parked on private-use characters while markup is
// converted, then restored as the literal character; code spans wait on characters from CODE on.
const PARK = 0xe000;
const CODE = 0xe100;
const PARK_END = 0xe8ff;
const park = (text) => text.replace(/\\([\\`*_{}[\]()#+\-.!|<>~])/g, (_, c) => String.fromCharCode(PARK + c.charCodeAt(0)));
const unpark = (text) => text.replace(/[\ue000-\ue0ff]/g, (c) => escapeRoff(String.fromCharCode(c.charCodeAt(0) - PARK)));

/**
 * Splits inline Markdown into prose and code spans (a run of backticks up to the next run of the
 * same length). Backslash escapes count in prose only: a code span may end with a backslash.
 */
export function splitCodeSpans(markdown) {
  const parts = [];
  let prose = '';
  let i = 0;
  while (i < markdown.length) {
    if (markdown[i] === '\\' && markdown[i + 1] === '`') {
      prose += '\\`';
      i += 2;
      continue;
    }
    if (markdown[i] !== '`') {
      prose += markdown[i++];
      continue;
    }
    const ticks = /^`+/.exec(markdown.slice(i))[0];
    let close = markdown.indexOf(ticks, i + ticks.length);
    while (close >= 0 && markdown[close + ticks.length] === '`') {
      close = markdown.indexOf(ticks, close + /^`+/.exec(markdown.slice(close))[0].length);
    }
    if (close < 0) {
      prose += ticks;
      i += ticks.length;
      continue;
    }
    parts.push({ code: false, text: prose }, { code: true, text: markdown.slice(i + ticks.length, close) });
    prose = '';
    i = close + ticks.length;
  }
  parts.push({ code: false, text: prose });
  return parts.filter((part) => part.code || part.text !== '');
}

/**
 * Inline Markdown to roff font escapes: `code` and **bold** in bold, *em* and _em_ in italics,
 * links as their text. Code spans are converted last, so **`--privileged`** is bold code.
 */
export function inlineRoff(markdown) {
  const codes = [];
  const prose = splitCodeSpans(markdown)
    .map((part) => (part.code ? String.fromCharCode(CODE + codes.push(part.text.replace(/\s*\n\s*/g, ' ').trim()) - 1) : part.text))
    .join('');
  return proseRoff(prose).replace(/[\ue100-\ue8ff]/g, (c) => `\\fB${escapeRoff(codes[c.charCodeAt(0) - CODE])}\\fR`);
}

function proseRoff(text) {
  let out = escapeRoff(park(text));
  out = out.replace(/\[([^\]]+)\]\(([^)\s]+)\)/g, (_, label, url) => (/^https?:/.test(url) ? `${label} <${url}>` : label));
  out = out.replace(/\*\*(?=\S)([^*]+?)\*\*/g, '\\fB$1\\fR');
  out = out.replace(/(^|[^\w*])\*(?=\S)([^*]+?)\*(?!\w)/g, '$1\\fI$2\\fR');
  out = out.replace(/(^|[^\w])_(?=\S)([^_]+?)_(?!\w)/g, '$1\\fI$2\\fR');
  return unpark(out);
}

/** Inline Markdown to plain text (for the NAME line). */
export function plainText(markdown) {
  return park(markdown)
    .replace(/`([^`]+)`/g, '$1')
    .replace(/\[([^\]]+)\]\([^)]*\)/g, '$1')
    .replace(/\*\*([^*]+)\*\*/g, '$1')
    .replace(/[\ue000-\ue0ff]/g, (c) => String.fromCharCode(c.charCodeAt(0) - PARK));
}

/** A text line for fill mode: no leading blanks (they would break the line), no request at its start. */
function textLine(roff) {
  const line = roff.replace(/^\s+/, '');
  return /^[.']/.test(line) ? `\\&${line}` : line;
}

/** A paragraph's source lines as fill-mode lines (converted together: a code span may cross a line break). */
function textLines(lines) {
  return inlineRoff(lines.join('\n')).split('\n').map(textLine);
}

/** A line of a code block in no-fill mode: kept as it is, escaped. */
function codeLine(text) {
  const line = escapeRoff(text);
  return /^[.']/.test(line) ? `\\&${line}` : line;
}

/** Splits a pipe-table row into cells; `\|` is a `|` inside its cell (in code spans too, as in GitHub's tables). */
export function tableCells(row) {
  const cells = [];
  let cell = '';
  const body = row.trim().replace(/^\|/, '').replace(/\|$/, '');
  for (let i = 0; i < body.length; i++) {
    if (body[i] === '\\' && body[i + 1] === '|') {
      cell += '|';
      i++;
    } else if (body[i] === '|') {
      cells.push(cell.trim());
      cell = '';
    } else cell += body[i];
  }
  cells.push(cell.trim());
  return cells;
}

const isFence = (line) => /^\s*```/.test(line);
const isTableRow = (line) => /^\s*\|/.test(line);
const listItem = (line) => /^(\s*)([-*+]|\d+[.)])\s+(.*)$/.exec(line);
const heading = (line) => /^(#{1,6})\s+(.*?)\s*#*\s*$/.exec(line);
const isBlank = (line) => line.trim() === '';
const indentOf = (line) => /^\s*/.exec(line)[0].length;

/**
 * Parses Markdown into blocks: {kind: 'heading', level, text} | {kind: 'para', lines} |
 * {kind: 'code', lines} | {kind: 'table', rows} | {kind: 'item', marker, depth, lines}
 * (an item's later paragraphs are items with marker '').
 */
export function parseBlocks(markdown) {
  const lines = markdown.replace(/\r\n?/g, '\n').split('\n');
  const blocks = [];
  let i = 0;
  let inList = false;
  const startsBlock = (line) => isBlank(line) || isFence(line) || isTableRow(line) || listItem(line) || heading(line);
  while (i < lines.length) {
    const line = lines[i];
    if (isBlank(line)) {
      i++;
      continue;
    }
    const h = heading(line);
    if (h && indentOf(line) < 4) {
      blocks.push({ kind: 'heading', level: h[1].length, text: h[2] });
      inList = false;
      i++;
      continue;
    }
    if (isFence(line)) {
      const code = [];
      const fenceIndent = indentOf(line);
      i++;
      while (i < lines.length && !isFence(lines[i])) code.push(lines[i++].slice(fenceIndent));
      i++;
      blocks.push({ kind: 'code', lines: code });
      continue;
    }
    // An indented block: code, unless it continues a list item (indented less than the item's code would be).
    const codeIndent = inList ? 6 : 4;
    if (indentOf(line) >= codeIndent) {
      const code = [];
      while (i < lines.length && (isBlank(lines[i]) || indentOf(lines[i]) >= codeIndent)) code.push(lines[i++]);
      while (code.length > 0 && isBlank(code.at(-1))) code.pop();
      const strip = Math.min(...code.filter((l) => !isBlank(l)).map(indentOf));
      blocks.push({ kind: 'code', lines: code.map((l) => l.slice(strip)) });
      continue;
    }
    if (isTableRow(line)) {
      const rows = [];
      while (i < lines.length && isTableRow(lines[i])) rows.push(tableCells(lines[i++]));
      blocks.push({ kind: 'table', rows });
      inList = false;
      continue;
    }
    const item = listItem(line);
    if (item) {
      const depth = item[1].length >= 2 ? 1 : 0;
      const text = [item[3]];
      i++;
      while (i < lines.length && !isBlank(lines[i]) && !(listItem(lines[i]) || heading(lines[i]) || isFence(lines[i]) || isTableRow(lines[i]))) {
        text.push(lines[i++].trim());
      }
      blocks.push({ kind: 'item', marker: /\d/.test(item[2]) ? item[2] : '-', depth, lines: text });
      inList = true;
      continue;
    }
    if (inList && indentOf(line) >= 2) {
      // A later paragraph of the list item above.
      const text = [];
      while (i < lines.length && !startsBlock(lines[i])) text.push(lines[i++].trim());
      const depth = blocks.at(-1)?.kind === 'item' ? blocks.at(-1).depth : 0;
      blocks.push({ kind: 'item', marker: '', depth, lines: text });
      continue;
    }
    const text = [];
    while (i < lines.length && !(text.length > 0 && startsBlock(lines[i]))) text.push(lines[i++]);
    blocks.push({ kind: 'para', lines: text });
    inList = false;
  }
  return blocks;
}

/** The first sentence of a paragraph, as plain text without its full stop. */
export function firstSentence(text) {
  const plain = plainText(text.replace(/\s+/g, ' ').trim());
  const match = /^(.*?[^.]{2})\.(\s|$)/.exec(plain);
  return (match ? match[1] : plain).replace(/[.:]$/, '');
}

function renderBlock(block, out, state) {
  const closeIndent = () => {
    while (state.depth > 0) {
      out.push('.RE');
      state.depth--;
    }
  };
  switch (block.kind) {
    case 'para':
      closeIndent();
      out.push('.PP', ...textLines(block.lines));
      break;
    case 'code':
      // Inside a list item the code stays indented with it.
      out.push(state.depth > 0 || state.lastWasItem ? '.IP' : '.PP', '.RS 4', '.nf', ...block.lines.map(codeLine), '.fi', '.RE');
      break;
    case 'item': {
      while (state.depth < block.depth) {
        out.push('.RS 2');
        state.depth++;
      }
      while (state.depth > block.depth) {
        out.push('.RE');
        state.depth--;
      }
      const mark = block.marker === '' ? '""' : block.marker === '-' ? '\\(bu' : `"${block.marker}"`;
      out.push(`.IP ${mark} ${block.marker === '' || block.marker === '-' ? 2 : 4}`, ...textLines(block.lines));
      break;
    }
    case 'table': {
      closeIndent();
      const isSeparator = (row) => row.every((c) => /^:?-+:?$/.test(c));
      const separator = block.rows.findIndex(isSeparator);
      const header = separator === 1 ? block.rows[0] : [];
      const rows = block.rows.filter((row, index) => !isSeparator(row) && !(separator === 1 && index === 0));
      for (const row of rows) {
        out.push('.TP', textLine(inlineRoff(row[0]) || '\\&'));
        const rest = row.slice(1).filter((cell) => cell !== '');
        if (rest.length === 0) out.push('\\&');
        row.slice(1).forEach((cell, index) => {
          if (cell === '') return;
          // Two columns read as term and meaning; more columns keep their headers.
          const label = row.length > 2 && header[index + 1] ? `\\fI${inlineRoff(header[index + 1])}\\fR: ` : '';
          if (index > 0 && out.at(-1) !== '.TP') out.push('.br');
          out.push(textLine(label + inlineRoff(cell)));
        });
      }
      break;
    }
  }
  state.lastWasItem = block.kind === 'item' || (state.lastWasItem && block.kind === 'code');
}

/**
 * SEE ALSO as man pages write it: a link to a tool's README becomes `name(1)`, and every
 * `name(N)` is set in bold.
 */
function asPageReferences(block) {
  if (!block.lines) return block;
  const lines = block.lines.map((line) =>
    line.replace(/\[([a-z][a-z0-9-]*)\]\([^)\s]*README\.md\)/g, '$1(1)').replace(/(^|[^\w`*-])([a-z][a-z0-9-]*)\((\d)\)/g, '$1**$2**($3)'),
  );
  return { ...block, lines };
}

const quoteArg = (roff) => `"${roff.replace(/"/g, '\\(dq')}"`;

/**
 * The man page for one README. `name` is the command; the NAME line is the README's first heading
 * and the first sentence of its first paragraph; the text before the first `##` section opens
 * DESCRIPTION. Sections keep their order; Tests, Library and Source are left out.
 */
export function markdownToMan(markdown, { name, section = 1, version = '', manual = 'conveyor manual' }) {
  const blocks = parseBlocks(markdown);
  const intro = [];
  const sections = [];
  let current;
  let seenTitle = false;
  for (const block of blocks) {
    if (block.kind === 'heading' && block.level === 1 && !seenTitle) {
      seenTitle = true;
      continue;
    }
    if (block.kind === 'heading' && block.level <= 2) {
      current = { title: plainText(block.text), blocks: [] };
      sections.push(current);
      continue;
    }
    (current ? current.blocks : intro).push(block);
  }
  const firstPara = intro.find((b) => b.kind === 'para');
  const summary = firstPara ? firstSentence(firstPara.lines.join(' ')) : name;
  const kept = sections.filter((s) => !DEVELOPER_SECTIONS.has(s.title.toLowerCase()));
  let description = kept.find((s) => s.title.toLowerCase() === 'description');
  if (!description && intro.length > 0) {
    description = { title: 'Description', blocks: [] };
    const synopsisAt = kept.findIndex((s) => s.title.toLowerCase() === 'synopsis');
    kept.splice(synopsisAt + 1, 0, description);
  }
  if (description) description.blocks.unshift(...intro);

  const out = [
    `.\\" Generated by scripts/build/gen-man.mjs from ${name}'s README.md: edit the README, not this file.`,
    `.TH ${escapeRoff(name.toUpperCase())} ${section} "" ${quoteArg(escapeRoff(version))} ${quoteArg(escapeRoff(manual))}`,
    '.SH NAME',
    `${escapeRoff(name)} \\- ${escapeRoff(/^[A-Z][a-z]/.test(summary) ? summary.charAt(0).toLowerCase() + summary.slice(1) : summary)}`,
  ];
  for (const s of kept) {
    if (s.title.toLowerCase() === 'see also') s.blocks = s.blocks.map(asPageReferences);
    out.push(`.SH ${quoteArg(escapeRoff(s.title.toUpperCase()))}`);
    const state = { depth: 0, lastWasItem: false };
    for (const block of s.blocks) {
      if (block.kind === 'heading') {
        while (state.depth > 0) {
          out.push('.RE');
          state.depth--;
        }
        out.push(`.SS ${quoteArg(inlineRoff(block.text))}`);
        state.lastWasItem = false;
      } else renderBlock(block, out, state);
    }
    while (state.depth > 0) {
      out.push('.RE');
      state.depth--;
    }
  }
  return `${out.join('\n')}\n`;
}
