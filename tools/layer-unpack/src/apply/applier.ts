/**
 * Applies tar entries to a directory, securely: the entry dispatch, and the
 * bookkeeping that ties the parts together. The parts, each in its file:
 *  - paths.ts: path safety (every path resolved inside the root, symlinks
 *    refused, verified directories cached);
 *  - state.ts: what we know per path, in per-layer and cross-layer trees;
 *  - whiteouts.ts: whiteouts and opaque markers, one function per mode;
 *  - xattrs.ts: which xattrs are restored;
 *  - deferred.ts: the per-layer mknod/setfattr batch and the final directory
 *    metadata;
 *  - writer.ts, file-sink.ts: file creation on the writer threads.
 *
 * Existing paths are replaced (unlink, then create with O_EXCL|O_NOFOLLOW),
 * never opened and truncated, so a hardlink to a lower file is never written
 * through. File contents and metadata are written by the writer threads
 * (writer.ts) while the main thread parses the next entries; file metadata
 * goes through the open descriptor (fchown, then fchmod so setuid bits
 * stick, futimes).
 *
 * Two modes:
 *  - overlay: one layer into its own empty directory, made ready to be an
 *    overlayfs lower dir: `.wh.NAME` becomes a 0/0 character device and
 *    `.wh..wh..opq` the `trusted.overlay.opaque=y` xattr (`user.overlay.opaque`
 *    when rootless), both created in one batch process per layer;
 *  - flat: layers applied in order into one directory; whiteouts delete and
 *    opaque markers clear what lower layers put in the directory.
 *
 * The layer's own root entry (`./`) never changes the root's owner, mode or
 * ACLs: those are the store's (or the --flatten caller's) business, and an
 * unpacked layer holds setuid files (CVE-2021-41091).
 *
 * On failure the root is left partly written (and every method below leaves
 * it so when it throws); callers unpack into a staging directory and only
 * rename it into place on success.
 */
import { linkSync, rmSync, unlinkSync, type Stats } from 'node:fs';
import { ConveyorError } from '@conveyor/lib-common/errors';
import { invalid, malicious } from '../errors.js';
import { show, splitName, text, whiteoutOf, type WhiteoutKind } from '../names.js';
import { showTypeflag } from '../tarheader.js';
import type { TarEntryHeader } from '../tarparser.js';
import { applyDirMeta, canChown, runLayerBatches } from './deferred.js';
import { fileSink, type FileSink } from './file-sink.js';
import { PathTree } from './pathtree.js';
import { bytes, SafeRoot, type ResolveHooks } from './paths.js';
import { markWritten, newLayerState, type KeptState, type LayerNode, type LayerState, type Meta } from './state.js';
import { flatWhiteouts, overlayWhiteouts, type WhiteoutHost, type WhiteoutMode } from './whiteouts.js';
import { Writer, type FileMetaOp, type WriterError } from './writer.js';
import { MAX_XATTR_BYTES_PER_LAYER, restoredXattrs } from './xattrs.js';

export type { FileSink } from './file-sink.js';

export type ApplyMode = 'overlay' | 'flat';

export interface ApplierOptions {
  /** Absolute path of an existing directory: the root everything stays inside. */
  root: string;
  mode: ApplyMode;
  /** Do not chown; record ownership instead (see `owners`), but for the owners `ownable` accepts. */
  rootless: boolean;
  /**
   * Rootless inside a user namespace (rootless/subid ownableIds): the owners we can chown to there
   * (mapped ids), applied for real; the others are recorded. Absent: none.
   */
  ownable?: (uid: number, gid: number) => boolean;
  /** Cap on file content bytes written in all (ERR_LAYER_TOO_LARGE). */
  maxBytes: number;
  /** Cap on tar entries in all (ERR_LAYER_TOO_LARGE). */
  maxEntries: number;
  /** Non-fatal notes (skipped device nodes, dropped xattrs). */
  warn: (message: string) => void;
  /** Threads creating files (default 2); 0 creates them inline on the calling thread. */
  writerThreads?: number;
}

/** The parts of a tar header we act on (tarparser.ts decodes them as Go does). */
export type EntryHeader = Pick<TarEntryHeader, 'name' | 'type' | 'size' | 'mode' | 'uid' | 'gid' | 'mtime'> & Partial<TarEntryHeader>;

export interface ApplyStats {
  entries: number;
  /** File content bytes written. */
  bytes: number;
  /** Device nodes skipped. */
  skippedDevices: number;
  /** Rootless only: entries not owned by 0:0 whose owner could not be applied, with the owner the layer asked for (paths as text). */
  owners: Record<string, [number, number]>;
}

/** A writer thread's failure as the Error the layer reports (code, syscall and path kept). */
const writerFailure = (e: WriterError): Error => Object.assign(new Error(e.message), { code: e.code, syscall: e.syscall, path: e.path });

