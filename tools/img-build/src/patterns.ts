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

function classMatches(token: Extract<Token, { kind: 'class' }>, ch: string): boolean {
  const code = ch.codePointAt(0) as number;
  let inside = false;
  for (const [lo, hi] of token.ranges) {
    if ((lo.codePointAt(0) as number) <= code && code <= (hi.codePointAt(0) as number)) inside = true;
  }
  return inside !== token.negated;
}

/**
 * Runs the automaton over `path` (Thompson's simulation: only live states are
 * visited, so a literal pattern costs one state per character). Undefined once
 * no state is live, else whether the whole pattern matched. States 0..m are
 * "tokens before i matched" (m: all of them); m+1+i is "inside the `dirs` token i".
 * With stopAtMatchingParent, a match of the text before a `/` (a parent
 * directory) is the answer.
 */
function run(tokens: Token[], path: string, stopAtMatchingParent = false): { accepting: boolean } | undefined {
  const m = tokens.length;
  const addedIn = new Int32Array(2 * m + 1).fill(-1);
  let generation = 0;
  /** Adds a state and those it reaches without a character (past `*`, `**` and directory tokens). */
  const add = (list: number[], state: number) => {
    for (let s = state; addedIn[s] !== generation; s++) {
      addedIn[s] = generation;
      list.push(s);
      if (s >= m) return;
      const kind = tokens[s].kind;
      if (kind !== 'star' && kind !== 'all' && kind !== 'dirs') return;
    }
  };
  let current: number[] = [];
  add(current, 0);
  for (const ch of path) {
    if (stopAtMatchingParent && ch === '/' && addedIn[m] === generation) return { accepting: true };
    generation++;
    const next: number[] = [];
    for (const state of current) {
      if (state > m) {
        add(next, state);
        if (ch === '/') add(next, state - m);
        continue;
      }
      if (state === m) continue;
      const token = tokens[state];
      switch (token.kind) {
        case 'star':
          if (ch !== '/') add(next, state);
          break;
        case 'all':
          add(next, state);
          break;
        case 'dirs':
          add(next, m + 1 + state);
          if (ch === '/') add(next, state + 1);
          break;
        case 'any':
          if (ch !== '/') add(next, state + 1);
          break;
        case 'class':
          if (classMatches(token, ch)) add(next, state + 1);
          break;
        case 'char':
          if (ch === token.ch) add(next, state + 1);
          break;
      }
    }
    if (next.length === 0) return undefined;
    current = next;
  }
  return { accepting: addedIn[m] === generation };
}

function matchesTokens(tokens: Token[], path: string): boolean {
  return run(tokens, path)?.accepting === true;
}

/** Whether the pattern matches the path or one of its parent directories, in one pass over the path. */
function matchesSelfOrParent(tokens: Token[], path: string): boolean {
  return run(tokens, path, true)?.accepting === true;
}

/**
 * Go's filepath.Match on `/`-separated paths: the whole path must match.
 * Throws ERR_DOCKERFILE_PARSE for a malformed pattern (Go's ErrBadPattern).
 */
export function globMatch(pattern: string, path: string): boolean {
  let tokens = compiledGlobs.get(pattern);
  if (!tokens) {
    tokens = compileGlob(pattern);
    // A walker asks about one pattern for every entry: keep the last few compiled.
    if (compiledGlobs.size >= 64) compiledGlobs.clear();
    compiledGlobs.set(pattern, tokens);
  }
  return matchesTokens(tokens, path);
}

const compiledGlobs = new Map<string, Token[]>();

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
  tokens: Token[];
  text: string;
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

export interface IgnoreMatcher {
  /** Whether a context-relative path (`/`-separated) is excluded: by itself or through a parent directory. */
  ignores(path: string): boolean;
  /**
   * For an excluded directory: whether an exception (`!pattern`) could re-include
   * something below it, so a walker must still descend into it.
   */
  mayIncludeUnder(dir: string): boolean;
  /** Whether any pattern is an exception (`!…`). */
  readonly hasExclusions: boolean;
}

function normalize(path: string): string {
  const cleaned = cleanPath(path);
  return cleaned.startsWith('/') ? cleaned.slice(1) || '.' : cleaned;
}

/**
 * moby/patternmatcher's PatternMatcher over `patterns` (as readDockerignore gives them).
 * Throws ERR_DOCKERFILE_PARSE for a malformed pattern or a lone `!`, naming `options.file` when given.
 */
export function createIgnoreMatcher(patterns: string[], options: { file?: string } = {}): IgnoreMatcher {
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
    compiled.push({ exclusion, tokens: compileIgnorePattern(text), text });
  }
  const hasExclusions = compiled.some((pattern) => pattern.exclusion);

  const ignores = (path: string): boolean => {
    // The context itself is never excluded (patternmatcher's Matches: "kind of silly").
    if (cleanPath(path) === '.') return false;
    const file = normalize(path);
    let matched = false;
    for (const pattern of compiled) {
      // An inclusion cannot change an already excluded path, nor an exception an included one.
      if (pattern.exclusion !== matched) continue;
      if (matchesSelfOrParent(pattern.tokens, file)) matched = !pattern.exclusion;
    }
    return matched;
  };

  const mayIncludeUnder = (dir: string): boolean => {
    if (!hasExclusions) return false;
    const normalized = normalize(dir);
    const prefix = `${normalized}/`;
    // An exception matching the directory itself re-includes what is below it (parent matching); one that can
    // still match after "dir/" may re-include a path inside.
    return compiled.some((pattern) => pattern.exclusion && (matchesTokens(pattern.tokens, normalized) || run(pattern.tokens, prefix) !== undefined));
  };

  return { ignores, mayIncludeUnder, hasExclusions };
}
