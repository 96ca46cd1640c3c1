/**
 * Entry names from a tar header, checked before anything touches the disk.
 * Names are attacker-chosen: we never "clean" a hostile name into a benign
 * one. A name is split into components; `.` and empty components (`./a`,
 * `a//b`, a trailing `/`) are dropped; a leading `/` or any `..` component is
 * refused as malicious, as is a NUL byte.
 *
 * Names are byte strings (latin1-decoded, one char per byte; see
 * tarheader.ts): lengths are byte counts, and `show` turns a name into text
 * for messages only. Whiteout names (`.wh.NAME`, `.wh..wh..opq`) are read
 * here too; what a whiteout does is apply/whiteouts.ts's business.
 */
import { invalid, malicious } from './errors.js';

/** Longest entry name or link target accepted (Linux PATH_MAX). */
export const MAX_NAME_BYTES = 4096;
/** Longest single path component (Linux NAME_MAX). */
export const MAX_COMPONENT_BYTES = 255;

export const WHITEOUT_PREFIX = '.wh.';
export const OPAQUE_MARKER = '.wh..wh..opq';

/** A byte-string name as quoted text for messages (UTF-8 where it is UTF-8, U+FFFD elsewhere). */
export function show(name: string): string {
  return JSON.stringify(Buffer.from(name.slice(0, 1024), 'latin1').toString('utf8'));
}

/** A byte string as the text it encodes (lossy for bytes that are not UTF-8). */
export function text(name: string): string {
  return Buffer.from(name, 'latin1').toString('utf8');
}

/**
 * Splits an entry name (a byte string) into path components relative to the
 * root. Returns [] for the root itself (`.`, `./`). With `absoluteIsRooted`
 * a leading `/` names the layer root instead of being refused: hardlink
 * targets, which kaniko writes absolute (moby/go-archive#99).
 */
export function splitName(name: string, what = 'entry', absoluteIsRooted = false): string[] {
  if (typeof name !== 'string') throw invalid(`${what} has no name`);
  if (name.length > MAX_NAME_BYTES) throw invalid(`${what} name is longer than ${MAX_NAME_BYTES} bytes`, name);
  if (name.includes('\0')) throw malicious(`${what} name contains a NUL byte: ${show(name)}`, name);
  if (name.startsWith('/') && !absoluteIsRooted) throw malicious(`${what} has an absolute name: ${show(name)}`, name);
  const parts: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') throw malicious(`${what} name climbs out of the root: ${show(name)}`, name);
    if (part.length > MAX_COMPONENT_BYTES) throw invalid(`${what} name has a component longer than ${MAX_COMPONENT_BYTES} bytes`, name);
    parts.push(part);
  }
  return parts;
}

/** What a whiteout entry asks for, after validating its name. */
export type WhiteoutKind = { kind: 'opaque' } | { kind: 'whiteout'; target: string } | { kind: 'aufs-meta' };

/** Returns undefined for a normal entry; otherwise what the whiteout means. Throws on an invalid whiteout name. */
export function whiteoutOf(base: string, name: string): WhiteoutKind | undefined {
  if (!base.startsWith(WHITEOUT_PREFIX)) return undefined;
  if (base === OPAQUE_MARKER) return { kind: 'opaque' };
  // `.wh..wh.plnk`, `.wh..wh.aufs`: AUFS bookkeeping, never meaningful to us.
  if (base.startsWith(`${WHITEOUT_PREFIX}${WHITEOUT_PREFIX}`)) return { kind: 'aufs-meta' };
  const target = base.slice(WHITEOUT_PREFIX.length);
  if (target === '' || target === '.' || target === '..') {
    throw malicious(`whiteout ${show(name)} names no deletable entry (it would delete the directory itself or its parent)`, name);
  }
  return { kind: 'whiteout', target };
}
