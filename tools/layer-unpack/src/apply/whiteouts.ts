/**
 * Whiteouts, one function per mode and kind (the entry names were validated
 * by ../names.ts whiteoutOf). A whiteout never deletes a path this layer
 * wrote (the applier checks before calling), the root, or anything above it;
 * an opaque marker keeps what this layer put in its directory.
 *
 *  - overlay: nothing is deleted; `.wh.NAME` is recorded as a 0/0 character
 *    device NAME and `.wh..wh..opq` as the opaque xattr on its directory,
 *    both made by the layer's deferred batch (deferred.ts). On failure the
 *    parents resolved so far stay created.
 *  - flat: `.wh.NAME` deletes NAME from lower layers now, and `.wh..wh..opq`
 *    clears what lower layers put in its directory. On failure part of a
 *    tree may already be gone: the layer fails.
 */
import { readdirSync, type Stats } from 'node:fs';
import type { PathTree } from './pathtree.js';
import { bytes, type SafeRoot } from './paths.js';
import type { LayerNode, LayerState } from './state.js';

/** What the whiteout functions use of the applier. */
export interface WhiteoutHost {
  readonly root: SafeRoot;
  readonly layer: PathTree<LayerState>;
  resolveParent(parts: string[], create: boolean, name: string): Promise<LayerNode | undefined>;
  drain(): Promise<void>;
  /** Removes what is at `parts` and forgets its bookkeeping. */
  remove(parts: string[], st: Stats): Promise<void>;
}

/** One mode's handling of `.wh.NAME` (`parts` is the whiteout entry's own path) and of `.wh..wh..opq`. */
export interface WhiteoutMode {
  whiteout(host: WhiteoutHost, parts: string[], target: string, name: string): Promise<void>;
  opaque(host: WhiteoutHost, parts: string[], name: string): Promise<void>;
}

export const overlayWhiteouts: WhiteoutMode = {
  async whiteout(host, parts, target, name) {
    const dir = (await host.resolveParent(parts, true, name))!;
    host.layer.ensureChild(dir, target).value.special = { kind: 'whiteout' };
  },
  async opaque(host, parts, name) {
    (await host.resolveParent(parts, true, name))!.value.opaque = true;
  },
};

export const flatWhiteouts: WhiteoutMode = {
  async whiteout(host, parts, target, name) {
    await host.drain();
    if (!(await host.resolveParent(parts, false, name))) return;
    const targetParts = [...parts.slice(0, -1), target];
    const st = host.root.lstat(targetParts.join('/'));
    if (st) await host.remove(targetParts, st);
  },
  async opaque(host, parts, name) {
    await host.drain();
    const dir = await host.resolveParent(parts, false, name);
    if (dir) await clearOpaque(host, parts.slice(0, -1), dir);
  },
};

/** Removes what lower layers put in the directory, keeping what this layer wrote (its children only: costs what it touches). */
async function clearOpaque(host: WhiteoutHost, dirParts: string[], dir: LayerNode): Promise<void> {
  const keep = new Set<string>();
  if (dir.children) for (const [child, node] of dir.children) if (node.value.written || node.value.writtenBelow) keep.add(child);
  const dirRel = dirParts.join('/');
  for (const child of readdirSync(bytes(host.root.abs(dirRel)), { encoding: 'latin1' })) {
    if (keep.has(child)) continue;
    const childParts = [...dirParts, child];
    const st = host.root.lstat(childParts.join('/'));
    if (st) await host.remove(childParts, st);
  }
}
