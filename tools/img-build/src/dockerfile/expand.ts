/**
 * Variable substitution and word splitting as Docker's Dockerfile frontend
 * does it (buildkit frontend/dockerfile/shell/lex.go): `$VAR`, `${VAR}`,
 * `${VAR:-w}` `${VAR-w}` `${VAR:+w}` `${VAR+w}` `${VAR:?msg}` `${VAR?msg}`,
 * `${VAR%pat}` `${VAR%%pat}` `${VAR#pat}` `${VAR##pat}`, `${VAR/pat/rep}`
 * `${VAR//pat/rep}`, single quotes literal, double quotes expanding, the
 * escape character escaping. `${#VAR}` (the length) is an extension: Docker
 * rejects it as a bad modifier, so no Dockerfile that builds there changes.
 *
 * Values substituted are never rescanned, and nesting (`${a:-${b:-…}}`) is
 * capped, so the work is linear in the input whatever the Dockerfile says.
 */
import { ConveyorError } from '@conveyor/lib-common/errors';
import { quoted, shown } from './messages.js';
import { compileShellPattern, replacePattern, resetPatternBudget, ShellPatternError, trimPrefix, trimSuffix } from './shell-pattern.js';
import type { Lookup } from './steps.js';

export interface ExpandOptions {
  /** Quotes are syntax (removed, `'…'` literal). False for heredoc bodies (buildkit's SkipProcessQuotes). Default true. */
  processQuotes?: boolean;
  /** Keep quote characters in the result (buildkit's RawQuotes, used to find heredoc words). */
  rawQuotes?: boolean;
  /** Keep escape characters in the result (buildkit's RawEscapes). */
  rawEscapes?: boolean;
  /** Leave references to unset variables as written (buildkit's SkipUnsetEnv). */
  skipUnset?: boolean;
}

/** How deep `${a:-${b:-…}}` may nest before the word is refused. */
export const MAX_SUBSTITUTION_DEPTH = 64;

const EOF = '';

class ExpansionError extends Error {}

// ASCII first: these run once per character of every word expanded.
function isSpace(ch: string): boolean {
  if (ch === ' ' || ch === '\t' || ch === '\n' || ch === '\r' || ch === '\v' || ch === '\f') return true;
  return ch !== EOF && ch > '\x7f' && /^\s$/u.test(ch);
}

function isNameChar(ch: string): boolean {
  if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch === '_') return true;
  return ch !== EOF && ch > '\x7f' && /^[\p{L}\p{Nd}]$/u.test(ch);
}

function isDigit(ch: string): boolean {
  if (ch >= '0' && ch <= '9') return ch.length === 1;
  return ch !== EOF && ch > '\x7f' && /^\p{Nd}$/u.test(ch);
}

/** POSIX special parameters: `$@`, `$*`, `$#`, … are names of one character. */
function isSpecialParam(ch: string): boolean {
  return '@*#?-$!0'.includes(ch) && ch !== EOF;
}

/** Word splitting as buildkit's wordsStruct: unquoted whitespace separates words, quoted text never does. */
class Words {
  readonly words: string[] = [];
  private buf = '';
  private inWord = false;

  addChar(ch: string): void {
    if (isSpace(ch)) {
      if (this.inWord && this.buf.length > 0) {
        this.words.push(this.buf);
        this.buf = '';
        this.inWord = false;
      }
    } else {
      this.addRaw(ch);
    }
  }

  addString(text: string): void {
    for (const ch of text) this.addChar(ch);
  }

  addRaw(text: string): void {
    this.buf += text;
    this.inWord = true;
  }

  finish(): string[] {
    if (this.buf.length > 0) {
      this.words.push(this.buf);
      this.buf = '';
      this.inWord = false;
    }
    return this.words;
  }
}

/** Code points of a string, one at a time, without copying it into an array. */
class Scanner {
  private pos = 0;

  constructor(private readonly text: string) {}

  peek(): string {
    if (this.pos >= this.text.length) return EOF;
    const code = this.text.codePointAt(this.pos) as number;
    return code > 0xffff ? this.text.slice(this.pos, this.pos + 2) : this.text[this.pos];
  }

  next(): string {
    const ch = this.peek();
    this.pos += ch.length;
    return ch;
  }
}

class ShellWord {
  private readonly scanner: Scanner;
  private depth = 0;

