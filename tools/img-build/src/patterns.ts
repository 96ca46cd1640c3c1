/**
 * Path patterns as Docker matches them:
 * - globMatch: Go's path/filepath.Match (COPY/ADD sources): `*` and `?` never
 *   cross `/`, `[a-z]` / `[^a]` classes, `\` escapes; a malformed pattern is an error.
 * - createIgnoreMatcher: moby/patternmatcher (.dockerignore): the same terms plus
 *   `**` for any number of directories, `!` exceptions, the last matching
 *   pattern wins, and a pattern matching a parent directory matches what is below it.
 *
 * Patterns run as small automata over the path, never as backtracking regular
 * expressions, so a hostile pattern costs O(path × pattern) at worst.
 */
import { ConveyorError } from '@conveyor/lib-common/errors';

type Token =
  | { kind: 'char'; ch: string }
  /** `?`: one character, not `/`. */
  | { kind: 'any' }
  /** `*`: any run of characters without `/`. */
  | { kind: 'star' }
  /** `.*`: anything, `/` included (a trailing `**`). */
  | { kind: 'all' }
  /** Nothing, or anything ending in a slash (a `**` inside a pattern; patternmatcher writes it as a regexp). */
  | { kind: 'dirs' }
  | { kind: 'class'; negated: boolean; ranges: [string, string][] };

function badPattern(pattern: string, file?: string): ConveyorError {
  const where = file ? `${file}: ` : '';
  return new ConveyorError('ERR_DOCKERFILE_PARSE', `${where}syntax error in pattern ${JSON.stringify(pattern)}`, {
    hint: 'a [ needs its ], a range its two ends, and a \\ something to escape',
  });
}

/** A `[...]` class starting after the `[` at chars[start]; returns the token and the index after `]`. Go's getEsc rules. */
function parseClass(chars: string[], start: number, pattern: string): [Token, number] {
  let i = start;
  let negated = false;
  if (chars[i] === '^') {
    negated = true;
    i++;
  }
  const ranges: [string, string][] = [];
  const esc = (): string => {
    let ch = chars[i];
    if (ch === undefined || ch === '-' || ch === ']') throw badPattern(pattern);
    if (ch === '\\') {
      i++;
      ch = chars[i];
      if (ch === undefined) throw badPattern(pattern);
    }
    i++;
    if (i >= chars.length) throw badPattern(pattern);
    return ch;
  };
  for (;;) {
    if (chars[i] === ']' && ranges.length > 0) return [{ kind: 'class', negated, ranges }, i + 1];
    const lo = esc();
    let hi = lo;
    if (chars[i] === '-') {
      i++;
      hi = esc();
    }
    ranges.push([lo, hi]);
  }
}

/** Linux's PATH_MAX: a longer pattern is not a path anyone meant, and would only make matching slow. */
export const MAX_PATTERN_CHARS = 4096;

function checkLength(pattern: string, file?: string): void {
  if (pattern.length <= MAX_PATTERN_CHARS) return;
  const where = file ? `${file}: ` : '';
  throw new ConveyorError('ERR_DOCKERFILE_PARSE', `${where}pattern longer than ${MAX_PATTERN_CHARS} characters: ${JSON.stringify(pattern.slice(0, 40))}…`);
}

/** Go's filepath.Match pattern as tokens; throws on a malformed one. */
function compileGlob(pattern: string): Token[] {
  checkLength(pattern);
  return tokenize(pattern, (_chars, i, tokens) => {
    if (tokens.at(-1)?.kind !== 'star') tokens.push({ kind: 'star' });
    return i + 1;
  });
}

/**
 * The tokens of a pattern: `?`, `[class]`, `\` escapes and plain characters
 * as both pattern languages have them; `*` is the caller's (`onStar` pushes
 * its tokens and returns the index after what it took).
 */
