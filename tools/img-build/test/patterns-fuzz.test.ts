/**
 * mayIncludeUnder is what lets a context walker skip an excluded directory: if
 * it ever says "nothing below can come back" while an exception does re-include
 * a path below, that file silently goes missing from the build. Checked here on
 * generated .dockerignore files and paths (seeded): for every excluded
 * directory it calls closed, every path below must be excluded too.
 */
import t from 'tap';
import { createIgnoreMatcher } from '../src/patterns.js';

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
