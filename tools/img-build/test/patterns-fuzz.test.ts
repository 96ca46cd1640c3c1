/**
 * mayIncludeUnder is what lets a context walker skip an excluded directory: if
 * it ever says "nothing below can come back" while an exception does re-include
 * a path below, that file silently goes missing from the build. Checked here on
 * generated .dockerignore files and paths (seeded): for every excluded
 * directory it calls closed, every path below must be excluded too.
 */
import t from 'tap';
import { cleanPath, createIgnoreMatcher } from '../src/patterns.js';

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
