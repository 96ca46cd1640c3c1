/**
 * packLayer: an overlay upper dir (what one build step changed) -> an OCI
 * layer blob in the store, reproducibly, so the same tree gives the same
 * diff ID and digest whatever its inode numbers, readdir order or (with
 * `sourceDateEpoch`) mtimes above the epoch.
 *
 * The tree is walked here, once (walk.ts-style: readdir + lstat, xattrs from
 * one `getfattr -R` run), and handed to tar-fs's pack as an explicit entry
 * list through a file-system shim, so tar-fs never walks or stats on its own:
 *  - entries in byte order of their tar names (parents before children), a
 *    directory's opaque marker `<dir>/.wh..wh..opq` right after it;
 *  - overlay whiteouts (0/0 character devices, or files carrying
 *    `*.overlay.whiteout`) become empty files `.wh.<name>`;
 *  - hardlinks inside the layer become tar hardlinks to the first name in
 *    that order; fifos kept; sockets and other device nodes left out (our
 *    applier skips device nodes, so they could never come back out);
 *  - numeric owners, no uname/gname, mode with setuid/setgid/sticky bits,
 *    mtime clamped to `sourceDateEpoch`, no atime/ctime;
 *  - `security.capability` and `user.*` xattrs as PAX `SCHILY.xattr.*`
 *    records with their raw bytes (tar-stream writes PAX values as UTF-8
 *    text, so those headers are written by rawPaxHeader below);
 *    `trusted.overlay.*` never reaches the tar.
 * The tar is gzip'ed (no name, mtime 0 in the gzip header), hashed on the way
 * (sha256 of the tar = diff ID, of the gzip = digest), written to
 * `<store>/tmp/layer-<owner token>.tmp`, fsynced and renamed into blobs/sha256/.
 */
