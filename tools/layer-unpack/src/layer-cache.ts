/**
 * Per-layer directories in the store, keyed by chain ID:
 *
 *   layers/<chain hex>/diff/       the layer's tree, an overlayfs lower dir
 *   layers/<chain hex>/meta.json   chainID, diffID, parentChainID, digest, size, time, ...
 *   layers/.tmp-<chain hex>-<pid>-<rand>/   a layer being unpacked (0700)
 *
 * The key must say what the directory holds, or one forged record poisons
 * every later run of another image (a `layer` record claiming that image's
 * chain ID over the attacker's blob). So the key is never taken on trust: a
 * chain ID is accepted only when it follows from the parent chain ID and the
 * diff ID (OCI image spec: bottom chainID = diffID, above it
 * sha256(parentChainID + " " + diffID)), and the diff ID is verified against
 * the blob's uncompressed bytes while unpacking, before anything is committed.
 * A layer directory therefore holds exactly the diff its chain ID names: a
 * record cannot claim another image's diff ID (the content check fails) nor
 * its chain ID with its own diff ID (the chain does not follow), and a parent
 * chain ID it makes up only yields a chain ID nobody else has. The blob
 * digest in the record is not part of the key: two compressions of one diff
 * rightly share a directory.
 *
 * A directory found in the store is reused only when its meta.json names the
 * same chain ID, diff ID and parent chain ID and is consistent in itself;
 * anything else under that name is debris or a plant and is replaced.
 *
 * A layer is unpacked into a staging directory under layers/, synced to disk
 * (its tree by a syncfs started once its last entry is written, one shared by
 * the layers that finish together: durable.ts syncFilesystemShared; its
 * meta.json by fsync) and renamed into place: the rename is the commit point, so `layers/<chain hex>` existing with
 * a valid meta.json means complete. A staging directory left by a crash or
 * kill -9 is never used and is removed by the next unpack of that chain ID
 * (or by any run, once its pid is gone). A lock per chain ID makes concurrent
 * unpacks of the same layer wait for one another, then reuse the result.
 */
// node:fs/promises through node:fs's getter: loaded when first used (a write), not by every reader of the store (issue 17).
import { existsSync, lstatSync, promises as fsp, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chainIDs, digestHex } from '@conveyor/lib-common/digest';
import { syncDir, syncDirShared, syncFile, syncFilesystemShared } from '@conveyor/lib-common/durable';
import { ConveyorError, isConveyorError, isStorageErrno } from '@conveyor/lib-common/errors';
import { withLock } from '@conveyor/lib-common/lock';
import { layerCompression } from '@conveyor/lib-common/mediatypes';
import type { LayerInfo } from '@conveyor/lib-common/records';
import { mkdirClosedTop, type Store } from '@conveyor/lib-common/store';
import type { TreeDigest } from '@conveyor/lib-common/tree-digest';
import type { Applier } from './apply/applier.js';
import type { LayerSource } from './read-layer.js';
import { explainTooLarge, layerLimits, withLimits, type ImageBudget } from './budget.js';

/** A layer and its place in the chain: what its directory's key is computed from. */
export interface ChainedLayer extends LayerInfo {
  /** Chain ID of the layer below; undefined for the bottom layer. */
  parentChainID?: string;
}

/** The chain ID a layer with this parent and diff ID has (OCI image spec, "ChainID"). */
export function expectedChainID(parentChainID: string | undefined, diffID: string): string {
  // One step of chainIDs' rule: the parent's chain ID stands where the lower diff IDs' chain would.
  return parentChainID === undefined ? chainIDs([diffID])[0] : chainIDs([parentChainID, diffID])[1];
}

export interface LayerMeta {
  chainID: string;
  diffID: string;
  /** Chain ID of the layer below; null for the bottom layer (absent in metas written before it was recorded). */
  parentChainID?: string | null;
  digest: string;
  mediaType: string;
  /** Compressed size of the blob. */
  size: number;
  /** Bytes of file content written. */
  unpackedBytes: number;
  entries: number;
  /** When it was unpacked (ISO 8601). */
  time: string;
  rootless: boolean;
  /** Rootless: owners the layer asked for (path → [uid, gid]) where not 0:0 and not applied on disk (unmapped in the user namespace). */
  owners?: Record<string, [number, number]>;
  /** Rootless: the xattr name the opaque markers use. */
  opaqueXattr: string;
  /** The tree checksum of diff/ (lib-common tree-digest), taken at commit; img-fsck recomputes it. Absent in metas written before it was recorded. */
  tree?: TreeDigest;
}

