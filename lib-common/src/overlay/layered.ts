/**
 * An overlay's root looked at without mounting it: the lookups ctr-spawn
 * makes before the runtime mounts the overlay itself (the user in
 * /etc/passwd, the command on PATH, the working directory) answered from the
 * layer directories with overlayfs's own rules. A name is looked up in the
 * layers where its parent is a visible directory, top layer first: a 0/0
 * character device (a whiteout) hides it and everything below; a file, link
 * or device is the answer and hides what is below; a directory merges with
 * the directories below it unless it is opaque (`trusted.overlay.opaque` =
 * y), which hides them. The opaque mark is an xattr Node cannot read: it is
 * asked of getfattr, once per directory that exists in more than one layer
 * (never for a one-layer image), for all its layers at once.
 *
 * The layers are trusted (the store's, through record-paths.ts) and do not
 * change while they are looked at. Their lstat and readlink calls are
 * synchronous: a lookup is a chain of a few calls on cached directories, each
 * far cheaper than a trip through libuv's thread pool (issue 17). A path that does not exist maps to the
 * same path under `empty` (an empty directory, the unmounted merged dir), so
 * that opening it fails as opening a missing file does.
 *
 * Failure: lstat's errors other than ENOENT and ENOTDIR are thrown as they
 * are; getfattr that cannot run is ERR_MOUNT_FAILED.
 */
import { lstatSync, readlinkSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import { ConveyorError } from '../errors.js';
import { runProcess } from '../subprocess.js';

/**
 * A tree to look paths up in without leaving it (container/rootfs.ts): a directory (a mounted root,
 * a build context), or the layers of an overlay nobody mounted here (LayeredRoot, below). `rel` is a
 * path relative to the root, components joined by '/', '' for the root itself.
 */
export interface RootTree {
  /** For messages. */
  readonly name: string;
  /** lstat of `rel`; undefined when it does not exist (ENOENT, ENOTDIR); other errors are thrown. */
  lstat(rel: string): Promise<Stats | undefined>;
  readlink(rel: string): Promise<string>;
  /** The host file of `rel` once it was found by lstat; a path that does not exist otherwise. */
  hostPath(rel: string): string;
}

/** Answers which of `dirs` (absolute) are opaque. */
export type OpaqueProbe = (dirs: string[]) => Promise<Set<string>>;

interface Entry {
  stats: Stats;
  host: string;
  /** For a directory: the indices of the layers it is visible in (top first). */
  layers?: number[];
}

/** A whiteout as layer-unpack and overlayfs write it: a character device 0/0. */
export function isWhiteout(stats: Stats): boolean {
  return stats.isCharacterDevice() && stats.rdev === 0;
}

/** The paths getfattr's dump (`-d`, absolute names) shows with the opaque mark set. Pure. */
export function opaqueInDump(dump: string): Set<string> {
  const found = new Set<string>();
  let file: string | undefined;
  for (const line of dump.split('\n')) {
    if (line.startsWith('# file: '))
      file = line.slice('# file: '.length).replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
    else if (file !== undefined && /^(user|trusted)\.overlay\.opaque="y"$/.test(line)) found.add(file);
  }
  return found;
}

/** The opaque marks of `dirs`, from one getfattr (`trusted.overlay.opaque`: layer-unpack's as root). */
export const getfattrOpaque: OpaqueProbe = async (dirs) => {
  const result = await runProcess('getfattr', ['-h', '--absolute-names', '-d', '-m', '^trusted\\.overlay\\.opaque$', '--', ...dirs]);
  if (result.code !== undefined) {
    throw new ConveyorError('ERR_MOUNT_FAILED', `cannot run getfattr: ${result.originalMessage ?? result.shortMessage}`, { hint: 'install attr' });
  }
  // It exits 1 when a file has no such xattr: what it printed is what there is.
  return opaqueInDump(String(result.stdout));
};

const missing = (error: unknown) => ['ENOENT', 'ENOTDIR'].includes((error as NodeJS.ErrnoException).code ?? '');

/** The merged view of `layers` (top layer first), for resolveScoped and the lookups built on it. */
export class LayeredRoot implements RootTree {
  private readonly entries = new Map<string, Promise<Entry | undefined>>();

  constructor(
    private readonly layers: string[],
    private readonly empty: string,
    private readonly probe: OpaqueProbe = getfattrOpaque,
  ) {}

  get name(): string {
    return this.empty;
  }

  async lstat(rel: string): Promise<Stats | undefined> {
    return (await this.entry(rel))?.stats;
  }

  async readlink(rel: string): Promise<string> {
    const entry = await this.entry(rel);
    if (!entry) throw Object.assign(new Error(`${rel}: no such file or directory`), { code: 'ENOENT' });
    return readlinkSync(entry.host);
  }

  /** Where `rel` is on the host: its layer's file once looked up, else a path that does not exist. */
  hostPath(rel: string): string {
    return this.known.get(rel)?.host ?? (rel === '' ? this.empty : join(this.empty, rel));
  }

  private readonly known = new Map<string, Entry>();

  private entry(rel: string): Promise<Entry | undefined> {
    let found = this.entries.get(rel);
    if (!found) {
      found = rel === '' ? this.lookupRoot() : this.lookup(rel);
      found.then((entry) => entry && this.known.set(rel, entry)).catch(() => undefined);
      this.entries.set(rel, found);
    }
    return found;
  }

  private lookupRoot(): Promise<Entry | undefined> {
    return this.merge(
      '',
      this.layers.map((_, index) => index),
    );
  }

  private async lookup(rel: string): Promise<Entry | undefined> {
    const slash = rel.lastIndexOf('/');
    const parent = await this.entry(slash < 0 ? '' : rel.slice(0, slash));
    if (!parent?.layers) return undefined;
    return this.merge(rel, parent.layers);
  }

  /** `rel` in the layers `candidates` (top first), where its parent is a visible directory. */
  private async merge(rel: string, candidates: number[]): Promise<Entry | undefined> {
    const stats = candidates.map((index) => {
      try {
        return lstatSync(rel === '' ? this.layers[index] : join(this.layers[index], rel));
      } catch (error) {
        if (missing(error)) return undefined;
        throw error;
      }
    });
    // What overlayfs stops at, top down: a whiteout, or anything not a directory.
    let end = stats.findIndex((st) => st !== undefined && !st.isDirectory());
    if (end < 0) end = stats.length;
    const top = stats.findIndex((st) => st !== undefined);
    if (top < 0 || top === end) {
      const st = stats[top];
      return st && !isWhiteout(st) ? { stats: st, host: this.hostOf(candidates[top], rel) } : undefined;
    }
    // Directories from `top` to `end`: each but the last hides those below it when opaque.
    const dirs = candidates.slice(top, end).filter((_, i) => stats[top + i] !== undefined);
    const asked = dirs.slice(0, -1).map((index) => this.hostOf(index, rel));
    const opaque = asked.length > 0 ? await this.probe(asked) : new Set<string>();
    const visible: number[] = [];
    for (const index of dirs) {
      visible.push(index);
      if (opaque.has(this.hostOf(index, rel))) break;
    }
    return { stats: stats[top]!, host: this.hostOf(candidates[top], rel), layers: visible };
  }

  private hostOf(index: number, rel: string): string {
    return rel === '' ? this.layers[index] : join(this.layers[index], rel);
  }
}