  constructor(
    text: string,
    private readonly lookup: Lookup,
    private readonly escapeChar: string,
    private readonly options: Required<ExpandOptions>,
  ) {
    this.scanner = new Scanner(text);
  }

  process(): { word: string; words: string[] } {
    return this.processStopOn(EOF, this.options.rawEscapes);
  }

  /** Reads up to `stop` (consumed) or the end: the text with substitutions done, and its words. */
  private processStopOn(stop: string, rawEscapes: boolean): { word: string; words: string[] } {
    const s = this.scanner;
    let result = '';
    const words = new Words();
    while (s.peek() !== EOF) {
      const ch = s.peek();
      if (stop !== EOF && ch === stop) {
        s.next();
        return { word: result, words: words.finish() };
      }
      if (ch === '$') {
        const value = this.processDollar();
        result += value;
        words.addString(value);
      } else if (this.options.processQuotes && (ch === "'" || ch === '"')) {
        const value = ch === "'" ? this.processSingleQuote() : this.processDoubleQuote(rawEscapes);
        result += value;
        words.addRaw(value);
      } else {
        let c = s.next();
        if (c === this.escapeChar) {
          if (rawEscapes) {
            words.addRaw(c);
            result += c;
          }
          // The escape character takes the next one literally; at the very end it is dropped.
          c = s.next();
          if (c === EOF) break;
          words.addRaw(c);
        } else {
          words.addChar(c);
        }
        result += c;
      }
    }
    if (stop !== EOF) throw new ExpansionError(`unexpected end of statement while looking for matching ${stop}`);
    return { word: result, words: words.finish() };
  }

  private processSingleQuote(): string {
    const s = this.scanner;
    const open = s.next();
    let result = this.options.rawQuotes ? open : '';
    for (;;) {
      const c = s.next();
      if (c === EOF) throw new ExpansionError('unexpected end of statement while looking for matching single-quote');
      if (c === "'") return this.options.rawQuotes ? result + c : result;
      result += c;
    }
  }

  private processDoubleQuote(rawEscapes: boolean): string {
    const s = this.scanner;
    const open = s.next();
    let result = this.options.rawQuotes ? open : '';
    for (;;) {
      const peek = s.peek();
      if (peek === EOF) throw new ExpansionError('unexpected end of statement while looking for matching double-quote');
      if (peek === '"') {
        s.next();
        return this.options.rawQuotes ? `${result}"` : result;
      }
      if (peek === '$') {
        result += this.processDollar();
        continue;
      }
      let c = s.next();
      if (c === this.escapeChar) {
        const after = s.peek();
        if (after === EOF) continue;
        // Inside double quotes only ", $ and the escape character itself can be escaped (sh's rule).
        if (after === '"' || after === '$' || after === this.escapeChar) {
          if (rawEscapes) result += c;
          c = s.next();
        }
      }
      result += c;
    }
  }

  private processName(): string {
    const s = this.scanner;
    let name = '';
    while (s.peek() !== EOF) {
      const ch = s.peek();
      if (name.length === 0 && isDigit(ch)) {
        while (isDigit(s.peek())) name += s.next();
        return name;
      }
      if (name.length === 0 && isSpecialParam(ch)) return s.next();
      if (!isNameChar(ch)) break;
      name += s.next();
    }
    return name;
  }

  private get(name: string): string | undefined {
    return this.lookup(name);
  }

