/**
 * ADD of a local archive: a tar, plain or compressed (gzip, bzip2, xz; known
 * by magic bytes and a valid first tar header, never by the file name, as
 * moby's archive.DetectCompression), is extracted into the destination
 * directory. The archive is hostile input:
 *  - names are cleaned; one that climbs out of the destination (`../x`) is
 *    ERR_LAYER_MALICIOUS; absolute names are taken below the destination;
 *  - each entry's parent is resolved inside the rootfs (symlinks, also those
 *    the archive itself planted, followed only within it), its own name is
 *    replaced, never written through; hardlink targets are resolved the same
 *    way and must be files already there;
 *  - device nodes and fifos are skipped (our layers do not carry devices);
 *  - entries, bytes per entry and bytes in all (after decompression: a gzip
 *    bomb stops at the cap) are capped: ERR_LAYER_TOO_LARGE;
 *  - a truncated or malformed archive is ERR_LAYER_INVALID, broken
 *    compression ERR_LAYER_COMPRESSION.
 * Owners come from the archive (Docker's ADD keeps them) unless --chown
 * gives one; modes and mtimes from the archive.
 */
import { constants, createReadStream, type Stats } from 'node:fs';
import { type FileHandle, link, open, rm, unlink } from 'node:fs/promises';
import { posix } from 'node:path';
import { PassThrough, type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { ConveyorError } from '@conveyor/lib-common/errors';
import type { Header as TarHeader } from 'tar-stream';
import { startProcess } from '@conveyor/lib-common/subprocess';
import { resolveScoped } from '@conveyor/lib-common/container/rootfs';
import { applyMetadata, ensureDirectory, existing, type Metadata, mkdirsInRoot, replaceWithSymlink } from './write.js';

/** An entry's body as tar-stream hands it over (a streamx Readable). */
type TarBody = AsyncIterable<Buffer> & { resume(): unknown; on(event: 'error', listener: () => void): unknown };

export type ArchiveCompression = 'none' | 'gzip' | 'bzip2' | 'xz';

export interface ArchiveLimits {
  /** Bytes of tar (after decompression) in all. */
  maxBytes: number;
  maxEntries: number;
}

export const DEFAULT_ARCHIVE_LIMITS: ArchiveLimits = { maxBytes: 16 * 1024 ** 3, maxEntries: 1_000_000 };

/** Whether a 512-byte block is a tar header (its checksum adds up), as Go's tar reader decides on the first Next(). */
function isTarHeader(block: Buffer): boolean {
  if (block.length < 512) return false;
  const stored = Number.parseInt(block.toString('latin1', 148, 156).replace(/\0.*$/, '').trim(), 8);
  if (!Number.isFinite(stored)) return false;
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i];
  return sum === stored;
}

