/**
 * What is not done as entries arrive, and why:
 *  - per layer (runLayerBatches): Node has no mknod/mkfifo/xattr API, so a
 *    layer's whiteouts and fifos are made by one `mknod` batch and its
 *    xattrs and opaque markers set by one `setfattr -h --restore=-`
 *    (batch.ts), with every path re-verified (paths.ts verifyChain) right
 *    before;
 *  - after all layers (applyDirMeta): directory owners, modes and times,
 *    since creating children changes a directory's mtime and a read-only
 *    directory must stay writable while we fill it.
 *
 * On failure some nodes, xattrs or directory metadata exist and others not,
 * and the mknod temporary directory may remain inside the root: the layer
 * fails and the caller removes its staging directory.
 */
import { chmodSync, lchownSync, lutimesSync, mkdtempSync, renameSync, rmdirSync } from 'node:fs';
import { ConveyorError } from '@conveyor/lib-common/errors';
import { invalid, malicious } from '../errors.js';
import { show } from '../names.js';
import type { PathTree } from './pathtree.js';
import { bytes, type SafeRoot } from './paths.js';
import type { KeptState, LayerState, Special } from './state.js';
import { fsTime } from './writer-ops.js';
import { opaqueXattr } from './xattrs.js';

/** Whose owners are applied: all as root; rootless, only those `ownable` accepts (mapped in our user namespace). */
export interface OwnerPolicy {
  rootless: boolean;
  ownable?: (uid: number, gid: number) => boolean;
}

export interface BatchOptions extends OwnerPolicy {
  warn: (message: string) => void;
}

/** Whether an entry's owner is applied (else, rootless, it is recorded: applier.ts `owners`). */
export function canChown(policy: OwnerPolicy, meta: { uid: number; gid: number }): boolean {
  return !policy.rootless || (policy.ownable?.(meta.uid, meta.gid) ?? false);
}

/**
 * Creates this layer's whiteouts and fifos. `mknod` runs in a child
 * process that only takes text arguments, so nodes are made under ASCII
 * names in a fresh directory inside the root and renamed into place from
 * here, where paths are Buffers (names that are not UTF-8 stay exact).
 */
async function makeSpecials(root: SafeRoot, specials: [string, Special][], memo: Map<string, boolean>, policy: OwnerPolicy): Promise<void> {
  for (const [rel] of specials) {
    if (root.verifyChain(rel, memo) !== undefined) throw invalid(`cannot create ${show(rel)}: something is already there`, rel);
  }
  const tmp = mkdtempSync(`${root.root}/.conveyor-mknod-`);
  const { mknodBatch } = await import('./batch.js');
  await mknodBatch(specials.map(([, special], i) => `${special.kind === 'fifo' ? 'p' : 'c'}:${tmp}/${i}`));
  for (const [i, [rel]] of specials.entries()) renameSync(`${tmp}/${i}`, bytes(root.abs(rel)));
  rmdirSync(tmp);
  for (const [rel, special] of specials) {
    if (special.kind !== 'fifo' || !special.meta) continue;
    const st = root.verifyChain(rel, memo);
    if (!st?.isFIFO()) throw invalid(`fifo ${show(rel)} vanished`, rel);
    const meta = special.meta;
    const path = bytes(root.abs(rel));
    if (canChown(policy, meta)) lchownSync(path, meta.uid, meta.gid);
    chmodSync(path, meta.mode);
    lutimesSync(path, fsTime(meta.atime), fsTime(meta.mtime));
  }
}

/** Runs `layer`'s batches: mknod (whiteouts, fifos), then setfattr (xattrs, opaque markers). The writer must be drained. */
export async function runLayerBatches(root: SafeRoot, layer: PathTree<LayerState>, opts: BatchOptions): Promise<void> {
  const memo = new Map<string, boolean>();
  const specials: [string, Special][] = [];
  const xattrs: [string, Map<string, string>][] = [];
  const opaque: string[] = [];
  if (layer.root.value.xattrs) xattrs.push(['', layer.root.value.xattrs]);
  for (const [rel, node] of layer.walk()) {
    const v = node.value;
    if (v.special) specials.push([rel, v.special]);
    if (v.xattrs) xattrs.push([rel, v.xattrs]);
    if (v.opaque) opaque.push(rel);
  }
  if (layer.root.value.opaque) opaque.push('');
  if (specials.length > 0) await makeSpecials(root, specials, memo, opts);
  const opaqueName = opaqueXattr(opts.rootless);
  if (xattrs.length > 0 || opaque.length > 0) {
    const entries: { path: string; attrs: [string, Buffer][] }[] = [];
    for (const [rel, attrs] of xattrs) {
      if (root.verifyChain(rel, memo) === undefined) continue;
      entries.push({ path: root.abs(rel), attrs: [...attrs].map(([k, v]) => [k, bytes(v)]) });
    }
    for (const rel of opaque) {
      const st = root.verifyChain(rel, memo);
      if (!st?.isDirectory()) throw malicious(`opaque directory ${show(rel)} is not a plain directory`, rel);
      entries.push({ path: root.abs(rel), attrs: [[opaqueName, Buffer.from('y')]] });
    }
    const { setfattrBatch } = await import('./batch.js');
    const failure = await setfattrBatch(entries);
    if (failure) {
      if (opts.rootless && opaque.length === 0) opts.warn(`some xattrs could not be set (rootless): ${failure}`);
      else throw new ConveyorError('ERR_STORE_IO', `setting xattrs failed: ${failure}`);
    }
  }
}

/** Applies directory ownership, modes and times kept in `kept` (children before their parents). The writer must be drained. */
export function applyDirMeta(root: SafeRoot, kept: PathTree<KeptState>, policy: OwnerPolicy): void {
  const memo = new Map<string, boolean>();
  const dirs = kept.walk(true);
  dirs.push(['', kept.root]);
  for (const [rel, node] of dirs) {
    const meta = node.value.dirMeta;
    if (!meta) continue;
    const st = root.verifyChain(rel, memo);
    if (!st?.isDirectory()) continue;
    const path = bytes(root.abs(rel));
    if (!meta.rootEntry) {
      if (canChown(policy, meta)) lchownSync(path, meta.uid, meta.gid);
      chmodSync(path, meta.mode);
    }
    lutimesSync(path, fsTime(meta.atime), fsTime(meta.mtime));
    node.value.dirMeta = undefined;
  }
}
