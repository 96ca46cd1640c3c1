/**
 * What a COPY/ADD takes from its root (the build context, or another stage's
 * or image's rootfs): each source pattern expanded to the paths it matches,
 * each path listed with everything below it, as Docker does (moby
 * builder/dockerfile/copy.go, buildkit's dockerfile2llb + fileop):
 *  - a pattern is relative to the root (a leading `/` too); `../x` is
 *    refused; a pattern with wildcards (`*`, `?`, `[`) is matched with
 *    filepath.Match semantics against paths of the same depth (globMatch);
 *  - a matched path that is a symlink is followed, inside the root only
 *    (resolveScoped, lib-common/container/rootfs.ts); below it symlinks are listed as symlinks, never followed;
 *  - `ignore` (the .dockerignore matcher) hides context paths: a file it
 *    excludes is not there, a directory's kept entries still are;
 *  - sockets and device nodes are left out (a build context has no use for
 *    them and our layers could not carry devices), and so are fifos;
 *  - each entry carries the xattrs an image keeps (file capabilities,
 *    user.*), read by one getfattr for the whole copy, or taken from the
 *    context's hash cache when the listing's stats are the ones it was read
 *    with (hash-cache.ts: an xattr change changes the ctime).
 * Entries come in byte order of their path, parents before children.
 */
import { lstatSync, readdirSync, readlinkSync, type Stats } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { posix } from 'node:path';
import { ConveyorError } from '@conveyor/lib-common/errors';
import { readXattrPaths, xattrKept } from '../layer/xattrs.js';
import { globMatch } from '../patterns.js';
import { type HashCache, listingFingerprint } from './hash-cache.js';
import { resolveScoped } from '@conveyor/lib-common/container/rootfs';

export interface SourceRoot {
  /** Host path of the root the sources are taken from. */
  root: string;
  /** Context-relative path (no leading '/') -> excluded by .dockerignore. */
  ignore?: (path: string) => boolean;
  /** Whether anything below a directory the ignore matcher excludes may be re-included by a `!` pattern (skips walking it when not). */
  mayIncludeUnder?: (dir: string) => boolean;
  /** Whether every path below a directory is excluded exactly when it is: below a directory kept whole, `ignore` is not asked. */
  sameBelow?: (dir: string) => boolean;
}

/** `from` for walking below `rel` (a directory not excluded): without its ignore matcher when nothing below can be excluded. */
function walkingBelow(from: SourceRoot, rel: string): SourceRoot {
  return from.ignore && rel !== '' && from.sameBelow?.(rel) ? { root: from.root } : from;
}

export type EntryKind = 'directory' | 'file' | 'symlink';

export interface SourceEntry {
  /** Host path in the source root. */
  hostPath: string;
  /** Path below the matched source ('' for the source itself). */
  below: string;
  kind: EntryKind;
  stats: Stats;
  /** Symlink target, verbatim. */
  target?: string;
  /** The xattrs an image keeps (layer/xattrs.ts xattrKept): file capabilities, user.*; byte strings. */
  xattrs?: Map<string, string>;
}

/** One path a pattern matched, with what it holds. */
export interface MatchedSource {
  pattern: string;
  /** The name it is copied under when it lands in a destination directory: the matched path's base name, as written. */
  name: string;
  /** Root-relative path after following symlinks. */
  relative: string;
  kind: EntryKind;
  entries: SourceEntry[];
}

