/**
 * The unpacked-layer half of the check: every `layers/<chain hex>` directory
 * (layer-unpack's layer-cache.ts layout) must be a real directory with a diff/
 * directory and a meta.json that names its own chain ID, whose chain ID follows
 * from its parent chain ID and diff ID (OCI: bottom = diff ID, above it
 * sha256(parent + " " + diff ID)), and whose tree checksum (lib-common
 * tree-digest, recorded at unpack) matches the tree as it is now. Layers
 * unpacked before the checksum was recorded are counted as unverified (an
 * info line), not a problem.
 *
 * Nothing is followed: meta.json is opened O_NOFOLLOW, the tree walk lstat()s.
 * --repair moves a bad layer directory aside and removes it (a reader sees the
 * layer whole or not at all), so the next unpack redoes it — unless a mounted
 * overlay uses it as a lower dir: then it stays (repaired: false), a running
 * container is never pulled from under.
 *
 * Staging directories (`.tmp-*`) and `.gc-*` leftovers are the orphan sweep's
 * (gc.ts), as are layer directories no image needs.
 *
 * Failure: problems are reported, not thrown; I/O errors other than what an
 * entry is propagate.
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, open, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { chainIDs, SHA256_DIGEST, SHA256_HEX } from '@conveyor/lib-common/digest';
import { mountedChains } from '@conveyor/lib-common/gc';
import type { Store } from '@conveyor/lib-common/store';
import { isTreeDigest, TREE_DIGEST_VERSION, treeDigest } from '@conveyor/lib-common/tree-digest';
import type { FsckCode, Report } from './problems.js';

export interface LayerCheckOptions {
  /** Recompute tree checksums (the walk); without, only meta.json and the chain are checked. */
  trees: boolean;
  /** Info lines (a layer without a tree checksum). */
  info: (message: string) => void;
}

/** The largest meta.json read: a rootless layer's owner map can be long. */
const MAX_META_BYTES = 64 * 1024 * 1024;

type MetaRead = { meta: Record<string, unknown> } | { code: FsckCode; why: string };

async function readMeta(path: string): Promise<MetaRead> {
  let handle: import('node:fs/promises').FileHandle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { code: 'FSCK_LAYER_INCOMPLETE', why: 'it has no meta.json (an unpack that never committed)' };
    if (code === 'ELOOP') return { code: 'FSCK_LAYER_META', why: 'its meta.json is a symlink (not followed)' };
    return { code: 'FSCK_LAYER_META', why: `its meta.json cannot be read (${code})` };
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) return { code: 'FSCK_LAYER_META', why: 'its meta.json is not a file' };
    if (info.size > MAX_META_BYTES) return { code: 'FSCK_LAYER_META', why: `its meta.json is ${info.size} bytes` };
    const value = JSON.parse(await handle.readFile('utf8')) as unknown;
    if (!value || typeof value !== 'object' || Array.isArray(value)) return { code: 'FSCK_LAYER_META', why: 'its meta.json is not an object' };
    return { meta: value as Record<string, unknown> };
  } catch (error) {
    return { code: 'FSCK_LAYER_META', why: `its meta.json is not JSON (${(error as Error).message})` };
  } finally {
    await handle.close();
  }
}

/** Why meta.json does not describe the layer directory `hex`; undefined when it does. */
export function metaProblem(meta: Record<string, unknown>, hex: string): string | undefined {
  const { chainID, diffID, parentChainID, digest } = meta;
  if (chainID !== `sha256:${hex}`) return `its meta.json names chain ID ${JSON.stringify(chainID)}`;
  if (typeof diffID !== 'string' || !SHA256_DIGEST.test(diffID)) return `its meta.json diff ID ${JSON.stringify(diffID)} is not a digest`;
  if (digest !== undefined && (typeof digest !== 'string' || !SHA256_DIGEST.test(digest)))
    return `its meta.json blob digest ${JSON.stringify(digest)} is not a digest`;
  // Metas written before the parent was recorded lack it; their chain ID was checked when they were written.
  if (parentChainID === undefined) return undefined;
  if (parentChainID !== null && (typeof parentChainID !== 'string' || !SHA256_DIGEST.test(parentChainID))) {
    return `its meta.json parent chain ID ${JSON.stringify(parentChainID)} is not a digest`;
  }
  const expected = parentChainID === null ? diffID : chainIDs([parentChainID, diffID])[1];
  if (expected !== chainID) return `its chain ID does not follow from its parent ${JSON.stringify(parentChainID)} and diff ID ${diffID} (expected ${expected})`;
  return undefined;
}

