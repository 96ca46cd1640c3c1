/**
 * Dockerfile text → instructions, as buildkit's frontend/dockerfile/parser
 * reads it: parser directives at the top, comments, line continuations with
 * the escape character, heredocs for RUN/COPY/ADD, `--flag=value` flags and
 * the JSON (exec) form. Nothing is expanded here (resolve.ts does that), so
 * every error can name the line it is on.
 */
import { ConveyorError } from '@conveyor/lib-common/errors';
import { expandWords } from './expand.js';
import { parseError, shown } from './messages.js';
import type { Directives, Dockerfile, Heredoc, Instruction } from './steps.js';

export { parseError };

/** Docker has no limit; 16 MiB is far past any real Dockerfile and keeps an absurd one from eating memory. */
export const MAX_DOCKERFILE_BYTES = 16 * 1024 * 1024;

const KEYWORDS = new Set([
  'ADD',
  'ARG',
  'CMD',
  'COPY',
  'ENTRYPOINT',
  'ENV',
  'EXPOSE',
  'FROM',
  'HEALTHCHECK',
  'LABEL',
  'MAINTAINER',
  'ONBUILD',
  'RUN',
  'SHELL',
  'STOPSIGNAL',
  'USER',
  'VOLUME',
  'WORKDIR',
]);

/** Instructions whose arguments may be a JSON array (buildkit's parseMaybeJSON / parseMaybeJSONToList). */
const JSON_FORM = new Set(['ADD', 'CMD', 'COPY', 'ENTRYPOINT', 'RUN', 'SHELL', 'VOLUME']);
const HEREDOC_KEYWORDS = new Set(['ADD', 'COPY', 'RUN']);
const VALID_DIRECTIVES = new Set(['syntax', 'escape', 'check']);

const DIRECTIVE = /^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=[\t\n\f\r ]*(.*)$/s;
const HEREDOC_WORD = /^(\d*)<<(-?)([^<]*)$/;

/**
 * The line without trailing \r and \n (buildkit's trimNewline). A loop, not /[\r\n]+$/: that regexp
 * retries from every \r of a long run, quadratic on a hostile line.
 */
function trimNewline(line: string): string {
  let end = line.length;
  while (end > 0 && (line[end - 1] === '\r' || line[end - 1] === '\n')) end--;
  return end === line.length ? line : line.slice(0, end);
}

/** A `# key=value` directive line: the key and the trimmed value, or undefined (buildkit's directive regexp, without its lazy `(.+?)\s*$`, which is quadratic on a run of spaces). */
function directiveParts(line: string): [string, string] | undefined {
  const match = DIRECTIVE.exec(line);
  if (!match) return undefined;
  let end = match[2].length;
  while (end > 0 && '\t\n\f\r '.includes(match[2][end - 1])) end--;
  const value = match[2].slice(0, end);
  return value === '' ? undefined : [match[1], value];
}

/** Leading whitespace as Go's unicode.IsSpace sees it. */
function trimLeft(text: string): string {
  return text.replace(/^\s+/u, '');
}

/**
 * Parses a Dockerfile. `options.file` names it in errors (default `Dockerfile`).
 * Throws ERR_DOCKERFILE_PARSE `<file>:<line>: <what>`.
 */
