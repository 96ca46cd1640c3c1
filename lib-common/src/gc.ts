/**
 * Garbage collection of the store (img-prune, img-rm --prune): mark what is
 * needed, sweep the rest, report every freed object.
 *
 * Roots: every index.json entry (with `all`, only those a container uses: the
 * others' references are removed first, as `docker image prune -a`), the
 * images containers use (running or stopped, given by the caller, since the
 * container folder is not core), and the layer directories mounted as overlay
 * lower dirs right now (/proc/self/mountinfo), or named as lower dirs of the
 * root mount in a container's bundle (config.json: the runtime mounts that one
 * in the container's mount namespace, out of our sight; mountedChains), so a
 * container whose state cannot be read still keeps its layers. From a root the mark follows
 * index → child manifests → config and layer blobs, and config diff IDs →
 * chain IDs → layers/<chain hex>.
 *
 * Swept: blobs nobody marked, layer dirs of unmarked chains, staging dirs
 * (`layers/.tmp-*`) and temporary blob files whose process is gone, ingest/
 * partial downloads whose lock no live process holds, l/ short links whose
 * target is gone, flattened/ registrations whose tree is gone, layers
 * img-build was packing in tmp/ when it died (`tmp/layer-<owner token>.tmp`), finished
 * containers ctr-spawn left in its trash (`tmp/trash-<id>`),
 * temporary files of index.json, oci-layout and flattened/ registrations whose
 * process is gone, and leftovers of an earlier interrupted collection (`layers/.gc-*`).
 *
 * Build cache (img-build): every `build-cache/<key hex>.json` entry is a root
 * too: the blobs and chain IDs it lists stay. An entry that does not parse,
 * lists something that is not a sha256 digest, names a blob that is gone, or
 * whose file name is not `<64 hex>.json` is removed first (a cache hit on it
 * could only fail); a dead writer's temporary file goes too. With `buildCache`
 * every entry is removed before the mark, so what only the cache kept goes,
 * and so are the context content hashes in `build-hashes/`.
 * The entries' lists are digests checked by pattern, never paths, so a forged
 * entry cannot name anything outside the store.
 *
 * Concurrency: the whole run holds the gc lock after every lease has ended
 * (lease.ts), and index.json's lock while it marks and sweeps, so no pull or
 * unpack is in flight and none starts. A layer dir is renamed aside before it
 * is removed, so nobody sees a half-removed layer under its chain ID.
 *
 * Failure: ERR_STORE_LOCKED when the locks or leases outlast the timeout;
 * ERR_STORE_CORRUPT for an index.json that is not an index; a filesystem error
 * while removing stops the run (what was reported as freed is gone, the rest
 * stays; the next run goes on). A blob that cannot be read or parsed while
 * marking is kept (and warned about), never a reason to delete more.
 */
