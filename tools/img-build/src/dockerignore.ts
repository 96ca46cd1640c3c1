/**
 * `.dockerignore` text → patterns, as moby/patternmatcher's ignorefile.ReadAll:
 * a UTF-8 BOM dropped, lines starting with `#` are comments (only in the first
 * column), blank lines skipped, each pattern trimmed and cleaned (path.Clean),
 * a leading `/` removed (patterns are relative to the context), `!` kept in
 * front of the cleaned pattern.
 */
import { cleanPath } from './patterns.js';

export function readDockerignore(text: string): string[] {
  if (text.startsWith('\uFEFF')) text = text.slice(1);
  const patterns: string[] = [];
  for (const rawLine of text.split('\n')) {
    // bufio.ScanLines drops one trailing \r.
    const line = rawLine.endsWith('\r') ? rawLine.slice(0, -1) : rawLine;
    if (line.startsWith('#')) continue;
    let pattern = line.trim();
    if (pattern === '') continue;
    const invert = pattern.startsWith('!');
    if (invert) pattern = pattern.slice(1).trim();
    if (pattern.length > 0) {
      pattern = cleanPath(pattern);
      if (pattern.length > 1 && pattern.startsWith('/')) pattern = pattern.slice(1);
    }
    patterns.push(invert ? `!${pattern}` : pattern);
  }
  return patterns;
}