export function parseDockerfile(text: string, options: { file?: string } = {}): Dockerfile {
  const file = options.file ?? 'Dockerfile';
  if (Buffer.byteLength(text) > MAX_DOCKERFILE_BYTES) {
    throw new ConveyorError('ERR_DOCKERFILE_PARSE', `${file}: larger than ${MAX_DOCKERFILE_BYTES / 1024 / 1024} MiB`, {
      hint: 'a Dockerfile this large is not one anyone wrote; check the -f path',
      details: { file },
    });
  }
  if (text.startsWith('\uFEFF')) text = text.slice(1);
  const lines = text.split('\n');
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  const raw = (index: number) => trimNewline(lines[index]);

  const directives: Directives = { escape: '\\' };
  const seenDirectives = new Set<string>();
  let directivesDone = false;
  let continuation = /(?:)/;
  const setEscape = (escapeChar: '\\' | '`') => {
    directives.escape = escapeChar;
    const e = escapeChar === '\\' ? '\\\\' : '`';
    // The escape character ends a line as a continuation unless it is itself escaped (buildkit's lineContinuationRegex).
    continuation = new RegExp(`([^${e}])${e}[ \\t]*$|^${e}[ \\t]*$`);
  };
  setEscape('\\');

  const directive = (token: string, lineNo: number) => {
    if (directivesDone) return;
    const parts = directiveParts(token);
    const key = parts?.[0].toLowerCase();
    if (!parts || !key || !VALID_DIRECTIVES.has(key)) {
      directivesDone = true;
      return;
    }
    if (seenDirectives.has(key)) throw parseError(file, lineNo, `only one ${key} parser directive can be used`);
    seenDirectives.add(key);
    const value = parts[1];
    if (key === 'escape') {
      if (value !== '\\' && value !== '`') throw parseError(file, lineNo, `invalid escape token '${shown(value)}' does not match \` or \\`);
      setEscape(value);
    } else if (key === 'syntax') {
      directives.syntax = value;
    } else {
      directives.check = value;
    }
  };
  const isComment = (line: string) => trimLeft(line).startsWith('#');
  const stripComment = (line: string) => (line.startsWith('#') ? '' : line);
  const trimContinuation = (line: string): [string, boolean] => {
    if (continuation.test(line)) return [line.replace(continuation, '$1'), false];
    return [line, true];
  };

  const instructions: Instruction[] = [];
  const warnings: string[] = [];
  let index = 0;
  while (index < lines.length) {
    const startLine = index + 1;
    const first = trimLeft(raw(index));
    directive(first, startLine);
    index++;
    let [line, ended] = trimContinuation(stripComment(first));
    if (ended && line === '') continue;
    let emptyContinuation = false;
    while (!ended && index < lines.length) {
      const next = raw(index);
      directive(next, index + 1);
      index++;
      // Comments and blank lines inside a continuation are dropped, not ends of the instruction.
      if (isComment(next)) continue;
      const processed = stripComment(next);
      if (trimLeft(processed) === '') {
        emptyContinuation = true;
        continue;
      }
      const [part, partEnded] = trimContinuation(processed);
      line += part;
      ended = partEnded;
    }
    if (emptyContinuation) {
      // Docker warns, and says these will become errors.
      warnings.push(`${file}:${startLine}: empty continuation line in ${shown(line.trim())}`);
    }
    const instruction = parseInstruction(line, file, startLine, index);
    if (takesHeredocs(instruction)) {
      const words = heredocWords(line);
      for (const word of words) {
        const terminator = word.name;
        let content = '';
        let terminated = false;
        while (index < lines.length) {
          const body = lines[index];
          index++;
          let candidate = trimNewline(body);
          if (word.chomp) candidate = candidate.replace(/^\t+/, '');
          if (candidate === terminator) {
            terminated = true;
            break;
          }
          // Each body line keeps its newline; only a last line of the file without one has none.
          content += index < lines.length || text.endsWith('\n') ? `${body}\n` : body;
        }
        if (!terminated) {
          throw parseError(file, startLine, `unterminated heredoc <<${word.chomp ? '-' : ''}${shown(word.name)} (no line "${shown(word.name)}" closes it)`);
        }
        const heredoc: Heredoc = {
          name: word.name,
          content: word.chomp ? content.replace(/^\t+/gm, '') : content,
          expand: word.expand,
        };
        instruction.heredocs.push(heredoc);
      }
      instruction.endLine = index;
    }
    instructions.push(instruction);
  }

  if (instructions.length === 0) {
    throw new ConveyorError('ERR_DOCKERFILE_PARSE', `${file}: file with no instructions`, {
      hint: 'a Dockerfile needs at least a FROM',
      details: { file },
    });
  }
  if (!instructions.some((instruction) => instruction.keyword === 'FROM')) {
    throw new ConveyorError('ERR_DOCKERFILE_PARSE', `${file}: no FROM instruction`, {
      hint: 'start the build with FROM <image> (or FROM scratch)',
      details: { file },
    });
  }
  return { directives, instructions, file, warnings };
}

/** RUN/COPY/ADD (or ONBUILD of one) in shell form carry heredocs; JSON form never does. */
function takesHeredocs(instruction: Instruction): boolean {
  if (instruction.keyword === 'ONBUILD') {
    const sub = splitCommand(instruction.rest);
    if (!HEREDOC_KEYWORDS.has(sub.keyword.toUpperCase())) return false;
    return parseJSONArray(sub.args) === undefined;
  }
  return HEREDOC_KEYWORDS.has(instruction.keyword) && instruction.json === undefined;
}

interface HeredocWord {
  name: string;
  chomp: boolean;
  expand: boolean;
}

/** The heredoc words of a line (`<<EOF`, `<<-EOF`, `<<'EOF'`, `2<<EOF`), in order, as buildkit's heredocsFromLine. */
function heredocWords(line: string): HeredocWord[] {
  // Most lines have no heredoc: skip the lexer for them.
  if (!line.includes('<<')) return [];
  const none = () => undefined;
  let words: string[];
  try {
    words = expandWords(line, none, '\\', { rawQuotes: true, rawEscapes: true, skipUnset: true });
  } catch {
    return [];
  }
  const found: HeredocWord[] = [];
  for (const word of words) {
    const heredoc = parseHeredocWord(word);
    if (heredoc) found.push(heredoc);
  }
  return found;
}