import { lstat, readdir, readFile, readlink, realpath, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { chainIDs, randomHex, SHA256_DIGEST, SHA256_HEX } from './digest.js';
import { acquireGcLock } from './lease.js';
import { processAlive, tokenAlive, withLock } from './lock.js';
import type { Descriptor } from './records.js';
import { FUSE_LOWERDIRS_FILE, IMPORT_STAGING_PREFIX, isReadOnlyStore, readSmallRegularFile, REF_NAME_ANNOTATION, type Store } from './store.js';

/** What the containers of the store need: read by the caller once the gc holds its locks. */
export interface ContainerRoots {
  /** Manifest (or index) digests of the images containers were made from. */
  images: string[];
  /** References of containers whose state names no digest. */
  refs?: string[];
}

export type FreedKind = 'blob' | 'layer' | 'staging' | 'ingest' | 'link' | 'flattened' | 'temp' | 'build-cache';

/** One object the collection removed (or, in a dry run, would remove). */
export interface FreedRecord {
  type: 'freed';
  v: 1;
  kind: FreedKind;
  /** Store-relative path of what was removed. */
  path: string;
  /** Blobs and ingest files. */
  digest?: string;
  /** Layer dirs. */
  chainID?: string;
  /** Flattened registrations: the tree that is gone. */
  dir?: string;
  /** Build-cache entries: the step's cache key (`sha256:<hex>` from the entry's name). */
  key?: string;
  /** Bytes on disk. */
  size: number;
  store: string;
}

/** A reference the collection removed (`all`), as img-rm reports one. */
export interface UntaggedRecord {
  type: 'untagged';
  v: 1;
  ref: string;
  digest: string;
  store: string;
}

/** The end of a collection. */
export interface TotalRecord {
  type: 'total';
  v: 1;
  /** Bytes freed (or that would be, dry run). */
  size: number;
  /** Objects freed. */
  count: number;
  untagged: number;
  dryRun: boolean;
  store: string;
}

/** How gc sweeps ctr-spawn's trash: `sweep` calls `remove` for each trash dir it may remove (nothing mounted below, no symlink). */
export interface TrashSweeper {
  sweep(remove: (dir: string) => Promise<void>): Promise<unknown>;
  remove(dir: string): Promise<void>;
}

export interface GcOptions {
  /** Also remove the references of images no container uses. */
  all?: boolean;
  /** Report, remove nothing. */
  dryRun?: boolean;
  /** Remove every build-cache entry (img-build's step cache) before the mark. */
  buildCache?: boolean;
  /**
   * ctr-spawn's trash (`tmp/trash-<id>`: overlay/mount.ts sweepTrash and removeTree, overlay code the core
   * does not import), swept as temps when given: img-prune's. Without it the trash is left alone (img-fsck:
   * it is the normal state between runs, not damage).
   */
  trash?: TrashSweeper;
  containerRoots: () => Promise<ContainerRoots>;
  onUntagged?: (record: UntaggedRecord) => Promise<void>;
  onFreed?: (record: FreedRecord) => Promise<void>;
  warn?: (message: string) => void;
  /** Called when in-flight pulls or unpacks are waited for. */
  onWait?: (pids: number[]) => void;
  timeoutMs?: number;
}

/** The largest manifest or index the mark reads; more is not one (a registry caps manifests at 4 MiB). */
export const MAX_MANIFEST_BYTES = 8 * 1024 * 1024;

/** What the mark found needed: blob hexes and chain hexes. */
export interface Marks {
  blobs: Set<string>;
  chains: Set<string>;
  /** Manifest-level digests reached from each root digest (itself, and an index's children). */
  manifests: Set<string>;
}

export function emptyMarks(): Marks {
  return { blobs: new Set(), chains: new Set(), manifests: new Set() };
}

/** Reads a small JSON blob; undefined when it is missing, too large, not JSON or not its digest. */
async function readJson(store: Store, digest: string, warn: (m: string) => void): Promise<Record<string, unknown> | undefined> {
  try {
    const info = await stat(store.blobPath(digest));
    if (info.size > MAX_MANIFEST_BYTES) return undefined;
    const value = JSON.parse((await store.readBlob(digest)).toString('utf8')) as unknown;
    return value && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT' && !(error instanceof SyntaxError)) warn(`keeping ${digest}: ${(error as Error).message}`);
    return undefined;
  }
}

function descriptorDigests(value: unknown): string[] {
  if (!Array.isArray(value)) return [];
  return value.map((d) => (d as Descriptor | null)?.digest).filter((d): d is string => typeof d === 'string' && SHA256_DIGEST.test(d));
}

/**
 * Marks `digest` and what it needs: an index's child manifests, a manifest's
 * config and layers, the chain IDs of its config's diff IDs. Blobs missing
 * from the store are marked all the same (harmless) and not followed.
 */
export async function markImage(store: Store, digest: string, marks: Marks, warn: (m: string) => void = () => undefined, depth = 0): Promise<void> {
  if (!SHA256_DIGEST.test(digest)) return;
  const hex = digest.slice(7);
  if (marks.blobs.has(hex)) return;
  marks.blobs.add(hex);
  marks.manifests.add(digest);
  const parsed = await readJson(store, digest, warn);
  if (!parsed) return;
  // An index of indexes is legal; a cycle is impossible with digests, a very deep nest is hostile.
  if (depth < 8) for (const child of descriptorDigests(parsed.manifests)) await markImage(store, child, marks, warn, depth + 1);
  // Artifact manifests may carry `blobs`; image manifests `config` and `layers`.
  for (const blob of [...descriptorDigests(parsed.layers), ...descriptorDigests(parsed.blobs)]) marks.blobs.add(blob.slice(7));
  const configDigest = (parsed.config as Descriptor | null)?.digest;
  if (typeof configDigest !== 'string' || !SHA256_DIGEST.test(configDigest)) return;
  marks.blobs.add(configDigest.slice(7));
  const config = await readJson(store, configDigest, warn);
  const diffIDs = (config?.rootfs as { diff_ids?: unknown } | undefined)?.diff_ids;
  if (!Array.isArray(diffIDs) || !diffIDs.every((d) => typeof d === 'string' && SHA256_DIGEST.test(d))) return;
  for (const chain of chainIDs(diffIDs as string[])) marks.chains.add(chain.slice(7));
}

/** The manifest-level digests of an image (the entry's own, and its children when it is an index). */
export async function imageDigests(store: Store, digest: string): Promise<Set<string>> {
  const marks = emptyMarks();
  await markImage(store, digest, marks);
  return marks.manifests;
}

/** Splits an overlay lowerdir option on its unescaped colons. */
export function splitLowerdir(option: string): string[] {
  const parts: string[] = [];
  let current = '';
  for (let i = 0; i < option.length; i++) {
    const c = option[i];
    if (c === '\\' && i + 1 < option.length) current += option[++i];
    else if (c === ':') {
      parts.push(current);
      current = '';
    } else current += c;
  }
  parts.push(current);
  return parts.filter((p) => p !== '');
}

/** Decodes mountinfo's octal escapes (`\040` for a space). */
function unescapeOctal(text: string): string {
  return text.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

/** The lowerdir options of the overlay mounts in a mountinfo text, each with the mount point. */
export function overlayLowerdirs(mountinfo: string): { target: string; lowerdirs: string[] }[] {
  const found: { target: string; lowerdirs: string[] }[] = [];
  for (const line of mountinfo.split('\n')) {
    const [before, after] = line.split(' - ');
    if (!after) continue;
    const [fstype, , superOptions = ''] = after.split(' ');
    if (fstype !== 'overlay') continue;
    const option = superOptions.split(',').find((o) => o.startsWith('lowerdir='));
    if (!option) continue;
    found.push({ target: unescapeOctal(before.split(' ')[4] ?? ''), lowerdirs: splitLowerdir(unescapeOctal(option.slice('lowerdir='.length))) });
  }
  return found;
}

/**
 * The lower dirs of the store's fuse-overlayfs mounts (rootless): mountinfo
 * does not show them, so overlay/mount.ts wrote them beside the mount point
 * (`containers/<id>/lowerdirs.json`). A forged list only keeps more layers.
 */
async function fuseOverlayLowerdirs(store: Store, mountinfo: string): Promise<{ target: string; lowerdirs: string[] }[]> {
  const containersReal = await realpath(store.containersDir).catch(() => resolve(store.containersDir));
  const found: { target: string; lowerdirs: string[] }[] = [];
  for (const line of mountinfo.split('\n')) {
    const [before, after] = line.split(' - ');
    if (after?.split(' ')[0] !== 'fuse.fuse-overlayfs') continue;
    const target = unescapeOctal(before.split(' ')[4] ?? '');
    const containerDir = dirname(target);
    if (basename(target) !== 'merged' || dirname(containerDir) !== containersReal) continue;
    const list: unknown = await readFile(join(containerDir, FUSE_LOWERDIRS_FILE), 'utf8')
      .then((text) => JSON.parse(text))
      .catch(() => undefined);
    if (Array.isArray(list)) found.push({ target, lowerdirs: list.filter((dir): dir is string => typeof dir === 'string') });
  }
  return found;
}

/** The largest bundle config.json read for its root mount; ctr-spawn writes a few KiB. */
export const MAX_BUNDLE_CONFIG_BYTES = 1024 * 1024;

/**
 * The lower dirs of an OCI runtime spec's root mount: the `lowerdir=` option
 * of the first mount whose destination is "/" (overlay/mount.ts
 * runtimeRootMount), [] for anything else (not JSON, no such mount). Pure.
 */
export function specRootLowerdirs(text: string): string[] {
  let spec: unknown;
  try {
    spec = JSON.parse(text);
  } catch {
    return [];
  }
  const mounts = (spec as { mounts?: unknown } | null)?.mounts;
  if (!Array.isArray(mounts)) return [];
  const root = mounts.find((m) => (m as { destination?: unknown } | null)?.destination === '/') as { options?: unknown } | undefined;
  if (!Array.isArray(root?.options)) return [];
  const option = root.options.find((o): o is string => typeof o === 'string' && o.startsWith('lowerdir='));
  return option === undefined ? [] : splitLowerdir(option.slice('lowerdir='.length));
}

/**
 * The lower dirs of the overlays the OCI runtime mounts itself (ctr-spawn's
 * foreground run: runc mounts the root inside the container's mount
 * namespace, where /proc/self/mountinfo does not show it), from each
 * container's bundle config.json. Read as hostile: a container entry that is
 * not a directory, a config.json that is not a small regular file or not a
 * spec names nothing; what it names counts only inside layers/ (mountedChains).
 */
async function bundleLowerdirs(store: Store): Promise<{ target: string; lowerdirs: string[] }[]> {
  const found: { target: string; lowerdirs: string[] }[] = [];
  for (const name of await names(store.containersDir).catch(() => [] as string[])) {
    const dir = join(store.containersDir, name);
    if (!(await lstat(dir).catch(() => undefined))?.isDirectory()) continue;
    const text = await readSmallRegularFile(join(dir, 'config.json'), MAX_BUNDLE_CONFIG_BYTES);
    if (text !== undefined) found.push({ target: dir, lowerdirs: specRootLowerdirs(text) });
  }
  return found;
}

/**
 * Chain hexes of the store's layer dirs mounted as lower dirs now: overlays in
 * the mount table, fuse-overlayfs mounts (their lowerdirs.json), and the root
 * mounts containers' bundles hand to the runtime (config.json; mounted out of
 * our sight, see bundleLowerdirs). Relative lower dirs are short links under
 * l/ (overlay/mount.ts mounts from there). A lower dir that does not resolve
 * inside layers/ names nothing.
 */
export async function mountedChains(store: Store, mountinfo?: string): Promise<Set<string>> {
  const text = mountinfo ?? (await readFile('/proc/self/mountinfo', 'utf8').catch(() => ''));
  const layersReal = await realpath(store.layersDir).catch(() => resolve(store.layersDir));
  const chains = new Set<string>();
  const mounts = [...overlayLowerdirs(text), ...(await fuseOverlayLowerdirs(store, text)), ...(await bundleLowerdirs(store))];
  for (const { lowerdirs } of mounts) {
    for (const dir of lowerdirs) {
      const real = await realpath(resolve(store.linksDir, dir)).catch(() => resolve(store.linksDir, dir));
      if (!real.startsWith(`${layersReal}/`)) continue;
      const hex = real.slice(layersReal.length + 1).split('/')[0];
      if (SHA256_HEX.test(hex)) chains.add(hex);
    }
  }
  return chains;
}

/** Bytes a tree takes on disk (blocks, hard links once), without following symlinks. */
export async function diskUsage(path: string): Promise<number> {
  const seen = new Set<string>();
  let total = 0;
  const walk = async (p: string): Promise<void> => {
    let info;
    try {
      info = await lstat(p, { bigint: true });
    } catch {
      return;
    }
    const key = `${info.dev}:${info.ino}`;
    if (seen.has(key)) return;
    seen.add(key);
    total += Number(info.blocks) * 512;
    if (!info.isDirectory()) return;
    const names = await readdir(p).catch(() => [] as string[]);
    for (const name of names) await walk(join(p, name));
  };
  await walk(path);
  return total;
}

async function names(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir)).sort();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT' || (error as NodeJS.ErrnoException).code === 'ENOTDIR') return [];
    throw error;
  }
}