export class Applier implements WhiteoutHost {
  readonly opts: ApplierOptions;
  readonly root: SafeRoot;
  private bytes = 0;
  private entries = 0;
  /** xattr bytes held for the current layer's batch (capped). */
  private xattrBytes = 0;
  private skippedDevices = 0;
  private readonly warned = new Set<string>();
  /** Across layers: directory metadata (applied by finish()) and rootless owners. */
  private readonly kept = new PathTree<KeptState>(() => ({}));
  /** File creation runs on worker threads, in queue order; see writer.ts. */
  private readonly writer: Writer;
  private readonly whiteouts: WhiteoutMode;
  private readonly hooks: ResolveHooks;
  /** This layer's bookkeeping (read by whiteouts.ts). */
  layer = new PathTree<LayerState>(newLayerState);

  constructor(opts: ApplierOptions) {
    this.opts = opts;
    this.root = new SafeRoot(opts.root);
    this.writer = new Writer(opts.writerThreads ?? 2);
    this.whiteouts = opts.mode === 'overlay' ? overlayWhiteouts : flatWhiteouts;
    this.hooks = { drain: () => this.drain(), mkdir: (abs) => this.writer.mkdir(abs) };
  }

  /** Starts a layer. `rootIsEmpty` lets the first layer skip existence checks. */
  beginLayer(rootIsEmpty: boolean): void {
    this.layer = new PathTree<LayerState>(newLayerState);
    this.layer.root.value.verified = true;
    this.layer.root.value.fresh = rootIsEmpty;
    this.xattrBytes = 0;
  }

  /** Called with the first failure of a file-creation thread. */
  setFailureHandler(handler: (error: Error) => void): void {
    this.writer.setErrorHandler((e: WriterError) => handler(writerFailure(e)));
  }

  /** Waits for queued file operations; throws if one failed. */
  async drain(): Promise<void> {
    if (!this.writer.idle) await this.writer.drain();
    const failed = this.writer.failed;
    if (failed) throw writerFailure(failed);
  }

  /** True when the parser should wait (room()) before the next entry. */
  get busy(): boolean {
    return this.writer.full;
  }

  room(): Promise<void> {
    return this.writer.room();
  }

  /** Stops the file-creation threads (after success, or before cleaning up a failure). */
  async close(): Promise<void> {
    await this.writer.stop();
  }

  stats(): ApplyStats {
    const owners: Record<string, [number, number]> = {};
    for (const [rel, node] of this.kept.walk()) if (node.value.owner) owners[text(rel)] = node.value.owner;
    return { entries: this.entries, bytes: this.bytes, skippedDevices: this.skippedDevices, owners };
  }

  /**
   * Handles one entry's header. Returns a sink when the entry's data must be
   * written (regular files), else undefined. On a throw, what earlier entries
   * wrote stays (see the file comment).
   */
  async entry(h: EntryHeader): Promise<FileSink | undefined> {
    if (++this.entries > this.opts.maxEntries) {
      throw new ConveyorError('ERR_LAYER_TOO_LARGE', `layer has more than ${this.opts.maxEntries} entries`);
    }
    const parts = splitName(h.name);
    if (h.type === 'file' || h.type === 'contiguous-file') this.checkSize(h);
    if (parts.length === 0) return this.rootEntry(h);
    const wh = whiteoutOf(parts[parts.length - 1], h.name);
    if (wh) return this.whiteout(parts, wh, h.name);
    const meta = this.metaOf(h);
    switch (h.type) {
      case 'file':
      case 'contiguous-file':
        return this.file(parts, h, meta);
      case 'directory':
        return this.directory(parts, h, meta);
      case 'symlink':
        return this.symlink(parts, h, meta);
      case 'link':
        return this.hardlink(parts, h);
      case 'fifo':
        return this.fifo(parts, h.name, meta);
      case 'character-device':
      case 'block-device':
        this.skippedDevices++;
        this.warnOnce('device', `skipping device node ${show(h.name)} (and any others): containers get their devices from the runtime`);
        return undefined;
      default:
        throw invalid(`entry ${show(h.name)} has an unsupported type ${h.typeflag === undefined ? JSON.stringify(h.type) : showTypeflag(h.typeflag)}`, h.name);
    }
  }

  /**
   * Runs this layer's deferred batches (deferred.ts): mknod, then setfattr.
   * On failure some nodes or xattrs may exist and others not: the layer fails
   * and its staging directory is removed by the caller.
   */
  async finishLayer(): Promise<void> {
    await this.drain();
    await runLayerBatches(this.root, this.layer, this.opts);
    this.layer = new PathTree<LayerState>(newLayerState);
    this.xattrBytes = 0;
  }

