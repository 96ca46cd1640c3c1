/**
 * Applies tar entries to a directory, securely.
 *
 * Every path is resolved component by component with lstat inside the root;
 * a symlink in an intermediate component is refused (ERR_LAYER_MALICIOUS),
 * never followed. Existing paths are replaced (unlink, then create with
 * O_EXCL|O_NOFOLLOW), never opened and truncated, so a hardlink to a lower
 * file is never written through. Verified directories are cached (no syscall
 * per component per entry). Names are byte strings (see tarheader.ts) and
 * reach the file system as Buffers, byte for byte.
 *
 * What we know about paths lives in two trees of path components
 * (pathtree.ts): one per layer (verified, created, written, pending
 * whiteouts/fifos, xattrs, opaque markers) and one across layers (deferred
 * directory metadata, rootless owners). Removing a path detaches its
 * subtree from both, so every operation costs what it touches.
 *
 * Two modes:
 *  - overlay: one layer into its own empty directory, made ready to be an
 *    overlayfs lower dir: `.wh.NAME` becomes a 0/0 character device and
 *    `.wh..wh..opq` the `trusted.overlay.opaque=y` xattr (`user.overlay.opaque`
 *    when rootless), both created in one batch process per layer;
 *  - flat: layers applied in order into one directory; whiteouts delete and
 *    opaque markers clear what lower layers put in the directory.
 *
 * File contents are written synchronously from the entry's chunks while zlib
 * inflates the next ones on libuv's thread pool; file metadata goes through
 * the open descriptor (fchown, then fchmod so setuid bits stick, futimes).
 * Directory metadata is applied at the end (creating children changes a
 * directory's mtime, and a read-only directory must stay writable while we
 * fill it). Node has no mknod/mkfifo/xattr API: those are batched per layer
 * into one `sh` running `mknod` and one `setfattr -h --restore=-`, with every
 * path re-verified right before.
 *
 * The layer's own root entry (`./`) never changes the root's owner, mode or
 * ACLs: those are the store's (or the --flatten caller's) business, and an
 * unpacked layer holds setuid files (CVE-2021-41091).
 *
 * On failure the root is left partly written (and every method below leaves
 * it so when it throws); callers unpack into a staging directory and only
 * rename it into place on success.
 */
import { chmodSync, lchownSync, linkSync, lstatSync, lutimesSync, mkdtempSync, readdirSync, renameSync, rmSync, rmdirSync, unlinkSync, type Stats } from 'node:fs';
import { ConveyorError } from '@conveyor/lib-common/errors';
import { invalid, malicious, show, splitName, text, whiteoutOf, type WhiteoutKind } from './names.js';
import { PathTree, type PathNode } from './pathtree.js';
import { showTypeflag } from './tarheader.js';
import type { TarEntryHeader } from './tarparser.js';
import { Writer, type FileMetaOp, type WriterError } from './writer.js';
import { fsTime } from './writer-ops.js';

export type ApplyMode = 'overlay' | 'flat';