function compressionOf(head: Buffer): ArchiveCompression {
  if (head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.toString('latin1', 0, 3) === 'BZh') return 'bzip2';
  if (head.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return 'xz';
  return 'none';
}

/** The archive's decompressed byte stream (bzip2 and xz through their programs: Node has neither). */
function decompressed(file: string, compression: ArchiveCompression): { stream: Readable; done: Promise<void> } {
  if (compression === 'none') {
    const input = createReadStream(file);
    input.on('error', () => undefined);
    return { stream: input, done: Promise.resolve() };
  }
  if (compression === 'gzip') {
    const out = new PassThrough();
    const input = createReadStream(file);
    const gunzip = createGunzip();
    // pipeline reports the first error; a stream torn down after it may emit another, which must not be uncaught.
    for (const stream of [input, gunzip, out] as NodeJS.EventEmitter[]) stream.on('error', () => undefined);
    const done = pipeline(input, gunzip, out).catch((error) => {
      throw new ConveyorError('ERR_LAYER_COMPRESSION', `ADD ${posix.basename(file)}: gzip: ${(error as Error).message}`, { cause: error });
    });
    return { stream: out, done };
  }
  const program = compression === 'bzip2' ? 'bzip2' : 'xz';
  const child = startProcess(program, ['-dc', '--', file], { stdout: 'pipe', stderr: 'pipe', buffer: false });
  const done = child.result.then((result) => {
    if (result.failed && result.signal !== 'SIGTERM') {
      throw new ConveyorError('ERR_LAYER_COMPRESSION', `ADD ${posix.basename(file)}: ${program}: ${result.shortMessage}`, {
        hint: result.code === 'ENOENT' ? `install ${program}` : undefined,
      });
    }
  });
  return { stream: child.stdout as Readable, done: done.finally(() => child.kill()) };
}

/** 'none' | 'gzip' | ... when `file` is a tar archive ADD extracts, undefined when it is copied as it is. */
export async function archiveCompression(file: string): Promise<ArchiveCompression | undefined> {
  const handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  let head: Buffer;
  try {
    head = Buffer.alloc(512);
    const { bytesRead } = await handle.read(head, 0, 512, 0);
    head = head.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
  const compression = compressionOf(head);
  if (compression === 'none') return isTarHeader(head) ? 'none' : undefined;
  // Compressed: a tar only when its first decompressed block is a tar header.
  const { stream, done } = decompressed(file, compression);
  const first = await new Promise<Buffer>((resolve) => {
    const chunks: Buffer[] = [];
    let length = 0;
    const finish = () => {
      stream.destroy();
      resolve(Buffer.concat(chunks).subarray(0, 512));
    };
    stream.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      length += chunk.length;
      if (length >= 512) finish();
    });
    stream.on('end', finish);
    stream.on('error', finish);
  });
  await done.catch(() => undefined);
  return isTarHeader(first) ? compression : undefined;
}

function malicious(file: string, what: string): ConveyorError {
  return new ConveyorError('ERR_LAYER_MALICIOUS', `ADD ${posix.basename(file)}: ${what}`, { hint: 'the archive tries to reach outside its destination' });
}

/** An archive member name as a path below the destination ('' for the destination itself). */
function cleanName(file: string, name: string): string {
  const cleaned = posix.normalize(`./${name}`);
  if (cleaned === '..' || cleaned.startsWith('../')) throw malicious(file, `entry ${JSON.stringify(name)} climbs out of the destination`);
  return cleaned === '.' ? '' : cleaned.replace(/^\/+/, '').replace(/\/+$/, '');
}

interface ExtractOptions {
  /** The archive on the host (a context file or a file in another rootfs, already resolved inside its root). */
  file: string;
  compression: ArchiveCompression;
  rootfs: string;
  /** The destination directory, relative to rootfs and resolved inside it (resolveScoped). */
  destRelative: string;
  chown?: { uid: number; gid: number };
  limits?: Partial<ArchiveLimits>;
}