/** Whether a live process holds lock `name` of the store (lock.ts's directory of owner tokens). */
async function lockHeld(store: Store, name: string): Promise<boolean> {
  return (await names(store.lockPath(name))).some((token) => tokenAlive(token));
}

/**
 * Collects the store's garbage (see the top of this file). Resolves to the
 * total; every removed object and reference is reported through the callbacks
 * first.
 */
export async function collectGarbage(store: Store, options: GcOptions): Promise<TotalRecord> {
  const warn = options.warn ?? (() => undefined);
  const dryRun = Boolean(options.dryRun);
  const total: TotalRecord = { type: 'total', v: 1, size: 0, count: 0, untagged: 0, dryRun, store: store.root };
  // A dry run of a read-only store (img-fsck) has no writer to wait for and could not take a lock there.
  const unlocked = dryRun && (await isReadOnlyStore(store.root));
  // Not init(): a dry run creates nothing but its lock.
  if (!unlocked) await store.tighten();
  const gc = unlocked ? undefined : await acquireGcLock(store, { timeoutMs: options.timeoutMs, onWait: options.onWait });
  const underIndexLock = <T>(fn: () => Promise<T>) => (unlocked ? fn() : withLock(store.lockPath('index'), fn));
  try {
    return await underIndexLock(async () => {
      const roots = await options.containerRoots();
      const marks = emptyMarks();
      const freed = async (record: Omit<FreedRecord, 'type' | 'v' | 'store'>, remove: () => Promise<unknown>) => {
        if (!dryRun) await remove();
        total.size += record.size;
        total.count++;
        await options.onFreed?.({ type: 'freed', v: 1, ...record, store: store.root });
      };
      await markBuildCache(store, marks, { removeAll: Boolean(options.buildCache) }, freed);
      for (const digest of roots.images) await markImage(store, digest, marks, warn);
      const containerImages = new Set(marks.manifests);

      const index = await store.readIndex();
      const kept: unknown[] = [];
      for (const entry of index.manifests as unknown[]) {
        const d = entry as Descriptor | null;
        const digest = d?.digest;
        const ref = d?.annotations?.[REF_NAME_ANNOTATION];
        // Malformed entries are another tool's business: kept, and their digest marked when it is one.
        if (typeof digest !== 'string' || !SHA256_DIGEST.test(digest)) {
          kept.push(entry);
          continue;
        }
        if (options.all && roots.refs?.includes(ref ?? '') !== true) {
          const reached = await imageDigests(store, digest);
          if (![...reached].some((m) => containerImages.has(m))) {
            total.untagged++;
            await options.onUntagged?.({ type: 'untagged', v: 1, ref: ref ?? digest, digest, store: store.root });
            continue;
          }
        }
        kept.push(entry);
        await markImage(store, digest, marks, warn);
      }
      if (total.untagged > 0 && !dryRun) {
        await store.writeFileAtomic(join(store.root, 'index.json'), `${JSON.stringify({ ...index, manifests: kept }, null, 2)}\n`);
      }
      for (const chain of await mountedChains(store)) marks.chains.add(chain);

      const removedChains = await sweepLayers(store, marks, freed);
      await sweepBlobs(store, marks, freed);
      await sweepIngest(store, freed);
      await sweepLinks(store, removedChains, freed);
      await sweepFlattened(store, freed);
      await sweepTmp(store, freed, options.trash);
      await sweepAtomicTemps(store, freed);
      return total;
    });
  } finally {
    await gc?.release();
  }
}