export interface EnsureOptions {
  rootless: boolean;
  /** Rootless in a user namespace: the owners applied for real (apply/applier.ts). */
  ownable?: (uid: number, gid: number) => boolean;
  /** Caps on this layer's file content bytes and entries. */
  maxBytes: number;
  maxEntries: number;
  /** The image's budget, shared with its other layers (they may use only what is left of it). */
  budget?: ImageBudget;
  warn: (message: string) => void;
  /** Threads creating files, shared by the layers unpacked at once, at least one each (default 2); 0 = inline. */
  writerThreads?: number;
  /** Our process id, to name staging directories (their owner's liveness is checked in /proc). */
  pid: number;
  onProgress?: (blobBytes: number) => void;
  /**
   * Called once the layer's files are written, before it waits for the sync that commits it
   * (not for a reused or failed layer): the caller may start unpacking another layer meanwhile,
   * whose commit then shares the next sync.
   */
  onApplied?: () => void;
  /**
   * The layer's blob is still downloading into the store's ingest/ (img-fetch's `download` record):
   * `committed` resolves once it is in blobs/, rejects when it never will be (an `error` record or
   * the input's end came first). See ensureLayer.
   */
  growing?: { committed: Promise<void> };
}

export interface EnsuredLayer {
  /** layers/<chain hex> */
  dir: string;
  /** layers/<chain hex>/diff: the overlay lower dir. */
  diffDir: string;
  reused: boolean;
  meta: LayerMeta;
}

const STAGING_PREFIX = '.tmp-';

/** Why the meta of a layer directory does not describe `layer`; undefined when it does. */
export function metaMismatch(meta: LayerMeta, layer: ChainedLayer): string | undefined {
  if (!meta || typeof meta !== 'object') return 'meta.json is not an object';
  if (meta.chainID !== layer.chainID) return `meta.json names chain ID ${JSON.stringify(meta.chainID)}`;
  if (meta.diffID !== layer.diffID) return `meta.json names diff ID ${JSON.stringify(meta.diffID)}, the record ${layer.diffID}`;
  // Metas written before the parent was recorded lack it. They are still
  // sound: the record's chain ID was recomputed from its parent and diff ID,
  // and it and the diff ID match, so the parent matches too (sha256 is not
  // invertible). Redoing them would delete lower dirs running containers use.
  if (meta.parentChainID === undefined) return undefined;
  if (meta.parentChainID !== (layer.parentChainID ?? null)) {
    return `meta.json names parent chain ID ${JSON.stringify(meta.parentChainID)}, the record ${JSON.stringify(layer.parentChainID ?? null)}`;
  }
  if (expectedChainID(meta.parentChainID ?? undefined, meta.diffID) !== meta.chainID) {
    return 'meta.json chain ID does not follow from its parent and diff ID';
  }
  return undefined;
}

type Found = { meta: LayerMeta } | { stale: string } | undefined;

/**
 * What `layers/<chain hex>` holds: a complete copy of `layer`, something else
 * (stale: why), or nothing. The directory and its diff/ must be real
 * directories: a symlink planted there would make layerDirs point anywhere.
 */
async function inspect(dir: string, layer: ChainedLayer): Promise<Found> {
  // Synchronous: two lstats and a small read from the kernel's caches on a warm run, where the promise API
  // makes each one a round trip through the thread pool (issue 17).
  let top;
  try {
    top = lstatSync(dir);
  } catch {
    return undefined;
  }
  if (!top.isDirectory()) return { stale: 'it is not a directory' };
  try {
    if (!lstatSync(join(dir, 'diff')).isDirectory()) return { stale: 'diff is not a directory' };
  } catch {
    return { stale: 'it has no diff directory' };
  }
  let meta: LayerMeta;
  try {
    meta = JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8')) as LayerMeta;
  } catch {
    // No meta.json (or a torn one): not committed by us.
    return { stale: 'it has no valid meta.json' };
  }
  const why = metaMismatch(meta, layer);
  return why === undefined ? { meta } : { stale: why };
}

function isAlive(pid: number): boolean {
  return Number.isInteger(pid) && pid > 0 && existsSync(`/proc/${pid}`);
}

/**
 * Removes staging directories whose owner is gone; with `hex`, every staging
 * directory of that chain ID (call it holding that chain ID's lock).
 */
export async function cleanStaging(store: Store, hex?: string): Promise<void> {
  let names: string[];
  try {
    // Synchronous (see inspect): every run lists layers/, and the promise API would load node:fs/promises for it.
    names = readdirSync(store.layersDir);
  } catch {
    return;
  }
  for (const name of names) {
    if (!name.startsWith(STAGING_PREFIX)) continue;
    const [, chain, pid] = name.split('-');
    const mine = hex !== undefined && chain === hex;
    if (mine || !isAlive(Number(pid))) await fsp.rm(join(store.layersDir, name), { recursive: true, force: true });
  }
}

