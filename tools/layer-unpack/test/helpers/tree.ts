/**
 * Root filesystem comparison: walks two trees with lstat and reads their
 * xattrs with getfattr, and lists every difference in names, types, modes
 * (incl. setuid/sticky), owners, symlink targets, file contents, hardlink
 * groups and xattrs (trusted.* excluded).
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';

export interface TreeEntry {
  type: string;
  mode: string;
  owner: string;
  target?: string;
  sha256?: string;
  xattrs?: Record<string, string>;
}

function typeOf(st: ReturnType<typeof lstatSync>): string {
  if (st.isDirectory()) return 'dir';
  if (st.isFile()) return 'file';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFIFO()) return 'fifo';
  if (st.isCharacterDevice()) return `char ${st.rdev}`;
  if (st.isBlockDevice()) return 'block';
  return 'other';
}

function unescapeOctal(text: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    if (text[i] === '\\' && /^[0-7]{3}$/.test(text.slice(i + 1, i + 4))) {
      bytes.push(parseInt(text.slice(i + 1, i + 4), 8));
      i += 3;
    } else bytes.push(...Buffer.from(text[i]));
  }
  return Buffer.from(bytes).toString();
}

/** All xattrs under root (not following symlinks), keyed by path relative to root. */
export function readXattrs(root: string): Record<string, Record<string, string>> {
  const out = execFileSync('getfattr', ['-R', '-P', '-h', '-d', '-m', '-', '-e', 'hex', '.'], { cwd: root, encoding: 'utf8', maxBuffer: 64 << 20 });
  const result: Record<string, Record<string, string>> = {};
  let current: string | undefined;
  for (const line of out.split('\n')) {
    if (line.startsWith('# file: ')) {
      const path = unescapeOctal(line.slice(8));
      current = path === '.' ? '.' : path.replace(/^\.\//, '');
    } else if (current && line.includes('=')) {
      const eq = line.indexOf('=');
      const name = line.slice(0, eq);
      if (name.startsWith('trusted.')) continue;
      (result[current] ??= {})[name] = line.slice(eq + 1);
    }
  }
  return result;
}

export interface Tree {
  entries: Map<string, TreeEntry>;
  /** Hardlink groups: sorted path lists, sorted. */
  links: string[][];
}

export function readTree(root: string): Tree {
  const entries = new Map<string, TreeEntry>();
  const inodes = new Map<string, string[]>();
  const xattrs = readXattrs(root);
  const walk = (rel: string) => {
    const abs = rel === '.' ? root : join(root, rel);
    const st = lstatSync(abs);
    const entry: TreeEntry = { type: typeOf(st), mode: (st.mode & 0o7777).toString(8), owner: `${st.uid}:${st.gid}` };
    if (st.isSymbolicLink()) {
      entry.target = readlinkSync(abs);
      delete (entry as Partial<TreeEntry>).mode;
    }
    if (st.isFile()) entry.sha256 = createHash('sha256').update(readFileSync(abs)).digest('hex');
    if (xattrs[rel]) entry.xattrs = xattrs[rel];
    entries.set(rel, entry);
    if (!st.isDirectory() && st.nlink > 1) {
      const key = `${st.dev}:${st.ino}`;
      inodes.set(key, [...(inodes.get(key) ?? []), rel]);
    }
    if (st.isDirectory()) for (const name of readdirSync(abs).sort()) walk(rel === '.' ? name : `${rel}/${name}`);
  };
  walk('.');
  const links = [...inodes.values()].map((g) => g.sort()).sort((a, b) => a[0].localeCompare(b[0]));
  return { entries, links };
}

/** Human-readable differences between two trees; empty when identical. */
export function diffTrees(a: string, b: string): string[] {
  return diffSnapshots(readTree(a), readTree(b), a, b);
}

/** The differences between two trees read by readTree (e.g. one directory before and after a run); [] when equal. */
export function diffSnapshots(ta: Tree, tb: Tree, a = 'before', b = 'after'): string[] {
  const diffs: string[] = [];
  for (const [path, ea] of ta.entries) {
    const eb = tb.entries.get(path);
    if (!eb) diffs.push(`only in ${a}: ${path}`);
    else if (JSON.stringify(ea) !== JSON.stringify(eb)) diffs.push(`${path}: ${JSON.stringify(ea)} != ${JSON.stringify(eb)}`);
  }
  for (const path of tb.entries.keys()) if (!ta.entries.has(path)) diffs.push(`only in ${b}: ${path}`);
  if (JSON.stringify(ta.links) !== JSON.stringify(tb.links)) diffs.push(`hardlink groups differ: ${JSON.stringify(ta.links)} != ${JSON.stringify(tb.links)}`);
  return diffs;
}