export interface ApplierOptions {
  /** Absolute path of an existing directory: the root everything stays inside. */
  root: string;
  mode: ApplyMode;
  /** Do not chown; record ownership instead (see `owners`). */
  rootless: boolean;
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

interface Meta {
  uid: number;
  gid: number;
  mode: number;
  atime: number;
  mtime: number;
}

interface Special {
  kind: 'whiteout' | 'fifo';
  meta?: Meta;
}

/** What this layer did at one path. Reset by beginLayer. */
interface LayerState {
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
interface KeptState {
  /** Directory metadata, applied last. `rootEntry`: times only (the root's owner and mode are not the layer's). */
  dirMeta?: Meta & { rootEntry?: boolean };
  /** Rootless: the owner the layer asked for, when not 0:0. */
  owner?: [number, number];
}

type LayerNode = PathNode<LayerState>;

const newLayerState = (): LayerState => ({ verified: false, fresh: false, written: false, writtenBelow: false, opaque: false });

/** Files up to this size are sent to the writer thread whole; larger ones in chunks. */
const SMALL_FILE = 1024 * 1024;

/** Receives one regular file's data. */
export interface FileSink {
  write(chunk: Uint8Array): void;
  end(): void;
}
/**
 * xattrs we restore; everything else (trusted.*, security.* but capabilities,
 * unknown namespaces) is dropped, and so is user.overlay.*: overlayfs's own
 * metadata in rootless mode (opaque, whiteout, redirect, origin), which only
 * we may write.
 */
function xattrAllowed(name: string): boolean {
  if (name.startsWith('user.overlay.')) return false;
  return name.startsWith('user.') || name === 'security.capability' || isAcl(name);
}

/** POSIX ACLs rewrite a directory's group bits and grant others access: a mode change by another name. */
function isAcl(name: string): boolean {
  return name === 'system.posix_acl_access' || name === 'system.posix_acl_default';
}

/** Linux caps one xattr value at 64 KiB; more per entry is an attack on our memory, not data. */
const MAX_XATTR_BYTES_PER_ENTRY = 64 * 1024;
/** xattrs are kept until the layer's batch is applied: a cap on what one layer may hold. */
const MAX_XATTR_BYTES_PER_LAYER = 16 * 1024 * 1024;

/** A byte string as the Buffer the file system takes. */
const bytes = (s: string): Buffer => Buffer.from(s, 'latin1');

export interface ApplyStats {
  entries: number;
  /** File content bytes written. */
  bytes: number;
  /** Device nodes skipped. */
  skippedDevices: number;
  /** Rootless only: entries not owned by 0:0, with the owner the layer asked for (paths as text). */
  owners: Record<string, [number, number]>;
}

export class Applier {
  readonly opts: ApplierOptions;
  /** The root as a byte string, the prefix of every path we build. */
  private readonly rootBytes: string;
  private bytes = 0;
  private entries = 0;
  /** xattr bytes held for the current layer's batch (capped). */
  private xattrBytes = 0;
  private skippedDevices = 0;
  private readonly warned = new Set<string>();
  /** Across layers: directory metadata (applied by finish()) and rootless owners. */
  private readonly kept = new PathTree<KeptState>(() => ({}));
  /** File creation runs on a worker thread, in queue order; see writer.ts. */
  private readonly writer: Writer;
  /** This layer's bookkeeping. */
  private layer = new PathTree<LayerState>(newLayerState);

  constructor(opts: ApplierOptions) {
    this.opts = opts;
    this.rootBytes = Buffer.from(opts.root).toString('latin1');
    this.writer = new Writer(opts.writerThreads ?? 2);
  }

  /** Starts a layer. `rootIsEmpty` lets the first layer skip existence checks. */
  beginLayer(rootIsEmpty: boolean): void {
    this.layer = new PathTree<LayerState>(newLayerState);
    this.layer.root.value.verified = true;
    this.layer.root.value.fresh = rootIsEmpty;
    this.xattrBytes = 0;
  }

  /** Called with the first failure of the file-creation thread. */
  setFailureHandler(handler: (error: Error) => void): void {
    this.writer.setErrorHandler((e: WriterError) => handler(Object.assign(new Error(e.message), { code: e.code, syscall: e.syscall, path: e.path })));
  }

  /** Waits for queued file operations; throws if one failed. */
  async drain(): Promise<void> {
    if (!this.writer.idle) await this.writer.drain();
    const failed = this.writer.failed;
    if (failed) throw Object.assign(new Error(failed.message), { code: failed.code, syscall: failed.syscall, path: failed.path });
  }

  /** True when the parser should wait (room()) before the next entry. */
  get busy(): boolean {
    return this.writer.full;
  }

  room(): Promise<void> {
    return this.writer.room();
  }

  /** Stops the file-creation thread (after success, or before cleaning up a failure). */
  async close(): Promise<void> {
    await this.writer.stop();
  }

  stats(): ApplyStats {
    const owners: Record<string, [number, number]> = {};
    for (const [rel, node] of this.kept.walk()) if (node.value.owner) owners[text(rel)] = node.value.owner;
    return { entries: this.entries, bytes: this.bytes, skippedDevices: this.skippedDevices, owners };
  }

  /** The byte-string path of `rel` (a byte string relative to the root). */
  private abs(rel: string): string {
    return rel === '' ? this.rootBytes : `${this.rootBytes}/${rel}`;
  }