type Free = (record: Omit<FreedRecord, 'type' | 'v' | 'store'>, remove: () => Promise<unknown>) => Promise<void>;

/** Whether process `pid` (a number in a name) is gone. */
function pidGone(text: string | undefined): boolean {
  const pid = Number(text);
  return !Number.isSafeInteger(pid) || pid <= 0 || !processAlive(pid);
}

/** img-build's step cache: `<store>/build-cache/<key hex>.json`. */
export const BUILD_CACHE_DIR = 'build-cache';
/** img-build's content hashes of context files, by stat: an accelerator, removed with the build cache. */
export const BUILD_HASHES_DIR = 'build-hashes';
/** The largest cache entry read; a real one lists a few dozen digests. */
const MAX_CACHE_ENTRY_BYTES = 1024 * 1024;

/** The blobs and chains a build-cache entry keeps, or undefined when it is not a valid entry. */
export function parseBuildCacheEntry(text: string): { blobs: string[]; chainIDs: string[] } | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) return undefined;
  const { version, blobs, chainIDs: chains } = value as { version?: unknown; blobs?: unknown; chainIDs?: unknown };
  const digests = (list: unknown): list is string[] => Array.isArray(list) && list.every((d) => typeof d === 'string' && SHA256_DIGEST.test(d));
  // Digests only: a `../` or an absolute path in either list makes the whole entry invalid.
  if (version !== 1 || !digests(blobs) || !digests(chains ?? [])) return undefined;
  return { blobs, chainIDs: (chains ?? []) as string[] };
}