function tokenize(pattern: string, onStar: (chars: string[], i: number, tokens: Token[]) => number): Token[] {
  const chars = Array.from(pattern);
  const tokens: Token[] = [];
  for (let i = 0; i < chars.length; ) {
    const ch = chars[i];
    if (ch === '*') {
      i = onStar(chars, i, tokens);
    } else if (ch === '?') {
      tokens.push({ kind: 'any' });
      i++;
    } else if (ch === '[') {
      const [token, next] = parseClass(chars, i + 1, pattern);
      tokens.push(token);
      i = next;
    } else if (ch === '\\') {
      if (i + 1 >= chars.length) throw badPattern(pattern);
      tokens.push({ kind: 'char', ch: chars[i + 1] });
      i += 2;
    } else {
      tokens.push({ kind: 'char', ch });
      i++;
    }
  }
  return tokens;
}

const CHAR = 0;
const ANY = 1;
const STAR = 2;
const ALL = 3;
const DIRS = 4;
const CLASS = 5;
const KIND_CODES: Record<Token['kind'], number> = { char: CHAR, any: ANY, star: STAR, all: ALL, dirs: DIRS, class: CLASS };
const SLASH = 0x2f;

/** run()'s answer: no state is live any more (nothing the path could continue with matches). */
const DEAD = -1;

/**
 * A pattern's tokens as Thompson's automaton, run over a path without
 * allocating: token kinds and characters as numbers (code points), the two
 * state lists and the "added in generation" marks reused from run to run
 * (a walker asks about every entry of the context).
 */
class Automaton {
  readonly tokens: Token[];
  private readonly m: number;
  private readonly kinds: Uint8Array;
  private readonly codes: Int32Array;
  /** A class token's ranges as code point pairs (lo, hi, lo, hi, …), by token index. */
  private readonly ranges: (Int32Array | undefined)[];
  private readonly addedIn: Int32Array;
  private generation = 0;
  private current: Int32Array;
  private next: Int32Array;

  constructor(tokens: Token[]) {
    this.tokens = tokens;
    const m = tokens.length;
    this.m = m;
    this.kinds = new Uint8Array(m);
    this.codes = new Int32Array(m);
    this.ranges = new Array(m);
    for (let i = 0; i < m; i++) {
      const token = tokens[i];
      this.kinds[i] = KIND_CODES[token.kind];
      if (token.kind === 'char') this.codes[i] = token.ch.codePointAt(0) as number;
      if (token.kind === 'class') {
        this.ranges[i] = Int32Array.from(token.ranges.flatMap(([lo, hi]) => [lo.codePointAt(0) as number, hi.codePointAt(0) as number]));
        this.codes[i] = token.negated ? 1 : 0;
      }
    }
    // States 0..m, and m+1+i "inside the dirs token i": each at most once per list.
    this.addedIn = new Int32Array(2 * m + 1).fill(-1);
    this.current = new Int32Array(2 * m + 1);
    this.next = new Int32Array(2 * m + 1);
  }

  /** Adds a state and those it reaches without a character (past `*`, `**` and directory tokens); returns the list's new length. */
  private add(list: Int32Array, length: number, state: number): number {
    const { m, kinds, addedIn, generation } = this;
    let n = length;
    for (let s = state; addedIn[s] !== generation; s++) {
      addedIn[s] = generation;
      list[n++] = s;
      if (s >= m) return n;
      const kind = kinds[s];
      if (kind !== STAR && kind !== ALL && kind !== DIRS) return n;
    }
    return n;
  }

  private classMatches(state: number, code: number): boolean {
    const ranges = this.ranges[state] as Int32Array;
    let inside = false;
    for (let r = 0; r < ranges.length; r += 2) {
      if (ranges[r] <= code && code <= ranges[r + 1]) inside = true;
    }
    return inside !== (this.codes[state] === 1);
  }

