/**
 * Applies tar entries to a directory, securely.
 *
 * Every path is resolved component by component with lstat inside the root;
 * a symlink in an intermediate component is refused (ERR_LAYER_MALICIOUS),
 * never followed. Existing paths are replaced (unlink, then create with
 * O_EXCL|O_NOFOLLOW), never opened and truncated, so a hardlink to a lower
 * file is never written through. Verified directories are cached (no syscall
 * per component per entry); the cache entries under a path are dropped when
 * an entry replaces or removes it.
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
 * On failure the root is left partly written; callers unpack into a staging
 * directory and only rename it into place on success.
 */
import {
  lchownSync,
  linkSync,
  lstatSync,
  lutimesSync,
  chmodSync,
  readdirSync,
  rmSync,
  unlinkSync,
  type Stats,
} from 'node:fs';
import { ConveyorError } from '@conveyor/lib-common/errors';
import { invalid, malicious, splitName, whiteoutOf, type WhiteoutKind } from './names.js';
import { XATTR_PAX_PREFIX } from './tarparser.js';
import { Writer, type FileMetaOp, type WriterError } from './writer.js';

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

/** The parts of a tar header we act on (tar-stream's Header plus its PAX records). */
export interface EntryHeader {
  name: string;
  type: string | null;
  size: number;
  mode: number;
  uid: number;
  gid: number;
  mtime: Date;
  linkname?: string | null;
  pax?: Record<string, string> | null;
}

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
  return name.startsWith('user.') || name === 'security.capability' || name === 'system.posix_acl_access' || name === 'system.posix_acl_default';
}

/** Linux caps one xattr value at 64 KiB; more per entry is an attack on our memory, not data. */
const MAX_XATTR_BYTES_PER_ENTRY = 64 * 1024;
/** xattrs are kept until the layer's batch is applied: a cap on what one layer may hold. */
const MAX_XATTR_BYTES_PER_LAYER = 16 * 1024 * 1024;

function parentOf(rel: string): string {
  const slash = rel.lastIndexOf('/');
  return slash < 0 ? '' : rel.slice(0, slash);
}

function under(key: string, rel: string): boolean {
  return rel === '' || key === rel || key.startsWith(`${rel}/`);
}

export interface ApplyStats {
  entries: number;
  /** File content bytes written. */
  bytes: number;
  /** Device nodes skipped. */
  skippedDevices: number;
  /** Rootless only: entries not owned by 0:0, with the owner the layer asked for. */
  owners: Record<string, [number, number]>;
}

export class Applier {
  readonly opts: ApplierOptions;
  private bytes = 0;
  private entries = 0;
  /** xattr bytes held for the current layer's batch (capped). */
  private xattrBytes = 0;
  private skippedDevices = 0;
  private readonly warned = new Set<string>();
  /** Directory metadata applied by finish(). */
  private readonly dirMeta = new Map<string, Meta>();
  private readonly owners = new Map<string, [number, number]>();
  /** File creation runs on a worker thread, in queue order; see writer.ts. */
  private readonly writer: Writer;

  // Per layer.
  /** Directories verified to be real directories (not symlinks) inside the root. */
  private verified = new Set<string>(['']);
  /** Directories created empty during this layer: their children exist only if written this layer. */
  private fresh = new Set<string>();
  /** Paths this layer wrote: whiteouts and opaque markers of this layer never delete them. */
  private written = new Set<string>();
  private special = new Map<string, Special>();
  private xattrs = new Map<string, Map<string, string>>();
  private opaque = new Set<string>();

  constructor(opts: ApplierOptions) {
    this.opts = opts;
    this.writer = new Writer(opts.writerThreads ?? 2);
  }

  /** Starts a layer. `rootIsEmpty` lets the first layer skip existence checks. */
  beginLayer(rootIsEmpty: boolean): void {
    this.verified = new Set(['']);
    this.fresh = new Set(rootIsEmpty ? [''] : []);
    this.written = new Set();
    this.special = new Map();
    this.xattrs = new Map();
    this.opaque = new Set();
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
    return { entries: this.entries, bytes: this.bytes, skippedDevices: this.skippedDevices, owners: Object.fromEntries(this.owners) };
  }