async function kindOf(path: string): Promise<string | undefined> {
  const info = await lstat(path).catch(() => undefined);
  if (!info) return 'missing';
  if (info.isDirectory()) return undefined;
  return info.isSymbolicLink() ? 'a symlink' : 'not a directory';
}

export async function checkLayers(store: Store, report: Report, options: LayerCheckOptions): Promise<void> {
  let names: string[];
  try {
    names = (await readdir(store.layersDir)).filter((name) => SHA256_HEX.test(name)).sort();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  const mounted = await mountedChains(store);
  for (const hex of names) {
    report.checked.layers++;
    const dir = join(store.layersDir, hex);
    const found = await inspectLayer(dir, hex, {
      ...options,
      info: (message) => {
        report.unverifiedLayers++;
        options.info(message);
      },
    });
    if (!found) continue;
    const busy = mounted.has(hex);
    const repaired = report.repair && !busy;
    if (repaired) {
      // Aside first (rename never follows a symlink): a reader sees the layer whole or not at all.
      const aside = join(store.layersDir, `.gc-${hex}-${randomBytes(4).toString('hex')}`);
      await rename(dir, aside);
      await rm(aside, { recursive: true, force: true });
    }
    const outcome = repaired
      ? ': removed, the next unpack redoes it'
      : busy && report.repair
        ? ': kept, a mounted overlay uses it (remove its container first)'
        : '';
    await report.problem({ code: found.code, path: `layers/${hex}`, chainID: `sha256:${hex}`, message: `layers/${hex}: ${found.why}${outcome}`, repaired });
  }
}

/** What is wrong with the layer directory `dir` (chain `hex`), or undefined. */
async function inspectLayer(dir: string, hex: string, options: LayerCheckOptions): Promise<{ code: FsckCode; why: string } | undefined> {
  const top = await kindOf(dir);
  if (top !== undefined) return { code: 'FSCK_LAYER_INVALID', why: `it is ${top}` };
  const diff = await kindOf(join(dir, 'diff'));
  if (diff !== undefined) return { code: 'FSCK_LAYER_INVALID', why: diff === 'missing' ? 'it has no diff directory' : `its diff is ${diff}` };
  const read = await readMeta(join(dir, 'meta.json'));
  if ('code' in read) return read;
  const why = metaProblem(read.meta, hex);
  if (why !== undefined) return { code: 'FSCK_LAYER_META', why };
  const recorded = read.meta.tree;
  if (recorded === undefined || (isTreeDigest(recorded) === false && (recorded as { version?: unknown })?.version !== TREE_DIGEST_VERSION)) {
    // Unpacked before the checksum was recorded, or by a version whose checksum we do not compute.
    options.info(`layers/${hex}: no tree checksum recorded at unpack (unpacked by an older layer-unpack): its tree is not verified`);
    return undefined;
  }
  if (!isTreeDigest(recorded)) return { code: 'FSCK_LAYER_META', why: 'its meta.json tree checksum is malformed' };
  if (!options.trees) return undefined;
  const now = await treeDigest(join(dir, 'diff'));
  if (now.digest === recorded.digest) return undefined;
  return {
    code: 'FSCK_LAYER_TREE',
    why: `its tree changed since it was unpacked (${recorded.entries} entries then, ${now.entries} now; a file changed, added, removed, or its mode or owner changed)`,
  };
}