  /**
   * Runs the automaton over `path` (Thompson's simulation: only live states are
   * visited, so a literal pattern costs one state per character): DEAD once
   * no state is live, else 1 when the whole pattern matched, 0 when not.
   * With stopAtMatchingParent, a match of the text before a `/` (a parent
   * directory) is the answer.
   */
  run(path: string, stopAtMatchingParent = false): number {
    const { m, kinds, codes, addedIn } = this;
    // Marks from earlier runs are older generations; start over long before the counter could wrap.
    if (this.generation > 0x3fffffff) {
      addedIn.fill(-1);
      this.generation = 0;
    }
    this.generation++;
    let current = this.current;
    let next = this.next;
    let live = this.add(current, 0, 0);
    for (let i = 0; i < path.length; ) {
      const code = path.codePointAt(i) as number;
      i += code > 0xffff ? 2 : 1;
      if (stopAtMatchingParent && code === SLASH && addedIn[m] === this.generation) return 1;
      this.generation++;
      let n = 0;
      for (let j = 0; j < live; j++) {
        const state = current[j];
        if (state > m) {
          n = this.add(next, n, state);
          if (code === SLASH) n = this.add(next, n, state - m);
          continue;
        }
        if (state === m) continue;
        switch (kinds[state]) {
          case STAR:
            if (code !== SLASH) n = this.add(next, n, state);
            break;
          case ALL:
            n = this.add(next, n, state);
            break;
          case DIRS:
            n = this.add(next, n, m + 1 + state);
            if (code === SLASH) n = this.add(next, n, state + 1);
            break;
          case ANY:
            if (code !== SLASH) n = this.add(next, n, state + 1);
            break;
          case CLASS:
            if (this.classMatches(state, code)) n = this.add(next, n, state + 1);
            break;
          default:
            if (code === codes[state]) n = this.add(next, n, state + 1);
            break;
        }
      }
      if (n === 0) return DEAD;
      const swap = current;
      current = next;
      next = swap;
      live = n;
    }
    return addedIn[m] === this.generation ? 1 : 0;
  }

  matches(path: string): boolean {
    return this.run(path) === 1;
  }

  /** Whether the pattern matches the path or one of its parent directories, in one pass over the path. */
  matchesSelfOrParent(path: string): boolean {
    return this.run(path, true) === 1;
  }
}

/**
 * Go's filepath.Match on `/`-separated paths: the whole path must match.
 * Throws ERR_DOCKERFILE_PARSE for a malformed pattern (Go's ErrBadPattern).
 */
export function globMatch(pattern: string, path: string): boolean {
  let automaton = compiledGlobs.get(pattern);
  if (!automaton) {
    automaton = new Automaton(compileGlob(pattern));
    // A walker asks about one pattern for every entry: keep the last few compiled.
    if (compiledGlobs.size >= 64) compiledGlobs.clear();
    compiledGlobs.set(pattern, automaton);
  }
  return automaton.matches(path);
}

const compiledGlobs = new Map<string, Automaton>();

const NOT_CLEAN = /(^|\/)\.\.?(\/|$)|\/\/|\/$/;

/** Go's path.Clean: `.` and `..` resolved lexically, slashes collapsed, no trailing `/`; `` becomes `.`. */
export function cleanPath(path: string): string {
  if (path === '') return '.';
  // Already clean (what a walker passes, once per entry): no `.`/`..` segment, no doubled, leading or trailing `/`.
  if (!NOT_CLEAN.test(path)) return path;
  const rooted = path.startsWith('/');
  const out: string[] = [];
  for (const part of path.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (out.length > 0 && out[out.length - 1] !== '..') out.pop();
      else if (!rooted) out.push('..');
      continue;
    }
    out.push(part);
  }
  const joined = out.join('/');
  if (rooted) return `/${joined}`;
  return joined === '' ? '.' : joined;
}

interface IgnorePattern {
  exclusion: boolean;
  automaton: Automaton;
  /** matchesSelfOrParent: a shortcut for the common shapes (selfOrParentShortcut), else the automaton's. */
  selfOrParent: (path: string) => boolean;
  text: string;
}