/**
 * Marks what the build cache keeps, and removes (through `free`) the entries
 * that are invalid, name a missing blob, or, with removeAll, all of them.
 */
async function markBuildCache(store: Store, marks: Marks, options: { removeAll: boolean }, free: Free): Promise<void> {
  const dir = join(store.root, BUILD_CACHE_DIR);
  for (const name of await names(dir)) {
    const path = join(dir, name);
    const info = await lstat(path).catch(() => undefined);
    if (!info) continue;
    const relative = `${BUILD_CACHE_DIR}/${name}`;
    const entryName = /^([a-f0-9]{64})\.json$/.exec(name);
    if (!entryName) {
      // Store.writeFileAtomic's `<name>.<pid>.<rand>.tmp`: a live writer's stays until it renames it.
      const temp = /^[a-f0-9]{64}\.json\.(\d+)\.[a-f0-9]+\.tmp$/.exec(name);
      if (temp && !pidGone(temp[1])) continue;
      await free({ kind: temp ? 'temp' : 'build-cache', path: relative, size: info.size }, () => rm(path, { recursive: true, force: true }));
      continue;
    }
    const key = `sha256:${entryName[1]}`;
    const remove = () => free({ kind: 'build-cache', path: relative, key, size: info.size }, () => rm(path, { recursive: true, force: true }));
    if (options.removeAll || !info.isFile() || info.size > MAX_CACHE_ENTRY_BYTES) {
      await remove();
      continue;
    }
    const entry = parseBuildCacheEntry(await readFile(path, 'utf8').catch(() => ''));
    let complete = entry !== undefined;
    for (const blob of entry?.blobs ?? []) {
      if (!complete) break;
      complete = (await lstat(store.blobPath(blob)).catch(() => undefined))?.isFile() === true;
    }
    if (!entry || !complete) {
      await remove();
      continue;
    }
    for (const blob of entry.blobs) marks.blobs.add(blob.slice(7));
    for (const chain of entry.chainIDs) marks.chains.add(chain.slice(7));
  }
  // The context files' content hashes (img-build's hash-cache.ts) only speed up the next build: they go with the cache.
  if (!options.removeAll) return;
  const hashes = join(store.root, BUILD_HASHES_DIR);
  for (const name of await names(hashes)) {
    const info = await lstat(join(hashes, name)).catch(() => undefined);
    if (info)
      await free({ kind: 'build-cache', path: `${BUILD_HASHES_DIR}/${name}`, size: info.size }, () => rm(join(hashes, name), { recursive: true, force: true }));
  }
}

