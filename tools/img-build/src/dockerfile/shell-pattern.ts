/**
 * Shell patterns for `${VAR%pat}`, `${VAR#pat}` (and `%%`, `##`) and
 * `${VAR/pat/rep}`, as buildkit's lex.go has them: `*`, `?` and `\` escapes,
 * no bracket classes. Matched by simulating the pattern as an automaton (only
 * live states visited) instead of through a regular expression, and within a
 * step budget, so a hostile pattern or value cannot hold the build.
 */

import { shown } from './messages.js';

/** A malformed pattern or one too expensive to apply; expand.ts reports it as the word's error. */
export class ShellPatternError extends Error {}

type ShellToken = { kind: 'star' } | { kind: 'any' } | { kind: 'char'; ch: string };

export function compileShellPattern(pattern: string): ShellToken[] {
  const chars = Array.from(pattern);
  const tokens: ShellToken[] = [];
  for (let i = 0; i < chars.length; i++) {
    const ch = chars[i];
    if (ch === '*') {
      if (tokens.at(-1)?.kind !== 'star') tokens.push({ kind: 'star' });
    } else if (ch === '?') {
      tokens.push({ kind: 'any' });
    } else if (ch === '\\') {
      const next = chars[i + 1];
      // `\}` and `\/` only kept `}` and `/` from ending the ${…}: the backslash is not part of the pattern.
      if (next === '}' || next === '/') continue;
      if (next !== '*' && next !== '?' && next !== '\\') {
        throw new ShellPatternError(`invalid pattern (${shown(pattern)}) in substitution: invalid escape '\\${shown(next ?? '')}'`);
      }
      tokens.push({ kind: 'char', ch: next });
      i++;
    } else {
      tokens.push({ kind: 'char', ch });
    }
  }
  return tokens;
}

/**
 * How many automaton steps one word's pattern substitutions may take. `${V//*x/y}`
 * on a long V is quadratic (every start runs to the end); past this the word is
 * refused instead of holding the build.
 */
export const MAX_PATTERN_STEPS = 20_000_000;

/** Steps left for the word being expanded (resetPatternBudget starts each word). */
const budget = { left: MAX_PATTERN_STEPS };

/** Starts a new word's budget. */
export function resetPatternBudget(): void {
  budget.left = MAX_PATTERN_STEPS;
}

/**
 * The lengths of every prefix of `chars` (from `start`) that the whole pattern
 * matches, ascending: Thompson's simulation, visiting only live states.
 */
function matchingPrefixLengths(tokens: ShellToken[], chars: string[], start: number): number[] {
  const m = tokens.length;
  const addedIn = new Int32Array(m + 1).fill(-1);
  let generation = 0;
  const add = (list: number[], state: number) => {
    // A state and those past the `*`s it reaches without a character.
    for (let s = state; addedIn[s] !== generation; s++) {
      addedIn[s] = generation;
      list.push(s);
      if (s === m || tokens[s].kind !== 'star') return;
    }
  };
  let current: number[] = [];
  add(current, 0);
  const lengths: number[] = addedIn[m] === generation ? [0] : [];
  for (let pos = start; pos < chars.length; pos++) {
    budget.left -= current.length;
    if (budget.left < 0) throw new ShellPatternError('pattern substitution too expensive (a long value and a pattern that matches everywhere)');
    generation++;
    const next: number[] = [];
    for (const state of current) {
      if (state === m) continue;
      const token = tokens[state];
      if (token.kind === 'star') add(next, state);
      else if (token.kind === 'any' || token.ch === chars[pos]) add(next, state + 1);
    }
    if (next.length === 0) break;
    current = next;
    if (addedIn[m] === generation) lengths.push(pos - start + 1);
  }
  return lengths;
}

export function trimPrefix(pattern: string, value: string, greedy: boolean): string {
  const chars = Array.from(value);
  const lengths = matchingPrefixLengths(compileShellPattern(pattern), chars, 0);
  if (lengths.length === 0) return value;
  const cut = greedy ? lengths[lengths.length - 1] : lengths[0];
  return chars.slice(cut).join('');
}

/** Reverses a pattern keeping each `\x` escape in front of its character (buildkit's reversePattern). */
function reversePattern(pattern: string): string {
  const chars = Array.from(pattern);
  const units: string[] = [];
  for (let i = 0; i < chars.length; i++) {
    if (chars[i] === '\\' && i + 1 < chars.length) {
      units.push(chars[i] + chars[i + 1]);
      i++;
    } else {
      units.push(chars[i]);
    }
  }
  return units.reverse().join('');
}

export function trimSuffix(pattern: string, value: string, greedy: boolean): string {
  const reversed = Array.from(value).reverse().join('');
  return Array.from(trimPrefix(reversePattern(pattern), reversed, greedy))
    .reverse()
    .join('');
}

/** `${VAR/pat/rep}`: the leftmost longest match replaced; with `//` every non-overlapping one (Go's ReplaceAll rules). */
export function replacePattern(value: string, tokens: ShellToken[], replacement: string, all: boolean): string {
  const chars = Array.from(value);
  let out = '';
  let copied = 0;
  let lastMatchEnd = -1;
  for (let pos = 0; pos <= chars.length; ) {
    const lengths = matchingPrefixLengths(tokens, chars, pos);
    const length = lengths.length > 0 ? lengths[lengths.length - 1] : -1;
    // An empty match right after a match is not another one (Go: "empty matches abutting a preceding match are ignored").
    if (length < 0 || (length === 0 && pos === lastMatchEnd)) {
      pos++;
      continue;
    }
    out += chars.slice(copied, pos).join('') + replacement;
    copied = pos + length;
    lastMatchEnd = copied;
    if (!all) break;
    pos = length === 0 ? pos + 1 : copied;
  }
  return out + chars.slice(copied).join('');
}