  private abs(rel: string): string {
    return rel === '' ? this.opts.root : `${this.opts.root}/${rel}`;
  }

  private warnOnce(key: string, message: string): void {
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.opts.warn(message);
  }

  private metaOf(h: EntryHeader): Meta {
    const pax = h.pax ?? {};
    const num = (key: string, fallback: number): number => {
      const value = pax[key];
      if (value === undefined) return fallback;
      const n = Number(value);
      return Number.isFinite(n) ? n : fallback;
    };
    const uid = num('uid', h.uid);
    const gid = num('gid', h.gid);
    if (!Number.isInteger(uid) || !Number.isInteger(gid) || uid < 0 || gid < 0 || uid > 0xfffffffe || gid > 0xfffffffe) {
      throw invalid(`entry ${JSON.stringify(h.name)} has an invalid owner ${uid}:${gid}`, h.name);
    }
    const mtime = num('mtime', h.mtime instanceof Date && !Number.isNaN(h.mtime.getTime()) ? h.mtime.getTime() / 1000 : 0);
    const atime = num('atime', mtime);
    return { uid, gid, mode: h.mode & 0o7777, mtime, atime };
  }

  /**
   * Resolves the parent directories of `parts` (all but the last), inside the
   * root, creating missing ones when `create`. Returns false when one is
   * missing and `create` is false. Throws ERR_LAYER_MALICIOUS on a symlink.
   */
  private async resolveParent(parts: string[], create: boolean, name: string): Promise<boolean> {
    let rel = '';
    let missing = false;
    for (let i = 0; i < parts.length - 1; i++) {
      const parent = rel;
      rel = i === 0 ? parts[0] : `${rel}/${parts[i]}`;
      if (!missing && this.verified.has(rel)) continue;
      let st: Stats | undefined;
      if (!missing && !(this.fresh.has(parent) && !this.written.has(rel))) {
        // Something this layer wrote (maybe still queued): look at it as the queue leaves it.
        if (this.written.has(rel)) await this.drain();
        st = lstatSync(this.abs(rel), { throwIfNoEntry: false });
      }
      if (st === undefined) {
        if (!create) return false;
        missing = true;
        this.special.delete(rel);
        this.writer.mkdir(this.abs(rel));
        this.verified.add(rel);
        this.fresh.add(rel);
        this.written.add(rel);
        continue;
      }
      if (st.isSymbolicLink()) throw malicious(`entry ${JSON.stringify(name)} goes through the symlink ${JSON.stringify(rel)}`, name);
      if (!st.isDirectory()) throw invalid(`entry ${JSON.stringify(name)}: ${JSON.stringify(rel)} is not a directory`, name);
      this.verified.add(rel);
    }
    return true;
  }

  /** Forgets everything recorded at or under `rel` (it was removed or replaced). */
  private forget(rel: string, wasDir: boolean): void {
    if (!wasDir) {
      this.verified.delete(rel);
      this.fresh.delete(rel);
      this.dirMeta.delete(rel);
      this.special.delete(rel);
      this.xattrs.delete(rel);
      this.opaque.delete(rel);
      this.owners.delete(rel);
      return;
    }
    for (const set of [this.verified, this.fresh, this.opaque]) for (const key of set) if (key !== '' && under(key, rel)) set.delete(key);
    for (const map of [this.dirMeta, this.special, this.xattrs, this.owners] as Map<string, unknown>[]) {
      for (const key of map.keys()) if (key !== '' && under(key, rel)) map.delete(key);
    }
  }

  /** Removes what is at `rel` (a file, symlink, or a whole directory tree), never following symlinks. */
  private async remove(rel: string, st: Stats): Promise<void> {
    if (rel === '') throw new ConveyorError('ERR_INTERNAL', '[internal error] refusing to remove the root');
    await this.drain();
    if (st.isDirectory()) rmSync(this.abs(rel), { recursive: true, force: true });
    else unlinkSync(this.abs(rel));
    this.forget(rel, st.isDirectory());
  }