/** One word as a heredoc opener, or undefined. A quoted name (`<<'EOF'`) turns expansion off. */
export function parseHeredocWord(word: string): HeredocWord | undefined {
  const match = HEREDOC_WORD.exec(word);
  if (!match || match[3].length === 0) return undefined;
  const rest = match[3];
  const none = () => undefined;
  const plain = expandWords(rest, none, '\\', { skipUnset: true });
  if (plain.length !== 1) return undefined;
  const rawWords = expandWords(rest, none, '\\', { skipUnset: true, rawQuotes: true });
  const quotes = (text: string) => (text.match(/['"]/g) ?? []).length;
  return { name: plain[0], chomp: match[2] === '-', expand: quotes(plain[0]) === quotes(rawWords[0] ?? '') };
}

/** `KEYWORD rest`: the keyword as written and the text after it (buildkit's splitCommand, before flags). */
function splitCommand(line: string): { keyword: string; args: string } {
  const trimmed = line.trim();
  const match = /[\t\v\f\r ]+/.exec(trimmed);
  if (!match) return { keyword: trimmed, args: '' };
  return { keyword: trimmed.slice(0, match.index), args: trimmed.slice(match.index + match[0].length) };
}

/**
 * Leading `--name[=value]` words (quotes and `\` removed), and the text after them
 * (buildkit's extractBuilderFlags). A lone `--` ends the flags.
 */
function extractFlags(text: string): { flags: string[]; rest: string } {
  const flags: string[] = [];
  let pos = 0;
  for (;;) {
    while (pos < text.length && /\s/.test(text[pos])) pos++;
    if (pos >= text.length) return { flags, rest: '' };
    if (!text.startsWith('--', pos)) return { flags, rest: text.slice(pos) };
    let word = '';
    let quote = '';
    let blankOK = false;
    for (; pos < text.length; pos++) {
      const ch = text[pos];
      if (quote) {
        if (ch === quote) {
          quote = '';
          continue;
        }
        if (ch === '\\') {
          if (pos + 1 === text.length) continue;
          pos++;
          word += text[pos];
          continue;
        }
        word += ch;
        continue;
      }
      if (/\s/.test(ch)) break;
      if (ch === "'" || ch === '"') {
        quote = ch;
        blankOK = true;
        continue;
      }
      if (ch === '\\') {
        if (pos + 1 === text.length) continue;
        pos++;
      }
      word += text[pos];
    }
    if (word === '--') return { flags, rest: text.slice(pos).replace(/^\s+/, '') };
    if (blankOK || word.length > 0) flags.push(word);
  }
}

/** A JSON array of strings, undefined when the text is not a JSON array; a JSON array of anything else throws. */
function parseJSONArray(text: string): string[] | undefined {
  const trimmed = trimLeft(text);
  if (!trimmed.startsWith('[')) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(trimmed);
  } catch {
    return undefined;
  }
  if (!Array.isArray(value)) return undefined;
  if (!value.every((item) => typeof item === 'string')) throw new NotStringArray();
  return value;
}

class NotStringArray extends Error {}

function parseInstruction(line: string, file: string, startLine: number, endLine: number): Instruction {
  const { keyword: written, args } = splitCommand(line);
  const keyword = written.toUpperCase();
  if (!KEYWORDS.has(keyword)) {
    throw parseError(file, startLine, `unknown instruction: ${shown(written)}`, suggestKeyword(keyword));
  }
  const { flags: rawFlags, rest } = extractFlags(args);
  const flags = rawFlags.map((word) => {
    const body = word.startsWith('--') ? word.slice(2) : word;
    const eq = body.indexOf('=');
    return eq < 0 ? { name: body, value: 'true', bare: true as const } : { name: body.slice(0, eq), value: body.slice(eq + 1) };
  });
  for (const word of rawFlags) {
    if (!word.startsWith('--')) throw parseError(file, startLine, `flag should start with --: ${shown(word)}`);
  }
  let json: string[] | undefined;
  try {
    if (JSON_FORM.has(keyword)) json = parseJSONArray(rest);
    else if (keyword === 'HEALTHCHECK') json = parseJSONArray(rest.replace(/^\S+\s*/, ''));
  } catch (error) {
    if (error instanceof NotStringArray) {
      throw parseError(file, startLine, 'when using JSON array syntax, arrays must be comprised of strings only');
    }
    throw error;
  }
  return { keyword, line: startLine, endLine, flags, rest, json, heredocs: [], original: line.trim(), file };
}

function suggestKeyword(keyword: string): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of KEYWORDS) {
    const distance = editDistance(keyword, candidate);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best ? `did you mean ${best}?` : undefined;
}

function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 3 || a.length > 64) return 99;
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length];
}