/** Resolves to the chain hexes of the layer dirs removed (or, dry run, reported). */
async function sweepLayers(store: Store, marks: Marks, free: Free): Promise<Set<string>> {
  const removed = new Set<string>();
  for (const name of await names(store.layersDir)) {
    const path = join(store.layersDir, name);
    if (SHA256_HEX.test(name)) {
      if (marks.chains.has(name)) continue;
      const size = await diskUsage(path);
      removed.add(name);
      await free({ kind: 'layer', path: `layers/${name}`, chainID: `sha256:${name}`, size }, async () => {
        // Aside first: a reader sees the layer whole or not at all.
        const aside = join(store.layersDir, `.gc-${name}-${randomHex(4)}`);
        await rename(path, aside);
        await rm(aside, { recursive: true, force: true });
      });
    } else if (name.startsWith('.gc-') || (name.startsWith('.tmp-') && pidGone(name.split('-')[2]))) {
      // .tmp-<chain hex>-<pid>-<rand>[-old]: layer-unpack's staging; .gc-*: ours, from a run that was interrupted.
      await free({ kind: 'staging', path: `layers/${name}`, size: await diskUsage(path) }, () => rm(path, { recursive: true, force: true }));
    }
  }
  return removed;
}

async function sweepBlobs(store: Store, marks: Marks, free: Free): Promise<void> {
  for (const name of await names(store.blobsDir)) {
    const path = join(store.blobsDir, name);
    if (SHA256_HEX.test(name)) {
      if (marks.blobs.has(name)) continue;
      const size = (await lstat(path).catch(() => undefined))?.size ?? 0;
      await free({ kind: 'blob', path: `blobs/sha256/${name}`, digest: `sha256:${name}`, size }, () => rm(path, { force: true }));
      continue;
    }
    // Store.writeFileAtomic's `<hex>.<pid>.<rand>.tmp`, left by a process that died before its rename.
    const temp = /^[a-f0-9]{64}\.(\d+)\.[a-f0-9]+\.tmp$/.exec(name);
    if (temp && pidGone(temp[1])) {
      const size = (await lstat(path).catch(() => undefined))?.size ?? 0;
      await free({ kind: 'temp', path: `blobs/sha256/${name}`, size }, () => rm(path, { force: true }));
    }
  }
}