  private lstat(rel: string): Stats | undefined {
    return lstatSync(bytes(this.abs(rel)), { throwIfNoEntry: false });
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

  private markWritten(node: LayerNode): void {
    node.value.written = true;
    for (let p = node.parent; p && !p.value.writtenBelow; p = p.parent) p.value.writtenBelow = true;
  }

  /**
   * Resolves the parent directories of `parts` (all but the last), inside the
   * root, creating missing ones when `create`. Returns the parent's node, or
   * undefined when one is missing and `create` is false. Throws
   * ERR_LAYER_MALICIOUS on a symlink (having created nothing after it).
   */
  private async resolveParent(parts: string[], create: boolean, name: string): Promise<LayerNode | undefined> {
    let node = this.layer.root;
    let rel = '';
    let missing = false;
    for (let i = 0; i < parts.length - 1; i++) {
      const parent = node;
      rel = i === 0 ? parts[0] : `${rel}/${parts[i]}`;
      node = this.layer.ensureChild(parent, parts[i]);
      const state = node.value;
      if (!missing && state.verified) continue;
      let st: Stats | undefined;
      if (!missing && !(parent.value.fresh && !state.written)) {
        // Something this layer wrote (maybe still queued): look at it as the queue leaves it.
        if (state.written) await this.drain();
        st = this.lstat(rel);
      }
      if (st === undefined) {
        if (!create) return undefined;
        missing = true;
        state.special = undefined;
        this.writer.mkdir(this.abs(rel));
        state.verified = true;
        state.fresh = true;
        this.markWritten(node);
        continue;
      }
      if (st.isSymbolicLink()) throw malicious(`entry ${show(name)} goes through the symlink ${show(rel)}`, name);
      if (!st.isDirectory()) throw invalid(`entry ${show(name)}: ${show(rel)} is not a directory`, name);
      state.verified = true;
    }
    return node;
  }

  /** Forgets everything recorded at or under `parts` (it was removed or replaced). Cannot fail. */
  private forget(parts: string[]): void {
    const l = this.layer.find(parts, false);
    if (l) this.layer.remove(l);
    const k = this.kept.find(parts, false);
    if (k) this.kept.remove(k);
  }

  /**
   * Removes what is at `parts` (a file, symlink, or a whole directory tree), never following
   * symlinks. On failure part of a tree may be gone while its bookkeeping remains: the layer fails.
   */
  private async remove(parts: string[], st: Stats): Promise<void> {
    if (parts.length === 0) throw new ConveyorError('ERR_INTERNAL', '[internal error] refusing to remove the root');
    await this.drain();
    const path = bytes(this.abs(parts.join('/')));
    if (st.isDirectory()) rmSync(path, { recursive: true, force: true });
    else unlinkSync(path);
    this.forget(parts);
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
    const st = this.lstat(parts.join('/'));
    if (st === undefined) return { node, merge: false };
    if (isDir && st.isDirectory()) return { node, merge: true };
    await this.remove(parts, st);
    node = this.layer.ensureChild(parent, parts[parts.length - 1]);
    return { node, merge: false };
  }

  private recordOwner(parts: string[], meta: Meta): void {
    if (this.opts.rootless && (meta.uid !== 0 || meta.gid !== 0)) this.kept.find(parts, true)!.value.owner = [meta.uid, meta.gid];
    else {
      const k = this.kept.find(parts, false);
      if (k) k.value.owner = undefined;
    }
  }

  private collectXattrs(node: LayerNode, h: EntryHeader, isRoot = false): void {
    node.value.xattrs = undefined;
    if (!h.xattrs) return;
    let found: Map<string, string> | undefined;
    let size = 0;
    for (const [attr, value] of h.xattrs) {
      if (!xattrAllowed(attr)) {
        this.warnOnce(`xattr:${attr}`, `dropping xattr ${show(attr)} (on ${show(h.name)} and maybe others): only user.* (but user.overlay.*), security.capability and POSIX ACLs are restored`);
        continue;
      }
      if (isRoot && isAcl(attr)) {
        this.warnOnce(`root-acl`, `dropping the ACL ${show(attr)} of the layer's root entry: the root's permissions are not the layer's to set`);
        continue;
      }
      size += attr.length + value.length;
      (found ??= new Map()).set(attr, value);
    }
    if (size > MAX_XATTR_BYTES_PER_ENTRY) {
      throw new ConveyorError('ERR_LAYER_TOO_LARGE', `${show(h.name)} carries ${size} bytes of xattrs (limit ${MAX_XATTR_BYTES_PER_ENTRY})`);
    }
    this.xattrBytes += size;
    if (this.xattrBytes > MAX_XATTR_BYTES_PER_LAYER) {
      throw new ConveyorError('ERR_LAYER_TOO_LARGE', `layer carries more than ${MAX_XATTR_BYTES_PER_LAYER} bytes of xattrs`);
    }
    node.value.xattrs = found;
  }

  /**
   * Handles one entry's header. Returns a sink when the entry's data must be
   * written (regular files), else undefined. On a throw, what earlier entries
   * wrote stays (see the class comment).
   */
  async entry(h: EntryHeader): Promise<FileSink | undefined> {
    if (++this.entries > this.opts.maxEntries) {
      throw new ConveyorError('ERR_LAYER_TOO_LARGE', `layer has more than ${this.opts.maxEntries} entries`);
    }
    const name = h.name;
    const parts = splitName(name);
    const rel = parts.join('/');
    if (h.type === 'file' || h.type === 'contiguous-file') {
      if (!Number.isSafeInteger(h.size) || h.size < 0) throw invalid(`entry ${show(name)} has an invalid size`, name);
      if (this.bytes + h.size > this.opts.maxBytes) {
        throw new ConveyorError('ERR_LAYER_TOO_LARGE', `unpacking ${show(name)} (${h.size} bytes) would pass the limit of ${this.opts.maxBytes} bytes`, {
          hint: 'raise --max-bytes if the image is really this large',
        });
      }
    }
    if (parts.length === 0) {
      if (h.type !== 'directory') throw malicious(`entry ${show(name)} would replace the root directory`, name);
      // Times only: the root's owner and mode belong to the store (or the --flatten caller).
      this.kept.root.value.dirMeta = { ...this.metaOf(h), rootEntry: true };
      this.collectXattrs(this.layer.root, h, true);
      return undefined;
    }
    const wh = whiteoutOf(parts[parts.length - 1], name);
    if (wh) {
      await this.whiteout(parts, wh, name);
      return undefined;
    }
    const meta = this.metaOf(h);
    const abs = this.abs(rel);
    switch (h.type) {
      case 'file':
      case 'contiguous-file': {
        const { node } = await this.prepare(parts, false, name);
        this.bytes += h.size;
        this.markWritten(node);
        this.collectXattrs(node, h);
        this.recordOwner(parts, meta);
        return this.fileSink(abs, h.size, this.opMeta(meta));
      }
      case 'directory': {
        const { node, merge } = await this.prepare(parts, true, name);
        if (!merge) {
          this.writer.mkdir(abs);
          node.value.fresh = true;
        }
        node.value.verified = true;
        this.markWritten(node);
        this.kept.find(parts, true)!.value.dirMeta = meta;
        this.collectXattrs(node, h);
        this.recordOwner(parts, meta);
        return undefined;
      }
      case 'symlink': {
        const target = h.linkname ?? '';
        if (target === '' || target.includes('\0') || target.length > 4096) throw invalid(`symlink ${show(name)} has an invalid target`, name);
        const { node } = await this.prepare(parts, false, name);
        // The target is data, written verbatim (absolute targets too) and never followed.
        this.writer.symlink(abs, target, this.opMeta(meta));
        this.markWritten(node);
        this.collectXattrs(node, h);
        this.recordOwner(parts, meta);
        return undefined;
      }
      case 'link': {
        // An absolute target names a path in the layer root, as Docker reads it (kaniko writes them).
        const target = h.linkname ?? '';
        const tparts = splitName(target, 'hardlink target', true);
        const trel = tparts.join('/');
        if (tparts.length === 0) throw malicious(`hardlink ${show(name)} points at the root directory`, name);
        if (trel === rel) throw invalid(`hardlink ${show(name)} points at itself`, name);
        await this.drain();
        if (!(await this.resolveParent(tparts, false, target))) throw this.missingLinkTarget(name, target);
        const tst = this.lstat(trel);
        if (tst === undefined) throw this.missingLinkTarget(name, target);
        if (tst.isDirectory()) throw malicious(`hardlink ${show(name)} points at a directory`, name);
        const { node } = await this.prepare(parts, false, name);
        await this.drain();
        // link(2) does not follow a symlink target: a link to a symlink links the symlink itself.
        linkSync(bytes(this.abs(trel)), bytes(abs));
        this.markWritten(node);
        return undefined;
      }
      case 'fifo': {
        const { node } = await this.prepare(parts, false, name);
        node.value.special = { kind: 'fifo', meta };
        this.markWritten(node);
        this.recordOwner(parts, meta);
        return undefined;
      }
      case 'character-device':
      case 'block-device':
        this.skippedDevices++;
        this.warnOnce('device', `skipping device node ${show(name)} (and any others): containers get their devices from the runtime`);
        return undefined;
      default:
        throw invalid(`entry ${show(name)} has an unsupported type ${h.typeflag === undefined ? JSON.stringify(h.type) : showTypeflag(h.typeflag)}`, name);
    }
  }

  private missingLinkTarget(name: string, target: string): ConveyorError {
    const where = this.opts.mode === 'overlay' ? 'in this layer' : 'in the tree';
    return invalid(`hardlink ${show(name)} points at ${show(target)}, which does not exist ${where}`, name);
  }

  private opMeta(meta: Meta): FileMetaOp {
    return { ...meta, chown: !this.opts.rootless };
  }

  /** Small files go to the writer whole (one operation); large ones are streamed in chunks. */
  private fileSink(abs: string, size: number, meta: FileMetaOp): FileSink {
    const writer = this.writer;
    if (size <= SMALL_FILE) {
      const chunks: Uint8Array[] = [];
      let length = 0;
      return {
        write(chunk) {
          chunks.push(chunk);
          length += chunk.length;
        },
        end() {
          writer.file(abs, chunks, length, meta);
        },
      };
    }
    const id = writer.open(abs);
    return {
      write(chunk) {
        writer.write(id, chunk);
      },
      end() {
        writer.close(id, meta);
      },
    };
  }

  /** Applies a whiteout or opaque marker (overlay: recorded for finishLayer; flat: deleted now, possibly partly on failure). */
  private async whiteout(parts: string[], wh: WhiteoutKind, name: string): Promise<void> {
    if (wh.kind === 'aufs-meta') {
      this.warnOnce('aufs', `ignoring AUFS metadata entry ${show(name)}`);
      return;
    }
    const dirParts = parts.slice(0, -1);
    if (wh.kind === 'opaque') {
      if (this.opts.mode === 'overlay') {
        (await this.resolveParent(parts, true, name))!.value.opaque = true;
        return;
      }
      await this.drain();
      const dir = await this.resolveParent(parts, false, name);
      if (dir) await this.clearOpaque(dirParts, dir);
      return;
    }
    const targetParts = [...dirParts, wh.target];
    if (this.layer.find(targetParts, false)?.value.written) return;
    if (this.opts.mode === 'overlay') {
      const dir = (await this.resolveParent(parts, true, name))!;
      this.layer.ensureChild(dir, wh.target).value.special = { kind: 'whiteout' };
      return;
    }
    await this.drain();
    if (!(await this.resolveParent(parts, false, name))) return;
    const st = this.lstat(targetParts.join('/'));
    if (st) await this.remove(targetParts, st);
  }

  /** Flat mode: removes what lower layers put in the directory, keeping what this layer wrote (its children only: costs what it touches). */
  private async clearOpaque(dirParts: string[], dir: LayerNode): Promise<void> {
    const keep = new Set<string>();
    if (dir.children) for (const [child, node] of dir.children) if (node.value.written || node.value.writtenBelow) keep.add(child);
    const dirRel = dirParts.join('/');
    for (const child of readdirSync(bytes(this.abs(dirRel)), { encoding: 'latin1' })) {
      if (keep.has(child)) continue;
      const childParts = [...dirParts, child];
      const st = this.lstat(childParts.join('/'));
      if (st) await this.remove(childParts, st);
    }
  }

  /**
   * Re-verifies, without the cache, that every component of `rel` below the
   * root is a real directory (not a symlink). Returns the final lstat, or
   * undefined when the final component is missing.
   */
  private verifyChain(rel: string, memo: Map<string, boolean>): Stats | undefined {
    const parts = rel === '' ? [] : rel.split('/');
    let prefix = '';
    for (let i = 0; i < parts.length - 1; i++) {
      prefix = i === 0 ? parts[0] : `${prefix}/${parts[i]}`;
      let ok = memo.get(prefix);
      if (ok === undefined) {
        const st = this.lstat(prefix);
        ok = st !== undefined && st.isDirectory() && !st.isSymbolicLink();
        memo.set(prefix, ok);
      }
      if (!ok) throw malicious(`${show(rel)} is no longer inside a plain directory tree`, rel);
    }
    return this.lstat(rel);
  }

  /**
   * Creates this layer's whiteouts and fifos. `mknod` runs in a child
   * process that only takes text arguments, so nodes are made under ASCII
   * names in a fresh directory inside the root and renamed into place from
   * here, where paths are Buffers (names that are not UTF-8 stay exact).
   * On failure the temporary directory may remain inside the root.
   */
  private async makeSpecials(specials: [string, Special][], memo: Map<string, boolean>): Promise<void> {
    for (const [rel] of specials) {
      if (this.verifyChain(rel, memo) !== undefined) throw invalid(`cannot create ${show(rel)}: something is already there`, rel);
    }
    const tmp = mkdtempSync(`${this.opts.root}/.conveyor-mknod-`);
    const { mknodBatch } = await import('./batch.js');
    await mknodBatch(specials.map(([, special], i) => `${special.kind === 'fifo' ? 'p' : 'c'}:${tmp}/${i}`));
    specials.forEach(([rel], i) => renameSync(`${tmp}/${i}`, bytes(this.abs(rel))));
    rmdirSync(tmp);
    for (const [rel, special] of specials) {
      if (special.kind !== 'fifo' || !special.meta) continue;
      const st = this.verifyChain(rel, memo);
      if (!st?.isFIFO()) throw invalid(`fifo ${show(rel)} vanished`, rel);
      const meta = special.meta;
      const path = bytes(this.abs(rel));
      if (!this.opts.rootless) lchownSync(path, meta.uid, meta.gid);
      chmodSync(path, meta.mode);
      lutimesSync(path, fsTime(meta.atime), fsTime(meta.mtime));
    }
  }

  /**
   * Runs this layer's batches: mknod (whiteouts, fifos), then setfattr (xattrs, opaque markers).
   * On failure some nodes or xattrs may exist and others not (and the mknod temporary directory may
   * remain inside the root): the layer fails and its staging directory is removed by the caller.
   */
  async finishLayer(): Promise<void> {
    await this.drain();
    const memo = new Map<string, boolean>();
    const specials: [string, Special][] = [];
    const xattrs: [string, Map<string, string>][] = [];
    const opaque: string[] = [];
    if (this.layer.root.value.xattrs) xattrs.push(['', this.layer.root.value.xattrs]);
    for (const [rel, node] of this.layer.walk()) {
      const v = node.value;
      if (v.special) specials.push([rel, v.special]);
      if (v.xattrs) xattrs.push([rel, v.xattrs]);
      if (v.opaque) opaque.push(rel);
    }
    if (this.layer.root.value.opaque) opaque.push('');
    if (specials.length > 0) await this.makeSpecials(specials, memo);
    const opaqueName = this.opts.rootless ? 'user.overlay.opaque' : 'trusted.overlay.opaque';
    if (xattrs.length > 0 || opaque.length > 0) {
      const entries: { path: string; attrs: [string, Buffer][] }[] = [];
      for (const [rel, attrs] of xattrs) {
        if (this.verifyChain(rel, memo) === undefined) continue;
        entries.push({ path: this.abs(rel), attrs: [...attrs].map(([k, v]) => [k, bytes(v)]) });
      }
      for (const rel of opaque) {
        const st = this.verifyChain(rel, memo);
        if (!st || !st.isDirectory()) throw malicious(`opaque directory ${show(rel)} is not a plain directory`, rel);
        entries.push({ path: this.abs(rel), attrs: [[opaqueName, Buffer.from('y')]] });
      }
      const { setfattrBatch } = await import('./batch.js');
      const failure = await setfattrBatch(entries);
      if (failure) {
        if (this.opts.rootless && opaque.length === 0) this.opts.warn(`some xattrs could not be set (rootless): ${failure}`);
        else throw new ConveyorError('ERR_STORE_IO', `setting xattrs failed: ${failure}`);
      }
    }
    this.layer = new PathTree<LayerState>(newLayerState);
    this.xattrBytes = 0;
  }

  /**
   * Applies directory ownership, modes and times (after everything else; children before their
   * parents). On failure some directories have their final metadata and others not.
   */
  async finish(): Promise<void> {
    await this.drain();
    const memo = new Map<string, boolean>();
    const dirs = this.kept.walk(true);
    dirs.push(['', this.kept.root]);
    for (const [rel, node] of dirs) {
      const meta = node.value.dirMeta;
      if (!meta) continue;
      const st = this.verifyChain(rel, memo);
      if (!st || !st.isDirectory()) continue;
      const path = bytes(this.abs(rel));
      if (!meta.rootEntry) {
        if (!this.opts.rootless) lchownSync(path, meta.uid, meta.gid);
        chmodSync(path, meta.mode);
      }
      lutimesSync(path, fsTime(meta.atime), fsTime(meta.mtime));
      node.value.dirMeta = undefined;
    }
  }
}