const WILDCARD = /[*?[\\]/;

export function hasWildcard(pattern: string): boolean {
  return WILDCARD.test(pattern);
}

const NON_ASCII = /[\u0080-\uffff]/;

/** Byte order of the UTF-8 names (what Go's filepath.Walk gives); UTF-16 order differs only past the BMP. */
function byteOrder(a: string, b: string): number {
  if (a === b) return 0;
  // Both ASCII (nothing at or above U+0080): UTF-16 order is byte order, no buffers needed.
  if (!NON_ASCII.test(a) && !NON_ASCII.test(b)) return a < b ? -1 : 1;
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/** Names in byteOrder; a directory of ASCII names (the usual) sorts by UTF-16 order, the same, without a test per comparison. */
function sortNames(names: string[]): string[] {
  return names.some((name) => NON_ASCII.test(name)) ? names.sort(byteOrder) : names.sort();
}

function kindOf(stats: Stats): EntryKind | undefined {
  if (stats.isDirectory()) return 'directory';
  if (stats.isFile()) return 'file';
  if (stats.isSymbolicLink()) return 'symlink';
  return undefined;
}

function notFound(pattern: string, root: string): ConveyorError {
  return new ConveyorError('ERR_BUILD_SOURCE', `source ${JSON.stringify(pattern)} matches nothing in ${root}`, {
    hint: 'check the path against the build context and .dockerignore',
    details: { pattern },
  });
}

/** The pattern as a clean root-relative path; `..` that would leave the root is refused. */
export function cleanPattern(pattern: string): string {
  const cleaned = posix.normalize(pattern.replace(/^\/+/, ''));
  if (cleaned === '..' || cleaned.startsWith('../')) {
    throw new ConveyorError('ERR_BUILD_SOURCE', `source ${JSON.stringify(pattern)} is outside the build context`, {
      hint: 'COPY and ADD take files from inside the context (or the --from stage) only',
      details: { pattern },
    });
  }
  return cleaned === '.' ? '' : cleaned.replace(/\/+$/, '');
}

/**
 * Every entry below `dir` (root-relative `relDir`), byte-ordered, symlinks
 * not followed, ignored paths left out. Synchronous on purpose: a context is
 * listed from the page cache, where one lstatSync costs microseconds and a
 * thread-pool round trip per entry costs ten times that (a 10,000-file
 * context lists in tens of milliseconds instead of most of a second).
 */
function listTree(from: SourceRoot, hostDir: string, relDir: string, below: string, out: SourceEntry[]): void {
  let names: string[];
  try {
    names = readdirSync(hostDir);
  } catch (error) {
    throw new ConveyorError('ERR_BUILD_SOURCE', `cannot read ${hostDir}: ${(error as Error).message}`, { cause: error });
  }
  sortNames(names);
  for (const name of names) {
    const hostPath = `${hostDir}/${name}`;
    let stats: Stats;
    try {
      stats = lstatSync(hostPath);
    } catch {
      // A name that is not UTF-8 comes back from readdir with U+FFFD and cannot be found again: say so rather than drop it.
      if (name.includes('\ufffd')) {
        throw new ConveyorError('ERR_BUILD_SOURCE', `${hostDir}: a file name that is not UTF-8 (${JSON.stringify(name)})`, {
          hint: 'rename it, or exclude it in .dockerignore',
        });
      }
      continue; // gone since readdir
    }
    const kind = kindOf(stats);
    if (!kind) continue;
    const rel = relDir ? `${relDir}/${name}` : name;
    const childBelow = below ? `${below}/${name}` : name;
    const ignored = from.ignore?.(rel) ?? false;
    if (kind === 'directory') {
      if (ignored && from.mayIncludeUnder && !from.mayIncludeUnder(rel)) continue;
      const start = out.length;
      if (!ignored) out.push({ hostPath, below: childBelow, kind, stats });
      listTree(ignored ? from : walkingBelow(from, rel), hostPath, rel, childBelow, out);
      // An excluded directory is still created when a `!` exception keeps something below it.
      if (ignored && out.length > start) out.splice(start, 0, { hostPath, below: childBelow, kind, stats });
      continue;
    }
    if (ignored) continue;
    out.push({ hostPath, below: childBelow, kind, stats, target: kind === 'symlink' ? readlinkSync(hostPath) : undefined });
  }
}

/** The root-relative paths a wildcard pattern matches: a walk no deeper than the pattern, symlinked directories not entered. */
async function expandWildcard(from: SourceRoot, pattern: string): Promise<string[]> {
  const segments = pattern.split('/');
  const matches: string[] = [];
  const walk = async (relDir: string, depth: number): Promise<void> => {
    const hostDir = relDir ? posix.join(from.root, relDir) : from.root;
    const names = sortNames((await readdir(hostDir).catch(() => [])) as string[]);
    const prefix = segments.slice(0, depth + 1).join('/');
    for (const name of names) {
      const rel = relDir ? `${relDir}/${name}` : name;
      if (!globMatch(prefix, rel)) continue;
      if (depth + 1 === segments.length) {
        matches.push(rel);
        continue;
      }
      const stats = await lstat(posix.join(hostDir, name)).catch(() => undefined);
      if (stats?.isDirectory()) await walk(rel, depth + 1);
    }
  };
  await walk('', 0);
  return matches;
}

/**
 * Expands `patterns` in `from`. Fails with ERR_BUILD_SOURCE naming the
 * pattern when one matches nothing (or only ignored paths) or leaves the root.
 */
export async function matchSources(
  from: SourceRoot,
  patterns: string[],
  options: { xattrCache?: Pick<HashCache, 'xattrsOf' | 'recordXattrs'> } = {},
): Promise<{ sources: MatchedSource[]; wildcard: boolean }> {
  // First what each pattern names (cheap), so getfattr runs while the trees are listed.
  const named: { pattern: string; found: Resolved[] }[] = [];
  let wildcard = false;
  for (const pattern of patterns) {
    const cleaned = cleanPattern(pattern);
    let paths: string[];
    if (hasWildcard(cleaned)) {
      wildcard = true;
      paths = await expandWildcard(from, cleaned);
    } else paths = [cleaned];
    const found: Resolved[] = [];
    for (const path of paths) {
      const resolved = await resolveOne(from, pattern, path);
      if (resolved) found.push(resolved);
    }
    if (found.length === 0) throw notFound(pattern, from.root);
    named.push({ pattern, found });
  }
  // One getfattr for everything matched: COPY keeps file capabilities and user.* xattrs, as Docker and buildah do.
  // Without a cache it runs while the trees are listed; with one, only when the listing is not the one it recorded.
  const roots = named.flatMap(({ found }) => found.map((resolved) => resolved.entries[0].hostPath));
  const cache = options.xattrCache;
  const reading = cache ? undefined : readXattrPaths(roots);
  // An unhandled rejection must not end the process while the trees are listed; it is awaited below.
  reading?.catch(() => undefined);
  const sources: MatchedSource[] = [];
  for (const { pattern, found } of named) {
    const before = sources.length;
    for (const resolved of found) {
      const matched = listSource(from, resolved);
      if (matched) sources.push(matched);
    }
    if (sources.length === before) throw notFound(pattern, from.root);
  }
  let kept: Map<string, Map<string, string>>;
  if (cache) {
    const entries = sources.flatMap((source) => source.entries);
    const fingerprint = listingFingerprint(entries);
    const known = cache.xattrsOf(fingerprint);
    if (known) kept = known;
    else {
      kept = keptXattrs(await readXattrPaths(roots), entries);
      let newest = Number.NEGATIVE_INFINITY;
      for (const entry of entries) newest = Math.max(newest, entry.stats.ctimeMs);
      cache.recordXattrs(fingerprint, newest, kept);
    }
  } else
    kept = keptXattrs(
      (await reading) as Map<string, Map<string, string>>,
      sources.flatMap((source) => source.entries),
    );
  for (const source of sources) {
    for (const entry of source.entries) {
      const xattrs = kept.get(entry.hostPath);
      if (xattrs) entry.xattrs = xattrs;
    }
  }
  return { sources, wildcard };
}

/** What getfattr found for these entries, the xattrs an image keeps only, sorted by name; entries with none left out. */
function keptXattrs(found: Map<string, Map<string, string>>, entries: SourceEntry[]): Map<string, Map<string, string>> {
  const kept = new Map<string, Map<string, string>>();
  for (const entry of entries) {
    const all = found.get(entry.hostPath);
    if (!all) continue;
    const xattrs = new Map([...all].filter(([name]) => xattrKept(name)).sort(([a], [b]) => (a < b ? -1 : 1)));
    if (xattrs.size > 0) kept.set(entry.hostPath, xattrs);
  }
  return kept;
}

/** A matched path before its tree is listed. */
type Resolved = Omit<MatchedSource, 'entries'> & { entries: [SourceEntry] };

async function resolveOne(from: SourceRoot, pattern: string, path: string): Promise<Resolved | undefined> {
  if (path !== '' && from.ignore?.(path)) {
    // The path itself is excluded; a directory may still hold re-included entries.
    const stats = await lstat(posix.join(from.root, path)).catch(() => undefined);
    if (!stats?.isDirectory()) return undefined;
  }
  const resolved = await resolveScoped(from.root, path, { code: 'ERR_BUILD_SOURCE' });
  if (resolved.relative !== path && resolved.relative !== '' && from.ignore?.(resolved.relative)) {
    const stats = await lstat(resolved.hostPath).catch(() => undefined);
    if (!stats?.isDirectory()) return undefined;
  }
  const stats = await lstat(resolved.hostPath).catch(() => undefined);
  const kind = stats && kindOf(stats);
  // After resolution a symlink is one whose target does not exist (dangling): nothing to copy.
  if (!stats || !kind || kind === 'symlink') return undefined;
  const name = path === '' ? '' : posix.basename(path);
  return { pattern, name, relative: resolved.relative, kind, entries: [{ hostPath: resolved.hostPath, below: '', kind, stats }] };
}

function listSource(from: SourceRoot, resolved: Resolved): MatchedSource | undefined {
  const entries: SourceEntry[] = resolved.entries;
  if (resolved.kind === 'directory') {
    const kept = resolved.relative === '' || !from.ignore?.(resolved.relative);
    listTree(kept ? walkingBelow(from, resolved.relative) : from, entries[0].hostPath, resolved.relative, '', entries);
    if (entries.length === 1 && resolved.relative !== '' && from.ignore?.(resolved.relative)) return undefined;
  }
  return { ...resolved, entries };
}
