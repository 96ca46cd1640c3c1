/**
 * mayIncludeUnder is what lets a context walker skip an excluded directory: if
 * it ever says "nothing below can come back" while an exception does re-include
 * a path below, that file silently goes missing from the build. Checked here on
 * generated .dockerignore files and paths (seeded): for every excluded
 * directory it calls closed, every path below must be excluded too.
 */
import t from 'tap';
import { cleanPath, createIgnoreMatcher, globMatch } from '../src/patterns.js';

function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

t.test('an excluded directory called closed has nothing re-included below it', async (t) => {
  const next = random(56);
  const pick = <T>(items: T[]) => items[Math.floor(next() * items.length)];
  const segment = () => pick(['a', 'b', 'ab', 'a.txt', 'b.log']);
  const path = (depth: number) => Array.from({ length: depth }, segment).join('/');
  const patternPiece = () => pick(['a', 'b', '*', '**', '?', 'a*', '*.txt', '[ab]', 'ab', '*.log', 'b']);
  const pattern = () => Array.from({ length: 1 + Math.floor(next() * 3) }, patternPiece).join('/');
  let closedChecked = 0;
  let violations = 0;
  for (let round = 0; round < 1500; round++) {
    const patterns = Array.from({ length: 1 + Math.floor(next() * 4) }, () => (next() < 0.4 ? `!${pattern()}` : pattern()));
    const matcher = createIgnoreMatcher(patterns);
    for (let d = 0; d < 6; d++) {
      const dir = path(1 + Math.floor(next() * 2));
      if (!matcher.ignores(dir) || matcher.mayIncludeUnder(dir)) continue;
      closedChecked++;
      for (let c = 0; c < 12; c++) {
        const below = `${dir}/${path(1 + Math.floor(next() * 3))}`;
        if (!matcher.ignores(below)) {
          violations++;
          t.fail(`${JSON.stringify(patterns)}: ${dir} called closed, but ${below} is not excluded`);
        }
      }
    }
  }
  t.equal(violations, 0);
  // Enough closed directories were seen for the check to mean something.
  t.ok(closedChecked > 500, `${closedChecked} closed directories checked`);
});

/**
 * moby/patternmatcher as written (patternmatcher.go: compile to a regexp or an
 * exact/prefix/suffix match, MatchesOrParentMatches), transcribed with JS
 * regexps: the reference the automaton-based matcher must agree with. Only for
 * the small generated inputs here (regexps backtrack).
 */
function referenceMatcher(patterns: string[]): (file: string) => boolean {
  const compiled = patterns.map((raw) => {
    let p = raw.trim();
    const exclusion = p.startsWith('!');
    if (exclusion) p = p.slice(1);
    let regex = '^';
    let type: 'exact' | 'prefix' | 'suffix' | 'regexp' = 'exact';
    for (let i = 0; i < p.length; i++) {
      const ch = p[i];
      if (ch === '*') {
        if (p[i + 1] === '*') {
          const first = i === 0;
          i++;
          if (p[i + 1] === '/') i++;
          if (i + 1 >= p.length) {
            if (type === 'exact') type = 'prefix';
            else {
              regex += '.*';
              type = 'regexp';
            }
          } else {
            regex += '(.*/)?';
            type = 'regexp';
          }
          if (first) type = 'suffix';
        } else {
          regex += '[^/]*';
          type = 'regexp';
        }
      } else if (ch === '?') {
        regex += '[^/]';
        type = 'regexp';
      } else if ('.+()|{}$'.includes(ch)) {
        regex += `\\${ch}`;
      } else if (ch === '[' || ch === ']') {
        regex += ch;
        type = 'regexp';
      } else {
        regex += ch;
      }
    }
    const re = new RegExp(`${regex}$`);
    const match = (path: string): boolean => {
      if (type === 'exact') return path === p;
      if (type === 'prefix') return path.startsWith(p.slice(0, -2));
      if (type === 'suffix') {
        const suffix = p.slice(2);
        return path.endsWith(suffix) || (suffix.startsWith('/') && path === suffix.slice(1));
      }
      return re.test(path);
    };
    return { exclusion, match };
  });
  return (file) => {
    const slash = file.lastIndexOf('/');
    const parents = slash < 0 ? [] : file.slice(0, slash).split('/');
    let matched = false;
    for (const pattern of compiled) {
      if (pattern.exclusion !== matched) continue;
      let match = pattern.match(file);
      for (let i = 0; !match && i < parents.length; i++) match = pattern.match(parents.slice(0, i + 1).join('/'));
      if (match) matched = !pattern.exclusion;
    }
    return matched;
  };
}