/** Extracts the archive into rootfs/destRelative (created when missing). */
export async function extractArchive(options: ExtractOptions): Promise<void> {
  const { file, rootfs, destRelative, chown } = options;
  const limits = { ...DEFAULT_ARCHIVE_LIMITS, ...options.limits };
  await mkdirsInRoot(rootfs, destRelative, chown);
  const { extract } = await import('tar-stream');
  const extractor = extract();
  const { stream, done } = decompressed(file, options.compression);
  let total = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      total += chunk.length;
      if (total > limits.maxBytes) {
        return callback(new ConveyorError('ERR_LAYER_TOO_LARGE', `ADD ${posix.basename(file)}: more than ${limits.maxBytes} bytes once decompressed`));
      }
      callback(null, chunk);
    },
  });
  const directories: { path: string; meta: Metadata }[] = [];
  // A body cut short by a failing stream may never end its loop: its file is closed here instead.
  const openFiles = new Set<FileHandle>();
  let aborted = false;
  let entries = 0;

  const handleEntry = async (header: TarHeader, body: TarBody): Promise<void> => {
    // A body torn down with the extractor reports its error here too; the extractor's failure is the one reported.
    body.on('error', () => undefined);
    if (++entries > limits.maxEntries) throw new ConveyorError('ERR_LAYER_TOO_LARGE', `ADD ${posix.basename(file)}: more than ${limits.maxEntries} entries`);
    const name = cleanName(file, header.name);
    const meta: Metadata = {
      uid: chown?.uid ?? header.uid ?? 0,
      gid: chown?.gid ?? header.gid ?? 0,
      mode: (header.mode ?? 0o644) & 0o7777,
      mtime: header.mtime ?? new Date(0),
    };
    if (name === '') {
      body.resume();
      return;
    }
    const parent = await resolveScoped(rootfs, posix.join(destRelative, posix.dirname(name)), { code: 'ERR_BUILD_DEST' });
    await mkdirsInRoot(rootfs, parent.relative);
    const target = posix.join(parent.hostPath, posix.basename(name));
    switch (header.type) {
      case 'directory':
        body.resume();
        await ensureDirectory(target);
        directories.push({ path: target, meta });
        return;
      case 'file':
      case 'contiguous-file': {
        const info = await existing(target);
        if (info?.isDirectory()) await rm(target, { recursive: true, force: true });
        else if (info) await unlink(target);
        const handle = await open(target, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
        if (aborted) {
          await handle.close();
          throw new Error('extraction aborted');
        }
        openFiles.add(handle);
        try {
          for await (const chunk of body) await handle.write(chunk);
        } finally {
          openFiles.delete(handle);
          await handle.close();
        }
        await applyMetadata(target, 'file', meta);
        return;
      }
      case 'symlink':
        body.resume();
        await replaceWithSymlink(target, header.linkname ?? '');
        await applyMetadata(target, 'symlink', meta);
        return;
      case 'link': {
        body.resume();
        const linked = cleanName(file, header.linkname ?? '');
        const source = await resolveScoped(rootfs, posix.join(destRelative, linked), { followFinal: false, code: 'ERR_BUILD_DEST' });
        const info: Stats | undefined = await existing(source.hostPath);
        if (!info || info.isDirectory())
          throw malicious(file, `hardlink ${JSON.stringify(header.name)} to ${JSON.stringify(header.linkname)}, which is not a file in it`);
        const present = await existing(target);
        if (present?.isDirectory())
          throw new ConveyorError('ERR_LAYER_INVALID', `ADD ${posix.basename(file)}: hardlink ${JSON.stringify(header.name)} over a directory`);
        if (present) await unlink(target);
        await link(source.hostPath, target);
        return;
      }
      default:
        // Devices, fifos and anything else: skipped (see the top of this file).
        body.resume();
    }
  };

  // After the first failure tar-stream may still report "unexpected end of data" as the source is torn down: already handled.
  extractor.on('error', () => undefined);
  extractor.on('entry', (header, body, next) => {
    handleEntry(header, body as unknown as TarBody).then(
      () => next(),
      (error) => next(error),
    );
  });
  try {
    await Promise.all([pipeline(stream, counter, extractor), done]);
  } catch (error) {
    stream.destroy();
    aborted = true;
    await Promise.all([...openFiles].map((handle) => handle.close().catch(() => undefined)));
    if (error instanceof ConveyorError) throw error;
    // The decompressor's own failure (a truncated gzip) says more than the tar parser's "unexpected end".
    const decompression = await done.then(
      () => undefined,
      (failure: unknown) => failure,
    );
    if (decompression instanceof ConveyorError) throw decompression;
    throw new ConveyorError('ERR_LAYER_INVALID', `ADD ${posix.basename(file)}: not a valid tar: ${(error as Error).message}`, { cause: error });
  }
  for (const { path, meta } of directories.reverse()) await applyMetadata(path, 'directory', meta);
}