import { createHash } from 'node:crypto';
import { closeSync, constants, createReadStream, createWriteStream, lstatSync, openSync, readdirSync, readFileSync, type Stats } from 'node:fs';
import { mkdir, readdir, readlink, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { ConveyorError, isStorageErrno, storeIoError } from '@conveyor/lib-common/errors';
import { ownerToken, tokenAlive } from '@conveyor/lib-common/lock';
import { MEDIA_TYPES } from '@conveyor/lib-common/mediatypes';
import type { Descriptor } from '@conveyor/lib-common/records';
import type { Store } from '@conveyor/lib-common/store';
import { readXattrTree, xattrKept } from './xattrs.js';

export interface PackLayerOptions {
  /** The overlay upper dir (or any tree holding one layer's changes). Read only. */
  upperDir: string;
  store: Store;
  /** SOURCE_DATE_EPOCH in seconds: mtimes above it are clamped to it. */
  sourceDateEpoch?: number;
}

export interface PackedLayer {
  /** The gzip'ed layer blob, now in the store (application/vnd.oci.image.layer.v1.tar+gzip). */
  descriptor: Descriptor;
  /** sha256 of the uncompressed tar. */
  diffID: string;
  /** The upper dir held nothing: the blob is an empty tar (history gets empty_layer; callers may skip the layer). */
  empty: boolean;
}

type Kind = 'directory' | 'file' | 'symlink' | 'fifo' | 'whiteout' | 'link' | 'opaque';

interface LayerEntry {
  /** Path relative to the upper dir as tar-fs sees it ('' never: the root is not packed). */
  fsPath: string;
  /** Name in the tar. */
  tarName: string;
  kind: Kind;
  stats?: Stats;
  /** Symlink target, or the first name of a hardlinked file. */
  linkname?: string;
  /** Kept xattrs, name -> value as a byte string (latin1). */
  xattrs?: Map<string, string>;
}

/** `<store>/tmp/layer-<owner token>.tmp`: a blob being packed. */
export const LAYER_TEMP_PREFIX = 'layer-';
export const WHITEOUT_PREFIX = '.wh.';
export const OPAQUE_MARKER = '.wh..wh..opq';
const PAX_KEY = Symbol('raw pax records');
/** Files up to this size are read whole, synchronously, from the page cache. */
const SMALL_FILE_BYTES = 1024 * 1024;
const utf8 = new TextDecoder('utf-8', { fatal: true });

function overlayAttr(xattrs: Map<string, string> | undefined, name: string): string | undefined {
  return xattrs?.get(`trusted.overlay.${name}`) ?? xattrs?.get(`user.overlay.${name}`);
}

/**
 * Walks the upper dir: every entry but the root, with its kind and kept
 * xattrs, in tar order. The walk is synchronous (readdir and lstat answer
 * from the page cache in microseconds; a thread-pool round trip per entry
 * cost ten times that) and runs while getfattr reads the xattrs.
 */
async function collectEntries(upperDir: string): Promise<LayerEntry[]> {
  const xattrTree = readXattrTree(upperDir);
  // A failure of the walk must not leave getfattr's rejection unhandled.
  xattrTree.catch(() => undefined);
  const entries: LayerEntry[] = [];
  const walk = (relDir: string): void => {
    const absDir = relDir ? join(upperDir, relDir) : upperDir;
    let names: Buffer[];
    try {
      names = readdirSync(absDir, { encoding: 'buffer' });
    } catch (error) {
      throw ioError(error, absDir);
    }
    for (const raw of names) {
      let name: string;
      try {
        name = utf8.decode(raw);
      } catch {
        throw new ConveyorError('ERR_LAYER_INVALID', `${join(absDir, raw.toString('latin1'))}: file name is not UTF-8`, {
          hint: 'rename the file in the build step: layer names are written as UTF-8',
        });
      }
      const fsPath = relDir ? `${relDir}/${name}` : name;
      if (name.startsWith(WHITEOUT_PREFIX)) {
        throw new ConveyorError('ERR_LAYER_INVALID', `/${fsPath}: a file named ${WHITEOUT_PREFIX}* would read as a whiteout in the layer`, {
          hint: 'remove or rename it in the build step',
        });
      }
      let stats: Stats;
      try {
        stats = lstatSync(join(upperDir, fsPath));
      } catch (error) {
        throw ioError(error, join(upperDir, fsPath));
      }
      const entry: LayerEntry = { fsPath, tarName: fsPath, kind: 'file', stats };
      if (stats.isCharacterDevice() && stats.rdev === 0) entry.kind = 'whiteout';
      else if (stats.isDirectory()) entry.kind = 'directory';
      else if (stats.isSymbolicLink()) entry.kind = 'symlink';
      else if (stats.isFIFO()) entry.kind = 'fifo';
      // Sockets cannot be archived; device nodes are skipped by every applier of ours (layer-unpack), so they are left out here too.
      else if (!stats.isFile()) continue;
      entries.push(entry);
      if (entry.kind === 'directory') walk(fsPath);
    }
  };
  walk('');

  const allXattrs = await xattrTree;
  const opaqueDirs = new Set<string>();
  for (const entry of entries) {
    const xattrs = allXattrs.get(entry.fsPath);
    if (!xattrs) continue;
    if (overlayAttr(xattrs, 'redirect') !== undefined || overlayAttr(xattrs, 'metacopy') !== undefined) {
      throw new ConveyorError('ERR_LAYER_INVALID', `/${entry.fsPath} in ${upperDir} is an overlay redirect or metacopy entry: its data is in a lower layer`, {
        hint: 'mount the build overlay with redirect_dir=off,metacopy=off',
      });
    }
    // Newer kernels may mark whiteouts with an xattr on an empty file instead of a 0/0 device.
    if (entry.kind === 'file' && overlayAttr(xattrs, 'whiteout') !== undefined) entry.kind = 'whiteout';
    if (entry.kind === 'directory' && overlayAttr(xattrs, 'opaque') === 'y') opaqueDirs.add(entry.fsPath);
    const kept = new Map([...xattrs].filter(([key]) => xattrKept(key)));
    if (kept.size > 0 && entry.kind !== 'whiteout') entry.xattrs = kept;
  }
  for (const entry of entries) {
    if (entry.kind !== 'whiteout') continue;
    const slash = entry.fsPath.lastIndexOf('/');
    entry.tarName = `${entry.fsPath.slice(0, slash + 1)}${WHITEOUT_PREFIX}${entry.fsPath.slice(slash + 1)}`;
  }

  const keyed = entries.map((entry) => ({ entry, key: Buffer.from(entry.tarName, 'utf8') }));
  keyed.sort((a, b) => Buffer.compare(a.key, b.key));
  const ordered: LayerEntry[] = [];
  const firstByInode = new Map<string, string>();
  for (const { entry } of keyed) {
    const stats = entry.stats as Stats;
    if (entry.kind === 'file' && stats.nlink > 1) {
      const inode = `${stats.dev}:${stats.ino}`;
      const first = firstByInode.get(inode);
      if (first === undefined) firstByInode.set(inode, entry.tarName);
      else {
        entry.kind = 'link';
        entry.linkname = first;
      }
    }
    ordered.push(entry);
    if (entry.kind === 'directory' && opaqueDirs.has(entry.fsPath)) {
      const marker = `${entry.fsPath}/${OPAQUE_MARKER}`;
      ordered.push({ fsPath: marker, tarName: marker, kind: 'opaque', stats });
    }
  }
  await Promise.all(
    ordered
      .filter((entry) => entry.kind === 'symlink')
      .map(async (entry) => {
        entry.linkname = await readlink(join(upperDir, entry.fsPath)).catch((error) => {
          throw ioError(error, join(upperDir, entry.fsPath));
        });
      }),
  );
  return ordered;
}

function ioError(error: unknown, path: string): ConveyorError {
  return storeIoError(error, { path });
}

/** One PAX record: `<len> key=value\n`, the length counting itself. */
function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`, 'utf8'), value, Buffer.from('\n')]);
  let length = body.length + String(body.length).length;
  if (String(length).length !== String(body.length).length) length = body.length + String(length).length;
  return Buffer.concat([Buffer.from(String(length)), body]);
}

function octal(value: number, width: number): string {
  return `${value.toString(8).padStart(width - 1, '0')}\0`;
}

/** A ustar header of type 'x' (PAX extended header) announcing `size` bytes of records. */
function paxHeaderBlock(size: number, mtime: Date): Buffer {
  const block = Buffer.alloc(512);
  block.write('PaxHeader', 0, 'latin1');
  block.write(octal(0o644, 8), 100, 'latin1');
  block.write(octal(0, 8), 108, 'latin1');
  block.write(octal(0, 8), 116, 'latin1');
  block.write(octal(size, 12), 124, 'latin1');
  block.write(octal(Math.floor(mtime.getTime() / 1000), 12), 136, 'latin1');
  block.write('        ', 148, 'latin1');
  block.write('x', 156, 'latin1');
  block.write('ustar\u000000', 257, 'latin1');
  block.write(octal(0, 8), 329, 'latin1');
  block.write(octal(0, 8), 337, 'latin1');
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return block;
}

/** An ASCII stand-in that fits a ustar field, for readers that ignore PAX (the PAX record holds the real name). */
function placeholder(name: string, max: number): string {
  const ascii = name.replace(/[^\x20-\x7e]/g, '_');
  return ascii.length <= max ? ascii : ascii.slice(ascii.length - max);
}

function clampMtime(stats: Stats, epoch: number | undefined): Date {
  const seconds = Math.floor(stats.mtimeMs / 1000);
  return new Date((epoch !== undefined && seconds > epoch ? epoch : seconds) * 1000);
}

interface TarHeader {
  name: string;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  size: number;
  mtime: Date;
  linkname?: string;
  [PAX_KEY]?: Buffer;
}

function headerFor(entry: LayerEntry, epoch: number | undefined): TarHeader {
  const stats = entry.stats as Stats;
  const header: TarHeader = {
    name: entry.tarName,
    type: 'file',
    mode: stats.mode & 0o7777,
    uid: stats.uid,
    gid: stats.gid,
    uname: '',
    gname: '',
    size: 0,
    mtime: clampMtime(stats, epoch),
  };
  switch (entry.kind) {
    case 'directory':
      header.type = 'directory';
      break;
    case 'symlink':
      header.type = 'symlink';
      header.mode = 0o777;
      header.linkname = entry.linkname;
      break;
    case 'link':
      header.type = 'link';
      header.linkname = entry.linkname;
      break;
    case 'fifo':
      header.type = 'fifo';
      break;
    case 'whiteout':
    case 'opaque':
      // Docker writes whiteouts and opaque markers as empty files owned by root, mode 0644 (archive.go).
      header.mode = 0o644;
      header.uid = 0;
      header.gid = 0;
      break;
    default:
      header.size = stats.size;
  }
  if (entry.xattrs) {
    const records = [paxRecord('path', Buffer.from(header.name, 'utf8'))];
    if (header.linkname !== undefined) records.push(paxRecord('linkpath', Buffer.from(header.linkname, 'utf8')));
    for (const key of [...entry.xattrs.keys()].sort()) {
      records.push(paxRecord(`SCHILY.xattr.${key}`, Buffer.from(entry.xattrs.get(key) as string, 'latin1')));
    }
    header[PAX_KEY] = Buffer.concat(records);
    header.name = placeholder(header.name, 99);
    if (header.linkname !== undefined) header.linkname = placeholder(header.linkname, 100);
  }
  return header;
}

/** Hashes what passes through. */
function hashing(hash: ReturnType<typeof createHash>, count?: { bytes: number }): Transform {
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      if (count) count.bytes += chunk.length;
      callback(null, chunk);
    },
  });
}

/** Bytes handed to gzip at once. */
const GZIP_BATCH_BYTES = 256 * 1024;

/**
 * Hashes the tar and hands it on in large batches: tar-stream emits a header,
 * the data and the padding of every entry as separate small chunks, and zlib
 * runs each write as its own thread-pool job (three per file; most of the
 * time of packing many small files went there).
 */
function hashingBatches(hash: ReturnType<typeof createHash>): Transform {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      pending.push(chunk);
      pendingBytes += chunk.length;
      if (pendingBytes < GZIP_BATCH_BYTES) return callback();
      const batch = Buffer.concat(pending, pendingBytes);
      pending = [];
      pendingBytes = 0;
      callback(null, batch);
    },
    flush(callback) {
      callback(null, pendingBytes > 0 ? Buffer.concat(pending, pendingBytes) : undefined);
    },
  });
}

/**
 * Packs `upperDir` into a gzip'ed layer blob in the store. Fails with
 * ERR_LAYER_INVALID for a tree a layer cannot represent (names that are not
 * UTF-8 or start with `.wh.`, overlay redirect/metacopy entries) and
 * ERR_STORE_IO for I/O; nothing is left under blobs/ or tmp/ on failure.
 */
export async function packLayer(options: PackLayerOptions): Promise<PackedLayer> {
  const { upperDir, store, sourceDateEpoch } = options;
  const entries = await collectEntries(upperDir);
  const byPath = new Map(entries.map((entry) => [entry.fsPath, entry]));
  const entryAt = (absPath: string): LayerEntry => {
    const entry = byPath.get(absPath.slice(upperDir.length + 1));
    if (!entry) throw new Error(`[internal error] tar-fs asked for ${absPath}, not in the entry list`);
    return entry;
  };

  // tar-fs reads the tree only through this shim: no walking (readdir is empty), stats and link targets from the walk above.
  const shim = {
    lstat(path: string, callback: (error: Error | null, stats?: unknown) => void) {
      let entry: LayerEntry;
      try {
        entry = entryAt(path);
      } catch (error) {
        return callback(error as Error);
      }
      callback(null, {
        ...(entry.stats as Stats),
        isDirectory: () => entry.kind === 'directory',
        isSymbolicLink: () => entry.kind === 'symlink',
        isSocket: () => false,
        // Everything else goes down tar-fs's file path; map() gives it its real type and size.
        isFile: () => entry.kind !== 'directory' && entry.kind !== 'symlink',
      });
    },
    readdir(_path: string, callback: (error: Error | null, names: string[]) => void) {
      callback(null, []);
    },
    readlink(path: string, callback: (error: Error | null, target?: string) => void) {
      const header = headers.get(entryAt(path).fsPath);
      callback(null, header?.linkname ?? '');
    },
    createReadStream(path: string, streamOptions: { start: number; end: number }) {
      const entry = entryAt(path);
      if (entry.kind !== 'file') return Readable.from([]);
      const size = (entry.stats as Stats).size;
      // Small files in one synchronous read: three thread-pool round trips (open, read, close) per file dominated packing many small files.
      if (size <= SMALL_FILE_BYTES) {
        const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
        try {
          const data = readFileSync(fd);
          return Readable.from(data.length === size ? [data] : [data.subarray(0, size)]);
        } finally {
          closeSync(fd);
        }
      }
      // The upper dir is what a RUN step left: never follow a link, even one swapped in after the walk.
      return createReadStream(path, { ...streamOptions, flags: (constants.O_RDONLY | constants.O_NOFOLLOW) as unknown as string });
    },
  };
  const headers = new Map<string, TarHeader>();

  const { default: tarFs } = await import('tar-fs');
  const { pack: tarPack } = await import('tar-stream');
  const packer = tarPack();
  // tar-stream encodes PAX values as UTF-8 text; xattr values are bytes, so entries that carry them get their PAX header from us.
  const internal = packer as unknown as { _encode(header: TarHeader): void; push(chunk: Buffer): boolean };
  const encode = internal._encode.bind(packer);
  internal._encode = (header: TarHeader) => {
    const records = header[PAX_KEY];
    if (records) {
      internal.push(paxHeaderBlock(records.length, header.mtime));
      internal.push(records);
      if (records.length % 512) internal.push(Buffer.alloc(512 - (records.length % 512)));
    }
    encode(header);
  };

  await store.init();
  await mkdir(store.tmpDir, { recursive: true, mode: 0o700 });
  await removeDeadPackerTemps(store);
  // Named by its owner (lock.ts ownerToken: pid, start time, random), so a sweep can tell a crashed packer's file from a running one's.
  const temp = join(store.tmpDir, `${LAYER_TEMP_PREFIX}${ownerToken()}.tmp`);
  const diffHash = createHash('sha256');
  const blobHash = createHash('sha256');
  const written = { bytes: 0 };
  try {
    const tarStream = tarFs.pack(upperDir, {
      fs: shim,
      pack: packer,
      entries: entries.map((entry) => entry.fsPath),
      umask: 0,
      map: (header: { name: string }) => {
        const entry = byPath.get(header.name);
        if (!entry) throw new Error(`[internal error] tar-fs packed ${header.name}, not in the entry list`);
        const full = headerFor(entry, sourceDateEpoch);
        headers.set(entry.fsPath, full);
        return full;
      },
    });
    // commitIngest fsyncs it before the rename that publishes it, and blobs/ after (lib-common durable.ts).
    const file = createWriteStream(temp, { flags: 'wx', mode: 0o644 });
    await pipeline(tarStream, hashingBatches(diffHash), createGzip({ chunkSize: 64 * 1024 }), hashing(blobHash, written), file);
    const digest = `sha256:${blobHash.digest('hex')}`;
    const descriptor: Descriptor = { mediaType: MEDIA_TYPES.ociLayerGzip, digest, size: written.bytes };
    if (await store.hasBlob(digest, written.bytes)) await rm(temp, { force: true });
    else await store.commitIngest(digest, temp);
    return { descriptor, diffID: `sha256:${diffHash.digest('hex')}`, empty: entries.length === 0 };
  } catch (error) {
    await rm(temp, { force: true });
    if (error instanceof ConveyorError) throw error;
    // A full or read-only store says so (ENOSPC, EROFS), naming the file being written.
    if (isStorageErrno(error)) throw store.ioError(error, temp, `cannot pack ${upperDir} into`);
    throw new ConveyorError('ERR_STORE_IO', `packing ${upperDir} into ${store.root}: ${(error as Error).message}`, { cause: error });
  }
}

/**
 * Removes the temp layers (`tmp/layer-<owner token>.tmp`) of packers that died (SIGKILL) mid-pack:
 * the next build cleans up after a crashed one instead of leaving them to img-prune. A live
 * packer's (its token alive) is never touched.
 */
async function removeDeadPackerTemps(store: Store): Promise<void> {
  for (const name of await readdir(store.tmpDir).catch(() => [] as string[])) {
    if (!name.startsWith(LAYER_TEMP_PREFIX) || !name.endsWith('.tmp')) continue;
    if (!tokenAlive(name.slice(LAYER_TEMP_PREFIX.length, -'.tmp'.length))) await rm(join(store.tmpDir, name), { force: true });
  }
}
