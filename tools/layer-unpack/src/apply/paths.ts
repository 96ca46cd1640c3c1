/**
 * Path safety: the one place where a path inside the root is built and
 * checked. Every path is resolved component by component with lstat; a
 * symlink in an intermediate component is refused (ERR_LAYER_MALICIOUS),
 * never followed, whether this layer or an earlier one planted it. Verified
 * directories are remembered in the layer's tree (state.ts), so an entry
 * costs no syscall per component; removing or replacing a path forgets its
 * subtree there. Before the deferred steps (deferred.ts) every path is
 * checked again without that cache (verifyChain).
 *
 * Paths are byte strings (latin1, one char per byte; see ../tarheader.ts)
 * and reach the file system as Buffers, byte for byte.
 *
 * On failure: resolveParent has queued the missing directories up to the
 * component that failed, and nothing after it; the root is left partly
 * written (callers unpack into a staging directory).
 */
import { lstatSync, type Stats } from 'node:fs';
import { invalid, malicious } from '../errors.js';
import { show } from '../names.js';
import type { PathTree } from './pathtree.js';
import { markWritten, type LayerNode, type LayerState } from './state.js';

/** A byte string as the Buffer the file system takes. */
export const bytes = (s: string): Buffer => Buffer.from(s, 'latin1');

/** What resolveParent needs from the writer threads. */
export interface ResolveHooks {
  /** Waits for queued file operations (to look at a path as the queue leaves it). */
  drain(): Promise<void>;
  /** Queues the creation of a directory (created at once: see writer.ts). */
  mkdir(abs: string): void;
}

export class SafeRoot {
  /** The root as a byte string, the prefix of every path we build. */
  private readonly rootBytes: string;

  /** `root`: absolute path of an existing directory, everything stays inside. */
  constructor(readonly root: string) {
    this.rootBytes = Buffer.from(root).toString('latin1');
  }

  /** The byte-string path of `rel` (a byte string relative to the root). */
  abs(rel: string): string {
    return rel === '' ? this.rootBytes : `${this.rootBytes}/${rel}`;
  }

  lstat(rel: string): Stats | undefined {
    return lstatSync(bytes(this.abs(rel)), { throwIfNoEntry: false });
  }

  /**
   * Resolves the parent directories of `parts` (all but the last), inside the
   * root, creating missing ones when `create`. Returns the parent's node in
   * `layer`, or undefined when one is missing and `create` is false. Throws
   * ERR_LAYER_MALICIOUS on a symlink (having created nothing after it).
   */
  async resolveParent(layer: PathTree<LayerState>, parts: string[], create: boolean, name: string, hooks: ResolveHooks): Promise<LayerNode | undefined> {
    let node = layer.root;
    let rel = '';
    let missing = false;
    for (let i = 0; i < parts.length - 1; i++) {
      const parent = node;
      rel = i === 0 ? parts[0] : `${rel}/${parts[i]}`;
      node = layer.ensureChild(parent, parts[i]);
      const state = node.value;
      if (!missing && state.verified) continue;
      let st: Stats | undefined;
      if (!missing && !(parent.value.fresh && !state.written)) {
        // Something this layer wrote (maybe still queued): look at it as the queue leaves it.
        if (state.written) await hooks.drain();
        st = this.lstat(rel);
      }
      if (st === undefined) {
        if (!create) return undefined;
        missing = true;
        state.special = undefined;
        hooks.mkdir(this.abs(rel));
        state.verified = true;
        state.fresh = true;
        markWritten(node);
        continue;
      }
      if (st.isSymbolicLink()) throw malicious(`entry ${show(name)} goes through the symlink ${show(rel)}`, name);
      if (!st.isDirectory()) throw invalid(`entry ${show(name)}: ${show(rel)} is not a directory`, name);
      state.verified = true;
    }
    return node;
  }

  /**
   * Re-verifies, without the cache, that every component of `rel` below the
   * root is a real directory (not a symlink). Returns the final lstat, or
   * undefined when the final component is missing. `memo` holds what this
   * pass has already checked.
   */
  verifyChain(rel: string, memo: Map<string, boolean>): Stats | undefined {
    const parts = rel === '' ? [] : rel.split('/');
    let prefix = '';
    for (let i = 0; i < parts.length - 1; i++) {
      prefix = i === 0 ? parts[0] : `${prefix}/${parts[i]}`;
      let ok = memo.get(prefix);
      if (ok === undefined) {
        const st = this.lstat(prefix);
        ok = st?.isDirectory() === true && !st.isSymbolicLink();
        memo.set(prefix, ok);
      }
      if (!ok) throw malicious(`${show(rel)} is no longer inside a plain directory tree`, rel);
    }
    return this.lstat(rel);
  }
}