/**
 * Makes sure the layer is unpacked in the store; reuses a complete one whose
 * meta.json matches. Refuses (ERR_INPUT_RECORD) a layer whose chain ID does
 * not follow from its parent and diff ID: callers check records first and
 * name the line; this is the last guard before the key is used.
 *
 * With `growing` (a gzip or plain tar blob over 1 MiB that is not in blobs/
 * yet) the layer is unpacked from img-fetch's ingest file as it downloads,
 * and committed only once the blob is in (`committed`). If that read fails
 * in any way (the download started over, or its file is not the layer), the
 * staging dir is dropped and the layer is unpacked from the committed blob
 * as usual, whose failure is the one reported. If `committed` rejects, the
 * layer fails with its error and nothing is committed.
 */
export async function ensureLayer(store: Store, layer: ChainedLayer, opts: EnsureOptions): Promise<EnsuredLayer> {
  const expected = expectedChainID(layer.parentChainID, layer.diffID);
  if (layer.chainID !== expected) {
    throw new ConveyorError(
      'ERR_INPUT_RECORD',
      `layer ${layer.digest}: chain ID ${layer.chainID} does not follow from its parent and diff ID (expected ${expected})`,
    );
  }
  const hex = digestHex(layer.chainID);
  const dir = store.layerDir(layer.chainID);
  const done = (meta: LayerMeta, reused: boolean): EnsuredLayer => ({ dir, diffDir: join(dir, 'diff'), reused, meta });
  const existing = await inspect(dir, layer);
  if (existing && 'meta' in existing) return done(existing.meta, true);
  // Under a store lease: an img-prune waits for this unpack (and it for a running prune),
  // so the blob it reads and the directory it commits are not swept meanwhile (lib-common/src/lease.ts).
  // The lease is the first write: a read-only store is reported there, naming the store.
  const { withLease } = await import('@conveyor/lib-common/lease');
  const unpack = async () => {
    // 0700: unpacked layers hold setuid binaries and file capabilities (CVE-2021-41091).
    // Marked the top of unrelated trees when made (store.ts mkdirClosedTop: ext4 allocation).
    await mkdirClosedTop(store.layersDir);
    return withLock(store.lockPath(`layer-${hex}`), () => unpackLocked(store, layer, opts, hex, dir, done));
  };
  return withLease(store, unpack, { onWait: () => opts.warn('waiting for img-prune to finish') });
}

async function unpackLocked(
  store: Store,
  layer: ChainedLayer,
  opts: EnsureOptions,
  hex: string,
  dir: string,
  done: (meta: LayerMeta, reused: boolean) => EnsuredLayer,
): Promise<EnsuredLayer> {
  const again = await inspect(dir, layer);
  if (again && 'meta' in again) return done(again.meta, true);
  if (again) opts.warn(`layers/${hex} is not this layer (${again.stale}): unpacking it again`);
  await cleanStaging(store, hex);
  const compression = layerCompression(layer.mediaType);
  const blob: LayerSource = { path: store.blobPath(layer.digest), compression, diffID: layer.diffID, label: layer.digest };
  const { growing } = opts;
  if (growing) {
    const { canReadGrowing } = await import('./read-layer.js');
    if (canReadGrowing(compression, layer.size) && !(await store.hasBlob(layer.digest, layer.size))) {
      // Read as it downloads: nothing of it is trusted but its diff ID, and the commit waits for the blob.
      let abandoned = false;
      growing.committed.catch(() => (abandoned = true));
      const following: LayerSource = { ...blob, path: store.ingestPath(layer.digest), growing: { size: layer.size, committed: growing.committed } };
      try {
        return await unpackFrom(store, layer, opts, dir, following, done, growing.committed);
      } catch (error) {
        if (abandoned) throw error;
        // Whatever went wrong with the download's file (started over, replaced, short, not the layer),
        // the committed blob decides: it is read as any other once it is in.
      }
    }
    await growing.committed;
  }
  return unpackFrom(store, layer, opts, dir, blob, done);
}

/**
 * One unpack of `source` into a fresh staging directory, committed as `dir` once it is durable
 * (and, given `ready`, once that resolves). Failure: the staging directory is removed and the
 * error thrown (a full or read-only disk as ERR_STORE_IO naming the layer).
 */