/** Whether `lit` occurs in `path` as whole segments: at the start or after a `/`, and at the end or before a `/`. */
function hasSegments(path: string, lit: string): boolean {
  for (let k = path.indexOf(lit); k !== -1; k = path.indexOf(lit, k + 1)) {
    const end = k + lit.length;
    if ((k === 0 || path.charCodeAt(k - 1) === SLASH) && (end === path.length || path.charCodeAt(end) === SLASH)) return true;
  }
  return false;
}

/**
 * The automaton's matchesSelfOrParent for the shapes most .dockerignore lines
 * have, as string operations (a walker asks for every entry of the context):
 *  - a literal `a/b`: the path is it, or starts with `a/b/`;
 *  - `*` and a literal without `/` (`*.log`): `*` never crosses a `/`, so only
 *    the first segment can match, and it must end with the literal;
 *  - `**` `/` and a literal (`**` `/node_modules`): the literal as whole segments anywhere.
 * Anything else (and a pattern with surrogates, where code points and UTF-16
 * units differ) has none. test/patterns.test.ts holds them to the automaton.
 */
function selfOrParentShortcut(tokens: Token[]): ((path: string) => boolean) | undefined {
  const literalFrom = (start: number): string | undefined => {
    let text = '';
    for (let i = start; i < tokens.length; i++) {
      const token = tokens[i];
      if (token.kind !== 'char') return undefined;
      text += token.ch;
    }
    return /[\uD800-\uDFFF]/.test(text) ? undefined : text;
  };
  const first = tokens[0]?.kind;
  if (first === 'char') {
    const lit = literalFrom(0);
    if (lit === undefined) return undefined;
    const parent = `${lit}/`;
    return (path) => path === lit || path.startsWith(parent);
  }
  const suffix = tokens.length > 1 ? literalFrom(1) : undefined;
  if (suffix === undefined) return undefined;
  if (first === 'star' && !suffix.includes('/')) {
    return (path) => {
      const slash = path.indexOf('/');
      return slash === -1 ? path.endsWith(suffix) : slash >= suffix.length && path.startsWith(suffix, slash - suffix.length);
    };
  }
  if (first === 'dirs') return (path) => hasSegments(path, suffix);
  return undefined;
}

/**
 * One .dockerignore pattern as patternmatcher compiles it: `**` at the start
 * is a suffix match, at the end anything, elsewhere any number of whole
 * directories; `*` is any run without a slash, `?` one character but a slash.
 */
function compileIgnorePattern(pattern: string): Token[] {
  // patternmatcher compares a pattern without wildcards or escapes as a plain string.
  if (!/[*?[\]\\]/.test(pattern)) return Array.from(pattern, (ch): Token => ({ kind: 'char', ch }));
  return tokenize(pattern, (chars, i, tokens) => {
    if (chars[i + 1] !== '*') {
      tokens.push({ kind: 'star' });
      return i + 1;
    }
    let next = i + 2;
    const slash = chars[next] === '/';
    if (slash) next++;
    if (next >= chars.length) tokens.push({ kind: 'all' });
    // `**foo`: patternmatcher's suffix match, any path ending in "foo".
    else if (tokens.length === 0 && !slash && !/[*?[\]\\]/.test(chars.slice(next).join(''))) tokens.push({ kind: 'all' });
    else tokens.push({ kind: 'dirs' });
    return next;
  });
}

/** The shortcut a cleaned .dockerignore pattern (no `!`) gets, if any: for tests, which hold it to the automaton. */
export function ignoreShortcut(pattern: string): ((path: string) => boolean) | undefined {
  return selfOrParentShortcut(compileIgnorePattern(pattern));
}