async function sweepIngest(store: Store, free: Free): Promise<void> {
  for (const name of await names(store.ingestDir)) {
    // img-import's staging files carry their owner's token: only a dead importer's go.
    if (name.startsWith(IMPORT_STAGING_PREFIX)) {
      if (tokenAlive(name.slice(IMPORT_STAGING_PREFIX.length))) continue;
      const path = join(store.ingestDir, name);
      const size = (await lstat(path).catch(() => undefined))?.size ?? 0;
      await free({ kind: 'ingest', path: `ingest/${name}`, size }, () => rm(path, { force: true }));
      continue;
    }
    if (!SHA256_HEX.test(name) || (await lockHeld(store, `ingest-${name}`))) continue;
    const path = join(store.ingestDir, name);
    const size = (await lstat(path).catch(() => undefined))?.size ?? 0;
    await free({ kind: 'ingest', path: `ingest/${name}`, digest: `sha256:${name}`, size }, () => rm(path, { force: true }));
  }
}

/** l/<short> links whose target is gone, or is a layer dir this run removed (or, dry run, would remove). */
async function sweepLinks(store: Store, removedChains: Set<string>, free: Free): Promise<void> {
  const layersReal = await realpath(store.layersDir).catch(() => resolve(store.layersDir));
  for (const name of await names(store.linksDir)) {
    const path = join(store.linksDir, name);
    let target: string;
    try {
      target = resolve(store.linksDir, await readlink(path));
    } catch {
      continue;
    }
    // The link may point into layers/ by a path realpath no longer resolves once its layer is gone: compare by prefix too.
    const real = await realpath(target).catch(() => target);
    const inLayers = [real, target].find((p) => p.startsWith(`${layersReal}/`) || p.startsWith(`${resolve(store.layersDir)}/`));
    const hex = inLayers?.slice(inLayers.indexOf('/layers/') + '/layers/'.length).split('/')[0];
    const exists = await stat(target).then(
      () => true,
      () => false,
    );
    if (exists && !(hex !== undefined && removedChains.has(hex))) continue;
    await free({ kind: 'link', path: `l/${name}`, size: 0 }, () => rm(path, { force: true }));
  }
}