async function unpackFrom(
  store: Store,
  layer: ChainedLayer,
  opts: EnsureOptions,
  dir: string,
  source: LayerSource,
  done: (meta: LayerMeta, reused: boolean) => EnsuredLayer,
  ready?: Promise<void>,
): Promise<EnsuredLayer> {
  const hex = digestHex(layer.chainID);
  const staging = join(store.layersDir, `${STAGING_PREFIX}${hex}-${opts.pid}-${Math.random().toString(16).slice(2, 10)}`);
  const diff = join(staging, 'diff');
  // The layer dir (staging, then renamed) is 0700 so no other user reaches what it holds;
  // diff/ is the container's root directory and keeps the usual 0755 (the layer may set its own).
  await fsp.mkdir(staging, { mode: 0o700 });
  await fsp.mkdir(diff, { mode: 0o755 });
  // Loaded only for a layer that is unpacked: a warm run that reuses its layers loads no applier, tar parser,
  // inflate thread or node:crypto (issue 17).
  const [{ Applier }, { applyLayer }, { treeDigest }] = await Promise.all([
    import('./apply/applier.js'),
    import('./read-layer.js'),
    import('@conveyor/lib-common/tree-digest'),
  ]);
  let applier: Applier | undefined;
  let stopCounting = () => {};
  const image = opts.budget?.caps ?? { maxBytes: Infinity, maxEntries: Infinity };
  const limits = layerLimits(
    opts,
    image,
    () => ({ bytes: 0, entries: 0 }),
    () => opts.budget?.others(layer.chainID) ?? { bytes: 0, entries: 0 },
  );
  try {
    // `limits` is passed by reference: the Applier reads its caps at every entry, so the
    // image budget it sees shrinks as the image's other layers unpack (see budget.ts).
    applier = new Applier(
      withLimits({ root: diff, mode: 'overlay', rootless: opts.rootless, ownable: opts.ownable, warn: opts.warn, writerThreads: opts.writerThreads }, limits),
    );
    const counted = applier;
    if (opts.budget) stopCounting = opts.budget.watch(layer.chainID, () => counted.stats());
    applier.beginLayer(true);
    const result = await applyLayer(source, applier, opts.onProgress);
    await applier.finish();
    await applier.close();
    const stats = applier.stats();
    // The tree's writeback starts as soon as its last entry is written (one syncfs, shared with the
    // layers finishing meanwhile: cheaper than an fsync per file) and runs while the tree digest is
    // taken and meta.json written; the commit below waits for it (lib-common/src/durable.ts).
    const treeSynced = syncFilesystemShared(store.layersDir);
    treeSynced.catch(() => undefined); // awaited below; a failure first elsewhere must not be an unhandled rejection
    // Taken once the tree is complete, before the commit: img-fsck recomputes it to find a layer changed since.
    const tree = await treeDigest(diff);
    const meta: LayerMeta = {
      chainID: layer.chainID,
      // Verified: applyLayer fails unless the uncompressed bytes hash to layer.diffID.
      diffID: result.diffID,
      parentChainID: layer.parentChainID ?? null,
      digest: layer.digest,
      mediaType: layer.mediaType,
      size: layer.size,
      unpackedBytes: stats.bytes,
      entries: stats.entries,
      time: new Date().toISOString(),
      rootless: opts.rootless,
      opaqueXattr: opts.rootless ? 'user.overlay.opaque' : 'trusted.overlay.opaque',
      ...(opts.rootless ? { owners: stats.owners } : {}),
      tree,
    };
    const metaPath = join(staging, 'meta.json');
    await fsp.writeFile(metaPath, JSON.stringify(meta, null, 2) + '\n');
    // Written after the syncfs started: made durable on its own (the file, then its name in the staging dir).
    const metaSynced = Promise.all([syncFile(metaPath), syncDir(staging)]);
    metaSynced.catch(() => undefined);
    // Its final usage counts for the image before the next layer starts (onApplied): with --jobs 1
    // that one sees the exact budget, as when layers ran strictly one after another.
    opts.budget?.settle(layer.chainID, { bytes: stats.bytes, entries: stats.entries });
    opts.onApplied?.();
    // Durable before it is complete: the tree and meta.json are on disk (and a growing blob in the
    // store), then the rename marks it complete and the fsync of layers/ keeps the rename.
    await Promise.all([treeSynced, metaSynced, ready]);
    // Whatever else is at the final name (no meta.json, another layer's meta, a symlink) is
    // debris or a plant, not ours to trust: move it aside (rename never follows a symlink) and clear it.
    const broken = `${staging}-old`;
    await fsp.rename(dir, broken).then(
      () => fsp.rm(broken, { recursive: true, force: true }),
      () => undefined,
    );
    await fsp.rename(staging, dir);
    // Shared too: renames that land together cost one fsync of layers/.
    await syncDirShared(store.layersDir);
    return done(meta, false);
  } catch (error) {
    await applier?.close();
    await fsp.rm(staging, { recursive: true, force: true }).catch(() => undefined);
    // A full or read-only disk: say so, naming the layer and where it was going (a writer thread's error carries no path).
    const cause = isConveyorError(error) ? error.cause : error;
    if (isStorageErrno(cause)) throw store.ioError(cause, dir, `cannot unpack layer ${layer.digest} into`);
    throw explainTooLarge(error, limits, image);
  } finally {
    stopCounting();
  }
}