  private processDollar(): string {
    const s = this.scanner;
    s.next();
    if (s.peek() !== '{') {
      const name = this.processName();
      if (name === '') return '$';
      const value = this.get(name);
      if (value === undefined && this.options.skipUnset) return `$${name}`;
      return value ?? '';
    }
    s.next();
    const first = s.peek();
    if (first === EOF) throw new ExpansionError("syntax error: missing '}'");
    if (first === '{' || first === '}' || first === ':') throw new ExpansionError('syntax error: bad substitution');
    let name = this.processName();
    // ${#VAR}: the length of VAR's value (bash's; Docker refuses it, so this only adds).
    if (name === '#' && isNameChar(s.peek())) {
      name = this.processName();
      if (s.next() !== '}') throw new ExpansionError("syntax error: missing '}'");
      const value = this.get(name);
      if (value === undefined && this.options.skipUnset) return `\${#${name}}`;
      return String(Array.from(value ?? '').length);
    }
    let ch = s.next();
    let modifier = ch;
    let nullIsUnset = false;
    if (ch === '}') {
      const value = this.get(name);
      if (value === undefined && this.options.skipUnset) return `\${${name}}`;
      return value ?? '';
    }
    if (ch === EOF) throw new ExpansionError("syntax error: missing '}'");
    if (ch === ':') {
      nullIsUnset = true;
      ch = s.next();
      modifier += ch;
    }
    if (ch === '+' || ch === '-' || ch === '?' || ch === '#' || ch === '%') {
      const patternOp = ch === '#' || ch === '%';
      if (nullIsUnset && patternOp) throw new ExpansionError(`unsupported modifier (${shown(modifier)}) in substitution`);
      let word = this.nested('}', patternOp);
      const value = this.get(name);
      if (this.options.skipUnset && value === undefined) return `\${${name}${modifier}${word}}`;
      const unsetOrNull = value === undefined || (nullIsUnset && value === '');
      switch (ch) {
        case '-':
          return unsetOrNull ? word : (value as string);
        case '+':
          return unsetOrNull ? '' : word;
        case '?':
          if (value === undefined) throw new ExpansionError(`${shown(name)}: ${shown(word || 'is not allowed to be unset')}`);
          if (nullIsUnset && value === '') throw new ExpansionError(`${shown(name)}: ${shown(word || 'is not allowed to be empty')}`);
          return value;
        default: {
          // %/# remove the shortest match, %%/## the longest.
          let greedy = false;
          if (word.startsWith(ch)) {
            greedy = true;
            word = word.slice(1);
          }
          return ch === '%' ? trimSuffix(word, value ?? '', greedy) : trimPrefix(word, value ?? '', greedy);
        }
      }
    }
    if (ch === '/' && !nullIsUnset) {
      const all = s.peek() === '/';
      if (all) s.next();
      const pattern = this.nested('/', true, "syntax error: missing '/' in $" + '{}');
      const replacement = this.nested('}', true);
      const value = this.get(name);
      if (this.options.skipUnset && value === undefined) return `\${${name}/${pattern}/${replacement}}`;
      return replacePattern(value ?? '', compileShellPattern(pattern), replacement, all);
    }
    throw new ExpansionError(`unsupported modifier (${shown(modifier)}) in substitution`);
  }

  private nested(stop: string, rawEscapes: boolean, missing = "syntax error: missing '}'"): string {
    if (++this.depth > MAX_SUBSTITUTION_DEPTH) {
      throw new ExpansionError(`substitutions nested more than ${MAX_SUBSTITUTION_DEPTH} deep`);
    }
    try {
      return this.processStopOn(stop, rawEscapes).word;
    } catch (error) {
      if (
        error instanceof ExpansionError &&
        this.scanner.peek() === EOF &&
        error.message.startsWith('unexpected end of statement while looking for matching ' + stop)
      ) {
        throw new ExpansionError(missing);
      }
      throw error;
    } finally {
      this.depth--;
    }
  }
}

function fill(options: ExpandOptions | undefined): Required<ExpandOptions> {
  return {
    processQuotes: options?.processQuotes ?? true,
    rawQuotes: options?.rawQuotes ?? false,
    rawEscapes: options?.rawEscapes ?? false,
    skipUnset: options?.skipUnset ?? false,
  };
}

function run(text: string, lookup: Lookup, escapeChar: '\\' | '`', options?: ExpandOptions) {
  resetPatternBudget();
  try {
    return new ShellWord(text, lookup, escapeChar, fill(options)).process();
  } catch (error) {
    if (error instanceof ExpansionError || error instanceof ShellPatternError) {
      throw new ConveyorError('ERR_DOCKERFILE_PARSE', `failed to process ${quoted(text)}: ${error.message}`);
    }
    throw error;
  }
}

/**
 * One word with variables substituted and quotes removed (buildkit's ProcessWord):
 * whitespace inside is kept. Throws ERR_DOCKERFILE_PARSE (without a line: the
 * caller adds it) on bad syntax or `${VAR?msg}` with VAR unset.
 */
export function expandWord(word: string, lookup: Lookup, escapeChar: '\\' | '`', options?: ExpandOptions): string {
  return run(word, lookup, escapeChar, options).word;
}

/** The text substituted, then split into words at unquoted whitespace (buildkit's ProcessWords). */
export function expandWords(text: string, lookup: Lookup, escapeChar: '\\' | '`', options?: ExpandOptions): string[] {
  return run(text, lookup, escapeChar, options).words;
}