export interface IgnoreMatcher {
  /** Whether a context-relative path (`/`-separated) is excluded: by itself or through a parent directory. */
  ignores(path: string): boolean;
  /**
   * For an excluded directory: whether an exception (`!pattern`) could re-include
   * something below it, so a walker must still descend into it.
   */
  mayIncludeUnder(dir: string): boolean;
  /**
   * Whether every path below a directory is excluded exactly when the directory is: no pattern can
   * match anything longer than "dir/" (`*.log` below `src`), so a walker need not ask about each entry.
   */
  sameBelow(dir: string): boolean;
  /** Whether any pattern is an exception (`!…`). */
  readonly hasExclusions: boolean;
}

/** A cleaned path relative to the context: a leading `/` dropped (`/` alone is the context, `.`). */
function withoutRoot(cleaned: string): string {
  return cleaned.startsWith('/') ? cleaned.slice(1) || '.' : cleaned;
}

/**
 * moby/patternmatcher's PatternMatcher over `patterns` (as readDockerignore gives them).
 * Throws ERR_DOCKERFILE_PARSE for a malformed pattern or a lone `!`, naming `options.file` when given.
 */
export function createIgnoreMatcher(
  patterns: string[],
  options: { file?: string /** Tests: the automaton only, no shortcut. */; automatonOnly?: boolean } = {},
): IgnoreMatcher {
  const where = options.file ? `${options.file}: ` : '';
  const compiled: IgnorePattern[] = [];
  for (const raw of patterns) {
    let text = raw.trim();
    if (text === '') continue;
    text = cleanPath(text);
    let exclusion = false;
    if (text.startsWith('!')) {
      if (text.length === 1) {
        throw new ConveyorError('ERR_DOCKERFILE_PARSE', `${where}illegal exclusion pattern: "!"`, { hint: 'write !PATH to re-include PATH' });
      }
      exclusion = true;
      text = text.slice(1);
    }
    checkLength(text, options.file);
    // patternmatcher checks the syntax the way filepath.Match would.
    try {
      compileGlob(text);
    } catch (error) {
      if (options.file) throw badPattern(text, options.file);
      throw error;
    }
    const automaton = new Automaton(compileIgnorePattern(text));
    const shortcut = options.automatonOnly ? undefined : selfOrParentShortcut(automaton.tokens);
    compiled.push({ exclusion, automaton, selfOrParent: shortcut ?? ((path) => automaton.matchesSelfOrParent(path)), text });
  }
  const hasExclusions = compiled.some((pattern) => pattern.exclusion);

  const ignores = (path: string): boolean => {
    // The context itself is never excluded (patternmatcher's Matches: "kind of silly").
    const cleaned = cleanPath(path);
    if (cleaned === '.') return false;
    const file = withoutRoot(cleaned);
    let matched = false;
    for (const pattern of compiled) {
      // An inclusion cannot change an already excluded path, nor an exception an included one.
      if (pattern.exclusion !== matched) continue;
      if (pattern.selfOrParent(file)) matched = !pattern.exclusion;
    }
    return matched;
  };

  const mayIncludeUnder = (dir: string): boolean => {
    if (!hasExclusions) return false;
    const normalized = withoutRoot(cleanPath(dir));
    const prefix = `${normalized}/`;
    // An exception matching the directory itself re-includes what is below it (parent matching); one that can
    // still match after "dir/" may re-include a path inside.
    return compiled.some((pattern) => pattern.exclusion && (pattern.automaton.matches(normalized) || pattern.automaton.run(prefix) !== DEAD));
  };

  const sameBelow = (dir: string): boolean => {
    // A pattern whose automaton is dead after "dir/" matches a path below dir only through dir or a
    // parent of it (a path's parents below dir all start with "dir/"): it says for each what it says for dir.
    const prefix = `${withoutRoot(cleanPath(dir))}/`;
    return compiled.every((pattern) => pattern.automaton.run(prefix) === DEAD);
  };

  return { ignores, mayIncludeUnder, sameBelow, hasExclusions };
}
