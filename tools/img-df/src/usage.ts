/**
 * What the store holds and what is reclaimable, as `docker system df` shows
 * it: one `df` record per kind.
 *
 *   images      index.json's images; active: those a container was made from;
 *               size: the blobs on disk; reclaimable: the blobs img-prune -a
 *               would delete (lib-common/gc in dry-run mode, the same mark)
 *   layers      unpacked layer dirs; active: mounted under a container now;
 *               reclaimable: those img-prune -a would delete (and staging)
 *   containers  container dirs; active: running; size: their dirs (the
 *               writable upper layer, logs); reclaimable: the stopped ones'
 *   build-cache img-build's step cache entries (`build-cache/<key>.json`);
 *               active: 0 (an entry is used only while a build reads it);
 *               size: the entries and the blobs and unpacked layers they
 *               list; reclaimable: the entries and what only they keep (a
 *               second dry run removing every entry, as img-prune -a does,
 *               less the first: images + layers + build cache = img-prune -a)
 *
 * Library code: reads the store, writes nothing but the gc lock its dry run
 * takes (so the figures are not those of a half-done pull: the dry run waits
 * for in-flight pulls and unpacks, like img-prune). Fails with the gc's
 * ERR_STORE_LOCKED when they outlast timeoutMs, ERR_STORE_CORRUPT for an
 * index.json that is not an index.
 */
import { lstat, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { imageRoots, isRunning, listContainers } from '@conveyor/lib-common/container/state';
import {
  BUILD_CACHE_DIR,
  collectGarbage,
  diskUsage,
  imageDigests,
  mountedChains,
  parseBuildCacheEntry,
  type ContainerRoots,
  type FreedKind,
  type FreedRecord,
} from '@conveyor/lib-common/gc';
import { digestHex, SHA256_HEX } from '@conveyor/lib-common/digest';
import { RECORD_VERSION } from '@conveyor/lib-common/records';
import { REF_NAME_ANNOTATION, type Store } from '@conveyor/lib-common/store';

export type DfKind = 'images' | 'layers' | 'containers' | 'build-cache';

export interface DfRecord {
  type: 'df';
  v: typeof RECORD_VERSION;
  kind: DfKind;
  /** How many there are. */
  total: number;
  /** How many are in use (see the top of this file). */
  active: number;
  /** Bytes on disk. */
  size: number;
  /** Bytes a prune would free. */
  reclaimable: number;
  store: string;
}

export interface DfOptions {
  warn?: (message: string) => void;
  /** How long the dry run waits for in-flight pulls and unpacks. */
  timeoutMs?: number;
  onWait?: (pids: number[]) => void;
}

const IMAGE_KINDS: ReadonlySet<FreedKind> = new Set(['blob', 'temp', 'ingest']);
const LAYER_KINDS: ReadonlySet<FreedKind> = new Set(['layer', 'staging']);

async function entries(dir: string): Promise<string[]> {
  return readdir(dir).catch(() => [] as string[]);
}

export async function storeUsage(store: Store, options: DfOptions = {}): Promise<DfRecord[]> {
  const warn = options.warn ?? (() => undefined);
  const containers = await listContainers(store, { warn });
  const roots: ContainerRoots = imageRoots(containers);
  let running = 0;
  let containerSize = 0;
  let stoppedSize = 0;
  for (const entry of containers) {
    const size = await diskUsage(entry.dir);
    containerSize += size;
    if (entry.state && isRunning(entry.state)) running++;
    else stoppedSize += size;
  }

  let imageReclaim = 0;
  let layerReclaim = 0;
  let pruneAll = 0;
  // `img-prune -a` as a dry run, with or without the build cache: what each record would free.
  const pruneDryRun = (buildCache: boolean, onFreed: (record: FreedRecord) => void) =>
    collectGarbage(store, {
      all: true,
      buildCache,
      dryRun: true,
      timeoutMs: options.timeoutMs,
      onWait: options.onWait,
      warn,
      containerRoots: async () => roots,
      onFreed: async (record) => onFreed(record),
    });
  await pruneDryRun(false, (record) => {
    pruneAll += record.size;
    if (IMAGE_KINDS.has(record.kind)) imageReclaim += record.size;
    else if (LAYER_KINDS.has(record.kind)) layerReclaim += record.size;
  });
  // The same dry run with every build-cache entry gone: what only the cache keeps is the difference.
  let pruneWithCache = 0;
  await pruneDryRun(true, (record) => {
    pruneWithCache += record.size;
  });
  const cache = await buildCacheUsage(store);

  const indexed = await store.indexEntries();
  const used = new Set<string>();
  for (const digest of roots.images) for (const m of await imageDigests(store, digest)) used.add(m);
  let activeImages = 0;
  for (const { entry } of indexed) {
    const reached = await imageDigests(store, entry.digest);
    if ([...reached].some((m) => used.has(m)) || roots.refs!.some((ref) => entry.annotations?.[REF_NAME_ANNOTATION] === ref)) activeImages++;
  }

  let blobSize = 0;
  for (const name of await entries(store.blobsDir)) blobSize += (await lstat(join(store.blobsDir, name)).catch(() => undefined))?.size ?? 0;
  const layerNames = (await entries(store.layersDir)).filter((name) => SHA256_HEX.test(name));
  const mounted = await mountedChains(store);
  const layerSize = await diskUsage(store.layersDir).catch(() => 0);

  const record = (kind: DfKind, total: number, active: number, size: number, reclaimable: number): DfRecord => ({
    type: 'df',
    v: RECORD_VERSION,
    kind,
    total,
    active,
    size,
    reclaimable: Math.min(reclaimable, size),
    store: store.root,
  });
  return [
    record('images', indexed.length, activeImages, blobSize, imageReclaim),
    record('layers', layerNames.length, layerNames.filter((name) => mounted.has(name)).length, layerSize, layerReclaim),
    record('containers', containers.length, running, containerSize, stoppedSize),
    record('build-cache', cache.entries, 0, cache.size, Math.max(0, pruneWithCache - pruneAll)),
  ];
}

/**
 * The build cache's entries and their size: each entry file plus every blob
 * and unpacked layer the valid ones list, each counted once (what the cache
 * holds on to, whether or not an image shares it). Entry lists are digests
 * checked by pattern (parseBuildCacheEntry), never paths.
 */
async function buildCacheUsage(store: Store): Promise<{ entries: number; size: number }> {
  const dir = join(store.root, BUILD_CACHE_DIR);
  const blobs = new Set<string>();
  const chains = new Set<string>();
  let entries = 0;
  let size = 0;
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (!/^[a-f0-9]{64}\.json$/.test(name)) continue;
    const info = await lstat(join(dir, name)).catch(() => undefined);
    if (!info?.isFile()) continue;
    entries++;
    size += info.size;
    // Larger than any real entry (a few dozen digests): counted, not read.
    if (info.size > 1024 * 1024) continue;
    const entry = parseBuildCacheEntry(await readFile(join(dir, name), 'utf8').catch(() => ''));
    for (const blob of entry?.blobs ?? []) blobs.add(blob);
    for (const chain of entry?.chainIDs ?? []) chains.add(chain);
  }
  for (const blob of blobs) size += (await lstat(store.blobPath(blob)).catch(() => undefined))?.size ?? 0;
  for (const chain of chains) size += await diskUsage(join(store.layersDir, digestHex(chain))).catch(() => 0);
  return { entries, size };
}