  /**
   * Applies directory ownership, modes and times (after everything else; children before their
   * parents). On failure some directories have their final metadata and others not.
   */
  async finish(): Promise<void> {
    await this.drain();
    applyDirMeta(this.root, this.kept, this.opts);
  }

  /** Resolves the parents of `parts` inside the root (paths.ts), in this layer's tree. */
  resolveParent(parts: string[], create: boolean, name: string): Promise<LayerNode | undefined> {
    return this.root.resolveParent(this.layer, parts, create, name, this.hooks);
  }

  /**
   * Removes what is at `parts` (a file, symlink, or a whole directory tree), never following
   * symlinks. On failure part of a tree may be gone while its bookkeeping remains: the layer fails.
   */
  async remove(parts: string[], st: Stats): Promise<void> {
    if (parts.length === 0) throw new ConveyorError('ERR_INTERNAL', '[internal error] refusing to remove the root');
    await this.drain();
    const path = bytes(this.root.abs(parts.join('/')));
    if (st.isDirectory()) rmSync(path, { recursive: true, force: true });
    else unlinkSync(path);
    this.forget(parts);
  }

  private checkSize(h: EntryHeader): void {
    if (!Number.isSafeInteger(h.size) || h.size < 0) throw invalid(`entry ${show(h.name)} has an invalid size`, h.name);
    if (this.bytes + h.size > this.opts.maxBytes) {
      throw new ConveyorError('ERR_LAYER_TOO_LARGE', `unpacking ${show(h.name)} (${h.size} bytes) would pass the limit of ${this.opts.maxBytes} bytes`, {
        hint: 'raise --max-bytes if the image is really this large',
      });
    }
  }

  /** The layer's own root entry (`./`): times and user xattrs only. */
  private rootEntry(h: EntryHeader): undefined {
    if (h.type !== 'directory') throw malicious(`entry ${show(h.name)} would replace the root directory`, h.name);
    // Times only: the root's owner and mode belong to the store (or the --flatten caller).
    this.kept.root.value.dirMeta = { ...this.metaOf(h), rootEntry: true };
    this.collectXattrs(this.layer.root, h, true);
    return undefined;
  }

  private async file(parts: string[], h: EntryHeader, meta: Meta): Promise<FileSink> {
    const { node } = await this.prepare(parts, false, h.name);
    this.bytes += h.size;
    markWritten(node);
    this.collectXattrs(node, h);
    this.recordOwner(parts, meta);
    return fileSink(this.writer, this.root.abs(parts.join('/')), h.size, this.opMeta(meta));
  }

  private async directory(parts: string[], h: EntryHeader, meta: Meta): Promise<undefined> {
    const { node, merge } = await this.prepare(parts, true, h.name);
    if (!merge) {
      this.writer.mkdir(this.root.abs(parts.join('/')));
      node.value.fresh = true;
    }
    node.value.verified = true;
    markWritten(node);
    this.kept.find(parts, true)!.value.dirMeta = meta;
    this.collectXattrs(node, h);
    this.recordOwner(parts, meta);
    return undefined;
  }

  private async symlink(parts: string[], h: EntryHeader, meta: Meta): Promise<undefined> {
    const name = h.name;
    const target = h.linkname ?? '';
    if (target === '' || target.includes('\0') || target.length > 4096) throw invalid(`symlink ${show(name)} has an invalid target`, name);
    const { node } = await this.prepare(parts, false, name);
    // The target is data, written verbatim (absolute targets too) and never followed.
    this.writer.symlink(this.root.abs(parts.join('/')), target, this.opMeta(meta));
    markWritten(node);
    this.collectXattrs(node, h);
    this.recordOwner(parts, meta);
    return undefined;
  }

  private async hardlink(parts: string[], h: EntryHeader): Promise<undefined> {
    const name = h.name;
    // An absolute target names a path in the layer root, as Docker reads it (kaniko writes them).
    const target = h.linkname ?? '';
    const tparts = splitName(target, 'hardlink target', true);
    const trel = tparts.join('/');
    if (tparts.length === 0) throw malicious(`hardlink ${show(name)} points at the root directory`, name);
    if (trel === parts.join('/')) throw invalid(`hardlink ${show(name)} points at itself`, name);
    await this.drain();
    if (!(await this.resolveParent(tparts, false, target))) throw this.missingLinkTarget(name, target);
    const tst = this.root.lstat(trel);
    if (tst === undefined) throw this.missingLinkTarget(name, target);
    if (tst.isDirectory()) throw malicious(`hardlink ${show(name)} points at a directory`, name);
    const { node } = await this.prepare(parts, false, name);
    await this.drain();
    // link(2) does not follow a symlink target: a link to a symlink links the symlink itself.
    linkSync(bytes(this.root.abs(trel)), bytes(this.root.abs(parts.join('/'))));
    markWritten(node);
    return undefined;
  }