/** tmp/layer-<owner token>.tmp: a layer img-build was packing when its process died. */
async function sweepTmp(store: Store, free: Free, trash?: TrashSweeper): Promise<void> {
  // A foreground ctr-spawn's finished container dir, renamed into tmp/trash-<id> at its clean-up: a later ctr-spawn
  // sweeps it too, but a prune gives its space back now (an upper dir can be large).
  await trash?.sweep(async (dir) => free({ kind: 'temp', path: `tmp/${basename(dir)}`, size: await diskUsage(dir) }, () => trash.remove(dir)));
  for (const name of await names(store.tmpDir)) {
    const packing = /^layer-(.+)\.tmp$/.exec(name);
    if (!packing || tokenAlive(packing[1])) continue;
    const path = join(store.tmpDir, name);
    const size = (await lstat(path).catch(() => undefined))?.size ?? 0;
    await free({ kind: 'temp', path: `tmp/${name}`, size }, () => rm(path, { force: true }));
  }
}

/**
 * Store.writeFileAtomic's `<name>.<pid>.<rand>.tmp` beside index.json and oci-layout, and beside
 * flattened/ registrations, of a process that died before its rename (a SIGKILL inside the write):
 * nothing else would ever remove them.
 */
async function sweepAtomicTemps(store: Store, free: Free): Promise<void> {
  for (const dir of ['', 'flattened']) {
    for (const name of await names(join(store.root, dir))) {
      const temp = /^(?:index\.json|oci-layout|[a-f0-9]{64}\.json)\.(\d+)\.[a-f0-9]+\.tmp$/.exec(name);
      if (!temp || !pidGone(temp[1])) continue;
      const path = join(store.root, dir, name);
      const size = (await lstat(path).catch(() => undefined))?.size ?? 0;
      await free({ kind: 'temp', path: dir ? `${dir}/${name}` : name, size }, () => rm(path, { force: true }));
    }
  }
}

/** flattened/ registrations whose directory is gone or is no longer the one registered. */
async function sweepFlattened(store: Store, free: Free): Promise<void> {
  const dir = join(store.root, 'flattened');
  for (const name of await names(dir)) {
    if (!/^[a-f0-9]{64}\.json$/.test(name)) continue;
    const path = join(dir, name);
    let registration: { dir?: unknown; dev?: unknown; ino?: unknown; birth?: unknown };
    try {
      registration = JSON.parse(await readFile(path, 'utf8'));
    } catch {
      continue;
    }
    if (typeof registration?.dir !== 'string') continue;
    const now = await stat(registration.dir, { bigint: true }).catch(() => undefined);
    const same =
      now !== undefined &&
      String(now.dev) === registration.dev &&
      String(now.ino) === registration.ino &&
      (registration.birth === undefined || String(now.birthtimeNs) === registration.birth);
    if (same) continue;
    const size = (await lstat(path).catch(() => undefined))?.size ?? 0;
    await free({ kind: 'flattened', path: `flattened/${name}`, dir: registration.dir, size }, () => rm(path, { force: true }));
  }
}
