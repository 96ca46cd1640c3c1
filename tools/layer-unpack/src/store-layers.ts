/**
 * Per-layer directories in the store, keyed by chain ID:
 *
 *   layers/<chain hex>/diff/       the layer's tree, an overlayfs lower dir
 *   layers/<chain hex>/meta.json   chainID, diffID, digest, size, time, ...
 *   layers/.tmp-<chain hex>-<pid>-<rand>/   a layer being unpacked
 *
 * A layer is unpacked into a staging directory under layers/ and renamed into
 * place: the rename is the commit point, so `layers/<chain hex>` existing with
 * a valid meta.json means complete. A staging directory left by a crash or
 * kill -9 is never used and is removed by the next unpack of that chain ID
 * (or by any run, once its pid is gone). A lock per chain ID makes concurrent
 * unpacks of the same layer wait for one another, then reuse the result.
 */
import { mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { digestHex } from '@conveyor/lib-common/digest';
import { withLock } from '@conveyor/lib-common/lock';
import { layerCompression } from '@conveyor/lib-common/mediatypes';
import type { LayerInfo } from '@conveyor/lib-common/records';
import type { Store } from '@conveyor/lib-common/store';
import { Applier } from './applier.js';
import { applyLayer } from './layer.js';

export interface LayerMeta {
  chainID: string;
  diffID: string;
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
  /** Rootless: owners the layer asked for (path → [uid, gid]) where not 0:0; not applied on disk. */
  owners?: Record<string, [number, number]>;
  /** Rootless: the xattr name the opaque markers use. */
  opaqueXattr: string;
}

export interface EnsureOptions {
  rootless: boolean;
  maxBytes: number;
  maxEntries: number;
  warn: (message: string) => void;
  /** Threads creating files per layer (default 2); 0 = inline. */
  writerThreads?: number;
  /** Our process id, to name staging directories (their owner's liveness is checked in /proc). */
  pid: number;
  onProgress?: (blobBytes: number) => void;
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

async function readMeta(dir: string, chainID: string): Promise<LayerMeta | undefined> {
  try {
    const meta = JSON.parse(await readFile(join(dir, 'meta.json'), 'utf8')) as LayerMeta;
    return meta && meta.chainID === chainID ? meta : undefined;
  } catch {
    return undefined;
  }
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
    names = await readdir(store.layersDir);
  } catch {
    return;
  }
  for (const name of names) {
    if (!name.startsWith(STAGING_PREFIX)) continue;
    const [, chain, pid] = name.split('-');
    const mine = hex !== undefined && chain === hex;
    if (mine || !isAlive(Number(pid))) await rm(join(store.layersDir, name), { recursive: true, force: true });
  }
}

/** Makes sure the layer is unpacked in the store; reuses a complete one. */
export async function ensureLayer(store: Store, layer: LayerInfo, opts: EnsureOptions): Promise<EnsuredLayer> {
  const hex = digestHex(layer.chainID);
  const dir = store.layerDir(layer.chainID);
  const done = (meta: LayerMeta, reused: boolean): EnsuredLayer => ({ dir, diffDir: join(dir, 'diff'), reused, meta });
  const existing = await readMeta(dir, layer.chainID);
  if (existing) return done(existing, true);
  await mkdir(store.layersDir, { recursive: true });
  return withLock(store.lockPath(`layer-${hex}`), async () => {
    const again = await readMeta(dir, layer.chainID);
    if (again) return done(again, true);
    await cleanStaging(store, hex);
    const staging = join(store.layersDir, `${STAGING_PREFIX}${hex}-${opts.pid}-${Math.random().toString(16).slice(2, 10)}`);
    const diff = join(staging, 'diff');
    await mkdir(diff, { recursive: true, mode: 0o755 });
    let applier: Applier | undefined;
    try {
      const compression = layerCompression(layer.mediaType);
      applier = new Applier({ root: diff, mode: 'overlay', rootless: opts.rootless, maxBytes: opts.maxBytes, maxEntries: opts.maxEntries, warn: opts.warn, writerThreads: opts.writerThreads });
      applier.beginLayer(true);
      const result = await applyLayer({ path: store.blobPath(layer.digest), compression, diffID: layer.diffID, label: layer.digest }, applier, opts.onProgress);
      await applier.finish();
      await applier.close();
      const stats = applier.stats();
      const meta: LayerMeta = {
        chainID: layer.chainID,
        diffID: result.diffID,
        digest: layer.digest,
        mediaType: layer.mediaType,
        size: layer.size,
        unpackedBytes: stats.bytes,
        entries: stats.entries,
        time: new Date().toISOString(),
        rootless: opts.rootless,
        opaqueXattr: opts.rootless ? 'user.overlay.opaque' : 'trusted.overlay.opaque',
        ...(opts.rootless ? { owners: stats.owners } : {}),
      };
      await writeFile(join(staging, 'meta.json'), JSON.stringify(meta, null, 2) + '\n');
      // A directory without meta.json at the final name is debris (not ours to trust): clear it.
      const broken = `${staging}-old`;
      await rename(dir, broken).then(
        () => rm(broken, { recursive: true, force: true }),
        () => undefined,
      );
      await rename(staging, dir);
      return done(meta, false);
    } catch (error) {
      await applier?.close();
      await rm(staging, { recursive: true, force: true }).catch(() => undefined);
      throw error;
    }
  });
}