t.test('ignores agrees with patternmatcher.go transcribed, on generated patterns and paths', async (t) => {
  const next = random(78);
  const pick = <T>(items: T[]) => items[Math.floor(next() * items.length)];
  const pieces = ['a', 'b', '.', 'x.txt', '*', '**', '?', '[ab]', '[^a]', '[a-c]', '/', '**/', 'a*', '*b', '(', '+'];
  const pattern = () => {
    let text = Array.from({ length: 1 + Math.floor(next() * 4) }, () => pick(pieces)).join('');
    // Cleaned as patternmatcher's New does (filepath.Clean; cleanPath is checked against Go's in patterns.test.ts),
    // so the reference below sees the pattern ours does.
    text = cleanPath(text).replace(/^\//, '');
    return text === '' || text === '.' || text.startsWith('..') ? 'a' : text;
  };
  const segments = ['a', 'b', 'ab', 'ba', '.', 'x.txt', 'c', 'a(b', 'a+b'];
  const path = () => Array.from({ length: 1 + Math.floor(next() * 4) }, () => pick(segments.filter((s) => s !== '.'))).join('/');
  let compared = 0;
  let ignoredSeen = 0;
  for (let round = 0; round < 3000; round++) {
    const patterns = Array.from({ length: 1 + Math.floor(next() * 3) }, () => (next() < 0.3 ? `!${pattern()}` : pattern()));
    let ours: ReturnType<typeof createIgnoreMatcher>;
    try {
      ours = createIgnoreMatcher(patterns);
    } catch {
      continue; // a malformed class: both refuse it (checked in patterns.test.ts)
    }
    const reference = referenceMatcher(patterns);
    for (let p = 0; p < 8; p++) {
      const file = path();
      const expected = reference(file);
      if (ours.ignores(file) !== expected) t.fail(`${JSON.stringify(patterns)} vs ${file}: ours ${!expected}, patternmatcher ${expected}`);
      compared++;
      if (expected) ignoredSeen++;
    }
  }
  t.ok(compared > 10_000, `${compared} comparisons`);
  t.ok(ignoredSeen > 2000 && ignoredSeen < compared - 2000, `${ignoredSeen} excluded: both answers are exercised`);
});

/** Go's path/filepath.Match (match.go: scanChunk, matchChunk, getEsc) transcribed over code points: globMatch's reference. */
function goMatch(patternText: string, nameText: string): boolean | 'bad' {
  class Bad extends Error {}
  const getEsc = (chunk: string[]): [string, string[]] => {
    if (chunk.length === 0 || chunk[0] === '-' || chunk[0] === ']') throw new Bad();
    let rest = chunk;
    if (rest[0] === '\\') {
      rest = rest.slice(1);
      if (rest.length === 0) throw new Bad();
    }
    const r = rest[0];
    rest = rest.slice(1);
    if (rest.length === 0) throw new Bad();
    return [r, rest];
  };
  const scanChunk = (pattern: string[]): [boolean, string[], string[]] => {
    let star = false;
    while (pattern.length > 0 && pattern[0] === '*') {
      pattern = pattern.slice(1);
      star = true;
    }
    let inRange = false;
    let i = 0;
    scan: for (; i < pattern.length; i++) {
      switch (pattern[i]) {
        case '\\':
          if (i + 1 < pattern.length) i++;
          break;
        case '[':
          inRange = true;
          break;
        case ']':
          inRange = false;
          break;
        case '*':
          if (!inRange) break scan;
      }
    }
    return [star, pattern.slice(0, i), pattern.slice(i)];
  };
  const matchChunk = (chunkIn: string[], sIn: string[]): [string[], boolean] => {
    let chunk = chunkIn;
    let s = sIn;
    let failed = false;
    while (chunk.length > 0) {
      if (!failed && s.length === 0) failed = true;
      switch (chunk[0]) {
        case '[': {
          let r = '';
          if (!failed) {
            r = s[0];
            s = s.slice(1);
          }
          chunk = chunk.slice(1);
          let negated = false;
          if (chunk.length > 0 && chunk[0] === '^') {
            negated = true;
            chunk = chunk.slice(1);
          }
          let match = false;
          let ranges = 0;
          for (;;) {
            if (chunk.length > 0 && chunk[0] === ']' && ranges > 0) {
              chunk = chunk.slice(1);
              break;
            }
            let lo: string;
            let hi: string;
            [lo, chunk] = getEsc(chunk);
            hi = lo;
            if (chunk[0] === '-') [hi, chunk] = getEsc(chunk.slice(1));
            const code = (c: string) => c.codePointAt(0) as number;
            if (!failed && code(lo) <= code(r) && code(r) <= code(hi)) match = true;
            ranges++;
          }
          if (match === negated) failed = true;
          break;
        }
        case '?':
          if (!failed) {
            if (s[0] === '/') failed = true;
            s = s.slice(1);
          }
          chunk = chunk.slice(1);
          break;
        default: {
          // A backslash makes the next character literal (alone at the end it is a bad pattern).
          if (chunk[0] === '\\') {
            chunk = chunk.slice(1);
            if (chunk.length === 0) throw new Bad();
          }
          if (!failed) {
            if (chunk[0] !== s[0]) failed = true;
            s = s.slice(1);
          }
          chunk = chunk.slice(1);
        }
      }
    }
    return failed ? [[], false] : [s, true];
  };
  try {
    let pattern = Array.from(patternText);
    let name = Array.from(nameText);
    outer: while (pattern.length > 0) {
      let star: boolean;
      let chunk: string[];
      [star, chunk, pattern] = scanChunk(pattern);
      if (star && chunk.length === 0) return !name.includes('/');
      const [t, ok] = matchChunk(chunk, name);
      if (ok && (t.length === 0 || pattern.length > 0)) {
        name = t;
        continue;
      }
      if (star) {
        for (let i = 0; i < name.length && name[i] !== '/'; i++) {
          const [t2, ok2] = matchChunk(chunk, name.slice(i + 1));
          if (ok2) {
            if (pattern.length === 0 && t2.length > 0) continue;
            name = t2;
            continue outer;
          }
        }
      }
      while (pattern.length > 0) {
        [, chunk, pattern] = scanChunk(pattern);
        matchChunk(chunk, []);
      }
      return false;
    }
    return name.length === 0;
  } catch (error) {
    if (error instanceof Bad) return 'bad';
    throw error;
  }
}

t.test('globMatch agrees with Go filepath.Match transcribed, on generated patterns and names', async (t) => {
  const next = random(90);
  const pick = <T>(items: T[]) => items[Math.floor(next() * items.length)];
  const pieces = ['a', 'b', '/', '*', '?', '[ab]', '[^a]', '[a-c]', '\\*', '\\', '[', ']', '-', '^', 'é', '[é-ï]', '[\\]a]'];
  const chars = ['a', 'b', 'c', '/', '*', '-', ']', 'é', 'î'];
  let compared = 0;
  let matched = 0;
  let bad = 0;
  for (let round = 0; round < 60_000; round++) {
    const pattern = Array.from({ length: 1 + Math.floor(next() * 5) }, () => pick(pieces)).join('');
    const name = Array.from({ length: Math.floor(next() * 6) }, () => pick(chars)).join('');
    const expected = goMatch(pattern, name);
    let actual: boolean | 'bad';
    try {
      actual = globMatch(pattern, name);
    } catch {
      actual = 'bad';
    }
    if (actual !== expected) t.fail(`Match(${JSON.stringify(pattern)}, ${JSON.stringify(name)}): ours ${actual}, Go ${expected}`);
    compared++;
    if (expected === true) matched++;
    if (expected === 'bad') bad++;
  }
  t.ok(matched > 1000 && bad > 1000 && compared - matched - bad > 1000, `${compared} compared: ${matched} match, ${bad} bad patterns`);
});
