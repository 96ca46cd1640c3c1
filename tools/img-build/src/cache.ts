/**
 * The build cache: one file per step, `<store>/build-cache/<key hex>.json`,
 * naming the state the step left: the image config so far (a config blob in
 * the store: env, workdir, history, diff IDs) and the layer blobs under it.
 *
 * A step's key is sha256 of its parent's key and what the step does once
 * resolved (expanded arguments, flags, the content digest of what COPY/ADD
 * take); a FROM's key is the base image's manifest digest, `scratch`, or the
 * earlier stage's final key. So a changed step changes every key after it.
 *
 * Entries are inside the store but still checked as hostile on read: the
 * `key` must be the file's, every listed item a sha256 digest (never a path),
 * every blob present with its size, the config blob's bytes must hash to its
 * name (Store.readBlob), its diff IDs must match the layer count, and the
 * layer this step made must hash to its digest. Anything else is a miss and
 * the step runs again (the entry is then rewritten). The gc (lib-common/gc.ts)
 * keeps what `blobs` and `chainIDs` list and drops entries with a blob gone.
 */
import { open, readdir, rm } from 'node:fs/promises';
import { closeSync, constants, fstatSync, openSync, readFileSync, statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { chainIDs, digestHex, SHA256_DIGEST, sha256 } from '@conveyor/lib-common/digest';
import { processAlive } from '@conveyor/lib-common/lock';
import { mkdirClosed, type Store } from '@conveyor/lib-common/store';
import type { Descriptor } from '@conveyor/lib-common/records';
import type { ImageConfigBlob } from '@conveyor/lib-common/image';

export const BUILD_CACHE_DIR = 'build-cache';
const MAX_ENTRY_BYTES = 1024 * 1024;

/** The image a stage has built so far: its config (with history and diff IDs) and its layers, bottom first. */
export interface BuildState {
  config: ImageConfigBlob & { history?: HistoryEntry[] };
  layers: Descriptor[];
}

export interface HistoryEntry {
  created?: string;
  created_by?: string;
  author?: string;
  comment?: string;
  empty_layer?: boolean;
}

export interface CacheEntry {
  version: 1;
  key: string;
  createdAt: string;
  /** Every blob the state needs: its layers and its config. */
  blobs: string[];
  /** The chain IDs of its layers (unpacked dirs a later step may mount). */
  chainIDs: string[];
  /** The config blob holding the state. */
  config: Descriptor;
  layers: Descriptor[];
  /** The layer this step made, when it made one (hashed on every hit). */
  newLayer?: string;
}

/** A step's cache key: sha256 over the parent key and the step's resolved description (canonical JSON). */
export function stepKey(parent: string, step: unknown): string {
  return sha256(JSON.stringify([parent, step]));
}

export function entryPath(store: Store, key: string): string {
  return join(store.root, BUILD_CACHE_DIR, `${digestHex(key)}.json`);
}

/** Whether the store has the blob with this size (Store.hasBlob, synchronously). */
function hasBlobSync(store: Store, d: Descriptor): boolean {
  try {
    return statSync(store.blobPath(d.digest)).size === d.size;
  } catch {
    return false;
  }
}

/** A small JSON blob, its bytes checked against its digest (Store.readJsonBlob, synchronously); throws on any problem. */
function readJsonBlobSync<T>(store: Store, digest: string): T {
  const data = readFileSync(store.blobPath(digest));
  if (sha256(data) !== digest) throw new Error(`blob ${digest} does not hold its digest`);
  return JSON.parse(data.toString('utf8')) as T;
}

/**
 * The state a cache entry holds, or undefined (a miss) when it is absent, malformed, forged or incomplete.
 * Read synchronously: a cached build reads a few small files per step from the page cache, where a
 * thread-pool round trip for each costs more than the read (and a wait for a CPU on a busy machine).
 */
export async function readCacheEntry(store: Store, key: string): Promise<BuildState | undefined> {
  let text: string;
  try {
    // O_NOFOLLOW: an entry planted as a symlink is not followed out of the store.
    const fd = openSync(entryPath(store, key), constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      const info = fstatSync(fd);
      if (!info.isFile() || info.size > MAX_ENTRY_BYTES) return undefined;
      text = readFileSync(fd, 'utf8');
    } finally {
      closeSync(fd);
    }
  } catch {
    return undefined;
  }
  let entry: CacheEntry;
  try {
    entry = JSON.parse(text) as CacheEntry;
  } catch {
    return undefined;
  }
  if (!entry || typeof entry !== 'object' || entry.version !== 1 || entry.key !== key) return undefined;
  const isDescriptor = (d: unknown): d is Descriptor =>
    !!d &&
    typeof d === 'object' &&
    typeof (d as Descriptor).mediaType === 'string' &&
    typeof (d as Descriptor).digest === 'string' &&
    SHA256_DIGEST.test((d as Descriptor).digest) &&
    Number.isSafeInteger((d as Descriptor).size) &&
    (d as Descriptor).size >= 0;
  if (!isDescriptor(entry.config) || !Array.isArray(entry.layers) || !entry.layers.every(isDescriptor)) return undefined;
  for (const d of [entry.config, ...entry.layers]) if (!hasBlobSync(store, d)) return undefined;
  let config: BuildState['config'];
  try {
    config = readJsonBlobSync(store, entry.config.digest);
  } catch {
    return undefined;
  }
  const diffIDs = config?.rootfs?.diff_ids;
  if (!Array.isArray(diffIDs) || diffIDs.length !== entry.layers.length || !diffIDs.every((d) => typeof d === 'string' && SHA256_DIGEST.test(d))) {
    return undefined;
  }
  if (entry.newLayer !== undefined) {
    const made = entry.layers.find((l) => l.digest === entry.newLayer);
    if (!made || !(await blobHashes(store, made.digest))) return undefined;
  }
  return { config, layers: entry.layers };
}

/** Blobs up to this size are hashed from one synchronous read (the layers of most steps); larger ones are streamed. */
const WHOLE_READ_BYTES = 4 * 1024 * 1024;

/** Whether the blob file's bytes hash to its name. */
async function blobHashes(store: Store, digest: string): Promise<boolean> {
  try {
    const fd = openSync(store.blobPath(digest), constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      if (fstatSync(fd).size <= WHOLE_READ_BYTES) return sha256(readFileSync(fd)) === digest;
    } finally {
      closeSync(fd);
    }
    const handle = await open(store.blobPath(digest), constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      const hash = createHash('sha256');
      for await (const chunk of handle.createReadStream({ autoClose: false })) hash.update(chunk as Buffer);
      return `sha256:${hash.digest('hex')}` === digest;
    } finally {
      await handle.close();
    }
  } catch {
    return false;
  }
}

/**
 * Records `state` under `key`: its config as a blob, then the entry written
 * atomically. `newLayer` is the layer the step made, if any.
 */
export async function writeCacheEntry(store: Store, key: string, state: BuildState, newLayer: string | undefined, now: Date): Promise<void> {
  const config = await writeConfigBlob(store, state.config);
  const diffIDs = state.config.rootfs?.diff_ids ?? [];
  const entry: CacheEntry = {
    version: 1,
    key,
    createdAt: now.toISOString(),
    blobs: [...new Set([...state.layers.map((l) => l.digest), config.digest])],
    chainIDs: chainIDs(diffIDs),
    config,
    layers: state.layers,
    ...(newLayer ? { newLayer } : {}),
  };
  await mkdirClosed(join(store.root, BUILD_CACHE_DIR));
  await removeDeadEntryTemps(store);
  await store.writeFileAtomic(entryPath(store, key), JSON.stringify(entry) + '\n');
}

/** Roots whose dead writers' entry temp files were removed by this process already. */
const swept = new Set<string>();

/**
 * Once per store and process: removes the temp files (`<key hex>.json.<pid>.<rand>.tmp`) of
 * builds that died (SIGKILL) inside an entry's atomic write, so the next build cleans up after a
 * crashed one instead of leaving them to img-prune. A live writer's (its pid alive) stay.
 */
async function removeDeadEntryTemps(store: Store): Promise<void> {
  if (swept.has(store.root)) return;
  swept.add(store.root);
  const dir = join(store.root, BUILD_CACHE_DIR);
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const temp = /^[a-f0-9]{64}\.json\.(\d+)\.[a-f0-9]+\.tmp$/.exec(name);
    if (temp && !processAlive(Number(temp[1]))) await rm(join(dir, name), { force: true });
  }
}

/** Writes an image config blob (canonical JSON as we write it) and returns its descriptor. */
export async function writeConfigBlob(store: Store, config: ImageConfigBlob): Promise<Descriptor> {
  const data = Buffer.from(JSON.stringify(config));
  const digest = sha256(data);
  await store.writeBlob(digest, data);
  return { mediaType: 'application/vnd.oci.image.config.v1+json', digest, size: data.length };
}