  /** Recorded for the layer's mknod batch (deferred.ts): Node cannot make a fifo. */
  private async fifo(parts: string[], name: string, meta: Meta): Promise<undefined> {
    const { node } = await this.prepare(parts, false, name);
    node.value.special = { kind: 'fifo', meta };
    markWritten(node);
    this.recordOwner(parts, meta);
    return undefined;
  }

  /** A whiteout or opaque marker, handled by the mode's functions (whiteouts.ts). */
  private async whiteout(parts: string[], wh: WhiteoutKind, name: string): Promise<undefined> {
    switch (wh.kind) {
      case 'aufs-meta':
        this.warnOnce('aufs', `ignoring AUFS metadata entry ${show(name)}`);
        break;
      case 'opaque':
        await this.whiteouts.opaque(this, parts, name);
        break;
      case 'whiteout':
        // A whiteout never deletes what this layer wrote.
        if (this.layer.find([...parts.slice(0, -1), wh.target], false)?.value.written) break;
        await this.whiteouts.whiteout(this, parts, wh.target, name);
        break;
    }
    return undefined;
  }

  private warnOnce(key: string, message: string): void {
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.opts.warn(message);
  }

  private metaOf(h: EntryHeader): Meta {
    const { uid, gid } = h;
    if (!Number.isInteger(uid) || !Number.isInteger(gid) || uid < 0 || gid < 0 || uid > 0xfffffffe || gid > 0xfffffffe) {
      throw invalid(`entry ${show(h.name)} has an invalid owner ${uid}:${gid}`, h.name);
    }
    if (!Number.isFinite(h.mtime) || !Number.isFinite(h.atime ?? h.mtime)) throw invalid(`entry ${show(h.name)} has an invalid time`, h.name);
    return { uid, gid, mode: h.mode & 0o7777, mtime: h.mtime, atime: h.atime ?? h.mtime };
  }

  /** Forgets everything recorded at or under `parts` (it was removed or replaced). Cannot fail. */
  private forget(parts: string[]): void {
    const l = this.layer.find(parts, false);
    if (l) this.layer.remove(l);
    const k = this.kept.find(parts, false);
    if (k) this.kept.remove(k);
  }

  /**
   * Makes `parts` free for a new entry: resolves its parents and removes what
   * is there, unless both are directories (merge, keep contents). Returns the
   * entry's node and whether a directory is already there. On failure, parents it created stay.
   */
  private async prepare(parts: string[], isDir: boolean, name: string): Promise<{ node: LayerNode; merge: boolean }> {
    const parent = (await this.resolveParent(parts, true, name))!;
    let node = this.layer.ensureChild(parent, parts[parts.length - 1]);
    node.value.special = undefined;
    if (parent.value.fresh && !node.value.written) return { node, merge: false };
    if (node.value.written) await this.drain();
    const st = this.root.lstat(parts.join('/'));
    if (st === undefined) return { node, merge: false };
    if (isDir && st.isDirectory()) return { node, merge: true };
    await this.remove(parts, st);
    node = this.layer.ensureChild(parent, parts[parts.length - 1]);
    return { node, merge: false };
  }

  private recordOwner(parts: string[], meta: Meta): void {
    if ((meta.uid !== 0 || meta.gid !== 0) && !canChown(this.opts, meta)) this.kept.find(parts, true)!.value.owner = [meta.uid, meta.gid];
    else {
      const k = this.kept.find(parts, false);
      if (k) k.value.owner = undefined;
    }
  }

  /** Keeps the entry's restored xattrs (xattrs.ts) for the layer's setfattr batch. */
  private collectXattrs(node: LayerNode, h: EntryHeader, isRoot = false): void {
    node.value.xattrs = undefined;
    if (!h.xattrs) return;
    const { attrs, size } = restoredXattrs(h.name, h.xattrs, isRoot, (key, message) => this.warnOnce(key, message));
    this.xattrBytes += size;
    if (this.xattrBytes > MAX_XATTR_BYTES_PER_LAYER) {
      throw new ConveyorError('ERR_LAYER_TOO_LARGE', `layer carries more than ${MAX_XATTR_BYTES_PER_LAYER} bytes of xattrs`);
    }
    node.value.xattrs = attrs;
  }

  private missingLinkTarget(name: string, target: string): ConveyorError {
    const where = this.opts.mode === 'overlay' ? 'in this layer' : 'in the tree';
    return invalid(`hardlink ${show(name)} points at ${show(target)}, which does not exist ${where}`, name);
  }

  private opMeta(meta: Meta): FileMetaOp {
    return { ...meta, chown: canChown(this.opts, meta) };
  }
}