  /**
   * Makes `rel` free for a new entry: resolves its parents and removes what is
   * there, unless both are directories (then returns true: merge, keep contents).
   */
  private async prepare(parts: string[], rel: string, isDir: boolean, name: string): Promise<boolean> {
    await this.resolveParent(parts, true, name);
    const parent = parentOf(rel);
    this.special.delete(rel);
    if (this.fresh.has(parent) && !this.written.has(rel)) return false;
    if (this.written.has(rel)) await this.drain();
    const st = lstatSync(this.abs(rel), { throwIfNoEntry: false });
    if (st === undefined) return false;
    if (isDir && st.isDirectory()) return true;
    await this.remove(rel, st);
    return false;
  }

  private recordOwner(rel: string, meta: Meta): void {
    if (this.opts.rootless && (meta.uid !== 0 || meta.gid !== 0)) this.owners.set(rel, [meta.uid, meta.gid]);
    else this.owners.delete(rel);
  }

  private collectXattrs(rel: string, h: EntryHeader): void {
    this.xattrs.delete(rel);
    if (!h.pax) return;
    let found: Map<string, string> | undefined;
    let bytes = 0;
    for (const key of Object.keys(h.pax)) {
      if (!key.startsWith(XATTR_PAX_PREFIX)) continue;
      const attr = key.slice(XATTR_PAX_PREFIX.length);
      if (!xattrAllowed(attr)) {
        this.warnOnce(`xattr:${attr}`, `dropping xattr ${attr} (on ${JSON.stringify(h.name)} and maybe others): only user.* (but user.overlay.*), security.capability and POSIX ACLs are restored`);
        continue;
      }
      bytes += attr.length + h.pax[key].length;
      (found ??= new Map()).set(attr, h.pax[key]);
    }
    if (bytes > MAX_XATTR_BYTES_PER_ENTRY) {
      throw new ConveyorError('ERR_LAYER_TOO_LARGE', `${JSON.stringify(h.name)} carries ${bytes} bytes of xattrs (limit ${MAX_XATTR_BYTES_PER_ENTRY})`);
    }
    this.xattrBytes += bytes;
    if (this.xattrBytes > MAX_XATTR_BYTES_PER_LAYER) {
      throw new ConveyorError('ERR_LAYER_TOO_LARGE', `layer carries more than ${MAX_XATTR_BYTES_PER_LAYER} bytes of xattrs`);
    }
    if (found) this.xattrs.set(rel, found);
  }

