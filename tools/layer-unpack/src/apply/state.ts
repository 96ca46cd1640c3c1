/**
 * What the applier knows about each path, kept in two trees of path
 * components (pathtree.ts): one per layer (LayerState: verified, created,
 * written, a pending whiteout or fifo, xattrs, an opaque marker) and one
 * across layers (KeptState: deferred directory metadata, rootless owners).
 * Removing a path detaches its subtree from both, so every operation costs
 * what it touches. Plain data: nothing here touches the disk or fails.
 */
import type { PathNode } from './pathtree.js';

/** An entry's owner, mode and times, as the layer asked for them. */
export interface Meta {
  uid: number;
  gid: number;
  mode: number;
  atime: number;
  mtime: number;
}

/** A node Node cannot make itself: created by the layer's mknod batch (deferred.ts). */
export interface Special {
  kind: 'whiteout' | 'fifo';
  meta?: Meta;
}

/** What this layer did at one path. Reset by beginLayer. */
export interface LayerState {
  /** A real directory inside the root (not a symlink): checked, or created by us. */
  verified: boolean;
  /** Created empty during this layer: its children exist only if written this layer. */
  fresh: boolean;
  /** Written by this layer: its whiteouts and opaque markers never delete it. */
  written: boolean;
  /** Something below was written by this layer (an opaque marker keeps this child). */
  writtenBelow: boolean;
  /** A whiteout or fifo to create in the layer's mknod batch. */
  special?: Special;
  xattrs?: Map<string, string>;
  /** Overlay mode: mark this directory opaque. */
  opaque: boolean;
}

/** What is kept across layers at one path, until finish(). */
export interface KeptState {
  /** Directory metadata, applied last. `rootEntry`: times only (the root's owner and mode are not the layer's). */
  dirMeta?: Meta & { rootEntry?: boolean };
  /** Rootless: the owner the layer asked for, when not 0:0. */
  owner?: [number, number];
}

export type LayerNode = PathNode<LayerState>;

/** Every field from the start: one shape, held in the object (a field added later moves them all to a separate array). */
export const newLayerState = (): LayerState => ({
  verified: false,
  fresh: false,
  written: false,
  writtenBelow: false,
  special: undefined,
  xattrs: undefined,
  opaque: false,
});

/** Marks `node` written by this layer, and its ancestors as holding something it wrote. */
export function markWritten(node: LayerNode): void {
  node.value.written = true;
  for (let p = node.parent; p && !p.value.writtenBelow; p = p.parent) p.value.writtenBelow = true;
}