  /**
   * Handles one entry's header. Returns an open descriptor when the entry's
   * data must be written to it (then call writeData and finishFile), else undefined.
   */
  async entry(h: EntryHeader): Promise<FileSink | undefined> {
    if (++this.entries > this.opts.maxEntries) {
      throw new ConveyorError('ERR_LAYER_TOO_LARGE', `layer has more than ${this.opts.maxEntries} entries`);
    }
    const name = h.name;
    const parts = splitName(name);
    const rel = parts.join('/');
    if (h.type === 'file' || h.type === 'contiguous-file') {
      if (!Number.isSafeInteger(h.size) || h.size < 0) throw invalid(`entry ${JSON.stringify(name)} has an invalid size`, name);
      if (this.bytes + h.size > this.opts.maxBytes) {
        throw new ConveyorError('ERR_LAYER_TOO_LARGE', `unpacking ${JSON.stringify(name)} (${h.size} bytes) would pass the limit of ${this.opts.maxBytes} bytes`, {
          hint: 'raise --max-bytes if the image is really this large',
        });
      }
    }
    if (parts.length === 0) {
      if (h.type !== 'directory') throw malicious(`entry ${JSON.stringify(name)} would replace the root directory`, name);
      this.dirMeta.set('', this.metaOf(h));
      this.collectXattrs('', h);
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
        await this.prepare(parts, rel, false, name);
        this.bytes += h.size;
        this.written.add(rel);
        this.collectXattrs(rel, h);
        this.recordOwner(rel, meta);
        return this.fileSink(abs, h.size, this.opMeta(meta));
      }
      case 'directory': {
        if (!(await this.prepare(parts, rel, true, name))) {
          this.writer.mkdir(abs);
          this.fresh.add(rel);
        }
        this.verified.add(rel);
        this.written.add(rel);
        this.dirMeta.set(rel, meta);
        this.collectXattrs(rel, h);
        this.recordOwner(rel, meta);
        return undefined;
      }
      case 'symlink': {
        const target = h.linkname ?? '';
        if (target === '' || target.includes('\0') || Buffer.byteLength(target) > 4096) throw invalid(`symlink ${JSON.stringify(name)} has an invalid target`, name);
        await this.prepare(parts, rel, false, name);
        // The target is data, written verbatim (absolute targets too) and never followed.
        this.writer.symlink(abs, target, this.opMeta(meta));
        this.written.add(rel);
        this.collectXattrs(rel, h);
        this.recordOwner(rel, meta);
        return undefined;
      }
      case 'link': {
        const tparts = splitName(h.linkname ?? '', 'hardlink target');
        const trel = tparts.join('/');
        if (tparts.length === 0) throw malicious(`hardlink ${JSON.stringify(name)} points at the root directory`, name);
        if (trel === rel) throw invalid(`hardlink ${JSON.stringify(name)} points at itself`, name);
        await this.drain();
        if (!(await this.resolveParent(tparts, false, h.linkname ?? ''))) throw this.missingLinkTarget(name, h.linkname ?? '');
        const tst = lstatSync(this.abs(trel), { throwIfNoEntry: false });
        if (tst === undefined) throw this.missingLinkTarget(name, h.linkname ?? '');
        if (tst.isDirectory()) throw malicious(`hardlink ${JSON.stringify(name)} points at a directory`, name);
        await this.prepare(parts, rel, false, name);
        await this.drain();
        // link(2) does not follow a symlink target: a link to a symlink links the symlink itself.
        linkSync(this.abs(trel), abs);
        this.written.add(rel);
        return undefined;
      }
      case 'fifo': {
        await this.prepare(parts, rel, false, name);
        this.special.set(rel, { kind: 'fifo', meta });
        this.written.add(rel);
        this.recordOwner(rel, meta);
        return undefined;
      }
      case 'character-device':
      case 'block-device':
        this.skippedDevices++;
        this.warnOnce('device', `skipping device node ${JSON.stringify(name)} (and any others): containers get their devices from the runtime`);
        return undefined;
      default:
        throw invalid(`entry ${JSON.stringify(name)} has an unsupported type ${JSON.stringify(h.type)}`, name);
    }
  }

  private missingLinkTarget(name: string, target: string): ConveyorError {
    const where = this.opts.mode === 'overlay' ? 'in this layer' : 'in the tree';
    return invalid(`hardlink ${JSON.stringify(name)} points at ${JSON.stringify(target)}, which does not exist ${where}`, name);
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

  private async whiteout(parts: string[], wh: WhiteoutKind, name: string): Promise<void> {
    const dirRel = parts.slice(0, -1).join('/');
    if (wh.kind === 'aufs-meta') {
      this.warnOnce('aufs', `ignoring AUFS metadata entry ${JSON.stringify(name)}`);
      return;
    }
    if (wh.kind === 'opaque') {
      if (this.opts.mode === 'overlay') {
        await this.resolveParent(parts, true, name);
        this.opaque.add(dirRel);
        return;
      }
      await this.drain();
      if (!(await this.resolveParent(parts, false, name))) return;
      await this.clearOpaque(dirRel);
      return;
    }
    const targetRel = dirRel === '' ? wh.target : `${dirRel}/${wh.target}`;
    if (this.written.has(targetRel)) return;
    if (this.opts.mode === 'overlay') {
      await this.resolveParent(parts, true, name);
      this.special.set(targetRel, { kind: 'whiteout' });
      return;
    }
    await this.drain();
    if (!(await this.resolveParent(parts, false, name))) return;
    const st = lstatSync(this.abs(targetRel), { throwIfNoEntry: false });
    if (st) await this.remove(targetRel, st);
  }

  /** Flat mode: removes what lower layers put in `dirRel`, keeping what this layer wrote. */
  private async clearOpaque(dirRel: string): Promise<void> {
    const keep = new Set<string>();
    const prefix = dirRel === '' ? '' : `${dirRel}/`;
    for (const key of this.written) {
      if (key.startsWith(prefix) && key.length > prefix.length) {
        const rest = key.slice(prefix.length);
        const slash = rest.indexOf('/');
        keep.add(slash < 0 ? rest : rest.slice(0, slash));
      }
    }
    for (const child of readdirSync(this.abs(dirRel))) {
      if (keep.has(child)) continue;
      const childRel = `${prefix}${child}`;
      const st = lstatSync(this.abs(childRel), { throwIfNoEntry: false });
      if (st) await this.remove(childRel, st);
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
        const st = lstatSync(this.abs(prefix), { throwIfNoEntry: false });
        ok = st !== undefined && st.isDirectory() && !st.isSymbolicLink();
        memo.set(prefix, ok);
      }
      if (!ok) throw malicious(`${JSON.stringify(rel)} is no longer inside a plain directory tree`, rel);
    }
    return lstatSync(this.abs(rel), { throwIfNoEntry: false });
  }

  /** Runs this layer's batches: mknod (whiteouts, fifos), then setfattr (xattrs, opaque markers). */
  async finishLayer(): Promise<void> {
    await this.drain();
    const memo = new Map<string, boolean>();
    if (this.special.size > 0) {
      const args: string[] = [];
      for (const [rel, special] of this.special) {
        if (this.verifyChain(rel, memo) !== undefined) throw invalid(`cannot create ${JSON.stringify(rel)}: something is already there`, rel);
        args.push(`${special.kind === 'fifo' ? 'p' : 'c'}:${this.abs(rel)}`);
      }
      const { mknodBatch } = await import('./batch.js');
      await mknodBatch(args);
      for (const [rel, special] of this.special) {
        if (special.kind !== 'fifo' || !special.meta) continue;
        const st = this.verifyChain(rel, memo);
        if (!st?.isFIFO()) throw invalid(`fifo ${JSON.stringify(rel)} vanished`, rel);
        const meta = special.meta;
        if (!this.opts.rootless) lchownSync(this.abs(rel), meta.uid, meta.gid);
        chmodSync(this.abs(rel), meta.mode);
        lutimesSync(this.abs(rel), meta.atime, meta.mtime);
      }
    }
    const opaqueName = this.opts.rootless ? 'user.overlay.opaque' : 'trusted.overlay.opaque';
    if (this.xattrs.size > 0 || this.opaque.size > 0) {
      const entries: { path: string; attrs: [string, Buffer][] }[] = [];
      for (const [rel, attrs] of this.xattrs) {
        if (this.verifyChain(rel, memo) === undefined) continue;
        entries.push({ path: this.abs(rel), attrs: [...attrs].map(([k, v]) => [k, Buffer.from(v, 'latin1')]) });
      }
      for (const rel of this.opaque) {
        const st = this.verifyChain(rel, memo);
        if (!st || !st.isDirectory()) throw malicious(`opaque directory ${JSON.stringify(rel)} is not a plain directory`, rel);
        entries.push({ path: this.abs(rel), attrs: [[opaqueName, Buffer.from('y')]] });
      }
      const { setfattrBatch } = await import('./batch.js');
      const failure = await setfattrBatch(entries);
      if (failure) {
        if (this.opts.rootless && this.opaque.size === 0) this.opts.warn(`some xattrs could not be set (rootless): ${failure}`);
        else throw new ConveyorError('ERR_STORE_IO', `setting xattrs failed: ${failure}`);
      }
    }
    this.special = new Map();
    this.xattrs = new Map();
    this.xattrBytes = 0;
    this.opaque = new Set();
  }

  /** Applies directory ownership, modes and times (after everything else). */
  async finish(): Promise<void> {
    await this.drain();
    const memo = new Map<string, boolean>();
    for (const [rel, meta] of this.dirMeta) {
      const st = this.verifyChain(rel, memo);
      if (!st || !st.isDirectory()) continue;
      const abs = this.abs(rel);
      if (!this.opts.rootless) lchownSync(abs, meta.uid, meta.gid);
      chmodSync(abs, meta.mode);
      lutimesSync(abs, meta.atime, meta.mtime);
    }
    this.dirMeta.clear();
  }
}
